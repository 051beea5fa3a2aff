//! `/api/v1/apps`: the `[[app]]` entries of the configuration, so the console can offer their
//! names for a rule's `app` and a host for testing a path. Read from the config at start.

use std::sync::Arc;

use axum::extract::State;
use axum::Json;
use serde::Serialize;
use utoipa::ToSchema;

use crate::access::Admin;
use crate::ControlPlane;

/// One app behind the proxies.
#[derive(Serialize, ToSchema)]
pub struct AppView {
    /// What a rule's `app` names, and what starts the app's lock keys (`wiki/doc:1`).
    #[schema(example = "wiki")]
    pub name: String,
    /// The host names that reach it: exact names, and `*.example.com` for one more label.
    pub hosts: Vec<String>,
}

#[derive(Serialize, ToSchema)]
pub struct AppList {
    /// In config order; empty when the proxies serve one app, with no name, on every host.
    pub apps: Vec<AppView>,
}

/// List the apps the proxies serve.
#[utoipa::path(get, path = "/api/v1/apps", tag = "rules", operation_id = "listApps",
    responses((status = 200, description = "Every `[[app]]` entry", body = AppList)))]
pub async fn list(State(cp): State<Arc<ControlPlane>>, _admin: Admin) -> Json<AppList> {
    Json(AppList {
        apps: cp
            .apps
            .iter()
            .map(|app| AppView {
                name: app.name.clone(),
                hosts: app.hosts.iter().map(ToString::to_string).collect(),
            })
            .collect(),
    })
}
