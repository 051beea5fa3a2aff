//! Reading one public key out of PEM text: `PUBLIC KEY` (SubjectPublicKeyInfo),
//! `RSA PUBLIC KEY` (PKCS#1) or the key inside a `CERTIFICATE`.
//!
//! The key's type comes from the algorithm and curve identifiers inside the DER, never from
//! the configured algorithms, so the allow-list cannot talk a key into a different family.

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;

use crate::der::{self, Reader};
use crate::error::KeyError;
use crate::key::{KeyKind, PublicKey};

const RSA_ENCRYPTION: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01];
const EC_PUBLIC_KEY: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01];
const CURVE_P256: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
const CURVE_P384: &[u8] = &[0x2b, 0x81, 0x04, 0x00, 0x22];
const ED25519: &[u8] = &[0x2b, 0x65, 0x70];

pub(crate) fn parse_public_key(pem: &[u8]) -> Result<PublicKey, KeyError> {
    let text = std::str::from_utf8(pem)
        .map_err(|_| KeyError::InvalidPem("the file is not text".to_owned()))?;
    let (label, der) = first_block(text)?;
    match label {
        "PUBLIC KEY" => subject_public_key_info(single_sequence(&der)?),
        "RSA PUBLIC KEY" => rsa_public_key(&der),
        "CERTIFICATE" => certificate(&der),
        other if other.contains("PRIVATE KEY") => Err(KeyError::PrivateKey),
        other => Err(KeyError::InvalidPem(format!(
            "a {other:?} block is not a public key; expected PUBLIC KEY, RSA PUBLIC KEY or CERTIFICATE"
        ))),
    }
}

/// Label and decoded body of the first PEM block; text around it is ignored as PEM allows.
fn first_block(text: &str) -> Result<(&str, Vec<u8>), KeyError> {
    let mut lines = text.lines().map(str::trim);
    let label = lines
        .by_ref()
        .find_map(|line| line.strip_prefix("-----BEGIN ")?.strip_suffix("-----"))
        .ok_or_else(|| {
            let hint = if text.trim_start().starts_with('{') {
                "; this looks like JSON, which belongs in jwks_file"
            } else {
                ""
            };
            KeyError::InvalidPem(format!("no -----BEGIN ...----- line found{hint}"))
        })?;
    let end = format!("-----END {label}-----");
    let mut body = String::new();
    let mut closed = false;
    for line in lines {
        if line == end {
            closed = true;
            break;
        }
        // RFC 1421 headers (e.g. "Proc-Type:") only occur in encrypted private keys.
        if !line.contains(':') {
            body.push_str(line);
        }
    }
    if !closed {
        return Err(KeyError::InvalidPem(format!("missing {end:?} line")));
    }
    let der = STANDARD
        .decode(body.as_bytes())
        .map_err(|_| KeyError::InvalidPem("the body is not valid base64".to_owned()))?;
    Ok((label, der))
}

fn malformed(what: &str) -> KeyError {
    KeyError::InvalidPem(format!("the {what} structure is malformed"))
}

fn single_sequence(der: &[u8]) -> Result<&[u8], KeyError> {
    der::single(der, der::SEQUENCE).ok_or_else(|| malformed("public key"))
}

/// `SEQUENCE { SEQUENCE { algorithm OID, parameters }, BIT STRING key }`, given its contents.
fn subject_public_key_info(contents: &[u8]) -> Result<PublicKey, KeyError> {
    let mut outer = Reader::new(contents);
    let (algorithm_id, bits) = outer
        .expect(der::SEQUENCE)
        .zip(outer.expect(der::BIT_STRING))
        .filter(|_| outer.is_empty())
        .ok_or_else(|| malformed("public key"))?;
    let key_bytes = der::bit_string_bytes(bits).ok_or_else(|| malformed("public key"))?;
    let mut algorithm = Reader::new(algorithm_id);
    let oid = algorithm
        .expect(der::OBJECT_ID)
        .ok_or_else(|| malformed("public key"))?;
    match oid {
        RSA_ENCRYPTION => rsa_public_key(key_bytes),
        EC_PUBLIC_KEY => {
            let curve = algorithm
                .expect(der::OBJECT_ID)
                .ok_or_else(|| KeyError::UnsupportedKey("EC key without a named curve".into()))?;
            let kind = match curve {
                CURVE_P256 => KeyKind::P256,
                CURVE_P384 => KeyKind::P384,
                other => {
                    return Err(KeyError::UnsupportedKey(format!(
                        "EC curve {}",
                        curve_name(other)
                    )))
                }
            };
            PublicKey::ec(kind, key_bytes).map_err(KeyError::InvalidKey)
        }
        ED25519 => PublicKey::ed25519(key_bytes).map_err(KeyError::InvalidKey),
        other => Err(KeyError::UnsupportedKey(format!(
            "key algorithm {}",
            der::oid_to_string(other)
        ))),
    }
}

fn curve_name(oid: &[u8]) -> String {
    match oid {
        [0x2b, 0x81, 0x04, 0x00, 0x23] => "P-521".to_owned(),
        [0x2b, 0x81, 0x04, 0x00, 0x0a] => "secp256k1".to_owned(),
        other => der::oid_to_string(other),
    }
}

/// PKCS#1 `RSAPublicKey ::= SEQUENCE { modulus INTEGER, publicExponent INTEGER }`.
fn rsa_public_key(der: &[u8]) -> Result<PublicKey, KeyError> {
    let mut fields = Reader::new(single_sequence(der)?);
    let (n, e) = fields
        .expect(der::INTEGER)
        .zip(fields.expect(der::INTEGER))
        .filter(|_| fields.is_empty())
        .ok_or_else(|| malformed("RSA public key"))?;
    PublicKey::rsa(n, e).map_err(KeyError::InvalidKey)
}

/// The SubjectPublicKeyInfo of an X.509 certificate: the seventh TBSCertificate field, or the
/// sixth when the optional version is absent. The certificate's own validity is not judged:
/// it is only a container for the key the operator chose to trust.
fn certificate(der: &[u8]) -> Result<PublicKey, KeyError> {
    let cert = single_sequence(der).map_err(|_| malformed("certificate"))?;
    let tbs = Reader::new(cert)
        .expect(der::SEQUENCE)
        .ok_or_else(|| malformed("certificate"))?;
    let mut fields = Reader::new(tbs);
    let mut element = fields.next_element();
    if matches!(element, Some((der::CONTEXT_0, _))) {
        element = fields.next_element();
    }
    // Skip serial number, signature algorithm, issuer, validity and subject.
    for _ in 0..5 {
        element.ok_or_else(|| malformed("certificate"))?;
        element = fields.next_element();
    }
    match element {
        Some((der::SEQUENCE, spki)) => subject_public_key_info(spki),
        _ => Err(malformed("certificate")),
    }
}
