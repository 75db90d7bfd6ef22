//! The grace period before a leaver is removed (`[deprovision] remove_after`): a
//! user who leaves the directory (or, on the Business API, scope) is suspended
//! first and removed in the first cycle after the period if still gone; back
//! within it, they are enabled again with their account, link and groups as
//! they were.

use super::{action, Link, Op, Planner};
use crate::model::ObjectKind;
use std::collections::HashMap;

/// Users in their grace period, and its rules.
#[derive(Default)]
pub struct Grace<'a> {
    /// Leaver source id → since when (unix seconds), from the state.
    pub since: Option<&'a HashMap<String, i64>>,
    /// `None`: removed at once (`remove_after = "0s"`).
    pub after: Option<i64>,
    pub now: i64,
    /// What a removal does to files and devices (the Business API), for the
    /// plan and the log.
    pub consequence: Option<&'a str>,
}

/// Where an action moves a user's grace period (apply records it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GraceStep {
    /// Suspended as a leaver: removed at `due` if still gone.
    Starts { due: i64 },
    /// Back in the directory and in scope: no longer a leaver.
    Ends,
}

/// What becomes of a leaver now.
#[derive(Debug, PartialEq, Eq)]
enum Leaving {
    /// Removed (no grace period, or it is over).
    Remove { grace_over: bool },
    /// Suspended now, removed at `due` if still gone.
    Suspend { due: i64 },
    /// Already suspended: the period starts now, nothing is sent.
    Start { due: i64 },
    /// Waiting for `due`.
    Wait,
}

impl Grace<'_> {
    fn leaving(&self, l: &Link) -> Leaving {
        let Some(after) = self.after else {
            return Leaving::Remove { grace_over: false };
        };
        match self.since.and_then(|s| s.get(&l.source_id)) {
            Some(since) if since + after <= self.now => Leaving::Remove { grace_over: true },
            Some(_) => Leaving::Wait,
            None if l.active => Leaving::Suspend {
                due: self.now + after,
            },
            None => Leaving::Start {
                due: self.now + after,
            },
        }
    }

    /// Whether a user is in the grace period (kept in their groups).
    pub fn holds(&self, source_id: &str) -> bool {
        self.since.is_some_and(|s| s.contains_key(source_id))
    }
}

/// A due date as a plan shows it: the day (UTC), so a plan saved for review
/// and the cycle that applies it the same day say the same.
pub fn day(unix: i64) -> String {
    crate::clock::rfc3339(unix).chars().take(10).collect()
}

impl<'a> Planner<'a> {
    /// A user who left: removed now, or suspended until the grace period is
    /// over. `why` says what happened; `disabled_reason` is kept in the link.
    pub(super) fn leaver(&mut self, l: &Link, display: &str, why: String, disabled_reason: &str) {
        let grace = &self.input.grace;
        let mut a = action(
            ObjectKind::User,
            Op::Delete,
            &l.source_id,
            display,
            why.clone(),
        );
        a.target_id = Some(l.target_id.clone());
        a.rare_mut().disabled_reason = Some(disabled_reason.to_string());
        match grace.leaving(l) {
            Leaving::Remove { grace_over } => {
                a.attrs = l.attrs.clone();
                a.reason = removal_reason(&why, grace_over, grace.consequence).into();
                self.deleted_users.insert(l.source_id.clone());
                self.destructive.push(a);
            }
            Leaving::Suspend { due } => {
                a.op = Op::Disable;
                a.reason =
                    format!("{why}; suspended, removed on {} if still gone", day(due)).into();
                a.rare_mut().grace = Some(GraceStep::Starts { due });
                self.grace_now.insert(l.source_id.clone());
                self.destructive.push(a);
            }
            Leaving::Start { due } => {
                a.op = Op::Skip;
                a.reason = format!(
                    "{why}; already suspended, removed on {} if still gone",
                    day(due)
                )
                .into();
                a.rare_mut().grace = Some(GraceStep::Starts { due });
                self.grace_now.insert(l.source_id.clone());
                self.other.push(a);
            }
            Leaving::Wait => {}
        }
    }
}

fn removal_reason(why: &str, grace_over: bool, consequence: Option<&str>) -> String {
    let mut r = why.to_string();
    if grace_over {
        r.push_str("; still gone after the grace period");
    }
    r.push_str("; removed");
    if let Some(c) = consequence {
        r.push_str(&format!(": {c}"));
    }
    r
}

impl<'a> Planner<'a> {
    /// A leaver back in the directory whom nothing enables (disabled there, or out
    /// of scope on a SCIM target): no longer a leaver, so never removed for
    /// having left.
    pub(super) fn back(&mut self, l: &Link, display: &str, enabling: bool, why: &str) {
        if enabling || !self.input.grace.holds(&l.source_id) {
            return;
        }
        let mut a = action(ObjectKind::User, Op::Skip, &l.source_id, display, why);
        a.target_id = Some(l.target_id.clone());
        a.rare_mut().grace = Some(GraceStep::Ends);
        self.other.push(a);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn link(active: bool) -> Link {
        Link {
            kind: ObjectKind::User,
            source_id: "u1".into(),
            target_id: "t1".into(),
            display: "u1@x.com".into(),
            attrs: Default::default(),
            hash: String::new(),
            active,
            disabled_reason: None,
        }
    }

    #[test]
    fn a_leaver_is_suspended_waits_then_is_removed() {
        let month = 30 * 86_400;
        let leavers: HashMap<String, i64> = [("u1".to_string(), 1_000)].into();
        let nobody = HashMap::new();
        let at = |since: &HashMap<String, i64>, now: i64, l: &Link| {
            let grace = Grace {
                since: Some(since),
                after: Some(month),
                now,
                consequence: None,
            };
            grace.leaving(l)
        };
        let (active, suspended) = (link(true), link(false));
        assert_eq!(at(&nobody, 5, &active), Leaving::Suspend { due: 5 + month });
        assert_eq!(
            at(&nobody, 5, &suspended),
            Leaving::Start { due: 5 + month }
        );
        assert_eq!(at(&leavers, 1_000 + month - 1, &suspended), Leaving::Wait);
        assert_eq!(
            at(&leavers, 1_000 + month, &suspended),
            Leaving::Remove { grace_over: true }
        );
        let at_once = Grace::default();
        assert_eq!(
            at_once.leaving(&active),
            Leaving::Remove { grace_over: false }
        );
        assert_eq!(day(1_764_547_200), "2025-12-01");
    }
}
