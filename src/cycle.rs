//! A provisioning cycle: read the source, evaluate the scripts, plan, apply, record.
//!
//! Initial when the state has no watermark (or `--full`), incremental otherwise. An
//! incremental cycle whose source and scripts did not change since the last applied
//! watermark, with nothing escrowed or held, does no work and sends no request.

use crate::apply::{apply, ApplyOptions, Outcome};
use crate::config::Settings;
use crate::error::{exit, Error};
use crate::model::{ObjectKind, Snapshot};
use crate::plan::{evaluate, plan, Plan, PlanInput};
use crate::script::Scripts;
use crate::source::{ReadRequest, Source};
use crate::state::{LogEntry, State};
use crate::target::Target;
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Everything a cycle works with.
pub struct Runtime {
    pub settings: Settings,
    pub scripts: Scripts,
    pub source: Box<dyn Source>,
    pub target: Box<dyn Target>,
    pub state: State,
    /// Set by SIGTERM/SIGINT: the cycle stops after the object in flight.
    pub stop: Option<Arc<AtomicBool>>,
    /// Records from the last read, for smoke-testing reloaded scripts.
    pub sample_user: Option<Map<String, Value>>,
    pub sample_group: Option<Map<String, Value>>,
}

impl Runtime {
    /// Opens state, compiles scripts and connects source and target as configured.
    pub fn open(settings: Settings) -> Result<Runtime, Error> {
        let scripts = Scripts::load(&settings.scripts_dir)?;
        let source = crate::source::open(&settings.source)?;
        let target = crate::target::open(&settings.target)?;
        let state = State::open(&settings.state_path)?;
        Ok(Runtime {
            settings,
            scripts,
            source,
            target,
            state,
            stop: None,
            sample_user: None,
            sample_group: None,
        })
    }
}

/// What a cycle did.
#[derive(Debug, Clone)]
pub struct CycleReport {
    pub id: i64,
    pub kind: String,
    pub outcome: Outcome,
    pub planned: BTreeMap<String, usize>,
    pub requests: BTreeMap<String, u64>,
    pub duration: Duration,
    /// Nothing changed since the last cycle: no work was done.
    pub unchanged: bool,
    pub source_errors: usize,
}

impl CycleReport {
    pub fn exit_code(&self) -> i32 {
        if self.outcome.held > 0 {
            exit::HELD
        } else if self.outcome.failures > 0 || self.source_errors > 0 {
            exit::PARTIAL
        } else {
            exit::OK
        }
    }

    /// One human line per action kind and status.
    pub fn summary_lines(&self) -> Vec<String> {
        let mut out = vec![];
        if self.unchanged {
            out.push("no change in the directory or the scripts since the last cycle".into());
        }
        for ((action, status), n) in &self.outcome.counts {
            out.push(format!("{action:<16} {status:<8} {n}"));
        }
        if self.source_errors > 0 {
            out.push(format!(
                "{:<16} {:<8} {}",
                "import", "failure", self.source_errors
            ));
        }
        if self.outcome.held > 0 {
            out.push(format!(
                "{} destructive action(s) held by the deletion threshold; release with `scimsync allow-deletes`",
                self.outcome.held
            ));
        }
        if self.outcome.interrupted {
            out.push("stopped early (signal); the next cycle completes the rest".into());
        }
        if self.outcome.withheld > 0 {
            out.push(format!(
                "{} destructive action(s) not run because the target had errors",
                self.outcome.withheld
            ));
        }
        out
    }
}

/// Which kind the next cycle is: "initial", "full" or "incremental".
pub fn next_kind(state: &State, full: bool) -> Result<&'static str, Error> {
    Ok(if full {
        "full"
    } else if state.meta("watermark")?.is_none() {
        "initial"
    } else {
        "incremental"
    })
}

/// Builds the plan of the next cycle from a snapshot (shared by `plan` and `sync`).
pub fn make_plan(
    snapshot: &Snapshot,
    scripts: &Scripts,
    state: &State,
    target: &dyn Target,
    settings: &Settings,
    full: bool,
) -> Result<Plan, Error> {
    let users = state.links(ObjectKind::User)?;
    let evaluated = evaluate(snapshot, scripts, Some(&users));
    let groups = state.links(ObjectKind::Group)?;
    let memberships = state.memberships()?;
    let present = crate::plan::Present::of(snapshot);
    Ok(plan(
        &evaluated,
        &PlanInput {
            user_links: &users,
            group_links: &groups,
            memberships: &memberships,
            profile: target.profile(),
            create_only: scripts.create_only(),
            skip_out_of_scope_deletions: settings.safety.skip_out_of_scope_deletions,
            full,
            present: present.as_ref(),
        },
    ))
}

/// Runs one cycle now.
pub fn sync(rt: &mut Runtime, full: bool) -> Result<CycleReport, Error> {
    let started = Instant::now();
    let kind = next_kind(&rt.state, full)?;
    let watermark = rt.state.meta("watermark")?;
    let scripts_hash = rt.scripts.hash();
    let scripts_changed = rt.state.meta("scripts_hash")?.as_deref() != Some(scripts_hash.as_str());
    let pending = !rt.state.escrows()?.is_empty() || rt.state.meta("held")?.is_some();
    let requests_before = rt.target.request_counts();

    let need_all = kind != "incremental" || scripts_changed || pending;
    let state_ref = &rt.state;
    let load_cache = || state_ref.meta("source_cache");
    let snapshot = rt.source.read(&ReadRequest {
        watermark: if kind == "incremental" {
            watermark.as_deref()
        } else {
            None
        },
        need_all,
        cache: &load_cache,
    })?;
    if snapshot.unchanged && !need_all {
        let id = rt.state.start_cycle(kind)?;
        let report = CycleReport {
            id,
            kind: kind.into(),
            outcome: Outcome::default(),
            planned: BTreeMap::new(),
            requests: BTreeMap::new(),
            duration: started.elapsed(),
            unchanged: true,
            source_errors: 0,
        };
        // Sources hand out a fresh watermark even when nothing changed (Graph).
        if snapshot.watermark.is_some() && snapshot.watermark != watermark {
            rt.state
                .set_meta("watermark", snapshot.watermark.as_deref())?;
        }
        rt.state
            .finish_cycle(id, "success", &summary_json(&report))?;
        return Ok(report);
    }

    rt.sample_user = snapshot
        .users
        .iter()
        .find(|u| u.assignment.is_assigned())
        .map(|u| u.record.clone());
    rt.sample_group = snapshot
        .groups
        .iter()
        .find(|g| g.assignment.is_assigned())
        .map(|g| g.record.clone());
    let plan = make_plan(
        &snapshot,
        &rt.scripts,
        &rt.state,
        rt.target.as_ref(),
        &rt.settings,
        full,
    )?;
    let id = rt.state.start_cycle(kind)?;
    log::info!(
        "cycle {id} ({kind}): {} users, {} groups read; {} actions planned",
        snapshot.users.len(),
        snapshot.groups.len(),
        plan.actions.len()
    );
    let allow_deletes = rt.state.meta("allow_deletes_once")?.is_some();
    let opts = ApplyOptions {
        deletion_threshold: rt.settings.safety.deletion_threshold,
        allow_deletes,
        user_matching: rt.scripts.user_matching().to_vec(),
        group_matching: rt.scripts.group_matching().to_vec(),
        create_only: rt.scripts.create_only().to_vec(),
        stop: rt.stop.clone(),
    };
    // Record source problems first: each names the record and fails alone.
    let source_errors = snapshot.errors.len();
    if source_errors > 0 {
        let at = crate::clock::now();
        rt.state.write(|w| {
            for e in &snapshot.errors {
                log::warn!("{} {}: {}", e.kind.as_str(), e.object, e.message);
                w.log(&LogEntry {
                    id: 0,
                    cycle: id,
                    at,
                    kind: e.kind.as_str().into(),
                    source_id: e.object.clone(),
                    target_id: None,
                    display: e.object.clone(),
                    action: "import".into(),
                    status: "failure".into(),
                    reason: "the directory record is invalid".into(),
                    modified: vec![],
                    error: Some(e.message.clone()),
                })?;
            }
            Ok(())
        })?;
    }
    let outcome = apply(&plan, rt.target.as_mut(), &mut rt.state, id, &opts)?;

    let mut planned = BTreeMap::new();
    for a in &plan.actions {
        *planned.entry(a.op.as_str().to_string()).or_insert(0) += 1;
    }
    let after = rt.target.request_counts();
    let requests = after
        .iter()
        .map(|(k, v)| (k.clone(), v - requests_before.get(k).copied().unwrap_or(0)))
        .filter(|(_, v)| *v > 0)
        .collect();
    let report = CycleReport {
        id,
        kind: kind.into(),
        outcome,
        planned,
        requests,
        duration: started.elapsed(),
        unchanged: false,
        source_errors,
    };
    let status = match report.exit_code() {
        _ if report.outcome.interrupted => "interrupted",
        exit::OK => "success",
        exit::HELD => "held",
        _ => "partial",
    };
    let interrupted = report.outcome.interrupted;
    rt.state.write(|w| {
        // An interrupted cycle records what it did but not the watermark: the next
        // cycle plans the rest.
        if !interrupted {
            if let Some(wm) = &snapshot.watermark {
                w.set_meta("watermark", Some(wm))?;
            }
            if let Some(cache) = &snapshot.cache {
                w.set_meta("source_cache", Some(cache))?;
            }
            w.set_meta("scripts_hash", Some(&scripts_hash))?;
        }
        if report.outcome.held > 0 {
            w.set_meta("held", Some(&report.outcome.held.to_string()))?;
        } else if report.outcome.withheld == 0 {
            w.set_meta("held", None)?;
        }
        if allow_deletes {
            w.set_meta("allow_deletes_once", None)?;
        }
        Ok(())
    })?;
    rt.state.finish_cycle(id, status, &summary_json(&report))?;
    Ok(report)
}

fn summary_json(r: &CycleReport) -> serde_json::Value {
    let actions: BTreeMap<String, usize> = r
        .outcome
        .counts
        .iter()
        .map(|((a, s), n)| (format!("{a}/{s}"), *n))
        .collect();
    json!({
        "actions": actions,
        "failures": r.outcome.failures + r.source_errors,
        "held": r.outcome.held,
        "withheld": r.outcome.withheld,
        "requests": r.requests,
        "duration_ms": r.duration.as_millis() as u64,
        "unchanged": r.unchanged,
    })
}
