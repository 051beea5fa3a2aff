//! `Verifier::verify_id_token`: an OpenID Connect ID token passes every token check, and
//! also names the sign-in's `nonce` and, when it has several audiences or an `azp`, this
//! client as its authorized party.

mod common;

use auth::{AuthError, KeySource};
use common::*;
use jsonwebtoken::Algorithm;
use serde_json::{json, Value};

const CLIENT: &str = "latch-web";
const NONCE: &str = "the-nonce-this-sign-in-sent";

fn id_verifier() -> auth::Verifier {
    let mut s = settings(&["RS256"], KeySource::PublicKeyPem(RSA_PUBLIC.to_vec()));
    s.issuer = Some("https://idp.example".into());
    s.audience = vec![CLIENT.into()];
    verifier(s)
}

fn id_token(extra: Value) -> String {
    let mut claims = json!({ "iss": "https://idp.example", "aud": CLIENT, "nonce": NONCE });
    for (name, value) in extra.as_object().unwrap() {
        claims[name] = value.clone();
    }
    // `claims_with` drops the claims set to null.
    let claims = claims_with(claims);
    sign(Algorithm::RS256, &rsa_key(), None, &claims)
}

async fn check(extra: Value, nonce: &str) -> Result<auth::Identity, AuthError> {
    id_verifier()
        .verify_id_token(&id_token(extra), nonce, CLIENT)
        .await
}

#[tokio::test]
async fn an_id_token_with_the_sign_ins_nonce_passes() {
    let identity = check(json!({}), NONCE).await.unwrap();
    assert_eq!(identity.user, "alice");
    let with_azp = check(json!({ "azp": CLIENT, "aud": [CLIENT, "api"] }), NONCE).await;
    assert_eq!(with_azp.unwrap().user, "alice");
}

#[tokio::test]
async fn another_nonce_no_nonce_or_an_empty_expected_nonce_is_refused() {
    assert_eq!(
        check(json!({}), "another").await,
        Err(AuthError::WrongNonce)
    );
    assert_eq!(
        check(json!({ "nonce": null }), NONCE).await,
        Err(AuthError::WrongNonce)
    );
    assert_eq!(
        check(json!({ "nonce": "" }), "").await,
        Err(AuthError::WrongNonce)
    );
    assert_eq!(
        check(json!({ "nonce": 7 }), NONCE).await,
        Err(AuthError::WrongNonce)
    );
}

#[tokio::test]
async fn another_authorized_party_or_several_audiences_without_one_is_refused() {
    assert_eq!(
        check(json!({ "azp": "other" }), NONCE).await,
        Err(AuthError::WrongAudience)
    );
    assert_eq!(
        check(json!({ "aud": [CLIENT, "other"] }), NONCE).await,
        Err(AuthError::WrongAudience)
    );
    assert_eq!(
        check(json!({ "aud": "other" }), NONCE).await,
        Err(AuthError::WrongAudience)
    );
}

#[tokio::test]
async fn the_token_checks_still_apply() {
    assert_eq!(
        check(json!({ "iss": "https://impostor.example" }), NONCE).await,
        Err(AuthError::WrongIssuer)
    );
    assert_eq!(
        check(json!({ "exp": 1_000 }), NONCE).await,
        Err(AuthError::Expired)
    );
    let foreign = sign(
        Algorithm::RS256,
        &rsa_other_key(),
        None,
        &claims_with(json!({ "iss": "https://idp.example", "aud": CLIENT, "nonce": NONCE })),
    );
    assert_eq!(
        id_verifier().verify_id_token(&foreign, NONCE, CLIENT).await,
        Err(AuthError::BadSignature)
    );
}

#[tokio::test]
async fn a_renewed_id_token_may_carry_no_nonce_but_never_another() {
    let renewed = |extra: Value, nonce: &'static str| async move {
        id_verifier()
            .verify_renewed_id_token(&id_token(extra), nonce, CLIENT)
            .await
    };
    assert_eq!(renewed(json!({}), NONCE).await.unwrap().user, "alice");
    let without = renewed(json!({ "nonce": null }), NONCE).await;
    assert_eq!(without.unwrap().user, "alice");
    assert_eq!(
        renewed(json!({ "nonce": "another" }), NONCE).await,
        Err(AuthError::WrongNonce)
    );
    assert_eq!(
        renewed(json!({ "nonce": 7 }), NONCE).await,
        Err(AuthError::WrongNonce)
    );
    // Every other check still applies.
    assert_eq!(
        renewed(json!({ "aud": "another-client", "nonce": null }), NONCE).await,
        Err(AuthError::WrongAudience)
    );
}
