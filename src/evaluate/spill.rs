//! The spill: mapped attributes of new users, kept on disk between evaluation and
//! apply. A cycle that creates a hundred thousand users would otherwise hold every
//! one's attributes from the first evaluation to the last create (the larger part
//! of its memory). What the plan decides on — the user's id, its matching values,
//! its active flag — stays in memory; the rest is read back when the create is
//! sent.
//!
//! A private temporary SQLite database: SQLite unlinks its file as it creates it
//! and keeps the first pages in its cache, so a small cycle never touches the
//! disk. Scratch, not state: it lives as long as the cycle's plan.

use crate::error::Error;
use crate::scim::attribute::{Attrs, REDACTED};
use rusqlite::{Connection, OptionalExtension};
use std::num::NonZeroI64;

fn failed(e: impl std::fmt::Display) -> Error {
    Error::Spill(e.to_string())
}

/// Attributes put aside until they are sent.
pub struct Spill {
    conn: Connection,
    count: std::cell::Cell<usize>,
    /// A put failed (a full temporary folder): the rest stays in memory.
    broken: std::cell::Cell<bool>,
}

impl std::fmt::Debug for Spill {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Spill({} put aside)", self.count.get())
    }
}

impl Spill {
    pub fn open() -> Result<Spill, Error> {
        // An empty name: a private temporary database, deleted when closed.
        // Each put commits on its own: a put that fails (a full disk) may roll
        // back its whole transaction, and rows handed out must stay readable.
        // Nothing is synced: the file dies with the connection anyway.
        let conn = Connection::open("").map_err(failed)?;
        conn.execute_batch(
            "PRAGMA journal_mode = MEMORY; PRAGMA synchronous = OFF;
             CREATE TABLE attrs (row INTEGER PRIMARY KEY, json BLOB NOT NULL);",
        )
        .map_err(failed)?;
        Ok(Spill {
            conn,
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

    /// Puts attributes aside; the row (never 0) reads them back.
    pub fn put(&self, attrs: &Attrs) -> Result<NonZeroI64, Error> {
        let json = serde_json::to_vec(attrs)?;
        self.conn
            .prepare_cached("INSERT INTO attrs (json) VALUES (?1)")
            .and_then(|mut s| s.execute([json]))
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
        let json: Option<Vec<u8>> = self
            .conn
            .prepare_cached("SELECT json FROM attrs WHERE row = ?1")
            .and_then(|mut s| s.query_row([row.get()], |r| r.get(0)).optional())
            .map_err(failed)?;
        let json = json.ok_or_else(|| failed(format!("row {row} is missing")))?;
        Ok(serde_json::from_slice(&json)?)
    }

    /// A spill that fills up after `pages` pages, as a full disk would.
    #[cfg(test)]
    pub fn limited(pages: u32) -> Result<Spill, Error> {
        let spill = Spill::open()?;
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
        let spill = Spill::open()?;
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
        let (ra, rb) = (spill.put(&a)?, spill.put(&b)?);
        assert_eq!(spill.get(rb)?, b);
        assert_eq!(spill.get(ra)?, a);
        assert_eq!(spill.count(), 2);
        assert!(NonZeroI64::new(rb.get() + 1).is_some_and(|r| spill.get(r).is_err()));
        let small = kept(&a, &["userName".to_string()]);
        assert_eq!(
            small.keys().map(|k| k.as_ref()).collect::<Vec<_>>(),
            ["userName"]
        );
        let secret: Attrs = [("password", json!("x")), (REDACTED, json!(["password"]))]
            .into_iter()
            .collect();
        assert!(!Spill::takes(&secret) && Spill::takes(&a));
        Ok(())
    }
}
