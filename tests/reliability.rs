//! Under faults it converges; after kill -9 anywhere it resumes; nothing is lost or
//! created twice.

use crate::util::*;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

fn directory(n: usize, g: usize) -> Value {
    grouped_directory(n, g, 20)
}

fn integrity_and_links(ws: &Workspace) -> (String, i64) {
    let db = rusqlite::Connection::open(ws.dir.join("state.db")).unwrap();
    let integrity: String = db
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    let links: i64 = db
        .query_row("SELECT count(*) FROM links WHERE kind = 'user'", [], |r| {
            r.get(0)
        })
        .unwrap();
    (integrity, links)
}

fn with_fast_escrow(ws: &Workspace) {
    let cfg = ws.dir.join("scimsync.toml");
    let text = std::fs::read_to_string(&cfg).unwrap();
    // Failed objects are retried by the very next cycle.
    std::fs::write(&cfg, format!("{text}escrow_backoff = \"0s\"\n")).unwrap();
}

#[test]
fn a_faulty_target_converges_within_three_cycles() {
    let faults = "429=5%:0,500=2%,reset=1%,slow=1%:1s,cut=1%";
    let emu = Emulator::start_with(&["--faults", faults, "--seed", "20261129"]);
    let doc = directory(2000, 100);
    let ws = Workspace::new(&emu, &doc);
    with_fast_escrow(&ws);
    // Whether a random fault outlasts the retries depends on how requests
    // interleave; one refusal makes sure cycle 1 has a failure to retry.
    emu.fail_requests("user7@contoso.com", 400, 1);
    let mut cycles = 0;
    let mut failures = 0;
    for _ in 0..3 {
        let run = ws.sync();
        cycles += 1;
        // A cycle with failures exits 3 (partial); anything else is a bug.
        assert!(
            run.code == 0 || run.code == 3,
            "exit {}: {}",
            run.code,
            run.stderr
        );
        if run.code == 0 {
            break;
        }
        failures += 1;
    }
    let (injected, _) = emu.wire();
    emu.clear_faults();
    println!("faults injected: {injected}; cycles: {cycles}");
    for k in ["429", "500", "reset", "cut", "slow"] {
        assert!(
            injected[k].as_u64().unwrap_or(0) > 0,
            "no {k} injected: {injected}"
        );
    }
    assert!(
        failures >= 1,
        "faults this frequent must fail some objects in cycle 1"
    );
    assert_converged(&emu, &doc);
    // Every failure is in the provisioning log, with its error, and was retried.
    let out = ws.run(&["logs", "--status", "failure", "--json"]);
    let failed: Vec<Value> = serde_json::from_str(&out.stdout).unwrap();
    assert!(!failed.is_empty());
    for f in &failed {
        assert!(f["error"].as_str().is_some_and(|e| !e.is_empty()), "{f}");
        let id = f["source_id"].as_str().unwrap();
        let later = ws.run(&["logs", "--object", id, "--status", "success", "--json"]);
        let ok: Vec<Value> = serde_json::from_str(&later.stdout).unwrap();
        assert!(
            ok.iter().any(|e| e["cycle"].as_i64() > f["cycle"].as_i64()),
            "{id} failed in cycle {} and was not retried: {ok:?}",
            f["cycle"]
        );
    }
    let (integrity, links) = integrity_and_links(&ws);
    assert_eq!(integrity, "ok");
    assert_eq!(links, 2000);
    // Converged means quiet: one more cycle sends nothing.
    emu.reset_stats();
    ws.sync().ok();
    assert_eq!(emu.stats().1, 0, "writes after convergence");
}

/// Starts `scimsync ARGS` and kills it with SIGKILL after `delay`; true if it was
/// still running.
fn kill_after(ws: &Workspace, token: &str, args: &[&str], delay: Duration) -> bool {
    let cfg = ws.dir.join("scimsync.toml");
    let mut child = std::process::Command::new(BIN)
        .args(["-c", cfg.to_str().unwrap()])
        .args(args)
        .env("SCIMSYNC_TEST_TOKEN", token)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let t = Instant::now();
    while t.elapsed() < delay {
        if child.try_wait().unwrap().is_some() {
            return false;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    let _ = child.kill();
    child.wait().unwrap().code().is_none()
}

struct Rng(u64);
impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n.max(1)
    }
}

#[test]
fn kill_9_anywhere_in_initial_incremental_and_migration_runs_loses_nothing() {
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
        | 1;
    println!("kill -9 seed {seed}");
    let mut rng = Rng(seed);
    let mut mid_run = 0;
    let mut kills = 0;

    // Initial cycles: 8 kills. 2 ms per answer makes a cycle last about a second.
    for round in 0..8 {
        let emu = Emulator::start_with(&["--latency-ms", "2"]);
        let doc = directory(1000, 20);
        let ws = Workspace::new(&emu, &doc);
        let delay = Duration::from_millis(50 + rng.below(900));
        mid_run += kill_after(&ws, &emu.token, &["sync"], delay) as usize;
        kills += 1;
        println!(
            "initial {round}: killed after {delay:?} with {} users",
            emu.users().len()
        );
        ws.sync().ok();
        assert_converged(&emu, &doc);
        assert_eq!(integrity_and_links(&ws), ("ok".to_string(), 1000));
    }

    // Incremental cycles: 7 kills, each round renames 400 users and moves members.
    let emu = Emulator::start_with(&["--latency-ms", "2"]);
    let mut doc = directory(1000, 20);
    let ws = Workspace::new(&emu, &doc);
    ws.sync().ok();
    for round in 0..7 {
        for u in doc["users"]
            .as_array_mut()
            .unwrap()
            .iter_mut()
            .skip(round * 80)
            .take(400)
        {
            u["surname"] = json!(format!("Round{round}"));
        }
        let g = &mut doc["groups"][round]["members"];
        g.as_array_mut().unwrap().truncate(10);
        g.as_array_mut()
            .unwrap()
            .push(json!(format!("u{}", 900 + round)));
        ws.write_directory(&doc);
        let delay = Duration::from_millis(20 + rng.below(400));
        mid_run += kill_after(&ws, &emu.token, &["sync"], delay) as usize;
        kills += 1;
        ws.sync().ok();
        assert_converged(&emu, &doc);
        assert_eq!(integrity_and_links(&ws), ("ok".to_string(), 1000));
    }

    // Migration: 3 rounds × (kill `migrate apply`, kill the first SCIM cycle).
    for round in 0..3 {
        let emu = Emulator::start_with(&["--latency-ms", "1"]);
        let doc = directory(300, 5);
        let ws = Workspace::new(&emu, &doc);
        let cfg = ws.dir.join("scimsync.toml");
        let scim_cfg = std::fs::read_to_string(&cfg).unwrap();
        let start = scim_cfg.find("[target]").unwrap();
        let end = scim_cfg.find("[safety]").unwrap();
        let legacy = format!(
            "{}[target]\ntype = \"dropbox-legacy\"\napi_url = \"{}\"\ntoken = \"env:SCIMSYNC_TEST_TOKEN\"\n\n[deprovision]\nfiles = \"leave\"\n\n{}",
            &scim_cfg[..start],
            emu.base,
            &scim_cfg[end..]
        );
        std::fs::write(&cfg, &legacy).unwrap();
        ws.sync().ok();
        assert_eq!(emu.users().len(), 300);
        let migrated = format!(
            "{}[target]\ntype = \"dropbox\"\nurl = \"{}\"\ntoken = \"env:SCIMSYNC_TEST_TOKEN\"\n\n[legacy]\napi_url = \"{}\"\ntoken = \"env:SCIMSYNC_TEST_TOKEN\"\n\n{}",
            &scim_cfg[..start],
            emu.scim,
            emu.base,
            &scim_cfg[end..]
        );
        std::fs::write(&cfg, &migrated).unwrap();
        emu.reset_stats();
        let delay = Duration::from_millis(rng.below(120));
        mid_run += kill_after(&ws, &emu.token, &["migrate", "apply"], delay) as usize;
        kills += 1;
        ws.run(&["migrate", "apply"]).ok();
        let delay = Duration::from_millis(10 + rng.below(150));
        mid_run += kill_after(&ws, &emu.token, &["sync"], delay) as usize;
        kills += 1;
        ws.sync().ok();
        let (req, _) = emu.stats();
        assert_eq!(
            count(&req, "POST /Users"),
            0,
            "round {round}: nobody re-invited: {req}"
        );
        assert_eq!(count(&req, "POST /Groups"), 0, "round {round}: {req}");
        assert_converged(&emu, &doc);
        assert_eq!(integrity_and_links(&ws), ("ok".to_string(), 300));
    }
    println!("kill -9: {kills} kills, {mid_run} of them mid-run");
    assert!(kills >= 20);
    assert!(
        mid_run >= 14,
        "most kills must land mid-run ({mid_run}/{kills})"
    );
}
