//! The SCIM 2.0 client behind the `dropbox` and `scim` targets.
//!
//! It follows the SCIM client rules of DESIGN.md: real booleans and lower-case ops
//! (unless the profile says otherwise), the PatchOp schema, member removal by filter
//! path, never relying on a PATCH body, 404 on DELETE meaning done, escaped filters.

use super::http::{encode, snippet, Http, Reply};
use super::profile::{MemberRemoval, Profile, DROPBOX, SCIM};
use super::{Change, ErrorClass, Remote, Target, TargetError};
use crate::attribute::{unflatten, AttrPath, Attrs};
use crate::config::{TargetKind, TargetSettings};
use crate::model::ObjectKind;
use serde_json::{json, Value};
use std::collections::BTreeMap;

pub const USER_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
pub const GROUP_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:Group";
pub const PATCH_SCHEMA: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";
pub const LIST_SCHEMA: &str = "urn:ietf:params:scim:api:messages:2.0:ListResponse";
pub const ERROR_SCHEMA: &str = "urn:ietf:params:scim:api:messages:2.0:Error";
/// Where the Dropbox emulator tells a member's status (invited, active, suspended).
pub const DROPBOX_STATUS_SCHEMA: &str =
    "urn:scimsync:params:scim:schemas:extension:dropbox:2.0:User";

pub struct ScimTarget {
    base: String,
    http: Http,
    profile: Profile,
}

fn endpoint(kind: ObjectKind) -> &'static str {
    match kind {
        ObjectKind::User => "Users",
        ObjectKind::Group => "Groups",
    }
}

impl ScimTarget {
    pub fn new(settings: &TargetSettings) -> Result<ScimTarget, crate::error::Error> {
        let profile = match settings.kind {
            TargetKind::Dropbox => DROPBOX,
            _ => SCIM,
        };
        Ok(ScimTarget {
            base: settings.url.clone(),
            http: Http::new(
                settings.token.clone(),
                settings.timeout,
                "application/scim+json",
            ),
            profile,
        })
    }

    /// Shortens retry waits (tests).
    pub fn http_mut(&mut self) -> &mut Http {
        &mut self.http
    }

    fn url(&self, rest: &str) -> String {
        format!("{}/{}", self.base, rest)
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
        let filter = crate::filter::eq(path, value);
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
        let resources = v
            .get("Resources")
            .and_then(|r| r.as_array())
            .cloned()
            .unwrap_or_default();
        resources
            .into_iter()
            .map(|r| self.parse_remote(r))
            .collect()
    }

    fn get(&mut self, kind: ObjectKind, id: &str) -> Result<Option<Remote>, TargetError> {
        let mut q = format!("{}/{}", endpoint(kind), encode(id));
        if kind == ObjectKind::Group && self.profile.groups_exclude_members {
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

    fn create(&mut self, kind: ObjectKind, attrs: &Attrs) -> Result<String, TargetError> {
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
        // Not idempotent: a POST that timed out may have created the object; the next
        // cycle's matching finds it instead of creating it twice.
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

    fn modify(
        &mut self,
        kind: ObjectKind,
        id: &str,
        changes: &[Change],
    ) -> Result<(), TargetError> {
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
        for chunk in user_ids.chunks(self.profile.max_members_per_patch.max(1)) {
            let value: Vec<Value> = chunk.iter().map(|id| json!({"value": id})).collect();
            let op = json!({"op": self.profile.op("add"), "path": "members", "value": value});
            self.patch(ObjectKind::Group, group_id, vec![op])?;
        }
        Ok(())
    }

    fn remove_members(&mut self, group_id: &str, user_ids: &[String]) -> Result<(), TargetError> {
        for chunk in user_ids.chunks(self.profile.max_members_per_patch.max(1)) {
            let ops: Vec<Value> = match self.profile.member_removal {
                MemberRemoval::FilterPath => chunk
                    .iter()
                    .map(|id| {
                        json!({"op": self.profile.op("remove"),
                               "path": format!("members[value eq \"{}\"]", crate::filter::escape(id))})
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

    fn list(&mut self, kind: ObjectKind) -> Result<Vec<Remote>, TargetError> {
        let mut out = vec![];
        loop {
            let url = self.url(&format!(
                "{}?startIndex={}&count=1000",
                endpoint(kind),
                out.len() + 1
            ));
            let reply = self.http.send("GET", &url, None, true)?;
            if reply.status != 200 {
                return Err(self.fail(&format!("GET {}", endpoint(kind)), &reply));
            }
            let page = reply.json()?;
            let items = page
                .get("Resources")
                .and_then(|r| r.as_array())
                .cloned()
                .unwrap_or_default();
            let total = page
                .get("totalResults")
                .and_then(|t| t.as_u64())
                .unwrap_or(0) as usize;
            let n = items.len();
            for r in items {
                out.push(self.parse_remote(r)?);
            }
            if n == 0 || out.len() >= total {
                return Ok(out);
            }
        }
    }

    /// Dropbox's SCIM resources carry no member status; the emulator exposes it in
    /// an extension (`DROPBOX_STATUS_SCHEMA`). Without it nobody counts as invited.
    fn invited(
        &mut self,
        ids: &[String],
    ) -> Result<std::collections::HashSet<String>, TargetError> {
        let mut out = std::collections::HashSet::new();
        for id in ids {
            if let Some(r) = self.get(ObjectKind::User, id)? {
                let status = crate::attribute::get_ci(&r.resource, DROPBOX_STATUS_SCHEMA)
                    .and_then(|x| crate::attribute::get_ci(x, "memberStatus"))
                    .and_then(|x| x.as_str());
                if status == Some("invited") {
                    out.insert(id.clone());
                }
            }
        }
        Ok(out)
    }
}
