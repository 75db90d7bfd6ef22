//! scimsync: a self-hosted provisioning runtime.
//!
//! It reads users, groups and app-role assignments from a directory (Microsoft Entra
//! ID through Graph, or a Graph-shaped JSON file), decides with rhai scripts who is
//! in scope and what each account must look like, and provisions them to Dropbox for
//! Business or any SCIM 2.0 app, remembering everything in one SQLite file.
//!
//! One way through: `source` → `gather` (target reads) → `plan` (pure) → `gate` →
//! `apply` → `target`, with `state` beside it. See DESIGN.md and the README.

#[global_allocator]
static ALLOCATOR: alloc::Counting = alloc::Counting;

pub mod alloc;
pub mod apply;
pub mod attribute;
pub mod authorize;
pub mod cli;
pub mod clock;
pub mod config;
pub mod credential;
pub mod cycle;
pub mod daemon;
pub mod demo;
pub mod emulator;
pub mod endpoint;
pub mod error;
pub mod filter;
pub mod gate;
pub mod gather;
pub mod ids;
pub mod migrate;
pub mod model;
pub mod notify;
pub mod plan;
pub mod private;
pub mod report;
pub mod review;
pub mod script;
pub mod snapshot;
pub mod source;
pub mod state;
pub mod target;
