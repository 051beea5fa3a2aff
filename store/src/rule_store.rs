//! The [`RuleStore`] contract: where admin rules are kept, read by proxies and written by the
//! control plane.
//!
//! Writes are optimistic: every stored rule has an ETag derived from its content, and replace
//! and delete name the ETag the caller last saw, so two admins editing at once cannot silently
//! overwrite each other. Every write is validated before it is stored, against the rule alone
//! and against the whole set it would produce, so a store never holds a set the proxies would
//! refuse. Proxies only read: they poll [`RuleStore::version`], which is cheap, and reload the
//! whole list when it changes.
//!
//! This module knows the rule model and its validation, but nothing about HTTP or how a rule
//! is matched.

use rules::{Issue, Rule, RuleSet};
use sha2::{Digest, Sha256};

/// One rule as stored, with the ETag a later replace or delete must name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredRule {
    pub rule: Rule,
    /// Opaque and unquoted; HTTP callers add the quotes.
    pub etag: String,
}

/// Every rule, in store order, with the version they were read at.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RuleList {
    pub rules: Vec<StoredRule>,
    /// Changes whenever any rule changes; compare it with [`RuleStore::version`].
    pub version: String,
}

impl RuleList {
    /// The bare rules, for compiling a [`RuleSet`].
    pub fn into_rules(self) -> Vec<Rule> {
        self.rules.into_iter().map(|stored| stored.rule).collect()
    }
}

/// Why a rule store operation did not happen.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RuleStoreError {
    #[error("no rule has the id {0:?}")]
    NotFound(String),
    /// A create named an id that is already taken.
    #[error("a rule with the id {0:?} already exists")]
    Conflict(String),
    /// The caller's ETag is not the rule's current one: someone else changed it first.
    #[error("rule {id:?} was changed by someone else since it was read")]
    PreconditionFailed { id: String, current: String },
    /// The rule, or the set it would produce, does not validate. Every issue is listed.
    #[error("{} problem(s) with the rule", .0.len())]
    Invalid(Vec<Issue>),
    /// The backing file or server cannot be used right now; nothing was changed.
    #[error("rule store unavailable: {0}")]
    Unavailable(String),
}

/// Where rules live. Every method is safe to call concurrently from many tasks.
#[async_trait::async_trait]
pub trait RuleStore: Send + Sync + 'static {
    /// Every rule with its ETag, and the version it was read at. The version is read first, so
    /// a change racing with this call can only make the caller reload once more, never miss it.
    async fn list(&self) -> Result<RuleList, RuleStoreError>;

    /// Something that changes whenever any rule changes; cheap enough to ask every second.
    async fn version(&self) -> Result<String, RuleStoreError>;

    /// One rule with its ETag.
    async fn get(&self, id: &str) -> Result<StoredRule, RuleStoreError>;

    /// Stores a new rule. `Conflict` if the id is taken.
    async fn create(&self, rule: Rule) -> Result<StoredRule, RuleStoreError>;

    /// Replaces rule `id` if its current ETag is `if_match`. Returns the rule it replaced and
    /// the stored new one. `rule.id` must equal `id`: renaming is delete plus create.
    async fn replace(
        &self,
        id: &str,
        rule: Rule,
        if_match: &str,
    ) -> Result<(StoredRule, StoredRule), RuleStoreError>;

    /// Deletes rule `id` if its current ETag is `if_match`, returning what was deleted.
    async fn delete(&self, id: &str, if_match: &str) -> Result<StoredRule, RuleStoreError>;

    /// Where the rules are, for log lines and error messages (never includes credentials).
    fn describe(&self) -> String;
}

/// The ETag of a rule: a hash of its canonical form, so equal rules have equal tags wherever
/// and however they are stored, and any change to any field changes the tag.
pub fn rule_etag(rule: &Rule) -> String {
    // Serializing a struct emits fields in declaration order with defaults written out, which
    // is exactly a canonical form. A `Rule` always serializes; the fallback keeps this total.
    let canonical = serde_json::to_vec(rule).unwrap_or_default();
    format!("r{}", short_hash(&canonical))
}

/// The first 128 bits of SHA-256, in hex: plenty to tell versions apart, short enough to log.
pub(crate) fn short_hash(bytes: &[u8]) -> String {
    let digest = Sha256::digest(bytes);
    digest[..16].iter().map(|b| format!("{b:02x}")).collect()
}

pub(crate) fn stored(rule: Rule) -> StoredRule {
    let etag = rule_etag(&rule);
    StoredRule { rule, etag }
}

/// Checks a write before it is applied: the rule on its own, then the whole set it would
/// produce (which catches limits only the combined set can exceed).
pub(crate) fn check_write(rules_after: &[Rule], changed: &Rule) -> Result<(), RuleStoreError> {
    let own = rules::validate_rule(changed);
    if !own.is_empty() {
        return Err(RuleStoreError::Invalid(own));
    }
    match RuleSet::compile(rules_after.to_vec()) {
        Ok(_) => Ok(()),
        Err(issues) => Err(RuleStoreError::Invalid(issues)),
    }
}

/// The issue for a replace whose body names another id than the one being replaced.
pub(crate) fn id_mismatch(id: &str, rule: &Rule) -> Option<RuleStoreError> {
    (rule.id != id).then(|| {
        RuleStoreError::Invalid(vec![Issue {
            rule: Some(rule.id.clone()),
            index: None,
            field: "id".to_owned(),
            message: format!(
                "must be {id:?}, the id being replaced; to rename a rule, delete it and create a new one"
            ),
        }])
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn etag_follows_content_not_identity() {
        let a = Rule::new("edit", "/docs/(?P<id>\\d+)/edit");
        let same = Rule::new("edit", "/docs/(?P<id>\\d+)/edit");
        let mut changed = same.clone();
        changed.enabled = false;
        assert_eq!(rule_etag(&a), rule_etag(&same));
        assert_ne!(rule_etag(&a), rule_etag(&changed));
        assert!(rule_etag(&a).starts_with('r'));
        assert_eq!(rule_etag(&a).len(), 33);
    }

    #[test]
    fn check_write_reports_every_issue_of_the_rule() {
        let mut bad = Rule::new("Bad Id", "(");
        bad.lease_seconds = Some(1);
        let Err(RuleStoreError::Invalid(issues)) = check_write(&[bad.clone()], &bad) else {
            panic!("an invalid rule was accepted");
        };
        let fields: Vec<&str> = issues.iter().map(|i| i.field.as_str()).collect();
        assert!(fields.contains(&"id"), "{issues:?}");
        assert!(fields.contains(&"pattern"), "{issues:?}");
        assert!(fields.contains(&"lease_seconds"), "{issues:?}");
    }

    #[test]
    fn id_mismatch_names_the_id_field() {
        let rule = Rule::new("other", "/x");
        let Some(RuleStoreError::Invalid(issues)) = id_mismatch("edit", &rule) else {
            panic!("a renamed rule was accepted");
        };
        assert_eq!(issues[0].field, "id");
        assert!(id_mismatch("other", &rule).is_none());
    }
}
