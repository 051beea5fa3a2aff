//! The proxy's admin port: health, readiness and Prometheus metrics that move with traffic.

use std::sync::LazyLock;
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::Value;
use tests::fixtures::{DOC_EDIT, REVIEW, SETTINGS};
use tests::{client, token, Latch, LatchBuilder, Upstream};

static RULES: LazyLock<String> = LazyLock::new(|| [DOC_EDIT, REVIEW, SETTINGS].concat());

const OUTCOMES: [&str; 10] = [
    "passed",
    "claimed",
    "renewed",
    "denied",
    "redirected",
    "read_only",
    "unauthenticated",
    "bad_request",
    "store_error",
    "internal",
];

async fn scrape(latch: &Latch) -> String {
    let resp = client()
        .get(latch.admin_url("/metrics"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let content_type = resp.headers()["content-type"].to_str().unwrap().to_string();
    assert!(content_type.starts_with("text/plain"), "{content_type}");
    resp.text().await.unwrap()
}

/// The value of one sample, e.g. `latch_requests_total{outcome="claimed"}`; absent is an error.
fn sample(text: &str, series: &str) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|l| {
            let (name, value) = l.rsplit_once(' ')?;
            (name == series).then(|| value.parse().unwrap())
        })
        .unwrap_or_else(|| panic!("no sample {series} in:\n{text}"))
}

fn outcomes(text: &str) -> Vec<(&'static str, f64)> {
    OUTCOMES
        .iter()
        .map(|o| {
            (
                *o,
                sample(text, &format!("latch_requests_total{{outcome=\"{o}\"}}")),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_and_readiness() {
    let upstream = Upstream::start().await;
    let latch = LatchBuilder::new(upstream.port()).rules(&RULES).start();
    let health = client()
        .get(latch.admin_url("/healthz"))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), StatusCode::OK);
    assert_eq!(health.text().await.unwrap().trim(), "ok");
    let ready = client()
        .get(latch.admin_url("/readyz"))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status(), StatusCode::OK);
    let body: Value = ready.json().await.unwrap();
    assert_eq!(body["ready"], true);

    // The admin endpoints are not served on the proxy port: there they are the app's paths.
    let on_proxy = client().get(latch.url("/metrics")).send().await.unwrap();
    assert_eq!(on_proxy.status(), StatusCode::NOT_FOUND);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_outcomes_and_lock_gauge_move_with_traffic() {
    let upstream = Upstream::start().await;
    let latch = LatchBuilder::new(upstream.port()).rules(&RULES).start();
    let before = scrape(&latch).await;
    for (outcome, value) in outcomes(&before) {
        assert_eq!(value, 0.0, "{outcome} before any traffic");
    }
    assert_eq!(sample(&before, "latch_locks"), 0.0);

    let http = client();
    let alice = token("alice", "Alice", &[]);
    let bob = token("bob", "Bob", &[]);
    let get = |path: &str, tok: Option<&str>| {
        let mut req = http.get(latch.url(path));
        if let Some(t) = tok {
            req = req.bearer_auth(t.to_string());
        }
        req.send()
    };
    let expect = [
        ("/echo/free", None, 200, "passed"),
        ("/echo/free/again", None, 200, "passed"),
        ("/echo/docs/1/edit", Some(&alice), 200, "claimed"),
        ("/echo/docs/1/edit", Some(&alice), 200, "renewed"),
        ("/echo/docs/1/edit", Some(&bob), 423, "denied"),
        ("/echo/docs/1/edit", None, 401, "unauthenticated"),
        ("/echo/docs/1%2Fedit", Some(&bob), 400, "bad_request"),
        ("/echo/review/3", Some(&alice), 200, "claimed"),
        ("/echo/review/3", Some(&bob), 303, "redirected"),
        ("/echo/settings", Some(&alice), 200, "claimed"),
        ("/echo/settings", Some(&bob), 200, "read_only"),
        (
            "/__latch/status?path=/echo/settings",
            Some(&bob),
            200,
            "internal",
        ),
    ];
    for (path, tok, status, _) in &expect {
        let resp = get(path, tok.map(String::as_str)).await.unwrap();
        assert_eq!(resp.status().as_u16(), *status, "{path}");
    }

    let after = scrape(&latch).await;
    for (outcome, value) in outcomes(&after) {
        let wanted = expect.iter().filter(|e| e.3 == outcome).count() as f64;
        assert_eq!(
            value, wanted,
            "latch_requests_total{{outcome=\"{outcome}\"}}"
        );
    }
    assert_eq!(sample(&after, "latch_locks"), 3.0);
    // Every lock decision above went to the store once and was timed.
    let claims = sample(&after, "latch_store_latency_seconds_count{op=\"claim\"}");
    assert_eq!(claims, 7.0);
    assert!(sample(&after, "latch_store_latency_seconds_sum{op=\"claim\"}") > 0.0);

    let release = http
        .post(latch.url("/__latch/release"))
        .bearer_auth(&alice)
        .body(r#"{"resource":"doc:1"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(release.status(), StatusCode::NO_CONTENT);
    assert_eq!(sample(&scrape(&latch).await, "latch_locks"), 2.0);
}

/// A bad rule edit must not take every proxy out of its load balancer: readiness holds, the
/// failed reload is counted, and the last good rules stay in force until the file is fixed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_rule_reload_is_counted_and_the_last_good_rules_stay() {
    let upstream = Upstream::start().await;
    let latch = LatchBuilder::new(upstream.port()).rules(&RULES).start();
    let alice = token("alice", "Alice", &[]);
    let bob = token("bob", "Bob", &[]);
    let open = |tok: &str, path: &str| {
        client()
            .get(latch.url(path))
            .bearer_auth(tok.to_string())
            .send()
    };
    assert_eq!(
        open(&alice, "/echo/docs/1/edit").await.unwrap().status(),
        200
    );
    assert_eq!(sample(&scrape(&latch).await, "latch_rules"), 3.0);

    latch.write_rules("[[rule]]\nid = \"Broken Id\"\npattern = \"(\"\n");
    wait_for(&latch, "latch_rules_reload_errors_total", |v| v >= 1.0).await;
    let ready = client()
        .get(latch.admin_url("/readyz"))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status(), StatusCode::OK);
    assert_eq!(sample(&scrape(&latch).await, "latch_rules"), 3.0);
    assert_eq!(open(&bob, "/echo/docs/1/edit").await.unwrap().status(), 423);

    // A fixed file is picked up: one rule now, and the document pages are no longer locked.
    latch.write_rules(
        "[[rule]]\nid = \"settings\"\npattern = \"/echo/settings\"\nresource = \"settings\"\n",
    );
    wait_for(&latch, "latch_rules", |v| v == 1.0).await;
    assert_eq!(open(&bob, "/echo/docs/1/edit").await.unwrap().status(), 200);
}

/// The proxy matches its rules with a DFA built when they load, and says so; rules too large
/// for one are matched all the same by a slower engine.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rules_too_large_for_a_dfa_are_enforced_all_the_same_and_the_metric_says_which_engine() {
    // An `a` 21 letters from the end of the page name: over a million DFA states.
    const LARGE: &str = "[[rule]]\nid = \"tail\"\npattern = \"/echo/pages/(a|b)*a(a|b){20}\"\n";
    let upstream = Upstream::start().await;
    let latch = LatchBuilder::new(upstream.port()).rules(&RULES).start();
    let alice = token("alice", "Alice", &[]);
    let bob = token("bob", "Bob", &[]);
    let status = |tok: &str, path: &str| {
        let request = client().get(latch.url(path)).bearer_auth(tok.to_string());
        async move { request.send().await.unwrap().status() }
    };
    let page = format!("/echo/pages/bb{}", "a".repeat(21));
    assert_eq!(sample(&scrape(&latch).await, "latch_rules_dfa"), 1.0);
    assert_eq!(status(&alice, "/echo/docs/1/edit").await, 200);
    assert_eq!(
        status(&bob, "/echo/docs/1/edit").await,
        423,
        "the DFA enforces the rules"
    );

    latch.write_rules(LARGE);
    wait_for(&latch, "latch_rules_dfa", |v| v == 0.0).await;
    assert_eq!(sample(&scrape(&latch).await, "latch_rules"), 1.0);
    assert_eq!(status(&alice, &page).await, 200);
    assert_eq!(
        status(&bob, &page).await,
        423,
        "the slower engine enforces the rule"
    );
    assert_eq!(
        status(&bob, "/echo/pages/ab").await,
        200,
        "a page it does not match"
    );
    assert_eq!(
        status(&bob, "/echo/docs/1/edit").await,
        200,
        "the old rules are gone"
    );

    latch.write_rules(&RULES);
    wait_for(&latch, "latch_rules_dfa", |v| v == 1.0).await;
    assert_eq!(status(&bob, &page).await, 200, "the large rule is gone");
}

/// Polls `/metrics` until `series` satisfies `done` (rules are polled every second in tests).
async fn wait_for(latch: &Latch, series: &str, done: impl Fn(f64) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(6);
    loop {
        let value = sample(&scrape(latch).await, series);
        if done(value) {
            return;
        }
        assert!(Instant::now() < deadline, "{series} stayed {value}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
