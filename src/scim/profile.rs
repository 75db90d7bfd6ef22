//! Target profiles: the differences between SCIM servers as data, in one place.
//!
//! Real SCIM targets disagree on small things (boolean vs string `active`, op casing,
//! how members are removed, how many members one PATCH may carry, what a repeated
//! DELETE answers). Each target type is a profile; adding one is a few lines here,
//! not `if`s through the client.

/// How a member is removed from a group in a PATCH.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MemberRemoval {
    /// `{"op":"remove","path":"members[value eq \"id\"]"}` (RFC 7644 §3.5.2.2)
    FilterPath,
    /// `{"op":"remove","path":"members","value":[{"value":"id"}]}` (Entra's form)
    ValueList,
}

#[derive(Debug, Clone)]
pub struct Profile {
    pub name: &'static str,
    /// Send `"active": "False"` (Entra's default) instead of a real boolean.
    pub active_as_string: bool,
    /// Send `Add`/`Replace`/`Remove` instead of lower-case ops.
    pub capitalized_ops: bool,
    pub member_removal: MemberRemoval,
    /// Most members one PATCH may add or remove.
    pub max_members_per_patch: usize,
    /// Attributes the target rejects objects without (checked before sending).
    pub required_user_attrs: &'static [&'static str],
    /// `userName` must look like an email address (Dropbox answers 500 otherwise).
    pub user_name_is_email: bool,
    /// Suspending an invited member deletes it (Dropbox).
    pub suspending_invited_deletes: bool,
    /// Statuses a DELETE may answer for an object that is already gone.
    pub delete_gone_statuses: &'static [u16],
    /// Ask for groups without their members when looking them up.
    pub groups_exclude_members: bool,
    /// An unassigned or scoped-out user is removed, not disabled (what the legacy
    /// Dropbox integration did).
    pub unassigned_removes: bool,
    /// `userName eq` filters compare case-sensitively (AWS): matching also tries the
    /// lower-cased value.
    pub user_name_case_exact: bool,
}

/// Dropbox for Business SCIM 2.0 (`https://www.dropbox.com/scim/v2`).
pub const DROPBOX: Profile = Profile {
    name: "dropbox",
    active_as_string: false,
    capitalized_ops: false,
    member_removal: MemberRemoval::FilterPath,
    max_members_per_patch: 100,
    required_user_attrs: &["userName", "name.familyName"],
    user_name_is_email: true,
    suspending_invited_deletes: true,
    delete_gone_statuses: &[404],
    groups_exclude_members: true,
    unassigned_removes: false,
    user_name_case_exact: false,
};

/// The legacy Dropbox Business API v2 (`dropbox-legacy`).
pub const DROPBOX_LEGACY: Profile = Profile {
    name: "dropbox-legacy",
    active_as_string: false,
    capitalized_ops: false,
    member_removal: MemberRemoval::ValueList,
    max_members_per_patch: 100,
    required_user_attrs: &["userName"],
    user_name_is_email: true,
    suspending_invited_deletes: true,
    delete_gone_statuses: &[],
    groups_exclude_members: true,
    unassigned_removes: true,
    user_name_case_exact: false,
};

/// A generic RFC 7643/7644 server.
pub const SCIM: Profile = Profile {
    name: "scim",
    active_as_string: false,
    capitalized_ops: false,
    member_removal: MemberRemoval::FilterPath,
    max_members_per_patch: 500,
    required_user_attrs: &["userName"],
    user_name_is_email: false,
    suspending_invited_deletes: false,
    delete_gone_statuses: &[404],
    groups_exclude_members: true,
    unassigned_removes: false,
    user_name_case_exact: false,
};

/// AWS IAM Identity Center: at most 100 members per PATCH; `userName` is
/// case-sensitive there, so matching falls back on `externalId` as usual.
pub const AWS: Profile = Profile {
    name: "aws",
    max_members_per_patch: 100,
    required_user_attrs: &["userName", "name.familyName", "name.givenName"],
    user_name_case_exact: true,
    ..SCIM
};

/// The email pattern Dropbox's SCIM shim validates `userName` with.
pub const DROPBOX_EMAIL_PATTERN: &str =
    r"^['&A-Za-z0-9._%+-]+@[A-Za-z0-9-][A-Za-z0-9.-]*\.[A-Za-z]{2,15}$";

impl Profile {
    pub fn op(&self, op: &str) -> String {
        if self.capitalized_ops {
            let mut c = op.chars();
            match c.next() {
                Some(f) => f.to_uppercase().collect::<String>() + c.as_str(),
                None => String::new(),
            }
        } else {
            op.to_string()
        }
    }

    pub fn active_value(&self, v: bool) -> serde_json::Value {
        if self.active_as_string {
            serde_json::Value::String(if v { "True" } else { "False" }.into())
        } else {
            serde_json::Value::Bool(v)
        }
    }
}

/// Profile names a config may choose with `[target] profile`.
pub const NAMES: [&str; 4] = ["dropbox", "scim", "aws", "dropbox-legacy"];

/// A profile by name.
pub fn by_name(name: &str) -> Option<Profile> {
    match name {
        "dropbox" => Some(DROPBOX),
        "scim" => Some(SCIM),
        "aws" => Some(AWS),
        "dropbox-legacy" => Some(DROPBOX_LEGACY),
        _ => None,
    }
}
