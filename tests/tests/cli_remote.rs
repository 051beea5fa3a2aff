//! `latch locks` and `latch rules` from a terminal: the real binary against a real `latch run`
//! (proxy and control plane), with an admin token from the environment or a file. Releasing all
//! of a user's locks leaves one that changed hands after the list was read.

use std::sync::Arc;
use std::time::Duration;

use reqwest::header::COOKIE;
use serde_json::Value;
use tests::latch::run_latch;
use tests::upstream::Upstream;
use tests::{client, free_port, token, wait_for_port, Latch, LatchBuilder};

struct Scene {
    latch: Latch,
    cp_url: String,
    _upstream: Upstream,
    dir: tempfile::TempDir,
}

impl Scene {
    async fn start() -> Scene {
        let upstream = Upstream::start().await;
        let port = upstream.port();
        let cp_port = free_port();
        let latch = tokio::task::spawn_blocking(move || {
            let latch = LatchBuilder::new(port)
                .command("run")
                .section(&format!(
                    "[control_plane]\nlisten = \"127.0.0.1:{cp_port}\"\nadmin_roles = [\"admin\"]"
                ))
                .start();
            wait_for_port(cp_port, Duration::from_secs(20), || latch.log());
            latch
        })
        .await
        .expect("starting latch");
        Scene {
            latch,
            cp_url: format!("http://127.0.0.1:{cp_port}"),
            _upstream: upstream,
            dir: tempfile::tempdir().expect("a temp dir"),
        }
    }

    /// `latch <args>` as an admin whose token is in LATCH_ADMIN_TOKEN: (code, stdout, stderr).
    async fn admin(&self, args: &[&str]) -> (i32, String, String) {
        let admin = token("root", "Root", &["admin"]);
        self.cli(args, vec![("LATCH_ADMIN_TOKEN".to_owned(), admin)])
            .await
    }

    async fn cli(&self, args: &[&str], env: Vec<(String, String)>) -> (i32, String, String) {
        self.cli_at(&self.cp_url, args, env).await
    }

    /// [`Scene::cli`] with the control plane at `url`.
    async fn cli_at(
        &self,
        url: &str,
        args: &[&str],
        env: Vec<(String, String)>,
    ) -> (i32, String, String) {
        let mut args: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
        args.extend(["--url".to_owned(), url.to_owned()]);
        tokio::task::spawn_blocking(move || {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            let env: Vec<(&str, &str)> =
                env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
            run_latch(&args, &env)
        })
        .await
        .expect("running latch")
    }

    /// Writes a rule file in the scene's directory; returns its path.
    fn rule_file(&self, name: &str, text: &str) -> String {
        let path = self.dir.path().join(name);
        std::fs::write(&path, text).expect("write the rule file");
        path.display().to_string()
    }

    /// The rule ids the control plane has, with their patterns.
    async fn rules(&self) -> Vec<(String, String)> {
        let (code, out, err) = self.admin(&["rules", "list", "--json"]).await;
        assert_eq!(code, 0, "{err}");
        let list: Value = serde_json::from_str(&out).expect("JSON");
        list["rules"]
            .as_array()
            .expect("a list")
            .iter()
            .map(|r| {
                (
                    r["id"].as_str().unwrap().to_owned(),
                    r["pattern"].as_str().unwrap().to_owned(),
                )
            })
            .collect()
    }

    /// `user` opens `path` through the proxy; returns the status.
    async fn open(&self, user: &str, path: &str) -> u16 {
        client()
            .get(self.latch.url(path))
            .header(COOKIE, format!("latch_token={}", token(user, user, &[])))
            .send()
            .await
            .expect("the proxy answers")
            .status()
            .as_u16()
    }
}

const TWO_RULES: &str = r#"
[[rule]]
id = "docs"
pattern = '/echo/docs/(?P<id>\d+)/edit'
resource = "doc:{id}"

[[rule]]
id = "wiki"
pattern = '/echo/wiki/(?P<page>[a-z]+)/edit'
resource = "wiki:{page}"
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rules_apply_creates_replaces_and_prunes_and_changes_nothing_twice() {
    let scene = Scene::start().await;
    let file = scene.rule_file("rules.toml", TWO_RULES);

    let (code, out, err) = scene.admin(&["rules", "apply", &file]).await;
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("created docs") && out.contains("created wiki"),
        "{out}"
    );
    assert!(
        out.contains("2 created, 0 replaced, 0 unchanged, 0 deleted"),
        "{out}"
    );
    let ids: Vec<String> = scene.rules().await.into_iter().map(|(id, _)| id).collect();
    assert_eq!(ids.len(), 2);
    assert!(ids.contains(&"docs".to_owned()) && ids.contains(&"wiki".to_owned()));

    // The rules are enforced by the proxy.
    tests::eventually(Duration::from_secs(10), || async {
        (scene.open("alice", "/echo/docs/1/edit").await == 200
            && scene.open("bob", "/echo/docs/1/edit").await == 423)
            .then_some(())
    })
    .await
    .unwrap_or_else(|| {
        panic!(
            "the applied rule never reached the proxy: {:?}\n{}",
            std::fs::read_to_string(scene.latch.dir.path().join("rules.toml")),
            scene.latch.log()
        )
    });

    // The same file again changes nothing.
    let (code, out, _) = scene.admin(&["rules", "apply", &file]).await;
    assert_eq!(code, 0);
    assert!(
        out.contains("0 created, 0 replaced, 2 unchanged, 0 deleted"),
        "{out}"
    );

    // A changed docs rule, and no wiki rule: a dry run says so and changes nothing.
    let changed = scene.rule_file(
        "changed.toml",
        "[[rule]]\nid = \"docs\"\npattern = '/echo/docs/(?P<id>\\d+)/write'\nresource = \"doc:{id}\"\n",
    );
    let (code, out, _) = scene
        .admin(&["rules", "apply", &changed, "--prune", "--dry-run"])
        .await;
    assert_eq!(code, 0);
    assert!(
        out.contains("would replace docs") && out.contains("would delete wiki"),
        "{out}"
    );
    assert_eq!(scene.rules().await.len(), 2, "a dry run changed something");

    // Without --prune the wiki rule stays; with it, it goes.
    let (code, out, _) = scene.admin(&["rules", "apply", &changed]).await;
    assert_eq!(code, 0);
    assert!(
        out.contains("0 created, 1 replaced, 0 unchanged, 0 deleted"),
        "{out}"
    );
    assert_eq!(scene.rules().await.len(), 2);
    let (code, out, _) = scene
        .admin(&["rules", "apply", &changed, "--prune", "--json"])
        .await;
    assert_eq!(code, 0);
    let result: Value = serde_json::from_str(&out).expect("JSON");
    assert_eq!(result["deleted"], serde_json::json!(["wiki"]));
    assert_eq!(result["unchanged"], serde_json::json!(["docs"]));
    assert_eq!(
        scene.rules().await,
        vec![(
            "docs".to_owned(),
            "/echo/docs/(?P<id>\\d+)/write".to_owned()
        )]
    );

    // The table fits the terminal: one header and one line per rule.
    let (code, out, _) = scene.admin(&["rules", "list"]).await;
    assert_eq!(code, 0);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 2, "{out}");
    assert!(
        lines[0].starts_with("ID") && lines[1].starts_with("docs"),
        "{out}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalid_rule_file_is_refused_whole_with_every_problem_and_sends_nothing() {
    let scene = Scene::start().await;
    let bad = scene.rule_file(
        "bad.toml",
        "[[rule]]\nid = \"ok\"\npattern = '/ok'\n\n[[rule]]\nid = \"broken\"\npattern = '(unclosed'\nmood = 1\n",
    );
    let (code, out, err) = scene.admin(&["rules", "apply", &bad]).await;
    assert_eq!(code, 2, "{out}");
    assert!(err.contains("bad.toml"), "{err}");
    assert!(err.contains("mood"), "the unknown key is named: {err}");
    assert!(
        scene.rules().await.is_empty(),
        "the valid rule was sent anyway"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn locks_list_in_natural_order_and_release_all_of_a_users_locks() {
    let scene = Scene::start().await;
    let file = scene.rule_file("rules.toml", TWO_RULES);
    assert_eq!(scene.admin(&["rules", "apply", &file]).await.0, 0);
    tests::eventually(Duration::from_secs(10), || async {
        (scene.open("alice", "/echo/docs/10/edit").await == 200).then_some(())
    })
    .await
    .expect("the rule reaches the proxy");
    for path in ["/echo/docs/2/edit", "/echo/docs/1/edit"] {
        assert_eq!(scene.open("alice", path).await, 200);
    }
    assert_eq!(scene.open("bob", "/echo/docs/3/edit").await, 200);

    let (code, out, err) = scene.admin(&["locks", "list"]).await;
    assert_eq!(code, 0, "{err}");
    let resources: Vec<&str> = out
        .lines()
        .skip(1)
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    assert_eq!(resources, ["doc:1", "doc:2", "doc:3", "doc:10"], "{out}");
    assert!(
        out.lines()
            .nth(1)
            .is_some_and(|l| l.contains("alice") && l.contains("left")),
        "{out}"
    );

    let (code, out, err) = scene.admin(&["locks", "release", "--user", "alice"]).await;
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        out.lines()
            .filter(|l| l.starts_with("released doc:"))
            .count(),
        3,
        "{out}"
    );
    let (_, out, _) = scene.admin(&["locks", "list", "--json"]).await;
    let left: Value = serde_json::from_str(&out).expect("JSON");
    let left: Vec<&str> = left["locks"]
        .as_array()
        .expect("a list")
        .iter()
        .map(|l| l["resource"].as_str().unwrap())
        .collect();
    assert_eq!(left, ["doc:3"]);
    // Bob can now have what Alice held.
    assert_eq!(scene.open("bob", "/echo/docs/1/edit").await, 200);

    // A lock nobody holds is an error for that one, and the others are still released.
    let (code, out, err) = scene.admin(&["locks", "release", "doc:99", "doc:3"]).await;
    assert_eq!(code, 2, "{out}");
    assert!(err.contains("doc%3A99") && err.contains("404"), "{err}");
    assert!(out.contains("released doc:3"), "{out}");
}

/// Stands between the CLI and the control plane, passing every request on; before the first
/// DELETE it runs its `meanwhile` (once), as another admin and user acting in between would.
struct Relay {
    control_plane: String,
    first_delete: std::sync::Mutex<Option<String>>,
    meanwhile: Box<dyn Fn() -> futures::future::BoxFuture<'static, ()> + Send + Sync>,
}

impl Relay {
    /// Serves the relay on a free port; returns its URL.
    async fn start(relay: Relay) -> (String, Arc<Relay>) {
        let relay = Arc::new(relay);
        let app = axum::Router::new()
            .fallback(pass_on)
            .with_state(relay.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the relay");
        let url = format!("http://{}", listener.local_addr().expect("its address"));
        tokio::spawn(async move { axum::serve(listener, app).await });
        (url, relay)
    }
}

async fn pass_on(
    axum::extract::State(relay): axum::extract::State<Arc<Relay>>,
    request: axum::extract::Request,
) -> axum::response::Response {
    let (parts, body) = request.into_parts();
    let body = axum::body::to_bytes(body, 1 << 20)
        .await
        .expect("a request body");
    let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    if parts.method == reqwest::Method::DELETE {
        let first = relay
            .first_delete
            .lock()
            .expect("not poisoned")
            .get_or_insert_with(|| path.to_owned())
            .clone();
        if first == path {
            (relay.meanwhile)().await;
        }
    }
    let mut forward = client()
        .request(parts.method, format!("{}{path}", relay.control_plane))
        .body(body);
    // The framing headers are each side's own.
    let framing = |name: &reqwest::header::HeaderName| {
        [
            reqwest::header::HOST,
            reqwest::header::CONTENT_LENGTH,
            reqwest::header::TRANSFER_ENCODING,
            reqwest::header::CONNECTION,
        ]
        .contains(name)
    };
    for (name, value) in &parts.headers {
        if !framing(name) {
            forward = forward.header(name, value);
        }
    }
    let answer = forward.send().await.expect("the control plane answers");
    let status = answer.status();
    let headers = answer.headers().clone();
    let bytes = answer.bytes().await.expect("its body");
    let mut response = axum::response::IntoResponse::into_response((status, bytes));
    for (name, value) in &headers {
        if !framing(name) {
            response.headers_mut().insert(name, value.clone());
        }
    }
    response
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn releasing_a_users_locks_leaves_one_that_changed_hands_meanwhile() {
    let scene = Scene::start().await;
    let file = scene.rule_file("rules.toml", TWO_RULES);
    assert_eq!(scene.admin(&["rules", "apply", &file]).await.0, 0);
    tests::eventually(Duration::from_secs(10), || async {
        (scene.open("alice", "/echo/docs/10/edit").await == 200).then_some(())
    })
    .await
    .expect("the rule reaches the proxy");
    for path in ["/echo/docs/2/edit", "/echo/docs/1/edit"] {
        assert_eq!(scene.open("alice", path).await, 200);
    }

    // After the CLI read the list, and before its first release (doc:1, first in natural
    // order), another admin frees doc:1 and Bob opens it.
    let cp = scene.cp_url.clone();
    let bobs_page = scene.latch.url("/echo/docs/1/edit");
    let (url, relay) = Relay::start(Relay {
        control_plane: cp.clone(),
        first_delete: std::sync::Mutex::new(None),
        meanwhile: Box::new(move || {
            let cp = cp.clone();
            let bobs_page = bobs_page.clone();
            Box::pin(async move {
                let freed = client()
                    .delete(format!("{cp}/api/v1/locks/doc:1"))
                    .bearer_auth(token("other", "Other", &["admin"]))
                    .send()
                    .await
                    .expect("the control plane answers");
                assert_eq!(freed.status(), 200);
                let opened = client()
                    .get(&bobs_page)
                    .header(COOKIE, format!("latch_token={}", token("bob", "bob", &[])))
                    .send()
                    .await
                    .expect("the proxy answers");
                assert_eq!(opened.status(), 200);
            })
        }),
    })
    .await;
    let admin = token("root", "Root", &["admin"]);
    let (code, out, err) = scene
        .cli_at(
            &url,
            &["locks", "release", "--user", "alice"],
            vec![("LATCH_ADMIN_TOKEN".to_owned(), admin)],
        )
        .await;
    assert_eq!(
        relay.first_delete.lock().expect("not poisoned").as_deref(),
        Some("/api/v1/locks/doc%3A1"),
        "doc:1 went first"
    );
    assert_eq!(code, 2, "a lock was left alone: {out}");
    assert!(
        err.contains("doc%3A1") && err.contains("412") && err.contains("changed hands"),
        "{err}"
    );
    let released: Vec<&str> = out.lines().filter(|l| l.starts_with("released ")).collect();
    assert_eq!(
        released,
        [
            "released doc:2 (held by alice)",
            "released doc:10 (held by alice)"
        ],
        "{out}"
    );
    let (_, out, _) = scene.admin(&["locks", "list", "--json"]).await;
    let left: Value = serde_json::from_str(&out).expect("JSON");
    let left: Vec<(&str, &str)> = left["locks"]
        .as_array()
        .expect("a list")
        .iter()
        .map(|l| {
            (
                l["resource"].as_str().unwrap(),
                l["holder"]["id"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(left, [("doc:1", "bob")], "Bob keeps what he took");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_an_admin_token_or_a_control_plane_the_commands_say_why() {
    let scene = Scene::start().await;

    let (code, _, err) = scene.cli(&["locks", "list"], Vec::new()).await;
    assert_eq!(code, 2);
    assert!(err.contains("LATCH_ADMIN_TOKEN"), "{err}");

    let editor = token("alice", "Alice", &["editor"]);
    let (code, _, err) = scene
        .cli(
            &["locks", "list"],
            vec![("LATCH_ADMIN_TOKEN".into(), editor)],
        )
        .await;
    assert_eq!(code, 2);
    assert!(err.contains("403"), "{err}");

    // A token in a file works as well as one in the environment.
    let token_file = scene.dir.path().join("token");
    std::fs::write(
        &token_file,
        format!("{}\n", token("root", "Root", &["admin"])),
    )
    .expect("write");
    let (code, out, err) = scene
        .cli(
            &[
                "rules",
                "list",
                "--token-file",
                token_file.to_str().unwrap(),
            ],
            Vec::new(),
        )
        .await;
    assert_eq!(code, 0, "{err}");
    assert_eq!(out.trim(), "no rules");

    // Nothing listens there.
    let nowhere = format!("http://127.0.0.1:{}", free_port());
    let admin = token("root", "Root", &["admin"]);
    let (code, _, err) = tokio::task::spawn_blocking(move || {
        run_latch(
            &["locks", "list", "--url", &nowhere],
            &[("LATCH_ADMIN_TOKEN", &admin)],
        )
    })
    .await
    .expect("running latch");
    assert_eq!(code, 2);
    assert!(err.to_lowercase().contains("connect"), "{err}");
}
