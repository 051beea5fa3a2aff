//! `latch check`: validate the config and every rule, reporting all problems at once.

use std::path::Path;

use config::RuleStoreKind;
use store::RuleStoreError;

pub fn run(path: &Path) -> Result<(), Vec<String>> {
    let config = super::load_config(path)?;
    let source = match &config.rules.store {
        RuleStoreKind::File(file) => file.display().to_string(),
        RuleStoreKind::Mongo(_) => format!("{}: rules.store", path.display()),
    };
    let runtime = super::proxy::store_runtime()?;
    let (store, _) = super::proxy::open_rule_store(&config, &runtime)?;
    let list = runtime.block_on(store.list()).map_err(|e| match e {
        RuleStoreError::Invalid(issues) => prefixed(&source, issues),
        other => vec![format!("{source}: {other}")],
    })?;
    let rules = list.into_rules();
    let count = rules.len();
    rules::RuleSet::compile(rules).map_err(|issues| prefixed(&source, issues))?;
    println!("{}: ok ({count} rules)", path.display());
    Ok(())
}

fn prefixed(source: &str, issues: Vec<rules::Issue>) -> Vec<String> {
    issues.iter().map(|i| format!("{source}: {i}")).collect()
}
