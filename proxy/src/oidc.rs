//! Signing users in with an OpenID Provider (`[oidc]`, docs/http.md "Sign-in"), carried over
//! the proxy's own endpoints: `{prefix}/login` starts a flow, `{prefix}/callback` finishes it
//! and `{prefix}/logout` ends the session. The flow itself (discovery, PKCE, `state`, `nonce`,
//! the code exchange, the ID token's checks, the sealed cookies) is
//! [`auth::RelyingParty`]'s; this module reads the request and writes the answer. A finished
//! flow leaves a sealed session cookie, which [`crate::state::Latch`] accepts like a token.

use std::sync::Arc;

use auth::relying_party::{self, Callback, Failure, FLOW_COOKIE, FLOW_SECONDS};
use http::{header, Method};
use pingora::proxy::Session;

use crate::respond::{wants_html, Reply};

pub use auth::relying_party::SESSION_COOKIE;

/// The relying party, and where the proxy serves its endpoints.
pub struct SignIn {
    party: auth::RelyingParty,
    /// `oidc.redirect_url`, when set.
    redirect_url: Option<String>,
    prefix: String,
    public_scheme: &'static str,
}

impl SignIn {
    pub fn new(config: &config::Config) -> Result<Option<SignIn>, crate::StartError> {
        let Some(oidc) = &config.oidc else {
            return Ok(None);
        };
        let party =
            auth::RelyingParty::new(oidc.client(), &config.auth.settings, &oidc.cookie_secret)?;
        Ok(Some(SignIn {
            party,
            redirect_url: oidc.redirect_url.clone(),
            prefix: config.proxy.prefix.clone(),
            public_scheme: config.proxy.public_scheme,
        }))
    }

    /// Opens session cookies.
    pub fn sessions(&self) -> &auth::Sessions {
        self.party.sessions()
    }

    /// The provider whose keys check ID tokens; whoever runs the proxy keeps it current.
    pub fn keys(&self) -> Option<&Arc<auth::Provider>> {
        self.party.keys()
    }

    /// Serves `login`, `callback` and `logout`; `None` for any other endpoint name.
    pub async fn serve(
        &self,
        name: &str,
        session: &Session,
        metrics: &crate::metrics::Metrics,
    ) -> Option<Reply> {
        let method = &session.req_header().method;
        // Over TLS the callback is an https URL and the cookies are `Secure`.
        let scheme = crate::peer::scheme(session, self.public_scheme);
        let reply = match (name, method) {
            ("login", &Method::GET) => self.login(session, scheme).await,
            ("callback", &Method::GET) => self.callback(session, scheme, metrics).await,
            ("logout", &Method::GET | &Method::POST) => self.logout(scheme).await,
            ("login" | "callback", _) => {
                Reply::problem(405, "Method not allowed", "use GET").header(header::ALLOW, "GET")
            }
            ("logout", _) => Reply::problem(405, "Method not allowed", "use GET or POST")
                .header(header::ALLOW, "GET, POST"),
            _ => return None,
        };
        Some(reply)
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

    async fn callback(
        &self,
        session: &Session,
        scheme: &str,
        metrics: &crate::metrics::Metrics,
    ) -> Reply {
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

    async fn logout(&self, scheme: &str) -> Reply {
        let clear = cookie(scheme, SESSION_COOKIE, "", "/", 0);
        Reply::empty(302)
            .header(header::LOCATION, self.party.logout_location("/").await)
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
