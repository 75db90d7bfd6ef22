//! The Entra ID source: Microsoft Graph with client credentials and delta queries.
//!
//! A full read takes the deltaLinks first (`$deltatoken=latest`, so nothing that
//! changes during the read is missed), then the app's service principal (appRoles),
//! its `appRoleAssignedTo`, `users` and `groups` with `$select`, and the members of
//! the groups that matter. It builds the same Graph-shaped document the `file` source
//! reads, so scoping is one piece of code, and stores that document as a cache beside
//! the watermark. An incremental read follows the deltaLinks, re-reads the
//! assignments, applies the changes to the cache and names the objects that changed;
//! nothing changed means no work. An expired delta token (410) falls back to a full
//! read by itself. The client secret only ever goes into the token request body.

use super::{directory, ReadRequest, Source};
use crate::config::{Scope, Secret};
use crate::error::{Error, InputError};
use crate::model::Snapshot;
use crate::target::http::{encode, Http};
use crate::target::TargetError;
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

/// Renew the token this long before it expires.
const RENEW_EARLY: Duration = Duration::from_secs(300);

pub struct GraphSource {
    tenant: String,
    client_id: String,
    client_secret: Secret,
    app: String,
    scope: Scope,
    graph_url: String,
    login_url: String,
    flatten: bool,
    user_select: String,
    http: Http,
    token_expiry: Option<Instant>,
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
    pub fn set_retry_policy(&mut self, policy: crate::target::http::RetryPolicy) {
        self.http.policy = policy;
    }

    #[allow(clippy::too_many_arguments)]
    pub fn new(
        tenant: &str,
        client_id: &str,
        client_secret: Secret,
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
            client_secret,
            app: app.into(),
            scope,
            graph_url: graph_url.trim_end_matches('/').into(),
            login_url: login_url.trim_end_matches('/').into(),
            flatten,
            user_select: attrs.join(","),
            http: Http::new(Secret::new(""), timeout, "application/json"),
            token_expiry: None,
        }
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
        let secret = self.client_secret.expose().to_string();
        let reply = self
            .http
            .post_form(
                &url,
                &[
                    ("grant_type", "client_credentials"),
                    ("client_id", &self.client_id),
                    ("client_secret", &secret),
                    ("scope", &scope),
                ],
            )
            .map_err(|e| Error::Runtime(format!("Entra token endpoint: {}", e.message)))?;
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
            let hint = match code {
                "invalid_client" => " (check source.client_secret)",
                "unauthorized_client" => " (check source.client_id)",
                "invalid_request" if desc.contains("AADSTS90002") => " (check source.tenant)",
                _ => "",
            };
            // Credentials are the user's to fix: exit 2.
            let message = format!("Entra refused the token request: {code}: {desc}{hint}");
            return Err(if reply.status < 500 {
                InputError::Usage(message).into()
            } else {
                Error::Runtime(message)
            });
        }
        let token = body
            .get("access_token")
            .and_then(|t| t.as_str())
            .ok_or_else(|| Error::Runtime("Entra token answer without access_token".into()))?;
        let lifetime = body
            .get("expires_in")
            .and_then(|e| e.as_u64())
            .unwrap_or(3599);
        self.http.set_token(Secret::new(token));
        self.token_expiry = Some(Instant::now() + Duration::from_secs(lifetime));
        Ok(())
    }

    fn get(&mut self, url: &str) -> Result<Value, Failure> {
        self.authorize()?;
        let reply = self.http.send("GET", url, None, true).map_err(graph_err)?;
        if reply.status == 401 {
            // Revoked or expired early: one fresh token, once.
            self.token_expiry = None;
            self.authorize()?;
            let reply = self.http.send("GET", url, None, true).map_err(graph_err)?;
            return self.json(reply.status, &reply.body, url);
        }
        self.json(reply.status, &reply.body, url)
    }

    fn json(&self, status: u16, body: &str, url: &str) -> Result<Value, Failure> {
        let v: Value = serde_json::from_str(body).unwrap_or(Value::Null);
        if status == 200 {
            return Ok(v);
        }
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
            .unwrap_or(body);
        let path = url.split('?').next().unwrap_or(url);
        let e = format!("Graph GET {path}: HTTP {status} {code} {msg}");
        Err(Failure::Other(if status == 401 || status == 403 {
            InputError::Usage(format!(
                "{e} (does the app have User.Read.All, Group.Read.All and Application.Read.All?)"
            ))
            .into()
        } else {
            Error::Runtime(e)
        }))
    }

    /// A page link, checked: it stays on the Graph host (the bearer token goes with
    /// it) and does not lead back to a page already read (which would never end).
    fn follow(
        &self,
        link: &str,
        seen: &mut std::collections::HashSet<String>,
    ) -> Result<String, Failure> {
        let path = link.split('?').next().unwrap_or(link);
        if !link.starts_with(&format!("{}/", self.graph_url)) {
            return Err(Failure::Other(Error::Runtime(format!(
                "Graph sent a page link off its host ({path}); not following it"
            ))));
        }
        if !seen.insert(link.to_string()) {
            return Err(Failure::Other(Error::Runtime(format!(
                "Graph paging loops back to a page already read ({path})"
            ))));
        }
        Ok(link.to_string())
    }

    /// Every item of a paged collection.
    fn all(&mut self, url: &str) -> Result<Vec<Value>, Failure> {
        let mut out = vec![];
        let mut seen = std::collections::HashSet::new();
        let mut next = Some(url.to_string());
        while let Some(u) = next {
            let page = self.get(&u)?;
            if let Some(items) = page.get("value").and_then(|v| v.as_array()) {
                out.extend(items.iter().cloned());
            }
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
        let mut seen = std::collections::HashSet::new();
        let mut next = url.to_string();
        loop {
            let page = self.get(&next)?;
            if let Some(items) = page.get("value").and_then(|v| v.as_array()) {
                out.extend(items.iter().cloned());
            }
            if let Some(n) = page.get("@odata.nextLink").and_then(|n| n.as_str()) {
                next = self.follow(n, &mut seen)?;
                continue;
            }
            let link = page
                .get("@odata.deltaLink")
                .and_then(|n| n.as_str())
                .ok_or_else(|| {
                    Failure::Other(Error::Runtime(format!("Graph delta {url}: no deltaLink")))
                })?;
            return Ok((out, link.to_string()));
        }
    }

    fn v1(&self, rest: &str) -> String {
        format!("{}/v1.0/{rest}", self.graph_url)
    }

    /// App-role assignments as directory-file entries, and their hash.
    fn assignments(&mut self) -> Result<(Vec<Value>, String), Failure> {
        let sp = self.get(&self.v1(&format!(
            "servicePrincipals/{}?$select=id,appRoles",
            encode(&self.app)
        )))?;
        let mut roles: HashMap<String, String> = HashMap::new();
        roles.insert(
            crate::emulator::graph::DEFAULT_ACCESS_ROLE_ID.into(),
            directory::DEFAULT_ACCESS.into(),
        );
        for r in sp
            .get("appRoles")
            .and_then(|a| a.as_array())
            .cloned()
            .unwrap_or_default()
        {
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

    /// Member ids of a group (users and groups), flattened when asked.
    fn members(&mut self, gid: &str, seen: &mut HashSet<String>) -> Result<Vec<String>, Failure> {
        let items = self.all(&self.v1(&format!(
            "groups/{}/members?$select=id&$top=999",
            encode(gid)
        )))?;
        let mut out = vec![];
        for m in items {
            let Some(id) = m.get("id").and_then(|i| i.as_str()) else {
                continue;
            };
            let is_group =
                m.get("@odata.type").and_then(|t| t.as_str()) == Some("#microsoft.graph.group");
            if is_group && self.flatten {
                if seen.insert(id.to_string()) {
                    out.extend(self.members(id, seen)?);
                }
            } else {
                out.push(id.to_string());
            }
        }
        Ok(out)
    }

    fn full(&mut self) -> Result<Snapshot, Failure> {
        // Delta links first: changes made while we read land in the next cycle.
        let (_, users_link) = self.delta(&self.v1(&format!(
            "users/delta?$deltatoken=latest&$select={}",
            self.user_select
        )))?;
        let (_, groups_link) = self.delta(&self.v1(&format!(
            "groups/delta?$deltatoken=latest&$select={}",
            GROUP_ATTRIBUTES.join(",")
        )))?;
        let (assignments, hash) = self.assignments()?;
        let users = self.all(&self.v1(&format!("users?$select={}&$top=999", self.user_select)))?;
        let mut groups = self.all(&self.v1(&format!(
            "groups?$select={}&$top=999",
            GROUP_ATTRIBUTES.join(",")
        )))?;
        let assigned: HashSet<String> = assignments
            .iter()
            .filter_map(|a| {
                a.get("principalId")
                    .and_then(|p| p.as_str())
                    .map(str::to_string)
            })
            .collect();
        for g in groups.iter_mut() {
            let gid = g
                .get("id")
                .and_then(|i| i.as_str())
                .unwrap_or("")
                .to_string();
            // With assigned scope only assigned groups' members matter.
            let members = if self.scope == Scope::All || assigned.contains(&gid) {
                let mut seen = HashSet::from([gid.clone()]);
                self.members(&gid, &mut seen)?
            } else {
                vec![]
            };
            g["members"] = json!(members);
        }
        let doc = json!({"users": users, "groups": groups, "assignments": assignments});
        let watermark = Watermark {
            users: users_link,
            groups: groups_link,
            assignments: hash,
        };
        self.snapshot(doc, watermark, None)
    }

    fn snapshot(
        &self,
        doc: Value,
        w: Watermark,
        changed: Option<HashSet<String>>,
    ) -> Result<Snapshot, Failure> {
        let cache = doc.to_string();
        let mut snap = directory::parse_value(doc, self.scope)
            .map_err(|m| Failure::Other(Error::Runtime(format!("Graph data: {m}"))))?;
        snap.watermark = Some(serde_json::to_string(&w).unwrap_or_default());
        snap.cache = Some(cache);
        snap.changed = changed;
        Ok(snap)
    }

    fn incremental(&mut self, req: &ReadRequest<'_>, w: Watermark) -> Result<Snapshot, Failure> {
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
        {
            return Ok(Snapshot {
                watermark: Some(serde_json::to_string(&new_w).unwrap_or_default()),
                unchanged: true,
                ..Snapshot::default()
            });
        }
        let Some(cache) = (req.cache)()? else {
            log::info!("no directory cache in the state: reading Graph in full");
            return self.full();
        };
        let mut doc: Value = serde_json::from_str(&cache)
            .map_err(|e| Failure::Other(Error::Runtime(format!("directory cache: {e}"))))?;
        let mut changed: HashSet<String> = HashSet::new();

        let mut users: Vec<Value> = doc["users"].as_array().cloned().unwrap_or_default();
        let mut index: HashMap<String, usize> = users
            .iter()
            .enumerate()
            .map(|(i, u)| (id_str(u), i))
            .collect();
        let mut removed: HashSet<String> = HashSet::new();
        for item in user_changes {
            let id = id_str(&item);
            changed.insert(id.clone());
            match item.pointer("/@removed/reason").and_then(|r| r.as_str()) {
                Some("deleted") => {
                    removed.insert(id);
                }
                Some(_) => {
                    // Soft delete (reason "changed"): disabled, restorable for 30 days.
                    if let Some(&i) = index.get(&id) {
                        users[i]["deletedDateTime"] =
                            json!(crate::clock::rfc3339(crate::clock::now()));
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

        let mut groups: Vec<Value> = doc["groups"].as_array().cloned().unwrap_or_default();
        let mut gindex: HashMap<String, usize> = groups
            .iter()
            .enumerate()
            .map(|(i, g)| (id_str(g), i))
            .collect();
        let mut gone: HashSet<String> = HashSet::new();
        for item in group_changes {
            let gid = id_str(&item);
            changed.insert(gid.clone());
            if item.get("@removed").is_some() {
                gone.insert(gid);
                continue;
            }
            let i = match gindex.get(&gid) {
                Some(&i) => i,
                None => {
                    gindex.insert(gid.clone(), groups.len());
                    groups.push(json!({"id": gid, "members": []}));
                    groups.len() - 1
                }
            };
            merge(&mut groups[i], &item);
            if let Some(delta) = item.get("members@delta").and_then(|m| m.as_array()) {
                let mut members: Vec<String> = groups[i]["members"]
                    .as_array()
                    .map(|a| {
                        a.iter()
                            .filter_map(|x| x.as_str().map(str::to_string))
                            .collect()
                    })
                    .unwrap_or_default();
                for m in delta {
                    let mid = id_str(m);
                    changed.insert(mid.clone());
                    if m.get("@removed").is_some() {
                        members.retain(|x| x != &mid);
                    } else if !members.contains(&mid) {
                        members.push(mid);
                    }
                }
                groups[i]["members"] = json!(members);
            }
        }
        groups.retain(|g| !gone.contains(&id_str(g)));

        // Assignment changes: the principals whose roles differ, and members of groups.
        let old: Vec<Value> = doc["assignments"].as_array().cloned().unwrap_or_default();
        if hash != w.assignments {
            let key = |a: &Value| {
                (
                    a["principalId"].as_str().unwrap_or("").to_string(),
                    a["appRole"].to_string(),
                )
            };
            let before: HashSet<(String, String)> = old.iter().map(key).collect();
            let after: HashSet<(String, String)> = assignments.iter().map(key).collect();
            for (p, _) in before.symmetric_difference(&after) {
                changed.insert(p.clone());
                if let Some(g) = groups.iter().find(|g| id_str(g) == *p) {
                    for m in g["members"].as_array().into_iter().flatten() {
                        if let Some(m) = m.as_str() {
                            changed.insert(m.to_string());
                        }
                    }
                }
            }
        }
        // A group whose member changed is re-evaluated for its memberships.
        for g in &groups {
            if g["members"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|m| m.as_str().map(|m| changed.contains(m)).unwrap_or(false))
            {
                changed.insert(id_str(g));
            }
        }
        doc = json!({"users": users, "groups": groups, "assignments": assignments});
        let changed = if req.need_all { None } else { Some(changed) };
        self.snapshot(doc, new_w, changed)
    }
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
    Failure::Other(Error::Runtime(format!("Graph: {}", e.message)))
}

impl Source for GraphSource {
    fn read(&mut self, req: &ReadRequest<'_>) -> Result<Snapshot, Error> {
        let w: Option<Watermark> = req.watermark.and_then(|w| serde_json::from_str(w).ok());
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
            Err(Failure::DeltaExpired) => Err(Error::Runtime(
                "Graph delta token expired during a full read".into(),
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
}
