//! The Entra synchronization schema, as far as scimsync reads it: the documented
//! names of `synchronizationRules[].objectMappings[]`, their attribute mappings and
//! scoping filters. Everything else in the document (directory definitions,
//! metadata) is left unread.

use serde::Deserialize;

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Schema {
    #[serde(default)]
    pub synchronization_rules: Vec<Rule>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Rule {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub object_mappings: Vec<ObjectMapping>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ObjectMapping {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default = "yes")]
    pub enabled: bool,
    /// `"Add, Update, Delete"` (flags); absent means all three.
    #[serde(default)]
    pub flow_types: Option<String>,
    pub source_object_name: String,
    #[serde(default)]
    pub target_object_name: Option<String>,
    #[serde(default)]
    pub attribute_mappings: Vec<AttributeMapping>,
    #[serde(default)]
    pub scope: Option<Filter>,
}

fn yes() -> bool {
    true
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AttributeMapping {
    #[serde(default)]
    pub source: Option<Source>,
    pub target_attribute_name: String,
    #[serde(default)]
    pub matching_priority: i64,
    /// `Always` (default) or `ObjectAddOnly`, …
    #[serde(default)]
    pub flow_type: Option<String>,
    #[serde(default)]
    pub default_value: Option<String>,
}

/// `attributeMappingSource`: the expression text, and the structured form of a
/// plain attribute or constant.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Source {
    #[serde(default)]
    pub expression: Option<String>,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default, rename = "type")]
    pub kind: Option<String>,
}

impl Source {
    /// The expression text: given, or built from the structured form of an
    /// attribute or a constant; a function without its text is an error.
    pub fn text(&self) -> Result<Option<String>, String> {
        if let Some(e) = self.expression.as_ref().filter(|e| !e.trim().is_empty()) {
            return Ok(Some(e.clone()));
        }
        let Some(name) = self.name.as_ref() else {
            return Ok(None);
        };
        match self.kind.as_deref() {
            Some("Constant") => Ok(Some(format!(
                "\"{}\"",
                name.replace('\\', "\\\\").replace('"', "\\\"")
            ))),
            Some("Attribute") | None => Ok(Some(format!("[{name}]"))),
            Some(kind) => Err(format!(
                "a {kind} source {name:?} without its expression text (export the schema again: the portal and Graph give source.expression)"
            )),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Filter {
    #[serde(default)]
    pub groups: Vec<FilterGroup>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FilterGroup {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub clauses: Vec<Clause>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Clause {
    pub operator_name: String,
    pub source_operand_name: String,
    #[serde(default)]
    pub target_operand: Option<Operand>,
}

#[derive(Debug, Deserialize)]
pub struct Operand {
    #[serde(default)]
    pub values: Vec<String>,
}

/// Which flows an object mapping allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Flows {
    pub add: bool,
    pub update: bool,
    pub delete: bool,
}

impl ObjectMapping {
    pub fn flows(&self) -> Flows {
        let Some(text) = &self.flow_types else {
            return Flows {
                add: true,
                update: true,
                delete: true,
            };
        };
        let has = |f: &str| text.split(',').any(|t| t.trim().eq_ignore_ascii_case(f));
        Flows {
            add: has("Add"),
            update: has("Update"),
            delete: has("Delete"),
        }
    }

    pub fn label(&self) -> String {
        match &self.name {
            Some(n) => format!("object mapping {n:?}"),
            None => format!("the {} object mapping", self.source_object_name),
        }
    }
}
