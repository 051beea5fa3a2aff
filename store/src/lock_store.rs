//! The [`LockStore`] contract every backend fulfils.
//!
//! Each method is one atomic step: a backend must be able to run it as a single server-side
//! script (for Redis, one Lua script that also publishes the events it produces). That is why
//! ownership checks take an owner key rather than being done by the caller, and why lease
//! expiry is re-checked inside every operation instead of trusting a background sweep.

use std::time::Duration;

use tokio::sync::broadcast;

use crate::error::StoreError;
use crate::event::{LockEvent, ReleaseReason};
use crate::lock::{ClaimOutcome, ClaimRequest, Holder, Lock, Takeover};
use crate::stash::{NewStash, StashEntry, StashId, StashMeta};

/// How long a store remembers that an owner lost a resource. A tab left open longer than this
/// can write again after the lock is free; a day comfortably outlives any working session.
pub const DISPLACED_TTL: Duration = Duration::from_secs(24 * 60 * 60);

/// Longest lease a store will grant. Longer requests are clamped so deadline arithmetic cannot
/// overflow; no sane configuration comes near it.
pub const MAX_LEASE: Duration = Duration::from_secs(30 * 24 * 60 * 60);

/// Most resources a [`ClaimOutcome::Limited`] names. A cap can be large; the answer is shown
/// to a person, who needs a few pages to close rather than the whole list.
pub const MAX_HELD_SHOWN: usize = 20;

/// Shared lock state for the proxy and the control plane.
///
/// Invariants every implementation keeps:
/// - at most one holder per resource at any time;
/// - a resource's fence strictly increases on every change of holder and never goes back, even
///   across releases;
/// - a lock whose lease has lapsed is treated as released with [`ReleaseReason::Expired`] by
///   whichever operation notices first, and is never renewed back to life;
/// - every state change emits exactly one [`LockEvent`], in the order the changes were applied;
///   renewals emit none;
/// - an owner that loses a resource by takeover, expiry or force release is remembered as
///   displaced for [`DISPLACED_TTL`], and its unsafe claims are refused until it makes a safe one;
/// - a claim that would be a new grant is refused with [`ClaimOutcome::Limited`] when the user
///   already holds [`ClaimRequest::max_per_user`] live locks; renewals are never refused. The
///   memory store counts exactly; the Redis store keeps a per-user index whose bounds are
///   documented on [`RedisLockStore`](crate::RedisLockStore).
#[async_trait::async_trait]
pub trait LockStore: Send + Sync + 'static {
    /// Claims `req.resource` for `req.holder`, or renews it if that owner already holds it
    /// (extending, never shortening, the lease). Emits `Claimed` only for a new holder. A new
    /// grant past `req.max_per_user` is refused with [`ClaimOutcome::Limited`] and emits nothing.
    async fn claim(&self, req: &ClaimRequest) -> Result<ClaimOutcome, StoreError>;

    /// Sets `expires = now + lease` if `owner_key` holds the resource. This may shorten the lease,
    /// which is how the grace period after the last banner socket closes is applied.
    /// `None` if it does not hold it (including when its lease has already lapsed).
    async fn renew(
        &self,
        resource: &str,
        owner_key: &str,
        lease: Duration,
    ) -> Result<Option<Lock>, StoreError>;

    /// Releases the resource only if `owner_key` holds it, and returns the released lock.
    /// `Client` and `Grace` releases do not mark the owner displaced; other reasons do.
    async fn release(
        &self,
        resource: &str,
        owner_key: &str,
        reason: ReleaseReason,
    ) -> Result<Option<Lock>, StoreError>;

    /// Gives the resource to `req.holder` whoever holds it. The previous owner is marked
    /// displaced. Emits `TakenOver` when there was a holder, `Claimed` when it was free. If the
    /// requester already holds it this is a renewal: no new fence, no event, `previous` is `None`.
    /// Permission to take over is the caller's decision; `req.unsafe_method` and
    /// `req.max_per_user` are not consulted (the taken lock still counts towards the taker's cap).
    async fn takeover(&self, req: &ClaimRequest) -> Result<Takeover, StoreError>;

    /// Releases the resource whoever holds it, on an admin's behalf (`by` names the admin).
    /// The holder is marked displaced. `None` if it was free.
    async fn force_release(&self, resource: &str, by: &str) -> Result<Option<Lock>, StoreError>;

    /// The current lock on a resource, if any.
    async fn get(&self, resource: &str) -> Result<Option<Lock>, StoreError>;

    /// Every current lock, sorted by resource.
    async fn list(&self) -> Result<Vec<Lock>, StoreError>;

    /// Tells the holder that `by` would like the resource. Changes no state; only emits
    /// `AccessRequested` carrying the current lock (if any).
    async fn request_access(&self, resource: &str, by: &Holder) -> Result<(), StoreError>;

    /// Succeeds when the store can serve requests; used by readiness checks.
    async fn ping(&self) -> Result<(), StoreError>;

    /// A new receiver for every event emitted from now on. A receiver that falls too far behind
    /// gets `RecvError::Lagged` and should re-read the state it cares about.
    fn subscribe(&self) -> broadcast::Receiver<LockEvent>;

    /// Whether every lock event, from every instance, reaches [`LockStore::subscribe`] right
    /// now. While it is false events may be lost without a gap being signalled yet, so
    /// anything kept fresh by events alone must not be trusted.
    fn events_live(&self) -> bool {
        true
    }

    /// Keeps a refused request's body for `user` (see [`crate::stash`]): evicts that user's
    /// oldest entries until `entry.limits` hold with the new one, then stores it until
    /// `now + entry.limits.ttl`. A body larger than `entry.limits.max_bytes` on its own, or a
    /// `max_entries` of 0, is the caller's error: nothing is kept and the call fails. No events.
    async fn stash_put(&self, user: &str, entry: NewStash) -> Result<StashId, StoreError>;

    /// `user`'s live entries, oldest first.
    async fn stash_list(&self, user: &str) -> Result<Vec<StashMeta>, StoreError>;

    /// One of `user`'s live entries; `None` for an id that is not `user`'s, or no longer kept.
    async fn stash_get(&self, user: &str, id: &str) -> Result<Option<StashEntry>, StoreError>;

    /// Deletes one of `user`'s entries; `false` if `user` had no such entry.
    async fn stash_delete(&self, user: &str, id: &str) -> Result<bool, StoreError>;

    /// Tells every instance sharing this store that the rule set changed, so their rule
    /// pollers reload now instead of at their next tick. Only a hint: polling stays the
    /// guarantee, so a lost nudge costs at most one poll interval.
    async fn nudge_rules(&self) -> Result<(), StoreError> {
        Ok(())
    }

    /// Nudges from [`LockStore::nudge_rules`] on any instance sharing this store, this one
    /// included. `None` for a store that has no way to hear other instances.
    fn rule_nudges(&self) -> Option<broadcast::Receiver<()>> {
        None
    }
}
