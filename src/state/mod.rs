//! The state: one SQLite file holding what scimsync remembers between cycles —
//! source ↔ target links with the last applied attributes and their hash, group
//! memberships it applied, watermarks and script hashes, cycles, escrows and the
//! provisioning log.
//!
//! Discipline (STYLE.md §8): WAL, `synchronous=NORMAL`, `foreign_keys=ON`, versioned
//! migrations on `user_version`, one transaction per batch of actions, cached
//! statements in loops. A state written by a newer scimsync is refused, not guessed at.

mod history;
mod schema;

pub use history::{
    Cycle, CycleKind, CycleStatus, LogAction, LogEntry, LogQuery, LogStatus, Modified,
};

use crate::error::Error;
use crate::model::ObjectKind;
use crate::scim::attribute::Attrs;
use rusqlite::{params, Connection, OpenFlags, OptionalExtension, Transaction};
use serde::Serialize;
use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};

/// The facts the state keeps beside links and logs (the `meta` table): one name
/// each, so a key is never misspelt in one of the modules that read it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fact {
    /// The source's marker of the last cycle read (file hash, Graph deltaLinks).
    Watermark,
    /// The evaluation hash (scripts, switches, policies) of the last cycle.
    ScriptsHash,
    /// The Graph source's directory cache between delta reads.
    SourceCache,
    /// Destructive actions held by the gate (JSON), until released or gone.
    Held,
    /// `allow-deletes`: the next cycle's gate lets held actions through once.
    AllowDeletesOnce,
    /// Why and since when the target is in quarantine (JSON).
    Quarantine,
    /// When the daemon's next cycle is due.
    NextCycleAt,
    /// `migrate apply` retired the legacy integration.
    LegacyRetired,
    /// Directory objects a migration conflict keeps from being created (JSON).
    MigrationBlocked,
    /// Moved by every transaction: a reviewed plan made before it is stale.
    Version,
    /// What the last notifications said (JSON, `notify::Sent`): de-duplication.
    Notified,
}

impl Fact {
    pub fn key(self) -> &'static str {
        match self {
            Fact::Watermark => "watermark",
            Fact::ScriptsHash => "scripts_hash",
            Fact::SourceCache => "source_cache",
            Fact::Held => "held",
            Fact::AllowDeletesOnce => "allow_deletes_once",
            Fact::Quarantine => "quarantine",
            Fact::NextCycleAt => "next_cycle_at",
            Fact::LegacyRetired => "legacy_retired",
            Fact::MigrationBlocked => "migration_blocked",
            Fact::Version => "state_version",
            Fact::Notified => "notified",
        }
    }
}

/// Links by source id, each boxed: a table of a million links sized up front
/// has two million slots, and with a slot the size of a link (176 bytes) the
/// table alone was 369 MB; with a slot the size of a box it is 67 MB beside
/// the links.
pub type LinkMap = HashMap<String, Box<Link>>;

/// The columns a link is read from, in the order `State::link_from_row` takes.
const LINK_COLUMNS: &str = "source_id, target_id, display, attrs, hash, active, disabled_reason";

/// The links a plan was made from (users, groups), handed on to apply: read once
/// per cycle — at 100,000 users reading them is a good part of a small cycle.
/// After an incremental read, the user links are only those the plan needs
/// (`cycle::user_links`), so how many there are is `State::link_count`.
pub type Links = (LinkMap, LinkMap);

/// A user in the grace period before removal.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Leaver {
    pub source_id: String,
    pub display: String,
    pub since: i64,
    pub reason: String,
}

/// A provisioned object: what scimsync created or adopted in the target.
#[derive(Debug, Clone, PartialEq)]
pub struct Link {
    pub kind: ObjectKind,
    pub source_id: String,
    pub target_id: String,
    pub display: String,
    /// The attributes last applied (flat paths); with `hash`, empty in a link
    /// read without them (a head: `State::add_links`).
    pub attrs: Attrs,
    pub hash: String,
    /// Whether the object is active in the target as far as scimsync set it.
    pub active: bool,
    /// Why it was disabled: "out_of_scope" or "disabled".
    pub disabled_reason: Option<String>,
}

/// An object whose last planned action did not complete.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Pending {
    pub kind: ObjectKind,
    pub source_id: String,
    pub reason: String,
    pub since: i64,
    /// A create in doubt: what it sent (stored form), to find the object by.
    #[serde(skip)]
    pub attrs: Option<Attrs>,
}

/// An object to plan again next cycle, and why (what `apply` could not complete).
#[derive(Debug, Clone, PartialEq)]
pub struct Incomplete {
    pub kind: ObjectKind,
    pub source_id: String,
    pub reason: String,
    /// A create whose answer was lost: what it sent.
    pub attrs: Option<Attrs>,
}

/// An object waiting for a retry.
#[derive(Debug, Clone, Serialize)]
pub struct Escrow {
    pub kind: String,
    pub source_id: String,
    pub attempts: i64,
    pub next_at: i64,
    pub last_error: String,
}

pub struct State {
    conn: Connection,
    path: PathBuf,
}

/// An exclusive lock on a state file (`<state>.lock`, flock): one scimsync at a time
/// runs cycles on one state. The kernel releases it when the process ends, even by
/// `kill -9`.
pub struct StateLock {
    _file: std::fs::File,
}

impl StateLock {
    /// The cycle lock: held while a cycle (or `provision`, `restart`…) works on
    /// the state, refused at once if another holds it.
    pub fn acquire(state_path: &Path) -> Result<StateLock, Error> {
        let path = PathBuf::from(format!("{}.lock", state_path.display()));
        Self::acquire_at(&path, &format!("is working on {}", state_path.display()))
    }

    /// The cycle lock, waiting up to `wait` for the holder (a daemon's cycle, a
    /// `sync`) to finish; `waiting` is told once who it waits for. A stop asked
    /// for meanwhile (`stop` returns true) ends the wait as a refusal.
    pub fn acquire_waiting(
        state_path: &Path,
        wait: std::time::Duration,
        waiting: &mut dyn FnMut(&str),
        stop: &dyn Fn() -> bool,
    ) -> Result<StateLock, Error> {
        // A wait too long to add to the clock has no deadline.
        let deadline = std::time::Instant::now().checked_add(wait);
        let mut told = false;
        loop {
            match Self::acquire(state_path) {
                Err(Error::Busy { pid, doing })
                    if deadline.is_none_or(|d| std::time::Instant::now() < d) && !stop() =>
                {
                    if !told {
                        waiting(&format!(
                            "another scimsync (pid {pid}) {doing}; waiting for it"
                        ));
                        told = true;
                    }
                    std::thread::sleep(std::time::Duration::from_millis(200));
                }
                other => return other,
            }
        }
    }

    /// The daemon lock: one `scimsync run` per state file for its whole life
    /// (the cycle lock is only held while a cycle runs).
    pub fn acquire_daemon(state_path: &Path) -> Result<StateLock, Error> {
        let path = PathBuf::from(format!("{}.daemon.lock", state_path.display()));
        Self::acquire_at(
            &path,
            &format!("is running as the daemon for {}", state_path.display()),
        )
    }

    /// One scimsync per Dropbox team, whichever integration (legacy Business API or
    /// SCIM) and whichever state file: a lock named after the team id in
    /// `$SCIMSYNC_LOCK_DIR` (default: the system's temporary directory).
    ///
    /// The lock names the state file of the integration holding it: a command on
    /// that same state (a `provision` beside the daemon) is the same integration
    /// and goes ahead (`Ok(None)`); the cycle lock keeps the two apart.
    pub fn acquire_team(team_id: &str, state_path: &Path) -> Result<Option<StateLock>, Error> {
        let dir = std::env::var_os("SCIMSYNC_LOCK_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(std::env::temp_dir);
        let safe: String = team_id
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
            .collect();
        let path = dir.join(format!("scimsync-dropbox-team-{safe}.lock"));
        let ours = std::fs::canonicalize(state_path).unwrap_or_else(|_| state_path.to_path_buf());
        let result = Self::acquire_noting(
            &path,
            &format!("is running against Dropbox team {team_id}: the legacy and SCIM integrations cannot run against one team at once"),
            &ours.to_string_lossy(),
        );
        match result {
            Err(Error::Busy { .. })
                if std::fs::read_to_string(&path)
                    .is_ok_and(|t| t.lines().nth(1) == Some(&*ours.to_string_lossy())) =>
            {
                Ok(None)
            }
            other => other.map(Some),
        }
    }

    fn acquire_at(path: &Path, holder_does: &str) -> Result<StateLock, Error> {
        Self::acquire_noting(path, holder_does, "")
    }

    /// Locks `path`, writing our pid and `note` (one line each) for whoever finds
    /// it locked.
    fn acquire_noting(path: &Path, holder_does: &str, note: &str) -> Result<StateLock, Error> {
        use std::io::{Read, Seek, Write};
        let mut file = crate::private::options()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .map_err(Error::file(path))?;
        match file.try_lock() {
            Ok(()) => {
                let _ = file.set_len(0);
                let _ = file.seek(std::io::SeekFrom::Start(0));
                let _ = write!(file, "{}\n{note}", std::process::id());
                Ok(StateLock { _file: file })
            }
            Err(std::fs::TryLockError::WouldBlock) => {
                let mut holder = String::new();
                let _ = file.read_to_string(&mut holder);
                Err(Error::Busy {
                    pid: holder.lines().next().unwrap_or_default().trim().to_string(),
                    doing: holder_does.to_string(),
                })
            }
            Err(std::fs::TryLockError::Error(source)) => Err(Error::Lock {
                path: path.to_path_buf(),
                source,
            }),
        }
    }
}

impl State {
    /// Opens (creating if needed) and migrates the state file. A new file (and its
    /// folder) is private to its owner; an old one readable by others is tightened,
    /// with its WAL: they hold the directory and the provisioning log.
    pub fn open(path: &Path) -> Result<State, Error> {
        if !path.exists() {
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                crate::private::create_dir(dir).map_err(|e| Error::State {
                    path: path.to_path_buf(),
                    message: format!("cannot create its folder: {e}"),
                })?;
            }
            crate::private::options()
                .write(true)
                .create(true)
                .truncate(false)
                .open(path)
                .map_err(|e| Error::State {
                    path: path.to_path_buf(),
                    message: format!("cannot create: {e}"),
                })?;
        }
        for suffix in ["", "-wal", "-shm"] {
            let p = PathBuf::from(format!("{}{suffix}", path.display()));
            if crate::private::tighten(&p) {
                log::info!("{}: made readable by its owner only", p.display());
            }
        }
        let conn = Connection::open(path).map_err(|e| state_err(path, e))?;
        Self::init(conn, path)
    }

    /// Opens for reading only; a missing file gives an empty in-memory state, so
    /// `plan` and `status` never create or change anything.
    pub fn open_read_only(path: &Path) -> Result<State, Error> {
        if !path.exists() {
            let conn = Connection::open_in_memory().map_err(|e| state_err(path, e))?;
            return Self::init(conn, path);
        }
        let conn = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY)
            .map_err(|e| state_err(path, e))?;
        let version = schema::check_version(&conn).map_err(|m| Error::State {
            path: path.to_path_buf(),
            message: m,
        })?;
        if version < schema::VERSION {
            // An older state: read it through an in-memory migrated copy.
            let mut mem = Connection::open_in_memory().map_err(|e| state_err(path, e))?;
            {
                let backup = rusqlite::backup::Backup::new(&conn, &mut mem)
                    .map_err(|e| state_err(path, e))?;
                backup
                    .run_to_completion(1000, std::time::Duration::ZERO, None)
                    .map_err(|e| state_err(path, e))?;
            }
            return Self::init(mem, path);
        }
        Ok(State {
            conn,
            path: path.to_path_buf(),
        })
    }

    fn init(mut conn: Connection, path: &Path) -> Result<State, Error> {
        conn.busy_timeout(std::time::Duration::from_secs(5))
            .map_err(|e| state_err(path, e))?;
        // A new file gives pages freed by log retention back (set before any table).
        if schema::check_version(&conn).is_ok_and(|v| v == 0) {
            conn.pragma_update(None, "auto_vacuum", "INCREMENTAL")
                .map_err(|e| state_err(path, e))?;
        }
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(|e| state_err(path, e))?;
        conn.pragma_update(None, "synchronous", "NORMAL")
            .map_err(|e| state_err(path, e))?;
        conn.pragma_update(None, "foreign_keys", "ON")
            .map_err(|e| state_err(path, e))?;
        schema::migrate(&mut conn).map_err(|m| Error::State {
            path: path.to_path_buf(),
            message: m,
        })?;
        Ok(State {
            conn,
            path: path.to_path_buf(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn meta(&self, fact: Fact) -> Result<Option<String>, Error> {
        Ok(self
            .conn
            .query_row("SELECT value FROM meta WHERE key = ?1", [fact.key()], |r| {
                r.get(0)
            })
            .optional()?)
    }

    /// A fact kept as bytes (the source's cache); one kept as text reads as its
    /// bytes, so a state written by an older scimsync still reads.
    pub fn meta_bytes(&self, fact: Fact) -> Result<Option<Vec<u8>>, Error> {
        use rusqlite::types::ValueRef;
        Ok(self
            .conn
            .query_row("SELECT value FROM meta WHERE key = ?1", [fact.key()], |r| {
                Ok(match r.get_ref(0)? {
                    ValueRef::Text(b) | ValueRef::Blob(b) => Some(b.to_vec()),
                    _ => None,
                })
            })
            .optional()?
            .flatten())
    }

    pub fn set_meta(&self, fact: Fact, value: Option<&str>) -> Result<(), Error> {
        let key = fact.key();
        match value {
            Some(v) => self.conn.execute(
                "INSERT INTO meta(key, value) VALUES (?1, ?2) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                params![key, v],
            )?,
            None => self.conn.execute("DELETE FROM meta WHERE key = ?1", [key])?,
        };
        Ok(())
    }

    /// All links of one kind, keyed by source id.
    pub fn links(&self, kind: ObjectKind) -> Result<LinkMap, Error> {
        // Counted first: a table of a million links grown by doubling rehashed
        // every link twenty times and held its old and new buffers together.
        let count = self.link_count(Some(kind))?;
        self.links_where(kind, count, &|_| true)
    }

    /// The links of one kind whose source id `wanted` names, whole (an
    /// incremental cycle over 100 changes in a directory of a million reads the
    /// links it plans with, not a million: they were 390 MB and three seconds).
    pub fn links_where(
        &self,
        kind: ObjectKind,
        capacity: usize,
        wanted: &dyn Fn(&str) -> bool,
    ) -> Result<LinkMap, Error> {
        let sql = format!("SELECT {LINK_COLUMNS} FROM links WHERE kind = ?1");
        let mut stmt = self.conn.prepare_cached(&sql)?;
        let mut rows = stmt.query([kind.as_str()])?;
        let mut out = HashMap::with_capacity(capacity);
        while let Some(r) = rows.next()? {
            // Borrowed from SQLite: a link not wanted costs no allocation.
            let id = r.get_ref(0)?.as_str().map_err(rusqlite::Error::from)?;
            if !wanted(id) {
                continue;
            }
            let link = self.link_from_row(kind, r, true)?;
            out.insert(link.source_id.clone(), Box::new(link));
        }
        Ok(out)
    }

    /// Adds to `links` the heads (no applied attributes) of the links of `ids`
    /// it does not hold yet: what a plan over part of the directory turns out to
    /// need beyond what it evaluated (members it adds or removes, creates in doubt).
    pub fn add_links<'i>(
        &self,
        kind: ObjectKind,
        ids: impl IntoIterator<Item = &'i str>,
        links: &mut LinkMap,
    ) -> Result<(), Error> {
        let ids = ids.into_iter().filter(|id| !links.contains_key(*id));
        let found = self.link_heads(kind, "source_id", ids.collect::<Vec<_>>())?;
        links.extend(found);
        Ok(())
    }

    /// Adds to `links` the head of the link that holds each target object, if
    /// one does and `links` does not hold it yet (a match found in the target may
    /// be an object another directory object is linked to).
    pub fn add_links_holding<'i>(
        &self,
        kind: ObjectKind,
        target_ids: impl IntoIterator<Item = &'i str>,
        links: &mut LinkMap,
    ) -> Result<(), Error> {
        for (id, link) in self.link_heads(kind, "target_id", target_ids)? {
            links.entry(id).or_insert(link);
        }
        Ok(())
    }

    /// The heads of the links whose `column` (`source_id` or `target_id`, both
    /// keys) is one of `values`.
    fn link_heads<'i>(
        &self,
        kind: ObjectKind,
        column: &str,
        values: impl IntoIterator<Item = &'i str>,
    ) -> Result<Vec<(String, Box<Link>)>, Error> {
        let sql = format!("SELECT {LINK_COLUMNS} FROM links WHERE kind = ?1 AND {column} = ?2");
        let mut stmt = self.conn.prepare_cached(&sql)?;
        let mut out = vec![];
        for value in values {
            let mut rows = stmt.query([kind.as_str(), value])?;
            if let Some(r) = rows.next()? {
                let link = self.link_from_row(kind, r, false)?;
                out.push((link.source_id.clone(), Box::new(link)));
            }
        }
        Ok(out)
    }

    /// How many links there are (of one kind, or all): what the deletion
    /// thresholds' percentages are of, whatever part of them a cycle reads.
    pub fn link_count(&self, kind: Option<ObjectKind>) -> Result<usize, Error> {
        let count: i64 = match kind {
            Some(kind) => self
                .conn
                .prepare_cached("SELECT count(*) FROM links WHERE kind = ?1")?
                .query_row([kind.as_str()], |r| r.get(0))?,
            None => self
                .conn
                .prepare_cached("SELECT count(*) FROM links")?
                .query_row([], |r| r.get(0))?,
        };
        Ok(usize::try_from(count).unwrap_or(0))
    }

    /// A link from a row of `LINK_COLUMNS`; with its applied attributes and
    /// their hash when `whole`.
    fn link_from_row(
        &self,
        kind: ObjectKind,
        r: &rusqlite::Row<'_>,
        whole: bool,
    ) -> Result<Link, Error> {
        let source_id: String = r.get(0)?;
        let (attrs, hash) = if whole {
            // Borrowed from SQLite: no copy of the text before it is parsed.
            let text = r.get_ref(3)?.as_str().map_err(rusqlite::Error::from)?;
            let attrs = serde_json::from_str(text).map_err(|e| Error::State {
                path: self.path.clone(),
                message: format!("link {source_id}: stored attributes are not JSON: {e}"),
            })?;
            let hash = r
                .get_ref(4)?
                .as_blob_or_null()
                .map_err(rusqlite::Error::from)?;
            (attrs, hex(hash.unwrap_or_default()))
        } else {
            (Attrs::new(), String::new())
        };
        Ok(Link {
            kind,
            source_id,
            target_id: r.get(1)?,
            display: r.get(2)?,
            attrs,
            hash,
            active: r.get(5)?,
            disabled_reason: r.get(6)?,
        })
    }

    /// One link's applied attributes, if it is linked.
    pub fn link_attrs(&self, kind: ObjectKind, source_id: &str) -> Result<Option<Attrs>, Error> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT attrs FROM links WHERE kind = ?1 AND source_id = ?2")?;
        let text: Option<String> = stmt
            .query_row([kind.as_str(), source_id], |r| r.get(0))
            .optional()?;
        text.map(|t| {
            serde_json::from_str(&t).map_err(|e| Error::State {
                path: self.path.clone(),
                message: format!("link {source_id}: stored attributes are not JSON: {e}"),
            })
        })
        .transpose()
    }

    /// Group → member user source ids, as applied.
    pub fn memberships(&self) -> Result<HashMap<String, BTreeSet<String>>, Error> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT group_id, user_id FROM memberships")?;
        let rows = stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))?;
        let mut out: HashMap<String, BTreeSet<String>> = HashMap::new();
        for row in rows {
            let (g, u) = row?;
            out.entry(g).or_default().insert(u);
        }
        Ok(out)
    }

    /// Runs `f` in one transaction: a batch of writes lands whole or not at all.
    /// Run `f` in one transaction.
    pub fn write<T>(
        &mut self,
        f: impl FnOnce(&Writer<'_>) -> Result<T, Error>,
    ) -> Result<T, Error> {
        let tx = self.conn.transaction()?;
        let out = f(&Writer { tx: &tx })?;
        // Every transaction moves the version: a reviewed plan made before it is
        // stale.
        tx.execute(
            "INSERT INTO meta(key, value) VALUES (?1, '1')
             ON CONFLICT(key) DO UPDATE SET value = CAST(value AS INTEGER) + 1",
            [Fact::Version.key()],
        )?;
        tx.commit()?;
        Ok(out)
    }

    pub fn escrows(&self) -> Result<Vec<Escrow>, Error> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT kind, source_id, attempts, next_at, last_error FROM escrow ORDER BY next_at",
        )?;
        let rows = stmt.query_map([], |r| {
            Ok(Escrow {
                kind: r.get(0)?,
                source_id: r.get(1)?,
                attempts: r.get(2)?,
                next_at: r.get(3)?,
                last_error: r.get(4)?,
            })
        })?;
        Ok(rows.collect::<Result<Vec<_>, _>>()?)
    }

    /// Users in their grace period before removal: source id → since when.
    pub fn leavers(&self) -> Result<HashMap<String, i64>, Error> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT source_id, since FROM leavers")?;
        let rows = stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// The leavers with what the status shows: display name, since, why.
    pub fn leaver_list(&self) -> Result<Vec<Leaver>, Error> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT l.source_id, coalesce(k.display, l.source_id), l.since, l.reason
             FROM leavers l LEFT JOIN links k ON k.kind = 'user' AND k.source_id = l.source_id
             ORDER BY l.since, l.source_id",
        )?;
        let rows = stmt.query_map([], |r| {
            Ok(Leaver {
                source_id: r.get(0)?,
                display: r.get(1)?,
                since: r.get(2)?,
                reason: r.get(3)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Objects to evaluate again whatever changed: their last planned action did not
    /// complete.
    pub fn pending(&self) -> Result<Vec<Pending>, Error> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT kind, source_id, reason, since, attrs FROM pending ORDER BY since",
        )?;
        let rows = stmt.query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, i64>(3)?,
                r.get::<_, Option<String>>(4)?,
            ))
        })?;
        let mut out = vec![];
        for row in rows {
            let (kind, source_id, reason, since, attrs) = row?;
            if let Some(kind) = ObjectKind::parse(&kind) {
                out.push(Pending {
                    kind,
                    source_id,
                    reason,
                    since,
                    attrs: attrs.and_then(|a| serde_json::from_str(&a).ok()),
                });
            }
        }
        Ok(out)
    }

    /// Groups the state records this user as a member of.
    /// The members the state records for these groups only (an incremental cycle
    /// at a million users needs a few groups' members, not the whole table).
    pub fn memberships_of<'a>(
        &self,
        groups: impl IntoIterator<Item = &'a String>,
    ) -> Result<HashMap<String, BTreeSet<String>>, Error> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT user_id FROM memberships WHERE group_id = ?1")?;
        let mut out = HashMap::new();
        for g in groups {
            let members = stmt
                .query_map([g], |r| r.get::<_, String>(0))?
                .collect::<Result<BTreeSet<_>, _>>()?;
            if !members.is_empty() {
                out.insert(g.clone(), members);
            }
        }
        Ok(out)
    }

    pub fn groups_of(&self, user: &str) -> Result<Vec<String>, Error> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT group_id FROM memberships WHERE user_id = ?1")?;
        let rows = stmt.query_map([user], |r| r.get::<_, String>(0))?;
        Ok(rows.collect::<Result<Vec<_>, _>>()?)
    }

    /// Makes every escrowed object due now (the target is back after a quarantine).
    pub fn escrows_due_now(&self) -> Result<(), Error> {
        self.conn
            .execute("UPDATE escrow SET next_at = ?1", [crate::clock::now()])?;
        Ok(())
    }

    /// Counts of links by kind and active flag: (users, active users, groups).
    pub fn link_counts(&self) -> Result<(i64, i64, i64), Error> {
        Ok(self.conn.query_row(
            "SELECT
               (SELECT count(*) FROM links WHERE kind = 'user'),
               (SELECT count(*) FROM links WHERE kind = 'user' AND active),
               (SELECT count(*) FROM links WHERE kind = 'group')",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )?)
    }

    /// Forgets watermarks, escrows or links (Entra's "restart provisioning").
    pub fn restart(&mut self, scope: Restart) -> Result<(), Error> {
        let tx = self.conn.transaction()?;
        let forget = |tx: &Transaction, facts: &[Fact]| -> Result<(), rusqlite::Error> {
            for f in facts {
                tx.execute("DELETE FROM meta WHERE key = ?1", [f.key()])?;
            }
            Ok(())
        };
        match scope {
            Restart::Watermark => forget(&tx, &[Fact::Watermark, Fact::ScriptsHash])?,
            Restart::Escrows => {
                // Retried now, not forgotten: the changes they hold are still to do.
                tx.execute("UPDATE escrow SET next_at = ?1", [crate::clock::now()])?;
            }
            Restart::Quarantine => forget(&tx, &[Fact::Quarantine])?,
            // Rolls back `migrate apply`: the legacy integration may run again.
            Restart::Migration => forget(&tx, &[Fact::LegacyRetired, Fact::MigrationBlocked])?,
            Restart::Full => {
                forget(
                    &tx,
                    &[
                        Fact::Watermark,
                        Fact::ScriptsHash,
                        Fact::Quarantine,
                        Fact::Held,
                    ],
                )?;
                tx.execute("DELETE FROM escrow", [])?;
                tx.execute("DELETE FROM memberships", [])?;
                tx.execute("DELETE FROM links", [])?;
                tx.execute("DELETE FROM pending", [])?;
                // A leaver's link is gone with the rest: nothing is left to remove.
                tx.execute("DELETE FROM leavers", [])?;
            }
        }
        tx.commit()?;
        Ok(())
    }
}

/// What `restart --scope` forgets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Restart {
    /// The watermark and scripts hash: the next cycle is initial, reading everything.
    Watermark,
    /// Makes every escrow due now.
    Escrows,
    /// Ends a quarantine by hand.
    Quarantine,
    /// Undoes `migrate apply`.
    Migration,
    /// All of it and the links: the next cycle matches again.
    Full,
}

impl Restart {
    pub fn as_str(self) -> &'static str {
        match self {
            Restart::Watermark => "watermark",
            Restart::Escrows => "escrows",
            Restart::Quarantine => "quarantine",
            Restart::Migration => "migration",
            Restart::Full => "full",
        }
    }
}

/// Writes inside one transaction.
pub struct Writer<'a> {
    tx: &'a Transaction<'a>,
}

impl Writer<'_> {
    pub fn upsert_link(&self, link: &Link) -> Result<(), Error> {
        let attrs = serde_json::to_string(&link.attrs)?;
        let now = crate::clock::now();
        self.tx
            .prepare_cached(
                "INSERT INTO links(kind, source_id, target_id, display, attrs, hash, active, disabled_reason, created_at, updated_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, unhex(?6), ?7, ?8, ?9, ?9)
                 ON CONFLICT(kind, source_id) DO UPDATE SET target_id = excluded.target_id, display = excluded.display,
                   attrs = excluded.attrs, hash = excluded.hash, active = excluded.active,
                   disabled_reason = excluded.disabled_reason, updated_at = excluded.updated_at",
            )?
            .execute(params![
                link.kind.as_str(),
                link.source_id,
                link.target_id,
                link.display,
                attrs,
                link.hash,
                link.active,
                link.disabled_reason,
                now
            ])?;
        Ok(())
    }

    pub fn delete_link(&self, kind: ObjectKind, source_id: &str) -> Result<(), Error> {
        self.tx
            .prepare_cached("DELETE FROM links WHERE kind = ?1 AND source_id = ?2")?
            .execute(params![kind.as_str(), source_id])?;
        let col = match kind {
            ObjectKind::User => "user_id",
            ObjectKind::Group => "group_id",
        };
        self.tx
            .prepare_cached(&format!("DELETE FROM memberships WHERE {col} = ?1"))?
            .execute([source_id])?;
        if kind == ObjectKind::User {
            self.stayed(source_id)?;
        }
        Ok(())
    }

    /// A user's grace period before removal starts (an earlier start is kept).
    pub fn leaver(&self, source_id: &str, since: i64, reason: &str) -> Result<(), Error> {
        self.tx
            .prepare_cached(
                "INSERT OR IGNORE INTO leavers(source_id, since, reason) VALUES (?1, ?2, ?3)",
            )?
            .execute(params![source_id, since, reason])?;
        Ok(())
    }

    /// A user is no longer a leaver: back, or removed.
    pub fn stayed(&self, source_id: &str) -> Result<(), Error> {
        self.tx
            .prepare_cached("DELETE FROM leavers WHERE source_id = ?1")?
            .execute([source_id])?;
        Ok(())
    }

    pub fn add_membership(&self, group: &str, user: &str) -> Result<(), Error> {
        self.tx
            .prepare_cached("INSERT OR IGNORE INTO memberships(group_id, user_id) VALUES (?1, ?2)")?
            .execute([group, user])?;
        Ok(())
    }

    pub fn remove_membership(&self, group: &str, user: &str) -> Result<(), Error> {
        self.tx
            .prepare_cached("DELETE FROM memberships WHERE group_id = ?1 AND user_id = ?2")?
            .execute([group, user])?;
        Ok(())
    }

    /// Records a failure for retry with growing back-off.
    pub fn escrow(
        &self,
        kind: ObjectKind,
        source_id: &str,
        error: &str,
        backoff: &dyn Fn(i64) -> i64,
    ) -> Result<(), Error> {
        let attempts: i64 = self
            .tx
            .prepare_cached("SELECT attempts FROM escrow WHERE kind = ?1 AND source_id = ?2")?
            .query_row(params![kind.as_str(), source_id], |r| r.get(0))
            .optional()?
            .unwrap_or(0)
            + 1;
        let next = crate::clock::now() + backoff(attempts);
        self.tx
            .prepare_cached(
                "INSERT INTO escrow(kind, source_id, attempts, next_at, last_error) VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT(kind, source_id) DO UPDATE SET attempts = excluded.attempts, next_at = excluded.next_at,
                   last_error = excluded.last_error",
            )?
            .execute(params![kind.as_str(), source_id, attempts, next, error])?;
        Ok(())
    }

    /// Replaces the pending set: `keep_old` keeps the rows already there (a cycle
    /// that stopped early did not look at them all).
    pub fn set_pending(&self, rows: &[Incomplete], keep_old: bool) -> Result<(), Error> {
        if !keep_old {
            self.tx.execute("DELETE FROM pending", [])?;
        }
        let now = crate::clock::now();
        for p in rows {
            // Stored form: a redacted value is kept as its hash, never as itself.
            let attrs = match &p.attrs {
                Some(a) => Some(serde_json::to_string(&crate::scim::attribute::stored(a))?),
                None => None,
            };
            self.tx
                .prepare_cached(
                    "INSERT INTO pending(kind, source_id, reason, since, attrs) VALUES (?1, ?2, ?3, ?4, ?5)
                     ON CONFLICT(kind, source_id) DO UPDATE SET reason = excluded.reason,
                       attrs = coalesce(excluded.attrs, pending.attrs)",
                )?
                .execute(params![p.kind.as_str(), p.source_id, p.reason, now, attrs])?;
        }
        Ok(())
    }

    pub fn clear_escrow(&self, kind: ObjectKind, source_id: &str) -> Result<(), Error> {
        self.tx
            .prepare_cached("DELETE FROM escrow WHERE kind = ?1 AND source_id = ?2")?
            .execute(params![kind.as_str(), source_id])?;
        Ok(())
    }

    pub fn set_meta(&self, fact: Fact, value: Option<&str>) -> Result<(), Error> {
        let key = fact.key();
        match value {
            Some(v) => self.tx.execute(
                "INSERT INTO meta(key, value) VALUES (?1, ?2) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                params![key, v],
            )?,
            None => self.tx.execute("DELETE FROM meta WHERE key = ?1", [key])?,
        };
        Ok(())
    }

    /// A fact kept as bytes (a blob: no text encoding to pay for).
    pub fn set_meta_bytes(&self, fact: Fact, value: &[u8]) -> Result<(), Error> {
        self.tx.execute(
            "INSERT INTO meta(key, value) VALUES (?1, ?2) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            params![fact.key(), value],
        )?;
        Ok(())
    }
}

/// Bytes as lower-case hex (how a link's hash is compared).
fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(out, "{b:02x}");
    }
    out
}

fn state_err(path: &Path, e: rusqlite::Error) -> Error {
    let msg = e.to_string();
    let message = if msg.contains("not a database") {
        "is not a scimsync state file (not SQLite)".to_string()
    } else {
        msg
    };
    Error::State {
        path: path.to_path_buf(),
        message,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!(
            "scimsync-state-{}-{}",
            std::process::id(),
            crate::ids::random_hex(8)
        ));
        let _ = std::fs::create_dir_all(&d);
        d.join(name)
    }

    #[test]
    fn links_roundtrip_in_one_transaction() -> Result<(), Error> {
        let mut s = State::open(&temp("s.db"))?;
        let mut attrs = Attrs::new();
        attrs.insert("userName", serde_json::json!("a@x.com"));
        let link = Link {
            kind: ObjectKind::User,
            source_id: "u1".into(),
            target_id: "t1".into(),
            display: "a@x.com".into(),
            attrs,
            hash: "5f".repeat(32),
            active: true,
            disabled_reason: None,
        };
        s.write(|w| w.upsert_link(&link))?;
        assert_eq!(
            s.links(ObjectKind::User)?.get("u1").map(|l| &**l),
            Some(&link)
        );
        // A failing batch leaves nothing behind.
        let r: Result<(), Error> = s.write(|w| {
            w.delete_link(ObjectKind::User, "u1")?;
            Err(Error::answer("a test", "boom"))
        });
        assert!(r.is_err());
        assert!(s.links(ObjectKind::User)?.contains_key("u1"));
        Ok(())
    }

    #[test]
    fn not_sqlite_is_a_clear_error() {
        let p = temp("junk.db");
        let _ = std::fs::write(&p, vec![b'x'; 4096]);
        let e = State::open(&p)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(e.contains("not a scimsync state file"), "{e}");
    }

    #[test]
    fn newer_version_is_refused() -> Result<(), Error> {
        let p = temp("new.db");
        {
            let s = State::open(&p)?;
            s.conn.pragma_update(None, "user_version", 999)?;
        }
        let e = State::open(&p)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(e.contains("newer"), "{e}");
        Ok(())
    }
}
