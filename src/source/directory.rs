//! The Graph-shaped directory document (DESIGN.md "Directory file"): parsing it and
//! deciding who is assigned, exactly as the Entra provisioning service scopes a
//! gallery app. The `file` source reads it from disk; the Graph emulator serves it.

use crate::config::Scope;
use crate::model::{Assignment, ObjectKind, RecordError, Snapshot, SourceGroup, SourceUser};
use serde_json::{Map, Value};
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

/// The role Entra gives when an app defines none; users holding only it are not
/// "effectively entitled" and are not provisioned (Dropbox tutorial).
pub const DEFAULT_ACCESS: &str = "Default Access";

/// Parses a directory document. Whole-document problems (not JSON, wrong shape) are
/// errors; a bad record is reported in `Snapshot::errors` and left out.
pub fn parse(text: &str, scope: Scope) -> Result<Snapshot, String> {
    let doc: Value = serde_json::from_str(text).map_err(|e| {
        format!(
            "not valid JSON at line {}, column {}: {e}",
            e.line(),
            e.column()
        )
    })?;
    parse_value(doc, scope)
}

/// Like `parse`, from an already parsed document (the Graph source builds one).
pub fn parse_value(doc: Value, scope: Scope) -> Result<Snapshot, String> {
    let Value::Object(doc) = doc else {
        return Err(
            "the top level must be an object with \"users\", \"groups\", \"assignments\"".into(),
        );
    };
    for key in doc.keys() {
        if !matches!(key.as_str(), "users" | "groups" | "assignments") {
            return Err(format!(
                "unknown top-level key \"{key}\" (expected \"users\", \"groups\", \"assignments\")"
            ));
        }
    }
    let mut doc = doc;
    // Taken out of the document, not copied: it can hold 100,000 users.
    let mut array = |key: &str| -> Result<Vec<Value>, String> {
        match doc.remove(key) {
            None => Ok(vec![]),
            Some(Value::Array(a)) => Ok(a),
            Some(_) => Err(format!("\"{key}\" must be an array")),
        }
    };
    let raw_users = array("users")?;
    let raw_groups = array("groups")?;
    let raw_assignments = array("assignments")?;
    let mut snap = Snapshot::default();

    // Assignments: principal id → role names.
    let mut roles: HashMap<String, BTreeSet<String>> = HashMap::new();
    for (i, a) in raw_assignments.iter().enumerate() {
        let principal = a.get("principalId").and_then(|v| v.as_str());
        let role = a
            .get("appRole")
            .and_then(|v| v.as_str())
            .unwrap_or(DEFAULT_ACCESS);
        match principal {
            Some(p) if !p.is_empty() => {
                roles
                    .entry(p.to_string())
                    .or_default()
                    .insert(role.to_string());
            }
            _ => snap.errors.push(RecordError {
                kind: ObjectKind::User,
                object: format!("assignments[{i}]"),
                message: "assignment without principalId".into(),
            }),
        }
    }

    let mut users: Vec<(String, String, Map<String, Value>)> = Vec::new();
    let mut seen: HashSet<String> = HashSet::new();
    for (i, u) in raw_users.into_iter().enumerate() {
        let Value::Object(rec) = u else {
            snap.errors.push(RecordError {
                kind: ObjectKind::User,
                object: format!("users[{i}]"),
                message: "not an object".into(),
            });
            continue;
        };
        let id = rec
            .get("id")
            .and_then(|v| v.as_str())
            .unwrap_or("")
            .to_string();
        let where_ = if id.is_empty() {
            format!("users[{i}]")
        } else {
            id.clone()
        };
        if id.is_empty() {
            snap.errors.push(RecordError {
                kind: ObjectKind::User,
                object: where_,
                message: "missing \"id\"".into(),
            });
            continue;
        }
        let upn = rec
            .get("userPrincipalName")
            .and_then(|v| v.as_str())
            .unwrap_or("")
            .to_string();
        if upn.is_empty() {
            snap.errors.push(RecordError {
                kind: ObjectKind::User,
                object: where_,
                message: "missing \"userPrincipalName\"".into(),
            });
            continue;
        }
        if !seen.insert(id.clone()) {
            snap.errors.push(RecordError {
                kind: ObjectKind::User,
                object: where_,
                message: format!("duplicate id (users[{i}])"),
            });
            continue;
        }
        users.push((id, upn, rec));
    }

    type RawGroup = (String, String, Map<String, Value>, Vec<String>);
    let mut groups: Vec<RawGroup> = Vec::new();
    for (i, g) in raw_groups.into_iter().enumerate() {
        let Value::Object(rec) = g else {
            snap.errors.push(RecordError {
                kind: ObjectKind::Group,
                object: format!("groups[{i}]"),
                message: "not an object".into(),
            });
            continue;
        };
        let id = rec
            .get("id")
            .and_then(|v| v.as_str())
            .unwrap_or("")
            .to_string();
        let name = rec
            .get("displayName")
            .and_then(|v| v.as_str())
            .unwrap_or("")
            .to_string();
        if id.is_empty() || name.is_empty() {
            snap.errors.push(RecordError {
                kind: ObjectKind::Group,
                object: if id.is_empty() {
                    format!("groups[{i}]")
                } else {
                    id
                },
                message: "missing \"id\" or \"displayName\"".into(),
            });
            continue;
        }
        if !seen.insert(id.clone()) {
            snap.errors.push(RecordError {
                kind: ObjectKind::Group,
                object: id,
                message: format!("duplicate id (groups[{i}])"),
            });
            continue;
        }
        let members = match rec.get("members") {
            None => vec![],
            Some(Value::Array(m)) => m
                .iter()
                .filter_map(|v| match v {
                    Value::String(s) => Some(s.clone()),
                    Value::Object(o) => o.get("id").and_then(|i| i.as_str()).map(str::to_string),
                    _ => None,
                })
                .collect(),
            Some(_) => {
                snap.errors.push(RecordError {
                    kind: ObjectKind::Group,
                    object: id,
                    message: "\"members\" must be an array of ids".into(),
                });
                continue;
            }
        };
        groups.push((id, name, rec, members));
    }

    let entitled = |r: &BTreeSet<String>| r.iter().any(|x| x != DEFAULT_ACCESS);

    // Which assigned groups each user is a direct member of.
    let mut via_group: BTreeMap<&str, Vec<(&str, &BTreeSet<String>)>> = BTreeMap::new();
    for (gid, gname, _, members) in &groups {
        if let Some(r) = roles.get(gid) {
            for m in members {
                via_group
                    .entry(m.as_str())
                    .or_default()
                    .push((gname.as_str(), r));
            }
        }
    }

    for (id, upn, mut rec) in users {
        let direct = roles.get(&id);
        let groups_of = via_group.get(id.as_str());
        let mut effective: BTreeSet<String> = direct.cloned().unwrap_or_default();
        if let Some(gs) = groups_of {
            for (_, r) in gs {
                effective.extend(r.iter().cloned());
            }
        }
        let assignment = match scope {
            Scope::All => Assignment::Assigned("scope is all users and groups".into()),
            Scope::Assigned => {
                if direct.map(entitled).unwrap_or(false) {
                    Assignment::Assigned(format!("assigned ({})", roles_text(direct)))
                } else if let Some((g, r)) =
                    groups_of.and_then(|gs| gs.iter().find(|(_, r)| entitled(r)))
                {
                    Assignment::Assigned(format!(
                        "member of assigned group {g} ({})",
                        roles_text(Some(r))
                    ))
                } else if effective.is_empty() {
                    Assignment::NotAssigned("not assigned to the app".into())
                } else {
                    Assignment::NotAssigned(format!("only role is {DEFAULT_ACCESS}"))
                }
            }
        };
        let app_roles: Vec<Value> = effective.iter().cloned().map(Value::String).collect();
        rec.insert("appRoles".into(), Value::Array(app_roles));
        let soft_deleted = rec
            .get("deletedDateTime")
            .map(|v| !v.is_null())
            .unwrap_or(false);
        snap.users.push(SourceUser {
            id,
            user_principal_name: upn,
            record: rec,
            assignment,
            soft_deleted,
        });
    }

    for (id, name, mut rec, members) in groups {
        let r = roles.get(&id);
        let assignment = match scope {
            Scope::All => Assignment::Assigned("scope is all users and groups".into()),
            Scope::Assigned => match r {
                Some(r) if entitled(r) => {
                    Assignment::Assigned(format!("assigned ({})", roles_text(Some(r))))
                }
                Some(_) => Assignment::NotAssigned(format!("only role is {DEFAULT_ACCESS}")),
                None => Assignment::NotAssigned("not assigned to the app".into()),
            },
        };
        let app_roles: Vec<Value> = r
            .map(|r| r.iter().cloned().map(Value::String).collect())
            .unwrap_or_default();
        rec.insert("appRoles".into(), Value::Array(app_roles));
        snap.groups.push(SourceGroup {
            id,
            display_name: name,
            record: rec,
            members,
            assignment,
        });
    }
    Ok(snap)
}

fn roles_text(r: Option<&BTreeSet<String>>) -> String {
    let names: Vec<&str> = r
        .map(|r| r.iter().map(String::as_str).collect())
        .unwrap_or_default();
    format!("role {}", names.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOC: &str = r#"{
      "users":[{"id":"u1","userPrincipalName":"a@x.com"},{"id":"u2","userPrincipalName":"b@x.com"},
               {"id":"u3","userPrincipalName":"c@x.com"},{"id":"u4","userPrincipalName":"d@x.com"},
               {"id":"u5"}],
      "groups":[{"id":"g1","displayName":"Sales","members":["u2","u4"]},{"id":"g2","displayName":"Other","members":["u3"]}],
      "assignments":[{"principalId":"u1","principalType":"User","appRole":"User"},
                     {"principalId":"u3","principalType":"User","appRole":"Default Access"},
                     {"principalId":"g1","principalType":"Group","appRole":"User"}]}"#;

    #[test]
    fn assigned_scope_rules() {
        let s = parse(DOC, Scope::Assigned).expect("parse");
        let a = |id: &str| {
            s.users
                .iter()
                .find(|u| u.id == id)
                .map(|u| u.assignment.clone())
        };
        assert!(a("u1").map(|x| x.is_assigned()).unwrap_or(false));
        assert!(a("u2")
            .map(|x| x.reason().contains("Sales"))
            .unwrap_or(false));
        assert_eq!(
            a("u3"),
            Some(Assignment::NotAssigned(
                "only role is Default Access".into()
            ))
        );
        assert!(a("u4").map(|x| x.is_assigned()).unwrap_or(false));
        assert_eq!(s.errors.len(), 1);
        assert!(s.errors[0].message.contains("userPrincipalName"));
        let g2 = s
            .groups
            .iter()
            .find(|g| g.id == "g2")
            .map(|g| g.assignment.is_assigned());
        assert_eq!(g2, Some(false));
    }

    #[test]
    fn all_scope_takes_everyone() {
        let s = parse(DOC, Scope::All).expect("parse");
        assert!(s.users.iter().all(|u| u.assignment.is_assigned()));
        assert!(s.groups.iter().all(|g| g.assignment.is_assigned()));
    }

    #[test]
    fn malformed_json_names_line() {
        let e = parse("{\n\"users\": [\n{,}]}", Scope::All)
            .err()
            .unwrap_or_default();
        assert!(e.contains("line 3"), "{e}");
    }
}
