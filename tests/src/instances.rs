//! Several `latch proxy` instances on one Redis, and the small HTTP and WebSocket clients the
//! Redis end-to-end tests check them with. The Redis servers come from [`crate::redis`].

use std::time::{Duration, Instant};

use futures::{SinkExt, StreamExt};
use reqwest::header::{AUTHORIZATION, COOKIE, ORIGIN};
use serde_json::{json, Value};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::{client, token, Latch, LatchBuilder};

pub type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// The `[locks]` section for a Redis store at `url` with the shortest lease the config allows.
pub fn redis_locks(url: &str) -> String {
    format!("store = \"{url}\"\nlease_seconds = 5\ngrace_seconds = 2\n")
}

/// Starts `n` proxies in front of `upstream_port`, all on the Redis at `url`, and waits until
/// each reports ready (Redis reachable, event subscription up).
pub async fn start_instances(n: usize, upstream_port: u16, url: &str, rules: &str) -> Vec<Latch> {
    let mut instances = Vec::with_capacity(n);
    for _ in 0..n {
        instances.push(start_instance(upstream_port, url, rules).await);
    }
    instances
}

pub async fn start_instance(upstream_port: u16, url: &str, rules: &str) -> Latch {
    let locks = redis_locks(url);
    let rules = rules.to_owned();
    let latch = tokio::task::spawn_blocking(move || {
        LatchBuilder::new(upstream_port)
            .rules(&rules)
            .locks(&locks)
            .start()
    })
    .await
    .expect("starting latch");
    wait_ready(&latch, Duration::from_secs(10)).await;
    latch
}

/// Polls `/readyz` until it answers 200; returns how long that took.
pub async fn wait_ready(latch: &Latch, within: Duration) -> Duration {
    let started = Instant::now();
    loop {
        if readyz(latch).await.0 == 200 {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < within,
            "latch not ready after {within:?}; log:\n{}",
            latch.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// `/readyz`: status and body.
pub async fn readyz(latch: &Latch) -> (u16, String) {
    match client().get(latch.admin_url("/readyz")).send().await {
        Ok(resp) => {
            let status = resp.status().as_u16();
            (status, resp.text().await.unwrap_or_default())
        }
        Err(_) => (0, String::new()),
    }
}

/// A bearer token for `user` (display name = upper-cased id).
pub fn bearer(user: &str, roles: &[&str]) -> String {
    format!("Bearer {}", token(user, &user.to_uppercase(), roles))
}

/// GET through the proxy as a non-browser client: status and JSON body (if any).
pub async fn get(latch: &Latch, path: &str, auth: &str) -> (u16, Value) {
    let resp = client()
        .get(latch.url(path))
        .header(AUTHORIZATION, auth)
        .send()
        .await
        .expect("GET through the proxy");
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

/// POST `{prefix}/release` for `resource`, same-origin; the status.
/// POST `{prefix}/takeover` of `resource` at `base` (`http://host:port`) as an admin named
/// Root, and checks it succeeded.
pub async fn take_over(base: &str, resource: &str) {
    let response = client()
        .post(format!("{base}/__latch/takeover"))
        .header(
            COOKIE,
            format!("latch_token={}", token("root", "Root", &["admin"])),
        )
        .header(ORIGIN, base)
        .body(json!({ "resource": resource }).to_string())
        .send()
        .await
        .expect("takeover");
    assert_eq!(response.status(), reqwest::StatusCode::OK);
}

pub async fn release(latch: &Latch, resource: &str, auth: &str) -> u16 {
    client()
        .post(latch.url("/__latch/release"))
        .header(AUTHORIZATION, auth)
        .header(ORIGIN, format!("http://127.0.0.1:{}", latch.port))
        .body(json!({ "resource": resource }).to_string())
        .send()
        .await
        .expect("POST release")
        .status()
        .as_u16()
}

/// Opens a banner socket as `user` and watches `path`; returns it with the first `lock`
/// message.
pub async fn watch(latch: &Latch, user: &str, path: &str) -> (Ws, Value) {
    let cookie = format!("latch_token={}", token(user, &user.to_uppercase(), &[]));
    watch_with(latch, &cookie, path).await
}

/// Opens a banner socket with the request header `Cookie: {cookie}` and watches `path`;
/// returns it with the first `lock` message.
pub async fn watch_with(latch: &Latch, cookie: &str, path: &str) -> (Ws, Value) {
    let mut req = latch
        .ws_url("/__latch/ws")
        .into_client_request()
        .expect("a WebSocket request");
    let origin = format!("http://127.0.0.1:{}", latch.port);
    req.headers_mut()
        .insert(ORIGIN, HeaderValue::from_str(&origin).expect("origin"));
    req.headers_mut()
        .insert(COOKIE, HeaderValue::from_str(cookie).expect("cookie"));
    let (mut ws, _) = tokio::time::timeout(
        Duration::from_secs(5),
        tokio_tungstenite::connect_async(req),
    )
    .await
    .expect("the handshake timed out")
    .expect("the banner socket opens");
    ws.send(Message::Text(
        json!({ "type": "watch", "path": path }).to_string().into(),
    ))
    .await
    .expect("send watch");
    let first = next_message(&mut ws, Duration::from_secs(5))
        .await
        .expect("a first lock message");
    assert_eq!(first["type"], "lock", "{first}");
    (ws, first)
}

/// The next JSON message within `wait`, skipping control frames; `None` on silence or close.
pub async fn next_message(ws: &mut Ws, wait: Duration) -> Option<Value> {
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        match tokio::time::timeout_at(deadline, ws.next()).await {
            Ok(Some(Ok(Message::Text(text)))) => {
                return Some(serde_json::from_str(&text).expect("a JSON message"))
            }
            Ok(Some(Ok(Message::Close(_)))) | Ok(Some(Err(_))) | Ok(None) | Err(_) => return None,
            Ok(Some(Ok(_))) => {}
        }
    }
}

/// The value of a Prometheus counter or gauge without labels, from `/metrics`.
pub async fn metric(latch: &Latch, name: &str) -> Option<f64> {
    let body = client()
        .get(latch.admin_url("/metrics"))
        .send()
        .await
        .ok()?
        .text()
        .await
        .ok()?;
    body.lines().find_map(|line| {
        line.strip_prefix(name)?
            .strip_prefix(' ')?
            .trim()
            .parse()
            .ok()
    })
}
