//! The banner hub: which local banner sockets watch which resource, and the fan-out of lock
//! events to them.
//!
//! The hub only routes. It hands each socket the shared event, and the socket works out what
//! its own viewer should see (`you`, `can_takeover`), so one event costs one `Arc` clone per
//! watcher. Events reach the hub from the lock store's stream, which on Redis carries every
//! instance's changes, so a watcher here hears about a release anywhere.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use serde_json::{json, Value};
use store::{Lock, LockEvent};
use tokio::sync::{broadcast, mpsc};

use crate::state::Latch;
use crate::time_fmt::{now_ms, rfc3339};

/// Banner sockets one user may have open on one instance (tabs, windows, devices).
pub const MAX_SOCKETS_PER_USER: usize = 32;

/// Queue depth per socket. A socket this far behind is resynced rather than buffered further.
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
    per_user: HashMap<String, usize>,
}

struct Socket {
    user: String,
    tx: mpsc::Sender<Push>,
    watching: Vec<String>,
}

#[derive(Default)]
pub struct Hub {
    next_id: AtomicU64,
    inner: Mutex<Inner>,
}

#[derive(Debug, thiserror::Error)]
#[error("too many banner sockets for this user (at most {MAX_SOCKETS_PER_USER})")]
pub struct TooManySockets;

impl Hub {
    /// Registers a socket for `user`; its pushes arrive on the returned receiver.
    pub fn register(&self, user: &str) -> Result<(u64, mpsc::Receiver<Push>), TooManySockets> {
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let count = inner.per_user.entry(user.to_string()).or_default();
        if *count >= MAX_SOCKETS_PER_USER {
            return Err(TooManySockets);
        }
        *count += 1;
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = mpsc::channel(QUEUE);
        inner.sockets.insert(
            id,
            Socket {
                user: user.to_string(),
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
        if let Some(count) = inner.per_user.get_mut(&socket.user) {
            *count -= 1;
            if *count == 0 {
                inner.per_user.remove(&socket.user);
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

    /// How many local sockets other than `except` watch `resource` for `user`.
    pub fn others_watching(&self, resource: &str, user: &str, except: u64) -> usize {
        let inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        inner
            .by_resource
            .get(resource)
            .map(|ids| {
                ids.iter()
                    .filter(|i| **i != except)
                    .filter(|i| inner.sockets.get(i).is_some_and(|s| s.user == user))
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

    /// Hands one event to every local socket watching its resource.
    pub fn dispatch(&self, event: LockEvent) {
        let event = Arc::new(event);
        let inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let Some(ids) = inner.by_resource.get(&event.resource) else {
            return;
        };
        for id in ids {
            if let Some(socket) = inner.sockets.get(id) {
                if socket.tx.try_send(Push::Event(event.clone())).is_err() {
                    // Full: the socket will re-read the state instead of replaying the backlog.
                    let _ = socket.tx.try_send(Push::Resync);
                }
            }
        }
    }

    fn resync_all(&self) {
        let inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        for socket in inner.sockets.values() {
            let _ = socket.tx.try_send(Push::Resync);
        }
    }

    /// Follows the lock store's event stream for the life of the process.
    pub async fn run(latch: Arc<Latch>) {
        let mut events = latch.store.subscribe();
        loop {
            match events.recv().await {
                Ok(event) => {
                    let lag = now_ms().saturating_sub(event.at);
                    latch.hub.dispatch(event);
                    latch
                        .metrics
                        .event_fanout
                        .observe(lag as f64 / 1000.0);
                }
                Err(broadcast::error::RecvError::Lagged(missed)) => {
                    tracing::warn!(missed, "banner hub fell behind the lock events; resyncing sockets");
                    latch.hub.resync_all();
                }
                Err(broadcast::error::RecvError::Closed) => {
                    // The store was replaced or shut down; resubscribe.
                    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
                    events = latch.store.subscribe();
                    latch.hub.resync_all();
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
