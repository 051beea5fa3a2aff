//! TLS termination (docs/tls.md) with real clients and certificates made by `openssl`: curl
//! over HTTP/2, reqwest and tokio-tungstenite over HTTP/1.1, rustls clients that check which
//! certificate SNI chose, the redirecting listener, HSTS, `Secure` cookies, reloads of the
//! certificate files (by timer, by SIGHUP, with garbage) and a reload under a wrk load.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use serde_json::{json, Value};
use testkit::certs::{Issued, TestCa};
use tests::fixtures::{DOC, TAB};
use tests::tls::{
    client_config, connect, get_on, https_section, leaf_der, served_leaf, wait_https,
};
use tests::{eventually, token, Latch, LatchBuilder, Upstream};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::Message;

const PATIENCE: Duration = Duration::from_secs(20);

struct Setup {
    latch: Latch,
    https: u16,
    ca: TestCa,
    _dir: tempfile::TempDir,
    _upstream: Upstream,
}

/// A CA in a temp dir of its own; the certificate files the proxy reads are copies made by
/// `install`, so a test can replace them.
fn new_ca() -> (TestCa, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("a temp dir");
    let ca = TestCa::new(dir.path(), "tls");
    (ca, dir)
}

/// Copies `from` to `to` the way deployment tools do: a new file renamed over the old one.
fn install(from: &Path, to: &Path) {
    let tmp = to.with_extension("tmp");
    std::fs::copy(from, &tmp).expect("copy the new file");
    std::fs::rename(&tmp, to).expect("rename it into place");
}

async fn start(rules: &str, ca: TestCa, dir: tempfile::TempDir, tls_lines: &str) -> Setup {
    let upstream = Upstream::start().await;
    let latch = LatchBuilder::new(upstream.port())
        .rules(rules)
        .named_port("https")
        .named_port("redirect")
        .section(&https_section(tls_lines))
        .start();
    let https = latch.named_port("https");
    wait_https(&latch, https);
    Setup {
        latch,
        https,
        ca,
        _dir: dir,
        _upstream: upstream,
    }
}

/// A proxy whose default certificate covers `app.test` and `127.0.0.1`.
async fn start_default(rules: &str, extra: &str) -> (Setup, Issued) {
    let (ca, dir) = new_ca();
    let issued = ca.issue(&["app.test", "127.0.0.1"]);
    let lines = format!(
        "cert_file = \"{}\"\nkey_file = \"{}\"\n{extra}",
        issued.cert.display(),
        issued.key.display()
    );
    (start(rules, ca, dir, &lines).await, issued)
}

impl Setup {
    fn url(&self, path: &str) -> String {
        format!("https://app.test:{}{path}", self.https)
    }

    fn origin(&self) -> String {
        format!("https://app.test:{}", self.https)
    }

    /// reqwest over TLS, trusting the test CA, with `app.test` resolved to the proxy.
    fn reqwest(&self) -> reqwest::Client {
        let ca = std::fs::read(self.ca.cert()).expect("the CA file");
        reqwest::Client::builder()
            .add_root_certificate(reqwest::Certificate::from_pem(&ca).expect("a CA"))
            .resolve("app.test", ([127, 0, 0, 1], self.https).into())
            .redirect(reqwest::redirect::Policy::none())
            .timeout(PATIENCE)
            .build()
            .expect("a client")
    }

    /// curl over HTTP/2 with the test CA: (HTTP version, status, response headers).
    fn curl_h2(&self, path: &str, cookie: &str) -> (String, u16, String) {
        let out = Command::new("curl")
            .args([
                "-sS",
                "--http2",
                "--max-time",
                "20",
                "-D",
                "-",
                "-o",
                "/dev/null",
            ])
            .arg("--cacert")
            .arg(self.ca.cert())
            .arg("--resolve")
            .arg(format!("app.test:{}:127.0.0.1", self.https))
            .args(["-H", &format!("Cookie: {cookie}")])
            .args(["-w", "\nVERSION %{http_version} %{http_code}"])
            .arg(self.url(path))
            .output()
            .expect("curl runs");
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "curl failed: {}\n{text}",
            String::from_utf8_lossy(&out.stderr)
        );
        let last = text.lines().last().unwrap_or_default().to_owned();
        let mut parts = last.split_whitespace().skip(1);
        let version = parts.next().unwrap_or_default().to_owned();
        let status = parts.next().and_then(|s| s.parse().ok()).unwrap_or(0);
        (version, status, text)
    }
}

fn cookie_of(user: &str) -> String {
    format!("latch_token={}", token(user, user, &[]))
}

// curl and wrk block this thread; the upstream app runs on the others.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn curl_over_http2_reaches_the_app_and_a_held_lock_refuses_a_second_user() {
    let (setup, _) = start_default(DOC, "").await;
    let (version, status, _) = setup.curl_h2("/echo/doc/1", &cookie_of("alice"));
    assert_eq!((version.as_str(), status), ("2", 200), "alice over h2");
    let (version, status, head) = setup.curl_h2("/echo/doc/1", &cookie_of("bob"));
    assert_eq!(
        (version.as_str(), status),
        ("2", 423),
        "bob must be refused while alice holds doc:1: {head}"
    );
    // The holder keeps her page.
    let (_, status, _) = setup.curl_h2("/echo/doc/1", &cookie_of("alice"));
    assert_eq!(status, 200);
}

#[tokio::test]
async fn reqwest_over_tls_reaches_the_app_with_its_host() {
    let (setup, _) = start_default("", "").await;
    let resp = setup
        .reqwest()
        .get(setup.url("/echo/hello?x=1"))
        .send()
        .await
        .expect("a response over TLS");
    assert_eq!(resp.status(), 200);
    let echo: Value = resp.json().await.expect("echo JSON");
    assert_eq!(echo["headers"]["host"], format!("app.test:{}", setup.https));
    assert_eq!(echo["path"], "/echo/hello", "{echo}");
    assert_eq!(echo["query"], "x=1", "{echo}");
}

#[tokio::test]
async fn hsts_is_sent_over_tls_when_configured() {
    let (setup, _) = start_default("", "hsts_seconds = 31536000\n").await;
    let resp = setup
        .reqwest()
        .get(setup.url("/echo/x"))
        .send()
        .await
        .expect("a response");
    assert_eq!(
        resp.headers()
            .get("strict-transport-security")
            .map(|v| v.to_str().unwrap_or_default()),
        Some("max-age=31536000")
    );
    // Never over plain HTTP, where a browser must ignore it anyway.
    let plain = tests::client()
        .get(setup.latch.url("/echo/x"))
        .send()
        .await
        .expect("a plain response");
    assert!(plain.headers().get("strict-transport-security").is_none());
}

#[tokio::test]
async fn session_cookies_are_secure_over_tls_only() {
    let (setup, _) = start_default(TAB, "").await;
    let resp = setup
        .reqwest()
        .get(setup.url("/echo/tab/1"))
        .header("cookie", cookie_of("alice"))
        .send()
        .await
        .expect("a response");
    assert_eq!(resp.status(), 200);
    let cookie = resp
        .headers()
        .get("set-cookie")
        .and_then(|v| v.to_str().ok())
        .expect("a browser-session cookie")
        .to_owned();
    assert!(
        cookie.starts_with("latch_sid=") && cookie.ends_with("; Secure"),
        "{cookie}"
    );
    let plain = tests::client()
        .get(setup.latch.url("/echo/tab/2"))
        .header("cookie", cookie_of("bob"))
        .send()
        .await
        .expect("a plain response");
    let cookie = plain
        .headers()
        .get("set-cookie")
        .and_then(|v| v.to_str().ok())
        .expect("a browser-session cookie");
    assert!(!cookie.contains("Secure"), "{cookie}");
}

#[tokio::test]
async fn the_banner_socket_works_over_tls_with_an_https_origin() {
    let (setup, _) = start_default(DOC, "").await;
    let alice = cookie_of("alice");
    let resp = setup
        .reqwest()
        .get(setup.url("/echo/doc/7"))
        .header("cookie", &alice)
        .send()
        .await
        .expect("alice opens the page");
    assert_eq!(resp.status(), 200);

    // As a browser does, on a connection of its own offering only HTTP/1.1.
    let config = client_config(&setup.ca.cert(), &[b"http/1.1"]);
    let tls = connect(setup.https, "app.test", &config)
        .await
        .expect("a TLS connection");
    let mut req = format!("wss://app.test:{}/__latch/ws", setup.https)
        .into_client_request()
        .expect("a request");
    let headers = req.headers_mut();
    headers.insert("origin", HeaderValue::from_str(&setup.origin()).unwrap());
    headers.insert("cookie", HeaderValue::from_str(&alice).unwrap());
    let (mut ws, _) = tokio::time::timeout(PATIENCE, tokio_tungstenite::client_async(req, tls))
        .await
        .expect("the handshake came in time")
        .expect("the banner socket opens over TLS with an https Origin");
    let watch = json!({"type": "watch", "path": "/echo/doc/7"}).to_string();
    ws.send(Message::Text(watch.into())).await.expect("send");
    let lock = tokio::time::timeout(PATIENCE, async {
        while let Some(msg) = ws.next().await {
            if let Ok(Message::Text(text)) = msg {
                let msg: Value = serde_json::from_str(&text).expect("JSON");
                if msg["type"] == "lock" {
                    return msg;
                }
            }
        }
        panic!("the socket closed before a lock message");
    })
    .await
    .expect("a lock message in time");
    assert_eq!(lock["resource"], "doc:7", "{lock}");
    assert_eq!(lock["you"], true, "{lock}");
    // Served on its own connection, in a task of its own, as on the plain listener.
    let opened = |via: &str| format!("latch_banner_sockets_opened_total{{via=\"{via}\"}}");
    assert_eq!(setup.latch.counter(&opened("connection")).await, 1);
    assert_eq!(setup.latch.counter(&opened("session")).await, 0);

    // After a request on a kept-alive connection, the handshake is answered inside its session.
    let mut tls = connect(setup.https, "app.test", &config)
        .await
        .expect("a TLS connection");
    let (status, _) = get_on(
        &mut tls,
        "app.test",
        "/echo/doc/7",
        &format!("cookie: {alice}\r\n"),
    )
    .await;
    assert_eq!(status, 200);
    let mut req = format!("wss://app.test:{}/__latch/ws", setup.https)
        .into_client_request()
        .expect("a request");
    req.headers_mut()
        .insert("origin", HeaderValue::from_str(&setup.origin()).unwrap());
    req.headers_mut()
        .insert("cookie", HeaderValue::from_str(&alice).unwrap());
    let (mut kept, _) = tokio::time::timeout(PATIENCE, tokio_tungstenite::client_async(req, tls))
        .await
        .expect("the handshake came in time")
        .expect("the banner socket opens on a kept-alive connection");
    kept.send(Message::Text(
        json!({"type": "watch", "path": "/echo/doc/7"})
            .to_string()
            .into(),
    ))
    .await
    .expect("send");
    assert!(
        matches!(
            tokio::time::timeout(PATIENCE, kept.next()).await,
            Ok(Some(Ok(_)))
        ),
        "the kept-alive banner socket answers"
    );
    assert_eq!(setup.latch.counter(&opened("session")).await, 1);
    assert_eq!(setup.latch.counter(&opened("connection")).await, 1);

    // The plain origin is another origin for a page served over TLS.
    let tls = connect(setup.https, "app.test", &config)
        .await
        .expect("a TLS connection");
    let mut req = format!("wss://app.test:{}/__latch/ws", setup.https)
        .into_client_request()
        .expect("a request");
    let plain_origin = format!("http://app.test:{}", setup.https);
    req.headers_mut()
        .insert("origin", HeaderValue::from_str(&plain_origin).unwrap());
    req.headers_mut()
        .insert("cookie", HeaderValue::from_str(&alice).unwrap());
    match tokio_tungstenite::client_async(req, tls).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => {
            assert_eq!(resp.status(), 403)
        }
        other => panic!("an http:// Origin over TLS must be refused: {other:?}"),
    }
}

/// Two named certificates and no default one.
async fn start_two_names() -> (Setup, Issued, Issued) {
    let (ca, dir) = new_ca();
    let a = ca.issue(&["a.test"]);
    let b = ca.issue(&["*.b.test"]);
    let lines = format!(
        "certificates = [\"{}\", \"{}\"]\n",
        a.bundle.display(),
        b.bundle.display()
    );
    (start("", ca, dir, &lines).await, a, b)
}

#[tokio::test]
async fn sni_chooses_the_certificate_wildcards_included() {
    let (setup, a, b) = start_two_names().await;
    let config = client_config(&setup.ca.cert(), &[]);
    let to_a = connect(setup.https, "a.test", &config)
        .await
        .expect("a.test verifies");
    assert_eq!(served_leaf(&to_a), leaf_der(&a.cert));
    let to_b = connect(setup.https, "www.b.test", &config)
        .await
        .expect("www.b.test verifies against *.b.test");
    assert_eq!(served_leaf(&to_b), leaf_der(&b.cert));

    // And as openssl's own client sees it.
    let out = Command::new("openssl")
        .args(["s_client", "-connect"])
        .arg(format!("127.0.0.1:{}", setup.https))
        .args(["-servername", "x.b.test", "-CAfile"])
        .arg(setup.ca.cert())
        .stdin(std::process::Stdio::null())
        .output()
        .expect("openssl runs");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("CN = *.b.test"), "{text}");
    assert!(text.contains("Verify return code: 0 (ok)"), "{text}");
}

#[tokio::test]
async fn an_sni_naming_no_certificate_fails_the_handshake_without_a_default() {
    let (setup, _, _) = start_two_names().await;
    let config = client_config(&setup.ca.cert(), &[]);
    for name in ["other.test", "b.test", "a.b.b.test"] {
        let refused = connect(setup.https, name, &config).await;
        assert!(refused.is_err(), "{name} got a certificate");
    }
    // The proxy still serves the names it has.
    assert!(connect(setup.https, "a.test", &config).await.is_ok());
}

#[tokio::test]
async fn an_sni_naming_no_certificate_gets_the_default_one() {
    let (ca, dir) = new_ca();
    let named = ca.issue(&["a.test"]);
    let default = ca.issue(&["fallback.test"]);
    let lines = format!(
        "cert_file = \"{}\"\nkey_file = \"{}\"\ncertificates = [\"{}\"]\n",
        default.cert.display(),
        default.key.display(),
        named.bundle.display()
    );
    let setup = start("", ca, dir, &lines).await;
    // A client that does not verify would take it; ours checks which one came by failing to
    // verify it for a name it does not cover.
    let config = client_config(&setup.ca.cert(), &[]);
    let fallback = connect(setup.https, "fallback.test", &config)
        .await
        .expect("the default certificate for its own name");
    assert_eq!(served_leaf(&fallback), leaf_der(&default.cert));
    let err = connect(setup.https, "other.test", &config)
        .await
        .expect_err("other.test is served the default certificate, which does not cover it");
    assert!(
        err.to_string().contains("NotValidForName") || err.to_string().contains("not valid"),
        "{err}"
    );
    let a = connect(setup.https, "a.test", &config)
        .await
        .expect("a.test");
    assert_eq!(served_leaf(&a), leaf_der(&named.cert));
}

#[tokio::test]
async fn the_redirect_listener_sends_covered_hosts_to_https_and_refuses_others() {
    let (setup, _) = start_default("", "redirect_listen = \"127.0.0.1:{port:redirect}\"\n").await;
    let redirect = setup.latch.named_port("redirect");
    testkit::wait_for_port(redirect, PATIENCE, || setup.latch.log());
    let plain = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .resolve("app.test", ([127, 0, 0, 1], redirect).into())
        .timeout(PATIENCE)
        .build()
        .unwrap();
    let resp = plain
        .post(format!("http://app.test:{redirect}/a/b?x=1&y=%20"))
        .body("ignored")
        .send()
        .await
        .expect("an answer");
    assert_eq!(resp.status(), 308);
    assert_eq!(
        resp.headers()["location"],
        format!("https://app.test:{}/a/b?x=1&y=%20", setup.https).as_str()
    );
    // The redirect leads somewhere that answers.
    let followed = setup
        .reqwest()
        .get(resp.headers()["location"].to_str().unwrap())
        .send()
        .await
        .expect("the https side");
    assert_eq!(followed.status(), 404, "the echo app has no /a/b");

    for (host, status) in [
        ("evil.example", 421),
        ("app.test.evil.example", 421),
        ("evil.example/x", 400),
    ] {
        let resp = plain
            .get(format!("http://app.test:{redirect}/"))
            .header("host", host)
            .send()
            .await
            .expect("an answer");
        assert_eq!(resp.status(), status, "Host: {host}");
        assert!(resp.headers().get("location").is_none(), "Host: {host}");
    }
}

/// Waits until a new connection is served `expected`.
async fn served_soon(https: u16, config: &Arc<rustls::ClientConfig>, expected: &[u8]) -> bool {
    eventually(PATIENCE, || async {
        let conn = connect(https, "app.test", config).await.ok()?;
        (served_leaf(&conn) == expected).then_some(())
    })
    .await
    .is_some()
}

/// A proxy whose default certificate is read from files this test replaces.
async fn start_replaceable(reload: &str) -> (Setup, PathBuf, PathBuf, Issued) {
    let (ca, dir) = new_ca();
    let first = ca.issue(&["app.test", "127.0.0.1"]);
    let cert = dir.path().join("served.pem");
    let key = dir.path().join("served.key");
    install(&first.cert, &cert);
    install(&first.key, &key);
    let lines = format!(
        "cert_file = \"{}\"\nkey_file = \"{}\"\n{reload}",
        cert.display(),
        key.display()
    );
    (start("", ca, dir, &lines).await, cert, key, first)
}

#[tokio::test]
async fn a_reload_serves_new_connections_the_new_certificate_and_keeps_open_ones() {
    let (setup, cert, key, first) = start_replaceable("reload_seconds = 1\n").await;
    let config = client_config(&setup.ca.cert(), &[]);
    let mut open = connect(setup.https, "app.test", &config)
        .await
        .expect("a connection");
    assert_eq!(served_leaf(&open), leaf_der(&first.cert));
    assert_eq!(get_on(&mut open, "app.test", "/echo/1", "").await.0, 200);

    let second = setup.ca.issue(&["app.test", "127.0.0.1"]);
    install(&second.key, &key);
    install(&second.cert, &cert);
    assert!(
        served_soon(setup.https, &config, &leaf_der(&second.cert)).await,
        "new connections never got the new certificate; log:\n{}",
        setup.latch.log()
    );
    // The connection opened before the reload still works.
    assert_eq!(get_on(&mut open, "app.test", "/echo/2", "").await.0, 200);

    // Garbage keeps the last good certificate, and says which file is at fault.
    std::fs::write(cert.with_extension("tmp"), "not a certificate").unwrap();
    std::fs::rename(cert.with_extension("tmp"), &cert).unwrap();
    let logged = eventually(PATIENCE, || async {
        let log = setup.latch.log();
        log.contains(&format!("{}: holds no PEM certificate", cert.display()))
            .then_some(())
    })
    .await;
    assert!(
        logged.is_some(),
        "no error naming the file; log:\n{}",
        setup.latch.log()
    );
    let conn = connect(setup.https, "app.test", &config)
        .await
        .expect("still served");
    assert_eq!(served_leaf(&conn), leaf_der(&second.cert));
}

#[tokio::test]
async fn sighup_reloads_the_certificates() {
    let (setup, cert, key, _) = start_replaceable("reload_seconds = 0\n").await;
    let config = client_config(&setup.ca.cert(), &[]);
    let second = setup.ca.issue(&["app.test", "127.0.0.1"]);
    install(&second.key, &key);
    install(&second.cert, &cert);
    let status = Command::new("kill")
        .args(["-HUP", &setup.latch.pid().to_string()])
        .status()
        .expect("kill runs");
    assert!(status.success());
    assert!(
        served_soon(setup.https, &config, &leaf_der(&second.cert)).await,
        "SIGHUP did not reload; log:\n{}",
        setup.latch.log()
    );
}

// curl and wrk block this thread; the upstream app runs on the others.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificates_swapped_under_a_wrk_load_fail_no_request() {
    let (setup, cert, key, first) = start_replaceable("reload_seconds = 1\n").await;
    let second = setup.ca.issue(&["app.test", "127.0.0.1"]);
    let swapping = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let swapper = {
        let swapping = Arc::clone(&swapping);
        let (cert, key) = (cert.clone(), key.clone());
        let pairs = [first.clone(), second.clone()];
        std::thread::spawn(move || {
            let mut swaps = 0;
            while swapping.load(std::sync::atomic::Ordering::Relaxed) {
                let next = &pairs[(swaps + 1) % 2];
                install(&next.key, &key);
                install(&next.cert, &cert);
                swaps += 1;
                std::thread::sleep(Duration::from_millis(700));
            }
            swaps
        })
    };
    // Half the connections make a new handshake for every request.
    let url = format!("https://127.0.0.1:{}/echo/load", setup.https);
    let wrk = |extra: &[&str]| {
        Command::new("wrk")
            .args(["-t1", "-c8", "-d8s", "--timeout", "10s"])
            .args(extra)
            .arg(&url)
            .output()
            .expect("wrk is installed (scripts/setup.sh test)")
    };
    let closing = std::thread::spawn({
        let url = url.clone();
        move || {
            Command::new("wrk")
                .args([
                    "-t1",
                    "-c8",
                    "-d8s",
                    "--timeout",
                    "10s",
                    "-H",
                    "Connection: close",
                ])
                .arg(&url)
                .output()
                .expect("wrk runs")
        }
    });
    let kept = wrk(&[]);
    let closing = closing.join().expect("the closing run");
    swapping.store(false, std::sync::atomic::Ordering::Relaxed);
    let swaps = swapper.join().expect("the swapper");
    assert!(swaps >= 4, "only {swaps} swaps");
    for out in [kept, closing] {
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{text}");
        assert!(!text.contains("Socket errors"), "{text}");
        assert!(!text.contains("Non-2xx"), "{text}");
        let requests: u64 = text
            .lines()
            .find_map(|l| l.trim().split_once(" requests in "))
            .and_then(|(n, _)| n.trim().parse().ok())
            .unwrap_or(0);
        assert!(requests > 50, "too few requests to mean anything: {text}");
    }
    let log = setup.latch.log();
    assert!(
        log.matches("TLS certificate reloaded").count() >= 2,
        "the certificates were not reloaded during the run; log:\n{log}"
    );
}

#[tokio::test]
async fn a_client_that_never_finishes_the_handshake_is_closed_at_the_head_deadline() {
    let (ca, dir) = new_ca();
    let issued = ca.issue(&["app.test"]);
    let upstream = Upstream::start().await;
    let lines = format!(
        "cert_file = \"{}\"\nkey_file = \"{}\"\n",
        issued.cert.display(),
        issued.key.display()
    );
    let latch = LatchBuilder::new(upstream.port())
        .named_port("https")
        .section(&https_section(&lines))
        // Long enough that the three handshakes below finish on a loaded machine.
        .env("LATCH_PROXY_HEADER_TIMEOUT_SECONDS", "5")
        .env("LATCH_PROXY_MAX_CONNECTIONS_PER_CLIENT", "3")
        .start();
    let https = latch.named_port("https");
    wait_https(&latch, https);
    use tokio::io::AsyncReadExt;
    let config = client_config(&ca.cert(), &[]);

    // The client's limit counts TLS connections: three are admitted (their handshakes
    // finished), a fourth is closed before its handshake.
    let mut admitted = Vec::new();
    for _ in 0..3 {
        admitted.push(
            connect(https, "app.test", &config)
                .await
                .expect("under the limit"),
        );
    }
    assert!(
        connect(https, "app.test", &config).await.is_err(),
        "a fourth connection got a handshake"
    );
    // Idle after the handshake, they are closed by the first head's deadline.
    let mut buf = [0u8; 16];
    for conn in &mut admitted {
        let read = tokio::time::timeout(PATIENCE, conn.read(&mut buf))
            .await
            .expect("an idle TLS connection is closed");
        assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
    }

    // A client that opens TCP and says nothing, and one that sends the start of a record and
    // stops, are closed by the same deadline, counted from the accept.
    let opened = std::time::Instant::now();
    let mut silent = tokio::net::TcpStream::connect(("127.0.0.1", https))
        .await
        .unwrap();
    let mut half = tokio::net::TcpStream::connect(("127.0.0.1", https))
        .await
        .unwrap();
    tokio::io::AsyncWriteExt::write_all(&mut half, &[0x16, 0x03, 0x01])
        .await
        .unwrap();
    for stream in [&mut silent, &mut half] {
        let read = tokio::time::timeout(PATIENCE, stream.read(&mut buf))
            .await
            .expect("closed well before the test's patience");
        assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
    }
    let held = opened.elapsed();
    assert!(
        held >= Duration::from_secs(4) && held < Duration::from_secs(19),
        "held for {held:?}"
    );
    assert!(connect(https, "app.test", &config).await.is_ok());
    drop(dir);
}

#[tokio::test]
async fn chromium_shows_the_banner_on_a_page_served_over_https() {
    let (setup, _) = start_default(tests::fixtures::PAGE, "").await;
    let driver = tests::browser::Driver::start().await;
    let alice = driver
        .browser_over_https(
            "alice",
            "app.test",
            setup.https,
            &token("alice", "Alice", &[]),
        )
        .await;
    alice.goto(&setup.url("/html/cl")).await;
    // "You are editing" comes from the lock message over the wss:// banner socket.
    alice
        .wait_banner("editing", "You are editing", PATIENCE)
        .await;
    alice.quit().await;
}

#[test]
fn latch_check_reports_every_certificate_problem() {
    let (ca, dir) = new_ca();
    let good = ca.issue(&["app.test"]);
    let other = ca.issue(&["other.test"]);
    let garbage = dir.path().join("garbage.pem");
    std::fs::write(&garbage, "-----BEGIN CERTIFICATE-----\nnot base64\n").unwrap();
    let config = dir.path().join("latch.toml");
    std::fs::write(dir.path().join("rules.toml"), "").unwrap();
    std::fs::write(
        &config,
        format!(
            "[proxy]\nupstream = \"http://127.0.0.1:1\"\n[auth]\nsecret = \"{}\"\n\
             [rules]\nstore = \"rules.toml\"\n\
             [tls]\nlisten = \"127.0.0.1:8443\"\ncert_file = \"{}\"\nkey_file = \"{}\"\n\
             certificates = [\"garbage.pem\"]\n",
            tests::SECRET,
            good.cert.display(),
            other.key.display(),
        ),
    )
    .unwrap();
    let (code, out, err) =
        tests::latch::run_latch(&["check", "--config", config.to_str().unwrap()], &[]);
    assert_eq!(code, 2, "{out}{err}");
    assert!(
        err.contains("tls.cert_file")
            && err.contains("the private key does not belong to the certificate"),
        "{err}"
    );
    assert!(
        err.contains("tls.certificates") && err.contains("garbage.pem"),
        "{err}"
    );

    // The same files, fixed, pass.
    std::fs::write(
        &config,
        format!(
            "[proxy]\nupstream = \"http://127.0.0.1:1\"\n[auth]\nsecret = \"{}\"\n\
             [rules]\nstore = \"rules.toml\"\n\
             [tls]\nlisten = \"127.0.0.1:8443\"\ncert_file = \"{}\"\nkey_file = \"{}\"\n",
            tests::SECRET,
            good.cert.display(),
            good.key.display(),
        ),
    )
    .unwrap();
    let (code, out, err) =
        tests::latch::run_latch(&["check", "--config", config.to_str().unwrap()], &[]);
    assert_eq!(code, 0, "{out}{err}");
}
