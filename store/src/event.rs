//! Lock events: the one record every state change of a lock produces.
//!
//! An event is self-contained (it carries the lock before and after), so it can cross process
//! boundaries over pub/sub and be understood without asking the store again. Consumers are the
//! banner sockets, the admin UI's live views and the audit trail; this module knows none of them.

use serde::{Deserialize, Serialize};

use crate::lock::{Holder, Lock, QueueState, UnixMillis};

/// Why a lock stopped being held.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ReleaseReason {
    /// The holder let go (a release message or beacon).
    Client,
    /// The holder's last banner socket closed and did not come back in time.
    Grace,
    /// The lease lapsed without renewal.
    Expired,
    /// Someone took it over.
    TakenOver,
    /// An admin released it.
    Forced { by: String },
    /// The holder showed no activity for the rule's idle time. Voluntary: nothing is stale.
    Idle,
}

impl ReleaseReason {
    /// Whether the former holder must be treated as having lost the lock, so that a stale tab
    /// cannot write. A voluntary release leaves nothing stale behind.
    pub fn displaces_holder(&self) -> bool {
        !matches!(self, Self::Client | Self::Grace | Self::Idle)
    }
}

/// What happened.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum EventKind {
    /// A free resource got a holder.
    Claimed,
    /// A resource became free.
    Released { reason: ReleaseReason },
    /// A held resource went straight to another holder.
    TakenOver { by: Holder },
    /// Someone asked the holder to let go. Changes nothing.
    AccessRequested { by: Holder },
    /// The set of banners present on the resource changed (a tab joined or left). Changes no
    /// lock: `lock` is the current lock, `previous` is `None`. Consumers re-read
    /// [`presence`](crate::LockStore::presence).
    PresenceChanged,
    /// The wait queue or the offer of a resource changed; `queue` is how it stands now, so
    /// consumers need not read it again. `offered` is true when this change made a new offer
    /// (to `queue.offer`), which is the only queue change the audit trail records.
    QueueChanged { queue: QueueState, offered: bool },
    /// `user`'s kept changes (the [stash](crate::stash)) changed: an entry was kept or
    /// deleted. `resource` is the entry's resource; `lock` and `previous` are `None` and say
    /// nothing of its lock (see [`EventKind::carries_lock`]). The event names the user and
    /// nothing of the entry: consumers re-read [`stash_list`](crate::LockStore::stash_list)
    /// for that user only, so it reaches no one else.
    StashChanged { user: String },
    /// Sign-in session `session` (the id sealed in its `latch_oidc` cookie) ended before its
    /// time, by logout: every instance refuses its cookie until `until` (unix milliseconds,
    /// the session's own end) and closes the sockets opened under it. `resource` is empty;
    /// `lock` and `previous` are `None` (see [`EventKind::carries_lock`]).
    SessionEnded { session: String, until: UnixMillis },
}

impl EventKind {
    /// Whether the audit trail records this kind of event. Presence comes and goes with every
    /// page load, and the queue with every refused page; both are shown live, not kept. A new
    /// offer is the one queue change that is recorded.
    ///
    /// Kept changes are a user's own business, not a lock's history: they are not recorded.
    pub fn is_audited(&self) -> bool {
        !matches!(
            self,
            Self::PresenceChanged
                | Self::QueueChanged { offered: false, .. }
                | Self::StashChanged { .. }
                | Self::SessionEnded { .. }
        )
    }

    /// Whether the event's `lock` is the resource's lock after it, as consumers that act on
    /// the lock's state (closing fenced sockets, forgetting remembered claims) may assume.
    /// A stash change is written in the user's own keys, apart from any lock, so it carries
    /// none and says nothing about one.
    pub fn carries_lock(&self) -> bool {
        !matches!(self, Self::StashChanged { .. } | Self::SessionEnded { .. })
    }
}

/// One change to one resource, in the order the store applied it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockEvent {
    pub kind: EventKind,
    pub resource: String,
    /// The lock after the event; `None` when the resource is now free.
    pub lock: Option<Lock>,
    /// The lock before the event, when the event changed the holder (release, takeover).
    pub previous: Option<Lock>,
    /// When the store applied it.
    pub at: UnixMillis,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn voluntary_releases_do_not_displace() {
        assert!(!ReleaseReason::Client.displaces_holder());
        assert!(!ReleaseReason::Grace.displaces_holder());
        assert!(!ReleaseReason::Idle.displaces_holder());
        assert!(ReleaseReason::Expired.displaces_holder());
        assert!(ReleaseReason::TakenOver.displaces_holder());
        assert!(ReleaseReason::Forced {
            by: "root".to_owned()
        }
        .displaces_holder());
    }

    #[test]
    fn event_json_is_snake_case_and_round_trips() {
        let event = LockEvent {
            kind: EventKind::Released {
                reason: ReleaseReason::Forced {
                    by: "root".to_owned(),
                },
            },
            resource: "doc:1".to_owned(),
            lock: None,
            previous: None,
            at: 7,
        };
        let json = serde_json::to_value(&event).unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "kind": {"type": "released", "reason": {"type": "forced", "by": "root"}},
                "resource": "doc:1",
                "lock": null,
                "previous": null,
                "at": 7
            })
        );
        let back: LockEvent = serde_json::from_value(json).unwrap();
        assert_eq!(back, event);

        let kind = EventKind::TakenOver {
            by: Holder {
                user: "bob".to_owned(),
                name: "Bob".to_owned(),
                session: None,
            },
        };
        assert_eq!(serde_json::to_value(&kind).unwrap()["type"], "taken_over");

        let stash = EventKind::StashChanged {
            user: "alice".to_owned(),
        };
        assert_eq!(
            serde_json::to_value(&stash).unwrap(),
            serde_json::json!({"type": "stash_changed", "user": "alice"})
        );
    }

    #[test]
    fn stash_changes_are_neither_audited_nor_about_a_lock() {
        let stash = EventKind::StashChanged {
            user: "alice".to_owned(),
        };
        assert!(!stash.is_audited());
        assert!(!stash.carries_lock());
        assert!(EventKind::Claimed.is_audited());
        assert!(EventKind::Claimed.carries_lock());
        assert!(EventKind::PresenceChanged.carries_lock());
        let ended = EventKind::SessionEnded {
            session: "s1".to_owned(),
            until: 9,
        };
        assert!(!ended.is_audited());
        assert!(!ended.carries_lock());
        assert_eq!(
            serde_json::to_value(&ended).unwrap(),
            serde_json::json!({"type": "session_ended", "session": "s1", "until": 9})
        );
    }
}
