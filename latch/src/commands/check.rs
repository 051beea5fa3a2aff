//! `latch check`: validate the config and every rule, reporting all problems at once.
//!
//! A broken config does not hide broken rules: when the config has problems but still names a
//! rule file, that file is checked too, so one run lists everything to fix. Rules that are valid
//! but that an app may read more loosely (see [`rules::lint_rules`]) are printed as warnings on
//! standard error; they do not change the exit status.

use std::path::{Path, PathBuf};

use config::RuleStoreKind;
use store::RuleStoreError;

use crate::stores;

pub fn run(path: &Path) -> Result<(), Vec<String>> {
    let config = match super::load_config(path) {
        Ok(config) => config,
        Err(mut problems) => {
            if let Some(RuleStoreKind::File(file)) =
                config::Config::rule_store_of(path, std::env::vars())
            {
                // The apps are unknown while the config is broken: rule apps wait for a fix.
                if let Err(rule_problems) = check_rule_file(&file, None) {
                    problems.extend(rule_problems);
                }
            }
            return Err(problems);
        }
    };
    let apps: Vec<&str> = config.apps.iter().map(|app| app.name.as_str()).collect();
    let count = match &config.rules.store {
        RuleStoreKind::File(file) => check_rule_file(file, Some(&apps))?,
        RuleStoreKind::Mongo(_) => {
            let source = format!("{}: rules.store", path.display());
            let runtime = stores::runtime()?;
            let store = stores::open_rules(&config, &runtime)?;
            let list = runtime.block_on(store.list()).map_err(|e| match e {
                RuleStoreError::Invalid(issues) => prefixed(&source, issues),
                other => vec![format!("{source}: {other}")],
            })?;
            let rules = list.into_rules();
            let count = rules.len();
            warn(&source, &rules);
            compile(&source, rules, Some(&apps))?;
            count
        }
    };
    println!("{}: ok ({count} rules)", path.display());
    Ok(())
}

/// Parses and compiles a rule file, returning how many rules it holds or every problem. With
/// `apps`, a rule's `app` must name one of them.
fn check_rule_file(file: &PathBuf, apps: Option<&[&str]>) -> Result<usize, Vec<String>> {
    let source = file.display().to_string();
    let text = std::fs::read_to_string(file)
        .map_err(|e| vec![format!("{source}: cannot read the rule file: {e}")])?;
    let rules = rules::parse_rules_toml(&text).map_err(|issues| prefixed(&source, issues))?;
    let count = rules.len();
    warn(&source, &rules);
    compile(&source, rules, apps)?;
    Ok(count)
}

/// Every problem of `rules`: their own, and with `apps` every `app` that names none of them.
fn compile(
    source: &str,
    rules: Vec<rules::Rule>,
    apps: Option<&[&str]>,
) -> Result<(), Vec<String>> {
    let mut issues = apps.map_or_else(Vec::new, |apps| rules::check_rule_apps(&rules, apps));
    if let Err(more) = rules::RuleSet::compile(rules) {
        issues.extend(more);
    }
    if issues.is_empty() {
        Ok(())
    } else {
        Err(prefixed(source, issues))
    }
}

fn warn(source: &str, rules: &[rules::Rule]) {
    for warning in rules::lint_rules(rules) {
        eprintln!("{source}: warning: {warning}");
    }
}

fn prefixed(source: &str, issues: Vec<rules::Issue>) -> Vec<String> {
    issues.iter().map(|i| format!("{source}: {i}")).collect()
}
