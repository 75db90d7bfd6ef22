//! The layering ARCHITECTURE.md draws, checked: every top-level module of `src/`
//! imports only modules of a lower layer (no circles, nothing reaching up or
//! sideways). `cargo test --test integration layers -- --nocapture` also prints the
//! module graph.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Bottom first. A module may use modules of lower layers only.
const LAYERS: &[&[&str]] = &[
    // The shared vocabulary.
    &["alloc", "clock", "ids", "model", "scim"],
    &["private", "endpoint"],
    &["http"],
    &["error", "emulator"],
    &["config"],
    // The pipeline's ends: where records come from and go to, scripts, state.
    &["source", "targets", "script", "state", "notify", "takeover"],
    &["evaluate", "snapshot"],
    &["gather"],
    &["plan"],
    &["gate"],
    &["apply", "review", "migrate"],
    &["cycle"],
    &["health"],
    &["monitoring"],
    &["daemon", "report", "authorize"],
    &["demo"],
    &["cli"],
];

fn layer_of(module: &str) -> Option<usize> {
    LAYERS.iter().position(|l| l.contains(&module))
}

/// Top-level module → the top-level modules its code (tests left out) names.
fn graph() -> BTreeMap<String, BTreeSet<String>> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = vec![];
    let mut stack = vec![src.clone()];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "rs") {
                files.push(p);
            }
        }
    }
    let module_of = |p: &Path| -> String {
        let rel = p.strip_prefix(&src).unwrap();
        let first = rel
            .components()
            .next()
            .unwrap()
            .as_os_str()
            .to_string_lossy();
        first.trim_end_matches(".rs").to_string()
    };
    let modules: BTreeSet<String> = files.iter().map(|p| module_of(p)).collect();
    let mut g: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for p in &files {
        let from = module_of(p);
        if from == "lib" || from == "main" {
            continue;
        }
        let text = std::fs::read_to_string(p).unwrap();
        let code = text.split("#[cfg(test)]").next().unwrap_or("");
        for (i, _) in code.match_indices("crate::") {
            let name: String = code[i + 7..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            if name != from && modules.contains(&name) {
                g.entry(from.clone()).or_default().insert(name);
            }
        }
        g.entry(from).or_default();
    }
    g
}

#[test]
fn layers_import_only_downwards() {
    let g = graph();
    let mut wrong = vec![];
    for (from, tos) in &g {
        println!(
            "{from} -> {}",
            tos.iter().cloned().collect::<Vec<_>>().join(" ")
        );
        let Some(lf) = layer_of(from) else {
            wrong.push(format!(
                "{from} is in no layer: add it to LAYERS and ARCHITECTURE.md"
            ));
            continue;
        };
        for to in tos {
            match layer_of(to) {
                Some(lt) if lt < lf => {}
                _ => wrong.push(format!("{from} (layer {lf}) uses {to}")),
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "imports against the layering:\n{}",
        wrong.join("\n")
    );
}
