//! Where scimsync sends credentials: which URLs a config may name, and which links a
//! service may send it on to.
//!
//! Both are decided on the parsed URL, never on its text: `http://127.evil.example`
//! starts like a loopback address and is not one, and `http://127.0.0.1@evil.example`
//! is a request to `evil.example`. Plain http is only for loopback (the emulators);
//! a page or delta link must stay on the origin the bearer token was meant for.

use std::net::IpAddr;
use url::{Host, Url};

/// Parses a URL, refusing forms that hide where it goes (user info).
pub fn parse(text: &str) -> Result<Url, String> {
    let url = Url::parse(text).map_err(|e| format!("\"{text}\" is not a URL ({e})"))?;
    if !url.username().is_empty() || url.password().is_some() {
        return Err(format!(
            "\"{}\" carries user info before the host; write the host alone",
            url.host_str().unwrap_or("")
        ));
    }
    if url.host().is_none() {
        return Err(format!("\"{text}\" names no host"));
    }
    Ok(url)
}

/// A loopback host: an address in 127.0.0.0/8 or ::1, or exactly `localhost`.
pub fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(Host::Ipv4(ip)) => IpAddr::V4(ip).is_loopback(),
        Some(Host::Ipv6(ip)) => IpAddr::V6(ip).is_loopback(),
        Some(Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        None => false,
    }
}

/// A loopback host name or address, as text (`127.0.0.1`, `::1`, `localhost`).
pub fn is_loopback_host(host: &str) -> bool {
    match host.parse::<IpAddr>() {
        Ok(ip) => ip.is_loopback(),
        Err(_) => host.eq_ignore_ascii_case("localhost"),
    }
}

/// Checks a configured service URL: https, or plain http to loopback (or when
/// `allow_insecure` says so); the message names the config key.
pub fn check(key: &str, text: &str, allow_insecure: bool) -> Result<(), String> {
    let url = parse(text).map_err(|m| format!("{key}: {m}"))?;
    match url.scheme() {
        "https" => Ok(()),
        "http" if is_loopback(&url) || allow_insecure => Ok(()),
        "http" => Err(format!(
            "{key}: {text} is plain http to a host that is not loopback; use https, or set allow_insecure_http = true in [target]"
        )),
        _ => Err(format!("{key}: \"{text}\" is not an http(s) URL")),
    }
}

/// Whether `link` (a page or delta link a service sent) stays on the origin of
/// `base`, under its path: the bearer token for `base` may go with it.
pub fn same_origin(base: &str, link: &str) -> bool {
    let (Ok(b), Ok(l)) = (parse(base), parse(link)) else {
        return false;
    };
    b.scheme() == l.scheme()
        && b.host() == l.host()
        && b.port_or_known_default() == l.port_or_known_default()
        && l.path().starts_with(b.path().trim_end_matches('/'))
}

/// A URL without its query, for messages and logs: filter values and delta
/// tokens are not written anywhere.
pub fn without_query(url: &str) -> &str {
    url.split(['?', '#']).next().unwrap_or(url)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_is_decided_on_the_parsed_host() {
        for ok in [
            "http://127.0.0.1:8080/scim/v2",
            "http://127.1.2.3/x",
            "http://localhost:1/x",
            "http://LOCALHOST/x",
            "http://[::1]:1/x",
            "https://example.org/scim",
        ] {
            assert!(check("k", ok, false).is_ok(), "{ok}");
        }
        for bad in [
            "http://127.evil.example/x",
            "http://127.0.0.1.nip.io/x",
            "http://localhost.evil.example/x",
            "http://example.org/scim",
            "http://[::2]/x",
        ] {
            let e = check("k", bad, false).unwrap_err();
            assert!(e.contains("plain http"), "{bad}: {e}");
        }
        for bad in [
            "http://127.0.0.1@evil.example/x",
            "https://user:pw@example.org/x",
            "http://127.0.0.1:80@evil.example/",
        ] {
            let e = check("k", bad, true).unwrap_err();
            assert!(e.contains("user info"), "{bad}: {e}");
        }
        assert!(check("k", "http://example.org/scim", true).is_ok());
        assert!(check("k", "ftp://example.org", true).is_err());
        assert!(check("k", "not a url", true).is_err());
    }

    #[test]
    fn links_stay_on_their_origin() {
        let base = "https://graph.microsoft.com";
        assert!(same_origin(
            base,
            "https://graph.microsoft.com/v1.0/users?$skiptoken=x"
        ));
        assert!(same_origin(
            base,
            "https://GRAPH.microsoft.com:443/v1.0/users"
        ));
        for bad in [
            "http://graph.microsoft.com/v1.0/users",
            "https://graph.microsoft.com.evil.example/v1.0/users",
            "https://graph.microsoft.com@evil.example/v1.0/users",
            "https://graph.microsoft.com:8443/v1.0/users",
            "https://evil.example/v1.0/users",
            "//evil.example/v1.0",
        ] {
            assert!(!same_origin(base, bad), "{bad}");
        }
        let emu = "http://127.0.0.1:4000";
        assert!(same_origin(emu, "http://127.0.0.1:4000/v1.0/x"));
        assert!(!same_origin(emu, "http://127.0.0.1:4001/v1.0/x"));
        assert!(!same_origin(emu, "http://127.0.0.2:4000/v1.0/x"));
    }
}
