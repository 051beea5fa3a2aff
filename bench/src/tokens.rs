//! Keys and tokens for the benchmark users. Key pairs are made fresh with `openssl` for each
//! run, so no key material lives in the repository.

use std::path::{Path, PathBuf};
use std::process::Command;

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde::Serialize;

use crate::BenchError;

/// The HS256 secret of the benchmark's Latch instances.
pub const SECRET: &str = "bench-secret-long-enough-for-hs256-0123456789";

/// Token lifetime: longer than any run.
pub const TTL_SECONDS: u64 = 4 * 3600;

/// A signing key of one algorithm family.
pub enum Signer {
    Hs256,
    Rs256(EncodingKey),
    Es256(EncodingKey),
}

/// A key pair written by `openssl`.
pub struct KeyPair {
    pub private: PathBuf,
    pub public: PathBuf,
}

#[derive(Serialize)]
struct Claims<'a> {
    sub: &'a str,
    name: &'a str,
    iat: u64,
    exp: u64,
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl Signer {
    /// The algorithm name as Latch's `auth.algorithms` spells it.
    pub fn algorithm(&self) -> &'static str {
        match self {
            Signer::Hs256 => "HS256",
            Signer::Rs256(_) => "RS256",
            Signer::Es256(_) => "ES256",
        }
    }

    /// Loads the private key of `pair` for `algorithm` (`RS256` or `ES256`).
    pub fn from_pair(algorithm: &str, pair: &KeyPair) -> Result<Signer, BenchError> {
        let pem = std::fs::read(&pair.private)
            .map_err(|e| BenchError::io(pair.private.display().to_string(), e))?;
        let bad =
            |e: jsonwebtoken::errors::Error| BenchError::Token(format!("{algorithm} key: {e}"));
        match algorithm {
            "RS256" => Ok(Signer::Rs256(EncodingKey::from_rsa_pem(&pem).map_err(bad)?)),
            "ES256" => Ok(Signer::Es256(EncodingKey::from_ec_pem(&pem).map_err(bad)?)),
            other => Err(BenchError::Token(format!("no key pair for {other}"))),
        }
    }

    /// A token for user `sub`.
    pub fn mint(&self, sub: &str) -> Result<String, BenchError> {
        let (alg, key) = match self {
            Signer::Hs256 => {
                return auth::mint_hs256(
                    SECRET.as_bytes(),
                    &auth::MintRequest {
                        sub: sub.to_string(),
                        name: Some(format!("User {sub}")),
                        roles: Vec::new(),
                        ttl_seconds: TTL_SECONDS,
                        issuer: None,
                        audience: None,
                    },
                )
                .map_err(|e| BenchError::Token(e.to_string()))
            }
            Signer::Rs256(key) => (Algorithm::RS256, key),
            Signer::Es256(key) => (Algorithm::ES256, key),
        };
        let name = format!("User {sub}");
        let iat = now();
        let claims = Claims {
            sub,
            name: &name,
            iat,
            exp: iat + TTL_SECONDS,
        };
        jsonwebtoken::encode(&Header::new(alg), &claims, key)
            .map_err(|e| BenchError::Token(format!("signing {}: {e}", self.algorithm())))
    }
}

fn openssl(args: &[&str]) -> Result<(), BenchError> {
    let out = Command::new("openssl")
        .args(args)
        .output()
        .map_err(|e| BenchError::io("running openssl", e))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(BenchError::Token(format!(
            "openssl {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        )))
    }
}

/// Generates a key pair for `algorithm` (`RS256`: RSA 2048, `ES256`: P-256) into `dir`.
pub fn generate(dir: &Path, algorithm: &str) -> Result<KeyPair, BenchError> {
    let stem = algorithm.to_ascii_lowercase();
    let private = dir.join(format!("{stem}.key.pem"));
    let public = dir.join(format!("{stem}.pub.pem"));
    let private_s = private.display().to_string();
    let public_s = public.display().to_string();
    match algorithm {
        // PKCS#1 ("traditional"), which the RSA signer reads.
        "RS256" => openssl(&["genrsa", "-traditional", "-out", &private_s, "2048"])?,
        "ES256" => openssl(&[
            "genpkey",
            "-algorithm",
            "EC",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-out",
            &private_s,
        ])?,
        other => {
            return Err(BenchError::Token(format!(
                "cannot generate keys for {other}"
            )))
        }
    }
    openssl(&["pkey", "-in", &private_s, "-pubout", "-out", &public_s])?;
    Ok(KeyPair { private, public })
}
