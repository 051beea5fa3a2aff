//! The connection a request came on: its address (what `[trusted_proxy]` peers are matched
//! against) and whether it is TLS. A leaf, so the request path, the endpoints and the banner
//! socket can all ask.

use std::net::IpAddr;

use pingora::proxy::Session;

/// The IP address of the connection `session` came on; `None` for a connection without one
/// (a Unix socket), which is never trusted.
pub fn peer_ip(session: &Session) -> Option<IpAddr> {
    session
        .client_addr()
        .and_then(|addr| addr.as_inet())
        .map(|addr| addr.ip())
}

/// Did the request come over TLS (the HTTPS listener)?
pub fn is_tls(session: &Session) -> bool {
    session
        .digest()
        .is_some_and(|digest| digest.ssl_digest.is_some())
}

/// The scheme browsers used to reach the proxy for this request: `https` over the HTTPS
/// listener, else `proxy.public_scheme` (`https` behind a TLS load balancer).
pub fn scheme(session: &Session, configured: &'static str) -> &'static str {
    if is_tls(session) {
        "https"
    } else {
        configured
    }
}
