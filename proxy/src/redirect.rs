//! The plain listener that sends browsers to HTTPS (`tls.redirect_listen`): every request gets
//! 308 to the same host, path and query on the HTTPS listener, and the connection is closed.
//!
//! The `Host` header is the client's to choose, so it could make the redirect point at any site
//! (an open redirect). Only a host that one of the listener's certificates covers is redirected;
//! any other gets 421, a missing or malformed one 400. The request target must be a path
//! (origin-form), so the redirect never carries a host of the client's making either.
//!
//! Bounds: the client's connections count against `proxy.max_connections_per_client`, and
//! reading the head and writing the answer must fit in `proxy.header_timeout_seconds`; one
//! request per connection.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use http::{header, StatusCode};
use pingora::apps::ServerApp;
use pingora::http::ResponseHeader;
use pingora::protocols::http::ServerSession;
use pingora::protocols::Stream;
use pingora::server::ShutdownWatch;

use crate::conn_limit::ClientLimit;
use crate::tls::Certificates;

/// The redirecting listener's application.
pub struct Redirect {
    certs: Arc<Certificates>,
    /// The HTTPS listener's port; left out of the URL when it is 443.
    https_port: u16,
    clients: ClientLimit,
    deadline: Duration,
}

impl Redirect {
    pub fn new(
        certs: Arc<Certificates>,
        https_port: u16,
        max_connections_per_client: Option<u32>,
        deadline: Duration,
    ) -> Redirect {
        Redirect {
            certs,
            https_port,
            clients: ClientLimit::new(max_connections_per_client),
            deadline,
        }
    }

    async fn answer(&self, stream: Stream) {
        let mut session = ServerSession::new_http1(stream);
        if !matches!(session.read_request().await, Ok(true)) {
            return;
        }
        // One request per connection: reading the request turned keepalive on for HTTP/1.1.
        session.set_keepalive(None);
        let req = session.req_header();
        let host = req.headers.get(header::HOST).and_then(|h| h.to_str().ok());
        let target = std::str::from_utf8(req.raw_path()).unwrap_or("");
        let (status, location) =
            match location(host, target, self.https_port, |h| self.certs.covers(h)) {
                Ok(url) => (StatusCode::PERMANENT_REDIRECT, Some(url)),
                Err(status) => (status, None),
            };
        let Ok(mut resp) = ResponseHeader::build(status, Some(3)) else {
            return;
        };
        let mut ok = resp.insert_header(header::CONTENT_LENGTH, "0").is_ok()
            && resp.insert_header(header::CONNECTION, "close").is_ok();
        if let Some(url) = location {
            ok = ok && resp.insert_header(header::LOCATION, url).is_ok();
        }
        if !ok {
            return;
        }
        if session.write_response_header(Box::new(resp)).await.is_ok() {
            let _ = session.finish_body().await;
        }
        session.shutdown().await;
    }
}

#[async_trait]
impl ServerApp for Redirect {
    async fn process_new(
        self: &Arc<Self>,
        stream: Stream,
        _shutdown: &ShutdownWatch,
    ) -> Option<Stream> {
        let peer: Option<IpAddr> = stream
            .get_socket_digest()
            .and_then(|d| d.peer_addr().and_then(|a| a.as_inet()).map(|a| a.ip()));
        let _permit = self.clients.admit(peer)?;
        let _ = tokio::time::timeout(self.deadline, self.answer(stream)).await;
        None
    }
}

/// Where a request for `target` on `host` is sent: `https://host[:port]target`. A `host` that
/// is not a plain DNS name with an optional port is refused with 400, one no certificate
/// `covers` with 421 (Misdirected Request), a target that is not a path with 400.
pub fn location(
    host: Option<&str>,
    target: &str,
    https_port: u16,
    covers: impl Fn(&str) -> bool,
) -> Result<String, StatusCode> {
    let host = host.ok_or(StatusCode::BAD_REQUEST)?;
    let name = match host.rsplit_once(':') {
        Some((name, port)) if !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()) => name,
        Some(_) => return Err(StatusCode::BAD_REQUEST),
        None => host,
    };
    let name = name.trim_end_matches('.').to_ascii_lowercase();
    let plain = !name.is_empty()
        && name.len() <= 253
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
        && !name.starts_with(['.', '-'])
        && !name.contains("..");
    if !plain {
        return Err(StatusCode::BAD_REQUEST);
    }
    if !covers(&name) {
        return Err(StatusCode::MISDIRECTED_REQUEST);
    }
    // Only a path: `//evil.example/` would still be a path on this host, after the host below.
    if !target.starts_with('/') {
        return Err(StatusCode::BAD_REQUEST);
    }
    let port = if https_port == 443 {
        String::new()
    } else {
        format!(":{https_port}")
    };
    Ok(format!("https://{name}{port}{target}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(host: Option<&str>, target: &str, port: u16) -> Result<String, StatusCode> {
        location(host, target, port, |h| {
            h == "app.example.com" || h.ends_with(".wild.example.com")
        })
    }

    #[test]
    fn a_covered_host_keeps_its_path_and_query() {
        assert_eq!(
            check(Some("app.example.com"), "/a/b?x=1&y=2", 443).as_deref(),
            Ok("https://app.example.com/a/b?x=1&y=2")
        );
        assert_eq!(
            check(Some("APP.example.com:8080"), "/", 8443).as_deref(),
            Ok("https://app.example.com:8443/")
        );
        assert_eq!(
            check(Some("x.wild.example.com"), "//evil.example/", 443).as_deref(),
            Ok("https://x.wild.example.com//evil.example/")
        );
    }

    #[test]
    fn a_foreign_or_malformed_host_is_refused() {
        let cases: &[(Option<&str>, &str, StatusCode)] = &[
            (Some("evil.example"), "/", StatusCode::MISDIRECTED_REQUEST),
            (
                Some("app.example.com.evil.example"),
                "/",
                StatusCode::MISDIRECTED_REQUEST,
            ),
            (None, "/", StatusCode::BAD_REQUEST),
            (Some(""), "/", StatusCode::BAD_REQUEST),
            (
                Some("evil.example/app.example.com"),
                "/",
                StatusCode::BAD_REQUEST,
            ),
            (
                Some("app.example.com@evil.example"),
                "/",
                StatusCode::BAD_REQUEST,
            ),
            (Some("app.example.com:"), "/", StatusCode::BAD_REQUEST),
            (Some("app.example.com:x"), "/", StatusCode::BAD_REQUEST),
            (Some("[::1]"), "/", StatusCode::BAD_REQUEST),
            (
                Some("app.example.com"),
                "http://evil.example/",
                StatusCode::BAD_REQUEST,
            ),
            (Some("app.example.com"), "*", StatusCode::BAD_REQUEST),
        ];
        for (host, target, status) in cases {
            assert_eq!(check(*host, target, 443), Err(*status), "{host:?} {target}");
        }
    }
}
