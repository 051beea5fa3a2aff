//! Tokens that already verified, so that the next request of the same session costs a hash
//! and a map lookup instead of a signature check (tens to hundreds of microseconds for RSA and
//! ECDSA keys).
//!
//! An entry answers only for the exact token it was made from (it keeps the token, and a hit
//! compares every byte), only while the verifier would still accept that token's `exp`, and
//! only inside the [`crate::Verifier`] that checked it: new settings or a new key set build a
//! new verifier and so start empty. Refusals are never cached, so forged or garbage tokens
//! cannot fill the cache, and every key in it was signed by a trusted key: a fast seeded
//! hasher is enough, as nobody who cannot sign tokens can choose the keys. It knows nothing of
//! how a token is checked; the verifier decides what goes in.

use std::collections::HashMap;
use std::sync::{Arc, PoisonError, RwLock};

use crate::claims::Identity;

/// Entries kept at most: more live sessions than one instance serves.
pub(crate) const CAPACITY: usize = 10_000;

/// Token bytes kept at most. Tokens run from a few hundred bytes to a few kilobytes (an IdP
/// that lists groups); this bounds the memory whatever their size.
pub(crate) const BUDGET_BYTES: usize = 16 * 1024 * 1024;

type Hasher = foldhash::fast::RandomState;

struct Entry {
    /// Shared with every request the token authenticates: a hit copies no strings.
    identity: Arc<Identity>,
    /// Unix second from which the verifier would refuse the token as expired.
    refuse_from: u64,
}

#[derive(Default)]
struct Entries {
    by_token: HashMap<Box<str>, Entry, Hasher>,
    /// Sum of the lengths of the tokens in `by_token`.
    bytes: usize,
}

impl Entries {
    fn remove(&mut self, token: &str) {
        if let Some((token, _)) = self.by_token.remove_entry(token) {
            self.bytes -= token.len();
        }
    }

    fn full(&self, capacity: usize, budget: usize, adding: usize) -> bool {
        !self.by_token.is_empty()
            && (self.by_token.len() >= capacity || self.bytes + adding > budget)
    }
}

pub(crate) struct TokenCache {
    capacity: usize,
    budget_bytes: usize,
    entries: RwLock<Entries>,
}

impl std::fmt::Debug for TokenCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenCache")
            .field("entries", &self.len())
            .field("capacity", &self.capacity)
            .field("budget_bytes", &self.budget_bytes)
            .finish()
    }
}

impl TokenCache {
    pub(crate) fn new(capacity: usize, budget_bytes: usize) -> TokenCache {
        TokenCache {
            capacity,
            budget_bytes,
            entries: RwLock::new(Entries::default()),
        }
    }

    /// The identity of `token`, verified earlier, if its entry is still good at `now`.
    pub(crate) fn get(&self, token: &str, now: u64) -> Option<Arc<Identity>> {
        let entries = self.entries.read().unwrap_or_else(PoisonError::into_inner);
        entries
            .by_token
            .get(token)
            .filter(|entry| now < entry.refuse_from)
            .map(|entry| Arc::clone(&entry.identity))
    }

    /// Forgets every token, when a key they may have been signed with was withdrawn.
    pub(crate) fn clear(&self) {
        let mut entries = self.entries.write().unwrap_or_else(PoisonError::into_inner);
        entries.by_token.clear();
        entries.bytes = 0;
    }

    /// Remembers a verified token until `refuse_from`. When full (in entries or in bytes),
    /// expired entries go first, then arbitrary ones: a burst of new sessions costs
    /// re-verification, never memory. A token larger than the whole budget is not kept.
    pub(crate) fn insert(&self, token: &str, identity: &Arc<Identity>, refuse_from: u64, now: u64) {
        if now >= refuse_from || token.len() > self.budget_bytes {
            return;
        }
        let mut entries = self.entries.write().unwrap_or_else(PoisonError::into_inner);
        entries.remove(token);
        if entries.full(self.capacity, self.budget_bytes, token.len()) {
            let Entries { by_token, bytes } = &mut *entries;
            by_token.retain(|kept, entry| {
                let live = now < entry.refuse_from;
                if !live {
                    *bytes -= kept.len();
                }
                live
            });
            while entries.full(self.capacity, self.budget_bytes, token.len()) {
                let Some(victim) = entries.by_token.keys().next().cloned() else {
                    break;
                };
                entries.remove(&victim);
            }
        }
        entries.bytes += token.len();
        entries.by_token.insert(
            token.into(),
            Entry {
                identity: Arc::clone(identity),
                refuse_from,
            },
        );
    }

    pub(crate) fn len(&self) -> usize {
        self.entries
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .by_token
            .len()
    }

    /// Token bytes held.
    #[cfg(test)]
    fn bytes(&self) -> usize {
        self.entries
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn identity(user: &str) -> Arc<Identity> {
        Arc::new(Identity {
            user: user.to_owned(),
            name: user.to_owned(),
            roles: vec!["editor".to_owned()],
            expires_at: 1_000,
            sign_in: None,
            renewal: None,
            header_values: Default::default(),
        })
    }

    fn roomy() -> TokenCache {
        TokenCache::new(4, 1024)
    }

    #[test]
    fn an_entry_answers_until_its_refusal_second_and_not_from_it() {
        let cache = roomy();
        cache.insert("a.b.c", &identity("alice"), 1_030, 900);
        assert_eq!(cache.get("a.b.c", 900), Some(identity("alice")));
        assert_eq!(cache.get("a.b.c", 1_029), Some(identity("alice")));
        assert_eq!(cache.get("a.b.c", 1_030), None);
        assert_eq!(cache.get("a.b.c", 5_000), None);
    }

    #[test]
    fn only_the_exact_token_finds_its_entry() {
        let cache = roomy();
        cache.insert("header.payload.signaturA", &identity("alice"), 2_000, 0);
        for other in [
            "header.payload.signaturB",
            "header.payload.signatur",
            "header.payload.signaturAA",
            "Header.payload.signaturA",
            "",
        ] {
            assert_eq!(cache.get(other, 0), None, "{other:?}");
        }
        assert_eq!(
            cache.get("header.payload.signaturA", 0),
            Some(identity("alice"))
        );
    }

    #[test]
    fn an_already_expired_token_is_not_stored() {
        let cache = roomy();
        cache.insert("t", &identity("alice"), 100, 100);
        assert_eq!(cache.len(), 0);
        assert_eq!(cache.bytes(), 0);
    }

    #[test]
    fn storing_a_token_again_replaces_its_entry_and_counts_its_bytes_once() {
        let cache = roomy();
        cache.insert("abc", &identity("alice"), 500, 0);
        cache.insert("abc", &identity("alice2"), 600, 0);
        assert_eq!(cache.len(), 1);
        assert_eq!(cache.bytes(), 3);
        assert_eq!(cache.get("abc", 550), Some(identity("alice2")));
    }

    #[test]
    fn a_full_cache_drops_expired_entries_first() {
        let cache = TokenCache::new(3, 1024);
        cache.insert("old", &identity("old"), 50, 0);
        cache.insert("a", &identity("a"), 500, 0);
        cache.insert("b", &identity("b"), 500, 0);
        cache.insert("c", &identity("c"), 500, 60);
        assert_eq!(cache.len(), 3);
        assert_eq!(cache.bytes(), 3);
        for live in ["a", "b", "c"] {
            assert_eq!(cache.get(live, 60), Some(identity(live)));
        }
    }

    #[test]
    fn a_full_cache_of_live_entries_stays_within_capacity() {
        let cache = TokenCache::new(3, 1024);
        for i in 0..10 {
            cache.insert(&format!("t{i}"), &identity("u"), 500, 0);
            assert!(cache.len() <= 3);
        }
        assert_eq!(cache.get("t9", 0), Some(identity("u")));
        assert_eq!(cache.bytes(), 6);
    }

    #[test]
    fn the_tokens_kept_stay_within_the_byte_budget() {
        let cache = TokenCache::new(100, 10);
        cache.insert("aaaa", &identity("a"), 500, 0);
        cache.insert("bbbb", &identity("b"), 500, 0);
        assert_eq!(cache.bytes(), 8);
        cache.insert("cccc", &identity("c"), 500, 0);
        assert!(cache.bytes() <= 10, "{} bytes", cache.bytes());
        assert_eq!(cache.len(), 2);
        assert_eq!(cache.get("cccc", 0), Some(identity("c")));
        // A token larger than the whole budget is verified every time, never kept.
        cache.insert("x".repeat(11).as_str(), &identity("x"), 500, 0);
        assert_eq!(cache.get(&"x".repeat(11), 0), None);
        assert_eq!(cache.get("cccc", 0), Some(identity("c")));
    }
}
