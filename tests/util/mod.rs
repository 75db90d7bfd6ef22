//! Helpers for the integration tests, by kind: `emulators` (the loopback peers as
//! child processes), `workspace` (a config folder and runs of the binary),
//! `directories` (documents to start from and what they must provision), `checks`
//! (assertions about the team), `smtp` (a loopback mail server).

mod checks;
mod directories;
mod emulators;
mod smtp;
mod workspace;

pub use checks::*;
pub use directories::*;
pub use emulators::*;
pub use smtp::*;
pub use workspace::*;

pub const BIN: &str = env!("CARGO_BIN_EXE_scimsync");
