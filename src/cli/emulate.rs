//! `scimsync emulate dropbox|graph`: the loopback emulators as a command, for the
//! demo, the tests and rehearsals. Only in builds with the `emulators` feature.

use crate::error::{exit, Error, InputError};
use clap::{Args, ValueEnum};
use std::path::{Path, PathBuf};

#[derive(Args, Debug)]
pub struct EmulateCmd {
    /// Which service to emulate
    #[arg(value_enum)]
    pub service: EmulatedService,
    /// Address to listen on (port 0: any free port, printed)
    #[arg(long, default_value = "127.0.0.1:0")]
    pub listen: String,
    /// Bearer token the emulator requires (default: a random one, printed)
    #[arg(long)]
    pub token: Option<String>,
    /// Directory file (graph emulator; edits are picked up)
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Tenant the graph emulator answers tokens for
    #[arg(long, default_value = "contoso.onmicrosoft.com")]
    pub tenant: String,
    /// Client id the graph emulator accepts
    #[arg(long, default_value = "scimsync-client")]
    pub client_id: String,
    /// Client secret the graph emulator accepts (default: a random one, printed)
    #[arg(long)]
    pub client_secret: Option<String>,
    /// Object id of the service principal whose assignments define scope
    #[arg(long, default_value = "11111111-2222-3333-4444-555555555555")]
    pub app: String,
    /// Graph page size (1..999)
    #[arg(long, default_value_t = 100)]
    pub page_size: usize,
    /// Random faults, e.g. "429=5%,500=2%,reset=1%,slow=1%:2s,cut=1%"
    /// (429=P%:N answers Retry-After N; cut answers half a body; html, empty
    /// and deep answer 200 with a proxy's HTML page, no body, or JSON too deep)
    #[arg(long)]
    pub faults: Option<String>,
    /// Seed for --faults: the same seed draws the same faults
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Milliseconds added to every answer (a distant service)
    #[arg(long, default_value_t = 0)]
    pub latency_ms: u64,
    /// The OAuth app key the Dropbox emulator knows
    #[arg(long, default_value = "scimsync-app")]
    pub app_key: String,
    /// The app's secret (default: none, a PKCE public client)
    #[arg(long)]
    pub app_secret: Option<String>,
    /// A certificate (PEM) registered with the Graph emulator's app: client
    /// assertions signed with its key are accepted
    #[arg(long)]
    pub client_certificate: Option<PathBuf>,
    /// A federated token the Graph emulator accepts as a client assertion
    #[arg(long)]
    pub federated_token: Option<String>,
    /// Lifetime of the access tokens the Dropbox emulator issues, in seconds
    #[arg(long, default_value_t = 14_400)]
    pub token_ttl: u64,
    /// Serve a copy of a team taken by `scimsync snapshot --out FILE` (Dropbox
    /// emulator): rehearse against production's shape
    #[arg(long, value_name = "FILE")]
    pub load: Option<PathBuf>,
    /// Offer SCIM /Bulk with this many operations per request (a test mode of
    /// the Dropbox emulator; Dropbox itself offers none)
    #[arg(long, default_value_t = 0)]
    pub bulk: usize,
}

#[derive(ValueEnum, Clone, Copy, Debug)]
pub enum EmulatedService {
    /// Dropbox: SCIM 2.0, the Business API and OAuth, over one team
    Dropbox,
    /// Microsoft Graph and its token endpoint, serving a directory file
    Graph,
}

/// Starts the emulator `cmd` asks for and serves until killed.
pub fn run(cmd: &EmulateCmd) -> Result<i32, Error> {
    emulate(EmulateArgs {
        load: cmd.load.clone(),
        bulk: cmd.bulk,
        oauth: (cmd.app_key.clone(), cmd.app_secret.clone(), cmd.token_ttl),
        service: cmd.service,
        listen: cmd.listen.clone(),
        token: cmd.token.clone(),
        data: cmd.data.clone(),
        tenant: crate::emulator::graph::Tenant {
            tenant: cmd.tenant.clone(),
            client_id: cmd.client_id.clone(),
            client_secret: cmd
                .client_secret
                .clone()
                .unwrap_or_else(|| crate::ids::random_hex(32)),
            app: cmd.app.clone(),
            token_lifetime: 3599,
            certificate: match &cmd.client_certificate {
                Some(p) => Some(certificate_der(p)?),
                None => None,
            },
            federated_token: cmd.federated_token.clone(),
        },
        page_size: cmd.page_size,
        chaos: match &cmd.faults {
            None => None,
            Some(spec) => Some(
                crate::emulator::Chaos::parse(spec, cmd.seed)
                    .map_err(|e| InputError::Usage(format!("--faults: {e}")))?,
            ),
        },
        latency: std::time::Duration::from_millis(cmd.latency_ms),
    })
}

/// The first certificate of a PEM file, as DER.
fn certificate_der(path: &Path) -> Result<Vec<u8>, Error> {
    use rustls_pki_types::pem::PemObject;
    let bytes = std::fs::read(path)
        .map_err(|e| InputError::Usage(format!("--client-certificate {}: {e}", path.display())))?;
    let cert = rustls_pki_types::CertificateDer::pem_slice_iter(&bytes)
        .next()
        .and_then(Result::ok)
        .ok_or_else(|| {
            InputError::Usage(format!(
                "--client-certificate {}: no CERTIFICATE in it",
                path.display()
            ))
        })?;
    Ok(cert.as_ref().to_vec())
}

struct EmulateArgs {
    /// Dropbox OAuth: app key, app secret, access token lifetime (s).
    oauth: (String, Option<String>, u64),
    service: EmulatedService,
    listen: String,
    token: Option<String>,
    data: Option<PathBuf>,
    tenant: crate::emulator::graph::Tenant,
    page_size: usize,
    chaos: Option<crate::emulator::Chaos>,
    latency: std::time::Duration,
    /// A snapshot to serve (Dropbox).
    load: Option<PathBuf>,
    bulk: usize,
}

fn emulate(a: EmulateArgs) -> Result<i32, Error> {
    // Whoever started us may close our stdout after the first line: a failed write
    // must not stop the emulator.
    use std::io::Write;
    let mut out = std::io::stdout();
    let running = match a.service {
        EmulatedService::Dropbox => {
            let token = a.token.unwrap_or_else(|| crate::ids::random_hex(32));
            let mut team = crate::emulator::dropbox::Team::new(&token);
            team.set_latency(a.latency);
            team.set_bulk(a.bulk);
            if let Some(path) = &a.load {
                let bad = |m: String| InputError::Usage(format!("--load {}: {m}", path.display()));
                let text = std::fs::read_to_string(path).map_err(|e| bad(e.to_string()))?;
                let doc: serde_json::Value =
                    serde_json::from_str(&text).map_err(|e| bad(e.to_string()))?;
                let (u, g) = team.load(&doc).map_err(bad)?;
                log::info!("serving {u} members and {g} groups from {}", path.display());
            }
            let (key, secret, ttl) = a.oauth.clone();
            team.oauth = crate::emulator::dropbox::oauth::OAuthServer::new(
                &key,
                secret,
                std::time::Duration::from_secs(ttl.max(1)),
            );
            let (running, _team) = crate::emulator::serve(&a.listen, team, 16)
                .map_err(|e| InputError::Usage(format!("--listen: {e}")))?;
            running.set_chaos(a.chaos.clone());
            let _ = writeln!(out, "{}/scim/v2", running.base());
            let _ = writeln!(out, "token {token}");
            running
        }
        EmulatedService::Graph => {
            if !a.latency.is_zero() {
                return Err(InputError::Usage(
                    "--latency-ms is for `emulate dropbox`; the Graph emulator answers at once"
                        .into(),
                )
                .into());
            }
            let data = a.data.ok_or_else(|| {
                InputError::Usage("emulate graph needs --data DIRECTORY.json".into())
            })?;
            let mut graph = crate::emulator::graph::Graph::new(data, a.tenant.clone())
                .map_err(InputError::Usage)?;
            graph.set_page_size(a.page_size);
            let (running, shared) = crate::emulator::serve(&a.listen, graph, 4)
                .map_err(|e| InputError::Usage(format!("--listen: {e}")))?;
            if let Ok(mut g) = shared.lock() {
                g.set_base(&running.base());
            }
            running.set_chaos(a.chaos.clone());
            let t = &a.tenant;
            let _ = writeln!(out, "{}", running.base());
            let _ = writeln!(
                out,
                "tenant {} client_id {} client_secret {} app {}",
                t.tenant, t.client_id, t.client_secret, t.app
            );
            running
        }
    };
    let _ = out.flush();
    running.wait();
    Ok(exit::OK)
}
