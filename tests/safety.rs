//! Absence is never inferred from failure: a broken answer, a broken record or an
//! empty document stops or narrows the cycle, and no account is removed because of
//! it. Big shrinks wait for an admin.

use crate::util::*;
use serde_json::{json, Value};

fn graph_setup(doc: &Value) -> (Emulator, Workspace, GraphEmulator) {
    let emu = Emulator::start();
    let mut ws = Workspace::new(&emu, doc);
    let graph = GraphEmulator::start(&ws.dir, doc, 5);
    graph.configure_workspace(&ws, "env:GRAPH_SECRET");
    ws.env.push(("GRAPH_SECRET".into(), graph.secret.clone()));
    (emu, ws, graph)
}

/// Every account with its status, as the team holds it.
fn team(emu: &Emulator) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = emu
        .get("/_emulator/members")
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["userName"].as_str().unwrap().to_lowercase(),
                m["status"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    out.sort();
    out
}

#[test]
fn a_graph_answer_that_is_not_json_stops_the_cycle_and_deletes_nobody() {
    let doc = grouped_directory(12, 2, 4);
    let (emu, ws, graph) = graph_setup(&doc);
    ws.sync().ok();
    emu.accept_all();
    let before = team(&emu);
    let groups = emu.groups().len();
    // The reported case: the delta token expires, the full read that follows gets a
    // proxy's error page (or nothing, or JSON too deep to parse) with status 200.
    for (fault, says) in [
        ("html=100%", "not JSON"),
        ("empty=100%", "not JSON"),
        ("deep=100%", "not JSON"),
    ] {
        graph.expire_deltas();
        graph.fault_only(fault, "v1.0/users");
        emu.reset_stats();
        let r = ws.sync();
        assert_eq!(r.code, 1, "{fault}: {}{}", r.stdout, r.stderr);
        assert!(r.stderr.contains(says), "{fault}: {}", r.stderr);
        let (req, writes) = emu.stats();
        assert_eq!(writes, 0, "{fault}: nothing is written: {req}");
        assert_eq!(team(&emu), before, "{fault}");
        graph.fault_only("", "");
    }
    // Once Graph answers properly, the full read finds nothing to do.
    assert_next_cycle_writes_nothing(&emu, &ws);
    assert_eq!(team(&emu), before);
    assert_eq!(emu.groups().len(), groups);
}

#[test]
fn an_html_assignments_page_in_an_incremental_cycle_suspends_nobody() {
    let mut doc = grouped_directory(12, 2, 4);
    let (emu, ws, graph) = graph_setup(&doc);
    ws.sync().ok();
    emu.accept_all();
    let before = team(&emu);
    doc["users"][3]["surname"] = json!("Renamed");
    graph.write(&doc);
    graph.fault_only("html=100%", "appRoleAssignedTo");
    emu.reset_stats();
    let r = ws.sync();
    assert_eq!(r.code, 1, "{}{}", r.stdout, r.stderr);
    assert!(r.stderr.contains("appRoleAssignedTo"), "{}", r.stderr);
    assert_eq!(emu.stats().1, 0, "{}", emu.stats().0);
    assert_eq!(emu.groups().len(), 2);
    // Next cycle, with a readable answer: exactly the rename.
    graph.fault_only("", "");
    emu.reset_stats();
    ws.sync().ok();
    let (req, writes) = emu.stats();
    assert_eq!(writes, 1, "{req}");
    assert_eq!(count(&req, "PATCH /Users"), 1, "{req}");
    assert_eq!(team(&emu), before);
    assert_eq!(
        emu.user("user3@contoso.com").unwrap()["name"]["familyName"],
        "Renamed"
    );
}

#[test]
fn a_user_record_that_fails_import_keeps_its_account_and_groups() {
    let mut doc = grouped_directory(12, 2, 4);
    let emu = Emulator::start();
    let ws = Workspace::new(&emu, &doc);
    ws.sync().ok();
    emu.accept_all();
    let members = emu.group_members("Team 0");
    assert!(members.contains(&"user3@contoso.com".to_string()));
    // The record loses its userPrincipalName.
    doc["users"][3]
        .as_object_mut()
        .unwrap()
        .remove("userPrincipalName");
    ws.write_directory(&doc);
    emu.reset_stats();
    let r = ws.sync();
    assert_eq!(r.code, 3, "an object failed: {}", r.stdout);
    assert_eq!(emu.stats().1, 0, "{}", emu.stats().0);
    assert_eq!(emu.status("user3@contoso.com").as_deref(), Some("active"));
    assert_eq!(emu.group_members("Team 0"), members);
    let l = ws.run(&["logs", "--object", "u3", "--status", "failure"]);
    assert!(
        l.stdout.contains("import") && l.stdout.contains("userPrincipalName"),
        "{}",
        l.stdout
    );
    let s: Value = serde_json::from_str(&ws.run(&["status", "--json"]).stdout).unwrap();
    assert!(
        s["escrows"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["source_id"] == "u3"),
        "{s}"
    );
    // The field comes back: nothing to re-invite, nothing lost.
    doc["users"][3]["userPrincipalName"] = json!("user3@contoso.com");
    ws.write_directory(&doc);
    ws.run(&["restart", "--scope", "escrows"]).ok();
    emu.reset_stats();
    ws.sync().ok();
    let (req, _) = emu.stats();
    assert_eq!(count(&req, "POST /Users"), 0, "{req}");
    assert_eq!(count(&req, "DELETE /Users"), 0, "{req}");
    assert_eq!(emu.group_members("Team 0"), members);
}

#[test]
fn broken_group_records_and_shared_ids_keep_their_groups() {
    let mut doc = grouped_directory(12, 3, 4);
    let emu = Emulator::start();
    let ws = Workspace::new(&emu, &doc);
    ws.sync().ok();
    emu.accept_all();
    let t0 = emu.group_members("Team 0");
    let t1 = emu.group_members("Team 1");
    // "members": null, a group without displayName, and a new user whose id is a
    // group's (ids are unique per kind, as in Graph).
    doc["groups"][0]["members"] = Value::Null;
    doc["groups"][1]
        .as_object_mut()
        .unwrap()
        .remove("displayName");
    doc["users"].as_array_mut().unwrap().push(
        json!({"id": "g2", "userPrincipalName": "same.id@contoso.com",
        "surname": "Same", "givenName": "Id", "accountEnabled": true}),
    );
    doc["assignments"]
        .as_array_mut()
        .unwrap()
        .push(json!({"principalId": "g2", "principalType": "User", "appRole": "User"}));
    ws.write_directory(&doc);
    emu.reset_stats();
    let r = ws.sync();
    assert_eq!(r.code, 3, "{}", r.stdout);
    let (req, _) = emu.stats();
    assert_eq!(count(&req, "DELETE /Groups"), 0, "{req}");
    assert_eq!(count(&req, "POST /Users"), 1, "the new user: {req}");
    assert_eq!(emu.group_members("Team 0"), t0);
    assert_eq!(emu.group_members("Team 1"), t1);
    assert_eq!(emu.groups().len(), 3);
    assert!(team(&emu).iter().all(|(_, s)| s != "suspended"));
}

#[test]
fn an_empty_or_cut_document_is_refused_and_writes_nothing() {
    let doc = small_directory(12);
    let emu = Emulator::start();
    let ws = Workspace::new(&emu, &doc);
    ws.sync().ok();
    let state_before = std::fs::read(ws.dir.join("state.db")).unwrap();
    for (text, says) in [
        ("{}", "no \"users\" array"),
        ("{\"users\": []}", "no \"assignments\" array"),
        (
            "{\"users\": [], \"groups\": [], \"assignments\": ",
            "not valid JSON",
        ),
    ] {
        ws.write("directory.json", text);
        emu.reset_stats();
        let r = ws.sync();
        assert_eq!(r.code, 2, "{text}: {}{}", r.stdout, r.stderr);
        assert!(r.stderr.contains(says), "{text}: {}", r.stderr);
        assert!(r.stderr.contains("directory.json"), "{}", r.stderr);
        assert_eq!(emu.stats().1, 0);
        let p = ws.run(&["plan"]);
        assert_eq!(p.code, 2, "{text}: {}", p.stdout);
    }
    assert_eq!(
        std::fs::read(ws.dir.join("state.db")).unwrap(),
        state_before
    );
    assert_eq!(emu.users().len(), 12);
}

#[test]
fn a_directory_that_empties_at_once_is_held_by_the_shrink_guard() {
    let doc = grouped_directory(30, 2, 10);
    let emu = Emulator::start();
    let ws = Workspace::new(&emu, &doc);
    ws.remove_at_once();
    ws.sync().ok();
    emu.accept_all();
    ws.write_directory(&json!({"users": [], "groups": [], "assignments": []}));
    let p = ws.run(&["plan"]);
    assert!(
        p.stdout.contains("shrink_threshold_percent 20%") && p.stdout.contains("held by the gate"),
        "{}",
        p.stdout
    );
    emu.reset_stats();
    let r = ws.sync();
    assert_eq!(r.code, 4, "{}", r.stdout);
    assert_eq!(emu.stats().1, 0, "{}", emu.stats().0);
    let s: Value = serde_json::from_str(&ws.run(&["status", "--json"]).stdout).unwrap();
    assert_eq!(s["held"], 32, "{s}");
    // Held means held: the next cycle holds again, it does not forget.
    assert_eq!(ws.sync().code, 4);
    assert_eq!(emu.users().len(), 30);
    // An admin confirms once; the leavers go.
    ws.run(&["allow-deletes"]).ok();
    ws.sync().ok();
    assert_eq!(emu.users().len(), 0);
    assert_eq!(emu.groups().len(), 0);
    // A small shrink is not held (one leaver in a small team is not an accident).
    let doc = small_directory(8);
    let emu = Emulator::start();
    let ws = Workspace::new(&emu, &doc);
    ws.sync().ok();
    let mut smaller = doc.clone();
    smaller["users"].as_array_mut().unwrap().truncate(5);
    ws.write_directory(&smaller);
    ws.sync().ok();
    assert_eq!(emu.users().len(), 5);
}

#[test]
fn unreadable_records_without_an_id_keep_every_absent_object() {
    let mut doc = small_directory(12);
    let emu = Emulator::start();
    let ws = Workspace::new(&emu, &doc);
    ws.remove_at_once();
    ws.sync().ok();
    emu.accept_all();
    // u11 is gone, but another user record has lost its id: it may be u11's.
    doc["users"].as_array_mut().unwrap().remove(11);
    doc["users"][4].as_object_mut().unwrap().remove("id");
    // u7 is no longer assigned, but an assignment record cannot be read.
    doc["assignments"].as_array_mut().unwrap().remove(7);
    doc["assignments"][0]["principalId"] = Value::Null;
    ws.write_directory(&doc);
    emu.reset_stats();
    let r = ws.sync();
    assert_eq!(r.code, 3, "{}", r.stdout);
    assert_eq!(emu.stats().1, 0, "{}", emu.stats().0);
    assert!(team(&emu).iter().all(|(_, s)| s == "active"));
    let l = ws.run(&["logs", "--action", "skip"]);
    assert!(l.stdout.contains("could not be read; kept"), "{}", l.stdout);
    // The records are fixed: now the leaver goes and the unassigned user is
    // suspended, without a change to their own records.
    doc["users"][4]["id"] = json!("u4");
    doc["assignments"][0]["principalId"] = json!("u0");
    ws.write_directory(&doc);
    ws.sync().ok();
    assert!(emu.user("user11@contoso.com").is_none());
    assert_eq!(
        emu.status("user7@contoso.com").as_deref(),
        Some("suspended")
    );
    assert_eq!(emu.status("user0@contoso.com").as_deref(), Some("active"));
}

#[test]
fn a_full_graph_read_sees_soft_deleted_users_as_disabled_not_gone() {
    let mut doc = small_directory(6);
    let (emu, ws, graph) = graph_setup(&doc);
    ws.sync().ok();
    emu.accept_all();
    // Soft-deleted in Entra (restorable for 30 days), then the delta token expires:
    // the full read does not list the user in `users`, but it is not gone.
    doc["users"][2]["deletedDateTime"] = json!("2026-11-30T08:00:00Z");
    graph.write(&doc);
    graph.expire_deltas();
    emu.reset_stats();
    ws.sync().ok();
    let (req, _) = emu.stats();
    assert_eq!(count(&req, "DELETE /Users"), 0, "{req}");
    assert_eq!(
        emu.status("user2@contoso.com").as_deref(),
        Some("suspended")
    );
    assert!(
        count(
            &graph.stats(),
            "GET directory/deletedItems/microsoft.graph.user"
        ) >= 1,
        "{}",
        graph.stats()
    );
    // Restored: enabled again, with nothing lost.
    doc["users"][2]
        .as_object_mut()
        .unwrap()
        .remove("deletedDateTime");
    graph.write(&doc);
    ws.sync().ok();
    assert_eq!(emu.status("user2@contoso.com").as_deref(), Some("active"));
}
