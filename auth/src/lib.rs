//! JWT verification and minting for Latch.
//!
//! Owns what counts as proof of identity: the algorithm allow-list, the verification key
//! (shared secret, PEM public key or JWKS), the `exp`/`nbf`/`iss`/`aud` checks, the mapping
//! from claims to an [`Identity`], and where a request carries its token. It also mints HS256
//! tokens for development.
//!
//! It must not know about HTTP libraries, files, config formats, locks or rules: callers read
//! key files and pass bytes, pass header values as bytes, and decide what a refusal looks like
//! on the wire. Nothing here is async or does I/O; the only ambient input is the clock.

mod algorithm;
mod bearer;
mod cache;
mod claims;
mod der;
mod error;
mod jwks;
mod key;
mod mint;
mod origin;
mod pem;
mod settings;
mod verifier;

pub use bearer::token_from_headers;
pub use claims::Identity;
pub use error::{AuthError, KeyError, MintError};
pub use key::MIN_SECRET_BYTES;
pub use mint::{mint_hs256, parse_ttl, MintRequest};
pub use origin::same_origin;
pub use settings::{AuthSettings, KeySource};
pub use verifier::Verifier;
