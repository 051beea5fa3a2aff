//! The state one proxy instance shares between its request path, its banner sockets, its
//! background tasks and its admin port.

use std::future::Future;
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use auth::{Identity, Verifier};
use config::Config;
use http::HeaderMap;
use rules::{Owner, Rule, RuleSet};
use store::{Holder, LockStore, StoreError};

use crate::banner::Hub;
use crate::metrics::Metrics;

/// The cookie that names one browser session for `owner = "session"` rules.
pub const SESSION_COOKIE: &str = "latch_sid";

/// Why the proxy could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("proxy.upstream: cannot resolve {0}: {1}")]
    Upstream(String, String),
    #[error("auth: {0}")]
    Auth(#[from] auth::KeyError),
    #[error("{0}")]
    Other(String),
}

pub struct Latch {
    pub config: Config,
    pub verifier: Verifier,
    /// The active rule set, swapped as a whole: a request sees the old set or the new one.
    pub rules: ArcSwap<RuleSet>,
    pub store: Arc<dyn LockStore>,
    pub metrics: Metrics,
    pub hub: Hub,
    /// Resolved once at start so the request path never waits on DNS.
    pub upstream: SocketAddr,
    /// Why the rule source is not usable, if it is not (shown by `/readyz`).
    pub rules_problem: std::sync::Mutex<Option<String>>,
    /// Where denials are recorded, when an audit log is attached.
    pub audit: std::sync::OnceLock<crate::audit::Auditor>,
}

impl Latch {
    pub fn new(
        config: Config,
        store: Arc<dyn LockStore>,
        rules: RuleSet,
    ) -> Result<Arc<Latch>, StartError> {
        let address = config.proxy.upstream.address();
        let upstream = address
            .to_socket_addrs()
            .map_err(|e| StartError::Upstream(address.clone(), e.to_string()))?
            .next()
            .ok_or_else(|| StartError::Upstream(address.clone(), "no addresses".into()))?;
        let verifier = Verifier::new(config.auth.settings.clone())?;
        let metrics = Metrics::new();
        metrics.rules_loaded.set(rules.len() as i64);
        Ok(Arc::new(Latch {
            config,
            verifier,
            rules: ArcSwap::from_pointee(rules),
            store,
            metrics,
            hub: Hub::default(),
            upstream,
            rules_problem: std::sync::Mutex::new(None),
            audit: std::sync::OnceLock::new(),
        }))
    }

    /// Runs a lock store operation under the configured timeout, timing it for the metrics.
    pub async fn store_op<T>(
        &self,
        op: &'static str,
        fut: impl Future<Output = Result<T, StoreError>>,
    ) -> Result<T, StoreError> {
        let start = Instant::now();
        let result = match tokio::time::timeout(self.config.locks.store_timeout, fut).await {
            Ok(r) => r,
            Err(_) => Err(StoreError::Timeout),
        };
        self.metrics
            .store_latency
            .with_label_values(&[op])
            .observe(start.elapsed().as_secs_f64());
        if result.is_err() {
            self.metrics.store_errors.inc();
        }
        result
    }

    /// The verified identity of the request's token (cookie or bearer).
    pub fn authenticate(&self, headers: &HeaderMap) -> Result<Identity, auth::AuthError> {
        let token = auth::token_from_headers(
            headers
                .get_all(http::header::COOKIE)
                .iter()
                .map(|v| v.as_bytes()),
            headers
                .get(http::header::AUTHORIZATION)
                .map(|v| v.as_bytes()),
            &self.config.auth.cookie,
        )
        .ok_or(auth::AuthError::Missing)?;
        self.verifier.verify(token)
    }

    /// The lock holder a request represents under `rule`: the user, plus the browser session
    /// for `owner = "session"` rules.
    pub fn holder(&self, identity: &Identity, rule: &Rule, session: Option<&str>) -> Holder {
        Holder {
            user: identity.user.clone(),
            name: identity.name.clone(),
            session: match rule.owner {
                Owner::User => None,
                Owner::Session => session.map(str::to_string),
            },
        }
    }

    pub fn lease_for(&self, rule: &Rule) -> Duration {
        rule.lease_seconds
            .map(Duration::from_secs)
            .unwrap_or(self.config.locks.lease)
    }

    pub fn grace_for(&self, rule: &Rule) -> Duration {
        rule.grace_seconds
            .map(Duration::from_secs)
            .unwrap_or(self.config.locks.grace)
    }

    /// The banner script tag for a page at `path` (`page` is `app` or `blocked`).
    pub fn banner_tag(
        &self,
        path: &str,
        lease: Duration,
        page: &str,
        nonce: Option<&str>,
    ) -> String {
        let prefix = &self.config.proxy.prefix;
        inject::script_tag(
            &format!("{prefix}/banner.js"),
            &[
                ("latch-prefix", prefix.as_str()),
                ("latch-path", path),
                ("latch-lease", &lease.as_secs().to_string()),
                ("latch-page", page),
            ],
            nonce,
        )
    }

    /// Records this instance's denials in `log`. Returns the task that writes them, to run on
    /// the background runtime; `None` if a log was already attached.
    pub fn attach_audit(&self, log: Arc<dyn store::EventLog>) -> Option<crate::server::Task> {
        let (auditor, task) = crate::audit::Auditor::new(log);
        self.audit.set(auditor).ok().map(|()| task)
    }

    pub fn set_rules_problem(&self, problem: Option<String>) {
        if let Ok(mut p) = self.rules_problem.lock() {
            *p = problem;
        }
    }
}

/// The value of a named cookie across every `Cookie` header.
pub fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.trim())
        .filter(|v| !v.is_empty() && v.len() <= 64 && v.bytes().all(|b| b.is_ascii_alphanumeric()))
}

/// A fresh random browser-session id.
pub fn new_session_id() -> String {
    let bytes: [u8; 16] = rand::random();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
