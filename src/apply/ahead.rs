//! Calls run ahead of the actions that make them.
//!
//! An update, an enable or disable, a delete or a membership change needs no
//! answer of the actions beside it in its run (one op and kind, each on a
//! different object), so its call can be under way while the core records the
//! outcome of the one before. The calls go on the pool's wire a window ahead of
//! the action the core is at; the action then takes its answer instead of asking
//! the target. The batches this replaced sent 64 calls, waited for all 64, then
//! recorded them while the workers stood idle.

use crate::targets::pool::{Call, Reply, Wire};
use std::collections::VecDeque;

#[derive(Default)]
pub(super) struct Ahead {
    /// Opened on the first call run ahead; lives for the apply.
    wire: Option<Wire>,
    /// Calls on the wire, oldest first (the wire answers in that order).
    flying: VecDeque<Call>,
    /// Answers taken off the wire before their action asked for them.
    answered: Vec<(Call, Reply)>,
    /// The run's first action: the op and kind every action of it shares.
    pub(super) first: usize,
    /// The action whose call goes ahead next; every action before it and at or
    /// after the core's has had its call sent (or makes none).
    pub(super) next: usize,
    /// The action at `next` does not belong to the run: nothing more goes ahead
    /// until the core reaches it.
    pub(super) closed: bool,
}

impl Ahead {
    /// Starts a run at action `i`; returns the calls run ahead that no action
    /// took (each a bug if it was a write).
    pub(super) fn begin(&mut self, i: usize) -> Vec<Call> {
        let unused = self.unused();
        self.first = i;
        self.next = i;
        self.closed = false;
        unused
    }

    /// Calls on the wire now.
    pub(super) fn in_flight(&self) -> usize {
        self.flying.len()
    }

    /// Calls run ahead whose answers no action has taken yet.
    pub(super) fn holds_answers(&self) -> bool {
        !self.flying.is_empty() || !self.answered.is_empty()
    }

    /// Sends a call, opening the wire with `open` the first time. Without a wire
    /// nothing goes ahead: the action will ask the target itself.
    pub(super) fn send(&mut self, call: Call, open: impl FnOnce() -> Option<Wire>) {
        if self.wire.is_none() {
            self.wire = open();
        }
        if let Some(w) = self.wire.as_mut() {
            w.send(call.clone());
            self.flying.push_back(call);
        }
    }

    /// The answer to a call equal to `call` that was run ahead, waiting for it
    /// if it is still on the wire; `None` if it was not run ahead.
    pub(super) fn take(&mut self, call: &Call) -> Option<Reply> {
        if let Some(i) = self.answered.iter().position(|(c, _)| c == call) {
            return Some(self.answered.swap_remove(i).1);
        }
        let on_wire = self.flying.iter().position(|c| c == call)?;
        // Answers before it (calls an action did not make after all) wait aside.
        for _ in 0..on_wire {
            self.land_oldest();
        }
        self.flying.pop_front()?;
        self.wire.as_mut()?.answer()
    }

    /// Every call run ahead and not taken, once its answer is in.
    pub(super) fn unused(&mut self) -> Vec<Call> {
        while !self.flying.is_empty() {
            self.land_oldest();
        }
        self.answered.drain(..).map(|(c, _)| c).collect()
    }

    fn land_oldest(&mut self) {
        let (Some(call), Some(w)) = (self.flying.pop_front(), self.wire.as_mut()) else {
            return;
        };
        if let Some(reply) = w.answer() {
            self.answered.push((call, reply));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::ObjectKind;
    use crate::targets::pool::Answer;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    fn delete(id: &str) -> Call {
        Call::Delete {
            kind: ObjectKind::User,
            id: id.into(),
        }
    }

    /// A wire of two workers that count the calls they carry.
    fn counting_wire(count: &Arc<AtomicUsize>) -> Option<Wire> {
        let workers = (0..2)
            .map(|_| {
                let count = Arc::clone(count);
                move |_: &Call| {
                    count.fetch_add(1, Ordering::SeqCst);
                    Ok(Answer::Done)
                }
            })
            .collect();
        Some(Wire::open(workers))
    }

    #[test]
    fn an_answer_is_taken_once_by_an_equal_call_and_the_rest_are_unused() {
        let count = Arc::new(AtomicUsize::new(0));
        let mut ahead = Ahead::default();
        for id in ["a", "b", "c"] {
            ahead.send(delete(id), || counting_wire(&count));
        }
        assert_eq!(ahead.in_flight(), 3);
        // "a" is not asked for: its answer waits aside while "b" is taken.
        assert!(matches!(ahead.take(&delete("b")), Some(Ok(Answer::Done))));
        assert!(ahead.take(&delete("b")).is_none(), "taken twice");
        assert!(ahead.take(&delete("x")).is_none(), "never sent");
        assert_eq!(ahead.in_flight(), 1);
        let unused = ahead.begin(3);
        assert_eq!(unused, vec![delete("a"), delete("c")]);
        assert_eq!(ahead.in_flight(), 0);
        assert_eq!(count.load(Ordering::SeqCst), 3, "one request per call");
        assert!(ahead.begin(4).is_empty());
    }

    #[test]
    fn without_a_wire_nothing_goes_ahead() {
        let mut ahead = Ahead::default();
        ahead.send(delete("a"), || None);
        assert_eq!(ahead.in_flight(), 0);
        assert!(ahead.take(&delete("a")).is_none());
    }
}
