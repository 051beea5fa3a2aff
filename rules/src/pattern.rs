//! Rule patterns: checking what an admin wrote and compiling it into the anchored regex the
//! rule set matches with.
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
    #[error("{0}")]
    Other(String),
}

/// A pattern compiled for matching.
#[derive(Clone, Debug)]
pub(crate) struct CompiledPattern {
    /// The anchored source, fed to the rule set's multi-pattern matcher as well.
    pub(crate) source: String,
    pub(crate) regex: Regex,
}

/// Checks `pattern` and compiles its anchored form.
pub(crate) fn compile(
    pattern: &str,
    case_insensitive: bool,
) -> Result<CompiledPattern, PatternError> {
    if pattern.is_empty() {
        return Err(PatternError::Empty);
    }
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
    Ok(CompiledPattern { source, regex })
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
