//! Snapshots: a read-only copy of the live team, to rehearse against.
//!
//! A mapping change, a threshold or a migration is best tried on the real team's
//! shape before it touches the real team. `scimsync snapshot --out team.json` lists
//! the target's users and groups (with their members) and, with `[legacy]`, the
//! Business API members and groups — reads only, never a write; `scimsync emulate
//! dropbox --load team.json` then serves that copy, ids and statuses kept, so plan,
//! sync and migrate run end to end against it.

use crate::config::Settings;
use crate::error::Error;
use crate::model::ObjectKind;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::path::Path;

/// The format of a snapshot file.
pub const FORMAT: u32 = 1;

/// A copy of a team.
#[derive(Debug, Serialize, Deserialize)]
pub struct Taken {
    pub format: u32,
    pub taken_at: String,
    /// The target it was read from.
    pub target: String,
    /// SCIM users as the target lists them (ids, status extension and all).
    pub users: Vec<Value>,
    /// SCIM groups with their members.
    pub groups: Vec<Value>,
    /// The Business API's view, with `[legacy]`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub legacy: Option<Legacy>,
}

/// The Business API's members (profiles) and groups (summaries).
#[derive(Debug, Serialize, Deserialize)]
pub struct Legacy {
    pub members: Vec<Value>,
    pub groups: Vec<Value>,
}

/// Reads the live target (and the legacy integration's view) without a write.
pub fn take(settings: &Settings) -> Result<Taken, Error> {
    let mut target = crate::targets::open(&settings.target)?;
    let mut list = |kind: ObjectKind| -> Result<Vec<Value>, Error> {
        let all = target.list(kind).map_err(Error::read(format!(
            "listing the target's {}s failed",
            kind.as_str()
        )))?;
        Ok(all.into_iter().map(|r| r.resource).collect())
    };
    let users = list(ObjectKind::User)?;
    let groups = list(ObjectKind::Group)?;
    let legacy = match &settings.legacy {
        None => None,
        Some(l) => {
            let mut api =
                crate::targets::legacy::LegacyTarget::for_legacy(l, settings.target.timeout);
            let failed =
                |what: &str| Error::read(format!("listing the Business API's {what} failed"));
            Some(Legacy {
                members: api.list_members().map_err(failed("members"))?,
                groups: api.list_groups().map_err(failed("groups"))?,
            })
        }
    };
    Ok(Taken {
        format: FORMAT,
        taken_at: crate::clock::rfc3339(crate::clock::now()),
        target: settings.target.url.clone(),
        users,
        groups,
        legacy,
    })
}

/// Written owner-only: a snapshot holds the team's personal data.
pub fn write(taken: &Taken, path: &Path) -> Result<(), Error> {
    let text = serde_json::to_string_pretty(taken)?;
    crate::private::write(path, text.as_bytes()).map_err(Error::file(path))
}
