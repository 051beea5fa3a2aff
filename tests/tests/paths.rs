//! Hostile request paths: every spelling either gets 400 or is treated (and forwarded) as its
//! normalized path, so no spelling reaches a locked page past the lock.
//!
//! HTTP clients tidy paths before sending (`..` resolved, `%2e` decoded), which would hide
//! exactly what is under test, so these requests are written to the socket byte for byte.

use serde_json::Value;
use tests::fixtures::DOC_EDIT;
use tests::{token, Latch, LatchBuilder, Upstream};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

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
    let auth = bearer.map(|t| format!("Bearer {t}"));
    let mut headers = vec![("Host", "127.0.0.1")];
    if let Some(auth) = &auth {
        headers.push(("Authorization", auth));
    }
    raw_request(port, "GET", target, &headers).await
}

/// Sends `method target HTTP/1.1` with exactly `headers` (plus `Connection: close`) and reads
/// the whole response.
async fn raw_request(
    port: u16,
    method: &str,
    target: &[u8],
    headers: &[(&str, &str)],
) -> RawResponse {
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    let mut req = format!("{method} ").into_bytes();
    req.extend_from_slice(target);
    req.extend_from_slice(b" HTTP/1.1\r\nConnection: close\r\n");
    for (name, value) in headers {
        req.extend_from_slice(format!("{name}: {value}\r\n").as_bytes());
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
    let latch = LatchBuilder::new(upstream.port()).rules(DOC_EDIT).start();
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

/// A target that is not origin-form, absolute-form or `OPTIONS *` is refused by the proxy
/// itself, whoever asks: an app's router may find a path in it that the rules never saw.
/// Latch answers with a problem+json 400. pingora's own parser refuses a few targets before
/// Latch sees them (user information or a host other than `Host` in a URL, bytes that are not
/// UTF-8), and those get pingora's bodiless 400 and a closed connection. Either way nothing is
/// forwarded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn targets_that_are_not_a_path_get_400_from_the_proxy() {
    let env = start_with_doc1_held().await;
    let authority_form = format!("127.0.0.1:{}", env.latch.port);
    let targets: Vec<&[u8]> = vec![
        b"echo/docs/1/edit",
        b"x:/echo/docs/1/edit",
        b"a:echo/docs/1/edit",
        b"%2Fecho/docs/1/edit",
        b"%2fecho/docs/1/edit",
        b"?x=1",
        b"urn:echo:docs:1",
        b"ftp://127.0.0.1/echo/docs/1/edit",
        b"http://bob@127.0.0.1/echo/docs/1/edit",
        b"*",
        b"/echo/docs/\xff/edit",
        authority_form.as_bytes(),
    ];
    let mut from_latch = 0;
    for target in targets {
        for (who, tok) in [("bob", Some(&env.bob)), ("anonymous", None)] {
            let resp = raw_get(env.latch.port, target, tok.map(String::as_str)).await;
            let shown = String::from_utf8_lossy(target);
            assert_eq!(resp.status, 400, "{shown} as {who}");
            if !resp.body.is_empty() {
                let doc = resp.json();
                assert_eq!(doc["status"], 400, "{shown}");
                assert_eq!(doc["title"], "Bad request target", "{shown}: {doc}");
                from_latch += 1;
            }
        }
    }
    assert!(
        from_latch >= 18,
        "only {from_latch} refusals came from Latch"
    );
}

/// An absolute-form target goes on in origin-form, under the lock like any other spelling,
/// when its authority is the `Host` the client sent (or it sent none); another authority is
/// refused, so the app never sees a host the proxy did not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn absolute_form_targets_go_on_in_origin_form_under_the_lock() {
    let env = start_with_doc1_held().await;
    let host = format!("127.0.0.1:{}", env.latch.port);
    let target = format!("http://{host}/echo/docs/2/../1/edit");
    let bob = format!("Bearer {}", env.bob);
    let alice = format!("Bearer {}", env.alice);

    let resp = raw_request(
        env.latch.port,
        "GET",
        target.as_bytes(),
        &[("Host", &host), ("Authorization", &bob)],
    )
    .await;
    assert_eq!(resp.status, 423, "bob got past alice's lock");
    assert_eq!(resp.json()["resource"], "doc:1");

    for headers in [
        vec![("Host", host.as_str()), ("Authorization", alice.as_str())],
        vec![("Authorization", alice.as_str())],
    ] {
        let resp = raw_request(env.latch.port, "GET", target.as_bytes(), &headers).await;
        assert_eq!(resp.status, 200, "alice with {headers:?}");
        let echo = resp.json();
        assert_eq!(echo["path"], "/echo/docs/1/edit");
        assert_eq!(echo["headers"]["host"], host.as_str());
        assert_eq!(echo["headers"]["x-latch-resource"], "doc:1");
    }

    let upper = format!("HTTP://{host}/echo/free?q=1");
    let resp = raw_request(env.latch.port, "GET", upper.as_bytes(), &[("Host", &host)]).await;
    assert_eq!(resp.status, 200);
    assert_eq!(resp.json()["path"], "/echo/free");
    assert_eq!(resp.json()["query"], "q=1");

    // Another authority than `Host`: pingora's parser refuses it before Latch sees it.
    let elsewhere = "http://other.example/echo/docs/1/edit";
    let resp = raw_request(
        env.latch.port,
        "GET",
        elsewhere.as_bytes(),
        &[("Host", &host), ("Authorization", &bob)],
    )
    .await;
    assert_eq!(resp.status, 400);
    assert!(resp.body.is_empty());
}

/// `OPTIONS *` asks about the server as a whole and is forwarded; `*` with any other method is
/// refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_asterisk_is_forwarded_for_options_only() {
    let env = start_with_doc1_held().await;
    let resp = raw_request(env.latch.port, "OPTIONS", b"*", &[("Host", "127.0.0.1")]).await;
    assert_ne!(resp.status, 400, "OPTIONS * was refused");
    for method in ["GET", "POST", "DELETE"] {
        let resp = raw_request(env.latch.port, method, b"*", &[("Host", "127.0.0.1")]).await;
        assert_eq!(resp.status, 400, "{method} *");
        assert_eq!(resp.json()["title"], "Bad request target");
    }
}

/// Rules match the path without its `;` parameters, as servlet containers route it, and the
/// app still receives them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn path_parameters_are_ignored_by_the_rules_and_kept_for_the_app() {
    let env = start_with_doc1_held().await;
    let spellings = [
        "/echo/docs;x/1/edit",
        "/echo/docs/1;jsessionid=A/edit",
        "/echo/docs/1/edit;x",
        "/echo/docs/1/edit/;jsessionid=A",
        "/echo;a/docs;b/1;c/edit;d",
        "/echo/docs/01;x/../1/edit",
    ];
    for spelling in spellings {
        let resp = raw_get(env.latch.port, spelling.as_bytes(), Some(&env.bob)).await;
        assert_eq!(resp.status, 423, "{spelling} let bob past alice's lock");
        assert_eq!(resp.json()["resource"], "doc:1", "{spelling}");
    }
    let resp = raw_get(
        env.latch.port,
        b"/echo/docs/1;jsessionid=A/edit",
        Some(&env.alice),
    )
    .await;
    assert_eq!(resp.status, 200);
    assert_eq!(resp.json()["path"], "/echo/docs/1;jsessionid=A/edit");
    for refused in ["/;x/echo/docs/1/edit", "/echo/;x/docs/1/edit"] {
        let resp = raw_get(env.latch.port, refused.as_bytes(), Some(&env.bob)).await;
        assert_eq!(resp.status, 400, "{refused}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn path_parameters_can_be_refused_outright() {
    let upstream = Upstream::start().await;
    let latch = LatchBuilder::new(upstream.port())
        .rules(DOC_EDIT)
        .env("LATCH_PROXY_PATH_PARAMETERS", "reject")
        .start();
    let bob = token("bob", "Bob", &[]);
    for spelling in ["/echo/docs/1;x/edit", "/echo/free;jsessionid=A"] {
        let resp = raw_get(latch.port, spelling.as_bytes(), Some(&bob)).await;
        assert_eq!(resp.status, 400, "{spelling}");
        assert!(resp.json()["detail"].as_str().unwrap().contains("';'"));
    }
    let resp = raw_get(latch.port, b"/echo/free", None).await;
    assert_eq!(resp.status, 200);
}

/// Digits of other scripts and characters with an ASCII compatibility form are refused, raw or
/// encoded: apps read `/docs/１/edit` as doc 1, and no rule could match it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lookalike_characters_are_refused() {
    let env = start_with_doc1_held().await;
    for spelling in [
        &b"/echo/docs/%EF%BC%91/edit"[..],
        b"/echo/docs/%D9%A1/edit",
        b"/echo/docs/%F0%9D%9F%8F/edit",
        b"/echo/docs/%C2%B9/edit",
        b"/echo/docs/1/%EF%BD%85dit",
        "/echo/docs/\u{FF11}/edit".as_bytes(),
    ] {
        let resp = raw_get(env.latch.port, spelling, Some(&env.bob)).await;
        let shown = String::from_utf8_lossy(spelling);
        assert_eq!(resp.status, 400, "{shown}");
        assert_eq!(resp.json()["title"], "Bad request path", "{shown}");
    }
    let resp = raw_get(env.latch.port, b"/echo/wiki/%C3%A9t%C3%A9", None).await;
    assert_eq!(resp.status, 200, "ordinary non-ASCII text passes");
}

/// A typed capture locks one resource for every spelling of the id an app reads as one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn typed_captures_lock_every_spelling_of_one_id() {
    let upstream = Upstream::start().await;
    let latch = LatchBuilder::new(upstream.port())
        .rules(&DOC_EDIT.replace("(?P<id>[0-9]+)", "{id:int}"))
        .start();
    let alice = token("alice", "Alice", &[]);
    let bob = token("bob", "Bob", &[]);
    let held = raw_get(latch.port, b"/echo/docs/001/edit", Some(&alice)).await;
    assert_eq!(held.status, 200);
    assert_eq!(held.json()["headers"]["x-latch-resource"], "doc:1");
    for spelling in [
        "/echo/docs/1/edit",
        "/echo/docs/01/edit",
        "/echo/docs/+1/edit",
        "/echo/docs/%2B1/edit",
        "/echo/docs/%2b1/edit",
    ] {
        let resp = raw_get(latch.port, spelling.as_bytes(), Some(&bob)).await;
        assert_eq!(resp.status, 423, "{spelling} let bob past alice's lock");
        assert_eq!(resp.json()["resource"], "doc:1", "{spelling}");
    }
}

/// Any header an app server could read as one of Latch's is removed, however it is spelled.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spoofed_latch_headers_never_reach_the_app_in_any_spelling() {
    let env = start_with_doc1_held().await;
    let spoofs = [
        ("X-Latch-User", "mallory"),
        ("x-latch-user", "mallory"),
        ("X_Latch_User", "mallory"),
        ("X-Latch_User", "mallory"),
        ("X_LATCH_RESOURCE", "doc:1"),
        ("x_latch-fence", "99"),
        ("X-Latch-Anything", "x"),
    ];
    for path in [&b"/echo/free"[..], b"/echo/docs/1/edit"] {
        let alice = format!("Bearer {}", env.alice);
        let mut headers = vec![("Host", "127.0.0.1"), ("Authorization", alice.as_str())];
        headers.extend(spoofs.iter().copied());
        let resp = raw_request(env.latch.port, "GET", path, &headers).await;
        assert_eq!(resp.status, 200);
        let echo = resp.json();
        let forwarded = echo["headers"].as_object().unwrap();
        for name in forwarded.keys() {
            let folded = name.to_ascii_lowercase().replace('_', "-");
            if folded.starts_with("x-latch-") {
                let value = &forwarded[name];
                assert!(
                    value != "mallory" && value != "99" && value != "x",
                    "{name}: {value} reached the app for {}",
                    String::from_utf8_lossy(path)
                );
            }
        }
        assert!(!forwarded.contains_key("x_latch_user"));
        assert!(!forwarded.contains_key("x-latch_user"));
        assert!(!forwarded.contains_key("x-latch-anything"));
    }
}
