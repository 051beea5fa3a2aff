//! [`MemoryLockStore`]: the lock store for a single process (the demo, tests, one-node setups).
//!
//! All state sits behind one `std::sync::Mutex`, held only for the few map operations of a
//! single call and never across an `.await`, so each trait method is atomic just as a Redis
//! script would be. Events are sent while the mutex is held, so their order is the order the
//! changes were applied. Deadlines use `tokio::time::Instant`, which lets tests drive leases
//! with a paused clock.
//!
//! Fences come from one store-wide counter: they still strictly increase for every resource,
//! and a released resource needs no remembered state, so memory stays proportional to the
//! locks currently held plus the displaced markers (which are capped).

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use auth::{Turn, TurnError};
use tokio::sync::{broadcast, Notify};
use tokio::time::Instant;

use crate::error::StoreError;
use crate::event::{EventKind, LockEvent, ReleaseReason};
use crate::lock::{
    ClaimOutcome, ClaimRequest, Holder, Lock, Present, QueuePlace, QueueState, Takeover, UnixMillis,
};
use crate::lock_store::{
    is_session_id, ForceReleased, LockStore, DISPLACED_TTL, MAX_ENDED_FOR, MAX_ENDED_SESSIONS,
    MAX_HELD_SHOWN, MAX_LEASE, MAX_PRESENCE, MAX_QUEUE,
};
use crate::memory_queue::{Join, Queue};
use crate::memory_stash::Shelves;
use crate::stash::{NewStash, StashEntry, StashId, StashMeta};
use crate::turns::{checked, finished, Kept, MAX_TURNS};

/// Room for bursts of events while a slow subscriber catches up.
const EVENT_CAPACITY: usize = 4096;

/// Most displaced markers kept at once. Past this, the oldest are forgotten early: the memory a
/// burst of takeovers can pin stays bounded, at the cost of a very old stale tab being let through.
const MAX_DISPLACED: usize = 100_000;

/// How often an idle reaper wakes to notice that its store has been dropped.
const IDLE_RECHECK: Duration = Duration::from_secs(10);

/// In-process [`LockStore`]. Create it with [`MemoryLockStore::new`] and spawn
/// [`MemoryLockStore::run_reaper`] so leases expire, and watchers hear of it, without traffic.
pub struct MemoryLockStore {
    clock: Clock,
    state: Mutex<State>,
    events: broadcast::Sender<LockEvent>,
    /// Rule-change nudges between the control plane and the proxy of one process.
    nudges: broadcast::Sender<()>,
    /// Wakes the reaper when a deadline earlier than the one it sleeps towards appears.
    reaper_wake: Arc<Notify>,
    /// Kept request bodies, apart from the locks: no lock operation waits on them.
    stash: Mutex<Shelves>,
    /// Each instance's request-shape summary and when it came, at most [`MAX_SHAPE_SOURCES`].
    shapes: Mutex<HashMap<String, (Instant, String)>>,
    /// Ended sign-in sessions: id → until (unix ms), at most [`MAX_ENDED_SESSIONS`].
    ended: Mutex<HashMap<String, UnixMillis>>,
    /// Sign-in session renewal turns: key → turn, and when it lapses.
    turns: Mutex<HashMap<String, (Kept, Instant)>>,
}

/// Most instances whose shape summaries the memory store keeps; the oldest goes first.
const MAX_SHAPE_SOURCES: usize = 64;

impl MemoryLockStore {
    /// An empty store. Callers share it through the `Arc`.
    pub fn new() -> Arc<Self> {
        let (events, _) = broadcast::channel(EVENT_CAPACITY);
        let (nudges, _) = broadcast::channel(16);
        Arc::new(Self {
            nudges,
            clock: Clock::start(),
            state: Mutex::new(State {
                locks: BTreeMap::new(),
                by_user: HashMap::new(),
                deadlines: BTreeMap::new(),
                displaced: Displaced::new(MAX_DISPLACED),
                presence: HashMap::new(),
                last_fence: 0,
                reaper_target: None,
                queues: HashMap::new(),
                offer_deadlines: BTreeSet::new(),
            }),
            events,
            reaper_wake: Arc::new(Notify::new()),
            stash: Mutex::new(Shelves::default()),
            shapes: Mutex::new(HashMap::new()),
            ended: Mutex::new(HashMap::new()),
            turns: Mutex::new(HashMap::new()),
        })
    }

    /// Expires leases at their deadline and prunes old displaced markers, until the store is
    /// dropped. Spawn it once on a runtime that lives as long as the store.
    ///
    /// It holds only a weak reference while sleeping, so dropping every other handle to the store
    /// frees it, and the reaper returns at its next wake-up.
    pub async fn run_reaper(self: Arc<Self>) {
        let wake = Arc::clone(&self.reaper_wake);
        let store = Arc::downgrade(&self);
        drop(self);
        loop {
            let next = match store.upgrade() {
                Some(store) => store.reap(),
                None => return,
            };
            tokio::select! {
                () = tokio::time::sleep_until(next) => {}
                () = wake.notified() => {}
            }
        }
    }

    /// One reaper pass; returns when the next one is due.
    fn reap(&self) -> Instant {
        let mut op = self.begin();
        op.expire_due();
        let now = op.now;
        op.state.displaced.prune(now);
        op.state
            .presence
            .retain(|_, tabs| prune_presence(tabs, now));
        let idle = now + IDLE_RECHECK;
        let next = [
            op.state.next_deadline(),
            op.state.displaced.next_expiry(),
            op.state.offer_deadlines.first().map(|(until, _)| *until),
        ]
        .into_iter()
        .flatten()
        .fold(idle, Instant::min);
        op.state.reaper_target = Some(next);
        next
    }

    /// Locks the state and reads the clock under the lock, so time never runs backwards between
    /// consecutive operations. A poisoned mutex is recovered: every multi-step change re-checks
    /// what it finds (deadline entries are verified against the lock they name), so a panic
    /// elsewhere cannot leave state this store would misread.
    fn begin(&self) -> Op<'_> {
        let state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let now = Instant::now();
        Op {
            state,
            now,
            at: self.clock.unix(now),
            store: self,
        }
    }
}

#[async_trait::async_trait]
impl LockStore for MemoryLockStore {
    async fn claim(&self, req: &ClaimRequest) -> Result<ClaimOutcome, StoreError> {
        let mut op = self.begin();
        op.expire_if_lapsed(&req.resource);
        let owner = req.holder.owner_key();
        let wanted = op.deadline_after(req.lease);
        if let Some(lock) = op.extend_if_held(&req.resource, &owner, wanted, false) {
            return Ok(ClaimOutcome::Renewed(lock));
        }
        let now = op.now;
        if req.unsafe_method {
            if op.state.displaced.is_marked(&req.resource, &owner, now) {
                return Ok(ClaimOutcome::Displaced {
                    current: op.current(&req.resource),
                });
            }
        } else {
            op.state.displaced.clear(&req.resource, &owner);
        }
        if let Some(current) = op.current(&req.resource) {
            return Ok(ClaimOutcome::Held(current));
        }
        let reserved = op.state.queues.get(&req.resource);
        if let Some(offer) = reserved.and_then(|queue| queue.offer_for_other(&owner)) {
            return Ok(ClaimOutcome::Reserved { offer });
        }
        if let Some(max) = req.max_per_user {
            if let Some(held) = op.over_cap(&req.holder.user, max) {
                return Ok(ClaimOutcome::Limited { held, max });
            }
        }
        let lock = op.install(req, owner.clone());
        op.emit(EventKind::Claimed, &req.resource, Some(lock.clone()), None);
        op.leave_queue(&req.resource, &owner, false);
        Ok(ClaimOutcome::Claimed(lock))
    }

    async fn renew(
        &self,
        resource: &str,
        owner_key: &str,
        lease: Duration,
    ) -> Result<Option<Lock>, StoreError> {
        let mut op = self.begin();
        op.expire_if_lapsed(resource);
        let deadline = op.deadline_after(lease);
        Ok(op.extend_if_held(resource, owner_key, deadline, true))
    }

    async fn release(
        &self,
        resource: &str,
        owner_key: &str,
        reason: ReleaseReason,
    ) -> Result<Option<Lock>, StoreError> {
        let mut op = self.begin();
        op.expire_if_lapsed(resource);
        if !op.held_by(resource, owner_key) {
            return Ok(None);
        }
        Ok(op.remove_with(resource, reason))
    }

    async fn takeover(&self, req: &ClaimRequest) -> Result<Takeover, StoreError> {
        let mut op = self.begin();
        op.expire_if_lapsed(&req.resource);
        let owner = req.holder.owner_key();
        let wanted = op.deadline_after(req.lease);
        if let Some(lock) = op.extend_if_held(&req.resource, &owner, wanted, false) {
            return Ok(Takeover {
                lock,
                previous: None,
            });
        }
        let previous = op.take(&req.resource);
        if let Some(previous) = &previous {
            let now = op.now;
            op.state
                .displaced
                .mark(&req.resource, &previous.owner_key(), now + DISPLACED_TTL);
        }
        let lock = op.install(req, owner);
        let kind = match previous {
            Some(_) => EventKind::TakenOver {
                by: req.holder.clone(),
            },
            None => EventKind::Claimed,
        };
        op.emit(kind, &req.resource, Some(lock.clone()), previous.clone());
        op.leave_queue(&req.resource, &lock.owner_key(), true);
        Ok(Takeover { lock, previous })
    }

    async fn begin_grace(
        &self,
        resource: &str,
        owner_key: &str,
        grace: Duration,
    ) -> Result<Option<Lock>, StoreError> {
        let mut op = self.begin();
        op.expire_if_lapsed(resource);
        let deadline = op.deadline_after(grace);
        let lock = op.extend_if_held(resource, owner_key, deadline, true);
        if let Some(held) = op.state.locks.get_mut(resource).filter(|_| lock.is_some()) {
            held.grace = true;
        }
        Ok(lock)
    }

    async fn touch(&self, resource: &str, owner_key: &str) -> Result<Option<Lock>, StoreError> {
        let mut op = self.begin();
        op.expire_if_lapsed(resource);
        let at = op.at;
        Ok(op
            .state
            .locks
            .get_mut(resource)
            .filter(|held| held.owner == owner_key)
            .map(|held| {
                held.lock.active = at;
                held.lock.clone()
            }))
    }

    async fn release_idle(
        &self,
        resource: &str,
        owner_key: &str,
        active_before: UnixMillis,
    ) -> Result<Option<Lock>, StoreError> {
        let mut op = self.begin();
        op.expire_if_lapsed(resource);
        let idle = op
            .state
            .locks
            .get(resource)
            .is_some_and(|held| held.owner == owner_key && held.lock.active < active_before);
        if !idle {
            return Ok(None);
        }
        Ok(op.remove_with(resource, ReleaseReason::Idle))
    }

    async fn presence_join(
        &self,
        resource: &str,
        tab: &str,
        holder: &Holder,
        ttl: Duration,
    ) -> Result<(), StoreError> {
        let mut op = self.begin();
        let now = op.now;
        let until = now + ttl.min(MAX_LEASE);
        let tabs = op.state.presence.entry(resource.to_owned()).or_default();
        prune_presence(tabs, now);
        let full = tabs.len() >= MAX_PRESENCE;
        let changed = match tabs.get_mut(tab) {
            Some(present) => {
                let changed = present.0 != *holder;
                *present = (holder.clone(), until);
                changed
            }
            None if full => false,
            None => {
                tabs.insert(tab.to_owned(), (holder.clone(), until));
                true
            }
        };
        if tabs.is_empty() {
            op.state.presence.remove(resource);
        }
        if changed {
            op.expire_if_lapsed(resource);
            let current = op.current(resource);
            op.emit(EventKind::PresenceChanged, resource, current, None);
        }
        Ok(())
    }

    async fn presence_leave(&self, resource: &str, tab: &str) -> Result<(), StoreError> {
        let mut op = self.begin();
        let now = op.now;
        let Some(tabs) = op.state.presence.get_mut(resource) else {
            return Ok(());
        };
        let was_live = tabs.remove(tab).is_some_and(|(_, until)| until > now);
        if !prune_presence(tabs, now) {
            op.state.presence.remove(resource);
        }
        if was_live {
            op.expire_if_lapsed(resource);
            let current = op.current(resource);
            op.emit(EventKind::PresenceChanged, resource, current, None);
        }
        Ok(())
    }

    async fn presence(&self, resource: &str) -> Result<Vec<Present>, StoreError> {
        let op = self.begin();
        let now = op.now;
        Ok(op
            .state
            .presence
            .get(resource)
            .into_iter()
            .flatten()
            .filter(|(_, (_, until))| *until > now)
            .map(|(tab, (holder, _))| Present {
                tab: tab.clone(),
                holder: holder.clone(),
            })
            .collect())
    }

    async fn force_release_if(
        &self,
        resource: &str,
        by: &str,
        fence: Option<u64>,
    ) -> Result<ForceReleased, StoreError> {
        let mut op = self.begin();
        op.expire_if_lapsed(resource);
        match op.current(resource) {
            None => return Ok(ForceReleased::Free),
            Some(lock) if fence.is_some_and(|f| f != lock.fence) => {
                return Ok(ForceReleased::Changed(lock))
            }
            Some(_) => {}
        }
        Ok(
            match op.remove_with(resource, ReleaseReason::Forced { by: by.to_owned() }) {
                Some(lock) => ForceReleased::Released(lock),
                None => ForceReleased::Free,
            },
        )
    }

    async fn get(&self, resource: &str) -> Result<Option<Lock>, StoreError> {
        let mut op = self.begin();
        op.expire_if_lapsed(resource);
        Ok(op.current(resource))
    }

    async fn list(&self) -> Result<Vec<Lock>, StoreError> {
        let mut op = self.begin();
        op.expire_due();
        Ok(op
            .state
            .locks
            .values()
            .map(|held| held.lock.clone())
            .collect())
    }

    async fn request_access(&self, resource: &str, by: &Holder) -> Result<(), StoreError> {
        let mut op = self.begin();
        op.expire_if_lapsed(resource);
        let current = op.current(resource);
        op.emit(
            EventKind::AccessRequested { by: by.clone() },
            resource,
            current,
            None,
        );
        Ok(())
    }

    async fn enqueue(
        &self,
        resource: &str,
        holder: &Holder,
        ttl: Duration,
        offer: Duration,
        max: usize,
    ) -> Result<QueuePlace, StoreError> {
        let mut op = self.begin();
        op.expire_if_lapsed(resource);
        let owner = holder.owner_key();
        let length = |op: &Op<'_>| op.state.queues.get(resource).map_or(0, Queue::len);
        if op.held_by(resource, &owner) {
            return Ok(QueuePlace {
                position: 0,
                length: length(&op),
            });
        }
        let now = op.now;
        let queue = op.state.queues.entry(resource.to_owned()).or_default();
        let joined = queue.join(
            holder,
            &owner,
            now,
            ttl.min(MAX_LEASE),
            offer.min(MAX_LEASE),
            max.min(MAX_QUEUE),
        );
        if joined == Join::Full && queue.is_empty() {
            op.state.queues.remove(resource);
        }
        let pruned = op.settle_queue(resource, false);
        if joined == Join::Joined && !pruned {
            op.emit_queue(resource, false);
        }
        let position = op
            .state
            .queues
            .get(resource)
            .and_then(|queue| queue.position(&owner))
            .unwrap_or(0);
        Ok(QueuePlace {
            position,
            length: length(&op),
        })
    }

    async fn dequeue(&self, resource: &str, owner_key: &str) -> Result<bool, StoreError> {
        let mut op = self.begin();
        op.expire_if_lapsed(resource);
        Ok(op.leave_queue(resource, owner_key, false))
    }

    async fn queue(&self, resource: &str) -> Result<QueueState, StoreError> {
        let mut op = self.begin();
        op.expire_if_lapsed(resource);
        op.settle_queue(resource, false);
        Ok(op
            .state
            .queues
            .get(resource)
            .map(Queue::state)
            .unwrap_or_default())
    }

    async fn ping(&self) -> Result<(), StoreError> {
        Ok(())
    }

    async fn shapes_put(
        &self,
        instance: &str,
        summary: &str,
        keep: Duration,
    ) -> Result<(), StoreError> {
        let now = Instant::now();
        let mut shapes = self.shapes.lock().unwrap_or_else(|e| e.into_inner());
        shapes.retain(|_, (at, _)| now.saturating_duration_since(*at) < keep);
        if !shapes.contains_key(instance) && shapes.len() >= MAX_SHAPE_SOURCES {
            let oldest = shapes
                .iter()
                .min_by_key(|(_, (at, _))| *at)
                .map(|(k, _)| k.clone());
            if let Some(oldest) = oldest {
                shapes.remove(&oldest);
            }
        }
        shapes.insert(instance.to_owned(), (Instant::now(), summary.to_owned()));
        Ok(())
    }

    async fn shapes(&self, max_age: Duration) -> Result<Vec<(String, String)>, StoreError> {
        let now = Instant::now();
        let mut shapes = self.shapes.lock().unwrap_or_else(|e| e.into_inner());
        shapes.retain(|_, (at, _)| now.saturating_duration_since(*at) < max_age);
        Ok(shapes
            .iter()
            .map(|(k, (_, v))| (k.clone(), v.clone()))
            .collect())
    }

    fn subscribe(&self) -> broadcast::Receiver<LockEvent> {
        self.events.subscribe()
    }

    async fn stash_put(&self, user: &str, entry: NewStash) -> Result<StashId, StoreError> {
        let (now, at) = self.stash_now();
        let resource = entry.resource.clone();
        let id = self
            .shelves()
            .put(user, entry, now, at)
            .ok_or_else(|| StoreError::Unavailable(STASH_TOO_LARGE.to_owned()))?;
        self.stash_changed(user, resource, at);
        Ok(id)
    }

    async fn stash_list(&self, user: &str) -> Result<Vec<StashMeta>, StoreError> {
        let (now, _) = self.stash_now();
        Ok(self.shelves().list(user, now))
    }

    async fn stash_get(&self, user: &str, id: &str) -> Result<Option<StashEntry>, StoreError> {
        let (now, _) = self.stash_now();
        Ok(self.shelves().get(user, id, now))
    }

    async fn stash_delete(&self, user: &str, id: &str) -> Result<bool, StoreError> {
        let (now, at) = self.stash_now();
        let deleted = self.shelves().delete(user, id, now);
        let Some(resource) = deleted else {
            return Ok(false);
        };
        self.stash_changed(user, resource, at);
        Ok(true)
    }

    async fn nudge_rules(&self) -> Result<(), StoreError> {
        // Nobody listening is normal: no proxy in this process polls rules.
        let _ = self.nudges.send(());
        Ok(())
    }

    fn rule_nudges(&self) -> Option<broadcast::Receiver<()>> {
        Some(self.nudges.subscribe())
    }

    async fn end_session(&self, session: &str, until: UnixMillis) -> Result<(), StoreError> {
        if !is_session_id(session) {
            return Err(StoreError::Unavailable(NOT_A_SESSION_ID.to_owned()));
        }
        let at = self.clock.unix(Instant::now());
        let until = until.min(at.saturating_add(millis(MAX_ENDED_FOR)));
        let mut ended = self.ended.lock().unwrap_or_else(PoisonError::into_inner);
        ended.retain(|_, end| *end > at);
        if ended.len() >= MAX_ENDED_SESSIONS && !ended.contains_key(session) {
            let soonest = ended
                .iter()
                .min_by_key(|(_, end)| **end)
                .map(|(id, _)| id.clone());
            if let Some(soonest) = soonest {
                ended.remove(&soonest);
            }
        }
        let end = ended.entry(session.to_owned()).or_insert(until);
        *end = (*end).max(until);
        // Sent while the map is held, so every subscriber hears of it before the call returns.
        let _ = self.events.send(LockEvent {
            kind: EventKind::SessionEnded {
                session: session.to_owned(),
                until: *end,
            },
            resource: String::new(),
            lock: None,
            previous: None,
            at,
        });
        Ok(())
    }

    async fn ended_sessions(&self) -> Result<Vec<(String, UnixMillis)>, StoreError> {
        let at = self.clock.unix(Instant::now());
        let ended = self.ended.lock().unwrap_or_else(PoisonError::into_inner);
        Ok(ended
            .iter()
            .filter(|(_, end)| **end > at)
            .map(|(id, end)| (id.clone(), *end))
            .collect())
    }
}

/// Renewal turns, kept in this process: they serve the proxy and the console sharing it.
#[async_trait::async_trait]
impl auth::RenewalTurns for MemoryLockStore {
    async fn take_renewal(&self, key: &str, ttl: Duration) -> Result<Turn, TurnError> {
        checked(key)?;
        let now = Instant::now();
        let mut turns = self.turns.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some((kept, until)) = turns.get(key) {
            if *until > now {
                return Ok(kept.seen());
            }
        }
        if turns.len() >= MAX_TURNS {
            turns.retain(|_, (_, until)| *until > now);
            if turns.len() >= MAX_TURNS {
                return Err(Box::new(StoreError::Unavailable(format!(
                    "more than {MAX_TURNS} session renewals under way"
                ))));
            }
        }
        turns.insert(key.to_owned(), (Kept::UnderWay, now + ttl.min(MAX_LEASE)));
        Ok(Turn::Mine)
    }

    async fn finish_renewal(
        &self,
        key: &str,
        cookie: Option<&str>,
        ttl: Duration,
    ) -> Result<(), TurnError> {
        let kept = finished(key, cookie)?;
        let until = Instant::now() + ttl.min(MAX_LEASE);
        let mut turns = self.turns.lock().unwrap_or_else(PoisonError::into_inner);
        turns.insert(key.to_owned(), (kept, until));
        Ok(())
    }

    async fn give_back_renewal(&self, key: &str) -> Result<(), TurnError> {
        let mut turns = self.turns.lock().unwrap_or_else(PoisonError::into_inner);
        if turns
            .get(key)
            .is_some_and(|(kept, _)| *kept == Kept::UnderWay)
        {
            turns.remove(key);
        }
        Ok(())
    }
}

/// Why [`LockStore::end_session`] kept nothing.
pub(crate) const NOT_A_SESSION_ID: &str = "not a sign-in session id";

/// Why a stash write kept nothing (see [`LockStore::stash_put`]).
pub(crate) const STASH_TOO_LARGE: &str = "stash entry exceeds the per-user bounds";

impl MemoryLockStore {
    fn shelves(&self) -> MutexGuard<'_, Shelves> {
        self.stash.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Announces that `user`'s kept changes changed (see [`EventKind::StashChanged`]).
    fn stash_changed(&self, user: &str, resource: String, at: UnixMillis) {
        // No subscribers is normal (nobody is watching); the event is simply not needed.
        let _ = self.events.send(LockEvent {
            kind: EventKind::StashChanged {
                user: user.to_owned(),
            },
            resource,
            lock: None,
            previous: None,
            at,
        });
    }

    fn stash_now(&self) -> (Instant, UnixMillis) {
        let now = Instant::now();
        (now, self.clock.unix(now))
    }
}

/// Converts the monotonic clock into wall-clock milliseconds from one fixed reading, so times
/// shown to people move exactly as deadlines do (also under a paused test clock).
#[derive(Debug, Clone, Copy)]
struct Clock {
    origin: Instant,
    origin_unix: UnixMillis,
}

impl Clock {
    fn start() -> Self {
        let origin_unix = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, millis);
        Self {
            origin: Instant::now(),
            origin_unix,
        }
    }

    fn unix(&self, at: Instant) -> UnixMillis {
        self.origin_unix
            .saturating_add(millis(at.saturating_duration_since(self.origin)))
    }
}

/// Drops the tabs whose time-to-live ran out; whether any remain.
fn prune_presence(tabs: &mut BTreeMap<String, (Holder, Instant)>, now: Instant) -> bool {
    tabs.retain(|_, (_, until)| *until > now);
    !tabs.is_empty()
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

struct State {
    /// Current locks by resource; a `BTreeMap` so `list` comes out sorted.
    locks: BTreeMap<String, Held>,
    /// The resources each user id holds, kept with `locks` by `install` and `take`, so a capped
    /// claim counts exactly without a scan. A user with no locks has no entry.
    by_user: HashMap<String, BTreeSet<String>>,
    /// Lease deadlines in expiry order. Keyed by fence as well, which is unique store-wide, so
    /// two locks expiring in the same instant never collide.
    deadlines: BTreeMap<(Instant, u64), String>,
    displaced: Displaced,
    /// Banners present per resource: tab → (who, until). Bounded by [`MAX_PRESENCE`] per
    /// resource; lapsed tabs are pruned on every join and leave and by the reaper.
    presence: HashMap<String, BTreeMap<String, (Holder, Instant)>>,
    last_fence: u64,
    /// When the reaper next wakes on its own; `None` until a reaper has run.
    reaper_target: Option<Instant>,
    /// Wait queues by resource; a resource nobody waits for and nobody is offered has none.
    queues: HashMap<String, Queue>,
    /// When offers lapse, so the reaper passes them on without traffic. Entries of offers that
    /// ended otherwise stay until their time and are then found to be no-ops.
    offer_deadlines: BTreeSet<(Instant, String)>,
}

impl State {
    fn next_deadline(&self) -> Option<Instant> {
        self.deadlines.keys().next().map(|(deadline, _)| *deadline)
    }
}

struct Held {
    lock: Lock,
    /// `lock.owner_key()`, kept so ownership checks do not allocate.
    owner: String,
    deadline: Instant,
    /// Set by `begin_grace`, cleared by any renewal: a lapse is then a `Grace` release.
    grace: bool,
}

/// One atomic operation: the locked state plus the time it runs at.
struct Op<'a> {
    state: MutexGuard<'a, State>,
    now: Instant,
    at: UnixMillis,
    store: &'a MemoryLockStore,
}

impl Op<'_> {
    fn emit(&self, kind: EventKind, resource: &str, lock: Option<Lock>, previous: Option<Lock>) {
        tracing::debug!(resource, ?kind, "lock event");
        let event = LockEvent {
            kind,
            resource: resource.to_owned(),
            lock,
            previous,
            at: self.at,
        };
        // No subscribers is normal (nobody is watching); the event is simply not needed.
        let _ = self.store.events.send(event);
    }

    fn current(&self, resource: &str) -> Option<Lock> {
        self.state.locks.get(resource).map(|held| held.lock.clone())
    }

    fn held_by(&self, resource: &str, owner: &str) -> bool {
        self.state
            .locks
            .get(resource)
            .is_some_and(|held| held.owner == owner)
    }

    fn deadline_after(&self, lease: Duration) -> Instant {
        self.now + lease.min(MAX_LEASE)
    }

    /// Releases `resource` as expired if its lease has run out, so no operation ever acts on a
    /// lapsed lock whether or not the reaper has caught up.
    fn expire_if_lapsed(&mut self, resource: &str) {
        let lapsed = self
            .state
            .locks
            .get(resource)
            .filter(|held| held.deadline <= self.now)
            .map(|held| held.grace);
        match lapsed {
            Some(true) => {
                self.remove_with(resource, ReleaseReason::Grace);
            }
            Some(false) => {
                self.remove_with(resource, ReleaseReason::Expired);
            }
            None if self.state.queues.contains_key(resource)
                && !self.state.locks.contains_key(resource) =>
            {
                self.settle_queue(resource, false);
            }
            None => {}
        }
    }

    /// Expires every lock whose deadline has passed, in deadline order.
    fn expire_due(&mut self) {
        while let Some(entry) = self.state.deadlines.first_entry() {
            if entry.key().0 > self.now {
                break;
            }
            let resource = entry.remove();
            self.expire_if_lapsed(&resource);
        }
        while let Some(first) = self.state.offer_deadlines.first() {
            if first.0 > self.now {
                break;
            }
            if let Some((_, resource)) = self.state.offer_deadlines.pop_first() {
                self.settle_queue(&resource, false);
            }
        }
    }

    /// Serves the resource's queue, the one step every path that frees a resource ends with
    /// (`freed`): drops lapsed entries and a lapsed offer, then offers a free resource to the
    /// head of the line if it was just `freed` or an offer on it just ended. Other operations
    /// call it with `freed = false` to pass lapsed offers on. Announces what changed; whether
    /// anything did.
    fn settle_queue(&mut self, resource: &str, freed: bool) -> bool {
        let free = !self.state.locks.contains_key(resource);
        let (now, at) = (self.now, self.at);
        let Some(queue) = self.state.queues.get_mut(resource) else {
            return false;
        };
        let lapsed = queue.lapse_offer(now);
        let mut changed = queue.prune(now) | lapsed;
        let offered = if free && (freed || lapsed) {
            queue.offer_head(now, at)
        } else {
            None
        };
        if let Some(until) = offered {
            changed = true;
            self.state
                .offer_deadlines
                .insert((until, resource.to_owned()));
            self.wake_reaper_for(until);
        }
        if changed {
            self.emit_queue(resource, offered.is_some());
        }
        changed
    }

    /// Takes `owner` out of the resource's queue (after it claimed, took over or left) and
    /// announces it; with `withdraw`, a standing offer to someone else goes back to the head
    /// of the line (a take-over jumped the queue). Whether anything changed.
    fn leave_queue(&mut self, resource: &str, owner: &str, withdraw: bool) -> bool {
        let now = self.now;
        let Some(queue) = self.state.queues.get_mut(resource) else {
            return false;
        };
        let (waited, declined) = queue.leave(owner);
        let mut changed = waited || declined;
        if withdraw {
            changed |= queue.withdraw_offer(now);
        }
        if changed && !self.settle_queue(resource, declined) {
            self.emit_queue(resource, false);
        }
        changed
    }

    /// Emits `QueueChanged` with the queue as it now stands, and forgets an empty queue.
    fn emit_queue(&mut self, resource: &str, offered: bool) {
        let queue = match self.state.queues.get(resource) {
            Some(queue) if queue.is_empty() => {
                self.state.queues.remove(resource);
                QueueState::default()
            }
            Some(queue) => queue.state(),
            None => QueueState::default(),
        };
        let lock = self.current(resource);
        self.emit(
            EventKind::QueueChanged { queue, offered },
            resource,
            lock,
            None,
        );
    }

    /// Removes the lock, marks its owner displaced if `reason` calls for it, and emits the release.
    fn remove_with(&mut self, resource: &str, reason: ReleaseReason) -> Option<Lock> {
        let previous = self.take(resource)?;
        if reason.displaces_holder() {
            let until = self.now + DISPLACED_TTL;
            self.state
                .displaced
                .mark(resource, &previous.owner_key(), until);
        }
        self.emit(
            EventKind::Released { reason },
            resource,
            None,
            Some(previous.clone()),
        );
        self.settle_queue(resource, true);
        Some(previous)
    }

    /// Removes the lock without any event or marker; callers decide what it means.
    fn take(&mut self, resource: &str) -> Option<Lock> {
        let held = self.state.locks.remove(resource)?;
        self.state
            .deadlines
            .remove(&(held.deadline, held.lock.fence));
        let user = &held.lock.holder.user;
        if let Some(resources) = self.state.by_user.get_mut(user) {
            resources.remove(resource);
            if resources.is_empty() {
                self.state.by_user.remove(user);
            }
        }
        Some(held.lock)
    }

    /// The resources `user` holds, if a new grant would take them past `max` live locks.
    /// Lapsed leases the reaper has not reached yet are expired first, so they never count.
    fn over_cap(&mut self, user: &str, max: u32) -> Option<Vec<String>> {
        let max = usize::try_from(max).unwrap_or(usize::MAX);
        let at_cap = |state: &State| state.by_user.get(user).map_or(0, BTreeSet::len) >= max;
        if !at_cap(&self.state) {
            return None;
        }
        self.expire_due();
        if !at_cap(&self.state) {
            return None;
        }
        let held = self.state.by_user.get(user).into_iter().flatten();
        Some(held.take(MAX_HELD_SHOWN).cloned().collect())
    }

    /// Gives a free resource to the requester under a new fence.
    fn install(&mut self, req: &ClaimRequest, owner: String) -> Lock {
        let deadline = self.deadline_after(req.lease);
        self.state.last_fence += 1;
        let lock = Lock {
            resource: req.resource.clone(),
            rule: req.rule.clone(),
            holder: req.holder.clone(),
            since: self.at,
            expires: self.store.clock.unix(deadline),
            fence: self.state.last_fence,
            instance: req.instance.clone(),
            active: self.at,
        };
        self.state.displaced.clear(&req.resource, &owner);
        self.state.displaced.fence_moved(&req.resource);
        self.state
            .deadlines
            .insert((deadline, lock.fence), req.resource.clone());
        self.state
            .by_user
            .entry(req.holder.user.clone())
            .or_default()
            .insert(req.resource.clone());
        self.state.locks.insert(
            req.resource.clone(),
            Held {
                lock: lock.clone(),
                owner,
                deadline,
                grace: false,
            },
        );
        self.wake_reaper_for(deadline);
        lock
    }

    /// Moves the lease deadline to `deadline` if `owner` holds the resource; with
    /// `may_shorten = false` only ever later.
    fn extend_if_held(
        &mut self,
        resource: &str,
        owner: &str,
        deadline: Instant,
        may_shorten: bool,
    ) -> Option<Lock> {
        let state = &mut *self.state;
        let held = state
            .locks
            .get_mut(resource)
            .filter(|held| held.owner == owner)?;
        held.grace = false;
        if deadline > held.deadline || (may_shorten && deadline < held.deadline) {
            state.deadlines.remove(&(held.deadline, held.lock.fence));
            state
                .deadlines
                .insert((deadline, held.lock.fence), resource.to_owned());
            held.deadline = deadline;
            held.lock.expires = self.store.clock.unix(deadline);
        }
        let lock = held.lock.clone();
        self.wake_reaper_for(deadline);
        Some(lock)
    }

    fn wake_reaper_for(&mut self, deadline: Instant) {
        if self
            .state
            .reaper_target
            .is_some_and(|target| deadline < target)
        {
            self.state.reaper_target = Some(deadline);
            self.store.reaper_wake.notify_one();
        }
    }
}

/// Owners that lost a resource, remembered until a deadline, with whether the resource has
/// changed hands since (its fence moved): only then is the owner's stale write refused.
///
/// Markers are found by resource then owner (no allocation on lookup) and pruned in the order
/// they were set, which is also their expiry order because the time-to-live is constant.
/// Re-marking or clearing leaves a stale queue entry behind; it is recognised on pop by its
/// deadline no longer matching.
struct Displaced {
    by_resource: HashMap<String, HashMap<String, Marker>>,
    order: VecDeque<(Instant, String, String)>,
    capacity: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Marker {
    until: Instant,
    /// Someone else got the resource after the owner lost it.
    moved: bool,
}

impl Displaced {
    fn new(capacity: usize) -> Self {
        Self {
            by_resource: HashMap::new(),
            order: VecDeque::new(),
            capacity,
        }
    }

    fn mark(&mut self, resource: &str, owner: &str, until: Instant) {
        while self.order.len() >= self.capacity {
            let Some((expiry, resource, owner)) = self.order.pop_front() else {
                break;
            };
            self.forget(&resource, &owner, expiry);
        }
        self.by_resource
            .entry(resource.to_owned())
            .or_default()
            .insert(
                owner.to_owned(),
                Marker {
                    until,
                    moved: false,
                },
            );
        self.order
            .push_back((until, resource.to_owned(), owner.to_owned()));
    }

    /// Whether `owner` lost `resource` and someone else has held it since.
    fn is_marked(&self, resource: &str, owner: &str, now: Instant) -> bool {
        self.by_resource
            .get(resource)
            .and_then(|owners| owners.get(owner))
            .is_some_and(|marker| marker.moved && marker.until > now)
    }

    /// The resource got a new holder: every owner that lost it so far now has a stale view.
    fn fence_moved(&mut self, resource: &str) {
        if let Some(owners) = self.by_resource.get_mut(resource) {
            for marker in owners.values_mut() {
                marker.moved = true;
            }
        }
    }

    fn clear(&mut self, resource: &str, owner: &str) {
        if let Some(owners) = self.by_resource.get_mut(resource) {
            owners.remove(owner);
            if owners.is_empty() {
                self.by_resource.remove(resource);
            }
        }
    }

    fn prune(&mut self, now: Instant) {
        while self
            .order
            .front()
            .is_some_and(|(until, _, _)| *until <= now)
        {
            if let Some((until, resource, owner)) = self.order.pop_front() {
                self.forget(&resource, &owner, until);
            }
        }
    }

    /// Drops the marker only if it is still the one this queue entry was made for.
    fn forget(&mut self, resource: &str, owner: &str, until: Instant) {
        let current = self
            .by_resource
            .get(resource)
            .and_then(|owners| owners.get(owner));
        if current.is_some_and(|marker| marker.until == until) {
            self.clear(resource, owner);
        }
    }

    fn next_expiry(&self) -> Option<Instant> {
        self.order.front().map(|(until, _, _)| *until)
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.by_resource.values().map(HashMap::len).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn displaced_markers_expire_and_are_pruned() {
        let t0 = Instant::now();
        let mut displaced = Displaced::new(10);
        displaced.mark("doc:1", "alice", t0 + Duration::from_secs(5));
        assert!(
            !displaced.is_marked("doc:1", "alice", t0),
            "nobody else held it yet"
        );
        displaced.fence_moved("doc:1");
        assert!(displaced.is_marked("doc:1", "alice", t0));
        assert!(!displaced.is_marked("doc:1", "bob", t0));
        assert!(!displaced.is_marked("doc:1", "alice", t0 + Duration::from_secs(5)));

        displaced.prune(t0 + Duration::from_secs(4));
        assert_eq!(displaced.len(), 1);
        displaced.prune(t0 + Duration::from_secs(5));
        assert_eq!(displaced.len(), 0);
        assert!(displaced.by_resource.is_empty());
        assert!(displaced.order.is_empty());
    }

    #[test]
    fn remarking_survives_the_stale_queue_entry() {
        let t0 = Instant::now();
        let mut displaced = Displaced::new(10);
        displaced.mark("doc:1", "alice", t0 + Duration::from_secs(5));
        displaced.mark("doc:1", "alice", t0 + Duration::from_secs(8));
        displaced.fence_moved("doc:1");
        displaced.prune(t0 + Duration::from_secs(6));
        assert!(displaced.is_marked("doc:1", "alice", t0 + Duration::from_secs(6)));
        displaced.prune(t0 + Duration::from_secs(8));
        assert_eq!(displaced.len(), 0);
    }

    #[test]
    fn displaced_markers_are_capped_oldest_first() {
        let t0 = Instant::now();
        let mut displaced = Displaced::new(3);
        for (i, owner) in ["a", "b", "c", "d"].into_iter().enumerate() {
            displaced.mark("doc:1", owner, t0 + Duration::from_secs(10 + i as u64));
        }
        displaced.fence_moved("doc:1");
        assert_eq!(displaced.len(), 3);
        assert_eq!(displaced.order.len(), 3);
        assert!(!displaced.is_marked("doc:1", "a", t0));
        assert!(displaced.is_marked("doc:1", "d", t0));
    }

    #[test]
    fn clock_moves_with_the_monotonic_clock() {
        let clock = Clock::start();
        let later = clock.origin + Duration::from_millis(1_234);
        assert_eq!(clock.unix(later) - clock.unix(clock.origin), 1_234);
        if let Some(earlier) = clock.origin.checked_sub(Duration::from_secs(1)) {
            assert_eq!(clock.unix(earlier), clock.origin_unix);
        }
    }
}
