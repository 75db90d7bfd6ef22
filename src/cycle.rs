//! A provisioning cycle: read the source, evaluate the scripts, plan, apply, record.
//!
//! Initial when the state has no watermark (or `--full`), incremental otherwise. An
//! incremental cycle whose source and scripts did not change since the last applied
//! watermark, with no escrow due and nothing pending or held, does no work and sends
//! no request. A read that fails stops the cycle before anything is planned; what a
//! cycle could not complete is recorded as pending and planned again in the next one
//! (level-triggered), whatever changes in the directory.

use crate::apply::{ApplyOptions, Outcome};
use crate::config::Settings;
use crate::error::{exit, Error};
use crate::evaluate::{
    evaluate_releasing, evaluate_rest, Evaluation, Evaluations, Spill, Spilling,
};
use crate::gate::Gate;
use crate::model::{ObjectKind, RecordError, Snapshot, Unreadable};
use crate::plan::{plan, Op, Plan, PlanInput};
use crate::scim::attribute::Attrs;
use crate::script::Scripts;
use crate::source::{ReadRequest, Source};
use crate::state::Fact;
use crate::state::Links;
use crate::state::{CycleKind, CycleStatus, LogAction, LogEntry, LogStatus, State};
use crate::targets::Target;
use serde_json::{json, Map, Value};
use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::rc::Rc;
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
    /// The cycle lock: one scimsync at a time works on a state file. A one-shot
    /// command holds it while it lives; the daemon only while a cycle runs, so
    /// `provision` and `sync` can run beside it.
    lock: Option<crate::state::StateLock>,
    /// Held from the first cycle on: one integration per Dropbox team.
    team_lock: Option<crate::state::StateLock>,
    /// Set by SIGTERM/SIGINT: the cycle stops after the object in flight.
    pub stop: Option<Arc<AtomicBool>>,
    /// Run the legacy target although a migration retired it.
    pub force_legacy: bool,
    /// Records from the last read, for smoke-testing reloaded scripts.
    pub sample_user: Option<Map<String, Value>>,
    pub sample_group: Option<Map<String, Value>>,
}

impl Runtime {
    /// Reads every credential again from the next request on (a secret file
    /// changed, SIGHUP, `scimsync authorize` beside the daemon).
    pub fn reload_credentials(&mut self) {
        self.target.reload_credentials();
        self.source.reload_credentials();
    }

    /// Opens state, compiles scripts and connects source and target as configured;
    /// takes the cycle lock, waiting up to `wait` for a cycle running beside it.
    pub fn open(settings: Settings, wait: Duration) -> Result<Runtime, Error> {
        let scripts = Scripts::load(&settings.scripts_dir)?;
        let lock = lock_waiting(&settings.state_path, wait, None)?;
        let mut rt = Self::open_unlocked(settings, scripts)?;
        rt.lock = Some(lock);
        Ok(rt)
    }

    /// `open` without the cycle lock, for the daemon: it takes the lock for each
    /// cycle (`lock`) and lets go of it between cycles (`unlock`).
    pub fn open_for_daemon(settings: Settings) -> Result<Runtime, Error> {
        let scripts = Scripts::load(&settings.scripts_dir)?;
        Self::open_unlocked(settings, scripts)
    }

    fn open_unlocked(settings: Settings, scripts: Scripts) -> Result<Runtime, Error> {
        let source = crate::source::open(&settings.source)?;
        let target = crate::targets::open(&settings.target)?;
        let state = State::open(&settings.state_path)?;
        Ok(Runtime {
            settings,
            scripts,
            source,
            target,
            state,
            lock: None,
            team_lock: None,
            stop: None,
            force_legacy: false,
            sample_user: None,
            sample_group: None,
        })
    }

    /// Takes the cycle lock again (a daemon between cycles holds none), waiting
    /// up to `wait` for a `sync` or `provision` running beside it.
    pub fn lock(&mut self, wait: Duration) -> Result<(), Error> {
        if self.lock.is_none() {
            let stop = self.stop.clone();
            self.lock = Some(lock_waiting(&self.settings.state_path, wait, stop)?);
        }
        Ok(())
    }

    /// Lets go of the cycle lock until the next `lock`. The team lock stays: it
    /// says which integration runs against the team, and a daemon is that
    /// integration for its whole life.
    pub fn unlock(&mut self) {
        self.lock = None;
    }
}

/// The cycle lock for a command that works on the state without a runtime
/// (`restart`, `allow-deletes`, `migrate apply`), waiting up to `wait`.
pub fn lock_state(
    state_path: &std::path::Path,
    wait: Duration,
) -> Result<crate::state::StateLock, Error> {
    lock_waiting(state_path, wait, None)
}

/// The cycle lock, saying once (at warn, so a terminal shows it) whom it waits for.
fn lock_waiting(
    state_path: &std::path::Path,
    wait: Duration,
    stop: Option<Arc<AtomicBool>>,
) -> Result<crate::state::StateLock, Error> {
    let stopped = move || {
        stop.as_ref()
            .is_some_and(|s| s.load(std::sync::atomic::Ordering::Relaxed))
    };
    crate::state::StateLock::acquire_waiting(
        state_path,
        wait,
        &mut |who| {
            log::warn!(
                "{who} (up to {})",
                crate::clock::human_duration(wait.as_secs())
            )
        },
        &stopped,
    )
}

/// What a cycle did.
#[derive(Debug, Clone)]
pub struct CycleReport {
    pub id: i64,
    pub kind: CycleKind,
    pub outcome: Outcome,
    pub planned: BTreeMap<String, usize>,
    pub requests: BTreeMap<String, u64>,
    pub duration: Duration,
    /// Nothing changed since the last cycle: no work was done.
    pub unchanged: bool,
    pub source_errors: usize,
    /// The job is in quarantine after this cycle: why, in one sentence.
    pub quarantine: Option<String>,
    /// Users and groups assigned in the directory (full reads only).
    pub assigned: Option<(usize, usize)>,
}

impl CycleReport {
    /// A cycle that did no work (nothing changed, or a quarantine probe).
    fn empty(id: i64, kind: CycleKind, started: Instant) -> CycleReport {
        CycleReport {
            id,
            kind,
            outcome: Outcome::default(),
            planned: BTreeMap::new(),
            requests: BTreeMap::new(),
            duration: started.elapsed(),
            unchanged: false,
            source_errors: 0,
            quarantine: None,
            assigned: None,
        }
    }

    pub fn exit_code(&self) -> i32 {
        if self.outcome.held > 0 || self.quarantine.is_some() {
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
        let mut counts = self.outcome.counts.clone();
        if self.source_errors > 0 {
            *counts
                .entry((LogAction::Import, LogStatus::Failure))
                .or_insert(0) += self.source_errors;
        }
        for ((action, status), n) in &counts {
            out.push(format!("{action:<16} {status:<8} {n}"));
        }
        if self.outcome.held > 0 {
            out.push(format!(
                "{} destructive action(s) held ({}); release with `scimsync allow-deletes`",
                self.outcome.held,
                self.outcome
                    .held_reason
                    .as_deref()
                    .unwrap_or("deletion safeguards")
            ));
        }
        if self.outcome.interrupted {
            out.push("stopped early (signal); the next cycle completes the rest".into());
        }
        if let Some(q) = &self.quarantine {
            out.push(format!("quarantine: {q}"));
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

/// Which kind the next cycle is.
pub fn next_kind(state: &State, full: bool) -> Result<CycleKind, Error> {
    Ok(if full {
        CycleKind::Full
    } else if state.meta(Fact::Watermark)?.is_none() {
        CycleKind::Initial
    } else {
        CycleKind::Incremental
    })
}

/// Reads the source for the next cycle (shared by `plan` and `sync`): only changes
/// where the source can, but never `unchanged` while objects wait to be planned
/// again (escrows due, actions that did not complete). A read of every record
/// evaluates each user as it is read (`evaluating`: what the plan is for and the
/// target's profile), so the records are never all held at once.
pub fn read(
    source: &mut dyn Source,
    state: &State,
    scripts: &Scripts,
    settings: &Settings,
    kind: CycleKind,
    evaluating: Option<Evaluating<'_>>,
) -> Result<Read, Error> {
    let watermark = state.meta(Fact::Watermark)?;
    let scripts_changed = state.meta(Fact::ScriptsHash)?.as_deref()
        != Some(evaluation_hash(scripts, settings).as_str());
    let now = crate::clock::now();
    // Objects planned again whatever changed: their records must be read.
    let keep = due_again(state, now, settings)?;
    let load_cache = || state.meta_bytes(Fact::SourceCache);
    let need_all =
        kind != CycleKind::Incremental || scripts_changed || state.meta(Fact::Held)?.is_some();
    // The spill is there before the read: the read's digests wait in it as they
    // are made (35 MB at a million users, whole in memory until recorded).
    let spill = evaluating
        .and_then(|e| open_spill(settings, e.purpose))
        .map(Rc::new);
    // Only a cycle that applies records the digests.
    let apply = evaluating.is_some_and(|e| e.purpose == Purpose::Apply);
    let cache_out = (spill.clone())
        .filter(|_| apply)
        .map(|s| RefCell::new(SpillCache(s)));
    let request = ReadRequest {
        watermark: if kind == CycleKind::Incremental {
            watermark.as_deref()
        } else {
            None
        },
        need_all,
        need_records: !keep.is_empty(),
        cache: &load_cache,
        keep: Some(&keep),
        users: None,
        cache_out: cache_out
            .as_ref()
            .map(|c| c as &RefCell<dyn crate::source::CacheSink>),
    };
    let (mut snapshot, early) = match evaluating.filter(|_| need_all) {
        Some(evaluating) => {
            let spill = spill.as_deref();
            read_evaluating(source, &request, state, scripts, evaluating, spill)?
        }
        None => (source.read(&request)?, None),
    };
    widen_changed(&mut snapshot, &keep);
    snapshot.release_untouched();
    Ok(Read {
        snapshot,
        early,
        spill,
    })
}

/// The cycle's end of a read's `CacheSink`: the digests wait in the spill.
struct SpillCache(Rc<Spill>);

impl crate::source::CacheSink for SpillCache {
    fn part(&mut self, part: &[u8]) -> bool {
        self.0.works() && self.0.put_cache(part).is_ok()
    }

    fn forget(&mut self) {
        let _ = self.0.clear_cache();
    }
}

/// What a read evaluates its users for: the plan's purpose (only a cycle that
/// applies puts new users aside in the spill) and the target's profile (what
/// fits it).
#[derive(Clone, Copy)]
pub struct Evaluating<'a> {
    pub purpose: Purpose,
    pub profile: &'a crate::scim::profile::Profile,
}

/// A read, and what evaluating its users as it went left for `prepare`.
pub struct Read {
    pub snapshot: Snapshot,
    early: Option<Early>,
    /// Where a cycle that applies puts new users' attributes and the read's
    /// digests aside (`Purpose::Apply`; a listed or reviewed plan, the
    /// attributes only), opened before the read.
    spill: Option<Rc<Spill>>,
}

impl From<Snapshot> for Read {
    fn from(snapshot: Snapshot) -> Read {
        Read {
            snapshot,
            early: None,
            spill: None,
        }
    }
}

/// What the users of a read of every record were evaluated with (loaded before
/// the read: every link), and their evaluations when the source handed them
/// over as it read (a source that cannot leaves them to `prepare`).
struct Early {
    users: crate::state::LinkMap,
    evaluated: Option<Evaluations>,
    sample_user: Option<Map<String, Value>>,
}

/// A read of every record with each user evaluated as it is made.
fn read_evaluating(
    source: &mut dyn Source,
    request: &ReadRequest<'_>,
    state: &State,
    scripts: &Scripts,
    evaluating: Evaluating<'_>,
    spill: Option<&Spill>,
) -> Result<(Snapshot, Option<Early>), Error> {
    let users = user_links(state, scripts, &Snapshot::default(), None)?;
    let fits = |a: &Attrs| crate::plan::new_user_fits(a, evaluating.profile);
    let spilling = spill.map(|spill| Spilling {
        spill,
        keep: scripts.user_matching(),
        fits: &fits,
    });
    let sink = RefCell::new(Streamed {
        evaluation: Evaluation::new(scripts, Some(&users), spilling),
        // Nothing after evaluation reads the lists of a cycle or a listed plan
        // (`release_lists`).
        keep_users: !lets_lists_go(evaluating.purpose),
        sample_user: None,
        used: false,
    });
    let snapshot = source.read(&ReadRequest {
        users: Some(&sink),
        ..*request
    })?;
    let Streamed {
        evaluation,
        sample_user,
        used,
        ..
    } = sink.into_inner();
    let evaluated = used.then(|| evaluation.into_users());
    Ok((
        snapshot,
        Some(Early {
            users,
            evaluated,
            sample_user,
        }),
    ))
}

/// Where a read hands its users: evaluated at once, their records let go.
struct Streamed<'a> {
    evaluation: Evaluation<'a>,
    /// Whether the snapshot keeps each user (without its record).
    keep_users: bool,
    /// The first assigned user's record, for smoke-testing reloaded scripts.
    sample_user: Option<Map<String, Value>>,
    /// Whether the source handed anything over.
    used: bool,
}

impl crate::source::UserSink for Streamed<'_> {
    fn expect(&mut self, _users: usize, _groups: usize) {
        self.used = true;
    }

    fn user(&mut self, mut user: crate::model::SourceUser) -> Option<crate::model::SourceUser> {
        self.used = true;
        if self.sample_user.is_none() && user.assignment.is_assigned() {
            self.sample_user = Some(user.record.open());
        }
        self.evaluation.user(&user);
        user.record = Default::default();
        self.keep_users.then_some(user)
    }
}

/// Whether a plan made for `purpose` lets the snapshot's lists go once every
/// record is evaluated (nothing after reads them; a shown plan keeps them for
/// `preview` and `provision`, which show records).
fn lets_lists_go(purpose: Purpose) -> bool {
    purpose != Purpose::Show
}

/// The spill a cycle that applies, or a listed or reviewed plan, puts new users'
/// attributes in. Only memory is at stake: without one, new users stay in memory.
fn open_spill(settings: &Settings, purpose: Purpose) -> Option<Spill> {
    let spill = match purpose {
        Purpose::Apply => Spill::open(&settings.state_path),
        // Without the state's lock (`plan`), or with it (`sync --plan`).
        Purpose::List | Purpose::Review => Spill::open_private(&settings.state_path),
        Purpose::Show => return None,
    };
    spill
        .inspect_err(|e| log::warn!("{e}; this cycle's new users are kept in memory"))
        .ok()
}

/// What decides the desired state besides the directory: the scripts, and the
/// switches and policies of the config. When it changes, every object is evaluated
/// again (stored as `scripts_hash`).
pub fn evaluation_hash(scripts: &Scripts, settings: &Settings) -> String {
    use sha2::{Digest, Sha256};
    let policy = format!(
        "{:?}{:?}{}{:?}{:?}",
        settings.target.actions,
        (settings.sync.users, settings.sync.groups),
        settings.safety.skip_out_of_scope_deletions,
        settings.target.kind,
        settings.target.profile,
    );
    let mut h = Sha256::new();
    h.update(scripts.hash().as_bytes());
    h.update(policy.as_bytes());
    format!("{:x}", h.finalize())
}

/// Level-triggered planning over an incremental read: besides what changed in the
/// directory, every object whose last action did not complete (pending), every
/// escrow that is due, and every group with a member among them is evaluated again.
fn widen_changed(snapshot: &mut Snapshot, keep: &HashSet<String>) {
    let Some(changed) = snapshot.changed.as_mut() else {
        return;
    };
    changed.extend(keep.iter().cloned());
    widen_to_members(snapshot);
}

/// Objects planned again whatever changed: those whose last action did not
/// complete (pending), escrows that are due, and leavers whose grace period is
/// over (removed in the first cycle after it, directory changes or not).
fn due_again(state: &State, now: i64, settings: &Settings) -> Result<HashSet<String>, Error> {
    let mut ids: HashSet<String> = state.pending()?.into_iter().map(|p| p.source_id).collect();
    let escrows = state.escrows()?.into_iter();
    ids.extend(escrows.filter(|e| e.next_at <= now).map(|e| e.source_id));
    let after = grace_period(settings).unwrap_or(0);
    let leavers = state.leavers()?.into_iter();
    ids.extend(
        leavers
            .filter(|(_, since)| since + after <= now)
            .map(|(id, _)| id),
    );
    Ok(ids)
}

/// A leaver waiting out the grace period, with when they are removed if still
/// gone (`status`, `plan`, the report).
#[derive(Debug, Clone, serde::Serialize)]
pub struct PendingRemoval {
    #[serde(flatten)]
    pub leaver: crate::state::Leaver,
    pub due: i64,
    pub due_at: String,
}

pub fn pending_removals(state: &State, settings: &Settings) -> Result<Vec<PendingRemoval>, Error> {
    let after = grace_period(settings).unwrap_or(0);
    Ok(state
        .leaver_list()?
        .into_iter()
        .map(|l| {
            let due = l.since + after;
            PendingRemoval {
                leaver: l,
                due,
                due_at: crate::clock::rfc3339(due),
            }
        })
        .collect())
}

/// `[deprovision] remove_after` in seconds (`None`: removal at once).
pub fn grace_period(settings: &Settings) -> Option<i64> {
    settings
        .target
        .deprovision
        .remove_after
        .map(|d| d.as_secs() as i64)
}

/// A user who comes into scope (or leaves it, or is re-created) takes their
/// memberships along: the groups that list a changed object are planned again, and
/// with them every member they list, so each member of a planned group is judged
/// on its own record this cycle.
pub fn widen_to_members(snapshot: &mut Snapshot) {
    let Some(changed) = snapshot.changed.as_mut() else {
        return;
    };
    let mut more: Vec<String> = vec![];
    for g in &snapshot.groups {
        if changed.contains(&g.id) || g.members.iter().any(|m| changed.contains(m)) {
            more.push(g.id.clone());
            more.extend(g.members.iter().cloned());
        }
    }
    changed.extend(more);
}

/// What a cycle works from: the one pipeline of `plan`, `sync`, `provision` and
/// `preview`.
pub struct Parts<'a> {
    pub scripts: &'a Scripts,
    pub state: &'a State,
    pub target: &'a mut dyn Target,
    pub settings: &'a Settings,
}

/// What a plan is made for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// To be shown (`preview`, `provision`): every action whole.
    Show,
    /// To be listed (`plan`): the snapshot's lists go once evaluated, as a
    /// cycle's do, and new users' attributes wait in a spill of the plan's own
    /// (`Spill::open_private`: it runs without the state's lock) until its
    /// printer reads them back. The spill's file has no name, so `plan` still
    /// leaves nothing anywhere (DESIGN.md).
    List,
    /// To be saved and applied later, or applied as saved: with the fingerprint
    /// of what it was made from. Like `List`, the lists go and new users wait in
    /// a spill of its own (`plan --out` runs without the state's lock); the
    /// saved plan is written, and checked, a document at a time.
    Review,
    /// To be applied now (`sync`): new users' attributes wait in a spill until
    /// their create is sent.
    Apply,
}

/// A plan and everything it was made from.
pub struct Prepared {
    pub snapshot: Snapshot,
    pub plan: Plan,
    pub links: Links,
    /// Escrowed objects retried this cycle: those that do not fail again are done
    /// with, even when their object needs no action any more.
    pub retried: Vec<(ObjectKind, String)>,
    /// What the plan was made from (when asked for): a reviewed plan is applied
    /// only while it holds.
    pub fingerprint: Option<crate::review::Fingerprint>,
    /// Records from the read, for smoke-testing reloaded scripts.
    pub sample_user: Option<Map<String, Value>>,
    pub sample_group: Option<Map<String, Value>>,
    /// Where the plan's creates keep their attributes (all purposes but
    /// `Purpose::Show`).
    pub spill: Option<std::rc::Rc<Spill>>,
}

/// The user links a cycle plans with. After an incremental read, only those of
/// the users it evaluates (with their applied attributes) and of the users gone
/// from the directory: at a million users every link was 390 MB and three
/// seconds for a cycle over 100 changes. What the plan turns out to need beyond
/// them is added as it is known (`more_user_links`). `select_unique_value`
/// needs every one in use.
fn user_links(
    state: &State,
    scripts: &Scripts,
    snapshot: &Snapshot,
    present: Option<&crate::model::Present>,
) -> Result<crate::state::LinkMap, Error> {
    match (&snapshot.changed, present) {
        (Some(changed), Some(present)) if !scripts.uses_unique_values() => {
            let wanted = |id: &str| changed.contains(id) || !present.users.contains(id);
            state.links_where(ObjectKind::User, changed.len(), &wanted)
        }
        _ => state.links(ObjectKind::User),
    }
}

/// Adds the user links a plan over part of the directory needs beyond those it
/// was read with: of creates in doubt (before the look-ups), of the objects the
/// look-ups found (one may be linked to another user), and of the members its
/// membership changes name (apply sends their target ids and records them only
/// while they are linked).
fn more_user_links<'i>(
    state: &State,
    users: &mut crate::state::LinkMap,
    ids: impl IntoIterator<Item = &'i str>,
    targets: impl IntoIterator<Item = &'i str>,
) -> Result<(), Error> {
    state.add_links(ObjectKind::User, ids, users)?;
    state.add_links_holding(ObjectKind::User, targets, users)
}

/// The memberships a plan looks at: all of them after a read of the whole
/// directory; after an incremental read those of the groups evaluated and of the
/// users gone from the directory (the planner reads no others, and at a million
/// users the whole table is seconds and a hundred MB).
fn memberships_needed(
    state: &State,
    evaluated: &Evaluations,
    user_links: &crate::state::LinkMap,
    present: Option<&crate::model::Present>,
) -> Result<HashMap<String, std::collections::BTreeSet<String>>, Error> {
    let Some(present) = present else {
        return state.memberships();
    };
    let mut groups: std::collections::BTreeSet<String> = evaluated
        .iter()
        .filter(|e| e.kind == ObjectKind::Group)
        .map(|e| e.source_id.to_string())
        .collect();
    for id in user_links.keys().filter(|id| !present.users.contains(*id)) {
        groups.extend(state.groups_of(id)?);
    }
    state.memberships_of(&groups)
}

/// An object by kind and source id.
type ObjectRef = (ObjectKind, String);

/// Escrowed objects retried this cycle, and those still waiting out their
/// back-off — unless what decides the desired state changed: a fixed script
/// reaches the objects it failed on at once.
fn escrows_due(
    state: &State,
    scripts: &Scripts,
    settings: &Settings,
) -> Result<(Vec<ObjectRef>, HashSet<ObjectRef>), Error> {
    let scripts_changed = state.meta(Fact::ScriptsHash)?.as_deref()
        != Some(evaluation_hash(scripts, settings).as_str());
    let now = crate::clock::now();
    let (due, waiting): (Vec<_>, Vec<_>) = state
        .escrows()?
        .into_iter()
        .filter_map(|e| Some((ObjectKind::parse(&e.kind)?, e.source_id, e.next_at)))
        .partition(|(_, _, at)| scripts_changed || *at <= now);
    let due = due.into_iter().map(|(k, id, _)| (k, id)).collect();
    let not_due = waiting.into_iter().map(|(k, id, _)| (k, id)).collect();
    Ok((due, not_due))
}

/// Gather → plan → gate over a snapshot: reads only, never a write. The snapshot's
/// records are released once evaluated (at 100,000 users they are a good part of a
/// cycle's memory); ids, names and assignments stay, groups' members move into
/// their evaluations.
pub fn prepare(
    parts: Parts<'_>,
    read: impl Into<Read>,
    full: bool,
    purpose: Purpose,
) -> Result<Prepared, Error> {
    let fingerprint = purpose == Purpose::Review;
    let Parts {
        scripts,
        state,
        target,
        settings,
    } = parts;
    let Read {
        mut snapshot,
        early,
        spill,
    } = read.into();
    let sample_user = match &early {
        Some(Early {
            evaluated: Some(_),
            sample_user,
            ..
        }) => sample_user.clone(),
        _ => snapshot
            .users
            .iter()
            .find_map(|u| u.assignment.is_assigned().then(|| u.record.open())),
    };
    let sample_group = snapshot
        .groups
        .iter()
        .find_map(|g| g.assignment.is_assigned().then(|| g.record_for_scripts()));
    crate::alloc::give_back();
    crate::alloc::log_memory("read");
    let present = snapshot.present();
    let (mut users, streamed) = match early {
        Some(e) => (e.users, e.evaluated),
        None => (
            user_links(state, scripts, &snapshot, present.as_ref())?,
            None,
        ),
    };
    let spill = spill.or_else(|| open_spill(settings, purpose).map(Rc::new));
    // The read's record digests wait in the spill until the cycle records them
    // (`run_cycle`); where they cannot, they stay here.
    let stash = spill.as_ref().filter(|_| purpose == Purpose::Apply);
    if let (Some(spill), Some(cache)) = (stash, &snapshot.cache) {
        if spill
            .clear_cache()
            .and_then(|_| spill.put_cache(cache))
            .is_ok()
        {
            snapshot.cache = None;
        }
    }
    let mut evaluated = match streamed {
        Some(users) => evaluate_rest(&mut snapshot, scripts, users),
        None => {
            let profile = target.profile();
            let fits = |a: &Attrs| crate::plan::new_user_fits(a, profile);
            let spilling = spill.as_ref().map(|spill| Spilling {
                spill,
                keep: scripts.user_matching(),
                fits: &fits,
            });
            evaluate_releasing(&mut snapshot, scripts, Some(&users), spilling)
        }
    };
    if lets_lists_go(purpose) {
        snapshot.release_lists();
    }
    crate::alloc::give_back();
    crate::alloc::log_memory("evaluated");
    let groups = state.links(ObjectKind::Group)?;
    let memberships = memberships_needed(state, &evaluated, &users, present.as_ref())?;
    let unreadable = Unreadable::of(&snapshot.errors);
    let in_doubt: HashMap<(ObjectKind, String), Attrs> = state
        .pending()?
        .into_iter()
        .filter_map(|p| Some(((p.kind, p.source_id), p.attrs?)))
        .collect();
    if present.is_some() {
        let doubts = in_doubt.keys().filter(|(k, _)| *k == ObjectKind::User);
        more_user_links(state, &mut users, doubts.map(|(_, id)| id.as_str()), [])?;
    }
    let (retried, not_due) = escrows_due(state, scripts, settings)?;
    let blocked = crate::migrate::blocked(state)?;
    let matching = (scripts.user_matching(), scripts.group_matching());
    let leavers = state.leavers()?;
    let consequence = (settings.target.kind == crate::config::TargetKind::DropboxLegacy)
        .then(|| settings.target.deprovision.consequence());
    let wanted = crate::gather::wanted(&evaluated, (&users, &groups), &in_doubt, full, |k, id| {
        not_due.contains(&(k, id.to_string())) || blocked.contains(id)
    });
    let mut facts = crate::gather::gather(target, &wanted, matching, full)?;
    drop(wanted);
    if present.is_some() {
        more_user_links(state, &mut users, [], facts.matched(ObjectKind::User))?;
    }
    if let Some(spill) = &spill {
        take_back(&mut evaluated, &facts, spill)?;
    }
    crate::alloc::log_memory("gathered");
    let source_hash = match fingerprint {
        true => Some(crate::review::evaluated_hash(&evaluated, spill.as_deref())?),
        false => None,
    };
    let mut plan = plan(
        evaluated,
        &PlanInput {
            user_links: &users,
            group_links: &groups,
            memberships: &memberships,
            profile: target.profile(),
            create_only: scripts.create_only(),
            skip_out_of_scope_deletions: settings.safety.skip_out_of_scope_deletions,
            full,
            present: present.as_ref(),
            unreadable: &unreadable,
            user_matching: matching.0,
            group_matching: matching.1,
            in_doubt: &in_doubt,
            facts: &facts,
            actions: settings.target.actions,
            sync_users: settings.sync.users,
            sync_groups: settings.sync.groups,
            blocked: &blocked,
            not_due: &not_due,
            grace: crate::plan::Grace {
                since: Some(&leavers),
                after: grace_period(settings),
                now: crate::clock::now(),
                consequence: consequence.as_deref(),
            },
        },
    );
    crate::alloc::give_back();
    crate::alloc::log_memory("planned");
    if present.is_some() {
        let members = plan
            .actions
            .iter()
            .filter(|a| matches!(a.op, Op::AddMembers | Op::RemoveMembers))
            .flat_map(|a| a.members.iter().map(String::as_str));
        let refreshed = plan.member_refresh.iter().filter(|(_, _, member)| *member);
        let members = members.chain(refreshed.map(|(_, user, _)| user.as_str()));
        more_user_links(state, &mut users, members, [])?;
    }
    invited(target, &mut plan, &mut facts);
    let allow_deletes = state.meta(Fact::AllowDeletesOnce)?.is_some();
    Gate::new(settings, state.link_count(None)?, allow_deletes).judge(&mut plan);
    if spill.is_some() {
        forget_spilled_values(&mut plan);
    }
    let fingerprint = match source_hash {
        Some(source) => Some(crate::review::Fingerprint {
            watermark: state.meta(Fact::Watermark)?,
            source,
            evaluation: evaluation_hash(scripts, settings),
            state: state.meta(Fact::Version)?.unwrap_or_default(),
            facts: facts.hash(),
        }),
        None => None,
    };
    Ok(Prepared {
        snapshot,
        plan,
        links: (users, groups),
        retried,
        fingerprint,
        sample_user,
        sample_group,
        spill,
    })
}

/// A create whose attributes wait in the spill keeps none in memory once the
/// plan is made (its matching values, which the planner judged, were 100 bytes
/// each at a million creates): apply reads them back as it needs them.
fn forget_spilled_values(plan: &mut Plan) {
    for a in plan.actions.iter_mut().filter(|a| a.spilled.is_some()) {
        a.attrs = Attrs::new();
    }
}

/// New users whose look-up found something are adopted, or fail, rather than
/// created: their attributes come back from the spill (an adoption compares
/// every one with the target's object).
fn take_back(
    evaluated: &mut Evaluations,
    facts: &crate::gather::Facts,
    spill: &Spill,
) -> Result<(), Error> {
    use crate::gather::Match;
    let found = |e: &crate::evaluate::Evaluated| {
        !matches!(
            facts.matches.get(&(e.kind, e.source_id.to_string())),
            None | Some(Match::None)
        )
    };
    if facts.matches.values().all(|m| matches!(m, Match::None)) {
        return Ok(());
    }
    for e in evaluated.iter_mut() {
        if let Some(row) = e.spilled.filter(|_| found(e)) {
            e.attrs = Some(spill.get(row)?);
            e.spilled = None;
        }
    }
    Ok(())
}

/// The legacy and SCIM integrations must never run against one team at once: a
/// legacy target retired by `migrate apply` is refused unless forced.
pub fn refuse_retired_legacy(settings: &Settings, state: &State, force: bool) -> Result<(), Error> {
    if settings.target.kind != crate::config::TargetKind::DropboxLegacy || force {
        return Ok(());
    }
    let Some(m) = state.meta(Fact::LegacyRetired)? else {
        return Ok(());
    };
    let at = serde_json::from_str::<Value>(&m)
        .ok()
        .and_then(|v| v.get("at").and_then(|a| a.as_str()).map(str::to_string))
        .unwrap_or_default();
    Err(crate::error::InputError::Usage(format!(
        "the legacy Dropbox integration was retired by `scimsync migrate apply` ({at}); sync with the SCIM target, or pass --force-legacy"
    ))
    .into())
}

/// How apply runs a plan made from these links.
pub fn apply_options(rt: &Runtime, allow_deletes: bool) -> Result<ApplyOptions, Error> {
    Ok(ApplyOptions {
        gate: Gate::new(&rt.settings, rt.state.link_count(None)?, allow_deletes),
        user_matching: rt.scripts.user_matching().to_vec(),
        group_matching: rt.scripts.group_matching().to_vec(),
        stop: rt.stop.clone(),
        escrow_backoff: rt.settings.safety.escrow_backoff,
        escrow_max: rt.settings.safety.escrow_max,
        spill: None,
    })
}

/// Takes the Dropbox team lock once, where the team can be named: a legacy target,
/// or a SCIM target whose config has `[legacy]` (the migration's credentials).
fn team_lock(rt: &mut Runtime) -> Result<(), Error> {
    if rt.team_lock.is_some() {
        return Ok(());
    }
    let mut client = match (&rt.settings.target.kind, &rt.settings.legacy) {
        (crate::config::TargetKind::DropboxLegacy, _) => {
            crate::targets::legacy::LegacyTarget::new(&rt.settings.target)
        }
        (_, Some(l)) => {
            crate::targets::legacy::LegacyTarget::for_legacy(l, rt.settings.target.timeout)
        }
        _ => return Ok(()),
    };
    match client.team_id() {
        Ok(id) => {
            rt.team_lock = crate::state::StateLock::acquire_team(&id, &rt.settings.state_path)?
        }
        Err(e) => log::warn!("could not name the Dropbox team to lock it: {}", e.message),
    }
    Ok(())
}

/// Runs one cycle now.
pub fn sync(rt: &mut Runtime, full: bool) -> Result<CycleReport, Error> {
    sync_reviewed(rt, full, None)
}

/// In quarantine a cycle starts with a probe: still failing, it stops there (the
/// target is not hammered) and the cycle's report is returned; answering again,
/// quarantine ends and everything that failed meanwhile is retried now.
fn probe_quarantine(
    rt: &mut Runtime,
    kind: CycleKind,
    started: Instant,
) -> Result<Option<CycleReport>, Error> {
    if let Some(q) = quarantine_state(&rt.state)? {
        match rt.target.test_connection() {
            Ok(()) => {
                rt.state.set_meta(Fact::Quarantine, None)?;
                rt.state.escrows_due_now()?;
                log::info!("left quarantine: the target answers again");
                // Sent now, so it is never lost; it names the cycle starting now.
                let cycle = rt.state.cycles(1)?.first().map(|c| c.id + 1).unwrap_or(1);
                crate::notify::send(
                    &rt.settings.notify,
                    &crate::notify::event(
                        crate::notify::Kind::QuarantineLeft,
                        cycle,
                        "The target answers again; quarantine is over.",
                        json!({"since": q.since}),
                    ),
                );
            }
            Err(e) => {
                let reason = reason_sentence(&e);
                let id = rt.state.start_cycle(kind)?;
                enter_quarantine(rt, Some(q), &reason, id)?;
                let mut report = CycleReport::empty(id, kind, started);
                report.quarantine = Some(reason);
                rt.state
                    .finish_cycle(id, CycleStatus::Quarantine, &summary_json(&report))?;
                return Ok(Some(report));
            }
        }
    }
    Ok(None)
}

/// What the state keeps of a cycle that ran: the watermark and scripts hash (unless
/// interrupted), holds, the one-time release used up, what is pending, escrows
/// cleared.
fn record(
    rt: &mut Runtime,
    report: &CycleReport,
    snapshot: &Snapshot,
    scripts_hash: &str,
    allow_deletes: bool,
    retried: &[(ObjectKind, String)],
) -> Result<(), Error> {
    let interrupted = report.outcome.interrupted;
    rt.state.write(|w| {
        // An interrupted cycle records what it did but not the watermark: the next
        // cycle plans the rest.
        if !interrupted {
            if let Some(wm) = &snapshot.watermark {
                w.set_meta(Fact::Watermark, Some(wm))?;
            }
            if let Some(cache) = &snapshot.cache {
                w.set_meta_bytes(Fact::SourceCache, cache)?;
            }
            w.set_meta(Fact::ScriptsHash, Some(scripts_hash))?;
        }
        if report.outcome.held > 0 {
            w.set_meta(Fact::Held, Some(&report.outcome.held.to_string()))?;
        } else {
            w.set_meta(Fact::Held, None)?;
        }
        if allow_deletes {
            w.set_meta(Fact::AllowDeletesOnce, None)?;
        }
        // What did not complete is planned again next cycle, whatever changes; a
        // cycle that stopped early keeps what was pending before too.
        w.set_pending(&report.outcome.incomplete, interrupted)?;
        if !interrupted {
            for (kind, id) in retried
                .iter()
                .filter(|k| !report.outcome.failed.contains(k))
            {
                w.clear_escrow(*kind, id)?;
            }
        }
        Ok(())
    })
}

/// Runs one cycle; with a reviewed plan (`sync --plan FILE`), only if the plan made
/// now is that plan and nothing it was made from has moved. The provisioning log
/// and cycle history older than `log_retention` are pruned after it.
pub fn sync_reviewed(
    rt: &mut Runtime,
    full: bool,
    reviewed: Option<&crate::review::SavedPlan>,
) -> Result<CycleReport, Error> {
    let report = run_cycle(rt, full, reviewed)?;
    prune_history(rt);
    Ok(report)
}

/// Log retention: a failure to prune is logged and never fails the cycle.
fn prune_history(rt: &mut Runtime) {
    let Some(keep) = rt.settings.log_retention else {
        return;
    };
    let before = crate::clock::now() - keep.as_secs() as i64;
    match rt.state.prune(before) {
        Ok((0, 0)) => {}
        Ok((log, cycles)) => log::info!(
            "pruned {log} provisioning-log entries and {cycles} cycle(s) older than log_retention"
        ),
        Err(e) => log::warn!("could not prune the provisioning log: {e}"),
    }
}

fn run_cycle(
    rt: &mut Runtime,
    full: bool,
    reviewed: Option<&crate::review::SavedPlan>,
) -> Result<CycleReport, Error> {
    let started = Instant::now();
    refuse_retired_legacy(&rt.settings, &rt.state, rt.force_legacy)?;
    team_lock(rt)?;
    let kind = next_kind(&rt.state, full)?;
    let watermark = rt.state.meta(Fact::Watermark)?;
    let scripts_hash = evaluation_hash(&rt.scripts, &rt.settings);
    if let Some(report) = probe_quarantine(rt, kind, started)? {
        return Ok(report);
    }
    let requests_before = rt.target.request_counts();
    // A read that fails or is incomplete stops here, before anything is planned:
    // absence is never inferred from failure.
    crate::alloc::log_memory("start");
    let purpose = match reviewed {
        Some(_) => Purpose::Review,
        None => Purpose::Apply,
    };
    let read = read(
        rt.source.as_mut(),
        &rt.state,
        &rt.scripts,
        &rt.settings,
        kind,
        Some(Evaluating {
            purpose,
            profile: rt.target.profile(),
        }),
    )?;
    if read.snapshot.unchanged {
        if let Some(r) = reviewed {
            r.check_unchanged()?;
        }
        return unchanged(rt, kind, started, &read.snapshot, watermark);
    }
    let read_took = started.elapsed();
    let prepared = prepare(
        Parts {
            scripts: &rt.scripts,
            state: &rt.state,
            target: rt.target.as_mut(),
            settings: &rt.settings,
        },
        read,
        full,
        purpose,
    )?;
    if let Some(r) = reviewed {
        let spill = prepared.spill.as_deref();
        r.check(prepared.fingerprint.as_ref(), &prepared.plan, spill)?;
    }
    let Prepared {
        mut snapshot,
        plan,
        links,
        retried,
        sample_user,
        sample_group,
        spill,
        ..
    } = prepared;
    rt.sample_user = sample_user.or(rt.sample_user.take());
    rt.sample_group = sample_group.or(rt.sample_group.take());
    let plan_took = started.elapsed() - read_took;
    let id = rt.state.start_cycle(kind)?;
    let (users, groups) = snapshot.counts();
    log::info!(
        "cycle {id} ({kind}): {users} users, {groups} groups read; {} actions planned",
        plan.actions.len()
    );
    let allow_deletes = rt.state.meta(Fact::AllowDeletesOnce)?.is_some();
    let mut opts = apply_options(rt, allow_deletes)?;
    opts.spill = spill;
    let source_errors = log_unnamed(rt, id, &snapshot)?;
    let apply_started = Instant::now();
    let outcome =
        crate::apply::apply_with_links(&plan, rt.target.as_mut(), &mut rt.state, id, &opts, links)?;
    if let (None, Some(spill)) = (&snapshot.cache, &opts.spill) {
        snapshot.cache = spill.take_cache()?;
    }
    crate::alloc::give_back();
    crate::alloc::log_memory("applied");
    log::debug!(
        "cycle {id} took: read {read_took:?}, plan {plan_took:?}, apply {:?}",
        apply_started.elapsed()
    );

    let mut planned = BTreeMap::new();
    for a in &plan.actions {
        *planned.entry(a.op.as_str().to_string()).or_insert(0) += 1;
    }
    let requests = requests_since(&requests_before, &rt.target.request_counts());
    let mut report = CycleReport {
        id,
        kind,
        outcome,
        planned,
        requests,
        duration: started.elapsed(),
        unchanged: false,
        source_errors,
        quarantine: None,
        assigned: None,
    };
    if snapshot.changed.is_none() {
        report.assigned = Some(assigned_counts(&snapshot));
    }
    report.quarantine = quarantine(rt, &report)?;
    notify_cycle(rt, &report);
    let status = match report.exit_code() {
        _ if report.outcome.interrupted => CycleStatus::Interrupted,
        exit::OK => CycleStatus::Success,
        exit::HELD => CycleStatus::Held,
        _ => CycleStatus::Partial,
    };
    record(
        rt,
        &report,
        &snapshot,
        &scripts_hash,
        allow_deletes,
        &retried,
    )?;
    rt.state.finish_cycle(id, status, &summary_json(&report))?;
    crate::alloc::log_memory("end");
    Ok(report)
}

/// A cycle with nothing to do: recorded, with the fresh watermark Graph hands out
/// even when nothing changed.
fn unchanged(
    rt: &mut Runtime,
    kind: CycleKind,
    started: Instant,
    snapshot: &Snapshot,
    watermark: Option<String>,
) -> Result<CycleReport, Error> {
    let id = rt.state.start_cycle(kind)?;
    let mut report = CycleReport::empty(id, kind, started);
    report.unchanged = true;
    if snapshot.watermark.is_some() && snapshot.watermark != watermark {
        rt.state
            .set_meta(Fact::Watermark, snapshot.watermark.as_deref())?;
    }
    rt.state
        .finish_cycle(id, CycleStatus::Success, &summary_json(&report))?;
    Ok(report)
}

/// Records that could not be read and name no object fail alone, logged here
/// (those that name one are the plan's: escrowed, kept as they were). Returns how
/// many.
fn log_unnamed(rt: &mut Runtime, id: i64, snapshot: &Snapshot) -> Result<usize, Error> {
    let unnamed: Vec<&RecordError> = snapshot.errors.iter().filter(|e| e.id.is_none()).collect();
    if unnamed.is_empty() {
        return Ok(0);
    }
    let at = crate::clock::now();
    rt.state.write(|w| {
        for e in &unnamed {
            log::warn!("{} {}: {}", e.record.as_str(), e.object, e.message);
            w.log(&LogEntry {
                id: 0,
                cycle: id,
                at,
                kind: e.record.as_str().into(),
                source_id: e.object.clone(),
                target_id: None,
                display: e.object.clone(),
                action: LogAction::Import,
                status: LogStatus::Failure,
                reason: "the directory record is invalid".into(),
                modified: vec![],
                error: Some(e.message.clone()),
            })?;
        }
        Ok(())
    })?;
    Ok(unnamed.len())
}

/// Requests per kind made since `before`.
fn requests_since(
    before: &BTreeMap<String, u64>,
    after: &BTreeMap<String, u64>,
) -> BTreeMap<String, u64> {
    after
        .iter()
        .map(|(k, v)| (k.clone(), v - before.get(k).copied().unwrap_or(0)))
        .filter(|(_, v)| *v > 0)
        .collect()
}

/// Users and groups assigned, from a complete read.
fn assigned_counts(snapshot: &Snapshot) -> (usize, usize) {
    let listed = snapshot.listed();
    (listed.assigned_users, listed.assigned_groups)
}

/// The quarantine state as stored: since when, why, how many cycles.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Quarantine {
    pub since: i64,
    pub reason: String,
    pub level: u32,
}

pub fn quarantine_state(state: &State) -> Result<Option<Quarantine>, Error> {
    Ok(state
        .meta(Fact::Quarantine)?
        .and_then(|q| serde_json::from_str(&q).ok()))
}

/// One sentence for an admin: what is wrong with the target and what to check.
fn reason_sentence(e: &crate::targets::TargetError) -> String {
    use crate::targets::ErrorClass::*;
    match e.class {
        // The sentence names the fix (`scimsync authorize`).
        Revoked => e.message.clone(),
        Auth => format!(
            "The target refused the credentials (HTTP {}): replace target.token (a file: secret is read again when it changes; an env: one needs a restart), or run `scimsync authorize` if it uses OAuth.",
            e.status.unwrap_or(401)
        ),
        NotFound => "The target answered 404 for the SCIM collections: check target.url.".into(),
        Transport => format!("The target could not be reached: {}.", e.message),
        Server => format!(
            "The target answered server errors (HTTP {}) to most requests.",
            e.status.unwrap_or(500)
        ),
        Throttled => "The target kept throttling (HTTP 429) beyond the retries.".into(),
        _ => format!("Most requests failed: {}.", e.message),
    }
}

/// Enters, stays in or leaves quarantine after a cycle (Entra: most calls failing).
fn quarantine(rt: &mut Runtime, r: &CycleReport) -> Result<Option<String>, Error> {
    let successes: usize = r
        .outcome
        .counts
        .iter()
        .filter(|((_, s), _)| *s == LogStatus::Success)
        .map(|(_, n)| n)
        .sum();
    let attempted = successes + r.outcome.target_errors;
    let sick = r.outcome.systemic_errors > 0 && r.outcome.systemic_errors * 2 >= attempted;
    if !sick {
        return Ok(None);
    }
    let reason = r
        .outcome
        .first_systemic
        .as_ref()
        .map(reason_sentence)
        .unwrap_or_else(|| "Most requests to the target failed.".into());
    let before = quarantine_state(&rt.state)?;
    enter_quarantine(rt, before, &reason, r.id)?;
    Ok(Some(reason))
}

/// Records (or extends) the quarantine; notifies when it starts or its reason changes.
fn enter_quarantine(
    rt: &mut Runtime,
    before: Option<Quarantine>,
    reason: &str,
    cycle: i64,
) -> Result<(), Error> {
    let q = Quarantine {
        since: before
            .as_ref()
            .map(|b| b.since)
            .unwrap_or_else(crate::clock::now),
        level: before.as_ref().map(|b| b.level + 1).unwrap_or(0),
        reason: reason.to_string(),
    };
    rt.state.set_meta(
        Fact::Quarantine,
        Some(&serde_json::to_string(&q).unwrap_or_default()),
    )?;
    if before.map(|b| b.reason != reason).unwrap_or(true) {
        log::error!("quarantine: {reason}");
        crate::notify::send(
            &rt.settings.notify,
            &crate::notify::event(
                crate::notify::Kind::Quarantine,
                cycle,
                reason,
                json!({"since": q.since}),
            ),
        );
    }
    Ok(())
}

/// The cycle's notifications, each only when it is news (see `notify::Sent`): a
/// failure set with a new object, a hold that starts or ends. Never fails the
/// cycle.
fn notify_cycle(rt: &mut Runtime, r: &CycleReport) {
    if let Err(e) = notify_news(rt, r) {
        log::warn!("notifications not sent: {e}");
    }
}

fn notify_news(rt: &mut Runtime, r: &CycleReport) -> Result<(), Error> {
    if !notifying(&rt.settings.notify) {
        return Ok(());
    }
    let now = crate::clock::now();
    let repeat = rt.settings.notify.repeat;
    let mut sent = sent_notices(&rt.state)?;
    let before = sent.clone();
    if r.quarantine.is_none() {
        let escrows = rt.state.escrows()?;
        let failing = escrows
            .iter()
            .map(|e| format!("{}:{}", e.kind, e.source_id))
            .collect();
        if sent.failure_due(failing, now, repeat) {
            let summary = format!(
                "{} object(s) are failing after cycle {}; each is retried with back-off.",
                escrows.len(),
                r.id
            );
            let objects = failing_objects(&rt.state, &escrows)?;
            let details = json!({"count": escrows.len(), "objects": objects, "first_error": r.outcome.first_error});
            crate::notify::send(
                &rt.settings.notify,
                &crate::notify::event(crate::notify::Kind::Failure, r.id, &summary, details),
            );
        }
    }
    match sent.hold_due(r.outcome.held > 0, now, repeat) {
        Some(kind @ crate::notify::Kind::Hold) => {
            let summary = format!(
                "{} deletes/disables held: {}; held until `scimsync allow-deletes`.",
                r.outcome.held,
                r.outcome
                    .held_reason
                    .as_deref()
                    .unwrap_or("deletion safeguards")
            );
            crate::notify::send(
                &rt.settings.notify,
                &crate::notify::event(kind, r.id, &summary, json!({"held": r.outcome.held})),
            );
        }
        Some(kind) => crate::notify::send(
            &rt.settings.notify,
            &crate::notify::event(
                kind,
                r.id,
                "No destructive action is held any more.",
                json!({}),
            ),
        ),
        None => {}
    }
    if sent != before {
        rt.state.set_meta(
            Fact::Notified,
            Some(&serde_json::to_string(&sent).unwrap_or_default()),
        )?;
    }
    Ok(())
}

fn notifying(cfg: &crate::config::Notify) -> bool {
    cfg.command.is_some() || cfg.webhook.is_some() || cfg.email.is_some()
}

fn sent_notices(state: &State) -> Result<crate::notify::Sent, Error> {
    Ok(state
        .meta(Fact::Notified)?
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or_default())
}

/// The first 20 failing objects with their names and errors, for the message.
fn failing_objects(state: &State, escrows: &[crate::state::Escrow]) -> Result<Vec<Value>, Error> {
    let mut out = vec![];
    for e in escrows.iter().take(20) {
        let display = state
            .logs(&crate::state::LogQuery {
                object: Some(e.source_id.to_string()),
                limit: Some(1),
                ..Default::default()
            })?
            .into_iter()
            .next()
            .map(|l| l.display)
            .unwrap_or_else(|| e.source_id.to_string());
        out.push(
            json!({"kind": e.kind, "id": e.source_id, "display": display, "error": e.last_error}),
        );
    }
    Ok(out)
}

/// A script edit the daemon could not load: sent once per distinct error.
pub fn notify_reload_failed(rt: &mut Runtime, message: &str) {
    if !notifying(&rt.settings.notify) {
        return;
    }
    let result = (|| -> Result<(), Error> {
        let mut sent = sent_notices(&rt.state)?;
        if !sent.reload_due(message, crate::clock::now(), rt.settings.notify.repeat) {
            return Ok(());
        }
        let cycle = rt.state.cycles(1)?.first().map(|c| c.id).unwrap_or(0);
        crate::notify::send(
            &rt.settings.notify,
            &crate::notify::event(
                crate::notify::Kind::ScriptReload,
                cycle,
                &format!("The edited scripts were not loaded: {message}"),
                json!({"scripts": rt.settings.scripts_dir}),
            ),
        );
        rt.state.set_meta(
            Fact::Notified,
            Some(&serde_json::to_string(&sent).unwrap_or_default()),
        )
    })();
    if let Err(e) = result {
        log::warn!("notification not sent: {e}");
    }
}

/// How long the daemon waits before the next cycle: the interval, stretched while in
/// quarantine (doubling per quarantined cycle, at most a day).
pub fn next_delay(state: &State, interval: Duration) -> Result<Duration, Error> {
    Ok(match quarantine_state(state)? {
        Some(q) => interval
            .saturating_mul(1u32 << q.level.min(16))
            .min(Duration::from_secs(86_400))
            .max(interval),
        None => interval,
    })
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
        "duration_ms": (r.duration.as_secs_f64() * 1e6).round() / 1e3,
        "unchanged": r.unchanged,
        "quarantine": r.quarantine,
        "assigned": r.assigned.map(|(u, g)| json!({"users": u, "groups": g})),
    })
}

/// The second read, once the plan knows whom it disables: where suspending an
/// invited member deletes it (Dropbox), those disables are planned as what they
/// are, deletes. A target that cannot tell leaves them disables (warned).
fn invited(target: &mut dyn Target, plan: &mut Plan, facts: &mut crate::gather::Facts) {
    if !target.profile().suspending_invited_deletes {
        return;
    }
    let ids: Vec<String> = plan
        .actions
        .iter()
        .filter(|a| a.op == crate::plan::Op::Disable && a.kind == ObjectKind::User)
        .filter_map(|a| a.target_id.clone())
        .collect();
    if ids.is_empty() {
        return;
    }
    match target.invited(&ids) {
        Ok(invited) => {
            crate::plan::invited_disables_are_deletes(plan, &invited);
            facts.invited = invited.into_iter().collect();
        }
        Err(e) => log::warn!("could not tell which members are invited: {}", e.message),
    }
}
