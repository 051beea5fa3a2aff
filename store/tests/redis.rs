//! `RedisLockStore` against real `redis-server` processes: the same behaviour the memory store's
//! tests pin down, plus what only a shared store has — several store instances on one Redis,
//! events crossing between them, one expiry announcement however many reapers run, Redis going
//! away and coming back, and fences that survive Redis losing its data.
//!
//! Every test starts its own server on a free port; leases are real (a few hundred ms).

#[path = "support/redis_server.rs"]
mod redis_server;

use std::sync::Arc;
use std::time::{Duration, Instant};

use redis_server::{RedisCluster, RedisServer};
use store::{
    ClaimOutcome, ClaimRequest, EventKind, Holder, Lock, LockEvent, LockStore, RedisLockStore,
    RedisOptions, ReleaseReason, StoreError, Takeover, DISPLACED_TTL,
};
use tokio::sync::broadcast::{self, error::RecvError};
use tokio::sync::Barrier;

const LEASE: Duration = Duration::from_secs(30);
const DOC: &str = "doc:1";
/// How long a test waits for an event that must come.
const EVENT_WAIT: Duration = Duration::from_secs(3);
/// How long a test listens to be sure no (further) event comes.
const QUIET: Duration = Duration::from_millis(300);

use contract::{tab, user};

fn safe(holder: &Holder) -> ClaimRequest {
    safe_on(DOC, holder, LEASE)
}

fn safe_on(resource: &str, holder: &Holder, lease: Duration) -> ClaimRequest {
    ClaimRequest {
        resource: resource.to_owned(),
        rule: "edit".to_owned(),
        holder: holder.clone(),
        lease,
        instance: "proxy-1".to_owned(),
        unsafe_method: false,
        max_per_user: None,
    }
}

fn unsafe_(holder: &Holder) -> ClaimRequest {
    ClaimRequest {
        unsafe_method: true,
        ..safe(holder)
    }
}

fn claimed(outcome: ClaimOutcome) -> Lock {
    match outcome {
        ClaimOutcome::Claimed(lock) => lock,
        other => panic!("expected Claimed, got {other:?}"),
    }
}

fn held(outcome: ClaimOutcome) -> Lock {
    match outcome {
        ClaimOutcome::Held(lock) => lock,
        other => panic!("expected Held, got {other:?}"),
    }
}

fn renewed(outcome: ClaimOutcome) -> Lock {
    match outcome {
        ClaimOutcome::Renewed(lock) => lock,
        other => panic!("expected Renewed, got {other:?}"),
    }
}

fn displaced(outcome: ClaimOutcome) -> Option<Lock> {
    match outcome {
        ClaimOutcome::Displaced { current } => current,
        other => panic!("expected Displaced, got {other:?}"),
    }
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap()
}

fn expired() -> EventKind {
    EventKind::Released {
        reason: ReleaseReason::Expired,
    }
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

async fn next_event(rx: &mut broadcast::Receiver<LockEvent>) -> LockEvent {
    tokio::time::timeout(EVENT_WAIT, rx.recv())
        .await
        .expect("no event in time")
        .expect("event stream broke")
}

/// Exactly `n` events, then silence.
async fn events(rx: &mut broadcast::Receiver<LockEvent>, n: usize) -> Vec<LockEvent> {
    let mut got = Vec::with_capacity(n);
    for _ in 0..n {
        got.push(next_event(rx).await);
    }
    assert_quiet(rx).await;
    got
}

async fn assert_quiet(rx: &mut broadcast::Receiver<LockEvent>) {
    if let Ok(event) = tokio::time::timeout(QUIET, rx.recv()).await {
        panic!("unexpected event: {event:?}");
    }
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
async fn claim_renew_held_release() {
    let redis = RedisServer::start();
    let store = open(&redis.url(), false).await;
    let alice = user("alice");
    let bob = user("bob");

    let first = claimed(store.claim(&safe(&alice)).await.unwrap());
    assert_eq!(first.resource, DOC);
    assert_eq!(first.rule, "edit");
    assert_eq!(first.holder, alice);
    assert_eq!(first.instance, "proxy-1");
    assert_eq!(first.expires - first.since, millis(LEASE));

    let again = renewed(store.claim(&safe(&alice)).await.unwrap());
    assert_eq!(again.fence, first.fence);
    assert_eq!(again.since, first.since);
    assert!(again.expires >= first.expires);

    assert_eq!(held(store.claim(&safe(&bob)).await.unwrap()).holder, alice);
    assert_eq!(
        store.get(DOC).await.unwrap().map(|l| l.holder),
        Some(alice.clone())
    );

    assert_eq!(
        store
            .release(DOC, "bob", ReleaseReason::Client)
            .await
            .unwrap(),
        None
    );
    let released = store
        .release(DOC, "alice", ReleaseReason::Client)
        .await
        .unwrap();
    assert_eq!(released.map(|l| l.fence), Some(first.fence));
    assert_eq!(store.get(DOC).await.unwrap(), None);

    assert_eq!(claimed(store.claim(&safe(&bob)).await.unwrap()).holder, bob);
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
async fn a_renewing_claim_never_shortens_the_lease() {
    let redis = RedisServer::start();
    let store = open(&redis.url(), false).await;
    let alice = user("alice");
    let lock = claimed(store.claim(&safe(&alice)).await.unwrap());
    let short = safe_on(DOC, &alice, Duration::from_secs(5));
    assert_eq!(
        renewed(store.claim(&short).await.unwrap()).expires,
        lock.expires
    );
    let takeover = store.takeover(&short).await.unwrap();
    assert_eq!(takeover.previous, None);
    assert_eq!(takeover.lock.expires, lock.expires);
}

#[tokio::test]
async fn session_owner_is_per_tab_and_can_be_moved() {
    let redis = RedisServer::start();
    let store = open(&redis.url(), false).await;
    let tab1 = tab("alice", "t1");
    let tab2 = tab("alice", "t2");

    let first = claimed(store.claim(&safe(&tab1)).await.unwrap());
    assert_eq!(first.holder.session.as_deref(), Some("t1"));
    assert_eq!(held(store.claim(&safe(&tab2)).await.unwrap()).holder, tab1);
    assert_eq!(
        held(store.claim(&safe(&user("alice"))).await.unwrap()).holder,
        tab1
    );
    assert_eq!(store.renew(DOC, "alice", LEASE).await.unwrap(), None);
    assert!(store.renew(DOC, "alice#t1", LEASE).await.unwrap().is_some());

    let Takeover { lock, previous } = store.takeover(&safe(&tab2)).await.unwrap();
    assert_eq!(lock.holder, tab2);
    assert!(lock.fence > first.fence);
    assert_eq!(previous.map(|p| p.holder), Some(tab1.clone()));

    assert_eq!(
        displaced(store.claim(&unsafe_(&tab1)).await.unwrap()),
        Some(lock.clone())
    );
    assert_eq!(
        store
            .release(DOC, "alice#t1", ReleaseReason::Client)
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        renewed(store.claim(&unsafe_(&tab2)).await.unwrap()).fence,
        lock.fence
    );
}

#[tokio::test]
async fn fence_strictly_increases_across_claim_release_claim_takeover() {
    let redis = RedisServer::start();
    let store = open(&redis.url(), false).await;
    let alice = user("alice");
    let bob = user("bob");
    let carol = user("carol");

    let f1 = claimed(store.claim(&safe(&alice)).await.unwrap()).fence;
    assert_eq!(renewed(store.claim(&safe(&alice)).await.unwrap()).fence, f1);
    store
        .release(DOC, "alice", ReleaseReason::Client)
        .await
        .unwrap()
        .unwrap();

    let f2 = claimed(store.claim(&safe(&bob)).await.unwrap()).fence;
    assert!(f2 > f1, "{f2} after {f1}");

    let f3 = store.takeover(&safe(&carol)).await.unwrap().lock.fence;
    assert!(f3 > f2, "{f3} after {f2}");

    store
        .release(DOC, "carol", ReleaseReason::Grace)
        .await
        .unwrap()
        .unwrap();
    let f4 = claimed(store.claim(&safe(&alice)).await.unwrap()).fence;
    assert!(f4 > f3, "{f4} after {f3}");
    assert_eq!(store.get(DOC).await.unwrap().map(|l| l.fence), Some(f4));
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
async fn takeover_by_the_current_holder_is_a_renewal() {
    let redis = RedisServer::start();
    let store = open(&redis.url(), false).await;
    let alice = user("alice");
    let mut rx = store.subscribe();
    let lock = claimed(store.claim(&safe(&alice)).await.unwrap());
    assert_eq!(next_event(&mut rx).await.kind, EventKind::Claimed);

    let again = store.takeover(&safe(&alice)).await.unwrap();
    assert_eq!(again.previous, None);
    assert_eq!(again.lock.fence, lock.fence);
    assert_quiet(&mut rx).await;
    assert_eq!(
        renewed(store.claim(&unsafe_(&alice)).await.unwrap()).fence,
        lock.fence
    );
}

#[tokio::test]
async fn takeover_marks_the_loser_displaced_until_a_safe_claim() {
    let redis = RedisServer::start();
    let store = open(&redis.url(), false).await;
    let alice = user("alice");
    let bob = user("bob");
    claimed(store.claim(&safe(&alice)).await.unwrap());
    let bobs = store.takeover(&safe(&bob)).await.unwrap().lock;

    assert_eq!(
        displaced(store.claim(&unsafe_(&alice)).await.unwrap()),
        Some(bobs.clone())
    );
    assert_eq!(store.get(DOC).await.unwrap(), Some(bobs.clone()));

    // A reload (safe method) shows alice the current state and clears the marker.
    assert_eq!(held(store.claim(&safe(&alice)).await.unwrap()), bobs);
    assert_eq!(held(store.claim(&unsafe_(&alice)).await.unwrap()), bobs);

    // Once free, a displaced owner still cannot write, and claims nothing, until it reloads.
    store.takeover(&safe(&alice)).await.unwrap();
    store
        .release(DOC, "alice", ReleaseReason::Client)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(displaced(store.claim(&unsafe_(&bob)).await.unwrap()), None);
    assert_eq!(store.get(DOC).await.unwrap(), None);
    claimed(store.claim(&safe(&bob)).await.unwrap());
    renewed(store.claim(&unsafe_(&bob)).await.unwrap());
}

#[tokio::test]
async fn voluntary_releases_do_not_mark_displaced() {
    let redis = RedisServer::start();
    let store = open(&redis.url(), false).await;
    let alice = user("alice");
    for reason in [ReleaseReason::Client, ReleaseReason::Grace] {
        claimed(store.claim(&unsafe_(&alice)).await.unwrap());
        store.release(DOC, "alice", reason).await.unwrap().unwrap();
        claimed(store.claim(&unsafe_(&alice)).await.unwrap());
        store
            .release(DOC, "alice", ReleaseReason::Client)
            .await
            .unwrap()
            .unwrap();
    }
    // Every other reason given to release does displace.
    claimed(store.claim(&unsafe_(&alice)).await.unwrap());
    store
        .release(DOC, "alice", ReleaseReason::TakenOver)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        displaced(store.claim(&unsafe_(&alice)).await.unwrap()),
        None
    );
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
    assert_eq!(
        displaced(store.claim(&unsafe_(&alice)).await.unwrap()),
        None
    );
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
async fn operations_notice_lapsed_leases_without_the_reaper() {
    let redis = RedisServer::start();
    let store = open(&redis.url(), false).await;
    let mut rx = store.subscribe();
    let alice = user("alice");
    let bob = user("bob");

    let alices = claimed(
        store
            .claim(&safe_on(DOC, &alice, Duration::from_millis(200)))
            .await
            .unwrap(),
    );
    tokio::time::sleep(Duration::from_millis(250)).await;
    let bobs = claimed(store.claim(&safe(&bob)).await.unwrap());
    assert!(bobs.fence > alices.fence);

    let events = events(&mut rx, 3).await;
    let kinds: Vec<_> = events.iter().map(|e| e.kind.clone()).collect();
    assert_eq!(kinds, [EventKind::Claimed, expired(), EventKind::Claimed]);
    assert_eq!(events[1].previous, Some(alices));
    assert_eq!(events[2].lock, Some(bobs.clone()));
    assert_eq!(
        displaced(store.claim(&unsafe_(&alice)).await.unwrap()),
        Some(bobs)
    );
}

#[tokio::test]
async fn renew_after_lapse_does_not_resurrect() {
    let redis = RedisServer::start();
    let store = open(&redis.url(), false).await;
    let mut rx = store.subscribe();
    claimed(
        store
            .claim(&safe_on(DOC, &user("alice"), Duration::from_millis(200)))
            .await
            .unwrap(),
    );

    tokio::time::sleep(Duration::from_millis(250)).await;
    assert_eq!(store.renew(DOC, "alice", LEASE).await.unwrap(), None);
    assert_eq!(store.get(DOC).await.unwrap(), None);
    assert_eq!(store.renew(DOC, "alice", LEASE).await.unwrap(), None);

    let kinds: Vec<_> = events(&mut rx, 2)
        .await
        .into_iter()
        .map(|e| e.kind)
        .collect();
    assert_eq!(kinds, [EventKind::Claimed, expired()]);
}

#[tokio::test]
async fn list_is_sorted_and_skips_lapsed_locks() {
    let redis = RedisServer::start();
    let store = open(&redis.url(), false).await;
    let alice = user("alice");
    let mut rx = store.subscribe();
    // Enough resources to land in many buckets.
    let mut expected = Vec::new();
    for i in 0..40 {
        let resource = format!("doc:{i:02}");
        store
            .claim(&safe_on(&resource, &alice, LEASE))
            .await
            .unwrap();
        expected.push(resource);
    }
    store
        .claim(&safe_on("doc:short", &alice, Duration::from_millis(200)))
        .await
        .unwrap();
    for _ in 0..41 {
        assert_eq!(next_event(&mut rx).await.kind, EventKind::Claimed);
    }

    tokio::time::sleep(Duration::from_millis(250)).await;
    let resources: Vec<_> = store
        .list()
        .await
        .unwrap()
        .into_iter()
        .map(|l| l.resource)
        .collect();
    assert_eq!(resources, expected);
    let events = events(&mut rx, 1).await;
    assert_eq!(events[0].resource, "doc:short");
    assert_eq!(events[0].kind, expired());
}

#[tokio::test]
async fn force_release_emits_forced_and_marks_displaced() {
    let redis = RedisServer::start();
    let store = open(&redis.url(), false).await;
    let alice = user("alice");
    let mut rx = store.subscribe();
    let lock = claimed(store.claim(&safe(&alice)).await.unwrap());
    assert_eq!(next_event(&mut rx).await.kind, EventKind::Claimed);

    assert_eq!(
        store.force_release(DOC, "root").await.unwrap(),
        Some(lock.clone())
    );
    let events = events(&mut rx, 1).await;
    assert_eq!(
        events[0].kind,
        EventKind::Released {
            reason: ReleaseReason::Forced {
                by: "root".to_owned()
            }
        }
    );
    assert_eq!(events[0].lock, None);
    assert_eq!(events[0].previous, Some(lock));

    assert_eq!(store.force_release(DOC, "root").await.unwrap(), None);
    assert_quiet(&mut rx).await;
    assert_eq!(
        displaced(store.claim(&unsafe_(&alice)).await.unwrap()),
        None
    );
    claimed(store.claim(&safe(&alice)).await.unwrap());
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
async fn every_change_emits_one_event_with_lock_and_previous() {
    let redis = RedisServer::start();
    let store = open(&redis.url(), false).await;
    let mut rx = store.subscribe();
    let alice = user("alice");
    let bob = user("bob");
    let carol = user("carol");
    let dave = tab("dave", "t9");

    let alices = claimed(store.claim(&safe(&alice)).await.unwrap());
    store.claim(&safe(&alice)).await.unwrap();
    // Renewals announce nothing, but they move the deadline the takeover reports.
    let alices_renewed = store.renew(DOC, "alice", LEASE).await.unwrap().unwrap();
    held(store.claim(&safe(&bob)).await.unwrap());
    let bobs = store.takeover(&safe(&bob)).await.unwrap().lock;
    store
        .release(DOC, "bob", ReleaseReason::Client)
        .await
        .unwrap()
        .unwrap();
    let carols = store.takeover(&safe(&carol)).await.unwrap();
    assert_eq!(carols.previous, None);
    let carols = carols.lock;
    store.request_access(DOC, &dave).await.unwrap();

    let events = events(&mut rx, 5).await;
    let shape: Vec<_> = events
        .iter()
        .map(|e| {
            (
                e.kind.clone(),
                e.resource.as_str(),
                e.lock.clone(),
                e.previous.clone(),
            )
        })
        .collect();
    assert_eq!(
        shape,
        [
            (EventKind::Claimed, DOC, Some(alices.clone()), None),
            (
                EventKind::TakenOver { by: bob.clone() },
                DOC,
                Some(bobs.clone()),
                Some(alices_renewed)
            ),
            (
                EventKind::Released {
                    reason: ReleaseReason::Client
                },
                DOC,
                None,
                Some(bobs)
            ),
            (EventKind::Claimed, DOC, Some(carols.clone()), None),
            (
                EventKind::AccessRequested { by: dave },
                DOC,
                Some(carols),
                None
            ),
        ]
    );
    assert!(events.windows(2).all(|w| w[0].at <= w[1].at));
}

#[tokio::test]
async fn request_access_only_emits_an_event() {
    let redis = RedisServer::start();
    let store = open(&redis.url(), false).await;
    let mut rx = store.subscribe();
    let lock = claimed(store.claim(&safe(&user("alice"))).await.unwrap());
    assert_eq!(next_event(&mut rx).await.kind, EventKind::Claimed);
    let bob = user("bob");

    store.request_access(DOC, &bob).await.unwrap();
    store.request_access("doc:free", &bob).await.unwrap();
    let events = events(&mut rx, 2).await;
    assert_eq!(
        events[0].kind,
        EventKind::AccessRequested { by: bob.clone() }
    );
    assert_eq!(events[0].lock, Some(lock.clone()));
    assert_eq!(events[1].resource, "doc:free");
    assert_eq!(events[1].lock, None);
    assert_eq!(store.get(DOC).await.unwrap(), Some(lock));
    assert_eq!(store.get("doc:free").await.unwrap(), None);
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
    const CLAIMANTS: usize = 200;
    let redis = RedisServer::start();
    let mut instances = Vec::new();
    for _ in 0..3 {
        instances.push(open(&redis.url(), true).await);
    }
    let mut rxs: Vec<_> = instances.iter().map(|s| s.subscribe()).collect();
    let start = Arc::new(Barrier::new(CLAIMANTS));

    let tasks: Vec<_> = (0..CLAIMANTS)
        .map(|i| {
            let store = Arc::clone(&instances[i % instances.len()]);
            let start = Arc::clone(&start);
            tokio::spawn(async move {
                let req = safe_on("doc:race", &user(&format!("user{i}")), LEASE);
                start.wait().await;
                store.claim(&req).await.unwrap()
            })
        })
        .collect();
    let mut outcomes = Vec::with_capacity(CLAIMANTS);
    for task in tasks {
        outcomes.push(task.await.unwrap());
    }

    let winners: Vec<_> = outcomes
        .iter()
        .filter_map(|o| match o {
            ClaimOutcome::Claimed(lock) => Some(lock.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(winners.len(), 1, "winners: {winners:?}");
    let winner = &winners[0];
    let losers = outcomes
        .iter()
        .filter(|o| matches!(o, ClaimOutcome::Held(lock) if lock.holder == winner.holder && lock.fence == winner.fence))
        .count();
    assert_eq!(losers, CLAIMANTS - 1);

    // Every instance hears of the one claim, once.
    for rx in &mut rxs {
        let events = events(rx, 1).await;
        assert_eq!(events[0].kind, EventKind::Claimed);
        assert_eq!(events[0].lock.as_ref(), Some(winner));
    }
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

    redis.kill();
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

#[path = "support/claim_limits.rs"]
mod contract;

mod claim_limits {
    //! The shared claim-cap contract (`support/claim_limits.rs`) on Redis, where the count
    //! comes from the per-user held index rather than from the locks themselves.

    use std::time::Duration;

    use store::LockStore;

    use super::{open, RedisServer};

    use super::contract;

    const SHORT: Duration = Duration::from_millis(400);

    #[tokio::test]
    async fn the_cap_refuses_the_next_distinct_resource() {
        let redis = RedisServer::start();
        let store = open(&redis.url(), false).await;
        contract::the_cap_refuses_the_next_distinct_resource(&*store).await;
    }

    #[tokio::test]
    async fn releases_free_a_slot() {
        let redis = RedisServer::start();
        let store = open(&redis.url(), false).await;
        contract::releases_free_a_slot(&*store).await;
    }

    #[tokio::test]
    async fn an_expired_lease_frees_a_slot() {
        let redis = RedisServer::start();
        let store = open(&redis.url(), false).await;
        contract::an_expired_lease_frees_a_slot(&*store, SHORT).await;
    }

    #[tokio::test]
    async fn an_expiry_the_reaper_announced_frees_a_slot() {
        let redis = RedisServer::start();
        let store = open(&redis.url(), true).await;
        contract::an_expired_lease_frees_a_slot(&*store, SHORT).await;
    }

    #[tokio::test]
    async fn renewed_locks_keep_counting() {
        let redis = RedisServer::start();
        let store = open(&redis.url(), false).await;
        contract::renewed_locks_keep_counting(&*store, SHORT).await;
    }

    #[tokio::test]
    async fn a_takeover_moves_the_slot() {
        let redis = RedisServer::start();
        let store = open(&redis.url(), false).await;
        contract::a_takeover_moves_the_slot(&*store).await;
    }

    #[tokio::test]
    async fn tabs_share_their_users_cap() {
        let redis = RedisServer::start();
        let store = open(&redis.url(), false).await;
        contract::tabs_share_their_users_cap(&*store).await;
    }

    #[tokio::test]
    async fn each_claim_brings_its_own_cap() {
        let redis = RedisServer::start();
        let store = open(&redis.url(), false).await;
        contract::each_claim_brings_its_own_cap(&*store).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_claims_stop_at_the_cap() {
        let redis = RedisServer::start();
        let store = open(&redis.url(), false).await;
        contract::concurrent_claims_stop_at_the_cap(store).await;
    }

    #[tokio::test]
    async fn the_held_index_empties_when_its_locks_go() {
        let redis = RedisServer::start();
        let store = open(&redis.url(), false).await;
        contract::releases_free_a_slot(&*store).await;
        for doc in ["doc:c", "doc:d"] {
            store
                .release(doc, "alice", store::ReleaseReason::Client)
                .await
                .unwrap();
        }
        assert_eq!(redis.command("EXISTS latch:held:alice").trim(), ":0");
    }
}
