//! A deterministic simulation of a directory in the wild, the way FoundationDB and
//! Jepsen test distributed state: a seeded generator draws operations — directory
//! edits of every kind (hires, leavers, renames, delete-and-recreate, enable and
//! disable, scoping and assignment changes, nested groups, soft deletes, broken
//! records), unparseable Graph answers, hand edits in the target, target faults and
//! `kill -9` — and runs the real `scimsync` binary against the emulators between
//! them, checking after every cycle:
//!
//! * no account is provisioned twice;
//! * no live account is suspended or removed unless the directory says it must be —
//!   never because a read failed or a record could not be read; a failed read
//!   writes nothing, a held cycle removes nothing;
//! * once the directory stops changing, the team equals the ideal provisioning
//!   within three cycles, or every difference left is a named, escrowed failure.
//!
//! Even seeds run with the grace period before removal (`remove_after = "30d"`, the
//! default: leavers stay suspended, in their groups, through the run), odd seeds
//! remove at once (`"0s"`).
//!
//! The same seed draws the same operations, faults and kill points (a kill lands
//! while the Nth target request is held by the emulator; requests go one at a
//! time), so a failure names its seed and replays (`cargo run --example simulate --
//! --seed N`). The ideal is computed here,
//! from Entra's rules, independently of scimsync's planner.
//!
//! Shared by `tests/simulation.rs` (a bounded run in CI) and `examples/simulate.rs`
//! (as long as you like).

use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// One simulation run.
#[derive(Debug, Clone)]
pub struct Config {
    pub seed: u64,
    /// Operations drawn (cycles run between them every few operations).
    pub ops: usize,
    /// Read the directory through the Graph emulator (nested groups flattened)
    /// instead of the file source.
    pub graph: bool,
    /// How to run scimsync: the program and any leading arguments.
    pub bin: Vec<String>,
    /// Print every operation and cycle.
    pub verbose: bool,
}

/// What a run did.
#[derive(Debug, Default, Clone)]
pub struct Report {
    pub ops: BTreeMap<&'static str, usize>,
    pub cycles: usize,
    pub kills: usize,
    pub failed_reads: usize,
    pub holds: usize,
    pub settles: usize,
    /// Settles that ended with differences explained by escrowed failures.
    pub explained: usize,
    /// Cycles a settle needed at most.
    pub worst_settle: usize,
}

impl Report {
    pub fn total_ops(&self) -> usize {
        self.ops.values().sum()
    }

    /// One line for a run.
    pub fn line(&self) -> String {
        format!(
            "{} operations, {} cycles, {} kills, {} failed reads, {} holds, {} settles (worst {} cycles, {} explained by escrows)",
            self.total_ops(),
            self.cycles,
            self.kills,
            self.failed_reads,
            self.holds,
            self.settles,
            self.worst_settle,
            self.explained
        )
    }
}

/// splitmix64: small, fast, reproducible from the seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }
    fn pick<'a, T>(&mut self, items: &'a [T]) -> Option<&'a T> {
        if items.is_empty() {
            None
        } else {
            items.get(self.below(items.len()))
        }
    }
}

/// A child process (an emulator) killed on drop.
struct Service {
    child: Child,
    _out: BufReader<std::process::ChildStdout>,
    base: String,
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

const TOKEN: &str = "sim-token";
const GRAPH_SECRET: &str = "sim-graph-secret";
const APP: &str = "11111111-2222-3333-4444-555555555555";

fn start(bin: &[String], args: &[&str]) -> Result<Service, String> {
    let mut child = Command::new(&bin[0])
        .args(&bin[1..])
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", bin[0]))?;
    let mut out = BufReader::new(child.stdout.take().ok_or("no stdout")?);
    let mut line = String::new();
    out.read_line(&mut line).map_err(|e| e.to_string())?;
    let base = line
        .trim()
        .trim_end_matches("/scim/v2")
        .trim_end_matches('/')
        .to_string();
    if !base.starts_with("http://127.0.0.1:") {
        return Err(format!("emulator said {line:?}"));
    }
    Ok(Service {
        child,
        _out: out,
        base,
    })
}

fn http(method: &str, url: &str, token: &str, body: Option<Value>) -> Result<Value, String> {
    // Its own few lines of ureq: `examples/simulate.rs` shares this file, not
    // `tests/util`.
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .proxy(None)
        .build()
        .into();
    let request = ureq::http::Request::builder()
        .method(method)
        .uri(url)
        .header("Authorization", format!("Bearer {token}"));
    let fail = |e: &dyn std::fmt::Display| format!("{method} {url}: {e}");
    let sent = match body {
        Some(b) => request
            .header("Content-Type", "application/json")
            .body(b.to_string())
            .map(|r| agent.run(r)),
        None => request.body(()).map(|r| agent.run(r)),
    };
    let mut resp = sent.map_err(|e| fail(&e))?.map_err(|e| fail(&e))?;
    let status = resp.status().as_u16();
    let text = resp.body_mut().read_to_string().map_err(|e| fail(&e))?;
    match status {
        s if s < 300 => Ok(serde_json::from_str(&text).unwrap_or(Value::Null)),
        404 if method == "DELETE" => Ok(Value::Null),
        s => Err(format!("{method} {url}: {s} {text}")),
    }
}

/// An account as the team holds it.
#[derive(Debug, Clone, PartialEq)]
struct Account {
    id: String,
    user_name: String,
    external_id: String,
    status: String,
    family: Value,
}

impl Account {
    fn live(&self) -> bool {
        self.status != "suspended"
    }
}

/// The team at one moment.
#[derive(Debug, Clone, Default)]
struct Team {
    accounts: Vec<Account>,
    /// Group externalId → (displayName, member externalIds).
    groups: Vec<(String, String, BTreeSet<String>)>,
}

/// What the directory says an account must be.
#[derive(Debug, Clone, PartialEq)]
struct Desired {
    active: bool,
    user_name: String,
    family: String,
}

/// What the directory asks for, computed from Entra's rules.
#[derive(Debug, Default)]
struct Ideal {
    users: HashMap<String, Desired>,
    /// Users whose record cannot be read: their account must not change.
    unknown: HashSet<String>,
    /// A user record without an id: no account may disappear.
    unnamed: bool,
    /// Group id → (name, member user ids), for groups that must exist.
    groups: HashMap<String, (String, BTreeSet<String>)>,
}

pub struct Sim {
    cfg: Config,
    rng: Rng,
    dir: PathBuf,
    doc: Value,
    dropbox: Service,
    graph: Option<Service>,
    next_id: usize,
    /// User ids whose userPrincipalName was taken out (restored on a fix).
    broken: HashMap<String, String>,
    /// A user record whose id was taken out: (upn, id).
    unnamed: Option<(String, String)>,
    /// Hand edits since the last settle: the next one starts with a full cycle.
    hand_edited: bool,
    /// Accounts edited by hand that no full cycle has looked at while they were
    /// live (a full cycle does not look at accounts out of scope, so such drift
    /// waits for the first one after they come back).
    edited: HashSet<String>,
    // Set for the next cycle only.
    /// (route, fault) for the Graph emulator.
    graph_fault: Option<(&'static str, &'static str)>,
    target_faults: bool,
    kill: bool,
    /// The directory file is read while cut short (file source).
    cut: bool,
    report: Report,
}

impl Drop for Sim {
    fn drop(&mut self) {
        // SIM_KEEP=1 keeps the folder (state, config, directory) to look into.
        if std::env::var_os("SIM_KEEP").is_none() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// Runs one seeded simulation; `Err` says what broke, at which step, and how to
/// replay it.
pub fn run(cfg: Config) -> Result<Report, String> {
    let mut sim = Sim::new(cfg)?;
    let seed = sim.cfg.seed;
    sim.go().map_err(|e| {
        format!(
            "seed {seed} ({} source) failed: {e}\nreplay: cargo run --example simulate -- --seed {seed} --ops {}{}",
            if sim.cfg.graph { "graph" } else { "file" },
            sim.cfg.ops,
            if sim.cfg.graph { " --graph" } else { "" }
        )
    })?;
    Ok(sim.report.clone())
}

impl Sim {
    /// Even seeds run with the grace period (`remove_after = "30d"`: leavers stay
    /// suspended through the run), odd ones remove at once.
    fn grace(&self) -> bool {
        self.cfg.seed.is_multiple_of(2)
    }

    fn new(cfg: Config) -> Result<Sim, String> {
        let dir = std::env::temp_dir().join(format!(
            "scimsync-sim-{}-{}-{}",
            std::process::id(),
            cfg.seed,
            if cfg.graph { "graph" } else { "file" }
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("scripts")).map_err(|e| e.to_string())?;
        let dropbox = start(
            &cfg.bin,
            &[
                "emulate",
                "dropbox",
                "--listen",
                "127.0.0.1:0",
                "--token",
                TOKEN,
            ],
        )?;
        let mut sim = Sim {
            rng: Rng(cfg.seed ^ 0x5EED_5EED),
            dir,
            doc: json!({"users": [], "groups": [], "assignments": []}),
            dropbox,
            graph: None,
            next_id: 0,
            broken: HashMap::new(),
            unnamed: None,
            hand_edited: false,
            edited: HashSet::new(),
            graph_fault: None,
            target_faults: false,
            kill: false,
            cut: false,
            report: Report::default(),
            cfg,
        };
        for _ in 0..12 {
            sim.add_user(true);
        }
        for _ in 0..3 {
            sim.add_group();
        }
        sim.write_directory()?;
        if sim.cfg.graph {
            let data = sim.dir.join("directory.json");
            sim.graph = Some(start(
                &sim.cfg.bin,
                &[
                    "emulate",
                    "graph",
                    "--listen",
                    "127.0.0.1:0",
                    "--data",
                    data.to_str().unwrap_or(""),
                    "--client-secret",
                    GRAPH_SECRET,
                    "--app",
                    APP,
                    "--page-size",
                    "7",
                ],
            )?);
        }
        sim.write_config()?;
        Ok(sim)
    }

    fn write_config(&self) -> Result<(), String> {
        let source = match &self.graph {
            Some(g) => format!(
                "type = \"graph\"\ntenant = \"contoso.onmicrosoft.com\"\nclient_id = \"scimsync-client\"\nclient_secret = \"{GRAPH_SECRET}\"\napp = \"{APP}\"\ngraph_url = \"{b}\"\nlogin_url = \"{b}\"\nnested_groups = \"flatten\"\n",
                b = g.base
            ),
            None => "type = \"file\"\npath = \"directory.json\"\n".into(),
        };
        let after = if self.grace() { "30d" } else { "0s" };
        let config = format!(
            "state = \"state.db\"\nscripts = \"scripts\"\n\n[source]\n{source}scope = \"assigned\"\n\n[target]\ntype = \"dropbox\"\nurl = \"{}/scim/v2\"\ntoken = \"{TOKEN}\"\ntimeout = \"10s\"\nmax_in_flight = 1\n\n[safety]\nescrow_backoff = \"0s\"\n\n[deprovision]\nremove_after = \"{after}\"\n",
            self.dropbox.base
        );
        let write = |name: &str, text: &str| {
            std::fs::write(self.dir.join(name), text).map_err(|e| e.to_string())
        };
        write("scimsync.toml", &config)?;
        write(
            "scripts/mapping.rhai",
            "fn matching() { [\"userName\", \"externalId\"] }\n\
             fn map_user(user) {\n  let r = #{ userName: user.userPrincipalName, externalId: user.id, active: user.accountEnabled ?? true };\n  if is_present(user.surname) { r[\"name.familyName\"] = user.surname; }\n  if is_present(user.givenName) { r[\"name.givenName\"] = user.givenName; }\n  r\n}\n\
             fn map_group(group) { #{ displayName: group.displayName, externalId: group.id } }\n",
        )?;
        write(
            "scripts/scoping.rhai",
            "fn user_in_scope(user) { rule(\"not excluded\", user.department != \"Excluded\") }\nfn group_in_scope(group) { true }\n",
        )
    }

    fn write_directory(&self) -> Result<(), String> {
        let path = self.dir.join("directory.json");
        let tmp = self.dir.join("directory.json.tmp");
        let text = serde_json::to_string_pretty(&self.doc).map_err(|e| e.to_string())?;
        std::fs::write(&tmp, text).map_err(|e| e.to_string())?;
        std::fs::rename(&tmp, &path).map_err(|e| e.to_string())
    }

    fn say(&self, what: &str) {
        if self.cfg.verbose {
            println!("[seed {}] {what}", self.cfg.seed);
        }
    }

    // ---- the directory ----------------------------------------------------------

    fn fresh(&mut self, prefix: &str) -> String {
        self.next_id += 1;
        format!("{prefix}{}", self.next_id)
    }

    fn users(&self) -> Vec<Value> {
        self.doc["users"].as_array().cloned().unwrap_or_default()
    }

    fn user_ids(&self) -> Vec<String> {
        self.users()
            .iter()
            .filter_map(|u| u["id"].as_str().map(str::to_string))
            .collect()
    }

    fn group_ids(&self) -> Vec<String> {
        self.doc["groups"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|g| g["id"].as_str().map(str::to_string))
            .collect()
    }

    fn user_mut(&mut self, id: &str) -> Option<&mut Value> {
        self.doc["users"]
            .as_array_mut()?
            .iter_mut()
            .find(|u| u["id"] == id)
    }

    fn group_mut(&mut self, id: &str) -> Option<&mut Value> {
        self.doc["groups"]
            .as_array_mut()?
            .iter_mut()
            .find(|g| g["id"] == id)
    }

    fn assigned(&self, id: &str) -> bool {
        self.doc["assignments"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|a| a["principalId"] == id)
    }

    fn set_assigned(&mut self, id: &str, kind: &str, on: bool) {
        let Some(list) = self.doc["assignments"].as_array_mut() else {
            return;
        };
        list.retain(|a| a["principalId"] != id);
        if on {
            list.push(json!({"principalId": id, "principalType": kind, "appRole": "User"}));
        }
    }

    fn add_user(&mut self, assign: bool) -> String {
        let id = self.fresh("u");
        let n = id.trim_start_matches('u').to_string();
        let user = json!({"id": id, "userPrincipalName": format!("person{n}@contoso.com"),
            "givenName": format!("Given{n}"), "surname": format!("Family{n}"),
            "accountEnabled": true, "department": "Sales"});
        if let Some(u) = self.doc["users"].as_array_mut() {
            u.push(user);
        }
        if assign {
            self.set_assigned(&id, "User", true);
        }
        id
    }

    fn add_group(&mut self) -> String {
        let id = self.fresh("g");
        let mut members = vec![];
        for u in self.user_ids() {
            if self.rng.chance(30) {
                members.push(u);
            }
        }
        let g = json!({"id": id, "displayName": format!("Team {id}"), "members": members});
        if let Some(gs) = self.doc["groups"].as_array_mut() {
            gs.push(g);
        }
        self.set_assigned(&id, "Group", true);
        id
    }

    /// Applies one random operation; returns its name.
    fn step(&mut self) -> Result<&'static str, String> {
        let users = self.user_ids();
        let groups = self.group_ids();
        let roll = self.rng.below(100);
        let name = match roll {
            0..=7 => {
                let assign = self.rng.chance(75);
                let id = self.add_user(assign);
                if !assign {
                    if let Some(g) = self.rng.pick(&groups).cloned() {
                        if let Some(m) =
                            self.group_mut(&g).and_then(|g| g["members"].as_array_mut())
                        {
                            m.push(json!(id));
                        }
                    }
                }
                "hire"
            }
            8..=12 => {
                let Some(id) = self.rng.pick(&users).cloned() else {
                    return Ok("none");
                };
                self.remove_user(&id);
                "leaver"
            }
            13..=20 => {
                let Some(id) = self.rng.pick(&users).cloned() else {
                    return Ok("none");
                };
                let s = self.fresh("Surname");
                if let Some(u) = self.user_mut(&id) {
                    u["surname"] = json!(s);
                }
                "rename"
            }
            21..=23 => {
                let Some(id) = self.rng.pick(&users).cloned() else {
                    return Ok("none");
                };
                let n = self.fresh("renamed");
                if let Some(u) = self.user_mut(&id) {
                    if u.get("userPrincipalName").is_some() {
                        u["userPrincipalName"] = json!(format!("{n}@contoso.com"));
                    }
                }
                "new userPrincipalName"
            }
            24..=30 => {
                let Some(id) = self.rng.pick(&users).cloned() else {
                    return Ok("none");
                };
                if let Some(u) = self.user_mut(&id) {
                    let on = u["accountEnabled"] != false;
                    u["accountEnabled"] = json!(!on);
                }
                "enable/disable"
            }
            31..=34 => {
                let Some(id) = self.rng.pick(&users).cloned() else {
                    return Ok("none");
                };
                if self.broken.contains_key(&id) {
                    return Ok("none");
                }
                self.delete_and_recreate(&id);
                "delete and re-create"
            }
            35..=40 => {
                let Some(id) = self.rng.pick(&users).cloned() else {
                    return Ok("none");
                };
                let on = !self.assigned(&id);
                self.set_assigned(&id, "User", on);
                "assignment"
            }
            41..=45 => {
                let Some(id) = self.rng.pick(&users).cloned() else {
                    return Ok("none");
                };
                if let Some(u) = self.user_mut(&id) {
                    let out = u["department"] == "Excluded";
                    u["department"] = json!(if out { "Sales" } else { "Excluded" });
                }
                "scoping attribute"
            }
            46..=48 => {
                let Some(id) = self.rng.pick(&users).cloned() else {
                    return Ok("none");
                };
                if let Some(u) = self.user_mut(&id) {
                    match u.get("deletedDateTime") {
                        Some(_) => {
                            if let Some(o) = u.as_object_mut() {
                                o.remove("deletedDateTime");
                            }
                        }
                        None => u["deletedDateTime"] = json!("2026-11-30T10:00:00Z"),
                    }
                }
                "soft delete/restore"
            }
            49..=56 => {
                let (Some(g), Some(u)) = (
                    self.rng.pick(&groups).cloned(),
                    self.rng.pick(&users).cloned(),
                ) else {
                    return Ok("none");
                };
                let add = self.rng.chance(55);
                if let Some(m) = self.group_mut(&g).and_then(|g| g["members"].as_array_mut()) {
                    let v = json!(u);
                    m.retain(|x| x != &v);
                    if add {
                        m.push(v);
                    }
                }
                "membership"
            }
            57..=59 => {
                self.add_group();
                "new group"
            }
            60..=61 => {
                let Some(g) = self.rng.pick(&groups).cloned() else {
                    return Ok("none");
                };
                self.remove_group(&g);
                "group deleted"
            }
            62..=64 => {
                let Some(g) = self.rng.pick(&groups).cloned() else {
                    return Ok("none");
                };
                let n = self.fresh("Renamed team ");
                if let Some(x) = self.group_mut(&g) {
                    if x.get("displayName").is_some() {
                        x["displayName"] = json!(n);
                    }
                }
                "group renamed"
            }
            65..=66 => {
                let Some(g) = self.rng.pick(&groups).cloned() else {
                    return Ok("none");
                };
                self.recreate_group(&g);
                "group deleted and re-created"
            }
            67..=69 => {
                let Some(g) = self.rng.pick(&groups).cloned() else {
                    return Ok("none");
                };
                let on = !self.assigned(&g);
                self.set_assigned(&g, "Group", on);
                "group assignment"
            }
            70..=72 => {
                let (Some(outer), Some(inner)) = (
                    self.rng.pick(&groups).cloned(),
                    self.rng.pick(&groups).cloned(),
                ) else {
                    return Ok("none");
                };
                if outer == inner {
                    return Ok("none");
                }
                let v = json!(inner);
                if let Some(m) = self
                    .group_mut(&outer)
                    .and_then(|g| g["members"].as_array_mut())
                {
                    if m.contains(&v) {
                        m.retain(|x| x != &v);
                    } else {
                        m.push(v);
                    }
                }
                "nested group"
            }
            73..=81 if self.graph.is_some() => {
                // Graph never hands out a broken record: what breaks is the answer.
                let routes = [
                    "v1.0/users",
                    "v1.0/groups",
                    "users/delta",
                    "groups/delta",
                    "appRoleAssignedTo",
                    "members",
                ];
                let faults = ["html=100%", "empty=100%", "deep=100%"];
                let route = *self.rng.pick(&routes).unwrap_or(&"v1.0/users");
                let fault = *self.rng.pick(&faults).unwrap_or(&"html=100%");
                self.graph_fault = Some((route, fault));
                "unparseable Graph answer"
            }
            73..=76 => {
                // A record breaks (its userPrincipalName goes missing) or is fixed.
                if !self.broken.is_empty() && self.rng.chance(50) {
                    self.fix_records();
                    return Ok("records fixed");
                }
                let Some(id) = self.rng.pick(&users).cloned() else {
                    return Ok("none");
                };
                if let Some(u) = self.user_mut(&id) {
                    if let Some(upn) = u
                        .as_object_mut()
                        .and_then(|o| o.remove("userPrincipalName"))
                    {
                        let upn = upn.as_str().unwrap_or_default().to_string();
                        self.broken.insert(id, upn);
                    }
                }
                "record broken"
            }
            77..=78 => {
                // A record loses its id (file: kept out; Graph: the read fails).
                if self.unnamed.is_some() {
                    self.fix_records();
                    return Ok("records fixed");
                }
                let Some(id) = self.rng.pick(&users).cloned() else {
                    return Ok("none");
                };
                if let Some(u) = self.user_mut(&id) {
                    if let Some(o) = u.as_object_mut() {
                        o.remove("id");
                        let upn = o
                            .get("userPrincipalName")
                            .and_then(|v| v.as_str())
                            .unwrap_or_default()
                            .to_string();
                        self.unnamed = Some((upn, id));
                    }
                }
                "id lost"
            }
            79..=81 => {
                // Another cycle of the file, read while it is being written: cut.
                self.cut = true;
                "directory file cut short"
            }
            82..=86 => {
                self.hand_edit()?;
                "hand edit in the target"
            }
            87..=89 => {
                http(
                    "POST",
                    &format!("{}/_emulator/accept", self.dropbox.base),
                    TOKEN,
                    Some(json!({})),
                )?;
                "invitations accepted"
            }
            90..=94 => {
                self.target_faults = true;
                "target faults"
            }
            95..=98 => {
                self.kill = true;
                "kill -9"
            }
            _ => {
                // An admin unassigns half the users and groups at once (the shrink
                // guard's case).
                for id in &users {
                    if self.rng.chance(50) {
                        self.set_assigned(id, "User", false);
                    }
                }
                for id in &groups {
                    if self.rng.chance(50) {
                        self.set_assigned(id, "Group", false);
                    }
                }
                "mass unassignment"
            }
        };
        Ok(name)
    }

    fn remove_user(&mut self, id: &str) {
        if let Some(u) = self.doc["users"].as_array_mut() {
            u.retain(|x| x["id"] != id);
        }
        self.set_assigned(id, "User", false);
        let v = json!(id);
        if let Some(gs) = self.doc["groups"].as_array_mut() {
            for g in gs {
                if let Some(m) = g["members"].as_array_mut() {
                    m.retain(|x| x != &v);
                }
            }
        }
        self.broken.remove(id);
    }

    /// The user is deleted and a new one (new id) is created under the same
    /// userPrincipalName, with the same assignment and groups.
    fn delete_and_recreate(&mut self, id: &str) {
        let Some(old) = self.users().into_iter().find(|u| u["id"] == id) else {
            return;
        };
        let new_id = self.fresh("u");
        let assigned = self.assigned(id);
        let groups: Vec<String> = self.doc["groups"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|g| {
                g["members"]
                    .as_array()
                    .is_some_and(|m| m.contains(&json!(id)))
            })
            .filter_map(|g| g["id"].as_str().map(str::to_string))
            .collect();
        self.remove_user(id);
        let mut new = old.clone();
        new["id"] = json!(new_id);
        new["surname"] = json!(format!("Again{}", self.next_id));
        if let Some(o) = new.as_object_mut() {
            o.remove("deletedDateTime");
        }
        if let Some(u) = self.doc["users"].as_array_mut() {
            u.push(new);
        }
        self.set_assigned(&new_id, "User", assigned);
        for g in groups {
            if let Some(m) = self.group_mut(&g).and_then(|g| g["members"].as_array_mut()) {
                m.push(json!(new_id));
            }
        }
    }

    fn remove_group(&mut self, id: &str) {
        if let Some(gs) = self.doc["groups"].as_array_mut() {
            gs.retain(|g| g["id"] != id);
        }
        self.set_assigned(id, "Group", false);
    }

    fn recreate_group(&mut self, id: &str) {
        let Some(mut g) = self.doc["groups"]
            .as_array()
            .and_then(|gs| gs.iter().find(|g| g["id"] == id).cloned())
        else {
            return;
        };
        let assigned = self.assigned(id);
        self.remove_group(id);
        let new_id = self.fresh("g");
        g["id"] = json!(new_id);
        if let Some(gs) = self.doc["groups"].as_array_mut() {
            for other in gs.iter_mut() {
                if let Some(m) = other["members"].as_array_mut() {
                    for x in m.iter_mut() {
                        if x == id {
                            *x = json!(new_id);
                        }
                    }
                }
            }
            gs.push(g);
        }
        self.set_assigned(&new_id, "Group", assigned);
    }

    fn fix_records(&mut self) {
        // The one record without an id gets it back first (it may have lost its
        // userPrincipalName too).
        if let Some((_, id)) = self.unnamed.take() {
            if let Some(u) = self.doc["users"]
                .as_array_mut()
                .and_then(|us| us.iter_mut().find(|u| u.get("id").is_none()))
            {
                u["id"] = json!(id);
            }
        }
        for (id, upn) in std::mem::take(&mut self.broken) {
            if let Some(u) = self.user_mut(&id) {
                u["userPrincipalName"] = json!(upn);
            }
        }
    }

    /// An admin edits the team by hand: deletes an account or a group, or changes a
    /// surname. Incremental cycles notice when they next touch the object; a full
    /// cycle repairs the rest.
    fn hand_edit(&mut self) -> Result<(), String> {
        let team = self.team()?;
        let base = format!("{}/scim/v2", self.dropbox.base);
        match self.rng.below(3) {
            0 => {
                if let Some(a) = self.rng.pick(&team.accounts).cloned() {
                    self.say(&format!("by hand: delete {} ({})", a.user_name, a.id));
                    http("DELETE", &format!("{base}/Users/{}", a.id), TOKEN, None)?;
                }
            }
            1 => {
                let groups = http("GET", &format!("{base}/Groups?count=1000"), TOKEN, None)?;
                // (externalId, id): ids carry a random prefix, externalIds do not.
                let mut ids: Vec<(String, String)> = groups["Resources"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|g| {
                        Some((
                            g["externalId"].as_str()?.to_string(),
                            g["id"].as_str()?.to_string(),
                        ))
                    })
                    .collect();
                ids.sort();
                if let Some((_, id)) = self.rng.pick(&ids).cloned() {
                    self.say(&format!("by hand: delete group {id}"));
                    http("DELETE", &format!("{base}/Groups/{id}"), TOKEN, None)?;
                }
            }
            _ => {
                if let Some(a) = self.rng.pick(&team.accounts).cloned() {
                    self.say(&format!(
                        "by hand: new surname for {} ({})",
                        a.user_name, a.id
                    ));
                    self.edited.insert(a.id.clone());
                    let body = json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
                        "Operations": [{"op": "replace", "path": "name.familyName", "value": "Edited by hand"}]});
                    // An invited member may be gone already; a refusal is fine.
                    let _ = http(
                        "PATCH",
                        &format!("{base}/Users/{}", a.id),
                        TOKEN,
                        Some(body),
                    );
                }
            }
        }
        self.hand_edited = true;
        Ok(())
    }

    // ---- the team -------------------------------------------------------------

    fn team(&self) -> Result<Team, String> {
        let base = &self.dropbox.base;
        let members = http("GET", &format!("{base}/_emulator/members"), TOKEN, None)?;
        let users = http(
            "GET",
            &format!("{base}/scim/v2/Users?count=1000"),
            TOKEN,
            None,
        )?;
        let family: HashMap<String, Value> = users["Resources"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|u| {
                (
                    u["id"].as_str().unwrap_or_default().to_string(),
                    u["name"]["familyName"].clone(),
                )
            })
            .collect();
        // Sorted: the emulator lists in no fixed order, and the simulation picks
        // from these lists by its seed.
        let mut accounts: Vec<Account> = members
            .as_array()
            .into_iter()
            .flatten()
            .map(|m| {
                let id = m["id"].as_str().unwrap_or_default().to_string();
                Account {
                    family: family.get(&id).cloned().unwrap_or(Value::Null),
                    id,
                    user_name: m["userName"].as_str().unwrap_or_default().to_lowercase(),
                    external_id: m["externalId"].as_str().unwrap_or_default().to_string(),
                    status: m["status"].as_str().unwrap_or_default().to_string(),
                }
            })
            .collect();
        accounts.sort_by(|a, b| a.user_name.cmp(&b.user_name));
        let by_id: HashMap<&str, &str> = accounts
            .iter()
            .map(|a| (a.id.as_str(), a.external_id.as_str()))
            .collect();
        let groups = http(
            "GET",
            &format!("{base}/scim/v2/Groups?count=1000"),
            TOKEN,
            None,
        )?;
        let groups = groups["Resources"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|g| {
                let members = g["members"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|m| m["value"].as_str())
                    .map(|id| by_id.get(id).copied().unwrap_or(id).to_string())
                    .collect();
                (
                    g["externalId"].as_str().unwrap_or_default().to_string(),
                    g["displayName"].as_str().unwrap_or_default().to_string(),
                    members,
                )
            })
            .collect();
        Ok(Team { accounts, groups })
    }

    // ---- the ideal ------------------------------------------------------------

    /// What Entra's rules make of the directory as it is now (`team` answers which
    /// disabled users still have an account: they stay in their groups).
    fn ideal(&self, team: &Team) -> Ideal {
        let mut out = Ideal {
            unnamed: self.unnamed.is_some(),
            ..Ideal::default()
        };
        let users: HashMap<String, Value> = self
            .users()
            .into_iter()
            .filter_map(|u| Some((u["id"].as_str()?.to_string(), u)))
            .collect();
        for id in self.broken.keys() {
            out.unknown.insert(id.clone());
        }
        let groups: HashMap<String, Value> = self.doc["groups"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|g| Some((g["id"].as_str()?.to_string(), g.clone())))
            .collect();
        let direct = |g: &Value| -> Vec<String> {
            g["members"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|m| m.as_str().map(str::to_string))
                .collect()
        };
        // Members as a cycle sees them: direct (file), or flattened through nested
        // groups (Graph with nested_groups = "flatten").
        let effective = |gid: &str| -> BTreeSet<String> {
            let mut out = BTreeSet::new();
            let mut seen = HashSet::from([gid.to_string()]);
            let mut stack = vec![gid.to_string()];
            while let Some(g) = stack.pop() {
                for m in groups.get(&g).map(direct).unwrap_or_default() {
                    if groups.contains_key(&m) {
                        if self.graph.is_some() && seen.insert(m.clone()) {
                            stack.push(m);
                        }
                    } else if users.contains_key(&m) {
                        out.insert(m);
                    }
                }
            }
            out
        };
        let assigned: HashSet<String> = self.doc["assignments"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|a| a["principalId"].as_str().map(str::to_string))
            .collect();
        let assigned_groups: Vec<&String> =
            groups.keys().filter(|g| assigned.contains(*g)).collect();
        let mut via_group: HashSet<String> = HashSet::new();
        for g in &assigned_groups {
            via_group.extend(effective(g));
        }
        let in_scope = |id: &str, u: &Value| {
            (assigned.contains(id) || via_group.contains(id))
                && u["department"] != "Excluded"
                && u.get("deletedDateTime").is_none()
        };
        for (id, u) in &users {
            if out.unknown.contains(id) {
                continue;
            }
            let active = in_scope(id, u) && u["accountEnabled"] != false;
            out.users.insert(
                id.clone(),
                Desired {
                    active,
                    user_name: u["userPrincipalName"]
                        .as_str()
                        .unwrap_or_default()
                        .to_lowercase(),
                    family: u["surname"].as_str().unwrap_or_default().to_string(),
                },
            );
        }
        let has_account: HashSet<&str> = team
            .accounts
            .iter()
            .map(|a| a.external_id.as_str())
            .collect();
        for g in assigned_groups {
            let members = effective(g)
                .into_iter()
                .filter(|m| {
                    out.unknown.contains(m)
                        || users.get(m).is_some_and(|u| {
                            in_scope(m, u)
                                && (u["accountEnabled"] != false
                                    || has_account.contains(m.as_str()))
                        })
                })
                .collect();
            let name = groups[g.as_str()]["displayName"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            out.groups.insert(g.clone(), (name, members));
        }
        out
    }

    // ---- cycles and checks ----------------------------------------------------

    fn scimsync(&self, args: &[&str]) -> Result<std::process::Output, String> {
        Command::new(&self.cfg.bin[0])
            .args(&self.cfg.bin[1..])
            .args(["-c", self.dir.join("scimsync.toml").to_str().unwrap_or("")])
            .args(args)
            .env("RUST_LOG", "error")
            .output()
            .map_err(|e| e.to_string())
    }

    fn chaos(&self, base: &str, token: &str, body: Value) -> Result<Value, String> {
        http(
            "POST",
            &format!("{base}/_emulator/chaos"),
            token,
            Some(body),
        )
    }

    /// One cycle with whatever was set for it; checks what must hold after any
    /// cycle.
    fn cycle(&mut self, full: bool) -> Result<i32, String> {
        self.write_directory()?;
        let cut = std::mem::take(&mut self.cut);
        if cut {
            let text = serde_json::to_string_pretty(&self.doc).map_err(|e| e.to_string())?;
            std::fs::write(self.dir.join("directory.json"), &text[..text.len() / 2])
                .map_err(|e| e.to_string())?;
        }
        let before = self.team()?;
        let base = self.dropbox.base.clone();
        http(
            "POST",
            &format!("{base}/_emulator/reset-stats"),
            TOKEN,
            None,
        )?;
        if let (Some((route, fault)), Some(g)) = (self.graph_fault, &self.graph) {
            let b = g.base.clone();
            self.chaos(
                &b,
                GRAPH_SECRET,
                json!({"faults": fault, "seed": 1, "only": route}),
            )?;
        }
        if self.target_faults {
            let seed = self.rng.next();
            self.chaos(
                &base,
                TOKEN,
                json!({"faults": "429=5%:0,500=6%,reset=3%,cut=3%", "seed": seed}),
            )?;
        }
        let args: &[&str] = if full { &["sync", "--full"] } else { &["sync"] };
        let (code, out) = if self.kill {
            let n = 1 + self.rng.below(40);
            self.chaos(&base, TOKEN, json!({"stall_after": n}))?;
            let mut child = Command::new(&self.cfg.bin[0])
                .args(&self.cfg.bin[1..])
                .args(["-c", self.dir.join("scimsync.toml").to_str().unwrap_or("")])
                .args(args)
                .env("RUST_LOG", "error")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .map_err(|e| e.to_string())?;
            // Killed while the Nth target request is in flight: the same place in
            // every run of this seed (requests go one at a time in the simulation).
            let status = loop {
                if let Some(status) = child.try_wait().map_err(|e| e.to_string())? {
                    break status;
                }
                let c = http("GET", &format!("{base}/_emulator/chaos"), TOKEN, None)?;
                if c["stalled"] == true {
                    let _ = child.kill();
                    break child.wait().map_err(|e| e.to_string())?;
                }
                std::thread::sleep(Duration::from_millis(5));
            };
            self.chaos(&base, TOKEN, json!({"release": true}))?;
            self.report.kills += 1;
            (status.code().unwrap_or(-9), String::from("(killed)"))
        } else {
            let o = self.scimsync(args)?;
            (
                o.status.code().unwrap_or(-1),
                format!(
                    "{}{}",
                    String::from_utf8_lossy(&o.stdout),
                    String::from_utf8_lossy(&o.stderr)
                ),
            )
        };
        let mut graph_hit = false;
        if let (Some(_), Some(g)) = (self.graph_fault, &self.graph) {
            let b = g.base.clone();
            let injected = http("GET", &format!("{b}/_emulator/chaos"), GRAPH_SECRET, None)?;
            graph_hit = injected["injected"]
                .as_object()
                .is_some_and(|o| o.values().any(|v| v.as_u64().unwrap_or(0) > 0));
            self.chaos(&b, GRAPH_SECRET, json!({}))?;
        }
        if self.target_faults {
            self.chaos(&base, TOKEN, json!({}))?;
        }
        let stats = http("GET", &format!("{base}/_emulator/stats"), TOKEN, None)?;
        let writes = stats["writes"].as_u64().unwrap_or(0);
        let after = self.team()?;
        let ideal = self.ideal(&after);
        let killed = self.kill;
        let graph_unnamed = self.graph.is_some() && self.unnamed.is_some();
        self.graph_fault = None;
        self.target_faults = false;
        self.kill = false;
        self.report.cycles += 1;
        self.say(&format!(
            "cycle: exit {code}, {writes} writes; {}",
            out.trim().replace('\n', " | ")
        ));

        no_duplicates(&after)?;
        let read_fails = !killed && (graph_hit || graph_unnamed || cut);
        if read_fails {
            self.report.failed_reads += 1;
            // A directory file is the admin's to fix (2); a failed service read is a
            // runtime failure (1).
            let want = if cut { 2 } else { 1 };
            if code != want || writes != 0 {
                return Err(format!(
                    "a read that failed must stop the cycle with exit {want} and no write; got exit {code}, {writes} writes: {out}"
                ));
            }
            self.write_directory()?;
            return Ok(code);
        }
        if !killed && ![0, 3, 4].contains(&code) {
            return Err(format!("unexpected exit {code}: {out}"));
        }
        let held = code == 4 && out.contains("held");
        if held {
            self.report.holds += 1;
        }
        removals_are_deserved(&before, &after, &ideal, held)?;
        if held {
            // An admin looks at the hold and confirms it.
            self.scimsync(&["allow-deletes"])?;
        }
        Ok(code)
    }

    /// The directory stops changing: records are fixed, faults stop; within three
    /// cycles the team must equal the ideal, or what differs must be escrowed.
    fn settle(&mut self) -> Result<(), String> {
        self.fix_records();
        self.graph_fault = None;
        self.target_faults = false;
        self.kill = false;
        self.cut = false;
        self.report.settles += 1;
        let mut full = std::mem::take(&mut self.hand_edited) || !self.edited.is_empty();
        if full {
            // The full cycle repairs the edits of accounts live now.
            let live: HashSet<String> = self
                .team()?
                .accounts
                .into_iter()
                .filter(|a| a.live())
                .map(|a| a.id)
                .collect();
            self.edited.retain(|id| !live.contains(id));
        }
        let mut counted = 0;
        let mut extra = 0;
        loop {
            let code = self.cycle(full)?;
            full = false;
            if code == 4 && extra < 2 {
                // Held, and released by the admin: that cycle does not count.
                extra += 1;
                continue;
            }
            counted += 1;
            let team = self.team()?;
            let diff = differences(&team, &self.ideal(&team), self.grace());
            if diff.is_empty() {
                self.report.worst_settle = self.report.worst_settle.max(counted);
                return Ok(());
            }
            if counted < 3 {
                continue;
            }
            let status = self.scimsync(&["status", "--json"])?;
            let status: Value = serde_json::from_slice(&status.stdout).unwrap_or(Value::Null);
            let escrowed: HashSet<String> = status["escrows"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|e| e["source_id"].as_str().map(str::to_string))
                .collect();
            let unexplained: Vec<&(String, String)> = diff
                .iter()
                .filter(|(id, _)| !escrowed.contains(id))
                .collect();
            if unexplained.is_empty() {
                self.report.explained += 1;
                self.report.worst_settle = self.report.worst_settle.max(counted);
                return Ok(());
            }
            return Err(format!(
                "not converged after 3 cycles of a still directory: {unexplained:?}"
            ));
        }
    }

    fn go(&mut self) -> Result<(), String> {
        let code = self.cycle(false)?;
        if code != 0 {
            return Err(format!("the first cycle exited {code}"));
        }
        let mut since_settle = 0;
        for _ in 0..self.cfg.ops {
            let op = self.step()?;
            if op == "none" {
                continue;
            }
            self.say(op);
            *self.report.ops.entry(op).or_insert(0) += 1;
            since_settle += 1;
            if self.rng.chance(40) || self.kill {
                self.cycle(false)?;
            }
            if since_settle >= 50 {
                self.settle()?;
                since_settle = 0;
            }
        }
        self.settle()
    }
}

/// No account twice: one per directory id, one per userName; one group per id.
fn no_duplicates(team: &Team) -> Result<(), String> {
    let mut ext = HashSet::new();
    let mut names = HashSet::new();
    for a in &team.accounts {
        if !ext.insert(a.external_id.clone()) {
            return Err(format!("two accounts for directory id {}", a.external_id));
        }
        if !names.insert(a.user_name.clone()) {
            return Err(format!("two accounts named {}", a.user_name));
        }
    }
    let mut groups = HashSet::new();
    for (id, name, _) in &team.groups {
        if !groups.insert(id.clone()) {
            return Err(format!("two groups for directory id {id} ({name})"));
        }
    }
    Ok(())
}

/// Every account that stopped being live in a cycle had to: its directory record
/// says so (or is gone) — never an unreadable record, never while held.
fn removals_are_deserved(
    before: &Team,
    after: &Team,
    ideal: &Ideal,
    held: bool,
) -> Result<(), String> {
    let now: HashMap<&str, &Account> = after.accounts.iter().map(|a| (a.id.as_str(), a)).collect();
    for a in before.accounts.iter().filter(|a| a.live()) {
        let gone = match now.get(a.id.as_str()) {
            None => "removed",
            Some(b) if !b.live() => "suspended",
            Some(_) => continue,
        };
        let who = format!("{} ({})", a.user_name, a.external_id);
        if held {
            return Err(format!(
                "{who} was {gone} in a cycle held by the safeguards"
            ));
        }
        if ideal.unknown.contains(&a.external_id) {
            return Err(format!(
                "{who} was {gone} although only its record was unreadable"
            ));
        }
        match ideal.users.get(&a.external_id) {
            Some(d) if d.active => {
                return Err(format!(
                    "{who} was {gone} although the directory wants it active"
                ))
            }
            None if ideal.unnamed && gone == "removed" => {
                return Err(format!(
                    "{who} was removed while a user record without id could be its record"
                ))
            }
            _ => {}
        }
    }
    Ok(())
}

/// A group's members and the ideal's, without what the grace period explains:
/// leavers still in the group, and new users waiting for a leaver's name.
fn grace_members(
    have: &BTreeSet<String>,
    want: &BTreeSet<String>,
    by_ext: &HashMap<&str, &Account>,
    waiting: &dyn Fn(&Account) -> bool,
    blocked: &BTreeSet<String>,
) -> (BTreeSet<String>, BTreeSet<String>) {
    let have = have
        .iter()
        .filter(|m| want.contains(*m) || !by_ext.get(m.as_str()).is_some_and(|a| waiting(a)))
        .cloned()
        .collect();
    let want = want
        .iter()
        .filter(|m| !blocked.contains(*m))
        .cloned()
        .collect();
    (have, want)
}

/// How the team differs from the ideal, by directory id. With the grace period,
/// a leaver stays suspended in their groups, and a new user who takes a waiting
/// leaver's userName waits for the removal (neither is a difference).
fn differences(team: &Team, ideal: &Ideal, grace: bool) -> Vec<(String, String)> {
    let mut out = vec![];
    let by_ext: HashMap<&str, &Account> = team
        .accounts
        .iter()
        .map(|a| (a.external_id.as_str(), a))
        .collect();
    // Suspended accounts whose directory user is gone or inactive: leavers.
    let waiting = |a: &Account| {
        grace && !a.live() && !ideal.users.get(&a.external_id).is_some_and(|d| d.active)
    };
    let name_waits = |name: &str| {
        team.accounts
            .iter()
            .any(|a| waiting(a) && a.user_name.eq_ignore_ascii_case(name))
    };
    let mut blocked = BTreeSet::new();
    for (id, d) in &ideal.users {
        let a = by_ext.get(id.as_str());
        match (d.active, a) {
            (true, None) if name_waits(&d.user_name) => {
                blocked.insert(id.clone());
            }
            (true, None) => out.push((id.clone(), "missing".into())),
            (true, Some(a)) if !a.live() => out.push((id.clone(), "suspended".into())),
            (true, Some(a)) if a.user_name != d.user_name => out.push((
                id.clone(),
                format!("userName {} ≠ {}", a.user_name, d.user_name),
            )),
            (true, Some(a)) if a.family != json!(d.family) => out.push((
                id.clone(),
                format!("familyName {} ≠ {}", a.family, d.family),
            )),
            (false, Some(a)) if a.live() => out.push((id.clone(), "live, should not be".into())),
            _ => {}
        }
    }
    for a in &team.accounts {
        if a.live() && !ideal.users.contains_key(&a.external_id) {
            out.push((a.external_id.clone(), "live, not in the directory".into()));
        }
    }
    let have: HashMap<&str, (&String, &BTreeSet<String>)> = team
        .groups
        .iter()
        .map(|(id, name, m)| (id.as_str(), (name, m)))
        .collect();
    for (id, (name, members)) in &ideal.groups {
        match have.get(id.as_str()) {
            None => out.push((id.clone(), format!("group {name} missing"))),
            Some((n, _)) if *n != name => {
                out.push((id.clone(), format!("group named {n}, not {name}")))
            }
            Some((_, m))
                if {
                    let (have, want) = grace_members(m, members, &by_ext, &waiting, &blocked);
                    have != want
                } =>
            {
                out.push((
                    id.clone(),
                    format!("group {name} has {m:?}, not {members:?}"),
                ))
            }
            _ => {}
        }
    }
    for (id, name, _) in &team.groups {
        if !ideal.groups.contains_key(id) {
            out.push((id.clone(), format!("group {name} should not exist")));
        }
    }
    out
}
