//! The sign-in session cookie: an identity and its end, sealed (see [`crate::seal`]) when an
//! OpenID Connect sign-in completes, and accepted as proof of identity until that end.
//!
//! Opening a session costs a decryption; like verified tokens, an opened session is remembered
//! by its exact cookie value until it ends (see [`crate::cache`]), so a browser pays it once.
//! Values that do not open are never remembered, so forged cookies cannot fill the cache.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::cache::{self, TokenCache};
use crate::claims::Identity;
use crate::error::{AuthError, KeyError};
use crate::seal::Sealer;

/// The authenticated data of session cookies: no other sealed value opens as one.
const PURPOSE: &str = "latch-session-v1";

/// What the cookie holds, in short member names: cookies are sent with every request.
#[derive(Serialize, Deserialize)]
struct Sealed {
    u: String,
    n: String,
    r: Vec<String>,
    e: u64,
}

/// Issues and opens session cookies with one key.
#[derive(Debug)]
pub struct Sessions {
    sealer: Sealer,
    opened: TokenCache,
}

impl Sessions {
    pub fn new(cookie_secret: &[u8]) -> Result<Sessions, KeyError> {
        Ok(Sessions {
            sealer: Sealer::new(cookie_secret)?,
            opened: TokenCache::new(cache::CAPACITY, cache::BUDGET_BYTES),
        })
    }

    /// The sealer, for the other sign-in cookies (they name another purpose).
    pub fn sealer(&self) -> &Sealer {
        &self.sealer
    }

    /// The cookie value of a session for `identity`, ending at `identity.expires_at`.
    pub fn issue(&self, identity: &Identity) -> String {
        let sealed = Sealed {
            u: identity.user.clone(),
            n: identity.name.clone(),
            r: identity.roles.clone(),
            e: identity.expires_at,
        };
        let json = serde_json::to_vec(&sealed).unwrap_or_default();
        self.sealer.seal(PURPOSE, &json)
    }

    /// The identity a session cookie holds at unix second `now`, or why it holds none.
    pub fn open(&self, value: &str, now: u64) -> Result<Arc<Identity>, AuthError> {
        if let Some(identity) = self.opened.get(value, now) {
            return Ok(identity);
        }
        let plain = self
            .sealer
            .open(PURPOSE, value)
            .ok_or(AuthError::BadSession)?;
        let sealed: Sealed = serde_json::from_slice(&plain).map_err(|_| AuthError::BadSession)?;
        if sealed.e <= now {
            return Err(AuthError::Expired);
        }
        let identity = Arc::new(Identity {
            user: sealed.u,
            name: sealed.n,
            roles: sealed.r,
            expires_at: sealed.e,
        });
        self.opened
            .insert(value, &identity, identity.expires_at, now);
        Ok(identity)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alice(expires_at: u64) -> Identity {
        Identity {
            user: "alice".into(),
            name: "Alice".into(),
            roles: vec!["editor".into()],
            expires_at,
        }
    }

    #[test]
    fn an_issued_session_opens_until_it_ends() {
        let sessions = Sessions::new(&[3; 32]).unwrap();
        let cookie = sessions.issue(&alice(1_000));
        assert_eq!(*sessions.open(&cookie, 999).unwrap(), alice(1_000));
        // The remembered entry ends with the session too.
        assert_eq!(sessions.open(&cookie, 1_000), Err(AuthError::Expired));
        let fresh = Sessions::new(&[3; 32]).unwrap();
        assert_eq!(fresh.open(&cookie, 1_000), Err(AuthError::Expired));
    }

    #[test]
    fn a_tampered_or_foreign_session_is_refused_and_not_remembered() {
        let sessions = Sessions::new(&[3; 32]).unwrap();
        let cookie = sessions.issue(&alice(1_000));
        let mut tampered = cookie.clone().into_bytes();
        let i = tampered.len() / 2;
        tampered[i] = if tampered[i] == b'A' { b'B' } else { b'A' };
        let tampered = String::from_utf8(tampered).unwrap();
        assert_eq!(sessions.open(&tampered, 10), Err(AuthError::BadSession));
        let other = Sessions::new(&[4; 32]).unwrap();
        assert_eq!(other.open(&cookie, 10), Err(AuthError::BadSession));
        // A value sealed for another purpose under the same key is not a session.
        let flow = sessions
            .sealer()
            .seal("latch-flow-v1", br#"{"u":"x","n":"x","r":[],"e":9999}"#);
        assert_eq!(sessions.open(&flow, 10), Err(AuthError::BadSession));
        assert_eq!(sessions.opened.len(), 0);
    }
}
