//! Directory documents to start from, and what an independent reading of the
//! Entra rules says they must provision.

use serde_json::{json, Value};
use std::path::Path;

/// The bundled sample directory.
pub fn sample_directory() -> Value {
    let text = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/directory.json"),
    )
    .unwrap();
    serde_json::from_str(&text).unwrap()
}

/// A small directory: users u0..u{n-1} assigned, plus the given groups.
pub fn small_directory(n: usize) -> Value {
    let users: Vec<Value> = (0..n)
        .map(|i| {
            json!({"id": format!("u{i}"), "userPrincipalName": format!("user{i}@contoso.com"), "mail": format!("user{i}@contoso.com"),
                   "givenName": format!("Given{i}"), "surname": format!("Family{i}"), "accountEnabled": true})
        })
        .collect();
    let assignments: Vec<Value> = (0..n)
        .map(
            |i| json!({"principalId": format!("u{i}"), "principalType": "User", "appRole": "User"}),
        )
        .collect();
    json!({"users": users, "groups": [], "assignments": assignments})
}

/// `n` users and `g` groups of 20 members, everyone assigned; group k holds
/// u(stride·k)..u(stride·k + 19) (mod n).
pub fn grouped_directory(n: usize, g: usize, stride: usize) -> Value {
    let mut doc = small_directory(n);
    let groups: Vec<Value> = (0..g)
        .map(|k| {
            let members: Vec<String> = (0..20)
                .map(|j| format!("u{}", (k * stride + j) % n))
                .collect();
            json!({"id": format!("g{k}"), "displayName": format!("Team {k}"), "members": members})
        })
        .collect();
    for k in 0..g {
        doc["assignments"].as_array_mut().unwrap().push(
            json!({"principalId": format!("g{k}"), "principalType": "Group", "appRole": "User"}),
        );
    }
    doc["groups"] = Value::Array(groups);
    doc
}

/// Who an independent reading of the Entra rules says must be provisioned: directly
/// assigned (not only Default Access) or a direct member of an assigned group, and
/// enabled (disabled users are not created).
pub fn expected_user_names(doc: &Value) -> Vec<String> {
    let assignments = doc["assignments"].as_array().unwrap();
    let entitled = |id: &str| {
        assignments
            .iter()
            .any(|a| a["principalId"] == id && a["appRole"] != "Default Access")
    };
    let groups = doc["groups"].as_array().unwrap();
    let mut out: Vec<String> = doc["users"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|u| {
            let id = u["id"].as_str().unwrap();
            let via_group = groups.iter().any(|g| {
                entitled(g["id"].as_str().unwrap())
                    && g["members"].as_array().unwrap().iter().any(|m| m == id)
            });
            (entitled(id) || via_group) && u["accountEnabled"] != false
        })
        .map(|u| u["userPrincipalName"].as_str().unwrap().to_lowercase())
        .collect();
    out.sort();
    out
}

/// The userNames a group must have in the target: its direct members that are
/// provisioned (per `expected_user_names`), sorted.
pub fn expected_members(doc: &Value, group: &str) -> Vec<String> {
    let expected = expected_user_names(doc);
    let g = doc["groups"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["displayName"] == group)
        .unwrap();
    let users = doc["users"].as_array().unwrap();
    let mut want: Vec<String> = g["members"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|m| users.iter().find(|u| &u["id"] == m))
        .map(|u| u["userPrincipalName"].as_str().unwrap().to_lowercase())
        .filter(|n| expected.contains(n))
        .collect();
    want.sort();
    want
}
