//! `/api/v1/locks`: who holds what right now, and breaking a lock.
//!
//! The list comes straight from the shared lock store, so it covers every proxy instance on
//! that store. A force release goes through the store too: its event reaches the holder's and
//! the watchers' banners on every instance, and the audit trail, without anything here
//! knowing about banners.

use std::sync::Arc;

use axum::extract::State;
use axum::Json;
use serde::Serialize;
use store::{Holder, Lock};
use utoipa::ToSchema;

use crate::access::Admin;
use crate::error::{ApiError, Problem};
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
    /// The proxy instance that claimed it.
    pub instance: String,
}

impl From<Lock> for LockView {
    fn from(lock: Lock) -> LockView {
        LockView {
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
        locks: locks
            .into_iter()
            .map(|lock| {
                let app = cp.app_of_resource(&lock.resource);
                LockView {
                    app,
                    ..LockView::from(lock)
                }
            })
            .collect(),
    }))
}

/// Force-release a lock; its holder and watchers are told.
#[utoipa::path(delete, path = "/api/v1/locks/{resource}", tag = "locks", operation_id = "forceRelease",
    params(("resource" = String, Path, description = "The lock key, e.g. doc:42 (wiki/doc:42 with [[app]] entries; percent-encode the slash)")),
    responses(
        (status = 200, description = "Released; the holder and watchers are told", body = Released),
        (status = 400, description = "The lock key in the URL does not decode", body = Problem),
        (status = 404, description = "Nobody holds it", body = Problem),
        (status = 503, description = "The lock store did not answer", body = Problem)))]
pub async fn force_release(
    State(cp): State<Arc<ControlPlane>>,
    Admin(admin): Admin,
    PathParams(resource): PathParams<String>,
) -> Result<Json<Released>, ApiError> {
    match cp.locks.force_release(&resource, &admin.user).await? {
        Some(lock) => {
            tracing::info!(resource = %resource, holder = %lock.holder.user, by = %admin.user, "lock force-released");
            let app = cp.app_of_resource(&lock.resource);
            Ok(Json(Released {
                released: LockView {
                    app,
                    ..LockView::from(lock)
                },
            }))
        }
        None => Err(ApiError::NotFound(format!(
            "Nobody holds {resource:?} now; it may have been released already."
        ))),
    }
}
