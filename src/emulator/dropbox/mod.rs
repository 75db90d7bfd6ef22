//! The Dropbox for Business emulator: one team in memory, served as SCIM 2.0 at
//! `/scim/v2` with Dropbox's documented behaviour and quirks.
//!
//! * `userName` must be an email — otherwise HTTP 500 from the "meta_scim_shim", as
//!   captured from the real service; `name.familyName` is required.
//! * New members start `invited`; an admin route accepts invitations.
//! * `active=false` suspends an active member, but deletes an invited one (Dropbox
//!   cannot suspend invited members).
//! * Emulator-only routes under `/_emulator/`: request counters by method and
//!   resource, member status, accepting invitations, revoking OAuth grants. The
//!   product never calls them.
//! * Dropbox OAuth 2 (`/oauth2/authorize`, `/oauth2/token`, see `oauth`): access
//!   tokens it issues are accepted beside the static token.
//! * A copy of a real team: `--load FILE` or `POST /_emulator/load` serves what
//!   `scimsync snapshot` read, ids, statuses and memberships kept (rehearsals).
//! * `/Bulk` in a test mode only (`--bulk N`, `{"bulk": N}` to `/_emulator/config`):
//!   Dropbox offers none, but generic SCIM servers do, and one of them refusing a
//!   whole request for one bad operation is a case the client must survive.

mod legacy;
pub mod oauth;

use super::{bearer_ok, Request, Response, Service};
use crate::http::encode;
use crate::scim::attribute::{get_ci, AttrPath};
use crate::scim::filter;
use crate::scim::patch;
use crate::scim::{DROPBOX_STATUS_SCHEMA, ERROR_SCHEMA, GROUP_SCHEMA, LIST_SCHEMA, USER_SCHEMA};
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashMap};

/// A team member's lifecycle status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Invited,
    Active,
    Suspended,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Invited => "invited",
            Status::Active => "active",
            Status::Suspended => "suspended",
        }
    }
}

#[derive(Debug, Clone)]
struct Member {
    resource: Value,
    status: Status,
    /// A team admin (`/_emulator/admin`): may receive a leaver's files.
    admin: bool,
    /// The member's files, by path: what `members/remove` moves, keeps or leaves.
    files: Vec<String>,
}

impl Member {
    fn new(resource: Value, status: Status) -> Member {
        Member {
            resource,
            status,
            admin: false,
            files: vec!["Documents/notes.txt".to_string()],
        }
    }
}

#[derive(Debug, Clone)]
struct Fault {
    needle: String,
    status: u16,
    /// Matching requests let through before the fault starts.
    skip: u64,
    remaining: u64,
}

/// The emulated team.
pub struct Team {
    token: String,
    pub oauth: oauth::OAuthServer,
    users: BTreeMap<String, Member>,
    groups: BTreeMap<String, Value>,
    seq: u64,
    requests: BTreeMap<String, u64>,
    writes: u64,
    email: regex::Regex,
    /// Injected failures: a request whose URL or body contains `needle` answers
    /// `status`, `remaining` more times.
    faults: Vec<Fault>,
    latency: std::time::Duration,
    /// Unique keys → id: ("userName", lowercased), ("externalId", exact),
    /// ("group", lowercased displayName). Keeps filter lookups O(1) at 100k members.
    index: HashMap<(&'static str, String), String>,
    /// Members removed through the Business API: recoverable for 7 days.
    removed: BTreeMap<String, (Member, i64)>,
    /// What each `members/remove` did, in order (`/_emulator/removals`): where the
    /// files went, whether devices were wiped, whether the account was kept.
    removals: Vec<Value>,
    /// Async `members/add_v2` jobs: results and polls left before completion.
    jobs: HashMap<String, (Vec<Value>, u32)>,
    /// SCIM requests as they arrived, while recording (benchmarks replay them);
    /// kept after recording stops, until the next recording starts.
    recorded: Option<Vec<Value>>,
    recording: bool,
    team_id: String,
    /// Operations one `/Bulk` request may carry; 0 (Dropbox) offers no Bulk.
    bulk: usize,
}

fn user_keys(r: &Value) -> Vec<(&'static str, String)> {
    let mut k = vec![];
    if let Some(u) = get_ci(r, "userName").and_then(|u| u.as_str()) {
        k.push(("userName", u.to_lowercase()));
    }
    if let Some(e) = get_ci(r, "externalId").and_then(|u| u.as_str()) {
        k.push(("externalId", e.to_string()));
    }
    k
}

fn group_keys(r: &Value) -> Vec<(&'static str, String)> {
    let mut k = vec![];
    if let Some(n) = get_ci(r, "displayName").and_then(|u| u.as_str()) {
        k.push(("group", n.to_lowercase()));
    }
    if let Some(e) = get_ci(r, "externalId").and_then(|u| u.as_str()) {
        k.push(("groupExternalId", e.to_string()));
    }
    k
}

fn scim_error(status: u16, scim_type: Option<&str>, detail: impl Into<String>) -> Response {
    let mut body =
        json!({"schemas": [ERROR_SCHEMA], "status": status.to_string(), "detail": detail.into()});
    if let (Some(t), Some(o)) = (scim_type, body.as_object_mut()) {
        o.insert("scimType".into(), Value::String(t.into()));
    }
    Response::json(status, body)
}

/// The error Dropbox's SCIM shim answers for a userName that is not an email.
fn shim_error(value: &str) -> Response {
    scim_error(
        500,
        None,
        format!(
            "rpc error: code = scim/unknown source = scim/meta_scim_shim/scim.MetaScimShim/UsersGet desc = '{value}' did not match pattern '{}'",
            crate::scim::profile::DROPBOX_EMAIL_PATTERN
        ),
    )
}

fn as_bool(v: &Value) -> Option<bool> {
    match v {
        Value::Bool(b) => Some(*b),
        Value::String(s) if s.eq_ignore_ascii_case("true") => Some(true),
        Value::String(s) if s.eq_ignore_ascii_case("false") => Some(false),
        _ => None,
    }
}

impl Team {
    pub fn new(token: &str) -> Team {
        Team {
            token: token.to_string(),
            oauth: oauth::OAuthServer::new(
                "scimsync-app",
                None,
                std::time::Duration::from_secs(4 * 3600),
            ),
            users: BTreeMap::new(),
            groups: BTreeMap::new(),
            seq: 0,
            requests: BTreeMap::new(),
            writes: 0,
            index: HashMap::new(),
            removed: BTreeMap::new(),
            removals: vec![],
            jobs: HashMap::new(),
            faults: vec![],
            recorded: None,
            recording: false,
            bulk: 0,
            team_id: format!("dbtid:{}", crate::ids::random_hex(24)),
            latency: std::time::Duration::ZERO,
            email: regex::Regex::new(crate::scim::profile::DROPBOX_EMAIL_PATTERN).unwrap_or_else(
                |_| {
                    // The pattern is a constant; this branch only exists to avoid a panic path.
                    regex::Regex::new(".+@.+").unwrap_or_else(|_| unreachable!())
                },
            ),
        }
    }

    /// The team's id (random per emulator, like a real team's).
    pub fn team_id(&self) -> String {
        self.team_id.clone()
    }

    /// Offers `/Bulk` with this many operations per request (a test mode; 0, as
    /// Dropbox, offers none).
    pub fn set_bulk(&mut self, max_operations: usize) {
        self.bulk = max_operations;
    }

    /// Time added to every answer (a distant service).
    pub fn set_latency(&mut self, latency: std::time::Duration) {
        self.latency = latency;
    }

    fn next_id(&mut self, prefix: &str) -> String {
        self.seq += 1;
        format!("{prefix}{}{:06}", crate::ids::random_hex(10), self.seq)
    }

    fn user_view(&self, id: &str, m: &Member) -> Value {
        let mut r = m.resource.clone();
        if let Some(o) = r.as_object_mut() {
            o.insert("id".into(), Value::String(id.into()));
            o.insert("active".into(), Value::Bool(m.status != Status::Suspended));
            o.insert(
                "schemas".into(),
                json!([USER_SCHEMA, DROPBOX_STATUS_SCHEMA]),
            );
            o.insert(
                DROPBOX_STATUS_SCHEMA.into(),
                json!({"memberStatus": m.status.as_str()}),
            );
            o.insert(
                "meta".into(),
                json!({"resourceType": "User", "location": format!("/scim/v2/Users/{id}")}),
            );
        }
        r
    }

    fn group_view(&self, id: &str, g: &Value, with_members: bool) -> Value {
        let mut r = g.clone();
        if let Some(o) = r.as_object_mut() {
            o.insert("id".into(), Value::String(id.into()));
            o.insert("schemas".into(), json!([GROUP_SCHEMA]));
            o.insert(
                "meta".into(),
                json!({"resourceType": "Group", "location": format!("/scim/v2/Groups/{id}")}),
            );
            if !with_members {
                o.remove("members");
            } else if !o.contains_key("members") {
                o.insert("members".into(), json!([]));
            }
        }
        r
    }

    fn taken(&self, key: (&'static str, String), except: Option<&str>) -> bool {
        self.index
            .get(&key)
            .map(|id| Some(id.as_str()) != except)
            .unwrap_or(false)
    }

    fn user_name_taken(&self, name: &str, except: Option<&str>) -> bool {
        self.taken(("userName", name.to_lowercase()), except)
    }

    fn put_user(&mut self, id: &str, m: Member) {
        if let Some(old) = self.users.get(id) {
            for k in user_keys(&old.resource) {
                self.index.remove(&k);
            }
        }
        for k in user_keys(&m.resource) {
            self.index.insert(k, id.to_string());
        }
        self.users.insert(id.to_string(), m);
    }

    fn put_group(&mut self, id: &str, g: Value) {
        if let Some(old) = self.groups.get(id) {
            for k in group_keys(old) {
                self.index.remove(&k);
            }
        }
        for k in group_keys(&g) {
            self.index.insert(k, id.to_string());
        }
        self.groups.insert(id.to_string(), g);
    }

    fn drop_group(&mut self, id: &str) -> bool {
        match self.groups.remove(id) {
            Some(g) => {
                for k in group_keys(&g) {
                    self.index.remove(&k);
                }
                true
            }
            None => false,
        }
    }

    /// Ids a simple `attr eq "value"` filter can only match, from the index.
    fn indexed(&self, f: &filter::Filter, users: bool) -> Option<Vec<String>> {
        let filter::Filter::Compare(attr, filter::Op::Eq, Value::String(v)) = f else {
            return None;
        };
        let key = match (users, attr.to_ascii_lowercase().as_str()) {
            (true, "username") => ("userName", v.to_lowercase()),
            (true, "externalid") => ("externalId", v.clone()),
            (false, "displayname") => ("group", v.to_lowercase()),
            (false, "externalid") => ("groupExternalId", v.clone()),
            _ => return None,
        };
        Some(self.index.get(&key).cloned().into_iter().collect())
    }

    fn external_id_taken(&self, ext: &str, except: Option<&str>) -> bool {
        self.taken(("externalId", ext.to_string()), except)
    }

    /// Validates a user resource the way Dropbox does.
    fn validate_user(&self, r: &Value, except: Option<&str>) -> Result<(), Response> {
        let user_name = get_ci(r, "userName").and_then(|u| u.as_str()).unwrap_or("");
        if user_name.is_empty() {
            return Err(scim_error(
                400,
                Some("invalidValue"),
                "userName is required",
            ));
        }
        if !self.email.is_match(user_name) {
            return Err(shim_error(user_name));
        }
        let family = AttrPath::parse("name.familyName")
            .ok()
            .and_then(|p| p.get(r).cloned())
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default();
        if family.is_empty() {
            return Err(scim_error(
                400,
                Some("invalidValue"),
                "name.familyName is required",
            ));
        }
        if self.user_name_taken(user_name, except) {
            return Err(scim_error(
                409,
                Some("uniqueness"),
                format!("userName {user_name} is already on the team"),
            ));
        }
        if let Some(ext) = get_ci(r, "externalId").and_then(|e| e.as_str()) {
            if ext.chars().count() > 64 {
                return Err(scim_error(
                    400,
                    Some("invalidValue"),
                    "externalId is longer than 64 characters",
                ));
            }
            if self.external_id_taken(ext, except) {
                return Err(scim_error(
                    409,
                    Some("uniqueness"),
                    format!("externalId {ext} is used by another member"),
                ));
            }
        }
        Ok(())
    }

    /// A ListResponse over candidate ids: views are built only for matches (with a
    /// filter) or only for the requested page (without one).
    fn list_ids(
        &self,
        req: &Request,
        ids: &[String],
        f: Option<&filter::Filter>,
        users: bool,
    ) -> Response {
        let view = |id: &String| -> Option<Value> {
            if users {
                self.users.get(id).map(|m| self.user_view(id, m))
            } else {
                self.groups.get(id).map(|g| self.group_view(id, g, true))
            }
        };
        match f {
            Some(f) => {
                let all: Vec<Value> = ids
                    .iter()
                    .filter_map(view)
                    .filter(|r| f.matches(r))
                    .collect();
                self.list(req, all)
            }
            None => {
                let (start, count) = self.page(req);
                let page: Vec<Value> = ids
                    .iter()
                    .skip(start - 1)
                    .take(count)
                    .filter_map(view)
                    .collect();
                Response::json(
                    200,
                    json!({"schemas": [LIST_SCHEMA], "totalResults": ids.len(), "startIndex": start,
                           "itemsPerPage": page.len(), "Resources": page}),
                )
            }
        }
    }

    fn page(&self, req: &Request) -> (usize, usize) {
        let start = req
            .param("startIndex")
            .and_then(|s| s.parse::<usize>().ok())
            .unwrap_or(1)
            .max(1);
        let count = req
            .param("count")
            .and_then(|s| s.parse::<usize>().ok())
            .unwrap_or(100)
            .min(1000);
        (start, count)
    }

    fn list(&self, req: &Request, resources: Vec<Value>) -> Response {
        let start = req
            .param("startIndex")
            .and_then(|s| s.parse::<usize>().ok())
            .unwrap_or(1)
            .max(1);
        let count = req
            .param("count")
            .and_then(|s| s.parse::<usize>().ok())
            .unwrap_or(100)
            .min(1000);
        let total = resources.len();
        let page: Vec<Value> = resources.into_iter().skip(start - 1).take(count).collect();
        Response::json(
            200,
            json!({"schemas": [LIST_SCHEMA], "totalResults": total, "startIndex": start,
                   "itemsPerPage": page.len(), "Resources": page}),
        )
    }

    fn parse_filter(&self, req: &Request) -> Result<Option<filter::Filter>, Response> {
        match req.param("filter") {
            None => Ok(None),
            Some(f) => filter::parse(f)
                .map(Some)
                .map_err(|e| scim_error(400, Some("invalidFilter"), format!("filter {f:?}: {e}"))),
        }
    }

    fn create_user(&mut self, body: &str) -> Response {
        let Ok(mut r) = serde_json::from_str::<Value>(body) else {
            return scim_error(400, Some("invalidSyntax"), "body is not JSON");
        };
        if let Err(resp) = self.validate_user(&r, None) {
            return resp;
        }
        self.writes += 1;
        let id = self.next_id("dbmid:");
        if let Some(o) = r.as_object_mut() {
            o.remove("id");
            o.remove("active");
            o.remove("meta");
        }
        let m = Member::new(r, Status::Invited);
        let view = self.user_view(&id, &m);
        self.put_user(&id, m);
        Response::json(201, view)
    }

    fn create_group(&mut self, body: &str) -> Response {
        let Ok(mut g) = serde_json::from_str::<Value>(body) else {
            return scim_error(400, Some("invalidSyntax"), "body is not JSON");
        };
        if let Err(r) = self.validate_group(&g, None) {
            return r;
        }
        self.writes += 1;
        let id = self.next_id("g:");
        if let Some(o) = g.as_object_mut() {
            o.remove("id");
            o.remove("meta");
            o.entry("members").or_insert_with(|| json!([]));
        }
        let view = self.group_view(&id, &g, true);
        self.put_group(&id, g);
        Response::json(201, view)
    }

    /// `/Bulk` (RFC 7644 §3.7), offered only in the test mode `bulk` (Dropbox
    /// offers none). Creates only; every operation is validated before any runs,
    /// and one invalid operation fails the request as a whole — as servers that
    /// validate a Bulk payload up front do.
    fn bulk(&mut self, req: &Request) -> Response {
        if self.bulk == 0 {
            return scim_error(501, None, "Bulk is not supported");
        }
        let Ok(body) = serde_json::from_str::<Value>(&req.body) else {
            return scim_error(400, Some("invalidSyntax"), "body is not JSON");
        };
        let ops = body
            .get("Operations")
            .and_then(|o| o.as_array())
            .cloned()
            .unwrap_or_default();
        if ops.len() > self.bulk {
            return scim_error(413, None, format!("more than {} operations", self.bulk));
        }
        for op in &ops {
            let data = op.get("data").cloned().unwrap_or(Value::Null);
            let checked = match op.get("path").and_then(|p| p.as_str()) {
                Some("/Users") => self.validate_user(&data, None),
                Some("/Groups") => self.validate_group(&data, None),
                _ => Err(scim_error(
                    400,
                    Some("invalidPath"),
                    "only POST /Users and /Groups",
                )),
            };
            if let Err(r) = checked {
                let detail = r
                    .body
                    .as_ref()
                    .and_then(|b| b.get("detail"))
                    .and_then(|d| d.as_str())
                    .unwrap_or("invalid")
                    .to_string();
                let bulk_id = op.get("bulkId").and_then(|b| b.as_str()).unwrap_or("?");
                return scim_error(
                    400,
                    Some("invalidValue"),
                    format!("operation {bulk_id}: {detail}; no operation was run"),
                );
            }
        }
        let mut answers = vec![];
        for op in &ops {
            let data = op.get("data").map(|d| d.to_string()).unwrap_or_default();
            let path = op.get("path").and_then(|p| p.as_str()).unwrap_or("");
            let r = if path == "/Users" {
                self.create_user(&data)
            } else {
                self.create_group(&data)
            };
            let id = r.body.as_ref().and_then(|b| b.get("id")).cloned();
            let mut a = json!({"method": "POST", "bulkId": op.get("bulkId"), "status": r.status.to_string()});
            match id {
                Some(Value::String(id)) => {
                    a["location"] = json!(format!("/scim/v2{path}/{id}"));
                    a["response"] = r.body.unwrap_or(Value::Null);
                }
                _ => a["response"] = r.body.unwrap_or(Value::Null),
            }
            answers.push(a);
        }
        Response::json(
            200,
            json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:BulkResponse"], "Operations": answers}),
        )
    }

    /// Serves a copy of a team taken by `scimsync snapshot`: members and groups with
    /// their ids, statuses and memberships. What was there before goes.
    pub fn load(&mut self, doc: &Value) -> Result<(usize, usize), String> {
        let list = |k: &str| {
            doc.get(k)
                .and_then(|v| v.as_array())
                .cloned()
                .unwrap_or_default()
        };
        let id_of = |r: &Value, what: &str| -> Result<String, String> {
            r.get("id")
                .and_then(|i| i.as_str())
                .map(str::to_string)
                .ok_or_else(|| format!("a {what} without an id"))
        };
        let (users, groups) = (list("users"), list("groups"));
        self.users.clear();
        self.groups.clear();
        self.index.clear();
        for u in &users {
            let id = id_of(u, "user")?;
            let status = match u
                .pointer(&format!(
                    "/{}/memberStatus",
                    DROPBOX_STATUS_SCHEMA.replace('/', "~1")
                ))
                .and_then(|s| s.as_str())
            {
                Some("invited") => Status::Invited,
                Some("suspended") => Status::Suspended,
                Some(_) => Status::Active,
                None if get_ci(u, "active").and_then(as_bool) == Some(false) => Status::Suspended,
                None => Status::Active,
            };
            let mut r = u.clone();
            if let Some(o) = r.as_object_mut() {
                for k in ["id", "active", "meta", "schemas", DROPBOX_STATUS_SCHEMA] {
                    o.remove(k);
                }
            }
            self.put_user(&id, Member::new(r, status));
        }
        for g in &groups {
            let id = id_of(g, "group")?;
            let mut r = g.clone();
            if let Some(o) = r.as_object_mut() {
                for k in ["id", "meta", "schemas"] {
                    o.remove(k);
                }
                let members: Vec<Value> = o
                    .get("members")
                    .and_then(|m| m.as_array())
                    .map(|m| {
                        m.iter()
                            .filter_map(|x| x.get("value")?.as_str())
                            .filter(|v| self.users.contains_key(*v))
                            .map(|v| json!({"value": v}))
                            .collect()
                    })
                    .unwrap_or_default();
                o.insert("members".into(), Value::Array(members));
            }
            self.put_group(&id, r);
        }
        Ok((users.len(), groups.len()))
    }

    fn users(&mut self, req: &Request, id: Option<&str>) -> Response {
        match (req.method.as_str(), id) {
            ("GET", None) => {
                let f = match self.parse_filter(req) {
                    Ok(f) => f,
                    Err(r) => return r,
                };
                // The real shim validates userName filter values against its email pattern.
                if let Some(filter::Filter::Compare(p, filter::Op::Eq, Value::String(v))) = &f {
                    if p.eq_ignore_ascii_case("userName") && !self.email.is_match(v) {
                        return shim_error(v);
                    }
                }
                let ids: Vec<String> = match f.as_ref().and_then(|f| self.indexed(f, true)) {
                    Some(ids) => ids,
                    None => self.users.keys().cloned().collect(),
                };
                self.list_ids(req, &ids, f.as_ref(), true)
            }
            ("POST", None) => self.create_user(&req.body),
            ("GET", Some(id)) => match self.users.get(id) {
                Some(m) => Response::json(200, self.user_view(id, m)),
                None => scim_error(404, None, format!("user {id} not found")),
            },
            ("PATCH" | "PUT", Some(id)) => {
                let Some(m) = self.users.get(id).cloned() else {
                    return scim_error(404, None, format!("user {id} not found"));
                };
                let Ok(body) = serde_json::from_str::<Value>(&req.body) else {
                    return scim_error(400, Some("invalidSyntax"), "body is not JSON");
                };
                let mut r = self.user_view(id, &m);
                if req.method == "PATCH" {
                    if let Err((t, d)) = patch::apply(&mut r, &body) {
                        return scim_error(400, Some(t), d);
                    }
                } else {
                    r = body;
                    if get_ci(&r, "active").is_none() {
                        if let Some(o) = r.as_object_mut() {
                            o.insert("active".into(), Value::Bool(true));
                        }
                    }
                }
                if let Err(resp) = self.validate_user(&r, Some(id)) {
                    return resp;
                }
                self.writes += 1;
                let active = get_ci(&r, "active").and_then(as_bool).unwrap_or(true);
                let status = match (m.status, active) {
                    (Status::Invited, false) => {
                        // Dropbox cannot suspend invited members: it deletes them.
                        self.remove_user(id);
                        return Response::empty(204);
                    }
                    (Status::Active, false) | (Status::Suspended, false) => Status::Suspended,
                    (Status::Suspended, true) => Status::Active,
                    (s, true) => s,
                };
                if let Some(o) = r.as_object_mut() {
                    for k in ["id", "active", "meta", "schemas", DROPBOX_STATUS_SCHEMA] {
                        o.remove(k);
                    }
                }
                let m = Member::new(r, status);
                let view = self.user_view(id, &m);
                self.put_user(id, m);
                Response::json(200, view)
            }
            ("DELETE", Some(id)) => {
                if self.remove_user(id) {
                    self.writes += 1;
                    Response::empty(204)
                } else {
                    scim_error(404, None, format!("user {id} not found"))
                }
            }
            _ => scim_error(405, None, "method not allowed"),
        }
    }

    fn remove_user(&mut self, id: &str) -> bool {
        let removed = self.users.remove(id);
        if let Some(m) = &removed {
            for k in user_keys(&m.resource) {
                self.index.remove(&k);
            }
        }
        let existed = removed.is_some();
        if existed {
            for g in self.groups.values_mut() {
                if let Some(Value::Array(ms)) = g.get_mut("members") {
                    ms.retain(|m| m.get("value").and_then(|v| v.as_str()) != Some(id));
                }
            }
        }
        existed
    }

    fn group_name_taken(&self, name: &str, except: Option<&str>) -> bool {
        self.taken(("group", name.to_lowercase()), except)
    }

    fn validate_group(&self, g: &Value, except: Option<&str>) -> Result<(), Response> {
        let name = get_ci(g, "displayName")
            .and_then(|d| d.as_str())
            .unwrap_or("");
        if name.is_empty() {
            return Err(scim_error(
                400,
                Some("invalidValue"),
                "displayName is required",
            ));
        }
        if self.group_name_taken(name, except) {
            return Err(scim_error(
                409,
                Some("uniqueness"),
                format!("group name {name:?} is already used"),
            ));
        }
        if let Some(Value::Array(ms)) = get_ci(g, "members") {
            for m in ms {
                let v = m.get("value").and_then(|v| v.as_str()).unwrap_or("");
                if !self.users.contains_key(v) {
                    return Err(scim_error(
                        400,
                        Some("invalidValue"),
                        format!("member {v} is not on the team"),
                    ));
                }
            }
        }
        Ok(())
    }

    fn groups(&mut self, req: &Request, id: Option<&str>) -> Response {
        let with_members = !req
            .param("excludedAttributes")
            .map(|e| {
                e.split(',')
                    .any(|a| a.trim().eq_ignore_ascii_case("members"))
            })
            .unwrap_or(false);
        match (req.method.as_str(), id) {
            ("GET", None) => {
                let f = match self.parse_filter(req) {
                    Ok(f) => f,
                    Err(r) => return r,
                };
                let ids: Vec<String> = match f.as_ref().and_then(|f| self.indexed(f, false)) {
                    Some(ids) => ids,
                    None => self.groups.keys().cloned().collect(),
                };
                let mut resp = self.list_ids(req, &ids, f.as_ref(), false);
                if !with_members {
                    if let Some(Value::Array(items)) =
                        resp.body.as_mut().and_then(|b| b.get_mut("Resources"))
                    {
                        for r in items {
                            if let Some(o) = r.as_object_mut() {
                                o.remove("members");
                            }
                        }
                    }
                }
                resp
            }
            ("POST", None) => self.create_group(&req.body),
            ("GET", Some(id)) => match self.groups.get(id) {
                Some(g) => Response::json(200, self.group_view(id, g, with_members)),
                None => scim_error(404, None, format!("group {id} not found")),
            },
            ("PATCH" | "PUT", Some(id)) => {
                let Some(g) = self.groups.get(id).cloned() else {
                    return scim_error(404, None, format!("group {id} not found"));
                };
                let Ok(body) = serde_json::from_str::<Value>(&req.body) else {
                    return scim_error(400, Some("invalidSyntax"), "body is not JSON");
                };
                let mut r = g;
                if req.method == "PATCH" {
                    if let Err((t, d)) = patch::apply(&mut r, &body) {
                        return scim_error(400, Some(t), d);
                    }
                } else {
                    r = body;
                }
                if let Err(resp) = self.validate_group(&r, Some(id)) {
                    return resp;
                }
                self.writes += 1;
                if let Some(o) = r.as_object_mut() {
                    for k in ["id", "meta", "schemas"] {
                        o.remove(k);
                    }
                }
                self.put_group(id, r);
                Response::empty(204)
            }
            ("DELETE", Some(id)) => {
                if self.drop_group(id) {
                    self.writes += 1;
                    Response::empty(204)
                } else {
                    scim_error(404, None, format!("group {id} not found"))
                }
            }
            _ => scim_error(405, None, "method not allowed"),
        }
    }

    fn admin(&mut self, req: &Request, rest: &[String]) -> Response {
        match (req.method.as_str(), rest.first().map(String::as_str)) {
            ("GET", Some("stats")) => Response::json(
                200,
                json!({"requests": self.requests, "writes": self.writes}),
            ),
            ("POST", Some("record")) => {
                // {"on": true} starts a fresh recording; {"on": false} stops it.
                let b: Value = serde_json::from_str(&req.body).unwrap_or(Value::Null);
                let on = b.get("on").and_then(|v| v.as_bool()).unwrap_or(false);
                self.recording = on;
                if on {
                    self.recorded = Some(Vec::new());
                }
                Response::empty(204)
            }
            ("GET", Some("recorded")) => {
                Response::json(200, Value::Array(self.recorded.clone().unwrap_or_default()))
            }
            ("POST", Some("reset-stats")) => {
                self.requests.clear();
                self.writes = 0;
                Response::empty(204)
            }
            ("POST", Some("faults")) => {
                // {"match": "user1@", "status": 503, "count": 2, "skip": 1}; {} clears
                // them (`skip`: matching requests let through first).
                let b: Value = serde_json::from_str(&req.body).unwrap_or(Value::Null);
                match b.get("match").and_then(|m| m.as_str()) {
                    Some(m) => self.faults.push(Fault {
                        needle: m.to_string(),
                        status: b.get("status").and_then(|s| s.as_u64()).unwrap_or(500) as u16,
                        skip: b.get("skip").and_then(|s| s.as_u64()).unwrap_or(0),
                        remaining: b.get("count").and_then(|c| c.as_u64()).unwrap_or(u64::MAX),
                    }),
                    None => self.faults.clear(),
                }
                Response::json(200, json!({"faults": self.faults.len()}))
            }
            ("POST", Some("config")) => {
                let b: Value = serde_json::from_str(&req.body).unwrap_or(Value::Null);
                if let Some(ms) = b.get("latency_ms").and_then(|v| v.as_u64()) {
                    self.latency = std::time::Duration::from_millis(ms);
                }
                if let Some(n) = b.get("bulk").and_then(|v| v.as_u64()) {
                    self.bulk = n as usize;
                }
                Response::json(200, json!({"latency_ms": self.latency.as_millis() as u64}))
            }
            ("POST", Some("load")) => {
                let doc: Value = serde_json::from_str(&req.body).unwrap_or(Value::Null);
                match self.load(&doc) {
                    Ok((u, g)) => Response::json(200, json!({"users": u, "groups": g})),
                    Err(e) => scim_error(400, Some("invalidValue"), e),
                }
            }
            ("GET", Some("oauth")) => Response::json(200, self.oauth.issued_tokens()),
            ("POST", Some("revoke")) => {
                // The app is removed from the team: every grant goes.
                self.oauth.revoke();
                Response::empty(204)
            }
            ("GET", Some("members")) => {
                let list: Vec<Value> = self
                    .users
                    .iter()
                    .map(|(id, m)| {
                        json!({"id": id, "userName": get_ci(&m.resource, "userName"),
                               "externalId": get_ci(&m.resource, "externalId"), "status": m.status.as_str()})
                    })
                    .collect();
                Response::json(200, Value::Array(list))
            }
            ("GET", Some("removals")) => Response::json(200, Value::Array(self.removals.clone())),
            ("GET", Some("files")) => {
                let files: serde_json::Map<String, Value> = self
                    .users
                    .values()
                    .chain(self.removed.values().map(|(m, _)| m))
                    .filter_map(|m| {
                        let name = get_ci(&m.resource, "userName")?.as_str()?.to_lowercase();
                        Some((name, json!(m.files)))
                    })
                    .collect();
                Response::json(200, Value::Object(files))
            }
            ("POST", Some("admin")) => {
                // Body: {"userName": "…"}: that member becomes a team admin.
                let want = serde_json::from_str::<Value>(&req.body)
                    .ok()
                    .and_then(|b| b.get("userName")?.as_str().map(str::to_lowercase));
                let found = self.users.values_mut().find(|m| {
                    get_ci(&m.resource, "userName")
                        .and_then(|u| u.as_str())
                        .map(str::to_lowercase)
                        == want
                });
                match found {
                    Some(m) => {
                        m.admin = true;
                        Response::empty(204)
                    }
                    None => scim_error(404, None, "no such member"),
                }
            }
            ("POST", Some("accept")) => {
                // Body: {"userName": "…"} accepts one invitation; {} accepts all.
                let want = serde_json::from_str::<Value>(&req.body).ok().and_then(|b| {
                    b.get("userName")
                        .and_then(|u| u.as_str())
                        .map(str::to_lowercase)
                });
                let mut n = 0;
                for m in self.users.values_mut() {
                    let name = get_ci(&m.resource, "userName")
                        .and_then(|u| u.as_str())
                        .map(str::to_lowercase);
                    if m.status == Status::Invited && (want.is_none() || want == name) {
                        m.status = Status::Active;
                        n += 1;
                    }
                }
                Response::json(200, json!({"accepted": n}))
            }
            _ => scim_error(404, None, "unknown emulator route"),
        }
    }
}

fn service_config(bulk: usize) -> Value {
    json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:ServiceProviderConfig"],
        "documentationUri": "https://help.dropbox.com",
        "patch": {"supported": true},
        "bulk": {"supported": bulk > 0, "maxOperations": bulk, "maxPayloadSize": if bulk > 0 { 1 << 20 } else { 0 }},
        "filter": {"supported": true, "maxResults": 1000},
        "changePassword": {"supported": false},
        "sort": {"supported": false},
        "etag": {"supported": false},
        "authenticationSchemes": [{"type": "oauthbearertoken", "name": "OAuth Bearer Token",
            "description": "Authentication scheme using the OAuth Bearer Token Standard"}],
        "meta": {"resourceType": "ServiceProviderConfig", "location": "/scim/v2/ServiceProviderConfig"}
    })
}

fn resource_types() -> Value {
    let types = json!([
        {"schemas": ["urn:ietf:params:scim:schemas:core:2.0:ResourceType"], "id": "User", "name": "User",
         "endpoint": "/Users", "schema": USER_SCHEMA, "meta": {"resourceType": "ResourceType", "location": "/scim/v2/ResourceTypes/User"}},
        {"schemas": ["urn:ietf:params:scim:schemas:core:2.0:ResourceType"], "id": "Group", "name": "Group",
         "endpoint": "/Groups", "schema": GROUP_SCHEMA, "meta": {"resourceType": "ResourceType", "location": "/scim/v2/ResourceTypes/Group"}}
    ]);
    let n = types.as_array().map(|a| a.len()).unwrap_or(0);
    json!({"schemas": [LIST_SCHEMA], "totalResults": n, "startIndex": 1, "itemsPerPage": n, "Resources": types})
}

fn attr(name: &str, ty: &str, required: bool, case_exact: bool, uniqueness: &str) -> Value {
    json!({"name": name, "type": ty, "multiValued": false, "required": required, "caseExact": case_exact,
           "mutability": "readWrite", "returned": "default", "uniqueness": uniqueness})
}

/// A complex attribute with its sub-attributes.
fn complex(name: &str, required: bool, multi: bool, subs: Value) -> Value {
    let mut a = attr(name, "complex", required, false, "none");
    a["multiValued"] = Value::Bool(multi);
    a["subAttributes"] = subs;
    a
}

fn schemas() -> Value {
    let name = complex(
        "name",
        true,
        false,
        json!([
            attr("givenName", "string", false, false, "none"),
            attr("familyName", "string", true, false, "none"),
            attr("formatted", "string", false, false, "none")
        ]),
    );
    let emails = complex(
        "emails",
        false,
        true,
        json!([
            attr("value", "string", false, false, "none"),
            attr("type", "string", false, false, "none"),
            attr("primary", "boolean", false, false, "none")
        ]),
    );
    let members = complex(
        "members",
        false,
        true,
        json!([
            attr("value", "string", false, true, "none"),
            attr("display", "string", false, false, "none")
        ]),
    );
    let user = json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:Schema"], "id": USER_SCHEMA, "name": "User",
        "attributes": [attr("userName", "string", true, false, "server"), name, emails,
                       attr("externalId", "string", false, true, "server"), attr("active", "boolean", false, false, "none"),
                       attr("displayName", "string", false, false, "none")],
        "meta": {"resourceType": "Schema", "location": format!("/scim/v2/Schemas/{USER_SCHEMA}")}});
    let group = json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:Schema"], "id": GROUP_SCHEMA, "name": "Group",
        "attributes": [attr("displayName", "string", true, false, "server"), members,
                       attr("externalId", "string", false, true, "none")],
        "meta": {"resourceType": "Schema", "location": format!("/scim/v2/Schemas/{GROUP_SCHEMA}")}});
    json!({"schemas": [LIST_SCHEMA], "totalResults": 2, "startIndex": 1, "itemsPerPage": 2, "Resources": [user, group]})
}

impl Team {
    /// userNames of all members (demo and tests).
    pub fn member_names(&self) -> Vec<String> {
        self.users
            .values()
            .filter_map(|m| {
                get_ci(&m.resource, "userName")
                    .and_then(|u| u.as_str())
                    .map(str::to_string)
            })
            .collect()
    }

    /// Accepts one member's invitation; returns whether it was pending.
    pub fn accept(&mut self, user_name: &str) -> bool {
        for m in self.users.values_mut() {
            let name = get_ci(&m.resource, "userName")
                .and_then(|u| u.as_str())
                .unwrap_or("");
            if m.status == Status::Invited && name.eq_ignore_ascii_case(user_name) {
                m.status = Status::Active;
                return true;
            }
        }
        false
    }

    /// (invited, active, suspended, groups)
    pub fn census(&self) -> (usize, usize, usize, usize) {
        let n = |s: Status| self.users.values().filter(|m| m.status == s).count();
        (
            n(Status::Invited),
            n(Status::Active),
            n(Status::Suspended),
            self.groups.len(),
        )
    }
}

impl Team {
    /// An injected failure for this request, if one matches its URL or body.
    fn injected_fault(&mut self, req: &Request) -> Option<Response> {
        let query: Vec<String> = req.query.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let url = format!("{}?{}", req.segments.join("/"), query.join("&"));
        let f = self.faults.iter_mut().find(|f| {
            f.remaining > 0 && (url.contains(&f.needle) || req.body.contains(&f.needle))
        })?;
        if f.skip > 0 {
            f.skip -= 1;
            return None;
        }
        f.remaining -= 1;
        let status = f.status;
        let mut r = scim_error(status, None, "injected fault");
        if status == 429 || status == 503 {
            r.headers.push(("Retry-After".into(), "1".into()));
        }
        Some(r)
    }
}

impl Service for Team {
    fn latency(&self) -> std::time::Duration {
        self.latency
    }

    fn authorized(&self, req: &Request) -> bool {
        bearer_ok(req.authorization.as_deref(), &self.token)
    }

    fn handle(&mut self, req: &Request) -> Response {
        let response = self.route(req);
        if let Some(log) = self.recorded.as_mut().filter(|_| self.recording) {
            if req.segments.first().map(String::as_str) == Some("scim") {
                let mut path = format!("/{}", req.segments.join("/"));
                let query: Vec<String> = req
                    .query
                    .iter()
                    .map(|(k, v)| format!("{}={}", encode(k), encode(v)))
                    .collect();
                if !query.is_empty() {
                    path = format!("{path}?{}", query.join("&"));
                }
                let created = response
                    .body
                    .as_ref()
                    .filter(|_| response.status == 201)
                    .and_then(|b| b.get("id").cloned());
                log.push(json!({"method": req.method, "path": path, "body": req.body,
                    "status": response.status, "created": created}));
            }
        }
        response
    }
}

impl Team {
    fn route(&mut self, req: &Request) -> Response {
        let seg: Vec<&str> = req.segments.iter().map(String::as_str).collect();
        match (req.method.as_str(), seg.as_slice()) {
            ("GET", ["oauth2", "authorize"]) => return self.oauth.authorize(req),
            ("POST", ["oauth2", "token"]) => {
                *self
                    .requests
                    .entry("POST /oauth2/token".into())
                    .or_insert(0) += 1;
                return self.oauth.token(req);
            }
            _ => {}
        }
        if !bearer_ok(req.authorization.as_deref(), &self.token) {
            let given = req
                .authorization
                .as_deref()
                .and_then(|h| h.strip_prefix("Bearer "))
                .unwrap_or("");
            // An access token this team issued, as Dropbox answers a bad one.
            let tag = match self.oauth.check(given) {
                Ok(()) if seg.first() != Some(&"_emulator") => "",
                Err(oauth::Refused::Expired) => "expired_access_token",
                _ => "invalid_access_token",
            };
            if !tag.is_empty() {
                return Response::json(
                    401,
                    json!({"error_summary": format!("{tag}/"), "error": {".tag": tag}}),
                );
            }
        }
        if seg.first() == Some(&"_emulator") {
            let rest: Vec<String> = req.segments[1..].to_vec();
            return self.admin(req, &rest);
        }
        if seg.len() >= 3 && seg[0] == "2" && seg[1] == "team" {
            let route = seg[2..].join("/");
            *self
                .requests
                .entry(format!("POST /2/team/{route}"))
                .or_insert(0) += 1;
            if req.method != "POST" {
                return Response::json(
                    405,
                    json!({"error_summary": "use POST", "error": {".tag": "other"}}),
                );
            }
            if let Some(r) = self.injected_fault(req) {
                return r;
            }
            return self.legacy(&route, &req.body);
        }
        if seg.len() < 3 || seg[0] != "scim" || seg[1] != "v2" {
            return scim_error(404, None, "not found: the SCIM base URL is /scim/v2");
        }
        let resource = seg[2];
        let key = format!("{} /{}", req.method, resource);
        *self.requests.entry(key).or_insert(0) += 1;
        if let Some(r) = self.injected_fault(req) {
            return r;
        }
        let id = seg.get(3).copied();
        // Discovery endpoints are read-only (RFC 7644 §4).
        if matches!(
            resource,
            "ServiceProviderConfig" | "ResourceTypes" | "Schemas"
        ) && req.method != "GET"
        {
            return scim_error(
                405,
                None,
                format!("{} /{resource} is not allowed", req.method),
            );
        }
        match resource {
            "Users" => self.users(req, id),
            "Groups" => self.groups(req, id),
            "ServiceProviderConfig" => Response::json(200, service_config(self.bulk)),
            "Bulk" if req.method == "POST" => self.bulk(req),
            "ResourceTypes" => match id {
                None => Response::json(200, resource_types()),
                Some(t) => resource_types()["Resources"]
                    .as_array()
                    .and_then(|a| a.iter().find(|r| r["id"] == t).cloned())
                    .map(|r| Response::json(200, r))
                    .unwrap_or_else(|| scim_error(404, None, "no such resource type")),
            },
            "Schemas" => match id {
                None => Response::json(200, schemas()),
                Some(s) => schemas()["Resources"]
                    .as_array()
                    .and_then(|a| a.iter().find(|r| r["id"] == s).cloned())
                    .map(|r| Response::json(200, r))
                    .unwrap_or_else(|| scim_error(404, None, "no such schema")),
            },
            _ => scim_error(404, None, format!("no resource {resource}")),
        }
    }
}
