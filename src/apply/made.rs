//! The users a cycle creates, as later actions (memberships, the log) see them.
//!
//! Every slot is known before the first create is sent: one per user create of
//! the plan, found by the user's key (`ids::key`) in a list sorted once. At a
//! million creates a hash table sized for them all was 86 MB of slots; this is
//! 16 bytes a create for the keys and 24 for what the create answered.

use crate::model::ObjectKind;
use crate::plan::{Action, Op};

/// A user created this cycle: its name is its create's in the plan (`action`,
/// an index), not a copy.
pub(super) struct Made {
    pub(super) target_id: Box<str>,
    pub(super) action: u32,
    pub(super) active: bool,
}

/// The created users, by key.
pub(super) struct MadeUsers {
    /// Each user create's key, sorted.
    keys: Vec<crate::ids::SplitKey>,
    index: crate::ids::KeyIndex,
    /// What the create in the same place of `keys` made, once it has.
    made: Vec<Option<Made>>,
}

impl MadeUsers {
    /// Room for every user create of `actions`.
    pub(super) fn new(actions: &[Action]) -> MadeUsers {
        let create = |a: &Action| a.kind == ObjectKind::User && a.op == Op::Create;
        let mut keys = Vec::with_capacity(actions.iter().filter(|a| create(a)).count());
        for a in actions.iter().filter(|a| create(a)) {
            keys.push(crate::ids::split(crate::ids::key(&a.source_id)));
        }
        keys.sort_unstable();
        keys.dedup();
        let index = crate::ids::KeyIndex::new(&keys, |k| *k);
        let mut made = Vec::with_capacity(keys.len());
        made.resize_with(keys.len(), || None);
        MadeUsers { keys, index, made }
    }

    fn slot(&self, key: u128) -> Option<usize> {
        self.index.find(&self.keys, key, |k| *k)
    }

    pub(super) fn get(&self, key: u128) -> Option<&Made> {
        self.made.get(self.slot(key)?)?.as_ref()
    }

    /// Records what a create of the plan made; false for a user no create of the
    /// plan is for (the caller keeps it elsewhere).
    pub(super) fn insert(&mut self, key: u128, made: Made) -> bool {
        match self.slot(key) {
            Some(i) => {
                self.made[i] = Some(made);
                true
            }
            None => false,
        }
    }

    pub(super) fn remove(&mut self, key: u128) {
        if let Some(i) = self.slot(key) {
            self.made[i] = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Only the plan's user creates have a slot; a slot reads back what was
    /// put in it until it is removed.
    #[test]
    fn a_created_user_is_found_by_its_key() {
        let action = |kind, op, id: &str| crate::plan::action(kind, op, id, id, "x");
        let actions = vec![
            action(ObjectKind::User, Op::Create, "u1"),
            action(ObjectKind::User, Op::Update, "u2"),
            action(ObjectKind::Group, Op::Create, "g1"),
            action(ObjectKind::User, Op::Create, "u3"),
        ];
        let mut m = MadeUsers::new(&actions);
        let key = crate::ids::key;
        let made = |id: &str| Made {
            target_id: id.into(),
            action: 0,
            active: true,
        };
        assert!(m.get(key("u1")).is_none(), "nothing made yet");
        assert!(m.insert(key("u3"), made("t3")));
        assert!(!m.insert(key("u2"), made("t2")), "an update has no slot");
        assert!(!m.insert(key("g1"), made("tg")), "a group has no slot");
        assert_eq!(m.get(key("u3")).map(|x| &*x.target_id), Some("t3"));
        assert!(m.get(key("u1")).is_none());
        m.remove(key("u3"));
        assert!(m.get(key("u3")).is_none());
    }
}
