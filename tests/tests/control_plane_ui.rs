//! The admin web UI in a real browser: headless Chromium (through ChromeDriver) against
//! `latch run` on the embedded rule file.
//!
//! An admin signs in with the site's cookie, writes a rule whose typo the editor flags beside
//! the field while they type, fixes and saves it, watches a lock taken through the proxy show
//! up in Active locks without reloading, breaks it, and finds the force release in the
//! Activity feed. Two admins editing one rule: the second save is refused with a conflict
//! message instead of overwriting the first.
//!
//! The console's comforts: locks in natural order, each lease counting down, filtered, and all
//! of one holder's released at once (and gone from the API); rules filtered and sorted, the
//! editor opening whole in the viewport over a long table, the change then shown in Activity
//! as a diff; a rule created from a request shape in Traffic that the proxy then enforces, and
//! one created from the editor app's page with its save endpoint, offered beside it, taken for
//! the same resource, so that the page's lock guards the save;
//! every view at 360 px wide with nothing sticking out of the page; a dark console for a
//! system that prefers dark.
//!
//! Chromium and ChromeDriver are Debian's `chromium` and `chromium-driver` (`scripts/setup.sh
//! test` installs them). On failure, a screenshot of every open browser is written to
//! `artifacts/` at the repository root.

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use fantoccini::cookies::Cookie;
use fantoccini::error::CmdError;
use fantoccini::{Client, ClientBuilder, Locator};
use futures::FutureExt;
use reqwest::header::{AUTHORIZATION, COOKIE};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use tests::chrome::ChromeDriver;
use tests::editor::Editor;
use tests::eventually;
use tests::node::{admin_bearer, Mode, Node, NodeConfig};
use tests::{client, token, Upstream};

/// How long the page may take to show what a step waits for. Generous, because Chromium
/// shares two cores with the proxy and the test; every wait polls and returns as soon as the
/// page is ready.
const PATIENCE: Duration = Duration::from_secs(15);

/// How soon a lock taken through the proxy must show in the open Active locks table: the
/// page hears of it over the event stream, and polls the list every second besides.
const LIVE: Duration = Duration::from_secs(5);

const POLL: Duration = Duration::from_millis(50);

/// Column of the Active locks table that counts down to when the lease lapses.
const EXPIRES_CELL: usize = 4;

/// The pattern of the rule under edit; its `resource` template gets a typo first.
const PATTERN: &str = "/echo/doc/(?P<id>[0-9]+)";

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

    /// A new browser with a fresh profile (so its own cookie jar), not yet signed in, with
    /// Chromium's usual switches and `extra`.
    async fn browser(&self, name: &'static str, extra: &[&str]) -> Browser {
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
            "--window-size=1280,900".into(),
            format!("--user-data-dir={}", profile.path().display()),
        ];
        args.extend(extra.iter().map(|a| a.to_string()));
        let chromium = tests::chrome::chromium();
        let mut caps = serde_json::Map::new();
        caps.insert(
            "goog:chromeOptions".into(),
            json!({ "binary": chromium, "args": args }),
        );
        // Dialogs are the test's to answer; left to ChromeDriver they would be dismissed.
        caps.insert("unhandledPromptBehavior".into(), json!("ignore"));
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

/// Is the element matching `arguments[0]` on screen? Then its text, else `null`.
const SHOWN_TEXT: &str = "const el = document.querySelector(arguments[0]);\
     return el && el.getClientRects().length > 0 ? el.innerText : null;";

/// Set once the admin is signed in; still there later means the page was never reloaded.
const MARK_PAGE: &str = "window.latchTestPage = 'first load';\
     performance.setResourceTimingBufferSize(100000);\
     return null;";
const READ_MARK: &str = "return window.latchTestPage || null;";

/// What the editor shows for one field: the error beside it and how the input is marked.
const FIELD_STATE: &str = "const field = arguments[0];\
     const slot = document.querySelector(`#rule-editor .error[data-for=\"${field}\"]`);\
     const input = document.querySelector(`#rule-editor [name=\"${field}\"]`);\
     return {\
       error: slot.textContent,\
       beside: slot.parentElement === input.closest('.field'),\
       invalid: input.getAttribute('aria-invalid'),\
       validity: document.getElementById('validity').textContent,\
       others: [...document.querySelectorAll('#rule-editor .error[data-for]')]\
         .filter((s) => s !== slot && s.textContent).map((s) => s.dataset.for + ': ' + s.textContent),\
     };";

/// How many times the page has fetched the locks list so far.
const LOCK_REFRESHES: &str = "return performance.getEntriesByType('resource')\
       .filter((e) => new URL(e.name).pathname === '/api/v1/locks').length;";

/// Tags the lock row for `arguments[0]`, to tell later whether it is still the same element.
const MARK_LOCK_ROW: &str =
    "document.querySelector(`#locks-table tr[data-resource=\"${arguments[0]}\"]`)\
       .latchTestRow = true;\
     return null;";

/// Whether the lock row for `arguments[0]` is still the element [`MARK_LOCK_ROW`] tagged.
const READ_LOCK_ROW_MARK: &str =
    "const row = document.querySelector(`#locks-table tr[data-resource=\"${arguments[0]}\"]`);\
     return Boolean(row && row.latchTestRow);";

/// When the lease of the lock row for `arguments[0]` lapses, as the row last heard it.
const LOCK_EXPIRY: &str =
    "const row = document.querySelector(`#locks-table tr[data-resource=\"${arguments[0]}\"]`);\
     return row ? row.dataset.expires : null;";

/// The cells of the row matching `arguments[0]`, if it is on screen.
const ROW_CELLS: &str = "const row = document.querySelector(arguments[0]);\
     return row && row.getClientRects().length > 0\
       ? [...row.cells].map((c) => c.innerText.trim()) : null;";

struct Browser {
    name: &'static str,
    session: Option<Client>,
    _profile: tempfile::TempDir,
}

impl Browser {
    fn session(&self) -> &Client {
        self.session.as_ref().expect("the browser is open")
    }

    async fn goto(&self, url: &str) {
        self.session().goto(url).await.expect("navigate");
    }

    async fn js(&self, script: &str, args: Vec<Value>) -> Result<Value, CmdError> {
        self.session().execute(script, args).await
    }

    /// Runs `script` until what it returns satisfies `ready`, and returns that. The page
    /// changes under the test (the locks list refreshes every second), so a failed run of
    /// the script counts as "not yet".
    async fn wait(
        &self,
        what: &str,
        script: &str,
        args: Vec<Value>,
        within: Duration,
        ready: impl Fn(&Value) -> bool,
    ) -> Value {
        let deadline = Instant::now() + within;
        loop {
            let last = self.js(script, args.clone()).await;
            if let Ok(value) = &last {
                if ready(value) {
                    return value.clone();
                }
            }
            if Instant::now() >= deadline {
                panic!(
                    "{}: {what} within {within:?}; last seen {last:?}",
                    self.name
                );
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Waits until the element matching `selector` is on screen with text that satisfies
    /// `ready`; returns the text.
    async fn wait_text(&self, selector: &str, ready: impl Fn(&str) -> bool) -> String {
        let what = format!("{selector} shown with the expected text");
        let value = self
            .wait(&what, SHOWN_TEXT, vec![json!(selector)], PATIENCE, |v| {
                v.as_str().is_some_and(&ready)
            })
            .await;
        value.as_str().unwrap_or_default().to_owned()
    }

    async fn wait_hidden(&self, selector: &str) {
        let what = format!("{selector} hidden");
        self.wait(&what, SHOWN_TEXT, vec![json!(selector)], PATIENCE, |v| {
            v.is_null()
        })
        .await;
    }

    /// The cells of the table row `selector` once it is on screen and `ready` accepts them.
    async fn wait_row(
        &self,
        selector: &str,
        within: Duration,
        ready: impl Fn(&[String]) -> bool,
    ) -> Vec<String> {
        let what = format!("row {selector} shown as expected");
        let value = self
            .wait(&what, ROW_CELLS, vec![json!(selector)], within, |v| {
                cells(v).is_some_and(|c| ready(&c))
            })
            .await;
        cells(&value).unwrap_or_default()
    }

    /// Clicks like a person: the element must be on screen and not covered. A click lost to
    /// a re-render or a passing toast is tried again.
    async fn click(&self, selector: &str) {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let clicked = async {
                self.session()
                    .find(Locator::Css(selector))
                    .await?
                    .click()
                    .await
            }
            .await;
            match clicked {
                Ok(()) => return,
                Err(e) if Instant::now() >= deadline => {
                    panic!("{}: could not click {selector}: {e}", self.name)
                }
                Err(_) => tokio::time::sleep(POLL).await,
            }
        }
    }

    /// Replaces what the input `selector` holds by typing `text`, key by key.
    async fn type_into(&self, selector: &str, text: &str) {
        let input = self
            .session()
            .find(Locator::Css(selector))
            .await
            .unwrap_or_else(|e| panic!("{}: no {selector}: {e}", self.name));
        input.clear().await.expect("clear the input");
        input.send_keys(text).await.expect("type");
    }

    /// Waits for the page's confirmation dialog, accepts it and returns its text.
    async fn accept_dialog(&self) -> String {
        let deadline = Instant::now() + PATIENCE;
        loop {
            match self.session().get_alert_text().await {
                Ok(text) => {
                    self.session()
                        .accept_alert()
                        .await
                        .expect("accept the dialog");
                    return text;
                }
                Err(e) if Instant::now() >= deadline => {
                    panic!("{}: no dialog appeared: {e}", self.name)
                }
                Err(_) => tokio::time::sleep(POLL).await,
            }
        }
    }

    /// Opens the control plane signed out, sees the sign-in panel, then signs in the way the
    /// protected site does: the token in the `latch_token` cookie on 127.0.0.1.
    async fn sign_in(&self, node: &Node, jwt: &str, name: &str) {
        self.goto(&node.api("/")).await;
        self.wait_text("#signin", |t| t.contains("Sign in")).await;
        let mut cookie =
            Cookie::parse(format!("latch_token={jwt}; Path=/; SameSite=Lax")).expect("a cookie");
        cookie.set_domain("127.0.0.1");
        self.session()
            .add_cookie(cookie)
            .await
            .expect("set the sign-in cookie");
        self.goto(&node.api("/")).await;
        self.wait_text("#who", |t| t == format!("Signed in as {name}"))
            .await;
        // The Activity tab is not shown yet, but its live stream is already open.
        self.wait(
            "the event stream open",
            "return document.getElementById('stream-state').textContent;",
            vec![],
            PATIENCE,
            |v| v == "live",
        )
        .await;
        self.js(MARK_PAGE, vec![]).await.expect("mark the page");
    }

    async fn assert_not_reloaded(&self) {
        assert_eq!(
            self.js(READ_MARK, vec![])
                .await
                .expect("read the page mark"),
            json!("first load"),
            "{}'s page was reloaded",
            self.name
        );
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
        if let Some(session) = self.session.take() {
            let _ = session.close().await;
        }
    }
}

fn cells(value: &Value) -> Option<Vec<String>> {
    value.as_array().map(|cells| {
        cells
            .iter()
            .map(|c| c.as_str().unwrap_or_default().to_owned())
            .collect()
    })
}

/// The app behind the proxy.
enum Backend {
    /// The test upstream, which echoes every request.
    Echo(Upstream),
    /// The document editor of `tests/apps/editor`.
    Editor(Editor),
}

impl Backend {
    fn port(&self) -> u16 {
        match self {
            Backend::Echo(upstream) => upstream.port(),
            Backend::Editor(editor) => editor.port(),
        }
    }
}

/// Everything one UI test runs against.
struct Scene {
    node: Node,
    backend: Backend,
    browsers: Vec<Browser>,
    /// Kept last so that it outlives the sessions closed before it.
    driver: Driver,
    _dir: tempfile::TempDir,
}

impl Scene {
    /// `apps`: `[[app]]` entries with `{upstream}` where the test upstream's URL goes; `None`:
    /// one app.
    async fn start(mode: Mode, apps: Option<&str>, editor: bool) -> Scene {
        let backend = match editor {
            true => Backend::Editor(
                tokio::task::spawn_blocking(Editor::start)
                    .await
                    .expect("start the editor"),
            ),
            false => Backend::Echo(Upstream::start().await),
        };
        let dir = tempfile::tempdir().expect("a temp dir");
        std::fs::write(dir.path().join("rules.toml"), "").expect("an empty rule file");
        let apps = apps.map(|a| {
            a.replace(
                "{upstream}",
                &format!("http://127.0.0.1:{}", backend.port()),
            )
        });
        let node = Node::start_with_apps(
            mode,
            NodeConfig {
                dir: dir.path(),
                upstream_port: backend.port(),
                rules_store: "rules.toml",
                poll_seconds: 1,
            },
            apps.as_deref(),
        );
        let driver = Driver::start().await;
        Scene {
            node,
            backend,
            browsers: Vec::new(),
            driver,
            _dir: dir,
        }
    }

    /// Opens a browser and signs it in as the admin `user` called `name`.
    async fn open(&mut self, label: &'static str, user: &str, name: &str) {
        self.open_with(label, user, name, &[]).await;
    }

    /// [`Scene::open`] with more Chromium switches.
    async fn open_with(&mut self, label: &'static str, user: &str, name: &str, extra: &[&str]) {
        let browser = self.driver.browser(label, extra).await;
        self.browsers.push(browser);
        let jwt = token(user, name, &["admin"]);
        self.get(label).sign_in(&self.node, &jwt, name).await;
    }

    fn get(&self, label: &str) -> &Browser {
        self.browsers
            .iter()
            .find(|b| b.name == label)
            .expect("a browser of that name")
    }

    /// The API as a script sees it, for checking what the UI did.
    async fn api_get(&self, path: &str) -> Value {
        let response = client()
            .get(self.node.api(path))
            .header(AUTHORIZATION, admin_bearer())
            .send()
            .await
            .expect("the control plane answers");
        assert_eq!(response.status(), StatusCode::OK, "GET {path}");
        response.json().await.expect("a JSON body")
    }

    /// Creates a rule through the API, as a script would.
    async fn create_rule(&self, rule: Value) {
        let response = client()
            .post(self.node.api("/api/v1/rules"))
            .header(AUTHORIZATION, admin_bearer())
            .json(&rule)
            .send()
            .await
            .expect("the control plane answers");
        assert_eq!(response.status(), StatusCode::CREATED, "create {rule}");
    }

    async fn close_all(self) {
        for browser in self.browsers {
            browser.quit().await;
        }
    }
}

/// Starts a scene and runs `scenario` on it; if it fails, saves a screenshot of every browser
/// and prints the node's log. The browsers are closed either way, so no Chromium outlives the
/// test.
async fn run<F>(test: &str, mode: Mode, scenario: F)
where
    F: for<'s> FnOnce(&'s mut Scene) -> std::pin::Pin<Box<dyn Future<Output = ()> + Send + 's>>,
{
    run_with_apps(test, mode, None, scenario).await;
}

/// [`run`], with `[[app]]` entries (see [`Scene::start`]).
async fn run_with_apps<F>(test: &str, mode: Mode, apps: Option<&str>, scenario: F)
where
    F: for<'s> FnOnce(&'s mut Scene) -> std::pin::Pin<Box<dyn Future<Output = ()> + Send + 's>>,
{
    run_scene(test, mode, apps, false, scenario).await;
}

/// [`run`], with the document editor of `tests/apps/editor` behind the proxy.
async fn run_with_editor<F>(test: &str, scenario: F)
where
    F: for<'s> FnOnce(&'s mut Scene) -> std::pin::Pin<Box<dyn Future<Output = ()> + Send + 's>>,
{
    run_scene(test, Mode::Run, None, true, scenario).await;
}

async fn run_scene<F>(test: &str, mode: Mode, apps: Option<&str>, editor: bool, scenario: F)
where
    F: for<'s> FnOnce(&'s mut Scene) -> std::pin::Pin<Box<dyn Future<Output = ()> + Send + 's>>,
{
    // One scene at a time: one or two Chromiums are plenty for a small machine.
    static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    let _turn = ONE_AT_A_TIME.lock().await;
    let started = Instant::now();
    let mut scene = Scene::start(mode, apps, editor).await;
    let outcome = AssertUnwindSafe(scenario(&mut scene)).catch_unwind().await;
    if outcome.is_err() {
        for browser in &scene.browsers {
            browser.screenshot(test).await;
        }
        eprintln!("the node's log:\n{}", scene.node.log());
    }
    scene.close_all().await;
    eprintln!("{test} took {:?}", started.elapsed());
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
}

/// What the upstream was told about a request signed with `jwt`: the lock resource, if one
/// was claimed.
async fn resource_claimed(node: &Node, jwt: &str, path: &str) -> Option<String> {
    let response = client()
        .get(node.proxy_url(path))
        .header(COOKIE, format!("latch_token={jwt}"))
        .send()
        .await
        .ok()?;
    if response.status() != StatusCode::OK {
        return None;
    }
    let echo: Value = response.json().await.ok()?;
    echo["headers"]["x-latch-resource"]
        .as_str()
        .map(str::to_owned)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admin_fixes_a_rule_then_watches_and_breaks_a_lock_live() {
    run(
        "an_admin_fixes_a_rule_then_watches_and_breaks_a_lock_live",
        Mode::Run,
        |s| Box::pin(rule_then_lock(s)),
    )
    .await;
}

async fn rule_then_lock(s: &mut Scene) {
    s.open("admin", "root", "Root").await;
    let ui = s.get("admin");
    ui.wait_text("#rules-empty", |t| t.contains("No rules yet"))
        .await;

    // A new rule whose resource names a capture the pattern does not have.
    ui.click("#new-rule").await;
    ui.wait_text("#editor-title", |t| t == "New rule").await;
    ui.type_into("#rule-editor [name=id]", "doc").await;
    ui.type_into("#rule-editor [name=pattern]", PATTERN).await;
    let typed = Instant::now();
    ui.type_into("#rule-editor [name=resource]", "doc:{di}")
        .await;
    let flagged = ui
        .wait(
            "the resource typo flagged",
            FIELD_STATE,
            vec![json!("resource")],
            PATIENCE,
            |v| {
                v["error"]
                    .as_str()
                    .is_some_and(|e| e.contains("unknown capture 'di'"))
            },
        )
        .await;
    eprintln!(
        "the typo was flagged {:?} after typing began",
        typed.elapsed()
    );
    assert!(
        flagged["error"].as_str().is_some_and(|e| e.contains("id")),
        "the error names the captures there are: {flagged}"
    );
    assert_eq!(flagged["beside"], true, "the error sits beside its input");
    assert_eq!(flagged["invalid"], "true", "the input is marked invalid");
    assert_eq!(flagged["others"], json!([]), "no other field is blamed");
    assert_eq!(flagged["validity"], "1 problem(s)");
    assert_eq!(
        s.api_get("/api/v1/rules").await["rules"],
        json!([]),
        "validating as you type stores nothing"
    );

    // Fixing the typo clears the error, still without saving.
    ui.type_into("#rule-editor [name=resource]", "doc:{id}")
        .await;
    let fixed = ui
        .wait(
            "the fixed rule shown valid",
            FIELD_STATE,
            vec![json!("resource")],
            PATIENCE,
            |v| v["validity"] == "Valid",
        )
        .await;
    assert_eq!(fixed["error"], "", "{fixed}");
    assert_eq!(fixed["invalid"], "false", "{fixed}");
    assert_eq!(fixed["others"], json!([]), "{fixed}");

    ui.click("#save-rule").await;
    ui.wait_hidden("#rule-editor").await;
    let row = ui
        .wait_row("#rules-table tr[data-id=\"doc\"]", PATIENCE, |_| true)
        .await;
    assert_eq!(&row[..5], ["doc", PATTERN, "doc:{id}", "block", "0"]);
    ui.wait_text("#toast", |t| t.contains("Rule doc saved"))
        .await;
    let stored = s.api_get("/api/v1/rules/doc").await;
    assert_eq!(stored["resource"], "doc:{id}");
    assert_eq!(stored["pattern"], PATTERN);

    // Nobody holds anything yet.
    ui.click("nav a[data-tab=\"locks\"]").await;
    ui.wait_text("#locks-empty", |t| t.contains("Nobody holds a lock"))
        .await;

    // Bob opens document 7 through the proxy once the rule has reached it.
    let bob = token("bob", "Bob", &[]);
    let claimed = eventually(Duration::from_secs(5), || async {
        resource_claimed(&s.node, &bob, "/echo/doc/7").await
    })
    .await;
    assert_eq!(
        claimed.as_deref(),
        Some("doc:7"),
        "the saved rule reaches the proxy and Bob's request claims doc:7"
    );
    let taken = Instant::now();
    let lock = ui
        .wait_row("#locks-table tr[data-resource=\"doc:7\"]", LIVE, |_| true)
        .await;
    eprintln!(
        "the lock showed in Active locks {:?} after it was taken",
        taken.elapsed()
    );
    assert_eq!(&lock[..3], ["doc:7", "Bob (bob)", "doc"]);
    assert!(!lock[5].is_empty(), "the instance is shown: {lock:?}");
    ui.wait_hidden("#locks-empty").await;
    ui.assert_not_reloaded().await;

    // The list refreshes every second; an unchanged row must stay the same element, or a
    // click landing during a refresh would be lost.
    ui.js(MARK_LOCK_ROW, vec![json!("doc:7")])
        .await
        .expect("mark the row");
    let refreshes = ui
        .js(LOCK_REFRESHES, vec![])
        .await
        .expect("count the refreshes");
    let later = refreshes.as_u64().unwrap_or_default() + 2;
    ui.wait(
        "two more refreshes of the locks list",
        LOCK_REFRESHES,
        vec![],
        PATIENCE,
        |v| v.as_u64().is_some_and(|n| n >= later),
    )
    .await;
    assert_eq!(
        ui.js(READ_LOCK_ROW_MARK, vec![json!("doc:7")])
            .await
            .expect("read the row"),
        true,
        "the refresh rebuilt an unchanged row"
    );
    // Bob's next request renews the lease: the new expiry shows in the same row.
    assert_eq!(
        resource_claimed(&s.node, &bob, "/echo/doc/7")
            .await
            .as_deref(),
        Some("doc:7")
    );
    let expires = ui
        .js(LOCK_EXPIRY, vec![json!("doc:7")])
        .await
        .expect("read the expiry");
    ui.wait(
        "the renewed expiry in the row",
        LOCK_EXPIRY,
        vec![json!("doc:7")],
        LIVE,
        |v| !v.is_null() && *v != expires,
    )
    .await;
    assert_eq!(
        ui.js(READ_LOCK_ROW_MARK, vec![json!("doc:7")])
            .await
            .expect("read the row"),
        true,
        "a renewal rebuilt the row instead of updating its expiry"
    );

    // Force release, confirming the dialog.
    ui.click("#locks-table tr[data-resource=\"doc:7\"] button.force-release")
        .await;
    let question = ui.accept_dialog().await;
    assert!(
        question.contains("doc:7") && question.contains("Bob"),
        "the dialog names the lock and its holder: {question}"
    );
    ui.wait_text("#toast", |t| t.contains("doc:7 released"))
        .await;
    ui.wait_text("#locks-empty", |t| t.contains("Nobody holds a lock"))
        .await;
    assert_eq!(
        ui.js(SHOWN_TEXT, vec![json!("#locks-table tr[data-resource]")])
            .await
            .expect("look for lock rows"),
        Value::Null,
        "the released lock left the table"
    );
    assert_eq!(s.api_get("/api/v1/locks").await["locks"], json!([]));

    // The Activity feed got the release live, naming the admin and the former holder.
    ui.click("nav a[data-tab=\"activity\"]").await;
    let release = ui
        .wait_text("#events li[data-kind=\"force_released\"]", |_| true)
        .await;
    assert!(
        release.contains("force released")
            && release.contains("doc:7")
            && release.contains("by root")
            && release.contains("was Bob"),
        "{release}"
    );
    let claim = ui
        .wait_text("#events li[data-kind=\"claimed\"]", |_| true)
        .await;
    assert!(
        claim.contains("doc:7") && claim.contains("by bob"),
        "{claim}"
    );
    assert_eq!(
        ui.js(
            "return document.querySelector('#events li[data-kind=\"force_released\"]')\
                 .classList.contains('fresh');",
            vec![],
        )
        .await
        .expect("read the feed"),
        true,
        "the release came over the live stream, not a page load"
    );
    ui.assert_not_reloaded().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_admins_editing_one_rule_the_later_save_is_refused_with_a_conflict() {
    run(
        "two_admins_editing_one_rule_the_later_save_is_refused_with_a_conflict",
        Mode::ControlPlane,
        |s| Box::pin(conflicting_edits(s)),
    )
    .await;
}

const DOC_ROW: &str = "#rules-table tr[data-id=\"doc\"]";
const PRIORITY_CELL: usize = 4;

async fn conflicting_edits(s: &mut Scene) {
    let created = client()
        .post(s.node.api("/api/v1/rules"))
        .header(AUTHORIZATION, admin_bearer())
        .json(&json!({ "id": "doc", "pattern": PATTERN, "resource": "doc:{id}" }))
        .send()
        .await
        .expect("the control plane answers");
    assert_eq!(created.status(), StatusCode::CREATED);

    s.open("first", "root", "Root").await;
    s.open("second", "ops", "Ops").await;
    let (first, second) = (s.get("first"), s.get("second"));
    for ui in [first, second] {
        ui.wait_row(DOC_ROW, PATIENCE, |_| true).await;
        ui.click(&format!("{DOC_ROW} button.edit")).await;
        ui.wait_text("#editor-title", |t| t == "Edit rule doc")
            .await;
    }

    first.type_into("#rule-editor [name=priority]", "5").await;
    first.click("#save-rule").await;
    first.wait_hidden("#rule-editor").await;
    first
        .wait_row(DOC_ROW, PATIENCE, |c| c[PRIORITY_CELL] == "5")
        .await;

    // The second admin still edits the version they opened.
    second.type_into("#rule-editor [name=priority]", "9").await;
    second.click("#save-rule").await;
    let message = second.wait_text("#editor-message", |t| !t.is_empty()).await;
    assert!(
        message.contains("Someone else changed rule doc")
            && message.contains("Your changes were not saved"),
        "a clear conflict message: {message}"
    );
    second.wait_text("#rule-editor", |_| true).await;
    assert_eq!(
        second
            .js(
                "return document.querySelector('#rule-editor [name=priority]').value;",
                vec![]
            )
            .await
            .expect("read the field"),
        "9",
        "what the second admin typed is still in the form"
    );
    assert_eq!(
        s.api_get("/api/v1/rules/doc").await["priority"],
        5,
        "the first admin's save was not overwritten"
    );

    // Their list shows the first admin's change live; reopening the rule from it and saving
    // again goes through.
    second
        .wait_row(DOC_ROW, PATIENCE, |c| c[PRIORITY_CELL] == "5")
        .await;
    second.click("#cancel-edit").await;
    second.wait_hidden("#rule-editor").await;
    second.click(&format!("{DOC_ROW} button.edit")).await;
    second.wait_hidden("#editor-message").await;
    assert_eq!(
        second
            .js(
                "return document.querySelector('#rule-editor [name=priority]').value;",
                vec![]
            )
            .await
            .expect("read the field"),
        "5",
        "the reopened rule is the current version"
    );
    second.type_into("#rule-editor [name=priority]", "9").await;
    second.click("#save-rule").await;
    second.wait_hidden("#rule-editor").await;
    second
        .wait_row(DOC_ROW, PATIENCE, |c| c[PRIORITY_CELL] == "9")
        .await;
    assert_eq!(s.api_get("/api/v1/rules/doc").await["priority"], 9);
    second.assert_not_reloaded().await;
}

/// The `arguments[1]` attribute of every element matching `arguments[0]` that is on screen, in
/// document order.
const SHOWN_ROWS: &str = "return [...document.querySelectorAll(arguments[0])]\
       .filter((row) => row.getClientRects().length > 0)\
       .map((row) => row.getAttribute(arguments[1]));";

/// The text of cell `arguments[1]` of every row of `arguments[0]` on screen.
const SHOWN_COLUMN: &str = "return [...document.querySelectorAll(arguments[0])]\
       .filter((row) => row.getClientRects().length > 0)\
       .map((row) => row.cells[arguments[1]].innerText.trim());";

/// Where the element `arguments[0]` is, and the size of the viewport.
const BOX: &str = "const r = document.querySelector(arguments[0]).getBoundingClientRect();\
     return { top: r.top, bottom: r.bottom, left: r.left, right: r.right,\
              width: document.documentElement.clientWidth, height: window.innerHeight };";

/// Every element on screen that sticks out of the viewport sideways without being inside a
/// box that scrolls (or clips) sideways, and how wide the document is.
const OVERFLOW: &str = "const width = document.documentElement.clientWidth;\
     const contained = (el) => {\
       for (let p = el.parentElement; p && p !== document.body; p = p.parentElement) {\
         if (['auto', 'scroll', 'hidden'].includes(getComputedStyle(p).overflowX)) return true;\
       }\
       return false;\
     };\
     const out = [];\
     for (const el of document.body.querySelectorAll('*')) {\
       if (el.getClientRects().length === 0) continue;\
       const r = el.getBoundingClientRect();\
       if ((r.right > width + 0.5 || r.left < -0.5) && !contained(el)) {\
         out.push(`${el.tagName.toLowerCase()}#${el.id}.${el.className} [${Math.round(r.left)}, ${Math.round(r.right)}]`);\
       }\
     }\
     return { width, scroll: document.documentElement.scrollWidth, out };";

/// The seconds a countdown such as "in 27 s" or "in 1 min 05 s" shows.
fn seconds_left(text: &str) -> Option<u64> {
    let rest = text.strip_prefix("in ")?.strip_suffix(" s")?;
    match rest.split_once(" min ") {
        Some((minutes, seconds)) => {
            Some(minutes.parse::<u64>().ok()? * 60 + seconds.parse::<u64>().ok()?)
        }
        None => rest.parse().ok(),
    }
}

fn strings(value: &Value) -> Vec<String> {
    cells(value).unwrap_or_default()
}

impl Browser {
    /// Waits until the `attribute` of the rows of `selector` on screen satisfies `ready`.
    async fn wait_rows(
        &self,
        what: &str,
        selector: &str,
        attribute: &str,
        ready: impl Fn(&[String]) -> bool,
    ) -> Vec<String> {
        let value = self
            .wait(
                what,
                SHOWN_ROWS,
                vec![json!(selector), json!(attribute)],
                PATIENCE,
                |v| cells(v).is_some_and(|rows| ready(&rows)),
            )
            .await;
        strings(&value)
    }

    async fn value_of(&self, selector: &str) -> Value {
        self.js(
            "return document.querySelector(arguments[0]).value;",
            vec![json!(selector)],
        )
        .await
        .expect("read the field")
    }
}

/// Status of a GET through the proxy as the user of `jwt`.
async fn status_for(node: &Node, jwt: &str, path: &str) -> StatusCode {
    client()
        .get(node.proxy_url(path))
        .header(COOKIE, format!("latch_token={jwt}"))
        .header("Sec-Fetch-Dest", "document")
        .header("Accept", "text/html")
        .send()
        .await
        .expect("the proxy answers")
        .status()
}

const LOCK_ROWS: &str = "#locks-table tbody tr";

/// A display name that would be an element, were it put into the page as markup.
const HOSTILE_NAME: &str = "Carol <img src=x onerror=alert(1)>";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn locks_sort_naturally_count_down_filter_and_release_all_of_one_holder() {
    run(
        "locks_sort_naturally_count_down_filter_and_release_all_of_one_holder",
        Mode::Run,
        |s| Box::pin(locks_view(s)),
    )
    .await;
}

async fn locks_view(s: &mut Scene) {
    s.create_rule(json!({ "id": "doc", "pattern": PATTERN, "resource": "doc:{id}" }))
        .await;
    let bob = token("bob", "Bob", &[]);
    // A display name is whatever the identity provider says; it is shown as text, never markup.
    let carol = token("carol", HOSTILE_NAME, &[]);
    for (jwt, path, resource) in [
        (&bob, "/echo/doc/10", "doc:10"),
        (&bob, "/echo/doc/2", "doc:2"),
        (&carol, "/echo/doc/3", "doc:3"),
        (&bob, "/echo/doc/1", "doc:1"),
    ] {
        let claimed = eventually(Duration::from_secs(5), || async {
            resource_claimed(&s.node, jwt, path).await
        })
        .await;
        assert_eq!(claimed.as_deref(), Some(resource), "{path}");
    }

    s.open("admin", "root", "Root").await;
    let ui = s.get("admin");
    // "Test a path" as a given user: what the proxy would do to Carol's request for doc 1
    // now that Bob holds it, and to Bob's own.
    ui.type_into("#match-path", "/echo/doc/1?draft=1").await;
    ui.type_into("#match-user", "carol").await;
    ui.click("#match-form button[type=submit]").await;
    ui.wait_text("#match-result", |t| {
        t.contains("resource doc:1") && t.contains("For carol now: 423 Locked (bob holds it)")
    })
    .await;
    ui.type_into("#match-user", "bob").await;
    ui.click("#match-form button[type=submit]").await;
    ui.wait_text("#match-result", |t| t.contains("For bob now: holds it"))
        .await;
    ui.click("nav a[data-tab=\"locks\"]").await;
    let order = ui
        .wait_rows("all four locks listed", LOCK_ROWS, "data-resource", |r| {
            r.len() == 4
        })
        .await;
    assert_eq!(
        order,
        ["doc:1", "doc:2", "doc:3", "doc:10"],
        "natural order, not code-point order"
    );

    let doc3 = ui
        .wait_row("#locks-table tr[data-resource=\"doc:3\"]", PATIENCE, |_| {
            true
        })
        .await;
    assert_eq!(doc3[1], format!("{HOSTILE_NAME} (carol)"));
    assert_eq!(
        ui.js(
            "return document.querySelectorAll('#locks-table img, #bulk-holder img').length;",
            vec![]
        )
        .await
        .expect("look for markup"),
        0,
        "the name was put in as text"
    );

    // Nobody renews doc:1 now; its countdown goes down on its own, second by second.
    let row = "#locks-table tr[data-resource=\"doc:1\"]";
    let mut seen: Vec<u64> = Vec::new();
    let deadline = Instant::now() + PATIENCE;
    while seen.len() < 3 {
        let cells = ui.wait_row(row, PATIENCE, |_| true).await;
        let left = seconds_left(&cells[EXPIRES_CELL])
            .unwrap_or_else(|| panic!("a countdown: {:?}", cells[EXPIRES_CELL]));
        if seen.last() != Some(&left) {
            seen.push(left);
        }
        assert!(Instant::now() < deadline, "the countdown moved: {seen:?}");
        tokio::time::sleep(POLL).await;
    }
    assert!(seen[0] <= 30, "within the 30 s lease: {seen:?}");
    assert!(
        seen.windows(2).all(|w| w[0] > w[1]),
        "it only goes down: {seen:?}"
    );

    // The filter looks at resources and holders, ignoring case.
    ui.type_into("#locks-filter", "carol").await;
    ui.wait_rows("only Carol's lock", LOCK_ROWS, "data-resource", |r| {
        r == ["doc:3"]
    })
    .await;
    ui.type_into("#locks-filter", "DOC:1").await;
    ui.wait_rows("doc:1 and doc:10", LOCK_ROWS, "data-resource", |r| {
        r == ["doc:1", "doc:10"]
    })
    .await;
    ui.type_into("#locks-filter", "nobody").await;
    ui.wait_text("#locks-none-match", |t| t.contains("No lock matches"))
        .await;
    ui.type_into("#locks-filter", "").await;
    ui.wait_rows("every lock again", LOCK_ROWS, "data-resource", |r| {
        r.len() == 4
    })
    .await;
    ui.wait_hidden("#locks-none-match").await;

    // Release all of Bob's locks at once.
    ui.session()
        .find(Locator::Css("#bulk-holder"))
        .await
        .expect("the holder list")
        .select_by_value("bob")
        .await
        .expect("pick Bob");
    ui.wait_text("#release-holder", |t| t == "Release all of Bob's locks")
        .await;
    ui.click("#release-holder").await;
    let question = ui.accept_dialog().await;
    assert!(
        question.contains("all 3 locks held by Bob (bob)")
            && question.contains("doc:1, doc:2, doc:10")
            && !question.contains("doc:3"),
        "the dialog names the holder and each lock: {question}"
    );
    ui.wait_text("#toast", |t| t.contains("Released 3 of Bob's locks"))
        .await;
    let left: Vec<Value> = s.api_get("/api/v1/locks").await["locks"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(left.len(), 1, "{left:?}");
    assert_eq!(left[0]["resource"], "doc:3");
    assert_eq!(left[0]["holder"]["id"], "carol");
    ui.wait_rows("only Carol's lock left", LOCK_ROWS, "data-resource", |r| {
        r == ["doc:3"]
    })
    .await;
    // Bob's pages are free for someone else.
    let taken = eventually(Duration::from_secs(5), || async {
        resource_claimed(&s.node, &carol, "/echo/doc/10").await
    })
    .await;
    assert_eq!(taken.as_deref(), Some("doc:10"));
    ui.assert_not_reloaded().await;
}

const RULE_ROWS: &str = "#rules-table tbody tr";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rules_filter_sort_and_edit_in_place_and_activity_shows_the_change_as_a_diff() {
    run(
        "rules_filter_sort_and_edit_in_place_and_activity_shows_the_change_as_a_diff",
        Mode::ControlPlane,
        |s| Box::pin(rules_view(s)),
    )
    .await;
}

/// The priority rule `r{n}` is created with.
fn priority_of(n: u32) -> u32 {
    (n * 7) % 11
}

async fn rules_view(s: &mut Scene) {
    const MANY: u32 = 30;
    for n in 1..=MANY {
        s.create_rule(json!({
            "id": format!("r{n}"),
            "pattern": format!("/area{n}/(?P<id>[0-9]+)"),
            "resource": format!("thing{n}:{{id}}"),
            "priority": priority_of(n),
        }))
        .await;
    }
    s.open("admin", "root", "Root").await;
    let ui = s.get("admin");
    ui.wait_rows("every rule listed", RULE_ROWS, "data-id", |r| {
        r.len() == MANY as usize
    })
    .await;
    let natural: Vec<String> = (1..=MANY).map(|n| format!("r{n}")).collect();

    // Sorting by id is natural; a second click reverses it.
    ui.click("#rules-table th[data-sort=id] button").await;
    ui.wait_rows("sorted by id", RULE_ROWS, "data-id", |r| r == natural)
        .await;
    let sorted = ui
        .js(
            "return document.querySelector('#rules-table th[data-sort=id]').getAttribute('aria-sort');",
            vec![],
        )
        .await
        .expect("read the head");
    assert_eq!(sorted, "ascending");
    ui.click("#rules-table th[data-sort=id] button").await;
    let reversed: Vec<String> = natural.iter().rev().cloned().collect();
    ui.wait_rows("sorted by id, down", RULE_ROWS, "data-id", |r| {
        r == reversed
    })
    .await;
    ui.click("#rules-table th[data-sort=priority] button").await;
    let priorities = ui
        .wait(
            "sorted by priority",
            SHOWN_COLUMN,
            vec![json!(RULE_ROWS), json!(PRIORITY_CELL)],
            PATIENCE,
            |v| {
                let p: Vec<u32> = strings(v).iter().filter_map(|c| c.parse().ok()).collect();
                p.len() == MANY as usize && p.windows(2).all(|w| w[0] <= w[1])
            },
        )
        .await;
    assert_eq!(strings(&priorities)[0], "0");

    // The filter looks at ids, patterns and resources.
    ui.type_into("#rules-filter", "r1").await;
    let mut ones = ui
        .wait_rows("the rules whose id has r1", RULE_ROWS, "data-id", |r| {
            r.len() == 11
        })
        .await;
    ones.sort();
    let mut expected: Vec<String> = ["r1".to_owned()]
        .into_iter()
        .chain((10..=19).map(|n| format!("r{n}")))
        .collect();
    expected.sort();
    assert_eq!(ones, expected);
    ui.type_into("#rules-filter", "area7/").await;
    ui.wait_rows("the rule by pattern", RULE_ROWS, "data-id", |r| r == ["r7"])
        .await;
    ui.type_into("#rules-filter", "THING12:").await;
    ui.wait_rows("the rule by resource", RULE_ROWS, "data-id", |r| {
        r == ["r12"]
    })
    .await;
    ui.wait_text("#rules-count", |t| t == "1 of 30").await;
    ui.type_into("#rules-filter", "no-such-rule").await;
    ui.wait_text("#rules-none-match", |t| t.contains("No rule matches"))
        .await;
    ui.type_into("#rules-filter", "").await;

    // Keyboard focus shows: Tab from the filter lands on the first column's head, outlined.
    ui.session()
        .find(Locator::Css("#rules-filter"))
        .await
        .expect("the filter")
        .send_keys("\u{E004}")
        .await
        .expect("press Tab");
    let focus = ui
        .js(
            "const el = document.activeElement;\
             const style = getComputedStyle(el);\
             return [el.closest('th') ? el.closest('th').dataset.sort : el.tagName,\
                     style.outlineStyle, parseFloat(style.outlineWidth)];",
            vec![],
        )
        .await
        .expect("read the focus");
    assert_eq!(focus[0], "id", "{focus}");
    assert_eq!(focus[1], "solid", "the focus is outlined: {focus}");
    assert!(focus[2].as_f64().is_some_and(|w| w >= 2.0), "{focus}");
    ui.click("#rules-table th[data-sort=id] button").await;
    ui.wait_rows("every rule, by id", RULE_ROWS, "data-id", |r| r == natural)
        .await;

    // Editing the first of many rules: the editor opens where the admin is, whole, with the
    // focus in it; not below a long table.
    ui.click("#rules-table tbody tr:first-child button.edit")
        .await;
    ui.wait_text("#editor-title", |t| t == "Edit rule r1").await;
    let place = ui
        .js(BOX, vec![json!("#rule-dialog")])
        .await
        .expect("measure");
    let at = |k: &str| place[k].as_f64().unwrap_or(f64::NAN);
    assert!(
        at("top") >= 0.0
            && at("left") >= 0.0
            && at("bottom") <= at("height")
            && at("right") <= at("width"),
        "the editor is within the viewport: {place}"
    );
    let table = ui
        .js(BOX, vec![json!("#rules-table")])
        .await
        .expect("measure");
    assert!(
        table["bottom"].as_f64().unwrap_or_default() > at("height"),
        "the table is longer than the window, so the old place was off screen: {table}"
    );
    assert_eq!(
        ui.js(
            "return document.activeElement.closest('#rule-dialog') !== null\
                 && document.activeElement.name;",
            vec![]
        )
        .await
        .expect("read the focus"),
        "pattern",
        "the focus is in the editor"
    );
    assert_eq!(
        ui.value_of("#rule-editor [name=resource]").await,
        "thing1:{id}"
    );
    ui.type_into("#rule-editor [name=priority]", "42").await;
    ui.click("#save-rule").await;
    ui.wait_hidden("#rule-editor").await;
    assert_eq!(s.api_get("/api/v1/rules/r1").await["priority"], 42);

    // Activity: the change is a diff of the one field that changed.
    ui.click("nav a[data-tab=\"activity\"]").await;
    ui.wait_text("#events li[data-kind=\"rule_updated\"]", |t| {
        t.contains("rule r1")
    })
    .await;
    let diff = ui
        .js(
            "return [...document.querySelectorAll('#events li[data-kind=\"rule_updated\"] .diff dd')]\
                 .map((dd) => [dd.dataset.field, dd.querySelector('del').textContent,\
                               dd.querySelector('ins').textContent]);",
            vec![],
        )
        .await
        .expect("read the diff");
    assert_eq!(
        diff,
        json!([["priority", priority_of(1).to_string(), "42"]]),
        "only what changed, before and after"
    );

    // The text filter narrows what is shown.
    let feed = "#events li";
    let all = ui
        .wait_rows("the whole feed", feed, "data-kind", |r| {
            r.len() == MANY as usize + 1
        })
        .await;
    assert_eq!(all[0], "rule_updated", "newest first");
    ui.type_into("#event-filters [name=text]", "rule r12").await;
    let kinds = ui
        .wait_rows("only r12's creation", feed, "data-kind", |r| r.len() == 1)
        .await;
    assert_eq!(kinds, ["rule_created"]);
    ui.type_into("#event-filters [name=text]", "PRIORITY").await;
    ui.wait_rows("only the update", feed, "data-kind", |r| {
        r == ["rule_updated"]
    })
    .await;
    ui.type_into("#event-filters [name=text]", "nothing like this")
        .await;
    ui.wait_text("#events-none-match", |t| t.contains("No shown event"))
        .await;
    ui.assert_not_reloaded().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn traffic_view_creates_a_rule_the_proxy_enforces_and_every_view_fits_360_px() {
    run(
        "traffic_view_creates_a_rule_the_proxy_enforces_and_every_view_fits_360_px",
        Mode::Run,
        |s| Box::pin(traffic_view(s)),
    )
    .await;
}

const SHAPE_ROWS: &str = "#shapes-table tbody tr";
const PAGES_SHAPE: &str = "GET /echo/pages/{int}/edit/";

async fn traffic_view(s: &mut Scene) {
    s.open("admin", "root", "Root").await;
    let alice = token("alice", "Alice", &[]);
    // The node notes every request (`proxy.shape_sample_every = 1`), so each shape shows.
    for i in 0..80 {
        let path = format!("/echo/pages/{i}/edit/");
        assert_eq!(status_for(&s.node, &alice, &path).await, StatusCode::OK);
    }
    for i in 0..24 {
        let path = format!("/echo/other/{i}");
        assert_eq!(status_for(&s.node, &alice, &path).await, StatusCode::OK);
    }

    let ui = s.get("admin");
    ui.click("nav a[data-tab=\"traffic\"]").await;
    // Proxies publish every 5 seconds and the view asks every 5.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let rows = strings(
            &ui.js(SHOWN_ROWS, vec![json!(SHAPE_ROWS), json!("data-shape")])
                .await
                .expect("read the shapes"),
        );
        if rows.iter().any(|r| r == PAGES_SHAPE)
            && rows.iter().any(|r| r.starts_with("GET /echo/other/"))
        {
            break;
        }
        assert!(Instant::now() < deadline, "both shapes listed: {rows:?}");
        ui.click("#shapes-refresh").await;
        tokio::time::sleep(Duration::from_millis(500)).await;
    }

    // The prefix filter.
    ui.type_into("#shapes-filter [name=prefix]", "/echo/pages/")
        .await;
    ui.wait_rows("only the pages", SHAPE_ROWS, "data-shape", |r| {
        r == [PAGES_SHAPE]
    })
    .await;
    let row = format!("#shapes-table tr[data-shape=\"{PAGES_SHAPE}\"]");
    let cells = ui.wait_row(&row, PATIENCE, |_| true).await;
    assert_eq!(cells[0], "GET");
    assert_eq!(cells[1], "/echo/pages/{int}/edit/");
    let count: u64 = cells[2]
        .trim_start_matches("≈ ")
        .parse()
        .unwrap_or_else(|_| panic!("a count: {cells:?}"));
    assert!(count > 0, "{cells:?}");
    assert_eq!(&cells[3..6], ["page", "no", "none"]);
    assert!(
        cells[6].contains("/echo/pages/{id:int}/edit/") && cells[6].contains("pages:{id}"),
        "the suggestion: {cells:?}"
    );

    // Create rule: the editor opens with the suggestion, and the id from its noun.
    ui.click(&format!("{row} button.create-rule")).await;
    ui.wait_text("#editor-title", |t| t == "New rule").await;
    assert_eq!(ui.value_of("#rule-editor [name=id]").await, "pages");
    assert_eq!(
        ui.value_of("#rule-editor [name=pattern]").await,
        "/echo/pages/{id:int}/edit/"
    );
    assert_eq!(
        ui.value_of("#rule-editor [name=resource]").await,
        "pages:{id}"
    );
    ui.wait_text("#validity", |t| t == "Valid").await;
    ui.click("#save-rule").await;
    ui.wait_hidden("#rule-editor").await;
    let stored = s.api_get("/api/v1/rules/pages").await;
    assert_eq!(stored["pattern"], "/echo/pages/{id:int}/edit/");
    assert_eq!(stored["resource"], "pages:{id}");

    // The proxy enforces it: Alice's page 3 is hers, Bob is turned away.
    let claimed = eventually(Duration::from_secs(5), || async {
        resource_claimed(&s.node, &alice, "/echo/pages/3/edit/").await
    })
    .await;
    assert_eq!(claimed.as_deref(), Some("pages:3"));
    let bob = token("bob", "Bob", &[]);
    assert_eq!(
        status_for(&s.node, &bob, "/echo/pages/3/edit/").await,
        StatusCode::LOCKED
    );
    assert_eq!(
        status_for(&s.node, &bob, "/echo/pages/4/edit/").await,
        StatusCode::OK,
        "each page is locked apart"
    );
    // Seen again, the shape names the rule that matched it.
    for _ in 0..16 {
        resource_claimed(&s.node, &alice, "/echo/pages/3/edit/").await;
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let cells = ui.wait_row(&row, PATIENCE, |_| true).await;
        if cells[5] == "pages" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the shape names its rule: {cells:?}"
        );
        ui.click("#shapes-refresh").await;
        tokio::time::sleep(Duration::from_millis(500)).await;
    }

    // 360 px wide: nothing sticks out sideways but inside a box that scrolls.
    ui.session()
        .set_window_size(360, 780)
        .await
        .expect("resize the window");
    ui.wait(
        "a 360 px viewport",
        "return document.documentElement.clientWidth;",
        vec![],
        PATIENCE,
        |v| v.as_f64().is_some_and(|w| w <= 360.0),
    )
    .await;
    for tab in ["rules", "locks", "activity", "traffic"] {
        ui.click(&format!("nav a[data-tab=\"{tab}\"]")).await;
        ui.wait_text(&format!("#view-{tab}"), |_| true).await;
        let fit = ui.js(OVERFLOW, vec![]).await.expect("measure");
        assert_eq!(fit["out"], json!([]), "{tab} at 360 px: {fit}");
        assert!(
            fit["scroll"].as_f64() <= fit["width"].as_f64(),
            "{tab}: the page scrolls sideways: {fit}"
        );
    }
    ui.click("nav a[data-tab=\"rules\"]").await;
    ui.click("#new-rule").await;
    ui.wait_text("#editor-title", |t| t == "New rule").await;
    let fit = ui.js(OVERFLOW, vec![]).await.expect("measure");
    assert_eq!(fit["out"], json!([]), "the editor at 360 px: {fit}");
    let place = ui
        .js(BOX, vec![json!("#rule-dialog")])
        .await
        .expect("measure");
    assert!(
        place["left"].as_f64().is_some_and(|l| l >= 0.0)
            && place["right"].as_f64() <= place["width"].as_f64(),
        "the editor fits the width: {place}"
    );
    ui.assert_not_reloaded().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rule_from_the_editors_page_takes_its_save_endpoint_for_the_same_lock() {
    run_with_editor(
        "a_rule_from_the_editors_page_takes_its_save_endpoint_for_the_same_lock",
        |s| Box::pin(same_resource(s)),
    )
    .await;
}

/// Status of `method path` through the proxy as the user of `jwt`: a page load for GET, the
/// editor's form save for POST.
async fn send(node: &Node, jwt: &str, method: Method, path: &str) -> StatusCode {
    let request = client()
        .request(method.clone(), node.proxy_url(path))
        .header(COOKIE, format!("latch_token={jwt}"));
    let request = match method {
        Method::GET => request
            .header("Sec-Fetch-Dest", "document")
            .header("Accept", "text/html"),
        _ => request.form(&[("text", "changed")]),
    };
    request.send().await.expect("the proxy answers").status()
}

const EDIT_ROW: &str = "#shapes-table tr[data-shape=\"GET /docs/{int}/edit\"]";

/// The related paths the editor offers: `[shape, ticked]` of each, in order.
const RELATED: &str = "return [...document.querySelectorAll('#related-list input')]\
                       .map((box) => [box.dataset.shape, box.checked]);";

/// Alice opens document 1's editor through the proxy until it gives her the lock (once the
/// proxies have the rules), as the lock list shows.
async fn alice_holds_document_1(s: &Scene, alice: &str) {
    let held = eventually(Duration::from_secs(10), || async {
        assert_eq!(
            send(&s.node, alice, Method::GET, "/docs/1/edit").await,
            StatusCode::OK
        );
        let locks = s.api_get("/api/v1/locks").await;
        locks["locks"]
            .as_array()?
            .iter()
            .find(|lock| lock["resource"] == "docs:1")
            .map(|lock| lock["holder"]["id"].clone())
    })
    .await;
    assert_eq!(held, Some(json!("alice")));
}

async fn same_resource(s: &mut Scene) {
    s.open("admin", "root", "Root").await;
    let alice = token("alice", "Alice", &[]);
    // Alice browses the editor: its pages, previews and views, and saves.
    for doc in [1, 2, 3] {
        for path in ["/edit", "/preview", "/preview", ""] {
            let path = format!("/docs/{doc}{path}");
            assert_eq!(
                send(&s.node, &alice, Method::GET, &path).await,
                StatusCode::OK,
                "{path}"
            );
        }
        let path = format!("/docs/{doc}/save");
        assert_eq!(
            send(&s.node, &alice, Method::POST, &path).await,
            StatusCode::OK
        );
    }
    // The control plane relates the editor's page to the other paths of its document.
    let related = eventually(Duration::from_secs(30), || async {
        let list = s.api_get("/api/v1/shapes?prefix=/docs/").await;
        let edit = list["shapes"]
            .as_array()?
            .iter()
            .find(|shape| shape["method"] == "GET" && shape["shape"] == "/docs/{int}/edit")?;
        (edit["related"].as_array()?.len() == 3).then(|| edit["related"].clone())
    })
    .await
    .expect("the editor's shapes reach the control plane");
    let shapes: Vec<&Value> = related
        .as_array()
        .into_iter()
        .flatten()
        .map(|r| &r["shape"])
        .collect();
    assert_eq!(
        shapes,
        ["/docs/{int}/save", "/docs/{int}/preview", "/docs/{int}"],
        "writes first, then the most seen"
    );
    assert_eq!(related[0]["methods"], json!(["POST"]));
    assert_eq!(related[0]["pattern"], "/docs/{id:int}/save");

    let ui = s.get("admin");
    ui.click("nav a[data-tab=\"traffic\"]").await;
    ui.type_into("#shapes-filter [name=prefix]", "/docs/").await;
    ui.wait_row(EDIT_ROW, PATIENCE, |_| true).await;
    ui.click(&format!("{EDIT_ROW} button.create-rule")).await;
    ui.wait_text("#editor-title", |t| t == "New rule").await;
    assert_eq!(ui.value_of("#rule-editor [name=id]").await, "docs");
    assert_eq!(
        ui.value_of("#rule-editor [name=resource]").await,
        "docs:{id}"
    );
    // Offered: the save, ticked as a write; the preview and the view, not ticked.
    let offered = ui.js(RELATED, vec![]).await.expect("read the offer");
    assert_eq!(
        offered,
        json!([
            ["/docs/{int}/save", true],
            ["/docs/{int}/preview", false],
            ["/docs/{int}", false]
        ])
    );
    let legend = ui.wait_text("#related legend", |_| true).await;
    assert_eq!(legend, "Same resource?");
    ui.wait_text("#validity", |t| t == "Valid").await;
    ui.click("#save-rule").await;
    ui.wait_hidden("#rule-editor").await;

    // Two rules, one resource; the preview and the view stay open.
    let list = s.api_get("/api/v1/rules").await;
    let ids: Vec<&Value> = list["rules"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|r| &r["id"])
        .collect();
    assert_eq!(ids, ["docs", "docs-save"]);
    let save = s.api_get("/api/v1/rules/docs-save").await;
    assert_eq!(save["pattern"], "/docs/{id:int}/save");
    assert_eq!(save["resource"], "docs:{id}");
    assert!(save["methods"].is_null(), "every method: {save}");
    assert_eq!(save["mode"], "block");

    // Alice opens document 1's editor, which takes its lock once the proxies have the rules.
    alice_holds_document_1(s, &alice).await;
    // Bob's save of that document is refused with the page's lock; his preview passes.
    let bob = token("bob", "Bob", &[]);
    assert_eq!(
        send(&s.node, &bob, Method::POST, "/docs/1/save").await,
        StatusCode::LOCKED
    );
    assert_eq!(
        send(&s.node, &bob, Method::GET, "/docs/1/preview").await,
        StatusCode::OK
    );
    assert_eq!(
        send(&s.node, &alice, Method::POST, "/docs/1/save").await,
        StatusCode::OK
    );
    assert_eq!(
        send(&s.node, &bob, Method::POST, "/docs/2/save").await,
        StatusCode::OK,
        "another document"
    );
    let Backend::Editor(editor) = &s.backend else {
        panic!("the editor is behind the proxy");
    };
    let saves = editor.saves().await;
    let last_of_1 = saves
        .iter()
        .rev()
        .find(|save| save["id"] == 1)
        .expect("a save of 1");
    assert_eq!(last_of_1["user"], "alice");
    assert!(
        last_of_1["fence"].is_string(),
        "saved under the lock: {last_of_1}"
    );
    assert!(
        !saves
            .iter()
            .any(|save| save["id"] == 1 && save["user"] == "bob"),
        "Bob never saved document 1: {saves:?}"
    );
    ui.assert_not_reloaded().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_preview_of_a_rule_from_traffic_names_the_holder_and_the_refused_as_the_proxy_then_does(
) {
    run_with_editor(
        "the_preview_of_a_rule_from_traffic_names_the_holder_and_the_refused_as_the_proxy_then_does",
        |s| Box::pin(preview(s)),
    )
    .await;
}

/// The per-user lines of the rule editor's preview.
const PREVIEW_LINES: &str = "return [...document.querySelectorAll('#preview-users li')]\
                             .map((li) => li.textContent);";

/// `[user, request, treatment]` of each row of the preview's request list, oldest first.
const PREVIEW_ROWS: &str = "return [...document.querySelectorAll('#preview-requests tbody tr')]\
       .reverse().map((tr) => [tr.cells[1].textContent, tr.cells[2].textContent,\
                               tr.cells[4].dataset.treatment]);";

/// Alice, then Bob, open document 1 of the editor and save it, before any rule. The preview of
/// a rule for the editor's page (and its save, ticked as the same resource) says Alice would
/// have held `docs:1` and Bob been refused twice with 423; once the rule is saved the proxy does
/// just that. The preview fits 360 px and is dark in a dark console.
async fn preview(s: &mut Scene) {
    s.open_with(
        "admin",
        "root",
        "Root",
        &["--blink-settings=preferredColorScheme=0"],
    )
    .await;
    let alice = token("alice", "Alice", &[]);
    let bob = token("bob", "Bob", &[]);
    for (jwt, method, path) in [
        (&alice, Method::GET, "/docs/1/edit"),
        (&alice, Method::POST, "/docs/1/save"),
        (&bob, Method::GET, "/docs/1/edit"),
        (&bob, Method::POST, "/docs/1/save"),
    ] {
        assert_eq!(
            send(&s.node, jwt, method, path).await,
            StatusCode::OK,
            "{path}"
        );
        // One millisecond apart at least, so the replay's time order is this order.
        tokio::time::sleep(Duration::from_millis(5)).await;
    }

    // The publication that has all four requests carries their sample too.
    eventually(Duration::from_secs(30), || async {
        let list = s.api_get("/api/v1/shapes?prefix=/docs/").await;
        let edit = list["shapes"]
            .as_array()?
            .iter()
            .find(|shape| shape["method"] == "GET" && shape["shape"] == "/docs/{int}/edit")?;
        (edit["count"] == 2 && edit["related"][0]["count"] == 2).then_some(())
    })
    .await
    .expect("all four requests reach the control plane");

    let ui = s.get("admin");
    ui.click("nav a[data-tab=\"traffic\"]").await;
    ui.type_into("#shapes-filter [name=prefix]", "/docs/").await;
    ui.wait_row(EDIT_ROW, PATIENCE, |_| true).await;
    ui.click(&format!("{EDIT_ROW} button.create-rule")).await;
    ui.wait_text("#editor-title", |t| t == "New rule").await;
    let offered = ui.js(RELATED, vec![]).await.expect("read the offer");
    assert_eq!(offered, json!([["/docs/{int}/save", true]]));

    let lines = ui
        .wait(
            "the preview's lines",
            PREVIEW_LINES,
            vec![],
            PATIENCE,
            |v| v.as_array().is_some_and(|lines| lines.len() == 2),
        )
        .await;
    assert_eq!(
        lines,
        json!([
            "alice holds docs:1",
            "bob: 2 requests refused 423, alice held it"
        ])
    );
    let rows = ui
        .js(PREVIEW_ROWS, vec![])
        .await
        .expect("read the requests");
    assert_eq!(
        rows,
        json!([
            ["alice", "GET /docs/1/edit", "claimed"],
            ["alice", "POST /docs/1/save", "renewed"],
            ["bob", "GET /docs/1/edit", "locked"],
            ["bob", "POST /docs/1/save", "locked"]
        ])
    );
    // Without the save ticked, Bob's save is not the rule's: one refusal is left.
    ui.click("#related-list input").await;
    ui.wait(
        "the preview without the save",
        PREVIEW_LINES,
        vec![],
        PATIENCE,
        |v| {
            v == &json!([
                "alice holds docs:1",
                "bob: 1 request refused 423, alice held it"
            ])
        },
    )
    .await;
    ui.click("#related-list input").await;
    ui.wait(
        "the preview with the save again",
        PREVIEW_LINES,
        vec![],
        PATIENCE,
        |v| {
            v == &json!([
                "alice holds docs:1",
                "bob: 2 requests refused 423, alice held it"
            ])
        },
    )
    .await;

    // Dark, like the rest of the console, and readable.
    let painted = ui
        .js(
            LUMINANCE,
            vec![json!("#preview-users"), json!("#preview-requests")],
        )
        .await
        .expect("read the colours");
    for colours in painted.as_array().cloned().unwrap_or_default() {
        let background = colours[0].as_f64().unwrap_or(1.0);
        let text = colours[1].as_f64().unwrap_or(0.0);
        assert!(background < 0.05, "a dark background: {colours}");
        assert!(
            (text + 0.05) / (background + 0.05) >= 4.5,
            "readable: {colours}"
        );
    }
    // 360 px wide: the preview scrolls inside its own box, the page does not.
    ui.session()
        .set_window_size(360, 780)
        .await
        .expect("resize the window");
    ui.wait(
        "a 360 px viewport",
        "return document.documentElement.clientWidth;",
        vec![],
        PATIENCE,
        |v| v.as_f64().is_some_and(|w| w <= 360.0),
    )
    .await;
    let fit = ui.js(OVERFLOW, vec![]).await.expect("measure");
    assert_eq!(fit["out"], json!([]), "the preview at 360 px: {fit}");
    for part in ["#rule-dialog", "#preview-users"] {
        let place = ui.js(BOX, vec![json!(part)]).await.expect("measure");
        assert!(
            place["left"].as_f64().is_some_and(|l| l >= 0.0)
                && place["right"].as_f64() <= place["width"].as_f64(),
            "{part} fits the width: {place}"
        );
    }

    // Saved, the rules do what the preview said: Alice holds document 1, Bob is refused.
    ui.wait_text("#validity", |t| t == "Valid").await;
    ui.click("#save-rule").await;
    ui.wait_hidden("#rule-editor").await;
    alice_holds_document_1(s, &alice).await;
    assert_eq!(
        send(&s.node, &alice, Method::POST, "/docs/1/save").await,
        StatusCode::OK
    );
    assert_eq!(
        send(&s.node, &bob, Method::GET, "/docs/1/edit").await,
        StatusCode::LOCKED
    );
    assert_eq!(
        send(&s.node, &bob, Method::POST, "/docs/1/save").await,
        StatusCode::LOCKED
    );
    ui.assert_not_reloaded().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_system_in_dark_mode_gets_a_dark_console() {
    run(
        "a_system_in_dark_mode_gets_a_dark_console",
        Mode::ControlPlane,
        |s| Box::pin(dark_mode(s)),
    )
    .await;
}

/// The relative luminance (WCAG) of each of `arguments`' elements' background and text, as
/// the page paints them.
const LUMINANCE: &str = "const lum = (css) => {\
       const [r, g, b] = css.match(/[0-9.]+/g).slice(0, 3).map((v) => {\
         const c = Number(v) / 255;\
         return c <= 0.03928 ? c / 12.92 : ((c + 0.055) / 1.055) ** 2.4;\
       });\
       return 0.2126 * r + 0.7152 * g + 0.0722 * b;\
     };\
     return [...arguments].map((selector) => {\
       const style = getComputedStyle(document.querySelector(selector));\
       return [lum(style.backgroundColor), lum(style.color)];\
     });";

async fn dark_mode(s: &mut Scene) {
    s.create_rule(json!({ "id": "doc", "pattern": PATTERN, "resource": "doc:{id}" }))
        .await;
    // Blink's switch for the colour scheme the system prefers: 0 is dark.
    s.open_with(
        "admin",
        "root",
        "Root",
        &["--blink-settings=preferredColorScheme=0"],
    )
    .await;
    let ui = s.get("admin");
    ui.wait_row(DOC_ROW, PATIENCE, |_| true).await;
    assert_eq!(
        ui.js(
            "return matchMedia('(prefers-color-scheme: dark)').matches;",
            vec![]
        )
        .await
        .expect("ask the page"),
        true,
        "the browser prefers dark"
    );
    let painted = ui
        .js(
            LUMINANCE,
            vec![json!("body"), json!("#rules-table"), json!(".bar")],
        )
        .await
        .expect("read the colours");
    for (part, colours) in ["body", "rules table", "header"]
        .iter()
        .zip(painted.as_array().cloned().unwrap_or_default())
    {
        let background = colours[0].as_f64().unwrap_or(1.0);
        let text = colours[1].as_f64().unwrap_or(0.0);
        assert!(background < 0.05, "{part}: a dark background: {colours}");
        // WCAG contrast ratio of at least 4.5:1 for the text.
        assert!(
            (text + 0.05) / (background + 0.05) >= 4.5,
            "{part}: readable text: {colours}"
        );
    }
}

/// Two apps on one proxy, both on the test upstream.
const TWO_APPS: &str = "[[app]]\nname = \"wiki\"\nhosts = [\"wiki.test\"]\nupstream = \"{upstream}\"\n\n\
                        [[app]]\nname = \"crm\"\nhosts = [\"crm.test\"]\nupstream = \"{upstream}\"\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_several_apps_the_console_shows_the_app_of_each_rule_and_lock() {
    run_with_apps(
        "with_several_apps_the_console_shows_the_app_of_each_rule_and_lock",
        Mode::Run,
        Some(TWO_APPS),
        |s| Box::pin(several_apps(s)),
    )
    .await;
}

/// A rule scoped to crm shows "crm" in the rules table's App column, a rule for every app says
/// so, and a lock taken through crm's host shows crm in Active locks.
async fn several_apps(s: &mut Scene) {
    s.create_rule(json!({ "id": "doc", "pattern": PATTERN, "resource": "doc:{id}", "app": "crm" }))
        .await;
    s.create_rule(json!({ "id": "page", "pattern": "/echo/page/(?P<id>[0-9]+)" }))
        .await;
    s.open("admin", "root", "Root").await;
    let ui = &s.browsers[0];
    let doc = ui
        .wait_row("#rules-table tr[data-id=\"doc\"]", PATIENCE, |c| {
            c.get(6).is_some_and(|app| app == "crm")
        })
        .await;
    assert_eq!(&doc[..3], ["doc", PATTERN, "doc:{id}"]);
    let page = ui
        .wait_row("#rules-table tr[data-id=\"page\"]", PATIENCE, |c| {
            c.len() > 6
        })
        .await;
    assert_eq!(page[6], "every app");
    ui.wait_text("#rules-table th.app-column", |t| t == "App")
        .await;

    // Alice opens document 3 on crm's host: the lock is crm's, and the console says so.
    let alice = token("alice", "Alice", &[]);
    let claimed = eventually(Duration::from_secs(5), || async {
        let response = client()
            .get(s.node.proxy_url("/echo/doc/3"))
            .header("Host", "crm.test")
            .header(COOKIE, format!("latch_token={alice}"))
            .send()
            .await
            .ok()?;
        let echo: Value = response.json().await.ok()?;
        echo["headers"]["x-latch-resource"]
            .as_str()
            .map(str::to_owned)
    })
    .await;
    assert_eq!(claimed.as_deref(), Some("crm/doc:3"));
    ui.click("nav a[data-tab=\"locks\"]").await;
    let lock = ui
        .wait_row("#locks-table tr[data-resource=\"crm/doc:3\"]", LIVE, |c| {
            c.get(6).is_some_and(|app| app == "crm")
        })
        .await;
    assert_eq!(&lock[..3], ["crm/doc:3", "Alice (alice)", "doc"]);
}
