//! `/api/v1/shapes`: the request shapes every proxy instance saw, merged, each with a
//! suggested rule, for admins looking for the URLs to protect (docs/operations.md, "Finding the
//! URLs to protect").
//!
//! Each proxy publishes its own summary through the lock store every few seconds
//! (`proxy::shapes`); this reads the live ones and merges them ([`rules::merge_shapes`]).

use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::access::Admin;
use crate::error::{ApiError, Problem};
use crate::request::QueryParams;
use crate::ControlPlane;

/// A summary older than this belongs to an instance that stopped: it is left out.
const MAX_AGE: Duration = Duration::from_secs(60);
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
    let summaries = cp.locks.shapes(MAX_AGE).await?;
    let instances = summaries.len();
    let parsed = summaries.into_iter().filter_map(|(instance, summary)| {
        serde_json::from_str::<Vec<rules::ShapeEntry>>(&summary)
            .inspect_err(|e| tracing::warn!(%instance, error = %e, "unreadable shape summary"))
            .ok()
    });
    let merged = rules::merge_shapes(parsed);
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
