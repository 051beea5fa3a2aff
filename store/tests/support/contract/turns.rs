//! Sign-in renewal turns (`auth::RenewalTurns`, which every `LockStore` keeps): one instance
//! takes the turn, the others see it under way and then its outcome, and every turn lapses on
//! its own. Each case takes a fresh, empty store.

use std::sync::Arc;
use std::time::Duration;

use auth::Turn;
use store::{LockStore, MAX_TURN_COOKIE, MAX_TURN_KEY};
use tokio::sync::Barrier;

use super::Timing;

const KEY: &str = "AAAAAAAAAAAAAAAAAAAAAA:1765046400";
const UNDER_WAY: Duration = Duration::from_secs(20);
const KEPT: Duration = Duration::from_secs(60);

async fn take(store: &dyn LockStore, key: &str, ttl: Duration) -> Turn {
    store.take_renewal(key, ttl).await.expect("take_renewal")
}

pub async fn the_first_takes_the_turn_and_the_others_see_it_then_its_cookie(
    store: Arc<dyn LockStore>,
    _: Timing,
) {
    assert_eq!(take(&*store, KEY, UNDER_WAY).await, Turn::Mine);
    assert_eq!(take(&*store, KEY, UNDER_WAY).await, Turn::Pending);
    assert_eq!(take(&*store, "other:1", UNDER_WAY).await, Turn::Mine);
    store
        .finish_renewal(KEY, Some("v1.new-cookie"), KEPT)
        .await
        .expect("finish");
    for _ in 0..2 {
        assert_eq!(
            take(&*store, KEY, UNDER_WAY).await,
            Turn::Renewed("v1.new-cookie".to_owned())
        );
    }
    // Giving back a finished turn leaves its outcome.
    store.give_back_renewal(KEY).await.expect("give back");
    assert_eq!(
        take(&*store, KEY, UNDER_WAY).await,
        Turn::Renewed("v1.new-cookie".to_owned())
    );
}

pub async fn a_refusal_is_seen_as_refused(store: Arc<dyn LockStore>, _: Timing) {
    assert_eq!(take(&*store, KEY, UNDER_WAY).await, Turn::Mine);
    store.finish_renewal(KEY, None, KEPT).await.expect("finish");
    assert_eq!(take(&*store, KEY, UNDER_WAY).await, Turn::Refused);
}

pub async fn a_turn_given_back_goes_to_the_next_taker(store: Arc<dyn LockStore>, _: Timing) {
    assert_eq!(take(&*store, KEY, UNDER_WAY).await, Turn::Mine);
    store.give_back_renewal(KEY).await.expect("give back");
    assert_eq!(take(&*store, KEY, UNDER_WAY).await, Turn::Mine);
    assert_eq!(take(&*store, KEY, UNDER_WAY).await, Turn::Pending);
}

pub async fn turns_under_way_and_finished_lapse_on_their_own(
    store: Arc<dyn LockStore>,
    timing: Timing,
) {
    // A holder that never finishes (its instance died) holds the turn no longer than asked.
    assert_eq!(take(&*store, KEY, timing.short).await, Turn::Mine);
    tokio::time::sleep(timing.short + timing.past).await;
    assert_eq!(take(&*store, KEY, UNDER_WAY).await, Turn::Mine);
    store
        .finish_renewal(KEY, Some("v1.c"), timing.short)
        .await
        .expect("finish");
    assert_eq!(
        take(&*store, KEY, UNDER_WAY).await,
        Turn::Renewed("v1.c".to_owned())
    );
    tokio::time::sleep(timing.short + timing.past).await;
    assert_eq!(take(&*store, KEY, UNDER_WAY).await, Turn::Mine);
}

pub async fn keys_and_cookies_out_of_bounds_are_refused_and_change_nothing(
    store: Arc<dyn LockStore>,
    _: Timing,
) {
    let long_key = "k".repeat(MAX_TURN_KEY + 1);
    assert!(store.take_renewal("", UNDER_WAY).await.is_err());
    assert!(store.take_renewal(&long_key, UNDER_WAY).await.is_err());
    assert!(store.take_renewal("with space", UNDER_WAY).await.is_err());
    assert_eq!(take(&*store, KEY, UNDER_WAY).await, Turn::Mine);
    let huge = "c".repeat(MAX_TURN_COOKIE + 1);
    assert!(store.finish_renewal(KEY, Some(&huge), KEPT).await.is_err());
    assert!(store.finish_renewal(KEY, Some(""), KEPT).await.is_err());
    assert_eq!(take(&*store, KEY, UNDER_WAY).await, Turn::Pending);
}

/// 50 requests take one turn at once: exactly one gets it.
pub async fn concurrent_takers_get_one_turn(store: Arc<dyn LockStore>, _: Timing) {
    const TAKERS: usize = 50;
    let start = Arc::new(Barrier::new(TAKERS));
    let tasks: Vec<_> = (0..TAKERS)
        .map(|_| {
            let store = Arc::clone(&store);
            let start = Arc::clone(&start);
            tokio::spawn(async move {
                start.wait().await;
                take(&*store, KEY, UNDER_WAY).await
            })
        })
        .collect();
    let mut mine = 0;
    for task in tasks {
        match task.await.unwrap() {
            Turn::Mine => mine += 1,
            Turn::Pending => {}
            other => panic!("a turn under way was seen as {other:?}"),
        }
    }
    assert_eq!(mine, 1);
}
