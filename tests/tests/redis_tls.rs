//! `rediss://`: the proxy talks to Redis over TLS and verifies its certificate against the
//! system's trust store, which `SSL_CERT_FILE` extends with a private CA.

use std::time::Duration;

use tests::fixtures::DOC;
use tests::instances::{bearer, get, readyz, redis_locks, wait_ready};
use tests::redis::RedisServer;
use tests::{LatchBuilder, Upstream};

#[tokio::test]
async fn a_proxy_on_rediss_verifies_the_certificate_and_enforces_locks() {
    let (redis, ca) = RedisServer::start_tls();
    let upstream = Upstream::start().await;
    let url = format!("rediss://127.0.0.1:{}/0", redis.port);
    let port = upstream.port();

    let trusted = {
        let locks = redis_locks(&url);
        let ca = ca.to_string_lossy().into_owned();
        tokio::task::spawn_blocking(move || {
            LatchBuilder::new(port)
                .rules(DOC)
                .locks(&locks)
                .env("SSL_CERT_FILE", &ca)
                .start()
        })
        .await
        .unwrap()
    };
    wait_ready(&trusted, Duration::from_secs(10)).await;
    let alice = bearer("alice", &[]);
    assert_eq!(get(&trusted, "/echo/doc/1", &alice).await.0, 200);
    let (status, body) = get(&trusted, "/echo/doc/1", &bearer("bob", &[])).await;
    assert_eq!(status, 423, "{body}");
    assert_eq!(body["holder"]["id"], "alice");

    // Trusting only another CA, the same server's certificate is refused: nothing is served
    // over an unverified connection.
    let (_other, other_ca) = RedisServer::start_tls();
    let untrusted = {
        let locks = redis_locks(&url);
        let other_ca = other_ca.to_string_lossy().into_owned();
        tokio::task::spawn_blocking(move || {
            LatchBuilder::new(port)
                .rules(DOC)
                .locks(&locks)
                .env("SSL_CERT_FILE", &other_ca)
                .start()
        })
        .await
        .unwrap()
    };
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(readyz(&untrusted).await.0, 503);
    assert_eq!(get(&untrusted, "/echo/doc/2", &alice).await.0, 503);
    assert!(
        untrusted.log().to_lowercase().contains("certificate"),
        "{}",
        untrusted.log()
    );
}
