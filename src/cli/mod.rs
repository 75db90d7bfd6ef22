//! The command line: parsing (clap) and one function per command.
//!
//! Each command loads what it needs, calls into the library, prints, and returns an
//! exit code; `main` only maps errors to codes.

mod check;
#[cfg(feature = "emulators")]
mod emulate;
mod init;
mod migrate;
mod on_demand;
mod output;
mod plan;
mod status;

use check::check;
use init::init;
use migrate::migrate;
use on_demand::{preview, provision};
use output::*;
use plan::plan;
use status::status;

use crate::config::Settings;
use crate::cycle::{self, Runtime};
use crate::error::{exit, Error, InputError};
use crate::model::ObjectKind;
use crate::plan::{Op, Plan};
use crate::script::{defaults, Scripts};
use crate::state::Fact;
use crate::state::{LogQuery, Restart, State};
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
            crate::private::write(html, page.as_bytes()).map_err(Error::file(html))?;
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
                RestartScope::Watermark => Restart::Watermark,
                RestartScope::Escrows => Restart::Escrows,
                RestartScope::Quarantine => Restart::Quarantine,
                RestartScope::Migration => Restart::Migration,
                RestartScope::Full => Restart::Full,
            };
            state.restart(s)?;
            println!(
                "restarted ({}); the next cycle is {}",
                s.as_str(),
                cycle::next_kind(&state, false)?
            );
            Ok(exit::OK)
        }
        Command::AllowDeletes => {
            let settings = load(&cli)?;
            let state = State::open(&settings.state_path)?;
            match state.meta(Fact::Held)? {
                Some(n) => {
                    state.set_meta(Fact::AllowDeletesOnce, Some("1"))?;
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
