//! Request-shape summaries (`LockStore::shapes_put`/`shapes`): each proxy instance publishes
//! its own, the control plane reads every live one. Each case takes a fresh, empty store.

use std::sync::Arc;
use std::time::Duration;

use store::LockStore;

use super::Timing;

async fn sorted(store: &dyn LockStore, max_age: Duration) -> Vec<(String, String)> {
    let mut all = store.shapes(max_age).await.expect("shapes");
    all.sort();
    all
}

pub async fn each_instance_keeps_its_latest_summary(store: Arc<dyn LockStore>, _: Timing) {
    let hour = Duration::from_secs(3600);
    assert!(sorted(&*store, hour).await.is_empty());
    store.shapes_put("a", "[1]", hour).await.expect("put");
    store.shapes_put("b", "[2]", hour).await.expect("put");
    store
        .shapes_put("a", "[3]\nwith a newline", hour)
        .await
        .expect("put");
    assert_eq!(
        sorted(&*store, hour).await,
        [
            ("a".to_owned(), "[3]\nwith a newline".to_owned()),
            ("b".to_owned(), "[2]".to_owned())
        ]
    );
}

pub async fn summaries_older_than_the_age_asked_for_are_dropped(
    store: Arc<dyn LockStore>,
    _: Timing,
) {
    let hour = Duration::from_secs(3600);
    store.shapes_put("gone", "[1]", hour).await.expect("put");
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    store.shapes_put("live", "[2]", hour).await.expect("put");
    assert_eq!(
        sorted(&*store, Duration::from_secs(1)).await,
        [("live".to_owned(), "[2]".to_owned())]
    );
    // Dropped, not only hidden.
    assert_eq!(sorted(&*store, Duration::from_secs(3600)).await.len(), 1);
}

pub async fn a_summary_not_replaced_within_its_keep_is_dropped_by_the_next_publication(
    store: Arc<dyn LockStore>,
    _: Timing,
) {
    let keep = Duration::from_secs(1);
    store.shapes_put("stopped", "[1]", keep).await.expect("put");
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    store.shapes_put("running", "[2]", keep).await.expect("put");
    // Gone for a reader that accepts any age: dropped by the publication, not by the read.
    assert_eq!(
        sorted(&*store, Duration::from_secs(3600)).await,
        [("running".to_owned(), "[2]".to_owned())]
    );
}
