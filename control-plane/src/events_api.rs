//! `/api/v1/events`: the audit trail, as pages and as a live Server-Sent Events stream.
//!
//! Pages are newest first; `next` is the cursor for the following page (`before=`). The
//! stream carries events as this control plane records them, with the same filters, and
//! tells a client that fell behind to re-read a page instead of silently skipping.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::Json;
use futures::stream::{self, Stream};
use serde::{Deserialize, Serialize};
use store::{AuditEvent, AuditKind, EventQuery, MAX_QUERY_LIMIT};
use tokio::sync::broadcast::error::RecvError;
use utoipa::{IntoParams, ToSchema};

use crate::access::Admin;
use crate::error::{ApiError, FieldError, Problem};
use crate::locks_api::HolderView;
use crate::request::QueryParams;
use crate::ControlPlane;

/// Filters, all optional. An empty `resource`, `user` or `before` is no filter, as a form
/// left blank sends it.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct EventFilter {
    /// Only this lock key.
    pub resource: Option<String>,
    /// Only events this user caused.
    pub user: Option<String>,
    /// Only this kind.
    #[param(schema_with = kind_schema)]
    pub kind: Option<String>,
    /// Page size, 1 to 500; default 100. Read as text so that a bad value is a 422 naming
    /// the field, like every other bad filter.
    #[param(value_type = Option<u32>, minimum = 1, maximum = 500)]
    pub limit: Option<String>,
    /// Cursor: only events older than the one with this id (`next` of the previous page).
    pub before: Option<String>,
}

/// `kind`: one of the kinds' names, from [`AuditKind::ALL`].
pub(crate) fn kind_schema() -> utoipa::openapi::schema::Object {
    utoipa::openapi::schema::ObjectBuilder::new()
        .schema_type(utoipa::openapi::schema::Type::String)
        .enum_values(Some(AuditKind::ALL.iter().map(|k| k.as_str())))
        .build()
}

impl EventFilter {
    fn into_query(self) -> Result<EventQuery, ApiError> {
        let mut errors = Vec::new();
        let non_empty = |v: Option<String>| v.filter(|s| !s.is_empty());
        let kind = match self.kind {
            None => None,
            Some(name) => match AuditKind::parse(&name) {
                Some(kind) => Some(kind),
                None => {
                    let known: Vec<&str> = AuditKind::ALL.iter().map(|k| k.as_str()).collect();
                    errors.push(FieldError::new(
                        "kind",
                        format!("unknown kind {name:?}; known kinds: {}", known.join(", ")),
                    ));
                    None
                }
            },
        };
        let limit = match self.limit {
            None => None,
            Some(text) => match text.parse::<usize>() {
                Ok(n) if (1..=MAX_QUERY_LIMIT).contains(&n) => Some(n),
                _ => {
                    errors.push(FieldError::new(
                        "limit",
                        format!("must be a whole number from 1 to {MAX_QUERY_LIMIT}"),
                    ));
                    None
                }
            },
        };
        if !errors.is_empty() {
            return Err(ApiError::Unprocessable(errors));
        }
        Ok(EventQuery {
            resource: non_empty(self.resource),
            user: non_empty(self.user),
            kind,
            limit,
            before: non_empty(self.before),
        })
    }
}

/// An audit event as the API shows it. See `store::AuditEvent` for each field; fields that do
/// not apply to an event's kind are left out.
#[derive(Serialize, ToSchema)]
#[schema(as = AuditEvent)]
pub struct AuditEventDoc {
    pub id: String,
    /// Unix milliseconds.
    pub at: u64,
    #[schema(schema_with = kind_schema)]
    pub kind: String,
    pub resource: Option<String>,
    /// Who acted.
    pub user: Option<String>,
    /// Who holds the lock after the event.
    pub holder: Option<HolderView>,
    /// Who held it before, for releases, take-overs and force releases.
    pub previous_holder: Option<HolderView>,
    pub rule: Option<String>,
    pub instance: Option<String>,
    pub reason: Option<String>,
    /// For rule changes: `{"before", "after"}`.
    #[schema(value_type = Option<Object>)]
    pub detail: Option<serde_json::Value>,
}

/// One event of the live stream, as an `EventSource` reads it (the schema is
/// [`stream_event_schema`]).
pub struct StreamEvent;

impl utoipa::PartialSchema for StreamEvent {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        // utoipa has no builder for `contentSchema`; the schema is written out as JSON.
        serde_json::from_value(stream_event_schema()).unwrap_or_default()
    }
}

impl utoipa::ToSchema for StreamEvent {}

/// `audit` events carry an [`AuditEventDoc`] as JSON, `lagged` events how many were skipped.
pub fn stream_event_schema() -> serde_json::Value {
    serde_json::json!({
        "oneOf": [
            {
                "type": "object",
                "required": ["event", "id", "data"],
                "properties": {
                    "event": {"const": "audit"},
                    "id": {"type": "string"},
                    "data": {
                        "type": "string",
                        "contentMediaType": "application/json",
                        "contentSchema": {"$ref": "#/components/schemas/AuditEvent"}
                    }
                }
            },
            {
                "type": "object",
                "required": ["event", "data"],
                "properties": {
                    "event": {"const": "lagged"},
                    "data": {"type": "string", "pattern": "^[0-9]+$"}
                }
            }
        ]
    })
}

#[derive(Serialize, ToSchema)]
pub struct EventPage {
    #[schema(value_type = Vec<AuditEventDoc>)]
    pub events: Vec<AuditEvent>,
    /// Pass as `before` for the next (older) page; `null` on the last page.
    pub next: Option<String>,
}

/// Read a page of the audit trail, newest first.
#[utoipa::path(get, path = "/api/v1/events", tag = "events", operation_id = "listEvents",
    params(EventFilter),
    responses(
        (status = 200, description = "One page of the trail, newest first", body = EventPage),
        (status = 400, description = "The query string does not decode (a parameter given twice, say)", body = Problem),
        (status = 422, description = "A filter is not valid; errors names each", body = Problem),
        (status = 503, description = "The audit trail did not answer", body = Problem)))]
pub async fn list(
    State(cp): State<Arc<ControlPlane>>,
    _admin: Admin,
    QueryParams(filter): QueryParams<EventFilter>,
) -> Result<Json<EventPage>, ApiError> {
    let query = filter.into_query()?;
    let events = cp.events.query(&query).await?;
    let next = (events.len() == query.effective_limit())
        .then(|| events.last().map(|e| e.id.clone()))
        .flatten();
    Ok(Json(EventPage { events, next }))
}

/// Follow the audit trail live, as server-sent events.
#[utoipa::path(get, path = "/api/v1/events/stream", tag = "events", operation_id = "streamEvents",
    params(EventFilter),
    responses(
        (status = 200, description = "Server-sent events, open until the client leaves: `audit` events with an AuditEvent as data; `lagged`, with the number skipped, when events were skipped", content_type = "text/event-stream", body = StreamEvent),
        (status = 400, description = "The query string does not decode (a parameter given twice, say)", body = Problem),
        (status = 422, description = "A filter is not valid; errors names each", body = Problem)))]
pub async fn stream(
    State(cp): State<Arc<ControlPlane>>,
    _admin: Admin,
    QueryParams(filter): QueryParams<EventFilter>,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    let query = filter.into_query()?;
    let receiver = cp.events.subscribe();
    let events = stream::unfold((receiver, query), |(mut receiver, query)| async move {
        loop {
            match receiver.recv().await {
                Ok(event) if query.matches(&event) => {
                    let sse = Event::default()
                        .event("audit")
                        .id(event.id.clone())
                        .json_data(&event)
                        .unwrap_or_else(|_| Event::default().event("audit"));
                    return Some((Ok(sse), (receiver, query)));
                }
                Ok(_) => continue,
                Err(RecvError::Lagged(skipped)) => {
                    let sse = Event::default().event("lagged").data(skipped.to_string());
                    return Some((Ok(sse), (receiver, query)));
                }
                Err(RecvError::Closed) => return None,
            }
        }
    });
    Ok(Sse::new(events).keep_alive(KeepAlive::new().interval(Duration::from_secs(15))))
}
