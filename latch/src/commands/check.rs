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
                if let Err(rule_problems) = check_rule_file(&file) {
                    problems.extend(rule_problems);
                }
            }
            return Err(problems);
        }
    };
    let count = match &config.rules.store {
        RuleStoreKind::File(file) => check_rule_file(file)?,
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
            rules::RuleSet::compile(rules).map_err(|issues| prefixed(&source, issues))?;
            count
        }
    };
    println!("{}: ok ({count} rules)", path.display());
    Ok(())
}

/// Parses and compiles a rule file, returning how many rules it holds or every problem.
fn check_rule_file(file: &PathBuf) -> Result<usize, Vec<String>> {
    let source = file.display().to_string();
    let text = std::fs::read_to_string(file)
        .map_err(|e| vec![format!("{source}: cannot read the rule file: {e}")])?;
    let rules = rules::parse_rules_toml(&text).map_err(|issues| prefixed(&source, issues))?;
    let count = rules.len();
    warn(&source, &rules);
    rules::RuleSet::compile(rules).map_err(|issues| prefixed(&source, issues))?;
    Ok(count)
}

fn warn(source: &str, rules: &[rules::Rule]) {
    for warning in rules::lint_rules(rules) {
        eprintln!("{source}: warning: {warning}");
    }
}

fn prefixed(source: &str, issues: Vec<rules::Issue>) -> Vec<String> {
    issues.iter().map(|i| format!("{source}: {i}")).collect()
}
