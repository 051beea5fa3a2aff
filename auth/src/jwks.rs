//! Reading a JSON Web Key Set into verification keys, and choosing the key for a token.
//!
//! Keys that cannot serve the allowed algorithms (encryption keys, unsupported curves,
//! symmetric keys, an `alg` outside the allow-list) are skipped, since real IdP key sets mix
//! them in. A key meant for signing that is itself broken is an error: the operator should
//! hear about it now rather than see its tokens fail later.

use base64::alphabet;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use base64::Engine as _;
use jsonwebtoken::{Algorithm, DecodingKey};
use serde_json::{Map, Value};

use crate::algorithm;
use crate::error::{AuthError, KeyError};
use crate::key::{KeyKind, PublicKey};

/// JWK members are base64url without padding, but some publishers pad; both are read.
const JWK_BASE64: GeneralPurpose = GeneralPurpose::new(
    &alphabet::URL_SAFE,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

#[derive(Debug)]
pub(crate) struct SetKey {
    pub(crate) kid: Option<String>,
    /// The allowed algorithms this key may verify: its type's, narrowed by its own `alg`.
    algorithms: Vec<Algorithm>,
    key: DecodingKey,
}

/// Every usable key in `document` for the `allowed` algorithms. An empty result without
/// errors means the set holds nothing usable, which the caller reports with context.
pub(crate) fn parse(document: &str, allowed: &[Algorithm]) -> Result<Vec<SetKey>, Vec<KeyError>> {
    let root: Value =
        serde_json::from_str(document).map_err(|e| vec![KeyError::InvalidJwks(e.to_string())])?;
    let entries: Vec<&Value> = match &root {
        Value::Object(map) if map.contains_key("kty") => vec![&root],
        Value::Object(map) => match map.get("keys") {
            Some(Value::Array(keys)) => keys.iter().collect(),
            _ => {
                return Err(vec![KeyError::InvalidJwks(
                    "it has no \"keys\" array".to_owned(),
                )])
            }
        },
        _ => {
            return Err(vec![KeyError::InvalidJwks(
                "it is not a JSON object".to_owned(),
            )])
        }
    };
    let mut keys = Vec::new();
    let mut errors = Vec::new();
    for (index, entry) in entries.into_iter().enumerate() {
        match entry_key(entry, allowed) {
            Ok(Some(key)) => keys.push(key),
            Ok(None) => {}
            Err(reason) => errors.push(KeyError::InvalidJwk {
                key: describe(index, entry),
                reason,
            }),
        }
    }
    if errors.is_empty() {
        Ok(keys)
    } else {
        Err(errors)
    }
}

fn describe(index: usize, entry: &Value) -> String {
    match entry.get("kid").and_then(Value::as_str) {
        Some(kid) => format!("key #{} (kid {kid:?})", index + 1),
        None => format!("key #{}", index + 1),
    }
}

/// `Ok(None)` for a key that is fine but of no use here.
fn entry_key(entry: &Value, allowed: &[Algorithm]) -> Result<Option<SetKey>, String> {
    let Value::Object(jwk) = entry else {
        return Err("is not a JSON object".to_owned());
    };
    let kid = match jwk.get("kid") {
        None | Some(Value::Null) => None,
        Some(Value::String(kid)) => Some(kid.clone()),
        Some(_) => return Err("kid is not a string".to_owned()),
    };
    if optional_str(jwk, "use")?.is_some_and(|usage| usage != "sig") {
        return Ok(None);
    }
    if let Some(ops) = jwk.get("key_ops") {
        let verifies = ops
            .as_array()
            .is_some_and(|ops| ops.iter().any(|op| op.as_str() == Some("verify")));
        if !verifies {
            return Ok(None);
        }
    }
    let kty = optional_str(jwk, "kty")?.ok_or("kty is missing")?;
    let curve = optional_str(jwk, "crv")?;
    let kind = match (kty, curve) {
        ("RSA", _) => KeyKind::Rsa,
        ("EC", Some("P-256")) => KeyKind::P256,
        ("EC", Some("P-384")) => KeyKind::P384,
        ("OKP", Some("Ed25519")) => KeyKind::Ed25519,
        _ => return Ok(None),
    };
    let own_algorithms: Vec<Algorithm> = match optional_str(jwk, "alg")? {
        None => kind.algorithms().to_vec(),
        Some(name) => match algorithm::parse(name) {
            Some(alg) if kind.algorithms().contains(&alg) => vec![alg],
            Some(alg) => {
                return Err(format!(
                    "alg {} does not fit {}",
                    algorithm::name(alg),
                    kind.describe()
                ))
            }
            None => return Ok(None),
        },
    };
    let algorithms: Vec<Algorithm> = own_algorithms
        .into_iter()
        .filter(|alg| allowed.contains(alg))
        .collect();
    if algorithms.is_empty() {
        return Ok(None);
    }
    let public = match kind {
        KeyKind::Rsa => PublicKey::rsa(&member(jwk, "n")?, &member(jwk, "e")?)?,
        KeyKind::P256 | KeyKind::P384 => {
            PublicKey::ec_coordinates(kind, &member(jwk, "x")?, &member(jwk, "y")?)?
        }
        KeyKind::Ed25519 => PublicKey::ed25519(&member(jwk, "x")?)?,
        KeyKind::Secret => return Ok(None),
    };
    Ok(Some(SetKey {
        kid,
        algorithms,
        key: public.key,
    }))
}

fn optional_str<'a>(jwk: &'a Map<String, Value>, name: &str) -> Result<Option<&'a str>, String> {
    match jwk.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(value)) => Ok(Some(value)),
        Some(_) => Err(format!("{name} is not a string")),
    }
}

fn member(jwk: &Map<String, Value>, name: &str) -> Result<Vec<u8>, String> {
    let encoded = optional_str(jwk, name)?.ok_or_else(|| format!("{name} is missing"))?;
    JWK_BASE64
        .decode(encoded)
        .map_err(|_| format!("{name} is not base64url"))
}

/// The key that must verify a token with header `alg` and `kid`.
///
/// A `kid` must name a key in the set. Without one, the token is accepted only if exactly one
/// key could verify its algorithm; guessing among several would make rotation ambiguous.
pub(crate) fn select<'k>(
    keys: &'k [SetKey],
    alg: Algorithm,
    kid: Option<&str>,
) -> Result<&'k DecodingKey, AuthError> {
    match kid {
        Some(kid) => {
            let mut named = keys
                .iter()
                .filter(|k| k.kid.as_deref() == Some(kid))
                .peekable();
            if named.peek().is_none() {
                return Err(AuthError::UnknownKey);
            }
            named
                .find(|k| k.algorithms.contains(&alg))
                .map(|k| &k.key)
                .ok_or_else(|| AuthError::AlgorithmNotAllowed(algorithm::name(alg).to_owned()))
        }
        None => {
            let mut fitting = keys.iter().filter(|k| k.algorithms.contains(&alg));
            match (fitting.next(), fitting.next()) {
                (Some(only), None) => Ok(&only.key),
                _ => Err(AuthError::UnknownKey),
            }
        }
    }
}
