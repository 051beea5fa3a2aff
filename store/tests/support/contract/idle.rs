//! Idle holders: `touch` records the holder's activity, `release_idle` releases only a holder
//! with no activity since the caller's check.

use std::sync::Arc;
use std::time::Duration;

use store::{EventKind, LockStore, ReleaseReason};

use super::{claimed, next_event, safe, unsafe_, user, Timing, DOC};

/// A claim starts `active` at `since`; a touch by the holder moves it, by anyone else not.
pub async fn touch_records_the_holders_activity(store: Arc<dyn LockStore>, _: Timing) {
    let alice = user("alice");
    let mut rx = store.subscribe();
    let lock = claimed(store.claim(&safe(&alice)).await.unwrap());
    assert_eq!(lock.active, lock.since);
    assert_eq!(next_event(&mut rx).await.kind, EventKind::Claimed);

    tokio::time::sleep(Duration::from_millis(20)).await;
    assert_eq!(store.touch(DOC, "bob").await.unwrap(), None);
    let touched = store.touch(DOC, "alice").await.unwrap().unwrap();
    assert!(touched.active > lock.active);
    assert_eq!(touched.fence, lock.fence);
    assert_eq!(
        store.get(DOC).await.unwrap().map(|l| l.active),
        Some(touched.active)
    );
    assert_eq!(store.touch("doc:2", "alice").await.unwrap(), None);
    super::assert_quiet(&mut rx).await;
}

/// `release_idle` releases with `Idle` when the holder was not active since the check; the
/// release is voluntary, so the owner may write again at once, and another user may claim.
pub async fn release_idle_releases_a_holder_idle_since_the_check(
    store: Arc<dyn LockStore>,
    _: Timing,
) {
    let alice = user("alice");
    let mut rx = store.subscribe();
    let lock = claimed(store.claim(&safe(&alice)).await.unwrap());
    assert_eq!(next_event(&mut rx).await.kind, EventKind::Claimed);

    // Active exactly at the check: not idle.
    assert_eq!(
        store.release_idle(DOC, "alice", lock.active).await.unwrap(),
        None
    );
    assert_eq!(
        store
            .release_idle(DOC, "bob", lock.active + 1)
            .await
            .unwrap(),
        None
    );
    let released = store
        .release_idle(DOC, "alice", lock.active + 1)
        .await
        .unwrap();
    assert_eq!(released.map(|l| l.fence), Some(lock.fence));
    let event = next_event(&mut rx).await;
    assert_eq!(
        event.kind,
        EventKind::Released {
            reason: ReleaseReason::Idle
        }
    );
    assert_eq!(store.get(DOC).await.unwrap(), None);
    claimed(store.claim(&safe(&user("bob"))).await.unwrap());
    store
        .release(DOC, "bob", ReleaseReason::Client)
        .await
        .unwrap()
        .unwrap();
    claimed(store.claim(&unsafe_(&alice)).await.unwrap());
}

/// Activity reported after the caller looked (on any instance) wins over its release.
pub async fn activity_since_the_check_wins(store: Arc<dyn LockStore>, _: Timing) {
    let alice = user("alice");
    let lock = claimed(store.claim(&safe(&alice)).await.unwrap());
    // The checker saw `lock.active` and decided it is idle past it...
    tokio::time::sleep(Duration::from_millis(20)).await;
    // ...but the holder did something meanwhile.
    let touched = store.touch(DOC, "alice").await.unwrap().unwrap();
    assert!(touched.active > lock.active);
    assert_eq!(
        store
            .release_idle(DOC, "alice", lock.active + 1)
            .await
            .unwrap(),
        None
    );
    assert_eq!(store.get(DOC).await.unwrap().map(|l| l.holder), Some(alice));
}
