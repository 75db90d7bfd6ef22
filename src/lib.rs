//! scimsync: a self-hosted provisioning runtime.
//!
//! It reads users, groups and app-role assignments from a directory (Microsoft Entra
//! ID through Graph, or a Graph-shaped JSON file), decides with rhai scripts who is
//! in scope and what each account must look like, and provisions them to Dropbox for
//! Business or any SCIM 2.0 app, remembering everything in one SQLite file.
//!
//! One way through: `source` → `evaluate` → `gather` (target reads) → `plan` (pure)
//! → `gate` → `apply` → `target`, with `state` beside it. ARCHITECTURE.md is the
//! map: the layers, what each module owns and the invariants; the README is the
//! contract users see.

#[global_allocator]
static ALLOCATOR: alloc::Counting = alloc::Counting;

pub mod alloc;
pub mod apply;
pub mod authorize;
pub mod cli;
pub mod clock;
pub mod config;
pub mod cycle;
pub mod daemon;
#[cfg(feature = "emulators")]
pub mod demo;
#[cfg(feature = "emulators")]
pub mod emulator;
pub mod endpoint;
pub mod error;
pub mod evaluate;
pub mod gate;
pub mod gather;
pub mod health;
pub mod http;
pub mod ids;
pub mod migrate;
pub mod model;
pub mod monitoring;
pub mod notify;
pub mod plan;
pub mod private;
pub mod report;
pub mod review;
pub mod scim;
pub mod script;
pub mod snapshot;
pub mod source;
pub mod state;
pub mod takeover;
pub mod targets;
