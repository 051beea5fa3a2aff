//! The banner-socket scenarios: how fast a release reaches N watchers, and what N idle
//! sockets cost in memory. The clients behave like the banner script: a token cookie and a
//! same-origin `Origin` on the handshake, then a `watch` for a page's path.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::{SinkExt, StreamExt};
use rustls::pki_types::ServerName;
use serde_json::Value;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio_rustls::TlsConnector;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::handshake::client::Request;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::BenchError;

/// Latch's default reserved prefix, which the benchmark config keeps.
pub const PREFIX: &str = "/__latch";

/// How long one watcher may take to connect and get its first state.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(20);

/// How long all watchers together may take to hear of one change.
const CHANGE_TIMEOUT: Duration = Duration::from_secs(20);

/// Handshakes in flight at once while opening many sockets.
const CONNECT_CONCURRENCY: usize = 128;

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;
type TlsWs = WebSocketStream<tokio_rustls::client::TlsStream<TcpStream>>;

/// A `lock` message's state, as a watcher saw it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    Held,
    Free,
}

/// The `state` of a `lock` message, or `None` for any other message.
pub fn lock_state(text: &str) -> Option<State> {
    let v: Value = serde_json::from_str(text).ok()?;
    if v.get("type")?.as_str()? != "lock" {
        return None;
    }
    match v.get("state")?.as_str()? {
        "held" => Some(State::Held),
        "free" => Some(State::Free),
        _ => None,
    }
}

/// The number `field` of a message of type `kind`, or `None` for any other message.
pub(crate) fn count_in(text: &str, kind: &str, field: &str) -> Option<u64> {
    let v: Value = serde_json::from_str(text).ok()?;
    if v.get("type")?.as_str()? != kind {
        return None;
    }
    v.get(field)?.as_u64()
}

pub(crate) fn check(what: impl Into<String>) -> BenchError {
    BenchError::Check(what.into())
}

/// Opens one banner socket for `token`, watches `path`, and waits for the first state.
pub async fn connect(port: u16, token: &str, path: &str) -> Result<(Ws, State), BenchError> {
    let attempt = async {
        let request = banner_request("ws", port, token)?;
        let (mut ws, _) =
            tokio_tungstenite::connect_async_with_config(request, Some(socket_config()), false)
                .await
                .map_err(|e| check(format!("banner socket handshake: {e}")))?;
        let state = watch(&mut ws, path).await?;
        Ok((ws, state))
    };
    tokio::time::timeout(CONNECT_TIMEOUT, attempt)
        .await
        .map_err(|_| check("banner socket: no state within the connect timeout"))?
}

/// [`connect`] over TLS, to Latch's HTTPS listener on `port`, trusting what `tls` trusts.
pub async fn connect_tls(
    port: u16,
    tls: &Arc<rustls::ClientConfig>,
    token: &str,
    path: &str,
) -> Result<(TlsWs, State), BenchError> {
    let attempt = async {
        let tcp = TcpStream::connect(("127.0.0.1", port))
            .await
            .map_err(|e| check(format!("connecting to the HTTPS listener: {e}")))?;
        let name = ServerName::IpAddress(std::net::Ipv4Addr::LOCALHOST.into());
        let stream = TlsConnector::from(Arc::clone(tls))
            .connect(name, tcp)
            .await
            .map_err(|e| check(format!("TLS handshake: {e}")))?;
        let request = banner_request("wss", port, token)?;
        let (mut ws, _) =
            tokio_tungstenite::client_async_with_config(request, stream, Some(socket_config()))
                .await
                .map_err(|e| check(format!("banner socket handshake: {e}")))?;
        let state = watch(&mut ws, path).await?;
        Ok((ws, state))
    };
    tokio::time::timeout(CONNECT_TIMEOUT, attempt)
        .await
        .map_err(|_| check("banner socket: no state within the connect timeout"))?
}

/// The banner socket's handshake request for `token` at `scheme://127.0.0.1:port`, sent from
/// a page of the same origin.
fn banner_request(scheme: &str, port: u16, token: &str) -> Result<Request, BenchError> {
    let mut request = format!("{scheme}://127.0.0.1:{port}{PREFIX}/ws")
        .into_client_request()
        .map_err(|e| check(format!("banner socket request: {e}")))?;
    let headers = request.headers_mut();
    let cookie = HeaderValue::from_str(&format!("latch_token={token}"))
        .map_err(|e| check(format!("cookie header: {e}")))?;
    headers.insert("cookie", cookie);
    let page = if scheme == "wss" { "https" } else { "http" };
    let origin = HeaderValue::from_str(&format!("{page}://127.0.0.1:{port}"))
        .map_err(|e| check(format!("origin header: {e}")))?;
    headers.insert("origin", origin);
    Ok(request)
}

/// Small buffers, as a browser would hold for a socket that carries a few short messages.
fn socket_config() -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(4 * 1024)
        .write_buffer_size(0)
}

/// Watches `path` on an open banner socket and waits for its first state.
async fn watch<S>(ws: &mut WebSocketStream<S>, path: &str) -> Result<State, BenchError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let watch = serde_json::json!({ "type": "watch", "path": path }).to_string();
    ws.send(Message::Text(watch.into()))
        .await
        .map_err(|e| check(format!("sending watch: {e}")))?;
    while let Some(msg) = ws.next().await {
        let msg = msg.map_err(|e| check(format!("banner socket: {e}")))?;
        if let Message::Text(text) = msg {
            if let Some(state) = lock_state(&text) {
                return Ok(state);
            }
            if text.contains("\"error\"") {
                return Err(check(format!("watch refused: {text}")));
            }
        }
    }
    Err(check("banner socket closed before the first state"))
}

/// Opens `tokens.len()` sockets watching `path_of(i)`, a bounded number at a time.
pub(crate) async fn open_many(
    port: u16,
    tokens: &[String],
    path_of: impl Fn(usize) -> String,
) -> Result<Vec<Ws>, BenchError> {
    let results: Vec<Result<(Ws, State), BenchError>> =
        futures::stream::iter(tokens.iter().enumerate().map(|(i, token)| {
            let path = path_of(i);
            async move { connect(port, token, &path).await }
        }))
        .buffer_unordered(CONNECT_CONCURRENCY)
        .collect()
        .await;
    results.into_iter().map(|r| r.map(|(ws, _)| ws)).collect()
}

/// Release-to-watchers latencies, one per watcher per round.
#[derive(Clone, Debug)]
pub struct Fanout {
    pub watchers: usize,
    pub rounds: usize,
    pub latencies_ms: Vec<f64>,
}

/// Sends `request` and checks its status.
pub(crate) async fn expect_status(
    request: reqwest::RequestBuilder,
    expect: u16,
    what: &str,
) -> Result<(), BenchError> {
    let response = request
        .send()
        .await
        .map_err(|e| check(format!("{what}: {e}")))?;
    let status = response.status().as_u16();
    if status != expect {
        let body = response.text().await.unwrap_or_default();
        return Err(check(format!(
            "{what}: status {status}, expected {expect}: {body}"
        )));
    }
    Ok(())
}

/// What one watcher's socket said, and when it arrived.
pub(crate) type Heard<T> = mpsc::UnboundedReceiver<(usize, T, Instant)>;

/// Reads every socket in the background; each message `parse` recognises is reported with
/// the watcher's index and its arrival time.
pub(crate) fn listen<T: Send + 'static>(
    sockets: Vec<Ws>,
    parse: fn(&str) -> Option<T>,
) -> (JoinSet<()>, Heard<T>) {
    let (tx, events) = mpsc::unbounded_channel();
    let mut tasks = JoinSet::new();
    for (who, mut ws) in sockets.into_iter().enumerate() {
        let tx = tx.clone();
        tasks.spawn(async move {
            while let Some(Ok(msg)) = ws.next().await {
                if let Message::Text(text) = msg {
                    if let Some(seen) = parse(&text) {
                        let _ = tx.send((who, seen, Instant::now()));
                    }
                }
            }
        });
    }
    (tasks, events)
}

/// Waits until every watcher reported `want` at least once; `on_event` gets the arrival time
/// of each watcher's first report of it.
pub(crate) async fn await_all<T: PartialEq + std::fmt::Debug>(
    events: &mut Heard<T>,
    watchers: usize,
    want: T,
    mut on_event: impl FnMut(Instant),
) -> Result<(), BenchError> {
    let mut seen = HashSet::with_capacity(watchers);
    let deadline = tokio::time::Instant::now() + CHANGE_TIMEOUT;
    while seen.len() < watchers {
        match tokio::time::timeout_at(deadline, events.recv()).await {
            Ok(Some((who, state, at))) => {
                if state == want && seen.insert(who) {
                    on_event(at);
                }
            }
            Ok(None) => return Err(check("every watcher socket closed")),
            Err(_) => {
                return Err(check(format!(
                    "only {} of {watchers} watchers saw {want:?} within {CHANGE_TIMEOUT:?}",
                    seen.len()
                )))
            }
        }
    }
    Ok(())
}

/// The page the fan-out scenarios watch, and its resource.
pub(crate) const PAGE: &str = "/watch/1/asset.bin";
pub(crate) const RESOURCE: &str = "watch:1";

/// `tokens.len()` watchers on [`PAGE`]; per round the holder claims the page, everyone
/// sees it held, then the holder releases it by POST and each watcher's arrival of "free" is
/// timed from just before the POST was sent.
pub async fn release_to_watchers(
    port: u16,
    holder: &str,
    tokens: &[String],
    rounds: usize,
) -> Result<Fanout, BenchError> {
    let page = PAGE;
    let sockets = open_many(port, tokens, |_| page.to_string()).await?;
    let watchers = sockets.len();
    let (mut tasks, mut events) = listen(sockets, lock_state);

    let client = reqwest::Client::builder()
        .no_proxy()
        .build()
        .map_err(|e| check(format!("http client: {e}")))?;
    let base = format!("http://127.0.0.1:{port}");
    let mut latencies_ms = Vec::with_capacity(watchers * rounds);
    for _ in 0..rounds {
        expect_status(
            client.get(format!("{base}{page}")).bearer_auth(holder),
            200,
            "holder's claim",
        )
        .await?;
        await_all(&mut events, watchers, State::Held, |_| {}).await?;
        // Let the claim's traffic settle so the release is timed on a quiet proxy.
        tokio::time::sleep(Duration::from_millis(300)).await;
        let sent = Instant::now();
        expect_status(
            client
                .post(format!("{base}{PREFIX}/release"))
                .bearer_auth(holder)
                .body(serde_json::json!({ "resource": RESOURCE }).to_string()),
            204,
            "holder's release",
        )
        .await?;
        await_all(&mut events, watchers, State::Free, |at| {
            latencies_ms.push(at.duration_since(sent).as_secs_f64() * 1000.0)
        })
        .await?;
    }
    tasks.abort_all();
    Ok(Fanout {
        watchers,
        rounds,
        latencies_ms,
    })
}

/// Memory of one instance before and after `tokens.len()` idle banner sockets.
#[derive(Clone, Debug)]
pub struct Idle {
    pub sockets: usize,
    pub rss_before_kib: u64,
    pub rss_after_kib: u64,
    /// `latch_banner_sockets` from the admin port once all were open.
    pub server_count: Option<u64>,
    pub open_seconds: f64,
}

async fn banner_gauge(admin_port: u16) -> Option<u64> {
    let text = reqwest::Client::builder()
        .no_proxy()
        .build()
        .ok()?
        .get(format!("http://127.0.0.1:{admin_port}/metrics"))
        .send()
        .await
        .ok()?
        .text()
        .await
        .ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix("latch_banner_sockets "))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .map(|v| v as u64)
}

/// Opens one idle banner socket per token (each watching one of 1,000 pages), over TLS to the
/// HTTPS listener on `port` when `tls` is given, keeps them open while `rss` is read, then
/// closes them all.
pub async fn idle_sockets(
    port: u16,
    tls: Option<&Arc<rustls::ClientConfig>>,
    admin_port: u16,
    tokens: &[String],
    rss: impl Fn() -> Option<u64>,
) -> Result<Idle, BenchError> {
    let rss_before_kib = rss().ok_or_else(|| check("cannot read the proxy's memory"))?;
    let start = Instant::now();
    let page = |i: usize| format!("/watch/{}/page.html", i % 1000);
    let mut tasks = JoinSet::new();
    match tls {
        None => keep_reading(&mut tasks, open_many(port, tokens, page).await?),
        Some(tls) => {
            let results: Vec<Result<(TlsWs, State), BenchError>> =
                futures::stream::iter(tokens.iter().enumerate().map(|(i, token)| {
                    let path = page(i);
                    async move { connect_tls(port, tls, token, &path).await }
                }))
                .buffer_unordered(CONNECT_CONCURRENCY)
                .collect()
                .await;
            let sockets = results
                .into_iter()
                .map(|r| r.map(|(ws, _)| ws))
                .collect::<Result<Vec<_>, _>>()?;
            keep_reading(&mut tasks, sockets);
        }
    }
    let open_seconds = start.elapsed().as_secs_f64();
    // Let allocator caches and the sockets' first buffers settle.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let server_count = banner_gauge(admin_port).await;
    let rss_after_kib = rss().ok_or_else(|| check("cannot read the proxy's memory"))?;
    let open = tasks.len();
    tasks.abort_all();
    Ok(Idle {
        sockets: open,
        rss_before_kib,
        rss_after_kib,
        server_count,
        open_seconds,
    })
}

/// Keeps reading every socket, which answers the server's pings, as an idle browser tab does.
fn keep_reading<S>(tasks: &mut JoinSet<()>, sockets: Vec<WebSocketStream<S>>)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    for mut ws in sockets {
        tasks.spawn(async move { while let Some(Ok(_)) = ws.next().await {} });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lock_messages_are_told_apart() {
        assert_eq!(
            lock_state(r#"{"type":"lock","resource":"r","state":"free","holder":null}"#),
            Some(State::Free)
        );
        assert_eq!(
            lock_state(r#"{"type":"lock","resource":"r","state":"held"}"#),
            Some(State::Held)
        );
        assert_eq!(lock_state(r#"{"type":"taken_over","resource":"r"}"#), None);
        assert_eq!(lock_state("not json"), None);
    }
}
