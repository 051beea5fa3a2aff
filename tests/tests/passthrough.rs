//! What the app does on its own passes through the proxy unchanged: its WebSockets, large
//! uploads and streaming responses, on matched and on unmatched paths.

use std::time::{Duration, Instant};

use futures::{SinkExt, StreamExt};
use reqwest::StatusCode;
use tests::{client, token, Latch, LatchBuilder, Upstream};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

/// The app's routes are fixed, so one proxy guards `/ws`, `/upload` and `/stream` with these
/// rules and a second proxy without rules shows the unmatched case on the same app.
const RULES: &str = r#"
[[rule]]
id = "live"
pattern = "/ws"
resource = "live"

[[rule]]
id = "upload"
pattern = "/upload"
resource = "uploads"
methods = ["POST"]

[[rule]]
id = "stream"
pattern = "/stream"
resource = "stream"
"#;

const UPLOAD_BYTES: usize = 20 * 1024 * 1024;

struct Env {
    _upstream: Upstream,
    locked: Latch,
    open: Latch,
}

async fn start() -> Env {
    let upstream = Upstream::start().await;
    let locked = LatchBuilder::new(upstream.port()).rules(RULES).start();
    let open = LatchBuilder::new(upstream.port()).start();
    Env {
        _upstream: upstream,
        locked,
        open,
    }
}

async fn ws_echo_round_trips(url: String, tok: Option<&str>) {
    let mut request = url.into_client_request().unwrap();
    if let Some(t) = tok {
        request
            .headers_mut()
            .insert("cookie", format!("latch_token={t}").parse().unwrap());
    }
    let (mut ws, resp) = tokio_tungstenite::connect_async(request).await.unwrap();
    assert_eq!(resp.status(), 101);
    for i in 0..3 {
        ws.send(Message::text(format!("hello {i}"))).await.unwrap();
        let reply = tokio::time::timeout(Duration::from_secs(5), ws.next())
            .await
            .expect("an echo")
            .unwrap()
            .unwrap();
        assert_eq!(reply, Message::text(format!("echo: hello {i}")));
    }
    let blob: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
    ws.send(Message::binary(blob.clone())).await.unwrap();
    let reply = tokio::time::timeout(Duration::from_secs(5), ws.next())
        .await
        .expect("a binary echo")
        .unwrap()
        .unwrap();
    assert_eq!(reply.into_data().as_ref(), blob.as_slice());
    ws.close(None).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_apps_websocket_passes_through_on_unmatched_and_matched_paths() {
    let env = start().await;
    ws_echo_round_trips(env.open.ws_url("/ws"), None).await;
    let alice = token("alice", "Alice", &[]);
    ws_echo_round_trips(env.locked.ws_url("/ws"), Some(&alice)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_locked_websocket_refuses_another_user_and_anonymous_callers() {
    let env = start().await;
    let alice = token("alice", "Alice", &[]);
    let mut request = env.locked.ws_url("/ws").into_client_request().unwrap();
    request
        .headers_mut()
        .insert("authorization", format!("Bearer {alice}").parse().unwrap());
    let (_ws, _) = tokio_tungstenite::connect_async(request).await.unwrap();

    let refused_status = |err: tokio_tungstenite::tungstenite::Error| match err {
        tokio_tungstenite::tungstenite::Error::Http(resp) => resp.status().as_u16(),
        other => panic!("expected an HTTP refusal, got {other}"),
    };
    let bob = token("bob", "Bob", &[]);
    let mut request = env.locked.ws_url("/ws").into_client_request().unwrap();
    request
        .headers_mut()
        .insert("authorization", format!("Bearer {bob}").parse().unwrap());
    let err = tokio_tungstenite::connect_async(request).await.unwrap_err();
    assert_eq!(refused_status(err), 423);

    let err = tokio_tungstenite::connect_async(env.locked.ws_url("/ws"))
        .await
        .unwrap_err();
    assert_eq!(refused_status(err), 401);
}

async fn upload(url: String, tok: Option<&str>, body: reqwest::Body) -> (StatusCode, String) {
    let mut req = client().post(url).body(body);
    if let Some(t) = tok {
        req = req.bearer_auth(t);
    }
    let resp = req.send().await.unwrap();
    (resp.status(), resp.text().await.unwrap())
}

fn payload() -> Vec<u8> {
    (0..UPLOAD_BYTES).map(|i| (i % 253) as u8).collect()
}

/// The same bytes as a chunked stream of 1 MiB pieces (no Content-Length).
fn streamed() -> reqwest::Body {
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> = payload()
        .chunks(1024 * 1024)
        .map(|c| Ok(c.to_vec()))
        .collect();
    reqwest::Body::wrap_stream(futures::stream::iter(chunks))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_20_mb_upload_passes_intact() {
    let env = start().await;
    let alice = token("alice", "Alice", &[]);
    let expected = UPLOAD_BYTES.to_string();

    let (status, count) = upload(env.open.url("/upload"), None, payload().into()).await;
    assert_eq!(
        (status, count.as_str()),
        (StatusCode::OK, expected.as_str())
    );
    let (status, count) = upload(env.open.url("/upload"), None, streamed()).await;
    assert_eq!(
        (status, count.as_str()),
        (StatusCode::OK, expected.as_str())
    );

    let (status, count) = upload(env.locked.url("/upload"), Some(&alice), payload().into()).await;
    assert_eq!(
        (status, count.as_str()),
        (StatusCode::OK, expected.as_str())
    );
    let (status, count) = upload(env.locked.url("/upload"), Some(&alice), streamed()).await;
    assert_eq!(
        (status, count.as_str()),
        (StatusCode::OK, expected.as_str())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_upload_is_answered_without_reaching_the_app() {
    let env = start().await;
    let alice = token("alice", "Alice", &[]);
    let (status, _) = upload(
        env.locked.url("/upload"),
        Some(&alice),
        b"x".to_vec().into(),
    )
    .await;
    assert_eq!(status, StatusCode::OK);

    let bob = token("bob", "Bob", &[]);
    let started = Instant::now();
    let (status, body) = upload(env.locked.url("/upload"), Some(&bob), payload().into()).await;
    assert_eq!(status, StatusCode::LOCKED, "{body}");
    assert!(body.contains("alice"), "{body}");
    assert!(started.elapsed() < Duration::from_secs(10));

    // The proxy still serves the holder afterwards.
    let (status, count) = upload(
        env.locked.url("/upload"),
        Some(&alice),
        b"abc".to_vec().into(),
    )
    .await;
    assert_eq!((status, count.as_str()), (StatusCode::OK, "3"));
}

/// Reads `/stream` and returns its chunks with the time each arrived.
async fn read_stream(latch: &Latch, tok: Option<&str>) -> Vec<(Duration, bytes::Bytes)> {
    let mut req = client().get(latch.url("/stream"));
    if let Some(t) = tok {
        req = req.bearer_auth(t);
    }
    let started = Instant::now();
    let resp = req.send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let mut stream = resp.bytes_stream();
    let mut chunks = Vec::new();
    while let Some(chunk) = stream.next().await {
        chunks.push((started.elapsed(), chunk.unwrap()));
    }
    chunks
}

fn assert_streamed(chunks: &[(Duration, bytes::Bytes)]) {
    let body: Vec<u8> = chunks.iter().flat_map(|(_, c)| c.to_vec()).collect();
    assert_eq!(
        String::from_utf8(body).unwrap(),
        "tick 0\ntick 1\ntick 2\ntick 3\ntick 4\n"
    );
    // The app sends five ticks 100 ms apart: they must arrive spread out, not all at the end.
    let first = chunks.first().unwrap().0;
    let last = chunks.last().unwrap().0;
    assert!(chunks.len() >= 3, "{} chunks", chunks.len());
    assert!(
        last - first >= Duration::from_millis(250),
        "arrived within {:?}",
        last - first
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_streaming_response_arrives_chunk_by_chunk() {
    let env = start().await;
    assert_streamed(&read_stream(&env.open, None).await);
    let alice = token("alice", "Alice", &[]);
    assert_streamed(&read_stream(&env.locked, Some(&alice)).await);
}

/// Fetches `/sleep/{ms}` through a proxy whose `upstream_timeout_seconds` is `timeout`, and
/// returns the status, the body and how long the answer took.
async fn sleep_through(timeout: &str, ms: u64) -> (StatusCode, String, Duration) {
    let upstream = Upstream::start().await;
    let latch = LatchBuilder::new(upstream.port())
        .env("LATCH_PROXY_UPSTREAM_TIMEOUT_SECONDS", timeout)
        .start();
    let started = Instant::now();
    let resp = client()
        .get(latch.url(&format!("/sleep/{ms}")))
        .send()
        .await
        .unwrap();
    let status = resp.status();
    let body = resp.text().await.unwrap();
    (status, body, started.elapsed())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upstream_silent_past_the_upstream_timeout_gets_a_502_at_that_time() {
    let (status, body, took) = sleep_through("1", 4_000).await;
    assert_eq!(status, StatusCode::BAD_GATEWAY, "{body}");
    assert!(!body.contains("slept"), "{body}");
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_millis(3_500),
        "answered after {took:?}"
    );
    // Under the limit, the same route answers.
    let (status, body, _) = sleep_through("1", 300).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, "slept 300 ms");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upstream_timeout_of_zero_waits_for_a_slow_upstream() {
    let (status, body, took) = sleep_through("0", 1_500).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, "slept 1500 ms");
    assert!(
        took >= Duration::from_millis(1_500),
        "answered after {took:?}"
    );
}
