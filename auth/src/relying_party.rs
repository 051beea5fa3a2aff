//! Latch as an OpenID Connect relying party: the authorization code flow with PKCE, as a
//! confidential client, with no HTTP server of its own.
//!
//! The proxy (`{prefix}/login`, `/callback`, `/logout`) and the control plane's console
//! (`/login`, `/callback`, `/logout` on its own port) each carry it over their own HTTP stack:
//! they hand it the request's cookie and query and set the cookies it gives back. Nothing of a
//! flow is kept in memory: its PKCE verifier, `state`, `nonce` and return path travel in a
//! sealed, short-lived flow cookie, so whichever instance the provider sends the browser back
//! to can finish it. A finished flow gives a sealed session cookie ([`crate::Sessions`]), which
//! both accept like a token. Every failure is a [`Failure`] that says what went wrong, and no
//! session.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwapOption;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tokio::sync::OnceCell;

use crate::session::{RenewWith, Renewable, Sealed};
use crate::turns::{RenewalTurns, Turn};
use crate::{AuthSettings, Identity, KeyError, Provider, Renewal, Sessions, Verifier};

pub use crate::session::SESSION_COOKIE;
/// The cookie that carries a flow between `login` and `callback`.
pub const FLOW_COOKIE: &str = "latch_oidc_flow";
/// How long a browser may spend at the provider, in seconds: long enough to type a password and
/// a second factor, short enough that a leaked flow cookie is soon worthless.
pub const FLOW_SECONDS: u64 = 600;
/// The authenticated data of flow cookies: no other sealed value opens as one.
const FLOW_PURPOSE: &str = "latch-flow-v1";
/// Bound on every request to the provider, so a hung provider cannot hold a sign-in.
const PROVIDER_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest discovery document or token response read.
const MAX_PROVIDER_BODY: usize = 256 * 1024;
/// Longest `return_to` kept; longer ones fall back to `/`.
const MAX_RETURN_TO: usize = 2048;

/// The client's registration at the provider.
#[derive(Clone)]
pub struct ClientSettings {
    /// The provider's issuer identifier; its discovery document gives the endpoints and keys.
    pub issuer: String,
    pub client_id: String,
    pub client_secret: String,
    /// Always holds `openid`.
    pub scopes: Vec<String>,
    /// Extra parameters of the authorization request, none of those [`RelyingParty::begin`]
    /// sets itself.
    pub auth_params: Vec<(String, String)>,
    /// How long a session lasts; `None`: until the ID token's `exp`, or
    /// [`RENEWABLE_SESSION`] for a session that renews itself.
    pub session_lifetime: Option<Duration>,
    /// Whether a refresh token the provider gives at sign-in renews the session before its ID
    /// token ends (see [`RelyingParty::renew`]).
    pub renew: bool,
}

/// How long a session that renews itself with a refresh token lasts when
/// `session_lifetime` does not say: a working day.
pub const RENEWABLE_SESSION: Duration = Duration::from_secs(12 * 3600);
/// Most renewals under way or just done that are remembered, so a browser's parallel requests,
/// and those it sends with the old cookie while the new one is on its way, share one.
const MAX_RENEWALS: usize = 10_000;
/// One renewal's outcome, once known.
type RenewalCell = OnceCell<Result<Renewed, NotRenewed>>;

/// How long a renewal's outcome is shared with requests that carry the old cookie.
const RENEWAL_SHARED: Duration = Duration::from_secs(60);
/// How often an instance waiting for another's renewal of the same session looks again.
const TURN_POLL: Duration = Duration::from_millis(50);
/// How long a provider out of reach is not asked again for the same session.
const UNAVAILABLE_SHARED: Duration = Duration::from_secs(5);

/// Why a sign-in did not finish: what the user (or client) is told.
#[derive(Debug)]
pub struct Failure {
    pub status: u16,
    pub title: &'static str,
    pub detail: String,
    /// A stable, machine-readable name of the failure.
    pub code: &'static str,
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

    /// A missing or malformed `Host`, from which no callback URL can be made.
    pub fn bad_host() -> Failure {
        Failure::new(
            400,
            "Bad request",
            "bad_host",
            "the Host header is missing or malformed",
        )
    }
}

/// A flow just begun: where to send the browser, and the flow cookie's value to set.
pub struct Begun {
    pub location: String,
    pub flow_cookie: String,
}

/// A session renewed: who it names now, and the session cookie's new value.
#[derive(Clone)]
pub struct Renewed {
    pub identity: Arc<Identity>,
    pub session_cookie: String,
}

/// Why a session was not renewed.
#[derive(Clone, Debug)]
pub enum NotRenewed {
    /// The provider refused (the grant was revoked, the user disabled), or answered for
    /// another user: the session must end.
    Refused(Arc<Failure>),
    /// The provider could not be asked, or answered nothing usable: the session holds until
    /// its ID token ends, and the next request past [`Renewal::from`](crate::Renewal) tries
    /// again.
    Unavailable(Arc<Failure>),
}

/// A flow finished: who signed in, the session cookie's value, and where to send them back.
pub struct Finished {
    pub identity: Identity,
    pub session_cookie: String,
    pub return_to: String,
}

/// What the provider's redirect to the callback carries, from its query string.
#[derive(Default)]
pub struct Callback {
    pub state: Option<String>,
    pub code: Option<String>,
    pub error: Option<String>,
}

impl Callback {
    /// Reads `state`, `code` and `error` from a query string.
    pub fn from_query(query: Option<&str>) -> Callback {
        let mut callback = Callback::default();
        for (key, value) in url::form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
            let slot = match &*key {
                "state" => &mut callback.state,
                "code" => &mut callback.code,
                "error" => &mut callback.error,
                _ => continue,
            };
            slot.get_or_insert_with(|| value.into_owned());
        }
        callback
    }
}

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
    #[serde(default)]
    refresh_token: Option<String>,
    /// The access token's lifetime, in seconds: how long a renewal without an ID token holds.
    #[serde(default)]
    expires_in: Option<u64>,
}

#[derive(Deserialize)]
struct ProviderError {
    #[serde(default)]
    error: Option<String>,
}

/// One relying party: its registration, its sealer and session opener, the ID token verifier
/// and the provider's endpoints once discovered.
pub struct RelyingParty {
    client: ClientSettings,
    sessions: Sessions,
    id_tokens: Verifier,
    http: reqwest::Client,
    endpoints: ArcSwapOption<Endpoints>,
    /// Renewals by session id and the renewal time of the cookie renewed, under way or recently
    /// done (see [`still_shared`]).
    renewals: std::sync::Mutex<HashMap<String, (Instant, Arc<RenewalCell>)>>,
}

impl RelyingParty {
    /// `claims` gives the claim mapping and leeway ID tokens are read with; their keys, issuer
    /// and audience come from `client`.
    pub fn new(
        client: ClientSettings,
        claims: &AuthSettings,
        cookie_secret: &[u8],
    ) -> Result<RelyingParty, KeyError> {
        let id_tokens = Verifier::new(id_token_settings(&client, claims))?;
        let sessions = Sessions::new(cookie_secret)?;
        let http = reqwest::Client::builder()
            .timeout(PROVIDER_TIMEOUT)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| KeyError::HttpClient(e.to_string()))?;
        Ok(RelyingParty {
            client,
            sessions,
            id_tokens,
            http,
            endpoints: ArcSwapOption::empty(),
            renewals: std::sync::Mutex::new(HashMap::new()),
        })
    }

    /// Opens session cookies.
    pub fn sessions(&self) -> &Sessions {
        &self.sessions
    }

    /// The provider whose keys check ID tokens; whoever runs the relying party keeps it
    /// current.
    pub fn keys(&self) -> Option<&Arc<Provider>> {
        self.id_tokens.provider()
    }

    /// Starts a flow that comes back to `redirect_uri` and then to `return_to` (a same-site
    /// path; anything else becomes `/`).
    pub async fn begin(&self, return_to: &str, redirect_uri: &str) -> Result<Begun, Failure> {
        let endpoints = self.endpoints().await?;
        let flow = Flow {
            s: random_token(),
            n: random_token(),
            v: random_token(),
            r: safe_return_to(return_to).to_owned(),
            t: now_seconds(),
        };
        let challenge = URL_SAFE_NO_PAD.encode(Sha256::digest(flow.v.as_bytes()));
        let mut target = endpoints.authorization.clone();
        target
            .query_pairs_mut()
            .append_pair("response_type", "code")
            .append_pair("client_id", &self.client.client_id)
            .append_pair("redirect_uri", redirect_uri)
            .append_pair("scope", &self.client.scopes.join(" "))
            .append_pair("state", &flow.s)
            .append_pair("nonce", &flow.n)
            .append_pair("code_challenge", &challenge)
            .append_pair("code_challenge_method", "S256")
            .extend_pairs(&self.client.auth_params);
        let sealed = serde_json::to_vec(&flow).unwrap_or_default();
        Ok(Begun {
            location: target.to_string(),
            flow_cookie: self.sessions.sealer().seal(FLOW_PURPOSE, &sealed),
        })
    }

    /// Every check of a returning browser (its flow cookie, `state`, the provider's error),
    /// then the code exchange and the ID token's checks (keys, `iss`, `aud`, `nonce`, `exp`).
    /// `redirect_uri` must be the one the flow began with; `None` when it cannot be made.
    pub async fn finish(
        &self,
        flow_cookie: Option<&str>,
        callback: &Callback,
        redirect_uri: Option<&str>,
    ) -> Result<Finished, Failure> {
        let no_flow = || {
            Failure::new(
                400,
                "No sign-in in progress",
                "no_flow",
                "this browser has no sign-in in progress (it may have finished already or \
                 taken longer than 10 minutes); start again",
            )
        };
        let flow: Flow = flow_cookie
            .and_then(|sealed| self.sessions.sealer().open(FLOW_PURPOSE, sealed))
            .and_then(|plain| serde_json::from_slice(&plain).ok())
            .ok_or_else(no_flow)?;
        let now = now_seconds();
        if now.saturating_sub(flow.t) > FLOW_SECONDS {
            return Err(no_flow());
        }
        let state = callback.state.as_deref().unwrap_or_default();
        if state.is_empty() || state != flow.s {
            return Err(Failure::new(
                400,
                "Sign-in state mismatch",
                "state_mismatch",
                "the answer from the identity provider is not for the sign-in this browser \
                 started",
            ));
        }
        if let Some(error) = &callback.error {
            return Err(Failure::new(
                403,
                "Sign-in refused by the identity provider",
                "provider_refused",
                format!("the identity provider answered {:?}", printable(error)),
            ));
        }
        let code = callback
            .code
            .as_deref()
            .filter(|code| !code.is_empty())
            .ok_or_else(|| {
                Failure::new(
                    400,
                    "Bad callback",
                    "no_code",
                    "the callback carries no code",
                )
            })?;
        let redirect_uri = redirect_uri.ok_or_else(Failure::bad_host)?;
        let endpoints = self.endpoints().await?;
        let tokens = self
            .exchange(&endpoints, code, redirect_uri, &flow.v)
            .await?;
        let id_token = tokens.id_token.unwrap_or_default();
        let mut identity = (self.id_tokens)
            .verify_id_token(&id_token, &flow.n, &self.client.client_id)
            .await
            .map_err(|e| {
                Failure::new(
                    401,
                    "ID token refused",
                    e.code(),
                    format!("the identity provider's ID token was refused: {e}"),
                )
            })?;
        let renew = tokens
            .refresh_token
            .filter(|t| self.client.renew && !t.is_empty())
            .map(|refresh_token| RenewWith {
                refresh_token,
                nonce: flow.n.clone(),
            });
        let id_token_ends = identity.expires_at;
        match (self.client.session_lifetime, &renew) {
            (Some(lifetime), _) => identity.expires_at = now + lifetime.as_secs(),
            (None, Some(_)) => identity.expires_at = now + RENEWABLE_SESSION.as_secs(),
            (None, None) => {}
        }
        identity.sign_in = Some(crate::new_session_id());
        if identity.expires_at <= now || id_token_ends <= now {
            return Err(Failure::new(
                401,
                "ID token refused",
                "expired",
                "the ID token has expired",
            ));
        }
        if renew.is_some() {
            let by = id_token_ends.min(identity.expires_at);
            identity.renewal = Some(Renewal::before(by, now));
        }
        let mut session_cookie =
            self.sessions
                .issue_with_hint(&identity, &id_token, renew.as_ref());
        if renew.is_some() && session_cookie.len() > crate::MAX_SEALED_CHARS {
            // The refresh token does not fit: a session that ends with its ID token.
            tracing::warn!(
                "the provider's refresh token does not fit in the session cookie; the session \
                 ends with its ID token"
            );
            identity.renewal = None;
            identity.expires_at = match self.client.session_lifetime {
                Some(lifetime) => now + lifetime.as_secs(),
                None => id_token_ends,
            };
            session_cookie = self.sessions.issue_with_hint(&identity, &id_token, None);
        }
        if session_cookie.len() > crate::MAX_SEALED_CHARS {
            // Browsers drop a cookie this large, or it would not be opened: the browser would
            // go round the sign-in for ever.
            return Err(Failure::new(
                502,
                "Identity too large",
                "identity_too_large",
                "the identity provider's claims (roles, say) are too large for a session \
                 cookie; map fewer with auth.roles_claim",
            ));
        }
        Ok(Finished {
            identity,
            session_cookie,
            return_to: flow.r,
        })
    }

    /// Where a signed-out browser goes: the provider's end-session endpoint (RP-initiated
    /// logout) when it has one, else `fallback`. The session ends here whatever the
    /// provider's state, so an unreachable provider also gives `fallback`. The provider is
    /// sent `client_id`, the session's ID token as `id_token_hint` when the session kept it
    /// (the session cookie's value is `session`), and `post_logout_redirect_uri` when given:
    /// where it sends the browser once signed out, without asking again when it trusts the
    /// hint.
    pub async fn logout_location(
        &self,
        fallback: &str,
        session: Option<&str>,
        post_logout_redirect_uri: Option<&str>,
    ) -> String {
        match self.endpoints().await {
            Ok(endpoints) => match &endpoints.end_session {
                Some(end) => {
                    let hint = session.and_then(|s| self.sessions.id_token_hint(s, now_seconds()));
                    let mut end = end.clone();
                    {
                        let mut query = end.query_pairs_mut();
                        query.append_pair("client_id", &self.client.client_id);
                        if let Some(hint) = &hint {
                            query.append_pair("id_token_hint", hint);
                        }
                        if let Some(uri) = post_logout_redirect_uri {
                            query.append_pair("post_logout_redirect_uri", uri);
                        }
                    }
                    end.to_string()
                }
                None => fallback.to_owned(),
            },
            Err(_) => fallback.to_owned(),
        }
    }

    /// Renews the session whose cookie value is `value` with its refresh token: the provider's
    /// new ID token, checked as at sign-in (its `nonce` may be absent, or the sign-in's), must
    /// name the same user; it gives the session's new cookie, with the same id and end. The
    /// requests of one session cookie share one renewal, since a provider may rotate refresh
    /// tokens and take the reuse of an old one for theft; so do the instances sharing `turns`
    /// (see [`RenewalTurns`]). The flag says whether this call asked the provider (rather than
    /// sharing another request's renewal).
    pub async fn renew(
        &self,
        value: &str,
        turns: &dyn RenewalTurns,
    ) -> (Result<Renewed, NotRenewed>, bool) {
        let now = now_seconds();
        let refused = |code, detail: &str| {
            NotRenewed::Refused(Arc::new(Failure::new(
                401,
                "Session not renewed",
                code,
                detail,
            )))
        };
        let sealed = self
            .sessions
            .unseal(value)
            .filter(|sealed| sealed.e > now)
            .ok_or_else(|| refused("bad_session", "the session cookie is invalid or has ended"));
        let sealed = match sealed {
            Ok(sealed) => sealed,
            Err(e) => return (Err(e), false),
        };
        let Some(renewable) = sealed.t.clone() else {
            return (
                Err(refused("not_renewable", "the session has no refresh token")),
                false,
            );
        };
        let key = format!("{}:{}", sealed.i, renewable.b);
        let cell = {
            let mut renewals = self
                .renewals
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if renewals.len() >= MAX_RENEWALS {
                renewals.retain(|_, (at, cell)| still_shared(*at, cell, now));
            }
            match renewals.get(&key) {
                Some((at, cell)) if still_shared(*at, cell, now) => Arc::clone(cell),
                _ if renewals.len() >= MAX_RENEWALS => {
                    let busy = Failure::new(
                        503,
                        "Session not renewed",
                        "renewals_busy",
                        "too many sessions are being renewed at once",
                    );
                    return (Err(NotRenewed::Unavailable(Arc::new(busy))), false);
                }
                _ => {
                    let cell = Arc::new(OnceCell::new());
                    renewals.insert(key.clone(), (Instant::now(), Arc::clone(&cell)));
                    cell
                }
            }
        };
        let mut asked = false;
        let outcome = cell
            .get_or_init(|| self.renew_in_turn(sealed, renewable, now, turns, &key, &mut asked))
            .await
            .clone();
        match outcome {
            // Shared from a renewal long enough ago that its cookie is past its own ID token:
            // the browser has a newer cookie, or must sign in again.
            Ok(renewed) if renewed.identity.must_renew(now) => {
                let stale = Failure::new(
                    401,
                    "Session not renewed",
                    "renewed_elsewhere",
                    "this session cookie was renewed already; its successor has ended too",
                );
                (Err(NotRenewed::Unavailable(Arc::new(stale))), asked)
            }
            outcome => (outcome, asked),
        }
    }

    /// Renews once for every instance sharing `turns`: asks the provider with the turn (and
    /// sets `asked`), or hands out the renewal another instance made. Without the shared
    /// turns (the store is out of reach), it asks the provider alone.
    async fn renew_in_turn(
        &self,
        sealed: Sealed,
        renewable: Renewable,
        now: u64,
        turns: &dyn RenewalTurns,
        key: &str,
        asked: &mut bool,
    ) -> Result<Renewed, NotRenewed> {
        let under_way = PROVIDER_TIMEOUT * 2;
        let give_up = Instant::now() + under_way;
        loop {
            let turn = match turns.take_renewal(key, under_way).await {
                Ok(turn) => turn,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot share a session renewal with the other instances; asking the provider alone");
                    *asked = true;
                    return self.renew_now(sealed, renewable, now).await;
                }
            };
            match turn {
                Turn::Mine => {
                    *asked = true;
                    let outcome = self.renew_now(sealed, renewable, now).await;
                    let recorded = match &outcome {
                        Ok(renewed) => {
                            let cookie = Some(renewed.session_cookie.as_str());
                            turns.finish_renewal(key, cookie, RENEWAL_SHARED).await
                        }
                        Err(NotRenewed::Refused(_)) => {
                            turns.finish_renewal(key, None, RENEWAL_SHARED).await
                        }
                        Err(NotRenewed::Unavailable(_)) => turns.give_back_renewal(key).await,
                    };
                    if let Err(e) = recorded {
                        tracing::warn!(error = %e, "cannot record a session renewal for the other instances");
                    }
                    return outcome;
                }
                Turn::Renewed(cookie) => return self.adopt(cookie, &sealed, now),
                Turn::Refused => {
                    return Err(NotRenewed::Refused(Arc::new(Failure::new(
                        401,
                        "Session not renewed",
                        "renewal_refused",
                        "the provider refused another instance's renewal of this session",
                    ))))
                }
                Turn::Pending if Instant::now() < give_up => tokio::time::sleep(TURN_POLL).await,
                Turn::Pending => {
                    return Err(NotRenewed::Unavailable(Arc::new(Failure::new(
                        503,
                        "Session not renewed",
                        "renewal_pending",
                        "another instance is renewing this session and has not finished",
                    ))))
                }
            }
        }
    }

    /// The renewal another instance made of the session `sealed`: its cookie, checked to be
    /// this session's, for this session's user.
    fn adopt(&self, cookie: String, sealed: &Sealed, now: u64) -> Result<Renewed, NotRenewed> {
        match self.sessions.open(&cookie, now) {
            Ok(identity)
                if identity.sign_in.as_deref() == Some(sealed.i.as_str())
                    && identity.user == sealed.u =>
            {
                Ok(Renewed {
                    identity,
                    session_cookie: cookie,
                })
            }
            _ => Err(NotRenewed::Unavailable(Arc::new(Failure::new(
                502,
                "Session not renewed",
                "renewal_unusable",
                "another instance's renewal of this session is not a cookie of this session",
            )))),
        }
    }

    async fn renew_now(
        &self,
        sealed: Sealed,
        renewable: Renewable,
        now: u64,
    ) -> Result<Renewed, NotRenewed> {
        let unavailable = |failure: Failure| NotRenewed::Unavailable(Arc::new(failure));
        let refused = |detail: String| {
            NotRenewed::Refused(Arc::new(Failure::new(
                401,
                "Session not renewed",
                "renewal_refused",
                detail,
            )))
        };
        let endpoints = self.endpoints().await.map_err(unavailable)?;
        let (status, body) = self
            .token_endpoint(
                &endpoints,
                &[
                    ("grant_type", "refresh_token"),
                    ("refresh_token", &renewable.t),
                ],
            )
            .await
            .map_err(unavailable)?;
        if status == reqwest::StatusCode::BAD_REQUEST || status == reqwest::StatusCode::UNAUTHORIZED
        {
            // RFC 6749 5.2: a refresh token that is invalid, expired or revoked, or a client
            // no longer allowed to use it.
            return Err(refused(format!(
                "the token endpoint refused the refresh token: {:?}",
                printable(&provider_error(&body, status))
            )));
        }
        if !status.is_success() {
            return Err(unavailable(Failure::new(
                502,
                "Identity provider unavailable",
                "provider_unavailable",
                format!(
                    "the token endpoint answered {:?}",
                    printable(&provider_error(&body, status))
                ),
            )));
        }
        let tokens: TokenResponse = serde_json::from_slice(&body).map_err(|_| {
            unavailable(Failure::new(
                502,
                "Bad answer from the identity provider",
                "provider_unavailable",
                "the token endpoint's answer to a refresh is not JSON",
            ))
        })?;
        let (mut identity, by) = match tokens.id_token.as_deref().filter(|t| !t.is_empty()) {
            Some(id_token) => {
                let identity = (self.id_tokens)
                    .verify_renewed_id_token(id_token, &renewable.o, &self.client.client_id)
                    .await
                    .map_err(|e| refused(format!("the renewed ID token was refused: {e}")))?;
                if identity.user != sealed.u {
                    return Err(refused(format!(
                        "the renewed ID token names {:?}, not the session's user",
                        printable(&identity.user)
                    )));
                }
                let by = identity.expires_at;
                (identity, by)
            }
            // Some providers renew only the access token: the identity stays as signed in.
            None => {
                let lasts = tokens.expires_in.unwrap_or(300).clamp(1, 86_400);
                let identity = Identity {
                    user: sealed.u.clone(),
                    name: sealed.n.clone(),
                    roles: sealed.r.clone(),
                    expires_at: now + lasts,
                    sign_in: None,
                    renewal: None,
                    header_values: Default::default(),
                };
                (identity, now + lasts)
            }
        };
        let by = by.min(sealed.e);
        if by <= now {
            return Err(unavailable(Failure::new(
                502,
                "Bad answer from the identity provider",
                "provider_unavailable",
                "the renewed ID token has already expired",
            )));
        }
        identity.expires_at = sealed.e;
        identity.sign_in = Some(sealed.i);
        identity.renewal = Some(Renewal::before(by, now));
        let with = RenewWith {
            refresh_token: tokens
                .refresh_token
                .filter(|t| !t.is_empty())
                .unwrap_or(renewable.t),
            nonce: renewable.o,
        };
        let hint = tokens.id_token.or(sealed.h).unwrap_or_default();
        let session_cookie = self.sessions.issue_with_hint(&identity, &hint, Some(&with));
        if session_cookie.len() > crate::MAX_SEALED_CHARS {
            return Err(refused(
                "the renewed identity is too large for a session cookie".to_owned(),
            ));
        }
        Ok(Renewed {
            identity: Arc::new(identity),
            session_cookie,
        })
    }

    /// The authorization code traded for tokens at the token endpoint.
    async fn exchange(
        &self,
        endpoints: &Endpoints,
        code: &str,
        redirect_uri: &str,
        verifier: &str,
    ) -> Result<TokenResponse, Failure> {
        let (status, body) = self
            .token_endpoint(
                endpoints,
                &[
                    ("grant_type", "authorization_code"),
                    ("code", code),
                    ("redirect_uri", redirect_uri),
                    ("code_verifier", verifier),
                ],
            )
            .await?;
        if !status.is_success() {
            let error = provider_error(&body, status);
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
            .filter(|t| t.id_token.as_deref().is_some_and(|t| !t.is_empty()))
            .ok_or_else(|| {
                Failure::new(
                    502,
                    "Bad answer from the identity provider",
                    "no_id_token",
                    "the token endpoint answered no ID token",
                )
            })
    }

    /// A form posted to the token endpoint, authenticated as the client: the answer's status
    /// and body.
    async fn token_endpoint(
        &self,
        endpoints: &Endpoints,
        form: &[(&str, &str)],
    ) -> Result<(reqwest::StatusCode, Vec<u8>), Failure> {
        // RFC 6749 2.3.1: the id and secret are form-encoded before Basic authentication.
        let encode =
            |s: &str| url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
        let answer = self
            .http
            .post(endpoints.token.clone())
            .basic_auth(
                encode(&self.client.client_id),
                Some(encode(&self.client.client_secret)),
            )
            .header(reqwest::header::ACCEPT, "application/json")
            .form(form)
            .send()
            .await
            .map_err(|e| unreachable_provider(&e))?;
        let status = answer.status();
        Ok((status, read_capped(answer).await?))
    }

    /// The discovered endpoints, fetched on first use and kept; a failed fetch is retried by
    /// the next sign-in.
    async fn endpoints(&self) -> Result<Arc<Endpoints>, Failure> {
        if let Some(known) = self.endpoints.load_full() {
            return Ok(known);
        }
        let url = format!(
            "{}/.well-known/openid-configuration",
            self.client.issuer.trim_end_matches('/')
        );
        let answer = self
            .http
            .get(&url)
            .header(reqwest::header::ACCEPT, "application/json")
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
        if doc.issuer != self.client.issuer {
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
}

/// How ID tokens are verified: the provider's discovered keys, every asymmetric algorithm (a
/// provider signs ID tokens with its published keys, never with the client secret), `iss` =
/// the issuer, `aud` = the client id, and the claim mapping and leeway of `claims`.
pub fn id_token_settings(client: &ClientSettings, claims: &AuthSettings) -> AuthSettings {
    const ID_TOKEN_ALGORITHMS: &[&str] = &[
        "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "EdDSA",
    ];
    AuthSettings {
        algorithms: ID_TOKEN_ALGORITHMS
            .iter()
            .map(|a| (*a).to_owned())
            .collect(),
        key: crate::KeySource::Remote(crate::RemoteKeys::at(crate::KeyLocation::Discovery)),
        issuer: Some(client.issuer.clone()),
        audience: vec![client.client_id.clone()],
        ..claims.clone()
    }
}

/// `return_to` if it is a path on this site, else `/`: an absolute URL, a scheme-relative
/// `//host`, a backslash (which browsers read as a slash) or a control character could send
/// the browser elsewhere after sign-in. Only visible ASCII is kept, as a request's own path and
/// query are sent (percent-encoded), so every browser reads the `Location` header alike.
pub fn safe_return_to(wanted: &str) -> &str {
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

/// `{login}?return_to=…`: where a browser without a session is sent, to come back to
/// `path_and_query` (when it is a same-site path).
pub fn login_location(login: &str, path_and_query: &str) -> String {
    let mut url = format!("{login}?return_to=");
    url.extend(url::form_urlencoded::byte_serialize(
        safe_return_to(path_and_query).as_bytes(),
    ));
    url
}

/// The callback URL made from a request's `Host`: `{scheme}://{host}{path}`. `None` for a
/// Host that is not a plain host and port.
pub fn callback_url(scheme: &str, host: Option<&[u8]>, path: &str) -> Option<String> {
    let host = std::str::from_utf8(host?).ok()?;
    let plain = !host.is_empty()
        && host.len() <= 255
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b':' | b'[' | b']'));
    plain.then(|| format!("{scheme}://{host}{path}"))
}

/// A `Set-Cookie` value for the sign-in cookies: never readable by scripts, sent on top-level
/// navigations from the provider (Lax), and only over TLS when `secure`.
pub fn cookie(name: &str, value: &str, path: &str, max_age: u64, secure: bool) -> String {
    let secure = if secure { "; Secure" } else { "" };
    format!("{name}={value}; Path={path}; Max-Age={max_age}; HttpOnly; SameSite=Lax{secure}")
}

/// 32 random bytes as unpadded base64url: `state`, `nonce` and the PKCE verifier (43
/// characters, within RFC 7636's 43 to 128).
fn random_token() -> String {
    let bytes: [u8; 32] = rand::random();
    URL_SAFE_NO_PAD.encode(bytes)
}

fn now_seconds() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Whether a renewal begun at `at` is still given to requests with the old cookie: for
/// [`RENEWAL_SHARED`], and a successful one for as long as the cookie it gave needs no renewal
/// of its own, so a browser that missed the new cookie (an aborted request) is given it again
/// rather than presenting a refresh token the provider may have rotated away.
fn still_shared(at: Instant, cell: &RenewalCell, now: u64) -> bool {
    match cell.get() {
        // Under way.
        None => at.elapsed() < PROVIDER_TIMEOUT * 2,
        Some(Ok(renewed)) => {
            at.elapsed() < RENEWAL_SHARED || renewed.identity.renewal.is_some_and(|r| now < r.from)
        }
        Some(Err(NotRenewed::Refused(_))) => at.elapsed() < RENEWAL_SHARED,
        // A provider out of reach is asked again a few seconds later.
        Some(Err(NotRenewed::Unavailable(_))) => at.elapsed() < UNAVAILABLE_SHARED,
    }
}

/// The `error` of a token endpoint's answer, or its status.
fn provider_error(body: &[u8], status: reqwest::StatusCode) -> String {
    serde_json::from_slice::<ProviderError>(body)
        .ok()
        .and_then(|e| e.error)
        .unwrap_or_else(|| status.to_string())
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Turns that always answer the same, as another instance left them.
    struct Fixed(Turn);

    #[async_trait::async_trait]
    impl RenewalTurns for Fixed {
        async fn take_renewal(
            &self,
            _: &str,
            _: Duration,
        ) -> Result<Turn, crate::turns::TurnError> {
            Ok(self.0.clone())
        }
        async fn finish_renewal(
            &self,
            _: &str,
            _: Option<&str>,
            _: Duration,
        ) -> Result<(), crate::turns::TurnError> {
            panic!("only the turn's holder finishes it")
        }
        async fn give_back_renewal(&self, _: &str) -> Result<(), crate::turns::TurnError> {
            panic!("only the turn's holder gives it back")
        }
    }

    fn party() -> RelyingParty {
        let client = ClientSettings {
            issuer: "http://127.0.0.1:1".to_owned(),
            client_id: "latch".to_owned(),
            client_secret: "secret".to_owned(),
            scopes: vec!["openid".to_owned()],
            auth_params: Vec::new(),
            session_lifetime: None,
            renew: true,
        };
        RelyingParty::new(client, &AuthSettings::default(), &[7; 32]).unwrap()
    }

    /// A renewable session cookie of `user` with session id `id`, its ID token ending at `by`.
    fn session(party: &RelyingParty, user: &str, id: &str, by: u64) -> String {
        let now = now_seconds();
        let identity = Identity {
            user: user.to_owned(),
            name: user.to_owned(),
            roles: Vec::new(),
            expires_at: now + 3600,
            sign_in: Some(id.to_owned()),
            renewal: Some(Renewal { from: now, by }),
            header_values: Default::default(),
        };
        let with = RenewWith {
            refresh_token: "rt".to_owned(),
            nonce: "n".to_owned(),
        };
        party.sessions().issue_with_hint(&identity, "", Some(&with))
    }

    const SESSION: &str = "AAAAAAAAAAAAAAAAAAAAAA";
    const OTHER_SESSION: &str = "BBBBBBBBBBBBBBBBBBBBBB";

    #[tokio::test]
    async fn another_instances_renewal_of_this_session_is_handed_out_without_asking() {
        let party = party();
        let now = now_seconds();
        let old = session(&party, "alice", SESSION, now + 60);
        let new = session(&party, "alice", SESSION, now + 600);
        let (outcome, asked) = party.renew(&old, &Fixed(Turn::Renewed(new.clone()))).await;
        let renewed = outcome.expect("the other instance's renewal");
        assert!(!asked);
        assert_eq!(renewed.session_cookie, new);
        assert_eq!(renewed.identity.user, "alice");
        assert_eq!(renewed.identity.renewal.map(|r| r.by), Some(now + 600));
    }

    #[tokio::test]
    async fn a_shared_renewal_of_another_session_or_user_or_no_cookie_at_all_is_not_handed_out() {
        let party = party();
        let now = now_seconds();
        let old = session(&party, "alice", SESSION, now + 60);
        for shared in [
            session(&party, "alice", OTHER_SESSION, now + 600),
            session(&party, "mallory", SESSION, now + 600),
            "not a cookie".to_owned(),
        ] {
            let (outcome, asked) = party.renew(&old, &Fixed(Turn::Renewed(shared))).await;
            assert!(!asked);
            match outcome {
                Err(NotRenewed::Unavailable(failed)) => assert_eq!(failed.code, "renewal_unusable"),
                Err(other) => panic!("{other:?}"),
                Ok(_) => panic!("a foreign renewal was handed out"),
            }
            // Each cookie of a session shares one renewal per process; start afresh.
            party.renewals.lock().unwrap().clear();
        }
    }

    #[tokio::test]
    async fn another_instances_refused_renewal_refuses_this_one() {
        let party = party();
        let old = session(&party, "alice", SESSION, now_seconds() + 60);
        let (outcome, asked) = party.renew(&old, &Fixed(Turn::Refused)).await;
        assert!(!asked);
        assert!(matches!(outcome, Err(NotRenewed::Refused(_))));
    }

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
    fn a_login_location_keeps_only_a_same_site_return_path() {
        assert_eq!(
            login_location("/__latch/login", "/docs/1?x=a%20b"),
            "/__latch/login?return_to=%2Fdocs%2F1%3Fx%3Da%2520b"
        );
        assert_eq!(
            login_location("/login", "https://evil.example/"),
            "/login?return_to=%2F"
        );
    }

    #[test]
    fn a_callback_url_needs_a_plain_host() {
        assert_eq!(
            callback_url("https", Some(b"app.example:8443"), "/__latch/callback").as_deref(),
            Some("https://app.example:8443/__latch/callback")
        );
        for bad in [
            &b""[..],
            b"evil.example/x",
            b"a b",
            b"x@evil.example",
            b"\xff",
        ] {
            assert_eq!(
                callback_url("http", Some(bad), "/callback"),
                None,
                "{bad:?}"
            );
        }
        assert_eq!(callback_url("http", None, "/callback"), None);
    }

    #[test]
    fn the_callback_query_keeps_the_first_of_each_parameter() {
        let c = Callback::from_query(Some("code=a%2Bb&state=s1&state=s2&other=x"));
        assert_eq!(c.code.as_deref(), Some("a+b"));
        assert_eq!(c.state.as_deref(), Some("s1"));
        assert_eq!(c.error, None);
        let empty = Callback::from_query(None);
        assert!(empty.code.is_none() && empty.state.is_none());
    }

    #[test]
    fn sign_in_cookies_are_http_only_lax_and_secure_over_tls() {
        let plain = cookie("latch_oidc", "v", "/", 60, false);
        assert_eq!(
            plain,
            "latch_oidc=v; Path=/; Max-Age=60; HttpOnly; SameSite=Lax"
        );
        assert!(cookie("latch_oidc", "v", "/", 60, true).ends_with("; Secure"));
    }

    #[test]
    fn random_tokens_are_pkce_sized_and_differ() {
        let (a, b) = (random_token(), random_token());
        assert_eq!(a.len(), 43);
        assert_ne!(a, b);
    }
}
