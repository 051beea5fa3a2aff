//! The `LockStore` contract: what every lock store does, written once and run against each
//! store. `memory.rs` and `redis.rs` each invoke [`lock_store_contract!`] once, which expands
//! to one named `#[tokio::test]` per case, under `contract::<section>::<case>`
//! (`cargo test -p store contract::` runs the whole contract on both stores).
//!
//! Every case is an `async fn(Arc<dyn LockStore>, Timing)` that takes a fresh, empty store
//! (its event stream not yet subscribed to, its reaper running or not as the store file
//! chose) and the store's [`Timing`]. Time passes through `tokio::time::sleep`, which the
//! memory store's paused test clock turns into an instant advance and Redis waits out.
//! Events are awaited with a timeout ([`next_event`], [`events`], [`assert_quiet`]), so a
//! store may deliver them at once (memory) or a moment later (Redis pub/sub).
//!
//! The sections, one file each:
//! - [`locks`]: claim, renew, release, takeover, the displaced marker, fences, lapsed leases,
//!   listing and the event stream.
//! - [`claim_limits`]: the cap on claims per user (`ClaimRequest::max_per_user`).
//! - [`presence`]: banners present on a resource (join, leave, time-to-live).
//! - [`displaced`]: leaving in grace, and stale writes refused only when the fence moved.
//! - [`idle`]: activity (`touch`) and the idle release.
//! - [`queue`]: the fair wait queue and its offers.
//! - [`stash`]: kept request bodies per user (`stash_put`/`list`/`get`/`delete`) and the
//!   events that announce them.
//! - [`shapes`]: each proxy instance's request-shape summary.
//! - [`turns`]: sign-in renewal turns (`auth::RenewalTurns`), shared by the instances.
//!
//! Adding a section (say `queue` or `stash`): write `support/contract/<section>.rs` with one
//! `pub async fn case(store: Arc<dyn LockStore>, timing: Timing)` per case, declare it below,
//! and add one `section!` line naming its cases in [`lock_store_contract!`]. Both stores then
//! run every case; what only one store can show (the paused clock, Redis keys, restarts,
//! several instances) stays in that store's own file.

#![allow(dead_code)]

pub mod claim_limits;
pub mod displaced;
pub mod idle;
pub mod locks;
pub mod presence;
pub mod queue;
pub mod shapes;
pub mod stash;
pub mod turns;

use std::time::Duration;

use store::{ClaimOutcome, ClaimRequest, EventKind, Holder, Lock, LockEvent, ReleaseReason};
use tokio::sync::broadcast;

/// The lease every case uses unless it wants one to run out.
pub const LEASE: Duration = Duration::from_secs(30);
/// The resource most cases lock.
pub const DOC: &str = "doc:1";
/// How long a case waits for an event that must come.
pub const EVENT_WAIT: Duration = Duration::from_secs(3);
/// How long a case listens to be sure no (further) event comes.
pub const QUIET: Duration = Duration::from_millis(300);

/// How a store's clock is driven in its contract run.
#[derive(Clone, Copy, Debug)]
pub struct Timing {
    /// A lease short enough to wait out in a test.
    pub short: Duration,
    /// How long after a lease's deadline the store surely treats it as lapsed: zero on a
    /// paused clock (the deadline itself), a margin for clock reads on a real one.
    pub past: Duration,
}

/// Expands to the whole contract as `mod contract { mod <section> { #[tokio::test] ... } }`.
///
/// - `test`: the attribute of the ordinary cases (`#[tokio::test(start_paused = true)]` for
///   the memory store, `#[tokio::test]` for Redis). Concurrent cases always run on a
///   multi-thread runtime with the worker count given here.
/// - `timing`: the store's [`Timing`].
/// - `fresh`: a future that resolves to `(guard, Arc<Store>)`, evaluated once per case; the
///   guard (a server process, or `()`) lives as long as the case.
///
/// The expressions are resolved in the invoking file (the generated modules glob-import it).
macro_rules! lock_store_contract {
    (test: #[$test:meta], timing: $timing:expr, fresh: $fresh:expr $(,)?) => {
        /// The shared `LockStore` contract (`support/contract`) on this file's store.
        mod contract {
            $crate::support::contract::section! {
                locks, #[$test], $timing, $fresh,
                cases: [
                    claim_renew_held_release,
                    a_renewing_claim_never_shortens_the_lease,
                    session_owner_is_per_tab_and_can_be_moved,
                    fence_strictly_increases_across_claim_release_claim_takeover,
                    takeover_by_the_current_holder_is_a_renewal,
                    takeover_marks_the_loser_displaced_until_a_safe_claim,
                    voluntary_releases_do_not_mark_displaced,
                    operations_notice_lapsed_leases_without_the_reaper,
                    renew_after_lapse_does_not_resurrect,
                    list_is_sorted_and_skips_lapsed_locks,
                    force_release_emits_forced_and_marks_displaced,
                    a_conditional_force_release_leaves_a_lock_that_changed_hands,
                    every_change_emits_one_event_with_lock_and_previous,
                    request_access_only_emits_an_event,
                ],
                concurrent: [concurrent_claimants_get_exactly_one_winner = 4],
            }
            $crate::support::contract::section! {
                claim_limits, #[$test], $timing, $fresh,
                cases: [
                    the_cap_refuses_the_next_distinct_resource,
                    releases_free_a_slot,
                    an_expired_lease_frees_a_slot,
                    renewed_locks_keep_counting,
                    a_takeover_moves_the_slot,
                    tabs_share_their_users_cap,
                    each_claim_brings_its_own_cap,
                ],
                concurrent: [concurrent_claims_stop_at_the_cap = 2],
            }
            $crate::support::contract::section! {
                presence, #[$test], $timing, $fresh,
                cases: [
                    joins_and_leaves_change_the_set_and_emit,
                    presence_lapses_after_its_ttl,
                ],
                concurrent: [],
            }
            $crate::support::contract::section! {
                displaced, #[$test], $timing, $fresh,
                cases: [
                    a_lapsed_grace_is_a_grace_release_that_does_not_displace,
                    a_renewal_clears_the_grace_mark,
                    a_stale_write_is_refused_only_when_the_fence_moved,
                ],
                concurrent: [],
            }
            $crate::support::contract::section! {
                idle, #[$test], $timing, $fresh,
                cases: [
                    touch_records_the_holders_activity,
                    release_idle_releases_a_holder_idle_since_the_check,
                    activity_since_the_check_wins,
                ],
                concurrent: [],
            }
            $crate::support::contract::section! {
                queue, #[$test], $timing, $fresh,
                cases: [
                    joins_are_fifo_and_idempotent,
                    the_queue_is_bounded,
                    a_release_offers_the_head_and_reserves_it,
                    every_freeing_path_offers,
                    a_lapsed_offer_passes_to_the_next,
                    joining_a_free_resource_waits_without_an_offer,
                    leaving_drops_the_place_and_declines_the_offer,
                    entries_lapse_unless_refreshed,
                    a_takeover_jumps_the_queue,
                    queue_changes_are_announced,
                ],
                concurrent: [concurrent_claims_never_beat_the_offer = 4],
            }
            $crate::support::contract::section! {
                stash, #[$test], $timing, $fresh,
                cases: [
                    put_list_get_delete,
                    users_are_kept_apart,
                    entries_expire_after_their_ttl,
                    the_count_bound_evicts_the_oldest,
                    the_byte_bound_evicts_the_oldest,
                    puts_and_deletes_announce_the_user_unaudited,
                ],
                concurrent: [],
            }
            $crate::support::contract::section! {
                shapes, #[$test], $timing, $fresh,
                cases: [
                    each_instance_keeps_its_latest_summary,
                    summaries_older_than_the_age_asked_for_are_dropped,
                    a_summary_not_replaced_within_its_keep_is_dropped_by_the_next_publication,
                ],
                concurrent: [],
            }
            $crate::support::contract::section! {
                turns, #[$test], $timing, $fresh,
                cases: [
                    the_first_takes_the_turn_and_the_others_see_it_then_its_cookie,
                    a_refusal_is_seen_as_refused,
                    a_turn_given_back_goes_to_the_next_taker,
                    turns_under_way_and_finished_lapse_on_their_own,
                    keys_and_cookies_out_of_bounds_are_refused_and_change_nothing,
                ],
                concurrent: [concurrent_takers_get_one_turn = 4],
            }
        }
    };
}
pub(crate) use lock_store_contract;

/// One section of [`lock_store_contract!`]: a module of tests, one per case, each calling
/// `support::contract::<section>::<case>` on a fresh store.
macro_rules! section {
    (
        $section:ident, #[$test:meta], $timing:expr, $fresh:expr,
        cases: [$($case:ident),* $(,)?],
        concurrent: [$($concurrent:ident = $workers:literal),* $(,)?] $(,)?
    ) => {
        mod $section {
            #[allow(unused_imports)]
            use super::super::*;

            $(
                #[$test]
                async fn $case() {
                    let (_guard, store) = $fresh.await;
                    $crate::support::contract::$section::$case(store, $timing).await;
                }
            )*

            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = $workers)]
                async fn $concurrent() {
                    let (_guard, store) = $fresh.await;
                    $crate::support::contract::$section::$concurrent(store, $timing).await;
                }
            )*
        }
    };
}
pub(crate) use section;

/// A user's lock owner (display name = upper-cased id).
pub fn user(id: &str) -> Holder {
    Holder {
        user: id.to_owned(),
        name: id.to_uppercase(),
        session: None,
    }
}

/// One browser tab of `id`, for `owner = "session"` rules.
pub fn tab(id: &str, session: &str) -> Holder {
    Holder {
        session: Some(session.to_owned()),
        ..user(id)
    }
}

/// A safe-method claim of [`DOC`] for the default [`LEASE`].
pub fn safe(holder: &Holder) -> ClaimRequest {
    safe_on(DOC, holder, LEASE)
}

/// A safe-method claim of `resource` under rule `edit`, with no per-user cap.
pub fn safe_on(resource: &str, holder: &Holder, lease: Duration) -> ClaimRequest {
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

/// An unsafe-method (writing) claim of [`DOC`].
pub fn unsafe_(holder: &Holder) -> ClaimRequest {
    ClaimRequest {
        unsafe_method: true,
        ..safe(holder)
    }
}

pub fn claimed(outcome: ClaimOutcome) -> Lock {
    match outcome {
        ClaimOutcome::Claimed(lock) => lock,
        other => panic!("expected Claimed, got {other:?}"),
    }
}

pub fn held(outcome: ClaimOutcome) -> Lock {
    match outcome {
        ClaimOutcome::Held(lock) => lock,
        other => panic!("expected Held, got {other:?}"),
    }
}

pub fn renewed(outcome: ClaimOutcome) -> Lock {
    match outcome {
        ClaimOutcome::Renewed(lock) => lock,
        other => panic!("expected Renewed, got {other:?}"),
    }
}

pub fn displaced(outcome: ClaimOutcome) -> Option<Lock> {
    match outcome {
        ClaimOutcome::Displaced { current } => current,
        other => panic!("expected Displaced, got {other:?}"),
    }
}

pub fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap()
}

pub fn expired() -> EventKind {
    EventKind::Released {
        reason: ReleaseReason::Expired,
    }
}

/// The next event, within [`EVENT_WAIT`].
pub async fn next_event(rx: &mut broadcast::Receiver<LockEvent>) -> LockEvent {
    tokio::time::timeout(EVENT_WAIT, rx.recv())
        .await
        .expect("no event in time")
        .expect("event stream broke")
}

/// Exactly `n` events, then silence.
pub async fn events(rx: &mut broadcast::Receiver<LockEvent>, n: usize) -> Vec<LockEvent> {
    let mut got = Vec::with_capacity(n);
    for _ in 0..n {
        got.push(next_event(rx).await);
    }
    assert_quiet(rx).await;
    got
}

/// No event for [`QUIET`].
pub async fn assert_quiet(rx: &mut broadcast::Receiver<LockEvent>) {
    if let Ok(event) = tokio::time::timeout(QUIET, rx.recv()).await {
        panic!("unexpected event: {event:?}");
    }
}
