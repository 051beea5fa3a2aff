//! Shared state for Latch: what both the proxy and the control plane read and write.
//!
//! - **Locks:** the [`LockStore`] contract, the lock and event types, and its backends,
//!   [`MemoryLockStore`] for one process and [`RedisLockStore`] for many. Events published
//!   here are how a change made on one proxy instance reaches watchers on every other.
//! - **Rules at rest:** the [`RuleStore`] contract with [`FileRuleStore`] and
//!   [`MongoRuleStore`]; rules are stored and versioned here, compiled and matched by `rules`.
//! - **The audit trail:** the [`EventLog`] contract with [`FileEventLog`] and
//!   [`MongoEventLog`].
//!
//! It must not know about HTTP, tokens or banners: callers decide *which* resource a request
//! needs, *who* the holder is, and whether a takeover is allowed; the lock store only decides,
//! atomically, who holds what.

mod atomic_file;
mod audit;
mod ended;
mod error;
mod event;
mod file_events;
mod file_rules;
mod lock;
mod lock_store;
mod memory;
mod memory_queue;
mod memory_stash;
mod mongo;
mod mongo_events;
mod mongo_rules;
mod redis;
mod redis_keys;
mod redis_options;
mod redis_scripts;
mod redis_wire;
mod rule_store;
mod stash;
mod turns;

pub use atomic_file::write_atomically;
pub use audit::{
    AuditEvent, AuditKind, EventLog, EventLogError, EventQuery, DEFAULT_QUERY_LIMIT,
    MAX_QUERY_LIMIT,
};
pub use ended::EndedSessions;
pub use error::StoreError;
pub use event::{EventKind, LockEvent, ReleaseReason};
pub use file_events::FileEventLog;
pub use file_rules::{render_rules_toml, FileRuleStore};
pub use lock::{
    ClaimOutcome, ClaimRequest, Holder, Lock, Offer, Present, QueuePlace, QueueState, Takeover,
    UnixMillis,
};
pub use lock_store::{
    is_session_id, ForceReleased, LockStore, DEFAULT_QUEUE_MAX, DISPLACED_TTL, MAX_ENDED_FOR,
    MAX_ENDED_SESSIONS, MAX_HELD_SHOWN, MAX_LEASE, MAX_PRESENCE, MAX_QUEUE, MAX_SESSION_ID,
};
pub use memory::MemoryLockStore;
pub use mongo::{Mongo, SELECTION_TIMEOUT};
pub use mongo_events::MongoEventLog;
pub use mongo_rules::MongoRuleStore;
pub use redis::RedisLockStore;
pub use redis_options::{RedisOpenError, RedisOptions, DEFAULT_KEY_PREFIX};
pub use rule_store::{rule_etag, RuleList, RuleStore, RuleStoreError, StoredRule};
pub use stash::{
    is_stash_id, new_stash_id, NewStash, StashEntry, StashId, StashLimits, StashMeta, MAX_STASH_TTL,
};
pub use turns::{MAX_TURNS, MAX_TURN_COOKIE, MAX_TURN_KEY};
