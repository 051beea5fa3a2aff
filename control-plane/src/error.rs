//! [`ApiError`]: every way an API request can fail, and the one place each becomes a status
//! code and an `application/problem+json` body (RFC 9457).
//!
//! Handlers return `Result<_, ApiError>` and never build error responses themselves, so the
//! same failure always looks the same on the wire. Messages are written for the admin reading
//! them in the UI: what happened and what to do.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::json;
use store::{EventLogError, RuleStoreError, StoreError};
use utoipa::ToSchema;

/// One problem with one field of a request body.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct FieldError {
    /// The field's wire name; empty for a problem with the whole body.
    pub field: String,
    pub message: String,
}

impl FieldError {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> FieldError {
        FieldError {
            field: field.into(),
            message: message.into(),
        }
    }

    /// A rule validation issue as seen by someone editing `editing` (the rule's id): issues of
    /// other rules in the set name that rule, since the editor does not show it.
    pub fn from_issue(issue: &rules::Issue, editing: &str) -> FieldError {
        let message = match issue.rule.as_deref() {
            Some(other) if other != editing => format!("rule '{other}': {}", issue.message),
            _ => issue.message.clone(),
        };
        FieldError::new(issue.field.clone(), message)
    }
}

/// The problem+json body, as documented in the OpenAPI description.
#[derive(Serialize, ToSchema)]
pub struct Problem {
    #[serde(rename = "type")]
    pub kind: String,
    pub title: String,
    pub status: u16,
    pub detail: String,
    /// Present on 422: every field problem.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub errors: Option<Vec<FieldError>>,
    /// Present on 412: the current ETag of the rule or lock.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub current_etag: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    Unauthorized(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("This request changes a rule, so it must carry the rule's ETag in If-Match.")]
    PreconditionRequired,
    #[error("Someone else changed rule {id:?} since you loaded it. Reload it to see their change, then apply yours again.")]
    PreconditionFailed { id: String, current: String },
    #[error("The lock on {resource:?} changed hands since you looked (it is {holder}'s now), so it was not released. Look again before releasing it.")]
    LockChanged {
        resource: String,
        holder: String,
        current: String,
    },
    #[error("The request body must be JSON (Content-Type: application/json).")]
    UnsupportedMediaType,
    #[error("The request body is larger than the API reads ({} KiB).", .limit / 1024)]
    PayloadTooLarge { limit: usize },
    /// The route exists, but not with this method; axum adds the `Allow` header.
    #[error("This route does not take {0}; the Allow header lists the methods it does take.")]
    MethodNotAllowed(String),
    #[error("The request has {} problem(s); see errors.", .0.len())]
    Unprocessable(Vec<FieldError>),
    #[error("{0}")]
    Unavailable(String),
    #[error("{0}")]
    Internal(String),
}

impl ApiError {
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::PreconditionRequired => StatusCode::PRECONDITION_REQUIRED,
            ApiError::PreconditionFailed { .. } | ApiError::LockChanged { .. } => {
                StatusCode::PRECONDITION_FAILED
            }
            ApiError::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::Unprocessable(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    pub fn field(field: &str, message: impl Into<String>) -> ApiError {
        ApiError::Unprocessable(vec![FieldError::new(field, message)])
    }
}

impl From<RuleStoreError> for ApiError {
    fn from(e: RuleStoreError) -> ApiError {
        ApiError::from_rule_store(e, "")
    }
}

impl ApiError {
    /// A rule store failure during an edit of rule `editing`.
    pub fn from_rule_store(e: RuleStoreError, editing: &str) -> ApiError {
        match e {
            RuleStoreError::NotFound(id) => {
                ApiError::NotFound(format!("No rule has the id {id:?}."))
            }
            RuleStoreError::Conflict(id) => ApiError::Conflict(format!(
                "A rule with the id {id:?} already exists. Edit that rule, or choose another id."
            )),
            RuleStoreError::PreconditionFailed { id, current } => {
                ApiError::PreconditionFailed { id, current }
            }
            RuleStoreError::Invalid(issues) => ApiError::Unprocessable(
                issues
                    .iter()
                    .map(|i| FieldError::from_issue(i, editing))
                    .collect(),
            ),
            RuleStoreError::Unavailable(reason) => ApiError::Unavailable(format!(
                "The rule store is unreachable, so nothing was read or changed ({reason}). \
                 Proxies keep enforcing the last rules they loaded. Try again when it is back."
            )),
        }
    }
}

impl From<EventLogError> for ApiError {
    fn from(e: EventLogError) -> ApiError {
        match e {
            EventLogError::Unavailable(reason) => ApiError::Unavailable(format!(
                "The audit trail is unreachable ({reason}). Lock events are kept in memory \
                 and written once it is back."
            )),
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> ApiError {
        ApiError::Unavailable(format!(
            "The lock store did not answer ({e}); no lock was changed."
        ))
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        if status.is_server_error() {
            tracing::warn!(status = status.as_u16(), error = %self, "API request failed");
        }
        let title = status.canonical_reason().unwrap_or("Error").to_owned();
        let detail = self.to_string();
        let (errors, current_etag) = match self {
            ApiError::Unprocessable(errors) => (Some(errors), None),
            ApiError::PreconditionFailed { current, .. }
            | ApiError::LockChanged { current, .. } => (None, Some(current)),
            _ => (None, None),
        };
        let problem = Problem {
            kind: "about:blank".to_owned(),
            title,
            status: status.as_u16(),
            detail,
            errors,
            current_etag: current_etag.clone(),
        };
        let body = serde_json::to_vec(&problem).unwrap_or_else(|_| {
            json!({"title": "Error", "status": status.as_u16()})
                .to_string()
                .into_bytes()
        });
        let mut response = (status, body).into_response();
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        match status {
            StatusCode::UNAUTHORIZED => {
                headers.insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static("Bearer realm=\"latch\""),
                );
            }
            StatusCode::SERVICE_UNAVAILABLE => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
            }
            StatusCode::PRECONDITION_FAILED => {
                if let Some(value) =
                    current_etag.and_then(|tag| HeaderValue::from_str(&format!("\"{tag}\"")).ok())
                {
                    headers.insert(header::ETAG, value);
                }
            }
            _ => {}
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_variant_has_the_documented_status() {
        let cases = [
            (ApiError::Unauthorized(String::new()), 401),
            (ApiError::Forbidden(String::new()), 403),
            (ApiError::BadRequest(String::new()), 400),
            (ApiError::NotFound(String::new()), 404),
            (ApiError::Conflict(String::new()), 409),
            (ApiError::PreconditionRequired, 428),
            (
                ApiError::PreconditionFailed {
                    id: "a".into(),
                    current: "r1".into(),
                },
                412,
            ),
            (
                ApiError::LockChanged {
                    resource: "doc:1".into(),
                    holder: "Bob".into(),
                    current: "7".into(),
                },
                412,
            ),
            (ApiError::UnsupportedMediaType, 415),
            (ApiError::PayloadTooLarge { limit: 1024 }, 413),
            (ApiError::MethodNotAllowed("PATCH".into()), 405),
            (ApiError::Unprocessable(Vec::new()), 422),
            (ApiError::Unavailable(String::new()), 503),
            (ApiError::Internal(String::new()), 500),
        ];
        for (error, status) in cases {
            assert_eq!(error.status().as_u16(), status, "{error:?}");
        }
    }

    #[test]
    fn an_unreachable_rule_store_is_a_clear_503() {
        let error = ApiError::from(RuleStoreError::Unavailable("connection refused".into()));
        assert_eq!(error.status(), StatusCode::SERVICE_UNAVAILABLE);
        let text = error.to_string();
        assert!(
            text.contains("unreachable") && text.contains("connection refused"),
            "{text}"
        );
    }

    #[test]
    fn issues_of_other_rules_name_their_rule() {
        let issue = rules::Issue {
            rule: Some("other".into()),
            index: Some(3),
            field: "pattern".into(),
            message: "too big".into(),
        };
        assert_eq!(
            FieldError::from_issue(&issue, "mine").message,
            "rule 'other': too big"
        );
        assert_eq!(FieldError::from_issue(&issue, "other").message, "too big");
    }
}
