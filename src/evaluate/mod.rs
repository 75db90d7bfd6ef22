//! Evaluation: scoping and mapping run over the directory's records, turning each
//! into a decision (in scope, not assigned, scoped out, failed, unreadable) and the
//! attributes the target should have. The first stage after the read; `gather`
//! and `plan` take its output. A script failure fails only its object.

use crate::model::{ObjectKind, Reason, Snapshot, SourceGroup, SourceUser};
use crate::scim::attribute::Attrs;
use crate::script::{ScriptFailure, Scripts};
use crate::state::{Link, LinkMap};
use serde_json::Value;
use std::num::NonZeroI64;
use thin_vec::ThinVec;

mod evaluations;
pub mod spill;
pub use evaluations::Evaluations;
pub use spill::Spill;

/// Why an object is or is not up for provisioning.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    InScope(Reason),
    /// Not assigned (or only Default Access).
    NotAssigned(Reason),
    /// Assigned, but the scoping script said no.
    ScopedOut(Reason),
    /// Soft-deleted in the directory.
    SoftDeleted,
    /// A script failed on this object (boxed: an evaluation per object stays small).
    Failed(Box<ScriptFailure>),
    /// The directory record could not be read: the object keeps its last known state.
    Unreadable(String),
}

/// One source object after the scripts ran.
#[derive(Debug, Clone)]
pub struct Evaluated {
    pub kind: ObjectKind,
    pub source_id: Box<str>,
    pub display: Box<str>,
    pub decision: Decision,
    /// Mapped attributes (when in scope and the mapping succeeded).
    pub attrs: Option<Attrs>,
    /// Groups: direct member ids (`ThinVec`: a user's is empty, one pointer wide).
    pub members: ThinVec<String>,
    /// A new user's attributes put aside in the spill (this row): `attrs` holds
    /// only what the plan decides on, and they fit the target (checked as put).
    pub spilled: Option<NonZeroI64>,
}

/// Where new users' attributes go while the cycle plans, and which of them do.
pub struct Spilling<'a> {
    pub spill: &'a Spill,
    /// The matching attributes: kept in memory.
    pub keep: &'a [String],
    /// Whether the target takes a new user's attributes as they are: only those go
    /// aside (the others become skips, which show their attributes).
    pub fits: &'a dyn Fn(&Attrs) -> bool,
}

/// Runs scoping and mapping over every record. A script failure fails only its object.
/// `user_links` seeds `select_unique_value` with the values already in use.
pub fn evaluate(
    snapshot: &Snapshot,
    scripts: &Scripts,
    user_links: Option<&LinkMap>,
) -> Evaluations {
    let mut e = Evaluator::new(scripts, user_links, snapshot.changed.as_ref());
    for u in &snapshot.users {
        if e.wanted(&u.id) {
            e.user(u);
        }
    }
    for g in &snapshot.groups {
        if e.wanted(&g.id) {
            e.group(g, g.members.clone());
        }
    }
    e.finish(&snapshot.errors)
}

/// `evaluate` for a cycle: each record is released as soon as it is evaluated, so
/// the records and what they map to are not held at once (at 100,000 users each
/// is a good part of a cycle's memory). Ids, names and assignments stay; a
/// group's members move into its evaluation.
pub fn evaluate_releasing(
    snapshot: &mut Snapshot,
    scripts: &Scripts,
    user_links: Option<&LinkMap>,
    spilling: Option<Spilling<'_>>,
) -> Evaluations {
    let mut users = std::mem::take(&mut snapshot.users);
    let changed = snapshot.changed.take();
    let mut e = Evaluator::new(scripts, user_links, changed.as_ref());
    e.spilling = spilling;
    for u in users.iter_mut() {
        if e.wanted(&u.id) {
            e.user(u);
        }
        u.record = Default::default();
    }
    let out = e.rest(snapshot);
    snapshot.users = users;
    snapshot.changed = changed;
    out
}

/// Evaluation as a full read goes: each user is evaluated as it is read, before
/// the next record is (`source::UserSink`), so a million records are never held
/// at once. `evaluate_rest` adds the groups and the unreadable records once the
/// read is over, in the order `evaluate_releasing` gives.
pub struct Evaluation<'a>(Evaluator<'a>);

impl<'a> Evaluation<'a> {
    pub fn new(
        scripts: &'a Scripts,
        user_links: Option<&'a LinkMap>,
        spilling: Option<Spilling<'a>>,
    ) -> Self {
        let mut e = Evaluator::new(scripts, user_links, None);
        e.spilling = spilling;
        Evaluation(e)
    }

    /// One user, as read.
    pub fn user(&mut self, u: &SourceUser) {
        self.0.user(u);
    }

    /// The users' evaluations so far.
    pub fn into_users(self) -> Evaluations {
        self.0.out
    }
}

/// The groups and the unreadable records of a read whose users were evaluated
/// as it went (`Evaluation`), after them: every evaluation. Each group's record
/// is released once evaluated.
pub fn evaluate_rest(
    snapshot: &mut Snapshot,
    scripts: &Scripts,
    users: Evaluations,
) -> Evaluations {
    let mut e = Evaluator::new(scripts, None, None);
    e.out = users;
    e.rest(snapshot)
}

/// One evaluation pass: the scripts, the links seeding unique values, and what
/// came out so far.
struct Evaluator<'a> {
    scripts: &'a Scripts,
    spilling: Option<Spilling<'a>>,
    user_links: Option<&'a LinkMap>,
    unique: bool,
    changed: Option<&'a std::collections::HashSet<String>>,
    out: Evaluations,
}

impl<'a> Evaluator<'a> {
    fn new(
        scripts: &'a Scripts,
        user_links: Option<&'a LinkMap>,
        changed: Option<&'a std::collections::HashSet<String>>,
    ) -> Self {
        let unique = scripts.uses_unique_values() && user_links.is_some();
        if let (true, Some(links)) = (unique, user_links) {
            crate::script::helpers::seed_taken(links.values().flat_map(|l| link_values(l)));
        }
        Evaluator {
            scripts,
            spilling: None,
            user_links,
            unique,
            changed,
            out: Evaluations::new(),
        }
    }

    /// Whether a record is evaluated: all of them, or in an incremental read only
    /// those whose record changed.
    fn wanted(&self, id: &str) -> bool {
        self.changed.is_none_or(|c| c.contains(id))
    }

    fn user(&mut self, u: &SourceUser) {
        let scripts = self.scripts;
        if self.unique {
            let own = self
                .user_links
                .and_then(|l| l.get(&u.id))
                .map(|l| link_values(l))
                .unwrap_or_default();
            crate::script::helpers::set_own(own);
        }
        // Opened only if a script reads it (not for the unassigned).
        let record = std::cell::OnceCell::new();
        let record = || record.get_or_init(|| u.record.open());
        let (decision, attrs) = decide(
            u.assignment.is_assigned(),
            u.assignment.why(),
            u.soft_deleted,
            || scripts.user_scope(record()),
            || scripts.map_user(record()),
            "user_in_scope",
        );
        let linked = self.user_links.is_some_and(|l| l.contains_key(&u.id));
        let (attrs, spilled) = match (&decision, attrs, &self.spilling) {
            (Decision::InScope(_), Some(a), Some(s)) if !linked => s.put_aside(a),
            (_, attrs, _) => (attrs, None),
        };
        self.out.push(Evaluated {
            kind: ObjectKind::User,
            source_id: u.id.as_str().into(),
            display: u.user_principal_name.as_str().into(),
            decision,
            attrs,
            members: ThinVec::new(),
            spilled,
        });
    }

    /// A group; `members`: its member ids, which the evaluation keeps.
    fn group(&mut self, g: &SourceGroup, members: Vec<String>) {
        let scripts = self.scripts;
        let record = g.record_for_scripts();
        let (decision, attrs) = decide(
            g.assignment.is_assigned(),
            g.assignment.why(),
            false,
            || scripts.group_scope(&record),
            || scripts.map_group(&record),
            "group_in_scope",
        );
        self.out.push(Evaluated {
            kind: ObjectKind::Group,
            source_id: g.id.as_str().into(),
            display: g.display_name.as_str().into(),
            decision,
            attrs,
            members: members.into(),
            spilled: None,
        });
    }

    /// The groups, then the records that could not be read. Each group's record
    /// is released once evaluated, and its members move into the evaluation (a
    /// second copy was 70 MB at a million memberships).
    fn rest(mut self, snapshot: &mut Snapshot) -> Evaluations {
        for g in snapshot.groups.iter_mut() {
            if self.wanted(&g.id) {
                let members = std::mem::take(&mut g.members);
                self.group(g, members);
            }
            g.record = Default::default();
        }
        self.finish(&snapshot.errors)
    }

    /// Records that failed import are evaluated as failures, whatever changed: an
    /// object must never look absent because its record could not be read.
    fn finish(mut self, errors: &[crate::model::RecordError]) -> Evaluations {
        for e in errors {
            let (Some(id), Ok(kind)) = (&e.id, ObjectKind::try_from(e.record)) else {
                continue;
            };
            self.out.push(Evaluated {
                kind,
                source_id: id.as_str().into(),
                display: id.as_str().into(),
                decision: Decision::Unreadable(e.message.clone()),
                attrs: None,
                members: ThinVec::new(),
                spilled: None,
            });
        }
        self.out
    }
}

impl Spilling<'_> {
    /// A new user's attributes: put aside when they fit and hold no secret, the
    /// plan's part kept. A spill that fails keeps them in memory: only memory is
    /// at stake, never what is sent.
    fn put_aside(&self, attrs: Attrs) -> (Option<Attrs>, Option<NonZeroI64>) {
        if !self.spill.works() || !(self.fits)(&attrs) || !Spill::takes(&attrs) {
            return (Some(attrs), None);
        }
        let kept = spill::kept(&attrs, self.keep);
        match self.spill.put(&attrs, &kept) {
            Ok(row) => (Some(kept), Some(row)),
            Err(e) => {
                log::warn!("{e}; the rest of this cycle's new users are kept in memory");
                (Some(attrs), None)
            }
        }
    }
}

/// The values a link holds, for `select_unique_value`.
fn link_values(l: &Link) -> Vec<String> {
    l.attrs
        .values()
        .filter_map(|v| v.as_str().map(str::to_string))
        .collect()
}

fn decide(
    assigned: bool,
    reason: &Reason,
    soft_deleted: bool,
    in_scope: impl FnOnce() -> crate::script::Scoped,
    map: impl FnOnce() -> Result<Attrs, ScriptFailure>,
    scope_fn: &str,
) -> (Decision, Option<Attrs>) {
    if soft_deleted {
        return (Decision::SoftDeleted, None);
    }
    if !assigned {
        return (Decision::NotAssigned(reason.clone()), None);
    }
    match in_scope() {
        Err(f) => return (Decision::Failed(Box::new(f)), None),
        Ok((false, rules)) => {
            // The deciding clause is the last one that came out false.
            let why = match rules.iter().rev().find(|(_, ok)| !ok) {
                Some((name, _)) => format!("{scope_fn} returned false (rule \"{name}\")"),
                None => format!("{scope_fn} returned false"),
            };
            return (Decision::ScopedOut(why.into()), None);
        }
        Ok((true, _)) => {}
    }
    match map() {
        Ok(a) => (Decision::InScope(reason.clone()), Some(nfc(a))),
        Err(f) => (Decision::Failed(Box::new(f)), None),
    }
}

/// Text is compared and sent in Unicode NFC: "é" typed as one code point or as "e"
/// plus a combining accent is one value, so a re-encoded directory sends nothing
/// and two spellings of one userName are one account, not two.
fn nfc(attrs: Attrs) -> Attrs {
    use unicode_normalization::{is_nfc_quick, IsNormalized, UnicodeNormalization};
    fn walk(v: Value) -> Value {
        match v {
            Value::String(s) if is_nfc_quick(s.chars()) != IsNormalized::Yes => {
                Value::String(s.nfc().collect())
            }
            Value::Array(a) => Value::Array(a.into_iter().map(walk).collect()),
            Value::Object(o) => Value::Object(o.into_iter().map(|(k, v)| (k, walk(v))).collect()),
            other => other,
        }
    }
    attrs.into_iter().map(|(k, v)| (k, walk(v))).collect()
}

/// The desired `active` flag (absent means active).
pub fn desired_active(a: &Attrs) -> bool {
    match a.get("active") {
        Some(Value::Bool(b)) => *b,
        Some(Value::String(s)) => !s.eq_ignore_ascii_case("false"),
        _ => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_spill_that_fills_up_keeps_the_rest_in_memory() -> Result<(), crate::error::Error> {
        let spill = Spill::limited(4)?;
        let keep = ["userName".to_string()];
        let spilling = Spilling {
            spill: &spill,
            keep: &keep,
            fits: &|a: &Attrs| a.contains_key("fits"),
        };
        let user = |i: usize| -> Attrs {
            [
                ("userName", json!(format!("u{i}@x.com"))),
                ("fits", json!(true)),
                ("notes", json!("n".repeat(1500))),
            ]
            .into_iter()
            .collect()
        };
        let (kept, row) = spilling.put_aside(user(0));
        assert_eq!(
            kept.map(|k| k.keys().count()),
            Some(1),
            "only the matching value stays"
        );
        assert_eq!(spill.get(row.expect("put aside"))?, user(0));
        let unfit: Attrs = [("userName", json!("v@x.com"))].into_iter().collect();
        assert_eq!(spilling.put_aside(unfit.clone()), (Some(unfit), None));
        let outcomes: Vec<_> = (1..20).map(|i| (i, spilling.put_aside(user(i)))).collect();
        let (i, (attrs, row)) = outcomes.last().cloned().expect("20 users");
        assert!(!spill.works(), "the spill filled up");
        assert_eq!((attrs, row), (Some(user(i)), None), "kept whole in memory");
        for (i, (attrs, row)) in outcomes {
            match row {
                Some(row) => assert_eq!(spill.get(row)?, user(i)),
                None => assert_eq!(attrs, Some(user(i))),
            }
        }
        Ok(())
    }
}
