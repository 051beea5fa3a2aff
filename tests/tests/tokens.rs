//! Tokens that must not establish an identity: each gets 401 on a matched path, and each
//! for the reason it was crafted to fail on (the problem document's `code`).
//!
//! Tokens are forged here by hand or with `jsonwebtoken` rather than with the project's own
//! minting code, so a mistake shared by minting and verifying cannot hide.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use reqwest::StatusCode;
use serde_json::{json, Value};
use tests::fixtures::DOC_EDIT;
use tests::{client, free_port, token, LatchBuilder, Upstream, SECRET};

/// A throwaway RSA key pair for these tests only.
const RSA_PRIVATE: &str = "\
-----BEGIN PRIVATE KEY-----
MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQDRkQ77StInvb+a
EWlH7NRW/8nb65svua6Nfowun8bh/4+aCsgfSQv+ASmJuEyY4K11DURuPfyaNFjW
KCUf5nhMh770KDt1WKmtN/gyVx3T3HuqKYHJQF/Q4/YmyN+ObRmL+SHbKMeutGRS
nuyr3mCNy0/GBUbBd6rUe/yeDG4nOhk1qJGeV1F6b4ZZX8mQzP/Huu2/7SW6BAiO
71OVOyYsKlQMIjHU0r4axJdOWWA3nqxzQXzzch9dQHOhmCGyuEc9K/N/f/TULTUD
r0D7u3zXFMUPtMi1eSUmCEfwCZyBJmsGr25+O74axRvwloojUO2xAqTvv97E+Pme
q/ZGxkEFAgMBAAECggEACCPDurP1xLBkjEXn2nDS8Iwf2Yhlry1dn8ZOCJORJH8K
I1gO3NQ4AIYoCF7drsRvSFAbG9MRiCXHW44UnxATFRniq1YStSSb9ovpen8SvANg
1EOndFspPZJVIb2EnWIUb3DeRUZotxrvmJvuomBRTMCcWRskW+hbfMRSFAt0jdZs
TnnbOvVpk2GgL+8AtboWkNK8ktA1WOVIuK3vIDf6Pge5728Aushegqwj8NeoL6Zq
p4UNQD2LZdRZb8CAjmtf6zk/LTwJrDLw3w9QI73Jn7giOyroI+YkzMGwt+7Hbd/4
1KMUH+U95e8s19hWBlqAS6ez21rbe3K87CIKxsnNcwKBgQD6yCdmMwOoAsdJJDWa
TpMlNJuqF04zqlwHZz0262XMKLgARVn63m+h7jr4yFHgTi4w014/4upTfgQcKX5B
pXuBNhGJ1s9fqcbarCWFDj5dx4hqev1XYwQNLrc4BYm7C9HK03usW87nUbuFUPE9
eirNjvGwvt7uwSRW9KUpRWFeSwKBgQDV7VzK/den+secI7JkSTxjjzhEKBCF1ngf
IORD+ITMnJ4HOhdlmRlQEFAIH5bb2heZWWr69gAqEXIE5CtX42hJQuAKxfv4DVLi
ttwHwHDdifdDq8iPD1lQ/8P3KdvQsrAfnFtbQRzBjCKaMRoGCrLoc7qdF4N5doIU
rD4fijYL7wKBgQCNyS4lZQBTNEbx/mvj8zrUVTsRXp3TLiVb9i2w6EQkunzVgmBO
KwbYebWTxMYt2GXbKxXlbujnDZ9LQNZmTSZXtncSBIY4YufP6HZKFPSD1vU0ppan
mo7G2Tuzi8YEH7mcQBdzKnD/bcFkrY/HH1Ql5gSV1kR6nm5qT2U1wUk8owKBgBGf
n1BdvyFoiH81daHLYr009EaxIkNUWsr9s7BhzdbpZB9mSr0k8q/k2CMDLzNncSBB
/I02LOdKTqFWhreT1WiLqNdaXhqeRmDE/bVpxiKKFiOuCDS45/vDRkqbWS+FOPsx
r1kCMTNErykSuHkc8oYx2oLMiBk+iRLY6blBcphjAoGANHuB0RR7upZ0c6U+j9b2
klDraqzjxu6Q2BNisEZnPJswdgrDYa7AJ85fFC+A7ErT7DGveKoXtulzpNAtGMBG
laRGKGLrJUnIyNFJqrJLdIIYA38kz+02rpJu/XLKxQX1rAZ6GLElgC1E6SiOH2w3
oAWNZw+coNRugTXatx+QAts=
-----END PRIVATE KEY-----
";
const RSA_PUBLIC: &str = "\
-----BEGIN PUBLIC KEY-----
MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEA0ZEO+0rSJ72/mhFpR+zU
Vv/J2+ubL7mujX6MLp/G4f+PmgrIH0kL/gEpibhMmOCtdQ1Ebj38mjRY1iglH+Z4
TIe+9Cg7dViprTf4Mlcd09x7qimByUBf0OP2Jsjfjm0Zi/kh2yjHrrRkUp7sq95g
jctPxgVGwXeq1Hv8ngxuJzoZNaiRnldRem+GWV/JkMz/x7rtv+0lugQIju9TlTsm
LCpUDCIx1NK+GsSXTllgN56sc0F883IfXUBzoZghsrhHPSvzf3/01C01A69A+7t8
1xTFD7TItXklJghH8AmcgSZrBq9ufju+GsUb8JaKI1DtsQKk77/exPj5nqv2RsZB
BQIDAQAB
-----END PUBLIC KEY-----
";

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn b64(data: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(data)
}

/// Claims for alice valid for an hour; tests change or drop members from here.
fn claims() -> Value {
    json!({ "sub": "alice", "name": "Alice", "iat": now(), "exp": now() + 3600 })
}

fn sign(alg: Algorithm, claims: &Value, key: &EncodingKey) -> String {
    jsonwebtoken::encode(&Header::new(alg), claims, key).unwrap()
}

fn hs(alg: Algorithm, secret: &[u8], claims: &Value) -> String {
    sign(alg, claims, &EncodingKey::from_secret(secret))
}

fn rs256(claims: &Value) -> String {
    sign(
        Algorithm::RS256,
        claims,
        &EncodingKey::from_rsa_pem(RSA_PRIVATE.as_bytes()).unwrap(),
    )
}

/// A token with any header, any payload and any signature, assembled by hand.
fn forge(header: &Value, claims: &Value, signature: &[u8]) -> String {
    format!(
        "{}.{}.{}",
        b64(header.to_string().as_bytes()),
        b64(claims.to_string().as_bytes()),
        b64(signature)
    )
}

fn with(mut base: Value, key: &str, value: Value) -> Value {
    base[key] = value;
    base
}

fn without(mut base: Value, key: &str) -> Value {
    base.as_object_mut().unwrap().remove(key);
    base
}

/// Sends `token` as a bearer token to a matched path: `(status, problem code, challenge)`.
async fn try_token(url: &str, token: &str) -> (StatusCode, Value, String) {
    let resp = client().get(url).bearer_auth(token).send().await.unwrap();
    let status = resp.status();
    let challenge = resp
        .headers()
        .get("www-authenticate")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    let body: Value = resp.json().await.unwrap_or(Value::Null);
    (status, body, challenge)
}

async fn assert_refused(url: &str, label: &str, token: &str, code: &str) {
    let (status, body, challenge) = try_token(url, token).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{label}: {body}");
    assert_eq!(body["code"], code, "{label}: {body}");
    assert!(
        challenge.starts_with("Bearer") && challenge.contains("invalid_token"),
        "{label}: {challenge}"
    );
}

async fn assert_accepted(url: &str, label: &str, token: &str) {
    let (status, body, _) = try_token(url, token).await;
    assert_eq!(status, StatusCode::OK, "{label}: {body}");
    assert_eq!(body["headers"]["x-latch-user"], "alice", "{label}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_tokens_get_401_against_an_hs256_proxy() {
    let upstream = Upstream::start().await;
    let latch = LatchBuilder::new(upstream.port()).rules(DOC_EDIT).start();
    let url = latch.url("/echo/docs/1/edit");
    let secret = SECRET.as_bytes();

    assert_accepted(&url, "control", &hs(Algorithm::HS256, secret, &claims())).await;

    let none_header = json!({ "alg": "none", "typ": "JWT" });
    let valid_sig = {
        let good = hs(Algorithm::HS256, secret, &claims());
        URL_SAFE_NO_PAD
            .decode(good.rsplit('.').next().unwrap())
            .unwrap()
    };
    let tampered = {
        let good = hs(Algorithm::HS256, secret, &claims());
        let parts: Vec<&str> = good.split('.').collect();
        let admin = with(claims(), "sub", json!("admin"));
        format!(
            "{}.{}.{}",
            parts[0],
            b64(admin.to_string().as_bytes()),
            parts[2]
        )
    };
    let cases: Vec<(&str, String, &str)> = vec![
        (
            "expired beyond the leeway",
            hs(
                Algorithm::HS256,
                secret,
                &with(claims(), "exp", json!(now() - 300)),
            ),
            "expired",
        ),
        (
            "nbf in the future",
            hs(
                Algorithm::HS256,
                secret,
                &with(claims(), "nbf", json!(now() + 600)),
            ),
            "not_yet_valid",
        ),
        (
            "wrong key",
            hs(
                Algorithm::HS256,
                b"another-secret-that-is-also-long-enough!!",
                &claims(),
            ),
            "bad_signature",
        ),
        ("tampered payload", tampered, "bad_signature"),
        (
            "alg none, no signature",
            forge(&none_header, &claims(), b""),
            "algorithm_not_allowed",
        ),
        (
            "alg None",
            forge(&json!({ "alg": "None" }), &claims(), b""),
            "algorithm_not_allowed",
        ),
        (
            "alg NONE with a real signature",
            forge(&json!({ "alg": "NONE" }), &claims(), &valid_sig),
            "algorithm_not_allowed",
        ),
        (
            "HS384 against an HS256-only allow-list",
            hs(Algorithm::HS384, secret, &claims()),
            "algorithm_not_allowed",
        ),
        (
            "HS512 against an HS256-only allow-list",
            hs(Algorithm::HS512, secret, &claims()),
            "algorithm_not_allowed",
        ),
        (
            "RS256 against an HS secret",
            rs256(&claims()),
            "algorithm_not_allowed",
        ),
        (
            "no alg at all",
            forge(&json!({ "typ": "JWT" }), &claims(), &valid_sig),
            "malformed",
        ),
        (
            "a critical extension",
            forge(
                &json!({ "alg": "HS256", "crit": ["exp"] }),
                &claims(),
                &valid_sig,
            ),
            "malformed",
        ),
        ("garbage", "garbage".to_string(), "malformed"),
        ("three empty parts", "..".to_string(), "malformed"),
        ("not base64", "%%%.%%%.%%%".to_string(), "malformed"),
        (
            "four parts",
            format!("{}.x", hs(Algorithm::HS256, secret, &claims())),
            "malformed",
        ),
        (
            "oversized",
            format!("{}.{}.x", "a".repeat(20_000), "b".repeat(20_000)),
            "malformed",
        ),
        (
            "missing exp",
            hs(Algorithm::HS256, secret, &without(claims(), "exp")),
            "missing_claim",
        ),
        (
            "missing sub",
            hs(Algorithm::HS256, secret, &without(claims(), "sub")),
            "missing_claim",
        ),
    ];
    for (label, tok, code) in &cases {
        assert_refused(&url, label, tok, code).await;
    }

    // A JSON string where a time belongs is refused, whatever the reason is called.
    let (status, body, _) = try_token(
        &url,
        &hs(
            Algorithm::HS256,
            secret,
            &with(claims(), "exp", json!("never")),
        ),
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");

    // The leeway (30 s by default) tolerates a little clock skew on both ends.
    let skewed = with(
        with(claims(), "exp", json!(now() - 5)),
        "nbf",
        json!(now() + 5),
    );
    assert_accepted(
        &url,
        "within the leeway",
        &hs(Algorithm::HS256, secret, &skewed),
    )
    .await;

    // The same refusals apply to the cookie.
    let resp = client()
        .get(&url)
        .header(
            "cookie",
            format!("latch_token={}", forge(&none_header, &claims(), b"")),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issuer_and_audience_are_enforced_when_configured() {
    let upstream = Upstream::start().await;
    let latch = LatchBuilder::new(upstream.port())
        .rules(DOC_EDIT)
        .auth("issuer = \"https://idp.test\"\naudience = [\"latch\", \"other\"]")
        .start();
    let url = latch.url("/echo/docs/1/edit");
    let secret = SECRET.as_bytes();
    let good = with(
        with(claims(), "iss", json!("https://idp.test")),
        "aud",
        json!("latch"),
    );
    assert_accepted(&url, "control", &hs(Algorithm::HS256, secret, &good)).await;
    assert_accepted(
        &url,
        "audience list",
        &hs(
            Algorithm::HS256,
            secret,
            &with(good.clone(), "aud", json!(["x", "other"])),
        ),
    )
    .await;
    let cases = [
        (
            "wrong issuer",
            with(good.clone(), "iss", json!("https://evil.test")),
            "wrong_issuer",
        ),
        ("no issuer", without(good.clone(), "iss"), "missing_claim"),
        (
            "wrong audience",
            with(good.clone(), "aud", json!("someone-else")),
            "wrong_audience",
        ),
        ("no audience", without(good.clone(), "aud"), "missing_claim"),
    ];
    for (label, claims, code) in &cases {
        assert_refused(&url, label, &hs(Algorithm::HS256, secret, claims), code).await;
    }
}

/// A `latch proxy` on a hand-written config: the shared builder always configures a secret,
/// and a public-key setup must not have one.
struct CustomLatch {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl CustomLatch {
    fn start(upstream_port: u16, auth: &str, files: &[(&str, &str)]) -> CustomLatch {
        let dir = tempfile::tempdir().unwrap();
        for (name, content) in files {
            std::fs::write(dir.path().join(name), content).unwrap();
        }
        let port = free_port();
        let admin_port = free_port();
        let config = format!(
            "[proxy]\nlisten = \"127.0.0.1:{port}\"\nupstream = \"http://127.0.0.1:{upstream_port}\"\n\n\
             [auth]\n{auth}\n\n[rules]\nstore = \"rules.toml\"\n\n\
             [admin]\nlisten = \"127.0.0.1:{admin_port}\"\n"
        );
        std::fs::write(dir.path().join("latch.toml"), config).unwrap();
        std::fs::write(dir.path().join("rules.toml"), DOC_EDIT).unwrap();
        let log = std::fs::File::create(dir.path().join("latch.log")).unwrap();
        let child = Command::new(tests::latch::latch_bin())
            .arg("proxy")
            .arg("--config")
            .arg(dir.path().join("latch.toml"))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        let mut latch = CustomLatch {
            child,
            port,
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err()
            || std::net::TcpStream::connect(("127.0.0.1", admin_port)).is_err()
        {
            if let Ok(Some(status)) = latch.child.try_wait() {
                let log = std::fs::read_to_string(latch._dir.path().join("latch.log"))
                    .unwrap_or_default();
                panic!("latch exited with {status}: {log}");
            }
            assert!(Instant::now() < deadline, "latch did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        latch
    }
}

impl Drop for CustomLatch {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hs_rs_confusion_is_refused_by_a_public_key_proxy() {
    let upstream = Upstream::start().await;
    let latch = CustomLatch::start(
        upstream.port(),
        "algorithms = [\"RS256\"]\npublic_key_file = \"public.pem\"",
        &[("public.pem", RSA_PUBLIC)],
    );
    let url = format!("http://127.0.0.1:{}/echo/docs/1/edit", latch.port);

    assert_accepted(&url, "control", &rs256(&claims())).await;

    // The classic confusion: HMAC keyed with the public key the verifier holds.
    for pem in [RSA_PUBLIC, RSA_PUBLIC.trim_end()] {
        assert_refused(
            &url,
            "HS256 keyed with the public key",
            &hs(Algorithm::HS256, pem.as_bytes(), &claims()),
            "algorithm_not_allowed",
        )
        .await;
    }
    let cases = [
        (
            "RS384 against an RS256-only allow-list",
            sign(
                Algorithm::RS384,
                &claims(),
                &EncodingKey::from_rsa_pem(RSA_PRIVATE.as_bytes()).unwrap(),
            ),
            "algorithm_not_allowed",
        ),
        (
            "RS256 header over an HS256 signature",
            {
                let hs = hs(Algorithm::HS256, RSA_PUBLIC.as_bytes(), &claims());
                let sig = URL_SAFE_NO_PAD
                    .decode(hs.rsplit('.').next().unwrap())
                    .unwrap();
                forge(&json!({ "alg": "RS256", "typ": "JWT" }), &claims(), &sig)
            },
            "bad_signature",
        ),
        (
            "expired RS256",
            rs256(&with(claims(), "exp", json!(now() - 300))),
            "expired",
        ),
        (
            "alg none",
            forge(&json!({ "alg": "none" }), &claims(), b""),
            "algorithm_not_allowed",
        ),
    ];
    for (label, tok, code) in &cases {
        assert_refused(&url, label, tok, code).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_valid_token_minted_by_the_helper_is_accepted() {
    let upstream = Upstream::start().await;
    let latch = LatchBuilder::new(upstream.port()).rules(DOC_EDIT).start();
    assert_accepted(
        &latch.url("/echo/docs/1/edit"),
        "tests::token",
        &token("alice", "Alice", &["editor"]),
    )
    .await;
}
