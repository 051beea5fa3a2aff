//! What counts as a same-site redirect target.
//!
//! A redirect rule must never become an open redirect, so its target, both as written and as
//! rendered from the captures of a request path, has to be a path on the proxy's own site.
//! Browsers are lenient URL parsers (they strip tabs and newlines, read `\` as `/`, and treat
//! `//host` as another site), so this check is a strict allow-list rather than a URL parse.
//! It knows nothing about rules or templates.

use thiserror::Error;

/// Why a redirect target is not a same-site path.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Error)]
pub enum OffSite {
    /// Anything not starting with `/` is relative or carries a scheme (`https:`, `javascript:`).
    #[error("must start with '/'")]
    NotAbsolutePath,
    /// `//host` and `/\host` are read by browsers as another site.
    #[error("must not start with '//' or '/\\' (browsers read that as another site)")]
    ProtocolRelative,
    /// Browsers read `\` as `/`.
    #[error("must not contain a backslash")]
    Backslash,
    /// Control characters and spaces are stripped or rewritten by browsers and break headers.
    #[error("must contain only visible ASCII characters (percent-encode anything else)")]
    NotVisibleAscii,
}

/// Checks that `target` is a path on the same site, safe to send in a `Location` header.
pub fn check_same_site(target: &str) -> Result<(), OffSite> {
    let bytes = target.as_bytes();
    if bytes.first() != Some(&b'/') {
        return Err(OffSite::NotAbsolutePath);
    }
    if matches!(bytes.get(1), Some(b'/' | b'\\')) {
        return Err(OffSite::ProtocolRelative);
    }
    for &byte in bytes {
        if byte == b'\\' {
            return Err(OffSite::Backslash);
        }
        if !byte.is_ascii_graphic() {
            return Err(OffSite::NotVisibleAscii);
        }
    }
    Ok(())
}
