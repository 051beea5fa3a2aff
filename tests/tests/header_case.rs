//! How the names of the client's headers reach the upstream on a request Latch adds its own
//! headers to (`proxy.header_case`), seen on the wire: a raw client spells the names, and a raw
//! upstream records the request head exactly as it arrived.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tests::fixtures::BARE_DOC_EDIT;
use tests::{token, LatchBuilder};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// An upstream that answers every request `200 ok` and keeps each request head as received.
struct RawUpstream {
    port: u16,
    heads: Arc<Mutex<Vec<String>>>,
}

impl RawUpstream {
    async fn start() -> RawUpstream {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let heads = Arc::new(Mutex::new(Vec::new()));
        let seen = heads.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(serve(stream, seen.clone()));
            }
        });
        RawUpstream { port, heads }
    }

    fn last_head(&self) -> String {
        self.heads
            .lock()
            .unwrap()
            .last()
            .cloned()
            .expect("the request reached the upstream")
    }
}

async fn serve(mut stream: TcpStream, heads: Arc<Mutex<Vec<String>>>) {
    let mut buf = Vec::new();
    loop {
        let mut chunk = [0u8; 4096];
        let Ok(n) = stream.read(&mut chunk).await else {
            return;
        };
        if n == 0 {
            return;
        }
        buf.extend_from_slice(&chunk[..n]);
        while let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head: Vec<u8> = buf.drain(..end + 4).collect();
            heads
                .lock()
                .unwrap()
                .push(String::from_utf8_lossy(&head).into_owned());
            let reply =
                b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nok";
            if stream.write_all(reply).await.is_err() {
                return;
            }
        }
    }
}

/// Sends `GET path` with the header names spelled as given and returns the status line.
async fn get(port: u16, path: &str, headers: &[(&str, &str)]) -> String {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let mut request = format!("GET {path} HTTP/1.1\r\nHost: app.example\r\nConnection: close\r\n");
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut response))
        .await
        .expect("the proxy answered in time")
        .unwrap();
    let response = String::from_utf8_lossy(&response).into_owned();
    response.lines().next().unwrap_or_default().to_string()
}

fn client_headers(tok: &str) -> [(&str, String); 3] {
    [
        ("Authorization", format!("Bearer {tok}")),
        ("X-CSRF-Token", "t0k3n".to_string()),
        ("X-Requested-With", "XMLHttpRequest".to_string()),
    ]
}

async fn head_through(header_case: Option<&str>, path: &str) -> String {
    let upstream = RawUpstream::start().await;
    let mut builder = LatchBuilder::new(upstream.port).rules(BARE_DOC_EDIT);
    if let Some(case) = header_case {
        builder = builder.env("LATCH_PROXY_HEADER_CASE", case);
    }
    let latch = builder.start();
    let tok = token("alice", "Alice", &[]);
    let headers = client_headers(&tok);
    let headers: Vec<(&str, &str)> = headers.iter().map(|(n, v)| (*n, v.as_str())).collect();
    let status = get(latch.port, path, &headers).await;
    assert_eq!(status, "HTTP/1.1 200 OK");
    upstream.last_head()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn by_default_a_held_request_reaches_the_upstream_with_canonical_names() {
    let head = head_through(None, "/docs/1/edit").await;
    assert!(head.starts_with("GET /docs/1/edit HTTP/1.1\r\n"), "{head}");
    assert!(head.contains("\r\nHost: app.example\r\n"), "{head}");
    assert!(head.contains("\r\nx-csrf-token: t0k3n\r\n"), "{head}");
    assert!(
        head.contains("\r\nx-requested-with: XMLHttpRequest\r\n"),
        "{head}"
    );
    assert!(head.contains("\r\nx-latch-user: alice\r\n"), "{head}");
    assert!(head.contains("\r\nx-latch-user-name: Alice\r\n"), "{head}");
    assert!(head.contains("\r\nx-latch-resource: doc:1\r\n"), "{head}");
    assert!(head.contains("\r\nx-latch-access: exclusive\r\n"), "{head}");
    assert!(head.contains("\r\nx-latch-fence: "), "{head}");
    assert!(!head.contains("X-CSRF-Token"), "{head}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn preserve_keeps_the_clients_spelling_on_a_held_request() {
    let head = head_through(Some("preserve"), "/docs/1/edit").await;
    assert!(head.starts_with("GET /docs/1/edit HTTP/1.1\r\n"), "{head}");
    assert!(head.contains("\r\nX-CSRF-Token: t0k3n\r\n"), "{head}");
    assert!(
        head.contains("\r\nX-Requested-With: XMLHttpRequest\r\n"),
        "{head}"
    );
    assert!(head.contains("\r\nx-latch-user: alice\r\n"), "{head}");
    assert!(head.contains("\r\nx-latch-resource: doc:1\r\n"), "{head}");
    assert!(head.contains("\r\nx-latch-fence: "), "{head}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_latch_adds_nothing_to_keeps_the_clients_spelling() {
    let head = head_through(None, "/elsewhere").await;
    assert!(head.starts_with("GET /elsewhere HTTP/1.1\r\n"), "{head}");
    assert!(head.contains("\r\nX-CSRF-Token: t0k3n\r\n"), "{head}");
    assert!(!head.to_ascii_lowercase().contains("x-latch-"), "{head}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_absolute_form_target_goes_upstream_as_the_path_that_was_matched() {
    let head = head_through(None, "http://app.example/docs/1/edit?x=1").await;
    assert!(
        head.starts_with("GET /docs/1/edit?x=1 HTTP/1.1\r\n"),
        "{head}"
    );
    assert!(head.contains("\r\nx-latch-resource: doc:1\r\n"), "{head}");
}
