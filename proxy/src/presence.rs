//! Who has a banner open on each resource, as this instance last read it from the lock store,
//! shared by all of the instance's banner sockets.
//!
//! Every tab that opens or closes a banner changes the resource's presence. If the event were
//! handed to every socket watching the resource and each read presence back on its own, a page
//! watched by N tabs would cost N messages and N reads per change — N² while they open, which
//! is what stalled a Redis store under 1,000 watchers. Instead the hub notes the change here
//! ([`PresenceBoard::changed`]), handing the event to the sockets only for the first change in
//! an interval, and each socket looks at the board at its once-a-second tick; a resource's
//! presence is read at most once
//! per [`MIN_INTERVAL`] on this instance, by one caller at a time, and the others take that
//! read. A socket asks for a read no older than the change it heard of; when the only read on
//! hand is older but was made less than [`MIN_INTERVAL`] ago, it gets that one and learns it
//! must ask again (its next tick), so a burst of changes costs one read per interval and the
//! last change is always shown.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use store::Present;
use tokio::time::Instant;

/// Least time between two reads of one resource's presence on this instance.
pub const MIN_INTERVAL: Duration = Duration::from_secs(1);

/// Above this many resources, entries nobody has read for [`FORGET_AFTER`] are dropped.
const SWEEP_ABOVE: usize = 256;
const FORGET_AFTER: Duration = Duration::from_secs(30);

/// One read of a resource's presence.
#[derive(Clone)]
pub struct Snapshot {
    /// When the read was sent: it reflects every change made before this.
    pub started: Instant,
    pub present: Arc<[Present]>,
    /// The people behind those tabs, worked out once for every socket that shows them.
    pub people: Arc<People>,
    /// The message most viewers of this read are sent (see [`Snapshot::shared`]), made by the
    /// first socket that needs it: the holder it was made for, its text, and its fingerprint.
    pub common: Arc<OnceLock<Shared>>,
}

/// A message made once for many viewers: the holder it was made for, its text, and its
/// fingerprint.
pub type Shared = (Option<String>, Arc<str>, u64);

impl Snapshot {
    /// The message made once for viewers this read shows the same way to everyone — present,
    /// and not among the first `most` + 2 people (who could be in a list of `most` others) —
    /// when it was made for the same `holder`; `None` for anyone else.
    pub fn shared(
        &self,
        holder: Option<&str>,
        viewer: &str,
        most: usize,
        render: impl FnOnce() -> String,
    ) -> Option<(Arc<str>, u64)> {
        let people = &self.people;
        let far = people.users.contains(viewer)
            && !people.order.iter().take(most + 2).any(|(u, _)| u == viewer);
        if !far {
            return None;
        }
        let (made_for, text, fingerprint) = self.common.get_or_init(|| {
            let text: Arc<str> = render().into();
            let fingerprint = fingerprint(&text);
            (holder.map(str::to_owned), text, fingerprint)
        });
        (made_for.as_deref() == holder).then(|| (text.clone(), *fingerprint))
    }
}

/// A hash of a message, to tell whether it changed since it was last sent.
pub fn fingerprint(text: &str) -> u64 {
    let mut hasher = DefaultHasher::new();
    text.hash(&mut hasher);
    hasher.finish()
}

/// The distinct people of a presence read (by user id), in the order of their first tab.
pub struct People {
    order: Vec<(String, String)>,
    users: HashSet<String>,
}

impl People {
    pub fn new(present: &[Present]) -> People {
        let mut users = HashSet::with_capacity(present.len());
        let mut order = Vec::new();
        for p in present {
            if users.insert(p.holder.user.clone()) {
                order.push((p.holder.user.clone(), p.holder.name.clone()));
            }
        }
        People { order, users }
    }

    /// The people other than `holder` and `viewer`: the first `most` of them (id, name), and
    /// how many there are in all. Costs `most` steps, not one per person.
    pub fn others(
        &self,
        holder: Option<&str>,
        viewer: &str,
        most: usize,
    ) -> (Vec<&(String, String)>, usize) {
        let left_out = |user: &str| Some(user) == holder || user == viewer;
        let shown = self
            .order
            .iter()
            .filter(|(user, _)| !left_out(user))
            .take(most)
            .collect();
        let mut count = self.order.len();
        if let Some(h) = holder.filter(|h| self.users.contains(*h)) {
            count -= 1;
            if h != viewer && self.users.contains(viewer) {
                count -= 1;
            }
        } else if self.users.contains(viewer) {
            count -= 1;
        }
        (shown, count)
    }
}

#[derive(Default)]
pub struct PresenceBoard {
    slots: Mutex<HashMap<String, Arc<Slot>>>,
}

#[derive(Default)]
struct Slot {
    /// Held while reading, so concurrent callers wait for that read rather than make their own.
    last: tokio::sync::Mutex<Option<Snapshot>>,
    used: Mutex<Option<Instant>>,
    /// When this instance last heard that the resource's presence changed.
    changed: Mutex<Option<Instant>>,
}

impl PresenceBoard {
    /// `resource`'s presence, read no earlier than `since` if a read may be made now; else the
    /// last read (made less than [`MIN_INTERVAL`] ago), whose `started` then says it predates
    /// `since`. `read` is called only when a new read is needed; its error is not kept.
    pub async fn get<E, F>(&self, resource: &str, since: Instant, read: F) -> Result<Snapshot, E>
    where
        F: Future<Output = Result<Vec<Present>, E>>,
    {
        let slot = self.slot(resource);
        let mut last = slot.last.lock().await;
        if let Some(snapshot) = last.as_ref() {
            if snapshot.started >= since || snapshot.started.elapsed() < MIN_INTERVAL {
                return Ok(snapshot.clone());
            }
        }
        let started = Instant::now();
        let present = read.await?;
        let snapshot = Snapshot {
            started,
            people: Arc::new(People::new(&present)),
            common: Arc::default(),
            present: present.into(),
        };
        *last = Some(snapshot.clone());
        Ok(snapshot)
    }

    /// Notes that `resource`'s presence changed now (a presence event). Returns whether this
    /// is the first change in [`MIN_INTERVAL`]: the hub then hands the event to the sockets,
    /// so a lone change is shown at once. Changes that follow within the interval are only
    /// noted, and sockets find them at their next tick through
    /// [`changed_at`](Self::changed_at): a thousand tabs opening on one page would otherwise
    /// be a million messages.
    pub fn changed(&self, resource: &str) -> bool {
        let slot = self.slot(resource);
        let now = Instant::now();
        let mut changed = slot.changed.lock().unwrap_or_else(|e| e.into_inner());
        let first = changed.is_none_or(|at| now.duration_since(at) >= MIN_INTERVAL);
        *changed = Some(now);
        first
    }

    /// When `resource`'s presence last changed, as far as this instance heard.
    pub fn changed_at(&self, resource: &str) -> Option<Instant> {
        let slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
        let slot = slots.get(resource)?;
        let at = *slot.changed.lock().unwrap_or_else(|e| e.into_inner());
        at
    }

    fn slot(&self, resource: &str) -> Arc<Slot> {
        let now = Instant::now();
        let mut slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
        if slots.len() > SWEEP_ABOVE && !slots.contains_key(resource) {
            slots.retain(|_, slot| {
                Arc::strong_count(slot) > 1
                    || slot
                        .used
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .is_some_and(|at| now.duration_since(at) < FORGET_AFTER)
            });
        }
        let slot = slots.entry(resource.to_owned()).or_default().clone();
        *slot.used.lock().unwrap_or_else(|e| e.into_inner()) = Some(now);
        slot
    }

    /// Resources with an entry (for tests of the bound).
    pub fn len(&self) -> usize {
        self.slots.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A tab of `user`, whose name is their id in capitals (for tests here and of the messages).
#[cfg(test)]
pub(crate) fn tab(tab: &str, user: &str) -> Present {
    Present {
        tab: tab.into(),
        holder: store::Holder {
            user: user.into(),
            name: user.to_uppercase(),
            session: None,
        },
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    fn present(user: &str) -> Vec<Present> {
        vec![tab(&format!("tab-{user}"), user)]
    }

    async fn counted(reads: &AtomicUsize, user: &str) -> Result<Vec<Present>, ()> {
        reads.fetch_add(1, Ordering::SeqCst);
        tokio::task::yield_now().await;
        Ok(present(user))
    }

    #[tokio::test(start_paused = true)]
    async fn many_callers_after_one_change_share_one_read() {
        let board = Arc::new(PresenceBoard::default());
        let reads = Arc::new(AtomicUsize::new(0));
        let changed = Instant::now();
        let mut tasks = Vec::new();
        for _ in 0..100 {
            let (board, reads) = (board.clone(), reads.clone());
            tasks.push(tokio::spawn(async move {
                board
                    .get("doc:1", changed, counted(&reads, "bob"))
                    .await
                    .unwrap()
            }));
        }
        for task in tasks {
            let snapshot = task.await.unwrap();
            assert!(snapshot.started >= changed);
            assert_eq!(snapshot.present[0].holder.user, "bob");
        }
        assert_eq!(reads.load(Ordering::SeqCst), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_change_within_the_interval_gets_the_last_read_marked_older() {
        let board = PresenceBoard::default();
        let reads = AtomicUsize::new(0);
        let first = board
            .get("doc:1", Instant::now(), counted(&reads, "bob"))
            .await
            .unwrap();
        tokio::time::advance(Duration::from_millis(300)).await;
        let changed = Instant::now();
        let again = board
            .get("doc:1", changed, counted(&reads, "carol"))
            .await
            .unwrap();
        assert_eq!(
            reads.load(Ordering::SeqCst),
            1,
            "no second read within the interval"
        );
        assert!(
            again.started < changed,
            "the caller learns it must ask again"
        );
        assert_eq!(again.started, first.started);

        tokio::time::advance(MIN_INTERVAL).await;
        let later = board
            .get("doc:1", changed, counted(&reads, "carol"))
            .await
            .unwrap();
        assert_eq!(reads.load(Ordering::SeqCst), 2);
        assert!(later.started >= changed);
        assert_eq!(later.present[0].holder.user, "carol");
    }

    #[tokio::test(start_paused = true)]
    async fn a_change_is_noted_with_its_time_and_only_the_first_in_an_interval_leads() {
        let board = PresenceBoard::default();
        assert_eq!(board.changed_at("doc:1"), None);
        let before = Instant::now();
        tokio::time::advance(Duration::from_millis(10)).await;
        assert!(board.changed("doc:1"), "a lone change leads");
        let at = board.changed_at("doc:1").expect("noted");
        assert!(at > before);
        assert_eq!(board.changed_at("doc:2"), None);

        tokio::time::advance(Duration::from_millis(400)).await;
        assert!(!board.changed("doc:1"), "within the interval: only noted");
        assert!(
            board.changed_at("doc:1").unwrap() > at,
            "the later time is kept"
        );
        tokio::time::advance(MIN_INTERVAL).await;
        assert!(
            board.changed("doc:1"),
            "a change after a quiet interval leads again"
        );
    }

    #[test]
    fn others_leave_out_the_holder_and_the_viewer_and_count_each_person_once() {
        let people = People::new(&[
            tab("t1", "alice"),
            tab("t2", "carol"),
            tab("t3", "carol"),
            tab("t4", "bob"),
            tab("t5", "dave"),
        ]);
        let names = |(shown, count): (Vec<&(String, String)>, usize)| {
            let ids: Vec<&str> = shown.iter().map(|(id, _)| id.as_str()).collect();
            (ids.join(","), count)
        };
        let table = [
            (Some("alice"), "bob", 20, ("carol,dave", 2)),
            (Some("alice"), "alice", 20, ("carol,bob,dave", 3)),
            (None, "bob", 20, ("alice,carol,dave", 3)),
            (None, "zed", 20, ("alice,carol,bob,dave", 4)),
            (Some("zed"), "bob", 20, ("alice,carol,dave", 3)),
            (Some("alice"), "zed", 1, ("carol", 3)),
        ];
        for (holder, viewer, most, (ids, count)) in table {
            assert_eq!(
                names(people.others(holder, viewer, most)),
                (ids.to_string(), count),
                "holder {holder:?}, viewer {viewer}"
            );
        }
    }

    #[test]
    fn viewers_far_down_the_list_share_one_message_made_once() {
        let present: Vec<Present> = (0..30)
            .map(|i| tab(&format!("t{i}"), &format!("u{i}")))
            .collect();
        let snapshot = Snapshot {
            started: Instant::now(),
            people: Arc::new(People::new(&present)),
            present: present.into(),
            common: Arc::default(),
        };
        let made = AtomicUsize::new(0);
        let render = || {
            made.fetch_add(1, Ordering::SeqCst);
            "message".to_owned()
        };
        let a = snapshot
            .shared(Some("u0"), "u25", 20, render)
            .expect("far down");
        let b = snapshot
            .shared(Some("u0"), "u29", 20, render)
            .expect("far down");
        assert_eq!(made.load(Ordering::SeqCst), 1, "made once");
        assert_eq!((&*a.0, a.1), (&*b.0, b.1));
        assert_eq!(a.1, fingerprint("message"));
        // Near the top the list may name them, so they get their own; so does anyone absent,
        // and anyone whose socket saw another holder.
        assert!(snapshot.shared(Some("u0"), "u21", 20, render).is_none());
        assert!(snapshot.shared(Some("u0"), "nobody", 20, render).is_none());
        assert!(snapshot.shared(Some("u1"), "u25", 20, render).is_none());
    }

    #[tokio::test(start_paused = true)]
    async fn a_failed_read_is_not_kept() {
        let board = PresenceBoard::default();
        let failed: Result<Snapshot, &str> = board
            .get("doc:1", Instant::now(), async { Err("down") })
            .await;
        assert!(failed.is_err());
        let reads = AtomicUsize::new(0);
        let ok = board
            .get("doc:1", Instant::now(), counted(&reads, "bob"))
            .await
            .unwrap();
        assert_eq!(reads.load(Ordering::SeqCst), 1);
        assert_eq!(ok.present.len(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn unused_resources_are_forgotten_beyond_the_bound() {
        let board = PresenceBoard::default();
        let reads = AtomicUsize::new(0);
        for i in 0..=SWEEP_ABOVE {
            board
                .get(&format!("doc:{i}"), Instant::now(), counted(&reads, "bob"))
                .await
                .unwrap();
        }
        assert_eq!(board.len(), SWEEP_ABOVE + 1);
        tokio::time::advance(FORGET_AFTER).await;
        board
            .get("doc:new", Instant::now(), counted(&reads, "bob"))
            .await
            .unwrap();
        assert_eq!(board.len(), 1, "only the resource just read is left");
    }
}
