//! Rule patterns: checking what an admin wrote and compiling it into the anchored regex the
//! rule set matches with.
//!
//! A pattern may declare typed captures as `{name:type}` (see [`CaptureType`]): the capture
//! matches every spelling an app's router reads as that type, and the lock key holds one
//! canonical spelling, so `/docs/01/edit` and `/docs/1/edit` lock the same resource.
//!
//! A pattern is matched against the whole path, so it is compiled as `^(?:PATTERN)$`. The
//! pattern is parsed on its own first: wrapped, a pattern such as `a)|(b` would parse and
//! silently mean something else. Compiled regexes are capped in size so that one rule cannot
//! make every proxy instance allocate without bound. This module knows nothing about rules.

use regex::{Regex, RegexBuilder};
use regex_syntax::hir::literal::Extractor;
use regex_syntax::hir::Hir;
use thiserror::Error;

use crate::limits::PATTERN_SIZE_LIMIT;

/// Why a pattern was refused.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub(crate) enum PatternError {
    #[error("must not be empty")]
    Empty,
    #[error("regex parse error at {at}: {reason}")]
    Syntax { at: String, reason: String },
    #[error(
        "pattern too large: the compiled regex exceeds the limit of {PATTERN_SIZE_LIMIT} bytes \
         (Unicode classes such as \\w are large; [a-zA-Z0-9_] or [^/] are much smaller)"
    )]
    TooBig,
    #[error("can never match: request paths start with '/' (write '/docs/...', not 'docs/...')")]
    NoLeadingSlash,
    #[error(
        "cannot be anchored as ^(?:PATTERN)$; if it ends in an (?x) comment, end it with a newline"
    )]
    Unanchorable,
    #[error("unknown capture type '{0}' in '{{name:type}}' (known types: int, uuid, slug)")]
    UnknownCaptureType(String),
    #[error("{0}")]
    Other(String),
}

/// The type of a capture declared as `{name:type}`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CaptureType {
    /// A decimal integer with an optional sign (`+` raw or as `%2B`) and leading zeros, as
    /// Python's `int()`, Django's and Werkzeug's `int` converters and `parseInt` read it. Its
    /// canonical spelling has no `+` and no leading zero.
    Int,
    /// A UUID in hex, either case, with or without hyphens. Canonical: lowercase, hyphenated.
    Uuid,
    /// Letters, digits, `-` and `_`, as Django's `slug` converter reads them; kept as written.
    Slug,
}

impl CaptureType {
    fn parse(name: &str) -> Option<CaptureType> {
        match name {
            "int" => Some(CaptureType::Int),
            "uuid" => Some(CaptureType::Uuid),
            "slug" => Some(CaptureType::Slug),
            _ => None,
        }
    }

    /// What the capture matches.
    fn regex(self) -> &'static str {
        match self {
            CaptureType::Int => "(?:[+-]|%2B)?[0-9]+",
            CaptureType::Uuid => {
                "[0-9A-Fa-f]{8}-?[0-9A-Fa-f]{4}-?[0-9A-Fa-f]{4}-?[0-9A-Fa-f]{4}-?[0-9A-Fa-f]{12}"
            }
            CaptureType::Slug => "[-A-Za-z0-9_]+",
        }
    }

    /// Appends the canonical spelling of `text`, which this type's regex matched.
    pub(crate) fn push_canonical(self, out: &mut String, text: &str) {
        match self {
            CaptureType::Int => {
                let (negative, digits) = match text.as_bytes().first() {
                    Some(b'-') => (true, &text[1..]),
                    Some(b'+') => (false, &text[1..]),
                    _ => (false, text.strip_prefix("%2B").unwrap_or(text)),
                };
                let digits = digits.trim_start_matches('0');
                if digits.is_empty() {
                    out.push('0');
                } else {
                    if negative {
                        out.push('-');
                    }
                    out.push_str(digits);
                }
            }
            CaptureType::Uuid => {
                let hex = text.chars().filter(|c| *c != '-');
                for (i, c) in hex.enumerate() {
                    if matches!(i, 8 | 12 | 16 | 20) {
                        out.push('-');
                    }
                    out.push(c.to_ascii_lowercase());
                }
            }
            CaptureType::Slug => out.push_str(text),
        }
    }
}

/// A pattern compiled for matching.
#[derive(Clone, Debug)]
pub(crate) struct CompiledPattern {
    /// The anchored source, fed to the rule set's multi-pattern matcher as well.
    pub(crate) source: String,
    pub(crate) regex: Regex,
    /// The declared type of each capture group, by group number (group 0 is the whole
    /// match, never typed).
    pub(crate) types: Vec<Option<CaptureType>>,
}

/// Checks `pattern` and compiles its anchored form.
pub(crate) fn compile(
    pattern: &str,
    case_insensitive: bool,
) -> Result<CompiledPattern, PatternError> {
    if pattern.is_empty() {
        return Err(PatternError::Empty);
    }
    let (expanded, typed) = expand_typed_captures(pattern)?;
    let pattern = expanded.as_str();
    let hir = regex_syntax::ParserBuilder::new()
        .case_insensitive(case_insensitive)
        .build()
        .parse(pattern)
        .map_err(syntax_error)?;
    if never_starts_with_slash(&hir) {
        return Err(PatternError::NoLeadingSlash);
    }
    let source = anchored_source(pattern, case_insensitive);
    let regex = RegexBuilder::new(&source)
        .size_limit(PATTERN_SIZE_LIMIT)
        .build()
        .map_err(|err| match err {
            regex::Error::CompiledTooBig(_) => PatternError::TooBig,
            regex::Error::Syntax(_) => PatternError::Unanchorable,
            other => PatternError::Other(one_line(&other.to_string())),
        })?;
    let types = regex
        .capture_names()
        .map(|name| {
            name.and_then(|name| {
                typed
                    .iter()
                    .find(|(typed_name, _)| typed_name == name)
                    .map(|(_, kind)| *kind)
            })
        })
        .collect();
    Ok(CompiledPattern {
        source,
        regex,
        types,
    })
}

/// The pattern with every `{name:type}` replaced by `(?P<name>REGEX)`, and the declared types.
/// `{` inside a character class or after a `\` is left alone, as is any `{…}` that is not
/// `{identifier:identifier}` (a repetition such as `{2,3}` is never one).
pub(crate) fn expand_typed_captures(
    pattern: &str,
) -> Result<(String, Vec<(String, CaptureType)>), PatternError> {
    let mut out = String::with_capacity(pattern.len());
    let mut typed = Vec::new();
    let mut chars = pattern.char_indices().peekable();
    let mut class_depth = 0usize;
    while let Some((at, c)) = chars.next() {
        match c {
            '\\' => {
                out.push(c);
                if let Some((_, next)) = chars.next() {
                    out.push(next);
                }
            }
            '[' => {
                class_depth += 1;
                out.push(c);
                // `[]…]` and `[^]…]` hold a literal `]`.
                if chars.next_if(|&(_, next)| next == '^').is_some() {
                    out.push('^');
                }
                if chars.next_if(|&(_, next)| next == ']').is_some() {
                    out.push(']');
                }
            }
            ']' if class_depth > 0 => {
                class_depth -= 1;
                out.push(c);
            }
            '{' if class_depth == 0 => match typed_capture(&pattern[at..]) {
                Some((len, name, kind)) => {
                    let kind = CaptureType::parse(kind)
                        .ok_or_else(|| PatternError::UnknownCaptureType(kind.to_owned()))?;
                    out.push_str("(?P<");
                    out.push_str(name);
                    out.push('>');
                    out.push_str(kind.regex());
                    out.push(')');
                    typed.push((name.to_owned(), kind));
                    while chars.next_if(|&(next_at, _)| next_at < at + len).is_some() {}
                }
                None => out.push(c),
            },
            _ => out.push(c),
        }
    }
    Ok((out, typed))
}

/// Reads `{name:type}` at the start of `text`: its length, name and type name.
fn typed_capture(text: &str) -> Option<(usize, &str, &str)> {
    let inner_end = text.find('}')?;
    let (name, kind) = text[1..inner_end].split_once(':')?;
    let identifier = |s: &str| {
        s.chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
    };
    (identifier(name) && identifier(kind)).then_some((inner_end + 1, name, kind))
}

/// `^(?:PATTERN)$`, prefixed with `(?i)` for case-insensitive rules. Flags set inside the
/// pattern stay scoped to the non-capturing group, and group numbers are unchanged.
fn anchored_source(pattern: &str, case_insensitive: bool) -> String {
    let flags = if case_insensitive { "(?i)" } else { "" };
    format!("{flags}^(?:{pattern})$")
}

/// True when every string the pattern can match is known to start with something other than
/// `/`, the commonest mistake (`docs/\d+`). Undecidable cases count as "may start with `/`".
fn never_starts_with_slash(hir: &Hir) -> bool {
    let prefixes = Extractor::new().extract(hir);
    match prefixes.literals() {
        Some(literals) if !literals.is_empty() => literals
            .iter()
            .all(|literal| matches!(literal.as_bytes().first(), Some(&first) if first != b'/')),
        _ => false,
    }
}

fn syntax_error(err: regex_syntax::Error) -> PatternError {
    let (reason, span) = match &err {
        regex_syntax::Error::Parse(e) => (e.kind().to_string(), *e.span()),
        regex_syntax::Error::Translate(e) => (e.kind().to_string(), *e.span()),
        _ => {
            return PatternError::Syntax {
                at: "an unknown position".to_owned(),
                reason: one_line(&err.to_string()),
            }
        }
    };
    let start = span.start;
    let at = if start.line > 1 {
        format!("line {}, column {}", start.line, start.column)
    } else {
        format!("column {}", start.column)
    };
    PatternError::Syntax { at, reason }
}

/// regex renders errors over several lines with a caret; an issue message is one line.
fn one_line(text: &str) -> String {
    text.lines()
        .map(str::trim)
        .filter(|line| !line.is_empty())
        .collect::<Vec<_>>()
        .join("; ")
}
