//! A Redis restart that loses every lock: the state comes back from the holders' banner
//! sockets without waiting for a page request, fences stay above what was handed out before,
//! and an owner an admin displaced is not resurrected.

use std::time::{Duration, Instant};

use futures::SinkExt;
use serde_json::{json, Value};
use tests::fixtures::DOC;
use tests::instances::{bearer, get, start_instance, watch};
use tests::redis::RedisServer;
use tests::{client, Upstream};
use tokio_tungstenite::tungstenite::Message;

/// The lock state of `path` as alice sees it.
async fn status(latch: &tests::Latch, path: &str) -> Value {
    client()
        .get(latch.url(&format!("/__latch/status?path={path}")))
        .header("authorization", bearer("alice", &[]))
        .send()
        .await
        .expect("status")
        .json()
        .await
        .expect("status JSON")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_held_lock_is_rebuilt_from_its_banner_after_redis_loses_its_data() {
    let mut redis = RedisServer::start();
    let upstream = Upstream::start().await;
    let latch = start_instance(upstream.port(), &redis.url(), DOC).await;

    let (status_code, body) = get(&latch, "/echo/doc/1", &bearer("alice", &[])).await;
    assert_eq!(status_code, 200, "{body}");
    let fence_before: u64 = body["headers"]["x-latch-fence"]
        .as_str()
        .and_then(|f| f.parse().ok())
        .expect("a fence upstream");
    let (mut alice_ws, first) = watch(&latch, "alice", "/echo/doc/1").await;
    assert_eq!(first["you"], true, "{first}");

    redis.restart();

    // No page request from alice from here on: only her open banner socket.
    let deadline = Instant::now() + Duration::from_secs(10);
    let rebuilt = loop {
        let s = status(&latch, "/echo/doc/1").await;
        if s["state"] == "held" {
            break s;
        }
        assert!(Instant::now() < deadline, "the lock was not rebuilt: {s}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(rebuilt["holder"]["id"], "alice", "{rebuilt}");
    let fence_after = rebuilt["fence"].as_u64().expect("a fence");
    assert!(
        fence_after > fence_before,
        "fences never go back: {fence_before} then {fence_after}"
    );

    // Bob is blocked again, by alice, without alice having touched the page.
    let (bob_status, bob_body) = get(&latch, "/echo/doc/1", &bearer("bob", &[])).await;
    assert_eq!(bob_status, 423, "{bob_body}");
    assert_eq!(bob_body["holder"]["id"], "alice");

    // A force release is an admin's decision: the banner must not undo it.
    let taken = client()
        .post(latch.url("/__latch/takeover"))
        .header("authorization", bearer("root", &["admin"]))
        .header("origin", format!("http://127.0.0.1:{}", latch.port))
        .body(json!({ "resource": "doc:1" }).to_string())
        .send()
        .await
        .expect("takeover");
    assert_eq!(taken.status(), 200);
    alice_ws
        .send(Message::Text(
            json!({"type": "heartbeat"}).to_string().into(),
        ))
        .await
        .expect("heartbeat");
    tokio::time::sleep(Duration::from_secs(3)).await;
    let after = status(&latch, "/echo/doc/1").await;
    assert_eq!(after["holder"]["id"], "root", "{after}");
}
