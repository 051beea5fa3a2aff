//! Finding the token a request carries: `Authorization: Bearer` first, then the named cookie.
//!
//! Works on raw header bytes and borrows from them, so the proxy's hot path allocates nothing
//! here. It knows no HTTP library; the caller passes the header values it has.

/// The token in `authorization` (scheme `Bearer`, any case) or else in the cookie
/// `cookie_name` from any of the `Cookie` headers (HTTP/2 clients may send several).
/// Empty and non-UTF-8 values count as absent.
pub fn token_from_headers<'a>(
    cookie_headers: impl Iterator<Item = &'a [u8]>,
    authorization: Option<&'a [u8]>,
    cookie_name: &str,
) -> Option<&'a str> {
    if let Some(token) = authorization.and_then(bearer) {
        return Some(token);
    }
    if cookie_name.is_empty() {
        return None;
    }
    cookie_headers
        .flat_map(|header| header.split(|b| *b == b';'))
        .find_map(|pair| cookie_value(pair, cookie_name.as_bytes()))
}

fn bearer(value: &[u8]) -> Option<&str> {
    let value = value.trim_ascii();
    let space = value.iter().position(|b| matches!(b, b' ' | b'\t'))?;
    let (scheme, token) = value.split_at(space);
    if !scheme.eq_ignore_ascii_case(b"bearer") {
        return None;
    }
    let token = token.trim_ascii();
    if token.is_empty() {
        return None;
    }
    std::str::from_utf8(token).ok()
}

fn cookie_value<'a>(pair: &'a [u8], wanted: &[u8]) -> Option<&'a str> {
    let pair = pair.trim_ascii();
    let split = pair.iter().position(|b| *b == b'=')?;
    let (name, value) = (&pair[..split], &pair[split + 1..]);
    if name.trim_ascii() != wanted {
        return None;
    }
    let value = value.trim_ascii();
    // RFC 6265 allows the value to be wrapped in double quotes.
    let value = value
        .strip_prefix(b"\"")
        .and_then(|inner| inner.strip_suffix(b"\""))
        .unwrap_or(value);
    let value = std::str::from_utf8(value).ok()?;
    (!value.is_empty()).then_some(value)
}
