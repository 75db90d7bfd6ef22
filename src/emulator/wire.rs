//! HTTP/1.1 on a socket, for the emulators: keep-alive, one thread per connection,
//! and the faults a real network and a real service inflict.
//!
//! Why not a server crate: tiny_http's task pool can leave a new connection unserved
//! while older keep-alive connections sit idle (two connections arriving at once get
//! one thread between them), which hangs a client that opens several connections;
//! and faults such as a reset connection or a response cut mid-body need the socket
//! itself. The emulators only speak to well-behaved clients on loopback, so the
//! subset here is small: request line, headers, Content-Length or chunked bodies,
//! Content-Length responses.

use super::{Request, Response, Service};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Most connections served at once; more are closed on arrival.
const MAX_CONNECTIONS: usize = 512;
/// How often an idle connection looks at the stop flag.
const POLL: Duration = Duration::from_millis(200);
/// A request that stalls this long mid-way is dropped.
const STALL: Duration = Duration::from_secs(30);
const MAX_HEAD: usize = 64 << 10;
const MAX_BODY: usize = 64 << 20;

/// What a fault does to one request.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Fault {
    /// 429 Too Many Requests with this Retry-After (seconds).
    Throttle(u64),
    /// 500 Internal Server Error, the request not processed.
    Server,
    /// The connection is reset before the request is processed.
    Reset,
    /// The request is processed, then the response is cut mid-body.
    Cut,
    /// The answer comes this much later.
    Slow(Duration),
    /// 200 OK with a proxy's HTML error page instead of the answer.
    Html,
    /// 200 OK with an empty body.
    Empty,
    /// 200 OK with JSON nested deeper than parsers go.
    Deep,
}

impl Fault {
    fn name(self) -> &'static str {
        match self {
            Fault::Throttle(_) => "429",
            Fault::Server => "500",
            Fault::Reset => "reset",
            Fault::Cut => "cut",
            Fault::Slow(_) => "slow",
            Fault::Html => "html",
            Fault::Empty => "empty",
            Fault::Deep => "deep",
        }
    }
}

/// Random faults: `429=5%,500=2%,reset=1%,slow=1%:2s,cut=1%` with a seed.
/// `429=5%:3` answers `Retry-After: 3` (default 1). `html`, `empty` and `deep`
/// answer 200 with a body that is not the service's answer.
#[derive(Debug, Clone)]
pub struct Chaos {
    rules: Vec<(f64, Fault)>,
    rng: u64,
    /// Faults injected so far, by name.
    pub injected: std::collections::BTreeMap<&'static str, u64>,
    /// Only requests whose "METHOD path" ends with this are faulted (e.g.
    /// "v1.0/users", "POST scim/v2/Users").
    pub only: Option<String>,
}

impl Chaos {
    pub fn parse(spec: &str, seed: u64) -> Result<Chaos, String> {
        let mut rules = vec![];
        for part in spec.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (name, rest) = part
                .split_once('=')
                .ok_or_else(|| format!("fault \"{part}\": expected name=percent%, e.g. 429=5%"))?;
            let (pct, arg) = match rest.split_once(':') {
                Some((p, a)) => (p, Some(a)),
                None => (rest, None),
            };
            let p: f64 = pct
                .trim_end_matches('%')
                .parse()
                .ok()
                .filter(|p: &f64| (0.0..=100.0).contains(p))
                .ok_or_else(|| {
                    format!("fault \"{part}\": {pct} is not a percentage from 0 to 100")
                })?;
            let secs = |a: Option<&str>, default: f64| -> Result<f64, String> {
                match a {
                    None => Ok(default),
                    Some(a) => a
                        .trim_end_matches('s')
                        .parse::<f64>()
                        .ok()
                        .filter(|s| *s >= 0.0 && *s <= 3600.0)
                        .ok_or_else(|| format!("fault \"{part}\": {a} is not a number of seconds")),
                }
            };
            let fault = match name.trim() {
                "429" => Fault::Throttle(secs(arg, 1.0)? as u64),
                "500" => Fault::Server,
                "reset" => Fault::Reset,
                "cut" => Fault::Cut,
                "slow" => Fault::Slow(Duration::from_secs_f64(secs(arg, 1.0)?)),
                "html" => Fault::Html,
                "empty" => Fault::Empty,
                "deep" => Fault::Deep,
                other => {
                    return Err(format!(
                    "fault \"{other}\" is not one of 429, 500, reset, cut, slow, html, empty, deep"
                ))
                }
            };
            rules.push((p / 100.0, fault));
        }
        let total: f64 = rules.iter().map(|(p, _)| p).sum();
        if total > 1.0 {
            return Err(format!(
                "faults add up to {:.0}%, more than 100%",
                total * 100.0
            ));
        }
        Ok(Chaos {
            rules,
            rng: seed ^ 0x9E37_79B9_7F4A_7C15,
            injected: Default::default(),
            only: None,
        })
    }

    /// splitmix64: reproducible from the seed, good enough to pick faults.
    fn next(&mut self) -> f64 {
        self.rng = self.rng.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.rng;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        (z >> 11) as f64 / (1u64 << 53) as f64
    }

    /// The fault for the next request, if any.
    pub fn draw(&mut self) -> Option<Fault> {
        let x = self.next();
        let mut acc = 0.0;
        for (p, f) in &self.rules {
            acc += p;
            if x < acc {
                *self.injected.entry(f.name()).or_insert(0) += 1;
                return Some(*f);
            }
        }
        None
    }

    /// The fault for a request to `path`, if any (requests outside `only` are
    /// never faulted and draw nothing).
    pub fn draw_for(&mut self, path: &str) -> Option<Fault> {
        match &self.only {
            Some(o) if !path.ends_with(o.as_str()) => None,
            _ => self.draw(),
        }
    }
}

/// Service requests being answered now, and the most at once since the last reset
/// (`GET /_emulator/chaos` shows it: tests check a client's concurrency with it).
/// It also holds a stall: the Nth service request is held, unanswered and
/// unprocessed, until released, then dropped — a place to kill a client at that is
/// the same every run (the simulation's `kill -9`).
#[derive(Default)]
pub struct Gauge {
    now: AtomicUsize,
    peak: AtomicUsize,
    stall_after: std::sync::atomic::AtomicU64,
    seen: std::sync::atomic::AtomicU64,
    stalled: AtomicBool,
    release: AtomicBool,
}

impl Gauge {
    /// Counts a service request; true when it is the one to stall (then returns once
    /// released, and the request must be dropped unprocessed).
    fn stall(&self, stop: &AtomicBool) -> bool {
        let n = self.seen.fetch_add(1, Ordering::SeqCst) + 1;
        if self.stall_after.load(Ordering::SeqCst) != n {
            return false;
        }
        self.stalled.store(true, Ordering::SeqCst);
        while !self.release.load(Ordering::SeqCst) && !stop.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(5));
        }
        true
    }

    fn enter(&self) {
        let n = self.now.fetch_add(1, Ordering::SeqCst) + 1;
        self.peak.fetch_max(n, Ordering::SeqCst);
    }
    fn leave(&self) {
        self.now.fetch_sub(1, Ordering::SeqCst);
    }
}

/// A running emulator.
pub struct Running {
    pub addr: SocketAddr,
    stop: Arc<AtomicBool>,
    accept: Option<JoinHandle<()>>,
    /// Faults injected into service requests (never into `/_emulator/…`).
    pub chaos: Arc<Mutex<Option<Chaos>>>,
}

impl Running {
    /// `http://127.0.0.1:PORT`
    pub fn base(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Stops accepting; open connections end after their request in flight.
    pub fn stop(mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
        if let Some(h) = self.accept.take() {
            let _ = h.join();
        }
    }

    /// Blocks until the process is killed (standalone `scimsync emulate`).
    pub fn wait(mut self) {
        if let Some(h) = self.accept.take() {
            let _ = h.join();
        }
    }

    pub fn set_chaos(&self, chaos: Option<Chaos>) {
        if let Ok(mut c) = self.chaos.lock() {
            *c = chaos;
        }
    }
}

/// Serves `service` on an already bound listener.
pub fn serve<S: Service>(listener: TcpListener, shared: Arc<Mutex<S>>) -> Result<Running, String> {
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    let stop = Arc::new(AtomicBool::new(false));
    let chaos: Arc<Mutex<Option<Chaos>>> = Arc::default();
    let open = Arc::new(AtomicUsize::new(0));
    let gauge = Arc::new(Gauge::default());
    let accept = {
        let (stop, chaos) = (Arc::clone(&stop), Arc::clone(&chaos));
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                if stop.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(conn) = conn else { continue };
                if open.load(Ordering::SeqCst) >= MAX_CONNECTIONS {
                    continue;
                }
                open.fetch_add(1, Ordering::SeqCst);
                let (stop, chaos, shared, open, gauge) = (
                    Arc::clone(&stop),
                    Arc::clone(&chaos),
                    Arc::clone(&shared),
                    Arc::clone(&open),
                    Arc::clone(&gauge),
                );
                std::thread::spawn(move || {
                    let _ = connection(conn, &shared, &chaos, &stop, &gauge);
                    open.fetch_sub(1, Ordering::SeqCst);
                });
            }
        })
    };
    Ok(Running {
        addr,
        stop,
        accept: Some(accept),
        chaos,
    })
}

/// Serves one connection until the client closes it, asks to, or the server stops.
fn connection<S: Service>(
    conn: TcpStream,
    shared: &Mutex<S>,
    chaos: &Mutex<Option<Chaos>>,
    stop: &AtomicBool,
    gauge: &Gauge,
) -> std::io::Result<()> {
    conn.set_nodelay(true)?;
    conn.set_read_timeout(Some(POLL))?;
    let mut out = conn.try_clone()?;
    let mut reader = BufReader::new(conn);
    loop {
        let Some((req, keep_alive)) = read_request(&mut reader, stop)? else {
            return Ok(());
        };
        let admin = req.segments.first().map(String::as_str) == Some("_emulator");
        let fault = if admin {
            None
        } else {
            let path = format!("{} {}", req.method, req.segments.join("/"));
            chaos
                .lock()
                .ok()
                .and_then(|mut c| c.as_mut().and_then(|c| c.draw_for(&path)))
        };
        if admin && req.segments.get(1).map(String::as_str) == Some("chaos") {
            let resp = configure_chaos(shared, chaos, gauge, &req);
            write_response(&mut out, resp, "application/json", keep_alive, false)?;
            continue;
        }
        if !admin && gauge.stall(stop) {
            let _ = socket2::SockRef::from(&out).set_linger(Some(Duration::ZERO));
            return Ok(());
        }
        if !admin {
            gauge.enter();
        }
        let answered = answer(shared, &mut out, req, fault, keep_alive);
        if !admin {
            gauge.leave();
        }
        if !answered? {
            return Ok(());
        }
    }
}

/// Answers one request, faults included; false when the connection must end.
fn answer<S: Service>(
    shared: &Mutex<S>,
    out: &mut TcpStream,
    req: Request,
    fault: Option<Fault>,
    keep_alive: bool,
) -> std::io::Result<bool> {
    {
        let (resp, ctype, delay) = match fault {
            Some(Fault::Reset) => {
                // SO_LINGER 0: closing sends RST, as a dropped middlebox connection does.
                let _ = socket2::SockRef::from(&*out).set_linger(Some(Duration::ZERO));
                return Ok(false);
            }
            Some(Fault::Throttle(secs)) => {
                let mut r = Response::json(
                    429,
                    serde_json::json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:Error"],
                                       "status": "429", "detail": "too many requests (injected)"}),
                );
                r.headers.push(("Retry-After".into(), secs.to_string()));
                (r, "application/scim+json", Duration::ZERO)
            }
            Some(Fault::Server) => (
                Response::json(
                    500,
                    serde_json::json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:Error"],
                                       "status": "500", "detail": "internal error (injected)"}),
                ),
                "application/scim+json",
                Duration::ZERO,
            ),
            Some(Fault::Html) => (
                Response::text(
                    200,
                    "text/html",
                    "<html><head><title>502 Bad Gateway</title></head><body><h1>Bad Gateway</h1><p>The proxy could not reach the service (injected).</p></body></html>".into(),
                ),
                "text/html",
                Duration::ZERO,
            ),
            Some(Fault::Empty) => (Response::text(200, "application/json", String::new()), "application/json", Duration::ZERO),
            Some(Fault::Deep) => (
                Response::text(
                    200,
                    "application/json",
                    format!("{{\"value\":{}{}}}", "[".repeat(400), "]".repeat(400)),
                ),
                "application/json",
                Duration::ZERO,
            ),
            _ => {
                let mut svc = match shared.lock() {
                    Ok(g) => g,
                    Err(p) => p.into_inner(),
                };
                (svc.handle(&req), svc.content_type(), svc.latency())
            }
        };
        let delay = match fault {
            Some(Fault::Slow(d)) => delay + d,
            _ => delay,
        };
        if !delay.is_zero() {
            std::thread::sleep(delay);
        }
        let cut = fault == Some(Fault::Cut);
        write_response(out, resp, ctype, keep_alive && !cut, cut)?;
        Ok(!cut && keep_alive)
    }
}

/// `POST /_emulator/chaos {"faults": "429=5%,…", "seed": 7}` sets the faults
/// (`{}` clears them); `GET` reports how many were injected.
fn configure_chaos<S: Service>(
    shared: &Mutex<S>,
    chaos: &Mutex<Option<Chaos>>,
    gauge: &Gauge,
    req: &Request,
) -> Response {
    let authorized = shared.lock().map(|s| s.authorized(req)).unwrap_or(false);
    if !authorized {
        return Response::json(
            401,
            serde_json::json!({"detail": "invalid or missing token"}),
        );
    }
    let Ok(mut c) = chaos.lock() else {
        return Response::empty(500);
    };
    let b: serde_json::Value = serde_json::from_str(&req.body).unwrap_or_default();
    if req.method == "POST" && (b.get("stall_after").is_some() || b.get("release").is_some()) {
        // {"stall_after": N} holds the Nth service request from now; {"release": true}
        // lets a held one go (dropped unprocessed). Faults are left as they are.
        let after = b.get("stall_after").and_then(|v| v.as_u64()).unwrap_or(0);
        gauge.release.store(after == 0, Ordering::SeqCst);
        gauge.stalled.store(false, Ordering::SeqCst);
        gauge.seen.store(0, Ordering::SeqCst);
        gauge.stall_after.store(after, Ordering::SeqCst);
    } else if req.method == "POST" {
        gauge.peak.store(0, Ordering::SeqCst);
        match b.get("faults").and_then(|f| f.as_str()) {
            None => *c = None,
            Some(spec) => {
                let seed = b.get("seed").and_then(|s| s.as_u64()).unwrap_or(1);
                match Chaos::parse(spec, seed) {
                    Ok(mut x) => {
                        x.only = b.get("only").and_then(|o| o.as_str()).map(str::to_string);
                        *c = Some(x)
                    }
                    Err(e) => return Response::json(400, serde_json::json!({"detail": e})),
                }
            }
        }
    }
    let injected = c.as_ref().map(|x| x.injected.clone()).unwrap_or_default();
    Response::json(
        200,
        serde_json::json!({"injected": injected, "peak_in_flight": gauge.peak.load(Ordering::SeqCst),
                           "stalled": gauge.stalled.load(Ordering::SeqCst)}),
    )
}

/// Reads bytes up to and including `\n`, riding out read timeouts (checking `stop`
/// while nothing has arrived). `None` at a clean end of the connection.
fn read_line<R: BufRead>(
    r: &mut R,
    stop: &AtomicBool,
    idle: bool,
) -> std::io::Result<Option<Vec<u8>>> {
    let mut line = vec![];
    let started = Instant::now();
    loop {
        match r.read_until(b'\n', &mut line) {
            Ok(0) if line.is_empty() => return Ok(None),
            Ok(_) if line.ends_with(b"\n") => return Ok(Some(line)),
            Ok(0) => return Ok(None),
            Ok(_) => {}
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                if stop.load(Ordering::SeqCst) && line.is_empty() {
                    return Ok(None);
                }
                if !(idle && line.is_empty()) && started.elapsed() > STALL {
                    return Err(e);
                }
            }
            Err(e) => return Err(e),
        }
        if line.len() > MAX_HEAD {
            return Err(std::io::Error::other("request head too large"));
        }
    }
}

fn read_exact_patiently<R: Read>(r: &mut R, buf: &mut [u8]) -> std::io::Result<()> {
    let started = Instant::now();
    let mut at = 0;
    while at < buf.len() {
        match r.read(&mut buf[at..]) {
            Ok(0) => return Err(std::io::ErrorKind::UnexpectedEof.into()),
            Ok(n) => at += n,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                if started.elapsed() > STALL {
                    return Err(e);
                }
            }
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// One request; `None` when the connection ended between requests.
fn read_request<R: BufRead>(
    r: &mut R,
    stop: &AtomicBool,
) -> std::io::Result<Option<(Request, bool)>> {
    let mut first = loop {
        let Some(l) = read_line(r, stop, true)? else {
            return Ok(None);
        };
        // Tolerate blank lines between requests (RFC 9112 §2.2).
        if !l.trim_ascii().is_empty() {
            break l;
        }
    };
    let text = String::from_utf8_lossy(&std::mem::take(&mut first)).into_owned();
    let mut parts = text.split_whitespace();
    let (Some(method), Some(target), version) = (parts.next(), parts.next(), parts.next()) else {
        return Err(std::io::Error::other("bad request line"));
    };
    let mut keep_alive = version != Some("HTTP/1.0");
    let (mut length, mut chunked, mut authorization) = (0usize, false, None);
    let mut head = 0;
    loop {
        let Some(l) = read_line(r, stop, false)? else {
            return Ok(None);
        };
        head += l.len();
        if head > MAX_HEAD {
            return Err(std::io::Error::other("request head too large"));
        }
        let l = String::from_utf8_lossy(&l);
        let l = l.trim_end();
        if l.is_empty() {
            break;
        }
        let Some((k, v)) = l.split_once(':') else {
            continue;
        };
        let v = v.trim();
        match k.trim().to_ascii_lowercase().as_str() {
            "content-length" => {
                length = v
                    .parse()
                    .map_err(|_| std::io::Error::other("bad Content-Length"))?
            }
            "transfer-encoding" => chunked = v.to_ascii_lowercase().contains("chunked"),
            "authorization" => authorization = Some(v.to_string()),
            "connection" => {
                let v = v.to_ascii_lowercase();
                if v.contains("close") {
                    keep_alive = false;
                } else if v.contains("keep-alive") {
                    keep_alive = true;
                }
            }
            _ => {}
        }
    }
    let mut body = vec![];
    if chunked {
        loop {
            let Some(l) = read_line(r, stop, false)? else {
                return Ok(None);
            };
            let size_text = String::from_utf8_lossy(&l);
            let size =
                usize::from_str_radix(size_text.trim().split(';').next().unwrap_or("").trim(), 16)
                    .map_err(|_| std::io::Error::other("bad chunk size"))?;
            if size == 0 {
                // Trailers, up to the empty line.
                while let Some(t) = read_line(r, stop, false)? {
                    if t.trim_ascii().is_empty() {
                        break;
                    }
                }
                break;
            }
            if body.len() + size > MAX_BODY {
                return Err(std::io::Error::other("request body too large"));
            }
            let at = body.len();
            body.resize(at + size, 0);
            read_exact_patiently(r, &mut body[at..])?;
            let _ = read_line(r, stop, false)?;
        }
    } else if length > 0 {
        if length > MAX_BODY {
            return Err(std::io::Error::other("request body too large"));
        }
        body.resize(length, 0);
        read_exact_patiently(r, &mut body)?;
    }
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let segments = path
        .split('/')
        .filter(|s| !s.is_empty())
        .map(super::percent_decode)
        .collect();
    let query = query
        .split('&')
        .filter(|s| !s.is_empty())
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            (
                super::percent_decode(&k.replace('+', " ")),
                super::percent_decode(&v.replace('+', " ")),
            )
        })
        .collect();
    Ok(Some((
        Request {
            method: method.to_ascii_uppercase(),
            segments,
            query,
            authorization,
            body: String::from_utf8_lossy(&body).into_owned(),
        },
        keep_alive,
    )))
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        204 => "No Content",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        409 => "Conflict",
        410 => "Gone",
        412 => "Precondition Failed",
        413 => "Payload Too Large",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        503 => "Service Unavailable",
        _ => "Status",
    }
}

/// Writes a response in one piece (headers and body together, so no 40 ms Nagle
/// stall); `cut` sends the head and half the body, then closes.
fn write_response(
    out: &mut TcpStream,
    resp: Response,
    ctype: &str,
    keep_alive: bool,
    cut: bool,
) -> std::io::Result<()> {
    let (ctype, body) = match resp.raw {
        Some((t, text)) => (t, text),
        None => (ctype, resp.body.map(|b| b.to_string()).unwrap_or_default()),
    };
    let mut head = format!(
        "HTTP/1.1 {} {}\r\nContent-Length: {}\r\n",
        resp.status,
        reason(resp.status),
        body.len()
    );
    if resp.status != 204 {
        head.push_str(&format!("Content-Type: {ctype}\r\n"));
    }
    for (k, v) in &resp.headers {
        if !k.contains(['\r', '\n']) && !v.contains(['\r', '\n']) {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
    }
    if !keep_alive {
        head.push_str("Connection: close\r\n");
    }
    head.push_str("\r\n");
    let mut bytes = head.into_bytes();
    let body = body.into_bytes();
    if cut {
        bytes.extend_from_slice(&body[..body.len() / 2]);
        out.write_all(&bytes)?;
        out.flush()?;
        return out.shutdown(std::net::Shutdown::Both);
    }
    bytes.extend_from_slice(&body);
    out.write_all(&bytes)?;
    out.flush()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chaos_is_reproducible_and_near_its_rates() {
        let mut a = Chaos::parse("429=5%:2,500=2%,reset=1%,slow=1%:2s,cut=1%", 42).unwrap();
        let mut b = Chaos::parse("429=5%:2,500=2%,reset=1%,slow=1%:2s,cut=1%", 42).unwrap();
        let xs: Vec<_> = (0..20_000).map(|_| a.draw()).collect();
        let ys: Vec<_> = (0..20_000).map(|_| b.draw()).collect();
        assert_eq!(xs, ys);
        let throttled = xs
            .iter()
            .filter(|f| **f == Some(Fault::Throttle(2)))
            .count();
        assert!((800..1200).contains(&throttled), "{throttled}");
        assert!(xs.contains(&Some(Fault::Slow(Duration::from_secs(2)))));
        assert_eq!(
            a.injected.values().sum::<u64>() as usize,
            xs.iter().flatten().count()
        );
    }

    #[test]
    fn bad_fault_specs_say_what_is_wrong() {
        assert!(Chaos::parse("418=5%", 1).unwrap_err().contains("418"));
        assert!(Chaos::parse("429=five", 1)
            .unwrap_err()
            .contains("percentage"));
        assert!(Chaos::parse("429=80%,500=30%", 1)
            .unwrap_err()
            .contains("100%"));
        assert!(Chaos::parse("slow=1%:forever", 1)
            .unwrap_err()
            .contains("seconds"));
        assert!(Chaos::parse("", 1).unwrap().draw().is_none());
    }
}
