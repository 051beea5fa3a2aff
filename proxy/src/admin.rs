//! The proxy's operational endpoints on `admin.listen`: `/healthz`, `/readyz`, `/metrics`, and
//! `/shapes`, the request shapes this instance saw ([`crate::shapes`]).
//!
//! Kept off the proxy port so that a scraper or a load balancer's probe never competes with,
//! or leaks into, the protected app's traffic.

use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;

use crate::state::Latch;

pub fn router(latch: Arc<Latch>) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/shapes", get(shapes))
        .with_state(latch)
}

/// Ready when the lock store answers within its timeout, the rules are loaded and, when keys
/// are fetched from the identity provider, a fetch has succeeded. A provider that stopped
/// answering later does not make the instance unready (the last good keys still verify);
/// the `auth_keys` detail says so.
async fn readyz(State(latch): State<Arc<Latch>>) -> impl IntoResponse {
    let mut problems = Vec::new();
    let keys = latch.verifier.provider().map(|provider| provider.status());
    if let Err(e) = latch.store_op("ping", latch.store.ping()).await {
        problems.push(format!("lock store: {e}"));
    }
    if let Some(p) = latch.rules_problem.lock().ok().and_then(|p| p.clone()) {
        problems.push(format!("rules: {p}"));
    }
    if let Some(status) = keys.as_ref().filter(|status| status.keys == 0) {
        let why = status
            .last_error
            .as_deref()
            .unwrap_or("the first fetch has not finished");
        problems.push(format!(
            "auth keys: none fetched yet from {}: {why}",
            status.source
        ));
    }
    let mut body = if problems.is_empty() {
        json!({ "ready": true })
    } else {
        json!({ "ready": false, "problems": problems })
    };
    if let Some(status) = keys {
        body["auth_keys"] = json!({
            "source": status.source,
            "keys": status.keys,
            "age_seconds": status.age.map(|age| age.as_secs()),
            "fetches": status.fetches,
            "failures": status.failures,
            "last_error": status.last_error,
        });
    }
    let code = if problems.is_empty() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, Json(body))
}

async fn metrics(State(latch): State<Arc<Latch>>) -> impl IntoResponse {
    if let Ok(locks) = latch.store_op("list", latch.store.list()).await {
        latch.metrics.locks.set(locks.len() as i64);
    }
    latch
        .metrics
        .banner_sockets
        .set(latch.hub.socket_count() as i64);
    if let Some(provider) = latch.verifier.provider() {
        latch.metrics.auth_keys.sample(&provider.status());
    }
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        latch.metrics.render(),
    )
}

#[derive(serde::Deserialize)]
struct ShapeQuery {
    /// Only shapes starting with this, e.g. `/admin/pages/`.
    #[serde(default)]
    prefix: String,
    #[serde(default = "default_limit")]
    limit: usize,
}

fn default_limit() -> usize {
    200
}

/// `GET /shapes?prefix=&limit=`: the shapes seen most first, each with a suggested rule.
async fn shapes(
    State(latch): State<Arc<Latch>>,
    Query(query): Query<ShapeQuery>,
) -> impl IntoResponse {
    Json(
        latch
            .shapes
            .report(&query.prefix, query.limit.min(crate::shapes::MAX_SHAPES)),
    )
}
