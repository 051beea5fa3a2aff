//! A user's own limits on claims, end to end: the cap on live locks per user (a rule's
//! `max_per_user` over `[locks]`) and the rate of new claims per instance. Both answer 429 with
//! `Retry-After`, a page for browsers and problem+json otherwise; renewals always pass.

use reqwest::{Response, StatusCode};
use serde_json::Value;
use std::sync::LazyLock;
use tests::fixtures::DOC_EDIT;
use tests::{client, token, LatchBuilder, Upstream};

const NOTE: &str = r#"
[[rule]]
id = "note"
pattern = "/echo/notes/(?P<id>[0-9]+)"
resource = "note:{id}"
"#;

/// The document editor capped at three documents per user, and notes with no cap.
static RULES: LazyLock<String> = LazyLock::new(|| format!("{DOC_EDIT}max_per_user = 3\n{NOTE}"));

async fn get(url: &str, bearer: &str) -> Response {
    client()
        .get(url)
        .bearer_auth(bearer)
        .send()
        .await
        .expect("request")
}

async fn problem(resp: Response) -> Value {
    assert_eq!(
        resp.headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok()),
        Some("application/problem+json")
    );
    resp.json().await.expect("problem+json")
}

fn retry_after(resp: &Response) -> u64 {
    resp.headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .expect("a numeric Retry-After")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rules_cap_refuses_the_next_lock_and_renewals_and_other_users_pass() {
    let upstream = Upstream::start().await;
    let latch = LatchBuilder::new(upstream.port())
        .rules(&RULES)
        .locks("store = \"memory\"\nlease_seconds = 30\ngrace_seconds = 10\nmax_per_user = 10\n")
        .start();
    let http = client();
    let alice = token("alice", "Alice", &[]);
    let bob = token("bob", "Bob", &[]);
    let doc = |id: u32| latch.url(&format!("/echo/docs/{id}/edit"));

    for id in 1..=3 {
        assert_eq!(get(&doc(id), &alice).await.status(), StatusCode::OK);
    }

    let refused = get(&doc(4), &alice).await;
    assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(retry_after(&refused), 30);
    let body = problem(refused).await;
    assert_eq!(body["status"], 429);
    assert_eq!(body["limit"], "max_per_user");
    assert_eq!(body["max"], 3);
    assert_eq!(body["resource"], "doc:4");
    assert_eq!(body["held"], serde_json::json!(["doc:1", "doc:2", "doc:3"]));

    let page = http
        .get(doc(4))
        .bearer_auth(&alice)
        .header("accept", "text/html,application/xhtml+xml")
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(page.headers().contains_key("retry-after"));
    let html = page.text().await.unwrap();
    assert!(html.contains("Too many locked pages"), "{html}");
    assert!(html.contains("<code>doc:2</code>"), "{html}");

    // Renewals at the cap pass, through the store (an unsafe method always asks it).
    let renewal = http
        .post(doc(2))
        .bearer_auth(&alice)
        .body("x")
        .send()
        .await
        .unwrap();
    assert_eq!(renewal.status(), StatusCode::OK);
    assert_eq!(get(&doc(3), &alice).await.status(), StatusCode::OK);

    // The rule's cap is 3; `[locks]` allows 10 under the other rule, counting every lock.
    for id in 1..=7 {
        let url = latch.url(&format!("/echo/notes/{id}"));
        assert_eq!(
            get(&url, &alice).await.status(),
            StatusCode::OK,
            "note {id}"
        );
    }
    let eleventh = get(&latch.url("/echo/notes/8"), &alice).await;
    assert_eq!(eleventh.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(problem(eleventh).await["max"], 10);

    // Another user is unaffected.
    assert_eq!(get(&doc(4), &bob).await.status(), StatusCode::OK);
    assert_eq!(get(&doc(5), &bob).await.status(), StatusCode::OK);

    let log = latch.log();
    assert!(log.contains("claim refused past the user's limit"), "{log}");
    assert!(
        latch
            .counter("latch_requests_total{outcome=\"over_cap\"}")
            .await
            >= 3
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_release_the_next_claim_fits_under_the_cap() {
    let upstream = Upstream::start().await;
    let latch = LatchBuilder::new(upstream.port()).rules(&RULES).start();
    let http = client();
    let alice = token("alice", "Alice", &[]);
    let doc = |id: u32| latch.url(&format!("/echo/docs/{id}/edit"));
    for id in 1..=3 {
        assert_eq!(get(&doc(id), &alice).await.status(), StatusCode::OK);
    }
    assert_eq!(
        get(&doc(4), &alice).await.status(),
        StatusCode::TOO_MANY_REQUESTS
    );
    let release = http
        .post(latch.url("/__latch/release"))
        .bearer_auth(&alice)
        .body(r#"{"resource":"doc:2"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(release.status(), StatusCode::NO_CONTENT);
    assert_eq!(get(&doc(4), &alice).await.status(), StatusCode::OK);
    assert_eq!(
        get(&doc(2), &alice).await.status(),
        StatusCode::TOO_MANY_REQUESTS
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_claims_are_rate_limited_per_user_and_renewals_are_not() {
    let upstream = Upstream::start().await;
    let latch = LatchBuilder::new(upstream.port())
        .rules(&RULES)
        .env("LATCH_LOCKS_CLAIMS_PER_MINUTE", "2")
        .start();
    let http = client();
    let alice = token("alice", "Alice", &[]);
    let bob = token("bob", "Bob", &[]);
    let note = |id: u32| latch.url(&format!("/echo/notes/{id}"));

    assert_eq!(get(&note(1), &alice).await.status(), StatusCode::OK);
    assert_eq!(get(&note(2), &alice).await.status(), StatusCode::OK);
    let refused = get(&note(3), &alice).await;
    assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
    let wait = retry_after(&refused);
    assert!((1..=30).contains(&wait), "Retry-After {wait}");
    let body = problem(refused).await;
    assert_eq!(body["limit"], "claims_per_minute");
    assert_eq!(body["resource"], "note:3");
    assert!(body.get("held").is_none(), "{body}");
    // Nothing was claimed: bob can have it.
    assert_eq!(get(&note(3), &bob).await.status(), StatusCode::OK);

    // Renewing what alice holds costs nothing, also through the store.
    for _ in 0..5 {
        let renewal = http
            .post(note(1))
            .bearer_auth(&alice)
            .body("x")
            .send()
            .await
            .unwrap();
        assert_eq!(renewal.status(), StatusCode::OK);
    }
    // A lock someone else holds is still a 423, not a 429.
    assert_eq!(get(&note(3), &alice).await.status(), StatusCode::LOCKED);
    assert!(
        latch
            .counter("latch_requests_total{outcome=\"rate_limited\"}")
            .await
            >= 1
    );
}
