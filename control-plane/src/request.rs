//! The parts of a request the handlers read — path segments, the query string, the body — read
//! so that every refusal is an [`ApiError`], and so problem+json like every other error.
//!
//! axum's own extractors refuse in `text/plain` (an undecodable path segment, a repeated query
//! key, a body over the limit); these wrap them and keep only the reason. The fallbacks for an
//! unknown route and a method a route does not take live in `lib.rs` beside the routes.

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Path, Query, Request};
use axum::http::request::Parts;
use axum::http::{Method, StatusCode};
use serde::de::DeserializeOwned;

use crate::error::ApiError;

/// The route's path parameters. An undecodable one (`%FF`) is 400.
pub struct PathParams<T>(pub T);

impl<T, S> FromRequestParts<S> for PathParams<T>
where
    T: DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        Path::<T>::from_request_parts(parts, state)
            .await
            .map(|Path(value)| PathParams(value))
            .map_err(|e: PathRejection| {
                ApiError::BadRequest(format!(
                    "The URL's path is not readable: {}.",
                    e.body_text()
                ))
            })
    }
}

/// The query string. One that does not decode into `T` (a key given twice, say) is 400; the
/// handler checks the values themselves and answers 422 for those.
pub struct QueryParams<T>(pub T);

impl<T, S> FromRequestParts<S> for QueryParams<T>
where
    T: DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        Query::<T>::from_request_parts(parts, state)
            .await
            .map(|Query(value)| QueryParams(value))
            .map_err(|e: QueryRejection| {
                ApiError::BadRequest(format!(
                    "The query string is not readable: {}. Give each parameter at most once.",
                    e.body_text()
                ))
            })
    }
}

/// Largest request body the API reads (`DefaultBodyLimit` in `lib.rs`).
pub const MAX_BODY: usize = 64 * 1024;

/// The whole body, up to [`MAX_BODY`]; past it, 413.
pub struct RequestBody(pub Bytes);

impl<S> FromRequest<S> for RequestBody
where
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, ApiError> {
        Bytes::from_request(request, state)
            .await
            .map(RequestBody)
            .map_err(|e: BytesRejection| {
                if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                    ApiError::PayloadTooLarge { limit: MAX_BODY }
                } else {
                    ApiError::BadRequest(format!("The body could not be read: {}.", e.body_text()))
                }
            })
    }
}

/// The answer for a route that exists without the request's method (axum adds `Allow`).
pub async fn method_not_allowed(method: Method) -> ApiError {
    ApiError::MethodNotAllowed(method.to_string())
}

/// The answer for a path no route serves.
pub async fn no_route() -> ApiError {
    ApiError::NotFound("No such route. The API is under /api/v1; see /api/v1/openapi.json.".into())
}
