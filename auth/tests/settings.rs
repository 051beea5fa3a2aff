//! Settings that cannot be used are refused when the verifier is built, with every problem named.

mod common;

use auth::{AuthSettings, KeyError, KeySource, Verifier};
use common::*;

fn error(settings: AuthSettings) -> KeyError {
    Verifier::new(settings).expect_err("settings should be refused")
}

fn pem(bytes: &[u8]) -> KeySource {
    KeySource::PublicKeyPem(bytes.to_vec())
}

#[test]
fn defaults_name_the_documented_claims_and_need_a_secret() {
    let defaults = AuthSettings::default();
    assert_eq!(defaults.algorithms, ["HS256"]);
    assert_eq!(defaults.key, KeySource::Secret(Vec::new()));
    assert_eq!(defaults.leeway_seconds, 30);
    assert_eq!(
        (
            defaults.user_claim.as_str(),
            defaults.name_claim.as_str(),
            defaults.roles_claim.as_str()
        ),
        ("sub", "name", "roles")
    );
    assert_eq!(error(defaults), KeyError::EmptySecret);
}

#[test]
fn short_secrets_are_refused_with_their_length() {
    let short = settings(&["HS256"], KeySource::Secret(vec![b'x'; 31]));
    assert_eq!(error(short.clone()), KeyError::SecretTooShort { len: 31 });
    let message = &Verifier::check_settings(&short)[0];
    assert!(
        message.contains("31 bytes") && message.contains("32"),
        "{message}"
    );
    assert!(Verifier::new(settings(&["HS256"], KeySource::Secret(vec![b'x'; 32]))).is_ok());
}

#[test]
fn a_pem_key_given_as_secret_is_refused() {
    let s = settings(&["HS256"], KeySource::Secret(RSA_PUBLIC.to_vec()));
    assert_eq!(error(s), KeyError::SecretIsPem);
}

#[test]
fn none_is_refused_in_any_case() {
    for none in ["none", "None", "NONE", " none "] {
        let s = settings(&[none], KeySource::Secret(SECRET.to_vec()));
        assert_eq!(
            error(s),
            KeyError::NoneAlgorithm(none.to_owned()),
            "{none:?}"
        );
    }
}

#[test]
fn unknown_and_missing_algorithms_are_refused() {
    let s = settings(&["HS257"], KeySource::Secret(SECRET.to_vec()));
    assert_eq!(error(s), KeyError::UnknownAlgorithm("HS257".into()));
    let s = settings(&["hs256"], KeySource::Secret(SECRET.to_vec()));
    assert_eq!(error(s), KeyError::UnknownAlgorithm("hs256".into()));
    let s = settings(&[], KeySource::Secret(SECRET.to_vec()));
    assert_eq!(error(s), KeyError::NoAlgorithms);
}

#[test]
fn private_keys_are_refused_with_advice() {
    for private in [RSA_PRIVATE, EC256_PRIVATE, ED25519_PRIVATE] {
        assert_eq!(
            error(settings(&["RS256"], pem(private))),
            KeyError::PrivateKey
        );
    }
    let legacy = b"-----BEGIN RSA PRIVATE KEY-----\nAAAA\n-----END RSA PRIVATE KEY-----\n";
    assert_eq!(
        error(settings(&["RS256"], pem(legacy))),
        KeyError::PrivateKey
    );
}

#[test]
fn text_that_is_not_a_public_key_pem_is_refused() {
    let cases: [(&[u8], &str); 6] = [
        (b"", "no -----BEGIN"),
        (b"hello", "no -----BEGIN"),
        (br#"{"keys":[]}"#, "jwks_file"),
        (b"-----BEGIN PUBLIC KEY-----\nAAAA\n", "missing"),
        (
            b"-----BEGIN PUBLIC KEY-----\n!!!!\n-----END PUBLIC KEY-----\n",
            "base64",
        ),
        (
            b"-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n",
            "malformed",
        ),
    ];
    for (bytes, expected) in cases {
        let result = error(settings(&["RS256"], pem(bytes)));
        assert!(matches!(result, KeyError::InvalidPem(_)), "{result:?}");
        assert!(
            result.to_string().contains(expected),
            "{result} lacks {expected}"
        );
    }
    let other = b"-----BEGIN X509 CRL-----\nAAAA\n-----END X509 CRL-----\n";
    assert!(error(settings(&["RS256"], pem(other)))
        .to_string()
        .contains("X509 CRL"));
    assert!(matches!(
        error(settings(&["RS256"], pem(&[0xff, 0xfe]))),
        KeyError::InvalidPem(_)
    ));
}

#[test]
fn unsupported_and_weak_keys_are_refused() {
    let p521 = error(settings(&["ES256"], pem(EC521_PUBLIC)));
    assert_eq!(p521, KeyError::UnsupportedKey("EC curve P-521".into()));
    let weak = error(settings(&["RS256"], pem(RSA1024_PUBLIC)));
    assert!(
        matches!(&weak, KeyError::InvalidKey(reason) if reason.contains("1024 bits")),
        "{weak:?}"
    );
}

#[test]
fn a_pem_with_surrounding_text_is_read() {
    let mut bytes = b"subject=CN=test\n\n".to_vec();
    bytes.extend_from_slice(RSA_PUBLIC);
    assert!(Verifier::new(settings(&["RS256"], pem(&bytes))).is_ok());
}

#[test]
fn limits_and_claim_paths_are_checked() {
    let base = hs_settings;
    let cases = [
        (
            AuthSettings {
                leeway_seconds: 3601,
                ..base()
            },
            KeyError::LeewayTooLarge(3601),
        ),
        (
            AuthSettings {
                issuer: Some(" ".into()),
                ..base()
            },
            KeyError::EmptyIssuer,
        ),
        (
            AuthSettings {
                audience: vec!["latch".into(), String::new()],
                ..base()
            },
            KeyError::EmptyAudience,
        ),
        (
            AuthSettings {
                user_claim: String::new(),
                ..base()
            },
            KeyError::InvalidClaimPath {
                setting: "user_claim",
                path: String::new(),
                reason: "it is empty",
            },
        ),
        (
            AuthSettings {
                roles_claim: "realm_access..roles".into(),
                ..base()
            },
            KeyError::InvalidClaimPath {
                setting: "roles_claim",
                path: "realm_access..roles".into(),
                reason: "it has an empty segment between dots",
            },
        ),
    ];
    for (settings, expected) in cases {
        assert_eq!(error(settings), expected);
    }
    assert!(Verifier::new(AuthSettings {
        leeway_seconds: 3600,
        ..base()
    })
    .is_ok());
}

#[test]
fn check_settings_lists_every_problem() {
    let s = AuthSettings {
        algorithms: vec!["none".into(), "HS256".into(), "RS256".into(), "XX1".into()],
        key: KeySource::Secret(b"short".to_vec()),
        issuer: Some(String::new()),
        audience: vec![],
        leeway_seconds: 99_999,
        user_claim: ".sub".into(),
        name_claim: "name".into(),
        roles_claim: "roles.".into(),
    };
    let messages = Verifier::check_settings(&s);
    let expected = [
        "\"none\" is never accepted",
        "unknown algorithm \"XX1\"",
        "secret is only 5 bytes",
        "RS256 cannot be verified with a shared secret",
        "leeway_seconds is 99999",
        "issuer is empty",
        "user_claim \".sub\"",
        "roles_claim \"roles.\"",
    ];
    assert_eq!(messages.len(), expected.len(), "{messages:#?}");
    for (message, fragment) in messages.iter().zip(expected) {
        assert!(message.contains(fragment), "{message:?} lacks {fragment:?}");
    }
    assert!(Verifier::check_settings(&hs_settings()).is_empty());
}

#[test]
fn verifier_can_be_shared_across_threads() {
    fn assert_shareable<T: Send + Sync + 'static>() {}
    assert_shareable::<Verifier>();
    let v = std::sync::Arc::new(verifier(hs_settings()));
    let token = hs256(&base_claims());
    let worker = {
        let v = v.clone();
        std::thread::spawn(move || v.verify(&token).map(|id| id.user.clone()))
    };
    assert_eq!(worker.join().unwrap(), Ok("alice".to_owned()));
}

#[test]
fn debug_output_never_shows_the_secret() {
    let s = hs_settings();
    let shown = format!("{s:?}");
    assert!(
        !shown.contains(std::str::from_utf8(SECRET).unwrap()),
        "{shown}"
    );
    assert!(shown.contains("redacted"), "{shown}");
    let v = verifier(s);
    assert!(!format!("{v:?}").contains(std::str::from_utf8(SECRET).unwrap()));
}
