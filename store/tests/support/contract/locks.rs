//! Claim, renew, release, takeover, the displaced marker, fences, lapsed leases, listing and
//! the event stream, as every `LockStore` keeps them. Each case takes a fresh, empty store.

use std::sync::Arc;

use store::{ClaimOutcome, EventKind, ForceReleased, LockStore, ReleaseReason, Takeover};
use tokio::sync::Barrier;

use super::{
    assert_quiet, claimed, displaced, events, expired, held, millis, next_event, renewed, safe,
    safe_on, tab, unsafe_, user, Timing, DOC, LEASE,
};

pub async fn claim_renew_held_release(store: Arc<dyn LockStore>, _: Timing) {
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

/// A claim or takeover by the holder with a shorter lease keeps the deadline it had.
pub async fn a_renewing_claim_never_shortens_the_lease(store: Arc<dyn LockStore>, timing: Timing) {
    let alice = user("alice");
    let lock = claimed(store.claim(&safe(&alice)).await.unwrap());
    let short = safe_on(DOC, &alice, timing.short);
    assert_eq!(
        renewed(store.claim(&short).await.unwrap()).expires,
        lock.expires
    );
    let takeover = store.takeover(&short).await.unwrap();
    assert_eq!(takeover.previous, None);
    assert_eq!(takeover.lock.expires, lock.expires);
}

pub async fn session_owner_is_per_tab_and_can_be_moved(store: Arc<dyn LockStore>, _: Timing) {
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

pub async fn fence_strictly_increases_across_claim_release_claim_takeover(
    store: Arc<dyn LockStore>,
    _: Timing,
) {
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

pub async fn takeover_by_the_current_holder_is_a_renewal(store: Arc<dyn LockStore>, _: Timing) {
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

pub async fn takeover_marks_the_loser_displaced_until_a_safe_claim(
    store: Arc<dyn LockStore>,
    _: Timing,
) {
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

pub async fn voluntary_releases_do_not_mark_displaced(store: Arc<dyn LockStore>, _: Timing) {
    let alice = user("alice");
    for reason in [
        ReleaseReason::Client,
        ReleaseReason::Grace,
        ReleaseReason::Idle,
    ] {
        claimed(store.claim(&unsafe_(&alice)).await.unwrap());
        store.release(DOC, "alice", reason).await.unwrap().unwrap();
        claimed(store.claim(&unsafe_(&alice)).await.unwrap());
        store
            .release(DOC, "alice", ReleaseReason::Client)
            .await
            .unwrap()
            .unwrap();
    }
    // Every other reason given to release does displace, once someone else held it since.
    claimed(store.claim(&unsafe_(&alice)).await.unwrap());
    store
        .release(DOC, "alice", ReleaseReason::TakenOver)
        .await
        .unwrap()
        .unwrap();
    claimed(store.claim(&safe(&user("bob"))).await.unwrap());
    store
        .release(DOC, "bob", ReleaseReason::Client)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        displaced(store.claim(&unsafe_(&alice)).await.unwrap()),
        None
    );
}

/// With no reaper running, the next operation on a lapsed lock announces its expiry first.
pub async fn operations_notice_lapsed_leases_without_the_reaper(
    store: Arc<dyn LockStore>,
    timing: Timing,
) {
    let mut rx = store.subscribe();
    let alice = user("alice");
    let bob = user("bob");

    let alices = claimed(
        store
            .claim(&safe_on(DOC, &alice, timing.short))
            .await
            .unwrap(),
    );
    tokio::time::sleep(timing.short + timing.past).await;
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

pub async fn renew_after_lapse_does_not_resurrect(store: Arc<dyn LockStore>, timing: Timing) {
    let mut rx = store.subscribe();
    claimed(
        store
            .claim(&safe_on(DOC, &user("alice"), timing.short))
            .await
            .unwrap(),
    );

    tokio::time::sleep(timing.short + timing.past).await;
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

/// Claimed out of order, and enough of them to land in many of a store's buckets.
pub async fn list_is_sorted_and_skips_lapsed_locks(store: Arc<dyn LockStore>, timing: Timing) {
    let alice = user("alice");
    let mut rx = store.subscribe();
    let mut expected = Vec::new();
    for i in (0..40).rev() {
        let resource = format!("doc:{i:02}");
        store
            .claim(&safe_on(&resource, &alice, LEASE))
            .await
            .unwrap();
        if i == 20 {
            store
                .claim(&safe_on("doc:short", &alice, timing.short))
                .await
                .unwrap();
        }
        expected.push(resource);
    }
    expected.reverse();
    for _ in 0..41 {
        assert_eq!(next_event(&mut rx).await.kind, EventKind::Claimed);
    }

    tokio::time::sleep(timing.short + timing.past).await;
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

pub async fn force_release_emits_forced_and_marks_displaced(store: Arc<dyn LockStore>, _: Timing) {
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
    // The marker refuses a stale write once someone else has held the resource.
    claimed(store.claim(&safe(&user("bob"))).await.unwrap());
    store.force_release(DOC, "root").await.unwrap().unwrap();
    assert_eq!(
        displaced(store.claim(&unsafe_(&alice)).await.unwrap()),
        None
    );
    claimed(store.claim(&safe(&alice)).await.unwrap());
}

pub async fn a_conditional_force_release_leaves_a_lock_that_changed_hands(
    store: Arc<dyn LockStore>,
    _: Timing,
) {
    let alice = user("alice");
    let bob = user("bob");
    let mut rx = store.subscribe();
    let first = claimed(store.claim(&safe(&alice)).await.unwrap());
    assert_eq!(
        store
            .force_release_if(DOC, "root", Some(first.fence))
            .await
            .unwrap(),
        ForceReleased::Released(first.clone())
    );
    // Bob claims it next: a release conditional on Alice's fence changes nothing.
    let second = claimed(store.claim(&safe(&bob)).await.unwrap());
    assert!(second.fence > first.fence);
    let _ = events(&mut rx, 3).await;
    assert_eq!(
        store
            .force_release_if(DOC, "root", Some(first.fence))
            .await
            .unwrap(),
        ForceReleased::Changed(second.clone())
    );
    assert_quiet(&mut rx).await;
    assert_eq!(store.get(DOC).await.unwrap(), Some(second.clone()));
    // Without a fence, or with Bob's, it goes.
    assert_eq!(
        store
            .force_release_if(DOC, "root", Some(second.fence))
            .await
            .unwrap(),
        ForceReleased::Released(second)
    );
    assert_eq!(
        store
            .force_release_if(DOC, "root", Some(first.fence))
            .await
            .unwrap(),
        ForceReleased::Free
    );
    let third = claimed(store.claim(&safe(&alice)).await.unwrap());
    assert_eq!(
        store.force_release_if(DOC, "root", None).await.unwrap(),
        ForceReleased::Released(third)
    );
}

pub async fn every_change_emits_one_event_with_lock_and_previous(
    store: Arc<dyn LockStore>,
    _: Timing,
) {
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

pub async fn request_access_only_emits_an_event(store: Arc<dyn LockStore>, _: Timing) {
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

pub async fn concurrent_claimants_get_exactly_one_winner(store: Arc<dyn LockStore>, _: Timing) {
    one_winner_among(vec![store]).await;
}

/// 200 users claim one resource at once, spread over `instances` (several stores on one
/// backend, or one store): exactly one wins, every other is told the winner holds it, and
/// every instance announces the one claim once.
pub async fn one_winner_among(instances: Vec<Arc<dyn LockStore>>) {
    const CLAIMANTS: usize = 200;
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
        .filter(|o| matches!(o, ClaimOutcome::Held(lock) if lock == winner))
        .count();
    assert_eq!(losers, CLAIMANTS - 1);

    for rx in &mut rxs {
        let events = events(rx, 1).await;
        assert_eq!(events[0].kind, EventKind::Claimed);
        assert_eq!(events[0].lock.as_ref(), Some(winner));
    }
}
