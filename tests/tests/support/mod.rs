//! Helpers shared by the control-plane tests: a MongoDB-compatible server per test, and the
//! `latch run` / `latch control-plane` processes on their own config.
//!
//! The MongoDB stand-in is nx-27017, a wire-protocol server backed by SQLite
//! (`scripts/setup.sh test` installs it). Each test starts its own on a free port with its own
//! data directory, so tests never share data and may stop and restart their server freely.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tests::latch::latch_bin;
use tests::{free_port, SECRET};

/// One nx-27017 server; killed when dropped. Its data survives [`MongoServer::stop`] and
/// [`MongoServer::start_again`], as a real server's would.
pub struct MongoServer {
    child: Option<Child>,
    pub port: u16,
    dir: tempfile::TempDir,
}

impl MongoServer {
    pub fn start() -> MongoServer {
        let dir = tempfile::tempdir().expect("a temp dir");
        let mut server = MongoServer {
            child: None,
            port: free_port(),
            dir,
        };
        server.start_again();
        server
    }

    /// A URL naming this test's database.
    pub fn url(&self) -> String {
        format!("mongodb://127.0.0.1:{}/latch", self.port)
    }

    /// Kills the server at once, as a crash or a network cut would look to its clients.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server again on the same port and data.
    pub fn start_again(&mut self) {
        self.stop();
        let data = self.dir.path().join("data");
        std::fs::create_dir_all(&data).expect("data dir");
        let log = std::fs::File::create(self.dir.path().join("server.out")).expect("log");
        let child = Command::new(nx_command())
            .arg("--host")
            .arg("127.0.0.1")
            .arg("--port")
            .arg(self.port.to_string())
            .arg("--data-dir")
            .arg(&data)
            .arg("--log-file")
            .arg(self.dir.path().join("server.log"))
            .arg("--pid-file")
            .arg(self.dir.path().join("server.pid"))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("nx-27017 must be installed: run scripts/setup.sh test");
        self.child = Some(child);
        wait_for_port(self.port, Duration::from_secs(20), || self.log());
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("server.out")).unwrap_or_default()
    }
}

impl Drop for MongoServer {
    fn drop(&mut self) {
        self.stop();
    }
}

fn nx_command() -> PathBuf {
    std::env::var_os("NX_27017_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("nx-27017"))
}

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

/// Which subcommand a [`Node`] runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// `latch run`: proxy and control plane in one process.
    Run,
    /// `latch proxy`.
    Proxy,
    /// `latch control-plane`.
    ControlPlane,
}

/// A `latch` process on its own config; killed when dropped.
pub struct Node {
    child: Option<Child>,
    pub mode: Mode,
    pub proxy_port: u16,
    pub cp_port: u16,
    pub admin_port: u16,
    pub config: PathBuf,
    log_path: PathBuf,
}

/// Config for a [`Node`]. `rules_store` is a file path (relative to `dir`) or a mongodb URL.
pub struct NodeConfig<'a> {
    pub dir: &'a Path,
    pub upstream_port: u16,
    pub rules_store: &'a str,
    pub poll_seconds: u64,
}

impl Node {
    pub fn start(mode: Mode, config: NodeConfig<'_>) -> Node {
        let proxy_port = free_port();
        let cp_port = free_port();
        let admin_port = free_port();
        let name = format!("latch-{proxy_port}.toml");
        let path = config.dir.join(&name);
        let text = format!(
            "[proxy]\nlisten = \"127.0.0.1:{proxy_port}\"\nupstream = \"http://127.0.0.1:{}\"\n\
             threads = 1\n\n[auth]\nsecret = \"{SECRET}\"\n\n[locks]\nstore = \"memory\"\n\
             lease_seconds = 30\ngrace_seconds = 10\n\n[rules]\nstore = \"{}\"\npoll_seconds = {}\n\n\
             [control_plane]\nlisten = \"127.0.0.1:{cp_port}\"\nadmin_roles = [\"admin\"]\n\n\
             [admin]\nlisten = \"127.0.0.1:{admin_port}\"\n",
            config.upstream_port, config.rules_store, config.poll_seconds
        );
        std::fs::write(&path, text).expect("write config");
        let log_path = config.dir.join(format!("{name}.log"));
        let mut node = Node {
            child: None,
            mode,
            proxy_port,
            cp_port,
            admin_port,
            config: path,
            log_path,
        };
        node.spawn();
        node
    }

    fn spawn(&mut self) {
        let log = std::fs::File::create(&self.log_path).expect("log file");
        let command = match self.mode {
            Mode::Run => "run",
            Mode::Proxy => "proxy",
            Mode::ControlPlane => "control-plane",
        };
        let mut cmd = Command::new(latch_bin());
        tests::latch::clean_env(&mut cmd);
        let child = cmd
            .arg(command)
            .arg("--config")
            .arg(&self.config)
            .env("LATCH_LOG", "info")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn latch");
        self.child = Some(child);
        let ports: Vec<u16> = match self.mode {
            Mode::Run => vec![self.proxy_port, self.cp_port, self.admin_port],
            Mode::Proxy => vec![self.proxy_port, self.admin_port],
            Mode::ControlPlane => vec![self.cp_port],
        };
        for port in ports {
            wait_for_port(port, Duration::from_secs(20), || self.log());
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    pub fn proxy_url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.proxy_port)
    }

    pub fn api(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.cp_port)
    }

    pub fn admin_url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.admin_port)
    }

    pub fn ws_url(&self, path: &str) -> String {
        format!("ws://127.0.0.1:{}{path}", self.proxy_port)
    }

    /// SIGKILL, as a crash would.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill();
    }
}

/// An admin's bearer header value.
pub fn admin_bearer() -> String {
    format!("Bearer {}", tests::token("root", "Root", &["admin"]))
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
