//! `scimsync preview` and `scimsync provision`: one object through the same
//! pipeline as a cycle, with Entra's steps printed.

use super::*;
use crate::state::Fact;

pub(super) fn preview(settings: &Settings, id: &str) -> Result<i32, Error> {
    let scripts = Scripts::load(&settings.scripts_dir)?;
    let mut source = crate::source::open(&settings.source)?;
    let state = State::open_read_only(&settings.state_path)?;
    let snapshot = source.read(&crate::source::ReadRequest::full())?;
    let Some(Found {
        kind,
        source_id,
        display,
        record,
        assignment,
    }) = Found::in_snapshot(&snapshot, id)
    else {
        return Err(InputError::Usage(format!(
            "{id}: no user or group with this id, userPrincipalName or displayName in {}",
            source.describe()
        ))
        .into());
    };
    println!("{} {display} ({source_id})", kind.as_str());
    println!("  assignment: {}", assignment.reason());
    print_scoping(&scripts, kind, &record);
    let mapped = match kind {
        ObjectKind::User => scripts.map_user(&record),
        ObjectKind::Group => scripts.map_group(&record),
    };
    let link = state.links(kind)?.remove(&source_id);
    match &link {
        Some(l) => println!(
            "  linked to target id {} ({})",
            l.target_id,
            if l.active { "active" } else { "disabled" }
        ),
        None => println!("  not provisioned by scimsync yet"),
    }
    let attrs = match mapped {
        Ok(a) => a,
        Err(f) => {
            println!("  mapping: error {f}");
            return Ok(exit::OK);
        }
    };
    // What the next cycle does with this object: the same pipeline as `sync`.
    let mut target = crate::targets::open(&settings.target)?;
    let parts = cycle::Parts {
        scripts: &scripts,
        state: &state,
        target: target.as_mut(),
        settings,
    };
    let (plan, _) = plan_one(parts, snapshot, &source_id)?;
    // The target's current object: by link, else the one the plan adopts.
    let adopted = plan
        .actions
        .iter()
        .find(|a| a.op == Op::Adopt)
        .and_then(|a| a.target_id.clone());
    let remote = match link.as_ref().map(|l| l.target_id.clone()).or(adopted) {
        Some(t) => target.get(kind, &t),
        None => Ok(None),
    };
    let remote = match remote {
        Ok(r) => r,
        Err(e) => {
            println!("  target: not read ({})", e.message);
            None
        }
    };
    print_attributes(&attrs, remote.as_ref(), &scripts);
    if plan.actions.is_empty() {
        println!("  next cycle: nothing to do");
    }
    for a in &plan.actions {
        let held = a
            .held_reason()
            .map(|h| format!(" (held: {h})"))
            .unwrap_or_default();
        println!("  next cycle: {} — {}{held}", a.op.as_str(), a.reason);
    }
    Ok(exit::OK)
}

/// On-demand provisioning of one object, with Entra's steps.
pub(super) fn provision(
    settings: Settings,
    id: &str,
    wait: std::time::Duration,
) -> Result<i32, Error> {
    let mut rt = Runtime::open(settings, wait)?;
    let snapshot = rt.source.read(&crate::source::ReadRequest::full())?;
    let Some(Found {
        kind,
        source_id,
        display,
        record,
        assignment,
    }) = Found::in_snapshot(&snapshot, id)
    else {
        println!("1. import: {id} not found in {}", rt.source.describe());
        return Err(
            InputError::Usage(format!("{id}: no such user or group in the directory")).into(),
        );
    };
    println!(
        "1. import: {} {display} ({source_id}) read from {}",
        kind.as_str(),
        rt.source.describe()
    );
    let scope = match kind {
        ObjectKind::User => rt.scripts.user_scope(&record),
        ObjectKind::Group => rt.scripts.group_scope(&record),
    };
    let rules = match &scope {
        Ok((_, r)) => r
            .iter()
            .map(|(n, ok)| format!("{n}: {ok}"))
            .collect::<Vec<_>>()
            .join("; "),
        Err(f) => format!("error {f}"),
    };
    let in_scope = assignment.is_assigned() && matches!(scope, Ok((true, _)));
    println!(
        "2. scope: {} — {}{}",
        if in_scope { "in scope" } else { "out of scope" },
        assignment.reason(),
        if rules.is_empty() {
            String::new()
        } else {
            format!("; rules: {rules}")
        }
    );
    let parts = cycle::Parts {
        scripts: &rt.scripts,
        state: &rt.state,
        target: rt.target.as_mut(),
        settings: &rt.settings,
    };
    let (plan, links) = plan_one(parts, snapshot, &source_id)?;
    print_match(&plan, &links, kind, &source_id, &rt.scripts);
    if plan.actions.is_empty() && plan.refresh.is_empty() {
        match in_scope {
            true => println!("4. action: none — the target already matches"),
            false => println!(
                "4. action: none — out of scope ({}), and not provisioned: nothing to do. {}",
                out_of_scope_why(&assignment, &scope),
                match assignment.is_assigned() {
                    false => "Assign it to the app in the directory to provision it.",
                    true => "Change the directory record or the scoping script to provision it.",
                }
            ),
        }
        return Ok(exit::OK);
    }
    let cycle_id = rt.state.start_cycle(crate::state::CycleKind::OnDemand)?;
    let mut opts = cycle::apply_options(&rt, false)?;
    opts.stop = None;
    let outcome = crate::apply::apply_with_links(
        &plan,
        rt.target.as_mut(),
        &mut rt.state,
        cycle_id,
        &opts,
        links,
    )?;
    let entries = rt.state.logs(&LogQuery {
        cycle: Some(cycle_id),
        ..Default::default()
    })?;
    print_actions(&entries);
    let status = if outcome.failures > 0 {
        crate::state::CycleStatus::Partial
    } else {
        crate::state::CycleStatus::Success
    };
    rt.state.finish_cycle(
        cycle_id,
        status,
        &serde_json::json!({"on_demand": source_id}),
    )?;
    Ok(if outcome.failures > 0 {
        exit::PARTIAL
    } else {
        exit::OK
    })
}

/// Why an object is out of scope, in the words `preview` uses.
fn out_of_scope_why(
    assignment: &crate::model::Assignment,
    scope: &crate::script::Scoped,
) -> String {
    if !assignment.is_assigned() {
        return assignment.reason().to_string();
    }
    match scope {
        Err(f) => format!("the scoping script failed: {f}"),
        Ok((_, rules)) => match rules.iter().rev().find(|(_, ok)| !ok) {
            Some((name, _)) => format!("scoping rule \"{name}\" is false"),
            None => "the scoping script returned false".to_string(),
        },
    }
}

/// The object `preview` or `provision` is about, found by id, userPrincipalName or
/// displayName.
struct Found {
    kind: ObjectKind,
    source_id: String,
    display: String,
    record: serde_json::Map<String, serde_json::Value>,
    assignment: crate::model::Assignment,
}

impl Found {
    fn in_snapshot(snapshot: &crate::model::Snapshot, id: &str) -> Option<Found> {
        if let Some(u) = snapshot.find_user(id) {
            return Some(Found {
                kind: ObjectKind::User,
                source_id: u.id.clone(),
                display: u.user_principal_name.clone(),
                record: u.record.open(),
                assignment: u.assignment.clone(),
            });
        }
        snapshot.find_group(id).map(|g| Found {
            kind: ObjectKind::Group,
            source_id: g.id.clone(),
            display: g.display_name.clone(),
            record: g.record_for_scripts(),
            assignment: g.assignment.clone(),
        })
    }
}

/// The next cycle's plan for one object (and what it needs: its group's members,
/// a user's groups), through the same pipeline as `sync`, judged on its own.
fn plan_one(
    parts: cycle::Parts<'_>,
    mut snapshot: crate::model::Snapshot,
    source_id: &str,
) -> Result<(Plan, crate::state::Links), Error> {
    let (settings, state) = (parts.settings, parts.state);
    snapshot.changed = Some(std::iter::once(source_id.to_string()).collect());
    cycle::widen_to_members(&mut snapshot);
    let prepared = cycle::prepare(parts, snapshot, false, cycle::Purpose::Show)?;
    let plan = one_object(prepared.plan, source_id, settings, state)?;
    Ok((plan, prepared.links))
}

/// `preview`'s scoping: the verdict, each named rule, and the rule that decided.
fn print_scoping(
    scripts: &Scripts,
    kind: ObjectKind,
    record: &serde_json::Map<String, serde_json::Value>,
) {
    let scope = match kind {
        ObjectKind::User => scripts.user_scope(record),
        ObjectKind::Group => scripts.group_scope(record),
    };
    let scope_file = scripts
        .scoping_file()
        .map(|p| p.display().to_string())
        .unwrap_or_else(|| "no scoping.rhai: every assigned object".into());
    match &scope {
        Ok((b, rules)) => {
            println!(
                "  scoping: {} ({scope_file})",
                if *b { "in scope" } else { "out of scope" }
            );
            for (name, ok) in rules {
                println!("    rule {name:?}: {ok}");
            }
            if let Some((name, _)) = rules.iter().rev().find(|(_, ok)| !ok).filter(|_| !b) {
                println!("    decided by rule {name:?}");
            }
        }
        Err(f) => println!("  scoping: error {f}"),
    }
}

/// `preview`'s table: each mapped attribute beside what the target has now,
/// redacted values masked.
fn print_attributes(
    attrs: &crate::scim::attribute::Attrs,
    remote: Option<&crate::targets::Remote>,
    scripts: &Scripts,
) {
    use crate::scim::attribute::shown;
    println!(
        "  mapped attributes ({}):",
        scripts.mapping_file().display()
    );
    println!("    {:<40} {:<32} target now", "attribute", "mapped");
    for (k, v) in attrs.iter().filter(|(k, _)| !k.starts_with('$')) {
        let there = remote.map(|r| crate::targets::remote_value(r, k));
        let now = match &there {
            Some(Some(x)) => show(&shown(attrs, k, x)),
            Some(None) => "(none)".into(),
            None => "-".into(),
        };
        let differs = matches!(&there, Some(x) if !v.is_null() && x.as_ref() != Some(v));
        let mark = if differs { " *" } else { "" };
        println!("    {k:<40} {:<32} {now}{mark}", show(&shown(attrs, k, v)));
    }
    if remote.is_some() {
        println!("  (* differs in the target)");
    }
}

/// `provision`'s fourth step: what was done, as the provisioning log has it.
fn print_actions(entries: &[crate::state::LogEntry]) {
    for e in entries {
        println!(
            "4. action: {} {} — {}{}",
            e.action,
            e.status,
            e.reason,
            e.error
                .as_ref()
                .map(|x| format!(" — error: {x}"))
                .unwrap_or_default()
        );
        for m in &e.modified {
            println!("     {}: {} → {}", m.name, show(&m.old), show(&m.new));
        }
    }
}

/// The part of a plan that is one object's (provision, preview), judged by the
/// gate on its own.
pub(super) fn one_object(
    mut plan: Plan,
    source_id: &str,
    settings: &Settings,
    state: &State,
) -> Result<Plan, Error> {
    plan.actions.retain(|a| a.source_id == source_id);
    plan.refresh.retain(|r| r.source_id == source_id);
    plan.member_refresh
        .retain(|(g, u, _)| g == source_id || u == source_id);
    for a in plan.actions.iter_mut() {
        a.held = false;
        if let Some(r) = a.rare.as_mut() {
            r.held_reason = None;
        }
    }
    let allow = state.meta(Fact::AllowDeletesOnce)?.is_some();
    crate::gate::Gate::new(settings, state.link_count(None)?, allow).judge(&mut plan);
    Ok(plan)
}

/// Provisioning's third step: how the object is matched to the target.
pub(super) fn print_match(
    plan: &Plan,
    links: &crate::state::Links,
    kind: ObjectKind,
    source_id: &str,
    scripts: &Scripts,
) {
    let linked = match kind {
        ObjectKind::User => links.0.get(source_id),
        ObjectKind::Group => links.1.get(source_id),
    };
    let adopted = plan.actions.iter().find(|a| a.op == Op::Adopt);
    match (linked, adopted) {
        (Some(l), _) => println!(
            "3. match: linked to target object {} (provisioned earlier)",
            l.target_id
        ),
        (None, Some(a)) => println!(
            "3. match: target object {} ({})",
            a.target_id.as_deref().unwrap_or("?"),
            a.reason
        ),
        (None, None) => println!(
            "3. match: nothing in the target matches by {}",
            match kind {
                ObjectKind::User => scripts.user_matching().join(", then "),
                ObjectKind::Group => scripts.group_matching().join(", then "),
            }
        ),
    }
}
