//! Test support shared by the store's tests and Latch's end-to-end tests: free loopback ports
//! and the external servers tests run against, each started per test on its own port and
//! killed when dropped.
//!
//! - [`redis`]: throwaway `redis-server` processes (plain, TLS, a three-master cluster).
//! - [`mongo`]: a MongoDB-compatible server (nx-27017) with its own data directory.
//! - [`chrome`]: headless Chromium and a ChromeDriver child, for browser tests.
//!
//! It depends on no Latch crate, so `store` can use it for its own tests without a cycle.

pub mod chrome;
pub mod mongo;
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
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "nothing listens on port {port}; log:\n{}",
            log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}
