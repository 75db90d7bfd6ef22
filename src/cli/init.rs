//! `scimsync init`: a starter config, the default scripts and the sample directory.

use super::*;

/// `scimsync init`: a starter config, the default scripts and the sample directory.
pub(super) fn init(dir: &Path) -> Result<i32, Error> {
    let files = [
        (dir.join("scimsync.toml"), STARTER_CONFIG),
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

pub(super) const STARTER_CONFIG: &str = r#"# scimsync configuration. Relative paths are relative to this file.
state    = "scimsync.db"      # SQLite state file
scripts  = "scripts"          # mapping.rhai, scoping.rhai (migration.rhai)
interval = "40m"              # cycle interval for `scimsync run`

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
"#;
