//! Gather: the target facts a plan decides on, read before anything is decided.
//!
//! What a cycle will do must be known before it does it, so `plan` can show it and
//! `sync` can do exactly that: the matching look-ups of the objects that are to be
//! created (one listing of the target from 50 on, one filter query per object
//! below, run on the worker pool), and for a full cycle the target's objects and
//! their group members, which the plan compares with what should be. Reads only,
//! never a write. A look-up that fails fails its object alone; a full listing that
//! fails stops the cycle (drift cannot be judged from half a target).

use crate::error::Error;
use crate::evaluate::{desired_active, Decision};
use crate::model::ObjectKind;
use crate::scim::attribute::{match_key, Attrs};
use crate::state::LinkMap;
use crate::targets::pool::{Answer, Call};
use crate::targets::{remote_value, Remote, Target, TargetError};
use serde_json::Value;
use std::collections::{BTreeSet, HashMap, HashSet};

/// From this many new users (or groups) on, the target's users (groups) are listed
/// once for matching instead of one filter query each.
pub const LIST_FOR_MATCHING: usize = 50;

/// What the target holds under an object's matching values.
#[derive(Debug, Clone)]
pub enum Match {
    /// Nothing: the object is created.
    None,
    /// One object, found by `path`: adopted.
    One { path: String, remote: Remote },
    /// Several under one value: none is adopted.
    Many {
        path: String,
        value: String,
        count: usize,
    },
    /// The look-up failed: the object fails alone this cycle.
    Failed(TargetError),
}

/// The target's objects (a full cycle), by target id.
#[derive(Debug, Default)]
pub struct Remotes {
    pub users: HashMap<String, Remote>,
    pub groups: HashMap<String, Remote>,
}

impl Remotes {
    pub fn of(&self, kind: ObjectKind) -> &HashMap<String, Remote> {
        match kind {
            ObjectKind::User => &self.users,
            ObjectKind::Group => &self.groups,
        }
    }
}

/// Everything read from the target for one plan.
#[derive(Debug, Default)]
pub struct Facts {
    /// (kind, source id) → what its matching values find. A new object looked up
    /// that matches nothing has no entry (see `found`).
    pub matches: HashMap<(ObjectKind, String), Match>,
    pub remote: Option<Remotes>,
    /// The target lists groups with their members (the Business API does not).
    pub lists_members: bool,
    /// Members still invited, among those the plan disables (Dropbox deletes an
    /// invited member it is asked to suspend).
    pub invited: BTreeSet<String>,
}

impl Facts {
    /// The target ids of the objects of a kind the look-ups found one of.
    pub fn matched(&self, kind: ObjectKind) -> impl Iterator<Item = &str> {
        self.matches
            .iter()
            .filter(move |((k, _), _)| *k == kind)
            .filter_map(|(_, m)| match m {
                Match::One { remote, .. } => Some(remote.id.as_str()),
                _ => None,
            })
    }

    /// Records what a look-up found. That nothing matches is kept only where it
    /// says something no entry does (a create in doubt made nothing): for a new
    /// object, no entry means the same (at a million new users, 200 MB of them).
    fn found(&mut self, w: &Wanted<'_>, m: Match) {
        if w.doubt || !matches!(m, Match::None) {
            self.matches.insert((w.kind, w.source_id.to_string()), m);
        }
    }

    /// A digest of every fact, so a reviewed plan can tell that the target moved.
    pub fn hash(&self) -> String {
        use sha2::{Digest, Sha256};
        let mut h = Sha256::new();
        let mut matches: Vec<(&(ObjectKind, String), &Match)> = self.matches.iter().collect();
        matches.sort_by(|a, b| a.0.cmp(b.0));
        for ((kind, id), m) in matches {
            h.update(format!("{}\0{id}\0", kind.as_str()));
            match m {
                Match::None => h.update(b"none"),
                Match::One { path, remote } => {
                    h.update(format!("one\0{path}\0{}\0{}", remote.id, remote.resource))
                }
                Match::Many { path, value, count } => {
                    h.update(format!("many\0{path}\0{value}\0{count}"))
                }
                Match::Failed(e) => h.update(format!("failed\0{}", e.message)),
            }
            h.update(b"\n");
        }
        if let Some(r) = &self.remote {
            for kind in [ObjectKind::User, ObjectKind::Group] {
                let mut all: Vec<&Remote> = r.of(kind).values().collect();
                all.sort_by(|a, b| a.id.cmp(&b.id));
                for x in all {
                    h.update(format!("{}\0{}\0{}\n", kind.as_str(), x.id, x.resource));
                }
            }
        }
        for i in &self.invited {
            h.update(format!("invited\0{i}\n"));
        }
        format!("{:x}", h.finalize())
    }
}

/// The objects to look up before planning: new objects in scope (every one in scope
/// in a full cycle, where a linked object may be gone from the target) and creates
/// in doubt, leaving out those that sit this cycle out.
pub fn wanted<'a>(
    evaluated: &'a crate::evaluate::Evaluations,
    links: (&LinkMap, &LinkMap),
    in_doubt: &'a HashMap<(ObjectKind, String), Attrs>,
    full: bool,
    sits_out: impl Fn(ObjectKind, &str) -> bool,
) -> Vec<Wanted<'a>> {
    let linked = |kind: ObjectKind, id: &str| match kind {
        ObjectKind::User => links.0.contains_key(id),
        ObjectKind::Group => links.1.contains_key(id),
    };
    // Room for every evaluation at once: collected by doubling, the list held its
    // old and new buffers together (at a million new users, 40 MB each).
    let mut out: Vec<Wanted> = Vec::with_capacity(evaluated.len());
    let candidates = evaluated
        .iter()
        .filter(|e| matches!(e.decision, Decision::InScope(_)))
        .filter(|e| full || !linked(e.kind, &e.source_id))
        .filter(|e| !sits_out(e.kind, &e.source_id))
        .filter_map(|e| {
            let attrs = e.attrs.as_ref()?;
            let wanted = e.kind == ObjectKind::Group || desired_active(attrs);
            let doubt =
                !in_doubt.is_empty() && in_doubt.contains_key(&(e.kind, e.source_id.to_string()));
            wanted.then_some(Wanted {
                kind: e.kind,
                source_id: &e.source_id,
                attrs,
                doubt,
            })
        });
    out.extend(candidates);
    if in_doubt.is_empty() {
        return out;
    }
    // Creates in doubt the evaluations do not ask for (a set of a million asked
    // ids only when there are any).
    let asked: HashSet<(ObjectKind, &str)> = out.iter().map(|w| (w.kind, w.source_id)).collect();
    let mut doubts: Vec<Wanted> = in_doubt
        .iter()
        .filter(|((k, id), _)| !linked(*k, id) && !asked.contains(&(*k, id.as_str())))
        .map(|((kind, id), attrs)| Wanted {
            kind: *kind,
            source_id: id,
            attrs,
            doubt: true,
        })
        .collect();
    doubts.sort_by(|a, b| (a.kind, a.source_id).cmp(&(b.kind, b.source_id)));
    out.extend(doubts);
    out
}

/// An object that may be created: what to look it up by.
pub struct Wanted<'a> {
    pub kind: ObjectKind,
    pub source_id: &'a str,
    pub attrs: &'a Attrs,
    /// A create in doubt: that nothing matches is worth keeping (it made nothing).
    pub doubt: bool,
}

/// Reads the facts: matching look-ups for `wanted`, and with `full` the whole
/// target. `matching` gives the matching attributes of users and of groups.
pub fn gather(
    target: &mut dyn Target,
    wanted: &[Wanted<'_>],
    matching: (&[String], &[String]),
    full: bool,
) -> Result<Facts, Error> {
    let mut facts = Facts {
        lists_members: target.lists_group_members(),
        ..Facts::default()
    };
    let mut listed: HashMap<ObjectKind, Vec<Remote>> = HashMap::new();
    if full {
        let mut remotes = Remotes::default();
        for kind in [ObjectKind::User, ObjectKind::Group] {
            let all = target.list(kind).map_err(Error::read(format!(
                "a full cycle reads the whole target, and listing its {}s failed",
                kind.as_str()
            )))?;
            let by_id = match kind {
                ObjectKind::User => &mut remotes.users,
                ObjectKind::Group => &mut remotes.groups,
            };
            by_id.extend(all.iter().map(|r| (r.id.clone(), r.clone())));
            listed.insert(kind, all);
        }
        facts.remote = Some(remotes);
    }
    for kind in [ObjectKind::User, ObjectKind::Group] {
        let paths = match kind {
            ObjectKind::User => matching.0,
            ObjectKind::Group => matching.1,
        };
        let mine: Vec<&Wanted> = wanted.iter().filter(|w| w.kind == kind).collect();
        if mine.is_empty() {
            continue;
        }
        if !listed.contains_key(&kind) && mine.len() >= LIST_FOR_MATCHING {
            match target.list(kind) {
                Ok(all) => {
                    listed.insert(kind, all);
                }
                Err(e) => log::debug!("matching by filter queries: {}", e.message),
            }
        }
        match listed.get(&kind) {
            Some(all) => {
                let index = index(all, paths);
                for w in &mine {
                    facts.found(w, match_indexed(&index, paths, w.attrs));
                }
            }
            None => find_each(target, kind, &mine, paths, &mut facts),
        }
    }
    if facts.lists_members {
        members_of_found_groups(target, &mut facts);
    }
    Ok(facts)
}

/// A group a look-up found comes without its members where the profile leaves
/// them out: one read each, so adopting it adds only the members it lacks. A read
/// that fails leaves them unknown (adding a member twice does no harm).
fn members_of_found_groups(target: &mut dyn Target, facts: &mut Facts) {
    for ((kind, _), m) in facts.matches.iter_mut() {
        let Match::One { remote, .. } = m else {
            continue;
        };
        if *kind != ObjectKind::Group || remote.resource.get("members").is_some() {
            continue;
        }
        match target.get_with_members(&remote.id) {
            Ok(Some(r)) => {
                let members = r
                    .resource
                    .get("members")
                    .cloned()
                    .unwrap_or(Value::Array(vec![]));
                if let Some(o) = remote.resource.as_object_mut() {
                    o.insert("members".into(), members);
                }
            }
            Ok(None) => {}
            Err(e) => log::debug!("members of group {}: {}", remote.id, e.message),
        }
    }
}

type Index = HashMap<(String, String), Vec<Remote>>;

fn index(all: &[Remote], paths: &[String]) -> Index {
    let mut index: Index = HashMap::new();
    for r in all {
        for path in paths {
            if let Some(Value::String(v)) = remote_value(r, path) {
                index
                    .entry((path.clone(), match_key(path, &v)))
                    .or_default()
                    .push(r.clone());
            }
        }
    }
    index
}

/// The object's matching values in precedence order: (path, value).
fn values<'a>(paths: &'a [String], attrs: &'a Attrs) -> Vec<(&'a String, &'a str)> {
    paths
        .iter()
        .filter_map(|p| {
            let v = attrs.get(p)?.as_str().filter(|v| !v.is_empty())?;
            Some((p, v))
        })
        .collect()
}

fn decide(path: &str, value: &str, found: Vec<Remote>) -> Option<Match> {
    match found.len() {
        0 => None,
        1 => found.into_iter().next().map(|remote| Match::One {
            path: path.to_string(),
            remote,
        }),
        n => Some(Match::Many {
            path: path.to_string(),
            value: value.to_string(),
            count: n,
        }),
    }
}

fn match_indexed(index: &Index, paths: &[String], attrs: &Attrs) -> Match {
    for (path, value) in values(paths, attrs) {
        let found = index
            .get(&(path.clone(), match_key(path, value)))
            .cloned()
            .unwrap_or_default();
        if let Some(m) = decide(path, value, found) {
            return m;
        }
    }
    Match::None
}

/// One filter query per object and matching attribute, in precedence order: each
/// round asks the objects still unmatched for their next attribute, all of them
/// at once on the worker pool.
fn find_each(
    target: &mut dyn Target,
    kind: ObjectKind,
    wanted: &[&Wanted<'_>],
    paths: &[String],
    facts: &mut Facts,
) {
    let mut open: Vec<(&Wanted, Vec<(&String, &str)>)> = wanted
        .iter()
        .map(|w| (*w, values(paths, w.attrs)))
        .collect();
    while !open.is_empty() {
        let calls: Vec<Call> = open
            .iter()
            .filter_map(|(_, vals)| vals.first())
            .map(|(path, value)| Call::Find {
                kind,
                path: path.to_string(),
                value: value.to_string(),
            })
            .collect();
        let mut replies = target.run_calls(&calls).into_iter();
        let mut next = vec![];
        for (w, mut vals) in open {
            let Some((path, value)) = vals.first().copied() else {
                facts.found(w, Match::None);
                continue;
            };
            let answer = replies.next();
            let m = match answer {
                Some(Ok(Answer::Found(found))) => decide(path, value, found),
                Some(Err(e)) => Some(Match::Failed(e)),
                _ => None,
            };
            match m {
                Some(m) => facts.found(w, m),
                None => {
                    vals.remove(0);
                    next.push((w, vals));
                }
            }
        }
        open = next;
    }
}
