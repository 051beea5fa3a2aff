//! Sealing small values for a browser to carry: encrypted and authenticated with
//! XChaCha20-Poly1305 under a key derived from the configured cookie secret.
//!
//! The sign-in keeps its whole state in the browser (the flow's PKCE verifier, `state` and
//! `nonce`, then the signed-in identity) so that any instance behind a load balancer can finish
//! a flow or accept a session without shared memory. Every sealed value names its purpose in
//! the authenticated data, so a value sealed for one cookie never opens as another. A random
//! 192-bit nonce per value makes nonce reuse under one key negligible without a counter.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use sha2::{Digest, Sha256};

use crate::error::KeyError;

/// Shortest cookie secret accepted: 256 bits, as much as the key it is turned into.
pub const MIN_COOKIE_SECRET_BYTES: usize = 32;

/// Largest sealed value opened: far beyond any identity Latch seals, and under what browsers
/// keep in one cookie. Refusing larger ones early bounds the work per request.
pub const MAX_SEALED_CHARS: usize = 4096;

const NONCE_BYTES: usize = 24;

/// Seals and opens values with one key. Immutable; shared behind an `Arc`.
pub struct Sealer {
    cipher: XChaCha20Poly1305,
}

impl std::fmt::Debug for Sealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Sealer(..)")
    }
}

impl Sealer {
    /// A sealer keyed by `secret`, which must hold at least [`MIN_COOKIE_SECRET_BYTES`].
    pub fn new(secret: &[u8]) -> Result<Sealer, KeyError> {
        if secret.len() < MIN_COOKIE_SECRET_BYTES {
            return Err(KeyError::CookieSecretTooShort { len: secret.len() });
        }
        // The secret may be a passphrase rather than uniform bytes: hashing it with a label
        // gives a key of the cipher's size that is used for nothing else.
        let key = Sha256::new()
            .chain_update(b"latch cookie seal v1\0")
            .chain_update(secret)
            .finalize();
        Ok(Sealer {
            cipher: XChaCha20Poly1305::new(&key),
        })
    }

    /// `plaintext` sealed for `purpose`, as cookie-safe text (unpadded base64url).
    pub fn seal(&self, purpose: &str, plaintext: &[u8]) -> String {
        let nonce_bytes: [u8; NONCE_BYTES] = rand::random();
        let nonce = XNonce::from(nonce_bytes);
        let payload = Payload {
            msg: plaintext,
            aad: purpose.as_bytes(),
        };
        // Encryption fails only for messages of gigabytes; the values sealed here are small.
        let sealed = self.cipher.encrypt(&nonce, payload).unwrap_or_default();
        let mut out = Vec::with_capacity(NONCE_BYTES + sealed.len());
        out.extend_from_slice(&nonce_bytes);
        out.extend_from_slice(&sealed);
        URL_SAFE_NO_PAD.encode(out)
    }

    /// The plaintext of a value sealed for `purpose` with this key; `None` for anything else
    /// (altered, truncated, another purpose, another key, oversized).
    pub fn open(&self, purpose: &str, sealed: &str) -> Option<Vec<u8>> {
        if sealed.len() > MAX_SEALED_CHARS {
            return None;
        }
        let bytes = URL_SAFE_NO_PAD.decode(sealed).ok()?;
        if bytes.len() < NONCE_BYTES {
            return None;
        }
        let (nonce, ciphertext) = bytes.split_at(NONCE_BYTES);
        let nonce: [u8; NONCE_BYTES] = nonce.try_into().ok()?;
        let nonce = XNonce::from(nonce);
        let payload = Payload {
            msg: ciphertext,
            aad: purpose.as_bytes(),
        };
        self.cipher.decrypt(&nonce, payload).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sealer(byte: u8) -> Sealer {
        Sealer::new(&[byte; 32]).unwrap()
    }

    #[test]
    fn a_sealed_value_opens_for_its_purpose_only() {
        let s = sealer(7);
        let sealed = s.seal("session", b"alice");
        assert_eq!(s.open("session", &sealed).as_deref(), Some(&b"alice"[..]));
        assert_eq!(s.open("flow", &sealed), None);
    }

    #[test]
    fn another_key_altered_bytes_and_garbage_open_nothing() {
        let s = sealer(7);
        let sealed = s.seal("session", b"alice");
        assert_eq!(sealer(8).open("session", &sealed), None);
        let mut bytes = URL_SAFE_NO_PAD.decode(&sealed).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        assert_eq!(s.open("session", &URL_SAFE_NO_PAD.encode(&bytes)), None);
        assert_eq!(s.open("session", "not base64!"), None);
        assert_eq!(s.open("session", ""), None);
        assert_eq!(s.open("session", &"A".repeat(MAX_SEALED_CHARS + 4)), None);
    }

    #[test]
    fn two_seals_of_one_value_differ() {
        let s = sealer(1);
        assert_ne!(s.seal("p", b"same"), s.seal("p", b"same"));
    }

    #[test]
    fn a_short_secret_is_refused() {
        assert!(matches!(
            Sealer::new(&[0; 31]),
            Err(KeyError::CookieSecretTooShort { len: 31 })
        ));
    }
}
