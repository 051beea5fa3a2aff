//! Sign-in with an OpenID Provider (`[oidc]`), end to end against the real oidc-provider in
//! `tests/apps/idp`: a browser with a cookie jar, every redirect followed by hand so each hop
//! is asserted, and the hostile variants of each step (forged and replayed state, a swapped
//! nonce or audience, a foreign return address, a tampered session), each answered with a
//! clear error that sets no session.

use std::sync::Arc;

use reqwest::cookie::{CookieStore, Jar};
use reqwest::header::{ACCEPT, COOKIE, LOCATION, SET_COOKIE};
use reqwest::Method;
use reqwest::StatusCode;
use serde_json::{json, Value};
use tests::fixtures::DOC_EDIT;
use tests::idp::{Idp, WEB_CLIENT_ID, WEB_CLIENT_SECRET};
use tests::{client, token, Latch, LatchBuilder, Upstream};
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

async fn world() -> World {
    let idp = Idp::start();
    let upstream = Upstream::start().await;
    let latch = LatchBuilder::new(upstream.port())
        .rules(DOC_EDIT)
        .section(&format!(
            "[oidc]\nissuer = \"{}\"\nclient_id = \"{WEB_CLIENT_ID}\"\n\
             client_secret = \"{WEB_CLIENT_SECRET}\"\ncookie_secret = \"{COOKIE_SECRET}\"",
            idp.issuer()
        ))
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
    let mut login = Url::parse(&w.latch.url("/__latch/login")).unwrap();
    login.query_pairs_mut().append_pair("return_to", return_to);
    let started = browser.get(&login, HTML).await;
    assert_eq!(started.status, StatusCode::FOUND, "{}", started.body);
    let authorize = started.to().clone();
    assert!(
        authorize.as_str().starts_with(&w.idp.issuer()),
        "{authorize}"
    );
    (
        finish_at_provider(w, browser, &authorize, user).await,
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
    let (callback, _) = to_callback(w, browser, return_to, user).await;
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
    let cleared = out
        .cookie("latch_oidc")
        .expect("the session cookie is cleared");
    assert!(cleared.starts_with("latch_oidc=;"), "{cleared}");
    assert!(cleared.contains("Max-Age=0"), "{cleared}");
    // The provider's own sign-out page answers that URL.
    let at_provider = alice.get(end, HTML).await;
    assert_eq!(at_provider.status, StatusCode::OK, "{}", at_provider.body);

    let after = alice.get(&page, "application/json").await;
    assert_eq!(after.status, StatusCode::UNAUTHORIZED, "{}", after.body);
    assert_eq!(after.json()["code"], "missing");
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
        // Logout: the session cookie is gone and the browser is at the provider's sign-out.
        browser.goto(&w.latch.url("/__latch/logout")).await;
        let at_end = browser.url().await;
        assert!(
            at_end.starts_with(&format!("{}/session/end", w.idp.issuer())),
            "{at_end}"
        );
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
}
