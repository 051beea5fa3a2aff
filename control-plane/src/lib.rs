//! The control plane (docs/admin-api.md): the admin REST API under `/api/v1` and the admin web UI
//! at `/`.
//!
//! It owns rule editing (validated, ETag-guarded, audited), the live lock list and force
//! release, the audit trail's API and its recorder, and the OpenAPI description. It reaches
//! shared state only through the `store` traits ([`store::RuleStore`], [`store::LockStore`],
//! [`store::EventLog`]), so it runs the same embedded (files, memory) and in a fleet
//! (MongoDB, Redis). It must not know about pingora or how proxies enforce rules: a force
//! release is a store operation whose event reaches the banners by itself.

mod access;
mod apps_api;
mod error;
mod events_api;
mod locks_api;
mod openapi;
mod precondition;
mod preview_api;
mod recorder;
mod request;
mod rule_json;
mod rules_api;
mod shapes_api;
mod sign_in;
mod ui;

use std::future::Future;
use std::sync::Arc;

use auth::Verifier;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use axum::Router;
use store::{EndedSessions, EventLog, LockStore, RuleStore, UnixMillis};

pub use error::{ApiError, FieldError};
pub use openapi::ApiDoc;
pub use recorder::{Recorder, MAX_PENDING};
pub use rule_json::RuleDto;

/// Everything the control plane is built from.
pub struct Parts {
    pub rules: Arc<dyn RuleStore>,
    pub events: Arc<dyn EventLog>,
    pub locks: Arc<dyn LockStore>,
    /// Verifies admins' tokens; the same settings as the proxy's, so one sign-in serves both
    /// (in one process, the proxy's own verifier, whose fetched keys the two share).
    pub verifier: Arc<Verifier>,
    /// The cookie the proxy reads the token from (`auth.cookie`).
    pub cookie: String,
    /// `control_plane.admin_roles`.
    pub admin_roles: Vec<String>,
    /// `control_plane.public_scheme`: the scheme a browser's `Origin` must name on writes.
    pub public_scheme: &'static str,
    /// `proxy.path_parameters`, so that testing a path answers as the proxies would.
    pub path_parameters: rules::PathParameters,
    /// `proxy.prefix`: paths under it are the proxies' own endpoints, which no rule covers.
    pub reserved_prefix: String,
    /// In demo mode, a link that signs the visitor in as the demo admin.
    pub demo_sign_in: Option<String>,
    /// Sign-in with the OpenID Provider of `[oidc]`: the console's `/login`, `/callback` and
    /// `/logout`, and its session cookie accepted like a token.
    pub sign_in: Option<Arc<auth::RelyingParty>>,
    /// `[[app]]` entries: the apps a rule may name, and the hosts that pick one when testing
    /// a path. Empty: one app, with no name.
    pub apps: Vec<config::AppConfig>,
    /// `[locks] lease_seconds`: the lease of a rule that sets none, in an app that sets none,
    /// for the rule preview.
    pub lease: std::time::Duration,
}

/// The control plane's shared state.
pub struct ControlPlane {
    rules: Arc<dyn RuleStore>,
    events: Arc<dyn EventLog>,
    locks: Arc<dyn LockStore>,
    verifier: Arc<Verifier>,
    cookie: String,
    admin_roles: Vec<String>,
    public_scheme: &'static str,
    path_parameters: rules::PathParameters,
    reserved_prefix: String,
    demo_sign_in: Option<String>,
    sign_in: Option<Arc<auth::RelyingParty>>,
    /// Sign-in sessions ended by a logout here or at any proxy, when `[oidc]` is set.
    ended: Option<Arc<EndedSessions>>,
    apps: Vec<config::AppConfig>,
    lease: std::time::Duration,
    recorder: Recorder,
}

impl ControlPlane {
    /// The names of the configured apps, in config order.
    fn app_names(&self) -> Vec<&str> {
        self.apps.iter().map(|app| app.name.as_str()).collect()
    }

    /// A rule's `app` must name a configured app: one naming none would never apply.
    fn check_app(&self, rule: &rules::Rule) -> Result<(), Vec<FieldError>> {
        let names = self.app_names();
        let issues = rules::check_rule_apps(std::slice::from_ref(rule), &names);
        match issues.first() {
            Some(issue) => Err(vec![FieldError::new("app", issue.message.clone())]),
            None => Ok(()),
        }
    }

    /// The app a lock key belongs to, by the name that starts it (`wiki/doc:1`); `None` in
    /// the one-app case.
    fn app_of_resource(&self, resource: &str) -> Option<String> {
        let (name, _) = resource.split_once('/')?;
        self.apps
            .iter()
            .find(|app| app.name == name)
            .map(|app| app.name.clone())
    }

    /// Tells every proxy sharing the lock store to reload rules now (a Redis publish, or an
    /// in-process signal); their polling would pick the change up anyway within
    /// `poll_seconds`, so a failure here is only logged.
    pub async fn rules_changed(&self) {
        if let Err(e) = self.locks.nudge_rules().await {
            tracing::warn!(error = %e, "could not nudge proxies about the rule change; they will poll it");
        }
    }

    /// The control plane and its background task, which records lock events into the audit
    /// trail and, with `[oidc]`, keeps the ended sign-in sessions; run the task for as long as
    /// the control plane serves.
    pub fn new(parts: Parts) -> (Arc<ControlPlane>, impl Future<Output = ()> + Send + 'static) {
        let (recorder, recording) = recorder::recorder(parts.events.clone(), parts.locks.as_ref());
        let ended = parts
            .sign_in
            .as_ref()
            .map(|_| Arc::new(EndedSessions::new(parts.locks.clone())));
        let reader = ended.clone();
        let task = async move {
            match reader {
                Some(ended) => {
                    tokio::join!(recording, ended.run());
                }
                None => recording.await,
            }
        };
        let control_plane = ControlPlane {
            rules: parts.rules,
            events: parts.events,
            locks: parts.locks,
            verifier: parts.verifier,
            cookie: parts.cookie,
            admin_roles: parts.admin_roles,
            public_scheme: parts.public_scheme,
            path_parameters: parts.path_parameters,
            reserved_prefix: parts.reserved_prefix,
            demo_sign_in: parts.demo_sign_in,
            sign_in: parts.sign_in,
            ended,
            apps: parts.apps,
            lease: parts.lease,
            recorder,
        };
        (Arc::new(control_plane), task)
    }
}

/// Every route of docs/admin-api.md.
pub fn router(control_plane: Arc<ControlPlane>) -> Router {
    let api = Router::new()
        .route("/rules", get(rules_api::list).post(rules_api::create))
        .route("/rules/validate", post(rules_api::validate))
        .route("/rules/preview", post(preview_api::preview))
        .route(
            "/rules/{id}",
            get(rules_api::get)
                .put(rules_api::replace)
                .delete(rules_api::delete),
        )
        .route("/match", post(rules_api::matching))
        .route("/apps", get(apps_api::list))
        .route("/locks", get(locks_api::list))
        .route(
            "/locks/{resource}",
            get(locks_api::get).delete(locks_api::force_release),
        )
        .route("/shapes", get(shapes_api::list))
        .route("/events", get(events_api::list))
        .route("/events/stream", get(events_api::stream))
        .route("/openapi.json", get(openapi::document))
        .method_not_allowed_fallback(request::method_not_allowed)
        .fallback(request::no_route);
    Router::new()
        .route("/", get(ui::index))
        .route("/ui/{name}", get(ui::asset))
        .route("/login", get(sign_in::login))
        .route("/callback", get(sign_in::callback))
        .route("/logout", get(sign_in::logout))
        .method_not_allowed_fallback(request::method_not_allowed)
        .nest("/api/v1", api)
        .fallback(request::no_route)
        .layer(axum::middleware::from_fn_with_state(
            Arc::clone(&control_plane),
            sign_in::renew_session,
        ))
        .layer(DefaultBodyLimit::max(request::MAX_BODY))
        .with_state(control_plane)
}

/// Serves `router` on an already bound listener until the process ends. Binding first lets
/// the caller report a busy port before anything starts.
pub async fn serve(listener: std::net::TcpListener, router: Router) -> std::io::Result<()> {
    listener.set_nonblocking(true)?;
    let listener = tokio::net::TcpListener::from_std(listener)?;
    axum::serve(listener, router).await
}

pub(crate) fn now_millis() -> UnixMillis {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// Unix milliseconds as RFC 3339 (UTC), as the banner protocol shows times.
pub(crate) fn rfc3339(ms: UnixMillis) -> String {
    let nanos = i128::from(ms) * 1_000_000;
    time::OffsetDateTime::from_unix_timestamp_nanos(nanos)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_default()
}
