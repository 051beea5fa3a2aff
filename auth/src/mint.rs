//! Minting HS256 tokens for development, tests and the demo, and reading TTLs like `15m`.
//!
//! Production tokens come from an identity provider; this exists so `latch token` and
//! `latch demo` can produce tokens the verifier accepts, with the same secret rules.

use std::time::{SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde::Serialize;

use crate::error::MintError;
use crate::key::{check_secret, SecretProblem};

/// What to put in a minted token; `iat` and `exp` are added from the clock and `ttl_seconds`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MintRequest {
    pub sub: String,
    pub name: Option<String>,
    pub roles: Vec<String>,
    pub ttl_seconds: u64,
    pub issuer: Option<String>,
    pub audience: Option<String>,
}

#[derive(Serialize)]
struct Claims<'a> {
    sub: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<&'a str>,
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    roles: &'a [String],
    iat: u64,
    exp: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    iss: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    aud: Option<&'a str>,
}

/// Signs `req` with `secret` (at least 32 bytes, as the verifier demands).
pub fn mint_hs256(secret: &[u8], req: &MintRequest) -> Result<String, MintError> {
    match check_secret(secret) {
        Ok(()) => {}
        Err(SecretProblem::Empty) => return Err(MintError::EmptySecret),
        Err(SecretProblem::TooShort(len)) => return Err(MintError::SecretTooShort { len }),
    }
    if req.sub.trim().is_empty() {
        return Err(MintError::EmptySubject);
    }
    if req.ttl_seconds == 0 {
        return Err(MintError::ZeroTtl);
    }
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_secs());
    let exp = now
        .checked_add(req.ttl_seconds)
        .filter(|exp| i64::try_from(*exp).is_ok())
        .ok_or(MintError::TtlTooLarge(req.ttl_seconds))?;
    let claims = Claims {
        sub: &req.sub,
        name: req.name.as_deref(),
        roles: &req.roles,
        iat: now,
        exp,
        iss: req.issuer.as_deref(),
        aud: req.audience.as_deref(),
    };
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(secret),
    )
    .map_err(|error| MintError::Signing(error.to_string()))
}

/// Seconds in a TTL written as plain seconds or with one unit: `90s`, `15m`, `1h`, `7d`.
pub fn parse_ttl(s: &str) -> Result<u64, String> {
    let text = s.trim();
    let invalid = || {
        format!(
            "invalid TTL {s:?}: expected seconds or a number with a unit s, m, h or d \
             (e.g. 90s, 15m, 1h, 7d)"
        )
    };
    let (digits, unit) = match text.char_indices().last() {
        Some((at, 's')) => (&text[..at], 1),
        Some((at, 'm')) => (&text[..at], 60),
        Some((at, 'h')) => (&text[..at], 3_600),
        Some((at, 'd')) => (&text[..at], 86_400),
        _ => (text, 1),
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(invalid());
    }
    let seconds = digits
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(unit))
        .ok_or_else(|| format!("TTL {s:?} is too large"))?;
    if seconds == 0 {
        return Err(format!(
            "TTL {s:?} is zero; the token would be expired when issued"
        ));
    }
    Ok(seconds)
}
