//! The worker pool: independent target calls carried a few at a time.
//!
//! A target on the other side of the world answers in tens of milliseconds; one call
//! at a time leaves scimsync waiting, not working. The core stays single-threaded:
//! it hands a batch of calls it knows are independent to `run`, which spreads them
//! over at most `max_in_flight` blocking workers (each a fork of the target sharing
//! its connection pool, counters and throttle pause) and returns the answers in the
//! order of the calls, so what the core records does not depend on who finished
//! first.

use super::{Change, Remote, Target, TargetError};
use crate::model::ObjectKind;
use crate::scim::attribute::Attrs;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

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
        .map(|r| {
            r.unwrap_or_else(|| {
                Err(TargetError::new(
                    super::ErrorClass::Transport,
                    None,
                    "a pool worker stopped before answering",
                ))
            })
        })
        .collect()
}

/// Answers computed ahead of the core asking: taken once, by an equal call.
#[derive(Default)]
pub struct Prefetched {
    answers: Vec<(Call, Reply)>,
}

impl Prefetched {
    pub fn fill(&mut self, calls: Vec<Call>, replies: Vec<Reply>) {
        self.answers.extend(calls.into_iter().zip(replies));
    }

    /// The answer to this call if it was run ahead.
    pub fn take(&mut self, call: &Call) -> Option<Reply> {
        let i = self.answers.iter().position(|(c, _)| c == call)?;
        Some(self.answers.swap_remove(i).1)
    }

    pub fn is_empty(&self) -> bool {
        self.answers.is_empty()
    }

    /// Calls run ahead that nobody asked for (a bug if any is a write).
    pub fn drain_unused(&mut self) -> Vec<Call> {
        self.answers.drain(..).map(|(c, _)| c).collect()
    }
}
