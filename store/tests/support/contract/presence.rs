//! Presence: which banners (page loads, by tab id) are open on a resource, across instances,
//! with a time-to-live the banner socket refreshes.

use std::sync::Arc;
use std::time::Duration;

use store::{EventKind, LockStore, Present};

use super::{assert_quiet, claimed, next_event, safe, tab, user, Timing, DOC};

const TTL: Duration = Duration::from_secs(60);

fn present(tab_id: &str, holder: &store::Holder) -> Present {
    Present {
        tab: tab_id.to_owned(),
        holder: holder.clone(),
    }
}

/// Joins list the tab and emit `PresenceChanged` with the current lock; a repeated join only
/// refreshes; a leave emits once.
pub async fn joins_and_leaves_change_the_set_and_emit(store: Arc<dyn LockStore>, _: Timing) {
    let alice = user("alice");
    let carol = user("carol");
    let mut rx = store.subscribe();
    let lock = claimed(store.claim(&safe(&alice)).await.unwrap());
    assert_eq!(next_event(&mut rx).await.kind, EventKind::Claimed);

    store.presence_join(DOC, "t2", &carol, TTL).await.unwrap();
    let event = next_event(&mut rx).await;
    assert_eq!(event.kind, EventKind::PresenceChanged);
    assert_eq!(event.resource, DOC);
    assert_eq!(event.lock, Some(lock.clone()));
    assert_eq!(event.previous, None);

    store.presence_join(DOC, "t1", &alice, TTL).await.unwrap();
    assert_eq!(next_event(&mut rx).await.kind, EventKind::PresenceChanged);
    assert_eq!(
        store.presence(DOC).await.unwrap(),
        [present("t1", &alice), present("t2", &carol)]
    );

    // Refreshing a tab changes nothing anyone sees.
    store.presence_join(DOC, "t1", &alice, TTL).await.unwrap();
    assert_quiet(&mut rx).await;

    store.presence_leave(DOC, "t1").await.unwrap();
    assert_eq!(next_event(&mut rx).await.kind, EventKind::PresenceChanged);
    assert_eq!(store.presence(DOC).await.unwrap(), [present("t2", &carol)]);
    store.presence_leave(DOC, "t1").await.unwrap();
    assert_quiet(&mut rx).await;
    assert!(store.presence("doc:2").await.unwrap().is_empty());
}

/// A tab that is not joined again within its time-to-live is no longer present.
pub async fn presence_lapses_after_its_ttl(store: Arc<dyn LockStore>, timing: Timing) {
    let alice = tab("alice", "s1");
    store
        .presence_join(DOC, "t1", &alice, timing.short)
        .await
        .unwrap();
    store.presence_join(DOC, "t2", &alice, TTL).await.unwrap();
    assert_eq!(store.presence(DOC).await.unwrap().len(), 2);
    tokio::time::sleep(timing.short + timing.past).await;
    assert_eq!(store.presence(DOC).await.unwrap(), [present("t2", &alice)]);

    // A refresh before the deadline keeps it.
    store
        .presence_join(DOC, "t3", &alice, timing.short)
        .await
        .unwrap();
    tokio::time::sleep(timing.short / 2).await;
    store
        .presence_join(DOC, "t3", &alice, timing.short)
        .await
        .unwrap();
    tokio::time::sleep(timing.short / 2 + timing.past).await;
    let tabs: Vec<String> = store
        .presence(DOC)
        .await
        .unwrap()
        .into_iter()
        .map(|p| p.tab)
        .collect();
    assert_eq!(tabs, ["t2", "t3"]);
}
