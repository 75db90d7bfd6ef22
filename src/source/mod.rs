//! Sources: where users, groups and assignments come from.
//!
//! A source turns the directory into a `Snapshot` with the assignment decision made;
//! everything after that (scripts, plan, apply) is the same whichever source it was.

pub mod directory;
pub mod file;
pub mod graph;
mod scan;

pub use file::FileSource;

use crate::config::SourceSettings;
use crate::error::Error;
use crate::model::{Snapshot, SourceUser};
use std::collections::HashSet;

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
    pub cache: &'a dyn Fn() -> Result<Option<Vec<u8>>, Error>,
    /// Objects the cycle evaluates again whatever changed (pending, escrows due):
    /// a source that lets go of unchanged records keeps these.
    pub keep: Option<&'a HashSet<String>>,
    /// Where a read of every record may hand each user as it is made, before it
    /// reads the next (see `UserSink`). A source that cannot leaves it unused.
    pub users: Option<&'a std::cell::RefCell<dyn UserSink + 'a>>,
    /// Where a read may put the directory cache it makes as it goes (see
    /// `CacheSink`). A source that cannot leaves it unused.
    pub cache_out: Option<&'a std::cell::RefCell<dyn CacheSink>>,
}

/// Takes the users of a read of every record one by one, as they are made: the
/// cycle evaluates each there, so a million records are never held at once. A
/// source that hands its users over says so (`Snapshot::taken`).
pub trait UserSink {
    /// How many users and groups the read holds (room for what comes of them).
    fn expect(&mut self, users: usize, groups: usize);
    /// One user, as read. What the sink gives back is kept in the snapshot's
    /// list (without its record); what it keeps is only counted there.
    fn user(&mut self, user: SourceUser) -> Option<SourceUser>;
}

/// Takes the directory cache a read makes (`Snapshot::cache`) a part at a time,
/// in order, so that the read does not hold it whole; the cycle gets it back
/// whole to record it.
pub trait CacheSink {
    /// The next part; `false` if it cannot take it (the read keeps the rest).
    fn part(&mut self, part: &[u8]) -> bool;
    /// Drops the parts taken: the read could not hand over the rest.
    fn forget(&mut self);
}

impl ReadRequest<'_> {
    /// A full read with no prior state (check, preview).
    pub fn full() -> ReadRequest<'static> {
        ReadRequest {
            watermark: None,
            need_all: true,
            need_records: true,
            cache: &|| Ok(None),
            keep: None,
            users: None,
            cache_out: None,
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

/// Builds the configured source.
pub fn open(settings: &SourceSettings) -> Result<Box<dyn Source>, Error> {
    match settings {
        SourceSettings::File { path, scope } => Ok(Box::new(FileSource::new(path.clone(), *scope))),
        SourceSettings::Graph { .. } => match graph_source(settings) {
            Some(g) => Ok(Box::new(g)),
            None => unreachable!("a Graph source"),
        },
    }
}

/// The Graph source of the config, if the config reads Graph.
pub fn graph_source(settings: &SourceSettings) -> Option<graph::GraphSource> {
    let SourceSettings::Graph {
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
    } = settings
    else {
        return None;
    };
    Some(
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
    )
}
