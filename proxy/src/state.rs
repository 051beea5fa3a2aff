//! The state one proxy instance shares between its request path, its banner sockets, its
//! background tasks and its admin port.

use std::borrow::Cow;
use std::collections::HashMap;
use std::future::Future;
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::Poll;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use auth::{Identity, Verifier};
use config::Config;
use http::HeaderMap;
use rules::{Owner, Rule, RuleSet};
use store::{Holder, LockEvent, LockStore, StoreError};
use tokio::sync::broadcast::{self, error::TryRecvError};

use crate::banner::Hub;
use crate::claim_rate::ClaimRate;
use crate::metrics::Metrics;

/// The cookie that names one browser session for `owner = "session"` rules.
pub const SESSION_COOKIE: &str = "latch_sid";

/// Lock store operations whose latency histogram is resolved once at start, so that timing
/// them costs no label lookup on the request path.
const TIMED_OPS: [&str; 8] = [
    "claim",
    "get",
    "renew",
    "release",
    "takeover",
    "request_access",
    "ping",
    "list",
];

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
    /// `metrics.store_latency` for each of [`TIMED_OPS`].
    op_latency: Vec<(&'static str, prometheus::Histogram)>,
    /// Claims this instance saw succeed a moment ago (see [`RecentClaims`]).
    pub recent: RecentClaims,
    /// Where the banner went in page heads already parsed (see [`inject::HeadMemo`]).
    pub head_memo: Arc<inject::HeadMemo>,
    /// New claims per user on this instance (see [`ClaimRate`]).
    pub claim_rate: ClaimRate,
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
        let op_latency = TIMED_OPS
            .iter()
            .map(|op| (*op, metrics.store_latency.with_label_values(&[op])))
            .collect();
        let recent = RecentClaims::new(store.clone());
        let claim_rate = ClaimRate::new(config.locks.claims_per_minute);
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
            op_latency,
            recent,
            head_memo: Arc::default(),
            claim_rate,
        }))
    }

    /// Runs a lock store operation under the configured timeout, timing it for the metrics.
    pub async fn store_op<T>(
        &self,
        op: &'static str,
        fut: impl Future<Output = Result<T, StoreError>>,
    ) -> Result<T, StoreError> {
        let start = Instant::now();
        let mut fut = std::pin::pin!(fut);
        // The memory store answers on the first poll; only a store that has to wait (Redis)
        // gets a timer, so the common case registers none.
        let result = match futures::poll!(fut.as_mut()) {
            Poll::Ready(r) => r,
            Poll::Pending => {
                match tokio::time::timeout(self.config.locks.store_timeout, fut).await {
                    Ok(r) => r,
                    Err(_) => Err(StoreError::Timeout),
                }
            }
        };
        let seconds = start.elapsed().as_secs_f64();
        match self.op_latency.iter().find(|(name, _)| *name == op) {
            Some((_, histogram)) => histogram.observe(seconds),
            None => self
                .metrics
                .store_latency
                .with_label_values(&[op])
                .observe(seconds),
        }
        if result.is_err() {
            self.metrics.store_errors.inc();
        }
        result
    }

    /// The verified identity of the request's token (cookie or bearer).
    pub fn authenticate(&self, headers: &HeaderMap) -> Result<Arc<Identity>, auth::AuthError> {
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

    /// The path the rules are matched against for a normalized request path: without its
    /// `;` path parameters, or refused when the config refuses them (`proxy.path_parameters`).
    pub fn rule_path<'a>(&self, normalized: &'a str) -> Result<Cow<'a, str>, rules::PathError> {
        rules::rule_path(normalized, self.config.proxy.path_parameters)
    }

    pub fn lease_for(&self, rule: &Rule) -> Duration {
        rule.lease_seconds
            .map(Duration::from_secs)
            .unwrap_or(self.config.locks.lease)
    }

    /// The cap on a user's live locks for a new claim under `rule`: its own `max_per_user`,
    /// else `[locks] max_per_user`; `0` in either means none.
    pub fn max_per_user_for(&self, rule: &Rule) -> Option<u32> {
        match rule.max_per_user {
            Some(0) => None,
            Some(max) => Some(max),
            None => self.config.locks.max_per_user,
        }
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

/// How long a claim this instance saw succeed keeps answering the same holder's safe requests
/// without asking the lock store again.
pub const RECENT_CLAIM_TTL: Duration = Duration::from_secs(1);

/// Holders remembered at most; past this the memory is dropped and rebuilt from the store.
const RECENT_CLAIM_CAPACITY: usize = 10_000;

/// Claims this instance saw succeed less than [`RECENT_CLAIM_TTL`] ago.
///
/// A page load is a burst of requests under one lock (the document, its scripts, its API
/// reads). Asking a remote store (Redis) for each costs a round trip per request, so a safe
/// request (GET, HEAD) of the holder that claimed or renewed a moment ago is let through on
/// that answer. The guarantees stay those of the store:
/// - unsafe methods always ask the store, so a holder who lost the lock is refused every
///   write at once (fencing and takeover are untouched);
/// - every lock event (claim, release, takeover, expiry, from any instance) forgets what is
///   remembered for its resource before the next request is decided, and a lagging or
///   restarted event stream forgets everything; with the memory store events arrive before
///   the store call returns, so nothing is ever stale;
/// - a claim is remembered only if no event arrived while it was in flight;
/// - the store is asked again at least every [`RECENT_CLAIM_TTL`], which also renews the lease.
///
/// What remains is reads: while the Redis event stream is down, a displaced holder's reads
/// may pass for up to [`RECENT_CLAIM_TTL`] after a takeover on another instance.
pub struct RecentClaims {
    store: Arc<dyn LockStore>,
    inner: Mutex<Recent>,
}

struct Recent {
    events: broadcast::Receiver<LockEvent>,
    /// Lock events seen (and event-stream gaps). A claim answered before a newer generation
    /// began may be outdated.
    generation: u64,
    /// Seeded per process. Only claims the store granted to authenticated users get in, at
    /// most [`RECENT_CLAIM_CAPACITY`] of them, so a fast hash suffices here.
    by_resource: HashMap<String, Vec<RecentClaim>, foldhash::fast::RandomState>,
    len: usize,
}

struct RecentClaim {
    user: String,
    /// The browser session, for `owner = "session"` rules.
    session: Option<String>,
    fence: u64,
    until: Instant,
}

impl RecentClaims {
    pub fn new(store: Arc<dyn LockStore>) -> RecentClaims {
        let events = store.subscribe();
        RecentClaims {
            store,
            inner: Mutex::new(Recent {
                events,
                generation: 0,
                by_resource: HashMap::default(),
                len: 0,
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Recent> {
        let mut recent = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        recent.catch_up(self.store.as_ref());
        recent
    }

    /// The fence of the lock `user` (in `session`) was seen holding on `resource`, if that was
    /// less than [`RECENT_CLAIM_TTL`] ago and nothing has happened to the resource since.
    pub fn fence(&self, resource: &str, user: &str, session: Option<&str>) -> Option<u64> {
        self.fence_at(resource, user, session, Instant::now())
    }

    fn fence_at(
        &self,
        resource: &str,
        user: &str,
        session: Option<&str>,
        now: Instant,
    ) -> Option<u64> {
        let recent = self.lock();
        recent
            .by_resource
            .get(resource)?
            .iter()
            .find(|c| c.until > now && c.user == user && c.session.as_deref() == session)
            .map(|c| c.fence)
    }

    /// The current generation; take it before asking the store, and pass it to
    /// [`RecentClaims::remember`] with the answer.
    pub fn generation(&self) -> u64 {
        self.lock().generation
    }

    /// Remembers that `user` (in `session`) holds `resource` under `fence`, unless a lock
    /// event arrived since `generation` was taken.
    pub fn remember(
        &self,
        resource: &str,
        user: &str,
        session: Option<&str>,
        fence: u64,
        generation: u64,
    ) {
        let now = Instant::now();
        let mut recent = self.lock();
        if recent.generation != generation {
            return;
        }
        if recent.len >= RECENT_CLAIM_CAPACITY {
            recent.forget_expired(now);
            if recent.len >= RECENT_CLAIM_CAPACITY {
                recent.forget_all();
            }
        }
        let until = now + RECENT_CLAIM_TTL;
        let claims = recent.by_resource.entry(resource.to_string()).or_default();
        match claims
            .iter_mut()
            .find(|c| c.user == user && c.session.as_deref() == session)
        {
            Some(c) => {
                c.fence = fence;
                c.until = until;
            }
            None => {
                claims.push(RecentClaim {
                    user: user.to_string(),
                    session: session.map(str::to_string),
                    fence,
                    until,
                });
                recent.len += 1;
            }
        }
    }

    /// Forgets every claim: a lock changed in a way that sends no event (a release that
    /// only shortens the lease, as the `pagehide` beacon does).
    pub fn forget_all(&self) {
        let mut recent = self.lock();
        recent.forget_all();
        recent.generation += 1;
    }
}

impl Recent {
    /// Applies the lock events that arrived since the last look.
    fn catch_up(&mut self, store: &dyn LockStore) {
        loop {
            match self.events.try_recv() {
                Ok(event) => {
                    self.generation += 1;
                    if let Some(claims) = self.by_resource.remove(&event.resource) {
                        self.len -= claims.len();
                    }
                }
                Err(TryRecvError::Empty) => return,
                Err(TryRecvError::Lagged(_)) => {
                    self.generation += 1;
                    self.forget_all();
                }
                Err(TryRecvError::Closed) => {
                    // The store replaced its stream (Redis resubscribed): events were lost.
                    self.generation += 1;
                    self.forget_all();
                    self.events = store.subscribe();
                    return;
                }
            }
        }
    }

    fn forget_all(&mut self) {
        self.by_resource.clear();
        self.len = 0;
    }

    fn forget_expired(&mut self, now: Instant) {
        let mut len = 0;
        self.by_resource.retain(|_, claims| {
            claims.retain(|c| c.until > now);
            len += claims.len();
            !claims.is_empty()
        });
        self.len = len;
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

#[cfg(test)]
mod tests {
    use store::{ClaimOutcome, ClaimRequest, MemoryLockStore, ReleaseReason};

    use super::*;

    fn request(resource: &str, user: &str) -> ClaimRequest {
        ClaimRequest {
            resource: resource.into(),
            rule: "r".into(),
            holder: Holder {
                user: user.into(),
                name: user.into(),
                session: None,
            },
            lease: Duration::from_secs(30),
            instance: "test".into(),
            unsafe_method: false,
            max_per_user: None,
        }
    }

    async fn claimed(store: &MemoryLockStore, resource: &str, user: &str) -> u64 {
        match store.claim(&request(resource, user)).await.unwrap() {
            ClaimOutcome::Claimed(lock) | ClaimOutcome::Renewed(lock) => lock.fence,
            other => panic!("expected a claim, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn a_remembered_claim_answers_its_holder_only() {
        let store = MemoryLockStore::new();
        let recent = RecentClaims::new(store.clone());
        claimed(&store, "doc:1", "alice").await;
        let generation = recent.generation();
        let fence = claimed(&store, "doc:1", "alice").await;
        recent.remember("doc:1", "alice", None, fence, generation);
        assert_eq!(recent.fence("doc:1", "alice", None), Some(fence));
        assert_eq!(recent.fence("doc:1", "bob", None), None);
        assert_eq!(recent.fence("doc:1", "alice", Some("tab-1")), None);
        assert_eq!(recent.fence("doc:2", "alice", None), None);
    }

    #[tokio::test]
    async fn a_remembered_claim_lapses_after_the_ttl() {
        let store = MemoryLockStore::new();
        let recent = RecentClaims::new(store);
        let generation = recent.generation();
        recent.remember("doc:1", "alice", None, 7, generation);
        let now = Instant::now();
        assert_eq!(recent.fence_at("doc:1", "alice", None, now), Some(7));
        let later = now + RECENT_CLAIM_TTL + Duration::from_millis(1);
        assert_eq!(recent.fence_at("doc:1", "alice", None, later), None);
    }

    #[tokio::test]
    async fn a_lock_event_forgets_its_resource_before_the_next_answer() {
        let store = MemoryLockStore::new();
        let recent = RecentClaims::new(store.clone());
        let alice = claimed(&store, "doc:1", "alice").await;
        claimed(&store, "doc:2", "alice").await;
        let generation = recent.generation();
        recent.remember("doc:1", "alice", None, alice, generation);
        recent.remember("doc:2", "alice", None, alice, generation);
        store
            .release("doc:1", "alice", ReleaseReason::Client)
            .await
            .unwrap();
        assert_eq!(recent.fence("doc:1", "alice", None), None);
        assert!(recent.fence("doc:2", "alice", None).is_some());
    }

    #[tokio::test]
    async fn a_claim_answered_across_a_lock_event_is_not_remembered() {
        let store = MemoryLockStore::new();
        let recent = RecentClaims::new(store.clone());
        let generation = recent.generation();
        let fence = claimed(&store, "doc:1", "alice").await;
        // The claim itself emitted an event while it was in flight.
        recent.remember("doc:1", "alice", None, fence, generation);
        assert_eq!(recent.fence("doc:1", "alice", None), None);
    }

    #[tokio::test]
    async fn forget_all_forgets_every_resource() {
        let store = MemoryLockStore::new();
        let recent = RecentClaims::new(store);
        let generation = recent.generation();
        recent.remember("doc:1", "alice", None, 1, generation);
        recent.remember("doc:2", "bob", None, 2, generation);
        recent.forget_all();
        assert_eq!(recent.fence("doc:1", "alice", None), None);
        assert_eq!(recent.fence("doc:2", "bob", None), None);
    }
}
