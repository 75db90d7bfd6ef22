//! The `dropbox-legacy` target: the Dropbox Business API v2 (`/2/team/...`), for teams
//! still on the legacy Entra integration.
//!
//! Members are added up to 20 per call (polling the async job when Dropbox answers
//! with one), profiles set with `set_profile_v2`, disables are `suspend`, deletes are
//! `remove`; a member removed in the last 7 days is recovered (`members/recover`)
//! instead of re-added. Route errors (409 with a union `.tag`) become per-object
//! errors that say what happened. Members are shown to the planner in SCIM shape, so
//! matching, drift checks and the migration read them like any SCIM resource.

use super::{Change, ErrorClass, Remote, Target, TargetError};
use crate::config::{Deprovision, LeaverFiles, TargetSettings};
use crate::http::Http;
use crate::model::ObjectKind;
use crate::scim::attribute::{AttrPath, Attrs};
use crate::scim::profile::{Profile, DROPBOX_LEGACY};
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashSet};

/// Most members one `members/add_v2` call may carry.
pub const ADD_BATCH: usize = 20;

pub struct LegacyTarget {
    base: String,
    http: Http,
    profile: Profile,
    /// What `members/remove` sends (`[deprovision]`).
    policy: Deprovision,
    /// `transfer_to` as a team member id, looked up at the first removal.
    transfer_member: Option<String>,
}

fn member_sel(id: &str) -> Value {
    json!({".tag": "team_member_id", "team_member_id": id})
}

fn group_sel(id: &str) -> Value {
    json!({".tag": "group_id", "group_id": id})
}

/// What a route error tag means, for the log.
fn explain(tag: &str) -> &'static str {
    match tag {
        "user_already_on_team" => {
            "the email is already on the team (or was removed in the last 7 days)"
        }
        "suspend_inactive_user" => "an invited or suspended member cannot be suspended",
        "email_reserved_for_other_user" => "another member has this email",
        "external_id_used_by_other_user" | "duplicate_external_member_id" => {
            "another member has this external id"
        }
        "team_license_limit" | "free_team_member_limit_reached" => "the team has no free licence",
        "user_on_another_team" => "the account belongs to another Dropbox team",
        "group_name_already_used" => "a group with this name exists",
        "users_not_found" | "members_not_in_team" => "a member is not on the team",
        "duplicate_user" => "already a member of the group",
        "remove_last_admin" | "suspend_last_admin" => {
            "the last team admin cannot be removed or suspended"
        }
        // members/remove and [deprovision]: the fix is named with each.
        "transfer_dest_user_not_in_team" | "transfer_dest_user_not_found" => {
            "[deprovision] transfer_to is not on the team; name a team admin who is"
        }
        "transfer_admin_user_not_in_team" | "transfer_admin_user_not_found" => {
            "[deprovision] transfer_to is not on the team; name a team admin who is"
        }
        "transfer_admin_is_not_admin" => {
            "[deprovision] transfer_to is not a team admin; make them one or name another"
        }
        "unspecified_transfer_admin_id" => "a file transfer needs a transfer admin ([deprovision] transfer_to)",
        "removed_and_transfer_dest_should_differ" | "removed_and_transfer_admin_should_differ" => {
            "the leaver is [deprovision] transfer_to; name another admin before removing them"
        }
        "recipient_not_verified" => "[deprovision] transfer_to has not verified their email",
        "cannot_keep_account_and_transfer" => {
            "an account cannot be kept and its files transferred; choose one [deprovision] files"
        }
        "cannot_keep_account_and_delete_data" => {
            "an account cannot be kept with its devices wiped; set [deprovision] wipe_devices = false"
        }
        "cannot_keep_invited_user_account" => {
            "an invited member has no account to keep; accept or cancel the invitation, or choose files = \"leave\""
        }
        "cannot_retain_shares_when_data_wiped" => {
            "team shares cannot be retained when devices are wiped; set [deprovision] wipe_devices = false"
        }
        "cannot_retain_shares_when_no_account_kept" => {
            "team shares are retained only with files = \"keep-account\""
        }
        "cannot_retain_shares_when_team_external_sharing_off" => {
            "team shares need external sharing on in the team's settings, or retain_team_shares = false"
        }
        "cannot_keep_account_under_legal_hold" => {
            "the member is under legal hold; release the hold or choose files = \"transfer\""
        }
        "cannot_keep_account_required_to_sign_tos" => {
            "the member must accept Dropbox's terms before their account can be kept"
        }
        "cannot_keep_account" => "Dropbox cannot keep this account; choose files = \"transfer\"",
        _ => "",
    }
}

/// A team member profile as a SCIM resource.
pub fn profile_to_scim(p: &Value) -> Value {
    let email = p.get("email").cloned().unwrap_or(Value::Null);
    let status = p
        .pointer("/status/.tag")
        .and_then(|s| s.as_str())
        .unwrap_or("active");
    let mut r = json!({
        "id": p.get("team_member_id"),
        "userName": email,
        "emails": [{"type": "work", "value": email, "primary": true}],
        "name": {"givenName": p.pointer("/name/given_name"), "familyName": p.pointer("/name/surname")},
        "active": status != "suspended",
    });
    r[crate::scim::DROPBOX_STATUS_SCHEMA] = json!({"memberStatus": status});
    if let Some(e) = p.get("external_id").filter(|e| !e.is_null()) {
        r["externalId"] = e.clone();
    }
    r
}

/// A member profile as the planner sees it.
fn member_remote(p: &Value) -> Remote {
    Remote {
        id: p
            .get("team_member_id")
            .and_then(|i| i.as_str())
            .unwrap_or("")
            .to_string(),
        resource: profile_to_scim(p),
    }
}

/// A group summary as the planner sees it.
fn group_remote(g: &Value) -> Remote {
    Remote {
        id: g
            .get("group_id")
            .and_then(|i| i.as_str())
            .unwrap_or("")
            .to_string(),
        resource: group_to_scim(g),
    }
}

fn group_to_scim(g: &Value) -> Value {
    let mut r = json!({"id": g.get("group_id"), "displayName": g.get("group_name")});
    if let Some(e) = g.get("group_external_id").filter(|e| !e.is_null()) {
        r["externalId"] = e.clone();
    }
    r
}

impl LegacyTarget {
    pub fn new(settings: &TargetSettings) -> LegacyTarget {
        let mut t = Self::with(
            &settings.url,
            &settings.credential,
            "scimsync authorize",
            settings.timeout,
        );
        t.policy = settings.deprovision.clone();
        t
    }

    /// The `[legacy]` integration being retired (`migrate`, the team lock).
    pub fn for_legacy(
        l: &crate::config::LegacySettings,
        timeout: std::time::Duration,
    ) -> LegacyTarget {
        Self::with(
            &l.api_url,
            &l.credential,
            "scimsync authorize --legacy",
            timeout,
        )
    }

    pub fn with(
        base: &str,
        credential: &crate::http::credential::Credential,
        fix: &'static str,
        timeout: std::time::Duration,
    ) -> LegacyTarget {
        let bearer = crate::http::credential::Bearer::new(credential.clone(), fix, timeout);
        LegacyTarget {
            base: base.trim_end_matches('/').to_string(),
            http: Http::new(bearer, timeout, "application/json"),
            profile: DROPBOX_LEGACY,
            policy: Deprovision::default(),
            transfer_member: None,
        }
    }

    /// The `members/remove` arguments the policy gives: never a wipe or a lost
    /// file unless `[deprovision]` says so.
    fn remove_arg(&mut self, id: &str) -> Result<Value, TargetError> {
        let mut arg = json!({"user": member_sel(id), "wipe_data": self.policy.wipe_devices,
                             "keep_account": false});
        match self.policy.files {
            LeaverFiles::Transfer => {
                let to = self.transfer_member()?;
                arg["transfer_dest_id"] = json!(to);
                arg["transfer_admin_id"] = json!(to);
            }
            LeaverFiles::KeepAccount => {
                arg["keep_account"] = json!(true);
                arg["retain_team_shares"] = json!(self.policy.retain_team_shares);
            }
            LeaverFiles::Leave => {}
        }
        Ok(arg)
    }

    /// `[deprovision] transfer_to` as a team member: on the team, and an admin
    /// (the Business API names the transfer admin, who must be one).
    pub fn transfer_member(&mut self) -> Result<String, TargetError> {
        if let Some(id) = &self.transfer_member {
            return Ok(id.clone());
        }
        let Some(email) = self.policy.transfer_to.clone() else {
            return Err(TargetError::new(
                ErrorClass::Invalid,
                None,
                "files = \"transfer\" needs [deprovision] transfer_to (the team admin who receives the files)",
            ));
        };
        let v = self.call(
            "members/get_info_v2",
            &json!({"members": [{".tag": "email", "email": email}]}),
        )?;
        let info = v.pointer("/members_info/0").cloned().unwrap_or(Value::Null);
        let refused = |why: &str| {
            TargetError::new(
                ErrorClass::Invalid,
                None,
                format!("[deprovision] transfer_to {email}: {why}; set it to a team admin"),
            )
        };
        let Some(id) = info
            .pointer("/profile/team_member_id")
            .and_then(Value::as_str)
        else {
            return Err(refused("not a member of the team"));
        };
        let admin = info
            .get("roles")
            .and_then(Value::as_array)
            .is_some_and(|r| !r.is_empty());
        if !admin {
            return Err(refused("not a team admin"));
        }
        self.transfer_member = Some(id.to_string());
        Ok(id.to_string())
    }

    /// The bearer this client sends.
    pub fn bearer(&self) -> &crate::http::credential::Bearer {
        self.http.bearer()
    }

    /// The team's id (`team/get_info`).
    pub fn team_id(&mut self) -> Result<String, TargetError> {
        let v = self.call("get_info", &Value::Null)?;
        v.get("team_id")
            .and_then(|t| t.as_str())
            .map(str::to_string)
            .ok_or_else(|| TargetError::new(ErrorClass::Transport, None, "get_info: no team_id"))
    }

    /// Calls a route; reads are retried on 5xx, writes only on 429/503.
    pub fn call(&mut self, route: &str, arg: &Value) -> Result<Value, TargetError> {
        let read =
            route.contains("list") || route.contains("get_info") || route.contains("job_status");
        let url = format!("{}/2/team/{route}", self.base);
        let reply = self.http.send("POST", &url, Some(arg), read)?;
        let body: Value = serde_json::from_str(&reply.body).unwrap_or(Value::Null);
        match reply.status {
            200 => Ok(body),
            409 => {
                let tag = body
                    .pointer("/error/.tag")
                    .and_then(|t| t.as_str())
                    .unwrap_or("other")
                    .to_string();
                let why = explain(&tag);
                let msg = if why.is_empty() {
                    format!("{route}: {tag}")
                } else {
                    format!("{route}: {tag} ({why})")
                };
                Err(TargetError::new(ErrorClass::Conflict, Some(409), msg))
            }
            401 | 403 => Err(TargetError::new(
                ErrorClass::Auth,
                Some(reply.status),
                format!(
                    "{route}: HTTP {} {} (check the team token)",
                    reply.status,
                    body.pointer("/error_summary")
                        .and_then(|s| s.as_str())
                        .unwrap_or("")
                ),
            )),
            404 => Err(TargetError::new(
                ErrorClass::NotFound,
                Some(404),
                format!("{route}: HTTP 404 ({})", super::BASE_URL_HINT),
            )),
            s if s >= 500 => Err(TargetError::new(
                ErrorClass::Server,
                Some(s),
                format!("{route}: HTTP {s}"),
            )),
            s => Err(TargetError::new(
                ErrorClass::Invalid,
                Some(s),
                format!("{route}: HTTP {s} {}", crate::http::snippet(&reply.body)),
            )),
        }
    }

    fn tag_of(e: &TargetError) -> &str {
        e.message
            .split(": ")
            .nth(1)
            .and_then(|t| t.split(' ').next())
            .unwrap_or("")
    }

    /// Every item of a cursor-paged list route (`list` then `list/continue`).
    fn paged(
        &mut self,
        first: &str,
        cont: &str,
        arg: Value,
        key: &str,
    ) -> Result<Vec<Value>, TargetError> {
        let mut out = vec![];
        let mut page = self.call(first, &arg)?;
        for _ in 0..super::MAX_LIST_PAGES {
            // A listing decides what is matched and adopted: a page without its
            // list is a failed read, never an empty team.
            let Some(items) = page.get(key).and_then(|m| m.as_array()) else {
                return Err(TargetError::new(
                    ErrorClass::Transport,
                    None,
                    format!("{first}: the answer has no \"{key}\" list"),
                ));
            };
            out.extend(items.iter().cloned());
            if !page
                .get("has_more")
                .and_then(|h| h.as_bool())
                .unwrap_or(false)
            {
                return Ok(out);
            }
            let cursor = page.get("cursor").cloned().unwrap_or(Value::Null);
            page = self.call(cont, &json!({"cursor": cursor}))?;
        }
        Err(TargetError::new(
            ErrorClass::Transport,
            None,
            format!(
                "{first}: more than {} pages; stopped",
                super::MAX_LIST_PAGES
            ),
        ))
    }

    /// Every team member profile (members/list_v2 and continue).
    pub fn list_members(&mut self) -> Result<Vec<Value>, TargetError> {
        let members = self.paged(
            "members/list_v2",
            "members/list/continue_v2",
            json!({"limit": 1000, "include_removed": false}),
            "members",
        )?;
        Ok(members
            .into_iter()
            .filter_map(|m| m.get("profile").cloned())
            .collect())
    }

    /// Every group summary (groups/list and continue).
    pub fn list_groups(&mut self) -> Result<Vec<Value>, TargetError> {
        self.paged(
            "groups/list",
            "groups/list/continue",
            json!({"limit": 1000}),
            "groups",
        )
    }

    fn get_info(&mut self, sel: Value) -> Result<Option<Value>, TargetError> {
        let r = self.call("members/get_info_v2", &json!({"members": [sel]}))?;
        let info = r.pointer("/members_info/0").cloned().unwrap_or(Value::Null);
        if info.get(".tag").and_then(|t| t.as_str()) == Some("member_info") {
            Ok(info.get("profile").cloned())
        } else {
            Ok(None)
        }
    }

    fn new_member(attrs: &Attrs) -> Value {
        let s = |k: &str| attrs.get(k).and_then(|v| v.as_str()).map(str::to_string);
        let email = s("userName")
            .or_else(|| s("emails[type eq \"work\"].value"))
            .unwrap_or_default();
        let mut m = json!({"member_email": email, "member_given_name": s("name.givenName").unwrap_or_default(),
                           "member_surname": s("name.familyName").unwrap_or_default(), "send_welcome_email": true});
        if let Some(e) = s("externalId") {
            m["member_external_id"] = json!(e);
        }
        m
    }

    /// Waits for an async add job (a few polls, as the API documents).
    fn add_results(&mut self, answer: Value) -> Result<Vec<Value>, TargetError> {
        let mut answer = answer;
        for _ in 0..60 {
            match answer.get(".tag").and_then(|t| t.as_str()) {
                Some("complete") => {
                    return Ok(answer
                        .get("complete")
                        .and_then(|c| c.as_array())
                        .cloned()
                        .unwrap_or_default())
                }
                Some("async_job_id") | Some("in_progress") => {
                    let job = answer.get("async_job_id").cloned();
                    let job = match job {
                        Some(j) => j,
                        None => {
                            return Err(TargetError::new(
                                ErrorClass::Transport,
                                None,
                                "members/add: job lost",
                            ))
                        }
                    };
                    std::thread::sleep(std::time::Duration::from_millis(200));
                    let mut next = self.call(
                        "members/add/job_status/get_v2",
                        &json!({"async_job_id": job}),
                    )?;
                    if next.get(".tag").and_then(|t| t.as_str()) == Some("in_progress") {
                        next["async_job_id"] = job;
                    }
                    answer = next;
                }
                Some("failed") => {
                    return Err(TargetError::new(
                        ErrorClass::Server,
                        None,
                        format!(
                            "members/add job failed: {}",
                            answer.get("failed").cloned().unwrap_or(Value::Null)
                        ),
                    ))
                }
                _ => {
                    return Err(TargetError::new(
                        ErrorClass::Transport,
                        None,
                        "members/add: unexpected answer",
                    ))
                }
            }
        }
        Err(TargetError::new(
            ErrorClass::Server,
            None,
            "members/add: job still running after 12 s",
        ))
    }

    /// A recently removed member comes back with `members/recover`, keeping its data.
    fn recover(&mut self, email: &str) -> Result<String, TargetError> {
        self.call(
            "members/recover",
            &json!({"user": {".tag": "email", "email": email}}),
        )
        .map_err(|e| {
            TargetError::new(
                e.class,
                e.status,
                format!("{email} is on the team and not recoverable: {}", e.message),
            )
        })?;
        self.get_info(json!({".tag": "email", "email": email}))?
            .and_then(|p| {
                p.get("team_member_id")
                    .and_then(|i| i.as_str())
                    .map(str::to_string)
            })
            .ok_or_else(|| {
                TargetError::new(
                    ErrorClass::NotFound,
                    None,
                    format!("{email}: recovered but not found"),
                )
            })
    }

    fn find_group(&mut self, path: &str, value: &str) -> Result<Vec<Remote>, TargetError> {
        let groups = self.list_groups()?;
        let by_ext = path.eq_ignore_ascii_case("externalId");
        Ok(groups
            .iter()
            .filter(|g| {
                if by_ext {
                    g.get("group_external_id").and_then(|e| e.as_str()) == Some(value)
                } else {
                    g.get("group_name")
                        .and_then(|n| n.as_str())
                        .map(|n| n.eq_ignore_ascii_case(value))
                        .unwrap_or(false)
                }
            })
            .map(group_remote)
            .collect())
    }

    fn members_op(
        &mut self,
        add: bool,
        group_id: &str,
        user_ids: &[String],
    ) -> Result<(), TargetError> {
        for chunk in user_ids.chunks(self.profile.max_members_per_patch.max(1)) {
            let r = self.members_call(add, group_id, chunk);
            if let Err(e) = &r {
                let tag = Self::tag_of(e).to_string();
                // One member already in (or out of) the group fails the whole call:
                // go one by one and treat those as done.
                if tag == "duplicate_user" || tag == "member_not_in_group" {
                    for id in chunk {
                        match self.members_call(add, group_id, std::slice::from_ref(id)) {
                            Ok(()) => {}
                            Err(e)
                                if matches!(
                                    Self::tag_of(&e),
                                    "duplicate_user" | "member_not_in_group"
                                ) => {}
                            Err(e) => return Err(e),
                        }
                    }
                    continue;
                }
            }
            r?;
        }
        Ok(())
    }

    fn members_call(
        &mut self,
        add: bool,
        group_id: &str,
        ids: &[String],
    ) -> Result<(), TargetError> {
        if add {
            let members: Vec<Value> = ids
                .iter()
                .map(|id| json!({"user": member_sel(id), "access_type": "member"}))
                .collect();
            self.call(
                "groups/members/add",
                &json!({"group": group_sel(group_id), "members": members, "return_members": false}),
            )?;
        } else {
            let users: Vec<Value> = ids.iter().map(|id| member_sel(id)).collect();
            self.call(
                "groups/members/remove",
                &json!({"group": group_sel(group_id), "users": users, "return_members": false}),
            )?;
        }
        Ok(())
    }
}

impl Target for LegacyTarget {
    fn profile(&self) -> &Profile {
        &self.profile
    }

    fn test_connection(&mut self) -> Result<(), TargetError> {
        self.call("members/list_v2", &json!({"limit": 1}))
            .map(|_| ())
    }

    fn find(
        &mut self,
        kind: ObjectKind,
        path: &str,
        value: &str,
    ) -> Result<Vec<Remote>, TargetError> {
        if kind == ObjectKind::Group {
            return self.find_group(path, value);
        }
        let sel = if path.eq_ignore_ascii_case("externalId") {
            json!({".tag": "external_id", "external_id": value})
        } else if path.eq_ignore_ascii_case("userName")
            || path.to_ascii_lowercase().starts_with("emails")
        {
            json!({".tag": "email", "email": value})
        } else {
            // The Business API looks members up by email or external id only.
            return Ok(vec![]);
        };
        Ok(self
            .get_info(sel)?
            .map(|p| member_remote(&p))
            .into_iter()
            .collect())
    }

    fn get(&mut self, kind: ObjectKind, id: &str) -> Result<Option<Remote>, TargetError> {
        match kind {
            ObjectKind::User => Ok(self.get_info(member_sel(id))?.map(|p| member_remote(&p))),
            ObjectKind::Group => Ok(self
                .list_groups()?
                .iter()
                .find(|g| g.get("group_id").and_then(|i| i.as_str()) == Some(id))
                .map(group_remote)),
        }
    }

    fn create(&mut self, kind: ObjectKind, attrs: &Attrs) -> Result<String, TargetError> {
        self.create_batch(kind, &[attrs])
            .pop()
            .unwrap_or_else(|| Err(TargetError::new(ErrorClass::Transport, None, "no result")))
    }

    fn create_batch_size(&mut self) -> usize {
        ADD_BATCH
    }

    /// `groups/list` gives summaries; members are another call per group.
    fn lists_group_members(&self) -> bool {
        false
    }

    fn list(&mut self, kind: ObjectKind) -> Result<Vec<Remote>, TargetError> {
        Ok(match kind {
            ObjectKind::User => self.list_members()?.iter().map(member_remote).collect(),
            ObjectKind::Group => self.list_groups()?.iter().map(group_remote).collect(),
        })
    }

    fn create_batch(
        &mut self,
        kind: ObjectKind,
        items: &[&Attrs],
    ) -> Vec<Result<String, TargetError>> {
        if kind == ObjectKind::Group {
            return items
                .iter()
                .map(|a| {
                    let name = a.get("displayName").and_then(|v| v.as_str()).unwrap_or("");
                    let mut arg = json!({"group_name": name, "add_creator_as_owner": false, "group_management_type": "company_managed"});
                    if let Some(e) = a.get("externalId").and_then(|v| v.as_str()) {
                        arg["group_external_id"] = json!(e);
                    }
                    let r = self.call("groups/create", &arg)?;
                    r.get("group_id")
                        .and_then(|i| i.as_str())
                        .map(str::to_string)
                        .ok_or_else(|| TargetError::new(ErrorClass::Transport, None, "groups/create: no group_id"))
                })
                .collect();
        }
        let mut out = Vec::with_capacity(items.len());
        for chunk in items.chunks(ADD_BATCH) {
            let members: Vec<Value> = chunk.iter().map(|a| Self::new_member(a)).collect();
            let answer = self.call(
                "members/add_v2",
                &json!({"new_members": members, "force_async": false}),
            );
            let results = match answer.and_then(|a| self.add_results(a)) {
                Ok(r) => r,
                Err(e) => {
                    out.extend(chunk.iter().map(|_| Err(e.clone())));
                    continue;
                }
            };
            for (a, r) in chunk
                .iter()
                .zip(results.into_iter().chain(std::iter::repeat(Value::Null)))
            {
                let tag = r.get(".tag").and_then(|t| t.as_str()).unwrap_or("");
                let email = Self::new_member(a)["member_email"]
                    .as_str()
                    .unwrap_or("")
                    .to_string();
                out.push(match tag {
                    "success" => r
                        .pointer("/profile/team_member_id")
                        .and_then(|i| i.as_str())
                        .map(str::to_string)
                        .ok_or_else(|| {
                            TargetError::new(
                                ErrorClass::Transport,
                                None,
                                "members/add: no team_member_id",
                            )
                        }),
                    // Removed in the last 7 days: recover (keeps the account), not re-add.
                    "user_already_on_team" => self.recover(&email),
                    "" => Err(TargetError::new(
                        ErrorClass::Transport,
                        None,
                        "members/add: missing result",
                    )),
                    t => Err(TargetError::new(
                        ErrorClass::Conflict,
                        Some(409),
                        format!(
                            "members/add_v2: {t}{}",
                            if explain(t).is_empty() {
                                String::new()
                            } else {
                                format!(" ({})", explain(t))
                            }
                        ),
                    )),
                });
            }
        }
        out
    }

    fn modify(
        &mut self,
        kind: ObjectKind,
        id: &str,
        changes: &[Change],
    ) -> Result<(), TargetError> {
        if kind == ObjectKind::Group {
            let mut arg = json!({"group": group_sel(id), "return_members": false});
            for c in changes {
                match (c.path.as_str(), &c.new) {
                    ("displayName", Some(v)) => arg["new_group_name"] = v.clone(),
                    ("externalId", Some(v)) => arg["new_group_external_id"] = v.clone(),
                    _ => {}
                }
            }
            if arg.get("new_group_name").is_some() || arg.get("new_group_external_id").is_some() {
                self.call("groups/update", &arg)?;
            }
            return Ok(());
        }
        let mut arg = json!({"user": member_sel(id)});
        let mut active: Option<bool> = None;
        for c in changes {
            let p = AttrPath::parse(&c.path).ok();
            let key = match p.as_ref().map(|p| {
                (
                    p.attr.to_ascii_lowercase(),
                    p.sub.clone().unwrap_or_default().to_ascii_lowercase(),
                )
            }) {
                Some((a, _)) if a == "username" => "new_email",
                Some((a, s)) if a == "name" && s == "givenname" => "new_given_name",
                Some((a, s)) if a == "name" && s == "familyname" => "new_surname",
                Some((a, _)) if a == "externalid" => "new_external_id",
                Some((a, _)) if a == "active" => {
                    active = c.new.as_ref().map(|v| {
                        v.as_bool().unwrap_or(
                            !v.as_str()
                                .map(|s| s.eq_ignore_ascii_case("false"))
                                .unwrap_or(false),
                        )
                    });
                    continue;
                }
                // The Business API keeps one email (the login) and no other attributes.
                _ => continue,
            };
            if let Some(v) = &c.new {
                arg[key] = v.clone();
            }
        }
        if arg.as_object().map(|o| o.len() > 1).unwrap_or(false) {
            self.call("members/set_profile_v2", &arg).map_err(|e| {
                if Self::tag_of(&e) == "user_not_found" {
                    TargetError::new(ErrorClass::NotFound, Some(404), e.message)
                } else {
                    e
                }
            })?;
        }
        match active {
            Some(false) => self
                .call(
                    "members/suspend",
                    &json!({"user": member_sel(id), "wipe_data": false}),
                )
                .map(|_| ()),
            Some(true) => match self.call("members/unsuspend", &json!({"user": member_sel(id)})) {
                Err(e) if Self::tag_of(&e) == "unsuspend_non_suspended_member" => Ok(()),
                other => other.map(|_| ()),
            },
            None => Ok(()),
        }
    }

    fn delete(&mut self, kind: ObjectKind, id: &str) -> Result<(), TargetError> {
        let r = match kind {
            ObjectKind::User => {
                let arg = self.remove_arg(id)?;
                self.call("members/remove", &arg)
            }
            ObjectKind::Group => self.call("groups/delete", &group_sel(id)),
        };
        match r {
            Ok(_) => Ok(()),
            Err(e)
                if matches!(
                    Self::tag_of(&e),
                    "user_not_found" | "group_not_found" | "group_already_deleted"
                ) =>
            {
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    fn add_members(&mut self, group_id: &str, user_ids: &[String]) -> Result<(), TargetError> {
        self.members_op(true, group_id, user_ids)
    }

    fn remove_members(&mut self, group_id: &str, user_ids: &[String]) -> Result<(), TargetError> {
        self.members_op(false, group_id, user_ids)
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

    fn invited(&mut self, ids: &[String]) -> Result<HashSet<String>, TargetError> {
        let sels: Vec<Value> = ids.iter().map(|i| member_sel(i)).collect();
        let mut out = HashSet::new();
        for chunk in sels.chunks(100) {
            let r = self.call("members/get_info_v2", &json!({"members": chunk}))?;
            for info in r
                .get("members_info")
                .and_then(|m| m.as_array())
                .into_iter()
                .flatten()
            {
                if info
                    .pointer("/profile/status/.tag")
                    .and_then(|s| s.as_str())
                    == Some("invited")
                {
                    if let Some(id) = info
                        .pointer("/profile/team_member_id")
                        .and_then(|s| s.as_str())
                    {
                        out.insert(id.to_string());
                    }
                }
            }
        }
        Ok(out)
    }
}
