//! The stash (`LockStore::stash_*`), as every lock store keeps it: entries per user, read back
//! only by that user, bounded per user by count and bytes (oldest first), dropped after their
//! time-to-live. Each case takes a fresh, empty store.

use std::sync::Arc;
use std::time::Duration;

use store::{is_stash_id, EventKind, LockStore, NewStash, StashLimits};

use super::{assert_quiet, next_event, Timing};

const DAY: Duration = Duration::from_secs(24 * 60 * 60);

fn limits(max_entries: u32, max_bytes: u64, ttl: Duration) -> StashLimits {
    StashLimits {
        ttl,
        max_entries,
        max_bytes,
    }
}

fn entry(path: &str, body: &[u8], limits: StashLimits) -> NewStash {
    NewStash {
        path: path.to_owned(),
        method: "POST".to_owned(),
        resource: "doc:1".to_owned(),
        content_type: "application/x-www-form-urlencoded".to_owned(),
        body: body.to_vec(),
        limits,
    }
}

async fn put(
    store: &dyn LockStore,
    user: &str,
    path: &str,
    body: &[u8],
    limits: StashLimits,
) -> String {
    store
        .stash_put(user, entry(path, body, limits))
        .await
        .unwrap()
}

async fn paths(store: &dyn LockStore, user: &str) -> Vec<String> {
    store
        .stash_list(user)
        .await
        .unwrap()
        .into_iter()
        .map(|m| m.path)
        .collect()
}

/// What is put is listed (without its body), read back byte for byte and deleted once.
pub async fn put_list_get_delete(store: Arc<dyn LockStore>, _: Timing) {
    let wide = limits(10, 1 << 20, DAY);
    assert!(store.stash_list("alice").await.unwrap().is_empty());
    let body: Vec<u8> = (0..=255u8)
        .chain(b"title=caf%C3%A9".iter().copied())
        .collect();
    let first = put(&*store, "alice", "/doc/1/edit?x=1", &body, wide).await;
    let second = put(&*store, "alice", "/doc/2/edit", b"b=2", wide).await;
    assert!(
        is_stash_id(&first) && is_stash_id(&second),
        "{first} {second}"
    );
    assert_ne!(first, second);

    let listed = store.stash_list("alice").await.unwrap();
    assert_eq!(listed.len(), 2);
    let meta = &listed[0];
    assert_eq!(meta.id, first);
    assert_eq!(meta.path, "/doc/1/edit?x=1");
    assert_eq!(meta.method, "POST");
    assert_eq!(meta.resource, "doc:1");
    assert_eq!(meta.content_type, "application/x-www-form-urlencoded");
    assert_eq!(meta.bytes, body.len() as u64);
    assert_eq!(meta.expires - meta.at, 24 * 60 * 60 * 1000);
    assert_eq!(listed[1].id, second);

    let got = store.stash_get("alice", &first).await.unwrap().unwrap();
    assert_eq!(got.body, body);
    assert_eq!(&got.meta, meta);

    assert!(store.stash_delete("alice", &first).await.unwrap());
    assert!(!store.stash_delete("alice", &first).await.unwrap());
    assert_eq!(store.stash_get("alice", &first).await.unwrap(), None);
    assert_eq!(paths(&*store, "alice").await, ["/doc/2/edit"]);
}

/// One user's ids find nothing for another: not listed, not read, not deleted.
pub async fn users_are_kept_apart(store: Arc<dyn LockStore>, _: Timing) {
    let wide = limits(10, 1 << 20, DAY);
    let alice = put(&*store, "alice", "/doc/1", b"secret", wide).await;
    assert!(store.stash_list("bob").await.unwrap().is_empty());
    assert_eq!(store.stash_get("bob", &alice).await.unwrap(), None);
    assert!(!store.stash_delete("bob", &alice).await.unwrap());
    // A user id that looks like a key layout's separators is just another user.
    assert_eq!(store.stash_get("alice}", &alice).await.unwrap(), None);
    assert_eq!(store.stash_get("ALICE", &alice).await.unwrap(), None);
    assert_eq!(
        store
            .stash_get("alice", &alice)
            .await
            .unwrap()
            .unwrap()
            .body,
        b"secret"
    );
    // An id that was never handed out finds nothing either.
    assert_eq!(
        store.stash_get("alice", &"0".repeat(32)).await.unwrap(),
        None
    );
}

/// An entry is gone once its time-to-live has passed, and not before.
pub async fn entries_expire_after_their_ttl(store: Arc<dyn LockStore>, timing: Timing) {
    let short = limits(10, 1 << 20, timing.short * 4);
    let id = put(&*store, "alice", "/doc/1", b"a=1", short).await;
    tokio::time::sleep(timing.short * 2).await;
    assert!(store.stash_get("alice", &id).await.unwrap().is_some());
    let later = put(&*store, "alice", "/doc/2", b"a=2", short).await;
    tokio::time::sleep(timing.short * 2 + timing.past).await;
    assert_eq!(store.stash_get("alice", &id).await.unwrap(), None);
    assert_eq!(paths(&*store, "alice").await, ["/doc/2"]);
    assert!(!store.stash_delete("alice", &id).await.unwrap());
    tokio::time::sleep(timing.short * 2 + timing.past).await;
    assert_eq!(store.stash_get("alice", &later).await.unwrap(), None);
    assert!(store.stash_list("alice").await.unwrap().is_empty());
}

/// Past the count bound the oldest entries go first; another user's are untouched.
pub async fn the_count_bound_evicts_the_oldest(store: Arc<dyn LockStore>, _: Timing) {
    let three = limits(3, 1 << 20, DAY);
    put(&*store, "bob", "/bob", b"b", three).await;
    for n in 1..=5 {
        put(&*store, "alice", &format!("/doc/{n}"), b"x=1", three).await;
    }
    assert_eq!(
        paths(&*store, "alice").await,
        ["/doc/3", "/doc/4", "/doc/5"]
    );
    assert_eq!(paths(&*store, "bob").await, ["/bob"]);
}

/// Past the byte bound the oldest entries go until the new one fits; a body larger than the
/// bound on its own is refused and changes nothing.
pub async fn the_byte_bound_evicts_the_oldest(store: Arc<dyn LockStore>, _: Timing) {
    let bytes = limits(100, 10, DAY);
    put(&*store, "alice", "/a", b"aaaa", bytes).await;
    put(&*store, "alice", "/b", b"bbbb", bytes).await;
    put(&*store, "alice", "/c", b"cc", bytes).await;
    assert_eq!(paths(&*store, "alice").await, ["/a", "/b", "/c"]);
    // 4 + 4 + 2 + 3 > 10: `/a` goes, and 4 + 2 + 3 fits.
    put(&*store, "alice", "/d", b"ddd", bytes).await;
    assert_eq!(paths(&*store, "alice").await, ["/b", "/c", "/d"]);
    // Exactly the bound: everything older goes.
    put(&*store, "alice", "/e", b"eeeeeeeeee", bytes).await;
    assert_eq!(paths(&*store, "alice").await, ["/e"]);

    assert!(store
        .stash_put("alice", entry("/f", b"fffffffffff", bytes))
        .await
        .is_err());
    assert_eq!(paths(&*store, "alice").await, ["/e"]);
    // Deleting gives the bytes back.
    let listed = store.stash_list("alice").await.unwrap();
    assert!(store.stash_delete("alice", &listed[0].id).await.unwrap());
    put(&*store, "alice", "/g", b"gggggggggg", bytes).await;
    assert_eq!(paths(&*store, "alice").await, ["/g"]);
}

/// A kept entry and a deleted one are announced as `StashChanged` for their user on the
/// entry's resource, with no lock, and not for the audit trail; a refused put, a delete of
/// nothing and the other calls announce nothing.
pub async fn puts_and_deletes_announce_the_user_unaudited(store: Arc<dyn LockStore>, _: Timing) {
    let wide = limits(10, 1 << 20, DAY);
    let mut rx = store.subscribe();
    let mut kept = entry("/doc/7", b"Alice's draft", wide);
    kept.resource = "doc:7".to_owned();
    let id = store.stash_put("alice", kept).await.unwrap();
    let put = next_event(&mut rx).await;
    assert_eq!(
        put.kind,
        EventKind::StashChanged {
            user: "alice".to_owned()
        }
    );
    assert_eq!(put.resource, "doc:7");
    assert!(put.lock.is_none() && put.previous.is_none());
    assert!(!put.kind.is_audited());
    assert!(put.at > 0);
    // The event names the user and the resource, and nothing of what was kept.
    let json = serde_json::to_string(&put).unwrap();
    assert!(
        !json.contains("draft") && !json.contains("/doc/7"),
        "{json}"
    );
    assert!(!json.contains(&id), "{json}");

    // Listing and reading change nothing; a put that keeps nothing announces nothing.
    store.stash_list("alice").await.unwrap();
    store.stash_get("alice", &id).await.unwrap();
    assert!(store
        .stash_put("alice", entry("/doc/1", b"too big", limits(10, 3, DAY)))
        .await
        .is_err());
    // Someone else's id deletes nothing and announces nothing.
    assert!(!store.stash_delete("bob", &id).await.unwrap());
    assert_quiet(&mut rx).await;

    assert!(store.stash_delete("alice", &id).await.unwrap());
    let deleted = next_event(&mut rx).await;
    assert_eq!(
        deleted.kind,
        EventKind::StashChanged {
            user: "alice".to_owned()
        }
    );
    assert_eq!(deleted.resource, "doc:7");
    assert!(!deleted.kind.is_audited());
    assert!(!store.stash_delete("alice", &id).await.unwrap());
    assert_quiet(&mut rx).await;
}
