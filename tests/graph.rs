//! The Entra ID source: Graph emulator → scimsync → Dropbox emulator.

use crate::util::*;
use serde_json::{json, Value};

fn setup(doc: &Value, page_size: usize) -> (Emulator, Workspace, GraphEmulator) {
    let emu = Emulator::start();
    let mut ws = Workspace::new(&emu, doc);
    let graph = GraphEmulator::start(&ws.dir, doc, page_size);
    graph.configure_workspace(&ws, "env:GRAPH_SECRET");
    ws.env.push(("GRAPH_SECRET".into(), graph.secret.clone()));
    (emu, ws, graph)
}

#[test]
fn initial_cycle_reads_every_page() {
    let doc = sample_directory();
    let (emu, ws, graph) = setup(&doc, 7);
    ws.sync().ok();
    let got = emu.user_names();
    assert_eq!(got, expected_user_names(&doc));
    assert_eq!(emu.group_members("Sales"), expected_members(&doc, "Sales"));
    let s = graph.stats();
    // 57 users in pages of 7: 9 pages; 44 assignments: 7 pages.
    assert_eq!(count(&s, "GET users"), 9, "{s}");
    assert_eq!(
        count(&s, "GET servicePrincipals/{id}/appRoleAssignedTo"),
        7,
        "{s}"
    );
    assert_eq!(
        count(&s, "POST token"),
        1,
        "one token for the whole cycle: {s}"
    );
    // Members come with the groups from one groups/delta round, not one listing per
    // group: the whole read is a fixed number of pages.
    let groups = doc["groups"].as_array().unwrap().len() as u64;
    assert_eq!(count(&s, "GET groups/{id}/members"), 0, "{s}");
    assert_eq!(count(&s, "GET groups"), 0, "{s}");
    assert_eq!(count(&s, "GET groups/delta"), groups.div_ceil(7), "{s}");
    assert_eq!(
        total(&s),
        1 + 1 + groups.div_ceil(7) + 1 + 7 + 9 + 1,
        "token, users/delta link, groups/delta pages, service principal, assignments, users, deleted users: {s}"
    );
}

#[test]
fn delta_sends_exactly_the_changes() {
    let mut doc = small_directory(10);
    let (emu, ws, graph) = setup(&doc, 4);
    ws.remove_at_once();
    ws.sync().ok();
    emu.accept_all();
    emu.reset_stats();
    graph.reset_stats();

    // One changed, one removed for good, one soft-deleted, one added.
    doc["users"][1]["surname"] = json!("Changed");
    doc["users"][3]["deletedDateTime"] = json!("2026-11-28T10:00:00Z");
    doc["users"].as_array_mut().unwrap().remove(2);
    doc["users"].as_array_mut().unwrap().push(
        json!({"id": "u99", "userPrincipalName": "user99@contoso.com",
        "surname": "New", "givenName": "Hire", "accountEnabled": true}),
    );
    doc["assignments"]
        .as_array_mut()
        .unwrap()
        .push(json!({"principalId": "u99", "principalType": "User", "appRole": "User"}));
    graph.write(&doc);
    let r = ws.sync();
    r.ok();
    let (req, writes) = emu.stats();
    assert_eq!(
        count(&req, "PATCH /Users"),
        2,
        "rename + soft delete: {req}"
    );
    assert_eq!(count(&req, "DELETE /Users"), 1, "{req}");
    assert_eq!(count(&req, "POST /Users"), 1, "{req}");
    assert_eq!(writes, 4, "{req}");
    assert_eq!(
        emu.user("user1@contoso.com").unwrap()["name"]["familyName"],
        "Changed"
    );
    assert!(emu.user("user2@contoso.com").is_none());
    assert_eq!(
        emu.status("user3@contoso.com").as_deref(),
        Some("suspended")
    );
    assert!(emu.user("user99@contoso.com").is_some());
    let s = graph.stats();
    assert_eq!(
        count(&s, "GET users"),
        0,
        "incremental must not list all users: {s}"
    );
    assert!(count(&s, "GET users/delta") >= 1, "{s}");

    // A restore from the recycle bin re-enables; nothing else is touched.
    doc["users"][2]
        .as_object_mut()
        .unwrap()
        .remove("deletedDateTime");
    graph.write(&doc);
    emu.reset_stats();
    ws.sync().ok();
    assert_eq!(emu.status("user3@contoso.com").as_deref(), Some("active"));
    assert_eq!(emu.stats().1, 1);

    // No change: Graph is asked, the target is not.
    emu.reset_stats();
    let r = ws.sync();
    r.ok();
    assert!(r.stdout.contains("no change"), "{}", r.stdout);
    assert_eq!(emu.stats().0, json!({}));
}

#[test]
fn membership_and_assignment_changes_flow_through_delta() {
    let mut doc = small_directory(6);
    doc["groups"] = json!([{"id": "g1", "displayName": "Team", "members": ["u0", "u1"]}]);
    doc["assignments"]
        .as_array_mut()
        .unwrap()
        .push(json!({"principalId": "g1", "principalType": "Group", "appRole": "User"}));
    let (emu, ws, graph) = setup(&doc, 100);
    ws.sync().ok();
    emu.accept_all();
    assert_eq!(
        emu.group_members("Team"),
        vec!["user0@contoso.com", "user1@contoso.com"]
    );
    doc["groups"][0]["members"] = json!(["u1", "u2"]);
    // Unassign u5 (direct assignment removed).
    doc["assignments"]
        .as_array_mut()
        .unwrap()
        .retain(|a| a["principalId"] != "u5");
    graph.write(&doc);
    ws.sync().ok();
    assert_eq!(
        emu.group_members("Team"),
        vec!["user1@contoso.com", "user2@contoso.com"]
    );
    assert_eq!(
        emu.status("user5@contoso.com").as_deref(),
        Some("suspended")
    );
}

#[test]
fn throttled_graph_is_retried_and_nothing_is_lost() {
    let doc = sample_directory();
    let (emu, ws, graph) = setup(&doc, 10);
    graph.configure(json!({"throttle_every": 4, "retry_after": 1}));
    let r = ws.sync();
    r.ok();
    let got = emu.user_names();
    assert_eq!(got, expected_user_names(&doc));
}

#[test]
fn a_faulty_graph_is_retried_and_nothing_is_lost() {
    let doc = sample_directory();
    let (emu, ws, graph) = setup(&doc, 5);
    graph.chaos("429=10%:0,500=10%,reset=5%,cut=5%", 11);
    // Reads are idempotent and retried in line; a read that still fails fails the
    // cycle before anything is written, and the next one starts over.
    let mut codes = vec![];
    for _ in 0..3 {
        let r = ws.sync();
        codes.push(r.code);
        if r.code == 0 {
            break;
        }
        assert!(!r.stderr.contains(&graph.secret), "the secret leaked");
    }
    assert_eq!(codes.last(), Some(&0), "{codes:?}");
    let injected = graph.injected();
    assert!(total(&injected) >= 3, "{injected}");
    let got = emu.user_names();
    assert_eq!(got, expected_user_names(&doc));
}

#[test]
fn expired_delta_token_falls_back_to_a_full_read() {
    let mut doc = small_directory(5);
    let (emu, ws, graph) = setup(&doc, 100);
    ws.sync().ok();
    graph.expire_deltas();
    doc["users"][0]["surname"] = json!("AfterExpiry");
    graph.write(&doc);
    emu.reset_stats();
    graph.reset_stats();
    ws.sync().ok();
    assert_eq!(
        emu.user("user0@contoso.com").unwrap()["name"]["familyName"],
        "AfterExpiry"
    );
    assert_eq!(
        count(&emu.stats().0, "POST /Users"),
        0,
        "no duplicate creates"
    );
    assert_eq!(emu.users().len(), 5);
    let s = graph.stats();
    assert!(count(&s, "GET users") >= 1, "full read after 410: {s}");
    // The next cycle is incremental again.
    graph.reset_stats();
    ws.sync().ok();
    assert_eq!(count(&graph.stats(), "GET users"), 0);
}

#[test]
fn bad_secret_is_exit_2_and_never_printed() {
    let doc = small_directory(2);
    let (_emu, mut ws, _graph) = setup(&doc, 100);
    ws.env.retain(|(k, _)| k != "GRAPH_SECRET");
    ws.env
        .push(("GRAPH_SECRET".into(), "wrong-secret-value-123".into()));
    ws.env.push(("RUST_LOG".into(), "trace".into()));
    for cmd in [&["check"][..], &["sync"][..]] {
        let r = ws.run(cmd);
        assert_eq!(r.code, 2, "{cmd:?}: {}{}", r.stdout, r.stderr);
        let all = format!("{}{}", r.stdout, r.stderr);
        assert!(
            all.contains("invalid_client") && all.contains("source.client_secret"),
            "{all}"
        );
        assert!(
            !all.contains("wrong-secret-value-123"),
            "secret printed: {all}"
        );
    }
}

#[test]
fn nested_groups_are_ignored_unless_flattened() {
    let mut doc = small_directory(4);
    doc["groups"] = json!([
        {"id": "outer", "displayName": "Outer", "members": ["u0", "inner"]},
        {"id": "inner", "displayName": "Inner", "members": ["u1", "u2"]}]);
    doc["assignments"] =
        json!([{"principalId": "outer", "principalType": "Group", "appRole": "User"}]);
    let (emu, ws, _graph) = setup(&doc, 100);
    ws.sync().ok();
    assert_eq!(emu.users().len(), 1, "Entra ignores nested groups");
    let cfg = ws.dir.join("scimsync.toml");
    let text = std::fs::read_to_string(&cfg).unwrap().replace(
        "scope = \"assigned\"\ngraph_url",
        "scope = \"assigned\"\nnested_groups = \"flatten\"\ngraph_url",
    );
    std::fs::write(&cfg, text).unwrap();
    ws.run(&["sync", "--full"]).ok();
    assert_eq!(
        emu.group_members("Outer"),
        vec![
            "user0@contoso.com",
            "user1@contoso.com",
            "user2@contoso.com"
        ]
    );
}
