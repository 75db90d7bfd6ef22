//! Taking over from Entra's own job: `import-entra` turns the example schemas
//! (`examples/entra/`) into scripts, and what they provision is checked against
//! a table of what Entra's documented semantics give, written by hand from the
//! schema — not from the translator.

use crate::util::*;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::path::Path;

const E: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:";

fn example(name: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("examples/entra")
        .join(name)
        .display()
        .to_string()
}

/// The customised example schema, to edit into a broken one.
fn customised_schema() -> Value {
    let text = std::fs::read_to_string(example("dropbox-customised.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

/// `import-entra --force FILE` in the workspace.
fn import(ws: &Workspace, schema: &str) -> Run {
    ws.run(&["import-entra", "--force", schema])
}

fn plan(ws: &Workspace) -> Vec<Value> {
    let run = ws.run(&["plan", "--json"]);
    run.ok();
    let v: Value = serde_json::from_str(&run.stdout).unwrap();
    v["actions"].as_array().cloned().unwrap_or_default()
}

/// The attributes a plan's create of `display` sends, path → value.
fn created(actions: &[Value], display: &str) -> Option<BTreeMap<String, Value>> {
    let a = actions
        .iter()
        .find(|a| a["op"] == "create" && a["display"] == display)?;
    Some(
        a["changes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| (c["path"].as_str().unwrap().to_string(), c["new"].clone()))
            .collect(),
    )
}

/// Users chosen to meet every rule of the customised schema: nulls, empties,
/// defaults, a create-only attribute, both scoping filter groups and their misses.
fn customised_directory() -> Value {
    let users = json!([
        {"id": "u1", "userPrincipalName": "Anna.Schmidt@Contoso.com", "givenName": "Ánna", "surname": "Schmidt",
         "accountEnabled": true, "country": "DE", "jobTitle": "Senior Engineer", "department": "Engineering",
         "employeeId": "E1", "mailNickname": "anna.schmidt"},
        {"id": "u2", "userPrincipalName": "bob@contoso.com", "mail": "bob@contoso.com", "givenName": "Bob",
         "accountEnabled": true, "country": "US", "jobTitle": "", "department": "Sales", "employeeId": "E2",
         "mailNickname": "bob"},
        {"id": "u3", "userPrincipalName": "svc-backup@contoso.com", "surname": "Backup", "accountEnabled": true,
         "department": "Sales", "mailNickname": "svc"},
        {"id": "u4", "userPrincipalName": "carl@contoso.com", "mail": "carl.meyer@contoso.com", "givenName": "Carl",
         "surname": "Meyer", "accountEnabled": true, "country": "DE", "jobTitle": "Engineer", "mailNickname": "carl"},
        {"id": "u5", "userPrincipalName": "dora@contoso.com", "surname": "Diaz", "accountEnabled": false,
         "department": "Sales", "mailNickname": "dora"}
    ]);
    let assignments: Vec<Value> = (1..=5)
        .map(
            |i| json!({"principalId": format!("u{i}"), "principalType": "User", "appRole": "User"}),
        )
        .chain(
            ["g1", "g2"]
                .map(|g| json!({"principalId": g, "principalType": "Group", "appRole": "User"})),
        )
        .collect();
    json!({"users": users,
           "groups": [{"id": "g1", "displayName": "Engineering", "securityEnabled": true, "members": ["u1", "u4"]},
                      {"id": "g2", "displayName": "Newsletter", "securityEnabled": false, "members": ["u2"]}],
           "assignments": assignments})
}

/// What Entra gives for each user of `customised_directory` under
/// `dropbox-customised.json`, worked out by hand from Entra's documented
/// semantics (None: out of scope).
fn customised_expected() -> Vec<(&'static str, Option<Value>)> {
    vec![
        (
            "Anna.Schmidt@Contoso.com",
            Some(json!({
                "userName": "anna.schmidt@contoso.com",          // ToLower
                "active": true,                                   // Not([IsSoftDeleted])
                "emails[type eq \"work\"].value": "Anna.Schmidt@Contoso.com", // Coalesce: mail is null
                "name.givenName": "Anna",                         // NormalizeDiacritics
                "name.familyName": "Schmidt",
                "displayName": "Ánna Schmidt",                    // Join of the raw values
                "title": "Senior Engineer",
                (E.to_string() + "department"): "E",              // Switch
                (E.to_string() + "employeeNumber"): "E1",
                (E.to_string() + "division"): "Engineering division",
                "preferredLanguage": "de-DE",                     // IIF([country]="DE", …)
                "nickName": "annaschm",                           // Left(Replace(…), 8)
                "externalId": "u1"
            })),
        ),
        (
            "bob@contoso.com",
            Some(json!({
                "userName": "bob@contoso.com",
                "active": true,
                "emails[type eq \"work\"].value": "bob@contoso.com",
                "name.givenName": "Bob",
                "name.familyName": "-",                           // null surname: the default, on create
                "displayName": "Bob",                             // Join skips the null
                                                                  // title: "" → IgnoreFlowIfNullOrEmpty
                (E.to_string() + "department"): "S",
                (E.to_string() + "employeeNumber"): "E2",
                (E.to_string() + "division"): "Sales division",
                "preferredLanguage": "en-US",
                "nickName": "bob",
                "externalId": "u2"
            })),
        ),
        ("svc-backup@contoso.com", None), // NOT REGEX MATCH "^svc-"
        (
            "carl@contoso.com",
            Some(json!({
                "userName": "carl@contoso.com",
                "active": true,
                "emails[type eq \"work\"].value": "carl.meyer@contoso.com",
                "name.givenName": "Carl",
                "name.familyName": "Meyer",
                "displayName": "Carl Meyer",
                "title": "Engineer",
                (E.to_string() + "department"): "Other",          // Switch default for null
                                                                  // employeeNumber: null never flows
                (E.to_string() + "division"): "Unassigned",       // Append(null) is null: default
                "preferredLanguage": "de-DE",
                "nickName": "carl",
                "externalId": "u4"
            })),
        ),
        ("dora@contoso.com", None), // IS TRUE [accountEnabled] fails; not in Germany either
    ]
}

#[test]
fn customised_schema_provisions_what_entra_would() {
    let emu = Emulator::start();
    let ws = Workspace::new(&emu, &customised_directory());
    let run = import(&ws, &example("dropbox-customised.json"));
    run.ok();
    assert!(
        run.stdout
            .contains("users:  13 attribute mappings; matching userName, externalId"),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout.contains("differ from the User one's"),
        "{}",
        run.stdout
    );
    let mapping = std::fs::read_to_string(ws.dir.join("scripts/mapping.rhai")).unwrap();
    assert!(
        mapping.contains("// title ← IgnoreFlowIfNullOrEmpty([jobTitle])"),
        "{mapping}"
    );

    let actions = plan(&ws);
    for (upn, expected) in customised_expected() {
        let got = created(&actions, upn);
        match expected {
            None => assert!(got.is_none(), "{upn} is out of scope, yet created: {got:?}"),
            Some(want) => {
                let want: BTreeMap<String, Value> = serde_json::from_value(want).unwrap();
                assert_eq!(got.as_ref(), Some(&want), "{upn}");
            }
        }
    }
    let groups: Vec<&Value> = actions
        .iter()
        .filter(|a| a["kind"] == "group" && a["op"] == "create")
        .collect();
    assert_eq!(groups.len(), 1, "only the security group: {groups:?}");
    assert_eq!(groups[0]["display"], "Engineering");
    let preview = ws.run(&["preview", "svc-backup@contoso.com"]);
    assert!(
        preview.stdout.contains("decided by rule \"Sales staff\""),
        "{}",
        preview.stdout
    );

    ws.sync().ok();
    assert_eq!(emu.user_names().len(), 3);
    // A create-only attribute and a default never flow on an update; a real
    // value replaces the default.
    let mut doc = customised_directory();
    doc["users"][0]["employeeId"] = json!("E9");
    doc["users"][1]["country"] = json!("DE");
    ws.write_directory(&doc);
    let actions = plan(&ws);
    let updates: Vec<&Value> = actions.iter().filter(|a| a["op"] == "update").collect();
    assert_eq!(updates.len(), 1, "{actions:#?}");
    assert_eq!(updates[0]["display"], "bob@contoso.com");
    let paths: Vec<&str> = updates[0]["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["path"].as_str().unwrap())
        .collect();
    assert_eq!(paths, ["preferredLanguage"], "{:#}", updates[0]);
    ws.sync().ok();
    doc["users"][1]["surname"] = json!("Builder");
    ws.write_directory(&doc);
    let actions = plan(&ws);
    let changes = &actions.iter().find(|a| a["op"] == "update").unwrap()["changes"];
    assert_eq!(
        changes,
        &json!([{"path": "displayName", "old": "Bob", "new": "Bob Builder"},
                {"path": "name.familyName", "old": "-", "new": "Builder"}])
    );
}

#[test]
fn default_schema_adopts_every_account_entra_provisioned_without_changes() {
    let emu = Emulator::start();
    let mut doc = sample_directory();
    // A user without mail: Entra flows no null, and neither do the scripts.
    doc["users"][0].as_object_mut().unwrap().remove("mail");
    // "Entra" provisions the team: the repository's default scripts.
    let entra = Workspace::new(&emu, &doc);
    entra.sync().ok();
    let team = emu.user_names();
    assert!(team.len() > 5);

    // scimsync takes over: its own state, the scripts imported from the schema.
    let ws = Workspace::new(&emu, &doc);
    let run = import(&ws, &example("dropbox-default.json"));
    run.ok();
    assert!(
        run.stdout.contains("Config: nothing to change."),
        "{}",
        run.stdout
    );
    let actions = plan(&ws);
    assert!(!actions.is_empty());
    for a in &actions {
        // Disabled users the first job never created stay uncreated.
        let skipped = a["op"] == "skip" && a["reason"].as_str().unwrap().contains("not created");
        assert!(a["op"] == "adopt" || skipped, "{a:#}");
        assert_eq!(a["changes"], json!([]), "{a:#}");
    }
    let users = actions
        .iter()
        .filter(|a| a["kind"] == "user" && a["op"] == "adopt")
        .count();
    assert_eq!(users, team.len());
    emu.reset_stats();
    ws.sync().ok();
    let (stats, _) = emu.stats();
    let writes: u64 = ["POST", "PATCH", "PUT", "DELETE"]
        .iter()
        .filter_map(|m| stats.get(*m).and_then(Value::as_u64))
        .sum();
    assert_eq!(writes, 0, "adoption writes nothing: {stats}");
    assert_eq!(emu.user_names(), team);
    assert_eq!(plan(&ws), Vec::<Value>::new());
}

#[test]
fn an_untranslatable_schema_writes_nothing() {
    let emu = Emulator::start();
    let ws = Workspace::new(&emu, &small_directory(2));
    let before = std::fs::read_to_string(ws.dir.join("scripts/mapping.rhai")).unwrap();
    let mut schema: Value = customised_schema();
    let users = &mut schema["synchronizationRules"][0]["objectMappings"][0];
    users["attributeMappings"][5]["source"]["expression"] =
        json!("Join(\" \", Frobnicate([givenName]), [surname])");
    ws.write("bad-function.json", &schema.to_string());
    let run = import(&ws, ws.dir.join("bad-function.json").to_str().unwrap());
    assert_eq!(run.code, 2, "{}", run.stderr);
    for part in [
        "synchronizationRules[0].objectMappings[0]",
        "Provision Microsoft Entra ID Users",
        "attributeMappings[5]",
        "\"displayName\"",
        "Frobnicate",
        "nothing written",
    ] {
        assert!(run.stderr.contains(part), "{part} in {}", run.stderr);
    }
    let mut schema: Value = customised_schema();
    schema["synchronizationRules"][0]["objectMappings"][0]["scope"]["groups"][1]["clauses"][0]
        ["operatorName"] = json!("Less_Than");
    ws.write("bad-operator.json", &schema.to_string());
    let run = import(&ws, ws.dir.join("bad-operator.json").to_str().unwrap());
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(
        run.stderr
            .contains("scope → groups[1] → clauses[0] (department Less_Than)"),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr.contains("unknown scoping operator"),
        "{}",
        run.stderr
    );
    // Without --force, existing scripts are never replaced.
    let run = ws.run(&["import-entra", &example("dropbox-default.json")]);
    assert_eq!(run.code, 2);
    assert!(run.stderr.contains("--force"), "{}", run.stderr);
    assert_eq!(
        std::fs::read_to_string(ws.dir.join("scripts/mapping.rhai")).unwrap(),
        before
    );
    assert!(!ws.dir.join("scripts/mapping.rhai.new").exists());
}

#[test]
fn the_schema_is_read_from_the_entra_job_through_graph() {
    let dir = std::env::temp_dir().join(format!("scimsync-import-job-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let graph = GraphEmulator::start(&dir, &small_directory(2), 100);
    let emu = Emulator::start();
    let ws = Workspace::new(&emu, &small_directory(2));
    let schema: Value = customised_schema();
    graph.put_schema("DropboxSCIMOutDelta.contoso.1234", &schema);
    graph.configure_workspace(&ws, &graph.secret);
    let run = ws.run(&[
        "import-entra",
        "--force",
        "--job",
        "DropboxSCIMOutDelta.contoso.1234",
    ]);
    run.ok();
    assert!(
        run.stdout
            .contains("provisioning job DropboxSCIMOutDelta.contoso.1234"),
        "{}",
        run.stdout
    );
    // The customised schema reads attributes Graph leaves out of its default $select.
    assert!(run.stdout.contains("[source] attributes"), "{}", run.stdout);
    let from_job = std::fs::read_to_string(ws.dir.join("scripts/scoping.rhai")).unwrap();
    assert!(
        from_job.contains("rule(\"Engineers in Germany\""),
        "{from_job}"
    );
    let run = ws.run(&["import-entra", "--force", "--job", "no-such-job"]);
    assert_ne!(run.code, 0);
    assert!(run.stderr.contains("no-such-job"), "{}", run.stderr);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn default_schema_maps_as_entra_does() {
    let doc = json!({
        "users": [
            {"id": "u1", "userPrincipalName": "ann@contoso.com", "mail": "ann@contoso.com", "givenName": "Ann",
             "surname": "Lee", "accountEnabled": true},
            {"id": "u2", "userPrincipalName": "bo@contoso.com", "surname": "Berg", "accountEnabled": true},
            {"id": "u3", "userPrincipalName": "cy@contoso.com", "surname": "Cole", "accountEnabled": false}
        ],
        "groups": [{"id": "g1", "displayName": "Sales", "securityEnabled": true, "members": ["u1"]}],
        "assignments": [
            {"principalId": "u1", "principalType": "User", "appRole": "User"},
            {"principalId": "u2", "principalType": "User", "appRole": "User"},
            {"principalId": "u3", "principalType": "User", "appRole": "User"},
            {"principalId": "g1", "principalType": "Group", "appRole": "User"}
        ]
    });
    let emu = Emulator::start();
    let ws = Workspace::new(&emu, &doc);
    import(&ws, &example("dropbox-default.json")).ok();
    let actions = plan(&ws);
    // Worked out from the default mapping: IsSoftDeleted is false for an enabled
    // user in scope, so Switch gives "True"; null mail and givenName flow nothing.
    let want = |v: Value| -> BTreeMap<String, Value> { serde_json::from_value(v).unwrap() };
    assert_eq!(
        created(&actions, "ann@contoso.com"),
        Some(want(json!({"userName": "ann@contoso.com", "active": true,
            "emails[type eq \"work\"].value": "ann@contoso.com", "name.givenName": "Ann",
            "name.familyName": "Lee", "externalId": "u1"})))
    );
    assert_eq!(
        created(&actions, "bo@contoso.com"),
        Some(want(json!({"userName": "bo@contoso.com", "active": true,
            "name.familyName": "Berg", "externalId": "u2"})))
    );
    // A disabled user is not created (Entra: provisioning a disabled user is not supported).
    assert_eq!(created(&actions, "cy@contoso.com"), None);
    assert_eq!(
        created(&actions, "Sales"),
        Some(want(json!({"displayName": "Sales", "externalId": "g1"})))
    );
}
