//! Per-object cost of the default mapping + scoping scripts.
//!
//! `cargo run --release --example script_bench -- --records 100000`
//! Generates Graph-shaped user records, calls `user_in_scope` and `map_user` on each,
//! timing every object, and prints the median, p95 and p99 in microseconds.

use scimsync::script::Scripts;
use serde_json::{json, Map, Value};
use std::time::Instant;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let n: usize = args
        .iter()
        .position(|a| a == "--records")
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    let dir = std::env::temp_dir().join(format!("scimsync-script-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    std::fs::write(
        dir.join("mapping.rhai"),
        scimsync::script::defaults::MAPPING,
    )?;
    std::fs::write(
        dir.join("scoping.rhai"),
        scimsync::script::defaults::SCOPING,
    )?;
    let scripts = Scripts::load(&dir)?;
    let records: Vec<Map<String, Value>> = (0..n)
        .map(|i| {
            let v = json!({"id": format!("00000000-0000-4000-8000-{i:012}"), "userPrincipalName": format!("user{i}@contoso.com"),
                "mail": format!("user{i}@contoso.com"), "givenName": format!("Given{i}"), "surname": format!("Family{i}"),
                "displayName": format!("Given{i} Family{i}"), "accountEnabled": i % 50 != 0, "department": format!("Dept{}", i % 20),
                "jobTitle": "Engineer", "employeeId": format!("E{i}"), "appRoles": ["User"]});
            serde_json::from_value(v).unwrap_or_default()
        })
        .collect();
    let mut times: Vec<f64> = Vec::with_capacity(n);
    let total = Instant::now();
    for r in &records {
        let t = Instant::now();
        let in_scope = scripts.user_in_scope(r)?;
        let attrs = scripts.map_user(r)?;
        std::hint::black_box((in_scope, attrs));
        times.push(t.elapsed().as_secs_f64() * 1e6);
    }
    let wall = total.elapsed();
    times.sort_by(|a, b| a.total_cmp(b));
    let pct = |p: f64| times[((times.len() as f64 - 1.0) * p) as usize];
    println!(
        "default mapping + scoping over {n} records: median {:.1} µs, p95 {:.1} µs, p99 {:.1} µs, total {:.2?} ({:.0} objects/s)",
        pct(0.5),
        pct(0.95),
        pct(0.99),
        wall,
        n as f64 / wall.as_secs_f64()
    );
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
