//! Support for Latch's end-to-end tests: free ports, the real `latch` binary started as a
//! child process on its own config, and a real upstream app with the behaviours the tests
//! need (header echo, HTML in every framing and encoding, uploads, streams, a WebSocket).
//!
//! Every test starts its own upstream and its own proxy on free loopback ports, so tests run
//! in parallel and never share state.

pub mod chrome;
pub mod latch;
pub mod upstream;

use std::net::{SocketAddr, TcpListener};

pub use latch::{Latch, LatchBuilder};
pub use upstream::Upstream;

/// The HS256 secret every test proxy is configured with.
pub const SECRET: &str = "test-secret-that-is-long-enough-for-hs256!";

/// A port nothing listens on right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

pub fn loopback(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// A valid token for `sub` signed with [`SECRET`].
pub fn token(sub: &str, name: &str, roles: &[&str]) -> String {
    token_ttl(sub, name, roles, 3600)
}

pub fn token_ttl(sub: &str, name: &str, roles: &[&str], ttl_seconds: u64) -> String {
    auth::mint_hs256(
        SECRET.as_bytes(),
        &auth::MintRequest {
            sub: sub.into(),
            name: Some(name.into()),
            roles: roles.iter().map(|r| (*r).to_string()).collect(),
            ttl_seconds,
            issuer: None,
            audience: None,
        },
    )
    .expect("minting a test token")
}

/// An HTTP client that follows no redirects and does not decompress, so tests see exactly
/// what the proxy sent.
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .build()
        .expect("an HTTP client")
}
