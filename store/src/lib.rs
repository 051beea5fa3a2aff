//! Shared lock state for Latch.
//!
//! This crate owns who holds which resource: the [`LockStore`] contract, the lock and event
//! types, and the backends that implement them ([`MemoryLockStore`] for a single process).
//! The proxy and the control plane both talk to it, and events published here are how a change
//! made on one proxy instance reaches watchers on every other.
//!
//! It must not know about HTTP, tokens, rules or banners: callers decide *which* resource a
//! request needs, *who* the holder is, and whether a takeover is allowed; the store only
//! decides, atomically, who holds what.

mod error;
mod event;
mod lock;
mod lock_store;
mod memory;

pub use error::StoreError;
pub use event::{EventKind, LockEvent, ReleaseReason};
pub use lock::{ClaimOutcome, ClaimRequest, Holder, Lock, Takeover, UnixMillis};
pub use lock_store::{LockStore, DISPLACED_TTL, MAX_LEASE};
pub use memory::MemoryLockStore;
