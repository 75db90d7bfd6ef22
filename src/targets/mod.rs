//! Targets: the apps scimsync provisions into.
//!
//! The planner speaks in flat attribute maps and changes; a target turns them into
//! its wire protocol. `apply` is the only caller that writes through this trait.
//! Errors are classified (auth, not found, conflict, invalid, throttled, server,
//! transport) so that retries, escrow and quarantine can decide without parsing text.

pub mod legacy;
pub mod pool;
pub mod scim;

pub use crate::http::{ErrorClass, TargetError};

use crate::config::{TargetKind, TargetSettings};
use crate::model::ObjectKind;
use crate::scim::attribute::Attrs;
use serde_json::Value;

/// Most pages one listing of a target may take (a server that pages without end
/// stops the cycle instead of filling memory).
pub const MAX_LIST_PAGES: usize = 100_000;

/// Added to a 404 on a collection: the base URL itself is wrong.
pub const BASE_URL_HINT: &str = "is the SCIM base URL right?";

/// An object as the target holds it.
#[derive(Debug, Clone)]
pub struct Remote {
    pub id: String,
    /// The resource in SCIM shape (for `dropbox-legacy`, converted to it).
    pub resource: Value,
}

/// One attribute change; `new == None` clears the attribute.
#[derive(Debug, Clone, PartialEq)]
pub struct Change {
    pub path: String,
    pub old: Option<Value>,
    pub new: Option<Value>,
}

/// What a provisioning target must do.
pub trait Target {
    /// The quirks of this target.
    fn profile(&self) -> &crate::scim::profile::Profile;
    /// Entra's "Test Connection": a filter on a random userName must return nothing.
    fn test_connection(&mut self) -> Result<(), TargetError>;
    /// Looks an object up by one matching attribute.
    fn find(
        &mut self,
        kind: ObjectKind,
        path: &str,
        value: &str,
    ) -> Result<Vec<Remote>, TargetError>;
    /// Reads one object; `None` if it is gone.
    fn get(&mut self, kind: ObjectKind, id: &str) -> Result<Option<Remote>, TargetError>;
    /// Creates an object; returns its target id.
    fn create(&mut self, kind: ObjectKind, attrs: &Attrs) -> Result<String, TargetError>;
    /// Applies attribute changes (including `active`).
    fn modify(&mut self, kind: ObjectKind, id: &str, changes: &[Change])
        -> Result<(), TargetError>;
    /// Deletes an object; an object already gone is success.
    fn delete(&mut self, kind: ObjectKind, id: &str) -> Result<(), TargetError>;
    fn add_members(&mut self, group_id: &str, user_ids: &[String]) -> Result<(), TargetError>;
    fn remove_members(&mut self, group_id: &str, user_ids: &[String]) -> Result<(), TargetError>;
    /// Requests sent so far, by kind ("GET", "POST", …), for summaries and benchmarks.
    fn request_counts(&self) -> std::collections::BTreeMap<String, u64>;
    /// Every object of a kind (paged), with group members.
    fn list(&mut self, _kind: ObjectKind) -> Result<Vec<Remote>, TargetError> {
        Err(TargetError::new(
            ErrorClass::Invalid,
            None,
            "this target cannot list its objects",
        ))
    }
    /// Whether `list` returns groups with their members.
    fn lists_group_members(&self) -> bool {
        true
    }
    /// One group with its members (look-ups leave them out where the profile says
    /// so); `None` when the group is gone.
    fn get_with_members(&mut self, id: &str) -> Result<Option<Remote>, TargetError> {
        self.get(ObjectKind::Group, id)
    }
    /// How many new objects one create call may carry.
    fn create_batch_size(&mut self) -> usize {
        1
    }
    /// Creates several objects; one result per object, in order.
    fn create_batch(
        &mut self,
        kind: ObjectKind,
        items: &[&Attrs],
    ) -> Vec<Result<String, TargetError>> {
        items.iter().map(|a| self.create(kind, a)).collect()
    }
    /// A wire for creates one by one on the worker pool, where the target carries
    /// requests several at once and takes no batch in one request; `None` where it
    /// does not (the caller then uses `create_batch`).
    fn wire(&mut self) -> Option<pool::Wire> {
        None
    }
    /// Workers for calls run ahead of the actions that take their answers
    /// (updates, deletes, memberships), when this target carries several at once.
    fn call_wire(&mut self) -> Option<pool::Wire> {
        None
    }
    /// Requests this target may carry at once (`[target] max_in_flight`).
    fn max_in_flight(&self) -> usize {
        1
    }
    /// Runs independent calls, up to `max_in_flight` at once; one answer per call,
    /// in call order.
    fn run_calls(&mut self, calls: &[pool::Call]) -> Vec<pool::Reply> {
        calls.iter().map(|c| pool::execute(self, c)).collect()
    }
    /// Reads its credentials again from the next request on (a file changed, SIGHUP,
    /// `scimsync authorize` beside a running daemon).
    fn reload_credentials(&mut self) {}
    /// Access tokens obtained with a refresh token so far.
    fn token_refreshes(&self) -> u64 {
        0
    }
    /// Requests by method and answer status so far (for metrics).
    fn answer_counts(&self) -> std::collections::BTreeMap<(String, String), u64> {
        Default::default()
    }
    /// Which of these users are invited (not yet joined), where the target can tell.
    fn invited(
        &mut self,
        _ids: &[String],
    ) -> Result<std::collections::HashSet<String>, TargetError> {
        Ok(Default::default())
    }
}

/// Builds the configured target. OAuth without a refresh token yet is the admin's
/// to fix (exit 2): `scimsync authorize` writes it.
pub fn open(settings: &TargetSettings) -> Result<Box<dyn Target>, crate::error::Error> {
    if let crate::http::credential::Credential::OAuth(o) = &settings.credential {
        o.refresh_token.resolve().map_err(|m| {
            crate::error::InputError::Usage(format!(
                "target.refresh_token: {m}; run `scimsync authorize` to authorize scimsync with Dropbox"
            ))
        })?;
    }
    match settings.kind {
        TargetKind::Dropbox | TargetKind::Scim => Ok(Box::new(scim::ScimTarget::new(settings)?)),
        TargetKind::DropboxLegacy => Ok(Box::new(legacy::LegacyTarget::new(settings))),
    }
}

/// Reads a value at a path of a remote resource, for matching and drift checks.
pub fn remote_value(r: &Remote, path: &str) -> Option<Value> {
    crate::scim::attribute::AttrPath::parse(path)
        .ok()?
        .get(&r.resource)
        .cloned()
}
