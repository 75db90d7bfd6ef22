//! `scimsync.toml`: raw serde structs, then a validated `Settings`.
//!
//! Two stages (as ripgrep's LowArgs → HiArgs): serde reads what the file says and
//! rejects unknown keys; `Settings::from_raw` checks the combinations, resolves
//! relative paths against the config file's folder and resolves secrets, so nothing
//! downstream can hold an invalid configuration. Every message names the file and key.

use crate::error::InputError;
pub use crate::http::credential::Secret;
use crate::http::credential::{Credential, OAuth, SecretRef};
use serde::Deserialize;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Default deletion threshold: the figure shown in Microsoft's own screenshot.
pub const DEFAULT_DELETION_THRESHOLD: usize = 500;
/// Default shrink guard: a fifth of what is provisioned leaving at once is held.
pub const DEFAULT_SHRINK_THRESHOLD_PERCENT: u32 = 20;

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    state: Option<String>,
    scripts: Option<String>,
    interval: Option<String>,
    log_retention: Option<String>,
    source: Option<RawSource>,
    target: Option<RawTarget>,
    legacy: Option<RawLegacy>,
    #[serde(default)]
    safety: RawSafety,
    #[serde(default)]
    notify: RawNotify,
    #[serde(default)]
    serve: RawServe,
    #[serde(default)]
    sync: RawSync,
    #[serde(default)]
    deprovision: RawDeprovision,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawDeprovision {
    remove_after: Option<String>,
    files: Option<String>,
    transfer_to: Option<String>,
    wipe_devices: Option<bool>,
    retain_team_shares: Option<bool>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawSource {
    #[serde(rename = "type")]
    kind: Option<String>,
    path: Option<String>,
    scope: Option<String>,
    tenant: Option<String>,
    client_id: Option<String>,
    client_secret: Option<String>,
    app: Option<String>,
    graph_url: Option<String>,
    login_url: Option<String>,
    nested_groups: Option<String>,
    attributes: Option<Vec<String>>,
    max_pages: Option<i64>,
    max_read_bytes: Option<toml::Value>,
    client_certificate: Option<String>,
    client_assertion: Option<String>,
    cloud: Option<String>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawTarget {
    #[serde(rename = "type")]
    kind: Option<String>,
    url: Option<String>,
    api_url: Option<String>,
    token: Option<String>,
    app_key: Option<String>,
    app_secret: Option<String>,
    refresh_token: Option<String>,
    token_url: Option<String>,
    authorize_url: Option<String>,
    scopes: Option<Vec<String>>,
    allow_insecure_http: Option<bool>,
    timeout: Option<String>,
    max_in_flight: Option<i64>,
    actions: Option<Vec<String>>,
    profile: Option<String>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawLegacy {
    api_url: Option<String>,
    token: Option<String>,
    app_key: Option<String>,
    app_secret: Option<String>,
    refresh_token: Option<String>,
    token_url: Option<String>,
    authorize_url: Option<String>,
    scopes: Option<Vec<String>>,
}

/// The keys that say how a Dropbox-facing table authenticates.
struct RawAuth<'a> {
    table: &'static str,
    token: &'a Option<String>,
    app_key: &'a Option<String>,
    app_secret: &'a Option<String>,
    refresh_token: &'a Option<String>,
    token_url: &'a Option<String>,
    authorize_url: &'a Option<String>,
    scopes: &'a Option<Vec<String>>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawSafety {
    deletion_threshold: Option<i64>,
    deletion_threshold_percent: Option<i64>,
    shrink_threshold_percent: Option<i64>,
    skip_out_of_scope_deletions: Option<bool>,
    escrow_backoff: Option<String>,
    escrow_max: Option<String>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawSync {
    users: Option<bool>,
    groups: Option<bool>,
    enabled: Option<bool>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawNotify {
    command: Option<String>,
    webhook: Option<String>,
    email: Option<Vec<String>>,
    smtp: Option<String>,
    smtp_user: Option<String>,
    smtp_password: Option<String>,
    from: Option<String>,
    repeat: Option<String>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawServe {
    listen: Option<String>,
}

/// Which directory objects are candidates for provisioning.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// Assigned users, assigned groups and the direct members of assigned groups.
    Assigned,
    /// Every user and group of the directory.
    All,
}

#[derive(Debug, Clone)]
pub enum SourceSettings {
    File {
        path: PathBuf,
        scope: Scope,
    },
    Graph {
        tenant: String,
        client_id: String,
        credential: GraphCredential,
        app: String,
        scope: Scope,
        graph_url: String,
        login_url: String,
        flatten_nested_groups: bool,
        /// Extra user attributes to read (`$select`) beyond the default set.
        attributes: Vec<String>,
        limits: ReadLimits,
    },
}

/// How scimsync proves itself to Entra ID.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GraphCredential {
    /// A client secret (`client_secret`).
    Secret(SecretRef),
    /// A certificate's private key signs a client assertion (`client_certificate`:
    /// a PEM holding the key and the certificate).
    Certificate(PathBuf),
    /// A federated token (workload identity), read afresh at every token request
    /// (`client_assertion`).
    Assertion(SecretRef),
}

impl GraphCredential {
    /// The secret files behind it (watched by the daemon).
    pub fn files(&self) -> Vec<PathBuf> {
        match self {
            GraphCredential::Secret(r) | GraphCredential::Assertion(r) => {
                r.file().map(Path::to_path_buf).into_iter().collect()
            }
            GraphCredential::Certificate(p) => vec![p.clone()],
        }
    }
}

/// Bounds on one read of the directory: a service that pages forever (or answers
/// without end) stops the cycle with a clear error instead of filling memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReadLimits {
    /// Most pages one collection (users, a group's members, a delta round) may take.
    pub max_pages: usize,
    /// Most bytes of answers one read may take, all collections together.
    pub max_bytes: u64,
}

impl Default for ReadLimits {
    fn default() -> Self {
        ReadLimits {
            max_pages: 20_000,
            max_bytes: 2 << 30,
        }
    }
}

impl SourceSettings {
    pub fn scope(&self) -> Scope {
        match self {
            SourceSettings::File { scope, .. } | SourceSettings::Graph { scope, .. } => *scope,
        }
    }
}

/// The kind of target; the profile (quirks) follows from it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TargetKind {
    Dropbox,
    Scim,
    DropboxLegacy,
}

impl TargetKind {
    pub fn name(self) -> &'static str {
        match self {
            TargetKind::Dropbox => "dropbox",
            TargetKind::Scim => "scim",
            TargetKind::DropboxLegacy => "dropbox-legacy",
        }
    }
}

#[derive(Debug, Clone)]
pub struct TargetSettings {
    pub kind: TargetKind,
    /// SCIM base URL (or the Business API base for `dropbox-legacy`).
    pub url: String,
    pub credential: Credential,
    pub timeout: Duration,
    /// Which of create / update / delete (disable included) may run.
    pub actions: Actions,
    /// A target profile other than the type's own (e.g. "aws").
    pub profile: Option<String>,
    /// Requests carried at once by the pool of blocking workers (1 = one at a time).
    pub max_in_flight: usize,
    /// `[deprovision]`: when a leaver is removed and what becomes of their files
    /// (the Business API's `members/remove` arguments).
    pub deprovision: Deprovision,
}

/// Default `[target] max_in_flight`.
pub const MAX_IN_FLIGHT: usize = 4;

#[derive(Debug, Clone)]
pub struct LegacySettings {
    pub api_url: String,
    pub credential: Credential,
}

#[derive(Debug, Clone)]
pub struct Safety {
    pub deletion_threshold: usize,
    /// Hold destructive actions above this share of the provisioned objects, as
    /// the threshold's percentage form (0 = off).
    pub deletion_threshold_percent: u32,
    /// Hold destructive actions when more than this share of the provisioned
    /// objects would leave in one cycle (0 = off).
    pub shrink_threshold_percent: u32,
    pub skip_out_of_scope_deletions: bool,
    /// First retry delay of an escrowed object; doubles per attempt up to `escrow_max`.
    pub escrow_backoff: Duration,
    pub escrow_max: Duration,
}

/// Entra's switches: which object types flow, and provisioning on/off.
#[derive(Debug, Clone)]
pub struct SyncSwitches {
    pub users: bool,
    pub groups: bool,
    pub enabled: bool,
}

/// Entra's target object actions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Actions {
    pub create: bool,
    pub update: bool,
    pub delete: bool,
}

/// `[notify]`: where events go, and how often an unchanged one is repeated.
#[derive(Debug, Clone)]
pub struct Notify {
    pub command: Option<String>,
    pub webhook: Option<String>,
    pub email: Option<Email>,
    /// An unchanged failure or hold is sent again after this long (default 24h).
    pub repeat: Duration,
}

impl Default for Notify {
    fn default() -> Self {
        Notify {
            command: None,
            webhook: None,
            email: None,
            repeat: Duration::from_secs(24 * 3600),
        }
    }
}

/// `[notify] email`: built-in SMTP delivery.
#[derive(Debug, Clone)]
pub struct Email {
    pub to: Vec<String>,
    pub from: String,
    pub server: SmtpServer,
    /// `smtp_user` and `smtp_password` (resolved when a message is sent).
    pub login: Option<(String, SecretRef)>,
}

/// How the SMTP server is reached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SmtpServer {
    pub host: String,
    pub port: u16,
    pub security: SmtpSecurity,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SmtpSecurity {
    /// `smtp://`: no TLS, loopback only (a local relay).
    Plain,
    /// `smtp+starttls://`: upgraded to TLS before anything is sent (port 587).
    StartTls,
    /// `smtps://`: TLS from the start (port 465).
    Tls,
}

/// `[serve]`: the daemon's HTTP endpoint for monitoring.
#[derive(Debug, Clone, Default)]
pub struct Serve {
    pub listen: Option<std::net::SocketAddr>,
}

/// What becomes of a leaver's files when the Business API removes the member
/// (`[deprovision] files`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeaverFiles {
    /// Moved to `transfer_to` (also the transfer admin); the account is removed.
    Transfer,
    /// The account is kept as a Basic account with its files.
    KeepAccount,
    /// Left on the removed account (recoverable for 7 days, then
    /// `members/move_former_member_files`).
    Leave,
}

/// `[deprovision]`: what happens to a leaver, and when.
#[derive(Debug, Clone, PartialEq)]
pub struct Deprovision {
    /// A leaver is suspended first and removed only if still gone after this;
    /// `None` ("0s") removes at once.
    pub remove_after: Option<Duration>,
    pub files: LeaverFiles,
    /// The team admin who receives the files (with `Transfer`).
    pub transfer_to: Option<String>,
    pub wipe_devices: bool,
    pub retain_team_shares: bool,
}

impl Default for Deprovision {
    fn default() -> Self {
        Deprovision {
            remove_after: Some(Duration::from_secs(30 * 86_400)),
            files: LeaverFiles::Transfer,
            transfer_to: None,
            wipe_devices: false,
            retain_team_shares: false,
        }
    }
}

impl Deprovision {
    /// What a removal does to the member's files and devices, in the words a plan
    /// and the log show.
    pub fn consequence(&self) -> String {
        let files = match (self.files, &self.transfer_to) {
            (LeaverFiles::Transfer, Some(to)) => format!("files transferred to {to}"),
            (LeaverFiles::Transfer, None) => "files transferred (no transfer_to set)".into(),
            (LeaverFiles::KeepAccount, _) if self.retain_team_shares => {
                "account kept as a Basic account with its files and team shares".into()
            }
            (LeaverFiles::KeepAccount, _) => {
                "account kept as a Basic account with its files".into()
            }
            (LeaverFiles::Leave, _) => {
                "files left on the removed account (recoverable for 7 days)".into()
            }
        };
        let devices = if self.wipe_devices {
            "devices wiped"
        } else {
            "devices kept"
        };
        format!("{files}, {devices}")
    }
}

/// A validated configuration. Paths are absolute or relative to the working
/// directory, already resolved against the config file's folder.
#[derive(Debug, Clone)]
pub struct Settings {
    pub config_path: PathBuf,
    pub state_path: PathBuf,
    pub scripts_dir: PathBuf,
    pub interval: Duration,
    /// How long provisioning-log entries and cycle rows are kept (`log_retention`,
    /// default 30 days as Entra keeps them); `None` keeps them forever ("0s").
    pub log_retention: Option<Duration>,
    pub source: SourceSettings,
    pub target: TargetSettings,
    pub legacy: Option<LegacySettings>,
    pub safety: Safety,
    pub notify: Notify,
    pub serve: Serve,
    pub sync: SyncSwitches,
}

impl Settings {
    /// Every `file:` secret the config names (a daemon watches them).
    pub fn secret_files(&self) -> Vec<PathBuf> {
        let mut out = self.target.credential.files();
        if let Some(l) = &self.legacy {
            out.extend(l.credential.files());
        }
        if let SourceSettings::Graph { credential, .. } = &self.source {
            out.extend(credential.files());
        }
        out.sort();
        out.dedup();
        out
    }

    /// Reads and validates a config file, secrets included (each must resolve).
    pub fn load(path: &Path) -> Result<Settings, InputError> {
        Self::load_with(path, Secrets::Resolve)
    }

    /// Reads and validates a config file for a command that only reads the state
    /// (`logs`, `status`, `report`…): secrets are named but never resolved, so
    /// these work without the credentials in the environment.
    pub fn load_for_reading(path: &Path) -> Result<Settings, InputError> {
        Self::load_with(path, Secrets::Skip)
    }

    fn load_with(path: &Path, secrets: Secrets) -> Result<Settings, InputError> {
        let text = std::fs::read_to_string(path).map_err(|e| InputError::Config {
            file: path.to_path_buf(),
            message: format!("cannot read config file: {e}"),
        })?;
        Self::parse_with(&text, path, secrets)
    }

    /// Validates config text as if it had been read from `path`.
    pub fn parse(text: &str, path: &Path) -> Result<Settings, InputError> {
        Self::parse_with(text, path, Secrets::Resolve)
    }

    fn parse_with(text: &str, path: &Path, secrets: Secrets) -> Result<Settings, InputError> {
        let ctx = Parsing::new(path, secrets);
        let raw: RawConfig = toml::from_str(text).map_err(|e| ctx.err(toml_message(&e, text)))?;
        let state_path = ctx.resolve(raw.state.as_deref().unwrap_or("scimsync.db"));
        let scripts_dir = ctx.resolve(raw.scripts.as_deref().unwrap_or("scripts"));
        let interval = match raw.interval.as_deref() {
            None => Duration::from_secs(40 * 60),
            Some(s) => parse_duration(s).map_err(|m| ctx.err(format!("interval: {m}")))?,
        };
        if interval.is_zero() {
            return Err(ctx.err("interval: must be more than zero".into()));
        }
        let log_retention = match raw.log_retention.as_deref() {
            None => Some(Duration::from_secs(30 * 86_400)),
            Some(s) => Some(parse_duration(s).map_err(|m| ctx.err(format!("log_retention: {m}")))?)
                .filter(|d| !d.is_zero()),
        };

        let raw_source = raw
            .source
            .ok_or_else(|| ctx.err("missing [source] table".into()))?;
        let source = parse_source(&ctx, raw_source)?;
        let raw_target = raw
            .target
            .ok_or_else(|| ctx.err("missing [target] table".into()))?;
        let insecure = raw_target.allow_insecure_http.unwrap_or(false);
        let mut target = parse_target(&ctx, raw_target)?;
        let legacy = parse_legacy(&ctx, raw.legacy, insecure)?;
        let safety = parse_safety(&ctx, &raw.safety)?;
        if let Some(w) = &raw.notify.webhook {
            check_url("notify.webhook", w, insecure).map_err(|m| ctx.err(m))?;
        }
        let notify = parse_notify(&ctx, raw.notify)?;
        let serve = parse_serve(&ctx, raw.serve)?;
        target.deprovision = parse_deprovision(&ctx, raw.deprovision, target.kind)?;
        let literal = ctx.literal.into_inner();
        if !literal.is_empty() && crate::private::readable_by_others(path) {
            log::warn!(
                "{} holds a secret in {} and is readable by other users; use env: or file:, or chmod 600 it",
                path.display(),
                literal.join(", ")
            );
        }
        Ok(Settings {
            config_path: path.to_path_buf(),
            state_path,
            scripts_dir,
            interval,
            log_retention,
            source,
            target,
            legacy,
            safety,
            notify,
            serve,
            sync: SyncSwitches {
                users: raw.sync.users.unwrap_or(true),
                groups: raw.sync.groups.unwrap_or(true),
                enabled: raw.sync.enabled.unwrap_or(true),
            },
        })
    }
}

/// Whether a config's secrets are resolved while it is parsed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Secrets {
    /// Each must resolve now (a command that will use them).
    Resolve,
    /// Named only (a command that reads the state and nothing else).
    Skip,
}

/// What parsing one config file needs at every key: where the file is (for errors
/// and relative paths), whether secrets are resolved, and which were written into
/// it literally.
struct Parsing<'a> {
    path: &'a Path,
    base: PathBuf,
    secrets: Secrets,
    literal: std::cell::RefCell<Vec<String>>,
}

impl<'a> Parsing<'a> {
    fn new(path: &'a Path, secrets: Secrets) -> Self {
        let base = path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or_else(|| Path::new("."))
            .to_path_buf();
        Parsing {
            path,
            base,
            secrets,
            literal: Default::default(),
        }
    }

    fn err(&self, message: String) -> InputError {
        InputError::Config {
            file: self.path.to_path_buf(),
            message,
        }
    }

    /// Relative paths are relative to the config file.
    fn resolve(&self, p: &str) -> PathBuf {
        let p = Path::new(p);
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            self.base.join(p)
        }
    }

    /// A secret key's value: `env:`, `file:` or (warned about) the value itself.
    fn secret(&self, key: &str, value: &str) -> Result<Secret, InputError> {
        if !value.starts_with("env:") && !value.starts_with("file:") {
            self.literal.borrow_mut().push(key.to_string());
        }
        if self.secrets == Secrets::Skip {
            return Ok(Secret::new(String::new()));
        }
        resolve_secret(value, &self.base).map_err(|m| self.err(format!("{key}: {m}")))
    }
}

/// `[source]`.
fn parse_source(ctx: &Parsing<'_>, raw_source: RawSource) -> Result<SourceSettings, InputError> {
    let scope = match raw_source.scope.as_deref() {
        None | Some("assigned") => Scope::Assigned,
        Some("all") => Scope::All,
        Some(other) => {
            return Err(ctx.err(format!(
                "source.scope: \"{other}\" is not one of \"assigned\", \"all\""
            )))
        }
    };
    let source = match raw_source.kind.as_deref() {
        Some("file") => {
            let p = raw_source.path.as_deref().ok_or_else(|| {
                ctx.err("source.path: required when source.type = \"file\"".into())
            })?;
            let path = ctx.resolve(p);
            if !path.is_file() {
                return Err(ctx.err(format!(
                    "source.path: directory file {} does not exist",
                    path.display()
                )));
            }
            SourceSettings::File { path, scope }
        }
        Some("graph") => {
            let need = |key: &str, v: &Option<String>| -> Result<String, InputError> {
                v.clone().filter(|s| !s.trim().is_empty()).ok_or_else(|| {
                    ctx.err(format!(
                        "source.{key}: required when source.type = \"graph\""
                    ))
                })
            };
            let tenant = need("tenant", &raw_source.tenant)?;
            let client_id = need("client_id", &raw_source.client_id)?;
            let credential = graph_credential(&raw_source, ctx).map_err(|m| ctx.err(m))?;
            let app = need("app", &raw_source.app)?;
            let (login_host, graph_host) =
                cloud_hosts(raw_source.cloud.as_deref()).map_err(|m| ctx.err(m))?;
            let graph_url = raw_source.graph_url.unwrap_or_else(|| graph_host.into());
            let login_url = raw_source.login_url.unwrap_or_else(|| login_host.into());
            check_url("source.graph_url", &graph_url, false).map_err(|m| ctx.err(m))?;
            check_url("source.login_url", &login_url, false).map_err(|m| ctx.err(m))?;
            let flatten_nested_groups = match raw_source.nested_groups.as_deref() {
                None | Some("ignore") => false,
                Some("flatten") => true,
                Some(o) => {
                    return Err(ctx.err(format!(
                        "source.nested_groups: \"{o}\" is not one of \"ignore\", \"flatten\""
                    )))
                }
            };
            let mut limits = ReadLimits::default();
            match raw_source.max_pages {
                None => {}
                Some(n) if n >= 1 => limits.max_pages = n as usize,
                Some(n) => {
                    return Err(ctx.err(format!(
                        "source.max_pages: {n} is not a number of pages (1 or more)"
                    )))
                }
            }
            if let Some(v) = &raw_source.max_read_bytes {
                limits.max_bytes =
                    parse_size(v).map_err(|m| ctx.err(format!("source.max_read_bytes: {m}")))?;
            }
            SourceSettings::Graph {
                tenant,
                client_id,
                credential,
                app,
                scope,
                graph_url: trim_slash(graph_url),
                login_url: trim_slash(login_url),
                flatten_nested_groups,
                attributes: raw_source.attributes.clone().unwrap_or_default(),
                limits,
            }
        }
        Some(other) => {
            return Err(ctx.err(format!(
                "source.type: \"{other}\" is not one of \"graph\", \"file\""
            )))
        }
        None => return Err(ctx.err("source.type: required (\"graph\" or \"file\")".into())),
    };
    Ok(source)
}

/// `[target]`.
fn parse_target(ctx: &Parsing<'_>, raw_target: RawTarget) -> Result<TargetSettings, InputError> {
    let kind = match raw_target.kind.as_deref() {
        Some("dropbox") => TargetKind::Dropbox,
        Some("scim") => TargetKind::Scim,
        Some("dropbox-legacy") => TargetKind::DropboxLegacy,
        Some(other) => {
            return Err(ctx.err(format!(
                "target.type: \"{other}\" is not one of \"dropbox\", \"scim\", \"dropbox-legacy\""
            )))
        }
        None => {
            return Err(ctx
                .err("target.type: required (\"dropbox\", \"scim\" or \"dropbox-legacy\")".into()))
        }
    };
    let insecure = raw_target.allow_insecure_http.unwrap_or(false);
    let url = match kind {
        TargetKind::DropboxLegacy => raw_target
            .api_url
            .clone()
            .or(raw_target.url.clone())
            .unwrap_or_else(|| "https://api.dropboxapi.com".into()),
        TargetKind::Dropbox => raw_target
            .url
            .clone()
            .unwrap_or_else(|| "https://www.dropbox.com/scim/v2".into()),
        TargetKind::Scim => raw_target
            .url
            .clone()
            .ok_or_else(|| ctx.err("target.url: required when target.type = \"scim\"".into()))?,
    };
    check_url("target.url", &url, insecure).map_err(|m| ctx.err(m))?;
    let credential = dropbox_credential(
        RawAuth {
            table: "target",
            token: &raw_target.token,
            app_key: &raw_target.app_key,
            app_secret: &raw_target.app_secret,
            refresh_token: &raw_target.refresh_token,
            token_url: &raw_target.token_url,
            authorize_url: &raw_target.authorize_url,
            scopes: &raw_target.scopes,
        },
        ctx,
    )
    .map_err(|m| ctx.err(m))?;
    let timeout = match raw_target.timeout.as_deref() {
        None => Duration::from_secs(30),
        Some(s) => parse_duration(s).map_err(|m| ctx.err(format!("target.timeout: {m}")))?,
    };
    let actions = match &raw_target.actions {
        None => Actions {
            create: true,
            update: true,
            delete: true,
        },
        Some(list) => {
            let mut a = Actions {
                create: false,
                update: false,
                delete: false,
            };
            for x in list {
                match x.as_str() {
                    "create" => a.create = true,
                    "update" => a.update = true,
                    "delete" => a.delete = true,
                    other => {
                        return Err(ctx.err(format!(
                            "target.actions: \"{other}\" is not one of \"create\", \"update\", \"delete\""
                        )))
                    }
                }
            }
            a
        }
    };
    if let Some(p) = &raw_target.profile {
        if crate::scim::profile::by_name(p).is_none() {
            return Err(ctx.err(format!(
                "target.profile: \"{p}\" is not one of {}",
                crate::scim::profile::NAMES.join(", ")
            )));
        }
    }
    let max_in_flight = match raw_target.max_in_flight {
        None => MAX_IN_FLIGHT,
        Some(n @ 1..=64) => n as usize,
        Some(n) => {
            return Err(ctx.err(format!(
                "target.max_in_flight: {n} is out of range (1 to 64)"
            )))
        }
    };
    let target = TargetSettings {
        kind,
        url: trim_slash(url),
        credential,
        timeout,
        actions,
        profile: raw_target.profile.clone(),
        max_in_flight,
        deprovision: Deprovision::default(),
    };
    Ok(target)
}

/// `[legacy]`, the Business API credentials `migrate` reads with.
fn parse_legacy(
    ctx: &Parsing<'_>,
    raw: Option<RawLegacy>,
    insecure: bool,
) -> Result<Option<LegacySettings>, InputError> {
    let legacy = match raw {
        None => None,
        Some(l) => {
            let api_url = l
                .api_url
                .unwrap_or_else(|| "https://api.dropboxapi.com".into());
            check_url("legacy.api_url", &api_url, insecure).map_err(|m| ctx.err(m))?;
            let credential = dropbox_credential(
                RawAuth {
                    table: "legacy",
                    token: &l.token,
                    app_key: &l.app_key,
                    app_secret: &l.app_secret,
                    refresh_token: &l.refresh_token,
                    token_url: &l.token_url,
                    authorize_url: &l.authorize_url,
                    scopes: &l.scopes,
                },
                ctx,
            )
            .map_err(|m| ctx.err(m))?;
            Some(LegacySettings {
                api_url: trim_slash(api_url),
                credential,
            })
        }
    };
    Ok(legacy)
}

/// `[safety]`.
fn parse_safety(ctx: &Parsing<'_>, raw: &RawSafety) -> Result<Safety, InputError> {
    let deletion_threshold = match raw.deletion_threshold {
        None => DEFAULT_DELETION_THRESHOLD,
        Some(n) if n >= 0 => n as usize,
        Some(n) => {
            return Err(ctx.err(format!(
                "safety.deletion_threshold: {n} is negative; use 0 to hold every deletion"
            )))
        }
    };
    let deletion_threshold_percent = match raw.deletion_threshold_percent {
        None => 0,
        Some(n @ 0..=100) => n as u32,
        Some(n) => {
            return Err(ctx.err(format!(
                "safety.deletion_threshold_percent: {n} is not a percentage from 0 (off) to 100"
            )))
        }
    };
    let shrink_threshold_percent = match raw.shrink_threshold_percent {
        None => DEFAULT_SHRINK_THRESHOLD_PERCENT,
        Some(0) => 100,
        Some(n @ 1..=100) => n as u32,
        Some(n) => {
            return Err(ctx.err(format!(
                "safety.shrink_threshold_percent: {n} is not a percentage from 0 (off) to 100"
            )))
        }
    };
    let escrow_backoff = match raw.escrow_backoff.as_deref() {
        None => Duration::from_secs(300),
        Some(s) => parse_duration(s).map_err(|m| ctx.err(format!("safety.escrow_backoff: {m}")))?,
    };
    let escrow_max = match raw.escrow_max.as_deref() {
        None => Duration::from_secs(24 * 3600),
        Some(s) => parse_duration(s).map_err(|m| ctx.err(format!("safety.escrow_max: {m}")))?,
    };
    Ok(Safety {
        deletion_threshold,
        deletion_threshold_percent,
        shrink_threshold_percent,
        skip_out_of_scope_deletions: raw.skip_out_of_scope_deletions.unwrap_or(false),
        escrow_backoff,
        escrow_max,
    })
}

/// The Dropbox-facing credential of a table: a static `token`, or OAuth offline
/// access (`app_key` + `refresh_token`, written by `scimsync authorize`). The refresh
/// token is not read here: `authorize` runs before it exists.
fn dropbox_credential(raw: RawAuth<'_>, ctx: &Parsing<'_>) -> Result<Credential, String> {
    let base = &ctx.base;
    let secret = |k: &str, v: &str| ctx.secret(k, v);
    let t = raw.table;
    let oauth_keys: Vec<&str> = [
        ("app_key", raw.app_key.is_some()),
        ("app_secret", raw.app_secret.is_some()),
        ("refresh_token", raw.refresh_token.is_some()),
        ("token_url", raw.token_url.is_some()),
        ("authorize_url", raw.authorize_url.is_some()),
        ("scopes", raw.scopes.is_some()),
    ]
    .into_iter()
    .filter(|(_, set)| *set)
    .map(|(k, _)| k)
    .collect();
    if let Some(token) = raw.token {
        if let Some(k) = oauth_keys.first() {
            return Err(format!(
                "{t}.token and {t}.{k} cannot be used together: use a static token, or OAuth (app_key and refresh_token) written by `scimsync authorize`"
            ));
        }
        secret(&format!("{t}.token"), token).map_err(|e| e.to_string())?;
        return Ok(Credential::Token(SecretRef::parse(token, base)));
    }
    let Some(app_key) = raw.app_key.clone().filter(|k| !k.trim().is_empty()) else {
        return Err(format!(
            "{t}.token: required (or app_key and refresh_token for OAuth offline access)"
        ));
    };
    let refresh_token = match raw.refresh_token.as_deref() {
        Some(v) if v.starts_with("file:") || v.starts_with("env:") => SecretRef::parse(v, base),
        Some(_) => {
            return Err(format!(
                "{t}.refresh_token: must be \"file:PATH\" (written by `scimsync authorize`) or \"env:NAME\", not a literal"
            ))
        }
        None => {
            return Err(format!(
                "{t}.refresh_token: required with {t}.app_key, e.g. \"file:/var/lib/scimsync/dropbox-refresh-token\""
            ))
        }
    };
    let app_secret = match raw.app_secret.as_deref() {
        Some(v) => {
            secret(&format!("{t}.app_secret"), v).map_err(|e| e.to_string())?;
            Some(SecretRef::parse(v, base))
        }
        None => None,
    };
    let token_url = raw
        .token_url
        .clone()
        .unwrap_or_else(|| "https://api.dropboxapi.com/oauth2/token".into());
    let authorize_url = raw
        .authorize_url
        .clone()
        .unwrap_or_else(|| "https://www.dropbox.com/oauth2/authorize".into());
    check_url(&format!("{t}.token_url"), &token_url, false)?;
    check_url(&format!("{t}.authorize_url"), &authorize_url, false)?;
    let scopes = raw.scopes.clone().unwrap_or_else(|| {
        crate::http::credential::DEFAULT_SCOPES
            .iter()
            .map(|s| s.to_string())
            .collect()
    });
    Ok(Credential::OAuth(OAuth {
        app_key,
        app_secret,
        refresh_token,
        token_url,
        authorize_url,
        scopes,
    }))
}

/// How scimsync authenticates to Entra: exactly one of `client_secret`,
/// `client_certificate`, `client_assertion`.
fn graph_credential(raw: &RawSource, ctx: &Parsing<'_>) -> Result<GraphCredential, String> {
    let base = &ctx.base;
    let secret = |k: &str, v: &str| ctx.secret(k, v);
    let given: Vec<&str> = [
        ("client_secret", raw.client_secret.is_some()),
        ("client_certificate", raw.client_certificate.is_some()),
        ("client_assertion", raw.client_assertion.is_some()),
    ]
    .into_iter()
    .filter(|(_, set)| *set)
    .map(|(k, _)| k)
    .collect();
    match given.as_slice() {
        [] => Err("source.client_secret: required when source.type = \"graph\" (or client_certificate, or client_assertion)".into()),
        [_] => Ok(if let Some(v) = &raw.client_secret {
            secret("source.client_secret", v).map_err(|e| e.to_string())?;
            GraphCredential::Secret(SecretRef::parse(v, base))
        } else if let Some(v) = &raw.client_certificate {
            let path = match SecretRef::parse(v, base) {
                SecretRef::File(p) => p,
                _ => return Err("source.client_certificate: must be \"file:PATH\" (a PEM with the private key and the certificate)".into()),
            };
            if ctx.secrets == Secrets::Resolve {
                crate::http::credential::Certificate::load(&path)
                    .map_err(|m| format!("source.client_certificate: {m}"))?;
            }
            GraphCredential::Certificate(path)
        } else {
            let v = raw.client_assertion.as_deref().unwrap_or_default();
            let r = SecretRef::parse(v, base);
            if r.file().is_none() {
                return Err("source.client_assertion: must be \"file:PATH\" (a federated token file, read afresh at every token request)".into());
            }
            GraphCredential::Assertion(r)
        }),
        [a, b, ..] => Err(format!(
            "source.{a} and source.{b} cannot be used together: choose one way to authenticate"
        )),
    }
}

/// The login and Graph hosts of a national cloud (`login_url` / `graph_url` still
/// win).
fn cloud_hosts(cloud: Option<&str>) -> Result<(&'static str, &'static str), String> {
    Ok(match cloud {
        None | Some("global") => (
            "https://login.microsoftonline.com",
            "https://graph.microsoft.com",
        ),
        Some("usgov") => (
            "https://login.microsoftonline.us",
            "https://graph.microsoft.us",
        ),
        Some("usgov-dod") => (
            "https://login.microsoftonline.us",
            "https://dod-graph.microsoft.us",
        ),
        Some("china") => (
            "https://login.chinacloudapi.cn",
            "https://microsoftgraph.chinacloudapi.cn",
        ),
        Some(o) => {
            return Err(format!(
            "source.cloud: \"{o}\" is not one of \"global\", \"usgov\", \"usgov-dod\", \"china\""
        ))
        }
    })
}

/// A toml error message with its line number, without toml's multi-line excerpt
/// (which could echo a secret written inline).
fn toml_message(e: &toml::de::Error, text: &str) -> String {
    let msg = e.message().trim().to_string();
    match e.span() {
        Some(span) => {
            let line = text[..span.start.min(text.len())].matches('\n').count() + 1;
            format!("line {line}: {msg}")
        }
        None => msg,
    }
}

fn trim_slash(mut s: String) -> String {
    while s.ends_with('/') {
        s.pop();
    }
    s
}

/// Plain HTTP is only for loopback (emulators) unless explicitly allowed.
/// `[notify]`: the email keys come together (`email`, `smtp`, `from`), plain SMTP
/// only to a loopback relay, `smtp_password` only with `smtp_user`.
fn parse_notify(ctx: &Parsing<'_>, raw: RawNotify) -> Result<Notify, InputError> {
    let repeat = match raw.repeat.as_deref() {
        None => Duration::from_secs(24 * 3600),
        Some(s) => parse_duration(s).map_err(|m| ctx.err(format!("notify.repeat: {m}")))?,
    };
    let email = match (raw.email, raw.smtp, raw.from) {
        (None, None, None) if raw.smtp_user.is_none() && raw.smtp_password.is_none() => None,
        (Some(to), Some(smtp), Some(from)) => {
            if to.is_empty() {
                return Err(ctx.err("notify.email: name at least one address".into()));
            }
            for a in to.iter().chain(std::iter::once(&from)) {
                if a.parse::<lettre::Address>().is_err() {
                    return Err(ctx.err(format!("notify: {a:?} is not an email address")));
                }
            }
            let server = parse_smtp(&smtp).map_err(|m| ctx.err(format!("notify.smtp: {m}")))?;
            let login = match (raw.smtp_user, raw.smtp_password) {
                (Some(user), Some(password)) => {
                    ctx.secret("notify.smtp_password", &password)?;
                    Some((user, SecretRef::parse(&password, &ctx.base)))
                }
                (None, None) => None,
                _ => {
                    return Err(
                        ctx.err("notify.smtp_user and notify.smtp_password go together".into())
                    )
                }
            };
            if login.is_some() && server.security == SmtpSecurity::Plain {
                return Err(ctx.err("notify.smtp: a password is never sent without TLS; use smtp+starttls:// or smtps://".into()));
            }
            Some(Email {
                to,
                from,
                server,
                login,
            })
        }
        (email, smtp, from) => {
            let missing: Vec<&str> = [
                ("email", email.is_none()),
                ("smtp", smtp.is_none()),
                ("from", from.is_none()),
            ]
            .into_iter()
            .filter(|(_, m)| *m)
            .map(|(k, _)| k)
            .collect();
            return Err(ctx.err(format!(
                "notify: email needs email, smtp and from together; missing {}",
                missing.join(", ")
            )));
        }
    };
    Ok(Notify {
        command: raw.command,
        webhook: raw.webhook,
        email,
        repeat,
    })
}

/// `smtp://host:port` (loopback only), `smtp+starttls://host[:587]`,
/// `smtps://host[:465]`.
pub fn parse_smtp(url: &str) -> Result<SmtpServer, String> {
    let (security, rest, default_port) = if let Some(r) = url.strip_prefix("smtp+starttls://") {
        (SmtpSecurity::StartTls, r, 587)
    } else if let Some(r) = url.strip_prefix("smtps://") {
        (SmtpSecurity::Tls, r, 465)
    } else if let Some(r) = url.strip_prefix("smtp://") {
        (SmtpSecurity::Plain, r, 25)
    } else {
        return Err(format!(
            "{url:?}: use smtp+starttls://host:587, smtps://host:465, or smtp://127.0.0.1:25 for a local relay"
        ));
    };
    let rest = rest.trim_end_matches('/');
    let (host, port) = match rest.rsplit_once(':') {
        Some((h, p)) if !h.ends_with(']') || rest.starts_with('[') => (
            h,
            p.parse::<u16>()
                .map_err(|_| format!("{url:?}: the port is not a number"))?,
        ),
        _ => (rest, default_port),
    };
    let host = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string();
    if host.is_empty() {
        return Err(format!("{url:?}: no host"));
    }
    if security == SmtpSecurity::Plain && !crate::endpoint::is_loopback_host(&host) {
        return Err(format!(
            "{url:?}: plain SMTP is only for a relay on this machine (127.0.0.1, ::1, localhost); use smtp+starttls:// or smtps://"
        ));
    }
    Ok(SmtpServer {
        host,
        port,
        security,
    })
}

/// `[serve] listen = "127.0.0.1:9464"`.
/// `[deprovision]`: combinations the Business API always refuses are refused
/// here, with the key to change.
fn parse_deprovision(
    ctx: &Parsing<'_>,
    raw: RawDeprovision,
    target: TargetKind,
) -> Result<Deprovision, InputError> {
    let err = |m: String| ctx.err(format!("deprovision.{m}"));
    let mut d = Deprovision::default();
    if let Some(s) = raw.remove_after.as_deref() {
        let after = parse_duration(s).map_err(|m| err(format!("remove_after: {m}")))?;
        d.remove_after = Some(after).filter(|a| !a.is_zero());
    }
    d.files = match raw.files.as_deref() {
        None | Some("transfer") => LeaverFiles::Transfer,
        Some("keep-account") => LeaverFiles::KeepAccount,
        Some("leave") => LeaverFiles::Leave,
        Some(other) => {
            return Err(err(format!(
                "files: {other:?} is not one of \"transfer\", \"keep-account\", \"leave\""
            )))
        }
    };
    d.wipe_devices = raw.wipe_devices.unwrap_or(false);
    d.retain_team_shares = raw.retain_team_shares.unwrap_or(false);
    if let Some(to) = raw.transfer_to {
        if !to.contains('@') || to.starts_with('@') || to.ends_with('@') {
            return Err(err(format!("transfer_to: {to:?} is not an email address")));
        }
        d.transfer_to = Some(to);
    }
    let legacy = target == TargetKind::DropboxLegacy;
    if legacy && d.files == LeaverFiles::Transfer && d.transfer_to.is_none() {
        return Err(err(
            "transfer_to: required with files = \"transfer\" (the default): the team admin who receives a leaver's files; or choose files = \"keep-account\" or \"leave\"".into(),
        ));
    }
    if d.files == LeaverFiles::KeepAccount && d.wipe_devices {
        return Err(err(
            "wipe_devices: Dropbox cannot keep an account and wipe its devices (cannot_keep_account_and_delete_data); set wipe_devices = false or choose another files".into(),
        ));
    }
    if d.retain_team_shares && d.files != LeaverFiles::KeepAccount {
        return Err(err(
            "retain_team_shares: team shares are retained only with files = \"keep-account\" (cannot_retain_shares_when_no_account_kept)".into(),
        ));
    }
    Ok(d)
}

fn parse_serve(ctx: &Parsing<'_>, raw: RawServe) -> Result<Serve, InputError> {
    let listen = match raw.listen {
        None => None,
        Some(l) => Some(l.parse::<std::net::SocketAddr>().map_err(|_| {
            ctx.err(format!(
                "serve.listen: {l:?} is not an address and port, e.g. \"127.0.0.1:9464\""
            ))
        })?),
    };
    Ok(Serve { listen })
}

fn check_url(key: &str, url: &str, allow_insecure: bool) -> Result<(), String> {
    crate::endpoint::check(key, url, allow_insecure)
}

/// Resolves `env:NAME`, `file:PATH` (relative to the config folder) or a literal.
pub fn resolve_secret(value: &str, base: &Path) -> Result<Secret, String> {
    if let Some(name) = value.strip_prefix("env:") {
        return match std::env::var(name) {
            Ok(v) if !v.is_empty() => Ok(Secret::new(v)),
            _ => Err(format!("environment variable {name} is not set")),
        };
    }
    if let Some(p) = value.strip_prefix("file:") {
        let path = if Path::new(p).is_absolute() {
            PathBuf::from(p)
        } else {
            base.join(p)
        };
        let text = std::fs::read_to_string(&path)
            .map_err(|e| format!("cannot read secret file {}: {e}", path.display()))?;
        warn_if_world_readable(&path);
        let v = text.trim().to_string();
        if v.is_empty() {
            return Err(format!("secret file {} is empty", path.display()));
        }
        return Ok(Secret::new(v));
    }
    Ok(Secret::new(value))
}

#[cfg(unix)]
fn warn_if_world_readable(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    if let Ok(meta) = std::fs::metadata(path) {
        if meta.permissions().mode() & 0o004 != 0 {
            log::warn!(
                "secret file {} is readable by every user; chmod 600 it",
                path.display()
            );
        }
    }
}

#[cfg(not(unix))]
fn warn_if_world_readable(_path: &Path) {}

/// A size: a number of bytes, or text such as `512MiB`, `2GiB`, `100MB`.
fn parse_size(v: &toml::Value) -> Result<u64, String> {
    let text = match v {
        toml::Value::Integer(n) if *n > 0 => return Ok(*n as u64),
        toml::Value::String(s) => s.trim(),
        other => return Err(format!("{other} is not a size (e.g. \"2GiB\")")),
    };
    let digits = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let n: u64 = text[..digits]
        .parse()
        .map_err(|_| format!("\"{text}\" is not a size (e.g. \"2GiB\")"))?;
    let unit: u64 = match text[digits..].trim() {
        "" | "B" => 1,
        "KB" => 1_000,
        "KiB" => 1 << 10,
        "MB" => 1_000_000,
        "MiB" => 1 << 20,
        "GB" => 1_000_000_000,
        "GiB" => 1 << 30,
        u => {
            return Err(format!(
                "\"{text}\": unknown unit \"{u}\" (B, KB, KiB, MB, MiB, GB, GiB)"
            ))
        }
    };
    match n.checked_mul(unit) {
        Some(0) => Err("must be more than zero".into()),
        Some(b) => Ok(b),
        None => Err(format!("\"{text}\" is too large")),
    }
}

/// Parses durations such as `40m`, `90s`, `1h30m`, `500ms`, `2d`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let t = s.trim();
    if t.is_empty() {
        return Err("empty duration".into());
    }
    let mut total = Duration::ZERO;
    let mut rest = t;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        if digits == 0 {
            return Err(format!(
                "\"{s}\" is not a duration (expected e.g. \"40m\", \"90s\", \"1h30m\")"
            ));
        }
        let n: u64 = rest[..digits]
            .parse()
            .map_err(|_| format!("\"{s}\": number too large"))?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let unit = &rest[..unit_len];
        rest = &rest[unit_len..];
        let d = match unit {
            "ms" => Duration::from_millis(n),
            "s" => Duration::from_secs(n),
            "m" => Duration::from_secs(n * 60),
            "h" => Duration::from_secs(n * 3600),
            "d" => Duration::from_secs(n * 86400),
            "" => return Err(format!("\"{s}\": missing unit (ms, s, m, h or d)")),
            u => return Err(format!("\"{s}\": unknown unit \"{u}\" (ms, s, m, h or d)")),
        };
        total += d;
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("40m").ok(), Some(Duration::from_secs(2400)));
        assert_eq!(
            parse_duration("1h30m").ok(),
            Some(Duration::from_secs(5400))
        );
        assert_eq!(
            parse_duration("250ms").ok(),
            Some(Duration::from_millis(250))
        );
        assert!(parse_duration("40").is_err());
        assert!(parse_duration("m").is_err());
        assert!(parse_duration("4x").is_err());
    }

    #[test]
    fn unknown_key_names_key_and_line() {
        let text = "state = \"x.db\"\n[source]\ntype = \"file\"\nbogus = 1\n";
        let e = Settings::parse(text, Path::new("/tmp/c.toml"))
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(e.contains("/tmp/c.toml"), "{e}");
        assert!(e.contains("bogus"), "{e}");
        assert!(e.contains("line 4"), "{e}");
    }

    #[test]
    fn national_clouds_choose_their_hosts_and_explicit_urls_win() {
        let cfg = |extra: &str| {
            format!(
                "[source]\ntype = \"graph\"\ntenant = \"t\"\nclient_id = \"c\"\nclient_secret = \"s\"\napp = \"a\"\n{extra}\n[target]\ntype = \"dropbox\"\ntoken = \"x\"\n"
            )
        };
        let hosts = |extra: &str| match Settings::parse(&cfg(extra), Path::new("/tmp/c.toml"))
            .map(|s| s.source)
        {
            Ok(SourceSettings::Graph {
                graph_url,
                login_url,
                ..
            }) => (graph_url, login_url),
            other => panic!("{other:?}"),
        };
        assert_eq!(
            hosts(""),
            (
                "https://graph.microsoft.com".to_string(),
                "https://login.microsoftonline.com".to_string()
            )
        );
        assert_eq!(
            hosts("cloud = \"usgov-dod\"").0,
            "https://dod-graph.microsoft.us"
        );
        assert_eq!(
            hosts("cloud = \"china\"").1,
            "https://login.chinacloudapi.cn"
        );
        assert_eq!(
            hosts("cloud = \"usgov\"\ngraph_url = \"https://graph.example\"").0,
            "https://graph.example"
        );
        let e = Settings::parse(&cfg("cloud = \"mars\""), Path::new("/tmp/c.toml"))
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(e.contains("source.cloud"), "{e}");
    }

    #[test]
    fn secret_debug_hides_value() {
        let s = Secret::new("hunter2");
        assert!(!format!("{s:?} {s}").contains("hunter2"));
    }
}
