//! The cap on claims per user (`ClaimRequest::max_per_user`), as every `LockStore` keeps it.
//! Each case takes a fresh, empty store.

use std::sync::Arc;
use std::time::Duration;

use store::{ClaimOutcome, ClaimRequest, Holder, LockStore, ReleaseReason};

use super::{claimed, renewed, safe_on, tab, user, Timing, LEASE as LONG};

/// A safe claim of `resource` under the per-user cap `max`.
fn capped(resource: &str, holder: &Holder, max: Option<u32>, lease: Duration) -> ClaimRequest {
    ClaimRequest {
        max_per_user: max,
        ..safe_on(resource, holder, lease)
    }
}

async fn claim(store: &dyn LockStore, resource: &str, holder: &Holder, max: u32) -> ClaimOutcome {
    store
        .claim(&capped(resource, holder, Some(max), LONG))
        .await
        .unwrap()
}

fn limited(outcome: ClaimOutcome) -> (Vec<String>, u32) {
    match outcome {
        ClaimOutcome::Limited { held, max } => (held, max),
        other => panic!("expected Limited, got {other:?}"),
    }
}

fn names(names: &[&str]) -> Vec<String> {
    names.iter().map(|s| (*s).to_owned()).collect()
}

/// The (cap+1)-th distinct resource is refused, naming what is held; nothing is claimed.
/// Renewals pass at the cap and past a lowered one; another user, and a resource someone
/// else holds, are answered as before.
pub async fn the_cap_refuses_the_next_distinct_resource(store: Arc<dyn LockStore>, _: Timing) {
    let alice = user("alice");
    for doc in ["doc:c", "doc:a", "doc:b"] {
        claimed(claim(&*store, doc, &alice, 3).await);
    }
    let (held, max) = limited(claim(&*store, "doc:d", &alice, 3).await);
    assert_eq!(held, names(&["doc:a", "doc:b", "doc:c"]));
    assert_eq!(max, 3);
    assert_eq!(store.get("doc:d").await.unwrap(), None);

    let first = renewed(claim(&*store, "doc:a", &alice, 3).await);
    assert_eq!(first.holder, alice);
    renewed(claim(&*store, "doc:b", &alice, 1).await);
    renewed(claim(&*store, "doc:c", &alice, 0).await);
    assert!(store.renew("doc:c", "alice", LONG).await.unwrap().is_some());

    let bob = user("bob");
    claimed(claim(&*store, "doc:d", &bob, 3).await);
    match claim(&*store, "doc:a", &bob, 3).await {
        ClaimOutcome::Held(lock) => assert_eq!(lock.holder, alice),
        other => panic!("expected Held, got {other:?}"),
    }
    // A resource someone else holds says who, not how many the requester has.
    match claim(&*store, "doc:d", &alice, 3).await {
        ClaimOutcome::Held(lock) => assert_eq!(lock.holder, bob),
        other => panic!("expected Held, got {other:?}"),
    }
}

/// Releasing a lock, or an admin's force release, frees its slot at once.
pub async fn releases_free_a_slot(store: Arc<dyn LockStore>, _: Timing) {
    let alice = user("alice");
    claimed(claim(&*store, "doc:a", &alice, 2).await);
    claimed(claim(&*store, "doc:b", &alice, 2).await);
    limited(claim(&*store, "doc:c", &alice, 2).await);

    store
        .release("doc:b", "alice", ReleaseReason::Client)
        .await
        .unwrap()
        .expect("alice held doc:b");
    claimed(claim(&*store, "doc:c", &alice, 2).await);
    let (held, _) = limited(claim(&*store, "doc:d", &alice, 2).await);
    assert_eq!(held, names(&["doc:a", "doc:c"]));

    store
        .force_release("doc:a", "root")
        .await
        .unwrap()
        .expect("alice held doc:a");
    claimed(claim(&*store, "doc:d", &alice, 2).await);
    limited(claim(&*store, "doc:a", &alice, 2).await);
}

/// A lease that ran out stops counting, whether or not anything noticed the expiry.
pub async fn an_expired_lease_frees_a_slot(store: Arc<dyn LockStore>, timing: Timing) {
    let short = timing.short;
    let alice = user("alice");
    claimed(
        store
            .claim(&capped("doc:a", &alice, Some(2), short))
            .await
            .unwrap(),
    );
    claimed(claim(&*store, "doc:b", &alice, 2).await);
    limited(claim(&*store, "doc:c", &alice, 2).await);

    tokio::time::sleep(short + Duration::from_millis(100)).await;
    claimed(claim(&*store, "doc:c", &alice, 2).await);
    let (held, _) = limited(claim(&*store, "doc:d", &alice, 2).await);
    assert_eq!(held, names(&["doc:b", "doc:c"]));
}

/// Locks kept alive by renewals alone keep counting after their first lease would have ended.
pub async fn renewed_locks_keep_counting(store: Arc<dyn LockStore>, timing: Timing) {
    let short = timing.short;
    let alice = user("alice");
    for doc in ["doc:a", "doc:b"] {
        claimed(
            store
                .claim(&capped(doc, &alice, Some(2), short))
                .await
                .unwrap(),
        );
    }
    for _ in 0..3 {
        tokio::time::sleep(short / 2).await;
        for doc in ["doc:a", "doc:b"] {
            assert!(store.renew(doc, "alice", short).await.unwrap().is_some());
        }
    }
    let (held, max) = limited(claim(&*store, "doc:c", &alice, 2).await);
    assert_eq!((held, max), (names(&["doc:a", "doc:b"]), 2));
    // Asked again, the answer holds (a check of old entries left them correct).
    limited(claim(&*store, "doc:c", &alice, 2).await);

    tokio::time::sleep(short + Duration::from_millis(100)).await;
    claimed(claim(&*store, "doc:c", &alice, 2).await);
}

/// A takeover counts the lock for the taker (even past the taker's cap: taking over is a
/// matter of role) and frees the slot of the user who lost it.
pub async fn a_takeover_moves_the_slot(store: Arc<dyn LockStore>, _: Timing) {
    let alice = user("alice");
    let bob = user("bob");
    claimed(claim(&*store, "doc:a", &bob, 1).await);
    limited(claim(&*store, "doc:b", &bob, 1).await);
    claimed(claim(&*store, "doc:x", &alice, 1).await);

    let taken = store
        .takeover(&capped("doc:a", &alice, Some(1), LONG))
        .await
        .unwrap();
    assert_eq!(taken.previous.map(|lock| lock.holder), Some(bob.clone()));

    claimed(claim(&*store, "doc:b", &bob, 1).await);
    let (held, _) = limited(claim(&*store, "doc:y", &alice, 2).await);
    assert_eq!(held, names(&["doc:a", "doc:x"]));
    store
        .release("doc:a", "alice", ReleaseReason::Client)
        .await
        .unwrap()
        .expect("alice took doc:a");
    claimed(claim(&*store, "doc:y", &alice, 2).await);
}

/// The cap is per user id: the tabs of a session-owned rule share it.
pub async fn tabs_share_their_users_cap(store: Arc<dyn LockStore>, _: Timing) {
    claimed(claim(&*store, "doc:a", &tab("alice", "t1"), 2).await);
    claimed(claim(&*store, "doc:b", &tab("alice", "t2"), 2).await);
    let (held, _) = limited(claim(&*store, "doc:c", &tab("alice", "t3"), 2).await);
    assert_eq!(held, names(&["doc:a", "doc:b"]));
    claimed(claim(&*store, "doc:c", &tab("bob", "t1"), 2).await);
}

/// Each claim brings its own cap (a rule's override or the default): locks claimed under no
/// cap still count towards a capped claim, and `Some(0)` refuses every new claim.
pub async fn each_claim_brings_its_own_cap(store: Arc<dyn LockStore>, _: Timing) {
    let alice = user("alice");
    for doc in ["doc:a", "doc:b"] {
        claimed(store.claim(&capped(doc, &alice, None, LONG)).await.unwrap());
    }
    let (held, max) = limited(claim(&*store, "doc:c", &alice, 2).await);
    assert_eq!((held, max), (names(&["doc:a", "doc:b"]), 2));
    claimed(claim(&*store, "doc:c", &alice, 5).await);
    let (held, max) = limited(claim(&*store, "doc:d", &user("bob"), 0).await);
    assert_eq!((held, max), (Vec::new(), 0));
    claimed(
        store
            .claim(&capped("doc:d", &alice, None, LONG))
            .await
            .unwrap(),
    );
}

/// Concurrent claims of one user on different resources end with exactly the cap granted.
pub async fn concurrent_claims_stop_at_the_cap(store: Arc<dyn LockStore>, _: Timing) {
    let alice = user("alice");
    let claims = (0..20).map(|i| {
        let store = Arc::clone(&store);
        let req = capped(&format!("doc:{i}"), &alice, Some(5), LONG);
        tokio::spawn(async move { store.claim(&req).await.unwrap() })
    });
    let mut granted = 0;
    for claim in futures::future::join_all(claims).await {
        match claim.unwrap() {
            ClaimOutcome::Claimed(_) => granted += 1,
            ClaimOutcome::Limited { max, .. } => assert_eq!(max, 5),
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(granted, 5);
    assert_eq!(store.list().await.unwrap().len(), 5);
}
