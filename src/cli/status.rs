//! `scimsync status`: Entra's "synchronization details" for this job.

use super::*;
use crate::state::Fact;

/// `status --check`: one line and the Nagios plugin code; a state that cannot be
/// read is UNKNOWN (3), not an error of scimsync's own.
pub(super) fn check(settings: &Settings) -> i32 {
    let verdict = State::open_read_only(&settings.state_path)
        .and_then(|state| crate::health::check(settings, &state, crate::clock::now()));
    match verdict {
        Ok(h) => {
            println!("{}", h.line());
            h.level.code()
        }
        Err(e) => {
            println!("SCIMSYNC UNKNOWN - {e}");
            crate::health::UNKNOWN
        }
    }
}

pub(super) fn status(settings: &Settings, json: bool) -> Result<i32, Error> {
    let state = State::open_read_only(&settings.state_path)?;
    let cycles = state.cycles(50)?;
    let (users, active, groups) = state.link_counts()?;
    let escrows = state.escrows()?;
    let pending = state.pending()?;
    let held = state.meta(Fact::Held)?;
    let removals = cycle::pending_removals(&state, settings)?;
    let next = cycle::next_kind(&state, false)?;
    let last = cycles.first();
    let quarantine = cycle::quarantine_state(&state)?;
    let next_at = state
        .meta(Fact::NextCycleAt)?
        .and_then(|t| t.parse::<i64>().ok());
    if json {
        let v = serde_json::json!({
            "state": settings.state_path,
            "enabled": settings.sync.enabled,
            "last_cycle": last,
            "next_cycle": next,
            "next_cycle_at": next_at.map(crate::clock::rfc3339),
            "quarantine": quarantine,
            "provisioned": {"users": users, "active_users": active, "groups": groups},
            "escrows": escrows,
            "pending": pending,
            "held": held.as_deref().and_then(|h| h.parse::<u64>().ok()),
            "pending_removals": removals,
        });
        println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
        return Ok(exit::OK);
    }
    println!("state: {}", settings.state_path.display());
    match last {
        Some(c) => {
            let dur = c
                .finished_at
                .map(|f| format!(", took {} s", f - c.started_at))
                .unwrap_or_else(|| ", did not finish".into());
            println!(
                "last cycle: #{} ({}) started {}, {}{}",
                c.id,
                c.kind,
                crate::clock::rfc3339(c.started_at),
                c.status,
                dur
            );
            if let Some(actions) = c.summary.get("actions").and_then(|a| a.as_object()) {
                for (k, v) in actions {
                    println!("  {k:<28} {v}");
                }
            }
        }
        None => println!("last cycle: none yet"),
    }
    if !settings.sync.enabled {
        println!("provisioning is OFF ([sync] enabled = false); state is kept");
    }
    match next_at {
        Some(t) => println!(
            "next cycle: {next} at {} (interval {})",
            crate::clock::rfc3339(t),
            humantime(settings.interval)
        ),
        None => println!(
            "next cycle: {next}, interval {} (no daemon running)",
            humantime(settings.interval)
        ),
    }
    if let Some(q) = &quarantine {
        println!(
            "QUARANTINE since {}: {}",
            crate::clock::rfc3339(q.since),
            q.reason
        );
        println!("  cycles back off (up to once a day); the first healthy cycle ends it, or `scimsync restart --scope quarantine`");
    }
    let assigned = cycles
        .iter()
        .find_map(|c| c.summary.get("assigned").filter(|a| !a.is_null()).cloned());
    if let Some(a) = &assigned {
        println!(
            "in the directory: {} user(s) and {} group(s) assigned (as of the last full read)",
            a["users"], a["groups"]
        );
    }
    println!("provisioned: {users} user(s) ({active} active), {groups} group(s)");
    println!("escrowed: {} object(s) waiting for a retry", escrows.len());
    for e in escrows.iter().take(20) {
        println!(
            "  {} {} attempt {} next {}: {}",
            e.kind,
            e.source_id,
            e.attempts,
            crate::clock::rfc3339(e.next_at),
            e.last_error
        );
    }
    if !pending.is_empty() {
        println!(
            "pending: {} object(s) planned again every cycle until their action completes",
            pending.len()
        );
        for p in pending.iter().take(20) {
            println!(
                "  {} {} since {}: {}",
                p.kind.as_str(),
                p.source_id,
                crate::clock::rfc3339(p.since),
                p.reason
            );
        }
    }
    if let Some(h) = held {
        println!("held: {h} destructive action(s) over the deletion threshold or shrink guard; `scimsync allow-deletes` releases them");
    }
    if !removals.is_empty() {
        println!(
            "leavers: {} user(s) suspended, removed if still gone ([deprovision] remove_after); back in the directory and in scope, they are enabled again",
            removals.len()
        );
        for p in removals.iter().take(20) {
            println!(
                "  {} since {}: removed on {} ({})",
                p.leaver.display,
                crate::clock::rfc3339(p.leaver.since),
                p.due_at,
                p.leaver.reason
            );
        }
    }
    Ok(exit::OK)
}
