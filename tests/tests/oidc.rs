//! Sign-in with an OpenID Provider (`[oidc]`), end to end against the real oidc-provider in
//! `tests/apps/idp`: a browser with a cookie jar, every redirect followed by hand so each hop
//! is asserted, and the hostile variants of each step (forged and replayed state, a swapped
//! nonce or audience, a foreign return address, a tampered session), each answered with a
//! clear error that sets no session.

use std::sync::Arc;

use futures::{SinkExt, StreamExt};
use reqwest::cookie::{CookieStore, Jar};
use reqwest::header::{ACCEPT, COOKIE, LOCATION, SET_COOKIE};
use reqwest::Method;
use reqwest::StatusCode;
use serde_json::{json, Value};
use std::time::Duration;
use tests::express::{open_socket, App, PATIENCE};
use tests::fixtures::DOC_EDIT;
use tests::idp::{Idp, WEB_CLIENT_ID, WEB_CLIENT_SECRET};
use tests::instances::{next_message, redis_locks, wait_ready, watch_with, Ws};
use tests::redis::RedisServer;
use tests::{client, eventually, token, Latch, LatchBuilder, Upstream};
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use url::Url;

const PROTECTED: &str = "/echo/docs/1/edit";
const HTML: &str = "text/html,application/xhtml+xml";
const COOKIE_SECRET: &str = "oidc-test-cookie-secret-of-at-least-32-bytes";

/// A provider, an app, and Latch signing users in with the provider.
struct World {
    idp: Idp,
    latch: Latch,
    _upstream: Upstream,
}

/// The `[oidc]` section signing users in with `idp`.
fn oidc_section(idp: &Idp) -> String {
    format!(
        "[oidc]\nissuer = \"{}\"\nclient_id = \"{WEB_CLIENT_ID}\"\n\
         client_secret = \"{WEB_CLIENT_SECRET}\"\ncookie_secret = \"{COOKIE_SECRET}\"",
        idp.issuer()
    )
}

async fn world() -> World {
    let idp = Idp::start();
    let upstream = Upstream::start().await;
    let latch = LatchBuilder::new(upstream.port())
        .rules(DOC_EDIT)
        .section(&oidc_section(&idp))
        .start();
    idp.web_client(&latch.url("/__latch/callback")).await;
    World {
        idp,
        latch,
        _upstream: upstream,
    }
}

/// A browser: a cookie jar, and no automatic redirects.
struct Browser {
    http: reqwest::Client,
    jar: Arc<Jar>,
}

/// One hop: the status, where it sends the browser (absolute), and its `Set-Cookie`s.
struct Hop {
    status: StatusCode,
    location: Option<Url>,
    cookies: Vec<String>,
    body: String,
}

impl Hop {
    fn to(&self) -> &Url {
        self.location
            .as_ref()
            .unwrap_or_else(|| panic!("no Location in a {} answer: {}", self.status, self.body))
    }

    fn cookie(&self, name: &str) -> Option<&str> {
        self.cookies
            .iter()
            .find(|c| c.starts_with(&format!("{name}=")))
            .map(String::as_str)
    }

    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or(Value::Null)
    }
}

impl Browser {
    fn new() -> Browser {
        let jar = Arc::new(Jar::default());
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .cookie_provider(Arc::clone(&jar))
            .no_proxy()
            .build()
            .unwrap();
        Browser { http, jar }
    }

    async fn get(&self, url: &Url, accept: &str) -> Hop {
        let resp = self
            .http
            .get(url.clone())
            .header(ACCEPT, accept)
            .send()
            .await
            .unwrap();
        hop(url, resp).await
    }

    /// The cookies this browser would send to `url`.
    fn cookies_for(&self, url: &Url) -> String {
        self.jar
            .cookies(url)
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default()
    }
}

async fn hop(url: &Url, resp: reqwest::Response) -> Hop {
    let status = resp.status();
    let location = resp
        .headers()
        .get(LOCATION)
        .map(|l| url.join(l.to_str().unwrap()).unwrap());
    let cookies = resp
        .headers()
        .get_all(SET_COOKIE)
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .collect();
    let body = resp.text().await.unwrap_or_default();
    Hop {
        status,
        location,
        cookies,
        body,
    }
}

fn query(url: &Url, name: &str) -> Option<String> {
    url.query_pairs()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

fn with_query(url: &Url, name: &str, value: &str) -> Url {
    let mut out = url.clone();
    let pairs: Vec<(String, String)> = url
        .query_pairs()
        .map(|(k, v)| {
            let v = if k == name {
                value.to_owned()
            } else {
                v.into_owned()
            };
            (k.into_owned(), v)
        })
        .collect();
    out.query_pairs_mut().clear().extend_pairs(pairs);
    out
}

/// From `{prefix}/login?return_to=...` through the provider's sign-in as `user`, up to (not
/// including) the callback: the callback URL the provider sent the browser to, and the login
/// hop (its Location is the authorization request).
async fn to_callback(w: &World, browser: &Browser, return_to: &str, user: &str) -> (Url, Hop) {
    to_callback_on(&w.idp, &w.latch, browser, return_to, user).await
}

/// [`to_callback`] through `latch`, signing in at `idp`.
async fn to_callback_on(
    idp: &Idp,
    latch: &Latch,
    browser: &Browser,
    return_to: &str,
    user: &str,
) -> (Url, Hop) {
    let mut login = Url::parse(&latch.url("/__latch/login")).unwrap();
    login.query_pairs_mut().append_pair("return_to", return_to);
    let started = browser.get(&login, HTML).await;
    assert_eq!(started.status, StatusCode::FOUND, "{}", started.body);
    let authorize = started.to().clone();
    assert!(authorize.as_str().starts_with(&idp.issuer()), "{authorize}");
    let callback = latch.url("/__latch/callback");
    (
        provider_sign_in(browser, &authorize, user, &callback).await,
        started,
    )
}

/// The provider's part: authorization request, interaction, consent, back to the callback.
async fn finish_at_provider(w: &World, browser: &Browser, authorize: &Url, user: &str) -> Url {
    provider_sign_in(browser, authorize, user, &w.latch.url("/__latch/callback")).await
}

/// The provider's part for a client whose callback is `expected_callback`.
async fn provider_sign_in(
    browser: &Browser,
    authorize: &Url,
    user: &str,
    expected_callback: &str,
) -> Url {
    let at = browser.get(authorize, HTML).await;
    assert_eq!(at.status, StatusCode::SEE_OTHER, "{}", at.body);
    let mut interaction = at.to().clone();
    assert!(
        interaction.path().starts_with("/interaction/"),
        "{interaction}"
    );
    interaction.query_pairs_mut().append_pair("login", user);
    let done = browser.get(&interaction, HTML).await;
    assert_eq!(done.status, StatusCode::SEE_OTHER, "{}", done.body);
    let resumed = browser.get(done.to(), HTML).await;
    assert_eq!(resumed.status, StatusCode::SEE_OTHER, "{}", resumed.body);
    let callback = resumed.to().clone();
    assert_eq!(callback.as_str().split('?').next(), Some(expected_callback));
    callback
}

/// A whole sign-in: the browser holds a session afterwards. Returns the callback's answer.
async fn sign_in(w: &World, browser: &Browser, return_to: &str, user: &str) -> Hop {
    sign_in_on(&w.idp, &w.latch, browser, return_to, user).await
}

/// [`sign_in`] through `latch`, at `idp`.
async fn sign_in_on(
    idp: &Idp,
    latch: &Latch,
    browser: &Browser,
    return_to: &str,
    user: &str,
) -> Hop {
    let (callback, _) = to_callback_on(idp, latch, browser, return_to, user).await;
    let done = browser.get(&callback, HTML).await;
    assert_eq!(done.status, StatusCode::FOUND, "{}", done.body);
    done
}

fn session_value(hop: &Hop) -> String {
    let cookie = hop.cookie("latch_oidc").expect("a session cookie");
    cookie["latch_oidc=".len()..]
        .split(';')
        .next()
        .unwrap()
        .to_owned()
}

#[tokio::test]
async fn a_browser_signs_in_returns_to_its_page_and_claims_the_lock_as_the_user() {
    let w = world().await;
    let alice = Browser::new();
    let page = Url::parse(&w.latch.url(&format!("{PROTECTED}?tab=2"))).unwrap();

    // No session: the page sends the browser to Latch's sign-in, remembering where it was.
    let refused = alice.get(&page, HTML).await;
    assert_eq!(refused.status, StatusCode::FOUND);
    let login = refused.to().clone();
    assert_eq!(login.path(), "/__latch/login");
    assert_eq!(
        query(&login, "return_to").as_deref(),
        Some("/echo/docs/1/edit?tab=2")
    );

    // The sign-in: an authorization request with PKCE (S256), state and nonce, all of it
    // kept in a sealed cookie scoped to the callback.
    let started = alice.get(&login, HTML).await;
    assert_eq!(started.status, StatusCode::FOUND);
    let authorize = started.to().clone();
    assert_eq!(authorize.path(), "/auth");
    assert_eq!(query(&authorize, "response_type").as_deref(), Some("code"));
    assert_eq!(
        query(&authorize, "client_id").as_deref(),
        Some(WEB_CLIENT_ID)
    );
    assert_eq!(
        query(&authorize, "redirect_uri"),
        Some(w.latch.url("/__latch/callback"))
    );
    assert_eq!(
        query(&authorize, "scope").as_deref(),
        Some("openid profile email")
    );
    assert_eq!(
        query(&authorize, "code_challenge_method").as_deref(),
        Some("S256")
    );
    assert_eq!(query(&authorize, "code_challenge").unwrap().len(), 43);
    assert!(query(&authorize, "state").unwrap().len() >= 43);
    assert!(query(&authorize, "nonce").unwrap().len() >= 43);
    let flow = started.cookie("latch_oidc_flow").expect("a flow cookie");
    for attribute in [
        "Path=/__latch/callback",
        "HttpOnly",
        "SameSite=Lax",
        "Max-Age=600",
    ] {
        assert!(flow.contains(attribute), "{flow}");
    }
    let state = query(&authorize, "state").unwrap();
    assert!(!flow.contains(&state), "the state travels sealed: {flow}");

    let callback = finish_at_provider(&w, &alice, &authorize, "alice").await;
    let done = alice.get(&callback, HTML).await;
    assert_eq!(done.status, StatusCode::FOUND, "{}", done.body);
    assert_eq!(done.to(), &page, "back to the page the sign-in began on");
    let session = done.cookie("latch_oidc").expect("a session cookie");
    for attribute in ["Path=/", "HttpOnly", "SameSite=Lax"] {
        assert!(session.contains(attribute), "{session}");
    }
    assert!(!session.contains("Secure"), "plain http: {session}");
    assert!(
        !session.contains("alice"),
        "the identity travels sealed: {session}"
    );
    assert!(
        done.cookie("latch_oidc_flow")
            .is_some_and(|c| c.contains("Max-Age=0")),
        "the flow cookie is cleared"
    );

    // Signed in: the app sees the provider's subject and claims, and the lock is alice's.
    let seen = alice.get(&page, "application/json").await;
    assert_eq!(seen.status, StatusCode::OK, "{}", seen.body);
    let echo = seen.json();
    assert_eq!(echo["headers"]["x-latch-user"], "alice");
    assert_eq!(echo["headers"]["x-latch-user-name"], "User alice");

    // Bob, signed in too, finds the document locked by alice.
    let bob = Browser::new();
    sign_in(&w, &bob, PROTECTED, "bob").await;
    let locked = bob.get(&page, "application/json").await;
    assert_eq!(locked.status, StatusCode::LOCKED, "{}", locked.body);
    assert!(locked.body.contains("User alice"), "{}", locked.body);
}

#[tokio::test]
async fn api_clients_get_401_without_a_session_and_bearer_tokens_still_work() {
    let w = world().await;
    let url = w.latch.url(PROTECTED);
    let resp = client()
        .get(&url)
        .header(ACCEPT, "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(resp.headers()["content-type"], "application/problem+json");
    let resp = client()
        .get(&url)
        .bearer_auth(token("carol", "Carol", &[]))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let echo: Value = resp.json().await.unwrap();
    assert_eq!(echo["headers"]["x-latch-user"], "carol");
}

/// A request with both a bearer token and a sign-in session: a good token counts, whoever the
/// session is; a refused one gives way to the session, as a stale token cookie does.
#[tokio::test]
async fn a_bearer_token_counts_over_a_session_and_a_refused_one_gives_way_to_it() {
    let w = world().await;
    let alice = Browser::new();
    sign_in(&w, &alice, PROTECTED, "alice").await;
    let session = session_cookie(&alice, &w.latch);
    let user_of = |path: &str, bearer: &str, cookie: Option<&str>| {
        let mut request = client()
            .get(w.latch.url(path))
            .header(ACCEPT, "application/json")
            .header("authorization", bearer);
        if let Some(cookie) = cookie {
            request = request.header(COOKIE, cookie);
        }
        async move {
            let resp = request.send().await.unwrap();
            let status = resp.status();
            let echo: Value = resp.json().await.unwrap_or(Value::Null);
            (status, echo["headers"]["x-latch-user"].clone())
        }
    };
    let carol = format!("Bearer {}", token("carol", "Carol", &[]));
    let forged = "Bearer not.a.token";

    // A forged token with alice's session: the session counts, and alice takes her lock.
    let seen = user_of(PROTECTED, forged, Some(&session)).await;
    assert_eq!(seen, (StatusCode::OK, json!("alice")));
    // The session cookie among others.
    let cookies = format!("theme=dark; {session}; lang=en");
    let seen = user_of(PROTECTED, forged, Some(&cookies)).await;
    assert_eq!(seen, (StatusCode::OK, json!("alice")));

    // Carol's token with alice's session: the request is carol's.
    let seen = user_of("/echo/docs/2/edit", &carol, Some(&session)).await;
    assert_eq!(seen, (StatusCode::OK, json!("carol")));
    let (status, _) = user_of(PROTECTED, &carol, Some(&session)).await;
    assert_eq!(status, StatusCode::LOCKED, "alice holds doc:1");

    // A forged token alone, or with a tampered session, is refused.
    let (status, _) = user_of(PROTECTED, forged, None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let tampered = format!("{session}x");
    let (status, _) = user_of(PROTECTED, forged, Some(&tampered)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn logout_ends_the_session_and_goes_to_the_providers_end_session_endpoint() {
    let w = world().await;
    let alice = Browser::new();
    sign_in(&w, &alice, PROTECTED, "alice").await;
    let page = Url::parse(&w.latch.url(PROTECTED)).unwrap();
    assert_eq!(
        alice.get(&page, "application/json").await.status,
        StatusCode::OK
    );

    let logout = Url::parse(&w.latch.url("/__latch/logout")).unwrap();
    let out = alice.get(&logout, HTML).await;
    assert_eq!(out.status, StatusCode::FOUND);
    let end = out.to();
    assert_eq!(
        end.as_str().split('?').next(),
        Some(format!("{}/session/end", w.idp.issuer()).as_str())
    );
    assert_eq!(query(end, "client_id").as_deref(), Some(WEB_CLIENT_ID));
    // RP-initiated logout: the sign-in's ID token as the hint, and the way back to the site.
    let hint = query(end, "id_token_hint").expect("the ID token as id_token_hint");
    assert_eq!(hint.split('.').count(), 3, "{hint}");
    assert_eq!(
        query(end, "post_logout_redirect_uri"),
        Some(w.latch.url("/"))
    );
    let cleared = out
        .cookie("latch_oidc")
        .expect("the session cookie is cleared");
    assert!(cleared.starts_with("latch_oidc=;"), "{cleared}");
    assert!(cleared.contains("Max-Age=0"), "{cleared}");
    // The provider accepts the hint and confirms the sign-out without asking (its page
    // submits its form at once); the confirmation sends the browser back to the site.
    let at_provider = alice.get(end, HTML).await;
    assert_eq!(at_provider.status, StatusCode::OK, "{}", at_provider.body);
    assert!(
        at_provider.body.contains("data-hinted=\"true\""),
        "{}",
        at_provider.body
    );
    let attribute = |name: &str| {
        let start = at_provider.body.find(&format!("{name}=\"")).unwrap() + name.len() + 2;
        let len = at_provider.body[start..].find('"').unwrap();
        at_provider.body[start..start + len].to_owned()
    };
    let confirm = Url::parse(&attribute("action")).unwrap();
    let xsrf = attribute("value");
    let resp = alice
        .http
        .post(confirm.clone())
        .form(&[("xsrf", xsrf.as_str()), ("logout", "yes")])
        .send()
        .await
        .unwrap();
    let back = hop(&confirm, resp).await;
    assert!(back.status.is_redirection(), "{}", back.body);
    assert_eq!(back.to().as_str(), w.latch.url("/"));

    let after = alice.get(&page, "application/json").await;
    assert_eq!(after.status, StatusCode::UNAUTHORIZED, "{}", after.body);
    assert_eq!(after.json()["code"], "missing");
}

/// The Express app's live documents: its WebSocket needs the document's lock.
const LIVE_DOCS: &str = r#"
[[rule]]
id = "docs"
pattern = '/docs/(?P<id>\d+)/(live|socket|save)'
resource = "doc:{id}"
inject = false
"#;

/// The `latch_oidc=…` cookie `browser` holds for `latch` (the jar also holds the provider's,
/// on the same host).
fn session_cookie(browser: &Browser, latch: &Latch) -> String {
    let all = browser.cookies_for(&Url::parse(&latch.url("/")).unwrap());
    all.split("; ")
        .find(|c| c.starts_with("latch_oidc="))
        .unwrap_or_else(|| panic!("no session cookie in {all}"))
        .to_owned()
}

/// The banner's `session_expired`, skipping what comes before it.
async fn session_expired(banner: &mut Ws) {
    loop {
        match next_message(banner, PATIENCE).await {
            Some(msg) if msg == json!({ "type": "session_expired" }) => return,
            Some(_) => {}
            None => panic!("no session_expired message"),
        }
    }
}

/// The close frame's code and reason, skipping what comes before it.
async fn close_of(ws: &mut Ws) -> (u16, String) {
    loop {
        match tokio::time::timeout(PATIENCE, ws.next()).await {
            Ok(Some(Ok(Message::Close(Some(frame))))) => {
                return (u16::from(frame.code), frame.reason.to_string())
            }
            Ok(Some(Ok(_))) => {}
            other => panic!("no close frame: {other:?}"),
        }
    }
}

/// A signed-in browser's banner socket and app socket on `latch`, and the proof that both are
/// live: the banner watches document 1, and the app saw the socket as `user`.
async fn open_sockets(latch: &Latch, cookie: &str, user: &str) -> (Ws, Ws) {
    let (banner, first) = watch_with(latch, cookie, "/docs/1/live").await;
    assert_eq!(first["type"], "lock", "{first}");
    let base = format!("ws://127.0.0.1:{}", latch.port);
    let mut app = open_socket(&base, 1, cookie)
        .await
        .expect("the app socket opens");
    app.send(Message::Text("draft".into())).await.unwrap();
    let answer = loop {
        match tokio::time::timeout(PATIENCE, app.next()).await {
            Ok(Some(Ok(Message::Text(text)))) => {
                break serde_json::from_str::<Value>(&text).unwrap()
            }
            Ok(Some(Ok(Message::Close(frame)))) => {
                panic!("the app socket closed: {frame:?}\n{}", latch.log())
            }
            Ok(Some(Ok(_))) => {}
            other => panic!("no answer from the app: {other:?}\n{}", latch.log()),
        }
    };
    assert_eq!(answer["user"], user, "{answer}");
    (banner, app)
}

/// alice signed in on a Latch in front of the Express app (which has WebSockets of its own),
/// with her banner socket and an app socket open.
struct Live {
    idp: Idp,
    app: App,
    latch: Latch,
    alice: Browser,
    cookie: String,
    banner: Ws,
    socket: Ws,
}

/// [`Live`], the provider's ID tokens lasting `id_token_ttl` seconds when given.
async fn live_alice(id_token_ttl: Option<u64>) -> Live {
    let idp = Idp::start();
    let app = App::start();
    let (port, oidc) = (app.port, oidc_section(&idp));
    let latch = tokio::task::spawn_blocking(move || {
        LatchBuilder::new(port)
            .rules(LIVE_DOCS)
            .section(&oidc)
            .start()
    })
    .await
    .unwrap();
    idp.web_client(&latch.url("/__latch/callback")).await;
    if let Some(seconds) = id_token_ttl {
        idp.id_token_ttl(seconds).await;
    }
    let alice = Browser::new();
    sign_in_on(&idp, &latch, &alice, "/docs/1/live", "alice").await;
    let cookie = session_cookie(&alice, &latch);
    let (banner, socket) = open_sockets(&latch, &cookie, "alice").await;
    Live {
        idp,
        app,
        latch,
        alice,
        cookie,
        banner,
        socket,
    }
}

/// After a logout, what a copy of the old cookie gets on `latch`: 401 `signed_out` for API
/// clients, the sign-in for browsers, and no banner socket.
async fn copied_cookie_is_refused(latch: &Latch, cookie: &str) {
    let page = latch.url("/docs/1/live");
    let api = client()
        .get(&page)
        .header(COOKIE, cookie)
        .header(ACCEPT, "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(api.status(), StatusCode::UNAUTHORIZED);
    let problem: Value = api.json().await.unwrap();
    assert_eq!(problem["code"], "signed_out", "{problem}");
    let html = client()
        .get(&page)
        .header(COOKIE, cookie)
        .header(ACCEPT, HTML)
        .send()
        .await
        .unwrap();
    assert_eq!(html.status(), StatusCode::FOUND);
    assert!(
        html.headers()[LOCATION]
            .to_str()
            .unwrap()
            .starts_with("/__latch/login?"),
        "{:?}",
        html.headers()[LOCATION]
    );
    let base = format!("ws://127.0.0.1:{}", latch.port);
    match open_socket(&base, 1, cookie).await {
        Err(WsError::Http(refused)) => assert_eq!(refused.status().as_u16(), 401),
        other => panic!(
            "the app socket opened with a signed-out cookie: {:?}",
            other.is_ok()
        ),
    }
}

/// Two Latch instances in front of the app on `port`, sharing `redis`, signing users in with
/// `idp` (which knows both callbacks), under `rules`.
async fn two_instances(
    idp: &Idp,
    redis: &RedisServer,
    port: u16,
    rules: &'static str,
) -> Vec<Latch> {
    let mut instances = Vec::new();
    for _ in 0..2 {
        let (locks, oidc) = (redis_locks(&redis.url()), oidc_section(idp));
        let latch = tokio::task::spawn_blocking(move || {
            LatchBuilder::new(port)
                .rules(rules)
                .locks(&locks)
                .section(&oidc)
                .start()
        })
        .await
        .unwrap();
        wait_ready(&latch, Duration::from_secs(10)).await;
        instances.push(latch);
    }
    let callbacks: Vec<String> = instances
        .iter()
        .map(|l| l.url("/__latch/callback"))
        .collect();
    let callbacks: Vec<&str> = callbacks.iter().map(String::as_str).collect();
    idp.web_client_for(&callbacks).await;
    instances
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_logout_on_one_instance_closes_the_sessions_sockets_on_another_and_ends_its_cookie() {
    let idp = Idp::start();
    let app = App::start();
    let redis = RedisServer::start();
    let instances = two_instances(&idp, &redis, app.port, LIVE_DOCS).await;
    let (a, b) = (&instances[0], &instances[1]);

    // Alice signs in through A; her session cookie works on B too (one cookie secret).
    let alice = Browser::new();
    sign_in_on(&idp, a, &alice, "/docs/1/live", "alice").await;
    let cookie = session_cookie(&alice, a);
    let (mut banner, mut socket) = open_sockets(b, &cookie, "alice").await;
    // Another sign-in of hers, in another browser, is another session.
    let other = Browser::new();
    sign_in_on(&idp, b, &other, "/", "alice").await;
    let other_cookie = session_cookie(&other, b);
    assert_ne!(other_cookie, cookie);

    let out = alice
        .get(&Url::parse(&a.url("/__latch/logout")).unwrap(), HTML)
        .await;
    assert_eq!(out.status, StatusCode::FOUND, "{}", out.body);
    assert!(out
        .cookie("latch_oidc")
        .is_some_and(|c| c.contains("Max-Age=0")));

    // On B: the banner is told, and both sockets close with 4401, on the app's side too.
    session_expired(&mut banner).await;
    assert_eq!(close_of(&mut banner).await.0, 4401);
    assert_eq!(close_of(&mut socket).await, (4401, "signed out".to_owned()));
    app.closed("alice", 4401).await;

    // A copy of the cookie is refused on both instances; the other session lives on.
    copied_cookie_is_refused(a, &cookie).await;
    copied_cookie_is_refused(b, &cookie).await;
    for latch in [a, b] {
        let page = Url::parse(&latch.url("/docs/1/live")).unwrap();
        let still = other.get(&page, "application/json").await;
        assert_eq!(still.status, StatusCode::OK, "{}", still.body);
    }
    assert_eq!(a.counter("latch_sign_outs_total{result=\"ok\"}").await, 1);

    // An instance that starts after the logout reads the ended session back from Redis.
    let (port, locks, oidc) = (app.port, redis_locks(&redis.url()), oidc_section(&idp));
    let late = tokio::task::spawn_blocking(move || {
        LatchBuilder::new(port)
            .rules(LIVE_DOCS)
            .locks(&locks)
            .section(&oidc)
            .start()
    })
    .await
    .unwrap();
    wait_ready(&late, Duration::from_secs(10)).await;
    let refused = eventually(PATIENCE, || async {
        let resp = client()
            .get(late.url("/docs/1/live"))
            .header(COOKIE, &cookie)
            .header(ACCEPT, "application/json")
            .send()
            .await
            .ok()?;
        (resp.status() == StatusCode::UNAUTHORIZED).then_some(())
    })
    .await;
    assert!(
        refused.is_some(),
        "a late instance accepted the ended session"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_memory_store_a_logout_closes_the_sessions_sockets_and_ends_its_cookie() {
    let Live {
        idp: _idp,
        app,
        latch,
        alice,
        cookie,
        mut banner,
        mut socket,
    } = live_alice(None).await;

    // Logout with a POST from the page itself.
    let logout = Url::parse(&latch.url("/__latch/logout")).unwrap();
    let out = alice
        .http
        .post(logout.clone())
        .header("origin", latch.url("").trim_end_matches('/'))
        .send()
        .await
        .unwrap();
    assert_eq!(out.status(), StatusCode::FOUND);

    session_expired(&mut banner).await;
    assert_eq!(close_of(&mut banner).await.0, 4401);
    assert_eq!(close_of(&mut socket).await, (4401, "signed out".to_owned()));
    app.closed("alice", 4401).await;
    copied_cookie_is_refused(&latch, &cookie).await;

    // A second logout with the ended cookie changes nothing and still signs the browser out.
    let again = client()
        .get(logout)
        .header(COOKIE, &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), StatusCode::FOUND);
    assert_eq!(
        latch.counter("latch_sign_outs_total{result=\"ok\"}").await,
        1
    );
}

#[tokio::test]
async fn another_site_cannot_sign_a_user_out() {
    let w = world().await;
    let alice = Browser::new();
    sign_in(&w, &alice, PROTECTED, "alice").await;
    let page = Url::parse(&w.latch.url(PROTECTED)).unwrap();
    let logout = Url::parse(&w.latch.url("/__latch/logout")).unwrap();
    for (method, headers) in [
        (Method::GET, vec![("sec-fetch-site", "cross-site")]),
        (Method::POST, vec![("sec-fetch-site", "cross-site")]),
        (Method::POST, vec![("origin", "https://evil.example")]),
    ] {
        let mut request = alice.http.request(method.clone(), logout.clone());
        for (name, value) in &headers {
            request = request.header(*name, *value);
        }
        let refused = hop(&logout, request.send().await.unwrap()).await;
        assert_eq!(
            refused.status,
            StatusCode::FORBIDDEN,
            "{method} {headers:?}"
        );
        assert!(
            refused.cookie("latch_oidc").is_none(),
            "{method} {headers:?}"
        );
    }
    // Still signed in.
    assert_eq!(
        alice.get(&page, "application/json").await.status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn a_forged_state_and_a_replayed_callback_grant_nothing() {
    let w = world().await;
    let mallory = Browser::new();

    // A state that is not the one this browser's sign-in sent.
    let (callback, _) = to_callback(&w, &mallory, PROTECTED, "alice").await;
    let forged = with_query(&callback, "state", "forged-state-value");
    let refused = mallory.get(&forged, "application/json").await;
    assert_eq!(refused.status, StatusCode::BAD_REQUEST, "{}", refused.body);
    assert_eq!(refused.json()["code"], "state_mismatch");
    assert!(refused.cookie("latch_oidc").is_none(), "no session");

    // A real callback, then the same URL again (the flow is gone), then again with the old
    // flow cookie put back (the provider refuses a code used twice).
    let fresh = Browser::new();
    let (callback, started) = to_callback(&w, &fresh, PROTECTED, "alice").await;
    let flow = started
        .cookie("latch_oidc_flow")
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    let done = fresh.get(&callback, HTML).await;
    assert_eq!(done.status, StatusCode::FOUND);
    let again = fresh.get(&callback, "application/json").await;
    assert_eq!(again.status, StatusCode::BAD_REQUEST, "{}", again.body);
    assert_eq!(again.json()["code"], "no_flow");
    assert!(again.cookie("latch_oidc").is_none(), "no new session");

    let resp = client()
        .get(callback.clone())
        .header(ACCEPT, "application/json")
        .header(COOKIE, flow)
        .send()
        .await
        .unwrap();
    let replayed = hop(&callback, resp).await;
    assert_eq!(
        replayed.status,
        StatusCode::BAD_GATEWAY,
        "{}",
        replayed.body
    );
    assert_eq!(replayed.json()["code"], "code_refused");
    assert!(replayed.cookie("latch_oidc").is_none(), "no session");

    // Each return to the callback is counted by its result.
    let latch = &w.latch;
    let count = |result: &str| {
        let series = format!("latch_sign_ins_total{{result=\"{result}\"}}");
        async move { latch.counter(&series).await }
    };
    assert_eq!(count("ok").await, 1);
    assert_eq!(count("state_mismatch").await, 1);
    assert_eq!(count("no_flow").await, 1);
    assert_eq!(count("code_refused").await, 1);

    // A callback with no flow cookie at all, as a browser page.
    let stranger = Browser::new();
    let page = stranger.get(&callback, HTML).await;
    assert_eq!(page.status, StatusCode::BAD_REQUEST);
    assert!(
        page.body.contains("No sign-in in progress"),
        "{}",
        page.body
    );
    assert!(page.cookie("latch_oidc").is_none());
}

#[tokio::test]
async fn a_return_address_on_another_site_falls_back_to_the_root() {
    let w = world().await;
    for foreign in [
        "https://evil.example/",
        "//evil.example/x",
        "/\\evil.example",
        "javascript:alert(1)",
    ] {
        let browser = Browser::new();
        let done = sign_in(&w, &browser, foreign, "alice").await;
        assert_eq!(
            done.to().as_str(),
            w.latch.url("/"),
            "{foreign:?} is not followed"
        );
    }
}

#[tokio::test]
async fn a_tampered_session_cookie_is_refused() {
    let w = world().await;
    let alice = Browser::new();
    let done = sign_in(&w, &alice, PROTECTED, "alice").await;
    let value = session_value(&done);
    let mut bytes = value.clone().into_bytes();
    let i = bytes.len() / 2;
    bytes[i] = if bytes[i] == b'A' { b'B' } else { b'A' };
    let tampered = String::from_utf8(bytes).unwrap();

    let url = w.latch.url(PROTECTED);
    let send = |cookie: String, accept: &'static str| {
        client()
            .get(&url)
            .header(ACCEPT, accept)
            .header(COOKIE, cookie)
            .send()
    };
    let resp = send(format!("latch_oidc={value}"), "application/json")
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK, "the untouched cookie works");
    // An old token cookie beside a good session does not send the browser round the sign-in.
    let resp = send(
        format!("latch_token=stale.old.token; latch_oidc={value}"),
        HTML,
    )
    .await
    .unwrap();
    assert_eq!(resp.status(), StatusCode::OK, "the session counts");
    let echo: Value = resp.json().await.unwrap();
    assert_eq!(echo["headers"]["x-latch-user"], "alice");
    let resp = send(format!("latch_oidc={tampered}"), "application/json")
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    let problem: Value = resp.json().await.unwrap();
    assert_eq!(problem["code"], "bad_session");
    // A browser with a bad cookie is sent to sign in again.
    let resp = send(
        format!("latch_token=stale.old.token; latch_oidc={tampered}"),
        "application/json",
    )
    .await
    .unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED, "neither counts");
    let resp = send(format!("latch_oidc={tampered}"), HTML).await.unwrap();
    assert_eq!(resp.status(), StatusCode::FOUND);
    assert!(resp.headers()[LOCATION]
        .to_str()
        .unwrap()
        .starts_with("/__latch/login?return_to="));
    // A token-shaped value, or a session sealed under another secret, is no session either.
    let resp = send(
        format!("latch_oidc={}", token("alice", "A", &[])),
        "application/json",
    )
    .await
    .unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn an_id_token_for_another_audience_or_another_sign_in_is_refused() {
    let w = world().await;
    for (claims, code) in [
        (json!({ "aud": "someone-else" }), "wrong_audience"),
        (json!({ "nonce": "not-the-sign-ins-nonce" }), "wrong_nonce"),
        (json!({ "iss": "https://impostor.example" }), "wrong_issuer"),
        (json!({ "exp": 1_000_000 }), "expired"),
        // Several audiences, and the authorized party is another client or not named.
        (
            json!({ "aud": [WEB_CLIENT_ID, "other"], "azp": "other" }),
            "wrong_audience",
        ),
        (json!({ "aud": [WEB_CLIENT_ID, "other"] }), "wrong_audience"),
    ] {
        w.idp.id_token_claims(&claims).await;
        let browser = Browser::new();
        let (callback, _) = to_callback(&w, &browser, PROTECTED, "alice").await;
        let refused = browser.get(&callback, "application/json").await;
        assert_eq!(
            refused.status,
            StatusCode::UNAUTHORIZED,
            "{claims}: {}",
            refused.body
        );
        assert_eq!(refused.json()["code"], code, "{claims}: {}", refused.body);
        assert!(
            refused.cookie("latch_oidc").is_none(),
            "{claims}: no session"
        );
        let page = Url::parse(&w.latch.url(PROTECTED)).unwrap();
        assert_eq!(
            browser.get(&page, "application/json").await.status,
            StatusCode::UNAUTHORIZED,
            "{claims}: nothing granted ({})",
            browser.cookies_for(&page)
        );
    }
    // Claims too large for a session cookie: refused, rather than a cookie the browser drops
    // (and a sign-in that would go round for ever).
    let roles: Vec<String> = (0..250)
        .map(|i| format!("role-name-number-{i:04}"))
        .collect();
    w.idp.id_token_claims(&json!({ "roles": roles })).await;
    let browser = Browser::new();
    let (callback, _) = to_callback(&w, &browser, PROTECTED, "alice").await;
    let refused = browser.get(&callback, "application/json").await;
    assert_eq!(refused.status, StatusCode::BAD_GATEWAY, "{}", refused.body);
    assert_eq!(refused.json()["code"], "identity_too_large");
    assert!(refused.cookie("latch_oidc").is_none());

    // The same provider, behaving again: the sign-in works.
    w.idp.id_token_claims(&json!({})).await;
    let browser = Browser::new();
    sign_in(&w, &browser, PROTECTED, "alice").await;
}

#[tokio::test]
async fn a_provider_error_or_a_provider_that_is_down_is_a_clear_error() {
    let w = world().await;
    // The provider answers the callback with an error (the user declined, say).
    let browser = Browser::new();
    let (callback, _) = to_callback(&w, &browser, PROTECTED, "alice").await;
    let state = query(&callback, "state").unwrap();
    let mut declined = callback.clone();
    declined
        .query_pairs_mut()
        .clear()
        .append_pair("error", "access_denied")
        .append_pair("state", &state);
    let refused = browser.get(&declined, HTML).await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    assert!(refused.body.contains("access_denied"), "{}", refused.body);
    assert!(refused.cookie("latch_oidc").is_none());

    // A Latch that has not yet seen the provider, while it is down.
    let upstream = Upstream::start().await;
    let latch = LatchBuilder::new(upstream.port())
        .rules(DOC_EDIT)
        .section(&format!(
            "[oidc]\nissuer = \"{}\"\nclient_id = \"{WEB_CLIENT_ID}\"\n\
             client_secret = \"{WEB_CLIENT_SECRET}\"\ncookie_secret = \"{COOKIE_SECRET}\"",
            w.idp.issuer()
        ))
        .start();
    w.idp.down().await;
    let login = Url::parse(&latch.url("/__latch/login?return_to=/")).unwrap();
    let down = Browser::new().get(&login, "application/json").await;
    assert_eq!(down.status, StatusCode::BAD_GATEWAY, "{}", down.body);
    assert_eq!(down.json()["code"], "provider_unavailable");
    assert!(down.cookie("latch_oidc_flow").is_none());
    w.idp.up().await;
    let up = Browser::new().get(&login, HTML).await;
    assert_eq!(up.status, StatusCode::FOUND, "{}", up.body);
}

#[tokio::test]
async fn behind_https_the_sign_in_cookies_are_secure_and_the_callback_is_https() {
    let idp = Idp::start();
    let upstream = Upstream::start().await;
    let latch = LatchBuilder::new(upstream.port())
        .rules(DOC_EDIT)
        .env("LATCH_PROXY_PUBLIC_SCHEME", "https")
        .section(&format!(
            "[oidc]\nissuer = \"{}\"\nclient_id = \"{WEB_CLIENT_ID}\"\n\
             client_secret = \"{WEB_CLIENT_SECRET}\"\ncookie_secret = \"{COOKIE_SECRET}\"",
            idp.issuer()
        ))
        .start();
    let login = Url::parse(&latch.url("/__latch/login?return_to=/x")).unwrap();
    let started = Browser::new().get(&login, HTML).await;
    assert_eq!(started.status, StatusCode::FOUND, "{}", started.body);
    assert_eq!(
        query(started.to(), "redirect_uri"),
        Some(format!("https://127.0.0.1:{}/__latch/callback", latch.port))
    );
    let flow = started.cookie("latch_oidc_flow").expect("a flow cookie");
    assert!(flow.contains("; Secure"), "{flow}");
    let logout = Url::parse(&latch.url("/__latch/logout")).unwrap();
    let out = Browser::new().get(&logout, HTML).await;
    let cleared = out
        .cookie("latch_oidc")
        .expect("the session cookie is cleared");
    assert!(cleared.contains("; Secure"), "{cleared}");
}

/// The whole flow in a real browser: Chromium follows every redirect, keeps every cookie
/// (SameSite=Lax across the provider's redirect back) and lands on the page it asked for.
#[tokio::test]
async fn chromium_signs_in_through_the_provider_and_lands_on_its_page() {
    let w = world().await;
    let driver = tests::browser::Driver::start().await;
    let browser = driver.signed_out("alice").await;
    // Short ID tokens, so the session renews itself during the test.
    w.idp.id_token_ttl(4).await;
    let outcome = std::panic::AssertUnwindSafe(async {
        browser.goto(&w.latch.url(PROTECTED)).await;
        let at_provider = browser.url().await;
        assert!(
            at_provider.starts_with(&format!("{}/interaction/", w.idp.issuer())),
            "{at_provider}"
        );
        browser.goto(&format!("{at_provider}?login=alice")).await;
        assert_eq!(browser.url().await, w.latch.url(PROTECTED));
        let text = browser.page_text().await;
        assert!(text.contains("\"x-latch-user\":\"alice\""), "{text}");
        let session = || async {
            let cookies = browser.session().get_all_cookies().await.unwrap();
            let found = cookies.iter().find(|c| c.name() == "latch_oidc");
            found
                .map(|c| c.value().to_owned())
                .expect("a session cookie")
        };
        let first = session().await;
        // Past the ID token's end, a reload renews the session in place: the page, not the
        // provider, with a new session cookie.
        tokio::time::sleep(Duration::from_millis(4_500)).await;
        browser.goto(&w.latch.url(PROTECTED)).await;
        assert_eq!(browser.url().await, w.latch.url(PROTECTED));
        let text = browser.page_text().await;
        assert!(text.contains("\"x-latch-user\":\"alice\""), "{text}");
        assert_ne!(session().await, first, "the session cookie was renewed");
        assert!(w.idp.refreshes().await >= 1);
        // Logout: the provider signs out at once (the ID token hint is good) and sends the
        // browser back to the site's root; the session cookie is gone.
        browser.goto(&w.latch.url("/__latch/logout")).await;
        let back = tests::eventually(PATIENCE, || async {
            let here = browser.url().await;
            (here == w.latch.url("/")).then_some(here)
        })
        .await;
        assert!(back.is_some(), "the browser is at {}", browser.url().await);
        let cookies = browser.session().get_all_cookies().await.unwrap();
        assert!(
            !cookies.iter().any(|c| c.name() == "latch_oidc"),
            "{cookies:?}"
        );
    });
    let result = futures::FutureExt::catch_unwind(outcome).await;
    if result.is_err() {
        browser.screenshot("oidc_chromium").await;
    }
    browser.quit().await;
    if let Err(panic) = result {
        std::panic::resume_unwind(panic);
    }
}

/// `latch run` with `[oidc]`: the console sends a visitor to the provider, lets the admin in
/// on return (roles from the ID token), shares the session with the proxy on the same host,
/// refuses a forged session and a cross-site sign-out, and signs out at the provider.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_signs_an_admin_in_with_the_provider_and_out_again() {
    let idp = Idp::start();
    let upstream = Upstream::start().await;
    let cp_port = tests::free_port();
    let oidc = format!(
        "[oidc]\nissuer = \"{}\"\nclient_id = \"{WEB_CLIENT_ID}\"\n\
         client_secret = \"{WEB_CLIENT_SECRET}\"\ncookie_secret = \"{COOKIE_SECRET}\"",
        idp.issuer()
    );
    // Every user of the test provider has the role "editors".
    let console =
        format!("[control_plane]\nlisten = \"127.0.0.1:{cp_port}\"\nadmin_roles = [\"editors\"]");
    let port = upstream.port();
    let latch = tokio::task::spawn_blocking(move || {
        let latch = LatchBuilder::new(port)
            .command("run")
            .rules(DOC_EDIT)
            .section(&oidc)
            .section(&console)
            .start();
        tests::wait_for_port(cp_port, std::time::Duration::from_secs(20), || latch.log());
        latch
    })
    .await
    .expect("starting latch run");
    let cp = |path: &str| Url::parse(&format!("http://127.0.0.1:{cp_port}{path}")).unwrap();
    let console_callback = cp("/callback");
    idp.web_client_for(&[&latch.url("/__latch/callback"), console_callback.as_str()])
        .await;
    idp.id_token_ttl(4).await;

    // A visitor without a session is sent to sign in, and from there to the provider.
    let browser = Browser::new();
    let page = browser.get(&cp("/"), HTML).await;
    assert_eq!(page.status, StatusCode::FOUND, "{}", page.body);
    assert_eq!(page.to().as_str(), cp("/login?return_to=%2F").as_str());
    let started = browser.get(page.to(), HTML).await;
    assert_eq!(started.status, StatusCode::FOUND, "{}", started.body);
    let flow = started.cookie("latch_oidc_flow").expect("a flow cookie");
    assert!(
        flow.contains("Path=/callback") && flow.contains("HttpOnly"),
        "{flow}"
    );
    let authorize = started.to().clone();
    assert!(authorize.as_str().starts_with(&idp.issuer()), "{authorize}");
    assert_eq!(
        query(&authorize, "redirect_uri").as_deref(),
        Some(console_callback.as_str())
    );

    // Back from the provider: a session, and the console as an admin.
    let callback = provider_sign_in(&browser, &authorize, "ada", console_callback.as_str()).await;
    let done = browser.get(&callback, HTML).await;
    assert_eq!(done.status, StatusCode::FOUND, "{}", done.body);
    assert_eq!(done.to().as_str(), cp("/").as_str());
    let session = session_value(&done);
    let page = browser.get(&cp("/"), HTML).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    assert!(page.body.contains("data-auth=\"ok\""), "{}", page.body);
    assert!(
        page.body.contains("data-user=\"User ada\""),
        "{}",
        page.body
    );
    assert!(
        page.body.contains("data-signout=\"/logout\""),
        "{}",
        page.body
    );
    let locks = browser.get(&cp("/api/v1/locks"), "application/json").await;
    assert_eq!(locks.status, StatusCode::OK, "{}", locks.body);

    // Past the ID token's end, the console renews the session with its refresh token and
    // serves the request, rather than sending the admin to sign in.
    tokio::time::sleep(Duration::from_millis(4_500)).await;
    let renewed = browser.get(&cp("/api/v1/locks"), "application/json").await;
    assert_eq!(renewed.status, StatusCode::OK, "{}", renewed.body);
    let fresh = renewed_value(&renewed).expect("a renewed session cookie");
    assert_ne!(fresh, session);
    assert!(idp.refreshes().await >= 1);

    // One sign-in serves both: the proxy on the same host takes the same session.
    let edit = Url::parse(&latch.url(PROTECTED)).unwrap();
    let opened = browser.get(&edit, HTML).await;
    assert_eq!(opened.status, StatusCode::OK, "{}", opened.body);
    let held = browser.get(&cp("/api/v1/locks"), "application/json").await;
    assert!(
        held.body.contains("\"ada\""),
        "the lock is ada's: {}",
        held.body
    );

    // A forged session cookie is not an admin: it is sent to sign in.
    let forged_cookie = format!("latch_oidc={}x", &session[..session.len() - 1]);
    let stranger = Browser::new();
    let forged = stranger
        .http
        .get(cp("/"))
        .header(ACCEPT, HTML)
        .header(COOKIE, &forged_cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), StatusCode::FOUND);
    let api = stranger
        .http
        .get(cp("/api/v1/locks"))
        .header(COOKIE, &forged_cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(api.status(), StatusCode::UNAUTHORIZED);

    // Another site cannot sign the admin out.
    let cross = browser
        .http
        .get(cp("/logout"))
        .header("Sec-Fetch-Site", "cross-site")
        .send()
        .await
        .unwrap();
    assert_eq!(cross.status(), StatusCode::FORBIDDEN);
    let still = browser.get(&cp("/api/v1/locks"), "application/json").await;
    assert_eq!(still.status, StatusCode::OK, "{}", still.body);

    // Signing out clears the session and goes to the provider's end-session endpoint.
    let out = browser.get(&cp("/logout"), HTML).await;
    assert_eq!(out.status, StatusCode::FOUND, "{}", out.body);
    assert!(out.to().as_str().starts_with(&idp.issuer()), "{}", out.to());
    assert_eq!(query(out.to(), "client_id").as_deref(), Some(WEB_CLIENT_ID));
    let cleared = out.cookie("latch_oidc").expect("the session is cleared");
    assert!(cleared.contains("Max-Age=0"), "{cleared}");
    let after = browser.get(&cp("/api/v1/locks"), "application/json").await;
    assert_eq!(after.status, StatusCode::UNAUTHORIZED, "{}", after.body);
    // The session ended everywhere: a copy of its cookie is refused by the console and by
    // the proxy alike.
    let copy = format!("latch_oidc={session}");
    let api = client()
        .get(cp("/api/v1/locks"))
        .header(COOKIE, &copy)
        .send()
        .await
        .unwrap();
    assert_eq!(api.status(), StatusCode::UNAUTHORIZED);
    let proxied = client()
        .get(latch.url(PROTECTED))
        .header(COOKIE, &copy)
        .header(ACCEPT, "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(proxied.status(), StatusCode::UNAUTHORIZED);
    let problem: Value = proxied.json().await.unwrap();
    assert_eq!(problem["code"], "signed_out", "{problem}");
}

/// The value of `latch_oidc` in a hop's `Set-Cookie`, if it sets one.
fn renewed_value(hop: &Hop) -> Option<String> {
    hop.cookie("latch_oidc").map(|_| session_value(hop))
}

/// The one renewed session cookie every answer of `all` carries, each answer a 200.
fn one_renewal(all: &[Hop]) -> String {
    let mut cookies = Vec::new();
    for answer in all {
        assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
        cookies.push(renewed_value(answer).expect("each answer carries the renewed cookie"));
    }
    cookies.sort();
    cookies.dedup();
    assert_eq!(cookies.len(), 1, "one renewal: {cookies:?}");
    cookies.remove(0)
}

/// A GET of `url` with `cookie` alone, as a copy of a cookie would be sent.
async fn get_with(url: &Url, cookie: &str, accept: &str) -> Hop {
    let resp = client()
        .get(url.clone())
        .header(COOKIE, cookie)
        .header(ACCEPT, accept)
        .send()
        .await
        .unwrap();
    hop(url, resp).await
}

#[tokio::test]
async fn a_session_renews_itself_with_its_refresh_token_before_and_after_its_id_token_ends() {
    let w = world().await;
    w.idp.id_token_ttl(4).await;
    let alice = Browser::new();
    let signed_in = sign_in(&w, &alice, PROTECTED, "alice").await;
    let first = session_value(&signed_in);
    let page = Url::parse(&w.latch.url(PROTECTED)).unwrap();

    // Early in the ID token's life nothing is renewed.
    let early = alice.get(&page, "application/json").await;
    assert_eq!(early.status, StatusCode::OK, "{}", early.body);
    assert_eq!(renewed_value(&early), None, "renewed too early");
    assert_eq!(w.idp.refreshes().await, 0);

    // In its last half (under two minutes of life), the next request renews it: the app
    // still sees alice, and the browser gets a new cookie with the same attributes.
    tokio::time::sleep(Duration::from_millis(3_200)).await;
    let due = alice.get(&page, "application/json").await;
    assert_eq!(due.status, StatusCode::OK, "{}", due.body);
    assert_eq!(due.json()["headers"]["x-latch-user"], "alice");
    let second = renewed_value(&due).expect("a renewed session cookie");
    assert_ne!(second, first);
    let set = due.cookie("latch_oidc").unwrap();
    for attribute in ["Path=/", "HttpOnly", "SameSite=Lax", "Max-Age="] {
        assert!(set.contains(attribute), "{set}");
    }
    assert_eq!(w.idp.refreshes().await, 1);

    // Past the renewed ID token's end, a request renews it again rather than sending the
    // browser to sign in: the lock is still alice's.
    tokio::time::sleep(Duration::from_millis(4_500)).await;
    let late = alice.get(&page, "application/json").await;
    assert_eq!(late.status, StatusCode::OK, "{}", late.body);
    let third = renewed_value(&late).expect("a session cookie renewed after its end");
    assert_ne!(third, second);
    assert_eq!(w.idp.refreshes().await, 2);
    assert_eq!(
        w.latch
            .counter("latch_session_renewals_total{result=\"ok\"}")
            .await,
        2
    );

    // A copy of a cookie already renewed, presented soon after, is given the renewed cookie
    // again rather than a second refresh with a refresh token the provider rotated away.
    let copy = get_with(&page, &format!("latch_oidc={second}"), "application/json").await;
    assert_eq!(copy.status, StatusCode::OK, "{}", copy.body);
    assert_eq!(renewed_value(&copy), Some(third.clone()));
    assert_eq!(
        w.idp.refreshes().await,
        2,
        "no second use of a rotated token"
    );

    // The renewed session is the same session: a logout with it ends the first cookie too.
    let logout = Url::parse(&w.latch.url("/__latch/logout")).unwrap();
    let out = alice.get(&logout, HTML).await;
    assert_eq!(out.status, StatusCode::FOUND);
    let old = get_with(&page, &format!("latch_oidc={first}"), "application/json").await;
    assert_eq!(old.status, StatusCode::UNAUTHORIZED, "{}", old.body);
    assert_eq!(old.json()["code"], "signed_out", "{}", old.body);
}

#[tokio::test]
async fn parallel_requests_due_for_renewal_share_one_refresh() {
    let w = world().await;
    w.idp.id_token_ttl(4).await;
    let alice = Browser::new();
    sign_in(&w, &alice, PROTECTED, "alice").await;
    let cookie = session_cookie(&alice, &w.latch);
    tokio::time::sleep(Duration::from_millis(3_200)).await;

    // The provider rotates refresh tokens and revokes the grant when one is used twice, so
    // eight renewals of one cookie would end the session; one renewal, shared, does not.
    let page = Url::parse(&w.latch.url(PROTECTED)).unwrap();
    let all =
        futures::future::join_all((0..8).map(|_| get_with(&page, &cookie, "application/json")))
            .await;
    let renewed_cookie = one_renewal(&all);
    assert_eq!(w.idp.refreshes().await, 1);
    assert_eq!(
        w.latch
            .counter("latch_session_renewals_total{result=\"ok\"}")
            .await,
        1
    );
    let renewed = format!("latch_oidc={renewed_cookie}");
    let after = get_with(&page, &renewed, "application/json").await;
    assert_eq!(after.status, StatusCode::OK, "{}", after.body);
}

#[tokio::test]
async fn extra_authorization_parameters_go_to_the_provider_and_the_sign_in_still_works() {
    let idp = Idp::start();
    let upstream = Upstream::start().await;
    // What Google wants for a refresh token; oidc-provider, like most, ignores what it does
    // not know.
    let oidc = format!(
        "{}\nauth_params = [\"access_type=offline\", \"ui_locales=de\"]",
        oidc_section(&idp)
    );
    let latch = LatchBuilder::new(upstream.port())
        .rules(DOC_EDIT)
        .section(&oidc)
        .start();
    idp.web_client(&latch.url("/__latch/callback")).await;

    let login = client()
        .get(latch.url("/__latch/login?return_to=%2F"))
        .send()
        .await
        .unwrap();
    assert_eq!(login.status(), StatusCode::FOUND);
    let to = Url::parse(login.headers()[LOCATION].to_str().unwrap()).unwrap();
    assert!(to.as_str().starts_with(&idp.issuer()), "{to}");
    let query: Vec<(String, String)> = to.query_pairs().into_owned().collect();
    let value = |name: &str| {
        let all: Vec<&str> = query
            .iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .collect();
        assert_eq!(all.len(), 1, "{name} once in {to}");
        all[0].to_owned()
    };
    assert_eq!(value("access_type"), "offline");
    assert_eq!(value("ui_locales"), "de");
    assert_eq!(value("response_type"), "code");
    assert_eq!(value("client_id"), WEB_CLIENT_ID);

    let alice = Browser::new();
    sign_in_on(&idp, &latch, &alice, PROTECTED, "alice").await;
    let page = alice
        .get(
            &Url::parse(&latch.url(PROTECTED)).unwrap(),
            "application/json",
        )
        .await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_renewing_one_cookie_at_once_ask_the_provider_once() {
    let idp = Idp::start();
    let upstream = Upstream::start().await;
    let redis = RedisServer::start();
    let instances = two_instances(&idp, &redis, upstream.port(), DOC_EDIT).await;
    let (a, b) = (&instances[0], &instances[1]);
    idp.id_token_ttl(4).await;
    let alice = Browser::new();
    sign_in_on(&idp, a, &alice, PROTECTED, "alice").await;
    let cookie = session_cookie(&alice, a);
    tokio::time::sleep(Duration::from_millis(3_200)).await;

    // The provider rotates refresh tokens and revokes the whole grant when one is used twice:
    // a renewal on each instance would end the session. Both instances hand out one renewal.
    let pages = [a, b].map(|latch| Url::parse(&latch.url(PROTECTED)).unwrap());
    let all = futures::future::join_all(
        (0..8).map(|i| get_with(&pages[i % 2], &cookie, "application/json")),
    )
    .await;
    let renewed_cookie = one_renewal(&all);
    assert_eq!(idp.refreshes().await, 1);
    let mut asked = 0;
    for latch in [a, b] {
        asked += latch
            .counter("latch_session_renewals_total{result=\"ok\"}")
            .await;
    }
    assert_eq!(asked, 1, "one instance asked the provider");

    // The grant lives on: the renewed cookie works on both, and renews again when due.
    let renewed = format!("latch_oidc={renewed_cookie}");
    for page in &pages {
        let after = get_with(page, &renewed, "application/json").await;
        assert_eq!(after.status, StatusCode::OK, "{}", after.body);
    }
    tokio::time::sleep(Duration::from_millis(3_200)).await;
    let again = get_with(&pages[1], &renewed, "application/json").await;
    assert_eq!(again.status, StatusCode::OK, "{}", again.body);
    assert!(renewed_value(&again).is_some_and(|c| c != renewed_cookie));
    assert_eq!(idp.refreshes().await, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_renewal_ends_the_session_and_closes_its_sockets() {
    let Live {
        idp,
        app: _app,
        latch,
        alice: _alice,
        cookie,
        mut banner,
        mut socket,
    } = live_alice(Some(4)).await;

    // The provider no longer lets the client refresh (as when an admin revokes its grant).
    idp.allow_refresh(false).await;
    tokio::time::sleep(Duration::from_millis(3_200)).await;
    let page = Url::parse(&latch.url("/docs/1/save")).unwrap();
    let refused = get_with(&page, &cookie, "application/json").await;
    assert_eq!(refused.status, StatusCode::UNAUTHORIZED, "{}", refused.body);
    assert_eq!(
        refused.json()["code"],
        "renewal_refused",
        "{}",
        refused.body
    );
    assert_eq!(renewed_value(&refused), None);

    // The session ended as at a logout: its sockets close, and its cookie is refused.
    session_expired(&mut banner).await;
    assert_eq!(close_of(&mut banner).await.0, 4401);
    assert_eq!(close_of(&mut socket).await, (4401, "signed out".to_owned()));
    copied_cookie_is_refused(&latch, &cookie).await;
    assert_eq!(
        latch
            .counter("latch_session_renewals_total{result=\"refused\"}")
            .await,
        1
    );
}

#[tokio::test]
async fn with_the_provider_down_a_session_holds_until_its_id_token_ends() {
    let w = world().await;
    w.idp.id_token_ttl(8).await;
    let alice = Browser::new();
    sign_in(&w, &alice, PROTECTED, "alice").await;
    let cookie = session_cookie(&alice, &w.latch);
    let page = Url::parse(&w.latch.url(PROTECTED)).unwrap();
    w.idp.down().await;

    // Due for renewal, the provider out of reach: the request is served as before.
    tokio::time::sleep(Duration::from_millis(4_500)).await;
    let held = get_with(&page, &cookie, "application/json").await;
    assert_eq!(held.status, StatusCode::OK, "{}", held.body);
    assert_eq!(renewed_value(&held), None);
    assert_eq!(
        w.latch
            .counter("latch_session_renewals_total{result=\"unavailable\"}")
            .await,
        1
    );

    // Past the ID token's end the session no longer holds: API clients get 401, browsers
    // the sign-in.
    tokio::time::sleep(Duration::from_millis(4_000)).await;
    let expired = get_with(&page, &cookie, "application/json").await;
    assert_eq!(expired.status, StatusCode::UNAUTHORIZED, "{}", expired.body);
    assert_eq!(expired.json()["code"], "expired", "{}", expired.body);
    let browser = get_with(&page, &cookie, HTML).await;
    assert_eq!(browser.status, StatusCode::FOUND);
    assert_eq!(browser.to().path(), "/__latch/login");

    // The provider back, the session renews (its refresh token was never used).
    w.idp.up().await;
    let back = eventually(Duration::from_secs(15), || async {
        let answer = get_with(&page, &cookie, "application/json").await;
        (answer.status == StatusCode::OK).then_some(answer)
    })
    .await
    .expect("the session renews once the provider is back");
    assert!(
        renewed_value(&back).is_some(),
        "renewed once the provider is back"
    );
}

#[tokio::test]
async fn a_renewed_id_token_for_another_user_or_another_sign_in_ends_the_session() {
    let w = world().await;
    w.idp.id_token_ttl(4).await;
    let page = Url::parse(&w.latch.url(PROTECTED)).unwrap();
    for (claims, user) in [
        (json!({ "sub": "mallory" }), "alice"),
        (json!({ "nonce": "a-nonce-of-another-sign-in" }), "bob"),
    ] {
        w.idp.id_token_claims(&json!({})).await;
        let browser = Browser::new();
        sign_in(&w, &browser, PROTECTED, user).await;
        let cookie = session_cookie(&browser, &w.latch);
        // The provider's next ID tokens are not for this session.
        w.idp.id_token_claims(&claims).await;
        tokio::time::sleep(Duration::from_millis(3_200)).await;
        let refused = get_with(&page, &cookie, "application/json").await;
        assert_eq!(
            refused.status,
            StatusCode::UNAUTHORIZED,
            "{claims}: {}",
            refused.body
        );
        assert_eq!(
            refused.json()["code"],
            "renewal_refused",
            "{}",
            refused.body
        );
        assert_eq!(renewed_value(&refused), None, "{claims}: no session");
        // Ended: the same cookie stays refused, whatever the provider says next.
        w.idp.id_token_claims(&json!({})).await;
        let again = get_with(&page, &cookie, "application/json").await;
        assert_eq!(again.status, StatusCode::UNAUTHORIZED, "{}", again.body);
        assert_eq!(again.json()["code"], "signed_out", "{}", again.body);
    }
    assert_eq!(
        w.latch
            .counter("latch_session_renewals_total{result=\"refused\"}")
            .await,
        2
    );
}
