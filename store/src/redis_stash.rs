//! The Redis store's stash (see [`crate::stash`]): two keys per user, in the user's own slot.
//!
//! | key | type | holds |
//! |---|---|---|
//! | `{p}:stash:{u:<user>}:index` | sorted set | entry id → its deadline (µs, Redis clock) |
//! | `{p}:stash:{u:<user>}:data` | hash | `m:<id>` metadata (JSON), `b:<id>` body, `t:<id>` when kept (ms), `bytes` total |
//!
//! Both names start with the same hash tag, so one script reads and writes them atomically,
//! also on a cluster (a user id containing `}` only shortens the tag, which both names still
//! share). Each call is one script that first drops the user's expired entries; both keys also
//! carry a Redis TTL as long as their newest entry's, so a user who never comes back costs
//! nothing after that. Deadlines are in microseconds so that the eviction order (earliest
//! deadline first, which is oldest first while the TTL is unchanged) has no ties.
//!
//! A kept entry and a deleted one are announced on the event channel by the same script, as
//! [`EventKind::StashChanged`](crate::EventKind::StashChanged) naming the user and the entry's
//! resource (never its body or path), so every instance hears of it; expiry is silent.
//!
//! Like every Redis key, the stash survives what Redis' own persistence keeps: without
//! persistence, a Redis restart loses it.

use std::sync::LazyLock;

use redis::Script;

use super::{millis, store_error, unexpected, RedisLockStore};
use crate::error::StoreError;
use crate::memory::STASH_TOO_LARGE;
use crate::stash::{
    new_stash_id, NewStash, StashEntry, StashId, StashMeta, StoredMeta, MAX_STASH_TTL,
};

const PRELUDE: &str = r"
local INDEX, DATA = KEYS[1], KEYS[2]
local clock = redis.call('TIME')
local NOW_US = tonumber(clock[1]) * 1000000 + tonumber(clock[2])
local NOW = math.floor(NOW_US / 1000)

local function int(n)
  return string.format('%.0f', n)
end

local function drop(id)
  local size = redis.call('HSTRLEN', DATA, 'b:' .. id)
  redis.call('HDEL', DATA, 'm:' .. id, 'b:' .. id, 't:' .. id)
  redis.call('HINCRBY', DATA, 'bytes', -size)
  redis.call('ZREM', INDEX, id)
  if redis.call('ZCARD', INDEX) == 0 then
    redis.call('DEL', DATA, INDEX)
  end
end

for _, id in ipairs(redis.call('ZRANGEBYSCORE', INDEX, '-inf', int(NOW_US))) do
  drop(id)
end

-- Tells every instance that the user's entries changed: who, and the entry's resource.
local function announce(channel, user, resource)
  redis.call('PUBLISH', channel, cjson.encode({
    kind = { type = 'stash_changed', user = user }, resource = resource, at = int(NOW),
  }))
end
";

/// ARGV: id, metadata JSON, body, ttl (ms), max entries, max bytes, event channel, user,
/// resource.
const PUT: &str = r"
local ID, META, BODY = ARGV[1], ARGV[2], ARGV[3]
local TTL = tonumber(ARGV[4])
local MAX_ENTRIES, MAX_BYTES = tonumber(ARGV[5]), tonumber(ARGV[6])
local size = string.len(BODY)
if size > MAX_BYTES or MAX_ENTRIES < 1 then
  return 'too_large'
end
local count = redis.call('ZCARD', INDEX)
local bytes = tonumber(redis.call('HGET', DATA, 'bytes') or '0')
while count >= MAX_ENTRIES or bytes + size > MAX_BYTES do
  local oldest = redis.call('ZRANGE', INDEX, 0, 0)
  if #oldest == 0 then
    break
  end
  bytes = bytes - redis.call('HSTRLEN', DATA, 'b:' .. oldest[1])
  drop(oldest[1])
  count = count - 1
end
redis.call('ZADD', INDEX, int(NOW_US + TTL * 1000), ID)
redis.call('HSET', DATA, 'm:' .. ID, META, 'b:' .. ID, BODY, 't:' .. ID, int(NOW))
redis.call('HINCRBY', DATA, 'bytes', size)
local keep = TTL
local left = redis.call('PTTL', INDEX)
if left > keep then
  keep = left
end
redis.call('PEXPIRE', INDEX, int(keep))
redis.call('PEXPIRE', DATA, int(keep))
announce(ARGV[7], ARGV[8], ARGV[9])
return 'kept'
";

/// Flat list: id, metadata, kept at (ms), bytes, deadline (µs) for each entry, oldest first.
const LIST: &str = r"
local out = {}
for _, id in ipairs(redis.call('ZRANGE', INDEX, 0, -1, 'WITHSCORES')) do
  out[#out + 1] = id
end
local flat = {}
for i = 1, #out, 2 do
  local id = out[i]
  flat[#flat + 1] = id
  flat[#flat + 1] = redis.call('HGET', DATA, 'm:' .. id) or '{}'
  flat[#flat + 1] = redis.call('HGET', DATA, 't:' .. id) or '0'
  flat[#flat + 1] = int(redis.call('HSTRLEN', DATA, 'b:' .. id))
  flat[#flat + 1] = out[i + 1]
end
return flat
";

/// ARGV: id. Metadata, kept at (ms), deadline (µs), body; empty when not kept.
const GET: &str = r"
local deadline = redis.call('ZSCORE', INDEX, ARGV[1])
if not deadline then
  return {}
end
return {
  redis.call('HGET', DATA, 'm:' .. ARGV[1]) or '{}',
  redis.call('HGET', DATA, 't:' .. ARGV[1]) or '0',
  deadline,
  redis.call('HGET', DATA, 'b:' .. ARGV[1]) or '',
}
";

/// ARGV: id, event channel, user. 1 if it was deleted.
const DELETE: &str = r"
if not redis.call('ZSCORE', INDEX, ARGV[1]) then
  return 0
end
local resource = ''
local ok, meta = pcall(cjson.decode, redis.call('HGET', DATA, 'm:' .. ARGV[1]) or '{}')
if ok and type(meta) == 'table' and type(meta.resource) == 'string' then
  resource = meta.resource
end
drop(ARGV[1])
announce(ARGV[2], ARGV[3], resource)
return 1
";

struct Scripts {
    put: Script,
    list: Script,
    get: Script,
    delete: Script,
}

static SCRIPTS: LazyLock<Scripts> = LazyLock::new(|| {
    let script = |body: &str| Script::new(&format!("{PRELUDE}{body}"));
    Scripts {
        put: script(PUT),
        list: script(LIST),
        get: script(GET),
        delete: script(DELETE),
    }
});

/// A deadline in µs as the scripts store it, in ms.
fn deadline_ms(raw: &str) -> Result<u64, StoreError> {
    let micros: f64 = raw
        .parse()
        .map_err(|_| StoreError::Corrupt(format!("stash: bad deadline {raw:?}")))?;
    // Redis prints scores exactly up to 2^53 µs, far past any real clock.
    Ok((micros / 1000.0) as u64)
}

fn number(raw: &str) -> Result<u64, StoreError> {
    raw.parse()
        .map_err(|_| StoreError::Corrupt(format!("stash: bad number {raw:?}")))
}

fn stored(raw: &[u8]) -> Result<StoredMeta, StoreError> {
    serde_json::from_slice(raw).map_err(|e| StoreError::Corrupt(format!("stash metadata: {e}")))
}

fn text(raw: &[u8]) -> Result<&str, StoreError> {
    std::str::from_utf8(raw).map_err(|_| StoreError::Corrupt("stash: not UTF-8".to_owned()))
}

impl RedisLockStore {
    fn stash_invocation<'a>(&self, script: &'a Script, user: &str) -> redis::ScriptInvocation<'a> {
        let (index, data) = self.layout.stash(user);
        let mut invocation = script.prepare_invoke();
        invocation.key(index).key(data);
        invocation
    }

    pub(super) async fn put_stash(
        &self,
        user: &str,
        entry: NewStash,
    ) -> Result<StashId, StoreError> {
        let id = new_stash_id();
        let meta = serde_json::to_string(&StoredMeta::of(&entry))
            .map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let mut invocation = self.stash_invocation(&SCRIPTS.put, user);
        invocation
            .arg(&id)
            .arg(meta)
            .arg(entry.body)
            .arg(millis(entry.limits.ttl.min(MAX_STASH_TTL)).max(1))
            .arg(entry.limits.max_entries)
            .arg(entry.limits.max_bytes)
            .arg(&self.channel)
            .arg(user)
            .arg(&entry.resource);
        let mut conn = self.conn()?;
        let outcome: String = conn.invoke(&invocation).await.map_err(store_error)?;
        match outcome.as_str() {
            "kept" => Ok(id),
            "too_large" => Err(StoreError::Unavailable(STASH_TOO_LARGE.to_owned())),
            other => Err(unexpected("stash_put", other)),
        }
    }

    pub(super) async fn list_stash(&self, user: &str) -> Result<Vec<StashMeta>, StoreError> {
        let invocation = self.stash_invocation(&SCRIPTS.list, user);
        let mut conn = self.conn()?;
        let flat: Vec<Vec<u8>> = conn.invoke(&invocation).await.map_err(store_error)?;
        flat.chunks(5)
            .map(|row| match row {
                [id, meta, at, bytes, deadline] => Ok(stored(meta)?.into_meta(
                    text(id)?.to_owned(),
                    number(text(bytes)?)?,
                    number(text(at)?)?,
                    deadline_ms(text(deadline)?)?,
                )),
                _ => Err(unexpected("stash_list", "a short row")),
            })
            .collect()
    }

    pub(super) async fn get_stash(
        &self,
        user: &str,
        id: &str,
    ) -> Result<Option<StashEntry>, StoreError> {
        let mut invocation = self.stash_invocation(&SCRIPTS.get, user);
        invocation.arg(id);
        let mut conn = self.conn()?;
        let reply: Vec<Vec<u8>> = conn.invoke(&invocation).await.map_err(store_error)?;
        match reply.as_slice() {
            [] => Ok(None),
            [meta, at, deadline, body] => Ok(Some(StashEntry {
                meta: stored(meta)?.into_meta(
                    id.to_owned(),
                    body.len() as u64,
                    number(text(at)?)?,
                    deadline_ms(text(deadline)?)?,
                ),
                body: body.clone(),
            })),
            _ => Err(unexpected("stash_get", "a short reply")),
        }
    }

    pub(super) async fn delete_stash(&self, user: &str, id: &str) -> Result<bool, StoreError> {
        let mut invocation = self.stash_invocation(&SCRIPTS.delete, user);
        invocation.arg(id).arg(&self.channel).arg(user);
        let mut conn = self.conn()?;
        let deleted: i64 = conn.invoke(&invocation).await.map_err(store_error)?;
        Ok(deleted == 1)
    }
}
