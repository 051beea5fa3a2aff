//! Keeping the proxy's rules current from a [`RuleStore`].
//!
//! The proxy loads the whole list at start and then polls the store's version every
//! `rules.poll_seconds`; when it moves, the list is reloaded, compiled and swapped in as a
//! whole, so a request sees either the old rules or the new ones. A store that fails or yields
//! an invalid set leaves the last good rules in force; the problem is logged and counted
//! (`latch_rules_reload_errors_total`).
//!
//! A proxy that must start while its rule store is unreachable uses the snapshot it saved
//! after its last successful load, when it has one; otherwise it starts without rules and
//! fails `/readyz` with the reason until the store answers. Requests never wait on the store.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rules::{Rule, RuleSet};
pub use store::RuleStore;
use store::RuleStoreError;

use crate::state::Latch;

/// How long one version check or reload may take before it counts as a failure.
const POLL_TIMEOUT: Duration = Duration::from_secs(5);

/// The on-disk copy of the last rule set a proxy loaded, for starting while the store is down.
#[derive(Clone, Debug)]
pub struct Snapshot {
    path: PathBuf,
}

impl Snapshot {
    /// The conventional place: `.latch-rules-snapshot.toml` next to the config file.
    pub fn beside(config_file: &Path) -> Snapshot {
        let dir = match config_file.parent() {
            Some(dir) if !dir.as_os_str().is_empty() => dir.to_path_buf(),
            _ => PathBuf::from("."),
        };
        Snapshot {
            path: dir.join(".latch-rules-snapshot.toml"),
        }
    }

    pub fn at(path: impl Into<PathBuf>) -> Snapshot {
        Snapshot { path: path.into() }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Writes `rules` atomically. A failure is logged, never fatal: the snapshot is a fallback.
    pub async fn save(&self, rules: &[Rule]) {
        let text = match store::render_rules_toml(rules) {
            Ok(text) => text,
            Err(e) => {
                tracing::warn!(error = %e, "cannot render the rules snapshot");
                return;
            }
        };
        let path = self.path.clone();
        let written =
            tokio::task::spawn_blocking(move || store::write_atomically(&path, text.as_bytes()))
                .await;
        match written {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                tracing::warn!(path = %self.path.display(), error = %e, "cannot save the rules snapshot");
            }
            Err(e) => tracing::warn!(error = %e, "rules snapshot writer failed"),
        }
    }

    /// The saved rules, compiled, or why they cannot be used.
    pub fn load(&self) -> Result<RuleSet, String> {
        let text = std::fs::read_to_string(&self.path)
            .map_err(|e| format!("no usable snapshot at {}: {e}", self.path.display()))?;
        rules::parse_rules_toml(&text)
            .and_then(RuleSet::compile)
            .map_err(|issues| {
                format!(
                    "the snapshot at {} is invalid: {}",
                    self.path.display(),
                    join(issues.iter())
                )
            })
    }
}

/// How [`crate::build`] keeps the rules current: the store to poll, the version the initial
/// rules came from, and where to save each good set.
pub struct Polling {
    pub store: Arc<dyn RuleStore>,
    pub seen: Option<String>,
    pub snapshot: Option<Snapshot>,
}

/// What a proxy starts with.
pub struct Initial {
    pub rules: RuleSet,
    /// The store version `rules` came from; `None` when they came from elsewhere, so the
    /// first successful poll reloads.
    pub version: Option<String>,
    /// Set when the proxy has no trustworthy rules: `/readyz` fails with it until a poll
    /// succeeds.
    pub problem: Option<String>,
}

/// Loads and compiles every rule once, with the version they were read at.
pub async fn load_rule_set(store: &dyn RuleStore) -> Result<(RuleSet, String), Vec<String>> {
    let list = store.list().await.map_err(|e| describe(&e))?;
    let version = list.version.clone();
    let set = RuleSet::compile(list.into_rules())
        .map_err(|issues| issues.iter().map(ToString::to_string).collect::<Vec<_>>())?;
    Ok((set, version))
}

/// The rules to start with. From the store when it answers with a valid set; else from the
/// snapshot, if there is one; else no rules and a readiness problem. Invalid rules in a
/// reachable store with no snapshot to fall back on are fatal: the operator must fix them.
pub async fn initial(
    store: &dyn RuleStore,
    snapshot: Option<&Snapshot>,
) -> Result<Initial, Vec<String>> {
    let loaded = match tokio::time::timeout(POLL_TIMEOUT, load_rule_set(store)).await {
        Ok(result) => result,
        Err(_) => Err(vec![format!("{} did not answer in time", store.describe())]),
    };
    let problems = match loaded {
        Ok((rules, version)) => {
            if let Some(snapshot) = snapshot {
                snapshot.save(rules.rules()).await;
            }
            return Ok(Initial {
                rules,
                version: Some(version),
                problem: None,
            });
        }
        Err(problems) => problems,
    };
    let reason = problems.join("; ");
    let unreachable = problems.iter().all(|p| p.starts_with(UNAVAILABLE));
    let Some(snapshot) = snapshot else {
        return Err(problems);
    };
    match snapshot.load() {
        Ok(rules) => {
            tracing::warn!(
                reason = %reason,
                snapshot = %snapshot.path().display(),
                rules = rules.len(),
                "rule store unusable at start; serving the last saved rules"
            );
            Ok(Initial {
                rules,
                version: None,
                problem: None,
            })
        }
        Err(snapshot_problem) if unreachable => {
            let problem = format!("{reason}; {snapshot_problem}");
            tracing::error!(problem = %problem, "starting without rules; not ready until the rule store answers");
            Ok(Initial {
                rules: RuleSet::empty(),
                version: None,
                problem: Some(problem),
            })
        }
        Err(_) => Err(problems),
    }
}

/// Every `every`, asks the store for its version and swaps in a changed, valid rule set,
/// saving it to `snapshot` when given.
pub async fn poll(
    latch: Arc<Latch>,
    store: Arc<dyn RuleStore>,
    every: Duration,
    mut seen: Option<String>,
    snapshot: Option<Snapshot>,
) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    // A nudge from the control plane (through the lock store) reloads at once; the tick stays
    // the guarantee when there is no nudge channel or a nudge is lost.
    let mut nudges = latch.store.rule_nudges();
    loop {
        match nudges.as_mut() {
            Some(rx) => tokio::select! {
                _ = tick.tick() => {}
                heard = rx.recv() => {
                    if let Err(tokio::sync::broadcast::error::RecvError::Closed) = heard {
                        nudges = None;
                    }
                }
            },
            None => {
                tick.tick().await;
            }
        }
        let version = match tokio::time::timeout(POLL_TIMEOUT, store.version()).await {
            Ok(Ok(version)) => version,
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "rule store unreachable; keeping the last good rules");
                latch.metrics.rules_reload_errors.inc();
                continue;
            }
            Err(_) => {
                tracing::warn!(store = %store.describe(), "rule store did not answer in time; keeping the last good rules");
                latch.metrics.rules_reload_errors.inc();
                continue;
            }
        };
        if seen.as_deref() == Some(version.as_str()) {
            continue;
        }
        let loaded = match tokio::time::timeout(POLL_TIMEOUT, load_rule_set(store.as_ref())).await {
            Ok(loaded) => loaded,
            Err(_) => Err(vec![format!("{} did not answer in time", store.describe())]),
        };
        match loaded {
            Ok((set, loaded_version)) => {
                // Building the DFA can take a tenth of a second for hundreds of rules: off the
                // runtime the banner sockets' events run on.
                let set = match tokio::task::spawn_blocking(move || set.with_dfa()).await {
                    Ok(set) => set,
                    Err(e) => {
                        tracing::error!(error = %e, "rules not reloaded: building them failed");
                        latch.metrics.rules_reload_errors.inc();
                        continue;
                    }
                };
                tracing::info!(rules = set.len(), version = %loaded_version, "rules reloaded");
                latch.metrics.rules_in_force(&set);
                if let Some(snapshot) = &snapshot {
                    snapshot.save(set.rules()).await;
                }
                latch.rules.store(Arc::new(set));
                latch.set_rules_problem(None);
                seen = Some(loaded_version);
            }
            Err(problems) => {
                let unreachable = problems.iter().all(|p| p.starts_with(UNAVAILABLE));
                tracing::warn!(problems = %problems.join("; "), "cannot load the new rules; keeping the last good rules");
                latch.metrics.rules_reload_errors.inc();
                // An invalid set stays invalid until the version moves again; an unreachable
                // store is retried on the next tick.
                if !unreachable {
                    seen = Some(version);
                }
            }
        }
    }
}

/// Every problem message for an unreachable store starts with this.
const UNAVAILABLE: &str = "rule store unavailable";

fn describe(e: &RuleStoreError) -> Vec<String> {
    match e {
        RuleStoreError::Invalid(issues) => issues.iter().map(ToString::to_string).collect(),
        // `RuleStoreError::Unavailable` displays as "rule store unavailable: …".
        other => vec![other.to_string()],
    }
}

fn join<'a>(issues: impl Iterator<Item = &'a rules::Issue>) -> String {
    issues
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fresh directory under the system temp dir, removed when dropped.
    struct TempDir(PathBuf);

    impl TempDir {
        fn new() -> TempDir {
            let suffix: u64 = rand::random();
            let dir = std::env::temp_dir().join(format!("latch-rules-source-{suffix:016x}"));
            std::fs::create_dir_all(&dir).unwrap();
            TempDir(dir)
        }

        fn path(&self) -> &Path {
            &self.0
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn rules_file(dir: &Path, text: &str) -> store::FileRuleStore {
        let path = dir.join("rules.toml");
        std::fs::write(&path, text).unwrap();
        store::FileRuleStore::new(path)
    }

    #[tokio::test]
    async fn a_good_load_saves_a_snapshot_that_loads_back() {
        let dir = TempDir::new();
        let store = rules_file(dir.path(), "[[rule]]\nid = \"a\"\npattern = \"/a\"\n");
        let snapshot = Snapshot::beside(&dir.path().join("latch.toml"));
        let initial = initial(&store, Some(&snapshot)).await.unwrap();
        assert_eq!(initial.rules.len(), 1);
        assert!(initial.version.is_some());
        assert!(initial.problem.is_none());
        assert_eq!(snapshot.load().unwrap().rules(), initial.rules.rules());
    }

    #[tokio::test]
    async fn an_unreachable_store_falls_back_to_the_snapshot() {
        let dir = TempDir::new();
        let snapshot = Snapshot::beside(&dir.path().join("latch.toml"));
        snapshot.save(&[Rule::new("saved", "/saved")]).await;
        let missing = store::FileRuleStore::new(dir.path().join("absent.toml"));
        let initial = initial(&missing, Some(&snapshot)).await.unwrap();
        assert_eq!(initial.rules.rules()[0].id, "saved");
        assert_eq!(initial.version, None);
        assert!(initial.problem.is_none());
    }

    #[tokio::test]
    async fn an_unreachable_store_without_snapshot_starts_empty_and_not_ready() {
        let dir = TempDir::new();
        let snapshot = Snapshot::beside(&dir.path().join("latch.toml"));
        let missing = store::FileRuleStore::new(dir.path().join("absent.toml"));
        let initial = initial(&missing, Some(&snapshot)).await.unwrap();
        assert!(initial.rules.is_empty());
        let problem = initial.problem.unwrap();
        assert!(problem.contains("absent.toml"), "{problem}");
        assert!(problem.contains("no usable snapshot"), "{problem}");
    }

    #[tokio::test]
    async fn invalid_rules_without_fallback_are_fatal_with_every_problem() {
        let dir = TempDir::new();
        let store = rules_file(dir.path(), "[[rule]]\nid = \"Bad\"\npattern = \"(\"\n");
        let problems = initial(&store, None).await.err().unwrap();
        assert!(problems.len() >= 2, "{problems:?}");
    }
}
