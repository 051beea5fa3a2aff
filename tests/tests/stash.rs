//! Unsaved changes over real HTTP: a write refused for want of the lock is kept for its
//! sender and given back only to them, under `/__latch/stash`; hostile input (oversized and
//! trickled bodies, a wrong content type, another user's id, a guessed id, no token) gets a
//! clear answer, and nothing is kept or leaked.

use std::time::{Duration, Instant};

use reqwest::header::{CONTENT_TYPE, ORIGIN};
use reqwest::Response;
use serde_json::Value;
use tests::fixtures::{DOC_EDIT, DOC_SAVE};
use tests::{client, token, Latch, LatchBuilder, Upstream};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const FORM: &str = "application/x-www-form-urlencoded";

struct Env {
    _upstream: Upstream,
    latch: Latch,
    http: reqwest::Client,
    alice: String,
    bob: String,
}

async fn start() -> Env {
    let upstream = Upstream::start().await;
    let latch = LatchBuilder::new(upstream.port())
        .rules(&[DOC_EDIT, DOC_SAVE].concat())
        .section("[stash]\nmax_bytes = 4096\nmax_bytes_per_user = 8192\nmax_per_user = 5\n")
        .start();
    Env {
        _upstream: upstream,
        latch,
        http: client(),
        alice: token("alice", "Alice", &[]),
        bob: token("bob", "Bob", &[]),
    }
}

impl Env {
    /// Bob holds `doc:1`.
    async fn bob_holds(&self) {
        let resp = self
            .http
            .get(self.latch.url("/echo/docs/1/edit"))
            .bearer_auth(&self.bob)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
    }

    async fn save(
        &self,
        tok: &str,
        content_type: &str,
        body: impl Into<reqwest::Body>,
    ) -> Response {
        self.http
            .post(self.latch.url("/echo/docs/1/save?draft=1"))
            .bearer_auth(tok)
            .header(CONTENT_TYPE, content_type)
            .body(body)
            .send()
            .await
            .unwrap()
    }

    async fn list(&self, tok: &str) -> Value {
        let resp = self
            .http
            .get(self.latch.url("/__latch/stash"))
            .bearer_auth(tok)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        resp.json().await.unwrap()
    }

    async fn entry(&self, tok: &str, id: &str) -> Response {
        self.http
            .get(self.latch.url(&format!("/__latch/stash/{id}")))
            .bearer_auth(tok)
            .send()
            .await
            .unwrap()
    }

    fn origin(&self) -> String {
        format!("http://127.0.0.1:{}", self.latch.port)
    }
}

async fn problem(resp: Response) -> Value {
    assert_eq!(
        resp.headers()[CONTENT_TYPE].to_str().unwrap(),
        "application/problem+json"
    );
    resp.json().await.unwrap()
}

#[tokio::test]
async fn a_refused_write_is_kept_for_its_sender_only() {
    let env = start().await;
    env.bob_holds().await;

    let resp = env
        .save(
            &env.alice,
            FORM,
            "title=Hello+world&body=%3Cscript%3Ealert(1)%3C%2Fscript%3E",
        )
        .await;
    assert_eq!(resp.status(), 423);
    let doc = problem(resp).await;
    assert_eq!(doc["stash"]["kept"], true, "{doc}");
    let id = doc["stash"]["id"].as_str().unwrap().to_owned();
    assert_eq!(doc["stash"]["url"], format!("/__latch/stash/{id}"));

    let list = env.list(&env.alice).await;
    assert_eq!(list["count"], 1);
    let item = &list["items"][0];
    assert_eq!(item["id"], id);
    assert_eq!(item["path"], "/echo/docs/1/save?draft=1");
    assert_eq!(item["method"], "POST");
    assert_eq!(item["resource"], "doc:1");
    assert_eq!(item["content_type"], FORM);

    let view = env.entry(&env.alice, &id).await;
    assert_eq!(view.status(), 200);
    let headers = view.headers().clone();
    assert_eq!(headers[CONTENT_TYPE], "text/plain; charset=utf-8");
    assert_eq!(headers["x-content-type-options"], "nosniff");
    assert!(headers["content-security-policy"]
        .to_str()
        .unwrap()
        .starts_with("sandbox"));
    assert!(headers["content-disposition"]
        .to_str()
        .unwrap()
        .starts_with("inline;"));
    assert_eq!(
        view.text().await.unwrap(),
        "title: Hello world\nbody: <script>alert(1)</script>\n"
    );

    let download = env
        .http
        .get(env.latch.url(&format!("/__latch/stash/{id}?download=1")))
        .bearer_auth(&env.alice)
        .send()
        .await
        .unwrap();
    assert_eq!(download.headers()[CONTENT_TYPE], "application/octet-stream");
    assert!(download.headers()["content-disposition"]
        .to_str()
        .unwrap()
        .starts_with("attachment;"));
    assert_eq!(
        download.text().await.unwrap(),
        "title=Hello+world&body=%3Cscript%3Ealert(1)%3C%2Fscript%3E"
    );

    // Bob, who holds the page, sees none of it, under any id.
    assert_eq!(env.list(&env.bob).await["count"], 0);
    let theirs = env.entry(&env.bob, &id).await;
    assert_eq!(theirs.status(), 404);
    let guessed = env.entry(&env.alice, &"0123456789abcdef".repeat(2)).await;
    assert_eq!(guessed.status(), 404);
    let theirs = problem(theirs).await;
    let guessed = problem(guessed).await;
    assert_eq!(
        theirs["detail"], guessed["detail"],
        "the same answer for both"
    );
    let longer = format!("{id}0");
    for bad in ["ZZZ", "abc", id.to_uppercase().as_str(), longer.as_str()] {
        let resp = env.entry(&env.alice, bad).await;
        assert_eq!(resp.status(), 404, "{bad}");
    }
    let delete = env
        .http
        .delete(env.latch.url(&format!("/__latch/stash/{id}")))
        .bearer_auth(&env.bob)
        .header(ORIGIN, env.origin())
        .send()
        .await
        .unwrap();
    assert_eq!(delete.status(), 404);
    assert_eq!(env.list(&env.alice).await["count"], 1);

    // Deleting needs the page's own origin.
    let foreign = env
        .http
        .delete(env.latch.url(&format!("/__latch/stash/{id}")))
        .bearer_auth(&env.alice)
        .header(ORIGIN, "http://evil.example")
        .send()
        .await
        .unwrap();
    assert_eq!(foreign.status(), 403);
    problem(foreign).await;
    let mine = env
        .http
        .delete(env.latch.url(&format!("/__latch/stash/{id}")))
        .bearer_auth(&env.alice)
        .header(ORIGIN, env.origin())
        .send()
        .await
        .unwrap();
    assert_eq!(mine.status(), 204);
    assert_eq!(env.entry(&env.alice, &id).await.status(), 404);
    assert_eq!(env.list(&env.alice).await["count"], 0);

    assert_eq!(env.latch.counter("latch_stash_kept_total").await, 1);
}

#[tokio::test]
async fn writes_that_go_through_or_have_no_token_are_never_kept() {
    let env = start().await;
    env.bob_holds().await;

    // The holder's own write is let through and kept nowhere.
    let resp = env.save(&env.bob, FORM, "a=1").await;
    assert_eq!(resp.status(), 200);
    assert_eq!(env.list(&env.bob).await["count"], 0);

    // Without a token: 401, nothing kept, and the stash cannot be listed.
    let anonymous = env
        .http
        .post(env.latch.url("/echo/docs/1/save"))
        .header(CONTENT_TYPE, FORM)
        .body("a=1")
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status(), 401);
    let list = env
        .http
        .get(env.latch.url("/__latch/stash"))
        .send()
        .await
        .unwrap();
    assert_eq!(list.status(), 401);

    // A safe request refused is not a write: nothing to keep.
    let read = env
        .http
        .get(env.latch.url("/echo/docs/1/edit"))
        .bearer_auth(&env.alice)
        .send()
        .await
        .unwrap();
    assert_eq!(read.status(), 423);
    assert!(read.json::<Value>().await.unwrap().get("stash").is_none());

    assert_eq!(env.list(&env.alice).await["count"], 0);
    assert_eq!(env.latch.counter("latch_stash_kept_total").await, 0);
}

#[tokio::test]
async fn oversized_and_untyped_bodies_are_refused_with_a_reason() {
    let env = start().await;
    env.bob_holds().await;

    // Declared too large: refused before a byte of it is read.
    let big = "a=".to_owned() + &"x".repeat(5000);
    let doc = problem(env.save(&env.alice, FORM, big.clone()).await).await;
    assert_eq!(doc["status"], 423);
    assert_eq!(doc["stash"]["kept"], false);
    assert_eq!(doc["stash"]["reason"], "too_large");
    assert!(doc["stash"]["detail"].as_str().unwrap().contains("4 KiB"));

    // Too large as it arrives, with no length declared.
    let chunks: Vec<Result<String, std::io::Error>> = vec![Ok(big.clone()), Ok(big)];
    let stream = reqwest::Body::wrap_stream(futures::stream::iter(chunks));
    let doc = problem(env.save(&env.alice, FORM, stream).await).await;
    assert_eq!(doc["stash"]["reason"], "too_large");

    // Not a form, JSON or text.
    let doc = problem(
        env.save(&env.alice, "application/octet-stream", "\x00\x01")
            .await,
    )
    .await;
    assert_eq!(doc["stash"]["reason"], "content_type");
    let doc = problem(env.save(&env.alice, "image/png", "png").await).await;
    assert_eq!(doc["stash"]["reason"], "content_type");

    // JSON and text are kept.
    let doc = problem(env.save(&env.alice, "application/json", r#"{"a":1}"#).await).await;
    assert_eq!(doc["stash"]["kept"], true);
    let doc = problem(env.save(&env.alice, "text/plain", "notes").await).await;
    assert_eq!(doc["stash"]["kept"], true);

    assert_eq!(env.list(&env.alice).await["count"], 2);
    let refused = |reason: &str| format!("latch_stash_refused_total{{reason=\"{reason}\"}}");
    assert_eq!(env.latch.counter(&refused("too_large")).await, 2);
    assert_eq!(env.latch.counter(&refused("content_type")).await, 2);
    assert_eq!(env.latch.counter("latch_stash_kept_total").await, 2);
    assert_eq!(env.latch.counter("latch_stash_bytes_total").await, 7 + 5);
}

#[tokio::test]
async fn a_trickled_body_is_answered_in_bounded_time_and_not_kept() {
    let env = start().await;
    env.bob_holds().await;

    let mut tcp = TcpStream::connect(("127.0.0.1", env.latch.port))
        .await
        .unwrap();
    let head = format!(
        "POST /echo/docs/1/save HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nAuthorization: Bearer {}\r\n\
         Content-Type: {FORM}\r\nContent-Length: 1000\r\n\r\na=",
        env.latch.port, env.alice
    );
    tcp.write_all(head.as_bytes()).await.unwrap();
    let started = Instant::now();
    // One byte every 200 ms, for far longer than the proxy waits.
    let mut answer = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        tokio::select! {
            read = tcp.read(&mut buf) => match read {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    answer.extend_from_slice(&buf[..n]);
                    if answer.windows(4).any(|w| w == b"\r\n\r\n") && answer.ends_with(b"}") {
                        break;
                    }
                }
            },
            () = tokio::time::sleep(Duration::from_millis(200)) => {
                let _ = tcp.write_all(b"x").await;
                assert!(started.elapsed() < Duration::from_secs(10), "no answer in time");
            }
        }
    }
    let elapsed = started.elapsed();
    let text = String::from_utf8_lossy(&answer);
    assert!(text.starts_with("HTTP/1.1 423"), "{text}");
    assert!(text.contains(r#""reason":"timeout""#), "{text}");
    // Read for at most the linger time a refused body always had, then answered.
    assert!(elapsed < Duration::from_secs(5), "{elapsed:?}");
    assert_eq!(env.list(&env.alice).await["count"], 0);
    assert_eq!(
        env.latch
            .counter("latch_stash_refused_total{reason=\"timeout\"}")
            .await,
        1
    );
}

#[tokio::test]
async fn a_user_keeps_at_most_the_configured_number_of_entries() {
    let env = start().await;
    env.bob_holds().await;
    for n in 1..=7 {
        let doc = problem(
            env.save(&env.alice, "text/plain", format!("draft {n}"))
                .await,
        )
        .await;
        assert_eq!(doc["stash"]["kept"], true);
    }
    let list = env.list(&env.alice).await;
    assert_eq!(list["count"], 5);
    let ids: Vec<&str> = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["id"].as_str().unwrap())
        .collect();
    let mut bodies = Vec::new();
    for id in ids {
        bodies.push(env.entry(&env.alice, id).await.text().await.unwrap());
    }
    assert_eq!(
        bodies,
        ["draft 3", "draft 4", "draft 5", "draft 6", "draft 7"]
    );
}
