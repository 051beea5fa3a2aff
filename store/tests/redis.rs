//! `RedisLockStore` against real `redis-server` processes: the shared contract
//! (`support/contract`) in real time, plus what only a shared store has — several store
//! instances on one Redis, events crossing between them, one expiry announcement however many
//! reapers run, Redis going away and coming back, and fences that survive Redis losing its data.
//!
//! Every test starts its own server on a free port; leases are real (a few hundred ms).

mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use store::{
    EventKind, Holder, LockStore, RedisLockStore, RedisOptions, ReleaseReason, StoreError,
    DISPLACED_TTL,
};
use support::contract::locks::one_winner_among;
use support::contract::{
    assert_quiet, claimed, displaced, events, expired, held, lock_store_contract, millis,
    next_event, safe, safe_on, unsafe_, user, Timing, DOC, EVENT_WAIT, LEASE,
};
use testkit::redis::{RedisCluster, RedisServer};
use tokio::sync::broadcast::error::RecvError;

lock_store_contract! {
    test: #[tokio::test],
    timing: Timing {
        short: Duration::from_millis(400),
        past: Duration::from_millis(50),
    },
    fresh: async {
        let redis = RedisServer::start();
        let store = open(&redis.url(), false).await;
        (redis, store)
    },
}

/// A store on `url` with its event listener (and, if asked, its reaper) running, once it is
/// subscribed.
async fn open(url: &str, reaper: bool) -> Arc<RedisLockStore> {
    open_with(RedisOptions::from_url(url).unwrap(), reaper).await
}

async fn open_with(options: RedisOptions, reaper: bool) -> Arc<RedisLockStore> {
    let store = RedisLockStore::open(options).unwrap();
    tokio::spawn(Arc::clone(&store).run_listener());
    if reaper {
        tokio::spawn(Arc::clone(&store).run_reaper());
    }
    assert!(
        store.wait_subscribed(Duration::from_secs(5)).await,
        "the event listener did not subscribe"
    );
    store
}

/// Retries `op` until it succeeds, for at most `within`; returns the result and how long it
/// took.
async fn eventually<T, F, Fut>(within: Duration, mut op: F) -> (T, Duration)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, StoreError>>,
{
    let started = Instant::now();
    loop {
        match op().await {
            Ok(value) => return (value, started.elapsed()),
            Err(e) => assert!(
                started.elapsed() < within,
                "still failing after {within:?}: {e}"
            ),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn renew_sets_the_lease_and_may_shorten_it() {
    let redis = RedisServer::start();
    let store = open(&redis.url(), false).await;
    let lock = claimed(store.claim(&safe(&user("alice"))).await.unwrap());

    tokio::time::sleep(Duration::from_millis(100)).await;
    let longer = store.renew(DOC, "alice", LEASE).await.unwrap().unwrap();
    assert!(
        longer.expires >= lock.expires + 100,
        "{longer:?} after {lock:?}"
    );
    assert_eq!(longer.since, lock.since);
    assert_eq!(longer.fence, lock.fence);

    let grace = store
        .renew(DOC, "alice", Duration::from_secs(5))
        .await
        .unwrap()
        .unwrap();
    assert!(grace.expires < lock.expires, "{grace:?}");
    assert!(grace.expires >= lock.since + 5_100, "{grace:?}");

    assert_eq!(store.renew(DOC, "bob", LEASE).await.unwrap(), None);
    assert_eq!(
        store.get(DOC).await.unwrap().map(|l| l.expires),
        Some(grace.expires)
    );
}

#[tokio::test]
async fn fences_survive_redis_losing_its_data() {
    let mut redis = RedisServer::start();
    let store = open(&redis.url(), false).await;
    let alice = user("alice");

    let mut last = 0;
    for _ in 0..3 {
        let lock = claimed(store.claim(&safe(&alice)).await.unwrap());
        assert!(lock.fence > last, "{} after {last}", lock.fence);
        last = lock.fence;

        // A crash of an unpersisted Redis: every key, the fence record included, is gone.
        redis.restart();
        let (after, took) = eventually(Duration::from_secs(5), || store.get(DOC)).await;
        assert_eq!(after, None, "the restarted Redis is empty");
        assert!(took < Duration::from_secs(5));
    }
    let lock = claimed(store.claim(&safe(&user("bob"))).await.unwrap());
    assert!(lock.fence > last, "{} after {last}", lock.fence);
}

#[tokio::test]
async fn lease_expires_without_traffic() {
    let redis = RedisServer::start();
    let store = open(&redis.url(), true).await;
    let mut rx = store.subscribe();
    let alice = user("alice");
    let lease = Duration::from_millis(400);

    let started = Instant::now();
    let lock = claimed(store.claim(&safe_on(DOC, &alice, lease)).await.unwrap());
    assert_eq!(next_event(&mut rx).await.kind, EventKind::Claimed);

    let event = next_event(&mut rx).await;
    let elapsed = started.elapsed();
    assert_eq!(event.kind, expired());
    assert_eq!(event.resource, DOC);
    assert_eq!(event.lock, None);
    assert_eq!(event.previous, Some(lock.clone()));
    assert!(event.at >= lock.expires, "announced before the deadline");
    assert!(elapsed >= lease, "expired early, after {elapsed:?}");
    assert!(
        elapsed < lease + Duration::from_millis(500),
        "expired late, after {elapsed:?}"
    );

    assert_eq!(store.get(DOC).await.unwrap(), None);
    // Nobody held it since: the owner's next write simply claims again.
    claimed(store.claim(&unsafe_(&alice)).await.unwrap());
    assert_eq!(next_event(&mut rx).await.kind, EventKind::Claimed);
    assert_quiet(&mut rx).await;
}

#[tokio::test]
async fn a_shortened_lease_is_reaped_at_its_new_deadline() {
    let redis = RedisServer::start();
    let store = open(&redis.url(), true).await;
    let mut rx = store.subscribe();
    claimed(store.claim(&safe(&user("alice"))).await.unwrap());
    assert_eq!(next_event(&mut rx).await.kind, EventKind::Claimed);

    let started = Instant::now();
    let grace = store
        .renew(DOC, "alice", Duration::from_millis(300))
        .await
        .unwrap()
        .unwrap();
    let event = next_event(&mut rx).await;
    assert_eq!(event.kind, expired());
    assert!(event.at >= grace.expires);
    assert!(
        started.elapsed() < Duration::from_millis(800),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn displaced_markers_are_kept_for_a_day() {
    let redis = RedisServer::start();
    let store = open(&redis.url(), false).await;
    let alice = user("alice");
    claimed(store.claim(&safe(&alice)).await.unwrap());
    store.takeover(&safe(&user("bob"))).await.unwrap();

    let keys = redis.command("KEYS *displaced*");
    let key = keys
        .lines()
        .find(|l| l.contains(":displaced:doc:1"))
        .unwrap_or_else(|| panic!("no displaced marker key in {keys:?}"))
        .to_owned();
    let pttl: u64 = redis
        .command(&format!("PTTL {key}"))
        .trim()
        .trim_start_matches(':')
        .parse()
        .unwrap();
    let day = millis(DISPLACED_TTL);
    assert!(pttl > day - 60_000 && pttl <= day, "{pttl}");
    assert_eq!(
        displaced(store.claim(&unsafe_(&alice)).await.unwrap()),
        Some(store.get(DOC).await.unwrap().unwrap())
    );
}

#[tokio::test]
async fn names_with_any_characters_round_trip() {
    let redis = RedisServer::start();
    let store = open(&redis.url(), false).await;
    let mut rx = store.subscribe();
    let odd = Holder {
        user: "ünï/cødé \"quoted\" {tag} \\ #1".to_owned(),
        name: "Zoë <script>\n😀".to_owned(),
        session: Some("s{1}:x".to_owned()),
    };
    let resource = "doc:{weird}/ü ñ\"\\";
    let lock = claimed(store.claim(&safe_on(resource, &odd, LEASE)).await.unwrap());
    assert_eq!(lock.holder, odd);
    assert_eq!(lock.resource, resource);
    assert_eq!(store.get(resource).await.unwrap(), Some(lock.clone()));
    let event = next_event(&mut rx).await;
    assert_eq!(event.resource, resource);
    assert_eq!(event.lock, Some(lock.clone()));
    assert_eq!(store.list().await.unwrap(), [lock]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_claimants_on_several_instances_get_exactly_one_winner() {
    let redis = RedisServer::start();
    let mut instances: Vec<Arc<dyn LockStore>> = Vec::new();
    for _ in 0..3 {
        instances.push(open(&redis.url(), true).await);
    }
    one_winner_among(instances).await;
}

#[tokio::test]
async fn changes_on_one_instance_reach_subscribers_on_another() {
    let redis = RedisServer::start();
    let a = open(&redis.url(), false).await;
    let c = open(&redis.url(), false).await;
    let mut rx = c.subscribe();
    let lock = claimed(a.claim(&safe(&user("alice"))).await.unwrap());
    assert_eq!(next_event(&mut rx).await.kind, EventKind::Claimed);

    let started = Instant::now();
    a.release(DOC, "alice", ReleaseReason::Client)
        .await
        .unwrap()
        .unwrap();
    let event = next_event(&mut rx).await;
    assert!(started.elapsed() < Duration::from_secs(1));
    assert_eq!(
        event.kind,
        EventKind::Released {
            reason: ReleaseReason::Client
        }
    );
    assert_eq!(event.previous, Some(lock));
    assert_eq!(c.get(DOC).await.unwrap(), None);
}

#[tokio::test]
async fn an_expiry_is_announced_once_however_many_reapers_run() {
    let redis = RedisServer::start();
    let mut instances = Vec::new();
    for _ in 0..4 {
        instances.push(open(&redis.url(), true).await);
    }
    let mut rxs: Vec<_> = instances.iter().map(|s| s.subscribe()).collect();
    for i in 0..20 {
        instances[i % 4]
            .claim(&safe_on(
                &format!("doc:{i}"),
                &user("alice"),
                Duration::from_millis(300),
            ))
            .await
            .unwrap();
    }
    for rx in &mut rxs {
        let mut expiries = std::collections::HashMap::new();
        for _ in 0..40 {
            let event = next_event(rx).await;
            if event.kind == expired() {
                *expiries.entry(event.resource).or_insert(0) += 1;
            }
        }
        assert_quiet(rx).await;
        assert_eq!(expiries.len(), 20);
        assert!(expiries.values().all(|n| *n == 1), "{expiries:?}");
    }
}

#[tokio::test]
async fn key_prefixes_keep_deployments_apart() {
    let redis = RedisServer::start();
    let one = open(&format!("{}?key_prefix=one", redis.url()), false).await;
    let two = open(&format!("{}?key_prefix=two", redis.url()), false).await;
    let mut rx_two = two.subscribe();

    claimed(one.claim(&safe(&user("alice"))).await.unwrap());
    claimed(two.claim(&safe(&user("bob"))).await.unwrap());
    assert_eq!(one.get(DOC).await.unwrap().unwrap().holder, user("alice"));
    assert_eq!(two.list().await.unwrap().len(), 1);
    let events = events(&mut rx_two, 1).await;
    assert_eq!(events[0].lock.as_ref().unwrap().holder, user("bob"));
    assert!(redis.command("KEYS one:*").contains("one:{b"));
}

#[tokio::test]
async fn a_foreign_message_on_the_channel_is_skipped() {
    let redis = RedisServer::start();
    let store = open(&redis.url(), false).await;
    let mut rx = store.subscribe();
    redis.command("PUBLISH latch:events not-json");
    let lock = claimed(store.claim(&safe(&user("alice"))).await.unwrap());
    let event = next_event(&mut rx).await;
    assert_eq!(event.lock, Some(lock));
}

#[tokio::test]
async fn redis_down_fails_fast_and_recovers_by_itself() {
    let mut redis = RedisServer::start();
    let store = open(&redis.url(), true).await;
    claimed(store.claim(&safe(&user("alice"))).await.unwrap());
    let old_rx = store.subscribe();

    assert!(store.events_live());
    redis.kill();
    // Events published now would be lost: the store says so before it can resubscribe.
    let killed = Instant::now();
    while store.events_live() {
        assert!(
            killed.elapsed() < Duration::from_secs(5),
            "events still said live 5 s after Redis died"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for _ in 0..5 {
        let started = Instant::now();
        let err = store.claim(&safe(&user("bob"))).await.unwrap_err();
        assert!(
            matches!(err, StoreError::Unavailable(_) | StoreError::Timeout),
            "{err:?}"
        );
        assert!(started.elapsed() < Duration::from_millis(1_100));
        assert!(store.ping().await.is_err());
    }

    redis.restart();
    let bobs = safe(&user("bob"));
    let (lock, took) = eventually(Duration::from_secs(5), || store.claim(&bobs)).await;
    assert!(took < Duration::from_secs(5));
    claimed(lock);
    assert!(store.wait_subscribed(Duration::from_secs(5)).await);
    assert!(store.events_live());
    eventually(Duration::from_secs(5), || store.ping()).await;

    // Receivers from before the outage are closed (events were lost), new ones work.
    let mut old_rx = old_rx;
    loop {
        match tokio::time::timeout(EVENT_WAIT, old_rx.recv()).await {
            Ok(Err(RecvError::Closed)) => break,
            Ok(Ok(_)) => continue,
            other => panic!("old receiver not closed: {other:?}"),
        }
    }
    // The new receiver may or may not see bob's claim, which raced the resubscription.
    let mut rx = store.subscribe();
    store
        .release(DOC, "bob", ReleaseReason::Client)
        .await
        .unwrap()
        .unwrap();
    let mut event = next_event(&mut rx).await;
    if event.kind == EventKind::Claimed {
        event = next_event(&mut rx).await;
    }
    assert_eq!(
        event.kind,
        EventKind::Released {
            reason: ReleaseReason::Client
        }
    );
}

#[tokio::test]
async fn a_store_opened_before_redis_starts_works_once_it_does() {
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let store = RedisLockStore::open(
        RedisOptions::from_url(&format!("redis://127.0.0.1:{port}/0")).unwrap(),
    )
    .unwrap();
    tokio::spawn(Arc::clone(&store).run_listener());
    assert!(matches!(
        store.get(DOC).await,
        Err(StoreError::Unavailable(_))
    ));

    let _redis = RedisServer::start_with(port, &[]);
    let alices = safe(&user("alice"));
    eventually(Duration::from_secs(5), || store.claim(&alices)).await;
    assert!(store.wait_subscribed(Duration::from_secs(5)).await);
    eventually(Duration::from_secs(5), || store.ping()).await;
}

#[tokio::test]
async fn a_dropped_store_stops_its_background_tasks() {
    let redis = RedisServer::start();
    let store = RedisLockStore::open(RedisOptions::from_url(&redis.url()).unwrap()).unwrap();
    let listener = tokio::spawn(Arc::clone(&store).run_listener());
    let reaper = tokio::spawn(Arc::clone(&store).run_reaper());
    assert!(store.wait_subscribed(Duration::from_secs(5)).await);
    drop(store);
    tokio::time::timeout(Duration::from_secs(10), async {
        reaper.await.unwrap();
        listener.await.unwrap();
    })
    .await
    .expect("background tasks still running");
}

#[tokio::test]
async fn works_on_a_three_master_cluster() {
    if !RedisCluster::available() {
        eprintln!("skipped: redis-cli is not installed, so no cluster can be created");
        return;
    }
    let cluster = RedisCluster::start();
    let a = open(&cluster.url(), true).await;
    let b = open(&cluster.url(), true).await;
    let mut rx_b = b.subscribe();
    let alice = user("alice");
    let bob = user("bob");

    // Resources in every bucket, so every node serves some.
    let mut expected = Vec::new();
    for i in 0..64 {
        let resource = format!("doc:{i:02}");
        let lock = claimed(a.claim(&safe_on(&resource, &alice, LEASE)).await.unwrap());
        assert_eq!(
            held(b.claim(&safe_on(&resource, &bob, LEASE)).await.unwrap()),
            lock
        );
        expected.push(resource);
    }
    let listed: Vec<_> = b
        .list()
        .await
        .unwrap()
        .into_iter()
        .map(|l| l.resource)
        .collect();
    assert_eq!(listed, expected);
    for _ in 0..64 {
        assert_eq!(next_event(&mut rx_b).await.kind, EventKind::Claimed);
    }

    let taken = b.takeover(&safe_on("doc:07", &bob, LEASE)).await.unwrap();
    assert_eq!(taken.previous.map(|p| p.holder), Some(alice.clone()));
    let event = next_event(&mut rx_b).await;
    assert_eq!(event.kind, EventKind::TakenOver { by: bob.clone() });
    assert_eq!(
        a.release("doc:08", "alice", ReleaseReason::Client)
            .await
            .unwrap()
            .map(|l| l.resource),
        Some("doc:08".to_owned())
    );
    assert_eq!(next_event(&mut rx_b).await.resource, "doc:08");

    // Expiry through the reapers, announced once.
    a.claim(&safe_on("doc:short", &alice, Duration::from_millis(300)))
        .await
        .unwrap();
    assert_eq!(next_event(&mut rx_b).await.kind, EventKind::Claimed);
    let event = next_event(&mut rx_b).await;
    assert_eq!(
        (event.kind, event.resource.as_str()),
        (expired(), "doc:short")
    );
    assert_quiet(&mut rx_b).await;
    a.ping().await.unwrap();
}

mod claim_limits {
    //! What the Redis store adds to the shared claim-cap contract: the count comes from the
    //! per-user held index rather than from the locks themselves.

    use std::time::Duration;

    use store::LockStore;

    use super::support::contract::{claim_limits, Timing};
    use super::{open, RedisServer};

    const TIMING: Timing = Timing {
        short: Duration::from_millis(400),
        past: Duration::from_millis(50),
    };

    #[tokio::test]
    async fn an_expiry_the_reaper_announced_frees_a_slot() {
        let redis = RedisServer::start();
        let store = open(&redis.url(), true).await;
        claim_limits::an_expired_lease_frees_a_slot(store, TIMING).await;
    }

    #[tokio::test]
    async fn the_held_index_empties_when_its_locks_go() {
        let redis = RedisServer::start();
        let store = open(&redis.url(), false).await;
        claim_limits::releases_free_a_slot(store.clone(), TIMING).await;
        for doc in ["doc:c", "doc:d"] {
            store
                .release(doc, "alice", store::ReleaseReason::Client)
                .await
                .unwrap();
        }
        assert_eq!(redis.command("EXISTS latch:held:alice").trim(), ":0");
    }
}
