//! The banner hub: which local banner sockets watch which resource, and the fan-out of lock
//! events to them.
//!
//! The hub only routes. It hands each socket the shared event, and the socket works out what
//! its own viewer should see (`you`, `can_takeover`), so one event costs one `Arc` clone per
//! watcher. Events reach the hub from the lock store's stream, which on Redis carries every
//! instance's changes, so a watcher here hears about a release anywhere.
//!
//! One kind is routed by user rather than by resource: a change to a user's kept changes
//! (`StashChanged`) goes to every local socket of that user, whatever they watch, and to no
//! one else's. Another by sign-in session: the end of one (`SessionEnded`, a logout on any
//! instance) goes to every local socket opened under it.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use serde_json::{json, Value};
use store::{EventKind, Lock, LockEvent, LockStore};
use tokio::sync::{broadcast, mpsc};

use crate::metrics::Metrics;
use crate::presence::PresenceBoard;
use crate::time_fmt::{now_ms, rfc3339};

/// Banner sockets one user may have open on one instance (tabs, windows, devices).
pub const MAX_SOCKETS_PER_USER: usize = 32;

/// Queue depth per socket. A socket this far behind is resynced rather than buffered further:
/// the last slot is kept for that [`Push::Resync`], so it can always be queued.
const QUEUE: usize = 64;

/// What the hub pushes to a socket task.
#[derive(Clone, Debug)]
pub enum Push {
    Event(Arc<LockEvent>),
    /// Events were missed (the socket or the hub fell behind): re-read the state.
    Resync,
}

#[derive(Default)]
struct Inner {
    sockets: HashMap<u64, Socket>,
    by_resource: HashMap<String, Vec<u64>>,
    /// Each user's sockets; its length is what [`MAX_SOCKETS_PER_USER`] bounds.
    by_user: HashMap<String, Vec<u64>>,
}

struct Socket {
    user: String,
    /// The browser session (`latch_sid`) the socket came from, if it sent one.
    session: Option<String>,
    /// The sign-in session (`latch_oidc`) it was opened under, if any.
    sign_in: Option<String>,
    tx: mpsc::Sender<Push>,
    watching: Vec<String>,
}

impl Socket {
    /// Queues a push without waiting. Events stop one slot short of full, so that the slot
    /// left can take the resync that stands in for everything dropped after it. Every sender
    /// holds the hub's lock, so nothing can take that slot between the check and the send.
    fn push(&self, push: Push) {
        let room = self.tx.capacity();
        let push = match push {
            Push::Event(_) if room <= 1 => Push::Resync,
            push => push,
        };
        // Full means a resync is already queued last; closed means the socket is going away.
        let _ = self.tx.try_send(push);
    }
}

#[derive(Default)]
pub struct Hub {
    next_id: AtomicU64,
    inner: Mutex<Inner>,
    /// Each watched resource's presence: changes noted here instead of pushed to each socket,
    /// and reads shared by the sockets (see [`PresenceBoard`]).
    pub presence: PresenceBoard,
}

#[derive(Debug, thiserror::Error)]
#[error("too many banner sockets for this user (at most {MAX_SOCKETS_PER_USER})")]
pub struct TooManySockets;

impl Hub {
    /// Registers a socket for `user` from browser `session`, opened under sign-in session
    /// `sign_in`; its pushes arrive on the returned receiver.
    pub fn register(
        &self,
        user: &str,
        session: Option<&str>,
        sign_in: Option<&str>,
    ) -> Result<(u64, mpsc::Receiver<Push>), TooManySockets> {
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let mine = inner.by_user.entry(user.to_string()).or_default();
        if mine.len() >= MAX_SOCKETS_PER_USER {
            return Err(TooManySockets);
        }
        mine.push(id);
        let (tx, rx) = mpsc::channel(QUEUE);
        inner.sockets.insert(
            id,
            Socket {
                user: user.to_string(),
                session: session.map(str::to_string),
                sign_in: sign_in.map(str::to_string),
                tx,
                watching: Vec::new(),
            },
        );
        Ok((id, rx))
    }

    pub fn unregister(&self, id: u64) {
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let Some(socket) = inner.sockets.remove(&id) else {
            return;
        };
        for resource in &socket.watching {
            if let Some(ids) = inner.by_resource.get_mut(resource) {
                ids.retain(|i| *i != id);
                if ids.is_empty() {
                    inner.by_resource.remove(resource);
                }
            }
        }
        if let Some(ids) = inner.by_user.get_mut(&socket.user) {
            ids.retain(|i| *i != id);
            if ids.is_empty() {
                inner.by_user.remove(&socket.user);
            }
        }
    }

    pub fn watch(&self, id: u64, resource: &str) {
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let Some(socket) = inner.sockets.get_mut(&id) else {
            return;
        };
        if socket.watching.iter().any(|r| r == resource) {
            return;
        }
        socket.watching.push(resource.to_string());
        inner
            .by_resource
            .entry(resource.to_string())
            .or_default()
            .push(id);
    }

    /// How many local sockets other than `except` watch `resource` for `user` — and, when
    /// `session` is given (a lock owned by one browser session), from that session only: the
    /// same user's other tabs do not keep such a lock alive.
    pub fn others_watching(
        &self,
        resource: &str,
        user: &str,
        session: Option<&str>,
        except: u64,
    ) -> usize {
        let inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let same_owner = |s: &Socket| {
            s.user == user && session.is_none_or(|sid| s.session.as_deref() == Some(sid))
        };
        inner
            .by_resource
            .get(resource)
            .map(|ids| {
                ids.iter()
                    .filter(|i| **i != except)
                    .filter(|i| inner.sockets.get(i).is_some_and(same_owner))
                    .count()
            })
            .unwrap_or(0)
    }

    pub fn socket_count(&self) -> usize {
        self.inner
            .lock()
            .map(|i| i.sockets.len())
            .unwrap_or_default()
    }

    /// Hands one event to every local socket watching its resource, or, for a change to a
    /// user's kept changes, to every local socket of that user; a presence change is noted on
    /// the board instead.
    pub fn dispatch(&self, event: LockEvent) {
        let inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        if let EventKind::SessionEnded { session, .. } = &event.kind {
            // Logouts are rare: a look at every socket costs less than an index kept up.
            let event = Arc::new(event.clone());
            for socket in inner.sockets.values() {
                if socket.sign_in.as_deref() == Some(session.as_str()) {
                    socket.push(Push::Event(event.clone()));
                }
            }
            return;
        }
        let ids = match &event.kind {
            EventKind::StashChanged { user } => inner.by_user.get(user),
            _ => inner.by_resource.get(&event.resource),
        };
        let Some(ids) = ids else {
            return;
        };
        if matches!(event.kind, EventKind::PresenceChanged)
            && !self.presence.changed(&event.resource)
        {
            // A change soon after another: the watchers find it on the board at their next tick.
            return;
        }
        let event = Arc::new(event);
        for id in ids {
            if let Some(socket) = inner.sockets.get(id) {
                socket.push(Push::Event(event.clone()));
            }
        }
    }

    fn resync_all(&self) {
        let inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        for socket in inner.sockets.values() {
            socket.push(Push::Resync);
        }
    }

    /// Follows the lock store's event stream for the life of the process.
    pub async fn run(&self, store: &dyn LockStore, metrics: &Metrics) {
        let mut events = store.subscribe();
        loop {
            match events.recv().await {
                Ok(event) => {
                    let lag = now_ms().saturating_sub(event.at);
                    self.dispatch(event);
                    metrics.event_fanout.observe(lag as f64 / 1000.0);
                }
                Err(broadcast::error::RecvError::Lagged(missed)) => {
                    tracing::warn!(
                        missed,
                        "banner hub fell behind the lock events; resyncing sockets"
                    );
                    self.resync_all();
                }
                Err(broadcast::error::RecvError::Closed) => {
                    // The store was replaced or shut down; resubscribe.
                    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
                    events = store.subscribe();
                    self.resync_all();
                }
            }
        }
    }
}

/// The `lock` message for a held lock, as one viewer sees it.
pub fn lock_json(lock: &Lock, you: bool, same_user: bool, can_takeover: bool) -> Value {
    json!({
        "type": "lock",
        "resource": lock.resource,
        "state": "held",
        "holder": { "id": lock.holder.user, "name": lock.holder.name },
        "you": you,
        "since": rfc3339(lock.since),
        "expires": rfc3339(lock.expires),
        "fence": lock.fence,
        "can_takeover": can_takeover,
        "same_user": same_user,
    })
}

/// The `lock` message for a free resource.
pub fn free_json(resource: &str) -> Value {
    json!({
        "type": "lock",
        "resource": resource,
        "state": "free",
        "holder": null,
        "you": false,
        "since": null,
        "expires": null,
        "fence": null,
        "can_takeover": false,
        "same_user": false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(at: u64) -> LockEvent {
        LockEvent {
            kind: EventKind::Claimed,
            resource: "doc:1".into(),
            lock: None,
            previous: None,
            at,
        }
    }

    fn drain(rx: &mut mpsc::Receiver<Push>) -> Vec<Push> {
        let mut got = Vec::new();
        while let Ok(push) = rx.try_recv() {
            got.push(push);
        }
        got
    }

    #[test]
    fn a_session_end_reaches_the_sockets_of_that_sign_in_only() {
        let hub = Hub::default();
        let (_a1, mut r1) = hub.register("alice", None, Some("one")).unwrap();
        let (_a2, mut r2) = hub.register("alice", None, Some("two")).unwrap();
        let (_b, mut rb) = hub.register("bob", None, None).unwrap();
        hub.dispatch(LockEvent {
            kind: EventKind::SessionEnded {
                session: "one".into(),
                until: 9,
            },
            resource: String::new(),
            ..event(1)
        });
        assert!(matches!(drain(&mut r1).as_slice(), [Push::Event(e)]
            if matches!(&e.kind, EventKind::SessionEnded { session, .. } if session == "one")));
        assert!(drain(&mut r2).is_empty());
        assert!(drain(&mut rb).is_empty());
    }

    #[test]
    fn a_socket_that_falls_behind_gets_a_resync_last() {
        let hub = Hub::default();
        let (id, mut rx) = hub.register("alice", None, None).unwrap();
        hub.watch(id, "doc:1");
        for at in 0..(QUEUE as u64 * 2) {
            hub.dispatch(event(at));
        }
        let got = drain(&mut rx);
        assert_eq!(got.len(), QUEUE);
        assert!(got[..QUEUE - 1].iter().all(|p| matches!(p, Push::Event(_))));
        assert!(matches!(got.last(), Some(Push::Resync)));

        // Once it has caught up, events flow again.
        hub.dispatch(event(999));
        let got = drain(&mut rx);
        assert!(matches!(got.as_slice(), [Push::Event(e)] if e.at == 999));
    }

    #[test]
    fn a_burst_of_presence_changes_is_one_push_and_the_rest_noted_on_the_board() {
        let hub = Hub::default();
        let (id, mut rx) = hub.register("alice", None, None).unwrap();
        hub.watch(id, "doc:1");
        for at in 0..(QUEUE as u64 * 2) {
            hub.dispatch(LockEvent {
                kind: EventKind::PresenceChanged,
                ..event(at)
            });
        }
        let got = drain(&mut rx);
        assert!(
            matches!(got.as_slice(), [Push::Event(e)] if e.at == 0),
            "only the first is pushed, so no resync either: {got:?}"
        );
        assert!(hub.presence.changed_at("doc:1").is_some());

        // A change on a resource nobody here watches is not noted at all.
        hub.dispatch(LockEvent {
            kind: EventKind::PresenceChanged,
            resource: "doc:2".into(),
            ..event(1)
        });
        assert_eq!(hub.presence.changed_at("doc:2"), None);
    }

    #[test]
    fn a_resync_for_everyone_reaches_even_a_full_queue() {
        let hub = Hub::default();
        let (id, mut rx) = hub.register("alice", None, None).unwrap();
        hub.watch(id, "doc:1");
        for at in 0..(QUEUE as u64 - 1) {
            hub.dispatch(event(at));
        }
        hub.resync_all();
        let got = drain(&mut rx);
        assert_eq!(got.len(), QUEUE);
        assert!(matches!(got.last(), Some(Push::Resync)));
    }

    #[test]
    fn only_watchers_of_the_resource_get_its_events() {
        let hub = Hub::default();
        let (a, mut ra) = hub.register("alice", None, None).unwrap();
        let (b, mut rb) = hub.register("bob", None, None).unwrap();
        hub.watch(a, "doc:1");
        hub.watch(b, "doc:2");
        hub.dispatch(event(1));
        assert_eq!(drain(&mut ra).len(), 1);
        assert!(drain(&mut rb).is_empty());
        hub.unregister(a);
        hub.dispatch(event(2));
        assert!(drain(&mut ra).is_empty());
    }

    #[test]
    fn a_stash_change_reaches_every_socket_of_its_user_and_no_one_else() {
        let hub = Hub::default();
        let (a1, mut r1) = hub.register("alice", None, None).unwrap();
        let (_a2, mut r2) = hub.register("alice", None, None).unwrap();
        let (b, mut rb) = hub.register("bob", None, None).unwrap();
        // One of Alice's sockets watches another page, one watches nothing; Bob watches the
        // page the entry was kept for.
        hub.watch(a1, "doc:2");
        hub.watch(b, "doc:1");
        hub.dispatch(LockEvent {
            kind: EventKind::StashChanged {
                user: "alice".into(),
            },
            resource: "doc:1".into(),
            lock: None,
            previous: None,
            at: 1,
        });
        for rx in [&mut r1, &mut r2] {
            let got = drain(rx);
            assert!(
                matches!(got.as_slice(), [Push::Event(e)] if matches!(&e.kind, EventKind::StashChanged { user } if user == "alice")),
                "{got:?}"
            );
        }
        assert!(drain(&mut rb).is_empty());
    }

    #[test]
    fn others_watching_counts_sockets_of_the_same_owner() {
        let hub = Hub::default();
        let (a1, _r1) = hub.register("alice", Some("s1"), None).unwrap();
        let (a2, _r2) = hub.register("alice", Some("s2"), None).unwrap();
        let (b, _r3) = hub.register("bob", Some("s1"), None).unwrap();
        for id in [a1, a2, b] {
            hub.watch(id, "doc:1");
        }
        assert_eq!(hub.others_watching("doc:1", "alice", None, a1), 1);
        assert_eq!(hub.others_watching("doc:1", "alice", Some("s1"), a1), 0);
        assert_eq!(hub.others_watching("doc:1", "alice", Some("s2"), a1), 1);
        assert_eq!(hub.others_watching("doc:2", "alice", None, a1), 0);
    }

    #[test]
    fn sockets_per_user_are_capped_and_freed_on_unregister() {
        let hub = Hub::default();
        let ids: Vec<u64> = (0..MAX_SOCKETS_PER_USER)
            .map(|_| hub.register("alice", None, None).unwrap().0)
            .collect();
        assert!(hub.register("alice", None, None).is_err());
        assert!(hub.register("bob", None, None).is_ok());
        hub.unregister(ids[0]);
        assert!(hub.register("alice", None, None).is_ok());
    }
}
