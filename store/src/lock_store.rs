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
use crate::lock::{
    ClaimOutcome, ClaimRequest, Holder, Lock, Present, QueuePlace, QueueState, Takeover, UnixMillis,
};
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

/// Most banners kept present on one resource. Joins past it are not recorded (the page still
/// works; it is only not listed), so one resource's presence set stays bounded.
pub const MAX_PRESENCE: usize = 1_000;

/// The default bound on a resource's wait queue (`locks.queue_max`): more people than this
/// waiting for one page is a coordination problem no queue solves.
pub const DEFAULT_QUEUE_MAX: usize = 100;

/// The largest bound a queue may be given. Every operation that frees a resource walks its
/// queue once, so the bound also bounds that work.
pub const MAX_QUEUE: usize = 1_000;

/// Most ended sign-in sessions a store remembers (see [`LockStore::end_session`]). Past it,
/// the ones whose own end comes soonest are forgotten first; a logout needs a signed-in
/// session, so reaching it takes that many sign-ins at the identity provider.
pub const MAX_ENDED_SESSIONS: usize = 100_000;

/// Longest an ended sign-in session is remembered: sessions never last longer.
pub const MAX_ENDED_FOR: Duration = Duration::from_secs(30 * 24 * 60 * 60);

/// Longest sign-in session id a store accepts.
pub const MAX_SESSION_ID: usize = 64;

/// Whether `session` has the form of a sign-in session id: 1 to [`MAX_SESSION_ID`] characters
/// of unpadded base64url. Stores refuse anything else, so what they keep stays bounded.
pub fn is_session_id(session: &str) -> bool {
    !session.is_empty()
        && session.len() <= MAX_SESSION_ID
        && session
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// What [`LockStore::force_release_if`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ForceReleased {
    /// Released: the lock as it was.
    Released(Lock),
    /// Nobody held the resource.
    Free,
    /// Held under another fence than the one given: nothing changed. The lock as it is.
    Changed(Lock),
}

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
///   displaced for [`DISPLACED_TTL`], with the fence it lost; its unsafe claims are refused
///   until it makes a safe one, but only once the resource's fence has moved past that one
///   (someone else held it since). Until then the owner simply claims again;
/// - a claim that would be a new grant is refused with [`ClaimOutcome::Limited`] when the user
///   already holds [`ClaimRequest::max_per_user`] live locks; renewals are never refused. The
///   memory store counts exactly; the Redis store keeps a per-user index whose bounds are
///   documented on [`RedisLockStore`](crate::RedisLockStore).
///
/// Every store also keeps the turns of sign-in session renewals ([`auth::RenewalTurns`]), so
/// the instances sharing it renew one session cookie once between them.
#[async_trait::async_trait]
pub trait LockStore: auth::RenewalTurns + Send + Sync + 'static {
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

    /// Like [`renew`](Self::renew) with the grace period as the lease, but marks the lock as
    /// in grace: if it lapses so, the release is [`ReleaseReason::Grace`] (voluntary, the owner
    /// is not displaced) rather than `Expired`. A later `renew` or `claim` by the owner clears
    /// the mark. `None` if `owner_key` does not hold the resource.
    async fn begin_grace(
        &self,
        resource: &str,
        owner_key: &str,
        grace: Duration,
    ) -> Result<Option<Lock>, StoreError>;

    /// Records activity of the holder: `active = now`. Emits nothing. `None` if `owner_key`
    /// does not hold the resource.
    async fn touch(&self, resource: &str, owner_key: &str) -> Result<Option<Lock>, StoreError>;

    /// Releases the resource with [`ReleaseReason::Idle`] only if `owner_key` still holds it
    /// and its last activity is older than `active_before`, so activity reported on any
    /// instance since the caller looked wins. Returns the released lock.
    async fn release_idle(
        &self,
        resource: &str,
        owner_key: &str,
        active_before: UnixMillis,
    ) -> Result<Option<Lock>, StoreError>;

    /// Records that banner `tab` of `holder` is open on `resource`, for `ttl` unless joined
    /// again (the banner socket refreshes it). Emits `PresenceChanged` when the tab is new.
    /// Past [`MAX_PRESENCE`] live tabs a new one is not recorded.
    async fn presence_join(
        &self,
        resource: &str,
        tab: &str,
        holder: &Holder,
        ttl: Duration,
    ) -> Result<(), StoreError>;

    /// Forgets banner `tab` on `resource`. Emits `PresenceChanged` if it was present.
    async fn presence_leave(&self, resource: &str, tab: &str) -> Result<(), StoreError>;

    /// Every banner present on `resource` whose time-to-live has not run out, sorted by tab.
    async fn presence(&self, resource: &str) -> Result<Vec<Present>, StoreError>;

    /// Releases the resource whoever holds it, on an admin's behalf (`by` names the admin).
    /// The holder is marked displaced. `None` if it was free.
    async fn force_release(&self, resource: &str, by: &str) -> Result<Option<Lock>, StoreError> {
        Ok(match self.force_release_if(resource, by, None).await? {
            ForceReleased::Released(lock) => Some(lock),
            ForceReleased::Free | ForceReleased::Changed(_) => None,
        })
    }

    /// [`force_release`](Self::force_release), only if the lock is still held under `fence`
    /// (when one is given): the check and the release are one step, so a lock that changed
    /// hands since the admin saw it is left alone.
    async fn force_release_if(
        &self,
        resource: &str,
        by: &str,
        fence: Option<u64>,
    ) -> Result<ForceReleased, StoreError>;

    /// The current lock on a resource, if any.
    async fn get(&self, resource: &str) -> Result<Option<Lock>, StoreError>;

    /// Every current lock, sorted by resource.
    async fn list(&self) -> Result<Vec<Lock>, StoreError>;

    /// Tells the holder that `by` would like the resource. Changes no state; only emits
    /// `AccessRequested` carrying the current lock (if any).
    async fn request_access(&self, resource: &str, by: &Holder) -> Result<(), StoreError>;

    /// Puts `holder` at the back of the resource's wait queue, or refreshes its entry if it
    /// already waits (joining is idempotent per owner key; the place is kept). The entry lapses
    /// `ttl` after the last call, so a waiter whose instance died drops out by itself. `offer`
    /// is how long the resource is reserved for this owner when its turn comes; `max` bounds
    /// the queue (at most [`MAX_QUEUE`]). An owner that holds the lock or the offer is not
    /// queued, and neither is anyone once `max` wait: both answer position `0`.
    ///
    /// The queue is served whenever the resource becomes free, by any path (release, force
    /// release, grace, expiry, a lapsed or declined offer): the head is
    /// offered the resource until `now + offer`, and `claim` by anyone else answers
    /// [`ClaimOutcome::Reserved`] meanwhile. The offered owner's claim is granted and ends the
    /// offer; a lapsed offer passes to the next in line. `takeover` ignores the queue and puts
    /// a standing offer's owner back at the head. Joining a resource that is free and not
    /// offered queues without an offer: the page can simply be opened, and a holder rebuilding
    /// its lock after the store lost its data is not beaten to it by a waiter re-joining.
    /// Every change emits `QueueChanged`.
    async fn enqueue(
        &self,
        resource: &str,
        holder: &Holder,
        ttl: Duration,
        offer: Duration,
        max: usize,
    ) -> Result<QueuePlace, StoreError>;

    /// Takes `owner_key` out of the resource's queue, and declines the offer if it holds it
    /// (the offer then passes on). Whether anything changed.
    async fn dequeue(&self, resource: &str, owner_key: &str) -> Result<bool, StoreError>;

    /// The resource's queue and offer, after lapsed entries and offers are dealt with.
    async fn queue(&self, resource: &str) -> Result<QueueState, StoreError>;

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
    /// `max_entries` of 0, is the caller's error: nothing is kept and the call fails.
    /// Emits [`EventKind::StashChanged`](crate::EventKind::StashChanged) for `user` on
    /// `entry.resource` when the entry is kept (on every instance sharing the store), so open
    /// banners of that user can list their entries again; nothing when it is not.
    async fn stash_put(&self, user: &str, entry: NewStash) -> Result<StashId, StoreError>;

    /// `user`'s live entries, oldest first.
    async fn stash_list(&self, user: &str) -> Result<Vec<StashMeta>, StoreError>;

    /// One of `user`'s live entries; `None` for an id that is not `user`'s, or no longer kept.
    async fn stash_get(&self, user: &str, id: &str) -> Result<Option<StashEntry>, StoreError>;

    /// Deletes one of `user`'s entries; `false` if `user` had no such entry. A deletion emits
    /// [`EventKind::StashChanged`](crate::EventKind::StashChanged) for `user` on the entry's
    /// resource. Entries that expire emit nothing.
    async fn stash_delete(&self, user: &str, id: &str) -> Result<bool, StoreError>;

    /// Publishes `summary`, the request-shape summary of the proxy instance `instance` (JSON
    /// the store does not read), replacing that instance's last one. The caller bounds its
    /// size. Summaries carry user ids (sampled requests), so none outlives `keep`: every
    /// instance's summary not replaced within `keep` is dropped here, whether or not anyone
    /// reads them, and a store shared by processes (Redis) forgets them all `keep` after the
    /// last publication.
    async fn shapes_put(
        &self,
        instance: &str,
        summary: &str,
        keep: Duration,
    ) -> Result<(), StoreError>;

    /// Every instance's latest summary published less than `max_age` ago, as
    /// `(instance, summary)`, in no particular order. Older ones are dropped.
    async fn shapes(&self, max_age: Duration) -> Result<Vec<(String, String)>, StoreError>;

    /// Records that sign-in session `session` ended (logout) and must be refused until
    /// `until` (unix milliseconds, its own end; at most [`MAX_ENDED_FOR`] from now), and
    /// emits [`EventKind::SessionEnded`](crate::EventKind::SessionEnded) on every instance
    /// sharing the store. At most [`MAX_ENDED_SESSIONS`] are kept. A `session` that is not
    /// [`is_session_id`] is the caller's error: nothing is kept and the call fails.
    async fn end_session(&self, session: &str, until: UnixMillis) -> Result<(), StoreError>;

    /// Every ended sign-in session whose end has not come, as `(session, until)`, at most
    /// [`MAX_ENDED_SESSIONS`]: what an instance that may have missed events reads back.
    async fn ended_sessions(&self) -> Result<Vec<(String, UnixMillis)>, StoreError>;

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
