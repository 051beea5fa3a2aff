//! Rule files: `[[rule]]` tables in TOML, turned into rules or into every problem found.
//!
//! serde stops at the first unknown or mistyped key, and its errors do not say which rule
//! they belong to. So each table is read as spanned keys and values first: every unknown key
//! and every mistyped value is reported with its rule and line, and only clean tables are
//! deserialized into [`Rule`]s and validated. This module knows nothing about where the text
//! came from; callers add the file name.

use std::collections::BTreeMap;

use serde::de::IgnoredAny;
use serde::Deserialize;
use toml::{Spanned, Value};

use crate::model::{Mode, Owner, Rule, WebSocket, RULE_FIELDS};
use crate::problems::Problems;
use crate::validate::{check_rule, earlier_uses, Issue};

type RawTable = BTreeMap<Spanned<String>, Spanned<Value>>;

/// The file's shape. Unknown top-level keys are ignored here and reported from a first pass.
#[derive(Deserialize)]
struct RawFile {
    #[serde(default)]
    rule: Vec<Spanned<RawTable>>,
}

/// Parses a rule file. TOML syntax errors, unknown keys, mistyped values and every
/// validation issue (duplicate ids included) come back together, each with its line.
pub fn parse_rules_toml(src: &str) -> Result<Vec<Rule>, Vec<Issue>> {
    let file_error = |err: toml::de::Error| {
        let location = err
            .span()
            .map(|span| format!(" ({})", line_column(src, span.start)))
            .unwrap_or_default();
        vec![Issue::new(
            None,
            None,
            "",
            format!("{}{location}", one_line(err.message())),
        )]
    };

    let top: BTreeMap<Spanned<String>, IgnoredAny> = toml::from_str(src).map_err(file_error)?;
    let mut issues = Problems::new();
    let mut file_level = issues.context(|_, message| Issue::new(None, None, "", message));
    for key in sorted_by_position(top.keys()) {
        if key.get_ref() != "rule" {
            file_level.push(
                "",
                format!(
                    "unknown top-level key '{}' ({}); a rule file holds only [[rule]] tables",
                    key.get_ref().escape_debug(),
                    line_column(src, key.span().start)
                ),
            );
        }
    }
    // The syntax is known to be fine by now, so this can only fail on the shape of `rule`.
    let file: RawFile = match toml::from_str(src) {
        Ok(file) => file,
        Err(err) => {
            for mut issue in file_error(err) {
                issue.message = format!("'rule' must be [[rule]] tables: {}", issue.message);
                issues.push(issue);
            }
            return Err(issues.into_vec());
        }
    };

    let ids: Vec<Option<&str>> = file
        .rule
        .iter()
        .map(|table| {
            table
                .get_ref()
                .get("id")
                .and_then(|id| id.get_ref().as_str())
        })
        .collect();
    let earlier = earlier_uses(
        ids.iter()
            .enumerate()
            .filter_map(|(index, id)| id.map(|id| (index, id))),
    );

    let mut rules = Vec::with_capacity(file.rule.len());
    for (index, table) in file.rule.iter().enumerate() {
        let id = ids.get(index).copied().flatten();
        let duplicate_of = earlier.get(&index).copied();
        let table_line = line_of(src, table.span().start);
        match read_table(src, table.get_ref(), table_line, id, index) {
            Ok(rule) => {
                for mut issue in check_rule(&rule, Some(index), duplicate_of).issues {
                    let line = table
                        .get_ref()
                        .get(issue.field.as_str())
                        .map_or(table_line, |value| line_of(src, value.span().start));
                    issue.message.push_str(&format!(" (line {line})"));
                    issues.push(issue);
                }
                rules.push(rule);
            }
            Err(table_issues) => {
                issues.extend(table_issues);
                if let Some(first) = duplicate_of {
                    issues.push(Issue::new(
                        id,
                        Some(index),
                        "id",
                        format!(
                            "duplicate id: rule #{} already uses it (line {table_line})",
                            first + 1
                        ),
                    ));
                }
            }
        }
    }

    issues.finish(rules)
}

/// Turns one `[[rule]]` table into a rule, or reports every unknown, mistyped and missing key.
fn read_table(
    src: &str,
    table: &RawTable,
    table_line: usize,
    id: Option<&str>,
    index: usize,
) -> Result<Rule, Vec<Issue>> {
    let mut problems = Problems::new();
    let mut issues = problems.context(|field, message| Issue::new(id, Some(index), field, message));
    for key in sorted_by_position(table.keys()) {
        let name = key.get_ref().as_str();
        let at = line_column(src, key.span().start);
        if !RULE_FIELDS.contains(&name) {
            issues.push(
                name,
                format!(
                    "unknown field ({at}); known fields: {}",
                    RULE_FIELDS.join(", ")
                ),
            );
        } else if let Some(value) = table.get(name) {
            if let Err(err) = check_type(name, value.get_ref()) {
                let at = line_column(src, value.span().start);
                issues.push(name, format!("{} ({at})", one_line(err.message())));
            }
        }
    }
    for required in ["id", "pattern"] {
        if !table.contains_key(required) {
            issues.push(
                required,
                format!("required field is missing (line {table_line})"),
            );
        }
    }
    problems.finish(())?;

    let plain: toml::Table = table
        .iter()
        .map(|(key, value)| (key.get_ref().clone(), value.get_ref().clone()))
        .collect();
    Rule::deserialize(Value::Table(plain)).map_err(|err| {
        vec![Issue::new(
            id,
            Some(index),
            "",
            format!("{} (line {table_line})", one_line(err.message())),
        )]
    })
}

/// Checks one known field's value against the type [`Rule`] gives it.
fn check_type(field: &str, value: &Value) -> Result<(), toml::de::Error> {
    let value = value.clone();
    match field {
        "id" | "pattern" | "resource" | "redirect_to" | "app" => {
            value.try_into::<String>().map(drop)
        }
        "methods" | "takeover_roles" => value.try_into::<Vec<String>>().map(drop),
        "mode" => value.try_into::<Mode>().map(drop),
        "owner" => value.try_into::<Owner>().map(drop),
        "websocket" => value.try_into::<WebSocket>().map(drop),
        "lease_seconds" | "grace_seconds" | "idle_seconds" | "offer_seconds" => {
            value.try_into::<u64>().map(drop)
        }
        "max_per_user" => value.try_into::<u32>().map(drop),
        "priority" => value.try_into::<i32>().map(drop),
        "inject" | "case_insensitive" | "enabled" => value.try_into::<bool>().map(drop),
        _ => Ok(()),
    }
}

/// Keys in the order they appear in the file, so issues read top to bottom.
fn sorted_by_position<'a>(
    keys: impl Iterator<Item = &'a Spanned<String>>,
) -> Vec<&'a Spanned<String>> {
    let mut keys: Vec<_> = keys.collect();
    keys.sort_by_key(|key| key.span().start);
    keys
}

fn line_of(src: &str, offset: usize) -> usize {
    let before = src.get(..offset).unwrap_or(src);
    before.matches('\n').count() + 1
}

fn line_column(src: &str, offset: usize) -> String {
    let before = src.get(..offset).unwrap_or(src);
    let line = before.matches('\n').count() + 1;
    let column = before
        .rsplit('\n')
        .next()
        .map_or(0, |tail| tail.chars().count())
        + 1;
    format!("line {line}, column {column}")
}

fn one_line(text: &str) -> String {
    text.lines()
        .map(str::trim)
        .filter(|line| !line.is_empty())
        .collect::<Vec<_>>()
        .join("; ")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fully populated rule, serialized, has exactly the keys the file reader knows.
    #[test]
    fn rule_fields_match_the_model() {
        let mut rule = Rule::new("r", "/x/(?P<id>\\d+)");
        rule.resource = Some("doc:{id}".into());
        rule.methods = Some(vec!["GET".into()]);
        rule.redirect_to = Some("/x".into());
        rule.lease_seconds = Some(30);
        rule.grace_seconds = Some(10);
        rule.max_per_user = Some(3);
        rule.idle_seconds = Some(600);
        rule.offer_seconds = Some(60);
        rule.app = Some("wiki".into());
        let table = toml::Table::try_from(&rule).unwrap();
        let mut keys: Vec<&str> = table.keys().map(String::as_str).collect();
        let mut fields = RULE_FIELDS.to_vec();
        keys.sort_unstable();
        fields.sort_unstable();
        assert_eq!(keys, fields);
    }

    /// Every known field is type-checked: a table is the right type for none of them.
    #[test]
    fn every_field_is_type_checked() {
        for field in RULE_FIELDS {
            let wrong = Value::Table(toml::Table::new());
            assert!(
                check_type(field, &wrong).is_err(),
                "{field} accepted a table"
            );
        }
    }

    #[test]
    fn line_column_counts_from_one() {
        let src = "ab\ncdé\nx";
        assert_eq!(line_column(src, 0), "line 1, column 1");
        assert_eq!(line_column(src, 3), "line 2, column 1");
        assert_eq!(line_column(src, src.len() - 1), "line 3, column 1");
        assert_eq!(line_column(src, 5), "line 2, column 3");
    }
}
