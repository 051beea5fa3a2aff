//! Keys fetched from a real identity provider (panva's `oidc-provider`, `tests/apps/idp`):
//! its tokens verify as bearer and cookie, its key rotation needs no restart, its outage
//! leaves the last good keys in use (and says so), an unknown `kid` refetches at most once per
//! interval, and the key set's caching headers schedule the next fetch.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use reqwest::StatusCode;
use serde_json::{json, Value};
use tests::fixtures::DOC_EDIT;
use tests::idp::{Idp, AUDIENCE, CLIENT_ID};
use tests::{client, eventually, Latch, LatchBuilder, Upstream};

const PROTECTED: &str = "/echo/docs/1/edit";

/// An RSA key the provider never published (the `auth` crate's test fixture).
const FOREIGN_RSA: &str = include_str!("../../auth/tests/keys/rsa_other_private.pem");

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// A proxy verifying the provider's tokens with keys from `key_line` (`jwks_url = ...` or
/// `discover = true`), plus `extra` `[auth]` lines.
fn proxy(upstream: &Upstream, idp: &Idp, key_line: &str, extra: &str) -> Latch {
    LatchBuilder::new(upstream.port())
        .rules(DOC_EDIT)
        .auth_key(key_line)
        .auth(&format!(
            "algorithms = [\"RS256\"]\nissuer = \"{}\"\naudience = [\"{AUDIENCE}\"]\n{extra}",
            idp.issuer()
        ))
        .start()
}

fn jwks_url(idp: &Idp) -> String {
    format!("jwks_url = \"{}\"", idp.jwks_url())
}

/// `(status, body)` of a protected request with `token` as a bearer token.
async fn bearer(latch: &Latch, token: &str) -> (StatusCode, Value) {
    let resp = client()
        .get(latch.url(PROTECTED))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    (resp.status(), resp.json().await.unwrap_or(Value::Null))
}

async fn assert_accepted(latch: &Latch, token: &str, label: &str) {
    let (status, body) = bearer(latch, token).await;
    assert_eq!(status, StatusCode::OK, "{label}: {body}\n{}", latch.log());
    assert_eq!(body["headers"]["x-latch-user"], CLIENT_ID, "{label}");
}

async fn assert_refused(latch: &Latch, token: &str, code: &str, label: &str) {
    let (status, body) = bearer(latch, token).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{label}: {body}");
    assert_eq!(body["code"], code, "{label}: {body}");
}

async fn readyz(latch: &Latch) -> (StatusCode, Value) {
    let resp = client()
        .get(latch.admin_url("/readyz"))
        .send()
        .await
        .unwrap();
    (resp.status(), resp.json().await.unwrap())
}

/// Waits until the proxy has fetched the keys once.
async fn until_ready(latch: &Latch) {
    let ready = eventually(Duration::from_secs(10), || async {
        (readyz(latch).await.0 == StatusCode::OK).then_some(())
    })
    .await;
    assert!(ready.is_some(), "never ready: {:?}", readyz(latch).await);
}

/// A well-formed token for the provider's issuer and audience, signed with a key it never
/// published, under `kid`.
fn foreign_token(kid: &str) -> String {
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some(kid.to_owned());
    let claims = json!({
        "sub": "mallory", "iss": "unused", "aud": AUDIENCE, "exp": now() + 600
    });
    jsonwebtoken::encode(
        &header,
        &claims,
        &EncodingKey::from_rsa_pem(FOREIGN_RSA.as_bytes()).unwrap(),
    )
    .unwrap()
}

#[tokio::test]
async fn a_providers_token_is_accepted_as_bearer_and_as_cookie() {
    let upstream = Upstream::start().await;
    let idp = Idp::start();
    let latch = proxy(&upstream, &idp, &jwks_url(&idp), "");
    until_ready(&latch).await;
    let token = idp.token().await;
    assert_accepted(&latch, &token, "bearer").await;

    let resp = client()
        .get(latch.url(PROTECTED))
        .header("cookie", format!("latch_token={}", idp.token().await))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["headers"]["x-latch-user"], CLIENT_ID);

    let (_, ready) = readyz(&latch).await;
    assert_eq!(ready["auth_keys"]["keys"], 1, "{ready}");
    assert_eq!(ready["auth_keys"]["source"], idp.jwks_url(), "{ready}");
    assert_eq!(latch.counter("latch_auth_keys").await, 1);
}

#[tokio::test]
async fn discovery_finds_the_key_set_and_checks_the_issuer() {
    let upstream = Upstream::start().await;
    let idp = Idp::start();
    let latch = proxy(&upstream, &idp, "discover = true", "");
    until_ready(&latch).await;
    assert_accepted(&latch, &idp.token().await, "discovered keys").await;
    assert_eq!(idp.discovery_fetches().await, 1);
    assert_eq!(idp.jwks_fetches().await, 1);

    // An issuer that differs from the discovery document's (here only by a trailing slash,
    // which the document URL ignores) is not trusted: no keys, not ready, the reason shown.
    let wrong = LatchBuilder::new(upstream.port())
        .rules(DOC_EDIT)
        .auth_key("discover = true")
        .auth(&format!(
            "algorithms = [\"RS256\"]\nissuer = \"{}/\"",
            idp.issuer()
        ))
        .start();
    let problem = eventually(Duration::from_secs(10), || async {
        let (status, body) = readyz(&wrong).await;
        let text = body["problems"].to_string();
        (status == StatusCode::SERVICE_UNAVAILABLE && text.contains("names issuer")).then_some(text)
    })
    .await;
    assert!(problem.is_some(), "{:?}", readyz(&wrong).await);
    assert_refused(
        &wrong,
        &idp.token().await,
        "unknown_key",
        "untrusted issuer",
    )
    .await;
}

#[tokio::test]
async fn rotation_at_the_provider_needs_no_restart() {
    let upstream = Upstream::start().await;
    let idp = Idp::start();
    let latch = proxy(&upstream, &idp, &jwks_url(&idp), "jwks_refetch_seconds = 1");
    until_ready(&latch).await;
    let old = idp.token().await;
    assert_accepted(&latch, &old, "before rotation").await;

    // A new key, the old one withdrawn at once.
    idp.rotate(false).await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let new = idp.token().await;
    assert_accepted(&latch, &new, "signed with the new key").await;
    assert_eq!(idp.jwks_fetches().await, 2, "one refetch for the new kid");
    // The withdrawn key's token is forgotten, though it had verified before.
    assert_refused(&latch, &old, "unknown_key", "signed with the withdrawn key").await;

    // A rotation that keeps the previous key: both verify.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    idp.rotate(true).await;
    let newest = idp.token().await;
    assert_accepted(&latch, &newest, "signed with the newest key").await;
    assert_accepted(&latch, &new, "signed with the kept key").await;
}

#[tokio::test]
async fn an_unknown_kid_refetches_at_most_once_per_interval() {
    let upstream = Upstream::start().await;
    let idp = Idp::start();
    let latch = proxy(&upstream, &idp, &jwks_url(&idp), "jwks_refetch_seconds = 3");
    until_ready(&latch).await;
    assert_eq!(idp.jwks_fetches().await, 1);

    // Within the interval of the first fetch, an unknown kid fetches nothing.
    assert_refused(&latch, &foreign_token("made-up-0"), "unknown_key", "early").await;
    assert_eq!(idp.jwks_fetches().await, 1);

    tokio::time::sleep(Duration::from_millis(3100)).await;
    // Twenty requests at once, each naming a kid of its own: one fetch.
    let tokens: Vec<String> = (1..=20)
        .map(|i| foreign_token(&format!("made-up-{i}")))
        .collect();
    let answers = futures::future::join_all(tokens.iter().map(|token| bearer(&latch, token))).await;
    for (status, body) in answers {
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
        assert_eq!(body["code"], "unknown_key", "{body}");
    }
    assert_eq!(idp.jwks_fetches().await, 2);
    // And more right after: still none.
    for i in 21..=30 {
        assert_refused(
            &latch,
            &foreign_token(&format!("made-up-{i}")),
            "unknown_key",
            "after",
        )
        .await;
    }
    assert_eq!(idp.jwks_fetches().await, 2);
    assert_eq!(latch.counter("latch_auth_key_fetches_total").await, 2);
}

#[tokio::test]
async fn the_last_good_keys_stay_while_the_provider_is_down_or_talks_garbage() {
    let upstream = Upstream::start().await;
    let idp = Idp::start();
    let latch = proxy(&upstream, &idp, &jwks_url(&idp), "jwks_refetch_seconds = 1");
    until_ready(&latch).await;
    let seen = idp.token().await;
    assert_accepted(&latch, &seen, "while up").await;
    let unseen = idp.token().await;

    idp.down().await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    // An unknown kid makes the proxy try the provider, which refuses connections.
    assert_refused(&latch, &foreign_token("rotated?"), "unknown_key", "down").await;
    assert_eq!(
        latch.counter("latch_auth_key_fetch_failures_total").await,
        1
    );
    assert_accepted(&latch, &seen, "a verified token, provider down").await;
    assert_accepted(&latch, &unseen, "a new token, provider down").await;
    let (status, ready) = readyz(&latch).await;
    assert_eq!(
        status,
        StatusCode::OK,
        "last good keys still verify: {ready}"
    );
    let error = ready["auth_keys"]["last_error"]
        .as_str()
        .unwrap_or_default();
    assert!(error.contains("request failed"), "{ready}");
    assert_eq!(ready["auth_keys"]["keys"], 1, "{ready}");
    assert!(
        ready["auth_keys"]["age_seconds"].as_u64().is_some(),
        "{ready}"
    );
    assert_eq!(latch.counter("latch_auth_keys").await, 1);

    // Back up, but serving a key set that is not JSON.
    idp.up().await;
    idp.garbage(true).await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_refused(&latch, &foreign_token("garbage?"), "unknown_key", "garbage").await;
    assert_eq!(
        latch.counter("latch_auth_key_fetch_failures_total").await,
        2
    );
    let (_, ready) = readyz(&latch).await;
    let error = ready["auth_keys"]["last_error"]
        .as_str()
        .unwrap_or_default();
    assert!(error.contains("key set is unusable"), "{ready}");
    assert_accepted(&latch, &seen, "a verified token, garbage key set").await;

    // Healthy again: a rotated key is fetched, and the error is cleared.
    idp.garbage(false).await;
    idp.rotate(true).await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_accepted(&latch, &idp.token().await, "after recovery").await;
    let (_, ready) = readyz(&latch).await;
    assert_eq!(ready["auth_keys"]["last_error"], Value::Null, "{ready}");
    assert_eq!(ready["auth_keys"]["keys"], 2, "{ready}");
}

#[tokio::test]
async fn a_provider_down_at_start_leaves_the_proxy_up_but_not_ready() {
    let upstream = Upstream::start().await;
    let idp = Idp::start();
    idp.down().await;
    let latch = proxy(&upstream, &idp, &jwks_url(&idp), "jwks_refetch_seconds = 1");
    let problem = eventually(Duration::from_secs(10), || async {
        let (status, body) = readyz(&latch).await;
        let text = body["problems"].to_string();
        (status == StatusCode::SERVICE_UNAVAILABLE && text.contains("request failed"))
            .then_some(text)
    })
    .await;
    let Some(problem) = problem else {
        panic!("{:?}", readyz(&latch).await);
    };
    assert!(problem.contains("auth keys: none fetched yet"), "{problem}");
    assert!(
        latch.log().contains("cannot fetch them"),
        "the log says what failed:\n{}",
        latch.log()
    );

    idp.up().await;
    // The retry (or a request's refetch) picks the keys up with no restart.
    let token = idp.token().await;
    let accepted = eventually(Duration::from_secs(15), || async {
        (bearer(&latch, &token).await.0 == StatusCode::OK).then_some(())
    })
    .await;
    assert!(accepted.is_some(), "{}", latch.log());
    until_ready(&latch).await;
}

#[tokio::test]
async fn the_key_sets_cache_headers_schedule_the_next_fetch() {
    let upstream = Upstream::start().await;
    let idp = Idp::start();
    idp.cache_control("max-age=1").await;
    let short = proxy(
        &upstream,
        &idp,
        &jwks_url(&idp),
        "jwks_cache_min_seconds = 1",
    );
    until_ready(&short).await;
    tokio::time::sleep(Duration::from_millis(3500)).await;
    let fetched = idp.jwks_fetches().await;
    assert!(fetched >= 3, "max-age=1 refetches every second: {fetched}");
    drop(short);

    // The floor holds whatever the provider says.
    let idp = Idp::start();
    idp.cache_control("no-store").await;
    let floored = proxy(
        &upstream,
        &idp,
        &jwks_url(&idp),
        "jwks_cache_min_seconds = 60",
    );
    until_ready(&floored).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(idp.jwks_fetches().await, 1, "no-store waits for the floor");
}

#[tokio::test]
async fn unsigned_and_foreign_algorithm_tokens_stay_refused() {
    let upstream = Upstream::start().await;
    let idp = Idp::start();
    let latch = proxy(&upstream, &idp, &jwks_url(&idp), "");
    until_ready(&latch).await;
    let genuine = idp.token().await;
    let parts: Vec<&str> = genuine.split('.').collect();
    use base64::Engine as _;
    let b64 = |v: &Value| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string());
    let kid = {
        let header = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(parts[0])
            .unwrap();
        serde_json::from_slice::<Value>(&header).unwrap()["kid"].clone()
    };
    let none = format!("{}.{}.", b64(&json!({"alg": "none", "kid": kid})), parts[1]);
    assert_refused(&latch, &none, "algorithm_not_allowed", "alg none").await;
    // HS256 keyed with something public cannot pass as the provider's RSA key.
    let hs = jsonwebtoken::encode(
        &Header {
            kid: kid.as_str().map(str::to_owned),
            ..Header::new(Algorithm::HS256)
        },
        &json!({"sub": "mallory", "aud": AUDIENCE, "iss": idp.issuer(), "exp": now() + 600}),
        &EncodingKey::from_secret(idp.jwks_url().as_bytes()),
    )
    .unwrap();
    assert_refused(&latch, &hs, "algorithm_not_allowed", "HS256").await;
    // The provider's real kid on a foreign signature.
    let forged = foreign_token(kid.as_str().unwrap());
    assert_refused(&latch, &forged, "bad_signature", "foreign key, known kid").await;
}

/// The control plane verifies admins' tokens with the same fetched keys, and a rotation at the
/// provider needs no restart there either: a token naming the new key refetches the set. In one
/// process (`latch run`) it shares the proxy's keys: one fetch serves both, and a rotation
/// either of them learns of is known to the other.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_control_plane_shares_the_proxys_keys_and_follows_a_rotation() {
    let upstream = Upstream::start().await;
    let idp = Idp::start();
    let cp_port = tests::free_port();
    let auth = format!(
        "algorithms = [\"RS256\"]\nissuer = \"{}\"\naudience = [\"{AUDIENCE}\"]\n\
         jwks_refetch_seconds = 1",
        idp.issuer()
    );
    let key_line = jwks_url(&idp);
    let port = upstream.port();
    // The provider's machine client has the roles "reader" and "robots".
    let latch = tokio::task::spawn_blocking(move || {
        let latch = LatchBuilder::new(port)
            .command("run")
            .rules(DOC_EDIT)
            .auth_key(&key_line)
            .auth(&auth)
            .section(&format!(
                "[control_plane]\nlisten = \"127.0.0.1:{cp_port}\"\nadmin_roles = [\"robots\"]"
            ))
            .start();
        tests::wait_for_port(cp_port, Duration::from_secs(20), || latch.log());
        latch
    })
    .await
    .expect("starting latch run");
    let locks = |token: String| async move {
        let resp = client()
            .get(format!("http://127.0.0.1:{cp_port}/api/v1/locks"))
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        (resp.status(), resp.text().await.unwrap_or_default())
    };
    let before = eventually(Duration::from_secs(10), || async {
        let (status, _) = locks(idp.token().await).await;
        (status == StatusCode::OK).then_some(())
    })
    .await;
    assert!(
        before.is_some(),
        "the admin's token is refused:\n{}",
        latch.log()
    );
    assert_accepted(&latch, &idp.token().await, "the proxy").await;
    assert_eq!(
        idp.jwks_fetches().await,
        1,
        "one fetch serves the proxy and the control plane"
    );

    idp.rotate(false).await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let (status, body) = locks(idp.token().await).await;
    assert_eq!(status, StatusCode::OK, "signed with the new key: {body}");
    // The control plane's refetch for the new key was the proxy's too.
    assert_accepted(&latch, &idp.token().await, "the proxy, after the rotation").await;
    assert_eq!(
        idp.jwks_fetches().await,
        2,
        "the first fetch and one refetch, for both"
    );
    let (status, body) = locks(foreign_token("not-published")).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "a foreign key: {body}");
}
