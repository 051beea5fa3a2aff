//! `/api/v1/shapes`: the request shapes every proxy instance saw, merged, each with a
//! suggested rule, for admins looking for the URLs to protect (docs/operations.md, "Finding the
//! URLs to protect").
//!
//! Each proxy publishes its own summary through the lock store every few seconds
//! (`proxy::shapes`); this reads the live ones and merges them ([`rules::merge_shapes`]).
//! A summary also carries the instance's sampled requests, which the rule preview replays
//! (`preview_api`); [`Summaries::read`] reads both.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::Json;
use serde::{Deserialize, Serialize};
use store::LockStore;
use utoipa::{IntoParams, ToSchema};

use crate::access::Admin;
use crate::error::{ApiError, Problem};
use crate::request::QueryParams;
use crate::ControlPlane;

/// A summary older than this belongs to an instance that stopped: it is left out.
const MAX_AGE: Duration = Duration::from_secs(60);

/// What one instance publishes: its shapes and its sampled requests. An instance of an
/// earlier version publishes the shapes alone, as a list.
#[derive(Deserialize)]
#[serde(untagged)]
enum Publication {
    Both {
        shapes: Vec<rules::ShapeEntry>,
        requests: Vec<rules::SampledRequest>,
    },
    Shapes(Vec<rules::ShapeEntry>),
}

/// Every live instance's publication, read.
pub(crate) struct Summaries {
    /// How many instances' summaries were read.
    pub instances: usize,
    pub shapes: Vec<Vec<rules::ShapeEntry>>,
    pub requests: Vec<Vec<rules::SampledRequest>>,
}

impl Summaries {
    /// Reads the live summaries from the lock store; an unreadable one is logged and left out.
    pub async fn read(locks: &dyn LockStore) -> Result<Summaries, ApiError> {
        let published = locks.shapes(MAX_AGE).await?;
        let mut summaries = Summaries {
            instances: published.len(),
            shapes: Vec::with_capacity(published.len()),
            requests: Vec::with_capacity(published.len()),
        };
        for (instance, summary) in published {
            match serde_json::from_str::<Publication>(&summary) {
                Ok(Publication::Both { shapes, requests }) => {
                    summaries.shapes.push(shapes);
                    summaries.requests.push(requests);
                }
                Ok(Publication::Shapes(shapes)) => summaries.shapes.push(shapes),
                Err(e) => tracing::warn!(%instance, error = %e, "unreadable shape summary"),
            }
        }
        Ok(summaries)
    }
}
/// Most shapes one answer lists.
const MAX_LIMIT: usize = 500;

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ShapeFilter {
    /// Only shapes starting with this, e.g. `/admin/pages/`.
    pub prefix: Option<String>,
    /// How many, the most seen first: 1 to 500; default 200. Read as text so that a bad value
    /// is a 422 naming the field.
    #[param(value_type = Option<u32>, minimum = 1, maximum = 500)]
    pub limit: Option<String>,
}

/// A rule for a shape.
#[derive(Serialize, ToSchema)]
pub struct Suggestion {
    /// A rule pattern with typed captures, e.g. `/admin/pages/{id:int}/edit/`.
    pub pattern: String,
    /// A lock key template, e.g. `pages:{id}`.
    pub resource: String,
}

// The document's `maxItems` of `related`.
const _: () = assert!(rules::MAX_RELATED == 16);

/// A merged shape, as the proxies publish it, with the rule suggested for it and the other
/// paths of the same object, offered for the same resource.
#[derive(Serialize, ToSchema)]
pub struct ShapeView {
    #[serde(flatten)]
    pub entry: rules::ShapeEntry,
    pub suggestion: Suggestion,
    /// The other paths seen of the object the suggestion's first capture names (shapes that
    /// agree with this one up to and including its first placeholder), writes first, at most
    /// 16. A rule for each, with the suggestion's `resource`, makes them one lock.
    #[schema(max_items = 16)]
    pub related: Vec<rules::RelatedShape>,
}

#[derive(Serialize, ToSchema)]
pub struct ShapeList {
    /// How many proxy instances' summaries were merged.
    pub instances: usize,
    pub shapes: Vec<ShapeView>,
}

/// List the request shapes the proxies saw, merged, with a suggested rule each and the other
/// paths of the same object.
#[utoipa::path(get, path = "/api/v1/shapes", tag = "shapes", operation_id = "listShapes",
    params(ShapeFilter),
    responses(
        (status = 200, description = "The shapes, most seen first", body = ShapeList),
        (status = 400, description = "The query string does not decode (a parameter given twice, say)", body = Problem),
        (status = 422, description = "`limit` is not a whole number from 1 to 500", body = Problem),
        (status = 503, description = "The lock store did not answer", body = Problem)))]
pub async fn list(
    State(cp): State<Arc<ControlPlane>>,
    _admin: Admin,
    QueryParams(filter): QueryParams<ShapeFilter>,
) -> Result<Json<ShapeList>, ApiError> {
    let limit = match filter.limit.as_deref() {
        None => 200,
        Some(text) => match text.parse::<usize>() {
            Ok(n) if (1..=MAX_LIMIT).contains(&n) => n,
            _ => {
                return Err(ApiError::field(
                    "limit",
                    format!("must be a whole number from 1 to {MAX_LIMIT}"),
                ))
            }
        },
    };
    let prefix = filter.prefix.unwrap_or_default();
    let Summaries {
        instances, shapes, ..
    } = Summaries::read(cp.locks.as_ref()).await?;
    let merged = rules::merge_shapes(shapes);
    let groups = rules::RelatedShapes::new(&merged);
    let shapes = merged
        .into_iter()
        .filter(|entry| entry.shape.starts_with(&prefix))
        .take(limit)
        .map(|entry| {
            let (pattern, resource) = rules::suggest_rule(&entry.shape);
            ShapeView {
                related: groups.of(&entry.shape),
                entry,
                suggestion: Suggestion { pattern, resource },
            }
        })
        .collect();
    Ok(Json(ShapeList { instances, shapes }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_publication_is_read_with_or_without_its_requests() {
        let entry = r#"{"method":"GET","shape":"/a/{int}","count":8,"first_seen":1,"last_seen":2,"kinds":["page"],"writes":false,"rule":null,"suggestion":{}}"#;
        let request =
            r#"{"at":2,"app":null,"method":"GET","path":"/a/1","kind":"page","user":"alice"}"#;
        let both = format!(r#"{{"shapes":[{entry}],"requests":[{request}]}}"#);
        match serde_json::from_str::<Publication>(&both) {
            Ok(Publication::Both { shapes, requests }) => {
                assert_eq!(shapes[0].shape, "/a/{int}");
                assert_eq!(requests[0].user.as_deref(), Some("alice"));
            }
            _ => panic!("not read as both: {both}"),
        }
        let earlier = format!("[{entry}]");
        assert!(matches!(
            serde_json::from_str::<Publication>(&earlier),
            Ok(Publication::Shapes(shapes)) if shapes.len() == 1
        ));
    }
}
