//! Verification keys and the algorithms each may verify.
//!
//! A key's type fixes its algorithms: a secret only HS*, RSA only RS*/PS*, P-256 only ES256,
//! P-384 only ES384, Ed25519 only EdDSA. Keeping that binding here is what rules out algorithm
//! confusion (for example an RSA public key misused as an HMAC secret). Every key is checked
//! when it is loaded, so a broken key is a config error and not a stream of 401s.

use jsonwebtoken::{Algorithm, DecodingKey};

/// Below this an HMAC secret can be brute-forced offline from one captured token.
pub const MIN_SECRET_BYTES: usize = 32;

const MIN_RSA_BITS: usize = 2048;
/// The largest modulus the RSA implementation accepts; larger keys would fail every token.
const MAX_RSA_BITS: usize = 4096;
const MAX_RSA_EXPONENT: u64 = (1 << 33) - 1;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum KeyKind {
    Secret,
    Rsa,
    P256,
    P384,
    Ed25519,
}

impl KeyKind {
    pub(crate) fn algorithms(self) -> &'static [Algorithm] {
        match self {
            KeyKind::Secret => &[Algorithm::HS256, Algorithm::HS384, Algorithm::HS512],
            KeyKind::Rsa => &[
                Algorithm::RS256,
                Algorithm::RS384,
                Algorithm::RS512,
                Algorithm::PS256,
                Algorithm::PS384,
                Algorithm::PS512,
            ],
            KeyKind::P256 => &[Algorithm::ES256],
            KeyKind::P384 => &[Algorithm::ES384],
            KeyKind::Ed25519 => &[Algorithm::EdDSA],
        }
    }

    pub(crate) fn describe(self) -> &'static str {
        match self {
            KeyKind::Secret => "a shared secret",
            KeyKind::Rsa => "an RSA key",
            KeyKind::P256 => "an EC P-256 key",
            KeyKind::P384 => "an EC P-384 key",
            KeyKind::Ed25519 => "an Ed25519 key",
        }
    }

    /// Size in bytes of one EC coordinate.
    fn coordinate_len(self) -> usize {
        match self {
            KeyKind::P384 => 48,
            _ => 32,
        }
    }
}

/// Why a secret cannot be used; shared by verification settings and minting.
pub(crate) enum SecretProblem {
    Empty,
    TooShort(usize),
}

pub(crate) fn check_secret(secret: &[u8]) -> Result<(), SecretProblem> {
    match secret.len() {
        0 => Err(SecretProblem::Empty),
        len if len < MIN_SECRET_BYTES => Err(SecretProblem::TooShort(len)),
        _ => Ok(()),
    }
}

/// A public key that has passed every check that can be made without a token.
pub(crate) struct PublicKey {
    pub(crate) kind: KeyKind,
    pub(crate) key: DecodingKey,
}

impl PublicKey {
    /// From big-endian modulus and exponent, as found in PKCS#1 and in a JWK.
    pub(crate) fn rsa(modulus: &[u8], exponent: &[u8]) -> Result<PublicKey, String> {
        let n = strip_leading_zeros(modulus);
        let e = strip_leading_zeros(exponent);
        let bits = bit_len(n);
        if bits < MIN_RSA_BITS {
            return Err(format!(
                "RSA key is {bits} bits; at least {MIN_RSA_BITS} are required"
            ));
        }
        if bits > MAX_RSA_BITS {
            return Err(format!(
                "RSA key is {bits} bits; at most {MAX_RSA_BITS} are supported"
            ));
        }
        if n.last().is_some_and(|b| b & 1 == 0) {
            return Err("RSA modulus is even".to_owned());
        }
        let exponent_value = if e.len() <= 8 {
            e.iter().fold(0u64, |acc, b| (acc << 8) | u64::from(*b))
        } else {
            u64::MAX
        };
        if exponent_value < 3 || exponent_value % 2 == 0 || exponent_value > MAX_RSA_EXPONENT {
            return Err("RSA public exponent is not an odd number between 3 and 2^33".to_owned());
        }
        Ok(PublicKey {
            kind: KeyKind::Rsa,
            key: DecodingKey::from_rsa_raw_components(n, e),
        })
    }

    /// From a SEC1 point, compressed or uncompressed.
    pub(crate) fn ec(kind: KeyKind, point: &[u8]) -> Result<PublicKey, String> {
        let (alg, curve) = match kind {
            KeyKind::P256 => (Algorithm::ES256, "P-256"),
            KeyKind::P384 => (Algorithm::ES384, "P-384"),
            _ => return Err(format!("{} is not an EC key", kind.describe())),
        };
        let coordinate = kind.coordinate_len();
        let well_formed = match point.first() {
            Some(0x04) => point.len() == 1 + 2 * coordinate,
            Some(0x02 | 0x03) => point.len() == 1 + coordinate,
            _ => false,
        };
        if !well_formed {
            return Err(format!(
                "EC point of {} bytes is not a {curve} point",
                point.len()
            ));
        }
        let key = DecodingKey::from_ec_der(point);
        if !loads(&key, alg) {
            return Err(format!("EC point is not on the {curve} curve"));
        }
        Ok(PublicKey { kind, key })
    }

    /// From the affine coordinates of a JWK.
    pub(crate) fn ec_coordinates(kind: KeyKind, x: &[u8], y: &[u8]) -> Result<PublicKey, String> {
        let coordinate = kind.coordinate_len();
        if x.len() != coordinate || y.len() != coordinate {
            return Err(format!(
                "EC coordinates must be {coordinate} bytes each, found {} and {}",
                x.len(),
                y.len()
            ));
        }
        let mut point = Vec::with_capacity(1 + 2 * coordinate);
        point.push(0x04);
        point.extend_from_slice(x);
        point.extend_from_slice(y);
        PublicKey::ec(kind, &point)
    }

    pub(crate) fn ed25519(raw: &[u8]) -> Result<PublicKey, String> {
        if raw.len() != 32 {
            return Err(format!("Ed25519 key must be 32 bytes, found {}", raw.len()));
        }
        let key = DecodingKey::from_ed_der(raw);
        if !loads(&key, Algorithm::EdDSA) {
            return Err("Ed25519 key is not a valid curve point".to_owned());
        }
        Ok(PublicKey {
            kind: KeyKind::Ed25519,
            key,
        })
    }
}

/// Whether the crypto backend accepts the key. The backend parses EC and Ed keys when it
/// builds a verifier, so a verification attempt with an empty signature tells a bad key
/// (an error) from a good one (a plain `false`).
fn loads(key: &DecodingKey, alg: Algorithm) -> bool {
    jsonwebtoken::crypto::verify("", b"", key, alg).is_ok()
}

fn strip_leading_zeros(bytes: &[u8]) -> &[u8] {
    let start = bytes.iter().position(|b| *b != 0).unwrap_or(bytes.len());
    &bytes[start..]
}

fn bit_len(big_endian: &[u8]) -> usize {
    match big_endian.first() {
        None => 0,
        Some(first) => big_endian.len() * 8 - first.leading_zeros() as usize,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn odd_modulus(bits: usize) -> Vec<u8> {
        let mut n = vec![0xffu8; bits / 8];
        n[0] = 0x80;
        n
    }

    #[test]
    fn rsa_size_and_exponent_limits() {
        assert!(PublicKey::rsa(&odd_modulus(2048), &[1, 0, 1]).is_ok());
        assert!(
            PublicKey::rsa(&[&[0u8, 0][..], &odd_modulus(2048)].concat(), &[0, 1, 0, 1]).is_ok()
        );
        let small = PublicKey::rsa(&odd_modulus(1024), &[1, 0, 1])
            .err()
            .unwrap();
        assert!(small.contains("1024 bits"), "{small}");
        assert!(PublicKey::rsa(&odd_modulus(8192), &[1, 0, 1]).is_err());
        let mut even = odd_modulus(2048);
        *even.last_mut().unwrap() = 0xfe;
        assert!(PublicKey::rsa(&even, &[1, 0, 1]).is_err());
        assert!(PublicKey::rsa(&odd_modulus(2048), &[1]).is_err());
        assert!(PublicKey::rsa(&odd_modulus(2048), &[4]).is_err());
        assert!(PublicKey::rsa(&odd_modulus(2048), &[]).is_err());
        assert!(PublicKey::rsa(&odd_modulus(2048), &[0xff; 9]).is_err());
    }

    #[test]
    fn ec_points_must_fit_the_curve() {
        assert!(PublicKey::ec(KeyKind::P256, &[0x04; 65]).is_err());
        assert!(PublicKey::ec(KeyKind::P256, &[0x04; 97]).is_err());
        assert!(PublicKey::ec(KeyKind::P384, &[0x05; 97]).is_err());
        assert!(PublicKey::ec_coordinates(KeyKind::P256, &[1; 31], &[1; 32]).is_err());
    }

    #[test]
    fn ed25519_length_is_checked_before_the_backend_sees_it() {
        assert!(PublicKey::ed25519(&[1; 31]).is_err());
        assert!(PublicKey::ed25519(&[1; 33]).is_err());
    }

    #[test]
    fn secret_length() {
        assert!(matches!(check_secret(b""), Err(SecretProblem::Empty)));
        assert!(matches!(
            check_secret(&[7; 31]),
            Err(SecretProblem::TooShort(31))
        ));
        assert!(check_secret(&[7; 32]).is_ok());
    }
}
