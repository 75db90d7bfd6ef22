//! Notifications: object failures, held deletions and quarantine, sent to a command
//! (event JSON on stdin — `sendmail` gives Entra's notification email) and/or POSTed
//! to a webhook, at most once per cycle per kind.
//!
//! A notification that cannot be delivered is logged and never fails the cycle. The
//! command runs with a clean environment: `PATH`, `HOME`, `LANG`, `TZ` and
//! `SCIMSYNC_EVENT` / `SCIMSYNC_CYCLE` / `SCIMSYNC_SUMMARY`, never the secrets
//! scimsync itself was given.

use crate::config::Notify;
use serde_json::{json, Value};
use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// What happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Failure,
    Hold,
    Quarantine,
    QuarantineLeft,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Failure => "failure",
            Kind::Hold => "hold",
            Kind::Quarantine => "quarantine",
            Kind::QuarantineLeft => "quarantine_left",
        }
    }
}

/// Builds the event document.
pub fn event(kind: Kind, cycle: i64, summary: &str, details: Value) -> Value {
    json!({
        "event": kind.as_str(),
        "cycle": cycle,
        "time": crate::clock::rfc3339(crate::clock::now()),
        "summary": summary,
        "details": details,
        "host": std::env::var("HOSTNAME").unwrap_or_default(),
    })
}

/// Sends one event to every configured channel.
pub fn send(cfg: &Notify, ev: &Value) {
    let text = ev.to_string();
    if let Some(cmd) = &cfg.command {
        match run_command(cmd, &text, ev) {
            Ok(()) => log::info!("notification {} sent to the command", ev["event"]),
            Err(e) => log::warn!("notify.command failed: {e}"),
        }
    }
    if let Some(url) = &cfg.webhook {
        let r = ureq::AgentBuilder::new()
            .timeout(Duration::from_secs(10))
            .build()
            .post(url)
            .set("Content-Type", "application/json")
            .send_string(&text);
        match r {
            Ok(_) => log::info!("notification {} posted to the webhook", ev["event"]),
            Err(e) => log::warn!("notify.webhook failed: {}", e.kind()),
        }
    }
}

/// Variables a notify command gets from scimsync's environment; nothing else
/// reaches it (an `env:` secret must not).
pub const PASSED_ON: [&str; 4] = ["PATH", "HOME", "LANG", "TZ"];

fn run_command(cmd: &str, input: &str, ev: &Value) -> Result<(), String> {
    let mut command = Command::new("/bin/sh");
    command.env_clear();
    for name in PASSED_ON {
        if let Some(v) = std::env::var_os(name) {
            command.env(name, v);
        }
    }
    if std::env::var_os("PATH").is_none() {
        command.env("PATH", "/usr/local/bin:/usr/bin:/bin");
    }
    command
        .env("SCIMSYNC_EVENT", ev["event"].as_str().unwrap_or(""))
        .env("SCIMSYNC_CYCLE", ev["cycle"].to_string())
        .env("SCIMSYNC_SUMMARY", ev["summary"].as_str().unwrap_or(""));
    let mut child = command
        .args(["-c", cmd])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| e.to_string())?;
    if let Some(mut stdin) = child.stdin.take() {
        let _ = stdin.write_all(input.as_bytes());
    }
    // A hanging notifier must not stall provisioning.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match child.try_wait().map_err(|e| e.to_string())? {
            Some(status) if status.success() => return Ok(()),
            Some(status) => return Err(format!("exited with {status}")),
            None if Instant::now() > deadline => {
                let _ = child.kill();
                return Err("timed out after 30 s".into());
            }
            None => std::thread::sleep(Duration::from_millis(20)),
        }
    }
}
