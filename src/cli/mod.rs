//! The command line: parsing (clap) and one function per command.
//!
//! Each command loads what it needs, calls into the library, prints, and returns an
//! exit code; `main` only maps errors to codes.

mod check;
#[cfg(feature = "emulators")]
mod emulate;
mod import;
mod init;
mod logs;
mod maintenance;
mod migrate;
mod on_demand;
mod output;
mod plan;
mod status;
mod sync;

use check::check;
use init::init;
use logs::{logs, report};
use maintenance::{allow_deletes, restart, snapshot};
use migrate::migrate;
use on_demand::{preview, provision};
use output::*;
use plan::plan;
use status::status;
use sync::sync;

use crate::config::Settings;
use crate::cycle::{self, Runtime};
use crate::error::{exit, Error, InputError};
use crate::model::ObjectKind;
use crate::plan::{Op, Plan};
use crate::script::{defaults, Scripts};
use crate::state::Fact;
use crate::state::{LogAction, LogQuery, LogStatus, Restart, State};
use clap::{Parser, Subcommand, ValueEnum};
use std::path::{Path, PathBuf};

#[derive(Parser, Debug)]
#[command(
    name = "scimsync",
    version = concat!(env!("CARGO_PKG_VERSION"), " (", env!("SCIMSYNC_REVISION"), ")"),
    about = "Keep Dropbox (and any SCIM 2.0 app) in step with Entra ID or a directory file"
)]
pub struct Cli {
    /// Config file (default: scimsync.toml in the working directory)
    #[arg(short = 'c', long = "config", global = true)]
    pub config: Option<PathBuf>,
    /// How log lines are written to stderr: text, or one JSON object per line
    /// (for journald forwarders and log shippers)
    #[arg(long, value_enum, global = true, default_value = "text")]
    pub log_format: LogFormat,
    /// How long `sync`, `provision`, `restart`, `allow-deletes` and `migrate apply`
    /// wait for a cycle running beside them (a daemon's, another `sync`) before
    /// giving up; 0s refuses at once
    #[arg(long, global = true, default_value = "10m", value_parser = wait_duration)]
    pub wait: std::time::Duration,
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
    Init {
        /// The folder to write into (default: the working directory)
        dir: Option<PathBuf>,
        /// The state file the config names; for the systemd unit,
        /// /var/lib/scimsync/scimsync.db (the config's folder is read-only there)
        #[arg(long, default_value = "scimsync.db")]
        state: String,
    },
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
        /// The plan as JSON (values redacted as in the log)
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
    Preview {
        /// The directory object: its id, userPrincipalName or group displayName
        id: String,
    },
    /// Provision one user or group now (by id or userPrincipalName), showing each step
    Provision {
        /// The directory object: its id, userPrincipalName or group displayName
        id: String,
    },
    /// A self-contained HTML page: cycle history charts, holds and escrows
    Report {
        /// Where to write the page
        #[arg(long, value_name = "FILE")]
        html: PathBuf,
        /// How many recent cycles to chart
        #[arg(long, default_value_t = 50)]
        cycles: usize,
    },
    /// The provisioning log
    Logs {
        /// Only entries with this outcome
        #[arg(long, value_enum, ignore_case = true)]
        status: Option<LogStatus>,
        /// Only entries of this action
        #[arg(long, value_enum, ignore_case = true)]
        action: Option<LogAction>,
        /// Only entries of this object (source id, target id or name)
        #[arg(long)]
        object: Option<String>,
        /// Only entries of this cycle number
        #[arg(long)]
        cycle: Option<i64>,
        /// Only entries newer than this (e.g. 2h, 7d)
        #[arg(long)]
        since: Option<String>,
        /// One JSON object per entry
        #[arg(long, conflicts_with = "csv")]
        json: bool,
        /// CSV with a header row (as Entra's download)
        #[arg(long)]
        csv: bool,
    },
    /// Sync details: last cycle, counts, escrows, holds
    Status {
        /// The same as JSON
        #[arg(long, conflicts_with = "check")]
        json: bool,
        /// One line for monitoring, with the Nagios plugin exit codes: 0 ok,
        /// 1 warning (failing objects, held deletions), 2 critical (quarantine, or
        /// no cycle finished in 3 intervals), 3 unknown (the state is unreadable)
        #[arg(long)]
        check: bool,
    },
    /// Entra's "restart provisioning"
    Restart {
        /// What to forget
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
    /// Shell completions on stdout (e.g. `scimsync completions bash >
    /// /etc/bash_completion.d/scimsync`)
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// The manual page (roff) on stdout (e.g. `scimsync man > scimsync.1`)
    Man,
    /// Translate an Entra synchronization schema (portal: Provisioning → Mappings →
    /// "Review your schema here") into mapping.rhai and scoping.rhai in the scripts
    /// folder; an untranslatable part is exit 2 with nothing written
    ImportEntra {
        /// The schema JSON file
        #[arg(required_unless_present = "job", conflicts_with = "job")]
        file: Option<PathBuf>,
        /// Read the schema of this provisioning job through Graph with the
        /// [source] credentials (GET …/servicePrincipals/{app}/synchronization/jobs/{id}/schema)
        #[arg(long, value_name = "JOB_ID")]
        job: Option<String>,
        /// Replace an existing mapping.rhai / scoping.rhai
        #[arg(long)]
        force: bool,
    },
}

/// How log lines are written.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand, Debug)]
pub enum MigrateStep {
    /// Per member and group: adopt, conflict or unmanaged; writes nothing
    Plan {
        /// The migration plan as JSON
        #[arg(long)]
        json: bool,
    },
    /// Writes the SCIM links and retires the legacy integration; sends nothing to Dropbox
    Apply,
}

#[derive(ValueEnum, Clone, Copy, Debug)]
pub enum RestartScope {
    /// The next cycle reads the whole directory (an initial cycle)
    Watermark,
    /// Failing objects are retried at once
    Escrows,
    /// Leave quarantine now
    Quarantine,
    /// Undo `migrate apply` (the legacy integration may run again)
    Migration,
    /// Start over: forget the watermark, escrows, quarantine, holds, every link
    /// and the leavers waiting out the grace period (the next cycle matches and
    /// adopts again)
    Full,
}

fn wait_duration(s: &str) -> Result<std::time::Duration, String> {
    crate::config::parse_duration(s)
}

fn config_path(cli: &Cli) -> PathBuf {
    cli.config
        .clone()
        .unwrap_or_else(|| PathBuf::from("scimsync.toml"))
}

fn load(cli: &Cli) -> Result<Settings, Error> {
    Ok(Settings::load(&config_path(cli))?)
}

/// For commands that only read or mark the state: no secret is resolved.
fn load_for_reading(cli: &Cli) -> Result<Settings, Error> {
    Ok(Settings::load_for_reading(&config_path(cli))?)
}

/// Runs the parsed command; returns the exit code.
pub fn run(cli: Cli) -> Result<i32, Error> {
    let wait = cli.wait;
    match &cli.command {
        #[cfg(feature = "emulators")]
        Command::Demo => crate::demo::run(),
        Command::Init { dir, state } => init(dir.as_deref().unwrap_or(Path::new(".")), state),
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
        Command::Migrate { step } => migrate(&load(&cli)?, step, wait),
        Command::Sync {
            full,
            force_legacy,
            plan,
        } => sync(load(&cli)?, *full, *force_legacy, plan.as_deref(), wait),
        Command::Run => crate::daemon::run(load(&cli)?),
        Command::Preview { id } => preview(&load(&cli)?, id),
        Command::Provision { id } => provision(load(&cli)?, id, wait),
        Command::Report { html, cycles } => report(&load_for_reading(&cli)?, html, *cycles),
        Command::Logs {
            status,
            action,
            object,
            cycle,
            since,
            json,
            csv,
        } => logs(
            &load_for_reading(&cli)?,
            LogQuery {
                status: *status,
                action: *action,
                object: object.clone(),
                cycle: *cycle,
                since: None,
                limit: None,
            },
            since.as_deref(),
            (*json, *csv),
        ),
        Command::Status { json, check } => match check {
            true => Ok(status::check(&load_for_reading(&cli)?)),
            false => status(&load_for_reading(&cli)?, *json),
        },
        Command::Snapshot { out } => snapshot(&load(&cli)?, out),
        Command::Restart { scope } => restart(&load_for_reading(&cli)?, *scope, wait),
        Command::AllowDeletes => allow_deletes(&load_for_reading(&cli)?, wait),
        #[cfg(feature = "emulators")]
        Command::Emulate(cmd) => emulate::run(cmd),
        Command::Completions { shell } => {
            let mut cmd = <Cli as clap::CommandFactory>::command();
            let mut script = vec![];
            clap_complete::generate(*shell, &mut cmd, "scimsync", &mut script);
            print!("{}", String::from_utf8_lossy(&script));
            Ok(exit::OK)
        }
        Command::ImportEntra { file, job, force } => {
            let from = match (file, job) {
                (Some(f), _) => import::SchemaFrom::File(f),
                (None, Some(j)) => import::SchemaFrom::Job(j),
                (None, None) => unreachable!("clap requires FILE or --job"),
            };
            import::import_entra(&cli, from, *force)
        }
        Command::Man => {
            let cmd = <Cli as clap::CommandFactory>::command();
            clap_mangen::Man::new(cmd)
                .render(&mut std::io::stdout())
                .map_err(Error::file(Path::new("<stdout>")))?;
            Ok(exit::OK)
        }
    }
}
