//! The spill: mapped attributes of new users, kept on disk between evaluation and
//! apply. A cycle that creates a hundred thousand users would otherwise hold every
//! one's attributes from the first evaluation to the last create (the larger part
//! of its memory). What the plan decides on — the user's id, its matching values,
//! its active flag — stays in memory; the rest is read back when the create is
//! sent (or, for `plan`, when its document is printed).
//!
//! A private SQLite file made beside the state (0600) and unlinked as soon as its
//! tables are made: the open connection keeps it, nothing on disk names it, and
//! the kernel frees it when the process ends however it ends — a cycle or a
//! `plan` that is killed leaves no new users' attributes behind, and `plan` still
//! leaves nothing anywhere. Not in the system's temporary folder (where SQLite
//! puts a temporary database): on the small servers this is for, that is often a
//! tmpfs, i.e. memory again. Scratch, not state.

use crate::error::Error;
use crate::scim::attribute::{Attrs, REDACTED};
use rusqlite::{Connection, OptionalExtension};
use std::num::NonZeroI64;
use std::path::{Path, PathBuf};

fn failed(e: impl std::fmt::Display) -> Error {
    Error::Spill(e.to_string())
}

/// Attributes put aside until they are sent.
pub struct Spill {
    // Closed before its file is removed: fields drop in this order.
    conn: Connection,
    /// Set only where the file could not be unlinked at once.
    _file: Option<Scratch>,
    count: std::cell::Cell<usize>,
    /// A put failed (a full temporary folder): the rest stays in memory.
    broken: std::cell::Cell<bool>,
}

impl std::fmt::Debug for Spill {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Spill({} put aside)", self.count.get())
    }
}

/// The spill's file while it still has a name: removed when dropped (where it
/// could not be unlinked at once).
struct Scratch(PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Where a cycle's spill beside the state at `state_path` is made.
pub fn path_for(state_path: &Path) -> PathBuf {
    PathBuf::from(format!("{}.spill", state_path.display()))
}

impl Spill {
    /// A new, empty spill beside the state at `state_path`, for the process
    /// holding the state's lock (a `sync`): one left by an earlier version that
    /// died is replaced.
    pub fn open(state_path: &Path) -> Result<Spill, Error> {
        let path = path_for(state_path);
        match std::fs::remove_file(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                return Err(failed(format!("{}: {e}", path.display())))
            }
            _ => {}
        }
        Spill::open_at(path)
    }

    /// A spill for a process that does not hold the state's lock (`plan`, beside
    /// a daemon): a name of its own, so that it meets no other process's spill.
    pub fn open_private(state_path: &Path) -> Result<Spill, Error> {
        let name = format!(
            "{}.spill-{}-{}",
            state_path.display(),
            std::process::id(),
            crate::ids::random_hex(8)
        );
        Spill::open_at(PathBuf::from(name))
    }

    fn open_at(path: PathBuf) -> Result<Spill, Error> {
        let shown = path.display().to_string();
        let at = |e: &dyn std::fmt::Display| failed(format!("{shown}: {e}"));
        crate::private::options()
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(|e| at(&e))?;
        let file = Scratch(path);
        // Each put commits on its own: a put that fails (a full disk) may roll
        // back its whole transaction, and rows handed out must stay readable.
        // Nothing is synced: the file dies with the connection anyway. Locked
        // once for the connection's life: otherwise each put and get takes and
        // drops the file lock and checks the file for changes (a named file may
        // have other writers; this one has none), 20 µs an object at 10,000.
        // The journal is in memory, so SQLite never opens a second file by name
        // and the file can lose its name once the tables are made.
        let conn = Connection::open(&file.0).map_err(|e| at(&e))?;
        conn.execute_batch(
            "PRAGMA locking_mode = EXCLUSIVE; PRAGMA journal_mode = MEMORY; PRAGMA synchronous = OFF;
             CREATE TABLE attrs (row INTEGER PRIMARY KEY, json BLOB NOT NULL, kept BLOB NOT NULL);
             CREATE TABLE cache (bytes BLOB NOT NULL);",
        )
        .map_err(|e| at(&e))?;
        let file = std::fs::remove_file(&file.0).is_err().then_some(file);
        Ok(Spill {
            conn,
            _file: file,
            count: Default::default(),
            broken: Default::default(),
        })
    }

    /// Whether these attributes may go to disk: not when a value is redacted (a
    /// secret is never written anywhere, scratch included).
    pub fn takes(attrs: &Attrs) -> bool {
        !attrs.contains_key(REDACTED)
    }

    /// Whether puts still succeed.
    pub fn works(&self) -> bool {
        !self.broken.get()
    }

    /// Puts attributes aside, and apart from them the values `kept` (what the
    /// plan decides on, what writing a create ahead needs: read back alone, they
    /// cost a fifth of the whole); the row (never 0) reads them back.
    pub fn put(&self, attrs: &Attrs, kept: &Attrs) -> Result<NonZeroI64, Error> {
        let json = serde_json::to_vec(attrs)?;
        let kept = serde_json::to_vec(kept)?;
        self.conn
            .prepare_cached("INSERT INTO attrs (json, kept) VALUES (?1, ?2)")
            .and_then(|mut s| s.execute([json, kept]))
            .map_err(|e| {
                self.broken.set(true);
                failed(e)
            })?;
        self.count.set(self.count.get() + 1);
        // An INTEGER PRIMARY KEY of a new table starts at 1.
        NonZeroI64::new(self.conn.last_insert_rowid()).ok_or_else(|| failed("row 0"))
    }

    /// The attributes put aside under `row`.
    pub fn get(&self, row: NonZeroI64) -> Result<Attrs, Error> {
        self.column(row, "SELECT json FROM attrs WHERE row = ?1")
    }

    /// The values kept apart under `row` (`put`).
    pub fn kept(&self, row: NonZeroI64) -> Result<Attrs, Error> {
        self.column(row, "SELECT kept FROM attrs WHERE row = ?1")
    }

    fn column(&self, row: NonZeroI64, sql: &str) -> Result<Attrs, Error> {
        let json: Option<Vec<u8>> = self
            .conn
            .prepare_cached(sql)
            .and_then(|mut s| s.query_row([row.get()], |r| r.get(0)).optional())
            .map_err(failed)?;
        let json = json.ok_or_else(|| failed(format!("row {row} is missing")))?;
        Ok(serde_json::from_slice(&json)?)
    }

    /// Puts the read's record digests (the source's cache) aside until the cycle
    /// records them, whole or a part at a time (appended): at a million users
    /// 35 MB, otherwise held from the read to the end of the cycle.
    pub fn put_cache(&self, part: &[u8]) -> Result<(), Error> {
        self.conn
            .prepare_cached("INSERT INTO cache (bytes) VALUES (?1)")
            .and_then(|mut s| s.execute([part]))
            .map(drop)
            .map_err(failed)
    }

    /// The cache put aside, its parts in order, if any was; taken out.
    pub fn take_cache(&self) -> Result<Option<Vec<u8>>, Error> {
        let mut stmt = self
            .conn
            .prepare("SELECT bytes FROM cache ORDER BY rowid")
            .map_err(failed)?;
        // Sized first: grown by doubling, 35 MB at a million users had its old
        // and new buffers at once at the end of the cycle, its peak.
        let size: i64 = self
            .conn
            .query_row(
                "SELECT coalesce(sum(length(bytes)), 0) FROM cache",
                [],
                |r| r.get(0),
            )
            .map_err(failed)?;
        let mut rows = stmt.query([]).map_err(failed)?;
        let mut out: Option<Vec<u8>> = None;
        while let Some(r) = rows.next().map_err(failed)? {
            let part = r
                .get_ref(0)
                .and_then(|v| Ok(v.as_blob()?))
                .map_err(failed)?;
            let whole = || Vec::with_capacity(usize::try_from(size).unwrap_or(0));
            out.get_or_insert_with(whole).extend_from_slice(part);
        }
        drop(rows);
        drop(stmt);
        self.clear_cache()?;
        Ok(out)
    }

    /// Drops the cache put aside.
    pub fn clear_cache(&self) -> Result<(), Error> {
        self.conn
            .execute("DELETE FROM cache", [])
            .map(drop)
            .map_err(failed)
    }

    /// A spill in the system's temporary folder, for tests.
    #[cfg(test)]
    pub fn scratch() -> Result<Spill, Error> {
        use std::sync::atomic::{AtomicUsize, Ordering};
        static N: AtomicUsize = AtomicUsize::new(0);
        let n = N.fetch_add(1, Ordering::Relaxed);
        let name = format!("scimsync-test-{}-{n}.spill", std::process::id());
        Spill::open_at(std::env::temp_dir().join(name))
    }

    /// A spill that fills up after `pages` pages, as a full disk would.
    #[cfg(test)]
    pub fn limited(pages: u32) -> Result<Spill, Error> {
        let spill = Spill::scratch()?;
        spill
            .conn
            .pragma_update(None, "max_page_count", pages)
            .map_err(failed)?;
        Ok(spill)
    }

    /// How many attribute sets were put aside.
    pub fn count(&self) -> usize {
        self.count.get()
    }
}

/// An object's attributes: its own (`own`), or, where they were put aside under
/// `row`, read back from `spill` (apply sends them; `review` documents them). A
/// row with no spill to read it from is an error, never an object without
/// attributes.
pub fn attrs_back<'x>(
    own: &'x Attrs,
    row: Option<NonZeroI64>,
    spill: Option<&Spill>,
    display: &str,
) -> Result<std::borrow::Cow<'x, Attrs>, Error> {
    use std::borrow::Cow;
    match (row, spill) {
        (None, _) => Ok(Cow::Borrowed(own)),
        (Some(row), Some(spill)) => Ok(Cow::Owned(spill.get(row)?)),
        (Some(_), None) => Err(failed(format!(
            "the create of {display} was planned with its attributes put aside, and none were handed on"
        ))),
    }
}

/// What stays in memory of attributes put aside: the values the plan decides
/// on, the matching values `keep` names. (Only active users are put aside, and
/// `desired_active` reads a missing flag as active.)
pub fn kept(attrs: &Attrs, keep: &[String]) -> Attrs {
    attrs
        .iter()
        .filter(|(p, _)| keep.iter().any(|k| k == p.as_ref()))
        .map(|(p, v)| (p.clone(), v.clone()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn attributes_come_back_as_they_were_put_aside() -> Result<(), Error> {
        let spill = Spill::scratch()?;
        let a: Attrs = [
            ("userName", json!("ada@contoso.com")),
            ("name.givenName", json!("Ada")),
            ("active", json!(true)),
            ("emails[type eq \"work\"].value", json!("ada@contoso.com")),
            ("x", json!({"n": 1.5, "l": [1, null, "z"]})),
        ]
        .into_iter()
        .collect();
        let b: Attrs = [("userName", json!("bo@contoso.com"))]
            .into_iter()
            .collect();
        let small = kept(&a, &["userName".to_string()]);
        let (ra, rb) = (spill.put(&a, &small)?, spill.put(&b, &b)?);
        assert_eq!(spill.get(rb)?, b);
        assert_eq!(spill.get(ra)?, a);
        assert_eq!(spill.kept(ra)?, small, "the kept values come back alone");
        assert_eq!(spill.kept(rb)?, b);
        assert_eq!(spill.count(), 2);
        assert!(NonZeroI64::new(rb.get() + 1).is_some_and(|r| spill.get(r).is_err()));
        assert_eq!(
            small.keys().map(|k| k.as_ref()).collect::<Vec<_>>(),
            ["userName"]
        );
        let secret: Attrs = [("password", json!("x")), (REDACTED, json!(["password"]))]
            .into_iter()
            .collect();
        assert!(!Spill::takes(&secret) && Spill::takes(&a));
        assert_eq!(spill.take_cache()?, None);
        spill.put_cache(b"digests")?;
        assert_eq!(spill.take_cache()?.as_deref(), Some(&b"digests"[..]));
        assert_eq!(spill.take_cache()?, None, "taken out");
        for part in [&b"one "[..], b"", b"two ", b"three"] {
            spill.put_cache(part)?;
        }
        assert_eq!(spill.take_cache()?.as_deref(), Some(&b"one two three"[..]));
        spill.put_cache(b"x")?;
        spill.clear_cache()?;
        assert_eq!(spill.take_cache()?, None, "dropped");
        Ok(())
    }

    /// The spill's file has no name once it is open, so nothing is left on disk
    /// whatever becomes of the process; it still holds more than SQLite's page
    /// cache (2 MiB), i.e. what is put aside is on disk, not in memory.
    #[test]
    fn the_spill_leaves_no_file_and_holds_what_is_put_aside() -> Result<(), Error> {
        let dir = std::env::temp_dir().join(format!("scimsync-spill-{}", std::process::id()));
        std::fs::create_dir_all(&dir).map_err(failed)?;
        let state = dir.join("state.db");
        let names = || -> Vec<std::ffi::OsString> {
            std::fs::read_dir(&dir)
                .map(|d| d.filter_map(|e| e.ok()).map(|e| e.file_name()).collect())
                .unwrap_or_default()
        };
        std::fs::write(path_for(&state), b"left by a process that died").map_err(failed)?;
        let (cycle, plan) = (Spill::open(&state)?, Spill::open_private(&state)?);
        assert!(cycle._file.is_none() && plan._file.is_none());
        assert_eq!(names(), Vec::<std::ffi::OsString>::new(), "nothing named");
        let rows: Vec<(NonZeroI64, Attrs)> = (0..20_000)
            .map(|i| {
                let a: Attrs = [
                    ("userName", json!(format!("user{i}@contoso.com"))),
                    (
                        "displayName",
                        json!(format!("User {i} {}", "x".repeat(150))),
                    ),
                ]
                .into_iter()
                .collect();
                Ok((plan.put(&a, &a)?, a))
            })
            .collect::<Result<_, Error>>()?;
        for (row, a) in rows.iter().step_by(997) {
            assert_eq!(&plan.get(*row)?, a);
        }
        let pages: i64 = plan
            .conn
            .query_row("PRAGMA page_count", [], |r| r.get(0))
            .map_err(failed)?;
        assert!(pages * 4096 > 4 << 20, "{pages} pages");
        assert_eq!(cycle.count(), 0, "two spills of one state apart");
        drop((cycle, plan));
        assert_eq!(names(), Vec::<std::ffi::OsString>::new());
        std::fs::remove_dir(&dir).map_err(failed)?;
        Ok(())
    }
}
