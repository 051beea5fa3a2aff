//! Denials are part of the audit trail: the proxy records them, once per user and resource per
//! window, and the control plane's events API serves them next to the lock events.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::Value;
use tests::eventually;
use tests::fixtures::DOC_EDIT;
use tests::node::{admin_bearer, Mode, Node, NodeConfig};
use tests::{client, token, Upstream};

async fn events(node: &Node, query: &str) -> Vec<Value> {
    let resp = client()
        .get(node.api(&format!("/api/v1/events?{query}")))
        .header("authorization", admin_bearer())
        .send()
        .await
        .expect("events API");
    assert_eq!(resp.status(), StatusCode::OK);
    let body: Value = resp.json().await.expect("events JSON");
    body.get("events")
        .and_then(Value::as_array)
        .cloned()
        .or_else(|| body.as_array().cloned())
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repeated_denials_are_recorded_once_with_rule_and_holder() {
    let upstream = Upstream::start().await;
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(dir.path().join("rules.toml"), DOC_EDIT).expect("rules");
    let node = Node::start(
        Mode::Run,
        NodeConfig {
            dir: dir.path(),
            upstream_port: upstream.port(),
            rules_store: "rules.toml",
            poll_seconds: 1,
        },
    );
    let http = client();
    let alice = token("alice", "Alice", &[]);
    let bob = token("bob", "Bob", &[]);
    let url = node.proxy_url("/echo/docs/7/edit");
    let claim = http
        .get(&url)
        .bearer_auth(&alice)
        .send()
        .await
        .expect("alice");
    assert_eq!(claim.status(), StatusCode::OK);
    for _ in 0..3 {
        let denied = http.get(&url).bearer_auth(&bob).send().await.expect("bob");
        assert_eq!(denied.status(), StatusCode::LOCKED);
    }

    let denials = eventually(Duration::from_secs(5), || async {
        let found = events(&node, "kind=denied&resource=doc:7").await;
        (!found.is_empty()).then_some(found)
    })
    .await
    .expect("the denial reaches the audit trail");
    // Give any duplicate a moment to arrive before counting.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let denials_now = events(&node, "kind=denied&resource=doc:7").await;
    assert_eq!(
        denials_now.len(),
        1,
        "three denials in a row are recorded once: {denials:?}"
    );
    let d = &denials_now[0];
    assert_eq!(d["user"], "bob");
    assert_eq!(d["rule"], "doc-edit");
    assert_eq!(d["holder"]["id"], "alice");

    let claims = eventually(Duration::from_secs(5), || async {
        let found = events(&node, "kind=claimed&resource=doc:7").await;
        (!found.is_empty()).then_some(found)
    })
    .await
    .expect("the claim is in the audit trail too");
    assert_eq!(claims[0]["holder"]["id"], "alice");
}
