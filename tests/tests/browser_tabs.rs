//! The lock's lifecycle as people live it, in real Chromium tabs through the real proxy, in
//! front of a real app: the small Flask editor in `tests/apps/editor/` (a multi-page editor
//! with a preview iframe on a protected URL, autosave by XHR and links between documents).
//!
//! - Alice has the editor open in two tabs and closes one: the lock stays, and the other tab's
//!   autosave still gets 2xx, every time.
//! - The preview iframe gets no second banner, and its refreshes never release the lock.
//! - Leaving the page is a voluntary (grace) release, and Alice's next write is accepted.
//! - Bob's 423 page turns into the page by itself when Alice leaves.
//! - An idle holder is warned, *Stay* keeps the lock, and without activity the lock is
//!   released as `idle`, audited, and Bob can claim it.
//! - Two proxy instances on one Redis: a tab on each, closing one keeps the lock.
//!
//! Chromium and ChromeDriver come from `scripts/setup.sh test`; the browsers are the shared
//! ones of `tests::browser`, the editor is `tests::editor`. On failure, screenshots of every
//! open browser are written to `artifacts/`.

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::time::{Duration, Instant};

use futures::FutureExt;
use reqwest::StatusCode;
use serde_json::{json, Value};
use tests::browser::{Browser, Driver};
use tests::editor::Editor;
use tests::instances::start_instances;
use tests::node::admin_bearer;
use tests::redis::RedisServer;
use tests::{client, free_port, token, wait_for_port, Latch, LatchBuilder};

/// `doc:{id}` covers the editor, its preview and its saves. The lease and grace are the
/// defaults' proportions (the banner renews every grace/2 = 5 s, longer than the 3 s a
/// closing page's beacon used to leave), so a tab closing shortened the lock for real before.
/// Document 9 has a short idle time.
const RULES: &str = r#"
[[rule]]
id = "edit"
pattern = "/docs/(?P<id>[0-9]+)/(?:edit|preview|save)"
resource = "doc:{id}"
lease_seconds = 30
grace_seconds = 10

[[rule]]
id = "quick"
pattern = "/docs/9/(?:edit|preview|save)"
resource = "doc:9"
lease_seconds = 30
grace_seconds = 2
idle_seconds = 4
priority = 10
"#;

/// The editor's own `grace_seconds`.
const GRACE: Duration = Duration::from_secs(10);
/// What a closing page's beacon leaves at most (`PAGEHIDE_GRACE`), plus a margin.
const AFTER_BEACON: Duration = Duration::from_secs(4);
/// How long the browser may take to show what the test waits for.
const PATIENCE: Duration = Duration::from_secs(10);

/// The editor's own saves, run in a tab showing it.
trait Saves {
    /// Runs the editor's own autosave (an XHR POST) and returns the status it got.
    async fn autosave(&self) -> u64;
    /// A `fetch` POST of the editor's save from whatever page this tab shows.
    async fn post_save(&self, doc: u32) -> u64;
}

impl Saves for Browser {
    async fn autosave(&self) -> u64 {
        let script = "var done = arguments[arguments.length - 1]; window.autosave(done);";
        self.session()
            .execute_async(script, vec![])
            .await
            .expect("autosave")
            .as_u64()
            .expect("a status")
    }

    async fn post_save(&self, doc: u32) -> u64 {
        let script = format!(
            "var done = arguments[arguments.length - 1];\
             fetch('/docs/{doc}/save', {{method: 'POST', headers: {{'Content-Type': \
             'application/x-www-form-urlencoded'}}, body: 'text=again'}})\
             .then(function (r) {{ done(r.status); }}, function () {{ done(0); }});"
        );
        self.session()
            .execute_async(&script, vec![])
            .await
            .expect("fetch")
            .as_u64()
            .expect("a status")
    }
}

/// The proxy (with its control plane, for the audit trail) in front of the editor.
struct Scene {
    latches: Vec<Latch>,
    editor: Editor,
    browsers: Vec<Browser>,
    cp_port: u16,
    _redis: Option<RedisServer>,
    driver: Driver,
}

impl Scene {
    /// One `latch run` on the memory store.
    async fn single() -> Scene {
        let editor = Editor::start();
        let cp_port = free_port();
        let latch = LatchBuilder::new(editor.port())
            .command("run")
            .rules(RULES)
            .locks("store = \"memory\"\nlease_seconds = 30\ngrace_seconds = 10\nidle_warning_seconds = 2")
            .section(&format!(
                "[control_plane]\nlisten = \"127.0.0.1:{cp_port}\"\nadmin_roles = [\"admin\"]"
            ))
            .start();
        wait_for_port(cp_port, Duration::from_secs(20), || latch.log());
        Scene {
            latches: vec![latch],
            editor,
            browsers: Vec::new(),
            cp_port,
            _redis: None,
            driver: Driver::start().await,
        }
    }

    /// Two `latch proxy` instances on one Redis.
    async fn two_instances() -> Scene {
        let editor = Editor::start();
        let redis = RedisServer::start();
        let latches = start_instances(2, editor.port(), &redis.url(), RULES).await;
        Scene {
            latches,
            editor,
            browsers: Vec::new(),
            cp_port: 0,
            _redis: Some(redis),
            driver: Driver::start().await,
        }
    }

    fn url(&self, path: &str) -> String {
        self.latches[0].url(path)
    }

    async fn open(&mut self, name: &'static str, user: &str, display: &str) {
        // The cookie is for the host, so it reaches every instance on 127.0.0.1.
        let jwt = token(user, display, &[]);
        let browser = self.driver.browser(name, &self.latches[0], &jwt).await;
        self.browsers.push(browser);
    }

    fn get(&self, name: &str) -> &Browser {
        self.browsers
            .iter()
            .find(|b| b.name() == name)
            .expect("a browser of that name")
    }

    /// Lock events the control plane recorded for `resource`, oldest first.
    async fn audit(&self, resource: &str) -> Vec<Value> {
        let resp = client()
            .get(format!(
                "http://127.0.0.1:{}/api/v1/events?resource={resource}",
                self.cp_port
            ))
            .header("authorization", admin_bearer())
            .send()
            .await
            .expect("events API");
        assert_eq!(resp.status(), StatusCode::OK);
        let body: Value = resp.json().await.expect("events JSON");
        let mut events = body
            .get("events")
            .and_then(Value::as_array)
            .cloned()
            .or_else(|| body.as_array().cloned())
            .unwrap_or_default();
        events.sort_by_key(|e| e["at"].as_u64().unwrap_or(0));
        events
    }

    /// Waits for an audit event of `kind` (and `reason`, when given) on `resource`.
    async fn wait_audit(
        &self,
        resource: &str,
        kind: &str,
        reason: Option<&str>,
        within: Duration,
    ) -> Value {
        let start = Instant::now();
        loop {
            let events = self.audit(resource).await;
            if let Some(found) = events
                .iter()
                .find(|e| e["kind"] == kind && reason.is_none_or(|r| e["reason"] == r))
            {
                return found.clone();
            }
            assert!(
                start.elapsed() < within,
                "no {kind} ({reason:?}) event for {resource} within {within:?}; got {events:#?}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    async fn close_all(self) {
        for browser in self.browsers {
            browser.quit().await;
        }
    }
}

/// Runs `scenario` on a scene, one at a time; on failure saves screenshots and prints the
/// proxies' logs. Every browser is closed either way.
async fn run<F>(test: &str, scene: Scene, scenario: F)
where
    F: for<'s> FnOnce(&'s mut Scene) -> std::pin::Pin<Box<dyn Future<Output = ()> + Send + 's>>,
{
    let mut scene = scene;
    let outcome = AssertUnwindSafe(scenario(&mut scene)).catch_unwind().await;
    if outcome.is_err() {
        for browser in &scene.browsers {
            browser.screenshot(test).await;
        }
        for latch in &scene.latches {
            eprintln!("a proxy's log:\n{}", latch.log());
        }
    }
    scene.close_all().await;
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
}

/// Several Chromiums at once on a small machine make the timings depend on the scheduler.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closing_a_second_tab_keeps_the_lock() {
    let _turn = ONE_AT_A_TIME.lock().await;
    let scene = Scene::single().await;
    run("closing_a_second_tab_keeps_the_lock", scene, |s| {
        Box::pin(async move {
            s.open("alice", "alice", "Alice").await;
            let page = s.url("/docs/1/edit");
            let alice = s.get("alice");
            alice.goto(&page).await;
            alice
                .wait_banner("editing", "You are editing", PATIENCE)
                .await;
            let first = alice.tab().await;
            for round in 1..=8 {
                alice.new_tab(&page).await;
                alice
                    .wait_banner("editing", "You are editing", PATIENCE)
                    .await;
                alice.close_tab(&first).await;
                tokio::time::sleep(AFTER_BEACON).await;
                let status = alice.autosave().await;
                assert_eq!(status, 200, "round {round}: the remaining tab's autosave");
                alice
                    .wait_banner("editing", "You are editing", PATIENCE)
                    .await;
            }
            assert!(s.editor.saves().await.len() >= 8);
            let released: Vec<Value> = s
                .audit("doc:1")
                .await
                .into_iter()
                .filter(|e| e["kind"] != "claimed")
                .collect();
            assert!(released.is_empty(), "the lock changed: {released:#?}");
        })
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_preview_frame_gets_no_banner_and_never_releases_the_lock() {
    let _turn = ONE_AT_A_TIME.lock().await;
    let scene = Scene::single().await;
    run("the_preview_frame_gets_no_banner", scene, |s| {
        Box::pin(async move {
            s.open("alice", "alice", "Alice").await;
            let alice = s.get("alice");
            alice.goto(&s.url("/docs/1/edit")).await;
            alice.wait_banner("editing", "You are editing", PATIENCE).await;
            // The preview is a protected page the proxy injected the banner script into; in
            // the frame it draws nothing.
            let frame = "var d = document.getElementById('preview').contentDocument;\
                         if (!d || d.readyState !== 'complete' || !d.getElementById('rendered')) return null;\
                         return [!!d.querySelector('script[data-latch-prefix]'), !!d.getElementById('latch-banner')];";
            let start = Instant::now();
            let seen = loop {
                let seen = alice.script(frame).await;
                if !seen.is_null() {
                    // Give a deferred banner script the time to run, then look again.
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    break alice.script(frame).await;
                }
                assert!(start.elapsed() < PATIENCE, "the preview did not load");
                tokio::time::sleep(Duration::from_millis(100)).await;
            };
            assert_eq!(seen, json!([true, false]), "[banner script injected, banner drawn] in the frame");

            // Autosave reloads the preview each time; reload it more besides.
            for _ in 0..5 {
                assert_eq!(alice.autosave().await, 200);
                alice
                    .script("document.getElementById('preview').contentWindow.location.reload(); return 1;")
                    .await;
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
            tokio::time::sleep(AFTER_BEACON).await;
            for _ in 0..3 {
                assert_eq!(alice.autosave().await, 200, "no 423 for the editor");
            }
            alice.wait_banner("editing", "You are editing", PATIENCE).await;
            let changes: Vec<Value> = s
                .audit("doc:1")
                .await
                .into_iter()
                .filter(|e| e["kind"] != "claimed")
                .collect();
            assert!(changes.is_empty(), "the preview released the lock: {changes:#?}");
        })
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leaving_the_page_is_a_grace_release_and_the_next_write_is_accepted() {
    let _turn = ONE_AT_A_TIME.lock().await;
    let scene = Scene::single().await;
    run("leaving_the_page", scene, |s| {
        Box::pin(async move {
            s.open("alice", "alice", "Alice").await;
            let alice = s.get("alice");
            alice.goto(&s.url("/docs/2/edit")).await;
            alice
                .wait_banner("editing", "You are editing", PATIENCE)
                .await;
            // Navigate away to a page no rule protects.
            alice.goto(&s.url("/")).await;
            let event = s
                .wait_audit("doc:2", "released", Some("grace"), GRACE + PATIENCE)
                .await;
            assert_eq!(event["user"], "alice", "{event}");
            let expired: Vec<Value> = s
                .audit("doc:2")
                .await
                .into_iter()
                .filter(|e| e["kind"] == "expired")
                .collect();
            assert!(expired.is_empty(), "{expired:#?}");
            // Nobody touched the document since: Alice's next write simply claims it again.
            assert_eq!(alice.post_save(2).await, 200);
            let saves = s.editor.saves().await;
            assert_eq!(
                saves.last().map(|s| s["user"].clone()),
                Some(json!("alice"))
            );
        })
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_423_page_turns_into_the_page_when_the_holder_leaves() {
    let _turn = ONE_AT_A_TIME.lock().await;
    let scene = Scene::single().await;
    run("the_423_page_reloads", scene, |s| {
        Box::pin(async move {
            s.open("alice", "alice", "Alice").await;
            s.open("bob", "bob", "Bob").await;
            let page = s.url("/docs/3/edit");
            let (alice, bob) = (s.get("alice"), s.get("bob"));
            alice.goto(&page).await;
            alice
                .wait_banner("editing", "You are editing", PATIENCE)
                .await;
            bob.goto(&page).await;
            bob.wait_banner("locked", "Locked by Alice", PATIENCE).await;
            assert!(bob.script("return !document.getElementById('text');").await == json!(true));
            // Alice watches too: she is named to nobody but counted for Bob.
            alice.goto(&s.url("/")).await;
            let took = bob
                .wait_banner("editing", "You are editing", GRACE + PATIENCE)
                .await;
            eprintln!("Bob had the editor {took:?} after Alice left");
            assert_eq!(
                bob.script("return !!document.getElementById('text');")
                    .await,
                json!(true),
                "Bob's tab shows the editor itself"
            );
            assert_eq!(bob.autosave().await, 200);
        })
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_holder_sees_who_is_watching() {
    let _turn = ONE_AT_A_TIME.lock().await;
    let scene = Scene::single().await;
    run("the_holder_sees_who_is_watching", scene, |s| {
        Box::pin(async move {
            s.open("alice", "alice", "Alice").await;
            s.open("carol", "carol", "Carol").await;
            let page = s.url("/docs/1/edit");
            let (alice, carol) = (s.get("alice"), s.get("carol"));
            alice.goto(&page).await;
            alice
                .wait_banner("editing", "You are editing", PATIENCE)
                .await;
            carol.goto(&page).await;
            carol
                .wait_banner("locked", "Locked by Alice", PATIENCE)
                .await;
            alice
                .wait_banner("editing", "Carol is watching", PATIENCE)
                .await;
            carol.goto(&s.url("/")).await;
            let start = Instant::now();
            while alice
                .banner()
                .await
                .is_some_and(|b| b.text.contains("watching"))
            {
                assert!(start.elapsed() < PATIENCE, "Carol still shown as watching");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_holder_is_warned_may_stay_and_is_then_released() {
    let _turn = ONE_AT_A_TIME.lock().await;
    let scene = Scene::single().await;
    run("an_idle_holder", scene, |s| {
        Box::pin(async move {
            s.open("alice", "alice", "Alice").await;
            s.open("bob", "bob", "Bob").await;
            let page = s.url("/docs/9/edit");
            let (alice, bob) = (s.get("alice"), s.get("bob"));
            alice.goto(&page).await;
            alice
                .wait_banner("editing", "You are editing", PATIENCE)
                .await;
            // idle 4 s, warned 2 s before.
            alice
                .wait_banner("editing", "You seem away", PATIENCE)
                .await;
            alice.click_banner_button("Stay").await;
            let start = Instant::now();
            while alice
                .banner()
                .await
                .is_some_and(|b| b.text.contains("You seem away"))
            {
                assert!(
                    start.elapsed() < Duration::from_secs(2),
                    "the warning stayed after Stay"
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            alice
                .wait_banner("editing", "You are editing", Duration::from_secs(1))
                .await;
            assert_eq!(alice.autosave().await, 200, "Stay kept the lock");
            let idle: Vec<Value> = s
                .audit("doc:9")
                .await
                .into_iter()
                .filter(|e| e["reason"] == "idle")
                .collect();
            assert!(idle.is_empty(), "released although Alice stayed: {idle:#?}");

            // No activity any more: warned again, then released.
            alice
                .wait_banner("released", "Released because you were away", PATIENCE)
                .await;
            let event = s
                .wait_audit("doc:9", "released", Some("idle"), PATIENCE)
                .await;
            assert_eq!(event["user"], "alice", "{event}");
            bob.goto(&page).await;
            bob.wait_banner("editing", "You are editing", PATIENCE)
                .await;
            assert_eq!(bob.autosave().await, 200);
        })
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tab_on_each_instance_closing_one_keeps_the_lock() {
    let _turn = ONE_AT_A_TIME.lock().await;
    let scene = Scene::two_instances().await;
    run("a_tab_on_each_instance", scene, |s| {
        Box::pin(async move {
            s.open("alice", "alice", "Alice").await;
            let here = s.latches[0].url("/docs/1/edit");
            let there = s.latches[1].url("/docs/1/edit");
            let alice = s.get("alice");
            alice.goto(&here).await;
            alice
                .wait_banner("editing", "You are editing", PATIENCE)
                .await;
            let first = alice.tab().await;
            for round in 1..=3 {
                alice.new_tab(&there).await;
                alice
                    .wait_banner("editing", "You are editing", PATIENCE)
                    .await;
                alice.close_tab(&first).await;
                tokio::time::sleep(AFTER_BEACON).await;
                assert_eq!(alice.autosave().await, 200, "round {round}");
                alice
                    .wait_banner("editing", "You are editing", PATIENCE)
                    .await;
            }
        })
    })
    .await;
}
