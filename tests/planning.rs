//! The planner's test bed: `tests/scenarios/<name>/`, each a small world — a team
//! seeded before anything (`target.json`, the format `scimsync snapshot` writes), a
//! directory synced first (`before.json`, or a list of them synced in turn), refusals
//! the team will make and changes made by hand in it (`scenario.json` "faults" and
//! "drift"), the directory of the cycle under test
//! (`directory.json`) and the plan expected of it (`expected.json`).
//!
//! For each scenario: `plan --json` is the expected plan; `sync --plan` then sends
//! exactly the plan's writes, object by object, as the emulator records them (a
//! `/Bulk` request counts as its operations); and the next cycle writes nothing.
//! With `stale.json`, the directory changes between plan and sync and the reviewed
//! plan must be refused.

use crate::util::{Emulator, Workspace};
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};

/// One object: (kind, source id).
type Object = (String, String);

fn read(path: &Path) -> Option<Value> {
    let text = std::fs::read_to_string(path).ok()?;
    Some(serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display())))
}

fn scenarios() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/scenarios");
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(&root)
        .expect("tests/scenarios")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.join("scenario.json").is_file())
        .collect();
    dirs.sort();
    dirs
}

/// What a plan document says, reduced to what a scenario pins down.
fn projection(plan: &Value) -> Vec<Value> {
    let mut out: Vec<Value> = plan["actions"]
        .as_array()
        .expect("plan actions")
        .iter()
        .map(|a| {
            let mut p = json!({
                "op": a["op"],
                "kind": a["kind"],
                "id": a["source_id"],
                "held": a["held"],
            });
            let mut changes: Vec<String> = a["changes"]
                .as_array()
                .map(|c| {
                    c.iter()
                        .map(|c| c["path"].as_str().unwrap_or("").to_string())
                        .collect()
                })
                .unwrap_or_default();
            changes.sort();
            if !changes.is_empty() {
                p["changes"] = json!(changes);
            }
            if let Some(m) = a.get("members") {
                let mut m: Vec<String> = serde_json::from_value(m.clone()).unwrap();
                m.sort();
                p["members"] = json!(m);
            }
            if a.get("fails") == Some(&Value::Bool(true)) {
                p["fails"] = json!(true);
            }
            p
        })
        .collect();
    out.sort_by_key(|p| p.to_string());
    out
}

/// The writes each object's actions send: a create POSTs, a delete DELETEs, every
/// other change (adoption with changes, update, enable, disable, members) PATCHes.
fn planned_writes(plan: &Value) -> BTreeMap<Object, BTreeSet<String>> {
    let mut out: BTreeMap<Object, BTreeSet<String>> = BTreeMap::new();
    for a in plan["actions"].as_array().unwrap() {
        if a["held"] == true {
            continue;
        }
        let changes = a["changes"].as_array().map(|c| c.len()).unwrap_or(0);
        let method = match a["op"].as_str().unwrap() {
            "create" => "POST",
            "delete" => "DELETE",
            "adopt" if changes == 0 => continue,
            "adopt" | "update" | "enable" | "disable" | "add_members" | "remove_members" => "PATCH",
            _ => continue,
        };
        let key = (
            a["kind"].as_str().unwrap().to_string(),
            a["source_id"].as_str().unwrap().to_string(),
        );
        out.entry(key).or_default().insert(method.to_string());
    }
    out
}

fn kind_of(path: &str) -> &'static str {
    if path.contains("/Groups") {
        "group"
    } else {
        "user"
    }
}

/// The writes the emulator recorded, by object. Objects are named by the target id
/// the plan or the team knows, or by the externalId a create carried.
fn recorded_writes(
    emu: &Emulator,
    plan: &Value,
    recorded: &[Value],
) -> BTreeMap<Object, BTreeSet<String>> {
    let mut by_id: HashMap<String, Object> = HashMap::new();
    for a in plan["actions"].as_array().unwrap() {
        if let Some(t) = a["target_id"].as_str() {
            by_id.insert(
                t.to_string(),
                (
                    a["kind"].as_str().unwrap().to_string(),
                    a["source_id"].as_str().unwrap().to_string(),
                ),
            );
        }
    }
    for (kind, all) in [("user", emu.users()), ("group", emu.groups())] {
        for r in all {
            if let (Some(id), Some(ext)) = (r["id"].as_str(), r["externalId"].as_str()) {
                by_id
                    .entry(id.to_string())
                    .or_insert_with(|| (kind.to_string(), ext.to_string()));
            }
        }
    }
    let mut out: BTreeMap<Object, BTreeSet<String>> = BTreeMap::new();
    let mut add = |key: Object, method: &str| {
        out.entry(key).or_default().insert(method.to_string());
    };
    for w in recorded.iter().filter(|w| w["method"] != "GET") {
        let method = w["method"].as_str().unwrap();
        let path = w["path"].as_str().unwrap().split('?').next().unwrap();
        let body: Value =
            serde_json::from_str(w["body"].as_str().unwrap_or("")).unwrap_or_default();
        if path.ends_with("/Bulk") {
            for op in body["Operations"].as_array().unwrap() {
                let p = op["path"].as_str().unwrap();
                let ext = op["data"]["externalId"].as_str().unwrap();
                add((kind_of(p).to_string(), ext.to_string()), "POST");
            }
        } else if method == "POST" {
            let ext = body["externalId"]
                .as_str()
                .expect("creates carry externalId");
            add((kind_of(path).to_string(), ext.to_string()), "POST");
        } else {
            let id = path.rsplit('/').next().unwrap();
            let key = by_id
                .get(id)
                .cloned()
                .unwrap_or_else(|| panic!("{method} {path}: an object no one planned"));
            add(key, method);
        }
    }
    out
}

fn record(emu: &Emulator, on: bool) {
    assert_eq!(emu.post("/_emulator/record", json!({ "on": on })).0, 204);
}

fn recorded(emu: &Emulator) -> Vec<Value> {
    emu.get("/_emulator/recorded")
        .as_array()
        .cloned()
        .unwrap_or_default()
}

fn writes(recorded: &[Value]) -> Vec<String> {
    recorded
        .iter()
        .filter(|w| w["method"] != "GET")
        .map(|w| format!("{} {}", w["method"], w["path"]))
        .collect()
}

/// A hand-made change in the team: `{"user": NAME, "set": {PATH: VALUE}}`,
/// `{"group": NAME, "remove_member": USERNAME}`.
fn drift(emu: &Emulator, change: &Value) {
    if let Some(name) = change["user"].as_str() {
        let id = emu.user(name).expect("drifted user")["id"].clone();
        let ops: Vec<Value> = change["set"]
            .as_object()
            .unwrap()
            .iter()
            .map(|(p, v)| json!({"op": "replace", "path": p, "value": v}))
            .collect();
        let body = json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"], "Operations": ops});
        let status = emu.send(
            "PATCH",
            &format!("/scim/v2/Users/{}", id.as_str().unwrap()),
            Some(body),
        );
        assert!(status == 200 || status == 204, "drift {change}: {status}");
    }
    if let Some(name) = change["group"].as_str() {
        let gid = emu.group(name).expect("drifted group")["id"].clone();
        let member = change["remove_member"].as_str().unwrap();
        let uid = emu.user(member).expect("member")["id"].clone();
        let body = json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
            "Operations": [{"op": "remove", "path": format!("members[value eq \"{}\"]", uid.as_str().unwrap())}]});
        let status = emu.send(
            "PATCH",
            &format!("/scim/v2/Groups/{}", gid.as_str().unwrap()),
            Some(body),
        );
        assert!(status == 200 || status == 204, "drift {change}: {status}");
    }
}

/// Objects written as planned, and objects planned or written.
struct Tally {
    as_planned: usize,
    objects: usize,
    /// A stale plan, refused as it must be.
    refused: bool,
}

fn run_scenario(dir: &Path) -> Tally {
    let name = dir.file_name().unwrap().to_string_lossy().to_string();
    let spec = read(&dir.join("scenario.json")).unwrap();
    let directory = read(&dir.join("directory.json")).expect("directory.json");
    let bulk = spec["bulk"].as_u64().unwrap_or(0).to_string();
    let emu = if bulk != "0" {
        Emulator::start_with(&["--bulk", &bulk])
    } else {
        Emulator::start()
    };
    if let Some(team) = read(&dir.join("target.json")) {
        let (s, r) = emu.post("/_emulator/load", team);
        assert_eq!(s, 200, "{name}: load {r}");
    }
    // One directory synced first, or several in turn.
    let before: Vec<Value> = match read(&dir.join("before.json")) {
        Some(Value::Array(docs)) => docs,
        Some(doc) => vec![doc],
        None => vec![],
    };
    let ws = Workspace::new(&emu, before.first().unwrap_or(&directory));
    if let Ok(scripts) = std::fs::read_dir(dir.join("scripts")) {
        for f in scripts.flatten() {
            std::fs::copy(f.path(), ws.dir.join("scripts").join(f.file_name())).unwrap();
        }
    }
    for doc in &before {
        ws.write_directory(doc);
        let r = ws.sync();
        assert_eq!(r.code, 0, "{name}: setup cycle\n{}{}", r.stdout, r.stderr);
        emu.accept_all();
    }
    // The safety settings under test apply from the tested cycle on.
    if let Some(safety) = spec["safety"].as_str() {
        let config = std::fs::read_to_string(ws.dir.join("scimsync.toml")).unwrap();
        let config = config.replace(
            "[safety]\ndeletion_threshold = 500\n",
            &format!("[safety]\n{safety}\n"),
        );
        ws.write("scimsync.toml", &config);
    }
    // `[deprovision]` lines, e.g. `remove_after = "0s"`.
    if let Some(lines) = spec["deprovision"].as_str() {
        ws.add_config("deprovision", lines);
    }
    // Refusals the planner cannot foresee: `{"match": TEXT, "status": N, "count": N}`.
    for fault in spec["faults"].as_array().cloned().unwrap_or_default() {
        assert_eq!(
            emu.post("/_emulator/faults", fault).0,
            200,
            "{name}: faults"
        );
    }
    for change in spec["drift"].as_array().cloned().unwrap_or_default() {
        drift(&emu, &change);
    }
    ws.write_directory(&directory);

    let full = spec["full"] == true;
    let saved = ws.dir.join("reviewed.json");
    let mut args = vec!["plan", "--json", "--out", saved.to_str().unwrap()];
    if full {
        args.push("--full");
    }
    let out = ws.run(&args);
    assert_eq!(out.code, 0, "{name}: plan\n{}{}", out.stdout, out.stderr);
    let plan: Value = serde_json::from_str(&out.stdout)
        .unwrap_or_else(|e| panic!("{name}: plan --json: {e}\n{}", out.stdout));
    if std::env::var_os("SCIMSYNC_BLESS").is_some() {
        // Writing a new scenario: record the plan made, then read it through.
        let doc = json!({ "actions": projection(&plan) });
        std::fs::write(
            dir.join("expected.json"),
            serde_json::to_string_pretty(&doc).unwrap() + "\n",
        )
        .unwrap();
    }
    let expected = read(&dir.join("expected.json")).expect("expected.json");
    let mut expected_actions = expected["actions"].as_array().cloned().unwrap();
    expected_actions.sort_by_key(|p| p.to_string());
    assert_eq!(
        serde_json::to_string_pretty(&projection(&plan)).unwrap(),
        serde_json::to_string_pretty(&expected_actions).unwrap(),
        "{name}: the plan is not the one expected"
    );

    if let Some(changed) = read(&dir.join("stale.json")) {
        ws.write_directory(&changed);
        record(&emu, true);
        let r = ws.run(&["sync", "--plan", saved.to_str().unwrap()]);
        assert_eq!(r.code, 2, "{name}: {}{}", r.stdout, r.stderr);
        assert!(r.stderr.contains("stale plan"), "{name}: {}", r.stderr);
        assert!(
            r.stderr
                .contains("the directory changed since it was made; run plan again"),
            "{name}: {}",
            r.stderr
        );
        assert_eq!(
            writes(&recorded(&emu)),
            Vec::<String>::new(),
            "{name}: a refused plan wrote"
        );
        return Tally {
            as_planned: 0,
            objects: 0,
            refused: true,
        };
    }

    record(&emu, true);
    let r = ws.run(&["sync", "--plan", saved.to_str().unwrap()]);
    let exit = spec["exit"].as_i64().unwrap_or(0) as i32;
    assert_eq!(
        r.code, exit,
        "{name}: sync --plan\n{}{}",
        r.stdout, r.stderr
    );
    let sent = recorded(&emu);
    let planned = planned_writes(&plan);
    let written = recorded_writes(&emu, &plan, &sent);
    let objects: BTreeSet<&Object> = planned.keys().chain(written.keys()).collect();
    let as_planned = objects
        .iter()
        .filter(|o| planned.get(o) == written.get(o))
        .count();
    assert_eq!(
        written,
        planned,
        "{name}: sync --plan wrote other than the plan said\nsent: {:#?}",
        writes(&sent)
    );

    if let Some(n) = spec["team_users"].as_u64() {
        assert_eq!(emu.users().len() as u64, n, "{name}: users in the team");
    }
    if spec["converges"] != false {
        record(&emu, true);
        let r = if full {
            ws.run(&["sync", "--full"])
        } else {
            ws.sync()
        };
        assert!(
            r.code == 0 || r.code == exit,
            "{name}: next cycle\n{}{}",
            r.stdout,
            r.stderr
        );
        assert_eq!(
            writes(&recorded(&emu)),
            Vec::<String>::new(),
            "{name}: the next cycle wrote"
        );
    }
    Tally {
        as_planned,
        objects: objects.len(),
        refused: false,
    }
}

#[test]
fn every_scenario_plans_as_expected_and_sync_writes_exactly_the_plan() {
    let dirs = scenarios();
    assert!(dirs.len() >= 12, "scenarios: {dirs:?}");
    let mut report = vec![];
    let mut totals = (0, 0);
    for dir in dirs {
        let t = run_scenario(&dir);
        let name = dir.file_name().unwrap().to_string_lossy().to_string();
        report.push(if t.refused {
            format!("{name}: the stale plan was refused, 0 writes")
        } else {
            format!(
                "{name}: {} of {} objects written as planned",
                t.as_planned, t.objects
            )
        });
        totals = (totals.0 + t.as_planned, totals.1 + t.objects);
    }
    println!("{}", report.join("\n"));
    println!(
        "all: {} of {} objects written as planned",
        totals.0, totals.1
    );
}

#[test]
fn a_snapshot_of_the_team_serves_as_a_copy_to_rehearse_against() {
    let mut doc = crate::util::grouped_directory(30, 3, 7);
    let live = Emulator::start();
    let ws = Workspace::new(&live, &doc);
    ws.sync().ok();
    live.accept_all();
    // One suspended member, so statuses travel too.
    doc["users"][4]["accountEnabled"] = json!(false);
    ws.write_directory(&doc);
    ws.sync().ok();
    let file = ws.dir.join("team.json");
    live.reset_stats();
    let r = ws.run(&["snapshot", "--out", file.to_str().unwrap()]);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    assert!(r.stdout.contains("30 users, 3 groups"), "{}", r.stdout);
    let (requests, writes) = live.stats();
    assert_eq!(writes, 0, "a snapshot only reads: {requests}");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&file).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "a snapshot holds personal data");
    }

    let copy = Emulator::start_with(&["--load", file.to_str().unwrap()]);
    let view = |e: &Emulator| {
        let mut users: Vec<String> = e
            .users()
            .iter()
            .map(|u| format!("{} {} {}", u["id"], u["userName"], u["active"]))
            .collect();
        users.sort();
        let mut groups: Vec<String> = e
            .groups()
            .iter()
            .map(|g| {
                let name = g["displayName"].as_str().unwrap().to_string();
                format!("{} {name} {:?}", g["id"], e.group_members(&name))
            })
            .collect();
        groups.sort();
        (users, groups)
    };
    assert_eq!(view(&copy), view(&live), "the copy is the team");

    // The same state against the copy plans nothing: a rehearsal sees production.
    let config = std::fs::read_to_string(ws.dir.join("scimsync.toml")).unwrap();
    ws.write("scimsync.toml", &config.replace(&live.scim, &copy.scim));
    let out = ws.run(&["plan", "--json", "--full"]);
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    let plan: Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(plan["actions"], json!([]), "{}", out.stdout);
    // And a change made on the copy stays there.
    doc["users"][0]["surname"] = json!("Rehearsed");
    ws.write_directory(&doc);
    ws.sync().ok();
    assert_eq!(
        copy.user("user0@contoso.com").unwrap()["name"]["familyName"],
        "Rehearsed"
    );
    assert_eq!(
        live.user("user0@contoso.com").unwrap()["name"]["familyName"],
        "Family0"
    );
}

/// `plan` writes nothing anywhere (DESIGN.md): the workspace holds the same files
/// with the same contents after it (its spill has no name), and what it prints is
/// what a saved plan holds, every create with its attributes, though it lets the
/// directory's lists go once evaluated, keeps new users' attributes in its spill
/// and prints each action as it makes its document, reading them back.
#[test]
fn a_listed_plan_is_the_saved_plan_and_writes_nothing() {
    let emu = Emulator::start();
    let ws = Workspace::new(&emu, &crate::util::grouped_directory(300, 5, 10));
    ws.sync().ok();
    let mut doc = crate::util::grouped_directory(600, 10, 10);
    doc["users"][3]["surname"] = json!("Changed");
    ws.write_directory(&doc);
    let files = || {
        let mut v: Vec<(String, Vec<u8>)> = std::fs::read_dir(&ws.dir)
            .unwrap()
            .flatten()
            .filter(|e| e.path().is_file())
            // SQLite's own files for reading a WAL database, not content.
            .filter(|e| !e.file_name().to_string_lossy().ends_with("-shm"))
            .filter(|e| !e.file_name().to_string_lossy().ends_with("-wal"))
            .map(|e| {
                let name = e.file_name().to_string_lossy().into_owned();
                (name, std::fs::read(e.path()).unwrap())
            })
            .collect();
        v.sort();
        v
    };
    let before = files();
    let listed = ws.run(&["plan", "--json"]);
    assert_eq!(listed.code, 0, "{}", listed.stderr);
    assert!(
        !listed.stderr.contains("kept in memory"),
        "{}",
        listed.stderr
    );
    let after = files();
    let changed: Vec<&String> = (before.iter().chain(&after))
        .filter(|f| !before.contains(f) || !after.contains(f))
        .map(|(name, _)| name)
        .collect();
    assert!(changed.is_empty(), "plan wrote {changed:?}");
    let listed: Value = serde_json::from_str(&listed.stdout).unwrap();
    let saved_path =
        std::env::temp_dir().join(format!("scimsync-saved-{}.json", std::process::id()));
    let saved = ws.run(&["plan", "--json", "--out", saved_path.to_str().unwrap()]);
    let _ = std::fs::remove_file(&saved_path);
    let saved: Value = serde_json::from_str(&saved.stdout).unwrap();
    let creates: Vec<&Value> = listed["actions"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["op"] == "create" && a["kind"] == "user")
        .collect();
    assert_eq!(creates.len(), 300);
    assert!(
        creates.iter().all(|a| a["changes"]
            .as_array()
            .is_some_and(|c| c.iter().any(|c| c["path"] == "name.familyName"))),
        "every create lists its attributes"
    );
    assert_eq!(listed["actions"], saved["actions"]);
}

/// A reviewed plan is applied only as it was saved, each action compared with
/// the one made now a document at a time (the saved plan is held as digests, the
/// new users' attributes wait in a spill): one attribute of one create changed in
/// the file, and `sync --plan` refuses it and writes nothing; the file as saved,
/// and it sends exactly the creates it lists, with their attributes.
#[test]
fn a_saved_plan_runs_only_as_saved() {
    let emu = Emulator::start();
    let ws = Workspace::new(&emu, &crate::util::grouped_directory(300, 5, 10));
    ws.sync().ok();
    ws.write_directory(&crate::util::grouped_directory(600, 10, 10));
    let saved = ws.dir.join("reviewed.json");
    let r = ws.run(&["plan", "--out", saved.to_str().unwrap()]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(!r.stderr.contains("kept in memory"), "{}", r.stderr);
    let doc: Value = serde_json::from_str(&std::fs::read_to_string(&saved).unwrap()).unwrap();
    let creates: Vec<&Value> = (doc["actions"].as_array().unwrap().iter())
        .filter(|a| a["op"] == "create" && a["kind"] == "user")
        .collect();
    assert_eq!(creates.len(), 300);
    let family = |a: &Value| -> Value {
        let changes = a["changes"].as_array().unwrap();
        let c = changes.iter().find(|c| c["path"] == "name.familyName");
        c.map(|c| c["new"].clone()).unwrap_or_default()
    };
    let name = creates[7]["display"].as_str().unwrap().to_string();
    assert!(family(creates[7]).is_string(), "{}", creates[7]);

    let mut tampered = doc.clone();
    let at = (tampered["actions"].as_array().unwrap().iter())
        .position(|a| a["display"] == name.as_str())
        .unwrap();
    for c in tampered["actions"][at]["changes"].as_array_mut().unwrap() {
        if c["path"] == "name.familyName" {
            c["new"] = json!("Mallory");
        }
    }
    let tampered_path = ws.dir.join("tampered.json");
    std::fs::write(&tampered_path, tampered.to_string()).unwrap();
    emu.reset_stats();
    let r = ws.run(&["sync", "--plan", tampered_path.to_str().unwrap()]);
    assert_eq!(r.code, 2, "{}{}", r.stdout, r.stderr);
    let n = doc["actions"].as_array().unwrap().len();
    let differs = format!("stale plan: the plan made now differs ({n} actions, {n} saved)");
    assert!(r.stderr.contains(&differs), "{}", r.stderr);
    assert_eq!(emu.stats().1, 0, "a refused plan wrote");

    let r = ws.run(&["sync", "--plan", saved.to_str().unwrap()]);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    let (req, _) = emu.stats();
    assert_eq!(crate::util::count(&req, "POST /Users"), 300, "{req}");
    let user = emu.user(&name).unwrap();
    assert_eq!(user["name"]["familyName"], family(creates[7]), "{user}");
    assert_eq!(emu.users().len(), 600);
}
