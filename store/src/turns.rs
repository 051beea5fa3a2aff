//! The renewal turns of sign-in sessions (see [`auth::RenewalTurns`]), as every store keeps
//! them: one entry per renewal, under way or finished, that lapses on its own. Under way, the
//! entry lasts as long as the provider may take to answer, so an instance that died holding a
//! turn holds it no longer; finished, it lasts as long as the requests still carrying the old
//! cookie may come.

use auth::{Turn, TurnError};

use crate::error::StoreError;

/// Longest turn key: a session id (22 characters), a colon, and a unix time in seconds.
pub const MAX_TURN_KEY: usize = 64;
/// Longest cookie value a finished turn keeps: a sealed session cookie's most.
pub const MAX_TURN_COOKIE: usize = auth::MAX_SEALED_CHARS;
/// Most turns the memory store keeps at once; past it, a new one is refused (the caller then
/// asks the provider alone, as a single instance does).
pub const MAX_TURNS: usize = 10_000;

/// A turn as it is kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Kept {
    UnderWay,
    Renewed(String),
    Refused,
}

impl Kept {
    /// What a caller other than the turn's holder is told.
    pub(crate) fn seen(&self) -> Turn {
        match self {
            Kept::UnderWay => Turn::Pending,
            Kept::Renewed(cookie) => Turn::Renewed(cookie.clone()),
            Kept::Refused => Turn::Refused,
        }
    }

    /// How the Redis store writes it.
    pub(crate) fn encode(&self) -> String {
        match self {
            Kept::UnderWay => "u".to_owned(),
            Kept::Renewed(cookie) => format!("r{cookie}"),
            Kept::Refused => "x".to_owned(),
        }
    }

    /// A turn the Redis store wrote; `None` for anything else.
    pub(crate) fn decode(raw: &str) -> Option<Kept> {
        match raw.split_at_checked(1)? {
            ("u", "") => Some(Kept::UnderWay),
            ("x", "") => Some(Kept::Refused),
            ("r", cookie) if !cookie.is_empty() => Some(Kept::Renewed(cookie.to_owned())),
            _ => None,
        }
    }
}

/// A usable turn key, or why it is refused.
pub(crate) fn checked(key: &str) -> Result<(), TurnError> {
    refuse(unusable(key, None))
}

/// What a turn for `key` finished with `cookie` (`None`: refused) is kept as, or why the
/// key or the cookie is refused.
pub(crate) fn finished(key: &str, cookie: Option<&str>) -> Result<Kept, TurnError> {
    refuse(unusable(key, cookie))?;
    Ok(cookie.map_or(Kept::Refused, |c| Kept::Renewed(c.to_owned())))
}

fn refuse(why: Option<String>) -> Result<(), TurnError> {
    match why {
        Some(why) => Err(Box::new(StoreError::Unavailable(why))),
        None => Ok(()),
    }
}

/// Why a turn key or a finished turn's cookie is refused; `None` when both are usable.
fn unusable(key: &str, cookie: Option<&str>) -> Option<String> {
    if key.is_empty() || key.len() > MAX_TURN_KEY || !key.bytes().all(|b| b.is_ascii_graphic()) {
        return Some(format!(
            "a renewal turn key is 1 to {MAX_TURN_KEY} printable characters"
        ));
    }
    match cookie {
        Some(c) if c.is_empty() || c.len() > MAX_TURN_COOKIE => Some(format!(
            "a renewed session cookie is 1 to {MAX_TURN_COOKIE} characters"
        )),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kept_turn_reads_back_as_written() {
        for kept in [
            Kept::UnderWay,
            Kept::Refused,
            Kept::Renewed("v1.abc".to_owned()),
        ] {
            assert_eq!(Kept::decode(&kept.encode()), Some(kept));
        }
        for junk in ["", "r", "ux", "xx", "q1"] {
            assert_eq!(Kept::decode(junk), None, "{junk:?}");
        }
    }

    #[test]
    fn keys_and_cookies_out_of_bounds_are_refused() {
        assert_eq!(unusable("abc:123", Some("v1.x")), None);
        assert!(unusable("", None).is_some());
        assert!(unusable(&"k".repeat(MAX_TURN_KEY + 1), None).is_some());
        assert!(unusable("a b", None).is_some());
        assert!(unusable("abc:1", Some("")).is_some());
        assert!(unusable("abc:1", Some(&"c".repeat(MAX_TURN_COOKIE + 1))).is_some());
    }
}
