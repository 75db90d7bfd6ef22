//! Typed errors of the library and the exit codes they map to.
//!
//! The exit code is part of the contract (README "Commands"): 2 for anything the user can fix
//! in a config, a script or a directory file, 1 for runtime failures. Keeping the
//! classification on the error type means `main` never has to guess.

use std::path::PathBuf;

/// Exit codes of the `scimsync` binary.
pub mod exit {
    pub const OK: i32 = 0;
    pub const RUNTIME: i32 = 1;
    pub const USAGE: i32 = 2;
    pub const PARTIAL: i32 = 3;
    pub const HELD: i32 = 4;
}

/// A problem with something the user wrote: config, script or input file.
#[derive(Debug, thiserror::Error)]
pub enum InputError {
    #[error("{file}: {message}")]
    Config { file: PathBuf, message: String },
    #[error("{file}:{line}: {message}")]
    Script {
        file: PathBuf,
        line: usize,
        message: String,
    },
    #[error("{file}: {message}")]
    Directory { file: PathBuf, message: String },
    #[error("{0}")]
    Usage(String),
}

/// The top-level error type; `exit_code` tells `main` what to return.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Input(#[from] InputError),
    #[error("state {path}: {message}")]
    State { path: PathBuf, message: String },
    #[error("target: {0}")]
    Target(#[from] crate::http::TargetError),
    /// A file scimsync writes (or a folder it creates) could not be written.
    #[error("{path}: {source}")]
    File {
        path: PathBuf,
        source: std::io::Error,
    },
    /// A read from a service failed; `what` says which read and why it was needed.
    #[error("{what}: {source}")]
    Read {
        what: String,
        source: crate::http::TargetError,
    },
    /// JSON scimsync writes (or a document it parses) failed to encode or decode.
    #[error("JSON: {0}")]
    Json(#[from] serde_json::Error),
    /// Something the operating system refused: a signal handler, randomness.
    #[error("{what}: {source}")]
    System {
        what: &'static str,
        source: std::io::Error,
    },
    /// A folder cannot be watched for changes.
    #[error("cannot watch {path}: {source}")]
    Watch {
        path: PathBuf,
        source: notify::Error,
    },
    /// The state file cannot be locked.
    #[error("{path}: cannot lock: {source}")]
    Lock {
        path: PathBuf,
        source: std::io::Error,
    },
    /// Another scimsync holds the state.
    #[error("another scimsync (pid {pid}) {doing}; wait for it or stop it")]
    Busy { pid: String, doing: String },
    /// The demo's emulators could not start (a port, the sample directory).
    #[cfg(feature = "emulators")]
    #[error("the built-in emulators: {0}")]
    Emulator(String),
    /// The state database failed (disk full, I/O error, corruption).
    #[error("state database: {0}")]
    Database(#[from] rusqlite::Error),
    /// The scratch file a large cycle puts new users' attributes in failed (a
    /// full temporary folder).
    #[error("the attributes put aside for this cycle's creates: {0}")]
    Spill(String),
    /// A service answered, but not with anything scimsync can use: a read that
    /// broke off or came back malformed, a token answer without the token. The
    /// message names the service and the request.
    #[error("{message}")]
    Answer {
        service: &'static str,
        message: String,
    },
}

impl Error {
    /// A file or folder at `path` could not be written.
    pub fn file(path: &std::path::Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
        move |source| Error::File {
            path: path.to_path_buf(),
            source,
        }
    }

    /// `service` answered with something scimsync cannot use.
    pub fn answer(service: &'static str, message: impl Into<String>) -> Error {
        Error::Answer {
            service,
            message: message.into(),
        }
    }

    /// A read of `what` failed.
    pub fn read(what: impl Into<String>) -> impl FnOnce(crate::http::TargetError) -> Error {
        let what = what.into();
        move |source| Error::Read { what, source }
    }

    pub fn exit_code(&self) -> i32 {
        match self {
            Error::Input(_) => exit::USAGE,
            // A state file that is not ours or is too new is the user's to fix.
            Error::State { .. } => exit::USAGE,
            Error::Target(e) if e.is_auth() => exit::USAGE,
            _ => exit::RUNTIME,
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
