//! The app trusts who Latch says the user is: a real Django project whose users come from
//! `X-Latch-User` through Django's own `RemoteUserMiddleware` (`tests/apps/django_remote_user.py`),
//! behind the real proxy with `auth.require = "all"`. One sign-in serves both, and the app's user
//! and the lock's holder can never differ, whatever headers or cookies a client sends.

use reqwest::header::{AUTHORIZATION, COOKIE, SET_COOKIE};
use reqwest::{Response, StatusCode};
use serde_json::{json, Value};
use tests::django::RemoteUserApp;
use tests::{client, token, Latch, LatchBuilder};

const RULES: &str = r#"
[[rule]]
id = "docs"
pattern = '/docs/(?P<id>\d+)/(edit|save)'
resource = "doc:{id}"
inject = false
"#;

async fn start() -> (RemoteUserApp, Latch) {
    tokio::task::spawn_blocking(|| {
        let app = RemoteUserApp::start();
        let latch = LatchBuilder::new(app.port)
            .rules(RULES)
            .auth("require = \"all\"")
            .start();
        (app, latch)
    })
    .await
    .expect("starting the app and latch")
}

fn bearer(user: &str) -> String {
    format!("Bearer {}", token(user, user, &[]))
}

/// `GET /whoami` as the app saw it, with `headers`.
async fn whoami(latch: &Latch, headers: &[(&str, &str)]) -> (StatusCode, Value) {
    let response = send(client().get(latch.url("/whoami")), headers).await;
    let status = response.status();
    let body = response.json().await.unwrap_or(Value::Null);
    (status, body)
}

async fn send(mut request: reqwest::RequestBuilder, headers: &[(&str, &str)]) -> Response {
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    request.send().await.expect("latch answers")
}

/// The `sessionid` cookie an answer set, as `name=value`.
fn session_cookie(response: &Response) -> String {
    response
        .headers()
        .get_all(SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(|v| v.split(';').next().filter(|c| c.starts_with("sessionid=")))
        .unwrap_or_else(|| panic!("no session cookie in {:?}", response.headers()))
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_app_takes_its_user_from_latch_and_a_client_cannot_name_another() {
    let (app, latch) = start().await;
    let alice = bearer("alice");
    let bob = bearer("bob");

    let (status, seen) = whoami(&latch, &[("authorization", alice.as_str())]).await;
    assert_eq!(status, StatusCode::OK, "{}", app.log());
    assert_eq!(seen["user"], "alice");
    assert_eq!(seen["authenticated"], true);

    // Bob naming Alice in every spelling a server could read as X-Latch-User.
    for spelling in [
        "X-Latch-User",
        "x-latch-user",
        "X-LATCH-USER",
        "X_Latch_User",
        "X-Latch_User",
    ] {
        let (status, seen) = whoami(
            &latch,
            &[("authorization", bob.as_str()), (spelling, "alice")],
        )
        .await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(seen["user"], "bob", "{spelling}");
    }

    // Without a valid token nobody reaches the app, whatever the request names.
    let forged = auth::mint_hs256(
        b"a-secret-latch-does-not-know-of-at-least-32-bytes",
        &auth::MintRequest {
            sub: "alice".into(),
            name: Some("Alice".into()),
            roles: Vec::new(),
            ttl_seconds: 3600,
            issuer: None,
            audience: None,
        },
    )
    .expect("a token");
    let forged = format!("Bearer {forged}");
    for headers in [
        vec![],
        vec![("X-Latch-User", "alice")],
        vec![
            ("authorization", forged.as_str()),
            ("X-Latch-User", "alice"),
        ],
        vec![
            ("authorization", "Bearer not.a.token"),
            ("X-Latch-User", "alice"),
        ],
    ] {
        let (status, seen) = whoami(&latch, &headers).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{headers:?}: {seen}");
        assert_ne!(seen["user"], "alice", "{headers:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_the_app_made_for_one_user_never_serves_another() {
    let (_app, latch) = start().await;
    let alice = token("alice", "Alice", &[]);
    let bob = token("bob", "Bob", &[]);

    // Alice's first request: Django logs her in and gives her browser a session.
    let first = send(
        client().get(latch.url("/whoami")),
        &[("cookie", format!("latch_token={alice}").as_str())],
    )
    .await;
    assert_eq!(first.status(), StatusCode::OK);
    let session = session_cookie(&first);
    let seen: Value = first.json().await.expect("JSON");
    assert_eq!(seen["session_user"], "alice");

    // Bob's token with Alice's Django session: the app switches the session to Bob.
    let cookies = format!("{session}; latch_token={bob}");
    let (status, seen) = whoami(&latch, &[("cookie", cookies.as_str())]).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        (&seen["user"], &seen["session_user"]),
        (&json!("bob"), &json!("bob"))
    );

    // Alice's session with no Latch token at all never reaches the app.
    let (status, seen) = whoami(&latch, &[("cookie", session.as_str())]).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{seen}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_lock_holder_and_the_apps_user_are_one() {
    let (app, latch) = start().await;
    let alice = bearer("alice");
    let bob = bearer("bob");

    let page = send(
        client().get(latch.url("/docs/1/edit")),
        &[(AUTHORIZATION.as_str(), alice.as_str())],
    )
    .await;
    assert_eq!(page.status(), StatusCode::OK);
    assert!(page.text().await.expect("a page").contains("alice edits 1"));

    // Bob cannot save Alice's document, not even by naming her.
    for headers in [
        vec![(AUTHORIZATION.as_str(), bob.as_str())],
        vec![
            (AUTHORIZATION.as_str(), bob.as_str()),
            ("X-Latch-User", "alice"),
        ],
        vec![
            (AUTHORIZATION.as_str(), bob.as_str()),
            (COOKIE.as_str(), "sessionid=forged"),
        ],
    ] {
        let saved = send(client().post(latch.url("/docs/1/save")), &headers).await;
        assert_eq!(saved.status(), StatusCode::LOCKED, "{headers:?}");
    }
    assert!(app.saves().await.is_empty());

    // Alice's save is hers in the app's eyes too.
    let saved = send(
        client().post(latch.url("/docs/1/save")),
        &[(AUTHORIZATION.as_str(), alice.as_str())],
    )
    .await;
    assert_eq!(saved.status(), StatusCode::OK);
    assert_eq!(app.saves().await, vec![json!({ "id": 1, "user": "alice" })]);
}
