//! `/api/v1/rules`: list, read, create, replace and delete rules, plus validation and path
//! matching against the stored rules.
//!
//! Responses carry the rule's ETag; replace and delete require it in `If-Match` (428 without,
//! 412 when someone else changed the rule first), so concurrent admins never silently
//! overwrite each other. Every change is written to the audit trail with who made it and the
//! rule before and after.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use store::{AuditEvent, AuditKind};
use utoipa::ToSchema;

use crate::access::Admin;
use crate::error::{ApiError, FieldError, Problem};
use crate::rule_json::{json_body, rule_from_json, RuleDto, RuleView};
use crate::{now_millis, ControlPlane};

/// Every rule, in store order.
#[derive(Serialize, ToSchema)]
pub struct RuleListView {
    /// Changes whenever any rule changes; also sent as the response's ETag.
    pub version: String,
    pub rules: Vec<RuleView>,
}

/// The outcome of validating a rule.
#[derive(Serialize, Deserialize, ToSchema)]
pub struct Validation {
    pub valid: bool,
    /// Every problem, each tied to its field.
    pub errors: Vec<FieldError>,
}

/// A request to match.
#[derive(Deserialize, ToSchema)]
pub struct MatchRequest {
    /// Default `GET`.
    #[serde(default)]
    pub method: Option<String>,
    /// The request path, as a browser would send it (it is normalized first).
    pub path: String,
}

/// What the proxy would do with a request.
#[derive(Serialize, ToSchema)]
pub struct MatchResult {
    pub method: String,
    /// The path after normalization: what rules are matched against and what the app sees.
    pub normalized_path: String,
    pub matched: bool,
    /// The rule that applies; `null` when none does (the request passes through).
    pub rule: Option<RuleDto>,
    /// The lock key the request would claim.
    pub resource: Option<String>,
    /// Where a `redirect` rule would send a blocked request.
    pub redirect_to: Option<String>,
}

fn etag_header(tag: &str) -> Option<HeaderValue> {
    HeaderValue::from_str(&format!("\"{tag}\"")).ok()
}

fn with_etag(status: StatusCode, view: RuleView) -> Response {
    let tag = etag_header(&view.etag);
    let mut response = (status, Json(view)).into_response();
    if let Some(tag) = tag {
        response.headers_mut().insert(header::ETAG, tag);
    }
    response
}

/// The entity tag named by `If-Match`, or the reason there is none. `*` stands for the
/// rule's current tag, as HTTP defines it.
fn if_match(headers: &HeaderMap) -> Result<IfMatch, ApiError> {
    let value = headers
        .get(header::IF_MATCH)
        .ok_or(ApiError::PreconditionRequired)?
        .to_str()
        .map_err(|_| ApiError::BadRequest("If-Match is not readable text.".into()))?
        .trim();
    if value == "*" {
        return Ok(IfMatch::Any);
    }
    let tag = value.strip_prefix("W/").unwrap_or(value);
    let tag = tag
        .strip_prefix('"')
        .and_then(|t| t.strip_suffix('"'))
        .unwrap_or(tag);
    if tag.is_empty() {
        return Err(ApiError::PreconditionRequired);
    }
    Ok(IfMatch::Tag(tag.to_owned()))
}

enum IfMatch {
    Any,
    Tag(String),
}

impl ControlPlane {
    async fn resolve(&self, id: &str, wanted: IfMatch) -> Result<String, ApiError> {
        match wanted {
            IfMatch::Tag(tag) => Ok(tag),
            IfMatch::Any => Ok(self.rules.get(id).await?.etag),
        }
    }
}

#[utoipa::path(get, path = "/api/v1/rules", tag = "rules",
    responses(
        (status = 200, description = "Every rule", body = RuleListView),
        (status = 401, body = Problem), (status = 403, body = Problem), (status = 503, body = Problem)))]
pub async fn list(
    State(cp): State<Arc<ControlPlane>>,
    _admin: Admin,
) -> Result<Response, ApiError> {
    let list = cp.rules.list().await?;
    let version = list.version.clone();
    let body = RuleListView {
        version: list.version,
        rules: list.rules.into_iter().map(RuleView::from).collect(),
    };
    let mut response = Json(body).into_response();
    if let Some(tag) = etag_header(&version) {
        response.headers_mut().insert(header::ETAG, tag);
    }
    Ok(response)
}

#[utoipa::path(get, path = "/api/v1/rules/{id}", tag = "rules",
    params(("id" = String, Path, description = "Rule id")),
    responses(
        (status = 200, description = "The rule; its ETag is in the ETag header", body = RuleView),
        (status = 404, body = Problem), (status = 503, body = Problem)))]
pub async fn get(
    State(cp): State<Arc<ControlPlane>>,
    _admin: Admin,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    Ok(with_etag(StatusCode::OK, cp.rules.get(&id).await?.into()))
}

#[utoipa::path(post, path = "/api/v1/rules", tag = "rules", request_body = RuleDto,
    responses(
        (status = 201, description = "Created", body = RuleView),
        (status = 409, description = "The id is taken", body = Problem),
        (status = 422, description = "Every field problem", body = Problem),
        (status = 503, body = Problem)))]
pub async fn create(
    State(cp): State<Arc<ControlPlane>>,
    Admin(admin): Admin,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let rule =
        rule_from_json(json_body(&headers, &body)?, None).map_err(ApiError::Unprocessable)?;
    let id = rule.id.clone();
    let created = cp
        .rules
        .create(rule)
        .await
        .map_err(|e| ApiError::from_rule_store(e, &id))?;
    cp.rules_changed().await;
    cp.recorder
        .record(AuditEvent::rule_change(
            AuditKind::RuleCreated,
            now_millis(),
            &admin.user,
            &id,
            None,
            Some(&created.rule),
        ))
        .await;
    let mut response = with_etag(StatusCode::CREATED, created.into());
    if let Ok(location) = HeaderValue::from_str(&format!("/api/v1/rules/{id}")) {
        response.headers_mut().insert(header::LOCATION, location);
    }
    Ok(response)
}

#[utoipa::path(put, path = "/api/v1/rules/{id}", tag = "rules", request_body = RuleDto,
    params(("id" = String, Path, description = "Rule id"),
           ("If-Match" = String, Header, description = "The rule's current ETag")),
    responses(
        (status = 200, description = "Replaced", body = RuleView),
        (status = 404, body = Problem),
        (status = 412, description = "Someone else changed the rule first", body = Problem),
        (status = 422, body = Problem),
        (status = 428, description = "If-Match is missing", body = Problem),
        (status = 503, body = Problem)))]
pub async fn replace(
    State(cp): State<Arc<ControlPlane>>,
    Admin(admin): Admin,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let wanted = if_match(&headers)?;
    let rule =
        rule_from_json(json_body(&headers, &body)?, Some(&id)).map_err(ApiError::Unprocessable)?;
    let tag = cp.resolve(&id, wanted).await?;
    let (before, after) = cp
        .rules
        .replace(&id, rule, &tag)
        .await
        .map_err(|e| ApiError::from_rule_store(e, &id))?;
    cp.rules_changed().await;
    cp.recorder
        .record(AuditEvent::rule_change(
            AuditKind::RuleUpdated,
            now_millis(),
            &admin.user,
            &id,
            Some(&before.rule),
            Some(&after.rule),
        ))
        .await;
    Ok(with_etag(StatusCode::OK, after.into()))
}

#[utoipa::path(delete, path = "/api/v1/rules/{id}", tag = "rules",
    params(("id" = String, Path, description = "Rule id"),
           ("If-Match" = String, Header, description = "The rule's current ETag")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 404, body = Problem), (status = 412, body = Problem),
        (status = 428, body = Problem), (status = 503, body = Problem)))]
pub async fn delete(
    State(cp): State<Arc<ControlPlane>>,
    Admin(admin): Admin,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let tag = cp.resolve(&id, if_match(&headers)?).await?;
    let deleted = cp.rules.delete(&id, &tag).await?;
    cp.rules_changed().await;
    cp.recorder
        .record(AuditEvent::rule_change(
            AuditKind::RuleDeleted,
            now_millis(),
            &admin.user,
            &id,
            Some(&deleted.rule),
            None,
        ))
        .await;
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[utoipa::path(post, path = "/api/v1/rules/validate", tag = "rules", request_body = RuleDto,
    responses((status = 200, description = "Every problem; nothing is stored", body = Validation)))]
pub async fn validate(
    _admin: Admin,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<Validation>, ApiError> {
    let errors = match rule_from_json(json_body(&headers, &body)?, None) {
        Ok(_) => Vec::new(),
        Err(errors) => errors,
    };
    Ok(Json(Validation {
        valid: errors.is_empty(),
        errors,
    }))
}

#[utoipa::path(post, path = "/api/v1/match", tag = "rules", request_body = MatchRequest,
    responses(
        (status = 200, description = "The rule and resource a request would get", body = MatchResult),
        (status = 400, description = "The path is one the proxy refuses", body = Problem),
        (status = 503, body = Problem)))]
pub async fn matching(
    State(cp): State<Arc<ControlPlane>>,
    _admin: Admin,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<MatchResult>, ApiError> {
    let value = json_body(&headers, &body)?;
    let request: MatchRequest = serde_json::from_value(value).map_err(|e| {
        ApiError::Unprocessable(vec![FieldError::new(
            if e.to_string().contains("path") {
                "path"
            } else {
                ""
            },
            e.to_string(),
        )])
    })?;
    let method = request
        .method
        .filter(|m| !m.trim().is_empty())
        .map_or_else(|| "GET".to_owned(), |m| m.trim().to_ascii_uppercase());
    let normalized = rules::normalize_path(&request.path)
        .map_err(|e| ApiError::BadRequest(format!("The proxy answers 400 to this path: {e}.")))?
        .into_owned();
    let set = rules::RuleSet::compile(cp.rules.list().await?.into_rules()).map_err(|issues| {
        ApiError::Internal(format!("the stored rules do not compile: {}", issues.len()))
    })?;
    // The path as the proxies' rules see it (`proxy.path_parameters`).
    let rule_path = rules::rule_path(&normalized, cp.path_parameters)
        .map_err(|e| ApiError::BadRequest(format!("The proxy answers 400 to this path: {e}.")))?;
    let found = set.find(&method, &rule_path);
    Ok(Json(MatchResult {
        method: method.clone(),
        matched: found.is_some(),
        rule: found.as_ref().map(|m| RuleDto::from(m.rule.clone())),
        resource: found.as_ref().map(|m| m.resource.clone()),
        redirect_to: found.and_then(|m| m.redirect_to),
        normalized_path: normalized,
    }))
}
