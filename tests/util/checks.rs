//! Assertions about the team and request counts. `#[track_caller]`, so a failure
//! points at the test line that asked.

use super::{Emulator, Workspace};
use serde_json::Value;

/// The team equals the directory: every user once with its surname, every group
/// once with exactly its members.
#[track_caller]
pub fn assert_converged(emu: &Emulator, doc: &Value) {
    let users = emu.users();
    let mut names: Vec<String> = users
        .iter()
        .map(|u| u["userName"].as_str().unwrap().to_lowercase())
        .collect();
    names.sort();
    let n = names.len();
    names.dedup();
    assert_eq!(n, names.len(), "duplicate accounts");
    let mut want: Vec<String> = doc["users"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["userPrincipalName"].as_str().unwrap().to_lowercase())
        .collect();
    want.sort();
    assert_eq!(names, want, "the team's members differ from the directory");
    let surname: std::collections::HashMap<String, Value> = doc["users"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| (u["id"].as_str().unwrap().to_string(), u["surname"].clone()))
        .collect();
    for u in &users {
        let ext = u["externalId"].as_str().unwrap();
        assert_eq!(u["name"]["familyName"], surname[ext], "{}", u["userName"]);
    }
    let groups = emu.groups();
    assert_eq!(
        groups.len(),
        doc["groups"].as_array().unwrap().len(),
        "groups"
    );
    let upn: std::collections::HashMap<String, String> = doc["users"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| {
            (
                u["id"].as_str().unwrap().to_string(),
                u["userPrincipalName"].as_str().unwrap().to_lowercase(),
            )
        })
        .collect();
    for g in doc["groups"].as_array().unwrap() {
        let name = g["displayName"].as_str().unwrap();
        let mut have = emu.group_members(name);
        have.iter_mut().for_each(|m| *m = m.to_lowercase());
        have.sort();
        let mut want: Vec<String> = g["members"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| upn[m.as_str().unwrap()].clone())
            .collect();
        want.sort();
        want.dedup();
        assert_eq!(have, want, "members of {name}");
    }
}

/// Converged: one more cycle writes nothing to the team.
#[track_caller]
pub fn assert_next_cycle_writes_nothing(emu: &Emulator, ws: &Workspace) {
    emu.reset_stats();
    ws.sync().ok();
    let (requests, writes) = emu.stats();
    assert_eq!(writes, 0, "the next cycle wrote: {requests}");
}

pub fn count(stats: &Value, key: &str) -> u64 {
    stats[key].as_u64().unwrap_or(0)
}

/// Every request in a stats answer, whatever its kind.
pub fn total(stats: &Value) -> u64 {
    stats
        .as_object()
        .map(|o| o.values().filter_map(Value::as_u64).sum())
        .unwrap_or(0)
}
