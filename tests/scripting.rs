//! Scripts: clearing, create-only, runaway scripts, imports, redaction, unique
//! values, the shipped examples, and hot reload under `scimsync run`.

use crate::util::*;
use serde_json::{json, Value};

const ENTERPRISE: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";

fn mapping(extra: &str) -> String {
    format!(
        r#"fn map_user(user) {{
    let r = #{{ userName: user.userPrincipalName, externalId: user.id, active: user.accountEnabled ?? true,
               "name.familyName": user.surname, "name.givenName": user.givenName }};
    {extra}
    r
}}
fn map_group(group) {{ #{{ displayName: group.displayName }} }}
"#
    )
}

fn set(doc: &mut Value, i: usize, key: &str, v: Value) {
    doc["users"][i][key] = v;
}

#[test]
fn unit_value_clears_the_attribute_in_the_target() {
    let emu = Emulator::start();
    let mut doc = small_directory(2);
    set(&mut doc, 0, "jobTitle", json!("Boss"));
    let ws = Workspace::new(&emu, &doc);
    ws.write("scripts/mapping.rhai", &mapping("r.title = user.jobTitle;"));
    ws.sync().ok();
    assert_eq!(emu.user("user0@contoso.com").unwrap()["title"], "Boss");
    doc["users"][0].as_object_mut().unwrap().remove("jobTitle");
    ws.write_directory(&doc);
    emu.reset_stats();
    ws.sync().ok();
    let u = emu.user("user0@contoso.com").unwrap();
    assert!(u.get("title").is_none(), "title still there: {u}");
    assert_eq!(count(&emu.stats().0, "PATCH /Users"), 1);
    let l = ws.run(&["logs", "--action", "update", "--json"]);
    let v: Value = serde_json::from_str(&l.stdout).unwrap();
    assert_eq!(v[0]["modified"][0]["old"], "Boss");
    assert_eq!(v[0]["modified"][0]["new"], Value::Null);
}

#[test]
fn create_only_attributes_are_not_updated() {
    let emu = Emulator::start();
    let mut doc = small_directory(1);
    set(&mut doc, 0, "jobTitle", json!("Intern"));
    let ws = Workspace::new(&emu, &doc);
    ws.write(
        "scripts/mapping.rhai",
        &(mapping("r.title = user.jobTitle;") + "fn create_only() { [\"title\"] }\n"),
    );
    ws.sync().ok();
    set(&mut doc, 0, "jobTitle", json!("CEO"));
    set(&mut doc, 0, "surname", json!("Promoted"));
    ws.write_directory(&doc);
    ws.sync().ok();
    let u = emu.user("user0@contoso.com").unwrap();
    assert_eq!(u["title"], "Intern", "create-only attribute changed");
    assert_eq!(
        u["name"]["familyName"], "Promoted",
        "other attributes still flow"
    );
}

#[test]
fn runaway_script_fails_its_object_and_the_cycle_goes_on() {
    let emu = Emulator::start();
    let ws = Workspace::new(&emu, &small_directory(3));
    ws.write(
        "scripts/mapping.rhai",
        &mapping("if user.id == \"u1\" { loop { } }"),
    );
    let r = ws.sync();
    assert_eq!(r.code, 3, "{}{}", r.stdout, r.stderr);
    assert!(emu.user("user0@contoso.com").is_some() && emu.user("user2@contoso.com").is_some());
    assert!(emu.user("user1@contoso.com").is_none());
    let l = ws.run(&["logs", "--status", "failure", "--json"]);
    let v: Value = serde_json::from_str(&l.stdout).unwrap();
    let e = v[0]["error"].as_str().unwrap();
    assert!(e.contains("mapping.rhai:1") && e.contains("stopped"), "{e}");
    assert_eq!(v[0]["source_id"], "u1");
    assert_eq!(v[0]["action"], "evaluate");
    // The portal's word and any case select the same entries; a value the log never
    // holds is refused with the list, not answered with nothing.
    let failed = ws.run(&["logs", "--status", "FAILED", "--json"]);
    assert_eq!(serde_json::from_str::<Value>(&failed.stdout).unwrap(), v);
    let bad = ws.run(&["logs", "--status", "broken"]);
    assert_eq!(bad.code, 2, "{}", bad.stderr);
    assert!(
        bad.stderr.contains("success, failure, skipped, staged"),
        "{}",
        bad.stderr
    );
}

#[test]
fn imports_resolve_inside_the_scripts_folder_only() {
    let emu = Emulator::start();
    let ws = Workspace::new(&emu, &small_directory(1));
    ws.write("scripts/names.rhai", "fn upper(s) { to_upper(s) }\n");
    ws.write(
        "scripts/mapping.rhai",
        &("import \"names\" as names;\n".to_string()
            + mapping("r[\"name.familyName\"] = names::upper(user.surname);").as_str()),
    );
    ws.sync().ok();
    assert_eq!(
        emu.user("user0@contoso.com").unwrap()["name"]["familyName"],
        "FAMILY0"
    );

    std::fs::write(ws.dir.join("outside.rhai"), "fn x() { 1 }").unwrap();
    ws.write(
        "scripts/mapping.rhai",
        &("import \"../outside\" as o;\n".to_string() + mapping("").as_str()),
    );
    let r = ws.sync();
    assert_eq!(r.code, 2);
    assert!(
        r.stderr.contains("mapping.rhai:1") && r.stderr.contains("inside the scripts folder"),
        "{}",
        r.stderr
    );
    // A symlink inside the folder is judged by where it leads.
    std::os::unix::fs::symlink(
        ws.dir.join("outside.rhai"),
        ws.dir.join("scripts/link.rhai"),
    )
    .unwrap();
    ws.write(
        "scripts/mapping.rhai",
        &("import \"link\" as o;\n".to_string() + mapping("").as_str()),
    );
    let r = ws.sync();
    assert_eq!(r.code, 2, "{}", r.stdout);
    assert!(
        r.stderr.contains("inside the scripts folder"),
        "{}",
        r.stderr
    );
}

#[test]
fn redacted_values_reach_the_target_but_not_logs_plans_or_state() {
    let emu = Emulator::start();
    let mut doc = small_directory(1);
    set(&mut doc, 0, "employeeId", json!("EMP-SECRET-4711"));
    let ws = Workspace::new(&emu, &doc);
    let m = mapping(&format!(
        "r[\"{ENTERPRISE}:employeeNumber\"] = redact(user.employeeId);"
    ));
    ws.write("scripts/mapping.rhai", &m);
    let p = ws.run(&["plan", "--json"]);
    assert!(!p.stdout.contains("EMP-SECRET"), "{}", p.stdout);
    ws.sync().ok();
    assert_eq!(
        emu.user("user0@contoso.com").unwrap()[ENTERPRISE]["employeeNumber"],
        "EMP-SECRET-4711"
    );
    set(&mut doc, 0, "employeeId", json!("EMP-SECRET-4712"));
    ws.write_directory(&doc);
    ws.sync().ok();
    assert_eq!(
        emu.user("user0@contoso.com").unwrap()[ENTERPRISE]["employeeNumber"],
        "EMP-SECRET-4712"
    );
    let l = ws.run(&["logs", "--json"]);
    assert!(
        !l.stdout.contains("EMP-SECRET") && l.stdout.contains("[Redact]"),
        "{}",
        l.stdout
    );
    let db = std::fs::read(ws.dir.join("state.db")).unwrap();
    let wal = std::fs::read(ws.dir.join("state.db-wal")).unwrap_or_default();
    for bytes in [db, wal] {
        assert!(
            !String::from_utf8_lossy(&bytes).contains("EMP-SECRET"),
            "value stored in the state"
        );
    }
}

#[test]
fn select_unique_value_avoids_collisions() {
    let emu = Emulator::start();
    let doc = json!({"users": [
        {"id": "a", "userPrincipalName": "a@contoso.com", "givenName": "John", "surname": "Smith"},
        {"id": "b", "userPrincipalName": "b@contoso.com", "givenName": "Jane", "surname": "Smith"}],
        "assignments": [{"principalId": "a", "appRole": "User"}, {"principalId": "b", "appRole": "User"}]});
    let ws = Workspace::new(&emu, &doc);
    ws.write(
        "scripts/mapping.rhai",
        r#"fn matching() { ["externalId"] }
fn map_user(user) {
    #{ externalId: user.id, "name.familyName": user.surname,
       userName: select_unique_value(
           join("@", join(".", left(user.givenName, 1), user.surname), "contoso.com"),
           join("@", join(".", left(user.givenName, 2), user.surname), "contoso.com")) }
}
fn map_group(g) { #{ displayName: g.displayName } }
"#,
    );
    ws.sync().ok();
    assert!(emu.user("J.Smith@contoso.com").is_some());
    assert!(emu.user("Ja.Smith@contoso.com").is_some());
    // A later cycle keeps each user's value (no churn).
    emu.reset_stats();
    ws.run(&["sync", "--full"]).ok();
    assert_eq!(count(&emu.stats().0, "PATCH /Users"), 0);
}

#[test]
fn example_scoping_script_excludes_service_accounts_and_names_the_rule() {
    let emu = Emulator::start();
    let doc = sample_directory();
    let ws = Workspace::new(&emu, &doc);
    let example = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("examples/scoping/exclude-service-accounts.rhai"),
    )
    .unwrap();
    ws.write("scripts/scoping.rhai", &example);
    ws.sync().ok();
    assert!(emu.user("svc-backup@contoso.com").is_none());
    assert!(emu.user("adele.vance@contoso.com").is_some());
    let p = ws.run(&["preview", "svc-backup@contoso.com"]);
    p.ok();
    assert!(
        p.stdout.contains("out of scope")
            && p.stdout.contains("decided by rule \"not an svc- account\""),
        "{}",
        p.stdout
    );
    let p = ws.run(&["preview", "adele.vance@contoso.com"]);
    assert!(
        p.stdout.contains("in scope") && p.stdout.contains("linked to target id"),
        "{}",
        p.stdout
    );
    assert!(
        p.stdout.contains("Vance"),
        "target values shown: {}",
        p.stdout
    );
}

#[test]
fn a_scoping_change_reevaluates_everyone_and_disables_the_excluded() {
    let emu = Emulator::start();
    let doc = sample_directory();
    let ws = Workspace::new(&emu, &doc);
    ws.sync().ok();
    // Invited members would be deleted by Dropbox when suspended: accept first.
    emu.accept_all();
    let before = emu.users().len();
    let example = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("examples/scoping/one-department.rhai"),
    )
    .unwrap();
    ws.write("scripts/scoping.rhai", &example);
    // Most of the team leaves scope at once: the shrink guard holds it until an
    // admin confirms (Entra disables everyone on such a save).
    let held = ws.sync();
    assert_eq!(held.code, 4, "{}", held.stdout);
    assert!(
        held.stdout
            .contains("more than shrink_threshold_percent 20%"),
        "{}",
        held.stdout
    );
    assert!(
        emu.users().iter().all(|u| u["active"] == true),
        "nothing is disabled while held"
    );
    let l = ws.run(&["logs", "--status", "staged"]);
    assert!(
        l.stdout.contains("shrink_threshold_percent 20%"),
        "{}",
        l.stdout
    );
    ws.run(&["allow-deletes"]).ok();
    ws.sync().ok();
    let users = emu.users();
    assert_eq!(users.len(), before, "disabled, not deleted");
    let sales: Vec<String> = doc["users"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|u| u["department"] == "Sales")
        .map(|u| u["userPrincipalName"].as_str().unwrap().to_lowercase())
        .collect();
    for u in users {
        let name = u["userName"].as_str().unwrap().to_lowercase();
        assert_eq!(u["active"] == true, sales.contains(&name), "{name}");
    }
    let l = ws.run(&["logs", "--action", "disable"]);
    assert!(
        l.stdout.contains("rule \"department is Sales\""),
        "{}",
        l.stdout
    );
}

#[test]
fn run_reloads_changed_scripts_and_keeps_the_old_ones_when_broken() {
    let emu = Emulator::start();
    let mut doc = small_directory(2);
    let ws = Workspace::new(&emu, &doc);
    let cfg = ws.dir.join("scimsync.toml");
    let events = ws.dir.join("events.log");
    let text = std::fs::read_to_string(&cfg)
        .unwrap()
        .replace("state = ", "interval = \"1h\"\nstate = ");
    let text = format!(
        "{text}\n[notify]\ncommand = \"cat >> '{}'; echo >> '{}'\"\n",
        events.display(),
        events.display()
    );
    std::fs::write(&cfg, text).unwrap();
    let log = std::fs::File::create(ws.dir.join("run.log")).unwrap();
    let mut child = std::process::Command::new(BIN)
        .args(["-c", cfg.to_str().unwrap(), "run"])
        .env("SCIMSYNC_TEST_TOKEN", &emu.token)
        .env("RUST_LOG", "info")
        .stderr(log)
        .spawn()
        .unwrap();
    wait_for("initial cycle", 20, || emu.users().len() == 2);

    // An editor-style save: write a new file, rename it over the old one.
    let tmp = ws.dir.join("scripts/.mapping.rhai.swp");
    std::fs::write(
        &tmp,
        mapping("r[\"name.givenName\"] = to_upper(user.givenName);"),
    )
    .unwrap();
    std::fs::rename(&tmp, ws.dir.join("scripts/mapping.rhai")).unwrap();
    wait_for("new mapping applied", 20, || {
        emu.user("user0@contoso.com")
            .map(|u| u["name"]["givenName"] == "GIVEN0")
            .unwrap_or(false)
    });

    // A broken save: logged with file and line, the running version stays.
    ws.write(
        "scripts/mapping.rhai",
        "fn map_user(user) {\n  #{ userName: \n}\n",
    );
    let logfile = ws.dir.join("run.log");
    wait_for("reload error logged", 20, || {
        std::fs::read_to_string(&logfile)
            .unwrap_or_default()
            .contains("mapping.rhai:3")
    });
    // SIGHUP retries the reload: refused again, nothing in the target changes.
    doc["users"][1]["surname"] = json!("Changed");
    ws.write_directory(&doc);
    let pid = child.id().to_string();
    std::process::Command::new("kill")
        .args(["-HUP", &pid])
        .status()
        .unwrap();
    wait_for("SIGHUP reload attempt logged", 20, || {
        std::fs::read_to_string(&logfile)
            .unwrap_or_default()
            .matches("mapping.rhai:3")
            .count()
            >= 2
    });
    assert_eq!(emu.users().len(), 2);
    // The failed reload was news once: the same error again is not.
    let reloads: Vec<serde_json::Value> = std::fs::read_to_string(&events)
        .unwrap_or_default()
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap())
        .filter(|e: &serde_json::Value| e["event"] == "script_reload_failed")
        .collect();
    assert_eq!(reloads.len(), 1, "{reloads:?}");
    assert!(
        reloads[0]["summary"]
            .as_str()
            .unwrap()
            .contains("mapping.rhai:3"),
        "{reloads:?}"
    );
    // Fix the mapping: reload succeeds and the cycle applies the directory change
    // with the new mapping.
    ws.write(
        "scripts/mapping.rhai",
        &mapping("r[\"name.givenName\"] = to_lower(user.givenName);"),
    );
    wait_for("fixed mapping applied", 20, || {
        emu.user("user1@contoso.com")
            .map(|u| u["name"]["familyName"] == "Changed" && u["name"]["givenName"] == "given1")
            .unwrap_or(false)
    });

    std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(0), "SIGTERM must exit 0");
    let text = std::fs::read_to_string(&logfile).unwrap();
    assert!(text.contains("scripts reloaded"), "{text}");
    assert!(!text.contains(&emu.token), "token in the log");
}

#[test]
fn objects_a_script_error_escrowed_are_retried_at_once_when_the_script_is_fixed() {
    let emu = Emulator::start();
    let ws = Workspace::new(&emu, &small_directory(4));
    let cfg = ws.dir.join("scimsync.toml");
    let text = std::fs::read_to_string(&cfg).unwrap();
    ws.write("scimsync.toml", &format!("{text}escrow_backoff = \"1h\"\n"));
    let good = std::fs::read_to_string(ws.dir.join("scripts/mapping.rhai")).unwrap();
    let broken = good.replacen(
        "fn map_user(user) {",
        "fn map_user(user) {\n    if user.id == \"u1\" { throw \"not yet\"; }",
        1,
    );
    ws.write("scripts/mapping.rhai", &broken);
    assert_eq!(ws.sync().code, 3);
    assert!(emu.user("user1@contoso.com").is_none());
    // The back-off alone keeps it waiting...
    emu.reset_stats();
    ws.sync().ok();
    assert_eq!(emu.stats().1, 0, "not due for an hour");
    // ...but a fixed script reaches it at once.
    ws.write("scripts/mapping.rhai", &good);
    let r = ws.sync();
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    assert!(emu.user("user1@contoso.com").is_some());
    let st: Value = serde_json::from_str(&ws.run(&["status", "--json"]).stdout).unwrap();
    assert_eq!(st["escrows"], json!([]));
}
