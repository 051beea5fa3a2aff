//! The audit trail: what happened to locks and rules, who did it, and when.
//!
//! [`AuditEvent`] is the one record every audit entry is, whether it came from the lock event
//! stream or from a rule change. [`EventLog`] keeps them durably and streams new ones to live
//! viewers in this process. Renewals are not recorded: they carry no decision and would drown
//! the trail (a holder's page renews every few seconds).
//!
//! This module knows lock events and rules as data; it knows nothing about HTTP or where a
//! viewer sits.

use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;

use crate::event::{EventKind, LockEvent, ReleaseReason};
use crate::lock::{Holder, UnixMillis};
use crate::rule_store::short_hash;

/// Most events a query returns at once.
pub const MAX_QUERY_LIMIT: usize = 500;

/// Events a query returns when it names no limit.
pub const DEFAULT_QUERY_LIMIT: usize = 100;

/// What kind of thing happened. Stored and filtered by its snake_case name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuditKind {
    Claimed,
    /// The holder let go, or its last banner socket closed (see `reason`).
    Released,
    /// The lease lapsed without renewal.
    Expired,
    TakenOver,
    /// An admin released the lock (`user` is the admin).
    ForceReleased,
    /// A request was refused because someone else held the lock.
    Denied,
    AccessRequested,
    /// A freed resource was offered to the head of its wait queue (`user`).
    Offered,
    RuleCreated,
    RuleUpdated,
    RuleDeleted,
}

impl AuditKind {
    pub const ALL: [AuditKind; 11] = [
        AuditKind::Claimed,
        AuditKind::Released,
        AuditKind::Expired,
        AuditKind::TakenOver,
        AuditKind::ForceReleased,
        AuditKind::Denied,
        AuditKind::AccessRequested,
        AuditKind::Offered,
        AuditKind::RuleCreated,
        AuditKind::RuleUpdated,
        AuditKind::RuleDeleted,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            AuditKind::Claimed => "claimed",
            AuditKind::Released => "released",
            AuditKind::Expired => "expired",
            AuditKind::TakenOver => "taken_over",
            AuditKind::ForceReleased => "force_released",
            AuditKind::Denied => "denied",
            AuditKind::AccessRequested => "access_requested",
            AuditKind::Offered => "offered",
            AuditKind::RuleCreated => "rule_created",
            AuditKind::RuleUpdated => "rule_updated",
            AuditKind::RuleDeleted => "rule_deleted",
        }
    }

    /// The kind with this wire name.
    pub fn parse(name: &str) -> Option<AuditKind> {
        AuditKind::ALL
            .into_iter()
            .find(|kind| kind.as_str() == name)
    }
}

/// One audit entry.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AuditEvent {
    /// Unique, and ordered like `at`: ids sort oldest to newest, so an id is also a cursor.
    pub id: String,
    pub at: UnixMillis,
    pub kind: AuditKind,
    /// The lock key, for lock events.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource: Option<String>,
    /// Who acted: the claimant, the admin, the user who took over or asked for access.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// Who holds the lock after the event, as `{"id", "name", "session"}` ([`holder_wire`]).
    #[serde(default, skip_serializing_if = "Option::is_none", with = "holder_wire")]
    pub holder: Option<Holder>,
    /// Who held it before, for releases, takeovers and force releases.
    #[serde(default, skip_serializing_if = "Option::is_none", with = "holder_wire")]
    pub previous_holder: Option<Holder>,
    /// The rule that claimed the lock, or the rule that was changed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rule: Option<String>,
    /// The proxy instance that holds (or held) the lock.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance: Option<String>,
    /// Why a lock was released (`client` or `grace`), or why a claim was denied past a limit
    /// rather than because someone held the lock (`max_per_user` or `claims_per_minute`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Kind-specific data; for rule changes `{"before": rule|null, "after": rule|null}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<serde_json::Value>,
}

impl AuditEvent {
    /// An event of `kind` at `at` with every optional field empty. `discriminator` makes the id
    /// unique among events of the same millisecond; equal inputs give equal ids, which is how
    /// two control planes recording the same lock event store it once.
    pub fn new(kind: AuditKind, at: UnixMillis, discriminator: &str) -> AuditEvent {
        let seed = format!("{}\u{0}{at}\u{0}{discriminator}", kind.as_str());
        let hash = short_hash(seed.as_bytes());
        AuditEvent {
            id: format!("{at:013}-{}", &hash[..12]),
            at,
            kind,
            resource: None,
            user: None,
            holder: None,
            previous_holder: None,
            rule: None,
            instance: None,
            reason: None,
            detail: None,
        }
    }

    /// A rule change by `user`. `before` and `after` are the rule as it was and as it is
    /// (`None` for a create's before and a delete's after).
    pub fn rule_change(
        kind: AuditKind,
        at: UnixMillis,
        user: &str,
        rule_id: &str,
        before: Option<&rules::Rule>,
        after: Option<&rules::Rule>,
    ) -> AuditEvent {
        let nonce: u64 = rand::random();
        let mut event = AuditEvent::new(kind, at, &format!("{rule_id}\u{0}{nonce:x}"));
        event.user = Some(user.to_owned());
        event.rule = Some(rule_id.to_owned());
        event.detail = Some(serde_json::json!({ "before": before, "after": after }));
        event
    }

    /// The audit entry for a lock event.
    pub fn from_lock_event(event: &LockEvent) -> AuditEvent {
        let lock = event.lock.as_ref();
        let previous = event.previous.as_ref();
        let fence = lock.or(previous).map_or(0, |l| l.fence);
        let (kind, user, reason) = match &event.kind {
            EventKind::Claimed => (
                AuditKind::Claimed,
                lock.map(|l| l.holder.user.clone()),
                None,
            ),
            EventKind::Released { reason } => match reason {
                ReleaseReason::Client | ReleaseReason::Grace | ReleaseReason::Idle => (
                    AuditKind::Released,
                    previous.map(|l| l.holder.user.clone()),
                    Some(match reason {
                        ReleaseReason::Client => "client",
                        ReleaseReason::Idle => "idle",
                        _ => "grace",
                    }),
                ),
                ReleaseReason::Expired => (AuditKind::Expired, None, None),
                ReleaseReason::TakenOver => (AuditKind::TakenOver, None, None),
                ReleaseReason::Forced { by } => (AuditKind::ForceReleased, Some(by.clone()), None),
            },
            EventKind::TakenOver { by } => (AuditKind::TakenOver, Some(by.user.clone()), None),
            EventKind::AccessRequested { by } => {
                (AuditKind::AccessRequested, Some(by.user.clone()), None)
            }
            // Not recorded (see `EventKind::is_audited`); described as what it carries.
            EventKind::PresenceChanged => (
                AuditKind::AccessRequested,
                lock.map(|l| l.holder.user.clone()),
                Some("presence"),
            ),
            EventKind::QueueChanged { queue, .. } => (
                AuditKind::Offered,
                queue.offer.as_ref().map(|offer| offer.holder.user.clone()),
                None,
            ),
            EventKind::StashChanged { user } => (
                AuditKind::AccessRequested,
                Some(user.clone()),
                Some("stash"),
            ),
            EventKind::SessionEnded { .. } => (AuditKind::AccessRequested, None, Some("session")),
        };
        let discriminator = format!(
            "{}\u{0}{fence}\u{0}{}",
            event.resource,
            user.as_deref().unwrap_or("")
        );
        let mut audit = AuditEvent::new(kind, event.at, &discriminator);
        audit.resource = Some(event.resource.clone());
        audit.user = user;
        audit.holder = lock.map(|l| l.holder.clone());
        audit.previous_holder = previous.map(|l| l.holder.clone());
        audit.rule = lock.or(previous).map(|l| l.rule.clone());
        audit.instance = lock.or(previous).map(|l| l.instance.clone());
        audit.reason = reason.map(str::to_owned);
        audit
    }
}

/// A holder as the audit trail writes it: `{"id", "name", "session"}`, the shape the locks API,
/// the banner protocol and the 423 body use for a person, so one reader serves them all.
/// Entries written before the trail used this shape named the id `user`; they still read.
mod holder_wire {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    use crate::lock::Holder;

    #[derive(Serialize)]
    struct Out<'a> {
        id: &'a str,
        name: &'a str,
        session: Option<&'a str>,
    }

    #[derive(Deserialize)]
    struct In {
        #[serde(alias = "user")]
        id: String,
        name: String,
        #[serde(default)]
        session: Option<String>,
    }

    // serde's `with` hands over the field by reference.
    #[allow(clippy::ref_option)]
    pub fn serialize<S: Serializer>(holder: &Option<Holder>, s: S) -> Result<S::Ok, S::Error> {
        holder
            .as_ref()
            .map(|h| Out {
                id: &h.user,
                name: &h.name,
                session: h.session.as_deref(),
            })
            .serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Holder>, D::Error> {
        Ok(Option::<In>::deserialize(d)?.map(|h| Holder {
            user: h.id,
            name: h.name,
            session: h.session,
        }))
    }
}

/// Which events a query wants, newest first.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EventQuery {
    pub resource: Option<String>,
    pub user: Option<String>,
    pub kind: Option<AuditKind>,
    /// At most this many; clamped to 1..=[`MAX_QUERY_LIMIT`], [`DEFAULT_QUERY_LIMIT`] when unset.
    pub limit: Option<usize>,
    /// Only events older than the event with this id: the cursor for the next page.
    pub before: Option<String>,
}

impl EventQuery {
    pub fn effective_limit(&self) -> usize {
        self.limit
            .unwrap_or(DEFAULT_QUERY_LIMIT)
            .clamp(1, MAX_QUERY_LIMIT)
    }

    /// Whether `event` passes every filter (the cursor and the limit excepted).
    pub fn matches(&self, event: &AuditEvent) -> bool {
        self.resource
            .as_ref()
            .is_none_or(|r| event.resource.as_ref() == Some(r))
            && self
                .user
                .as_ref()
                .is_none_or(|u| event.user.as_ref() == Some(u))
            && self.kind.is_none_or(|k| event.kind == k)
    }
}

/// Why the event log could not answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EventLogError {
    #[error("event log unavailable: {0}")]
    Unavailable(String),
}

/// Durable audit storage with a live feed.
#[async_trait::async_trait]
pub trait EventLog: Send + Sync + 'static {
    /// Stores `event` and, once stored, sends it to this process's subscribers. Appending an
    /// event whose id is already stored succeeds without storing it twice.
    async fn append(&self, event: AuditEvent) -> Result<(), EventLogError>;

    /// Stored events matching `query`, newest first.
    async fn query(&self, query: &EventQuery) -> Result<Vec<AuditEvent>, EventLogError>;

    /// Every event appended through this handle from now on.
    fn subscribe(&self) -> broadcast::Receiver<AuditEvent>;
}

/// Room for a burst of events while a slow live viewer catches up.
pub(crate) const FEED_CAPACITY: usize = 1024;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lock::Lock;

    fn lock(user: &str, fence: u64) -> Lock {
        Lock {
            resource: "doc:1".into(),
            rule: "edit".into(),
            holder: Holder {
                user: user.into(),
                name: user.to_uppercase(),
                session: None,
            },
            since: 1,
            expires: 2,
            fence,
            instance: "p1".into(),
            active: 1,
        }
    }

    #[test]
    fn kinds_round_trip_by_name() {
        for kind in AuditKind::ALL {
            assert_eq!(AuditKind::parse(kind.as_str()), Some(kind));
            assert_eq!(
                serde_json::to_value(kind).unwrap(),
                serde_json::json!(kind.as_str())
            );
        }
        assert_eq!(AuditKind::parse("renewed"), None);
    }

    #[test]
    fn a_force_release_names_the_admin_and_the_former_holder() {
        let event = LockEvent {
            kind: EventKind::Released {
                reason: ReleaseReason::Forced { by: "root".into() },
            },
            resource: "doc:1".into(),
            lock: None,
            previous: Some(lock("alice", 4)),
            at: 1_700_000_000_000,
        };
        let audit = AuditEvent::from_lock_event(&event);
        assert_eq!(audit.kind, AuditKind::ForceReleased);
        assert_eq!(audit.user.as_deref(), Some("root"));
        assert_eq!(audit.previous_holder.unwrap().user, "alice");
        assert_eq!(audit.holder, None);
        assert_eq!(audit.rule.as_deref(), Some("edit"));
        assert_eq!(audit.instance.as_deref(), Some("p1"));
        assert!(audit.id.starts_with("1700000000000-"));
    }

    #[test]
    fn holders_are_written_as_id_and_name_and_older_entries_still_read() {
        let event = LockEvent {
            kind: EventKind::Claimed,
            resource: "doc:1".into(),
            lock: Some(lock("alice", 7)),
            previous: None,
            at: 5,
        };
        let audit = AuditEvent::from_lock_event(&event);
        let json = serde_json::to_value(&audit).unwrap();
        assert_eq!(
            json["holder"],
            serde_json::json!({"id": "alice", "name": "ALICE", "session": null})
        );
        let mut old = json.clone();
        old["holder"] = serde_json::json!({"user": "alice", "name": "ALICE"});
        let read: AuditEvent = serde_json::from_value(old).unwrap();
        assert_eq!(read, audit);
        let read: AuditEvent = serde_json::from_value(json).unwrap();
        assert_eq!(read, audit);
    }

    #[test]
    fn the_same_lock_event_always_gets_the_same_id() {
        let event = LockEvent {
            kind: EventKind::Claimed,
            resource: "doc:1".into(),
            lock: Some(lock("alice", 7)),
            previous: None,
            at: 5,
        };
        let a = AuditEvent::from_lock_event(&event);
        assert_eq!(a.id, AuditEvent::from_lock_event(&event).id);
        assert_eq!(a.kind, AuditKind::Claimed);
        assert_eq!(a.user.as_deref(), Some("alice"));
        let mut later = event.clone();
        later.lock = Some(lock("alice", 8));
        assert_ne!(a.id, AuditEvent::from_lock_event(&later).id);
    }

    #[test]
    fn releases_carry_their_reason() {
        let event = LockEvent {
            kind: EventKind::Released {
                reason: ReleaseReason::Grace,
            },
            resource: "doc:1".into(),
            lock: None,
            previous: Some(lock("bob", 2)),
            at: 9,
        };
        let audit = AuditEvent::from_lock_event(&event);
        assert_eq!(audit.kind, AuditKind::Released);
        assert_eq!(audit.reason.as_deref(), Some("grace"));
        assert_eq!(audit.user.as_deref(), Some("bob"));
    }

    #[test]
    fn ids_sort_like_time() {
        let a = AuditEvent::new(AuditKind::Claimed, 999, "x");
        let b = AuditEvent::new(AuditKind::Claimed, 1_000, "x");
        assert!(a.id < b.id);
    }

    #[test]
    fn query_filters_and_clamps() {
        let mut event = AuditEvent::new(AuditKind::Denied, 1, "x");
        event.resource = Some("doc:1".into());
        event.user = Some("bob".into());
        let mut query = EventQuery {
            resource: Some("doc:1".into()),
            ..EventQuery::default()
        };
        assert!(query.matches(&event));
        query.user = Some("alice".into());
        assert!(!query.matches(&event));
        query.user = None;
        query.kind = Some(AuditKind::Claimed);
        assert!(!query.matches(&event));
        assert_eq!(query.effective_limit(), DEFAULT_QUERY_LIMIT);
        query.limit = Some(0);
        assert_eq!(query.effective_limit(), 1);
        query.limit = Some(1_000_000);
        assert_eq!(query.effective_limit(), MAX_QUERY_LIMIT);
    }
}
