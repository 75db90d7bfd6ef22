//! The Microsoft Graph emulator: an Entra tenant served from a directory file.
//!
//! It answers the client-credentials token endpoint (checking tenant, client id and
//! secret), the service principal with its appRoles, `appRoleAssignedTo`, `users`,
//! soft-deleted users (`directory/deletedItems/microsoft.graph.user`), `groups`,
//! `groups/{id}/members`, and `users/delta` / `groups/delta` with real
//! deltaLinks: every edit of the file (picked up on the next request) becomes a new
//! version, and a deltaLink returns exactly what changed since its version —
//! `@removed` with reason `changed` for a soft-deleted user (`deletedDateTime` set),
//! `deleted` for one removed from the file, `members@delta` for membership changes.
//! Paging (`@odata.nextLink`, a configurable page size), throttling (429 with
//! Retry-After every Nth request) and expiring delta tokens (410 syncStateNotFound)
//! can be switched on through `/_emulator/config` and `/_emulator/expire-deltas`;
//! so can two broken services a client must not trust: paging that never ends
//! (`"endless": "users"`) and deltaLinks on another host (`"delta_base"`).

use super::{Request, Response, Service};
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;
use std::time::SystemTime;

/// The appRoleId Entra uses for "Default Access".
pub use crate::model::DEFAULT_ACCESS_ROLE_ID;

/// Who may get a token, and the service principal served.
#[derive(Debug, Clone)]
pub struct Tenant {
    pub tenant: String,
    pub client_id: String,
    pub client_secret: String,
    /// Object id of the app's service principal.
    pub app: String,
    /// Access token lifetime in seconds.
    pub token_lifetime: u64,
    /// A certificate registered with the app (DER): client assertions signed with
    /// its key are accepted.
    pub certificate: Option<Vec<u8>>,
    /// A federated token accepted as a client assertion (workload identity).
    pub federated_token: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
enum Change {
    User(String),
    Group(String),
    Member {
        group: String,
        member: String,
        added: bool,
    },
}

#[derive(Debug, Default, Clone)]
struct Data {
    users: Vec<Value>,
    groups: Vec<Value>,
    assignments: Vec<Value>,
}

pub struct Graph {
    path: PathBuf,
    tenant: Tenant,
    stamp: Option<(SystemTime, u64)>,
    data: Data,
    version: u64,
    /// Delta tokens below this version are expired.
    oldest: u64,
    instance: String,
    history: Vec<(u64, Change)>,
    tokens: HashSet<String>,
    page_size: usize,
    throttle_every: u64,
    retry_after: u64,
    served: u64,
    requests: BTreeMap<String, u64>,
    base: String,
    /// Fault modes for tests: pages of this route never end (each with a new
    /// nextLink), and deltaLinks on another base than the emulator's own.
    endless: Option<String>,
    delta_base: Option<String>,
    /// Synchronization schemas of the provisioning jobs, by job id (set with
    /// `PUT /_emulator/schema/{job}`).
    schemas: BTreeMap<String, Value>,
}

/// A stable GUID for an app role name.
pub fn role_id(name: &str) -> String {
    if name == crate::model::DEFAULT_ACCESS {
        return DEFAULT_ACCESS_ROLE_ID.into();
    }
    let h = format!("{:x}", Sha256::digest(name.as_bytes()));
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

fn graph_error(status: u16, code: &str, message: &str) -> Response {
    Response::json(status, json!({"error": {"code": code, "message": message}}))
}

fn id_of(v: &Value) -> &str {
    v.get("id").and_then(|i| i.as_str()).unwrap_or("")
}

fn members_of(g: &Value) -> Vec<String> {
    g.get("members")
        .and_then(|m| m.as_array())
        .map(|a| {
            a.iter()
                .filter_map(|x| x.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

fn without_members(g: &Value) -> Value {
    let mut g = g.clone();
    if let Some(o) = g.as_object_mut() {
        o.remove("members");
    }
    g
}

/// The route as counted per kind of request: ids replaced by `{id}`.
fn route_key(route: &[&str]) -> String {
    route
        .iter()
        .enumerate()
        .map(|(i, s)| {
            if i % 2 == 1
                && !s.contains("delta")
                && *s != "members"
                && *s != "appRoleAssignedTo"
                && *s != "deletedItems"
                && !matches!(*s, "synchronization" | "jobs" | "schema")
            {
                "{id}"
            } else {
                s
            }
        })
        .collect::<Vec<_>>()
        .join("/")
}

fn soft_deleted(u: &Value) -> bool {
    u.get("deletedDateTime")
        .map(|d| !d.is_null())
        .unwrap_or(false)
}

impl Graph {
    pub fn new(path: PathBuf, tenant: Tenant) -> Result<Graph, String> {
        let mut g = Graph {
            path,
            tenant,
            stamp: None,
            data: Data::default(),
            version: 1,
            oldest: 0,
            instance: crate::ids::random_hex(8),
            history: vec![],
            tokens: HashSet::new(),
            page_size: 100,
            throttle_every: 0,
            retry_after: 1,
            served: 0,
            requests: BTreeMap::new(),
            base: String::new(),
            endless: None,
            delta_base: None,
            schemas: BTreeMap::new(),
        };
        g.refresh()?;
        Ok(g)
    }

    /// Sets the public base URL (for nextLinks and deltaLinks).
    pub fn set_base(&mut self, base: &str) {
        self.base = base.to_string();
    }

    pub fn set_page_size(&mut self, n: usize) {
        self.page_size = n.clamp(1, 999);
    }

    /// Reloads the file if it changed; records what changed as a new version.
    fn refresh(&mut self) -> Result<(), String> {
        let meta =
            std::fs::metadata(&self.path).map_err(|e| format!("{}: {e}", self.path.display()))?;
        let stamp = (
            meta.modified().unwrap_or(SystemTime::UNIX_EPOCH),
            meta.len(),
        );
        if self.stamp == Some(stamp) {
            return Ok(());
        }
        let text = std::fs::read_to_string(&self.path)
            .map_err(|e| format!("{}: {e}", self.path.display()))?;
        let doc: Value = match serde_json::from_str(&text) {
            Ok(d) => d,
            // A file caught half-written: keep serving the last good version.
            Err(e) if self.stamp.is_some() => {
                log::warn!(
                    "graph emulator: {} is not valid JSON yet ({e}); serving the previous version",
                    self.path.display()
                );
                return Ok(());
            }
            Err(e) => return Err(format!("{}: not valid JSON: {e}", self.path.display())),
        };
        let list = |k: &str| {
            doc.get(k)
                .and_then(|v| v.as_array())
                .cloned()
                .unwrap_or_default()
        };
        let new = Data {
            users: list("users"),
            groups: list("groups"),
            assignments: list("assignments"),
        };
        if self.stamp.is_some() {
            self.version += 1;
            let v = self.version;
            // A record without an id is no object: it has no history of its own.
            let old_users: HashMap<&str, &Value> = self
                .data
                .users
                .iter()
                .map(|u| (id_of(u), u))
                .filter(|(id, _)| !id.is_empty())
                .collect();
            let new_users: HashMap<&str, &Value> = new
                .users
                .iter()
                .map(|u| (id_of(u), u))
                .filter(|(id, _)| !id.is_empty())
                .collect();
            for u in new.users.iter().filter(|u| !id_of(u).is_empty()) {
                if old_users.get(id_of(u)) != Some(&u) {
                    self.history.push((v, Change::User(id_of(u).to_string())));
                }
            }
            for id in old_users.keys().filter(|id| !new_users.contains_key(*id)) {
                self.history.push((v, Change::User(id.to_string())));
            }
            let old_groups: HashMap<&str, &Value> =
                self.data.groups.iter().map(|g| (id_of(g), g)).collect();
            let new_groups: HashMap<&str, &Value> =
                new.groups.iter().map(|g| (id_of(g), g)).collect();
            for g in &new.groups {
                let gid = id_of(g).to_string();
                let before = old_groups.get(gid.as_str());
                if before.map(|b| without_members(b)) != Some(without_members(g)) {
                    self.history.push((v, Change::Group(gid.clone())));
                }
                let was: HashSet<String> = before
                    .map(|b| members_of(b).into_iter().collect())
                    .unwrap_or_default();
                let now: HashSet<String> = members_of(g).into_iter().collect();
                for m in now.difference(&was) {
                    self.history.push((
                        v,
                        Change::Member {
                            group: gid.clone(),
                            member: m.clone(),
                            added: true,
                        },
                    ));
                }
                for m in was.difference(&now) {
                    self.history.push((
                        v,
                        Change::Member {
                            group: gid.clone(),
                            member: m.clone(),
                            added: false,
                        },
                    ));
                }
            }
            for id in old_groups.keys().filter(|id| !new_groups.contains_key(*id)) {
                self.history.push((v, Change::Group(id.to_string())));
            }
        }
        self.data = new;
        self.stamp = Some(stamp);
        Ok(())
    }

    fn token(&self) -> String {
        format!("{}.{}", self.instance, self.version)
    }

    /// The version a delta token stands for, or why it cannot be used.
    fn parse_token(&self, t: &str) -> Result<u64, Response> {
        let expired = || {
            graph_error(410, "syncStateNotFound", "The sync state was not found or has expired; restart the delta query without a token.")
        };
        let (inst, v) = t.rsplit_once('.').ok_or_else(expired)?;
        let v: u64 = v.parse().map_err(|_| expired())?;
        if inst != self.instance || v < self.oldest || v > self.version {
            return Err(expired());
        }
        Ok(v)
    }

    fn select(v: &Value, select: &Option<Vec<String>>) -> Value {
        match (select, v) {
            (Some(keys), Value::Object(o)) => {
                let mut m = Map::new();
                for (k, x) in o {
                    if k == "id" || keys.iter().any(|s| s.eq_ignore_ascii_case(k)) {
                        m.insert(k.clone(), x.clone());
                    }
                }
                Value::Object(m)
            }
            _ => v.clone(),
        }
    }

    /// A page of `items` with a nextLink, or the final page with `last` merged in.
    fn page(
        &self,
        req: &Request,
        route: &str,
        items: Vec<Value>,
        last: Option<(&str, String)>,
    ) -> Response {
        let top = req
            .param("$top")
            .and_then(|t| t.parse::<usize>().ok())
            .unwrap_or(self.page_size)
            .min(self.page_size)
            .max(1);
        let skip = req
            .param("$skiptoken")
            .and_then(|t| t.parse::<usize>().ok())
            .unwrap_or(0);
        let end = (skip + top).min(items.len());
        let value: Vec<Value> = items.get(skip..end).map(|s| s.to_vec()).unwrap_or_default();
        let mut body = json!({"@odata.context": format!("{}/v1.0/$metadata#{route}", self.base), "value": value});
        let keep: Vec<String> = req
            .query
            .iter()
            .filter(|(k, _)| k != "$skiptoken")
            .map(|(k, v)| format!("{}={}", crate::http::encode(k), crate::http::encode(v)))
            .collect();
        let endless = self.endless.as_deref() == Some(route);
        if end < items.len() || endless {
            let mut q = keep.clone();
            q.push(format!("$skiptoken={}", end.max(skip + 1)));
            body["@odata.nextLink"] =
                Value::String(format!("{}/v1.0/{route}?{}", self.base, q.join("&")));
        } else if let Some((k, v)) = last {
            body[k] = Value::String(v);
        }
        Response::json(200, body)
    }

    fn select_param(req: &Request) -> Option<Vec<String>> {
        req.param("$select")
            .map(|s| s.split(',').map(|x| x.trim().to_string()).collect())
    }

    fn delta_link(&self, route: &str, select: &Option<Vec<String>>) -> String {
        let sel = select
            .as_ref()
            .map(|s| format!("&$select={}", crate::http::encode(&s.join(","))))
            .unwrap_or_default();
        format!(
            "{}/v1.0/{route}?$deltatoken={}{sel}",
            self.delta_base.as_deref().unwrap_or(&self.base),
            self.token()
        )
    }

    fn users_delta(&self, req: &Request) -> Response {
        let select = Self::select_param(req);
        let link = ("@odata.deltaLink", self.delta_link("users/delta", &select));
        match req.param("$deltatoken") {
            Some("latest") => self.page(req, "users/delta", vec![], Some(link)),
            None => {
                let items = self
                    .data
                    .users
                    .iter()
                    .filter(|u| !soft_deleted(u))
                    .map(|u| Self::select(u, &select))
                    .collect();
                self.page(req, "users/delta", items, Some(link))
            }
            Some(t) => {
                let since = match self.parse_token(t) {
                    Ok(v) => v,
                    Err(r) => return r,
                };
                let mut seen = HashSet::new();
                let mut items = vec![];
                for (v, c) in &self.history {
                    let Change::User(id) = c else { continue };
                    if *v <= since || !seen.insert(id.clone()) {
                        continue;
                    }
                    match self.data.users.iter().find(|u| id_of(u) == id) {
                        Some(u) if soft_deleted(u) => {
                            items.push(json!({"id": id, "@removed": {"reason": "changed"}}))
                        }
                        Some(u) => items.push(Self::select(u, &select)),
                        None => items.push(json!({"id": id, "@removed": {"reason": "deleted"}})),
                    }
                }
                self.page(req, "users/delta", items, Some(link))
            }
        }
    }

    fn member_ref(&self, id: &str, removed: bool) -> Value {
        let is_group = self.data.groups.iter().any(|g| id_of(g) == id);
        let t = if is_group {
            "#microsoft.graph.group"
        } else {
            "#microsoft.graph.user"
        };
        if removed {
            json!({"@odata.type": t, "id": id, "@removed": {"reason": "deleted"}})
        } else {
            json!({"@odata.type": t, "id": id})
        }
    }

    fn groups_delta(&self, req: &Request) -> Response {
        let select = Self::select_param(req);
        let link = ("@odata.deltaLink", self.delta_link("groups/delta", &select));
        let view = |g: &Value| -> Value { Self::select(&without_members(g), &select) };
        // As Graph: membership changes come only when `$select` asks for members.
        let with_members = select
            .as_ref()
            .is_none_or(|s| s.iter().any(|x| x.eq_ignore_ascii_case("members")));
        match req.param("$deltatoken") {
            Some("latest") => self.page(req, "groups/delta", vec![], Some(link)),
            None => {
                let items = self
                    .data
                    .groups
                    .iter()
                    .map(|g| {
                        let mut v = view(g);
                        if with_members {
                            v["members@delta"] = Value::Array(
                                members_of(g)
                                    .iter()
                                    .map(|m| self.member_ref(m, false))
                                    .collect(),
                            );
                        }
                        v
                    })
                    .collect();
                self.page(req, "groups/delta", items, Some(link))
            }
            Some(t) => {
                let since = match self.parse_token(t) {
                    Ok(v) => v,
                    Err(r) => return r,
                };
                let mut order: Vec<String> = vec![];
                let mut member_changes: HashMap<String, Vec<Value>> = HashMap::new();
                for (v, c) in self.history.iter().filter(|(v, _)| *v > since) {
                    let _ = v;
                    let gid = match c {
                        Change::Group(g) => g.clone(),
                        Change::Member {
                            group,
                            member,
                            added,
                        } => {
                            member_changes
                                .entry(group.clone())
                                .or_default()
                                .push(self.member_ref(member, !added));
                            group.clone()
                        }
                        Change::User(_) => continue,
                    };
                    if !order.contains(&gid) {
                        order.push(gid);
                    }
                }
                let items = order
                    .into_iter()
                    .map(
                        |gid| match self.data.groups.iter().find(|g| id_of(g) == gid) {
                            Some(g) => {
                                let mut v = view(g);
                                match member_changes.remove(&gid) {
                                    Some(m) if with_members => v["members@delta"] = Value::Array(m),
                                    _ => {}
                                }
                                v
                            }
                            None => json!({"id": gid, "@removed": {"reason": "deleted"}}),
                        },
                    )
                    .collect();
                self.page(req, "groups/delta", items, Some(link))
            }
        }
    }

    fn app_roles(&self) -> Vec<Value> {
        let mut names: Vec<String> = self
            .data
            .assignments
            .iter()
            .filter_map(|a| {
                a.get("appRole")
                    .and_then(|r| r.as_str())
                    .map(str::to_string)
            })
            .filter(|r| r != crate::model::DEFAULT_ACCESS)
            .collect();
        names.push("User".into());
        names.sort();
        names.dedup();
        names
            .iter()
            .map(|n| {
                json!({"id": role_id(n), "displayName": n, "value": n, "description": n,
                            "allowedMemberTypes": ["User"], "isEnabled": true})
            })
            .collect()
    }

    fn assignments(&self) -> Vec<Value> {
        self.data
            .assignments
            .iter()
            .enumerate()
            .map(|(i, a)| {
                let pid = a.get("principalId").and_then(|p| p.as_str()).unwrap_or("");
                let role = a.get("appRole").and_then(|r| r.as_str()).unwrap_or(crate::model::DEFAULT_ACCESS);
                let ptype = a
                    .get("principalType")
                    .and_then(|t| t.as_str())
                    .map(str::to_string)
                    .unwrap_or_else(|| if self.data.groups.iter().any(|g| id_of(g) == pid) { "Group".into() } else { "User".into() });
                json!({"id": format!("assignment-{i}"), "appRoleId": role_id(role), "principalId": pid,
                       "principalType": ptype, "resourceId": self.tenant.app})
            })
            .collect()
    }

    fn token_endpoint(&mut self, req: &Request, tenant: &str) -> Response {
        let form: HashMap<String, String> = req
            .body
            .split('&')
            .filter_map(|kv| kv.split_once('='))
            .map(|(k, v)| {
                (
                    super::percent_decode(&k.replace('+', " ")),
                    super::percent_decode(&v.replace('+', " ")),
                )
            })
            .collect();
        let oauth_error = |status: u16, error: &str, description: &str| {
            Response::json(
                status,
                json!({"error": error, "error_description": description}),
            )
        };
        if tenant != self.tenant.tenant {
            return oauth_error(
                400,
                "invalid_request",
                &format!("AADSTS90002: Tenant '{tenant}' not found."),
            );
        }
        if form.get("grant_type").map(String::as_str) != Some("client_credentials") {
            return oauth_error(
                400,
                "unsupported_grant_type",
                "AADSTS70003: The app requested an unsupported grant type.",
            );
        }
        if form.get("client_id") != Some(&self.tenant.client_id) {
            return oauth_error(
                400,
                "unauthorized_client",
                "AADSTS700016: Application not found in the directory.",
            );
        }
        if !form
            .get("scope")
            .map(|s| s.ends_with("/.default"))
            .unwrap_or(false)
        {
            return oauth_error(
                400,
                "invalid_scope",
                "AADSTS1002012: The provided value for scope is not valid.",
            );
        }
        let assertion_type = form.get("client_assertion_type").map(String::as_str);
        if assertion_type == Some("urn:ietf:params:oauth:client-assertion-type:jwt-bearer") {
            let assertion = form
                .get("client_assertion")
                .map(String::as_str)
                .unwrap_or("");
            let audience = format!("{}/{tenant}/oauth2/v2.0/token", self.base);
            if let Err(why) = self.check_assertion(assertion, &audience) {
                return oauth_error(401, "invalid_client", &why);
            }
        } else {
            let given = form.get("client_secret").map(String::as_str).unwrap_or("");
            if !super::bearer_ok(Some(&format!("Bearer {given}")), &self.tenant.client_secret) {
                return oauth_error(
                    401,
                    "invalid_client",
                    "AADSTS7000215: Invalid client secret provided.",
                );
            }
        }
        let token = crate::ids::random_hex(40);
        self.tokens.insert(token.clone());
        Response::json(
            200,
            json!({"token_type": "Bearer", "expires_in": self.tenant.token_lifetime, "ext_expires_in": self.tenant.token_lifetime, "access_token": token}),
        )
    }

    /// A client assertion: the registered federated token, or a JWT signed (RS256)
    /// with the registered certificate's key, naming it by `x5t#S256`, for this
    /// client and token endpoint, and within its time. Errors are Entra's codes.
    fn check_assertion(&self, jwt: &str, audience: &str) -> Result<(), String> {
        if let Some(f) = &self.tenant.federated_token {
            if super::bearer_ok(Some(&format!("Bearer {jwt}")), f) {
                return Ok(());
            }
        }
        let Some(cert) = &self.tenant.certificate else {
            return Err("AADSTS700027: Client assertion failed signature validation: no certificate is registered.".into());
        };
        let invalid = |m: &str| format!("AADSTS50027: JWT token is invalid or malformed: {m}.");
        let parts: Vec<&str> = jwt.split('.').collect();
        let [h, c, sig] = parts.as_slice() else {
            return Err(invalid("not three parts"));
        };
        let decode = |p: &str| -> Result<Vec<u8>, String> {
            use base64::Engine;
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(p)
                .map_err(|_| invalid("not base64url"))
        };
        let header: Value = serde_json::from_slice(&decode(h)?).map_err(|_| invalid("header"))?;
        let claims: Value = serde_json::from_slice(&decode(c)?).map_err(|_| invalid("claims"))?;
        if header["alg"] != "RS256" {
            return Err(invalid("alg must be RS256"));
        }
        let thumbprint = crate::http::credential::b64url(
            ring::digest::digest(&ring::digest::SHA256, cert).as_ref(),
        );
        if header["x5t#S256"] != thumbprint.as_str() {
            return Err("AADSTS700027: Client assertion contains an invalid signature: the certificate (x5t#S256) is not registered for the app.".into());
        }
        let der = rustls_pki_types::CertificateDer::from(cert.as_slice());
        let ee = webpki::EndEntityCert::try_from(&der).map_err(|_| invalid("certificate"))?;
        ee.verify_signature(
            webpki::ring::RSA_PKCS1_2048_8192_SHA256,
            format!("{h}.{c}").as_bytes(),
            &decode(sig)?,
        )
        .map_err(|_| "AADSTS700027: Client assertion failed signature validation.".to_string())?;
        let client = self.tenant.client_id.as_str();
        if claims["aud"] != audience || claims["iss"] != client || claims["sub"] != client {
            return Err(format!("AADSTS700016: the assertion's aud, iss and sub must be {audience} and the client id"));
        }
        let now = crate::clock::now();
        let (nbf, exp) = (
            claims["nbf"].as_i64().unwrap_or(i64::MAX),
            claims["exp"].as_i64().unwrap_or(0),
        );
        if exp <= now || nbf > now + 300 || exp - nbf > 3600 {
            return Err(
                "AADSTS700024: Client assertion is not within its valid time range.".into(),
            );
        }
        Ok(())
    }

    fn admin(&mut self, req: &Request, what: &[&str]) -> Response {
        let job = what.get(1).copied().unwrap_or_default();
        let what = what.first().copied().unwrap_or_default();
        match (req.method.as_str(), what) {
            ("PUT", "schema") if !job.is_empty() => match serde_json::from_str(&req.body) {
                Ok(v @ Value::Object(_)) => {
                    self.schemas.insert(job.to_string(), v);
                    Response::empty(204)
                }
                _ => graph_error(400, "BadRequest", "the schema must be a JSON object"),
            },
            ("GET", "stats") => Response::json(
                200,
                json!({"requests": self.requests, "version": self.version}),
            ),
            ("POST", "reset-stats") => {
                self.requests.clear();
                Response::empty(204)
            }
            ("POST", "config") => {
                let b: Value = serde_json::from_str(&req.body).unwrap_or(Value::Null);
                if let Some(n) = b.get("page_size").and_then(|v| v.as_u64()) {
                    self.set_page_size(n as usize);
                }
                if let Some(n) = b.get("throttle_every").and_then(|v| v.as_u64()) {
                    self.throttle_every = n;
                }
                if let Some(n) = b.get("retry_after").and_then(|v| v.as_u64()) {
                    self.retry_after = n;
                }
                if let Some(v) = b.get("endless") {
                    self.endless = v.as_str().map(str::to_string);
                }
                if let Some(v) = b.get("delta_base") {
                    self.delta_base = v.as_str().map(str::to_string);
                }
                Response::json(
                    200,
                    json!({"page_size": self.page_size, "throttle_every": self.throttle_every, "retry_after": self.retry_after}),
                )
            }
            ("POST", "expire-deltas") => {
                self.oldest = self.version + 1;
                self.version += 1;
                Response::empty(204)
            }
            _ => graph_error(404, "NotFound", "unknown emulator route"),
        }
    }
}

impl Service for Graph {
    fn content_type(&self) -> &'static str {
        "application/json"
    }

    /// Admin calls carry the client secret as a bearer token.
    fn authorized(&self, req: &Request) -> bool {
        super::bearer_ok(req.authorization.as_deref(), &self.tenant.client_secret)
    }

    fn handle(&mut self, req: &Request) -> Response {
        let seg: Vec<&str> = req.segments.iter().map(String::as_str).collect();
        // Token endpoint: /{tenant}/oauth2/v2.0/token
        if seg.len() == 4
            && seg[1] == "oauth2"
            && seg[2] == "v2.0"
            && seg[3] == "token"
            && req.method == "POST"
        {
            *self.requests.entry("POST token".into()).or_insert(0) += 1;
            return self.token_endpoint(req, seg[0]);
        }
        let token_ok = req
            .authorization
            .as_deref()
            .and_then(|h| h.strip_prefix("Bearer "))
            .map(|t| self.tokens.contains(t))
            .unwrap_or(false);
        if seg.first() == Some(&"_emulator") {
            // Admin routes need the client secret as bearer (the product never calls them).
            if !super::bearer_ok(req.authorization.as_deref(), &self.tenant.client_secret)
                && !token_ok
            {
                return graph_error(
                    401,
                    "InvalidAuthenticationToken",
                    "Access token is empty or invalid.",
                );
            }
            return self.admin(req, &seg[1..]);
        }
        if !token_ok {
            return graph_error(
                401,
                "InvalidAuthenticationToken",
                "Access token validation failure. Invalid audience or expired token.",
            );
        }
        if seg.first() != Some(&"v1.0") {
            return graph_error(400, "BadRequest", "Invalid version: use /v1.0");
        }
        self.served += 1;
        if self.throttle_every > 0 && self.served.is_multiple_of(self.throttle_every) {
            let mut r = graph_error(429, "TooManyRequests", "Too many requests.");
            r.headers
                .push(("Retry-After".into(), self.retry_after.to_string()));
            return r;
        }
        if let Err(e) = self.refresh() {
            return graph_error(500, "InternalServerError", &e);
        }
        let route: Vec<&str> = seg[1..].to_vec();
        let key = format!("GET {}", route_key(&route));
        *self.requests.entry(key).or_insert(0) += 1;
        if req.method != "GET" {
            return graph_error(405, "MethodNotAllowed", "read-only emulator");
        }
        self.get(req, &route)
    }
}

impl Graph {
    /// A GET on a `/v1.0` route, authorised and counted.
    fn get(&mut self, req: &Request, route: &[&str]) -> Response {
        let select = Self::select_param(req);
        match route {
            ["users", "delta"] => self.users_delta(req),
            ["servicePrincipals", _, "synchronization", "jobs", job, "schema"] => {
                match self.schemas.get(*job) {
                    Some(schema) => Response::json(200, schema.clone()),
                    None => graph_error(
                        404,
                        "Request_ResourceNotFound",
                        &format!("Resource '{job}' does not exist or one of its queried reference-property objects are not present."),
                    ),
                }
            }
            ["groups", "delta"] => self.groups_delta(req),
            ["users"] => {
                let items = self
                    .data
                    .users
                    .iter()
                    .filter(|u| !soft_deleted(u))
                    .map(|u| Self::select(u, &select))
                    .collect();
                self.page(req, "users", items, None)
            }
            ["directory", "deletedItems", "microsoft.graph.user"] => {
                // Soft-deleted users: restorable for 30 days, listed apart.
                let items = self
                    .data
                    .users
                    .iter()
                    .filter(|u| soft_deleted(u))
                    .map(|u| {
                        let mut v = Self::select(u, &select);
                        v["deletedDateTime"] = u["deletedDateTime"].clone();
                        v
                    })
                    .collect();
                self.page(
                    req,
                    "directory/deletedItems/microsoft.graph.user",
                    items,
                    None,
                )
            }
            ["users", id] => match self
                .data
                .users
                .iter()
                .find(|u| id_of(u) == *id && !soft_deleted(u))
            {
                Some(u) => Response::json(200, Self::select(u, &select)),
                None => graph_error(
                    404,
                    "Request_ResourceNotFound",
                    &format!("Resource '{id}' does not exist."),
                ),
            },
            ["groups"] => {
                let items = self
                    .data
                    .groups
                    .iter()
                    .map(|g| Self::select(&without_members(g), &select))
                    .collect();
                self.page(req, "groups", items, None)
            }
            ["groups", id] => match self.data.groups.iter().find(|g| id_of(g) == *id) {
                Some(g) => Response::json(200, Self::select(&without_members(g), &select)),
                None => graph_error(
                    404,
                    "Request_ResourceNotFound",
                    &format!("Resource '{id}' does not exist."),
                ),
            },
            ["groups", id, "members"] => match self.data.groups.iter().find(|g| id_of(g) == *id) {
                Some(g) => {
                    let items = members_of(g)
                        .iter()
                        .map(|m| self.member_ref(m, false))
                        .collect();
                    self.page(req, &format!("groups/{id}/members"), items, None)
                }
                None => graph_error(
                    404,
                    "Request_ResourceNotFound",
                    &format!("Resource '{id}' does not exist."),
                ),
            },
            ["servicePrincipals", id] if *id == self.tenant.app => Response::json(
                200,
                json!({"id": self.tenant.app, "appId": self.tenant.client_id, "displayName": "Dropbox for Business (scimsync)",
                       "appRoles": self.app_roles()}),
            ),
            ["servicePrincipals", id, "appRoleAssignedTo"] if *id == self.tenant.app => {
                let items = self.assignments();
                self.page(
                    req,
                    &format!("servicePrincipals/{id}/appRoleAssignedTo"),
                    items,
                    None,
                )
            }
            ["servicePrincipals", ..] => graph_error(
                404,
                "Request_ResourceNotFound",
                "Service principal not found.",
            ),
            _ => graph_error(
                400,
                "BadRequest",
                &format!("Unsupported route /v1.0/{}", route.join("/")),
            ),
        }
    }
}
