//! The admin API (docs/admin-api.md) over real sockets, on both rule stores: a MongoDB-compatible
//! server (nx-27017) and the embedded rule file. Also: locks and force release seen from a
//! banner socket, a release conditional on the lock's ETag, the audit trail and its live
//! stream, rule changes reaching a separate proxy, and what happens while MongoDB is down.

use std::time::{Duration, Instant};

use futures::{SinkExt, StreamExt};
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, COOKIE, ETAG, IF_MATCH, WWW_AUTHENTICATE};
use reqwest::{Response, StatusCode};
use serde_json::{json, Value};
use tests::eventually;
use tests::mongo::MongoServer;
use tests::node::{admin_bearer, Mode, Node, NodeConfig};
use tests::{client, token, Upstream};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::Message;

/// A rule over the upstream's echo route, so a test can see what the proxy decided.
fn doc_rule(id: &str) -> Value {
    json!({
        "id": id,
        "pattern": "/echo/doc/(?P<id>[0-9]+)",
        "resource": "doc:{id}",
    })
}

async fn send(request: reqwest::RequestBuilder) -> Response {
    request.send().await.expect("the control plane answers")
}

fn etag(response: &Response) -> String {
    response
        .headers()
        .get(ETAG)
        .and_then(|v| v.to_str().ok())
        .expect("an ETag header")
        .to_owned()
}

fn is_problem(response: &Response) -> bool {
    response
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v == "application/problem+json")
}

struct Api<'a> {
    node: &'a Node,
}

impl Api<'_> {
    fn get(&self, path: &str) -> reqwest::RequestBuilder {
        client()
            .get(self.node.api(path))
            .header(AUTHORIZATION, admin_bearer())
    }

    fn post(&self, path: &str, body: &Value) -> reqwest::RequestBuilder {
        client()
            .post(self.node.api(path))
            .header(AUTHORIZATION, admin_bearer())
            .json(body)
    }

    fn put(&self, path: &str, body: &Value) -> reqwest::RequestBuilder {
        client()
            .put(self.node.api(path))
            .header(AUTHORIZATION, admin_bearer())
            .json(body)
    }

    fn delete(&self, path: &str) -> reqwest::RequestBuilder {
        client()
            .delete(self.node.api(path))
            .header(AUTHORIZATION, admin_bearer())
    }
}

/// The whole rules API contract, run against whichever store `node` uses.
async fn rules_api_contract(node: &Node) {
    let api = Api { node };

    // Access: 401 without a token (with a Bearer challenge), 403 with a non-admin role.
    let anonymous = send(client().get(node.api("/api/v1/rules"))).await;
    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);
    assert!(is_problem(&anonymous));
    assert!(anonymous.headers().contains_key(WWW_AUTHENTICATE));
    let editor = format!("Bearer {}", token("ed", "Ed", &["editor"]));
    let forbidden = send(
        client()
            .post(node.api("/api/v1/rules"))
            .header(AUTHORIZATION, editor)
            .json(&doc_rule("x")),
    )
    .await;
    assert_eq!(forbidden.status(), StatusCode::FORBIDDEN);
    assert!(is_problem(&forbidden));
    let cookie = format!("latch_token={}", token("root", "Root", &["admin"]));
    let by_cookie = send(
        client()
            .get(node.api("/api/v1/rules"))
            .header(COOKIE, cookie),
    )
    .await;
    assert_eq!(by_cookie.status(), StatusCode::OK);

    // 422 lists every field problem at once.
    let bad = json!({
        "id": "Bad Id", "pattern": "/docs/(?P<id>[0-9]+", "mode": "redirect",
        "lease_seconds": 1, "colour": "red"
    });
    let refused = send(api.post("/api/v1/rules", &bad)).await;
    assert_eq!(refused.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert!(is_problem(&refused));
    let problem: Value = refused.json().await.unwrap();
    let fields: Vec<&str> = problem["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].as_str().unwrap())
        .collect();
    assert_eq!(
        fields,
        vec!["colour"],
        "type and unknown-field errors come first: {problem}"
    );
    let mut bad = bad;
    bad.as_object_mut().unwrap().remove("colour");
    let problem: Value = send(api.post("/api/v1/rules", &bad))
        .await
        .json()
        .await
        .unwrap();
    let fields: Vec<&str> = problem["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].as_str().unwrap())
        .collect();
    for field in ["id", "pattern", "redirect_to", "lease_seconds"] {
        assert!(fields.contains(&field), "{field} missing from {problem}");
    }

    // Validation stores nothing.
    let validation: Value = send(api.post("/api/v1/rules/validate", &bad))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(validation["valid"], false);
    assert!(validation["errors"].as_array().unwrap().len() >= 4);
    let valid: Value = send(api.post("/api/v1/rules/validate", &doc_rule("ok")))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(valid, json!({"valid": true, "errors": []}));
    let listed: Value = send(api.get("/api/v1/rules")).await.json().await.unwrap();
    assert_eq!(listed["rules"], json!([]));

    // Create, read, conflict.
    let created = send(api.post("/api/v1/rules", &doc_rule("doc"))).await;
    assert_eq!(created.status(), StatusCode::CREATED);
    let first_tag = etag(&created);
    let read = send(api.get("/api/v1/rules/doc")).await;
    assert_eq!(read.status(), StatusCode::OK);
    assert_eq!(etag(&read), first_tag);
    let body: Value = read.json().await.unwrap();
    assert_eq!(body["resource"], "doc:{id}");
    assert_eq!(body["mode"], "block");
    assert_eq!(
        send(api.post("/api/v1/rules", &doc_rule("doc")))
            .await
            .status(),
        StatusCode::CONFLICT
    );

    // ETags: 428 without If-Match, 200 with the current one, 412 with the old one.
    let mut changed = doc_rule("doc");
    changed["priority"] = json!(5);
    let no_tag = send(api.put("/api/v1/rules/doc", &changed)).await;
    assert_eq!(no_tag.status(), StatusCode::PRECONDITION_REQUIRED);
    assert!(is_problem(&no_tag));
    let updated = send(
        api.put("/api/v1/rules/doc", &changed)
            .header(IF_MATCH, &first_tag),
    )
    .await;
    assert_eq!(updated.status(), StatusCode::OK);
    let second_tag = etag(&updated);
    assert_ne!(second_tag, first_tag);
    changed["priority"] = json!(6);
    let stale = send(
        api.put("/api/v1/rules/doc", &changed)
            .header(IF_MATCH, &first_tag),
    )
    .await;
    assert_eq!(stale.status(), StatusCode::PRECONDITION_FAILED);
    assert!(is_problem(&stale));
    let stale_delete = send(api.delete("/api/v1/rules/doc").header(IF_MATCH, &first_tag)).await;
    assert_eq!(stale_delete.status(), StatusCode::PRECONDITION_FAILED);
    assert_eq!(
        send(api.delete("/api/v1/rules/doc")).await.status(),
        StatusCode::PRECONDITION_REQUIRED
    );

    // Match: normalized path, rule and resource; 400 for a path the proxy refuses.
    let matched: Value = send(api.post(
        "/api/v1/match",
        &json!({"method": "get", "path": "/echo/doc//./7/"}),
    ))
    .await
    .json()
    .await
    .unwrap();
    assert_eq!(matched["normalized_path"], "/echo/doc/7/");
    assert_eq!(matched["matched"], true);
    assert_eq!(matched["rule"]["id"], "doc");
    assert_eq!(matched["resource"], "doc:7");
    let unmatched: Value = send(api.post("/api/v1/match", &json!({"path": "/elsewhere"})))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(unmatched["matched"], false);
    assert_eq!(unmatched["rule"], Value::Null);
    let refused = send(api.post("/api/v1/match", &json!({"path": "/echo/doc/1%2F2"}))).await;
    assert_eq!(refused.status(), StatusCode::BAD_REQUEST);
    assert!(is_problem(&refused));

    // Delete with the current tag.
    let deleted = send(
        api.delete("/api/v1/rules/doc")
            .header(IF_MATCH, &second_tag),
    )
    .await;
    assert_eq!(deleted.status(), StatusCode::NO_CONTENT);
    assert_eq!(
        send(api.get("/api/v1/rules/doc")).await.status(),
        StatusCode::NOT_FOUND
    );

    // Every change is audited with who, before and after.
    let page = eventually(Duration::from_secs(5), || async {
        let page: Value = send(api.get("/api/v1/events?resource=&limit=10"))
            .await
            .json()
            .await
            .ok()?;
        (page["events"].as_array()?.len() >= 3).then_some(page)
    })
    .await
    .expect("three rule events");
    let kinds: Vec<&str> = page["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, vec!["rule_deleted", "rule_updated", "rule_created"]);
    let update = &page["events"][1];
    assert_eq!(update["user"], "root");
    assert_eq!(update["rule"], "doc");
    assert_eq!(update["detail"]["before"]["priority"], 0);
    assert_eq!(update["detail"]["after"]["priority"], 5);
    let only_created: Value = send(api.get("/api/v1/events?kind=rule_created"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(only_created["events"].as_array().unwrap().len(), 1);
    let bad_filter = send(api.get("/api/v1/events?kind=renewed&limit=0")).await;
    assert_eq!(bad_filter.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let paged: Value = send(api.get("/api/v1/events?limit=2"))
        .await
        .json()
        .await
        .unwrap();
    let cursor = paged["next"].as_str().expect("a cursor for the next page");
    let older: Value = send(api.get(&format!("/api/v1/events?limit=2&before={cursor}")))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(older["events"][0]["kind"], "rule_created");

    // The OpenAPI description is served and names the routes.
    let doc: Value = send(api.get("/api/v1/openapi.json"))
        .await
        .json()
        .await
        .unwrap();
    assert!(doc["paths"]["/api/v1/rules/{id}"]["put"].is_object());
}

fn write_empty_rules(dir: &std::path::Path) {
    std::fs::write(dir.join("rules.toml"), "").unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rules_api_on_the_file_store() {
    let dir = tempfile::tempdir().unwrap();
    write_empty_rules(dir.path());
    let node = Node::start(
        Mode::ControlPlane,
        NodeConfig {
            dir: dir.path(),
            upstream_port: 9,
            rules_store: "rules.toml",
            poll_seconds: 1,
        },
    );
    rules_api_contract(&node).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rules_api_on_mongodb() {
    let mongo = MongoServer::start();
    let dir = tempfile::tempdir().unwrap();
    let node = Node::start(
        Mode::ControlPlane,
        NodeConfig {
            dir: dir.path(),
            upstream_port: 9,
            rules_store: &mongo.url(),
            poll_seconds: 1,
        },
    );
    rules_api_contract(&node).await;
}

/// What the upstream was told about a request: the lock resource, if the proxy applied a rule.
async fn resource_seen(node: &Node, user: &str, path: &str) -> Option<String> {
    let response = client()
        .get(node.proxy_url(path))
        .header(COOKIE, format!("latch_token={}", token(user, user, &[])))
        .send()
        .await
        .ok()?;
    if response.status() != StatusCode::OK {
        return None;
    }
    let echo: Value = response.json().await.ok()?;
    echo["headers"]["x-latch-resource"]
        .as_str()
        .map(str::to_owned)
}

async fn status_for(node: &Node, user: &str, path: &str) -> StatusCode {
    client()
        .get(node.proxy_url(path))
        .header(COOKIE, format!("latch_token={}", token(user, user, &[])))
        .send()
        .await
        .expect("the proxy answers")
        .status()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rule_created_through_the_api_is_enforced_by_a_separate_proxy_in_time() {
    let mongo = MongoServer::start();
    let upstream = Upstream::start().await;
    let dir = tempfile::tempdir().unwrap();
    let url = mongo.url();
    let config = || NodeConfig {
        dir: dir.path(),
        upstream_port: upstream.port(),
        rules_store: &url,
        poll_seconds: 1,
    };
    let control_plane = Node::start(Mode::ControlPlane, config());
    let proxy = Node::start(Mode::Proxy, config());
    assert_eq!(resource_seen(&proxy, "alice", "/echo/doc/1").await, None);

    let created = send(
        Api {
            node: &control_plane,
        }
        .post("/api/v1/rules", &doc_rule("doc")),
    )
    .await;
    assert_eq!(created.status(), StatusCode::CREATED);
    let saved = Instant::now();
    let enforced = eventually(Duration::from_secs(3), || async {
        resource_seen(&proxy, "alice", "/echo/doc/1").await
    })
    .await;
    let took = saved.elapsed();
    assert_eq!(
        enforced.as_deref(),
        Some("doc:1"),
        "proxy log:\n{}",
        proxy.log()
    );
    assert!(
        took <= Duration::from_secs(2),
        "took {took:?}, more than poll_seconds + 1 s"
    );
    assert_eq!(
        status_for(&proxy, "bob", "/echo/doc/1").await,
        StatusCode::LOCKED
    );
}

/// A banner socket for `user`, watching `path`.
async fn banner(
    node: &Node,
    user: &str,
    path: &str,
) -> tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>> {
    let mut request = node.ws_url("/__latch/ws").into_client_request().unwrap();
    let cookie = format!("latch_token={}", token(user, user, &[]));
    request
        .headers_mut()
        .insert("cookie", HeaderValue::from_str(&cookie).unwrap());
    let (mut ws, _) = tokio_tungstenite::connect_async(request)
        .await
        .expect("the banner socket opens");
    ws.send(Message::text(
        json!({"type": "watch", "path": path}).to_string(),
    ))
    .await
    .unwrap();
    ws
}

/// The next `lock` message for `resource`, skipping others.
async fn next_lock_message(
    ws: &mut tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >,
    resource: &str,
) -> Value {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let message = tokio::time::timeout(left, ws.next())
            .await
            .expect("a lock message in time")
            .expect("the socket stays open")
            .expect("a readable frame");
        if let Message::Text(text) = message {
            let value: Value = serde_json::from_str(&text).unwrap();
            if value["type"] == "lock" && value["resource"] == resource {
                return value;
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn locks_are_listed_and_a_force_release_reaches_the_holder_and_the_trail() {
    let upstream = Upstream::start().await;
    let dir = tempfile::tempdir().unwrap();
    write_empty_rules(dir.path());
    let node = Node::start(
        Mode::Run,
        NodeConfig {
            dir: dir.path(),
            upstream_port: upstream.port(),
            rules_store: "rules.toml",
            poll_seconds: 1,
        },
    );
    let api = Api { node: &node };
    assert_eq!(
        send(api.post("/api/v1/rules", &doc_rule("doc")))
            .await
            .status(),
        StatusCode::CREATED
    );
    let claimed = eventually(Duration::from_secs(3), || async {
        resource_seen(&node, "alice", "/echo/doc/1").await
    })
    .await;
    assert_eq!(claimed.as_deref(), Some("doc:1"));

    // The live stream, opened before the release.
    let mut stream = send(api.get("/api/v1/events/stream?resource=doc:1"))
        .await
        .bytes_stream();

    let locks: Value = send(api.get("/api/v1/locks")).await.json().await.unwrap();
    assert_eq!(locks["locks"][0]["resource"], "doc:1");
    assert_eq!(locks["locks"][0]["holder"]["id"], "alice");
    assert_eq!(locks["locks"][0]["rule"], "doc");
    assert!(locks["locks"][0]["instance"]
        .as_str()
        .is_some_and(|i| !i.is_empty()));

    // "Test a path" as a given user says what the proxy would do to them now, and agrees
    // with the proxy itself.
    let api_ref = &api;
    let as_user = |user: &str, path: &str, method: &str| {
        let body = json!({ "path": path, "method": method, "user": user });
        async move {
            let api = api_ref;
            let answer = send(api.post("/api/v1/match", &body)).await;
            assert_eq!(answer.status(), StatusCode::OK);
            answer.json::<Value>().await.unwrap()
        }
    };
    let bob = as_user("bob", "/echo/doc/1?tab=2", "POST").await;
    assert_eq!(
        (&bob["treatment"], &bob["status"], &bob["holder"]),
        (&json!("locked"), &json!(423), &json!("alice")),
        "{bob}"
    );
    assert_eq!(
        status_for(&node, "bob", "/echo/doc/1").await,
        StatusCode::LOCKED
    );
    let alice = as_user("alice", "/echo/doc/1", "GET").await;
    assert_eq!(alice["treatment"], "renewed", "{alice}");
    assert_eq!(alice["status"], Value::Null);
    let free = as_user("bob", "/echo/doc/2", "GET").await;
    assert_eq!(
        (&free["treatment"], &free["holder"]),
        (&json!("claimed"), &Value::Null),
        "{free}"
    );
    let anyone = send(api.post("/api/v1/match", &json!({ "path": "/echo/doc/1" })))
        .await
        .json::<Value>()
        .await
        .unwrap();
    assert_eq!(anyone["treatment"], Value::Null, "no user, no treatment");
    let empty = send(api.post(
        "/api/v1/match",
        &json!({ "path": "/echo/doc/1", "user": "" }),
    ))
    .await;
    assert_eq!(empty.status(), StatusCode::UNPROCESSABLE_ENTITY);

    let mut holder = banner(&node, "alice", "/echo/doc/1").await;
    let mut watcher = banner(&node, "bob", "/echo/doc/1").await;
    assert_eq!(next_lock_message(&mut holder, "doc:1").await["you"], true);
    assert_eq!(
        next_lock_message(&mut watcher, "doc:1").await["state"],
        "held"
    );

    let released = send(api.delete("/api/v1/locks/doc:1")).await;
    assert_eq!(released.status(), StatusCode::OK);
    let released: Value = released.json().await.unwrap();
    assert_eq!(released["released"]["holder"]["id"], "alice");
    assert_eq!(
        next_lock_message(&mut holder, "doc:1").await["state"],
        "free"
    );
    assert_eq!(
        next_lock_message(&mut watcher, "doc:1").await["state"],
        "free"
    );
    assert_eq!(
        send(api.delete("/api/v1/locks/doc:1")).await.status(),
        StatusCode::NOT_FOUND
    );

    // The stream carries the force release, naming the admin and the former holder.
    let mut seen = String::new();
    let deadline = Instant::now() + Duration::from_secs(5);
    while !seen.contains("force_released") {
        let left = deadline.saturating_duration_since(Instant::now());
        let chunk = tokio::time::timeout(left, stream.next())
            .await
            .expect("the stream delivers the release in time")
            .expect("the stream stays open")
            .unwrap();
        seen.push_str(&String::from_utf8_lossy(&chunk));
    }
    assert!(seen.contains("event: audit"), "{seen}");
    let page: Value = send(api.get("/api/v1/events?resource=doc:1"))
        .await
        .json()
        .await
        .unwrap();
    let release = page["events"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["kind"] == "force_released")
        .expect("the release is in the trail");
    assert_eq!(release["user"], "root");
    assert_eq!(release["previous_holder"]["id"], "alice");
    assert!(page["events"]
        .as_array()
        .unwrap()
        .iter()
        .any(|e| e["kind"] == "claimed" && e["user"] == "alice"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_release_with_if_match_leaves_a_lock_that_changed_hands() {
    let upstream = Upstream::start().await;
    let dir = tempfile::tempdir().unwrap();
    write_empty_rules(dir.path());
    let node = Node::start(
        Mode::Run,
        NodeConfig {
            dir: dir.path(),
            upstream_port: upstream.port(),
            rules_store: "rules.toml",
            poll_seconds: 1,
        },
    );
    let api = Api { node: &node };
    assert_eq!(
        send(api.post("/api/v1/rules", &doc_rule("doc")))
            .await
            .status(),
        StatusCode::CREATED
    );
    let claimed = eventually(Duration::from_secs(3), || async {
        resource_seen(&node, "alice", "/echo/doc/1").await
    })
    .await;
    assert_eq!(claimed.as_deref(), Some("doc:1"));

    // GET of one lock carries its ETag, the one the list shows.
    let alices = send(api.get("/api/v1/locks/doc:1")).await;
    assert_eq!(alices.status(), StatusCode::OK);
    let alices_tag = etag(&alices);
    let alices: Value = alices.json().await.unwrap();
    assert_eq!(alices["holder"]["id"], "alice");
    assert_eq!(alices_tag, format!("\"{}\"", alices["fence"]));
    let list: Value = send(api.get("/api/v1/locks")).await.json().await.unwrap();
    assert_eq!(list["locks"][0]["etag"], alices["etag"]);
    let missing = send(api.get("/api/v1/locks/doc:2")).await;
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);
    assert!(is_problem(&missing));

    // Released with Alice's tag, then Bob takes it: Alice's tag no longer releases anything.
    let released = send(
        api.delete("/api/v1/locks/doc:1")
            .header(IF_MATCH, &alices_tag),
    )
    .await;
    assert_eq!(released.status(), StatusCode::OK);
    assert_eq!(
        resource_seen(&node, "bob", "/echo/doc/1").await.as_deref(),
        Some("doc:1")
    );
    let stale = send(
        api.delete("/api/v1/locks/doc:1")
            .header(IF_MATCH, &alices_tag),
    )
    .await;
    assert_eq!(stale.status(), StatusCode::PRECONDITION_FAILED);
    assert!(is_problem(&stale));
    let bobs_tag = etag(&stale);
    assert_ne!(bobs_tag, alices_tag);
    let problem: Value = stale.json().await.unwrap();
    assert_eq!(
        format!("\"{}\"", problem["current_etag"].as_str().unwrap()),
        bobs_tag
    );
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .contains("changed hands"),
        "{problem}"
    );
    let still: Value = send(api.get("/api/v1/locks/doc:1"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(still["holder"]["id"], "bob", "Bob's lock was not released");

    // If-Match as RFC 9110 reads it: a weak tag never matches, a list matches by any member,
    // and a field that is not a tag list is a 400.
    let weak = format!("W/{bobs_tag}");
    for (field, status) in [
        (weak.as_str(), StatusCode::PRECONDITION_FAILED),
        ("\"\"", StatusCode::PRECONDITION_FAILED),
        ("doc", StatusCode::BAD_REQUEST),
        ("*, \"1\"", StatusCode::BAD_REQUEST),
    ] {
        let answer = send(api.delete("/api/v1/locks/doc:1").header(IF_MATCH, field)).await;
        assert_eq!(answer.status(), status, "If-Match: {field}");
        assert!(is_problem(&answer), "If-Match: {field}");
    }
    let list_field = format!("{alices_tag}, {bobs_tag}");
    let released = send(
        api.delete("/api/v1/locks/doc:1")
            .header(IF_MATCH, &list_field),
    )
    .await;
    assert_eq!(released.status(), StatusCode::OK);
    let released: Value = released.json().await.unwrap();
    assert_eq!(released["released"]["holder"]["id"], "bob");
    // A lock nobody holds is 404 whatever the condition; `*` releases whoever holds it.
    let gone = send(
        api.delete("/api/v1/locks/doc:1")
            .header(IF_MATCH, &bobs_tag),
    )
    .await;
    assert_eq!(gone.status(), StatusCode::NOT_FOUND);
    let unreadable = send(api.delete("/api/v1/locks/doc:1").header(IF_MATCH, "doc")).await;
    assert_eq!(unreadable.status(), StatusCode::NOT_FOUND);
    assert_eq!(
        resource_seen(&node, "carol", "/echo/doc/1")
            .await
            .as_deref(),
        Some("doc:1")
    );
    let any = send(api.delete("/api/v1/locks/doc:1").header(IF_MATCH, "*")).await;
    assert_eq!(any.status(), StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_mongodb_down_proxies_keep_their_rules_and_the_api_answers_503() {
    let mut mongo = MongoServer::start();
    let upstream = Upstream::start().await;
    let dir = tempfile::tempdir().unwrap();
    let url = mongo.url();
    let config = || NodeConfig {
        dir: dir.path(),
        upstream_port: upstream.port(),
        rules_store: &url,
        poll_seconds: 1,
    };
    let node = Node::start(Mode::Run, config());
    let api = Api { node: &node };
    assert_eq!(
        send(api.post("/api/v1/rules", &doc_rule("doc")))
            .await
            .status(),
        StatusCode::CREATED
    );
    let enforced = eventually(Duration::from_secs(3), || async {
        resource_seen(&node, "alice", "/echo/doc/1").await
    })
    .await;
    assert_eq!(enforced.as_deref(), Some("doc:1"));

    mongo.stop();
    // Proxies keep enforcing the last good rules.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        status_for(&node, "bob", "/echo/doc/1").await,
        StatusCode::LOCKED
    );
    // The API says clearly why it cannot answer.
    let down = send(api.get("/api/v1/rules")).await;
    assert_eq!(down.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(is_problem(&down));
    let detail = down.json::<Value>().await.unwrap()["detail"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(detail.contains("unreachable"), "{detail}");
    assert_eq!(
        send(api.post("/api/v1/rules", &doc_rule("other")))
            .await
            .status(),
        StatusCode::SERVICE_UNAVAILABLE
    );
    // A proxy starting now uses the snapshot the first one saved beside the shared config dir.
    let late = Node::start(Mode::Proxy, config());
    assert_eq!(
        resource_seen(&late, "carol", "/echo/doc/2")
            .await
            .as_deref(),
        Some("doc:2"),
        "log:\n{}",
        late.log()
    );
    let ready = client()
        .get(late.admin_url("/readyz"))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status(), StatusCode::OK);
    // A force release while MongoDB is down is still recorded once it is back.
    assert_eq!(
        send(api.delete("/api/v1/locks/doc:1")).await.status(),
        StatusCode::OK
    );

    mongo.start_again();
    let back = eventually(Duration::from_secs(10), || async {
        let response = send(api.get("/api/v1/rules")).await;
        (response.status() == StatusCode::OK).then_some(())?;
        response.json::<Value>().await.ok()
    })
    .await
    .expect("the API recovers");
    assert_eq!(back["rules"][0]["id"], "doc");
    assert_eq!(
        send(api.post("/api/v1/rules", &doc_rule("other")))
            .await
            .status(),
        StatusCode::CREATED
    );
    let trail = eventually(Duration::from_secs(10), || async {
        let page: Value = send(api.get("/api/v1/events?resource=doc:1"))
            .await
            .json()
            .await
            .ok()?;
        page["events"]
            .as_array()?
            .iter()
            .any(|e| e["kind"] == "force_released")
            .then_some(page)
    })
    .await;
    assert!(
        trail.is_some(),
        "the release made during the outage was lost"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rule_file_survives_kill_9_during_a_burst_of_writes() {
    let dir = tempfile::tempdir().unwrap();
    write_empty_rules(dir.path());
    let mut node = Node::start(
        Mode::ControlPlane,
        NodeConfig {
            dir: dir.path(),
            upstream_port: 9,
            rules_store: "rules.toml",
            poll_seconds: 1,
        },
    );
    let url = node.api("/api/v1/rules");
    let acknowledged = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let mut writers = Vec::new();
    for writer in 0..4 {
        let url = url.clone();
        let acknowledged = acknowledged.clone();
        writers.push(tokio::spawn(async move {
            for n in 0..1000 {
                let id = format!("w{writer}-{n}");
                let body = json!({"id": id, "pattern": format!("/w{writer}/{n}")});
                let sent = client()
                    .post(&url)
                    .header(AUTHORIZATION, admin_bearer())
                    .json(&body)
                    .send()
                    .await;
                match sent {
                    Ok(response) if response.status() == StatusCode::CREATED => {
                        acknowledged.lock().unwrap().push(id);
                    }
                    _ => return,
                }
            }
        }));
    }
    // Let the burst run, then crash the control plane in the middle of it.
    let started = Instant::now();
    while acknowledged.lock().unwrap().len() < 40 && started.elapsed() < Duration::from_secs(20) {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    node.kill();
    for writer in writers {
        let _ = writer.await;
    }
    let acknowledged = acknowledged.lock().unwrap().clone();
    assert!(acknowledged.len() >= 40, "the burst did not get going");

    let text = std::fs::read_to_string(dir.path().join("rules.toml")).unwrap();
    let stored = rules::parse_rules_toml(&text).expect("the file is always parseable");
    let ids: std::collections::HashSet<&str> = stored.iter().map(|r| r.id.as_str()).collect();
    for id in &acknowledged {
        assert!(ids.contains(id.as_str()), "acknowledged rule {id} was lost");
    }
}

/// The content type and status of an answer, for the table below.
async fn problem_status(response: Response) -> (StatusCode, bool) {
    let status = response.status();
    let problem = is_problem(&response);
    let body: Value = response.json().await.unwrap_or(Value::Null);
    (status, problem && body["status"] == status.as_u16())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_refusal_is_problem_json_if_match_follows_rfc_9110_and_match_drops_the_query() {
    let upstream = Upstream::start().await;
    let dir = tempfile::tempdir().unwrap();
    write_empty_rules(dir.path());
    let node = Node::start(
        Mode::Run,
        NodeConfig {
            dir: dir.path(),
            upstream_port: upstream.port(),
            rules_store: "rules.toml",
            poll_seconds: 1,
        },
    );
    let api = Api { node: &node };
    let created = send(api.post("/api/v1/rules", &doc_rule("doc"))).await;
    assert_eq!(created.status(), StatusCode::CREATED);
    let tag = etag(&created);

    // axum's own refusals and the fallbacks answer problem+json too.
    let big = json!({"id": "big", "pattern": "x".repeat(70 * 1024)});
    let (status, problem) = problem_status(send(api.post("/api/v1/rules", &big)).await).await;
    assert_eq!((status, problem), (StatusCode::PAYLOAD_TOO_LARGE, true));
    let patch = send(
        client()
            .patch(node.api("/api/v1/rules/doc"))
            .header(AUTHORIZATION, admin_bearer()),
    )
    .await;
    let allow = patch
        .headers()
        .get("allow")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    assert!(allow.contains("PUT") && allow.contains("DELETE"), "{allow}");
    let (status, problem) = problem_status(patch).await;
    assert_eq!((status, problem), (StatusCode::METHOD_NOT_ALLOWED, true));
    for path in [
        "/api/v1/nothing",
        "/api/nothing",
        "/api/v2/rules",
        "/elsewhere",
    ] {
        let (status, problem) = problem_status(send(api.get(path)).await).await;
        assert_eq!((status, problem), (StatusCode::NOT_FOUND, true), "{path}");
    }
    for path in ["/api/v1/rules/%FF", "/api/v1/locks/%C3%28", "/ui/%FF"] {
        let method = if path.contains("locks") {
            "DELETE"
        } else {
            "GET"
        };
        let request = client()
            .request(method.parse().unwrap(), node.api(path))
            .header(AUTHORIZATION, admin_bearer());
        let (status, problem) = problem_status(send(request).await).await;
        assert_eq!((status, problem), (StatusCode::BAD_REQUEST, true), "{path}");
    }
    // A query value is decoded lossily, so bytes that are not UTF-8 make an unknown kind.
    let (status, problem) = problem_status(send(api.get("/api/v1/events?kind=%FF")).await).await;
    assert_eq!((status, problem), (StatusCode::UNPROCESSABLE_ENTITY, true));
    let (status, problem) =
        problem_status(send(api.get("/api/v1/events?kind=claimed&kind=denied")).await).await;
    assert_eq!((status, problem), (StatusCode::BAD_REQUEST, true));
    let (status, problem) = problem_status(send(api.get("/api/v1/events?limit=")).await).await;
    assert_eq!((status, problem), (StatusCode::UNPROCESSABLE_ENTITY, true));

    // If-Match: strong comparison, lists, `""`, `*`.
    let with_priority = |priority: i32| {
        let mut rule = doc_rule("doc");
        rule["priority"] = json!(priority);
        rule
    };
    let put_with = |priority: i32, if_match: &str| {
        api.put("/api/v1/rules/doc", &with_priority(priority))
            .header(IF_MATCH, if_match.to_owned())
    };
    let put = |if_match: &str| put_with(1, if_match);
    let weak = format!("W/{tag}");
    for (if_match, expected) in [
        (weak.as_str(), StatusCode::PRECONDITION_FAILED),
        ("\"\"", StatusCode::PRECONDITION_FAILED),
        ("\"a\", \"b\"", StatusCode::PRECONDITION_FAILED),
        ("r1", StatusCode::BAD_REQUEST),
        ("*, \"a\"", StatusCode::BAD_REQUEST),
    ] {
        let (status, problem) = problem_status(send(put(if_match)).await).await;
        assert_eq!((status, problem), (expected, true), "If-Match: {if_match}");
    }
    let listed = send(put(&format!("\"a\", {tag}"))).await;
    assert_eq!(listed.status(), StatusCode::OK);
    let second = etag(&listed);
    let any = send(put_with(2, "*")).await;
    assert_eq!(any.status(), StatusCode::OK);
    let third = etag(&any);
    assert_ne!(second, third);
    let gone = send(
        api.put("/api/v1/rules/none", &doc_rule("none"))
            .header(IF_MATCH, "*"),
    )
    .await;
    assert_eq!(gone.status(), StatusCode::NOT_FOUND);

    // A PUT that changes nothing keeps the ETag and is not audited.
    let same = send(put_with(2, &third)).await;
    assert_eq!(same.status(), StatusCode::OK);
    assert_eq!(etag(&same), third);
    let updates = eventually(Duration::from_secs(5), || async {
        let page: Value = send(api.get("/api/v1/events?kind=rule_updated"))
            .await
            .json()
            .await
            .ok()?;
        let events = page["events"].as_array()?.clone();
        (events.len() >= 2).then_some(events)
    })
    .await
    .expect("the two real updates are audited");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let page: Value = send(api.get("/api/v1/events?kind=rule_updated"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(page["events"].as_array().unwrap().len(), 2, "{updates:?}");

    // Match reads the target as the proxy does: the query is not part of the path.
    let matched: Value = send(api.post(
        "/api/v1/match",
        &json!({"method": "POST", "path": "/echo/doc/1?x=1"}),
    ))
    .await
    .json()
    .await
    .unwrap();
    assert_eq!(matched["matched"], true, "{matched}");
    assert_eq!(matched["normalized_path"], "/echo/doc/1");
    assert_eq!(matched["resource"], "doc:1");
    // And the proxy agrees: alice holds doc:1, bob's write with a query is refused.
    assert_eq!(
        resource_seen(&node, "alice", "/echo/doc/1?x=1")
            .await
            .as_deref(),
        Some("doc:1")
    );
    assert_eq!(
        status_for(&node, "bob", "/echo/doc/1?x=1").await,
        StatusCode::LOCKED
    );
    let absolute: Value = send(api.post(
        "/api/v1/match",
        &json!({"path": "http://example.test/echo/doc/2?y"}),
    ))
    .await
    .json()
    .await
    .unwrap();
    assert_eq!(absolute["resource"], "doc:2");
    let reserved: Value = send(api.post("/api/v1/match", &json!({"path": "/__latch/ws"})))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        (&reserved["reserved"], &reserved["matched"]),
        (&json!(true), &json!(false))
    );
    let preflight: Value = send(api.post(
        "/api/v1/match",
        &json!({"method": "OPTIONS", "path": "/echo/doc/1"}),
    ))
    .await
    .json()
    .await
    .unwrap();
    assert_eq!(preflight["matched"], false);
    let (status, problem) =
        problem_status(send(api.post("/api/v1/match", &json!({"path": "echo/doc/1"}))).await).await;
    assert_eq!((status, problem), (StatusCode::BAD_REQUEST, true));
}
