//! The app's own server-sent event streams are fenced: a real Express app streaming events with
//! plain `res.write` (`tests/apps/express/`) behind the real proxy, read by a real HTTP client
//! and, once, by Chromium's `EventSource`.
//!
//! Under a rule with `websocket = "lock"`, the holder's GET that asks for `text/event-stream`
//! is relayed by Latch, and when its owner loses the lock — by a take-over on this instance or
//! on another one on the same Redis, or by expiry — the stream gets a last `latch-lock-lost` event and ends,
//! and the app's connection is closed. The reconnect meets the gate (423).

use std::time::{Duration, Instant};

use reqwest::header::{ACCEPT, CONTENT_TYPE, COOKIE};
use reqwest::{Response, StatusCode};
use serde_json::{json, Value};
use tests::browser::Driver;
use tests::express::{App, PATIENCE};
use tests::instances::{start_instances, take_over};
use tests::redis::RedisServer;
use tests::{client, eventually, token, Latch, LatchBuilder};

/// The feed page, its event stream and the 404 share one lock per document.
fn rules(extra: &str) -> String {
    format!(
        r#"
[[rule]]
id = "docs"
pattern = '/docs/(?P<id>\d+)/(feed|events|gone)'
resource = "doc:{{id}}"
case_insensitive = true
inject = false
{extra}
"#
    )
}

/// How soon a stream must end once its owner lost the lock.
const PROMPT: Duration = Duration::from_secs(2);

async fn start_latch(app: &App, rules: String) -> Latch {
    let port = app.port;
    tokio::task::spawn_blocking(move || LatchBuilder::new(port).rules(&rules).start())
        .await
        .expect("starting latch")
}

fn base(latch: &Latch) -> String {
    format!("http://127.0.0.1:{}", latch.port)
}

fn cookie(user: &str) -> String {
    let mut name = user.to_owned();
    name[..1].make_ascii_uppercase();
    format!("latch_token={}", token(user, &name, &[]))
}

/// GET `path` at `base` as `user`, asking for an event stream, with `extra` headers.
async fn get_events(base: &str, path: &str, user: &str, extra: &[(&str, &str)]) -> Response {
    let mut request = client()
        .get(format!("{base}{path}"))
        .header(ACCEPT, "text/event-stream")
        .header(COOKIE, cookie(user));
    for (name, value) in extra {
        request = request.header(*name, *value);
    }
    tokio::time::timeout(PATIENCE, request.send())
        .await
        .expect("the answer's head timed out")
        .expect("an answer")
}

/// One event as an `EventSource` would dispatch it.
#[derive(Debug)]
struct Event {
    kind: String,
    data: String,
}

impl Event {
    fn json(&self) -> Value {
        serde_json::from_str(&self.data).unwrap_or_else(|_| panic!("JSON data: {self:?}"))
    }
}

/// An open event stream, read event by event.
struct Events {
    response: Response,
    buffer: String,
}

impl Events {
    async fn open(base: &str, path: &str, user: &str) -> Events {
        let response = get_events(base, path, user, &[]).await;
        Events::of(response).await
    }

    /// The stream an answer opened; panics with the answer's body if it is not one.
    async fn of(response: Response) -> Events {
        if response.status() != StatusCode::OK {
            let status = response.status();
            let body = response.text().await.unwrap_or_default();
            panic!("expected an event stream, got {status}: {body}");
        }
        let content_type = response.headers()[CONTENT_TYPE]
            .to_str()
            .unwrap_or_default();
        assert!(
            content_type.starts_with("text/event-stream"),
            "{content_type}"
        );
        Events {
            response,
            buffer: String::new(),
        }
    }

    /// The next event with data; `None` once the stream has ended. Panics if none comes
    /// `within`.
    async fn next(&mut self, within: Duration) -> Option<Event> {
        let deadline = Instant::now() + within;
        loop {
            while let Some(end) = self.buffer.find("\n\n") {
                let block: String = self.buffer.drain(..end + 2).collect();
                let (mut kind, mut data) = ("message".to_owned(), Vec::new());
                for line in block.lines() {
                    if let Some(v) = line.strip_prefix("event:") {
                        kind = v.trim().to_owned();
                    } else if let Some(v) = line.strip_prefix("data:") {
                        data.push(v.trim_start().to_owned());
                    }
                }
                if !data.is_empty() {
                    let data = data.join("\n");
                    return Some(Event { kind, data });
                }
            }
            let left = deadline.saturating_duration_since(Instant::now());
            match tokio::time::timeout(left, self.response.chunk()).await {
                Ok(Ok(Some(chunk))) => self.buffer.push_str(&String::from_utf8_lossy(&chunk)),
                Ok(Ok(None)) => return None,
                Ok(Err(e)) => panic!("the stream failed: {e}"),
                Err(_) => panic!("no event within {within:?}"),
            }
        }
    }

    /// Reads ordinary events until one of another type comes or the stream ends, all
    /// `within`; returns it. Panics if neither happens in time.
    async fn until_other(&mut self, within: Duration) -> Option<Event> {
        let deadline = Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.next(left).await {
                Some(e) if e.kind == "message" => {}
                other => return other,
            }
        }
    }
}

/// Waits until the app saw the `nth` stream it served (0-based) closed.
async fn app_closed(app: &App, nth: usize) {
    let closed = eventually(PATIENCE, || async {
        let streams = app.streams().await;
        streams.get(nth)?["closed"].as_bool()?.then_some(())
    })
    .await;
    assert!(
        closed.is_some(),
        "the app's stream {nth} is still open: {:?}",
        app.streams().await
    );
}

/// A stream whose lock an admin named Root just took over gets the lock-lost event and ends
/// within [`PROMPT`], and the app's end of its first stream is closed.
async fn ends_promptly_as_taken_over(stream: &mut Events, app: &App) {
    let taken = Instant::now();
    let last = stream.until_other(PROMPT).await;
    assert_lock_lost(last, "lock taken over by Root");
    assert!(stream.next(PROMPT).await.is_none(), "the stream went on");
    assert!(
        taken.elapsed() < PROMPT,
        "ended after {:?}",
        taken.elapsed()
    );
    app_closed(app, 0).await;
}

fn assert_lock_lost(event: Option<Event>, reason: &str) {
    let event = event.expect("a last event before the stream ended");
    assert_eq!(event.kind, "latch-lock-lost", "{event:?}");
    assert_eq!(
        event.json(),
        json!({ "reason": reason, "resource": "doc:1" })
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_take_over_ends_the_holders_stream_with_a_last_event_and_its_reconnect_gets_423() {
    let app = App::start();
    let latch = start_latch(&app, rules("")).await;
    let base = base(&latch);

    // Alice's stream claims the lock; its events come from the app under it.
    let mut alice = Events::open(&base, "/docs/1/events", "alice").await;
    let first = alice.next(PATIENCE).await.expect("an event").json();
    assert_eq!(first["user"], "alice");
    let fence = first["fence"].as_str().expect("the app got the fence");
    assert!(fence.parse::<u64>().is_ok(), "{first}");
    let second = alice.next(PATIENCE).await.expect("another event").json();
    assert_eq!(second["n"], 2);

    // Bob, without the lock, cannot open one.
    let bob = get_events(&base, "/docs/1/events", "bob", &[]).await;
    assert_eq!(bob.status(), StatusCode::LOCKED);
    assert!(latch.counter("latch_app_streams").await == 1);

    take_over(&base, "doc:1").await;
    ends_promptly_as_taken_over(&mut alice, &app).await;

    // Alice's reconnect meets the gate and never reaches the app.
    let again = get_events(&base, "/docs/1/events", "alice", &[]).await;
    assert_eq!(again.status(), StatusCode::LOCKED);
    assert_eq!(app.streams().await.len(), 1);
    assert_eq!(latch.counter("latch_app_streams_fenced_total").await, 1);
    assert_eq!(latch.counter("latch_app_streams").await, 0);

    // Another document is untouched.
    let mut other = Events::open(&base, "/docs/2/events", "alice").await;
    assert_eq!(
        other.next(PATIENCE).await.expect("an event").json()["user"],
        "alice"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_lease_ends_the_holders_stream() {
    let app = App::start();
    // The shortest lease the config allows, and no banner to renew it: the stream's own
    // events renew nothing.
    let rules = rules("");
    let locks = "store = \"memory\"\nlease_seconds = 5\ngrace_seconds = 2\n";
    let port = app.port;
    let latch = tokio::task::spawn_blocking(move || {
        LatchBuilder::new(port).rules(&rules).locks(locks).start()
    })
    .await
    .expect("starting latch");
    let mut alice = Events::open(&base(&latch), "/docs/1/events", "alice").await;
    assert_eq!(
        alice.next(PATIENCE).await.expect("an event").json()["user"],
        "alice"
    );
    let last = alice.until_other(Duration::from_secs(15)).await;
    assert_lock_lost(last, "lock expired");
    assert!(alice.next(PROMPT).await.is_none(), "the stream went on");
    app_closed(&app, 0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_websocket_pass_the_stream_outlives_the_lock() {
    let app = App::start();
    let latch = start_latch(&app, rules("websocket = \"pass\"")).await;
    let base = base(&latch);
    let mut alice = Events::open(&base, "/docs/1/events", "alice").await;
    assert_eq!(
        alice.next(PATIENCE).await.expect("an event").json()["user"],
        "alice"
    );

    take_over(&base, "doc:1").await;
    // Events keep coming (one every 200 ms) well past the time a fenced stream would end.
    let started = Instant::now();
    let mut seen = 0;
    while started.elapsed() < PROMPT + Duration::from_secs(1) {
        let event = alice.next(PATIENCE).await.expect("the stream goes on");
        assert_eq!(event.kind, "message", "{event:?}");
        seen += 1;
    }
    assert!(seen >= 10, "{seen} events in {:?}", started.elapsed());
    assert_eq!(latch.counter("latch_app_streams_fenced_total").await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_app_gets_the_holders_identity_and_none_of_the_clients_latch_headers() {
    let app = App::start();
    let latch = start_latch(&app, rules("")).await;
    let base = base(&latch);
    let spoofed = [
        ("X-Latch-User", "mallory"),
        ("x-latch-fence", "999999"),
        ("X_Latch_Access", "exclusive"),
        ("X-Latch_Resource", "doc:9"),
        ("x-LATCH-user-name", "Mallory"),
        ("X-Latch-Extra", "1"),
    ];
    let response = get_events(&base, "/docs/1/events", "alice", &spoofed).await;
    let mut alice = Events::of(response).await;
    let event = alice.next(PATIENCE).await.expect("an event").json();
    let fence = event["fence"].as_str().expect("a fence").to_owned();
    assert_ne!(fence, "999999");

    let streams = app.streams().await;
    let mut got: Vec<(String, String)> = streams[0]["latch"]
        .as_array()
        .expect("the headers the app saw")
        .iter()
        .map(|h| {
            (
                h[0].as_str().unwrap().to_owned(),
                h[1].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    got.sort();
    let want = [
        ("x-latch-access", "exclusive"),
        ("x-latch-fence", fence.as_str()),
        ("x-latch-resource", "doc:1"),
        ("x-latch-user", "alice"),
        ("x-latch-user-name", "Alice"),
    ];
    let want: Vec<(String, String)> = want
        .iter()
        .map(|(n, v)| (n.to_string(), v.to_string()))
        .collect();
    assert_eq!(got, want);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_answer_that_is_not_a_stream_is_relayed_as_it_is() {
    let app = App::start();
    let latch = start_latch(&app, rules("")).await;
    let response = get_events(&base(&latch), "/docs/1/gone", "alice", &[]).await;
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    let content_type = response.headers()[CONTENT_TYPE]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(content_type.starts_with("text/html"), "{content_type}");
    let body = response.text().await.expect("the body");
    assert!(body.contains("Cannot GET /docs/1/gone"), "{body}");
    // The request held the lock: Bob is refused the document meanwhile.
    let bob = get_events(&base(&latch), "/docs/1/events", "bob", &[]).await;
    assert_eq!(bob.status(), StatusCode::LOCKED);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_holders_stream_not_asked_for_is_refused_and_a_viewers_is_not_fenced() {
    let app = App::start();
    let latch = start_latch(&app, rules("mode = \"read_only\"")).await;
    let base = base(&latch);
    // Without `Accept: text/event-stream` the request goes the ordinary way, where the stream
    // could not be ended: the holder gets 502 instead of an unfenced stream.
    let response = client()
        .get(format!("{base}/docs/1/events"))
        .header(ACCEPT, "*/*")
        .header(COOKIE, cookie("alice"))
        .send()
        .await
        .expect("an answer");
    assert_eq!(response.status(), StatusCode::BAD_GATEWAY);
    app_closed(&app, 0).await;

    // Bob reads while Alice holds: his stream is an ordinary response, without a fence, and
    // outlives a take-over.
    let mut bob = Events::open(&base, "/docs/1/events", "bob").await;
    let event = bob.next(PATIENCE).await.expect("an event").json();
    assert_eq!(
        (&event["user"], &event["fence"]),
        (&json!("bob"), &Value::Null)
    );
    take_over(&base, "doc:1").await;
    let taken = Instant::now();
    while taken.elapsed() < PROMPT {
        let event = bob.next(PATIENCE).await.expect("the stream goes on");
        assert_eq!(event.kind, "message", "{event:?}");
    }
    assert_eq!(latch.counter("latch_app_streams").await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_has_at_most_16_fenced_streams_and_a_closed_one_frees_its_slot() {
    let app = App::start();
    let latch = start_latch(&app, rules("")).await;
    let base = base(&latch);
    let mut open = Vec::new();
    for _ in 0..16 {
        let mut events = Events::open(&base, "/docs/1/events", "alice").await;
        events.next(PATIENCE).await.expect("an event");
        open.push(events);
    }
    let refused = get_events(&base, "/docs/1/events", "alice", &[]).await;
    assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(refused.headers()["retry-after"], "10");
    assert_eq!(app.streams().await.len(), 16);

    // The client going away closes the app's connection and gives the slot back.
    drop(open.remove(0));
    app_closed(&app, 0).await;
    let freed = eventually(PATIENCE, || async {
        let response = get_events(&base, "/docs/1/events", "alice", &[]).await;
        (response.status() == StatusCode::OK).then_some(response)
    })
    .await;
    let mut again = Events::of(freed.expect("a stream once a slot is free")).await;
    assert_eq!(
        again.next(PATIENCE).await.expect("an event").json()["user"],
        "alice"
    );
    assert_eq!(latch.counter("latch_app_streams").await, 16);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_take_over_on_one_instance_ends_the_stream_on_another() {
    let app = App::start();
    let redis = RedisServer::start();
    let instances = start_instances(2, app.port, &redis.url(), &rules("")).await;
    let (a, b) = (&instances[0], &instances[1]);

    let mut alice = Events::open(&base(a), "/docs/1/events", "alice").await;
    assert_eq!(
        alice.next(PATIENCE).await.expect("an event").json()["user"],
        "alice"
    );
    // Bob is refused on B as on A: one lock for both.
    let bob = get_events(&base(b), "/docs/1/events", "bob", &[]).await;
    assert_eq!(bob.status(), StatusCode::LOCKED);

    take_over(&base(b), "doc:1").await;
    ends_promptly_as_taken_over(&mut alice, &app).await;
    let again = get_events(&base(a), "/docs/1/events", "alice", &[]).await;
    assert_eq!(again.status(), StatusCode::LOCKED);
}

/// Chromium: the page's `EventSource` gets events, then the `latch-lock-lost` event when an
/// admin takes the document over; its reconnect is refused with 423, which stops it, so it
/// does not loop.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_a_browser_the_event_source_ends_after_the_lock_is_lost_and_stays_closed() {
    let app = App::start();
    let latch = start_latch(&app, rules("")).await;
    let driver = Driver::start().await;
    let browser = driver
        .browser("alice", &latch, &token("alice", "Alice", &[]))
        .await;
    browser.goto(&latch.url("/docs/1/feed")).await;
    let page = &browser;
    let count = move || async move {
        let n = page
            .script("return Number(document.getElementById('count').textContent)")
            .await;
        n.as_u64().unwrap_or_default()
    };
    let log = move || async move {
        let lines = page
            .script("return [...document.querySelectorAll('#log li')].map(li => li.textContent)")
            .await;
        serde_json::from_value::<Vec<String>>(lines).unwrap_or_default()
    };
    let flowing = eventually(PATIENCE, || async { (count().await >= 3).then_some(()) }).await;
    assert!(
        flowing.is_some(),
        "no events in the page: {:?}",
        log().await
    );

    take_over(&base(&latch), "doc:1").await;
    let stopped = eventually(PATIENCE, || async {
        let log = log().await;
        log.iter()
            .any(|l| l == "error, readyState 2")
            .then_some(log)
    })
    .await;
    let lines = log().await;
    let stopped = stopped.unwrap_or_else(|| panic!("the EventSource never stopped: {lines:?}"));
    assert_eq!(
        stopped,
        [
            "open",
            "lock lost: lock taken over by Root",
            "error, readyState 0",
            "error, readyState 2"
        ],
        "what the page saw"
    );
    // It stays closed: no new connection reaches the app, and no events arrive.
    let before = count().await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(count().await, before);
    assert_eq!(log().await, stopped);
    assert_eq!(app.streams().await.len(), 1);
    browser.quit().await;
    app_closed(&app, 0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_holders_stream_ends_when_the_token_it_opened_with_expires() {
    let app = App::start();
    let latch = start_latch(&app, rules("")).await;
    let short = format!("latch_token={}", tests::token_ttl("alice", "Alice", &[], 3));
    let response = tokio::time::timeout(
        PATIENCE,
        client()
            .get(format!("{}/docs/1/events", base(&latch)))
            .header(ACCEPT, "text/event-stream")
            .header(COOKIE, short)
            .send(),
    )
    .await
    .expect("the answer's head timed out")
    .expect("an answer");
    let mut alice = Events::of(response).await;
    assert_eq!(
        alice.next(PATIENCE).await.expect("an event").json()["user"],
        "alice"
    );
    // The lease (30 s) outlives the token (3 s): only the token's expiry can end it.
    let opened = Instant::now();
    let last = alice
        .until_other(Duration::from_secs(10))
        .await
        .expect("a last event before the stream ended");
    assert_eq!(last.kind, "latch-session-expired", "{last:?}");
    assert_eq!(
        last.json(),
        json!({ "reason": "session expired", "resource": "doc:1" })
    );
    assert!(alice.next(PROMPT).await.is_none(), "the stream went on");
    assert!(
        opened.elapsed() < Duration::from_secs(6),
        "{:?}",
        opened.elapsed()
    );
    app_closed(&app, 0).await;
}
