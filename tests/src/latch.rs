//! The real `latch` binary as a child process.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::{client, free_port, SECRET};

/// Where cargo put the `latch` binary for this build profile.
///
/// Test executables live in `target/<profile>/deps/`; the binary is one level up. The test
/// command (`scripts/test.sh`) builds it first.
pub fn latch_bin() -> PathBuf {
    if let Ok(p) = std::env::var("LATCH_BIN") {
        return PathBuf::from(p);
    }
    let exe = std::env::current_exe().expect("test executable path");
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("target/<profile> directory");
    let bin = dir.join("latch");
    assert!(
        bin.exists(),
        "{} is missing: run `cargo build -p latch` first (scripts/test.sh does)",
        bin.display()
    );
    bin
}

/// Builds the config for one proxy instance.
pub struct LatchBuilder {
    upstream: String,
    rules: String,
    sections: Vec<String>,
    env: Vec<(String, String)>,
    /// Ports the sections name as `{port:NAME}`, picked anew for every attempt to start.
    named_ports: Vec<String>,
    locks: String,
    auth_extra: String,
    auth_key: String,
    command: &'static str,
}

impl LatchBuilder {
    pub fn new(upstream_port: u16) -> LatchBuilder {
        LatchBuilder {
            upstream: format!("http://127.0.0.1:{upstream_port}"),
            rules: String::new(),
            sections: Vec::new(),
            env: Vec::new(),
            named_ports: Vec::new(),
            locks: "store = \"memory\"\nlease_seconds = 30\ngrace_seconds = 10\n".into(),
            auth_extra: String::new(),
            auth_key: format!("secret = \"{SECRET}\""),
            command: "proxy",
        }
    }

    /// The rule file's content (`[[rule]]` tables).
    pub fn rules(mut self, rules: &str) -> Self {
        self.rules = rules.to_string();
        self
    }

    /// Replaces the body of the `[locks]` section.
    pub fn locks(mut self, body: &str) -> Self {
        self.locks = body.to_string();
        self
    }

    /// Extra lines for the `[auth]` section (after the secret).
    pub fn auth(mut self, lines: &str) -> Self {
        self.auth_extra = lines.to_string();
        self
    }

    /// Replaces the `[auth]` section's verification key line (`secret = ...` by default), e.g.
    /// with `jwks_url = "..."`.
    pub fn auth_key(mut self, line: &str) -> Self {
        self.auth_key = line.to_string();
        self
    }

    /// A whole extra section, e.g. `"[control_plane]\nlisten = ..."`.
    pub fn section(mut self, text: &str) -> Self {
        self.sections.push(text.to_string());
        self
    }

    /// The subcommand to run: `proxy` (the default) or `run` (proxy and control plane in one
    /// process; give it a `[control_plane]` section with a free port).
    pub fn command(mut self, command: &'static str) -> Self {
        self.command = command;
        self
    }

    /// `[[app]]` entries in place of `proxy.upstream`: several apps on one proxy.
    pub fn apps(mut self, entries: &str) -> Self {
        self.upstream.clear();
        self.sections.push(entries.to_string());
        self
    }

    /// A free port for the sections to listen on, written `{port:NAME}` in them; like the
    /// proxy's own ports it is picked again when a start finds it taken. The started proxy
    /// says which it got ([`Latch::named_port`]).
    pub fn named_port(mut self, name: &str) -> Self {
        self.named_ports.push(name.to_owned());
        self
    }

    pub fn env(mut self, key: &str, value: &str) -> Self {
        self.env.push((key.into(), value.into()));
        self
    }

    /// Writes the files, starts `latch proxy`, and waits until it serves.
    ///
    /// The listen ports are free when picked, but another test may bind one before `latch`
    /// does; a start that fails for that reason is tried again on new ports.
    pub fn start(self) -> Latch {
        const ATTEMPTS: u32 = 3;
        for attempt in 1..=ATTEMPTS {
            match self.try_start() {
                Ok(latch) => return latch,
                Err(log) if attempt < ATTEMPTS && log.contains("Address already in use") => {
                    eprintln!("latch could not bind a port picked for it; trying new ports");
                }
                Err(log) => panic!("latch did not start; its log:\n{log}"),
            }
        }
        unreachable!("the last attempt returns or panics")
    }

    fn try_start(&self) -> Result<Latch, String> {
        let dir = tempfile::tempdir().expect("a temp dir");
        let port = free_port();
        let admin_port = free_port();
        let named_ports: Vec<(String, u16)> = self
            .named_ports
            .iter()
            .map(|name| (name.clone(), free_port()))
            .collect();
        let mut sections = self.sections.join("\n\n");
        for (name, picked) in &named_ports {
            sections = sections.replace(&format!("{{port:{name}}}"), &picked.to_string());
        }
        let upstream = if self.upstream.is_empty() {
            String::new()
        } else {
            format!("upstream = \"{}\"\n", self.upstream)
        };
        let config = format!(
            "[proxy]\nlisten = \"127.0.0.1:{port}\"\n{}threads = 2\n\n\
             [auth]\n{}\n{}\n\n\
             [locks]\n{}\n\n[rules]\nstore = \"rules.toml\"\npoll_seconds = 1\n\n\
             [admin]\nlisten = \"127.0.0.1:{admin_port}\"\n\n{}\n",
            upstream, self.auth_key, self.auth_extra, self.locks, sections
        );
        let config_path = dir.path().join("latch.toml");
        std::fs::write(&config_path, config).expect("write config");
        std::fs::write(dir.path().join("rules.toml"), &self.rules).expect("write rules");
        let log_path = dir.path().join("latch.log");
        let log = std::fs::File::create(&log_path).expect("log file");
        let mut cmd = Command::new(latch_bin());
        clean_env(&mut cmd);
        cmd.arg(self.command)
            .arg("--config")
            .arg(&config_path)
            .env("LATCH_LOG", "info")
            .stdout(Stdio::null())
            .stderr(log);
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        let child = cmd.spawn().expect("spawn latch");
        let mut latch = Latch {
            child,
            port,
            admin_port,
            named_ports,
            dir,
            log_path,
        };
        latch.wait_ready()?;
        Ok(latch)
    }
}

/// A running `latch proxy`; killed when dropped.
pub struct Latch {
    child: Child,
    pub port: u16,
    pub admin_port: u16,
    named_ports: Vec<(String, u16)>,
    pub dir: tempfile::TempDir,
    log_path: PathBuf,
}

impl Latch {
    /// The port picked for `{port:NAME}` ([`LatchBuilder::named_port`]).
    pub fn named_port(&self, name: &str) -> u16 {
        self.named_ports
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, port)| *port)
            .unwrap_or_else(|| panic!("no port named {name}"))
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{}", self.port, path)
    }

    pub fn admin_url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{}", self.admin_port, path)
    }

    /// The value of one counter `series` (name and labels, as `/metrics` spells them) from
    /// the admin port; 0 while the series has not appeared.
    pub async fn counter(&self, series: &str) -> u64 {
        let text = client()
            .get(self.admin_url("/metrics"))
            .send()
            .await
            .expect("metrics")
            .text()
            .await
            .expect("metrics text");
        let prefix = format!("{series} ");
        text.lines()
            .find_map(|l| l.strip_prefix(&prefix))
            .map_or(0, |v| v.trim().parse().expect("a counter"))
    }

    pub fn ws_url(&self, path: &str) -> String {
        format!("ws://127.0.0.1:{}{}", self.port, path)
    }

    /// Everything the proxy logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// Replaces the rule file (the proxy polls it every second).
    pub fn write_rules(&self, rules: &str) {
        let tmp = self.dir.path().join("rules.toml.tmp");
        let mut f = std::fs::File::create(&tmp).expect("rules tmp");
        f.write_all(rules.as_bytes()).expect("write rules");
        f.sync_all().ok();
        std::fs::rename(&tmp, self.dir.path().join("rules.toml")).expect("rename rules");
    }

    /// The process id, to signal it (`kill -HUP`).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Kills the process at once (SIGKILL), as a crash would.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Waits until both ports accept; the log if the process exits first, or on timeout.
    fn wait_ready(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(format!("(exited at start: {status})\n{}", self.log()));
            }
            if testkit::listening(self.port) && testkit::listening(self.admin_port) {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(format!("(not listening after 20 s)\n{}", self.log()));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Latch {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Runs `latch <args>` to completion: (exit code, stdout, stderr).
pub fn run_latch(args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    let mut cmd = Command::new(latch_bin());
    clean_env(&mut cmd);
    cmd.args(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("run latch");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Removes `LATCH_*` variables the test process inherited (such as `LATCH_BIN`), which the
/// child would otherwise read as config overrides. Tests set the ones they mean explicitly.
pub fn clean_env(cmd: &mut Command) {
    for (key, _) in std::env::vars() {
        if key.starts_with("LATCH_") {
            cmd.env_remove(key);
        }
    }
}
