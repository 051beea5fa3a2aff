//! Real browsers for the end-to-end tests: headless Chromium through ChromeDriver, one
//! WebDriver session and profile per person (so each has its own cookie jar), signed in with a
//! token cookie, and the reads every browser test makes of the Latch banner in its shadow root.
//! On failure a test can write screenshots to `artifacts/` at the repository root.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use fantoccini::cookies::Cookie;
use fantoccini::wd::WindowHandle;
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{json, Value};

use crate::chrome::ChromeDriver;
use crate::Latch;

/// ChromeDriver, with the browsers a test opens through it.
pub struct Driver {
    chrome: ChromeDriver,
}

impl Driver {
    pub async fn start() -> Driver {
        Driver {
            chrome: ChromeDriver::start().await,
        }
    }

    /// A new browser with a fresh profile, signed in as `jwt` on the proxy's site.
    pub async fn browser(&self, name: &'static str, latch: &Latch, jwt: &str) -> Browser {
        let browser = self.signed_out(name).await;
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

    /// A new browser signed in as `jwt` on `https://{host}:{port}`, Latch's HTTPS listener, with
    /// `host` resolved to loopback. It takes the test CA's certificates without knowing the CA
    /// (`--ignore-certificate-errors`), which is all this browser ever connects to.
    pub async fn browser_over_https(
        &self,
        name: &'static str,
        host: &str,
        port: u16,
        jwt: &str,
    ) -> Browser {
        let extra = [
            "--ignore-certificate-errors".to_string(),
            format!("--host-resolver-rules=MAP {host} 127.0.0.1"),
        ];
        let browser = self.signed_out_with(name, &extra).await;
        let mut cookie = Cookie::parse(format!("latch_token={jwt}; Path=/; SameSite=Lax; Secure"))
            .expect("a cookie");
        cookie.set_domain(host.to_owned());
        let signed_in = async {
            let script = format!("https://{host}:{port}/__latch/banner.js");
            browser.session().goto(&script).await?;
            browser.session().add_cookie(cookie).await
        }
        .await;
        if let Err(e) = signed_in {
            browser.quit().await;
            panic!("could not sign {name} in over https: {e}");
        }
        browser
    }

    /// A new browser with a fresh profile and no cookies: it signs in the way a person does.
    pub async fn signed_out(&self, name: &'static str) -> Browser {
        self.signed_out_with(name, &[]).await
    }

    async fn signed_out_with(&self, name: &'static str, extra: &[String]) -> Browser {
        let profile = tempfile::tempdir().expect("a profile dir");
        let mut args = vec![
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
        args.extend(extra.iter().cloned());
        let chromium = crate::chrome::chromium();
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
        Browser {
            name,
            session: Some(session),
            _profile: profile,
        }
    }
}

pub struct Browser {
    name: &'static str,
    /// `None` once the browser was closed on purpose.
    session: Option<Client>,
    _profile: tempfile::TempDir,
}

/// What the banner shows: its `data-state` and the text of its shadow root.
#[derive(Debug, Clone, PartialEq)]
pub struct Banner {
    pub state: String,
    pub text: String,
}

impl Browser {
    pub fn session(&self) -> &Client {
        self.session.as_ref().expect("the browser is open")
    }

    pub async fn goto(&self, url: &str) {
        self.session().goto(url).await.expect("navigate");
    }

    /// The current tab.
    pub async fn tab(&self) -> WindowHandle {
        self.session().window().await.expect("the current tab")
    }

    /// Opens `url` in a new tab and makes it the current one.
    pub async fn new_tab(&self, url: &str) -> WindowHandle {
        let created = self.session().new_window(true).await.expect("a new tab");
        self.switch(&created.handle).await;
        self.goto(url).await;
        created.handle
    }

    pub async fn switch(&self, tab: &WindowHandle) {
        self.session()
            .switch_to_window(tab.clone())
            .await
            .expect("switch tabs");
    }

    /// Closes the current tab, as a person closing it would, then goes to `back`.
    pub async fn close_tab(&self, back: &WindowHandle) {
        self.session().close_window().await.expect("close the tab");
        self.switch(back).await;
    }

    pub async fn banner(&self) -> Option<Banner> {
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
    pub async fn wait_banner(&self, state: &str, text: &str, within: Duration) -> Duration {
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

    pub async fn url(&self) -> String {
        self.session()
            .current_url()
            .await
            .map(|u| u.to_string())
            .unwrap_or_default()
    }

    pub async fn page_text(&self) -> String {
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
    pub async fn click_banner_button(&self, label: &str) {
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
    pub async fn close(&mut self) {
        if let Some(session) = self.session.take() {
            session.close().await.expect("close the browser");
        }
    }

    pub async fn screenshot(&self, test: &str) {
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

    /// The name the test gave this browser (used in messages and screenshot names).
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// Runs `js` in the page and returns what it returns.
    pub async fn script(&self, js: &str) -> Value {
        self.session().execute(js, vec![]).await.expect("a script")
    }

    /// The attribute `name` of the first element matching `css`.
    pub async fn attribute(&self, css: &str, name: &str) -> String {
        self.session()
            .find(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("{}: no {css}: {e}", self.name))
            .attr(name)
            .await
            .expect("an attribute")
            .unwrap_or_default()
    }

    /// Ends the browser at the end of a test, passed or failed: a session already gone is no
    /// further error.
    pub async fn quit(mut self) {
        if let Some(session) = self.session.take() {
            let _ = session.close().await;
        }
    }
}

/// A Latch with the memory store in front of the test upstream, ChromeDriver, and the browsers
/// a browser test opens, each found again by its person's name.
pub struct Scene {
    pub latch: Latch,
    _upstream: crate::Upstream,
    pub browsers: Vec<Browser>,
    /// Kept last so that it outlives the sessions closed before it.
    driver: Driver,
}

impl Scene {
    /// `rules` is the rule file; `locks` the `[locks]` section's body.
    pub async fn start(rules: &str, locks: &str) -> Scene {
        let upstream = crate::Upstream::start().await;
        let latch = crate::LatchBuilder::new(upstream.port())
            .rules(rules)
            .locks(locks)
            .start();
        let driver = Driver::start().await;
        Scene {
            latch,
            _upstream: upstream,
            browsers: Vec::new(),
            driver,
        }
    }

    /// Opens a browser signed in with `jwt`; it is then found by `name`.
    pub async fn open(&mut self, name: &'static str, jwt: &str) {
        let browser = self.driver.browser(name, &self.latch, jwt).await;
        self.browsers.push(browser);
    }

    pub fn get(&self, name: &str) -> &Browser {
        self.browsers
            .iter()
            .find(|b| b.name() == name)
            .expect("a browser of that name")
    }

    pub fn get_mut(&mut self, name: &str) -> &mut Browser {
        self.browsers
            .iter_mut()
            .find(|b| b.name() == name)
            .expect("a browser of that name")
    }

    async fn close_all(self) {
        for browser in self.browsers {
            browser.quit().await;
        }
    }

    /// Starts a scene and runs `scenario` on it; if it fails, saves a screenshot of every
    /// browser still open and prints the proxy's log first. The browsers are closed either
    /// way, so no Chromium outlives the test. Scenes run one at a time: several Chromiums at
    /// once on a small machine make the timings these tests assert depend on the scheduler.
    pub async fn run<F>(test: &str, rules: &str, locks: &str, scenario: F)
    where
        F: for<'s> FnOnce(
            &'s mut Scene,
        )
            -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send + 's>>,
    {
        use futures::FutureExt;
        static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
        let _turn = ONE_AT_A_TIME.lock().await;
        let mut scene = Scene::start(rules, locks).await;
        let outcome = std::panic::AssertUnwindSafe(scenario(&mut scene))
            .catch_unwind()
            .await;
        if outcome.is_err() {
            for browser in &scene.browsers {
                browser.screenshot(test).await;
            }
            eprintln!("the proxy's log:\n{}", scene.latch.log());
        }
        scene.close_all().await;
        if let Err(panic) = outcome {
            std::panic::resume_unwind(panic);
        }
    }
}
