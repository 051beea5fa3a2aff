//! `/api/v1/locks`: who holds what right now, and breaking a lock.
//!
//! The list comes straight from the shared lock store, so it covers every proxy instance on
//! that store. A force release goes through the store too: its event reaches the holder's and
//! the watchers' banners on every instance, and the audit trail, without anything here
//! knowing about banners.
//!
//! A lock's ETag is its fence, quoted: fences only grow, so a lock that changed hands (released
//! and claimed again, or taken over) has another one. A release may be made conditional on it
//! with `If-Match` (RFC 9110, compared as the rules API does in `precondition`), and the store
//! checks the fence and releases in one step.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;
use store::{ForceReleased, Holder, Lock};
use utoipa::ToSchema;

use crate::access::Admin;
use crate::error::{ApiError, Problem};
use crate::precondition::IfMatch;
use crate::request::PathParams;
use crate::{rfc3339, ControlPlane};

/// A person holding a lock, in the shape every part of the API uses (the audit trail's
/// `holder` and `previous_holder` too).
#[derive(Serialize, ToSchema)]
pub struct HolderView {
    /// The user id from the token.
    pub id: String,
    pub name: String,
    /// The browser session, for `owner = "session"` rules.
    pub session: Option<String>,
}

impl From<Holder> for HolderView {
    fn from(holder: Holder) -> HolderView {
        HolderView {
            id: holder.user,
            name: holder.name,
            session: holder.session,
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct LockView {
    /// The lock key; with `[[app]]` entries it starts with its app's name (`wiki/doc:1`).
    pub resource: String,
    /// The `[[app]]` the lock belongs to; `null` with a single app.
    pub app: Option<String>,
    /// The rule that claimed it.
    pub rule: String,
    pub holder: HolderView,
    /// RFC 3339.
    pub since: String,
    /// RFC 3339: when the lease lapses unless renewed.
    pub expires: String,
    pub since_ms: u64,
    pub expires_ms: u64,
    pub fence: u64,
    /// The lock's ETag, unquoted: its fence. `If-Match` with it, quoted, releases this lock
    /// and no later one.
    pub etag: String,
    /// The proxy instance that claimed it.
    pub instance: String,
}

impl From<Lock> for LockView {
    fn from(lock: Lock) -> LockView {
        LockView {
            etag: lock_etag(&lock),
            since: rfc3339(lock.since),
            expires: rfc3339(lock.expires),
            since_ms: lock.since,
            expires_ms: lock.expires,
            resource: lock.resource,
            app: None,
            rule: lock.rule,
            holder: lock.holder.into(),
            fence: lock.fence,
            instance: lock.instance,
        }
    }
}

/// A lock's ETag, unquoted.
fn lock_etag(lock: &Lock) -> String {
    lock.fence.to_string()
}

impl ControlPlane {
    /// The lock as the API shows it, with its app.
    fn lock_view(&self, lock: Lock) -> LockView {
        LockView {
            app: self.app_of_resource(&lock.resource),
            ..LockView::from(lock)
        }
    }
}

/// A body with the lock's ETag in the `ETag` header.
fn with_etag<T: Serialize>(lock_etag: &str, body: T) -> Response {
    let mut response = Json(body).into_response();
    if let Ok(tag) = HeaderValue::from_str(&format!("\"{lock_etag}\"")) {
        response.headers_mut().insert(header::ETAG, tag);
    }
    response
}

#[derive(Serialize, ToSchema)]
pub struct LockList {
    pub locks: Vec<LockView>,
}

#[derive(Serialize, ToSchema)]
pub struct Released {
    /// The lock as it was when it was released.
    pub released: LockView,
}

/// List the live locks of every instance.
#[utoipa::path(get, path = "/api/v1/locks", tag = "locks", operation_id = "listLocks",
    responses(
        (status = 200, description = "Every live lock", body = LockList),
        (status = 503, description = "The lock store did not answer", body = Problem)))]
pub async fn list(
    State(cp): State<Arc<ControlPlane>>,
    _admin: Admin,
) -> Result<Json<LockList>, ApiError> {
    let locks = cp.locks.list().await?;
    Ok(Json(LockList {
        locks: locks.into_iter().map(|lock| cp.lock_view(lock)).collect(),
    }))
}

/// One lock, with its ETag.
#[utoipa::path(get, path = "/api/v1/locks/{resource}", tag = "locks", operation_id = "getLock",
    params(("resource" = String, Path, description = "The lock key, e.g. doc:42 (wiki/doc:42 with [[app]] entries; percent-encode the slash)")),
    responses(
        (status = 200, description = "Who holds it", body = LockView,
            headers(("ETag" = String, description = "The lock's ETag (its fence), quoted")),
            links(("ForceRelease" = (operation_id = "forceRelease",
                parameters(("resource" = "$response.body#/resource"), ("If-Match" = "$response.header.ETag")))))),
        (status = 400, description = "The lock key in the URL does not decode", body = Problem),
        (status = 404, description = "Nobody holds it", body = Problem),
        (status = 503, description = "The lock store did not answer", body = Problem)))]
pub async fn get(
    State(cp): State<Arc<ControlPlane>>,
    _admin: Admin,
    PathParams(resource): PathParams<String>,
) -> Result<Response, ApiError> {
    match cp.locks.get(&resource).await? {
        Some(lock) => {
            let etag = lock_etag(&lock);
            Ok(with_etag(&etag, cp.lock_view(lock)))
        }
        None => Err(nobody_holds(&resource)),
    }
}

fn nobody_holds(resource: &str) -> ApiError {
    ApiError::NotFound(format!(
        "Nobody holds {resource:?} now; it may have been released already."
    ))
}

/// Force-release a lock; its holder and watchers are told. With `If-Match`, only the lock
/// the tag names: if it changed hands since, nothing is released (412).
#[utoipa::path(delete, path = "/api/v1/locks/{resource}", tag = "locks", operation_id = "forceRelease",
    params(("resource" = String, Path, description = "The lock key, e.g. doc:42 (wiki/doc:42 with [[app]] entries; percent-encode the slash)"),
           ("If-Match" = Option<String>, Header, pattern = r#"^[ \t,]*(\*|(W/)?"[!#-~\u0080-\u00ff]*"([ \t]*,[ \t,]*(W/)?"[!#-~\u0080-\u00ff]*")*)[ \t,]*$"#,
               description = "The lock's ETag (quoted), a list of tags, or `*` for whoever holds it. Without it, the lock is released whoever holds it. Weak tags never match.")),
    responses(
        (status = 200, description = "Released; the holder and watchers are told", body = Released),
        (status = 400, description = "The lock key in the URL does not decode, or If-Match is not a list of tags", body = Problem),
        (status = 404, description = "Nobody holds it", body = Problem),
        (status = 412, description = "If-Match names another lock: it changed hands, and was not released", body = Problem,
            headers(("ETag" = String, description = "The lock's current ETag, quoted"))),
        (status = 503, description = "The lock store did not answer", body = Problem)))]
pub async fn force_release(
    State(cp): State<Arc<ControlPlane>>,
    Admin(admin): Admin,
    PathParams(resource): PathParams<String>,
    headers: HeaderMap,
) -> Result<Json<Released>, ApiError> {
    // RFC 9110 §13.2.2: a lock nobody holds is 404 whatever the condition, even one that does
    // not read. A list of tags is checked against the lock as it is, and the release is then
    // conditional on its fence, so a change in between is a 412 as well.
    let fence = match headers.contains_key(header::IF_MATCH) {
        false => None,
        true => {
            let Some(current) = cp.locks.get(&resource).await? else {
                return Err(nobody_holds(&resource));
            };
            match IfMatch::from_headers(&headers)
                .map_err(|e| ApiError::BadRequest(format!("{e}.")))?
            {
                None | Some(IfMatch::Any) => None,
                Some(tags) if tags.matches(&lock_etag(&current)) => Some(current.fence),
                Some(_) => return Err(lock_changed(&resource, &current)),
            }
        }
    };
    match cp
        .locks
        .force_release_if(&resource, &admin.user, fence)
        .await?
    {
        ForceReleased::Released(lock) => {
            tracing::info!(resource = %resource, holder = %lock.holder.user, by = %admin.user, "lock force-released");
            Ok(Json(Released {
                released: cp.lock_view(lock),
            }))
        }
        ForceReleased::Changed(current) => Err(lock_changed(&resource, &current)),
        ForceReleased::Free => Err(nobody_holds(&resource)),
    }
}

fn lock_changed(resource: &str, current: &Lock) -> ApiError {
    ApiError::LockChanged {
        resource: resource.to_owned(),
        holder: current.holder.name.clone(),
        current: lock_etag(current),
    }
}
