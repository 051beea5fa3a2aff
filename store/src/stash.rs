//! The stash: request bodies the proxy refused to forward, kept for the user who sent them.
//!
//! When a user who lost a lock (or never had it) sends a write, the proxy keeps what they
//! typed here so it is not lost. Entries belong to one user id and are only ever read back by
//! that id: every method takes the user, and an id alone finds nothing. They live in the lock
//! store so every instance sees them, bounded per user by count and by bytes (the oldest go
//! first) and dropped after a time-to-live. The bounds come with each write ([`StashLimits`]),
//! like a claim's lease and cap, so the store itself needs no configuration.
//!
//! This module knows nothing about HTTP: which requests are kept, and how an entry is shown,
//! is the proxy's business.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::lock::UnixMillis;

/// An entry's id: 32 lowercase hex digits (128 random bits), so ids cannot be guessed and
/// never repeat in practice.
pub type StashId = String;

/// Longest time-to-live a store accepts; longer ones are clamped.
pub const MAX_STASH_TTL: Duration = Duration::from_secs(30 * 24 * 60 * 60);

/// A fresh random entry id.
pub fn new_stash_id() -> StashId {
    let bytes: [u8; 16] = rand::random();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Whether `id` has the shape of an entry id; anything else is refused before the store is
/// asked.
pub fn is_stash_id(id: &str) -> bool {
    id.len() == 32 && id.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// What one user may keep.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StashLimits {
    /// How long an entry is kept.
    pub ttl: Duration,
    /// Most entries per user; past it the oldest are evicted.
    pub max_entries: u32,
    /// Most body bytes per user, all entries together; past it the oldest are evicted.
    pub max_bytes: u64,
}

/// An entry as it is listed: everything but the body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StashMeta {
    pub id: StashId,
    /// The request path (and query) the body was sent to.
    pub path: String,
    pub method: String,
    /// The resource the refused request needed.
    pub resource: String,
    /// The request's `Content-Type`, as sent.
    pub content_type: String,
    /// Length of the body in bytes.
    pub bytes: u64,
    /// When it was kept.
    pub at: UnixMillis,
    /// When it will be dropped.
    pub expires: UnixMillis,
}

/// One kept request: its description and its body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StashEntry {
    pub meta: StashMeta,
    pub body: Vec<u8>,
}

/// A body to keep. `id`, `at` and `expires` are the store's to set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewStash {
    pub path: String,
    pub method: String,
    pub resource: String,
    pub content_type: String,
    pub body: Vec<u8>,
    pub limits: StashLimits,
}

/// The part of [`StashMeta`] a store keeps next to the body as JSON (the rest it knows from
/// where the entry sits).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct StoredMeta {
    pub path: String,
    pub method: String,
    pub resource: String,
    pub content_type: String,
}

impl StoredMeta {
    pub fn of(entry: &NewStash) -> Self {
        Self {
            path: entry.path.clone(),
            method: entry.method.clone(),
            resource: entry.resource.clone(),
            content_type: entry.content_type.clone(),
        }
    }

    pub fn into_meta(
        self,
        id: StashId,
        bytes: u64,
        at: UnixMillis,
        expires: UnixMillis,
    ) -> StashMeta {
        StashMeta {
            id,
            path: self.path,
            method: self.method,
            resource: self.resource,
            content_type: self.content_type,
            bytes,
            at,
            expires,
        }
    }
}
