//! Audit events the proxy itself produces: denials. (Claims, releases and takeovers come from
//! the lock store's event stream and are recorded by the control plane.)
//!
//! The request path never waits on the audit log: events go into a bounded queue drained by a
//! background task, and a full queue drops the event with a warning. Repeated denials of the
//! same user on the same resource are recorded once per [`DENIAL_WINDOW`], so a client that
//! hammers a locked page cannot flood the trail.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use store::{AuditEvent, AuditKind, EventLog, Lock};
use tokio::sync::mpsc;

use crate::task::Task;
use crate::time_fmt::now_ms;

/// One denial per (resource, user) per window is recorded.
pub const DENIAL_WINDOW_MS: u64 = 10_000;
const QUEUE: usize = 1024;
/// Bound on the de-duplication memory; older entries are dropped first when it is full.
const RECENT_MAX: usize = 10_000;

pub struct Auditor {
    tx: mpsc::Sender<AuditEvent>,
    recent: Mutex<HashMap<(String, String), u64>>,
}

impl Auditor {
    /// The auditor and the task that writes its events to `log`.
    pub fn new(log: Arc<dyn EventLog>) -> (Auditor, Task) {
        let (tx, mut rx) = mpsc::channel::<AuditEvent>(QUEUE);
        let task: Task = Box::pin(async move {
            while let Some(event) = rx.recv().await {
                if let Err(e) = log.append(event).await {
                    tracing::warn!(error = %e, "audit log unavailable; denial not recorded");
                }
            }
        });
        (
            Auditor {
                tx,
                recent: Mutex::new(HashMap::new()),
            },
            task,
        )
    }

    pub fn denied(
        &self,
        rule: &str,
        resource: &str,
        user: &str,
        holder: Option<&Lock>,
        instance: &str,
    ) {
        self.record(rule, resource, user, holder, instance, None);
    }

    /// A claim refused past a limit of the user's own rather than because someone held the
    /// lock: recorded as a denial with `reason` (`max_per_user` or `claims_per_minute`) and
    /// `detail`, de-duplicated like every denial.
    pub fn limited(
        &self,
        rule: &str,
        resource: &str,
        user: &str,
        instance: &str,
        reason: &str,
        detail: serde_json::Value,
    ) {
        let why = (reason, detail);
        self.record(rule, resource, user, None, instance, Some(why));
    }

    fn record(
        &self,
        rule: &str,
        resource: &str,
        user: &str,
        holder: Option<&Lock>,
        instance: &str,
        why: Option<(&str, serde_json::Value)>,
    ) {
        let now = now_ms();
        {
            let mut recent = self.recent.lock().unwrap_or_else(|e| e.into_inner());
            let key = (resource.to_string(), user.to_string());
            if recent
                .get(&key)
                .is_some_and(|at| now.saturating_sub(*at) < DENIAL_WINDOW_MS)
            {
                return;
            }
            if recent.len() >= RECENT_MAX {
                recent.retain(|_, at| now.saturating_sub(*at) < DENIAL_WINDOW_MS);
                if recent.len() >= RECENT_MAX {
                    recent.clear();
                }
            }
            recent.insert(key, now);
        }
        let mut event = AuditEvent::new(
            AuditKind::Denied,
            now,
            &format!("{resource}\u{0}{user}\u{0}{instance}"),
        );
        event.resource = Some(resource.to_string());
        event.user = Some(user.to_string());
        event.rule = Some(rule.to_string());
        event.instance = Some(instance.to_string());
        event.holder = holder.map(|l| l.holder.clone());
        if let Some((reason, detail)) = why {
            event.reason = Some(reason.to_string());
            event.detail = Some(detail);
        }
        if self.tx.try_send(event).is_err() {
            tracing::warn!(resource, user, "audit queue full; denial not recorded");
        }
    }
}
