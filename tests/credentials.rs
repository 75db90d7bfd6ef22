//! Credentials that last: Dropbox OAuth offline access (`authorize`, refresh,
//! revocation), rotation without restart, Graph certificates and federated tokens.

use crate::util::*;
use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::PermissionsExt;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const REFRESH_FILE: &str = "secrets/dropbox-refresh-token";

/// A workspace whose [target] uses OAuth offline access against the emulator.
fn oauth_workspace(emu: &Emulator, doc: &Value, extra: &str) -> Workspace {
    let ws = Workspace::new(emu, doc);
    let cfg = std::fs::read_to_string(ws.dir.join("scimsync.toml")).unwrap();
    let oauth = format!(
        "app_key = \"scimsync-app\"\nrefresh_token = \"file:{REFRESH_FILE}\"\ntoken_url = \"{b}/oauth2/token\"\nauthorize_url = \"{b}/oauth2/authorize\"\n{extra}",
        b = emu.base
    );
    ws.write(
        "scimsync.toml",
        &cfg.replace("token = \"env:SCIMSYNC_TEST_TOKEN\"\n", &oauth),
    );
    ws
}

/// Runs `scimsync authorize`, approving in the emulator and pasting the code on
/// stdin, as an admin would.
fn authorize(ws: &Workspace, env: &[(&str, &str)]) -> Run {
    let mut child = Command::new(BIN)
        .args([
            "-c",
            ws.dir.join("scimsync.toml").to_str().unwrap(),
            "authorize",
        ])
        .envs(env.iter().copied())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut stdout = String::new();
    let url = loop {
        let mut line = String::new();
        assert!(
            out.read_line(&mut line).unwrap() > 0,
            "no address printed: {stdout}"
        );
        stdout.push_str(&line);
        if let Some(u) = line
            .trim()
            .strip_prefix("http")
            .filter(|_| line.contains("/oauth2/authorize?"))
        {
            break format!("http{u}");
        }
    };
    assert!(
        url.contains("code_challenge_method=S256") && url.contains("token_access_type=offline"),
        "{url}"
    );
    let page = call("GET", &url, None, None).1;
    let code = page.rsplit(": ").next().unwrap().trim().to_string();
    let mut stdin = child.stdin.take().unwrap();
    writeln!(stdin, "{code}").unwrap();
    drop(stdin);
    let o = child.wait_with_output().unwrap();
    stdout.push_str(&String::from_utf8_lossy(&o.stdout));
    Run {
        code: o.status.code().unwrap_or(-1),
        stdout: format!("{stdout}\ncode {code}"),
        stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
    }
}

fn token_requests(emu: &Emulator) -> u64 {
    count(&emu.stats().0, "POST /oauth2/token")
}

fn start_daemon(ws: &Workspace) -> Child {
    Command::new(BIN)
        .args(["-c", ws.dir.join("scimsync.toml").to_str().unwrap(), "run"])
        .env("RUST_LOG", "info")
        .env("SCIMSYNC_TEST_TOKEN", "unused")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(ws.dir.join("daemon.log")).unwrap())
        .spawn()
        .unwrap()
}

fn stop(mut daemon: Child) {
    let _ = Command::new("kill")
        .args(["-TERM", &daemon.id().to_string()])
        .status();
    let t = Instant::now();
    while t.elapsed() < Duration::from_secs(10) {
        if daemon.try_wait().unwrap().is_some() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = daemon.kill();
}

fn wait_until(what: &str, secs: u64, mut f: impl FnMut() -> bool) {
    let t = Instant::now();
    while t.elapsed() < Duration::from_secs(secs) {
        if f() {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("timed out waiting for {what}");
}

fn status(ws: &Workspace) -> Value {
    serde_json::from_str(&ws.run(&["status", "--json"]).stdout).unwrap()
}

#[test]
fn authorize_writes_a_private_refresh_token_that_sync_lives_on() {
    let emu = Emulator::start_with(&["--token-ttl", "3600"]);
    let doc = small_directory(4);
    let ws = oauth_workspace(&emu, &doc, "");
    // Before authorize, a cycle says what to do (and writes nothing).
    let r = ws.sync();
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(
        r.stderr.contains("run `scimsync authorize`"),
        "{}",
        r.stderr
    );

    let r = authorize(&ws, &[]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    let file = ws.dir.join(REFRESH_FILE);
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&file), 0o600);
    assert_eq!(mode(file.parent().unwrap()), 0o700);
    let refresh = std::fs::read_to_string(&file).unwrap().trim().to_string();
    let issued = emu.get("/_emulator/oauth");
    assert_eq!(issued["refresh_tokens"], json!([refresh]));
    let code = r.stdout.rsplit("code ").next().unwrap().to_string();
    for t in issued["access_tokens"]
        .as_array()
        .unwrap()
        .iter()
        .chain([&json!(refresh)])
    {
        let t = t.as_str().unwrap();
        assert!(!r.stdout.replace(&code, "").contains(t) && !r.stderr.contains(t));
    }
    // PKCE is checked: a code used once is refused, and so is a wrong verifier.
    let again = ws.run(&["authorize", "--code", &code]);
    assert_eq!(again.code, 2, "{}", again.stderr);
    assert!(
        again.stderr.contains("Dropbox refused the code"),
        "{}",
        again.stderr
    );
    let page = call("GET", &format!(
        "{}/oauth2/authorize?client_id=scimsync-app&response_type=code&token_access_type=offline&code_challenge={}&code_challenge_method=S256",
        emu.base,
        "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
    ), None, None)
    .1;
    let fresh = page.rsplit(": ").next().unwrap().trim();
    let wrong = post_form(
        &format!("{}/oauth2/token", emu.base),
        &[
            ("grant_type", "authorization_code"),
            ("code", fresh),
            (
                "code_verifier",
                "not-the-verifier-not-the-verifier-not-the-verifier",
            ),
            ("client_id", "scimsync-app"),
        ],
    );
    assert_eq!(wrong.0, 400, "{wrong:?}");

    emu.reset_stats();
    ws.sync().ok();
    assert_eq!(emu.user_names(), expected_user_names(&doc));
    assert_eq!(token_requests(&emu), 1, "one access token for the cycle");
}

#[test]
fn a_daemon_lives_through_many_token_expiries() {
    let emu = Emulator::start_with(&["--token-ttl", "2"]);
    let mut doc = small_directory(3);
    let ws = oauth_workspace(&emu, &doc, "");
    let cfg = std::fs::read_to_string(ws.dir.join("scimsync.toml")).unwrap();
    ws.write("scimsync.toml", &format!("interval = \"1s\"\n{cfg}"));
    authorize(&ws, &[]).ok();
    emu.reset_stats();
    let daemon = start_daemon(&ws);
    let started = Instant::now();
    // A change every second for 12 seconds: six lifetimes of the access token,
    // each cycle sending requests.
    let mut round = 0;
    while started.elapsed() < Duration::from_secs(12) {
        round += 1;
        doc["users"][1]["surname"] = json!(format!("Round{round}"));
        ws.write_directory(&doc);
        std::thread::sleep(Duration::from_millis(1000));
    }
    let want = format!("Round{round}");
    wait_until("the last change", 15, || {
        emu.user("user1@contoso.com").unwrap()["name"]["familyName"] == want.as_str()
    });
    let elapsed = started.elapsed().as_secs_f64();
    let refreshes = token_requests(&emu) as f64;
    stop(daemon);
    // One refresh per lifetime (renewed at 90 % of it), not one per request.
    let patches = count(&emu.stats().0, "PATCH /Users") as f64;
    println!(
        "{refreshes} token requests in {elapsed:.1} s with 2-second tokens; {patches} PATCHes"
    );
    assert!(refreshes >= 3.0, "{refreshes}");
    assert!(
        refreshes <= elapsed / 1.8 + 2.0,
        "{refreshes} in {elapsed:.1} s"
    );
    assert!(patches >= 8.0, "the daemon kept working: {patches}");
    let failures = ws.run(&["logs", "--status", "failure"]);
    assert!(failures.stdout.trim().is_empty(), "{}", failures.stdout);
}

#[test]
fn a_revoked_authorization_quarantines_and_authorize_heals_the_running_daemon() {
    let emu = Emulator::start_with(&["--token-ttl", "2"]);
    let mut doc = small_directory(3);
    let ws = oauth_workspace(&emu, &doc, "");
    let events = ws.dir.join("events.jsonl");
    let cfg = std::fs::read_to_string(ws.dir.join("scimsync.toml")).unwrap();
    ws.write(
        "scimsync.toml",
        &format!(
            "interval = \"1s\"\n{cfg}\n[notify]\ncommand = \"cat >> {}; echo >> {}\"\n",
            events.display(),
            events.display()
        ),
    );
    authorize(&ws, &[]).ok();
    let daemon = start_daemon(&ws);
    wait_until("the first cycle", 15, || emu.users().len() == 3);
    // The app is removed from the team: every grant goes.
    let (s, _) = emu.post("/_emulator/revoke", json!({}));
    assert_eq!(s, 204);
    doc["users"][0]["surname"] = json!("AfterRevoke");
    ws.write_directory(&doc);
    let sentence = "The Dropbox authorization was revoked or expired: run `scimsync authorize`.";
    wait_until("quarantine", 20, || {
        status(&ws)["quarantine"]["reason"] == sentence
    });
    let text = ws.run(&["status"]).stdout;
    assert!(text.contains(sentence), "{text}");
    wait_until("the notification", 10, || {
        std::fs::read_to_string(&events)
            .is_ok_and(|t| t.contains("\"quarantine\"") && t.contains(sentence))
    });
    // The admin authorizes again; the daemon notices the new refresh token by
    // itself (no restart, no signal), leaves quarantine and applies the change.
    authorize(&ws, &[]).ok();
    wait_until("the change after authorize", 20, || {
        emu.user("user0@contoso.com").unwrap()["name"]["familyName"] == "AfterRevoke"
    });
    wait_until("quarantine to end", 10, || {
        status(&ws)["quarantine"].is_null()
    });
    stop(daemon);
}

#[test]
fn a_rotated_token_file_reaches_the_running_daemon() {
    let emu = Emulator::start();
    let mut doc = small_directory(2);
    let ws = Workspace::new(&emu, &doc);
    ws.write("token", "wrong-token");
    std::fs::set_permissions(ws.dir.join("token"), std::fs::Permissions::from_mode(0o600)).unwrap();
    let cfg = std::fs::read_to_string(ws.dir.join("scimsync.toml")).unwrap();
    ws.write(
        "scimsync.toml",
        &format!(
            "interval = \"1s\"\n{}",
            cfg.replace("env:SCIMSYNC_TEST_TOKEN", "file:token")
        ),
    );
    let daemon = start_daemon(&ws);
    wait_until("quarantine", 20, || {
        status(&ws)["quarantine"]["reason"]
            .as_str()
            .is_some_and(|r| r.contains("replace target.token"))
    });
    // Fixed in place: read again at once, quarantine over, the team provisioned.
    ws.write("token", &emu.token);
    wait_until("the team", 20, || emu.users().len() == 2);
    wait_until("quarantine to end", 10, || {
        status(&ws)["quarantine"].is_null()
    });
    doc["users"][1]["surname"] = json!("Rotated");
    ws.write_directory(&doc);
    wait_until("a later change", 15, || {
        emu.user("user1@contoso.com").unwrap()["name"]["familyName"] == "Rotated"
    });
    stop(daemon);
}

#[test]
fn no_app_secret_refresh_or_access_token_is_ever_written_out() {
    let emu = Emulator::start_with(&["--token-ttl", "2", "--app-secret", "app-secret-5b1e7d"]);
    let mut doc = small_directory(3);
    let mut ws = oauth_workspace(&emu, &doc, "app_secret = \"env:APP_SECRET\"\n");
    ws.env
        .push(("APP_SECRET".into(), "app-secret-5b1e7d".into()));
    ws.env.push(("RUST_LOG".into(), "trace".into()));
    let mut captured = String::new();
    let a = authorize(
        &ws,
        &[("APP_SECRET", "app-secret-5b1e7d"), ("RUST_LOG", "trace")],
    );
    assert_eq!(a.code, 0, "{}", a.stderr);
    let code = a.stdout.rsplit("code ").next().unwrap().to_string();
    captured.push_str(&a.stdout.replace(&code, ""));
    captured.push_str(&a.stderr);
    for round in 0..3 {
        doc["users"][0]["surname"] = json!(format!("R{round}"));
        ws.write_directory(&doc);
        for args in [
            &["sync"][..],
            &["plan", "--json"],
            &["status", "--json"],
            &["logs", "--json"],
            &["check"],
        ] {
            let r = ws.run(args);
            captured.push_str(&r.stdout);
            captured.push_str(&r.stderr);
        }
        std::thread::sleep(Duration::from_millis(2100));
    }
    assert!(
        captured.contains("TRACE") || captured.contains("DEBUG"),
        "trace logging was on: {}",
        &captured[..captured.len().min(3000)]
    );
    let issued = emu.get("/_emulator/oauth");
    assert!(issued["issued"].as_u64().unwrap() >= 3, "{issued}");
    let mut secrets = vec!["app-secret-5b1e7d".to_string()];
    for list in ["access_tokens", "refresh_tokens"] {
        for t in issued[list].as_array().unwrap() {
            secrets.push(t.as_str().unwrap().to_string());
        }
    }
    let state: Vec<u8> = std::fs::read_dir(&ws.dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("state.db")
        })
        .flat_map(|p| std::fs::read(p).unwrap())
        .collect();
    let state = String::from_utf8_lossy(&state);
    for s in &secrets {
        assert!(
            !captured.contains(s.as_str()),
            "a secret reached the output"
        );
        assert!(!state.contains(s.as_str()), "a secret reached the state");
    }
}

#[test]
fn oauth_and_a_static_token_together_are_a_config_error() {
    let emu = Emulator::start();
    let ws = Workspace::new(&emu, &small_directory(1));
    let cfg = std::fs::read_to_string(ws.dir.join("scimsync.toml")).unwrap();
    for (extra, says) in [
        (
            "app_key = \"k\"\n",
            "target.token and target.app_key cannot be used together",
        ),
        (
            "refresh_token = \"file:x\"\n",
            "target.token and target.refresh_token cannot be used together",
        ),
    ] {
        ws.write(
            "scimsync.toml",
            &cfg.replace("[target]\n", &format!("[target]\n{extra}")),
        );
        let r = ws.run(&["plan"]);
        assert_eq!(r.code, 2);
        assert!(r.stderr.contains(says), "{}", r.stderr);
    }
    let literal = cfg.replace(
        "token = \"env:SCIMSYNC_TEST_TOKEN\"\n",
        "app_key = \"k\"\nrefresh_token = \"abc\"\n",
    );
    ws.write("scimsync.toml", &literal);
    let r = ws.run(&["plan"]);
    assert_eq!(r.code, 2);
    assert!(
        r.stderr
            .contains("target.refresh_token: must be \"file:PATH\""),
        "{}",
        r.stderr
    );
}

fn graph_with(
    extra: &[&str],
    credential_line: &str,
    files: &[(&str, &str)],
) -> (Emulator, Workspace, GraphEmulator) {
    let doc = small_directory(3);
    let emu = Emulator::start();
    let ws = Workspace::new(&emu, &doc);
    let graph = GraphEmulator::start_with(&ws.dir, &doc, 10, extra);
    graph.configure_workspace(&ws, "unused");
    let cfg = std::fs::read_to_string(ws.dir.join("scimsync.toml")).unwrap();
    ws.write(
        "scimsync.toml",
        &cfg.replace("client_secret = \"unused\"\n", credential_line),
    );
    for (name, from) in files {
        let fixture = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures")
            .join(from);
        std::fs::copy(fixture, ws.dir.join(name)).unwrap();
        std::fs::set_permissions(ws.dir.join(name), std::fs::Permissions::from_mode(0o600))
            .unwrap();
    }
    (emu, ws, graph)
}

#[test]
fn a_graph_certificate_credential_is_accepted_and_a_wrong_one_refused() {
    let fixture =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/graph-cert.pem");
    let registered = ["--client-certificate", fixture.to_str().unwrap()];
    for file in ["graph-cert.pem", "graph-cert-pkcs1.pem"] {
        let (emu, ws, graph) = graph_with(
            &registered,
            "client_certificate = \"file:app.pem\"\n",
            &[("app.pem", file)],
        );
        ws.sync().ok();
        assert_eq!(emu.users().len(), 3, "{file}");
        assert!(count(&graph.stats(), "POST token") >= 1);
    }
    let (_emu, ws, _graph) = graph_with(
        &registered,
        "client_certificate = \"file:app.pem\"\n",
        &[("app.pem", "other-cert.pem")],
    );
    let r = ws.sync();
    assert_eq!(r.code, 2, "{}{}", r.stdout, r.stderr);
    assert!(
        r.stderr.contains("AADSTS700027") && r.stderr.contains("source.client_certificate"),
        "{}",
        r.stderr
    );
    // One way to authenticate at a time.
    let (_emu, ws, _graph) = graph_with(
        &registered,
        "client_secret = \"x\"\nclient_certificate = \"file:app.pem\"\n",
        &[("app.pem", "graph-cert.pem")],
    );
    let r = ws.run(&["plan"]);
    assert_eq!(r.code, 2);
    assert!(
        r.stderr
            .contains("source.client_secret and source.client_certificate cannot be used together"),
        "{}",
        r.stderr
    );
}

#[test]
fn a_federated_token_file_is_read_at_every_token_request() {
    let (emu, ws, _graph) = graph_with(
        &["--federated-token", "federated-eyJ0eXAi"],
        "client_assertion = \"file:federated-token\"\n",
        &[],
    );
    ws.write("federated-token", "federated-eyJ0eXAi\n");
    ws.sync().ok();
    assert_eq!(emu.users().len(), 3);
    ws.write("federated-token", "expired-or-wrong\n");
    let r = ws.sync();
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("source.client_assertion"), "{}", r.stderr);
}
