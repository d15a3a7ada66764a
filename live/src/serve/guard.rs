//! Who may talk to the server: the protections Jupyter gives servers that users run on their
//! desks. A web page the user visits must not be able to drive the server:
//!
//! - **DNS rebinding**: the `Host` header must name a loopback address (`localhost`,
//!   `127.x.x.x`, `[::1]`) and the port the server listens on; a page served from
//!   `evil.example` whose name was rebound to 127.0.0.1 sends `Host: evil.example` and is
//!   refused (403).
//! - **Cross-origin requests**: a browser names the page's origin in `Origin` (and, in recent
//!   browsers, `Sec-Fetch-Site`); a request whose origin is not the server's own is refused
//!   (403), whatever its content type. Clients that are not browsers send neither header.
//! - **Token** (optional, `--token-file`): every request must carry
//!   `Authorization: Bearer <token>` (401 otherwise).

use super::api::ApiError;
use axum::http::{header, HeaderMap};
use std::net::IpAddr;

/// The checks for one listening address.
#[derive(Debug, Clone)]
pub struct Guard {
    port: u16,
    token: Option<String>,
}

impl Guard {
    /// Checks for a server listening on `port`, requiring `token` when given.
    pub fn new(port: u16, token: Option<String>) -> Self {
        Guard { port, token }
    }

    /// Refuses a request whose headers fail a check, naming the header and what was expected.
    pub fn check(&self, headers: &HeaderMap) -> Result<(), ApiError> {
        let forbidden = |error: String, field: &str| ApiError {
            status: 403,
            error,
            field: Some(field.to_string()),
        };
        let host = headers
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .ok_or_else(|| {
                forbidden(
                    "a Host header naming this server's loopback address is required".into(),
                    "Host",
                )
            })?;
        if !self.is_own_authority(host) {
            return Err(forbidden(
                format!(
                    "Host {host:?} is not this server (expected localhost, 127.0.0.1 or [::1] \
                     with port {}): refused as a possible DNS rebinding",
                    self.port
                ),
                "Host",
            ));
        }
        if let Some(origin) = headers.get(header::ORIGIN) {
            let origin = origin.to_str().unwrap_or("");
            let same = origin
                .strip_prefix("http://")
                .is_some_and(|authority| self.is_own_authority(authority));
            if !same {
                return Err(forbidden(
                    format!("cross-origin request from Origin {origin:?} refused"),
                    "Origin",
                ));
            }
        }
        if let Some(site) = headers.get("sec-fetch-site") {
            let site = site.to_str().unwrap_or("");
            if !matches!(site, "same-origin" | "none") {
                return Err(forbidden(
                    format!("cross-site request (Sec-Fetch-Site: {site}) refused"),
                    "Sec-Fetch-Site",
                ));
            }
        }
        if let Some(token) = &self.token {
            let given = headers
                .get(header::AUTHORIZATION)
                .and_then(|h| h.to_str().ok())
                .and_then(|h| h.strip_prefix("Bearer "))
                .unwrap_or("");
            if !constant_time_eq(given.as_bytes(), token.as_bytes()) {
                return Err(ApiError {
                    status: 401,
                    error: "this server needs `Authorization: Bearer <token>` with the token \
                            of its --token-file"
                        .into(),
                    field: Some("Authorization".into()),
                });
            }
        }
        Ok(())
    }

    /// Whether `authority` (`host[:port]`) names a loopback address and this server's port.
    fn is_own_authority(&self, authority: &str) -> bool {
        let (host, port) = match authority.rsplit_once(':') {
            // `[::1]` alone has colons inside the brackets, not before a port.
            Some((h, p)) if !p.contains(']') => (h, p.parse::<u16>().ok()),
            _ => (authority, Some(80)),
        };
        if port != Some(self.port) {
            return false;
        }
        let host = host.trim_start_matches('[').trim_end_matches(']');
        host.eq_ignore_ascii_case("localhost")
            || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
    }
}

/// Compares two secrets in time that does not depend on where they first differ.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let mut diff = a.len() ^ b.len();
    for (i, &x) in a.iter().enumerate() {
        diff |= usize::from(x ^ b.get(i % b.len().max(1)).copied().unwrap_or(0));
    }
    diff == 0
}

/// Reads a token file: its first line, trimmed; refuses an empty or unreadable file.
pub fn read_token(path: &std::path::Path) -> anyhow::Result<String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| anyhow::anyhow!("--token-file {}: {e}", path.display()))?;
    let token = text.lines().next().unwrap_or("").trim().to_string();
    anyhow::ensure!(
        !token.is_empty(),
        "--token-file {}: the first line is empty; expected the token",
        path.display()
    );
    Ok(token)
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn loopback_hosts_and_same_origin_pass_the_rest_is_refused() {
        let g = Guard::new(8080, None);
        for host in [
            "127.0.0.1:8080",
            "localhost:8080",
            "[::1]:8080",
            "LOCALHOST:8080",
        ] {
            assert!(g.check(&headers(&[("host", host)])).is_ok(), "{host}");
        }
        for host in [
            "evil.example:8080",
            "127.0.0.1:9090",
            "127.0.0.1",
            "10.0.0.1:8080",
            "[::1]",
            "",
        ] {
            let e = g.check(&headers(&[("host", host)])).unwrap_err();
            assert_eq!(
                (e.status, e.field.as_deref()),
                (403, Some("Host")),
                "{host}"
            );
        }
        assert_eq!(g.check(&HeaderMap::new()).unwrap_err().status, 403);
        let same = [
            ("host", "127.0.0.1:8080"),
            ("origin", "http://localhost:8080"),
            ("sec-fetch-site", "same-origin"),
        ];
        assert!(g.check(&headers(&same)).is_ok());
        for (k, v) in [
            ("origin", "http://evil.example"),
            ("origin", "null"),
            ("origin", "https://127.0.0.1:8080"),
            ("sec-fetch-site", "cross-site"),
            ("sec-fetch-site", "same-site"),
        ] {
            let e = g
                .check(&headers(&[("host", "127.0.0.1:8080"), (k, v)]))
                .unwrap_err();
            assert_eq!(e.status, 403, "{k}: {v}");
            assert!(e.error.contains(v), "{}", e.error);
        }
        // Port 80 may be left out of the Host header.
        assert!(Guard::new(80, None)
            .check(&headers(&[("host", "localhost")]))
            .is_ok());
    }

    #[test]
    fn a_token_is_required_when_set() {
        let g = Guard::new(1, Some("s3cret".into()));
        let host = ("host", "127.0.0.1:1");
        assert!(g
            .check(&headers(&[host, ("authorization", "Bearer s3cret")]))
            .is_ok());
        for auth in ["Bearer s3cre", "Bearer s3cret2", "s3cret", "Basic s3cret"] {
            let e = g
                .check(&headers(&[host, ("authorization", auth)]))
                .unwrap_err();
            assert_eq!(e.status, 401, "{auth}");
        }
        assert_eq!(g.check(&headers(&[host])).unwrap_err().status, 401);
        assert!(constant_time_eq(b"", b""));
        assert!(!constant_time_eq(b"a", b""));
    }
}
