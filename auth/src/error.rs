//! Errors of this crate: why a token was refused, why settings cannot be used, why minting failed.
//!
//! [`AuthError`] messages go to clients as a problem+json `detail`, so they are short sentences
//! that never repeat the token or anything else the client sent beyond a sanitized algorithm name.
//! [`KeyError`] and [`TrustedProxyError`] messages go to operators (`latch check`), so they name
//! the setting and the fix.

use thiserror::Error;

/// Why a presented token does not establish an identity. Every variant means 401.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum AuthError {
    #[error("No access token was presented.")]
    Missing,
    #[error("The access token is malformed.")]
    Malformed,
    /// Carries the header's algorithm name, reduced to a safe token-free form.
    #[error("The token's signing algorithm {0} is not accepted.")]
    AlgorithmNotAllowed(String),
    #[error("The token was signed with an unknown key.")]
    UnknownKey,
    #[error("The token's signature is invalid.")]
    BadSignature,
    #[error("The token has expired.")]
    Expired,
    #[error("The token is not valid yet.")]
    NotYetValid,
    #[error("The token was issued by an untrusted issuer.")]
    WrongIssuer,
    #[error("The token is not intended for this service.")]
    WrongAudience,
    /// Carries the configured claim name or path, never the claim's value.
    #[error("The token lacks a usable \"{0}\" claim.")]
    MissingClaim(String),
    /// A trusted authentication proxy sent an identity header that is not plain text.
    #[error("The identity forwarded by the authentication proxy is unusable.")]
    BadForwardedIdentity,
    /// An ID token whose `nonce` is not the one its sign-in sent.
    #[error("The ID token was not issued for this sign-in (nonce mismatch).")]
    WrongNonce,
    /// A sign-in session cookie that does not decrypt, was altered, or has ended.
    #[error("The sign-in session is invalid or has ended.")]
    BadSession,
    /// A sign-in session cookie whose session was ended by a logout.
    #[error("The sign-in session was ended by a logout.")]
    SignedOut,
    /// A sign-in session the identity provider would not renew (the user was disabled, or the
    /// grant revoked): it is ended.
    #[error("The identity provider refused to renew the sign-in session.")]
    RenewalRefused,
}

impl AuthError {
    /// Stable machine-readable name for logs and metric labels.
    pub fn code(&self) -> &'static str {
        match self {
            AuthError::Missing => "missing",
            AuthError::Malformed => "malformed",
            AuthError::AlgorithmNotAllowed(_) => "algorithm_not_allowed",
            AuthError::UnknownKey => "unknown_key",
            AuthError::BadSignature => "bad_signature",
            AuthError::Expired => "expired",
            AuthError::NotYetValid => "not_yet_valid",
            AuthError::WrongIssuer => "wrong_issuer",
            AuthError::WrongAudience => "wrong_audience",
            AuthError::MissingClaim(_) => "missing_claim",
            AuthError::BadForwardedIdentity => "bad_forwarded_identity",
            AuthError::WrongNonce => "wrong_nonce",
            AuthError::BadSession => "bad_session",
            AuthError::SignedOut => "signed_out",
            AuthError::RenewalRefused => "renewal_refused",
        }
    }
}

/// A problem with [`crate::AuthSettings`] that makes them unusable. One variant per problem so
/// `latch check` can list them all.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum KeyError {
    #[error("algorithms is empty; list at least one, e.g. [\"HS256\"]")]
    NoAlgorithms,
    #[error(
        "algorithm {0:?} is never accepted: unsigned tokens would let anyone claim any identity"
    )]
    NoneAlgorithm(String),
    #[error("unknown algorithm {0:?}; supported: {list}", list = crate::settings::SUPPORTED)]
    UnknownAlgorithm(String),
    #[error(
        "secret is empty; HS256/384/512 need a secret of at least {min} bytes",
        min = crate::MIN_SECRET_BYTES
    )]
    EmptySecret,
    #[error(
        "secret is only {len} bytes; HS256/384/512 need at least {min} bytes \
         (for example the output of `openssl rand -base64 48`)",
        min = crate::MIN_SECRET_BYTES
    )]
    SecretTooShort { len: usize },
    #[error("secret holds a PEM key; a public key belongs in public_key_file, not in secret")]
    SecretIsPem,
    /// The key of the sign-in cookies; its size is the cipher's key size.
    #[error(
        "cookie_secret is {len} bytes; at least {min} are required",
        min = crate::MIN_COOKIE_SECRET_BYTES
    )]
    CookieSecretTooShort { len: usize },
    /// One key serves one algorithm family; anything else invites algorithm confusion.
    #[error("algorithm {algorithm} cannot be verified with {key}, which only allows {allowed}")]
    AlgorithmKeyMismatch {
        algorithm: String,
        key: String,
        allowed: String,
    },
    #[error("public key is not usable PEM: {0}")]
    InvalidPem(String),
    #[error(
        "public key file holds a private key; give the public key instead \
         (`openssl pkey -in private.pem -pubout`)"
    )]
    PrivateKey,
    #[error("unsupported key type: {0}; supported are RSA, EC P-256, EC P-384 and Ed25519")]
    UnsupportedKey(String),
    #[error("public key is invalid: {0}")]
    InvalidKey(String),
    #[error("JWKS is not a valid JSON Web Key Set: {0}")]
    InvalidJwks(String),
    #[error("JWKS {key}: {reason}")]
    InvalidJwk { key: String, reason: String },
    #[error("JWKS has no signing key usable with the allowed algorithms ({algorithms})")]
    NoUsableJwk { algorithms: String },
    #[error(
        "leeway_seconds is {0}; at most {max} is accepted",
        max = crate::settings::MAX_LEEWAY_SECONDS
    )]
    LeewayTooLarge(u64),
    #[error("{setting} {path:?} is not a usable claim path: {reason}")]
    InvalidClaimPath {
        setting: &'static str,
        path: String,
        reason: &'static str,
    },
    #[error("issuer is empty; remove it or give the exact iss value tokens carry")]
    EmptyIssuer,
    #[error("audience contains an empty value")]
    EmptyAudience,
    #[error("jwks_url {url:?} cannot be used: {reason}")]
    JwksUrl { url: String, reason: String },
    #[error(
        "discover needs issuer: the keys are found through \
         {{issuer}}/.well-known/openid-configuration"
    )]
    DiscoveryWithoutIssuer,
    #[error("issuer {issuer:?} cannot be discovered: {reason}")]
    DiscoveryIssuer { issuer: String, reason: String },
    #[error("jwks_cache_min_seconds ({min}) is above jwks_cache_max_seconds ({max})")]
    KeyLifetimeBounds { min: u64, max: u64 },
    #[error("cannot set up the HTTP client that fetches keys: {0}")]
    HttpClient(String),
}

/// A problem with [`crate::TrustedProxySettings`]; [`TrustedProxyError::setting`] names the
/// setting it is about.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum TrustedProxyError {
    #[error("{0:?} is not an IP network (such as 10.0.0.0/8) or an IP address")]
    Peer(String),
    #[error("{name:?} cannot carry identity: {reason}")]
    Header {
        setting: &'static str,
        name: String,
        reason: &'static str,
    },
    #[error(
        "peers are trusted but no header names the user; set user_header, email_header or \
         assertion_header"
    )]
    NoIdentityHeader,
}

impl TrustedProxyError {
    /// The `trusted_proxy` setting the problem is about.
    pub fn setting(&self) -> &'static str {
        match self {
            TrustedProxyError::Peer(_) => "peers",
            TrustedProxyError::Header { setting, .. } => setting,
            TrustedProxyError::NoIdentityHeader => "user_header",
        }
    }
}

/// Why fetching the identity provider's keys failed. Shown to operators (logs, `/readyz`);
/// the last good keys stay in use.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum FetchError {
    #[error("request failed: {0}")]
    Request(String),
    #[error("the provider answered HTTP {0}")]
    Status(u16),
    #[error("the document is larger than {0} bytes")]
    TooLarge(usize),
    #[error("the key set is not UTF-8 text")]
    NotUtf8,
    #[error("the discovery document is unusable: {0}")]
    Discovery(String),
    #[error("the discovery document names issuer {found:?}, not the configured {expected:?}")]
    IssuerMismatch { expected: String, found: String },
    #[error("the key set is unusable: {0}")]
    Keys(String),
    #[error("the key set holds no signing key usable with the allowed algorithms")]
    NoUsableKey,
}

/// Why [`crate::mint_hs256`] could not produce a token.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum MintError {
    #[error("secret is empty; HS256 needs a secret of at least {min} bytes", min = crate::MIN_SECRET_BYTES)]
    EmptySecret,
    #[error(
        "secret is only {len} bytes; HS256 needs at least {min} bytes",
        min = crate::MIN_SECRET_BYTES
    )]
    SecretTooShort { len: usize },
    #[error("sub is empty; a token must name its user")]
    EmptySubject,
    #[error("ttl is zero; the token would be expired when issued")]
    ZeroTtl,
    #[error("ttl of {0} seconds puts the expiry beyond any representable time")]
    TtlTooLarge(u64),
    #[error("token could not be signed: {0}")]
    Signing(String),
}
