//! SCIM attribute paths (`userName`, `name.familyName`, `emails[type eq "work"].value`,
//! `urn:…:enterprise:2.0:User:department`) and the flat attribute maps built on them.
//!
//! Scripts may return a nested SCIM resource or a flat map keyed by paths, as the Entra
//! portal names target attributes. Internally every mapped object is a flat map
//! path → value: it makes "PATCH only what changed", "() clears an attribute" and
//! "old → new" in the log one simple comparison. The same path logic reads and writes
//! resources on both sides of the wire (client and emulator), so they cannot disagree.

use serde_json::{Map, Value};

pub use super::attrs::{Attrs, Path};

/// A parsed attribute path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttrPath {
    /// Extension schema URN, e.g. `urn:ietf:params:scim:schemas:extension:enterprise:2.0:User`.
    pub schema: Option<String>,
    pub attr: String,
    /// Value filter on a multi-valued attribute: `[type eq "work"]`.
    pub filter: Option<(String, String)>,
    pub sub: Option<String>,
}

impl AttrPath {
    pub fn parse(path: &str) -> Result<AttrPath, String> {
        let p = path.trim();
        if p.is_empty() {
            return Err("empty attribute path".into());
        }
        let (schema, rest) = split_schema(p);
        let (head, sub_part) = match rest.find('[') {
            Some(open) => {
                let close = rest[open..]
                    .find(']')
                    .map(|c| c + open)
                    .ok_or_else(|| format!("attribute path {path:?}: missing ']'"))?;
                let filter = parse_value_filter(&rest[open + 1..close]).ok_or_else(|| {
                    format!("attribute path {path:?}: filter must be `attr eq \"value\"`")
                })?;
                let tail = &rest[close + 1..];
                let sub = match tail.strip_prefix('.') {
                    Some(s) if !s.is_empty() => Some(s.to_string()),
                    None if tail.is_empty() => None,
                    _ => return Err(format!("attribute path {path:?}: unexpected {tail:?}")),
                };
                return Ok(AttrPath {
                    schema,
                    attr: rest[..open].to_string(),
                    filter: Some(filter),
                    sub,
                });
            }
            None => match rest.split_once('.') {
                Some((a, s)) => (a, Some(s.to_string())),
                None => (rest, None),
            },
        };
        if head.is_empty()
            || !head
                .chars()
                .all(|c| c.is_alphanumeric() || c == '_' || c == '$' || c == '-')
        {
            return Err(format!(
                "attribute path {path:?}: bad attribute name {head:?}"
            ));
        }
        Ok(AttrPath {
            schema,
            attr: head.to_string(),
            filter: None,
            sub: sub_part,
        })
    }

    /// The parent container (extension object or the resource itself).
    fn container<'a>(&self, resource: &'a Value) -> Option<&'a Value> {
        match &self.schema {
            None => Some(resource),
            Some(urn) => get_ci(resource, urn),
        }
    }

    /// Reads the value at this path from a SCIM resource.
    pub fn get<'a>(&self, resource: &'a Value) -> Option<&'a Value> {
        let base = get_ci(self.container(resource)?, &self.attr)?;
        match &self.filter {
            Some((fa, fv)) => {
                let elem = base
                    .as_array()?
                    .iter()
                    .find(|e| matches_filter(e, fa, fv))?;
                match &self.sub {
                    Some(s) => get_ci(elem, s),
                    None => Some(elem),
                }
            }
            None => match &self.sub {
                Some(s) => get_ci(base, s),
                None => Some(base),
            },
        }
    }

    /// Writes a value at this path, creating containers and filtered elements as needed.
    pub fn set(&self, resource: &mut Value, value: Value) {
        let container = match &self.schema {
            None => resource,
            Some(urn) => ensure_object_ci(resource, urn),
        };
        match &self.filter {
            Some((fa, fv)) => {
                let arr = ensure_ci(container, &self.attr, || Value::Array(vec![]));
                if !arr.is_array() {
                    *arr = Value::Array(vec![]);
                }
                let Some(items) = arr.as_array_mut() else {
                    return;
                };
                let idx = match items.iter().position(|e| matches_filter(e, fa, fv)) {
                    Some(i) => i,
                    None => {
                        let mut m = Map::new();
                        m.insert(fa.clone(), Value::String(fv.clone()));
                        items.push(Value::Object(m));
                        items.len() - 1
                    }
                };
                match &self.sub {
                    Some(s) => {
                        if let Some(obj) = items[idx].as_object_mut() {
                            insert_ci(obj, s, value);
                        }
                    }
                    None => items[idx] = value,
                }
            }
            None => match &self.sub {
                Some(s) => {
                    let obj = ensure_object_ci(container, &self.attr);
                    if let Some(o) = obj.as_object_mut() {
                        insert_ci(o, s, value);
                    }
                }
                None => {
                    if let Some(o) = container.as_object_mut() {
                        insert_ci(o, &self.attr, value);
                    }
                }
            },
        }
    }

    /// Removes the value at this path; returns whether something was removed.
    pub fn remove(&self, resource: &mut Value) -> bool {
        let container = match &self.schema {
            None => Some(resource),
            Some(urn) => get_ci_mut(resource, urn),
        };
        let Some(container) = container else {
            return false;
        };
        match &self.filter {
            Some((fa, fv)) => {
                let Some(items) = get_ci_mut(container, &self.attr).and_then(|v| v.as_array_mut())
                else {
                    return false;
                };
                match &self.sub {
                    None => {
                        let before = items.len();
                        items.retain(|e| !matches_filter(e, fa, fv));
                        before != items.len()
                    }
                    Some(s) => {
                        let mut removed = false;
                        for e in items.iter_mut().filter(|e| matches_filter(e, fa, fv)) {
                            if let Some(o) = e.as_object_mut() {
                                removed |= remove_ci(o, s);
                            }
                        }
                        // An element left with only its filter key carries no value any more.
                        items.retain(|e| e.as_object().map(|o| o.len() > 1).unwrap_or(true));
                        removed
                    }
                }
            }
            None => match &self.sub {
                Some(s) => get_ci_mut(container, &self.attr)
                    .and_then(|v| v.as_object_mut())
                    .map(|o| remove_ci(o, s))
                    .unwrap_or(false),
                None => container
                    .as_object_mut()
                    .map(|o| remove_ci(o, &self.attr))
                    .unwrap_or(false),
            },
        }
    }
}

/// Splits a leading schema URN off a path: the URN ends at the last ':' before the
/// attribute name.
fn split_schema(p: &str) -> (Option<String>, &str) {
    if !p.to_ascii_lowercase().starts_with("urn:") {
        return (None, p);
    }
    // The attribute part cannot contain ':' unless inside a filter value.
    let cut = p.find('[').unwrap_or(p.len());
    match p[..cut].rfind(':') {
        Some(i) => (Some(p[..i].to_string()), &p[i + 1..]),
        None => (None, p),
    }
}

/// `type eq "work"` → ("type", "work").
fn parse_value_filter(s: &str) -> Option<(String, String)> {
    let s = s.trim();
    let (attr, rest) = s.split_once(char::is_whitespace)?;
    let rest = rest.trim_start();
    let rest = rest
        .strip_prefix("eq")
        .or_else(|| rest.strip_prefix("EQ"))
        .or_else(|| rest.strip_prefix("Eq"))?
        .trim();
    let v = if let Some(q) = rest.strip_prefix('"') {
        crate::scim::filter::unescape(q.strip_suffix('"')?)
    } else {
        rest.to_string()
    };
    Some((attr.to_string(), v))
}

fn matches_filter(elem: &Value, attr: &str, value: &str) -> bool {
    match get_ci(elem, attr) {
        Some(Value::String(s)) => s.eq_ignore_ascii_case(value),
        Some(Value::Bool(b)) => value.eq_ignore_ascii_case(if *b { "true" } else { "false" }),
        Some(Value::Number(n)) => n.to_string() == value,
        _ => false,
    }
}

/// SCIM attribute names are case-insensitive (RFC 7643 §2.1).
pub fn get_ci<'a>(v: &'a Value, key: &str) -> Option<&'a Value> {
    let o = v.as_object()?;
    o.get(key).or_else(|| {
        o.iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(key))
            .map(|(_, v)| v)
    })
}

fn get_ci_mut<'a>(v: &'a mut Value, key: &str) -> Option<&'a mut Value> {
    let o = v.as_object_mut()?;
    let k = o.keys().find(|k| k.eq_ignore_ascii_case(key))?.clone();
    o.get_mut(&k)
}

fn insert_ci(o: &mut Map<String, Value>, key: &str, value: Value) {
    let k = o
        .keys()
        .find(|k| k.eq_ignore_ascii_case(key))
        .cloned()
        .unwrap_or_else(|| key.to_string());
    o.insert(k, value);
}

fn remove_ci(o: &mut Map<String, Value>, key: &str) -> bool {
    match o.keys().find(|k| k.eq_ignore_ascii_case(key)).cloned() {
        Some(k) => o.remove(&k).is_some(),
        None => false,
    }
}

fn ensure_ci<'a>(v: &'a mut Value, key: &str, init: impl FnOnce() -> Value) -> &'a mut Value {
    if !v.is_object() {
        *v = Value::Object(Map::new());
    }
    let Value::Object(o) = v else {
        unreachable!("made an object above")
    };
    let k = o
        .keys()
        .find(|k| k.eq_ignore_ascii_case(key))
        .cloned()
        .unwrap_or_else(|| key.to_string());
    o.entry(k).or_insert_with(init)
}

fn ensure_object_ci<'a>(v: &'a mut Value, key: &str) -> &'a mut Value {
    let slot = ensure_ci(v, key, || Value::Object(Map::new()));
    if !slot.is_object() {
        *slot = Value::Object(Map::new());
    }
    slot
}

/// Turns what a script returned (nested SCIM resource, flat path map, or a mix)
/// into a flat map. Multi-valued complex attributes with a `type` become
/// `attr[type eq "t"].sub` paths; other arrays stay whole values.
pub fn flatten(resource: &Map<String, Value>) -> Result<Attrs, String> {
    let mut out = Attrs::new();
    for (k, v) in resource {
        if k == "schemas" {
            continue;
        }
        let is_ext = k.to_ascii_lowercase().starts_with("urn:") && !k.contains('[');
        // `urn:…:2.0:User` holding an object is an extension; the URN itself has dots.
        let ext_object = is_ext
            && v.is_object()
            && k.rsplit(':')
                .next()
                .map(|t| t == "User" || t == "Group")
                .unwrap_or(false);
        let is_path = !is_ext && (k.contains('.') || k.contains('['));
        if ext_object {
            // An extension object: `urn:…:User` → { department: … }
            if let Some(inner) = v.as_object() {
                for (ik, iv) in flatten(inner)? {
                    out.insert(format!("{k}:{ik}"), iv);
                }
            }
            continue;
        }
        if is_path || is_ext {
            AttrPath::parse(k)?;
            out.insert(k.clone(), v.clone());
            continue;
        }
        match v {
            Value::Object(inner) => {
                for (ik, iv) in inner {
                    out.insert(format!("{k}.{ik}"), iv.clone());
                }
            }
            Value::Array(items)
                if !items.is_empty()
                    && items
                        .iter()
                        .all(|e| e.get("type").map(|t| t.is_string()).unwrap_or(false)) =>
            {
                for e in items {
                    let t = e.get("type").and_then(|t| t.as_str()).unwrap_or_default();
                    if let Some(o) = e.as_object() {
                        for (ik, iv) in o.iter().filter(|(ik, _)| ik.as_str() != "type") {
                            out.insert(
                                format!("{k}[type eq \"{}\"].{ik}", crate::scim::filter::escape(t)),
                                iv.clone(),
                            );
                        }
                    }
                }
            }
            _ => {
                out.insert(k.clone(), v.clone());
            }
        }
    }
    Ok(out)
}

/// Builds a SCIM resource body from flat attributes (nulls are left out).
pub fn unflatten(attrs: &Attrs, core_schema: &str) -> Value {
    let mut resource = Value::Object(Map::new());
    let mut schemas = vec![Value::String(core_schema.to_string())];
    for (k, v) in attrs {
        if v.is_null() || k.starts_with('$') {
            continue;
        }
        let Ok(p) = AttrPath::parse(k) else { continue };
        if let Some(urn) = &p.schema {
            if !schemas.iter().any(|s| s.as_str() == Some(urn.as_str())) {
                schemas.push(Value::String(urn.clone()));
            }
        }
        p.set(&mut resource, v.clone());
    }
    if let Value::Object(o) = &mut resource {
        o.insert("schemas".into(), Value::Array(schemas));
    }
    resource
}

/// Key in `Attrs` listing the paths whose values are redacted in logs.
pub const REDACTED: &str = "$redact";

fn marker<'a>(v: &'a Value, key: &str) -> Option<&'a Value> {
    match v {
        Value::Object(o) if o.len() == 1 => o.get(key),
        _ => None,
    }
}

/// Key in `Attrs` listing the paths whose values are defaults for a null source:
/// sent when the object is created, never on an update (Entra's "default value if
/// null").
pub const DEFAULTS: &str = "$default";

/// Resolves the markers the helpers return: `ignore_flow_if_null_or_empty` drops the
/// attribute (left alone), `redact(v)` sends `v` but records the path under
/// `REDACTED` so logs and plans show `[Redact]`, `default_on_create(v, d)` records
/// the path under `DEFAULTS`.
pub fn apply_markers(flat: Attrs) -> Attrs {
    let mut out = Attrs::new();
    let mut redacted = vec![];
    let mut defaults = vec![];
    for (k, v) in flat {
        // A marker nested one level down arrives as `path.$ignore` / `path.$redact`.
        if k.ends_with(".$ignore") || marker(&v, "$ignore").is_some() {
            continue;
        }
        let (path, value, list) = if let Some(base) = k.strip_suffix(".$redact") {
            (base.to_string(), v, Some(&mut redacted))
        } else if let Some(base) = k.strip_suffix(".$default") {
            (base.to_string(), v, Some(&mut defaults))
        } else if let Some(inner) = marker(&v, "$redact") {
            (k.to_string(), inner.clone(), Some(&mut redacted))
        } else if let Some(inner) = marker(&v, "$default") {
            (k.to_string(), inner.clone(), Some(&mut defaults))
        } else {
            (k.to_string(), v, None)
        };
        if let Some(list) = list {
            list.push(Value::String(path.clone()));
        }
        out.insert(path, value);
    }
    if !redacted.is_empty() {
        out.insert(REDACTED, Value::Array(redacted));
    }
    if !defaults.is_empty() {
        out.insert(DEFAULTS, Value::Array(defaults));
    }
    out
}

/// The attributes an existing object should have: defaults for a null source are
/// for a create only, so they are left out — or, where `applied` (what was sent
/// before) has a value, that value stays (the target keeps it).
pub fn without_defaults(mut attrs: Attrs, applied: Option<&Attrs>) -> Attrs {
    if let Some(Value::Array(paths)) = attrs.remove(DEFAULTS) {
        for p in paths.iter().filter_map(Value::as_str) {
            match applied.and_then(|a| a.get(p)) {
                Some(kept) => attrs.insert(p, kept.clone()),
                None => attrs.remove(p),
            };
        }
    }
    attrs
}

/// Paths whose values must not be shown.
pub fn redacted_paths(a: &Attrs) -> Vec<String> {
    a.get(REDACTED)
        .and_then(|v| v.as_array())
        .map(|x| {
            x.iter()
                .filter_map(|p| p.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// What a value looks like in a log, a plan or a preview: `[Redact]` for a redacted
/// path, and for a value the state kept only as its hash. The one place that decides
/// what is masked: the plan, the provisioning log and the CLI printers all call it.
pub fn shown(a: &Attrs, path: &str, v: &Value) -> Value {
    let hidden = marker(v, "$hash").is_some()
        || (!v.is_null() && redacted_paths(a).iter().any(|p| p == path));
    if hidden {
        Value::String(MASK.into())
    } else {
        v.clone()
    }
}

/// What a redacted value is shown as (Entra's provisioning log shows the same).
pub const MASK: &str = "[Redact]";

/// The form stored in the state: redacted values replaced by their hash, so the
/// state never holds them yet a change is still detected.
pub fn stored(a: &Attrs) -> Attrs {
    let red = redacted_paths(a);
    if red.is_empty() {
        return a.clone();
    }
    let mut out = a.clone();
    for p in red {
        if let Some(v) = out.get_mut(&p) {
            if marker(v, "$hash").is_none() && !v.is_null() {
                *v = hashed(v);
            }
        }
    }
    out
}

/// `{"$hash": "sha256:…"}` of a value.
pub fn hashed(v: &Value) -> Value {
    use sha2::{Digest, Sha256};
    let mut m = Map::new();
    m.insert(
        "$hash".into(),
        Value::String(format!("{:x}", Sha256::digest(v.to_string().as_bytes()))),
    );
    Value::Object(m)
}

/// Matching keys compare like SCIM filters: case-insensitive except ids.
pub fn match_key(path: &str, value: &str) -> String {
    if path.eq_ignore_ascii_case("externalId") || path.eq_ignore_ascii_case("id") {
        value.to_string()
    } else {
        value.to_lowercase()
    }
}

/// Whether a stored value equals a desired one (hash-aware).
pub fn same_value(stored: &Value, desired: &Value) -> bool {
    match marker(stored, "$hash") {
        Some(_) => stored == &hashed(desired),
        None => stored == desired,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn parses_paths() {
        let p = AttrPath::parse("emails[type eq \"work\"].value").expect("parse");
        assert_eq!(p.attr, "emails");
        assert_eq!(p.filter, Some(("type".into(), "work".into())));
        assert_eq!(p.sub.as_deref(), Some("value"));
        let p = AttrPath::parse(
            "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department",
        )
        .expect("parse");
        assert_eq!(
            p.schema.as_deref(),
            Some("urn:ietf:params:scim:schemas:extension:enterprise:2.0:User")
        );
        assert_eq!(p.attr, "department");
        assert!(AttrPath::parse("emails[type eq \"work\"").is_err());
        assert!(AttrPath::parse("bad name").is_err());
    }

    #[test]
    fn set_get_remove_roundtrip() {
        let mut r = json!({});
        let p = AttrPath::parse("emails[type eq \"work\"].value").expect("parse");
        p.set(&mut r, json!("a@x.com"));
        assert_eq!(p.get(&r), Some(&json!("a@x.com")));
        assert_eq!(r, json!({"emails":[{"type":"work","value":"a@x.com"}]}));
        assert!(p.remove(&mut r));
        assert_eq!(r, json!({"emails":[]}));
        let n = AttrPath::parse("name.familyName").expect("parse");
        n.set(&mut r, json!("Doe"));
        assert_eq!(
            get_ci(&r, "NAME").and_then(|v| get_ci(v, "familyname")),
            Some(&json!("Doe"))
        );
    }

    #[test]
    fn flatten_nested_and_unflatten() {
        let nested = json!({"userName":"a@x.com","name":{"givenName":"A","familyName":"B"},
            "emails":[{"type":"work","value":"a@x.com","primary":true}],
            "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User":{"department":"Sales"}});
        let flat = flatten(nested.as_object().expect("obj")).expect("flatten");
        assert_eq!(flat.get("name.familyName"), Some(&json!("B")));
        assert_eq!(
            flat.get("emails[type eq \"work\"].value"),
            Some(&json!("a@x.com"))
        );
        assert_eq!(
            flat.get("urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department"),
            Some(&json!("Sales"))
        );
        let body = unflatten(&flat, "urn:ietf:params:scim:schemas:core:2.0:User");
        for (k, v) in &flat {
            let p = AttrPath::parse(k).expect("parse");
            assert_eq!(p.get(&body), Some(v), "{k}");
        }
        assert_eq!(body["schemas"].as_array().map(|a| a.len()), Some(2));
    }
}
