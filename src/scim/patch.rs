//! SCIM PATCH (RFC 7644 §3.5.2) applied to an in-memory resource, as the emulators
//! serve it: add / replace / remove, with simple, sub-attribute, value-filter and
//! extension paths, ops in any case (Entra sends `Replace`), and the no-path form.

use crate::scim::attribute::{get_ci, AttrPath};
use crate::scim::filter;
use serde_json::{Map, Value};

/// A PATCH that cannot be applied: (scimType, detail).
pub type PatchError = (&'static str, String);

/// Applies a PatchOp body to `resource`.
pub fn apply(resource: &mut Value, body: &Value) -> Result<(), PatchError> {
    let schemas_ok = body
        .get("schemas")
        .and_then(|s| s.as_array())
        .map(|a| {
            a.iter()
                .any(|s| s.as_str() == Some(crate::scim::PATCH_SCHEMA))
        })
        .unwrap_or(false);
    if !schemas_ok {
        return Err((
            "invalidSyntax",
            "PATCH body must carry the PatchOp schema".into(),
        ));
    }
    let ops = get_ci(body, "Operations")
        .and_then(|o| o.as_array())
        .ok_or(("invalidSyntax", "missing Operations".to_string()))?;
    for op in ops {
        let name = get_ci(op, "op")
            .and_then(|o| o.as_str())
            .ok_or(("invalidSyntax", "operation without op".to_string()))?
            .to_ascii_lowercase();
        let path = get_ci(op, "path").and_then(|p| p.as_str());
        let value = get_ci(op, "value").cloned();
        match (name.as_str(), path) {
            ("add" | "replace", None) => {
                let Some(Value::Object(m)) = value else {
                    return Err((
                        "invalidValue",
                        "an op without path needs an object value".into(),
                    ));
                };
                for (k, v) in m {
                    let p = AttrPath::parse(&k).map_err(|e| ("invalidPath", e))?;
                    if name == "add" && v.is_array() {
                        add_values(resource, &p, v);
                    } else if v.is_object() && p.sub.is_none() && p.filter.is_none() {
                        // Merge sub-attributes (`"name": {"familyName": …}`).
                        if let Some(o) = v.as_object() {
                            for (sk, sv) in o {
                                let sp = AttrPath {
                                    sub: Some(sk.clone()),
                                    ..p.clone()
                                };
                                sp.set(resource, sv.clone());
                            }
                        }
                    } else {
                        p.set(resource, v);
                    }
                }
            }
            ("add" | "replace", Some(path)) => {
                let v = value.ok_or(("invalidValue", format!("{name} {path}: missing value")))?;
                let p = AttrPath::parse(path).map_err(|e| ("invalidPath", e))?;
                if p.filter.is_some() && p.get(resource).is_none() && name == "replace" {
                    return Err(("noTarget", format!("{path}: no element matches")));
                }
                if name == "add"
                    && (v.is_array() || is_multi(resource, &p))
                    && p.filter.is_none()
                    && p.sub.is_none()
                {
                    add_values(resource, &p, v);
                } else if name == "replace" && v.is_array() && p.filter.is_none() && p.sub.is_none()
                {
                    p.set(resource, v);
                } else if v.is_object()
                    && p.sub.is_none()
                    && p.filter.is_none()
                    && !is_multi(resource, &p)
                {
                    if let Some(o) = v.as_object() {
                        for (sk, sv) in o {
                            AttrPath {
                                sub: Some(sk.clone()),
                                ..p.clone()
                            }
                            .set(resource, sv.clone());
                        }
                    }
                } else {
                    p.set(resource, v);
                }
            }
            ("remove", Some(path)) => remove(resource, path, value.as_ref())?,
            ("remove", None) => return Err(("noTarget", "remove needs a path".into())),
            (other, _) => return Err(("invalidSyntax", format!("unknown op {other:?}"))),
        }
    }
    Ok(())
}

fn is_multi(resource: &Value, p: &AttrPath) -> bool {
    AttrPath {
        sub: None,
        filter: None,
        ..p.clone()
    }
    .get(resource)
    .map(|v| v.is_array())
    .unwrap_or(false)
}

/// Adds values to a multi-valued attribute, skipping ones already there.
fn add_values(resource: &mut Value, p: &AttrPath, v: Value) {
    let items = match v {
        Value::Array(a) => a,
        other => vec![other],
    };
    let base = AttrPath {
        sub: None,
        filter: None,
        ..p.clone()
    };
    let mut current = match base.get(resource) {
        Some(Value::Array(a)) => a.clone(),
        _ => vec![],
    };
    for item in items {
        let key = item.get("value").cloned();
        let dup = current.iter().any(|c| match &key {
            Some(k) => c.get("value") == Some(k) && item.get("type") == c.get("type"),
            None => c == &item,
        });
        if !dup {
            current.push(item);
        }
    }
    base.set(resource, Value::Array(current));
}

fn remove(resource: &mut Value, path: &str, value: Option<&Value>) -> Result<(), PatchError> {
    // `members[value eq "x"]` or any value filter, possibly with a sub-attribute.
    if let Some(open) = path.find('[') {
        let close = path
            .rfind(']')
            .ok_or(("invalidPath", format!("{path}: missing ]")))?;
        let attr = &path[..open];
        let f = filter::parse(&path[open + 1..close]).map_err(|e| ("invalidFilter", e))?;
        let sub = path[close + 1..].strip_prefix('.').map(str::to_string);
        let p = AttrPath::parse(attr).map_err(|e| ("invalidPath", e))?;
        let mut arr = match p.get(resource) {
            Some(Value::Array(a)) => a.clone(),
            _ => return Ok(()),
        };
        match sub {
            None => arr.retain(|e| !f.matches(e)),
            Some(s) => {
                for e in arr.iter_mut().filter(|e| f.matches(e)) {
                    if let Some(o) = e.as_object_mut() {
                        let k = o.keys().find(|k| k.eq_ignore_ascii_case(&s)).cloned();
                        if let Some(k) = k {
                            o.remove(&k);
                        }
                    }
                }
            }
        }
        p.set(resource, Value::Array(arr));
        return Ok(());
    }
    let p = AttrPath::parse(path).map_err(|e| ("invalidPath", e))?;
    // Entra's form: remove `members` with a value list.
    if let (Some(Value::Array(values)), Some(Value::Array(current))) =
        (value, p.get(resource).cloned().as_ref())
    {
        let drop: Vec<&Value> = values.iter().filter_map(|v| v.get("value")).collect();
        let kept: Vec<Value> = current
            .iter()
            .filter(|c| !c.get("value").map(|x| drop.contains(&x)).unwrap_or(false))
            .cloned()
            .collect();
        p.set(resource, Value::Array(kept));
        return Ok(());
    }
    p.remove(resource);
    Ok(())
}

/// Builds an empty object for tests and callers.
pub fn object() -> Value {
    Value::Object(Map::new())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn body(ops: Value) -> Value {
        json!({"schemas": [crate::scim::PATCH_SCHEMA], "Operations": ops})
    }

    #[test]
    fn entra_and_rfc_forms() {
        let mut r = json!({"userName":"a@x.com","name":{"familyName":"A"},"members":[{"value":"1"},{"value":"2"},{"value":"3"}]});
        apply(
            &mut r,
            &body(json!([{"op":"Replace","path":"name.familyName","value":"B"}])),
        )
        .expect("replace");
        assert_eq!(r["name"]["familyName"], json!("B"));
        apply(
            &mut r,
            &body(json!([{"op":"remove","path":"members[value eq \"2\"]"}])),
        )
        .expect("remove filter");
        assert_eq!(r["members"], json!([{"value":"1"},{"value":"3"}]));
        apply(
            &mut r,
            &body(json!([{"op":"Remove","path":"members","value":[{"value":"1"}]}])),
        )
        .expect("remove list");
        assert_eq!(r["members"], json!([{"value":"3"}]));
        apply(
            &mut r,
            &body(json!([{"op":"add","path":"members","value":[{"value":"3"},{"value":"4"}]}])),
        )
        .expect("add");
        assert_eq!(r["members"], json!([{"value":"3"},{"value":"4"}]));
        apply(
            &mut r,
            &body(
                json!([{"op":"add","path":"emails","value":[{"type":"work","value":"a@x.com"}]}]),
            ),
        )
        .expect("add email");
        apply(
            &mut r,
            &body(
                json!([{"op":"replace","path":"emails[type eq \"work\"].value","value":"b@x.com"}]),
            ),
        )
        .expect("replace email");
        assert_eq!(r["emails"], json!([{"type":"work","value":"b@x.com"}]));
        let e = apply(
            &mut r,
            &body(
                json!([{"op":"replace","path":"phoneNumbers[type eq \"work\"].value","value":"1"}]),
            ),
        );
        assert_eq!(e.err().map(|x| x.0), Some("noTarget"));
        apply(
            &mut r,
            &body(json!([{"op":"replace","value":{"active":false}}])),
        )
        .expect("no path");
        assert_eq!(r["active"], json!(false));
        assert!(apply(&mut r, &json!({"Operations": []})).is_err());
    }
}
