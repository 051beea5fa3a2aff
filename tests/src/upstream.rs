//! A real upstream app for the end-to-end tests, served by axum on a free loopback port.
//!
//! Routes:
//! - `/echo/**` (any method): JSON `{method, path, query, headers, body_len}` of what arrived;
//! - `/html/cl`, `/html/chunked`, `/html/gzip`, `/html/x-gzip`, `/html/br`, `/html/zstd`: one
//!   HTML page in each framing/encoding (the compressed ones whatever the client asked for);
//! - `/html/gzip-script`: a gzip-encoded script; `/html/gzip-broken`: an HTML page that says
//!   gzip but is not; `/html/br-bomb`: a few hundred bytes of br that inflate to a 64 MiB page;
//! - `/html/split`: `</body>` split across two chunks sent 50 ms apart; `/html/split-head`: the
//!   same for `</head>`;
//! - `/html/nobody`: a page with no `</body>`;
//! - `/html/csp-nonce`, `/html/csp-strict`: pages with a nonce CSP and a CSP that forbids
//!   the banner; `/html/no-transform`: `Cache-Control: no-transform`; `/html/etag`: with an ETag;
//! - `/html/big?mb=5`: a large page streamed in 64 KiB chunks; `/html/slow`: first chunk, then
//!   the rest after 1 s (to show the first byte does not wait for the last);
//! - `/upload` (POST): counts the body bytes;
//! - `/stream`: five text chunks 100 ms apart;
//! - `/sleep/{ms}`: `slept {ms} ms`, answered after that long;
//! - `/ws`: a WebSocket echo;
//! - `/status/{code}`: an empty response with that status; `/json`: a JSON body;
//! - `/form/{id}`: GET an editor page (a form with a textarea) that POSTs to itself; POST
//!   answers `saved {n} bytes`.

use std::io::Write;
use std::net::SocketAddr;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, Query, Request};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post};
use axum::Router;
use futures::StreamExt;
use serde_json::json;

/// A sample page with a recognisable end.
pub const PAGE: &str = "<!doctype html><html><head><title>t</title></head><body><h1>Hello</h1><p>content</p></body></html>";

/// A running upstream; stopped when dropped.
pub struct Upstream {
    pub addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl Upstream {
    /// Starts on a free port on the current tokio runtime.
    pub async fn start() -> Upstream {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind upstream");
        let addr = listener.local_addr().expect("upstream addr");
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, router()).await;
        });
        Upstream { addr, task }
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn router() -> Router {
    Router::new()
        .route("/echo", any(echo))
        .route("/echo/{*rest}", any(echo))
        .route("/html/cl", get(html_cl))
        .route("/html/chunked", get(html_chunked))
        .route("/html/gzip", get(html_gzip))
        .route("/html/x-gzip", get(html_x_gzip))
        .route("/html/gzip-script", get(gzip_script))
        .route("/html/gzip-broken", get(html_gzip_broken))
        .route("/html/br-bomb", get(html_br_bomb))
        .route("/html/br", get(html_br))
        .route("/html/zstd", get(html_zstd))
        .route("/html/split", get(html_split))
        .route("/html/split-head", get(html_split_head))
        .route("/html/nobody", get(html_nobody))
        .route("/html/csp-nonce", get(html_csp_nonce))
        .route("/html/csp-strict", get(html_csp_strict))
        .route("/html/no-transform", get(html_no_transform))
        .route("/html/etag", get(html_etag))
        .route("/html/big", get(html_big))
        .route("/html/slow", get(html_slow))
        .route("/upload", post(upload))
        .route("/stream", get(stream))
        .route("/sleep/{ms}", get(sleep))
        .route("/ws", get(ws))
        .route("/status/{code}", any(status))
        .route("/json", get(|| async { axum::Json(json!({"ok": true})) }))
        .route("/form/{id}", get(form_page).post(form_save))
}

async fn echo(req: Request) -> impl IntoResponse {
    let method = req.method().to_string();
    let path = req.uri().path().to_string();
    let query = req.uri().query().map(str::to_string);
    let mut headers = serde_json::Map::new();
    for (k, v) in req.headers() {
        headers.insert(
            k.as_str().to_string(),
            json!(String::from_utf8_lossy(v.as_bytes())),
        );
    }
    let body = axum::body::to_bytes(req.into_body(), usize::MAX)
        .await
        .map(|b| b.len())
        .unwrap_or(0);
    axum::Json(json!({
        "method": method, "path": path, "query": query, "headers": headers, "body_len": body,
    }))
}

fn html_headers() -> [(header::HeaderName, &'static str); 1] {
    [(header::CONTENT_TYPE, "text/html; charset=utf-8")]
}

/// A `text/html` body sent in `coding`, whatever the client asked for.
fn encoded_html(coding: &'static str, body: impl IntoResponse) -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CONTENT_ENCODING, coding),
        ],
        body,
    )
}

async fn html_cl() -> impl IntoResponse {
    (html_headers(), PAGE)
}

fn chunked(parts: Vec<Bytes>, delay: Duration) -> Body {
    let stream = futures::stream::iter(parts).then(move |p| async move {
        tokio::time::sleep(delay).await;
        Ok::<_, std::io::Error>(p)
    });
    Body::from_stream(stream)
}

async fn html_chunked() -> impl IntoResponse {
    let parts = PAGE
        .as_bytes()
        .chunks(17)
        .map(Bytes::copy_from_slice)
        .collect();
    (html_headers(), chunked(parts, Duration::from_millis(1)))
}

pub fn gzip(data: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    enc.write_all(data).expect("gzip");
    enc.finish().expect("gzip")
}

pub fn brotli(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    {
        let mut w = brotli::CompressorWriter::new(&mut out, 4096, 5, 22);
        w.write_all(data).expect("br");
    }
    out
}

async fn html_gzip() -> impl IntoResponse {
    encoded_html("gzip", gzip(PAGE.as_bytes()))
}

async fn html_x_gzip() -> impl IntoResponse {
    encoded_html("x-gzip", gzip(PAGE.as_bytes()))
}

/// The script `/html/gzip-script` serves, before gzip.
pub const SCRIPT: &str = "document.title = 'from the app';\n";

async fn gzip_script() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/javascript"),
            (header::CONTENT_ENCODING, "gzip"),
        ],
        gzip(SCRIPT.as_bytes()),
    )
}

async fn html_gzip_broken() -> impl IntoResponse {
    encoded_html("gzip", PAGE)
}

/// A page of 64 MiB, almost all spaces, compressed once (it is never held inflated). Brotli
/// rather than gzip: gzip inflates at most about 1,000 times, so whether one read of it crosses
/// the proxy's limit would depend on how the network split the body; this one crosses it in
/// any read that holds more than a few bytes of it.
fn br_bomb() -> &'static [u8] {
    static BOMB: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
    BOMB.get_or_init(|| {
        let mut out = Vec::new();
        {
            let mut w = brotli::CompressorWriter::new(&mut out, 4096, 5, 22);
            w.write_all(b"<!doctype html><html><head><title>bomb</title></head><body>")
                .expect("br");
            let spaces = vec![b' '; 1024 * 1024];
            for _ in 0..64 {
                w.write_all(&spaces).expect("br");
            }
            w.write_all(b"</body></html>").expect("br");
        }
        out
    })
}

async fn html_br_bomb() -> impl IntoResponse {
    encoded_html("br", br_bomb())
}

async fn html_br() -> impl IntoResponse {
    encoded_html("br", brotli(PAGE.as_bytes()))
}

/// Not real zstd: the proxy must leave an encoding it does not decode byte-for-byte intact.
pub const ZSTD_BYTES: &[u8] = b"\x28\xb5\x2f\xfd-opaque-zstd-payload";

async fn html_zstd() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/html"),
            (header::CONTENT_ENCODING, "zstd"),
        ],
        ZSTD_BYTES,
    )
}

async fn html_split() -> impl IntoResponse {
    let parts = vec![
        Bytes::from_static(b"<!doctype html><html><body><p>split</p></bo"),
        Bytes::from_static(b"dy></html>"),
    ];
    (html_headers(), chunked(parts, Duration::from_millis(50)))
}

async fn html_split_head() -> impl IntoResponse {
    let parts = vec![
        Bytes::from_static(b"<!doctype html><html><head><title>split</title></he"),
        Bytes::from_static(b"ad><body><p>split</p></body></html>"),
    ];
    (html_headers(), chunked(parts, Duration::from_millis(50)))
}

async fn html_nobody() -> impl IntoResponse {
    (html_headers(), "<p>fragment without a body end tag</p>")
}

async fn html_csp_nonce() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/html"),
            (
                header::CONTENT_SECURITY_POLICY,
                "script-src 'nonce-abc123' 'strict-dynamic'",
            ),
        ],
        PAGE,
    )
}

async fn html_csp_strict() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/html"),
            (
                header::CONTENT_SECURITY_POLICY,
                "script-src https://cdn.example",
            ),
        ],
        PAGE,
    )
}

async fn html_no_transform() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/html"),
            (header::CACHE_CONTROL, "no-transform"),
        ],
        PAGE,
    )
}

async fn html_etag() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/html"),
            (header::ETAG, "\"v1\""),
        ],
        PAGE,
    )
}

#[derive(serde::Deserialize)]
struct Big {
    mb: Option<usize>,
}

/// The body of `/html/big?mb=N`: a document of about N MiB.
pub fn big_page(mb: usize) -> Vec<u8> {
    let mut page = b"<!doctype html><html><body>".to_vec();
    let line = b"<p>Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod.</p>\n";
    while page.len() < mb * 1024 * 1024 {
        page.extend_from_slice(line);
    }
    page.extend_from_slice(b"<p id=\"last\">end</p></body></html>");
    page
}

async fn html_big(Query(q): Query<Big>) -> impl IntoResponse {
    let page = big_page(q.mb.unwrap_or(5));
    let parts = page.chunks(64 * 1024).map(Bytes::copy_from_slice).collect();
    (html_headers(), chunked(parts, Duration::ZERO))
}

async fn html_slow() -> impl IntoResponse {
    let parts = vec![
        Bytes::from_static(b"<!doctype html><html><body><p>first</p>"),
        Bytes::from_static(b"<p>second</p></body></html>"),
    ];
    let stream = futures::stream::iter(parts.into_iter().enumerate()).then(|(i, p)| async move {
        if i > 0 {
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        Ok::<_, std::io::Error>(p)
    });
    (html_headers(), Body::from_stream(stream))
}

/// An editor: a form whose submit is a write to the same protected URL.
async fn form_page(Path(id): Path<u32>) -> impl IntoResponse {
    let page = format!(
        "<!doctype html><html><head><title>Document {id}</title></head><body>\
         <h1>Document {id}</h1><form method=\"post\" action=\"/form/{id}\">\
         <input name=\"title\" id=\"title\" value=\"Draft\">\
         <textarea name=\"body\" id=\"body\"></textarea>\
         <button type=\"submit\" id=\"save\">Save</button></form></body></html>"
    );
    (html_headers(), page)
}

async fn form_save(body: Bytes) -> impl IntoResponse {
    (
        html_headers(),
        format!(
            "<!doctype html><p id=\"saved\">saved {} bytes</p>",
            body.len()
        ),
    )
}

async fn upload(body: Body) -> impl IntoResponse {
    let mut stream = body.into_data_stream();
    let mut total = 0usize;
    while let Some(chunk) = stream.next().await {
        match chunk {
            Ok(c) => total += c.len(),
            Err(_) => return (StatusCode::BAD_REQUEST, "broken upload".to_string()),
        }
    }
    (StatusCode::OK, total.to_string())
}

async fn stream() -> impl IntoResponse {
    let parts = (0..5).map(|i| Bytes::from(format!("tick {i}\n"))).collect();
    (
        [(header::CONTENT_TYPE, "text/plain")],
        chunked(parts, Duration::from_millis(100)),
    )
}

async fn sleep(Path(ms): Path<u64>) -> String {
    tokio::time::sleep(Duration::from_millis(ms)).await;
    format!("slept {ms} ms")
}

async fn ws(upgrade: WebSocketUpgrade) -> Response {
    upgrade.on_upgrade(|mut socket: WebSocket| async move {
        while let Some(Ok(msg)) = socket.recv().await {
            let reply = match msg {
                Message::Text(t) => Message::Text(format!("echo: {t}").into()),
                Message::Binary(b) => Message::Binary(b),
                Message::Close(_) => break,
                _ => continue,
            };
            if socket.send(reply).await.is_err() {
                break;
            }
        }
    })
}

async fn status(Path(code): Path<u16>, _headers: HeaderMap) -> Response {
    StatusCode::from_u16(code)
        .unwrap_or(StatusCode::BAD_REQUEST)
        .into_response()
}
