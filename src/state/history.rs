//! What happened, as the state remembers it: the provisioning log (one entry per
//! action, Entra's columns) and the cycle history. Every column with a closed set
//! of values is an enum here, turned into text only at the SQL boundary, so a
//! filter or a count can never misspell one.

use super::{State, Writer};
use crate::error::Error;
use rusqlite::types::{FromSql, FromSqlError, FromSqlResult, ToSql, ToSqlOutput, ValueRef};
use rusqlite::{params, OptionalExtension};
use serde::{Deserialize, Serialize};

/// Implements the text form of a closed set of values: `as_str`, `parse`, every
/// value listed (for help texts), Display, and the SQL conversions.
macro_rules! text_enum {
    ($name:ident { $($variant:ident => $text:literal),+ $(,)? }) => {
        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),+];
            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }
            pub fn parse(s: &str) -> Option<$name> {
                match s { $($text => Some($name::$variant),)+ _ => None }
            }
        }
        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.pad(self.as_str())
            }
        }
        impl ToSql for $name {
            fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
                Ok(ToSqlOutput::from(self.as_str()))
            }
        }
        impl FromSql for $name {
            fn column_result(v: ValueRef<'_>) -> FromSqlResult<$name> {
                let s = v.as_str()?;
                $name::parse(s).ok_or_else(|| {
                    FromSqlError::Other(format!("unknown {} {s:?}", stringify!($name)).into())
                })
            }
        }
    };
}

/// What a log entry records being done (Entra's "action" column).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LogAction {
    Create,
    Adopt,
    Update,
    Enable,
    Disable,
    Delete,
    AddMembers,
    RemoveMembers,
    /// A link dropped without a request (the object is no longer managed).
    Forget,
    Skip,
    /// Reading the directory record failed.
    Import,
    /// The scripts failed on the record.
    Evaluate,
    /// Destructive actions held by the gate.
    StagedDisable,
    StagedDelete,
    StagedUpdate,
    StagedAdopt,
}

text_enum!(LogAction {
    Create => "create",
    Adopt => "adopt",
    Update => "update",
    Enable => "enable",
    Disable => "disable",
    Delete => "delete",
    AddMembers => "add_members",
    RemoveMembers => "remove_members",
    Forget => "forget",
    Skip => "skip",
    Import => "import",
    Evaluate => "evaluate",
    StagedDisable => "staged_disable",
    StagedDelete => "staged_delete",
    StagedUpdate => "staged_update",
    StagedAdopt => "staged_adopt",
});

impl LogAction {
    /// The entry for this action held by the gate (only destructive ones are).
    pub fn staged(self) -> LogAction {
        match self {
            LogAction::Disable => LogAction::StagedDisable,
            LogAction::Delete => LogAction::StagedDelete,
            LogAction::Update => LogAction::StagedUpdate,
            LogAction::Adopt => LogAction::StagedAdopt,
            other => other,
        }
    }
}

/// The outcome of one action in the provisioning log (Entra's status column).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LogStatus {
    Success,
    Failure,
    /// Not run, with the reason (a switch, a failed look-up, the target failing).
    Skipped,
    /// Held by the gate until released.
    Staged,
}

text_enum!(LogStatus {
    Success => "success",
    Failure => "failure",
    Skipped => "skipped",
    Staged => "staged",
});

/// The kinds of cycle, as Entra names them (and `provision` on demand).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CycleKind {
    /// No watermark yet: everything is read and matched.
    Initial,
    /// Only what changed since the watermark.
    Incremental,
    /// Everything re-read, every linked object compared with the target.
    Full,
    /// One object provisioned by hand (`scimsync provision`).
    OnDemand,
}

text_enum!(CycleKind {
    Initial => "initial",
    Incremental => "incremental",
    Full => "full",
    OnDemand => "on-demand",
});

/// How a cycle ended; `Running` until it does (a cycle that stays running crashed).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CycleStatus {
    Running,
    Success,
    /// Some actions failed.
    Partial,
    /// Destructive actions were held by the gate.
    Held,
    /// The target failed as a whole; the cycle was skipped.
    Quarantine,
    /// Stopped by a signal between batches.
    Interrupted,
}

text_enum!(CycleStatus {
    Running => "running",
    Success => "success",
    Partial => "partial",
    Held => "held",
    Quarantine => "quarantine",
    Interrupted => "interrupted",
});

/// One modified property, old → new, as Entra's provisioning log shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Modified {
    pub name: String,
    pub old: serde_json::Value,
    pub new: serde_json::Value,
}

/// One provisioning log entry.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LogEntry {
    pub id: i64,
    pub cycle: i64,
    pub at: i64,
    /// user, group, or assignment (a record that names no object).
    pub kind: String,
    pub source_id: String,
    pub target_id: Option<String>,
    pub display: String,
    pub action: LogAction,
    pub status: LogStatus,
    pub reason: String,
    pub modified: Vec<Modified>,
    pub error: Option<String>,
}

/// Filters for `scimsync logs`.
#[derive(Debug, Clone, Default)]
pub struct LogQuery {
    pub status: Option<LogStatus>,
    pub action: Option<LogAction>,
    pub object: Option<String>,
    pub cycle: Option<i64>,
    pub since: Option<i64>,
    pub limit: Option<usize>,
}

/// A cycle as recorded.
#[derive(Debug, Clone, Serialize)]
pub struct Cycle {
    pub id: i64,
    pub kind: CycleKind,
    pub started_at: i64,
    pub finished_at: Option<i64>,
    pub status: CycleStatus,
    pub summary: serde_json::Value,
}

impl State {
    pub fn start_cycle(&mut self, kind: CycleKind) -> Result<i64, Error> {
        self.conn.execute(
            "INSERT INTO cycles(kind, started_at, status, summary) VALUES (?1, ?2, ?3, '{}')",
            params![kind, crate::clock::now(), CycleStatus::Running],
        )?;
        Ok(self.conn.last_insert_rowid())
    }

    pub fn finish_cycle(
        &mut self,
        id: i64,
        status: CycleStatus,
        summary: &serde_json::Value,
    ) -> Result<(), Error> {
        self.conn.execute(
            "UPDATE cycles SET finished_at = ?2, status = ?3, summary = ?4 WHERE id = ?1",
            params![id, crate::clock::now(), status, summary.to_string()],
        )?;
        Ok(())
    }

    /// Forgets provisioning-log entries and cycle rows older than `before`
    /// (seconds since the epoch), the newest cycle always kept, in small
    /// transactions so a daemon's reader is never kept waiting long; then gives
    /// the freed pages back to the file system. Returns the rows removed.
    pub fn prune(&mut self, before: i64) -> Result<(usize, usize), Error> {
        const CHUNK: i64 = 5_000;
        // Entries are written in time order: the oldest tells whether there is
        // anything to do, without a scan of the whole log.
        let oldest = || -> Result<Option<i64>, Error> {
            Ok(self
                .conn
                .query_row("SELECT at FROM log ORDER BY id LIMIT 1", [], |r| r.get(0))
                .optional()?)
        };
        let mut log = 0;
        while oldest()?.is_some_and(|at| at < before) {
            log += self.conn.execute(
                "DELETE FROM log WHERE id IN (SELECT id FROM log ORDER BY id LIMIT ?2) AND at < ?1",
                params![before, CHUNK],
            )?;
        }
        let cycles = self.conn.execute(
            "DELETE FROM cycles WHERE started_at < ?1 AND id < (SELECT max(id) FROM cycles)",
            [before],
        )?;
        if log + cycles > 0 {
            self.give_back_free_pages()?;
        }
        Ok((log, cycles))
    }

    /// Returns free pages to the file system. A state created before retention
    /// existed is switched to incremental vacuum once (a full `VACUUM`).
    fn give_back_free_pages(&mut self) -> Result<(), Error> {
        let mode: i64 = self
            .conn
            .query_row("PRAGMA auto_vacuum", [], |r| r.get(0))?;
        if mode != 2 {
            log::info!("state: switching to incremental vacuum (once, may take a while)");
            self.conn.pragma_update(None, "auto_vacuum", 2)?;
            self.conn.execute_batch("VACUUM")?;
        }
        // Each step of the pragma frees pages: it is stepped to its end.
        let mut stmt = self.conn.prepare("PRAGMA incremental_vacuum")?;
        let mut rows = stmt.query([])?;
        while rows.next()?.is_some() {}
        Ok(())
    }

    pub fn cycles(&self, limit: usize) -> Result<Vec<Cycle>, Error> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT id, kind, started_at, finished_at, status, summary FROM cycles ORDER BY id DESC LIMIT ?1",
        )?;
        let rows = stmt.query_map([limit as i64], |r| {
            Ok(Cycle {
                id: r.get(0)?,
                kind: r.get(1)?,
                started_at: r.get(2)?,
                finished_at: r.get(3)?,
                status: r.get(4)?,
                summary: serde_json::from_str(&r.get::<_, String>(5)?)
                    .unwrap_or(serde_json::Value::Null),
            })
        })?;
        Ok(rows.collect::<Result<Vec<_>, _>>()?)
    }

    pub fn logs(&self, q: &LogQuery) -> Result<Vec<LogEntry>, Error> {
        let mut sql = String::from(
            "SELECT id, cycle_id, at, kind, source_id, target_id, display, action, status, reason, modified, error FROM log WHERE 1=1",
        );
        let mut args: Vec<rusqlite::types::Value> = vec![];
        if let Some(s) = q.status {
            sql.push_str(" AND status = ?");
            args.push(s.as_str().to_string().into());
        }
        if let Some(a) = q.action {
            sql.push_str(" AND action = ?");
            args.push(a.as_str().to_string().into());
        }
        if let Some(o) = &q.object {
            sql.push_str(" AND (source_id = ? OR target_id = ? OR lower(display) = lower(?))");
            args.push(o.clone().into());
            args.push(o.clone().into());
            args.push(o.clone().into());
        }
        if let Some(c) = q.cycle {
            sql.push_str(" AND cycle_id = ?");
            args.push(c.into());
        }
        if let Some(t) = q.since {
            sql.push_str(" AND at >= ?");
            args.push(t.into());
        }
        sql.push_str(" ORDER BY id");
        if let Some(l) = q.limit {
            sql.push_str(&format!(" LIMIT {l}"));
        }
        let mut stmt = self.conn.prepare(&sql)?;
        let rows = stmt.query_map(rusqlite::params_from_iter(args), |r| {
            Ok(LogEntry {
                id: r.get(0)?,
                cycle: r.get(1)?,
                at: r.get(2)?,
                kind: r.get(3)?,
                source_id: r.get(4)?,
                target_id: r.get(5)?,
                display: r.get(6)?,
                action: r.get(7)?,
                status: r.get(8)?,
                reason: r.get(9)?,
                modified: serde_json::from_str(&r.get::<_, String>(10)?).unwrap_or_default(),
                error: r.get(11)?,
            })
        })?;
        Ok(rows.collect::<Result<Vec<_>, _>>()?)
    }
}

impl Writer<'_> {
    pub fn log(&self, e: &LogEntry) -> Result<(), Error> {
        let modified = serde_json::to_string(&e.modified)?;
        self.tx
            .prepare_cached(
                "INSERT INTO log(cycle_id, at, kind, source_id, target_id, display, action, status, reason, modified, error)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
            )?
            .execute(params![
                e.cycle,
                e.at,
                e.kind,
                e.source_id,
                e.target_id,
                e.display,
                e.action,
                e.status,
                e.reason,
                modified,
                e.error
            ])?;
        Ok(())
    }
}
