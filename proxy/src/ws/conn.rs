//! One banner socket's protocol, from its first message to its close: what the viewer
//! watches, what they are told when a lock changes, keeping their held locks alive, and the
//! grace period when the last banner of a lock closes.

use std::sync::Arc;
use std::time::Duration;

use auth::Identity;
use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use serde::Deserialize;
use serde_json::{json, Value};
use store::{EventKind, Lock};
use tokio::time::{interval, sleep_until, Instant, MissedTickBehavior};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::{self, Message};

use super::queue::{offer_json, queue_json, standing};
use super::rate::Budget;
use super::transport::{close, send, Ws, MAX_MESSAGE, WRITE_TIMEOUT};
use crate::actions::{self, holds};
use crate::banner::{free_json, lock_json, Push};
use crate::stash::StashFeed;
use crate::state::Latch;

mod lifecycle;

/// Resources one socket may watch.
const MAX_WATCHES: usize = 16;
pub const PING_EVERY: Duration = Duration::from_secs(20);
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(60);

const CLOSE_SESSION_EXPIRED: u16 = 4401;
/// How long a closing socket keeps reading for the client's answer to its close frame.
const LINGER: Duration = Duration::from_secs(2);

#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum ClientMsg {
    Watch {
        path: String,
        /// The banner's id for its page load (`[A-Za-z0-9_-]`, at most 64).
        #[serde(default)]
        tab: Option<String>,
    },
    Heartbeat,
    /// The person did something on the page (input, pointer, key, focus, visible).
    Activity,
    Release {
        resource: String,
    },
    Takeover {
        resource: String,
    },
    RequestAccess {
        resource: String,
    },
    JoinQueue {
        resource: String,
    },
    LeaveQueue {
        resource: String,
    },
}

/// A resource this socket watches, with what the viewer's permissions depend on.
struct Watched {
    resource: String,
    rule: String,
    /// Shorter of the rule's lease/3 and grace/2: how often the server renews a held lock
    /// while the socket is open, so a lease never lapses under a live banner.
    renew_every: Duration,
    lease: Duration,
    grace: Duration,
    /// Did this socket last see its viewer holding the lock?
    held: bool,
    /// How long the resource is reserved for this viewer when its turn in line comes.
    offer: Duration,
    /// Whether this viewer waits in the resource's line (this socket keeps the entry alive).
    queued: bool,
    /// Whether the resource was last seen offered to this viewer.
    offered: bool,
    /// Whether the last `offer` message sent named a standing offer (anyone's). A viewer
    /// starts out believing none stands, and is not told so again while none does.
    offer_shown: bool,
    /// When a renewal first found the held lock gone without any event saying so — what a
    /// lock store that lost its data looks like (see [`Conn::rebuild`]).
    lost_at: Option<Instant>,
    /// The rule's idle time (`None`: off) and how long before it the holder is warned.
    idle: Option<Duration>,
    idle_warning: Duration,
    /// The holder's last activity as the store last reported it (any tab, any instance).
    active: Option<store::UnixMillis>,
    /// Whether this socket's viewer has been sent `idle_warning` and not `idle_cleared`.
    warned: bool,
    /// Since when who watches (or who holds) has changed without a `presence` message
    /// reflecting it.
    presence_due: Option<Instant>,
    /// The holder's user id as last seen in a lock message (the `presence` message leaves
    /// them out).
    holder: Option<String>,
    /// A hash of the last `presence` message sent, so an unchanged one is not sent again (the
    /// message itself would cost kilobytes per socket).
    presence_sent: Option<u64>,
    /// When the read behind the last `presence` message was made: a presence change the hub
    /// noted after it makes a message due.
    presence_read: Option<Instant>,
}

/// How long a held lock must stay silently gone before the socket re-claims it. A release,
/// takeover or expiry reaches the socket as an event well within this, clearing `held`.
const REBUILD_AFTER: Duration = Duration::from_secs(1);

struct Conn {
    latch: Arc<Latch>,
    id: u64,
    /// The app of the page the socket was opened from.
    app: crate::apps::AppId,
    identity: Arc<Identity>,
    sid: Option<String>,
    watched: Vec<Watched>,
    budget: Budget,
    /// The page load this socket belongs to: the banner's tab id, or one made here (starting
    /// with `~`) until the banner sends its own.
    tab: String,
    /// The viewer's kept changes: listed as the socket opens, again when they change.
    stash: StashFeed,
}

fn error_json(code: &str, message: &str) -> Value {
    json!({ "type": "error", "code": code, "message": message })
}

impl Conn {
    /// The `lock` message this viewer should see for `resource`.
    fn view(&self, resource: &str, lock: Option<&Lock>) -> Value {
        match lock {
            None => free_json(resource),
            Some(lock) => {
                let you = holds(lock, &self.identity, self.sid.as_deref());
                let same_user = !you && lock.holder.user == self.identity.user;
                let can_takeover =
                    !you && actions::may_take_over(&self.latch, lock, &self.identity);
                lock_json(lock, you, same_user, can_takeover)
            }
        }
    }

    async fn current(&self, resource: &str) -> Result<Option<Lock>, store::StoreError> {
        self.latch
            .store_op("get", self.latch.store.get(resource))
            .await
    }

    /// Renews every lock this socket's viewer holds.
    async fn renew_held(&mut self) {
        for i in 0..self.watched.len() {
            let w = &self.watched[i];
            if !w.held {
                continue;
            }
            let owner = self.owner_key(w);
            let renewed = self
                .latch
                .store_op(
                    "renew",
                    self.latch.store.renew(&w.resource, &owner, w.lease),
                )
                .await;
            if let Ok(Some(lock)) = &renewed {
                self.watched[i].active = Some(lock.active);
            }
            if let Ok(None) = renewed {
                let w = &mut self.watched[i];
                match w.lost_at {
                    None => w.lost_at = Some(Instant::now()),
                    Some(at) if at.elapsed() >= REBUILD_AFTER => self.rebuild(i).await,
                    Some(_) => {}
                }
            }
        }
    }

    /// Claims again a lock this socket's viewer held and that vanished with no event: the
    /// lock store lost its data (a Redis restart without persistence). The claim counts as an
    /// unsafe one, so an owner the store marked displaced (taken over, force-released,
    /// expired) is refused instead of silently undoing that decision.
    async fn rebuild(&mut self, i: usize) {
        let w = &self.watched[i];
        let request = store::ClaimRequest {
            resource: w.resource.clone(),
            rule: w.rule.clone(),
            holder: self.holder(w),
            lease: w.lease,
            instance: self.latch.config.proxy.instance.clone(),
            unsafe_method: true,
            // The viewer held this lock before the store lost it; it was counted then.
            max_per_user: None,
        };
        let outcome = self
            .latch
            .store_op("claim", self.latch.store.claim(&request))
            .await;
        let w = &mut self.watched[i];
        w.lost_at = None;
        match outcome {
            Ok(store::ClaimOutcome::Claimed(lock)) | Ok(store::ClaimOutcome::Renewed(lock)) => {
                tracing::info!(resource = %lock.resource, user = %lock.holder.user, fence = lock.fence, "lock rebuilt from its holder's banner after the store lost it");
            }
            Ok(_) => w.held = false,
            Err(_) => {}
        }
    }

    /// The lock holder this socket's viewer is for `w`: the user, plus this browser session
    /// when the rule gives locks to sessions.
    fn holder(&self, w: &Watched) -> store::Holder {
        self.latch
            .holder_under(&self.identity, &w.rule, self.sid.as_deref())
    }

    fn owner_key(&self, w: &Watched) -> String {
        self.holder(w).owner_key()
    }

    async fn handle(&mut self, ws: &mut Ws, text: &str) -> bool {
        let msg: ClientMsg = match serde_json::from_str(text) {
            Ok(m) => m,
            Err(e) => {
                return send(
                    ws,
                    error_json("bad_message", &format!("cannot read this message: {e}")),
                )
                .await
            }
        };
        match msg {
            ClientMsg::Watch { path, tab } => {
                if let Some(tab) = tab {
                    if !actions::valid_tab(&tab) {
                        return send(
                            ws,
                            error_json(
                                "bad_tab",
                                "tab must be 1 to 64 letters, digits, '_' or '-'",
                            ),
                        )
                        .await;
                    }
                    self.set_tab(tab).await;
                }
                self.watch(ws, &path).await
            }
            ClientMsg::Activity => self.activity(ws).await,
            ClientMsg::Heartbeat => {
                self.renew_held().await;
                true
            }
            ClientMsg::Release { resource } => {
                if !self.is_watching(&resource) {
                    return send(ws, error_json("not_watching", "watch the page first")).await;
                }
                match actions::release(
                    &self.latch,
                    &self.identity,
                    self.sid.as_deref(),
                    &resource,
                    false,
                )
                .await
                {
                    Ok(_) => true,
                    Err(e) => send(ws, error_json(e.code(), &e.to_string())).await,
                }
            }
            ClientMsg::Takeover { resource } => {
                if !self.is_watching(&resource) {
                    return send(ws, error_json("not_watching", "watch the page first")).await;
                }
                match actions::takeover(&self.latch, &self.identity, self.sid.as_deref(), &resource)
                    .await
                {
                    Ok(_) => true,
                    Err(e) => send(ws, error_json(e.code(), &e.to_string())).await,
                }
            }
            ClientMsg::JoinQueue { resource } => {
                if !self.is_watching(&resource) {
                    return send(ws, error_json("not_watching", "watch the page first")).await;
                }
                self.join_queue(ws, &resource).await
            }
            ClientMsg::LeaveQueue { resource } => {
                if !self.is_watching(&resource) {
                    return send(ws, error_json("not_watching", "watch the page first")).await;
                }
                self.leave_queue(ws, &resource).await
            }
            ClientMsg::RequestAccess { resource } => {
                if !self.is_watching(&resource) {
                    return send(ws, error_json("not_watching", "watch the page first")).await;
                }
                let holder = store::Holder {
                    user: self.identity.user.clone(),
                    name: self.identity.name.clone(),
                    session: None,
                };
                match self
                    .latch
                    .store_op(
                        "request_access",
                        self.latch.store.request_access(&resource, &holder),
                    )
                    .await
                {
                    Ok(()) => true,
                    Err(e) => send(ws, error_json("store_unavailable", &e.to_string())).await,
                }
            }
        }
    }

    fn is_watching(&self, resource: &str) -> bool {
        self.watched.iter().any(|w| w.resource == resource)
    }

    async fn watch(&mut self, ws: &mut Ws, path: &str) -> bool {
        let path = match rules::normalize_path(path) {
            Ok(p) => p.into_owned(),
            Err(e) => return send(ws, error_json("bad_path", &e.to_string())).await,
        };
        let rule_path = match self.latch.rule_path(&path) {
            Ok(p) => p.into_owned(),
            Err(e) => return send(ws, error_json("bad_path", &e.to_string())).await,
        };
        let (resource, rule_id, lease, grace, idle, offer) = {
            let rules = self.latch.rules.load();
            let app_name = self.latch.apps.name(self.app);
            let Some(m) = rules.find_in(app_name, "GET", &rule_path) else {
                return send(
                    ws,
                    error_json("not_protected", "no rule protects this path"),
                )
                .await;
            };
            (
                m.resource,
                m.rule.id.clone(),
                self.latch.lease_for(self.app, m.rule),
                self.latch.grace_for(self.app, m.rule),
                self.latch.idle_for(self.app, m.rule),
                self.latch.offer_for(m.rule),
            )
        };
        if !self.is_watching(&resource) {
            if self.watched.len() >= MAX_WATCHES {
                return send(
                    ws,
                    error_json("too_many_watches", "this socket watches too many pages"),
                )
                .await;
            }
            let renew_every = (lease / 3).min(grace / 2).max(Duration::from_secs(1));
            // Most sockets watch one page for their whole life: room for exactly one, where
            // the first push would make room for four (a kilobyte per idle socket).
            if self.watched.is_empty() {
                self.watched.reserve_exact(1);
            }
            self.watched.push(Watched {
                resource: resource.clone(),
                rule: rule_id,
                renew_every,
                lease,
                grace,
                held: false,
                offer,
                queued: false,
                offered: false,
                offer_shown: false,
                lost_at: None,
                idle,
                idle_warning: self.latch.config.locks.idle_warning,
                active: None,
                warned: false,
                presence_due: Some(Instant::now()),
                holder: None,
                presence_sent: None,
                presence_read: None,
            });
            self.latch.hub.watch(self.id, &resource);
            self.join_presence(&resource).await;
        }
        self.resend(ws, &resource).await && self.resend_queue(ws, &resource, false).await
    }

    /// Re-reads one resource's state and sends it.
    async fn resend(&mut self, ws: &mut Ws, resource: &str) -> bool {
        let lost = self
            .watched
            .iter()
            .position(|w| w.resource == resource && w.held);
        if let (Some(i), Ok(None)) = (lost, self.current(resource).await) {
            // A resync (the store's event stream was interrupted) found a lock this viewer
            // held gone: rebuild it unless the store says the viewer was displaced.
            self.rebuild(i).await;
        }
        match self.current(resource).await {
            Ok(lock) => {
                let msg = self.view(resource, lock.as_ref());
                let you = msg["you"].as_bool().unwrap_or(false);
                if let Some(w) = self.watched.iter_mut().find(|w| w.resource == resource) {
                    w.held = you;
                    w.active = lock.as_ref().map(|l| l.active);
                    w.holder = lock.as_ref().map(|l| l.holder.user.clone());
                    w.presence_due.get_or_insert_with(Instant::now);
                }
                send(ws, msg).await
            }
            Err(e) => send(ws, error_json("store_unavailable", &e.to_string())).await,
        }
    }

    async fn on_event(&mut self, ws: &mut Ws, event: &store::LockEvent) -> bool {
        let me_before = event
            .previous
            .as_ref()
            .is_some_and(|l| holds(l, &self.identity, self.sid.as_deref()));
        match &event.kind {
            EventKind::AccessRequested { by } => {
                let i_hold = self
                    .watched
                    .iter()
                    .any(|w| w.resource == event.resource && w.held);
                if i_hold && by.user != self.identity.user {
                    return send(
                        ws,
                        json!({ "type": "access_requested", "resource": event.resource,
                                "by": { "id": by.user, "name": by.name } }),
                    )
                    .await;
                }
                true
            }
            EventKind::TakenOver { by } => {
                if me_before
                    && !event
                        .lock
                        .as_ref()
                        .is_some_and(|l| holds(l, &self.identity, self.sid.as_deref()))
                {
                    let ok = send(
                        ws,
                        json!({ "type": "taken_over", "resource": event.resource,
                                "by": { "id": by.user, "name": by.name } }),
                    )
                    .await;
                    if !ok {
                        return false;
                    }
                }
                self.push_state(ws, &event.resource, event.lock.as_ref())
                    .await
            }
            EventKind::Released {
                reason: reason @ store::ReleaseReason::Idle,
            } if me_before => {
                let ok = send(
                    ws,
                    json!({ "type": "released", "resource": event.resource,
                            "reason": lifecycle::reason_name(reason) }),
                )
                .await;
                ok && self
                    .push_state(ws, &event.resource, event.lock.as_ref())
                    .await
            }
            EventKind::Claimed | EventKind::Released { .. } => {
                self.push_state(ws, &event.resource, event.lock.as_ref())
                    .await
            }
            // The first of a burst: shown now. The hub notes the rest on its presence board,
            // where `tick` finds them.
            EventKind::PresenceChanged => match self
                .watched
                .iter()
                .position(|w| w.resource == event.resource)
            {
                Some(i) => self.send_presence(ws, i).await,
                None => true,
            },
            EventKind::QueueChanged { queue, .. } => {
                self.push_queue(ws, &event.resource, queue).await
            }
            EventKind::SessionEnded { session, .. } => {
                // The hub routes these by sign-in session; the check keeps any other from
                // closing this socket, whatever routed it.
                if self.identity.sign_in.as_deref() == Some(session.as_str()) {
                    let _ = send(ws, json!({ "type": "session_expired" })).await;
                    close(ws, CloseCode::from(CLOSE_SESSION_EXPIRED), "signed out").await;
                    return false;
                }
                true
            }
            EventKind::StashChanged { user } => {
                // The hub routes these by user; the check keeps another user's change from
                // ever being listed here, whatever routed it.
                if *user == self.identity.user {
                    self.stash.changed();
                    return self.relist_stash(ws).await;
                }
                true
            }
        }
    }

    /// Reads everything again after events were missed, perhaps because the store lost its
    /// data: places in line are taken again first, so the lines read back (and the events
    /// other waiters' joins cause) already hold this viewer; changes to kept entries may have
    /// been missed too.
    async fn resync(&mut self, ws: &mut Ws) -> bool {
        self.refresh_queue().await;
        self.stash.changed();
        let mut ok = self.relist_stash(ws).await;
        let resources: Vec<String> = self.watched.iter().map(|w| w.resource.clone()).collect();
        for r in resources {
            ok &= self.resend(ws, &r).await;
            ok &= self.resend_queue(ws, &r, false).await;
        }
        ok
    }

    /// Lists the viewer's kept changes again and sends them, if a change is pending and the
    /// last listing is old enough (see [`StashFeed`]); otherwise the renew tick comes back.
    ///
    /// It runs on every tick: the check is inline, the listing boxed, so neither the idle
    /// socket's future nor its tick pays for the listing's room.
    async fn relist_stash(&mut self, ws: &mut Ws) -> bool {
        if !self.stash.due(Instant::now()) {
            return true;
        }
        Box::pin(self.send_stash(ws)).await
    }

    async fn send_stash(&mut self, ws: &mut Ws) -> bool {
        match crate::stash::banner_message(&self.latch, &self.identity.user).await {
            Some((message, count)) if self.stash.worth_sending(count) => send(ws, message).await,
            // Unchanged emptiness, or the store could not say: a later change or resync lists
            // again.
            _ => true,
        }
    }

    async fn push_state(&mut self, ws: &mut Ws, resource: &str, lock: Option<&Lock>) -> bool {
        let msg = self.view(resource, lock);
        let you = msg["you"].as_bool().unwrap_or(false);
        if let Some(w) = self.watched.iter_mut().find(|w| w.resource == resource) {
            w.held = you;
            w.lost_at = None;
            w.active = lock.map(|l| l.active);
            w.holder = lock.map(|l| l.holder.user.clone());
            w.presence_due.get_or_insert_with(Instant::now);
            if !you {
                w.warned = false;
            }
        }
        send(ws, msg).await
    }

    /// The socket is closing: its tab leaves every resource's presence, and locks its viewer
    /// holds here start their grace period unless another banner of the same owner still
    /// watches them, here or on any instance.
    async fn start_grace(&self) {
        self.leave_presence().await;
        for w in self.watched.iter().filter(|w| w.held) {
            let holder = self.holder(w);
            if self.latch.hub.others_watching(
                &w.resource,
                &holder.user,
                holder.session.as_deref(),
                self.id,
            ) > 0
            {
                continue;
            }
            let owner = holder.owner_key();
            let elsewhere =
                actions::other_tab_present(&self.latch, &w.resource, &owner, Some(&self.tab)).await;
            if !matches!(elsewhere, Ok(false)) {
                continue;
            }
            let _ = self
                .latch
                .store_op(
                    "begin_grace",
                    self.latch.store.begin_grace(&w.resource, &owner, w.grace),
                )
                .await;
            tracing::debug!(resource = %w.resource, user = %self.identity.user, grace = ?w.grace, "last banner closed; grace started");
        }
    }
}

/// The wait queue, as one socket takes part in it.
impl Conn {
    /// Puts this viewer in the resource's line (or refreshes its place) and tells it where it
    /// stands. The entry lives as long as the lease unless this socket refreshes it.
    async fn join_queue(&mut self, ws: &mut Ws, resource: &str) -> bool {
        let Some(i) = self.watched.iter().position(|w| w.resource == resource) else {
            return true;
        };
        let joined = self.enqueue(i).await;
        match joined {
            Ok(place) => {
                let w = &mut self.watched[i];
                w.queued = place.position > 0;
                if place.position == 0 && !w.held && !w.offered {
                    // Neither in line nor holding: the line is full, or the resource was offered
                    // to this viewer at once; the event that follows says which.
                    return self.resend_queue(ws, resource, true).await;
                }
                true
            }
            Err(e) => send(ws, error_json("store_unavailable", &e.to_string())).await,
        }
    }

    async fn enqueue(&self, i: usize) -> Result<store::QueuePlace, store::StoreError> {
        let w = &self.watched[i];
        let holder = self.holder(w);
        let max = self.latch.config.locks.queue_max;
        self.latch
            .store_op(
                "enqueue",
                self.latch
                    .store
                    .enqueue(&w.resource, &holder, w.lease, w.offer, max),
            )
            .await
    }

    async fn leave_queue(&mut self, ws: &mut Ws, resource: &str) -> bool {
        let Some(i) = self.watched.iter().position(|w| w.resource == resource) else {
            return true;
        };
        let owner = self.owner_key(&self.watched[i]);
        let w = &mut self.watched[i];
        w.queued = false;
        w.offered = false;
        match self
            .latch
            .store_op("dequeue", self.latch.store.dequeue(resource, &owner))
            .await
        {
            Ok(_) => true,
            Err(e) => send(ws, error_json("store_unavailable", &e.to_string())).await,
        }
    }

    /// Keeps this viewer's places in line alive: the heartbeat of the queue entries' TTL.
    async fn refresh_queue(&mut self) {
        for i in 0..self.watched.len() {
            if self.watched[i].queued {
                if let Ok(place) = self.enqueue(i).await {
                    self.watched[i].queued = place.position > 0;
                }
            }
        }
    }

    /// The socket is closing: its viewer leaves every line it waits in, unless another local
    /// banner of the same owner still watches the resource. An offer to the viewer is kept
    /// (following its "open" link closes this socket on the way to claiming it); it lapses by
    /// itself if not taken.
    async fn leave_queues(&self) {
        for w in self.watched.iter().filter(|w| w.queued && !w.offered) {
            let holder = self.holder(w);
            if self.latch.hub.others_watching(
                &w.resource,
                &holder.user,
                holder.session.as_deref(),
                self.id,
            ) > 0
            {
                continue;
            }
            let _ = self
                .latch
                .store_op(
                    "dequeue",
                    self.latch.store.dequeue(&w.resource, &holder.owner_key()),
                )
                .await;
        }
    }

    /// Reads the resource's queue and sends it; unless `always`, only when anyone waits or an
    /// offer stands (an empty line is what a viewer assumes).
    async fn resend_queue(&mut self, ws: &mut Ws, resource: &str, always: bool) -> bool {
        match self
            .latch
            .store_op("queue", self.latch.store.queue(resource))
            .await
        {
            Ok(state) if !always && state == store::QueueState::default() => true,
            Ok(state) => self.push_queue(ws, resource, &state).await,
            Err(e) => send(ws, error_json("store_unavailable", &e.to_string())).await,
        }
    }

    /// Sends the `queue` and `offer` messages for `state`, and notes where the viewer stands.
    async fn push_queue(&mut self, ws: &mut Ws, resource: &str, state: &store::QueueState) -> bool {
        let Some(i) = self.watched.iter().position(|w| w.resource == resource) else {
            return true;
        };
        let me = self.owner_key(&self.watched[i]);
        let now = standing(state, &me);
        let w = &mut self.watched[i];
        w.offered = now.offered;
        w.queued = now.position.is_some();
        let holder = w.held;
        // "No offer" again is news to nobody: with 1,000 watchers of a busy line, skipping it
        // halves what each change costs to fan out.
        let offer_stands = state.offer.is_some();
        let tell_offer = offer_stands || w.offer_shown;
        w.offer_shown = offer_stands;
        send(ws, queue_json(resource, state, &me, holder)).await
            && (!tell_offer || send(ws, offer_json(resource, state, &me)).await)
    }
}

/// Runs one banner socket until either side ends it.
///
/// Most sockets sit idle for hours, and an idle socket keeps this future at its full size,
/// which is that of its largest await. So every await that does real work (a message, an
/// event, a tick's renewals) is boxed: its room is allocated while it runs, and the idle
/// socket keeps only the select over its sources.
pub async fn run_socket(
    latch: Arc<Latch>,
    id: u64,
    app: crate::apps::AppId,
    identity: Arc<Identity>,
    sid: Option<String>,
    mut ws: Ws,
    mut pushes: tokio::sync::mpsc::Receiver<Push>,
) {
    let expires_at = {
        let now_unix = crate::time_fmt::now_ms() / 1000;
        Instant::now() + Duration::from_secs(identity.expires_at.saturating_sub(now_unix))
    };
    // `~` never appears in a banner's own ids, so this one cannot collide with them.
    let tab = format!("~{}-{id}", latch.config.proxy.instance);
    let mut conn = Conn {
        latch,
        id,
        app,
        identity,
        sid,
        watched: Vec::new(),
        budget: Budget::new(),
        tab,
        stash: StashFeed::new(),
    };
    conn.stash.changed();
    if !conn.relist_stash(&mut ws).await {
        return;
    }
    let mut ping = interval(PING_EVERY);
    ping.set_missed_tick_behavior(MissedTickBehavior::Delay);
    ping.tick().await;
    let mut renew = interval(Duration::from_secs(1));
    renew.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut last_renew = Instant::now();
    let mut last_queue_refresh = Instant::now();
    let mut last_seen = Instant::now();

    loop {
        tokio::select! {
            incoming = ws.next() => {
                let Some(incoming) = incoming else { break };
                last_seen = Instant::now();
                match incoming {
                    // Every frame the client chooses to send costs a token, whatever its kind:
                    // binary frames and pings cost the server a reply too.
                    Ok(msg @ (Message::Text(_) | Message::Binary(_) | Message::Ping(_))) => {
                        if !conn.budget.take() {
                            if conn.budget.exhausted() {
                                let _ = send(&mut ws, error_json("rate_limited", "too many messages; closing")).await;
                                close(&mut ws, CloseCode::Policy, "rate limit").await;
                                break;
                            }
                            if !send(&mut ws, error_json("rate_limited", "too many messages; slow down")).await {
                                break;
                            }
                            continue;
                        }
                        let ok = match msg {
                            Message::Text(text) => Box::pin(conn.handle(&mut ws, &text)).await,
                            Message::Binary(_) => {
                                send(&mut ws, error_json("bad_message", "binary messages are not part of the protocol")).await
                            }
                            _ => true,
                        };
                        if !ok {
                            break;
                        }
                    }
                    Ok(Message::Close(_)) => break,
                    Ok(_) => {}
                    Err(tungstenite::Error::Capacity(e)) => {
                        let _ = send(&mut ws, error_json("too_big", &format!("message too large (limit {MAX_MESSAGE} bytes): {e}"))).await;
                        close(&mut ws, CloseCode::Size, "message too big").await;
                        break;
                    }
                    Err(_) => break,
                }
            }
            push = pushes.recv() => {
                let ok = match push {
                    Some(Push::Event(event)) => Box::pin(conn.on_event(&mut ws, &event)).await,
                    Some(Push::Resync) => Box::pin(conn.resync(&mut ws)).await,
                    None => false,
                };
                if !ok {
                    break;
                }
            }
            _ = sleep_until(expires_at) => {
                let _ = send(&mut ws, json!({ "type": "session_expired" })).await;
                close(&mut ws, CloseCode::from(CLOSE_SESSION_EXPIRED), "session expired").await;
                break;
            }
            _ = ping.tick() => {
                if last_seen.elapsed() > IDLE_TIMEOUT {
                    close(&mut ws, CloseCode::Away, "idle").await;
                    break;
                }
                let ping = ws.send(Message::Ping(Bytes::new()));
                if !matches!(tokio::time::timeout(WRITE_TIMEOUT, ping).await, Ok(Ok(()))) {
                    break;
                }
                Box::pin(conn.refresh_presence()).await;
            }
            _ = renew.tick() => {
                let every = conn.watched.iter().filter(|w| w.held).map(|w| w.renew_every).min();
                if every.is_some_and(|e| last_renew.elapsed() >= e) {
                    last_renew = Instant::now();
                    Box::pin(conn.renew_held()).await;
                }
                let every = conn.watched.iter().filter(|w| w.queued).map(|w| w.renew_every).min();
                if every.is_some_and(|e| last_queue_refresh.elapsed() >= e) {
                    last_queue_refresh = Instant::now();
                    Box::pin(conn.refresh_queue()).await;
                }
                if !Box::pin(conn.tick(&mut ws)).await || !conn.relist_stash(&mut ws).await {
                    break;
                }
            }
        }
    }
    Box::pin(conn.start_grace()).await;
    Box::pin(conn.leave_queues()).await;
    let _ = ws.close(None).await;
    // Read what the client still sends until it answers the close or goes quiet: closing a
    // connection with unread bytes in it resets it, and the reset can destroy the close frame
    // (and the error before it) before the client has read them.
    let _ =
        tokio::time::timeout(LINGER, async { while let Some(Ok(_)) = ws.next().await {} }).await;
}
