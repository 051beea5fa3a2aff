//! A proxy whose Redis goes away: protected requests fail closed within the store timeout,
//! unprotected ones are untouched, `/readyz` and the metrics say so, and everything recovers
//! by itself once Redis is back. Each test starts its own Redis on a free port.

use std::process::Command;
use std::time::{Duration, Instant};

use reqwest::header::{ACCEPT, AUTHORIZATION};
use tests::fixtures::DOC;
use tests::instances::{bearer, get, metric, readyz, start_instance, wait_ready};
use tests::redis::RedisServer;
use tests::{client, Latch, LatchBuilder, Upstream};

/// The proxy's default `locks.store_timeout`.
const STORE_TIMEOUT: Duration = Duration::from_millis(500);

/// A protected GET: status, content type, body, and how long it took.
async fn timed_get(
    latch: &Latch,
    path: &str,
    auth: &str,
    html: bool,
) -> (u16, String, String, Duration) {
    let started = Instant::now();
    let mut req = client().get(latch.url(path)).header(AUTHORIZATION, auth);
    if html {
        req = req.header(ACCEPT, "text/html");
    }
    let resp = req.send().await.expect("the proxy answers");
    let status = resp.status().as_u16();
    let kind = resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let body = resp.text().await.unwrap_or_default();
    (status, kind, body, started.elapsed())
}

fn signal(pid: u32, sig: &str) {
    let status = Command::new("kill")
        .arg(sig)
        .arg(pid.to_string())
        .status()
        .expect("kill(1)");
    assert!(status.success(), "kill {sig} {pid}");
}

#[tokio::test]
async fn redis_down_fails_closed_and_recovers_by_itself() {
    let mut redis = RedisServer::start();
    let upstream = Upstream::start().await;
    let latch = start_instance(upstream.port(), &redis.url(), DOC).await;
    let alice = bearer("alice", &[]);
    assert_eq!(get(&latch, "/echo/doc/1", &alice).await.0, 200);
    let errors_before = metric(&latch, "latch_store_errors_total")
        .await
        .unwrap_or(0.0);

    redis.kill();

    let (status, kind, body, took) = timed_get(&latch, "/echo/doc/1", &alice, false).await;
    assert_eq!(status, 503, "{body}");
    assert!(kind.starts_with("application/problem+json"), "{kind}");
    assert!(body.contains("Lock store unavailable"), "{body}");
    assert!(
        took < STORE_TIMEOUT + Duration::from_millis(300),
        "{took:?}"
    );

    let (status, kind, body, took) = timed_get(&latch, "/echo/doc/2", &alice, true).await;
    assert_eq!(status, 503, "{body}");
    assert!(kind.starts_with("text/html"), "{kind}");
    assert!(
        took < STORE_TIMEOUT + Duration::from_millis(300),
        "{took:?}"
    );

    // Unprotected paths do not touch the store.
    let (status, _, body, _) = timed_get(&latch, "/echo/free", &alice, false).await;
    assert_eq!(status, 200, "{body}");
    let resp = client().get(latch.url("/json")).send().await.unwrap();
    assert_eq!(resp.status(), 200);

    let (status, body) = readyz(&latch).await;
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("lock store"), "{body}");
    let errors = metric(&latch, "latch_store_errors_total").await.unwrap();
    assert!(errors >= errors_before + 2.0, "{errors_before} -> {errors}");

    // Redis returns, empty. The proxy notices by itself and serves again within seconds.
    let back = Instant::now();
    redis.restart();
    let took = wait_ready(&latch, Duration::from_secs(5)).await;
    assert!(took < Duration::from_secs(5), "{took:?}");
    let (status, _, body, _) = timed_get(&latch, "/echo/doc/1", &alice, false).await;
    assert_eq!(status, 200, "{body}");
    assert!(back.elapsed() < Duration::from_secs(6));
    let (status, body) = get(&latch, "/echo/doc/1", &bearer("bob", &[])).await;
    assert_eq!(status, 423, "the rebuilt lock is enforced: {body}");
    assert!(!latch.log().contains("panicked"), "{}", latch.log());
}

#[tokio::test]
async fn a_redis_that_stops_answering_is_cut_off_by_the_store_timeout() {
    let redis = RedisServer::start();
    let upstream = Upstream::start().await;
    let latch = start_instance(upstream.port(), &redis.url(), DOC).await;
    let alice = bearer("alice", &[]);
    assert_eq!(get(&latch, "/echo/doc/1", &alice).await.0, 200);

    // SIGSTOP: connections stay open but nothing answers, as with a hung server.
    let pid = redis.pid().expect("redis runs");
    signal(pid, "-STOP");
    let (status, _, body, took) = timed_get(&latch, "/echo/doc/1", &alice, false).await;
    let (free, _, _, _) = timed_get(&latch, "/echo/free", &alice, false).await;
    signal(pid, "-CONT");
    assert_eq!(status, 503, "{body}");
    assert!(
        took >= STORE_TIMEOUT - Duration::from_millis(50),
        "{took:?}"
    );
    assert!(took < Duration::from_secs(1), "{took:?}");
    assert_eq!(free, 200);

    wait_ready(&latch, Duration::from_secs(5)).await;
    assert_eq!(get(&latch, "/echo/doc/1", &alice).await.0, 200);
}

#[tokio::test]
async fn on_store_error_allow_lets_requests_through() {
    let mut redis = RedisServer::start();
    let upstream = Upstream::start().await;
    let locks = format!(
        "{}on_store_error = \"allow\"\n",
        tests::instances::redis_locks(&redis.url())
    );
    let port = upstream.port();
    let latch = tokio::task::spawn_blocking(move || {
        LatchBuilder::new(port).rules(DOC).locks(&locks).start()
    })
    .await
    .unwrap();
    wait_ready(&latch, Duration::from_secs(10)).await;

    redis.kill();
    let (status, body) = get(&latch, "/echo/doc/1", &bearer("alice", &[])).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["headers"]["x-latch-user"], "alice");
    assert!(body["headers"].get("x-latch-fence").is_none(), "{body}");
}

#[tokio::test]
async fn a_proxy_started_before_redis_becomes_ready_when_it_arrives() {
    let port = tests::free_port();
    let upstream = Upstream::start().await;
    let url = format!("redis://127.0.0.1:{port}/0");
    let locks = tests::instances::redis_locks(&url);
    let upstream_port = upstream.port();
    let latch = tokio::task::spawn_blocking(move || {
        LatchBuilder::new(upstream_port)
            .rules(DOC)
            .locks(&locks)
            .start()
    })
    .await
    .unwrap();
    assert_eq!(readyz(&latch).await.0, 503);
    assert_eq!(
        get(&latch, "/echo/doc/1", &bearer("alice", &[])).await.0,
        503
    );

    let _redis = RedisServer::start_with(port, &[]);
    wait_ready(&latch, Duration::from_secs(5)).await;
    assert_eq!(
        get(&latch, "/echo/doc/1", &bearer("alice", &[])).await.0,
        200
    );
}

#[tokio::test]
async fn a_bad_redis_url_is_a_clear_start_error() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("latch.toml");
    std::fs::write(dir.path().join("rules.toml"), DOC).unwrap();
    std::fs::write(
        &config,
        format!(
            "[proxy]\nlisten = \"127.0.0.1:{}\"\nupstream = \"http://127.0.0.1:1\"\n\n\
             [auth]\nsecret = \"{}\"\n\n\
             [locks]\nstore = \"redis://u:hunter2@127.0.0.1:1/0?key_prefix=bad{{prefix}}\"\n\n\
             [rules]\nstore = \"rules.toml\"\n\n[admin]\nlisten = \"127.0.0.1:{}\"\n",
            tests::free_port(),
            tests::SECRET,
            tests::free_port()
        ),
    )
    .unwrap();
    let (code, _, stderr) =
        tests::latch::run_latch(&["proxy", "--config", config.to_str().unwrap()], &[]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("locks.store"), "{stderr}");
    assert!(stderr.contains("key prefix"), "{stderr}");
    assert!(!stderr.contains("hunter2"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}
