//! Credentials: where a bearer token comes from, and keeping it good for as long as
//! scimsync runs.
//!
//! A secret is referenced, not copied: `env:NAME`, `file:PATH` or a literal, read
//! when it is needed, and read again when its file changes (`reload`), so a rotated
//! token reaches a running daemon. A target's bearer token is either such a secret,
//! or Dropbox's OAuth 2 offline access: an access token obtained with the refresh
//! token (`grant_type=refresh_token`), held in memory only, renewed ahead of its
//! expiry and once more after a 401, and shared by every worker of the pool — one
//! refresh per token lifetime, not one per request. A refresh token the service
//! refuses (`invalid_grant`: revoked, expired, the app removed) is an error that names
//! the fix: `scimsync authorize`. Tokens never leave memory: not in logs, errors,
//! plans or the state.

use super::{ErrorClass, TargetError};
use super::{Http, Reply};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A secret value. Its `Debug` and `Display` never show the value, so it cannot leak
/// into a log line or an error message by accident.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// Where a secret lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretRef {
    Literal(Secret),
    Env(String),
    File(PathBuf),
}

impl SecretRef {
    /// `env:NAME`, `file:PATH` (relative to `base`, the config's folder) or a literal.
    pub fn parse(value: &str, base: &Path) -> SecretRef {
        if let Some(name) = value.strip_prefix("env:") {
            SecretRef::Env(name.to_string())
        } else if let Some(p) = value.strip_prefix("file:") {
            let path = Path::new(p);
            SecretRef::File(if path.is_absolute() {
                path.to_path_buf()
            } else {
                base.join(path)
            })
        } else {
            SecretRef::Literal(Secret::new(value))
        }
    }

    /// The secret as it is now; a message that says what is missing otherwise.
    pub fn resolve(&self) -> Result<Secret, String> {
        match self {
            SecretRef::Literal(s) => Ok(s.clone()),
            SecretRef::Env(name) => match std::env::var(name) {
                Ok(v) if !v.is_empty() => Ok(Secret::new(v)),
                _ => Err(format!("environment variable {name} is not set")),
            },
            SecretRef::File(path) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|e| format!("cannot read secret file {}: {e}", path.display()))?;
                if crate::private::readable_by_others(path) {
                    log::warn!(
                        "secret file {} is readable by every user; chmod 600 it",
                        path.display()
                    );
                }
                let v = text.trim().to_string();
                if v.is_empty() {
                    return Err(format!("secret file {} is empty", path.display()));
                }
                Ok(Secret::new(v))
            }
        }
    }

    /// The file a `file:` secret is read from.
    pub fn file(&self) -> Option<&Path> {
        match self {
            SecretRef::File(p) => Some(p),
            _ => None,
        }
    }
}

/// Dropbox OAuth 2 offline access, as configured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OAuth {
    pub app_key: String,
    /// Optional with PKCE (a public client authenticates with its key alone).
    pub app_secret: Option<SecretRef>,
    pub refresh_token: SecretRef,
    pub token_url: String,
    pub authorize_url: String,
    pub scopes: Vec<String>,
}

/// The scopes `authorize` asks for unless `scopes` says otherwise: what the SCIM
/// and Business API calls scimsync makes need.
pub const DEFAULT_SCOPES: [&str; 6] = [
    "members.read",
    "members.write",
    "members.delete",
    "groups.read",
    "groups.write",
    "team_info.read",
];

/// How a target is authenticated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Credential {
    /// A static bearer token.
    Token(SecretRef),
    OAuth(OAuth),
}

impl Credential {
    /// The secret files behind it (watched by the daemon).
    pub fn files(&self) -> Vec<PathBuf> {
        let refs: Vec<&SecretRef> = match self {
            Credential::Token(r) => vec![r],
            Credential::OAuth(o) => std::iter::once(&o.refresh_token)
                .chain(o.app_secret.as_ref())
                .collect(),
        };
        refs.into_iter()
            .filter_map(|r| r.file().map(Path::to_path_buf))
            .collect()
    }
}

/// A bearer token kept good; clones share it (the pool's workers).
#[derive(Clone)]
pub struct Bearer {
    inner: Arc<Mutex<Inner>>,
}

struct Inner {
    credential: Credential,
    /// The command that fixes a refused authorization (`scimsync authorize`, with
    /// `--legacy` for `[legacy]`).
    fix: &'static str,
    http: Option<Http>,
    current: Option<Current>,
    refreshes: u64,
}

struct Current {
    token: Secret,
    /// Renew from this instant on (OAuth); `None` for a static token.
    renew_at: Option<Instant>,
}

/// Renew an access token this long before it expires (at most a tenth of its life).
const RENEW_EARLY: Duration = Duration::from_secs(300);

impl Bearer {
    pub fn new(credential: Credential, fix: &'static str, timeout: Duration) -> Bearer {
        let http = matches!(credential, Credential::OAuth(_))
            .then(|| Http::new(Bearer::fixed(Secret::new("")), timeout, "application/json"));
        Bearer {
            inner: Arc::new(Mutex::new(Inner {
                credential,
                fix,
                http,
                current: None,
                refreshes: 0,
            })),
        }
    }

    /// A token that is what it is (tests, the token endpoint's own client).
    pub fn fixed(token: Secret) -> Bearer {
        Bearer::new(
            Credential::Token(SecretRef::Literal(token)),
            "",
            RENEW_EARLY,
        )
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        match self.inner.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        }
    }

    /// The token to send now: the one held while it is good, else a fresh one (one
    /// caller refreshes; the others wait on the lock and take its result).
    pub fn token(&self) -> Result<Secret, TargetError> {
        let mut inner = self.lock();
        if let Some(c) = &inner.current {
            if c.renew_at.is_none_or(|t| Instant::now() < t) {
                return Ok(c.token.clone());
            }
        }
        let fresh = inner.obtain()?;
        let token = fresh.token.clone();
        inner.current = Some(fresh);
        Ok(token)
    }

    /// After a 401 with `used`: whether a retry may help (a renewed access token, or a
    /// token file that changed), having dropped the token so the next `token` gets
    /// another. A static literal or `env:` token stays what it is.
    pub fn rejected(&self, used: &Secret) -> bool {
        let mut inner = self.lock();
        let same = inner.current.as_ref().is_some_and(|c| &c.token == used);
        match &inner.credential {
            Credential::OAuth(_) => {
                if same {
                    inner.current = None;
                }
                true
            }
            Credential::Token(r @ SecretRef::File(_)) => {
                let changed = r.resolve().is_ok_and(|now| &now != used);
                if changed || same {
                    inner.current = None;
                }
                changed
            }
            Credential::Token(_) => false,
        }
    }

    /// Forgets the token held, so the next request reads the secrets again (a file
    /// that changed, SIGHUP).
    pub fn reload(&self) {
        self.lock().current = None;
    }

    /// Access tokens obtained so far with the refresh token.
    pub fn refreshes(&self) -> u64 {
        self.lock().refreshes
    }
}

impl Inner {
    fn obtain(&mut self) -> Result<Current, TargetError> {
        let auth = |m: String| TargetError::new(ErrorClass::Auth, None, m);
        let oauth = match &self.credential {
            Credential::Token(r) => {
                return Ok(Current {
                    token: r.resolve().map_err(auth)?,
                    renew_at: None,
                })
            }
            Credential::OAuth(o) => o.clone(),
        };
        let refresh = oauth.refresh_token.resolve().map_err(|m| {
            auth(format!(
                "no refresh token ({m}): run `{}` to authorize scimsync",
                self.fix
            ))
        })?;
        let secret = match &oauth.app_secret {
            Some(r) => Some(r.resolve().map_err(auth)?),
            None => None,
        };
        let http = self
            .http
            .as_mut()
            .ok_or_else(|| auth("no token endpoint client".into()))?;
        let mut form = vec![
            ("grant_type", "refresh_token".to_string()),
            ("refresh_token", refresh.expose().to_string()),
        ];
        // With an app secret the client authenticates with HTTP Basic; a PKCE
        // client without one names itself in the form.
        let basic = secret.as_ref().map(|s| (oauth.app_key.clone(), s.clone()));
        if basic.is_none() {
            form.push(("client_id", oauth.app_key.clone()));
        }
        let fields: Vec<(&str, &str)> = form.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let reply = http.post_form_as(&oauth.token_url, &fields, basic.as_ref())?;
        let answer = token_answer(&reply, self.fix)?;
        self.refreshes += 1;
        let life = Duration::from_secs(answer.expires_in.max(1));
        let early = RENEW_EARLY.min(life / 10);
        log::debug!(
            "access token renewed at {}; good for {} s",
            crate::endpoint::without_query(&oauth.token_url),
            answer.expires_in
        );
        Ok(Current {
            token: answer.access_token,
            renew_at: Some(Instant::now() + life - early),
        })
    }
}

/// A certificate credential for Entra ID: the private key signs a client assertion
/// (RFC 7523, as Entra wants it: RS256, the certificate's SHA-256 thumbprint as
/// `x5t#S256`). Signing is ring's, as rustls uses it.
pub struct Certificate {
    key: ring::signature::RsaKeyPair,
    /// base64url of the SHA-256 of the certificate's DER.
    thumbprint: String,
}

impl Certificate {
    /// Reads a PEM holding the private key (PKCS#8 or PKCS#1) and the certificate,
    /// as Azure tooling writes it.
    pub fn load(path: &Path) -> Result<Certificate, String> {
        use rustls_pki_types::pem::PemObject;
        use rustls_pki_types::{CertificateDer, PrivateKeyDer};
        let bytes =
            std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        if crate::private::readable_by_others(path) {
            log::warn!(
                "{} holds a private key and is readable by every user; chmod 600 it",
                path.display()
            );
        }
        let cert = CertificateDer::pem_slice_iter(&bytes)
            .next()
            .ok_or_else(|| format!("{} holds no CERTIFICATE", path.display()))?
            .map_err(|e| {
                format!(
                    "{}: the certificate is not readable PEM ({e:?})",
                    path.display()
                )
            })?;
        let key = PrivateKeyDer::from_pem_slice(&bytes).map_err(|_| {
            format!(
                "{} holds no readable private key (PKCS#8 \"PRIVATE KEY\" or PKCS#1 \"RSA PRIVATE KEY\")",
                path.display()
            )
        })?;
        let key = match &key {
            PrivateKeyDer::Pkcs8(k) => {
                ring::signature::RsaKeyPair::from_pkcs8(k.secret_pkcs8_der())
            }
            PrivateKeyDer::Pkcs1(k) => ring::signature::RsaKeyPair::from_der(k.secret_pkcs1_der()),
            _ => {
                return Err(format!(
                    "{}: the private key is not an RSA key (Entra certificate credentials are RSA)",
                    path.display()
                ))
            }
        }
        .map_err(|e| format!("{}: the private key is not usable: {e}", path.display()))?;
        Ok(Certificate {
            key,
            thumbprint: b64url(ring::digest::digest(&ring::digest::SHA256, cert.as_ref()).as_ref()),
        })
    }

    /// A signed assertion for a token request at `audience` (the token endpoint),
    /// good for 10 minutes.
    pub fn assertion(&self, client_id: &str, audience: &str) -> Result<String, String> {
        let now = crate::clock::now();
        let header = serde_json::json!({"alg": "RS256", "typ": "JWT", "x5t#S256": self.thumbprint});
        let claims = serde_json::json!({
            "aud": audience, "iss": client_id, "sub": client_id,
            "jti": crate::ids::guid(), "nbf": now, "iat": now, "exp": now + 600,
        });
        let signing_input = format!(
            "{}.{}",
            b64url(header.to_string().as_bytes()),
            b64url(claims.to_string().as_bytes())
        );
        let rng = ring::rand::SystemRandom::new();
        let mut signature = vec![0u8; self.key.public().modulus_len()];
        self.key
            .sign(
                &ring::signature::RSA_PKCS1_SHA256,
                &rng,
                signing_input.as_bytes(),
                &mut signature,
            )
            .map_err(|_| "signing the client assertion failed".to_string())?;
        Ok(format!("{signing_input}.{}", b64url(&signature)))
    }
}

/// PKCE S256 (RFC 7636): base64url(SHA-256(verifier)).
pub fn pkce_challenge(verifier: &str) -> String {
    use sha2::Digest;
    b64url(&sha2::Sha256::digest(verifier.as_bytes()))
}

/// base64url without padding (JWT, PKCE).
pub fn b64url(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// A token endpoint's answer.
pub struct TokenAnswer {
    pub access_token: Secret,
    pub refresh_token: Option<Secret>,
    pub expires_in: u64,
}

/// Reads a token endpoint's answer; an OAuth error says what it means and the fix.
pub fn token_answer(reply: &Reply, fix: &str) -> Result<TokenAnswer, TargetError> {
    let v: serde_json::Value = serde_json::from_str(&reply.body).unwrap_or_default();
    if reply.status == 200 {
        let access = v
            .get("access_token")
            .and_then(|t| t.as_str())
            .filter(|t| !t.is_empty())
            .ok_or_else(|| {
                TargetError::new(
                    ErrorClass::Transport,
                    Some(200),
                    "the token endpoint answered without an access_token",
                )
            })?;
        return Ok(TokenAnswer {
            access_token: Secret::new(access),
            refresh_token: v
                .get("refresh_token")
                .and_then(|t| t.as_str())
                .map(Secret::new),
            expires_in: v
                .get("expires_in")
                .and_then(|e| e.as_u64())
                .unwrap_or(14_400),
        });
    }
    let code = v.get("error").and_then(|e| e.as_str()).unwrap_or("");
    // The description may quote what was sent; only the code is repeated.
    Err(match code {
        "invalid_grant" => TargetError::new(
            ErrorClass::Revoked,
            Some(reply.status),
            format!("The Dropbox authorization was revoked or expired: run `{fix}`."),
        ),
        "invalid_client" | "unauthorized_client" => TargetError::new(
            ErrorClass::Auth,
            Some(reply.status),
            format!("the token endpoint refused the app ({code}): check app_key and app_secret"),
        ),
        _ if reply.status >= 500 || reply.status == 429 => TargetError::new(
            ErrorClass::Server,
            Some(reply.status),
            format!("the token endpoint answered HTTP {}", reply.status),
        ),
        _ => TargetError::new(
            ErrorClass::Auth,
            Some(reply.status),
            format!(
                "the token endpoint answered HTTP {} {}",
                reply.status,
                if code.is_empty() { "" } else { code }
            ),
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn certificate_assertions_verify_against_the_certificate() {
        use rustls_pki_types::pem::PemObject;
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
        for file in ["graph-cert.pem", "graph-cert-pkcs1.pem"] {
            let cert = Certificate::load(&dir.join(file)).expect(file);
            let jwt = cert
                .assertion("client", "https://login.example/t/oauth2/v2.0/token")
                .unwrap();
            let parts: Vec<&str> = jwt.split('.').collect();
            assert_eq!(parts.len(), 3);
            let der = rustls_pki_types::CertificateDer::pem_file_iter(dir.join(file))
                .unwrap()
                .next()
                .unwrap()
                .unwrap();
            let ee = webpki::EndEntityCert::try_from(&der).unwrap();
            use base64::Engine;
            let sig = base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(parts[2])
                .unwrap();
            let msg = format!("{}.{}", parts[0], parts[1]);
            ee.verify_signature(
                webpki::ring::RSA_PKCS1_2048_8192_SHA256,
                msg.as_bytes(),
                &sig,
            )
            .expect("signed with the certificate's key");
            let header: serde_json::Value = serde_json::from_slice(
                &base64::engine::general_purpose::URL_SAFE_NO_PAD
                    .decode(parts[0])
                    .unwrap(),
            )
            .unwrap();
            assert_eq!(header["alg"], "RS256");
            assert_eq!(header["x5t#S256"], cert.thumbprint.as_str());
            let claims: serde_json::Value = serde_json::from_slice(
                &base64::engine::general_purpose::URL_SAFE_NO_PAD
                    .decode(parts[1])
                    .unwrap(),
            )
            .unwrap();
            assert_eq!(claims["iss"], "client");
            assert_eq!(claims["sub"], "client");
            assert!(claims["exp"].as_i64().unwrap() - claims["nbf"].as_i64().unwrap() <= 600);
            // Tampered: refused.
            assert!(ee
                .verify_signature(
                    webpki::ring::RSA_PKCS1_2048_8192_SHA256,
                    format!("{msg}x").as_bytes(),
                    &sig
                )
                .is_err());
        }
        assert!(Certificate::load(&dir.join("README.md"))
            .err()
            .unwrap()
            .contains("no CERTIFICATE"));
    }

    #[test]
    fn pkce_challenge_is_rfc_7636_s256() {
        // RFC 7636 appendix B.
        assert_eq!(
            pkce_challenge("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"),
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        );
    }

    #[test]
    fn secret_refs_parse_and_resolve_now() {
        let base = std::env::temp_dir().join(format!(
            "scimsync-cred-{}-{}",
            std::process::id(),
            crate::ids::random_hex(6)
        ));
        crate::private::create_dir(&base).unwrap();
        let r = SecretRef::parse("file:tok", &base);
        assert_eq!(r.file(), Some(base.join("tok").as_path()));
        assert!(r.resolve().unwrap_err().contains("cannot read"));
        crate::private::write(&base.join("tok"), b"one\n").unwrap();
        assert_eq!(r.resolve().unwrap().expose(), "one");
        let bearer = Bearer::new(Credential::Token(r), "", RENEW_EARLY);
        assert_eq!(bearer.token().unwrap().expose(), "one");
        // The file is rotated: a 401 with the old token finds the new one.
        crate::private::write(&base.join("tok"), b"two").unwrap();
        assert!(bearer.rejected(&Secret::new("one")));
        assert_eq!(bearer.token().unwrap().expose(), "two");
        assert!(!bearer.rejected(&Secret::new("two")), "unchanged: no retry");
        assert!(matches!(SecretRef::parse("env:X_Y", &base), SecretRef::Env(n) if n == "X_Y"));
        assert!(matches!(
            SecretRef::parse("lit", &base),
            SecretRef::Literal(_)
        ));
        let _ = std::fs::remove_dir_all(&base);
    }
}
