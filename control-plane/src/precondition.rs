//! `If-Match` (RFC 9110 §13.1.1): which versions of a rule a change is conditional on.
//!
//! The field is `*` or a list of entity tags, possibly spread over several field lines. It is
//! compared strongly: a weak tag (`W/"…"`) never matches, since a rule's ETag names its exact
//! content. `""` is a tag like any other, which matches no rule. A field that is neither `*`
//! nor a list of tags is refused (400) rather than guessed at.
//!
//! Parsed here rather than with the `headers` crate: its `IfMatch` splits a list at every
//! comma, inside a quoted tag too, and silently drops members it cannot read, so a malformed
//! field would be reported as a stale version instead of a bad request.

use axum::http::header::{GetAll, IF_MATCH};
use axum::http::{HeaderMap, HeaderValue};

/// A present `If-Match` field.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum IfMatch {
    /// `*`: any current version.
    Any,
    /// At least one tag, in the order sent.
    Tags(Vec<EntityTag>),
}

/// One entity tag: its opaque bytes, between the quotes, and whether it was marked weak.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EntityTag {
    pub weak: bool,
    pub opaque: Vec<u8>,
}

/// Why an `If-Match` field cannot be read.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Malformed {
    #[error("If-Match must be \"*\" or a list of quoted entity tags, such as \"r1\", \"r2\"")]
    NotATagList,
    #[error("If-Match may be \"*\" alone, not \"*\" in a list")]
    AnyInAList,
}

impl IfMatch {
    /// The request's `If-Match`, `None` when it sent none.
    pub fn from_headers(headers: &HeaderMap) -> Result<Option<IfMatch>, Malformed> {
        let lines = headers.get_all(IF_MATCH);
        if lines.iter().next().is_none() {
            return Ok(None);
        }
        parse(lines).map(Some)
    }

    /// Whether a change of the version tagged `current` may go ahead: `*` passes, and a list
    /// passes when one of its strong tags is `current`, byte for byte.
    pub fn matches(&self, current: &str) -> bool {
        match self {
            IfMatch::Any => true,
            IfMatch::Tags(tags) => tags
                .iter()
                .any(|tag| !tag.weak && tag.opaque == current.as_bytes()),
        }
    }
}

/// `If-Match = "*" / #entity-tag` over every field line (RFC 9110 §5.3 joins them with commas).
fn parse(lines: GetAll<'_, HeaderValue>) -> Result<IfMatch, Malformed> {
    let mut tags = Vec::new();
    let mut any = false;
    for line in lines {
        let mut rest = line.as_bytes();
        loop {
            rest = skip_separators(rest);
            if rest.is_empty() {
                break;
            }
            if let Some(after) = rest.strip_prefix(b"*") {
                any = true;
                rest = after;
            } else {
                let (tag, after) = entity_tag(rest).ok_or(Malformed::NotATagList)?;
                tags.push(tag);
                rest = after;
            }
            // Each member ends at a comma or at the end of the line.
            rest = trim_start_ows(rest);
            match rest.first() {
                None | Some(b',') => {}
                Some(_) => return Err(Malformed::NotATagList),
            }
        }
    }
    match (any, tags.is_empty()) {
        (true, true) => Ok(IfMatch::Any),
        (true, false) => Err(Malformed::AnyInAList),
        // Only commas and spaces: a field without a member says nothing it could match.
        (false, true) => Err(Malformed::NotATagList),
        (false, false) => Ok(IfMatch::Tags(tags)),
    }
}

/// `entity-tag = [ "W/" ] DQUOTE *etagc DQUOTE`, at the start of `input`.
fn entity_tag(input: &[u8]) -> Option<(EntityTag, &[u8])> {
    let (weak, input) = match input.strip_prefix(b"W/") {
        Some(rest) => (true, rest),
        None => (false, input),
    };
    let input = input.strip_prefix(b"\"")?;
    let end = input.iter().position(|&b| b == b'"')?;
    let opaque = &input[..end];
    if !opaque.iter().all(|&b| is_etagc(b)) {
        return None;
    }
    let tag = EntityTag {
        weak,
        opaque: opaque.to_vec(),
    };
    Some((tag, &input[end + 1..]))
}

/// `etagc = %x21 / %x23-7E / obs-text`.
fn is_etagc(byte: u8) -> bool {
    byte == 0x21 || (0x23..=0x7e).contains(&byte) || byte >= 0x80
}

/// Empty list members are allowed (RFC 9110 §5.6.1): `, , "a"` is the list `"a"`.
fn skip_separators(mut input: &[u8]) -> &[u8] {
    while let Some((&first, rest)) = input.split_first() {
        if first == b',' || first == b' ' || first == b'\t' {
            input = rest;
        } else {
            break;
        }
    }
    input
}

fn trim_start_ows(mut input: &[u8]) -> &[u8] {
    while let Some((&first, rest)) = input.split_first() {
        if first == b' ' || first == b'\t' {
            input = rest;
        } else {
            break;
        }
    }
    input
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What a change of the rule tagged `r1` gets with `If-Match` lines `lines`: `Ok(true)` goes
    /// ahead, `Ok(false)` is 412, `Err` is 400, and `None` (no lines) is 428.
    fn check(lines: &[&[u8]], expected: Option<Result<bool, Malformed>>) {
        let mut headers = HeaderMap::new();
        for line in lines {
            headers.append(IF_MATCH, HeaderValue::from_bytes(line).unwrap());
        }
        let got = match IfMatch::from_headers(&headers) {
            Ok(None) => None,
            Ok(Some(condition)) => Some(Ok(condition.matches("r1"))),
            Err(e) => Some(Err(e)),
        };
        let shown: Vec<String> = lines
            .iter()
            .map(|l| String::from_utf8_lossy(l).into_owned())
            .collect();
        assert_eq!(got, expected, "If-Match: {shown:?}");
    }

    const PASS: Option<Result<bool, Malformed>> = Some(Ok(true));
    const FAIL: Option<Result<bool, Malformed>> = Some(Ok(false));
    const BAD: Option<Result<bool, Malformed>> = Some(Err(Malformed::NotATagList));

    #[test]
    fn if_match_per_rfc_9110() {
        check(&[], None);
        // One strong tag.
        check(&[b"\"r1\""], PASS);
        check(&[b"\"r2\""], FAIL);
        check(&[b"  \"r1\"  "], PASS);
        // Strong comparison: a weak tag never matches, even with the same opaque part.
        check(&[b"W/\"r1\""], FAIL);
        check(&[b"W/\"r1\", \"r1\""], PASS);
        // A list passes when any member matches, wherever it is.
        check(&[b"\"a\", \"r1\""], PASS);
        check(&[b"\"r1\",\"a\""], PASS);
        check(&[b"\"a\", \"b\""], FAIL);
        check(&[b"\"a\" ,\t\"r1\""], PASS);
        // Several field lines are one list.
        check(&[b"\"a\"", b"\"r1\""], PASS);
        check(&[b"\"a\"", b"\"b\""], FAIL);
        // Empty list members are ignored.
        check(&[b", \"r1\" ,"], PASS);
        // `""` is a tag that matches nothing: 412, not "missing".
        check(&[b"\"\""], FAIL);
        check(&[b"\"\", \"r1\""], PASS);
        // A comma inside a tag is part of the tag.
        check(&[b"\"r1,x\""], FAIL);
        check(&[b"\"x,r1\""], FAIL);
        // `*` is any current version.
        check(&[b"*"], PASS);
        check(&[b" * "], PASS);
        check(&[b"*, \"a\""], Some(Err(Malformed::AnyInAList)));
        check(&[b"\"a\"", b"*"], Some(Err(Malformed::AnyInAList)));
        // Anything else is refused, never taken as a tag.
        check(&[b"r1"], BAD);
        check(&[b"\"r1"], BAD);
        check(&[b"r1\""], BAD);
        check(&[b"w/\"r1\""], BAD);
        check(&[b"W/r1"], BAD);
        check(&[b"\"r1\"x"], BAD);
        check(&[b"\"r1\" \"r2\""], BAD);
        check(&[b"**"], BAD);
        check(&[b""], BAD);
        check(&[b" , "], BAD);
        check(&[b"\"a b\""], BAD);
    }

    #[test]
    fn tags_may_carry_obs_text_and_are_compared_byte_for_byte() {
        check(&[b"\"r\xc3\xa9\""], FAIL);
        let mut headers = HeaderMap::new();
        headers.insert(IF_MATCH, HeaderValue::from_bytes(b"\"r\xc3\xa9\"").unwrap());
        let condition = IfMatch::from_headers(&headers).unwrap().unwrap();
        assert!(condition.matches("r\u{e9}"));
    }
}
