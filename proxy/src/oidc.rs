//! Signing users in with an OpenID Provider (`[oidc]`, docs/http.md "Sign-in"): the
//! authorization code flow with PKCE, as a confidential client.
//!
//! `{prefix}/login` starts a flow, `{prefix}/callback` finishes it and `{prefix}/logout` ends
//! the session. Nothing of a flow is kept in this process: its PKCE verifier, `state`, `nonce`
//! and return path travel in a sealed, short-lived cookie, so whichever instance the provider
//! sends the browser back to can finish it. A finished flow leaves a sealed session cookie
//! holding the identity and its end ([`auth::Sessions`]), which [`crate::state::Latch`] accepts
//! like a token. Every failure answers a clear error and sets no session.

use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwapOption;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use http::{header, HeaderMap, Method};
use pingora::proxy::Session;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::respond::{wants_html, Reply};
use crate::time_fmt::now_ms;

/// The session cookie a finished sign-in sets.
pub const SESSION_COOKIE: &str = "latch_oidc";
/// The cookie that carries a flow between `login` and `callback`.
const FLOW_COOKIE: &str = "latch_oidc_flow";
/// The authenticated data of flow cookies: no other sealed value opens as one.
const FLOW_PURPOSE: &str = "latch-flow-v1";
/// How long a browser may spend at the provider: long enough to type a password and a second
/// factor, short enough that a leaked flow cookie is soon worthless.
const FLOW_SECONDS: u64 = 600;
/// Bound on every request to the provider, so a hung provider cannot hold a sign-in.
const PROVIDER_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest discovery document or token response read.
const MAX_PROVIDER_BODY: usize = 256 * 1024;
/// Longest `return_to` kept; longer ones fall back to `/`.
const MAX_RETURN_TO: usize = 2048;

/// The provider endpoints the flow uses, from its discovery document.
#[derive(Debug)]
struct Endpoints {
    authorization: url::Url,
    token: url::Url,
    end_session: Option<url::Url>,
}

#[derive(Deserialize)]
struct Discovery {
    issuer: String,
    authorization_endpoint: String,
    token_endpoint: String,
    #[serde(default)]
    end_session_endpoint: Option<String>,
}

/// What a flow cookie holds.
#[derive(Serialize, Deserialize)]
struct Flow {
    /// `state`, `nonce` and the PKCE verifier.
    s: String,
    n: String,
    v: String,
    /// Where to go once signed in: a same-site path.
    r: String,
    /// When the flow began, in unix seconds.
    t: u64,
}

#[derive(Deserialize)]
struct TokenResponse {
    #[serde(default)]
    id_token: Option<String>,
}

#[derive(Deserialize)]
struct ProviderError {
    #[serde(default)]
    error: Option<String>,
}

/// Why a sign-in did not finish: what the user (or client) is told.
struct Failure {
    status: u16,
    title: &'static str,
    detail: String,
    code: &'static str,
}

impl Failure {
    fn new(
        status: u16,
        title: &'static str,
        code: &'static str,
        detail: impl Into<String>,
    ) -> Self {
        Failure {
            status,
            title,
            detail: detail.into(),
            code,
        }
    }
}

/// One relying party: its settings, its sealer and session opener, the ID token verifier and
/// the provider's endpoints once discovered.
pub struct SignIn {
    config: config::OidcConfig,
    pub sessions: auth::Sessions,
    id_tokens: auth::Verifier,
    client: reqwest::Client,
    endpoints: ArcSwapOption<Endpoints>,
    prefix: String,
    public_scheme: &'static str,
}

impl SignIn {
    pub fn new(config: &config::Config) -> Result<Option<SignIn>, crate::StartError> {
        let Some(oidc) = &config.oidc else {
            return Ok(None);
        };
        let id_tokens = auth::Verifier::new(oidc.id_token_settings(&config.auth.settings))?;
        let sessions = auth::Sessions::new(&oidc.cookie_secret)?;
        let client = reqwest::Client::builder()
            .timeout(PROVIDER_TIMEOUT)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| crate::StartError::Other(format!("oidc: {e}")))?;
        Ok(Some(SignIn {
            config: oidc.clone(),
            sessions,
            id_tokens,
            client,
            endpoints: ArcSwapOption::empty(),
            prefix: config.proxy.prefix.clone(),
            public_scheme: config.proxy.public_scheme,
        }))
    }

    /// The provider whose keys check ID tokens; whoever runs the proxy keeps it current.
    pub fn keys(&self) -> Option<&Arc<auth::Provider>> {
        self.id_tokens.provider()
    }

    /// Serves `login`, `callback` and `logout`; `None` for any other endpoint name.
    pub async fn serve(&self, name: &str, session: &Session) -> Option<Reply> {
        let method = &session.req_header().method;
        // Over TLS the callback is an https URL and the cookies are `Secure`.
        let scheme = crate::peer::scheme(session, self.public_scheme);
        let reply = match (name, method) {
            ("login", &Method::GET) => self.login(session, scheme).await,
            ("callback", &Method::GET) => self.callback(session, scheme).await,
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
        let mut url = format!("{}/login?return_to=", self.prefix);
        url.extend(url::form_urlencoded::byte_serialize(
            safe_return_to(path_and_query).as_bytes(),
        ));
        url
    }

    async fn login(&self, session: &Session, scheme: &str) -> Reply {
        let html = wants_html(session);
        let headers = &session.req_header().headers;
        let return_to = query_param(session, "return_to").unwrap_or_default();
        let return_to = safe_return_to(&return_to).to_owned();
        let Some(redirect_uri) = self.redirect_uri(scheme, headers) else {
            return failure(
                html,
                Failure::new(
                    400,
                    "Bad request",
                    "bad_host",
                    "the Host header is missing or malformed",
                ),
            );
        };
        let endpoints = match self.endpoints().await {
            Ok(endpoints) => endpoints,
            Err(failed) => return failure(html, failed),
        };
        let flow = Flow {
            s: random_token(),
            n: random_token(),
            v: random_token(),
            r: return_to,
            t: now_ms() / 1000,
        };
        let challenge = URL_SAFE_NO_PAD.encode(Sha256::digest(flow.v.as_bytes()));
        let mut target = endpoints.authorization.clone();
        target
            .query_pairs_mut()
            .append_pair("response_type", "code")
            .append_pair("client_id", &self.config.client_id)
            .append_pair("redirect_uri", &redirect_uri)
            .append_pair("scope", &self.config.scopes.join(" "))
            .append_pair("state", &flow.s)
            .append_pair("nonce", &flow.n)
            .append_pair("code_challenge", &challenge)
            .append_pair("code_challenge_method", "S256");
        let sealed = serde_json::to_vec(&flow).unwrap_or_default();
        let sealed = self.sessions.sealer().seal(FLOW_PURPOSE, &sealed);
        Reply::empty(302)
            .header(header::LOCATION, target.to_string())
            .header(
                header::SET_COOKIE,
                self.cookie(
                    scheme,
                    FLOW_COOKIE,
                    &sealed,
                    &self.flow_path(),
                    FLOW_SECONDS,
                ),
            )
    }

    async fn callback(&self, session: &Session, scheme: &str) -> Reply {
        let html = wants_html(session);
        let clear_flow = self.cookie(scheme, FLOW_COOKIE, "", &self.flow_path(), 0);
        match self.finish(session, scheme).await {
            Ok((identity, return_to)) => {
                let now = now_ms() / 1000;
                let value = self.sessions.issue(&identity);
                if value.len() > auth::MAX_SEALED_CHARS {
                    // Browsers drop a cookie this large, or it would not be opened: the
                    // browser would go round the sign-in for ever.
                    let failed = Failure::new(
                        502,
                        "Identity too large",
                        "identity_too_large",
                        "the identity provider's claims (roles, say) are too large for a \
                         session cookie; map fewer with auth.roles_claim",
                    );
                    return failure(html, failed).header(header::SET_COOKIE, clear_flow);
                }
                let max_age = identity.expires_at.saturating_sub(now);
                tracing::info!(user = %identity.user, "signed in with the identity provider");
                Reply::empty(302)
                    .header(header::LOCATION, return_to)
                    .header(header::SET_COOKIE, clear_flow)
                    .header(
                        header::SET_COOKIE,
                        self.cookie(scheme, SESSION_COOKIE, &value, "/", max_age),
                    )
            }
            Err(failed) => {
                tracing::info!(code = failed.code, detail = %failed.detail, "sign-in refused");
                failure(html, failed).header(header::SET_COOKIE, clear_flow)
            }
        }
    }

    /// Every check of a returning browser, then the code exchange and the ID token's.
    async fn finish(
        &self,
        session: &Session,
        scheme: &str,
    ) -> Result<(auth::Identity, String), Failure> {
        let headers = &session.req_header().headers;
        let no_flow = || {
            Failure::new(
                400,
                "No sign-in in progress",
                "no_flow",
                "this browser has no sign-in in progress (it may have finished already or \
                 taken longer than 10 minutes); start again",
            )
        };
        let sealed = auth::token_from_headers(
            headers.get_all(header::COOKIE).iter().map(|v| v.as_bytes()),
            None,
            FLOW_COOKIE,
        )
        .ok_or_else(no_flow)?;
        let flow: Flow = (self.sessions.sealer())
            .open(FLOW_PURPOSE, sealed)
            .and_then(|plain| serde_json::from_slice(&plain).ok())
            .ok_or_else(no_flow)?;
        let now = now_ms() / 1000;
        if now.saturating_sub(flow.t) > FLOW_SECONDS {
            return Err(no_flow());
        }
        let state = query_param(session, "state").unwrap_or_default();
        if state.is_empty() || state != flow.s {
            return Err(Failure::new(
                400,
                "Sign-in state mismatch",
                "state_mismatch",
                "the answer from the identity provider is not for the sign-in this browser \
                 started",
            ));
        }
        if let Some(error) = query_param(session, "error") {
            return Err(Failure::new(
                403,
                "Sign-in refused by the identity provider",
                "provider_refused",
                format!("the identity provider answered {:?}", printable(&error)),
            ));
        }
        let code = query_param(session, "code")
            .filter(|code| !code.is_empty())
            .ok_or_else(|| {
                Failure::new(
                    400,
                    "Bad callback",
                    "no_code",
                    "the callback carries no code",
                )
            })?;
        let redirect_uri = self.redirect_uri(scheme, headers).ok_or_else(|| {
            Failure::new(
                400,
                "Bad request",
                "bad_host",
                "the Host header is missing or malformed",
            )
        })?;
        let endpoints = self.endpoints().await?;
        let id_token = self
            .exchange(&endpoints, &code, &redirect_uri, &flow.v)
            .await?;
        let mut identity = (self.id_tokens)
            .verify_id_token(&id_token, &flow.n, &self.config.client_id)
            .await
            .map_err(|e| {
                Failure::new(
                    401,
                    "ID token refused",
                    e.code(),
                    format!("the identity provider's ID token was refused: {e}"),
                )
            })?;
        if let Some(lifetime) = self.config.session_lifetime {
            identity.expires_at = now + lifetime.as_secs();
        }
        if identity.expires_at <= now {
            return Err(Failure::new(
                401,
                "ID token refused",
                "expired",
                "the ID token has expired",
            ));
        }
        Ok((identity, flow.r))
    }

    /// The authorization code traded for tokens at the token endpoint; the ID token.
    async fn exchange(
        &self,
        endpoints: &Endpoints,
        code: &str,
        redirect_uri: &str,
        verifier: &str,
    ) -> Result<String, Failure> {
        // RFC 6749 2.3.1: the id and secret are form-encoded before Basic authentication.
        let encode =
            |s: &str| url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
        let answer = self
            .client
            .post(endpoints.token.clone())
            .basic_auth(
                encode(&self.config.client_id),
                Some(encode(&self.config.client_secret)),
            )
            .header(header::ACCEPT, "application/json")
            .form(&[
                ("grant_type", "authorization_code"),
                ("code", code),
                ("redirect_uri", redirect_uri),
                ("code_verifier", verifier),
            ])
            .send()
            .await
            .map_err(|e| unreachable_provider(&e))?;
        let status = answer.status();
        let body = read_capped(answer).await?;
        if !status.is_success() {
            let error = serde_json::from_slice::<ProviderError>(&body)
                .ok()
                .and_then(|e| e.error)
                .unwrap_or_else(|| status.to_string());
            return Err(Failure::new(
                502,
                "Sign-in refused by the identity provider",
                "code_refused",
                format!(
                    "the token endpoint refused the code: {:?}",
                    printable(&error)
                ),
            ));
        }
        serde_json::from_slice::<TokenResponse>(&body)
            .ok()
            .and_then(|t| t.id_token)
            .ok_or_else(|| {
                Failure::new(
                    502,
                    "Bad answer from the identity provider",
                    "no_id_token",
                    "the token endpoint answered no ID token",
                )
            })
    }

    async fn logout(&self, scheme: &str) -> Reply {
        let clear = self.cookie(scheme, SESSION_COOKIE, "", "/", 0);
        let target = match self.endpoints().await {
            Ok(endpoints) => match &endpoints.end_session {
                Some(end) => {
                    let mut end = end.clone();
                    end.query_pairs_mut()
                        .append_pair("client_id", &self.config.client_id);
                    end.to_string()
                }
                None => "/".to_owned(),
            },
            // The session ends here whatever the provider's state.
            Err(_) => "/".to_owned(),
        };
        Reply::empty(302)
            .header(header::LOCATION, target)
            .header(header::SET_COOKIE, clear)
    }

    /// The discovered endpoints, fetched on first use and kept; a failed fetch is retried by
    /// the next sign-in.
    async fn endpoints(&self) -> Result<Arc<Endpoints>, Failure> {
        if let Some(known) = self.endpoints.load_full() {
            return Ok(known);
        }
        let url = format!(
            "{}/.well-known/openid-configuration",
            self.config.issuer.trim_end_matches('/')
        );
        let answer = self
            .client
            .get(&url)
            .header(header::ACCEPT, "application/json")
            .send()
            .await
            .map_err(|e| unreachable_provider(&e))?;
        let bad = |why: String| {
            tracing::warn!(url = %url, "unusable discovery document: {why}");
            Failure::new(
                502,
                "Identity provider unavailable",
                "provider_unavailable",
                format!("the identity provider's discovery document is unusable: {why}"),
            )
        };
        if !answer.status().is_success() {
            return Err(bad(format!("HTTP {}", answer.status())));
        }
        let body = read_capped(answer).await?;
        let doc: Discovery =
            serde_json::from_slice(&body).map_err(|e| bad(format!("not JSON: {e}")))?;
        if doc.issuer != self.config.issuer {
            return Err(bad(format!("it names issuer {:?}", printable(&doc.issuer))));
        }
        let endpoint = |text: &str| -> Result<url::Url, Failure> {
            let url = url::Url::parse(text).map_err(|e| bad(format!("{text:?}: {e}")))?;
            let loopback = matches!(url.host(), Some(url::Host::Ipv4(ip)) if ip.is_loopback())
                || matches!(url.host(), Some(url::Host::Ipv6(ip)) if ip.is_loopback())
                || url.host_str() == Some("localhost");
            match url.scheme() {
                "https" => Ok(url),
                "http" if loopback => Ok(url),
                _ => Err(bad(format!("{text:?} is not an https URL"))),
            }
        };
        let endpoints = Arc::new(Endpoints {
            authorization: endpoint(&doc.authorization_endpoint)?,
            token: endpoint(&doc.token_endpoint)?,
            end_session: match doc.end_session_endpoint.as_deref() {
                Some(end) => Some(endpoint(end)?),
                None => None,
            },
        });
        self.endpoints.store(Some(Arc::clone(&endpoints)));
        Ok(endpoints)
    }

    /// The callback URL: configured, or this proxy's public scheme, the request's Host and the
    /// callback path. `None` for a Host that is not a plain host and port.
    fn redirect_uri(&self, scheme: &str, headers: &HeaderMap) -> Option<String> {
        if let Some(url) = &self.config.redirect_url {
            return Some(url.clone());
        }
        let host = headers.get(header::HOST)?.to_str().ok()?;
        let plain = !host.is_empty()
            && host.len() <= 255
            && host.bytes().all(|b| {
                b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b':' | b'[' | b']')
            });
        plain.then(|| format!("{scheme}://{host}{}/callback", self.prefix))
    }

    fn flow_path(&self) -> String {
        format!("{}/callback", self.prefix)
    }

    /// A `Set-Cookie` value: never readable by scripts, sent on top-level navigations from the
    /// provider (Lax), and only over TLS when browsers reach the proxy over TLS.
    fn cookie(&self, scheme: &str, name: &str, value: &str, path: &str, max_age: u64) -> String {
        let secure = if scheme == "https" { "; Secure" } else { "" };
        format!("{name}={value}; Path={path}; Max-Age={max_age}; HttpOnly; SameSite=Lax{secure}")
    }
}

/// `return_to` if it is a path on this site, else `/`: an absolute URL, a scheme-relative
/// `//host`, a backslash (which browsers read as a slash) or a control character could send
/// the browser elsewhere after sign-in. Only visible ASCII is kept, as a request's own path and
/// query are sent (percent-encoded), so every browser reads the `Location` header alike.
fn safe_return_to(wanted: &str) -> &str {
    let ok = wanted.starts_with('/')
        && !wanted.starts_with("//")
        && wanted.len() <= MAX_RETURN_TO
        && wanted.bytes().all(|b| b.is_ascii_graphic() && b != b'\\');
    if ok {
        wanted
    } else {
        "/"
    }
}

/// 32 random bytes as unpadded base64url: `state`, `nonce` and the PKCE verifier (43
/// characters, within RFC 7636's 43 to 128).
fn random_token() -> String {
    let bytes: [u8; 32] = rand::random();
    URL_SAFE_NO_PAD.encode(bytes)
}

fn query_param(session: &Session, name: &str) -> Option<String> {
    let query = session.req_header().uri.query()?;
    url::form_urlencoded::parse(query.as_bytes())
        .find(|(key, _)| key == name)
        .map(|(_, value)| value.into_owned())
}

/// A provider-chosen string, cut short and stripped of control characters, for messages.
fn printable(text: &str) -> String {
    text.chars().filter(|c| !c.is_control()).take(200).collect()
}

fn unreachable_provider(error: &reqwest::Error) -> Failure {
    tracing::warn!(error = %error, "identity provider unreachable");
    Failure::new(
        502,
        "Identity provider unavailable",
        "provider_unavailable",
        "the identity provider cannot be reached; try again later",
    )
}

async fn read_capped(mut answer: reqwest::Response) -> Result<Vec<u8>, Failure> {
    let mut body = Vec::new();
    while let Some(chunk) = answer.chunk().await.map_err(|e| unreachable_provider(&e))? {
        if body.len() + chunk.len() > MAX_PROVIDER_BODY {
            return Err(Failure::new(
                502,
                "Bad answer from the identity provider",
                "provider_answer_too_large",
                "the identity provider's answer is too large",
            ));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_same_site_paths_are_returned_to() {
        for ok in ["/", "/docs/7?tab=2", "/a/b#frag", "/caf%C3%A9?q=%0d%0a"] {
            assert_eq!(safe_return_to(ok), ok);
        }
        for bad in [
            "",
            "https://evil.example/",
            "//evil.example/x",
            "/\\evil.example",
            "\\\\evil.example",
            "javascript:alert(1)",
            "/ok\r\nSet-Cookie: x=1",
            "evil.example",
            "/%0d%0a is fine but a raw space is not",
            "/caf\u{e9}",
        ] {
            assert_eq!(safe_return_to(bad), "/", "{bad:?}");
        }
        assert_eq!(
            safe_return_to(&format!("/{}", "a".repeat(MAX_RETURN_TO))),
            "/"
        );
    }

    #[test]
    fn random_tokens_are_pkce_sized_and_differ() {
        let (a, b) = (random_token(), random_token());
        assert_eq!(a.len(), 43);
        assert_ne!(a, b);
    }
}
