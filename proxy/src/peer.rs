//! The address a request's connection comes from: what `[trusted_proxy]` peers are matched
//! against. A leaf, so the request path, the endpoints and the banner socket can all ask.

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
