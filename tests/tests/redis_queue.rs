//! The wait queue across proxy instances on one Redis: a line joined through different
//! instances, the waiters of a killed (`kill -9`) instance dropping out by their entries' TTL,
//! the offer reserving the page for the head of the line on every instance, and the line
//! rebuilt from the open banners after Redis loses its data. Each test starts its own Redis.

use std::time::{Duration, Instant};

use futures::SinkExt;
use serde_json::{json, Value};
use tests::fixtures::DOC;
use tests::instances::{bearer, get, next_message, release, start_instances, watch, Ws};
use tests::redis::RedisServer;
use tests::Upstream;
use tokio_tungstenite::tungstenite::Message;

/// Long enough for a lapsed entry (TTL = the 5 s lease) to be noticed by a refresh (every 1 s).
const LAPSE_WAIT: Duration = Duration::from_secs(15);

async fn join_queue(ws: &mut Ws, resource: &str) {
    ws.send(Message::Text(
        json!({ "type": "join_queue", "resource": resource })
            .to_string()
            .into(),
    ))
    .await
    .expect("send join_queue");
}

/// The first message within `wait` that `pred` accepts, skipping the others.
async fn until(ws: &mut Ws, wait: Duration, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
    let started = Instant::now();
    let mut seen = Vec::new();
    loop {
        let left = wait.saturating_sub(started.elapsed());
        match next_message(ws, left).await {
            Some(msg) if pred(&msg) => return msg,
            Some(msg) => seen.push(msg),
            None => panic!("no {what} within {wait:?}; saw {seen:?}"),
        }
    }
}

fn names(queue: &Value) -> Vec<String> {
    queue["waiting"]
        .as_array()
        .map(|w| {
            w.iter()
                .map(|p| p["name"].as_str().unwrap_or_default().to_owned())
                .collect()
        })
        .unwrap_or_default()
}

fn is_queue(msg: &Value) -> bool {
    msg["type"] == "queue"
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_line_across_instances_survives_a_killed_instance() {
    let redis = RedisServer::start();
    let upstream = Upstream::start().await;
    let mut instances = start_instances(3, upstream.port(), &redis.url(), DOC).await;

    assert_eq!(
        get(&instances[0], "/echo/doc/1", &bearer("alice", &[]))
            .await
            .0,
        200
    );
    let (mut alice, first) = watch(&instances[0], "alice", "/echo/doc/1").await;
    assert_eq!(first["you"], true, "{first}");

    let (mut bob, _) = watch(&instances[1], "bob", "/echo/doc/1").await;
    join_queue(&mut bob, "doc:1").await;
    until(&mut bob, Duration::from_secs(5), "bob 1st", |m| {
        is_queue(m) && m["position"] == 1
    })
    .await;
    let (mut carol, _) = watch(&instances[2], "carol", "/echo/doc/1").await;
    join_queue(&mut carol, "doc:1").await;
    let place = until(&mut carol, Duration::from_secs(5), "carol 2nd", |m| {
        is_queue(m) && m["position"] == 2
    })
    .await;
    assert_eq!(place["length"], 2);
    assert_eq!(
        names(&place),
        Vec::<String>::new(),
        "only the holder sees names"
    );
    // Joining again keeps the place.
    join_queue(&mut carol, "doc:1").await;
    let queue = until(&mut alice, Duration::from_secs(5), "both waiting", |m| {
        is_queue(m) && names(m).len() == 2
    })
    .await;
    assert_eq!(names(&queue), ["BOB", "CAROL"]);

    // Bob's instance dies without a word: his entry is no longer refreshed and lapses.
    instances[1].kill();
    let queue = until(&mut alice, LAPSE_WAIT, "bob's entry lapsing", |m| {
        is_queue(m) && names(m) == ["CAROL"]
    })
    .await;
    assert_eq!(queue["length"], 1);
    until(&mut carol, Duration::from_secs(5), "carol 1st", |m| {
        is_queue(m) && m["position"] == 1
    })
    .await;

    // Alice lets go: the page is reserved for carol on every instance.
    assert_eq!(
        release(&instances[0], "doc:1", &bearer("alice", &[])).await,
        204
    );
    let offer = until(&mut carol, Duration::from_secs(5), "carol's offer", |m| {
        m["type"] == "offer" && m["you"] == true
    })
    .await;
    assert!(offer["until"].is_string(), "{offer}");
    let (status, body) = get(&instances[0], "/echo/doc/1", &bearer("dave", &[])).await;
    assert_eq!(status, 423, "{body}");
    assert_eq!(body["title"], "Reserved", "{body}");
    assert_eq!(body["reserved_for"]["id"], "carol", "{body}");
    assert_eq!(
        get(&instances[0], "/echo/doc/1", &bearer("alice", &[]))
            .await
            .0,
        423
    );
    let (status, body) = get(&instances[2], "/echo/doc/1", &bearer("carol", &[])).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["headers"]["x-latch-user"], "carol");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_line_is_rebuilt_from_open_banners_after_redis_loses_its_data() {
    let mut redis = RedisServer::start();
    let upstream = Upstream::start().await;
    let instances = start_instances(2, upstream.port(), &redis.url(), DOC).await;

    assert_eq!(
        get(&instances[0], "/echo/doc/2", &bearer("alice", &[]))
            .await
            .0,
        200
    );
    let (mut alice, _) = watch(&instances[0], "alice", "/echo/doc/2").await;
    let (mut bob, _) = watch(&instances[0], "bob", "/echo/doc/2").await;
    join_queue(&mut bob, "doc:2").await;
    until(&mut bob, Duration::from_secs(5), "bob 1st", |m| {
        is_queue(m) && m["position"] == 1
    })
    .await;
    let (mut carol, _) = watch(&instances[1], "carol", "/echo/doc/2").await;
    join_queue(&mut carol, "doc:2").await;
    until(&mut carol, Duration::from_secs(5), "carol 2nd", |m| {
        is_queue(m) && m["position"] == 2
    })
    .await;

    redis.restart();

    // Alice's banner claims her lock again and the waiting banners join again, with no page
    // request from anyone; no waiter is offered the page before its holder's banner is back.
    let queue = until(&mut alice, LAPSE_WAIT, "the rebuilt line", |m| {
        is_queue(m) && names(m).len() == 2
    })
    .await;
    let mut rebuilt = names(&queue);
    rebuilt.sort();
    assert_eq!(rebuilt, ["BOB", "CAROL"]);
    // Alice's lock comes back from her banner (a second after its renewal finds it gone);
    // until then the page is free to anyone not in line, as after any loss of Redis data.
    // Once it is back, every instance refuses the next person.
    let deadline = Instant::now() + LAPSE_WAIT;
    loop {
        let (_, now) = get(
            &instances[1],
            "/__latch/status?path=/echo/doc/2",
            &bearer("observer", &[]),
        )
        .await;
        if now["holder"]["id"] == "alice" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "alice's lock was not rebuilt: {now}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let (status, body) = get(&instances[1], "/echo/doc/2", &bearer("dave", &[])).await;
    assert_eq!(status, 423, "{body}");
    assert_eq!(body["holder"]["id"], "alice", "{body}");

    // The rebuilt line is served as before: when alice lets go, the page is reserved for one
    // of those waiting (the line's order after the rebuild is the order the banners joined
    // again in), and that person's banner is told it is their turn.
    assert_eq!(
        release(&instances[0], "doc:2", &bearer("alice", &[])).await,
        204
    );
    let (status, body) = get(&instances[1], "/echo/doc/2", &bearer("dave", &[])).await;
    assert_eq!(status, 423, "{body}");
    let head = body["reserved_for"]["id"]
        .as_str()
        .unwrap_or_else(|| panic!("reserved for someone in line: {body}"))
        .to_owned();
    let ws = match head.as_str() {
        "bob" => &mut bob,
        "carol" => &mut carol,
        other => panic!("reserved for {other}, who was not in line"),
    };
    until(ws, Duration::from_secs(5), "the head's offer", |m| {
        m["type"] == "offer" && m["you"] == true
    })
    .await;
}

/// Every message `ws` receives within `wait`, until it falls silent for that long.
async fn drain(ws: &mut Ws, wait: Duration) -> Vec<Value> {
    let mut seen = Vec::new();
    while let Some(msg) = next_message(ws, wait).await {
        seen.push(msg);
    }
    seen
}

fn offers(seen: &[Value]) -> Vec<&Value> {
    seen.iter().filter(|m| m["type"] == "offer").collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_bystander_hears_of_an_offer_while_it_stands_and_once_when_it_ends() {
    let redis = RedisServer::start();
    let upstream = Upstream::start().await;
    let instances = start_instances(2, upstream.port(), &redis.url(), DOC).await;
    let quiet = Duration::from_millis(700);

    assert_eq!(
        get(&instances[0], "/echo/doc/3", &bearer("alice", &[]))
            .await
            .0,
        200
    );
    let (mut dave, _) = watch(&instances[1], "dave", "/echo/doc/3").await;
    drain(&mut dave, quiet).await;

    // Bob joins a held page's line: dave is told the line grew, and nothing of any offer.
    let (mut bob, _) = watch(&instances[0], "bob", "/echo/doc/3").await;
    join_queue(&mut bob, "doc:3").await;
    let seen = drain(&mut dave, quiet).await;
    assert!(
        seen.iter().any(|m| is_queue(m) && m["length"] == 1),
        "{seen:?}"
    );
    assert!(offers(&seen).is_empty(), "no offer stands: {seen:?}");

    // Alice lets go: the page is offered to bob, and dave hears whose it is.
    assert_eq!(
        release(&instances[0], "doc:3", &bearer("alice", &[])).await,
        204
    );
    let seen = drain(&mut dave, quiet).await;
    let told = offers(&seen);
    assert!(!told.is_empty(), "{seen:?}");
    assert!(told
        .iter()
        .all(|m| m["until"].is_string() && m["you"] == false));

    // Bob declines: the offer ends, and dave is told so exactly once.
    bob.send(Message::Text(
        json!({ "type": "leave_queue", "resource": "doc:3" })
            .to_string()
            .into(),
    ))
    .await
    .expect("send leave_queue");
    let seen = drain(&mut dave, quiet).await;
    let told = offers(&seen);
    assert_eq!(told.len(), 1, "{seen:?}");
    assert!(told[0]["until"].is_null(), "{seen:?}");

    // Carol joins the now free page's line: no offer is made, and dave hears of none.
    let (mut carol, _) = watch(&instances[0], "carol", "/echo/doc/3").await;
    join_queue(&mut carol, "doc:3").await;
    let seen = drain(&mut dave, quiet).await;
    assert!(
        seen.iter().any(|m| is_queue(m) && m["length"] == 1),
        "{seen:?}"
    );
    assert!(offers(&seen).is_empty(), "{seen:?}");
}
