//! The app's own WebSockets are fenced: a real Express app with a save-over-WebSocket endpoint
//! (the `ws` package, `tests/apps/express/`) behind the real proxy, driven by a real WebSocket
//! client and, once, by Chromium.
//!
//! A handshake on a protected path needs the lock like a write (unless the rule says
//! `websocket = "pass"`), and the socket is closed with code 4423 and a reason when its owner
//! loses the lock — by a take-over, an admin's force release or expiry, on this instance or on
//! another one on the same Redis — on the client's side and on the app's.

use std::time::Duration;

use fantoccini::Locator;
use futures::{SinkExt, StreamExt};
use reqwest::header::{AUTHORIZATION, COOKIE};
use reqwest::StatusCode;
use serde_json::Value;
use tests::browser::Driver;
use tests::express::App;
use tests::instances::{start_instances, take_over, Ws};
use tests::node::{admin_bearer, Mode, Node, NodeConfig};
use tests::redis::RedisServer;
use tests::{client, eventually, token, Latch, LatchBuilder};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};

/// The live page, its socket and its save share one lock per document.
fn rules(extra: &str) -> String {
    format!(
        r#"
[[rule]]
id = "docs"
pattern = '/docs/(?P<id>\d+)/(live|socket|save)'
resource = "doc:{{id}}"
case_insensitive = true
inject = false
{extra}
"#
    )
}

use tests::express::PATIENCE;

/// Opens the app's socket for document `id` at `base` (`ws://host:port`) as `user`.
async fn open(base: &str, id: u32, user: &str) -> Result<Ws, WsError> {
    let cookie = format!("latch_token={}", token(user, &title(user), &[]));
    tests::express::open_socket(base, id, &cookie).await
}

fn title(user: &str) -> String {
    let mut chars = user.chars();
    chars
        .next()
        .map(|c| c.to_uppercase().chain(chars).collect())
        .unwrap_or_default()
}

/// The status a refused handshake got.
fn refused_with(result: Result<Ws, WsError>) -> u16 {
    match result {
        Ok(_) => panic!("the handshake was accepted"),
        Err(WsError::Http(response)) => response.status().as_u16(),
        Err(e) => panic!("the handshake failed without an HTTP answer: {e}"),
    }
}

/// Saves `text` over the socket; returns the app's answer.
async fn save(ws: &mut Ws, text: &str) -> Value {
    ws.send(Message::Text(text.to_owned().into()))
        .await
        .expect("send");
    loop {
        match tokio::time::timeout(PATIENCE, ws.next()).await {
            Ok(Some(Ok(Message::Text(answer)))) => {
                return serde_json::from_str(&answer).expect("JSON")
            }
            Ok(Some(Ok(Message::Ping(_) | Message::Pong(_)))) => {}
            other => panic!("no answer to a save: {other:?}"),
        }
    }
}

/// Waits for the close frame; returns its code and reason.
async fn close_frame(ws: &mut Ws, within: Duration) -> (u16, String) {
    loop {
        match tokio::time::timeout(within, ws.next()).await {
            Ok(Some(Ok(Message::Close(Some(frame))))) => {
                return (u16::from(frame.code), frame.reason.to_string())
            }
            Ok(Some(Ok(Message::Ping(_) | Message::Pong(_)))) => {}
            other => panic!("no close frame: {other:?}"),
        }
    }
}

fn http_base(latch: &Latch) -> String {
    format!("http://127.0.0.1:{}", latch.port)
}

fn ws_base(latch: &Latch) -> String {
    format!("ws://127.0.0.1:{}", latch.port)
}

async fn start_latch(app: &App, rules: String, locks: Option<&str>) -> Latch {
    let port = app.port;
    let locks = locks.map(str::to_owned);
    tokio::task::spawn_blocking(move || {
        let builder = LatchBuilder::new(port).rules(&rules);
        match locks {
            Some(locks) => builder.locks(&locks),
            None => builder,
        }
        .start()
    })
    .await
    .expect("starting latch")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_take_over_closes_the_holders_app_socket_with_4423_and_its_reconnect_gets_423() {
    let app = App::start();
    let latch = start_latch(&app, rules(""), None).await;
    let ws = ws_base(&latch);

    // Alice's handshake claims the lock; her saves reach the app under it.
    let mut alice = open(&ws, 1, "alice").await.expect("Alice's socket opens");
    let saved = save(&mut alice, "draft 1").await;
    assert_eq!(saved["saved"], "draft 1");
    assert_eq!(saved["user"], "alice");
    let fence = saved["fence"].as_str().expect("the app got the fence");
    assert!(fence.parse::<u64>().is_ok(), "{saved}");

    // Bob, without the lock, cannot open one.
    assert_eq!(refused_with(open(&ws, 1, "bob").await), 423);

    take_over(&http_base(&latch), "doc:1").await;
    let (code, reason) = close_frame(&mut alice, PATIENCE).await;
    assert_eq!(code, 4423);
    assert_eq!(reason, "lock taken over by Root");
    // The app's side was closed too, with the same code and reason.
    let closed = app.closed("alice", 4423).await;
    assert_eq!(closed["reason"], "lock taken over by Root");

    // Alice's app reconnects and is refused; nothing she sent after the take-over was saved.
    assert_eq!(refused_with(open(&ws, 1, "alice").await), 423);
    let saves = app.sockets().await["saves"].clone();
    assert_eq!(saves.as_array().map(Vec::len), Some(1), "{saves}");

    // Another document is untouched.
    let mut other = open(&ws, 2, "alice").await.expect("a socket on doc 2");
    assert_eq!(save(&mut other, "elsewhere").await["user"], "alice");
    assert!(latch.counter("latch_app_sockets_fenced_total").await >= 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_websocket_pass_a_socket_opens_without_the_lock_and_is_not_fenced() {
    let app = App::start();
    let latch = start_latch(
        &app,
        rules("mode = \"read_only\"\nwebsocket = \"pass\""),
        None,
    )
    .await;
    let ws = ws_base(&latch);
    let holder = client()
        .get(latch.url("/docs/1/live"))
        .header(
            AUTHORIZATION,
            format!("Bearer {}", token("alice", "Alice", &[])),
        )
        .send()
        .await
        .expect("Alice's page");
    assert_eq!(holder.status(), StatusCode::OK);

    // Bob reads while Alice holds: under `pass` his socket is an ordinary read.
    let mut bob = open(&ws, 1, "bob").await.expect("Bob's socket opens");
    let saved = save(&mut bob, "just looking").await;
    assert_eq!(saved["user"], "bob");
    assert_eq!(saved["fence"], Value::Null);

    // Alice's own socket is not fenced either: a take-over leaves it open.
    let mut alice = open(&ws, 1, "alice").await.expect("Alice's socket opens");
    take_over(&http_base(&latch), "doc:1").await;
    assert_eq!(save(&mut alice, "still here").await["saved"], "still here");

    // The same read-only rule with the default `websocket = "lock"` refuses Bob's handshake.
    latch.write_rules(&rules("mode = \"read_only\""));
    let refused = eventually(PATIENCE, || async {
        match open(&ws, 1, "bob").await {
            Err(WsError::Http(r)) => Some(r.status().as_u16()),
            _ => None,
        }
    })
    .await;
    assert_eq!(refused, Some(423));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admin_force_release_closes_the_holders_app_socket() {
    let app = App::start();
    let dir = tempfile::tempdir().expect("a temp dir");
    std::fs::write(dir.path().join("rules.toml"), rules("")).expect("rules");
    let node = Node::start(
        Mode::Run,
        NodeConfig {
            dir: dir.path(),
            upstream_port: app.port,
            rules_store: "rules.toml",
            poll_seconds: 1,
        },
    );
    let ws = format!("ws://127.0.0.1:{}", node.proxy_port);
    let mut alice = open(&ws, 1, "alice").await.expect("Alice's socket opens");
    assert_eq!(save(&mut alice, "draft").await["user"], "alice");

    let released = client()
        .delete(node.api("/api/v1/locks/doc:1"))
        .header(AUTHORIZATION, admin_bearer())
        .send()
        .await
        .expect("force release");
    assert_eq!(released.status(), StatusCode::OK, "{}", node.log());
    let (code, reason) = close_frame(&mut alice, PATIENCE).await;
    assert_eq!(code, 4423);
    assert_eq!(reason, "lock released by an admin (root)");
    app.closed("alice", 4423).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_lease_closes_the_holders_app_socket() {
    let app = App::start();
    // The shortest lease the config allows, and no banner to renew it.
    let latch = start_latch(
        &app,
        rules(""),
        Some("store = \"memory\"\nlease_seconds = 5\ngrace_seconds = 2\n"),
    )
    .await;
    let mut alice = open(&ws_base(&latch), 1, "alice")
        .await
        .expect("Alice's socket opens");
    assert_eq!(save(&mut alice, "draft").await["user"], "alice");
    let (code, reason) = close_frame(&mut alice, Duration::from_secs(15)).await;
    assert_eq!(code, 4423);
    assert_eq!(reason, "lock expired");
    app.closed("alice", 4423).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_take_over_on_one_instance_closes_the_app_socket_on_another() {
    let app = App::start();
    let redis = RedisServer::start();
    let instances = start_instances(2, app.port, &redis.url(), &rules("")).await;
    let (a, b) = (&instances[0], &instances[1]);

    let mut alice = open(&ws_base(a), 1, "alice")
        .await
        .expect("Alice's socket opens on A");
    assert_eq!(save(&mut alice, "draft").await["user"], "alice");
    // Bob is refused on B as on A: one lock for both.
    assert_eq!(refused_with(open(&ws_base(b), 1, "bob").await), 423);

    take_over(&http_base(b), "doc:1").await;
    let (code, reason) = close_frame(&mut alice, PATIENCE).await;
    assert_eq!((code, reason.as_str()), (4423, "lock taken over by Root"));
    app.closed("alice", 4423).await;
    assert_eq!(refused_with(open(&ws_base(a), 1, "alice").await), 423);
    // A close the client starts is passed on to the app as it is.
    let mut root = open(&ws_base(a), 1, "root").await.expect("Root's socket");
    assert_eq!(save(&mut root, "mine").await["user"], "root");
    root.close(Some(tokio_tungstenite::tungstenite::protocol::CloseFrame {
        code: CloseCode::Normal,
        reason: "bye".into(),
    }))
    .await
    .expect("close");
    assert_eq!(app.closed("root", 1000).await["reason"], "bye");
}

/// Chromium: the page's own script saves over its socket, gets 4423 when an admin takes the
/// document over, reconnects as an app would, and shows that the reconnect was refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_a_browser_the_pages_reconnect_after_4423_is_refused() {
    let app = App::start();
    let latch = start_latch(&app, rules(""), None).await;
    let driver = Driver::start().await;
    let signed_in = driver
        .browser("alice", &latch, &token("alice", "Alice", &[]))
        .await;
    let browser = signed_in.session().clone();
    let outcome = async {
        browser.goto(&latch.url("/docs/1/live")).await?;
        let text = |id: &'static str| {
            let browser = browser.clone();
            async move { browser.find(Locator::Id(id)).await.ok()?.text().await.ok() }
        };
        let saved = eventually(PATIENCE, || async {
            text("log").await.filter(|t| t.contains("saved: draft 1"))
        })
        .await;
        assert!(
            saved.is_some(),
            "the page never saved: {:?}",
            text("log").await
        );

        take_over(&http_base(&latch), "doc:1").await;
        let refused = eventually(PATIENCE, || async {
            text("status").await.filter(|t| t.starts_with("refused"))
        })
        .await;
        let log = text("log").await.unwrap_or_default();
        assert_eq!(refused.as_deref(), Some("refused 423"), "log: {log}");
        assert!(
            log.contains("closed 4423: lock taken over by Root"),
            "{log}"
        );
        assert!(
            log.contains("reconnect refused; saving answers 423"),
            "{log}"
        );
        Ok::<(), fantoccini::error::CmdError>(())
    }
    .await;
    signed_in.quit().await;
    outcome.expect("the browser session");
    app.closed("alice", 4423).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_app_socket_closes_when_the_token_it_opened_with_expires() {
    let app = App::start();
    let latch = start_latch(&app, rules(""), None).await;
    let mut req = format!("{}/docs/1/socket", ws_base(&latch))
        .into_client_request()
        .expect("a WebSocket request");
    let short = tests::token_ttl("alice", "Alice", &[], 3);
    req.headers_mut().insert(
        COOKIE,
        HeaderValue::from_str(&format!("latch_token={short}")).expect("cookie"),
    );
    let (mut alice, _) = tokio_tungstenite::connect_async(req)
        .await
        .expect("Alice's socket opens");
    assert_eq!(save(&mut alice, "draft").await["user"], "alice");
    // The lease (30 s) outlives the token (3 s): only the token's expiry can close it.
    let opened = std::time::Instant::now();
    let (code, reason) = close_frame(&mut alice, Duration::from_secs(10)).await;
    assert_eq!((code, reason.as_str()), (4401, "session expired"));
    assert!(
        opened.elapsed() < Duration::from_secs(6),
        "{:?}",
        opened.elapsed()
    );
    app.closed("alice", 4401).await;
}
