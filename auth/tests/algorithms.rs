//! Which algorithms and keys verify, and that nothing else does.

mod common;

use auth::{AuthError, KeyError, KeySource, Verifier};
use common::*;
use jsonwebtoken::{Algorithm, EncodingKey};
use serde_json::json;

#[test]
fn every_algorithm_family_verifies_with_its_own_key() {
    let secret = || KeySource::Secret(SECRET.to_vec());
    let pem = |bytes: &[u8]| KeySource::PublicKeyPem(bytes.to_vec());
    let cases: Vec<(&str, Algorithm, EncodingKey, KeySource)> = vec![
        ("HS256", Algorithm::HS256, hmac_key(SECRET), secret()),
        ("HS384", Algorithm::HS384, hmac_key(SECRET), secret()),
        ("HS512", Algorithm::HS512, hmac_key(SECRET), secret()),
        ("RS256", Algorithm::RS256, rsa_key(), pem(RSA_PUBLIC)),
        ("RS384", Algorithm::RS384, rsa_key(), pem(RSA_PUBLIC)),
        ("RS512", Algorithm::RS512, rsa_key(), pem(RSA_PUBLIC)),
        ("PS256", Algorithm::PS256, rsa_key(), pem(RSA_PUBLIC)),
        ("PS384", Algorithm::PS384, rsa_key(), pem(RSA_PUBLIC)),
        ("PS512", Algorithm::PS512, rsa_key(), pem(RSA_PUBLIC)),
        ("ES256", Algorithm::ES256, ec256_key(), pem(EC256_PUBLIC)),
        ("ES384", Algorithm::ES384, ec384_key(), pem(EC384_PUBLIC)),
        (
            "EdDSA",
            Algorithm::EdDSA,
            ed25519_key(),
            pem(ED25519_PUBLIC),
        ),
    ];
    for (name, alg, signing_key, key) in cases {
        let v = verifier(settings(&[name], key));
        let token = sign(alg, &signing_key, None, &base_claims());
        let identity = v.verify(&token).unwrap_or_else(|e| panic!("{name}: {e:?}"));
        assert_eq!(identity.user, "alice", "{name}");
    }
}

#[test]
fn one_rsa_key_serves_every_rsa_algorithm_in_the_allow_list() {
    let all_rsa = ["RS256", "RS384", "RS512", "PS256", "PS384", "PS512"];
    let v = verifier(settings(
        &all_rsa,
        KeySource::PublicKeyPem(RSA_PUBLIC.to_vec()),
    ));
    for alg in [Algorithm::RS512, Algorithm::PS256] {
        assert!(v
            .verify(&sign(alg, &rsa_key(), None, &base_claims()))
            .is_ok());
    }
}

#[test]
fn rsa_key_may_come_as_pkcs1_or_inside_a_certificate() {
    let token = sign(Algorithm::RS256, &rsa_key(), None, &base_claims());
    for pem in [RSA_PUBLIC_PKCS1, RSA_CERT] {
        let v = verifier(settings(&["RS256"], KeySource::PublicKeyPem(pem.to_vec())));
        assert_eq!(v.verify(&token).unwrap().user, "alice");
    }
}

#[test]
fn wrong_key_is_a_bad_signature() {
    let hs = verifier(hs_settings());
    let forged = sign(
        Algorithm::HS256,
        &hmac_key(OTHER_SECRET),
        None,
        &base_claims(),
    );
    assert_eq!(hs.verify(&forged), Err(AuthError::BadSignature));

    let rs = verifier(settings(
        &["RS256"],
        KeySource::PublicKeyPem(RSA_PUBLIC.to_vec()),
    ));
    let forged = sign(Algorithm::RS256, &rsa_other_key(), None, &base_claims());
    assert_eq!(rs.verify(&forged), Err(AuthError::BadSignature));
    let other = verifier(settings(
        &["RS256"],
        KeySource::PublicKeyPem(RSA_OTHER_PUBLIC.to_vec()),
    ));
    let genuine = sign(Algorithm::RS256, &rsa_key(), None, &base_claims());
    assert_eq!(other.verify(&genuine), Err(AuthError::BadSignature));

    let ec = verifier(settings(
        &["ES256"],
        KeySource::PublicKeyPem(EC256_PUBLIC.to_vec()),
    ));
    let good = sign(Algorithm::ES256, &ec256_key(), None, &base_claims());
    let tampered = format!("{}.{}", good.rsplit_once('.').unwrap().0, b64(&[7u8; 64]));
    assert_eq!(ec.verify(&tampered), Err(AuthError::BadSignature));
}

#[test]
fn a_changed_payload_breaks_the_signature() {
    let v = verifier(hs_settings());
    let token = hs256(&base_claims());
    let parts: Vec<&str> = token.split('.').collect();
    let forged_claims = claims_with(json!({ "sub": "mallory" }));
    let forged = format!(
        "{}.{}.{}",
        parts[0],
        b64(forged_claims.to_string().as_bytes()),
        parts[2]
    );
    assert_eq!(v.verify(&forged), Err(AuthError::BadSignature));
}

#[test]
fn alg_none_is_refused_in_every_spelling() {
    let v = verifier(hs_settings());
    for spelling in ["none", "None", "NONE", "nOnE"] {
        let token = raw_token(
            &json!({ "alg": spelling, "typ": "JWT" }),
            &base_claims(),
            "",
        );
        assert_eq!(
            v.verify(&token),
            Err(AuthError::AlgorithmNotAllowed(spelling.to_owned())),
            "{spelling}"
        );
    }
    // A none token carrying a valid HS256 signature is still a none token.
    let real_signature = hs256(&base_claims()).rsplit_once('.').unwrap().1.to_owned();
    let token = raw_token(&json!({ "alg": "none" }), &base_claims(), &real_signature);
    assert_eq!(
        v.verify(&token),
        Err(AuthError::AlgorithmNotAllowed("none".into()))
    );
}

#[test]
fn unknown_header_algorithms_are_refused_without_echoing_odd_text() {
    let v = verifier(hs_settings());
    let token = raw_token(&json!({ "alg": "XS256" }), &base_claims(), "c2ln");
    assert_eq!(
        v.verify(&token),
        Err(AuthError::AlgorithmNotAllowed("XS256".into()))
    );
    let token = raw_token(&json!({ "alg": "<b>hi</b>" }), &base_claims(), "c2ln");
    assert_eq!(
        v.verify(&token),
        Err(AuthError::AlgorithmNotAllowed("(unrecognized)".into()))
    );
    let token = raw_token(&json!({ "alg": "hs256" }), &base_claims(), "c2ln");
    assert_eq!(
        v.verify(&token),
        Err(AuthError::AlgorithmNotAllowed("hs256".into()))
    );
}

#[test]
fn algorithm_outside_the_allow_list_is_refused_even_with_the_right_key() {
    let v = verifier(settings(
        &["RS256"],
        KeySource::PublicKeyPem(RSA_PUBLIC.to_vec()),
    ));
    let token = sign(Algorithm::RS512, &rsa_key(), None, &base_claims());
    assert_eq!(
        v.verify(&token),
        Err(AuthError::AlgorithmNotAllowed("RS512".into()))
    );
}

#[test]
fn algorithm_is_checked_before_the_signature_is_even_decoded() {
    let v = verifier(settings(
        &["RS256"],
        KeySource::PublicKeyPem(RSA_PUBLIC.to_vec()),
    ));
    // The signature is not base64url: decoding it would answer Malformed.
    let token = raw_token(
        &json!({ "alg": "HS256" }),
        &base_claims(),
        "***not base64***",
    );
    assert_eq!(
        v.verify(&token),
        Err(AuthError::AlgorithmNotAllowed("HS256".into()))
    );
    let token = raw_token(
        &json!({ "alg": "RS256" }),
        &base_claims(),
        "***not base64***",
    );
    assert_eq!(v.verify(&token), Err(AuthError::Malformed));
}

#[test]
fn rsa_public_key_used_as_hmac_secret_is_refused() {
    let v = verifier(settings(
        &["RS256"],
        KeySource::PublicKeyPem(RSA_PUBLIC.to_vec()),
    ));
    let confused = sign(
        Algorithm::HS256,
        &hmac_key(RSA_PUBLIC),
        None,
        &base_claims(),
    );
    assert_eq!(
        v.verify(&confused),
        Err(AuthError::AlgorithmNotAllowed("HS256".into()))
    );
}

#[test]
fn mixing_families_with_one_key_is_a_config_error() {
    let pem = Verifier::new(settings(
        &["RS256", "HS256"],
        KeySource::PublicKeyPem(RSA_PUBLIC.to_vec()),
    ));
    assert!(
        matches!(&pem, Err(KeyError::AlgorithmKeyMismatch { algorithm, .. }) if algorithm == "HS256"),
        "{pem:?}"
    );
    let secret = Verifier::new(settings(
        &["HS256", "RS256"],
        KeySource::Secret(SECRET.to_vec()),
    ));
    assert!(
        matches!(&secret, Err(KeyError::AlgorithmKeyMismatch { algorithm, .. }) if algorithm == "RS256"),
        "{secret:?}"
    );
}

#[test]
fn a_key_only_allows_its_own_curve_or_type() {
    let cases: [(&str, &[u8]); 5] = [
        ("ES384", EC256_PUBLIC),
        ("ES256", EC384_PUBLIC),
        ("RS256", EC256_PUBLIC),
        ("EdDSA", RSA_PUBLIC),
        ("ES256", ED25519_PUBLIC),
    ];
    for (alg, pem) in cases {
        let result = Verifier::new(settings(&[alg], KeySource::PublicKeyPem(pem.to_vec())));
        assert!(
            matches!(&result, Err(KeyError::AlgorithmKeyMismatch { algorithm, .. }) if algorithm == alg),
            "{alg}: {result:?}"
        );
    }
}

#[test]
fn garbage_is_malformed_and_nothing_is_missing() {
    let v = verifier(hs_settings());
    assert_eq!(v.verify(""), Err(AuthError::Missing));
    let header = b64(br#"{"alg":"HS256"}"#);
    let payload = b64(base_claims().to_string().as_bytes());
    let garbage = [
        "x".to_owned(),
        "a.b".to_owned(),
        "a.b.c".to_owned(),
        "a.b.c.d".to_owned(),
        "..".to_owned(),
        "Bearer abc".to_owned(),
        "ünïcödé.ünïcödé.ünïcödé".to_owned(),
        format!("{}.{payload}.sig", b64(b"not json")),
        format!("{}.{payload}.sig", b64(b"[1,2]")),
        format!("{}.{payload}.sig", b64(br#"{"typ":"JWT"}"#)),
        format!("{}.{payload}.sig", b64(br#"{"alg":5}"#)),
        format!("{header}=.{payload}.sig"),
        format!("{header}.{payload}"),
        "a".repeat(20_000),
    ];
    for token in &garbage {
        assert_eq!(v.verify(token), Err(AuthError::Malformed), "{token:.60}");
    }
}

#[test]
fn a_payload_that_is_not_json_is_malformed_even_when_signed() {
    let v = verifier(hs_settings());
    let header = b64(br#"{"alg":"HS256","typ":"JWT"}"#);
    let payload = b64(b"[\"not\", \"an object\"]");
    let message = format!("{header}.{payload}");
    let signature =
        jsonwebtoken::crypto::sign(message.as_bytes(), &hmac_key(SECRET), Algorithm::HS256)
            .unwrap();
    assert_eq!(
        v.verify(&format!("{message}.{signature}")),
        Err(AuthError::Malformed)
    );
}

#[test]
fn critical_header_extensions_are_refused() {
    let v = verifier(hs_settings());
    let header = b64(br#"{"alg":"HS256","crit":["x-ext"],"x-ext":"must-understand"}"#);
    let payload = b64(base_claims().to_string().as_bytes());
    let message = format!("{header}.{payload}");
    let signature =
        jsonwebtoken::crypto::sign(message.as_bytes(), &hmac_key(SECRET), Algorithm::HS256)
            .unwrap();
    assert_eq!(
        v.verify(&format!("{message}.{signature}")),
        Err(AuthError::Malformed)
    );
}

#[test]
fn error_messages_never_repeat_the_token() {
    let v = verifier(hs_settings());
    let tokens = [
        hs256(&claims_with(json!({ "exp": now() - 3600 }))),
        sign(
            Algorithm::HS256,
            &hmac_key(OTHER_SECRET),
            None,
            &base_claims(),
        ),
        hs256(&claims_with(json!({ "sub": null }))),
        raw_token(&json!({ "alg": "none" }), &base_claims(), ""),
    ];
    for token in &tokens {
        let error = v.verify(token).unwrap_err();
        let message = error.to_string();
        for part in token.split('.').filter(|p| p.len() > 3) {
            assert!(!message.contains(part), "{message}");
        }
        assert!(message.ends_with('.'), "{message}");
    }
}

#[test]
fn every_refusal_has_its_own_code() {
    let all = [
        AuthError::Missing,
        AuthError::Malformed,
        AuthError::AlgorithmNotAllowed("x".into()),
        AuthError::UnknownKey,
        AuthError::BadSignature,
        AuthError::Expired,
        AuthError::NotYetValid,
        AuthError::WrongIssuer,
        AuthError::WrongAudience,
        AuthError::MissingClaim("sub".into()),
    ];
    let mut codes: Vec<&str> = all.iter().map(AuthError::code).collect();
    assert_eq!(AuthError::Expired.code(), "expired");
    codes.sort_unstable();
    codes.dedup();
    assert_eq!(codes.len(), all.len());
}
