//! The small Flask document editor in `tests/apps/editor/` (a multi-page editor with a preview
//! iframe on a protected URL, a JSON autosave by XHR and links between documents), as the
//! real app the browser tests put Latch in front of. Its packages come from
//! `scripts/setup.sh test`.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::Value;

use crate::{client, free_port, wait_for_port};

/// The editor app on a port of its own; killed when dropped.
pub struct Editor {
    child: Child,
    port: u16,
}

impl Editor {
    pub fn start() -> Editor {
        let apps = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("apps");
        assert!(
            apps.join("pydeps/flask").exists(),
            "the editor's packages are not installed: run `scripts/setup.sh test`"
        );
        let port = free_port();
        let child = Command::new("python3")
            .arg(apps.join("editor/app.py"))
            .arg(port.to_string())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start the editor app");
        wait_for_port(port, Duration::from_secs(20), String::new);
        Editor { child, port }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Every save the app accepted, read from the app itself.
    pub async fn saves(&self) -> Vec<Value> {
        self.list("/saves").await
    }

    /// Every editor page the app served (`{"id", "user"}`), read from the app itself.
    pub async fn views(&self) -> Vec<Value> {
        self.list("/views").await
    }

    async fn list(&self, path: &str) -> Vec<Value> {
        client()
            .get(format!("http://127.0.0.1:{}{path}", self.port))
            .send()
            .await
            .expect("the editor answers")
            .json()
            .await
            .expect("a JSON list")
    }
}

impl Drop for Editor {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
