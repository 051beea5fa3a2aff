//! Time, issuer and audience checks, and how claims become an Identity.

mod common;

use auth::{AuthError, AuthSettings, Identity};
use common::*;
use serde_json::json;

fn with_leeway(leeway_seconds: u64) -> AuthSettings {
    AuthSettings {
        leeway_seconds,
        ..hs_settings()
    }
}

#[test]
fn expired_token_is_refused() {
    let v = verifier(with_leeway(30));
    let token = hs256(&claims_with(json!({ "exp": now() - 120 })));
    assert_eq!(v.verify(&token), Err(AuthError::Expired));
}

#[test]
fn leeway_forgives_a_recent_expiry_and_only_that() {
    let token = hs256(&claims_with(json!({ "exp": now() - 10 })));
    assert!(verifier(with_leeway(30)).verify(&token).is_ok());
    assert_eq!(
        verifier(with_leeway(0)).verify(&token),
        Err(AuthError::Expired)
    );
}

#[test]
fn token_not_valid_yet_is_refused() {
    let v = verifier(with_leeway(30));
    let token = hs256(&claims_with(json!({ "nbf": now() + 120 })));
    assert_eq!(v.verify(&token), Err(AuthError::NotYetValid));
}

#[test]
fn leeway_forgives_a_near_future_nbf_and_only_that() {
    let token = hs256(&claims_with(json!({ "nbf": now() + 10 })));
    assert!(verifier(with_leeway(30)).verify(&token).is_ok());
    assert_eq!(
        verifier(with_leeway(0)).verify(&token),
        Err(AuthError::NotYetValid)
    );
}

#[test]
fn nbf_in_the_past_is_fine() {
    let token = hs256(&claims_with(json!({ "nbf": now() - 60 })));
    assert!(verifier(with_leeway(0)).verify(&token).is_ok());
}

#[test]
fn exp_is_required_and_must_be_a_number() {
    let v = verifier(hs_settings());
    let no_exp = hs256(&claims_with(json!({ "exp": null })));
    assert_eq!(
        v.verify(&no_exp),
        Err(AuthError::MissingClaim("exp".into()))
    );
    let text_exp = hs256(&claims_with(json!({ "exp": "tomorrow" })));
    assert_eq!(
        v.verify(&text_exp),
        Err(AuthError::MissingClaim("exp".into()))
    );
}

#[test]
fn expires_at_is_the_exp_claim() {
    let exp = now() + 1234;
    let token = hs256(&claims_with(json!({ "exp": exp })));
    assert_eq!(
        verifier(hs_settings()).verify(&token).unwrap().expires_at,
        exp
    );
}

#[test]
fn issuer_is_checked_when_configured() {
    let v = verifier(AuthSettings {
        issuer: Some("https://idp.example".into()),
        ..hs_settings()
    });
    let good = hs256(&claims_with(json!({ "iss": "https://idp.example" })));
    assert!(v.verify(&good).is_ok());
    let wrong = hs256(&claims_with(json!({ "iss": "https://evil.example" })));
    assert_eq!(v.verify(&wrong), Err(AuthError::WrongIssuer));
    let missing = hs256(&base_claims());
    assert_eq!(
        v.verify(&missing),
        Err(AuthError::MissingClaim("iss".into()))
    );
}

#[test]
fn issuer_is_ignored_when_not_configured() {
    let token = hs256(&claims_with(json!({ "iss": "anyone" })));
    assert!(verifier(hs_settings()).verify(&token).is_ok());
}

#[test]
fn audience_is_checked_when_configured() {
    let v = verifier(AuthSettings {
        audience: vec!["latch".into(), "portal".into()],
        ..hs_settings()
    });
    for aud in [json!("latch"), json!("portal"), json!(["other", "latch"])] {
        let token = hs256(&claims_with(json!({ "aud": aud })));
        assert!(v.verify(&token).is_ok(), "{aud}");
    }
    for aud in [json!("other"), json!(["other", "more"]), json!([])] {
        let token = hs256(&claims_with(json!({ "aud": aud })));
        assert_eq!(v.verify(&token), Err(AuthError::WrongAudience), "{aud}");
    }
    let missing = hs256(&base_claims());
    assert_eq!(
        v.verify(&missing),
        Err(AuthError::MissingClaim("aud".into()))
    );
}

#[test]
fn audience_is_ignored_when_not_configured() {
    let token = hs256(&claims_with(json!({ "aud": "someone-else" })));
    assert!(verifier(hs_settings()).verify(&token).is_ok());
}

#[test]
fn a_full_identity_from_the_default_claims() {
    let token = hs256(&claims_with(json!({
        "exp": now() + 60, "name": "Alice Liddell", "roles": ["editor", "admin"]
    })));
    let identity = verifier(hs_settings()).verify(&token).unwrap();
    assert_eq!(identity.user, "alice");
    assert_eq!(identity.name, "Alice Liddell");
    assert_eq!(identity.roles, ["editor", "admin"]);
}

#[test]
fn dotted_paths_reach_into_nested_claims() {
    let v = verifier(AuthSettings {
        user_claim: "profile.id".into(),
        name_claim: "profile.display".into(),
        roles_claim: "realm_access.roles".into(),
        ..hs_settings()
    });
    let token = hs256(&claims_with(json!({
        "profile": { "id": "u-17", "display": "Bob" },
        "realm_access": { "roles": ["admin"] }
    })));
    let identity = v.verify(&token).unwrap();
    assert_eq!(identity.user, "u-17");
    assert_eq!(identity.name, "Bob");
    assert_eq!(identity.roles, ["admin"]);
}

#[test]
fn a_top_level_claim_named_with_dots_wins_over_the_path() {
    let v = verifier(AuthSettings {
        roles_claim: "https://app.example/roles".into(),
        ..hs_settings()
    });
    let token = hs256(&claims_with(
        json!({ "https://app.example/roles": ["auditor"] }),
    ));
    assert_eq!(v.verify(&token).unwrap().roles, ["auditor"]);
}

#[test]
fn roles_may_be_one_string_split_on_spaces_and_commas() {
    let token = hs256(&claims_with(
        json!({ "roles": " admin editor,viewer ,, reader " }),
    ));
    assert_eq!(
        verifier(hs_settings()).verify(&token).unwrap().roles,
        ["admin", "editor", "viewer", "reader"]
    );
}

#[test]
fn roles_keep_only_usable_strings() {
    let token = hs256(&claims_with(
        json!({ "roles": ["admin", 7, "", null, "a\nb", " ed "] }),
    ));
    assert_eq!(
        verifier(hs_settings()).verify(&token).unwrap().roles,
        ["admin", "ed"]
    );
}

#[test]
fn missing_or_odd_roles_are_no_roles() {
    let v = verifier(hs_settings());
    for roles in [json!(null), json!(42), json!({ "admin": true })] {
        let token = hs256(&claims_with(json!({ "roles": roles })));
        assert!(v.verify(&token).unwrap().roles.is_empty(), "{roles}");
    }
}

#[test]
fn name_falls_back_to_the_user_id() {
    let v = verifier(hs_settings());
    for name in [
        json!(null),
        json!(""),
        json!("  "),
        json!(12),
        json!("a\r\nX-Evil: 1"),
    ] {
        let token = hs256(&claims_with(json!({ "name": name })));
        assert_eq!(v.verify(&token).unwrap().name, "alice", "{name}");
    }
}

#[test]
fn a_numeric_user_id_is_stringified() {
    let token = hs256(&claims_with(json!({ "sub": 4711 })));
    assert_eq!(verifier(hs_settings()).verify(&token).unwrap().user, "4711");
}

#[test]
fn user_claim_must_be_a_usable_value() {
    let v = verifier(hs_settings());
    for sub in [
        json!(null),
        json!(""),
        json!("   "),
        json!(true),
        json!("al\nice"),
    ] {
        let token = hs256(&claims_with(json!({ "sub": sub })));
        assert_eq!(
            v.verify(&token),
            Err(AuthError::MissingClaim("sub".into())),
            "{sub}"
        );
    }
}

#[test]
fn a_user_claim_holding_a_list_or_object_is_not_a_user() {
    let v = verifier(AuthSettings {
        user_claim: "uid".into(),
        ..hs_settings()
    });
    for uid in [json!(["alice"]), json!({ "id": "alice" })] {
        let token = hs256(&claims_with(json!({ "uid": uid })));
        assert_eq!(
            v.verify(&token),
            Err(AuthError::MissingClaim("uid".into())),
            "{uid}"
        );
    }
}

#[test]
fn missing_custom_user_claim_names_the_configured_path() {
    let v = verifier(AuthSettings {
        user_claim: "profile.id".into(),
        ..hs_settings()
    });
    let token = hs256(&claims_with(json!({ "profile": { "other": 1 } })));
    assert_eq!(
        v.verify(&token),
        Err(AuthError::MissingClaim("profile.id".into()))
    );
}

#[test]
fn has_any_role_matches_exactly() {
    let identity = Identity {
        user: "alice".into(),
        name: "Alice".into(),
        roles: vec!["editor".into(), "admin".into()],
        expires_at: 0,
        sign_in: None,
        renewal: None,
        header_values: Default::default(),
    };
    assert!(identity.has_any_role(&["viewer".into(), "admin".into()]));
    assert!(!identity.has_any_role(&["Admin".into()]));
    assert!(!identity.has_any_role(&[]));
}

#[test]
fn identity_serializes_with_its_field_names() {
    let identity = Identity {
        user: "alice".into(),
        name: "Alice".into(),
        roles: vec!["admin".into()],
        expires_at: 99,
        sign_in: None,
        renewal: None,
        header_values: Default::default(),
    };
    assert_eq!(
        serde_json::to_value(&identity).unwrap(),
        json!({ "user": "alice", "name": "Alice", "roles": ["admin"], "expires_at": 99 })
    );
}
