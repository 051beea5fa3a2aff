//! The banner WebSocket (`{prefix}/ws`, docs/banner.md), served by the proxy itself.
//!
//! A handshake that opens its own connection is taken by [`crate::front`] and runs on that
//! connection, bare TCP or TLS ([`serve_connection`]). One that arrives inside an HTTP session
//! (a kept-alive connection) is answered in `request_filter`: pingora's `ProxyHttp` cannot hand
//! over the downstream connection, so the upgraded byte stream is bridged into a
//! `tokio::io::duplex` whose other end runs tokio-tungstenite ([`serve`]). Either way the socket task owns the
//! protocol and [`admit`] decides who may open one.
//!
//! The parts: this module admits sockets and opens them; [`transport`] is the byte level
//! (bounded writes, the session bridge); [`conn`] is one socket's protocol; [`rate`] is its
//! message budget.
//!
//! Limits: messages over [`transport::MAX_MESSAGE`] close with 1009; more than
//! [`rate::RATE_BURST`] messages in a burst get an error, and sustained flooding closes with
//! 1008; a socket silent for [`conn::IDLE_TIMEOUT`] (no pong, no message) is closed; the JWT's
//! expiry ends the socket with `session_expired` and close code 4401.

mod conn;
mod queue;
mod rate;
mod transport;

pub(crate) use self::transport::pump;

use std::net::IpAddr;
use std::sync::Arc;

use auth::Identity;
use http::{header, HeaderMap, HeaderValue};
use pingora::http::ResponseHeader;
use pingora::prelude::*;
use pingora::proxy::Session;
use tokio::io::AsyncWriteExt;
use tokio_tungstenite::tungstenite;
use tokio_tungstenite::tungstenite::protocol::Role;
use tokio_tungstenite::WebSocketStream;

pub use self::transport::Transport;
use self::transport::{socket_config, Ws, WRITE_TIMEOUT};
use crate::banner::Push;
use crate::cookies::{cookie, SESSION_COOKIE};
use crate::origin::check_same_origin;
use crate::respond::Reply;
use crate::state::Latch;

/// The key of a WebSocket handshake (`Upgrade: websocket`, a key, version 13), or `None` when
/// `headers` are not one.
pub fn handshake_key(headers: &HeaderMap) -> Option<HeaderValue> {
    let upgrade = headers
        .get(header::UPGRADE)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"websocket"));
    let version_ok = headers
        .get(header::SEC_WEBSOCKET_VERSION)
        .is_some_and(|v| v.as_bytes() == b"13");
    let key = headers.get(header::SEC_WEBSOCKET_KEY)?;
    (upgrade && version_ok).then(|| key.clone())
}

/// A banner socket that may open: who it is for, and its place in the hub.
pub struct Admitted {
    key: HeaderValue,
    /// The app of the page, by the handshake's `Host`: the socket watches its pages only.
    app: crate::apps::AppId,
    identity: Arc<Identity>,
    sid: Option<String>,
    socket_id: u64,
    pushes: tokio::sync::mpsc::Receiver<Push>,
}

/// Decides whether a WebSocket handshake may open a banner socket (same origin, a valid token,
/// under the per-user limit) and registers it with the hub if so. The refusal is the reply to
/// send instead of the 101.
pub fn admit(
    latch: &Latch,
    headers: &HeaderMap,
    peer: Option<IpAddr>,
    scheme: &str,
) -> Result<Admitted, Reply> {
    let Some(key) = handshake_key(headers) else {
        return Err(Reply::problem(
            400,
            "Not a WebSocket handshake",
            "connect with a WebSocket client",
        )
        .header(header::SEC_WEBSOCKET_VERSION, "13"));
    };
    // The page's app, by the handshake's Host: a socket watches pages of that app only, so
    // a page path names the same lock as the page's own request did.
    let app = latch
        .apps
        .route(&http::Uri::from_static("/"), headers)
        .map_err(|_| {
            let status = latch.config.proxy.unknown_host.status();
            Reply::problem(
                status,
                "Unknown host",
                "this server does not serve that host name",
            )
        })?;
    if let Err(refused) = check_same_origin(headers, scheme) {
        return Err(Reply::problem(403, "Forbidden", refused.message()));
    }
    let identity = latch.authenticate(headers, peer).map_err(|e| {
        Reply::problem(401, "Unauthorized", &e.to_string())
            .header(header::WWW_AUTHENTICATE, "Bearer realm=\"latch\"")
    })?;
    let sid = cookie(headers, SESSION_COOKIE).map(str::to_string);
    let (socket_id, pushes) = latch
        .hub
        .register(&identity.user, sid.as_deref(), identity.sign_in.as_deref())
        .map_err(|e| {
            Reply::problem(429, "Too many banner sockets", &e.to_string())
                .header(header::RETRY_AFTER, "10")
        })?;
    Ok(Admitted {
        key,
        app,
        identity,
        sid,
        socket_id,
        pushes,
    })
}

/// Serves a banner socket whose handshake opened its own connection, on that connection (bare
/// TCP, or its TLS stream): the 101, then the protocol until either side ends.
pub async fn serve_connection(latch: &Arc<Latch>, mut io: Box<dyn Transport>, admitted: Admitted) {
    let accept = tungstenite::handshake::derive_accept_key(admitted.key.as_bytes());
    let response = format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Accept: {accept}\r\n\r\n"
    );
    let written = tokio::time::timeout(WRITE_TIMEOUT, async {
        io.write_all(response.as_bytes()).await?;
        io.flush().await
    })
    .await;
    if !matches!(written, Ok(Ok(()))) {
        latch.hub.unregister(admitted.socket_id);
        return;
    }
    let ws = WebSocketStream::from_raw_socket(io, Role::Server, Some(socket_config())).await;
    run_admitted(latch, ws, admitted, "connection").await;
}

/// Runs an open banner socket to its end, then takes it out of the hub.
async fn run_admitted(latch: &Arc<Latch>, ws: Ws, admitted: Admitted, via: &'static str) {
    let Admitted {
        key,
        app,
        identity,
        sid,
        socket_id,
        pushes,
    } = admitted;
    drop(key);
    latch.metrics.banner_sockets.inc();
    latch
        .metrics
        .banner_sockets_opened
        .with_label_values(&[via])
        .inc();
    conn::run_socket(latch.clone(), socket_id, app, identity, sid, ws, pushes).await;
    latch.metrics.banner_sockets.dec();
    latch.hub.unregister(socket_id);
}

/// Answers a handshake that arrived inside an HTTP session (on a kept-alive connection, or
/// refused at the front), then bridges the upgraded connection until either side ends.
pub async fn serve(latch: &Arc<Latch>, session: &mut Session) -> Result<()> {
    let peer = crate::peer::peer_ip(session);
    let scheme = crate::peer::scheme(session, latch.config.proxy.public_scheme);
    let admitted = match admit(latch, &session.req_header().headers, peer, scheme) {
        Ok(admitted) => admitted,
        Err(reply) => return reply.send(session, false).await,
    };
    let mut resp = ResponseHeader::build(101, Some(3))?;
    resp.insert_header(header::UPGRADE, "websocket")?;
    resp.insert_header(header::CONNECTION, "Upgrade")?;
    resp.insert_header(
        header::SEC_WEBSOCKET_ACCEPT,
        tungstenite::handshake::derive_accept_key(admitted.key.as_bytes()),
    )?;
    if let Err(e) = session.write_response_header(Box::new(resp), false).await {
        latch.hub.unregister(admitted.socket_id);
        return Err(e);
    }

    let (bridge, theirs) = tokio::io::duplex(4 * 1024);
    let stream: Box<dyn Transport> = Box::new(theirs);
    let ws = WebSocketStream::from_raw_socket(stream, Role::Server, Some(socket_config())).await;
    let task = tokio::spawn({
        let latch = latch.clone();
        async move { run_admitted(&latch, ws, admitted, "session").await }
    });
    pump(session, bridge, transport::READ_BUFFER).await;
    // The client is gone; the socket task sees EOF on its side and cleans up.
    let _ = task.await;
    Ok(())
}
