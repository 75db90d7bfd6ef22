//! Health: what monitoring asks of a provisioning job — is it running, is it
//! stuck, does it need a person? One verdict from the state, shared by
//! `status --check` (Nagios plugin codes) and the daemon's `/healthz`.

use crate::config::Settings;
use crate::cycle::quarantine_state;
use crate::error::Error;
use crate::state::{CycleStatus, Fact, State};

/// How bad it is, with the Nagios plugin convention's exit codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    Ok,
    /// Someone should look: objects failing, deletions held, provisioning off.
    Warning,
    /// The job is not doing its work: quarantine, or no cycle finished lately.
    Critical,
}

impl Level {
    pub fn code(self) -> i32 {
        match self {
            Level::Ok => 0,
            Level::Warning => 1,
            Level::Critical => 2,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Level::Ok => "OK",
            Level::Warning => "WARNING",
            Level::Critical => "CRITICAL",
        }
    }
}

/// The exit code for "the state could not be read" (Nagios UNKNOWN).
pub const UNKNOWN: i32 = 3;

/// The verdict: the worst level found and every reason for it, worst first.
#[derive(Debug, Clone)]
pub struct Health {
    pub level: Level,
    pub reasons: Vec<String>,
}

impl Health {
    /// One line for a monitoring system: `SCIMSYNC WARNING - 3 object(s) failing`.
    pub fn line(&self) -> String {
        format!(
            "SCIMSYNC {} - {}",
            self.level.as_str(),
            self.reasons.join("; ")
        )
    }
}

/// Judges the job from its state at `now` (seconds since the epoch).
pub fn check(settings: &Settings, state: &State, now: i64) -> Result<Health, Error> {
    let mut found: Vec<(Level, String)> = vec![];
    if let Some(q) = quarantine_state(state)? {
        found.push((Level::Critical, format!("in quarantine: {}", q.reason)));
    }
    let cycles = state.cycles(50)?;
    let last = cycles.first();
    let finished = cycles
        .iter()
        .find(|c| c.finished_at.is_some() && c.status != CycleStatus::Running);
    let stale_after = 3 * settings.interval.as_secs() as i64;
    match finished.and_then(|c| c.finished_at) {
        None if settings.sync.enabled => {
            found.push((Level::Critical, "no cycle has finished yet".to_string()))
        }
        Some(at) if settings.sync.enabled && now - at > stale_after => found.push((
            Level::Critical,
            format!(
                "no cycle has finished for {} (3 intervals are {})",
                crate::clock::human_duration((now - at).max(0) as u64),
                crate::clock::human_duration(stale_after as u64)
            ),
        )),
        _ => {}
    }
    if !settings.sync.enabled {
        found.push((
            Level::Warning,
            "provisioning is off ([sync] enabled = false)".to_string(),
        ));
    }
    if let Some(held) = state.meta(Fact::Held)? {
        found.push((
            Level::Warning,
            format!("{held} destructive action(s) held; `scimsync allow-deletes` releases them"),
        ));
    }
    let escrows = state.escrows()?.len();
    if escrows > 0 {
        found.push((
            Level::Warning,
            format!("{escrows} object(s) failing, retried with back-off"),
        ));
    } else if last.is_some_and(|c| c.status == CycleStatus::Partial) {
        found.push((Level::Warning, "the last cycle had failures".to_string()));
    }
    found.sort_by_key(|f| std::cmp::Reverse(f.0));
    let level = found.first().map(|f| f.0).unwrap_or(Level::Ok);
    let reasons = match (found.is_empty(), last) {
        (false, _) => found.into_iter().map(|f| f.1).collect(),
        (true, Some(c)) => vec![format!(
            "last cycle #{} ({}) {} {} ago",
            c.id,
            c.kind,
            c.status,
            crate::clock::human_duration(
                (now - c.finished_at.unwrap_or(c.started_at)).max(0) as u64
            )
        )],
        (true, None) => vec!["nothing to report".to_string()],
    };
    Ok(Health { level, reasons })
}
