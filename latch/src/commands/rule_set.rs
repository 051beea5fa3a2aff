//! `latch rules list|apply`: the control plane's rules from a terminal, through its API
//! (`/api/v1/rules`). `apply` makes the control plane's rules those of a rule file, for rules
//! kept in version control and applied by a script.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use clap::Subcommand;
use control_plane::RuleDto;
use reqwest::Method;
use serde_json::{json, Value};

use super::api::{segment, Api, Remote};
use super::table::Table;

#[derive(Subcommand)]
pub enum Action {
    /// Every rule, in the order the proxies try them.
    List,
    /// Make the control plane's rules those of FILE ([[rule]] tables, as `rules.store` files
    /// hold): rules only in the file are created, changed ones replaced. Rules only on the
    /// control plane are kept unless --prune is given.
    Apply {
        file: PathBuf,
        /// Delete the rules the file does not name.
        #[arg(long)]
        prune: bool,
        /// Show what would change, and change nothing.
        #[arg(long)]
        dry_run: bool,
    },
}

pub fn run(remote: Remote, action: Action) -> Result<(), Vec<String>> {
    match action {
        Action::List => list(&Api::connect(&remote)?, remote.json),
        Action::Apply {
            file,
            prune,
            dry_run,
        } => {
            // The file is checked before anything is sent.
            let wanted = read_file(&file)?;
            apply(&Api::connect(&remote)?, remote.json, wanted, prune, dry_run)
        }
    }
}

/// The control plane's rules by id, as JSON without their ETag, and each ETag.
struct Current {
    rules: BTreeMap<String, (Value, String)>,
    /// The server's order.
    order: Vec<String>,
}

fn fetch(api: &Api) -> Result<Current, Vec<String>> {
    let answer = api
        .call(Method::GET, "/api/v1/rules", None, None)
        .map_err(|e| vec![e])?;
    let list = answer.body["rules"]
        .as_array()
        .ok_or_else(|| vec!["GET /api/v1/rules: the answer has no `rules` list".to_owned()])?;
    let mut current = Current {
        rules: BTreeMap::new(),
        order: Vec::new(),
    };
    for rule in list {
        let mut rule = rule.clone();
        let etag = rule
            .as_object_mut()
            .and_then(|o| o.remove("etag"))
            .and_then(|e| e.as_str().map(str::to_owned))
            .unwrap_or_default();
        let id = rule["id"].as_str().unwrap_or_default().to_owned();
        current.order.push(id.clone());
        current.rules.insert(id, (rule, etag));
    }
    Ok(current)
}

fn list(api: &Api, as_json: bool) -> Result<(), Vec<String>> {
    let current = fetch(api)?;
    if as_json {
        let rules: Vec<&Value> = current
            .order
            .iter()
            .map(|id| &current.rules[id].0)
            .collect();
        println!("{}", json!({ "rules": rules }));
        return Ok(());
    }
    if current.order.is_empty() {
        println!("no rules");
        return Ok(());
    }
    let mut table = Table::new(["ID", "PATTERN", "RESOURCE", "MODE", "ON"]);
    for id in &current.order {
        let rule = &current.rules[id].0;
        table.row([
            id.clone(),
            rule["pattern"].as_str().unwrap_or_default().to_owned(),
            rule["resource"].as_str().unwrap_or("(the path)").to_owned(),
            rule["mode"].as_str().unwrap_or_default().to_owned(),
            if rule["enabled"] == json!(false) {
                "no"
            } else {
                "yes"
            }
            .to_owned(),
        ]);
    }
    print!("{table}");
    Ok(())
}

/// The rules of a rule file as the API would show them, or every problem in the file.
fn read_file(path: &Path) -> Result<Vec<Value>, Vec<String>> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| vec![format!("reading {}: {e}", path.display())])?;
    let rules = rules::parse_rules_toml(&text).map_err(|issues| {
        issues
            .iter()
            .map(|issue| format!("{}: {issue}", path.display()))
            .collect::<Vec<_>>()
    })?;
    rules
        .into_iter()
        .map(|rule| {
            serde_json::to_value(RuleDto::from(rule)).map_err(|e| vec![format!("a rule: {e}")])
        })
        .collect()
}

/// What `apply` does with one rule.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Change {
    Create,
    Replace,
    Keep,
    Delete,
}

impl Change {
    fn verb(self, dry_run: bool) -> &'static str {
        match (self, dry_run) {
            (Change::Create, false) => "created",
            (Change::Create, true) => "would create",
            (Change::Replace, false) => "replaced",
            (Change::Replace, true) => "would replace",
            (Change::Keep, _) => "unchanged",
            (Change::Delete, false) => "deleted",
            (Change::Delete, true) => "would delete",
        }
    }
}

/// Each rule's change, in the file's order, then the deletions in the server's.
fn plan(wanted: &[Value], current: &Current, prune: bool) -> Vec<(String, Change)> {
    let mut plan: Vec<(String, Change)> = wanted
        .iter()
        .map(|rule| {
            let id = rule["id"].as_str().unwrap_or_default().to_owned();
            let change = match current.rules.get(&id) {
                None => Change::Create,
                Some((now, _)) if now == rule => Change::Keep,
                Some(_) => Change::Replace,
            };
            (id, change)
        })
        .collect();
    if prune {
        for id in &current.order {
            if !wanted.iter().any(|rule| rule["id"] == id.as_str()) {
                plan.push((id.clone(), Change::Delete));
            }
        }
    }
    plan
}

fn apply(
    api: &Api,
    as_json: bool,
    wanted: Vec<Value>,
    prune: bool,
    dry_run: bool,
) -> Result<(), Vec<String>> {
    let current = fetch(api)?;
    let plan = plan(&wanted, &current, prune);
    let mut problems = Vec::new();
    let mut done: Vec<(String, Change)> = Vec::new();
    for (id, change) in &plan {
        let result = if dry_run {
            Ok(())
        } else {
            carry_out(api, &wanted, &current, id, *change)
        };
        match result {
            Ok(()) => done.push((id.clone(), *change)),
            Err(e) => problems.push(e),
        }
    }
    report(&done, as_json, dry_run, &problems);
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems)
    }
}

fn carry_out(
    api: &Api,
    wanted: &[Value],
    current: &Current,
    id: &str,
    change: Change,
) -> Result<(), String> {
    let path = format!("/api/v1/rules/{}", segment(id));
    // The ETag read a moment ago: a rule someone changed since is refused (412), not
    // overwritten.
    let tag = current.rules.get(id).map(|(_, etag)| format!("\"{etag}\""));
    let body = wanted.iter().find(|rule| rule["id"] == id);
    match change {
        Change::Keep => Ok(()),
        Change::Create => api
            .call(Method::POST, "/api/v1/rules", None, body)
            .map(drop),
        Change::Replace => api.call(Method::PUT, &path, tag.as_deref(), body).map(drop),
        Change::Delete => api
            .call(Method::DELETE, &path, tag.as_deref(), None)
            .map(drop),
    }
}

fn report(done: &[(String, Change)], as_json: bool, dry_run: bool, problems: &[String]) {
    let count = |change: Change| done.iter().filter(|(_, c)| *c == change).count();
    let ids = |change: Change| -> Vec<&str> {
        done.iter()
            .filter(|(_, c)| *c == change)
            .map(|(id, _)| id.as_str())
            .collect()
    };
    if as_json {
        println!(
            "{}",
            json!({
                "dry_run": dry_run,
                "created": ids(Change::Create),
                "replaced": ids(Change::Replace),
                "unchanged": ids(Change::Keep),
                "deleted": ids(Change::Delete),
                "errors": problems,
            })
        );
        return;
    }
    for (id, change) in done {
        if *change != Change::Keep {
            println!("{} {id}", change.verb(dry_run));
        }
    }
    println!(
        "{} {}, {} {}, {} unchanged, {} {}",
        count(Change::Create),
        Change::Create.verb(dry_run),
        count(Change::Replace),
        Change::Replace.verb(dry_run),
        count(Change::Keep),
        count(Change::Delete),
        Change::Delete.verb(dry_run),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn current(rules: &[(&str, Value)]) -> Current {
        Current {
            rules: rules
                .iter()
                .map(|(id, v)| ((*id).to_owned(), (v.clone(), format!("tag-{id}"))))
                .collect(),
            order: rules.iter().map(|(id, _)| (*id).to_owned()).collect(),
        }
    }

    #[test]
    fn a_plan_creates_replaces_keeps_and_deletes_only_when_pruning() {
        let a = json!({ "id": "a", "pattern": "/a" });
        let b = json!({ "id": "b", "pattern": "/b" });
        let b2 = json!({ "id": "b", "pattern": "/b2" });
        let c = json!({ "id": "c", "pattern": "/c" });
        let on_server = current(&[("b", b.clone()), ("a", a.clone()), ("old", c.clone())]);
        let file = [c.clone(), b2, a.clone()];
        // `c` is new under that id: the server's `old` has its body but another id.
        let expected = vec![
            ("c".to_owned(), Change::Create),
            ("b".to_owned(), Change::Replace),
            ("a".to_owned(), Change::Keep),
        ];
        assert_eq!(plan(&file, &on_server, false), expected);
        let mut pruned = expected.clone();
        pruned.push(("old".to_owned(), Change::Delete));
        assert_eq!(plan(&file, &on_server, true), pruned);
    }

    #[test]
    fn a_file_rule_reads_as_the_api_shows_it() {
        let dir = tempfile::tempdir().expect("a temp dir");
        let path = dir.path().join("rules.toml");
        std::fs::write(
            &path,
            "[[rule]]\nid = \"docs\"\npattern = '/docs/(?P<id>\\d+)/edit'\nresource = \"doc:{id}\"\n",
        )
        .expect("write");
        let rules = read_file(&path).expect("a valid file");
        assert_eq!(rules.len(), 1);
        assert_eq!(rules[0]["id"], "docs");
        assert_eq!(rules[0]["resource"], "doc:{id}");
        assert_eq!(rules[0]["mode"], "block");
        assert_eq!(rules[0]["enabled"], true);
    }

    #[test]
    fn every_problem_of_a_file_is_reported_with_its_name() {
        let dir = tempfile::tempdir().expect("a temp dir");
        let path = dir.path().join("bad.toml");
        std::fs::write(
            &path,
            "[[rule]]\nid = \"x\"\npattern = '/x'\nbogus = 1\n\n\
             [[rule]]\nid = \"y\"\npattern = '(unclosed'\n",
        )
        .expect("write");
        let problems = read_file(&path).expect_err("an invalid file");
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert!(
            problems[0].contains("bogus") && problems[1].contains("'y'"),
            "{problems:?}"
        );
        assert!(
            problems.iter().all(|p| p.contains("bad.toml")),
            "{problems:?}"
        );
    }
}
