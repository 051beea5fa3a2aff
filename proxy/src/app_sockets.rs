//! Which of the app's own long-lived connections on this instance — its WebSockets and its
//! server-sent event streams, both called sockets here — live under which lock, and ending them
//! when their owner loses it.
//!
//! Each fenced socket is registered under its resource with the owner key and the fence it
//! opened under. A task follows the lock store's event stream — on Redis every instance's
//! events, so a take-over on another instance reaches the sockets here — and any event after
//! which the resource is no longer held by that owner under that fence ends the socket: a
//! release of any kind, a take-over, an expiry, or a new grant under another fence. The rule
//! is the lock's state after the event, not the event's kind, so kinds this module does not
//! know (presence, queue changes) close nothing. An event that says an owner lost the lock is
//! confirmed against the store before anything is closed: events reach this task after the
//! fact, so one applied before a socket registered (a presence change while the resource was
//! still free, then the claim the socket opened under) would otherwise end it. If events may
//! have been missed (the subscription lagged or was lost), every registered resource is read
//! back from the store.
//!
//! The end of a sign-in session (`SessionEnded`, a logout on any instance) ends every socket
//! opened under it, whatever lock it lives under.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use store::{EventKind, Lock, LockEvent, LockStore, ReleaseReason};
use tokio::sync::{broadcast, oneshot};

/// The app's fenced WebSockets and event streams, together, one user may have open on one
/// instance.
pub const MAX_SOCKETS_PER_USER: usize = 16;

/// Longest close reason a WebSocket close frame carries (125 bytes less the code).
const MAX_REASON: usize = 123;

#[derive(Default)]
pub struct AppSockets {
    next_id: AtomicU64,
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    by_resource: HashMap<String, Vec<Entry>>,
    per_user: HashMap<String, usize>,
}

struct Entry {
    id: u64,
    user: String,
    owner: String,
    fence: u64,
    /// The sign-in session (`latch_oidc`) it was opened under, if any.
    sign_in: Option<String>,
    /// Takes why the socket must end: its owner lost the lock, or signed out.
    lost: oneshot::Sender<Ending>,
}

/// Why a registered socket must end.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ending {
    /// The owner lost the lock; the close reason.
    Lost(String),
    /// The sign-in session it was opened under ended (a logout on any instance).
    SignedOut,
}

/// One registered socket; the receiver gets why it must end.
pub struct Registration {
    pub id: u64,
    pub lost: oneshot::Receiver<Ending>,
}

#[derive(Debug, thiserror::Error)]
#[error(
    "too many fenced WebSockets and event streams of the app for this user (at most \
     {MAX_SOCKETS_PER_USER} on this instance)"
)]
pub struct TooManySockets;

impl AppSockets {
    /// Registers a socket of `user` (owner key `owner`) that holds `resource` under `fence`,
    /// opened under sign-in session `sign_in`.
    pub fn register(
        &self,
        resource: &str,
        user: &str,
        owner: &str,
        fence: u64,
        sign_in: Option<&str>,
    ) -> Result<Registration, TooManySockets> {
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let count = inner.per_user.entry(user.to_owned()).or_default();
        if *count >= MAX_SOCKETS_PER_USER {
            return Err(TooManySockets);
        }
        *count += 1;
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (lost, rx) = oneshot::channel();
        inner
            .by_resource
            .entry(resource.to_owned())
            .or_default()
            .push(Entry {
                id,
                user: user.to_owned(),
                owner: owner.to_owned(),
                fence,
                sign_in: sign_in.map(str::to_owned),
                lost,
            });
        Ok(Registration { id, lost: rx })
    }

    /// Takes a socket out, whether or not it was closed for a lost lock.
    pub fn unregister(&self, resource: &str, id: u64) {
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let Some(entries) = inner.by_resource.get_mut(resource) else {
            return;
        };
        let Some(at) = entries.iter().position(|e| e.id == id) else {
            return;
        };
        let entry = entries.swap_remove(at);
        if entries.is_empty() {
            inner.by_resource.remove(resource);
        }
        release_slot(&mut inner.per_user, &entry.user);
    }

    /// How many fenced sockets are registered.
    #[cfg(test)]
    fn count(&self) -> usize {
        let inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        inner.by_resource.values().map(Vec::len).sum()
    }

    /// Closes the sockets on `resource` whose owner does not hold it under their fence in
    /// `current`, telling each `reason`. Returns how many were closed.
    pub fn settle(&self, resource: &str, current: Option<&Lock>, reason: &str) -> usize {
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let Some(entries) = inner.by_resource.get_mut(resource) else {
            return 0;
        };
        let (keep, lost): (Vec<Entry>, Vec<Entry>) =
            entries.drain(..).partition(|e| still_held(e, current));
        *entries = keep;
        if entries.is_empty() {
            inner.by_resource.remove(resource);
        }
        let closed = lost.len();
        for entry in lost {
            release_slot(&mut inner.per_user, &entry.user);
            // The socket may be ending on its own; then nobody listens, which is fine.
            let _ = entry.lost.send(Ending::Lost(reason.to_owned()));
        }
        closed
    }

    /// Closes every socket opened under sign-in session `session`. Returns how many.
    pub fn sign_out(&self, session: &str) -> usize {
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let mut ended = Vec::new();
        inner.by_resource.retain(|_, entries| {
            let (out, keep): (Vec<Entry>, Vec<Entry>) = entries
                .drain(..)
                .partition(|e| e.sign_in.as_deref() == Some(session));
            *entries = keep;
            ended.extend(out);
            !entries.is_empty()
        });
        let closed = ended.len();
        for entry in ended {
            release_slot(&mut inner.per_user, &entry.user);
            let _ = entry.lost.send(Ending::SignedOut);
        }
        closed
    }

    /// Applies one lock event. Returns how many sockets it closed.
    ///
    /// An event after which some registered owner no longer holds the lock under their fence
    /// is confirmed by reading the lock back: the event may predate a socket registered since,
    /// which read the lock back as it registered. Only a loss reads the store; presence and
    /// queue changes cost nothing. If the store cannot be read, the event is trusted, so a
    /// real loss is never kept open for want of a confirmation.
    pub async fn apply(&self, event: &LockEvent, store: &dyn LockStore) -> usize {
        if let EventKind::SessionEnded { session, .. } = &event.kind {
            return self.sign_out(session);
        }
        // An event that carries no lock (a stash change) says nothing of who holds it.
        if !event.kind.carries_lock() || !self.any_lost(&event.resource, event.lock.as_ref()) {
            return 0;
        }
        let current = match store.get(&event.resource).await {
            Ok(current) => current,
            Err(e) => {
                tracing::warn!(resource = %event.resource, error = %e, "cannot confirm a lock loss with the store; closing the app sockets the event says lost it");
                event.lock.clone()
            }
        };
        self.settle(&event.resource, current.as_ref(), &close_reason(event))
    }

    /// Whether some socket registered on `resource` is not held under its fence in `lock`.
    fn any_lost(&self, resource: &str, lock: Option<&Lock>) -> bool {
        let inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        inner
            .by_resource
            .get(resource)
            .is_some_and(|entries| entries.iter().any(|e| !still_held(e, lock)))
    }

    /// Reads every registered resource back from the store, for when events may have been
    /// missed.
    async fn recheck(&self, store: &dyn LockStore) -> usize {
        let resources: Vec<String> = {
            let inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
            inner.by_resource.keys().cloned().collect()
        };
        let mut closed = 0;
        for resource in resources {
            match store.get(&resource).await {
                Ok(current) => closed += self.settle(&resource, current.as_ref(), "lock lost"),
                Err(e) => {
                    tracing::warn!(resource = %resource, error = %e, "cannot re-read a lock an app socket lives under")
                }
            }
        }
        closed
    }

    /// Follows the lock store's event stream for the life of the process. Each connection
    /// counts its own end in the metrics, since it may be ending on its own meanwhile.
    pub async fn run(&self, store: &dyn LockStore) {
        let mut events = store.subscribe();
        loop {
            match events.recv().await {
                Ok(event) => {
                    self.apply(&event, store).await;
                }
                Err(broadcast::error::RecvError::Lagged(missed)) => {
                    tracing::warn!(
                        missed,
                        "app sockets fell behind the lock events; re-reading their locks"
                    );
                    self.recheck(store).await;
                }
                Err(broadcast::error::RecvError::Closed) => {
                    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
                    events = store.subscribe();
                    self.recheck(store).await;
                }
            }
        }
    }
}

/// Whether `entry`'s owner holds `lock` under the fence it registered with.
fn still_held(entry: &Entry, lock: Option<&Lock>) -> bool {
    lock.is_some_and(|lock| lock.fence == entry.fence && lock.owner_key() == entry.owner)
}

fn release_slot(per_user: &mut HashMap<String, usize>, user: &str) {
    if let Some(count) = per_user.get_mut(user) {
        *count -= 1;
        if *count == 0 {
            per_user.remove(user);
        }
    }
}

/// The close frame's reason for the socket of an owner who lost the lock in `event`.
pub fn close_reason(event: &LockEvent) -> String {
    let reason = match &event.kind {
        EventKind::TakenOver { by } => format!("lock taken over by {}", by.name),
        EventKind::Released { reason } => released(reason),
        _ => "lock lost".to_owned(),
    };
    truncate(reason)
}

fn released(reason: &ReleaseReason) -> String {
    match reason {
        ReleaseReason::Forced { by } => format!("lock released by an admin ({by})"),
        ReleaseReason::Expired => "lock expired".to_owned(),
        ReleaseReason::Client => "lock released by its holder".to_owned(),
        ReleaseReason::Grace => "lock released: the page was closed".to_owned(),
        ReleaseReason::Idle => "lock released: its holder was idle".to_owned(),
        ReleaseReason::TakenOver => "lock taken over".to_owned(),
    }
}

fn truncate(mut reason: String) -> String {
    if reason.len() > MAX_REASON {
        let mut end = MAX_REASON;
        while !reason.is_char_boundary(end) {
            end -= 1;
        }
        reason.truncate(end);
    }
    reason
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use store::{ClaimOutcome, ClaimRequest, Holder, MemoryLockStore};

    use super::*;

    fn claim(user: &str, name: &str) -> ClaimRequest {
        ClaimRequest {
            resource: "doc:1".to_owned(),
            rule: "docs".to_owned(),
            holder: holder(user, name),
            lease: Duration::from_secs(60),
            instance: "a".to_owned(),
            unsafe_method: false,
            max_per_user: None,
        }
    }

    /// A store where `user` holds doc:1, the fence it holds it under, and the store's events
    /// from before the claim on.
    async fn held_by(user: &str) -> (Arc<MemoryLockStore>, u64, broadcast::Receiver<LockEvent>) {
        let store = MemoryLockStore::new();
        let events = store.subscribe();
        let ClaimOutcome::Claimed(lock) = store.claim(&claim(user, user)).await.unwrap() else {
            panic!("doc:1 was free");
        };
        (store, lock.fence, events)
    }

    /// A store no request reaches: nothing listens on port 1.
    fn dead_store() -> Arc<store::RedisLockStore> {
        let options = store::RedisOptions::from_url("redis://127.0.0.1:1").unwrap();
        store::RedisLockStore::open(options).unwrap()
    }

    fn holder(user: &str, name: &str) -> Holder {
        Holder {
            user: user.to_owned(),
            name: name.to_owned(),
            session: None,
        }
    }

    fn lock(user: &str, fence: u64) -> Lock {
        Lock {
            resource: "doc:1".to_owned(),
            rule: "docs".to_owned(),
            holder: holder(user, user),
            since: 1,
            expires: 2,
            fence,
            instance: "a".to_owned(),
            active: 1,
        }
    }

    fn event(kind: EventKind, lock: Option<Lock>) -> LockEvent {
        LockEvent {
            kind,
            resource: "doc:1".to_owned(),
            lock,
            previous: None,
            at: 0,
        }
    }

    #[tokio::test]
    async fn a_take_over_closes_the_old_owners_sockets_with_the_new_holders_name() {
        let (store, fence, mut events) = held_by("alice").await;
        let sockets = AppSockets::default();
        let mut alice = sockets
            .register("doc:1", "alice", "alice", fence, None)
            .unwrap();
        store.takeover(&claim("bob", "Bob")).await.unwrap();
        let claimed = events.recv().await.unwrap();
        assert_eq!(claimed.kind, EventKind::Claimed);
        assert_eq!(sockets.apply(&claimed, store.as_ref()).await, 0);
        let taken = events.recv().await.unwrap();
        assert!(
            matches!(taken.kind, EventKind::TakenOver { .. }),
            "{taken:?}"
        );
        assert_eq!(sockets.apply(&taken, store.as_ref()).await, 1);
        assert_eq!(
            alice.lost.try_recv().unwrap(),
            Ending::Lost("lock taken over by Bob".into())
        );
        assert_eq!(sockets.count(), 0);
    }

    #[tokio::test]
    async fn events_that_leave_the_owner_holding_under_the_same_fence_close_nothing() {
        let (store, fence, mut events) = held_by("alice").await;
        let sockets = AppSockets::default();
        let mut alice = sockets
            .register("doc:1", "alice", "alice", fence, None)
            .unwrap();
        let claimed = events.recv().await.unwrap();
        let asked = LockEvent {
            kind: EventKind::AccessRequested {
                by: holder("bob", "Bob"),
            },
            ..claimed.clone()
        };
        assert_eq!(sockets.apply(&asked, store.as_ref()).await, 0);
        assert!(alice.lost.try_recv().is_err());
        // A grant to the same owner under a newer fence is another lock: the old socket goes,
        // even when the release before it was missed.
        store
            .release("doc:1", "alice", ReleaseReason::Client)
            .await
            .unwrap();
        store.claim(&claim("alice", "alice")).await.unwrap();
        let _released = events.recv().await.unwrap();
        let again = events.recv().await.unwrap();
        assert_eq!(again.kind, EventKind::Claimed);
        assert!(again.lock.as_ref().is_some_and(|l| l.fence > fence));
        assert_eq!(sockets.apply(&again, store.as_ref()).await, 1);
        assert_eq!(
            alice.lost.try_recv().unwrap(),
            Ending::Lost("lock lost".into())
        );
    }

    #[tokio::test]
    async fn an_event_from_before_a_socket_registered_does_not_close_it() {
        let store = MemoryLockStore::new();
        let mut events = store.subscribe();
        // A tab shows up while doc:1 is free; its event is still on its way when alice claims
        // it and opens a socket under the claim.
        store
            .presence_join(
                "doc:1",
                "tab1",
                &holder("alice", "alice"),
                Duration::from_secs(60),
            )
            .await
            .unwrap();
        let ClaimOutcome::Claimed(lock) = store.claim(&claim("alice", "alice")).await.unwrap()
        else {
            panic!("doc:1 was free");
        };
        let sockets = AppSockets::default();
        let mut alice = sockets
            .register("doc:1", "alice", "alice", lock.fence, None)
            .unwrap();
        let early = events.recv().await.unwrap();
        assert_eq!(early.kind, EventKind::PresenceChanged);
        assert_eq!(early.lock, None);
        assert_eq!(sockets.apply(&early, store.as_ref()).await, 0);
        let claimed = events.recv().await.unwrap();
        assert_eq!(sockets.apply(&claimed, store.as_ref()).await, 0);
        assert!(alice.lost.try_recv().is_err());
        assert_eq!(sockets.count(), 1);
    }

    #[tokio::test]
    async fn with_the_store_unreadable_an_event_that_says_the_lock_was_lost_is_trusted() {
        let sockets = AppSockets::default();
        let mut alice = sockets
            .register("doc:1", "alice", "alice", 7, None)
            .unwrap();
        let taken = event(
            EventKind::TakenOver {
                by: holder("bob", "Bob"),
            },
            Some(lock("bob", 8)),
        );
        assert_eq!(sockets.apply(&taken, dead_store().as_ref()).await, 1);
        assert_eq!(
            alice.lost.try_recv().unwrap(),
            Ending::Lost("lock taken over by Bob".into())
        );
    }

    #[tokio::test]
    async fn a_session_end_closes_the_sockets_of_that_sign_in_only() {
        let store = MemoryLockStore::new();
        let sockets = AppSockets::default();
        let mut one = sockets
            .register("doc:1", "alice", "alice", 7, Some("one"))
            .unwrap();
        let mut other = sockets
            .register("doc:2", "alice", "alice", 3, Some("two"))
            .unwrap();
        let ended = LockEvent {
            resource: String::new(),
            ..event(
                EventKind::SessionEnded {
                    session: "one".to_owned(),
                    until: 9,
                },
                None,
            )
        };
        assert_eq!(sockets.apply(&ended, store.as_ref()).await, 1);
        assert_eq!(one.lost.try_recv().unwrap(), Ending::SignedOut);
        assert!(other.lost.try_recv().is_err());
        assert_eq!(sockets.count(), 1);
    }

    #[tokio::test]
    async fn a_stash_change_on_the_resource_closes_nothing() {
        let store = MemoryLockStore::new();
        let sockets = AppSockets::default();
        let mut alice = sockets
            .register("doc:1", "alice", "alice", 7, None)
            .unwrap();
        let kept = EventKind::StashChanged {
            user: "alice".to_owned(),
        };
        assert_eq!(sockets.apply(&event(kept, None), store.as_ref()).await, 0);
        assert!(alice.lost.try_recv().is_err());
        assert_eq!(sockets.count(), 1);
    }

    #[test]
    fn every_release_reason_has_its_own_words() {
        let released = |reason| {
            let e = event(EventKind::Released { reason }, None);
            close_reason(&e)
        };
        assert_eq!(released(ReleaseReason::Expired), "lock expired");
        assert_eq!(
            released(ReleaseReason::Forced {
                by: "root".to_owned()
            }),
            "lock released by an admin (root)"
        );
        assert_eq!(
            released(ReleaseReason::Client),
            "lock released by its holder"
        );
        assert_eq!(
            released(ReleaseReason::Grace),
            "lock released: the page was closed"
        );
    }

    #[tokio::test]
    async fn only_the_resource_and_owner_concerned_are_closed() {
        let store = MemoryLockStore::new();
        let sockets = AppSockets::default();
        let mut alice = sockets
            .register("doc:1", "alice", "alice", 7, None)
            .unwrap();
        let mut other = sockets
            .register("doc:2", "alice", "alice", 3, None)
            .unwrap();
        let expired = EventKind::Released {
            reason: ReleaseReason::Expired,
        };
        assert_eq!(
            sockets.apply(&event(expired, None), store.as_ref()).await,
            1
        );
        assert_eq!(
            alice.lost.try_recv().unwrap(),
            Ending::Lost("lock expired".into())
        );
        assert!(other.lost.try_recv().is_err());
        sockets.unregister("doc:2", other.id);
        assert_eq!(sockets.count(), 0);
    }

    #[test]
    fn a_user_has_a_bounded_number_of_sockets_and_gets_a_slot_back_when_one_ends() {
        let sockets = AppSockets::default();
        let ids: Vec<u64> = (0..MAX_SOCKETS_PER_USER)
            .map(|_| {
                sockets
                    .register("doc:1", "alice", "alice", 1, None)
                    .unwrap()
                    .id
            })
            .collect();
        assert!(sockets
            .register("doc:1", "alice", "alice", 1, None)
            .is_err());
        assert!(sockets.register("doc:1", "bob", "bob", 1, None).is_ok());
        sockets.unregister("doc:1", ids[0]);
        assert!(sockets.register("doc:1", "alice", "alice", 1, None).is_ok());
    }

    #[test]
    fn a_long_reason_is_cut_to_fit_a_close_frame_on_a_character_boundary() {
        let name = "é".repeat(100);
        let kind = EventKind::TakenOver {
            by: holder("bob", &name),
        };
        let reason = close_reason(&event(kind, None));
        assert!(reason.len() <= MAX_REASON);
        assert!(reason.starts_with("lock taken over by é"));
    }
}
