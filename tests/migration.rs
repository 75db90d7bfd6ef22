//! Legacy Dropbox integration → SCIM: provision through the Business API, plan and
//! apply the migration, then the first SCIM cycle: no re-invite, no duplicate.

use crate::util::*;
use serde_json::{json, Value};

const LEGACY_MAPPING: &str = r#"
// The legacy integration sent `mail` as the Dropbox email.
fn map_user(user) {
    let r = #{ userName: coalesce(user.mail, user.userPrincipalName), externalId: user.id,
               active: user.accountEnabled ?? true };
    if is_present(user.givenName) { r["name.givenName"] = user.givenName; }
    if is_present(user.surname) { r["name.familyName"] = user.surname; }
    r
}
fn map_group(group) { #{ displayName: group.displayName, externalId: group.id } }
"#;

fn directory() -> Value {
    let mut doc = small_directory(300);
    for i in 0..10 {
        doc["users"][i]["mail"] = json!(format!("user{i}@contoso-alias.com"));
    }
    let members =
        |r: std::ops::Range<usize>| -> Vec<String> { r.map(|i| format!("u{i}")).collect() };
    doc["groups"] = json!([
        {"id": "g1", "displayName": "Sales", "members": members(0..50)},
        {"id": "g2", "displayName": "Engineering", "members": members(50..100)},
        {"id": "g3", "displayName": "Support", "members": members(100..150)},
    ]);
    for g in ["g1", "g2", "g3"] {
        doc["assignments"]
            .as_array_mut()
            .unwrap()
            .push(json!({"principalId": g, "principalType": "Group", "appRole": "User"}));
    }
    doc
}

fn legacy_post(emu: &Emulator, route: &str, body: Value) -> Value {
    let (s, v) = emu.post(&format!("/2/team/{route}"), body);
    assert_eq!(s, 200, "{route}: {v}");
    v
}

fn set_target(ws: &Workspace, emu: &Emulator, legacy: bool) {
    let cfg = ws.dir.join("scimsync.toml");
    let text = std::fs::read_to_string(&cfg).unwrap();
    let start = text.find("[target]").unwrap();
    let end = text.find("[safety]").unwrap();
    let target = if legacy {
        // The legacy integration as it was: members removed at once, devices
        // wiped, files left on the removed account.
        format!("[target]\ntype = \"dropbox-legacy\"\napi_url = \"{}\"\ntoken = \"env:SCIMSYNC_TEST_TOKEN\"\n\n[deprovision]\nremove_after = \"0s\"\nfiles = \"leave\"\nwipe_devices = true\n\n", emu.base)
    } else {
        format!(
            "[target]\ntype = \"dropbox\"\nurl = \"{}\"\ntoken = \"env:SCIMSYNC_TEST_TOKEN\"\n\n[legacy]\napi_url = \"{}\"\ntoken = \"env:SCIMSYNC_TEST_TOKEN\"\n\n",
            emu.scim, emu.base
        )
    };
    std::fs::write(
        &cfg,
        format!("{}{}{}", &text[..start], target, &text[end..]),
    )
    .unwrap();
}

fn outcomes(plan: &Value, kind: &str, outcome: &str) -> Vec<String> {
    let key = if kind == "members" { "email" } else { "name" };
    let mut v: Vec<String> = plan[kind]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["outcome"] == outcome)
        .map(|m| m[key].as_str().unwrap().to_string())
        .collect();
    v.sort();
    v
}

fn links(ws: &Workspace) -> Vec<(String, String, String)> {
    let db = rusqlite::Connection::open(ws.dir.join("state.db")).unwrap();
    let mut stmt = db
        .prepare("SELECT kind, source_id, target_id FROM links ORDER BY kind, source_id")
        .unwrap();
    stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .unwrap()
        .map(|x| x.unwrap())
        .collect()
}

#[test]
fn legacy_to_scim_migration_without_reinvites_or_duplicates() {
    let emu = Emulator::start();
    let mut doc = directory();
    let ws = Workspace::new(&emu, &doc);
    let scim_mapping = std::fs::read_to_string(ws.dir.join("scripts/mapping.rhai")).unwrap();

    // 1. The legacy integration: Business API, `mail` as email.
    set_target(&ws, &emu, true);
    ws.write("scripts/mapping.rhai", LEGACY_MAPPING);
    ws.sync().ok();
    let (req, _) = emu.stats();
    assert!(
        count(&req, "POST /2/team/members/add_v2") <= 16,
        "up to 20 members per call: {req}"
    );
    assert_eq!(emu.users().len(), 300);
    assert_eq!(emu.group_members("Sales").len(), 50);
    for i in 0..250 {
        let name = if i < 10 {
            format!("user{i}@contoso-alias.com")
        } else {
            format!("user{i}@contoso.com")
        };
        emu.post("/_emulator/accept", json!({"userName": name}));
    }
    for i in 240..250 {
        doc["users"][i]["accountEnabled"] = json!(false);
    }
    ws.write_directory(&doc);
    ws.sync().ok();
    assert_eq!(
        emu.status("user245@contoso.com").as_deref(),
        Some("suspended")
    );
    assert_eq!(
        emu.status("user260@contoso.com").as_deref(),
        Some("invited")
    );
    // Members and a group nobody provisioned.
    let extra: Vec<Value> = (0..5)
        .map(|i| json!({"member_email": format!("contractor{i}@partner.example.org"), "member_surname": "Ext"}))
        .collect();
    legacy_post(&emu, "members/add_v2", json!({"new_members": extra}));
    legacy_post(
        &emu,
        "groups/create",
        json!({"group_name": "Design", "group_management_type": "user_managed"}),
    );
    doc["groups"]
        .as_array_mut()
        .unwrap()
        .push(json!({"id": "g4", "displayName": "Design", "members": ["u150", "u151"]}));
    doc["assignments"]
        .as_array_mut()
        .unwrap()
        .push(json!({"principalId": "g4", "principalType": "Group", "appRole": "User"}));
    ws.write_directory(&doc);

    // 2. Plan with the default migration.rhai.
    set_target(&ws, &emu, false);
    ws.write("scripts/mapping.rhai", &scim_mapping);
    emu.reset_stats();
    let p = ws.run(&["migrate", "plan", "--json"]);
    p.ok();
    let plan: Value = serde_json::from_str(&p.stdout).unwrap();
    let mut alias: Vec<String> = (0..10)
        .map(|i| format!("user{i}@contoso-alias.com"))
        .collect();
    alias.sort();
    let mut unmanaged: Vec<String> = (0..5)
        .map(|i| format!("contractor{i}@partner.example.org"))
        .collect();
    unmanaged.sort();
    assert_eq!(outcomes(&plan, "members", "conflict"), alias);
    assert_eq!(outcomes(&plan, "members", "unmanaged"), unmanaged);
    assert_eq!(outcomes(&plan, "members", "adopt").len(), 290);
    assert_eq!(
        outcomes(&plan, "groups", "adopt"),
        vec!["Engineering", "Sales", "Support"]
    );
    assert_eq!(outcomes(&plan, "groups", "conflict"), vec!["Design"]);
    let design = plan["groups"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["name"] == "Design")
        .unwrap();
    assert!(
        design["reason"]
            .as_str()
            .unwrap()
            .contains("migration.rhai match_group"),
        "the hint names the hook that exists: {design}"
    );
    assert_eq!(emu.stats().1, 0, "migrate plan writes nothing to Dropbox");

    // 3. The alias-domain script resolves the conflicts.
    let example = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("examples/migration/alias-domain.rhai"),
    )
    .unwrap();
    ws.write("scripts/migration.rhai", &example);
    let p = ws.run(&["migrate", "plan", "--json"]);
    let plan: Value = serde_json::from_str(&p.stdout).unwrap();
    assert_eq!(outcomes(&plan, "members", "adopt").len(), 300);
    assert_eq!(outcomes(&plan, "members", "conflict"), Vec::<String>::new());
    let u3 = plan["members"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["email"] == "user3@contoso-alias.com")
        .unwrap();
    assert_eq!(u3["rule"], "alias domain contoso-alias.com = contoso.com");
    // Groups are the script's too: match_group takes the user-managed group over
    // (a script without match_group, like the example, gets the built-in rules).
    let takeover = format!(
        "{example}\nfn match_group(group, candidates) {{\n  for c in candidates {{ if to_lower(c.displayName) == to_lower(group.group_name) {{ return #{{ adopt: c.id, rule: \"taken over: \" + group.management }}; }} }}\n  ()\n}}\n"
    );
    ws.write("scripts/migration.rhai", &takeover);
    let p = ws.run(&["migrate", "plan", "--json"]);
    let taken: Value = serde_json::from_str(&p.stdout).unwrap();
    let design = taken["groups"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["name"] == "Design")
        .unwrap();
    assert_eq!(design["outcome"], "adopt", "{design}");
    assert_eq!(design["rule"], "taken over: user_managed");
    assert_eq!(taken["blocked"], json!([]), "{}", p.stdout);
    ws.write("scripts/migration.rhai", &example);

    // 4. Apply, twice: the same links, nothing sent to Dropbox.
    ws.run(&["migrate", "apply"]).ok();
    let first = links(&ws);
    let again = ws.run(&["migrate", "apply"]);
    again.ok();
    assert!(
        again.stdout.contains("0 link(s) written"),
        "{}",
        again.stdout
    );
    assert_eq!(links(&ws), first);
    assert_eq!(emu.stats().1, 0);

    // 5. The first SCIM cycle: zero creates, zero invites, only the alias logins move.
    // The plan says so, and plans nothing for the blocked group but its skip.
    let p = ws.run(&["plan", "--json"]);
    let planned: Value = serde_json::from_str(&p.stdout).unwrap();
    let for_design: Vec<&Value> = planned["actions"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["source_id"] == "g4")
        .collect();
    assert!(
        !for_design.is_empty() && for_design.iter().all(|a| a["op"] == "skip"),
        "{for_design:?}"
    );
    let ops = |op: &str| {
        planned["actions"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|a| a["op"] == op)
            .count()
    };
    assert_eq!((ops("create"), ops("update")), (0, 10), "{}", p.stdout);
    let r = ws.sync();
    r.ok();
    let (req, _) = emu.stats();
    assert_eq!(count(&req, "POST /Users"), 0, "{req}");
    assert_eq!(count(&req, "POST /Groups"), 0, "{req}");
    assert_eq!(
        count(&req, "PATCH /Users"),
        10,
        "alias logins to the primary domain: {req}"
    );
    let users = emu.users();
    assert_eq!(
        users.len(),
        305,
        "no duplicate, the unmanaged members are left alone"
    );
    for i in 0..300 {
        let name = format!("user{i}@contoso.com");
        let want = if (240..250).contains(&i) {
            "suspended"
        } else if i >= 250 {
            "invited"
        } else {
            "active"
        };
        assert_eq!(emu.status(&name).as_deref(), Some(want), "{name}");
    }
    assert!(emu.user("contractor2@partner.example.org").is_some());
    assert_eq!(emu.group_members("Sales").len(), 50);
    let l = ws.run(&["logs", "--object", "g4"]);
    assert!(
        l.stdout.contains("migration conflict"),
        "the user-managed Design group is not taken over: {}",
        l.stdout
    );

    // 6. The legacy integration is retired.
    set_target(&ws, &emu, true);
    let r = ws.sync();
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("migrate apply"), "{}", r.stderr);
    // Rolled back, the legacy target runs again (and finds nothing to do).
    ws.run(&["restart", "--scope", "migration"]).ok();
    let r = ws.sync();
    assert_ne!(r.code, 2, "{}{}", r.stdout, r.stderr);
}

#[test]
fn legacy_target_recovers_recently_removed_members_and_removes_unassigned_ones() {
    let emu = Emulator::start();
    let mut doc = small_directory(4);
    let ws = Workspace::new(&emu, &doc);
    set_target(&ws, &emu, true);
    ws.sync().ok();
    emu.accept_all();
    let id_before = emu.user("user1@contoso.com").unwrap()["id"].clone();

    // Unassigned: the legacy integration removes (the SCIM one would suspend).
    doc["assignments"]
        .as_array_mut()
        .unwrap()
        .retain(|a| a["principalId"] != "u1");
    ws.write_directory(&doc);
    ws.sync().ok();
    assert!(emu.user("user1@contoso.com").is_none());
    // Assigned again within 7 days: recovered, same account, not a new invite.
    doc["assignments"]
        .as_array_mut()
        .unwrap()
        .push(json!({"principalId": "u1", "principalType": "User", "appRole": "User"}));
    ws.write_directory(&doc);
    emu.reset_stats();
    ws.sync().ok();
    let (req, _) = emu.stats();
    assert_eq!(count(&req, "POST /2/team/members/recover"), 1, "{req}");
    assert_eq!(emu.user("user1@contoso.com").unwrap()["id"], id_before);
    assert_eq!(emu.status("user1@contoso.com").as_deref(), Some("active"));

    // Disabled while still invited: Dropbox cannot suspend it, so it is removed.
    ws.write_directory(&doc);
    let mut doc2 = doc.clone();
    doc2["users"]
        .as_array_mut()
        .unwrap()
        .push(json!({"id": "u9", "userPrincipalName": "user9@contoso.com", "surname": "N"}));
    doc2["assignments"]
        .as_array_mut()
        .unwrap()
        .push(json!({"principalId": "u9", "principalType": "User", "appRole": "User"}));
    ws.write_directory(&doc2);
    ws.sync().ok();
    assert_eq!(emu.status("user9@contoso.com").as_deref(), Some("invited"));
    doc2["users"][4]["accountEnabled"] = json!(false);
    ws.write_directory(&doc2);
    let p = ws.run(&["plan", "--json"]);
    let v: Value = serde_json::from_str(&p.stdout).unwrap();
    assert_eq!(v["actions"][0]["op"], "delete", "{}", p.stdout);
    ws.sync().ok();
    assert!(emu.user("user9@contoso.com").is_none());
    // A 409 names its tag: a duplicate external id.
    let (s, body) = emu.post(
        "/2/team/members/add_v2",
        json!({"new_members": [{"member_email": "x@contoso.com", "member_external_id": "u0"}]}),
    );
    assert_eq!(s, 200);
    assert_eq!(body["complete"][0][".tag"], "duplicate_external_member_id");
}
