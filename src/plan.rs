//! The planner: (source records, scripts, recorded state) → actions with reasons.
//!
//! `evaluate` runs the scripts over a snapshot (scope decision + mapped attributes);
//! `plan` is then a pure function of those evaluations, the links and memberships in
//! the state, the target facts `gather` read (matching look-ups, and in a full cycle
//! the target's objects) and the config's switches. It never touches the network or
//! the state, so `scimsync plan` is exactly what `sync` does: a create that will be
//! adopted is planned as `adopt`, with the changes it sends.

pub mod grace;
use crate::evaluate::{desired_active, Decision, Evaluated, Evaluations};
use crate::gather::{Facts, Match};
use crate::model::{ObjectKind, Present, Unreadable};
use crate::scim::attribute::{match_key, AttrPath, Attrs};
use crate::scim::profile::Profile;
use crate::state::{Link, LinkMap, LogAction};
use crate::targets::{remote_value, Change, ErrorClass, Remote, TargetError};
pub use grace::Grace;
use serde::Serialize;
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::collections::{BTreeSet, HashMap, HashSet};
use std::num::NonZeroI64;
use thin_vec::ThinVec;

/// Longest attribute value sent (bytes): bigger ones are a directory error, not
/// something to push at a target.
pub const MAX_VALUE_BYTES: usize = 64 << 10;

/// Attributes that identify an object: control characters there are an error.
const IDENTIFIERS: [&str; 3] = ["userName", "externalId", "displayName"];

/// What an action does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Op {
    /// Create the object (nothing in the target matches it).
    Create,
    /// Link an object the target already has (found by a matching attribute) and
    /// send the changes that make it as desired.
    Adopt,
    Update,
    Enable,
    Disable,
    Delete,
    AddMembers,
    RemoveMembers,
    /// Drop a link without a request (the object is no longer managed).
    Forget,
    Skip,
    Fail,
}

impl Op {
    pub fn as_str(self) -> &'static str {
        match self {
            Op::Create => "create",
            Op::Adopt => "adopt",
            Op::Update => "update",
            Op::Enable => "enable",
            Op::Disable => "disable",
            Op::Delete => "delete",
            Op::AddMembers => "add_members",
            Op::RemoveMembers => "remove_members",
            Op::Forget => "forget",
            Op::Skip => "skip",
            Op::Fail => "fail",
        }
    }
    /// Destructive actions pass the one gate (threshold, errors, dry-run).
    pub fn is_destructive(self) -> bool {
        matches!(self, Op::Disable | Op::Delete)
    }
}

impl Action {
    /// Judged by its effect: a delete, a disable, or any change that turns
    /// `active` off (in an adoption, say) destroys access.
    pub fn destroys(&self) -> bool {
        self.op.is_destructive()
            || self
                .changes
                .iter()
                .any(|c| is_active_path(&c.path) && !truthy(&c.new))
    }
}

/// A value read as `active` (absent is active).
pub fn truthy(v: &Value) -> bool {
    match v {
        Value::Bool(b) => *b,
        Value::String(s) => !s.eq_ignore_ascii_case("false"),
        _ => true,
    }
}

/// One planned action.
#[derive(Debug, Clone, Serialize)]
pub struct Action {
    pub kind: ObjectKind,
    pub op: Op,
    pub source_id: String,
    pub display: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target_id: Option<String>,
    pub reason: Reason,
    /// Desired attributes (create, update, verify, enable).
    #[serde(skip_serializing_if = "Attrs::is_empty")]
    pub attrs: Attrs,
    #[serde(skip_serializing_if = "ThinVec::is_empty")]
    pub changes: ThinVec<PlannedChange>,
    /// Membership actions: user source ids.
    #[serde(skip_serializing_if = "ThinVec::is_empty")]
    pub members: ThinVec<String>,
    /// A destructive action that frees a name a create of this plan takes: it runs
    /// before the creates (still through the gate).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub frees_name: bool,
    /// A create that only adopts: the object's earlier create may have reached
    /// the target (its answer was lost) and the object is no longer to be created.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub adopt_only: bool,
    /// Kept as it is for now because something is unknown: planned again next
    /// cycle, whatever changes.
    #[serde(skip)]
    pub revisit: bool,
    /// Held by the gate: not run this cycle (why: `held_reason`).
    pub held: bool,
    /// A failed look-up (fail actions): counted as the target's error.
    #[serde(skip)]
    pub error: Option<Box<TargetError>>,
    /// Adoptions: whether the object is active once adopted.
    #[serde(skip)]
    pub active: Option<bool>,
    /// Fail actions: the step that failed (evaluate for a script, import for an
    /// unreadable record).
    #[serde(skip)]
    pub step: LogAction,
    /// What few actions carry (boxed: a plan holds an action per object).
    #[serde(skip)]
    pub rare: Option<Box<Rare>>,
    /// A create whose attributes wait in the spill (this row): `attrs` holds only
    /// the matching values until apply sends it.
    #[serde(skip)]
    pub spilled: Option<NonZeroI64>,
}

/// Why an action is planned: shared by the actions that say the same (a
/// million creates have a handful of reasons between them).
pub use crate::model::Reason;

/// What few actions carry, apart so that an action stays small (200 bytes, not
/// 280: at a million actions, 80 MB).
#[derive(Debug, Clone, Default)]
pub struct Rare {
    /// Why an object is disabled (kept in the link: "out_of_scope" or "disabled").
    pub disabled_reason: Option<String>,
    /// Why the gate holds the action.
    pub held_reason: Option<String>,
    /// A create whose matching value the linked object `after` still holds: it is
    /// created once that object gives the name up in this plan (deleted or
    /// renamed), else it fails.
    pub after: Option<String>,
    /// Where this action moves a leaver's grace period (see `grace`).
    pub grace: Option<grace::GraceStep>,
}

impl Action {
    pub fn disabled_reason(&self) -> Option<&str> {
        self.rare.as_ref()?.disabled_reason.as_deref()
    }
    pub fn held_reason(&self) -> Option<&str> {
        self.rare.as_ref()?.held_reason.as_deref()
    }
    pub fn after(&self) -> Option<&str> {
        self.rare.as_ref()?.after.as_deref()
    }
    pub fn grace(&self) -> Option<grace::GraceStep> {
        self.rare.as_ref()?.grace
    }
    /// The rare parts, made on first use.
    pub fn rare_mut(&mut self) -> &mut Rare {
        self.rare.get_or_insert_with(Default::default)
    }
}

impl Action {
    /// A copy safe to print: redacted values replaced by `[Redact]` (see
    /// `scim::attribute::shown`).
    pub fn masked(&self) -> Action {
        use crate::scim::attribute::shown;
        let mut a = self.clone();
        for (p, v) in a.attrs.iter_mut() {
            *v = shown(&self.attrs, p, v);
        }
        for c in a.changes.iter_mut() {
            c.old = shown(&self.attrs, &c.path, &c.old);
            c.new = shown(&self.attrs, &c.path, &c.new);
        }
        a
    }
}

impl Action {
    /// The action as the plan document shows it (`plan --json`, `plan --out`):
    /// op, the object, the attribute changes old → new (redacted values masked),
    /// whether the gate holds it and why, and the reason. A failure to plan shows
    /// as a skip that fails (`"fails": true`): nothing is sent for it.
    pub fn document(&self) -> Value {
        let a = self.masked();
        let changes: Vec<PlannedChange> = match a.op {
            Op::Create => a
                .attrs
                .iter()
                .filter(|(k, v)| !k.starts_with('$') && !v.is_null())
                .map(|(k, v)| PlannedChange {
                    path: k.to_string(),
                    old: Value::Null,
                    new: v.clone(),
                })
                .collect(),
            Op::Enable | Op::Disable => vec![PlannedChange {
                path: "active".into(),
                old: Value::Bool(a.op == Op::Disable),
                new: Value::Bool(a.op == Op::Enable),
            }],
            _ => a.changes.to_vec(),
        };
        let mut d = serde_json::json!({
            "op": if a.op == Op::Fail { "skip" } else { a.op.as_str() },
            "kind": a.kind.as_str(),
            "source_id": a.source_id,
            "display": a.display,
            "target_id": a.target_id,
            "changes": changes,
            "held": a.held,
            "held_reason": a.held_reason(),
            "reason": a.reason,
        });
        if !a.members.is_empty() {
            d["members"] = serde_json::json!(a.members);
        }
        if a.op == Op::Fail {
            d["fails"] = Value::Bool(true);
        }
        if let Some(grace::GraceStep::Starts { due }) = a.grace() {
            d["removal_due"] = Value::String(grace::day(due));
        }
        d
    }
}

/// A change as shown in a plan and stored in the log.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PlannedChange {
    pub path: String,
    pub old: Value,
    pub new: Value,
}

impl PlannedChange {
    pub fn to_change(&self) -> Change {
        Change {
            path: self.path.clone(),
            old: if self.old.is_null() {
                None
            } else {
                Some(self.old.clone())
            },
            new: if self.new.is_null() {
                None
            } else {
                Some(self.new.clone())
            },
        }
    }
}

/// The whole plan of a cycle.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Plan {
    pub actions: Vec<Action>,
    /// Links whose record of what was applied is refreshed without a request (only
    /// unmanaged or create-only attributes moved, or the target already has it):
    /// not actions, since nothing is sent.
    #[serde(skip)]
    pub refresh: Vec<Refresh>,
    /// (group, user, member): memberships recorded as the target has them.
    #[serde(skip)]
    pub member_refresh: Vec<(String, String, bool)>,
    /// Why the gate holds this plan's destructive actions, if it does.
    pub held: Option<String>,
}

/// A link brought up to date without a request.
#[derive(Debug, Clone)]
pub struct Refresh {
    pub kind: ObjectKind,
    pub source_id: String,
    pub target_id: String,
    pub display: String,
    pub attrs: Attrs,
    pub active: bool,
    pub disabled_reason: Option<String>,
}

impl Plan {
    /// Actions that take access away (judged by effect, see `Action::destroys`).
    pub fn destructive_count(&self) -> usize {
        self.actions.iter().filter(|a| a.destroys()).count()
    }
    pub fn count(&self, op: Op) -> usize {
        self.actions.iter().filter(|a| a.op == op).count()
    }

    /// The order apply runs actions in: objects let go first (a new object may
    /// adopt their account), then deletes that free a name a create takes, then
    /// updates, enables and adoptions (a rename may free a name), creates,
    /// memberships, disables and deletes (users before groups), then the rest.
    /// Within a stage the order is by object, so that the plan and the cycle that
    /// applies it agree on which of two objects wanting one name comes first.
    pub fn order(&mut self) {
        fn stage(a: &Action) -> (u8, bool) {
            let group = a.kind == ObjectKind::Group;
            match a.op {
                Op::Forget => (0, false),
                Op::Delete if a.frees_name => (1, group),
                Op::Update | Op::Enable | Op::Adopt => (2, false),
                Op::Create => (3, false),
                Op::AddMembers | Op::RemoveMembers => (4, false),
                Op::Disable => (5, group),
                Op::Delete => (6, group),
                Op::Skip | Op::Fail => (7, false),
            }
        }
        sort_stably(&mut self.actions, |a, b| {
            stage(a)
                .cmp(&stage(b))
                .then_with(|| a.kind.cmp(&b.kind))
                .then_with(|| a.source_id.cmp(&b.source_id))
        });
    }
}

/// Sorts as a stable sort does, but with an index per element instead of the
/// merge sort's scratch copy of half the elements (at a million actions that
/// copy is 150 MB): the indexes are sorted, then the elements moved once.
fn sort_stably<T>(v: &mut [T], cmp: impl Fn(&T, &T) -> std::cmp::Ordering) {
    let mut order: Vec<usize> = (0..v.len()).collect();
    order.sort_unstable_by(|&x, &y| cmp(&v[x], &v[y]).then(x.cmp(&y)));
    permute(v, order);
}

/// Rearranges `v` so that position k holds what was at `order[k]`, following
/// each cycle of the permutation with swaps.
fn permute<T>(v: &mut [T], mut order: Vec<usize>) {
    for i in 0..v.len() {
        let mut j = i;
        while order[j] != i {
            let k = order[j];
            v.swap(j, k);
            order[j] = j;
            j = k;
        }
        order[j] = j;
    }
}

/// Inputs of `plan` besides the evaluations.
pub struct PlanInput<'a> {
    pub user_links: &'a LinkMap,
    pub group_links: &'a LinkMap,
    pub memberships: &'a HashMap<String, BTreeSet<String>>,
    pub profile: &'a Profile,
    pub create_only: &'a [String],
    pub skip_out_of_scope_deletions: bool,
    /// Re-read every linked object and repair drift.
    pub full: bool,
    /// Incremental read: ids present in the directory, of which only the changed
    /// ones were evaluated; the others are left as they are.
    pub present: Option<&'a Present>,
    /// What unreadable directory records leave unknown: kept as it is.
    pub unreadable: &'a Unreadable,
    /// Matching attributes (users, groups): a create that takes a name a deleted
    /// object holds waits for that delete.
    pub user_matching: &'a [String],
    pub group_matching: &'a [String],
    /// Creates in doubt (answer lost): what they sent, by object.
    pub in_doubt: &'a HashMap<(ObjectKind, String), Attrs>,
    /// What `gather` read from the target.
    pub facts: &'a Facts,
    /// Entra's switches: target object actions and object types.
    pub actions: crate::config::Actions,
    pub sync_users: bool,
    pub sync_groups: bool,
    /// Directory objects a migration conflict keeps from being created.
    pub blocked: &'a HashSet<String>,
    /// Objects waiting for their escrow retry: they sit the cycle out.
    pub not_due: &'a HashSet<(ObjectKind, String)>,
    /// Leavers' grace period before removal.
    pub grace: Grace<'a>,
}

/// A stable hash of mapped attributes.
pub fn hash_attrs(a: &Attrs) -> String {
    let text = serde_json::to_string(a).unwrap_or_default();
    format!("{:x}", Sha256::digest(text.as_bytes()))
}

/// Attribute changes from `old` (applied) to `new` (desired), leaving out `active`
/// and create-only attributes. A desired `null` clears an applied value.
pub fn diff(old: &Attrs, new: &Attrs, create_only: &[String]) -> Vec<PlannedChange> {
    let mut out = vec![];
    for (k, v) in new {
        if k.starts_with('$')
            || k.eq_ignore_ascii_case("active")
            || create_only.iter().any(|c| c == k)
        {
            continue;
        }
        let before = old.get(k).cloned().unwrap_or(Value::Null);
        if !(crate::scim::attribute::same_value(&before, v) || v.is_null() && before.is_null()) {
            out.push(PlannedChange {
                path: k.to_string(),
                old: before,
                new: v.clone(),
            });
        }
    }
    out
}

/// How an object as the target holds it is compared with what it should be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Drift {
    /// An adoption: `active` too, and redacted values the target does not show
    /// are sent.
    Adopt,
    /// A full cycle: `active` is judged on its own (a disable passes the gate), and
    /// write-only values (redacted: a target never shows them) are not judged.
    Full,
}

/// Differences between the desired attributes and an object as the target holds
/// it. A server that does not say whether an object is active is not assumed
/// active.
pub fn drift(
    attrs: &Attrs,
    remote: &Remote,
    mode: Drift,
    create_only: &[String],
) -> Vec<PlannedChange> {
    let redacted = crate::scim::attribute::redacted_paths(attrs);
    let mut out = vec![];
    for (k, v) in attrs.iter().filter(|(k, _)| !k.starts_with('$')) {
        let is_active = is_active_path(k);
        let skipped = match mode {
            Drift::Adopt => false,
            Drift::Full => is_active || redacted.iter().any(|r| r == k),
        };
        if skipped || create_only.iter().any(|c| c == k) {
            continue;
        }
        let have = remote_value(remote, k).unwrap_or(Value::Null);
        let same = if is_active {
            !have.is_null() && truthy(&have) == truthy(v)
        } else {
            have == *v || (v.is_null() && have.is_null())
        };
        if !same {
            out.push(PlannedChange {
                path: k.to_string(),
                old: have,
                new: v.clone(),
            });
        }
    }
    out
}

/// Whether the target holds an object active (a server that does not say: yes).
pub fn remote_active(remote: &Remote) -> bool {
    remote_value(remote, "active").is_none_or(|v| v.is_null() || truthy(&v))
}

/// Makes `a` the adoption of `remote`, found by `path`: the changes that make it
/// as desired are sent, then it is linked.
fn adoption(a: &mut Action, attrs: &Attrs, path: &str, remote: &Remote, create_only: &[String]) {
    a.op = Op::Adopt;
    a.target_id = Some(remote.id.clone());
    a.changes = drift(attrs, remote, Drift::Adopt, create_only).into();
    a.active = Some(desired_active(attrs));
    if let Some(r) = a.rare.as_mut() {
        r.after = None;
    }
    a.error = None;
    a.reason = format!("{}; matched an existing object by {path}", a.reason).into();
}

/// What planning a new object came to.
enum Planned<'a> {
    /// Created.
    New,
    /// Adopted: the target's object.
    Adopted(&'a Remote),
    /// Failed or skipped: nothing is created.
    Not,
}

/// Whether a new user is created as mapped (else it is skipped, saying why): the
/// check `evaluate` makes before it puts the attributes aside.
pub fn new_user_fits(attrs: &Attrs, profile: &Profile) -> bool {
    desired_active(attrs) && validate(attrs, profile).is_none()
}

fn validate(attrs: &Attrs, profile: &Profile) -> Option<String> {
    for (k, v) in attrs {
        let text = match v {
            Value::String(s) => s.len(),
            Value::Null | Value::Bool(_) | Value::Number(_) => 0,
            other => other.to_string().len(),
        };
        if text > MAX_VALUE_BYTES {
            return Some(format!(
                "{k} is {text} bytes long, more than the {MAX_VALUE_BYTES} scimsync sends"
            ));
        }
        if let (true, Value::String(s)) = (IDENTIFIERS.iter().any(|i| *i == k.as_str()), v) {
            if let Some(c) = s.chars().find(|c| c.is_control()) {
                return Some(format!(
                    "{k} contains the control character U+{:04X}",
                    c as u32
                ));
            }
        }
    }
    for req in profile.required_user_attrs {
        let present = attrs
            .get(req)
            .map(|v| !v.is_null() && v.as_str() != Some(""))
            .unwrap_or(false);
        if !present {
            return Some(format!("{req} is missing (required by {})", profile.name));
        }
    }
    if profile.user_name_is_email {
        if let Some(Value::String(u)) = attrs.get("userName") {
            if !is_email(u) {
                return Some(format!(
                    "userName {u:?} is not an email address (required by {})",
                    profile.name
                ));
            }
        }
    }
    None
}

thread_local! {
    static EMAIL: Option<regex::Regex> = regex::Regex::new(crate::scim::profile::DROPBOX_EMAIL_PATTERN).ok();
}

fn is_email(s: &str) -> bool {
    EMAIL.with(|re| re.as_ref().map(|r| r.is_match(s)).unwrap_or(true))
}

/// An action with nothing but its object and reason.
pub(crate) fn action(
    kind: ObjectKind,
    op: Op,
    source_id: &str,
    display: &str,
    reason: impl Into<Reason>,
) -> Action {
    Action {
        kind,
        op,
        source_id: source_id.to_string(),
        display: display.to_string(),
        target_id: None,
        reason: reason.into(),
        attrs: Attrs::new(),
        changes: ThinVec::new(),
        members: ThinVec::new(),
        frees_name: false,
        adopt_only: false,
        revisit: false,
        held: false,
        error: None,
        active: None,
        step: LogAction::Evaluate,
        rare: None,
        spilled: None,
    }
}

/// Plans a cycle.
pub fn plan(evaluated: Evaluations, input: &PlanInput<'_>) -> Plan {
    // Users first: a group's members are judged on what happens to its users. Each
    // evaluation is consumed as it is planned, its mapped attributes moving into
    // the action (at 100,000 users a copy is ~100 MB), and the evaluations' blocks
    // are freed as they are used up.
    let evaluated = evaluated.by_kind();
    let mut p = Planner::new(input);
    // Room for the whole plan in the buffer the creates and updates go into (the
    // others join them there): grown by doubling, then merged, it held two
    // buffers at once (60 MB at 100,000 creates). An object makes one action, a
    // group up to two more (members added, removed); only gone objects add more.
    let groups = evaluated
        .iter()
        .filter(|e| e.kind == ObjectKind::Group)
        .count();
    p.constructive.reserve_exact(evaluated.len() + 2 * groups);
    p.member_ok.reserve(evaluated.len() - groups);
    crate::alloc::log_memory("plan: reserved");
    let mut users_done = false;
    for mut e in evaluated {
        if e.kind == ObjectKind::Group && !users_done {
            crate::alloc::log_memory("plan: users");
            p.gone_objects(ObjectKind::User);
            users_done = true;
        }
        let attrs = e.attrs.take();
        p.object(&e, attrs);
    }
    if !users_done {
        p.gone_objects(ObjectKind::User);
    }
    p.gone_objects(ObjectKind::Group);
    crate::alloc::log_memory("plan: groups");
    p.finish()
}

/// The planner's working set: actions sorted into the order apply runs them.
struct Planner<'a> {
    input: &'a PlanInput<'a>,
    constructive: Vec<Action>,
    membership: Vec<Action>,
    destructive: Vec<Action>,
    other: Vec<Action>,
    /// Users that will have a live link after this cycle (for memberships).
    /// By key (`ids::key`), sorted once the users are planned: at a million new
    /// users, 16 bytes each (a table was 36 MB).
    member_ok: crate::ids::KeyList,
    deleted_users: HashSet<String>,
    /// Users evaluated this cycle (judged on their record: failed and kept ones
    /// are not).
    evaluated: HashSet<String>,
    /// Users to be forgotten once they are out of their groups.
    leaving: Vec<String>,
    seen_users: HashSet<String>,
    seen_groups: HashSet<String>,
    /// Target id → source id of the links, built on first use.
    by_target_users: std::cell::OnceCell<HashMap<String, String>>,
    by_target_groups: std::cell::OnceCell<HashMap<String, String>>,
    /// Target user id → the new object adopting it in this plan.
    adopting_users: std::cell::OnceCell<HashMap<String, String>>,
    refreshes: Vec<Refresh>,
    /// (group, user, member): memberships recorded as the target has them.
    member_refresh: Vec<(String, String, bool)>,
    /// Users whose grace period starts in this plan (kept in their groups).
    grace_now: HashSet<String>,
    /// The reasons of creates and updates, each kept once.
    reasons: HashSet<Reason>,
}

impl<'a> Planner<'a> {
    fn new(input: &'a PlanInput<'a>) -> Planner<'a> {
        Planner {
            input,
            constructive: vec![],
            membership: vec![],
            destructive: vec![],
            other: vec![],
            member_ok: Default::default(),
            deleted_users: HashSet::new(),
            evaluated: HashSet::new(),
            leaving: vec![],
            seen_users: HashSet::new(),
            seen_groups: HashSet::new(),
            by_target_users: Default::default(),
            by_target_groups: Default::default(),
            adopting_users: Default::default(),
            refreshes: vec![],
            member_refresh: vec![],
            grace_now: HashSet::new(),
            reasons: HashSet::new(),
        }
    }

    /// The reason, shared with the actions planned before for the same one.
    fn reason(&mut self, why: String) -> Reason {
        if let Some(r) = self.reasons.get(why.as_str()) {
            return r.clone();
        }
        let r = Reason::from(why);
        self.reasons.insert(r.clone());
        r
    }

    /// A failed script or an unreadable record: logged and escrowed; the object
    /// keeps its last known state, memberships included — none added, none removed
    /// (it counts as not evaluated, see `group_members`).
    fn failure(&mut self, e: &Evaluated, link: Option<&Link>) -> bool {
        let (step, why) = match &e.decision {
            Decision::Failed(f) => (LogAction::Evaluate, f.to_string()),
            Decision::Unreadable(m) => (
                LogAction::Import,
                format!("the directory record is invalid: {m}"),
            ),
            _ => return false,
        };
        let display = link.map(|l| l.display.as_str()).unwrap_or(&e.display);
        let mut a = action(e.kind, Op::Fail, &e.source_id, display, why);
        a.target_id = link.map(|l| l.target_id.clone());
        a.step = step;
        self.other.push(a);
        true
    }

    /// Keeps a linked object as it is, memberships included, saying why (nothing
    /// is known for sure); planned again next cycle.
    fn keep(&mut self, kind: ObjectKind, l: &Link, why: String) {
        let mut a = action(kind, Op::Skip, &l.source_id, &l.display, why);
        a.target_id = Some(l.target_id.clone());
        a.revisit = true;
        self.other.push(a);
        self.evaluated.remove(&l.source_id);
    }

    /// The links of a kind.
    fn links(&self, kind: ObjectKind) -> &'a LinkMap {
        match kind {
            ObjectKind::User => self.input.user_links,
            ObjectKind::Group => self.input.group_links,
        }
    }

    /// One directory object, user or group, through the same steps: a failure
    /// keeps it as it is; in scope it is created, adopted or brought up to date;
    /// out of scope it leaves. The kinds differ only where a step says so (what is
    /// checked before sending, how an object leaves, and each kind's own part: a
    /// user's active flag, a group's members).
    fn object(&mut self, e: &Evaluated, attrs: Option<Attrs>) {
        let kind = e.kind;
        let link = self.links(kind).get(&*e.source_id).map(|l| &**l);
        // Only what is linked can be gone (see `gone`): at 100,000 new users a
        // set of their ids was 10 MB for nothing.
        if link.is_some() {
            match kind {
                ObjectKind::User => self.seen_users.insert(e.source_id.to_string()),
                ObjectKind::Group => self.seen_groups.insert(e.source_id.to_string()),
            };
        }
        if self.failure(e, link) {
            return;
        }
        // Only a linked user, or one adopted, can be a group's member now (see
        // `group_members`).
        if kind == ObjectKind::User && (link.is_some() || self.adopts(e)) {
            self.evaluated.insert(e.source_id.to_string());
        }
        // A leaver in the grace period is judged again although suspended.
        let leaving = kind == ObjectKind::User && self.input.grace.holds(&e.source_id);
        match (&e.decision, link) {
            (Decision::InScope(reason), None) => {
                self.new_object(e, attrs.unwrap_or_default(), reason)
            }
            (Decision::InScope(_), Some(l)) => self.linked(e, attrs.unwrap_or_default(), l),
            (Decision::NotAssigned(_), Some(l))
                if self.input.unreadable.assignments && (l.active || leaving) =>
            {
                self.keep(
                    kind,
                    l,
                    "looks unassigned, but some assignments could not be read; kept as it is"
                        .into(),
                );
            }
            (Decision::NotAssigned(r) | Decision::ScopedOut(r), Some(l)) if l.active || leaving => {
                self.leave_scope(e, l, r)
            }
            (Decision::SoftDeleted, Some(l)) if l.active && kind == ObjectKind::User => {
                let mut a = action(
                    kind,
                    Op::Disable,
                    &e.source_id,
                    &e.display,
                    "soft-deleted in the directory",
                );
                a.target_id = Some(l.target_id.clone());
                a.attrs = l.attrs.clone();
                a.rare_mut().disabled_reason = Some("disabled".into());
                self.destructive.push(a);
            }
            _ => {}
        }
    }

    /// Whether the target holds an object this new one would adopt.
    fn adopts(&self, e: &Evaluated) -> bool {
        let found = self
            .input
            .facts
            .matches
            .get(&(e.kind, e.source_id.to_string()));
        matches!(found, Some(Match::One { .. }))
    }

    /// A linked object out of scope or no longer assigned: a user is disabled (the
    /// legacy integration removes it), a group deleted; kept where
    /// `skip_out_of_scope_deletions` says so.
    fn leave_scope(&mut self, e: &Evaluated, l: &Link, r: &str) {
        let why = match &e.decision {
            Decision::NotAssigned(_) => format!("no longer assigned: {r}"),
            _ => format!("out of scope: {r}"),
        };
        let user = e.kind == ObjectKind::User;
        if self.input.skip_out_of_scope_deletions {
            let mut a = action(e.kind, Op::Skip, &e.source_id, &e.display, why);
            a.reason = format!("{}; kept (skip_out_of_scope_deletions)", a.reason).into();
            a.target_id = Some(l.target_id.clone());
            self.other.push(a);
            if user {
                self.member_ok.insert(crate::ids::key(&e.source_id));
            }
            return;
        }
        if user && self.input.profile.unassigned_removes {
            let why = format!("{why}; the legacy integration removes unassigned members");
            return self.leaver(l, &e.display, why, "out_of_scope");
        }
        if !l.active {
            // A leaver back in the directory but out of scope: suspended as out of
            // scope users are (SCIM never removes those), no longer leaving.
            let why = format!("back in the directory, {why}: stays suspended, no longer leaving");
            return self.back(l, &e.display, false, &why);
        }
        let mut a = action(e.kind, Op::Delete, &e.source_id, &e.display, why);
        a.target_id = Some(l.target_id.clone());
        a.attrs = l.attrs.clone();
        if user {
            a.rare_mut().disabled_reason = Some("out_of_scope".into());
            a.op = Op::Disable;
        }
        self.destructive.push(a);
    }

    /// Why an object in scope is not sent as mapped, if it is not: a user the
    /// target would refuse (or, when new, one disabled in the directory), a group
    /// without a name.
    fn unfit(&self, kind: ObjectKind, attrs: &Attrs, linked: bool) -> Option<String> {
        match kind {
            ObjectKind::Group => attrs
                .get("displayName")
                .is_none_or(Value::is_null)
                .then(|| "displayName is missing".into()),
            ObjectKind::User if !linked && !desired_active(attrs) => {
                Some("disabled in the directory; not created".into())
            }
            ObjectKind::User => validate(attrs, self.input.profile).map(|why| {
                if linked {
                    format!("not updated: {why}")
                } else {
                    why
                }
            }),
        }
    }

    /// An object in scope without a link: created or adopted, then its own part.
    fn new_object(&mut self, e: &Evaluated, attrs: Attrs, reason: &str) {
        // Attributes put aside were checked as they were (`new_user_fits`).
        let unfit = match e.spilled {
            Some(_) => None,
            None => self.unfit(e.kind, &attrs, false),
        };
        if let Some(why) = unfit {
            self.other
                .push(action(e.kind, Op::Skip, &e.source_id, &e.display, why));
            return;
        }
        let reason = self.reason(format!("in scope: {reason}"));
        let planned = self.create_or_adopt(e, attrs, reason);
        self.created(e, None, planned);
    }

    /// After a create or an adoption is planned: a user may be a member from now
    /// on; a group gets its members, from none (created) or from what the target's
    /// object has (adopted).
    fn created(&mut self, e: &Evaluated, link: Option<&Link>, planned: Planned<'a>) {
        match (e.kind, planned) {
            (_, Planned::Not) => {}
            (ObjectKind::User, _) => {
                self.member_ok.insert(crate::ids::key(&e.source_id));
            }
            (ObjectKind::Group, Planned::New) => self.group_members(e, link, &BTreeSet::new()),
            (ObjectKind::Group, Planned::Adopted(r)) => {
                let current = self.remote_members(r).unwrap_or_default();
                self.group_members(e, link, &current)
            }
        }
    }

    /// The link that holds a target object, if any.
    fn linked_to(&self, kind: ObjectKind, target_id: &str) -> Option<&'a Link> {
        let links = match kind {
            ObjectKind::User => self.input.user_links,
            ObjectKind::Group => self.input.group_links,
        };
        let by_target = match kind {
            ObjectKind::User => &self.by_target_users,
            ObjectKind::Group => &self.by_target_groups,
        };
        let ix = by_target.get_or_init(|| {
            links
                .values()
                .map(|l| (l.target_id.clone(), l.source_id.clone()))
                .collect()
        });
        links.get(ix.get(target_id)?).map(|l| &**l)
    }

    /// A new object: adopted when the target already has it (the look-up `gather`
    /// made), else created; a look-up that failed, or that found several, fails it.
    fn create_or_adopt(&mut self, e: &Evaluated, mut attrs: Attrs, reason: Reason) -> Planned<'a> {
        let facts: &'a Facts = self.input.facts;
        let mut a = action(e.kind, Op::Create, &e.source_id, &e.display, reason);
        let planned = match facts.matches.get(&(e.kind, e.source_id.to_string())) {
            Some(Match::One { path, remote }) => {
                match self
                    .linked_to(e.kind, &remote.id)
                    .filter(|l| *l.source_id != *e.source_id)
                {
                    // Held by another object: created once that one gives the name
                    // up in this plan, else a conflict (see `settle`).
                    Some(other) => {
                        a.rare_mut().after = Some(other.source_id.clone());
                        a.error = Some(Box::new(TargetError::new(
                            ErrorClass::Conflict,
                            None,
                            format!(
                                "{path} matches {} already linked to {}",
                                remote.id, other.display
                            ),
                        )));
                        Planned::New
                    }
                    None => {
                        // An adopted object is updated, not created: no defaults.
                        attrs = crate::scim::attribute::without_defaults(attrs, None);
                        adoption(&mut a, &attrs, path, remote, self.input.create_only);
                        Planned::Adopted(remote)
                    }
                }
            }
            Some(Match::Many { path, value, count }) => {
                a = self.failed_lookup(
                    e,
                    TargetError::new(
                        ErrorClass::Conflict,
                        None,
                        format!("{count} objects match {path} = {value:?}; not adopting any"),
                    ),
                );
                Planned::Not
            }
            Some(Match::Failed(err)) => {
                a = self.failed_lookup(e, err.clone());
                Planned::Not
            }
            Some(Match::None) | None => {
                a.spilled = e.spilled;
                Planned::New
            }
        };
        if a.op == Op::Fail {
            self.other.push(a);
        } else {
            a.attrs = attrs;
            self.constructive.push(a);
        }
        planned
    }

    fn failed_lookup(&self, e: &Evaluated, err: TargetError) -> Action {
        let mut a = action(
            e.kind,
            Op::Fail,
            &e.source_id,
            &e.display,
            err.message.clone(),
        );
        a.step = LogAction::Create;
        a.error = Some(Box::new(err));
        a
    }

    /// A linked object in scope: compared with the target as `gather` read it in a
    /// full cycle (an object gone from the target is made again), else with what
    /// was applied; then its own part — a user's active flag, a group's members.
    /// Attributes the target would refuse are not sent, but never block a user's
    /// disable or enable.
    fn linked(&mut self, e: &Evaluated, attrs: Attrs, l: &'a Link) {
        let kind = e.kind;
        if kind == ObjectKind::User {
            self.member_ok.insert(crate::ids::key(&e.source_id));
        }
        // Judged with its defaults (the object has at least those), then planned
        // without them: a default is sent on create only.
        let unfit = self.unfit(kind, &attrs, true);
        let attrs = crate::scim::attribute::without_defaults(attrs, Some(&l.attrs));
        let should = desired_active(&attrs);
        if let Some(why) = unfit {
            let mut a = action(kind, Op::Skip, &e.source_id, &e.display, why);
            a.target_id = Some(l.target_id.clone());
            self.other.push(a);
            if kind == ObjectKind::User {
                // What the link holds stays the record of what was applied.
                self.active_change(e, &l.attrs, l, should, l.active);
            }
            return;
        }
        let create_only = self.input.create_only;
        let remote = match self.input.facts.remote.as_ref() {
            Some(remotes) => match remotes.of(kind).get(&l.target_id) {
                Some(r) => Some(r),
                None => return self.gone_from_target(e, attrs, l),
            },
            None => None,
        };
        let (changes, why, is) = match remote {
            Some(r) => (
                drift(&attrs, r, Drift::Full, create_only),
                "full cycle: drift in",
                remote_active(r),
            ),
            None => (diff(&l.attrs, &attrs, create_only), "changed", l.active),
        };
        self.update(e, &attrs, l, changes, why, is);
        match kind {
            ObjectKind::User => self.active_change(e, &attrs, l, should, is),
            ObjectKind::Group => {
                let current = remote
                    .and_then(|r| self.remote_members(r))
                    .unwrap_or_else(|| self.recorded_members(&e.source_id));
                self.group_members(e, Some(l), &current)
            }
        }
    }

    /// A user waiting out the grace period before removal: kept in their groups.
    fn in_grace(&self, user: &str) -> bool {
        self.grace_now.contains(user) || self.input.grace.holds(user)
    }

    /// The members the state records for a group.
    fn recorded_members(&self, group: &str) -> BTreeSet<String> {
        self.input
            .memberships
            .get(group)
            .cloned()
            .unwrap_or_default()
    }

    /// A full cycle found the object gone from the target: made again, except a
    /// user that is to stay disabled (its link goes instead: creating it would hand
    /// out a live invitation).
    fn gone_from_target(&mut self, e: &Evaluated, attrs: Attrs, l: &'a Link) {
        if e.kind == ObjectKind::User && !desired_active(&attrs) {
            let mut a = action(
                e.kind,
                Op::Forget,
                &e.source_id,
                &e.display,
                "full cycle: gone from the target, and disabled in the directory",
            );
            a.target_id = Some(l.target_id.clone());
            self.other.push(a);
            return;
        }
        let why = "full cycle: gone from the target; created again".into();
        let planned = self.create_or_adopt(e, attrs, why);
        self.created(e, Some(l), planned);
    }

    /// Enables or disables a linked user whose active state `is` is not what it
    /// `should` be.
    fn active_change(&mut self, e: &Evaluated, attrs: &Attrs, l: &Link, should: bool, is: bool) {
        self.back(
            l,
            &e.display,
            should && !is,
            "back in the directory and in scope: no longer leaving (disabled there, so it stays suspended)",
        );
        if should && !is {
            let why = match l.disabled_reason.as_deref() {
                _ if self.input.full && l.active => {
                    "full cycle: suspended in the target; enabled again"
                }
                _ if self.input.grace.holds(&l.source_id) => {
                    "back within the grace period: enabled again, nothing lost"
                }
                Some("out_of_scope") => "back in scope",
                Some("deleted") => "back in the directory",
                _ => "accountEnabled is true",
            };
            let mut a = action(e.kind, Op::Enable, &e.source_id, &e.display, why);
            a.target_id = Some(l.target_id.clone());
            a.attrs = attrs.clone();
            self.constructive.push(a);
        } else if !should && is {
            let why = if self.input.full && !l.active {
                "full cycle: active in the target; disabled again"
            } else {
                "accountEnabled is false"
            };
            let mut a = action(e.kind, Op::Disable, &e.source_id, &e.display, why);
            a.target_id = Some(l.target_id.clone());
            a.attrs = attrs.clone();
            a.rare_mut().disabled_reason = Some("disabled".into());
            self.destructive.push(a);
        }
    }

    fn refresh(&mut self, kind: ObjectKind, l: &Link, attrs: &Attrs, active: bool) {
        self.refreshes.push(Refresh {
            kind,
            source_id: l.source_id.clone(),
            target_id: l.target_id.clone(),
            display: l.display.clone(),
            attrs: attrs.clone(),
            active,
            disabled_reason: if active {
                None
            } else {
                l.disabled_reason.clone()
            },
        });
    }

    /// An update with `changes` (`why` names them), or, with none, the record
    /// refreshed where it no longer says what the target has: only unmanaged or
    /// create-only attributes moved, or a full cycle found the target's active
    /// flag (`is`) unlike the record. A refresh sends nothing.
    fn update(
        &mut self,
        e: &Evaluated,
        attrs: &Attrs,
        l: &Link,
        changes: Vec<PlannedChange>,
        why: &str,
        is: bool,
    ) {
        if changes.is_empty() {
            let moved = l.hash != hash_attrs(attrs);
            let stale = match self.input.facts.remote {
                Some(_) => moved || l.active != is,
                None => moved && desired_active(attrs) == l.active,
            };
            if stale {
                self.refresh(e.kind, l, attrs, is);
            }
            return;
        }
        let names: Vec<&str> = changes.iter().map(|c| c.path.as_str()).collect();
        let reason = self.reason(format!("{why}: {}", names.join(", ")));
        let mut a = action(e.kind, Op::Update, &e.source_id, &e.display, reason);
        a.target_id = Some(l.target_id.clone());
        a.attrs = attrs.clone();
        a.changes = changes.into();
        a.rare_mut().disabled_reason = l.disabled_reason.clone();
        self.constructive.push(a);
    }

    /// Links of a kind whose source object is gone, in a stable order. Objects
    /// present but not evaluated (a partial evaluation) are not gone (and keep their
    /// memberships as they are, see `group_members`); while records of the kind
    /// cannot all be read, none is: they are kept.
    fn gone(&mut self, kind: ObjectKind) -> Vec<&'a Link> {
        let input = self.input;
        let (links, seen) = match kind {
            ObjectKind::User => (input.user_links, &self.seen_users),
            ObjectKind::Group => (input.group_links, &self.seen_groups),
        };
        let present = input.present.map(|p| match kind {
            ObjectKind::User => &p.users,
            ObjectKind::Group => &p.groups,
        });
        // One look-up per link where that settles it: a million links, no copy.
        let mut gone: Vec<&Link> = links
            .values()
            .map(|l| &**l)
            .filter(|l| !present.is_some_and(|p| p.contains(&l.source_id)))
            .filter(|l| !seen.contains(&l.source_id))
            .collect();
        gone.sort_by(|a, b| a.source_id.cmp(&b.source_id));
        if !input.unreadable.unnamed(kind) {
            return gone;
        }
        for l in gone {
            self.keep(
                kind,
                l,
                format!(
                    "not in the directory, but some {} records could not be read; kept as it is",
                    kind.as_str()
                ),
            );
        }
        vec![]
    }

    /// Objects whose source is gone: deleted. A user that left scope earlier is
    /// only let go (the account stays), once it is out of the groups scimsync
    /// manages.
    fn gone_objects(&mut self, kind: ObjectKind) {
        let input = self.input;
        for l in self.gone(kind) {
            let user = kind == ObjectKind::User;
            if user && input.grace.holds(&l.source_id) {
                self.leaver(
                    l,
                    &l.display,
                    "deleted from the directory".into(),
                    "deleted",
                );
                continue;
            }
            let left_scope = !l.active && l.disabled_reason.as_deref() == Some("out_of_scope");
            if user && left_scope {
                if input.memberships.values().any(|m| m.contains(&l.source_id)) {
                    self.leaving.push(l.source_id.clone());
                    self.keep(
                        kind,
                        l,
                        "deleted from the directory after it left scope; leaves its groups before it is forgotten".into(),
                    );
                    continue;
                }
                // Entra: a user unassigned earlier, then deleted, is no longer managed.
                let mut a = action(
                    kind,
                    Op::Forget,
                    &l.source_id,
                    &l.display,
                    "deleted from the directory after it left scope; no longer managed",
                );
                a.target_id = Some(l.target_id.clone());
                self.other.push(a);
                continue;
            }
            if user {
                self.leaver(
                    l,
                    &l.display,
                    "deleted from the directory".into(),
                    "deleted",
                );
                continue;
            }
            let mut a = action(
                kind,
                Op::Delete,
                &l.source_id,
                &l.display,
                "deleted from the directory",
            );
            a.target_id = Some(l.target_id.clone());
            a.attrs = l.attrs.clone();
            self.destructive.push(a);
        }
    }

    /// Users about to be forgotten leave every group the state has them in, where
    /// no planned removal takes them out already.
    fn take_leavers_out(&mut self) {
        let input = self.input;
        for u in std::mem::take(&mut self.leaving) {
            let mut groups: Vec<(&String, &BTreeSet<String>)> = input
                .memberships
                .iter()
                .filter(|(_, m)| m.contains(&u))
                .collect();
            groups.sort();
            for (g, _) in groups {
                let planned = self.membership.iter().any(|a| {
                    a.op == Op::RemoveMembers && &a.source_id == g && a.members.contains(&u)
                });
                let Some(gl) = input.group_links.get(g) else {
                    continue;
                };
                if planned {
                    continue;
                }
                let mut a = action(
                    ObjectKind::Group,
                    Op::RemoveMembers,
                    g,
                    &gl.display,
                    "1 member(s) to remove: no longer managed",
                );
                a.target_id = Some(gl.target_id.clone());
                a.members = thin_vec::thin_vec![u.clone()];
                self.membership.push(a);
            }
        }
    }

    /// The members a target group lists, as source ids of linked users (members
    /// scimsync does not manage are left out: never touched). `None` where the
    /// target does not list members with its groups.
    fn remote_members(&self, remote: &Remote) -> Option<BTreeSet<String>> {
        if !self.input.facts.lists_members {
            return None;
        }
        let listed = match remote.resource.get("members") {
            Some(Value::Array(m)) => m.as_slice(),
            None | Some(Value::Null) => &[],
            Some(_) => return None,
        };
        Some(
            listed
                .iter()
                .filter_map(|m| m.get("value")?.as_str())
                .filter_map(|t| match self.linked_to(ObjectKind::User, t) {
                    Some(l) => Some(l.source_id.clone()),
                    None => self.adopting(t).cloned(),
                })
                .collect(),
        )
    }

    /// The user this plan adopts as target object `target_id`, if any: its look-up
    /// found that one object and no link holds it.
    fn adopting(&self, target_id: &str) -> Option<&String> {
        let ix = self.adopting_users.get_or_init(|| {
            let mut ix = HashMap::new();
            for ((kind, source_id), m) in &self.input.facts.matches {
                if let (ObjectKind::User, Match::One { remote, .. }) = (kind, m) {
                    ix.insert(remote.id.clone(), source_id.clone());
                }
            }
            ix
        });
        ix.get(target_id)
    }

    /// Members to add and remove, from what the group has now (`current`). A
    /// member evaluated this cycle is in if it may be; one that was not (a partial
    /// evaluation that did not reach it) stays as it is.
    fn group_members(&mut self, e: &Evaluated, link: Option<&Link>, current: &BTreeSet<String>) {
        self.member_ok.settle();
        let desired: BTreeSet<&str> = e
            .members
            .iter()
            .map(String::as_str)
            .filter(|m| {
                self.member_ok.contains(crate::ids::key(m))
                    || (!self.evaluated.contains(*m) && current.contains(*m))
            })
            .collect();
        let add: Vec<String> = desired
            .iter()
            .filter(|m| !current.contains(**m))
            .map(|m| m.to_string())
            .collect();
        let remove: Vec<String> = current
            .iter()
            .filter(|m| {
                !desired.contains(m.as_str())
                    && !self.deleted_users.contains(m.as_str())
                    && !self.in_grace(m)
            })
            .cloned()
            .collect();
        // Members the target has that the state does not know of (or the other
        // way round): the record follows the target, nothing is sent.
        let empty = BTreeSet::new();
        let recorded = self.input.memberships.get(&*e.source_id).unwrap_or(&empty);
        for m in current {
            if desired.contains(m.as_str()) && !recorded.contains(m) {
                self.member_refresh
                    .push((e.source_id.to_string(), m.clone(), true));
            }
        }
        for m in recorded {
            if !current.contains(m) && !desired.contains(m.as_str()) {
                self.member_refresh
                    .push((e.source_id.to_string(), m.clone(), false));
            }
        }
        let target_id = link.map(|l| l.target_id.clone());
        for (op, members) in [(Op::AddMembers, add), (Op::RemoveMembers, remove)] {
            if members.is_empty() {
                continue;
            }
            let verb = if op == Op::AddMembers {
                "add"
            } else {
                "remove"
            };
            let mut a = action(
                e.kind,
                op,
                &e.source_id,
                &e.display,
                format!("{} member(s) to {verb}", members.len()),
            );
            a.target_id = target_id.clone();
            a.members = members.into();
            self.membership.push(a);
        }
    }

    /// Creates in doubt (an earlier create whose answer was lost) whose object is
    /// neither linked nor planned now: adopted as they are if the look-up found
    /// them (a leaver must not keep an account scimsync made and lost track of),
    /// let go if the target has nothing, kept in doubt if the look-up failed.
    fn in_doubt(&mut self) {
        let input = self.input;
        let mut doubts: Vec<(&(ObjectKind, String), &Attrs)> = input.in_doubt.iter().collect();
        doubts.sort_by(|a, b| a.0.cmp(b.0));
        for ((kind, id), attrs) in doubts {
            let linked = match kind {
                ObjectKind::User => input.user_links.contains_key(id),
                ObjectKind::Group => input.group_links.contains_key(id),
            };
            let planned = self
                .constructive
                .iter()
                .chain(&self.other)
                .filter(|a| matches!(a.op, Op::Create | Op::Adopt | Op::Fail))
                .any(|a| a.kind == *kind && &a.source_id == id);
            if linked || planned {
                continue;
            }
            let name = if *kind == ObjectKind::User {
                "userName"
            } else {
                "displayName"
            };
            let display = attrs.get(name).and_then(|v| v.as_str()).unwrap_or(id);
            let mut a = action(*kind, Op::Skip, id, display, "");
            a.attrs = attrs.clone();
            a.adopt_only = true;
            match input.facts.matches.get(&(*kind, id.clone())) {
                Some(Match::One { path, remote })
                    if self.linked_to(*kind, &remote.id).is_none() =>
                {
                    a.op = Op::Adopt;
                    a.target_id = Some(remote.id.clone());
                    a.active = Some(remote_active(remote));
                    a.reason = format!(
                        "a create whose answer was lost had made it (found by {path}); linked as it is"
                    ).into();
                    self.constructive.push(a);
                    continue;
                }
                Some(Match::None) | Some(Match::One { .. }) => {
                    a.reason = "the create in doubt made nothing: not in the target".into();
                }
                Some(Match::Many { path, count, .. }) => {
                    a.adopt_only = false;
                    a.revisit = true;
                    a.reason =
                        format!("a create in doubt: {count} objects match {path}; kept in doubt")
                            .into();
                }
                Some(Match::Failed(e)) => {
                    a.adopt_only = false;
                    a.revisit = true;
                    a.reason =
                        format!("a create in doubt could not be looked for: {}", e.message).into();
                }
                None => {
                    a.adopt_only = false;
                    a.revisit = true;
                    a.reason = "a create in doubt, not looked for this cycle".into();
                }
            }
            self.other.push(a);
        }
    }

    /// Creates whose name another linked object holds (`after`): created once that
    /// object gives the name up in this plan — deleted (the delete goes first),
    /// renamed (renames go before creates) or let go (then it is adopted) — else
    /// they fail with the conflict.
    fn settle(&mut self) {
        let input = self.input;
        let matching = |kind: ObjectKind| match kind {
            ObjectKind::User => input.user_matching,
            ObjectKind::Group => input.group_matching,
        };
        let renamed: HashSet<(ObjectKind, String)> = self
            .constructive
            .iter()
            .filter(|a| a.op == Op::Update)
            .filter(|a| a.changes.iter().any(|c| matching(a.kind).contains(&c.path)))
            .map(|a| (a.kind, a.source_id.clone()))
            .collect();
        let forgotten: HashSet<(ObjectKind, String)> = self
            .other
            .iter()
            .filter(|a| a.op == Op::Forget)
            .map(|a| (a.kind, a.source_id.clone()))
            .collect();
        let mut failed = vec![];
        for a in self.constructive.iter_mut() {
            let Some(other) = a.after().map(str::to_string) else {
                continue;
            };
            let key = (a.kind, other);
            if let Some(d) = self
                .destructive
                .iter_mut()
                .find(|d| d.op == Op::Delete && d.kind == key.0 && d.source_id == key.1)
            {
                d.frees_name = true;
                a.error = None;
                continue;
            }
            if renamed.contains(&key) {
                if let Some(r) = a.rare.as_mut() {
                    r.after = None;
                }
                a.error = None;
                continue;
            }
            if forgotten.contains(&key) {
                if let Some(Match::One { path, remote }) =
                    input.facts.matches.get(&(a.kind, a.source_id.clone()))
                {
                    let attrs = a.attrs.clone();
                    adoption(a, &attrs, path, remote, input.create_only);
                    continue;
                }
            }
            a.op = Op::Fail;
            a.step = LogAction::Create;
            if let Some(r) = a.rare.as_mut() {
                r.after = None;
            }
            if let Some(e) = &a.error {
                a.reason = e.message.clone().into();
            }
            failed.push(a.source_id.clone());
        }
        if failed.is_empty() {
            return;
        }
        self.move_failures();
    }

    /// Creates that turned into failures leave the constructive batch.
    fn move_failures(&mut self) {
        // In place: a million planned creates are not copied for a few twins.
        let fails = self.constructive.extract_if(.., |a| a.op == Op::Fail);
        self.other.extend(fails);
    }

    /// Two new objects wanting one matching value: the first by source id is
    /// created, the others fail before anything is sent (the target would refuse
    /// whichever came second, and which that is must not depend on timing).
    fn twins(&mut self) {
        let mut order: Vec<usize> = (0..self.constructive.len())
            .filter(|&i| matches!(self.constructive[i].op, Op::Create | Op::Adopt))
            .collect();
        order.sort_by(|&i, &j| {
            self.constructive[i]
                .source_id
                .cmp(&self.constructive[j].source_id)
        });
        let involved = self.sharing(&order);
        // The first of each value by index, the value by its key: only objects
        // that share a value with another can clash, and they are few.
        let mut taken: HashMap<u128, usize, crate::ids::Keyed> = HashMap::default();
        let mut twins: Vec<(usize, String)> = vec![];
        for i in involved.into_iter().map(|rank| order[rank as usize]) {
            let a = &self.constructive[i];
            let values = self.matching_values(a);
            let clash = values.iter().find_map(|(p, key, v)| {
                let first = &self.constructive[*taken.get(key)?].display;
                Some(format!(
                    "{p} {v:?} is also wanted by {first}, which comes first in this cycle"
                ))
            });
            match clash {
                Some(why) => twins.push((i, why)),
                None => {
                    for (_, key, _) in values {
                        taken.insert(key, i);
                    }
                }
            }
        }
        if twins.is_empty() {
            return;
        }
        for (i, why) in &twins {
            let a = &mut self.constructive[*i];
            a.op = Op::Fail;
            a.step = LogAction::Create;
            a.error = Some(Box::new(TargetError::new(
                ErrorClass::Conflict,
                None,
                why.clone(),
            )));
            a.reason = why.clone().into();
        }
        self.move_failures();
    }

    /// The objects (by rank in `order`) that may share a matching value with
    /// another: the values of all are sorted by the upper half of their key
    /// (`value_key`) beside their object's rank, not put in a map (at a million
    /// creates with two matching attributes the map was 138 MB, the list of whole
    /// keys 66, this one 33). Halves that are equal for different values only add
    /// candidates: `twins` compares whole keys.
    fn sharing(&self, order: &[usize]) -> BTreeSet<u32> {
        let actions = || order.iter().map(|&i| &self.constructive[i]);
        let count = actions().map(|a| self.matching_count(a)).sum();
        let mut keys: Vec<(u64, u32)> = Vec::with_capacity(count);
        for (rank, a) in actions().enumerate() {
            let rank = u32::try_from(rank).unwrap_or(u32::MAX);
            let half = |k: u128| (k >> 64) as u64;
            keys.extend(
                self.matching_values(a)
                    .iter()
                    .map(|(_, k, _)| (half(*k), rank)),
            );
        }
        keys.sort_unstable();
        keys.chunk_by(|x, y| x.0 == y.0)
            .filter(|run| run.len() > 1)
            .flat_map(|run| run.iter().map(|(_, rank)| *rank))
            .collect()
    }

    /// A new object's matching values: path, key (`value_key`) and value. An
    /// adoption takes the object it found, whatever its values.
    fn matching_values<'x>(&self, a: &'x Action) -> Vec<(&'a str, u128, &'x str)> {
        match (&a.op, &a.target_id) {
            (Op::Adopt, Some(id)) => vec![("id", value_key(a.kind, "id", id), id.as_str())],
            _ => self
                .matching_paths(a.kind)
                .iter()
                .filter_map(|p| {
                    let v = matching_value(a, p)?;
                    Some((p.as_str(), value_key(a.kind, p, &match_key(p, v)), v))
                })
                .collect(),
        }
    }

    /// How many matching values `matching_values` finds, without their keys.
    fn matching_count(&self, a: &Action) -> usize {
        match (&a.op, &a.target_id) {
            (Op::Adopt, Some(_)) => 1,
            _ => self
                .matching_paths(a.kind)
                .iter()
                .filter(|p| matching_value(a, p).is_some())
                .count(),
        }
    }

    fn matching_paths(&self, kind: ObjectKind) -> &'a [String] {
        match kind {
            ObjectKind::User => self.input.user_matching,
            ObjectKind::Group => self.input.group_matching,
        }
    }

    /// Entra's switches: user or group sync off drops those objects' actions; a
    /// target action (create, update, delete) switched off turns its actions into
    /// skips. A migration conflict keeps its object from being created twice.
    /// Objects waiting for their escrow retry sit the cycle out.
    fn switches(actions: &mut Vec<Action>, input: &PlanInput<'_>) {
        actions.retain(|a| {
            let synced = match a.kind {
                ObjectKind::User => input.sync_users,
                ObjectKind::Group => input.sync_groups,
            };
            synced && !input.not_due.contains(&(a.kind, a.source_id.clone()))
        });
        let switches = &input.actions;
        for a in actions.iter_mut() {
            let (allowed, name) = match a.op {
                Op::Create => (switches.create, "create"),
                Op::Adopt | Op::Update | Op::Enable | Op::AddMembers | Op::RemoveMembers => {
                    (switches.update, "update")
                }
                Op::Disable | Op::Delete => (switches.delete, "delete"),
                _ => (true, ""),
            };
            if !allowed {
                a.reason =
                    format!("{} ({name} is switched off in [target] actions)", a.reason).into();
                a.op = Op::Skip;
                a.changes.clear();
            } else if matches!(a.op, Op::Create | Op::Adopt)
                && !a.adopt_only
                && input.blocked.contains(&a.source_id)
            {
                a.op = Op::Skip;
                a.reason = "migration conflict: resolve it in migration.rhai and run `scimsync migrate apply` again".into();
                a.revisit = true;
                a.changes.clear();
            }
        }
        Self::members_of_skipped(actions);
    }

    /// Objects whose create or adoption is skipped or fails do not exist in the
    /// target this cycle: their memberships are not planned (a group's are skipped with it, a
    /// user is left out of the groups it would join).
    fn members_of_skipped(actions: &mut [Action]) {
        let skipped: HashSet<(ObjectKind, String)> = actions
            .iter()
            .filter(|a| matches!(a.op, Op::Skip | Op::Fail) && a.target_id.is_none())
            .map(|a| (a.kind, a.source_id.clone()))
            .collect();
        if skipped.is_empty() {
            return;
        }
        for a in actions.iter_mut() {
            if !matches!(a.op, Op::AddMembers | Op::RemoveMembers) {
                continue;
            }
            let before = a.members.len();
            a.members
                .retain(|m| !skipped.contains(&(ObjectKind::User, m.clone())));
            let group_skipped = skipped.contains(&(ObjectKind::Group, a.source_id.clone()));
            if group_skipped || a.members.len() < before {
                // Planned again next cycle, when they may exist.
                a.revisit = true;
            }
            if group_skipped || a.members.is_empty() {
                a.reason = format!(
                    "{} (the {} not in the target this cycle)",
                    a.reason,
                    if group_skipped {
                        "group is"
                    } else {
                        "members are"
                    }
                )
                .into();
                a.op = Op::Skip;
                a.members.clear();
            }
        }
    }

    fn finish(mut self) -> Plan {
        self.in_doubt();
        self.take_leavers_out();
        self.settle();
        self.twins();
        // Renames, enables and adoptions before creates: a name one object gives up
        // may be the name a new one takes.
        sort_stably(&mut self.constructive, |a, b| {
            (a.op == Op::Create).cmp(&(b.op == Op::Create))
        });
        let mut actions = self.constructive;
        actions.extend(self.membership);
        actions.extend(self.destructive);
        actions.extend(self.other);
        Self::switches(&mut actions, self.input);
        let mut plan = Plan {
            actions,
            refresh: self.refreshes,
            member_refresh: self.member_refresh,
            held: None,
        };
        plan.order();
        plan
    }
}

/// A new object's value at a matching path, when it has a non-empty one.
fn matching_value<'x>(a: &'x Action, path: &str) -> Option<&'x str> {
    a.attrs.get(path)?.as_str().filter(|v| !v.is_empty())
}

/// A matching value's key among the new objects of a plan: its kind, path and
/// comparison form (`match_key`), hashed to 128 bits (`ids::key`).
fn value_key(kind: ObjectKind, path: &str, key: &str) -> u128 {
    crate::ids::key(&format!("{}\0{path}\0{key}", kind.as_str()))
}

/// Turns disables of invited members into deletes (Dropbox deletes them anyway).
pub fn invited_disables_are_deletes(plan: &mut Plan, invited: &HashSet<String>) {
    for a in plan.actions.iter_mut() {
        if a.op == Op::Disable
            && a.target_id
                .as_ref()
                .map(|t| invited.contains(t))
                .unwrap_or(false)
        {
            a.op = Op::Delete;
            a.reason = format!("{}; the member is still invited and Dropbox deletes invited members instead of suspending them", a.reason).into();
        }
    }
    plan.order();
}

/// True when a path names the `active` attribute.
pub fn is_active_path(p: &str) -> bool {
    AttrPath::parse(p)
        .map(|a| a.attr.eq_ignore_ascii_case("active") && a.sub.is_none())
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scim::profile::DROPBOX;
    use serde_json::json;

    const ALL_ACTIONS: crate::config::Actions = crate::config::Actions {
        create: true,
        update: true,
        delete: true,
    };

    /// A plan holds an action per object: what few carry stays in `Rare`.
    #[test]
    fn an_action_stays_small() {
        let size = std::mem::size_of::<Action>();
        assert!(size <= 200, "an action is {size} bytes");
        let mut a = action(ObjectKind::User, Op::Disable, "u1", "u1@x.com", "why");
        assert_eq!((a.held_reason(), a.after(), a.grace()), (None, None, None));
        a.rare_mut().held_reason = Some("held".into());
        assert_eq!(a.held_reason(), Some("held"));
        assert_eq!(a.document()["held_reason"], "held");
    }

    fn user(id: &str, decision: Decision, attrs: Option<Attrs>) -> Evaluated {
        Evaluated {
            kind: ObjectKind::User,
            source_id: id.into(),
            display: format!("{id}@x.com").into(),
            decision,
            attrs,
            members: ThinVec::new(),
            spilled: None,
        }
    }

    fn attrs(name: &str, family: &str, active: bool) -> Attrs {
        let mut a = Attrs::new();
        a.insert("userName", json!(format!("{name}@x.com")));
        a.insert("name.familyName", json!(family));
        a.insert("active", json!(active));
        a
    }

    fn link(id: &str, a: Attrs, active: bool, reason: Option<&str>) -> Box<Link> {
        Box::new(Link {
            kind: ObjectKind::User,
            source_id: id.into(),
            target_id: format!("t-{id}"),
            display: id.into(),
            hash: hash_attrs(&a),
            attrs: a,
            active,
            disabled_reason: reason.map(str::to_string),
        })
    }

    fn run(
        ev: &[Evaluated],
        users: LinkMap,
        groups: LinkMap,
        mem: HashMap<String, BTreeSet<String>>,
        skip: bool,
    ) -> Plan {
        run_matching(ev, users, groups, mem, skip, &["userName".to_string()])
    }

    fn run_matching(
        ev: &[Evaluated],
        users: LinkMap,
        groups: LinkMap,
        mem: HashMap<String, BTreeSet<String>>,
        skip: bool,
        user_matching: &[String],
    ) -> Plan {
        plan(
            ev.to_vec().into(),
            &PlanInput {
                user_links: &users,
                group_links: &groups,
                memberships: &mem,
                profile: &DROPBOX,
                create_only: &[],
                skip_out_of_scope_deletions: skip,
                full: false,
                present: None,
                unreadable: &Unreadable::default(),
                user_matching,
                group_matching: &["displayName".to_string()],
                in_doubt: &HashMap::new(),
                facts: &Facts::default(),
                actions: ALL_ACTIONS,
                sync_users: true,
                sync_groups: true,
                blocked: &HashSet::new(),
                not_due: &HashSet::new(),
                grace: Default::default(),
            },
        )
    }

    fn ops(p: &Plan) -> Vec<(String, Op)> {
        p.actions
            .iter()
            .map(|a| (a.source_id.clone(), a.op))
            .collect()
    }

    /// A million creates for one reason hold it once.
    #[test]
    fn creates_for_one_reason_share_it() {
        let inscope = || Decision::InScope("assigned (role User)".into());
        let ev = [
            user("a", inscope(), Some(attrs("a", "A", true))),
            user("b", inscope(), Some(attrs("b", "B", true))),
            user(
                "c",
                Decision::InScope("via group".into()),
                Some(attrs("c", "C", true)),
            ),
        ];
        let p = run(&ev, HashMap::new(), HashMap::new(), HashMap::new(), false);
        let reasons: Vec<&Reason> = p.actions.iter().map(|a| &a.reason).collect();
        assert_eq!(&reasons[0][..], "in scope: assigned (role User)");
        assert!(Reason::ptr_eq(reasons[0], reasons[1]), "{reasons:?}");
        assert_eq!(&reasons[2][..], "in scope: via group");
    }

    #[test]
    fn lifecycle_cases() {
        let inscope = |r: &str| Decision::InScope(r.into());
        let mut links = HashMap::new();
        links.insert(
            "same".to_string(),
            link("same", attrs("same", "S", true), true, None),
        );
        links.insert(
            "renamed".to_string(),
            link("renamed", attrs("renamed", "Old", true), true, None),
        );
        links.insert(
            "unassigned".to_string(),
            link("unassigned", attrs("unassigned", "U", true), true, None),
        );
        links.insert(
            "gone".to_string(),
            link("gone", attrs("gone", "G", true), true, None),
        );
        links.insert(
            "disabled".to_string(),
            link("disabled", attrs("disabled", "D", true), true, None),
        );
        links.insert(
            "back".to_string(),
            link(
                "back",
                attrs("back", "B", false),
                false,
                Some("out_of_scope"),
            ),
        );
        links.insert(
            "left".to_string(),
            link(
                "left",
                attrs("left", "L", false),
                false,
                Some("out_of_scope"),
            ),
        );
        let ev = vec![
            user("new", inscope("assigned"), Some(attrs("new", "N", true))),
            user("same", inscope("assigned"), Some(attrs("same", "S", true))),
            user(
                "renamed",
                inscope("assigned"),
                Some(attrs("renamed", "New", true)),
            ),
            user(
                "unassigned",
                Decision::NotAssigned("not assigned".into()),
                None,
            ),
            user(
                "disabled",
                inscope("assigned"),
                Some(attrs("disabled", "D", false)),
            ),
            user("back", inscope("assigned"), Some(attrs("back", "B", true))),
            user(
                "nofamily",
                inscope("assigned"),
                Some({
                    let mut a = attrs("nofamily", "", true);
                    a.remove("name.familyName");
                    a
                }),
            ),
            user(
                "notemail",
                inscope("assigned"),
                Some({
                    let mut a = attrs("x", "X", true);
                    a.insert("userName", json!("dbmid:123"));
                    a
                }),
            ),
            user(
                "newdisabled",
                inscope("assigned"),
                Some(attrs("newdisabled", "ND", false)),
            ),
        ];
        let p = run(&ev, links, HashMap::new(), HashMap::new(), false);
        let o = ops(&p);
        assert!(o.contains(&("new".into(), Op::Create)));
        assert!(
            !o.iter().any(|(id, _)| id == "same"),
            "unchanged user must get no action: {o:?}"
        );
        assert!(o.contains(&("renamed".into(), Op::Update)));
        assert!(o.contains(&("unassigned".into(), Op::Disable)));
        assert!(o.contains(&("gone".into(), Op::Delete)));
        assert!(o.contains(&("disabled".into(), Op::Disable)));
        assert!(o.contains(&("back".into(), Op::Enable)));
        assert!(o.contains(&("left".into(), Op::Forget)));
        assert!(o.contains(&("nofamily".into(), Op::Skip)));
        assert!(o.contains(&("notemail".into(), Op::Skip)));
        assert!(o.contains(&("newdisabled".into(), Op::Skip)));
        let upd = p
            .actions
            .iter()
            .find(|a| a.source_id == "renamed")
            .map(|a| a.changes.clone())
            .unwrap_or_default();
        assert_eq!(
            upd,
            vec![PlannedChange {
                path: "name.familyName".into(),
                old: json!("Old"),
                new: json!("New")
            }]
        );
        // Destructive actions come after every constructive one.
        let first_destructive = p
            .actions
            .iter()
            .position(|a| a.op.is_destructive())
            .unwrap_or(0);
        assert!(p.actions[..first_destructive]
            .iter()
            .all(|a| !a.op.is_destructive()));
        assert!(p.actions[first_destructive..]
            .iter()
            .all(|a| a.op.is_destructive() || matches!(a.op, Op::Skip | Op::Fail | Op::Forget)));
        assert_eq!(p.destructive_count(), 3);
    }

    #[test]
    fn unreadable_and_unknown_keep_what_is_linked() {
        let mut links = HashMap::new();
        for id in ["broken", "gone", "unassigned"] {
            links.insert(id.to_string(), link(id, attrs(id, "F", true), true, None));
        }
        let ev = vec![
            user(
                "broken",
                Decision::Unreadable("missing \"userPrincipalName\"".into()),
                None,
            ),
            user(
                "unassigned",
                Decision::NotAssigned("not assigned".into()),
                None,
            ),
        ];
        let unknown = Unreadable {
            unnamed_users: true,
            assignments: true,
            ..Unreadable::default()
        };
        let p = plan(
            ev.into(),
            &PlanInput {
                user_links: &links,
                group_links: &HashMap::new(),
                memberships: &HashMap::new(),
                profile: &DROPBOX,
                create_only: &[],
                skip_out_of_scope_deletions: false,
                full: false,
                present: None,
                unreadable: &unknown,
                user_matching: &["userName".to_string()],
                group_matching: &["displayName".to_string()],
                in_doubt: &HashMap::new(),
                facts: &Facts::default(),
                actions: ALL_ACTIONS,
                sync_users: true,
                sync_groups: true,
                blocked: &HashSet::new(),
                not_due: &HashSet::new(),
                grace: Default::default(),
            },
        );
        assert_eq!(p.destructive_count(), 0, "{:?}", ops(&p));
        let fail = p.actions.iter().find(|a| a.source_id == "broken").unwrap();
        assert_eq!((fail.op, fail.step), (Op::Fail, LogAction::Import));
        for id in ["gone", "unassigned"] {
            let a = p.actions.iter().find(|a| a.source_id == id).unwrap();
            assert_eq!(a.op, Op::Skip, "{id}");
            assert!(a.revisit, "{id} is planned again next cycle");
        }
    }

    #[test]
    fn a_reused_name_is_freed_first_and_bad_values_never_block_a_disable() {
        let mut links = HashMap::new();
        links.insert(
            "old".to_string(),
            link("old", attrs("taken", "O", true), true, None),
        );
        links.insert(
            "leaver".to_string(),
            link("leaver", attrs("leaver", "L", true), true, None),
        );
        links.insert(
            "nosurname".to_string(),
            link("nosurname", attrs("nosurname", "N", true), true, None),
        );
        let mut bad = attrs("nosurname", "", false);
        bad.remove("name.familyName");
        let ev = vec![
            user(
                "new",
                Decision::InScope("x".into()),
                Some(attrs("taken", "N", true)),
            ),
            user("nosurname", Decision::InScope("x".into()), Some(bad)),
        ];
        // The look-up finds the name held by the linked object about to be deleted.
        let mut facts = Facts::default();
        facts.matches.insert(
            (ObjectKind::User, "new".into()),
            Match::One {
                path: "userName".into(),
                remote: Remote {
                    id: "t-old".into(),
                    resource: json!({"id": "t-old", "userName": "taken@x.com"}),
                },
            },
        );
        let p = plan(
            ev.into(),
            &PlanInput {
                user_links: &links,
                group_links: &HashMap::new(),
                memberships: &HashMap::new(),
                profile: &DROPBOX,
                create_only: &[],
                skip_out_of_scope_deletions: false,
                full: false,
                present: None,
                unreadable: &Unreadable::default(),
                user_matching: &["userName".to_string()],
                group_matching: &["displayName".to_string()],
                in_doubt: &HashMap::new(),
                facts: &facts,
                actions: ALL_ACTIONS,
                sync_users: true,
                sync_groups: true,
                blocked: &HashSet::new(),
                not_due: &HashSet::new(),
                grace: Default::default(),
            },
        );
        let order: Vec<(String, Op)> = ops(&p)
            .into_iter()
            .filter(|(_, o)| *o != Op::Skip)
            .collect();
        assert_eq!(
            order,
            vec![
                ("old".to_string(), Op::Delete),
                ("new".to_string(), Op::Create),
                ("nosurname".to_string(), Op::Disable),
                ("leaver".to_string(), Op::Delete),
            ]
        );
        let old = p.actions.iter().find(|a| a.source_id == "old").unwrap();
        assert!(old.frees_name);
        let leaver = p.actions.iter().find(|a| a.source_id == "leaver").unwrap();
        assert!(!leaver.frees_name);
        let skip = p
            .actions
            .iter()
            .find(|a| a.source_id == "nosurname" && a.op == Op::Skip)
            .unwrap();
        assert!(
            skip.reason.contains("name.familyName is missing"),
            "{}",
            skip.reason
        );
        let disable = p
            .actions
            .iter()
            .find(|a| a.source_id == "nosurname" && a.op == Op::Disable)
            .unwrap();
        assert_eq!(
            disable.attrs.get("name.familyName"),
            Some(&json!("N")),
            "the link keeps what was applied"
        );
    }

    #[test]
    fn twins_are_decided_by_source_id_not_by_timing() {
        let mut upper = attrs("same", "B", true);
        upper.insert("userName", json!("SAME@x.com"));
        let inscope = || Decision::InScope("x".into());
        let ev = vec![
            user("b", inscope(), Some(upper)),
            user("a", inscope(), Some(attrs("same", "A", true))),
            user("c", inscope(), Some(attrs("other", "C", true))),
        ];
        let p = run(&ev, HashMap::new(), HashMap::new(), HashMap::new(), false);
        let mut got = ops(&p);
        got.sort_by(|x, y| x.0.cmp(&y.0));
        assert_eq!(
            got,
            vec![
                ("a".to_string(), Op::Create),
                ("b".to_string(), Op::Fail),
                ("c".to_string(), Op::Create),
            ]
        );
        let b = p.actions.iter().find(|a| a.source_id == "b").unwrap();
        assert!(b.reason.contains("also wanted by"), "{}", b.reason);
        assert!(b.error.is_some(), "counted as the object's failure");
    }

    /// Only objects that share a value with another are judged one by one, and a
    /// twin takes none of its values: the object after it that wants only its
    /// other value is created.
    #[test]
    fn a_twin_takes_none_of_its_values() {
        let with = |name: &str, external: &str| {
            let mut a = attrs(name, "F", true);
            a.insert("externalId", json!(external));
            a
        };
        let inscope = || Decision::InScope("x".into());
        let ev = vec![
            user("c", inscope(), Some(with("c", "e2"))),
            user("b", inscope(), Some(with("same", "e2"))),
            user("a", inscope(), Some(with("same", "e1"))),
            user("d", inscope(), Some(with("d", "e4"))),
        ];
        let matching = ["userName".to_string(), "externalId".to_string()];
        let none = HashMap::new;
        let p = run_matching(&ev, none(), none(), HashMap::new(), false, &matching);
        let mut got = ops(&p);
        got.sort_by(|x, y| x.0.cmp(&y.0));
        let op = |id: &str, op| (id.to_string(), op);
        assert_eq!(
            got,
            vec![
                op("a", Op::Create),
                op("b", Op::Fail),
                op("c", Op::Create),
                op("d", Op::Create)
            ]
        );
        let b = p.actions.iter().find(|a| a.source_id == "b").unwrap();
        assert!(b.reason.contains("userName \"same@x.com\""), "{}", b.reason);
    }

    #[test]
    fn skip_out_of_scope_deletions_keeps_users() {
        let mut links = HashMap::new();
        links.insert(
            "u".to_string(),
            link("u", attrs("u", "U", true), true, None),
        );
        let ev = vec![user(
            "u",
            Decision::ScopedOut("user_in_scope returned false".into()),
            None,
        )];
        let p = run(&ev, links, HashMap::new(), HashMap::new(), true);
        assert_eq!(ops(&p), vec![("u".to_string(), Op::Skip)]);
        assert_eq!(p.destructive_count(), 0);
    }

    #[test]
    fn null_clears_and_memberships_diff() {
        let mut old = attrs("a", "A", true);
        old.insert("title", json!("Boss"));
        let mut new = attrs("a", "A", true);
        new.insert("title", Value::Null);
        let d = diff(&old, &new, &[]);
        assert_eq!(
            d,
            vec![PlannedChange {
                path: "title".into(),
                old: json!("Boss"),
                new: Value::Null
            }]
        );
        assert_eq!(d[0].to_change().new, None);

        let mut links = HashMap::new();
        links.insert(
            "a".to_string(),
            link("a", attrs("a", "A", true), true, None),
        );
        links.insert(
            "b".to_string(),
            link("b", attrs("b", "B", true), true, None),
        );
        let mut ga = Attrs::new();
        ga.insert("displayName", json!("Sales"));
        let mut glinks = HashMap::new();
        glinks.insert(
            "g".to_string(),
            Box::new(Link {
                kind: ObjectKind::Group,
                source_id: "g".into(),
                target_id: "tg".into(),
                display: "Sales".into(),
                hash: hash_attrs(&ga),
                attrs: ga.clone(),
                active: true,
                disabled_reason: None,
            }),
        );
        let mut mem = HashMap::new();
        mem.insert(
            "g".to_string(),
            ["b".to_string()].into_iter().collect::<BTreeSet<_>>(),
        );
        let ev = vec![
            user(
                "a",
                Decision::InScope("x".into()),
                Some(attrs("a", "A", true)),
            ),
            user(
                "b",
                Decision::InScope("x".into()),
                Some(attrs("b", "B", true)),
            ),
            Evaluated {
                kind: ObjectKind::Group,
                source_id: "g".into(),
                display: "Sales".into(),
                decision: Decision::InScope("x".into()),
                attrs: Some(ga),
                members: thin_vec::thin_vec!["a".into(), "zzz".into()],
                spilled: None,
            },
        ];
        let p = run(&ev, links, glinks, mem, false);
        let add = p
            .actions
            .iter()
            .find(|a| a.op == Op::AddMembers)
            .map(|a| a.members.clone());
        let rem = p
            .actions
            .iter()
            .find(|a| a.op == Op::RemoveMembers)
            .map(|a| a.members.clone());
        assert_eq!(add, Some(thin_vec::thin_vec!["a".to_string()]));
        assert_eq!(rem, Some(thin_vec::thin_vec!["b".to_string()]));
    }
}

#[cfg(test)]
mod order_tests {
    use super::{permute, sort_stably};

    /// The index sort keeps equal elements in their order, as a stable sort does.
    #[test]
    fn sorting_by_index_is_a_stable_sort() {
        let mut seed = 7u64;
        let mut v: Vec<(u8, usize)> = (0..500)
            .map(|i| {
                seed = seed
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                ((seed >> 60) as u8, i)
            })
            .collect();
        let mut want = v.clone();
        want.sort_by_key(|x| x.0);
        sort_stably(&mut v, |a, b| a.0.cmp(&b.0));
        assert_eq!(v, want);
        let mut w = vec!["c", "a", "d", "b"];
        permute(&mut w, vec![1, 3, 0, 2]);
        assert_eq!(w, ["a", "b", "c", "d"]);
    }
}
