//! The JSON the lock scripts return and publish, and its conversion into [`Lock`] and
//! [`LockEvent`].
//!
//! It mirrors the public types except that every number is a decimal string (see
//! [`crate::redis_scripts`] for why). Anything that does not parse is [`StoreError::Corrupt`]:
//! a newer or older Latch writing a shape this one cannot read, never a reason to panic.

use serde::Deserialize;

use crate::error::StoreError;
use crate::event::{EventKind, LockEvent};
use crate::lock::{Holder, Lock, Offer, QueuePlace, QueueState};

#[derive(Debug, Deserialize)]
struct WireLock {
    resource: String,
    rule: String,
    user: String,
    name: String,
    #[serde(default)]
    session: Option<String>,
    since: String,
    expires: String,
    fence: String,
    instance: String,
    /// Absent from records written before activity was tracked: read as `since`.
    #[serde(default)]
    active: Option<String>,
}

impl WireLock {
    fn into_lock(self) -> Result<Lock, StoreError> {
        let since = number("since", &self.since)?;
        let active = match &self.active {
            Some(active) => number("active", active)?,
            None => since,
        };
        Ok(Lock {
            since,
            active,
            expires: number("expires", &self.expires)?,
            fence: number("fence", &self.fence)?,
            resource: self.resource,
            rule: self.rule,
            holder: crate::lock::Holder {
                user: self.user,
                name: self.name,
                session: self.session,
            },
            instance: self.instance,
        })
    }
}

fn number(field: &str, value: &str) -> Result<u64, StoreError> {
    value
        .parse()
        .map_err(|_| StoreError::Corrupt(format!("lock field {field} is {value:?}, not a number")))
}

fn lock(wire: Option<WireLock>) -> Result<Option<Lock>, StoreError> {
    wire.map(WireLock::into_lock).transpose()
}

/// What a lock script returned.
#[derive(Debug)]
pub(crate) struct Reply {
    pub outcome: String,
    pub lock: Option<Lock>,
    pub previous: Option<Lock>,
    /// The standing offer, for a claim answered `reserved`.
    pub offer: Option<Offer>,
}

#[derive(Debug, Deserialize)]
struct WireReply {
    outcome: String,
    #[serde(default)]
    lock: Option<WireLock>,
    #[serde(default)]
    previous: Option<WireLock>,
    #[serde(default)]
    offer: Option<WireOffer>,
}

impl Reply {
    pub fn parse(raw: &str) -> Result<Self, StoreError> {
        let wire: WireReply = serde_json::from_str(raw)
            .map_err(|e| StoreError::Corrupt(format!("unreadable script reply: {e}")))?;
        Ok(Self {
            outcome: wire.outcome,
            lock: lock(wire.lock)?,
            previous: lock(wire.previous)?,
            offer: wire.offer.map(WireOffer::into_offer).transpose()?,
        })
    }
}

#[derive(Debug, Deserialize)]
struct WireHolder {
    user: String,
    name: String,
    #[serde(default)]
    session: Option<String>,
}

impl From<WireHolder> for Holder {
    fn from(wire: WireHolder) -> Self {
        Holder {
            user: wire.user,
            name: wire.name,
            session: wire.session,
        }
    }
}

#[derive(Debug, Deserialize)]
struct WireOffer {
    holder: WireHolder,
    until: String,
}

impl WireOffer {
    fn into_offer(self) -> Result<Offer, StoreError> {
        Ok(Offer {
            holder: self.holder.into(),
            until: number("until", &self.until)?,
        })
    }
}

/// A queue as the scripts write it. Lua's cjson writes an empty list as `{}`, so `waiting` is
/// read as either.
#[derive(Debug, Deserialize)]
struct WireQueue {
    #[serde(default)]
    waiting: serde_json::Value,
    #[serde(default)]
    offer: Option<WireOffer>,
}

impl WireQueue {
    fn into_state(self) -> Result<QueueState, StoreError> {
        let waiting = match self.waiting {
            serde_json::Value::Array(items) => items
                .into_iter()
                .map(|item| serde_json::from_value::<WireHolder>(item).map(Holder::from))
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| StoreError::Corrupt(format!("unreadable queue entry: {e}")))?,
            serde_json::Value::Object(map) if map.is_empty() => Vec::new(),
            serde_json::Value::Null => Vec::new(),
            other => return Err(StoreError::Corrupt(format!("queue is {other}, not a list"))),
        };
        Ok(QueueState {
            waiting,
            offer: self.offer.map(WireOffer::into_offer).transpose()?,
        })
    }
}

/// What the queue scripts return: a place (enqueue), whether anything was removed (dequeue)
/// or the queue (queue).
#[derive(Debug, Deserialize)]
pub(crate) struct QueueReply {
    pub outcome: String,
    #[serde(default)]
    position: Option<usize>,
    #[serde(default)]
    length: Option<usize>,
    #[serde(default)]
    pub removed: Option<bool>,
    #[serde(default)]
    queue: Option<WireQueue>,
}

impl QueueReply {
    pub fn parse(raw: &str) -> Result<Self, StoreError> {
        serde_json::from_str(raw)
            .map_err(|e| StoreError::Corrupt(format!("unreadable script reply: {e}")))
    }

    pub fn place(&self) -> Option<QueuePlace> {
        Some(QueuePlace {
            position: self.position?,
            length: self.length?,
        })
    }

    pub fn into_queue(self) -> Result<Option<QueueState>, StoreError> {
        self.queue.map(WireQueue::into_state).transpose()
    }
}

#[derive(Debug, Deserialize)]
struct WireEvent {
    kind: serde_json::Value,
    resource: String,
    #[serde(default)]
    lock: Option<WireLock>,
    #[serde(default)]
    previous: Option<WireLock>,
    at: String,
}

/// One message from the event channel.
pub(crate) fn parse_event(raw: &[u8]) -> Result<LockEvent, StoreError> {
    let wire: WireEvent = serde_json::from_slice(raw)
        .map_err(|e| StoreError::Corrupt(format!("unreadable lock event: {e}")))?;
    let kind = if wire.kind.get("type").and_then(serde_json::Value::as_str) == Some("queue_changed")
    {
        let offered = wire
            .kind
            .get("offered")
            .and_then(serde_json::Value::as_bool);
        let queue = wire
            .kind
            .get("queue")
            .cloned()
            .map(serde_json::from_value::<WireQueue>)
            .transpose()
            .map_err(|e| StoreError::Corrupt(format!("unreadable queue event: {e}")))?;
        EventKind::QueueChanged {
            queue: queue
                .map(WireQueue::into_state)
                .transpose()?
                .unwrap_or_default(),
            offered: offered.unwrap_or(false),
        }
    } else {
        serde_json::from_value(wire.kind)
            .map_err(|e| StoreError::Corrupt(format!("unreadable lock event: {e}")))?
    };
    Ok(LockEvent {
        kind,
        resource: wire.resource,
        lock: lock(wire.lock)?,
        previous: lock(wire.previous)?,
        at: number("at", &wire.at)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::ReleaseReason;
    use crate::lock::Holder;

    const LOCK: &str = r#"{"resource":"doc:1","rule":"edit","user":"alice","name":"Alice",
        "since":"1700000000000","expires":"1700000030000","fence":"1700000000000123",
        "instance":"p1"}"#;

    #[test]
    fn reply_keeps_every_digit_of_the_fence() {
        let raw = format!(r#"{{"outcome":"claimed","lock":{LOCK}}}"#);
        let reply = Reply::parse(&raw).unwrap();
        assert_eq!(reply.outcome, "claimed");
        assert_eq!(reply.previous, None);
        let lock = reply.lock.unwrap();
        assert_eq!(lock.fence, 1_700_000_000_000_123);
        assert_eq!(lock.since, 1_700_000_000_000);
        assert_eq!(lock.expires, 1_700_000_030_000);
        assert_eq!(
            lock.holder,
            Holder {
                user: "alice".into(),
                name: "Alice".into(),
                session: None
            }
        );
        assert_eq!(lock.instance, "p1");
    }

    #[test]
    fn events_read_kind_and_both_locks() {
        let raw = format!(
            r#"{{"kind":{{"type":"released","reason":{{"type":"forced","by":"root"}}}},
                "resource":"doc:1","previous":{LOCK},"at":"1700000001000"}}"#
        );
        let event = parse_event(raw.as_bytes()).unwrap();
        assert_eq!(
            event.kind,
            EventKind::Released {
                reason: ReleaseReason::Forced { by: "root".into() }
            }
        );
        assert_eq!(event.lock, None);
        assert_eq!(event.previous.map(|l| l.fence), Some(1_700_000_000_000_123));
        assert_eq!(event.at, 1_700_000_001_000);

        // Lua's cjson escapes '/' and may write a null session.
        let raw = r#"{"kind":{"type":"taken_over","by":{"user":"a\/b","name":"B","session":null}},
            "resource":"doc:1","at":"5"}"#;
        let event = parse_event(raw.as_bytes()).unwrap();
        assert_eq!(
            event.kind,
            EventKind::TakenOver {
                by: Holder {
                    user: "a/b".into(),
                    name: "B".into(),
                    session: None
                }
            }
        );
    }

    #[test]
    fn queue_events_read_an_empty_lua_list_and_the_offer() {
        let raw = r#"{"kind":{"type":"queue_changed","offered":true,"queue":{"waiting":{},
            "offer":{"holder":{"user":"bob","name":"Bob"},"until":"1700000060000"}}},
            "resource":"doc:1","at":"1700000000000"}"#;
        let event = parse_event(raw.as_bytes()).unwrap();
        let EventKind::QueueChanged { queue, offered } = event.kind else {
            panic!("not a queue event: {:?}", event.kind);
        };
        assert!(offered);
        assert!(queue.waiting.is_empty());
        let offer = queue.offer.unwrap();
        assert_eq!(offer.holder.user, "bob");
        assert_eq!(offer.until, 1_700_000_060_000);

        let raw = r#"{"outcome":"queue","queue":{"waiting":[{"user":"c","name":"C"}]}}"#;
        let queue = QueueReply::parse(raw)
            .unwrap()
            .into_queue()
            .unwrap()
            .unwrap();
        assert_eq!(queue.waiting.len(), 1);
        assert_eq!(queue.offer, None);
        let raw = r#"{"outcome":"queue","queue":{"waiting":"x"}}"#;
        assert!(QueueReply::parse(raw).unwrap().into_queue().is_err());
    }

    #[test]
    fn unreadable_data_is_corrupt_not_a_panic() {
        for raw in [
            "",
            "null",
            r#"{"outcome":1}"#,
            r#"{"outcome":"claimed","lock":{"resource":"r"}}"#,
        ] {
            assert!(
                matches!(Reply::parse(raw), Err(StoreError::Corrupt(_))),
                "{raw}"
            );
        }
        let bad_fence = LOCK.replace("1700000000000123", "1.7e15");
        let raw = format!(r#"{{"outcome":"held","lock":{bad_fence}}}"#);
        assert!(matches!(Reply::parse(&raw), Err(StoreError::Corrupt(_))));
        assert!(matches!(
            parse_event(br#"{"kind":{"type":"exploded"},"resource":"r","at":"1"}"#),
            Err(StoreError::Corrupt(_))
        ));
    }

    #[test]
    fn a_stash_event_names_its_user_and_carries_no_lock() {
        // As the stash scripts publish it: cjson leaves out the absent lock and previous.
        let raw = br#"{"kind":{"type":"stash_changed","user":"a\/b"},"resource":"doc:1","at":"1700000000000"}"#;
        let event = parse_event(raw).unwrap();
        assert_eq!(
            event.kind,
            EventKind::StashChanged {
                user: "a/b".to_owned()
            }
        );
        assert_eq!(event.resource, "doc:1");
        assert_eq!((event.lock, event.previous), (None, None));
        assert_eq!(event.at, 1_700_000_000_000);
    }
}
