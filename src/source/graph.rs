//! The Entra ID source: Microsoft Graph with client credentials and delta queries.
//!
//! A full read takes the deltaLinks first (`$deltatoken=latest`, so nothing that
//! changes during the read is missed), then the app's service principal (appRoles),
//! its `appRoleAssignedTo`, `users` (and the soft-deleted ones, which are disabled,
//! not gone), and every group with its members from one whole `groups/delta` round
//! (members@delta), whose deltaLink is the groups watermark. It builds the same
//! Graph-shaped document the `file` source
//! reads, so scoping is one piece of code, and stores that document as a cache beside
//! the watermark. An incremental read follows the deltaLinks, re-reads the
//! assignments, applies the changes to the cache and names the objects that changed;
//! nothing changed means no work. An expired delta token (410) falls back to a full
//! read by itself. The client secret only ever goes into the token request body.
//!
//! An answer that is not what Graph sends (not JSON, no `value` array, an item
//! without an id, a link off the Graph host, more pages or bytes than the limits)
//! stops the read with an error: a broken page must never read as an empty one.
//! The cache keeps each group's direct members where they are known; nested groups
//! are flattened afresh at every read, so a change anywhere in a chain is seen.

use super::{directory, ReadRequest, Source};
use crate::config::{GraphCredential, Scope, Secret};
use crate::endpoint;
use crate::error::{Error, InputError};
use crate::http::TargetError;
use crate::http::{encode, Http};
use crate::model::Snapshot;
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::{Duration, Instant};

/// User attributes always read; `source.attributes` adds more.
pub const USER_ATTRIBUTES: &[&str] = &[
    "id",
    "userPrincipalName",
    "mail",
    "givenName",
    "surname",
    "displayName",
    "accountEnabled",
    "department",
    "jobTitle",
    "employeeId",
    "officeLocation",
    "city",
    "state",
    "country",
    "companyName",
    "mobilePhone",
    "businessPhones",
    "employeeType",
    "mailNickname",
    "preferredLanguage",
    "usageLocation",
    "userType",
];
pub const GROUP_ATTRIBUTES: &[&str] = &[
    "id",
    "displayName",
    "mail",
    "mailNickname",
    "securityEnabled",
    "description",
];

pub use crate::model::DEFAULT_ACCESS_ROLE_ID;

/// Renew the token this long before it expires.
const RENEW_EARLY: Duration = Duration::from_secs(300);

pub struct GraphSource {
    tenant: String,
    client_id: String,
    credential: GraphCredential,
    app: String,
    scope: Scope,
    graph_url: String,
    login_url: String,
    flatten: bool,
    user_select: String,
    http: Http,
    token_expiry: Option<Instant>,
    limits: crate::config::ReadLimits,
    /// Bytes of answers taken by the read under way.
    read_bytes: u64,
}

/// What the watermark holds.
#[derive(serde::Serialize, serde::Deserialize)]
struct Watermark {
    users: String,
    groups: String,
    assignments: String,
}

/// A Graph failure: a delta token that expired is handled, the rest is reported.
enum Failure {
    DeltaExpired,
    Other(Error),
}

impl From<Error> for Failure {
    fn from(e: Error) -> Self {
        Failure::Other(e)
    }
}

impl GraphSource {
    /// Retries and waits (tools and tests that want failures fast).
    pub fn set_retry_policy(&mut self, policy: crate::http::RetryPolicy) {
        self.http.policy = policy;
    }

    #[allow(clippy::too_many_arguments)]
    pub fn new(
        tenant: &str,
        client_id: &str,
        credential: GraphCredential,
        app: &str,
        scope: Scope,
        graph_url: &str,
        login_url: &str,
        flatten: bool,
        extra_attributes: &[String],
        timeout: Duration,
    ) -> GraphSource {
        let mut attrs: Vec<String> = USER_ATTRIBUTES.iter().map(|s| s.to_string()).collect();
        for a in extra_attributes {
            if !attrs.iter().any(|x| x.eq_ignore_ascii_case(a)) {
                attrs.push(a.clone());
            }
        }
        GraphSource {
            tenant: tenant.into(),
            client_id: client_id.into(),
            credential,
            app: app.into(),
            scope,
            graph_url: graph_url.trim_end_matches('/').into(),
            login_url: login_url.trim_end_matches('/').into(),
            flatten,
            user_select: attrs.join(","),
            http: Http::new(
                crate::http::credential::Bearer::fixed(Secret::new("")),
                timeout,
                "application/json",
            ),
            token_expiry: None,
            limits: crate::config::ReadLimits::default(),
            read_bytes: 0,
        }
    }

    /// With other bounds on one read than the defaults.
    pub fn with_limits(mut self, limits: crate::config::ReadLimits) -> GraphSource {
        self.limits = limits;
        self
    }

    /// Requests sent so far, by method.
    pub fn request_counts(&self) -> BTreeMap<String, u64> {
        self.http.counts()
    }

    /// Gets or renews the access token (client credentials).
    fn authorize(&mut self) -> Result<(), Error> {
        if self
            .token_expiry
            .map(|t| Instant::now() + RENEW_EARLY < t)
            .unwrap_or(false)
        {
            return Ok(());
        }
        let url = format!(
            "{}/{}/oauth2/v2.0/token",
            self.login_url,
            encode(&self.tenant)
        );
        let scope = format!("{}/.default", self.graph_url);
        // Read afresh at every token request: a rotated secret, certificate or
        // federated token file is used from the next token on.
        let (key, proof) = self.client_proof(&url)?;
        let mut form = vec![
            ("grant_type", "client_credentials"),
            ("client_id", self.client_id.as_str()),
            ("scope", scope.as_str()),
        ];
        match key {
            "client_secret" => form.push(("client_secret", proof.expose())),
            _ => {
                form.push((
                    "client_assertion_type",
                    "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
                ));
                form.push(("client_assertion", proof.expose()));
            }
        }
        let reply = self
            .http
            .post_form(&url, &form)
            .map_err(Error::read("Entra token endpoint"))?;
        let body: Value = serde_json::from_str(&reply.body).unwrap_or(Value::Null);
        if reply.status != 200 {
            let code = body
                .get("error")
                .and_then(|e| e.as_str())
                .unwrap_or("error");
            let desc = body
                .get("error_description")
                .and_then(|e| e.as_str())
                .map(|d| d.lines().next().unwrap_or(d).to_string())
                .unwrap_or_else(|| format!("HTTP {}", reply.status));
            let credential_key = match self.credential {
                GraphCredential::Secret(_) => " (check source.client_secret)",
                GraphCredential::Certificate(_) => {
                    " (check source.client_certificate: is this certificate uploaded to the app registration?)"
                }
                GraphCredential::Assertion(_) => {
                    " (check source.client_assertion: the federated credential of the app registration)"
                }
            };
            let hint = match code {
                "invalid_client" => credential_key,
                "unauthorized_client" => " (check source.client_id)",
                "invalid_request" if desc.contains("AADSTS90002") => " (check source.tenant)",
                _ => "",
            };
            // Credentials are the user's to fix: exit 2.
            let message = format!("Entra refused the token request: {code}: {desc}{hint}");
            return Err(if reply.status < 500 {
                InputError::Usage(message).into()
            } else {
                Error::answer("Entra ID", message)
            });
        }
        let token = body
            .get("access_token")
            .and_then(|t| t.as_str())
            .ok_or_else(|| Error::answer("Entra ID", "Entra token answer without access_token"))?;
        let lifetime = body
            .get("expires_in")
            .and_then(|e| e.as_u64())
            .unwrap_or(3599);
        self.http.set_token(Secret::new(token));
        self.token_expiry = Some(Instant::now() + Duration::from_secs(lifetime));
        Ok(())
    }

    /// What proves who scimsync is at the token endpoint `audience`: the form key it
    /// goes in, and its value.
    fn client_proof(&self, audience: &str) -> Result<(&'static str, Secret), Error> {
        let input = |key: &str, m: String| -> Error {
            InputError::Usage(format!("source.{key}: {m}")).into()
        };
        Ok(match &self.credential {
            GraphCredential::Secret(r) => (
                "client_secret",
                r.resolve().map_err(|m| input("client_secret", m))?,
            ),
            GraphCredential::Certificate(path) => {
                let cert = crate::http::credential::Certificate::load(path)
                    .map_err(|m| input("client_certificate", m))?;
                let jwt = cert
                    .assertion(&self.client_id, audience)
                    .map_err(|m| input("client_certificate", m))?;
                ("client_assertion", Secret::new(jwt))
            }
            GraphCredential::Assertion(r) => (
                "client_assertion",
                r.resolve().map_err(|m| input("client_assertion", m))?,
            ),
        })
    }

    /// The synchronization schema of one of the app's provisioning jobs (Entra's
    /// own job, for `import-entra --job`).
    pub fn synchronization_schema(&mut self, job: &str) -> Result<String, Error> {
        let url = format!(
            "{}/v1.0/servicePrincipals/{}/synchronization/jobs/{}/schema",
            self.graph_url,
            encode(&self.app),
            encode(job)
        );
        match self.get(&url) {
            Ok(v) => Ok(v.to_string()),
            Err(Failure::Other(e)) => Err(e),
            Err(Failure::DeltaExpired) => Err(Error::answer(
                "Microsoft Graph",
                "the synchronization schema answer was refused as an expired delta",
            )),
        }
    }

    /// Forgets the access token: the next request asks for one with the secrets as
    /// they are now.
    pub fn reload_credentials(&mut self) {
        self.token_expiry = None;
    }

    fn get(&mut self, url: &str) -> Result<Value, Failure> {
        self.authorize()?;
        let mut reply = self.http.send("GET", url, None, true).map_err(graph_err)?;
        if reply.status == 401 {
            // Revoked or expired early: one fresh token, once.
            self.token_expiry = None;
            self.authorize()?;
            reply = self.http.send("GET", url, None, true).map_err(graph_err)?;
        }
        self.read_bytes += reply.body.len() as u64;
        if self.read_bytes > self.limits.max_bytes {
            return Err(broken(format!(
                "the answers of this read passed {} bytes (source.max_read_bytes); stopped at {}",
                self.limits.max_bytes,
                endpoint::without_query(url)
            )));
        }
        self.json(reply.status, &reply.body, url)
    }

    fn json(&self, status: u16, body: &str, url: &str) -> Result<Value, Failure> {
        let path = endpoint::without_query(url);
        if status == 200 {
            // A proxy's error page, an empty body or JSON nested past serde's depth
            // limit is a failed read, not an empty collection.
            return match serde_json::from_str::<Value>(body) {
                Ok(v @ Value::Object(_)) => Ok(v),
                Ok(other) => Err(broken(format!(
                    "Graph GET {path}: HTTP 200 but the answer is {}, not a JSON object",
                    kind_of(&other)
                ))),
                Err(e) => Err(broken(format!(
                    "Graph GET {path}: HTTP 200 but the answer is not JSON ({e}): {}",
                    crate::http::snippet(body)
                ))),
            };
        }
        let v: Value = serde_json::from_str(body).unwrap_or(Value::Null);
        let code = v
            .pointer("/error/code")
            .and_then(|c| c.as_str())
            .unwrap_or("");
        if status == 410 || code == "syncStateNotFound" || code == "resyncRequired" {
            return Err(Failure::DeltaExpired);
        }
        let msg = v
            .pointer("/error/message")
            .and_then(|c| c.as_str())
            .map(str::to_string)
            .unwrap_or_else(|| crate::http::snippet(body));
        let e = format!("Graph GET {path}: HTTP {status} {code} {msg}");
        Err(Failure::Other(if status == 401 || status == 403 {
            InputError::Usage(format!(
                "{e} (does the app have User.Read.All, Group.Read.All and Application.Read.All?)"
            ))
            .into()
        } else {
            Error::answer("Microsoft Graph", e)
        }))
    }

    /// A link Graph sent (page or delta), checked: it stays on the Graph host, where
    /// the bearer token is meant to go.
    fn on_host(&self, link: &str) -> Result<String, Failure> {
        if endpoint::same_origin(&self.graph_url, link) {
            Ok(link.to_string())
        } else {
            Err(broken(format!(
                "Graph sent a link off its host ({}); not following it",
                endpoint::without_query(link)
            )))
        }
    }

    /// A page link, checked: on the Graph host, not leading back to a page already
    /// read (which would never end), within `max_pages`.
    fn follow(&self, link: &str, seen: &mut HashSet<String>) -> Result<String, Failure> {
        let link = self.on_host(link)?;
        if !seen.insert(link.clone()) {
            return Err(broken(format!(
                "Graph paging loops back to a page already read ({})",
                endpoint::without_query(&link)
            )));
        }
        if seen.len() >= self.limits.max_pages {
            return Err(broken(format!(
                "Graph paging goes past {} pages (source.max_pages) at {}",
                self.limits.max_pages,
                endpoint::without_query(&link)
            )));
        }
        Ok(link)
    }

    /// The items of one page: a `value` array, every item an object with an id.
    fn items(page: &Value, url: &str) -> Result<Vec<Value>, Failure> {
        let path = endpoint::without_query(url);
        let Some(items) = page.get("value").and_then(|v| v.as_array()) else {
            return Err(broken(format!(
                "Graph GET {path}: the answer has no \"value\" array"
            )));
        };
        for item in items {
            if item
                .get("id")
                .and_then(|i| i.as_str())
                .is_none_or(str::is_empty)
            {
                return Err(broken(format!(
                    "Graph GET {path}: an item without an id: {}",
                    crate::http::snippet(&item.to_string())
                )));
            }
        }
        Ok(items.clone())
    }

    /// Every item of a paged collection.
    fn all(&mut self, url: &str) -> Result<Vec<Value>, Failure> {
        let mut out = vec![];
        let mut seen = HashSet::new();
        let mut next = Some(url.to_string());
        while let Some(u) = next {
            let page = self.get(&u)?;
            out.extend(Self::items(&page, &u)?);
            next = match page.get("@odata.nextLink").and_then(|n| n.as_str()) {
                Some(n) => Some(self.follow(n, &mut seen)?),
                None => None,
            };
        }
        Ok(out)
    }

    /// A delta round: items and the new deltaLink.
    fn delta(&mut self, url: &str) -> Result<(Vec<Value>, String), Failure> {
        let mut out = vec![];
        let mut seen = HashSet::new();
        let mut next = self.on_host(url)?;
        loop {
            let page = self.get(&next)?;
            out.extend(Self::items(&page, &next)?);
            if let Some(n) = page.get("@odata.nextLink").and_then(|n| n.as_str()) {
                next = self.follow(n, &mut seen)?;
                continue;
            }
            let link = page
                .get("@odata.deltaLink")
                .and_then(|n| n.as_str())
                .ok_or_else(|| {
                    broken(format!(
                        "Graph delta {}: the last page has neither nextLink nor deltaLink",
                        endpoint::without_query(url)
                    ))
                })?;
            return Ok((out, self.on_host(link)?));
        }
    }

    fn v1(&self, rest: &str) -> String {
        format!("{}/v1.0/{rest}", self.graph_url)
    }

    /// App-role assignments as directory-file entries, and their hash.
    fn assignments(&mut self) -> Result<(Vec<Value>, String), Failure> {
        let url = self.v1(&format!(
            "servicePrincipals/{}?$select=id,appRoles",
            encode(&self.app)
        ));
        let sp = self.get(&url)?;
        let Some(app_roles) = sp.get("appRoles").and_then(|a| a.as_array()) else {
            return Err(broken(format!(
                "Graph GET {}: the service principal has no \"appRoles\" array",
                endpoint::without_query(&url)
            )));
        };
        let mut roles: HashMap<String, String> = HashMap::new();
        roles.insert(
            DEFAULT_ACCESS_ROLE_ID.into(),
            directory::DEFAULT_ACCESS.into(),
        );
        for r in app_roles {
            if let (Some(id), Some(name)) = (
                r.get("id").and_then(|i| i.as_str()),
                r.get("value")
                    .or(r.get("displayName"))
                    .and_then(|n| n.as_str()),
            ) {
                roles.insert(id.to_string(), name.to_string());
            }
        }
        let list = self.all(&self.v1(&format!(
            "servicePrincipals/{}/appRoleAssignedTo?$top=999",
            encode(&self.app)
        )))?;
        let mut out: Vec<Value> = list
            .iter()
            .map(|a| {
                let role = a
                    .get("appRoleId")
                    .and_then(|r| r.as_str())
                    .and_then(|r| roles.get(r).cloned())
                    .unwrap_or_else(|| directory::DEFAULT_ACCESS.into());
                json!({"principalId": a.get("principalId"), "principalType": a.get("principalType"), "appRole": role})
            })
            .collect();
        out.sort_by_key(|a| a.to_string());
        let hash = format!(
            "{:x}",
            Sha256::digest(Value::Array(out.clone()).to_string().as_bytes())
        );
        Ok((out, hash))
    }

    /// A group's direct members (users, and groups nested in it).
    fn direct_members(&mut self, gid: &str) -> Result<Vec<Value>, Failure> {
        let items = self.all(&self.v1(&format!(
            "groups/{}/members?$select=id&$top=999",
            encode(gid)
        )))?;
        Ok(items.iter().map(|m| Value::String(id_str(m))).collect())
    }

    /// Reads the members of every group that matters and whose members the document
    /// does not know yet: all groups with scope "all", else the assigned ones — and,
    /// when flattening, the groups nested in those, as far down as they go.
    fn read_members(&mut self, doc: &mut Value) -> Result<(), Failure> {
        loop {
            let wanted: Vec<String> = groups_that_matter(doc, self.scope, self.flatten)
                .into_iter()
                .filter(|g| members_known(doc, g).is_none())
                .collect();
            if wanted.is_empty() {
                return Ok(());
            }
            for gid in wanted {
                let members = self.direct_members(&gid)?;
                if let Some(g) = group_mut(doc, &gid) {
                    g["members"] = Value::Array(members);
                }
            }
        }
    }

    fn full(&mut self) -> Result<Snapshot, Failure> {
        // Delta links first: changes made while we read land in the next cycle.
        let (_, users_link) = self.delta(&self.v1(&format!(
            "users/delta?$deltatoken=latest&$select={}",
            self.user_select
        )))?;
        // One whole groups/delta round: every group with its members (members@delta)
        // and the deltaLink, instead of a listing plus one members read per group.
        let (group_items, groups_link) = self.delta(&self.v1(&format!(
            "groups/delta?$select={},members",
            GROUP_ATTRIBUTES.join(",")
        )))?;
        let (assignments, hash) = self.assignments()?;
        let mut users =
            self.all(&self.v1(&format!("users?$select={}&$top=999", self.user_select)))?;
        // Soft-deleted users are not in `users` but are not gone either: read as gone,
        // an active one would be deleted where a delta round disables it.
        for mut u in self.all(&self.v1(&format!(
            "directory/deletedItems/microsoft.graph.user?$select={},deletedDateTime&$top=999",
            self.user_select
        )))? {
            if u.get("deletedDateTime").is_none_or(Value::is_null) {
                u["deletedDateTime"] = json!(crate::clock::rfc3339(crate::clock::now()));
            }
            users.push(u);
        }
        let mut doc = json!({"users": users, "groups": [], "assignments": assignments});
        apply_group_changes(&mut doc, group_items, &mut HashSet::new());
        // Groups the round did not give members for (none, from Graph as documented)
        // are read one by one.
        self.read_members(&mut doc)?;
        let watermark = Watermark {
            users: users_link,
            groups: groups_link,
            assignments: hash,
        };
        self.snapshot(doc, watermark, None)
    }

    /// The snapshot of a cached document: nested groups flattened now (the cache
    /// keeps direct members), then scoped as a directory file is.
    fn snapshot(
        &self,
        doc: Value,
        w: Watermark,
        changed: Option<HashSet<String>>,
    ) -> Result<Snapshot, Failure> {
        let cache = doc.to_string();
        let mut doc = doc;
        let effective = effective_members(&doc, self.flatten);
        if let Some(groups) = doc["groups"].as_array_mut() {
            for g in groups {
                let members = effective.get(&id_str(g)).cloned().unwrap_or_default();
                g["members"] = json!(members);
            }
        }
        let mut snap = directory::parse_value(doc, self.scope)
            .map_err(|m| broken(format!("Graph data: {m}")))?;
        snap.watermark = Some(serde_json::to_string(&w).unwrap_or_default());
        snap.cache = Some(cache.into_bytes());
        snap.changed = changed;
        Ok(snap)
    }

    fn incremental(&mut self, req: &ReadRequest<'_>, w: Watermark) -> Result<Snapshot, Failure> {
        // The stored links carry the bearer token next: they must still point at Graph.
        for link in [&w.users, &w.groups] {
            self.on_host(link)?;
        }
        let (user_changes, users_link) = self.delta(&w.users)?;
        let (group_changes, groups_link) = self.delta(&w.groups)?;
        let (assignments, hash) = self.assignments()?;
        let new_w = Watermark {
            users: users_link,
            groups: groups_link,
            assignments: hash.clone(),
        };
        if user_changes.is_empty()
            && group_changes.is_empty()
            && hash == w.assignments
            && !req.need_all
            && !req.need_records
        {
            return Ok(Snapshot {
                watermark: Some(serde_json::to_string(&new_w).unwrap_or_default()),
                unchanged: true,
                ..Snapshot::default()
            });
        }
        let cached = (req.cache)()?.and_then(|c| serde_json::from_slice::<Value>(&c).ok());
        let Some(mut doc) = cached.filter(is_document) else {
            log::info!("no usable directory cache in the state: reading Graph in full");
            return self.full();
        };
        let before = effective_members(&doc, self.flatten);
        let mut changed: HashSet<String> = HashSet::new();
        apply_user_changes(&mut doc, user_changes, &mut changed);
        apply_group_changes(&mut doc, group_changes, &mut changed);

        // Assignment changes: the principals whose roles differ, and members of groups.
        let old: Vec<Value> = doc["assignments"].as_array().cloned().unwrap_or_default();
        doc["assignments"] = Value::Array(assignments.clone());
        // A group that starts to matter (newly assigned, or nested in one) is read
        // with its members now.
        self.read_members(&mut doc)?;
        let after = effective_members(&doc, self.flatten);
        if hash != w.assignments {
            let key = |a: &Value| {
                (
                    a["principalId"].as_str().unwrap_or("").to_string(),
                    a["appRole"].to_string(),
                )
            };
            let before: HashSet<(String, String)> = old.iter().map(key).collect();
            let now: HashSet<(String, String)> = assignments.iter().map(key).collect();
            for (p, _) in before.symmetric_difference(&now) {
                changed.insert(p.clone());
                changed.extend(after.get(p).into_iter().flatten().cloned());
            }
        }
        // A group whose members (flattened or direct) differ is re-evaluated for its
        // memberships, and so is everyone who joined or left it.
        let ids: HashSet<&String> = before.keys().chain(after.keys()).collect();
        let none = vec![];
        for gid in ids {
            let (b, a) = (
                before.get(gid).unwrap_or(&none),
                after.get(gid).unwrap_or(&none),
            );
            if b != a {
                changed.insert(gid.clone());
                let b: HashSet<&String> = b.iter().collect();
                let a: HashSet<&String> = a.iter().collect();
                changed.extend(b.symmetric_difference(&a).map(|m| (*m).clone()));
            }
        }
        let changed = if req.need_all { None } else { Some(changed) };
        self.snapshot(doc, new_w, changed)
    }
}

/// Whether a groups/delta link asks for membership changes.
fn tracks_members(link: &str) -> bool {
    let Ok(url) = url::Url::parse(link) else {
        return false;
    };
    url.query_pairs()
        .find(|(k, _)| k == "$select")
        .is_none_or(|(_, v)| v.split(',').any(|x| x.trim() == "members"))
}

/// A failed or incomplete read: the cycle stops before planning.
fn broken(message: String) -> Failure {
    Failure::Other(Error::answer("Microsoft Graph", message))
}

fn kind_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// A cached document has the three arrays; anything else is read again in full.
fn is_document(doc: &Value) -> bool {
    ["users", "groups", "assignments"]
        .iter()
        .all(|k| doc.get(*k).is_some_and(Value::is_array))
}

fn group_mut<'a>(doc: &'a mut Value, gid: &str) -> Option<&'a mut Value> {
    doc["groups"]
        .as_array_mut()?
        .iter_mut()
        .find(|g| id_str(g) == gid)
}

/// A group's direct member ids, if the document knows them.
fn members_known(doc: &Value, gid: &str) -> Option<Vec<String>> {
    let g = doc["groups"]
        .as_array()?
        .iter()
        .find(|g| id_str(g) == gid)?;
    Some(
        g.get("members")?
            .as_array()?
            .iter()
            .filter_map(|m| m.as_str().map(str::to_string))
            .collect(),
    )
}

/// The groups whose members a cycle needs.
fn groups_that_matter(doc: &Value, scope: Scope, flatten: bool) -> HashSet<String> {
    let groups: Vec<String> = doc["groups"]
        .as_array()
        .map(|a| a.iter().map(id_str).collect())
        .unwrap_or_default();
    if scope == Scope::All {
        return groups.into_iter().collect();
    }
    let is_group: HashSet<&String> = groups.iter().collect();
    let mut out: HashSet<String> = doc["assignments"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|a| a["principalId"].as_str())
        .filter(|p| is_group.contains(&p.to_string()))
        .map(str::to_string)
        .collect();
    if flatten {
        let mut queue: Vec<String> = out.iter().cloned().collect();
        while let Some(g) = queue.pop() {
            for m in members_known(doc, &g).unwrap_or_default() {
                if is_group.contains(&m) && out.insert(m.clone()) {
                    queue.push(m);
                }
            }
        }
    }
    out
}

/// Each group's members as a cycle sees them: direct ones, or with `flatten` every
/// user reached through nested groups (each once, loops cut).
fn effective_members(doc: &Value, flatten: bool) -> HashMap<String, Vec<String>> {
    let direct: HashMap<String, Vec<String>> = doc["groups"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|g| {
            let gid = id_str(g);
            let m = members_known(doc, &gid).unwrap_or_default();
            (gid, m)
        })
        .collect();
    if !flatten {
        return direct;
    }
    direct
        .keys()
        .map(|gid| {
            let mut out = vec![];
            let mut seen = HashSet::from([gid.clone()]);
            let mut stack = vec![gid.clone()];
            while let Some(g) = stack.pop() {
                for m in direct.get(&g).into_iter().flatten() {
                    if direct.contains_key(m) {
                        if seen.insert(m.clone()) {
                            stack.push(m.clone());
                        }
                    } else if seen.insert(m.clone()) {
                        out.push(m.clone());
                    }
                }
            }
            (gid.clone(), out)
        })
        .collect()
}

/// Applies a users/delta round to the cached document.
fn apply_user_changes(doc: &mut Value, changes: Vec<Value>, changed: &mut HashSet<String>) {
    let mut users: Vec<Value> = doc["users"].as_array().cloned().unwrap_or_default();
    let mut index: HashMap<String, usize> = users
        .iter()
        .enumerate()
        .map(|(i, u)| (id_str(u), i))
        .collect();
    let mut removed: HashSet<String> = HashSet::new();
    for item in changes {
        let id = id_str(&item);
        changed.insert(id.clone());
        match item.pointer("/@removed/reason").and_then(|r| r.as_str()) {
            Some("deleted") => {
                removed.insert(id);
            }
            Some(_) => {
                // Soft delete (reason "changed"): disabled, restorable for 30 days.
                if let Some(&i) = index.get(&id) {
                    users[i]["deletedDateTime"] = json!(crate::clock::rfc3339(crate::clock::now()));
                }
            }
            None => match index.get(&id) {
                Some(&i) => {
                    merge(&mut users[i], &item);
                    if let Some(o) = users[i].as_object_mut() {
                        o.remove("deletedDateTime");
                    }
                }
                None => {
                    index.insert(id, users.len());
                    users.push(clean(&item));
                }
            },
        }
    }
    users.retain(|u| !removed.contains(&id_str(u)));
    doc["users"] = Value::Array(users);
}

/// Applies a groups/delta round to the cached document. Member changes are applied
/// only where the members are known (a group whose members were never read is
/// read whole when it starts to matter).
fn apply_group_changes(doc: &mut Value, changes: Vec<Value>, changed: &mut HashSet<String>) {
    let mut groups: Vec<Value> = doc["groups"].as_array().cloned().unwrap_or_default();
    let mut index: HashMap<String, usize> = groups
        .iter()
        .enumerate()
        .map(|(i, g)| (id_str(g), i))
        .collect();
    let mut gone: HashSet<String> = HashSet::new();
    for item in changes {
        let gid = id_str(&item);
        changed.insert(gid.clone());
        if item.get("@removed").is_some() {
            gone.insert(gid);
            continue;
        }
        let i = match index.get(&gid) {
            Some(&i) => i,
            None => {
                // A new group: its members arrive whole in members@delta.
                index.insert(gid.clone(), groups.len());
                groups.push(json!({"id": gid, "members": []}));
                groups.len() - 1
            }
        };
        merge(&mut groups[i], &item);
        let Some(delta) = item.get("members@delta").and_then(|m| m.as_array()) else {
            continue;
        };
        let Some(members) = groups[i].get_mut("members").and_then(|m| m.as_array_mut()) else {
            continue;
        };
        // A set for the merge: a large group's members arrive over many pages, and
        // a scan per member would be quadratic.
        let mut set: HashSet<String> = members.iter().map(id_or_text).collect();
        for m in delta {
            let mid = id_str(m);
            if m.get("@removed").is_some() {
                if set.remove(&mid) {
                    members.retain(|x| id_or_text(x) != mid);
                }
            } else if set.insert(mid.clone()) {
                members.push(Value::String(mid));
            }
        }
    }
    groups.retain(|g| !gone.contains(&id_str(g)));
    doc["groups"] = Value::Array(groups);
}

/// A cached member: its id as text.
fn id_or_text(v: &Value) -> String {
    v.as_str().map(str::to_string).unwrap_or_else(|| id_str(v))
}

fn id_str(v: &Value) -> String {
    v.get("id")
        .and_then(|i| i.as_str())
        .unwrap_or("")
        .to_string()
}

/// A delta item without its annotations.
fn clean(item: &Value) -> Value {
    let mut m = Map::new();
    if let Some(o) = item.as_object() {
        for (k, v) in o {
            if !k.contains('@') {
                m.insert(k.clone(), v.clone());
            }
        }
    }
    Value::Object(m)
}

/// Delta items carry only what changed: merge onto the cached record.
fn merge(into: &mut Value, item: &Value) {
    if let (Some(target), Some(src)) = (into.as_object_mut(), item.as_object()) {
        for (k, v) in src {
            if !k.contains('@') {
                target.insert(k.clone(), v.clone());
            }
        }
    }
}

fn graph_err(e: TargetError) -> Failure {
    Failure::Other(Error::read("Graph")(e))
}

impl Source for GraphSource {
    fn read(&mut self, req: &ReadRequest<'_>) -> Result<Snapshot, Error> {
        self.read_bytes = 0;
        // A watermark from before membership was tracked in groups/delta
        // (`$select` without `members`) would never see a member change.
        let w: Option<Watermark> = req
            .watermark
            .and_then(|w| serde_json::from_str::<Watermark>(w).ok())
            .filter(|w| tracks_members(&w.groups));
        let result = match w {
            Some(w) => match self.incremental(req, w) {
                Err(Failure::DeltaExpired) => {
                    log::info!(
                        "Graph delta token expired (410 syncStateNotFound): reading in full"
                    );
                    self.full()
                }
                other => other,
            },
            None => self.full(),
        };
        match result {
            Ok(s) => Ok(s),
            Err(Failure::Other(e)) => Err(e),
            Err(Failure::DeltaExpired) => Err(Error::answer(
                "Microsoft Graph",
                "Graph delta token expired during a full read",
            )),
        }
    }

    fn describe(&self) -> String {
        format!(
            "Microsoft Graph {} (tenant {})",
            self.graph_url, self.tenant
        )
    }

    fn check(&mut self) -> Result<(), Error> {
        self.authorize()?;
        match self.get(&self.v1(&format!(
            "servicePrincipals/{}?$select=id,appRoles",
            encode(&self.app)
        ))) {
            Ok(_) => Ok(()),
            Err(Failure::Other(e)) => Err(e),
            Err(Failure::DeltaExpired) => Ok(()),
        }
    }

    fn request_counts(&self) -> BTreeMap<String, u64> {
        self.http.counts()
    }

    fn reload_credentials(&mut self) {
        GraphSource::reload_credentials(self);
    }
}
