//! Shared fixtures for the auth integration tests: keys, token builders and settings.
#![allow(dead_code)] // each test binary uses a different subset

use std::time::{SystemTime, UNIX_EPOCH};

use auth::{AuthSettings, KeySource, Verifier};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{json, Value};

pub const SECRET: &[u8] = b"test-secret-that-is-long-enough-for-hs512!";
pub const OTHER_SECRET: &[u8] = b"another-secret-that-is-long-enough-for-hs";

pub const RSA_PRIVATE: &[u8] = include_bytes!("../keys/rsa_private.pem");
pub const RSA_PUBLIC: &[u8] = include_bytes!("../keys/rsa_public.pem");
pub const RSA_PUBLIC_PKCS1: &[u8] = include_bytes!("../keys/rsa_public_pkcs1.pem");
pub const RSA_CERT: &[u8] = include_bytes!("../keys/rsa_cert.pem");
pub const RSA_OTHER_PRIVATE: &[u8] = include_bytes!("../keys/rsa_other_private.pem");
pub const RSA_OTHER_PUBLIC: &[u8] = include_bytes!("../keys/rsa_other_public.pem");
pub const RSA1024_PUBLIC: &[u8] = include_bytes!("../keys/rsa1024_public.pem");
pub const EC256_PRIVATE: &[u8] = include_bytes!("../keys/ec256_private.pem");
pub const EC256_PUBLIC: &[u8] = include_bytes!("../keys/ec256_public.pem");
pub const EC384_PRIVATE: &[u8] = include_bytes!("../keys/ec384_private.pem");
pub const EC384_PUBLIC: &[u8] = include_bytes!("../keys/ec384_public.pem");
pub const EC521_PUBLIC: &[u8] = include_bytes!("../keys/ec521_public.pem");
pub const ED25519_PRIVATE: &[u8] = include_bytes!("../keys/ed25519_private.pem");
pub const ED25519_PUBLIC: &[u8] = include_bytes!("../keys/ed25519_public.pem");
pub const JWKS: &str = include_str!("../keys/jwks.json");

pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

pub fn hmac_key(secret: &[u8]) -> EncodingKey {
    EncodingKey::from_secret(secret)
}

pub fn rsa_key() -> EncodingKey {
    EncodingKey::from_rsa_pem(RSA_PRIVATE).unwrap()
}

pub fn rsa_other_key() -> EncodingKey {
    EncodingKey::from_rsa_pem(RSA_OTHER_PRIVATE).unwrap()
}

pub fn ec256_key() -> EncodingKey {
    EncodingKey::from_ec_pem(EC256_PRIVATE).unwrap()
}

pub fn ec384_key() -> EncodingKey {
    EncodingKey::from_ec_pem(EC384_PRIVATE).unwrap()
}

pub fn ed25519_key() -> EncodingKey {
    EncodingKey::from_ed_pem(ED25519_PRIVATE).unwrap()
}

/// Claims every valid token carries: alice, expiring in ten minutes.
pub fn base_claims() -> Value {
    json!({ "sub": "alice", "exp": now() + 600 })
}

/// `base_claims` with `extra` merged over it (a `null` removes a claim).
pub fn claims_with(extra: Value) -> Value {
    let mut claims = base_claims();
    let map = claims.as_object_mut().unwrap();
    for (name, value) in extra.as_object().unwrap() {
        if value.is_null() {
            map.remove(name);
        } else {
            map.insert(name.clone(), value.clone());
        }
    }
    claims
}

pub fn sign(alg: Algorithm, key: &EncodingKey, kid: Option<&str>, claims: &Value) -> String {
    let mut header = Header::new(alg);
    header.kid = kid.map(str::to_owned);
    jsonwebtoken::encode(&header, claims, key).unwrap()
}

pub fn hs256(claims: &Value) -> String {
    sign(Algorithm::HS256, &hmac_key(SECRET), None, claims)
}

pub fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// A token assembled by hand, for headers no honest library would produce.
pub fn raw_token(header: &Value, claims: &Value, signature: &str) -> String {
    format!(
        "{}.{}.{}",
        b64(header.to_string().as_bytes()),
        b64(claims.to_string().as_bytes()),
        signature
    )
}

pub fn settings(algorithms: &[&str], key: KeySource) -> AuthSettings {
    AuthSettings {
        algorithms: algorithms.iter().map(|a| (*a).to_owned()).collect(),
        key,
        ..AuthSettings::default()
    }
}

pub fn hs_settings() -> AuthSettings {
    settings(&["HS256"], KeySource::Secret(SECRET.to_vec()))
}

pub fn verifier(settings: AuthSettings) -> Verifier {
    Verifier::new(settings).unwrap()
}
