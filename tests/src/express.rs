//! The Express app of `tests/apps/express` (Express 4, the `ws` package), started with `node`
//! on a port of its own, and what it reports of the WebSockets and event streams it served.

use std::path::PathBuf;
use std::time::Duration;

use reqwest::header::COOKIE;
use serde_json::Value;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;

use crate::instances::Ws;
use crate::node_program::NodeProgram;
use crate::{client, eventually};

/// How long the tests wait for the app to have seen something.
pub const PATIENCE: Duration = Duration::from_secs(10);

/// The Express app on a port of its own; killed when dropped.
pub struct App {
    pub port: u16,
    _node: NodeProgram,
}

impl App {
    pub fn start() -> App {
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("apps/express");
        assert!(
            dir.join("node_modules/ws/package.json").exists(),
            "the Express app's packages are not installed: run `scripts/setup.sh test`"
        );
        let (node, [port]) = NodeProgram::start(&dir.join("app.js"), "the Express app", |[port]| {
            format!("listening on {port}")
        });
        App { port, _node: node }
    }

    /// What the app saw over its sockets: `{saves: [...], closes: [...]}`.
    pub async fn sockets(&self) -> Value {
        client()
            .get(format!("http://127.0.0.1:{}/sockets", self.port))
            .send()
            .await
            .expect("the app answers")
            .json()
            .await
            .expect("JSON")
    }

    /// Every event stream the app served, oldest first: `{id, user, fence, latch, closed}`,
    /// where `latch` lists each request header whose name reads as `X-Latch-*` as
    /// `[name, value]`, spelled as it arrived.
    pub async fn streams(&self) -> Vec<Value> {
        let streams: Value = client()
            .get(format!("http://127.0.0.1:{}/streams", self.port))
            .send()
            .await
            .expect("the app answers")
            .json()
            .await
            .expect("JSON");
        streams.as_array().cloned().unwrap_or_default()
    }

    /// Waits until the app saw `user`'s socket closed with `code`; returns the close.
    pub async fn closed(&self, user: &str, code: u64) -> Value {
        eventually(PATIENCE, || async {
            let seen = self.sockets().await;
            seen["closes"]
                .as_array()?
                .iter()
                .find_map(|c| (c["user"] == user && c["code"] == code).then(|| c.clone()))
        })
        .await
        .unwrap_or_else(|| panic!("the app never saw {user}'s socket closed with {code}"))
    }
}

/// Opens the app's socket for document `id` at `base` (`ws://host:port`) with the request
/// header `Cookie: {cookie}`.
pub async fn open_socket(
    base: &str,
    id: u32,
    cookie: &str,
) -> Result<Ws, tokio_tungstenite::tungstenite::Error> {
    let mut req = format!("{base}/docs/{id}/socket")
        .into_client_request()
        .expect("a WebSocket request");
    req.headers_mut()
        .insert(COOKIE, HeaderValue::from_str(cookie).expect("cookie"));
    tokio::time::timeout(PATIENCE, tokio_tungstenite::connect_async(req))
        .await
        .expect("the handshake timed out")
        .map(|(ws, _)| ws)
}
