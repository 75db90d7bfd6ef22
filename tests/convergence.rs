//! Never stuck: whatever was skipped, held or failed is planned again until it is
//! done; names being reused are freed first; objects gone from the target come back
//! whole; every change that brings someone into scope brings their groups along.

use crate::util::*;
use serde_json::{json, Value};

fn group(id: &str, name: &str, members: &[&str]) -> Value {
    json!({"id": id, "displayName": name, "members": members})
}

fn assign(doc: &mut Value, id: &str, kind: &str) {
    doc["assignments"]
        .as_array_mut()
        .unwrap()
        .push(json!({"principalId": id, "principalType": kind, "appRole": "User"}));
}

#[test]
fn a_user_deleted_and_recreated_under_the_same_name_gets_a_fresh_account() {
    let mut doc = small_directory(5);
    doc["groups"] = json!([group("g0", "Team", &["u0", "u1"])]);
    assign(&mut doc, "g0", "Group");
    let emu = Emulator::start();
    let ws = Workspace::new(&emu, &doc);
    ws.remove_at_once();
    ws.sync().ok();
    emu.accept_all();
    let old_id = emu.user("user1@contoso.com").unwrap()["id"].clone();
    // u1 is deleted and a new user (new id) takes the same userPrincipalName; the
    // group is deleted and re-created under its name.
    doc["users"][1]["id"] = json!("u1-new");
    doc["assignments"][1]["principalId"] = json!("u1-new");
    doc["groups"] = json!([group("g0-new", "Team", &["u0", "u1-new"])]);
    doc["assignments"][5]["principalId"] = json!("g0-new");
    ws.write_directory(&doc);
    emu.reset_stats();
    let r = ws.sync();
    r.ok();
    let (req, _) = emu.stats();
    assert_eq!(count(&req, "DELETE /Users"), 1, "{req}");
    assert_eq!(count(&req, "POST /Users"), 1, "{req}");
    assert_eq!(count(&req, "DELETE /Groups"), 1, "{req}");
    assert_eq!(count(&req, "POST /Groups"), 1, "{req}");
    let u1 = emu.user("user1@contoso.com").unwrap();
    assert_ne!(u1["id"], old_id);
    assert_eq!(u1["externalId"], "u1-new");
    assert_eq!(
        emu.group_members("Team"),
        vec!["user0@contoso.com", "user1@contoso.com"]
    );
    assert_eq!(emu.groups()[0]["externalId"], "g0-new");
    // Converged: the next cycle has nothing to do.
    assert_next_cycle_writes_nothing(&emu, &ws);
}

#[test]
fn a_held_name_freeing_delete_makes_the_new_account_wait_not_fail() {
    let mut doc = small_directory(3);
    let emu = Emulator::start();
    let ws = Workspace::new(&emu, &doc);
    ws.remove_at_once();
    ws.write(
        "scimsync.toml",
        &std::fs::read_to_string(ws.dir.join("scimsync.toml"))
            .unwrap()
            .replace("deletion_threshold = 500", "deletion_threshold = 0"),
    );
    ws.sync().ok();
    doc["users"][2]["id"] = json!("u2-new");
    doc["assignments"][2]["principalId"] = json!("u2-new");
    ws.write_directory(&doc);
    let r = ws.sync();
    assert_eq!(r.code, 4, "held: {}", r.stdout);
    let l = ws.run(&["logs", "--object", "u2-new"]);
    assert!(
        l.stdout.contains("waits for user2@contoso.com"),
        "{}",
        l.stdout
    );
    assert!(!l.stdout.contains("failure"), "{}", l.stdout);
    ws.run(&["allow-deletes"]).ok();
    ws.sync().ok();
    assert_eq!(
        emu.user("user2@contoso.com").unwrap()["externalId"],
        "u2-new"
    );
}

#[test]
fn a_leaver_goes_although_another_object_fails_every_cycle() {
    let mut doc = small_directory(6);
    // Two directory groups with the same name: the second is refused every cycle.
    doc["groups"] = json!([
        group("g-a", "Same name", &["u0"]),
        group("g-b", "Same name", &["u1"])
    ]);
    assign(&mut doc, "g-a", "Group");
    assign(&mut doc, "g-b", "Group");
    let emu = Emulator::start();
    let ws = Workspace::new(&emu, &doc);
    ws.remove_at_once();
    assert_eq!(ws.sync().code, 3);
    emu.accept_all();
    // u5 leaves the directory while g-b keeps failing.
    doc["users"].as_array_mut().unwrap().remove(5);
    ws.write_directory(&doc);
    ws.run(&["restart", "--scope", "escrows"]).ok();
    let r = ws.sync();
    assert_eq!(r.code, 3, "{}", r.stdout);
    assert!(
        emu.user("user5@contoso.com").is_none(),
        "the leaver is gone"
    );
    let l = ws.run(&["logs", "--object", "g-b", "--status", "failure"]);
    assert!(l.stdout.contains("already linked"), "{}", l.stdout);
}

#[test]
fn destructive_actions_withheld_by_target_errors_run_in_the_next_cycle() {
    let mut doc = small_directory(8);
    doc["groups"] = json!([group("g0", "Team", &["u0", "u1"])]);
    assign(&mut doc, "g0", "Group");
    let emu = Emulator::start();
    let ws = Workspace::new(&emu, &doc);
    ws.remove_at_once();
    ws.sync().ok();
    emu.accept_all();
    // A rename of the group fails with server errors (the target is unwell), so
    // the leaver's delete is withheld in that cycle.
    doc["groups"][0]["displayName"] = json!("Team renamed");
    for u in doc["users"].as_array_mut().unwrap().iter_mut().take(6) {
        u["surname"] = json!("Renamed");
    }
    doc["users"].as_array_mut().unwrap().remove(7);
    ws.write_directory(&doc);
    emu.fail_requests("Team renamed", 500, 4);
    let r = ws.sync();
    assert_eq!(r.code, 3, "{}", r.stdout);
    assert!(
        r.stdout.contains("not run because the target had errors"),
        "{}",
        r.stdout
    );
    assert!(emu.user("user7@contoso.com").is_some());
    // Nothing changes in the directory; the next cycle still does what is left.
    ws.run(&["restart", "--scope", "escrows"]).ok();
    let r = ws.sync();
    r.ok();
    assert!(emu.user("user7@contoso.com").is_none(), "{}", r.stdout);
    assert!(emu.group("Team renamed").is_some());
}

#[test]
fn a_group_deleted_by_hand_is_created_again_with_all_its_members() {
    let mut doc = small_directory(8);
    doc["groups"] = json!([group("g0", "Team", &["u0", "u1", "u2", "u3"])]);
    assign(&mut doc, "g0", "Group");
    let emu = Emulator::start();
    let ws = Workspace::new(&emu, &doc);
    ws.sync().ok();
    let id = emu.group("Team").unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    emu.delete(&format!("/scim/v2/Groups/{id}"));
    doc["groups"][0]["members"] = json!(["u0", "u1", "u2", "u3", "u4"]);
    ws.write_directory(&doc);
    ws.sync().ok();
    assert!(emu.group("Team").is_some(), "created again");
    // Within the next cycle every member is back.
    ws.sync().ok();
    assert_eq!(emu.group_members("Team"), expected_members(&doc, "Team"));
    assert_eq!(emu.group_members("Team").len(), 5);
    assert_next_cycle_writes_nothing(&emu, &ws);
}

#[test]
fn restart_escrows_retries_the_pending_change_now() {
    let mut doc = small_directory(3);
    let emu = Emulator::start();
    let ws = Workspace::new(&emu, &doc);
    ws.sync().ok();
    doc["users"][1]["surname"] = json!("Renamed");
    ws.write_directory(&doc);
    emu.fail_requests("Renamed", 409, 1);
    assert_eq!(ws.sync().code, 3);
    // Without the restart the escrow waits out its back-off; with it the change
    // is retried at once, not forgotten.
    ws.sync().ok();
    assert_ne!(
        emu.user("user1@contoso.com").unwrap()["name"]["familyName"],
        "Renamed"
    );
    ws.run(&["restart", "--scope", "escrows"]).ok();
    ws.sync().ok();
    assert_eq!(
        emu.user("user1@contoso.com").unwrap()["name"]["familyName"],
        "Renamed"
    );
    let s: serde_json::Value = serde_json::from_str(&ws.run(&["status", "--json"]).stdout).unwrap();
    assert_eq!(s["escrows"], json!([]), "{s}");
}

#[test]
fn a_user_enabled_again_is_added_to_their_groups() {
    let mut doc = small_directory(4);
    doc["users"][2]["accountEnabled"] = json!(false);
    doc["groups"] = json!([group("g0", "Team", &["u0", "u1", "u2", "u3"])]);
    assign(&mut doc, "g0", "Group");
    let emu = Emulator::start();
    let ws = Workspace::new(&emu, &doc);
    ws.sync().ok();
    assert!(emu.user("user2@contoso.com").is_none());
    doc["users"][2]["accountEnabled"] = json!(true);
    ws.write_directory(&doc);
    ws.sync().ok();
    assert_eq!(emu.group_members("Team").len(), 4);
    assert!(emu
        .group_members("Team")
        .contains(&"user2@contoso.com".to_string()));
}

#[test]
fn a_user_without_surname_can_still_be_disabled() {
    let mut doc = small_directory(3);
    let emu = Emulator::start();
    let ws = Workspace::new(&emu, &doc);
    ws.sync().ok();
    emu.accept_all();
    doc["users"][1]["surname"] = Value::Null;
    doc["users"][1]["accountEnabled"] = json!(false);
    ws.write_directory(&doc);
    ws.sync().ok();
    assert_eq!(
        emu.status("user1@contoso.com").as_deref(),
        Some("suspended")
    );
    let l = ws.run(&["logs", "--object", "u1"]);
    assert!(
        l.stdout.contains("not updated: name.familyName is missing"),
        "{}",
        l.stdout
    );
}

fn graph_setup(doc: &Value, flatten: bool) -> (Emulator, Workspace, GraphEmulator) {
    let emu = Emulator::start();
    let mut ws = Workspace::new(&emu, doc);
    let graph = GraphEmulator::start(&ws.dir, doc, 3);
    graph.configure_workspace(&ws, "env:GRAPH_SECRET");
    ws.env.push(("GRAPH_SECRET".into(), graph.secret.clone()));
    if flatten {
        let cfg = std::fs::read_to_string(ws.dir.join("scimsync.toml")).unwrap();
        ws.write(
            "scimsync.toml",
            &cfg.replace("[source]\n", "[source]\nnested_groups = \"flatten\"\n"),
        );
    }
    (emu, ws, graph)
}

#[test]
fn a_group_assigned_in_an_incremental_cycle_brings_its_members() {
    let mut doc = small_directory(6);
    // u4 and u5 are assigned only through g1, which is not assigned yet.
    doc["assignments"].as_array_mut().unwrap().truncate(4);
    doc["groups"] = json!([group("g1", "Late team", &["u1", "u4", "u5"])]);
    let (emu, ws, graph) = graph_setup(&doc, false);
    ws.sync().ok();
    assert_eq!(emu.users().len(), 4);
    assign(&mut doc, "g1", "Group");
    graph.write(&doc);
    ws.sync().ok();
    assert_eq!(emu.user_names(), expected_user_names(&doc));
    assert_eq!(
        emu.group_members("Late team"),
        expected_members(&doc, "Late team")
    );
    assert_eq!(emu.group_members("Late team").len(), 3);
}

/// An incremental cycle reads only the links it plans with: a member taken out of
/// a group (through the file and through Graph) is taken out of the target's
/// group, so the cycle has the link (the target id) of everyone its member
/// changes name, and the member stays, still assigned directly.
#[test]
fn an_incremental_cycle_takes_out_a_member_who_did_not_change() {
    for graph in [false, true] {
        takes_out_a_member_who_did_not_change(graph);
    }
}

fn takes_out_a_member_who_did_not_change(through_graph: bool) {
    let mut doc = small_directory(4);
    doc["groups"] = json!([group("g0", "Team", &["u0", "u1", "u2"])]);
    assign(&mut doc, "g0", "Group");
    let (emu, ws, graph) = match through_graph {
        true => {
            let (emu, ws, graph) = graph_setup(&doc, false);
            (emu, ws, Some(graph))
        }
        false => {
            let emu = Emulator::start();
            let ws = Workspace::new(&emu, &doc);
            (emu, ws, None)
        }
    };
    ws.sync().ok();
    assert_eq!(emu.group_members("Team").len(), 3);
    doc["groups"][0]["members"] = json!(["u0", "u1"]);
    match &graph {
        Some(graph) => graph.write(&doc),
        None => ws.write_directory(&doc),
    }
    let r = ws.sync();
    assert_eq!(r.code, 0, "{}", r.stdout);
    assert!(r.stdout.contains("(incremental)"), "{}", r.stdout);
    assert_eq!(
        emu.group_members("Team"),
        vec!["user0@contoso.com", "user1@contoso.com"]
    );
    assert!(emu.user("user2@contoso.com").is_some(), "still assigned");
}

/// A new user whose matching value finds an account linked to another user who
/// did not change (so an incremental cycle did not evaluate them) must not take
/// that account over.
#[test]
fn an_incremental_cycle_never_hands_a_linked_account_to_a_new_user() {
    let mut doc = small_directory(3);
    let emu = Emulator::start();
    let ws = Workspace::new(&emu, &doc);
    ws.sync().ok();
    let before = emu.user("user0@contoso.com").unwrap();
    doc["users"].as_array_mut().unwrap().push(json!({
        "id": "u9", "userPrincipalName": "user0@contoso.com", "mail": "user0@contoso.com",
        "givenName": "Other", "surname": "Person", "accountEnabled": true
    }));
    assign(&mut doc, "u9", "User");
    ws.write_directory(&doc);
    let r = ws.sync();
    assert!(r.stdout.contains("(incremental)"), "{}", r.stdout);
    let after = emu.user("user0@contoso.com").unwrap();
    assert_eq!(after["id"], before["id"]);
    assert_eq!(
        after["externalId"], before["externalId"],
        "still u0's account"
    );
    assert_eq!(after["name"], before["name"]);
    let l = ws.run(&["logs", "--object", "u9", "--status", "failure"]);
    assert!(l.stdout.contains("already linked"), "{}", l.stdout);
}

#[test]
fn flattened_nested_groups_follow_changes_anywhere_in_the_chain() {
    let mut doc = small_directory(6);
    // Only u0 is assigned directly; Outer (assigned) holds u1 and Inner, Inner holds
    // u2 and u3.
    doc["assignments"].as_array_mut().unwrap().truncate(1);
    doc["groups"] = json!([
        group("outer", "Outer", &["u1", "inner"]),
        group("inner", "Inner", &["u2", "u3"])
    ]);
    assign(&mut doc, "outer", "Group");
    let (emu, ws, graph) = graph_setup(&doc, true);
    ws.sync().ok();
    emu.accept_all();
    assert_eq!(
        emu.group_members("Outer"),
        vec![
            "user1@contoso.com",
            "user2@contoso.com",
            "user3@contoso.com"
        ]
    );
    // A change deep in the chain: u3 leaves Inner, u4 joins it.
    doc["groups"][1]["members"] = json!(["u2", "u4"]);
    graph.write(&doc);
    ws.sync().ok();
    assert_eq!(
        emu.group_members("Outer"),
        vec![
            "user1@contoso.com",
            "user2@contoso.com",
            "user4@contoso.com"
        ]
    );
    // u3 is no longer in scope through anything: suspended, access gone.
    assert_eq!(
        emu.status("user3@contoso.com").as_deref(),
        Some("suspended")
    );
}

#[test]
fn an_account_whose_create_answer_was_lost_is_found_even_after_its_user_leaves() {
    let mut doc = small_directory(3);
    let emu = Emulator::start();
    let ws = Workspace::new(&emu, &doc);
    ws.sync().ok();
    // The new hire's POST is done but its answer is cut, and so is every lookup:
    // scimsync cannot tell whether the account exists.
    doc["users"]
        .as_array_mut()
        .unwrap()
        .push(json!({"id": "u3", "userPrincipalName": "user3@contoso.com",
        "surname": "Family3", "givenName": "Given3", "accountEnabled": true}));
    assign(&mut doc, "u3", "User");
    ws.write_directory(&doc);
    emu.post(
        "/_emulator/chaos",
        json!({"faults": "cut=100%", "seed": 1, "only": "POST scim/v2/Users"}),
    );
    // The matching lookup before the POST goes through; the ones after fail.
    emu.post(
        "/_emulator/faults",
        json!({"match": "eq \"user3", "status": 500, "count": 100, "skip": 1}),
    );
    let r = ws.sync();
    assert!([3, 4].contains(&r.code), "{}", r.stdout);
    emu.clear_faults();
    emu.post("/_emulator/faults", json!({}));
    assert!(
        emu.user("user3@contoso.com").is_some(),
        "the account was made"
    );
    // Before the retry, the hire is disabled: nothing is to be created any more, but
    // the account scimsync made must not stay live.
    doc["users"][3]["accountEnabled"] = json!(false);
    ws.write_directory(&doc);
    ws.run(&["restart", "--scope", "escrows"]).ok();
    ws.sync().ok();
    let l = ws.run(&["logs", "--object", "u3"]);
    assert!(
        l.stdout
            .contains("a create whose answer was lost had made it"),
        "{}",
        l.stdout
    );
    ws.sync().ok();
    assert!(
        emu.user("user3@contoso.com").is_none()
            || emu.status("user3@contoso.com").as_deref() == Some("suspended"),
        "{:?}",
        emu.status("user3@contoso.com")
    );
    assert_next_cycle_writes_nothing(&emu, &ws);
}
