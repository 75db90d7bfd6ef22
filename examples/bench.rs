//! Benchmark: generate a directory of N users and G groups, provision it into the
//! Dropbox emulator on loopback, then run a no-change and a small-change cycle.
//!
//! `cargo run --release --example bench -- --users 10000 --groups 500 --members 20`
//! prints wall time and target requests per cycle. `--graph` reads the directory
//! through the Graph emulator (delta queries) instead of the file source and prints
//! the Graph requests too.

use scimsync::config::Settings;
use scimsync::cycle::{self, Runtime};
use scimsync::emulator::graph::{Graph, Tenant};
use scimsync::emulator::{self, dropbox::Team};
use serde_json::{json, Value};
use std::time::Instant;

fn arg(name: &str, default: usize) -> usize {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn directory(users: usize, groups: usize, members: usize) -> Value {
    let us: Vec<Value> = (0..users)
        .map(|i| {
            json!({"id": format!("user-{i:08}"), "userPrincipalName": format!("user{i}@bench.example.com"),
                   "mail": format!("user{i}@bench.example.com"), "givenName": format!("Given{i}"),
                   "surname": format!("Family{i}"), "accountEnabled": true, "department": format!("D{}", i % 17)})
        })
        .collect();
    let gs: Vec<Value> = (0..groups)
        .map(|g| {
            let m: Vec<String> = (0..members).map(|k| format!("user-{:08}", (g * members + k) % users.max(1))).collect();
            json!({"id": format!("group-{g:06}"), "displayName": format!("Group {g}"), "members": m})
        })
        .collect();
    let mut assignments: Vec<Value> = (0..users)
        .map(|i| json!({"principalId": format!("user-{i:08}"), "principalType": "User", "appRole": "User"}))
        .collect();
    assignments.extend((0..groups).map(|g| json!({"principalId": format!("group-{g:06}"), "principalType": "Group", "appRole": "User"})));
    json!({"users": us, "groups": gs, "assignments": assignments})
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let users = arg("--users", 10_000);
    let groups = arg("--groups", 500);
    let members = arg("--members", 20);
    let changed = arg("--changed", 100);
    let token = "bench-token";
    let (server, _team) = emulator::serve("127.0.0.1:0", Team::new(token), 4)?;
    let dir = std::env::temp_dir().join(format!("scimsync-bench-{}", std::process::id()));
    std::fs::create_dir_all(dir.join("scripts"))?;
    std::fs::write(
        dir.join("scripts/mapping.rhai"),
        scimsync::cli::DEFAULT_MAPPING,
    )?;
    std::fs::write(
        dir.join("scripts/scoping.rhai"),
        scimsync::cli::DEFAULT_SCOPING,
    )?;
    let mut doc = directory(users, groups, members);
    std::fs::write(dir.join("directory.json"), serde_json::to_string(&doc)?)?;
    let graph_mode = std::env::args().any(|a| a == "--graph");
    let mut graph_server = None;
    let source = if graph_mode {
        let tenant = Tenant {
            tenant: "contoso.onmicrosoft.com".into(),
            client_id: "bench".into(),
            client_secret: "bench-secret".into(),
            app: "11111111-2222-3333-4444-555555555555".into(),
            token_lifetime: 3599,
        };
        let mut graph = Graph::new(dir.join("directory.json"), tenant)?;
        graph.set_page_size(999);
        let (running, shared) = emulator::serve("127.0.0.1:0", graph, 2)?;
        if let Ok(mut g) = shared.lock() {
            g.set_base(&running.base());
        }
        let s = format!(
            "[source]\ntype = \"graph\"\ntenant = \"contoso.onmicrosoft.com\"\nclient_id = \"bench\"\nclient_secret = \"bench-secret\"\napp = \"11111111-2222-3333-4444-555555555555\"\ngraph_url = \"{b}\"\nlogin_url = \"{b}\"\n",
            b = running.base()
        );
        graph_server = Some(running);
        s
    } else {
        "[source]\ntype = \"file\"\npath = \"directory.json\"\n".to_string()
    };
    std::fs::write(
        dir.join("scimsync.toml"),
        format!(
            "state = \"state.db\"\n{source}[target]\ntype = \"dropbox\"\nurl = \"{}/scim/v2\"\ntoken = \"{token}\"\n[safety]\ndeletion_threshold = 100000\n",
            server.base()
        ),
    )?;
    let settings = Settings::load(&dir.join("scimsync.toml"))?;
    let mut rt = Runtime::open(settings)?;
    println!(
        "bench: {users} users, {groups} groups x {members} members, Dropbox emulator on loopback"
    );

    let mut graph_before = 0u64;
    let mut report = |name: &str, r: &cycle::CycleReport, objects: usize, graph_now: u64| {
        let graph = graph_now - graph_before;
        graph_before = graph_now;
        let total: u64 = r.requests.values().sum();
        let secs = r.duration.as_secs_f64();
        println!(
            "{name:<28} {:>9.3} s  {:>7} requests ({:.2}/object)  {:>8.0} objects/s  {:?}",
            secs,
            total,
            total as f64 / objects.max(1) as f64,
            objects as f64 / secs.max(1e-9),
            r.requests
        );
        if graph_mode {
            println!("{:<28} Graph requests: {graph}", "");
        }
    };

    let t = Instant::now();
    let initial = cycle::sync(&mut rt, false)?;
    report(
        "initial",
        &initial,
        users + groups,
        rt.source.request_counts().values().sum(),
    );
    assert_eq!(initial.outcome.failures, 0, "initial cycle had failures");

    let none = cycle::sync(&mut rt, false)?;
    report(
        "incremental, no change",
        &none,
        users + groups,
        rt.source.request_counts().values().sum(),
    );

    for u in doc["users"]
        .as_array_mut()
        .into_iter()
        .flatten()
        .take(changed)
    {
        u["surname"] = json!("Changed");
    }
    std::fs::write(dir.join("directory.json"), serde_json::to_string(&doc)?)?;
    let some = cycle::sync(&mut rt, false)?;
    report(
        &format!("incremental, {changed} changed"),
        &some,
        users + groups,
        rt.source.request_counts().values().sum(),
    );
    println!("total wall time {:.2?}", t.elapsed());
    drop(rt);
    server.stop();
    if let Some(g) = graph_server {
        g.stop();
    }
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
