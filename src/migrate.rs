//! `scimsync migrate plan|apply`: from the legacy Dropbox integration (Business API)
//! to the SCIM one, with no re-invite, no duplicate and nothing lost.
//!
//! The plan reads the team's members and groups through the Business API
//! (`[legacy]`), the SCIM Users and Groups (`[target]`), the directory and the links
//! scimsync kept if it ran the legacy integration, and asks `migration.rhai`
//! `match_member(member, candidates)` which directory user each member is and
//! `match_group(group, candidates)` which directory group each Dropbox group is (a
//! script without `match_group` gets the built-in rules). Every member and group is
//! adopted (with the rule that decided), a conflict (e.g. an alias-domain email
//! that the SCIM mapping would not match, the case that made Entra create second
//! accounts; a user-managed group) or unmanaged (left alone). Apply writes the SCIM links — so the first SCIM cycle updates instead of
//! creating — blocks conflicting objects from being created, and marks the legacy
//! integration retired, in one transaction: idempotent and safe to re-run after a
//! crash. It sends nothing to Dropbox.

use crate::config::{Settings, TargetKind};
use crate::error::{Error, InputError};
use crate::evaluate::{evaluate, Decision};
use crate::model::ObjectKind;
use crate::plan::hash_attrs;
use crate::scim::attribute::{AttrPath, Attrs};
use crate::script::Scripts;
use crate::state::Fact;
use crate::state::{Link, State};
use crate::targets::legacy::LegacyTarget;
use crate::targets::Remote;
use serde::Serialize;
use serde_json::{json, Value};
use std::collections::{BTreeSet, HashMap, HashSet};

#[derive(Debug, Clone, Serialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum MemberOutcome {
    Adopt {
        source_id: String,
        user: String,
        rule: String,
    },
    Conflict {
        reason: String,
        candidate: Option<String>,
    },
    Unmanaged {
        reason: String,
    },
}

#[derive(Debug, Clone, Serialize)]
pub struct MemberDecision {
    pub team_member_id: String,
    pub email: String,
    pub status: String,
    #[serde(flatten)]
    pub outcome: MemberOutcome,
}

#[derive(Debug, Clone, Serialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum GroupOutcome {
    Adopt {
        source_id: String,
        rule: String,
        #[serde(skip)]
        link: Link,
    },
    Conflict {
        reason: String,
        /// The directory group that must not be created meanwhile.
        candidate: Option<String>,
    },
    Unmanaged {
        reason: String,
    },
}

/// What `migration.rhai` `match_group` decided for one Business API group.
#[derive(Debug, Clone, Serialize)]
pub struct GroupDecision {
    pub name: String,
    pub group_id: String,
    #[serde(flatten)]
    pub outcome: GroupOutcome,
}

/// What `migrate plan` found; `apply` writes it.
#[derive(Debug, Clone, Serialize)]
pub struct MigrationPlan {
    pub members: Vec<MemberDecision>,
    pub groups: Vec<GroupDecision>,
    /// Directory objects that must not be created until their conflict is resolved.
    pub blocked: Vec<String>,
    #[serde(skip)]
    links: Vec<Link>,
    #[serde(skip)]
    memberships: Vec<(String, String)>,
}

impl MigrationPlan {
    pub fn count(&self, outcome: &str) -> usize {
        self.members
            .iter()
            .filter(|m| {
                matches!(
                    (&m.outcome, outcome),
                    (MemberOutcome::Adopt { .. }, "adopt")
                        | (MemberOutcome::Conflict { .. }, "conflict")
                        | (MemberOutcome::Unmanaged { .. }, "unmanaged")
                )
            })
            .count()
    }
}

fn lower(v: Option<&Value>) -> String {
    v.and_then(|x| x.as_str()).unwrap_or("").to_lowercase()
}

fn local_part(email: &str) -> &str {
    email.split('@').next().unwrap_or("")
}

/// Builds the migration plan; reads everything, writes nothing.
pub fn plan(settings: &Settings, state: &State) -> Result<MigrationPlan, Error> {
    let legacy_cfg = settings.legacy.as_ref().ok_or_else(|| InputError::Config {
        file: settings.config_path.clone(),
        message: "migrate needs a [legacy] table (api_url, token) for the Business API".into(),
    })?;
    if settings.target.kind == TargetKind::DropboxLegacy {
        return Err(InputError::Config {
            file: settings.config_path.clone(),
            message: "target.type: point [target] at the SCIM endpoint (type = \"dropbox\") to migrate to it".into(),
        }
        .into());
    }
    let scripts = Scripts::load_with_default_migration(
        &settings.scripts_dir,
        crate::script::defaults::MIGRATION,
    )?;
    let mut source = crate::source::open(&settings.source)?;
    let snapshot = source.read(&crate::source::ReadRequest::full())?;
    let evaluated: Vec<_> = evaluate(&snapshot, &scripts, None).into_iter().collect();

    let mut legacy = LegacyTarget::for_legacy(legacy_cfg, settings.target.timeout);
    let members = legacy
        .list_members()
        .map_err(Error::read("Business API members"))?;
    let legacy_groups = legacy
        .list_groups()
        .map_err(Error::read("Business API groups"))?;
    let mut scim = crate::targets::open(&settings.target)?;
    let scim_users: HashMap<String, Remote> = scim
        .list(ObjectKind::User)
        .map_err(Error::read("SCIM users"))?
        .into_iter()
        .map(|r| (r.id.clone(), r))
        .collect();
    let scim_groups: HashMap<String, Remote> = scim
        .list(ObjectKind::Group)
        .map_err(Error::read("SCIM groups"))?
        .into_iter()
        .map(|r| (r.id.clone(), r))
        .collect();
    let old_links = state.links(ObjectKind::User)?;
    let linked_to: HashMap<&str, &str> = old_links
        .values()
        .map(|l| (l.target_id.as_str(), l.source_id.as_str()))
        .collect();

    let (decisions, mut links, mut blocked) = match_members(
        &scripts,
        &snapshot,
        &evaluated,
        &members,
        &scim_users,
        &linked_to,
    )?;

    let (groups, memberships) = match_groups(
        &scripts,
        &snapshot,
        &evaluated,
        &legacy_groups,
        &scim_groups,
        &links,
    )?;
    for g in &groups {
        match &g.outcome {
            GroupOutcome::Adopt { link, .. } => links.push(link.clone()),
            GroupOutcome::Conflict {
                candidate: Some(c), ..
            } => {
                blocked.insert(c.clone());
            }
            _ => {}
        }
    }
    Ok(MigrationPlan {
        members: decisions,
        groups,
        blocked: blocked.into_iter().collect(),
        links,
        memberships,
    })
}

/// Writes the plan into the state in one transaction. Returns (links written, links
/// that were already there and unchanged).
pub fn apply(state: &mut State, plan: &MigrationPlan) -> Result<(usize, usize), Error> {
    let users = state.links(ObjectKind::User)?;
    let groups = state.links(ObjectKind::Group)?;
    let unchanged = plan
        .links
        .iter()
        .filter(|l| {
            let have = match l.kind {
                ObjectKind::User => users.get(&l.source_id),
                ObjectKind::Group => groups.get(&l.source_id),
            };
            have.map(|h| h.target_id == l.target_id).unwrap_or(false)
        })
        .count();
    let already = state.meta(Fact::LegacyRetired)?;
    let summary = json!({
        "at": already
            .as_deref()
            .and_then(|a| serde_json::from_str::<Value>(a).ok())
            .and_then(|v| v.get("at").cloned())
            .unwrap_or_else(|| json!(crate::clock::rfc3339(crate::clock::now()))),
        "adopted": plan.count("adopt"),
        "conflicts": plan.count("conflict"),
        "unmanaged": plan.count("unmanaged"),
        "groups": plan.groups.len(),
    });
    state.write(|w| {
        for l in &plan.links {
            w.upsert_link(l)?;
        }
        for (g, u) in &plan.memberships {
            w.add_membership(g, u)?;
        }
        w.set_meta(
            Fact::MigrationBlocked,
            Some(&serde_json::to_string(&plan.blocked).unwrap_or_default()),
        )?;
        w.set_meta(Fact::LegacyRetired, Some(&summary.to_string()))?;
        // The first SCIM cycle re-evaluates everything against the new links.
        w.set_meta(Fact::Watermark, None)?;
        w.set_meta(Fact::ScriptsHash, None)?;
        Ok(())
    })?;
    Ok((plan.links.len() - unchanged, unchanged))
}

/// Directory objects a migration conflict keeps from being created.
pub fn blocked(state: &State) -> Result<HashSet<String>, Error> {
    Ok(state
        .meta(Fact::MigrationBlocked)?
        .and_then(|b| serde_json::from_str::<Vec<String>>(&b).ok())
        .unwrap_or_default()
        .into_iter()
        .collect())
}

/// In-scope directory users, as `match_member` sees them, with their mapped
/// attributes.
struct Candidate {
    value: Value,
    attrs: Attrs,
    display: String,
}

/// The candidates for members, indexed by id, email and mailbox name (keeps
/// `match_member` linear, not members × directory).
struct Candidates {
    by_id: HashMap<String, Candidate>,
    by_key: HashMap<String, Vec<String>>,
}

impl Candidates {
    fn new(snapshot: &crate::model::Snapshot, evaluated: &[crate::evaluate::Evaluated]) -> Self {
        let records: HashMap<&str, serde_json::Map<String, Value>> = snapshot
            .users
            .iter()
            .map(|u| (u.id.as_str(), u.record.open()))
            .collect();
        let mut by_id: HashMap<String, Candidate> = HashMap::new();
        for e in evaluated.iter().filter(|e| e.kind == ObjectKind::User) {
            let (Decision::InScope(_), Some(attrs)) = (&e.decision, &e.attrs) else {
                continue;
            };
            let mut v = Value::Object(
                records
                    .get(&*e.source_id)
                    .map(|r| (*r).clone())
                    .unwrap_or_default(),
            );
            v["id"] = json!(e.source_id);
            v["userName"] = attrs.get("userName").cloned().unwrap_or(Value::Null);
            v["externalId"] = attrs.get("externalId").cloned().unwrap_or(Value::Null);
            v["linked"] = json!(false);
            let c = Candidate {
                value: v,
                attrs: attrs.clone(),
                display: e.display.to_string(),
            };
            by_id.insert(e.source_id.to_string(), c);
        }
        let mut by_key: HashMap<String, Vec<String>> = HashMap::new();
        for (id, c) in &by_id {
            for k in [
                lower(c.value.get("id")),
                lower(c.value.get("externalId")),
                lower(c.value.get("userName")),
                lower(c.value.get("mail")),
                local_part(&lower(c.value.get("userName"))).to_string(),
                local_part(&lower(c.value.get("mail"))).to_string(),
            ] {
                if !k.is_empty() {
                    by_key.entry(k).or_default().push(id.clone());
                }
            }
        }
        Candidates { by_id, by_key }
    }

    /// Those that share the member's external id, email or mailbox name, or that
    /// scimsync linked to it (`linked`), flagged `linked` where they are.
    fn for_member(&self, m: &Value, email: &str, linked: Option<&str>) -> Vec<Value> {
        let mut ids: BTreeSet<&String> = BTreeSet::new();
        let email = email.to_lowercase();
        for k in [
            lower(m.get("external_id")),
            local_part(&email).to_string(),
            email,
        ] {
            if let Some(v) = self.by_key.get(&k) {
                ids.extend(v.iter());
            }
        }
        if let Some((id, _)) = linked.and_then(|s| self.by_id.get_key_value(s)) {
            ids.insert(id);
        }
        ids.iter()
            .filter_map(|id| self.by_id.get(*id))
            .map(|c| {
                let mut v = c.value.clone();
                v["linked"] = json!(linked == v.get("id").and_then(|i| i.as_str()));
                v
            })
            .collect()
    }
}

/// The Business API's members, each offered to `migration.rhai` `match_member` with
/// the in-scope directory users that share its id, email or mailbox name (or that
/// scimsync's legacy integration linked to it). Returns the decisions, the links
/// adopted members get, and the directory users a conflict blocks (never created
/// by the SCIM side while it stands).
fn match_members(
    scripts: &Scripts,
    snapshot: &crate::model::Snapshot,
    evaluated: &[crate::evaluate::Evaluated],
    members: &[Value],
    scim_users: &HashMap<String, Remote>,
    linked_to: &HashMap<&str, &str>,
) -> Result<MembersMatched, Error> {
    let candidates = Candidates::new(snapshot, evaluated);
    let mut decisions = vec![];
    let mut adopted: HashMap<String, String> = HashMap::new();
    let mut links = vec![];
    let mut blocked: BTreeSet<String> = BTreeSet::new();
    for m in members {
        let text = |pointer: &str| {
            m.pointer(pointer)
                .and_then(|v| v.as_str())
                .unwrap_or("")
                .to_string()
        };
        let (tmid, email, status) = (
            text("/team_member_id"),
            text("/email"),
            text("/status/.tag"),
        );
        let linked = linked_to.get(tmid.as_str()).copied();
        let list = candidates.for_member(m, &email, linked);
        let answer =
            scripts
                .match_member(m, &Value::Array(list))
                .map_err(|f| InputError::Script {
                    file: f.file.clone().into(),
                    line: f.line,
                    message: format!("{} (member {email})", f.message),
                })?;
        let outcome = member_outcome(&answer, &candidates, &mut adopted, &email);
        match &outcome {
            MemberOutcome::Adopt {
                source_id, user, ..
            } => {
                let remote = scim_users.get(&tmid).cloned().unwrap_or(Remote {
                    id: tmid.clone(),
                    resource: crate::targets::legacy::profile_to_scim(m),
                });
                let c = &candidates.by_id[source_id];
                links.push(adopted_link(source_id, user, &c.attrs, &remote, &status));
            }
            MemberOutcome::Conflict {
                candidate: Some(c), ..
            } => {
                blocked.insert(c.clone());
            }
            _ => {}
        }
        decisions.push(MemberDecision {
            team_member_id: tmid,
            email,
            status,
            outcome,
        });
    }
    // A conflict's candidate adopted by another member is not blocked.
    blocked.retain(|c| !adopted.contains_key(c));
    Ok((decisions, links, blocked))
}

/// What `match_member` answered, checked: an adoption must name an in-scope
/// directory user no other member has adopted (`adopted`: user → member email).
fn member_outcome(
    answer: &Value,
    candidates: &Candidates,
    adopted: &mut HashMap<String, String>,
    email: &str,
) -> MemberOutcome {
    let text = |key: &str| answer.get(key).and_then(|v| v.as_str());
    if let Some(id) = text("adopt") {
        let rule = text("rule").unwrap_or("migration.rhai").to_string();
        return match (candidates.by_id.get(id), adopted.get(id)) {
            (None, _) => MemberOutcome::Conflict {
                reason: format!(
                    "migration.rhai adopts {id}, which is not an in-scope directory user"
                ),
                candidate: None,
            },
            (Some(_), Some(other)) => MemberOutcome::Conflict {
                reason: format!("directory user {id} is already adopted by member {other}"),
                candidate: Some(id.to_string()),
            },
            (Some(c), None) => {
                adopted.insert(id.to_string(), email.to_string());
                MemberOutcome::Adopt {
                    source_id: id.to_string(),
                    user: c.display.clone(),
                    rule,
                }
            }
        };
    }
    if let Some(reason) = text("conflict") {
        return MemberOutcome::Conflict {
            reason: reason.to_string(),
            candidate: text("candidate").map(str::to_string),
        };
    }
    MemberOutcome::Unmanaged {
        reason: text("reason")
            .unwrap_or("not in the directory (in scope): left alone")
            .to_string(),
    }
}

/// The link an adoption writes: it records what the target holds now (`remote`),
/// so the first SCIM cycle sends exactly the differences from the directory.
fn adopted_link(
    source_id: &str,
    display: &str,
    mapped: &Attrs,
    remote: &Remote,
    status: &str,
) -> Link {
    let mut current = Attrs::new();
    for path in mapped.keys().filter(|k| !k.starts_with('$')) {
        let v = AttrPath::parse(path)
            .ok()
            .and_then(|p| p.get(&remote.resource).cloned())
            .unwrap_or(Value::Null);
        current.insert(path.clone(), v);
    }
    let active = status != "suspended";
    current.insert("active", json!(active));
    Link {
        kind: ObjectKind::User,
        source_id: source_id.to_string(),
        target_id: remote.id.clone(),
        display: display.to_string(),
        hash: hash_attrs(&current),
        attrs: current,
        active,
        disabled_reason: if active {
            None
        } else {
            Some("disabled".into())
        },
    }
}

/// The Business API's groups, each with the in-scope directory groups that share
/// its name (any case) or whose id is its external id, decided by `migration.rhai`
/// `match_group` as members are by `match_member`. Returns the decisions and the
/// memberships adopted groups already have (between adopted members).
fn match_groups(
    scripts: &Scripts,
    snapshot: &crate::model::Snapshot,
    evaluated: &[crate::evaluate::Evaluated],
    legacy_groups: &[Value],
    scim_groups: &HashMap<String, Remote>,
    member_links: &[Link],
) -> Result<(Vec<GroupDecision>, Vec<Membership>), Error> {
    let (candidates, by_key) = group_candidates(snapshot, evaluated);
    let member_source: HashMap<&str, &str> = member_links
        .iter()
        .map(|l| (l.target_id.as_str(), l.source_id.as_str()))
        .collect();
    let mut adopted: HashMap<String, String> = HashMap::new();
    let mut decisions = vec![];
    let mut memberships = vec![];
    for g in legacy_groups {
        let name = g
            .get("group_name")
            .and_then(|n| n.as_str())
            .unwrap_or("")
            .to_string();
        let gid = g
            .get("group_id")
            .and_then(|i| i.as_str())
            .unwrap_or("")
            .to_string();
        let mut group = g.clone();
        group["management"] = g
            .pointer("/group_management_type/.tag")
            .cloned()
            .unwrap_or(json!("company_managed"));
        let mut ids: BTreeSet<&String> = BTreeSet::new();
        for k in [name.to_lowercase(), lower(g.get("group_external_id"))] {
            ids.extend(by_key.get(&k).into_iter().flatten());
        }
        let list: Vec<Value> = ids.iter().map(|id| candidates[*id].value.clone()).collect();
        let answer = scripts
            .match_group(&group, &Value::Array(list))
            .map_err(|f| InputError::Script {
                file: f.file.clone().into(),
                line: f.line,
                message: format!("{} (group {name})", f.message),
            })?;
        let text = |k: &str| answer.get(k).and_then(|v| v.as_str()).map(str::to_string);
        let outcome = match (text("adopt"), text("conflict")) {
            (Some(id), _) => match (candidates.get(&id), adopted.get(&id)) {
                (None, _) => GroupOutcome::Conflict {
                    reason: format!(
                        "migration.rhai adopts {id}, which is not an in-scope directory group"
                    ),
                    candidate: None,
                },
                (Some(_), Some(other)) => GroupOutcome::Conflict {
                    reason: format!("directory group {id} is already adopted by group {other}"),
                    candidate: Some(id),
                },
                (Some(c), None) => {
                    adopted.insert(id.clone(), name.clone());
                    let resource = scim_groups
                        .get(&gid)
                        .map(|r| r.resource.clone())
                        .unwrap_or_else(|| json!({ "displayName": name }));
                    memberships.extend(adopted_members(&id, &resource, &member_source));
                    GroupOutcome::Adopt {
                        link: group_link(&id, &gid, c, &resource),
                        source_id: id,
                        rule: text("rule").unwrap_or_else(|| "migration.rhai".into()),
                    }
                }
            },
            (None, Some(reason)) => GroupOutcome::Conflict {
                reason,
                candidate: text("candidate"),
            },
            (None, None) => GroupOutcome::Unmanaged {
                reason: text("reason")
                    .unwrap_or_else(|| "not in the directory (in scope): left alone".into()),
            },
        };
        decisions.push(GroupDecision {
            name,
            group_id: gid,
            outcome,
        });
    }
    Ok((decisions, memberships))
}

/// In-scope directory groups as `match_group` sees them, by source id, and the
/// ids under each key a Business API group is matched on (name in any case, id,
/// external id).
fn group_candidates(
    snapshot: &crate::model::Snapshot,
    evaluated: &[crate::evaluate::Evaluated],
) -> (
    HashMap<String, GroupCandidate>,
    HashMap<String, Vec<String>>,
) {
    let records: HashMap<&str, serde_json::Map<String, Value>> = snapshot
        .groups
        .iter()
        .map(|g| (g.id.as_str(), g.record_for_scripts()))
        .collect();
    let mut candidates: HashMap<String, GroupCandidate> = HashMap::new();
    let mut by_key: HashMap<String, Vec<String>> = HashMap::new();
    for e in evaluated.iter().filter(|e| e.kind == ObjectKind::Group) {
        let (Decision::InScope(_), Some(attrs)) = (&e.decision, &e.attrs) else {
            continue;
        };
        let name = attrs
            .get("displayName")
            .and_then(|n| n.as_str())
            .unwrap_or(&e.display)
            .to_string();
        let mut v = Value::Object(
            records
                .get(&*e.source_id)
                .map(|r| (*r).clone())
                .unwrap_or_default(),
        );
        v["id"] = json!(e.source_id);
        v["displayName"] = json!(name);
        v["externalId"] = attrs.get("externalId").cloned().unwrap_or(Value::Null);
        for k in [
            name.to_lowercase(),
            e.source_id.to_lowercase(),
            lower(v.get("externalId")),
        ] {
            if !k.is_empty() {
                by_key.entry(k).or_default().push(e.source_id.to_string());
            }
        }
        candidates.insert(
            e.source_id.to_string(),
            GroupCandidate {
                value: v,
                attrs: attrs.clone(),
                name,
            },
        );
    }
    (candidates, by_key)
}

/// The memberships an adopted group brings: its target members that are adopted
/// users (`member_source`: team member id → source id).
fn adopted_members(
    group: &str,
    resource: &Value,
    member_source: &HashMap<&str, &str>,
) -> Vec<Membership> {
    resource
        .get("members")
        .and_then(|m| m.as_array())
        .into_iter()
        .flatten()
        .filter_map(|m| m.get("value")?.as_str())
        .filter_map(|v| member_source.get(v))
        .map(|src| (group.to_string(), src.to_string()))
        .collect()
}

/// (group, user) by source ids.
type Membership = (String, String);

/// What `match_members` decided: per member, the links adopted members get, and
/// the directory users a conflict blocks.
type MembersMatched = (Vec<MemberDecision>, Vec<Link>, BTreeSet<String>);

/// An in-scope directory group as `match_group` sees it, with its mapped attributes.
struct GroupCandidate {
    value: Value,
    attrs: Attrs,
    name: String,
}

/// The link an adopted group gets: what the target holds now, so the first SCIM
/// cycle sends exactly the differences from the directory.
fn group_link(source_id: &str, group_id: &str, c: &GroupCandidate, resource: &Value) -> Link {
    let mut current = Attrs::new();
    for path in c.attrs.keys().filter(|k| !k.starts_with('$')) {
        let v = AttrPath::parse(path)
            .ok()
            .and_then(|p| p.get(resource).cloned())
            .unwrap_or(Value::Null);
        current.insert(path.clone(), v);
    }
    Link {
        kind: ObjectKind::Group,
        source_id: source_id.to_string(),
        target_id: group_id.to_string(),
        display: c.name.clone(),
        hash: hash_attrs(&current),
        attrs: current,
        active: true,
        disabled_reason: None,
    }
}
