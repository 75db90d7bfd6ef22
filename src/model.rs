//! The records a source hands to the planner: users and groups as the directory sees
//! them, with the assignment decision already made.
//!
//! Records keep every attribute as JSON so that a mapping script can read any field
//! the directory has (Graph-shaped, so one script serves the `graph` and `file`
//! sources); only the handful of fields the runtime itself needs are lifted out.

use serde_json::{Map, Value};

/// User or group: the two object kinds every source and target knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ObjectKind {
    User,
    Group,
}

impl ObjectKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ObjectKind::User => "user",
            ObjectKind::Group => "group",
        }
    }
    pub fn parse(s: &str) -> Option<ObjectKind> {
        match s {
            "user" => Some(ObjectKind::User),
            "group" => Some(ObjectKind::Group),
            _ => None,
        }
    }
}

/// Whether the source puts an object up for provisioning, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Assignment {
    /// Up for provisioning; the text says why (e.g. "assigned (role User)").
    Assigned(String),
    /// Present in the directory but not assigned; the text says why.
    NotAssigned(String),
}

impl Assignment {
    pub fn is_assigned(&self) -> bool {
        matches!(self, Assignment::Assigned(_))
    }
    pub fn reason(&self) -> &str {
        match self {
            Assignment::Assigned(r) | Assignment::NotAssigned(r) => r,
        }
    }
}

/// A directory user.
#[derive(Debug, Clone)]
pub struct SourceUser {
    pub id: String,
    pub user_principal_name: String,
    /// Every attribute of the record, plus `appRoles` (role names).
    pub record: Map<String, Value>,
    pub assignment: Assignment,
    /// Soft-deleted in the directory (Graph `@removed`, or `deletedDateTime` in a file).
    pub soft_deleted: bool,
}

/// A directory group.
#[derive(Debug, Clone)]
pub struct SourceGroup {
    pub id: String,
    pub display_name: String,
    pub record: Map<String, Value>,
    /// Direct members (user or group ids).
    pub members: Vec<String>,
    pub assignment: Assignment,
}

/// A record the source could not read; it fails alone, the others go on.
#[derive(Debug, Clone)]
pub struct RecordError {
    pub kind: ObjectKind,
    /// The record's id if it had one, else its position.
    pub object: String,
    pub message: String,
}

/// Everything a source read in one cycle.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    pub users: Vec<SourceUser>,
    pub groups: Vec<SourceGroup>,
    pub errors: Vec<RecordError>,
    /// An opaque marker of the source's state (file hash, Graph deltaLinks).
    pub watermark: Option<String>,
    /// Nothing changed since the watermark: the lists are empty and not to be used.
    pub unchanged: bool,
    /// Only these object ids changed (incremental read); `None` means evaluate all.
    /// The lists still hold every object, so objects absent from them are gone.
    pub changed: Option<std::collections::HashSet<String>>,
    /// A new directory cache to store with the watermark (Graph), if any.
    pub cache: Option<String>,
}

impl Snapshot {
    pub fn find_user(&self, key: &str) -> Option<&SourceUser> {
        self.users
            .iter()
            .find(|u| u.id == key || u.user_principal_name.eq_ignore_ascii_case(key))
    }
    pub fn find_group(&self, key: &str) -> Option<&SourceGroup> {
        self.groups
            .iter()
            .find(|g| g.id == key || g.display_name == key)
    }
}
