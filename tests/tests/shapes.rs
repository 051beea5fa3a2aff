//! The request shapes a proxy saw, on its admin port: browsing through the real proxy folds
//! ids into placeholders, sorts pages from XHRs and writes, keeps no query string or user,
//! and a suggested rule, once written to the rule file, is enforced. The control plane merges
//! every instance's shapes and offers the other paths of one object for the same resource.

use std::time::Duration;

use reqwest::header::COOKIE;
use reqwest::Method;
use serde_json::Value;
use tests::upstream::Upstream;
use tests::{client, eventually, token, Latch, LatchBuilder};

/// Every request is noted, so that counts are exact (8 by default, drawn at random).
const SAMPLE_EVERY: (&str, &str) = ("LATCH_PROXY_SHAPE_SAMPLE_EVERY", "1");

async fn start() -> (Upstream, Latch) {
    let upstream = Upstream::start().await;
    let port = upstream.port();
    let latch = tokio::task::spawn_blocking(move || {
        LatchBuilder::new(port)
            .env(SAMPLE_EVERY.0, SAMPLE_EVERY.1)
            .start()
    })
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

/// With every request noted, a shape's count is its requests.
fn assert_count(row: &Value, n: u64) {
    assert_eq!(row["count"].as_u64(), Some(n), "{row}");
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
    assert_count(edit, 160);
    assert_eq!(edit["kinds"], serde_json::json!(["page"]));
    assert_eq!(edit["writes"], false);
    assert_eq!(edit["rule"], Value::Null);
    assert_eq!(edit["suggestion"]["pattern"], "/echo/pages/{id:int}/edit/");
    assert_eq!(edit["suggestion"]["resource"], "pages:{id}");
    let preview = row(&report, "POST", "/echo/pages/{int}/edit/preview/");
    assert_count(preview, 80);
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
    // First the rule is loaded (the proxy polls its file), then the first claim is made: a
    // claim that raced the reload would find no rule, and the next user would take the lock.
    let status_url = latch.url("/__latch/status?path=/echo/pages/7/edit/");
    let alice = format!("latch_token={}", token("alice", "alice", &[]));
    let loaded = eventually(Duration::from_secs(20), || async {
        let answer: Value = client()
            .get(&status_url)
            .header(COOKIE, &alice)
            .send()
            .await
            .ok()?
            .json()
            .await
            .ok()?;
        (answer["rule"] == "pages").then_some(())
    })
    .await;
    assert!(
        loaded.is_some(),
        "the suggested rule was not loaded; the proxy's log:\n{}",
        latch.log()
    );
    assert_eq!(status("alice", "/echo/pages/7/edit/").await, 200);
    assert_eq!(status("bob", "/echo/pages/7/edit/").await, 423);
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_control_plane_merges_the_shapes_of_every_instance_on_one_redis_and_relates_one_objects_paths(
) {
    let redis = tests::redis::RedisServer::start();
    let upstream = Upstream::start().await;
    let port = upstream.port();
    let cp_port = tests::free_port();
    let locks = tests::instances::redis_locks(&redis.url());
    let with_cp = {
        let locks = locks.clone();
        tokio::task::spawn_blocking(move || {
            let latch = LatchBuilder::new(port)
                .command("run")
                .env(SAMPLE_EVERY.0, SAMPLE_EVERY.1)
                .locks(&locks)
                .section(&format!(
                    "[control_plane]\nlisten = \"127.0.0.1:{cp_port}\"\nadmin_roles = [\"admin\"]"
                ))
                .start();
            tests::wait_for_port(cp_port, Duration::from_secs(20), || latch.log());
            latch
        })
        .await
        .expect("starting latch run")
    };
    let other = tokio::task::spawn_blocking(move || {
        LatchBuilder::new(port)
            .env(SAMPLE_EVERY.0, SAMPLE_EVERY.1)
            .locks(&locks)
            .start()
    })
    .await
    .expect("starting latch proxy");
    tests::instances::wait_ready(&other, Duration::from_secs(10)).await;
    let page = [("Sec-Fetch-Dest", "document")];
    browse(
        &with_cp,
        80,
        Method::GET,
        |i| format!("/echo/pages/{i}/edit/"),
        &page,
    )
    .await;
    browse(
        &other,
        80,
        Method::GET,
        |i| format!("/echo/pages/{i}/edit/"),
        &page,
    )
    .await;
    browse(
        &other,
        40,
        Method::POST,
        |i| format!("/echo/pages/{i}/lock/"),
        &[],
    )
    .await;

    let admin = token("root", "Root", &["admin"]);
    let url = format!("http://127.0.0.1:{cp_port}/api/v1/shapes");
    let merged = eventually(Duration::from_secs(15), || async {
        let list: Value = client()
            .get(&url)
            .query(&[("prefix", "/echo/pages/")])
            .bearer_auth(&admin)
            .send()
            .await
            .ok()?
            .json()
            .await
            .ok()?;
        (list["instances"] == 2 && list["shapes"].as_array()?.len() == 2).then_some(list)
    })
    .await
    .expect("both instances' shapes reach the control plane");
    let edit = row(&merged, "GET", "/echo/pages/{int}/edit/");
    assert_count(edit, 160);
    assert_eq!(edit["suggestion"]["resource"], "pages:{id}");
    let lock = row(&merged, "POST", "/echo/pages/{int}/lock/");
    assert_eq!(lock["writes"], true);
    // The page's write endpoint, seen on the other instance only, is offered for the page's
    // resource, and the other way round.
    assert_eq!(
        edit["related"],
        serde_json::json!([{
            "shape": "/echo/pages/{int}/lock/",
            "methods": ["POST"],
            "writes": true,
            "count": 40,
            "pattern": "/echo/pages/{id:int}/lock/",
        }])
    );
    assert_eq!(lock["suggestion"]["resource"], "pages:{id}");
    assert_eq!(lock["related"][0]["shape"], "/echo/pages/{int}/edit/");
    assert_eq!(lock["related"][0]["writes"], false);

    // A bad limit is a problem naming the field.
    let bad = client()
        .get(&url)
        .query(&[("limit", "0")])
        .bearer_auth(&admin)
        .send()
        .await
        .expect("the control plane answers");
    assert_eq!(bad.status(), 422);
    assert_eq!(bad.headers()["content-type"], "application/problem+json");

    // The preview of a rule for the page and its lock endpoint, replayed over both instances'
    // sampled requests: Alice's, then Bob's on the other instance, then one with no token.
    let cookie = format!("latch_token={}", token("bob", "Bob", &[]));
    for (method, path) in [
        (Method::GET, "/echo/pages/5/edit/"),
        (Method::POST, "/echo/pages/5/lock/"),
    ] {
        let response = client()
            .request(method, other.url(path))
            .header(COOKIE, cookie.as_str())
            .send()
            .await
            .expect("the proxy answers");
        assert!(response.status().is_success(), "{}", response.status());
    }
    let anonymous = client()
        .get(other.url("/echo/pages/6/edit/"))
        .send()
        .await
        .expect("the proxy answers");
    assert!(anonymous.status().is_success(), "{}", anonymous.status());
    let candidates = serde_json::json!([
        {"id": "pages", "pattern": "/echo/pages/{id:int}/edit/", "resource": "pages:{id}"},
        {"id": "pages-lock", "pattern": "/echo/pages/{id:int}/lock/", "resource": "pages:{id}"},
    ]);
    let preview_url = format!("http://127.0.0.1:{cp_port}/api/v1/rules/preview");
    let preview = eventually(Duration::from_secs(15), || async {
        let preview: Value = client()
            .post(&preview_url)
            .bearer_auth(&admin)
            .json(&candidates)
            .send()
            .await
            .ok()?
            .json()
            .await
            .ok()?;
        (preview["users"].as_array()?.len() == 3).then_some(preview)
    })
    .await
    .expect("Bob's requests reach the preview");
    assert_eq!(preview["instances"], 2);
    assert_eq!(preview["matched"], 80 + 80 + 40 + 3, "{preview}");
    let users = preview["users"].as_array().expect("users");
    assert_eq!(users[0]["user"], "alice");
    assert_eq!(users[0]["held"].as_array().map(Vec::len), Some(80));
    assert_eq!(users[0]["locked"], 0);
    assert_eq!(
        users[1]["summary"],
        "bob: 2 requests refused 423, alice held it"
    );
    assert_eq!(users[1]["held_by"], serde_json::json!(["alice"]));
    assert!(users[2]["user"].is_null());
    assert_eq!(
        users[2]["summary"],
        "not signed in: 1 request asked to sign in"
    );
    let requests = preview["requests"].as_array().expect("requests");
    let last: Vec<Value> = requests[requests.len() - 3..]
        .iter()
        .map(|r| {
            serde_json::json!([
                r["user"],
                r["method"],
                r["path"],
                r["rule"],
                r["resource"],
                r["treatment"],
                r["status"],
                r["holder"]
            ])
        })
        .collect();
    assert_eq!(
        last,
        [
            serde_json::json!([
                "bob",
                "GET",
                "/echo/pages/5/edit/",
                "pages",
                "pages:5",
                "locked",
                423,
                "alice"
            ]),
            serde_json::json!([
                "bob",
                "POST",
                "/echo/pages/5/lock/",
                "pages-lock",
                "pages:5",
                "locked",
                423,
                "alice"
            ]),
            serde_json::json!([
                null,
                "GET",
                "/echo/pages/6/edit/",
                "pages",
                "pages:6",
                "sign_in",
                401,
                "alice"
            ]),
        ]
    );
    assert!(
        requests
            .windows(2)
            .all(|w| w[0]["at"].as_u64() <= w[1]["at"].as_u64()),
        "in time order"
    );

    // Problems, as for the other writes.
    for (body, field) in [
        (serde_json::json!([]), ""),
        (serde_json::json!({"id": "x", "pattern": "/x"}), ""),
        (
            serde_json::json!([{"id": "ok", "pattern": "/a"}, {"id": "x"}]),
            "[1].pattern",
        ),
    ] {
        let response = client()
            .post(&preview_url)
            .bearer_auth(&admin)
            .json(&body)
            .send()
            .await
            .expect("the control plane answers");
        assert_eq!(response.status(), 422, "{body}");
        assert_eq!(
            response.headers()["content-type"],
            "application/problem+json"
        );
        let problem: Value = response.json().await.expect("a problem");
        assert_eq!(problem["errors"][0]["field"], field, "{problem}");
    }
    let not_json = client()
        .post(&preview_url)
        .bearer_auth(&admin)
        .body("[]")
        .send()
        .await
        .expect("the control plane answers");
    assert_eq!(not_json.status(), 415);
    let too_large = client()
        .post(&preview_url)
        .bearer_auth(&admin)
        .header("content-type", "application/json")
        .body(format!("[{}]", " ".repeat(70 * 1024)))
        .send()
        .await
        .expect("the control plane answers");
    assert_eq!(too_large.status(), 413);
    let foreign = client()
        .post(&preview_url)
        .bearer_auth(&admin)
        .header("origin", "https://evil.example")
        .json(&candidates)
        .send()
        .await
        .expect("the control plane answers");
    assert_eq!(foreign.status(), 403);
    let anonymous = client()
        .post(&preview_url)
        .json(&candidates)
        .send()
        .await
        .expect("the control plane answers");
    assert_eq!(anonymous.status(), 401);
}
