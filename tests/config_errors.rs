//! Bad input: a wrong config, script or directory exits 2, says what and where, and
//! writes nothing.

use crate::util::*;
use serde_json::{json, Value};

fn workspace() -> (Emulator, Workspace) {
    let emu = Emulator::start();
    let ws = Workspace::new(&emu, &small_directory(2));
    (emu, ws)
}

#[test]
fn unknown_config_key_names_file_key_and_line() {
    let (_emu, ws) = workspace();
    let cfg = ws.dir.join("scimsync.toml");
    let text = std::fs::read_to_string(&cfg)
        .unwrap()
        .replace("[safety]\n", "[safety]\ndeletion_treshold = 3\n");
    std::fs::write(&cfg, text).unwrap();
    let r = ws.sync();
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("scimsync.toml"), "{}", r.stderr);
    assert!(r.stderr.contains("deletion_treshold"), "{}", r.stderr);
    assert!(r.stderr.contains("line "), "{}", r.stderr);
    assert!(!ws.dir.join("state.db").exists());
}

#[test]
fn bad_values_are_named() {
    let (_emu, ws) = workspace();
    let cfg = ws.dir.join("scimsync.toml");
    let base = std::fs::read_to_string(&cfg).unwrap();
    for (from, to, needle) in [
        (
            "scope = \"assigned\"",
            "scope = \"everyone\"",
            "source.scope",
        ),
        (
            "path = \"directory.json\"",
            "path = \"missing.json\"",
            "source.path",
        ),
        ("[safety]\n", "interval = \"forty\"\n[safety]\n", "interval"),
        (
            "env:SCIMSYNC_TEST_TOKEN",
            "env:SCIMSYNC_NOT_SET_ANYWHERE",
            "SCIMSYNC_NOT_SET_ANYWHERE",
        ),
        (
            "url = \"http://127.0.0.1",
            "url = \"http://10.1.2.3",
            "plain http",
        ),
    ] {
        std::fs::write(&cfg, base.replace(from, to)).unwrap();
        let r = ws.sync();
        assert_eq!(r.code, 2, "{to}: {}", r.stderr);
        assert!(r.stderr.contains(needle), "{to}: {}", r.stderr);
    }
}

#[test]
fn script_syntax_error_names_file_and_line() {
    let (emu, ws) = workspace();
    ws.write(
        "scripts/mapping.rhai",
        "fn map_user(u) {\n  #{ userName: u.userPrincipalName,, }\n}\nfn map_group(g) { #{} }\n",
    );
    let r = ws.sync();
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("mapping.rhai:2"), "{}", r.stderr);
    assert_eq!(emu.stats().1, 0);
}

#[test]
fn script_runtime_error_fails_only_that_object() {
    let (emu, ws) = workspace();
    ws.write(
        "scripts/mapping.rhai",
        "fn map_user(u) {\n  if u.id == \"u1\" { throw \"no\"; }\n  #{ userName: u.userPrincipalName, \"name.familyName\": u.surname }\n}\nfn map_group(g) { #{ displayName: g.displayName } }\n",
    );
    let r = ws.sync();
    assert_eq!(r.code, 3, "some objects failed: {}{}", r.stdout, r.stderr);
    assert!(emu.user("user0@contoso.com").is_some());
    assert!(emu.user("user1@contoso.com").is_none());
    let l = ws.run(&["logs", "--status", "failure"]);
    assert!(l.stdout.contains("mapping.rhai:2"), "{}", l.stdout);
    assert!(l.stdout.contains("user1@contoso.com"), "{}", l.stdout);
}

#[test]
fn malformed_directory_and_bad_records() {
    let (emu, ws) = workspace();
    ws.write("directory.json", "{\"users\": [\n  {\"id\": \"u0\",}\n]}");
    let r = ws.sync();
    assert_eq!(r.code, 2);
    assert!(
        r.stderr.contains("directory.json") && r.stderr.contains("line 2"),
        "{}",
        r.stderr
    );
    assert!(!ws.dir.join("state.db").exists() || emu.users().is_empty());

    // A record without userPrincipalName fails alone; the rest is provisioned.
    ws.write(
        "directory.json",
        r#"{"users":[{"id":"u0","userPrincipalName":"user0@contoso.com","surname":"A"},{"id":"u1","surname":"B"}],
            "assignments":[{"principalId":"u0","appRole":"User"},{"principalId":"u1","appRole":"User"}]}"#,
    );
    let r = ws.sync();
    assert_eq!(r.code, 3, "{}{}", r.stdout, r.stderr);
    assert!(emu.user("user0@contoso.com").is_some());
    let l = ws.run(&["logs", "--action", "import"]);
    assert!(
        l.stdout.contains("u1") && l.stdout.contains("userPrincipalName"),
        "{}",
        l.stdout
    );
}

#[test]
fn state_that_is_not_sqlite_is_refused_untouched() {
    let (_emu, ws) = workspace();
    let junk = vec![b'#'; 8192];
    std::fs::write(ws.dir.join("state.db"), &junk).unwrap();
    let r = ws.sync();
    assert_eq!(r.code, 2);
    assert!(
        r.stderr.contains("not a scimsync state file"),
        "{}",
        r.stderr
    );
    assert_eq!(std::fs::read(ws.dir.join("state.db")).unwrap(), junk);
}

/// Every kind of hostile record in one directory: each fails (or is skipped) alone
/// with a message naming it, the rest is provisioned, and nothing is corrupted.
#[test]
fn hostile_records_fail_alone_and_cannot_inject_filters() {
    let (emu, ws) = workspace();
    // Accounts that an injected filter would match.
    let (s, _) = emu.post(
        "/scim/v2/Users",
        json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "userName": "victim@contoso.com",
               "externalId": "other", "name": {"familyName": "Victim"}}),
    );
    assert_eq!(s, 201);
    let (s, _) = emu.post(
        "/scim/v2/Groups",
        json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"], "displayName": "Existing", "members": []}),
    );
    assert_eq!(s, 201);
    let user = |id: &str, upn: &str, surname: &str| json!({"id": id, "userPrincipalName": upn, "mail": upn, "givenName": "G", "surname": surname, "accountEnabled": true});
    let quoted_id = r#"q"uote\back" or externalId pr or ""#;
    let users = vec![
        user("u0", "user0@contoso.com", "Plain"),
        json!({"userPrincipalName": "noid@contoso.com", "surname": "NoId"}),
        user("u2", "Dup@contoso.com", "First"),
        user("u3", "dup@contoso.com", "Second"),
        user("u4", "user4@contoso.com", &"x".repeat(1_000_000)),
        user("u5", "user5@contoso.com", "Tab\there\u{7}bell"),
        user(quoted_id, "user7@contoso.com", "Quoted"),
        user("u8", "user8@contoso.com", "M\u{fc}ller"),
        user("u9", "bad\u{1}name@contoso.com", "Control"),
        json!(42),
    ];
    let mut assignments: Vec<Value> = users
        .iter()
        .filter_map(|u| u["id"].as_str())
        .map(|id| json!({"principalId": id, "principalType": "User", "appRole": "User"}))
        .collect();
    assignments.push(json!({"principalId": "g1", "principalType": "Group", "appRole": "User"}));
    let mut doc = json!({"users": users, "assignments": assignments,
        "groups": [{"id": "g1", "displayName": "Sales\" or displayName pr \"", "members": ["u0"]}]});
    ws.write_directory(&doc);
    let r = ws.sync();
    assert_eq!(r.code, 3, "failures make a partial cycle: {}", r.stderr);

    // Provisioned: the plain user, control characters outside identifiers (escaped
    // on the wire, read back as sent), the quoted id as a literal externalId.
    assert_eq!(
        emu.user("user0@contoso.com").unwrap()["name"]["familyName"],
        "Plain"
    );
    assert_eq!(
        emu.user("user5@contoso.com").unwrap()["name"]["familyName"],
        "Tab\there\u{7}bell"
    );
    assert_eq!(
        emu.user("user7@contoso.com").unwrap()["externalId"],
        quoted_id
    );
    // The injected filters matched nothing: the victims are untouched.
    let victim = emu.user("victim@contoso.com").unwrap();
    assert_eq!(victim["externalId"], "other");
    assert_eq!(victim["name"]["familyName"], "Victim");
    assert!(emu.group_members("Existing").is_empty());
    assert_eq!(
        emu.group_members("Sales\" or displayName pr \""),
        vec!["user0@contoso.com"]
    );
    // One of two userNames differing only in case; the other fails, named.
    let dup = emu
        .users()
        .iter()
        .filter(|u| {
            u["userName"]
                .as_str()
                .unwrap()
                .eq_ignore_ascii_case("dup@contoso.com")
        })
        .count();
    assert_eq!(dup, 1, "one account for Dup@/dup@");
    // Not sent: the 1 MB value, the control character in a userName.
    assert!(emu.user("user4@contoso.com").is_none());
    assert_eq!(
        emu.users()
            .iter()
            .filter(|u| u["userName"].as_str().unwrap().contains("name@"))
            .count(),
        0
    );

    let logs = ws.run(&["logs", "--json"]);
    let entries: Vec<Value> = serde_json::from_str(&logs.stdout).unwrap();
    let about = |who: &str| -> String {
        entries
            .iter()
            .filter(|e| e["source_id"] == who || e["display"] == who)
            .map(|e| format!("{} {} {}", e["status"], e["reason"], e["error"]))
            .collect::<Vec<_>>()
            .join(" | ")
    };
    assert!(
        about("u4").contains("1000000 bytes long"),
        "{}",
        about("u4")
    );
    assert!(
        about("u9").contains("control character U+0001"),
        "{}",
        about("u9")
    );
    // Both creates go out together (worker pool): whichever the target took second
    // is the one that fails, named in the log.
    let failed = ["u2", "u3"]
        .iter()
        .filter(|u| about(u).contains("failure"))
        .count();
    assert_eq!(failed, 1, "u2: {} | u3: {}", about("u2"), about("u3"));
    let imports = ws.run(&["logs", "--action", "import"]).stdout;
    assert!(
        imports.contains("users[1]") && imports.contains("missing \"id\""),
        "{imports}"
    );
    assert!(
        imports.contains("users[9]") && imports.contains("not an object"),
        "{imports}"
    );

    // The same text in another Unicode normal form is the same value: no PATCH.
    doc["users"][7]["surname"] = json!("Mu\u{308}ller");
    ws.write_directory(&doc);
    emu.reset_stats();
    ws.sync();
    let (req, _) = emu.stats();
    assert_eq!(count(&req, "PATCH /Users"), 0, "{req}");
    assert_eq!(
        emu.user("user8@contoso.com").unwrap()["name"]["familyName"],
        "M\u{fc}ller"
    );

    // Nothing is corrupted; a state from a newer scimsync is refused untouched.
    let db = rusqlite::Connection::open(ws.dir.join("state.db")).unwrap();
    let ok: String = db
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!(ok, "ok");
    db.pragma_update(None, "user_version", 999).unwrap();
    drop(db);
    let before = std::fs::read(ws.dir.join("state.db")).unwrap();
    let r = ws.sync();
    assert_eq!(r.code, 2);
    assert!(
        r.stderr.contains("newer") && r.stderr.contains("state.db"),
        "{}",
        r.stderr
    );
    assert_eq!(std::fs::read(ws.dir.join("state.db")).unwrap(), before);
}
