//! Apply: the only code that writes to a target.
//!
//! It does what the plan says, in the plan's order, and nothing the plan did not
//! decide: actions the gate holds are logged as staged; deletes that free a name a
//! create takes run first; then updates, enables, adoptions and creates, then
//! memberships; then the other destructive actions, unless the target as a whole
//! failed this cycle (the gate's rule); then the bookkeeping. The only writes it
//! adds are repairs of what changed after the plan was made (an object deleted
//! behind its back is created again). Whatever did not complete is reported as
//! incomplete, to be planned again. Every outcome becomes state writes — links,
//! memberships, a provisioning-log entry, escrow — flushed one transaction per
//! batch.

mod ahead;
mod made;

use crate::error::Error;
use crate::evaluate::desired_active;
use crate::gate::Gate;
use crate::model::ObjectKind;
use crate::plan::{hash_attrs, Action, Op, Plan, PlannedChange};
use crate::scim::attribute::{match_key, shown, stored, Attrs};
use crate::state::{Incomplete, Link, LinkMap, LogAction, LogEntry, LogStatus, Modified, State};
use crate::targets::pool::{self, Call};
use crate::targets::{Change, ErrorClass, Target, TargetError};
use ahead::Ahead;
use made::{Made, MadeUsers};
use serde_json::Value;
use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap, HashSet};

/// State writes per transaction.
pub const BATCH: usize = 200;

pub struct ApplyOptions {
    pub gate: Gate,
    /// Matching attributes (users, groups): what a create is written ahead with,
    /// and the names a delete frees.
    pub user_matching: Vec<String>,
    pub group_matching: Vec<String>,
    /// Checked between actions: set, the cycle ends after the object in flight.
    pub stop: Option<std::sync::Arc<std::sync::atomic::AtomicBool>>,
    pub escrow_backoff: std::time::Duration,
    pub escrow_max: std::time::Duration,
    /// Where the plan's creates keep their attributes until they are sent.
    pub spill: Option<std::rc::Rc<crate::evaluate::Spill>>,
}

/// What a cycle's apply did.
#[derive(Debug, Default, Clone)]
pub struct Outcome {
    /// (action, status) → count, e.g. (create, success).
    pub counts: BTreeMap<(LogAction, LogStatus), usize>,
    pub failures: usize,
    /// Failures that came from the target (not scripts or validation).
    pub target_errors: usize,
    /// Target errors that point at the target as a whole (auth, down).
    pub systemic_errors: usize,
    /// Destructive actions held by the threshold or the shrink guard, and why.
    pub held: usize,
    pub held_reason: Option<String>,
    /// Destructive actions not run because the target had errors.
    pub withheld: usize,
    pub first_error: Option<String>,
    /// Stopped by a signal before every action ran.
    pub interrupted: bool,
    /// The first error that pointed at the target as a whole.
    pub first_systemic: Option<TargetError>,
    /// Objects whose planned action did not complete (held, withheld, waiting, kept,
    /// re-created): planned again next cycle, with why.
    pub incomplete: Vec<Incomplete>,
    /// Objects that failed this cycle (escrowed).
    pub failed: HashSet<(ObjectKind, String)>,
}

enum Write {
    Link(Link),
    Unlink(ObjectKind, String),
    AddMember(String, String),
    RemoveMember(String, String),
    Log(LogEntry),
    Escrow(ObjectKind, String, String),
    ClearEscrow(ObjectKind, String),
    /// A user's grace period before removal starts: since, why.
    Leaver(String, i64, String),
    /// A user is back: no longer a leaver.
    Stayed(String),
}

struct Applier<'a> {
    plan: &'a Plan,
    target: &'a mut dyn Target,
    state: &'a mut State,
    cycle: i64,
    opts: &'a ApplyOptions,
    users: LinkMap,
    groups: LinkMap,
    /// Users created this cycle, by key (`ids::key`): what later actions ask of
    /// them. A `Link` each was 380 bytes; at a million creates this is about 60.
    made: MadeUsers,
    writes: Vec<Write>,
    outcome: Outcome,
    /// First calls of the actions ahead, under way on the worker pool.
    ahead: Ahead,
    /// Objects with an escrow entry: only theirs is cleared on success (a DELETE
    /// per provisioned object would be a tenth of the cost of an initial cycle).
    escrowed: HashSet<(ObjectKind, String)>,
    /// Objects that failed in this cycle.
    failed: HashSet<(ObjectKind, String)>,
    /// Names (kind, matching path, key) a delete was to free but did not: creates
    /// that take them wait.
    blocked_names: HashMap<(ObjectKind, String, String), String>,
    /// Creates in doubt looked for and not found: nothing to remember any more.
    not_there: HashSet<(ObjectKind, String)>,
}

/// Runs a plan against the target and records everything in the state.
pub fn apply(
    plan: &Plan,
    target: &mut dyn Target,
    state: &mut State,
    cycle: i64,
    opts: &ApplyOptions,
) -> Result<Outcome, Error> {
    let links = (
        state.links(ObjectKind::User)?,
        state.links(ObjectKind::Group)?,
    );
    apply_with_links(plan, target, state, cycle, opts, links)
}

/// `apply`, with the links the plan was made from (the state's, unchanged since).
pub fn apply_with_links(
    plan: &Plan,
    target: &mut dyn Target,
    state: &mut State,
    cycle: i64,
    opts: &ApplyOptions,
    links: crate::state::Links,
) -> Result<Outcome, Error> {
    let (mut users, mut groups) = links;
    // Room for the links the plan makes: grown by doubling, a table holds its
    // old and new buffers at once (20 MB at 100,000 creates).
    let new = |kind: ObjectKind, ops: &[Op]| {
        let made = |a: &&Action| a.kind == kind && ops.contains(&a.op);
        plan.actions.iter().filter(made).count()
    };
    let made = MadeUsers::new(&plan.actions);
    users.reserve(new(ObjectKind::User, &[Op::Adopt]));
    groups.reserve(new(ObjectKind::Group, &[Op::Create, Op::Adopt]));
    let escrowed = state
        .escrows()?
        .into_iter()
        .filter_map(|e| Some((ObjectKind::parse(&e.kind)?, e.source_id)))
        .collect();
    let mut a = Applier {
        plan,
        target,
        state,
        cycle,
        opts,
        users,
        groups,
        made,
        writes: vec![],
        outcome: Outcome::default(),
        ahead: Ahead::default(),
        escrowed,
        failed: HashSet::new(),
        blocked_names: HashMap::new(),
        not_there: HashSet::new(),
    };
    let in_doubt: Vec<crate::state::Pending> = a
        .state
        .pending()?
        .into_iter()
        .filter(|p| p.attrs.is_some())
        .collect();
    let (held, live): (Vec<&Action>, Vec<&Action>) = plan.actions.iter().partition(|x| x.held);
    let (destructive, rest): (Vec<&Action>, Vec<&Action>) =
        live.into_iter().partition(|x| x.op.is_destructive());
    let (bookkeeping, constructive): (Vec<&Action>, Vec<&Action>) = rest
        .into_iter()
        .partition(|x| matches!(x.op, Op::Skip | Op::Fail | Op::Forget));
    let (freeing, destructive): (Vec<&Action>, Vec<&Action>) =
        destructive.into_iter().partition(|x| x.frees_name);
    // Forgetting sends nothing; done first, it lets a new object adopt the account
    // of one that is no longer managed.
    let (forgets, bookkeeping): (Vec<&Action>, Vec<&Action>) =
        bookkeeping.into_iter().partition(|x| x.op == Op::Forget);
    for action in forgets {
        a.run(action)?;
    }
    a.refresh(plan)?;
    let progress = Progress::new(constructive.len() + freeing.len() + destructive.len());
    // A name a deleted object holds is freed before a new object takes it; if it
    // is not (the delete failed or is held), the create waits instead of failing.
    a.run_destructive(&freeing, &progress)?;
    for x in freeing.iter().chain(&held).filter(|x| x.frees_name) {
        if a.is_linked(x.kind, &x.source_id) {
            a.block_names_of(x)?;
        }
    }
    a.write_ahead(&constructive)?;
    a.run_constructive(&constructive, &progress)?;
    a.flush()?;
    if a.outcome.interrupted {
        return Ok(a.outcome);
    }
    a.stage(&held, plan.held.as_deref());
    if opts.gate.withholds(a.outcome.systemic_errors) {
        for action in &destructive {
            a.outcome.withheld += 1;
            a.log(
                action,
                logged(action.op),
                LogStatus::Skipped,
                "not run: the target failed as a whole this cycle",
                vec![],
                None,
            );
            a.incomplete(action, "withheld: the target had errors");
        }
    } else {
        a.run_destructive(&destructive, &progress)?;
    }
    for action in bookkeeping {
        a.run(action)?;
    }
    a.refresh_members(plan)?;
    a.flush()?;
    progress.finish();
    // A create in doubt is remembered until its object is linked or known absent.
    for p in in_doubt {
        let key = (p.kind, p.source_id.clone());
        if !a.is_linked(p.kind, &p.source_id) && !a.not_there.contains(&key) {
            a.outcome.incomplete.push(Incomplete {
                kind: p.kind,
                source_id: p.source_id,
                reason: p.reason,
                attrs: p.attrs,
            });
        }
    }
    a.outcome.failed = std::mem::take(&mut a.failed);
    Ok(a.outcome)
}

/// A progress bar on a terminal; on a service, a log line every tenth of the way.
struct Progress {
    bar: Option<indicatif::ProgressBar>,
    total: usize,
    done: std::cell::Cell<usize>,
}

impl Progress {
    fn new(total: usize) -> Progress {
        use std::io::IsTerminal;
        let bar = (total > 0 && std::io::stderr().is_terminal()).then(|| {
            let b = indicatif::ProgressBar::new(total as u64);
            if let Ok(style) = indicatif::ProgressStyle::with_template(
                "{bar:40} {pos}/{len} actions {elapsed_precise} (eta {eta})",
            ) {
                b.set_style(style);
            }
            b
        });
        Progress {
            bar,
            total,
            done: std::cell::Cell::new(0),
        }
    }

    fn step(&self) {
        let n = self.done.get() + 1;
        self.done.set(n);
        match &self.bar {
            Some(b) => b.inc(1),
            None if self.total >= 1000 && n.is_multiple_of((self.total / 10).max(1)) => {
                log::info!("{n}/{} actions applied", self.total)
            }
            None => {}
        }
    }

    fn finish(&self) {
        if let Some(b) = &self.bar {
            b.finish_and_clear();
        }
    }
}

/// The log's name for what an action does.
fn logged(op: Op) -> LogAction {
    match op {
        Op::Create => LogAction::Create,
        Op::Adopt => LogAction::Adopt,
        Op::Update => LogAction::Update,
        Op::Enable => LogAction::Enable,
        Op::Disable => LogAction::Disable,
        Op::Delete => LogAction::Delete,
        Op::AddMembers => LogAction::AddMembers,
        Op::RemoveMembers => LogAction::RemoveMembers,
        Op::Forget => LogAction::Forget,
        Op::Skip => LogAction::Skip,
        Op::Fail => LogAction::Evaluate,
    }
}

fn modified_from(attrs: &Attrs, changes: &[PlannedChange]) -> Vec<Modified> {
    changes
        .iter()
        .map(|c| Modified {
            name: c.path.clone(),
            old: shown(attrs, &c.path, &c.old),
            new: shown(attrs, &c.path, &c.new),
        })
        .collect()
}

fn all_as_new(attrs: &Attrs) -> Vec<Modified> {
    attrs
        .iter()
        .filter(|(k, v)| !v.is_null() && !k.starts_with('$'))
        .map(|(k, v)| Modified {
            name: k.to_string(),
            old: Value::Null,
            new: shown(attrs, k, v),
        })
        .collect()
}

/// An action's matching attributes: what finds its object again.
fn matching_attrs(opts: &ApplyOptions, a: &Action) -> Result<Attrs, Error> {
    let matching = match a.kind {
        ObjectKind::User => &opts.user_matching,
        ObjectKind::Group => &opts.group_matching,
    };
    // A spilled create's matching values were kept apart from the rest in the
    // spill: read alone, not with every attribute.
    let attrs = match (a.spilled, &opts.spill) {
        (Some(row), Some(spill)) if a.attrs.is_empty() => Cow::Owned(spill.kept(row)?),
        _ => attrs_for(a, opts.spill.as_deref())?,
    };
    Ok(matching
        .iter()
        .filter_map(|p| Some((p.clone(), attrs.get(p)?.clone())))
        .collect())
}

/// A create's attributes: read back from the spill where the plan put them
/// aside (a plan that spills keeps none of them: `cycle::prepare`).
fn attrs_for<'x>(
    a: &'x Action,
    spill: Option<&crate::evaluate::Spill>,
) -> Result<Cow<'x, Attrs>, Error> {
    crate::evaluate::spill::attrs_back(&a.attrs, a.spilled, spill, &a.display)
}

/// Creates on the pool's wire and the actions they are for, oldest first, with
/// the attributes of those the spill held (read back once, for the request and
/// for the record).
struct Creates<'p> {
    wire: pool::Wire,
    flying: std::collections::VecDeque<(&'p Action, Option<Attrs>)>,
    /// Creates sent ahead of the answer the core records: enough that a worker
    /// finishing a call finds the next one waiting.
    window: usize,
}

impl<'p> Creates<'p> {
    fn new(wire: pool::Wire, in_flight: usize) -> Creates<'p> {
        Creates {
            wire,
            flying: Default::default(),
            window: in_flight * pool::PER_WORKER,
        }
    }

    fn send(&mut self, a: &'p Action, attrs: Cow<'p, Attrs>) {
        self.wire.send(Call::Create {
            kind: a.kind,
            attrs: attrs.clone().into_owned(),
        });
        let kept = match attrs {
            Cow::Owned(full) => Some(full),
            Cow::Borrowed(_) => None,
        };
        self.flying.push_back((a, kept));
    }

    /// The oldest create's action, its attributes and its answer.
    fn next(&mut self) -> Option<(&'p Action, Cow<'p, Attrs>, Result<String, TargetError>)> {
        let (a, kept) = self.flying.pop_front()?;
        let result = match self.wire.answer() {
            Some(Ok(pool::Answer::Created(id))) => Ok(id),
            Some(Err(e)) => Err(e),
            _ => Err(TargetError::new(
                crate::http::ErrorClass::Transport,
                None,
                "a create came back without an id",
            )),
        };
        let attrs = kept.map_or(Cow::Borrowed(&a.attrs), Cow::Owned);
        Some((a, attrs, result))
    }
}

impl Applier<'_> {
    /// Creates are written ahead, committed before any is sent: should this process
    /// die before their answers are recorded, the next cycle still knows the target
    /// may hold these objects, and finds them (one transaction for all of them).
    fn write_ahead(&mut self, creates: &[&Action]) -> Result<(), Error> {
        let creates: Vec<&Action> = creates
            .iter()
            .copied()
            .filter(|a| a.op == Op::Create && !a.adopt_only)
            .collect();
        if creates.is_empty() {
            return Ok(());
        }
        self.flush()?;
        // Built a chunk at a time: 100,000 intents at once are tens of MB.
        let opts = self.opts;
        self.state.write(|w| {
            for chunk in creates.chunks(BATCH) {
                // Only what finds the object again: its matching attributes.
                let intents: Vec<Incomplete> = chunk
                    .iter()
                    .map(|a| {
                        Ok(Incomplete {
                            kind: a.kind,
                            source_id: a.source_id.clone(),
                            reason: "create sent; its answer was not recorded".into(),
                            attrs: Some(matching_attrs(opts, a)?),
                        })
                    })
                    .collect::<Result<_, Error>>()?;
                w.set_pending(&intents, true)?;
            }
            Ok(())
        })?;
        Ok(())
    }

    /// Updates, enables, adoptions, creates and memberships, in plan order; creates
    /// batched where the target takes batches, or on the worker pool's wire.
    fn run_constructive(
        &mut self,
        constructive: &[&Action],
        progress: &Progress,
    ) -> Result<(), Error> {
        // Users the target does not know yet are created in batches where it takes them
        // (the Business API adds up to 20 per call, SCIM servers offering Bulk more).
        // With a worker pool, creates go on the wire one by one, several at once.
        let batch_size = self.target.create_batch_size().max(1);
        let mut wire = match constructive.iter().any(|a| a.op == Op::Create) {
            true => self
                .target
                .wire()
                .map(|w| Creates::new(w, self.target.max_in_flight())),
            false => None,
        };
        let mut pending: Vec<&Action> = vec![];
        self.ahead_begin(0);
        for (i, action) in constructive.iter().enumerate() {
            let batched_kind = action.kind == ObjectKind::User || self.target.max_in_flight() > 1;
            let batched = batch_size > 1 && action.op == Op::Create && batched_kind;
            // Anything else may need what the creates on the wire answer (a new
            // member's id), and is not sent beside them.
            if !batched {
                self.land(&mut wire, 0)?;
            }
            // A stop waits for the answers already run ahead: they are recorded first.
            if (!self.ahead.holds_answers() || i >= self.ahead.next) && self.stopping() {
                break;
            }
            self.prefetch(constructive, i);
            if action.op == Op::Create && self.waits_for_name(action)? {
                progress.step();
                continue;
            }
            if batched {
                self.unlink_gone(action)?;
                if let Some(w) = wire.as_mut() {
                    w.send(action, self.attrs_of(action)?);
                    let window = w.window;
                    self.land(&mut wire, window)?;
                    progress.step();
                    continue;
                }
                if pending.first().is_some_and(|p| p.kind != action.kind) {
                    self.create_new(&pending)?;
                    pending.clear();
                }
                pending.push(action);
                if pending.len() >= batch_size {
                    self.create_new(&pending)?;
                    pending.clear();
                }
                progress.step();
                continue;
            }
            if !pending.is_empty() {
                self.create_new(&pending)?;
                pending.clear();
            }
            self.run(action)?;
            progress.step();
        }
        self.land(&mut wire, 0)?;
        self.ahead_begin(constructive.len());
        self.create_new(&pending)
    }

    /// Records the answers of creates on the wire, oldest first, until no more
    /// than `keep` are unanswered.
    fn land(&mut self, wire: &mut Option<Creates>, keep: usize) -> Result<(), Error> {
        let Some(w) = wire.as_mut() else {
            return Ok(());
        };
        while w.flying.len() > keep {
            let Some((a, attrs, result)) = w.next() else {
                break;
            };
            self.record_create(a, &attrs, result)?;
        }
        Ok(())
    }

    /// Links brought up to date without a request, before any action runs (an
    /// action on the same object then records on top of them).
    fn refresh(&mut self, plan: &Plan) -> Result<(), Error> {
        for r in &plan.refresh {
            let link = Link {
                kind: r.kind,
                source_id: r.source_id.clone(),
                target_id: r.target_id.clone(),
                display: r.display.clone(),
                hash: hash_attrs(&r.attrs),
                attrs: stored(&r.attrs),
                active: r.active,
                disabled_reason: r.disabled_reason.clone(),
            };
            self.links_mut(r.kind)
                .insert(r.source_id.clone(), Box::new(link.clone()));
            self.push(Write::Link(link))?;
        }
        Ok(())
    }

    /// Memberships recorded as the target has them (nothing sent), for groups and
    /// users that are linked once the actions ran.
    fn refresh_members(&mut self, plan: &Plan) -> Result<(), Error> {
        for (group, user, member) in &plan.member_refresh {
            if !self.groups.contains_key(group) {
                continue;
            }
            let w = if *member && self.is_linked(ObjectKind::User, user) {
                Write::AddMember(group.clone(), user.clone())
            } else if *member {
                continue;
            } else {
                Write::RemoveMember(group.clone(), user.clone())
            };
            self.push(w)?;
        }
        Ok(())
    }

    /// Actions the gate holds: logged as staged, planned again next cycle.
    fn stage(&mut self, held: &[&Action], why: Option<&str>) {
        if let Some(why) = why {
            self.outcome.held_reason = Some(why.to_string());
        }
        for action in held {
            if action.op == Op::Create {
                let why = action.held_reason().unwrap_or_default().to_string();
                self.log(
                    action,
                    LogAction::Create,
                    LogStatus::Skipped,
                    &why,
                    vec![],
                    None,
                );
                self.incomplete(action, &why);
                continue;
            }
            self.outcome.held += 1;
            let staged = logged(action.op).staged();
            let why = format!(
                "held: {}; run `scimsync allow-deletes` to release ({})",
                why.unwrap_or("deletion safeguards"),
                action.reason
            );
            self.log(action, staged, LogStatus::Staged, &why, vec![], None);
            self.incomplete(action, "held by the deletion safeguards");
        }
    }

    /// A create of an object whose link is gone from the target (a full cycle saw
    /// it): the link goes first.
    fn unlink_gone(&mut self, a: &Action) -> Result<(), Error> {
        if self.is_linked(a.kind, &a.source_id) {
            self.unlink(a.kind, &a.source_id)?;
        }
        Ok(())
    }

    fn run_destructive(&mut self, actions: &[&Action], progress: &Progress) -> Result<(), Error> {
        self.ahead_begin(0);
        for (i, action) in actions.iter().enumerate() {
            if (!self.ahead.holds_answers() || i >= self.ahead.next) && self.stopping() {
                break;
            }
            self.prefetch(actions, i);
            self.run(action)?;
            progress.step();
        }
        self.ahead_begin(actions.len());
        Ok(())
    }

    /// The matching attributes of a create.
    /// The matching names an object holds, as (kind, path, key).
    fn names(&self, kind: ObjectKind, attrs: &Attrs) -> Vec<(ObjectKind, String, String)> {
        let matching = match kind {
            ObjectKind::User => &self.opts.user_matching,
            ObjectKind::Group => &self.opts.group_matching,
        };
        matching
            .iter()
            .filter_map(|p| {
                let v = attrs.get(p)?.as_str()?;
                Some((kind, p.clone(), match_key(p, v)))
            })
            .collect()
    }

    /// A name-freeing delete that did not run: the names it holds stay taken.
    fn block_names_of(&mut self, a: &Action) -> Result<(), Error> {
        let Some(attrs) = self.link_attrs(a.kind, &a.source_id)? else {
            return Ok(());
        };
        for n in self.names(a.kind, &attrs) {
            self.blocked_names.insert(n, a.display.clone());
        }
        Ok(())
    }

    /// A create whose name is still held by an object whose delete did not run: it
    /// waits (planned again next cycle) instead of failing against the old object.
    fn waits_for_name(&mut self, a: &Action) -> Result<bool, Error> {
        if self.blocked_names.is_empty() {
            return Ok(false);
        }
        let attrs = matching_attrs(self.opts, a)?;
        let Some(holder) = self
            .names(a.kind, &attrs)
            .into_iter()
            .find_map(|n| self.blocked_names.get(&n).cloned())
        else {
            return Ok(false);
        };
        let why = format!(
            "waits for {holder}, which holds the same name in the target, to be deleted first"
        );
        self.log(a, LogAction::Create, LogStatus::Skipped, &why, vec![], None);
        self.incomplete(a, &why);
        Ok(true)
    }

    fn incomplete(&mut self, a: &Action, why: &str) {
        self.outcome.incomplete.push(Incomplete {
            kind: a.kind,
            source_id: a.source_id.clone(),
            reason: why.to_string(),
            attrs: None,
        });
    }

    /// Drops a link whose target object is gone, so the object can be created again.
    /// Memberships go with it: the groups involved are planned again next cycle.
    fn unlink(&mut self, kind: ObjectKind, source_id: &str) -> Result<(), Error> {
        let why = "re-created in the target";
        let groups = match kind {
            ObjectKind::User => self.state.groups_of(source_id)?,
            ObjectKind::Group => vec![source_id.to_string()],
        };
        for g in groups {
            self.outcome.incomplete.push(Incomplete {
                kind: ObjectKind::Group,
                reason: format!("member {source_id} {why}"),
                source_id: g,
                attrs: None,
            });
        }
        self.forget_link(kind, source_id);
        self.push(Write::Unlink(kind, source_id.to_string()))
    }

    /// Keeps the first calls of the actions after `i` under way on the worker
    /// pool, a window ahead of the core: actions that share the op and kind of
    /// the run's first and each name an object no other action of the window
    /// names (so no answer depends on another). Only calls the action is certain
    /// to make go ahead; the action then takes its answer instead of asking.
    fn prefetch(&mut self, actions: &[&Action], i: usize) {
        if self.target.max_in_flight() <= 1 {
            return;
        }
        if i >= self.ahead.next {
            self.ahead_begin(i);
        }
        let limit = self.target.max_in_flight() * pool::PER_WORKER;
        let first = actions[self.ahead.first];
        // Creates go on a wire of their own; what sends nothing has nothing to run ahead.
        if !matches!(
            first.op,
            Op::Adopt
                | Op::Update
                | Op::Enable
                | Op::Disable
                | Op::Delete
                | Op::AddMembers
                | Op::RemoveMembers
        ) {
            self.ahead.next = i + 1;
            return;
        }
        while !self.ahead.closed && self.ahead.in_flight() < limit && self.ahead.next - i < limit {
            let next = self.ahead.next;
            let joins = actions.get(next).filter(|x| {
                x.op == first.op
                    && x.kind == first.kind
                    && !actions[i..next].iter().any(|w| w.source_id == x.source_id)
            });
            // Nothing more is sent once a stop is asked for.
            let Some(x) = joins.filter(|_| !self.stop_asked()) else {
                self.ahead.closed = true;
                break;
            };
            if let Some(c) = self.first_call(x) {
                let target = &mut *self.target;
                self.ahead.send(c, || target.call_wire());
            }
            self.ahead.next += 1;
        }
    }

    /// A new run of calls ahead starts at action `i` (of a new list at 0).
    fn ahead_begin(&mut self, i: usize) {
        for c in self.ahead.begin(i) {
            log::debug!("an answer run ahead was not used: {c:?}");
        }
    }

    /// The call an action will make first, when that is certain from what the
    /// applier knows now (creates themselves are batched, not run ahead).
    fn first_call(&self, a: &Action) -> Option<Call> {
        let kind = a.kind;
        match a.op {
            Op::Adopt if !a.changes.is_empty() => Some(Call::Modify {
                kind,
                id: a.target_id.clone()?,
                changes: a.changes.iter().map(PlannedChange::to_change).collect(),
            }),
            Op::Update if !a.changes.is_empty() => Some(Call::Modify {
                kind,
                id: self.target_id(a)?,
                changes: a.changes.iter().map(PlannedChange::to_change).collect(),
            }),
            Op::Enable | Op::Disable => Some(Call::Modify {
                kind,
                id: self.target_id(a)?,
                changes: vec![active_change(a.op == Op::Enable)],
            }),
            Op::Delete => Some(Call::Delete {
                kind,
                id: self.target_id(a)?,
            }),
            Op::AddMembers | Op::RemoveMembers => {
                let group = self.target_id(a)?;
                let (users, _, _) = self.member_targets(a);
                if users.is_empty() {
                    return None;
                }
                Some(if a.op == Op::AddMembers {
                    Call::AddMembers { group, users }
                } else {
                    Call::RemoveMembers { group, users }
                })
            }
            _ => None,
        }
    }

    /// A target call: the answer run ahead if there is one, else asked now.
    fn call(&mut self, c: Call) -> pool::Reply {
        match self.ahead.take(&c) {
            Some(r) => r,
            None => pool::execute(self.target, &c),
        }
    }

    fn modify(
        &mut self,
        kind: ObjectKind,
        id: &str,
        changes: Vec<Change>,
    ) -> Result<(), TargetError> {
        self.call(Call::Modify {
            kind,
            id: id.to_string(),
            changes,
        })
        .map(|_| ())
    }

    /// Target ids, display names and source ids of an action's members that are
    /// provisioned.
    fn member_targets(&self, a: &Action) -> (Vec<String>, Vec<Value>, Vec<String>) {
        let mut ids = vec![];
        let mut names = vec![];
        let mut sources = vec![];
        for m in &a.members {
            let found = match self.users.get(m) {
                Some(l) => Some((l.target_id.as_str(), l.display.as_str())),
                None => self
                    .made
                    .get(crate::ids::key(m))
                    .map(|u| (&*u.target_id, self.made_name(u))),
            };
            if let Some((id, name)) = found {
                ids.push(id.to_string());
                names.push(Value::String(name.to_string()));
                sources.push(m.clone());
            }
        }
        (ids, names, sources)
    }

    fn stop_asked(&self) -> bool {
        let stop = self.opts.stop.as_ref();
        stop.is_some_and(|s| s.load(std::sync::atomic::Ordering::Relaxed))
    }

    fn stopping(&mut self) -> bool {
        let stop = self.stop_asked();
        if stop {
            self.outcome.interrupted = true;
        }
        stop
    }

    fn flush(&mut self) -> Result<(), Error> {
        if self.writes.is_empty() {
            return Ok(());
        }
        let writes = std::mem::take(&mut self.writes);
        self.state.write(|w| {
            for x in &writes {
                match x {
                    Write::Link(l) => w.upsert_link(l)?,
                    Write::Unlink(k, id) => w.delete_link(*k, id)?,
                    Write::AddMember(g, u) => w.add_membership(g, u)?,
                    Write::RemoveMember(g, u) => w.remove_membership(g, u)?,
                    Write::Log(e) => w.log(e)?,
                    Write::Escrow(k, id, err) => {
                        let (base, max) = (self.opts.escrow_backoff, self.opts.escrow_max);
                        w.escrow(*k, id, err, &|n| escrow_backoff(n, base, max))?
                    }
                    Write::ClearEscrow(k, id) => w.clear_escrow(*k, id)?,
                    Write::Leaver(id, since, why) => w.leaver(id, *since, why)?,
                    Write::Stayed(id) => w.stayed(id)?,
                }
            }
            Ok(())
        })
    }

    fn push(&mut self, w: Write) -> Result<(), Error> {
        self.writes.push(w);
        if self.writes.len() >= BATCH {
            self.flush()?;
        }
        Ok(())
    }

    fn log(
        &mut self,
        a: &Action,
        action: LogAction,
        status: LogStatus,
        reason: &str,
        modified: Vec<Modified>,
        error: Option<String>,
    ) {
        *self.outcome.counts.entry((action, status)).or_insert(0) += 1;
        let target_id = a
            .target_id
            .clone()
            .or_else(|| self.linked_target(a.kind, &a.source_id));
        self.writes.push(Write::Log(LogEntry {
            id: 0,
            cycle: self.cycle,
            at: crate::clock::now(),
            kind: a.kind.as_str().to_string(),
            source_id: a.source_id.clone(),
            target_id,
            display: a.display.clone(),
            action,
            status,
            reason: reason.to_string(),
            modified,
            error,
        }));
    }

    fn links(&self, kind: ObjectKind) -> &LinkMap {
        match kind {
            ObjectKind::User => &self.users,
            ObjectKind::Group => &self.groups,
        }
    }

    fn links_mut(&mut self, kind: ObjectKind) -> &mut LinkMap {
        match kind {
            ObjectKind::User => &mut self.users,
            ObjectKind::Group => &mut self.groups,
        }
    }

    /// The user created this cycle under this source id.
    /// Where a planned action sits in the plan (`u32::MAX` for one apply made up,
    /// which no `Made` holds: see `record_link`).
    fn index_of(&self, a: &Action) -> u32 {
        let base = self.plan.actions.as_ptr() as usize;
        let at = (a as *const Action as usize).wrapping_sub(base) / std::mem::size_of::<Action>();
        match self.plan.actions.get(at) {
            Some(x) if std::ptr::eq(x, a) => u32::try_from(at).unwrap_or(u32::MAX),
            _ => u32::MAX,
        }
    }

    /// A created user's name: its create's.
    fn made_name<'x>(&'x self, m: &Made) -> &'x str {
        let create = usize::try_from(m.action)
            .ok()
            .and_then(|i| self.plan.actions.get(i));
        create.map(|a| a.display.as_str()).unwrap_or_default()
    }

    fn made(&self, kind: ObjectKind, source_id: &str) -> Option<&Made> {
        match kind {
            ObjectKind::User => self.made.get(crate::ids::key(source_id)),
            ObjectKind::Group => None,
        }
    }

    /// Whether the object is linked as of now (before or during this cycle).
    fn is_linked(&self, kind: ObjectKind, source_id: &str) -> bool {
        self.links(kind).contains_key(source_id) || self.made(kind, source_id).is_some()
    }

    /// The target id the object is linked to as of now.
    fn linked_target(&self, kind: ObjectKind, source_id: &str) -> Option<String> {
        match self.links(kind).get(source_id) {
            Some(l) => Some(l.target_id.clone()),
            None => self.made(kind, source_id).map(|u| u.target_id.to_string()),
        }
    }

    fn forget_link(&mut self, kind: ObjectKind, source_id: &str) {
        self.links_mut(kind).remove(source_id);
        if kind == ObjectKind::User {
            self.made.remove(crate::ids::key(source_id));
        }
    }

    fn record_link(
        &mut self,
        a: &Action,
        target_id: &str,
        attrs: &Attrs,
        active: bool,
        disabled_reason: Option<String>,
    ) -> Result<(), Error> {
        let link = Link {
            kind: a.kind,
            source_id: a.source_id.clone(),
            target_id: target_id.to_string(),
            display: a.display.clone(),
            hash: String::new(),
            attrs: Attrs::new(),
            active,
            disabled_reason: if active { None } else { disabled_reason },
        };
        // Kept slim in memory (no attributes, no hash): only the state holds them;
        // at 100,000 creates a second copy was a third of the cycle's peak. A
        // created user (by a create of the plan) is slimmer still.
        let slim =
            a.kind == ObjectKind::User && a.op == Op::Create && link.disabled_reason.is_none();
        let planned = slim.then(|| self.index_of(a)).filter(|&i| i != u32::MAX);
        let made = planned.map(|action| Made {
            target_id: target_id.into(),
            action,
            active,
        });
        let kept = made.is_some_and(|made| {
            self.users.remove(&a.source_id);
            self.made.insert(crate::ids::key(&a.source_id), made)
        });
        if !kept {
            self.forget_link(a.kind, &a.source_id);
            self.links_mut(a.kind)
                .insert(a.source_id.clone(), Box::new(link.clone()));
        }
        self.push(Write::Link(Link {
            attrs: stored(attrs),
            hash: hash_attrs(attrs),
            ..link
        }))?;
        self.clear_escrow(a)
    }

    /// The attributes a link holds, from memory or, for a link recorded this
    /// cycle (slim: no hash in memory), from the state after writing what waits.
    fn link_attrs(&mut self, kind: ObjectKind, source_id: &str) -> Result<Option<Attrs>, Error> {
        if self.made(kind, source_id).is_some() {
            self.flush()?;
            return self.state.link_attrs(kind, source_id);
        }
        match self.links(kind).get(source_id) {
            Some(l) if l.hash.is_empty() => {
                self.flush()?;
                self.state.link_attrs(kind, source_id)
            }
            found => Ok(found.map(|l| l.attrs.clone())),
        }
    }

    fn clear_escrow(&mut self, a: &Action) -> Result<(), Error> {
        if self.escrowed.remove(&(a.kind, a.source_id.clone())) {
            self.push(Write::ClearEscrow(a.kind, a.source_id.clone()))?;
        }
        Ok(())
    }

    fn fail(&mut self, a: &Action, action: LogAction, e: &TargetError) -> Result<(), Error> {
        self.outcome.failures += 1;
        self.outcome.target_errors += 1;
        if e.is_systemic() {
            self.outcome.systemic_errors += 1;
            if self.outcome.first_systemic.is_none() {
                self.outcome.first_systemic = Some(e.clone());
            }
        }
        if self.outcome.first_error.is_none() {
            self.outcome.first_error = Some(e.message.clone());
        }
        log::warn!(
            "{} {} {}: {}",
            action,
            a.kind.as_str(),
            a.display,
            e.message
        );
        self.log(
            a,
            action,
            LogStatus::Failure,
            &a.reason,
            vec![],
            Some(e.message.clone()),
        );
        // A create whose answer was lost (and not found when looked for) may have
        // made the object: remembered with what it sent, so that a later cycle finds
        // it even if the object is then no longer to be created.
        if action == LogAction::Create
            && a.op == Op::Create
            && matches!(e.class, ErrorClass::Transport | ErrorClass::Server)
        {
            self.outcome.incomplete.push(Incomplete {
                kind: a.kind,
                source_id: a.source_id.clone(),
                reason: format!("create in doubt: {}", e.message),
                attrs: Some(self.attrs_of(a)?.into_owned()),
            });
        }
        self.escrowed.insert((a.kind, a.source_id.clone()));
        self.failed.insert((a.kind, a.source_id.clone()));
        self.push(Write::Escrow(
            a.kind,
            a.source_id.clone(),
            e.message.clone(),
        ))
    }

    /// The object's target id as of now: an object re-created earlier in this cycle
    /// has a new one.
    fn target_id(&self, a: &Action) -> Option<String> {
        self.linked_target(a.kind, &a.source_id)
            .or_else(|| a.target_id.clone())
    }

    fn run(&mut self, a: &Action) -> Result<(), Error> {
        match a.op {
            Op::Create => self.create(a),
            Op::Adopt => self.adopt(a),
            Op::Update => self.update(a),
            Op::Enable | Op::Disable => self.set_active(a, a.op == Op::Enable),
            Op::Delete => self.delete(a),
            Op::AddMembers | Op::RemoveMembers => {
                if a.revisit {
                    self.incomplete(a, "some members are not in the target yet");
                }
                self.members(a)
            }
            Op::Forget => {
                self.forget_link(a.kind, &a.source_id);
                self.log(
                    a,
                    LogAction::Forget,
                    LogStatus::Skipped,
                    &a.reason,
                    vec![],
                    None,
                );
                self.push(Write::Unlink(a.kind, a.source_id.clone()))
            }
            Op::Skip => {
                self.grace(a, false)?;
                self.log(
                    a,
                    LogAction::Skip,
                    LogStatus::Skipped,
                    &a.reason,
                    vec![],
                    None,
                );
                if a.revisit {
                    self.incomplete(a, &a.reason);
                }
                if a.adopt_only {
                    // A create in doubt that made nothing: nothing to remember.
                    self.not_there.insert((a.kind, a.source_id.clone()));
                }
                Ok(())
            }
            // A look-up the plan needed failed: the target's error, for this object.
            Op::Fail if a.error.is_some() => match &a.error {
                Some(e) => self.fail(a, a.step, e.as_ref()),
                None => Ok(()),
            },
            Op::Fail => {
                self.outcome.failures += 1;
                if self.outcome.first_error.is_none() {
                    self.outcome.first_error = Some(a.reason.to_string());
                }
                let (step, why) = match a.step {
                    LogAction::Import => (
                        LogAction::Import,
                        "the directory record is invalid; the object is kept as it was",
                    ),
                    _ => (LogAction::Evaluate, "script error"),
                };
                self.log(
                    a,
                    step,
                    LogStatus::Failure,
                    why,
                    vec![],
                    Some(a.reason.to_string()),
                );
                self.escrowed.insert((a.kind, a.source_id.clone()));
                self.push(Write::Escrow(
                    a.kind,
                    a.source_id.clone(),
                    a.reason.to_string(),
                ))
            }
        }
    }

    /// Creates one object (the plan found nothing to adopt).
    fn create(&mut self, a: &Action) -> Result<(), Error> {
        self.unlink_gone(a)?;
        self.create_new(&[a])
    }

    /// Links an object the target already has, sending the changes the plan
    /// found first. One from a create in doubt is linked as it is; the next cycle
    /// treats it as the directory says, through the gate.
    fn adopt(&mut self, a: &Action) -> Result<(), Error> {
        let Some(id) = a.target_id.clone() else {
            return Ok(());
        };
        if !a.changes.is_empty() {
            let cs: Vec<Change> = a.changes.iter().map(PlannedChange::to_change).collect();
            if let Err(e) = self.modify(a.kind, &id, cs) {
                return self.fail(a, LogAction::Adopt, &e);
            }
        }
        let active = a.active.unwrap_or(true);
        let reason = (!active).then(|| "out_of_scope".to_string());
        self.record_link(a, &id, &a.attrs, active, reason)?;
        self.log(
            a,
            LogAction::Adopt,
            LogStatus::Success,
            &a.reason,
            modified_from(&a.attrs, &a.changes),
            None,
        );
        if a.adopt_only {
            self.incomplete(
                a,
                "linked after a create in doubt; to be treated as the directory says",
            );
        }
        Ok(())
    }

    /// Creates objects that matched nothing, as one batch where the target takes them.
    fn create_new(&mut self, batch: &[&Action]) -> Result<(), Error> {
        let Some(first) = batch.first() else {
            return Ok(());
        };
        let attrs: Vec<Cow<Attrs>> = batch
            .iter()
            .map(|a| self.attrs_of(a))
            .collect::<Result<_, _>>()?;
        let refs: Vec<&Attrs> = attrs.iter().map(|a| a.as_ref()).collect();
        let results = self.target.create_batch(first.kind, &refs);
        for ((a, attrs), r) in batch.iter().zip(&attrs).zip(results) {
            self.record_create(a, attrs, r)?;
        }
        Ok(())
    }

    /// A create's attributes: read back from the spill where the plan put them
    /// aside.
    fn attrs_of<'x>(&self, a: &'x Action) -> Result<Cow<'x, Attrs>, Error> {
        attrs_for(a, self.opts.spill.as_deref())
    }

    /// A create the cycle did not plan (a re-creation after a 404): written ahead
    /// here, where planned ones were all at once, before the first was sent.
    fn create_again(&mut self, a: &Action) -> Result<(), Error> {
        self.write_ahead(&[a])?;
        self.create(a)
    }

    /// Links a created object and logs the create, or fails it if refused.
    fn record_create(
        &mut self,
        a: &Action,
        attrs: &Attrs,
        result: Result<String, TargetError>,
    ) -> Result<(), Error> {
        match result {
            Ok(id) => {
                let active = desired_active(attrs);
                self.record_link(a, &id, attrs, active, None)?;
                self.log(
                    a,
                    LogAction::Create,
                    LogStatus::Success,
                    &a.reason,
                    all_as_new(attrs),
                    None,
                );
                Ok(())
            }
            Err(e) => self.fail(a, LogAction::Create, &e),
        }
    }

    fn update(&mut self, a: &Action) -> Result<(), Error> {
        let Some(id) = self.target_id(a) else {
            return self.create_again(a);
        };
        if !a.changes.is_empty() {
            let cs: Vec<Change> = a.changes.iter().map(PlannedChange::to_change).collect();
            match self.modify(a.kind, &id, cs) {
                Ok(()) => {}
                Err(e) if e.class == ErrorClass::NotFound => return self.gone_from_target(a),
                Err(e) => return self.fail(a, LogAction::Update, &e),
            }
        }
        let prev = self.links(a.kind).get(&a.source_id);
        let made = self.made(a.kind, &a.source_id).map(|u| u.active);
        let active = prev.map(|l| l.active).or(made).unwrap_or(true);
        let reason = prev.and_then(|l| l.disabled_reason.clone());
        self.record_link(a, &id, &a.attrs, active, reason)?;
        if !a.changes.is_empty() {
            self.log(
                a,
                LogAction::Update,
                LogStatus::Success,
                &a.reason,
                modified_from(&a.attrs, &a.changes),
                None,
            );
        }
        Ok(())
    }

    fn set_active(&mut self, a: &Action, active: bool) -> Result<(), Error> {
        let Some(id) = self.target_id(a) else {
            return Ok(());
        };
        let action = if active {
            LogAction::Enable
        } else {
            LogAction::Disable
        };
        match self.modify(a.kind, &id, vec![active_change(active)]) {
            Ok(()) => {}
            Err(e) if e.class == ErrorClass::NotFound && !active => {
                // Already gone (Dropbox deletes invited members it is asked to suspend).
                self.forget_link(a.kind, &a.source_id);
                self.log(
                    a,
                    action,
                    LogStatus::Success,
                    &format!("{}; the object no longer exists in the target", a.reason),
                    vec![],
                    None,
                );
                return self.push(Write::Unlink(a.kind, a.source_id.clone()));
            }
            Err(e) if e.class == ErrorClass::NotFound => {
                self.unlink(a.kind, &a.source_id)?;
                return self.create_again(a);
            }
            Err(e) => return self.fail(a, action, &e),
        }
        // An update of this object that failed this cycle left the target with the
        // old attributes: the link keeps saying so.
        let failed = self.failed.contains(&(a.kind, a.source_id.clone()));
        let attrs = if a.attrs.is_empty() || failed {
            self.link_attrs(a.kind, &a.source_id)?.unwrap_or_default()
        } else {
            a.attrs.clone()
        };
        let mut stored = attrs;
        stored.insert("active", Value::Bool(active));
        self.record_link(
            a,
            &id,
            &stored,
            active,
            a.disabled_reason().map(str::to_string),
        )?;
        self.grace(a, active)?;
        let m = vec![Modified {
            name: "active".into(),
            old: Value::Bool(!active),
            new: Value::Bool(active),
        }];
        self.log(a, action, LogStatus::Success, &a.reason, m, None);
        Ok(())
    }

    /// A leaver's grace period starts with their suspension and ends when they
    /// are enabled again (removal ends it with the link).
    fn grace(&mut self, a: &Action, active: bool) -> Result<(), Error> {
        if a.kind != ObjectKind::User {
            return Ok(());
        }
        use crate::plan::grace::GraceStep;
        match a.grace() {
            Some(GraceStep::Starts { .. }) if a.op != Op::Enable => {
                let why = a.disabled_reason().unwrap_or_default().to_string();
                self.push(Write::Leaver(a.source_id.clone(), crate::clock::now(), why))
            }
            Some(GraceStep::Ends) => self.push(Write::Stayed(a.source_id.clone())),
            _ if active => self.push(Write::Stayed(a.source_id.clone())),
            _ => Ok(()),
        }
    }

    fn delete(&mut self, a: &Action) -> Result<(), Error> {
        let Some(id) = self.target_id(a) else {
            return Ok(());
        };
        let gone = self.call(Call::Delete {
            kind: a.kind,
            id: id.clone(),
        });
        match gone {
            Ok(_) => {
                self.forget_link(a.kind, &a.source_id);
                self.push(Write::Unlink(a.kind, a.source_id.clone()))?;
                self.clear_escrow(a)?;
                self.log(
                    a,
                    LogAction::Delete,
                    LogStatus::Success,
                    &a.reason,
                    vec![],
                    None,
                );
                Ok(())
            }
            Err(e) => self.fail(a, LogAction::Delete, &e),
        }
    }

    fn members(&mut self, a: &Action) -> Result<(), Error> {
        let add = a.op == Op::AddMembers;
        let action = if add {
            LogAction::AddMembers
        } else {
            LogAction::RemoveMembers
        };
        let Some(gid) = self.target_id(a) else {
            self.log(
                a,
                action,
                LogStatus::Skipped,
                "the group is not provisioned",
                vec![],
                None,
            );
            return Ok(());
        };
        let (ids, names, sources) = self.member_targets(a);
        if ids.is_empty() {
            return Ok(());
        }
        let call = |group: String, users: Vec<String>| {
            if add {
                Call::AddMembers { group, users }
            } else {
                Call::RemoveMembers { group, users }
            }
        };
        match self.call(call(gid, ids.clone())) {
            Ok(_) => {}
            Err(e) if e.class == ErrorClass::NotFound => {
                // The group was deleted in the target behind our back: create it again
                // (its members follow, the rest next cycle), as a user would be.
                let Some(gid) = self.recreate_group(a)? else {
                    return Ok(());
                };
                if add {
                    if let Err(e) = self.call(call(gid, ids)) {
                        return self.fail(a, action, &e);
                    }
                }
            }
            Err(e) => return self.fail(a, action, &e),
        }
        for s in sources {
            let w = if add {
                Write::AddMember(a.source_id.clone(), s)
            } else {
                Write::RemoveMember(a.source_id.clone(), s)
            };
            self.push(w)?;
        }
        let m = vec![Modified {
            name: "members".into(),
            old: if add {
                Value::Null
            } else {
                Value::Array(names.clone())
            },
            new: if add {
                Value::Array(names)
            } else {
                Value::Null
            },
        }];
        self.log(a, action, LogStatus::Success, &a.reason, m, None);
        Ok(())
    }
}

impl Applier<'_> {
    /// The object was deleted in the target behind our back: provisioned again if
    /// it is to be active; one that is to stay disabled is only forgotten (creating
    /// it would hand out a live invitation).
    fn gone_from_target(&mut self, a: &Action) -> Result<(), Error> {
        self.unlink(a.kind, &a.source_id)?;
        if a.kind == ObjectKind::Group || desired_active(&a.attrs) {
            return self.create_again(a);
        }
        self.log(
            a,
            logged(a.op),
            LogStatus::Success,
            &format!("{}; the object no longer exists in the target", a.reason),
            vec![],
            None,
        );
        Ok(())
    }

    /// Creates a group again from its link (matched first, like any create); the new
    /// target id, or `None` when that failed (then logged and escrowed).
    fn recreate_group(&mut self, a: &Action) -> Result<Option<String>, Error> {
        let Some(mut link) = self.groups.get(&a.source_id).cloned() else {
            return Ok(None);
        };
        link.attrs = self
            .link_attrs(ObjectKind::Group, &a.source_id)?
            .unwrap_or_default();
        log::warn!(
            "group {} is gone from the target; creating it again",
            link.display
        );
        self.unlink(ObjectKind::Group, &a.source_id)?;
        let mut again = a.clone();
        again.op = Op::Create;
        again.attrs = link.attrs;
        again.changes = thin_vec::ThinVec::new();
        again.reason = "gone from the target; created again".into();
        self.create_again(&again)?;
        Ok(self.groups.get(&a.source_id).map(|l| l.target_id.clone()))
    }
}

/// The change that enables or disables an object.
fn active_change(active: bool) -> Change {
    Change {
        path: "active".into(),
        old: Some(Value::Bool(!active)),
        new: Some(Value::Bool(active)),
    }
}

/// Escrow back-off in seconds: `base`, then doubling per attempt, at most `max`
/// (Entra retries escrows at growing intervals up to a day).
pub fn escrow_backoff(attempts: i64, base: std::time::Duration, max: std::time::Duration) -> i64 {
    let factor = 1u64 << (attempts - 1).clamp(0, 30);
    (base.as_secs().saturating_mul(factor)).min(max.as_secs()) as i64
}
