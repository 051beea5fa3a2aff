//! Throwaway nginx servers for tests: each runs in the foreground as one process (no master),
//! with its own prefix directory for its pid, logs and temp files, on loopback ports the test
//! chose, and is killed when dropped. The caller writes the `server` blocks; a test upstream
//! usually answers with `return` and echoes what it saw (`$ssl_server_name`, `$http_host`,
//! `$ssl_client_s_dn`) in response headers.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// One nginx process.
pub struct Nginx {
    child: Option<Child>,
    dir: tempfile::TempDir,
    ports: Vec<u16>,
}

impl Nginx {
    /// Starts nginx with `servers` (one or more `server { … }` blocks) inside its `http`
    /// block, and waits until each of `ports` accepts connections.
    pub fn start(servers: &str, ports: &[u16]) -> Nginx {
        let dir = tempfile::tempdir().expect("a temp dir for nginx");
        let conf = dir.path().join("nginx.conf");
        std::fs::write(&conf, config(dir.path(), servers)).expect("write nginx.conf");
        let mut nginx = Nginx {
            child: None,
            dir,
            ports: ports.to_vec(),
        };
        nginx.spawn();
        nginx
    }

    /// The error log: startup problems, TLS handshakes it refused.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("error.log")).unwrap_or_default()
    }

    /// The prefix directory (config, logs), for files a test wants beside them.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Kills the process at once (SIGKILL), as a crash would: its listening sockets and its
    /// open connections go with it.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    fn spawn(&mut self) {
        let conf: PathBuf = self.dir.path().join("nginx.conf");
        let stderr = std::fs::File::create(self.dir.path().join("stderr.log")).expect("log");
        let child = Command::new(nginx_bin())
            .arg("-p")
            .arg(self.dir.path())
            .arg("-c")
            .arg(&conf)
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .expect("nginx is installed (scripts/setup.sh test)");
        self.child = Some(child);
        for port in &self.ports {
            crate::wait_for_port(*port, Duration::from_secs(20), || {
                format!(
                    "{}\n{}",
                    self.log(),
                    std::fs::read_to_string(self.dir.path().join("stderr.log")).unwrap_or_default()
                )
            });
        }
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Debian installs nginx in /usr/sbin, which is not on every user's `PATH`.
fn nginx_bin() -> PathBuf {
    let sbin = Path::new("/usr/sbin/nginx");
    if sbin.exists() {
        sbin.to_path_buf()
    } else {
        PathBuf::from("nginx")
    }
}

/// The whole file: one process in the foreground, everything it writes under `prefix`.
fn config(prefix: &Path, servers: &str) -> String {
    format!(
        "daemon off;\nmaster_process off;\nworker_processes 1;\n\
         pid {p}/nginx.pid;\nlock_file {p}/nginx.lock;\nerror_log {p}/error.log info;\n\
         events {{\n    worker_connections 256;\n}}\n\
         http {{\n    access_log off;\n\
         \x20   client_body_temp_path {p}/body;\n    proxy_temp_path {p}/proxy;\n\
         \x20   fastcgi_temp_path {p}/fastcgi;\n    uwsgi_temp_path {p}/uwsgi;\n\
         \x20   scgi_temp_path {p}/scgi;\n\
         {servers}\n}}\n",
        p = prefix.display(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_server_answers_and_dies_when_killed() {
        let port = crate::free_port();
        let mut nginx = Nginx::start(
            &format!(
                "server {{ listen 127.0.0.1:{port}; location / {{ return 200 \"hi\\n\"; }} }}"
            ),
            &[port],
        );
        let out = Command::new("curl")
            .args(["-s", &format!("http://127.0.0.1:{port}/")])
            .output()
            .expect("curl");
        assert_eq!(String::from_utf8_lossy(&out.stdout), "hi\n");
        nginx.kill();
        assert!(!crate::listening(port));
    }
}
