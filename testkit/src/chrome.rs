//! Headless Chromium for the browser tests: the programs (from the distribution's `chromium`
//! and `chromium-driver` packages, installed by `scripts/setup.sh test`) and a ChromeDriver
//! child on a free port.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::free_port;

/// The program at `$env`, or at `default`; a clear failure when it is not installed.
pub fn program(env: &str, default: &str) -> PathBuf {
    let path = std::env::var_os(env)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(default));
    assert!(
        path.exists(),
        "{} is missing: run `scripts/setup.sh test` (or set {env})",
        path.display()
    );
    path
}

/// The Chromium binary (`$CHROMIUM`, default `/usr/bin/chromium`).
pub fn chromium() -> PathBuf {
    program("CHROMIUM", "/usr/bin/chromium")
}

/// A ChromeDriver child on a free port; killed when dropped.
pub struct ChromeDriver {
    child: Child,
    pub port: u16,
}

impl ChromeDriver {
    /// Starts `$CHROMEDRIVER` (default `/usr/bin/chromedriver`) and waits until it listens.
    pub async fn start() -> ChromeDriver {
        let port = free_port();
        let child = Command::new(program("CHROMEDRIVER", "/usr/bin/chromedriver"))
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromedriver");
        let driver = ChromeDriver { child, port };
        let deadline = Instant::now() + Duration::from_secs(10);
        while tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_err()
        {
            assert!(Instant::now() < deadline, "chromedriver did not start");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        driver
    }

    /// The WebDriver URL to connect a client to.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

impl Drop for ChromeDriver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
