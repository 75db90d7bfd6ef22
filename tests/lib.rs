//! Integration tests: the real `scimsync` binary against loopback emulators.
//!
//! One crate with a table of contents (ripgrep's `tests/tests.rs`): `util` runs the
//! binary and the emulator; each other module is one area of behaviour.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod util;

mod backbone;
mod config_errors;
mod convergence;
mod credentials;
mod fuzz;
mod graph;
mod interop;
mod layers;
mod leavers;
mod migration;
mod operations;
mod operator;
mod performance;
mod planning;
mod reliability;
mod safety;
mod scripting;
mod security;
mod simulation;
mod takeover;
