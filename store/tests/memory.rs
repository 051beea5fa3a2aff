//! Behaviour of `MemoryLockStore` through the `LockStore` trait, the way the proxy and the
//! control plane use it.

use std::sync::Arc;
use std::time::Duration;

use store::{
    ClaimOutcome, ClaimRequest, EventKind, Holder, Lock, LockEvent, LockStore, MemoryLockStore,
    ReleaseReason, Takeover, DISPLACED_TTL,
};
use tokio::sync::broadcast::{self, error::TryRecvError};
use tokio::sync::Barrier;
use tokio::time::Instant;

const LEASE: Duration = Duration::from_secs(30);
const DOC: &str = "doc:1";

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

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap()
}

/// Lets spawned tasks (the reaper) run without moving the paused clock.
async fn settle() {
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
}

#[tokio::test]
async fn claim_renew_held_release() {
    let store = MemoryLockStore::new();
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
async fn a_renewing_claim_never_shortens_the_lease() {
    let store = MemoryLockStore::new();
    let alice = user("alice");
    let lock = claimed(store.claim(&safe(&alice)).await.unwrap());
    let short = safe_on(DOC, &alice, Duration::from_secs(5));
    assert_eq!(
        renewed(store.claim(&short).await.unwrap()).expires,
        lock.expires
    );
}

#[tokio::test]
async fn session_owner_is_per_tab_and_can_be_moved() {
    let store = MemoryLockStore::new();
    let tab1 = tab("alice", "t1");
    let tab2 = tab("alice", "t2");

    let first = claimed(store.claim(&safe(&tab1)).await.unwrap());
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
    let store = MemoryLockStore::new();
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
async fn takeover_by_the_current_holder_is_a_renewal() {
    let store = MemoryLockStore::new();
    let alice = user("alice");
    let lock = claimed(store.claim(&safe(&alice)).await.unwrap());
    let mut rx = store.subscribe();

    let again = store.takeover(&safe(&alice)).await.unwrap();
    assert_eq!(again.previous, None);
    assert_eq!(again.lock.fence, lock.fence);
    assert!(drain(&mut rx).is_empty());
    assert_eq!(
        renewed(store.claim(&unsafe_(&alice)).await.unwrap()).fence,
        lock.fence
    );
}

#[tokio::test]
async fn takeover_marks_the_loser_displaced_until_a_safe_claim() {
    let store = MemoryLockStore::new();
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
    let store = MemoryLockStore::new();
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
    assert_eq!(
        displaced(store.claim(&unsafe_(&alice)).await.unwrap()),
        None
    );
    assert!(drain(&mut rx).is_empty());
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
async fn operations_notice_lapsed_leases_without_the_reaper() {
    let store = MemoryLockStore::new();
    let mut rx = store.subscribe();
    let alice = user("alice");
    let bob = user("bob");

    let alices = claimed(
        store
            .claim(&safe_on(DOC, &alice, Duration::from_secs(10)))
            .await
            .unwrap(),
    );
    tokio::time::advance(Duration::from_secs(10)).await;
    let bobs = claimed(store.claim(&safe(&bob)).await.unwrap());
    assert!(bobs.fence > alices.fence);

    let events = drain(&mut rx);
    let kinds: Vec<_> = events.iter().map(|e| e.kind.clone()).collect();
    assert_eq!(
        kinds,
        [
            EventKind::Claimed,
            EventKind::Released {
                reason: ReleaseReason::Expired
            },
            EventKind::Claimed
        ]
    );
    assert_eq!(events[1].previous, Some(alices));
    assert_eq!(events[2].lock, Some(bobs.clone()));
    assert_eq!(
        displaced(store.claim(&unsafe_(&alice)).await.unwrap()),
        Some(bobs)
    );
}

#[tokio::test(start_paused = true)]
async fn renew_after_lapse_does_not_resurrect() {
    let store = MemoryLockStore::new();
    let mut rx = store.subscribe();
    claimed(store.claim(&safe(&user("alice"))).await.unwrap());

    tokio::time::advance(LEASE).await;
    assert_eq!(store.renew(DOC, "alice", LEASE).await.unwrap(), None);
    assert_eq!(store.get(DOC).await.unwrap(), None);
    assert_eq!(store.renew(DOC, "alice", LEASE).await.unwrap(), None);

    let kinds: Vec<_> = drain(&mut rx).into_iter().map(|e| e.kind).collect();
    assert_eq!(
        kinds,
        [
            EventKind::Claimed,
            EventKind::Released {
                reason: ReleaseReason::Expired
            }
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn list_is_sorted_and_skips_lapsed_locks() {
    let store = MemoryLockStore::new();
    let alice = user("alice");
    store.claim(&safe_on("doc:b", &alice, LEASE)).await.unwrap();
    store
        .claim(&safe_on("doc:c", &alice, Duration::from_secs(1)))
        .await
        .unwrap();
    store.claim(&safe_on("doc:a", &alice, LEASE)).await.unwrap();
    let mut rx = store.subscribe();

    tokio::time::advance(Duration::from_secs(1)).await;
    let resources: Vec<_> = store
        .list()
        .await
        .unwrap()
        .into_iter()
        .map(|l| l.resource)
        .collect();
    assert_eq!(resources, ["doc:a", "doc:b"]);
    let events = drain(&mut rx);
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].resource, "doc:c");
}

#[tokio::test]
async fn force_release_emits_forced_and_marks_displaced() {
    let store = MemoryLockStore::new();
    let alice = user("alice");
    let lock = claimed(store.claim(&safe(&alice)).await.unwrap());
    let mut rx = store.subscribe();

    assert_eq!(
        store.force_release(DOC, "root").await.unwrap(),
        Some(lock.clone())
    );
    let events = drain(&mut rx);
    assert_eq!(events.len(), 1);
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
    assert!(drain(&mut rx).is_empty());
    assert_eq!(
        displaced(store.claim(&unsafe_(&alice)).await.unwrap()),
        None
    );
    claimed(store.claim(&safe(&alice)).await.unwrap());
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

#[tokio::test]
async fn every_change_emits_one_event_with_lock_and_previous() {
    let store = MemoryLockStore::new();
    let mut rx = store.subscribe();
    let alice = user("alice");
    let bob = user("bob");
    let carol = user("carol");
    let dave = user("dave");

    let alices = claimed(store.claim(&safe(&alice)).await.unwrap());
    store.claim(&safe(&alice)).await.unwrap();
    store.renew(DOC, "alice", LEASE).await.unwrap().unwrap();
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

    let events = drain(&mut rx);
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
                Some(alices.clone())
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
    let store = MemoryLockStore::new();
    let lock = claimed(store.claim(&safe(&user("alice"))).await.unwrap());
    let mut rx = store.subscribe();
    let bob = user("bob");

    store.request_access(DOC, &bob).await.unwrap();
    store.request_access("doc:free", &bob).await.unwrap();
    let events = drain(&mut rx);
    assert_eq!(events.len(), 2);
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

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_claimants_get_exactly_one_winner() {
    const CLAIMANTS: usize = 200;
    let store = MemoryLockStore::new();
    let mut rx = store.subscribe();
    let start = Arc::new(Barrier::new(CLAIMANTS));

    let tasks: Vec<_> = (0..CLAIMANTS)
        .map(|i| {
            let store = Arc::clone(&store);
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
        .filter(|o| matches!(o, ClaimOutcome::Held(lock) if lock == winner))
        .count();
    assert_eq!(losers, CLAIMANTS - 1);

    let events = drain(&mut rx);
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].kind, EventKind::Claimed);
    assert_eq!(events[0].lock.as_ref(), Some(winner));
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

#[path = "support/claim_limits.rs"]
mod contract;

mod claim_limits {
    //! The shared claim-cap contract (`support/claim_limits.rs`) on the memory store.

    use std::time::Duration;

    use store::MemoryLockStore;

    use super::contract;

    const SHORT: Duration = Duration::from_secs(5);

    #[tokio::test(start_paused = true)]
    async fn the_cap_refuses_the_next_distinct_resource() {
        contract::the_cap_refuses_the_next_distinct_resource(&*MemoryLockStore::new()).await;
    }

    #[tokio::test(start_paused = true)]
    async fn releases_free_a_slot() {
        contract::releases_free_a_slot(&*MemoryLockStore::new()).await;
    }

    #[tokio::test(start_paused = true)]
    async fn an_expired_lease_frees_a_slot() {
        contract::an_expired_lease_frees_a_slot(&*MemoryLockStore::new(), SHORT).await;
    }

    #[tokio::test(start_paused = true)]
    async fn renewed_locks_keep_counting() {
        contract::renewed_locks_keep_counting(&*MemoryLockStore::new(), SHORT).await;
    }

    #[tokio::test(start_paused = true)]
    async fn a_takeover_moves_the_slot() {
        contract::a_takeover_moves_the_slot(&*MemoryLockStore::new()).await;
    }

    #[tokio::test(start_paused = true)]
    async fn tabs_share_their_users_cap() {
        contract::tabs_share_their_users_cap(&*MemoryLockStore::new()).await;
    }

    #[tokio::test(start_paused = true)]
    async fn each_claim_brings_its_own_cap() {
        contract::each_claim_brings_its_own_cap(&*MemoryLockStore::new()).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_claims_stop_at_the_cap() {
        contract::concurrent_claims_stop_at_the_cap(MemoryLockStore::new()).await;
    }
}
