//! The spill: mapped attributes of new users, kept on disk between evaluation and
//! apply. A cycle that creates a hundred thousand users would otherwise hold every
//! one's attributes from the first evaluation to the last create (the larger part
//! of its memory). What the plan decides on — the user's id, its matching values,
//! its active flag — stays in memory; the rest is read back when the create is
//! sent.
//!
//! A private SQLite file beside the state (`<state>.spill`, 0600), removed when
//! the cycle's plan is done with it. Not in the system's temporary folder (where
//! SQLite puts a temporary database): on the small servers this is for, that is
//! often a tmpfs, i.e. memory again. Scratch, not state: only the process holding
//! the state's lock makes one, so a file left by a process that died is simply
//! replaced.

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
    _file: Scratch,
    count: std::cell::Cell<usize>,
    /// A put failed (a full temporary folder): the rest stays in memory.
    broken: std::cell::Cell<bool>,
}

impl std::fmt::Debug for Spill {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Spill({} put aside)", self.count.get())
    }
}

/// The spill's file, removed when dropped.
struct Scratch(PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Where the spill of the state at `state_path` lives.
pub fn path_for(state_path: &Path) -> PathBuf {
    PathBuf::from(format!("{}.spill", state_path.display()))
}

impl Spill {
    /// A new, empty spill beside the state at `state_path` (the caller holds the
    /// state's lock).
    pub fn open(state_path: &Path) -> Result<Spill, Error> {
        Spill::open_at(path_for(state_path))
    }

    fn open_at(path: PathBuf) -> Result<Spill, Error> {
        let shown = path.display().to_string();
        let at = |e: &dyn std::fmt::Display| failed(format!("{shown}: {e}"));
        match std::fs::remove_file(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(at(&e)),
            _ => {}
        }
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
        let conn = Connection::open(&file.0).map_err(|e| at(&e))?;
        conn.execute_batch(
            "PRAGMA locking_mode = EXCLUSIVE; PRAGMA journal_mode = MEMORY; PRAGMA synchronous = OFF;
             CREATE TABLE attrs (row INTEGER PRIMARY KEY, json BLOB NOT NULL, kept BLOB NOT NULL);
             CREATE TABLE cache (bytes BLOB NOT NULL);",
        )
        .map_err(|e| at(&e))?;
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
        let path = spill._file.0.clone();
        assert!(path.exists(), "a file where it was asked for");
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
        drop(spill);
        assert!(!path.exists(), "removed with the spill");
        Ok(())
    }
}
