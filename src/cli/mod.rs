//! The command line: parsing (clap) and one function per command.
//!
//! Each command loads what it needs, calls into the library, prints, and returns an
//! exit code; `main` only maps errors to codes.

#[cfg(feature = "emulators")]
mod emulate;

use crate::config::Settings;
use crate::cycle::{self, Runtime};
use crate::error::{exit, Error, InputError};
use crate::model::ObjectKind;
use crate::plan::{Op, Plan};
use crate::script::{defaults, Scripts};
use crate::state::{LogQuery, State};
use clap::{Parser, Subcommand, ValueEnum};
use std::path::{Path, PathBuf};

#[derive(Parser, Debug)]
#[command(
    name = "scimsync",
    version,
    about = "Keep Dropbox (and any SCIM 2.0 app) in step with Entra ID or a directory file"
)]
pub struct Cli {
    /// Config file (default: scimsync.toml in the working directory)
    #[arg(short = 'c', long = "config", global = true)]
    pub config: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

// Parsed once per run: the size of the emulator options does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand, Debug)]
pub enum Command {
    /// The whole story with nothing set up: emulators, initial and incremental cycles
    #[cfg(feature = "emulators")]
    Demo,
    /// Write a starter scimsync.toml, scripts/ and a sample directory
    Init { dir: Option<PathBuf> },
    /// Dropbox OAuth 2 (authorization code + PKCE, offline access): prints the
    /// address to open, reads the code, writes the refresh token file (0600)
    Authorize {
        /// Authorize the [legacy] integration instead of [target]
        #[arg(long)]
        legacy: bool,
        /// The code Dropbox showed (default: read from stdin)
        #[arg(long)]
        code: Option<String>,
    },
    /// Validate config, compile and dry-run scripts, test source and target connections
    Check,
    /// Dry run of the next cycle: every action with its reason and whether the gate
    /// holds it; reads the target, writes nothing
    Plan {
        #[arg(long)]
        json: bool,
        /// Plan a full cycle (compare with everything the target holds)
        #[arg(long)]
        full: bool,
        /// Save the plan with a fingerprint of what it was made from, for
        /// `sync --plan FILE`
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
        /// Plan for the legacy target even though `migrate apply` retired it
        #[arg(long)]
        force_legacy: bool,
    },
    /// Run one cycle now
    Sync {
        /// Re-evaluate everything and repair drift in the target
        #[arg(long)]
        full: bool,
        /// Run the legacy target even though `migrate apply` retired it
        #[arg(long)]
        force_legacy: bool,
        /// Apply exactly this saved plan (`plan --out`), or refuse if anything it
        /// was made from has moved
        #[arg(long, value_name = "FILE", conflicts_with = "full")]
        plan: Option<PathBuf>,
    },
    /// Legacy Dropbox integration → SCIM integration
    Migrate {
        #[command(subcommand)]
        step: MigrateStep,
    },
    /// Daemon: a cycle every `interval`
    Run,
    /// What the scripts make of one source object; writes nothing
    Preview { id: String },
    /// Provision one user or group now (by id or userPrincipalName), showing each step
    Provision { id: String },
    /// A self-contained HTML page: cycle history charts, holds and escrows
    Report {
        #[arg(long)]
        html: PathBuf,
        /// How many recent cycles to chart
        #[arg(long, default_value_t = 50)]
        cycles: usize,
    },
    /// The provisioning log
    Logs {
        #[arg(long)]
        status: Option<String>,
        #[arg(long)]
        action: Option<String>,
        #[arg(long)]
        object: Option<String>,
        #[arg(long)]
        cycle: Option<i64>,
        /// Only entries newer than this (e.g. 2h, 7d)
        #[arg(long)]
        since: Option<String>,
        #[arg(long, conflicts_with = "csv")]
        json: bool,
        #[arg(long)]
        csv: bool,
    },
    /// Sync details: last cycle, counts, escrows, holds
    Status {
        #[arg(long)]
        json: bool,
    },
    /// Entra's "restart provisioning"
    Restart {
        #[arg(long, value_enum, default_value = "watermark")]
        scope: RestartScope,
    },
    /// Release destructive actions held by the deletion threshold or shrink guard, once
    AllowDeletes,
    /// The loopback emulators
    #[cfg(feature = "emulators")]
    Emulate(emulate::EmulateCmd),
    /// Read the live target's users, groups and memberships (and, with [legacy],
    /// the Business API members) read-only into a file `emulate dropbox --load`
    /// serves
    Snapshot {
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
    },
}

#[derive(Subcommand, Debug)]
pub enum MigrateStep {
    /// Per member and group: adopt, conflict or unmanaged; writes nothing
    Plan {
        #[arg(long)]
        json: bool,
    },
    /// Writes the SCIM links and retires the legacy integration; sends nothing to Dropbox
    Apply,
}

#[derive(ValueEnum, Clone, Copy, Debug)]
pub enum RestartScope {
    Watermark,
    Escrows,
    Quarantine,
    /// Undo `migrate apply` (the legacy integration may run again)
    Migration,
    Full,
}

fn config_path(cli: &Cli) -> PathBuf {
    cli.config
        .clone()
        .unwrap_or_else(|| PathBuf::from("scimsync.toml"))
}

fn load(cli: &Cli) -> Result<Settings, Error> {
    Ok(Settings::load(&config_path(cli))?)
}

/// Runs the parsed command; returns the exit code.
pub fn run(cli: Cli) -> Result<i32, Error> {
    match &cli.command {
        #[cfg(feature = "emulators")]
        Command::Demo => crate::demo::run(),
        Command::Init { dir } => init(dir.as_deref().unwrap_or(Path::new("."))),
        Command::Check => check(&load(&cli)?),
        Command::Authorize { legacy, code } => {
            crate::authorize::run(&load(&cli)?, *legacy, code.as_deref())
        }
        Command::Plan {
            json,
            full,
            out,
            force_legacy,
        } => plan(&load(&cli)?, *json, *full, out.as_deref(), *force_legacy),
        Command::Migrate { step } => migrate(&load(&cli)?, step),
        Command::Sync {
            full,
            force_legacy,
            plan,
        } => {
            let settings = load(&cli)?;
            let reviewed = match plan {
                Some(p) => Some(crate::review::SavedPlan::read(p)?),
                None => None,
            };
            if !settings.sync.enabled {
                println!(
                    "provisioning is off ([sync] enabled = false in {}); nothing done",
                    settings.config_path.display()
                );
                return Ok(exit::OK);
            }
            let mut rt = Runtime::open(settings)?;
            rt.force_legacy = *force_legacy;
            let full = reviewed.as_ref().map(|r| r.full).unwrap_or(*full);
            let report = cycle::sync_reviewed(&mut rt, full, reviewed.as_ref())?;
            println!(
                "cycle {} ({}) in {:.2?}",
                report.id, report.kind, report.duration
            );
            for l in report.summary_lines() {
                println!("  {l}");
            }
            if let Some(e) = &report.outcome.first_error {
                println!("  first error: {e}");
            }
            if !report.requests.is_empty() {
                let r: Vec<String> = report
                    .requests
                    .iter()
                    .map(|(k, v)| format!("{k} {v}"))
                    .collect();
                println!("  target requests: {}", r.join(", "));
            }
            Ok(report.exit_code())
        }
        Command::Run => crate::daemon::run(load(&cli)?),
        Command::Preview { id } => preview(&load(&cli)?, id),
        Command::Provision { id } => provision(load(&cli)?, id),
        Command::Report { html, cycles } => {
            let settings = load(&cli)?;
            let state = State::open_read_only(&settings.state_path)?;
            let page = crate::report::html(&state, &settings, *cycles)?;
            crate::private::write(html, page.as_bytes())
                .map_err(|e| Error::Runtime(format!("{}: {e}", html.display())))?;
            println!("wrote {}", html.display());
            Ok(exit::OK)
        }
        Command::Logs {
            status,
            action,
            object,
            cycle,
            since,
            json,
            csv,
        } => {
            let settings = load(&cli)?;
            let state = State::open_read_only(&settings.state_path)?;
            let since = match since {
                Some(s) => Some(
                    crate::clock::now()
                        - crate::config::parse_duration(s)
                            .map_err(|m| InputError::Usage(format!("--since: {m}")))?
                            .as_secs() as i64,
                ),
                None => None,
            };
            let entries = state.logs(&LogQuery {
                status: status.clone(),
                action: action.clone(),
                object: object.clone(),
                cycle: *cycle,
                since,
                limit: None,
            })?;
            print_logs(&entries, *json, *csv);
            Ok(exit::OK)
        }
        Command::Status { json } => status(&load(&cli)?, *json),
        Command::Snapshot { out } => {
            let settings = load(&cli)?;
            let taken = crate::snapshot::take(&settings)?;
            crate::snapshot::write(&taken, out)?;
            println!(
                "wrote {}: {} users, {} groups{}",
                out.display(),
                taken.users.len(),
                taken.groups.len(),
                taken
                    .legacy
                    .as_ref()
                    .map(|l| format!(", {} Business API members", l.members.len()))
                    .unwrap_or_default()
            );
            Ok(exit::OK)
        }
        Command::Restart { scope } => {
            let settings = load(&cli)?;
            let mut state = State::open(&settings.state_path)?;
            let s = match scope {
                RestartScope::Watermark => "watermark",
                RestartScope::Escrows => "escrows",
                RestartScope::Quarantine => "quarantine",
                RestartScope::Migration => "migration",
                RestartScope::Full => "full",
            };
            state.restart(s)?;
            println!(
                "restarted ({s}); the next cycle is {}",
                cycle::next_kind(&state, false)?
            );
            Ok(exit::OK)
        }
        Command::AllowDeletes => {
            let settings = load(&cli)?;
            let state = State::open(&settings.state_path)?;
            match state.meta("held")? {
                Some(n) => {
                    state.set_meta("allow_deletes_once", Some("1"))?;
                    println!("{n} held destructive action(s) will run in the next cycle (once)");
                }
                None => println!("nothing is held"),
            }
            Ok(exit::OK)
        }
        #[cfg(feature = "emulators")]
        Command::Emulate(cmd) => emulate::run(cmd),
    }
}

fn plan(
    settings: &Settings,
    json: bool,
    full: bool,
    out: Option<&Path>,
    force_legacy: bool,
) -> Result<i32, Error> {
    let scripts = Scripts::load(&settings.scripts_dir)?;
    let mut source = crate::source::open(&settings.source)?;
    let mut target = crate::targets::open(&settings.target)?;
    let state = State::open_read_only(&settings.state_path)?;
    cycle::refuse_retired_legacy(settings, &state, force_legacy)?;
    let kind = cycle::next_kind(&state, full)?;
    let snapshot = cycle::read(source.as_mut(), &state, &scripts, settings, kind)?;
    let mut saved = crate::review::SavedPlan {
        format: crate::review::FORMAT,
        cycle: kind.to_string(),
        full,
        unchanged: snapshot.unchanged,
        fingerprint: None,
        held: None,
        actions: vec![],
    };
    if snapshot.unchanged {
        if let Some(path) = out {
            saved.write(path)?;
        }
        if json {
            println!(
                "{}",
                serde_json::json!({"cycle": kind, "unchanged": true, "actions": [], "held": null})
            );
        } else {
            println!("plan for the next cycle ({kind}): no change in the directory or the scripts; nothing to do");
        }
        return Ok(exit::OK);
    }
    let before = target.request_counts();
    let prepared = cycle::prepare(
        cycle::Parts {
            scripts: &scripts,
            state: &state,
            target: target.as_mut(),
            settings,
        },
        snapshot,
        full,
        out.is_some(),
    )?;
    let reads = requests_since(&before, &target.request_counts());
    let plan = &prepared.plan;
    saved.fingerprint = prepared.fingerprint.clone();
    saved.held = plan.held.clone();
    saved.actions = plan.actions.iter().map(|a| a.document()).collect();
    if let Some(path) = out {
        saved.write(path)?;
    }
    let unnamed = || prepared.snapshot.errors.iter().filter(|e| e.id.is_none());
    if json {
        let v = serde_json::json!({"cycle": kind, "actions": saved.actions,
            "destructive": plan.destructive_count(), "deletion_threshold": settings.safety.deletion_threshold,
            "held": plan.held,
            "target_requests": reads,
            "source_errors": unnamed().map(|e| serde_json::json!({"kind": e.record.as_str(), "object": e.object, "error": e.message})).collect::<Vec<_>>()});
        println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
    } else {
        print_plan(plan, kind);
        for e in unnamed() {
            println!(
                "  {:<14} {:<5} {:<40} {}",
                "invalid",
                e.record.as_str(),
                e.object,
                e.message
            );
        }
        let r: Vec<String> = reads.iter().map(|(k, v)| format!("{k} {v}")).collect();
        if !r.is_empty() {
            println!("  target reads: {}", r.join(", "));
        }
        if let Some(path) = out {
            println!(
                "  saved to {}: `scimsync sync --plan {}` applies exactly this plan",
                path.display(),
                path.display()
            );
        }
    }
    Ok(exit::OK)
}

/// Requests sent between two readings of a target's counters.
fn requests_since(
    before: &std::collections::BTreeMap<String, u64>,
    after: &std::collections::BTreeMap<String, u64>,
) -> std::collections::BTreeMap<String, u64> {
    after
        .iter()
        .map(|(k, v)| (k.clone(), v - before.get(k).copied().unwrap_or(0)))
        .filter(|(_, v)| *v > 0)
        .collect()
}

fn print_plan(plan: &Plan, kind: &str) {
    let mut counts: Vec<(Op, usize)> = vec![];
    for a in &plan.actions {
        match counts.iter_mut().find(|(o, _)| *o == a.op) {
            Some((_, n)) => *n += 1,
            None => counts.push((a.op, 1)),
        }
    }
    let summary: Vec<String> = counts
        .iter()
        .map(|(o, n)| format!("{n} {}", o.as_str()))
        .collect();
    println!(
        "plan for the next cycle ({kind}): {} action(s){}",
        plan.actions.len(),
        if summary.is_empty() {
            String::new()
        } else {
            format!(": {}", summary.join(", "))
        }
    );
    if let Some(why) = &plan.held {
        println!("  ! held by the gate: {why}; `scimsync allow-deletes` releases them once");
    }
    for a in &plan.actions {
        let op = if a.held {
            format!("{} (held)", a.op.as_str())
        } else {
            a.op.as_str().to_string()
        };
        let mut line = format!(
            "  {:<14} {:<5} {:<40} {}",
            op,
            a.kind.as_str(),
            a.display,
            a.reason
        );
        for c in &a.changes {
            let old = if c.old.get("$hash").is_some() {
                serde_json::Value::String("[Redact]".into())
            } else {
                crate::scim::attribute::shown(&a.attrs, &c.path, &c.old)
            };
            let new = crate::scim::attribute::shown(&a.attrs, &c.path, &c.new);
            line.push_str(&format!(
                "\n  {:<61}   {}: {} → {}",
                "",
                c.path,
                show(&old),
                show(&new)
            ));
        }
        if !a.members.is_empty() && a.members.len() <= 10 {
            line.push_str(&format!(" [{}]", a.members.join(", ")));
        }
        println!("{line}");
    }
}

fn show(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::Null => "(none)".into(),
        other => other.to_string(),
    }
}

fn print_logs(entries: &[crate::state::LogEntry], json: bool, csv: bool) {
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(entries).unwrap_or_default()
        );
        return;
    }
    if csv {
        println!(
            "id,cycle,time,kind,source_id,target_id,display,action,status,reason,modified,error"
        );
        for e in entries {
            let modified: Vec<String> = e
                .modified
                .iter()
                .map(|m| format!("{}: {} -> {}", m.name, show(&m.old), show(&m.new)))
                .collect();
            let row = [
                e.id.to_string(),
                e.cycle.to_string(),
                crate::clock::rfc3339(e.at),
                e.kind.clone(),
                e.source_id.clone(),
                e.target_id.clone().unwrap_or_default(),
                e.display.clone(),
                e.action.clone(),
                e.status.clone(),
                e.reason.clone(),
                modified.join("; "),
                e.error.clone().unwrap_or_default(),
            ];
            let cells: Vec<String> = row.iter().map(|c| csv_cell(c)).collect();
            println!("{}", cells.join(","));
        }
        return;
    }
    for e in entries {
        println!(
            "{}  cycle {:<4} {:<15} {:<8} {:<5} {}  {}",
            crate::clock::rfc3339(e.at),
            e.cycle,
            e.action,
            e.status,
            e.kind,
            e.display,
            e.reason
        );
        for m in &e.modified {
            println!("      {}: {} → {}", m.name, show(&m.old), show(&m.new));
        }
        if let Some(err) = &e.error {
            println!("      error: {err}");
        }
    }
}

fn csv_cell(s: &str) -> String {
    if s.contains([',', '"', '\n']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

fn status(settings: &Settings, json: bool) -> Result<i32, Error> {
    let state = State::open_read_only(&settings.state_path)?;
    let cycles = state.cycles(50)?;
    let (users, active, groups) = state.link_counts()?;
    let escrows = state.escrows()?;
    let pending = state.pending()?;
    let held = state.meta("held")?;
    let next = cycle::next_kind(&state, false)?;
    let last = cycles.first();
    let quarantine = cycle::quarantine_state(&state)?;
    let next_at = state
        .meta("next_cycle_at")?
        .and_then(|t| t.parse::<i64>().ok());
    if json {
        let v = serde_json::json!({
            "state": settings.state_path,
            "enabled": settings.sync.enabled,
            "last_cycle": last,
            "next_cycle": next,
            "next_cycle_at": next_at.map(crate::clock::rfc3339),
            "quarantine": quarantine,
            "provisioned": {"users": users, "active_users": active, "groups": groups},
            "escrows": escrows,
            "pending": pending,
            "held": held.as_deref().and_then(|h| h.parse::<u64>().ok()),
        });
        println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
        return Ok(exit::OK);
    }
    println!("state: {}", settings.state_path.display());
    match last {
        Some(c) => {
            let dur = c
                .finished_at
                .map(|f| format!(", took {} s", f - c.started_at))
                .unwrap_or_else(|| ", did not finish".into());
            println!(
                "last cycle: #{} ({}) started {}, {}{}",
                c.id,
                c.kind,
                crate::clock::rfc3339(c.started_at),
                c.status,
                dur
            );
            if let Some(actions) = c.summary.get("actions").and_then(|a| a.as_object()) {
                for (k, v) in actions {
                    println!("  {k:<28} {v}");
                }
            }
        }
        None => println!("last cycle: none yet"),
    }
    if !settings.sync.enabled {
        println!("provisioning is OFF ([sync] enabled = false); state is kept");
    }
    match next_at {
        Some(t) => println!(
            "next cycle: {next} at {} (interval {})",
            crate::clock::rfc3339(t),
            humantime(settings.interval)
        ),
        None => println!(
            "next cycle: {next}, interval {} (no daemon running)",
            humantime(settings.interval)
        ),
    }
    if let Some(q) = &quarantine {
        println!(
            "QUARANTINE since {}: {}",
            crate::clock::rfc3339(q.since),
            q.reason
        );
        println!("  cycles back off (up to once a day); the first healthy cycle ends it, or `scimsync restart --scope quarantine`");
    }
    let assigned = cycles
        .iter()
        .find_map(|c| c.summary.get("assigned").filter(|a| !a.is_null()).cloned());
    if let Some(a) = &assigned {
        println!(
            "in the directory: {} user(s) and {} group(s) assigned (as of the last full read)",
            a["users"], a["groups"]
        );
    }
    println!("provisioned: {users} user(s) ({active} active), {groups} group(s)");
    println!("escrowed: {} object(s) waiting for a retry", escrows.len());
    for e in escrows.iter().take(20) {
        println!(
            "  {} {} attempt {} next {}: {}",
            e.kind,
            e.source_id,
            e.attempts,
            crate::clock::rfc3339(e.next_at),
            e.last_error
        );
    }
    if !pending.is_empty() {
        println!(
            "pending: {} object(s) planned again every cycle until their action completes",
            pending.len()
        );
        for p in pending.iter().take(20) {
            println!(
                "  {} {} since {}: {}",
                p.kind.as_str(),
                p.source_id,
                crate::clock::rfc3339(p.since),
                p.reason
            );
        }
    }
    if let Some(h) = held {
        println!("held: {h} destructive action(s) over the deletion threshold or shrink guard; `scimsync allow-deletes` releases them");
    }
    Ok(exit::OK)
}

fn humantime(d: std::time::Duration) -> String {
    let s = d.as_secs();
    if s > 0 && s.is_multiple_of(3600) {
        format!("{}h", s / 3600)
    } else if s > 0 && s.is_multiple_of(60) {
        format!("{}m", s / 60)
    } else {
        format!("{:?}", d)
    }
}

fn preview(settings: &Settings, id: &str) -> Result<i32, Error> {
    let scripts = Scripts::load(&settings.scripts_dir)?;
    let mut source = crate::source::open(&settings.source)?;
    let state = State::open_read_only(&settings.state_path)?;
    let mut snapshot = source.read(&crate::source::ReadRequest::full())?;
    let (kind, source_id, display, record, assignment) = if let Some(u) = snapshot.find_user(id) {
        (
            ObjectKind::User,
            u.id.clone(),
            u.user_principal_name.clone(),
            u.record.clone(),
            u.assignment.clone(),
        )
    } else if let Some(g) = snapshot.find_group(id) {
        (
            ObjectKind::Group,
            g.id.clone(),
            g.display_name.clone(),
            g.record.clone(),
            g.assignment.clone(),
        )
    } else {
        return Err(InputError::Usage(format!(
            "{id}: no user or group with this id, userPrincipalName or displayName in {}",
            source.describe()
        ))
        .into());
    };
    println!("{} {display} ({source_id})", kind.as_str());
    println!("  assignment: {}", assignment.reason());
    let scope = match kind {
        ObjectKind::User => scripts.user_scope(&record),
        ObjectKind::Group => scripts.group_scope(&record),
    };
    let scope_file = scripts
        .scoping_file()
        .map(|p| p.display().to_string())
        .unwrap_or_else(|| "no scoping.rhai: every assigned object".into());
    match &scope {
        Ok((b, rules)) => {
            println!(
                "  scoping: {} ({scope_file})",
                if *b { "in scope" } else { "out of scope" }
            );
            for (name, ok) in rules {
                println!("    rule {name:?}: {ok}");
            }
            if let Some((name, _)) = rules.iter().rev().find(|(_, ok)| !ok).filter(|_| !b) {
                println!("    decided by rule {name:?}");
            }
        }
        Err(f) => println!("  scoping: error {f}"),
    }
    let mapped = match kind {
        ObjectKind::User => scripts.map_user(&record),
        ObjectKind::Group => scripts.map_group(&record),
    };
    let link = state.links(kind)?.remove(&source_id);
    match &link {
        Some(l) => println!(
            "  linked to target id {} ({})",
            l.target_id,
            if l.active { "active" } else { "disabled" }
        ),
        None => println!("  not provisioned by scimsync yet"),
    }
    let attrs = match mapped {
        Ok(a) => a,
        Err(f) => {
            println!("  mapping: error {f}");
            return Ok(exit::OK);
        }
    };
    // What the next cycle does with this object: the same pipeline as `sync`.
    let mut target = crate::targets::open(&settings.target)?;
    snapshot.changed = Some(std::iter::once(source_id.clone()).collect());
    cycle::widen_to_members(&mut snapshot);
    let prepared = cycle::prepare(
        cycle::Parts {
            scripts: &scripts,
            state: &state,
            target: target.as_mut(),
            settings,
        },
        snapshot,
        false,
        false,
    )?;
    let plan = one_object(prepared.plan, &source_id, settings, &prepared.links, &state)?;
    // The target's current object: by link, else the one the plan adopts.
    let adopted = plan
        .actions
        .iter()
        .find(|a| a.op == Op::Adopt)
        .and_then(|a| a.target_id.clone());
    let remote = match link.as_ref().map(|l| l.target_id.clone()).or(adopted) {
        Some(t) => target.get(kind, &t),
        None => Ok(None),
    };
    let remote = match remote {
        Ok(r) => r,
        Err(e) => {
            println!("  target: not read ({})", e.message);
            None
        }
    };
    println!(
        "  mapped attributes ({}):",
        scripts.mapping_file().display()
    );
    println!("    {:<40} {:<32} target now", "attribute", "mapped");
    for (k, v) in attrs.iter().filter(|(k, _)| !k.starts_with('$')) {
        let now = match &remote {
            Some(r) => crate::targets::remote_value(r, k)
                .map(|x| show(&crate::scim::attribute::shown(&attrs, k, &x)))
                .unwrap_or_else(|| "(none)".into()),
            None => "-".into(),
        };
        let differs = remote
            .as_ref()
            .map(|r| !v.is_null() && crate::targets::remote_value(r, k).as_ref() != Some(v))
            .unwrap_or(false);
        let mark = if differs { " *" } else { "" };
        println!(
            "    {k:<40} {:<32} {now}{mark}",
            show(&crate::scim::attribute::shown(&attrs, k, v))
        );
    }
    if remote.is_some() {
        println!("  (* differs in the target)");
    }
    if plan.actions.is_empty() {
        println!("  next cycle: nothing to do");
    }
    for a in &plan.actions {
        let held = a
            .held_reason
            .as_deref()
            .map(|h| format!(" (held: {h})"))
            .unwrap_or_default();
        println!("  next cycle: {} — {}{held}", a.op.as_str(), a.reason);
    }
    Ok(exit::OK)
}

fn migrate(settings: &Settings, step: &MigrateStep) -> Result<i32, Error> {
    let _lock = match step {
        MigrateStep::Plan { .. } => None,
        MigrateStep::Apply => Some(crate::state::StateLock::acquire(&settings.state_path)?),
    };
    let mut state = match step {
        MigrateStep::Plan { .. } => State::open_read_only(&settings.state_path)?,
        MigrateStep::Apply => State::open(&settings.state_path)?,
    };
    let plan = crate::migrate::plan(settings, &state)?;
    if let MigrateStep::Plan { json: true } = step {
        println!(
            "{}",
            serde_json::to_string_pretty(&plan).unwrap_or_default()
        );
        return Ok(exit::OK);
    }
    println!(
        "members: {} adopt, {} conflict, {} unmanaged; groups: {} adopt, {} conflict, {} unmanaged",
        plan.count("adopt"),
        plan.count("conflict"),
        plan.count("unmanaged"),
        plan.groups
            .iter()
            .filter(|g| matches!(g.outcome, crate::migrate::GroupOutcome::Adopt { .. }))
            .count(),
        plan.groups
            .iter()
            .filter(|g| matches!(g.outcome, crate::migrate::GroupOutcome::Conflict { .. }))
            .count(),
        plan.groups
            .iter()
            .filter(|g| matches!(g.outcome, crate::migrate::GroupOutcome::Unmanaged { .. }))
            .count(),
    );
    for m in &plan.members {
        match &m.outcome {
            crate::migrate::MemberOutcome::Adopt { user, rule, .. } => {
                println!("  adopt     {:<40} → {user} ({rule})", m.email)
            }
            crate::migrate::MemberOutcome::Conflict { reason, .. } => {
                println!("  conflict  {:<40} {reason}", m.email)
            }
            crate::migrate::MemberOutcome::Unmanaged { reason } => {
                println!("  unmanaged {:<40} {reason}", m.email)
            }
        }
    }
    for g in &plan.groups {
        match &g.outcome {
            crate::migrate::GroupOutcome::Adopt { rule, .. } => {
                println!("  adopt     group {} ({rule})", g.name)
            }
            crate::migrate::GroupOutcome::Conflict { reason, .. } => {
                println!("  conflict  group {}: {reason}", g.name)
            }
            crate::migrate::GroupOutcome::Unmanaged { reason } => {
                println!("  unmanaged group {}: {reason}", g.name)
            }
        }
    }
    if !plan.blocked.is_empty() {
        println!(
            "  {} directory object(s) will not be created until their conflict is resolved",
            plan.blocked.len()
        );
    }
    if let MigrateStep::Apply = step {
        let (written, unchanged) = crate::migrate::apply(&mut state, &plan)?;
        println!("applied: {written} link(s) written, {unchanged} already in place; the legacy integration is retired in {}", settings.state_path.display());
        println!("next: run `scimsync sync` with the SCIM target; nothing was sent to Dropbox");
    }
    Ok(exit::OK)
}

/// On-demand provisioning of one object, with Entra's steps.
fn provision(settings: Settings, id: &str) -> Result<i32, Error> {
    let mut rt = Runtime::open(settings)?;
    let mut snapshot = rt.source.read(&crate::source::ReadRequest::full())?;
    let (kind, source_id, display, assignment) = if let Some(u) = snapshot.find_user(id) {
        (
            ObjectKind::User,
            u.id.clone(),
            u.user_principal_name.clone(),
            u.assignment.clone(),
        )
    } else if let Some(g) = snapshot.find_group(id) {
        (
            ObjectKind::Group,
            g.id.clone(),
            g.display_name.clone(),
            g.assignment.clone(),
        )
    } else {
        println!("1. import: {id} not found in {}", rt.source.describe());
        return Err(
            InputError::Usage(format!("{id}: no such user or group in the directory")).into(),
        );
    };
    println!(
        "1. import: {} {display} ({source_id}) read from {}",
        kind.as_str(),
        rt.source.describe()
    );
    let record = match kind {
        ObjectKind::User => snapshot
            .users
            .iter()
            .find(|u| u.id == source_id)
            .map(|u| u.record.clone()),
        ObjectKind::Group => snapshot
            .groups
            .iter()
            .find(|g| g.id == source_id)
            .map(|g| g.record.clone()),
    }
    .unwrap_or_default();
    let scope = match kind {
        ObjectKind::User => rt.scripts.user_scope(&record),
        ObjectKind::Group => rt.scripts.group_scope(&record),
    };
    let rules = match &scope {
        Ok((_, r)) => r
            .iter()
            .map(|(n, ok)| format!("{n}: {ok}"))
            .collect::<Vec<_>>()
            .join("; "),
        Err(f) => format!("error {f}"),
    };
    let in_scope = assignment.is_assigned() && matches!(scope, Ok((true, _)));
    println!(
        "2. scope: {} — {}{}",
        if in_scope { "in scope" } else { "out of scope" },
        assignment.reason(),
        if rules.is_empty() {
            String::new()
        } else {
            format!("; rules: {rules}")
        }
    );
    snapshot.changed = Some(std::iter::once(source_id.clone()).collect());
    cycle::widen_to_members(&mut snapshot);
    let prepared = cycle::prepare(
        cycle::Parts {
            scripts: &rt.scripts,
            state: &rt.state,
            target: rt.target.as_mut(),
            settings: &rt.settings,
        },
        snapshot,
        false,
        false,
    )?;
    let links = prepared.links;
    let plan = one_object(prepared.plan, &source_id, &rt.settings, &links, &rt.state)?;
    print_match(&plan, &links, kind, &source_id, &rt.scripts);
    if plan.actions.is_empty() && plan.refresh.is_empty() {
        println!("4. action: none — the target already matches");
        return Ok(exit::OK);
    }
    let cycle_id = rt.state.start_cycle("on-demand")?;
    let mut opts = cycle::apply_options(&rt, &links, false);
    opts.stop = None;
    let outcome = crate::apply::apply_with_links(
        &plan,
        rt.target.as_mut(),
        &mut rt.state,
        cycle_id,
        &opts,
        links,
    )?;
    let entries = rt.state.logs(&LogQuery {
        cycle: Some(cycle_id),
        ..Default::default()
    })?;
    for e in &entries {
        println!(
            "4. action: {} {} — {}{}",
            e.action,
            e.status,
            e.reason,
            e.error
                .as_ref()
                .map(|x| format!(" — error: {x}"))
                .unwrap_or_default()
        );
        for m in &e.modified {
            println!("     {}: {} → {}", m.name, show(&m.old), show(&m.new));
        }
    }
    let status = if outcome.failures > 0 {
        "partial"
    } else {
        "success"
    };
    rt.state.finish_cycle(
        cycle_id,
        status,
        &serde_json::json!({"on_demand": source_id}),
    )?;
    Ok(if outcome.failures > 0 {
        exit::PARTIAL
    } else {
        exit::OK
    })
}

/// The part of a plan that is one object's (provision, preview), judged by the
/// gate on its own.
fn one_object(
    mut plan: Plan,
    source_id: &str,
    settings: &Settings,
    links: &crate::state::Links,
    state: &State,
) -> Result<Plan, Error> {
    plan.actions.retain(|a| a.source_id == source_id);
    plan.refresh.retain(|r| r.source_id == source_id);
    plan.member_refresh
        .retain(|(g, u, _)| g == source_id || u == source_id);
    for a in plan.actions.iter_mut() {
        a.held = false;
        a.held_reason = None;
    }
    let allow = state.meta("allow_deletes_once")?.is_some();
    crate::gate::Gate::new(settings, links.0.len() + links.1.len(), allow).judge(&mut plan);
    Ok(plan)
}

/// Provisioning's third step: how the object is matched to the target.
fn print_match(
    plan: &Plan,
    links: &crate::state::Links,
    kind: ObjectKind,
    source_id: &str,
    scripts: &Scripts,
) {
    let linked = match kind {
        ObjectKind::User => links.0.get(source_id),
        ObjectKind::Group => links.1.get(source_id),
    };
    let adopted = plan.actions.iter().find(|a| a.op == Op::Adopt);
    match (linked, adopted) {
        (Some(l), _) => println!(
            "3. match: linked to target object {} (provisioned earlier)",
            l.target_id
        ),
        (None, Some(a)) => println!(
            "3. match: target object {} ({})",
            a.target_id.as_deref().unwrap_or("?"),
            a.reason
        ),
        (None, None) => println!(
            "3. match: nothing in the target matches by {}",
            match kind {
                ObjectKind::User => scripts.user_matching().join(", then "),
                ObjectKind::Group => scripts.group_matching().join(", then "),
            }
        ),
    }
}

fn check(settings: &Settings) -> Result<i32, Error> {
    println!("config {}: ok", settings.config_path.display());
    let scripts = Scripts::load(&settings.scripts_dir)?;
    println!("scripts {}: compiled", settings.scripts_dir.display());
    let mut source = crate::source::open(&settings.source)?;
    source.check()?;
    let snapshot = source.read(&crate::source::ReadRequest::full())?;
    println!(
        "source {}: {} users, {} groups",
        source.describe(),
        snapshot.users.len(),
        snapshot.groups.len()
    );
    let mut problems = 0;
    for e in &snapshot.errors {
        problems += 1;
        println!(
            "  invalid {} {}: {}",
            e.record.as_str(),
            e.object,
            e.message
        );
    }
    for e in crate::evaluate::evaluate(&snapshot, &scripts, None) {
        if let crate::evaluate::Decision::Failed(f) = &e.decision {
            problems += 1;
            println!(
                "  script error on {} {} ({}): {f}",
                e.kind.as_str(),
                e.display,
                e.source_id
            );
        }
    }
    let mut target = crate::targets::open(&settings.target)?;
    match target.test_connection() {
        Ok(()) => println!(
            "target {} at {}: connection ok",
            settings.target.kind.name(),
            settings.target.url
        ),
        Err(e) => {
            println!(
                "target {} at {}: {}",
                settings.target.kind.name(),
                settings.target.url,
                e.message
            );
            return Ok(if e.is_auth() {
                exit::USAGE
            } else {
                exit::RUNTIME
            });
        }
    }
    if problems > 0 {
        println!("{problems} problem(s) found");
        return Ok(exit::USAGE);
    }
    Ok(exit::OK)
}

/// `scimsync init`: a starter config, the default scripts and the sample directory.
fn init(dir: &Path) -> Result<i32, Error> {
    let files = [
        (dir.join("scimsync.toml"), STARTER_CONFIG),
        (dir.join("scripts").join("mapping.rhai"), defaults::MAPPING),
        (dir.join("scripts").join("scoping.rhai"), defaults::SCOPING),
        (
            dir.join("scripts").join("migration.rhai"),
            defaults::MIGRATION,
        ),
        (dir.join("directory.json"), crate::source::directory::SAMPLE),
    ];
    for (p, _) in &files {
        if p.exists() {
            return Err(InputError::Usage(format!(
                "{} already exists; not overwriting anything",
                p.display()
            ))
            .into());
        }
    }
    crate::private::create_dir(&dir.join("scripts"))
        .map_err(|e| Error::Runtime(format!("{}: {e}", dir.display())))?;
    for (p, text) in &files {
        crate::private::write(p, text.as_bytes())
            .map_err(|e| Error::Runtime(format!("{}: {e}", p.display())))?;
        println!("wrote {}", p.display());
    }
    println!(
        "next: set DROPBOX_TOKEN, edit scimsync.toml, then `scimsync check` and `scimsync plan`"
    );
    Ok(exit::OK)
}

const STARTER_CONFIG: &str = r#"# scimsync configuration. Relative paths are relative to this file.
state    = "scimsync.db"      # SQLite state file
scripts  = "scripts"          # mapping.rhai, scoping.rhai (migration.rhai)
interval = "40m"              # cycle interval for `scimsync run`

[source]
type  = "file"                # "graph" | "file"
path  = "directory.json"      # Graph-shaped directory document
scope = "assigned"            # "assigned" | "all"
# type = "graph"
# tenant = "contoso.onmicrosoft.com"
# client_id = "00000000-0000-0000-0000-000000000000"
# client_secret = "env:GRAPH_CLIENT_SECRET"
# app = "<service principal object id>"

[target]
type  = "dropbox"             # "dropbox" | "scim" | "dropbox-legacy"
url   = "https://www.dropbox.com/scim/v2"
token = "env:DROPBOX_TOKEN"   # env:NAME | file:PATH
# For a daemon, OAuth offline access instead of token (then `scimsync authorize`):
# app_key       = "<app key from the Dropbox App Console>"
# refresh_token = "file:/var/lib/scimsync/dropbox-refresh-token"

[safety]
deletion_threshold = 500      # deletes + disables per cycle before the cycle is held
skip_out_of_scope_deletions = false
"#;
