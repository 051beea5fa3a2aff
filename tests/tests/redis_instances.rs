//! Several `latch proxy` instances on one Redis behave as one: one winner among concurrent
//! claimants on all of them, changes heard by banners on every instance, and locks that outlive
//! the instance that granted them. Each test starts its own Redis on a free port.

use std::time::{Duration, Instant};

use futures::SinkExt;
use serde_json::{json, Value};
use tests::fixtures::DOC;
use tests::instances::{
    bearer, get, next_message, release, start_instance, start_instances, watch,
};
use tests::redis::{RedisCluster, RedisServer};
use tests::Upstream;
use tokio_tungstenite::tungstenite::Message;

/// A free-state `lock` message within `wait`, skipping anything else; how long it took.
async fn until_free(ws: &mut tests::instances::Ws, wait: Duration) -> Duration {
    let started = Instant::now();
    loop {
        let left = wait.saturating_sub(started.elapsed());
        match next_message(ws, left).await {
            Some(msg) if msg["type"] == "lock" && msg["state"] == "free" => {
                return started.elapsed()
            }
            Some(_) => {}
            None => panic!("no free message within {wait:?}"),
        }
    }
}

fn fence_of(echo: &Value) -> u64 {
    echo["headers"]["x-latch-fence"]
        .as_str()
        .and_then(|f| f.parse().ok())
        .unwrap_or_else(|| panic!("no fence in {echo}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_hundred_claimants_on_three_instances_get_exactly_one_winner() {
    const CLAIMANTS: usize = 200;
    let redis = RedisServer::start();
    let upstream = Upstream::start().await;
    let instances = start_instances(3, upstream.port(), &redis.url(), DOC).await;
    let tokens: Vec<String> = (0..CLAIMANTS)
        .map(|i| bearer(&format!("user{i}"), &[]))
        .collect();

    let attempts = tokens.iter().enumerate().map(|(i, auth)| {
        let latch = &instances[i % instances.len()];
        async move { (i, get(latch, "/echo/doc/1", auth).await) }
    });
    let results = futures::future::join_all(attempts).await;

    let winners: Vec<_> = results
        .iter()
        .filter(|(_, (status, _))| *status == 200)
        .collect();
    assert_eq!(winners.len(), 1, "winners: {winners:?}");
    let (winner, (_, echo)) = winners[0];
    let winner_id = format!("user{winner}");
    assert_eq!(echo["headers"]["x-latch-user"], winner_id.as_str());
    fence_of(echo);

    for (i, (status, body)) in &results {
        if i == winner {
            continue;
        }
        assert_eq!(*status, 423, "claimant {i}: {body}");
        assert_eq!(
            body["holder"]["id"],
            winner_id.as_str(),
            "claimant {i}: {body}"
        );
        assert_eq!(body["resource"], "doc:1");
    }
}

#[tokio::test]
async fn a_release_on_one_instance_reaches_a_watcher_on_another_within_a_second() {
    let redis = RedisServer::start();
    let upstream = Upstream::start().await;
    let instances = start_instances(3, upstream.port(), &redis.url(), DOC).await;
    let (a, c) = (&instances[0], &instances[2]);
    let alice = bearer("alice", &[]);

    assert_eq!(get(a, "/echo/doc/2", &alice).await.0, 200);
    let (mut ws, first) = watch(c, "bob", "/echo/doc/2").await;
    assert_eq!(first["state"], "held", "{first}");
    assert_eq!(first["holder"]["id"], "alice");

    let sent = Instant::now();
    assert_eq!(release(a, "doc:2", &alice).await, 204);
    let took = until_free(&mut ws, Duration::from_secs(2)).await;
    let total = sent.elapsed();
    assert!(
        total < Duration::from_secs(1),
        "the watcher heard after {total:?} ({took:?})"
    );
    assert_eq!(get(c, "/echo/doc/2", &bearer("bob", &[])).await.0, 200);
}

#[tokio::test]
async fn locks_outlive_a_killed_instance_and_holders_carry_on_elsewhere() {
    let redis = RedisServer::start();
    let upstream = Upstream::start().await;
    let mut instances = start_instances(3, upstream.port(), &redis.url(), DOC).await;
    let alice = bearer("alice", &[]);
    let bob = bearer("bob", &[]);

    let (status, echo) = get(&instances[1], "/echo/doc/3", &alice).await;
    assert_eq!(status, 200);
    let fence = fence_of(&echo);
    let claimed_at = Instant::now();

    instances[1].kill();
    let (a, c) = (&instances[0], &instances[2]);

    // The lock survived the instance that granted it; its holder goes on through another.
    let (status, echo) = get(a, "/echo/doc/3", &alice).await;
    assert_eq!(status, 200);
    assert_eq!(fence_of(&echo), fence, "the same grant, renewed");
    let (status, body) = get(c, "/echo/doc/3", &bob).await;
    assert_eq!(status, 423);
    assert_eq!(body["holder"]["id"], "alice");

    // Alice's banner reconnects to another instance and its heartbeats keep the lease past
    // the five seconds it would otherwise have lasted.
    let (mut alice_ws, first) = watch(a, "alice", "/echo/doc/3").await;
    assert_eq!(first["you"], true, "{first}");
    let (mut bob_ws, _) = watch(c, "bob", "/echo/doc/3").await;
    for _ in 0..3 {
        tokio::time::sleep(Duration::from_secs(2)).await;
        alice_ws
            .send(Message::Text(
                json!({ "type": "heartbeat" }).to_string().into(),
            ))
            .await
            .expect("heartbeat");
    }
    assert!(claimed_at.elapsed() > Duration::from_secs(6));
    let (status, body) = get(c, "/echo/doc/3", &bob).await;
    assert_eq!(status, 423, "{body}");
    assert_eq!(body["holder"]["id"], "alice");

    // Alice leaves: after the grace period the surviving instances' reapers expire the lock,
    // and bob's banner on another instance hears of it without any request on the resource.
    drop(alice_ws);
    until_free(&mut bob_ws, Duration::from_secs(5)).await;
    let (status, echo) = get(c, "/echo/doc/3", &bob).await;
    assert_eq!(status, 200);
    assert!(fence_of(&echo) > fence);
}

#[tokio::test]
async fn instances_on_a_redis_cluster_share_locks_and_events() {
    if !RedisCluster::available() {
        eprintln!("skipped: redis-cli is not installed, so no cluster can be created");
        return;
    }
    let cluster = RedisCluster::start();
    let upstream = Upstream::start().await;
    let a = start_instance(upstream.port(), &cluster.url(), DOC).await;
    let b = start_instance(upstream.port(), &cluster.url(), DOC).await;
    let alice = bearer("alice", &[]);
    let bob = bearer("bob", &[]);

    // Documents spread over the cluster's nodes.
    let mut fences = Vec::new();
    for id in 0..12 {
        let path = format!("/echo/doc/{id}");
        let (status, echo) = get(&a, &path, &alice).await;
        assert_eq!(status, 200, "{echo}");
        fences.push(fence_of(&echo));
        let (status, body) = get(&b, &path, &bob).await;
        assert_eq!(status, 423, "{body}");
        assert_eq!(body["holder"]["id"], "alice");
    }

    let (mut ws, first) = watch(&b, "bob", "/echo/doc/5").await;
    assert_eq!(first["holder"]["id"], "alice");
    let sent = Instant::now();
    assert_eq!(release(&a, "doc:5", &alice).await, 204);
    until_free(&mut ws, Duration::from_secs(2)).await;
    assert!(
        sent.elapsed() < Duration::from_secs(1),
        "{:?}",
        sent.elapsed()
    );
    let (status, echo) = get(&b, "/echo/doc/5", &bob).await;
    assert_eq!(status, 200);
    assert!(fence_of(&echo) > fences[5]);
}
