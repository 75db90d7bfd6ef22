//! The Graph-shaped directory document (README "Directory file"): parsing it and
//! deciding who is assigned, exactly as the Entra provisioning service scopes a
//! gallery app. The `file` source reads it from disk; the Graph emulator serves it.

/// The sample directory `init` and the demo start from.
pub const SAMPLE: &str = include_str!("../../examples/directory.json");

use crate::config::Scope;
use crate::ids::{key, split, KeyIndex, SplitKey};
use crate::model::{
    Assignment, Packed, RecordError, RecordKind, Snapshot, SourceGroup, SourceUser,
};
use serde_json::{Map, Value};
use std::collections::{BTreeSet, HashMap, HashSet};

pub use crate::model::DEFAULT_ACCESS;

/// Parses a directory document. Whole-document problems (not JSON, wrong shape, no
/// `users`) are errors; a bad record is reported in `Snapshot::errors` and left out of
/// the lists — with its id when it has one, so the planner keeps that object as it is
/// instead of reading it as gone.
pub fn parse(text: &str, scope: Scope) -> Result<Snapshot, String> {
    let doc: Value = serde_json::from_str(text).map_err(|e| {
        format!(
            "not valid JSON at line {}, column {}: {e}",
            e.line(),
            e.column()
        )
    })?;
    parse_value(doc, scope)
}

/// The records of one kind, read one by one.
pub(super) struct Records<'a> {
    kind: RecordKind,
    key: &'static str,
    errors: &'a mut Vec<RecordError>,
}

/// A group record as read: id, displayName, the record (packed: a group's
/// members are most of a directory's values), member ids.
pub(super) type RawGroup = (String, String, Packed, Vec<String>);

/// A group record with an id, read alone (position, id, and the rest of the
/// group or why it is unreadable): whether its id is shared is known only once
/// every group is read (`Records::unique_groups`).
pub(super) type GroupElement = (usize, String, Result<(String, Packed, Vec<String>), String>);

impl<'a> Records<'a> {
    pub(super) fn new(
        kind: RecordKind,
        key: &'static str,
        errors: &'a mut Vec<RecordError>,
    ) -> Self {
        Records { kind, key, errors }
    }

    /// A user record, with `count` the number of user records carrying an id:
    /// `None` (and a record error) when it has no usable id, shares its id, or has
    /// no userPrincipalName.
    pub(super) fn user(
        &mut self,
        i: usize,
        v: Value,
        count: &dyn Fn(&str) -> u32,
    ) -> Option<(String, String, Map<String, Value>)> {
        let (i, id, rec) = self.with_id(i, v)?;
        let n = count(&id);
        if n > 1 {
            self.shared(i, &id, n as usize);
            return None;
        }
        match text_field(&rec, "userPrincipalName") {
            Ok(upn) => Some((id, upn, rec)),
            Err(m) => {
                self.fail(i, Some(&id), m);
                None
            }
        }
    }

    /// Group records: those with an id of their own, a displayName and readable
    /// members.
    pub(super) fn groups(&mut self, raw: Vec<Value>) -> Vec<RawGroup> {
        let elements = raw
            .into_iter()
            .enumerate()
            .filter_map(|(i, v)| self.group(i, v))
            .collect();
        self.unique_groups(elements)
    }

    /// One group record: `None` (and a record error) when it has no usable id.
    pub(super) fn group(&mut self, i: usize, v: Value) -> Option<GroupElement> {
        let (i, id, rec) = self.with_id(i, v)?;
        let read = text_field(&rec, "displayName").and_then(|n| Ok((n, member_ids(&rec)?)));
        Some((
            i,
            id,
            read.map(|(name, members)| (name, Packed::new(rec), members)),
        ))
    }

    /// The groups whose id no other carries, readable ones: duplicated ids fail
    /// every record that carries them (which one is right is not ours to guess).
    pub(super) fn unique_groups(&mut self, elements: Vec<GroupElement>) -> Vec<RawGroup> {
        let mut count: HashMap<&str, usize> = HashMap::new();
        for (_, id, _) in &elements {
            *count.entry(id.as_str()).or_insert(0) += 1;
        }
        let shared: HashMap<String, usize> = count
            .into_iter()
            .filter(|(_, n)| *n > 1)
            .map(|(id, n)| (id.to_string(), n))
            .collect();
        let mut out = Vec::with_capacity(elements.len());
        for (i, id, read) in elements {
            match (shared.get(&id), read) {
                (Some(n), _) => self.shared(i, &id, *n),
                (None, Ok((name, rec, members))) => out.push((id, name, rec, members)),
                (None, Err(m)) => self.fail(i, Some(&id), m),
            }
        }
        out
    }

    /// The record as an object with a non-empty string id.
    fn with_id(&mut self, i: usize, v: Value) -> Option<(usize, String, Map<String, Value>)> {
        let Value::Object(rec) = v else {
            self.fail(i, None, "not an object");
            return None;
        };
        match rec.get("id") {
            Some(Value::String(id)) if !id.trim().is_empty() => {
                let id = id.clone();
                Some((i, id, rec))
            }
            Some(Value::String(_)) | None | Some(Value::Null) => {
                self.fail(i, None, "missing \"id\"");
                None
            }
            Some(other) => {
                self.fail(i, None, format!("\"id\" must be a string, not {other}"));
                None
            }
        }
    }

    fn shared(&mut self, i: usize, id: &str, n: usize) {
        self.errors.push(RecordError {
            record: self.kind,
            object: id.to_string(),
            id: Some(id.to_string()),
            message: format!(
                "{n} records share this id ({}[{i}] is one); fix the directory so that it is unique",
                self.key
            ),
        });
    }

    fn fail(&mut self, i: usize, id: Option<&str>, message: impl Into<String>) {
        self.errors.push(RecordError {
            record: self.kind,
            object: id
                .map(str::to_string)
                .unwrap_or_else(|| format!("{}[{i}]", self.key)),
            id: id.map(str::to_string),
            message: message.into(),
        });
    }
}

/// A required non-empty string field of a record.
fn text_field(rec: &Map<String, Value>, key: &str) -> Result<String, String> {
    match rec.get(key) {
        Some(Value::String(s)) if !s.trim().is_empty() => Ok(s.clone()),
        Some(Value::String(_)) | None | Some(Value::Null) => Err(format!("missing \"{key}\"")),
        Some(other) => Err(format!("\"{key}\" must be a string, not {other}")),
    }
}

/// A group's member ids: strings, or objects with an `id` (Graph's form).
fn member_ids(rec: &Map<String, Value>) -> Result<Vec<String>, String> {
    let bad = || "\"members\" must be an array of ids".to_string();
    match rec.get("members") {
        None => Ok(vec![]),
        Some(Value::Array(m)) => m
            .iter()
            .map(|v| match v {
                Value::String(s) if !s.is_empty() => Ok(s.clone()),
                Value::Object(o) => o
                    .get("id")
                    .and_then(|i| i.as_str())
                    .filter(|i| !i.is_empty())
                    .map(str::to_string)
                    .ok_or_else(bad),
                _ => Err(bad()),
            })
            .collect(),
        Some(_) => Err(bad()),
    }
}

/// Like `parse`, from an already parsed document (the Graph source builds one).
pub fn parse_value(doc: Value, scope: Scope) -> Result<Snapshot, String> {
    let Value::Object(mut doc) = doc else {
        return Err(
            "the top level must be an object with \"users\", \"groups\", \"assignments\"".into(),
        );
    };
    check_top_level(&doc, scope)?;
    // Taken out of the document, not copied: it can hold 100,000 users.
    let mut array = |key: &str| -> Result<Vec<Value>, String> {
        match doc.remove(key) {
            None => Ok(vec![]),
            Some(Value::Array(a)) => Ok(a),
            Some(_) => Err(format!("\"{key}\" must be an array")),
        }
    };
    let raw_users = array("users")?;
    let raw_groups = array("groups")?;
    let raw_assignments = array("assignments")?;
    let mut snap = Snapshot::default();
    let groups = Records::new(RecordKind::Group, "groups", &mut snap.errors).groups(raw_groups);
    let roles = assigned_roles(&raw_assignments, &mut snap.errors);
    let assignments = Assignments::new(scope, roles, &groups);
    let mut counts: HashMap<String, u32> = HashMap::new();
    for u in &raw_users {
        if let Some(id) = u.get("id").and_then(|i| i.as_str()) {
            *counts.entry(id.to_string()).or_insert(0) += 1;
        }
    }
    let mut records = Records::new(RecordKind::User, "users", &mut snap.errors);
    let users: Vec<_> = raw_users
        .into_iter()
        .enumerate()
        .filter_map(|(i, v)| records.user(i, v, &|id| counts.get(id).copied().unwrap_or(1)))
        .collect();
    snap.users = users
        .into_iter()
        .map(|(id, upn, rec)| assignments.user(id, upn, rec))
        .collect();
    snap.groups = groups.into_iter().map(|g| assignments.group(g)).collect();
    Ok(snap)
}

/// Principal id → the role names assigned to it. Equal sets are shared: a million
/// users assigned "User" hold one set between them. By the id's key (`ids::key`),
/// in a sorted list once every assignment is read (`settle`): a table of a
/// million keys was twice its entries (52 MB), the list is 24 bytes an entry.
#[derive(Default)]
pub(super) struct Roles {
    /// Each assignment as read: the principal's key, the role's place in `names`.
    added: Vec<(SplitKey, u32)>,
    names: HashMap<String, u32>,
    /// Once settled: each principal's key, sorted, and its set's place in `sets`.
    by_principal: Vec<(SplitKey, u32)>,
    index: KeyIndex,
    sets: Vec<BTreeSet<String>>,
}

impl Roles {
    fn add(&mut self, principal: &str, role: &str) {
        let role = match self.names.get(role) {
            Some(&i) => i,
            None => {
                let i = self.names.len() as u32;
                self.names.insert(role.to_string(), i);
                i
            }
        };
        self.added.push((split(key(principal)), role));
    }

    /// Turns the assignments read into each principal's set of roles, in the
    /// list `added` was (no second list of a million).
    fn settle(&mut self) {
        let mut list = std::mem::take(&mut self.added);
        list.sort_unstable();
        list.dedup();
        let mut names: Vec<&str> = vec![""; self.names.len()];
        for (n, &i) in &self.names {
            names[i as usize] = n;
        }
        let mut shared: HashMap<BTreeSet<String>, u32> = HashMap::new();
        let mut settled = 0;
        let mut at = 0;
        while at < list.len() {
            let principal = list[at].0;
            let end = at + list[at..].partition_point(|x| x.0 == principal);
            let set: BTreeSet<String> = list[at..end]
                .iter()
                .map(|&(_, r)| names[r as usize].to_string())
                .collect();
            let next = shared.len() as u32;
            let index = *shared.entry(set).or_insert(next);
            list[settled] = (principal, index);
            settled += 1;
            at = end;
        }
        list.truncate(settled);
        list.shrink_to_fit();
        self.sets = vec![BTreeSet::new(); shared.len()];
        for (set, i) in shared {
            self.sets[i as usize] = set;
        }
        self.index = KeyIndex::new(&list, |x| x.0);
        self.by_principal = list;
    }

    pub(super) fn get(&self, principal: &str) -> Option<&BTreeSet<String>> {
        self.by_key(key(principal))
    }

    fn by_key(&self, principal: u128) -> Option<&BTreeSet<String>> {
        let at = self.index.find(&self.by_principal, principal, |x| x.0)?;
        self.sets.get(self.by_principal[at].1 as usize)
    }
}

/// Who is assigned, and through what: the assignments by principal, and the
/// assigned groups each user is a direct member of.
pub(super) struct Assignments {
    scope: Scope,
    roles: Roles,
    /// Assigned groups: (displayName, roles).
    assigned: Vec<(String, BTreeSet<String>)>,
    /// (user key, index into `assigned`) for each membership of an assigned
    /// group, sorted: a million memberships in 24 MB (a table by user was 56,
    /// a map of id strings to index lists 160).
    via_group: Vec<(SplitKey, u32)>,
    via_index: KeyIndex,
    /// The reasons of the assignments made so far, each kept once.
    reasons: std::cell::RefCell<HashSet<crate::model::Reason>>,
}

impl Assignments {
    pub(super) fn new(scope: Scope, mut roles: Roles, groups: &[RawGroup]) -> Assignments {
        roles.settle();
        let mut assigned = vec![];
        let mut via_group = vec![];
        for (gid, gname, _, members) in groups {
            if let Some(r) = roles.get(gid) {
                let i = assigned.len() as u32;
                via_group.extend(members.iter().map(|m| (split(key(m)), i)));
                assigned.push((gname.clone(), r.clone()));
            }
        }
        // Sorted by user, then group: each user's groups in document order.
        via_group.sort_unstable();
        via_group.shrink_to_fit();
        Assignments {
            scope,
            roles,
            assigned,
            via_index: KeyIndex::new(&via_group, |x| x.0),
            via_group,
            reasons: Default::default(),
        }
    }

    /// A user's assignment and every role it holds (directly or through its groups).
    pub(super) fn of_user(&self, id: &str) -> (Assignment, BTreeSet<String>) {
        let k = key(id);
        let direct = self.roles.by_key(k);
        let groups_of: Option<Vec<(&str, &BTreeSet<String>)>> = self.groups_of(k).map(|ix| {
            ix.iter()
                .map(|&(_, i)| {
                    (
                        self.assigned[i as usize].0.as_str(),
                        &self.assigned[i as usize].1,
                    )
                })
                .collect()
        });
        let mut effective: BTreeSet<String> = direct.cloned().unwrap_or_default();
        for (_, r) in groups_of.iter().flatten() {
            effective.extend(r.iter().cloned());
        }
        let assignment = user_assignment(self.scope, direct, groups_of.as_deref(), &effective);
        (self.shared(assignment), effective)
    }

    /// Feeds what decides a user's assignment (its direct roles, the assigned
    /// groups it is in) to a hasher, without building the assignment.
    pub(super) fn hash_user(&self, id: &str, h: &mut impl std::hash::Hasher) {
        use std::hash::Hash;
        let k = key(id);
        self.roles.by_key(k).hash(h);
        if let Some(ix) = self.groups_of(k) {
            for &(_, i) in ix {
                self.assigned[i as usize].hash(h);
            }
        }
    }

    /// The assignment with its reason shared with those made before for the same.
    fn shared(&self, a: Assignment) -> Assignment {
        let mut reasons = self.reasons.borrow_mut();
        let mut share = |r: crate::model::Reason| match reasons.get(&r) {
            Some(known) => known.clone(),
            None => {
                reasons.insert(r.clone());
                r
            }
        };
        match a {
            Assignment::Assigned(r) => Assignment::Assigned(share(r)),
            Assignment::NotAssigned(r) => Assignment::NotAssigned(share(r)),
        }
    }

    /// The assigned groups a user is a direct member of: its run of `via_group`
    /// (the second of each pair indexes `assigned`).
    fn groups_of(&self, user: u128) -> Option<&[(SplitKey, u32)]> {
        let at = self.via_index.find(&self.via_group, user, |x| x.0)?;
        let k = self.via_group[at].0;
        let start = self.via_group[..at]
            .iter()
            .rposition(|x| x.0 != k)
            .map_or(0, |i| i + 1);
        let end = at + self.via_group[at..].partition_point(|x| x.0 == k);
        self.via_group.get(start..end)
    }

    /// A digest of what decides a user's assignment.
    pub(super) fn digest(&self, id: &str) -> u64 {
        use std::hash::Hasher;
        let mut h = std::hash::DefaultHasher::new();
        self.hash_user(id, &mut h);
        h.finish()
    }

    /// A user with its assignment and app roles.
    pub(super) fn user(&self, id: String, upn: String, mut rec: Map<String, Value>) -> SourceUser {
        let (assignment, effective) = self.of_user(&id);
        let app_roles: Vec<Value> = effective.into_iter().map(Value::String).collect();
        rec.insert("appRoles".into(), Value::Array(app_roles));
        let soft_deleted = rec.get("deletedDateTime").is_some_and(|v| !v.is_null());
        SourceUser {
            id,
            user_principal_name: upn,
            record: crate::model::Packed::new(rec),
            assignment,
            soft_deleted,
        }
    }

    /// A group with its assignment and app roles.
    pub(super) fn group(&self, (id, name, record, members): RawGroup) -> SourceGroup {
        let r = self.roles.get(&id);
        let assignment = group_assignment(self.scope, r);
        let app_roles = r.map(|r| r.iter().cloned().collect()).unwrap_or_default();
        SourceGroup {
            id,
            display_name: name,
            record,
            app_roles,
            members,
            assignment,
        }
    }
}

/// A digest of a group as read (record, roles, assignment, members): what tells
/// an incremental read that it changed. Of the record's packed text, written
/// from a sorted map: the same record gives the same text, and a group is not
/// parsed again to be digested. `DefaultHasher::new()` has fixed keys, so
/// digests compare across processes of one build; a new Rust release may change
/// them, which costs one full evaluation, nothing else.
pub fn group_digest(g: &SourceGroup) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::hash::DefaultHasher::new();
    g.record.text().hash(&mut h);
    g.app_roles.hash(&mut h);
    format!("{:?}", g.assignment).hash(&mut h);
    g.members.hash(&mut h);
    h.finish()
}

/// The document's top level: only the three known arrays, and never read as an
/// empty directory because one it needs is missing.
fn check_top_level(doc: &Map<String, Value>, scope: Scope) -> Result<(), String> {
    for key in doc.keys() {
        if !matches!(key.as_str(), "users" | "groups" | "assignments") {
            return Err(format!(
                "unknown top-level key \"{key}\" (expected \"users\", \"groups\", \"assignments\")"
            ));
        }
    }
    require_sections(
        doc.contains_key("users"),
        doc.contains_key("assignments"),
        scope,
    )
}

/// An empty or cut document must not read as a directory without anyone in it:
/// `users` is required, and `assignments` where they decide who is provisioned.
pub(super) fn require_sections(users: bool, assignments: bool, scope: Scope) -> Result<(), String> {
    let missing = if !users {
        "users"
    } else if scope == Scope::Assigned && !assignments {
        "assignments"
    } else {
        return Ok(());
    };
    Err(format!(
        "no \"{missing}\" array: a directory document without it is refused rather than read as empty{}",
        if missing == "assignments" {
            " (with scope = \"assigned\" the assignments decide who is provisioned)"
        } else {
            ""
        }
    ))
}

/// Assignments: principal id → role names. A bad assignment is a record error.
fn assigned_roles(raw: &[Value], errors: &mut Vec<RecordError>) -> Roles {
    let mut roles = Roles::default();
    for (i, a) in raw.iter().enumerate() {
        add_assignment(&mut roles, i, a, errors);
    }
    roles
}

/// One assignment record into `roles` (principal id → role names); a bad one is a
/// record error.
pub(super) fn add_assignment(
    roles: &mut Roles,
    i: usize,
    a: &Value,
    errors: &mut Vec<RecordError>,
) {
    let fail = |message: &str| RecordError {
        record: RecordKind::Assignment,
        object: format!("assignments[{i}]"),
        id: None,
        message: message.into(),
    };
    let principal = a.get("principalId").and_then(|v| v.as_str());
    let role = match a.get("appRole") {
        None | Some(Value::Null) => Some(DEFAULT_ACCESS),
        Some(Value::String(r)) => Some(r.as_str()),
        Some(_) => None,
    };
    match (principal, role) {
        (Some(p), Some(role)) if !p.is_empty() => roles.add(p, role),
        (_, None) => errors.push(fail("\"appRole\" must be a role name")),
        _ => errors.push(fail("assignment without principalId")),
    }
}

/// Whether roles give access: any role but Default Access (Entra's rule).
fn entitled(r: &BTreeSet<String>) -> bool {
    r.iter().any(|x| x != DEFAULT_ACCESS)
}

/// A user's assignment, directly or through the assigned groups it is a direct
/// member of; `effective` is every role it holds either way.
fn user_assignment(
    scope: Scope,
    direct: Option<&BTreeSet<String>>,
    groups_of: Option<&[(&str, &BTreeSet<String>)]>,
    effective: &BTreeSet<String>,
) -> Assignment {
    if scope == Scope::All {
        return Assignment::Assigned("scope is all users and groups".into());
    }
    if direct.is_some_and(entitled) {
        Assignment::Assigned(format!("assigned ({})", roles_text(direct)).into())
    } else if let Some((g, r)) = groups_of.and_then(|gs| gs.iter().find(|(_, r)| entitled(r))) {
        Assignment::Assigned(
            format!("member of assigned group {g} ({})", roles_text(Some(r))).into(),
        )
    } else if effective.is_empty() {
        Assignment::NotAssigned("not assigned to the app".into())
    } else {
        Assignment::NotAssigned(format!("only role is {DEFAULT_ACCESS}").into())
    }
}

/// A group's assignment (groups are assigned directly only).
fn group_assignment(scope: Scope, r: Option<&BTreeSet<String>>) -> Assignment {
    match (scope, r) {
        (Scope::All, _) => Assignment::Assigned("scope is all users and groups".into()),
        (Scope::Assigned, Some(r)) if entitled(r) => {
            Assignment::Assigned(format!("assigned ({})", roles_text(Some(r))).into())
        }
        (Scope::Assigned, Some(_)) => {
            Assignment::NotAssigned(format!("only role is {DEFAULT_ACCESS}").into())
        }
        (Scope::Assigned, None) => Assignment::NotAssigned("not assigned to the app".into()),
    }
}

fn roles_text(r: Option<&BTreeSet<String>>) -> String {
    let names: Vec<&str> = r
        .map(|r| r.iter().map(String::as_str).collect())
        .unwrap_or_default();
    format!("role {}", names.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Reason;

    const DOC: &str = r#"{
      "users":[{"id":"u1","userPrincipalName":"a@x.com"},{"id":"u2","userPrincipalName":"b@x.com"},
               {"id":"u3","userPrincipalName":"c@x.com"},{"id":"u4","userPrincipalName":"d@x.com"},
               {"id":"u5"}],
      "groups":[{"id":"g1","displayName":"Sales","members":["u2","u4"]},{"id":"g2","displayName":"Other","members":["u3"]}],
      "assignments":[{"principalId":"u1","principalType":"User","appRole":"User"},
                     {"principalId":"u3","principalType":"User","appRole":"Default Access"},
                     {"principalId":"g1","principalType":"Group","appRole":"User"}]}"#;

    #[test]
    fn assigned_scope_rules() {
        let s = parse(DOC, Scope::Assigned).expect("parse");
        let a = |id: &str| {
            s.users
                .iter()
                .find(|u| u.id == id)
                .map(|u| u.assignment.clone())
        };
        assert!(a("u1").map(|x| x.is_assigned()).unwrap_or(false));
        assert!(a("u2")
            .map(|x| x.reason().contains("Sales"))
            .unwrap_or(false));
        assert_eq!(
            a("u3"),
            Some(Assignment::NotAssigned(
                "only role is Default Access".into()
            ))
        );
        assert!(a("u4").map(|x| x.is_assigned()).unwrap_or(false));
        assert_eq!(s.errors.len(), 1);
        assert!(s.errors[0].message.contains("userPrincipalName"));
        let g2 = s
            .groups
            .iter()
            .find(|g| g.id == "g2")
            .map(|g| g.assignment.is_assigned());
        assert_eq!(g2, Some(false));
    }

    #[test]
    fn all_scope_takes_everyone() {
        let s = parse(DOC, Scope::All).expect("parse");
        assert!(s.users.iter().all(|u| u.assignment.is_assigned()));
        assert!(s.groups.iter().all(|g| g.assignment.is_assigned()));
        // Users assigned alike hold one reason between them.
        let first = s.users[0].assignment.why();
        assert!(s.users.len() > 1);
        assert!(s
            .users
            .iter()
            .all(|u| Reason::ptr_eq(u.assignment.why(), first)));
    }

    #[test]
    fn broken_records_keep_their_id_and_ids_are_per_kind() {
        let doc = r#"{
          "users":[{"id":"u1","userPrincipalName":"a@x.com"},{"id":"u2"},{"userPrincipalName":"c@x.com"},
                   {"id":"g1","userPrincipalName":"same-as-group@x.com"},
                   {"id":"d","userPrincipalName":"d1@x.com"},{"id":"d","userPrincipalName":"d2@x.com"}, 7],
          "groups":[{"id":"g1","displayName":"Sales","members":["u1"]},{"id":"g2","members":null,"displayName":"X"},
                    {"id":"g3"},{"id":"g4","displayName":"Y","members":[1]}],
          "assignments":[{"principalId":"u1","appRole":"User"},{"appRole":"User"},{"principalId":"u2","appRole":5}]}"#;
        let s = parse(doc, Scope::Assigned).expect("parse");
        let ids: Vec<&str> = s.users.iter().map(|u| u.id.as_str()).collect();
        assert_eq!(ids, ["u1", "g1"], "a user may share a group's id");
        assert_eq!(s.groups.len(), 1);
        let failed = |kind: RecordKind| -> Vec<(Option<String>, String)> {
            s.errors
                .iter()
                .filter(|e| e.record == kind)
                .map(|e| (e.id.clone(), e.message.clone()))
                .collect()
        };
        let users = failed(RecordKind::User);
        assert!(users.contains(&(Some("u2".into()), "missing \"userPrincipalName\"".into())));
        assert!(users
            .iter()
            .any(|(id, m)| id.is_none() && m.contains("missing \"id\"")));
        assert!(users
            .iter()
            .any(|(id, m)| id.is_none() && m == "not an object"));
        assert_eq!(
            users
                .iter()
                .filter(|(id, m)| id.as_deref() == Some("d") && m.contains("share this id"))
                .count(),
            2,
            "each record that shares the id fails: {users:?}"
        );
        assert!(
            !s.users.iter().any(|u| u.id == "d"),
            "neither duplicate is used"
        );
        let groups = failed(RecordKind::Group);
        for id in ["g2", "g3", "g4"] {
            assert!(
                groups.iter().any(|(g, _)| g.as_deref() == Some(id)),
                "{id}: {groups:?}"
            );
        }
        assert_eq!(failed(RecordKind::Assignment).len(), 2);
        let u = crate::model::Unreadable::of(&s.errors);
        assert!(u.unnamed_users && !u.unnamed_groups && u.assignments);
        assert!(u
            .objects
            .contains_key(&(crate::model::ObjectKind::Group, "g2".into())));
    }

    #[test]
    fn an_empty_document_is_not_an_empty_directory() {
        for (doc, scope) in [("{}", Scope::All), ("{\"users\": []}", Scope::Assigned)] {
            let e = parse(doc, scope).err().unwrap_or_default();
            assert!(
                e.contains("refused rather than read as empty"),
                "{doc}: {e}"
            );
        }
        assert!(parse("{\"users\": []}", Scope::All).is_ok());
        assert!(parse("{\"users\": [], \"assignments\": []}", Scope::Assigned).is_ok());
    }

    #[test]
    fn malformed_json_names_line() {
        let e = parse("{\n\"users\": [\n{,}]}", Scope::All)
            .err()
            .unwrap_or_default();
        assert!(e.contains("line 3"), "{e}");
    }
}
