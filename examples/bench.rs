//! Benchmark: scimsync against the Dropbox emulator on loopback, beside the ceiling.
//!
//! `cargo run --release --example bench -- --users 10000 --groups 500 --members 20`
//!
//! Each run generates a directory of N users and G groups, starts the emulator in a
//! child process (so this process's peak RSS is scimsync's own), and measures:
//! * the initial cycle, a cycle with no change and one with `--changed` users
//!   changed: wall time, target requests by kind, requests per object;
//! * the **ceiling**: the initial cycle's requests, recorded by the emulator, replayed
//!   against a fresh emulator by a bare keep-alive client with the same number of
//!   requests in flight, doing nothing else. The ratio is ceiling time / scimsync time
//!   (1.0 = scimsync is as fast as the target allows);
//! * peak RSS over the three cycles (`VmHWM`, reset before the first);
//! * the core cost per object: an initial cycle into an in-memory target that
//!   answers at once (scope + map + plan + state writes, no network).
//!
//! `--runs 5` repeats everything and prints the median of each figure.
//! `--latency-ms 50` makes the emulator add 50 ms to every response;
//! `--max-in-flight N` sets `[target] max_in_flight`; `--graph` reads the directory
//! through the Graph emulator (also a child process) instead of the file.
//! `--write-directory PATH` only writes the directory file of `--users`,
//! `--groups` and `--members` (to measure `scimsync plan` on it, say).

use scimsync::config::Settings;
use scimsync::cycle::{self, Runtime};
use scimsync::model::ObjectKind;
use scimsync::scim::attribute::Attrs;
use scimsync::scim::profile;
use scimsync::targets::{Change, Remote, Target, TargetError};
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead, BufWriter, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

type Res<T> = Result<T, Box<dyn std::error::Error>>;

const TOKEN: &str = "bench-token";

fn arg(name: &str, default: usize) -> usize {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn flag(name: &str) -> bool {
    std::env::args().any(|a| a == name)
}

/// Writes the directory file without holding it in memory; users below `changed`
/// get another surname.
fn write_directory(
    path: &Path,
    users: usize,
    groups: usize,
    members: usize,
    changed: usize,
) -> Res<()> {
    let mut w = BufWriter::new(std::fs::File::create(path)?);
    write!(w, "{{\"users\": [")?;
    for i in 0..users {
        let surname = if i < changed {
            "Changed".to_string()
        } else {
            format!("Family{i}")
        };
        let u = json!({"id": format!("user-{i:08}"), "userPrincipalName": format!("user{i}@bench.example.com"),
                       "mail": format!("user{i}@bench.example.com"), "givenName": format!("Given{i}"),
                       "surname": surname, "accountEnabled": true, "department": format!("D{}", i % 17)});
        write!(w, "{}{u}", if i > 0 { "," } else { "" })?;
    }
    write!(w, "], \"groups\": [")?;
    for g in 0..groups {
        let m: Vec<String> = (0..members)
            .map(|k| format!("user-{:08}", (g * members + k) % users.max(1)))
            .collect();
        let x = json!({"id": format!("group-{g:06}"), "displayName": format!("Group {g}"), "members": m});
        write!(w, "{}{x}", if g > 0 { "," } else { "" })?;
    }
    write!(w, "], \"assignments\": [")?;
    for i in 0..users {
        let a = json!({"principalId": format!("user-{i:08}"), "principalType": "User", "appRole": "User"});
        write!(w, "{}{a}", if i > 0 { "," } else { "" })?;
    }
    for g in 0..groups {
        let a = json!({"principalId": format!("group-{g:06}"), "principalType": "Group", "appRole": "User"});
        write!(w, ",{a}")?;
    }
    write!(w, "]}}")?;
    w.flush()?;
    Ok(())
}

/// Child mode: serve an emulator until stdin closes; the first line out is its URL.
fn serve_child(kind: &str, directory: Option<&str>) -> Res<()> {
    use scimsync::emulator;
    let stop = || {
        let mut line = String::new();
        while std::io::stdin()
            .lock()
            .read_line(&mut line)
            .map(|n| n > 0)
            .unwrap_or(false)
        {
            line.clear();
        }
    };
    if kind == "graph" {
        let tenant = emulator::graph::Tenant {
            tenant: "contoso.onmicrosoft.com".into(),
            client_id: "bench".into(),
            client_secret: "bench-secret".into(),
            app: "11111111-2222-3333-4444-555555555555".into(),
            token_lifetime: 3599,
            certificate: None,
            federated_token: None,
        };
        let mut graph =
            emulator::graph::Graph::new(directory.unwrap_or("directory.json").into(), tenant)?;
        graph.set_page_size(999);
        let (running, shared) = emulator::serve("127.0.0.1:0", graph, 4)?;
        if let Ok(mut g) = shared.lock() {
            g.set_base(&running.base());
        }
        println!("{}", running.base());
        stop();
        running.stop();
    } else {
        let (running, _) = emulator::serve("127.0.0.1:0", emulator::dropbox::Team::new(TOKEN), 16)?;
        println!("{}", running.base());
        stop();
        running.stop();
    }
    Ok(())
}

/// An emulator in a child process; dropped, it ends.
struct Emulator {
    child: Child,
    base: String,
    agent: ureq::Agent,
}

impl Emulator {
    fn start(kind: &str, directory: Option<&Path>) -> Res<Emulator> {
        let mut cmd = Command::new(std::env::current_exe()?);
        cmd.args(["--serve", kind]);
        if let Some(d) = directory {
            cmd.arg("--directory").arg(d);
        }
        let mut child = cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).spawn()?;
        let mut line = String::new();
        if let Some(out) = child.stdout.take() {
            std::io::BufReader::new(out).read_line(&mut line)?;
        }
        let base = line.trim().to_string();
        if base.is_empty() {
            return Err("the emulator child did not start".into());
        }
        Ok(Emulator {
            child,
            base,
            agent: scimsync::http::agent(Duration::from_secs(60)),
        })
    }

    fn cpu(&self) -> f64 {
        cpu_secs(&self.child.id().to_string())
    }

    fn admin(&self, method: &str, path: &str, body: Value) -> Res<Value> {
        let url = format!("{}/_emulator/{path}", self.base);
        let body = (method != "GET").then(|| body.to_string());
        let text = send(
            &self.agent,
            method,
            &url,
            body.as_deref(),
            "application/json",
        )?;
        Ok(if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text)?
        })
    }
}

impl Drop for Emulator {
    fn drop(&mut self) {
        drop(self.child.stdin.take());
        let _ = self.child.wait();
    }
}

/// Peak resident set of this process since the last reset, in MiB.
fn peak_rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines().find(|l| l.starts_with("VmHWM:")).and_then(|l| {
                l.split_whitespace()
                    .nth(1)
                    .and_then(|k| k.parse::<f64>().ok())
            })
        })
        .map(|kib| kib / 1024.0)
        .unwrap_or(f64::NAN)
}

/// CPU seconds (user + system) a process has used so far, from `/proc/<pid>/stat`.
fn cpu_secs(pid: &str) -> f64 {
    let ticks = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            // Fields after the command name, which may hold spaces: utime and stime are
            // the 12th and 13th of them.
            let rest = s.rsplit_once(')')?.1;
            let f: Vec<&str> = rest.split_whitespace().collect();
            Some(f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?)
        })
        .unwrap_or(f64::NAN);
    ticks / 100.0
}

fn reset_peak_rss() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

/// One request with the bench's token; the answer's body whatever its status.
fn send(
    agent: &ureq::Agent,
    method: &str,
    url: &str,
    body: Option<&str>,
    content_type: &str,
) -> Res<String> {
    let request = ureq::http::Request::builder()
        .method(method)
        .uri(url)
        .header("Authorization", format!("Bearer {TOKEN}"));
    let mut resp = match body {
        Some(b) => agent.run(request.header("Content-Type", content_type).body(b)?)?,
        None => agent.run(request.body(())?)?,
    };
    // The emulator's request log is large: no cap on what the bench reads.
    Ok(resp
        .body_mut()
        .with_config()
        .limit(u64::MAX)
        .read_to_string()?)
}

/// Replays recorded requests with a bare keep-alive client: consecutive requests of
/// one kind go out `in_flight` at a time; ids the first run got are mapped to the ids
/// the replay gets. Returns the wall time.
fn replay(base: &str, log: &[Value], in_flight: usize) -> Res<Duration> {
    // The product's own client settings: the ceiling is what this client can do.
    let agent = scimsync::http::agent(Duration::from_secs(60));
    let id_pattern = regex::Regex::new(r"(dbmid:|g:)[0-9a-f]{10}[0-9]{6}")?;
    let mut ids: HashMap<String, String> = HashMap::new();
    let kind = |e: &Value| {
        let path = e["path"].as_str().unwrap_or("");
        let collection = path.split(['/', '?']).nth(3).unwrap_or("").to_string();
        (e["method"].as_str().unwrap_or("").to_string(), collection)
    };
    let t = Instant::now();
    let mut i = 0;
    while i < log.len() {
        let k = kind(&log[i]);
        let mut j = i;
        while j < log.len() && kind(&log[j]) == k {
            j += 1;
        }
        let segment: Vec<(String, String, String, Option<String>)> = log[i..j]
            .iter()
            .map(|e| {
                let map = |s: &str| {
                    id_pattern
                        .replace_all(s, |c: &regex::Captures| {
                            ids.get(&c[0]).cloned().unwrap_or_else(|| c[0].to_string())
                        })
                        .into_owned()
                };
                (
                    e["method"].as_str().unwrap_or("GET").to_string(),
                    map(e["path"].as_str().unwrap_or("")),
                    map(e["body"].as_str().unwrap_or("")),
                    e["created"].as_str().map(str::to_string),
                )
            })
            .collect();
        let next = std::sync::atomic::AtomicUsize::new(0);
        let created = std::sync::Mutex::new(vec![]);
        std::thread::scope(|s| {
            for _ in 0..in_flight.min(segment.len()).max(1) {
                s.spawn(|| loop {
                    let n = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    let Some((method, path, body, orig)) = segment.get(n) else {
                        break;
                    };
                    let body = (!body.is_empty()).then_some(body.as_str());
                    let url = format!("{base}{path}");
                    let text = send(&agent, method, &url, body, "application/scim+json")
                        .unwrap_or_default();
                    if let Some(orig) = orig {
                        let new = serde_json::from_str::<Value>(&text)
                            .ok()
                            .and_then(|v| v["id"].as_str().map(str::to_string));
                        if let (Some(new), Ok(mut c)) = (new, created.lock()) {
                            c.push((orig.clone(), new));
                        }
                    }
                });
            }
        });
        ids.extend(created.into_inner().unwrap_or_default());
        i = j;
    }
    Ok(t.elapsed())
}

/// A target that answers at once from memory: what is left is scimsync's own cost.
#[derive(Default)]
struct Instant0 {
    next: u64,
}

impl Target for Instant0 {
    fn profile(&self) -> &profile::Profile {
        &profile::DROPBOX
    }
    fn test_connection(&mut self) -> Result<(), TargetError> {
        Ok(())
    }
    fn find(&mut self, _: ObjectKind, _: &str, _: &str) -> Result<Vec<Remote>, TargetError> {
        Ok(vec![])
    }
    fn get(&mut self, _: ObjectKind, _: &str) -> Result<Option<Remote>, TargetError> {
        Ok(None)
    }
    fn create(&mut self, _: ObjectKind, _: &Attrs) -> Result<String, TargetError> {
        self.next += 1;
        Ok(format!("id-{}", self.next))
    }
    fn modify(&mut self, _: ObjectKind, _: &str, _: &[Change]) -> Result<(), TargetError> {
        Ok(())
    }
    fn delete(&mut self, _: ObjectKind, _: &str) -> Result<(), TargetError> {
        Ok(())
    }
    fn add_members(&mut self, _: &str, _: &[String]) -> Result<(), TargetError> {
        Ok(())
    }
    fn remove_members(&mut self, _: &str, _: &[String]) -> Result<(), TargetError> {
        Ok(())
    }
    fn request_counts(&self) -> BTreeMap<String, u64> {
        BTreeMap::new()
    }
    fn list(&mut self, _: ObjectKind) -> Result<Vec<Remote>, TargetError> {
        Ok(vec![])
    }
}

/// Requests the source made so far (Graph; 0 for the file).
fn graph_requests(rt: &Runtime) -> u64 {
    rt.source.request_counts().values().sum()
}

/// The state file's size after a checkpoint, and the size of a vacuumed copy
/// without the provisioning log and cycle history (what the state keeps per object).
fn state_size(path: &Path) -> Res<(u64, u64)> {
    let conn = rusqlite::Connection::open(path)?;
    conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))?;
    drop(conn);
    let full = std::fs::metadata(path)?.len();
    let copy = path.with_extension("copy.db");
    let _ = std::fs::remove_file(&copy);
    let conn = rusqlite::Connection::open(path)?;
    conn.execute("VACUUM INTO ?1", [copy.to_string_lossy()])?;
    drop(conn);
    let conn = rusqlite::Connection::open(&copy)?;
    conn.execute_batch("DELETE FROM log; DELETE FROM cycles; VACUUM;")?;
    drop(conn);
    let bare = std::fs::metadata(&copy)?.len();
    let _ = std::fs::remove_file(&copy);
    Ok((full, bare))
}

struct Figures {
    initial: f64,
    initial_requests: u64,
    ceiling: f64,
    none: f64,
    none_requests: u64,
    some: f64,
    some_requests: u64,
    rss: f64,
    core_us: f64,
    state_per_object: f64,
    graph_initial: u64,
}

fn write_config(dir: &Path, source: &str, target_url: &str, in_flight: usize) -> Res<()> {
    // Private: it holds the emulator's token.
    scimsync::private::write(
        &dir.join("scimsync.toml"),
        format!(
            "state = \"state.db\"\n{source}[target]\ntype = \"dropbox\"\nurl = \"{target_url}\"\ntoken = \"{TOKEN}\"\nmax_in_flight = {in_flight}\n[safety]\ndeletion_threshold = 1000000\nshrink_threshold_percent = 0\n"
        )
        .as_bytes(),
    )?;
    Ok(())
}

fn print_cycle(name: &str, r: &cycle::CycleReport, objects: usize) -> u64 {
    let total: u64 = r.requests.values().sum();
    let secs = r.duration.as_secs_f64();
    println!(
        "  {name:<26} {secs:>8.3} s {total:>7} requests ({:.2}/object) {:>8.0} objects/s {:?}",
        total as f64 / objects.max(1) as f64,
        objects as f64 / secs.max(1e-9),
        r.requests
    );
    total
}

fn one_run(run: usize, dir: &Path) -> Res<Figures> {
    let users = arg("--users", 10_000);
    let groups = arg("--groups", 500);
    let members = arg("--members", 20);
    let changed = arg("--changed", 100);
    let latency = arg("--latency-ms", 0);
    let in_flight = arg("--max-in-flight", scimsync::config::MAX_IN_FLIGHT);
    let graph_mode = flag("--graph");
    let objects = users + groups;
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(dir.join("scripts"))?;
    std::fs::write(
        dir.join("scripts/mapping.rhai"),
        scimsync::script::defaults::MAPPING,
    )?;
    std::fs::write(
        dir.join("scripts/scoping.rhai"),
        scimsync::script::defaults::SCOPING,
    )?;
    let directory = dir.join("directory.json");
    write_directory(&directory, users, groups, members, 0)?;

    if flag("--core-only") {
        return core_only(dir, objects);
    }
    let dropbox = Emulator::start("dropbox", None)?;
    dropbox.admin("POST", "config", json!({"latency_ms": latency}))?;
    let graph = if graph_mode {
        Some(Emulator::start("graph", Some(&directory))?)
    } else {
        None
    };
    let source = match &graph {
        Some(g) => format!(
            "[source]\ntype = \"graph\"\ntenant = \"contoso.onmicrosoft.com\"\nclient_id = \"bench\"\nclient_secret = \"bench-secret\"\napp = \"11111111-2222-3333-4444-555555555555\"\ngraph_url = \"{b}\"\nlogin_url = \"{b}\"\n",
            b = g.base
        ),
        None => "[source]\ntype = \"file\"\npath = \"directory.json\"\n".to_string(),
    };
    write_config(
        dir,
        &source,
        &format!("{}/scim/v2", dropbox.base),
        in_flight,
    )?;
    println!("run {run}: {users} users, {groups} groups x {members} members, latency {latency} ms, max_in_flight {in_flight}");

    dropbox.admin("POST", "record", json!({"on": true}))?;
    reset_peak_rss();
    let mut rt = Runtime::open(
        Settings::load(&dir.join("scimsync.toml"))?,
        std::time::Duration::ZERO,
    )?;
    let cpu_before = (cpu_secs("self"), dropbox.cpu());
    let initial = cycle::sync(&mut rt, false)?;
    let initial_requests = print_cycle("initial", &initial, objects);
    println!(
        "  initial CPU: scimsync {:.2} s, emulator {:.2} s",
        cpu_secs("self") - cpu_before.0,
        dropbox.cpu() - cpu_before.1
    );
    let graph_initial = graph_requests(&rt);
    if initial.outcome.failures > 0 {
        return Err(format!(
            "initial cycle had {} failures: {:?}",
            initial.outcome.failures, initial.outcome.first_error
        )
        .into());
    }
    // Stop recording (the log stays in the emulator; fetched after RSS is read).
    dropbox.admin("POST", "record", json!({"on": false}))?;
    let none = cycle::sync(&mut rt, false)?;
    let none_requests = print_cycle("incremental, no change", &none, objects);
    let graph_none = graph_requests(&rt) - graph_initial;
    write_directory(&directory, users, groups, members, changed)?;
    let some = cycle::sync(&mut rt, false)?;
    let some_requests = print_cycle(&format!("incremental, {changed} changed"), &some, objects);
    let rss = peak_rss_mib();
    let recorded = dropbox.admin("GET", "recorded", Value::Null)?;
    if graph.is_some() {
        println!("  Graph requests: initial read {graph_initial}, no-change read {graph_none}; all cycles {:?}", rt.source.request_counts());
    }
    drop(rt);
    let (state_bytes, state_bytes_no_log) = state_size(&dir.join("state.db"))?;
    println!(
        "  state file                 {:.1} MiB = {:.0} bytes/object ({:.0} bytes/object without the log and cycle history)",
        state_bytes as f64 / 1_048_576.0,
        state_bytes as f64 / objects as f64,
        state_bytes_no_log as f64 / objects as f64
    );
    drop(dropbox);

    // The ceiling: the same requests, nothing else, against a fresh emulator.
    let fresh = Emulator::start("dropbox", None)?;
    fresh.admin("POST", "config", json!({"latency_ms": latency}))?;
    let log = recorded.as_array().cloned().unwrap_or_default();
    let cpu_before = (cpu_secs("self"), fresh.cpu());
    let ceiling = replay(&fresh.base, &log, in_flight)?;
    println!(
        "  ceiling CPU: client {:.2} s, emulator {:.2} s",
        cpu_secs("self") - cpu_before.0,
        fresh.cpu() - cpu_before.1
    );
    drop(fresh);
    println!(
        "  ceiling (bare client)      {:>8.3} s {:>7} requests; scimsync reaches {:.2} of it",
        ceiling.as_secs_f64(),
        log.len(),
        ceiling.as_secs_f64() / initial.duration.as_secs_f64()
    );

    let core_us = core_cost(dir, objects)?;
    println!("  peak RSS (three cycles)    {rss:.1} MiB");
    Ok(Figures {
        initial: initial.duration.as_secs_f64(),
        initial_requests,
        ceiling: ceiling.as_secs_f64(),
        none: none.duration.as_secs_f64(),
        none_requests,
        some: some.duration.as_secs_f64(),
        some_requests,
        rss,
        core_us,
        state_per_object: state_bytes_no_log as f64 / objects as f64,
        graph_initial,
    })
}

fn core_only(dir: &Path, objects: usize) -> Res<Figures> {
    let core_us = core_cost(dir, objects)?;
    Ok(Figures {
        initial: 0.0,
        initial_requests: 0,
        ceiling: 0.0,
        none: 0.0,
        none_requests: 0,
        some: 0.0,
        some_requests: 0,
        rss: peak_rss_mib(),
        core_us,
        state_per_object: 0.0,
        graph_initial: 0,
    })
}

/// Core cost: the initial cycle into a target that answers at once, per object.
fn core_cost(dir: &Path, objects: usize) -> Res<f64> {
    write_config(
        dir,
        "[source]\ntype = \"file\"\npath = \"directory.json\"\n",
        "http://127.0.0.1:9/scim/v2",
        1,
    )?;
    let _ = std::fs::remove_file(dir.join("state.db"));
    let mut rt = Runtime::open(
        Settings::load(&dir.join("scimsync.toml"))?,
        std::time::Duration::ZERO,
    )?;
    rt.target = Box::new(Instant0::default());
    let core = cycle::sync(&mut rt, false)?;
    let core_us = core.duration.as_secs_f64() * 1e6 / objects.max(1) as f64;
    println!(
        "  core cost (no network)     {:>8.3} s = {core_us:.1} µs/object",
        core.duration.as_secs_f64()
    );
    Ok(core_us)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
}

fn main() -> Res<()> {
    // As the scimsync binary does first.
    scimsync::alloc::return_freed_memory_soon();
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--serve") {
        let dir = args
            .iter()
            .position(|a| a == "--directory")
            .and_then(|j| args.get(j + 1));
        return serve_child(
            args.get(i + 1).map(String::as_str).unwrap_or("dropbox"),
            dir.map(String::as_str),
        );
    }
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn")).init();
    if let Some(path) = args
        .iter()
        .position(|a| a == "--write-directory")
        .and_then(|i| args.get(i + 1))
    {
        let (users, groups) = (arg("--users", 10_000), arg("--groups", 500));
        return write_directory(Path::new(path), users, groups, arg("--members", 20), 0);
    }
    let runs = arg("--runs", 1).max(1);
    let dir = std::env::temp_dir().join(format!("scimsync-bench-{}", std::process::id()));
    let mut all = vec![];
    for run in 1..=runs {
        all.push(one_run(run, &dir)?);
    }
    let _ = std::fs::remove_dir_all(&dir);
    let m = |f: &dyn Fn(&Figures) -> f64| median(all.iter().map(f).collect());
    let (users, groups) = (arg("--users", 10_000), arg("--groups", 500));
    println!("median of {runs} run(s):");
    println!(
        "  initial {:.3} s ({:.0} requests, {:.2}/object); ceiling {:.3} s; ratio {:.2}",
        m(&|f| f.initial),
        m(&|f| f.initial_requests as f64),
        m(&|f| f.initial_requests as f64) / (users + groups).max(1) as f64,
        m(&|f| f.ceiling),
        m(&|f| f.ceiling / f.initial)
    );
    println!(
        "  no change {:.3} s ({:.0} requests)",
        m(&|f| f.none),
        m(&|f| f.none_requests as f64)
    );
    println!(
        "  {} changed {:.3} s ({:.0} requests)",
        arg("--changed", 100),
        m(&|f| f.some),
        m(&|f| f.some_requests as f64)
    );
    println!(
        "  state {:.0} bytes/object without the log; Graph initial read {:.0} requests",
        m(&|f| f.state_per_object),
        m(&|f| f.graph_initial as f64)
    );
    // Freed memory stays with the process between runs: only the first run's peak
    // is scimsync's own.
    println!(
        "  peak RSS {:.1} MiB (first run); core cost {:.1} µs/object",
        all.first().map(|f| f.rss).unwrap_or(f64::NAN),
        m(&|f| f.core_us)
    );
    Ok(())
}
