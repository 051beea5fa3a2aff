//! Identity from an authentication proxy in front of Latch (`[trusted_proxy]`): its headers
//! and its signed assertion count from a trusted peer only; from any other peer they are
//! removed, in every spelling, before the request goes on, and never used for identity.
//!
//! The tests' connections come from 127.0.0.1: trusting `127.0.0.0/8` makes them the auth
//! proxy, trusting only `10.0.0.0/8` makes them anyone else.

use std::time::{SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use reqwest::StatusCode;
use serde_json::{json, Value};
use tests::fixtures::DOC_EDIT;
use tests::idp::{Idp, AUDIENCE};
use tests::{client, eventually, token, Latch, LatchBuilder, Upstream};

const PROTECTED: &str = "/echo/docs/1/edit";
const ASSERTION: &str = "X-Pomerium-Jwt-Assertion";

/// An RSA key the provider never published (the `auth` crate's test fixture).
const FOREIGN_RSA: &str = include_str!("../../auth/tests/keys/rsa_other_private.pem");

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn behind(upstream: &Upstream, peers: &str) -> Latch {
    LatchBuilder::new(upstream.port())
        .rules(DOC_EDIT)
        .section(&format!("[trusted_proxy]\npeers = {peers}"))
        .start()
}

async fn get(latch: &Latch, path: &str, headers: &[(&str, &str)]) -> (StatusCode, Value) {
    let mut req = client().get(latch.url(path));
    for (name, value) in headers {
        req = req.header(*name, *value);
    }
    let resp = req.send().await.unwrap();
    (resp.status(), resp.json().await.unwrap_or(Value::Null))
}

/// The request headers the upstream saw whose names read as an identity header.
fn identity_headers_seen(echo: &Value) -> Vec<String> {
    echo["headers"]
        .as_object()
        .unwrap()
        .keys()
        .filter(|name| {
            let folded = name.to_ascii_lowercase().replace('_', "-");
            folded.starts_with("x-forwarded-user")
                || folded.starts_with("x-forwarded-email")
                || folded.starts_with("x-forwarded-preferred-username")
                || folded.starts_with("x-forwarded-groups")
                || folded.starts_with("x-pomerium-jwt-assertion")
        })
        .cloned()
        .collect()
}

#[tokio::test]
async fn headers_from_a_trusted_peer_name_the_user() {
    let upstream = Upstream::start().await;
    let latch = behind(&upstream, "[\"127.0.0.0/8\"]");
    let (status, echo) = get(
        &latch,
        PROTECTED,
        &[
            ("X-Forwarded-User", "alice"),
            ("X-Forwarded-Email", "alice@example.com"),
            ("X-Forwarded-Preferred-Username", "Alice A."),
            ("X-Forwarded-Groups", "staff,editors"),
        ],
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{echo}");
    assert_eq!(echo["headers"]["x-latch-user"], "alice");
    assert_eq!(echo["headers"]["x-latch-user-name"], "Alice A.");
    // The auth proxy's own headers still reach the app from a trusted peer.
    assert_eq!(echo["headers"]["x-forwarded-user"], "alice");

    // A `_` spelling passed along by the auth proxy is not its own: removed, not believed.
    let (status, echo) = get(
        &latch,
        PROTECTED,
        &[
            ("X-Forwarded-User", "alice"),
            ("X_Forwarded_User", "mallory"),
        ],
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{echo}");
    assert_eq!(echo["headers"]["x-latch-user"], "alice");
    assert_eq!(identity_headers_seen(&echo), ["x-forwarded-user"], "{echo}");

    // The same header twice: which one the auth proxy set cannot be told.
    let (status, body) = get(
        &latch,
        PROTECTED,
        &[
            ("X-Forwarded-User", "mallory"),
            ("X-Forwarded-User", "alice"),
        ],
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    assert_eq!(body["code"], "bad_forwarded_identity", "{body}");

    // Only the email: it names the user.
    let (status, echo) = get(
        &latch,
        "/echo/docs/2/edit",
        &[("X-Forwarded-Email", "bob@example.com")],
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{echo}");
    assert_eq!(echo["headers"]["x-latch-user"], "bob@example.com");

    // Nothing from the auth proxy: the request's own token still works.
    let (status, echo) = get(
        &latch,
        "/echo/docs/3/edit",
        &[(
            "Authorization",
            &format!("Bearer {}", token("carol", "Carol", &[])),
        )],
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{echo}");
    assert_eq!(echo["headers"]["x-latch-user"], "carol");

    // A value no app should be handed is refused, not guessed at.
    let resp = client()
        .get(latch.url(PROTECTED))
        .header(
            "X-Forwarded-User",
            reqwest::header::HeaderValue::from_bytes(b"al\xffice").unwrap(),
        )
        .send()
        .await
        .unwrap();
    let (status, body) = (resp.status(), resp.json::<Value>().await.unwrap());
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    assert_eq!(body["code"], "bad_forwarded_identity", "{body}");
}

#[tokio::test]
async fn groups_from_a_trusted_peer_are_roles() {
    let upstream = Upstream::start().await;
    let latch = behind(&upstream, "[\"127.0.0.1\"]");
    let (status, _) = get(&latch, PROTECTED, &[("X-Forwarded-User", "alice")]).await;
    assert_eq!(status, StatusCode::OK);
    let takeover = |user: &'static str, groups: &'static str| {
        client()
            .post(latch.url("/__latch/takeover"))
            .header("X-Forwarded-User", user)
            .header("X-Forwarded-Groups", groups)
            .header("content-type", "text/plain;charset=UTF-8")
            .body(json!({ "resource": "doc:1" }).to_string())
            .send()
    };
    let refused = takeover("carol", "staff, editors").await.unwrap();
    assert_eq!(refused.status(), StatusCode::FORBIDDEN);
    let taken = takeover("root", "staff, admin").await.unwrap();
    assert_eq!(taken.status(), StatusCode::OK);
    let lock: Value = taken.json().await.unwrap();
    assert_eq!(lock["holder"]["id"], "root", "{lock}");
}

#[tokio::test]
async fn identity_headers_from_an_untrusted_peer_are_stripped_and_ignored() {
    let upstream = Upstream::start().await;
    let latch = LatchBuilder::new(upstream.port())
        .rules(DOC_EDIT)
        .section("[trusted_proxy]\npeers = [\"10.0.0.0/8\"]")
        .start();
    let spoofed = [
        ("X-Forwarded-User", "mallory"),
        ("x_forwarded_user", "mallory"),
        ("X-Forwarded_User", "mallory"),
        ("X_FORWARDED_EMAIL", "mallory@example.com"),
        ("X-Forwarded-Preferred-Username", "Mallory"),
        ("X-Forwarded-Groups", "admin"),
    ];
    // Without a token of its own the request names nobody.
    let (status, body) = get(&latch, PROTECTED, &spoofed).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    assert_eq!(body["code"], "missing", "{body}");

    // With one, it is the token's user, and the app sees none of the spoofed headers.
    let bearer = format!("Bearer {}", token("alice", "Alice", &[]));
    let mut with_token = spoofed.to_vec();
    with_token.push(("Authorization", &bearer));
    let (status, echo) = get(&latch, PROTECTED, &with_token).await;
    assert_eq!(status, StatusCode::OK, "{echo}");
    assert_eq!(echo["headers"]["x-latch-user"], "alice");
    assert_eq!(identity_headers_seen(&echo), Vec::<String>::new(), "{echo}");

    // Requests no rule matches are cleaned the same way.
    let (status, echo) = get(&latch, "/echo/public", &spoofed).await;
    assert_eq!(status, StatusCode::OK, "{echo}");
    assert_eq!(identity_headers_seen(&echo), Vec::<String>::new(), "{echo}");
    // Headers that only look alike are left alone.
    let (_, echo) = get(&latch, "/echo/public", &[("X-Forwarded-For", "10.1.1.1")]).await;
    assert_eq!(echo["headers"]["x-forwarded-for"], "10.1.1.1", "{echo}");
}

/// A proxy verifying assertions from a trusted auth proxy with the provider's keys.
fn assertion_proxy(upstream: &Upstream, idp: &Idp, peers: &str) -> Latch {
    LatchBuilder::new(upstream.port())
        .rules(DOC_EDIT)
        .auth_key(&format!("jwks_url = \"{}\"", idp.jwks_url()))
        .auth(&format!(
            "algorithms = [\"RS256\"]\nissuer = \"{}\"\naudience = [\"{AUDIENCE}\"]",
            idp.issuer()
        ))
        .section(&format!(
            "[trusted_proxy]\npeers = {peers}\nassertion_header = \"{ASSERTION}\""
        ))
        .start()
}

async fn until_ready(latch: &Latch) {
    let ready = eventually(std::time::Duration::from_secs(10), || async {
        let status = client()
            .get(latch.admin_url("/readyz"))
            .send()
            .await
            .ok()?
            .status();
        (status == StatusCode::OK).then_some(())
    })
    .await;
    assert!(ready.is_some(), "never ready:\n{}", latch.log());
}

#[tokio::test]
async fn an_assertion_grants_only_when_it_verifies() {
    let upstream = Upstream::start().await;
    let idp = Idp::start();
    let latch = assertion_proxy(&upstream, &idp, "[\"127.0.0.0/8\"]");
    until_ready(&latch).await;
    let claims = |changes: Value| {
        let mut claims = json!({
            "sub": "bob", "name": "Bob", "iss": idp.issuer(), "aud": AUDIENCE,
            "exp": now() + 600,
        });
        for (k, v) in changes.as_object().unwrap() {
            claims[k] = v.clone();
        }
        claims
    };

    let good = idp.sign(&claims(json!({}))).await;
    let (status, echo) = get(&latch, PROTECTED, &[(ASSERTION, &good)]).await;
    assert_eq!(status, StatusCode::OK, "{echo}");
    assert_eq!(echo["headers"]["x-latch-user"], "bob");
    assert_eq!(echo["headers"]["x-latch-user-name"], "Bob");

    let kid = {
        let header = URL_SAFE_NO_PAD
            .decode(good.split('.').next().unwrap())
            .unwrap();
        serde_json::from_slice::<Value>(&header).unwrap()["kid"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let foreign = jsonwebtoken::encode(
        &Header {
            kid: Some(kid.clone()),
            ..Header::new(Algorithm::RS256)
        },
        &claims(json!({})),
        &EncodingKey::from_rsa_pem(FOREIGN_RSA.as_bytes()).unwrap(),
    )
    .unwrap();
    let payload = good.split('.').nth(1).unwrap();
    let b64 = |v: Value| URL_SAFE_NO_PAD.encode(v.to_string());
    let unsigned = format!("{}.{payload}.", b64(json!({"alg": "none", "kid": kid})));
    let forged = [
        ("wrong key", foreign, "bad_signature"),
        (
            "wrong audience",
            idp.sign(&claims(json!({"aud": "urn:someone-else"}))).await,
            "wrong_audience",
        ),
        (
            "wrong issuer",
            idp.sign(&claims(json!({"iss": "https://evil.example"})))
                .await,
            "wrong_issuer",
        ),
        (
            "expired",
            idp.sign(&claims(json!({"exp": now() - 3600}))).await,
            "expired",
        ),
        ("alg none", unsigned, "algorithm_not_allowed"),
        ("garbage", "not-a-jwt".to_owned(), "malformed"),
    ];
    // A bad assertion is refused even when the request also carries a good token: there is
    // no falling back from what the auth proxy asserted.
    let bearer = format!("Bearer {}", idp.token().await);
    for (label, assertion, code) in &forged {
        for extra in [None, Some(("Authorization", bearer.as_str()))] {
            let mut headers = vec![(ASSERTION, assertion.as_str()), ("X-Forwarded-User", "bob")];
            headers.extend(extra);
            let (status, body) = get(&latch, PROTECTED, &headers).await;
            assert_eq!(status, StatusCode::UNAUTHORIZED, "{label}: {body}");
            assert_eq!(body["code"], *code, "{label}: {body}");
        }
    }
}

#[tokio::test]
async fn an_assertion_from_an_untrusted_peer_is_ignored() {
    let upstream = Upstream::start().await;
    let idp = Idp::start();
    let latch = assertion_proxy(&upstream, &idp, "[\"10.0.0.0/8\"]");
    until_ready(&latch).await;
    let good = idp
        .sign(&json!({
            "sub": "bob", "iss": idp.issuer(), "aud": AUDIENCE, "exp": now() + 600
        }))
        .await;
    let (status, body) = get(&latch, PROTECTED, &[(ASSERTION, &good)]).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    assert_eq!(body["code"], "missing", "{body}");
    let spellings = [
        (ASSERTION, good.as_str()),
        ("x_pomerium_jwt_assertion", good.as_str()),
    ];
    let (status, echo) = get(&latch, "/echo/public", &spellings).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(identity_headers_seen(&echo), Vec::<String>::new(), "{echo}");
}

/// Opens the banner socket with `X-Forwarded-User: alice` and nothing else.
async fn banner_socket_as_alice(latch: &Latch) -> Result<(), String> {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let mut req = latch
        .ws_url("/__latch/ws")
        .into_client_request()
        .expect("a WebSocket request");
    let origin = format!("http://127.0.0.1:{}", latch.port);
    req.headers_mut()
        .insert("origin", origin.parse().expect("origin"));
    req.headers_mut()
        .insert("x-forwarded-user", "alice".parse().expect("user"));
    tokio_tungstenite::connect_async(req)
        .await
        .map(|_| ())
        .map_err(|e| e.to_string())
}

#[tokio::test]
async fn the_banner_socket_believes_a_trusted_peer_only() {
    let upstream = Upstream::start().await;
    let trusted = behind(&upstream, "[\"127.0.0.0/8\"]");
    banner_socket_as_alice(&trusted)
        .await
        .expect("a trusted peer's user opens the banner socket");
    let untrusted = behind(&upstream, "[\"10.0.0.0/8\"]");
    let refused = banner_socket_as_alice(&untrusted)
        .await
        .expect_err("an untrusted peer's header names nobody");
    assert!(refused.contains("401"), "{refused}");
}
