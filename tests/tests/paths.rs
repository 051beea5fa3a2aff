//! Hostile request paths: every spelling either gets 400 or is treated (and forwarded) as its
//! normalized path, so no spelling reaches a locked page past the lock.
//!
//! HTTP clients tidy paths before sending (`..` resolved, `%2e` decoded), which would hide
//! exactly what is under test, so these requests are written to the socket byte for byte.

use serde_json::Value;
use tests::{token, Latch, LatchBuilder, Upstream};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const RULES: &str = r#"
[[rule]]
id = "doc-edit"
pattern = "/echo/docs/(?P<id>[0-9]+)/edit"
resource = "doc:{id}"
"#;

/// What came back for one raw request.
struct RawResponse {
    status: u16,
    body: Vec<u8>,
}

impl RawResponse {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "status {} body is not JSON ({e}): {}",
                self.status,
                String::from_utf8_lossy(&self.body)
            )
        })
    }
}

/// Sends one HTTP/1.1 request with `target` exactly as given and reads the whole response.
async fn raw_get(port: u16, target: &[u8], bearer: Option<&str>) -> RawResponse {
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    let mut req = b"GET ".to_vec();
    req.extend_from_slice(target);
    req.extend_from_slice(b" HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n");
    if let Some(t) = bearer {
        req.extend_from_slice(format!("Authorization: Bearer {t}\r\n").as_bytes());
    }
    req.extend_from_slice(b"\r\n");
    stream.write_all(&req).await.unwrap();
    let mut raw = Vec::new();
    tokio::time::timeout(
        std::time::Duration::from_secs(10),
        stream.read_to_end(&mut raw),
    )
    .await
    .expect("the proxy answers and closes")
    .unwrap();
    parse_response(&raw)
}

fn parse_response(raw: &[u8]) -> RawResponse {
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no header end in {:?}", String::from_utf8_lossy(raw)));
    let head = String::from_utf8_lossy(&raw[..end]).to_string();
    let mut lines = head.split("\r\n");
    let status: u16 = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("bad status line in {head:?}"));
    let chunked = lines.any(|l| {
        let l = l.to_ascii_lowercase();
        l.starts_with("transfer-encoding:") && l.contains("chunked")
    });
    let rest = &raw[end + 4..];
    let body = if chunked {
        dechunk(rest)
    } else {
        rest.to_vec()
    };
    RawResponse { status, body }
}

fn dechunk(mut data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let Some(eol) = data.windows(2).position(|w| w == b"\r\n") else {
            return out;
        };
        let size_text = String::from_utf8_lossy(&data[..eol]).to_string();
        let size = usize::from_str_radix(size_text.split(';').next().unwrap().trim(), 16)
            .unwrap_or_else(|_| panic!("bad chunk size {size_text:?}"));
        if size == 0 {
            return out;
        }
        let start = eol + 2;
        out.extend_from_slice(&data[start..start + size]);
        data = &data[start + size + 2..];
    }
}

struct Env {
    _upstream: Upstream,
    latch: Latch,
    alice: String,
    bob: String,
}

/// A proxy where alice holds `doc:1`.
async fn start_with_doc1_held() -> Env {
    let upstream = Upstream::start().await;
    let latch = LatchBuilder::new(upstream.port()).rules(RULES).start();
    let env = Env {
        _upstream: upstream,
        latch,
        alice: token("alice", "Alice", &[]),
        bob: token("bob", "Bob", &[]),
    };
    let held = raw_get(env.latch.port, b"/echo/docs/1/edit", Some(&env.alice)).await;
    assert_eq!(held.status, 200);
    env
}

/// Spellings of `/echo/docs/1/edit` (or of a path that normalizes to it).
const SPELLINGS_OF_DOC1: &[&str] = &[
    "/echo/docs/1/edit",
    "/echo/docs/1/edit/",
    "/echo/docs//1/edit",
    "//echo/docs/1/edit",
    "/echo/docs/1//edit//",
    "/echo/docs/./1/edit",
    "/echo/./docs/1/./edit",
    "/echo/docs/2/../1/edit",
    "/echo/docs/1/edit/x/..",
    "/echo/docs/1/x/../edit",
    "/x/y/../../echo/docs/1/edit",
    "/../echo/docs/1/edit",
    "/../../../../echo/docs/1/edit",
    "/echo/docs/%31/edit",
    "/echo/docs/1/%65dit",
    "/echo/docs/1/%65%64%69%74",
    "/%65cho/docs/1/edit",
    "/echo/docs/2/%2e%2e/1/edit",
    "/echo/docs/2/%2E%2E/1/edit",
    "/echo/docs/2/.%2e/1/edit",
    "/echo/docs/%2e/1/edit",
    "/echo/docs/2/%2e%2e//1/edit",
    "/echo/docs/2//..//1/edit",
];

/// Spellings that must be refused outright.
const REFUSED: &[&str] = &[
    "/echo/docs/1%2Fedit",
    "/echo/docs/1%2fedit",
    "/echo/docs%2F1/edit",
    "/echo/docs/1/edit%00",
    "/echo/docs/%00/1/edit",
    "/echo/docs/1%5Cedit",
    "/echo/docs/1%5cedit",
    "/echo/docs\\1\\edit",
    "/echo/docs/1/edit\\",
    "/echo/docs/1/edit%",
    "/echo/docs/1/edit%2",
    "/echo/docs/%zz/edit",
    "/echo/docs/%g1/edit",
    "/echo/docs/2/..;/1/edit",
    "/echo/docs/2/..;x=1/1/edit",
    "/echo/docs/1/.;/edit",
    "/echo/docs/2/%2e%2e;/1/edit",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_spelling_of_a_locked_path_is_locked_for_another_user() {
    let env = start_with_doc1_held().await;
    for spelling in SPELLINGS_OF_DOC1 {
        let resp = raw_get(env.latch.port, spelling.as_bytes(), Some(&env.bob)).await;
        assert_eq!(resp.status, 423, "{spelling} let bob past alice's lock");
        let doc = resp.json();
        assert_eq!(doc["resource"], "doc:1", "{spelling}");
        assert_eq!(doc["holder"]["id"], "alice", "{spelling}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_holder_reaches_the_app_at_the_normalized_path() {
    let env = start_with_doc1_held().await;
    for spelling in SPELLINGS_OF_DOC1 {
        let resp = raw_get(env.latch.port, spelling.as_bytes(), Some(&env.alice)).await;
        assert_eq!(resp.status, 200, "{spelling}");
        let echo = resp.json();
        let forwarded = echo["path"].as_str().unwrap();
        assert!(
            forwarded == "/echo/docs/1/edit" || forwarded == "/echo/docs/1/edit/",
            "{spelling} was forwarded as {forwarded}"
        );
        assert_eq!(echo["headers"]["x-latch-resource"], "doc:1", "{spelling}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_spellings_get_400_for_everyone() {
    let env = start_with_doc1_held().await;
    for spelling in REFUSED {
        for (who, tok) in [
            ("alice", Some(&env.alice)),
            ("bob", Some(&env.bob)),
            ("anonymous", None),
        ] {
            let resp = raw_get(env.latch.port, spelling.as_bytes(), tok.map(String::as_str)).await;
            assert_eq!(
                resp.status,
                400,
                "{spelling} as {who}: {}",
                String::from_utf8_lossy(&resp.body)
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raw_nul_bytes_in_the_target_are_refused() {
    let env = start_with_doc1_held().await;
    for target in [&b"/echo/docs/1/edit\0"[..], &b"/echo/docs/\x001/edit"[..]] {
        let resp = raw_get(env.latch.port, target, Some(&env.bob)).await;
        assert_eq!(resp.status, 400, "{:?}", String::from_utf8_lossy(target));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unmatched_paths_are_forwarded_normalized_too() {
    let env = start_with_doc1_held().await;
    for (sent, forwarded) in [
        ("/echo//free/./page", "/echo/free/page"),
        ("/echo/free/x/../page", "/echo/free/page"),
        ("/echo/%66ree/page", "/echo/free/page"),
        ("/echo/free/a%2db", "/echo/free/a-b"),
        // Reserved characters stay encoded, with uppercase hex.
        ("/echo/free/a%3fb", "/echo/free/a%3Fb"),
        ("/echo/free/%252e%252e/page", "/echo/free/%252e%252e/page"),
    ] {
        let resp = raw_get(env.latch.port, sent.as_bytes(), None).await;
        assert_eq!(resp.status, 200, "{sent}");
        assert_eq!(resp.json()["path"], forwarded, "{sent}");
    }
    // The query is left exactly as sent.
    let resp = raw_get(env.latch.port, b"/echo//free?a=%2F..%2F&b=/../", None).await;
    let echo = resp.json();
    assert_eq!(echo["path"], "/echo/free");
    assert_eq!(echo["query"], "a=%2F..%2F&b=/../");
}

/// Proxies may receive absolute-form targets; whatever the server makes of them, such a
/// spelling must not carry another user past the lock or reach the app unnormalized.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn absolute_form_targets_are_never_a_bypass() {
    let env = start_with_doc1_held().await;
    let target = format!("http://127.0.0.1:{}/echo/docs/2/../1/edit", env.latch.port);
    let resp = raw_get(env.latch.port, target.as_bytes(), Some(&env.bob)).await;
    assert!(
        resp.status == 400 || resp.status == 423,
        "bob got {}",
        resp.status
    );
    let resp = raw_get(env.latch.port, target.as_bytes(), Some(&env.alice)).await;
    match resp.status {
        400 => {}
        200 => assert_eq!(resp.json()["path"], "/echo/docs/1/edit"),
        other => panic!("alice got {other}"),
    }
}
