//! The Django project of `tests/apps/django_remote_user.py`: a real Django, with its auth and
//! session apps on a SQLite file of its own, that takes its user from `X-Latch-User` through
//! Django's `RemoteUserMiddleware`. Its packages come from `scripts/setup.sh test`.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::Value;

use crate::{client, free_port, wait_for_port};

/// The app on a port of its own; killed when dropped.
pub struct RemoteUserApp {
    child: Child,
    pub port: u16,
    dir: tempfile::TempDir,
}

impl RemoteUserApp {
    pub fn start() -> RemoteUserApp {
        let apps = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("apps");
        assert!(
            apps.join("pydeps/django").exists(),
            "Django is not installed: run `scripts/setup.sh test`"
        );
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
        let app = RemoteUserApp { child, port, dir };
        wait_for_port(port, Duration::from_secs(30), || app.log());
        app
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
