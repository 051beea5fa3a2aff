//! Behaviour of `MemoryLockStore` through the `LockStore` trait, the way the proxy and the
//! control plane use it: the shared contract (`support/contract`) on a paused clock, plus
//! what only a paused clock can show (exact deadlines, a day-long marker, the reaper's timer).

mod support;

use std::sync::Arc;
use std::time::Duration;

use store::{EventKind, LockEvent, LockStore, MemoryLockStore, ReleaseReason, DISPLACED_TTL};
use support::contract::{
    claimed, displaced, lock_store_contract, safe, safe_on, unsafe_, user, Timing, DOC, LEASE,
};
use tokio::sync::broadcast::{self, error::TryRecvError};
use tokio::time::Instant;

lock_store_contract! {
    test: #[tokio::test(start_paused = true)],
    timing: Timing {
        short: Duration::from_secs(5),
        past: Duration::ZERO,
    },
    fresh: async { ((), MemoryLockStore::new()) },
}

/// Every event already sent, without waiting.
fn drain(rx: &mut broadcast::Receiver<LockEvent>) -> Vec<LockEvent> {
    let mut events = Vec::new();
    loop {
        match rx.try_recv() {
            Ok(event) => events.push(event),
            Err(TryRecvError::Empty) => return events,
            Err(err) => panic!("event stream broke: {err}"),
        }
    }
}

/// Lets spawned tasks (the reaper) run without moving the paused clock.
async fn settle() {
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
}

#[tokio::test(start_paused = true)]
async fn renew_sets_the_lease_and_may_shorten_it() {
    let store = MemoryLockStore::new();
    let lock = claimed(store.claim(&safe(&user("alice"))).await.unwrap());

    tokio::time::advance(Duration::from_secs(10)).await;
    let longer = store.renew(DOC, "alice", LEASE).await.unwrap().unwrap();
    assert_eq!(longer.expires, lock.since + 40_000);
    assert_eq!(longer.since, lock.since);
    assert_eq!(longer.fence, lock.fence);

    let grace = store
        .renew(DOC, "alice", Duration::from_secs(5))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(grace.expires, lock.since + 15_000);

    assert_eq!(store.renew(DOC, "bob", LEASE).await.unwrap(), None);
    assert_eq!(
        store.get(DOC).await.unwrap().map(|l| l.expires),
        Some(grace.expires)
    );
}

#[tokio::test(start_paused = true)]
async fn lease_expires_without_traffic() {
    let store = MemoryLockStore::new();
    tokio::spawn(Arc::clone(&store).run_reaper());
    let mut rx = store.subscribe();
    let alice = user("alice");

    let lock = claimed(store.claim(&safe(&alice)).await.unwrap());
    assert_eq!(rx.recv().await.unwrap().kind, EventKind::Claimed);

    tokio::time::advance(LEASE - Duration::from_millis(1)).await;
    settle().await;
    assert_eq!(rx.try_recv().unwrap_err(), TryRecvError::Empty);

    tokio::time::advance(Duration::from_millis(1)).await;
    let event = rx.recv().await.unwrap();
    assert_eq!(
        event,
        LockEvent {
            kind: EventKind::Released {
                reason: ReleaseReason::Expired
            },
            resource: DOC.to_owned(),
            lock: None,
            previous: Some(lock.clone()),
            at: lock.expires,
        }
    );
    assert_eq!(store.get(DOC).await.unwrap(), None);
    assert!(drain(&mut rx).is_empty());
    // Nobody held it since: the owner's next write simply claims again.
    claimed(store.claim(&unsafe_(&alice)).await.unwrap());
}

#[tokio::test(start_paused = true)]
async fn a_shortened_lease_wakes_the_reaper_early() {
    let store = MemoryLockStore::new();
    tokio::spawn(Arc::clone(&store).run_reaper());
    let lock = claimed(store.claim(&safe(&user("alice"))).await.unwrap());
    settle().await;
    let mut rx = store.subscribe();

    store
        .renew(DOC, "alice", Duration::from_secs(5))
        .await
        .unwrap()
        .unwrap();
    let event = rx.recv().await.unwrap();
    assert_eq!(
        event.kind,
        EventKind::Released {
            reason: ReleaseReason::Expired
        }
    );
    assert_eq!(event.at, lock.since + 5_000);
}

#[tokio::test]
async fn reaper_expires_promptly_in_real_time() {
    let store = MemoryLockStore::new();
    tokio::spawn(Arc::clone(&store).run_reaper());
    let mut rx = store.subscribe();
    let lease = Duration::from_millis(300);

    let started = Instant::now();
    claimed(
        store
            .claim(&safe_on(DOC, &user("alice"), lease))
            .await
            .unwrap(),
    );
    let event = tokio::time::timeout(Duration::from_secs(3), async {
        loop {
            let event = rx.recv().await.unwrap();
            if matches!(event.kind, EventKind::Released { .. }) {
                return event;
            }
        }
    })
    .await
    .expect("no expiry event");
    let elapsed = started.elapsed();
    assert_eq!(
        event.kind,
        EventKind::Released {
            reason: ReleaseReason::Expired
        }
    );
    assert!(elapsed >= lease, "expired early, after {elapsed:?}");
    assert!(
        elapsed < lease + Duration::from_millis(400),
        "expired late, after {elapsed:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn displaced_markers_last_a_day() {
    let store = MemoryLockStore::new();
    tokio::spawn(Arc::clone(&store).run_reaper());
    let alice = user("alice");
    claimed(store.claim(&safe(&alice)).await.unwrap());
    store.takeover(&safe(&user("bob"))).await.unwrap();

    tokio::time::advance(DISPLACED_TTL - Duration::from_secs(1)).await;
    settle().await;
    assert_eq!(
        displaced(store.claim(&unsafe_(&alice)).await.unwrap()),
        None
    );

    tokio::time::advance(Duration::from_secs(1)).await;
    settle().await;
    claimed(store.claim(&unsafe_(&alice)).await.unwrap());
}

#[tokio::test(start_paused = true)]
async fn reaper_stops_once_the_store_is_dropped() {
    let store = MemoryLockStore::new();
    let reaper = tokio::spawn(Arc::clone(&store).run_reaper());
    settle().await;
    drop(store);
    tokio::time::timeout(Duration::from_secs(60), reaper)
        .await
        .expect("reaper still running")
        .unwrap();
}
