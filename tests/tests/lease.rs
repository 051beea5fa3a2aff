//! Leases in real time: a lock nobody renews expires on its own (lease_seconds = 5, the
//! smallest allowed), a renewed one does not, and the next holder gets a higher fence.

use std::sync::LazyLock;
use std::time::{Duration, Instant};

use futures::{SinkExt, StreamExt};
use reqwest::StatusCode;
use serde_json::{json, Value};
use tests::fixtures::{DOC_EDIT, DOC_SAVE};
use tests::{client, token, Latch, LatchBuilder, Upstream};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

/// A resource with a lease and grace of its own.
const SLOW: &str = r#"
[[rule]]
id = "slow"
pattern = "/echo/slow"
resource = "slow"
lease_seconds = 7
grace_seconds = 2
"#;

static RULES: LazyLock<String> = LazyLock::new(|| [DOC_EDIT, DOC_SAVE, SLOW].concat());

const LEASE: Duration = Duration::from_secs(5);

async fn start() -> (Upstream, Latch) {
    let upstream = Upstream::start().await;
    let latch = LatchBuilder::new(upstream.port())
        .rules(&RULES)
        .locks("store = \"memory\"\nlease_seconds = 5\ngrace_seconds = 1\n")
        .start();
    (upstream, latch)
}

async fn claim(latch: &Latch, path: &str, tok: &str) -> (StatusCode, Value) {
    let resp = client()
        .get(latch.url(path))
        .bearer_auth(tok)
        .send()
        .await
        .unwrap();
    let status = resp.status();
    (status, resp.json().await.unwrap())
}

fn fence_of(echo: &Value) -> u64 {
    echo["headers"]["x-latch-fence"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap()
}

async fn status(latch: &Latch, path: &str) -> Value {
    client()
        .get(latch.url("/__latch/status"))
        .query(&[("path", path)])
        .bearer_auth(token("observer", "Observer", &[]))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

fn lease_of(status: &Value) -> i64 {
    let at = |k: &str| OffsetDateTime::parse(status[k].as_str().unwrap(), &Rfc3339).unwrap();
    (at("expires") - at("since")).whole_seconds()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unrenewed_lock_expires_and_its_next_claim_gets_a_higher_fence() {
    let (_upstream, latch) = start().await;
    let alice = token("alice", "Alice", &[]);
    let bob = token("bob", "Bob", &[]);
    let (code, echo) = claim(&latch, "/echo/docs/1/edit", &alice).await;
    let claimed_at = Instant::now();
    assert_eq!(code, StatusCode::OK);
    let first = fence_of(&echo);

    let held = status(&latch, "/echo/docs/1/edit").await;
    assert_eq!(held["state"], "held");
    assert_eq!(lease_of(&held), 5);
    // A rule's own lease overrides [locks].
    claim(&latch, "/echo/slow", &alice).await;
    assert_eq!(lease_of(&status(&latch, "/echo/slow").await), 7);

    let deadline = claimed_at + LEASE + Duration::from_secs(3);
    loop {
        tokio::time::sleep(Duration::from_millis(250)).await;
        let now = status(&latch, "/echo/docs/1/edit").await;
        if now["state"] == "free" {
            break;
        }
        assert_eq!(now["holder"]["id"], "alice");
        assert!(
            Instant::now() < deadline,
            "still held after the lease: {now}"
        );
    }
    assert!(
        claimed_at.elapsed() >= LEASE - Duration::from_millis(500),
        "expired early, after {:?}",
        claimed_at.elapsed()
    );

    // Nobody held it since it lapsed, so the lapsed holder's write is not stale: it claims
    // the lock again, under a higher fence (the stale case, where someone else held it in
    // between, is the store contract's `a_stale_write_is_refused_only_when_the_fence_moved`).
    let again = client()
        .post(latch.url("/echo/docs/1/save"))
        .bearer_auth(&alice)
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), StatusCode::OK);
    let echo: serde_json::Value = again.json().await.unwrap();
    assert_eq!(echo["headers"]["x-latch-user"], "alice");
    assert!(fence_of(&echo) > first);

    // So the next person is refused: the lock is Alice's again.
    let (code, refused) = claim(&latch, "/echo/docs/1/edit", &bob).await;
    assert_eq!(code, StatusCode::LOCKED, "{refused}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn renewing_keeps_the_lock_past_its_first_lease() {
    let (_upstream, latch) = start().await;
    let alice = token("alice", "Alice", &[]);
    let (_, echo) = claim(&latch, "/echo/docs/1/edit", &alice).await;
    let start = Instant::now();
    let fence = fence_of(&echo);
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (code, echo) = claim(&latch, "/echo/docs/1/edit", &alice).await;
    assert_eq!(code, StatusCode::OK);
    assert_eq!(fence_of(&echo), fence);
    tokio::time::sleep((LEASE + Duration::from_millis(700)).saturating_sub(start.elapsed())).await;
    let now = status(&latch, "/echo/docs/1/edit").await;
    assert_eq!(now["state"], "held", "{now}");
    assert_eq!(now["fence"], fence);
    let bob = token("bob", "Bob", &[]);
    let (code, _) = claim(&latch, "/echo/docs/1/edit", &bob).await;
    assert_eq!(code, StatusCode::LOCKED);
}

/// Expiry must happen with no request at all: a watcher on the banner socket is told the lock
/// is free while nobody sends anything.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watchers_hear_of_an_expiry_without_any_traffic() {
    let (_upstream, latch) = start().await;
    let alice = token("alice", "Alice", &[]);
    let (code, _) = claim(&latch, "/echo/docs/1/edit", &alice).await;
    let claimed_at = Instant::now();
    assert_eq!(code, StatusCode::OK);

    let mut request = latch.ws_url("/__latch/ws").into_client_request().unwrap();
    request.headers_mut().insert(
        "cookie",
        format!("latch_token={}", token("bob", "Bob", &[]))
            .parse()
            .unwrap(),
    );
    let (mut ws, _) = tokio_tungstenite::connect_async(request).await.unwrap();
    ws.send(Message::text(
        json!({ "type": "watch", "path": "/echo/docs/1/edit" }).to_string(),
    ))
    .await
    .unwrap();

    let deadline = claimed_at + LEASE + Duration::from_secs(3);
    let mut saw_held = false;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let msg = tokio::time::timeout(left, ws.next())
            .await
            .expect("no free message before the deadline")
            .expect("socket open")
            .unwrap();
        let Message::Text(text) = msg else { continue };
        let msg: Value = serde_json::from_str(&text).unwrap();
        if msg["type"] != "lock" {
            continue;
        }
        assert_eq!(msg["resource"], "doc:1");
        if msg["state"] == "held" {
            assert_eq!(msg["holder"]["id"], "alice");
            saw_held = true;
            continue;
        }
        assert_eq!(msg["state"], "free");
        break;
    }
    assert!(saw_held, "the watcher was never told who held it");
    assert!(claimed_at.elapsed() >= LEASE - Duration::from_millis(500));
}
