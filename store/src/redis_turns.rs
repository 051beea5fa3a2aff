//! The Redis store's sign-in renewal turns (see [`auth::RenewalTurns`] and `crate::turns`):
//! one string key per turn, `{p}:turn:<key>`, written `u` while under way, `r<cookie>` once
//! renewed and `x` once refused, each with its own expiry, so nothing outlives its use.

use std::sync::LazyLock;
use std::time::Duration;

use auth::{Turn, TurnError};
use redis::Script;

use super::{millis, query_within, store_error, unexpected, RedisLockStore};
use crate::lock_store::MAX_LEASE;
use crate::turns::{checked, finished, Kept};

/// KEYS: the turn. ARGV: how long a turn under way is kept (ms). The turn as it was, or an
/// empty string when the caller took it.
static TAKE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local kept = redis.call('GET', KEYS[1])
if kept then
  return kept
end
redis.call('SET', KEYS[1], 'u', 'PX', ARGV[1])
return ''
",
    )
});

/// KEYS: the turn. Deletes it only while it is under way.
static GIVE_BACK: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
if redis.call('GET', KEYS[1]) == 'u' then
  redis.call('DEL', KEYS[1])
end
return 'ok'
",
    )
});

#[async_trait::async_trait]
impl auth::RenewalTurns for RedisLockStore {
    async fn take_renewal(&self, key: &str, ttl: Duration) -> Result<Turn, TurnError> {
        checked(key)?;
        let mut invocation = TAKE.prepare_invoke();
        invocation
            .key(self.layout.turn(key))
            .arg(millis(ttl.min(MAX_LEASE)).max(1));
        let mut conn = self.conn()?;
        let kept: String = conn.invoke(&invocation).await.map_err(store_error)?;
        if kept.is_empty() {
            return Ok(Turn::Mine);
        }
        match Kept::decode(&kept) {
            Some(kept) => Ok(kept.seen()),
            None => Err(Box::new(unexpected("take_renewal", "an unreadable turn"))),
        }
    }

    async fn finish_renewal(
        &self,
        key: &str,
        cookie: Option<&str>,
        ttl: Duration,
    ) -> Result<(), TurnError> {
        let kept = finished(key, cookie)?;
        let set = redis::cmd("SET")
            .arg(self.layout.turn(key))
            .arg(kept.encode())
            .arg("PX")
            .arg(millis(ttl.min(MAX_LEASE)).max(1))
            .clone();
        let mut conn = self.conn()?;
        let _: () = query_within(&mut conn, &set, self.options.timeout).await?;
        Ok(())
    }

    async fn give_back_renewal(&self, key: &str) -> Result<(), TurnError> {
        checked(key)?;
        let mut invocation = GIVE_BACK.prepare_invoke();
        invocation.key(self.layout.turn(key));
        let mut conn = self.conn()?;
        let _: String = conn.invoke(&invocation).await.map_err(store_error)?;
        Ok(())
    }
}
