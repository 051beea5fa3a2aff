//! Request path normalization: the one canonical spelling of a path that rules are matched
//! against and that is forwarded upstream.
//!
//! Matching and forwarding the same canonical path is what makes rules hard to bypass: an
//! upstream never sees a spelling (`/docs/%31/edit`, `/docs/./1/edit`) that the rules did not.
//! Spellings that upstreams disagree about and that cannot be canonicalized safely are
//! rejected instead (see [`PathError`]).
//!
//! This module owns only the path text. It knows nothing about queries, HTTP or rules.

use std::borrow::Cow;

use thiserror::Error;
use unicode_normalization::UnicodeNormalization;

/// Why a request path was rejected. The proxy answers 400 to every one of them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Error)]
pub enum PathError {
    /// The path is empty or does not start with `/`.
    #[error("path must start with '/'")]
    NotAbsolute,
    /// A `%` not followed by two hex digits.
    #[error("invalid percent-encoding: '%' must be followed by two hex digits")]
    InvalidPercentEncoding,
    /// A NUL byte, raw or as `%00`.
    #[error("NUL byte in path")]
    NulByte,
    /// `%2F`: upstreams disagree on whether it separates segments.
    #[error("encoded '/' (%2F) in path")]
    EncodedSlash,
    /// `%5C`: some upstreams decode it and then treat it as `/`.
    #[error("encoded '\\' (%5C) in path")]
    EncodedBackslash,
    /// A raw `\`: some upstreams treat it as `/`, which would let a path dodge the rules.
    #[error("backslash in path")]
    Backslash,
    /// A `.` or `..` segment carrying path parameters (`..;x`), which servers that strip
    /// parameters (Tomcat, for one) resolve as a dot segment after the rules have matched.
    #[error("dot segment with path parameters (such as '..;') in path")]
    DotSegmentParameters,
    /// A non-ASCII character, raw or percent-encoded, that an app may read as ASCII: a digit
    /// of another script (`١`, `１`, `𝟏`), which Python's `int()` and `\d` accept, or any
    /// character whose compatibility form contains ASCII (fullwidth `ｅｄｉｔ`, `／`, the Kelvin
    /// sign). The rules could never match what such an app routes on.
    #[error(
        "character that an app may read as ASCII (such as a fullwidth or non-Latin digit) in path"
    )]
    LookalikeCharacter,
    /// A segment made only of path parameters (`/;x/docs`) anywhere but at the end: servlet
    /// containers drop it, turning the path into another one.
    #[error("path segment made only of parameters (such as '/;x/') in path")]
    EmptySegmentParameters,
    /// A `;` in a path where the proxy is configured to refuse path parameters.
    #[error("path parameters (';') are not accepted")]
    Parameters,
}

/// Normalizes the path part of a request target (no query) to its canonical form.
///
/// - percent-encoded unreserved characters (`A-Z a-z 0-9 - . _ ~`) are decoded, every other
///   escape is kept with uppercase hex digits;
/// - empty segments are dropped (`//` becomes `/`), then `.` and `..` segments are resolved,
///   `..` never climbing above the root (so `/a//../b` is `/b`);
/// - a trailing slash is kept, and a path ending in a dot segment ends in `/` (`/a/b/..` is
///   `/a/`), as in RFC 3986.
///
/// The result is idempotent. An already-canonical path, the common case, is returned
/// borrowed without allocating.
pub fn normalize_path(path: &str) -> Result<Cow<'_, str>, PathError> {
    let Some(rest) = path.strip_prefix('/') else {
        return Err(PathError::NotAbsolute);
    };
    if is_plain(rest) {
        return Ok(Cow::Borrowed(path));
    }
    check_lookalikes(rest)?;
    if is_canonical(rest)? {
        Ok(Cow::Borrowed(path))
    } else {
        rewrite(rest).map(Cow::Owned)
    }
}

/// What a request path's `;` parameters (`/docs/1;jsessionid=A/edit`) mean to the rules.
///
/// Servlet containers (Tomcat, Jetty, Spring) route a path with the parameters of every segment
/// removed, so a rule for `/docs/1/edit` must match `/docs;x/1/edit` too.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PathParameters {
    /// Rules match the path with every segment's parameters removed; the app receives the
    /// path with them, so it still gets its `jsessionid`. The default: for an app that treats
    /// `;` as an ordinary character it only makes a rule match more paths, never fewer.
    Strip,
    /// Any `;` in a request path is refused.
    Reject,
}

/// The path the rules are matched against for a normalized request path, under `parameters`:
/// without its `;` parameters ([`strip_path_parameters`]), or refused if it has any.
pub fn rule_path(normalized: &str, parameters: PathParameters) -> Result<Cow<'_, str>, PathError> {
    match parameters {
        PathParameters::Strip => strip_path_parameters(normalized),
        PathParameters::Reject if normalized.contains(';') => Err(PathError::Parameters),
        PathParameters::Reject => Ok(Cow::Borrowed(normalized)),
    }
}

/// The path as servlet containers (Tomcat, Jetty, Spring) route it: the `;` parameters of
/// every segment removed, so `/docs;x/1;jsessionid=A/edit` is `/docs/1/edit`. `path` must be
/// normalized (see [`normalize_path`]); the result is normalized too.
///
/// Apps that treat `;` as an ordinary character route the path with its parameters, which
/// matches no more than the stripped path does for rules that do not mention `;`. A segment
/// made only of parameters is refused unless it is the last (`/app/;jsessionid=A` is `/app/`):
/// a container drops it, so the path the app routes would have one segment fewer.
pub fn strip_path_parameters(path: &str) -> Result<Cow<'_, str>, PathError> {
    if !path.contains(';') {
        return Ok(Cow::Borrowed(path));
    }
    let mut out = String::with_capacity(path.len());
    let mut segments = path.split('/').skip(1).peekable();
    while let Some(segment) = segments.next() {
        let base = segment.split_once(';').map_or(segment, |(base, _)| base);
        if base.is_empty() && !segment.is_empty() && segments.peek().is_some() {
            return Err(PathError::EmptySegmentParameters);
        }
        out.push('/');
        out.push_str(base);
    }
    Ok(Cow::Owned(out))
}

/// Refuses a path holding a character that an app may read as ASCII (see
/// [`PathError::LookalikeCharacter`]). Only paths with non-ASCII bytes, raw or escaped, are
/// decoded to look.
fn check_lookalikes(rest: &str) -> Result<(), PathError> {
    let bytes = rest.as_bytes();
    let escaped_high = bytes
        .windows(2)
        .any(|pair| pair[0] == b'%' && matches!(pair[1], b'8'..=b'9' | b'A'..=b'F' | b'a'..=b'f'));
    if !escaped_high && bytes.is_ascii() {
        return Ok(());
    }
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let escape = (bytes[i] == b'%')
            .then(|| {
                Some((
                    hex_value(*bytes.get(i + 1)?)?,
                    hex_value(*bytes.get(i + 2)?)?,
                ))
            })
            .flatten();
        match escape {
            Some((hi, lo)) => {
                decoded.push((hi << 4) | lo);
                i += 3;
            }
            None => {
                decoded.push(bytes[i]);
                i += 1;
            }
        }
    }
    let lookalike = String::from_utf8_lossy(&decoded)
        .chars()
        .filter(|c| !c.is_ascii())
        .any(|c| c.is_numeric() || std::iter::once(c).nfkc().any(|folded| folded.is_ascii()));
    if lookalike {
        Err(PathError::LookalikeCharacter)
    } else {
        Ok(())
    }
}

/// A quick, conservative test for the common canonical path: ASCII, no escape, backslash or
/// NUL, no empty segment but a last one, and no segment starting with `.` (which rules out dot
/// segments and their parameters). `false` only means [`is_canonical`] must decide.
fn is_plain(rest: &str) -> bool {
    let mut segment_start = 0;
    for (i, &byte) in rest.as_bytes().iter().enumerate() {
        match byte {
            b'%' | b'\\' | 0 | 0x80.. => return false,
            b'/' | b'.' if i == segment_start => return false,
            b'/' => segment_start = i + 1,
            _ => {}
        }
    }
    true
}

/// Whether the path after its leading `/` needs no rewriting. Reports every error it meets
/// before the first spot that needs rewriting; [`rewrite`] checks the rest, in the same order.
fn is_canonical(rest: &str) -> Result<bool, PathError> {
    let mut segments = rest.split('/').peekable();
    while let Some(raw) = segments.next() {
        let segment = decode_segment(raw)?;
        let is_last = segments.peek().is_none();
        match classify(&segment)? {
            Segment::Normal if matches!(segment, Cow::Borrowed(_)) => {}
            Segment::Empty if is_last => {}
            _ => return Ok(false),
        }
    }
    Ok(true)
}

/// Builds the canonical form of the path after its leading `/`.
fn rewrite(rest: &str) -> Result<String, PathError> {
    // Invariant: `out` is empty or `/seg/seg...` without a trailing slash, and no segment in
    // it contains `/`, so popping a segment is truncating at the last `/`.
    let mut out = String::with_capacity(rest.len() + 1);
    let mut ends_with_slash = false;
    for raw in rest.split('/') {
        let segment = decode_segment(raw)?;
        match classify(&segment)? {
            Segment::Empty | Segment::Dot => ends_with_slash = true,
            Segment::DotDot => {
                if let Some(cut) = out.rfind('/') {
                    out.truncate(cut);
                }
                ends_with_slash = true;
            }
            Segment::Normal => {
                out.push('/');
                out.push_str(&segment);
                ends_with_slash = false;
            }
        }
    }
    if out.is_empty() || ends_with_slash {
        out.push('/');
    }
    Ok(out)
}

enum Segment {
    Empty,
    Dot,
    DotDot,
    Normal,
}

/// Classifies a decoded segment, rejecting dot segments that carry path parameters.
fn classify(segment: &str) -> Result<Segment, PathError> {
    match segment {
        "" => return Ok(Segment::Empty),
        "." => return Ok(Segment::Dot),
        ".." => return Ok(Segment::DotDot),
        _ => {}
    }
    if let Some((base, _params)) = segment.split_once(';') {
        if base == "." || base == ".." {
            return Err(PathError::DotSegmentParameters);
        }
    }
    Ok(Segment::Normal)
}

/// Decodes escaped unreserved characters and uppercases the hex of every other escape in one
/// segment (text between two `/`). Borrows when nothing changes.
fn decode_segment(raw: &str) -> Result<Cow<'_, str>, PathError> {
    let bytes = raw.as_bytes();
    let mut out: Option<String> = None;
    // `raw[..copied]` is already reflected in `out` when `out` is `Some`.
    let mut copied = 0;
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' => return Err(PathError::Backslash),
            0 => return Err(PathError::NulByte),
            b'%' => {
                let (hi, lo) = match (bytes.get(i + 1), bytes.get(i + 2)) {
                    (Some(&hi), Some(&lo)) => (hi, lo),
                    _ => return Err(PathError::InvalidPercentEncoding),
                };
                let (Some(hi_val), Some(lo_val)) = (hex_value(hi), hex_value(lo)) else {
                    return Err(PathError::InvalidPercentEncoding);
                };
                let byte = (hi_val << 4) | lo_val;
                match byte {
                    0 => return Err(PathError::NulByte),
                    b'/' => return Err(PathError::EncodedSlash),
                    b'\\' => return Err(PathError::EncodedBackslash),
                    _ => {}
                }
                let unreserved = is_unreserved(byte);
                if unreserved || hi.is_ascii_lowercase() || lo.is_ascii_lowercase() {
                    let buf = out.get_or_insert_with(|| String::with_capacity(raw.len()));
                    buf.push_str(&raw[copied..i]);
                    if unreserved {
                        buf.push(char::from(byte));
                    } else {
                        buf.push('%');
                        buf.push(char::from(hi.to_ascii_uppercase()));
                        buf.push(char::from(lo.to_ascii_uppercase()));
                    }
                    copied = i + 3;
                }
                i += 3;
            }
            _ => i += 1,
        }
    }
    Ok(match out {
        None => Cow::Borrowed(raw),
        Some(mut buf) => {
            buf.push_str(&raw[copied..]);
            Cow::Owned(buf)
        }
    })
}

fn hex_value(digit: u8) -> Option<u8> {
    match digit {
        b'0'..=b'9' => Some(digit - b'0'),
        b'a'..=b'f' => Some(digit - b'a' + 10),
        b'A'..=b'F' => Some(digit - b'A' + 10),
        _ => None,
    }
}

/// RFC 3986 unreserved characters: ALPHA DIGIT `-` `.` `_` `~`.
fn is_unreserved(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~')
}

#[cfg(test)]
mod tests {
    use super::{is_canonical, is_plain};

    /// Every string of up to six characters over an alphabet of the characters that matter:
    /// whatever the quick test accepts, the full test accepts too.
    #[test]
    fn the_quick_test_accepts_only_canonical_paths() {
        const ALPHABET: &[char] = &['a', '.', '/', '%', '2', 'F', ';', '\\'];
        fn walk(rest: &mut String, left: usize, accepted: &mut usize) {
            if is_plain(rest) {
                *accepted += 1;
                assert_eq!(is_canonical(rest), Ok(true), "{rest:?}");
            }
            if left == 0 {
                return;
            }
            for &c in ALPHABET {
                rest.push(c);
                walk(rest, left - 1, accepted);
                rest.pop();
            }
        }
        let mut accepted = 0;
        walk(&mut String::new(), 6, &mut accepted);
        // The quick test is meant for the common case, so it must accept plenty.
        assert!(accepted > 1000, "only {accepted} accepted");
    }
}
