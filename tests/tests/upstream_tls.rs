//! HTTPS upstreams against a real TLS server: nginx with certificates from an openssl-made
//! CA, echoing in response headers the SNI it was sent (`$ssl_server_name`), the `Host` it
//! got and the client certificate's subject. Latch verifies the server with a CA file,
//! presents a client certificate when configured, and answers its own 502 page (with the
//! reason in its log) when the server's certificate is not for the name it expects.

use std::time::Duration;

use testkit::certs::TestCa;
use testkit::nginx::Nginx;
use tests::latch::{clean_env, latch_bin, run_latch};
use tests::{client, eventually, free_port, LatchBuilder, SECRET};

/// One nginx TLS server on `port` with `cert` and `key`, answering 200 `app` with the echo
/// headers; `extra` goes into its `server` block.
fn tls_server(port: u16, cert: &std::path::Path, key: &std::path::Path, extra: &str) -> Nginx {
    Nginx::start(
        &format!(
            "server {{\n listen 127.0.0.1:{port} ssl;\n ssl_certificate {};\n ssl_certificate_key {};\n {extra}\n\
             location / {{\n  add_header X-Sni \"$ssl_server_name\" always;\n  add_header X-Host \"$http_host\" always;\n\
             \x20 add_header X-Client \"$ssl_client_s_dn\" always;\n  return 200 \"app\\n\";\n }}\n}}",
            cert.display(),
            key.display()
        ),
        &[port],
    )
}

fn env(upstream: String, pairs: &[(&str, String)]) -> Vec<(String, String)> {
    let mut all = vec![("LATCH_PROXY_UPSTREAM".to_owned(), upstream)];
    all.extend(pairs.iter().map(|(k, v)| ((*k).to_owned(), v.clone())));
    all
}

fn latch_with(vars: Vec<(String, String)>) -> tests::Latch {
    // The file names a plain upstream; the environment layers the HTTPS one over it.
    let mut builder = LatchBuilder::new(free_port());
    for (k, v) in &vars {
        builder = builder.env(k, v);
    }
    builder.start()
}

fn header(resp: &reqwest::Response, name: &str) -> String {
    resp.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned()
}

#[tokio::test]
async fn an_https_upstream_is_verified_with_the_ca_file_and_sent_the_sni() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new(dir.path(), "up");
    let cert = ca.issue(&["app.internal"]);
    let port = free_port();
    let _nginx = tls_server(port, &cert.cert, &cert.key, "");
    let latch = latch_with(env(
        format!("https://127.0.0.1:{port}"),
        &[
            (
                "LATCH_PROXY_UPSTREAM_CA_FILE",
                ca.cert().display().to_string(),
            ),
            ("LATCH_PROXY_UPSTREAM_SNI", "app.internal".into()),
        ],
    ));
    let resp = client().get(latch.url("/page")).send().await.unwrap();
    assert_eq!(resp.status(), 200, "{}", latch.log());
    assert_eq!(header(&resp, "x-sni"), "app.internal");
    assert_eq!(resp.text().await.unwrap(), "app\n");
}

#[tokio::test]
async fn an_upstream_named_by_ip_is_verified_against_the_certificates_ip_entry() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new(dir.path(), "up");
    let cert = ca.issue(&["127.0.0.1"]);
    let port = free_port();
    let _nginx = tls_server(port, &cert.cert, &cert.key, "");
    let latch = latch_with(env(
        format!("https://127.0.0.1:{port}"),
        &[(
            "LATCH_PROXY_UPSTREAM_CA_FILE",
            ca.cert().display().to_string(),
        )],
    ));
    let resp = client().get(latch.url("/")).send().await.unwrap();
    assert_eq!(resp.status(), 200, "{}", latch.log());
    // No SNI is sent for an IP address (RFC 6066 §3).
    assert_eq!(header(&resp, "x-sni"), "");
}

#[tokio::test]
async fn a_server_that_requires_a_client_certificate_gets_the_configured_one() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new(dir.path(), "up");
    let server = ca.issue(&["app.internal"]);
    let latch_cert = ca.issue(&["latch-client"]);
    let port = free_port();
    let verify = format!(
        "ssl_client_certificate {};\n ssl_verify_client on;",
        ca.cert().display()
    );
    let _nginx = tls_server(port, &server.cert, &server.key, &verify);
    let base = [
        (
            "LATCH_PROXY_UPSTREAM_CA_FILE",
            ca.cert().display().to_string(),
        ),
        ("LATCH_PROXY_UPSTREAM_SNI", "app.internal".to_owned()),
    ];

    let without = latch_with(env(format!("https://127.0.0.1:{port}"), &base));
    let resp = client().get(without.url("/")).send().await.unwrap();
    assert_eq!(
        resp.status(),
        400,
        "nginx refuses a request without a client certificate"
    );
    drop(without);

    let mut with = base.to_vec();
    with.push((
        "LATCH_PROXY_UPSTREAM_CLIENT_CERT_FILE",
        latch_cert.cert.display().to_string(),
    ));
    with.push((
        "LATCH_PROXY_UPSTREAM_CLIENT_KEY_FILE",
        latch_cert.key.display().to_string(),
    ));
    let latch = latch_with(env(format!("https://127.0.0.1:{port}"), &with));
    let resp = client().get(latch.url("/")).send().await.unwrap();
    assert_eq!(resp.status(), 200, "{}", latch.log());
    assert!(
        header(&resp, "x-client").contains("CN=latch-client"),
        "{:?}",
        header(&resp, "x-client")
    );
}

#[tokio::test]
async fn the_host_header_is_the_clients_or_the_upstreams_as_configured() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new(dir.path(), "up");
    let cert = ca.issue(&["app.internal"]);
    let port = free_port();
    let _nginx = tls_server(port, &cert.cert, &cert.key, "");
    let tls = [
        (
            "LATCH_PROXY_UPSTREAM_CA_FILE",
            ca.cert().display().to_string(),
        ),
        ("LATCH_PROXY_UPSTREAM_SNI", "app.internal".to_owned()),
    ];
    let upstream = format!("https://127.0.0.1:{port}");

    let preserve = latch_with(env(upstream.clone(), &tls));
    let resp = client()
        .get(preserve.url("/"))
        .header("host", "public.example")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200, "{}", preserve.log());
    assert_eq!(header(&resp, "x-host"), "public.example");
    drop(preserve);

    let mut own = tls.to_vec();
    own.push(("LATCH_PROXY_UPSTREAM_HOST_HEADER", "upstream".to_owned()));
    let rewrite = latch_with(env(upstream, &own));
    let resp = client()
        .get(rewrite.url("/"))
        .header("host", "public.example")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200, "{}", rewrite.log());
    assert_eq!(header(&resp, "x-host"), format!("127.0.0.1:{port}"));
}

#[tokio::test]
async fn a_certificate_for_another_name_gets_the_502_page_and_a_logged_reason() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new(dir.path(), "up");
    let cert = ca.issue(&["other.internal"]);
    let port = free_port();
    let _nginx = tls_server(port, &cert.cert, &cert.key, "");
    let latch = latch_with(env(
        format!("https://127.0.0.1:{port}"),
        &[
            (
                "LATCH_PROXY_UPSTREAM_CA_FILE",
                ca.cert().display().to_string(),
            ),
            ("LATCH_PROXY_UPSTREAM_SNI", "app.internal".into()),
        ],
    ));
    let resp = client().get(latch.url("/")).send().await.unwrap();
    assert_eq!(resp.status(), 502);
    assert_eq!(header(&resp, "content-type"), "application/problem+json");
    let doc: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(doc["title"], "Bad gateway");

    let page = client()
        .get(latch.url("/"))
        .header("accept", "text/html")
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 502);
    assert!(header(&page, "content-type").starts_with("text/html"));
    assert!(page.text().await.unwrap().contains("Bad gateway"));

    let logged = eventually(Duration::from_secs(10), || async {
        let log = latch.log();
        (log.contains("the app could not be reached")
            && log.contains("certificate not valid for name \"app.internal\""))
        .then_some(())
    })
    .await;
    assert!(logged.is_some(), "no reason in the log:\n{}", latch.log());
}

#[test]
fn an_unreadable_ca_file_stops_the_start_and_is_a_check_problem() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("latch.toml");
    std::fs::write(
        &config,
        format!(
            "[proxy]\nlisten = \"127.0.0.1:{}\"\nupstream = \"https://127.0.0.1:{}\"\n\
             upstream_ca_file = \"missing-ca.pem\"\n\n[auth]\nsecret = \"{SECRET}\"\n\n\
             [admin]\nlisten = \"127.0.0.1:{}\"\n",
            free_port(),
            free_port(),
            free_port()
        ),
    )
    .unwrap();
    std::fs::write(dir.path().join("rules.toml"), "").unwrap();
    let path = config.display().to_string();

    let (code, out, err) = run_latch(&["check", "--config", &path], &[]);
    assert_eq!(code, 2, "{out}\n{err}");
    let said = format!("{out}{err}");
    assert!(
        said.contains("proxy.upstream_ca_file") && said.contains("missing-ca.pem"),
        "{said}"
    );

    let mut proxy = std::process::Command::new(latch_bin());
    clean_env(&mut proxy);
    let started = proxy
        .args(["proxy", "--config", &path])
        .output()
        .expect("run latch proxy");
    assert_eq!(started.status.code(), Some(2));
    let err = String::from_utf8_lossy(&started.stderr);
    assert!(
        err.contains("proxy.upstream_ca_file") && err.contains("cannot read"),
        "{err}"
    );
}
