//! The pingora `ProxyHttp` implementation: the path of one request through the hooks.
//!
//! `request_filter` strips spoofed headers, then `route` gathers the facts — the request
//! target, the reserved prefix, the matching rule, the identity, the lock store's answer — and
//! [`gate::decide`] (pure) says what happens; every request is counted once, by its outcome,
//! before it is answered. What the later hooks need is left in [`Ctx`]. `upstream_request_filter` adds the identity and lock headers (see
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
use pingora::proxy::{FailToProxy, ProxyHttp, Session};
use store::{ClaimOutcome, ClaimRequest};

use crate::apps::{AppId, HostRefusal};
use crate::cookies::{self, SESSION_COOKIE};
use crate::fenced::Fenced;
use crate::inject_body::{self, InjectPlan};
use crate::metrics::Outcome;
use crate::peer::{self, peer_ip};
use crate::respond::{self, Reply};
use crate::state::Latch;
use crate::time_fmt::now_ms;
use crate::tls_conn::ConnName;
use crate::upstream::Attempt;
use crate::upstream_headers::UpstreamHeaders;
use crate::{app_sse, app_ws, endpoints, gate, login, stash};

/// Headers in this namespace are Latch's to set; anything a client sends there is removed.
const HEADER_NAMESPACE: &str = "x-latch-";

/// What the upstream is told about a lock the request goes through under.
#[derive(Debug)]
pub struct Granted {
    pub resource: String,
    /// Set when the requester holds the lock; `None` for a read-only viewer.
    pub fence: Option<u64>,
    /// The rule fences the app's long-lived connections (`websocket = "lock"`).
    pub fences_streams: bool,
}

/// Per-request state carried between hooks.
#[derive(Default)]
pub struct Ctx {
    /// The app the request was routed to (see [`crate::apps`]); `0` until routed, which is
    /// the only app in the one-app case.
    pub app: AppId,
    pub identity: Option<Arc<Identity>>,
    pub granted: Option<Granted>,
    /// `Set-Cookie` values to add to the response (a new browser-session id, a renewed
    /// sign-in session).
    pub set_cookie: Vec<String>,
    /// Set when this response should get the banner if it turns out to be an HTML page.
    pub inject: Option<InjectPlan>,
    /// Boxed: the rewriter is large, and the context lives inside every request's future.
    pub injector: Option<Box<inject_body::BodyInjector>>,
    /// Which of the app's servers this request went to, and which it tried.
    pub upstream: Attempt,
}

pub struct LatchProxy {
    pub latch: Arc<Latch>,
    /// `Strict-Transport-Security` for responses over TLS (`tls.hsts_seconds`).
    hsts: Option<HeaderValue>,
}

impl LatchProxy {
    pub fn new(latch: Arc<Latch>) -> LatchProxy {
        let hsts = latch
            .config
            .tls
            .as_ref()
            .and_then(|tls| tls.hsts)
            .and_then(|max_age| {
                HeaderValue::try_from(format!("max-age={}", max_age.as_secs())).ok()
            });
        LatchProxy { latch, hsts }
    }
}

fn is_safe(method: &Method) -> bool {
    matches!(
        *method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE
    )
}

/// Does the request ask to become a WebSocket? One header lookup, made only for requests a
/// rule matched.
fn asks_for_websocket(req: &RequestHeader) -> bool {
    req.headers
        .get(header::UPGRADE)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"websocket"))
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

/// Removes the identity headers of `[trusted_proxy]` that must not reach the app: from a peer
/// that is not trusted, every spelling of them (any case, `_` for `-`); from a trusted one,
/// the spellings with `_`, which the auth proxy did not set (it sets the names it was told)
/// but which an app server would read as the same header.
fn strip_identity_headers(
    req: &mut RequestHeader,
    trusted: &auth::TrustedProxy,
    from_trusted: bool,
) {
    let spoofed: Vec<_> = req
        .headers
        .keys()
        .filter(|k| {
            trusted.is_identity_header(k.as_str()) && (!from_trusted || k.as_str().contains('_'))
        })
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
        // An HTTP/2 request names its host in `:authority`, which pingora keeps in the URI
        // (and has already checked against any `Host`). Everything after this reads `Host`, as
        // for HTTP/1.1: the origin checks, the sign-in's callback, the app.
        if session.is_http2() && !session.req_header().headers.contains_key(header::HOST) {
            if let Some(authority) = session.req_header().uri.authority() {
                let host = authority.as_str().to_owned();
                session.req_header_mut().insert_header(header::HOST, host)?;
            }
        }
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

    /// Is `path` under the reserved prefix, served by the proxy itself?
    fn is_reserved(&self, path: &str) -> bool {
        let prefix = &self.latch.config.proxy.prefix;
        path.len() > prefix.len()
            && path.starts_with(prefix.as_str())
            && path.as_bytes()[prefix.len()] == b'/'
    }

    /// Decides what happens to a request, and how it is counted. Only the lock store is asked
    /// anything; the answer is written by [`ProxyHttp::request_filter`].
    async fn route(&self, session: &mut Session, ctx: &mut Ctx) -> Result<(Outcome, Step)> {
        match self.admit_target(session)? {
            Ok(Admitted::Path) => {}
            // `OPTIONS *` asks about the server as a whole; no rule can match it.
            Ok(Admitted::Asterisk) => return Ok((Outcome::Passed, Step::Forward)),
            Err(reply) => return Ok((Outcome::BadRequest, Step::Reply(reply))),
        }
        // The app is decided before anything else looks at the request, the proxy's own
        // endpoints included: a host that names no app reaches nothing.
        let req = session.req_header();
        ctx.app = match self.latch.apps.route(&req.uri, &req.headers) {
            Ok(app) => app,
            Err(refusal) => return Ok(self.no_app(refusal)),
        };
        // Over TLS, a connection opened for one app's name carries requests for that app
        // only: a browser that reused it for another host is told to open a new one.
        if self.latch.apps.routed() {
            let digest = session.digest().and_then(|d| d.ssl_digest.as_ref());
            let agrees = match self.latch.server_names.of(digest) {
                ConnName::Plain => true,
                ConnName::Tls(sni) => self.latch.apps.sni_agrees(sni.as_deref(), ctx.app),
                // The connection is gone: nothing can be answered on it, and nothing is sent
                // on its behalf.
                ConnName::Gone => false,
            };
            if !agrees {
                return Ok(self.no_app(HostRefusal::OtherConnection));
            }
        }

        let path = session.req_header().uri.path();
        if self.is_reserved(path) {
            if session.req_header().method == Method::POST {
                // Release and takeover: a `pagehide` release shortens a lease without any lock
                // event, so what this instance remembers of recent claims no longer holds.
                self.latch.recent.forget_all();
            }
            return Ok((Outcome::Internal, Step::Endpoint));
        }

        let rule_path = match self.latch.rule_path(path) {
            Ok(rule_path) => rule_path,
            Err(e) => {
                let reply = Reply::problem(400, "Bad request path", &e.to_string());
                return Ok((Outcome::BadRequest, Step::Reply(reply)));
            }
        };
        let rules = self.latch.rules.load();
        let method = session.req_header().method.clone();
        let app_name = self.latch.apps.name(ctx.app);
        let found = rules.find_in(app_name, method.as_str(), &rule_path);
        let rule_id = found.as_ref().map(|m| m.rule.id.as_str());
        let noted = crate::shapes::Noted {
            method: &method,
            path: &rule_path,
            app: app_name,
            rule: rule_id,
        };
        // Only a sampled request is authenticated here, for the sample of recent requests.
        let req = session.req_header();
        (self.latch.shapes).note(noted, req, || {
            let identity = self.latch.authenticate(&req.headers, peer_ip(session));
            identity.ok().map(|identity| identity.user.clone())
        });
        drop(rule_path);
        let Some(matched) = found else {
            if self.latch.config.auth.require == config::Require::All {
                match self.identify(session, ctx).await {
                    Ok(id) => ctx.identity = Some(id),
                    Err(e) => return Ok(self.unauthenticated(session, &e)),
                }
            }
            return Ok((Outcome::Passed, Step::Forward));
        };

        // Preflights carry no credentials and change nothing: they pass unclaimed.
        if method == Method::OPTIONS {
            return Ok((Outcome::Passed, Step::Forward));
        }

        let identity = match self.identify(session, ctx).await {
            Ok(id) => id,
            Err(e) => return Ok(self.unauthenticated(session, &e)),
        };
        self.under_rule(session, ctx, matched, identity, method)
            .await
    }

    /// Who the request is from ([`Latch::authenticate_or_refetch`]), its sign-in session
    /// renewed first when due; the renewed cookie goes out with the response.
    async fn identify(
        &self,
        session: &Session,
        ctx: &mut Ctx,
    ) -> Result<Arc<Identity>, auth::AuthError> {
        let identity = (self.latch)
            .authenticate_or_refetch(&session.req_header().headers, peer_ip(session))
            .await?;
        let due = identity
            .renewal
            .is_some_and(|r| crate::time_fmt::now_ms() / 1000 >= r.from);
        let Some(sign_in) = self.latch.sign_in.as_ref().filter(|_| due) else {
            return Ok(identity);
        };
        let (identity, cookie) = Box::pin(sign_in.renew(session, &*self.latch, identity)).await?;
        ctx.set_cookie.extend(cookie);
        Ok(identity)
    }

    /// The answer to a request for no app: never forwarded, and never served by another app.
    fn no_app(&self, refusal: HostRefusal) -> (Outcome, Step) {
        match refusal {
            HostRefusal::OtherConnection => {
                let reply = Reply::problem(
                    421,
                    "Misdirected request",
                    "this connection was opened for another host name (TLS SNI); open one for \
                     this host",
                );
                (Outcome::UnknownHost, Step::Reply(reply))
            }
            HostRefusal::Ambiguous => {
                let reply =
                    Reply::problem(400, "Bad request", "the request names two different hosts");
                (Outcome::BadRequest, Step::Reply(reply))
            }
            HostRefusal::Unknown => {
                let status = self.latch.config.proxy.unknown_host.status();
                let reply = if status == 421 {
                    Reply::problem(
                        421,
                        "Misdirected request",
                        "this server does not serve that host name",
                    )
                } else {
                    Reply::problem(
                        404,
                        "Not found",
                        "this server does not serve that host name",
                    )
                };
                (Outcome::UnknownHost, Step::Reply(reply))
            }
        }
    }

    fn unauthenticated(&self, session: &Session, err: &auth::AuthError) -> (Outcome, Step) {
        let reply = login::challenge(&self.latch, session, err);
        (Outcome::Unauthenticated, Step::Reply(reply))
    }

    /// A request a rule protects, from a signed-in user: claims or renews the lock (or
    /// remembers a claim from a moment ago), then carries out what [`gate::decide`] says.
    async fn under_rule(
        &self,
        session: &mut Session,
        ctx: &mut Ctx,
        matched: rules::Match<'_>,
        identity: Arc<Identity>,
        method: Method,
    ) -> Result<(Outcome, Step)> {
        let rule = matched.rule;
        let resource = matched.resource;
        let sid = match rule.owner {
            rules::Owner::User => None,
            rules::Owner::Session => Some(self.browser_session(session, ctx)),
        };
        let lease = self.latch.lease_for(ctx.app, rule);
        let kind = gate::Kind::of(
            is_safe(&method),
            asks_for_websocket(session.req_header()),
            rule.websocket,
        );
        let safe = kind.is_safe();
        let remembered = if safe {
            self.latch
                .recent
                .fence(&resource, &identity.user, sid.as_deref())
        } else {
            None
        };

        let mut rate_wait = None;
        let mut generation = 0;
        let outcome = match remembered {
            Some(_) => None,
            None => {
                // A user past `claims_per_minute` still renews what they hold: the claim asks
                // the store for no new lock at all.
                rate_wait = self.latch.claim_rate.wait(&identity.user);
                let max_per_user = match rate_wait {
                    Some(_) => Some(0),
                    None => self.latch.max_per_user_for(rule),
                };
                let request = ClaimRequest {
                    resource: resource.clone(),
                    rule: rule.id.clone(),
                    holder: self.latch.holder(&identity, rule, sid.as_deref()),
                    lease,
                    instance: self.latch.config.proxy.instance.clone(),
                    unsafe_method: !safe,
                    max_per_user,
                };
                generation = self.latch.recent.generation();
                let claim = self.latch.store.claim(&request);
                Some(Box::pin(self.latch.store_op("claim", claim)).await)
            }
        };
        let claim = match (&outcome, remembered) {
            (_, Some(fence)) => gate::Claim::Remembered { fence },
            (Some(Ok(outcome)), _) => gate::Claim::Store(outcome),
            _ => gate::Claim::Failed,
        };
        let facts = gate::Facts {
            claim,
            user: &identity.user,
            mode: rule.mode,
            safe,
            redirect_to: matched.redirect_to.as_deref(),
            rate_wait,
            lease,
            on_store_error: self.latch.config.locks.on_store_error,
        };
        let (verdict, decision) = gate::decide(&facts);

        let step = match decision {
            gate::Decision::Grant { fence: Some(fence) } if kind == gate::Kind::FencedSocket => {
                if verdict == (gate::Verdict::Hold { claimed: true }) {
                    self.latch.claim_rate.took(&identity.user);
                }
                let fenced = self.fenced(ctx.app, &identity, rule, sid, resource, fence);
                Step::AppSocket(Box::new(fenced))
            }
            gate::Decision::Grant { fence } => {
                if let (gate::Claim::Store(_), Some(fence)) = (claim, fence) {
                    self.latch.recent.remember(
                        &resource,
                        &identity.user,
                        sid.as_deref(),
                        fence,
                        generation,
                    );
                }
                if verdict == (gate::Verdict::Hold { claimed: true }) {
                    self.latch.claim_rate.took(&identity.user);
                }
                // The holder's event stream lives under the lock, like a fenced socket; a
                // read-only viewer's is an ordinary response.
                let stream = fence.filter(|_| {
                    rule.websocket == rules::WebSocket::Lock
                        && app_sse::asks_for_event_stream(session.req_header())
                        && !has_body(session.req_header())
                });
                if let Some(fence) = stream {
                    let fenced = self.fenced(ctx.app, &identity, rule, sid, resource, fence);
                    return Ok((Outcome::from(verdict), Step::AppStream(Box::new(fenced))));
                }
                ctx.granted = Some(Granted {
                    resource,
                    fence,
                    fences_streams: rule.websocket == rules::WebSocket::Lock,
                });
                if rule.inject && inject_body::may_be_a_page(session.req_header()) {
                    ctx.inject = Some(InjectPlan { lease });
                }
                ctx.identity = Some(identity);
                Step::Forward
            }
            gate::Decision::Pass => {
                if let Some(Err(e)) = &outcome {
                    tracing::warn!(resource = %resource, error = %e, "lock store unavailable; allowing (on_store_error = allow)");
                }
                ctx.identity = Some(identity);
                Step::Forward
            }
            gate::Decision::Reply(refusal) => {
                let refused = Refused {
                    rule,
                    resource: &resource,
                    user: &identity.user,
                    method: &method,
                    lease,
                };
                let reply = self.refuse(session, &refused, refusal, outcome.as_ref());
                if !safe && reply.status == 423 {
                    // Only a write refused for want of the lock: what was typed is kept.
                    let keep =
                        stash::keep_refused(&self.latch, session, &identity.user, &resource, reply);
                    Step::Reply(Box::pin(keep).await)
                } else {
                    Step::Reply(reply)
                }
            }
        };
        Ok((Outcome::from(verdict), step))
    }

    /// The lock a granted long-lived connection of the app opens under.
    fn fenced(
        &self,
        app: AppId,
        identity: &Identity,
        rule: &rules::Rule,
        sid: Option<String>,
        resource: String,
        fence: u64,
    ) -> Fenced {
        let holder = self.latch.holder(identity, rule, sid.as_deref());
        Fenced {
            resource,
            app,
            fence,
            owner: holder.owner_key(),
            user: holder.user,
            user_name: holder.name,
            expires_at: identity.expires_at,
            sign_in: identity.sign_in.clone(),
        }
    }

    /// The browser session of an `owner = "session"` request: its `latch_sid` cookie, or a new
    /// id that the response sets.
    fn browser_session(&self, session: &Session, ctx: &mut Ctx) -> String {
        match cookies::cookie(&session.req_header().headers, SESSION_COOKIE) {
            Some(sid) => sid.to_string(),
            None => {
                let sid = cookies::new_session_id();
                // Over TLS the cookie is never sent over plain HTTP, where it could be read.
                let secure = if peer::is_tls(session) {
                    "; Secure"
                } else {
                    ""
                };
                ctx.set_cookie.push(format!(
                    "{SESSION_COOKIE}={sid}; Path=/; HttpOnly; SameSite=Lax{secure}"
                ));
                sid
            }
        }
    }

    /// Logs and audits a refusal, and builds its answer.
    fn refuse(
        &self,
        session: &Session,
        refused: &Refused<'_>,
        refusal: gate::Refusal<'_>,
        outcome: Option<&Result<ClaimOutcome, store::StoreError>>,
    ) -> Reply {
        let html = respond::wants_html(session);
        let Refused {
            rule,
            resource,
            user,
            method,
            lease,
        } = *refused;
        let instance = &self.latch.config.proxy.instance;
        match refusal {
            gate::Refusal::Redirect(target) => {
                let holder = outcome
                    .and_then(|o| o.as_ref().ok())
                    .and_then(ClaimOutcome::lock)
                    .map_or("-", |l| l.holder.user.as_str());
                tracing::info!(
                    rule = %rule.id, resource = %resource, holder = %holder, requester = %user,
                    "redirected"
                );
                Reply::empty(303).header(header::LOCATION, target)
            }
            gate::Refusal::Locked { why, lock } => {
                // In redirect mode another user's safe request is blocked only when the target
                // rendered off-site (see `gate::verdict`); unsafe ones are blocked by design.
                if rule.mode == rules::Mode::Redirect
                    && why == gate::LockedWhy::OtherUser
                    && is_safe(method)
                {
                    tracing::warn!(rule = %rule.id, "redirect target rendered off-site; blocking instead");
                }
                tracing::info!(
                    rule = %rule.id,
                    resource = %resource,
                    holder = lock.map(|l| l.holder.user.as_str()).unwrap_or("-"),
                    requester = %user,
                    method = %method,
                    reason = ?why,
                    "denied"
                );
                if let Some(audit) = self.latch.audit.get() {
                    audit.denied(&rule.id, resource, user, lock, instance);
                }
                let page_path = session.req_header().uri.path();
                let tag = (html && rule.inject)
                    .then(|| self.latch.banner_tag(page_path, lease, "blocked", None));
                respond::locked(html, why, resource, lock, tag.as_deref(), now_ms())
            }
            gate::Refusal::Reserved { offer } => {
                tracing::info!(
                    rule = %rule.id,
                    resource = %resource,
                    reserved_for = %offer.holder.user,
                    requester = %user,
                    method = %method,
                    "denied: reserved for the next in line"
                );
                if let Some(audit) = self.latch.audit.get() {
                    audit.denied(&rule.id, resource, user, None, instance);
                }
                let page_path = session.req_header().uri.path();
                let tag = (html && rule.inject)
                    .then(|| self.latch.banner_tag(page_path, lease, "blocked", None));
                respond::reserved(html, resource, offer, tag.as_deref(), now_ms())
            }
            gate::Refusal::Limited { limit, retry_after } => {
                tracing::info!(
                    rule = %rule.id,
                    resource = %resource,
                    requester = %user,
                    limit = limit.key(),
                    "claim refused past the user's limit"
                );
                if let Some(audit) = self.latch.audit.get() {
                    let detail = match limit {
                        gate::Limit::Held { held, max } => {
                            serde_json::json!({ "held": held, "max": max })
                        }
                        gate::Limit::Rate => serde_json::json!({
                            "claims_per_minute": self.latch.config.locks.claims_per_minute,
                        }),
                    };
                    audit.limited(&rule.id, resource, user, instance, limit.key(), detail);
                }
                respond::too_many(html, limit, resource, retry_after)
            }
            gate::Refusal::Unavailable => {
                if let Some(Err(e)) = outcome {
                    tracing::warn!(resource = %resource, error = %e, "lock store unavailable; denying");
                }
                respond::unavailable(html)
            }
        }
    }
}

/// What `request_filter` does with a request once it is decided.
enum Step {
    /// On to the upstream.
    Forward,
    /// Served by the proxy itself under the reserved prefix.
    Endpoint,
    /// A WebSocket of the app that lives under the lock, proxied by [`app_ws`].
    AppSocket(Box<Fenced>),
    /// An event stream of the app that lives under the lock, proxied by [`app_sse`].
    AppStream(Box<Fenced>),
    /// Answered by the proxy.
    Reply(Reply),
}

/// The request a refusal is about, for its log line, audit event and page.
#[derive(Clone, Copy)]
struct Refused<'a> {
    rule: &'a rules::Rule,
    resource: &'a str,
    user: &'a str,
    method: &'a Method,
    lease: Duration,
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
        if let Some(trusted) = &self.latch.config.trusted_proxy {
            let from_trusted = trusted.trusts(peer_ip(session));
            strip_identity_headers(session.req_header_mut(), trusted, from_trusted);
        }
        let (outcome, step) = self.route(session, ctx).await?;
        self.latch.metrics.count(outcome);
        match step {
            Step::Forward => Ok(false),
            Step::Endpoint => {
                Box::pin(endpoints::serve(&self.latch, session)).await?;
                Ok(true)
            }
            Step::AppSocket(fenced) => {
                Box::pin(app_ws::serve(&self.latch, session, *fenced)).await?;
                Ok(true)
            }
            Step::AppStream(fenced) => {
                let cookies = std::mem::take(&mut ctx.set_cookie);
                Box::pin(app_sse::serve(&self.latch, session, *fenced, cookies)).await?;
                Ok(true)
            }
            Step::Reply(reply) => {
                let reply = (ctx.set_cookie.drain(..))
                    .fold(reply, |reply, c| reply.header(header::SET_COOKIE, c));
                let body = has_body(session.req_header());
                Box::pin(reply.send(session, body)).await?;
                Ok(true)
            }
        }
    }

    async fn upstream_peer(&self, session: &mut Session, ctx: &mut Ctx) -> Result<Box<HttpPeer>> {
        let mut peer = self
            .latch
            .apps
            .get(ctx.app)
            .upstream
            .peer(&mut ctx.upstream);
        // An app's WebSocket may sit idle for as long as its page is open; any other response
        // is bounded by `proxy.upstream_timeout_seconds` between reads.
        if !session.is_upgrade_req() {
            peer.options.read_timeout = self.latch.config.proxy.upstream_timeout;
        }
        Ok(peer)
    }

    /// A connection that could not be opened carried nothing of the request, so an idempotent
    /// one goes to another server of a pool, each server at most once.
    fn fail_to_connect(
        &self,
        session: &mut Session,
        _peer: &HttpPeer,
        ctx: &mut Ctx,
        mut e: Box<Error>,
    ) -> Box<Error> {
        if session.req_header().method.is_idempotent()
            && self
                .latch
                .apps
                .get(ctx.app)
                .upstream
                .may_retry(&ctx.upstream)
        {
            e.set_retry(true);
        }
        e
    }

    /// A request that reached no answer from the app gets Latch's 502 page (problem+json for
    /// clients that are not browsers); why is logged with the server's URL, never shown.
    async fn fail_to_proxy(&self, session: &mut Session, e: &Error, ctx: &mut Ctx) -> FailToProxy {
        let code = match e.etype() {
            ErrorType::HTTPStatus(code) => *code,
            _ => match e.esource() {
                ErrorSource::Upstream => 502,
                ErrorSource::Downstream => match e.etype() {
                    ErrorType::WriteError | ErrorType::ReadError | ErrorType::ConnectionClosed => 0,
                    _ => 400,
                },
                ErrorSource::Internal | ErrorSource::Unset => 500,
            },
        };
        // An upstream failure, not a 502 a filter chose to answer.
        let unreachable = code == 502 && !matches!(e.etype(), ErrorType::HTTPStatus(_));
        if unreachable && session.response_written().is_none() {
            tracing::warn!(
                server = self.latch.apps.get(ctx.app).upstream.server_name(&ctx.upstream),
                error = %e,
                "the app could not be reached; answered 502"
            );
            let reply = respond::bad_gateway(respond::wants_html(session));
            let unread = has_body(session.req_header());
            if let Err(e) = reply.send(session, unread).await {
                tracing::debug!(error = %e, "the 502 page could not be sent");
            }
        } else if code > 0 {
            let _ = session.respond_error(code).await;
        }
        FailToProxy {
            error_code: code,
            can_reuse_downstream: false,
        }
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
            let [user, name] = id.header_values();
            add.user = Some(user.clone());
            add.user_name = Some(name.clone());
        }
        if let Some(granted) = &ctx.granted {
            add.resource = Some(auth::header_value(&granted.resource));
            add.fence = granted.fence.map(HeaderValue::from);
            add.access = Some(HeaderValue::from_static(match granted.fence {
                Some(_) => "exclusive",
                None => "read_only",
            }));
        }
        if let Some(host) = self.latch.apps.get(ctx.app).upstream.host(&ctx.upstream) {
            upstream.insert_header(header::HOST, host.clone())?;
        }
        add.apply(upstream, self.latch.config.proxy.header_case)
    }

    async fn response_filter(
        &self,
        session: &mut Session,
        resp: &mut ResponseHeader,
        ctx: &mut Ctx,
    ) -> Result<()> {
        if ctx
            .granted
            .as_ref()
            .is_some_and(|g| g.fence.is_some() && g.fences_streams)
            && session.req_header().method != Method::HEAD
            && app_sse::is_event_stream_type(resp)
        {
            // The holder's event stream, fetched without asking for one: it could not be ended
            // when the lock is lost, so it is not started.
            return Error::e_explain(
                ErrorType::HTTPStatus(502),
                "the app answered with an event stream a request did not ask for \
                 (Accept: text/event-stream); it could not be fenced",
            );
        }
        for cookie in ctx.set_cookie.drain(..) {
            resp.append_header(header::SET_COOKIE, cookie)?;
        }
        if let Some(hsts) = &self.hsts {
            if peer::is_tls(session) {
                resp.insert_header(header::STRICT_TRANSPORT_SECURITY, hsts)?;
            }
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
