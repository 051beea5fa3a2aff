//! The fair wait queue: FIFO places, idempotent joins, the bound, offers on every path that
//! frees a resource, lapsed offers passing down the line, reservations refused to everyone
//! else, and take-overs jumping the queue. Each case takes a fresh, empty store.

use std::sync::Arc;
use std::time::Duration;

use store::{ClaimOutcome, EventKind, Holder, LockStore, Offer, QueueState, ReleaseReason};

use super::{claimed, held, next_event, safe, safe_on, unsafe_, user, Timing, DOC, LEASE};

/// The offer length most cases use: long enough never to lapse by accident.
const OFFER: Duration = Duration::from_secs(60);
/// The bound most cases use.
const MAX: usize = 100;

async fn join(store: &dyn LockStore, holder: &Holder) -> (usize, usize) {
    let place = store.enqueue(DOC, holder, LEASE, OFFER, MAX).await.unwrap();
    (place.position, place.length)
}

async fn waiting(store: &dyn LockStore) -> Vec<String> {
    let state = store.queue(DOC).await.unwrap();
    state.waiting.into_iter().map(|h| h.user).collect()
}

async fn offered_to(store: &dyn LockStore) -> Option<String> {
    let state = store.queue(DOC).await.unwrap();
    state.offer.map(|offer| offer.holder.user)
}

fn reserved(outcome: ClaimOutcome) -> Offer {
    match outcome {
        ClaimOutcome::Reserved { offer } => offer,
        other => panic!("expected Reserved, got {other:?}"),
    }
}

/// Alice holds [`DOC`]; `others` wait, in that order.
async fn held_with_line(store: &dyn LockStore, others: &[&str]) {
    claimed(store.claim(&safe(&user("alice"))).await.unwrap());
    for (i, id) in others.iter().enumerate() {
        assert_eq!(join(store, &user(id)).await, (i + 1, i + 1), "{id}");
    }
}

pub async fn joins_are_fifo_and_idempotent(store: Arc<dyn LockStore>, _: Timing) {
    let store = store.as_ref();
    held_with_line(store, &["bob", "carol", "dave"]).await;
    assert_eq!(join(store, &user("bob")).await, (1, 3));
    assert_eq!(join(store, &user("dave")).await, (3, 3));
    assert_eq!(waiting(store).await, ["bob", "carol", "dave"]);
    // The holder does not queue for what it holds.
    assert_eq!(join(store, &user("alice")).await, (0, 3));
    assert_eq!(waiting(store).await, ["bob", "carol", "dave"]);
    assert_eq!(offered_to(store).await, None);
}

pub async fn the_queue_is_bounded(store: Arc<dyn LockStore>, _: Timing) {
    claimed(store.claim(&safe(&user("alice"))).await.unwrap());
    for (id, expected) in [("bob", (1, 1)), ("carol", (2, 2)), ("dave", (0, 2))] {
        let place = store
            .enqueue(DOC, &user(id), LEASE, OFFER, 2)
            .await
            .unwrap();
        assert_eq!((place.position, place.length), expected, "{id}");
    }
    assert_eq!(waiting(store.as_ref()).await, ["bob", "carol"]);
    // One who already waits still refreshes at the bound.
    let place = store
        .enqueue(DOC, &user("carol"), LEASE, OFFER, 2)
        .await
        .unwrap();
    assert_eq!(place.position, 2);
}

pub async fn a_release_offers_the_head_and_reserves_it(store: Arc<dyn LockStore>, _: Timing) {
    let s = store.as_ref();
    let mut rx = store.subscribe();
    held_with_line(s, &["bob", "carol"]).await;
    store
        .release(DOC, "alice", ReleaseReason::Client)
        .await
        .unwrap()
        .unwrap();
    // The joins' own events come first (a Redis store may deliver them a moment late).
    while !matches!(next_event(&mut rx).await.kind, EventKind::Released { .. }) {}
    let event = next_event(&mut rx).await;
    let EventKind::QueueChanged { queue, offered } = event.kind else {
        panic!("expected QueueChanged, got {:?}", event.kind);
    };
    assert!(offered);
    assert_eq!(event.lock, None);
    let offer = queue.offer.clone().unwrap();
    assert_eq!(offer.holder, user("bob"));
    assert_eq!(queue.waiting, [user("carol")]);
    assert_eq!(store.queue(DOC).await.unwrap(), queue);

    // Everyone else is refused while the offer stands, whatever they ask with.
    for who in ["carol", "dave", "alice"] {
        assert_eq!(reserved(s.claim(&safe(&user(who))).await.unwrap()), offer);
    }
    assert_eq!(
        reserved(s.claim(&unsafe_(&user("dave"))).await.unwrap()),
        offer
    );
    assert_eq!(s.get(DOC).await.unwrap(), None);

    // The offered owner's claim is granted and ends the offer; the line stays.
    let lock = claimed(s.claim(&unsafe_(&user("bob"))).await.unwrap());
    assert_eq!(lock.holder, user("bob"));
    assert_eq!(
        store.queue(DOC).await.unwrap(),
        QueueState {
            waiting: vec![user("carol")],
            offer: None
        }
    );
    assert_eq!(
        held(s.claim(&safe(&user("dave"))).await.unwrap()).holder,
        user("bob")
    );
}

pub async fn every_freeing_path_offers(store: Arc<dyn LockStore>, timing: Timing) {
    let s = store.as_ref();
    let bob = user("bob");
    for (i, path) in ["client", "grace", "forced", "expired"]
        .into_iter()
        .enumerate()
    {
        let resource = format!("doc:{i}");
        let lease = if path == "expired" {
            timing.short
        } else {
            LEASE
        };
        claimed(
            s.claim(&safe_on(&resource, &user("alice"), lease))
                .await
                .unwrap(),
        );
        s.enqueue(&resource, &bob, LEASE, OFFER, MAX).await.unwrap();
        match path {
            "client" => drop(s.release(&resource, "alice", ReleaseReason::Client).await),
            "grace" => drop(s.release(&resource, "alice", ReleaseReason::Grace).await),
            "forced" => drop(s.force_release(&resource, "root").await),
            _ => tokio::time::sleep(timing.short + timing.past).await,
        }
        let state = s.queue(&resource).await.unwrap();
        assert_eq!(state.offer.map(|o| o.holder), Some(bob.clone()), "{path}");
        assert!(state.waiting.is_empty(), "{path}");
        let other = s.claim(&safe_on(&resource, &user("carol"), LEASE)).await;
        assert!(
            matches!(other.unwrap(), ClaimOutcome::Reserved { .. }),
            "{path}"
        );
        claimed(s.claim(&safe_on(&resource, &bob, LEASE)).await.unwrap());
    }
}

pub async fn a_lapsed_offer_passes_to_the_next(store: Arc<dyn LockStore>, timing: Timing) {
    let s = store.as_ref();
    claimed(s.claim(&safe(&user("alice"))).await.unwrap());
    for id in ["bob", "carol"] {
        s.enqueue(DOC, &user(id), LEASE, timing.short, MAX)
            .await
            .unwrap();
    }
    s.release(DOC, "alice", ReleaseReason::Client)
        .await
        .unwrap();
    assert_eq!(offered_to(s).await.as_deref(), Some("bob"));

    tokio::time::sleep(timing.short + timing.past).await;
    let offer = reserved(s.claim(&safe(&user("bob"))).await.unwrap());
    assert_eq!(offer.holder, user("carol"));
    assert_eq!(waiting(s).await, Vec::<String>::new());

    // An offer nobody takes, with nobody left in line, frees the resource normally.
    tokio::time::sleep(timing.short + timing.past).await;
    assert_eq!(store.queue(DOC).await.unwrap(), QueueState::default());
    claimed(s.claim(&safe(&user("dave"))).await.unwrap());
}

pub async fn joining_a_free_resource_waits_without_an_offer(store: Arc<dyn LockStore>, _: Timing) {
    let s = store.as_ref();
    assert_eq!(join(s, &user("bob")).await, (1, 1));
    assert_eq!(offered_to(s).await, None);
    // Nothing is reserved: the page can simply be opened, by anyone.
    let lock = claimed(s.claim(&safe(&user("carol"))).await.unwrap());
    assert_eq!(lock.holder, user("carol"));
    s.release(DOC, "carol", ReleaseReason::Client)
        .await
        .unwrap();
    assert_eq!(offered_to(s).await.as_deref(), Some("bob"));
    // Joining again while offered changes nothing.
    assert_eq!(join(s, &user("bob")).await, (0, 0));
    claimed(s.claim(&safe(&user("bob"))).await.unwrap());
    assert_eq!(store.queue(DOC).await.unwrap(), QueueState::default());
}

pub async fn leaving_drops_the_place_and_declines_the_offer(store: Arc<dyn LockStore>, _: Timing) {
    let s = store.as_ref();
    held_with_line(s, &["bob", "carol", "dave"]).await;
    assert!(s.dequeue(DOC, "carol").await.unwrap());
    assert!(!s.dequeue(DOC, "carol").await.unwrap());
    assert_eq!(waiting(s).await, ["bob", "dave"]);
    assert_eq!(join(s, &user("dave")).await, (2, 2));

    s.release(DOC, "alice", ReleaseReason::Client)
        .await
        .unwrap();
    assert_eq!(offered_to(s).await.as_deref(), Some("bob"));
    assert!(s.dequeue(DOC, "bob").await.unwrap());
    assert_eq!(offered_to(s).await.as_deref(), Some("dave"));
    assert!(s.dequeue(DOC, "dave").await.unwrap());
    assert_eq!(store.queue(DOC).await.unwrap(), QueueState::default());
    claimed(s.claim(&safe(&user("erin"))).await.unwrap());
}

pub async fn entries_lapse_unless_refreshed(store: Arc<dyn LockStore>, timing: Timing) {
    let s = store.as_ref();
    claimed(s.claim(&safe(&user("alice"))).await.unwrap());
    s.enqueue(DOC, &user("bob"), timing.short, OFFER, MAX)
        .await
        .unwrap();
    s.enqueue(DOC, &user("carol"), LEASE, OFFER, MAX)
        .await
        .unwrap();
    tokio::time::sleep(timing.short / 2).await;
    // Bob's socket heartbeat refreshes his entry; it keeps his place.
    let place = s
        .enqueue(DOC, &user("bob"), timing.short, OFFER, MAX)
        .await
        .unwrap();
    assert_eq!(place.position, 1);
    tokio::time::sleep(timing.short / 2 + timing.past).await;
    assert_eq!(waiting(s).await, ["bob", "carol"]);
    tokio::time::sleep(timing.short).await;
    assert_eq!(waiting(s).await, ["carol"]);
    s.release(DOC, "alice", ReleaseReason::Client)
        .await
        .unwrap();
    assert_eq!(offered_to(s).await.as_deref(), Some("carol"));
}

pub async fn a_takeover_jumps_the_queue(store: Arc<dyn LockStore>, _: Timing) {
    let s = store.as_ref();
    held_with_line(s, &["bob", "carol"]).await;
    let taken = s.takeover(&safe(&user("root"))).await.unwrap();
    assert_eq!(taken.lock.holder, user("root"));
    assert_eq!(waiting(s).await, ["bob", "carol"]);

    // A standing offer goes back to the head of the line.
    s.release(DOC, "root", ReleaseReason::Client).await.unwrap();
    assert_eq!(offered_to(s).await.as_deref(), Some("bob"));
    s.takeover(&safe(&user("root"))).await.unwrap();
    assert_eq!(
        store.queue(DOC).await.unwrap(),
        QueueState {
            waiting: vec![user("bob"), user("carol")],
            offer: None
        }
    );
    s.release(DOC, "root", ReleaseReason::Client).await.unwrap();
    assert_eq!(offered_to(s).await.as_deref(), Some("bob"));

    // A waiter who takes over leaves the line.
    s.takeover(&safe(&user("carol"))).await.unwrap();
    assert_eq!(waiting(s).await, ["bob"]);
}

pub async fn queue_changes_are_announced(store: Arc<dyn LockStore>, _: Timing) {
    let s = store.as_ref();
    claimed(s.claim(&safe(&user("alice"))).await.unwrap());
    let mut rx = store.subscribe();
    join(s, &user("bob")).await;
    let event = next_event(&mut rx).await;
    let EventKind::QueueChanged { queue, offered } = event.kind else {
        panic!("expected QueueChanged, got {:?}", event.kind);
    };
    assert!(!offered);
    assert_eq!(queue.waiting, [user("bob")]);
    assert_eq!(event.lock.map(|l| l.holder), Some(user("alice")));
    assert_eq!(event.previous, None);
    // A refresh is not a change.
    join(s, &user("bob")).await;
    s.dequeue(DOC, "bob").await.unwrap();
    let event = next_event(&mut rx).await;
    assert_eq!(
        event.kind,
        EventKind::QueueChanged {
            queue: QueueState::default(),
            offered: false
        }
    );
}

/// Many claim the offered resource at once: only the offered owner gets it.
pub async fn concurrent_claims_never_beat_the_offer(store: Arc<dyn LockStore>, _: Timing) {
    held_with_line(store.as_ref(), &["bob"]).await;
    store
        .release(DOC, "alice", ReleaseReason::Client)
        .await
        .unwrap();
    let claims = (0..8).map(|i| {
        let store = Arc::clone(&store);
        tokio::spawn(async move {
            let who = if i == 5 {
                user("bob")
            } else {
                user(&format!("u{i}"))
            };
            store.claim(&safe(&who)).await.unwrap()
        })
    });
    let mut granted = Vec::new();
    for claim in claims {
        match claim.await.unwrap() {
            ClaimOutcome::Claimed(lock) => granted.push(lock.holder.user),
            ClaimOutcome::Reserved { .. } | ClaimOutcome::Held(_) => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(granted, ["bob"]);
}
