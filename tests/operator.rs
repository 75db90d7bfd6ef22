//! What an operator reaches for (issue 18): read-only commands without secrets,
//! a CLI that ends quietly in a pipe, completions and a manual page, monitoring
//! codes (`status --check`), log retention.

use crate::util::*;
use serde_json::Value;
use std::process::Command;

/// Runs the binary with the workspace's config but without the target's token
/// in the environment.
fn run_without_secret(ws: &Workspace, args: &[&str]) -> Run {
    let out = Command::new(BIN)
        .args(["-c", ws.dir.join("scimsync.toml").to_str().unwrap()])
        .args(args)
        .env("RUST_LOG", "warn")
        .env_remove("SCIMSYNC_TEST_TOKEN")
        .output()
        .unwrap();
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn state(ws: &Workspace) -> rusqlite::Connection {
    rusqlite::Connection::open(ws.dir.join("state.db")).unwrap()
}

fn count(ws: &Workspace, table: &str) -> i64 {
    state(ws)
        .query_row(&format!("SELECT count(*) FROM {table}"), [], |r| r.get(0))
        .unwrap()
}

fn add_top_level(ws: &Workspace, line: &str) {
    let cfg = ws.dir.join("scimsync.toml");
    let text = std::fs::read_to_string(&cfg).unwrap();
    std::fs::write(&cfg, format!("{line}\n{text}")).unwrap();
}

#[test]
fn commands_that_only_read_the_state_need_no_secret() {
    let emu = Emulator::start();
    let ws = Workspace::new(&emu, &small_directory(3));
    ws.sync().ok();
    let logs = run_without_secret(&ws, &["logs", "--json"]);
    assert_eq!(logs.code, 0, "{}", logs.stderr);
    assert!(logs.stdout.contains("user1@contoso.com"), "{}", logs.stdout);
    let status = run_without_secret(&ws, &["status"]);
    assert_eq!(status.code, 0, "{}", status.stderr);
    assert!(
        status.stdout.contains("provisioned: 3 user(s)"),
        "{}",
        status.stdout
    );
    let page = ws.dir.join("report.html");
    let report = run_without_secret(&ws, &["report", "--html", page.to_str().unwrap()]);
    assert_eq!(report.code, 0, "{}", report.stderr);
    assert!(std::fs::read_to_string(&page).unwrap().contains("<html"));
    // A command that talks to the target still needs it, and says which.
    let sync = run_without_secret(&ws, &["sync"]);
    assert_eq!(sync.code, 2, "{}", sync.stderr);
    assert!(
        sync.stderr.contains("SCIMSYNC_TEST_TOKEN"),
        "{}",
        sync.stderr
    );
}

#[test]
fn a_closed_pipe_ends_the_output_quietly() {
    let emu = Emulator::start();
    let ws = Workspace::new(&emu, &small_directory(1200));
    ws.sync().ok();
    // 1,200 log lines are far more than a pipe buffers: `head` goes away while
    // scimsync is still printing.
    let script = format!(
        "'{BIN}' -c '{}' logs | head -1; echo \"exit=${{PIPESTATUS[0]}}\" >&2",
        ws.dir.join("scimsync.toml").display()
    );
    let out = Command::new("bash")
        .args(["-c", &script])
        .env("SCIMSYNC_TEST_TOKEN", "unused")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stdout.lines().count(), 1, "{stdout}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(
        stderr.contains("exit=141"),
        "the shell's SIGPIPE code: {stderr}"
    );
}

#[test]
fn a_value_the_log_never_holds_is_refused_with_the_list() {
    let emu = Emulator::start();
    let ws = Workspace::new(&emu, &small_directory(1));
    let r = ws.run(&["logs", "--status", "broken"]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("success"), "{}", r.stderr);
    assert!(r.stderr.contains("failure"), "{}", r.stderr);
    // Entra's word for it is accepted.
    ws.run(&["logs", "--status", "failed"]).ok();
}

#[test]
fn completions_and_the_manual_page_are_generated() {
    let emu = Emulator::start();
    let ws = Workspace::new(&emu, &small_directory(1));
    let bash = ws.run(&["completions", "bash"]);
    bash.ok();
    assert!(
        bash.stdout.contains("complete -F _scimsync"),
        "{}",
        bash.stdout
    );
    assert!(
        bash.stdout.contains("provision"),
        "subcommands are completed"
    );
    let zsh = ws.run(&["completions", "zsh"]);
    zsh.ok();
    assert!(
        zsh.stdout.starts_with("#compdef scimsync"),
        "{}",
        zsh.stdout
    );
    let man = ws.run(&["man"]);
    man.ok();
    assert!(man.stdout.contains(".TH scimsync 1"), "{}", man.stdout);
    assert!(
        man.stdout.contains("allow\\-deletes"),
        "subcommands are listed"
    );
    let version = ws.run(&["--version"]);
    version.ok();
    // "scimsync 0.1.0 (<revision>)": the build is named.
    assert!(
        version.stdout.trim().ends_with(')') && version.stdout.contains(" ("),
        "{}",
        version.stdout
    );
}

#[test]
fn status_check_speaks_the_nagios_convention() {
    let emu = Emulator::start();
    let ws = Workspace::new(&emu, &small_directory(3));
    let before = ws.run(&["status", "--check"]);
    assert_eq!(
        before.code, 2,
        "no cycle yet is critical: {}",
        before.stdout
    );
    assert!(before
        .stdout
        .starts_with("SCIMSYNC CRITICAL - no cycle has finished yet"));
    ws.sync().ok();
    let ok = ws.run(&["status", "--check"]);
    assert_eq!(ok.code, 0, "{}", ok.stdout);
    assert!(
        ok.stdout.starts_with("SCIMSYNC OK - last cycle #1"),
        "{}",
        ok.stdout
    );
    assert_eq!(ok.stdout.lines().count(), 1);

    // A failing object: warning.
    let mut doc = small_directory(3);
    doc["users"][0]["givenName"] = Value::from("Renamed");
    ws.write_directory(&doc);
    emu.fail_requests("Renamed", 400, 1);
    assert_eq!(ws.sync().code, 3);
    let warn = ws.run(&["status", "--check"]);
    assert_eq!(warn.code, 1, "{}", warn.stdout);
    assert!(
        warn.stdout.contains("1 object(s) failing"),
        "{}",
        warn.stdout
    );

    // No cycle finished in three intervals (40 minutes by default): critical.
    state(&ws)
        .execute(
            "UPDATE cycles SET started_at = started_at - 10000, finished_at = finished_at - 10000",
            [],
        )
        .unwrap();
    let stale = ws.run(&["status", "--check"]);
    assert_eq!(stale.code, 2, "{}", stale.stdout);
    assert!(
        stale.stdout.contains("no cycle has finished for 2h 46m"),
        "{}",
        stale.stdout
    );
    assert!(
        stale.stdout.contains("1 object(s) failing"),
        "every reason is named"
    );
}

#[test]
fn the_log_and_cycle_history_are_pruned_after_log_retention() {
    let emu = Emulator::start();
    let ws = Workspace::new(&emu, &small_directory(300));
    add_top_level(&ws, "log_retention = \"30d\"");
    ws.sync().ok();
    let entries = count(&ws, "log");
    assert!(entries >= 300, "{entries}");
    let mode: i64 = state(&ws)
        .query_row("PRAGMA auto_vacuum", [], |r| r.get(0))
        .unwrap();
    assert_eq!(mode, 2, "a new state gives pages back incrementally");
    // The first cycle and its entries are 31 days old now.
    let month = 31 * 86_400;
    let db = state(&ws);
    db.execute("UPDATE log SET at = at - ?1", [month]).unwrap();
    db.execute(
        "UPDATE cycles SET started_at = started_at - ?1, finished_at = finished_at - ?1",
        [month],
    )
    .unwrap();
    drop(db);
    let pages_before: i64 = state(&ws)
        .query_row("PRAGMA page_count", [], |r| r.get(0))
        .unwrap();
    let mut doc = small_directory(300);
    doc["users"][0]["givenName"] = Value::from("Renamed");
    ws.write_directory(&doc);
    ws.sync().ok();
    assert_eq!(count(&ws, "log"), 1, "only the new cycle's entry is left");
    let cycles: Vec<i64> = {
        let db = state(&ws);
        let mut q = db.prepare("SELECT id FROM cycles ORDER BY id").unwrap();
        q.query_map([], |r| r.get(0))
            .unwrap()
            .map(|r| r.unwrap())
            .collect()
    };
    assert_eq!(cycles, vec![2]);
    let db = state(&ws);
    let free: i64 = db
        .query_row("PRAGMA freelist_count", [], |r| r.get(0))
        .unwrap();
    let pages: i64 = db.query_row("PRAGMA page_count", [], |r| r.get(0)).unwrap();
    assert_eq!(free, 0, "freed pages are given back");
    assert!(pages < pages_before, "{pages} < {pages_before}");
}

#[test]
fn log_retention_zero_keeps_everything() {
    let emu = Emulator::start();
    let ws = Workspace::new(&emu, &small_directory(3));
    add_top_level(&ws, "log_retention = \"0s\"");
    ws.sync().ok();
    state(&ws)
        .execute("UPDATE log SET at = at - 400 * 86400", [])
        .unwrap();
    let entries = count(&ws, "log");
    let mut doc = small_directory(3);
    doc["users"][0]["givenName"] = Value::from("Renamed");
    ws.write_directory(&doc);
    ws.sync().ok();
    assert_eq!(count(&ws, "log"), entries + 1);
}

#[test]
fn a_command_waits_for_the_cycle_running_beside_it() {
    let emu = Emulator::start();
    let ws = Workspace::new(&emu, &small_directory(3));
    // This test plays the cycle running beside: it holds the cycle lock.
    let lock = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(ws.dir.join("state.db.lock"))
        .unwrap();
    lock.try_lock().unwrap();
    std::fs::write(ws.dir.join("state.db.lock"), std::process::id().to_string()).unwrap();
    let refused = ws.run(&["sync", "--wait", "1s"]);
    assert_eq!(refused.code, 1, "{}", refused.stderr);
    assert!(
        refused.stderr.contains(&format!(
            "another scimsync (pid {}) is working on",
            std::process::id()
        )) && refused.stderr.contains("waiting for it (up to 1s)"),
        "{}",
        refused.stderr
    );
    assert!(emu.users().is_empty(), "nothing was done");
    let waiting = Command::new(BIN)
        .args(["-c", ws.dir.join("scimsync.toml").to_str().unwrap(), "sync"])
        .env("SCIMSYNC_TEST_TOKEN", &emu.token)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(700));
    assert!(emu.users().is_empty(), "it waits while the lock is held");
    drop(lock);
    let out = waiting.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(stderr.contains("waiting for it (up to 10m)"), "{stderr}");
    assert_eq!(emu.users().len(), 3);
}

#[test]
fn provision_of_an_object_out_of_scope_says_why_and_does_nothing() {
    let emu = Emulator::start();
    let mut doc = small_directory(2);
    doc["assignments"].as_array_mut().unwrap().remove(1);
    let ws = Workspace::new(&emu, &doc);
    let p = ws.run(&["provision", "user1@contoso.com"]);
    assert_eq!(p.code, 0, "{}{}", p.stdout, p.stderr);
    assert!(p.stdout.contains("2. scope: out of scope"), "{}", p.stdout);
    assert!(
        p.stdout.contains("4. action: none — out of scope (")
            && p.stdout.contains("Assign it to the app"),
        "{}",
        p.stdout
    );
    assert!(!p.stdout.contains("already matches"), "{}", p.stdout);
    assert!(emu.users().is_empty());
}

/// `[notify]` mailing `to` through the loopback SMTP server, with `extra` lines.
fn mail_to(ws: &Workspace, smtp: &SmtpServer, to: &str, extra: &str) {
    ws.add_config(
        "notify",
        &format!(
            "email = {to}\nsmtp = \"{}\"\nfrom = \"scimsync@contoso.com\"\n{extra}",
            smtp.url()
        ),
    );
}

fn header<'a>(mail: &'a Mail, name: &str) -> &'a str {
    mail.data
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{name}: ")))
        .unwrap_or_default()
}

#[test]
fn a_failure_is_mailed_once_until_an_object_fails_that_was_not_named() {
    let emu = Emulator::start();
    let smtp = SmtpServer::start();
    let ws = Workspace::new(&emu, &small_directory(4));
    mail_to(&ws, &smtp, "[\"ops@contoso.com\", \"it@contoso.com\"]", "");
    emu.fail_requests("user1@contoso.com", 400, 100);
    assert_eq!(ws.sync().code, 3);
    let mails = smtp.mails();
    assert_eq!(mails.len(), 1);
    let m = &mails[0];
    assert_eq!(m.from, "scimsync@contoso.com");
    assert_eq!(m.to, vec!["ops@contoso.com", "it@contoso.com"]);
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    assert_eq!(
        header(m, "Subject"),
        format!("[scimsync] objects failing on {} (cycle 1)", host.trim())
    );
    assert!(
        m.data.contains("1 object(s) are failing after cycle 1"),
        "{}",
        m.data
    );
    assert!(
        m.data.contains("user user1@contoso.com (u1): "),
        "{}",
        m.data
    );
    assert!(m.data.contains("400"), "the error is named: {}", m.data);
    assert!(m.data.contains("What to do: Fix the record"), "{}", m.data);

    // The same object failing again, cycle after cycle: not mailed again.
    for _ in 0..3 {
        ws.run(&["restart", "--scope", "escrows"]).ok();
        assert_eq!(ws.sync().code, 3);
    }
    assert_eq!(smtp.mails().len(), 1, "an unchanged failure is not re-sent");

    // Another object fails: news.
    emu.fail_requests("user2@contoso.com", 400, 100);
    let mut doc = small_directory(4);
    doc["users"][2]["givenName"] = Value::from("Renamed");
    ws.write_directory(&doc);
    ws.run(&["restart", "--scope", "full"]).ok();
    ws.sync();
    let mails = smtp.mails();
    assert_eq!(
        mails.len(),
        2,
        "{:?}",
        mails
            .iter()
            .map(|m| header(m, "Subject"))
            .collect::<Vec<_>>()
    );
    assert!(mails[1].data.contains("(u2): "), "{}", mails[1].data);
    assert!(
        mails[1].data.contains("2 object(s) are failing"),
        "{}",
        mails[1].data
    );
}

#[test]
fn an_unchanged_failure_is_mailed_again_after_repeat() {
    let emu = Emulator::start();
    let smtp = SmtpServer::start();
    let ws = Workspace::new(&emu, &small_directory(2));
    mail_to(&ws, &smtp, "[\"ops@contoso.com\"]", "repeat = \"0s\"");
    emu.fail_requests("user1@contoso.com", 400, 100);
    ws.sync();
    ws.run(&["restart", "--scope", "escrows"]).ok();
    ws.sync();
    assert_eq!(smtp.mails().len(), 2);
}

#[test]
fn email_settings_are_checked_with_the_config() {
    let emu = Emulator::start();
    let ws = Workspace::new(&emu, &small_directory(1));
    ws.add_config("notify",
        "email = [\"ops@contoso.com\"]\nsmtp = \"smtp://mail.contoso.com:25\"\nfrom = \"scimsync@contoso.com\"",
    );
    let r = ws.run(&["check"]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(
        r.stderr
            .contains("plain SMTP is only for a relay on this machine"),
        "{}",
        r.stderr
    );
    assert!(emu.users().is_empty());
    let ws = Workspace::new(&emu, &small_directory(1));
    ws.add_config("notify", "email = [\"ops@contoso.com\"]");
    let r = ws.run(&["sync"]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("missing smtp, from"), "{}", r.stderr);
}

fn get(port: u16, path: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(s, "GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n").unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    let status = text[9..12].parse().unwrap();
    let body = text.split_once("\r\n\r\n").unwrap().1.to_string();
    (status, body)
}

/// A daemon that is killed if the test fails before it is stopped.
struct Daemon(std::process::Child);

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn a_running_daemon_answers_healthz_and_metrics_and_speaks_to_systemd() {
    let emu = Emulator::start();
    let ws = Workspace::new(&emu, &small_directory(3));
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    ws.add_config("serve", &format!("listen = \"127.0.0.1:{port}\""));
    let socket_path = ws.dir.join("notify.sock");
    let systemd = std::os::unix::net::UnixDatagram::bind(&socket_path).unwrap();
    systemd
        .set_read_timeout(Some(std::time::Duration::from_secs(20)))
        .unwrap();
    let mut daemon = Daemon(
        Command::new(BIN)
            .args(["-c", ws.dir.join("scimsync.toml").to_str().unwrap(), "run"])
            .env("SCIMSYNC_TEST_TOKEN", &emu.token)
            .env("NOTIFY_SOCKET", &socket_path)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    );
    let mut buf = [0u8; 64];
    let n = systemd.recv(&mut buf).unwrap();
    assert_eq!(&buf[..n], b"READY=1");
    wait_for("the first cycle", 20, || emu.users().len() == 3);
    wait_for("the cycle's record", 20, || {
        get(port, "/metrics").1.contains("scimsync_cycles_total{")
    });
    let (status, body) = get(port, "/healthz");
    assert_eq!(status, 200, "{body}");
    assert!(body.starts_with("SCIMSYNC OK - last cycle #1"), "{body}");
    let (status, metrics) = get(port, "/metrics");
    assert_eq!(status, 200);
    for line in [
        "# TYPE scimsync_cycles_total counter",
        "scimsync_cycles_total{kind=\"initial\",status=\"success\"} 1",
        "scimsync_actions_total{action=\"create\",status=\"success\"} 3",
        "scimsync_target_requests_total{method=\"POST\",status=\"201\"} 3",
        "scimsync_escrows 0",
        "scimsync_held_deletions 0",
        "scimsync_pending_removals 0",
        "scimsync_quarantine 0",
        "scimsync_token_refreshes_total 0",
    ] {
        assert!(metrics.lines().any(|l| l == line), "{line} in:\n{metrics}");
    }
    assert!(metrics.contains("scimsync_last_success_timestamp_seconds "));
    assert_eq!(get(port, "/nothing").0, 404);

    // Quarantine is critical: 503 with the reason.
    state(&ws)
        .execute(
            "INSERT INTO meta(key, value) VALUES ('quarantine', '{\"since\": 1, \"reason\": \"the target refused the credentials\", \"level\": 0}')",
            [],
        )
        .unwrap();
    let (status, body) = get(port, "/healthz");
    assert_eq!(status, 503, "{body}");
    assert!(
        body.contains("in quarantine: the target refused the credentials"),
        "{body}"
    );
    assert!(get(port, "/metrics")
        .1
        .lines()
        .any(|l| l == "scimsync_quarantine 1"));

    Command::new("kill")
        .args(["-TERM", &daemon.0.id().to_string()])
        .status()
        .unwrap();
    assert_eq!(daemon.0.wait().unwrap().code(), Some(0));
    let mut said = vec![];
    while let Ok(n) = systemd.recv(&mut buf) {
        said.push(String::from_utf8_lossy(&buf[..n]).into_owned());
        if said.last().is_some_and(|s| s == "STOPPING=1") {
            break;
        }
    }
    assert_eq!(
        said.last().map(String::as_str),
        Some("STOPPING=1"),
        "{said:?}"
    );
}

#[test]
fn init_writes_a_config_for_the_service_layout() {
    let dir = std::env::temp_dir().join(format!("scimsync-init-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let state = dir.join("var").join("scimsync.db");
    let out = Command::new(BIN)
        .args([
            "init",
            dir.to_str().unwrap(),
            "--state",
            state.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let config = std::fs::read_to_string(dir.join("scimsync.toml")).unwrap();
    assert!(
        config.contains(&format!("state    = \"{}\"", state.display())),
        "{config}"
    );
    for key in [
        "# [notify]",
        "# email = ",
        "# smtp = ",
        "# [serve]",
        "log_retention = \"30d\"",
    ] {
        assert!(config.contains(key), "{key} in {config}");
    }
    // It parses, and a read-only command needs none of its secrets.
    let status = Command::new(BIN)
        .args([
            "-c",
            dir.join("scimsync.toml").to_str().unwrap(),
            "status",
            "--json",
        ])
        .env_remove("DROPBOX_TOKEN")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&status.stdout);
    assert_eq!(
        status.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&status.stderr)
    );
    let v: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(v["state"], state.to_str().unwrap());
    let _ = std::fs::remove_dir_all(&dir);
}
