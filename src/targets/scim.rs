//! The SCIM 2.0 client behind the `dropbox` and `scim` targets.
//!
//! It follows the SCIM client rules the product promises (README "SCIM targets"):
//! real booleans and lower-case ops
//! (unless the profile says otherwise), the PatchOp schema, member removal by filter
//! path, never relying on a PATCH body, 404 on DELETE meaning done, escaped filters.

use super::{pool, Change, ErrorClass, Remote, Target, TargetError};
use crate::config::{TargetKind, TargetSettings};
use crate::http::{encode, snippet, Http, Reply};
use crate::model::ObjectKind;
use crate::scim::attribute::{unflatten, AttrPath, Attrs};
use crate::scim::profile::{MemberRemoval, Profile, DROPBOX, SCIM};
use crate::scim::{BULK_REQUEST, DROPBOX_STATUS_SCHEMA, GROUP_SCHEMA, PATCH_SCHEMA, USER_SCHEMA};
use serde_json::{json, Value};
use std::collections::BTreeMap;

/// Cloning gives a pool worker: same connection pool, counters and capabilities.
#[derive(Clone)]
pub struct ScimTarget {
    base: String,
    http: Http,
    profile: Profile,
    caps: Option<Caps>,
    max_in_flight: usize,
}

/// What the server's `/ServiceProviderConfig` announces (RFC 7643 §5).
#[derive(Debug, Clone, Copy)]
pub struct Caps {
    pub patch: bool,
    /// Most operations one `/Bulk` request may carry; 0 when Bulk is not offered.
    pub bulk_max_operations: usize,
    pub bulk_max_payload: usize,
    /// Most resources one list answer holds.
    pub max_results: usize,
}

impl Default for Caps {
    fn default() -> Self {
        Caps {
            patch: true,
            bulk_max_operations: 0,
            bulk_max_payload: 0,
            max_results: 1000,
        }
    }
}

/// Creates sent in one Bulk request at most (servers often announce 1,000).
const BULK_CHUNK: usize = 50;

fn endpoint(kind: ObjectKind) -> &'static str {
    match kind {
        ObjectKind::User => "Users",
        ObjectKind::Group => "Groups",
    }
}

impl ScimTarget {
    pub fn new(settings: &TargetSettings) -> Result<ScimTarget, crate::error::Error> {
        let profile = match (&settings.profile, settings.kind) {
            (Some(p), _) => crate::scim::profile::by_name(p).unwrap_or(SCIM),
            (None, TargetKind::Dropbox) => DROPBOX,
            (None, _) => SCIM,
        };
        Ok(ScimTarget {
            base: settings.url.clone(),
            http: Http::new(
                crate::http::credential::Bearer::new(
                    settings.credential.clone(),
                    "scimsync authorize",
                    settings.timeout,
                ),
                settings.timeout,
                "application/scim+json",
            ),
            profile,
            caps: None,
            max_in_flight: settings.max_in_flight.max(1),
        })
    }

    /// Retries and waits (tools and tests that want failures fast).
    pub fn set_retry_policy(&mut self, policy: crate::http::RetryPolicy) {
        self.http.policy = policy;
    }

    fn url(&self, rest: &str) -> String {
        format!("{}/{}", self.base, rest)
    }

    /// Reads `/ServiceProviderConfig` once; a server without one gets the defaults
    /// (PATCH, no Bulk, 1,000 per page).
    pub fn caps(&mut self) -> Caps {
        if let Some(c) = self.caps {
            return c;
        }
        let url = self.url("ServiceProviderConfig");
        let c = match self.http.send("GET", &url, None, true) {
            Ok(r) if r.status == 200 => {
                let v: Value = serde_json::from_str(&r.body).unwrap_or(Value::Null);
                let b = |p: &str| v.pointer(p).and_then(|x| x.as_bool());
                let n = |p: &str| v.pointer(p).and_then(|x| x.as_u64()).map(|x| x as usize);
                let bulk = b("/bulk/supported").unwrap_or(false);
                Caps {
                    patch: b("/patch/supported").unwrap_or(true),
                    bulk_max_operations: if bulk {
                        n("/bulk/maxOperations").unwrap_or(0)
                    } else {
                        0
                    },
                    bulk_max_payload: n("/bulk/maxPayloadSize").unwrap_or(1 << 20),
                    max_results: n("/filter/maxResults")
                        .filter(|m| *m > 0)
                        .unwrap_or(1000)
                        .min(1000),
                }
            }
            _ => Caps::default(),
        };
        log::debug!("target capabilities: {c:?}");
        self.caps = Some(c);
        c
    }

    /// Without PATCH: read the resource, change it, PUT it back whole.
    fn put_changes(
        &mut self,
        kind: ObjectKind,
        id: &str,
        edit: impl FnOnce(&mut Value),
    ) -> Result<(), TargetError> {
        let url = self.url(&format!("{}/{}", endpoint(kind), encode(id)));
        let reply = self.http.send("GET", &url, None, true)?;
        if reply.status != 200 {
            return Err(self.fail(&format!("GET {} {id}", endpoint(kind)), &reply));
        }
        let mut r = reply.json()?;
        edit(&mut r);
        if let Some(o) = r.as_object_mut() {
            o.remove("meta");
        }
        let reply = self.http.send("PUT", &url, Some(&r), true)?;
        if (200..300).contains(&reply.status) {
            Ok(())
        } else {
            Err(self.fail(&format!("PUT {} {id}", endpoint(kind)), &reply))
        }
    }

    /// Creates through `/Bulk` (RFC 7644 §3.7): one result per item, in order, or
    /// the error of the request as a whole.
    fn bulk_create(
        &mut self,
        kind: ObjectKind,
        items: &[&Attrs],
    ) -> Result<Vec<Result<String, TargetError>>, TargetError> {
        let schema = match kind {
            ObjectKind::User => USER_SCHEMA,
            ObjectKind::Group => GROUP_SCHEMA,
        };
        let ops: Vec<Value> = items
            .iter()
            .enumerate()
            .map(|(i, a)| {
                let mut data = unflatten(a, schema);
                if kind == ObjectKind::User {
                    let active = data.get("active").and_then(|x| x.as_bool()).unwrap_or(true);
                    data["active"] = self.profile.active_value(active);
                }
                json!({"method": "POST", "path": format!("/{}", endpoint(kind)), "bulkId": format!("b{i}"), "data": data})
            })
            .collect();
        let body = json!({"schemas": [BULK_REQUEST], "Operations": ops});
        let url = self.url("Bulk");
        let reply = self.http.send("POST", &url, Some(&body), false)?;
        if !(200..300).contains(&reply.status) {
            return Err(self.fail("POST Bulk", &reply));
        }
        let v: Value = serde_json::from_str(&reply.body).unwrap_or(Value::Null);
        let answers = v
            .get("Operations")
            .and_then(|o| o.as_array())
            .cloned()
            .unwrap_or_default();
        Ok((0..items.len())
            .map(|i| {
                let bulk_id = format!("b{i}");
                let Some(op) = answers
                    .iter()
                    .find(|o| o.get("bulkId").and_then(|b| b.as_str()) == Some(bulk_id.as_str()))
                else {
                    return Err(TargetError::new(
                        ErrorClass::Transport,
                        None,
                        format!("Bulk answer has no result for {bulk_id}"),
                    ));
                };
                let status = match op.get("status") {
                    Some(Value::String(s)) => s
                        .split_whitespace()
                        .next()
                        .and_then(|x| x.parse::<u16>().ok())
                        .unwrap_or(0),
                    Some(Value::Number(n)) => n.as_u64().unwrap_or(0) as u16,
                    _ => 0,
                };
                if !(200..300).contains(&status) {
                    let detail = op
                        .pointer("/response/detail")
                        .and_then(|d| d.as_str())
                        .unwrap_or("");
                    let class = match status {
                        409 => ErrorClass::Conflict,
                        s if s >= 500 => ErrorClass::Server,
                        _ => ErrorClass::Invalid,
                    };
                    return Err(TargetError::new(
                        class,
                        Some(status),
                        format!("Bulk POST {}: HTTP {status} {detail}", endpoint(kind)),
                    ));
                }
                op.pointer("/response/id")
                    .and_then(|x| x.as_str())
                    .map(str::to_string)
                    .or_else(|| {
                        op.get("location")
                            .and_then(|l| l.as_str())
                            .and_then(|l| l.rsplit('/').next())
                            .map(str::to_string)
                    })
                    .ok_or_else(|| {
                        TargetError::new(
                            ErrorClass::Transport,
                            None,
                            "Bulk result without id or location",
                        )
                    })
            })
            .collect())
    }

    /// GET one object, with or without a group's members.
    fn get_one(
        &mut self,
        kind: ObjectKind,
        id: &str,
        exclude_members: bool,
    ) -> Result<Option<Remote>, TargetError> {
        let mut q = format!("{}/{}", endpoint(kind), encode(id));
        if exclude_members {
            q.push_str("?excludedAttributes=members");
        }
        let url = self.url(&q);
        let reply = self.http.send("GET", &url, None, true)?;
        match reply.status {
            200 => Ok(Some(self.parse_remote(reply.json()?)?)),
            404 => Ok(None),
            _ => Err(self.fail(&format!("GET {} {id}", endpoint(kind)), &reply)),
        }
    }

    /// Creates through the pool, one request each.
    fn create_each(
        &mut self,
        kind: ObjectKind,
        items: &[&Attrs],
    ) -> Vec<Result<String, TargetError>> {
        let calls: Vec<pool::Call> = items
            .iter()
            .map(|a| pool::Call::Create {
                kind,
                attrs: (*a).clone(),
            })
            .collect();
        self.run_calls(&calls)
            .into_iter()
            .map(|r| match r? {
                pool::Answer::Created(id) => Ok(id),
                _ => Err(TargetError::new(ErrorClass::Transport, None, "no id")),
            })
            .collect()
    }

    /// Turns a non-2xx answer into a classified error with the server's detail.
    fn fail(&self, what: &str, reply: &Reply) -> TargetError {
        let detail = serde_json::from_str::<Value>(&reply.body)
            .ok()
            .and_then(|v| {
                let d = v.get("detail").and_then(|d| d.as_str()).map(str::to_string);
                let t = v
                    .get("scimType")
                    .and_then(|d| d.as_str())
                    .map(str::to_string);
                match (t, d) {
                    (Some(t), Some(d)) => Some(format!("{t}: {d}")),
                    (None, Some(d)) => Some(d),
                    _ => None,
                }
            })
            .unwrap_or_else(|| snippet(&reply.body));
        let class = match reply.status {
            401 | 403 => ErrorClass::Auth,
            404 => ErrorClass::NotFound,
            409 => ErrorClass::Conflict,
            429 => ErrorClass::Throttled,
            s if s >= 500 => ErrorClass::Server,
            _ => ErrorClass::Invalid,
        };
        let hint = match class {
            ErrorClass::Auth => " (check target.token)",
            _ => "",
        };
        TargetError::new(
            class,
            Some(reply.status),
            format!("{what}: HTTP {} {detail}{hint}", reply.status),
        )
    }

    fn parse_remote(&self, v: Value) -> Result<Remote, TargetError> {
        let id = v
            .get("id")
            .and_then(|i| i.as_str())
            .ok_or_else(|| TargetError::new(ErrorClass::Transport, None, "resource without an id"))?
            .to_string();
        Ok(Remote { id, resource: v })
    }

    fn patch(&mut self, kind: ObjectKind, id: &str, ops: Vec<Value>) -> Result<(), TargetError> {
        if ops.is_empty() {
            return Ok(());
        }
        let body = json!({"schemas": [PATCH_SCHEMA], "Operations": ops});
        let url = self.url(&format!("{}/{}", endpoint(kind), encode(id)));
        let reply = self.http.send("PATCH", &url, Some(&body), true)?;
        if (200..300).contains(&reply.status) {
            Ok(())
        } else {
            Err(self.fail(&format!("PATCH {} {id}", endpoint(kind)), &reply))
        }
    }

    /// The PATCH operation for one change.
    fn op_for(&self, c: &Change) -> Value {
        let value = |v: &Value| {
            if c.path.eq_ignore_ascii_case("active") {
                if let Some(b) = v.as_bool() {
                    return self.profile.active_value(b);
                }
            }
            v.clone()
        };
        match (&c.old, &c.new) {
            (_, None) | (_, Some(Value::Null)) => {
                json!({"op": self.profile.op("remove"), "path": c.path})
            }
            (old, Some(new)) => {
                // A filtered path whose element does not exist yet: RFC-strict servers
                // answer `noTarget` to replace, so add the element to the parent.
                if let Ok(p) = AttrPath::parse(&c.path) {
                    if let (Some((fa, fv)), None | Some(Value::Null)) = (&p.filter, old) {
                        let mut elem = serde_json::Map::new();
                        elem.insert(fa.clone(), Value::String(fv.clone()));
                        match &p.sub {
                            Some(s) => {
                                elem.insert(s.clone(), value(new));
                            }
                            None => {
                                return json!({"op": self.profile.op("add"), "path": p.attr, "value": [value(new)]})
                            }
                        }
                        let parent = match &p.schema {
                            Some(u) => format!("{u}:{}", p.attr),
                            None => p.attr.clone(),
                        };
                        return json!({"op": self.profile.op("add"), "path": parent, "value": [Value::Object(elem)]});
                    }
                }
                let op = if old.as_ref().map(|o| o.is_null()).unwrap_or(true) {
                    "add"
                } else {
                    "replace"
                };
                json!({"op": self.profile.op(op), "path": c.path, "value": value(new)})
            }
        }
    }
}

impl ScimTarget {
    fn post_once(&mut self, kind: ObjectKind, attrs: &Attrs) -> Result<String, TargetError> {
        let schema = match kind {
            ObjectKind::User => USER_SCHEMA,
            ObjectKind::Group => GROUP_SCHEMA,
        };
        let mut body = unflatten(attrs, schema);
        if kind == ObjectKind::User {
            if let Some(o) = body.as_object_mut() {
                let active = o.get("active").and_then(|a| a.as_bool()).unwrap_or(true);
                o.insert("active".into(), self.profile.active_value(active));
            }
        }
        let url = self.url(endpoint(kind));
        let reply = self.http.send("POST", &url, Some(&body), false)?;
        if reply.status != 201 && reply.status != 200 {
            let mut e = self.fail(&format!("POST {}", endpoint(kind)), &reply);
            if reply.status == 404 {
                e.message = format!("{} ({})", e.message, super::BASE_URL_HINT);
            }
            return Err(e);
        }
        Ok(self.parse_remote(reply.json()?)?.id)
    }
}

impl ScimTarget {
    fn put_members(
        &mut self,
        group_id: &str,
        user_ids: &[String],
        add: bool,
    ) -> Result<(), TargetError> {
        let url = self.url(&format!("Groups/{}", encode(group_id)));
        let reply = self.http.send("GET", &url, None, true)?;
        if reply.status != 200 {
            return Err(self.fail(&format!("GET Groups {group_id}"), &reply));
        }
        let mut g = reply.json()?;
        let mut members: Vec<Value> = g
            .get("members")
            .and_then(|m| m.as_array())
            .cloned()
            .unwrap_or_default();
        for id in user_ids {
            let has = members
                .iter()
                .any(|m| m.get("value").and_then(|v| v.as_str()) == Some(id.as_str()));
            if add && !has {
                members.push(json!({"value": id}));
            } else if !add {
                members.retain(|m| m.get("value").and_then(|v| v.as_str()) != Some(id.as_str()));
            }
        }
        g["members"] = Value::Array(members);
        if let Some(o) = g.as_object_mut() {
            o.remove("meta");
        }
        let reply = self.http.send("PUT", &url, Some(&g), true)?;
        if (200..300).contains(&reply.status) {
            Ok(())
        } else {
            Err(self.fail(&format!("PUT Groups {group_id}"), &reply))
        }
    }
}

impl Target for ScimTarget {
    fn profile(&self) -> &Profile {
        &self.profile
    }

    fn test_connection(&mut self) -> Result<(), TargetError> {
        let probe = if self.profile.user_name_is_email {
            format!("{}@scimsync-check.invalid", crate::ids::guid())
        } else {
            crate::ids::guid()
        };
        let found = self
            .find(ObjectKind::User, "userName", &probe)
            .map_err(|mut e| {
                if e.class == ErrorClass::NotFound {
                    e.message = format!("{} (is the SCIM base URL right?)", e.message);
                }
                e
            })?;
        if found.is_empty() {
            Ok(())
        } else {
            Err(TargetError::new(
                ErrorClass::Invalid,
                Some(200),
                "a filter on a random userName returned users: the target ignores filters",
            ))
        }
    }

    fn find(
        &mut self,
        kind: ObjectKind,
        path: &str,
        value: &str,
    ) -> Result<Vec<Remote>, TargetError> {
        let filter = crate::scim::filter::eq(path, value);
        let mut q = format!("{}?filter={}", endpoint(kind), encode(&filter));
        if kind == ObjectKind::Group && self.profile.groups_exclude_members {
            q.push_str("&excludedAttributes=members");
        }
        let url = self.url(&q);
        let reply = self.http.send("GET", &url, None, true)?;
        if reply.status != 200 {
            let mut e = self.fail(&format!("GET {} filter {path}", endpoint(kind)), &reply);
            if reply.status == 404 {
                e.message = format!("{} ({})", e.message, super::BASE_URL_HINT);
            }
            return Err(e);
        }
        let v = reply.json()?;
        let total = v.get("totalResults").and_then(|t| t.as_u64()).unwrap_or(0);
        // "Nothing matched" creates an account: only a real empty list says so.
        let resources = match v.get("Resources") {
            Some(Value::Array(a)) => a.clone(),
            None if total == 0 && v.is_object() => vec![],
            _ => {
                return Err(TargetError::new(
                    ErrorClass::Transport,
                    Some(reply.status),
                    format!(
                        "GET {} filter {path}: the answer is not a SCIM list",
                        endpoint(kind)
                    ),
                ))
            }
        };
        let found: Vec<Remote> = resources
            .into_iter()
            .map(|r| self.parse_remote(r))
            .collect::<Result<_, _>>()?;
        let lower = value.to_lowercase();
        if found.is_empty()
            && self.profile.user_name_case_exact
            && path.eq_ignore_ascii_case("userName")
            && lower != value
        {
            return self.find(kind, path, &lower);
        }
        Ok(found)
    }

    fn get(&mut self, kind: ObjectKind, id: &str) -> Result<Option<Remote>, TargetError> {
        self.get_one(
            kind,
            id,
            kind == ObjectKind::Group && self.profile.groups_exclude_members,
        )
    }

    fn get_with_members(&mut self, id: &str) -> Result<Option<Remote>, TargetError> {
        self.get_one(ObjectKind::Group, id, false)
    }

    /// POSTs a new object. A POST is not idempotent: one that failed on the way
    /// (reset, cut answer, 5xx) may have created the object, so before trying once
    /// more the object is looked up by its name; found, it is the one we created.
    fn create(&mut self, kind: ObjectKind, attrs: &Attrs) -> Result<String, TargetError> {
        let first = match self.post_once(kind, attrs) {
            Err(e) if matches!(e.class, ErrorClass::Transport | ErrorClass::Server) => e,
            done => return done,
        };
        let path = match kind {
            ObjectKind::User => "userName",
            ObjectKind::Group => "displayName",
        };
        let Some(name) = attrs.get(path).and_then(|v| v.as_str()) else {
            return Err(first);
        };
        match self.find(kind, path, name) {
            Ok(found) if found.len() == 1 => {
                log::info!(
                    "POST {} failed ({}) but the object was created: found by {path}",
                    endpoint(kind),
                    first.message
                );
                Ok(found[0].id.clone())
            }
            Ok(found) if found.is_empty() => self.post_once(kind, attrs),
            _ => Err(first),
        }
    }
    fn modify(
        &mut self,
        kind: ObjectKind,
        id: &str,
        changes: &[Change],
    ) -> Result<(), TargetError> {
        if !self.caps().patch {
            let profile = self.profile.clone();
            return self.put_changes(kind, id, |r| {
                for c in changes {
                    let Ok(p) = AttrPath::parse(&c.path) else {
                        continue;
                    };
                    match &c.new {
                        None | Some(Value::Null) => {
                            p.remove(r);
                        }
                        Some(v) if c.path.eq_ignore_ascii_case("active") => {
                            p.set(r, profile.active_value(v.as_bool().unwrap_or(true)))
                        }
                        Some(v) => p.set(r, v.clone()),
                    }
                }
            });
        }
        let ops = changes.iter().map(|c| self.op_for(c)).collect();
        self.patch(kind, id, ops)
    }

    fn delete(&mut self, kind: ObjectKind, id: &str) -> Result<(), TargetError> {
        let url = self.url(&format!("{}/{}", endpoint(kind), encode(id)));
        let reply = self.http.send("DELETE", &url, None, true)?;
        if (200..300).contains(&reply.status)
            || self.profile.delete_gone_statuses.contains(&reply.status)
        {
            Ok(())
        } else {
            Err(self.fail(&format!("DELETE {} {id}", endpoint(kind)), &reply))
        }
    }

    fn add_members(&mut self, group_id: &str, user_ids: &[String]) -> Result<(), TargetError> {
        if !self.caps().patch {
            return self.put_members(group_id, user_ids, true);
        }
        if !self.caps().patch {
            return self.put_members(group_id, user_ids, true);
        }
        for chunk in user_ids.chunks(self.profile.max_members_per_patch.max(1)) {
            let value: Vec<Value> = chunk.iter().map(|id| json!({"value": id})).collect();
            let op = json!({"op": self.profile.op("add"), "path": "members", "value": value});
            self.patch(ObjectKind::Group, group_id, vec![op])?;
        }
        Ok(())
    }

    fn remove_members(&mut self, group_id: &str, user_ids: &[String]) -> Result<(), TargetError> {
        if !self.caps().patch {
            return self.put_members(group_id, user_ids, false);
        }
        if !self.caps().patch {
            return self.put_members(group_id, user_ids, false);
        }
        for chunk in user_ids.chunks(self.profile.max_members_per_patch.max(1)) {
            let ops: Vec<Value> = match self.profile.member_removal {
                MemberRemoval::FilterPath => chunk
                    .iter()
                    .map(|id| {
                        json!({"op": self.profile.op("remove"),
                               "path": format!("members[value eq \"{}\"]", crate::scim::filter::escape(id))})
                    })
                    .collect(),
                MemberRemoval::ValueList => {
                    let value: Vec<Value> = chunk.iter().map(|id| json!({"value": id})).collect();
                    vec![json!({"op": self.profile.op("remove"), "path": "members", "value": value})]
                }
            };
            self.patch(ObjectKind::Group, group_id, ops)?;
        }
        Ok(())
    }

    fn request_counts(&self) -> BTreeMap<String, u64> {
        self.http.counts()
    }

    fn reload_credentials(&mut self) {
        self.http.bearer().reload();
    }

    fn token_refreshes(&self) -> u64 {
        self.http.bearer().refreshes()
    }

    fn answer_counts(&self) -> BTreeMap<(String, String), u64> {
        self.http.answers()
    }

    fn create_batch_size(&mut self) -> usize {
        match self.caps().bulk_max_operations {
            0 | 1 if self.max_in_flight > 1 => self.max_in_flight * pool::PER_WORKER,
            0 | 1 => 1,
            n => n.min(BULK_CHUNK),
        }
    }

    fn max_in_flight(&self) -> usize {
        self.max_in_flight
    }

    fn run_calls(&mut self, calls: &[pool::Call]) -> Vec<pool::Reply> {
        // Discovered once here, so the workers do not each ask.
        self.caps();
        let n = self.max_in_flight.min(calls.len()).max(1);
        let workers = (0..n).map(|_| self.clone()).collect();
        pool::run(workers, calls)
    }

    fn create_batch(
        &mut self,
        kind: ObjectKind,
        items: &[&Attrs],
    ) -> Vec<Result<String, TargetError>> {
        if items.len() > 1 && self.caps().bulk_max_operations > 1 {
            let n = self.caps().bulk_max_operations.min(BULK_CHUNK);
            let mut out = Vec::with_capacity(items.len());
            for chunk in items.chunks(n) {
                match self.bulk_create(kind, chunk) {
                    Ok(results) => out.extend(results),
                    // Refused as a whole (one object the server will not take
                    // spoils the request, nothing of it ran): each on its own,
                    // so only that object fails.
                    Err(e) if refused_whole(&e) => {
                        log::debug!("Bulk refused ({}); creating one by one", e.message);
                        out.extend(self.create_each(kind, chunk));
                    }
                    // The request may have run in part: the creates are in doubt
                    // and the next cycle looks them up before creating again.
                    Err(e) => out.extend(chunk.iter().map(|_| Err(e.clone()))),
                }
            }
            return out;
        }
        self.create_each(kind, items)
    }

    fn wire(&mut self) -> Option<pool::Wire> {
        if self.max_in_flight <= 1 || self.caps().bulk_max_operations > 1 {
            return None;
        }
        self.call_wire()
    }

    fn call_wire(&mut self) -> Option<pool::Wire> {
        if self.max_in_flight <= 1 {
            return None;
        }
        // Discovered here, so the forks do not each ask.
        self.caps();
        let workers = (0..self.max_in_flight)
            .map(|_| {
                let mut fork = self.clone();
                move |c: &pool::Call| pool::execute(&mut fork, c)
            })
            .collect();
        Some(pool::Wire::open(workers))
    }

    fn list(&mut self, kind: ObjectKind) -> Result<Vec<Remote>, TargetError> {
        let mut out = vec![];
        let mut seen = std::collections::HashSet::new();
        let page_size = self.caps().max_results;
        for _ in 0..super::MAX_LIST_PAGES {
            let url = self.url(&format!(
                "{}?startIndex={}&count={page_size}",
                endpoint(kind),
                out.len() + 1
            ));
            let reply = self.http.send("GET", &url, None, true)?;
            if reply.status != 200 {
                return Err(self.fail(&format!("GET {}", endpoint(kind)), &reply));
            }
            let page = reply.json()?;
            let total = page
                .get("totalResults")
                .and_then(|t| t.as_u64())
                .unwrap_or(0) as usize;
            // What a listing says decides adoption: a page without its resources
            // (other than an empty list, where RFC 7644 lets them be left out) is
            // a failed read, not an empty target.
            let items = match page.get("Resources") {
                Some(Value::Array(a)) => a.clone(),
                None if total == 0 && page.is_object() => vec![],
                _ => {
                    return Err(TargetError::new(
                        ErrorClass::Transport,
                        Some(reply.status),
                        format!("GET {}: the answer is not a SCIM list", endpoint(kind)),
                    ))
                }
            };
            let n = items.len();
            let mut new = 0;
            for r in items {
                let r = self.parse_remote(r)?;
                if seen.insert(r.id.clone()) {
                    new += 1;
                    out.push(r);
                }
            }
            if n == 0 || out.len() >= total {
                return Ok(out);
            }
            if new == 0 {
                // A server that answers the same page again would be listed forever.
                return Err(TargetError::new(
                    ErrorClass::Transport,
                    Some(reply.status),
                    format!(
                        "GET {}: page at startIndex {} repeats objects already listed (totalResults {total})",
                        endpoint(kind),
                        out.len() + 1
                    ),
                ));
            }
        }
        Err(TargetError::new(
            ErrorClass::Transport,
            None,
            format!(
                "GET {}: more than {} pages; stopped",
                endpoint(kind),
                super::MAX_LIST_PAGES
            ),
        ))
    }

    /// Dropbox's SCIM resources carry no member status; the emulator exposes it in
    /// an extension (`DROPBOX_STATUS_SCHEMA`). Without it nobody counts as invited.
    fn invited(
        &mut self,
        ids: &[String],
    ) -> Result<std::collections::HashSet<String>, TargetError> {
        let mut out = std::collections::HashSet::new();
        let calls: Vec<pool::Call> = ids
            .iter()
            .map(|id| pool::Call::Get {
                kind: ObjectKind::User,
                id: id.clone(),
            })
            .collect();
        for (id, r) in ids.iter().zip(self.run_calls(&calls)) {
            if let pool::Answer::Got(Some(r)) = r? {
                let status = crate::scim::attribute::get_ci(&r.resource, DROPBOX_STATUS_SCHEMA)
                    .and_then(|x| crate::scim::attribute::get_ci(x, "memberStatus"))
                    .and_then(|x| x.as_str());
                if status == Some("invited") {
                    out.insert(id.clone());
                }
            }
        }
        Ok(out)
    }
}

/// A Bulk request the server refused before running any of it (400, 409, 413, a
/// missing route): safe to send again one object at a time.
fn refused_whole(e: &TargetError) -> bool {
    matches!(
        e.class,
        ErrorClass::Invalid | ErrorClass::Conflict | ErrorClass::NotFound
    )
}
