//! The backbone: file source → default scripts → Dropbox emulator, cycle by cycle.

use crate::util::*;
use serde_json::{json, Value};

fn set_user(doc: &mut Value, upn: &str, key: &str, value: Value) {
    let u = doc["users"]
        .as_array_mut()
        .unwrap()
        .iter_mut()
        .find(|u| u["userPrincipalName"] == upn)
        .unwrap();
    u[key] = value;
}

fn user_id(doc: &Value, upn: &str) -> String {
    doc["users"]
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["userPrincipalName"] == upn)
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string()
}

#[test]
fn initial_sync_provisions_exactly_the_assigned_users_with_the_entra_mapping() {
    let emu = Emulator::start();
    let doc = sample_directory();
    let ws = Workspace::new(&emu, &doc);
    ws.sync().ok();

    let got = emu.user_names();
    assert_eq!(got, expected_user_names(&doc));

    // Default Access only, disabled, and unassigned users are absent.
    assert!(
        emu.user("patti.fernandez@contoso.com").is_none(),
        "Default Access user provisioned"
    );
    assert!(
        emu.user("enrico.rossi@contoso.com").is_none(),
        "disabled user created"
    );

    // Attribute mapping for one user, checked field by field against the directory.
    let src = doc["users"]
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["userPrincipalName"] == "adele.vance@contoso.com")
        .unwrap();
    let u = emu.user("adele.vance@contoso.com").unwrap();
    assert_eq!(u["externalId"], src["id"]);
    assert_eq!(u["name"]["givenName"], src["givenName"]);
    assert_eq!(u["name"]["familyName"], src["surname"]);
    assert_eq!(u["emails"][0]["type"], "work");
    assert_eq!(u["emails"][0]["value"], src["mail"]);
    assert_eq!(u["active"], true);
    assert_eq!(
        emu.status("adele.vance@contoso.com").as_deref(),
        Some("invited")
    );

    // Assigned groups exist with their in-scope members; the unassigned one does not.
    for g in doc["groups"].as_array().unwrap() {
        let name = g["displayName"].as_str().unwrap();
        let assigned = doc["assignments"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["principalId"] == g["id"]);
        assert_eq!(emu.group(name).is_some(), assigned, "group {name}");
        if assigned {
            let want = expected_members(&doc, name);
            assert_eq!(emu.group_members(name), want, "members of {name}");
            assert_eq!(emu.group(name).unwrap()["externalId"], g["id"]);
        }
    }

    // The log names each member added: users created in this very cycle, whom
    // apply knows by their create in the plan, under their own names.
    let log = ws.run(&["logs", "--action", "add_members", "--json"]);
    log.ok();
    let entries: Value = serde_json::from_str(&log.stdout).unwrap();
    let entries = entries.as_array().unwrap();
    assert!(!entries.is_empty(), "memberships were logged");
    for e in entries {
        let group = e["display"].as_str().unwrap();
        let m = &e["modified"][0];
        assert_eq!(m["name"], "members");
        let mut logged: Vec<String> = m["new"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n.as_str().unwrap().to_lowercase())
            .collect();
        logged.sort();
        assert_eq!(
            logged,
            expected_members(&doc, group),
            "logged members of {group}"
        );
    }
}

#[test]
fn second_sync_with_unchanged_directory_sends_nothing() {
    let emu = Emulator::start();
    let ws = Workspace::new(&emu, &sample_directory());
    ws.sync().ok();
    emu.reset_stats();
    let r = ws.sync();
    r.ok();
    let (requests, writes) = emu.stats();
    assert_eq!(writes, 0);
    assert_eq!(requests, json!({}), "no request at all: {requests}");
    // Even a forced re-read of an unchanged file (touch) sends no write.
    ws.write_directory(&sample_directory());
    let text = std::fs::read_to_string(ws.dir.join("directory.json")).unwrap();
    ws.write("directory.json", &format!("{text}\n"));
    ws.sync().ok();
    assert_eq!(emu.stats().1, 0);
}

#[test]
fn rename_sends_one_patch_with_only_the_changed_attribute() {
    let emu = Emulator::start();
    let mut doc = small_directory(5);
    let ws = Workspace::new(&emu, &doc);
    ws.sync().ok();
    emu.reset_stats();
    set_user(&mut doc, "user2@contoso.com", "surname", json!("Renamed"));
    ws.write_directory(&doc);
    ws.sync().ok();
    let (req, writes) = emu.stats();
    assert_eq!(writes, 1);
    assert_eq!(count(&req, "PATCH /Users"), 1);
    assert_eq!(count(&req, "POST /Users"), 0);
    assert_eq!(
        emu.user("user2@contoso.com").unwrap()["name"]["familyName"],
        "Renamed"
    );
    assert_eq!(
        emu.user("user1@contoso.com").unwrap()["name"]["familyName"],
        "Family1"
    );
    let log = ws.run(&["logs", "--action", "update", "--json"]);
    log.ok();
    let entries: Value = serde_json::from_str(&log.stdout).unwrap();
    let m = &entries[0]["modified"][0];
    assert_eq!(
        (m["name"].as_str(), m["old"].as_str(), m["new"].as_str()),
        (Some("name.familyName"), Some("Family2"), Some("Renamed"))
    );
}

#[test]
fn disable_unassign_and_delete() {
    let emu = Emulator::start();
    let mut doc = small_directory(6);
    let ws = Workspace::new(&emu, &doc);
    ws.sync().ok();
    emu.accept_all();
    // A stranger created in Dropbox by hand: never provisioned, never touched.
    let (s, _) = emu.post(
        "/scim/v2/Users",
        json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "userName": "stranger@contoso.com", "name": {"familyName": "S"}}),
    );
    assert_eq!(s, 201);

    set_user(
        &mut doc,
        "user1@contoso.com",
        "accountEnabled",
        json!(false),
    );
    let u2 = user_id(&doc, "user2@contoso.com");
    doc["assignments"]
        .as_array_mut()
        .unwrap()
        .retain(|a| a["principalId"] != u2.as_str());
    doc["users"]
        .as_array_mut()
        .unwrap()
        .retain(|u| u["userPrincipalName"] != "user3@contoso.com");
    ws.write_directory(&doc);
    let r = ws.sync();
    r.ok();

    assert_eq!(
        emu.status("user1@contoso.com").as_deref(),
        Some("suspended")
    );
    assert_eq!(emu.user("user1@contoso.com").unwrap()["active"], false);
    assert_eq!(
        emu.status("user2@contoso.com").as_deref(),
        Some("suspended"),
        "unassigned → suspended, not deleted"
    );
    assert_eq!(
        emu.status("user3@contoso.com").as_deref(),
        Some("suspended"),
        "deleted from directory → suspended for the grace period, not deleted"
    );
    assert_eq!(emu.status("user0@contoso.com").as_deref(), Some("active"));
    assert!(
        emu.user("stranger@contoso.com").is_some(),
        "unmanaged member touched"
    );

    // Re-assigning and re-enabling brings them back without new accounts.
    set_user(&mut doc, "user1@contoso.com", "accountEnabled", json!(true));
    doc["assignments"]
        .as_array_mut()
        .unwrap()
        .push(json!({"principalId": u2, "principalType": "User", "appRole": "User"}));
    ws.write_directory(&doc);
    emu.reset_stats();
    ws.sync().ok();
    assert_eq!(count(&emu.stats().0, "POST /Users"), 0);
    assert_eq!(emu.status("user1@contoso.com").as_deref(), Some("active"));
    assert_eq!(emu.status("user2@contoso.com").as_deref(), Some("active"));
}

#[test]
fn disabling_an_invited_member_deletes_it_in_dropbox() {
    let emu = Emulator::start();
    let mut doc = small_directory(2);
    let ws = Workspace::new(&emu, &doc);
    ws.sync().ok();
    assert_eq!(emu.status("user0@contoso.com").as_deref(), Some("invited"));
    set_user(
        &mut doc,
        "user0@contoso.com",
        "accountEnabled",
        json!(false),
    );
    ws.write_directory(&doc);
    // The plan says what will really happen: a delete, counted as one.
    let p = ws.run(&["plan", "--json"]);
    let v: Value = serde_json::from_str(&p.stdout).unwrap();
    assert_eq!(v["actions"][0]["op"], "delete", "{}", p.stdout);
    assert!(v["actions"][0]["reason"]
        .as_str()
        .unwrap()
        .contains("invited"));
    assert_eq!(v["destructive"], 1);
    ws.sync().ok();
    assert!(
        emu.user("user0@contoso.com").is_none(),
        "Dropbox deletes an invited member it is asked to suspend"
    );
    // Enabling again re-invites through a fresh create, not an error.
    set_user(&mut doc, "user0@contoso.com", "accountEnabled", json!(true));
    ws.write_directory(&doc);
    ws.sync().ok();
    assert_eq!(emu.status("user0@contoso.com").as_deref(), Some("invited"));
}

#[test]
fn group_membership_add_and_remove() {
    let emu = Emulator::start();
    let mut doc = small_directory(4);
    doc["groups"] =
        json!([{"id": "g1", "displayName": "R&D \"Core\" \\ team", "members": ["u0", "u1", "ux"]}]);
    doc["assignments"]
        .as_array_mut()
        .unwrap()
        .push(json!({"principalId": "g1", "principalType": "Group", "appRole": "User"}));
    let ws = Workspace::new(&emu, &doc);
    ws.sync().ok();
    let name = "R&D \"Core\" \\ team";
    assert_eq!(
        emu.group_members(name),
        vec!["user0@contoso.com", "user1@contoso.com"]
    );

    doc["groups"][0]["members"] = json!(["u1", "u2", "u3"]);
    ws.write_directory(&doc);
    emu.reset_stats();
    ws.sync().ok();
    assert_eq!(
        emu.group_members(name),
        vec![
            "user1@contoso.com",
            "user2@contoso.com",
            "user3@contoso.com"
        ]
    );
    let (req, _) = emu.stats();
    assert_eq!(
        count(&req, "PATCH /Groups"),
        2,
        "one add, one remove: {req}"
    );
    assert_eq!(count(&req, "POST /Groups"), 0);
    // The quoted name was matched, not duplicated, on a fresh state.
    std::fs::remove_file(ws.dir.join("state.db")).unwrap();
    ws.sync().ok();
    assert_eq!(emu.groups().len(), 1);
    assert_eq!(emu.users().len(), 4);
}

#[test]
fn default_access_only_users_are_excluded() {
    let emu = Emulator::start();
    let mut doc = small_directory(3);
    doc["assignments"][1]["appRole"] = json!("Default Access");
    let ws = Workspace::new(&emu, &doc);
    ws.sync().ok();
    assert!(emu.user("user1@contoso.com").is_none());
    assert!(emu.user("user0@contoso.com").is_some());
    let p = ws.run(&["preview", "user1@contoso.com"]);
    p.ok();
    assert!(
        p.stdout.contains("only role is Default Access"),
        "{}",
        p.stdout
    );
}

#[test]
fn existing_target_users_are_matched_not_duplicated() {
    let emu = Emulator::start();
    let doc = small_directory(3);
    let (s, _) = emu.post(
        "/scim/v2/Users",
        json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "userName": "USER1@contoso.com", "name": {"familyName": "Old"}}),
    );
    assert_eq!(s, 201);
    let ws = Workspace::new(&emu, &doc);
    ws.sync().ok();
    assert_eq!(emu.users().len(), 3);
    let u = emu.user("user1@contoso.com").unwrap();
    assert_eq!(u["name"]["familyName"], "Family1", "adopted and updated");
    assert_eq!(u["externalId"], "u1");
}

#[test]
fn plan_writes_nothing_anywhere() {
    let emu = Emulator::start();
    let mut doc = small_directory(3);
    let ws = Workspace::new(&emu, &doc);
    let p = ws.run(&["plan"]);
    p.ok();
    assert!(p.stdout.contains("create"), "{}", p.stdout);
    assert!(
        !ws.dir.join("state.db").exists(),
        "plan created the state file"
    );
    assert_eq!(emu.stats().1, 0);
    assert!(emu.users().is_empty());

    ws.sync().ok();
    // Accepted: Dropbox suspends members, it deletes invitations.
    emu.accept_all();
    let before = std::fs::read(ws.dir.join("state.db")).unwrap();
    doc["users"].as_array_mut().unwrap().remove(0);
    ws.write_directory(&doc);
    emu.reset_stats();
    let p = ws.run(&["plan", "--json"]);
    p.ok();
    let v: Value = serde_json::from_str(&p.stdout).unwrap();
    let ops: Vec<&str> = v["actions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["op"].as_str().unwrap())
        .collect();
    assert_eq!(ops, vec!["disable"]);
    let reason = v["actions"][0]["reason"].as_str().unwrap();
    assert!(
        reason.starts_with("deleted from the directory; suspended, removed on "),
        "{reason}"
    );
    assert_eq!(emu.stats().1, 0);
    assert_eq!(
        std::fs::read(ws.dir.join("state.db")).unwrap(),
        before,
        "plan changed the state"
    );
}

#[test]
fn status_logs_and_check() {
    let emu = Emulator::start();
    let ws = Workspace::new(&emu, &small_directory(3));
    let c = ws.run(&["check"]);
    c.ok();
    assert!(c.stdout.contains("connection ok"), "{}", c.stdout);
    assert_eq!(
        count(&emu.stats().0, "GET /Users"),
        1,
        "test connection is one filter GET"
    );
    ws.sync().ok();
    let s = ws.run(&["status", "--json"]);
    s.ok();
    let v: Value = serde_json::from_str(&s.stdout).unwrap();
    assert_eq!(v["provisioned"]["users"], 3);
    assert_eq!(v["last_cycle"]["kind"], "initial");
    assert_eq!(v["next_cycle"], "incremental");
    let l = ws.run(&["logs", "--status", "success", "--csv"]);
    l.ok();
    assert_eq!(
        l.stdout.lines().count(),
        4,
        "header + 3 creates:\n{}",
        l.stdout
    );

    // A wrong token: check says so and exits 2.
    let bad = ws.dir.join("scimsync.toml");
    let text = std::fs::read_to_string(&bad)
        .unwrap()
        .replace("env:SCIMSYNC_TEST_TOKEN", "wrong-token-value");
    std::fs::write(&bad, text).unwrap();
    let c = ws.run(&["check"]);
    assert_eq!(c.code, 2, "{}{}", c.stdout, c.stderr);
    assert!(c.stdout.contains("401"), "{}", c.stdout);
    assert!(!c.stdout.contains("wrong-token-value") && !c.stderr.contains("wrong-token-value"));
}

#[test]
fn full_sync_repairs_drift_made_in_the_target() {
    let emu = Emulator::start();
    let ws = Workspace::new(&emu, &small_directory(3));
    ws.sync().ok();
    let id = emu.user("user0@contoso.com").unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let (status, _) = call(
        "PATCH",
        &format!("{}/Users/{}", emu.scim, id),
        Some(&emu.token),
        Some(
            &json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
            "Operations": [{"op": "replace", "path": "name.familyName", "value": "Edited"}]}),
        ),
    );
    assert_eq!(status, 200);
    ws.sync().ok();
    assert_eq!(
        emu.user("user0@contoso.com").unwrap()["name"]["familyName"],
        "Edited",
        "incremental does not read back"
    );
    ws.run(&["sync", "--full"]).ok();
    assert_eq!(
        emu.user("user0@contoso.com").unwrap()["name"]["familyName"],
        "Family0"
    );
}

#[test]
fn many_new_users_are_matched_against_one_listing_not_one_query_each() {
    let emu = Emulator::start();
    let doc = small_directory(120);
    // Two accounts exist already: matched from the listing, not created again.
    for i in [7, 90] {
        let (s, _) = emu.post(
            "/scim/v2/Users",
            json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "userName": format!("USER{i}@contoso.com"), "name": {"familyName": "Old"}}),
        );
        assert_eq!(s, 201);
    }
    emu.reset_stats();
    let ws = Workspace::new(&emu, &doc);
    ws.sync().ok();
    let (req, _) = emu.stats();
    assert_eq!(count(&req, "GET /Users"), 1, "one listing page: {req}");
    assert_eq!(count(&req, "POST /Users"), 118, "{req}");
    assert_eq!(emu.users().len(), 120);
    assert_eq!(
        emu.user("user90@contoso.com").unwrap()["name"]["familyName"],
        "Family90"
    );
}
