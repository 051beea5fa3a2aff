//! Mapping a verified token's claims to an [`Identity`].
//!
//! Runs only after the signature and the time, issuer and audience checks passed; it decides
//! who the token names, never whether to trust it. Values that could not travel safely in an
//! HTTP header (control characters) are treated as absent.

use std::sync::OnceLock;

use http::HeaderValue;
use serde::Serialize;
use serde_json::Value;

use crate::error::{AuthError, KeyError};

/// Who a valid token names.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Identity {
    pub user: String,
    /// Display name; the user id when the token has none.
    pub name: String,
    pub roles: Vec<String>,
    /// The token's `exp`, in unix seconds: when sessions built on this token must end.
    pub expires_at: u64,
    /// The id of the sign-in session (`latch_oidc` cookie) the identity comes from, when it
    /// does: a logout ends that session, and what was opened under it, on every instance.
    #[serde(skip)]
    pub sign_in: Option<String>,
    /// For a sign-in session that renews itself with a refresh token: when to renew it.
    #[serde(skip)]
    pub renewal: Option<Renewal>,
    /// `user` and `name` as HTTP header values, made on first use and kept for the identity's
    /// life: a cached identity serves many requests, and each sends both upstream.
    #[serde(skip)]
    pub header_values: HeaderValues,
}

/// An identity's user id and display name as header values (see [`Identity::header_values`]).
/// Not part of what an identity is: any two compare equal.
#[derive(Clone, Debug, Default)]
pub struct HeaderValues(OnceLock<[HeaderValue; 2]>);

impl PartialEq for HeaderValues {
    fn eq(&self, _: &HeaderValues) -> bool {
        true
    }
}

impl Eq for HeaderValues {}

/// `text` as a header value; control characters, which a header may not carry and a display
/// name could, are left out.
pub fn header_value(text: &str) -> HeaderValue {
    HeaderValue::from_str(text).unwrap_or_else(|_| {
        let clean: String = text.chars().filter(|c| !c.is_control()).collect();
        HeaderValue::from_str(&clean).unwrap_or_else(|_| HeaderValue::from_static(""))
    })
}

/// When a renewable sign-in session is renewed at the provider (see
/// [`RelyingParty::renew`](crate::RelyingParty::renew)), in unix seconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Renewal {
    /// From this second, a request renews the session before it is served.
    pub from: u64,
    /// The ID token's `exp`: past it, the identity holds only once renewed.
    pub by: u64,
}

impl Renewal {
    /// The window before an ID token ending at `by` (issued at `now`) in which it is renewed:
    /// its last minute, or the second half of a lifetime shorter than two minutes.
    pub fn before(by: u64, now: u64) -> Renewal {
        let ahead = (by.saturating_sub(now) / 2).min(60);
        Renewal {
            from: by - ahead,
            by,
        }
    }
}

impl Identity {
    /// The user id and the display name as header values, made once per identity.
    pub fn header_values(&self) -> &[HeaderValue; 2] {
        (self.header_values.0).get_or_init(|| [header_value(&self.user), header_value(&self.name)])
    }

    /// Whether this identity is a renewable session whose ID token ended before unix second
    /// `now`: it holds again only once renewed.
    pub fn must_renew(&self, now: u64) -> bool {
        self.renewal.is_some_and(|r| r.by <= now)
    }

    /// Role names compare exactly (case-sensitive), as IdPs issue them.
    pub fn has_any_role(&self, roles: &[String]) -> bool {
        self.roles.iter().any(|held| roles.contains(held))
    }
}

/// A configured claim: a top-level name, or a dotted path into nested objects.
#[derive(Debug)]
pub(crate) struct ClaimPath {
    text: String,
    segments: Vec<String>,
}

impl ClaimPath {
    pub(crate) fn new(setting: &'static str, text: &str) -> Result<ClaimPath, KeyError> {
        let invalid = |reason| KeyError::InvalidClaimPath {
            setting,
            path: text.to_owned(),
            reason,
        };
        if text.trim().is_empty() {
            return Err(invalid("it is empty"));
        }
        if text.split('.').any(str::is_empty) {
            return Err(invalid("it has an empty segment between dots"));
        }
        Ok(ClaimPath {
            text: text.to_owned(),
            segments: text.split('.').map(str::to_owned).collect(),
        })
    }

    /// A top-level claim named exactly like the path wins, so namespaced claims such as
    /// `https://example.com/roles` work without escaping; otherwise the dots are followed.
    fn lookup<'v>(&self, claims: &'v Value) -> Option<&'v Value> {
        let found = match claims.get(&self.text) {
            Some(value) => Some(value),
            None if self.segments.len() > 1 => self
                .segments
                .iter()
                .try_fold(claims, |value, segment| value.get(segment)),
            None => None,
        };
        found.filter(|value| !value.is_null())
    }
}

#[derive(Debug)]
pub(crate) struct ClaimMap {
    pub(crate) user: ClaimPath,
    pub(crate) name: ClaimPath,
    pub(crate) roles: ClaimPath,
}

impl ClaimMap {
    pub(crate) fn identity(&self, claims: &Value) -> Result<Identity, AuthError> {
        let user = match self.user.lookup(claims) {
            Some(Value::String(user)) if usable(user) => user.clone(),
            Some(Value::Number(number)) => number.to_string(),
            _ => return Err(AuthError::MissingClaim(self.user.text.clone())),
        };
        let name = match self.name.lookup(claims) {
            Some(Value::String(name)) if usable(name) => name.clone(),
            _ => user.clone(),
        };
        let roles = match self.roles.lookup(claims) {
            Some(Value::Array(items)) => items
                .iter()
                .filter_map(Value::as_str)
                .map(str::trim)
                .filter(|role| usable(role))
                .map(str::to_owned)
                .collect(),
            Some(Value::String(joined)) => joined
                .split(|c: char| c == ',' || c.is_whitespace())
                .filter(|role| usable(role))
                .map(str::to_owned)
                .collect(),
            _ => Vec::new(),
        };
        let expires_at = expiry(claims).ok_or(AuthError::Malformed)?;
        Ok(Identity {
            user,
            name,
            roles,
            expires_at,
            sign_in: None,
            renewal: None,
            header_values: Default::default(),
        })
    }
}

fn usable(text: &str) -> bool {
    !text.trim().is_empty() && !text.chars().any(char::is_control)
}

/// `exp` as the JWT library reads it: a non-negative number, fractions rounded.
fn expiry(claims: &Value) -> Option<u64> {
    let exp = claims.get("exp")?;
    exp.as_u64().or_else(|| {
        exp.as_f64()
            .filter(|secs| secs.is_finite() && *secs >= 0.0 && *secs < u64::MAX as f64)
            .map(|secs| secs.round() as u64)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn named(user: &str, name: &str) -> Identity {
        Identity {
            user: user.to_owned(),
            name: name.to_owned(),
            roles: Vec::new(),
            expires_at: 1_000,
            sign_in: None,
            renewal: None,
            header_values: Default::default(),
        }
    }

    #[test]
    fn header_values_are_the_user_and_the_name_without_control_characters() {
        let identity = named("alice", "Alice\r\nX-Latch-User: mallory");
        let [user, name] = identity.header_values();
        assert_eq!(user, "alice");
        assert_eq!(name, "AliceX-Latch-User: mallory");
    }

    #[test]
    fn header_values_are_made_once_and_shared_by_every_use() {
        let identity = named("alice", "Alice");
        let first = identity.header_values().as_ptr();
        assert_eq!(identity.header_values().as_ptr(), first);
        // A clone carries the values made so far; equality ignores them.
        assert_eq!(identity.clone(), named("alice", "Alice"));
    }
}
