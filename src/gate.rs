//! The gate: the one judgement on what a cycle may destroy.
//!
//! A tool that manages accounts must not take many away at once because an input
//! went wrong, so every plan passes here before it is shown or applied. Actions are
//! judged by their effect (`Action::destroys`): a delete, a disable, or an update or
//! adoption that turns `active` off. By number: the deletion threshold as a count
//! and as a share of what is provisioned, and the shrink guard; the one-time release
//! (`scimsync allow-deletes`) lets a held plan through once. While applying: no
//! destructive action after the target failed as a whole. The plan shows, for each
//! action, whether the gate holds it and why.

use crate::config::Settings;
use crate::model::ObjectKind;
use crate::plan::{Op, Plan};
use std::collections::HashMap;

/// A shrink smaller than this is never held by the shrink guard (the deletion
/// threshold still counts it): one leaver in a team of four is not an accident.
pub const SHRINK_GUARD_MIN: usize = 10;

#[derive(Debug, Clone)]
pub struct Gate {
    pub deletion_threshold: usize,
    /// Hold above this share of the provisioned objects (0 = off).
    pub deletion_threshold_percent: u32,
    /// Hold when more than this share of what is provisioned would leave at once.
    pub shrink_threshold_percent: u32,
    /// Objects provisioned (linked) before the cycle.
    pub provisioned: usize,
    pub allow_deletes: bool,
}

impl Gate {
    /// The gate of a cycle planned over `provisioned` linked objects.
    pub fn new(settings: &Settings, provisioned: usize, allow_deletes: bool) -> Gate {
        Gate {
            deletion_threshold: settings.safety.deletion_threshold,
            deletion_threshold_percent: settings.safety.deletion_threshold_percent,
            shrink_threshold_percent: settings.safety.shrink_threshold_percent,
            provisioned,
            allow_deletes,
        }
    }

    /// Why `destructive` actions in one cycle are held, if they are.
    pub fn holds(&self, destructive: usize) -> Option<String> {
        if self.allow_deletes || destructive == 0 {
            return None;
        }
        if destructive > self.deletion_threshold {
            return Some(format!(
                "{destructive} deletes/disables exceed deletion_threshold {}",
                self.deletion_threshold
            ));
        }
        let share = destructive as u64 * 100;
        let provisioned = self.provisioned as u64;
        let percent = self.deletion_threshold_percent as u64;
        if percent > 0 && share > provisioned * percent {
            return Some(format!(
                "{destructive} deletes/disables of {provisioned} provisioned objects exceed deletion_threshold_percent {percent}%"
            ));
        }
        if destructive >= SHRINK_GUARD_MIN
            && share > provisioned * self.shrink_threshold_percent as u64
        {
            return Some(format!(
                "{destructive} of {provisioned} provisioned objects would leave at once, more than shrink_threshold_percent {}%",
                self.shrink_threshold_percent
            ));
        }
        None
    }

    /// Marks what the gate holds in a plan: every action that destroys, when their
    /// number is over a limit, and the creates that wait for a name a held delete
    /// would free.
    pub fn judge(&self, plan: &mut Plan) {
        plan.held = self.holds(plan.destructive_count());
        let Some(why) = plan.held.clone() else {
            return;
        };
        let mut held: HashMap<(ObjectKind, String), String> = HashMap::new();
        for a in plan.actions.iter_mut().filter(|a| a.destroys()) {
            a.held = true;
            a.rare_mut().held_reason =
                Some(format!("{why}; run `scimsync allow-deletes` to release"));
            held.insert((a.kind, a.source_id.clone()), a.display.clone());
        }
        for a in plan.actions.iter_mut().filter(|a| a.op == Op::Create) {
            let Some(after) = a.after() else {
                continue;
            };
            if let Some(holder) = held.get(&(a.kind, after.to_string())) {
                a.held = true;
                a.rare_mut().held_reason = Some(format!(
                    "waits for {holder}, which holds the same name in the target, to be deleted first; that delete is held ({why})"
                ));
            }
        }
    }

    /// Whether the destructive actions still to run are withheld: the target as
    /// a whole failing this cycle (auth, down, 5xx, throttled) is no time to destroy
    /// anything; one object's own failure says nothing of the others.
    pub fn withholds(&self, systemic_errors: usize) -> bool {
        systemic_errors > 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gate(count: usize, percent: u32, shrink: u32, provisioned: usize) -> Gate {
        Gate {
            deletion_threshold: count,
            deletion_threshold_percent: percent,
            shrink_threshold_percent: shrink,
            provisioned,
            allow_deletes: false,
        }
    }

    #[test]
    fn holds_by_count_percent_and_shrink() {
        assert!(gate(5, 0, 100, 100).holds(5).is_none());
        assert!(gate(5, 0, 100, 100)
            .holds(6)
            .unwrap()
            .contains("deletion_threshold 5"));
        // 3 of 20 is 15%: over 10%, not over 20%.
        assert!(gate(500, 10, 100, 20)
            .holds(3)
            .unwrap()
            .contains("deletion_threshold_percent 10%"));
        assert!(gate(500, 20, 100, 20).holds(3).is_none());
        // The shrink guard starts at ten.
        assert!(gate(500, 0, 20, 20).holds(9).is_none());
        assert!(gate(500, 0, 20, 20)
            .holds(10)
            .unwrap()
            .contains("shrink_threshold_percent"));
        let mut released = gate(0, 1, 1, 1);
        released.allow_deletes = true;
        assert!(released.holds(1000).is_none());
    }
}
