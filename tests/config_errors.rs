//! Bad input: a wrong config, script or directory exits 2, says what and where, and
//! writes nothing.

use crate::util::*;

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
