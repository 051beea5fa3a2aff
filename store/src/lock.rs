//! The lock model: who holds a resource, since when, until when, and under which fence.
//!
//! These are plain data types shared by every [`LockStore`](crate::LockStore) implementation and
//! its callers. They serialize to self-contained JSON so a store backed by a server (Redis) can
//! hand them across processes unchanged. This module knows nothing about how rules are matched,
//! how users authenticate, or where the state lives.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Milliseconds since the Unix epoch, as shown to people and written to the audit trail.
pub type UnixMillis = u64;

/// The person (and, for session-owned rules, the browser tab) a lock belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Holder {
    /// Stable user id from the token's user claim.
    pub user: String,
    /// Display name; only ever shown, never compared.
    pub name: String,
    /// Set only when the rule's owner is `session`: the lock then belongs to one tab, and the
    /// same user elsewhere is a different owner.
    #[serde(default)]
    pub session: Option<String>,
}

impl Holder {
    /// The identity a lock is compared by: `user`, or `user#session` for session-owned rules.
    ///
    /// `#` and `%` inside the user id are percent-encoded, so a user id that itself contains
    /// `#` can never collide with another user's session key. Ordinary ids are unchanged.
    pub fn owner_key(&self) -> String {
        let extra = self.session.as_ref().map_or(0, |s| s.len() + 1);
        let mut key = String::with_capacity(self.user.len() + extra);
        for c in self.user.chars() {
            match c {
                '%' => key.push_str("%25"),
                '#' => key.push_str("%23"),
                c => key.push(c),
            }
        }
        if let Some(session) = &self.session {
            key.push('#');
            key.push_str(session);
        }
        key
    }
}

/// A held lock as the store reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lock {
    /// The lock key, rendered from the rule's resource template (e.g. `doc:42`).
    pub resource: String,
    /// Id of the rule that claimed it; decides mode, owner kind and takeover roles for display.
    pub rule: String,
    pub holder: Holder,
    /// When this holder got the lock; renewals leave it alone.
    pub since: UnixMillis,
    /// When the lease lapses unless renewed.
    pub expires: UnixMillis,
    /// Increases every time the resource changes hands, so the upstream app can reject writes
    /// carrying an older fence. Values are ordered, not consecutive.
    pub fence: u64,
    /// The proxy instance that claimed it, so operators can tell where its sockets live.
    pub instance: String,
    /// The holder's last reported activity (any tab, any instance); `since` at a claim.
    /// Drives the idle release.
    #[serde(default)]
    pub active: UnixMillis,
}

/// One banner (one page load, `tab`) present on a resource.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Present {
    /// The random id the banner made for its page load.
    pub tab: String,
    /// Who has that page open; `session` set as for a lock of the resource's rule.
    pub holder: Holder,
}

impl Lock {
    /// Shorthand for `self.holder.owner_key()`.
    pub fn owner_key(&self) -> String {
        self.holder.owner_key()
    }
}

/// Everything a store needs to claim or take over a resource in one atomic step.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClaimRequest {
    pub resource: String,
    pub rule: String,
    pub holder: Holder,
    /// How long the lock lives without renewal. Stores clamp absurdly long values
    /// (see [`MAX_LEASE`](crate::MAX_LEASE)) rather than overflow.
    #[serde(rename = "lease_ms", with = "duration_millis")]
    pub lease: Duration,
    pub instance: String,
    /// True for methods that may change state upstream (anything but GET, HEAD, OPTIONS, TRACE).
    /// Only such requests are refused to an owner who lost the lock.
    pub unsafe_method: bool,
    /// The most distinct live locks `holder.user` may hold once this claim is granted; `None`
    /// for no cap. Only a new grant is checked: renewing a lock the owner already holds always
    /// passes, so a cap lowered below what someone holds never takes their pages away. Counted
    /// per user id, not per owner key, so opening more tabs of a session-owned rule does not
    /// raise it. `Some(0)` refuses every new grant and still renews.
    #[serde(default)]
    pub max_per_user: Option<u32>,
}

/// The answer to a [`claim`](crate::LockStore::claim).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ClaimOutcome {
    /// It was free (or its lease had lapsed): the requester now holds it under a new fence.
    Claimed(Lock),
    /// The requester already held it: the lease was extended, the fence is unchanged.
    Renewed(Lock),
    /// Another owner holds it.
    Held(Lock),
    /// The requester lost this resource (takeover, expiry or force release) and asked with an
    /// unsafe method. Nothing was claimed; the requester must come back with a safe method
    /// (a reload), which proves it has seen the current state.
    Displaced { current: Option<Lock> },
    /// The resource is free, but granting it would give the requester's user more than
    /// `max` distinct live locks ([`ClaimRequest::max_per_user`]). Nothing was claimed.
    /// `held` names locks the user holds, sorted, at most
    /// [`MAX_HELD_SHOWN`](crate::MAX_HELD_SHOWN) of them: enough to tell a person which pages
    /// to close.
    Limited { held: Vec<String>, max: u32 },
    /// The resource is free but reserved: it was offered to the head of its wait queue, who
    /// has until `offer.until` to claim it. Nothing was claimed.
    Reserved { offer: Offer },
}

impl ClaimOutcome {
    /// Whether the requester holds the lock after this claim.
    pub fn is_granted(&self) -> bool {
        matches!(self, Self::Claimed(_) | Self::Renewed(_))
    }

    /// The lock as it stands after the claim, whoever holds it.
    pub fn lock(&self) -> Option<&Lock> {
        match self {
            Self::Claimed(lock) | Self::Renewed(lock) | Self::Held(lock) => Some(lock),
            Self::Displaced { current } => current.as_ref(),
            Self::Limited { .. } | Self::Reserved { .. } => None,
        }
    }
}

/// A free resource reserved for the person at the head of its wait queue.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Offer {
    pub holder: Holder,
    /// When the reservation lapses and passes to the next in line.
    pub until: UnixMillis,
}

/// A resource's wait queue as it stands.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueState {
    /// Who waits, first in line first. The person holding the offer is not among them.
    pub waiting: Vec<Holder>,
    /// The standing offer, if the resource is free and reserved.
    pub offer: Option<Offer>,
}

/// Where an owner stands after [`enqueue`](crate::LockStore::enqueue).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueuePlace {
    /// 1-based place in line; `0` when the owner is not waiting: it holds the lock, holds the
    /// offer, or the queue was full (then `length` is the bound).
    pub position: usize,
    /// How many wait, the owner included.
    pub length: usize,
}

/// The answer to a [`takeover`](crate::LockStore::takeover).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Takeover {
    /// The requester's lock.
    pub lock: Lock,
    /// Whom it was taken from; `None` when it was free or the requester already held it.
    pub previous: Option<Lock>,
}

/// JSON carries leases as whole milliseconds, the unit every other time here uses.
mod duration_millis {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(
        value: &Duration,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        serializer.serialize_u64(u64::try_from(value.as_millis()).unwrap_or(u64::MAX))
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Duration, D::Error> {
        u64::deserialize(deserializer).map(Duration::from_millis)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn holder(user: &str, session: Option<&str>) -> Holder {
        Holder {
            user: user.to_owned(),
            name: "Someone".to_owned(),
            session: session.map(str::to_owned),
        }
    }

    #[test]
    fn owner_key_is_user_or_user_hash_session() {
        assert_eq!(holder("alice", None).owner_key(), "alice");
        assert_eq!(holder("alice", Some("tab1")).owner_key(), "alice#tab1");
    }

    #[test]
    fn owner_key_cannot_be_forged_by_a_user_id_containing_hash() {
        let sneaky = holder("alice#tab1", None);
        let real = holder("alice", Some("tab1"));
        assert_ne!(sneaky.owner_key(), real.owner_key());
        assert_eq!(sneaky.owner_key(), "alice%23tab1");
        assert_ne!(
            holder("a%23", None).owner_key(),
            holder("a#", None).owner_key()
        );
    }

    #[test]
    fn claim_request_carries_lease_as_millis() {
        let req = ClaimRequest {
            resource: "doc:1".to_owned(),
            rule: "edit".to_owned(),
            holder: holder("alice", None),
            lease: Duration::from_millis(30_500),
            instance: "p1".to_owned(),
            unsafe_method: false,
            max_per_user: Some(3),
        };
        let json = serde_json::to_value(&req).unwrap();
        assert_eq!(json["lease_ms"], 30_500);
        let back: ClaimRequest = serde_json::from_value(json).unwrap();
        assert_eq!(back, req);
    }

    #[test]
    fn claim_outcome_is_tagged_by_type() {
        let outcome = ClaimOutcome::Displaced { current: None };
        let json = serde_json::to_value(&outcome).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"type": "displaced", "current": null})
        );
        let back: ClaimOutcome = serde_json::from_value(json).unwrap();
        assert_eq!(back, outcome);

        let outcome = ClaimOutcome::Limited {
            held: vec!["doc:1".to_owned()],
            max: 1,
        };
        let json = serde_json::to_value(&outcome).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"type": "limited", "held": ["doc:1"], "max": 1})
        );
        assert!(!outcome.is_granted());
        assert_eq!(outcome.lock(), None);
    }

    #[test]
    fn a_claim_request_without_a_cap_reads_as_uncapped() {
        let json = serde_json::json!({
            "resource": "doc:1", "rule": "edit",
            "holder": {"user": "alice", "name": "Alice"},
            "lease_ms": 1000, "instance": "p1", "unsafe_method": false
        });
        let req: ClaimRequest = serde_json::from_value(json).unwrap();
        assert_eq!(req.max_per_user, None);
    }
}
