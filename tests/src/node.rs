//! A whole `latch` process (`latch run`, `latch proxy` or `latch control-plane`) on a full
//! config of its own, for the control-plane tests; the rule store may be a file or a
//! MongoDB-compatible server ([`crate::mongo`]).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::latch::{clean_env, latch_bin};
use crate::{free_port, wait_for_port, SECRET};

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
/// Every node notes every request in its shape summary (`proxy.shape_sample_every = 1`), so that
/// a test sees each shape it sent.
pub struct NodeConfig<'a> {
    pub dir: &'a Path,
    pub upstream_port: u16,
    pub rules_store: &'a str,
    pub poll_seconds: u64,
}

impl Node {
    pub fn start(mode: Mode, config: NodeConfig<'_>) -> Node {
        Node::start_with_apps(mode, config, None)
    }

    /// A node whose apps are these `[[app]]` entries instead of the one upstream.
    pub fn start_with_apps(mode: Mode, config: NodeConfig<'_>, apps: Option<&str>) -> Node {
        let proxy_port = free_port();
        let cp_port = free_port();
        let admin_port = free_port();
        let name = format!("latch-{proxy_port}.toml");
        let path = config.dir.join(&name);
        let upstream = match apps {
            Some(_) => String::new(),
            None => format!("upstream = \"http://127.0.0.1:{}\"\n", config.upstream_port),
        };
        let text = format!(
            "[proxy]\nlisten = \"127.0.0.1:{proxy_port}\"\n{upstream}\
             threads = 1\nshape_sample_every = 1\n\n[auth]\nsecret = \"{SECRET}\"\n\n[locks]\nstore = \"memory\"\n\
             lease_seconds = 30\ngrace_seconds = 10\n\n[rules]\nstore = \"{}\"\npoll_seconds = {}\n\n\
             [control_plane]\nlisten = \"127.0.0.1:{cp_port}\"\nadmin_roles = [\"admin\"]\n\n\
             [admin]\nlisten = \"127.0.0.1:{admin_port}\"\n\n{}",
            config.rules_store,
            config.poll_seconds,
            apps.unwrap_or_default()
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
        clean_env(&mut cmd);
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
    format!("Bearer {}", crate::token("root", "Root", &["admin"]))
}
