//! The `file` source: a Graph-shaped JSON document on disk, read streaming.
//!
//! The document is never held whole. A full read takes the groups and the
//! assignments in a first pass (a user's assignment can come through a group, and
//! `assignments` may come last) and counts the user ids; a second pass takes the
//! users one by one. Each user gets two digests, of its record's text and of what
//! decides its assignment. An incremental read judges the texts in the first pass
//! itself: a user whose text and assignment did not change is kept as an id only,
//! so editing one user in a 1,000,000-user file costs one pass, a hash per record
//! and one evaluation — and memory for what changed, not for the directory. Users
//! needed after all (an assignment changed, a changed user's groups' members: see
//! `cycle::widen_to_members`, the cycle asks) are taken in a second pass. The
//! file's hash is the watermark; a file that changes between passes fails the read
//! (the next cycle reads it again).

use super::directory::{self, Assignments, Records};
use super::scan;
use super::{CacheSink, ReadRequest, Source, UserSink};
use crate::config::Scope;
use crate::error::{Error, InputError};
use crate::ids::{key, Keyed};
use crate::model::{RecordKind, Snapshot};
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::cell::RefCell;
use std::collections::{HashMap, HashSet};
use std::path::PathBuf;

/// The `file` source.
pub struct FileSource {
    path: PathBuf,
    scope: Scope,
}

impl FileSource {
    pub fn new(path: PathBuf, scope: Scope) -> Self {
        FileSource { path, scope }
    }

    fn bad(&self, message: impl Into<String>) -> Error {
        InputError::Directory {
            file: self.path.clone(),
            message: message.into(),
        }
        .into()
    }
}

impl Source for FileSource {
    fn read(&mut self, req: &ReadRequest<'_>) -> Result<Snapshot, Error> {
        let watermark = self.watermark()?;
        if !req.need_all && !req.need_records && req.watermark == Some(watermark.as_str()) {
            return Ok(Snapshot {
                watermark: Some(watermark),
                unchanged: true,
                ..Snapshot::default()
            });
        }
        let before = match req.need_all {
            true => None,
            false => (req.cache)()?.as_deref().and_then(Digests::parse),
        };
        let mut snap = self.read_records(
            before.as_ref(),
            req.keep,
            (req.users, req.cache_out),
            &watermark,
        )?;
        snap.watermark = Some(watermark);
        Ok(snap)
    }

    fn describe(&self) -> String {
        format!("directory file {}", self.path.display())
    }
}

impl FileSource {
    /// The file's SHA-256, read in blocks.
    fn watermark(&self) -> Result<String, Error> {
        let mut file =
            std::fs::File::open(&self.path).map_err(|e| self.bad(format!("cannot read: {e}")))?;
        let mut h = Sha256::new();
        std::io::copy(&mut file, &mut h).map_err(|e| self.bad(format!("cannot read: {e}")))?;
        Ok(format!("sha256:{:x}", h.finalize()))
    }

    /// The passes over the file. `before`: the digests of the last read (an
    /// incremental read keeps only what changed, plus `keep`). A full read hands
    /// each user to `sink`, if any, as it is made.
    fn read_records<'s>(
        &self,
        before: Option<&Digests>,
        keep: Option<&HashSet<String>>,
        (sink, cache_out): (Option<&RefCell<dyn UserSink + 's>>, Option<&CacheOut>),
        watermark: &str,
    ) -> Result<Snapshot, Error> {
        // Pass 1: groups, assignments, user ids (and in an incremental read, the
        // users' digests).
        let mut first = FirstPass {
            before,
            ..FirstPass::default()
        };
        self.pass(&mut first, watermark)?;
        crate::alloc::log_memory("read: first pass");
        first.check(self.scope).map_err(|m| self.bad(m))?;
        let ids = IdCounts::new(std::mem::take(&mut first.user_ids));
        let mut snap = Snapshot {
            errors: std::mem::take(&mut first.errors),
            ..Snapshot::default()
        };
        let mut records = Records::new(RecordKind::Group, "groups", &mut snap.errors);
        let groups = records.unique_groups(std::mem::take(&mut first.groups));
        let roles = std::mem::take(&mut first.roles);
        let assignments = Assignments::new(self.scope, roles, &groups);
        let sink = sink.filter(|_| before.is_none());
        let mut digests = match cache_out {
            Some(_) => Written::handing_over(groups.len()),
            None => Written::new(groups.len(), ids.distinct),
        };
        for g in groups {
            let g = assignments.group(g);
            digests.group(key(&g.id), directory::group_digest(&g));
            snap.groups.push(g);
        }
        // A group is read again when it changed, or when the cycle asks for it.
        let asked = |id: &str| keep.is_some_and(|k| k.contains(id));
        let changed_group =
            |id: &str| asked(id) || before.is_none_or(|b| b.group(id) != digests.group_of(id));
        // Users a changed group needs (its members are evaluated again), and those the
        // cycle asks for (pending, escrows due). A full read reads every user and
        // needs neither: at a million users the set was 100 MB.
        let mut wanted: HashSet<String> = keep.cloned().unwrap_or_default();
        let mut changed: HashSet<String> = HashSet::new();
        let groups_changed = snap.groups.iter().filter(|g| changed_group(&g.id));
        for g in groups_changed.filter(|_| before.is_some()) {
            wanted.extend(g.members.iter().cloned());
            changed.insert(g.id.clone());
        }
        crate::alloc::log_memory("read: groups and assignments");
        if before.is_none() {
            // Every user is read: room for all at once, not grown by doubling
            // (old and new buffers held together, 20 MB at 100,000 users).
            match sink {
                Some(sink) => sink.borrow_mut().expect(ids.distinct, snap.groups.len()),
                None => snap.users.reserve_exact(ids.distinct),
            }
        }
        let mut users = UserPass {
            assignments: &assignments,
            counts: &ids,
            before,
            wanted: &wanted,
            digests: &mut digests,
            cache_out,
            snap: &mut snap,
            changed: &mut changed,
            only: None,
            sink,
        };
        let Some(before) = before else {
            // Pass 2 of a full read: every user.
            self.pass(&mut users, watermark)?;
            snap.cache = digests.finish(cache_out);
            return Ok(snap);
        };
        // An incremental read: what pass 1 saw decides; the users it let go that
        // are needed after all (an assignment changed, a group they are in is
        // planned, the cycle asks) are read in a second pass.
        let mut again = users.seen(std::mem::take(&mut first.users));
        again.extend(widen(&snap, &mut changed));
        if !again.is_empty() {
            for id in &again {
                snap.untouched.users.remove(id);
            }
            let mut scratch = Written::new(0, 0);
            let mut second = UserPass {
                assignments: &assignments,
                counts: &ids,
                before: Some(before),
                wanted: &again,
                digests: &mut scratch,
                cache_out: None,
                snap: &mut snap,
                changed: &mut changed,
                only: Some(&again),
                sink: None,
            };
            self.pass(&mut second, watermark)?;
        }
        for g in &snap.groups {
            if !changed.contains(&g.id) {
                snap.untouched.groups.insert(g.id.clone());
            }
        }
        snap.changed = Some(changed);
        snap.cache = digests.finish(cache_out);
        Ok(snap)
    }

    /// One streaming pass over the document; the file must still be the one the
    /// watermark was taken of.
    fn pass(&self, pass: &mut dyn Pass, watermark: &str) -> Result<(), Error> {
        let started = std::time::Instant::now();
        let file =
            std::fs::File::open(&self.path).map_err(|e| self.bad(format!("cannot read: {e}")))?;
        let mut visit = Sections {
            pass,
            section: None,
            seen: vec![],
        };
        let hash = scan::scan(file, &mut visit).map_err(|e| self.scan_error(e))?;
        log::debug!(
            "{}: a pass took {:?}",
            self.path.display(),
            started.elapsed()
        );
        if hash != watermark {
            return Err(Error::answer(
                "the directory file",
                format!(
                    "{} changed while it was read; the next cycle reads it again",
                    self.path.display()
                ),
            ));
        }
        Ok(())
    }

    fn scan_error(&self, e: scan::ScanError) -> Error {
        if !e.syntax {
            return self.bad(e.message);
        }
        self.bad(format!(
            "not valid JSON at line {}, column {}: {}",
            e.line, e.column, e.message
        ))
    }
}

/// A group with a changed member is evaluated again with all its members
/// (`cycle::widen_to_members`): adds such groups to `changed`, and returns the
/// members whose records were let go.
fn widen(snap: &Snapshot, changed: &mut HashSet<String>) -> HashSet<String> {
    let mut more: HashSet<String> = HashSet::new();
    let mut groups: Vec<String> = vec![];
    for g in &snap.groups {
        if changed.contains(&g.id) || g.members.iter().any(|m| changed.contains(m)) {
            groups.push(g.id.clone());
            let untouched = g
                .members
                .iter()
                .filter(|m| snap.untouched.users.contains(*m));
            more.extend(untouched.cloned());
        }
    }
    changed.extend(groups);
    more
}

/// The document's sections, handed to a pass.
struct Sections<'a> {
    pass: &'a mut dyn Pass,
    section: Option<Section>,
    seen: Vec<Section>,
}

impl scan::Visit for Sections<'_> {
    fn key(&mut self, key: &str) -> Result<bool, String> {
        let section = match key {
            "users" => Section::Users,
            "groups" => Section::Groups,
            "assignments" => Section::Assignments,
            _ => {
                return Err(format!(
                "unknown top-level key \"{key}\" (expected \"users\", \"groups\", \"assignments\")"
            ))
            }
        };
        if self.seen.contains(&section) {
            return Err(format!("\"{key}\" appears twice"));
        }
        self.seen.push(section);
        self.section = Some(section);
        self.pass.saw(section);
        Ok(self.pass.wants(section))
    }

    fn element(
        &mut self,
        index: usize,
        text: &str,
        line: usize,
        column: usize,
    ) -> Result<(), scan::ScanError> {
        if self.pass.validates() {
            scan::validate(text, line, column)?;
        }
        if let Some(section) = self.section {
            self.pass.element(section, index, text);
        }
        Ok(())
    }
}

/// The document's top-level arrays.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Section {
    Users,
    Groups,
    Assignments,
}

/// What a pass does with the elements of the sections it wants.
trait Pass {
    fn wants(&self, section: Section) -> bool;
    fn element(&mut self, section: Section, index: usize, text: &str);
    fn saw(&mut self, _section: Section) {}
    /// Whether elements are checked to be JSON (the first pass: the others read
    /// the same bytes, the hash says so).
    fn validates(&self) -> bool {
        false
    }
}

/// Pass 1: groups whole, assignments as roles, users by id only — and, in an
/// incremental read, each user's text digest, keeping the text of those whose
/// digest changed (an edit costs one pass, not two).
#[derive(Default)]
struct FirstPass<'a> {
    /// Each group as read, its record packed (its members as values were 80 MB
    /// at a million memberships).
    groups: Vec<directory::GroupElement>,
    roles: directory::Roles,
    errors: Vec<crate::model::RecordError>,
    /// Each user record's id, by cache key (a million ids, none copied): counted
    /// once the pass is over (`IdCounts`).
    user_ids: Vec<u128>,
    sections: Vec<Section>,
    /// The digests of the last read: users are digested in this pass.
    before: Option<&'a Digests>,
    users: Vec<Seen>,
}

/// How many user records carry each id (a shared id fails them all), kept only
/// for the ids more than one record carries: the read holds a few entries
/// through its passes, not a map of a million (64 MB).
struct IdCounts {
    /// Ids carried by at least one record.
    distinct: usize,
    shared: HashMap<u128, u32, Keyed>,
}

impl IdCounts {
    fn new(mut keys: Vec<u128>) -> IdCounts {
        keys.sort_unstable();
        let mut counts = IdCounts {
            distinct: 0,
            shared: HashMap::default(),
        };
        for run in keys.chunk_by(|a, b| a == b) {
            counts.distinct += 1;
            if run.len() > 1 {
                counts.shared.insert(run[0], run.len() as u32);
            }
        }
        counts
    }

    /// The records that carry the id with this key (1 for one not seen).
    fn of(&self, key: u128) -> u32 {
        self.shared.get(&key).copied().unwrap_or(1)
    }
}

/// A user record as the first pass of an incremental read saw it.
struct Seen {
    index: usize,
    id: Option<String>,
    /// The id's cache key and the digests the last read kept under it.
    key: u128,
    before: Option<(u64, u64)>,
    text: u64,
    /// The record's text when it is not the one digested last time.
    raw: Option<String>,
}

/// A record text's digest.
fn text_digest(raw: &str) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::hash::DefaultHasher::new();
    raw.hash(&mut h);
    h.finish()
}

impl Pass for FirstPass<'_> {
    fn wants(&self, _: Section) -> bool {
        true
    }
    fn saw(&mut self, section: Section) {
        self.sections.push(section);
    }
    fn validates(&self) -> bool {
        true
    }
    fn element(&mut self, section: Section, i: usize, raw: &str) {
        match section {
            Section::Groups => {
                let mut records = Records::new(RecordKind::Group, "groups", &mut self.errors);
                self.groups.extend(records.group(i, parse(raw)));
            }
            Section::Assignments => {
                directory::add_assignment(&mut self.roles, i, &parse(raw), &mut self.errors)
            }
            Section::Users => {
                let id = id_of(raw);
                let key = id.as_deref().map(key).unwrap_or_default();
                if id.is_some() {
                    self.user_ids.push(key);
                }
                if let Some(digests) = self.before {
                    let text = text_digest(raw);
                    let before = id.as_ref().and_then(|_| digests.users.get(&key).copied());
                    let same = before.map(|d| d.0) == Some(text);
                    let raw = (!same).then(|| raw.to_string());
                    self.users.push(Seen {
                        index: i,
                        id,
                        key,
                        before,
                        text,
                        raw,
                    });
                }
            }
        }
    }
}

/// An element's value (the first pass checked it is JSON).
fn parse(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or(Value::Null)
}

/// A record's `id` when it is a string, read without building the record.
fn id_of(text: &str) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct IdOnly {
        id: Option<Value>,
    }
    // Most records start with their id: taken without parsing the rest, when it
    // is a plain string (no escapes) and the only "id" key in the text. Anything
    // else goes the long way.
    let single = || text.matches("\"id\"").nth(1).is_none();
    if let Some(rest) = text.strip_prefix("{\"id\":\"").filter(|_| single()) {
        if let Some(end) = rest.find(['"', '\\']) {
            if rest[end..].starts_with('"') && !rest[..end].is_empty() {
                return Some(rest[..end].to_string());
            }
        }
    }
    if !text.starts_with('{') {
        return None;
    }
    match serde_json::from_str::<IdOnly>(text).ok()?.id? {
        Value::String(s) => Some(s),
        _ => None,
    }
}

impl FirstPass<'_> {
    /// The sections the document must have (see `directory::check_top_level`).
    fn check(&self, scope: Scope) -> Result<(), String> {
        let has = |s: Section| self.sections.contains(&s);
        directory::require_sections(has(Section::Users), has(Section::Assignments), scope)
    }
}

/// Pass 2 (and 3): users one by one, kept whole when they changed (or are wanted),
/// else as ids.
struct UserPass<'a, 's> {
    assignments: &'a Assignments,
    counts: &'a IdCounts,
    before: Option<&'a Digests>,
    wanted: &'a HashSet<String>,
    digests: &'a mut Written,
    /// Where the digests go as they are made, when the cycle takes them.
    cache_out: Option<&'a CacheOut>,
    snap: &'a mut Snapshot,
    changed: &'a mut HashSet<String>,
    /// A third pass takes only these, and records nothing else.
    only: Option<&'a HashSet<String>>,
    /// Where each user goes as it is made (a full read, when the cycle asks).
    sink: Option<&'a RefCell<dyn UserSink + 's>>,
}

impl Pass for UserPass<'_, '_> {
    fn wants(&self, section: Section) -> bool {
        section == Section::Users
    }

    fn element(&mut self, _: Section, i: usize, raw: &str) {
        if let Some(only) = self.only {
            if id_of(raw).is_some_and(|id| only.contains(&id)) {
                self.take(i, raw, None);
            }
            return;
        }
        self.take(i, raw, Some(text_digest(raw)));
    }
}

impl UserPass<'_, '_> {
    /// A user record read whole; `text`: its digest, kept when it is readable (a
    /// broken one is read every time).
    fn take(&mut self, i: usize, raw: &str, text: Option<u64>) {
        let mut records = Records::new(RecordKind::User, "users", &mut self.snap.errors);
        let counts = self.counts;
        let count = |id: &str| counts.of(key(id));
        let Some((id, upn, rec)) = records.user(i, parse(raw), &count) else {
            return;
        };
        if let Some(text) = text {
            self.digests.user(&id, text, self.assignments);
            self.digests.hand_over(self.cache_out);
        }
        if self.before.is_some() {
            self.changed.insert(id.clone());
        }
        let user = self.assignments.user(id, upn, rec);
        let Some(sink) = self.sink else {
            self.snap.users.push(user);
            return;
        };
        let assigned = user.assignment.is_assigned();
        match sink.borrow_mut().user(user) {
            Some(user) => self.snap.users.push(user),
            None => {
                self.snap.taken.users += 1;
                self.snap.taken.assigned_users += usize::from(assigned);
            }
        }
    }

    /// The users the first pass of an incremental read saw: a changed text is
    /// parsed now; a text as last time stays an id if its assignment is too and
    /// nothing wants it, else its id is returned, to be read again.
    fn seen(&mut self, seen: Vec<Seen>) -> HashSet<String> {
        let mut again = HashSet::new();
        for s in seen {
            let Seen {
                index,
                id,
                key,
                before,
                text,
                raw,
            } = s;
            let (Some(id), None) = (id, &raw) else {
                self.take(index, raw.as_deref().unwrap_or_default(), Some(text));
                continue;
            };
            let assignment = self.assignments.digest(&id);
            let shared = self.counts.of(key) > 1;
            if !shared {
                self.digests.put_user(key, text, assignment);
                self.digests.hand_over(self.cache_out);
            }
            let same = before.map(|d| d.1) == Some(assignment);
            if same && !shared && !self.wanted.contains(&id) {
                self.snap.untouched.users.insert(id);
            } else {
                again.insert(id);
            }
        }
        again
    }
}

/// A digest per directory record, for telling which records a file edit touched:
/// a group's (the record as read, with its members), and a user's text and
/// assignment apart, so a text can be judged while the file is read and the
/// assignment once it has been. Kept by a 128-bit hash of the id, and stored as
/// bytes (`Written`): at a million users the cache is 33 MB read and written per
/// cycle, no text to format or parse, no id string to allocate. This is the last
/// read's, read back to be looked up.
#[derive(Debug, Default, PartialEq)]
pub(super) struct Digests {
    groups: HashMap<u128, u64, Keyed>,
    /// User id → (text, assignment).
    users: HashMap<u128, (u64, u64), Keyed>,
}

const DIGESTS_HEADER: &[u8] = b"scimsync file digests v3\n";

/// The digests a read makes, written in their stored form as they come: the
/// header, then per group `g`, its key and digest; per user `u`, its key, text
/// and assignment digests; integers little-endian. At a million users a map of
/// them was 69 MB, and its bytes 33 MB more; the bytes are all there is now
/// (and the groups', which the read looks up).
pub(super) struct Written {
    groups: HashMap<u128, u64, Keyed>,
    bytes: Vec<u8>,
    /// Parts of the bytes handed over to a read's sink (`UserSink::cache`).
    handed: Handed,
}

/// Where the digests of a read that hands its users over go.
#[derive(Clone, Copy, PartialEq)]
enum Handed {
    /// Nothing yet: the bytes are all here.
    No,
    /// The bytes before these were taken by the sink.
    Some,
    /// The sink stopped taking them: the bytes stay here from then on.
    Refused,
    /// The sink stopped taking them after it had taken some, and dropped those.
    Lost,
}

/// Where a read's digests go as they are made (`ReadRequest::cache_out`).
type CacheOut = RefCell<dyn CacheSink>;

/// How many bytes of digests wait before they are handed over (about 500 users;
/// a million users' digests are 2,000 parts).
const PART: usize = 1 << 14;

impl Written {
    /// Room for this many groups and users.
    fn new(groups: usize, users: usize) -> Written {
        let mut bytes = Vec::with_capacity(DIGESTS_HEADER.len() + groups * 25 + users * 33);
        bytes.extend_from_slice(DIGESTS_HEADER);
        Written {
            groups: HashMap::with_capacity_and_hasher(groups, Keyed::default()),
            bytes,
            handed: Handed::No,
        }
    }

    /// For a read whose sink takes the digests in parts as they are made: room
    /// for the groups and a part (a million users' digests were 35 MB, held
    /// from the read to the end of the cycle).
    fn handing_over(groups: usize) -> Written {
        let mut w = Written::new(groups, 0);
        w.bytes.reserve_exact(PART + 64);
        w
    }

    /// Hands the bytes so far to the sink once they make a part.
    fn hand_over(&mut self, sink: Option<&CacheOut>) {
        let Some(sink) = sink else {
            return;
        };
        if self.bytes.len() < PART || matches!(self.handed, Handed::Refused | Handed::Lost) {
            return;
        }
        self.give(sink);
    }

    fn give(&mut self, sink: &CacheOut) {
        if sink.borrow_mut().part(&self.bytes) {
            self.bytes.clear();
            self.handed = Handed::Some;
            return;
        }
        self.handed = match self.handed {
            Handed::No => Handed::Refused,
            _ => {
                sink.borrow_mut().forget();
                Handed::Lost
            }
        };
    }

    /// The cache a read of every record leaves in its snapshot: the bytes, or
    /// `None` when the sink took them all. When the sink stopped taking them
    /// halfway, a cache without digests: the next read evaluates every record,
    /// as after no cache at all (a part missing would make changed records look
    /// unchanged).
    fn finish(mut self, sink: Option<&CacheOut>) -> Option<Vec<u8>> {
        if let (Some(sink), Handed::Some) = (sink, self.handed) {
            self.give(sink);
        }
        match self.handed {
            Handed::Some => None,
            Handed::Lost => Some(DIGESTS_HEADER.to_vec()),
            Handed::No | Handed::Refused => Some(self.bytes),
        }
    }

    fn group(&mut self, key: u128, digest: u64) {
        self.groups.insert(key, digest);
        self.bytes.push(b'g');
        self.bytes.extend_from_slice(&key.to_le_bytes());
        self.bytes.extend_from_slice(&digest.to_le_bytes());
    }

    fn group_of(&self, id: &str) -> Option<u64> {
        self.groups.get(&key(id)).copied()
    }

    /// A readable user's digests.
    fn user(&mut self, id: &str, text: u64, assignments: &Assignments) {
        self.put_user(key(id), text, assignments.digest(id));
    }

    fn put_user(&mut self, key: u128, text: u64, assignment: u64) {
        self.bytes.push(b'u');
        self.bytes.extend_from_slice(&key.to_le_bytes());
        self.bytes.extend_from_slice(&text.to_le_bytes());
        self.bytes.extend_from_slice(&assignment.to_le_bytes());
    }
}

impl Digests {
    fn group(&self, id: &str) -> Option<u64> {
        self.groups.get(&key(id)).copied()
    }

    /// `None` for anything else (a Graph cache, an older or damaged value): a
    /// full evaluation.
    fn parse(bytes: &[u8]) -> Option<Digests> {
        let mut rest = bytes.strip_prefix(DIGESTS_HEADER)?;
        let mut d = Digests::default();
        let mut take = |n: usize| -> Option<&[u8]> {
            let (head, tail) = (rest.get(..n)?, rest.get(n..)?);
            rest = tail;
            Some(head)
        };
        let u128_of = |b: &[u8]| Some(u128::from_le_bytes(b.try_into().ok()?));
        let u64_of = |b: &[u8]| Some(u64::from_le_bytes(b.try_into().ok()?));
        while let Some(tag) = take(1) {
            match tag {
                b"g" => {
                    let k = u128_of(take(16)?)?;
                    d.groups.insert(k, u64_of(take(8)?)?);
                }
                b"u" => {
                    let k = u128_of(take(16)?)?;
                    let text = u64_of(take(8)?)?;
                    d.users.insert(k, (text, u64_of(take(8)?)?));
                }
                _ => return None,
            }
        }
        Some(d)
    }
}

/// The path's file, for tests.
#[cfg(test)]
fn read_path(path: &std::path::Path, before: Option<&[u8]>) -> Result<Snapshot, Error> {
    read_path_into::<Sink>(path, before, None)
}

/// The path's file, for tests, handing users to `users`.
#[cfg(test)]
fn read_path_into<S: UserSink>(
    path: &std::path::Path,
    before: Option<&[u8]>,
    users: Option<&RefCell<S>>,
) -> Result<Snapshot, Error> {
    let users = users.map(|u| u as &RefCell<dyn UserSink>);
    let mut source = FileSource::new(path.to_path_buf(), Scope::All);
    let cache = before.map(<[u8]>::to_vec);
    let load = move || Ok(cache.clone());
    source.read(&ReadRequest {
        watermark: None,
        need_all: before.is_none(),
        need_records: true,
        cache: &load,
        keep: None,
        users,
        cache_out: None,
    })
}

/// What a cycle's sink saw of a read: the room it was asked for, each user
/// as it came; it keeps every other user.
#[cfg(test)]
#[derive(Default)]
struct Sink {
    expected: Option<(usize, usize)>,
    seen: Vec<String>,
}

#[cfg(test)]
impl UserSink for Sink {
    fn expect(&mut self, users: usize, groups: usize) {
        self.expected = Some((users, groups));
    }
    fn user(&mut self, user: crate::model::SourceUser) -> Option<crate::model::SourceUser> {
        self.seen.push(user.id.clone());
        (self.seen.len() % 2 == 1).then_some(user)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::path::Path;

    /// A fresh directory for one test's files.
    fn scratch_dir() -> Result<PathBuf, Error> {
        let dir = std::env::temp_dir().join(format!("scimsync-file-{}", crate::ids::random_hex(6)));
        std::fs::create_dir_all(&dir).map_err(Error::file(&dir))?;
        Ok(dir)
    }

    fn write(dir: &Path, doc: &Value) -> PathBuf {
        let p = dir.join("directory.json");
        std::fs::write(&p, doc.to_string()).unwrap_or_default();
        p
    }

    fn directory(users: usize) -> Value {
        let users: Vec<Value> = (0..users)
            .map(|i| json!({"id": format!("u{i}"), "userPrincipalName": format!("u{i}@x.com"), "surname": "S"}))
            .collect();
        json!({"users": users, "groups": [
            {"id": "g1", "displayName": "G1", "members": ["u1", "u2"]},
            {"id": "g2", "displayName": "G2", "members": ["u5", "u6"]}
        ], "assignments": []})
    }

    fn ids(snap: &Snapshot) -> Vec<String> {
        let mut v: Vec<String> = snap.users.iter().map(|u| u.id.clone()).collect();
        v.sort();
        v
    }

    /// The streaming read gives what the whole-document parse gives.
    #[test]
    fn streaming_read_matches_the_document_parse() -> Result<(), Error> {
        let dir = scratch_dir()?;
        let mut doc = directory(10);
        if let Some(u) = doc["users"].as_array_mut() {
            u.push(json!({"id": "u3", "userPrincipalName": "dup@x.com"}));
            u.push(json!({"userPrincipalName": "noid@x.com"}));
        }
        let p = write(&dir, &doc);
        let streamed = read_path(&p, None)?;
        let parsed =
            directory::parse(&doc.to_string(), Scope::All).map_err(|m| Error::answer("test", m))?;
        assert_eq!(ids(&streamed), ids(&parsed));
        assert_eq!(streamed.errors.len(), parsed.errors.len());
        assert_eq!(streamed.groups.len(), 2);
        assert!(streamed.changed.is_none());
        // Sections in any order, an id with an escape: the same again.
        let text = format!(
            "{{\"assignments\": [], \"groups\": {}, \"users\": {}}}",
            doc["groups"],
            doc["users"]
                .to_string()
                .replace("\"u7\"", "\"\\u0075\\u0037\"")
        );
        std::fs::write(&p, &text).map_err(Error::file(&p))?;
        let reordered = read_path(&p, None)?;
        assert_eq!(ids(&reordered), ids(&parsed));
        assert_eq!(reordered.errors.len(), parsed.errors.len());
        Ok(())
    }

    /// A full read hands every readable user to the sink, in file order, after
    /// asking for room for all; the users it keeps are listed, the others only
    /// counted. Unreadable records never reach it: they stay errors. An
    /// incremental read hands nothing over.
    #[test]
    fn a_full_read_hands_each_user_over_as_it_is_read() -> Result<(), Error> {
        let dir = scratch_dir()?;
        let mut doc = directory(6);
        if let Some(u) = doc["users"].as_array_mut() {
            u.push(json!({"id": "u3", "userPrincipalName": "dup@x.com"}));
            u.push(json!({"id": "nameless"}));
        }
        let p = write(&dir, &doc);
        let sink = RefCell::new(Sink::default());
        let snap = read_path_into(&p, None, Some(&sink))?;
        let sink = sink.into_inner();
        assert_eq!(sink.expected, Some((7, 2)), "room for every id and group");
        assert_eq!(sink.seen, ["u0", "u1", "u2", "u4", "u5"]);
        assert_eq!(ids(&snap), ["u0", "u2", "u5"], "the users it gave back");
        assert_eq!((snap.taken.users, snap.taken.assigned_users), (2, 2));
        assert_eq!(snap.listed().users, 5, "kept and counted");
        assert_eq!(snap.errors.len(), 3, "both u3 and the nameless user");
        let before = snap.cache.clone().unwrap_or_default();
        let again = RefCell::new(Sink::default());
        let incremental = read_path_into(&p, Some(&before), Some(&again))?;
        assert!(again.borrow().seen.is_empty() && again.borrow().expected.is_none());
        assert_eq!(incremental.taken.users, 0);
        let _ = std::fs::remove_dir_all(&dir);
        Ok(())
    }

    /// An incremental read keeps the changed user and, through its group, the
    /// group's other members; everyone else is an id.
    #[test]
    fn an_incremental_read_keeps_what_changed_and_its_group() -> Result<(), Error> {
        let dir = scratch_dir()?;
        let mut doc = directory(10);
        let p = write(&dir, &doc);
        let first = read_path(&p, None)?;
        let cache = first.cache.clone().unwrap_or_default();
        doc["users"][1]["surname"] = json!("Changed");
        doc["users"][8]["surname"] = json!("Changed");
        write(&dir, &doc);
        let second = read_path(&p, Some(&cache))?;
        assert_eq!(ids(&second), ["u1", "u2", "u8"]);
        let changed = second.changed.clone().unwrap_or_default();
        assert!(changed.contains("g1") && changed.contains("u2") && !changed.contains("g2"));
        assert_eq!(second.untouched.users.len(), 7);
        assert!(second.untouched.groups.contains("g2"));
        assert_eq!(second.present().map(|p| p.users.len()), Some(10));
        Ok(())
    }

    /// Ids are counted once the first pass is over; only shared ones stay.
    #[test]
    fn ids_are_counted_and_only_shared_ones_kept() {
        let counts = IdCounts::new(vec![3, 1, 3, 2, 3, 2]);
        assert_eq!(counts.distinct, 3);
        assert_eq!((counts.of(3), counts.of(2), counts.of(1)), (3, 2, 1));
        assert_eq!(counts.of(99), 1, "an id no record carried");
        assert_eq!(
            counts.shared.len(),
            2,
            "the id one record carries is not kept"
        );
    }

    /// The cache comes back as it was stored; anything else in its place (the
    /// text of an older scimsync, a cut-off value, a Graph cache) is no cache,
    /// and the read is a full one.
    #[test]
    fn digests_come_back_from_their_bytes_and_nothing_else_passes_for_them() {
        let mut d = Digests::default();
        d.groups.insert(key("g1"), 7);
        d.users.insert(key("u1"), (1, 2));
        d.users.insert(key("u2"), (u64::MAX, 0));
        let mut written = Written::new(1, 2);
        written.group(key("g1"), 7);
        written.put_user(key("u1"), 1, 2);
        written.put_user(key("u2"), u64::MAX, 0);
        let bytes = written.finish(None).unwrap_or_default();
        assert_eq!(Digests::parse(&bytes), Some(d));
        assert_eq!(Digests::parse(&bytes[..bytes.len() - 1]), None);
        assert_eq!(Digests::parse(b"scimsync file digests v2\nu 00 u1\n"), None);
        assert_eq!(Digests::parse(b"{\"users\": []}"), None);
        assert_ne!(key("u1"), key("u2"));
    }

    /// A sink that takes a read's digests in parts, the first `takes` of them.
    #[derive(Default)]
    struct Parts {
        takes: usize,
        parts: Vec<Vec<u8>>,
        forgot: bool,
    }

    impl CacheSink for Parts {
        fn part(&mut self, part: &[u8]) -> bool {
            let take = self.parts.len() < self.takes;
            if take {
                self.parts.push(part.to_vec());
            }
            take
        }
        fn forget(&mut self) {
            self.parts.clear();
            self.forgot = true;
        }
    }

    /// Digests handed over in parts come back whole (the parts in order), or
    /// stay whole in the read; a sink that stops halfway leaves a cache with no
    /// digests (the next read evaluates every record), never one with a gap.
    #[test]
    fn digests_handed_over_in_parts_come_back_whole_or_not_at_all() {
        let users = 3 * PART / 33 + 100;
        let fill = |w: &mut Written, sink: Option<&CacheOut>| {
            w.group(key("g"), 1);
            for i in 0..users {
                w.put_user(key(&format!("u{i}")), i as u64, 0);
                w.hand_over(sink);
            }
        };
        let mut kept = Written::new(1, users);
        fill(&mut kept, None);
        let whole = kept.finish(None).unwrap_or_default();
        assert_eq!(Digests::parse(&whole).map(|d| d.users.len()), Some(users));
        let handed = |takes: usize| {
            let sink = RefCell::new(Parts {
                takes,
                ..Parts::default()
            });
            let mut w = Written::handing_over(1);
            fill(&mut w, Some(&sink));
            let left = w.finish(Some(&sink));
            (left, sink.into_inner())
        };
        let (left, all) = handed(usize::MAX);
        assert_eq!(left, None, "all handed over");
        assert!(all.parts.len() >= 4 && !all.forgot);
        assert_eq!(all.parts.concat(), whole);
        let (left, none) = handed(0);
        assert_eq!(left.as_deref(), Some(&whole[..]), "kept whole");
        assert!(none.parts.is_empty() && !none.forgot);
        let (left, some) = handed(2);
        assert_eq!(left.as_deref(), Some(DIGESTS_HEADER));
        assert!(some.forgot && some.parts.is_empty());
        let empty = Digests::parse(DIGESTS_HEADER).map(|d| d.users.len() + d.groups.len());
        assert_eq!(empty, Some(0), "a cache with no digests");
    }
}
