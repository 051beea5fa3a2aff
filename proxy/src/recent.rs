//! Claims this instance saw succeed a moment ago, so that a page load's burst of requests
//! under one lock asks the lock store once.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use store::{EventKind, LockEvent, LockStore};
use tokio::sync::broadcast::{self, error::TryRecvError};

/// How long a claim this instance saw succeed keeps answering the same holder's safe requests
/// without asking the lock store again.
pub const RECENT_CLAIM_TTL: Duration = Duration::from_secs(1);

/// Holders remembered at most; past this the memory is dropped and rebuilt from the store.
const RECENT_CLAIM_CAPACITY: usize = 10_000;

/// Claims this instance saw succeed less than [`RECENT_CLAIM_TTL`] ago.
///
/// A page load is a burst of requests under one lock (the document, its scripts, its API
/// reads). Asking a remote store (Redis) for each costs a round trip per request, so a safe
/// request (GET, HEAD) of the holder that claimed or renewed a moment ago is let through on
/// that answer. The guarantees stay those of the store:
/// - unsafe methods always ask the store, so a holder who lost the lock is refused every
///   write at once (fencing and takeover are untouched);
/// - every lock event (claim, release, takeover, expiry, from any instance) forgets what is
///   remembered for its resource before the next request is decided, and a lagging or
///   restarted event stream forgets everything; with the memory store events arrive before
///   the store call returns, so nothing is ever stale;
/// - a claim is remembered only if no event arrived while it was in flight;
/// - the store is asked again at least every [`RECENT_CLAIM_TTL`], which also renews the lease;
/// - while the store says its events are not live (`LockStore::events_live`: Redis between a
///   lost subscription and the next), nothing is remembered or answered.
///
/// What remains is reads: between the Redis connection dropping and the listener noticing it,
/// a displaced holder's reads may pass for up to [`RECENT_CLAIM_TTL`] after a takeover on
/// another instance.
pub struct RecentClaims {
    store: Arc<dyn LockStore>,
    inner: Mutex<Recent>,
}

struct Recent {
    events: broadcast::Receiver<LockEvent>,
    /// Lock events seen (and event-stream gaps). A claim answered before a newer generation
    /// began may be outdated.
    generation: u64,
    /// Seeded per process. Only claims the store granted to authenticated users get in, at
    /// most [`RECENT_CLAIM_CAPACITY`] of them, so a fast hash suffices here.
    by_resource: HashMap<String, Vec<RecentClaim>, foldhash::fast::RandomState>,
    len: usize,
}

struct RecentClaim {
    user: String,
    /// The browser session, for `owner = "session"` rules.
    session: Option<String>,
    fence: u64,
    until: Instant,
}

impl RecentClaims {
    pub fn new(store: Arc<dyn LockStore>) -> RecentClaims {
        let events = store.subscribe();
        RecentClaims {
            store,
            inner: Mutex::new(Recent {
                events,
                generation: 0,
                by_resource: HashMap::default(),
                len: 0,
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Recent> {
        let mut recent = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        recent.catch_up(self.store.as_ref());
        recent
    }

    /// The fence of the lock `user` (in `session`) was seen holding on `resource`, if that was
    /// less than [`RECENT_CLAIM_TTL`] ago and nothing has happened to the resource since.
    pub fn fence(&self, resource: &str, user: &str, session: Option<&str>) -> Option<u64> {
        self.fence_at(resource, user, session, Instant::now())
    }

    fn fence_at(
        &self,
        resource: &str,
        user: &str,
        session: Option<&str>,
        now: Instant,
    ) -> Option<u64> {
        // Events may be getting lost (Redis between a lost subscription and the next): only
        // the store knows whether the lock changed.
        if !self.store.events_live() {
            return None;
        }
        let recent = self.lock();
        recent
            .by_resource
            .get(resource)?
            .iter()
            .find(|c| c.until > now && c.user == user && c.session.as_deref() == session)
            .map(|c| c.fence)
    }

    /// The current generation; take it before asking the store, and pass it to
    /// [`RecentClaims::remember`] with the answer.
    pub fn generation(&self) -> u64 {
        self.lock().generation
    }

    /// Remembers that `user` (in `session`) holds `resource` under `fence`, unless a lock
    /// event arrived since `generation` was taken.
    pub fn remember(
        &self,
        resource: &str,
        user: &str,
        session: Option<&str>,
        fence: u64,
        generation: u64,
    ) {
        if !self.store.events_live() {
            return;
        }
        let now = Instant::now();
        let mut recent = self.lock();
        if recent.generation != generation {
            return;
        }
        if recent.len >= RECENT_CLAIM_CAPACITY {
            recent.forget_expired(now);
            if recent.len >= RECENT_CLAIM_CAPACITY {
                recent.forget_all();
            }
        }
        let until = now + RECENT_CLAIM_TTL;
        let claims = recent.by_resource.entry(resource.to_string()).or_default();
        match claims
            .iter_mut()
            .find(|c| c.user == user && c.session.as_deref() == session)
        {
            Some(c) => {
                c.fence = fence;
                c.until = until;
            }
            None => {
                claims.push(RecentClaim {
                    user: user.to_string(),
                    session: session.map(str::to_string),
                    fence,
                    until,
                });
                recent.len += 1;
            }
        }
    }

    /// Forgets every claim: a lock changed in a way that sends no event (a release that
    /// only shortens the lease, as the `pagehide` beacon does).
    pub fn forget_all(&self) {
        let mut recent = self.lock();
        recent.forget_all();
        recent.generation += 1;
    }
}

impl Recent {
    /// Applies the lock events that arrived since the last look.
    fn catch_up(&mut self, store: &dyn LockStore) {
        loop {
            match self.events.try_recv() {
                // Neither who has a banner open, the wait queue, kept changes nor a logout
                // change the holder: what is remembered stays true, and the holder's next request needs no
                // store call.
                Ok(event)
                    if matches!(
                        event.kind,
                        EventKind::PresenceChanged
                            | EventKind::QueueChanged { .. }
                            | EventKind::StashChanged { .. }
                            | EventKind::SessionEnded { .. }
                    ) => {}
                Ok(event) => {
                    self.generation += 1;
                    if let Some(claims) = self.by_resource.remove(&event.resource) {
                        self.len -= claims.len();
                    }
                }
                Err(TryRecvError::Empty) => return,
                Err(TryRecvError::Lagged(_)) => {
                    self.generation += 1;
                    self.forget_all();
                }
                Err(TryRecvError::Closed) => {
                    // The store replaced its stream (Redis resubscribed): events were lost.
                    self.generation += 1;
                    self.forget_all();
                    self.events = store.subscribe();
                    return;
                }
            }
        }
    }

    fn forget_all(&mut self) {
        self.by_resource.clear();
        self.len = 0;
    }

    fn forget_expired(&mut self, now: Instant) {
        let mut len = 0;
        self.by_resource.retain(|_, claims| {
            claims.retain(|c| c.until > now);
            len += claims.len();
            !claims.is_empty()
        });
        self.len = len;
    }
}

#[cfg(test)]
mod tests {
    use store::{ClaimOutcome, ClaimRequest, MemoryLockStore, ReleaseReason};

    use store::Holder;

    use super::*;

    fn request(resource: &str, user: &str) -> ClaimRequest {
        ClaimRequest {
            resource: resource.into(),
            rule: "r".into(),
            holder: Holder {
                user: user.into(),
                name: user.into(),
                session: None,
            },
            lease: Duration::from_secs(30),
            instance: "test".into(),
            unsafe_method: false,
            max_per_user: None,
        }
    }

    async fn claimed(store: &MemoryLockStore, resource: &str, user: &str) -> u64 {
        match store.claim(&request(resource, user)).await.unwrap() {
            ClaimOutcome::Claimed(lock) | ClaimOutcome::Renewed(lock) => lock.fence,
            other => panic!("expected a claim, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn a_remembered_claim_answers_its_holder_only() {
        let store = MemoryLockStore::new();
        let recent = RecentClaims::new(store.clone());
        claimed(&store, "doc:1", "alice").await;
        let generation = recent.generation();
        let fence = claimed(&store, "doc:1", "alice").await;
        recent.remember("doc:1", "alice", None, fence, generation);
        assert_eq!(recent.fence("doc:1", "alice", None), Some(fence));
        assert_eq!(recent.fence("doc:1", "bob", None), None);
        assert_eq!(recent.fence("doc:1", "alice", Some("tab-1")), None);
        assert_eq!(recent.fence("doc:2", "alice", None), None);
    }

    #[tokio::test]
    async fn a_remembered_claim_lapses_after_the_ttl() {
        let store = MemoryLockStore::new();
        let recent = RecentClaims::new(store);
        let generation = recent.generation();
        recent.remember("doc:1", "alice", None, 7, generation);
        let now = Instant::now();
        assert_eq!(recent.fence_at("doc:1", "alice", None, now), Some(7));
        let later = now + RECENT_CLAIM_TTL + Duration::from_millis(1);
        assert_eq!(recent.fence_at("doc:1", "alice", None, later), None);
    }

    #[tokio::test]
    async fn a_lock_event_forgets_its_resource_before_the_next_answer() {
        let store = MemoryLockStore::new();
        let recent = RecentClaims::new(store.clone());
        let alice = claimed(&store, "doc:1", "alice").await;
        claimed(&store, "doc:2", "alice").await;
        let generation = recent.generation();
        recent.remember("doc:1", "alice", None, alice, generation);
        recent.remember("doc:2", "alice", None, alice, generation);
        store
            .release("doc:1", "alice", ReleaseReason::Client)
            .await
            .unwrap();
        assert_eq!(recent.fence("doc:1", "alice", None), None);
        assert!(recent.fence("doc:2", "alice", None).is_some());
    }

    #[tokio::test]
    async fn a_claim_answered_across_a_lock_event_is_not_remembered() {
        let store = MemoryLockStore::new();
        let recent = RecentClaims::new(store.clone());
        let generation = recent.generation();
        let fence = claimed(&store, "doc:1", "alice").await;
        // The claim itself emitted an event while it was in flight.
        recent.remember("doc:1", "alice", None, fence, generation);
        assert_eq!(recent.fence("doc:1", "alice", None), None);
    }

    #[tokio::test]
    async fn forget_all_forgets_every_resource() {
        let store = MemoryLockStore::new();
        let recent = RecentClaims::new(store);
        let generation = recent.generation();
        recent.remember("doc:1", "alice", None, 1, generation);
        recent.remember("doc:2", "bob", None, 2, generation);
        recent.forget_all();
        assert_eq!(recent.fence("doc:1", "alice", None), None);
        assert_eq!(recent.fence("doc:2", "bob", None), None);
    }
}
