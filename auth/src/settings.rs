//! What the operator configured for token verification, before any of it is checked.
//!
//! These types are plain data so the config crate can layer TOML, environment and defaults
//! into them; [`crate::Verifier::new`] and [`crate::Verifier::check_settings`] are where they
//! are judged.

use std::fmt;
use std::time::Duration;

/// The `alg` values a key may be used with, as error messages list them.
pub(crate) const SUPPORTED: &str =
    "HS256, HS384, HS512, RS256, RS384, RS512, PS256, PS384, PS512, ES256, ES384, EdDSA";

/// More skew than this is a misconfigured clock, and would make `exp` meaningless.
pub(crate) const MAX_LEEWAY_SECONDS: u64 = 3600;

/// Where the verification key comes from. The caller reads any file and hands over its bytes.
#[derive(Clone, PartialEq, Eq)]
pub enum KeySource {
    /// Shared secret for HS256/384/512, used as raw bytes (not base64-decoded).
    Secret(Vec<u8>),
    /// A PEM public key (`PUBLIC KEY`, `RSA PUBLIC KEY`) or an X.509 `CERTIFICATE`.
    PublicKeyPem(Vec<u8>),
    /// A JSON Web Key Set document; keys are chosen by the token's `kid`.
    Jwks(String),
    /// A JSON Web Key Set fetched from the identity provider and kept current (see
    /// [`crate::Provider`]); keys are chosen by the token's `kid`.
    Remote(RemoteKeys),
}

/// Where and how to fetch the identity provider's keys.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RemoteKeys {
    pub location: KeyLocation,
    /// Least time between two fetches made because a token named an unknown `kid`.
    pub refetch_interval: Duration,
    /// Bound on one fetch (connect, headers and body), and so on the only wait a request may
    /// have on the network: the refetch for an unknown `kid`.
    pub timeout: Duration,
    /// Floor and ceiling of a key set's lifetime, whatever its caching headers say.
    pub min_lifetime: Duration,
    pub max_lifetime: Duration,
}

/// Where the key set is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KeyLocation {
    /// The key set's own URL.
    JwksUrl(String),
    /// The `jwks_uri` of the discovery document `{issuer}/.well-known/openid-configuration`,
    /// whose `issuer` must equal [`AuthSettings::issuer`].
    Discovery,
}

impl RemoteKeys {
    /// The defaults of the `auth.jwks_*` settings.
    pub fn at(location: KeyLocation) -> RemoteKeys {
        RemoteKeys {
            location,
            refetch_interval: Duration::from_secs(30),
            timeout: Duration::from_secs(2),
            min_lifetime: Duration::from_secs(60),
            max_lifetime: Duration::from_secs(86_400),
        }
    }
}

/// Redacts the secret so settings can be logged or shown in a panic-free debug dump.
impl fmt::Debug for KeySource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeySource::Secret(secret) => write!(f, "Secret([redacted; {} bytes])", secret.len()),
            KeySource::PublicKeyPem(pem) => write!(f, "PublicKeyPem({} bytes)", pem.len()),
            KeySource::Jwks(doc) => write!(f, "Jwks({} bytes)", doc.len()),
            KeySource::Remote(remote) => write!(f, "Remote({remote:?})"),
        }
    }
}

/// The `[auth]` settings that decide which tokens are accepted and how claims map to a user.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuthSettings {
    /// Allow-list of JWS algorithm names exactly as written in config, e.g. `["HS256"]`.
    /// Tokens whose header names any other algorithm are refused before signature work.
    pub algorithms: Vec<String>,
    pub key: KeySource,
    /// Expected `iss`; when set, tokens without it or with another value are refused.
    pub issuer: Option<String>,
    /// Accepted `aud` values; empty means the audience is not checked at all.
    pub audience: Vec<String>,
    /// Clock skew tolerated on `exp` and `nbf`, in seconds.
    pub leeway_seconds: u64,
    /// Claim holding the user id. Dotted paths reach into nested objects
    /// (`"realm_access.roles"`); a top-level claim whose name contains dots wins over the path.
    pub user_claim: String,
    /// Claim holding the display name; falls back to the user id when absent.
    pub name_claim: String,
    /// Claim holding the roles: an array of strings, or one string separated by spaces or commas.
    pub roles_claim: String,
}

/// HS256 with an empty secret: a starting point for config layering that does not verify
/// until a real secret is layered on top (an empty secret is a configuration error).
impl Default for AuthSettings {
    fn default() -> Self {
        AuthSettings {
            algorithms: vec!["HS256".to_owned()],
            key: KeySource::Secret(Vec::new()),
            issuer: None,
            audience: Vec::new(),
            leeway_seconds: 30,
            user_claim: "sub".to_owned(),
            name_claim: "name".to_owned(),
            roles_claim: "roles".to_owned(),
        }
    }
}
