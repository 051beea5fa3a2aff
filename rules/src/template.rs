//! Templates for lock keys (`resource`) and redirect targets (`redirect_to`): literal text with
//! `{name}` placeholders naming captures of the rule's pattern; `{{` and `}}` are literal braces.
//!
//! Templates are parsed and bound to capture group numbers once, when rules are compiled, so
//! rendering on the request path is a walk over prepared parts. This module knows nothing
//! about what the rendered text is used for.

use regex::{Captures, Regex};
use thiserror::Error;

use crate::pattern::CaptureType;

/// A problem in a template's text or with the capture names it uses.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub(crate) enum TemplateError {
    #[error("unclosed '{{' at character {0} (write '{{{{' for a literal brace)")]
    Unclosed(usize),
    #[error("unmatched '}}' at character {0} (write '}}}}' for a literal brace)")]
    Unmatched(usize),
    #[error("empty placeholder '{{}}' at character {0}")]
    EmptyName(usize),
    #[error("unknown capture '{name}' ({known})")]
    UnknownCapture { name: String, known: String },
}

/// A template whose syntax is valid but whose names are not yet checked against a pattern.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ParsedTemplate {
    parts: Vec<RawPart>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum RawPart {
    Literal(String),
    Name(String),
}

/// A template bound to the capture groups of one compiled pattern.
#[derive(Clone, Debug)]
pub(crate) struct Template {
    parts: Vec<Part>,
}

#[derive(Clone, Debug)]
enum Part {
    Literal(String),
    Group(usize),
}

impl ParsedTemplate {
    /// Parses `src`, reporting every syntax error rather than stopping at the first.
    pub(crate) fn parse(src: &str) -> Result<Self, Vec<TemplateError>> {
        let mut parts = Vec::new();
        let mut errors = Vec::new();
        let mut literal = String::new();
        // Byte offset of the `{` that opened the placeholder being read, if any.
        let mut open: Option<usize> = None;
        let mut name = String::new();
        let mut chars = src.char_indices().peekable();
        let position = |at: usize| src[..at].chars().count() + 1;

        while let Some((at, c)) = chars.next() {
            if let Some(start) = open {
                match c {
                    '}' => {
                        if name.is_empty() {
                            errors.push(TemplateError::EmptyName(position(start)));
                        } else {
                            parts.push(RawPart::Name(std::mem::take(&mut name)));
                        }
                        open = None;
                    }
                    '{' => {
                        errors.push(TemplateError::Unclosed(position(start)));
                        name.clear();
                        open = Some(at);
                    }
                    _ => name.push(c),
                }
                continue;
            }
            match c {
                '{' if chars.next_if(|&(_, next)| next == '{').is_some() => literal.push('{'),
                '}' if chars.next_if(|&(_, next)| next == '}').is_some() => literal.push('}'),
                '{' => {
                    if !literal.is_empty() {
                        parts.push(RawPart::Literal(std::mem::take(&mut literal)));
                    }
                    open = Some(at);
                }
                '}' => errors.push(TemplateError::Unmatched(position(at))),
                _ => literal.push(c),
            }
        }
        if let Some(start) = open {
            errors.push(TemplateError::Unclosed(position(start)));
        }
        if !literal.is_empty() {
            parts.push(RawPart::Literal(literal));
        }
        if errors.is_empty() {
            Ok(ParsedTemplate { parts })
        } else {
            Err(errors)
        }
    }

    /// Resolves every placeholder to a capture group of `regex`, reporting each unknown name.
    pub(crate) fn bind(&self, regex: &Regex) -> Result<Template, Vec<TemplateError>> {
        let mut parts = Vec::with_capacity(self.parts.len());
        let mut errors = Vec::new();
        for part in &self.parts {
            match part {
                RawPart::Literal(text) => parts.push(Part::Literal(text.clone())),
                RawPart::Name(name) => match group_index(regex, name) {
                    Some(group) => parts.push(Part::Group(group)),
                    None => errors.push(TemplateError::UnknownCapture {
                        name: name.clone(),
                        known: describe_names(regex),
                    }),
                },
            }
        }
        if errors.is_empty() {
            Ok(Template { parts })
        } else {
            Err(errors)
        }
    }

    /// Renders with every placeholder replaced by `stand_in`, to check the literal text
    /// before any capture is known.
    pub(crate) fn render_sample(&self, stand_in: &str) -> String {
        let mut out = String::new();
        for part in &self.parts {
            match part {
                RawPart::Literal(text) => out.push_str(text),
                RawPart::Name(_) => out.push_str(stand_in),
            }
        }
        out
    }
}

impl Template {
    /// Whether rendering reads any capture group (a template of literals alone does not).
    pub(crate) fn uses_groups(&self) -> bool {
        self.parts.iter().any(|part| matches!(part, Part::Group(_)))
    }

    /// Appends the rendering to `out`. A group that did not take part in the match renders
    /// as nothing, as does every group when `captures` is `None` (for a template that
    /// [uses no groups](Self::uses_groups)). A typed capture (`types`, by group number)
    /// renders in its canonical spelling. With `lowercase_captures`, captured text is
    /// ASCII-lowercased so that paths differing only in case name one resource.
    pub(crate) fn render_into(
        &self,
        captures: Option<&Captures<'_>>,
        lowercase_captures: bool,
        types: &[Option<CaptureType>],
        out: &mut String,
    ) {
        for part in &self.parts {
            match part {
                Part::Literal(text) => out.push_str(text),
                Part::Group(group) => {
                    let text = captures
                        .and_then(|c| c.get(*group))
                        .map_or("", |m| m.as_str());
                    let kind = types.get(*group).copied().flatten();
                    push_capture(out, text, lowercase_captures, kind);
                }
            }
        }
    }
}

/// Appends captured text: in its canonical spelling when the capture is typed, and
/// ASCII-lowercased when the rule matches case-insensitively.
pub(crate) fn push_capture(
    out: &mut String,
    text: &str,
    lowercase: bool,
    kind: Option<CaptureType>,
) {
    let start = out.len();
    match kind {
        // A group that took no part in the match stays empty, typed or not.
        Some(kind) if !text.is_empty() => kind.push_canonical(out, text),
        _ => out.push_str(text),
    }
    if lowercase {
        out[start..].make_ascii_lowercase();
    }
}

fn group_index(regex: &Regex, name: &str) -> Option<usize> {
    regex
        .capture_names()
        .position(|candidate| candidate == Some(name))
}

fn describe_names(regex: &Regex) -> String {
    let names: Vec<&str> = regex.capture_names().flatten().collect();
    if names.is_empty() {
        "the pattern has no named captures".to_owned()
    } else {
        format!("the pattern names: {}", names.join(", "))
    }
}
