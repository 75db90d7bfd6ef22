//! The loopback peers as child processes, killed on drop: the Dropbox and Graph
//! emulators (`scimsync emulate`), and the third-party scim2-server.

use super::{call_json, try_call, Workspace, BIN};
use serde_json::{json, Value};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

/// A running `scimsync emulate dropbox`, killed on drop.
pub struct Emulator {
    child: Child,
    _stdout: BufReader<std::process::ChildStdout>,
    pub scim: String,
    pub base: String,
    pub token: String,
}

impl Emulator {
    pub fn start() -> Emulator {
        Self::start_with(&[])
    }

    /// With extra `emulate dropbox` options (`--faults`, `--seed`, `--latency-ms`).
    #[track_caller]
    pub fn start_with(extra: &[&str]) -> Emulator {
        let token = format!("tok-{}", std::process::id());
        let mut child = Command::new(BIN)
            .args([
                "emulate",
                "dropbox",
                "--listen",
                "127.0.0.1:0",
                "--token",
                &token,
            ])
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start emulator");
        let out = child.stdout.take().expect("stdout");
        let mut line = String::new();
        let mut reader = BufReader::new(out);
        reader.read_line(&mut line).expect("read base url");
        let scim = line.trim().to_string();
        assert!(
            scim.starts_with("http://127.0.0.1:"),
            "emulator said {scim:?}"
        );
        let base = scim.trim_end_matches("/scim/v2").to_string();
        Emulator {
            child,
            _stdout: reader,
            scim,
            base,
            token,
        }
    }

    fn call(&self, method: &str, path: &str, body: Option<&Value>) -> (u16, Value) {
        call_json(
            method,
            &format!("{}{path}", self.base),
            Some(&self.token),
            body,
        )
    }

    #[track_caller]
    pub fn get(&self, path: &str) -> Value {
        let (status, v) = self.call("GET", path, None);
        assert_eq!(status, 200, "GET {path}: {v}");
        v
    }

    pub fn post(&self, path: &str, body: Value) -> (u16, Value) {
        self.call("POST", path, Some(&body))
    }

    /// Any request to the emulator (a hand-made change in the team): the status.
    pub fn send(&self, method: &str, path: &str, body: Option<Value>) -> u16 {
        self.call(method, path, body.as_ref()).0
    }

    /// The team's userNames, lower-cased and sorted.
    pub fn user_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .users()
            .iter()
            .map(|u| u["userName"].as_str().unwrap().to_lowercase())
            .collect();
        names.sort();
        names
    }

    /// All users as SCIM resources.
    /// Every resource of a collection, page by page.
    fn all(&self, what: &str) -> Vec<Value> {
        let mut out = vec![];
        loop {
            let page = self.get(&format!(
                "/scim/v2/{what}?count=1000&startIndex={}",
                out.len() + 1
            ));
            let items = page["Resources"].as_array().cloned().unwrap_or_default();
            let total = page["totalResults"].as_u64().unwrap_or(0) as usize;
            let n = items.len();
            out.extend(items);
            if n == 0 || out.len() >= total {
                return out;
            }
        }
    }

    pub fn users(&self) -> Vec<Value> {
        self.all("Users")
    }

    pub fn groups(&self) -> Vec<Value> {
        self.all("Groups")
    }

    pub fn user(&self, user_name: &str) -> Option<Value> {
        self.users().into_iter().find(|u| {
            u["userName"]
                .as_str()
                .map(|n| n.eq_ignore_ascii_case(user_name))
                .unwrap_or(false)
        })
    }

    pub fn group(&self, name: &str) -> Option<Value> {
        self.groups().into_iter().find(|g| g["displayName"] == name)
    }

    /// userNames of a group's members.
    pub fn group_members(&self, name: &str) -> Vec<String> {
        let users = self.users();
        let g = self.group(name).expect("group exists");
        let mut names: Vec<String> = g["members"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .iter()
            .filter_map(|m| {
                let id = m["value"].as_str()?;
                users
                    .iter()
                    .find(|u| u["id"] == id)
                    .and_then(|u| u["userName"].as_str().map(str::to_string))
            })
            .collect();
        names.sort();
        names
    }

    /// Member status (invited/active/suspended) by userName.
    pub fn status(&self, user_name: &str) -> Option<String> {
        self.get("/_emulator/members")
            .as_array()
            .cloned()
            .unwrap_or_default()
            .into_iter()
            .find(|m| {
                m["userName"]
                    .as_str()
                    .map(|n| n.eq_ignore_ascii_case(user_name))
                    .unwrap_or(false)
            })
            .and_then(|m| m["status"].as_str().map(str::to_string))
    }

    #[track_caller]
    pub fn accept_all(&self) {
        let (s, _) = self.post("/_emulator/accept", json!({}));
        assert_eq!(s, 200);
    }

    #[track_caller]
    pub fn reset_stats(&self) {
        let (status, _) = self.call("POST", "/_emulator/reset-stats", None);
        assert_eq!(status, 204);
    }

    /// Faults injected so far by kind, and the most requests answered at once.
    pub fn wire(&self) -> (Value, u64) {
        let s = self.get("/_emulator/chaos");
        (
            s["injected"].clone(),
            s["peak_in_flight"].as_u64().unwrap_or(0),
        )
    }

    /// Answers `status` to the next `count` requests whose URL or body contains
    /// `needle`.
    #[track_caller]
    pub fn fail_requests(&self, needle: &str, status: u16, count: u64) {
        let (s, _) = self.post(
            "/_emulator/faults",
            json!({"match": needle, "status": status, "count": count}),
        );
        assert_eq!(s, 200);
    }

    /// Deletes an object behind scimsync's back, as an admin in the console would.
    #[track_caller]
    pub fn delete(&self, path: &str) {
        let (status, _) = self.call("DELETE", path, None);
        assert!(status < 300, "DELETE {path}: {status}");
    }

    /// Stops injecting faults (so the test's own reads are not hit).
    #[track_caller]
    pub fn clear_faults(&self) {
        let (s, _) = self.post("/_emulator/chaos", json!({}));
        assert_eq!(s, 200);
    }

    /// Requests served since the last reset, e.g. "PATCH /Users" → 1.
    pub fn stats(&self) -> (Value, u64) {
        let s = self.get("/_emulator/stats");
        (s["requests"].clone(), s["writes"].as_u64().unwrap_or(0))
    }
}

impl Drop for Emulator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A running `scimsync emulate graph`, killed on drop.
pub struct GraphEmulator {
    child: Child,
    _stdout: BufReader<std::process::ChildStdout>,
    pub base: String,
    pub secret: String,
    pub data: PathBuf,
}

pub const GRAPH_APP: &str = "11111111-2222-3333-4444-555555555555";

impl GraphEmulator {
    pub fn start(dir: &Path, doc: &Value, page_size: usize) -> GraphEmulator {
        Self::start_with(dir, doc, page_size, &[])
    }

    /// With extra `emulate graph` options (`--client-certificate`, …).
    #[track_caller]
    pub fn start_with(dir: &Path, doc: &Value, page_size: usize, extra: &[&str]) -> GraphEmulator {
        let data = dir.join("graph-directory.json");
        std::fs::write(&data, serde_json::to_string_pretty(doc).unwrap()).unwrap();
        let secret = format!("graph-secret-{}", std::process::id());
        let mut child = Command::new(BIN)
            .args([
                "emulate",
                "graph",
                "--listen",
                "127.0.0.1:0",
                "--data",
                data.to_str().unwrap(),
            ])
            .args([
                "--client-secret",
                &secret,
                "--page-size",
                &page_size.to_string(),
                "--app",
                GRAPH_APP,
            ])
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start graph emulator");
        let mut reader = BufReader::new(child.stdout.take().expect("stdout"));
        let mut line = String::new();
        reader.read_line(&mut line).expect("base url");
        let base = line.trim().to_string();
        assert!(
            base.starts_with("http://127.0.0.1:"),
            "graph emulator said {base:?}"
        );
        GraphEmulator {
            child,
            _stdout: reader,
            base,
            secret,
            data,
        }
    }

    /// Edits the directory the emulator serves (picked up on the next request).
    pub fn write(&self, doc: &Value) {
        // Write-then-rename so the emulator never reads half a file.
        let tmp = self.data.with_extension("tmp");
        std::fs::write(&tmp, serde_json::to_string_pretty(doc).unwrap()).unwrap();
        std::fs::rename(&tmp, &self.data).unwrap();
    }

    /// A call to the emulator's admin routes; a refusal fails the test.
    #[track_caller]
    fn admin(&self, method: &str, what: &str, body: Option<&Value>) -> Value {
        let url = format!("{}/_emulator/{what}", self.base);
        let (status, v) = call_json(method, &url, Some(&self.secret), body);
        assert!(status < 300, "{method} {what}: {status} {v}");
        v
    }

    pub fn configure(&self, body: Value) {
        self.admin("POST", "config", Some(&body));
    }

    /// Injects random faults (`{}` answer of `/_emulator/chaos`: faults so far).
    pub fn chaos(&self, faults: &str, seed: u64) -> Value {
        self.admin(
            "POST",
            "chaos",
            Some(&json!({"faults": faults, "seed": seed})),
        )
    }

    /// Injects faults into the requests whose path ends with `only` (e.g.
    /// "v1.0/users"); `faults` empty clears them.
    pub fn fault_only(&self, faults: &str, only: &str) {
        let body = if faults.is_empty() {
            json!({})
        } else {
            json!({"faults": faults, "seed": 1, "only": only})
        };
        self.admin("POST", "chaos", Some(&body));
    }

    pub fn injected(&self) -> Value {
        self.admin("GET", "chaos", None)["injected"].clone()
    }

    pub fn expire_deltas(&self) {
        self.admin("POST", "expire-deltas", None);
    }

    pub fn reset_stats(&self) {
        self.admin("POST", "reset-stats", None);
    }

    /// Requests served by route, e.g. "GET users/delta".
    pub fn stats(&self) -> Value {
        self.admin("GET", "stats", None)["requests"].clone()
    }

    /// Gives a provisioning job of the app a synchronization schema (what Entra's
    /// own job holds).
    pub fn put_schema(&self, job: &str, schema: &Value) {
        self.admin("PUT", &format!("schema/{job}"), Some(schema));
    }

    /// Points a workspace's config at this emulator as a `graph` source.
    pub fn configure_workspace(&self, ws: &Workspace, secret_ref: &str) {
        let cfg = ws.dir.join("scimsync.toml");
        let text = std::fs::read_to_string(&cfg).unwrap();
        let graph = format!(
            "[source]\ntype = \"graph\"\ntenant = \"contoso.onmicrosoft.com\"\nclient_id = \"scimsync-client\"\nclient_secret = \"{secret_ref}\"\napp = \"{GRAPH_APP}\"\nscope = \"assigned\"\ngraph_url = \"{b}\"\nlogin_url = \"{b}\"\n",
            b = self.base
        );
        let start = text.find("[source]").unwrap();
        let end = text.find("[target]").unwrap();
        std::fs::write(
            &cfg,
            format!("{}{}\n{}", &text[..start], graph, &text[end..]),
        )
        .unwrap();
    }
}

impl Drop for GraphEmulator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A tool from the Python venv `.ci/run` installs (`.ci/venv`), or from PATH.
pub fn python_tool(name: &str) -> Option<PathBuf> {
    let venv = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join(".ci/venv/bin")
        .join(name);
    if venv.exists() {
        return Some(venv);
    }
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .map(|d| Path::new(d).join(name))
        .find(|p| p.exists())
}

/// A running scim2-server (a third-party, RFC-strict SCIM server), killed on drop.
pub struct ScimServer {
    child: Child,
    pub url: String,
    pub token: String,
}

impl ScimServer {
    /// Starts it on a free loopback port; `None` (with the reason printed) when the
    /// server is not installed.
    pub fn start(service_provider_config: Option<&Path>) -> Option<ScimServer> {
        let Some(bin) = python_tool("scim2-server") else {
            super::peer_missing("scim2-server (in .ci/venv)");
            return None;
        };
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let token = format!("s2s-{}", std::process::id());
        let mut cmd = Command::new(bin);
        cmd.args([
            "--bearer-token",
            &token,
            "--hostname",
            "127.0.0.1",
            "--port",
            &port.to_string(),
        ]);
        if let Some(spc) = service_provider_config {
            cmd.arg("--service-provider-config").arg(spc);
        }
        let child = cmd
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start scim2-server");
        let url = format!("http://127.0.0.1:{port}");
        let server = ScimServer { child, url, token };
        let t = std::time::Instant::now();
        while t.elapsed() < std::time::Duration::from_secs(30) {
            if server.get("/ServiceProviderConfig").is_some() {
                return Some(server);
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        panic!("scim2-server did not start on {}", server.url);
    }

    pub fn get(&self, path: &str) -> Option<Value> {
        let url = format!("{}{path}", self.url);
        match try_call("GET", &url, Some(&self.token), None) {
            Ok((200, text)) => serde_json::from_str(&text).ok(),
            _ => None,
        }
    }

    pub fn all(&self, what: &str) -> Vec<Value> {
        let mut out = vec![];
        loop {
            let page = self
                .get(&format!("/{what}?count=1000&startIndex={}", out.len() + 1))
                .expect("list");
            let items = page["Resources"].as_array().cloned().unwrap_or_default();
            let total = page["totalResults"].as_u64().unwrap_or(0) as usize;
            let n = items.len();
            out.extend(items);
            if n == 0 || out.len() >= total {
                return out;
            }
        }
    }
}

impl Drop for ScimServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
