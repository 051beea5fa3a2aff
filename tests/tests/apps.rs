//! Several apps on one proxy (`[[app]]`), end to end: each host reaches its own upstream and
//! nothing else, lock keys are namespaced by app, rules scoped to an app stay there, and a
//! request for no app (or for two at once) reaches no upstream.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Request, State};
use axum::Router;
use reqwest::StatusCode;
use serde_json::{json, Value};
use tests::{client, eventually, free_port, token, wait_for_port, Latch, LatchBuilder};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// An upstream that answers every request with its own name and notes every path it saw, so
/// a test can tell which app a request reached, and that one reached none.
struct Named {
    addr: SocketAddr,
    seen: Arc<Mutex<Vec<String>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Named {
    async fn start(name: &'static str) -> Named {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind upstream");
        let addr = listener.local_addr().expect("upstream addr");
        let seen = Arc::new(Mutex::new(Vec::new()));
        let app = Router::new()
            .fallback(
                |State((name, seen)): State<(&'static str, Arc<Mutex<Vec<String>>>)>,
                 req: Request| async move {
                    let path = req.uri().path().to_owned();
                    seen.lock().unwrap().push(path.clone());
                    let header = |n: &str| {
                        req.headers()
                            .get(n)
                            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
                    };
                    axum::Json(json!({
                        "app": name,
                        "path": path,
                        "host": header("host"),
                        "resource": header("x-latch-resource"),
                    }))
                },
            )
            .with_state((name, seen.clone()));
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Named { addr, seen, task }
    }

    fn seen(&self) -> Vec<String> {
        self.seen.lock().unwrap().clone()
    }
}

impl Drop for Named {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// `/docs/{id}` is one lock per document in every app; `/crm-only/...` is protected in crm
/// alone.
const RULES: &str = r#"
[[rule]]
id = "doc"
pattern = "/docs/(?P<id>[0-9]+)"
resource = "doc:{id}"
inject = false

[[rule]]
id = "crm-only"
pattern = "/scoped/(?P<id>[0-9]+)"
resource = "scoped:{id}"
app = "crm"
inject = false
"#;

struct Env {
    wiki: Named,
    crm: Named,
    latch: Latch,
    cp_port: u16,
    http: reqwest::Client,
}

async fn start_with(unknown_host: Option<&str>) -> Env {
    let wiki = Named::start("wiki").await;
    let crm = Named::start("crm").await;
    let cp_port = free_port();
    let apps = format!(
        "[[app]]\nname = \"wiki\"\nhosts = [\"wiki.test\", \"*.wiki.test\"]\nupstream = \"http://{}\"\n\n\
         [[app]]\nname = \"crm\"\nhosts = [\"crm.test\"]\nupstream = \"http://{}\"\n",
        wiki.addr, crm.addr
    );
    let mut builder = LatchBuilder::new(0)
        .command("run")
        .rules(RULES)
        .apps(&apps)
        .section(&format!(
            "[control_plane]\nlisten = \"127.0.0.1:{cp_port}\"\nadmin_roles = [\"admin\"]"
        ));
    if let Some(answer) = unknown_host {
        builder = builder.env("LATCH_PROXY_UNKNOWN_HOST", answer);
    }
    let latch = tokio::task::spawn_blocking(move || {
        let latch = builder.start();
        wait_for_port(cp_port, Duration::from_secs(30), || latch.log());
        latch
    })
    .await
    .expect("starting latch");
    Env {
        wiki,
        crm,
        latch,
        cp_port,
        http: client(),
    }
}

async fn start() -> Env {
    start_with(None).await
}

fn alice() -> String {
    token("alice", "Alice", &[])
}

fn bob() -> String {
    token("bob", "Bob", &[])
}

fn admin() -> String {
    token("root", "Root", &["admin"])
}

impl Env {
    /// `GET path` with `Host: host`, as `user` if given: the status and the JSON body.
    async fn get(&self, host: &str, path: &str, user: Option<&str>) -> (StatusCode, Value) {
        let mut req = self
            .http
            .get(self.latch.url(path))
            .header(reqwest::header::HOST, host);
        if let Some(t) = user {
            req = req.bearer_auth(t);
        }
        let resp = req.send().await.expect("request through latch");
        let status = resp.status();
        let text = resp.text().await.unwrap_or_default();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    fn cp(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}/api/v1{path}", self.cp_port)
    }

    /// Sends `raw` as one request on a new connection and returns what came back.
    async fn raw(&self, raw: &str) -> String {
        let mut tcp = tokio::net::TcpStream::connect(("127.0.0.1", self.latch.port))
            .await
            .expect("connect");
        tcp.write_all(raw.as_bytes()).await.expect("write");
        let mut out = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(20), tcp.read_to_end(&mut out)).await;
        String::from_utf8_lossy(&out).into_owned()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_host_reaches_its_own_upstream_with_port_case_and_wildcards() {
    let env = start().await;
    let port = env.latch.port;
    #[rustfmt::skip]
    let cases: &[(String, &str)] = &[
        ("wiki.test".into(), "wiki"),
        (format!("WIKI.Test:{port}"), "wiki"),
        ("wiki.test.".into(), "wiki"),
        ("team.wiki.test".into(), "wiki"),
        ("crm.test".into(), "crm"),
        (format!("Crm.TEST:{port}"), "crm"),
    ];
    for (host, app) in cases {
        let (status, body) = env.get(host, "/page", None).await;
        assert_eq!(status, 200, "{host}: {body}");
        assert_eq!(body["app"], *app, "{host} reached {body}");
        assert_eq!(body["path"], "/page");
    }
    assert_eq!(env.wiki.seen().len(), 4);
    assert_eq!(env.crm.seen().len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_key_in_two_apps_is_two_locks() {
    let env = start().await;
    let (status, body) = env.get("wiki.test", "/docs/1", Some(&alice())).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["resource"], "wiki/doc:1");
    // Bob is refused doc:1 in wiki, which Alice holds...
    let (status, _) = env.get("wiki.test", "/docs/1", Some(&bob())).await;
    assert_eq!(status, 423);
    // ...but doc:1 of crm is another lock, free for him.
    let (status, body) = env.get("crm.test", "/docs/1", Some(&bob())).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["app"], "crm");
    assert_eq!(body["resource"], "crm/doc:1");
    let (status, _) = env.get("crm.test", "/docs/1", Some(&alice())).await;
    assert_eq!(status, 423);

    // The control plane lists both, each with its app.
    let locks: Value = env
        .http
        .get(env.cp("/locks"))
        .bearer_auth(admin())
        .send()
        .await
        .expect("list locks")
        .json()
        .await
        .expect("lock list");
    let mut seen: Vec<(String, String, String)> = locks["locks"]
        .as_array()
        .expect("locks")
        .iter()
        .map(|l| {
            (
                l["resource"].as_str().unwrap_or_default().to_owned(),
                l["app"].as_str().unwrap_or_default().to_owned(),
                l["holder"]["id"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    seen.sort();
    assert_eq!(
        seen,
        [
            ("crm/doc:1".into(), "crm".into(), "bob".into()),
            ("wiki/doc:1".into(), "wiki".into(), "alice".into()),
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rule_scoped_to_one_app_does_not_apply_to_the_other() {
    let env = start().await;
    // In crm the rule holds: Alice claims, Bob is refused.
    let (status, body) = env.get("crm.test", "/scoped/7", Some(&alice())).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["resource"], "crm/scoped:7");
    let (status, _) = env.get("crm.test", "/scoped/7", Some(&bob())).await;
    assert_eq!(status, 423);
    // In wiki no rule matches: both pass, without a token and without a lock.
    for user in [Some(alice()), Some(bob()), None] {
        let (status, body) = env.get("wiki.test", "/scoped/7", user.as_deref()).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["app"], "wiki");
        assert_eq!(body["resource"], Value::Null);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_host_gets_421_and_reaches_no_upstream() {
    let env = start().await;
    for host in [
        "other.test",
        "wiki.test.evil",
        "wiki.test.crm.test",
        "deep.team.wiki.test",
    ] {
        let (status, body) = env.get(host, "/docs/1", Some(&alice())).await;
        assert_eq!(status, 421, "{host}: {body}");
        let (status, _) = env
            .get(host, "/__latch/status?path=/docs/1", Some(&alice()))
            .await;
        assert_eq!(status, 421, "{host}: the proxy's own endpoints too");
    }
    // HTTP/1.0 without Host names no app either.
    let answer = env.raw("GET /page HTTP/1.0\r\n\r\n").await;
    assert!(
        answer.starts_with("HTTP/1.1 421") || answer.starts_with("HTTP/1.0 421"),
        "{answer}"
    );
    assert_eq!(env.wiki.seen(), Vec::<String>::new());
    assert_eq!(env.crm.seen(), Vec::<String>::new());
    assert!(
        env.latch
            .counter("latch_requests_total{outcome=\"unknown_host\"}")
            .await
            >= 9
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_host_gets_404_when_configured() {
    let env = start_with(Some("not_found")).await;
    let (status, _) = env.get("other.test", "/page", None).await;
    assert_eq!(status, 404);
    assert_eq!(env.wiki.seen(), Vec::<String>::new());
    assert_eq!(env.crm.seen(), Vec::<String>::new());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_absolute_uri_for_one_app_never_reaches_the_other_with_its_path() {
    let env = start().await;
    // The request line names wiki, the Host header crm: refused, never sent to crm.
    let answer = env
        .raw("GET http://wiki.test/secret HTTP/1.1\r\nHost: crm.test\r\nConnection: close\r\n\r\n")
        .await;
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    // Two Host headers name two apps: refused too.
    let answer = env
        .raw("GET /secret HTTP/1.1\r\nHost: wiki.test\r\nHost: crm.test\r\nConnection: close\r\n\r\n")
        .await;
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    assert_eq!(env.crm.seen(), Vec::<String>::new());
    assert_eq!(env.wiki.seen(), Vec::<String>::new());

    // Without Host, the absolute URI's authority routes, to its own app.
    let answer = env
        .raw("GET http://crm.test/mine HTTP/1.1\r\nConnection: close\r\n\r\n")
        .await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.contains(r#""app":"crm""#), "{answer}");
    assert_eq!(env.crm.seen(), ["/mine"]);
    assert_eq!(env.wiki.seen(), Vec::<String>::new());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_control_plane_tests_a_path_on_a_host_and_knows_the_apps() {
    let env = start().await;
    let post = |body: Value| {
        env.http
            .post(env.cp("/match"))
            .bearer_auth(admin())
            .json(&body)
            .send()
    };
    let res: Value = post(json!({"path": "/scoped/3", "host": "CRM.test:8080"}))
        .await
        .expect("match")
        .json()
        .await
        .expect("json");
    assert_eq!(res["app"], "crm");
    assert_eq!(res["matched"], true);
    assert_eq!(res["resource"], "crm/scoped:3");
    let res: Value = post(json!({"path": "/scoped/3", "host": "a.wiki.test"}))
        .await
        .expect("match")
        .json()
        .await
        .expect("json");
    assert_eq!(res["app"], "wiki");
    assert_eq!(res["matched"], false);
    let res: Value = post(json!({"path": "http://wiki.test/docs/4"}))
        .await
        .expect("match")
        .json()
        .await
        .expect("json");
    assert_eq!(res["resource"], "wiki/doc:4");
    for body in [
        json!({"path": "/docs/1"}),
        json!({"path": "/docs/1", "host": "nobody.test"}),
        json!({"path": "http://wiki.test/docs/1", "host": "crm.test"}),
    ] {
        let res = post(body.clone()).await.expect("match");
        assert_eq!(res.status(), 422, "{body}");
        let problem: Value = res.json().await.expect("problem");
        assert_eq!(problem["errors"][0]["field"], "host", "{problem}");
    }

    let apps: Value = env
        .http
        .get(env.cp("/apps"))
        .bearer_auth(admin())
        .send()
        .await
        .expect("apps")
        .json()
        .await
        .expect("json");
    assert_eq!(
        apps,
        json!({"apps": [
            {"name": "wiki", "hosts": ["wiki.test", "*.wiki.test"]},
            {"name": "crm", "hosts": ["crm.test"]},
        ]})
    );

    // A rule naming an app the proxy does not have is refused, with the field named; one
    // naming a configured app is stored and applies there.
    let create = |rule: Value| {
        env.http
            .post(env.cp("/rules"))
            .bearer_auth(admin())
            .json(&rule)
            .send()
    };
    let res = create(json!({"id": "ghost", "pattern": "/g", "app": "ghost"}))
        .await
        .expect("create");
    assert_eq!(res.status(), 422);
    let problem: Value = res.json().await.expect("problem");
    assert_eq!(problem["errors"][0]["field"], "app", "{problem}");
    let res = create(json!({"id": "wiki-page", "pattern": "/page/(?P<p>[a-z]+)", "resource": "page:{p}", "app": "wiki", "inject": false}))
        .await
        .expect("create");
    assert_eq!(res.status(), 201);
    let got = eventually(Duration::from_secs(20), || async {
        let (status, body) = env.get("wiki.test", "/page/home", Some(&alice())).await;
        (status == 200 && body["resource"] == "wiki/page:home").then_some(())
    })
    .await;
    assert!(
        got.is_some(),
        "the new rule never applied: {}",
        env.latch.log()
    );
    let (_, body) = env.get("crm.test", "/page/home", Some(&alice())).await;
    assert_eq!(
        body["resource"],
        Value::Null,
        "the wiki rule applied in crm"
    );
}

/// Opens a banner socket as `user` from a page on `host`, watches `path` and returns the first
/// `lock` message, or the handshake's refusal status.
async fn watch(env: &Env, host: &str, user: &str, path: &str) -> Result<Value, u16> {
    use futures::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    use tokio_tungstenite::tungstenite::{self, Message};
    let mut req = env
        .latch
        .ws_url("/__latch/ws")
        .into_client_request()
        .expect("a WebSocket request");
    let headers = req.headers_mut();
    headers.insert("host", host.parse().unwrap());
    headers.insert("origin", format!("http://{host}").parse().unwrap());
    headers.insert("cookie", format!("latch_token={user}").parse().unwrap());
    let connected = tokio::time::timeout(
        Duration::from_secs(20),
        tokio_tungstenite::connect_async(req),
    )
    .await
    .expect("the handshake timed out");
    let mut ws = match connected {
        Ok((ws, _)) => ws,
        Err(tungstenite::Error::Http(resp)) => return Err(resp.status().as_u16()),
        Err(e) => panic!("unexpected handshake failure: {e}"),
    };
    let watch = json!({ "type": "watch", "path": path }).to_string();
    ws.send(Message::Text(watch.into())).await.expect("send");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let next = tokio::time::timeout_at(deadline, ws.next())
            .await
            .expect("no lock message in time")
            .expect("the socket closed")
            .expect("a message");
        if let Message::Text(text) = next {
            let value: Value = serde_json::from_str(&text).expect("json");
            if value["type"] == "lock" {
                return Ok(value);
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_banner_socket_watches_the_locks_of_its_own_app() {
    let env = start().await;
    let (status, _) = env.get("wiki.test", "/docs/1", Some(&alice())).await;
    assert_eq!(status, 200);
    // From a wiki page, /docs/1 is the lock Alice holds.
    let lock = watch(&env, "wiki.test", &bob(), "/docs/1")
        .await
        .expect("opens");
    assert_eq!(lock["resource"], "wiki/doc:1");
    assert_eq!(lock["state"], "held");
    assert_eq!(lock["holder"]["id"], "alice");
    // From a crm page, the same path is crm's doc:1, which nobody holds.
    let lock = watch(&env, "crm.test", &bob(), "/docs/1")
        .await
        .expect("opens");
    assert_eq!(lock["resource"], "crm/doc:1");
    assert_eq!(lock["state"], "free");
    // A page of no app opens no socket.
    assert_eq!(watch(&env, "other.test", &bob(), "/docs/1").await, Err(421));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn release_and_takeover_from_one_app_do_not_reach_another_apps_locks() {
    let env = start().await;
    let (status, _) = env.get("wiki.test", "/docs/1", Some(&alice())).await;
    assert_eq!(status, 200);
    let post = |host: &'static str, action: &str, who: String| {
        env.http
            .post(env.latch.url(&format!("/__latch/{action}")))
            .header(reqwest::header::HOST, host)
            .header(reqwest::header::ORIGIN, format!("http://{host}"))
            .bearer_auth(who)
            .body(r#"{"resource": "wiki/doc:1"}"#)
            .send()
    };
    // From crm's pages, wiki's lock is out of reach, even for an admin or its holder.
    let res = post("crm.test", "takeover", admin())
        .await
        .expect("takeover");
    assert_eq!(res.status(), 403);
    let res = post("crm.test", "release", alice()).await.expect("release");
    assert_eq!(res.status(), 403);
    let (status, _) = env.get("wiki.test", "/docs/1", Some(&bob())).await;
    assert_eq!(status, 423, "the lock is still Alice's");
    // From wiki's own pages the holder releases it.
    let res = post("wiki.test", "release", alice())
        .await
        .expect("release");
    assert_eq!(res.status(), 204);
    let (status, _) = env.get("wiki.test", "/docs/1", Some(&bob())).await;
    assert_eq!(status, 200);
}

/// Over TLS, a connection opened for one app's name (its SNI) carries requests for that app
/// only: a request on it whose Host names the other app gets 421, over HTTP/1.1 and HTTP/2
/// alike, and reaches no upstream, even with one certificate for both names.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_tls_a_connection_opened_for_one_app_carries_no_request_for_another() {
    let wiki = Named::start("wiki").await;
    let crm = Named::start("crm").await;
    let dir = tempfile::tempdir().expect("a temp dir");
    let ca = testkit::certs::TestCa::new(dir.path(), "apps");
    let both = ca.issue(&["wiki.test", "crm.test"]);
    let https = free_port();
    let apps = format!(
        "[[app]]\nname = \"wiki\"\nhosts = [\"wiki.test\"]\nupstream = \"http://{}\"\n\n\
         [[app]]\nname = \"crm\"\nhosts = [\"crm.test\"]\nupstream = \"http://{}\"\n",
        wiki.addr, crm.addr
    );
    let tls = tests::tls::section(
        https,
        &format!(
            "cert_file = \"{}\"\nkey_file = \"{}\"",
            both.cert.display(),
            both.key.display()
        ),
    );
    let latch = tokio::task::spawn_blocking(move || {
        let latch = LatchBuilder::new(0)
            .rules(RULES)
            .apps(&apps)
            .section(&tls)
            .start();
        tests::tls::wait_https(&latch, https);
        latch
    })
    .await
    .expect("starting latch");

    let curl = |name: &str, host: Option<&str>, http2: bool| {
        let mut cmd = std::process::Command::new("curl");
        cmd.args(["-sS", "--max-time", "20", "-o", "/dev/null"])
            .args(["-w", "%{http_version} %{http_code}"])
            .arg(if http2 { "--http2" } else { "--http1.1" })
            .arg("--cacert")
            .arg(ca.cert())
            .arg("--resolve")
            .arg(format!("{name}:{https}:127.0.0.1"));
        if let Some(host) = host {
            cmd.args(["-H", &format!("Host: {host}")]);
        }
        let out = cmd
            .arg(format!("https://{name}:{https}/open/1"))
            .output()
            .expect("curl runs");
        assert!(
            out.status.success(),
            "curl: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    assert_eq!(curl("wiki.test", None, false), "1.1 200");
    assert_eq!(curl("crm.test", None, true), "2 200");
    assert_eq!(wiki.seen(), ["/open/1"]);
    assert_eq!(crm.seen(), ["/open/1"]);
    // The SNI names wiki, the Host crm: refused, and neither app sees it.
    assert_eq!(curl("wiki.test", Some("crm.test"), false), "1.1 421");
    assert_eq!(curl("wiki.test", Some("crm.test:443"), true), "2 421");
    assert_eq!(curl("crm.test", Some("wiki.test"), false), "1.1 421");
    assert_eq!(wiki.seen().len(), 1, "{:?}\n{}", wiki.seen(), latch.log());
    assert_eq!(crm.seen().len(), 1, "{:?}", crm.seen());
}
