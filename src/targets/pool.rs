//! The worker pool: independent target calls carried a few at a time.
//!
//! A target on the other side of the world answers in tens of milliseconds; one call
//! at a time leaves scimsync waiting, not working. The core stays single-threaded:
//! it hands a batch of calls it knows are independent to `run`, which spreads them
//! over at most `max_in_flight` blocking workers (each a fork of the target sharing
//! its connection pool, counters and throttle pause) and returns the answers in the
//! order of the calls, so what the core records does not depend on who finished
//! first (the look-ups of `gather`). Apply's calls go on a `Wire` instead: workers
//! that live for the apply take each call as the core hands it over, and the core
//! records one answer while the next calls are under way (no batch to wait out):
//! creates, and the calls `apply` runs ahead of updates, deletes and memberships.

use super::{Change, Remote, Target, TargetError};
use crate::model::ObjectKind;
use crate::scim::attribute::Attrs;
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};

/// Calls handed to the pool at once, per worker: enough to keep every worker busy
/// while the core records the previous batch's answers.
pub const PER_WORKER: usize = 16;

/// One target call, as data.
#[derive(Debug, Clone, PartialEq)]
pub enum Call {
    Find {
        kind: ObjectKind,
        path: String,
        value: String,
    },
    Get {
        kind: ObjectKind,
        id: String,
    },
    Create {
        kind: ObjectKind,
        attrs: Attrs,
    },
    Modify {
        kind: ObjectKind,
        id: String,
        changes: Vec<Change>,
    },
    Delete {
        kind: ObjectKind,
        id: String,
    },
    AddMembers {
        group: String,
        users: Vec<String>,
    },
    RemoveMembers {
        group: String,
        users: Vec<String>,
    },
}

/// What a call answered.
#[derive(Debug, Clone)]
pub enum Answer {
    Found(Vec<Remote>),
    Got(Option<Remote>),
    Created(String),
    Done,
}

pub type Reply = Result<Answer, TargetError>;

/// Runs one call on one target.
pub fn execute<T: Target + ?Sized>(t: &mut T, call: &Call) -> Reply {
    Ok(match call {
        Call::Find { kind, path, value } => Answer::Found(t.find(*kind, path, value)?),
        Call::Get { kind, id } => Answer::Got(t.get(*kind, id)?),
        Call::Create { kind, attrs } => Answer::Created(t.create(*kind, attrs)?),
        Call::Modify { kind, id, changes } => {
            t.modify(*kind, id, changes)?;
            Answer::Done
        }
        Call::Delete { kind, id } => {
            t.delete(*kind, id)?;
            Answer::Done
        }
        Call::AddMembers { group, users } => {
            t.add_members(group, users)?;
            Answer::Done
        }
        Call::RemoveMembers { group, users } => {
            t.remove_members(group, users)?;
            Answer::Done
        }
    })
}

/// Runs calls on up to `workers.len()` threads, one worker each; answers come back
/// in call order. With one worker (or one call) it runs on the caller's thread.
pub fn run<T: Target + Send>(workers: Vec<T>, calls: &[Call]) -> Vec<Reply> {
    let mut workers = workers;
    if workers.len() <= 1 || calls.len() <= 1 {
        return match workers.first_mut() {
            Some(w) => calls.iter().map(|c| execute(w, c)).collect(),
            None => vec![],
        };
    }
    workers.truncate(calls.len());
    let next = AtomicUsize::new(0);
    let answers: Mutex<Vec<Option<Reply>>> = Mutex::new(vec![None; calls.len()]);
    std::thread::scope(|s| {
        for mut w in workers {
            let (next, answers) = (&next, &answers);
            s.spawn(move || loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(call) = calls.get(i) else { break };
                let r = execute(&mut w, call);
                if let Ok(mut a) = answers.lock() {
                    a[i] = Some(r);
                }
            });
        }
    });
    answers
        .into_inner()
        .unwrap_or_default()
        .into_iter()
        .map(|r| r.unwrap_or_else(|| Err(stopped())))
        .collect()
}

/// Calls on the wire while the core goes on: workers (forks of the target) take
/// each call as the core hands it over, and the core takes the answers back in the
/// order it sent them, when it needs them. Unlike `run` there is no batch to wait
/// out: a worker that finishes takes the next call at once, and the core records
/// one answer while the next calls are under way.
pub struct Wire {
    calls: Option<mpsc::Sender<(usize, Call)>>,
    /// Each answer comes back with its call, so the call is freed on the core's
    /// thread, where it was made (the allocator counts per thread).
    answers: mpsc::Receiver<(usize, Call, Reply)>,
    workers: Vec<std::thread::JoinHandle<()>>,
    sent: usize,
    taken: usize,
    /// Answers that came back before their turn.
    early: HashMap<usize, Reply>,
}

impl Wire {
    /// Starts one thread per worker; a worker answers one call at a time.
    pub fn open<W>(workers: Vec<W>) -> Wire
    where
        W: FnMut(&Call) -> Reply + Send + 'static,
    {
        let (calls, queue) = mpsc::channel::<(usize, Call)>();
        let (done, answers) = mpsc::channel();
        let queue = Arc::new(Mutex::new(queue));
        let workers = workers
            .into_iter()
            .map(|mut w| {
                let (queue, done) = (Arc::clone(&queue), done.clone());
                std::thread::spawn(move || loop {
                    let next = match queue.lock() {
                        Ok(q) => q.recv(),
                        Err(_) => return,
                    };
                    let Ok((i, call)) = next else { return };
                    // A call that panics answers an error: the core never waits
                    // for an answer that cannot come.
                    let answer =
                        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| w(&call)))
                            .unwrap_or_else(|_| Err(stopped()));
                    if done.send((i, call, answer)).is_err() {
                        return;
                    }
                })
            })
            .collect();
        Wire {
            calls: Some(calls),
            answers,
            workers,
            sent: 0,
            taken: 0,
            early: HashMap::new(),
        }
    }

    /// Hands a call to the workers; returns at once.
    pub fn send(&mut self, call: Call) {
        let i = self.sent;
        self.sent += 1;
        let handed = self.calls.as_ref().map(|c| c.send((i, call)));
        if !matches!(handed, Some(Ok(()))) {
            self.early.insert(i, Err(stopped()));
        }
    }

    /// Calls sent whose answer the core has not taken yet.
    pub fn unanswered(&self) -> usize {
        self.sent - self.taken
    }

    /// The answer to the oldest call not taken yet, waiting for it if need be.
    pub fn answer(&mut self) -> Option<Reply> {
        if self.taken == self.sent {
            return None;
        }
        let i = self.taken;
        self.taken += 1;
        while !self.early.contains_key(&i) {
            match self.answers.recv() {
                Ok((j, _call, r)) => {
                    self.early.insert(j, r);
                }
                // Every worker is gone: no answer will come.
                Err(_) => return Some(Err(stopped())),
            }
        }
        self.early.remove(&i)
    }
}

impl Drop for Wire {
    fn drop(&mut self) {
        // Closing the queue lets each worker finish its call and stop.
        self.calls = None;
        for w in self.workers.drain(..) {
            let _ = w.join();
        }
    }
}

fn stopped() -> TargetError {
    TargetError::new(
        super::ErrorClass::Transport,
        None,
        "a pool worker stopped before answering",
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn get(i: usize) -> Call {
        Call::Get {
            kind: ObjectKind::User,
            id: i.to_string(),
        }
    }

    fn asked(c: &Call) -> usize {
        match c {
            Call::Get { id, .. } => id.parse().unwrap_or(usize::MAX),
            _ => usize::MAX,
        }
    }

    /// Calls that finish out of order still come back in the order they were sent.
    #[test]
    fn the_wire_answers_in_the_order_calls_were_sent() {
        let worker = |c: &Call| -> Reply {
            let i = asked(c);
            // Early calls take longest: later ones overtake them.
            std::thread::sleep(Duration::from_millis((12 - i as u64 % 12) * 2));
            Ok(Answer::Created(format!("t{i}")))
        };
        let mut wire = Wire::open(vec![worker; 4]);
        for i in 0..24 {
            wire.send(get(i));
        }
        assert_eq!(wire.unanswered(), 24);
        let got: Vec<String> = std::iter::from_fn(|| wire.answer())
            .map(|r| match r {
                Ok(Answer::Created(id)) => id,
                other => format!("{other:?}"),
            })
            .collect();
        let want: Vec<String> = (0..24).map(|i| format!("t{i}")).collect();
        assert_eq!(got, want);
        assert_eq!(wire.unanswered(), 0);
        assert!(wire.answer().is_none());
    }

    /// A call that panics answers an error, and its worker goes on: the core
    /// never waits without end.
    #[test]
    fn a_call_that_panics_answers_an_error_not_a_hang() {
        let worker = |c: &Call| -> Reply {
            if asked(c) == 1 {
                panic!("this call panics");
            }
            Ok(Answer::Done)
        };
        let mut wire = Wire::open(vec![worker; 2]);
        for i in 0..3 {
            wire.send(get(i));
        }
        assert!(matches!(wire.answer(), Some(Ok(Answer::Done))));
        assert!(matches!(wire.answer(), Some(Err(_))));
        assert!(matches!(wire.answer(), Some(Ok(Answer::Done))));
    }
}
