//! Test support shared by the store's tests and Latch's end-to-end tests: free loopback ports
//! and the external servers tests run against, each started per test on its own port and
//! killed when dropped.
//!
//! - [`redis`]: throwaway `redis-server` processes (plain, TLS, a three-master cluster).
//! - [`mongo`]: a MongoDB-compatible server (nx-27017) with its own data directory.
//! - [`certs`]: a throwaway CA made with `openssl`, and the certificates it issues.
//! - [`nginx`]: throwaway nginx servers (plain or TLS upstreams), one process each.
//! - [`chrome`]: headless Chromium and a ChromeDriver child, for browser tests.
//!
//! It depends on no Latch crate, so `store` can use it for its own tests without a cycle.

pub mod certs;
pub mod chrome;
pub mod mongo;
pub mod nginx;
pub mod redis;

use std::net::TcpListener;
use std::time::{Duration, Instant};

/// A port nothing listens on right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

/// Blocks until something listens on loopback `port`; fails after `limit` with `log()`.
pub fn wait_for_port(port: u16, limit: Duration, log: impl Fn() -> String) {
    let deadline = Instant::now() + limit;
    while !listening(port) {
        assert!(
            Instant::now() < deadline,
            "nothing listens on port {port}; log:\n{}",
            log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Does something listen on loopback `port`? A connection whose local port is `port` itself
/// is TCP's simultaneous open with itself, which happens now and then while nothing listens
/// (the kernel may pick the target port as the ephemeral one): that is a no.
pub fn listening(port: u16) -> bool {
    std::net::TcpStream::connect(("127.0.0.1", port))
        .and_then(|s| s.local_addr())
        .is_ok_and(|local| local.port() != port)
}
