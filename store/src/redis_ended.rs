//! The Redis store's ended sign-in sessions (see [`LockStore::end_session`]): one sorted set,
//! `{p}:ended`, of session id → until (unix ms). Each logout is one script that drops the
//! entries whose end has come, adds the session, forgets the soonest-ending ones past
//! [`MAX_ENDED_SESSIONS`], keeps the key's own TTL at its latest end (so an idle deployment
//! keeps nothing) and publishes [`EventKind::SessionEnded`](crate::EventKind::SessionEnded)
//! on the event channel.
//!
//! [`LockStore::end_session`]: crate::LockStore::end_session

use std::sync::LazyLock;

use redis::Script;

use super::{millis, store_error, unexpected, unix_now_ms, RedisLockStore};
use crate::error::StoreError;
use crate::event::EventKind;
use crate::lock::UnixMillis;
use crate::lock_store::{is_session_id, MAX_ENDED_FOR, MAX_ENDED_SESSIONS};
use crate::memory::NOT_A_SESSION_ID;

/// KEYS: the set. ARGV: session, until (ms), now (ms), most kept, event channel, event (JSON).
static END: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local KEY, SESSION = KEYS[1], ARGV[1]
local UNTIL, NOW, MAX = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
redis.call('ZREMRANGEBYSCORE', KEY, '-inf', NOW)
local known = tonumber(redis.call('ZSCORE', KEY, SESSION) or '0')
if UNTIL > known then
  redis.call('ZADD', KEY, UNTIL, SESSION)
end
local over = redis.call('ZCARD', KEY) - MAX
if over > 0 then
  redis.call('ZPOPMIN', KEY, over)
end
local last = redis.call('ZRANGE', KEY, -1, -1, 'WITHSCORES')
if #last == 2 then
  redis.call('PEXPIREAT', KEY, string.format('%.0f', tonumber(last[2])))
end
redis.call('PUBLISH', ARGV[5], ARGV[6])
return 'ended'
",
    )
});

impl RedisLockStore {
    pub(super) async fn end(&self, session: &str, until: UnixMillis) -> Result<(), StoreError> {
        if !is_session_id(session) {
            return Err(StoreError::Unavailable(NOT_A_SESSION_ID.to_owned()));
        }
        let now = unix_now_ms();
        let until = until.min(now.saturating_add(millis(MAX_ENDED_FOR)));
        let event = serde_json::json!({
            "kind": EventKind::SessionEnded { session: session.to_owned(), until },
            "resource": "",
            "at": now.to_string(),
        });
        let mut invocation = END.prepare_invoke();
        invocation
            .key(self.layout.ended())
            .arg(session)
            .arg(until)
            .arg(now)
            .arg(MAX_ENDED_SESSIONS)
            .arg(&self.channel)
            .arg(event.to_string());
        let mut conn = self.conn()?;
        let outcome: String = conn.invoke(&invocation).await.map_err(store_error)?;
        match outcome.as_str() {
            "ended" => Ok(()),
            other => Err(unexpected("end_session", other)),
        }
    }

    pub(super) async fn ended(&self) -> Result<Vec<(String, UnixMillis)>, StoreError> {
        let read = redis::cmd("ZRANGEBYSCORE")
            .arg(self.layout.ended())
            .arg(format!("({}", unix_now_ms()))
            .arg("+inf")
            .arg("WITHSCORES")
            .arg("LIMIT")
            .arg(0)
            .arg(MAX_ENDED_SESSIONS)
            .clone();
        let mut conn = self.conn()?;
        let rows: Vec<(String, f64)> =
            match tokio::time::timeout(self.options.timeout, conn.query(&read)).await {
                Ok(result) => result.map_err(store_error)?,
                Err(_) => return Err(StoreError::Timeout),
            };
        Ok(rows
            .into_iter()
            .map(|(session, until)| (session, until as UnixMillis))
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_published_event_reads_back_as_session_ended() {
        let event = serde_json::json!({
            "kind": EventKind::SessionEnded { session: "abc_-1".to_owned(), until: 1_765_046_400_123 },
            "resource": "",
            "at": "1765046400000",
        });
        let back = crate::redis_wire::parse_event(event.to_string().as_bytes()).unwrap();
        assert_eq!(
            back.kind,
            EventKind::SessionEnded {
                session: "abc_-1".to_owned(),
                until: 1_765_046_400_123
            }
        );
        assert_eq!(back.resource, "");
        assert_eq!(back.lock, None);
        assert_eq!(back.at, 1_765_046_400_000);
    }
}
