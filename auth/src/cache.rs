//! Tokens that already verified, so that the next request of the same session costs a hash
//! and a map lookup instead of a signature check (tens to hundreds of microseconds for RSA and
//! ECDSA keys).
//!
//! An entry answers only for the exact token it was made from (its SHA-256), only while the
//! verifier would still accept that token's `exp`, and only inside the [`crate::Verifier`]
//! that checked it: new settings or a new key set build a new verifier and so start empty.
//! Refusals are never cached, so forged or garbage tokens cannot fill the cache. It knows
//! nothing of how a token is checked; the verifier decides what goes in.

use std::collections::HashMap;
use std::sync::{Arc, PoisonError, RwLock};

use sha2::{Digest, Sha256};

use crate::claims::Identity;

/// Entries kept at most: a few megabytes, and more live sessions than one instance serves.
pub(crate) const CAPACITY: usize = 10_000;

/// SHA-256 of a token. Collision resistance is what makes a hit safe: no other token, however
/// crafted, maps to a verified token's entry.
pub(crate) type Key = [u8; 32];

struct Entry {
    /// Shared with every request the token authenticates: a hit copies no strings.
    identity: Arc<Identity>,
    /// Unix second from which the verifier would refuse the token as expired.
    refuse_from: u64,
}

pub(crate) struct TokenCache {
    capacity: usize,
    entries: RwLock<HashMap<Key, Entry>>,
}

impl std::fmt::Debug for TokenCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenCache")
            .field("entries", &self.len())
            .field("capacity", &self.capacity)
            .finish()
    }
}

impl TokenCache {
    pub(crate) fn new(capacity: usize) -> TokenCache {
        TokenCache {
            capacity,
            entries: RwLock::new(HashMap::new()),
        }
    }

    /// The key for `token`: a fixed-size digest, computed without allocating.
    pub(crate) fn key(token: &str) -> Key {
        Sha256::digest(token.as_bytes()).into()
    }

    /// The identity of a token verified earlier, if its entry is still good at `now`.
    pub(crate) fn get(&self, key: &Key, now: u64) -> Option<Arc<Identity>> {
        let entries = self.entries.read().unwrap_or_else(PoisonError::into_inner);
        entries
            .get(key)
            .filter(|entry| now < entry.refuse_from)
            .map(|entry| Arc::clone(&entry.identity))
    }

    /// Remembers a verified token until `refuse_from`. When full, expired entries go first,
    /// then arbitrary ones: a burst of new sessions costs re-verification, never memory.
    pub(crate) fn insert(&self, key: Key, identity: &Arc<Identity>, refuse_from: u64, now: u64) {
        if now >= refuse_from {
            return;
        }
        let mut entries = self.entries.write().unwrap_or_else(PoisonError::into_inner);
        if entries.len() >= self.capacity && !entries.contains_key(&key) {
            entries.retain(|_, entry| now < entry.refuse_from);
            while entries.len() >= self.capacity {
                let Some(victim) = entries.keys().next().copied() else {
                    break;
                };
                entries.remove(&victim);
            }
        }
        entries.insert(
            key,
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
            .len()
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
        })
    }

    #[test]
    fn an_entry_answers_until_its_refusal_second_and_not_from_it() {
        let cache = TokenCache::new(4);
        let key = TokenCache::key("a.b.c");
        cache.insert(key, &identity("alice"), 1_030, 900);
        assert_eq!(cache.get(&key, 900), Some(identity("alice")));
        assert_eq!(cache.get(&key, 1_029), Some(identity("alice")));
        assert_eq!(cache.get(&key, 1_030), None);
        assert_eq!(cache.get(&key, 5_000), None);
    }

    #[test]
    fn the_key_is_the_sha256_of_the_token() {
        // FIPS 180-2, appendix B.1.
        let want = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
        let got: String = TokenCache::key("abc")
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(got, want);
    }

    #[test]
    fn tokens_differing_in_one_byte_have_different_keys() {
        let a = TokenCache::key("header.payload.signaturA");
        let b = TokenCache::key("header.payload.signaturB");
        assert_ne!(a, b);
        assert_eq!(a, TokenCache::key("header.payload.signaturA"));
        let cache = TokenCache::new(4);
        cache.insert(a, &identity("alice"), 2_000, 0);
        assert_eq!(cache.get(&b, 0), None);
    }

    #[test]
    fn an_already_expired_token_is_not_stored() {
        let cache = TokenCache::new(4);
        cache.insert(TokenCache::key("t"), &identity("alice"), 100, 100);
        assert_eq!(cache.len(), 0);
    }

    #[test]
    fn a_full_cache_drops_expired_entries_first() {
        let cache = TokenCache::new(3);
        cache.insert(TokenCache::key("old"), &identity("old"), 50, 0);
        cache.insert(TokenCache::key("a"), &identity("a"), 500, 0);
        cache.insert(TokenCache::key("b"), &identity("b"), 500, 0);
        cache.insert(TokenCache::key("c"), &identity("c"), 500, 60);
        assert_eq!(cache.len(), 3);
        for live in ["a", "b", "c"] {
            assert_eq!(cache.get(&TokenCache::key(live), 60), Some(identity(live)));
        }
    }

    #[test]
    fn a_full_cache_of_live_entries_stays_within_capacity() {
        let cache = TokenCache::new(3);
        for i in 0..10 {
            cache.insert(TokenCache::key(&format!("t{i}")), &identity("u"), 500, 0);
            assert!(cache.len() <= 3);
        }
        assert_eq!(cache.get(&TokenCache::key("t9"), 0), Some(identity("u")));
    }
}
