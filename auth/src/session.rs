//! The sign-in session cookie: an identity and its end, sealed (see [`crate::seal`]) when an
//! OpenID Connect sign-in completes, and accepted as proof of identity until that end.
//!
//! Opening a session costs a decryption; like verified tokens, an opened session is remembered
//! by its exact cookie value until it ends (see [`crate::cache`]), so a browser pays it once.
//! Values that do not open are never remembered, so forged cookies cannot fill the cache.
//!
//! Each session has a random id, made at sign-in and sealed with it
//! ([`Identity::sign_in`]): a logout records that id as ended in the lock store, and whoever
//! accepts session cookies refuses the ended ones (the cookie itself stays valid to this
//! module until its end).

use std::sync::Arc;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use serde::{Deserialize, Serialize};

use crate::cache::{self, TokenCache};
use crate::claims::{Identity, Renewal};
use crate::error::{AuthError, KeyError};
use crate::seal::{Sealer, MAX_SEALED_CHARS};

/// The session cookie a finished sign-in sets.
pub const SESSION_COOKIE: &str = "latch_oidc";

/// The authenticated data of session cookies: no other sealed value opens as one.
const PURPOSE: &str = "latch-session-v1";

/// What the cookie holds, in short member names: cookies are sent with every request.
#[derive(Serialize, Deserialize)]
pub(crate) struct Sealed {
    /// The session id.
    pub(crate) i: String,
    pub(crate) u: String,
    pub(crate) n: String,
    pub(crate) r: Vec<String>,
    /// When the session ends, in unix seconds.
    pub(crate) e: u64,
    /// The ID token of the sign-in, kept to send as RP-initiated logout's `id_token_hint`
    /// when the cookie has room for it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) h: Option<String>,
    /// A renewable session's refresh token, the nonce of its sign-in (a renewed ID token that
    /// carries one must carry this one), and when it is renewed (see [`Renewal`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) t: Option<Renewable>,
}

/// What a renewable session keeps for its renewal.
#[derive(Clone, Serialize, Deserialize)]
pub(crate) struct Renewable {
    pub(crate) t: String,
    pub(crate) o: String,
    pub(crate) f: u64,
    pub(crate) b: u64,
}

/// A session's means of renewal: its refresh token and the nonce of its sign-in.
pub struct RenewWith {
    pub refresh_token: String,
    pub nonce: String,
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

    /// The cookie value of a session for `identity`, ending at `identity.expires_at`, with
    /// id `identity.sign_in` (see [`new_session_id`]).
    pub fn issue(&self, identity: &Identity) -> String {
        self.seal(identity, None, None)
    }

    /// As [`Sessions::issue`], keeping `id_token` for the logout's `id_token_hint` when the
    /// cookie stays within [`MAX_SEALED_CHARS`] with it; without it otherwise. A session with
    /// `renew` (and `identity.renewal`) renews itself with its refresh token.
    pub fn issue_with_hint(
        &self,
        identity: &Identity,
        id_token: &str,
        renew: Option<&RenewWith>,
    ) -> String {
        let with = self.seal(identity, Some(id_token), renew);
        if with.len() <= MAX_SEALED_CHARS {
            return with;
        }
        self.seal(identity, None, renew)
    }

    /// The ID token kept in a session cookie that opens at unix second `now`, if it has one.
    pub fn id_token_hint(&self, value: &str, now: u64) -> Option<String> {
        let sealed = self.unseal(value)?;
        (sealed.e > now).then_some(sealed.h).flatten()
    }

    /// What a session cookie holds, unchecked.
    pub(crate) fn unseal(&self, value: &str) -> Option<Sealed> {
        let plain = self.sealer.open(PURPOSE, value)?;
        serde_json::from_slice(&plain).ok()
    }

    fn seal(
        &self,
        identity: &Identity,
        id_token: Option<&str>,
        renew: Option<&RenewWith>,
    ) -> String {
        let renewable = renew.zip(identity.renewal).map(|(with, when)| Renewable {
            t: with.refresh_token.clone(),
            o: with.nonce.clone(),
            f: when.from,
            b: when.by,
        });
        let sealed = Sealed {
            i: identity.sign_in.clone().unwrap_or_default(),
            u: identity.user.clone(),
            n: identity.name.clone(),
            r: identity.roles.clone(),
            e: identity.expires_at,
            h: id_token.filter(|t| !t.is_empty()).map(str::to_owned),
            t: renewable,
        };
        let json = serde_json::to_vec(&sealed).unwrap_or_default();
        self.sealer.seal(PURPOSE, &json)
    }

    /// The identity of the session cookie ([`SESSION_COOKIE`])
    /// among a request's `Cookie` headers, unless `has_ended` says its sign-in was logged out.
    pub fn from_cookies<'a>(
        &self,
        cookie_headers: impl Iterator<Item = &'a [u8]>,
        now: u64,
        has_ended: impl FnOnce(&str) -> bool,
    ) -> Result<Arc<Identity>, AuthError> {
        let value = crate::token_from_headers(cookie_headers, None, SESSION_COOKIE);
        self.from_value(value, now, has_ended)
    }

    /// As [`Sessions::from_cookies`], for the session cookie's value already found.
    pub fn from_value(
        &self,
        value: Option<&str>,
        now: u64,
        has_ended: impl FnOnce(&str) -> bool,
    ) -> Result<Arc<Identity>, AuthError> {
        let identity = self.open(value.ok_or(AuthError::Missing)?, now)?;
        if identity.sign_in.as_deref().is_some_and(has_ended) {
            return Err(AuthError::SignedOut);
        }
        Ok(identity)
    }

    /// The identity a session cookie holds at unix second `now`, or why it holds none. A
    /// renewable session's identity is given past its [`Renewal`] too: whoever accepts it
    /// renews it then, or refuses it once [`Identity::must_renew`].
    pub fn open(&self, value: &str, now: u64) -> Result<Arc<Identity>, AuthError> {
        if let Some(identity) = self.opened.get(value, now) {
            return Ok(identity);
        }
        let sealed = self.unseal(value).ok_or(AuthError::BadSession)?;
        if !store_safe_id(&sealed.i) {
            return Err(AuthError::BadSession);
        }
        if sealed.e <= now {
            return Err(AuthError::Expired);
        }
        let identity = Arc::new(Identity {
            user: sealed.u,
            name: sealed.n,
            roles: sealed.r,
            expires_at: sealed.e,
            sign_in: Some(sealed.i),
            renewal: sealed.t.map(|t| Renewal { from: t.f, by: t.b }),
            header_values: Default::default(),
        });
        self.opened
            .insert(value, &identity, identity.expires_at, now);
        Ok(identity)
    }
}

/// A fresh session id: 128 random bits as unpadded base64url (22 characters).
pub fn new_session_id() -> String {
    let bytes: [u8; 16] = rand::random();
    URL_SAFE_NO_PAD.encode(bytes)
}

/// Whether a sealed id has the form [`new_session_id`] makes; a session without one (sealed
/// before sessions had ids) is not accepted, since it could not be ended.
fn store_safe_id(id: &str) -> bool {
    id.len() == 22
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
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
            sign_in: Some("AAAAAAAAAAAAAAAAAAAAAA".into()),
            renewal: None,
            header_values: Default::default(),
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
    fn from_cookies_finds_the_session_and_refuses_an_ended_one() {
        let sessions = Sessions::new(&[3; 32]).unwrap();
        let mut identity = alice(1_000);
        identity.sign_in = Some(new_session_id());
        let cookie = format!("a=1; latch_oidc={}", sessions.issue(&identity));
        let headers = || std::iter::once(cookie.as_bytes());
        let opened = sessions.from_cookies(headers(), 10, |_| false).unwrap();
        assert_eq!(opened.user, identity.user);
        let ended = identity.sign_in.clone().unwrap();
        assert!(matches!(
            sessions.from_cookies(headers(), 10, |id| id == ended),
            Err(AuthError::SignedOut)
        ));
        assert!(matches!(
            sessions.from_cookies(std::iter::once(&b"a=1"[..]), 10, |_| false),
            Err(AuthError::Missing)
        ));
    }

    #[test]
    fn session_ids_are_fresh_and_of_the_sealed_form() {
        let (a, b) = (new_session_id(), new_session_id());
        assert_ne!(a, b);
        assert!(store_safe_id(&a) && store_safe_id(&b));
        let sessions = Sessions::new(&[3; 32]).unwrap();
        let mut identity = alice(1_000);
        identity.sign_in = Some(a.clone());
        let opened = sessions.open(&sessions.issue(&identity), 10).unwrap();
        assert_eq!(opened.sign_in.as_deref(), Some(a.as_str()));
    }

    #[test]
    fn the_id_token_is_kept_for_the_logout_when_the_cookie_has_room() {
        let sessions = Sessions::new(&[3; 32]).unwrap();
        let cookie = sessions.issue_with_hint(&alice(1_000), "header.claims.signature", None);
        assert_eq!(sessions.open(&cookie, 10).unwrap().user, "alice");
        assert_eq!(
            sessions.id_token_hint(&cookie, 10).as_deref(),
            Some("header.claims.signature")
        );
        assert_eq!(sessions.id_token_hint(&cookie, 1_000), None, "ended");
        let huge = "x".repeat(MAX_SEALED_CHARS);
        let cookie = sessions.issue_with_hint(&alice(1_000), &huge, None);
        assert!(cookie.len() <= MAX_SEALED_CHARS);
        assert_eq!(sessions.open(&cookie, 10).unwrap().user, "alice");
        assert_eq!(sessions.id_token_hint(&cookie, 10), None);
        assert_eq!(sessions.id_token_hint("garbage", 10), None);
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
        // A session sealed without an id (as before ids) cannot be ended, so it is refused.
        let no_id = sessions
            .sealer()
            .seal(PURPOSE, br#"{"i":"","u":"x","n":"x","r":[],"e":9999}"#);
        assert_eq!(sessions.open(&no_id, 10), Err(AuthError::BadSession));
        assert_eq!(sessions.opened.len(), 0);
    }

    #[test]
    fn a_renewable_session_keeps_its_refresh_token_and_renewal_times() {
        let sessions = Sessions::new(&[3; 32]).unwrap();
        let mut identity = alice(10_000);
        identity.renewal = Some(Renewal::before(400, 100));
        let with = RenewWith {
            refresh_token: "refresh-1".into(),
            nonce: "nonce-1".into(),
        };
        let cookie = sessions.issue_with_hint(&identity, "id.token.sig", Some(&with));
        let opened = sessions.open(&cookie, 500).unwrap();
        assert_eq!(opened.renewal, Some(Renewal { from: 340, by: 400 }));
        assert!(opened.must_renew(500) && !opened.must_renew(399));
        let sealed = sessions.unseal(&cookie).unwrap();
        let kept = sealed.t.unwrap();
        assert_eq!((kept.t.as_str(), kept.o.as_str()), ("refresh-1", "nonce-1"));
        // Without a renewal time there is nothing to renew with.
        let plain = sessions.issue_with_hint(&alice(10_000), "id.token.sig", Some(&with));
        assert!(sessions.unseal(&plain).unwrap().t.is_none());
        assert_eq!(sessions.open(&plain, 500).unwrap().renewal, None);
    }

    #[test]
    fn the_renewal_window_is_the_last_minute_or_half_a_short_lifetime() {
        assert_eq!(
            Renewal::before(3_700, 100),
            Renewal {
                from: 3_640,
                by: 3_700
            }
        );
        assert_eq!(Renewal::before(108, 100), Renewal { from: 104, by: 108 });
        assert_eq!(Renewal::before(100, 100), Renewal { from: 100, by: 100 });
        assert_eq!(Renewal::before(50, 100), Renewal { from: 50, by: 50 });
    }
}
