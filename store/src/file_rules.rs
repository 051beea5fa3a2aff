//! [`FileRuleStore`]: rules in a TOML file of `[[rule]]` tables, the embedded default.
//!
//! Every write re-reads the file, applies one change, validates the result and replaces the
//! file atomically (see [`crate::write_atomically`]), so a crash mid-write loses nothing and a
//! proxy polling the file never reads half of it. Writes are serialized within the process;
//! one control plane should own a given file. Comments in a file the control plane rewrites
//! are not kept: the file becomes the control plane's record.

use std::path::{Path, PathBuf};

use rules::Rule;
use serde::Serialize;
use tokio::sync::Mutex;

use crate::atomic_file::write_atomically;
use crate::rule_store::{
    check_write, id_mismatch, short_hash, stored, RuleList, RuleStore, RuleStoreError, StoredRule,
};

/// The first line of every file this store writes.
const HEADER: &str = "# Latch rules, maintained by the control plane. Hand edits are picked up; comments are not kept.\n";

/// Rules in one TOML file.
pub struct FileRuleStore {
    path: PathBuf,
    /// Serializes read-modify-write cycles so two concurrent writes cannot lose one another.
    write: Mutex<()>,
}

impl FileRuleStore {
    /// A store on `path`. Nothing is read until the first call: a missing or broken file is
    /// reported by each operation, so the caller decides whether that is fatal.
    pub fn new(path: impl Into<PathBuf>) -> FileRuleStore {
        FileRuleStore {
            path: path.into(),
            write: Mutex::new(()),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    async fn read_text(&self) -> Result<String, RuleStoreError> {
        tokio::fs::read_to_string(&self.path).await.map_err(|e| {
            let hint = if e.kind() == std::io::ErrorKind::NotFound {
                " (create an empty file to start without rules)"
            } else {
                ""
            };
            RuleStoreError::Unavailable(format!("cannot read {}: {e}{hint}", self.path.display()))
        })
    }

    async fn read_rules(&self) -> Result<(Vec<Rule>, String), RuleStoreError> {
        let text = self.read_text().await?;
        let version = short_hash(text.as_bytes());
        let rules = rules::parse_rules_toml(&text).map_err(RuleStoreError::Invalid)?;
        Ok((rules, version))
    }

    async fn write_rules(&self, rules: &[Rule]) -> Result<(), RuleStoreError> {
        let text = render_rules_toml(rules)?;
        let path = self.path.clone();
        tokio::task::spawn_blocking(move || write_atomically(&path, text.as_bytes()))
            .await
            .map_err(|e| RuleStoreError::Unavailable(format!("rule file writer failed: {e}")))?
            .map_err(|e| {
                RuleStoreError::Unavailable(format!("cannot write {}: {e}", self.path.display()))
            })
    }

    fn find<'a>(rules: &'a [Rule], id: &str) -> Result<(usize, &'a Rule), RuleStoreError> {
        rules
            .iter()
            .enumerate()
            .find(|(_, rule)| rule.id == id)
            .ok_or_else(|| RuleStoreError::NotFound(id.to_owned()))
    }

    fn check_etag(id: &str, current: &Rule, if_match: &str) -> Result<(), RuleStoreError> {
        let current_tag = crate::rule_store::rule_etag(current);
        if current_tag == if_match {
            Ok(())
        } else {
            Err(RuleStoreError::PreconditionFailed {
                id: id.to_owned(),
                current: current_tag,
            })
        }
    }
}

/// The file text for `rules`: a header comment, then one `[[rule]]` table per rule, in order.
/// [`rules::parse_rules_toml`] reads it back to the same rules.
pub fn render_rules_toml(rules: &[Rule]) -> Result<String, RuleStoreError> {
    #[derive(Serialize)]
    struct File<'a> {
        rule: &'a [Rule],
    }
    if rules.is_empty() {
        return Ok(HEADER.to_owned());
    }
    let body = toml::to_string(&File { rule: rules })
        .map_err(|e| RuleStoreError::Unavailable(format!("cannot render the rule file: {e}")))?;
    Ok(format!("{HEADER}\n{body}"))
}

#[async_trait::async_trait]
impl RuleStore for FileRuleStore {
    async fn list(&self) -> Result<RuleList, RuleStoreError> {
        let (rules, version) = self.read_rules().await?;
        Ok(RuleList {
            rules: rules.into_iter().map(stored).collect(),
            version,
        })
    }

    async fn version(&self) -> Result<String, RuleStoreError> {
        Ok(short_hash(self.read_text().await?.as_bytes()))
    }

    async fn get(&self, id: &str) -> Result<StoredRule, RuleStoreError> {
        let (rules, _) = self.read_rules().await?;
        let (_, rule) = Self::find(&rules, id)?;
        Ok(stored(rule.clone()))
    }

    async fn create(&self, rule: Rule) -> Result<StoredRule, RuleStoreError> {
        let _guard = self.write.lock().await;
        let (mut rules, _) = self.read_rules().await?;
        if rules.iter().any(|existing| existing.id == rule.id) {
            return Err(RuleStoreError::Conflict(rule.id));
        }
        rules.push(rule.clone());
        check_write(&rules, &rule)?;
        self.write_rules(&rules).await?;
        Ok(stored(rule))
    }

    async fn replace(
        &self,
        id: &str,
        rule: Rule,
        if_match: &str,
    ) -> Result<(StoredRule, StoredRule), RuleStoreError> {
        let _guard = self.write.lock().await;
        let (mut rules, _) = self.read_rules().await?;
        let (index, current) = Self::find(&rules, id)?;
        Self::check_etag(id, current, if_match)?;
        if let Some(err) = id_mismatch(id, &rule) {
            return Err(err);
        }
        let previous = std::mem::replace(&mut rules[index], rule.clone());
        check_write(&rules, &rule)?;
        self.write_rules(&rules).await?;
        Ok((stored(previous), stored(rule)))
    }

    async fn delete(&self, id: &str, if_match: &str) -> Result<StoredRule, RuleStoreError> {
        let _guard = self.write.lock().await;
        let (mut rules, _) = self.read_rules().await?;
        let (index, current) = Self::find(&rules, id)?;
        Self::check_etag(id, current, if_match)?;
        let removed = rules.remove(index);
        self.write_rules(&rules).await?;
        Ok(stored(removed))
    }

    fn describe(&self) -> String {
        format!("rule file {}", self.path.display())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rule_store::rule_etag;

    fn store() -> (tempfile::TempDir, FileRuleStore) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("rules.toml");
        std::fs::write(&path, "").unwrap();
        (dir, FileRuleStore::new(path))
    }

    fn full_rule() -> Rule {
        let mut rule = Rule::new("edit", "/docs/(?P<id>[0-9]+)/edit");
        rule.resource = Some("doc:{id}".into());
        rule.methods = Some(vec!["GET".into(), "POST".into()]);
        rule.mode = rules::Mode::Redirect;
        rule.redirect_to = Some("/docs/{id}".into());
        rule.owner = rules::Owner::Session;
        rule.lease_seconds = Some(60);
        rule.grace_seconds = Some(5);
        rule.takeover_roles = vec!["admin".into(), "editor".into()];
        rule.inject = false;
        rule.priority = -3;
        rule.case_insensitive = true;
        rule.enabled = false;
        rule
    }

    #[tokio::test]
    async fn every_field_survives_a_write_and_a_read() {
        let (_dir, store) = store();
        let rule = full_rule();
        store.create(rule.clone()).await.unwrap();
        let list = store.list().await.unwrap();
        assert_eq!(list.rules.len(), 1);
        assert_eq!(list.rules[0].rule, rule);
        assert_eq!(list.rules[0].etag, rule_etag(&rule));
    }

    #[tokio::test]
    async fn create_refuses_a_taken_id_and_an_invalid_rule() {
        let (_dir, store) = store();
        store.create(Rule::new("a", "/a")).await.unwrap();
        assert_eq!(
            store.create(Rule::new("a", "/other")).await,
            Err(RuleStoreError::Conflict("a".into()))
        );
        assert!(matches!(
            store.create(Rule::new("b", "(")).await,
            Err(RuleStoreError::Invalid(_))
        ));
        assert_eq!(store.list().await.unwrap().rules.len(), 1);
    }

    #[tokio::test]
    async fn replace_and_delete_need_the_current_etag() {
        let (_dir, store) = store();
        let first = store.create(Rule::new("a", "/a")).await.unwrap();
        let mut changed = first.rule.clone();
        changed.pattern = "/b".into();
        let (before, after) = store
            .replace("a", changed.clone(), &first.etag)
            .await
            .unwrap();
        assert_eq!(before, first);
        assert_eq!(after.rule, changed);

        let stale = store.replace("a", changed.clone(), &first.etag).await;
        assert_eq!(
            stale,
            Err(RuleStoreError::PreconditionFailed {
                id: "a".into(),
                current: after.etag.clone()
            })
        );
        assert!(matches!(
            store.delete("a", &first.etag).await,
            Err(RuleStoreError::PreconditionFailed { .. })
        ));
        assert_eq!(store.delete("a", &after.etag).await.unwrap(), after);
        assert_eq!(
            store.get("a").await,
            Err(RuleStoreError::NotFound("a".into()))
        );
    }

    #[tokio::test]
    async fn the_version_changes_with_every_write_and_only_then() {
        let (_dir, store) = store();
        let v0 = store.version().await.unwrap();
        assert_eq!(store.version().await.unwrap(), v0);
        let created = store.create(Rule::new("a", "/a")).await.unwrap();
        let v1 = store.version().await.unwrap();
        assert_ne!(v1, v0);
        assert_eq!(store.list().await.unwrap().version, v1);
        store.delete("a", &created.etag).await.unwrap();
        assert_ne!(store.version().await.unwrap(), v1);
    }

    #[tokio::test]
    async fn a_missing_file_is_unavailable_with_a_hint() {
        let dir = tempfile::tempdir().unwrap();
        let store = FileRuleStore::new(dir.path().join("absent.toml"));
        let Err(RuleStoreError::Unavailable(message)) = store.list().await else {
            panic!("a missing file was read");
        };
        assert!(message.contains("create an empty file"), "{message}");
    }

    #[tokio::test]
    async fn a_broken_file_reports_its_issues_and_is_not_overwritten() {
        let (_dir, store) = store();
        std::fs::write(store.path(), "[[rule]]\nid = \"a\"\n").unwrap();
        assert!(matches!(
            store.list().await,
            Err(RuleStoreError::Invalid(_))
        ));
        assert!(matches!(
            store.create(Rule::new("b", "/b")).await,
            Err(RuleStoreError::Invalid(_))
        ));
        assert_eq!(
            std::fs::read_to_string(store.path()).unwrap(),
            "[[rule]]\nid = \"a\"\n"
        );
    }

    #[tokio::test]
    async fn concurrent_creates_are_all_kept() {
        let (_dir, store) = store();
        let store = std::sync::Arc::new(store);
        let mut tasks = Vec::new();
        for i in 0..20 {
            let store = store.clone();
            tasks.push(tokio::spawn(async move {
                store
                    .create(Rule::new(format!("r{i}"), format!("/r{i}")))
                    .await
            }));
        }
        for task in tasks {
            task.await.unwrap().unwrap();
        }
        assert_eq!(store.list().await.unwrap().rules.len(), 20);
    }
}
