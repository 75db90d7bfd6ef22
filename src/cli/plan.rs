//! `scimsync plan`: the dry run, as text or as one JSON document.

use super::*;
use crate::review::Documents;
use std::io::Write;

pub(super) fn plan(
    settings: &Settings,
    json: bool,
    full: bool,
    out: Option<&Path>,
    force_legacy: bool,
) -> Result<i32, Error> {
    let scripts = Scripts::load(&settings.scripts_dir)?;
    let mut source = crate::source::open(&settings.source)?;
    let mut target = crate::targets::open(&settings.target)?;
    let state = State::open_read_only(&settings.state_path)?;
    cycle::refuse_retired_legacy(settings, &state, force_legacy)?;
    let kind = cycle::next_kind(&state, full)?;
    let purpose = match out {
        Some(_) => cycle::Purpose::Review,
        None => cycle::Purpose::List,
    };
    let evaluating = cycle::Evaluating {
        purpose,
        profile: target.profile(),
    };
    let read = cycle::read(
        source.as_mut(),
        &state,
        &scripts,
        settings,
        kind,
        Some(evaluating),
    )?;
    let unchanged = read.snapshot.unchanged;
    let saving = |fingerprint, held, actions| crate::review::Saving {
        format: crate::review::FORMAT,
        cycle: kind.to_string(),
        full,
        unchanged,
        fingerprint,
        held,
        actions,
    };
    if unchanged {
        if let Some(path) = out {
            saving(None, None, Documents::NONE).write(path)?;
        }
        let pending = cycle::pending_removals(&state, settings)?;
        if json {
            println!(
                "{}",
                serde_json::json!({"cycle": kind, "unchanged": true, "actions": [], "held": null,
                                   "pending_removals": pending})
            );
        } else {
            println!("plan for the next cycle ({kind}): no change in the directory or the scripts; nothing to do");
            print_pending_removals(&pending);
        }
        return Ok(exit::OK);
    }
    let before = target.request_counts();
    let prepared = cycle::prepare(
        cycle::Parts {
            scripts: &scripts,
            state: &state,
            target: target.as_mut(),
            settings,
        },
        read,
        full,
        purpose,
    )?;
    let reads = requests_since(&before, &target.request_counts());
    let plan = &prepared.plan;
    let documents = || Documents {
        actions: &plan.actions,
        spill: prepared.spill.as_deref(),
    };
    if let Some(path) = out {
        let fingerprint = prepared.fingerprint.as_ref();
        saving(fingerprint, plan.held.as_deref(), documents()).write(path)?;
    }
    let unnamed = || prepared.snapshot.errors.iter().filter(|e| e.id.is_none());
    let pending = cycle::pending_removals(&state, settings)?;
    if json {
        let source_errors = unnamed()
            .map(|e| serde_json::json!({"kind": e.record.as_str(), "object": e.object, "error": e.message}))
            .collect();
        print_json(&PlanDocument {
            actions: documents(),
            cycle: kind,
            deletion_threshold: settings.safety.deletion_threshold,
            destructive: plan.destructive_count(),
            held: plan.held.as_deref(),
            pending_removals: &pending,
            source_errors,
            target_requests: reads,
        })?;
    } else {
        print_plan(plan, kind).map_err(Error::file(Path::new("stdout")))?;
        print_pending_removals(&pending);
        for e in unnamed() {
            println!(
                "  {:<14} {:<5} {:<40} {}",
                "invalid",
                e.record.as_str(),
                e.object,
                e.message
            );
        }
        let r: Vec<String> = reads.iter().map(|(k, v)| format!("{k} {v}")).collect();
        if !r.is_empty() {
            println!("  target reads: {}", r.join(", "));
        }
        if let Some(path) = out {
            println!(
                "  saved to {}: `scimsync sync --plan {}` applies exactly this plan",
                path.display(),
                path.display()
            );
        }
    }
    Ok(exit::OK)
}

/// What `plan --json` prints. Its fields are in the order the document always had
/// (a JSON object's keys, sorted), and its actions are made one at a time as they
/// are written: at 100,000 users the whole document was 1.3 GB of values.
#[derive(serde::Serialize)]
struct PlanDocument<'a> {
    actions: Documents<'a>,
    cycle: crate::state::CycleKind,
    deletion_threshold: usize,
    destructive: usize,
    held: Option<&'a str>,
    pending_removals: &'a [cycle::PendingRemoval],
    source_errors: Vec<serde_json::Value>,
    target_requests: std::collections::BTreeMap<String, u64>,
}

/// Pretty JSON on stdout through one buffer, written as it is made.
fn print_json(v: &impl serde::Serialize) -> Result<(), Error> {
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    serde_json::to_writer_pretty(&mut out, v)?;
    writeln!(out)
        .and_then(|_| out.flush())
        .map_err(Error::file(Path::new("stdout")))
}

/// Leavers waiting out the grace period: who, since when, when removed.
pub(super) fn print_pending_removals(pending: &[cycle::PendingRemoval]) {
    if pending.is_empty() {
        return;
    }
    println!(
        "  pending removals ([deprovision] remove_after): {} user(s) suspended, removed if still gone on",
        pending.len()
    );
    for p in pending.iter().take(20) {
        println!(
            "    {:<40} {} ({})",
            p.leaver.display, p.due_at, p.leaver.reason
        );
    }
    if pending.len() > 20 {
        println!(
            "    … and {} more (`scimsync status --json`)",
            pending.len() - 20
        );
    }
}

/// Requests sent between two readings of a target's counters.
pub(super) fn requests_since(
    before: &std::collections::BTreeMap<String, u64>,
    after: &std::collections::BTreeMap<String, u64>,
) -> std::collections::BTreeMap<String, u64> {
    after
        .iter()
        .map(|(k, v)| (k.clone(), v - before.get(k).copied().unwrap_or(0)))
        .filter(|(_, v)| *v > 0)
        .collect()
}

/// The plan as text, a line an action, through one buffer (a million actions
/// were a million writes).
fn print_plan(plan: &Plan, kind: crate::state::CycleKind) -> std::io::Result<()> {
    let mut counts: Vec<(Op, usize)> = vec![];
    for a in &plan.actions {
        match counts.iter_mut().find(|(o, _)| *o == a.op) {
            Some((_, n)) => *n += 1,
            None => counts.push((a.op, 1)),
        }
    }
    let summary: Vec<String> = counts
        .iter()
        .map(|(o, n)| format!("{n} {}", o.as_str()))
        .collect();
    println!(
        "plan for the next cycle ({kind}): {} action(s){}",
        plan.actions.len(),
        if summary.is_empty() {
            String::new()
        } else {
            format!(": {}", summary.join(", "))
        }
    );
    if let Some(why) = &plan.held {
        println!("  ! held by the gate: {why}; `scimsync allow-deletes` releases them once");
    }
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    for a in &plan.actions {
        let op = if a.held {
            format!("{} (held)", a.op.as_str())
        } else {
            a.op.as_str().to_string()
        };
        let mut line = format!(
            "  {:<14} {:<5} {:<40} {}",
            op,
            a.kind.as_str(),
            a.display,
            a.reason
        );
        for c in &a.changes {
            let old = crate::scim::attribute::shown(&a.attrs, &c.path, &c.old);
            let new = crate::scim::attribute::shown(&a.attrs, &c.path, &c.new);
            line.push_str(&format!(
                "\n  {:<61}   {}: {} → {}",
                "",
                c.path,
                show(&old),
                show(&new)
            ));
        }
        if !a.members.is_empty() && a.members.len() <= 10 {
            line.push_str(&format!(" [{}]", a.members.join(", ")));
        }
        writeln!(out, "{line}")?;
    }
    out.flush()
}
