//! Turning settings into a [`Verifier`], and a presented token into an [`Identity`].
//!
//! Checks run cheapest and most decisive first: the header's algorithm against the allow-list,
//! then the key choice, then the signature, and only then the claims, so an unsigned or
//! foreign token never reaches signature or claim work. A token that passed is remembered
//! until its expiry (see [`crate::cache`]), because a browser session presents the same token
//! on every request.

use std::sync::Arc;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;

use crate::algorithm;
use crate::cache::{self, TokenCache};
use crate::claims::{ClaimMap, ClaimPath, Identity};
use crate::error::{AuthError, KeyError};
use crate::jwks::{self, SetKey};
use crate::key::{check_secret, KeyKind, SecretProblem};
use crate::pem;
use crate::provider::Provider;
use crate::settings::{AuthSettings, KeySource, MAX_LEEWAY_SECONDS};

/// Far beyond any cookie or sane header; refusing early bounds the decoding work per request.
const MAX_TOKEN_BYTES: usize = 16 * 1024;

/// Verifies tokens against one set of [`AuthSettings`]. Immutable after construction, so it is
/// shared behind an `Arc` and rebuilt (not mutated) when the settings change.
#[derive(Debug)]
pub struct Verifier {
    algorithms: Vec<AllowedAlgorithm>,
    keys: KeyRing,
    claims: ClaimMap,
    /// The configured `exp` leeway. A cached token stops answering at `exp + leeway`, one
    /// second before the library would refuse it, so the cache never extends a token's life
    /// (even when `exp` had a fraction the claim mapping rounded up).
    leeway_seconds: u64,
    /// Shared with a [`Provider`], which empties it when a key is withdrawn.
    verified: Arc<TokenCache>,
}

/// One allow-listed algorithm with its ready-made validation rules. The rules name only this
/// algorithm, which the library also requires to agree with the key's family.
#[derive(Debug)]
struct AllowedAlgorithm {
    alg: Algorithm,
    name: &'static str,
    validation: Validation,
}

#[derive(Debug)]
enum KeyRing {
    Single(DecodingKey),
    Set(Vec<SetKey>),
    /// The identity provider's current key set, swapped in whole by its fetches.
    Remote(Arc<Provider>),
}

/// The two header members needed before any cryptography.
#[derive(Deserialize)]
struct PeekedHeader {
    alg: Option<String>,
    kid: Option<String>,
    /// Present only to be refused: no critical extension is understood here.
    crit: Option<serde_json::Value>,
}

impl Verifier {
    /// Builds a verifier, or returns the first problem with the settings
    /// ([`Verifier::check_settings`] lists them all).
    pub fn new(settings: AuthSettings) -> Result<Verifier, KeyError> {
        // `compile` never fails without a reason; the fallback only keeps this panic-free.
        compile(&settings)
            .map_err(|errors| errors.into_iter().next().unwrap_or(KeyError::NoAlgorithms))
    }

    /// Every problem with the settings, as messages for `latch check`; empty when usable.
    pub fn check_settings(settings: &AuthSettings) -> Vec<String> {
        match compile(settings) {
            Ok(_) => Vec::new(),
            Err(errors) => errors.iter().map(ToString::to_string).collect(),
        }
    }

    /// The identity a token proves, or why it proves none.
    pub fn verify(&self, token: &str) -> Result<Arc<Identity>, AuthError> {
        if token.is_empty() {
            return Err(AuthError::Missing);
        }
        if token.len() > MAX_TOKEN_BYTES {
            return Err(AuthError::Malformed);
        }
        let now = jsonwebtoken::get_current_timestamp();
        if let Some(identity) = self.verified.get(token, now) {
            return Ok(identity);
        }
        let identity = Arc::new(self.verify_uncached(token)?);
        let refuse_from = identity.expires_at.saturating_add(self.leeway_seconds);
        self.verified.insert(token, &identity, refuse_from, now);
        Ok(identity)
    }

    /// Verifies an OpenID Connect ID token just returned by the token endpoint: every check of
    /// [`Verifier::verify`], never cached (it is used once), and its `nonce` claim must equal
    /// the one the sign-in sent, so a token from another sign-in cannot be swapped in. A
    /// token for several audiences must name `client_id` as its authorized party (`azp`), and
    /// any `azp` must be `client_id` (OpenID Connect Core 3.1.3.7).
    pub async fn verify_id_token(
        &self,
        token: &str,
        nonce: &str,
        client_id: &str,
    ) -> Result<Identity, AuthError> {
        self.check_id_token(token, nonce, false, client_id).await
    }

    /// Verifies an ID token the token endpoint answered a refresh with, as
    /// [`Verifier::verify_id_token`] does, except that it may carry no `nonce`; one it carries
    /// must be the sign-in's (OpenID Connect Core 12.2).
    pub async fn verify_renewed_id_token(
        &self,
        token: &str,
        sign_in_nonce: &str,
        client_id: &str,
    ) -> Result<Identity, AuthError> {
        self.check_id_token(token, sign_in_nonce, true, client_id)
            .await
    }

    async fn check_id_token(
        &self,
        token: &str,
        nonce: &str,
        renewed: bool,
        client_id: &str,
    ) -> Result<Identity, AuthError> {
        if token.is_empty() || token.len() > MAX_TOKEN_BYTES {
            return Err(AuthError::Malformed);
        }
        let claims = match self.verified_claims(token) {
            Err(AuthError::UnknownKey) => match self.provider() {
                Some(provider) if provider.refetch_unknown().await => {
                    self.verified_claims(token)?
                }
                _ => return Err(AuthError::UnknownKey),
            },
            answer => answer?,
        };
        match claims.get("nonce") {
            None if renewed => {}
            Some(serde_json::Value::String(found)) if !nonce.is_empty() && found == nonce => {}
            _ => return Err(AuthError::WrongNonce),
        }
        let audiences = match claims.get("aud") {
            Some(serde_json::Value::Array(list)) => list.len(),
            _ => 1,
        };
        match claims.get("azp") {
            Some(serde_json::Value::String(azp)) if azp == client_id => {}
            None if audiences <= 1 => {}
            _ => return Err(AuthError::WrongAudience),
        }
        self.claims.identity(&claims)
    }

    /// Every check, with no memory of earlier tokens.
    fn verify_uncached(&self, token: &str) -> Result<Identity, AuthError> {
        let claims = self.verified_claims(token)?;
        self.claims.identity(&claims)
    }

    /// The claims of a token whose algorithm, key, signature, time, issuer and audience passed.
    fn verified_claims(&self, token: &str) -> Result<serde_json::Value, AuthError> {
        let header = peek_header(token)?;
        let alg_name = header.alg.as_deref().ok_or(AuthError::Malformed)?;
        let allowed = self
            .algorithms
            .iter()
            .find(|allowed| allowed.name == alg_name)
            .ok_or_else(|| AuthError::AlgorithmNotAllowed(algorithm::echo(alg_name)))?;
        let decode = |key| {
            jsonwebtoken::decode::<serde_json::Value>(token, key, &allowed.validation)
                .map_err(|error| refusal(error.kind(), allowed.name))
        };
        let kid = header.kid.as_deref();
        let data = match &self.keys {
            KeyRing::Single(key) => decode(key)?,
            KeyRing::Set(keys) => decode(jwks::select(keys, allowed.alg, kid)?)?,
            KeyRing::Remote(provider) => {
                let set = provider.current();
                decode(jwks::select(&set.keys, allowed.alg, kid)?)?
            }
        };
        Ok(data.claims)
    }

    /// The identity provider whose fetched keys this verifier uses, if it uses fetched keys:
    /// whoever runs the verifier also runs [`Provider::run`] to keep them current.
    pub fn provider(&self) -> Option<&Arc<Provider>> {
        match &self.keys {
            KeyRing::Remote(provider) => Some(provider),
            _ => None,
        }
    }

    /// [`Verifier::verify`], and when it refuses the token for naming a key the fetched set
    /// does not hold, one rate-limited refetch of the set (bounded by the fetch timeout) and a
    /// second try. Every other answer is [`Verifier::verify`]'s, with no wait.
    pub async fn verify_or_refetch(&self, token: &str) -> Result<Arc<Identity>, AuthError> {
        match self.verify(token) {
            Err(AuthError::UnknownKey) => match self.provider() {
                Some(provider) if provider.refetch_unknown().await => self.verify(token),
                _ => Err(AuthError::UnknownKey),
            },
            answer => answer,
        }
    }
}

fn peek_header(token: &str) -> Result<PeekedHeader, AuthError> {
    let mut parts = token.split('.');
    let (Some(header), Some(_), Some(_), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(AuthError::Malformed);
    };
    let json = URL_SAFE_NO_PAD
        .decode(header)
        .map_err(|_| AuthError::Malformed)?;
    let peeked: PeekedHeader = serde_json::from_slice(&json).map_err(|_| AuthError::Malformed)?;
    if peeked.crit.is_some() {
        return Err(AuthError::Malformed);
    }
    Ok(peeked)
}

/// What a library error means for the client. Key problems cannot occur for keys that passed
/// construction; if one does, the token is simply not verifiable.
fn refusal(kind: &ErrorKind, alg_name: &str) -> AuthError {
    match kind {
        ErrorKind::ExpiredSignature => AuthError::Expired,
        ErrorKind::ImmatureSignature => AuthError::NotYetValid,
        ErrorKind::InvalidIssuer => AuthError::WrongIssuer,
        ErrorKind::InvalidAudience => AuthError::WrongAudience,
        ErrorKind::MissingRequiredClaim(claim) => AuthError::MissingClaim(claim.clone()),
        ErrorKind::InvalidAlgorithm | ErrorKind::MissingAlgorithm => {
            AuthError::AlgorithmNotAllowed(alg_name.to_owned())
        }
        ErrorKind::InvalidSignature
        | ErrorKind::InvalidEcdsaKey
        | ErrorKind::InvalidEddsaKey
        | ErrorKind::InvalidRsaKey(_)
        | ErrorKind::InvalidKeyFormat => AuthError::BadSignature,
        _ => AuthError::Malformed,
    }
}

fn compile(settings: &AuthSettings) -> Result<Verifier, Vec<KeyError>> {
    let mut errors = Vec::new();
    let allowed = algorithm::parse_allow_list(&settings.algorithms, &mut errors);
    let verified = Arc::new(TokenCache::new(cache::CAPACITY, cache::BUDGET_BYTES));
    let keys = compile_keys(settings, &allowed, &verified, &mut errors);

    if settings.leeway_seconds > MAX_LEEWAY_SECONDS {
        errors.push(KeyError::LeewayTooLarge(settings.leeway_seconds));
    }
    if settings
        .issuer
        .as_deref()
        .is_some_and(|iss| iss.trim().is_empty())
    {
        errors.push(KeyError::EmptyIssuer);
    }
    if settings.audience.iter().any(|aud| aud.trim().is_empty()) {
        errors.push(KeyError::EmptyAudience);
    }
    let mut claim = |setting, text: &str| {
        ClaimPath::new(setting, text)
            .map_err(|error| errors.push(error))
            .ok()
    };
    let user = claim("user_claim", &settings.user_claim);
    let name = claim("name_claim", &settings.name_claim);
    let roles = claim("roles_claim", &settings.roles_claim);

    match (keys, user, name, roles) {
        (Some(keys), Some(user), Some(name), Some(roles)) if errors.is_empty() => Ok(Verifier {
            algorithms: allowed
                .iter()
                .map(|alg| AllowedAlgorithm {
                    alg: *alg,
                    name: algorithm::name(*alg),
                    validation: validation(*alg, settings),
                })
                .collect(),
            keys,
            claims: ClaimMap { user, name, roles },
            leeway_seconds: settings.leeway_seconds,
            verified,
        }),
        _ => Err(errors),
    }
}

fn validation(alg: Algorithm, settings: &AuthSettings) -> Validation {
    let mut validation = Validation::new(alg);
    validation.leeway = settings.leeway_seconds;
    validation.validate_exp = true;
    validation.validate_nbf = true;
    let mut required = vec!["exp"];
    if let Some(issuer) = &settings.issuer {
        validation.set_issuer(&[issuer]);
        required.push("iss");
    }
    // Left unconfigured, the library would refuse every token that carries an `aud`.
    validation.validate_aud = !settings.audience.is_empty();
    if validation.validate_aud {
        validation.set_audience(&settings.audience);
        required.push("aud");
    }
    validation.set_required_spec_claims(&required);
    validation
}

fn compile_keys(
    settings: &AuthSettings,
    allowed: &[Algorithm],
    verified: &Arc<TokenCache>,
    errors: &mut Vec<KeyError>,
) -> Option<KeyRing> {
    match &settings.key {
        KeySource::Secret(secret) => {
            if secret.trim_ascii_start().starts_with(b"-----BEGIN") {
                errors.push(KeyError::SecretIsPem);
            } else {
                match check_secret(secret) {
                    Ok(()) => {}
                    Err(SecretProblem::Empty) => errors.push(KeyError::EmptySecret),
                    Err(SecretProblem::TooShort(len)) => {
                        errors.push(KeyError::SecretTooShort { len })
                    }
                }
            }
            report_mismatches(KeyKind::Secret, allowed, errors);
            Some(KeyRing::Single(DecodingKey::from_secret(secret)))
        }
        KeySource::PublicKeyPem(pem) => match pem::parse_public_key(pem) {
            Ok(public) => {
                report_mismatches(public.kind, allowed, errors);
                Some(KeyRing::Single(public.key))
            }
            Err(error) => {
                errors.push(error);
                None
            }
        },
        KeySource::Remote(remote) => {
            let asymmetric = public_key_algorithms(allowed, "a fetched JWKS", errors);
            match Provider::build(
                remote,
                settings.issuer.as_deref(),
                &asymmetric,
                Some(Arc::clone(verified)),
            ) {
                Ok(provider) => Some(KeyRing::Remote(Arc::new(provider))),
                Err(problems) => {
                    errors.extend(problems);
                    None
                }
            }
        }
        KeySource::Jwks(document) => {
            let asymmetric = public_key_algorithms(allowed, "a JWKS document", errors);
            match jwks::parse(document, &asymmetric) {
                Ok(keys) if keys.is_empty() => {
                    if !asymmetric.is_empty() {
                        errors.push(KeyError::NoUsableJwk {
                            algorithms: algorithm::list(&asymmetric),
                        });
                    }
                    None
                }
                Ok(keys) => Some(KeyRing::Set(keys)),
                Err(jwks_errors) => {
                    errors.extend(jwks_errors);
                    None
                }
            }
        }
    }
}

/// The allowed algorithms a key set may serve; each secret-key algorithm is a problem, since a
/// key set's keys are public.
fn public_key_algorithms(
    allowed: &[Algorithm],
    key: &str,
    errors: &mut Vec<KeyError>,
) -> Vec<Algorithm> {
    let (secret, public): (Vec<Algorithm>, Vec<Algorithm>) = allowed
        .iter()
        .partition(|alg| KeyKind::Secret.algorithms().contains(alg));
    for alg in secret {
        errors.push(KeyError::AlgorithmKeyMismatch {
            algorithm: algorithm::name(alg).to_owned(),
            key: key.to_owned(),
            allowed: "public-key algorithms (RS*, PS*, ES256, ES384, EdDSA)".to_owned(),
        });
    }
    public
}

/// A single key verifies only its own family; each allowed algorithm outside it is a problem.
fn report_mismatches(kind: KeyKind, allowed: &[Algorithm], errors: &mut Vec<KeyError>) {
    for alg in allowed
        .iter()
        .filter(|alg| !kind.algorithms().contains(alg))
    {
        errors.push(KeyError::AlgorithmKeyMismatch {
            algorithm: algorithm::name(*alg).to_owned(),
            key: kind.describe().to_owned(),
            allowed: algorithm::list(kind.algorithms()),
        });
    }
}

#[cfg(test)]
mod tests {
    use jsonwebtoken::{EncodingKey, Header};
    use serde_json::json;

    use super::*;

    const SECRET: &[u8] = b"a-secret-that-is-long-enough-for-hs256-tests";

    fn verifier(leeway_seconds: u64) -> Verifier {
        Verifier::new(AuthSettings {
            key: KeySource::Secret(SECRET.to_vec()),
            leeway_seconds,
            ..AuthSettings::default()
        })
        .unwrap()
    }

    fn token(sub: &str, exp: u64) -> String {
        jsonwebtoken::encode(
            &Header::default(),
            &json!({ "sub": sub, "exp": exp }),
            &EncodingKey::from_secret(SECRET),
        )
        .unwrap()
    }

    fn now() -> u64 {
        jsonwebtoken::get_current_timestamp()
    }

    #[test]
    fn a_verified_token_is_remembered_and_answers_the_same_identity() {
        let v = verifier(30);
        let t = token("alice", now() + 600);
        let first = v.verify(&t).unwrap();
        assert_eq!(v.verified.len(), 1);
        let again = v.verify(&t).unwrap();
        assert_eq!(again, first);
        assert!(
            Arc::ptr_eq(&again, &first),
            "a hit shares the cached identity"
        );
        assert_eq!(v.verified.len(), 1);
    }

    #[test]
    fn a_cached_tokens_signature_on_other_claims_is_still_refused() {
        let v = verifier(30);
        let alice = token("alice", now() + 600);
        v.verify(&alice).unwrap();
        let mallory = token("mallory", now() + 600);
        let parts: Vec<&str> = alice.split('.').collect();
        let payload = mallory.split('.').nth(1).unwrap();
        let forged = format!("{}.{payload}.{}", parts[0], parts[2]);
        assert_eq!(v.verify(&forged), Err(AuthError::BadSignature));
        assert_eq!(v.verified.len(), 1, "refusals are not remembered");
    }

    #[test]
    fn a_cached_token_stops_answering_when_its_leeway_runs_out() {
        let v = verifier(30);
        let exp = now() - 10;
        let t = token("alice", exp);
        v.verify(&t).unwrap();
        assert!(v.verified.get(&t, exp + 29).is_some());
        assert_eq!(v.verified.get(&t, exp + 30), None);
    }

    #[test]
    fn an_expired_token_is_neither_accepted_nor_remembered() {
        let v = verifier(0);
        let t = token("alice", now() - 10);
        assert_eq!(v.verify(&t), Err(AuthError::Expired));
        assert_eq!(v.verified.len(), 0);
    }
}
