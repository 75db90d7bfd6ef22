//! Sources: where users, groups and assignments come from.
//!
//! A source turns the directory into a `Snapshot` with the assignment decision made;
//! everything after that (scripts, plan, apply) is the same whichever source it was.

pub mod directory;

use crate::config::{Scope, SourceSettings};
use crate::error::{Error, InputError};
use crate::model::Snapshot;
use sha2::{Digest, Sha256};
use std::path::PathBuf;

/// A directory to read from.
pub trait Source {
    /// Reads the directory. `watermark` is what the last applied cycle recorded; a
    /// source that can read only changes uses it, others ignore it.
    fn read(&mut self, watermark: Option<&str>) -> Result<Snapshot, Error>;
    /// A short description for messages.
    fn describe(&self) -> String;
    /// True when the directory is known to be as it was at `watermark`, so a cycle
    /// can be skipped without reading it. Sources that cannot tell say false.
    fn unchanged_since(&mut self, _watermark: &str) -> Result<bool, Error> {
        Ok(false)
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
    fn read(&mut self, _watermark: Option<&str>) -> Result<Snapshot, Error> {
        let bytes = std::fs::read(&self.path).map_err(|e| InputError::Directory {
            file: self.path.clone(),
            message: format!("cannot read: {e}"),
        })?;
        let text = String::from_utf8(bytes).map_err(|e| InputError::Directory {
            file: self.path.clone(),
            message: format!("not UTF-8 text: {e}"),
        })?;
        let mut snap =
            directory::parse(&text, self.scope).map_err(|message| InputError::Directory {
                file: self.path.clone(),
                message,
            })?;
        snap.watermark = Some(file_watermark(text.as_bytes()));
        Ok(snap)
    }

    fn describe(&self) -> String {
        format!("directory file {}", self.path.display())
    }

    fn unchanged_since(&mut self, watermark: &str) -> Result<bool, Error> {
        let bytes = std::fs::read(&self.path).map_err(|e| InputError::Directory {
            file: self.path.clone(),
            message: format!("cannot read: {e}"),
        })?;
        Ok(file_watermark(&bytes) == watermark)
    }
}

/// Builds the configured source.
pub fn open(settings: &SourceSettings) -> Result<Box<dyn Source>, Error> {
    match settings {
        SourceSettings::File { path, scope } => Ok(Box::new(FileSource::new(path.clone(), *scope))),
        SourceSettings::Graph { .. } => Err(InputError::Usage(
            "source.type = \"graph\" is not available in this build yet; use type = \"file\""
                .into(),
        )
        .into()),
    }
}

fn file_watermark(bytes: &[u8]) -> String {
    format!("sha256:{:x}", Sha256::digest(bytes))
}
