//! The core of the proxy, end to end: claim, renew, deny, each rule mode, what the upstream is
//! told, spoofed-header stripping and what an unauthenticated request gets.

use std::sync::LazyLock;

use reqwest::{Response, StatusCode};
use serde_json::Value;
use tests::fixtures::{DOC_EDIT, DOC_SAVE, REVIEW, SETTINGS, TAB};
use tests::{client, token, Latch, LatchBuilder, Upstream};

/// Wiki pages, matched whatever the case of the path.
const WIKI: &str = r#"
[[rule]]
id = "wiki"
pattern = "/echo/wiki/(?P<page>[a-z]+)"
resource = "wiki:{page}"
case_insensitive = true
"#;

/// Every mode and owner, with a save endpoint whose responses get no banner.
static RULES: LazyLock<String> = LazyLock::new(|| {
    let save_without_banner = format!("{DOC_SAVE}inject = false\n");
    [DOC_EDIT, &save_without_banner, REVIEW, SETTINGS, TAB, WIKI].concat()
});

struct Env {
    _upstream: Upstream,
    latch: Latch,
    http: reqwest::Client,
}

async fn start() -> Env {
    start_with(|b| b).await
}

async fn start_with(configure: impl FnOnce(LatchBuilder) -> LatchBuilder) -> Env {
    let upstream = Upstream::start().await;
    let latch = configure(LatchBuilder::new(upstream.port()).rules(&RULES)).start();
    Env {
        _upstream: upstream,
        latch,
        http: client(),
    }
}

fn alice() -> String {
    token("alice", "Alice", &[])
}

fn bob() -> String {
    token("bob", "Bob", &[])
}

impl Env {
    async fn send(&self, method: &str, path: &str, tok: Option<&str>) -> Response {
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let mut req = self.http.request(method, self.latch.url(path));
        if let Some(t) = tok {
            req = req.bearer_auth(t);
        }
        req.send().await.unwrap()
    }

    async fn get(&self, path: &str, tok: &str) -> Response {
        self.send("GET", path, Some(tok)).await
    }
}

/// The upstream's echo of a request that passed, asserting that it did pass.
async fn echoed(resp: Response) -> Value {
    let status = resp.status();
    let text = resp.text().await.unwrap();
    assert_eq!(
        status,
        StatusCode::OK,
        "expected the upstream's echo, got {text}"
    );
    serde_json::from_str(&text).unwrap()
}

fn upstream_header<'a>(echo: &'a Value, name: &str) -> Option<&'a str> {
    echo["headers"][name].as_str()
}

fn fence(echo: &Value) -> u64 {
    upstream_header(echo, "x-latch-fence")
        .expect("a fence header upstream")
        .parse()
        .expect("the fence is an integer")
}

fn content_type(resp: &Response) -> String {
    resp.headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string()
}

/// A 423 problem document, asserting its framing.
async fn locked_problem(resp: Response) -> Value {
    assert_eq!(resp.status(), StatusCode::LOCKED);
    assert_eq!(content_type(&resp), "application/problem+json");
    let retry: u64 = resp
        .headers()
        .get("retry-after")
        .expect("Retry-After on a 423")
        .to_str()
        .unwrap()
        .parse()
        .expect("Retry-After in seconds");
    assert!((1..=30).contains(&retry), "Retry-After {retry}");
    resp.json().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn free_lock_is_claimed_and_upstream_gets_identity_and_lock_headers() {
    let env = start().await;
    let echo = echoed(env.get("/echo/docs/1/edit", &alice()).await).await;
    assert_eq!(echo["path"], "/echo/docs/1/edit");
    assert_eq!(upstream_header(&echo, "x-latch-user"), Some("alice"));
    assert_eq!(upstream_header(&echo, "x-latch-user-name"), Some("Alice"));
    assert_eq!(upstream_header(&echo, "x-latch-resource"), Some("doc:1"));
    assert_eq!(upstream_header(&echo, "x-latch-access"), Some("exclusive"));
    assert!(fence(&echo) > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn holder_renews_under_the_same_fence_by_bearer_or_cookie() {
    let env = start().await;
    let first = echoed(env.get("/echo/docs/1/edit", &alice()).await).await;
    let again = echoed(env.get("/echo/docs/1/edit", &alice()).await).await;
    assert_eq!(fence(&first), fence(&again));

    let by_cookie = env
        .http
        .get(env.latch.url("/echo/docs/1/edit"))
        .header("cookie", format!("other=1; latch_token={}", alice()))
        .send()
        .await
        .unwrap();
    let by_cookie = echoed(by_cookie).await;
    assert_eq!(upstream_header(&by_cookie, "x-latch-user"), Some("alice"));
    assert_eq!(fence(&by_cookie), fence(&first));

    // The save endpoint is another rule on the same resource: the holder keeps its fence there.
    let save = echoed(env.send("POST", "/echo/docs/1/save", Some(&alice())).await).await;
    assert_eq!(upstream_header(&save, "x-latch-resource"), Some("doc:1"));
    assert_eq!(fence(&save), fence(&first));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_user_gets_423_problem_naming_the_holder() {
    let env = start().await;
    echoed(env.get("/echo/docs/1/edit", &alice()).await).await;

    let doc = locked_problem(env.get("/echo/docs/1/edit", &bob()).await).await;
    assert_eq!(doc["status"], 423);
    assert_eq!(doc["title"], "Locked");
    assert_eq!(doc["resource"], "doc:1");
    assert_eq!(doc["holder"]["id"], "alice");
    assert_eq!(doc["holder"]["name"], "Alice");
    let since = doc["since"].as_str().expect("since");
    let expires = doc["expires"].as_str().expect("expires");
    assert!(since.ends_with('Z') && since.contains('T'), "{since}");
    assert!(expires > since, "{since} .. {expires}");

    // Same resource through the save rule, and a different document is still free for bob.
    let save = locked_problem(env.send("POST", "/echo/docs/1/save", Some(&bob())).await).await;
    assert_eq!(save["holder"]["id"], "alice");
    let other = echoed(env.get("/echo/docs/2/edit", &bob()).await).await;
    assert_eq!(upstream_header(&other, "x-latch-resource"), Some("doc:2"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browser_gets_an_html_423_page_naming_holder_and_since() {
    let env = start().await;
    echoed(env.get("/echo/docs/1/edit", &alice()).await).await;
    let resp = env
        .http
        .get(env.latch.url("/echo/docs/1/edit"))
        .header("accept", "text/html,application/xhtml+xml,*/*;q=0.8")
        .header("cookie", format!("latch_token={}", bob()))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::LOCKED);
    assert!(content_type(&resp).starts_with("text/html"));
    assert!(resp.headers().contains_key("retry-after"));
    let page = resp.text().await.unwrap();
    assert!(page.contains("Alice"), "{page}");
    assert!(page.contains("since"), "{page}");
    assert!(page.contains("data-latch-page=\"blocked\""), "{page}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fence_increases_when_the_resource_changes_hands() {
    let env = start().await;
    let first = fence(&echoed(env.get("/echo/docs/1/edit", &alice()).await).await);
    let release = env
        .http
        .post(env.latch.url("/__latch/release"))
        .bearer_auth(alice())
        .body(r#"{"resource":"doc:1"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(release.status(), StatusCode::NO_CONTENT);
    let second = fence(&echoed(env.get("/echo/docs/1/edit", &bob()).await).await);
    assert!(second > first, "{first} then {second}");
    // Bob renewing does not move it; alice coming back after bob lets go does.
    assert_eq!(
        fence(&echoed(env.get("/echo/docs/1/edit", &bob()).await).await),
        second
    );
    let release = env
        .http
        .post(env.latch.url("/__latch/release"))
        .bearer_auth(bob())
        .body(r#"{"resource":"doc:1"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(release.status(), StatusCode::NO_CONTENT);
    let third = fence(&echoed(env.get("/echo/docs/1/edit", &alice()).await).await);
    assert!(third > second, "{second} then {third}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redirect_mode_sends_safe_methods_to_the_rendered_target() {
    let env = start().await;
    let claimed = echoed(env.get("/echo/review/7", &alice()).await).await;
    assert_eq!(
        upstream_header(&claimed, "x-latch-resource"),
        Some("review:7")
    );

    for method in ["GET", "HEAD"] {
        let resp = env.send(method, "/echo/review/7", Some(&bob())).await;
        assert_eq!(resp.status(), StatusCode::SEE_OTHER, "{method}");
        assert_eq!(
            resp.headers().get("location").unwrap(),
            "/echo/docs/7?notice=busy",
            "{method}"
        );
    }
    let post = locked_problem(env.send("POST", "/echo/review/7", Some(&bob())).await).await;
    assert_eq!(post["holder"]["id"], "alice");

    // The holder is not redirected away from its own page.
    let renewed = echoed(env.get("/echo/review/7", &alice()).await).await;
    assert_eq!(fence(&renewed), fence(&claimed));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_only_mode_lets_others_read_without_a_fence_and_refuses_writes() {
    let env = start().await;
    let holder = echoed(env.get("/echo/settings", &alice()).await).await;
    assert_eq!(
        upstream_header(&holder, "x-latch-access"),
        Some("exclusive")
    );

    let reader = echoed(env.get("/echo/settings", &bob()).await).await;
    assert_eq!(upstream_header(&reader, "x-latch-user"), Some("bob"));
    assert_eq!(
        upstream_header(&reader, "x-latch-resource"),
        Some("settings")
    );
    assert_eq!(
        upstream_header(&reader, "x-latch-access"),
        Some("read_only")
    );
    assert_eq!(upstream_header(&reader, "x-latch-fence"), None);

    let head = env.send("HEAD", "/echo/settings", Some(&bob())).await;
    assert_eq!(head.status(), StatusCode::OK);

    for method in ["POST", "PUT", "DELETE", "PATCH"] {
        let doc = locked_problem(env.send(method, "/echo/settings", Some(&bob())).await).await;
        assert_eq!(doc["holder"]["id"], "alice", "{method}");
    }
    let write = echoed(env.send("POST", "/echo/settings", Some(&alice())).await).await;
    assert_eq!(upstream_header(&write, "x-latch-access"), Some("exclusive"));
    assert_eq!(fence(&write), fence(&holder));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_owned_lock_belongs_to_one_browser_session() {
    let env = start().await;
    let first = env.get("/echo/tab/3", &alice()).await;
    let set_cookie = first
        .headers()
        .get("set-cookie")
        .expect("a session cookie for a session-owned rule")
        .to_str()
        .unwrap()
        .to_string();
    let sid = set_cookie.split(';').next().unwrap().to_string();
    assert!(sid.starts_with("latch_sid="), "{set_cookie}");
    let claimed = echoed(first).await;

    let same_tab = env
        .http
        .get(env.latch.url("/echo/tab/3"))
        .bearer_auth(alice())
        .header("cookie", &sid)
        .send()
        .await
        .unwrap();
    assert_eq!(fence(&echoed(same_tab).await), fence(&claimed));

    // The same user without that session is another tab: told it is open elsewhere.
    let other_tab = env
        .http
        .get(env.latch.url("/echo/tab/3"))
        .bearer_auth(alice())
        .header("cookie", "latch_sid=0123456789abcdef0123456789abcdef")
        .send()
        .await
        .unwrap();
    let doc = locked_problem(other_tab).await;
    assert_eq!(doc["holder"]["id"], "alice");
    assert!(
        doc["detail"].as_str().unwrap().contains("another tab"),
        "{doc}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn case_insensitive_rule_locks_every_spelling_as_one_resource() {
    let env = start().await;
    let claimed = echoed(env.get("/echo/wiki/Home", &alice()).await).await;
    let resource = upstream_header(&claimed, "x-latch-resource")
        .unwrap()
        .to_string();
    for spelling in ["/echo/wiki/home", "/echo/wiki/HOME", "/ECHO/WIKI/hOmE"] {
        let doc = locked_problem(env.get(spelling, &bob()).await).await;
        assert_eq!(doc["resource"], resource.as_str(), "{spelling}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trailing_slash_names_the_same_resource() {
    let env = start().await;
    echoed(env.get("/echo/docs/1/edit/", &alice()).await).await;
    let doc = locked_problem(env.get("/echo/docs/1/edit", &bob()).await).await;
    assert_eq!(doc["resource"], "doc:1");
    let doc = locked_problem(env.get("/echo/docs/1/edit/", &bob()).await).await;
    assert_eq!(doc["resource"], "doc:1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spoofed_latch_headers_are_removed_on_matched_and_unmatched_paths() {
    let env = start().await;
    let spoof = |req: reqwest::RequestBuilder| {
        req.header("X-Latch-User", "mallory")
            .header("X-Latch-User-Name", "Mallory")
            .header("X-Latch-Resource", "doc:999")
            .header("X-Latch-Fence", "999999999")
            .header("X-Latch-Access", "exclusive")
            .header("x-LATCH-custom", "anything")
    };

    let matched = spoof(
        env.http
            .get(env.latch.url("/echo/docs/1/edit"))
            .bearer_auth(alice()),
    )
    .send()
    .await
    .unwrap();
    let echo = echoed(matched).await;
    assert_eq!(upstream_header(&echo, "x-latch-user"), Some("alice"));
    assert_eq!(upstream_header(&echo, "x-latch-user-name"), Some("Alice"));
    assert_eq!(upstream_header(&echo, "x-latch-resource"), Some("doc:1"));
    assert_ne!(fence(&echo), 999_999_999);
    assert_eq!(upstream_header(&echo, "x-latch-custom"), None);

    let unmatched = spoof(env.http.get(env.latch.url("/echo/free/page")))
        .send()
        .await
        .unwrap();
    let echo = echoed(unmatched).await;
    let leaked: Vec<&String> = echo["headers"]
        .as_object()
        .unwrap()
        .keys()
        .filter(|k| k.starts_with("x-latch-"))
        .collect();
    assert!(
        leaked.is_empty(),
        "spoofed headers reached the app: {leaked:?}"
    );

    // Read-only viewers must not smuggle a fence past the proxy either.
    echoed(env.get("/echo/settings", &alice()).await).await;
    let reader = spoof(
        env.http
            .get(env.latch.url("/echo/settings"))
            .bearer_auth(bob()),
    )
    .send()
    .await
    .unwrap();
    let echo = echoed(reader).await;
    assert_eq!(upstream_header(&echo, "x-latch-access"), Some("read_only"));
    assert_eq!(upstream_header(&echo, "x-latch-fence"), None);
    assert_eq!(upstream_header(&echo, "x-latch-user"), Some("bob"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unmatched_paths_pass_without_a_token_and_are_not_locked() {
    let env = start().await;
    let echo = echoed(env.send("GET", "/echo/free?q=1", None).await).await;
    assert_eq!(echo["path"], "/echo/free");
    assert_eq!(echo["query"], "q=1");
    // The doc-save rule only takes POST: a GET there is unmatched and needs no token.
    echoed(env.send("GET", "/echo/docs/1/save", None).await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn matched_request_without_a_valid_token_gets_401_problem() {
    let env = start().await;
    for (label, tok) in [("missing", None), ("bad", Some("not-a-token"))] {
        for accept in ["application/json", "text/html"] {
            let mut req = env
                .http
                .get(env.latch.url("/echo/docs/1/edit"))
                .header("accept", accept);
            if let Some(t) = tok {
                req = req.bearer_auth(t);
            }
            let resp = req.send().await.unwrap();
            assert_eq!(resp.status(), StatusCode::UNAUTHORIZED, "{label} {accept}");
            let challenge = resp
                .headers()
                .get("www-authenticate")
                .expect("a Bearer challenge")
                .to_str()
                .unwrap()
                .to_string();
            assert!(challenge.starts_with("Bearer"), "{challenge}");
            assert_eq!(
                challenge.contains("error=\"invalid_token\""),
                tok.is_some(),
                "{label}: {challenge}"
            );
            assert_eq!(content_type(&resp), "application/problem+json");
            let doc: Value = resp.json().await.unwrap();
            assert_eq!(doc["status"], 401, "{label}");
        }
    }
    // Nothing was claimed by the refused requests.
    let echo = echoed(env.get("/echo/docs/1/edit", &bob()).await).await;
    assert_eq!(upstream_header(&echo, "x-latch-user"), Some("bob"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browser_without_a_token_is_sent_to_the_login_url() {
    let env =
        start_with(|b| b.auth("login_url = \"https://idp.example/login?return_to={url}\"")).await;
    let resp = env
        .http
        .get(env.latch.url("/echo/docs/1/edit?x=1"))
        .header("accept", "text/html")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::FOUND);
    let here = format!("http://127.0.0.1:{}/echo/docs/1/edit?x=1", env.latch.port);
    let encoded: String = here
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect();
    assert_eq!(
        resp.headers().get("location").unwrap().to_str().unwrap(),
        format!("https://idp.example/login?return_to={encoded}")
    );

    // A script (no text/html) still gets the 401 challenge.
    let api = env.send("GET", "/echo/docs/1/edit", None).await;
    assert_eq!(api.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn options_preflight_passes_unclaimed() {
    let env = start().await;
    let resp = env.send("OPTIONS", "/echo/docs/1/edit", None).await;
    let echo = echoed(resp).await;
    assert_eq!(echo["method"], "OPTIONS");
    assert_eq!(upstream_header(&echo, "x-latch-resource"), None);
    // Alice's preflight did not claim anything either.
    echoed(
        env.send("OPTIONS", "/echo/docs/1/edit", Some(&alice()))
            .await,
    )
    .await;
    let echo = echoed(env.get("/echo/docs/1/edit", &bob()).await).await;
    assert_eq!(upstream_header(&echo, "x-latch-user"), Some("bob"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn require_all_needs_a_token_everywhere() {
    let env = start_with(|b| b.auth("require = \"all\"")).await;
    let resp = env.send("GET", "/echo/free", None).await;
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    let echo = echoed(env.send("GET", "/echo/free", Some(&alice())).await).await;
    assert_eq!(upstream_header(&echo, "x-latch-user"), Some("alice"));
    assert_eq!(upstream_header(&echo, "x-latch-resource"), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identity_headers_keep_non_ascii_names_and_never_split() {
    let env = start().await;
    let tok = token("josé", "Zoë Ünïcødé 李", &[]);
    let echo = echoed(env.get("/echo/docs/1/edit", &tok).await).await;
    assert_eq!(upstream_header(&echo, "x-latch-user"), Some("josé"));
    assert_eq!(
        upstream_header(&echo, "x-latch-user-name"),
        Some("Zoë Ünïcødé 李")
    );

    // Line breaks in a claim cannot add a header of their own upstream.
    let tok = token("mallory", "Mal\r\nX-Injected: yes\nlory", &[]);
    let echo = echoed(env.get("/echo/docs/2/edit", &tok).await).await;
    assert_eq!(upstream_header(&echo, "x-injected"), None);
    assert_eq!(upstream_header(&echo, "x-latch-user"), Some("mallory"));
    let name = upstream_header(&echo, "x-latch-user-name").unwrap();
    assert!(!name.contains('\r') && !name.contains('\n'), "{name:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_423_page_escapes_the_holders_name() {
    let env = start().await;
    let hostile = token("eve", "<img src=x onerror=alert(1)>&\"'", &[]);
    echoed(env.get("/echo/docs/1/edit", &hostile).await).await;
    let page = env
        .http
        .get(env.latch.url("/echo/docs/1/edit"))
        .header("accept", "text/html")
        .bearer_auth(bob())
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(!page.contains("<img"), "{page}");
    assert!(
        page.contains("&lt;img src=x onerror=alert(1)&gt;&amp;"),
        "{page}"
    );
}
