//! The state one proxy instance shares between its request path, its banner sockets, its
//! background tasks and its admin port.

use std::borrow::Cow;
use std::future::Future;
use std::net::IpAddr;
use std::sync::Arc;
use std::task::Poll;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use auth::{Credential, Identity, Verifier};
use config::Config;
use http::HeaderMap;
use rules::{Owner, Rule, RuleSet};
use store::{EndedSessions, Holder, LockStore, StoreError, UnixMillis};

use crate::app_sockets::AppSockets;
use crate::apps::{AppId, Apps};
use crate::banner::Hub;
use crate::claim_rate::ClaimRate;
use crate::metrics::Metrics;
use crate::oidc::SignIn;
use crate::recent::RecentClaims;
use crate::shapes::ShapeBook;
use crate::tls_conn::ServerNames;

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
    #[error(transparent)]
    Upstream(#[from] crate::apps::Unusable),
    #[error("auth: {0}")]
    Auth(#[from] auth::KeyError),
    #[error("{0}")]
    Other(String),
}

pub struct Latch {
    pub config: Config,
    pub verifier: Arc<Verifier>,
    /// The active rule set, swapped as a whole: a request sees the old set or the new one.
    pub rules: ArcSwap<RuleSet>,
    pub store: Arc<dyn LockStore>,
    pub metrics: Metrics,
    pub hub: Hub,
    /// The apps behind this proxy, their upstreams resolved once at start so the request path
    /// never waits on DNS.
    pub apps: Apps,
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
    /// The app's own WebSockets on this instance that live under a lock (see [`AppSockets`]).
    pub app_sockets: AppSockets,
    /// The request shapes this instance saw (see [`ShapeBook`]).
    pub shapes: ShapeBook,
    /// Sign-in with the OpenID Provider, when `[oidc]` is set (see [`SignIn`]).
    pub sign_in: Option<SignIn>,
    /// The providers whose fetched keys this proxy keeps current ([`Auth::key_providers`]).
    pub key_providers: Vec<Arc<auth::Provider>>,
    /// Sign-in sessions ended by a logout on any instance, when `[oidc]` is set (see
    /// [`EndedSessions`]).
    pub ended: Option<EndedSessions>,
    /// The SNI of every open HTTPS connection, when several apps share the listener (see
    /// [`ServerNames`]).
    pub server_names: Arc<ServerNames>,
}

/// The sign-in session cookie of a request, as [`Latch::credential`] leaves it.
enum SessionCookie<'h> {
    /// Read with the token cookie, in the same pass: its value, if any.
    Read(Option<&'h str>),
    /// Not read yet: the request's bearer token counts, and the session cookie matters only if
    /// that token is refused.
    Unread(&'h HeaderMap),
}

impl crate::oidc::Proxy for Latch {
    fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    fn ended(&self) -> Option<&EndedSessions> {
        self.ended.as_ref()
    }

    fn renewal_turns(&self) -> &dyn auth::RenewalTurns {
        self.store.as_ref()
    }

    fn end_session(
        &self,
        ended: &EndedSessions,
        id: &str,
        until: UnixMillis,
    ) -> impl Future<Output = Result<(), StoreError>> + Send {
        self.store_op("end_session", ended.end(id, until))
    }
}

/// What checks who a request comes from: the token verifier of `[auth]` and, with `[oidc]`,
/// the relying party that signs users in. Built once per process and shared, so that a
/// control plane in the same process (`latch run`, `latch demo`) checks tokens with the same
/// keys as the proxy, fetched once: a rotation one of them learns of is known to both.
#[derive(Clone)]
pub struct Auth {
    pub verifier: Arc<Verifier>,
    pub party: Option<Arc<auth::RelyingParty>>,
}

impl Auth {
    pub fn new(config: &Config) -> Result<Auth, StartError> {
        let verifier = Arc::new(Verifier::new(config.auth.settings.clone())?);
        let party = match &config.oidc {
            Some(oidc) => Some(Arc::new(
                auth::RelyingParty::new(oidc.client(), &config.auth.settings, &oidc.cookie_secret)
                    .map_err(|e| StartError::Other(format!("oidc: {e}")))?,
            )),
            None => None,
        };
        Ok(Auth { verifier, party })
    }

    /// The providers whose keys have to be kept current: the process runs each once.
    pub fn key_providers(&self) -> Vec<Arc<auth::Provider>> {
        let party = self.party.as_ref().and_then(|party| party.keys());
        [self.verifier.provider(), party]
            .into_iter()
            .flatten()
            .cloned()
            .collect()
    }
}

impl Latch {
    /// The proxy's state, checking identities with `auth` (see [`Auth::new`]), which others in
    /// the process may share.
    pub fn new(
        config: Config,
        store: Arc<dyn LockStore>,
        rules: RuleSet,
        auth: Auth,
    ) -> Result<Arc<Latch>, StartError> {
        let apps = Apps::new(&config)?;
        let key_providers = auth.key_providers();
        let verifier = auth.verifier;
        let sign_in = SignIn::new(&config, auth.party);
        let metrics = Metrics::new();
        let rules = rules.with_dfa();
        metrics.rules_in_force(&rules);
        let op_latency = TIMED_OPS
            .iter()
            .map(|op| (*op, metrics.store_latency.with_label_values(&[op])))
            .collect();
        let recent = RecentClaims::new(store.clone());
        let claim_rate = ClaimRate::new(config.locks.claims_per_minute);
        let shapes = ShapeBook::new(config.proxy.shape_sample_every);
        Ok(Arc::new(Latch {
            config,
            verifier,
            rules: ArcSwap::from_pointee(rules),
            store: store.clone(),
            metrics,
            hub: Hub::default(),
            apps,
            rules_problem: std::sync::Mutex::new(None),
            audit: std::sync::OnceLock::new(),
            op_latency,
            recent,
            head_memo: Arc::default(),
            claim_rate,
            app_sockets: AppSockets::default(),
            shapes,
            ended: sign_in.as_ref().map(|_| EndedSessions::new(store.clone())),
            sign_in,
            key_providers,
            server_names: Arc::default(),
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

    /// [`Latch::authenticate`], and for a token (or assertion) naming a key the identity
    /// provider's fetched set does not hold, one rate-limited refetch of the set and a second
    /// try (the only network wait a request can have, bounded by `auth.jwks_timeout_ms`).
    /// Boxed, so the common path's future stays small. A sign-in session is given even past
    /// its renewal: the caller renews it (see [`crate::oidc::SignIn::renew`]).
    pub async fn authenticate_or_refetch(
        &self,
        headers: &HeaderMap,
        peer: Option<IpAddr>,
    ) -> Result<Arc<Identity>, auth::AuthError> {
        match self.identify(headers, peer) {
            Err(auth::AuthError::UnknownKey) if self.verifier.provider().is_some() => {
                Box::pin(async {
                    match self.credential(headers, peer)?.0 {
                        Credential::Token(token) | Credential::Assertion(token) => {
                            self.verifier.verify_or_refetch(token).await
                        }
                        _ => Err(auth::AuthError::UnknownKey),
                    }
                })
                .await
            }
            answer => answer,
        }
    }

    /// The identity a request proves, from whichever credential [`auth::credential`] says
    /// counts: a trusted auth proxy's assertion or headers, else its own token (bearer, then
    /// cookie). `peer` is the address of the connection it came on. A sign-in session whose
    /// ID token ended is refused until a request renews it.
    pub fn authenticate(
        &self,
        headers: &HeaderMap,
        peer: Option<IpAddr>,
    ) -> Result<Arc<Identity>, auth::AuthError> {
        let identity = self.identify(headers, peer)?;
        if identity.renewal.is_some() && identity.must_renew(crate::time_fmt::now_ms() / 1000) {
            return Err(auth::AuthError::Expired);
        }
        Ok(identity)
    }

    /// [`Latch::authenticate`] without the renewal check.
    fn identify(
        &self,
        headers: &HeaderMap,
        peer: Option<IpAddr>,
    ) -> Result<Arc<Identity>, auth::AuthError> {
        let (credential, session) = self.credential(headers, peer)?;
        match credential {
            // A refused token with a good sign-in session counts as the session: a browser
            // that still carries an old token cookie would otherwise go round the sign-in for
            // ever. The session alone grants as much, so the token adds nothing.
            Credential::Token(token) => self.verifier.verify(token).or_else(|refused| {
                let session = self.session_cookie(session);
                self.signed_in(session).map_err(|_| refused)
            }),
            Credential::Assertion(token) => self.verifier.verify(token),
            Credential::Forwarded(forwarded) => forwarded
                .identity(crate::time_fmt::now_ms() / 1000)
                .map(Arc::new),
            Credential::None => self.signed_in(self.session_cookie(session)),
        }
    }

    /// The sign-in session cookie's value, read now if [`Latch::credential`] left it unread.
    fn session_cookie<'h>(&self, cookie: SessionCookie<'h>) -> Option<&'h str> {
        match cookie {
            SessionCookie::Read(value) => value,
            SessionCookie::Unread(headers) => {
                let cookies = headers.get_all(http::header::COOKIE).iter();
                let [value] = auth::cookie_values(
                    cookies.map(|v| v.as_bytes()),
                    [self.session_cookie_name()],
                );
                value
            }
        }
    }

    /// The sign-in session cookie's name; empty (matching no cookie) without `[oidc]`.
    fn session_cookie_name(&self) -> &'static str {
        match self.sign_in {
            Some(_) => crate::oidc::SESSION_COOKIE,
            None => "",
        }
    }

    /// The identity of the sign-in session cookie's `value`, when sign-in is on and the
    /// request has one; a token, when present, is used instead.
    fn signed_in(&self, value: Option<&str>) -> Result<Arc<Identity>, auth::AuthError> {
        let Some(sign_in) = &self.sign_in else {
            return Err(auth::AuthError::Missing);
        };
        sign_in
            .sessions()
            .from_value(value, crate::time_fmt::now_ms() / 1000, |id| {
                self.ended.as_ref().is_some_and(|ended| ended.has_ended(id))
            })
    }

    /// What the request presents, gathered for [`auth::credential`], and the sign-in session
    /// cookie (both cookies found in one pass over the `Cookie` headers). Without
    /// `[trusted_proxy]` peers, only the token is looked at, as before, and a bearer token
    /// leaves the cookies unread: it counts over a token cookie, and the session cookie is
    /// needed only if it is refused. A trusted peer's identity header sent more than once is
    /// refused: which copy would be the auth proxy's cannot be told.
    fn credential<'h>(
        &self,
        headers: &'h HeaderMap,
        peer: Option<IpAddr>,
    ) -> Result<(Credential<'h>, SessionCookie<'h>), auth::AuthError> {
        let bearer = headers
            .get(http::header::AUTHORIZATION)
            .and_then(|v| auth::bearer_token(v.as_bytes()));
        let trusted = (self.config.trusted_proxy.as_ref()).filter(|trusted| trusted.trusts(peer));
        if let (Some(token), None) = (bearer, trusted) {
            return Ok((Credential::Token(token), SessionCookie::Unread(headers)));
        }
        let [token_cookie, session] = auth::cookie_values(
            headers
                .get_all(http::header::COOKIE)
                .iter()
                .map(|v| v.as_bytes()),
            [&self.config.auth.cookie, self.session_cookie_name()],
        );
        let session = SessionCookie::Read(session);
        let token = bearer.or(token_cookie);
        let Some(trusted) = trusted else {
            return Ok((token.map_or(Credential::None, Credential::Token), session));
        };
        let single = move |name: Option<&str>| -> Result<Option<&'h [u8]>, auth::AuthError> {
            let Some(name) = name else { return Ok(None) };
            let mut values = headers.get_all(name).iter();
            match (values.next(), values.next()) {
                (None, _) => Ok(None),
                (Some(value), None) => Ok(Some(value.as_bytes())),
                (Some(_), Some(_)) => Err(auth::AuthError::BadForwardedIdentity),
            }
        };
        let assertion = single(trusted.assertion_header())?
            .map(|value| std::str::from_utf8(value).map_err(|_| auth::AuthError::Malformed))
            .transpose()?;
        let [user, email, name, groups] = trusted.forwarded_headers();
        let presented = auth::Presented {
            trusted_peer: true,
            assertion,
            forwarded: auth::Forwarded {
                user: single(user)?,
                email: single(email)?,
                name: single(name)?,
                groups: single(groups)?,
            },
            token,
        };
        Ok((auth::credential(presented), session))
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

    /// The lock holder a request represents under the rule with id `rule_id`, as
    /// [`Latch::holder`]; when that rule was deleted since the lock was claimed, the user
    /// alone.
    pub fn holder_under(
        &self,
        identity: &Identity,
        rule_id: &str,
        session: Option<&str>,
    ) -> Holder {
        match self.rules.load().get(rule_id) {
            Some(rule) => self.holder(identity, rule, session),
            None => Holder {
                user: identity.user.clone(),
                name: identity.name.clone(),
                session: None,
            },
        }
    }

    /// The lease of lock `resource` under the rule with id `rule_id`, or its app's default
    /// when that rule was deleted.
    pub fn lease_under(&self, resource: &str, rule_id: &str) -> Duration {
        let app = self.apps.of_resource(resource);
        match self.rules.load().get(rule_id) {
            Some(rule) => self.lease_for(app, rule),
            None => self.app_lease(app),
        }
    }

    /// The grace period of lock `resource` under the rule with id `rule_id`, or its app's
    /// default when that rule was deleted.
    pub fn grace_under(&self, resource: &str, rule_id: &str) -> Duration {
        let app = self.apps.of_resource(resource);
        match self.rules.load().get(rule_id) {
            Some(rule) => self.grace_for(app, rule),
            None => self.app_grace(app),
        }
    }

    /// `[locks] lease_seconds`, or the app's own.
    fn app_lease(&self, app: AppId) -> Duration {
        self.apps.get(app).lease.unwrap_or(self.config.locks.lease)
    }

    /// `[locks] grace_seconds`, or the app's own.
    fn app_grace(&self, app: AppId) -> Duration {
        self.apps.get(app).grace.unwrap_or(self.config.locks.grace)
    }

    /// The lease under `rule` in `app`: the rule's own, else the app's, else `[locks]`.
    pub fn lease_for(&self, app: AppId, rule: &Rule) -> Duration {
        rule.lease_seconds
            .map(Duration::from_secs)
            .unwrap_or_else(|| self.app_lease(app))
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

    /// How long a holder under `rule` in `app` may show no activity before the lock is
    /// released: the rule's `idle_seconds`, else the app's, else `[locks] idle_seconds`; `None`
    /// when that is zero (off).
    pub fn idle_for(&self, app: AppId, rule: &Rule) -> Option<Duration> {
        let idle = rule
            .idle_seconds
            .map(Duration::from_secs)
            .or(self.apps.get(app).idle)
            .unwrap_or(self.config.locks.idle);
        (!idle.is_zero()).then_some(idle)
    }

    /// How long a freed resource of `rule` is reserved for the head of its wait queue.
    pub fn offer_for(&self, rule: &Rule) -> Duration {
        rule.offer_seconds
            .map(Duration::from_secs)
            .unwrap_or(self.config.locks.offer)
    }

    /// The grace period under `rule` in `app`: the rule's own, else the app's, else `[locks]`.
    pub fn grace_for(&self, app: AppId, rule: &Rule) -> Duration {
        rule.grace_seconds
            .map(Duration::from_secs)
            .unwrap_or_else(|| self.app_grace(app))
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
    pub fn attach_audit(&self, log: Arc<dyn store::EventLog>) -> Option<crate::task::Task> {
        let (auditor, task) = crate::audit::Auditor::new(log);
        self.audit.set(auditor).ok().map(|()| task)
    }

    pub fn set_rules_problem(&self, problem: Option<String>) {
        if let Ok(mut p) = self.rules_problem.lock() {
            *p = problem;
        }
    }
}
