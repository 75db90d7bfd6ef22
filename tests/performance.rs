//! Request counts, not times: an incremental cycle must cost in proportion to what
//! changed, and the worker pool must carry requests concurrently within its bound
//! and record them in plan order.

use crate::util::*;
use serde_json::{json, Value};

fn directory(n: usize, g: usize) -> Value {
    grouped_directory(n, g, 10)
}

#[test]
fn incremental_cycles_cost_requests_in_proportion_to_changes() {
    let emu = Emulator::start();
    // Groups cover u0..u609; u900 is assigned directly only.
    let mut doc = directory(1000, 60);
    let ws = Workspace::new(&emu, &doc);
    ws.sync().ok();
    let (req, _) = emu.stats();
    // Matching lists the team once per kind (one page each) instead of one query
    // per new object; every user and group is one POST, every group one member PATCH.
    assert_eq!(count(&req, "GET /Users"), 1, "{req}");
    assert_eq!(count(&req, "GET /Groups"), 1, "{req}");
    assert_eq!(count(&req, "POST /Users"), 1000, "{req}");
    assert_eq!(count(&req, "POST /Groups"), 60, "{req}");
    assert_eq!(count(&req, "PATCH /Groups"), 60, "{req}");
    let sent = total(&req);
    assert!(
        sent <= 1060 + 70,
        "initial cycle sent {sent} requests: {req}"
    );

    emu.reset_stats();
    ws.sync().ok();
    let (req, _) = emu.stats();
    assert_eq!(req, json!({}), "a cycle with no change sent requests");

    // The file changed: only the 100 edited records are evaluated and sent.
    for u in doc["users"].as_array_mut().unwrap().iter_mut().take(100) {
        u["surname"] = json!("Renamed");
    }
    ws.write_directory(&doc);
    emu.reset_stats();
    ws.sync().ok();
    let (req, writes) = emu.stats();
    assert_eq!(count(&req, "PATCH /Users"), 100, "{req}");
    let sent = total(&req);
    assert!(sent <= 110, "100 changed users cost {sent} requests: {req}");
    assert_eq!(writes, 100);
    assert_eq!(
        emu.user("user99@contoso.com").unwrap()["name"]["familyName"],
        "Renamed"
    );
    assert_eq!(
        emu.user("user100@contoso.com").unwrap()["name"]["familyName"],
        "Family100"
    );

    // Edited back: the digests the last cycle recorded (handed over in parts as
    // the read made them, 33 KB here) tell the reverted records from unchanged
    // ones; stale digests would take them for unchanged.
    for (i, u) in doc["users"]
        .as_array_mut()
        .unwrap()
        .iter_mut()
        .enumerate()
        .take(5)
    {
        u["surname"] = json!(format!("Family{i}"));
    }
    ws.write_directory(&doc);
    emu.reset_stats();
    ws.sync().ok();
    let (req, _) = emu.stats();
    assert_eq!(count(&req, "PATCH /Users"), 5, "{req}");
    assert_eq!(
        emu.user("user4@contoso.com").unwrap()["name"]["familyName"],
        "Family4"
    );

    // Same for a group edit and an unassignment: one request each (plus the status
    // read that tells a joined member from an invited one, and discovery).
    emu.accept_all();
    doc["groups"][3]["members"]
        .as_array_mut()
        .unwrap()
        .push(json!("u999"));
    doc["assignments"]
        .as_array_mut()
        .unwrap()
        .retain(|a| a["principalId"] != "u900");
    ws.write_directory(&doc);
    emu.reset_stats();
    ws.sync().ok();
    let (req, _) = emu.stats();
    assert_eq!(count(&req, "PATCH /Groups"), 1, "{req}");
    assert_eq!(count(&req, "PATCH /Users"), 1, "{req}");
    assert_eq!(count(&req, "GET /Users"), 1, "{req}");
    let sent = total(&req);
    assert!(sent <= 4, "{req}");
    assert_eq!(emu.user("user900@contoso.com").unwrap()["active"], false);
}

/// The order in which a run recorded its creates.
fn created_order(ws: &Workspace) -> Vec<String> {
    let out = ws.run(&["logs", "--action", "create", "--json"]);
    let entries: Vec<Value> = serde_json::from_str(&out.stdout).unwrap();
    let mut v: Vec<(i64, String)> = entries
        .iter()
        .map(|e| {
            (
                e["id"].as_i64().unwrap(),
                e["display"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    v.sort();
    v.into_iter().map(|(_, d)| d).collect()
}

#[test]
fn the_worker_pool_stays_within_max_in_flight_and_records_in_plan_order() {
    let doc = directory(150, 8);
    // A distant, throttling target: 20 ms per answer, 10% answered 429 (Retry-After 0).
    let pooled =
        Emulator::start_with(&["--latency-ms", "20", "--faults", "429=10%:0", "--seed", "3"]);
    let ws = Workspace::with_target(
        &doc,
        "dropbox",
        &pooled.scim,
        &pooled.token,
        "max_in_flight = 3",
    );
    ws.sync().ok();
    let (injected, peak) = pooled.wire();
    assert!(injected["429"].as_u64().unwrap_or(0) > 5, "{injected}");
    assert_eq!(peak, 3, "the pool should fill max_in_flight = 3, no more");
    pooled.clear_faults();
    assert_eq!(pooled.users().len(), 150);
    for k in 0..8 {
        assert_eq!(pooled.group_members(&format!("Team {k}")).len(), 20);
    }
    let failures = ws.run(&["logs", "--status", "failure", "--json"]);
    assert_eq!(
        serde_json::from_str::<Vec<Value>>(&failures.stdout)
            .unwrap()
            .len(),
        0
    );

    let serial = Emulator::start();
    let ws1 = Workspace::with_target(
        &doc,
        "dropbox",
        &serial.scim,
        &serial.token,
        "max_in_flight = 1",
    );
    ws1.sync().ok();
    assert_eq!(
        serial.wire().1,
        1,
        "max_in_flight = 1 sends one request at a time"
    );
    // Whoever answered first, the state records in the plan's order.
    let order = created_order(&ws);
    assert_eq!(order.len(), 158);
    assert_eq!(order, created_order(&ws1));
}

/// The file source keeps only changed records in an incremental read; deletions
/// spread through the whole file are still counted together by the gate: held as
/// one, nothing deleted, the other changes sent; released once, all of them go.
#[test]
fn deletions_spread_through_a_large_file_are_held_together() {
    let emu = Emulator::start();
    let mut doc = small_directory(1000);
    let ws = Workspace::new(&emu, &doc);
    ws.write(
        "scimsync.toml",
        &std::fs::read_to_string(ws.dir.join("scimsync.toml"))
            .unwrap()
            .replace("deletion_threshold = 500", "deletion_threshold = 10"),
    );
    ws.sync().ok();
    // Every 50th user leaves the directory (20, from the first record to the last
    // stretch of the file); five others are renamed.
    let gone: Vec<String> = (0..1000).step_by(50).map(|i| format!("u{i}")).collect();
    for i in [7, 333, 501, 777, 998] {
        doc["users"][i]["surname"] = json!("Renamed");
    }
    let keep = |v: &Value, key: &str| !gone.iter().any(|g| v[key] == json!(g));
    doc["users"]
        .as_array_mut()
        .unwrap()
        .retain(|u| keep(u, "id"));
    doc["assignments"]
        .as_array_mut()
        .unwrap()
        .retain(|a| keep(a, "principalId"));
    ws.write_directory(&doc);
    emu.reset_stats();
    let r = ws.sync();
    assert_eq!(r.code, 4, "held: {}{}", r.stdout, r.stderr);
    let (req, writes) = emu.stats();
    assert_eq!(count(&req, "DELETE /Users"), 0, "{req}");
    assert_eq!(count(&req, "PATCH /Users"), 5, "{req}");
    assert_eq!(writes, 5, "{req}");
    let staged = ws.run(&["logs", "--status", "staged", "--json"]);
    let staged: Value = serde_json::from_str(&staged.stdout).unwrap();
    assert_eq!(staged.as_array().unwrap().len(), 20, "{staged}");

    ws.run(&["allow-deletes"]).ok();
    emu.reset_stats();
    ws.sync().ok();
    let (req, writes) = emu.stats();
    assert_eq!(count(&req, "DELETE /Users"), 20, "{req}");
    assert_eq!(writes, 20, "{req}");
    assert!(emu.user("user0@contoso.com").is_none());
    assert!(emu.user("user950@contoso.com").is_none());
    assert!(emu.user("user951@contoso.com").is_some());
}

/// The changes of each create in a plan document or a log, by the object's name.
fn creates_by_name(entries: &[Value], changes: &str, name: &str) -> Vec<(String, Value)> {
    let mut out: Vec<(String, Value)> = entries
        .iter()
        .filter(|e| e["op"] == "create" || e["action"] == "create")
        .map(|e| {
            let mut m: Vec<(String, Value)> = e[changes]
                .as_array()
                .unwrap()
                .iter()
                .map(|c| (c[name].as_str().unwrap().to_string(), c["new"].clone()))
                .collect();
            m.sort_by(|a, b| a.0.cmp(&b.0));
            (e["display"].as_str().unwrap().to_string(), json!(m))
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

/// A sync puts new users' attributes aside while it plans (only their matching
/// values stay in memory) and reads them back as it sends each create: what the
/// target gets is what `plan` shows, attribute for attribute, and a user the
/// target already holds is adopted with every change.
#[test]
fn creates_send_every_attribute_the_plan_shows() {
    let emu = Emulator::start();
    let doc = directory(240, 12);
    let ws = Workspace::new(&emu, &doc);
    let (s, _) = emu.post(
        "/scim/v2/Users",
        json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "userName": "user7@contoso.com", "name": {"familyName": "Old"}}),
    );
    assert_eq!(s, 201);
    let out = ws.run(&["plan", "--json"]);
    let plan: Value = serde_json::from_str(&out.stdout).unwrap();
    let actions = plan["actions"].as_array().unwrap();
    let adopt = actions
        .iter()
        .find(|a| a["op"] == "adopt")
        .expect("user7 is adopted");
    assert_eq!(adopt["display"], "user7@contoso.com");
    let planned = creates_by_name(actions, "changes", "path");
    assert_eq!(planned.len(), 239 + 12, "{}", out.stdout);
    // What a sync killed mid-cycle leaves beside the state: replaced, never read.
    let spill = ws.dir.join("state.db.spill");
    std::fs::write(&spill, b"left by a process that died").unwrap();
    emu.reset_stats();
    let r = ws.sync();
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    assert!(!spill.exists(), "the spill goes with its cycle");
    let (req, _) = emu.stats();
    assert_eq!(count(&req, "POST /Users"), 239, "{req}");
    assert_eq!(count(&req, "POST /Groups"), 12, "{req}");
    let log = ws.run(&["logs", "--action", "create", "--json"]);
    let entries: Vec<Value> = serde_json::from_str(&log.stdout).unwrap();
    assert_eq!(creates_by_name(&entries, "modified", "name"), planned);
    let u = emu.user("user123@contoso.com").unwrap();
    assert_eq!(u["name"]["familyName"], "Family123");
    assert_eq!(u["name"]["givenName"], "Given123");
    assert_eq!(
        emu.user("user7@contoso.com").unwrap()["name"]["familyName"],
        "Family7"
    );
    assert_next_cycle_writes_nothing(&emu, &ws);
}

/// Updates go to the pool a window ahead of the core, never more at once than
/// `max_in_flight`; a stop in the middle of them sends nothing more and records
/// every answer already asked for, so the next cycle sends only the rest.
#[test]
fn updates_run_ahead_within_the_bound_and_a_stop_loses_no_answer() {
    let emu = Emulator::start();
    let mut doc = small_directory(400);
    let ws = Workspace::with_target(&doc, "dropbox", &emu.scim, &emu.token, "max_in_flight = 3");
    ws.sync().ok();
    for u in doc["users"].as_array_mut().unwrap() {
        u["surname"] = json!("Moved");
    }
    ws.write_directory(&doc);
    emu.post("/_emulator/config", json!({"latency_ms": 15}));
    emu.clear_faults();
    emu.reset_stats();
    let mut child = ws
        .command(&["run"])
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    wait_for("some updates", 20, || {
        count(&emu.stats().0, "PATCH /Users") >= 40
    });
    std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert_eq!(child.wait().unwrap().code(), Some(0));
    let (req, _) = emu.stats();
    let sent = count(&req, "PATCH /Users");
    assert!(sent < 400, "it really stopped early ({sent})");
    assert_eq!(emu.wire().1, 3, "updates fill max_in_flight = 3, no more");
    let logged = ws.run(&[
        "logs", "--action", "update", "--status", "success", "--json",
    ]);
    let recorded = serde_json::from_str::<Vec<Value>>(&logged.stdout).unwrap();
    assert_eq!(recorded.len() as u64, sent, "every update sent is recorded");

    emu.post("/_emulator/config", json!({"latency_ms": 0}));
    emu.reset_stats();
    ws.sync().ok();
    let (req, _) = emu.stats();
    assert_eq!(count(&req, "PATCH /Users"), 400 - sent, "{req}");
    let moved = emu.users();
    assert!(moved.iter().all(|u| u["name"]["familyName"] == "Moved"));
}
