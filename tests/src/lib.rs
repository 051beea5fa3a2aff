//! The kit for Latch's end-to-end tests: every test starts what it needs from here, each on
//! free loopback ports of its own, so tests run in parallel and never share state.
//!
//! What the kit offers:
//! - Latch itself: [`Latch`] / [`LatchBuilder`] ([`latch`]), one `latch proxy` on its own
//!   config; [`node`], a whole `latch run|proxy|control-plane` process; [`instances`], several
//!   proxies on one Redis with the HTTP and WebSocket clients those tests use.
//! - The upstream: [`Upstream`] ([`upstream`]), a real app with the behaviours the tests need
//!   (header echo, HTML in every framing and encoding, uploads, streams, a WebSocket); and
//!   [`express`], the Express app with WebSockets and server-sent events of its own.
//! - The identity provider: [`idp`], a real OpenID Provider whose keys can be rotated, taken
//!   down and counted.
//! - The Flask document editor: [`editor`], the real app most browser tests run against.
//! - Rule files: [`fixtures`], the shared `[[rule]]` tables.
//! - HTTPS: [`tls`], the `[tls]` section and rustls clients that trust the test CA.
//! - External servers (from the `testkit` crate, shared with the store's tests): [`redis`]
//!   (`redis-server`, TLS, a cluster), [`mongo`] (a MongoDB-compatible server), [`chrome`]
//!   (Chromium and ChromeDriver), and [`browser`], the signed-in Chromium browsers and banner
//!   reads of the browser tests.
//! - Small helpers: [`free_port`], [`token`], [`client`], [`eventually`].

pub mod browser;
pub mod django;
pub mod editor;
pub mod express;
pub mod fixtures;
pub mod idp;
pub mod instances;
pub mod latch;
pub mod node;
pub mod node_program;
pub mod tls;
pub mod upstream;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

pub use latch::{Latch, LatchBuilder};
pub use testkit::{chrome, free_port, mongo, redis, wait_for_port};
pub use upstream::Upstream;

/// The HS256 secret every test proxy is configured with.
pub const SECRET: &str = "test-secret-that-is-long-enough-for-hs256!";

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

/// Polls `check` every 100 ms until it returns `Some` or `limit` passes.
pub async fn eventually<T, F, Fut>(limit: Duration, mut check: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + limit;
    loop {
        if let Some(value) = check().await {
            return Some(value);
        }
        if Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
