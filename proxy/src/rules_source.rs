//! Where the proxy's rules come from, and keeping them current.
//!
//! A source yields the full rule list; the poller compiles it and swaps the whole set in, so a
//! request sees either the old rules or the new ones. A source that fails or yields an invalid
//! set leaves the last good rules in force; the problem is logged, counted and shown by
//! `/readyz` only while there are no good rules at all.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use rules::{Rule, RuleSet};

use crate::state::Latch;

#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("cannot read {path}: {reason}")]
    Read { path: String, reason: String },
    #[error("{0} invalid rule(s): {1}")]
    Invalid(usize, String),
    #[error("rule store unavailable: {0}")]
    Unavailable(String),
}

/// A place rules are kept.
#[async_trait]
pub trait RuleSource: Send + Sync + 'static {
    /// Every rule, as stored.
    async fn load(&self) -> Result<Vec<Rule>, SourceError>;
    /// Something that changes whenever the rules change; cheap to ask often.
    async fn version(&self) -> Result<String, SourceError>;
}

/// Rules in a TOML file of `[[rule]]` tables.
pub struct FileRules {
    pub path: PathBuf,
}

impl FileRules {
    fn read(&self) -> Result<String, SourceError> {
        std::fs::read_to_string(&self.path).map_err(|e| SourceError::Read {
            path: self.path.display().to_string(),
            reason: e.to_string(),
        })
    }
}

#[async_trait]
impl RuleSource for FileRules {
    async fn load(&self) -> Result<Vec<Rule>, SourceError> {
        let text = self.read()?;
        rules::parse_rules_toml(&text).map_err(|issues| {
            SourceError::Invalid(
                issues.len(),
                issues
                    .iter()
                    .map(|i| i.to_string())
                    .collect::<Vec<_>>()
                    .join("; "),
            )
        })
    }

    async fn version(&self) -> Result<String, SourceError> {
        let text = self.read()?;
        // FNV-1a over the content: a rewrite with the same mtime still counts as a change.
        let hash = text.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
        });
        Ok(format!("{hash:016x}"))
    }
}

/// Loads and compiles the rules once, reporting every problem.
pub async fn load_rule_set(source: &dyn RuleSource) -> Result<RuleSet, Vec<String>> {
    let rules = source.load().await.map_err(|e| vec![e.to_string()])?;
    RuleSet::compile(rules).map_err(|issues| issues.iter().map(|i| i.to_string()).collect())
}

/// Re-reads the source every `every` and swaps in a changed, valid rule set.
pub async fn poll(latch: Arc<Latch>, source: Arc<dyn RuleSource>, every: Duration, mut seen: Option<String>) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let version = match source.version().await {
            Ok(v) => v,
            Err(e) => {
                tracing::warn!(error = %e, "rule store unreachable; keeping the last good rules");
                latch.metrics.rules_reload_errors.inc();
                continue;
            }
        };
        if seen.as_deref() == Some(version.as_str()) {
            continue;
        }
        match load_rule_set(source.as_ref()).await {
            Ok(set) => {
                tracing::info!(rules = set.len(), version = %version, "rules reloaded");
                latch.metrics.rules_loaded.set(set.len() as i64);
                latch.rules.store(Arc::new(set));
                latch.set_rules_problem(None);
                seen = Some(version);
            }
            Err(problems) => {
                tracing::warn!(problems = %problems.join("; "), "new rules are invalid; keeping the last good rules");
                latch.metrics.rules_reload_errors.inc();
                // Do not retry the same broken version every tick.
                seen = Some(version);
            }
        }
    }
}
