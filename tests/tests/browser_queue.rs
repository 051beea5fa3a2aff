//! The fair wait queue as people see it, in headless Chromium through the real proxy: Alice
//! edits; Bob and then Carol are refused and their 423 pages wait in line ("You're 1st in
//! line", "2nd"); Alice's banner says who waits; when Alice leaves, Bob's banner offers him the
//! page with a countdown while Carol's request is refused as reserved; Bob lets the offer lapse
//! and it passes to Carol, whose 423 page, with nobody behind her, turns into the page.
//!
//! The browsers are driven as in `browser.rs` (Debian's `chromium` and `chromium-driver`, one
//! WebDriver session and profile per person; screenshots in `artifacts/` on failure).

use std::future::Future;
use std::time::Duration;

use serde_json::{json, Value};
use tests::browser::{Banner, Browser, Scene};
use tests::token;

/// Every test page is protected, and a freed page is reserved for the head of its line for
/// [`OFFER_SECONDS`].
const RULES: &str = r#"
[[rule]]
id = "page"
pattern = "/html/(?P<kind>.+)"
resource = "page:{kind}"
mode = "block"
inject = true
offer_seconds = 5
"#;

/// The rule's `offer_seconds`: the shortest a rule may set.
const OFFER_SECONDS: u64 = 5;

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

fn person(id: &str, name: &str) -> String {
    token(id, name, &[])
}

/// What a `fetch` of `url` from this browser answers: status and JSON body.
async fn fetch_json(browser: &Browser, url: &str) -> (u64, Value) {
    let script = "return fetch(arguments[0], {headers: {accept: 'application/json'}})\
                  .then(r => r.text().then(t => [r.status, t]));";
    let answer = browser
        .session()
        .execute(script, vec![json!(url)])
        .await
        .expect("fetch from the page");
    let status = answer[0].as_u64().unwrap_or_default();
    let body = answer[1]
        .as_str()
        .and_then(|t| serde_json::from_str(t).ok())
        .unwrap_or(Value::Null);
    (status, body)
}

/// The seconds left that an offer banner counts down ("… (4 s left)").
fn seconds_left(banner: &Banner) -> u64 {
    let text = &banner.text;
    let end = text.find(" s left").expect("a countdown");
    let start = text[..end].rfind('(').expect("a countdown") + 1;
    text[start..end]
        .trim()
        .parse()
        .expect("a number of seconds")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_people_wait_in_line_and_the_offer_passes_down_it() {
    run(
        "refused_people_wait_in_line_and_the_offer_passes_down_it",
        |s| Box::pin(wait_in_line(s)),
    )
    .await;
}

async fn wait_in_line(s: &mut Scene) {
    s.open("alice", &person("alice", "Alice")).await;
    s.open("bob", &person("bob", "Bob")).await;
    s.open("carol", &person("carol", "Carol")).await;
    let page = page(s);

    let alice = s.get("alice");
    alice.goto(&page).await;
    alice
        .wait_banner("editing", "You are editing", PATIENCE)
        .await;

    // Bob, then Carol, are refused; their 423 pages join the line by themselves.
    let bob = s.get("bob");
    bob.goto(&page).await;
    assert!(bob.page_text().await.contains("Alice"), "Bob's 423 page");
    bob.wait_banner("locked", "You're 1st in line", PATIENCE)
        .await;
    let carol = s.get("carol");
    carol.goto(&page).await;
    carol
        .wait_banner("locked", "You're 2nd in line", PATIENCE)
        .await;
    s.get("alice")
        .wait_banner("editing", "Bob and Carol are waiting", PATIENCE)
        .await;

    // Alice leaves: once her grace is over, the page is offered to Bob, with a countdown.
    s.get_mut("alice").close().await;
    let grace = Duration::from_secs(GRACE_SECONDS);
    let bob = s.get("bob");
    bob.wait_banner("offer", "It's your turn — open", grace + PATIENCE)
        .await;
    let first = seconds_left(&bob.banner().await.expect("Bob's banner"));
    assert!(
        (1..=OFFER_SECONDS).contains(&first),
        "the countdown starts at the offer's length: {first}"
    );

    // Carol cannot have it meanwhile, and is told whose turn it is.
    let carol = s.get("carol");
    carol
        .wait_banner("locked", "Reserved for the next in line", PATIENCE)
        .await;
    let (status, body) = fetch_json(carol, &page).await;
    assert_eq!(status, 423, "{body}");
    assert_eq!(body["title"], "Reserved", "{body}");
    assert_eq!(body["reserved_for"]["name"], "Bob", "{body}");
    let banner = carol.banner().await.expect("Carol's banner");
    assert!(banner.text.contains("You're 1st in line"), "{banner:?}");

    // The countdown runs in Bob's banner while he does nothing.
    tokio::time::sleep(Duration::from_millis(2_100)).await;
    let later = s.get("bob").banner().await.expect("Bob's banner");
    if later.state == "offer" {
        assert!(seconds_left(&later) < first, "{first} then {later:?}");
    }

    // Bob lets it lapse: the offer passes to Carol. Nobody waits behind her, so her 423 page
    // takes its turn by itself and turns into the page.
    let offer = Duration::from_secs(OFFER_SECONDS);
    let carol = s.get("carol");
    carol
        .wait_banner("editing", "You are editing", offer + PATIENCE)
        .await;
    assert!(
        carol.page_text().await.contains("Hello"),
        "Carol has the page"
    );
    let (status, body) = fetch_json(s.get("bob"), &page).await;
    assert_eq!(status, 423, "Bob's turn has passed: {body}");
    s.get("bob")
        .wait_banner("locked", "Locked by Carol", PATIENCE)
        .await;
}
