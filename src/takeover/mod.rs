//! Taking over from Entra's own provisioning job: its synchronization schema (the
//! JSON the portal's "Review your schema here" and Graph's
//! `…/synchronization/jobs/{id}/schema` give) becomes `mapping.rhai` and
//! `scoping.rhai`, so the first cycle adopts what Entra provisioned and changes
//! nothing.
//!
//! Translation is all or nothing: a construct that cannot keep its meaning is an
//! error naming the object mapping, the target attribute and the part, and
//! nothing is written.

pub mod expression;
pub mod schema;
pub mod translate;

use schema::{AttributeMapping, Clause, Filter, ObjectMapping, Schema};
use std::collections::BTreeSet;
use translate::{quote, Reads, Record};

/// What a schema became.
pub struct Translation {
    pub mapping: String,
    pub scoping: String,
    pub summary: Summary,
}

/// What the translation found, for the printed summary.
#[derive(Default)]
pub struct Summary {
    pub user_mappings: usize,
    pub group_mappings: usize,
    pub user_matching: Vec<String>,
    pub group_matching: Vec<String>,
    pub create_only: Vec<String>,
    pub defaults: Vec<String>,
    pub user_filter_groups: usize,
    pub group_filter_groups: usize,
    /// Config switches the schema implies, each with why.
    pub advice: Vec<String>,
    /// Directory attributes the scripts read.
    pub reads: BTreeSet<String>,
}

/// Where in the schema a translation failed, and why.
#[derive(Debug)]
pub struct Untranslatable {
    pub path: String,
    pub message: String,
}

impl std::fmt::Display for Untranslatable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

fn fail(path: impl Into<String>, message: impl Into<String>) -> Untranslatable {
    Untranslatable {
        path: path.into(),
        message: message.into(),
    }
}

/// Translates a schema document; `origin` names it in the generated headers.
pub fn translate(document: &str, origin: &str) -> Result<Translation, Untranslatable> {
    let schema: Schema = serde_json::from_str(document)
        .map_err(|e| fail("the schema", format!("not a synchronization schema: {e}")))?;
    let (user, group) = object_mappings(&schema)?;
    let mut summary = Summary::default();
    let mut reads = Reads::default();
    let users = match &user {
        Some((path, m)) => Some(Object::translate(path, m, Record::User, &mut reads)?),
        None => None,
    };
    let groups = match &group {
        Some((path, m)) => Some(Object::translate(path, m, Record::Group, &mut reads)?),
        None => None,
    };
    advise(&mut summary, user.map(|u| u.1), group.map(|g| g.1));
    let mapping = mapping_script(origin, users.as_ref(), groups.as_ref(), &mut summary);
    let scoping = scoping_script(origin, users.as_ref(), groups.as_ref());
    summary.user_filter_groups = users.as_ref().map_or(0, |o| o.filter_groups);
    summary.group_filter_groups = groups.as_ref().map_or(0, |o| o.filter_groups);
    summary.reads = reads.0;
    Ok(Translation {
        mapping,
        scoping,
        summary,
    })
}

type Found<'a> = Option<(String, &'a ObjectMapping)>;

/// The User and the Group object mapping, each with its place in the document.
fn object_mappings(schema: &Schema) -> Result<(Found<'_>, Found<'_>), Untranslatable> {
    let (mut user, mut group): (Found<'_>, Found<'_>) = (None, None);
    for (r, rule) in schema.synchronization_rules.iter().enumerate() {
        for (o, m) in rule.object_mappings.iter().enumerate() {
            let path = format!(
                "synchronizationRules[{r}].objectMappings[{o}] ({})",
                m.label()
            );
            let slot = match m.source_object_name.to_ascii_lowercase().as_str() {
                "user" => &mut user,
                "group" => &mut group,
                other => {
                    return Err(fail(
                        path,
                        format!(
                            "source object {other:?}: scimsync provisions users and groups only"
                        ),
                    ))
                }
            };
            if let Some((first, _)) = slot {
                return Err(fail(
                    path,
                    format!(
                        "a second {} object mapping (the first is {first})",
                        m.source_object_name
                    ),
                ));
            }
            *slot = Some((path, m));
        }
    }
    if user.is_none() && group.is_none() {
        return Err(fail(
            "synchronizationRules",
            "no object mapping for User or Group: is this a synchronization schema?",
        ));
    }
    Ok((user, group))
}

/// One object mapping as rhai: the lines of its map function and its scope.
struct Object {
    label: String,
    lines: Vec<String>,
    matching: Vec<(i64, String)>,
    create_only: Vec<String>,
    defaults: Vec<String>,
    mappings: usize,
    scope: Option<String>,
    filter_groups: usize,
}

impl Object {
    fn translate(
        path: &str,
        m: &ObjectMapping,
        record: Record,
        reads: &mut Reads,
    ) -> Result<Object, Untranslatable> {
        let mut o = Object {
            label: m.label(),
            lines: vec![],
            matching: vec![],
            create_only: vec![],
            defaults: vec![],
            mappings: 0,
            scope: None,
            filter_groups: 0,
        };
        for (i, a) in m.attribute_mappings.iter().enumerate() {
            let at = format!(
                "{path} → attributeMappings[{i}] (target attribute {:?})",
                a.target_attribute_name
            );
            o.attribute(a, record, reads).map_err(|e| fail(at, e))?;
        }
        o.matching.sort();
        if let Some(filter) = &m.scope {
            o.scope = o.scope(filter, record, reads, &format!("{path} → scope"))?;
        }
        Ok(o)
    }

    fn attribute(
        &mut self,
        a: &AttributeMapping,
        record: Record,
        reads: &mut Reads,
    ) -> Result<(), String> {
        let target = a.target_attribute_name.trim();
        crate::scim::attribute::AttrPath::parse(target)
            .map_err(|e| format!("not a SCIM attribute path: {e}"))?;
        let text = match &a.source {
            Some(s) => s.text()?,
            None => None,
        };
        let origin = format!("{target} ← {}", text.as_deref().unwrap_or("(none)"));
        if record == Record::Group && target.eq_ignore_ascii_case("members") {
            self.lines.push(format!(
                "// {origin}: members are scimsync's own (group members of the directory, by link)"
            ));
            return Ok(());
        }
        let value = match &text {
            Some(t) => {
                let e = expression::parse(t).map_err(|e| format!("expression {t:?} {e}"))?;
                translate::expression(&e, record, reads)
                    .map_err(|e| format!("expression {t:?}: {e}"))?
            }
            None => "()".to_string(),
        };
        let value = match a.default_value.as_deref().filter(|d| !d.is_empty()) {
            Some(d) => {
                self.defaults.push(target.to_string());
                format!("default_on_create({value}, {})", quote(d))
            }
            None if text.is_none() => {
                self.lines.push(format!(
                    "// {origin}: no source and no default, nothing flows"
                ));
                return Ok(());
            }
            None => value,
        };
        match a.flow_type.as_deref().unwrap_or("Always") {
            "Always" => {}
            "ObjectAddOnly" => self.create_only.push(target.to_string()),
            other => {
                return Err(format!(
                    "flowType {other:?} is not translated (scimsync applies a mapping always, or only on create: Always, ObjectAddOnly)"
                ))
            }
        }
        if a.matching_priority > 0 {
            self.matching
                .push((a.matching_priority, target.to_string()));
        }
        let setter = if target.eq_ignore_ascii_case("active") {
            "flow_active"
        } else {
            "flow"
        };
        self.mappings += 1;
        self.lines.push(format!(
            "r.{setter}({}, {value}); // {origin}{}",
            quote(target),
            notes(a)
        ));
        Ok(())
    }

    fn scope(
        &mut self,
        filter: &Filter,
        record: Record,
        reads: &mut Reads,
        path: &str,
    ) -> Result<Option<String>, Untranslatable> {
        let mut groups = vec![];
        for (g, group) in filter.groups.iter().enumerate() {
            let at = format!("{path} → groups[{g}]");
            if group.clauses.is_empty() {
                return Err(fail(at, "a scoping filter group without clauses"));
            }
            let mut clauses = vec![];
            for (c, clause) in group.clauses.iter().enumerate() {
                let at = format!(
                    "{at} → clauses[{c}] ({} {})",
                    clause.source_operand_name, clause.operator_name
                );
                clauses.push(scope_clause(clause, record, reads).map_err(|e| fail(at, e))?);
            }
            let name = group
                .name
                .clone()
                .unwrap_or_else(|| format!("scoping filter {}", g + 1));
            groups.push(format!(
                "rule({}, {})",
                quote(&name),
                clauses.join("\n            && ")
            ));
        }
        self.filter_groups = groups.len();
        Ok((!groups.is_empty()).then(|| groups.join("\n        || ")))
    }
}

fn scope_clause(c: &Clause, record: Record, reads: &mut Reads) -> Result<String, String> {
    let attr = translate::attribute(&c.source_operand_name, record, reads)?;
    let values = c
        .target_operand
        .as_ref()
        .map(|o| o.values.as_slice())
        .unwrap_or(&[]);
    translate::clause(&c.operator_name, &attr, values)
}

/// What a generated line's comment adds to the Entra mapping it shows.
fn notes(a: &AttributeMapping) -> String {
    let mut n = vec![];
    if a.matching_priority > 0 {
        n.push(format!("matching precedence {}", a.matching_priority));
    }
    if a.flow_type.as_deref() == Some("ObjectAddOnly") {
        n.push("only on create".to_string());
    }
    if let Some(d) = a.default_value.as_deref().filter(|d| !d.is_empty()) {
        n.push(format!("default {d:?} on create"));
    }
    match n.is_empty() {
        true => String::new(),
        false => format!(" ({})", n.join("; ")),
    }
}

/// The config switches the object mappings imply.
fn advise(summary: &mut Summary, user: Option<&ObjectMapping>, group: Option<&ObjectMapping>) {
    for (m, kind, key) in [(user, "User", "users"), (group, "Group", "groups")] {
        match m {
            None => summary.advice.push(format!(
                "[sync] {key} = false   # the schema has no {kind} object mapping"
            )),
            Some(m) if !m.enabled => summary.advice.push(format!(
                "[sync] {key} = false   # the {kind} object mapping is disabled (enabled = false)"
            )),
            Some(_) => {}
        }
    }
    let Some(m) = user.or(group) else { return };
    let flows = m.flows();
    if !(flows.add && flows.update && flows.delete) {
        let actions: Vec<&str> = [
            ("create", flows.add),
            ("update", flows.update),
            ("delete", flows.delete),
        ]
        .iter()
        .filter(|(_, on)| *on)
        .map(|(a, _)| *a)
        .collect();
        summary.advice.push(format!(
            "[target] actions = {:?}   # flowTypes of the {} object mapping: {:?}",
            actions,
            m.source_object_name,
            m.flow_types.as_deref().unwrap_or_default()
        ));
    }
    if let (Some(u), Some(g)) = (user, group) {
        if u.flows() != g.flows() {
            summary.advice.push(format!(
                "# the Group object mapping's flowTypes ({:?}) differ from the User one's; [target] actions cover both, so choose",
                g.flow_types.as_deref().unwrap_or("Add, Update, Delete")
            ));
        }
    }
}

fn header(script: &str, origin: &str) -> String {
    format!(
        "// {script} — generated by `scimsync import-entra` from {origin}.\n\
         // Each line names the Entra mapping it came from; edit freely, it is yours now.\n"
    )
}

fn list(items: &[String]) -> String {
    let q: Vec<String> = items.iter().map(|i| quote(i)).collect();
    format!("[{}]", q.join(", "))
}

fn mapping_script(
    origin: &str,
    users: Option<&Object>,
    groups: Option<&Object>,
    summary: &mut Summary,
) -> String {
    let mut s = header("mapping.rhai", origin);
    s.push_str(
        "// Entra never flows a null value: `flow` leaves an attribute out when its value\n\
         // is null, and the target keeps what it has.\n\n",
    );
    let matching = |o: Option<&Object>| -> Vec<String> {
        o.map(|o| o.matching.iter().map(|(_, p)| p.clone()).collect())
            .unwrap_or_default()
    };
    summary.user_matching = matching(users);
    summary.group_matching = matching(groups);
    s.push_str("// Matching attributes, in Entra's matching precedence.\n");
    if !summary.user_matching.is_empty() {
        s.push_str(&format!(
            "fn matching() {{ {} }}\n",
            list(&summary.user_matching)
        ));
    }
    if !summary.group_matching.is_empty() {
        s.push_str(&format!(
            "fn group_matching() {{ {} }}\n",
            list(&summary.group_matching)
        ));
    }
    for o in [users, groups].into_iter().flatten() {
        summary.create_only.extend(o.create_only.iter().cloned());
        summary.defaults.extend(o.defaults.iter().cloned());
    }
    summary.create_only.sort();
    summary.create_only.dedup();
    s.push_str(&format!(
        "\n// \"Apply this mapping: only during object creation\" (flowType ObjectAddOnly).\nfn create_only() {{ {} }}\n",
        list(&summary.create_only)
    ));
    summary.user_mappings = users.map_or(0, |o| o.mappings);
    summary.group_mappings = groups.map_or(0, |o| o.mappings);
    s.push_str(&map_function("map_user", "user", users));
    s.push_str(&map_function("map_group", "group", groups));
    s.push_str(
        "\n// Sets an attribute unless its value is null.\n\
         fn flow(path, value) {\n    if !is_null(value) { this[path] = value; }\n}\n\n\
         // `active` as a real boolean: Entra's Switch gives \"True\" / \"False\".\n\
         fn flow_active(path, value) {\n    if !is_null(value) { this[path] = cbool(value); }\n}\n",
    );
    s
}

fn map_function(name: &str, var: &str, o: Option<&Object>) -> String {
    let mut s = String::new();
    match o {
        Some(o) => {
            s.push_str(&format!("\n// {}\nfn {name}({var}) {{\n    let r = #{{}};\n", o.label));
            for l in &o.lines {
                s.push_str(&format!("    {l}\n"));
            }
            s.push_str("    r\n}\n");
        }
        None => s.push_str(&format!(
            "\n// The schema has no mapping for these objects (see [sync] in the summary).\nfn {name}({var}) {{\n    #{{}}\n}}\n"
        )),
    }
    s
}

fn scoping_script(origin: &str, users: Option<&Object>, groups: Option<&Object>) -> String {
    let mut s = header("scoping.rhai", origin);
    s.push_str(
        "// Entra's scoping filters: clauses of one filter group are ANDed, groups are\n\
         // ORed; each group is a named rule, so `scimsync preview` says which decided.\n\
         // A null or empty value makes a clause false (IS NULL aside).\n",
    );
    for (name, var, o) in [
        ("user_in_scope", "user", users),
        ("group_in_scope", "group", groups),
    ] {
        let body = o
            .and_then(|o| o.scope.clone())
            .unwrap_or_else(|| "true".to_string());
        let what = o
            .map(|o| o.label.clone())
            .unwrap_or_else(|| "no object mapping".into());
        s.push_str(&format!(
            "\n// {what}\nfn {name}({var}) {{\n    {body}\n}}\n"
        ));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_small_schema_translates_and_compiles() {
        let doc = r#"{"synchronizationRules":[{"name":"r","objectMappings":[
          {"name":"Users","enabled":true,"flowTypes":"Add, Update","sourceObjectName":"User","targetObjectName":"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User",
           "attributeMappings":[
             {"source":{"expression":"[userPrincipalName]","name":"userPrincipalName","type":"Attribute"},"targetAttributeName":"userName","matchingPriority":1,"flowType":"Always"},
             {"source":{"expression":"Switch([IsSoftDeleted], , \"False\", \"True\", \"True\", \"False\")","name":"Switch","type":"Function"},"targetAttributeName":"active"},
             {"source":{"expression":"[department]"},"targetAttributeName":"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department","defaultValue":"None","flowType":"ObjectAddOnly"}],
           "scope":{"groups":[{"name":"Sales","clauses":[{"operatorName":"EQUALS","sourceOperandName":"department","targetOperand":{"values":["Sales"]}}]}]}}]}]}"#;
        let t = translate(doc, "test").unwrap();
        assert!(
            t.mapping.contains(r#"fn matching() { ["userName"] }"#),
            "{}",
            t.mapping
        );
        assert!(
            t.scoping
                .contains(r#"rule("Sales", equals(user.department, "Sales"))"#),
            "{}",
            t.scoping
        );
        assert_eq!(t.summary.user_mappings, 3);
        assert!(t
            .summary
            .advice
            .iter()
            .any(|a| a.contains(r#"["create", "update"]"#)));
        assert!(t
            .summary
            .advice
            .iter()
            .any(|a| a.contains("[sync] groups = false")));
        let engine = crate::script::engine();
        engine.compile(&t.mapping).unwrap();
        engine.compile(&t.scoping).unwrap();
    }

    #[test]
    fn errors_name_the_mapping_and_attribute() {
        let doc = r#"{"synchronizationRules":[{"objectMappings":[{"name":"Users","sourceObjectName":"User",
           "attributeMappings":[{"source":{"expression":"Frob([mail])"},"targetAttributeName":"title"}]}]}]}"#;
        let e = translate(doc, "test").err().unwrap().to_string();
        assert!(e.contains("objectMappings[0]"), "{e}");
        assert!(e.contains("\"title\""), "{e}");
        assert!(e.contains("Frob"), "{e}");
    }
}
