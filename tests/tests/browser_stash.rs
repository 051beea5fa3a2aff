//! Nothing typed is lost, in a real browser: Alice types in a form, Bob (an admin) takes the
//! page over from his banner, Alice presses Save. Her write is refused, and the 423 page she
//! gets says her changes were kept, with links to view, copy and download them; the view is
//! plain text that cannot run, her banner offers "Your unsaved changes (1)", and Bob cannot
//! read any of it.
//!
//! Headless Chromium through ChromeDriver, as in `browser.rs`, on the test upstream's editor
//! (`/form/{id}`: a form that POSTs to its own protected URL).

use std::time::{Duration, Instant};

use fantoccini::Locator;
use serde_json::{json, Value};
use tests::browser::{Browser, Driver};
use tests::{token, Latch, LatchBuilder, Upstream};

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
