//! The banner WebSocket (docs/banner.md) driven by a real WebSocket client through the real proxy:
//! the lock messages each viewer gets, heartbeats, release, takeover, request access, the
//! limits, and what happens when a holder's socket closes for good or for a reload.

use std::sync::LazyLock;
use std::time::{Duration, Instant};

use futures::{SinkExt, StreamExt};
use reqwest::header::{COOKIE, ORIGIN};
use reqwest::StatusCode;
use serde_json::{json, Value};
use tests::fixtures::{DOC, TAB};
use tests::{client, token, token_ttl, Latch, LatchBuilder, Upstream};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

static RULES: LazyLock<String> = LazyLock::new(|| [DOC, TAB].concat());

/// How long any single expected message may take before the test gives up.
const PATIENCE: Duration = Duration::from_secs(5);

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

struct Setup {
    latch: Latch,
    _upstream: Upstream,
}

async fn setup() -> Setup {
    setup_locks("store = \"memory\"\nlease_seconds = 30\ngrace_seconds = 10").await
}

async fn setup_locks(locks: &str) -> Setup {
    setup_with(locks, &[]).await
}

/// The proxy with `[locks]` set to `locks` and the environment variables in `env`.
async fn setup_with(locks: &str, env: &[(&str, &str)]) -> Setup {
    let upstream = Upstream::start().await;
    let mut builder = LatchBuilder::new(upstream.port())
        .rules(&RULES)
        .locks(locks);
    for (key, value) in env {
        builder = builder.env(key, value);
    }
    let latch = builder.start();
    Setup {
        latch,
        _upstream: upstream,
    }
}

/// One browser: a user's token, and for session-owned rules its own session cookie.
#[derive(Clone)]
struct Browser {
    cookie: String,
}

impl Browser {
    fn new(sub: &str, name: &str, roles: &[&str]) -> Browser {
        Browser {
            cookie: format!("latch_token={}", token(sub, name, roles)),
        }
    }

    fn with_token(jwt: &str) -> Browser {
        Browser {
            cookie: format!("latch_token={jwt}"),
        }
    }

    fn tab(&self, sid: &str) -> Browser {
        Browser {
            cookie: format!("{}; latch_sid={sid}", self.cookie),
        }
    }
}

impl Setup {
    fn origin(&self) -> String {
        format!("http://127.0.0.1:{}", self.latch.port)
    }

    /// GETs a protected page (which claims or renews its lock); returns the status and the
    /// fence the upstream was told.
    async fn open_page(&self, who: &Browser, path: &str) -> (StatusCode, Option<u64>) {
        let resp = client()
            .get(self.latch.url(path))
            .header(COOKIE, &who.cookie)
            .send()
            .await
            .expect("GET through the proxy");
        let status = resp.status();
        if status != StatusCode::OK {
            return (status, None);
        }
        let echo: Value = resp.json().await.expect("echo JSON");
        let fence = echo["headers"]["x-latch-fence"]
            .as_str()
            .and_then(|f| f.parse().ok());
        (status, fence)
    }

    /// POSTs to a protected path, as a save would.
    async fn save(&self, who: &Browser, path: &str) -> StatusCode {
        client()
            .post(self.latch.url(path))
            .header(COOKIE, &who.cookie)
            .body("content")
            .send()
            .await
            .expect("POST through the proxy")
            .status()
    }

    async fn try_connect(
        &self,
        cookie: Option<&str>,
        origin: Option<&str>,
    ) -> Result<Ws, tungstenite::Error> {
        let mut req = self
            .latch
            .ws_url("/__latch/ws")
            .into_client_request()
            .expect("a WebSocket request");
        if let Some(origin) = origin {
            req.headers_mut()
                .insert(ORIGIN, HeaderValue::from_str(origin).expect("origin"));
        }
        if let Some(cookie) = cookie {
            req.headers_mut()
                .insert(COOKIE, HeaderValue::from_str(cookie).expect("cookie"));
        }
        tokio::time::timeout(PATIENCE, tokio_tungstenite::connect_async(req))
            .await
            .expect("the handshake timed out")
            .map(|(ws, _)| ws)
    }

    async fn connect(&self, who: &Browser) -> Ws {
        self.try_connect(Some(&who.cookie), Some(&self.origin()))
            .await
            .expect("the banner socket opens")
    }

    /// Opens a socket, trying again for a while when the connection is refused: under a
    /// per-client connection limit, the proxy may not yet have seen earlier connections from
    /// this address (the start's readiness probes) close.
    async fn connect_retrying(&self, who: &Browser) -> Ws {
        let deadline = Instant::now() + PATIENCE;
        loop {
            match self
                .try_connect(Some(&who.cookie), Some(&self.origin()))
                .await
            {
                Ok(ws) => return ws,
                Err(_) if Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(e) => panic!("no socket within {PATIENCE:?}: {e}"),
            }
        }
    }

    /// Opens a socket and watches `path`; returns it with the first `lock` message.
    async fn watch(&self, who: &Browser, path: &str) -> (Ws, Value) {
        let mut ws = self.connect(who).await;
        send(&mut ws, json!({ "type": "watch", "path": path })).await;
        let lock = next_of(&mut ws, "lock").await;
        (ws, lock)
    }

    /// The handshake's HTTP status when the proxy refuses it.
    async fn refused(&self, cookie: Option<&str>, origin: Option<&str>) -> u16 {
        match self.try_connect(cookie, origin).await {
            Ok(_) => panic!("the handshake was accepted"),
            Err(tungstenite::Error::Http(resp)) => resp.status().as_u16(),
            Err(e) => panic!("unexpected handshake failure: {e}"),
        }
    }
}

async fn send(ws: &mut Ws, value: Value) {
    ws.send(Message::Text(value.to_string().into()))
        .await
        .expect("send to the banner socket");
}

/// What the server sent next, skipping control frames.
enum Next {
    Json(Value),
    Closed(Option<u16>),
    Silent,
}

/// Messages this file's tests pass over: they report presence, the wait queue and kept
/// changes, which `browser_tabs.rs`, `browser_queue.rs`, `redis_queue.rs` and the stash tests
/// assert.
const INCIDENTAL: [&str; 4] = ["presence", "queue", "offer", "stash"];

async fn next_within(ws: &mut Ws, wait: Duration) -> Next {
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        let msg = match tokio::time::timeout_at(deadline, ws.next()).await {
            Err(_) => return Next::Silent,
            Ok(None) => return Next::Closed(None),
            Ok(Some(Err(_))) => return Next::Closed(None),
            Ok(Some(Ok(msg))) => msg,
        };
        match msg {
            Message::Text(text) => {
                let msg: Value = serde_json::from_str(&text).expect("a JSON message");
                // Who else watches, the wait line and kept changes are news of their own,
                // tested where they are the subject; here they would only interleave.
                if !INCIDENTAL.contains(&msg["type"].as_str().unwrap_or_default()) {
                    return Next::Json(msg);
                }
            }
            Message::Close(frame) => return Next::Closed(frame.map(|f| u16::from(f.code))),
            Message::Binary(_) => panic!("the server sent a binary frame"),
            _ => {}
        }
    }
}

async fn next_json(ws: &mut Ws) -> Value {
    match next_within(ws, PATIENCE).await {
        Next::Json(v) => v,
        Next::Closed(code) => panic!("the socket closed ({code:?}) instead of sending"),
        Next::Silent => panic!("no message within {PATIENCE:?}"),
    }
}

/// The next message of `kind`, failing on any other message in between.
async fn next_of(ws: &mut Ws, kind: &str) -> Value {
    let msg = next_json(ws).await;
    assert_eq!(msg["type"], kind, "unexpected message: {msg}");
    msg
}

/// Reads until the server closes; returns the close code and every message before it.
async fn until_closed(ws: &mut Ws) -> (Option<u16>, Vec<Value>) {
    let mut seen = Vec::new();
    loop {
        match next_within(ws, PATIENCE).await {
            Next::Json(v) => seen.push(v),
            Next::Closed(code) => return (code, seen),
            Next::Silent => panic!("the socket stayed open; messages: {seen:?}"),
        }
    }
}

fn is_rfc3339(v: &Value) -> bool {
    v.as_str().is_some_and(|s| {
        s.len() >= 20 && s.as_bytes()[4] == b'-' && s.as_bytes()[10] == b'T' && s.ends_with('Z')
    })
}

/// The `lock` message minus its timestamps, which are checked separately.
fn without_times(lock: &Value) -> Value {
    let mut lock = lock.clone();
    if let Some(obj) = lock.as_object_mut() {
        assert!(is_rfc3339(&obj["since"]), "since: {}", obj["since"]);
        assert!(is_rfc3339(&obj["expires"]), "expires: {}", obj["expires"]);
        obj.remove("since");
        obj.remove("expires");
    }
    lock
}

fn held(
    resource: &str,
    holder: (&str, &str),
    fence: u64,
    you: bool,
    can_takeover: bool,
    same_user: bool,
) -> Value {
    json!({
        "type": "lock", "resource": resource, "state": "held",
        "holder": { "id": holder.0, "name": holder.1 },
        "you": you, "fence": fence, "can_takeover": can_takeover, "same_user": same_user,
    })
}

fn alice() -> Browser {
    Browser::new("alice", "Alice", &[])
}

fn bob() -> Browser {
    Browser::new("bob", "Bob", &[])
}

fn admin() -> Browser {
    Browser::new("root", "Admin", &["admin"])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_tells_each_viewer_the_lock_as_they_see_it() {
    let s = setup().await;
    let (status, fence) = s.open_page(&alice(), "/echo/doc/1").await;
    assert_eq!(status, StatusCode::OK);
    let fence = fence.expect("the upstream got a fence");

    let (_a, lock) = s.watch(&alice(), "/echo/doc/1").await;
    assert_eq!(
        without_times(&lock),
        held("doc:1", ("alice", "Alice"), fence, true, false, false)
    );
    let (_b, lock) = s.watch(&bob(), "/echo/doc/1").await;
    assert_eq!(
        without_times(&lock),
        held("doc:1", ("alice", "Alice"), fence, false, false, false)
    );
    let (_r, lock) = s.watch(&admin(), "/echo/doc/1").await;
    assert_eq!(
        without_times(&lock),
        held("doc:1", ("alice", "Alice"), fence, false, true, false)
    );

    // A path is normalized before matching, as for requests.
    let (_f, lock) = s.watch(&bob(), "/echo//doc/./2").await;
    assert_eq!(
        lock,
        json!({
            "type": "lock", "resource": "doc:2", "state": "free", "holder": null, "you": false,
            "since": null, "expires": null, "fence": null, "can_takeover": false, "same_user": false,
        })
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heartbeats_keep_a_lease_alive_past_its_expiry() {
    // 5 s is the shortest lease the config accepts.
    let s = setup_locks("store = \"memory\"\nlease_seconds = 5\ngrace_seconds = 2").await;
    let (_, fence) = s.open_page(&alice(), "/echo/doc/1").await;
    let fence = fence.expect("claimed");
    // The control: a lock nobody renews lapses after its lease.
    let (status, _) = s.open_page(&alice(), "/echo/doc/2").await;
    assert_eq!(status, StatusCode::OK);

    let (mut ws, lock) = s.watch(&alice(), "/echo/doc/1").await;
    assert_eq!(lock["you"], true);
    let (mut watcher, lock) = s.watch(&bob(), "/echo/doc/2").await;
    assert_eq!(lock["state"], "held");

    let until = Instant::now() + Duration::from_secs(7);
    let mut lapsed = None;
    while Instant::now() < until {
        send(&mut ws, json!({ "type": "heartbeat" })).await;
        if let Next::Json(msg) = next_within(&mut watcher, Duration::from_millis(500)).await {
            if msg["state"] == "free" {
                lapsed.get_or_insert(Instant::now());
            }
        }
        // Nothing the holder's socket says may be a loss of the lock.
        if let Next::Json(msg) = next_within(&mut ws, Duration::from_millis(10)).await {
            panic!("the holder was told: {msg}");
        }
    }
    assert!(
        lapsed.is_some(),
        "the unrenewed lease on doc:2 never lapsed"
    );

    let status: Value = client()
        .get(s.latch.url("/__latch/status?path=/echo/doc/1"))
        .header(COOKIE, &bob().cookie)
        .send()
        .await
        .expect("status")
        .json()
        .await
        .expect("status JSON");
    assert_eq!(status["state"], "held", "{status}");
    assert_eq!(status["holder"]["id"], "alice");
    assert_eq!(status["fence"], fence);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn release_reaches_another_users_watcher_within_a_second() {
    let s = setup().await;
    s.open_page(&alice(), "/echo/doc/1").await;
    let (mut a, lock) = s.watch(&alice(), "/echo/doc/1").await;
    assert_eq!(lock["you"], true);
    let (mut b, lock) = s.watch(&bob(), "/echo/doc/1").await;
    assert_eq!(lock["state"], "held");

    let sent = Instant::now();
    send(&mut a, json!({ "type": "release", "resource": "doc:1" })).await;
    let lock = next_of(&mut b, "lock").await;
    let took = sent.elapsed();
    assert_eq!(lock["state"], "free");
    assert!(
        took < Duration::from_secs(1),
        "the release took {took:?} to arrive"
    );
    assert_eq!(next_of(&mut a, "lock").await["state"], "free");

    // It is really free: Bob's page now claims it.
    let (status, fence) = s.open_page(&bob(), "/echo/doc/1").await;
    assert_eq!(status, StatusCode::OK);
    assert!(fence.is_some());
    let lock = next_of(&mut b, "lock").await;
    assert_eq!(
        (lock["holder"]["id"].clone(), lock["you"].clone()),
        (json!("bob"), json!(true))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_takeover_tells_the_holder_and_blocks_their_writes() {
    let s = setup().await;
    let (_, fence) = s.open_page(&alice(), "/echo/doc/1").await;
    let fence = fence.expect("claimed");
    assert_eq!(s.save(&alice(), "/echo/doc/1").await, StatusCode::OK);
    let (mut a, _) = s.watch(&alice(), "/echo/doc/1").await;

    // Without a takeover role the request is refused and nothing changes.
    let (mut b, lock) = s.watch(&bob(), "/echo/doc/1").await;
    assert_eq!(lock["can_takeover"], false);
    send(&mut b, json!({ "type": "takeover", "resource": "doc:1" })).await;
    assert_eq!(next_of(&mut b, "error").await["code"], "forbidden");

    let (mut r, lock) = s.watch(&admin(), "/echo/doc/1").await;
    assert_eq!(lock["can_takeover"], true);
    send(&mut r, json!({ "type": "takeover", "resource": "doc:1" })).await;

    assert_eq!(
        next_of(&mut a, "taken_over").await,
        json!({ "type": "taken_over", "resource": "doc:1", "by": { "id": "root", "name": "Admin" } })
    );
    let now = next_of(&mut a, "lock").await;
    assert_eq!(
        (now["holder"]["id"].clone(), now["you"].clone()),
        (json!("root"), json!(false))
    );
    let mine = next_of(&mut r, "lock").await;
    assert_eq!(mine["you"], true);
    assert!(mine["fence"].as_u64().expect("fence") > fence);

    assert_eq!(s.save(&alice(), "/echo/doc/1").await, StatusCode::LOCKED);
    assert_eq!(s.save(&admin(), "/echo/doc/1").await, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_access_reaches_the_holder() {
    let s = setup().await;
    s.open_page(&alice(), "/echo/doc/1").await;
    let (mut a, _) = s.watch(&alice(), "/echo/doc/1").await;
    let (mut b, _) = s.watch(&bob(), "/echo/doc/1").await;
    send(
        &mut b,
        json!({ "type": "request_access", "resource": "doc:1" }),
    )
    .await;
    assert_eq!(
        next_of(&mut a, "access_requested").await,
        json!({ "type": "access_requested", "resource": "doc:1", "by": { "id": "bob", "name": "Bob" } })
    );
    // The asker is not told they asked.
    assert!(matches!(
        next_within(&mut b, Duration::from_millis(300)).await,
        Next::Silent
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_messages_get_errors_and_the_socket_stays_open() {
    let s = setup().await;
    let mut ws = s.connect(&alice()).await;
    let cases = [
        ("{not json", "bad_message"),
        (r#"{"type":"dance"}"#, "bad_message"),
        (r#"{"type":"watch"}"#, "bad_message"),
        (r#"{"type":"release","resource":"doc:1"}"#, "not_watching"),
        (r#"{"type":"takeover","resource":"doc:1"}"#, "not_watching"),
        (
            r#"{"type":"request_access","resource":"doc:1"}"#,
            "not_watching",
        ),
        (
            r#"{"type":"watch","path":"/not/protected"}"#,
            "not_protected",
        ),
    ];
    for (text, code) in cases {
        ws.send(Message::Text(text.into())).await.expect("send");
        let msg = next_of(&mut ws, "error").await;
        assert_eq!(msg["code"], code, "for {text}: {msg}");
        assert!(msg["message"].as_str().is_some_and(|m| !m.is_empty()));
    }
    send(&mut ws, json!({ "type": "watch", "path": "/echo/doc/1" })).await;
    assert_eq!(next_of(&mut ws, "lock").await["resource"], "doc:1");
}

/// `latch_banner_sockets_opened_total{via}` from the admin port.
async fn opened_via(s: &Setup, via: &str) -> u64 {
    s.latch
        .counter(&format!(
            "latch_banner_sockets_opened_total{{via=\"{via}\"}}"
        ))
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_socket_on_its_own_connection_is_served_at_the_front() {
    let s = setup().await;
    let (_ws, lock) = s.watch(&alice(), "/echo/doc/1").await;
    assert_eq!(lock["state"], "free");
    assert_eq!(opened_via(&s, "connection").await, 1);
    assert_eq!(opened_via(&s, "session").await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handshake_on_a_kept_alive_connection_still_opens_a_socket() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let s = setup().await;
    let who = alice();
    // One ordinary request first, answered in full, so the connection is kept alive.
    let mut tcp = TcpStream::connect(("127.0.0.1", s.latch.port))
        .await
        .expect("connect");
    tcp.write_all(b"GET /__latch/banner.js HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        .await
        .expect("request");
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut byte = [0u8; 1];
        tcp.read_exact(&mut byte).await.expect("response head");
        head.push(byte[0]);
    }
    let head = String::from_utf8(head).expect("ASCII head");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let length: usize = head
        .lines()
        .find_map(|l| {
            let (name, value) = l.split_once(':')?;
            name.eq_ignore_ascii_case("content-length")
                .then(|| value.trim().parse().expect("a length"))
        })
        .expect("banner.js has a length");
    let mut body = vec![0u8; length];
    tcp.read_exact(&mut body).await.expect("response body");

    let mut req = s
        .latch
        .ws_url("/__latch/ws")
        .into_client_request()
        .expect("a WebSocket request");
    let headers = req.headers_mut();
    headers.insert(ORIGIN, HeaderValue::from_str(&s.origin()).expect("origin"));
    headers.insert(COOKIE, HeaderValue::from_str(&who.cookie).expect("cookie"));
    let (mut ws, _) = tokio::time::timeout(
        PATIENCE,
        tokio_tungstenite::client_async(req, MaybeTlsStream::Plain(tcp)),
    )
    .await
    .expect("the handshake timed out")
    .expect("the banner socket opens");
    send(&mut ws, json!({ "type": "watch", "path": "/echo/doc/1" })).await;
    assert_eq!(next_of(&mut ws, "lock").await["state"], "free");
    assert_eq!(opened_via(&s, "session").await, 1);
    assert_eq!(opened_via(&s, "connection").await, 0);
}

/// A banner socket runs in a task of its own once admitted; its connection keeps its place
/// under `proxy.max_connections_per_client` until it closes, and gives it back then.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_banner_socket_keeps_its_place_under_the_per_client_limit_until_it_closes() {
    let s = setup_with(
        "store = \"memory\"",
        &[("LATCH_PROXY_MAX_CONNECTIONS_PER_CLIENT", "2")],
    )
    .await;
    let who = alice();
    let mut first = s.connect_retrying(&who).await;
    let mut second = s.connect_retrying(&who).await;

    // A third connection from the same client is closed before its handshake is answered.
    match s.try_connect(Some(&who.cookie), Some(&s.origin())).await {
        Ok(_) => panic!("a third connection was admitted past the limit of 2"),
        Err(tungstenite::Error::Http(resp)) => {
            panic!(
                "refused with an HTTP answer ({}), not closed",
                resp.status()
            )
        }
        Err(_) => {}
    }
    // Both sockets still serve.
    for ws in [&mut first, &mut second] {
        send(ws, json!({ "type": "watch", "path": "/echo/doc/1" })).await;
        assert_eq!(next_of(ws, "lock").await["resource"], "doc:1");
    }

    // Once one closes, the client is admitted again.
    first.close(None).await.expect("close");
    drop(first);
    let mut third = s.connect_retrying(&who).await;
    send(
        &mut third,
        json!({ "type": "watch", "path": "/echo/doc/1" }),
    )
    .await;
    assert_eq!(next_of(&mut third, "lock").await["resource"], "doc:1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn foreign_origin_gets_403() {
    let s = setup().await;
    let cookie = alice().cookie;
    assert_eq!(
        s.refused(Some(&cookie), Some("http://evil.example")).await,
        403
    );
    let other_port = format!("http://127.0.0.1:{}", s.latch.port + 1);
    assert_eq!(s.refused(Some(&cookie), Some(&other_port)).await, 403);
    assert_eq!(s.refused(Some(&cookie), Some("null")).await, 403);
    // The control: the proxy's own origin is accepted.
    assert!(s
        .try_connect(Some(&cookie), Some(&s.origin()))
        .await
        .is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_or_bad_token_gets_401() {
    let s = setup().await;
    let origin = s.origin();
    assert_eq!(s.refused(None, Some(&origin)).await, 401);
    assert_eq!(
        s.refused(Some("latch_token=not-a-jwt"), Some(&origin))
            .await,
        401
    );
    let forged = auth::mint_hs256(
        b"some-other-secret-that-is-long-enough!!",
        &auth::MintRequest {
            sub: "alice".into(),
            name: Some("Alice".into()),
            roles: vec!["admin".into()],
            ttl_seconds: 3600,
            issuer: None,
            audience: None,
        },
    )
    .expect("mint");
    let forged = Browser::with_token(&forged).cookie;
    assert_eq!(s.refused(Some(&forged), Some(&origin)).await, 401);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_expiry_sends_session_expired_then_closes_4401() {
    let s = setup().await;
    let short = Browser::with_token(&token_ttl("alice", "Alice", &[], 2));
    let opened = Instant::now();
    let (mut ws, lock) = s.watch(&short, "/echo/doc/1").await;
    assert_eq!(lock["state"], "free");
    assert_eq!(
        next_json(&mut ws).await,
        json!({ "type": "session_expired" })
    );
    let at = opened.elapsed();
    assert!(
        at > Duration::from_millis(500) && at < Duration::from_secs(4),
        "session_expired after {at:?} for a 2 s token"
    );
    let (code, rest) = until_closed(&mut ws).await;
    assert_eq!(code, Some(4401), "then: {rest:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_message_closes_1009() {
    let s = setup().await;
    let mut ws = s.connect(&alice()).await;
    let big = format!(
        "{{\"type\":\"watch\",\"path\":\"/{}\"}}",
        "a".repeat(9 * 1024)
    );
    ws.send(Message::Text(big.into())).await.expect("send");
    let (code, _) = until_closed(&mut ws).await;
    assert_eq!(code, Some(u16::from(CloseCode::Size)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn message_just_under_the_limit_is_read() {
    let s = setup().await;
    let mut ws = s.connect(&alice()).await;
    let path = format!("/{}", "a".repeat(7 * 1024));
    send(&mut ws, json!({ "type": "watch", "path": path })).await;
    assert_eq!(next_of(&mut ws, "error").await["code"], "not_protected");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flooding_is_rate_limited_then_closed() {
    let s = setup().await;
    let mut ws = s.connect(&alice()).await;
    for _ in 0..100 {
        send(&mut ws, json!({ "type": "heartbeat" })).await;
    }
    let (code, seen) = until_closed(&mut ws).await;
    let first = seen.first().expect("an error before the close");
    assert_eq!(first["type"], "error");
    assert_eq!(first["code"], "rate_limited");
    assert!(seen.iter().all(|m| m["code"] == "rate_limited"), "{seen:?}");
    assert_eq!(code, Some(u16::from(CloseCode::Policy)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flooding_with_binary_frames_is_rate_limited_too() {
    let s = setup().await;
    let mut ws = s.connect(&alice()).await;
    for _ in 0..100 {
        ws.send(Message::Binary(vec![0u8; 16].into()))
            .await
            .expect("send");
    }
    let (code, seen) = until_closed(&mut ws).await;
    assert!(
        seen.iter().any(|m| m["code"] == "rate_limited"),
        "no rate limit among {} replies",
        seen.len()
    );
    assert_eq!(code, Some(u16::from(CloseCode::Policy)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_gets_at_most_32_sockets() {
    let s = setup().await;
    let mut open = Vec::new();
    for _ in 0..32 {
        open.push(s.connect(&alice()).await);
    }
    let cookie = alice().cookie;
    let origin = s.origin();
    assert_eq!(s.refused(Some(&cookie), Some(&origin)).await, 429);
    // Other users are not affected.
    let (_b, lock) = s.watch(&bob(), "/echo/doc/1").await;
    assert_eq!(lock["type"], "lock");

    // A closed socket frees its slot.
    let mut one = open.pop().expect("a socket");
    one.close(None).await.expect("close");
    drop(one);
    let deadline = Instant::now() + PATIENCE;
    loop {
        match s.try_connect(Some(&cookie), Some(&origin)).await {
            Ok(_) => break,
            Err(tungstenite::Error::Http(resp)) if resp.status().as_u16() == 429 => {
                assert!(
                    Instant::now() < deadline,
                    "the closed socket's slot was never freed"
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => panic!("unexpected handshake failure: {e}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closing_the_holders_socket_frees_the_lock_after_grace() {
    let s = setup_locks("store = \"memory\"\nlease_seconds = 30\ngrace_seconds = 2").await;
    s.open_page(&alice(), "/echo/doc/1").await;
    let (mut a, lock) = s.watch(&alice(), "/echo/doc/1").await;
    assert_eq!(lock["you"], true);
    let (mut b, _) = s.watch(&bob(), "/echo/doc/1").await;

    a.close(None).await.expect("close");
    let closed = Instant::now();
    let lock = match next_within(&mut b, Duration::from_secs(5)).await {
        Next::Json(m) => m,
        _ => panic!("the watcher never heard of the release"),
    };
    let after = closed.elapsed();
    assert_eq!(lock["state"], "free", "{lock}");
    assert!(
        after < Duration::from_secs(3),
        "free after {after:?}, grace is 2 s"
    );
    assert!(
        after > Duration::from_millis(1500),
        "free after {after:?}, before the grace ended"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_tab_of_the_same_user_does_not_keep_a_session_lock_alive() {
    let s = setup_locks("store = \"memory\"\nlease_seconds = 30\ngrace_seconds = 2").await;
    let tab_a = alice().tab("aaaa1111");
    let tab_b = alice().tab("bbbb2222");
    s.open_page(&tab_a, "/echo/tab/1").await;
    let (mut a, lock) = s.watch(&tab_a, "/echo/tab/1").await;
    assert_eq!(lock["you"], true);
    let (mut b, lock) = s.watch(&tab_b, "/echo/tab/1").await;
    assert_eq!(lock["same_user"], true);

    a.close(None).await.expect("close");
    let closed = Instant::now();
    let lock = match next_within(&mut b, Duration::from_secs(5)).await {
        Next::Json(m) => m,
        _ => panic!("the other tab never heard of the release"),
    };
    assert_eq!(lock["state"], "free", "{lock}");
    let after = closed.elapsed();
    assert!(
        after < Duration::from_secs(3),
        "free after {after:?}, grace is 2 s"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_within_grace_keeps_the_lock_and_its_fence() {
    let s = setup_locks("store = \"memory\"\nlease_seconds = 30\ngrace_seconds = 2").await;
    let (_, fence) = s.open_page(&alice(), "/echo/doc/1").await;
    let fence = fence.expect("claimed");
    let (mut a, _) = s.watch(&alice(), "/echo/doc/1").await;
    let (mut b, _) = s.watch(&bob(), "/echo/doc/1").await;

    // What a browser does on reload: the pagehide beacon, the old socket closes, the page is
    // fetched again and its banner reconnects.
    let beacon = client()
        .post(s.latch.url("/__latch/release"))
        .header(COOKIE, &alice().cookie)
        .header(ORIGIN, s.origin())
        .header(reqwest::header::CONTENT_TYPE, "text/plain;charset=UTF-8")
        .body(json!({ "resource": "doc:1", "pagehide": true }).to_string())
        .send()
        .await
        .expect("beacon");
    assert_eq!(beacon.status(), StatusCode::NO_CONTENT);
    a.close(None).await.expect("close");
    drop(a);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (status, again) = s.open_page(&alice(), "/echo/doc/1").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(again, Some(fence), "the reload got a new fence");
    let (_a, lock) = s.watch(&alice(), "/echo/doc/1").await;
    assert_eq!(
        without_times(&lock),
        held("doc:1", ("alice", "Alice"), fence, true, false, false)
    );

    // Past the grace and the pagehide window, the watcher has seen no change at all.
    if let Next::Json(msg) = next_within(&mut b, Duration::from_secs(4)).await {
        panic!("the watcher saw a change during a reload: {msg}");
    }
    let (status, _) = s.open_page(&bob(), "/echo/doc/1").await;
    assert_eq!(status, StatusCode::LOCKED);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_owned_lock_can_be_moved_by_the_same_users_other_tab() {
    let s = setup().await;
    let tab_a = alice().tab("aaaa1111");
    let tab_b = alice().tab("bbbb2222");
    let (status, fence) = s.open_page(&tab_a, "/echo/tab/1").await;
    assert_eq!(status, StatusCode::OK);
    let fence = fence.expect("claimed");
    // The same user's other tab is refused the page...
    assert_eq!(
        s.open_page(&tab_b, "/echo/tab/1").await.0,
        StatusCode::LOCKED
    );

    let (mut a, lock) = s.watch(&tab_a, "/echo/tab/1").await;
    assert_eq!(
        without_times(&lock),
        held("tab:1", ("alice", "Alice"), fence, true, false, false)
    );
    // ...but is told it is theirs elsewhere, and may move it here.
    let (mut b, lock) = s.watch(&tab_b, "/echo/tab/1").await;
    assert_eq!(
        without_times(&lock),
        held("tab:1", ("alice", "Alice"), fence, false, true, true)
    );
    // Another user is neither the same user nor allowed to move it.
    let (_c, lock) = s.watch(&bob(), "/echo/tab/1").await;
    assert_eq!(
        without_times(&lock),
        held("tab:1", ("alice", "Alice"), fence, false, false, false)
    );

    send(&mut b, json!({ "type": "takeover", "resource": "tab:1" })).await;
    assert_eq!(
        next_of(&mut a, "taken_over").await["by"],
        json!({ "id": "alice", "name": "Alice" })
    );
    let moved = next_of(&mut b, "lock").await;
    assert_eq!(moved["you"], true);
    let new_fence = moved["fence"].as_u64().expect("fence");
    assert!(new_fence > fence);

    assert_eq!(s.save(&tab_a, "/echo/tab/1").await, StatusCode::LOCKED);
    assert_eq!(s.save(&tab_b, "/echo/tab/1").await, StatusCode::OK);
}
