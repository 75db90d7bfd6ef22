//! The seeded simulation (`tests/sim`), bounded for CI: a few seeds of a few
//! hundred operations each, through the file source and through Graph. A failure
//! prints its seed and how to replay it; `examples/simulate.rs` runs it longer.

#[path = "sim/mod.rs"]
mod sim;

fn run(seed: u64, graph: bool) {
    let cfg = sim::Config {
        seed,
        ops: 250,
        graph,
        bin: vec![crate::util::BIN.to_string()],
        verbose: std::env::var_os("SIM_VERBOSE").is_some(),
    };
    match sim::run(cfg) {
        Ok(r) => println!(
            "seed {seed} ({}): {}; {:?}",
            if graph { "graph" } else { "file" },
            r.line(),
            r.ops
        ),
        Err(e) => panic!("{e}"),
    }
}

#[test]
fn simulated_directories_through_the_file_source_converge_and_destroy_nothing() {
    for seed in [1, 2, 3] {
        run(seed, false);
    }
}

#[test]
fn simulated_directories_through_graph_converge_and_destroy_nothing() {
    for seed in [11, 12] {
        run(seed, true);
    }
}
