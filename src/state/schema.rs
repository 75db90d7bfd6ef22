//! Versioned schema migrations, tracked in SQLite's `user_version`.
//!
//! Each entry migrates from version i to i+1 and runs in its own transaction; a
//! state file from a newer scimsync is refused rather than half-understood.

use rusqlite::Connection;

const MIGRATIONS: &[&str] = &[
    // 1: links, memberships, meta, cycles, log, escrow
    "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
     CREATE TABLE links (
        kind TEXT NOT NULL, source_id TEXT NOT NULL, target_id TEXT NOT NULL,
        display TEXT NOT NULL, attrs TEXT NOT NULL, hash TEXT NOT NULL,
        active INTEGER NOT NULL DEFAULT 1, disabled_reason TEXT,
        created_at INTEGER NOT NULL, updated_at INTEGER NOT NULL,
        PRIMARY KEY (kind, source_id));
     CREATE UNIQUE INDEX links_target ON links(kind, target_id);
     CREATE TABLE memberships (group_id TEXT NOT NULL, user_id TEXT NOT NULL, PRIMARY KEY (group_id, user_id));
     CREATE INDEX memberships_user ON memberships(user_id);
     CREATE TABLE cycles (id INTEGER PRIMARY KEY, kind TEXT NOT NULL, started_at INTEGER NOT NULL,
        finished_at INTEGER, status TEXT NOT NULL, summary TEXT NOT NULL);
     CREATE TABLE log (id INTEGER PRIMARY KEY, cycle_id INTEGER NOT NULL, at INTEGER NOT NULL,
        kind TEXT NOT NULL, source_id TEXT NOT NULL, target_id TEXT, display TEXT NOT NULL,
        action TEXT NOT NULL, status TEXT NOT NULL, reason TEXT NOT NULL, modified TEXT NOT NULL,
        error TEXT);
     CREATE INDEX log_cycle ON log(cycle_id);
     CREATE INDEX log_object ON log(source_id);
     CREATE TABLE escrow (kind TEXT NOT NULL, source_id TEXT NOT NULL, attempts INTEGER NOT NULL,
        next_at INTEGER NOT NULL, last_error TEXT NOT NULL, PRIMARY KEY (kind, source_id));",
    // 2: objects whose planned action did not complete (held, withheld, kept while
    // something was unknown, re-created): re-evaluated every cycle until it does.
    // `attrs`: what a create whose answer was lost sent (the target may hold it).
    "CREATE TABLE pending (kind TEXT NOT NULL, source_id TEXT NOT NULL, reason TEXT NOT NULL,
        since INTEGER NOT NULL, attrs TEXT, PRIMARY KEY (kind, source_id));",
    // 3: a state that stays small (issue 17): links and memberships are stored in
    // their primary key's b-tree (WITHOUT ROWID: no second copy of the ids), and a
    // link's hash as its 32 bytes instead of 64 hex characters.
    "CREATE TABLE links_v3 (
        kind TEXT NOT NULL, source_id TEXT NOT NULL, target_id TEXT NOT NULL,
        display TEXT NOT NULL, attrs TEXT NOT NULL, hash BLOB NOT NULL,
        active INTEGER NOT NULL DEFAULT 1, disabled_reason TEXT,
        created_at INTEGER NOT NULL, updated_at INTEGER NOT NULL,
        PRIMARY KEY (kind, source_id)) WITHOUT ROWID;
     INSERT INTO links_v3 SELECT kind, source_id, target_id, display, attrs,
        coalesce(unhex(hash), CAST(hash AS BLOB)), active, disabled_reason, created_at, updated_at
        FROM links;
     DROP TABLE links;
     ALTER TABLE links_v3 RENAME TO links;
     CREATE UNIQUE INDEX links_target ON links(kind, target_id);
     CREATE TABLE memberships_v3 (group_id TEXT NOT NULL, user_id TEXT NOT NULL,
        PRIMARY KEY (group_id, user_id)) WITHOUT ROWID;
     INSERT INTO memberships_v3 SELECT group_id, user_id FROM memberships;
     DROP TABLE memberships;
     ALTER TABLE memberships_v3 RENAME TO memberships;
     CREATE INDEX memberships_user ON memberships(user_id);",
    // 4: leavers in their grace period before removal (issue 20): since when,
    // and why (deleted from the directory, out of scope).
    "CREATE TABLE leavers (source_id TEXT PRIMARY KEY, since INTEGER NOT NULL,
        reason TEXT NOT NULL) WITHOUT ROWID;",
];

/// The schema version this build writes.
pub const VERSION: i64 = MIGRATIONS.len() as i64;

/// Reads `user_version` and refuses a newer one.
pub fn check_version(conn: &Connection) -> Result<i64, String> {
    let v: i64 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .map_err(|e| {
            if e.to_string().contains("not a database") {
                "is not a scimsync state file (not SQLite)".to_string()
            } else {
                e.to_string()
            }
        })?;
    if v > VERSION {
        return Err(format!(
            "was written by a newer scimsync (schema {v}, this build knows up to {VERSION}); upgrade scimsync"
        ));
    }
    Ok(v)
}

/// Brings the schema up to `VERSION`.
pub fn migrate(conn: &mut Connection) -> Result<(), String> {
    let current = check_version(conn)?;
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(current as usize) {
        let tx = conn.transaction().map_err(|e| e.to_string())?;
        tx.execute_batch(sql)
            .map_err(|e| format!("migration to schema {}: {e}", i + 1))?;
        tx.pragma_update(None, "user_version", (i + 1) as i64)
            .map_err(|e| e.to_string())?;
        tx.commit().map_err(|e| e.to_string())?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A state written before schema 3 keeps every link, hash and membership.
    #[test]
    fn compact_schema_keeps_what_an_older_state_holds() -> Result<(), rusqlite::Error> {
        let mut conn = Connection::open_in_memory()?;
        for (i, sql) in MIGRATIONS[..2].iter().enumerate() {
            conn.execute_batch(sql)?;
            conn.pragma_update(None, "user_version", (i + 1) as i64)?;
        }
        let hash = "0123456789abcdef".repeat(4);
        conn.execute(
            "INSERT INTO links VALUES ('user', 'u1', 't1', 'a@x.com', '{}', ?1, 0, 'disabled', 1, 2)",
            [&hash],
        )?;
        conn.execute("INSERT INTO memberships VALUES ('g1', 'u1')", [])?;
        migrate(&mut conn).map_err(rusqlite::Error::InvalidParameterName)?;
        let row: (String, String, bool, Option<String>) = conn.query_row(
            "SELECT target_id, lower(hex(hash)), active, disabled_reason FROM links WHERE kind = 'user' AND source_id = 'u1'",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
        )?;
        assert_eq!(row, ("t1".into(), hash, false, Some("disabled".into())));
        let member: String = conn.query_row(
            "SELECT user_id FROM memberships WHERE group_id = 'g1'",
            [],
            |r| r.get(0),
        )?;
        assert_eq!(member, "u1");
        assert_eq!(check_version(&conn).ok(), Some(VERSION));
        Ok(())
    }
}
