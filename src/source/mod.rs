//! Sources: where users, groups and assignments come from.
//!
//! A source turns the directory into a `Snapshot` with the assignment decision made;
//! everything after that (scripts, plan, apply) is the same whichever source it was.

pub mod directory;
pub mod graph;

use crate::config::{Scope, SourceSettings};
use crate::error::{Error, InputError};
use crate::model::Snapshot;
use sha2::{Digest, Sha256};
use std::path::PathBuf;

/// What a cycle asks of a source.
pub struct ReadRequest<'a> {
    /// What the last applied cycle recorded; `None` for a full read.
    pub watermark: Option<&'a str>,
    /// Every object must be returned for evaluation (scripts changed, `--full`):
    /// the source may still read only changes, but must not answer `unchanged`, and
    /// must leave `changed` at `None`.
    pub need_all: bool,
    /// Objects wait to be planned again (escrows due, actions that did not
    /// complete): the source must not answer `unchanged`, but may name what changed.
    pub need_records: bool,
    /// The directory cache stored with the watermark, loaded on demand.
    pub cache: &'a dyn Fn() -> Result<Option<String>, Error>,
}

impl ReadRequest<'_> {
    /// A full read with no prior state (check, preview).
    pub fn full() -> ReadRequest<'static> {
        ReadRequest {
            watermark: None,
            need_all: true,
            need_records: true,
            cache: &|| Ok(None),
        }
    }
}

/// A directory to read from.
pub trait Source {
    /// Reads the directory, only its changes where the source can.
    fn read(&mut self, req: &ReadRequest<'_>) -> Result<Snapshot, Error>;
    /// A short description for messages.
    fn describe(&self) -> String;
    /// Checks credentials and reachability (`scimsync check`).
    fn check(&mut self) -> Result<(), Error> {
        Ok(())
    }
    /// Requests sent to the directory so far, by method.
    fn request_counts(&self) -> std::collections::BTreeMap<String, u64> {
        Default::default()
    }
    /// Reads its secrets again from the next request on (a file changed, SIGHUP).
    fn reload_credentials(&mut self) {}
}

/// The `file` source: a Graph-shaped JSON document on disk.
pub struct FileSource {
    path: PathBuf,
    scope: Scope,
}

impl FileSource {
    pub fn new(path: PathBuf, scope: Scope) -> Self {
        FileSource { path, scope }
    }
}

impl Source for FileSource {
    fn read(&mut self, req: &ReadRequest<'_>) -> Result<Snapshot, Error> {
        let bytes = std::fs::read(&self.path).map_err(|e| InputError::Directory {
            file: self.path.clone(),
            message: format!("cannot read: {e}"),
        })?;
        let watermark = file_watermark(&bytes);
        if !req.need_all && !req.need_records && req.watermark == Some(watermark.as_str()) {
            return Ok(Snapshot {
                watermark: Some(watermark),
                unchanged: true,
                ..Snapshot::default()
            });
        }
        let text = String::from_utf8(bytes).map_err(|e| InputError::Directory {
            file: self.path.clone(),
            message: format!("not UTF-8 text: {e}"),
        })?;
        let mut snap =
            directory::parse(&text, self.scope).map_err(|message| InputError::Directory {
                file: self.path.clone(),
                message,
            })?;
        drop(text);
        snap.watermark = Some(watermark);
        // Per-record digests, kept with the watermark: next time only records whose
        // digest changed are evaluated, so editing one user in a 100,000-user file
        // costs one evaluation, not 100,000.
        let digests = Digests::of(&snap);
        if !req.need_all {
            if let Some(before) = (req.cache)()?.as_deref().and_then(Digests::parse) {
                snap.changed = Some(before.changed(&digests));
            }
        }
        snap.cache = Some(digests.to_text());
        Ok(snap)
    }

    fn describe(&self) -> String {
        format!("directory file {}", self.path.display())
    }
}

/// Builds the configured source.
pub fn open(settings: &SourceSettings) -> Result<Box<dyn Source>, Error> {
    match settings {
        SourceSettings::File { path, scope } => Ok(Box::new(FileSource::new(path.clone(), *scope))),
        SourceSettings::Graph {
            tenant,
            client_id,
            credential,
            app,
            scope,
            graph_url,
            login_url,
            flatten_nested_groups,
            attributes,
            limits,
        } => Ok(Box::new(
            graph::GraphSource::new(
                tenant,
                client_id,
                credential.clone(),
                app,
                *scope,
                graph_url,
                login_url,
                *flatten_nested_groups,
                attributes,
                std::time::Duration::from_secs(60),
            )
            .with_limits(*limits),
        )),
    }
}

/// A digest per directory record (the record as read, with its assignment and,
/// for groups, members), for telling which records a file edit touched.
#[derive(Debug, Default, PartialEq)]
struct Digests(std::collections::HashMap<String, u64>);

const DIGESTS_HEADER: &str = "scimsync file digests v1";

impl Digests {
    fn of(snap: &Snapshot) -> Digests {
        use std::hash::{Hash, Hasher};
        // `DefaultHasher::new()` has fixed keys: digests compare across processes of
        // one build. A new Rust release may change them, which costs one full
        // evaluation, nothing else.
        let digest = |parts: &[&dyn Fn(&mut std::hash::DefaultHasher)]| {
            let mut h = std::hash::DefaultHasher::new();
            for p in parts {
                p(&mut h);
            }
            h.finish()
        };
        let mut map =
            std::collections::HashMap::with_capacity(snap.users.len() + snap.groups.len());
        for u in &snap.users {
            let d = digest(&[&|h| hash_map(&u.record, h), &|h| {
                format!("{:?}{}", u.assignment, u.soft_deleted).hash(h)
            }]);
            map.insert(format!("u:{}", u.id), d);
        }
        for g in &snap.groups {
            let d = digest(&[
                &|h| hash_map(&g.record, h),
                &|h| format!("{:?}", g.assignment).hash(h),
                &|h| g.members.hash(h),
            ]);
            map.insert(format!("g:{}", g.id), d);
        }
        Digests(map)
    }

    fn to_text(&self) -> String {
        let mut out = String::with_capacity(self.0.len() * 32 + 32);
        out.push_str(DIGESTS_HEADER);
        out.push('\n');
        for (k, v) in &self.0 {
            out.push_str(&format!("{v:016x} {k}\n"));
        }
        out
    }

    /// `None` for anything else (a Graph cache, a damaged value): a full evaluation.
    fn parse(text: &str) -> Option<Digests> {
        let mut lines = text.lines();
        if lines.next()? != DIGESTS_HEADER {
            return None;
        }
        let mut map = std::collections::HashMap::new();
        for l in lines {
            let (d, k) = l.split_once(' ')?;
            map.insert(k.to_string(), u64::from_str_radix(d, 16).ok()?);
        }
        Some(Digests(map))
    }

    /// Source ids of records that are new or differ (removed ones are found by the
    /// plan: their links have no record).
    fn changed(&self, now: &Digests) -> std::collections::HashSet<String> {
        now.0
            .iter()
            .filter(|(k, d)| self.0.get(*k) != Some(d))
            .map(|(k, _)| k[2..].to_string())
            .collect()
    }
}

/// Feeds a JSON value to a hasher without serializing it.
fn hash_value(v: &serde_json::Value, h: &mut impl std::hash::Hasher) {
    use serde_json::Value;
    use std::hash::Hash;
    match v {
        Value::Null => 0u8.hash(h),
        Value::Bool(b) => (1u8, b).hash(h),
        Value::Number(n) => (2u8, n.to_string()).hash(h),
        Value::String(s) => (3u8, s).hash(h),
        Value::Array(a) => {
            (4u8, a.len()).hash(h);
            a.iter().for_each(|x| hash_value(x, h));
        }
        Value::Object(o) => hash_map(o, h),
    }
}

fn hash_map(o: &serde_json::Map<String, serde_json::Value>, h: &mut impl std::hash::Hasher) {
    use std::hash::Hash;
    (5u8, o.len()).hash(h);
    for (k, v) in o {
        k.hash(h);
        hash_value(v, h);
    }
}

fn file_watermark(bytes: &[u8]) -> String {
    format!("sha256:{:x}", Sha256::digest(bytes))
}
