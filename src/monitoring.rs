//! Monitoring a running daemon: `[serve] listen` answers `/healthz` (200, or 503
//! with the reason) and `/metrics` (Prometheus text, `scimsync_` prefix), and
//! under systemd `Type=notify` the daemon says READY, WATCHDOG and STOPPING.
//!
//! The endpoint runs on its own thread and never touches the cycle: it reads the
//! state through its own read-only connection and the counters the daemon hands
//! it after each cycle.

use crate::config::Settings;
use crate::error::Error;
use crate::state::{Fact, State};
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// What the daemon did since it started: counters for `/metrics`.
#[derive(Debug, Clone, Default)]
pub struct Counters {
    /// (kind, status) → cycles.
    pub cycles: BTreeMap<(String, String), u64>,
    /// (action, status) → provisioning-log entries.
    pub actions: BTreeMap<(String, String), u64>,
    /// The last cycle's duration, in seconds.
    pub last_duration: Option<f64>,
    /// (method, status) → target requests (cumulative, from the client).
    pub requests: BTreeMap<(String, String), u64>,
    pub token_refreshes: u64,
}

/// The counters, shared between the daemon (writer) and the endpoint (reader).
pub type Shared = Arc<Mutex<Counters>>;

/// Binds `[serve] listen` and answers on a thread of its own. A port that cannot
/// be bound stops the daemon at start: monitoring that silently is not there is
/// worse than none.
pub fn serve(settings: &Settings, counters: Shared) -> Result<Option<std::net::SocketAddr>, Error> {
    let Some(addr) = settings.serve.listen else {
        return Ok(None);
    };
    let listener = TcpListener::bind(addr).map_err(|source| Error::System {
        what: "[serve] listen",
        source,
    })?;
    let bound = listener.local_addr().ok();
    let settings = settings.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            if let Err(e) = answer(stream, &settings, &counters) {
                log::debug!("monitoring endpoint: {e}");
            }
        }
    });
    Ok(bound)
}

fn answer(mut stream: TcpStream, settings: &Settings, counters: &Shared) -> std::io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut request = Vec::new();
    let mut buf = [0u8; 1024];
    while !request.windows(4).any(|w| w == b"\r\n\r\n") && request.len() < 16 * 1024 {
        let n = stream.read(&mut buf)?;
        if n == 0 {
            break;
        }
        request.extend_from_slice(&buf[..n]);
    }
    let text = String::from_utf8_lossy(&request);
    let mut words = text.split_whitespace();
    let (method, path) = (words.next().unwrap_or(""), words.next().unwrap_or(""));
    let path = path.split('?').next().unwrap_or("");
    let (status, content_type, body) = match (method, path) {
        ("GET", "/healthz") => healthz(settings),
        ("GET", "/metrics") => {
            let snapshot = counters.lock().map(|c| c.clone()).unwrap_or_default();
            (
                "200 OK",
                "text/plain; version=0.0.4",
                metrics(settings, &snapshot),
            )
        }
        ("GET", _) => (
            "404 Not Found",
            "text/plain",
            "/healthz or /metrics\n".into(),
        ),
        _ => ("405 Method Not Allowed", "text/plain", "GET only\n".into()),
    };
    write!(
        stream,
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
}

/// 200 unless the job is critical (quarantine, no cycle in three intervals);
/// the body is `status --check`'s line either way.
fn healthz(settings: &Settings) -> (&'static str, &'static str, String) {
    let verdict = State::open_read_only(&settings.state_path)
        .and_then(|s| crate::health::check(settings, &s, crate::clock::now()));
    match verdict {
        Ok(h) if h.level == crate::health::Level::Critical => {
            ("503 Service Unavailable", "text/plain", h.line() + "\n")
        }
        Ok(h) => ("200 OK", "text/plain", h.line() + "\n"),
        Err(e) => (
            "503 Service Unavailable",
            "text/plain",
            format!("SCIMSYNC UNKNOWN - {e}\n"),
        ),
    }
}

/// The Prometheus text exposition: the daemon's counters and the state's gauges.
pub fn metrics(settings: &Settings, c: &Counters) -> String {
    let mut out = String::new();
    let mut family = |name: &str, kind: &str, help: &str, samples: Vec<(String, String)>| {
        out.push_str(&format!(
            "# HELP scimsync_{name} {help}\n# TYPE scimsync_{name} {kind}\n"
        ));
        for (labels, value) in samples {
            out.push_str(&format!("scimsync_{name}{labels} {value}\n"));
        }
    };
    let labelled =
        |keys: [&str; 2], m: &BTreeMap<(String, String), u64>| -> Vec<(String, String)> {
            m.iter()
                .map(|((a, b), n)| {
                    (
                        format!(
                            "{{{}=\"{}\",{}=\"{}\"}}",
                            keys[0],
                            escape(a),
                            keys[1],
                            escape(b)
                        ),
                        n.to_string(),
                    )
                })
                .collect()
        };
    family(
        "cycles_total",
        "counter",
        "Cycles this daemon ran, by kind and status.",
        labelled(["kind", "status"], &c.cycles),
    );
    family(
        "actions_total",
        "counter",
        "Provisioning-log entries this daemon wrote, by action and status.",
        labelled(["action", "status"], &c.actions),
    );
    family(
        "target_requests_total",
        "counter",
        "Requests to the target, by method and answer status (error: no answer).",
        labelled(["method", "status"], &c.requests),
    );
    family(
        "token_refreshes_total",
        "counter",
        "Access tokens obtained with the refresh token.",
        vec![(String::new(), c.token_refreshes.to_string())],
    );
    if let Some(d) = c.last_duration {
        family(
            "cycle_duration_seconds",
            "gauge",
            "How long the last cycle took.",
            vec![(String::new(), format!("{d:.3}"))],
        );
    }
    if let Ok(state) = State::open_read_only(&settings.state_path) {
        for (name, help, value) in gauges(&state) {
            family(name, "gauge", help, vec![(String::new(), value)]);
        }
    }
    out
}

/// What the state says now: escrows, held deletions, quarantine, last success.
fn gauges(state: &State) -> Vec<(&'static str, &'static str, String)> {
    let escrows = state.escrows().map(|e| e.len()).unwrap_or_default();
    let leavers = state.leavers().map(|l| l.len()).unwrap_or_default();
    let held = state
        .meta(Fact::Held)
        .ok()
        .flatten()
        .and_then(|h| h.parse::<u64>().ok())
        .unwrap_or(0);
    let quarantine = crate::cycle::quarantine_state(state)
        .ok()
        .flatten()
        .is_some();
    let last_success = state.cycles(50).ok().and_then(|cs| {
        cs.into_iter()
            .find(|c| c.status == crate::state::CycleStatus::Success)
            .and_then(|c| c.finished_at)
    });
    let mut out = vec![
        (
            "escrows",
            "Objects failing, waiting for their retry.",
            escrows.to_string(),
        ),
        (
            "held_deletions",
            "Destructive actions held by the deletion safeguards.",
            held.to_string(),
        ),
        (
            "pending_removals",
            "Leavers suspended, waiting out the grace period before removal.",
            leavers.to_string(),
        ),
        (
            "quarantine",
            "1 while the job is in quarantine.",
            u8::from(quarantine).to_string(),
        ),
    ];
    if let Some(at) = last_success {
        out.push((
            "last_success_timestamp_seconds",
            "When the last successful cycle finished (Unix time).",
            at.to_string(),
        ));
    }
    out
}

/// A label value as the exposition format wants it.
fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Tells systemd (`Type=notify`) how the daemon is: "READY=1", "WATCHDOG=1",
/// "STOPPING=1". Nothing happens outside systemd.
pub fn sd_notify(state: &str) {
    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else {
        return;
    };
    let sent = (|| -> std::io::Result<()> {
        let socket = std::os::unix::net::UnixDatagram::unbound()?;
        let bytes = path.as_encoded_bytes();
        match bytes.strip_prefix(b"@") {
            // An abstract socket (Linux): the name after the '@'.
            Some(name) => {
                use std::os::linux::net::SocketAddrExt;
                let addr = std::os::unix::net::SocketAddr::from_abstract_name(name)?;
                socket.send_to_addr(state.as_bytes(), &addr)?;
            }
            None => {
                socket.send_to(state.as_bytes(), &path)?;
            }
        }
        Ok(())
    })();
    if let Err(e) = sent {
        log::debug!("sd_notify {state}: {e}");
    }
}

/// How often systemd wants a WATCHDOG=1 (half its `WatchdogSec`), if it does.
pub fn watchdog_every() -> Option<Duration> {
    let usec: u64 = std::env::var("WATCHDOG_USEC").ok()?.parse().ok()?;
    Some(Duration::from_micros(usec / 2)).filter(|d| !d.is_zero())
}
