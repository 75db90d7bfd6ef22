//! Leavers lose nothing: the `[deprovision]` policy the Business API is sent, the
//! grace period before any removal, and what the emulator says became of a
//! leaver's files and devices.

use crate::util::*;
use serde_json::{json, Value};

const ADMIN: &str = "admin@contoso.com";

/// The workspace's target becomes the Business API, with `deprovision` lines.
fn legacy(ws: &Workspace, emu: &Emulator, deprovision: &str) {
    let cfg = ws.dir.join("scimsync.toml");
    let text = std::fs::read_to_string(&cfg).unwrap();
    let (start, end) = (
        text.find("[target]").unwrap(),
        text.find("[safety]").unwrap(),
    );
    let target = format!(
        "[target]\ntype = \"dropbox-legacy\"\napi_url = \"{}\"\ntoken = \"env:SCIMSYNC_TEST_TOKEN\"\n\n[deprovision]\n{deprovision}\n\n",
        emu.base
    );
    std::fs::write(&cfg, format!("{}{target}{}", &text[..start], &text[end..])).unwrap();
}

/// A team admin scimsync does not manage: where leavers' files go.
fn team_admin(emu: &Emulator) {
    let (s, _) = emu.post(
        "/scim/v2/Users",
        json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "userName": ADMIN, "name": {"familyName": "Admin"}}),
    );
    assert_eq!(s, 201);
    emu.accept_all();
    assert_eq!(
        emu.post("/_emulator/admin", json!({"userName": ADMIN})).0,
        204
    );
}

fn unassign(doc: &mut Value, ids: &[&str]) {
    doc["assignments"]
        .as_array_mut()
        .unwrap()
        .retain(|a| !ids.contains(&a["principalId"].as_str().unwrap_or("")));
}

fn removals(emu: &Emulator) -> Vec<Value> {
    emu.get("/_emulator/removals").as_array().cloned().unwrap()
}

#[test]
fn an_unassigned_member_is_suspended_then_removed_once_with_files_transferred_and_devices_kept() {
    let emu = Emulator::start();
    team_admin(&emu);
    let mut doc = small_directory(4);
    let ws = Workspace::new(&emu, &doc);
    legacy(
        &ws,
        &emu,
        &format!("transfer_to = \"{ADMIN}\"\nremove_after = \"2s\""),
    );
    ws.sync().ok();
    emu.accept_all();

    unassign(&mut doc, &["u2"]);
    ws.write_directory(&doc);
    let r = ws.sync();
    r.ok();
    assert_eq!(
        emu.status("user2@contoso.com").as_deref(),
        Some("suspended")
    );
    assert!(
        removals(&emu).is_empty(),
        "nothing removed in the grace period"
    );
    let status = ws.run(&["status"]);
    assert!(
        status.stdout.contains("leavers: 1 user(s) suspended"),
        "{}",
        status.stdout
    );
    assert!(
        status.stdout.contains("user2@contoso.com since"),
        "{}",
        status.stdout
    );
    let report = ws.dir.join("report.html");
    ws.run(&["report", "--html", report.to_str().unwrap()]).ok();
    let html = std::fs::read_to_string(&report).unwrap();
    assert!(
        html.contains("Pending removals (1)") && html.contains("user2@contoso.com"),
        "{html}"
    );

    std::thread::sleep(std::time::Duration::from_millis(2200));
    let plan = ws.run(&["plan"]);
    plan.ok();
    assert!(
        plan.stdout.contains("still gone after the grace period; removed: files transferred to admin@contoso.com, devices kept"),
        "{}",
        plan.stdout
    );
    emu.reset_stats();
    ws.sync().ok();
    let done = removals(&emu);
    assert_eq!(done.len(), 1, "{done:?}");
    assert_eq!(
        done[0],
        json!({"userName": "user2@contoso.com", "wipe_data": false, "keep_account": false,
               "retain_team_shares": false, "transfer_dest": ADMIN, "transfer_admin": ADMIN})
    );
    let files = emu.get("/_emulator/files");
    assert!(
        files[ADMIN]
            .as_array()
            .unwrap()
            .contains(&json!("user2@contoso.com (removed)/Documents/notes.txt")),
        "{files}"
    );
    assert!(emu.user("user2@contoso.com").is_none());
    let log = ws.run(&["logs", "--object", "u2", "--action", "delete"]);
    assert!(
        log.stdout
            .contains("files transferred to admin@contoso.com, devices kept"),
        "{}",
        log.stdout
    );
    // Removed once: the next cycles send nothing more.
    ws.sync().ok();
    ws.run(&["sync", "--full"]).ok();
    assert_eq!(removals(&emu).len(), 1);
    assert!(!ws.run(&["status"]).stdout.contains("leavers:"));
}

#[test]
fn a_leaver_back_within_the_grace_period_keeps_account_link_and_groups() {
    let mut doc = small_directory(4);
    doc["groups"] = json!([{"id": "g0", "displayName": "Team", "members": ["u0", "u1", "u2"]}]);
    doc["assignments"]
        .as_array_mut()
        .unwrap()
        .push(json!({"principalId": "g0", "principalType": "Group", "appRole": "User"}));
    let emu = Emulator::start();
    let ws = Workspace::new(&emu, &doc);
    ws.sync().ok();
    emu.accept_all();
    let id = emu.user("user1@contoso.com").unwrap()["id"].clone();

    // Deleted from the directory (and so from its group).
    let mut gone = doc.clone();
    gone["users"]
        .as_array_mut()
        .unwrap()
        .retain(|u| u["id"] != "u1");
    unassign(&mut gone, &["u1"]);
    gone["groups"][0]["members"] = json!(["u0", "u2"]);
    ws.write_directory(&gone);
    let plan: Value = serde_json::from_str(&ws.run(&["plan", "--json"]).stdout).unwrap();
    assert_eq!(plan["actions"].as_array().unwrap().len(), 1, "{plan:#}");
    assert_eq!(plan["actions"][0]["op"], "disable");
    assert!(plan["actions"][0]["removal_due"].is_string(), "{plan:#}");
    ws.sync().ok();
    assert_eq!(
        emu.status("user1@contoso.com").as_deref(),
        Some("suspended")
    );
    assert!(emu
        .group_members("Team")
        .contains(&"user1@contoso.com".to_string()));

    // Back the next day: enabled, nothing else.
    ws.write_directory(&doc);
    emu.reset_stats();
    ws.sync().ok();
    let (req, writes) = emu.stats();
    assert_eq!(writes, 1, "one enable: {req}");
    assert_eq!(count(&req, "PATCH /Users"), 1, "{req}");
    assert_eq!(emu.status("user1@contoso.com").as_deref(), Some("active"));
    assert_eq!(
        emu.user("user1@contoso.com").unwrap()["id"],
        id,
        "the same account"
    );
    assert_eq!(emu.group_members("Team").len(), 3);
    let status: Value = serde_json::from_str(&ws.run(&["status", "--json"]).stdout).unwrap();
    assert_eq!(status["pending_removals"], json!([]));
    assert_eq!(status["provisioned"]["active_users"], 4);
}

#[test]
fn a_held_threshold_holds_grace_period_removals_too() {
    let emu = Emulator::start();
    let mut doc = small_directory(10);
    let ws = Workspace::new(&emu, &doc);
    ws.add_config("deprovision", "remove_after = \"1s\"");
    ws.sync().ok();
    emu.accept_all();
    ws.write(
        "scimsync.toml",
        &std::fs::read_to_string(ws.dir.join("scimsync.toml"))
            .unwrap()
            .replace("deletion_threshold = 500", "deletion_threshold = 2"),
    );
    doc["users"].as_array_mut().unwrap().truncate(7);
    ws.write_directory(&doc);
    // The suspensions are destructive: held, then released once.
    assert_eq!(ws.sync().code, 4);
    ws.run(&["allow-deletes"]).ok();
    ws.sync().ok();
    assert_eq!(emu.users().len(), 10);
    std::thread::sleep(std::time::Duration::from_millis(1200));
    // The grace period is over: the three removals pass the same gate.
    emu.reset_stats();
    let r = ws.sync();
    assert_eq!(r.code, 4, "{}", r.stdout);
    assert_eq!(count(&emu.stats().0, "DELETE /Users"), 0);
    assert_eq!(emu.users().len(), 10);
    ws.run(&["allow-deletes"]).ok();
    ws.sync().ok();
    assert_eq!(count(&emu.stats().0, "DELETE /Users"), 3);
    assert_eq!(emu.users().len(), 7);
}

#[test]
fn a_removal_dropbox_refuses_fails_its_object_with_the_tag_explained_and_wipes_nothing() {
    let emu = Emulator::start();
    let mut doc = small_directory(3);
    let ws = Workspace::new(&emu, &doc);
    legacy(&ws, &emu, "files = \"keep-account\"\nremove_after = \"0s\"");
    ws.sync().ok();
    // user1 never accepted the invitation: there is no account to keep.
    unassign(&mut doc, &["u1"]);
    ws.write_directory(&doc);
    let r = ws.sync();
    assert_eq!(r.code, 3, "{}{}", r.stdout, r.stderr);
    let log = ws.run(&["logs", "--object", "u1", "--status", "failure"]);
    assert!(
        log.stdout.contains("cannot_keep_invited_user_account"),
        "{}",
        log.stdout
    );
    assert!(
        log.stdout
            .contains("an invited member has no account to keep"),
        "{}",
        log.stdout
    );
    assert!(removals(&emu).is_empty(), "no fallback removal");
    assert!(emu.user("user1@contoso.com").is_some());

    // A transfer to someone who is not an admin: `check` says so before any removal.
    legacy(&ws, &emu, "transfer_to = \"user0@contoso.com\"");
    let c = ws.run(&["check"]);
    assert_eq!(c.code, 2, "{}", c.stdout);
    assert!(
        c.stdout
            .contains("transfer_to user0@contoso.com: not a team admin"),
        "{}",
        c.stdout
    );
    assert!(
        c.stdout
            .contains("files transferred to user0@contoso.com, devices kept"),
        "{}",
        c.stdout
    );
}

#[test]
fn removing_100_leavers_is_one_members_remove_each_and_one_look_up() {
    let emu = Emulator::start();
    team_admin(&emu);
    let mut doc = small_directory(600);
    let ws = Workspace::new(&emu, &doc);
    legacy(
        &ws,
        &emu,
        &format!("transfer_to = \"{ADMIN}\"\nremove_after = \"0s\""),
    );
    ws.sync().ok();
    emu.accept_all();
    let leavers: Vec<String> = (100..200).map(|i| format!("u{i}")).collect();
    let ids: Vec<&str> = leavers.iter().map(String::as_str).collect();
    unassign(&mut doc, &ids);
    ws.write_directory(&doc);
    emu.reset_stats();
    ws.sync().ok();
    let (req, writes) = emu.stats();
    assert_eq!(count(&req, "POST /2/team/members/remove"), 100, "{req}");
    assert_eq!(
        count(&req, "POST /2/team/members/get_info_v2"),
        1,
        "the transfer admin, once: {req}"
    );
    assert_eq!(count(&req, "POST /2/team/members/suspend"), 0, "{req}");
    assert_eq!(writes, 100, "{req}");
    // and team/get_info: the team lock, every cycle.
    assert_eq!(total(&req), 102, "{req}");
    assert_eq!(removals(&emu).len(), 100);
}

#[test]
fn a_deprovision_policy_dropbox_always_refuses_is_a_config_error() {
    let emu = Emulator::start();
    let ws = Workspace::new(&emu, &small_directory(1));
    for (lines, key) in [
        (
            "remove_after = \"30d\"",
            "deprovision.transfer_to: required with files = \"transfer\"",
        ),
        (
            "files = \"keep-account\"\nwipe_devices = true",
            "deprovision.wipe_devices",
        ),
        (
            "files = \"leave\"\nretain_team_shares = true",
            "deprovision.retain_team_shares",
        ),
        (
            "files = \"shred\"",
            "deprovision.files: \"shred\" is not one of",
        ),
        (
            "files = \"leave\"\nremove_after = \"soon\"",
            "deprovision.remove_after",
        ),
    ] {
        legacy(&ws, &emu, lines);
        let r = ws.sync();
        assert_eq!(r.code, 2, "{lines}: {}", r.stderr);
        assert!(r.stderr.contains(key), "{lines}: {}", r.stderr);
    }
    assert!(emu.users().is_empty());
}

#[test]
fn removing_100_leavers_over_scim_is_one_suspension_then_one_delete_each() {
    let emu = Emulator::start();
    let mut doc = small_directory(600);
    let ws = Workspace::new(&emu, &doc);
    ws.add_config("deprovision", "remove_after = \"1s\"");
    ws.sync().ok();
    emu.accept_all();
    doc["users"].as_array_mut().unwrap().drain(100..200);
    ws.write_directory(&doc);
    emu.reset_stats();
    ws.sync().ok();
    let (req, writes) = emu.stats();
    assert_eq!(count(&req, "PATCH /Users"), 100, "{req}");
    assert_eq!(writes, 100, "suspensions only: {req}");
    std::thread::sleep(std::time::Duration::from_millis(1100));
    emu.reset_stats();
    ws.sync().ok();
    let (req, writes) = emu.stats();
    assert_eq!(count(&req, "DELETE /Users"), 100, "{req}");
    assert_eq!(writes, 100, "{req}");
    // and the SCIM discovery every run starts with.
    assert_eq!(total(&req), 101, "{req}");
    assert_eq!(emu.users().len(), 500);
}

#[test]
fn restart_full_forgets_the_leavers_with_the_links() {
    let emu = Emulator::start();
    let mut doc = small_directory(3);
    let ws = Workspace::new(&emu, &doc);
    ws.sync().ok();
    emu.accept_all();
    doc["users"].as_array_mut().unwrap().remove(1);
    ws.write_directory(&doc);
    ws.sync().ok();
    let pending = |ws: &Workspace| -> Value {
        let s: Value = serde_json::from_str(&ws.run(&["status", "--json"]).stdout).unwrap();
        s["pending_removals"].clone()
    };
    assert_eq!(pending(&ws).as_array().unwrap().len(), 1);
    ws.run(&["restart", "--scope", "full"]).ok();
    assert_eq!(pending(&ws), json!([]));
    // The suspended account stays as it is: no longer scimsync's.
    ws.sync().ok();
    assert_eq!(
        emu.status("user1@contoso.com").as_deref(),
        Some("suspended")
    );
}
