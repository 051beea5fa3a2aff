//! Connection exhaustion: clients that open connections and say nothing, trickle or half-send a
//! head, send an oversized head, or open more connections than their share. Each is bounded by
//! a `[proxy]` key (short here, so the tests are quick) and none stops others from being served.
//!
//! Requests are written to the socket byte for byte, since an HTTP client would never send what
//! is under test. The upstream is a raw one that records every request head it receives, so a
//! test can tell that a refused request never reached it.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tests::{Latch, LatchBuilder};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};

/// `proxy.header_timeout_seconds` in these tests.
const HEADER_TIMEOUT: Duration = Duration::from_secs(2);
/// How late after its deadline a connection may still be closed, on a loaded machine.
const SLACK: Duration = Duration::from_millis(2500);

/// An upstream that answers every request `200 ok` and keeps each request head it received.
struct Recorder {
    port: u16,
    heads: Arc<Mutex<Vec<Vec<u8>>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Recorder {
    async fn start() -> Recorder {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let heads = Arc::new(Mutex::new(Vec::new()));
        let kept = heads.clone();
        let task = tokio::spawn(async move {
            while let Ok((mut conn, _)) = listener.accept().await {
                let kept = kept.clone();
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    let mut chunk = [0u8; 8192];
                    loop {
                        while let Some(end) = find(&buf, b"\r\n\r\n") {
                            let head: Vec<u8> = buf.drain(..end + 4).collect();
                            kept.lock().unwrap().push(head);
                            let ok = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\
                                       Content-Length: 2\r\n\r\nok";
                            if conn.write_all(ok).await.is_err() {
                                return;
                            }
                        }
                        match conn.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                    }
                });
            }
        });
        Recorder { port, heads, task }
    }

    fn heads(&self) -> Vec<String> {
        self.heads
            .lock()
            .unwrap()
            .iter()
            .map(|h| String::from_utf8_lossy(h).into_owned())
            .collect()
    }
}

impl Drop for Recorder {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// A proxy in front of a [`Recorder`] with the given `[proxy]` bounds as environment overrides.
async fn start(bounds: &[(&str, &str)]) -> (Recorder, Latch) {
    let upstream = Recorder::start().await;
    let mut builder = LatchBuilder::new(upstream.port).env(
        "LATCH_PROXY_HEADER_TIMEOUT_SECONDS",
        &HEADER_TIMEOUT.as_secs().to_string(),
    );
    for (key, value) in bounds {
        builder = builder.env(key, value);
    }
    let latch = builder.start();
    (upstream, latch)
}

/// A connection to the proxy from `from` (any address in 127.0.0.0/8 reaches it).
async fn connect_from(from: [u8; 4], port: u16) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket
        .bind(SocketAddr::from((from, 0)))
        .expect("bind a loopback source address");
    socket
        .connect(SocketAddr::from(([127, 0, 0, 1], port)))
        .await
        .expect("connect to the proxy")
}

async fn connect(port: u16) -> TcpStream {
    connect_from([127, 0, 0, 1], port).await
}

fn get(path: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n").into_bytes()
}

/// One response: its status, headers (lower-case names) and body.
#[derive(Debug)]
struct Response {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Response {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Reads one response with a Content-Length body, leaving the connection open. `None` when the
/// connection closes (or resets) before a whole response head arrived.
async fn read_response(conn: &mut TcpStream) -> Option<Response> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let end = loop {
        if let Some(end) = find(&buf, b"\r\n\r\n") {
            break end;
        }
        match tokio::time::timeout(Duration::from_secs(15), conn.read(&mut chunk))
            .await
            .expect("the proxy answers or closes within 15 s")
        {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    };
    let head = String::from_utf8_lossy(&buf[..end]).into_owned();
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("bad status line in {head:?}"));
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let length: usize = headers
        .iter()
        .find(|(n, _)| n == "content-length")
        .map_or(0, |(_, v)| v.parse().expect("a Content-Length"));
    let mut body = buf[end + 4..].to_vec();
    while body.len() < length {
        match conn.read(&mut chunk).await {
            Ok(0) | Err(_) => break,
            Ok(n) => body.extend_from_slice(&chunk[..n]),
        }
    }
    Some(Response {
        status,
        headers,
        body,
    })
}

/// Waits until the proxy closes `conn` (end of stream or reset), discarding what it sends, and
/// returns how long after `since` that was. Panics if it stays open for 15 s.
async fn closed_after(conn: &mut TcpStream, since: Instant) -> Duration {
    let mut chunk = [0u8; 4096];
    loop {
        match tokio::time::timeout(Duration::from_secs(15), conn.read(&mut chunk))
            .await
            .expect("the proxy closes the connection within 15 s")
        {
            Ok(0) | Err(_) => return since.elapsed(),
            Ok(_) => {}
        }
    }
}

fn assert_near_deadline(took: Duration, deadline: Duration, what: &str) {
    assert!(
        took >= deadline - Duration::from_millis(100) && took <= deadline + SLACK,
        "{what}: closed after {took:?}, expected about {deadline:?}"
    );
}

#[tokio::test]
async fn silent_connections_neither_lock_others_out_nor_outlive_the_header_timeout() {
    const LIMIT: usize = 32;
    const SILENT: usize = 100;
    let (upstream, latch) = start(&[("LATCH_PROXY_MAX_CONNECTIONS_PER_CLIENT", "32")]).await;

    let opened = Instant::now();
    let mut silent = Vec::new();
    for _ in 0..SILENT {
        silent.push(connect(latch.port).await);
    }

    // Another client is served at once, while the silent ones are still open.
    let mut other = connect_from([127, 0, 0, 2], latch.port).await;
    other.write_all(&get("/while-silent")).await.unwrap();
    let response = read_response(&mut other).await.expect("a response");
    assert_eq!(response.status, 200);
    assert!(
        opened.elapsed() < HEADER_TIMEOUT,
        "served only after {:?}",
        opened.elapsed()
    );

    // Those past the limit are closed at once, the others at the header timeout.
    let closures =
        futures::future::join_all(silent.iter_mut().map(|conn| closed_after(conn, opened))).await;
    let at_once = closures
        .iter()
        .filter(|t| **t < Duration::from_secs(1))
        .count();
    assert_eq!(at_once, SILENT - LIMIT, "closed at once: {closures:?}");
    for took in closures.iter().filter(|t| **t >= Duration::from_secs(1)) {
        assert_near_deadline(*took, HEADER_TIMEOUT, "a silent connection");
    }

    // The address that held them is served again.
    let mut again = connect(latch.port).await;
    again.write_all(&get("/after")).await.unwrap();
    assert_eq!(
        read_response(&mut again).await.expect("a response").status,
        200
    );
    let heads = upstream.heads();
    assert_eq!(heads.len(), 2, "{heads:?}");
}

/// Sends `bytes` and then nothing, and expects 408 and the close at the header timeout.
async fn half_sent_head_gets_408_at_the_deadline(port: u16, bytes: &[u8], what: &str) {
    let mut conn = connect(port).await;
    let opened = Instant::now();
    conn.write_all(bytes).await.unwrap();
    let response = read_response(&mut conn)
        .await
        .unwrap_or_else(|| panic!("{what}: closed without a 408"));
    assert_eq!(response.status, 408, "{what}");
    assert_eq!(
        response.header("content-type"),
        Some("application/problem+json"),
        "{what}"
    );
    assert_eq!(response.header("connection"), Some("close"), "{what}");
    let took = closed_after(&mut conn, opened).await;
    assert_near_deadline(took, HEADER_TIMEOUT, what);
}

#[tokio::test]
async fn half_sent_heads_get_408_and_are_closed_at_the_header_timeout() {
    let (upstream, latch) = start(&[]).await;
    let ordinary = b"GET /page HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/html\r\n";
    let banner = b"GET /__latch/ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n\
                   Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n";
    tokio::join!(
        half_sent_head_gets_408_at_the_deadline(latch.port, ordinary, "an ordinary head"),
        half_sent_head_gets_408_at_the_deadline(latch.port, banner, "a banner handshake"),
        half_sent_head_gets_408_at_the_deadline(latch.port, b"G", "one byte"),
    );
    assert!(upstream.heads().is_empty(), "{:?}", upstream.heads());
}

#[tokio::test]
async fn a_trickled_head_is_cut_at_the_header_timeout_however_often_bytes_come() {
    let (upstream, latch) = start(&[]).await;
    let mut conn = connect(latch.port).await;
    let opened = Instant::now();
    let head =
        b"GET /slow HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    // One byte every 100 ms would take 8 s; the proxy must not wait for it.
    let mut status = None;
    for byte in head {
        if conn.write_all(&[*byte]).await.is_err() {
            break;
        }
        let mut peek = [0u8; 16];
        if let Ok(Ok(n)) =
            tokio::time::timeout(Duration::from_millis(100), conn.peek(&mut peek)).await
        {
            if n > 0 {
                status = Some(peek[..n].to_vec());
                break;
            }
        }
    }
    let first = status.expect("the proxy answered before the head was complete");
    assert!(first.starts_with(b"HTTP/1.1 408"), "{first:?}");
    let took = closed_after(&mut conn, opened).await;
    assert_near_deadline(took, HEADER_TIMEOUT, "a trickled head");
    assert!(upstream.heads().is_empty());
}

#[tokio::test]
async fn kept_alive_connections_are_bounded_between_and_within_later_requests() {
    let keepalive = Duration::from_secs(3);
    let (upstream, latch) = start(&[("LATCH_PROXY_KEEPALIVE_TIMEOUT_SECONDS", "3")]).await;

    // Idle after a response: closed at the keepalive timeout, without a word.
    let idle = async {
        let mut conn = connect(latch.port).await;
        conn.write_all(&get("/first")).await.unwrap();
        assert_eq!(
            read_response(&mut conn).await.expect("a response").status,
            200
        );
        let answered = Instant::now();
        let mut rest = Vec::new();
        let closed = tokio::time::timeout(Duration::from_secs(15), conn.read_to_end(&mut rest))
            .await
            .expect("closed within 15 s");
        assert!(closed.is_ok() && rest.is_empty(), "{closed:?} {rest:?}");
        assert_near_deadline(
            answered.elapsed(),
            keepalive,
            "an idle kept-alive connection",
        );
    };

    // A second request's head half sent: 408 at the header timeout after its first bytes,
    // however long the connection idled before them.
    let half = async {
        let mut conn = connect(latch.port).await;
        conn.write_all(&get("/first")).await.unwrap();
        assert_eq!(
            read_response(&mut conn).await.expect("a response").status,
            200
        );
        tokio::time::sleep(Duration::from_secs(2)).await;
        let started = Instant::now();
        conn.write_all(b"GET /second HTTP/1.1\r\nHost: 127.0.0.1\r\n")
            .await
            .unwrap();
        let response = read_response(&mut conn).await.expect("a 408");
        assert_eq!(response.status, 408);
        let took = closed_after(&mut conn, started).await;
        assert_near_deadline(took, HEADER_TIMEOUT, "a later half-sent head");
    };

    // A connection that keeps asking is served for longer than either timeout.
    let busy = async {
        let mut conn = connect(latch.port).await;
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(5) {
            conn.write_all(&get("/busy")).await.unwrap();
            assert_eq!(
                read_response(&mut conn).await.expect("a response").status,
                200
            );
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    };
    tokio::join!(idle, half, busy);
    let heads = upstream.heads();
    assert!(heads.iter().all(|h| !h.contains("/second")), "{heads:?}");
}

#[tokio::test]
async fn an_oversized_head_gets_431_and_never_reaches_the_app() {
    let (upstream, latch) = start(&[("LATCH_PROXY_MAX_HEADER_BYTES", "4096")]).await;
    let head = |path: &str, filler: usize| {
        format!(
            "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Filler: {}\r\n\r\n",
            "a".repeat(filler)
        )
        .into_bytes()
    };

    // Just under the limit: forwarded.
    let fits = head("/fits", 4000);
    assert!(fits.len() <= 4096);
    let mut conn = connect(latch.port).await;
    conn.write_all(&fits).await.unwrap();
    assert_eq!(
        read_response(&mut conn).await.expect("a response").status,
        200
    );

    // Over it, as a first request and as a later one on the same kept-alive connection.
    let too_large = head("/too-large", 8000);
    for conn in [connect(latch.port).await, conn] {
        let mut conn = conn;
        let sent = Instant::now();
        conn.write_all(&too_large).await.unwrap();
        let response = read_response(&mut conn).await.expect("a 431");
        assert_eq!(response.status, 431);
        assert_eq!(
            response.header("content-type"),
            Some("application/problem+json")
        );
        let problem: serde_json::Value = serde_json::from_slice(&response.body).unwrap();
        assert_eq!(problem["status"], 431);
        assert!(closed_after(&mut conn, sent).await < Duration::from_secs(2));
    }

    // A head larger than pingora's own limit (1 MiB) gets the same answer, not pingora's 400.
    // The answer comes while the client is still sending, so it is read meanwhile.
    let conn = connect(latch.port).await;
    let huge = head("/huge", 2 * 1024 * 1024);
    let (mut reader, mut writer) = conn.into_split();
    let sending = tokio::spawn(async move {
        let _ = writer.write_all(&huge).await;
        writer
    });
    let mut response = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(15), reader.read_to_end(&mut response)).await;
    assert!(
        response.starts_with(b"HTTP/1.1 431 "),
        "{:?}",
        String::from_utf8_lossy(&response[..response.len().min(200)])
    );
    drop(sending.await);

    let heads = upstream.heads();
    assert_eq!(heads.len(), 1, "{heads:?}");
    assert!(heads[0].starts_with("GET /fits "), "{heads:?}");
}

#[tokio::test]
async fn a_client_past_its_connection_limit_is_refused_until_one_closes() {
    let (upstream, latch) = start(&[
        ("LATCH_PROXY_MAX_CONNECTIONS_PER_CLIENT", "3"),
        ("LATCH_PROXY_KEEPALIVE_TIMEOUT_SECONDS", "60"),
    ])
    .await;
    // The start's readiness probes were connections from this address too; the proxy may
    // not have seen them close yet, so a refused connection is tried again for a while.
    let mut held = Vec::new();
    for _ in 0..3 {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let mut conn = connect(latch.port).await;
            conn.write_all(&get("/held")).await.unwrap();
            match read_response(&mut conn).await {
                Some(response) => {
                    assert_eq!(response.status, 200);
                    held.push(conn);
                    break;
                }
                None if Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                None => panic!(
                    "no response within 5 s with {} connections held",
                    held.len()
                ),
            }
        }
    }

    // The fourth is closed at once, without an answer.
    let mut fourth = connect(latch.port).await;
    let sent = Instant::now();
    let _ = fourth.write_all(&get("/fourth")).await;
    assert!(read_response(&mut fourth).await.is_none());
    assert!(
        sent.elapsed() < Duration::from_secs(1),
        "{:?}",
        sent.elapsed()
    );

    // Another address is not affected.
    let mut other = connect_from([127, 0, 0, 3], latch.port).await;
    other.write_all(&get("/other")).await.unwrap();
    assert_eq!(
        read_response(&mut other).await.expect("a response").status,
        200
    );

    // Once one of the three closes, the client is admitted again.
    drop(held.pop());
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let mut conn = connect(latch.port).await;
        let _ = conn.write_all(&get("/again")).await;
        if let Some(response) = read_response(&mut conn).await {
            assert_eq!(response.status, 200);
            break;
        }
        assert!(Instant::now() < deadline, "never admitted again");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let heads = upstream.heads();
    assert!(heads.iter().all(|h| !h.contains("/fourth")), "{heads:?}");
    assert_eq!(heads.len(), 5, "{heads:?}");
}

/// On SIGTERM the proxy reads no more requests: a kept-alive connection waiting for its next
/// one, and a connection that has sent nothing yet, are closed at once, not when the 1 s grace
/// period ends nor at their own deadline.
#[tokio::test]
async fn a_graceful_shutdown_closes_waiting_connections_at_once() {
    let (upstream, latch) = start(&[]).await;
    let mut kept = connect(latch.port).await;
    kept.write_all(&get("/first")).await.unwrap();
    let response = read_response(&mut kept).await.expect("a response");
    assert_eq!(response.status, 200);
    let mut fresh = connect(latch.port).await;
    // Both are now waiting for a head.
    tokio::time::sleep(Duration::from_millis(200)).await;

    let signalled = Instant::now();
    let killed = std::process::Command::new("kill")
        .args(["-TERM", &latch.pid().to_string()])
        .status()
        .expect("kill runs");
    assert!(killed.success());
    let (kept_closed, fresh_closed) = tokio::join!(
        closed_after(&mut kept, signalled),
        closed_after(&mut fresh, signalled)
    );
    for (took, what) in [(kept_closed, "kept-alive"), (fresh_closed, "fresh")] {
        assert!(
            took < Duration::from_millis(800),
            "the {what} connection was closed {took:?} after SIGTERM"
        );
    }
    assert_eq!(upstream.heads().len(), 1, "{:?}", upstream.heads());
}
