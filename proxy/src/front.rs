//! The front of the listening socket. It reads every HTTP/1 request head itself, within the
//! connection's deadlines and size bound, before pingora sees it. A connection that opens with
//! the banner WebSocket handshake (`GET {prefix}/ws`) is served here, on the bare TCP stream;
//! every other request goes to pingora's HTTP proxy with the bytes read handed over, exactly
//! as they arrived.
//!
//! Why the banner socket: a banner socket stays open for as long as its page does, and most of
//! them sit idle. Inside pingora's proxy session each one would keep that session alive for its
//! whole life: its buffers, headers, modules and state machine, about 50 KB. Served here, in a
//! task of its own once admitted, it keeps only the WebSocket and that task: not the
//! connection's task, which pingora sizes for a TLS handshake on every listener.
//!
//! Only a complete, valid handshake that is admitted (same origin, valid token, under the
//! per-user limit) is taken. Anything else, including a refusal, is handed to the proxy with the
//! bytes read so far put back, and the proxy's `{prefix}/ws` endpoint answers it as it answers a
//! handshake that arrives later on a kept-alive connection.
//!
//! Why the heads: pingora 0.9 waits for a new connection's first request with a 60 s timeout
//! per read, and for every later one on a kept-alive connection with none at all, so a client
//! that trickles a head, or says nothing, holds its connection for as long as it likes; and it
//! takes heads of up to 1 MiB. So this front runs the kept-alive loop pingora's HTTP/1 server
//! would run, and before each request it reads the head with these bounds
//! (`proxy.header_timeout_seconds`, `proxy.keepalive_timeout_seconds`,
//! `proxy.max_header_bytes`):
//! - a new connection's whole first head is due `header_timeout` after the accept;
//! - between requests the first byte of the next one is due `keepalive_timeout` after the
//!   previous response; once it arrived, the rest of the head is due `header_timeout` later;
//! - a connection that has said nothing by its deadline is closed; one that has sent part of a
//!   head gets 408; a head longer than `max_header_bytes` gets 431 and never reaches pingora.
//!
//! Over TLS (`tls.listen`) the front first admits the connection under the client's limit and
//! completes the TLS handshake itself, by the same deadline as the first head: pingora's own
//! listener would give a handshake 60 s and count nothing. An HTTP/1.1 connection then runs the
//! same kept-alive loop. A connection that opens with the banner handshake is served here
//! too, in a task of its own, as on the plain listener, unless bytes followed the head (a TLS
//! stream cannot take them back): then the proxy's `{prefix}/ws` endpoint answers it, as it
//! answers a handshake later on a kept-alive connection. An HTTP/2 connection (ALPN `h2`) goes
//! to pingora's HTTP/2 server, whose bounds are its own (docs/tls.md).
//!
//! One timer per connection serves every deadline: it is moved, not re-armed, and moving a
//! tokio timer later costs no more than an atomic update, so a request on a kept-alive
//! connection pays no timer registration of its own; likewise one wait for the server's
//! shutdown serves the connection's life. Each head read here is handed to pingora as its
//! pipelined-request prefix, the bytes exactly as they arrived, and pingora parses it from
//! there without waiting or copying.

use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use async_trait::async_trait;
use bytes::BytesMut;
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use pingora::apps::{HttpPersistentSettings, HttpServerApp, ServerApp};
use pingora::protocols::http::ServerSession;
use pingora::protocols::l4::stream::Stream as TcpStream;
use pingora::protocols::{GetSocketDigest, Stream, ALPN};
use pingora::proxy::HttpProxy;
use pingora::server::ShutdownWatch;
use pingora::tls::TlsAcceptor;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::watch::error::RecvError;
use tokio::time::{Instant, Sleep};

use crate::conn_limit::ClientLimit;
use crate::respond::Reply;
use crate::service::LatchProxy;
use crate::state::Latch;
use crate::tls_conn::TlsConn;
use crate::ws::{self, Transport};

/// Most headers a banner handshake may carry.
const MAX_HEADERS: usize = 64;
/// Room made in the buffer before each read of a head: pingora's own first read is as large.
const READ_SIZE: usize = 4096;
/// How long writing a refusal (408, 431) may take.
const REFUSAL_WRITE: Duration = Duration::from_secs(2);
/// After a refusal, how long and how much the proxy keeps reading what the client still sends
/// before closing: closing with unread bytes resets the connection, and the reset can destroy
/// the refusal before the client reads it.
const LINGER: Duration = Duration::from_secs(1);
const LINGER_BYTES: usize = 1024 * 1024;

/// The listening socket's application: banner handshakes here, the rest to `proxy`.
pub struct Front {
    proxy: Arc<HttpProxy<LatchProxy>>,
    latch: Arc<Latch>,
    /// `GET {prefix}/ws`: how a banner handshake's request line starts.
    line: Vec<u8>,
    /// `proxy.header_timeout_seconds`.
    header_timeout: Duration,
    /// `proxy.keepalive_timeout_seconds`.
    keepalive_timeout: Duration,
    /// `proxy.max_header_bytes`.
    max_head: usize,
    /// `proxy.max_connections_per_client`.
    clients: ClientLimit,
    /// The TLS handshake of every connection, on the HTTPS listener.
    tls: Option<TlsAcceptor>,
}

impl Front {
    pub fn new(proxy: HttpProxy<LatchProxy>, latch: Arc<Latch>) -> Front {
        let config = &latch.config.proxy;
        let line = format!("GET {}/ws", config.prefix).into_bytes();
        Front {
            proxy: Arc::new(proxy),
            header_timeout: config.header_timeout,
            keepalive_timeout: config.keepalive_timeout,
            max_head: config.max_header_bytes,
            clients: ClientLimit::new(config.max_connections_per_client),
            latch,
            line,
            tls: None,
        }
    }

    /// The front of the HTTPS listener: every connection is admitted, then its TLS handshake
    /// made with `acceptor`, before any request is read.
    pub fn with_tls(
        proxy: HttpProxy<LatchProxy>,
        latch: Arc<Latch>,
        acceptor: TlsAcceptor,
    ) -> Front {
        Front {
            tls: Some(acceptor),
            ..Front::new(proxy, latch)
        }
    }
}

/// A connection's wait for the server's shutdown, armed once for the connection's life: a wait
/// made anew for every request would register with the watch and leave it again each time.
struct ShutdownWait {
    /// The server's shutdown flag.
    watch: ShutdownWatch,
    /// The watch's `changed()`. It completes on a shutdown, or when no one can signal one.
    changed: Pin<Box<dyn Future<Output = Result<(), RecvError>> + Send>>,
    /// Not yet completed: a completed wait may not be polled again.
    live: bool,
    /// `changed` was polled and is waiting: the connection's task is registered with the watch
    /// and is woken by a shutdown, so the flag alone tells whether one came.
    armed: bool,
}

impl ShutdownWait {
    fn new(shutdown: &ShutdownWatch) -> ShutdownWait {
        let mut changes = shutdown.clone();
        ShutdownWait {
            watch: shutdown.clone(),
            changed: Box::pin(async move { changes.changed().await }),
            live: true,
            armed: false,
        }
    }

    /// Is the server shutting down?
    fn stopping(&self) -> bool {
        *self.watch.borrow()
    }

    /// Ready with `Ok` once the server is shutting down; with `Err` if, when first polled, no
    /// one could signal that any more. `changed` is polled until it waits; from then on the
    /// connection's task (the only one that polls this) stays registered with the watch and is
    /// woken by a shutdown, so a poll reads the flag instead of taking the watch's waiter lock
    /// again on every request. Should the signal's sender go later, the wait stays pending, as
    /// a completed one would have left only the deadline.
    fn poll_stop(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), RecvError>> {
        if self.armed {
            return match self.stopping() {
                true => Poll::Ready(Ok(())),
                false => Poll::Pending,
            };
        }
        let polled = self.changed.as_mut().poll(cx);
        self.armed = polled.is_pending();
        polled
    }
}

/// Why no request head came.
#[derive(Debug, PartialEq, Eq)]
enum Missed {
    /// The client closed, failed, or said nothing before its deadline (or the server is
    /// shutting down): the connection is closed without a word.
    Gone,
    /// Part of a head came, not the rest, before the deadline: 408.
    Late,
    /// The head is longer than `max_header_bytes`: 431.
    TooLarge,
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
        let tcp: Box<TcpStream> = stream.into_any().downcast().ok()?;
        // Past its client's limit a connection is closed before anything is read from it.
        let peer = peer_ip(&tcp);
        let Some(permit) = self.clients.admit(peer) else {
            tracing::debug!(?peer, "connection refused: the client has too many open");
            return None;
        };
        let banner: (Box<dyn Transport>, ws::Admitted) = match &self.tls {
            Some(acceptor) => {
                // Boxed, so that a plain connection's future keeps no room for a TLS handshake
                // it never makes.
                match Box::pin(self.serve_tls(acceptor, tcp, peer, shutdown)).await {
                    TlsEnd::Served(stream) => return stream,
                    TlsEnd::Banner(tls, admitted) => (Box::new(tls), admitted),
                }
            }
            None => match self.serve_http(tcp, shutdown).await {
                Some((tcp, admitted)) => (tcp, admitted),
                None => return None,
            },
        };
        // A banner socket lives as long as its page, mostly idle, so it gets a task of its own
        // sized to it, and this one ends. The connection's task is pingora's, sized for the
        // largest thing any connection does first (a TLS handshake, about 9 KB, even on a
        // plain listener), and this future holds the room of every HTTP request.
        let (io, admitted) = banner;
        let latch = Arc::clone(&self.latch);
        tokio::spawn(async move {
            ws::serve_connection(&latch, io, admitted).await;
            drop(permit);
        });
        None
    }

    async fn cleanup(&self) {
        ServerApp::cleanup(&*self.proxy).await;
    }
}

/// The client's IP address, if the connection has one.
fn peer_ip(tcp: &TcpStream) -> Option<IpAddr> {
    let digest = tcp.get_socket_digest()?;
    digest.peer_addr()?.as_inet().map(|a| a.ip())
}

/// How a TLS connection's serving here ended.
enum TlsEnd {
    /// It is over, or pingora hands its stream back to be served again.
    Served(Option<Stream>),
    /// Its first request is an admitted banner handshake, to serve on the connection itself.
    Banner(Stream, ws::Admitted),
}

impl Front {
    /// Makes the TLS handshake within the first head's deadline, then serves HTTP/2 through
    /// pingora or HTTP/1.1 as [`Front::serve_tls_http1`] does.
    async fn serve_tls(
        self: &Arc<Self>,
        acceptor: &TlsAcceptor,
        tcp: Box<TcpStream>,
        peer: Option<IpAddr>,
        shutdown: &ShutdownWatch,
    ) -> TlsEnd {
        let start = Instant::now();
        let deadline = start + self.header_timeout;
        let tls = match tokio::time::timeout_at(deadline, acceptor.accept(*tcp)).await {
            Ok(Ok(tls)) => tls,
            Ok(Err(e)) => {
                tracing::debug!(?peer, error = %e, "TLS handshake failed");
                return TlsEnd::Served(None);
            }
            Err(_) => {
                tracing::debug!(?peer, "TLS handshake not finished in time");
                return TlsEnd::Served(None);
            }
        };
        // Each connection's SNI is kept when several apps share the listener, so that a request
        // for another app's host on it gets 421.
        let names = self.latch.apps.routed().then_some(&self.latch.server_names);
        let stream: Stream = Box::new(TlsConn::new(tls, start.elapsed(), names));
        if matches!(stream.selected_alpn_proto(), Some(ALPN::H2)) {
            return TlsEnd::Served(ServerApp::process_new(&self.proxy, stream, shutdown).await);
        }
        match Box::pin(self.serve_tls_http1(stream, peer, deadline, shutdown)).await {
            Some((stream, admitted)) => TlsEnd::Banner(stream, admitted),
            None => TlsEnd::Served(None),
        }
    }

    /// Serves the connection's HTTP/1 requests one after another, as pingora's HTTP server
    /// would (this proxy has no HTTP/2 over cleartext to look for), each head read by
    /// [`Front::read_head`] first. Returns the connection and its admission when its first
    /// request is a banner handshake to serve here.
    async fn serve_http(
        self: &Arc<Self>,
        mut tcp: Box<TcpStream>,
        shutdown: &ShutdownWatch,
    ) -> Option<(Box<TcpStream>, ws::Admitted)> {
        let deadline = tokio::time::sleep(self.header_timeout);
        tokio::pin!(deadline);
        let mut shutdown_wait = ShutdownWait::new(shutdown);
        let mut settings: Option<HttpPersistentSettings> = None;
        let mut first = true;
        loop {
            let mut read = BytesMut::with_capacity(READ_SIZE);
            let head_len = match self
                .read_head(
                    &mut tcp,
                    &mut read,
                    deadline.as_mut(),
                    &mut shutdown_wait,
                    first,
                )
                .await
            {
                Ok(n) => n,
                Err(missed) => {
                    self.refuse_missed(tcp, missed).await;
                    return None;
                }
            };
            if first {
                let scheme = self.latch.config.proxy.public_scheme;
                if let Some((admitted, n)) =
                    self.admit_banner(&read[..head_len], peer_ip(&tcp), scheme)
                {
                    // A client may not send frames before the 101, but anything it did send
                    // after the head belongs to the WebSocket.
                    tcp.rewind(&read[n..]);
                    return Some((tcp, admitted));
                }
            }
            first = false;
            let mut session = ServerSession::new_http1(tcp);
            if let Some(settings) = settings.take() {
                settings.apply_to_session(&mut session);
            }
            // The head read here is handed to pingora as the start of the request, exactly as
            // it arrived, so pingora parses it without waiting or copying; its own read timeout
            // is kept to a head's deadline all the same. Past the head, pingora sets keepalive
            // from the request as usual.
            session.set_pipelined_prefix(read);
            let keepalive =
                (!shutdown_wait.stopping()).then_some(self.header_timeout.as_secs().max(1));
            session.set_keepalive(keepalive);
            let reused = self.proxy.process_new_http(session, shutdown).await?;
            let (stream, next) = reused.consume();
            settings = next;
            tcp = stream.into_any().downcast().ok()?;
            deadline
                .as_mut()
                .reset(Instant::now() + self.keepalive_timeout);
        }
    }

    /// Serves an HTTP/1.1 connection over TLS as [`Front::serve_http`] serves a plain one.
    /// `deadline` is when the first head is due (the handshake took part of that time).
    /// Returns the connection and its admission when its first request is a banner handshake
    /// to serve here.
    async fn serve_tls_http1(
        self: &Arc<Self>,
        mut stream: Stream,
        peer: Option<IpAddr>,
        deadline: Instant,
        shutdown: &ShutdownWatch,
    ) -> Option<(Stream, ws::Admitted)> {
        let deadline = tokio::time::sleep_until(deadline);
        tokio::pin!(deadline);
        let mut shutdown_wait = ShutdownWait::new(shutdown);
        let mut settings: Option<HttpPersistentSettings> = None;
        let mut first = true;
        loop {
            let mut read = BytesMut::with_capacity(READ_SIZE);
            let head = self
                .read_head(
                    &mut stream,
                    &mut read,
                    deadline.as_mut(),
                    &mut shutdown_wait,
                    first,
                )
                .await;
            let head_len = match head {
                Ok(n) => n,
                Err(missed) => {
                    self.refuse_missed(stream, missed).await;
                    return None;
                }
            };
            // Bytes after the head (frames sent before the 101) could not be put back.
            if first && head_len == read.len() {
                if let Some((admitted, _)) = self.admit_banner(&read, peer, "https") {
                    return Some((stream, admitted));
                }
            }
            first = false;
            let mut session = ServerSession::new_http1(stream);
            if let Some(settings) = settings.take() {
                settings.apply_to_session(&mut session);
            }
            // The head read here is handed to pingora as the start of the request, exactly as
            // it arrived; pingora parses it without waiting for more.
            session.set_pipelined_prefix(read);
            let keepalive =
                (!shutdown_wait.stopping()).then_some(self.header_timeout.as_secs().max(1));
            session.set_keepalive(keepalive);
            let reused = self.proxy.process_new_http(session, shutdown).await?;
            let (next_stream, next) = reused.consume();
            settings = next;
            stream = next_stream;
            deadline
                .as_mut()
                .reset(Instant::now() + self.keepalive_timeout);
        }
    }

    /// Answers a head that did not come as it should: nothing, 408 or 431.
    async fn refuse_missed<S: AsyncRead + AsyncWrite + Unpin>(&self, io: S, missed: Missed) {
        match missed {
            Missed::Gone => {}
            Missed::Late => {
                refuse(
                    io,
                    StatusCode::REQUEST_TIMEOUT,
                    "the request head did not arrive in time",
                )
                .await
            }
            Missed::TooLarge => {
                let detail = format!("the request head is longer than {} bytes", self.max_head);
                refuse(io, StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE, &detail).await;
            }
        }
    }

    /// Does this head open with a banner handshake's request line?
    fn opens_banner(&self, read: &[u8]) -> bool {
        read.starts_with(&self.line) && matches!(read.get(self.line.len()), Some(b' ' | b'?'))
    }

    /// The admission of a connection's first head when it is a complete banner handshake that
    /// is admitted, with the head's length; `None` leaves the head to the proxy, which answers
    /// anything else, a refusal included.
    fn admit_banner(
        &self,
        head: &[u8],
        peer: Option<IpAddr>,
        scheme: &str,
    ) -> Option<(ws::Admitted, usize)> {
        if !self.opens_banner(head) {
            return None;
        }
        let Head::Complete(headers, n) = parse_head(head) else {
            return None;
        };
        let admitted = ws::admit(&self.latch, &headers, peer, scheme).ok()?;
        Some((admitted, n))
    }

    /// Reads into `read` until it holds a whole request head, and returns the head's length
    /// (`read` may hold more: the start of a body). `deadline` is when the first byte is due
    /// (for the first request of a connection: the whole head); once a later request's first
    /// bytes arrived, the rest is due `header_timeout` after them. A server that is shutting
    /// down reads no more heads.
    async fn read_head<S: AsyncRead + Unpin>(
        &self,
        tcp: &mut S,
        read: &mut BytesMut,
        mut deadline: Pin<&mut Sleep>,
        shutdown: &mut ShutdownWait,
        first: bool,
    ) -> Result<usize, Missed> {
        if shutdown.stopping() {
            return Err(Missed::Gone);
        }
        let mut searched = 0;
        loop {
            if read.capacity() - read.len() < READ_SIZE / 4 {
                read.reserve(READ_SIZE);
            }
            let idle = read.is_empty();
            let n = tokio::select! {
                biased;
                n = tcp.read_buf(read) => n,
                _ = deadline.as_mut() => {
                    return Err(if idle { Missed::Gone } else { Missed::Late });
                }
                // Between requests, as pingora does, a shutdown closes an idle connection.
                changed = std::future::poll_fn(|cx| shutdown.poll_stop(cx)),
                    if idle && shutdown.live => {
                    // Over for this connection either way: the wait cannot be polled again.
                    shutdown.live = false;
                    if changed.is_ok() {
                        return Err(Missed::Gone);
                    }
                    // No one can signal a shutdown any more: only the deadline is left.
                    continue;
                }
            };
            match n {
                Ok(0) | Err(_) => return Err(Missed::Gone),
                Ok(_) => {}
            }
            if let Some(end) = head_end(read, searched) {
                return if end > self.max_head {
                    Err(Missed::TooLarge)
                } else {
                    Ok(end)
                };
            }
            if read.len() > self.max_head {
                return Err(Missed::TooLarge);
            }
            // A blank line that began in these bytes may end in the next ones.
            searched = read.len().saturating_sub(2);
            if idle && !first {
                deadline
                    .as_mut()
                    .reset(Instant::now() + self.header_timeout);
            }
        }
    }
}

/// Where the request head in `bytes` ends (just past its blank line), if it is all there,
/// searching from `from`. A head ends at its first empty line, with or without the CR
/// (httparse, and so pingora, takes a bare LF), after any empty lines that open it.
fn head_end(bytes: &[u8], from: usize) -> Option<usize> {
    let start = bytes.iter().position(|&b| b != b'\r' && b != b'\n')?;
    let from = from.max(start);
    memchr::memchr_iter(b'\n', &bytes[from..])
        .map(|i| from + i)
        .find_map(|lf| match bytes.get(lf + 1..) {
            Some([b'\n', ..]) => Some(lf + 2),
            Some([b'\r', b'\n', ..]) => Some(lf + 3),
            _ => None,
        })
}

/// Answers a request head the proxy will not take with `status` and a problem document, then
/// closes the connection.
async fn refuse<S: AsyncRead + AsyncWrite + Unpin>(mut tcp: S, status: StatusCode, detail: &str) {
    let reply = Reply::problem(
        status.as_u16(),
        status.canonical_reason().unwrap_or("Error"),
        detail,
    );
    let mut out = format!(
        "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n",
        reply.body.len()
    );
    for (name, value) in &reply.headers {
        out.push_str(&format!("{name}: {value}\r\n"));
    }
    out.push_str("\r\n");
    let written = tokio::time::timeout(REFUSAL_WRITE, async {
        tcp.write_all(out.as_bytes()).await?;
        tcp.write_all(&reply.body).await?;
        tcp.flush().await?;
        tcp.shutdown().await
    })
    .await;
    if !matches!(written, Ok(Ok(()))) {
        return;
    }
    // Read what the client still sends, until it closes, for a little while.
    let _ = tokio::time::timeout(LINGER, async {
        let mut sink = [0u8; 4096];
        let mut drained = 0;
        while drained < LINGER_BYTES {
            match tcp.read(&mut sink).await {
                Ok(0) | Err(_) => break,
                Ok(n) => drained += n,
            }
        }
    })
    .await;
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
    fn a_head_ends_at_its_first_empty_line_with_or_without_cr() {
        assert_eq!(head_end(HANDSHAKE, 0), Some(HANDSHAKE.len()));
        let with_body = b"POST / HTTP/1.1\r\nContent-Length: 4\r\n\r\n\r\n\r\n";
        assert_eq!(head_end(with_body, 0), Some(with_body.len() - 4));
        assert_eq!(head_end(b"GET / HTTP/1.1\nHost: a\n\nrest", 0), Some(24));
        assert_eq!(head_end(b"GET / HTTP/1.1\r\nHost: a\n\r\n", 0), Some(26));
        // Empty lines before the request line do not end it.
        assert_eq!(head_end(b"\r\n\r\nGET / HTTP/1.1\r\n\r\n", 0), Some(22));
        assert_eq!(head_end(b"\r\n\r\n", 0), None);
        assert_eq!(head_end(b"", 0), None);
        assert_eq!(head_end(b"GET / HTTP/1.1\r\nHost: a\r\n", 0), None);
        assert_eq!(head_end(b"GET / HTTP/1.1\r\nHost: a\r\n\r", 0), None);
    }

    #[test]
    fn a_blank_line_split_across_reads_is_found_from_where_the_search_resumes() {
        let head = b"GET / HTTP/1.1\r\nHost: a\r\n\r\n";
        for cut in 1..head.len() {
            // What `read_head` searches after a read that ended at `cut`.
            let resume = cut.saturating_sub(2);
            if head_end(&head[..cut], 0).is_none() {
                assert_eq!(head_end(head, resume), Some(head.len()), "cut at {cut}");
            }
        }
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
