//! Dropbox's OAuth 2 for the emulator: the authorization-code flow with PKCE and
//! offline access (refresh tokens), short-lived access tokens, and revocation.
//!
//! `/oauth2/authorize` approves at once (an admin clicking "Allow") and shows the
//! code to paste, as Dropbox's no-redirect flow does; `/oauth2/token` exchanges a code
//! (checking the S256 challenge) or a refresh token for an access token that lives
//! `token_ttl` seconds. `POST /_emulator/revoke` revokes every grant, as removing the
//! app from the team does.

use super::super::{percent_decode, Request, Response};
use serde_json::json;
use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

pub struct OAuthServer {
    pub app_key: String,
    /// Optional: a PKCE client may name itself with the key alone.
    pub app_secret: Option<String>,
    pub token_ttl: Duration,
    /// Code → (S256 challenge, used).
    codes: HashMap<String, (String, bool)>,
    refresh: HashSet<String>,
    access: HashMap<String, Instant>,
    /// Access tokens handed out so far (refreshes included).
    pub issued: u64,
}

/// Why an access token is refused.
pub enum Refused {
    Expired,
    Invalid,
}

impl OAuthServer {
    pub fn new(app_key: &str, app_secret: Option<String>, token_ttl: Duration) -> OAuthServer {
        OAuthServer {
            app_key: app_key.to_string(),
            app_secret,
            token_ttl,
            codes: HashMap::new(),
            refresh: HashSet::new(),
            access: HashMap::new(),
            issued: 0,
        }
    }

    /// Checks an access token this server issued.
    pub fn check(&self, token: &str) -> Result<(), Refused> {
        match self.access.get(token) {
            Some(t) if Instant::now() < *t => Ok(()),
            Some(_) => Err(Refused::Expired),
            None => Err(Refused::Invalid),
        }
    }

    /// What was issued (tests look for these values where they must not be).
    pub fn issued_tokens(&self) -> serde_json::Value {
        json!({"issued": self.issued,
               "access_tokens": self.access.keys().collect::<Vec<_>>(),
               "refresh_tokens": self.refresh.iter().collect::<Vec<_>>()})
    }

    /// Every grant goes: refresh tokens and access tokens alike.
    pub fn revoke(&mut self) {
        self.refresh.clear();
        self.access.clear();
    }

    /// `GET /oauth2/authorize?client_id&response_type=code&code_challenge&…`
    pub fn authorize(&mut self, req: &Request) -> Response {
        let bad = |m: &str| Response::text(400, "text/plain", format!("Error (400): {m}\n"));
        if req.param("client_id") != Some(self.app_key.as_str()) {
            return bad("unknown client_id");
        }
        if req.param("response_type") != Some("code") {
            return bad("response_type must be code");
        }
        if req.param("token_access_type") != Some("offline") {
            return bad("token_access_type=offline is needed for a refresh token");
        }
        let (Some(challenge), Some("S256")) = (
            req.param("code_challenge"),
            req.param("code_challenge_method"),
        ) else {
            return bad("code_challenge with code_challenge_method=S256 is required");
        };
        if challenge.len() < 43 {
            return bad("code_challenge is too short");
        }
        let code = crate::ids::random_hex(43);
        self.codes
            .insert(code.clone(), (challenge.to_string(), false));
        Response::text(
            200,
            "text/plain",
            format!(
                "Dropbox emulator: the app is allowed.\nEnter this code into the app: {code}\n"
            ),
        )
    }

    /// `POST /oauth2/token` (authorization_code with PKCE, or refresh_token).
    pub fn token(&mut self, req: &Request) -> Response {
        let form = form(&req.body);
        let error = |status: u16, e: &str, d: &str| {
            Response::json(status, json!({"error": e, "error_description": d}))
        };
        // The client: HTTP Basic (key and secret), or client_id in the form.
        let client = match basic(req.authorization.as_deref()) {
            Some((key, secret)) => {
                if self.app_secret.as_deref().is_some_and(|s| s != secret) {
                    return error(400, "invalid_client", "Invalid client secret");
                }
                Some(key)
            }
            None => form.get("client_id").cloned(),
        };
        if client.as_deref() != Some(self.app_key.as_str()) {
            return error(400, "invalid_client", "Unknown client_id");
        }
        let with_refresh = match form.get("grant_type").map(String::as_str) {
            Some("authorization_code") => {
                let code = form.get("code").cloned().unwrap_or_default();
                let verifier = form.get("code_verifier").cloned().unwrap_or_default();
                let Some((challenge, used)) = self.codes.get_mut(&code) else {
                    return error(400, "invalid_grant", "code doesn't exist or has expired");
                };
                if *used {
                    return error(400, "invalid_grant", "code has already been used");
                }
                *used = true;
                if s256(&verifier) != *challenge {
                    return error(400, "invalid_grant", "invalid code verifier");
                }
                true
            }
            Some("refresh_token") => {
                let t = form.get("refresh_token").cloned().unwrap_or_default();
                if !self.refresh.contains(&t) {
                    return error(400, "invalid_grant", "refresh token is invalid or revoked");
                }
                false
            }
            _ => return error(400, "unsupported_grant_type", "grant_type"),
        };
        let access = format!("sl.{}", crate::ids::random_hex(48));
        self.access
            .insert(access.clone(), Instant::now() + self.token_ttl);
        self.issued += 1;
        let mut answer = json!({"access_token": access, "token_type": "bearer",
            "expires_in": self.token_ttl.as_secs().max(1)});
        if with_refresh {
            let refresh = crate::ids::random_hex(64);
            self.refresh.insert(refresh.clone());
            answer["refresh_token"] = json!(refresh);
            answer["scope"] = json!(form.get("scope").cloned().unwrap_or_default());
        }
        Response::json(200, answer)
    }
}

/// `application/x-www-form-urlencoded` fields.
pub fn form(body: &str) -> HashMap<String, String> {
    body.split('&')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| {
            (
                percent_decode(&k.replace('+', " ")),
                percent_decode(&v.replace('+', " ")),
            )
        })
        .collect()
}

/// `Authorization: Basic …` as (user, password), percent-decoded as RFC 6749 §2.3.1
/// has them encoded.
fn basic(header: Option<&str>) -> Option<(String, String)> {
    use base64::Engine;
    let b = header?.strip_prefix("Basic ")?;
    let text = String::from_utf8(base64::engine::general_purpose::STANDARD.decode(b).ok()?).ok()?;
    let (u, p) = text.split_once(':')?;
    Some((percent_decode(u), percent_decode(p)))
}

fn s256(verifier: &str) -> String {
    crate::http::credential::pkce_challenge(verifier)
}
