//! What a person sees: headless Chromium (through ChromeDriver) opening a protected page
//! through the real proxy. Alice edits, Bob is blocked and his 423 page turns into the page
//! itself when Alice leaves, and he is told live when an admin takes it over.
//!
//! Chromium and ChromeDriver are Debian's `chromium` and `chromium-driver` (`scripts/setup.sh
//! test` installs them). Each browser is its own WebDriver session with its own profile, so
//! each has its own cookie jar. On failure, screenshots of every open browser are written to
//! `artifacts/` at the repository root.

use std::future::Future;
use std::time::Duration;

use reqwest::header::{COOKIE, ORIGIN};
use reqwest::StatusCode;
use serde_json::json;
use tests::browser::Scene;
use tests::{client, token, token_ttl};

/// Every test page is protected; `/html/chunked` is held by one browser session rather than
/// by the user.
const RULES: &str = r#"
[[rule]]
id = "page"
pattern = "/html/(?P<kind>.+)"
resource = "page:{kind}"
mode = "block"
inject = true

[[rule]]
id = "tab"
pattern = "/html/chunked"
resource = "tab:chunked"
owner = "session"
priority = 10
"#;

const GRACE_SECONDS: u64 = 2;

/// How long the browser may take to show what the test waits for, when nothing else bounds it.
const PATIENCE: Duration = Duration::from_secs(10);

/// Runs `scenario` on a scene with this file's rules (see [`Scene::run`]).
async fn run<F>(test: &str, scenario: F)
where
    F: for<'s> FnOnce(&'s mut Scene) -> std::pin::Pin<Box<dyn Future<Output = ()> + Send + 's>>,
{
    let locks = format!("store = \"memory\"\nlease_seconds = 30\ngrace_seconds = {GRACE_SECONDS}");
    Scene::run(test, RULES, &locks, scenario).await;
}

/// The page every scenario opens.
fn page(s: &Scene) -> String {
    s.latch.url("/html/cl")
}

fn alice_token() -> String {
    token("alice", "Alice", &[])
}

fn bob_token() -> String {
    token("bob", "Bob", &[])
}

fn admin_token() -> String {
    token("root", "Admin", &["admin"])
}

/// Alice opens the page and edits; Bob is blocked.
async fn alice_edits_bob_is_blocked(s: &mut Scene) {
    let page = page(s);
    let (alice, bob) = (s.get("alice"), s.get("bob"));
    alice.goto(&page).await;
    assert!(
        alice.page_text().await.contains("Hello"),
        "Alice got the app's page"
    );
    alice
        .wait_banner(
            "editing",
            "You are editing — others see this as locked",
            PATIENCE,
        )
        .await;

    // Bob's address has a query of its own, which "open" must keep.
    bob.goto(&format!("{page}?from=bob")).await;
    let blocked = bob.page_text().await;
    assert!(
        blocked.contains("Locked") && blocked.contains("Alice") && !blocked.contains("Hello"),
        "Bob should get the 423 page, got: {blocked}"
    );
    bob.wait_banner("locked", "Locked by Alice since ", PATIENCE)
        .await;
    let banner = bob.banner().await.expect("Bob's banner");
    assert!(banner.text.contains("Request access"), "{banner:?}");
    assert!(
        !banner.text.contains("Take over"),
        "Bob may not take over: {banner:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blocked_user_sees_the_lock_change_hands_live() {
    run("blocked_user_sees_the_lock_change_hands_live", |s| {
        Box::pin(lock_changes_hands(s))
    })
    .await;
}

async fn lock_changes_hands(s: &mut Scene) {
    s.open("alice", &alice_token()).await;
    s.open("bob", &bob_token()).await;
    alice_edits_bob_is_blocked(s).await;

    s.get_mut("alice").close().await;
    let grace = Duration::from_secs(GRACE_SECONDS);
    let bob = s.get("bob");
    // The 423 page reloads itself once the lock is free.
    let took = bob
        .wait_banner("editing", "You are editing", grace + Duration::from_secs(3))
        .await;
    eprintln!("Bob had the page {took:?} after Alice closed her browser");
    assert!(
        bob.page_text().await.contains("Hello"),
        "Bob now has the app's page"
    );
    assert!(
        bob.url().await.ends_with("/html/cl?from=bob"),
        "{}",
        bob.url().await
    );

    let takeover = client()
        .post(s.latch.url("/__latch/takeover"))
        .header(COOKIE, format!("latch_token={}", admin_token()))
        .header(ORIGIN, format!("http://127.0.0.1:{}", s.latch.port))
        .body(json!({ "resource": "page:cl" }).to_string())
        .send()
        .await
        .expect("takeover");
    assert_eq!(takeover.status(), StatusCode::OK);
    bob.wait_banner(
        "taken_over",
        "Admin took over; your changes were not saved",
        Duration::from_secs(2),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn access_is_requested_handed_over_and_taken_over_from_the_banner() {
    run(
        "access_is_requested_handed_over_and_taken_over_from_the_banner",
        |s| Box::pin(hand_over_and_take_over(s)),
    )
    .await;
}

async fn hand_over_and_take_over(s: &mut Scene) {
    s.open("alice", &alice_token()).await;
    s.open("bob", &bob_token()).await;
    s.open("admin", &admin_token()).await;
    alice_edits_bob_is_blocked(s).await;
    let (alice, bob, admin) = (s.get("alice"), s.get("bob"), s.get("admin"));

    bob.click_banner_button("Request access").await;
    bob.wait_banner("locked", "Access requested", PATIENCE)
        .await;
    alice
        .wait_banner("editing", "Bob asks for access", Duration::from_secs(2))
        .await;
    alice.click_banner_button("Hand over").await;
    let took = bob
        .wait_banner("editing", "You are editing", Duration::from_secs(3))
        .await;
    eprintln!("Bob had the page {took:?} after the hand-over");
    // Bob's page claimed it at once, which Alice's banner shows.
    alice.wait_banner("locked", "Locked by Bob", PATIENCE).await;
    assert!(
        bob.url().await.ends_with("/html/cl?from=bob"),
        "{}",
        bob.url().await
    );

    // The admin is blocked too, but may take over from the banner and then gets the page.
    admin.goto(&format!("{}?from=admin", page(s))).await;
    admin
        .wait_banner("locked", "Locked by Bob since ", PATIENCE)
        .await;
    admin.click_banner_button("Take over").await;
    admin
        .wait_banner("editing", "You are editing", PATIENCE)
        .await;
    assert!(
        admin.page_text().await.contains("Hello"),
        "the admin now has the app's page"
    );
    assert!(
        admin.url().await.ends_with("/html/cl?from=admin"),
        "{}",
        admin.url().await
    );
    bob.wait_banner(
        "taken_over",
        "Admin took over; your changes were not saved",
        Duration::from_secs(2),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_session_is_shown_in_the_banner() {
    run("expired_session_is_shown_in_the_banner", |s| {
        Box::pin(session_expires(s))
    })
    .await;
}

async fn session_expires(s: &mut Scene) {
    s.open("carol", &token_ttl("carol", "Carol", &[], 8)).await;
    let carol = s.get("carol");
    carol.goto(&page(s)).await;
    carol
        .wait_banner("editing", "You are editing", PATIENCE)
        .await;
    carol
        .wait_banner(
            "expired",
            "Session expired — sign in again",
            Duration::from_secs(10),
        )
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn same_user_moves_a_session_lock_to_another_browser() {
    run("same_user_moves_a_session_lock_to_another_browser", |s| {
        Box::pin(move_here(s))
    })
    .await;
}

async fn move_here(s: &mut Scene) {
    s.open("laptop", &alice_token()).await;
    s.open("desktop", &alice_token()).await;
    let page = s.latch.url("/html/chunked");
    let (laptop, desktop) = (s.get("laptop"), s.get("desktop"));
    laptop.goto(&page).await;
    laptop
        .wait_banner("editing", "You are editing", PATIENCE)
        .await;

    desktop.goto(&page).await;
    assert!(
        !desktop.page_text().await.contains("Hello"),
        "the desktop is blocked"
    );
    desktop
        .wait_banner("other_session", "Open in another tab or window", PATIENCE)
        .await;
    desktop.click_banner_button("Move here").await;
    desktop
        .wait_banner("editing", "You are editing", PATIENCE)
        .await;
    assert!(
        desktop.page_text().await.contains("Hello"),
        "the desktop now has the page"
    );
    laptop
        .wait_banner("taken_over", "Alice took over", Duration::from_secs(2))
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn banner_runs_under_the_pages_nonce_policy() {
    run("banner_runs_under_the_pages_nonce_policy", |s| {
        Box::pin(nonce_page(s))
    })
    .await;
}

async fn nonce_page(s: &mut Scene) {
    s.open("alice", &alice_token()).await;
    let alice = s.get("alice");
    alice.goto(&s.latch.url("/html/csp-nonce")).await;
    alice
        .wait_banner("editing", "You are editing", PATIENCE)
        .await;
}
