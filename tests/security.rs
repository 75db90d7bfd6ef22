//! Nobody gets in who should not, and no secret leaks out: not in logs at any level,
//! not in errors, not in the state or the provisioning log.

use crate::util::*;
use serde_json::json;

#[test]
fn tokens_never_reach_logs_errors_state_or_the_provisioning_log() {
    let emu = Emulator::start_with(&["--faults", "500=30%,cut=5%", "--seed", "9"]);
    let mut ws = Workspace::new(&emu, &small_directory(60));
    ws.env.push(("RUST_LOG".into(), "trace".into()));
    let mut captured = String::new();
    for args in [
        &["sync"][..],
        &["sync"],
        &["plan", "--json"],
        &["status", "--json"],
        &["logs", "--json"],
        &["check"],
    ] {
        let r = ws.run(args);
        captured.push_str(&r.stdout);
        captured.push_str(&r.stderr);
    }
    assert!(
        captured.contains("TRACE") || captured.contains("DEBUG"),
        "trace logging was on"
    );
    assert!(
        captured.contains("injected"),
        "the faults produced errors to look at"
    );
    // A wrong token: the 401 is explained, the wrong token not repeated.
    let wrong = "wrong-secret-3f9a7c1d";
    let mut doc = small_directory(60);
    doc["users"][0]["surname"] = json!("Changed");
    ws.write_directory(&doc);
    // Objects the faults escrowed are retried now too, so the cycle surely calls.
    ws.run(&["restart", "--scope", "escrows"]).ok();
    ws.env.push(("SCIMSYNC_TEST_TOKEN".into(), wrong.into()));
    let r = ws.sync();
    assert_ne!(r.code, 0);
    assert!(
        r.stderr.contains("401") || r.stdout.contains("401"),
        "{}",
        r.stderr
    );
    captured.push_str(&r.stdout);
    captured.push_str(&r.stderr);
    for secret in [emu.token.as_str(), wrong] {
        assert!(
            !captured.contains(secret),
            "{secret} appeared in the output"
        );
    }
    for f in std::fs::read_dir(&ws.dir).unwrap() {
        let path = f.unwrap().path();
        if path
            .file_name()
            .unwrap()
            .to_string_lossy()
            .starts_with("state.db")
        {
            let bytes = std::fs::read(&path).unwrap();
            let text = String::from_utf8_lossy(&bytes);
            assert!(
                !text.contains(&emu.token),
                "{} holds the token",
                path.display()
            );
        }
    }
}

#[test]
fn readable_secret_files_warn_and_plain_http_is_refused() {
    use std::os::unix::fs::PermissionsExt;
    let emu = Emulator::start();
    let ws = Workspace::new(&emu, &small_directory(2));
    ws.write("token.txt", &emu.token);
    std::fs::set_permissions(
        ws.dir.join("token.txt"),
        std::fs::Permissions::from_mode(0o644),
    )
    .unwrap();
    let cfg = std::fs::read_to_string(ws.dir.join("scimsync.toml")).unwrap();
    let with_file = cfg.replace(
        "env:SCIMSYNC_TEST_TOKEN",
        &format!("file:{}", ws.dir.join("token.txt").display()),
    );
    ws.write("scimsync.toml", &with_file);
    let r = ws.sync();
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stderr.contains("token.txt") && r.stderr.contains("readable"),
        "{}",
        r.stderr
    );
    std::fs::set_permissions(
        ws.dir.join("token.txt"),
        std::fs::Permissions::from_mode(0o600),
    )
    .unwrap();
    assert!(!ws.sync().stderr.contains("readable"));

    // http:// to anything but loopback is refused unless explicitly allowed.
    let remote = with_file.replace(&emu.scim, "http://scim.example.net/scim/v2");
    ws.write("scimsync.toml", &remote);
    let r = ws.run(&["plan"]);
    assert_eq!(r.code, 2);
    assert!(
        r.stderr.contains("plain http") && r.stderr.contains("allow_insecure_http"),
        "{}",
        r.stderr
    );

    // The emulator wants its token, on its SCIM and its admin endpoints alike.
    for path in ["/scim/v2/Users", "/_emulator/stats", "/_emulator/chaos"] {
        let r = ureq::get(&format!("{}{path}", emu.base))
            .set("Authorization", "Bearer nope")
            .call();
        assert!(
            matches!(r, Err(ureq::Error::Status(401, _))),
            "{path}: {r:?}"
        );
    }
    let (s, _) = emu.post("/_emulator/chaos", json!({}));
    assert_eq!(s, 200);
}
