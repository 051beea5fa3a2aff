//! The raw cost of one token verification, per algorithm, measured in this process with the
//! same `auth::Verifier` the proxy uses. Every token is distinct, so a verified-token cache
//! (if the verifier has one) never answers and the figure is the full signature check.

use std::time::Instant;

use crate::stats::median;
use crate::tokens::{Signer, SECRET};
use crate::BenchError;

/// Distinct tokens verified per repetition.
const TOKENS: usize = 400;
const REPETITIONS: usize = 3;

/// Median microseconds per verification of a fresh token signed by `signer`; `public_pem` is
/// the verification key for the asymmetric algorithms.
pub fn verify_cost_us(signer: &Signer, public_pem: Option<Vec<u8>>) -> Result<f64, BenchError> {
    let key = match public_pem {
        Some(pem) => auth::KeySource::PublicKeyPem(pem),
        None => auth::KeySource::Secret(SECRET.as_bytes().to_vec()),
    };
    let mut per_verify = Vec::with_capacity(REPETITIONS);
    for rep in 0..REPETITIONS {
        let verifier = auth::Verifier::new(auth::AuthSettings {
            algorithms: vec![signer.algorithm().to_string()],
            key: key.clone(),
            ..auth::AuthSettings::default()
        })
        .map_err(|e| BenchError::Token(format!("{} verifier: {e}", signer.algorithm())))?;
        let tokens = (0..TOKENS)
            .map(|i| signer.mint(&format!("cost-{rep}-{i}")))
            .collect::<Result<Vec<_>, _>>()?;
        let start = Instant::now();
        for token in &tokens {
            verifier
                .verify(token)
                .map_err(|e| BenchError::Token(format!("{}: {e}", signer.algorithm())))?;
        }
        per_verify.push(start.elapsed().as_secs_f64() * 1e6 / TOKENS as f64);
    }
    median(&per_verify).ok_or_else(|| BenchError::Token("no verification timed".into()))
}
