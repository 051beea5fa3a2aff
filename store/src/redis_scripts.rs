//! The Lua scripts that are the Redis lock store's only way of changing state.
//!
//! Each [`LockStore`](crate::LockStore) operation is one script, so Redis runs it atomically:
//! no other command interleaves between reading a lock and writing it. Every script:
//! - reads the time from Redis (`TIME`), never from the proxy, so all instances judge leases by
//!   one clock per resource;
//! - first expires a lapsed lease (announcing `Released{Expired}` and marking the holder
//!   displaced), exactly as the memory store's `expire_if_lapsed` does, so no operation ever
//!   acts on a lapsed lock whether or not a reaper got there first;
//! - touches only the seven keys of one resource's bucket (see [`crate::redis_keys`]), all in
//!   one cluster slot (the per-user held index has scripts of its own, since a user's locks are
//!   spread over every bucket);
//! - publishes the events it causes before it returns, so their order on the channel is the
//!   order Redis applied the changes.
//!
//! Numbers cross the Lua boundary as decimal strings: Redis' `cjson` prints numbers with 14
//! significant digits, which would round fences (microsecond timestamps, 16 digits).
//!
//! Fences: a grant's fence is `max(last recorded fence + 1, Redis TIME in µs)`. The first term
//! makes fences strictly increase while Redis keeps its data, whatever the clock does. The
//! second makes them increase across a loss of data: every fence handed out before the loss was
//! at most the issuing node's clock reading at the time (plus one per grant made within the same
//! microsecond, which does not happen: a script takes longer than that), and a grant after the
//! loss reads a later clock, because restarting Redis or failing over takes far longer than a
//! microsecond. The argument needs only that Redis' wall clock does not step back by more than
//! the outage lasted; while the fence record survives (it is kept for [`FENCE_MEMORY`] after a
//! resource's last grant), not even that.
//!
//! Wait queues: whenever a script finds or leaves the resource free, it ends by serving the
//! queue (`settle_queue`, the one snippet every freeing path runs): lapsed waiters and a lapsed
//! offer are dropped, and if no offer stands the head of the line is offered the resource until
//! `now + its offer length`. The offer's deadline goes into the bucket index like a lease
//! deadline, so the reaper passes a lapsed offer on without traffic.
//!
//! Argument layout shared by every lock script: `KEYS` = lock, fence, displaced, index, queue,
//! waiters, offer (the presence scripts add the resource's presence sorted set and hash);
//! `ARGV[1..=5]` = resource, event channel, displaced TTL (ms), record slack (ms), fence memory
//! (ms); operation arguments start at `ARGV[6]`.
//!
//! [`FENCE_MEMORY`]: crate::redis::FENCE_MEMORY

use std::sync::LazyLock;

use redis::Script;

/// Helpers every lock script starts with.
const PRELUDE: &str = r#"
local LOCK, FENCE, DISPLACED, INDEX = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local QUEUE, WAITERS, OFFER = KEYS[5], KEYS[6], KEYS[7]
local RESOURCE, CHANNEL = ARGV[1], ARGV[2]
local DISPLACED_TTL = tonumber(ARGV[3])
local SLACK = tonumber(ARGV[4])
local FENCE_MEMORY = tonumber(ARGV[5])

local clock = redis.call('TIME')
local NOW_US = tonumber(clock[1]) * 1000000 + tonumber(clock[2])
local NOW = math.floor(NOW_US / 1000)

local function int(n)
  return string.format('%.0f', n)
end

local function load()
  local flat = redis.call('HGETALL', LOCK)
  if #flat == 0 then
    return nil
  end
  local lock = {}
  for i = 1, #flat, 2 do
    lock[flat[i]] = flat[i + 1]
  end
  return lock
end

local function wire(lock)
  if not lock then
    return nil
  end
  return {
    resource = RESOURCE, rule = lock.rule, user = lock.user, name = lock.name,
    session = lock.session, since = lock.since, expires = lock.expires,
    fence = lock.fence, instance = lock.instance, active = lock.active or lock.since,
  }
end

local function publish(kind, lock, previous)
  redis.call('PUBLISH', CHANNEL, cjson.encode({
    kind = kind, resource = RESOURCE, lock = wire(lock), previous = wire(previous), at = int(NOW),
  }))
end

local function reply(outcome, lock, previous)
  return cjson.encode({ outcome = outcome, lock = wire(lock), previous = wire(previous) })
end

-- A marker is `until` or `until:fence` (the fence the owner lost; none reads as 0).
local function marker(value)
  local until_ms, fence = string.match(value, '^(%d+):(%d+)$')
  if until_ms then
    return tonumber(until_ms), tonumber(fence)
  end
  return tonumber(value) or 0, 0
end

-- The owner lost the resource and someone else has held it since (its fence moved).
local function is_displaced(owner)
  local value = redis.call('HGET', DISPLACED, owner)
  if not value then
    return false
  end
  local until_ms, lost = marker(value)
  local last = tonumber(redis.call('GET', FENCE) or '0') or 0
  return until_ms > NOW and last > lost
end

local function mark_displaced(owner, fence)
  local flat = redis.call('HGETALL', DISPLACED)
  for i = 1, #flat, 2 do
    if marker(flat[i + 1]) <= NOW then
      redis.call('HDEL', DISPLACED, flat[i])
    end
  end
  redis.call('HSET', DISPLACED, owner, int(NOW + DISPLACED_TTL) .. ':' .. (fence or '0'))
  redis.call('PEXPIRE', DISPLACED, DISPLACED_TTL)
end

local function set_deadline(lock, deadline)
  lock.expires = int(deadline)
  redis.call('HSET', LOCK, 'expires', lock.expires)
  redis.call('PEXPIREAT', LOCK, deadline + SLACK)
  redis.call('ZADD', INDEX, deadline, RESOURCE)
end

local function load_offer()
  local flat = redis.call('HGETALL', OFFER)
  if #flat == 0 then
    return nil
  end
  local offer = {}
  for i = 1, #flat, 2 do
    offer[flat[i]] = flat[i + 1]
  end
  return offer
end

local function who(entry)
  return { user = entry.user, name = entry.name, session = entry.session }
end

local function public_offer(offer)
  return { holder = who(offer), ['until'] = offer['until'] }
end

local function queue_state()
  local waiting = {}
  for _, owner in ipairs(redis.call('ZRANGE', QUEUE, 0, -1)) do
    local raw = redis.call('HGET', WAITERS, owner)
    if raw then
      table.insert(waiting, who(cjson.decode(raw)))
    end
  end
  local offer = load_offer()
  if offer then
    offer = public_offer(offer)
  end
  return { waiting = waiting, offer = offer }
end

local function announce_queue(offered)
  publish({ type = 'queue_changed', queue = queue_state(), offered = offered }, load(), nil)
end

local function leave(owner)
  local removed = redis.call('ZREM', QUEUE, owner) == 1
  redis.call('HDEL', WAITERS, owner)
  return removed
end

local function put_waiter(owner, entry, score)
  redis.call('ZADD', QUEUE, int(score), owner)
  redis.call('HSET', WAITERS, owner, cjson.encode(entry))
  local keep = tonumber(entry.ttl) + SLACK
  for _, key in ipairs({ QUEUE, WAITERS }) do
    if redis.call('PTTL', key) < keep then
      redis.call('PEXPIRE', key, keep)
    end
  end
end

-- Serves the queue: the one step every path that frees the resource ends with (`freed`).
-- Drops lapsed waiters and a lapsed offer, then offers a free resource to the head of the line
-- if it was just freed or an offer on it just ended. Announces what changed; whether anything
-- did.
local function settle_queue(freed)
  local changed = false
  for _, owner in ipairs(redis.call('ZRANGE', QUEUE, 0, -1)) do
    local raw = redis.call('HGET', WAITERS, owner)
    if not raw or tonumber(cjson.decode(raw).expires) <= NOW then
      leave(owner)
      changed = true
    end
  end
  local offer = load_offer()
  if offer and tonumber(offer['until']) <= NOW then
    redis.call('DEL', OFFER)
    offer = nil
    changed = true
    freed = true
  end
  local offered = false
  if freed and not offer and redis.call('EXISTS', LOCK) == 0 then
    local head = redis.call('ZRANGE', QUEUE, 0, 0)[1]
    if head then
      local waiter = cjson.decode(redis.call('HGET', WAITERS, head))
      leave(head)
      local until_ms = NOW + tonumber(waiter.offer)
      redis.call('HSET', OFFER, 'owner', head, 'user', waiter.user, 'name', waiter.name,
        'until', int(until_ms), 'ttl', waiter.ttl, 'offer', waiter.offer)
      if waiter.session then
        redis.call('HSET', OFFER, 'session', waiter.session)
      end
      redis.call('PEXPIREAT', OFFER, until_ms + SLACK)
      redis.call('ZADD', INDEX, until_ms, RESOURCE)
      offered = true
      changed = true
    elseif changed then
      redis.call('ZREM', INDEX, RESOURCE)
    end
  end
  if changed then
    announce_queue(offered)
  end
  return changed
end

-- A take-over jumped the queue: a standing offer goes back to the head of the line.
local function withdraw_offer()
  local offer = load_offer()
  if not offer then
    return false
  end
  redis.call('DEL', OFFER)
  local first = redis.call('ZRANGE', QUEUE, 0, 0, 'WITHSCORES')
  local score = NOW_US
  if first[2] then
    score = tonumber(first[2]) - 1
  end
  put_waiter(offer.owner, {
    user = offer.user, name = offer.name, session = offer.session,
    expires = int(NOW + tonumber(offer.ttl)), ttl = offer.ttl, offer = offer.offer,
  }, score)
  return true
end

local function remove(lock, reason, displaces)
  redis.call('DEL', LOCK)
  redis.call('ZREM', INDEX, RESOURCE)
  if displaces then
    mark_displaced(lock.owner, lock.fence)
  end
  publish({ type = 'released', reason = reason }, nil, lock)
  settle_queue(true)
end

local function current()
  local lock = load()
  if lock and tonumber(lock.expires) <= NOW then
    if lock.grace == '1' then
      remove(lock, { type = 'grace' }, false)
    else
      remove(lock, { type = 'expired' }, true)
    end
    return nil
  end
  if not lock then
    settle_queue(false)
  end
  return lock
end
"#;

/// Granting, shared by claim and takeover. `ARGV[6..=13]` = rule, user, name, has session
/// (`1`/`0`), session, owner key, instance, lease (ms).
const GRANT: &str = r#"
local RULE, USER, NAME = ARGV[6], ARGV[7], ARGV[8]
local SESSION = nil
if ARGV[9] == '1' then
  SESSION = ARGV[10]
end
local OWNER, INSTANCE, LEASE = ARGV[11], ARGV[12], tonumber(ARGV[13])

local function holder()
  return { user = USER, name = NAME, session = SESSION }
end

local function install()
  local last = tonumber(redis.call('GET', FENCE) or '0') or 0
  local fence = math.max(last + 1, NOW_US)
  redis.call('SET', FENCE, int(fence), 'PX', FENCE_MEMORY)
  local deadline = NOW + LEASE
  local lock = {
    rule = RULE, user = USER, name = NAME, session = SESSION, since = int(NOW),
    expires = int(deadline), fence = int(fence), instance = INSTANCE, owner = OWNER,
    active = int(NOW),
  }
  redis.call('DEL', LOCK)
  redis.call('HSET', LOCK, 'rule', RULE, 'user', USER, 'name', NAME, 'since', lock.since,
    'expires', lock.expires, 'fence', lock.fence, 'instance', INSTANCE, 'owner', OWNER,
    'active', lock.active)
  if SESSION then
    redis.call('HSET', LOCK, 'session', SESSION)
  end
  redis.call('PEXPIREAT', LOCK, deadline + SLACK)
  redis.call('ZADD', INDEX, deadline, RESOURCE)
  redis.call('HDEL', DISPLACED, OWNER)
  return lock
end

local function extend(lock)
  if lock.grace then
    redis.call('HDEL', LOCK, 'grace')
  end
  local wanted = NOW + LEASE
  if wanted > tonumber(lock.expires) then
    set_deadline(lock, wanted)
  end
  return lock
end
"#;

/// `ARGV[14]` = unsafe method (`1`/`0`), `ARGV[15]` = probe (`1`/`0`): a probe grants nothing
/// and answers `vacant` where it would have claimed, so a capped claim can reserve a slot in
/// the user's held index before it takes a free resource, while a renewal or a refusal still
/// costs one script. Outcomes: renewed, displaced, held, vacant (probe only), claimed.
const CLAIM: &str = r#"
local lock = current()
if lock and lock.owner == OWNER then
  return reply('renewed', extend(lock))
end
if ARGV[14] == '1' then
  if is_displaced(OWNER) then
    return reply('displaced', lock)
  end
else
  redis.call('HDEL', DISPLACED, OWNER)
end
if lock then
  return reply('held', lock)
end
local offer = load_offer()
if offer and offer.owner ~= OWNER then
  return cjson.encode({ outcome = 'reserved', offer = public_offer(offer) })
end
if ARGV[15] == '1' then
  return reply('vacant')
end
lock = install()
publish({ type = 'claimed' }, lock, nil)
local left = leave(OWNER)
if offer then
  redis.call('DEL', OFFER)
  left = true
end
if left then
  announce_queue(false)
end
return reply('claimed', lock)
"#;

/// Outcomes: renewed (the requester already held it), taken (with the previous lock, if any).
const TAKEOVER: &str = r#"
local previous = current()
if previous and previous.owner == OWNER then
  return reply('renewed', extend(previous))
end
if previous then
  redis.call('DEL', LOCK)
  mark_displaced(previous.owner, previous.fence)
end
local offer = load_offer()
if offer and offer.owner == OWNER then
  redis.call('DEL', OFFER)
end
local lock = install()
if previous then
  publish({ type = 'taken_over', by = holder() }, lock, previous)
else
  publish({ type = 'claimed' }, lock, nil)
end
local left = leave(OWNER)
if offer and offer.owner == OWNER then
  left = true
end
if withdraw_offer() or left then
  announce_queue(false)
end
return reply('taken', lock, previous)
"#;

/// `ARGV[6]` = owner key, `ARGV[7]` = lease (ms), `ARGV[8]` = `1` to mark the lock in grace
/// (so that a lapse is a `grace` release), `0` to clear that mark. Outcomes: none, renewed.
const RENEW: &str = r#"
local lock = current()
if not lock or lock.owner ~= ARGV[6] then
  return reply('none')
end
if ARGV[8] == '1' then
  redis.call('HSET', LOCK, 'grace', '1')
elseif lock.grace then
  redis.call('HDEL', LOCK, 'grace')
end
local deadline = NOW + tonumber(ARGV[7])
if deadline ~= tonumber(lock.expires) then
  set_deadline(lock, deadline)
end
return reply('renewed', lock)
"#;

/// `ARGV[6]` = owner key. Records activity (`active = now`). Outcomes: none, touched.
const TOUCH: &str = r#"
local lock = current()
if not lock or lock.owner ~= ARGV[6] then
  return reply('none')
end
lock.active = int(NOW)
redis.call('HSET', LOCK, 'active', lock.active)
return reply('touched', lock)
"#;

/// `ARGV[6]` = owner key, `ARGV[7]` = active before (ms). Releases as `idle` only if the
/// owner holds it and has not been active since. Outcomes: none, released.
const RELEASE_IDLE: &str = r#"
local lock = current()
if not lock or lock.owner ~= ARGV[6] then
  return reply('none')
end
if tonumber(lock.active or lock.since) >= tonumber(ARGV[7]) then
  return reply('none')
end
remove(lock, { type = 'idle' }, false)
return reply('released', nil, lock)
"#;

/// Presence helpers. `KEYS[8]` = the resource's presence sorted set (tab → until, ms),
/// `KEYS[9]` = its hash (tab → holder JSON); both in the resource's slot.
const PRESENCE_PRELUDE: &str = r#"
local PZ, PH = KEYS[8], KEYS[9]

local function prune()
  local gone = redis.call('ZRANGEBYSCORE', PZ, '-inf', int(NOW))
  if #gone > 0 then
    redis.call('HDEL', PH, unpack(gone))
    redis.call('ZREMRANGEBYSCORE', PZ, '-inf', int(NOW))
  end
end

local function keep()
  if redis.call('ZCARD', PZ) == 0 then
    redis.call('DEL', PZ, PH)
    return
  end
  local last = redis.call('ZRANGE', PZ, -1, -1, 'WITHSCORES')
  local at = tonumber(last[2]) + SLACK
  redis.call('PEXPIREAT', PZ, int(at))
  redis.call('PEXPIREAT', PH, int(at))
end

local function presence_changed()
  publish({ type = 'presence_changed' }, current(), nil)
end
"#;

/// `ARGV[6]` = tab, `ARGV[7]` = holder (JSON), `ARGV[8]` = ttl (ms), `ARGV[9]` = most tabs.
/// Outcomes: joined, full.
const PRESENCE_JOIN: &str = r#"
prune()
local TAB, HOLDER = ARGV[6], ARGV[7]
local live = redis.call('ZSCORE', PZ, TAB)
if not live and redis.call('ZCARD', PZ) >= tonumber(ARGV[9]) then
  return reply('full')
end
local old = redis.call('HGET', PH, TAB)
redis.call('ZADD', PZ, int(NOW + tonumber(ARGV[8])), TAB)
redis.call('HSET', PH, TAB, HOLDER)
keep()
if not live or old ~= HOLDER then
  presence_changed()
end
return reply('joined')
"#;

/// `ARGV[6]` = tab. Outcome: left.
const PRESENCE_LEAVE: &str = r#"
local TAB = ARGV[6]
local live = redis.call('ZSCORE', PZ, TAB)
redis.call('ZREM', PZ, TAB)
redis.call('HDEL', PH, TAB)
prune()
keep()
if live and tonumber(live) > NOW then
  presence_changed()
end
return reply('left')
"#;

/// `KEYS` = presence sorted set, presence hash. The live tabs, as a flat list of tab then
/// holder JSON.
const PRESENCE_READ: &str = r#"
local clock = redis.call('TIME')
local now = string.format('%.0f', math.floor((tonumber(clock[1]) * 1000000 + tonumber(clock[2])) / 1000))
local tabs = redis.call('ZRANGEBYSCORE', KEYS[1], '(' .. now, '+inf')
local out = {}
if #tabs == 0 then
  return out
end
local holders = redis.call('HMGET', KEYS[2], unpack(tabs))
for i, tab in ipairs(tabs) do
  if holders[i] then
    table.insert(out, tab)
    table.insert(out, holders[i])
  end
end
return out
"#;

/// `ARGV[6]` = owner key, `ARGV[7]` = reason (JSON), `ARGV[8]` = displaces (`1`/`0`).
/// Outcomes: none, released (with the previous lock).
const RELEASE: &str = r#"
local lock = current()
if not lock or lock.owner ~= ARGV[6] then
  return reply('none')
end
remove(lock, cjson.decode(ARGV[7]), ARGV[8] == '1')
return reply('released', nil, lock)
"#;

/// `ARGV[6]` = the admin, `ARGV[7]` = the fence the lock must have, or empty for any.
/// Outcomes: none, changed (with the lock as it is), released.
const FORCE_RELEASE: &str = r#"
local lock = current()
if not lock then
  return reply('none')
end
if ARGV[7] ~= '' and lock.fence ~= ARGV[7] then
  return reply('changed', lock)
end
remove(lock, { type = 'forced', by = ARGV[6] }, true)
return reply('released', nil, lock)
"#;

/// Outcome: current. Also drops an index entry whose lock is gone (the record's own TTL ran
/// out while no reaper was running), so the index cannot grow stale.
const GET: &str = r#"
local lock = current()
if not lock and redis.call('EXISTS', OFFER) == 0 then
  redis.call('ZREM', INDEX, RESOURCE)
end
return reply('current', lock)
"#;

/// `ARGV[6..=9]` = user, name, has session, session of the requester. Outcome: requested.
const REQUEST_ACCESS: &str = r#"
local lock = current()
local by = { user = ARGV[6], name = ARGV[7] }
if ARGV[8] == '1' then
  by.session = ARGV[9]
end
publish({ type = 'access_requested', by = by }, lock, nil)
return reply('requested', lock)
"#;

/// `ARGV[6..=13]` = user, name, has session, session, owner key, entry TTL (ms), offer length
/// (ms), most waiting. Outcome: place, with the 1-based `position` (0 when not queued) and the
/// queue's `length`.
const ENQUEUE: &str = r#"
local USER, NAME, OWNER = ARGV[6], ARGV[7], ARGV[10]
local SESSION = nil
if ARGV[8] == '1' then
  SESSION = ARGV[9]
end
local TTL, OFFER_MS, MAX = tonumber(ARGV[11]), ARGV[12], tonumber(ARGV[13])
local function place()
  local rank = redis.call('ZRANK', QUEUE, OWNER)
  local position = 0
  if rank then
    position = rank + 1
  end
  return cjson.encode({ outcome = 'place', position = position, length = redis.call('ZCARD', QUEUE) })
end
local lock = current()
if lock then
  settle_queue(false)
end
if lock and lock.owner == OWNER then
  return place()
end
local offer = load_offer()
if offer and offer.owner == OWNER then
  return place()
end
local entry = {
  user = USER, name = NAME, session = SESSION, expires = int(NOW + TTL), ttl = int(TTL),
  offer = OFFER_MS,
}
local score = redis.call('ZSCORE', QUEUE, OWNER)
if score then
  put_waiter(OWNER, entry, tonumber(score))
  return place()
end
if redis.call('ZCARD', QUEUE) >= MAX then
  return place()
end
local last = redis.call('ZRANGE', QUEUE, -1, -1, 'WITHSCORES')
score = NOW_US
if last[2] and tonumber(last[2]) >= score then
  score = tonumber(last[2]) + 1
end
put_waiter(OWNER, entry, score)
if not settle_queue(false) then
  announce_queue(false)
end
return place()
"#;

/// `ARGV[6]` = owner key. Outcome: left, with `removed` (whether the owner waited or held the
/// offer, which it then declines).
const DEQUEUE: &str = r#"
local OWNER = ARGV[6]
if current() then
  settle_queue(false)
end
local removed = leave(OWNER)
local declined = false
local offer = load_offer()
if offer and offer.owner == OWNER then
  redis.call('DEL', OFFER)
  removed = true
  declined = true
end
if removed and not settle_queue(declined) then
  announce_queue(false)
end
return cjson.encode({ outcome = 'left', removed = removed })
"#;

/// Outcome: queue, with the queue's state.
const QUEUE_STATE: &str = r#"
if current() then
  settle_queue(false)
end
return cjson.encode({ outcome = 'queue', queue = queue_state() })
"#;

/// The reaper's scan of one bucket: `KEYS[1]` = index, `ARGV[1]` = most resources to return.
/// Resources whose lease deadline has passed by Redis' clock.
const DUE: &str = r#"
local clock = redis.call('TIME')
local now = math.floor((tonumber(clock[1]) * 1000000 + tonumber(clock[2])) / 1000)
return redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, tonumber(ARGV[1]))
"#;

/// A capped claim's check of the user's held index (see `RedisLockStore`), run before the
/// resource is claimed. `KEYS[1]` = the index; `ARGV` = resource, cap, lease (ms), most
/// resources to name, index TTL (ms), verified (`1`/`0`), most entries to verify.
///
/// Entries scored after now count as held; entries at or before now are leases that ended or
/// were renewed since their score was written (renewals never touch the index). A refusal is
/// answered only from entries that count as held: when the cap is reached only by counting
/// older entries too, those are returned for the caller to check against their locks
/// (`verify`), and the second run (`verified` = 1) drops whatever is still old. Replies are a
/// list whose first element is the outcome: `reserved`; `limited` then the held resources;
/// `verify` then the entries to check.
const RESERVE: &str = r#"
local KEY, RESOURCE = KEYS[1], ARGV[1]
local MAX, LEASE, SHOWN, TTL = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
local VERIFIED, BATCH = ARGV[6] == '1', tonumber(ARGV[7])
local clock = redis.call('TIME')
local NOW = math.floor((tonumber(clock[1]) * 1000000 + tonumber(clock[2])) / 1000)
local now = string.format('%.0f', NOW)
if VERIFIED then
  redis.call('ZREMRANGEBYSCORE', KEY, '-inf', now)
end
local mine = tonumber(redis.call('ZSCORE', KEY, RESOURCE) or '0') or 0
local live = redis.call('ZCOUNT', KEY, '(' .. now, '+inf')
local total = redis.call('ZCARD', KEY)
if mine > NOW then
  live = live - 1
end
if mine > 0 then
  total = total - 1
end
if live >= MAX then
  local held = redis.call('ZRANGEBYSCORE', KEY, '(' .. now, '+inf', 'LIMIT', 0, SHOWN + 1)
  table.insert(held, 1, 'limited')
  return held
end
if total >= MAX then
  local old = redis.call('ZRANGEBYSCORE', KEY, '-inf', now, 'LIMIT', 0, BATCH)
  table.insert(old, 1, 'verify')
  return old
end
local deadline = NOW + LEASE
if deadline > mine then
  redis.call('ZADD', KEY, string.format('%.0f', deadline), RESOURCE)
end
redis.call('PEXPIRE', KEY, TTL)
return { 'reserved' }
"#;

/// Writes to a user's held index. `KEYS[1]` = the index; `ARGV[1]` = index TTL (ms),
/// `ARGV[2]` = mode, then pairs of resource and lease deadline (ms), where a deadline of `0`
/// removes the resource. Mode `note` only moves a deadline later (a grant or a takeover);
/// `refresh` only updates resources still in the index (the result of a verification, which
/// must not bring back an entry removed meanwhile). An emptied index is deleted. Outcome: ok.
const HELD_WRITE: &str = r#"
local KEY, TTL, MODE = KEYS[1], tonumber(ARGV[1]), ARGV[2]
for i = 3, #ARGV - 1, 2 do
  local resource, deadline = ARGV[i], tonumber(ARGV[i + 1])
  if deadline == 0 then
    redis.call('ZREM', KEY, resource)
  elseif MODE == 'refresh' then
    redis.call('ZADD', KEY, 'XX', ARGV[i + 1], resource)
  else
    local old = tonumber(redis.call('ZSCORE', KEY, resource) or '0') or 0
    if deadline > old then
      redis.call('ZADD', KEY, ARGV[i + 1], resource)
    end
  end
end
if redis.call('ZCARD', KEY) == 0 then
  redis.call('DEL', KEY)
else
  redis.call('PEXPIRE', KEY, TTL)
end
return 'ok'
"#;

pub(crate) struct Scripts {
    pub claim: Script,
    pub takeover: Script,
    pub renew: Script,
    pub release: Script,
    pub force_release: Script,
    pub get: Script,
    pub touch: Script,
    pub release_idle: Script,
    pub presence_join: Script,
    pub presence_leave: Script,
    pub presence_read: Script,
    pub request_access: Script,
    pub enqueue: Script,
    pub dequeue: Script,
    pub queue: Script,
    pub due: Script,
    pub reserve: Script,
    pub held_write: Script,
}

/// The scripts, hashed once per process (the client sends `EVALSHA` and loads a script only
/// when Redis answers that it does not know it, e.g. after a restart).
pub(crate) fn scripts() -> &'static Scripts {
    static SCRIPTS: LazyLock<Scripts> = LazyLock::new(|| {
        let lock = |body: &str| Script::new(&format!("{PRELUDE}{body}"));
        let grant = |body: &str| Script::new(&format!("{PRELUDE}{GRANT}{body}"));
        let presence = |body: &str| Script::new(&format!("{PRELUDE}{PRESENCE_PRELUDE}{body}"));
        Scripts {
            claim: grant(CLAIM),
            takeover: grant(TAKEOVER),
            renew: lock(RENEW),
            release: lock(RELEASE),
            force_release: lock(FORCE_RELEASE),
            get: lock(GET),
            touch: lock(TOUCH),
            release_idle: lock(RELEASE_IDLE),
            presence_join: presence(PRESENCE_JOIN),
            presence_leave: presence(PRESENCE_LEAVE),
            presence_read: Script::new(PRESENCE_READ),
            request_access: lock(REQUEST_ACCESS),
            enqueue: lock(ENQUEUE),
            dequeue: lock(DEQUEUE),
            queue: lock(QUEUE_STATE),
            due: Script::new(DUE),
            reserve: Script::new(RESERVE),
            held_write: Script::new(HELD_WRITE),
        }
    });
    &SCRIPTS
}
