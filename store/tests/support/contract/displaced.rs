//! Leaving and stale writes: a lock in grace lapses as a voluntary `Grace` release, and a
//! stale write is refused only when the resource's fence moved since the owner lost it.

use std::sync::Arc;

use store::{EventKind, LockStore, ReleaseReason};

use super::{
    claimed, displaced, expired, next_event, renewed, safe, safe_on, unsafe_, user, Timing, DOC,
};

/// `begin_grace` shortens the lease; when it lapses the release is `Grace`, and the owner's
/// next write claims again.
pub async fn a_lapsed_grace_is_a_grace_release_that_does_not_displace(
    store: Arc<dyn LockStore>,
    timing: Timing,
) {
    let alice = user("alice");
    let mut rx = store.subscribe();
    let lock = claimed(store.claim(&safe(&alice)).await.unwrap());
    assert_eq!(next_event(&mut rx).await.kind, EventKind::Claimed);
    assert_eq!(
        store.begin_grace(DOC, "bob", timing.short).await.unwrap(),
        None
    );
    let graced = store
        .begin_grace(DOC, "alice", timing.short)
        .await
        .unwrap()
        .unwrap();
    assert!(graced.expires < lock.expires);
    assert_eq!(graced.fence, lock.fence);

    tokio::time::sleep(timing.short + timing.past).await;
    assert_eq!(store.get(DOC).await.unwrap(), None);
    let event = next_event(&mut rx).await;
    assert_eq!(
        event.kind,
        EventKind::Released {
            reason: ReleaseReason::Grace
        }
    );
    assert_eq!(event.previous.map(|l| l.fence), Some(lock.fence));
    let again = claimed(store.claim(&unsafe_(&alice)).await.unwrap());
    assert!(again.fence > lock.fence);
}

/// A renewal by the owner during grace clears the mark: a later lapse is an expiry again.
pub async fn a_renewal_clears_the_grace_mark(store: Arc<dyn LockStore>, timing: Timing) {
    let alice = user("alice");
    let mut rx = store.subscribe();
    claimed(store.claim(&safe(&alice)).await.unwrap());
    assert_eq!(next_event(&mut rx).await.kind, EventKind::Claimed);
    store
        .begin_grace(DOC, "alice", timing.short)
        .await
        .unwrap()
        .unwrap();
    store
        .renew(DOC, "alice", timing.short)
        .await
        .unwrap()
        .unwrap();
    tokio::time::sleep(timing.short + timing.past).await;
    assert_eq!(store.get(DOC).await.unwrap(), None);
    assert_eq!(next_event(&mut rx).await.kind, expired());

    // A claim by the owner clears it too.
    claimed(store.claim(&safe(&alice)).await.unwrap());
    store
        .begin_grace(DOC, "alice", timing.short)
        .await
        .unwrap()
        .unwrap();
    renewed(
        store
            .claim(&safe_on(DOC, &alice, timing.short))
            .await
            .unwrap(),
    );
    assert_eq!(next_event(&mut rx).await.kind, EventKind::Claimed);
    tokio::time::sleep(timing.short + timing.past).await;
    assert_eq!(store.get(DOC).await.unwrap(), None);
    assert_eq!(next_event(&mut rx).await.kind, expired());
}

/// An owner whose lease expired writes again: granted while nobody else held the resource,
/// refused once someone did (the fence moved), until a safe claim.
pub async fn a_stale_write_is_refused_only_when_the_fence_moved(
    store: Arc<dyn LockStore>,
    timing: Timing,
) {
    let alice = user("alice");
    let bob = user("bob");
    let short = safe_on(DOC, &alice, timing.short);

    let first = claimed(store.claim(&short).await.unwrap());
    tokio::time::sleep(timing.short + timing.past).await;
    let second = claimed(store.claim(&unsafe_(&alice)).await.unwrap());
    assert!(second.fence > first.fence);
    store
        .release(DOC, "alice", ReleaseReason::Client)
        .await
        .unwrap()
        .unwrap();

    claimed(store.claim(&short).await.unwrap());
    tokio::time::sleep(timing.short + timing.past).await;
    claimed(store.claim(&safe(&bob)).await.unwrap());
    store
        .release(DOC, "bob", ReleaseReason::Client)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        displaced(store.claim(&unsafe_(&alice)).await.unwrap()),
        None
    );
    claimed(store.claim(&safe(&alice)).await.unwrap());
}
