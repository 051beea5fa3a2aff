//! The byte level of a banner socket: what it runs over, its tungstenite settings, bounded
//! writes, and the bridge that carries an upgrade made inside an HTTP session.

use std::time::Duration;

use bytes::Bytes;
use futures::SinkExt;
use pingora::proxy::Session;
use serde_json::Value;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, WebSocketConfig};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

/// Largest client message. The protocol's messages are a few hundred bytes.
pub const MAX_MESSAGE: usize = 8 * 1024;
/// Read buffer of a socket. Larger messages are read in several steps; a small buffer keeps
/// ten thousand idle sockets cheap.
pub const READ_BUFFER: usize = 1024;
/// How long one write to the client may take. A client that stops reading would otherwise pin
/// its socket task, its bridge and its slot in the per-user limit for ever.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(10);

/// What a banner socket runs over: the bare connection, or the bridge out of an HTTP session.
pub trait Transport: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Transport for T {}

pub type Ws = WebSocketStream<Box<dyn Transport>>;

pub async fn send(ws: &mut Ws, value: Value) -> bool {
    send_text(ws, &value.to_string()).await
}

/// Sends a message already serialized.
pub async fn send_text(ws: &mut Ws, text: &str) -> bool {
    let write = ws.send(Message::Text(text.into()));
    matches!(tokio::time::timeout(WRITE_TIMEOUT, write).await, Ok(Ok(())))
}

pub async fn close(ws: &mut Ws, code: CloseCode, reason: &str) {
    let frame = Message::Close(Some(CloseFrame {
        code,
        reason: reason.to_string().into(),
    }));
    let _ = tokio::time::timeout(WRITE_TIMEOUT, async {
        let _ = ws.send(frame).await;
        let _ = ws.flush().await;
    })
    .await;
}

/// The tungstenite settings of every banner socket.
pub fn socket_config() -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(READ_BUFFER)
        .write_buffer_size(0)
        .max_message_size(Some(MAX_MESSAGE))
        .max_frame_size(Some(MAX_MESSAGE))
}

/// Moves bytes between the upgraded downstream connection and the duplex until either closes,
/// reading at most `buffer` bytes from the duplex at a time. The banner socket and the app's
/// relayed sockets both bridge pingora's session to a WebSocket this way.
pub async fn pump(session: &mut Session, bridge: tokio::io::DuplexStream, buffer: usize) {
    let (mut from_ws, mut to_ws) = tokio::io::split(bridge);
    let mut buf = vec![0u8; buffer];
    loop {
        tokio::select! {
            incoming = session.read_request_body() => match incoming {
                Ok(Some(bytes)) => {
                    if to_ws.write_all(&bytes).await.is_err() {
                        break;
                    }
                }
                _ => break,
            },
            n = from_ws.read(&mut buf) => match n {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    let write = session
                        .write_response_body(Some(Bytes::copy_from_slice(&buf[..n])), false);
                    if !matches!(tokio::time::timeout(WRITE_TIMEOUT, write).await, Ok(Ok(()))) {
                        break;
                    }
                }
            },
        }
    }
    let _ = to_ws.shutdown().await;
    let _ = tokio::time::timeout(WRITE_TIMEOUT, session.write_response_body(None, true)).await;
}
