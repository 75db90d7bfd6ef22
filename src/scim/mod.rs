//! The SCIM 2.0 vocabulary (RFC 7643, RFC 7644) every layer speaks: attribute
//! paths, filters, PATCH operations and the schema URNs. It sits below the
//! pipeline — the directory mapping, the target client and the emulators all use
//! it — and knows nothing of any of them. See ARCHITECTURE.md.

pub mod attribute;
pub mod attrs;
pub mod filter;
pub mod patch;
pub mod profile;

pub const USER_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
pub const GROUP_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:Group";
pub const PATCH_SCHEMA: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";
pub const LIST_SCHEMA: &str = "urn:ietf:params:scim:api:messages:2.0:ListResponse";
pub const ERROR_SCHEMA: &str = "urn:ietf:params:scim:api:messages:2.0:Error";
pub const BULK_REQUEST: &str = "urn:ietf:params:scim:api:messages:2.0:BulkRequest";
/// Where the Dropbox emulator tells a member's status (invited, active, suspended).
pub const DROPBOX_STATUS_SCHEMA: &str =
    "urn:scimsync:params:scim:schemas:extension:dropbox:2.0:User";
