//! Nothing typed is lost, in a real browser: Alice types in a form, Bob (an admin) takes the
//! page over from his banner, Alice presses Save. Her write is refused, and the 423 page she
//! gets says her changes were kept, with links to view, copy and download them; the view is
//! plain text that cannot run, her banner offers "Your unsaved changes (1)", and Bob cannot
//! read any of it.
//!
//! In front of the Flask editor (`tests/apps/editor`, a JSON autosave by XHR), two more:
//! - a tab already open is told at once: Alice's autosave is refused after Bob takes over,
//!   and without a reload her banner offers "Your unsaved changes", kept as the JSON she sent;
//! - the 423 page does not reload in a loop: it stays put while Bob holds the page and loads
//!   it by itself exactly once when he releases it.
//!
//! Headless Chromium through ChromeDriver (`tests::browser`), on the test upstream's editor
//! (`/form/{id}`: a form that POSTs to its own protected URL) and on the Flask editor.

use std::time::{Duration, Instant};

use std::future::Future;
use std::panic::AssertUnwindSafe;

use fantoccini::Locator;
use futures::FutureExt;
use reqwest::header::{AUTHORIZATION, ORIGIN};
use serde_json::{json, Value};
use tests::browser::{Browser, Driver};
use tests::editor::Editor;
use tests::{client, token, Latch, LatchBuilder, Upstream};

const RULES: &str = r#"
[[rule]]
id = "form"
pattern = "/form/(?P<id>[0-9]+)"
resource = "form:{id}"
mode = "block"
inject = true
"#;

/// How long the browser may take to show what the test waits for.
const PATIENCE: Duration = Duration::from_secs(10);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn text_typed_before_a_takeover_is_kept_for_its_author_only() {
    let upstream = Upstream::start().await;
    let latch = LatchBuilder::new(upstream.port())
        .rules(RULES)
        .locks("store = \"memory\"\nlease_seconds = 30\ngrace_seconds = 2")
        .start();
    let driver = Driver::start().await;
    let alice = driver
        .browser("alice", &latch, &token("alice", "Alice", &[]))
        .await;
    let bob = driver
        .browser("bob", &latch, &token("bob", "Bob", &["admin"]))
        .await;
    let outcome = futures::FutureExt::catch_unwind(std::panic::AssertUnwindSafe(scenario(
        &latch, &alice, &bob,
    )))
    .await;
    if outcome.is_err() {
        for browser in [&alice, &bob] {
            browser
                .screenshot("text_typed_before_a_takeover_is_kept_for_its_author_only")
                .await;
        }
        eprintln!("the proxy's log:\n{}", latch.log());
    }
    alice.quit().await;
    bob.quit().await;
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
}

async fn scenario(latch: &Latch, alice: &Browser, bob: &Browser) {
    let page = latch.url("/form/1");
    alice.goto(&page).await;
    alice
        .wait_banner("editing", "You are editing", PATIENCE)
        .await;
    let typed = "My long paragraph, with <b>markup</b> & an ampersand.";
    let body = alice
        .session()
        .find(Locator::Id("body"))
        .await
        .expect("the textarea");
    body.send_keys(typed).await.expect("typing");

    // Bob takes the page over from his banner while Alice is still typing.
    bob.goto(&page).await;
    bob.wait_banner("locked", "Locked by Alice", PATIENCE).await;
    bob.click_banner_button("Take over").await;
    bob.wait_banner("editing", "You are editing", PATIENCE)
        .await;
    alice
        .wait_banner("taken_over", "Bob took over", PATIENCE)
        .await;

    // Alice presses Save: refused, and kept.
    alice
        .session()
        .find(Locator::Id("save"))
        .await
        .expect("the Save button")
        .click()
        .await
        .expect("click Save");
    let deadline = Instant::now() + PATIENCE;
    let mut text = String::new();
    while Instant::now() < deadline {
        text = alice.page_text().await;
        if text.contains("Your unsaved changes were kept") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(text.contains("Your unsaved changes were kept"), "{text}");
    assert!(text.contains("Lock lost"), "{text}");
    alice
        .wait_banner("locked", "Your unsaved changes (1)", PATIENCE)
        .await;

    // The view is plain text: her words as typed, nothing rendered.
    let view = alice.attribute("#latch-stash-view", "href").await;
    let download = alice.attribute("#latch-stash-download", "href").await;
    assert!(
        download.starts_with(&view) && download.ends_with("?download=1"),
        "{download}"
    );
    alice.goto(&latch.url(&view)).await;
    let shown = alice
        .script("return [document.contentType, document.body.innerText, document.getElementsByTagName('b').length];")
        .await;
    assert_eq!(shown[0], "text/plain", "{shown}");
    let shown_text = shown[1].as_str().unwrap_or_default();
    assert!(
        shown_text.contains(&format!("body: {typed}")),
        "{shown_text}"
    );
    assert!(shown_text.contains("title: Draft"), "{shown_text}");
    assert_eq!(shown[2], json!(0));

    // Bob gets nothing at the same address, nor in his list.
    let bob_token = token("bob", "Bob", &["admin"]);
    let http = tests::client();
    let refused = http
        .get(latch.url(&view))
        .bearer_auth(&bob_token)
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 404);
    assert!(!refused.text().await.unwrap().contains("paragraph"));
    let list: Value = http
        .get(latch.url("/__latch/stash"))
        .bearer_auth(&bob_token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(list["count"], 0);
}

/// The Flask editor's pages and saves: `doc:{id}`.
const EDITOR_RULES: &str = r#"
[[rule]]
id = "edit"
pattern = "/docs/(?P<id>[0-9]+)/(?:edit|preview|save)"
resource = "doc:{id}"
"#;

/// The proxy in front of the Flask editor, on the memory store.
fn editor_latch(editor: &Editor) -> Latch {
    LatchBuilder::new(editor.port())
        .rules(EDITOR_RULES)
        .locks("store = \"memory\"\nlease_seconds = 30\ngrace_seconds = 10")
        .start()
}

/// Runs `scenario` with Alice's browser, which it hands back to be closed; on failure, prints
/// the proxy's log.
async fn with_alice<F, Fut>(test: &str, latch: &Latch, scenario: F)
where
    F: FnOnce(Browser) -> Fut,
    Fut: Future<Output = Browser>,
{
    let driver = Driver::start().await;
    let alice = driver
        .browser("alice", latch, &token("alice", "Alice", &[]))
        .await;
    let shared = std::sync::Arc::new(tokio::sync::Mutex::new(None::<Browser>));
    let slot = shared.clone();
    let outcome = AssertUnwindSafe(async move {
        let alice = scenario(alice).await;
        *slot.lock().await = Some(alice);
    })
    .catch_unwind()
    .await;
    if let Some(alice) = shared.lock().await.take() {
        alice.quit().await;
    }
    if let Err(panic) = outcome {
        eprintln!("{test}: the proxy's log:\n{}", latch.log());
        std::panic::resume_unwind(panic);
    }
}

/// POSTs `{prefix}/{action}` for `resource` as `auth`, same-origin; the status.
async fn act(latch: &Latch, action: &str, resource: &str, auth: &str) -> u16 {
    client()
        .post(latch.url(&format!("/__latch/{action}")))
        .header(AUTHORIZATION, auth)
        .header(ORIGIN, format!("http://127.0.0.1:{}", latch.port))
        .body(json!({ "resource": resource }).to_string())
        .send()
        .await
        .expect("POST to the proxy")
        .status()
        .as_u16()
}

/// Waits until `read` returns `want`; the last value read.
async fn wait_for(alice: &Browser, js: &str, want: &Value, within: Duration) -> Value {
    let deadline = Instant::now() + within;
    loop {
        let got = alice.script(js).await;
        if &got == want || Instant::now() >= deadline {
            return got;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits until the banner's text has `text` in it, whatever its state; how long that took.
async fn wait_banner_text(alice: &Browser, text: &str, within: Duration) -> Duration {
    let start = Instant::now();
    let mut last = None;
    while start.elapsed() < within {
        last = alice.banner().await;
        if last.as_ref().is_some_and(|b| b.text.contains(text)) {
            return start.elapsed();
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the banner did not show {text:?} within {within:?}; last seen {last:?}");
}

const STATUS: &str = "return document.getElementById('status').textContent;";
/// Set on the page as loaded; gone if the tab navigated since.
const MARK: &str = "window.latchTestMark = 'this load'; return true;";
const MARKED: &str = "return window.latchTestMark === 'this load';";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_open_editor_learns_at_once_that_its_refused_autosave_was_kept() {
    let editor = &Editor::start();
    let latch = &editor_latch(editor);
    let alice_auth = format!("Bearer {}", token("alice", "Alice", &[]));
    let bob_auth = format!("Bearer {}", token("bob", "Bob", &["admin"]));
    with_alice("an_open_editor_learns", latch, |alice| async move {
        alice.goto(&latch.url("/docs/1/edit")).await;
        alice
            .wait_banner("editing", "You are editing", PATIENCE)
            .await;
        assert_eq!(alice.script(MARK).await, json!(true));

        // Bob takes the page over (from the API; his own tab is not what is under test).
        assert_eq!(act(latch, "takeover", "doc:1", &bob_auth).await, 200);
        alice
            .wait_banner("taken_over", "Bob took over", PATIENCE)
            .await;

        // Alice goes on typing; the editor's autosave XHR is refused and kept.
        alice
            .session()
            .find(Locator::Id("text"))
            .await
            .expect("the textarea")
            .send_keys(" and a paragraph typed after the take-over, \"quoted\" & <b>marked</b>")
            .await
            .expect("typing");
        let status = wait_for(&alice, STATUS, &json!("not saved (423)"), PATIENCE).await;
        assert_eq!(status, json!("not saved (423)"));
        let refused_at = Instant::now();
        // Let any autosave still pending settle, then see what was kept.
        tokio::time::sleep(Duration::from_millis(600)).await;
        let (status, list) = {
            let resp = client()
                .get(latch.url("/__latch/stash"))
                .header(AUTHORIZATION, &alice_auth)
                .send()
                .await
                .unwrap();
            (resp.status().as_u16(), resp.json::<Value>().await.unwrap())
        };
        assert_eq!(status, 200);
        let count = list["count"].as_u64().unwrap_or(0);
        assert!(count >= 1, "{list}");

        // Her open tab says so by itself: no reload, within about a second.
        wait_banner_text(&alice, &format!("Your unsaved changes ({count})"), PATIENCE).await;
        let since_refused = refused_at.elapsed();
        eprintln!("the banner offered the kept changes {since_refused:?} after the 423 was seen");
        assert!(since_refused < Duration::from_secs(3), "{since_refused:?}");
        assert_eq!(alice.script(MARKED).await, json!(true), "the tab reloaded");

        // The newest entry is the JSON the last autosave sent, byte for byte; the banner
        // links to it.
        let newest = list["items"].as_array().unwrap().last().unwrap().clone();
        assert_eq!(newest["content_type"], "application/json", "{newest}");
        assert_eq!(newest["path"], "/docs/1/save", "{newest}");
        assert_eq!(newest["method"], "POST", "{newest}");
        let id = newest["id"].as_str().unwrap();
        let sent = alice.script("return window.lastSent;").await;
        let sent = sent.as_str().expect("the body the autosave sent");
        let kept = client()
            .get(latch.url(&format!("/__latch/stash/{id}?download=1")))
            .header(AUTHORIZATION, &alice_auth)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert_eq!(kept, sent);
        let text = alice
            .script("return document.getElementById('text').value;")
            .await;
        let kept: Value = serde_json::from_str(&kept).expect("JSON was kept");
        assert_eq!(kept["text"], text);
        let link = alice
            .script("var a = document.getElementById('latch-banner').shadowRoot.querySelector('a.stash'); return a && a.getAttribute('href');")
            .await;
        assert_eq!(link, json!(format!("/__latch/stash/{id}")));

        // The app never saw Alice's write.
        let saves = editor.saves().await;
        assert!(saves.iter().all(|s| s["user"] != "alice"), "{saves:?}");
        alice
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_423_page_waits_without_reloading_and_opens_once_when_the_page_frees() {
    let editor = &Editor::start();
    let latch = &editor_latch(editor);
    let bob_auth = format!("Bearer {}", token("bob", "Bob", &[]));
    let denied = "latch_requests_total{outcome=\"denied\"}";
    with_alice("the_423_page_waits", latch, |alice| async move {
        // Bob holds document 2 (from a client without a banner: his lease simply runs).
        let held = client()
            .get(latch.url("/docs/2/edit"))
            .header(AUTHORIZATION, &bob_auth)
            .send()
            .await
            .unwrap();
        assert_eq!(held.status(), 200);

        alice.goto(&latch.url("/docs/2/edit")).await;
        alice.wait_banner("locked", "Locked by Bob", PATIENCE).await;
        assert_eq!(latch.counter(denied).await, 1);
        assert_eq!(alice.script(MARK).await, json!(true));

        // Five seconds of Bob holding it: the 423 page stays as it is.
        tokio::time::sleep(Duration::from_secs(5)).await;
        assert_eq!(
            latch.counter(denied).await,
            1,
            "the 423 page was requested again"
        );
        assert_eq!(
            alice.script(MARKED).await,
            json!(true),
            "the 423 page reloaded"
        );
        let alices = |views: Vec<Value>| views.iter().filter(|v| v["user"] == "alice").count();
        assert_eq!(alices(editor.views().await), 0);

        // Bob lets go: the page loads itself, once, and is Alice's.
        assert_eq!(act(latch, "release", "doc:2", &bob_auth).await, 204);
        alice
            .wait_banner("editing", "You are editing", PATIENCE)
            .await;
        assert_eq!(
            alice
                .script("return !!document.getElementById('text');")
                .await,
            json!(true)
        );
        tokio::time::sleep(Duration::from_secs(3)).await;
        assert_eq!(
            alices(editor.views().await),
            1,
            "the editor was loaded more than once"
        );
        assert_eq!(latch.counter(denied).await, 1);
        alice
    })
    .await;
}
