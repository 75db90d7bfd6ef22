//! The legacy Dropbox Business API v2 (`POST /2/team/<route>`) over the same team
//! the SCIM endpoint serves, so a migration can be rehearsed on one machine.
//!
//! Shapes follow dropbox-api-spec (team.stone): union `.tag` encoding with inlined
//! struct members, 409 `{"error_summary","error":{".tag"}}` for route errors, members
//! added up to 20 per call (asynchronously when asked, polled through
//! `members/add/job_status/get_v2`), invited members that cannot be suspended
//! (`suspend_inactive_user`), removed members recoverable for 7 days during which an
//! add answers `user_already_on_team`.

use super::{Member, Status, Team};
use crate::emulator::Response;
use crate::scim::attribute::get_ci;
use serde_json::{json, Value};

/// A removed member stays recoverable this long (seconds).
const RECOVERABLE_FOR: i64 = 7 * 86_400;

fn route_error(tag: &str, extra: Option<(&str, Value)>) -> Response {
    let mut err = json!({".tag": tag});
    if let Some((k, v)) = extra {
        err[k] = v;
    }
    Response::json(
        409,
        json!({"error_summary": format!("{tag}/.."), "error": err}),
    )
}

fn bad_input(msg: &str) -> Response {
    // The real API answers malformed input with plain text; the emulator keeps JSON
    // transport but uses the same status.
    Response::json(
        400,
        json!({"error_summary": msg, "error": {".tag": "bad_request"}}),
    )
}

fn tag(v: &Value) -> Option<&str> {
    match v {
        Value::String(s) => Some(s),
        Value::Object(o) => o.get(".tag").and_then(|t| t.as_str()),
        _ => None,
    }
}

fn name_of(r: &Value) -> (String, String) {
    let n = get_ci(r, "name");
    let g = n
        .and_then(|n| get_ci(n, "givenName"))
        .and_then(|v| v.as_str())
        .unwrap_or("")
        .to_string();
    let f = n
        .and_then(|n| get_ci(n, "familyName"))
        .and_then(|v| v.as_str())
        .unwrap_or("")
        .to_string();
    (g, f)
}

/// The window a list route asks for: `limit` on the first call, the cursor after.
fn page_window(first: bool, arg: &Value) -> Result<(usize, usize), Response> {
    if first {
        let limit = arg
            .get("limit")
            .and_then(|l| l.as_u64())
            .unwrap_or(1000)
            .clamp(1, 1000);
        return Ok((0, limit as usize));
    }
    let c = arg.get("cursor").and_then(|c| c.as_str()).unwrap_or("");
    c.split_once(':')
        .and_then(|(a, b)| Some((a.parse().ok()?, b.parse().ok()?)))
        .ok_or_else(|| route_error("invalid_cursor", None))
}

impl Team {
    /// Finds a member id by a UserSelector.
    fn select_user(&self, sel: &Value) -> Option<String> {
        match tag(sel)? {
            "team_member_id" => sel
                .get("team_member_id")
                .and_then(|v| v.as_str())
                .filter(|id| self.users.contains_key(*id))
                .map(str::to_string),
            "email" => {
                let e = sel.get("email")?.as_str()?.to_lowercase();
                self.index.get(&("userName", e)).cloned()
            }
            "external_id" => {
                let e = sel.get("external_id")?.as_str()?.to_string();
                self.index.get(&("externalId", e)).cloned()
            }
            _ => None,
        }
    }

    fn select_group(&self, sel: &Value) -> Option<String> {
        match tag(sel)? {
            "group_id" => sel
                .get("group_id")
                .and_then(|v| v.as_str())
                .filter(|id| self.groups.contains_key(*id))
                .map(str::to_string),
            "group_external_id" => {
                let e = sel.get("group_external_id")?.as_str()?.to_string();
                self.index.get(&("groupExternalId", e)).cloned()
            }
            _ => None,
        }
    }

    /// TeamMemberProfile of a member.
    fn profile(&self, id: &str, m: &Member) -> Value {
        let email = get_ci(&m.resource, "userName")
            .and_then(|v| v.as_str())
            .unwrap_or("")
            .to_string();
        let (given, family) = name_of(&m.resource);
        let groups: Vec<Value> = self
            .groups
            .iter()
            .filter(|(_, g)| {
                g.get("members")
                    .and_then(|ms| ms.as_array())
                    .map(|ms| {
                        ms.iter()
                            .any(|x| x.get("value").and_then(|v| v.as_str()) == Some(id))
                    })
                    .unwrap_or(false)
            })
            .map(|(gid, _)| Value::String(gid.clone()))
            .collect();
        let initials: String = [given.chars().next(), family.chars().next()]
            .into_iter()
            .flatten()
            .collect();
        json!({
            "team_member_id": id,
            "account_id": format!("dbid:{}", id.trim_start_matches("dbmid:")),
            "external_id": get_ci(&m.resource, "externalId"),
            "email": email,
            "email_verified": m.status != Status::Invited,
            "status": {".tag": m.status.as_str()},
            "name": {"given_name": given, "surname": family, "familiar_name": given,
                     "display_name": format!("{given} {family}").trim().to_string(), "abbreviated_name": initials},
            "membership_type": {".tag": "full"},
            "groups": groups,
            "member_folder_id": "20",
            "root_folder_id": "30",
        })
    }

    fn member_info(&self, id: &str) -> Value {
        match self.users.get(id) {
            Some(m) if m.admin => json!({"profile": self.profile(id, m),
                "roles": [{"role_id": "pid_dbtmr:team_admin", "name": "Team", "description": "Team admin"}]}),
            Some(m) => json!({"profile": self.profile(id, m), "roles": []}),
            None => Value::Null,
        }
    }

    fn group_info(&self, id: &str) -> Value {
        let g = self.groups.get(id).cloned().unwrap_or(Value::Null);
        let n = g
            .get("members")
            .and_then(|m| m.as_array())
            .map(|m| m.len())
            .unwrap_or(0);
        let mgmt = g
            .get("groupManagementType")
            .and_then(|m| m.as_str())
            .unwrap_or("company_managed");
        json!({"group_name": get_ci(&g, "displayName"), "group_id": id, "group_external_id": get_ci(&g, "externalId"),
               "member_count": n, "group_management_type": {".tag": mgmt}, "created": 1_447_255_518_000u64})
    }

    fn add_one(&mut self, arg: &Value) -> Value {
        let email = arg
            .get("member_email")
            .and_then(|v| v.as_str())
            .unwrap_or("")
            .to_string();
        if !self.email.is_match(&email) {
            return json!({".tag": "user_creation_failed", "user_creation_failed": email});
        }
        let lower = email.to_lowercase();
        let recently_removed = self.removed.values().any(|(m, at)| {
            crate::clock::now() - at < RECOVERABLE_FOR
                && get_ci(&m.resource, "userName")
                    .and_then(|u| u.as_str())
                    .map(|u| u.to_lowercase() == lower)
                    .unwrap_or(false)
        });
        if self.index.contains_key(&("userName", lower)) || recently_removed {
            return json!({".tag": "user_already_on_team", "user_already_on_team": email});
        }
        let ext = arg
            .get("member_external_id")
            .and_then(|v| v.as_str())
            .map(str::to_string);
        if let Some(e) = &ext {
            if e.chars().count() > 64 || self.index.contains_key(&("externalId", e.clone())) {
                return json!({".tag": "duplicate_external_member_id", "duplicate_external_member_id": email});
            }
        }
        let given = arg
            .get("member_given_name")
            .and_then(|v| v.as_str())
            .unwrap_or("");
        let surname = arg
            .get("member_surname")
            .and_then(|v| v.as_str())
            .unwrap_or("");
        let mut r = json!({"userName": email, "emails": [{"type": "work", "value": email, "primary": true}],
                           "name": {"givenName": given, "familyName": surname}});
        if let Some(e) = ext {
            r["externalId"] = Value::String(e);
        }
        self.writes += 1;
        let id = self.next_id("dbmid:");
        self.put_user(&id, Member::new(r, Status::Invited));
        let profile = self
            .users
            .get(&id)
            .map(|m| self.profile(&id, m))
            .unwrap_or(Value::Null);
        json!({".tag": "success", "profile": profile, "roles": []})
    }

    /// Handles `POST /2/team/<route>`.
    pub(super) fn legacy(&mut self, route: &str, body: &str) -> Response {
        let arg: Value = if body.trim().is_empty() {
            Value::Null
        } else {
            match serde_json::from_str(body) {
                Ok(v) => v,
                Err(e) => return bad_input(&format!("Error in call to API function \"team/{route}\": could not decode input as JSON: {e}")),
            }
        };
        match route {
            "get_info" => Response::json(
                200,
                json!({"name": "Emulated Team", "team_id": self.team_id(),
                       "num_licensed_users": 1_000_000, "num_provisioned_users": self.users.len()}),
            ),
            "members/add_v2" | "members/add" => self.members_add(&arg),
            "members/add/job_status/get_v2" | "members/add/job_status/get" => {
                self.members_add_job_status(&arg)
            }
            "members/get_info_v2" => self.members_get_info(&arg),
            "members/list_v2" | "members/list/continue_v2" => self.members_list(&arg, route),
            "members/set_profile_v2" | "members/set_profile" => self.members_set_profile(&arg),
            "members/suspend" => self.members_suspend(&arg),
            "members/unsuspend" => self.members_unsuspend(&arg),
            "members/remove" => self.members_remove(&arg),
            "members/recover" => self.members_recover(&arg),
            "groups/create" => self.groups_create(&arg),
            "groups/update" => self.groups_update(&arg),
            "groups/delete" => self.groups_delete(&arg),
            "groups/list" | "groups/list/continue" => self.groups_list(&arg, route),
            "groups/members/add" | "groups/members/remove" => self.groups_members(&arg, route),
            other => Response::json(
                404,
                json!({"error_summary": format!("unknown route team/{other}"), "error": {".tag": "other"}}),
            ),
        }
    }

    fn groups_members(&mut self, arg: &Value, route: &str) -> Response {
        let Some(gid) = arg.get("group").and_then(|g| self.select_group(g)) else {
            return route_error("group_not_found", None);
        };
        let add = route == "groups/members/add";
        let sels: Vec<Value> = if add {
            arg.get("members")
                .and_then(|m| m.as_array())
                .map(|a| a.iter().filter_map(|x| x.get("user").cloned()).collect())
                .unwrap_or_default()
        } else {
            arg.get("users")
                .and_then(|m| m.as_array())
                .cloned()
                .unwrap_or_default()
        };
        let mut ids = vec![];
        for s in &sels {
            match self.select_user(s) {
                Some(id) => ids.push(id),
                None => {
                    return route_error("users_not_found", Some(("users_not_found", json!([s]))))
                }
            }
        }
        let Some(mut g) = self.groups.get(&gid).cloned() else {
            return route_error("group_not_found", None);
        };
        let mut members: Vec<Value> = g
            .get("members")
            .and_then(|m| m.as_array())
            .cloned()
            .unwrap_or_default();
        for id in &ids {
            let present = members
                .iter()
                .any(|m| m.get("value").and_then(|v| v.as_str()) == Some(id.as_str()));
            match (add, present) {
                (true, true) => {
                    return route_error("duplicate_user", Some(("duplicate_user", json!([id]))))
                }
                (true, false) => members.push(json!({"value": id})),
                (false, false) => return route_error("member_not_in_group", None),
                (false, true) => {
                    members.retain(|m| m.get("value").and_then(|v| v.as_str()) != Some(id.as_str()))
                }
            }
        }
        g["members"] = Value::Array(members);
        self.writes += 1;
        self.put_group(&gid, g);
        Response::json(
            200,
            json!({"group_info": self.group_info(&gid), "async_job_id": " "}),
        )
    }

    fn members_add(&mut self, arg: &Value) -> Response {
        let Some(list) = arg.get("new_members").and_then(|m| m.as_array()).cloned() else {
            return bad_input("new_members is required");
        };
        if list.len() > 20 {
            return bad_input("new_members: at most 20 members per call");
        }
        let results: Vec<Value> = list.iter().map(|m| self.add_one(m)).collect();
        let force_async = arg
            .get("force_async")
            .and_then(|v| v.as_bool())
            .unwrap_or(false);
        if force_async || results.len() > 10 {
            let job = format!("dbjid:{}", crate::ids::random_hex(16));
            self.jobs.insert(job.clone(), (results, 1));
            return Response::json(200, json!({".tag": "async_job_id", "async_job_id": job}));
        }
        Response::json(200, json!({".tag": "complete", "complete": results}))
    }

    fn members_add_job_status(&mut self, arg: &Value) -> Response {
        let id = arg
            .get("async_job_id")
            .and_then(|v| v.as_str())
            .unwrap_or("")
            .to_string();
        match self.jobs.get_mut(&id) {
            // The first poll finds the job still running.
            Some((_, polls)) if *polls > 0 => {
                *polls -= 1;
                Response::json(200, json!({".tag": "in_progress"}))
            }
            Some((results, _)) => {
                Response::json(200, json!({".tag": "complete", "complete": results}))
            }
            None => route_error("invalid_async_job_id", None),
        }
    }

    fn members_get_info(&mut self, arg: &Value) -> Response {
        let sels = arg
            .get("members")
            .and_then(|m| m.as_array())
            .cloned()
            .unwrap_or_default();
        let info: Vec<Value> = sels
            .iter()
            .map(|s| match self.select_user(s) {
                Some(id) => {
                    let mut v = self.member_info(&id);
                    v[".tag"] = json!("member_info");
                    v
                }
                None => {
                    let key = s
                        .as_object()
                        .and_then(|o| o.iter().find(|(k, _)| *k != ".tag"))
                        .map(|(_, v)| v.clone())
                        .unwrap_or(Value::Null);
                    json!({".tag": "id_not_found", "id_not_found": key})
                }
            })
            .collect();
        Response::json(200, json!({"members_info": info}))
    }

    fn members_list(&mut self, arg: &Value, route: &str) -> Response {
        let (start, limit) = match page_window(route == "members/list_v2", arg) {
            Ok(w) => w,
            Err(r) => return r,
        };
        let ids: Vec<String> = self.users.keys().cloned().collect();
        let page: Vec<Value> = ids
            .iter()
            .skip(start)
            .take(limit)
            .map(|id| self.member_info(id))
            .collect();
        let next = start + page.len();
        Response::json(
            200,
            json!({"members": page, "cursor": format!("{next}:{limit}"), "has_more": next < ids.len()}),
        )
    }

    fn members_set_profile(&mut self, arg: &Value) -> Response {
        let Some(id) = arg.get("user").and_then(|u| self.select_user(u)) else {
            return route_error("user_not_found", None);
        };
        let keys = [
            "new_email",
            "new_external_id",
            "new_given_name",
            "new_surname",
        ];
        if !keys.iter().any(|k| arg.get(*k).is_some()) {
            return route_error("no_new_data_specified", None);
        }
        let Some(mut m) = self.users.get(&id).cloned() else {
            return route_error("user_not_found", None);
        };
        if let Some(e) = arg.get("new_email").and_then(|v| v.as_str()) {
            if !self.email.is_match(e) {
                return route_error("param_cannot_be_empty", None);
            }
            if self
                .index
                .get(&("userName", e.to_lowercase()))
                .map(|x| x != &id)
                .unwrap_or(false)
            {
                return route_error("email_reserved_for_other_user", None);
            }
            m.resource["userName"] = json!(e);
            m.resource["emails"] = json!([{"type": "work", "value": e, "primary": true}]);
        }
        if let Some(e) = arg.get("new_external_id").and_then(|v| v.as_str()) {
            if self
                .index
                .get(&("externalId", e.to_string()))
                .map(|x| x != &id)
                .unwrap_or(false)
            {
                return route_error("external_id_used_by_other_user", None);
            }
            m.resource["externalId"] = json!(e);
        }
        if let Some(g) = arg.get("new_given_name").and_then(|v| v.as_str()) {
            m.resource["name"]["givenName"] = json!(g);
        }
        if let Some(f) = arg.get("new_surname").and_then(|v| v.as_str()) {
            m.resource["name"]["familyName"] = json!(f);
        }
        self.writes += 1;
        self.put_user(&id, m);
        Response::json(200, json!({"member_info": self.member_info(&id)}))
    }

    fn members_suspend(&mut self, arg: &Value) -> Response {
        let Some(id) = arg.get("user").and_then(|u| self.select_user(u)) else {
            return route_error("user_not_found", None);
        };
        match self.users.get_mut(&id) {
            Some(m) if m.status == Status::Active => {
                m.status = Status::Suspended;
                self.writes += 1;
                Response::json(200, Value::Null)
            }
            _ => route_error("suspend_inactive_user", None),
        }
    }

    fn members_unsuspend(&mut self, arg: &Value) -> Response {
        let Some(id) = arg.get("user").and_then(|u| self.select_user(u)) else {
            return route_error("user_not_found", None);
        };
        match self.users.get_mut(&id) {
            Some(m) if m.status == Status::Suspended => {
                m.status = Status::Active;
                self.writes += 1;
                Response::json(200, Value::Null)
            }
            _ => route_error("unsuspend_non_suspended_member", None),
        }
    }

    /// `members/remove` as the Business API documents it: `wipe_data` (default
    /// true), `transfer_dest_id` with `transfer_admin_id`, `keep_account`,
    /// `retain_team_shares`, and the error tags of combinations it refuses.
    fn members_remove(&mut self, arg: &Value) -> Response {
        let Some(id) = arg.get("user").and_then(|u| self.select_user(u)) else {
            return route_error("user_not_found", None);
        };
        let Some(m) = self.users.get(&id).cloned() else {
            return route_error("user_not_in_team", None);
        };
        let flag = |k: &str, default: bool| arg.get(k).and_then(Value::as_bool).unwrap_or(default);
        let (wipe, keep, retain) = (
            flag("wipe_data", true),
            flag("keep_account", false),
            flag("retain_team_shares", false),
        );
        let member_id = |k: &str| arg.get(k).and_then(Value::as_str).map(str::to_string);
        let (dest, admin) = (
            member_id("transfer_dest_id"),
            member_id("transfer_admin_id"),
        );
        if let Err(tag) = self.remove_refusal(
            &id,
            &m,
            (wipe, keep, retain),
            dest.as_deref(),
            admin.as_deref(),
        ) {
            return route_error(tag, None);
        }
        let name = |t: &Team, id: &str| {
            t.users
                .get(id)
                .and_then(|m| get_ci(&m.resource, "userName").cloned())
        };
        let mut removed = m.clone();
        let moved_to = dest.as_deref().and_then(|d| name(self, d));
        if let Some(d) = dest.as_deref() {
            let leaver = get_ci(&m.resource, "userName")
                .and_then(|u| u.as_str())
                .unwrap_or("member");
            let files: Vec<String> = m
                .files
                .iter()
                .map(|f| format!("{leaver} (removed)/{f}"))
                .collect();
            if let Some(to) = self.users.get_mut(d) {
                to.files.extend(files);
            }
            removed.files.clear();
        }
        self.removals.push(json!({
            "userName": get_ci(&m.resource, "userName"), "wipe_data": wipe, "keep_account": keep,
            "retain_team_shares": retain, "transfer_dest": moved_to,
            "transfer_admin": admin.as_deref().and_then(|a| name(self, a)),
        }));
        self.remove_user(&id);
        if !keep {
            // A kept account leaves the team as a Basic account: not recoverable.
            self.removed.insert(id, (removed, crate::clock::now()));
        }
        self.writes += 1;
        Response::json(200, json!({".tag": "complete"}))
    }

    /// Why Dropbox refuses a removal, as its error tag.
    fn remove_refusal(
        &self,
        id: &str,
        m: &Member,
        (wipe, keep, retain): (bool, bool, bool),
        dest: Option<&str>,
        admin: Option<&str>,
    ) -> Result<(), &'static str> {
        if m.admin && self.users.values().filter(|u| u.admin).count() == 1 {
            return Err("remove_last_admin");
        }
        if let Some(d) = dest {
            let Some(a) = admin else {
                return Err("unspecified_transfer_admin_id");
            };
            if d == id {
                return Err("removed_and_transfer_dest_should_differ");
            }
            if a == id {
                return Err("removed_and_transfer_admin_should_differ");
            }
            if !self.users.contains_key(d) {
                return Err("transfer_dest_user_not_in_team");
            }
            match self.users.get(a) {
                None => return Err("transfer_admin_user_not_in_team"),
                Some(x) if !x.admin => return Err("transfer_admin_is_not_admin"),
                Some(_) => {}
            }
            if keep {
                return Err("cannot_keep_account_and_transfer");
            }
        }
        if keep && wipe {
            return Err("cannot_keep_account_and_delete_data");
        }
        if keep && m.status == Status::Invited {
            return Err("cannot_keep_invited_user_account");
        }
        if retain && !keep {
            return Err("cannot_retain_shares_when_no_account_kept");
        }
        if retain && wipe {
            return Err("cannot_retain_shares_when_data_wiped");
        }
        Ok(())
    }

    fn members_recover(&mut self, arg: &Value) -> Response {
        let sel = arg.get("user").cloned().unwrap_or(Value::Null);
        let found = self.removed.iter().find(|(id, (m, _))| match tag(&sel) {
            Some("team_member_id") => {
                sel.get("team_member_id").and_then(|v| v.as_str()) == Some(id.as_str())
            }
            Some("email") => {
                let want = sel
                    .get("email")
                    .and_then(|v| v.as_str())
                    .unwrap_or("")
                    .to_lowercase();
                get_ci(&m.resource, "userName")
                    .and_then(|u| u.as_str())
                    .map(|u| u.to_lowercase() == want)
                    .unwrap_or(false)
            }
            Some("external_id") => get_ci(&m.resource, "externalId") == sel.get("external_id"),
            _ => false,
        });
        let Some(id) = found.map(|(id, _)| id.clone()) else {
            return route_error("user_not_recoverable", None);
        };
        if let Some((mut m, _)) = self.removed.remove(&id) {
            m.status = Status::Active;
            self.put_user(&id, m);
            self.writes += 1;
        }
        Response::json(200, Value::Null)
    }

    fn groups_create(&mut self, arg: &Value) -> Response {
        let name = arg
            .get("group_name")
            .and_then(|v| v.as_str())
            .unwrap_or("")
            .to_string();
        if name.trim().is_empty() {
            return route_error("group_name_invalid", None);
        }
        if self.group_name_taken(&name, None) {
            return route_error("group_name_already_used", None);
        }
        let ext = arg
            .get("group_external_id")
            .and_then(|v| v.as_str())
            .map(str::to_string);
        if let Some(e) = &ext {
            if self.index.contains_key(&("groupExternalId", e.clone())) {
                return route_error("external_id_already_in_use", None);
            }
        }
        let mgmt = arg
            .get("group_management_type")
            .and_then(tag)
            .unwrap_or("company_managed")
            .to_string();
        let mut g = json!({"displayName": name, "members": [], "groupManagementType": mgmt});
        if let Some(e) = ext {
            g["externalId"] = json!(e);
        }
        self.writes += 1;
        let id = self.next_id("g:");
        self.put_group(&id, g);
        Response::json(200, self.group_info(&id))
    }

    fn groups_update(&mut self, arg: &Value) -> Response {
        let Some(id) = arg.get("group").and_then(|g| self.select_group(g)) else {
            return route_error("group_not_found", None);
        };
        let Some(mut g) = self.groups.get(&id).cloned() else {
            return route_error("group_not_found", None);
        };
        if let Some(n) = arg.get("new_group_name").and_then(|v| v.as_str()) {
            if self.group_name_taken(n, Some(&id)) {
                return route_error("group_name_already_used", None);
            }
            g["displayName"] = json!(n);
        }
        if let Some(e) = arg.get("new_group_external_id").and_then(|v| v.as_str()) {
            g["externalId"] = json!(e);
        }
        self.writes += 1;
        self.put_group(&id, g);
        Response::json(200, self.group_info(&id))
    }

    fn groups_delete(&mut self, arg: &Value) -> Response {
        let Some(id) = self.select_group(arg) else {
            return route_error("group_not_found", None);
        };
        self.drop_group(&id);
        self.writes += 1;
        Response::json(200, json!({".tag": "complete"}))
    }

    fn groups_list(&mut self, arg: &Value, route: &str) -> Response {
        let (start, limit) = match page_window(route == "groups/list", arg) {
            Ok(w) => w,
            Err(r) => return r,
        };
        let ids: Vec<String> = self.groups.keys().cloned().collect();
        let page: Vec<Value> = ids
            .iter()
            .skip(start)
            .take(limit)
            .map(|id| {
                let mut v = self.group_info(id);
                if let Some(o) = v.as_object_mut() {
                    o.remove("created");
                }
                v
            })
            .collect();
        let next = start + page.len();
        Response::json(
            200,
            json!({"groups": page, "cursor": format!("{next}:{limit}"), "has_more": next < ids.len()}),
        )
    }
}
