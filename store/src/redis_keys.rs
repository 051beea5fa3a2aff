//! Where the Redis lock store keeps what: key names, hash tags and the event channel.
//!
//! Every resource belongs to one of [`BUCKETS`] buckets, chosen by a fixed hash of its name,
//! and every key that belongs to the resource carries its bucket as the hash tag:
//!
//! | key | type | holds |
//! |---|---|---|
//! | `{p}:{bN}:lock:{resource}` | hash | the current lock (holder, rule, since, expires, fence, instance, owner key) |
//! | `{p}:{bN}:fence:{resource}` | string | the last fence handed out for the resource |
//! | `{p}:{bN}:displaced:{resource}` | hash | owner key → until (ms) for owners that lost the resource |
//! | `{p}:{bN}:presence:{resource}` | sorted set | tab → until (ms) for banners open on the resource |
//! | `{p}:{bN}:present:{resource}` | hash | tab → holder (JSON) for the same tabs |
//! | `{p}:{bN}:index` | sorted set | resource → lease deadline (ms), for every lock in the bucket |
//! | `{p}:{bN}:index` | sorted set | resource → lease deadline (ms), for every lock in the bucket, and offer deadline (ms) for every reserved free resource |
//! | `{p}:{bN}:queue:{resource}` | sorted set | owner key → place (µs it joined), for who waits |
//! | `{p}:{bN}:waiters:{resource}` | hash | owner key → the waiter as JSON (holder, entry deadline, offer length) |
//! | `{p}:{bN}:offer:{resource}` | hash | the standing offer (owner key, holder, until, offer length) |
//! | `{p}:held:{user}` | sorted set | resource → lease deadline (ms) as last written, for the locks one user id holds |
//! | `{p}:ended` | sorted set | ended sign-in session id → until (ms), at most `MAX_ENDED_SESSIONS` |
//! | `{p}:events` | pub/sub channel | every lock event, as JSON |
//!
//! Keys that share a hash tag share a Redis Cluster slot, so one script can read and write a
//! resource's lock, fence, displaced markers *and* its bucket's index atomically: that is why
//! the tag is the bucket and not the resource itself. With the resource as the tag, the index
//! would live in another slot and could only be kept as an after-the-fact hint. The bucket
//! count trades how many slots (and so cluster nodes) the locks spread over against how many
//! index keys the reaper polls; it is part of the layout and must not change between versions.
//!
//! The held index of a user is the one key outside that scheme: a user's locks are spread over
//! every bucket, so no slot can hold both it and all of them. It is written by scripts of its
//! own, next to the resource scripts rather than inside them (see `RedisLockStore` for what
//! that costs in exactness). It carries no hash tag of its own making; a user id containing
//! braces only moves the key to another slot, and every script on it names only that key.
//!
//! This module knows nothing about connections, scripts or lock semantics.

/// How many buckets resources are spread over. Part of the on-disk layout.
pub(crate) const BUCKETS: u16 = 64;

/// Longest key prefix accepted; keys stay short enough to read in `redis-cli`.
const MAX_PREFIX: usize = 64;

/// The bucket a resource lives in: FNV-1a over its bytes, so every version and every instance
/// agree without configuration.
pub(crate) fn bucket(resource: &str) -> u16 {
    let hash = resource.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    // The remainder is below BUCKETS, so it fits.
    u16::try_from(hash % u64::from(BUCKETS)).unwrap_or(0)
}

/// Why a key prefix was refused.
pub(crate) fn check_prefix(prefix: &str) -> Result<(), &'static str> {
    if prefix.is_empty() {
        return Err("must not be empty");
    }
    if prefix.len() > MAX_PREFIX {
        return Err("must be at most 64 characters");
    }
    if !prefix
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.' | b':'))
    {
        // Braces especially: a `{` in the prefix would become the hash tag of every key.
        return Err("may only contain ASCII letters, digits, '_', '-', '.' and ':'");
    }
    Ok(())
}

/// The keys one script needs for one resource, in the order the scripts expect them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ResourceKeys {
    pub lock: String,
    pub fence: String,
    pub displaced: String,
    pub index: String,
    pub queue: String,
    pub waiters: String,
    pub offer: String,
}

/// Key names under one prefix.
#[derive(Debug, Clone)]
pub(crate) struct KeyLayout {
    prefix: String,
}

impl KeyLayout {
    /// `prefix` must have passed [`check_prefix`].
    pub fn new(prefix: &str) -> Self {
        Self {
            prefix: prefix.to_owned(),
        }
    }

    pub fn resource(&self, resource: &str) -> ResourceKeys {
        let p = &self.prefix;
        let b = bucket(resource);
        ResourceKeys {
            lock: format!("{p}:{{b{b}}}:lock:{resource}"),
            fence: format!("{p}:{{b{b}}}:fence:{resource}"),
            displaced: format!("{p}:{{b{b}}}:displaced:{resource}"),
            index: self.index(b),
            queue: format!("{p}:{{b{b}}}:queue:{resource}"),
            waiters: format!("{p}:{{b{b}}}:waiters:{resource}"),
            offer: format!("{p}:{{b{b}}}:offer:{resource}"),
        }
    }

    /// The presence sorted set and hash of a resource, in its bucket's slot.
    pub fn presence(&self, resource: &str) -> (String, String) {
        let p = &self.prefix;
        let b = bucket(resource);
        (
            format!("{p}:{{b{b}}}:presence:{resource}"),
            format!("{p}:{{b{b}}}:present:{resource}"),
        )
    }

    pub fn index(&self, bucket: u16) -> String {
        format!("{}:{{b{bucket}}}:index", self.prefix)
    }

    /// The held index of one user id (the holder's `user`, not its owner key).
    pub fn held(&self, user: &str) -> String {
        format!("{}:held:{user}", self.prefix)
    }

    /// A user's stash: its index and its data (see the Redis store's stash module). Both
    /// names begin with the same `{u:<user>}` hash tag, so they share a slot.
    pub fn stash(&self, user: &str) -> (String, String) {
        let p = &self.prefix;
        (
            format!("{p}:stash:{{u:{user}}}:index"),
            format!("{p}:stash:{{u:{user}}}:data"),
        )
    }

    /// The hash of every instance's request-shape summary, by instance.
    pub fn shapes(&self) -> String {
        format!("{}:shapes", self.prefix)
    }

    /// When each instance last published its summary: instance → ms.
    pub fn shapes_at(&self) -> String {
        format!("{}:shapes:at", self.prefix)
    }

    /// The sorted set of ended sign-in sessions: id → until (ms).
    pub fn ended(&self) -> String {
        format!("{}:ended", self.prefix)
    }

    /// One sign-in renewal turn (see `crate::redis_turns`).
    pub fn turn(&self, key: &str) -> String {
        format!("{}:turn:{key}", self.prefix)
    }

    pub fn channel(&self) -> String {
        format!("{}:events", self.prefix)
    }

    /// Where rule-change nudges are published (see `LockStore::nudge_rules`).
    pub fn rules_channel(&self) -> String {
        format!("{}:rules", self.prefix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Redis Cluster's key → slot mapping (CRC16/XMODEM of the hash tag, modulo 16384), written
    /// out here so the test checks the layout against the real rule, not against itself.
    fn slot(key: &str) -> u16 {
        let bytes = key.as_bytes();
        let tagged = bytes.iter().position(|&b| b == b'{').and_then(|open| {
            let rest = &bytes[open + 1..];
            rest.iter()
                .position(|&b| b == b'}')
                .filter(|&len| len > 0)
                .map(|len| &rest[..len])
        });
        let data = tagged.unwrap_or(bytes);
        let mut crc: u16 = 0;
        for &byte in data {
            crc ^= u16::from(byte) << 8;
            for _ in 0..8 {
                crc = if crc & 0x8000 != 0 {
                    (crc << 1) ^ 0x1021
                } else {
                    crc << 1
                };
            }
        }
        crc % 16384
    }

    #[test]
    fn crc16_matches_the_cluster_spec_example() {
        // The Redis Cluster specification gives 12739 for "123456789".
        assert_eq!(slot("123456789"), 12739);
        assert_eq!(slot("{user1000}.following"), slot("{user1000}.followers"));
    }

    #[test]
    fn every_key_of_a_resource_shares_one_slot() {
        let layout = KeyLayout::new("latch");
        for resource in [
            "doc:1",
            "doc:{1}",
            "}{",
            "a}b{c",
            "{",
            "",
            "ünïcødé",
            "doc:1:lock:x",
        ] {
            let keys = layout.resource(resource);
            let s = slot(&keys.lock);
            assert_eq!(slot(&keys.fence), s, "{resource}");
            assert_eq!(slot(&keys.displaced), s, "{resource}");
            assert_eq!(slot(&keys.index), s, "{resource}");
            assert_eq!(slot(&keys.queue), s, "{resource}");
            assert_eq!(slot(&keys.waiters), s, "{resource}");
            assert_eq!(slot(&keys.offer), s, "{resource}");
        }
    }

    #[test]
    fn a_users_stash_keys_share_one_slot() {
        let layout = KeyLayout::new("latch");
        for user in ["alice", "a}b", "{x}", "}", "ünï", ""] {
            let (index, data) = layout.stash(user);
            assert_eq!(slot(&index), slot(&data), "{user}");
        }
        assert_ne!(slot(&layout.stash("alice").0), slot(&layout.stash("bob").0));
    }

    #[test]
    fn keys_are_namespaced_and_readable() {
        let keys = KeyLayout::new("app1:latch").resource("doc:1");
        let b = bucket("doc:1");
        assert_eq!(keys.lock, format!("app1:latch:{{b{b}}}:lock:doc:1"));
        assert_eq!(keys.fence, format!("app1:latch:{{b{b}}}:fence:doc:1"));
        assert_eq!(
            keys.displaced,
            format!("app1:latch:{{b{b}}}:displaced:doc:1")
        );
        assert_eq!(keys.index, format!("app1:latch:{{b{b}}}:index"));
        assert_eq!(KeyLayout::new("app1:latch").channel(), "app1:latch:events");
        assert_eq!(
            KeyLayout::new("app1:latch").held("alice"),
            "app1:latch:held:alice"
        );
    }

    #[test]
    fn buckets_are_stable_and_spread() {
        // Pinned: changing the hash would orphan every lock already in Redis.
        assert_eq!(bucket("doc:1"), 36);
        assert_eq!(bucket("doc:42"), 27);
        assert_eq!(bucket(""), 37);
        let mut seen = std::collections::HashSet::new();
        for i in 0..2_000 {
            seen.insert(bucket(&format!("doc:{i}")));
        }
        assert_eq!(seen.len(), usize::from(BUCKETS));
        assert!(seen.iter().all(|b| *b < BUCKETS));
    }

    #[test]
    fn bucket_slots_spread_over_a_three_node_cluster() {
        // redis-cli splits 16384 slots into three equal ranges; each range should own buckets.
        let layout = KeyLayout::new("latch");
        let mut per_node = [0; 3];
        for b in 0..BUCKETS {
            let s = usize::from(slot(&layout.index(b)));
            per_node[(s * 3 / 16384).min(2)] += 1;
        }
        assert!(per_node.iter().all(|n| *n >= 10), "{per_node:?}");
    }

    #[test]
    fn prefixes_are_checked() {
        assert!(check_prefix("latch").is_ok());
        assert!(check_prefix("app-1.latch:v2").is_ok());
        assert!(check_prefix("").is_err());
        assert!(check_prefix("a{b}").is_err());
        assert!(check_prefix("has space").is_err());
        assert!(check_prefix(&"x".repeat(65)).is_err());
    }
}
