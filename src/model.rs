//! The records a source hands to the planner: users and groups as the directory sees
//! them, with the assignment decision already made.
//!
//! Records keep every attribute as JSON so that a mapping script can read any field
//! the directory has (Graph-shaped, so one script serves the `graph` and `file`
//! sources); only the handful of fields the runtime itself needs are lifted out.

use serde_json::{Map, Value};

/// The role Entra gives when an app defines none; users holding only it are not
/// "effectively entitled" and are not provisioned (Dropbox tutorial).
pub const DEFAULT_ACCESS: &str = "Default Access";

/// The appRoleId Entra uses for "Default Access" (a fixed all-zero GUID).
pub const DEFAULT_ACCESS_ROLE_ID: &str = "00000000-0000-0000-0000-000000000000";

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

/// Why something is so, in words shared by every object it holds for (a million
/// users assigned the same way hold one string between them).
pub type Reason = std::sync::Arc<str>;

/// Whether the source puts an object up for provisioning, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Assignment {
    /// Up for provisioning; the text says why (e.g. "assigned (role User)").
    Assigned(Reason),
    /// Present in the directory but not assigned; the text says why.
    NotAssigned(Reason),
}

impl Assignment {
    pub fn is_assigned(&self) -> bool {
        matches!(self, Assignment::Assigned(_))
    }
    pub fn reason(&self) -> &str {
        self.why()
    }

    /// The reason itself, to share.
    pub fn why(&self) -> &Reason {
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
    pub record: Packed,
    pub assignment: Assignment,
    /// Soft-deleted in the directory (Graph `@removed`, or `deletedDateTime` in a file).
    pub soft_deleted: bool,
}

/// A record as a read holds it until it is evaluated: compact JSON text, a
/// quarter of the parsed map's size (a full read of 100,000 users held 110 MB of
/// maps; a million group memberships, 80 MB of values); `open` parses it.
#[derive(Debug, Clone, Default)]
pub struct Packed(Box<str>);

impl Packed {
    pub fn new(record: Map<String, Value>) -> Packed {
        Packed(Value::Object(record).to_string().into_boxed_str())
    }

    /// The record: every attribute, as read (the text was written from a map,
    /// so it parses; an empty `Packed` is an empty record).
    pub fn open(&self) -> Map<String, Value> {
        serde_json::from_str(&self.0).unwrap_or_default()
    }

    /// The text itself (what a digest is taken of).
    pub fn text(&self) -> &str {
        &self.0
    }
}

/// A directory group.
#[derive(Debug, Clone)]
pub struct SourceGroup {
    pub id: String,
    pub display_name: String,
    /// Every attribute of the record (members too), as read: scripts see it
    /// with `appRoles` (`record_for_scripts`).
    pub record: Packed,
    /// The app roles the group is assigned (role names).
    pub app_roles: Vec<String>,
    /// Direct members (user or group ids).
    pub members: Vec<String>,
    pub assignment: Assignment,
}

impl SourceGroup {
    /// The record as scripts see it: every attribute, plus `appRoles`.
    pub fn record_for_scripts(&self) -> Map<String, Value> {
        let mut record = self.record.open();
        let roles = self.app_roles.iter().cloned().map(Value::String).collect();
        record.insert("appRoles".into(), Value::Array(roles));
        record
    }
}

/// The kinds of record a directory document holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordKind {
    User,
    Group,
    Assignment,
}

impl RecordKind {
    pub fn as_str(self) -> &'static str {
        match self {
            RecordKind::User => "user",
            RecordKind::Group => "group",
            RecordKind::Assignment => "assignment",
        }
    }
}

impl TryFrom<RecordKind> for ObjectKind {
    type Error = ();
    fn try_from(r: RecordKind) -> Result<ObjectKind, ()> {
        match r {
            RecordKind::User => Ok(ObjectKind::User),
            RecordKind::Group => Ok(ObjectKind::Group),
            RecordKind::Assignment => Err(()),
        }
    }
}

impl From<ObjectKind> for RecordKind {
    fn from(k: ObjectKind) -> RecordKind {
        match k {
            ObjectKind::User => RecordKind::User,
            ObjectKind::Group => RecordKind::Group,
        }
    }
}

/// A record the source could not read. It fails alone, and it never reads as an
/// absence: an object whose record is unreadable keeps its last known state.
#[derive(Debug, Clone)]
pub struct RecordError {
    pub record: RecordKind,
    /// The record's id if it had one, else its position (`users[3]`).
    pub object: String,
    /// The object's id, when the record names one.
    pub id: Option<String>,
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
    pub cache: Option<Vec<u8>>,
    /// Objects present in the directory that an incremental read found unchanged:
    /// their records are let go once the read is widened (`release_untouched`),
    /// their ids stay, so that they are not taken for gone.
    pub untouched: Present,
    /// The lists' counts once a cycle that applies has evaluated them and let
    /// them go (`release_lists`).
    pub released: Option<Counts>,
    /// Users a read handed to the cycle as it went (`source::UserSink`) that the
    /// lists do not hold: counted only.
    pub taken: Counts,
}

/// How many users and groups a read found, and how many of them are assigned.
#[derive(Debug, Clone, Copy, Default)]
pub struct Counts {
    pub users: usize,
    pub groups: usize,
    pub assigned_users: usize,
    pub assigned_groups: usize,
}

/// Ids of objects present in the directory.
#[derive(Debug, Clone, Default)]
pub struct Present {
    pub users: std::collections::HashSet<String>,
    pub groups: std::collections::HashSet<String>,
}

/// What the unreadable records of a snapshot leave unknown; the planner keeps the
/// last known state of everything they might concern.
#[derive(Debug, Clone, Default)]
pub struct Unreadable {
    /// Objects whose record failed import, with why.
    pub objects: std::collections::HashMap<(ObjectKind, String), String>,
    /// A user record without a usable id: any user absent from the lists may be it.
    pub unnamed_users: bool,
    pub unnamed_groups: bool,
    /// An assignment record could not be read: anyone may be assigned by it.
    pub assignments: bool,
}

impl Unreadable {
    pub fn of(errors: &[RecordError]) -> Unreadable {
        let mut u = Unreadable::default();
        for e in errors {
            match (e.record, &e.id) {
                (RecordKind::User, Some(id)) => {
                    u.objects
                        .insert((ObjectKind::User, id.clone()), e.message.clone());
                }
                (RecordKind::Group, Some(id)) => {
                    u.objects
                        .insert((ObjectKind::Group, id.clone()), e.message.clone());
                }
                (RecordKind::User, None) => u.unnamed_users = true,
                (RecordKind::Group, None) => u.unnamed_groups = true,
                (RecordKind::Assignment, _) => u.assignments = true,
            }
        }
        u
    }

    /// Whether an absent object of this kind may only look absent.
    pub fn unnamed(&self, kind: ObjectKind) -> bool {
        match kind {
            ObjectKind::User => self.unnamed_users,
            ObjectKind::Group => self.unnamed_groups,
        }
    }
}

impl Snapshot {
    /// Every id in the directory, for a plan over a partial evaluation (`None`
    /// when every record is evaluated).
    pub fn present(&self) -> Option<Present> {
        self.changed.as_ref()?;
        let mut p = self.untouched.clone();
        p.users.extend(self.users.iter().map(|u| u.id.clone()));
        p.groups.extend(self.groups.iter().map(|g| g.id.clone()));
        Some(p)
    }

    /// Lets go of the records an incremental read does not need (objects that did
    /// not change), keeping their ids: a cycle over 100 changes in a large
    /// directory holds 100 records, not all of them.
    pub fn release_untouched(&mut self) {
        let Some(changed) = &self.changed else {
            return;
        };
        let untouched = &mut self.untouched;
        self.users.retain(|u| {
            changed.contains(&u.id) || {
                untouched.users.insert(u.id.clone());
                false
            }
        });
        self.groups.retain(|g| {
            changed.contains(&g.id) || {
                untouched.groups.insert(g.id.clone());
                false
            }
        });
        self.users.shrink_to_fit();
        self.groups.shrink_to_fit();
    }

    /// How many users and groups the directory holds (read or untouched).
    pub fn counts(&self) -> (usize, usize) {
        let listed = self.listed();
        (
            listed.users + self.untouched.users.len(),
            listed.groups + self.untouched.groups.len(),
        )
    }

    /// The lists' counts, whether they are still held or were let go.
    pub fn listed(&self) -> Counts {
        self.released.unwrap_or_else(|| Counts {
            users: self.users.len() + self.taken.users,
            groups: self.groups.len(),
            assigned_users: self.taken.assigned_users
                + self
                    .users
                    .iter()
                    .filter(|u| u.assignment.is_assigned())
                    .count(),
            assigned_groups: self
                .groups
                .iter()
                .filter(|g| g.assignment.is_assigned())
                .count(),
        })
    }

    /// Lets go of the lists once every record is evaluated, keeping their counts:
    /// at a million users the ids, names and assignments are 200 MB that nothing
    /// after evaluation reads.
    pub fn release_lists(&mut self) {
        self.released = Some(self.listed());
        self.users = vec![];
        self.groups = vec![];
    }

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
