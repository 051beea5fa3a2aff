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
    if let Some(token) = authorization.and_then(bearer_token) {
        return Some(token);
    }
    let [value] = cookie_values(cookie_headers, [cookie_name]);
    value
}

/// The values of the cookies `names` among any of the `Cookie` headers, in one pass: for each
/// name, its first non-empty UTF-8 value. An empty name finds nothing.
pub fn cookie_values<'a, const N: usize>(
    cookie_headers: impl Iterator<Item = &'a [u8]>,
    names: [&str; N],
) -> [Option<&'a str>; N] {
    let mut found = [None; N];
    let mut missing = names.iter().filter(|name| !name.is_empty()).count();
    if missing == 0 {
        return found;
    }
    for pair in cookie_headers.flat_map(|header| header.split(|b| *b == b';')) {
        let Some((name, value)) = cookie_pair(pair) else {
            continue;
        };
        for (slot, wanted) in found.iter_mut().zip(names) {
            if slot.is_none() && !wanted.is_empty() && name == wanted.as_bytes() {
                *slot = cookie_text(value);
                if slot.is_some() {
                    missing -= 1;
                }
            }
        }
        if missing == 0 {
            break;
        }
    }
    found
}

/// The token of an `Authorization: Bearer` value (scheme in any case).
pub fn bearer_token(value: &[u8]) -> Option<&str> {
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

/// A cookie's name (trimmed) and raw value.
fn cookie_pair(pair: &[u8]) -> Option<(&[u8], &[u8])> {
    let pair = pair.trim_ascii();
    let split = pair.iter().position(|b| *b == b'=')?;
    Some((pair[..split].trim_ascii(), &pair[split + 1..]))
}

/// A cookie's value as text: trimmed, unquoted, UTF-8 and not empty.
fn cookie_text(value: &[u8]) -> Option<&str> {
    let value = value.trim_ascii();
    // RFC 6265 allows the value to be wrapped in double quotes.
    let value = value
        .strip_prefix(b"\"")
        .and_then(|inner| inner.strip_suffix(b"\""))
        .unwrap_or(value);
    let value = std::str::from_utf8(value).ok()?;
    (!value.is_empty()).then_some(value)
}
