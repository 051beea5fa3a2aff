//! The app's own WebSockets under a rule with `websocket = "lock"`: proxied by Latch itself,
//! message by message, so that they can be closed when their owner loses the lock.
//!
//! Why not pingora: pingora 0.9 proxies an upgraded connection inside its HTTP/1 proxy loop,
//! which waits only on the two peers' bytes. Its body filters run when bytes arrive, so an
//! idle socket cannot be ended from one, and the bytes are opaque there: a close frame could
//! not be put in at a frame boundary. Nothing else wakes the loop. So once the gate has
//! granted the handshake (`gate::Kind::FencedSocket`), `request_filter` hands the request to
//! [`serve`], which:
//! 1. registers the socket under its lock and reads the lock back ([`crate::fenced`], shared
//!    with the app's event streams);
//! 2. connects to the upstream itself and sends it the handshake with the identity and lock
//!    headers, without `Sec-WebSocket-Extensions` (messages are relayed one by one, and
//!    compression is not negotiated);
//! 3. answers the client with the app's 101 (or relays a refusal) and bridges the upgraded
//!    downstream connection into a `tokio::io::duplex`, as the banner socket does, with
//!    tokio-tungstenite on both sides;
//! 4. relays messages both ways until either side closes, or until the owner loses the lock:
//!    then both sides get a close frame with code [`LOCK_LOST`] and the reason; or until the
//!    credential the socket was opened with expires: then both get [`SESSION_EXPIRED`], as the
//!    banner socket does; or until the sign-in session it was opened under ends (a logout on
//!    any instance): then both get [`SESSION_EXPIRED`] with the reason `signed out`.
//!
//! Pings are answered on each hop, not forwarded. Messages over [`MAX_MESSAGE`] close the
//! socket with 1009.

use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures::{SinkExt, StreamExt};
use http::header;
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::prelude::*;
use pingora::protocols::Stream;
use pingora::proxy::Session;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role, WebSocketConfig};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

use crate::app_sockets::Ending;
use crate::apps::AppId;
use crate::fenced::{self, Fenced};
use crate::respond::Reply;
use crate::state::Latch;
use crate::upstream::InFlight;

/// The close code an app socket gets when its owner loses the lock.
pub const LOCK_LOST: u16 = 4423;
/// The close code both sides get when the owner's credential expires (the banner's code).
pub const SESSION_EXPIRED: u16 = 4401;
/// Largest message relayed either way.
pub const MAX_MESSAGE: usize = 4 * 1024 * 1024;
/// Largest response head the app may answer a handshake with.
const MAX_HEAD: usize = 16 * 1024;
/// Largest body of a refused handshake that is relayed to the client.
const MAX_REFUSAL_BODY: usize = 64 * 1024;
/// How long connecting to the app and its answer to the handshake may take.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long one write to either side may take.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a closing side is given to answer the close frame.
const CLOSE_WAIT: Duration = Duration::from_secs(2);
/// Read buffer of the bridge out of the HTTP session.
const BRIDGE_BUFFER: usize = 16 * 1024;

/// Serves a granted, fenced WebSocket handshake to its end.
pub async fn serve(latch: &Arc<Latch>, session: &mut Session, fenced: Fenced) -> Result<()> {
    if crate::ws::handshake_key(&session.req_header().headers).is_none() {
        let reply = Reply::problem(
            400,
            "Not a WebSocket handshake",
            "an upgrade to websocket needs Sec-WebSocket-Key and Sec-WebSocket-Version: 13",
        )
        .header(header::SEC_WEBSOCKET_VERSION, "13");
        return reply.send(session, false).await;
    }
    let (_admitted, lost) = match fenced::admit(latch, &fenced, "WebSockets").await {
        Ok(admitted) => admitted,
        Err(reply) => return reply.send(session, false).await,
    };

    let mut request = session.req_header().clone();
    request.remove_header(&header::SEC_WEBSOCKET_EXTENSIONS);
    fenced
        .upstream_headers(false)
        .apply(&mut request, latch.config.proxy.header_case)?;
    let upstream = match tokio::time::timeout(
        HANDSHAKE_TIMEOUT,
        handshake(latch, fenced.app, &mut request),
    )
    .await
    {
        Ok(Ok(upstream)) => upstream,
        Ok(Err(e)) => {
            tracing::warn!(resource = %fenced.resource, error = %e, "app WebSocket handshake failed");
            return bad_gateway(session, &e).await;
        }
        Err(_) => {
            return bad_gateway(session, "the app did not answer the handshake in time").await
        }
    };
    // Counted against its server (least connections) for as long as the socket lives.
    let (head, mut app, _held) = upstream;
    if head.status.as_u16() != 101 {
        return relay_refusal(session, head, &mut app).await;
    }
    session.write_response_header(head, false).await?;

    let (bridge, theirs) = tokio::io::duplex(BRIDGE_BUFFER);
    let client = WebSocketStream::from_raw_socket(theirs, Role::Server, Some(config())).await;
    let app = WebSocketStream::from_raw_socket(app, Role::Client, Some(config())).await;
    latch.metrics.app_sockets.inc();
    let fenced_total = latch.metrics.app_sockets_fenced.clone();
    let expiry = fenced.expiry();
    let relay = tokio::spawn(relay(client, app, lost, expiry, fenced_total));
    crate::ws::pump(session, bridge, BRIDGE_BUFFER).await;
    let _ = relay.await;
    latch.metrics.app_sockets.dec();
    Ok(())
}

async fn bad_gateway(session: &mut Session, why: &str) -> Result<()> {
    Reply::problem(502, "Bad gateway", why)
        .send(session, false)
        .await
}

type App = BufReader<Stream>;

/// Sends the handshake to the app and reads its answer's head. What the reader holds past the
/// head already belongs to the WebSocket.
async fn handshake(
    latch: &Latch,
    app: AppId,
    request: &mut RequestHeader,
) -> std::result::Result<(Box<ResponseHeader>, App, Option<InFlight>), String> {
    let connection = latch.apps.get(app).upstream.connect().await?;
    if let Some(host) = connection.host {
        request
            .insert_header(header::HOST, host)
            .map_err(|e| format!("cannot set the Host header: {e}"))?;
    }
    let mut tcp = connection.stream;
    let path = request.uri.path_and_query().map_or("/", |p| p.as_str());
    let mut head = BytesMut::with_capacity(1024);
    head.extend_from_slice(format!("GET {path} HTTP/1.1\r\n").as_bytes());
    request.header_to_h1_wire(&mut head);
    head.extend_from_slice(b"\r\n");
    tcp.write_all(&head)
        .await
        .map_err(|e| format!("cannot send the handshake: {e}"))?;

    let mut app = BufReader::with_capacity(MAX_HEAD, tcp);
    let mut raw = Vec::with_capacity(512);
    loop {
        let before = raw.len();
        let n = (&mut app)
            .take((MAX_HEAD - raw.len()) as u64)
            .read_until(b'\n', &mut raw)
            .await
            .map_err(|e| format!("cannot read the app's answer: {e}"))?;
        if n == 0 {
            return Err(if raw.len() >= MAX_HEAD {
                "the app's answer to the handshake has too large a head".to_owned()
            } else {
                "the app closed the connection during the handshake".to_owned()
            });
        }
        let line = &raw[before..];
        if line == b"\r\n" || line == b"\n" {
            break;
        }
    }
    Ok((parse_response(&raw)?, app, connection.held))
}

fn parse_response(raw: &[u8]) -> std::result::Result<Box<ResponseHeader>, String> {
    let bad = |why: &str| format!("the app's answer to the handshake is not valid HTTP: {why}");
    let mut slots = [httparse::EMPTY_HEADER; 64];
    let mut response = httparse::Response::new(&mut slots);
    match response.parse(raw) {
        Ok(httparse::Status::Complete(_)) => {}
        Ok(httparse::Status::Partial) => return Err(bad("incomplete head")),
        Err(e) => return Err(bad(&e.to_string())),
    }
    let code = response.code.ok_or_else(|| bad("no status"))?;
    let mut head = ResponseHeader::build(code, Some(response.headers.len()))
        .map_err(|e| bad(&e.to_string()))?;
    for h in response.headers.iter() {
        // The client never asked for extensions (they were taken out of the handshake).
        if h.name.eq_ignore_ascii_case("sec-websocket-extensions") {
            continue;
        }
        head.append_header(h.name.to_owned(), h.value)
            .map_err(|e| bad(&e.to_string()))?;
    }
    Ok(Box::new(head))
}

/// Relays the app's refusal of the handshake (a 4xx, a redirect) to the client, with its body
/// when it states a length of at most [`MAX_REFUSAL_BODY`].
async fn relay_refusal(
    session: &mut Session,
    mut head: Box<ResponseHeader>,
    app: &mut App,
) -> Result<()> {
    let length = head
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.trim().parse::<usize>().ok());
    let body = match length {
        Some(n) if n <= MAX_REFUSAL_BODY => {
            let mut body = vec![0; n];
            let read = tokio::time::timeout(HANDSHAKE_TIMEOUT, app.read_exact(&mut body)).await;
            matches!(read, Ok(Ok(_))).then_some(body)
        }
        _ => None,
    };
    if body.is_none() {
        head.remove_header(&header::TRANSFER_ENCODING);
        head.insert_header(header::CONTENT_LENGTH, "0")?;
    }
    session.set_keepalive(None);
    let empty = body.as_ref().is_none_or(Vec::is_empty);
    session.write_response_header(head, empty).await?;
    if let Some(body) = body.filter(|b| !b.is_empty()) {
        session
            .write_response_body(Some(Bytes::from(body)), true)
            .await?;
    }
    Ok(())
}

fn config() -> WebSocketConfig {
    WebSocketConfig::default()
        .max_message_size(Some(MAX_MESSAGE))
        .max_frame_size(Some(MAX_MESSAGE))
}

/// Relays messages between the client and the app until either closes or the lock is lost.
async fn relay<C, A>(
    mut client: WebSocketStream<C>,
    mut app: WebSocketStream<A>,
    mut lost: tokio::sync::oneshot::Receiver<Ending>,
    expiry: tokio::time::Instant,
    fenced_total: prometheus::IntCounter,
) where
    C: AsyncRead + AsyncWrite + Unpin,
    A: AsyncRead + AsyncWrite + Unpin,
{
    loop {
        tokio::select! {
            ending = &mut lost => {
                let frame = match ending {
                    Ok(Ending::SignedOut) => CloseFrame {
                        code: CloseCode::from(SESSION_EXPIRED),
                        reason: "signed out".into(),
                    },
                    // A closed sender means the registration went away, which only happens
                    // once this socket is over anyway.
                    lost => {
                        fenced_total.inc();
                        let reason = match lost {
                            Ok(Ending::Lost(reason)) => reason,
                            _ => "lock lost".to_owned(),
                        };
                        CloseFrame { code: CloseCode::from(LOCK_LOST), reason: reason.into() }
                    }
                };
                tokio::join!(
                    close(&mut client, Some(frame.clone())),
                    close(&mut app, Some(frame)),
                );
                return;
            }
            _ = tokio::time::sleep_until(expiry) => {
                let frame = CloseFrame {
                    code: CloseCode::from(SESSION_EXPIRED),
                    reason: "session expired".into(),
                };
                tokio::join!(
                    close(&mut client, Some(frame.clone())),
                    close(&mut app, Some(frame)),
                );
                return;
            }
            message = client.next() => {
                if !forward(message, &mut client, &mut app).await {
                    return;
                }
            }
            message = app.next() => {
                if !forward(message, &mut app, &mut client).await {
                    return;
                }
            }
        }
    }
}

/// Hands one message read `from` one side `to` the other. False once the relay is over.
async fn forward<F, T>(
    message: Option<std::result::Result<Message, tokio_tungstenite::tungstenite::Error>>,
    from: &mut WebSocketStream<F>,
    to: &mut WebSocketStream<T>,
) -> bool
where
    F: AsyncRead + AsyncWrite + Unpin,
    T: AsyncRead + AsyncWrite + Unpin,
{
    match message {
        Some(Ok(Message::Close(frame))) => {
            // `from` queued its answer to the close; send it, and pass the close on.
            let _ = tokio::time::timeout(WRITE_TIMEOUT, from.flush()).await;
            close(to, frame).await;
            false
        }
        Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => {
            // A ping's pong is queued by tungstenite; send it now.
            matches!(
                tokio::time::timeout(WRITE_TIMEOUT, from.flush()).await,
                Ok(Ok(()))
            )
        }
        Some(Ok(message)) => {
            let sent = tokio::time::timeout(WRITE_TIMEOUT, to.send(message)).await;
            matches!(sent, Ok(Ok(())))
        }
        Some(Err(e)) => {
            let code = match e {
                tokio_tungstenite::tungstenite::Error::Capacity(_) => CloseCode::Size,
                _ => CloseCode::Protocol,
            };
            close(
                to,
                Some(CloseFrame {
                    code,
                    reason: "the other side failed".into(),
                }),
            )
            .await;
            false
        }
        None => {
            close(
                to,
                Some(CloseFrame {
                    code: CloseCode::Away,
                    reason: "".into(),
                }),
            )
            .await;
            false
        }
    }
}

/// Sends a close frame and waits a moment for the answer, so that the close frame is read
/// before the connection goes.
async fn close<S: AsyncRead + AsyncWrite + Unpin>(
    ws: &mut WebSocketStream<S>,
    frame: Option<CloseFrame>,
) {
    let _ = tokio::time::timeout(CLOSE_WAIT, async {
        if ws.close(frame).await.is_err() {
            return;
        }
        while let Some(Ok(_)) = ws.next().await {}
    })
    .await;
}
