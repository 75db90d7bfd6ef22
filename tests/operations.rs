//! Operations: escrow, quarantine, the deletion threshold, switches, on-demand
//! provisioning, signals, crashes, notifications and the HTML report.

use crate::util::*;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

fn status(ws: &Workspace) -> Value {
    let s = ws.run(&["status", "--json"]);
    s.ok();
    serde_json::from_str(&s.stdout).unwrap()
}

fn notifications(ws: &Workspace) -> Vec<Value> {
    std::fs::read_to_string(ws.dir.join("notify.log"))
        .unwrap_or_default()
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn notify_to_file(ws: &Workspace) {
    let log = ws.dir.join("notify.log");
    ws.add_config(
        "notify",
        &format!(
            "command = \"cat >> '{}'; echo >> '{}'\"",
            log.display(),
            log.display()
        ),
    );
}

#[test]
fn a_failing_object_is_escrowed_and_retried_later_without_blocking_the_rest() {
    let emu = Emulator::start();
    let ws = Workspace::new(&emu, &small_directory(4));
    ws.add_config("safety", "escrow_backoff = \"1h\"");
    notify_to_file(&ws);
    let (s, _) = emu.post(
        "/_emulator/faults",
        json!({"match": "user1@contoso.com", "status": 400, "count": 1}),
    );
    assert_eq!(s, 200);
    let r = ws.sync();
    assert_eq!(r.code, 3, "{}{}", r.stdout, r.stderr);
    assert_eq!(emu.users().len(), 3, "the others are provisioned");
    let st = status(&ws);
    assert_eq!(st["escrows"][0]["source_id"], "u1");
    assert_eq!(st["escrows"][0]["attempts"], 1);
    let next = st["escrows"][0]["next_at"].as_i64().unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    assert!(next >= now + 3500, "one hour back-off");
    assert_eq!(
        notifications(&ws)
            .iter()
            .filter(|n| n["event"] == "failure")
            .count(),
        1
    );
    // Not due yet: the next cycle leaves it alone.
    emu.reset_stats();
    ws.sync().ok();
    assert!(emu.user("user1@contoso.com").is_none());
    assert_eq!(emu.stats().1, 0);
    // Due (back-off shortened): retried and provisioned; the escrow is cleared.
    let cfg = ws.dir.join("scimsync.toml");
    std::fs::write(
        &cfg,
        std::fs::read_to_string(&cfg)
            .unwrap()
            .replace("escrow_backoff = \"1h\"", "escrow_backoff = \"0s\""),
    )
    .unwrap();
    ws.run(&["restart", "--scope", "escrows"]).ok();
    ws.run(&["sync", "--full"]).ok();
    assert!(emu.user("user1@contoso.com").is_some());
    assert_eq!(status(&ws)["escrows"], json!([]));
    let logs = ws.run(&["logs", "--object", "u1", "--json"]);
    let v: Value = serde_json::from_str(&logs.stdout).unwrap();
    let statuses: Vec<&str> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["status"].as_str().unwrap())
        .collect();
    assert_eq!(statuses, vec!["failure", "success"]);
}

#[test]
fn a_retry_after_backoff_succeeds_by_itself() {
    let emu = Emulator::start();
    let ws = Workspace::new(&emu, &small_directory(3));
    ws.add_config("safety", "escrow_backoff = \"0s\"");
    emu.post(
        "/_emulator/faults",
        json!({"match": "user2@contoso.com", "status": 409, "count": 1}),
    );
    assert_eq!(ws.sync().code, 3);
    ws.sync().ok();
    assert!(emu.user("user2@contoso.com").is_some());
    assert_eq!(status(&ws)["escrows"], json!([]));
}

#[test]
fn a_401_puts_the_job_in_quarantine_and_a_fixed_token_leaves_it() {
    let emu = Emulator::start();
    let ws = Workspace::new(&emu, &small_directory(5));
    notify_to_file(&ws);
    let cfg = ws.dir.join("scimsync.toml");
    let good = std::fs::read_to_string(&cfg).unwrap();
    std::fs::write(
        &cfg,
        good.replace("env:SCIMSYNC_TEST_TOKEN", "revoked-token"),
    )
    .unwrap();
    let r = ws.sync();
    assert_eq!(r.code, 4, "{}{}", r.stdout, r.stderr);
    assert!(r.stdout.contains("quarantine"), "{}", r.stdout);
    let s = ws.run(&["status"]);
    assert!(
        s.stdout.contains("QUARANTINE") && s.stdout.contains("replace target.token"),
        "{}",
        s.stdout
    );
    assert!(!s.stdout.contains("revoked-token"));
    let second = ws.sync();
    assert_eq!(second.code, 4);
    let ev = notifications(&ws);
    assert_eq!(
        ev.iter().filter(|n| n["event"] == "quarantine").count(),
        1,
        "notified once, not every cycle: {ev:?}"
    );

    std::fs::write(&cfg, good).unwrap();
    ws.sync().ok();
    assert_eq!(emu.users().len(), 5);
    assert_eq!(status(&ws)["quarantine"], Value::Null);
    assert!(notifications(&ws)
        .iter()
        .any(|n| n["event"] == "quarantine_left"));
}

#[test]
fn unassigning_600_users_holds_the_disables_until_allow_deletes() {
    let emu = Emulator::start();
    let mut doc = small_directory(650);
    let ws = Workspace::new(&emu, &doc);
    notify_to_file(&ws);
    ws.sync().ok();
    emu.accept_all();
    let ids: Vec<String> = (0..600).map(|i| format!("u{i}")).collect();
    doc["assignments"]
        .as_array_mut()
        .unwrap()
        .retain(|a| !ids.contains(&a["principalId"].as_str().unwrap().to_string()));
    doc["users"][640]["surname"] = json!("Renamed");
    ws.write_directory(&doc);
    let p = ws.run(&["plan"]);
    assert!(
        p.stdout.contains("exceed deletion_threshold 500"),
        "{}",
        p.stdout
    );
    let r = ws.sync();
    assert_eq!(r.code, 4, "{}{}", r.stdout, r.stderr);
    assert_eq!(
        emu.user("user640@contoso.com").unwrap()["name"]["familyName"],
        "Renamed",
        "the rest is applied"
    );
    assert_eq!(
        emu.status("user0@contoso.com").as_deref(),
        Some("active"),
        "held"
    );
    let staged = ws.run(&["logs", "--status", "staged", "--json"]);
    assert_eq!(
        serde_json::from_str::<Value>(&staged.stdout)
            .unwrap()
            .as_array()
            .unwrap()
            .len(),
        600
    );
    assert_eq!(status(&ws)["held"], 600);
    assert!(notifications(&ws).iter().any(|n| n["event"] == "hold"));
    // Held again on the next cycle, until released.
    assert_eq!(ws.sync().code, 4);
    ws.run(&["allow-deletes"]).ok();
    ws.sync().ok();
    assert_eq!(
        emu.status("user0@contoso.com").as_deref(),
        Some("suspended")
    );
    assert_eq!(
        emu.status("user599@contoso.com").as_deref(),
        Some("suspended")
    );
    assert_eq!(emu.status("user600@contoso.com").as_deref(), Some("active"));
    assert_eq!(status(&ws)["held"], Value::Null);
}

#[test]
fn skip_out_of_scope_deletions_and_switched_off_actions() {
    let emu = Emulator::start();
    let mut doc = small_directory(3);
    let ws = Workspace::new(&emu, &doc);
    ws.add_config("safety", "skip_out_of_scope_deletions = true");
    ws.sync().ok();
    emu.accept_all();
    doc["assignments"]
        .as_array_mut()
        .unwrap()
        .retain(|a| a["principalId"] != "u0");
    ws.write_directory(&doc);
    ws.sync().ok();
    assert_eq!(emu.status("user0@contoso.com").as_deref(), Some("active"));
    let l = ws.run(&["logs", "--object", "u0"]);
    assert!(
        l.stdout.contains("skip_out_of_scope_deletions"),
        "{}",
        l.stdout
    );

    // [target] actions without delete: a deleted user is not deleted.
    let cfg = ws.dir.join("scimsync.toml");
    std::fs::write(
        &cfg,
        std::fs::read_to_string(&cfg).unwrap().replace(
            "timeout = \"10s\"",
            "timeout = \"10s\"\nactions = [\"create\", \"update\"]",
        ),
    )
    .unwrap();
    doc["users"]
        .as_array_mut()
        .unwrap()
        .retain(|u| u["id"] != "u1");
    ws.write_directory(&doc);
    ws.sync().ok();
    assert!(emu.user("user1@contoso.com").is_some());
    let l = ws.run(&["logs", "--object", "u1"]);
    assert!(l.stdout.contains("delete is switched off"), "{}", l.stdout);
}

#[test]
fn provision_on_demand_shows_the_steps_and_touches_one_object() {
    let emu = Emulator::start();
    let ws = Workspace::new(&emu, &small_directory(5));
    let r = ws.run(&["provision", "user3@contoso.com"]);
    r.ok();
    for step in [
        "1. import",
        "2. scope: in scope",
        "3. match",
        "4. action: create success",
    ] {
        assert!(r.stdout.contains(step), "{step}: {}", r.stdout);
    }
    assert_eq!(emu.users().len(), 1);
    let again = ws.run(&["provision", "u3"]);
    again.ok();
    assert!(
        again.stdout.contains("linked to target object") && again.stdout.contains("none"),
        "{}",
        again.stdout
    );
    let missing = ws.run(&["provision", "nobody@contoso.com"]);
    assert_eq!(missing.code, 2);
}

fn assert_team_matches(emu: &Emulator, n: usize) {
    assert_converged(emu, &small_directory(n));
}

#[test]
fn sigterm_during_a_cycle_stops_cleanly_and_the_next_cycle_completes() {
    let emu = Emulator::start();
    let ws = Workspace::new(&emu, &small_directory(300));
    emu.post("/_emulator/config", json!({"latency_ms": 15}));
    let mut child = ws
        .command(&["run"])
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    wait_for("some users", 20, || emu.users().len() >= 20);
    let t = Instant::now();
    std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    let code = child.wait().unwrap().code();
    assert_eq!(code, Some(0));
    assert!(
        t.elapsed() < Duration::from_secs(3),
        "stopped after the object in flight, not the cycle"
    );
    let partial = emu.users().len();
    assert!(partial < 300, "it really stopped early ({partial})");
    emu.post("/_emulator/config", json!({"latency_ms": 0}));
    ws.sync().ok();
    assert_team_matches(&emu, 300);
}

#[test]
fn html_report_renders_its_charts_in_a_headless_browser() {
    let emu = Emulator::start();
    let mut doc = small_directory(20);
    let ws = Workspace::new(&emu, &doc);
    ws.sync().ok();
    doc["users"][3]["surname"] = json!("Changed");
    ws.write_directory(&doc);
    ws.sync().ok();
    emu.post(
        "/_emulator/faults",
        json!({"match": "Unlucky", "status": 400, "count": 1}),
    );
    doc["users"][5]["surname"] = json!("Unlucky");
    ws.write_directory(&doc);
    assert_eq!(ws.sync().code, 3);
    let page = ws.dir.join("report.html");
    ws.run(&["report", "--html", page.to_str().unwrap()]).ok();
    let html = std::fs::read_to_string(&page).unwrap();
    for fetch in ["src=", "href=", "<link", "@import", "url("] {
        assert!(!html.contains(fetch), "self-contained: no {fetch}");
    }
    assert!(html.contains("u5"), "the escrowed object is listed");

    let chromium = ["chromium", "chromium-browser", "google-chrome"]
        .into_iter()
        .find(|b| {
            std::process::Command::new(b)
                .arg("--version")
                .output()
                .map(|o| o.status.success())
                .unwrap_or(false)
        });
    let Some(chromium) = chromium else {
        peer_missing("Chromium, for the browser half of the report test");
        return;
    };
    let profile = ws.dir.join("chromium-profile");
    let out = std::process::Command::new(chromium)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(["--virtual-time-budget=3000", "--dump-dom"])
        .arg(format!("file://{}", page.display()))
        .output()
        .unwrap();
    let dom = String::from_utf8_lossy(&out.stdout);
    // The charts exist only if the page's script ran: count the bars it drew.
    let chart = |id: &str| -> usize {
        let start = dom
            .find(&format!("id=\"{id}\""))
            .unwrap_or_else(|| panic!("no chart {id}: {dom}"));
        let end = dom[start..].find("</svg>").map(|e| start + e).unwrap();
        dom[start..end].matches("<rect").count()
    };
    assert_eq!(
        chart("duration"),
        3,
        "one bar per cycle: {}",
        &dom[dom.find("<svg").unwrap_or(0)..]
            .chars()
            .take(1500)
            .collect::<String>()
    );
    assert_eq!(
        chart("actions"),
        2,
        "the creates of cycle 1, the update of cycle 2"
    );
    assert_eq!(chart("failures"), 1, "one cycle had a failure");
    assert!(
        dom.contains("cycle 1 (initial): create 20"),
        "bar titles carry the data"
    );
}

#[test]
fn one_daemon_per_state_file_and_commands_run_beside_it() {
    let emu = Emulator::start();
    let ws = Workspace::new(&emu, &small_directory(3));
    let cfg = ws.dir.join("scimsync.toml");
    let daemon = |stderr: std::process::Stdio| {
        std::process::Command::new(BIN)
            .args(["-c", cfg.to_str().unwrap(), "run"])
            .env("SCIMSYNC_TEST_TOKEN", &emu.token)
            .stderr(stderr)
            .spawn()
            .unwrap()
    };
    let mut first = daemon(std::process::Stdio::null());
    wait_for("the daemon's first cycle", 20, || emu.users().len() == 3);
    // A second daemon on the same state is refused.
    let second = daemon(std::process::Stdio::piped())
        .wait_with_output()
        .unwrap();
    assert_eq!(second.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&second.stderr);
    assert!(
        stderr.contains(&format!("another scimsync (pid {})", first.id()))
            && stderr.contains("is running as the daemon"),
        "{stderr}"
    );
    // Between its cycles the daemon holds no lock: provision and sync run.
    ws.write_directory(&small_directory(5));
    let p = ws.run(&["provision", "u3"]);
    assert_eq!(p.code, 0, "{}{}", p.stdout, p.stderr);
    assert!(emu.user("user3@contoso.com").is_some());
    ws.sync().ok();
    assert_eq!(emu.users().len(), 5);
    ws.run(&["status"]).ok();
    ws.run(&["plan"]).ok();
    std::process::Command::new("kill")
        .args(["-TERM", &first.id().to_string()])
        .status()
        .unwrap();
    assert_eq!(first.wait().unwrap().code(), Some(0));
}

#[test]
fn the_legacy_and_scim_integrations_cannot_run_against_one_team_at_once() {
    let emu = Emulator::start();
    let doc = small_directory(3);
    let legacy = Workspace::new(&emu, &doc);
    let cfg = legacy.dir.join("scimsync.toml");
    let text = std::fs::read_to_string(&cfg).unwrap();
    let (start, end) = (
        text.find("[target]").unwrap(),
        text.find("[safety]").unwrap(),
    );
    std::fs::write(
        &cfg,
        format!(
            "{}[target]\ntype = \"dropbox-legacy\"\napi_url = \"{}\"\ntoken = \"env:SCIMSYNC_TEST_TOKEN\"\n\n[deprovision]\nfiles = \"leave\"\n\n{}",
            &text[..start],
            emu.base,
            &text[end..]
        ),
    )
    .unwrap();
    let locks = legacy.dir.join("locks");
    std::fs::create_dir_all(&locks).unwrap();
    let mut daemon = std::process::Command::new(BIN)
        .args(["-c", cfg.to_str().unwrap(), "run"])
        .env("SCIMSYNC_TEST_TOKEN", &emu.token)
        .env("SCIMSYNC_LOCK_DIR", &locks)
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    wait_for("the legacy daemon's first cycle", 20, || {
        emu.users().len() == 3
    });

    // Another state file, the SCIM integration of the same team (its [legacy]
    // credentials name the team): refused while the legacy daemon runs.
    let mut scim = Workspace::new(&emu, &doc);
    let scfg = scim.dir.join("scimsync.toml");
    let stext = std::fs::read_to_string(&scfg).unwrap();
    std::fs::write(
        &scfg,
        stext.replace(
            "[safety]",
            &format!(
                "[legacy]\napi_url = \"{}\"\ntoken = \"env:SCIMSYNC_TEST_TOKEN\"\n\n[safety]",
                emu.base
            ),
        ),
    )
    .unwrap();
    scim.env.push((
        "SCIMSYNC_LOCK_DIR".into(),
        locks.to_string_lossy().into_owned(),
    ));
    let r = scim.sync();
    assert_eq!(r.code, 1, "{}{}", r.stdout, r.stderr);
    assert!(
        r.stderr
            .contains(&format!("another scimsync (pid {})", daemon.id()))
            && r.stderr
                .contains("legacy and SCIM integrations cannot run against one team at once"),
        "{}",
        r.stderr
    );
    assert_eq!(
        emu.users().len(),
        3,
        "nothing was written by the refused run"
    );
    std::process::Command::new("kill")
        .args(["-TERM", &daemon.id().to_string()])
        .status()
        .unwrap();
    assert_eq!(daemon.wait().unwrap().code(), Some(0));
    // The legacy integration stopped: the SCIM one may run (and adopts, not duplicates).
    scim.sync().ok();
    assert_eq!(emu.users().len(), 3);
}
