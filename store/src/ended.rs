//! Sign-in sessions that ended before their time (logout), as this process knows them, so
//! that a session cookie is refused by every proxy and control plane from the moment of its
//! logout.
//!
//! The lock store keeps the ended sessions ([`LockStore::end_session`]) and announces each one
//! on its event stream. Asking the store on every request would add a round trip to the held
//! path, so each instance keeps its own copy: the events feed it as requests come (with the
//! memory store an event arrives before the logout call returns, so nothing is ever late), and
//! the whole set is read back from the store at start and whenever events may have been
//! missed (the subscription lagged or was replaced). Checking a session is one map lookup.
//!
//! What remains: between a Redis subscription dropping and its replacement, a logout on
//! another instance reaches this one when the set is read back, a moment later.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::broadcast::{self, error::TryRecvError};
use tokio::sync::Notify;

use crate::error::StoreError;
use crate::event::{EventKind, LockEvent};
use crate::lock::UnixMillis;
use crate::lock_store::{LockStore, MAX_ENDED_SESSIONS};

/// The ended sign-in sessions this instance knows of.
pub struct EndedSessions {
    store: Arc<dyn LockStore>,
    inner: Mutex<Inner>,
    /// Wakes [`EndedSessions::run`] to read the set back.
    reload: Notify,
}

struct Inner {
    events: broadcast::Receiver<LockEvent>,
    /// Session id → until (unix ms), at most [`MAX_ENDED_SESSIONS`]. The ids are random and
    /// come sealed or from the store, so a fast hash is safe.
    ended: HashMap<String, UnixMillis, foldhash::fast::RandomState>,
}

impl EndedSessions {
    pub fn new(store: Arc<dyn LockStore>) -> EndedSessions {
        let events = store.subscribe();
        EndedSessions {
            store,
            inner: Mutex::new(Inner {
                events,
                ended: HashMap::default(),
            }),
            reload: Notify::new(),
        }
    }

    /// Whether sign-in session `id` has ended.
    pub fn has_ended(&self, id: &str) -> bool {
        let mut inner = self.lock();
        inner.catch_up(self.store.as_ref(), &self.reload);
        // Mostly no session has ended early: then neither the clock nor the map is read.
        if inner.ended.is_empty() {
            return false;
        }
        let until = inner.ended.get(id).copied();
        drop(inner);
        until.is_some_and(|until| until > now_ms())
    }

    /// Ends sign-in session `id` until `until` (unix ms) on every instance sharing the store,
    /// and here at once, before its event comes back.
    pub async fn end(&self, id: &str, until: UnixMillis) -> Result<(), StoreError> {
        self.store.end_session(id, until).await?;
        self.note(id, until);
        Ok(())
    }

    fn note(&self, id: &str, until: UnixMillis) {
        let now = now_ms();
        self.lock().insert(id, until, now);
    }

    /// Reads the set back from the store at start and whenever events may have been missed,
    /// for the life of the process. A failed read is tried again a little later.
    pub async fn run(&self) {
        loop {
            match self.store.ended_sessions().await {
                Ok(all) => {
                    let now = now_ms();
                    let mut inner = self.lock();
                    for (id, until) in all {
                        inner.insert(&id, until, now);
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "cannot read the ended sign-in sessions back");
                    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                    continue;
                }
            }
            self.reload.notified().await;
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Inner {
    /// Applies the events that arrived since the last look; asks for a read-back after a gap.
    fn catch_up(&mut self, store: &dyn LockStore, reload: &Notify) {
        loop {
            match self.events.try_recv() {
                Ok(LockEvent {
                    kind: EventKind::SessionEnded { session, until },
                    ..
                }) => self.insert(&session, until, now_ms()),
                Ok(_) => {}
                Err(TryRecvError::Empty) => return,
                Err(TryRecvError::Lagged(_)) => reload.notify_one(),
                Err(TryRecvError::Closed) => {
                    // The store replaced its stream (Redis resubscribed): events were lost.
                    self.events = store.subscribe();
                    reload.notify_one();
                    return;
                }
            }
        }
    }

    fn insert(&mut self, id: &str, until: UnixMillis, now: UnixMillis) {
        if until <= now {
            return;
        }
        if self.ended.len() >= MAX_ENDED_SESSIONS && !self.ended.contains_key(id) {
            self.ended.retain(|_, end| *end > now);
            if self.ended.len() >= MAX_ENDED_SESSIONS {
                // As the store does: the soonest to lapse goes first.
                let soonest = self
                    .ended
                    .iter()
                    .min_by_key(|(_, end)| **end)
                    .map(|(id, _)| id.clone());
                if let Some(soonest) = soonest {
                    self.ended.remove(&soonest);
                }
            }
        }
        let end = self.ended.entry(id.to_owned()).or_insert(until);
        *end = (*end).max(until);
    }
}

fn now_ms() -> UnixMillis {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_session_ended_anywhere_is_refused_here_until_its_end() {
        let store: Arc<dyn LockStore> = crate::MemoryLockStore::new();
        let here = EndedSessions::new(store.clone());
        assert!(!here.has_ended("AAAAAAAAAAAAAAAAAAAAAA"));
        store
            .end_session("AAAAAAAAAAAAAAAAAAAAAA", now_ms() + 60_000)
            .await
            .unwrap();
        assert!(here.has_ended("AAAAAAAAAAAAAAAAAAAAAA"));
        assert!(!here.has_ended("BBBBBBBBBBBBBBBBBBBBBB"));
        // An instance that starts later reads it back.
        let later = Arc::new(EndedSessions::new(store.clone()));
        assert!(!later.has_ended("AAAAAAAAAAAAAAAAAAAAAA"));
        let run = tokio::spawn({
            let later = later.clone();
            async move { later.run().await }
        });
        tokio::time::timeout(std::time::Duration::from_secs(5), async {
            while !later.has_ended("AAAAAAAAAAAAAAAAAAAAAA") {
                tokio::task::yield_now().await;
            }
        })
        .await
        .unwrap();
        run.abort();
        // Ended here: known at once. An end already past is not kept.
        here.end("CCCCCCCCCCCCCCCCCCCCCC", now_ms() + 60_000)
            .await
            .unwrap();
        assert!(here.has_ended("CCCCCCCCCCCCCCCCCCCCCC"));
        here.note("DDDDDDDDDDDDDDDDDDDDDD", now_ms().saturating_sub(1));
        assert!(!here.has_ended("DDDDDDDDDDDDDDDDDDDDDD"));
    }

    #[tokio::test]
    async fn the_store_refuses_what_is_not_a_session_id() {
        let store = crate::MemoryLockStore::new();
        for bad in ["", "a b", "x/y", &"a".repeat(crate::MAX_SESSION_ID + 1)] {
            assert!(
                store.end_session(bad, now_ms() + 1_000).await.is_err(),
                "{bad:?}"
            );
        }
        assert!(store.ended_sessions().await.unwrap().is_empty());
    }
}
