//! `scimsync migrate plan|apply`: printing what `crate::migrate` decided.

use super::*;

pub(super) fn migrate(
    settings: &Settings,
    step: &MigrateStep,
    wait: std::time::Duration,
) -> Result<i32, Error> {
    let _lock = match step {
        MigrateStep::Plan { .. } => None,
        MigrateStep::Apply => Some(cycle::lock_state(&settings.state_path, wait)?),
    };
    let mut state = match step {
        MigrateStep::Plan { .. } => State::open_read_only(&settings.state_path)?,
        MigrateStep::Apply => State::open(&settings.state_path)?,
    };
    let plan = crate::migrate::plan(settings, &state)?;
    if let MigrateStep::Plan { json: true } = step {
        println!(
            "{}",
            serde_json::to_string_pretty(&plan).unwrap_or_default()
        );
        return Ok(exit::OK);
    }
    println!(
        "members: {} adopt, {} conflict, {} unmanaged; groups: {} adopt, {} conflict, {} unmanaged",
        plan.count("adopt"),
        plan.count("conflict"),
        plan.count("unmanaged"),
        plan.groups
            .iter()
            .filter(|g| matches!(g.outcome, crate::migrate::GroupOutcome::Adopt { .. }))
            .count(),
        plan.groups
            .iter()
            .filter(|g| matches!(g.outcome, crate::migrate::GroupOutcome::Conflict { .. }))
            .count(),
        plan.groups
            .iter()
            .filter(|g| matches!(g.outcome, crate::migrate::GroupOutcome::Unmanaged { .. }))
            .count(),
    );
    for m in &plan.members {
        match &m.outcome {
            crate::migrate::MemberOutcome::Adopt { user, rule, .. } => {
                println!("  adopt     {:<40} → {user} ({rule})", m.email)
            }
            crate::migrate::MemberOutcome::Conflict { reason, .. } => {
                println!("  conflict  {:<40} {reason}", m.email)
            }
            crate::migrate::MemberOutcome::Unmanaged { reason } => {
                println!("  unmanaged {:<40} {reason}", m.email)
            }
        }
    }
    for g in &plan.groups {
        match &g.outcome {
            crate::migrate::GroupOutcome::Adopt { rule, .. } => {
                println!("  adopt     group {} ({rule})", g.name)
            }
            crate::migrate::GroupOutcome::Conflict { reason, .. } => {
                println!("  conflict  group {}: {reason}", g.name)
            }
            crate::migrate::GroupOutcome::Unmanaged { reason } => {
                println!("  unmanaged group {}: {reason}", g.name)
            }
        }
    }
    if !plan.blocked.is_empty() {
        println!(
            "  {} directory object(s) will not be created until their conflict is resolved",
            plan.blocked.len()
        );
    }
    if let MigrateStep::Apply = step {
        let (written, unchanged) = crate::migrate::apply(&mut state, &plan)?;
        println!("applied: {written} link(s) written, {unchanged} already in place; the legacy integration is retired in {}", settings.state_path.display());
        println!("next: run `scimsync sync` with the SCIM target; nothing was sent to Dropbox");
    }
    Ok(exit::OK)
}
