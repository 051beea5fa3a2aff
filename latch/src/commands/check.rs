//! `latch check`: validate the config and every rule, reporting all problems at once.

use std::path::Path;

use config::RuleStoreKind;

pub fn run(path: &Path) -> Result<(), Vec<String>> {
    let config = super::load_config(path)?;
    let count = match &config.rules.store {
        RuleStoreKind::File(file) => {
            let source = file.display().to_string();
            let text = std::fs::read_to_string(file)
                .map_err(|e| vec![format!("{source}: cannot read the rule file: {e}")])?;
            let rules = rules::parse_rules_toml(&text)
                .map_err(|issues| prefixed(&source, issues))?;
            let count = rules.len();
            rules::RuleSet::compile(rules).map_err(|issues| prefixed(&source, issues))?;
            count
        }
        RuleStoreKind::Mongo(url) => {
            return Err(vec![format!(
                "{}: rules.store: {url}: MongoDB rule stores are checked by the control plane, not yet by `latch check`",
                path.display()
            )])
        }
    };
    println!("{}: ok ({count} rules)", path.display());
    Ok(())
}

fn prefixed(source: &str, issues: Vec<rules::Issue>) -> Vec<String> {
    issues.iter().map(|i| format!("{source}: {i}")).collect()
}
