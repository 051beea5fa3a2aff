//! The memory store's stash: per-user shelves of kept request bodies (see [`crate::stash`]).
//!
//! Deadlines use `tokio::time::Instant`, like the locks, so tests drive the time-to-live with a
//! paused clock. Expired entries are dropped by whichever call meets them first: every call on
//! a user prunes that user's shelf, and every write also prunes, in deadline order, the entries
//! of users who never came back, so memory stays bounded by what is live.

use std::collections::{BTreeMap, HashMap, VecDeque};

use tokio::time::Instant;

use crate::lock::UnixMillis;
use crate::stash::{new_stash_id, NewStash, StashEntry, StashId, StashMeta, MAX_STASH_TTL};

/// Every user's shelf, plus the order in which entries expire across all of them.
#[derive(Default)]
pub(crate) struct Shelves {
    by_user: HashMap<String, Shelf>,
    /// (deadline, id) → user, to drop expired entries of users who never return.
    deadlines: BTreeMap<(Instant, StashId), String>,
}

/// One user's entries, oldest first, and their total body size.
#[derive(Default)]
struct Shelf {
    entries: VecDeque<Kept>,
    bytes: u64,
}

struct Kept {
    entry: StashEntry,
    deadline: Instant,
}

impl Shelves {
    /// Keeps `new` for `user`, evicting that user's oldest entries until it fits the bounds.
    /// `None` if the body alone exceeds the per-user byte bound (nothing changes then).
    pub fn put(
        &mut self,
        user: &str,
        new: NewStash,
        now: Instant,
        at: UnixMillis,
    ) -> Option<StashId> {
        self.prune(now);
        let limits = new.limits;
        let size = new.body.len() as u64;
        if size > limits.max_bytes || limits.max_entries == 0 {
            return None;
        }
        let ttl = limits.ttl.min(MAX_STASH_TTL);
        let shelf = self.by_user.entry(user.to_owned()).or_default();
        while shelf.entries.len() >= limits.max_entries as usize
            || shelf.bytes + size > limits.max_bytes
        {
            let Some(old) = shelf.entries.pop_front() else {
                break;
            };
            shelf.bytes -= old.entry.meta.bytes;
            self.deadlines.remove(&(old.deadline, old.entry.meta.id));
        }
        let id = new_stash_id();
        let deadline = now + ttl;
        let meta = StashMeta {
            id: id.clone(),
            path: new.path,
            method: new.method,
            resource: new.resource,
            content_type: new.content_type,
            bytes: size,
            at,
            expires: at.saturating_add(u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX)),
        };
        shelf.bytes += size;
        shelf.entries.push_back(Kept {
            entry: StashEntry {
                meta,
                body: new.body,
            },
            deadline,
        });
        self.deadlines
            .insert((deadline, id.clone()), user.to_owned());
        Some(id)
    }

    pub fn list(&mut self, user: &str, now: Instant) -> Vec<StashMeta> {
        self.prune(now);
        self.by_user.get(user).map_or_else(Vec::new, |shelf| {
            shelf.entries.iter().map(|k| k.entry.meta.clone()).collect()
        })
    }

    pub fn get(&mut self, user: &str, id: &str, now: Instant) -> Option<StashEntry> {
        self.prune(now);
        let shelf = self.by_user.get(user)?;
        shelf
            .entries
            .iter()
            .find(|k| k.entry.meta.id == id)
            .map(|k| k.entry.clone())
    }

    /// Deletes one of `user`'s entries; the resource it was kept for, `None` if there was no
    /// such entry.
    pub fn delete(&mut self, user: &str, id: &str, now: Instant) -> Option<String> {
        self.prune(now);
        let shelf = self.by_user.get_mut(user)?;
        let at = shelf.entries.iter().position(|k| k.entry.meta.id == id)?;
        let gone = shelf.entries.remove(at)?;
        shelf.bytes -= gone.entry.meta.bytes;
        self.deadlines
            .remove(&(gone.deadline, gone.entry.meta.id.clone()));
        if shelf.entries.is_empty() {
            self.by_user.remove(user);
        }
        Some(gone.entry.meta.resource)
    }

    /// Drops every entry whose deadline has come, in deadline order.
    fn prune(&mut self, now: Instant) {
        while let Some(entry) = self.deadlines.first_entry() {
            if entry.key().0 > now {
                break;
            }
            let ((_, id), user) = entry.remove_entry();
            if let Some(shelf) = self.by_user.get_mut(&user) {
                if let Some(at) = shelf.entries.iter().position(|k| k.entry.meta.id == id) {
                    if let Some(gone) = shelf.entries.remove(at) {
                        shelf.bytes -= gone.entry.meta.bytes;
                    }
                }
                if shelf.entries.is_empty() {
                    self.by_user.remove(&user);
                }
            }
        }
    }
}
