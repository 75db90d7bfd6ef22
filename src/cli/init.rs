//! `scimsync init`: a starter config, the default scripts and the sample directory.

use super::*;

/// `scimsync init`: a starter config, the default scripts and the sample directory.
pub(super) fn init(dir: &Path, state: &str) -> Result<i32, Error> {
    let config = starter_config(state)?;
    let files = [
        (dir.join("scimsync.toml"), config.as_str()),
        (dir.join("scripts").join("mapping.rhai"), defaults::MAPPING),
        (dir.join("scripts").join("scoping.rhai"), defaults::SCOPING),
        (
            dir.join("scripts").join("migration.rhai"),
            defaults::MIGRATION,
        ),
        (dir.join("directory.json"), crate::source::directory::SAMPLE),
    ];
    for (p, _) in &files {
        if p.exists() {
            return Err(InputError::Usage(format!(
                "{} already exists; not overwriting anything",
                p.display()
            ))
            .into());
        }
    }
    crate::private::create_dir(&dir.join("scripts")).map_err(Error::file(dir))?;
    for (p, text) in &files {
        crate::private::write(p, text.as_bytes()).map_err(Error::file(p))?;
        println!("wrote {}", p.display());
    }
    println!(
        "next: set DROPBOX_TOKEN, edit scimsync.toml, then `scimsync check` and `scimsync plan`"
    );
    Ok(exit::OK)
}

/// The starter config with its `state` line; a path that TOML cannot quote
/// plainly is refused rather than written broken.
fn starter_config(state: &str) -> Result<String, Error> {
    if state.contains(['"', '\\', '\n']) {
        return Err(InputError::Usage(format!(
            "--state {state:?}: quotes, backslashes and newlines are not supported"
        ))
        .into());
    }
    Ok(STARTER_CONFIG.replace("{STATE}", state))
}

pub(super) const STARTER_CONFIG: &str = r#"# scimsync configuration. Relative paths are relative to this file.
state    = "{STATE}"      # SQLite state file (under systemd: in StateDirectory=, writable)
scripts  = "scripts"          # mapping.rhai, scoping.rhai (migration.rhai)
interval = "40m"              # cycle interval for `scimsync run`
log_retention = "30d"         # provisioning log and cycle history kept this long ("0s": forever)

[source]
type  = "file"                # "graph" | "file"
path  = "directory.json"      # Graph-shaped directory document
scope = "assigned"            # "assigned" | "all"
# type = "graph"
# tenant = "contoso.onmicrosoft.com"
# client_id = "00000000-0000-0000-0000-000000000000"
# client_secret = "env:GRAPH_CLIENT_SECRET"
# app = "<service principal object id>"

[target]
type  = "dropbox"             # "dropbox" | "scim" | "dropbox-legacy"
url   = "https://www.dropbox.com/scim/v2"
token = "env:DROPBOX_TOKEN"   # env:NAME | file:PATH
# For a daemon, OAuth offline access instead of token (then `scimsync authorize`):
# app_key       = "<app key from the Dropbox App Console>"
# refresh_token = "file:/var/lib/scimsync/dropbox-refresh-token"

[safety]
deletion_threshold = 500      # deletes + disables per cycle before the cycle is held
skip_out_of_scope_deletions = false

# [deprovision]               # what happens to a leaver (README: "Leavers")
# remove_after = "30d"        # suspended first; removed only if still gone after this ("0s": at once)
# files = "transfer"          # dropbox-legacy members/remove: "transfer" | "keep-account" | "leave"
# transfer_to = "admin@contoso.com"   # the team admin who receives a leaver's files
# wipe_devices = false        # wipe the leaver's linked devices
# retain_team_shares = false  # with "keep-account": keep their access to team shares

# [notify]                    # Entra's notification email, and/or a command or webhook
# email = ["ops@contoso.com"] # sent when a failure is new, a hold or quarantine starts
#                             # or ends, or a script reload fails
# smtp = "smtp+starttls://mail.contoso.com:587"   # | "smtps://host:465" | "smtp://127.0.0.1:25"
# smtp_user = "scimsync"
# smtp_password = "env:SMTP_PASSWORD"
# from = "scimsync@contoso.com"
# repeat = "24h"              # an unchanged failure is sent again after this long
# command = "logger -t scimsync"   # gets the event JSON on stdin
# webhook = "https://hooks.contoso.com/scimsync"

# [serve]                     # the daemon's monitoring endpoint
# listen = "127.0.0.1:9464"   # GET /healthz (200/503) and /metrics (Prometheus)
"#;
