//! `scimsync authorize`: gives scimsync long-running access to Dropbox.
//!
//! Dropbox issues short-lived access tokens (about 4 hours); a daemon lives on a
//! refresh token from the OAuth 2 authorization-code flow with PKCE (S256) and
//! `token_access_type=offline` — what the Entra tutorial's "Authorize" button does.
//! This prints the address an admin opens, reads the code Dropbox shows (pasted on
//! stdin, or `--code`), exchanges it, and writes the refresh token to the file
//! `refresh_token = "file:…"` names: 0600, its folder made if missing, replaced
//! whole. It never prints a token, and takes no state lock: it works beside a
//! running daemon, which picks the new token up by itself.

use crate::config::Settings;
use crate::error::{exit, Error, InputError};
use crate::http::credential::{b64url, token_answer, Credential, OAuth};
use crate::http::{encode, Http};
use std::io::BufRead;

/// Runs the flow for `[target]`, or `[legacy]` with `legacy`.
pub fn run(settings: &Settings, legacy: bool, code: Option<&str>) -> Result<i32, Error> {
    let flow = Flow::begin(settings, legacy)?;
    println!(
        "Open this address as a Dropbox team admin, allow the app, and paste the code it shows:\n\n  {}\n",
        flow.url
    );
    let code = match code {
        Some(c) => c.trim().to_string(),
        None => {
            eprint!("code: ");
            let mut line = String::new();
            std::io::stdin()
                .lock()
                .read_line(&mut line)
                .map_err(|source| Error::System {
                    what: "reading the code",
                    source,
                })?;
            line.trim().to_string()
        }
    };
    let path = flow.complete(settings, &code)?;
    println!(
        "wrote the refresh token to {} (readable by its owner only); scimsync renews its access tokens with it from now on, and a running daemon picks it up by itself",
        path.display()
    );
    Ok(exit::OK)
}

/// One authorization under way: the address to open, and what finishing it needs.
pub struct Flow {
    pub url: String,
    verifier: String,
    oauth: OAuth,
    fix: &'static str,
}

impl Flow {
    /// Checks the config and makes the PKCE pair and the address.
    pub fn begin(settings: &Settings, legacy: bool) -> Result<Flow, Error> {
        let (table, credential) = if legacy {
            ("legacy", settings.legacy.as_ref().map(|l| &l.credential))
        } else {
            ("target", Some(&settings.target.credential))
        };
        let Some(Credential::OAuth(oauth)) = credential else {
            return Err(InputError::Usage(format!(
                "[{table}] has no OAuth settings: authorize needs app_key and refresh_token = \"file:PATH\" there (instead of token)"
            ))
            .into());
        };
        if oauth.refresh_token.file().is_none() {
            return Err(InputError::Usage(format!(
                "{table}.refresh_token: must be \"file:PATH\" for authorize to write the token there"
            ))
            .into());
        }
        let verifier = verifier()?;
        Ok(Flow {
            url: authorization_url(oauth, &crate::http::credential::pkce_challenge(&verifier)),
            verifier,
            oauth: oauth.clone(),
            fix: if legacy {
                "scimsync authorize --legacy"
            } else {
                "scimsync authorize"
            },
        })
    }

    /// Exchanges the code and writes the refresh token file; its path.
    pub fn complete(&self, settings: &Settings, code: &str) -> Result<std::path::PathBuf, Error> {
        if code.is_empty() {
            return Err(InputError::Usage("no code given; nothing written".into()).into());
        }
        let path = self
            .oauth
            .refresh_token
            .file()
            .map(std::path::Path::to_path_buf)
            .ok_or_else(|| {
                InputError::Usage(
                    "refresh_token: must be \"file:PATH\" for authorize to write the token there"
                        .into(),
                )
            })?;
        let refresh = exchange(settings, &self.oauth, code, &self.verifier, self.fix)?;
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            crate::private::create_dir(dir).map_err(Error::file(dir))?;
        }
        crate::private::write(&path, format!("{}\n", refresh.expose()).as_bytes())
            .map_err(Error::file(&path))?;
        Ok(path)
    }
}

/// A PKCE code verifier: 48 random bytes from the system's generator, base64url.
fn verifier() -> Result<String, Error> {
    use ring::rand::SecureRandom;
    let mut bytes = [0u8; 48];
    ring::rand::SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| Error::System {
            what: "no randomness from the system for PKCE",
            source: std::io::Error::other("the system's random generator failed"),
        })?;
    Ok(b64url(&bytes))
}

/// The address the admin opens.
pub fn authorization_url(oauth: &OAuth, challenge: &str) -> String {
    let sep = if oauth.authorize_url.contains('?') {
        '&'
    } else {
        '?'
    };
    format!(
        "{}{sep}client_id={}&response_type=code&token_access_type=offline&code_challenge={}&code_challenge_method=S256&scope={}",
        oauth.authorize_url,
        encode(&oauth.app_key),
        encode(challenge),
        encode(&oauth.scopes.join(" "))
    )
}

/// Code + verifier → refresh token.
fn exchange(
    settings: &Settings,
    oauth: &OAuth,
    code: &str,
    verifier: &str,
    fix: &'static str,
) -> Result<crate::config::Secret, Error> {
    let mut http = Http::new(
        crate::http::credential::Bearer::fixed(crate::config::Secret::new("")),
        settings.target.timeout,
        "application/json",
    );
    let secret = match &oauth.app_secret {
        Some(r) => Some(r.resolve().map_err(InputError::Usage)?),
        None => None,
    };
    let basic = secret.map(|s| (oauth.app_key.clone(), s));
    let mut form = vec![
        ("grant_type", "authorization_code"),
        ("code", code),
        ("code_verifier", verifier),
    ];
    if basic.is_none() {
        form.push(("client_id", oauth.app_key.as_str()));
    }
    let reply = http.post_form_as(&oauth.token_url, &form, basic.as_ref())?;
    let answer = token_answer(&reply, fix).map_err(|e| {
        if e.class == crate::targets::ErrorClass::Revoked {
            // A refused code is not a revoked grant: say what it is.
            Error::Input(InputError::Usage(
                "Dropbox refused the code (used already, expired, or not from this authorization); run `scimsync authorize` again".into(),
            ))
        } else {
            Error::Target(e)
        }
    })?;
    answer.refresh_token.ok_or_else(|| {
        Error::answer(
            "Dropbox",
            "Dropbox answered without a refresh token (was token_access_type=offline honoured?)",
        )
    })
}
