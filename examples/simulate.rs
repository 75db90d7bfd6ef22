//! The seeded simulation (`tests/sim`), as long as you like.
//!
//! `cargo run --release --example simulate -- --seeds 100 --ops 2000` runs seeds
//! 1..=100 through the file source and through Graph, 2,000 operations each;
//! `--seed N [--graph] [--verbose]` replays one seed (a failing one prints this line).
//!
//! This program is its own scimsync: it runs itself as `simulate --as-scimsync …`
//! for every cycle and emulator, so nothing else needs building first.

#[path = "../tests/sim/mod.rs"]
mod sim;

use clap::Parser;

fn arg(name: &str) -> Option<u64> {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
}

fn flag(name: &str) -> bool {
    std::env::args().any(|a| a == name)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("--as-scimsync") {
        let cli = scimsync::cli::Cli::parse_from(
            std::iter::once("scimsync".to_string()).chain(args[2..].iter().cloned()),
        );
        let code = match scimsync::cli::run(cli) {
            Ok(c) => c,
            Err(e) => {
                eprintln!("scimsync: {e}");
                e.exit_code()
            }
        };
        std::process::exit(code);
    }
    let exe = std::env::current_exe()
        .map(|p| p.display().to_string())
        .unwrap_or_default();
    let bin = vec![exe, "--as-scimsync".to_string()];
    let ops = arg("--ops").unwrap_or(1000) as usize;
    let verbose = flag("--verbose");
    let runs: Vec<(u64, bool)> = match arg("--seed") {
        Some(seed) => vec![(seed, flag("--graph"))],
        None => (1..=arg("--seeds").unwrap_or(20))
            .flat_map(|s| [(s, false), (s, true)])
            .collect(),
    };
    let started = std::time::Instant::now();
    let (mut total_ops, mut cycles, mut failures) = (0, 0, 0);
    for (seed, graph) in runs {
        let cfg = sim::Config {
            seed,
            ops,
            graph,
            bin: bin.clone(),
            verbose,
        };
        match sim::run(cfg) {
            Ok(r) => {
                total_ops += r.total_ops();
                cycles += r.cycles;
                println!(
                    "seed {seed:>4} {:<5} ok: {}",
                    if graph { "graph" } else { "file" },
                    r.line()
                );
            }
            Err(e) => {
                failures += 1;
                println!("{e}");
            }
        }
    }
    println!(
        "{total_ops} operations, {cycles} cycles, {failures} failing run(s) in {:.0?}",
        started.elapsed()
    );
    std::process::exit(if failures > 0 { 1 } else { 0 });
}
