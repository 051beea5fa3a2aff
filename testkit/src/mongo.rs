//! A MongoDB-compatible server per test: nx-27017, a wire-protocol server backed by SQLite
//! (`scripts/setup.sh test` installs it; `$NX_27017_BIN` overrides the program). Each test
//! starts its own on a free port with its own data directory, so tests never share data and
//! may stop and restart their server freely.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::{free_port, wait_for_port};

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
