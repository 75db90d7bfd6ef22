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
    /// Every object must be returned for evaluation (scripts changed, retries
    /// pending, `--full`): the source may still read only changes, but must not
    /// answer `unchanged`, and must leave `changed` at `None`.
    pub need_all: bool,
    /// The directory cache stored with the watermark, loaded on demand.
    pub cache: &'a dyn Fn() -> Result<Option<String>, Error>,
}

impl ReadRequest<'_> {
    /// A full read with no prior state (check, preview).
    pub fn full() -> ReadRequest<'static> {
        ReadRequest {
            watermark: None,
            need_all: true,
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
        if !req.need_all && req.watermark == Some(watermark.as_str()) {
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
        snap.watermark = Some(watermark);
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
            client_secret,
            app,
            scope,
            graph_url,
            login_url,
            flatten_nested_groups,
            attributes,
        } => Ok(Box::new(graph::GraphSource::new(
            tenant,
            client_id,
            client_secret.clone(),
            app,
            *scope,
            graph_url,
            login_url,
            *flatten_nested_groups,
            attributes,
            std::time::Duration::from_secs(60),
        ))),
    }
}

fn file_watermark(bytes: &[u8]) -> String {
    format!("sha256:{:x}", Sha256::digest(bytes))
}
