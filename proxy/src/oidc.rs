//! Signing users in with an OpenID Provider (`[oidc]`, docs/http.md "Sign-in"), carried over
//! the proxy's own endpoints: `{prefix}/login` starts a flow, `{prefix}/callback` finishes it
//! and `{prefix}/logout` ends the session on every instance (see [`store::EndedSessions`]). The flow
//! itself (discovery, PKCE, `state`, `nonce`, the code exchange, the ID token's checks, the
//! sealed cookies) is
//! [`auth::RelyingParty`]'s; this module reads the request and writes the answer. A finished
//! flow leaves a sealed session cookie, which the proxy's state accepts like a token.

use std::future::Future;
use std::sync::Arc;

use auth::relying_party::{self, Callback, Failure, NotRenewed, FLOW_COOKIE, FLOW_SECONDS};
use auth::{AuthError, Identity};
use http::{header, Method};
use pingora::proxy::Session;
use store::{EndedSessions, StoreError, UnixMillis};

use crate::metrics::Metrics;
use crate::respond::{wants_html, Reply};

pub use auth::relying_party::SESSION_COOKIE;

/// What the sign-in's endpoints need of the running proxy: its metrics, and where ended
/// sessions are kept and recorded (a bounded lock store call).
pub trait Proxy {
    fn metrics(&self) -> &Metrics;
    fn ended(&self) -> Option<&EndedSessions>;
    /// Where the instances sharing a session cookie take turns renewing it.
    fn renewal_turns(&self) -> &dyn auth::RenewalTurns;
    fn end_session(
        &self,
        ended: &EndedSessions,
        id: &str,
        until: UnixMillis,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
}

/// The relying party, and where the proxy serves its endpoints.
pub struct SignIn {
    party: Arc<auth::RelyingParty>,
    /// `oidc.redirect_url`, when set.
    redirect_url: Option<String>,
    /// `oidc.post_logout_redirect_uri`, when set.
    post_logout: Option<String>,
    prefix: String,
    public_scheme: &'static str,
}

impl SignIn {
    /// Sign-in as `[oidc]` configures it, through `party` (see [`crate::Auth`]); `None`
    /// without `[oidc]`.
    pub fn new(config: &config::Config, party: Option<Arc<auth::RelyingParty>>) -> Option<SignIn> {
        let (Some(oidc), Some(party)) = (&config.oidc, party) else {
            return None;
        };
        Some(SignIn {
            party,
            redirect_url: oidc.redirect_url.clone(),
            post_logout: oidc.post_logout_redirect_uri.clone(),
            prefix: config.proxy.prefix.clone(),
            public_scheme: config.proxy.public_scheme,
        })
    }

    /// Opens session cookies.
    pub fn sessions(&self) -> &auth::Sessions {
        self.party.sessions()
    }

    /// Serves `login`, `callback` and `logout`; `None` for any other endpoint name.
    pub async fn serve(&self, name: &str, session: &Session, latch: &impl Proxy) -> Option<Reply> {
        let metrics = latch.metrics();
        let method = &session.req_header().method;
        // Over TLS the callback is an https URL and the cookies are `Secure`.
        let scheme = crate::peer::scheme(session, self.public_scheme);
        let reply = match (name, method) {
            ("login", &Method::GET) => self.login(session, scheme).await,
            ("callback", &Method::GET) => self.callback(session, scheme, metrics).await,
            ("logout", &Method::GET | &Method::POST) => self.logout(session, scheme, latch).await,
            ("login" | "callback", _) => {
                Reply::problem(405, "Method not allowed", "use GET").header(header::ALLOW, "GET")
            }
            ("logout", _) => Reply::problem(405, "Method not allowed", "use GET or POST")
                .header(header::ALLOW, "GET, POST"),
            _ => return None,
        };
        Some(reply)
    }

    /// Renews the request's sign-in session with its refresh token (see
    /// [`auth::RelyingParty::renew`]), for a request whose `identity` is due
    /// ([`auth::Renewal::from`]): the renewed identity, and the `Set-Cookie` value of the new
    /// session cookie. A refused renewal ends the session on every instance, as a logout does,
    /// and the request is refused; a provider out of reach leaves the session as it is until
    /// its ID token ends, and then refuses it as expired.
    pub async fn renew(
        &self,
        session: &Session,
        latch: &impl Proxy,
        identity: Arc<Identity>,
    ) -> Result<(Arc<Identity>, Option<String>), AuthError> {
        let headers = &session.req_header().headers;
        let Some(value) = auth::token_from_headers(
            headers.get_all(header::COOKIE).iter().map(|v| v.as_bytes()),
            None,
            SESSION_COOKIE,
        ) else {
            return Ok((identity, None));
        };
        let (outcome, asked) = self.party.renew(value, latch.renewal_turns()).await;
        let count = |result: &str| {
            if asked {
                latch
                    .metrics()
                    .session_renewals
                    .with_label_values(&[result])
                    .inc();
            }
        };
        let now = crate::time_fmt::now_ms() / 1000;
        match outcome {
            Ok(renewed) => {
                count("ok");
                let scheme = crate::peer::scheme(session, self.public_scheme);
                let max_age = renewed.identity.expires_at.saturating_sub(now);
                let set = cookie(
                    scheme,
                    SESSION_COOKIE,
                    &renewed.session_cookie,
                    "/",
                    max_age,
                );
                Ok((renewed.identity, Some(set)))
            }
            Err(NotRenewed::Refused(failed)) => {
                count("refused");
                if asked {
                    tracing::info!(user = %identity.user, code = failed.code, detail = %failed.detail, "session renewal refused; the session ends");
                }
                if let Err(e) = end_if_live(latch, &identity).await {
                    tracing::warn!(user = %identity.user, error = %e, "cannot record a refused renewal's end in the lock store");
                }
                Err(AuthError::RenewalRefused)
            }
            Err(NotRenewed::Unavailable(failed)) => {
                count("unavailable");
                if asked {
                    tracing::warn!(user = %identity.user, detail = %failed.detail, "cannot renew a session; it holds until its ID token ends");
                }
                if identity.must_renew(now) {
                    return Err(AuthError::Expired);
                }
                Ok((identity, None))
            }
        }
    }

    /// Where a browser without a session is sent: the sign-in, then back to `path_and_query`.
    pub fn login_url(&self, path_and_query: &str) -> String {
        relying_party::login_location(&format!("{}/login", self.prefix), path_and_query)
    }

    async fn login(&self, session: &Session, scheme: &str) -> Reply {
        let html = wants_html(session);
        let return_to = query_param(session, "return_to").unwrap_or_default();
        let Some(redirect_uri) = self.redirect_uri(session, scheme) else {
            return failure(html, Failure::bad_host());
        };
        match self.party.begin(&return_to, &redirect_uri).await {
            Ok(begun) => Reply::empty(302)
                .header(header::LOCATION, begun.location)
                .header(
                    header::SET_COOKIE,
                    cookie(
                        scheme,
                        FLOW_COOKIE,
                        &begun.flow_cookie,
                        &self.flow_path(),
                        FLOW_SECONDS,
                    ),
                ),
            Err(failed) => failure(html, failed),
        }
    }

    async fn callback(&self, session: &Session, scheme: &str, metrics: &Metrics) -> Reply {
        let html = wants_html(session);
        let clear_flow = cookie(scheme, FLOW_COOKIE, "", &self.flow_path(), 0);
        let headers = &session.req_header().headers;
        let flow = auth::token_from_headers(
            headers.get_all(header::COOKIE).iter().map(|v| v.as_bytes()),
            None,
            FLOW_COOKIE,
        );
        let callback = Callback::from_query(session.req_header().uri.query());
        let redirect_uri = self.redirect_uri(session, scheme);
        match self
            .party
            .finish(flow, &callback, redirect_uri.as_deref())
            .await
        {
            Ok(done) => {
                let now = crate::time_fmt::now_ms() / 1000;
                let max_age = done.identity.expires_at.saturating_sub(now);
                tracing::info!(user = %done.identity.user, "signed in with the identity provider");
                metrics.sign_ins.with_label_values(&["ok"]).inc();
                Reply::empty(302)
                    .header(header::LOCATION, done.return_to)
                    .header(header::SET_COOKIE, clear_flow)
                    .header(
                        header::SET_COOKIE,
                        cookie(scheme, SESSION_COOKIE, &done.session_cookie, "/", max_age),
                    )
            }
            Err(failed) => {
                tracing::info!(code = failed.code, detail = %failed.detail, "sign-in refused");
                // `code` is one of a fixed set of names, so the label's values are bounded.
                metrics.sign_ins.with_label_values(&[failed.code]).inc();
                failure(html, failed).header(header::SET_COOKIE, clear_flow)
            }
        }
    }

    /// Ends the request's session, if it has one, on every instance: its id is recorded as
    /// ended in the lock store until the session's own end, so its cookie is refused from now
    /// on wherever it is presented, and the sockets opened under it close. The cookie is
    /// cleared whatever happens; if the store cannot record the end, the user is told that
    /// the session may live on elsewhere (503) rather than sent on as if signed out.
    async fn logout(&self, session: &Session, scheme: &str, latch: &impl Proxy) -> Reply {
        let clear = cookie(scheme, SESSION_COOKIE, "", "/", 0);
        let headers = &session.req_header().headers;
        let value = auth::token_from_headers(
            headers.get_all(header::COOKIE).iter().map(|v| v.as_bytes()),
            None,
            SESSION_COOKIE,
        );
        let now = crate::time_fmt::now_ms();
        let signed_in = value.and_then(|v| self.sessions().open(v, now / 1000).ok());
        if let Some(identity) = signed_in {
            match end_if_live(latch, &identity).await {
                Ok(false) => {}
                Err(e) => {
                    tracing::warn!(user = %identity.user, error = %e, "cannot record a logout in the lock store");
                    latch
                        .metrics()
                        .sign_outs
                        .with_label_values(&["store_error"])
                        .inc();
                    return failure(
                        wants_html(session),
                        Failure {
                            status: 503,
                            title: "Sign-out not recorded",
                            detail: "this browser is signed out, but the end of its session could not be \
                                     recorded, so a copy of its cookie may still work until \
                                     the session's end; try again"
                                .to_owned(),
                            code: "store_unavailable",
                        },
                    )
                    .header(header::SET_COOKIE, clear);
                }
                Ok(true) => {
                    tracing::info!(user = %identity.user, "signed out");
                    latch.metrics().sign_outs.with_label_values(&["ok"]).inc();
                }
            }
        }
        // Back to the configured page, or this site's root, once the provider signed out.
        let back = self.post_logout.clone().or_else(|| {
            let host = headers.get(header::HOST).map(|h| h.as_bytes());
            relying_party::callback_url(scheme, host, "/")
        });
        let location = self
            .party
            .logout_location("/", value, back.as_deref())
            .await;
        Reply::empty(302)
            .header(header::LOCATION, location)
            .header(header::SET_COOKIE, clear)
    }

    /// The callback URL: configured, or the request's scheme (https over TLS, else the public
    /// scheme), its Host and the callback path.
    fn redirect_uri(&self, session: &Session, scheme: &str) -> Option<String> {
        if let Some(url) = &self.redirect_url {
            return Some(url.clone());
        }
        let host = session.req_header().headers.get(header::HOST);
        relying_party::callback_url(scheme, host.map(|h| h.as_bytes()), &self.flow_path())
    }

    fn flow_path(&self) -> String {
        format!("{}/callback", self.prefix)
    }
}

/// Ends `identity`'s sign-in session on every instance, until the session's own end, unless
/// it has ended already (an ended session's copy ends nothing more): whether it ended it now.
async fn end_if_live(latch: &impl Proxy, identity: &Identity) -> Result<bool, StoreError> {
    let live = (identity.sign_in.as_deref())
        .zip(latch.ended())
        .filter(|(id, ended)| !ended.has_ended(id));
    let Some((id, ended)) = live else {
        return Ok(false);
    };
    let until = identity.expires_at.saturating_mul(1000);
    latch.end_session(ended, id, until).await?;
    Ok(true)
}

/// A sign-in cookie, `Secure` when the request's scheme is https.
fn cookie(scheme: &str, name: &str, value: &str, path: &str, max_age: u64) -> String {
    relying_party::cookie(name, value, path, max_age, scheme == "https")
}

fn query_param(session: &Session, name: &str) -> Option<String> {
    let query = session.req_header().uri.query()?;
    url::form_urlencoded::parse(query.as_bytes())
        .find(|(key, _)| key == name)
        .map(|(_, value)| value.into_owned())
}

/// A failed sign-in: a page for browsers, problem+json for everything else.
fn failure(html: bool, failed: Failure) -> Reply {
    if html {
        let page = format!(
            "<!doctype html><html><head><meta charset=\"utf-8\"><title>{title}</title></head>\
             <body><h1>{title}</h1><p>{detail}</p><p><a href=\"/\">Back to the start</a></p>\
             </body></html>",
            title = html_escape::encode_text(failed.title),
            detail = html_escape::encode_text(&failed.detail),
        );
        return Reply::new(failed.status, "text/html; charset=utf-8", page);
    }
    Reply::problem_with(
        failed.status,
        failed.title,
        &failed.detail,
        serde_json::json!({ "code": failed.code }),
    )
}
