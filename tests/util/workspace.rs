//! A workspace folder (scimsync.toml, scripts/, directory.json) and runs of the
//! real binary in it.

use super::{Emulator, BIN};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The output of one run of the binary.
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    #[track_caller]
    pub fn ok(&self) -> &Self {
        assert_eq!(
            self.code, 0,
            "exit {}\nstdout:\n{}\nstderr:\n{}",
            self.code, self.stdout, self.stderr
        );
        self
    }
}

/// A folder with scimsync.toml, scripts/ and directory.json.
pub struct Workspace {
    pub dir: PathBuf,
    token: String,
    pub env: Vec<(String, String)>,
}

static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

impl Workspace {
    /// A workspace with the repository's default scripts, targeting `emu`.
    pub fn new(emu: &Emulator, directory: &Value) -> Workspace {
        Self::with_target(directory, "dropbox", &emu.scim, &emu.token, "")
    }

    /// A workspace whose target is any SCIM base URL (`extra` goes into [target]).
    pub fn with_target(
        directory: &Value,
        kind: &str,
        url: &str,
        token: &str,
        extra: &str,
    ) -> Workspace {
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let dir = std::env::temp_dir().join(format!("scimsync-it-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("scripts")).unwrap();
        let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
        for f in ["mapping.rhai", "scoping.rhai"] {
            std::fs::copy(repo.join("scripts").join(f), dir.join("scripts").join(f)).unwrap();
        }
        let ws = Workspace {
            dir,
            token: token.to_string(),
            env: vec![],
        };
        ws.write_directory(directory);
        ws.write(
            "scimsync.toml",
            &format!(
                "state = \"state.db\"\nscripts = \"scripts\"\n\n[source]\ntype = \"file\"\npath = \"directory.json\"\nscope = \"assigned\"\n\n[target]\ntype = \"{kind}\"\nurl = \"{url}\"\ntoken = \"env:SCIMSYNC_TEST_TOKEN\"\ntimeout = \"10s\"\n{extra}\n[safety]\ndeletion_threshold = 500\n"
            ),
        );
        ws
    }

    /// Adds `lines` to a `[section]` of the config (appended as a new table when
    /// there is none yet).
    pub fn add_config(&self, section: &str, lines: &str) {
        let cfg = self.dir.join("scimsync.toml");
        let text = std::fs::read_to_string(&cfg).unwrap();
        let header = format!("[{section}]\n");
        let text = match text.contains(&header) {
            true => text.replace(&header, &format!("{header}{lines}\n")),
            false => format!("{text}\n{header}{lines}\n"),
        };
        std::fs::write(&cfg, text).unwrap();
    }

    /// Leavers are removed at once (`[deprovision] remove_after = "0s"`), as before
    /// the grace period: for tests about what a removal sets off.
    pub fn remove_at_once(&self) {
        self.add_config("deprovision", "remove_after = \"0s\"");
    }

    pub fn write(&self, name: &str, text: &str) {
        std::fs::write(self.dir.join(name), text).unwrap();
    }

    pub fn write_directory(&self, doc: &Value) {
        self.write(
            "directory.json",
            &serde_json::to_string_pretty(doc).unwrap(),
        );
    }

    /// The binary on this workspace's config, with its token and environment
    /// (`RUST_LOG=warn` unless the caller sets it again), not started yet.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(BIN);
        c.args(["-c", self.dir.join("scimsync.toml").to_str().unwrap()])
            .args(args)
            .env("RUST_LOG", "warn")
            .env("SCIMSYNC_TEST_TOKEN", &self.token)
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        c
    }

    pub fn run(&self, args: &[&str]) -> Run {
        let out = self.command(args).output().expect("run scimsync");
        Run {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    pub fn sync(&self) -> Run {
        self.run(&["sync"])
    }
}

impl Drop for Workspace {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
