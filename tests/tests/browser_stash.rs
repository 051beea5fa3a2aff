//! Nothing typed is lost, in a real browser: Alice types in a form, Bob (an admin) takes the
//! page over from his banner, Alice presses Save. Her write is refused, and the 423 page she
//! gets says her changes were kept, with links to view, copy and download them; the view is
//! plain text that cannot run, her banner offers "Your unsaved changes (1)", and Bob cannot
//! read any of it.
//!
//! Headless Chromium through ChromeDriver, as in `browser.rs`, on the test upstream's editor
//! (`/form/{id}`: a form that POSTs to its own protected URL).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use fantoccini::cookies::Cookie;
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{json, Value};
use tests::chrome::ChromeDriver;
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

/// ChromeDriver, with the browsers this test opens through it.
struct Driver {
    chrome: ChromeDriver,
}

impl Driver {
    async fn start() -> Driver {
        Driver {
            chrome: ChromeDriver::start().await,
        }
    }

    /// A new browser with a fresh profile, signed in as `jwt` on the proxy's site.
    async fn browser(&self, name: &'static str, latch: &Latch, jwt: &str) -> Browser {
        let profile = tempfile::tempdir().expect("a profile dir");
        let args = [
            "--headless=new".to_string(),
            "--no-sandbox".into(),
            "--disable-gpu".into(),
            "--disable-dev-shm-usage".into(),
            "--disable-background-networking".into(),
            "--disable-component-update".into(),
            "--disable-sync".into(),
            "--no-first-run".into(),
            "--window-size=1200,800".into(),
            format!("--user-data-dir={}", profile.path().display()),
        ];
        let chromium = tests::chrome::chromium();
        let mut caps = serde_json::Map::new();
        caps.insert(
            "goog:chromeOptions".into(),
            json!({ "binary": chromium, "args": args }),
        );
        let session = ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
            .capabilities(caps)
            .connect(&self.chrome.url())
            .await
            .expect("a WebDriver session");
        let browser = Browser {
            name,
            session: Some(session),
            _profile: profile,
        };
        // A cookie can only be set for the site the browser is on.
        // fantoccini sends `SameSite=None` unless told otherwise, which Chrome refuses without
        // `Secure`; Lax is what a sign-in cookie on plain HTTP gets.
        let mut cookie =
            Cookie::parse(format!("latch_token={jwt}; Path=/; SameSite=Lax")).expect("a cookie");
        cookie.set_domain("127.0.0.1");
        let signed_in = async {
            browser
                .session()
                .goto(&latch.url("/__latch/banner.js"))
                .await?;
            browser.session().add_cookie(cookie).await
        }
        .await;
        if let Err(e) = signed_in {
            browser.quit().await;
            panic!("could not sign {name} in: {e}");
        }
        browser
    }
}

struct Browser {
    name: &'static str,
    /// `None` once the browser was closed on purpose.
    session: Option<Client>,
    _profile: tempfile::TempDir,
}

/// What the banner shows: its `data-state` and the text of its shadow root.
#[derive(Debug, Clone, PartialEq)]
struct Banner {
    state: String,
    text: String,
}

impl Browser {
    fn session(&self) -> &Client {
        self.session.as_ref().expect("the browser is open")
    }

    async fn goto(&self, url: &str) {
        self.session().goto(url).await.expect("navigate");
    }

    async fn banner(&self) -> Option<Banner> {
        let read = "var b = document.getElementById('latch-banner');\
                    return b && b.shadowRoot ? [b.dataset.state, b.shadowRoot.textContent] : null;";
        match self.session().execute(read, vec![]).await.ok()? {
            Value::Array(v) => Some(Banner {
                state: v.first()?.as_str()?.to_string(),
                text: v.get(1)?.as_str()?.to_string(),
            }),
            _ => None,
        }
    }

    /// Waits until the banner is in `state` with `text` in it; returns how long that took.
    async fn wait_banner(&self, state: &str, text: &str, within: Duration) -> Duration {
        let start = Instant::now();
        let mut last = None;
        while start.elapsed() < within {
            last = self.banner().await;
            if last
                .as_ref()
                .is_some_and(|b| b.state == state && b.text.contains(text))
            {
                return start.elapsed();
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!(
            "{}'s banner did not show {state:?} with {text:?} within {within:?}; last seen {last:?}",
            self.name
        );
    }

    async fn page_text(&self) -> String {
        self.session()
            .execute(
                "return document.body ? document.body.innerText : '';",
                vec![],
            )
            .await
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default()
    }

    /// Clicks the banner's button labelled `label`.
    async fn click_banner_button(&self, label: &str) {
        let banner = self
            .session()
            .find(Locator::Id("latch-banner"))
            .await
            .expect("the banner");
        let root = banner.shadow_root().await.expect("its shadow root");
        let buttons = root
            .find_all(Locator::Css("button"))
            .await
            .expect("the banner's buttons");
        let mut labels = Vec::new();
        for button in buttons {
            let text = button.text().await.unwrap_or_default();
            if text.trim() == label {
                button.click().await.expect("click");
                return;
            }
            labels.push(text);
        }
        panic!(
            "{}'s banner has no {label:?} button, only {labels:?}",
            self.name
        );
    }

    /// Closes the whole browser, as a person closing the window would.
    async fn close(&mut self) {
        if let Some(session) = self.session.take() {
            session.close().await.expect("close the browser");
        }
    }

    async fn screenshot(&self, test: &str) {
        let Some(session) = &self.session else {
            return;
        };
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("..")
            .join("artifacts");
        if std::fs::create_dir_all(&dir).is_err() {
            return;
        }
        if let Ok(png) = session.screenshot().await {
            let file = dir.join(format!("{test}-{}.png", self.name));
            if std::fs::write(&file, png).is_ok() {
                eprintln!("screenshot: {}", file.display());
            }
        }
    }

    async fn quit(mut self) {
        self.close().await;
    }
}

impl Browser {
    async fn script(&self, js: &str) -> Value {
        self.session().execute(js, vec![]).await.expect("a script")
    }

    async fn attribute(&self, css: &str, name: &str) -> String {
        self.session()
            .find(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("{}: no {css}: {e}", self.name))
            .attr(name)
            .await
            .expect("an attribute")
            .unwrap_or_default()
    }
}

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
