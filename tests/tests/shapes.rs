//! The request shapes a proxy saw, on its admin port: browsing through the real proxy folds
//! ids into placeholders, sorts pages from XHRs and writes, keeps no query string or user,
//! and a suggested rule, once written to the rule file, is enforced.

use std::time::Duration;

use reqwest::header::COOKIE;
use reqwest::Method;
use serde_json::Value;
use tests::upstream::Upstream;
use tests::{client, eventually, token, Latch, LatchBuilder};

/// One request in this many is sampled (`proxy::shapes::SAMPLE_EVERY`).
const SAMPLE_EVERY: u64 = 8;
/// Proxy worker threads (`LatchBuilder` configures 2); each samples on its own count.
const THREADS: u64 = 2;

async fn start() -> (Upstream, Latch) {
    let upstream = Upstream::start().await;
    let port = upstream.port();
    let latch = tokio::task::spawn_blocking(move || LatchBuilder::new(port).start())
        .await
        .expect("starting latch");
    (upstream, latch)
}

/// Sends `n` requests `method path_of(i)` as `user` with `headers`.
async fn browse(
    latch: &Latch,
    n: u64,
    method: Method,
    path_of: impl Fn(u64) -> String,
    headers: &[(&str, &str)],
) {
    let cookie = format!("latch_token={}", token("alice", "Alice", &[]));
    for i in 0..n {
        let mut request = client()
            .request(method.clone(), latch.url(&path_of(i)))
            .header(COOKIE, cookie.as_str());
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let response = request.send().await.expect("the proxy answers");
        assert!(response.status().is_success(), "{}", response.status());
    }
}

async fn shapes(latch: &Latch, prefix: &str) -> Value {
    client()
        .get(latch.admin_url("/shapes"))
        .query(&[("prefix", prefix)])
        .send()
        .await
        .expect("the admin port answers")
        .json()
        .await
        .expect("JSON")
}

fn row<'a>(report: &'a Value, method: &str, shape: &str) -> &'a Value {
    report["shapes"]
        .as_array()
        .expect("a list")
        .iter()
        .find(|s| s["method"] == method && s["shape"] == shape)
        .unwrap_or_else(|| panic!("no {method} {shape} in {report}"))
}

/// A count estimated from sampling is within what the samples of `n` requests can give.
fn assert_estimate(row: &Value, n: u64) {
    let count = row["count"].as_u64().expect("a count");
    assert!(
        count + SAMPLE_EVERY * THREADS >= n && count <= n + SAMPLE_EVERY * THREADS,
        "{count} for {n} requests: {row}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browsing_shows_shapes_with_ids_folded_and_a_rule_from_one_is_enforced() {
    let (_upstream, latch) = start().await;
    let page = [("Sec-Fetch-Dest", "document"), ("Accept", "text/html")];
    let xhr = [("Sec-Fetch-Dest", "empty"), ("Accept", "application/json")];

    browse(
        &latch,
        160,
        Method::GET,
        |i| format!("/echo/pages/{i}/edit/?tab=secret{i}"),
        &page,
    )
    .await;
    browse(
        &latch,
        80,
        Method::POST,
        |i| format!("/echo/pages/{i}/edit/preview/"),
        &xhr,
    )
    .await;
    browse(
        &latch,
        80,
        Method::GET,
        |i| format!("/echo/pages/{i}/revisions/2026-12-0{}", i % 9 + 1),
        &xhr,
    )
    .await;
    browse(
        &latch,
        80,
        Method::GET,
        |_| "/echo/static/app.css".to_owned(),
        &[],
    )
    .await;

    let report = shapes(&latch, "/echo/pages/").await;
    let edit = row(&report, "GET", "/echo/pages/{int}/edit/");
    assert_estimate(edit, 160);
    assert_eq!(edit["kinds"], serde_json::json!(["page"]));
    assert_eq!(edit["writes"], false);
    assert_eq!(edit["rule"], Value::Null);
    assert_eq!(edit["suggestion"]["pattern"], "/echo/pages/{id:int}/edit/");
    assert_eq!(edit["suggestion"]["resource"], "pages:{id}");
    let preview = row(&report, "POST", "/echo/pages/{int}/edit/preview/");
    assert_estimate(preview, 80);
    assert_eq!(preview["writes"], true);
    assert_eq!(preview["kinds"], serde_json::json!(["xhr"]));
    row(&report, "GET", "/echo/pages/{int}/revisions/{date}");
    // The prefix filters; the most seen shape comes first.
    assert_eq!(
        report["shapes"].as_array().map(Vec::len),
        Some(3),
        "{report}"
    );
    assert_eq!(report["shapes"][0]["shape"], "/echo/pages/{int}/edit/");
    let all = shapes(&latch, "").await;
    assert_eq!(
        row(&all, "GET", "/echo/static/app.css")["kinds"],
        serde_json::json!(["asset"])
    );

    // Nothing of a query string or a user is kept.
    let text = all.to_string();
    for secret in ["secret", "tab=", "alice", "Alice"] {
        assert!(!text.contains(secret), "{secret} in {text}");
    }

    // The suggestion, as a rule, locks each page apart, and the shape then names its rule.
    latch.write_rules(&format!(
        "[[rule]]\nid = \"pages\"\npattern = '{}'\nresource = \"{}\"\ninject = false\n",
        edit["suggestion"]["pattern"].as_str().unwrap(),
        edit["suggestion"]["resource"].as_str().unwrap()
    ));
    let status = |user: &'static str, path: &'static str| {
        let latch = &latch;
        async move {
            client()
                .get(latch.url(path))
                .header(COOKIE, format!("latch_token={}", token(user, user, &[])))
                .send()
                .await
                .expect("the proxy answers")
                .status()
                .as_u16()
        }
    };
    eventually(Duration::from_secs(10), || async {
        (status("alice", "/echo/pages/7/edit/").await == 200
            && status("bob", "/echo/pages/7/edit/").await == 423)
            .then_some(())
    })
    .await
    .expect("the suggested rule is enforced");
    assert_eq!(status("bob", "/echo/pages/8/edit/").await, 200);
    browse(
        &latch,
        40,
        Method::GET,
        |_| "/echo/pages/7/edit/".to_owned(),
        &page,
    )
    .await;
    let report = shapes(&latch, "/echo/pages/").await;
    assert_eq!(
        row(&report, "GET", "/echo/pages/{int}/edit/")["rule"],
        "pages"
    );
}
