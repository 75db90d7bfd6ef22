//! Loopback stand-ins for the cloud services, for the demo, the tests, and for
//! rehearsing a change before touching production.
//!
//! Each emulator is a plain request → response function over in-memory data; this
//! module carries the HTTP plumbing (tiny_http, a few worker threads, bearer-token
//! check, percent-decoding) they share. They bind 127.0.0.1 unless told otherwise.

pub mod dropbox;
pub mod graph;
pub mod patch;

use serde_json::Value;
use std::io::Read;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

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
}

impl Response {
    pub fn json(status: u16, body: Value) -> Response {
        Response {
            status,
            body: Some(body),
            headers: vec![],
        }
    }
    pub fn empty(status: u16) -> Response {
        Response {
            status,
            body: None,
            headers: vec![],
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
}

/// A running emulator.
pub struct Running {
    pub addr: SocketAddr,
    server: Arc<tiny_http::Server>,
    workers: Vec<JoinHandle<()>>,
}

impl Running {
    /// `http://127.0.0.1:PORT`
    pub fn base(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Stops accepting and joins the workers.
    pub fn stop(self) {
        for _ in &self.workers {
            self.server.unblock();
        }
        for w in self.workers {
            let _ = w.join();
        }
    }

    /// Blocks until the process is killed (standalone `scimsync emulate`).
    pub fn wait(self) {
        for w in self.workers {
            let _ = w.join();
        }
    }
}

/// Starts serving `service` on `listen` with a few worker threads.
pub fn serve<S: Service>(
    listen: &str,
    service: S,
    workers: usize,
) -> Result<(Running, Arc<Mutex<S>>), String> {
    let server = tiny_http::Server::from_listener(listener(listen)?, None)
        .map_err(|e| format!("cannot listen on {listen}: {e}"))?;
    let addr = server
        .server_addr()
        .to_ip()
        .ok_or_else(|| format!("{listen} is not an IP address"))?;
    let server = Arc::new(server);
    let shared = Arc::new(Mutex::new(service));
    let mut handles = vec![];
    for _ in 0..workers.max(1) {
        let server = Arc::clone(&server);
        let shared = Arc::clone(&shared);
        handles.push(std::thread::spawn(move || {
            while let Ok(mut rq) = server.recv() {
                let req = read_request(&mut rq);
                let (resp, ctype, delay) = {
                    let mut svc = match shared.lock() {
                        Ok(g) => g,
                        Err(p) => p.into_inner(),
                    };
                    (svc.handle(&req), svc.content_type(), svc.latency())
                };
                if !delay.is_zero() {
                    std::thread::sleep(delay);
                }
                let _ = respond(rq, resp, ctype);
            }
        }));
    }
    Ok((
        Running {
            addr,
            server,
            workers: handles,
        },
        shared,
    ))
}

/// A listening socket with TCP_NODELAY, which accepted connections inherit: tiny_http
/// writes a response through a 1 KiB buffer, so a larger body leaves in two segments,
/// and Nagle's algorithm plus the client's delayed ACK would add 40 ms to each.
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

fn read_request(rq: &mut tiny_http::Request) -> Request {
    let url = rq.url().to_string();
    let (path, query) = url.split_once('?').unwrap_or((&url, ""));
    let segments = path
        .split('/')
        .filter(|s| !s.is_empty())
        .map(percent_decode)
        .collect();
    let query = query
        .split('&')
        .filter(|s| !s.is_empty())
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            (
                percent_decode(&k.replace('+', " ")),
                percent_decode(&v.replace('+', " ")),
            )
        })
        .collect();
    let authorization = rq
        .headers()
        .iter()
        .find(|h| h.field.equiv("Authorization"))
        .map(|h| h.value.as_str().to_string());
    let mut body = String::new();
    let _ = rq.as_reader().take(32 << 20).read_to_string(&mut body);
    Request {
        method: rq.method().as_str().to_uppercase(),
        segments,
        query,
        authorization,
        body,
    }
}

fn respond(rq: tiny_http::Request, resp: Response, ctype: &str) -> std::io::Result<()> {
    let body = resp.body.map(|b| b.to_string()).unwrap_or_default();
    let mut r = tiny_http::Response::from_string(body).with_status_code(resp.status);
    if let Ok(h) = tiny_http::Header::from_bytes("Content-Type", ctype) {
        r.add_header(h);
    }
    for (k, v) in resp.headers {
        if let Ok(h) = tiny_http::Header::from_bytes(k.as_bytes(), v.as_bytes()) {
            r.add_header(h);
        }
    }
    rq.respond(r)
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
