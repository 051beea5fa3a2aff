//! Unsaved changes on three `latch proxy` instances sharing one Redis: kept through one,
//! listed and read through another, still there after an instance is killed (kill -9), and
//! gone after Redis restarts without persistence, which the proxies survive; and announced
//! live to the user's open banners on every instance. Each test starts its own Redis on a
//! free port.

use std::time::Duration;

use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, ORIGIN};
use serde_json::Value;
use tests::fixtures::DOC;
use tests::instances::{bearer, get, next_message, start_instances, wait_ready, watch, Ws};
use tests::redis::RedisServer;
use tests::{client, eventually, Latch, Upstream};

/// POSTs `body` as text to `/echo/doc/1` through `latch`; status and JSON answer.
async fn write(latch: &Latch, auth: &str, body: &str) -> (u16, Value) {
    let resp = client()
        .post(latch.url("/echo/doc/1"))
        .header(AUTHORIZATION, auth)
        .header(CONTENT_TYPE, "text/plain; charset=utf-8")
        .body(body.to_owned())
        .send()
        .await
        .expect("POST through the proxy");
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

async fn read(latch: &Latch, auth: &str, id: &str) -> (u16, String) {
    let resp = client()
        .get(latch.url(&format!("/__latch/stash/{id}")))
        .header(AUTHORIZATION, auth)
        .send()
        .await
        .expect("GET an entry");
    let status = resp.status().as_u16();
    (status, resp.text().await.unwrap_or_default())
}

async fn kept_id(latch: &Latch, auth: &str, body: &str) -> String {
    let (status, doc) = write(latch, auth, body).await;
    assert_eq!(status, 423, "{doc}");
    assert_eq!(doc["stash"]["kept"], true, "{doc}");
    doc["stash"]["id"].as_str().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kept_on_one_instance_read_on_another_and_survives_a_killed_instance() {
    let redis = RedisServer::start();
    let upstream = Upstream::start().await;
    let mut instances = start_instances(3, upstream.port(), &redis.url(), DOC).await;
    let alice = bearer("alice", &[]);
    let bob = bearer("bob", &[]);

    assert_eq!(get(&instances[0], "/echo/doc/1", &bob).await.0, 200);
    let id = kept_id(&instances[1], &alice, "Alice's paragraph").await;

    let (status, list) = get(&instances[2], "/__latch/stash", &alice).await;
    assert_eq!(status, 200);
    assert_eq!(list["count"], 1);
    assert_eq!(list["items"][0]["id"], id);
    assert_eq!(list["items"][0]["path"], "/echo/doc/1");
    assert_eq!(
        read(&instances[2], &alice, &id).await,
        (200, "Alice's paragraph".to_owned())
    );
    // Bob reads nothing of it, on any instance.
    for latch in &instances {
        assert_eq!(read(latch, &bob, &id).await.0, 404);
        assert_eq!(get(latch, "/__latch/stash", &bob).await.1["count"], 0);
    }

    // The user's keys sit together, with a time-to-live.
    let keys = redis.command("KEYS *stash*");
    assert!(keys.contains("stash:{u:alice}:index"), "{keys}");
    assert!(keys.contains("stash:{u:alice}:data"), "{keys}");
    let ttl = redis.command("PTTL latch:stash:{u:alice}:data");
    let ttl: i64 = ttl.trim().trim_start_matches(':').parse().unwrap_or(-1);
    assert!(ttl > 0 && ttl <= 86_400_000, "{ttl}");

    // The instance that kept it dies; the others still give it back and keep more.
    instances[1].kill();
    assert_eq!(
        read(&instances[0], &alice, &id).await,
        (200, "Alice's paragraph".to_owned())
    );
    let second = kept_id(&instances[2], &alice, "and a second one").await;
    let (_, list) = get(&instances[0], "/__latch/stash", &alice).await;
    let ids: Vec<&str> = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [id.as_str(), second.as_str()]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_redis_restart_without_persistence_loses_the_stash_and_the_proxies_carry_on() {
    let mut redis = RedisServer::start();
    let upstream = Upstream::start().await;
    let instances = start_instances(3, upstream.port(), &redis.url(), DOC).await;
    let alice = bearer("alice", &[]);
    let bob = bearer("bob", &[]);

    assert_eq!(get(&instances[0], "/echo/doc/1", &bob).await.0, 200);
    let id = kept_id(&instances[1], &alice, "before the restart").await;

    let restarting = tokio::task::spawn_blocking(move || {
        redis.restart();
        redis
    });
    let redis = restarting.await.unwrap();
    for latch in &instances {
        wait_ready(latch, Duration::from_secs(15)).await;
    }

    // Redis kept nothing, so neither does the stash: an honest 404, not an error.
    assert_eq!(read(&instances[2], &alice, &id).await.0, 404);
    assert_eq!(
        get(&instances[2], "/__latch/stash", &alice).await.1["count"],
        0
    );

    // Bob claims again (the lock was lost with everything else); Alice's next refused write
    // is kept as before.
    let claimed = eventually(Duration::from_secs(10), || async {
        (get(&instances[0], "/echo/doc/1", &bob).await.0 == 200).then_some(())
    })
    .await;
    assert!(claimed.is_some(), "Bob could not claim after the restart");
    let after = kept_id(&instances[1], &alice, "after the restart").await;
    assert_eq!(
        read(&instances[2], &alice, &after).await,
        (200, "after the restart".to_owned())
    );
    drop(redis);
}

/// Every message on `ws` within `wait`.
async fn messages(ws: &mut Ws, wait: Duration) -> Vec<Value> {
    let deadline = tokio::time::Instant::now() + wait;
    let mut got = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        if left.is_zero() {
            return got;
        }
        match next_message(ws, left).await {
            Some(message) => got.push(message),
            None => return got,
        }
    }
}

/// The next `stash` message on `ws` within `wait`, skipping others; `None` if none came.
async fn next_stash(ws: &mut Ws, wait: Duration) -> Option<Value> {
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        let message = next_message(ws, left).await?;
        if message["type"] == "stash" {
            return Some(message);
        }
    }
}

/// A tab already open is told at once, on whichever instance it is connected to: Alice's
/// banner socket on instance A, watching another page, gets a fresh `stash` message naming
/// the entry kept from her write refused on instance B, and another without it once she
/// deletes it; Bob, whose socket watches the very page, hears nothing of it. A burst of
/// refused writes is listed at most once a second.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_open_banner_on_another_instance_is_told_of_a_kept_write_and_its_deletion() {
    let redis = RedisServer::start();
    let upstream = Upstream::start().await;
    let instances = start_instances(2, upstream.port(), &redis.url(), DOC).await;
    let (a, b) = (&instances[0], &instances[1]);
    let alice = bearer("alice", &[]);
    let bob = bearer("bob", &[]);

    assert_eq!(get(b, "/echo/doc/1", &bob).await.0, 200);
    let (mut alices, first) = watch(a, "alice", "/echo/doc/2").await;
    assert_eq!(first["state"], "free", "{first}");
    let (mut bobs, first) = watch(a, "bob", "/echo/doc/1").await;
    assert_eq!(first["you"], true, "{first}");
    // What each socket says as it settles (presence and the like) is not under test.
    messages(&mut alices, Duration::from_millis(300)).await;
    messages(&mut bobs, Duration::from_millis(300)).await;

    let started = std::time::Instant::now();
    let id = kept_id(b, &alice, "Alice's paragraph").await;
    let told = next_stash(&mut alices, Duration::from_secs(3))
        .await
        .expect("Alice's open banner is told of the kept write");
    let took = started.elapsed();
    assert!(took < Duration::from_millis(1500), "{took:?}");
    assert_eq!(told["count"], 1, "{told}");
    assert_eq!(told["items"][0]["id"], id, "{told}");
    assert_eq!(told["items"][0]["resource"], "doc:1", "{told}");
    assert_eq!(told["items"][0]["url"], format!("/__latch/stash/{id}"));
    assert!(!told.to_string().contains("Alice's paragraph"), "{told}");

    // Alice deletes it (from instance B): her tab on A drops it.
    let deleted = client()
        .delete(b.url(&format!("/__latch/stash/{id}")))
        .header(AUTHORIZATION, &alice)
        .header(ORIGIN, format!("http://127.0.0.1:{}", b.port))
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), 204);
    let told = next_stash(&mut alices, Duration::from_secs(3))
        .await
        .expect("Alice's open banner is told of the deletion");
    assert_eq!(told["count"], 0, "{told}");
    assert_eq!(told["items"], serde_json::json!([]), "{told}");

    // Five refused writes at once: at most two listings within the next two seconds (one
    // at once, the rest coalesced), the last naming all five.
    for n in 0..5 {
        kept_id(b, &alice, &format!("draft {n}")).await;
    }
    let burst: Vec<Value> = messages(&mut alices, Duration::from_millis(2500))
        .await
        .into_iter()
        .filter(|m| m["type"] == "stash")
        .collect();
    assert!(
        (1..=2).contains(&burst.len()),
        "{} listings: {burst:?}",
        burst.len()
    );
    assert_eq!(burst.last().unwrap()["count"], 5, "{burst:?}");

    // Bob watched the very page all along and heard nothing of Alice's entries.
    for message in messages(&mut bobs, Duration::from_millis(500)).await {
        assert_ne!(message["type"], "stash", "{message}");
        assert!(!message.to_string().contains(&id), "{message}");
    }
    drop(redis);
}
