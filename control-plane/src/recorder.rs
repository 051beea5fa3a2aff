//! Writing the audit trail: lock events from the lock store's stream, and rule changes from
//! the API, appended to the [`EventLog`].
//!
//! The event log may be down (MongoDB restarting) while locks keep changing. Events that
//! cannot be written are queued in memory, in order, and retried every second, so nothing
//! is lost while the outage is shorter than the queue; past [`MAX_PENDING`] the oldest are
//! dropped and counted in the log.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use store::{AuditEvent, EventLog, LockStore};
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::mpsc;

/// Most events held while the event log is unreachable.
pub const MAX_PENDING: usize = 50_000;

const RETRY_EVERY: Duration = Duration::from_secs(1);

/// The API's handle for recording rule changes.
#[derive(Clone)]
pub struct Recorder {
    log: Arc<dyn EventLog>,
    retry: mpsc::Sender<AuditEvent>,
}

impl Recorder {
    /// Appends at once; if the log is down, hands the event to the background task to retry.
    pub async fn record(&self, event: AuditEvent) {
        if let Err(e) = self.log.append(event.clone()).await {
            tracing::warn!(error = %e, kind = event.kind.as_str(), "audit event queued for retry");
            if self.retry.try_send(event).is_err() {
                tracing::error!("audit retry queue is full; an event was dropped");
            }
        }
    }
}

/// A recorder and the task that must run for it: it follows `locks`' events and retries
/// whatever could not be written. It subscribes now, so no event between this call and the
/// task's start is missed.
pub fn recorder(
    log: Arc<dyn EventLog>,
    locks: &dyn LockStore,
) -> (
    Recorder,
    impl std::future::Future<Output = ()> + Send + 'static,
) {
    let (retry, mut retries) = mpsc::channel::<AuditEvent>(1024);
    let mut lock_events = locks.subscribe();
    let recorder = Recorder {
        log: log.clone(),
        retry,
    };
    let task = async move {
        let mut pending: VecDeque<AuditEvent> = VecDeque::new();
        let mut tick = tokio::time::interval(RETRY_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut lock_stream_open = true;
        loop {
            tokio::select! {
                received = lock_events.recv(), if lock_stream_open => match received {
                    Ok(event) if !AuditEvent::records(&event) => {}
                    Ok(event) => {
                        push(&mut pending, AuditEvent::from_lock_event(&event));
                        flush(log.as_ref(), &mut pending).await;
                    }
                    Err(RecvError::Lagged(skipped)) => {
                        tracing::warn!(skipped, "audit recorder fell behind the lock events; some were not recorded");
                    }
                    Err(RecvError::Closed) => lock_stream_open = false,
                },
                Some(event) = retries.recv() => push(&mut pending, event),
                _ = tick.tick() => {
                    if !pending.is_empty() {
                        flush(log.as_ref(), &mut pending).await;
                    }
                }
            }
        }
    };
    (recorder, task)
}

fn push(pending: &mut VecDeque<AuditEvent>, event: AuditEvent) {
    if pending.len() >= MAX_PENDING {
        pending.pop_front();
        tracing::error!("audit queue is full; the oldest unwritten event was dropped");
    }
    pending.push_back(event);
}

/// Writes queued events in order, stopping at the first failure so order is kept.
async fn flush(log: &dyn EventLog, pending: &mut VecDeque<AuditEvent>) {
    while let Some(event) = pending.front() {
        match log.append(event.clone()).await {
            Ok(()) => {
                pending.pop_front();
            }
            Err(e) => {
                tracing::warn!(error = %e, queued = pending.len(), "audit trail unreachable; events are queued");
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use store::{ClaimRequest, EventQuery, FileEventLog, Holder, MemoryLockStore};

    #[tokio::test]
    async fn lock_events_reach_the_log() {
        let dir = tempfile::tempdir().unwrap();
        let log: Arc<dyn EventLog> = Arc::new(FileEventLog::new(dir.path().join("e.jsonl")));
        let locks = MemoryLockStore::new();
        let (_recorder, task) = recorder(log.clone(), locks.as_ref());
        let task = tokio::spawn(task);
        let request = ClaimRequest {
            resource: "doc:1".into(),
            rule: "edit".into(),
            holder: Holder {
                user: "alice".into(),
                name: "Alice".into(),
                session: None,
            },
            lease: Duration::from_secs(30),
            instance: "p1".into(),
            unsafe_method: false,
            max_per_user: None,
        };
        locks.claim(&request).await.unwrap();
        locks.force_release("doc:1", "root").await.unwrap();
        let mut kinds = Vec::new();
        for _ in 0..50 {
            kinds = log
                .query(&EventQuery::default())
                .await
                .unwrap()
                .into_iter()
                .map(|e| e.kind.as_str())
                .collect();
            if kinds.len() == 2 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        kinds.sort_unstable();
        assert_eq!(kinds, vec!["claimed", "force_released"]);
        task.abort();
    }
}
