//! Loopback stand-ins for the cloud services, for the demo, the tests, and for
//! rehearsing a change before touching production.
//!
//! Each emulator is a plain request → response function over in-memory data; this
//! module carries the HTTP plumbing (`wire`: HTTP/1.1 with a thread per connection and
//! injected faults; bearer-token check, percent-decoding) they share. They bind 127.0.0.1 unless told otherwise.

pub mod dropbox;
pub mod graph;
pub mod wire;

use serde_json::Value;
use std::sync::{Arc, Mutex};

/// A request as an emulator sees it.
#[derive(Debug)]
pub struct Request {
    pub method: String,
    /// Percent-decoded path segments, e.g. ["scim", "v2", "Users", "dbmid:1"].
    pub segments: Vec<String>,
    pub query: Vec<(String, String)>,
    pub authorization: Option<String>,
    pub body: String,
}

impl Request {
    pub fn param(&self, name: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// A response: status and an optional JSON body, plus extra headers.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub body: Option<Value>,
    pub headers: Vec<(String, String)>,
    /// A body that is not JSON, with its content type (injected faults).
    pub raw: Option<(&'static str, String)>,
}

impl Response {
    pub fn json(status: u16, body: Value) -> Response {
        Response {
            status,
            body: Some(body),
            headers: vec![],
            raw: None,
        }
    }
    pub fn empty(status: u16) -> Response {
        Response {
            status,
            body: None,
            headers: vec![],
            raw: None,
        }
    }
    /// Any text with its content type.
    pub fn text(status: u16, content_type: &'static str, body: String) -> Response {
        Response {
            status,
            body: None,
            headers: vec![],
            raw: Some((content_type, body)),
        }
    }
}

/// Something that answers requests.
pub trait Service: Send + 'static {
    fn handle(&mut self, req: &Request) -> Response;
    fn content_type(&self) -> &'static str {
        "application/scim+json"
    }
    /// Added to every response, outside the lock (a slow network, not a slow server).
    fn latency(&self) -> std::time::Duration {
        std::time::Duration::ZERO
    }
    /// Whether a request may use the emulator's admin endpoints.
    fn authorized(&self, _req: &Request) -> bool {
        false
    }
}

pub use wire::{Chaos, Running};

/// Starts serving `service` on `listen` (one thread per connection; `_workers` is
/// kept for callers that size for a thread pool).
pub fn serve<S: Service>(
    listen: &str,
    service: S,
    _workers: usize,
) -> Result<(Running, Arc<Mutex<S>>), String> {
    let shared = Arc::new(Mutex::new(service));
    let running = wire::serve(listener(listen)?, Arc::clone(&shared))?;
    Ok((running, shared))
}

/// A listening socket with SO_REUSEADDR and TCP_NODELAY (accepted connections set it
/// too: a response in two segments would otherwise wait 40 ms for a delayed ACK).
fn listener(listen: &str) -> Result<std::net::TcpListener, String> {
    use std::net::ToSocketAddrs;
    let addr = listen
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve {listen}: {e}"))?
        .next()
        .ok_or_else(|| format!("{listen} resolves to no address"))?;
    let domain = if addr.is_ipv4() {
        socket2::Domain::IPV4
    } else {
        socket2::Domain::IPV6
    };
    let sock =
        socket2::Socket::new(domain, socket2::Type::STREAM, None).map_err(|e| e.to_string())?;
    sock.set_reuse_address(true).map_err(|e| e.to_string())?;
    sock.set_nodelay(true).map_err(|e| e.to_string())?;
    sock.bind(&addr.into())
        .map_err(|e| format!("cannot listen on {listen}: {e}"))?;
    sock.listen(1024)
        .map_err(|e| format!("cannot listen on {listen}: {e}"))?;
    Ok(sock.into())
}

/// Decodes %XX escapes (invalid escapes are kept as they are).
pub fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            let hex = std::str::from_utf8(&b[i + 1..i + 3]).ok();
            if let Some(v) = hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Checks a bearer token in constant time over its length.
pub fn bearer_ok(header: Option<&str>, token: &str) -> bool {
    let Some(h) = header else { return false };
    let Some(given) = h
        .strip_prefix("Bearer ")
        .or_else(|| h.strip_prefix("bearer "))
    else {
        return false;
    };
    let (a, b) = (given.as_bytes(), token.as_bytes());
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    #[test]
    fn decodes() {
        assert_eq!(super::percent_decode("dbmid%3Aab%20c"), "dbmid:ab c");
        assert_eq!(super::percent_decode("100%"), "100%");
        assert!(super::bearer_ok(Some("Bearer abc"), "abc"));
        assert!(!super::bearer_ok(Some("Bearer abd"), "abc"));
        assert!(!super::bearer_ok(None, "abc"));
    }
}
