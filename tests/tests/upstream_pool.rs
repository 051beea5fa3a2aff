//! Upstream pools against real servers: two nginx processes that each name themselves in an
//! `X-Server` header (and echo the lock headers Latch adds), killed with SIGKILL to play a
//! crashed server. Slow answers come from the test app behind both (`/sleep/{ms}`).

use std::collections::HashMap;
use std::time::Duration;

use testkit::nginx::Nginx;
use tests::fixtures::DOC;
use tests::{client, eventually, free_port, token, LatchBuilder, Upstream};

/// A plain nginx on `port` that answers 200 with its `name`, and passes `/sleep/` to the test
/// app on `app_port`.
fn server(name: &str, port: u16, app_port: u16) -> Nginx {
    Nginx::start(
        &format!(
            "server {{\n listen 127.0.0.1:{port};\n add_header X-Server {name} always;\n\
             add_header X-Fence \"$http_x_latch_fence\" always;\n\
             add_header X-User \"$http_x_latch_user\" always;\n\
             location /sleep/ {{ proxy_pass http://127.0.0.1:{app_port}; }}\n\
             location / {{ return 200 \"{name}\\n\"; }}\n}}"
        ),
        &[port],
    )
}

struct Pool {
    a: Nginx,
    b: Nginx,
    ports: [u16; 2],
    _app: Upstream,
}

async fn pool() -> Pool {
    let app = Upstream::start().await;
    let ports = [free_port(), free_port()];
    Pool {
        a: server("a", ports[0], app.port()),
        b: server("b", ports[1], app.port()),
        ports,
        _app: app,
    }
}

impl Pool {
    fn latch(&self, settings: &[(&str, &str)], rules: &str) -> tests::Latch {
        let urls = format!(
            "http://127.0.0.1:{}, http://127.0.0.1:{}",
            self.ports[0], self.ports[1]
        );
        let mut builder = LatchBuilder::new(self.ports[0])
            .rules(rules)
            .env("LATCH_PROXY_UPSTREAM", &urls);
        for (k, v) in settings {
            builder = builder.env(k, v);
        }
        builder.start()
    }
}

fn server_of(resp: &reqwest::Response) -> String {
    resp.headers()
        .get("x-server")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("-")
        .to_owned()
}

/// Sends `n` GETs of `path` one after another: how many each server answered, and every
/// status that was not 200.
async fn spread(latch: &tests::Latch, path: &str, n: usize) -> (HashMap<String, usize>, Vec<u16>) {
    let mut by_server = HashMap::new();
    let mut failed = Vec::new();
    for _ in 0..n {
        let resp = client().get(latch.url(path)).send().await.unwrap();
        if resp.status() != 200 {
            failed.push(resp.status().as_u16());
        }
        *by_server.entry(server_of(&resp)).or_insert(0) += 1;
    }
    (by_server, failed)
}

const NO_CHECKS: (&str, &str) = ("LATCH_PROXY_UPSTREAM_HEALTH_CHECK", "none");

#[tokio::test]
async fn round_robin_sends_requests_to_every_server_in_turn() {
    let pool = pool().await;
    let latch = pool.latch(&[NO_CHECKS], "");
    let (by_server, failed) = spread(&latch, "/page", 20).await;
    assert!(failed.is_empty(), "{failed:?}");
    assert_eq!(by_server.get("a"), Some(&10), "{by_server:?}");
    assert_eq!(by_server.get("b"), Some(&10), "{by_server:?}");
}

#[tokio::test]
async fn least_connections_sends_new_requests_to_the_server_without_one_in_flight() {
    let pool = pool().await;
    let latch = pool.latch(
        &[
            NO_CHECKS,
            ("LATCH_PROXY_UPSTREAM_BALANCE", "least_connections"),
        ],
        "",
    );
    // One slow request goes to one server and stays there for 8 s; it reaches the proxy's
    // choice of server within the first of them even on a loaded machine.
    let slow_url = latch.url("/sleep/8000");
    let slow = tokio::spawn(async move { client().get(slow_url).send().await.unwrap() });
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let (by_server, failed) = spread(&latch, "/page", 6).await;
    assert!(!slow.is_finished(), "the slow request is still in flight");
    assert!(failed.is_empty(), "{failed:?}");
    assert_eq!(by_server.len(), 1, "all to the idle server: {by_server:?}");
    let slow = slow.await.unwrap();
    assert_eq!(slow.status(), 200);
    let held = server_of(&slow);
    assert!(
        !by_server.contains_key(&held),
        "none went to {held}, which held the slow request: {by_server:?}"
    );
    assert_eq!(by_server.values().sum::<usize>(), 6);
}

#[tokio::test]
async fn a_dead_server_is_taken_out_by_the_health_check() {
    let mut pool = pool().await;
    let latch = pool.latch(
        &[
            ("LATCH_PROXY_UPSTREAM_HEALTH_CHECK", "http"),
            ("LATCH_PROXY_UPSTREAM_HEALTH_INTERVAL_SECONDS", "1"),
            // Without retries, only the health check keeps requests off the dead server.
            ("LATCH_PROXY_UPSTREAM_RETRY", "false"),
        ],
        "",
    );
    let (by_server, _) = spread(&latch, "/page", 4).await;
    assert_eq!(by_server.len(), 2, "{by_server:?}");
    pool.a.kill();
    let log = eventually(Duration::from_secs(20), || async {
        let log = latch.log();
        log.contains("fails its health check").then_some(log)
    })
    .await;
    assert!(log.is_some(), "the check never noticed:\n{}", latch.log());
    let (by_server, failed) = spread(&latch, "/page", 10).await;
    assert!(failed.is_empty(), "{failed:?}\n{}", latch.log());
    assert_eq!(by_server.get("b"), Some(&10), "{by_server:?}");
}

#[tokio::test]
async fn an_idempotent_request_whose_server_is_down_is_retried_on_another() {
    let mut pool = pool().await;
    let latch = pool.latch(&[NO_CHECKS], "");
    pool.b.kill();
    let (by_server, failed) = spread(&latch, "/page", 10).await;
    assert!(
        failed.is_empty(),
        "no GET may fail: {failed:?}\n{}",
        latch.log()
    );
    assert_eq!(by_server.get("a"), Some(&10), "{by_server:?}");
    // HEAD, PUT and DELETE are idempotent too.
    for method in [
        reqwest::Method::HEAD,
        reqwest::Method::PUT,
        reqwest::Method::DELETE,
    ] {
        for _ in 0..2 {
            let resp = client()
                .request(method.clone(), latch.url("/page"))
                .send()
                .await
                .unwrap();
            assert_eq!(resp.status(), 200, "{method}");
        }
    }
}

#[tokio::test]
async fn a_post_whose_server_is_down_is_not_retried() {
    let mut pool = pool().await;
    let latch = pool.latch(&[NO_CHECKS], "");
    pool.b.kill();
    let mut statuses = Vec::new();
    for _ in 0..4 {
        let resp = client()
            .post(latch.url("/page"))
            .body("x=1")
            .send()
            .await
            .unwrap();
        statuses.push(resp.status().as_u16());
    }
    // Round robin sends every other POST to the dead server; those are refused, not resent.
    assert_eq!(
        statuses.iter().filter(|s| **s == 502).count(),
        2,
        "{statuses:?}"
    );
    assert_eq!(
        statuses.iter().filter(|s| **s == 200).count(),
        2,
        "{statuses:?}"
    );
}

#[tokio::test]
async fn a_held_lock_and_its_423_are_the_same_whichever_server_answers() {
    let pool = pool().await;
    let latch = pool.latch(&[NO_CHECKS], DOC);
    let alice = token("alice", "Alice", &[]);
    let bob = token("bob", "Bob", &[]);
    let mut fences = HashMap::new();
    for _ in 0..6 {
        let resp = client()
            .get(latch.url("/echo/doc/1"))
            .bearer_auth(&alice)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200, "{}", latch.log());
        let fence = resp.headers()["x-fence"].to_str().unwrap().to_owned();
        assert_eq!(resp.headers()["x-user"], "alice");
        fences.insert(server_of(&resp), fence);
    }
    assert_eq!(fences.len(), 2, "both servers answered: {fences:?}");
    let fence: Vec<&String> = fences.values().collect();
    assert_eq!(fence[0], fence[1], "one lock, one fence: {fences:?}");
    assert!(!fence[0].is_empty());
    for _ in 0..4 {
        let resp = client()
            .get(latch.url("/echo/doc/1"))
            .bearer_auth(&bob)
            .send()
            .await
            .unwrap();
        assert_eq!(
            resp.status(),
            423,
            "bob is refused by the proxy, whatever the server"
        );
        assert!(
            resp.headers().get("x-server").is_none(),
            "no server saw bob's request"
        );
    }
}
