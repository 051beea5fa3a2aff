//! Rule validation: every problem with a rule or a list of rules, each tied to its field.
//!
//! Validation reports everything at once so that the admin UI and `latch check` can show every
//! problem in one pass. It is also the only way into a [`crate::RuleSet`]: the compiled parts a
//! rule set matches with are by-products of the same checks, so nothing is compiled twice and
//! nothing unchecked is ever matched. This module knows nothing about where rules come from.

use std::collections::HashMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::limits::{
    GRACE_SECONDS, IDLE_SECONDS, ID_MAX_LEN, LEASE_SECONDS, MAX_PER_USER, OFFER_SECONDS, PRIORITY,
};
use crate::model::{Mode, Rule};
use crate::pattern::{self, CompiledPattern};
use crate::redirect::check_same_site;
use crate::template::{ParsedTemplate, Template};

/// One problem with one field of one rule.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Issue {
    /// The rule's id as written, when it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rule: Option<String>,
    /// The rule's position in its list, counting from 0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub index: Option<usize>,
    /// The rule field at fault, by its wire name; empty for a problem with a whole file.
    pub field: String,
    /// What is wrong, in one line.
    pub message: String,
}

impl Issue {
    pub(crate) fn new(
        rule: Option<&str>,
        index: Option<usize>,
        field: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        Issue {
            rule: rule.filter(|id| !id.is_empty()).map(str::to_owned),
            index,
            field: field.into(),
            message: message.into(),
        }
    }
}

/// `rule 'edit' (#1): pattern: regex parse error at column 4: unclosed group`. The `#` number
/// counts from 1, the way a person counts the `[[rule]]` tables in a file.
impl fmt::Display for Issue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.rule, self.index) {
            (Some(id), Some(index)) => {
                write!(f, "rule '{}' (#{}): ", id.escape_debug(), index + 1)?
            }
            (Some(id), None) => write!(f, "rule '{}': ", id.escape_debug())?,
            (None, Some(index)) => write!(f, "rule #{}: ", index + 1)?,
            (None, None) => {}
        }
        if !self.field.is_empty() {
            write!(f, "{}: ", self.field)?;
        }
        f.write_str(&self.message)
    }
}

impl std::error::Error for Issue {}

/// Every problem with one rule on its own. Issues carry no index.
pub fn validate_rule(rule: &Rule) -> Vec<Issue> {
    check_rule(rule, None, None).issues
}

/// Every problem with a list of rules: each rule's own problems, with its index, and every
/// id used more than once (reported on the later uses).
pub fn validate_rules(rules: &[Rule]) -> Vec<Issue> {
    check_rules(rules).0
}

/// A rule's compiled parts, produced only for a rule without issues.
#[derive(Clone, Debug)]
pub(crate) struct CompiledRule {
    pub(crate) pattern: CompiledPattern,
    /// `None` means the default lock key: the id and every capture.
    pub(crate) resource: Option<Template>,
    /// Set exactly when the mode is `redirect`.
    pub(crate) redirect: Option<Template>,
    /// Uppercased; `None` means every method.
    pub(crate) methods: Option<Vec<String>>,
}

pub(crate) struct Checked {
    pub(crate) issues: Vec<Issue>,
    pub(crate) compiled: Option<CompiledRule>,
}

/// Checks a list and compiles every rule that has no issue of its own.
pub(crate) fn check_rules(rules: &[Rule]) -> (Vec<Issue>, Vec<Option<CompiledRule>>) {
    let earlier = earlier_uses(rules.iter().map(|rule| rule.id.as_str()).enumerate());
    let mut issues = Vec::new();
    let mut compiled = Vec::with_capacity(rules.len());
    for (index, rule) in rules.iter().enumerate() {
        let checked = check_rule(rule, Some(index), earlier.get(&index).copied());
        issues.extend(checked.issues);
        compiled.push(checked.compiled);
    }
    (issues, compiled)
}

/// For every position whose id was already used, the position of its first use. Empty ids
/// are left to the id check.
pub(crate) fn earlier_uses<'a>(
    ids: impl Iterator<Item = (usize, &'a str)>,
) -> HashMap<usize, usize> {
    let mut first: HashMap<&str, usize> = HashMap::new();
    let mut earlier = HashMap::new();
    for (index, id) in ids {
        if id.is_empty() {
            continue;
        }
        match first.get(id) {
            Some(&first_index) => {
                earlier.insert(index, first_index);
            }
            None => {
                first.insert(id, index);
            }
        }
    }
    earlier
}

/// Checks one rule. `duplicate_of` is the position of an earlier rule with the same id.
pub(crate) fn check_rule(
    rule: &Rule,
    index: Option<usize>,
    duplicate_of: Option<usize>,
) -> Checked {
    let mut report = Report {
        rule: Some(rule.id.as_str()),
        index,
        issues: Vec::new(),
    };

    check_id(&mut report, &rule.id);
    if let Some(first) = duplicate_of {
        report.push(
            "id",
            format!("duplicate id: rule #{} already uses it", first + 1),
        );
    }

    let pattern = match pattern::compile(&rule.pattern, rule.case_insensitive) {
        Ok(pattern) => Some(pattern),
        Err(err) => {
            report.push("pattern", err.to_string());
            None
        }
    };

    let resource = rule
        .resource
        .as_deref()
        .and_then(|src| check_resource(&mut report, src, pattern.as_ref()));
    let redirect = check_redirect(&mut report, rule, pattern.as_ref());
    let methods = rule
        .methods
        .as_deref()
        .and_then(|methods| check_methods(&mut report, methods));
    check_numbers(&mut report, rule);
    if let Some(app) = &rule.app {
        if let Err(message) = check_app_name(app) {
            report.push("app", message);
        }
    }

    let compiled = match pattern {
        Some(pattern) if report.issues.is_empty() => Some(CompiledRule {
            pattern,
            resource,
            redirect,
            methods,
        }),
        _ => None,
    };
    Checked {
        issues: report.issues,
        compiled,
    }
}

/// Longest app name: it starts every lock key of its app.
pub const APP_NAME_MAX_LEN: usize = 32;

/// Is `name` a well-formed app name, `[a-z0-9_-]{1,32}`? Shared with the configuration's
/// `[[app]] name`, so a rule can name every app the config can declare.
pub fn check_app_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > APP_NAME_MAX_LEN {
        return Err(format!(
            "{name:?} must be 1 to {APP_NAME_MAX_LEN} characters long"
        ));
    }
    match name.chars().find(|&c| !is_id_char(c)) {
        Some(bad) => Err(format!(
            "{name:?} contains '{}'; only a-z, 0-9, '_' and '-' are allowed",
            bad.escape_debug()
        )),
        None => Ok(()),
    }
}

/// The rules that name an app not in `apps`, as issues on their `app` field: a rule scoped to
/// an app that does not exist would never apply, which is a mistake worth stopping for.
pub fn check_rule_apps(rules: &[Rule], apps: &[&str]) -> Vec<Issue> {
    let known = if apps.is_empty() {
        "no [[app]] entries are configured".to_owned()
    } else {
        format!("the configured apps are {}", apps.join(", "))
    };
    rules
        .iter()
        .enumerate()
        .filter_map(|(index, rule)| {
            let app = rule.app.as_deref()?;
            (!apps.contains(&app)).then(|| {
                Issue::new(
                    Some(&rule.id),
                    Some(index),
                    "app",
                    format!("{app:?} is not an app of this proxy ({known})"),
                )
            })
        })
        .collect()
}

struct Report<'a> {
    rule: Option<&'a str>,
    index: Option<usize>,
    issues: Vec<Issue>,
}

impl Report<'_> {
    fn push(&mut self, field: &str, message: impl Into<String>) {
        self.issues
            .push(Issue::new(self.rule, self.index, field, message));
    }
}

fn check_id(report: &mut Report<'_>, id: &str) {
    if id.is_empty() {
        report.push("id", "must not be empty");
        return;
    }
    let len = id.chars().count();
    if len > ID_MAX_LEN {
        report.push(
            "id",
            format!("is {len} characters long; the limit is {ID_MAX_LEN}"),
        );
    }
    if let Some(bad) = id.chars().find(|&c| !is_id_char(c)) {
        report.push(
            "id",
            format!(
                "contains '{}'; only a-z, 0-9, '_' and '-' are allowed",
                bad.escape_debug()
            ),
        );
    }
}

fn is_id_char(c: char) -> bool {
    c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-'
}

/// Parses and binds a template, reporting every problem under `field`. Binding is skipped
/// when the pattern itself is broken, since its capture names are then unknown.
fn check_template(
    report: &mut Report<'_>,
    field: &str,
    src: &str,
    pattern: Option<&CompiledPattern>,
) -> Option<(ParsedTemplate, Option<Template>)> {
    let parsed = match ParsedTemplate::parse(src) {
        Ok(parsed) => parsed,
        Err(errors) => {
            for err in errors {
                report.push(field, err.to_string());
            }
            return None;
        }
    };
    let bound = match pattern.map(|pattern| parsed.bind(&pattern.regex)) {
        Some(Ok(template)) => Some(template),
        Some(Err(errors)) => {
            for err in errors {
                report.push(field, err.to_string());
            }
            None
        }
        None => None,
    };
    Some((parsed, bound))
}

fn check_resource(
    report: &mut Report<'_>,
    src: &str,
    pattern: Option<&CompiledPattern>,
) -> Option<Template> {
    if src.is_empty() {
        report.push(
            "resource",
            "must not be empty (leave it out to use the rule id and the captures)",
        );
        return None;
    }
    check_template(report, "resource", src, pattern).and_then(|(_, bound)| bound)
}

fn check_redirect(
    report: &mut Report<'_>,
    rule: &Rule,
    pattern: Option<&CompiledPattern>,
) -> Option<Template> {
    let Some(src) = rule.redirect_to.as_deref() else {
        if rule.mode == Mode::Redirect {
            report.push("redirect_to", "required when mode is \"redirect\"");
        }
        return None;
    };
    if rule.mode != Mode::Redirect {
        report.push(
            "redirect_to",
            format!(
                "only used when mode is \"redirect\" (mode is \"{}\")",
                rule.mode
            ),
        );
    }
    let (parsed, bound) = check_template(report, "redirect_to", src, pattern)?;
    // Captures are re-checked after rendering; this catches targets that are off-site
    // whatever the captures hold. A stand-in without '/' or '\' cannot hide a problem in
    // the literal text.
    if let Err(off_site) = check_same_site(&parsed.render_sample("x")) {
        report.push("redirect_to", off_site.to_string());
    }
    bound
}

fn check_methods(report: &mut Report<'_>, methods: &[String]) -> Option<Vec<String>> {
    if methods.is_empty() {
        report.push(
            "methods",
            "must not be empty (leave it out to match every method)",
        );
        return None;
    }
    let mut valid = true;
    for method in methods {
        if method.is_empty() || !method.bytes().all(is_token_byte) {
            report.push(
                "methods",
                format!("'{}' is not a valid HTTP method", method.escape_debug()),
            );
            valid = false;
        }
    }
    valid.then(|| methods.iter().map(|m| m.to_ascii_uppercase()).collect())
}

/// RFC 9110 `tchar`.
fn is_token_byte(byte: u8) -> bool {
    byte.is_ascii_alphanumeric()
        || matches!(
            byte,
            b'!' | b'#'
                | b'$'
                | b'%'
                | b'&'
                | b'\''
                | b'*'
                | b'+'
                | b'-'
                | b'.'
                | b'^'
                | b'_'
                | b'`'
                | b'|'
                | b'~'
        )
}

fn check_numbers(report: &mut Report<'_>, rule: &Rule) {
    if let Some(lease) = rule.lease_seconds {
        if !LEASE_SECONDS.contains(&lease) {
            report.push(
                "lease_seconds",
                format!(
                    "must be between {} and {} seconds, not {lease}",
                    LEASE_SECONDS.start(),
                    LEASE_SECONDS.end()
                ),
            );
        }
    }
    if let Some(grace) = rule.grace_seconds {
        if !GRACE_SECONDS.contains(&grace) {
            report.push(
                "grace_seconds",
                format!(
                    "must be between {} and {} seconds, not {grace}",
                    GRACE_SECONDS.start(),
                    GRACE_SECONDS.end()
                ),
            );
        }
        if let Some(lease) = rule.lease_seconds {
            if grace >= lease {
                report.push(
                    "grace_seconds",
                    format!("must be shorter than lease_seconds ({grace} >= {lease})"),
                );
            }
        }
    }
    if let Some(idle) = rule.idle_seconds {
        if !IDLE_SECONDS.contains(&idle) {
            report.push(
                "idle_seconds",
                format!(
                    "must be between {} and {} seconds (0 for off), not {idle}",
                    IDLE_SECONDS.start(),
                    IDLE_SECONDS.end()
                ),
            );
        }
    }
    if let Some(offer) = rule.offer_seconds {
        if !OFFER_SECONDS.contains(&offer) {
            report.push(
                "offer_seconds",
                format!(
                    "must be between {} and {} seconds, not {offer}",
                    OFFER_SECONDS.start(),
                    OFFER_SECONDS.end()
                ),
            );
        }
    }
    if let Some(max) = rule.max_per_user {
        if !MAX_PER_USER.contains(&max) {
            report.push(
                "max_per_user",
                format!(
                    "must be between {} and {} (0 for no cap), not {max}",
                    MAX_PER_USER.start(),
                    MAX_PER_USER.end()
                ),
            );
        }
    }
    if !PRIORITY.contains(&rule.priority) {
        report.push(
            "priority",
            format!(
                "must be between {} and {}, not {}",
                PRIORITY.start(),
                PRIORITY.end(),
                rule.priority
            ),
        );
    }
    for (position, role) in rule.takeover_roles.iter().enumerate() {
        if role.trim().is_empty() {
            report.push("takeover_roles", format!("entry {} is empty", position + 1));
        }
    }
}
