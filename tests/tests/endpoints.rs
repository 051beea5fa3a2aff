//! The proxy's own endpoints under `/__latch`: status, release (with and without `pagehide`)
//! and takeover, their permissions and same-origin checks, and the displaced holder who must
//! reload before writing again.

use std::sync::LazyLock;
use std::time::{Duration, Instant};

use reqwest::{Response, StatusCode};
use serde_json::{json, Value};
use tests::fixtures::{DOC_EDIT, DOC_SAVE, TAB};
use tests::{client, token, Latch, LatchBuilder, Upstream};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

/// Reports only editors may take over.
const REPORT: &str = r#"
[[rule]]
id = "report"
pattern = "/echo/reports/(?P<id>[0-9]+)"
resource = "report:{id}"
takeover_roles = ["editor"]
"#;

static RULES: LazyLock<String> = LazyLock::new(|| [DOC_EDIT, DOC_SAVE, REPORT, TAB].concat());

struct Env {
    _upstream: Upstream,
    latch: Latch,
    http: reqwest::Client,
    alice: String,
    bob: String,
    admin: String,
}

async fn start() -> Env {
    let upstream = Upstream::start().await;
    let latch = LatchBuilder::new(upstream.port()).rules(&RULES).start();
    Env {
        _upstream: upstream,
        latch,
        http: client(),
        alice: token("alice", "Alice", &[]),
        bob: token("bob", "Bob", &[]),
        admin: token("root", "Root", &["admin"]),
    }
}

fn fence_of(echo: &Value) -> u64 {
    echo["headers"]["x-latch-fence"]
        .as_str()
        .expect("a fence upstream")
        .parse()
        .unwrap()
}

fn code_of(doc: &Value) -> &str {
    doc["code"].as_str().unwrap_or("")
}

fn parse_time(text: &Value) -> OffsetDateTime {
    OffsetDateTime::parse(text.as_str().expect("a time string"), &Rfc3339).unwrap()
}

impl Env {
    async fn open(&self, method: &str, path: &str, tok: &str) -> Response {
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        self.http
            .request(method, self.latch.url(path))
            .bearer_auth(tok)
            .send()
            .await
            .unwrap()
    }

    /// Opens `path` and asserts that it reached the app; returns the fence the app was given.
    async fn hold(&self, path: &str, tok: &str) -> u64 {
        let resp = self.open("GET", path, tok).await;
        let status = resp.status();
        let body: Value = resp.json().await.unwrap();
        assert_eq!(status, StatusCode::OK, "{path}: {body}");
        fence_of(&body)
    }

    async fn status(&self, path: &str, tok: &str) -> Value {
        let resp = self
            .http
            .get(self.latch.url("/__latch/status"))
            .query(&[("path", path)])
            .bearer_auth(tok)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        assert!(resp.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/json"));
        resp.json().await.unwrap()
    }

    async fn action(&self, name: &str, tok: &str, body: Value) -> (StatusCode, Value) {
        self.action_with(name, tok, body, &[]).await
    }

    async fn action_with(
        &self,
        name: &str,
        tok: &str,
        body: Value,
        headers: &[(&str, &str)],
    ) -> (StatusCode, Value) {
        let mut req = self
            .http
            .post(self.latch.url(&format!("/__latch/{name}")))
            .bearer_auth(tok)
            .header("content-type", "text/plain;charset=UTF-8")
            .body(body.to_string());
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status();
        let text = resp.text().await.unwrap();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_reports_free_and_held_locks() {
    let env = start().await;
    let free = env.status("/echo/docs/1/edit", &env.bob).await;
    assert_eq!(free["matched"], true);
    assert_eq!(free["rule"], "doc-edit");
    assert_eq!(free["resource"], "doc:1");
    assert_eq!(free["state"], "free");
    assert!(free.get("holder").is_none_or(Value::is_null), "{free}");

    let fence = env.hold("/echo/docs/1/edit", &env.alice).await;
    let held = env.status("/echo/docs/1/edit", &env.bob).await;
    assert_eq!(held["state"], "held");
    assert_eq!(held["holder"], json!({ "id": "alice", "name": "Alice" }));
    assert_eq!(held["you"], false);
    assert_eq!(held["fence"], fence);
    let since = parse_time(&held["since"]);
    let expires = parse_time(&held["expires"]);
    let lease = (expires - since).whole_seconds();
    assert!((29..=30).contains(&lease), "lease {lease}");
    assert_eq!(
        env.status("/echo/docs/1/edit", &env.alice).await["you"],
        true
    );

    // The path is normalized before matching, as for a request.
    let spelled = env.status("/echo/docs//2/../1/%65dit", &env.bob).await;
    assert_eq!(spelled["resource"], "doc:1");
    assert_eq!(spelled["state"], "held");

    let unmatched = env.status("/echo/elsewhere", &env.bob).await;
    assert_eq!(unmatched["matched"], false);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_refuses_bad_queries_and_anonymous_callers() {
    let env = start().await;
    let base = env.latch.url("/__latch/status");
    let resp = env
        .http
        .get(&base)
        .bearer_auth(&env.bob)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    let resp = env
        .http
        .get(format!("{base}?path=/echo/docs/1%252Fedit"))
        .bearer_auth(&env.bob)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    let resp = env
        .http
        .get(format!("{base}?path=/echo/docs/1/edit"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    let resp = env
        .http
        .post(format!("{base}?path=/echo/docs/1/edit"))
        .bearer_auth(&env.bob)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::METHOD_NOT_ALLOWED);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn release_frees_the_lock_only_for_its_holder() {
    let env = start().await;
    let first = env.hold("/echo/docs/1/edit", &env.alice).await;

    let (status, doc) = env
        .action("release", &env.bob, json!({ "resource": "doc:1" }))
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{doc}");
    assert_eq!(code_of(&doc), "not_holder");
    assert_eq!(
        env.status("/echo/docs/1/edit", &env.bob).await["holder"]["id"],
        "alice"
    );

    let (status, _) = env
        .action("release", &env.alice, json!({ "resource": "doc:1" }))
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_eq!(
        env.status("/echo/docs/1/edit", &env.bob).await["state"],
        "free"
    );

    // A voluntary release leaves nothing stale: the former holder may write after a re-claim,
    // and the next holder gets a newer fence.
    let second = env.hold("/echo/docs/1/edit", &env.bob).await;
    assert!(second > first);

    // Releasing what is already free is not an error.
    let (status, _) = env
        .action("release", &env.alice, json!({ "resource": "doc:9" }))
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pagehide_release_only_shortens_the_lease() {
    let env = start().await;
    let fence = env.hold("/echo/docs/1/edit", &env.alice).await;
    let (status, _) = env
        .action(
            "release",
            &env.alice,
            json!({ "resource": "doc:1", "pagehide": true }),
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);

    let held = env.status("/echo/docs/1/edit", &env.bob).await;
    assert_eq!(held["state"], "held");
    assert_eq!(held["holder"]["id"], "alice");
    let left = parse_time(&held["expires"]) - OffsetDateTime::now_utc();
    assert!(
        left <= time::Duration::seconds(3) && left > time::Duration::ZERO,
        "{left} left after pagehide"
    );

    // A reload re-claims at once and keeps the fence, with the full lease again.
    assert_eq!(env.hold("/echo/docs/1/edit", &env.alice).await, fence);
    let renewed = env.status("/echo/docs/1/edit", &env.bob).await;
    let left = parse_time(&renewed["expires"]) - OffsetDateTime::now_utc();
    assert!(
        left > time::Duration::seconds(20),
        "{left} left after reload"
    );

    // Without a reload the shortened lease runs out and the next person gets it.
    env.action(
        "release",
        &env.alice,
        json!({ "resource": "doc:1", "pagehide": true }),
    )
    .await;
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let resp = env.open("GET", "/echo/docs/1/edit", &env.bob).await;
        if resp.status() == StatusCode::OK {
            let body: Value = resp.json().await.unwrap();
            assert!(fence_of(&body) > fence);
            break;
        }
        assert_eq!(resp.status(), StatusCode::LOCKED);
        assert!(
            Instant::now() < deadline,
            "the lock outlived its pagehide grace"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn takeover_needs_a_takeover_role_and_a_held_lock() {
    let env = start().await;
    let (status, doc) = env
        .action("takeover", &env.admin, json!({ "resource": "doc:1" }))
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{doc}");
    assert_eq!(code_of(&doc), "not_locked");

    let first = env.hold("/echo/docs/1/edit", &env.alice).await;
    let (status, doc) = env
        .action("takeover", &env.bob, json!({ "resource": "doc:1" }))
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{doc}");
    assert_eq!(code_of(&doc), "forbidden");
    assert_eq!(
        env.status("/echo/docs/1/edit", &env.bob).await["holder"]["id"],
        "alice"
    );

    let (status, lock) = env
        .action("takeover", &env.admin, json!({ "resource": "doc:1" }))
        .await;
    assert_eq!(status, StatusCode::OK, "{lock}");
    assert_eq!(lock["resource"], "doc:1");
    assert_eq!(lock["state"], "held");
    assert_eq!(lock["holder"], json!({ "id": "root", "name": "Root" }));
    assert_eq!(lock["you"], true);
    let taken = lock["fence"].as_u64().unwrap();
    assert!(taken > first);

    let status_now = env.status("/echo/docs/1/edit", &env.admin).await;
    assert_eq!(status_now["holder"]["id"], "root");
    assert_eq!(status_now["fence"], taken);
    // The new holder's requests carry the new fence; alice is now the one locked out.
    assert_eq!(env.hold("/echo/docs/1/edit", &env.admin).await, taken);
    let resp = env.open("GET", "/echo/docs/1/edit", &env.alice).await;
    assert_eq!(resp.status(), StatusCode::LOCKED);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn takeover_roles_come_from_the_rule() {
    let env = start().await;
    env.hold("/echo/reports/4", &env.alice).await;
    // This rule names only "editor": the admin role is not enough here.
    let (status, _) = env
        .action("takeover", &env.admin, json!({ "resource": "report:4" }))
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let editor = token("erin", "Erin", &["viewer", "editor"]);
    let (status, lock) = env
        .action("takeover", &editor, json!({ "resource": "report:4" }))
        .await;
    assert_eq!(status, StatusCode::OK, "{lock}");
    assert_eq!(lock["holder"]["id"], "erin");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_user_may_move_a_session_lock_to_another_tab() {
    let env = start().await;
    let tab = |sid: &str| format!("latch_sid={sid}");
    let one = "11111111111111111111111111111111";
    let two = "22222222222222222222222222222222";
    let resp = env
        .http
        .get(env.latch.url("/echo/tab/5"))
        .bearer_auth(&env.alice)
        .header("cookie", tab(one))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);

    // Bob has no role and no session of the holder's: refused.
    let (status, _) = env
        .action("takeover", &env.bob, json!({ "resource": "tab:5" }))
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);

    let (status, lock) = env
        .action_with(
            "takeover",
            &env.alice,
            json!({ "resource": "tab:5" }),
            &[("cookie", &tab(two))],
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{lock}");
    assert_eq!(lock["holder"]["id"], "alice");

    // The first tab is now the stale one.
    let stale = env
        .http
        .post(env.latch.url("/echo/tab/5"))
        .bearer_auth(&env.alice)
        .header("cookie", tab(one))
        .send()
        .await
        .unwrap();
    assert_eq!(stale.status(), StatusCode::LOCKED);
    let moved = env
        .http
        .post(env.latch.url("/echo/tab/5"))
        .bearer_auth(&env.alice)
        .header("cookie", tab(two))
        .send()
        .await
        .unwrap();
    assert_eq!(moved.status(), StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_displaced_holder_cannot_write_until_it_reloads() {
    let env = start().await;
    let first = env.hold("/echo/docs/1/edit", &env.alice).await;
    let (status, _) = env
        .action("takeover", &env.admin, json!({ "resource": "doc:1" }))
        .await;
    assert_eq!(status, StatusCode::OK);

    let save = env.open("POST", "/echo/docs/1/save", &env.alice).await;
    assert_eq!(save.status(), StatusCode::LOCKED);
    let doc: Value = save.json().await.unwrap();
    assert_eq!(doc["holder"]["id"], "root");

    // Even once the resource is free again, the stale tab's write is refused...
    let (status, _) = env
        .action("release", &env.admin, json!({ "resource": "doc:1" }))
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    for method in ["POST", "PUT", "DELETE"] {
        let path = if method == "POST" {
            "/echo/docs/1/save"
        } else {
            "/echo/docs/1/edit"
        };
        let resp = env.open(method, path, &env.alice).await;
        assert_eq!(resp.status(), StatusCode::LOCKED, "{method}");
        let doc: Value = resp.json().await.unwrap();
        assert_eq!(doc["title"], "Lock lost", "{method}: {doc}");
    }
    assert_eq!(
        env.status("/echo/docs/1/edit", &env.bob).await["state"],
        "free"
    );

    // ...until it loads the page again, which claims under a new fence.
    let again = env.hold("/echo/docs/1/edit", &env.alice).await;
    assert!(again > first);
    let save = env.open("POST", "/echo/docs/1/save", &env.alice).await;
    assert_eq!(save.status(), StatusCode::OK);
    let body: Value = save.json().await.unwrap();
    assert_eq!(fence_of(&body), again);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn release_and_takeover_refuse_foreign_origins() {
    let env = start().await;
    env.hold("/echo/docs/1/edit", &env.alice).await;
    let own = format!("http://127.0.0.1:{}", env.latch.port);
    let foreign: &[&[(&str, &str)]] = &[
        &[("origin", "http://evil.example")],
        &[("origin", "null")],
        &[("origin", "https://127.0.0.1")],
        &[("origin", "http://127.0.0.1:1")],
        &[("sec-fetch-site", "cross-site")],
        &[("sec-fetch-site", "same-site")],
        &[("sec-fetch-site", "cross-site"), ("origin", own.as_str())],
    ];
    for headers in foreign {
        for (name, tok) in [("release", &env.alice), ("takeover", &env.admin)] {
            let (status, doc) = env
                .action_with(name, tok, json!({ "resource": "doc:1" }), headers)
                .await;
            assert_eq!(status, StatusCode::FORBIDDEN, "{name} {headers:?}: {doc}");
        }
    }
    assert_eq!(
        env.status("/echo/docs/1/edit", &env.bob).await["holder"]["id"],
        "alice"
    );

    let same: &[(&str, &str)] = &[("origin", &own), ("sec-fetch-site", "same-origin")];
    let (status, lock) = env
        .action_with("takeover", &env.admin, json!({ "resource": "doc:1" }), same)
        .await;
    assert_eq!(status, StatusCode::OK, "{lock}");
    let (status, _) = env
        .action_with("release", &env.admin, json!({ "resource": "doc:1" }), same)
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn actions_refuse_bad_bodies_methods_and_anonymous_callers() {
    let env = start().await;
    env.hold("/echo/docs/1/edit", &env.alice).await;
    let url = env.latch.url("/__latch/release");

    let resp = env
        .http
        .post(&url)
        .body("{\"resource\":\"doc:1\"}")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    let resp = env
        .http
        .post(&url)
        .bearer_auth(&env.alice)
        .body("not json")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    let resp = env
        .http
        .post(&url)
        .bearer_auth(&env.alice)
        .body(format!("{{\"resource\":\"{}\"}}", "x".repeat(10_000)))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::PAYLOAD_TOO_LARGE);
    let resp = env
        .http
        .get(&url)
        .bearer_auth(&env.alice)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::METHOD_NOT_ALLOWED);
    let resp = env
        .http
        .get(env.latch.url("/__latch/nothing-here"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);

    assert_eq!(
        env.status("/echo/docs/1/edit", &env.bob).await["holder"]["id"],
        "alice"
    );
}

/// RFC 9110 forbids Content-Length on 204, and on 304 unless it equals the full response's:
/// a cache that believed a `Content-Length: 0` on a 304 would store an empty banner script.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodiless_answers_carry_no_content_length() {
    let env = start().await;
    env.hold("/echo/docs/1/edit", &env.alice).await;
    let release = env
        .http
        .post(env.latch.url("/__latch/release"))
        .bearer_auth(&env.alice)
        .body(r#"{"resource":"doc:1"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(release.status(), StatusCode::NO_CONTENT);
    assert_eq!(release.headers().get("content-length"), None);

    let script = env
        .http
        .get(env.latch.url("/__latch/banner.js"))
        .send()
        .await
        .unwrap();
    assert_eq!(script.status(), StatusCode::OK);
    let etag = script.headers()["etag"].clone();
    let length = script.bytes().await.unwrap().len().to_string();
    let revalidated = env
        .http
        .get(env.latch.url("/__latch/banner.js"))
        .header("if-none-match", etag.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(revalidated.status(), StatusCode::NOT_MODIFIED);
    assert_eq!(revalidated.headers()["etag"], etag);
    if let Some(sent) = revalidated.headers().get("content-length") {
        assert_eq!(sent.to_str().unwrap(), length);
    }

    // The connection stays usable after each of them.
    let after = env.open("GET", "/echo/docs/1/edit", &env.bob).await;
    assert_eq!(after.status(), StatusCode::OK);
}

/// Reads one response head (and its Content-Length body) from a kept-alive connection.
async fn read_response(stream: &mut tokio::net::TcpStream) -> String {
    use tokio::io::AsyncReadExt;
    let mut data = Vec::new();
    let mut buf = [0u8; 4096];
    let head_end = loop {
        if let Some(end) = data.windows(4).position(|w| w == b"\r\n\r\n") {
            break end;
        }
        let n = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buf))
            .await
            .expect("a response in time")
            .unwrap();
        assert!(
            n > 0,
            "connection closed: {:?}",
            String::from_utf8_lossy(&data)
        );
        data.extend_from_slice(&buf[..n]);
    };
    let head = String::from_utf8_lossy(&data[..head_end]).to_ascii_lowercase();
    let length: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .map_or(0, |v| v.trim().parse().unwrap());
    while data.len() < head_end + 4 + length {
        let n = stream.read(&mut buf).await.unwrap();
        assert!(n > 0);
        data.extend_from_slice(&buf[..n]);
    }
    head
}

/// `navigator.sendBeacon` posts a small body the proxy reads in full; the browser's connection
/// should survive it rather than be closed after every release.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fully_read_action_keeps_the_connection_alive() {
    use tokio::io::AsyncWriteExt;
    let env = start().await;
    env.hold("/echo/docs/1/edit", &env.alice).await;
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", env.latch.port))
        .await
        .unwrap();
    let body = r#"{"resource":"doc:1","pagehide":true}"#;
    let release = format!(
        "POST /__latch/release HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {}\r\n\
         Content-Type: text/plain\r\nContent-Length: {}\r\n\r\n{body}",
        env.alice,
        body.len()
    );
    stream.write_all(release.as_bytes()).await.unwrap();
    let head = read_response(&mut stream).await;
    assert!(head.starts_with("http/1.1 204"), "{head}");
    assert!(!head.contains("connection: close"), "{head}");

    let status = format!(
        "GET /__latch/status?path=/echo/docs/1/edit HTTP/1.1\r\nHost: 127.0.0.1\r\n\
         Authorization: Bearer {}\r\n\r\n",
        env.alice
    );
    stream.write_all(status.as_bytes()).await.unwrap();
    let head = read_response(&mut stream).await;
    assert!(head.starts_with("http/1.1 200"), "{head}");
}
