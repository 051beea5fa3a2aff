//! Unsaved changes on three `latch proxy` instances sharing one Redis: kept through one,
//! listed and read through another, still there after an instance is killed (kill -9), and
//! gone after Redis restarts without persistence, which the proxies survive. Each test starts
//! its own Redis on a free port.

use std::time::Duration;

use reqwest::header::{AUTHORIZATION, CONTENT_TYPE};
use serde_json::Value;
use tests::fixtures::DOC;
use tests::instances::{bearer, get, start_instances, wait_ready};
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
