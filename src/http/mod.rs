//! The one HTTP agent: blocking ureq with keep-alive, explicit timeouts, bearer
//! auth, and the retry rules the product promises ("honour Retry-After on 429 and
//! 503; back off on 5xx; never retry 4xx other than 429"). Shared vocabulary: the
//! Graph source, the targets and notifications use it (ARCHITECTURE.md).
//!
//! Status codes are data, not errors, so SCIM error bodies can be read. The token
//! (a `Bearer`, kept good by `credential`) is only ever placed in the Authorization
//! header; it is never logged or formatted. A 401 is answered once by a renewed
//! token where one can be had (OAuth, a token file that changed), then the request is
//! sent again.

use credential::Bearer;
use credential::Secret;
use serde_json::Value;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub mod credential;

/// How a target call failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorClass {
    /// 401/403: the token is wrong or lacks rights.
    Auth,
    /// 404 on a resource (or the base URL).
    NotFound,
    /// 409: uniqueness or state conflict.
    Conflict,
    /// 400 and other 4xx: the request itself is wrong for this object.
    Invalid,
    /// 429 that outlasted our retries.
    Throttled,
    /// 5xx that outlasted our retries.
    Server,
    /// Connection refused, reset, timed out, or an unreadable answer.
    Transport,
    /// The OAuth authorization behind the token was revoked or has expired
    /// (`invalid_grant`): only `scimsync authorize` helps.
    Revoked,
}

#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct TargetError {
    pub class: ErrorClass,
    pub status: Option<u16>,
    pub message: String,
}

impl TargetError {
    pub fn new(class: ErrorClass, status: Option<u16>, message: impl Into<String>) -> Self {
        TargetError {
            class,
            status,
            message: message.into(),
        }
    }
    pub fn is_auth(&self) -> bool {
        matches!(self.class, ErrorClass::Auth | ErrorClass::Revoked)
    }
    /// Errors that say the target as a whole is unwell, not this one object.
    pub fn is_systemic(&self) -> bool {
        matches!(
            self.class,
            ErrorClass::Auth
                | ErrorClass::Revoked
                | ErrorClass::Transport
                | ErrorClass::Server
                | ErrorClass::Throttled
        ) || (self.class == ErrorClass::NotFound
            && self.status == Some(404)
            && self.message.contains("base URL"))
    }
}

/// Retry policy; tests shorten the waits.
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    /// Attempts after the first, for 429/503 and (idempotent requests) 5xx/transport.
    pub retries: u32,
    /// First back-off for 5xx; doubles each time.
    pub backoff: Duration,
    /// Longest Retry-After we wait for in-line; longer ones fail the call.
    pub max_wait: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            retries: 5,
            backoff: Duration::from_millis(500),
            max_wait: Duration::from_secs(120),
        }
    }
}

/// An answer: status, body text and Retry-After.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub body: String,
}

impl Reply {
    pub fn json(&self) -> Result<Value, TargetError> {
        if self.body.trim().is_empty() {
            return Ok(Value::Null);
        }
        serde_json::from_str(&self.body).map_err(|e| {
            TargetError::new(
                ErrorClass::Transport,
                Some(self.status),
                format!("answer is not JSON ({e}): {}", snippet(&self.body)),
            )
        })
    }
}

/// Response bodies in messages are cut short: they can be large.
pub fn snippet(s: &str) -> String {
    let t: String = s.chars().take(300).collect();
    if t.len() < s.len() {
        format!("{t}…")
    } else {
        t
    }
}

/// Cloning shares the connection pool, the request counters and the throttle pause,
/// so the pool's workers count as one client and all wait out one Retry-After.
#[derive(Clone)]
pub struct Http {
    agent: ureq::Agent,
    bearer: Bearer,
    pub policy: RetryPolicy,
    content_type: &'static str,
    counts: Arc<Mutex<BTreeMap<String, u64>>>,
    /// Answers by method and status ("error" when none came), for metrics.
    answers: Arc<Mutex<BTreeMap<(String, String), u64>>>,
    /// Set by a 429/503: no request leaves before this instant.
    pause_until: Arc<Mutex<Option<Instant>>>,
}

impl Http {
    pub fn new(bearer: Bearer, timeout: Duration, content_type: &'static str) -> Http {
        let agent = agent(timeout);
        Http {
            agent,
            bearer,
            policy: RetryPolicy::default(),
            content_type,
            counts: Arc::default(),
            answers: Arc::default(),
            pause_until: Arc::default(),
        }
    }

    pub fn counts(&self) -> BTreeMap<String, u64> {
        self.counts.lock().map(|c| c.clone()).unwrap_or_default()
    }

    /// Requests by method and answer status, since the client was made.
    pub fn answers(&self) -> BTreeMap<(String, String), u64> {
        self.answers.lock().map(|c| c.clone()).unwrap_or_default()
    }

    fn count_answer(&self, method: &str, status: &str) {
        if let Ok(mut c) = self.answers.lock() {
            *c.entry((method.to_string(), status.to_string()))
                .or_insert(0) += 1;
        }
    }

    fn count(&self, method: &str) {
        if let Ok(mut c) = self.counts.lock() {
            *c.entry(method.to_string()).or_insert(0) += 1;
        }
    }

    /// Waits out a pause another worker was told to take.
    fn wait_for_pause(&self) {
        let until = self.pause_until.lock().ok().and_then(|p| *p);
        if let Some(t) = until {
            let now = Instant::now();
            if t > now {
                std::thread::sleep(t - now);
            }
        }
    }

    /// Throttled: every worker holds back for `wait`, then this one retries.
    fn pause(&self, wait: Duration) {
        let until = Instant::now() + wait;
        if let Ok(mut p) = self.pause_until.lock() {
            if p.is_none_or(|t| t < until) {
                *p = Some(until);
            }
        }
        self.wait_for_pause();
    }

    /// Replaces the bearer token (a token a source obtained itself).
    pub fn set_token(&mut self, token: Secret) {
        self.bearer = Bearer::fixed(token);
    }

    /// The bearer this client sends (shared by its clones).
    pub fn bearer(&self) -> &Bearer {
        &self.bearer
    }

    /// POSTs a form without bearer auth (the OAuth token endpoint). Throttling is
    /// honoured; the body (which holds the client secret) is never logged.
    pub fn post_form(&mut self, url: &str, form: &[(&str, &str)]) -> Result<Reply, TargetError> {
        self.post_form_as(url, form, None)
    }

    /// `post_form`, authenticating the client with HTTP Basic when `basic` says who.
    pub fn post_form_as(
        &mut self,
        url: &str,
        form: &[(&str, &str)],
        basic: Option<&(String, Secret)>,
    ) -> Result<Reply, TargetError> {
        use base64::Engine;
        let authorization = basic.map(|(user, pass)| {
            format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(format!(
                    "{}:{}",
                    encode(user),
                    encode(pass.expose())
                ))
            )
        });
        let body: Vec<String> = form
            .iter()
            .map(|(k, v)| format!("{}={}", encode(k), encode(v)))
            .collect();
        let body = body.join("&");
        let mut attempt = 0;
        let mut backoff = self.policy.backoff;
        // The token endpoint has no side effects: failures on the way and 5xx are
        // retried too.
        let retries = self.policy.retries.min(3);
        let mut again = |attempt: &mut u32, why: &str| -> bool {
            if *attempt >= retries {
                return false;
            }
            *attempt += 1;
            log::warn!("POST {}: {why}; retrying in {backoff:?}", strip_query(url));
            std::thread::sleep(backoff);
            backoff = (backoff * 2).min(Duration::from_secs(30));
            true
        };
        loop {
            self.wait_for_pause();
            self.count("POST");
            let mut req = self
                .agent
                .post(url)
                .header("Content-Type", "application/x-www-form-urlencoded");
            if let Some(a) = &authorization {
                req = req.header("Authorization", a);
            }
            let mut resp = match req.send(&body) {
                Ok(resp) => resp,
                Err(e) => {
                    let message = format!("POST {}: {}", strip_query(url), failure(&e));
                    if again(&mut attempt, &message) {
                        continue;
                    }
                    return Err(TargetError::new(ErrorClass::Transport, None, message));
                }
            };
            let status = resp.status().as_u16();
            let ra = retry_after(&resp);
            let text = match read_body(&mut resp) {
                Ok(text) => text,
                Err(e) if status < 400 && again(&mut attempt, &e.message) => continue,
                Err(e) if status < 400 => return Err(e),
                Err(_) => String::new(),
            };
            if (status == 429 || status == 503) && attempt < self.policy.retries {
                attempt += 1;
                self.pause(ra.unwrap_or(self.policy.backoff).min(self.policy.max_wait));
                continue;
            }
            if status >= 500 && again(&mut attempt, &format!("HTTP {status}")) {
                continue;
            }
            return Ok(Reply { status, body: text });
        }
    }

    /// Sends a request with retries. `idempotent` allows retrying 5xx and transport
    /// failures (a POST that may have been processed is not repeated blindly).
    pub fn send(
        &mut self,
        method: &str,
        url: &str,
        body: Option<&Value>,
        idempotent: bool,
    ) -> Result<Reply, TargetError> {
        let payload = body.map(|b| b.to_string());
        let mut attempt = 0u32;
        let mut backoff = self.policy.backoff;
        let mut renewed = false;
        loop {
            let token = self.bearer.token()?;
            self.wait_for_pause();
            self.count(method);
            let request = ureq::http::Request::builder()
                .method(method)
                .uri(url)
                .header("Authorization", format!("Bearer {}", token.expose()))
                .header("Accept", "application/scim+json, application/json");
            let result = match &payload {
                Some(p) => request
                    .header("Content-Type", self.content_type)
                    .body(p.as_str())
                    .map(|r| self.agent.run(r)),
                None => request.body(()).map(|r| self.agent.run(r)),
            };
            let result = match result {
                Ok(sent) => sent,
                Err(e) => {
                    return Err(TargetError::new(
                        ErrorClass::Invalid,
                        None,
                        format!("{method} {}: {e}", strip_query(url)),
                    ))
                }
            };
            let (status, retry_after, text) = match result {
                Ok(mut resp) => {
                    let status = resp.status().as_u16();
                    let ra = retry_after(&resp);
                    match read_body(&mut resp) {
                        Ok(text) => (status, ra, text),
                        // An answer cut short: like a dropped connection.
                        Err(e) if status < 400 && idempotent && attempt < self.policy.retries => {
                            attempt += 1;
                            log::warn!(
                                "{method} {}: {}; retrying in {backoff:?}",
                                strip_query(url),
                                e.message
                            );
                            std::thread::sleep(backoff);
                            backoff = (backoff * 2).min(Duration::from_secs(30));
                            continue;
                        }
                        Err(e) if status < 400 => return Err(e),
                        Err(_) => (status, ra, String::new()),
                    }
                }
                Err(e) => {
                    let msg = format!("{method} {}: {}", strip_query(url), failure(&e));
                    self.count_answer(method, "error");
                    if idempotent && attempt < self.policy.retries {
                        attempt += 1;
                        log::warn!("{msg}; retrying in {backoff:?}");
                        std::thread::sleep(backoff);
                        backoff = (backoff * 2).min(Duration::from_secs(30));
                        continue;
                    }
                    return Err(TargetError::new(ErrorClass::Transport, None, msg));
                }
            };
            log::debug!("{method} {} -> {status}", strip_query(url));
            self.count_answer(method, &status.to_string());
            if status == 401 && !renewed && self.bearer.rejected(&token) {
                // An expired or rotated token: once more with a fresh one.
                renewed = true;
                log::info!("{method} {}: 401; renewing the token", strip_query(url));
                continue;
            }
            let throttled = status == 429 || status == 503;
            if throttled && attempt < self.policy.retries {
                let wait = retry_after.unwrap_or(backoff);
                if wait <= self.policy.max_wait {
                    attempt += 1;
                    log::info!(
                        "{method} {}: {status}, waiting {wait:?} (Retry-After)",
                        strip_query(url)
                    );
                    self.pause(wait);
                    backoff = (backoff * 2).min(Duration::from_secs(30));
                    continue;
                }
            }
            if status >= 500 && !throttled && idempotent && attempt < self.policy.retries.min(3) {
                attempt += 1;
                log::warn!(
                    "{method} {}: {status}; retrying in {backoff:?}",
                    strip_query(url)
                );
                std::thread::sleep(backoff);
                backoff = (backoff * 2).min(Duration::from_secs(30));
                continue;
            }
            return Ok(Reply { status, body: text });
        }
    }
}

/// The agent every client shares the settings of: explicit timeouts, keep-alive,
/// status codes as data (SCIM error bodies are read), and no proxy from the
/// environment (a loopback emulator must never be sent through one).
///
/// `timeout` bounds each wait for the service (connecting, and every read and
/// write: a service that goes silent fails the request). Not one deadline for the
/// whole request: ureq re-arms the socket's timeout on every read for a deadline,
/// which more than doubled the cost of a request on loopback.
pub fn agent(timeout: Duration) -> ureq::Agent {
    ureq::Agent::config_builder()
        .timeout_connect(Some(Duration::from_secs(10).min(timeout)))
        .timeout_per_read(Some(timeout))
        .timeout_per_write(Some(timeout))
        .max_idle_connections_per_host(8)
        .user_agent(concat!("scimsync/", env!("CARGO_PKG_VERSION")))
        .http_status_as_error(false)
        .proxy(None)
        .build()
        .into()
}

/// Why a request got no answer, without the URL (filter values hold personal data).
pub fn failure(e: &ureq::Error) -> String {
    match e {
        ureq::Error::BadUri(_) => "not a valid URL".into(),
        ureq::Error::Io(io) => format!("connection failed: {io}"),
        other => other.to_string(),
    }
}

fn retry_after(resp: &ureq::http::Response<ureq::Body>) -> Option<Duration> {
    resp.headers()
        .get("Retry-After")
        .and_then(|v| v.to_str().ok())
        .and_then(parse_retry_after)
}

/// The answer's body, at most 64 MiB.
fn read_body(resp: &mut ureq::http::Response<ureq::Body>) -> Result<String, TargetError> {
    resp.body_mut()
        .with_config()
        .limit(64 << 20)
        .read_to_string()
        .map_err(|e| {
            TargetError::new(
                ErrorClass::Transport,
                None,
                format!("reading the answer: {e}"),
            )
        })
}

/// `Retry-After` as seconds (the HTTP-date form is treated as one second).
fn parse_retry_after(v: &str) -> Option<Duration> {
    let v = v.trim();
    match v.parse::<f64>() {
        Ok(s) if s >= 0.0 && s.is_finite() => Some(Duration::from_secs_f64(s.min(86_400.0))),
        _ => Some(Duration::from_secs(1)),
    }
}

/// Filter values may hold personal data: messages and logs show the path only.
fn strip_query(url: &str) -> &str {
    crate::endpoint::without_query(url)
}

/// Percent-encodes a query component (RFC 3986 unreserved kept).
pub fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len() * 3);
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn encodes_filters() {
        assert_eq!(
            super::encode("userName eq \"a b\""),
            "userName%20eq%20%22a%20b%22"
        );
    }
}
