//! Request targets (RFC 9112 §3.2): which of the forms a request line may carry this one is,
//! and the origin-form path and query the rules are matched against.
//!
//! Only a target whose path is understood may be matched and forwarded. A target that is none
//! of the forms below (`docs/1/edit`, `x:/docs/1/edit`, `%2Fdocs/1/edit`, `?x`, an
//! authority-form `host:443`) is refused: an app's router may still find a path in it that the
//! rules never saw. This module owns only the target's text; it knows nothing of hosts,
//! headers or rules.

use thiserror::Error;

/// A request target this proxy understands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target<'a> {
    /// `/path?query`: forwarded as it is (after normalization).
    Origin(&'a str),
    /// `*`: valid only for `OPTIONS`, which asks about the server as a whole.
    Asterisk,
    /// `http://authority/path?query`: the authority must name this site, and the request goes
    /// on in origin-form. `path_and_query` is never empty and always starts with `/`; a
    /// target without a path (`http://host?q`) gets `/`.
    Absolute {
        authority: &'a str,
        path_and_query: AbsolutePath<'a>,
    },
}

impl<'a> Target<'a> {
    /// The path the proxy normalizes and matches: the origin-form path without its query;
    /// `None` for `*`, which names no path. Matching a path that still carried `?x=1` would
    /// answer for a URL nobody requests.
    pub fn path(&self) -> Option<&'a str> {
        let path_and_query = match *self {
            Target::Asterisk => return None,
            Target::Origin(target) => target,
            Target::Absolute {
                path_and_query: AbsolutePath::AsWritten(path),
                ..
            } => path,
            Target::Absolute {
                path_and_query: AbsolutePath::Root(_),
                ..
            } => "/",
        };
        Some(
            path_and_query
                .split_once('?')
                .map_or(path_and_query, |(path, _)| path),
        )
    }
}

/// The origin-form of an absolute-form target: the path as written, or `/` before a query
/// when it had none.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AbsolutePath<'a> {
    /// The target's own path and query, starting with `/`.
    AsWritten(&'a str),
    /// The target had no path: `/` followed by this query (with its `?`, or empty).
    Root(&'a str),
}

impl AbsolutePath<'_> {
    /// The origin-form target to forward.
    pub fn to_origin_form(self) -> String {
        match self {
            AbsolutePath::AsWritten(path) => path.to_owned(),
            AbsolutePath::Root(query) => format!("/{query}"),
        }
    }
}

/// Why a request target was refused. The proxy answers 400 to every one of them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Error)]
pub enum TargetError {
    #[error("empty request target")]
    Empty,
    #[error("request target is not valid UTF-8")]
    NotUtf8,
    #[error("request target must be a path starting with '/' or an http(s) URL")]
    NotAPath,
    #[error("'*' is a request target only for OPTIONS")]
    AsteriskNotOptions,
    #[error("URL request targets must use http or https")]
    UnsupportedScheme,
    #[error("URL request target has no host")]
    NoAuthority,
    #[error("URL request target carries user information")]
    UserInfo,
    #[error("URL request target has an invalid host")]
    InvalidAuthority,
}

/// Classifies a request target as received on the wire.
///
/// `is_options` says whether the method is `OPTIONS`, the only one that may ask for `*`.
pub fn parse_target(raw: &[u8], is_options: bool) -> Result<Target<'_>, TargetError> {
    // A fragment is not part of the target (RFC 9112 §3.2); pingora drops it before this.
    let raw = match raw.iter().position(|&byte| byte == b'#') {
        Some(fragment) => &raw[..fragment],
        None => raw,
    };
    let target = std::str::from_utf8(raw).map_err(|_| TargetError::NotUtf8)?;
    match target.as_bytes().first() {
        None => Err(TargetError::Empty),
        Some(b'/') => Ok(Target::Origin(target)),
        Some(b'*') if target.len() == 1 => {
            if is_options {
                Ok(Target::Asterisk)
            } else {
                Err(TargetError::AsteriskNotOptions)
            }
        }
        _ => absolute(target),
    }
}

/// `scheme "://" authority path-abempty [ "?" query ]`, with scheme `http` or `https` in any
/// case. Anything else that is not origin-form is refused, including authority-form.
fn absolute(target: &str) -> Result<Target<'_>, TargetError> {
    let Some((scheme, rest)) = target.split_once("://") else {
        return Err(TargetError::NotAPath);
    };
    if !scheme.eq_ignore_ascii_case("http") && !scheme.eq_ignore_ascii_case("https") {
        // `x:/docs`, `a:docs`, `urn:…`, and anything with a scheme we do not proxy.
        return Err(
            if scheme.bytes().all(is_scheme_byte) && !scheme.is_empty() {
                TargetError::UnsupportedScheme
            } else {
                TargetError::NotAPath
            },
        );
    }
    let end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    if authority.is_empty() {
        return Err(TargetError::NoAuthority);
    }
    if authority.contains('@') {
        return Err(TargetError::UserInfo);
    }
    if !authority.bytes().all(is_authority_byte) {
        return Err(TargetError::InvalidAuthority);
    }
    let path_and_query = if tail.starts_with('/') {
        AbsolutePath::AsWritten(tail)
    } else {
        AbsolutePath::Root(tail)
    };
    Ok(Target::Absolute {
        authority,
        path_and_query,
    })
}

fn is_scheme_byte(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || matches!(byte, b'+' | b'-' | b'.')
}

/// Host (registered name, IPv4, or an IPv6 literal in brackets) and an optional port. Percent
/// escapes are refused: a host is compared with `Host` byte for byte.
fn is_authority_byte(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~' | b':' | b'[' | b']')
}
