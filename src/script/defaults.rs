//! The scripts scimsync ships: what `init` and the demo write, and what `migrate`
//! uses when the scripts folder has no `migration.rhai`. The files live in the
//! repository's `scripts/` folder, where they are read and tested as scripts.

/// Entra's Dropbox attribute mapping.
pub const MAPPING: &str = include_str!("../../scripts/mapping.rhai");
/// Scope: everyone assigned, no Default Access.
pub const SCOPING: &str = include_str!("../../scripts/scoping.rhai");
/// How legacy Dropbox members and groups are matched during `migrate`.
pub const MIGRATION: &str = include_str!("../../scripts/migration.rhai");
