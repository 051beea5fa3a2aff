//! [`MongoEventLog`]: the audit trail in a MongoDB `events` collection, shared by every
//! control plane of a fleet.
//!
//! An event's id is its `_id`, so recording the same lock event from two control planes
//! stores it once. Indexes follow the queries the API offers: by resource, by user, and
//! everything by time.

use futures::TryStreamExt;
use mongodb::bson::{doc, Bson, Document};
use mongodb::{Collection, IndexModel};
use tokio::sync::{broadcast, OnceCell};

use crate::audit::{AuditEvent, EventLog, EventLogError, EventQuery, FEED_CAPACITY};
use crate::mongo::{is_duplicate_key, Mongo};

const EVENTS: &str = "events";

pub struct MongoEventLog {
    mongo: Mongo,
    events: Collection<Document>,
    indexes: OnceCell<()>,
    feed: broadcast::Sender<AuditEvent>,
}

impl MongoEventLog {
    pub fn new(mongo: Mongo) -> MongoEventLog {
        MongoEventLog {
            events: mongo.db.collection(EVENTS),
            mongo,
            indexes: OnceCell::new(),
            feed: broadcast::channel(FEED_CAPACITY).0,
        }
    }

    fn unavailable(&self, e: &mongodb::error::Error) -> EventLogError {
        EventLogError::Unavailable(self.mongo.unavailable(e))
    }

    async fn ensure_indexes(&self) -> Result<(), EventLogError> {
        self.indexes
            .get_or_try_init(|| async {
                let models = [
                    doc! { "resource": 1, "at": -1 },
                    doc! { "user": 1, "at": -1 },
                    doc! { "at": -1 },
                ]
                .into_iter()
                .map(|keys| IndexModel::builder().keys(keys).build());
                self.events
                    .create_indexes(models)
                    .await
                    .map(drop)
                    .map_err(|e| self.unavailable(&e))
            })
            .await
            .map(drop)
    }
}

fn to_document(event: &AuditEvent) -> Result<Document, EventLogError> {
    let mut doc = mongodb::bson::to_document(event)
        .map_err(|e| EventLogError::Unavailable(format!("cannot encode an audit event: {e}")))?;
    if let Some(id) = doc.remove("id") {
        doc.insert("_id", id);
    }
    Ok(doc)
}

fn from_document(mut doc: Document) -> Option<AuditEvent> {
    if let Some(id) = doc.remove("_id") {
        doc.insert("id", id);
    }
    // `at` is written as Int64; a document edited by hand may hold another number type.
    if let Some(Bson::Int32(at)) = doc.get("at").cloned() {
        doc.insert("at", i64::from(at));
    }
    mongodb::bson::from_document(doc).ok()
}

#[async_trait::async_trait]
impl EventLog for MongoEventLog {
    async fn append(&self, event: AuditEvent) -> Result<(), EventLogError> {
        self.ensure_indexes().await?;
        match self.events.insert_one(to_document(&event)?).await {
            Ok(_) => {}
            // Another control plane recorded the same lock event first.
            Err(e) if is_duplicate_key(&e) => {}
            Err(e) => return Err(self.unavailable(&e)),
        }
        let _ = self.feed.send(event);
        Ok(())
    }

    async fn query(&self, query: &EventQuery) -> Result<Vec<AuditEvent>, EventLogError> {
        let mut filter = Document::new();
        if let Some(resource) = &query.resource {
            filter.insert("resource", resource.as_str());
        }
        if let Some(user) = &query.user {
            filter.insert("user", user.as_str());
        }
        if let Some(kind) = query.kind {
            filter.insert("kind", kind.as_str());
        }
        if let Some(before) = &query.before {
            // Ids start with the zero-padded time, so "older than this id" is a string bound.
            filter.insert("_id", doc! { "$lt": before.as_str() });
        }
        let limit = i64::try_from(query.effective_limit()).unwrap_or(i64::MAX);
        let docs: Vec<Document> = self
            .events
            .find(filter)
            .sort(doc! { "at": -1, "_id": -1 })
            .limit(limit)
            .await
            .map_err(|e| self.unavailable(&e))?
            .try_collect()
            .await
            .map_err(|e| self.unavailable(&e))?;
        Ok(docs.into_iter().filter_map(from_document).collect())
    }

    fn subscribe(&self) -> broadcast::Receiver<AuditEvent> {
        self.feed.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::AuditKind;

    #[test]
    fn the_event_id_is_the_document_id() {
        let mut event = AuditEvent::rule_change(
            AuditKind::RuleCreated,
            42,
            "root",
            "edit",
            None,
            Some(&rules::Rule::new("edit", "/x")),
        );
        event.resource = Some("doc:1".into());
        let doc = to_document(&event).unwrap();
        assert_eq!(doc.get_str("_id").unwrap(), event.id);
        assert!(!doc.contains_key("id"));
        assert_eq!(from_document(doc), Some(event));
    }
}
