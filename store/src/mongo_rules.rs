//! [`MongoRuleStore`]: rules as documents in a MongoDB `rules` collection, for fleets of
//! proxies.
//!
//! Each rule is one document with the rule's own fields plus `rev`, a per-document counter
//! that makes replace and delete compare-and-swap operations: the caller's ETag is checked
//! against the content, then the write is filtered on the `rev` that content had, so a write
//! racing in between is detected rather than overwritten. A unique index on `id` turns a
//! second create of the same id into a conflict.
//!
//! The document `{_id: "rules_version", v}` in `meta` is bumped with `$inc` after every
//! change; proxies poll it and reload only when it moves. Standalone MongoDB has no
//! multi-document transactions, so the bump follows the write: a bump that fails is retried
//! by the next operation through this handle, and [`MongoRuleStore::bump_version`] at
//! control-plane start covers a crash between the two.

use std::sync::atomic::{AtomicBool, Ordering};

use futures::TryStreamExt;
use mongodb::bson::{doc, Bson, Document};
use mongodb::options::IndexOptions;
use mongodb::{Collection, IndexModel};
use rules::{Issue, Rule};
use tokio::sync::OnceCell;

use crate::mongo::{is_duplicate_key, Mongo};
use crate::rule_store::{
    check_write, id_mismatch, rule_etag, stored, RuleList, RuleStore, RuleStoreError, StoredRule,
};

const RULES: &str = "rules";
const META: &str = "meta";
const VERSION_ID: &str = "rules_version";

pub struct MongoRuleStore {
    mongo: Mongo,
    rules: Collection<Document>,
    meta: Collection<Document>,
    indexes: OnceCell<()>,
    /// Set when a change was stored but its version bump failed.
    bump_owed: AtomicBool,
}

impl MongoRuleStore {
    pub fn new(mongo: Mongo) -> MongoRuleStore {
        MongoRuleStore {
            rules: mongo.db.collection(RULES),
            meta: mongo.db.collection(META),
            mongo,
            indexes: OnceCell::new(),
            bump_owed: AtomicBool::new(false),
        }
    }

    /// Moves the version on without changing a rule, so every proxy reloads once. The control
    /// plane calls it at start: a change whose bump was lost in a crash becomes visible.
    pub async fn bump_version(&self) -> Result<(), RuleStoreError> {
        self.meta
            .update_one(doc! { "_id": VERSION_ID }, doc! { "$inc": { "v": 1_i64 } })
            .upsert(true)
            .await
            .map_err(|e| self.unavailable(&e))?;
        self.bump_owed.store(false, Ordering::Relaxed);
        Ok(())
    }

    /// Bumps after a stored change. The change already happened, so a failure here is not
    /// the caller's failure: it is remembered and retried by the next operation.
    async fn bump_after_change(&self) {
        if let Err(e) = self.bump_version().await {
            tracing::warn!(error = %e, "rule stored but its version bump failed; retrying on the next operation");
            self.bump_owed.store(true, Ordering::Relaxed);
        }
    }

    async fn settle(&self) -> Result<(), RuleStoreError> {
        if self.bump_owed.load(Ordering::Relaxed) {
            self.bump_version().await?;
        }
        Ok(())
    }

    async fn ensure_indexes(&self) -> Result<(), RuleStoreError> {
        self.indexes
            .get_or_try_init(|| async {
                let unique = IndexModel::builder()
                    .keys(doc! { "id": 1 })
                    .options(IndexOptions::builder().unique(true).build())
                    .build();
                self.rules
                    .create_index(unique)
                    .await
                    .map(drop)
                    .map_err(|e| self.unavailable(&e))
            })
            .await
            .map(drop)
    }

    fn unavailable(&self, e: &mongodb::error::Error) -> RuleStoreError {
        RuleStoreError::Unavailable(self.mongo.unavailable(e))
    }

    async fn all_documents(&self) -> Result<Vec<(Rule, i64)>, RuleStoreError> {
        let docs: Vec<Document> = self
            .rules
            .find(doc! {})
            .sort(doc! { "id": 1 })
            .await
            .map_err(|e| self.unavailable(&e))?
            .try_collect()
            .await
            .map_err(|e| self.unavailable(&e))?;
        let mut rules = Vec::with_capacity(docs.len());
        let mut issues = Vec::new();
        for (index, doc) in docs.into_iter().enumerate() {
            match from_document(doc) {
                Ok(pair) => rules.push(pair),
                Err(issue) => issues.push(Issue {
                    index: Some(index),
                    ..issue
                }),
            }
        }
        if issues.is_empty() {
            Ok(rules)
        } else {
            Err(RuleStoreError::Invalid(issues))
        }
    }

    async fn find(&self, id: &str) -> Result<(Rule, i64), RuleStoreError> {
        let doc = self
            .rules
            .find_one(doc! { "id": id })
            .await
            .map_err(|e| self.unavailable(&e))?
            .ok_or_else(|| RuleStoreError::NotFound(id.to_owned()))?;
        from_document(doc).map_err(|issue| RuleStoreError::Invalid(vec![issue]))
    }

    /// Finds rule `id` and checks the caller's ETag against its content.
    async fn find_matching(&self, id: &str, if_match: &str) -> Result<(Rule, i64), RuleStoreError> {
        let (rule, rev) = self.find(id).await?;
        let current = rule_etag(&rule);
        if current != if_match {
            return Err(RuleStoreError::PreconditionFailed {
                id: id.to_owned(),
                current,
            });
        }
        Ok((rule, rev))
    }

    /// After a compare-and-swap matched nothing: someone changed or deleted the rule between
    /// our read and our write. Report what is there now.
    async fn lost_race(&self, id: &str) -> RuleStoreError {
        match self.find(id).await {
            Ok((rule, _)) => RuleStoreError::PreconditionFailed {
                id: id.to_owned(),
                current: rule_etag(&rule),
            },
            Err(e) => e,
        }
    }
}

/// The stored document for `rule` at revision `rev`.
fn to_document(rule: &Rule, rev: i64) -> Result<Document, RuleStoreError> {
    let mut doc = mongodb::bson::to_document(rule).map_err(|e| {
        RuleStoreError::Unavailable(format!("cannot encode rule {:?}: {e}", rule.id))
    })?;
    doc.insert("rev", rev);
    Ok(doc)
}

/// A stored document back into a rule and its revision. A document someone edited by hand
/// into something that is not a rule is reported as an issue on that rule.
fn from_document(mut doc: Document) -> Result<(Rule, i64), Issue> {
    doc.remove("_id");
    let rev = match doc.remove("rev") {
        Some(Bson::Int64(rev)) => rev,
        Some(Bson::Int32(rev)) => i64::from(rev),
        _ => 0,
    };
    let id = doc.get_str("id").ok().map(str::to_owned);
    mongodb::bson::from_document::<Rule>(doc)
        .map(|rule| (rule, rev))
        .map_err(|e| Issue {
            rule: id,
            index: None,
            field: String::new(),
            message: format!("stored document is not a valid rule: {e}"),
        })
}

#[async_trait::async_trait]
impl RuleStore for MongoRuleStore {
    async fn list(&self) -> Result<RuleList, RuleStoreError> {
        self.settle().await?;
        let version = self.version().await?;
        let rules = self
            .all_documents()
            .await?
            .into_iter()
            .map(|(rule, _)| stored(rule))
            .collect();
        Ok(RuleList { rules, version })
    }

    async fn version(&self) -> Result<String, RuleStoreError> {
        let doc = self
            .meta
            .find_one(doc! { "_id": VERSION_ID })
            .await
            .map_err(|e| self.unavailable(&e))?;
        let v = match doc.as_ref().and_then(|d| d.get("v")) {
            Some(Bson::Int64(v)) => *v,
            Some(Bson::Int32(v)) => i64::from(*v),
            Some(Bson::Double(v)) => *v as i64,
            _ => 0,
        };
        Ok(format!("m{v}"))
    }

    async fn get(&self, id: &str) -> Result<StoredRule, RuleStoreError> {
        self.find(id).await.map(|(rule, _)| stored(rule))
    }

    async fn create(&self, rule: Rule) -> Result<StoredRule, RuleStoreError> {
        self.ensure_indexes().await?;
        self.settle().await?;
        let mut all: Vec<Rule> = self
            .all_documents()
            .await?
            .into_iter()
            .map(|(rule, _)| rule)
            .collect();
        if all.iter().any(|existing| existing.id == rule.id) {
            return Err(RuleStoreError::Conflict(rule.id));
        }
        all.push(rule.clone());
        check_write(&all, &rule)?;
        match self.rules.insert_one(to_document(&rule, 1)?).await {
            Ok(_) => {}
            Err(e) if is_duplicate_key(&e) => return Err(RuleStoreError::Conflict(rule.id)),
            Err(e) => return Err(self.unavailable(&e)),
        }
        self.bump_after_change().await;
        Ok(stored(rule))
    }

    async fn replace(
        &self,
        id: &str,
        rule: Rule,
        if_match: &str,
    ) -> Result<(StoredRule, StoredRule), RuleStoreError> {
        self.settle().await?;
        let (previous, rev) = self.find_matching(id, if_match).await?;
        if let Some(err) = id_mismatch(id, &rule) {
            return Err(err);
        }
        let all: Vec<Rule> = self
            .all_documents()
            .await?
            .into_iter()
            .map(|(existing, _)| {
                if existing.id == id {
                    rule.clone()
                } else {
                    existing
                }
            })
            .collect();
        check_write(&all, &rule)?;
        let result = self
            .rules
            .replace_one(doc! { "id": id, "rev": rev }, to_document(&rule, rev + 1)?)
            .await
            .map_err(|e| self.unavailable(&e))?;
        if result.matched_count == 0 {
            return Err(self.lost_race(id).await);
        }
        self.bump_after_change().await;
        Ok((stored(previous), stored(rule)))
    }

    async fn delete(&self, id: &str, if_match: &str) -> Result<StoredRule, RuleStoreError> {
        self.settle().await?;
        let (rule, rev) = self.find_matching(id, if_match).await?;
        let result = self
            .rules
            .delete_one(doc! { "id": id, "rev": rev })
            .await
            .map_err(|e| self.unavailable(&e))?;
        if result.deleted_count == 0 {
            return Err(self.lost_race(id).await);
        }
        self.bump_after_change().await;
        Ok(stored(rule))
    }

    fn describe(&self) -> String {
        format!("MongoDB rule store at {}", self.mongo.shown)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documents_round_trip_every_field() {
        let mut rule = Rule::new("edit", "/docs/(?P<id>[0-9]+)/edit");
        rule.resource = Some("doc:{id}".into());
        rule.methods = Some(vec!["GET".into()]);
        rule.lease_seconds = Some(60);
        rule.grace_seconds = Some(5);
        rule.priority = -2;
        rule.owner = rules::Owner::Session;
        let mut doc = to_document(&rule, 7).unwrap();
        doc.insert("_id", mongodb::bson::oid::ObjectId::new());
        assert_eq!(from_document(doc).unwrap(), (rule, 7));
    }

    #[test]
    fn a_hand_edited_document_is_an_issue_not_a_panic() {
        let doc = doc! { "id": "x", "pattern": "/x", "colour": "red" };
        let issue = from_document(doc).unwrap_err();
        assert_eq!(issue.rule.as_deref(), Some("x"));
        assert!(issue.message.contains("colour"), "{}", issue.message);
    }
}
