//! Banner injection through the real proxy (docs/http.md, docs/banner.md): every body
//! framing and encoding the upstream may use, the pages that must be left alone, and streaming.

use std::io::Read;
use std::time::{Duration, Instant};

use reqwest::header::{
    ACCEPT_ENCODING, CONTENT_ENCODING, CONTENT_LENGTH, CONTENT_TYPE, COOKIE, ETAG, IF_NONE_MATCH,
};
use reqwest::{Response, StatusCode};
use tests::fixtures;
use tests::upstream::{big_page, gzip, PAGE, SCRIPT, ZSTD_BYTES};
use tests::{client, token, Latch, LatchBuilder, Upstream};

/// Every `/html/*` page is protected, so a signed-in request to it may get the banner.
const RULES: &str = fixtures::PAGE;

/// The lease of the default `[locks]` section, which the tag announces.
const LEASE: u64 = 30;

struct Setup {
    latch: Latch,
    _upstream: Upstream,
    cookie: String,
}

async fn setup(rules: &str) -> Setup {
    let upstream = Upstream::start().await;
    let latch = LatchBuilder::new(upstream.port()).rules(rules).start();
    Setup {
        latch,
        _upstream: upstream,
        cookie: format!("latch_token={}", token("alice", "Alice", &[])),
    }
}

impl Setup {
    async fn get(&self, path: &str, accept_encoding: Option<&str>) -> Response {
        let mut req = client()
            .get(self.latch.url(path))
            .header(COOKIE, &self.cookie);
        if let Some(enc) = accept_encoding {
            req = req.header(ACCEPT_ENCODING, enc);
        }
        req.send().await.expect("request through the proxy")
    }
}

/// The tag the proxy must insert for a page at `path`.
fn tag(path: &str, nonce: Option<&str>) -> String {
    let nonce = nonce.map(|n| format!(" nonce=\"{n}\"")).unwrap_or_default();
    format!(
        "<script src=\"/__latch/banner.js\" defer data-latch-prefix=\"/__latch\" \
         data-latch-path=\"{path}\" data-latch-lease=\"{LEASE}\" data-latch-page=\"app\"{nonce}></script>"
    )
}

/// `page` with the tag where the default placement puts it: right before its only `</head>`,
/// or, for a page without one, right after its `<body>` start tag.
fn injected(page: &str, tag: &str) -> String {
    if page.contains("</head>") {
        assert_eq!(page.matches("</head>").count(), 1, "test page shape");
        return page.replace("</head>", &format!("{tag}</head>"));
    }
    assert_eq!(page.matches("<body>").count(), 1, "test page shape");
    page.replace("<body>", &format!("<body>{tag}"))
}

/// `page` with the tag right before its only `</body>` (`inject_at = "body_end"`).
fn injected_at_body_end(page: &str, tag: &str) -> String {
    assert_eq!(page.matches("</body>").count(), 1, "test page shape");
    page.replace("</body>", &format!("{tag}</body>"))
}

/// A proxy that puts the tag before `</body>`.
async fn setup_body_end() -> Setup {
    let upstream = Upstream::start().await;
    let latch = LatchBuilder::new(upstream.port())
        .rules(RULES)
        .env("LATCH_PROXY_INJECT_AT", "body_end")
        .start();
    Setup {
        latch,
        _upstream: upstream,
        cookie: format!("latch_token={}", token("alice", "Alice", &[])),
    }
}

fn header(resp: &Response, name: reqwest::header::HeaderName) -> Option<&str> {
    resp.headers().get(name).and_then(|v| v.to_str().ok())
}

async fn text_of(resp: Response) -> String {
    assert_eq!(resp.status(), StatusCode::OK);
    resp.text().await.expect("body")
}

fn gunzip(data: &[u8]) -> String {
    let mut out = String::new();
    flate2::read::GzDecoder::new(data)
        .read_to_string(&mut out)
        .expect("a valid gzip body");
    out
}

fn unbrotli(data: &[u8]) -> String {
    let mut out = String::new();
    brotli::Decompressor::new(data, 4096)
        .read_to_string(&mut out)
        .expect("a valid brotli body");
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn content_length_page_gets_the_tag_before_head_end() {
    let s = setup(RULES).await;
    let resp = s.get("/html/cl", None).await;
    assert_eq!(
        header(&resp, CONTENT_TYPE),
        Some("text/html; charset=utf-8")
    );
    // The body grew by exactly the tag, and the length says so.
    let want = injected(PAGE, &tag("/html/cl", None));
    assert_eq!(
        header(&resp, CONTENT_LENGTH),
        Some(&*want.len().to_string())
    );
    assert_eq!(text_of(resp).await, want);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_head_seen_before_gets_each_pages_own_tag_without_parsing() {
    let s = setup(RULES).await;
    // The same page under three paths: the first is parsed, the next two find its head
    // remembered, and each still carries the tag for its own path.
    for path in ["/html/cl", "/html/etag", "/html/cl"] {
        let body = text_of(s.get(path, None).await).await;
        assert_eq!(body, injected(PAGE, &tag(path, None)), "{path}");
    }
    assert_eq!(s.latch.counter("latch_banner_injected_total").await, 3);
    let remembered = s
        .latch
        .counter("latch_banner_injected_remembered_total")
        .await;
    assert_eq!(remembered, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_tag_names_the_normalized_path_the_rule_matched() {
    let s = setup(RULES).await;
    // `%63` is `c`: the proxy matches, forwards and watches `/html/cl`.
    let body = text_of(s.get("/html/%63l", None).await).await;
    assert_eq!(body, injected(PAGE, &tag("/html/cl", None)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chunked_page_gets_the_tag() {
    let s = setup(RULES).await;
    let body = text_of(s.get("/html/chunked", None).await).await;
    assert_eq!(body, injected(PAGE, &tag("/html/chunked", None)));
}

/// Fetches `path` accepting `accept`; returns the `Content-Encoding` used and the decoded body.
async fn fetch_decoded(s: &Setup, path: &str, accept: Option<&str>) -> (Option<String>, String) {
    let resp = s.get(path, accept).await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(
        header(&resp, CONTENT_LENGTH),
        None,
        "a stale length truncates"
    );
    let encoding = header(&resp, CONTENT_ENCODING).map(str::to_string);
    let bytes = resp.bytes().await.expect("body");
    let body = match encoding.as_deref() {
        None => String::from_utf8(bytes.to_vec()).expect("utf-8 body"),
        Some("gzip") => gunzip(&bytes),
        Some("br") => unbrotli(&bytes),
        Some(other) => panic!("unexpected Content-Encoding {other}"),
    };
    (encoding, body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gzip_page_is_rewritten_and_recompressed_for_gzip_clients() {
    let s = setup(RULES).await;
    let want = injected(PAGE, &tag("/html/gzip", None));
    for accept in ["gzip", "gzip, deflate, br, zstd", "br;q=1, gzip;q=0.5"] {
        let (encoding, body) = fetch_decoded(&s, "/html/gzip", Some(accept)).await;
        assert_eq!(encoding.as_deref(), Some("gzip"), "for {accept:?}");
        assert_eq!(body, want, "for {accept:?}");
    }
    for accept in [None, Some("identity"), Some("gzip;q=0")] {
        let (encoding, body) = fetch_decoded(&s, "/html/gzip", accept).await;
        assert_eq!(encoding, None, "for {accept:?}");
        assert_eq!(body, want, "for {accept:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn x_gzip_page_is_decoded_and_rewritten() {
    let s = setup(RULES).await;
    let (encoding, body) = fetch_decoded(&s, "/html/x-gzip", None).await;
    assert_eq!(encoding, None);
    assert_eq!(body, injected(PAGE, &tag("/html/x-gzip", None)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn encoded_response_that_is_not_a_page_arrives_as_the_upstream_sent_it() {
    let s = setup(RULES).await;
    for accept in [Some("gzip"), None] {
        let resp = s.get("/html/gzip-script", accept).await;
        assert_eq!(resp.status(), StatusCode::OK);
        assert_eq!(
            header(&resp, CONTENT_ENCODING),
            Some("gzip"),
            "for {accept:?}"
        );
        let bytes = resp.bytes().await.expect("body");
        assert_eq!(bytes.as_ref(), gzip(SCRIPT.as_bytes()), "for {accept:?}");
    }
}

/// `path` is cut off rather than sent whole, counted as a skipped banner for `reason`, and the
/// proxy goes on serving.
async fn assert_aborted(path: &str, reason: &str) {
    let s = setup(RULES).await;
    let resp = s.get(path, None).await;
    let complete = resp.status() == StatusCode::OK && resp.bytes().await.is_ok();
    assert!(!complete, "{path} must not arrive whole");
    let series = format!("latch_banner_skipped_total{{reason=\"{reason}\"}}");
    assert_eq!(s.latch.counter(&series).await, 1, "{series}");
    let body = text_of(s.get("/html/cl", None).await).await;
    assert_eq!(body, injected(PAGE, &tag("/html/cl", None)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn page_that_does_not_decode_is_aborted_not_sent_garbled() {
    assert_aborted("/html/gzip-broken", "decode_error").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn page_that_inflates_past_the_limit_is_aborted() {
    assert_aborted("/html/br-bomb", "decode_limit").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn br_page_is_rewritten_for_every_client() {
    let s = setup(RULES).await;
    let want = injected(PAGE, &tag("/html/br", None));
    // A br-only client may get br or no encoding, but always a page that decodes completely.
    let (encoding, body) = fetch_decoded(&s, "/html/br", Some("br")).await;
    assert!(
        matches!(encoding.as_deref(), None | Some("br")),
        "{encoding:?}"
    );
    assert_eq!(body, want);
    let (encoding, body) = fetch_decoded(&s, "/html/br", Some("br, gzip")).await;
    assert!(
        matches!(encoding.as_deref(), Some("gzip") | Some("br")),
        "{encoding:?}"
    );
    assert_eq!(body, want);
    let (encoding, body) = fetch_decoded(&s, "/html/br", None).await;
    assert_eq!(encoding, None);
    assert_eq!(body, want);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_page_is_compressed_for_gzip_clients_after_rewriting() {
    let s = setup(RULES).await;
    let (encoding, body) = fetch_decoded(&s, "/html/chunked", Some("gzip")).await;
    assert_eq!(encoding.as_deref(), Some("gzip"));
    assert_eq!(body, injected(PAGE, &tag("/html/chunked", None)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recompressed_page_says_it_varies_with_accept_encoding() {
    let s = setup(RULES).await;
    for path in ["/html/chunked", "/html/cl", "/html/gzip"] {
        let resp = s.get(path, Some("gzip")).await;
        assert_eq!(header(&resp, CONTENT_ENCODING), Some("gzip"), "{path}");
        let vary = header(&resp, reqwest::header::VARY).unwrap_or_default();
        assert!(
            vary.split(',')
                .any(|v| v.trim().eq_ignore_ascii_case("accept-encoding")),
            "{path}: Vary is {vary:?}"
        );
        assert_eq!(
            gunzip(&resp.bytes().await.expect("body")),
            injected(PAGE, &tag(path, None))
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_left_alone_are_not_compressed_by_the_proxy() {
    let s = setup(RULES).await;
    for path in ["/html/no-transform", "/html/csp-strict"] {
        let resp = s.get(path, Some("gzip")).await;
        assert_eq!(header(&resp, CONTENT_ENCODING), None, "{path}");
        assert_eq!(text_of(resp).await, PAGE, "{path}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn head_end_split_across_chunks_gets_the_tag() {
    let s = setup(RULES).await;
    let body = text_of(s.get("/html/split-head", None).await).await;
    let page =
        "<!doctype html><html><head><title>split</title></head><body><p>split</p></body></html>";
    assert_eq!(body, injected(page, &tag("/html/split-head", None)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn body_end_split_across_chunks_gets_the_tag_when_placed_at_body_end() {
    let s = setup_body_end().await;
    let body = text_of(s.get("/html/split", None).await).await;
    let page = "<!doctype html><html><body><p>split</p></body></html>";
    assert_eq!(body, injected_at_body_end(page, &tag("/html/split", None)));
    let body = text_of(s.get("/html/cl", None).await).await;
    assert_eq!(body, injected_at_body_end(PAGE, &tag("/html/cl", None)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn page_without_body_end_gets_the_tag_at_the_end() {
    let s = setup(RULES).await;
    let body = text_of(s.get("/html/nobody", None).await).await;
    assert_eq!(
        body,
        format!(
            "<p>fragment without a body end tag</p>{}",
            tag("/html/nobody", None)
        )
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn csp_nonce_is_reused_on_the_tag() {
    let s = setup(RULES).await;
    let body = text_of(s.get("/html/csp-nonce", None).await).await;
    assert_eq!(
        body,
        injected(PAGE, &tag("/html/csp-nonce", Some("abc123")))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn csp_that_forbids_the_script_leaves_the_page_intact_and_says_so() {
    let s = setup(RULES).await;
    let resp = s.get("/html/csp-strict", None).await;
    assert_eq!(
        header(&resp, reqwest::header::CONTENT_SECURITY_POLICY),
        Some("script-src https://cdn.example")
    );
    assert_eq!(text_of(resp).await, PAGE);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let log = s.latch.log();
        if log.contains("Content-Security-Policy") && log.contains("/html/csp-strict") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the log does not mention the CSP refusal:\n{log}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_transform_page_is_left_alone() {
    let s = setup(RULES).await;
    let resp = s.get("/html/no-transform", None).await;
    assert_eq!(
        header(&resp, reqwest::header::CACHE_CONTROL),
        Some("no-transform")
    );
    assert_eq!(text_of(resp).await, PAGE);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zstd_page_passes_through_byte_for_byte() {
    let s = setup(RULES).await;
    let resp = s.get("/html/zstd", Some("zstd")).await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(header(&resp, CONTENT_ENCODING), Some("zstd"));
    assert_eq!(resp.bytes().await.expect("body").as_ref(), ZSTD_BYTES);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn head_of_a_page_has_no_body_and_the_headers_of_its_get() {
    let s = setup(RULES).await;
    for path in ["/html/cl", "/html/etag"] {
        let resp = client()
            .head(s.latch.url(path))
            .header(COOKIE, &s.cookie)
            .send()
            .await
            .expect("HEAD");
        assert_eq!(resp.status(), StatusCode::OK, "{path}");
        let content_type = header(&resp, CONTENT_TYPE).map(str::to_string);
        let etag = header(&resp, ETAG).map(str::to_string);
        let length = header(&resp, CONTENT_LENGTH).map(str::to_string);
        assert!(resp.bytes().await.expect("body").is_empty(), "{path}");

        let get = s.get(path, None).await;
        assert_eq!(header(&get, CONTENT_TYPE).map(str::to_string), content_type);
        assert_eq!(header(&get, ETAG).map(str::to_string), etag);
        // The length counts the banner, as the GET's body does.
        assert_eq!(header(&get, CONTENT_LENGTH).map(str::to_string), length);
        let body = text_of(get).await;
        assert_eq!(length, Some(body.len().to_string()), "{path}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unmatched_page_gets_no_tag() {
    let only_cl = r#"
[[rule]]
id = "page"
pattern = "/html/cl"
resource = "page:cl"
"#;
    let s = setup(only_cl).await;
    // Signed in or not, a page no rule protects is passed through untouched.
    assert_eq!(text_of(s.get("/html/chunked", None).await).await, PAGE);
    let anonymous = client()
        .get(s.latch.url("/html/chunked"))
        .send()
        .await
        .expect("anonymous GET");
    assert_eq!(text_of(anonymous).await, PAGE);
    // The control: the protected page of the same proxy does get it.
    assert_eq!(
        text_of(s.get("/html/cl", None).await).await,
        injected(PAGE, &tag("/html/cl", None))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_requests_for_a_page_get_the_tag() {
    let s = setup(RULES).await;
    let with_dest = |path: &str, dest: &str| {
        client()
            .get(s.latch.url(path))
            .header(COOKIE, &s.cookie)
            .header("sec-fetch-dest", dest)
            .send()
    };
    // What a browser fetches for a script, a style sheet, an image or fetch()/XHR (an HTML
    // fragment included) is never shown as a page: it comes through untouched.
    for dest in ["empty", "script", "style", "image"] {
        let resp = with_dest("/html/cl", dest).await.expect("GET");
        assert_eq!(resp.status(), StatusCode::OK, "{dest}");
        assert_eq!(
            header(&resp, CONTENT_LENGTH),
            Some(&*PAGE.len().to_string()),
            "{dest}"
        );
        assert_eq!(text_of(resp).await, PAGE, "{dest}");
    }
    // Nor is a gzip body decoded for them: the client gets the upstream's bytes.
    let resp = client()
        .get(s.latch.url("/html/gzip"))
        .header(COOKIE, &s.cookie)
        .header("sec-fetch-dest", "empty")
        .header(ACCEPT_ENCODING, "gzip")
        .send()
        .await
        .expect("GET");
    assert_eq!(header(&resp, CONTENT_ENCODING), Some("gzip"));
    assert_eq!(gunzip(&resp.bytes().await.expect("body")), PAGE);
    // Navigations and frames do get it.
    for dest in ["document", "iframe"] {
        let resp = with_dest("/html/cl", dest).await.expect("GET");
        assert_eq!(
            text_of(resp).await,
            injected(PAGE, &tag("/html/cl", None)),
            "{dest}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn strong_etag_becomes_weak() {
    let s = setup(RULES).await;
    let resp = s.get("/html/etag", None).await;
    assert_eq!(header(&resp, ETAG), Some("W/\"v1\""));
    assert_eq!(
        text_of(resp).await,
        injected(PAGE, &tag("/html/etag", None))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_megabyte_page_arrives_complete_with_one_tag() {
    let s = setup(RULES).await;
    let body = text_of(s.get("/html/big?mb=5", None).await).await;
    let page = String::from_utf8(big_page(5)).expect("utf-8 page");
    assert!(body.ends_with("</html>"), "the page was cut short");
    assert_eq!(body.matches("/__latch/banner.js").count(), 1);
    assert_eq!(body.len(), page.len() + tag("/html/big", None).len());
    assert!(body == injected(&page, &tag("/html/big", None)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_megabyte_page_gets_the_tag_at_its_end_when_placed_at_body_end() {
    let s = setup_body_end().await;
    let body = text_of(s.get("/html/big?mb=5", None).await).await;
    let page = String::from_utf8(big_page(5)).expect("utf-8 page");
    assert_eq!(body.len(), page.len() + tag("/html/big", None).len());
    assert!(body == injected_at_body_end(&page, &tag("/html/big", None)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_bytes_do_not_wait_for_the_last() {
    let s = setup(RULES).await;
    let start = Instant::now();
    let mut resp = s.get("/html/slow", None).await;
    assert_eq!(resp.status(), StatusCode::OK);
    let first = resp
        .chunk()
        .await
        .expect("first chunk")
        .expect("a body chunk");
    let first_at = start.elapsed();
    assert!(
        String::from_utf8_lossy(&first).contains("<p>first</p>"),
        "first chunk: {first:?}"
    );
    assert!(
        first_at < Duration::from_millis(700),
        "first chunk took {first_at:?}; the upstream sent it at once"
    );
    let mut rest = Vec::new();
    while let Some(chunk) = resp.chunk().await.expect("next chunk") {
        rest.extend_from_slice(&chunk);
    }
    assert!(start.elapsed() >= Duration::from_secs(1));
    let whole = format!(
        "{}{}",
        String::from_utf8_lossy(&first),
        String::from_utf8_lossy(&rest)
    );
    let page = "<!doctype html><html><body><p>first</p><p>second</p></body></html>";
    assert_eq!(whole, injected(page, &tag("/html/slow", None)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn banner_script_is_served_cacheable() {
    let s = setup(RULES).await;
    let resp = client()
        .get(s.latch.url("/__latch/banner.js"))
        .send()
        .await
        .expect("GET banner.js");
    assert_eq!(resp.status(), StatusCode::OK);
    let content_type = header(&resp, CONTENT_TYPE).unwrap_or_default().to_string();
    assert!(
        content_type.starts_with("text/javascript"),
        "content type {content_type:?}"
    );
    let etag = header(&resp, ETAG).expect("an ETag").to_string();
    let body = resp.text().await.expect("script");
    assert!(body.contains("latch-banner"), "not the banner script");

    let again = client()
        .get(s.latch.url("/__latch/banner.js"))
        .header(IF_NONE_MATCH, &etag)
        .send()
        .await
        .expect("conditional GET");
    assert_eq!(again.status(), StatusCode::NOT_MODIFIED);
    assert_eq!(header(&again, ETAG), Some(etag.as_str()));
    assert!(again.bytes().await.expect("body").is_empty());

    let stale = client()
        .get(s.latch.url("/__latch/banner.js"))
        .header(IF_NONE_MATCH, "\"something-else\"")
        .send()
        .await
        .expect("conditional GET");
    assert_eq!(stale.status(), StatusCode::OK);
}
