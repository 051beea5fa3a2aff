//! The Django project of `tests/apps/django_remote_user.py`: a real Django, with its auth and
//! session apps on a SQLite file of its own, that takes its user from `X-Latch-User` through
//! Django's `RemoteUserMiddleware`. Its packages come from `scripts/setup.sh test`.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::{client, free_port, wait_for_port};

/// What the app's `/` answers (`tests/apps/django_remote_user.py`).
const INDEX: &str = "django remote-user app\n";
/// Ports tried before giving up.
const ATTEMPTS: usize = 3;

/// The response to `GET /` on loopback `port`, whole, if one arrives within two seconds.
fn index_page(port: u16) -> Option<String> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    stream
        .write_all(b"GET / HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
        .ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    Some(response)
}

/// The app on a port of its own; killed when dropped.
pub struct RemoteUserApp {
    child: Child,
    pub port: u16,
    dir: tempfile::TempDir,
}

impl RemoteUserApp {
    /// Starts the app on a free port. A port found free can be taken by another test's server
    /// in the second or two Django spends migrating before it listens; Django then exits, and
    /// the app starts again on another port.
    pub fn start() -> RemoteUserApp {
        let apps = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("apps");
        assert!(
            apps.join("pydeps/django").exists(),
            "Django is not installed: run `scripts/setup.sh test`"
        );
        for _ in 0..ATTEMPTS {
            let mut app = RemoteUserApp::spawn(&apps);
            wait_for_port(app.port, Duration::from_secs(30), || app.log());
            if app.answers_as_itself(Duration::from_secs(30)) {
                return app;
            }
        }
        panic!("the Django app found no port of its own in {ATTEMPTS} attempts");
    }

    fn spawn(apps: &Path) -> RemoteUserApp {
        let dir = tempfile::tempdir().expect("a temp dir");
        let log = std::fs::File::create(dir.path().join("app.log")).expect("the app's log");
        let port = free_port();
        let child = Command::new("python3")
            .arg(apps.join("django_remote_user.py"))
            .arg(port.to_string())
            .arg(dir.path().join("app.sqlite3"))
            .env("PYTHONDONTWRITEBYTECODE", "1")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("the app's log"))
            .stderr(log)
            .spawn()
            .expect("python3 runs the Django app");
        RemoteUserApp { child, port, dir }
    }

    /// Whether the server on the app's port is this app, its process still running, within
    /// `limit`; panics with the log when the app neither answers nor exits by then.
    fn answers_as_itself(&mut self, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        loop {
            if self.child.try_wait().ok().flatten().is_some() {
                return false;
            }
            if index_page(self.port).is_some_and(|page| page.ends_with(INDEX)) {
                return self.child.try_wait().ok().flatten().is_none();
            }
            assert!(
                Instant::now() < deadline,
                "the Django app on port {} does not answer; log:\n{}",
                self.port,
                self.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("app.log")).unwrap_or_default()
    }

    /// Every save the app made, `{id, user}`, read from the app itself.
    pub async fn saves(&self) -> Vec<Value> {
        client()
            .get(format!("http://127.0.0.1:{}/saves", self.port))
            .send()
            .await
            .expect("the app answers")
            .json()
            .await
            .expect("a JSON list")
    }
}

impl Drop for RemoteUserApp {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
