//! Notifications: object failures, held deletions, quarantine and failed script
//! reloads, mailed (built-in SMTP), sent to a command (event JSON on stdin) and/or
//! POSTed to a webhook — each only when something is new: a failure set with a new
//! object, a hold or quarantine that starts or ends, a reload that fails. An
//! unchanged failure or hold is repeated after `[notify] repeat` (default 24h).
//! `Sent` is what was last sent; the cycle keeps it in the state.
//!
//! A notification that cannot be delivered is logged and never fails the cycle. The
//! command runs with a clean environment: `PATH`, `HOME`, `LANG`, `TZ` and
//! `SCIMSYNC_EVENT` / `SCIMSYNC_CYCLE` / `SCIMSYNC_SUMMARY`, never the secrets
//! scimsync itself was given.

use crate::config::{Email, Notify, SmtpSecurity};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// What happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Failure,
    Hold,
    HoldEnded,
    Quarantine,
    QuarantineLeft,
    ScriptReload,
}

impl Kind {
    pub const ALL: [Kind; 6] = [
        Kind::Failure,
        Kind::Hold,
        Kind::HoldEnded,
        Kind::Quarantine,
        Kind::QuarantineLeft,
        Kind::ScriptReload,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Failure => "failure",
            Kind::Hold => "hold",
            Kind::HoldEnded => "hold_ended",
            Kind::Quarantine => "quarantine",
            Kind::QuarantineLeft => "quarantine_left",
            Kind::ScriptReload => "script_reload_failed",
        }
    }

    /// The subject line's words, and what an admin does about it.
    fn words(self) -> (&'static str, &'static str) {
        match self {
            Kind::Failure => (
                "objects failing",
                "Fix the record in the directory or the mapping script (a fixed script retries at once), or the target's complaint. See every failure with `scimsync logs --status failure`; `scimsync restart --scope escrows` retries all of them now.",
            ),
            Kind::Hold => (
                "deletions held",
                "Nothing was removed. If the removals are intended, run `scimsync allow-deletes` (once); if not, fix the directory or the scoping and the hold ends by itself. `scimsync plan` lists them.",
            ),
            Kind::HoldEnded => (
                "hold ended",
                "Nothing to do: no destructive action is held any more.",
            ),
            Kind::Quarantine => (
                "in quarantine",
                "Cycles back off (up to once a day) until the target answers. Fix what the summary names; a changed secret file ends the wait at once, or run `scimsync restart --scope quarantine`.",
            ),
            Kind::QuarantineLeft => (
                "quarantine over",
                "Nothing to do: everything that failed meanwhile is retried now.",
            ),
            Kind::ScriptReload => (
                "script reload failed",
                "The running scripts stay in use. Fix the file and line named above and save again; `scimsync check` shows the error too.",
            ),
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
        "host": host(),
    })
}

/// This machine's name (services rarely have `HOSTNAME` set).
pub fn host() -> String {
    ["/proc/sys/kernel/hostname", "/etc/hostname"]
        .iter()
        .find_map(|p| {
            std::fs::read_to_string(p)
                .ok()
                .map(|t| t.trim().to_string())
                .filter(|t| !t.is_empty())
        })
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_default()
}

/// What was last sent, kept between cycles: the de-duplication.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Sent {
    /// The failing objects ("kind:id") the last failure event named, and when.
    #[serde(default)]
    failing: Option<(BTreeSet<String>, i64)>,
    /// When the hold under way was last sent.
    #[serde(default)]
    hold: Option<i64>,
    /// The failed reload last sent (a hash of its message), and when.
    #[serde(default)]
    reload: Option<(String, i64)>,
}

impl Sent {
    /// A failure event is due when an object fails that the last one did not
    /// name, or `repeat` has passed with failures still there. An object that
    /// recovers leaves the set, so failing again is new.
    pub fn failure_due(&mut self, failing: BTreeSet<String>, now: i64, repeat: Duration) -> bool {
        if failing.is_empty() {
            self.failing = None;
            return false;
        }
        let due = match &self.failing {
            None => true,
            Some((named, at)) => !failing.is_subset(named) || now - at >= repeat.as_secs() as i64,
        };
        let at = match (&self.failing, due) {
            (Some((_, at)), false) => *at,
            _ => now,
        };
        self.failing = Some((failing, at));
        due
    }

    /// A hold event when a hold starts (or is still there after `repeat`), an
    /// ended-hold event when it ends.
    pub fn hold_due(&mut self, held: bool, now: i64, repeat: Duration) -> Option<Kind> {
        match (held, self.hold) {
            (true, Some(at)) if now - at < repeat.as_secs() as i64 => None,
            (true, _) => {
                self.hold = Some(now);
                Some(Kind::Hold)
            }
            (false, Some(_)) => {
                self.hold = None;
                Some(Kind::HoldEnded)
            }
            (false, None) => None,
        }
    }

    /// A failed reload is sent once per distinct error (again after `repeat`).
    pub fn reload_due(&mut self, message: &str, now: i64, repeat: Duration) -> bool {
        let hash = {
            use sha2::Digest;
            format!("{:x}", sha2::Sha256::digest(message.as_bytes()))
        };
        let due = match &self.reload {
            Some((h, at)) => *h != hash || now - at >= repeat.as_secs() as i64,
            None => true,
        };
        if due {
            self.reload = Some((hash, now));
        }
        due
    }
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
        let r = crate::http::agent(Duration::from_secs(10))
            .post(url)
            .header("Content-Type", "application/json")
            .send(&text);
        match r {
            Ok(resp) if resp.status().is_success() => {
                log::info!("notification {} posted to the webhook", ev["event"])
            }
            Ok(resp) => log::warn!("notify.webhook failed: HTTP {}", resp.status().as_u16()),
            // Without the URL: a webhook's address often carries its secret.
            Err(e) => log::warn!("notify.webhook failed: {}", crate::http::failure(&e)),
        }
    }
    if let Some(email) = &cfg.email {
        match mail(email, ev, cfg.repeat) {
            Ok(()) => log::info!(
                "notification {} mailed to {}",
                ev["event"],
                email.to.join(", ")
            ),
            Err(e) => log::warn!("notify.email failed: {e}"),
        }
    }
}

/// The message an event becomes, like Entra's notification email: what happened,
/// which objects with their errors, what to do, where and when.
pub fn message(ev: &Value, repeat: Duration) -> (String, String) {
    let kind = ev["event"].as_str().unwrap_or_default();
    let (words, todo) = Kind::ALL
        .into_iter()
        .find(|k| k.as_str() == kind)
        .map(Kind::words)
        .unwrap_or((kind, ""));
    let host = ev["host"].as_str().unwrap_or_default();
    let cycle = ev["cycle"].as_i64().unwrap_or_default();
    let subject = format!("[scimsync] {words} on {host} (cycle {cycle})");
    let mut body = format!(
        "scimsync on {host}, cycle {cycle}, {}\n\n{}\n",
        ev["time"].as_str().unwrap_or_default(),
        ev["summary"].as_str().unwrap_or_default()
    );
    if let Some(objects) = ev["details"]["objects"].as_array() {
        let total = ev["details"]["count"]
            .as_u64()
            .unwrap_or(objects.len() as u64);
        body.push_str(&format!("\nObjects ({} of {total}):\n", objects.len()));
        for o in objects {
            body.push_str(&format!(
                "  {} {} ({}): {}\n",
                o["kind"].as_str().unwrap_or_default(),
                o["display"].as_str().unwrap_or_default(),
                o["id"].as_str().unwrap_or_default(),
                o["error"].as_str().unwrap_or_default()
            ));
        }
    }
    body.push_str(&format!("\nWhat to do: {todo}\n"));
    body.push_str(&format!(
        "\n-- \nSent by scimsync because [notify] email is set. An unchanged failure or hold is sent again after {}.\n",
        crate::clock::human_duration(repeat.as_secs())
    ));
    (subject, body)
}

/// Mails one event over SMTP (lettre): STARTTLS or TLS with the system's web
/// roots, plain only to a loopback relay (checked with the config).
fn mail(email: &Email, ev: &Value, repeat: Duration) -> Result<(), String> {
    use lettre::message::{header::ContentType, Mailbox};
    use lettre::transport::smtp::authentication::Credentials;
    use lettre::{SmtpTransport, Transport};
    let (subject, body) = message(ev, repeat);
    let mailbox = |a: &str| a.parse::<Mailbox>().map_err(|e| format!("{a:?}: {e}"));
    let mut builder = lettre::Message::builder()
        .from(mailbox(&email.from)?)
        .subject(subject)
        .header(ContentType::TEXT_PLAIN);
    for to in &email.to {
        builder = builder.to(mailbox(to)?);
    }
    let message = builder.body(body).map_err(|e| e.to_string())?;
    let server = &email.server;
    let transport = match server.security {
        SmtpSecurity::Plain => Ok(SmtpTransport::builder_dangerous(&server.host)),
        SmtpSecurity::StartTls => SmtpTransport::starttls_relay(&server.host),
        SmtpSecurity::Tls => SmtpTransport::relay(&server.host),
    }
    .map_err(|e| e.to_string())?
    .port(server.port)
    .timeout(Some(Duration::from_secs(30)));
    let transport = match &email.login {
        Some((user, password)) => {
            let password = password.resolve()?;
            transport.credentials(Credentials::new(
                user.clone(),
                password.expose().to_string(),
            ))
        }
        None => transport,
    };
    transport
        .build()
        .send(&message)
        .map(|_| ())
        // lettre's errors name the server's answer, never the credentials.
        .map_err(|e| e.to_string())
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
