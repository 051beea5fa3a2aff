//! Minted development tokens verify, and TTLs read as documented.

mod common;

use auth::{mint_hs256, parse_ttl, AuthSettings, MintError, MintRequest};
use common::*;

fn request() -> MintRequest {
    MintRequest {
        sub: "alice".into(),
        name: Some("Alice".into()),
        roles: vec!["admin".into(), "editor".into()],
        ttl_seconds: 3600,
        issuer: None,
        audience: None,
    }
}

#[test]
fn a_minted_token_round_trips_through_the_verifier() {
    let before = now();
    let token = mint_hs256(SECRET, &request()).unwrap();
    let identity = verifier(hs_settings()).verify(&token).unwrap();
    assert_eq!(identity.user, "alice");
    assert_eq!(identity.name, "Alice");
    assert_eq!(identity.roles, ["admin", "editor"]);
    assert!((before + 3600..=now() + 3600).contains(&identity.expires_at));
}

#[test]
fn issuer_and_audience_are_minted_when_asked() {
    let token = mint_hs256(
        SECRET,
        &MintRequest {
            issuer: Some("latch-dev".into()),
            audience: Some("latch".into()),
            ..request()
        },
    )
    .unwrap();
    let strict = verifier(AuthSettings {
        issuer: Some("latch-dev".into()),
        audience: vec!["latch".into()],
        ..hs_settings()
    });
    assert!(strict.verify(&token).is_ok());
    let plain = mint_hs256(SECRET, &request()).unwrap();
    assert!(strict.verify(&plain).is_err());
}

#[test]
fn optional_claims_are_left_out_when_empty() {
    let token = mint_hs256(
        SECRET,
        &MintRequest {
            name: None,
            roles: vec![],
            ..request()
        },
    )
    .unwrap();
    let claims: serde_json::Value = jsonwebtoken::dangerous::insecure_decode(&token)
        .unwrap()
        .claims;
    let mut names: Vec<&str> = claims
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    names.sort_unstable();
    assert_eq!(names, ["exp", "iat", "sub"]);
    let identity = verifier(hs_settings()).verify(&token).unwrap();
    assert_eq!(identity.name, "alice");
    assert!(identity.roles.is_empty());
}

#[test]
fn a_token_signed_with_another_secret_does_not_verify() {
    let token = mint_hs256(OTHER_SECRET, &request()).unwrap();
    assert_eq!(
        verifier(hs_settings()).verify(&token),
        Err(auth::AuthError::BadSignature)
    );
}

#[test]
fn minting_refuses_what_the_verifier_would_refuse() {
    assert_eq!(mint_hs256(b"", &request()), Err(MintError::EmptySecret));
    assert_eq!(
        mint_hs256(b"short", &request()),
        Err(MintError::SecretTooShort { len: 5 })
    );
    let nobody = MintRequest {
        sub: " ".into(),
        ..request()
    };
    assert_eq!(mint_hs256(SECRET, &nobody), Err(MintError::EmptySubject));
    let instant = MintRequest {
        ttl_seconds: 0,
        ..request()
    };
    assert_eq!(mint_hs256(SECRET, &instant), Err(MintError::ZeroTtl));
    let forever = MintRequest {
        ttl_seconds: u64::MAX,
        ..request()
    };
    assert_eq!(
        mint_hs256(SECRET, &forever),
        Err(MintError::TtlTooLarge(u64::MAX))
    );
}

#[test]
fn parse_ttl_table() {
    let ok = [
        ("90", 90),
        ("90s", 90),
        ("15m", 900),
        ("1h", 3_600),
        ("7d", 604_800),
        (" 2h ", 7_200),
        ("0090s", 90),
    ];
    for (text, seconds) in ok {
        assert_eq!(parse_ttl(text), Ok(seconds), "{text:?}");
    }
    let bad = [
        "",
        " ",
        "h",
        "s",
        "-5",
        "+5",
        "1.5h",
        "1 h",
        "1H",
        "1w",
        "1h30m",
        "ten",
        "0",
        "0s",
        "0d",
        "99999999999999999999",
        "999999999999999999d",
        "1hs",
        "١h",
    ];
    for text in bad {
        assert!(parse_ttl(text).is_err(), "{text:?} should be refused");
    }
    let message = parse_ttl("soon").unwrap_err();
    assert!(
        message.contains("\"soon\"") && message.contains("15m"),
        "{message}"
    );
}
