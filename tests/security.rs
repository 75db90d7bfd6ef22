//! Nobody gets in who should not, and no secret leaks out: not in logs at any level,
//! not in errors, not in the state or the provisioning log.

use crate::util::*;
use serde_json::{json, Value};

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
    // Request URLs are logged without their query at every level: a filter holds
    // people's addresses.
    for query in ["filter=", "userName%20eq", "startIndex="] {
        assert!(!captured.contains(query), "{query} appeared in the logs");
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

    // Loopback is decided on the parsed host, and user info is refused outright.
    for (url, says) in [
        ("http://127.evil.example/scim/v2", "plain http"),
        ("http://127.0.0.1.nip.io/scim/v2", "plain http"),
        ("http://127.0.0.1@evil.example/scim/v2", "user info"),
    ] {
        ws.write("scimsync.toml", &with_file.replace(&emu.scim, url));
        let r = ws.run(&["plan"]);
        assert_eq!(r.code, 2, "{url}");
        assert!(r.stderr.contains(says), "{url}: {}", r.stderr);
    }

    // The emulator wants its token, on its SCIM and its admin endpoints alike.
    for path in ["/scim/v2/Users", "/_emulator/stats", "/_emulator/chaos"] {
        let (status, body) = call("GET", &format!("{}{path}", emu.base), Some("nope"), None);
        assert_eq!(status, 401, "{path}: {body}");
    }
    let (s, _) = emu.post("/_emulator/chaos", json!({}));
    assert_eq!(s, 200);
}

/// A listener that counts the connections it gets (a host the token must not reach).
struct Capture {
    addr: String,
    hits: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl Capture {
    fn start() -> Capture {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = format!("http://{}", l.local_addr().unwrap());
        let hits = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let h = hits.clone();
        std::thread::spawn(move || {
            for c in l.incoming().flatten() {
                h.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                drop(c);
            }
        });
        Capture { addr, hits }
    }
    fn hits(&self) -> usize {
        self.hits.load(std::sync::atomic::Ordering::SeqCst)
    }
}

fn graph_workspace(doc: &Value) -> (Emulator, Workspace, GraphEmulator) {
    let emu = Emulator::start();
    let mut ws = Workspace::new(&emu, doc);
    let graph = GraphEmulator::start(&ws.dir, doc, 4);
    graph.configure_workspace(&ws, "env:GRAPH_SECRET");
    ws.env.push(("GRAPH_SECRET".into(), graph.secret.clone()));
    (emu, ws, graph)
}

#[test]
fn graph_links_off_the_graph_host_never_get_the_token() {
    let doc = small_directory(6);
    // A deltaLink stored by an earlier cycle now points elsewhere.
    let (_emu, ws, graph) = graph_workspace(&doc);
    ws.sync().ok();
    let capture = Capture::start();
    let db = rusqlite::Connection::open(ws.dir.join("state.db")).unwrap();
    let n = db
        .execute(
            "UPDATE meta SET value = replace(value, ?1, ?2) WHERE key = 'watermark'",
            [graph.base.as_str(), capture.addr.as_str()],
        )
        .unwrap();
    assert_eq!(n, 1);
    drop(db);
    let r = ws.sync();
    assert_eq!(r.code, 1, "{}{}", r.stdout, r.stderr);
    assert!(r.stderr.contains("off its host"), "{}", r.stderr);
    // Graph hands out a deltaLink on another host.
    let (_emu, ws, graph) = graph_workspace(&doc);
    graph.configure(json!({"delta_base": capture.addr}));
    let r = ws.sync();
    assert_eq!(r.code, 1, "{}{}", r.stdout, r.stderr);
    assert!(r.stderr.contains("off its host"), "{}", r.stderr);
    std::thread::sleep(std::time::Duration::from_millis(100));
    assert_eq!(capture.hits(), 0, "a request went to the other host");
}

#[test]
fn reads_are_bounded_in_pages_and_bytes() {
    let doc = small_directory(6);
    let (emu, ws, graph) = graph_workspace(&doc);
    let cfg = std::fs::read_to_string(ws.dir.join("scimsync.toml")).unwrap();
    ws.write(
        "scimsync.toml",
        &cfg.replace("[source]\n", "[source]\nmax_pages = 40\n"),
    );
    graph.configure(json!({"endless": "users"}));
    let r = ws.sync();
    assert_eq!(r.code, 1, "{}{}", r.stdout, r.stderr);
    assert!(
        r.stderr.contains("past 40 pages (source.max_pages)"),
        "{}",
        r.stderr
    );
    let users_pages = count(&graph.stats(), "GET users");
    assert!(users_pages <= 40, "{users_pages}");
    graph.configure(json!({"endless": null}));
    ws.write(
        "scimsync.toml",
        &cfg.replace("[source]\n", "[source]\nmax_read_bytes = \"2KiB\"\n"),
    );
    let r = ws.sync();
    assert_eq!(r.code, 1, "{}{}", r.stdout, r.stderr);
    assert!(r.stderr.contains("source.max_read_bytes"), "{}", r.stderr);
    assert!(
        emu.users().is_empty(),
        "nothing was planned from a cut read"
    );
    ws.write("scimsync.toml", &cfg);
    ws.sync().ok();
    assert_eq!(emu.users().len(), 6);
}

#[test]
fn state_reports_and_init_files_are_private() {
    use std::os::unix::fs::PermissionsExt;
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    let emu = Emulator::start();
    let ws = Workspace::new(&emu, &small_directory(3));
    ws.sync().ok();
    for f in ["state.db", "state.db.lock"] {
        assert_eq!(mode(&ws.dir.join(f)), 0o600, "{f}");
    }
    // The WAL exists while a process holds the state open: look at a daemon's.
    let mut daemon = ws
        .command(&["run"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let wal = ws.dir.join("state.db-wal");
    let t = std::time::Instant::now();
    while !(wal.exists() && ws.dir.join("state.db-shm").exists())
        && t.elapsed() < std::time::Duration::from_secs(20)
    {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    for f in ["state.db-wal", "state.db-shm"] {
        assert_eq!(mode(&ws.dir.join(f)), 0o600, "{f}");
    }
    let _ = daemon.kill();
    let _ = daemon.wait();
    ws.run(&["report", "--html", ws.dir.join("r.html").to_str().unwrap()])
        .ok();
    assert_eq!(mode(&ws.dir.join("r.html")), 0o600);
    // An older state readable by others is tightened.
    std::fs::set_permissions(
        ws.dir.join("state.db"),
        std::fs::Permissions::from_mode(0o644),
    )
    .unwrap();
    ws.sync().ok();
    assert_eq!(mode(&ws.dir.join("state.db")), 0o600);
    // init: files 0600, folders 0700.
    let dir = ws.dir.join("fresh");
    let out = std::process::Command::new(BIN)
        .args(["init", dir.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(out.status.success());
    assert_eq!(mode(&dir.join("scimsync.toml")), 0o600);
    assert_eq!(mode(&dir.join("scripts/mapping.rhai")), 0o600);
    assert_eq!(mode(&dir.join("scripts")), 0o700);
    // A literal secret in a config others can read is warned about.
    let cfg = std::fs::read_to_string(ws.dir.join("scimsync.toml")).unwrap();
    ws.write(
        "scimsync.toml",
        &cfg.replace("\"env:SCIMSYNC_TEST_TOKEN\"", &format!("\"{}\"", emu.token)),
    );
    let cfg_path = ws.dir.join("scimsync.toml");
    std::fs::set_permissions(&cfg_path, std::fs::Permissions::from_mode(0o644)).unwrap();
    let r = ws.run(&["status"]);
    assert!(
        r.stderr.contains("holds a secret in target.token") && r.stderr.contains("chmod 600"),
        "{}",
        r.stderr
    );
    assert!(!r.stderr.contains(&emu.token));
    std::fs::set_permissions(&cfg_path, std::fs::Permissions::from_mode(0o600)).unwrap();
    assert!(!ws.run(&["status"]).stderr.contains("holds a secret"));
}

#[test]
fn the_notify_command_gets_a_clean_environment() {
    let emu = Emulator::start();
    let mut ws = Workspace::new(&emu, &small_directory(3));
    let dump = ws.dir.join("env.txt");
    let cfg = std::fs::read_to_string(ws.dir.join("scimsync.toml")).unwrap();
    ws.write(
        "scimsync.toml",
        &format!("{cfg}\n[notify]\ncommand = \"env > {}\"\n", dump.display()),
    );
    ws.env
        .push(("UNRELATED_SECRET".into(), "sk-live-0123456789".into()));
    emu.fail_requests("user1@", 400, 1);
    assert_eq!(ws.sync().code, 3);
    let env = std::fs::read_to_string(&dump).expect("the command ran");
    assert!(env.contains("SCIMSYNC_EVENT=failure"), "{env}");
    assert!(env.contains("SCIMSYNC_CYCLE=1"), "{env}");
    assert!(env.contains("PATH="), "{env}");
    for leak in [
        "SCIMSYNC_TEST_TOKEN",
        emu.token.as_str(),
        "UNRELATED_SECRET",
        "sk-live",
    ] {
        assert!(!env.contains(leak), "{leak} reached the command: {env}");
    }
}
