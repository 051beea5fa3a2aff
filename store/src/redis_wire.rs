//! The JSON the lock scripts return and publish, and its conversion into [`Lock`] and
//! [`LockEvent`].
//!
//! It mirrors the public types except that every number is a decimal string (see
//! [`crate::redis_scripts`] for why). Anything that does not parse is [`StoreError::Corrupt`]:
//! a newer or older Latch writing a shape this one cannot read, never a reason to panic.

use serde::Deserialize;

use crate::error::StoreError;
use crate::event::{EventKind, LockEvent};
use crate::lock::Lock;

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
}

#[derive(Debug, Deserialize)]
struct WireReply {
    outcome: String,
    #[serde(default)]
    lock: Option<WireLock>,
    #[serde(default)]
    previous: Option<WireLock>,
}

impl Reply {
    pub fn parse(raw: &str) -> Result<Self, StoreError> {
        let wire: WireReply = serde_json::from_str(raw)
            .map_err(|e| StoreError::Corrupt(format!("unreadable script reply: {e}")))?;
        Ok(Self {
            outcome: wire.outcome,
            lock: lock(wire.lock)?,
            previous: lock(wire.previous)?,
        })
    }
}

#[derive(Debug, Deserialize)]
struct WireEvent {
    kind: EventKind,
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
    Ok(LockEvent {
        kind: wire.kind,
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
}
