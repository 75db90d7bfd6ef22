//! Helpers for the integration tests, by kind: `emulators` (the loopback peers as
//! child processes), `workspace` (a config folder and runs of the binary),
//! `directories` (documents to start from and what they must provision), `checks`
//! (assertions about the team), `smtp` (a loopback mail server), `http` (the tests' own requests).

mod checks;
mod directories;
mod emulators;
mod http;
mod smtp;
mod workspace;

pub use checks::*;
pub use directories::*;
pub use emulators::*;
pub use http::*;
pub use smtp::*;
pub use workspace::*;

pub const BIN: &str = env!("CARGO_BIN_EXE_scimsync");

/// A test's third-party peer (scim2-server, scim2-tester, Chromium) is missing: on
/// a developer's machine the test skips, saying so; with `CI` set (as `.ci/run`
/// runs in CI) it fails, so a green CI run proves the peers ran.
#[track_caller]
pub fn peer_missing(what: &str) {
    let ci = std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "0" && v != "false");
    if ci {
        panic!("{what} is missing and CI is set: .ci/run installs it; see its log");
    }
    println!("SKIPPED: {what} is missing (.ci/run installs it when CI is set)");
}

/// Waits up to `secs` seconds for `f` to hold, looking every 50 ms (a daemon's
/// cycle, a reload); a timeout fails the test naming what it waited for.
#[track_caller]
pub fn wait_for(what: &str, secs: u64, mut f: impl FnMut() -> bool) {
    let t = std::time::Instant::now();
    while t.elapsed() < std::time::Duration::from_secs(secs) {
        if f() {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    panic!("timed out waiting for {what}");
}
