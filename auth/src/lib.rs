//! JWT verification and minting for Latch.
//!
//! Owns what counts as proof of identity: the algorithm allow-list, the verification key
//! (shared secret, PEM public key, JWKS, or the identity provider's fetched key set), the
//! `exp`/`nbf`/`iss`/`aud` checks, the mapping from claims to an [`Identity`], where a request
//! carries its token, which peers may assert identity in headers ([`TrustedProxy`]), and which
//! of a request's credentials counts ([`credential`]). It also mints HS256 tokens for
//! development.
//!
//! It must not know about the proxy's HTTP stack, files, config formats, locks or rules:
//! callers read key files and pass bytes, pass header values as bytes and peer addresses, and
//! decide what a refusal looks like on the wire. Only [`Provider`] does I/O, as an HTTP client
//! of the identity provider: it fetches the key set (and discovery document) and keeps it
//! current. Everything else is synchronous, and its only ambient input is the clock (and the
//! random nonces of [`Sealer`], which seals the OpenID Connect sign-in's cookies and
//! [`Sessions`], the signed-in identity they carry).

mod algorithm;
mod bearer;
mod cache;
mod claims;
mod credential;
mod der;
mod error;
mod freshness;
mod jwks;
mod key;
mod mint;
mod origin;
mod pem;
mod provider;
mod refetch;
pub mod relying_party;
mod seal;
mod session;
mod settings;
mod trusted;
mod turns;
mod verifier;

pub use bearer::{bearer_token, cookie_values, token_from_headers};
pub use claims::{header_value, HeaderValues, Identity, Renewal};
pub use credential::{credential, Credential, Presented};
pub use error::{AuthError, FetchError, KeyError, MintError, TrustedProxyError};
pub use key::MIN_SECRET_BYTES;
pub use mint::{mint_hs256, parse_ttl, MintRequest};
pub use origin::{from_same_site, same_origin, Refused as CrossOrigin};
pub use provider::{KeyStatus, Provider};
pub use relying_party::{ClientSettings, RelyingParty};
pub use seal::{Sealer, MAX_SEALED_CHARS, MIN_COOKIE_SECRET_BYTES};
pub use session::{new_session_id, RenewWith, Sessions};
pub use settings::{AuthSettings, KeyLocation, KeySource, RemoteKeys};
pub use trusted::{Forwarded, TrustedProxy, TrustedProxySettings, FORWARDED_LIFETIME_SECONDS};
pub use turns::{RenewalTurns, Turn, TurnError};
pub use verifier::Verifier;
