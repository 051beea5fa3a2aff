//! Warnings about rules that are valid but that an app may read more loosely than the rule
//! does, so two URLs of one object could lock two resources. `latch check` prints them; they
//! never stop a rule from loading.
//!
//! This module knows nothing about where rules come from or how warnings are shown.

use regex_syntax::hir::{Class, Hir, HirKind};

use crate::model::Rule;
use crate::pattern::expand_typed_captures;
use crate::validate::Issue;

/// Every warning for `rules`, in order. Rules with errors are skipped: validation reports them.
pub fn lint_rules(rules: &[Rule]) -> Vec<Issue> {
    rules
        .iter()
        .enumerate()
        .flat_map(|(index, rule)| lint(rule, index))
        .collect()
}

fn lint(rule: &Rule, index: usize) -> Vec<Issue> {
    let Ok((expanded, typed)) = expand_typed_captures(&rule.pattern) else {
        return Vec::new();
    };
    let Ok(hir) = regex_syntax::ParserBuilder::new()
        .case_insensitive(rule.case_insensitive)
        .build()
        .parse(&expanded)
    else {
        return Vec::new();
    };
    let mut numeric = Vec::new();
    untyped_numeric_captures(&hir, &typed, &mut numeric);
    numeric
        .into_iter()
        .map(|name| {
            Issue::new(
                Some(&rule.id),
                Some(index),
                "pattern",
                format!(
                    "capture '{name}' matches only digits, but an app that reads it as a number \
                     takes 01, +1 and 1 for the same object, and each would lock a resource of \
                     its own; write {{{name}:int}} instead"
                ),
            )
        })
        .collect()
}

/// Names of the named captures, not declared with a type, whose every match is digits.
fn untyped_numeric_captures<'a>(
    hir: &'a Hir,
    typed: &[(String, crate::CaptureType)],
    out: &mut Vec<&'a str>,
) {
    match hir.kind() {
        HirKind::Capture(capture) => {
            if let Some(name) = capture.name.as_deref() {
                let declared = typed.iter().any(|(typed_name, _)| typed_name == name);
                if !declared && only_digits(&capture.sub) {
                    out.push(name);
                }
            }
            untyped_numeric_captures(&capture.sub, typed, out);
        }
        HirKind::Concat(subs) | HirKind::Alternation(subs) => {
            for sub in subs {
                untyped_numeric_captures(sub, typed, out);
            }
        }
        HirKind::Repetition(repetition) => untyped_numeric_captures(&repetition.sub, typed, out),
        HirKind::Empty | HirKind::Literal(_) | HirKind::Class(_) | HirKind::Look(_) => {}
    }
}

/// A repetition of a class of digits: `[0-9]+`, `\d{1,6}`, `[0-9]*`.
fn only_digits(hir: &Hir) -> bool {
    let HirKind::Repetition(repetition) = hir.kind() else {
        return false;
    };
    match repetition.sub.kind() {
        HirKind::Class(Class::Unicode(class)) => class
            .ranges()
            .iter()
            .all(|range| range.start().is_numeric() && range.end().is_numeric()),
        HirKind::Class(Class::Bytes(class)) => class
            .ranges()
            .iter()
            .all(|range| range.start().is_ascii_digit() && range.end().is_ascii_digit()),
        _ => false,
    }
}
