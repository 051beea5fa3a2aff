//! Verification against a JSON Web Key Set: kid lookup, key choice and key-set problems.

mod common;

use auth::{AuthError, KeyError, KeySource, Verifier};
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use common::*;
use jsonwebtoken::Algorithm;
use serde_json::{json, Value};

const RSA_KID: &str = "rsa-key-1";
const EC_KID: &str = "ec-key-1";

fn jwks_settings(algorithms: &[&str], document: String) -> auth::AuthSettings {
    settings(algorithms, KeySource::Jwks(document))
}

fn fixture_keys() -> Vec<Value> {
    let doc: Value = serde_json::from_str(JWKS).unwrap();
    doc["keys"].as_array().unwrap().clone()
}

fn rsa_jwk() -> Value {
    fixture_keys()[0].clone()
}

fn ec_jwk() -> Value {
    fixture_keys()[1].clone()
}

fn set(keys: Vec<Value>) -> String {
    json!({ "keys": keys }).to_string()
}

fn with(mut jwk: Value, changes: Value) -> Value {
    for (name, value) in changes.as_object().unwrap() {
        if value.is_null() {
            jwk.as_object_mut().unwrap().remove(name);
        } else {
            jwk[name] = value.clone();
        }
    }
    jwk
}

fn both() -> Verifier {
    verifier(jwks_settings(&["RS256", "ES256"], JWKS.to_owned()))
}

#[test]
fn kid_picks_the_key() {
    let v = both();
    let rsa = sign(Algorithm::RS256, &rsa_key(), Some(RSA_KID), &base_claims());
    let ec = sign(Algorithm::ES256, &ec256_key(), Some(EC_KID), &base_claims());
    assert_eq!(v.verify(&rsa).unwrap().user, "alice");
    assert_eq!(v.verify(&ec).unwrap().user, "alice");
}

#[test]
fn a_kid_not_in_the_set_is_an_unknown_key() {
    let token = sign(
        Algorithm::RS256,
        &rsa_key(),
        Some("retired"),
        &base_claims(),
    );
    assert_eq!(both().verify(&token), Err(AuthError::UnknownKey));
}

#[test]
fn a_kid_naming_another_key_fails_the_signature() {
    let token = sign(
        Algorithm::RS256,
        &rsa_other_key(),
        Some(RSA_KID),
        &base_claims(),
    );
    assert_eq!(both().verify(&token), Err(AuthError::BadSignature));
}

#[test]
fn a_kid_naming_a_key_of_another_type_is_refused_before_verifying() {
    let token = sign(Algorithm::RS256, &rsa_key(), Some(EC_KID), &base_claims());
    assert_eq!(
        both().verify(&token),
        Err(AuthError::AlgorithmNotAllowed("RS256".into()))
    );
}

#[test]
fn a_keys_own_alg_must_match_the_token() {
    let v = verifier(jwks_settings(&["RS256", "PS256"], JWKS.to_owned()));
    // The RSA key could verify PS256, but it is published for RS256 only.
    let token = sign(Algorithm::PS256, &rsa_key(), Some(RSA_KID), &base_claims());
    assert_eq!(
        v.verify(&token),
        Err(AuthError::AlgorithmNotAllowed("PS256".into()))
    );
    let unpinned = set(vec![with(rsa_jwk(), json!({ "alg": null }))]);
    let v = verifier(jwks_settings(&["RS256", "PS256"], unpinned));
    assert!(v.verify(&token).is_ok());
}

#[test]
fn without_kid_the_only_usable_key_is_used() {
    // The EC key is not usable when only RS256 is allowed.
    let v = verifier(jwks_settings(&["RS256"], JWKS.to_owned()));
    let token = sign(Algorithm::RS256, &rsa_key(), None, &base_claims());
    assert_eq!(v.verify(&token).unwrap().user, "alice");
}

#[test]
fn without_kid_the_only_key_for_the_tokens_algorithm_is_used() {
    let token = sign(Algorithm::ES256, &ec256_key(), None, &base_claims());
    assert!(both().verify(&token).is_ok());
}

#[test]
fn without_kid_several_candidate_keys_are_ambiguous() {
    let second = with(rsa_jwk(), json!({ "kid": "rsa-key-2" }));
    let v = verifier(jwks_settings(&["RS256"], set(vec![rsa_jwk(), second])));
    let token = sign(Algorithm::RS256, &rsa_key(), None, &base_claims());
    assert_eq!(v.verify(&token), Err(AuthError::UnknownKey));
    let named = sign(
        Algorithm::RS256,
        &rsa_key(),
        Some("rsa-key-2"),
        &base_claims(),
    );
    assert!(v.verify(&named).is_ok());
}

#[test]
fn eddsa_keys_are_read_from_okp_entries() {
    let der = STANDARD
        .decode(
            std::str::from_utf8(ED25519_PUBLIC)
                .unwrap()
                .lines()
                .filter(|l| !l.starts_with("-----"))
                .collect::<String>(),
        )
        .unwrap();
    let x = b64(&der[der.len() - 32..]);
    let okp = json!({ "kty": "OKP", "crv": "Ed25519", "kid": "ed", "x": x });
    let v = verifier(jwks_settings(&["EdDSA"], set(vec![rsa_jwk(), okp])));
    let token = sign(Algorithm::EdDSA, &ed25519_key(), Some("ed"), &base_claims());
    assert!(v.verify(&token).is_ok());
}

#[test]
fn a_single_jwk_document_is_a_set_of_one() {
    let v = verifier(jwks_settings(&["ES256"], ec_jwk().to_string()));
    let token = sign(Algorithm::ES256, &ec256_key(), Some(EC_KID), &base_claims());
    assert!(v.verify(&token).is_ok());
}

#[test]
fn hmac_algorithms_cannot_use_a_key_set() {
    let result = Verifier::new(jwks_settings(&["HS256"], JWKS.to_owned()));
    assert!(
        matches!(&result, Err(KeyError::AlgorithmKeyMismatch { algorithm, .. }) if algorithm == "HS256"),
        "{result:?}"
    );
}

#[test]
fn keys_that_cannot_sign_are_skipped() {
    let unusable = vec![
        with(rsa_jwk(), json!({ "use": "enc" })),
        with(rsa_jwk(), json!({ "alg": "RSA-OAEP" })),
        with(rsa_jwk(), json!({ "key_ops": ["encrypt"] })),
        json!({ "kty": "oct", "k": "c2VjcmV0" }),
        json!({ "kty": "EC", "crv": "P-521", "x": "AA", "y": "AA" }),
        json!({ "kty": "OKP", "crv": "X25519", "x": "AA" }),
    ];
    let result = Verifier::new(jwks_settings(&["RS256"], set(unusable.clone())));
    assert_eq!(
        result.err(),
        Some(KeyError::NoUsableJwk {
            algorithms: "RS256".into()
        })
    );
    let mut keys = unusable;
    keys.push(rsa_jwk());
    let v = verifier(jwks_settings(&["RS256"], set(keys)));
    let token = sign(Algorithm::RS256, &rsa_key(), None, &base_claims());
    assert!(v.verify(&token).is_ok());
}

#[test]
fn broken_signing_keys_are_config_errors_naming_the_key() {
    let cases = [
        (with(rsa_jwk(), json!({ "n": "!!!" })), "n is not base64url"),
        (with(rsa_jwk(), json!({ "e": null })), "e is missing"),
        (with(rsa_jwk(), json!({ "alg": "ES256" })), "does not fit"),
        (
            with(rsa_jwk(), json!({ "n": b64(&[0xff; 128]) })),
            "1024 bits",
        ),
        (
            with(ec_jwk(), json!({ "x": b64(&[1; 32]) })),
            "not on the P-256 curve",
        ),
        (with(ec_jwk(), json!({ "y": b64(&[1; 31]) })), "32 bytes"),
        (with(rsa_jwk(), json!({ "kty": null })), "kty is missing"),
        (with(rsa_jwk(), json!({ "kid": 5 })), "kid is not a string"),
    ];
    for (jwk, expected) in cases {
        let errors = Verifier::check_settings(&jwks_settings(&["RS256", "ES256"], set(vec![jwk])));
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(errors[0].contains("key #1"), "{}", errors[0]);
        assert!(
            errors[0].contains(expected),
            "{} lacks {expected}",
            errors[0]
        );
    }
}

#[test]
fn every_broken_key_is_reported() {
    let doc = set(vec![
        with(rsa_jwk(), json!({ "n": "!!!" })),
        ec_jwk(),
        with(ec_jwk(), json!({ "kid": "bad-ec", "x": "AA" })),
    ]);
    let errors = Verifier::check_settings(&jwks_settings(&["RS256", "ES256"], doc));
    assert_eq!(errors.len(), 2, "{errors:?}");
    assert!(
        errors[0].contains("key #1 (kid \"rsa-key-1\")"),
        "{}",
        errors[0]
    );
    assert!(
        errors[1].contains("key #3 (kid \"bad-ec\")"),
        "{}",
        errors[1]
    );
}

#[test]
fn a_document_that_is_not_a_key_set_is_a_config_error() {
    for doc in ["", "not json", "[]", "{}", r#"{"keys": {}}"#] {
        let result = Verifier::new(jwks_settings(&["RS256"], doc.to_owned()));
        assert!(
            matches!(result, Err(KeyError::InvalidJwks(_))),
            "{doc}: {result:?}"
        );
    }
}
