//! The front of the listening socket. A connection that opens with the banner WebSocket
//! handshake (`GET {prefix}/ws`) is served here, on the bare TCP stream; every other connection
//! goes to pingora's HTTP proxy exactly as it arrived.
//!
//! Why: a banner socket stays open for as long as its page does, and most of them sit idle.
//! Inside pingora's proxy session each one would keep that session alive for its whole life:
//! its buffers, headers, modules and state machine, about 50 KB. Served here it keeps only the
//! WebSocket and the socket task.
//!
//! Only a complete, valid handshake that is admitted (same origin, valid token, under the
//! per-user limit) is taken. Anything else, including a refusal, is handed to the proxy with the
//! bytes read so far put back, and the proxy's `{prefix}/ws` endpoint answers it as it answers a
//! handshake that arrives later on a kept-alive connection.

use std::sync::Arc;

use async_trait::async_trait;
use http::{HeaderMap, HeaderName, HeaderValue};
use pingora::apps::ServerApp;
use pingora::protocols::l4::stream::Stream as TcpStream;
use pingora::protocols::Stream;
use pingora::proxy::HttpProxy;
use pingora::server::ShutdownWatch;
use tokio::io::AsyncReadExt;

use crate::service::LatchProxy;
use crate::state::Latch;
use crate::ws;

/// Longest request head read before giving up and handing the connection to the proxy.
const MAX_HEAD: usize = 8 * 1024;
/// Most headers a banner handshake may carry.
const MAX_HEADERS: usize = 64;

/// The listening socket's application: banner handshakes here, the rest to `proxy`.
pub struct Front {
    proxy: Arc<HttpProxy<LatchProxy>>,
    latch: Arc<Latch>,
    /// `GET {prefix}/ws`: how a banner handshake's request line starts.
    line: Vec<u8>,
}

impl Front {
    pub fn new(proxy: HttpProxy<LatchProxy>, latch: Arc<Latch>) -> Front {
        let line = format!("GET {}/ws", latch.config.proxy.prefix).into_bytes();
        Front {
            proxy: Arc::new(proxy),
            latch,
            line,
        }
    }
}

/// What the first bytes of a connection turned out to be.
enum Opening {
    /// A complete banner handshake: its headers, and how many of the bytes read were its head.
    Banner { headers: HeaderMap, head_len: usize },
    /// Anything else.
    Other,
    /// The connection failed or closed before saying anything.
    Gone,
}

#[async_trait]
impl ServerApp for Front {
    async fn process_new(
        self: &Arc<Self>,
        stream: Stream,
        shutdown: &ShutdownWatch,
    ) -> Option<Stream> {
        // Only a plain TCP stream can have bytes put back; it is the only kind this proxy
        // listens with, but anything else simply goes to the proxy.
        if !stream.as_any().is::<TcpStream>() {
            return ServerApp::process_new(&self.proxy, stream, shutdown).await;
        }
        let mut tcp: Box<TcpStream> = stream.into_any().downcast().ok()?;
        let mut read = Vec::new();
        match self.opening(&mut tcp, &mut read).await {
            Opening::Gone => return None,
            Opening::Banner { headers, head_len } => {
                let admitted = ws::admit(&self.latch, &headers);
                drop(headers);
                if let Ok(admitted) = admitted {
                    // A client may not send frames before the 101, but anything it did send
                    // after the head belongs to the WebSocket.
                    tcp.rewind(&read[head_len..]);
                    // Nothing of the handshake is kept for the socket's long life.
                    drop(read);
                    ws::serve_tcp(&self.latch, tcp, admitted).await;
                    return None;
                }
            }
            Opening::Other => {}
        }
        tcp.rewind(&read);
        ServerApp::process_new(&self.proxy, tcp, shutdown).await
    }

    async fn cleanup(&self) {
        ServerApp::cleanup(&*self.proxy).await;
    }
}

impl Front {
    /// Reads just enough of the connection to tell a banner handshake from anything else. A
    /// request whose first bytes differ from [`Front::line`] is recognised as soon as they
    /// arrive, so no request waits here for bytes its client is not sending.
    async fn opening(&self, tcp: &mut TcpStream, read: &mut Vec<u8>) -> Opening {
        let mut chunk = [0u8; 1024];
        loop {
            let n = match tcp.read(&mut chunk).await {
                Ok(0) if read.is_empty() => return Opening::Gone,
                Ok(0) => return Opening::Other,
                Ok(n) => n,
                Err(_) if read.is_empty() => return Opening::Gone,
                Err(_) => return Opening::Other,
            };
            read.extend_from_slice(&chunk[..n]);
            let seen = read.len().min(self.line.len());
            if read[..seen] != self.line[..seen] {
                return Opening::Other;
            }
            if let Some(&after) = read.get(self.line.len()) {
                if after != b' ' && after != b'?' {
                    return Opening::Other;
                }
            }
            match parse_head(read) {
                Head::Complete(headers, head_len) => return Opening::Banner { headers, head_len },
                Head::Partial if read.len() < MAX_HEAD => {}
                Head::Partial | Head::Invalid => return Opening::Other,
            }
        }
    }
}

enum Head {
    Complete(HeaderMap, usize),
    Partial,
    Invalid,
}

/// Parses an HTTP/1.1 request head and keeps it only if it is a WebSocket handshake.
fn parse_head(bytes: &[u8]) -> Head {
    let mut slots = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut request = httparse::Request::new(&mut slots);
    let head_len = match request.parse(bytes) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Head::Partial,
        Err(_) => return Head::Invalid,
    };
    if request.version != Some(1) {
        return Head::Invalid;
    }
    let mut headers = HeaderMap::with_capacity(request.headers.len());
    for h in request.headers.iter() {
        let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(h.name.as_bytes()),
            HeaderValue::from_bytes(h.value),
        ) else {
            return Head::Invalid;
        };
        headers.append(name, value);
    }
    if ws::handshake_key(&headers).is_none() {
        return Head::Invalid;
    }
    Head::Complete(headers, head_len)
}

#[cfg(test)]
mod tests {
    use super::*;

    const HANDSHAKE: &[u8] = b"GET /__latch/ws HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\n\
        Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
        Sec-WebSocket-Version: 13\r\n\r\n";

    #[test]
    fn a_complete_handshake_is_recognised_with_its_length() {
        let mut bytes = HANDSHAKE.to_vec();
        bytes.extend_from_slice(b"\x81\x00");
        match parse_head(&bytes) {
            Head::Complete(headers, n) => {
                assert_eq!(n, HANDSHAKE.len());
                assert_eq!(headers["host"], "a");
            }
            _ => panic!("handshake not recognised"),
        }
    }

    #[test]
    fn a_cut_handshake_is_partial() {
        assert!(matches!(
            parse_head(&HANDSHAKE[..HANDSHAKE.len() - 3]),
            Head::Partial
        ));
    }

    #[test]
    fn a_plain_get_or_an_old_version_is_not_a_handshake() {
        let plain = b"GET /__latch/ws HTTP/1.1\r\nHost: a\r\n\r\n";
        assert!(matches!(parse_head(plain), Head::Invalid));
        let old = String::from_utf8_lossy(HANDSHAKE).replace("Version: 13", "Version: 8");
        assert!(matches!(parse_head(old.as_bytes()), Head::Invalid));
        let http10 = String::from_utf8_lossy(HANDSHAKE).replace("HTTP/1.1", "HTTP/1.0");
        assert!(matches!(parse_head(http10.as_bytes()), Head::Invalid));
    }
}
