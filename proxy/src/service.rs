//! The pingora `ProxyHttp` implementation: the path of one request through the hooks.
//!
//! `request_filter` does all the deciding — strip spoofed headers, normalize, serve the reserved
//! prefix, match, authenticate, claim/renew/deny — and leaves what the later hooks need in
//! [`Ctx`]. `upstream_request_filter` adds the identity and lock headers (see
//! [`crate::upstream_headers`]); `response_filter` and `response_body_filter` inject the banner
//! into HTML pages.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use auth::Identity;
use bytes::Bytes;
use http::{header, HeaderValue, Method};
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::prelude::*;
use pingora::proxy::{ProxyHttp, Session};
use rules::Mode;
use store::{ClaimOutcome, ClaimRequest};

use crate::inject_body::{self, InjectPlan};
use crate::metrics::Outcome;
use crate::respond::{self, Limit, LockedWhy, Reply};
use crate::state::{self, Latch, SESSION_COOKIE};
use crate::time_fmt::now_ms;
use crate::upstream_headers::UpstreamHeaders;
use crate::{endpoints, login};

/// Headers in this namespace are Latch's to set; anything a client sends there is removed.
const HEADER_NAMESPACE: &str = "x-latch-";

/// What the upstream is told about a lock the request goes through under.
#[derive(Debug)]
pub struct Granted {
    pub resource: String,
    /// Set when the requester holds the lock; `None` for a read-only viewer.
    pub fence: Option<u64>,
}

/// Per-request state carried between hooks.
#[derive(Default)]
pub struct Ctx {
    pub identity: Option<Arc<Identity>>,
    pub granted: Option<Granted>,
    /// A `Set-Cookie` value to add to the response (a new browser-session id).
    pub set_cookie: Option<String>,
    /// Set when this response should get the banner if it turns out to be an HTML page.
    pub inject: Option<InjectPlan>,
    /// Boxed: the rewriter is large, and the context lives inside every request's future.
    pub injector: Option<Box<inject_body::BodyInjector>>,
}

pub struct LatchProxy {
    pub latch: Arc<Latch>,
}

fn is_safe(method: &Method) -> bool {
    matches!(
        *method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE
    )
}

/// Does the request carry a body we have not read (so we must not let pingora drain it)?
fn has_body(req: &RequestHeader) -> bool {
    req.headers.contains_key(header::TRANSFER_ENCODING)
        || req
            .headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.trim() != "0")
}

/// Removes every client header an app server could read as one of Latch's. Header names are
/// compared ignoring case (pingora's map keeps them lower-case) and with `_` read as `-`: Rack,
/// CGI, PHP and WSGI servers fold `X_Latch_User` and `X-Latch_User` into `HTTP_X_LATCH_USER`,
/// the same variable as `X-Latch-User`.
fn strip_latch_headers(req: &mut RequestHeader) {
    let spoofed: Vec<_> = req
        .headers
        .keys()
        .filter(|k| is_latch_header(k.as_str()))
        .cloned()
        .collect();
    for name in spoofed {
        req.remove_header(&name);
    }
}

fn is_latch_header(lowercase_name: &str) -> bool {
    let prefix = HEADER_NAMESPACE.as_bytes();
    lowercase_name.len() >= prefix.len()
        && lowercase_name.as_bytes()[..prefix.len()]
            .iter()
            .zip(prefix)
            .all(|(&byte, &want)| byte == want || (byte == b'_' && want == b'-'))
}

/// Header values may not carry control characters; a display name could.
fn header_value(s: &str) -> HeaderValue {
    HeaderValue::from_str(s).unwrap_or_else(|_| {
        let clean: String = s.chars().filter(|c| !c.is_control()).collect();
        HeaderValue::from_str(&clean).unwrap_or_else(|_| HeaderValue::from_static(""))
    })
}

/// Lets the request through to the upstream under `resource`: as the holder with `fence`, or
/// as a read-only viewer (`None`). Pages of injecting rules become candidates for the banner.
fn grant(
    session: &mut Session,
    ctx: &mut Ctx,
    rule: &rules::Rule,
    resource: String,
    fence: Option<u64>,
    identity: Arc<Identity>,
    lease: Duration,
) {
    ctx.granted = Some(Granted { resource, fence });
    if rule.inject && inject_body::may_be_a_page(session.req_header()) {
        ctx.inject = Some(InjectPlan { lease });
    }
    ctx.identity = Some(identity);
}

/// A request target the proxy goes on with.
enum Admitted {
    /// Origin-form, with its path normalized.
    Path,
    /// `OPTIONS *`, forwarded as it is.
    Asterisk,
}

fn bad_target(e: rules::TargetError) -> Reply {
    Reply::problem(400, "Bad request target", &e.to_string())
}

impl LatchProxy {
    /// Puts the request target in origin-form with a normalized path, in place: the app then
    /// receives exactly the path the rules are matched against. Returns the 400 reply for a
    /// target or path that is refused.
    fn admit_target(&self, session: &mut Session) -> Result<Result<Admitted, Reply>> {
        let req = session.req_header();
        let is_options = req.method == Method::OPTIONS;
        let target = match rules::parse_target(req.raw_path(), is_options) {
            Ok(target) => target,
            Err(e) => return Ok(Err(bad_target(e))),
        };
        let absolute = match target {
            rules::Target::Asterisk => return Ok(Ok(Admitted::Asterisk)),
            rules::Target::Origin(_) => None,
            rules::Target::Absolute {
                authority,
                path_and_query,
            } => {
                // The app must see one host whichever way the client named it: `Host`, when
                // sent, has to name the same authority as the target (RFC 9112 §3.2.2).
                let host = req.headers.get(header::HOST).map(|h| h.as_bytes());
                if host.is_some_and(|host| !host.eq_ignore_ascii_case(authority.as_bytes())) {
                    return Ok(Err(Reply::problem(
                        400,
                        "Bad request target",
                        "the URL in the request line names another host than the Host header",
                    )));
                }
                let host = (host.is_none()).then(|| authority.to_owned());
                Some((path_and_query.to_origin_form(), host))
            }
        };
        if let Some((origin_form, host)) = absolute {
            let uri = origin_form
                .parse::<http::Uri>()
                .map_err(|e| Error::because(ErrorType::InvalidHTTPHeader, "request target", e))?;
            let req = session.req_header_mut();
            req.set_uri(uri);
            if let Some(host) = host {
                req.insert_header(header::HOST, host)?;
            }
        }

        let uri = &session.req_header().uri;
        let normalized = match rules::normalize_path(uri.path()) {
            Ok(p) => p,
            Err(e) => return Ok(Err(Reply::problem(400, "Bad request path", &e.to_string()))),
        };
        if let std::borrow::Cow::Owned(new_path) = normalized {
            let target = match uri.query() {
                Some(q) => format!("{new_path}?{q}"),
                None => new_path,
            };
            let new_uri = target
                .parse::<http::Uri>()
                .map_err(|e| Error::because(ErrorType::InvalidHTTPHeader, "normalized path", e))?;
            session.req_header_mut().set_uri(new_uri);
        }
        Ok(Ok(Admitted::Path))
    }

    async fn bad_request(&self, session: &mut Session, reply: Reply) -> Result<bool> {
        self.latch.metrics.count(Outcome::BadRequest);
        let body = has_body(session.req_header());
        reply.send(session, body).await?;
        Ok(true)
    }

    async fn unauthenticated(&self, session: &mut Session, err: auth::AuthError) -> Result<bool> {
        self.latch.metrics.count(Outcome::Unauthenticated);
        let reply = login::challenge(&self.latch, session, &err);
        let body = has_body(session.req_header());
        reply.send(session, body).await?;
        Ok(true)
    }
}

#[async_trait]
impl ProxyHttp for LatchProxy {
    type CTX = Ctx;

    fn new_ctx(&self) -> Ctx {
        Ctx::default()
    }

    /// None. pingora's default is a compression module, disabled, whose set-up every request
    /// would pay for; a rewritten page brings its own encoder (see [`inject_body`]).
    fn init_downstream_modules(&self, _modules: &mut pingora::modules::http::HttpModules) {}

    async fn request_filter(&self, session: &mut Session, ctx: &mut Ctx) -> Result<bool> {
        strip_latch_headers(session.req_header_mut());

        match self.admit_target(session)? {
            Ok(Admitted::Path) => {}
            // `OPTIONS *` asks about the server as a whole; no rule can match it.
            Ok(Admitted::Asterisk) => {
                self.latch.metrics.count(Outcome::Passed);
                return Ok(false);
            }
            Err(reply) => return Box::pin(self.bad_request(session, reply)).await,
        }

        let prefix = &self.latch.config.proxy.prefix;
        let path = session.req_header().uri.path();
        if path.len() > prefix.len()
            && path.starts_with(prefix.as_str())
            && path.as_bytes()[prefix.len()] == b'/'
        {
            self.latch.metrics.count(Outcome::Internal);
            if session.req_header().method == Method::POST {
                // Release and takeover: a `pagehide` release shortens a lease without any lock
                // event, so what this instance remembers of recent claims no longer holds.
                self.latch.recent.forget_all();
            }
            Box::pin(endpoints::serve(&self.latch, session)).await?;
            return Ok(true);
        }

        let rule_path = match self.latch.rule_path(path) {
            Ok(rule_path) => rule_path,
            Err(e) => {
                let reply = Reply::problem(400, "Bad request path", &e.to_string());
                return Box::pin(self.bad_request(session, reply)).await;
            }
        };
        let rules = self.latch.rules.load();
        let method = session.req_header().method.clone();
        let found = rules.find(method.as_str(), &rule_path);
        drop(rule_path);
        let Some(matched) = found else {
            if self.latch.config.auth.require == config::Require::All {
                match self.latch.authenticate(&session.req_header().headers) {
                    Ok(id) => ctx.identity = Some(id),
                    Err(e) => return Box::pin(self.unauthenticated(session, e)).await,
                }
            }
            self.latch.metrics.count(Outcome::Passed);
            return Ok(false);
        };

        // Preflights carry no credentials and change nothing: they pass unclaimed.
        if method == Method::OPTIONS {
            self.latch.metrics.count(Outcome::Passed);
            return Ok(false);
        }

        let identity = match self.latch.authenticate(&session.req_header().headers) {
            Ok(id) => id,
            Err(e) => return Box::pin(self.unauthenticated(session, e)).await,
        };

        let rule = matched.rule;
        let resource = matched.resource;
        let headers = &session.req_header().headers;
        let sid = match rule.owner {
            rules::Owner::User => None,
            rules::Owner::Session => match state::cookie(headers, SESSION_COOKIE) {
                Some(sid) => Some(sid.to_string()),
                None => {
                    let sid = state::new_session_id();
                    ctx.set_cookie = Some(format!(
                        "{SESSION_COOKIE}={sid}; Path=/; HttpOnly; SameSite=Lax"
                    ));
                    Some(sid)
                }
            },
        };
        let lease = self.latch.lease_for(rule);
        let unsafe_method = !is_safe(&method);
        let owner_session = match rule.owner {
            rules::Owner::User => None,
            rules::Owner::Session => sid.as_deref(),
        };
        if !unsafe_method {
            if let Some(fence) = self
                .latch
                .recent
                .fence(&resource, &identity.user, owner_session)
            {
                self.latch.metrics.count(Outcome::Renewed);
                grant(session, ctx, rule, resource, Some(fence), identity, lease);
                return Ok(false);
            }
        }
        let holder = self.latch.holder(&identity, rule, sid.as_deref());
        // A user past `claims_per_minute` still renews what they hold: the claim asks the store
        // for no new lock at all.
        let rate_wait = self.latch.claim_rate.wait(&identity.user);
        let max_per_user = match rate_wait {
            Some(_) => Some(0),
            None => self.latch.max_per_user_for(rule),
        };
        let request = ClaimRequest {
            resource: resource.clone(),
            rule: rule.id.clone(),
            holder,
            lease,
            instance: self.latch.config.proxy.instance.clone(),
            unsafe_method,
            max_per_user,
        };
        let html = respond::wants_html(session);
        let body = has_body(session.req_header());
        let generation = self.latch.recent.generation();
        let outcome = Box::pin(
            self.latch
                .store_op("claim", self.latch.store.claim(&request)),
        )
        .await;
        match &outcome {
            Ok(ClaimOutcome::Claimed(_)) => {
                self.latch.metrics.count(Outcome::Claimed);
                self.latch.claim_rate.took(&identity.user);
            }
            Ok(ClaimOutcome::Renewed(_)) => self.latch.metrics.count(Outcome::Renewed),
            _ => {}
        }

        let now = now_ms();
        let denied = |why: LockedWhy, lock: Option<&store::Lock>, page_path: &str| {
            tracing::info!(
                rule = %rule.id,
                resource = %resource,
                holder = lock.map(|l| l.holder.user.as_str()).unwrap_or("-"),
                requester = %identity.user,
                method = %method,
                reason = ?why,
                "denied"
            );
            if let Some(audit) = self.latch.audit.get() {
                audit.denied(
                    &rule.id,
                    &resource,
                    &identity.user,
                    lock,
                    &self.latch.config.proxy.instance,
                );
            }
            let tag = (html && rule.inject)
                .then(|| self.latch.banner_tag(page_path, lease, "blocked", None));
            respond::locked(html, why, &resource, lock, tag.as_deref(), now)
        };

        let reply = match outcome {
            Ok(ClaimOutcome::Claimed(lock)) | Ok(ClaimOutcome::Renewed(lock)) => {
                self.latch.recent.remember(
                    &resource,
                    &identity.user,
                    owner_session,
                    lock.fence,
                    generation,
                );
                grant(
                    session,
                    ctx,
                    rule,
                    resource,
                    Some(lock.fence),
                    identity,
                    lease,
                );
                return Ok(false);
            }
            Ok(ClaimOutcome::Held(lock)) => {
                let same_user = lock.holder.user == identity.user;
                match rule.mode {
                    Mode::ReadOnly if !unsafe_method => {
                        self.latch.metrics.count(Outcome::ReadOnly);
                        grant(session, ctx, rule, resource, None, identity, lease);
                        return Ok(false);
                    }
                    Mode::Redirect if !unsafe_method && !same_user => match matched.redirect_to {
                        Some(target) => {
                            self.latch.metrics.count(Outcome::Redirected);
                            tracing::info!(
                                rule = %rule.id, resource = %resource,
                                holder = %lock.holder.user, requester = %identity.user,
                                "redirected"
                            );
                            Reply::empty(303).header(header::LOCATION, target)
                        }
                        None => {
                            tracing::warn!(rule = %rule.id, "redirect target rendered off-site; blocking instead");
                            self.latch.metrics.count(Outcome::Denied);
                            denied(
                                LockedWhy::OtherUser,
                                Some(&lock),
                                session.req_header().uri.path(),
                            )
                        }
                    },
                    Mode::ReadOnly => {
                        self.latch.metrics.count(Outcome::Denied);
                        denied(
                            LockedWhy::ReadOnly,
                            Some(&lock),
                            session.req_header().uri.path(),
                        )
                    }
                    _ => {
                        self.latch.metrics.count(Outcome::Denied);
                        let why = if same_user {
                            LockedWhy::OtherSession
                        } else {
                            LockedWhy::OtherUser
                        };
                        denied(why, Some(&lock), session.req_header().uri.path())
                    }
                }
            }
            Ok(ClaimOutcome::Displaced { current }) => {
                self.latch.metrics.count(Outcome::Denied);
                denied(
                    LockedWhy::Displaced,
                    current.as_ref(),
                    session.req_header().uri.path(),
                )
            }
            Ok(ClaimOutcome::Limited { held, max }) => {
                // Past the cap, a slot frees when a held page closes, or at the latest when
                // its lease runs out.
                let (limit, counted, retry) = match rate_wait {
                    Some(wait) => (
                        Limit::Rate,
                        Outcome::RateLimited,
                        wait.as_secs() + u64::from(wait.subsec_nanos() > 0),
                    ),
                    None => (
                        Limit::Held { held: &held, max },
                        Outcome::OverCap,
                        lease.as_secs(),
                    ),
                };
                self.latch.metrics.count(counted);
                tracing::info!(
                    rule = %rule.id,
                    resource = %resource,
                    requester = %identity.user,
                    limit = limit.key(),
                    "claim refused past the user's limit"
                );
                if let Some(audit) = self.latch.audit.get() {
                    let detail = match limit {
                        Limit::Held { held, max } => {
                            serde_json::json!({ "held": held, "max": max })
                        }
                        Limit::Rate => serde_json::json!({
                            "claims_per_minute": self.latch.config.locks.claims_per_minute,
                        }),
                    };
                    audit.limited(
                        &rule.id,
                        &resource,
                        &identity.user,
                        &self.latch.config.proxy.instance,
                        limit.key(),
                        detail,
                    );
                }
                respond::too_many(html, limit, &resource, retry)
            }
            Err(e) => {
                self.latch.metrics.count(Outcome::StoreError);
                match self.latch.config.locks.on_store_error {
                    config::OnStoreError::Allow => {
                        tracing::warn!(resource = %resource, error = %e, "lock store unavailable; allowing (on_store_error = allow)");
                        ctx.identity = Some(identity);
                        return Ok(false);
                    }
                    config::OnStoreError::Deny => {
                        tracing::warn!(resource = %resource, error = %e, "lock store unavailable; denying");
                        let reply = if html {
                            Reply::new(
                                503,
                                "text/html; charset=utf-8",
                                "<!doctype html><title>Temporarily unavailable</title><h1>Temporarily unavailable</h1>\
                                 <p>The lock service cannot be reached, so this page cannot be opened safely. Try again in a few seconds.</p>",
                            )
                        } else {
                            Reply::problem(
                                503,
                                "Lock store unavailable",
                                "The lock service cannot be reached; try again shortly.",
                            )
                        };
                        reply.header(header::RETRY_AFTER, "5")
                    }
                }
            }
        };
        let reply = match ctx.set_cookie.take() {
            Some(c) => reply.header(header::SET_COOKIE, c),
            None => reply,
        };
        Box::pin(reply.send(session, body)).await?;
        Ok(true)
    }

    async fn upstream_peer(&self, session: &mut Session, _ctx: &mut Ctx) -> Result<Box<HttpPeer>> {
        let mut peer = HttpPeer::new(self.latch.upstream, false, String::new());
        peer.options.connection_timeout = Some(Duration::from_secs(5));
        // No idle timeout on pooled upstream connections: each would arm a timer for every
        // request. A pooled connection is watched for the upstream closing it and dropped then;
        // the pool is bounded, and an idempotent request that fails on a reused connection is
        // retried on a new one.
        //
        // An app's WebSocket may sit idle for as long as its page is open; any other response
        // is bounded by `proxy.upstream_timeout_seconds` between reads.
        if !session.is_upgrade_req() {
            peer.options.read_timeout = self.latch.config.proxy.upstream_timeout;
        }
        Ok(Box::new(peer))
    }

    async fn upstream_request_filter(
        &self,
        _session: &mut Session,
        upstream: &mut RequestHeader,
        ctx: &mut Ctx,
    ) -> Result<()> {
        let mut add = UpstreamHeaders {
            // An identity body is cheapest to rewrite; gzip/br that arrive anyway are decoded.
            accept_identity: ctx.inject.is_some(),
            ..UpstreamHeaders::default()
        };
        if let Some(id) = &ctx.identity {
            add.user = Some(header_value(&id.user));
            add.user_name = Some(header_value(&id.name));
        }
        if let Some(granted) = &ctx.granted {
            add.resource = Some(header_value(&granted.resource));
            add.fence = granted.fence.map(HeaderValue::from);
            add.access = Some(HeaderValue::from_static(match granted.fence {
                Some(_) => "exclusive",
                None => "read_only",
            }));
        }
        add.apply(upstream, self.latch.config.proxy.header_case)
    }

    async fn response_filter(
        &self,
        session: &mut Session,
        resp: &mut ResponseHeader,
        ctx: &mut Ctx,
    ) -> Result<()> {
        if let Some(cookie) = ctx.set_cookie.take() {
            resp.append_header(header::SET_COOKIE, cookie)?;
        }
        if let Some(plan) = ctx.inject.take() {
            ctx.injector = inject_body::prepare(&self.latch, session, resp, &plan).map(Box::new);
        }
        Ok(())
    }

    fn response_body_filter(
        &self,
        _session: &mut Session,
        body: &mut Option<Bytes>,
        end_of_stream: bool,
        ctx: &mut Ctx,
    ) -> Result<Option<Duration>> {
        if let Some(injector) = ctx.injector.as_mut() {
            if let Err(inject_body::Abort(why)) = injector.filter(&self.latch, body, end_of_stream)
            {
                return Error::e_explain(ErrorType::InternalError, why);
            }
        }
        Ok(None)
    }
}
