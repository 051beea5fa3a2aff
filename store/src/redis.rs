//! [`RedisLockStore`]: the lock store many proxy instances share.
//!
//! Redis is the one source of truth. Every operation is one Lua script
//! ([`crate::redis_scripts`]) that reads the time from Redis, expires a lapsed lease first, and
//! publishes the events it causes on one pub/sub channel. Keys are laid out by
//! [`crate::redis_keys`] so that every script touches one Redis Cluster slot.
//!
//! Two background tasks belong to each store, and the owner spawns them once:
//! - [`run_listener`](RedisLockStore::run_listener) subscribes to the event channel and turns
//!   each message into a [`LockEvent`] on [`subscribe`](LockStore::subscribe). Events from this
//!   instance take the same path as everyone else's, so every instance sees one resource's
//!   events in the order Redis applied them. It reconnects by itself.
//! - [`run_reaper`](RedisLockStore::run_reaper) finds lapsed leases through the per-bucket
//!   index and expires them, so watchers hear of an expiry without any traffic on the resource.
//!   Every instance runs one; the expiry script deletes and announces in one atomic step, so an
//!   expiry is announced exactly once however many reapers race for it.
//!
//! Connections are made lazily, on the first operation, and re-made whenever one breaks: the
//! store opens without Redis being up, answers [`StoreError::Unavailable`] while it is down,
//! and recovers on its own when it returns. Nothing here panics on what Redis sends.
//!
//! This module knows nothing about HTTP, rules or banners, like the rest of the crate.
//!
//! # Claims per user
//!
//! A capped claim ([`ClaimRequest::max_per_user`]) needs the number of live locks a user
//! holds, and those are spread over every bucket, so no single script can see them. Each user
//! id has a *held index* instead (`{p}:held:{user}`, a sorted set of resource → lease deadline
//! as last written), and a capped claim of a resource costs:
//!
//! 1. the claim script as a *probe*: a renewal, a lock held by someone else and a displaced
//!    owner are answered right here, in the one round trip every claim has always cost; only a
//!    free resource comes back `vacant`, with nothing changed;
//! 2. the reserve script on the user's index: it counts entries whose deadline is still ahead
//!    and either refuses (`Limited`) or adds the resource, atomically, so concurrent claims of
//!    one user are counted one after the other and cannot overshoot the cap between them;
//! 3. the claim script again, which grants. If it finds the resource taken meanwhile, the
//!    reservation is removed.
//!
//! Renewals never write the index (that would add a round trip to every held page), so a long
//! held lock's entry falls behind its lease. Entries whose deadline has passed are therefore
//! not trusted either way: they are not counted while the count without them is under the cap
//! and they fit beside it, and otherwise they are checked against their lock records (one `get`
//! each, fanned out) and refreshed or dropped before the count is taken again. A release, a
//! force release and a takeover remove the resource from the loser's index and a takeover adds
//! it to the taker's (these cost one more round trip, off the held path). An expiry writes
//! nothing: its entry simply stops counting once its deadline passes.
//!
//! What is not exact, because the index lives beside the locks rather than with them:
//! - an index write that fails after its lock operation succeeded (Redis lost in between)
//!   leaves an entry too many, which counts until its deadline passes and is then found dead,
//!   or one too few: the user may then go over the cap by one lock per lost write until that
//!   lock ends;
//! - a claim in flight holds its reservation even if it then finds the resource taken, so a
//!   user making many concurrent claims may be refused up to that many round trips early;
//! - an index that outlives [`HELD_MEMORY`] without a write is dropped by Redis, so a user who
//!   keeps locks alive only by renewing them for longer than that may claim up to the cap again;
//! - after Redis loses its data, locks come back as they are claimed again, and so does the
//!   index.
//!
//! An uncapped claim is the one script it always was, plus one index write when it grants, so
//! that a cap set later, or on another rule, counts those locks too.
use std::sync::{Arc, OnceLock, PoisonError, RwLock, Weak};
use std::time::Duration;

use futures::stream::{self, StreamExt};
use redis::aio::{ConnectionManager, ConnectionManagerConfig, PubSub};
use redis::cluster::{ClusterClient, ClusterClientBuilder, ClusterConfig};
use redis::cluster_async::ClusterConnection;
use redis::io::tcp::TcpSettings;
use redis::{
    Client, ConnectionInfo, FromRedisValue, IntoConnectionInfo, RedisError, RedisResult, Script,
    ScriptInvocation,
};
use tokio::sync::{broadcast, watch};

use crate::error::StoreError;
use crate::event::{LockEvent, ReleaseReason};
use crate::lock::{
    ClaimOutcome, ClaimRequest, Holder, Lock, Present, QueuePlace, QueueState, Takeover, UnixMillis,
};
use crate::lock_store::{
    ForceReleased, LockStore, DISPLACED_TTL, MAX_HELD_SHOWN, MAX_LEASE, MAX_PRESENCE, MAX_QUEUE,
};
use crate::redis_keys::{check_prefix, KeyLayout, BUCKETS};
use crate::redis_options::{redact, RedisOpenError, RedisOptions, Target};
use crate::redis_scripts::scripts;
use crate::redis_wire::{parse_event, QueueReply, Reply};
use crate::stash::{NewStash, StashEntry, StashId, StashMeta};

/// The stash's keys and scripts, beside the lock scripts rather than among them.
#[path = "redis_stash.rs"]
mod stash;

/// Ended sign-in sessions, in a key of their own.
#[path = "redis_ended.rs"]
mod ended;
#[path = "redis_turns.rs"]
mod turns;

/// How long a resource's last fence is remembered after its last grant, so idle resources cost
/// no memory for ever. Fences also carry the Redis clock, so forgetting one only matters if
/// that clock has since stepped back by more than the time since the grant.
pub(crate) const FENCE_MEMORY: Duration = MAX_LEASE;

/// How long a lock record outlives its lease deadline in Redis. The scripts treat it as expired
/// at the deadline; the record's own TTL only collects it if no reaper runs at all, and is long
/// enough that a reaper always announces the expiry first.
const RECORD_SLACK: Duration = Duration::from_secs(60);

/// How long a user's held index outlives its last write. Renewals do not write it, so this is
/// how long a lock kept only by renewals still counts towards its user's cap; a working day's
/// pages comfortably fit.
pub(crate) const HELD_MEMORY: Duration = DISPLACED_TTL;

/// Most entries past their deadline checked against their locks in one capped claim. A cap is
/// at most this large (the config allows up to 1,000), so every entry that could decide a
/// refusal is checked.
const VERIFY_BATCH: usize = 1_000;

/// Room for bursts of events while a slow subscriber catches up.
const EVENT_CAPACITY: usize = 4096;

/// Most lapsed resources the reaper takes from one bucket per pass.
const REAP_BATCH: usize = 100;

/// Scripts in flight at once when listing or reaping many resources.
const FAN_OUT: usize = 32;

/// How often the event listener checks that its connection still answers. A closed connection
/// is noticed at once; this bounds how long a silently dead one (a network partition) goes
/// unnoticed.
const LISTENER_PING: Duration = Duration::from_secs(3);

/// Reconnection backoff for the event listener.
const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(2);

/// [`LockStore`] on Redis or Redis Cluster. Create it with [`RedisLockStore::open`] and spawn
/// [`run_listener`](Self::run_listener) and [`run_reaper`](Self::run_reaper).
///
/// Caps on claims per user are kept through a per-user index beside the locks; the module
/// documentation says what that costs and where it can be off by a lock.
pub struct RedisLockStore {
    clients: Clients,
    /// Made on first use, inside whichever runtime asks first; see [`Self::conn`].
    conn: OnceLock<Conn>,
    layout: KeyLayout,
    channel: String,
    rules_channel: String,
    options: RedisOptions,
    feed: Arc<EventFeed>,
}

/// How to reach Redis. Commands go to `nodes[0]` unless `cluster` is set; the event
/// subscription goes to any of `nodes` (pub/sub messages reach every node of a cluster, so
/// one subscription hears them all; the others are fallbacks while that node is down).
struct Clients {
    nodes: Vec<Client>,
    cluster: Option<Box<ClusterClient>>,
}

#[derive(Clone)]
enum Conn {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
}

impl Conn {
    async fn invoke<T: FromRedisValue>(
        &mut self,
        invocation: &ScriptInvocation<'_>,
    ) -> redis::RedisResult<T> {
        match self {
            Self::Single(conn) => invocation.invoke_async(conn).await,
            Self::Cluster(conn) => invocation.invoke_async(conn).await,
        }
    }

    async fn query<T: FromRedisValue>(&mut self, cmd: &redis::Cmd) -> redis::RedisResult<T> {
        match self {
            Self::Single(conn) => cmd.query_async(conn).await,
            Self::Cluster(conn) => cmd.query_async(conn).await,
        }
    }
}

/// The local end of the event stream.
struct EventFeed {
    /// Replaced (closing every receiver) when the subscription is re-established, because
    /// events published while it was down are lost: a closed receiver tells its owner to
    /// subscribe again and re-read what it shows.
    sender: RwLock<broadcast::Sender<LockEvent>>,
    /// Whether the listener is subscribed right now.
    subscribed: watch::Sender<bool>,
    /// Rule-change nudges heard on the rules channel. Never replaced: a missed nudge only
    /// delays a reload until the next poll.
    nudges: broadcast::Sender<()>,
}

impl EventFeed {
    fn new() -> Self {
        Self {
            sender: RwLock::new(broadcast::channel(EVENT_CAPACITY).0),
            subscribed: watch::channel(false).0,
            nudges: broadcast::channel(16).0,
        }
    }

    fn send(&self, event: LockEvent) {
        let sender = self.sender.read().unwrap_or_else(PoisonError::into_inner);
        // No subscribers is normal (nobody is watching); the event is simply not needed.
        let _ = sender.send(event);
    }

    fn subscribe(&self) -> broadcast::Receiver<LockEvent> {
        self.sender
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .subscribe()
    }

    fn restart(&self) {
        let mut sender = self.sender.write().unwrap_or_else(PoisonError::into_inner);
        *sender = broadcast::channel(EVENT_CAPACITY).0;
    }
}

/// Socket options for every connection to Redis. Nagle's algorithm stays off: a claim is one
/// small request awaited at once, and commands multiplexed on one connection must not wait for
/// the ACK of the one before.
fn tcp_settings() -> TcpSettings {
    TcpSettings::default().set_nodelay(true)
}

/// Where and how to connect for one node's URL.
fn connection_info(url: &str) -> RedisResult<ConnectionInfo> {
    Ok(url.into_connection_info()?.set_tcp_settings(tcp_settings()))
}

impl RedisLockStore {
    /// Checks the options and prepares the clients. Opens no connection, so it works before
    /// Redis is up and outside any async runtime.
    pub fn open(options: RedisOptions) -> Result<Arc<Self>, RedisOpenError> {
        check_prefix(&options.key_prefix).map_err(|reason| RedisOpenError::InvalidPrefix {
            prefix: options.key_prefix.clone(),
            reason,
        })?;
        let target = Target::parse(&options.url)?;
        if target.uses_tls() {
            // The TLS stack needs a process-wide crypto provider; an error only means one is
            // already installed, which is what we want.
            let _ = rustls::crypto::ring::default_provider().install_default();
        }
        let invalid = |e: RedisError| RedisOpenError::InvalidUrl {
            url: redact(&options.url),
            reason: e.to_string(),
        };
        let clients = match target {
            Target::Single(url) => Clients {
                nodes: vec![connection_info(&url)
                    .and_then(Client::open)
                    .map_err(invalid)?],
                cluster: None,
            },
            Target::Cluster(nodes) => {
                let cluster = ClusterClientBuilder::new(nodes.iter().map(String::as_str))
                    .connection_timeout(options.timeout)
                    .response_timeout(options.timeout)
                    .retries(1)
                    .tcp_settings(tcp_settings())
                    .build()
                    .map_err(invalid)?;
                let nodes = nodes
                    .iter()
                    .map(|node| connection_info(node).and_then(Client::open))
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(invalid)?;
                Clients {
                    nodes,
                    cluster: Some(Box::new(cluster)),
                }
            }
        };
        let layout = KeyLayout::new(&options.key_prefix);
        Ok(Arc::new(Self {
            clients,
            conn: OnceLock::new(),
            channel: layout.channel(),
            rules_channel: layout.rules_channel(),
            layout,
            options,
            feed: Arc::new(EventFeed::new()),
        }))
    }

    /// The command connection. The first call creates it (without connecting: that happens on
    /// the first command and again after any failure), so it must run inside a tokio runtime,
    /// which every trait method does.
    fn conn(&self) -> Result<Conn, StoreError> {
        if let Some(conn) = self.conn.get() {
            return Ok(conn.clone());
        }
        let timeout = Some(self.options.timeout);
        let conn = match (&self.clients.cluster, self.clients.nodes.first()) {
            (Some(cluster), _) => {
                let config = ClusterConfig::new()
                    .set_connection_timeout(self.options.timeout)
                    .set_response_timeout(self.options.timeout);
                Conn::Cluster(cluster.get_pending_async_connection_with_config(config))
            }
            (None, Some(client)) => {
                // No retries inside a command: while Redis is down each command fails at once
                // (and triggers the next reconnection attempt) instead of queueing behind
                // backoff sleeps that the caller's timeout would cut short anyway.
                let config = ConnectionManagerConfig::new()
                    .set_connection_timeout(timeout)
                    .set_response_timeout(timeout)
                    .set_number_of_retries(0);
                Conn::Single(
                    ConnectionManager::new_lazy_with_config(client.clone(), config)
                        .map_err(store_error)?,
                )
            }
            (None, None) => {
                return Err(StoreError::Unavailable(
                    "no Redis node configured".to_owned(),
                ))
            }
        };
        // Two first callers may both get here; one connection wins and the other is dropped.
        Ok(self.conn.get_or_init(|| conn).clone())
    }

    /// Runs one lock script on `resource` with the shared arguments plus `args`.
    async fn run(
        &self,
        script: &Script,
        resource: &str,
        args: &[String],
    ) -> Result<Reply, StoreError> {
        Reply::parse(&self.run_raw(script, resource, &[], args).await?)
    }

    /// [`run`](Self::run) with `extra` keys after the seven every lock script gets.
    async fn run_keys(
        &self,
        script: &Script,
        resource: &str,
        extra: &[String],
        args: &[String],
    ) -> Result<Reply, StoreError> {
        Reply::parse(&self.run_raw(script, resource, extra, args).await?)
    }

    /// [`run`](Self::run) for the queue scripts, which answer in a shape of their own.
    async fn run_queue(
        &self,
        script: &Script,
        resource: &str,
        args: &[String],
    ) -> Result<QueueReply, StoreError> {
        QueueReply::parse(&self.run_raw(script, resource, &[], args).await?)
    }

    async fn run_raw(
        &self,
        script: &Script,
        resource: &str,
        extra: &[String],
        args: &[String],
    ) -> Result<String, StoreError> {
        let keys = self.layout.resource(resource);
        let mut invocation = script.prepare_invoke();
        invocation
            .key(keys.lock)
            .key(keys.fence)
            .key(keys.displaced)
            .key(keys.index)
            .key(keys.queue)
            .key(keys.waiters)
            .key(keys.offer);
        for key in extra {
            invocation.key(key);
        }
        invocation
            .arg(resource)
            .arg(&self.channel)
            .arg(millis(DISPLACED_TTL))
            .arg(millis(RECORD_SLACK))
            .arg(millis(FENCE_MEMORY));
        for arg in args {
            invocation.arg(arg);
        }
        let mut conn = self.conn()?;
        conn.invoke(&invocation).await.map_err(store_error)
    }

    /// Sets the lease of a lock `owner_key` holds to `lease` from now: a renewal, or with
    /// `grace` the start of the grace period after its last banner closed (a lapse is then a
    /// `grace` release). A renewal clears that mark.
    async fn set_lease(
        &self,
        resource: &str,
        owner_key: &str,
        lease: Duration,
        grace: bool,
    ) -> Result<Option<Lock>, StoreError> {
        let args = [
            owner_key.to_owned(),
            millis(lease.min(MAX_LEASE)).to_string(),
            flag(grace),
        ];
        let Reply { outcome, lock, .. } = self.run(&scripts().renew, resource, &args).await?;
        match (outcome.as_str(), lock) {
            ("none", _) => Ok(None),
            ("renewed", Some(lock)) => Ok(Some(lock)),
            _ => Err(unexpected("renew", &outcome)),
        }
    }

    /// Runs the claim script; `None` when `probe` is set and the resource is free.
    async fn claim_script(
        &self,
        req: &ClaimRequest,
        probe: bool,
    ) -> Result<Option<ClaimOutcome>, StoreError> {
        let owner = req.holder.owner_key();
        let mut args = grant_args(req, &owner);
        args.push(flag(req.unsafe_method));
        args.push(flag(probe));
        let Reply {
            outcome,
            lock,
            offer,
            ..
        } = self.run(&scripts().claim, &req.resource, &args).await?;
        if let ("reserved", Some(offer)) = (outcome.as_str(), offer) {
            return Ok(Some(ClaimOutcome::Reserved { offer }));
        }
        match (outcome.as_str(), lock) {
            ("claimed", Some(lock)) => Ok(Some(ClaimOutcome::Claimed(lock))),
            ("renewed", Some(lock)) => Ok(Some(ClaimOutcome::Renewed(lock))),
            ("held", Some(lock)) => Ok(Some(ClaimOutcome::Held(lock))),
            ("displaced", current) => Ok(Some(ClaimOutcome::Displaced { current })),
            ("vacant", None) if probe => Ok(None),
            _ => Err(unexpected("claim", &outcome)),
        }
    }

    /// Reserves a slot for `req.resource` in its user's held index, or returns the resources
    /// that user holds when the cap is reached. See the module docs for how entries past their
    /// deadline are treated.
    async fn reserve(
        &self,
        req: &ClaimRequest,
        max: u32,
    ) -> Result<Option<Vec<String>>, StoreError> {
        let user = &req.holder.user;
        for verified in [false, true] {
            let mut invocation = scripts().reserve.prepare_invoke();
            invocation
                .key(self.layout.held(user))
                .arg(&req.resource)
                .arg(max)
                .arg(millis(req.lease.min(MAX_LEASE)))
                .arg(MAX_HELD_SHOWN)
                .arg(millis(HELD_MEMORY))
                .arg(flag(verified))
                .arg(VERIFY_BATCH);
            let mut conn = self.conn()?;
            let reply: Vec<String> = conn.invoke(&invocation).await.map_err(store_error)?;
            match reply.split_first() {
                Some((outcome, _)) if outcome == "reserved" => return Ok(None),
                Some((outcome, held)) if outcome == "limited" => {
                    let mut held: Vec<String> = held
                        .iter()
                        .filter(|resource| **resource != req.resource)
                        .cloned()
                        .collect();
                    held.sort();
                    held.truncate(MAX_HELD_SHOWN);
                    return Ok(Some(held));
                }
                Some((outcome, old)) if outcome == "verify" && !verified => {
                    self.verify_held(user, old).await?;
                }
                Some((outcome, _)) => return Err(unexpected("reserve", outcome)),
                None => return Err(unexpected("reserve", "")),
            }
        }
        Err(unexpected("reserve", "verify"))
    }

    /// Checks index entries past their deadline against their locks: one still held by `user`
    /// gets its lock's deadline, any other is removed.
    async fn verify_held(&self, user: &str, resources: &[String]) -> Result<(), StoreError> {
        let found: Vec<_> = stream::iter(resources.to_vec())
            .map(|resource| async move {
                let lock = self.get(&resource).await?;
                Ok::<_, StoreError>((resource, lock))
            })
            .buffer_unordered(FAN_OUT)
            .collect()
            .await;
        let mut entries = Vec::with_capacity(found.len());
        for result in found {
            let (resource, lock) = result?;
            let deadline = lock
                .filter(|lock| lock.holder.user == user)
                .map_or(0, |lock| lock.expires);
            entries.push((resource, deadline));
        }
        let entries: Vec<(&str, u64)> = entries
            .iter()
            .map(|(resource, deadline)| (resource.as_str(), *deadline))
            .collect();
        self.write_held(user, "refresh", &entries).await
    }

    /// Writes `(resource, deadline)` pairs to a user's held index; a deadline of 0 removes the
    /// resource. Mode `note` or `refresh`, see the script.
    async fn write_held(
        &self,
        user: &str,
        mode: &str,
        entries: &[(&str, u64)],
    ) -> Result<(), StoreError> {
        if entries.is_empty() {
            return Ok(());
        }
        let mut invocation = scripts().held_write.prepare_invoke();
        invocation
            .key(self.layout.held(user))
            .arg(millis(HELD_MEMORY))
            .arg(mode);
        for (resource, deadline) in entries {
            invocation.arg(*resource).arg(*deadline);
        }
        let mut conn = self.conn()?;
        conn.invoke::<String>(&invocation)
            .await
            .map(drop)
            .map_err(store_error)
    }

    /// [`write_held`](Self::write_held) after a lock operation that already happened: a failure
    /// cannot undo it, so it is logged, and the index is off by this entry (see the module docs).
    async fn note_held(&self, user: &str, entries: &[(&str, u64)]) {
        if let Err(e) = self.write_held(user, "note", entries).await {
            tracing::warn!(user, error = %e, "lock store: the per-user held index was not updated");
        }
    }

    /// Waits until the event listener is subscribed, for at most `timeout`. Events published
    /// before that are not delivered, so tests and start-up checks wait for this.
    pub async fn wait_subscribed(&self, timeout: Duration) -> bool {
        let mut subscribed = self.feed.subscribed.subscribe();
        tokio::time::timeout(timeout, subscribed.wait_for(|s| *s))
            .await
            .is_ok_and(|r| r.is_ok())
    }

    /// Follows the event channel for as long as the store lives, reconnecting with backoff.
    ///
    /// After a lost subscription is re-established, every existing receiver from
    /// [`subscribe`](LockStore::subscribe) is closed (events published in between are gone);
    /// its owner should subscribe again and re-read the state it shows.
    pub async fn run_listener(self: Arc<Self>) {
        let feed = Arc::clone(&self.feed);
        let nodes = self.clients.nodes.clone();
        let channel = self.channel.clone();
        let rules_channel = self.rules_channel.clone();
        let timeout = self.options.timeout;
        let url = self.options.redacted_url();
        let store = Arc::downgrade(&self);
        drop(self);

        let mut failures: u32 = 0;
        let mut was_subscribed = false;
        let mut node = 0;
        while store.strong_count() > 0 {
            let Some(client) = nodes.get(node % nodes.len().max(1)) else {
                tracing::error!(url = %url, "lock events: no Redis node configured");
                return;
            };
            match subscribe(client, &[&channel, &rules_channel], timeout).await {
                Ok(pubsub) => {
                    if was_subscribed {
                        feed.restart();
                    }
                    if failures > 0 || was_subscribed {
                        tracing::info!(url = %url, "lock events: subscribed again");
                    }
                    was_subscribed = true;
                    failures = 0;
                    feed.subscribed.send_replace(true);
                    let ended = pump(pubsub, &feed, &store, &rules_channel, timeout).await;
                    feed.subscribed.send_replace(false);
                    match ended {
                        Ended::StoreDropped => return,
                        Ended::Lost(why) => {
                            tracing::warn!(url = %url, reason = %why, "lock events: subscription lost; reconnecting");
                        }
                    }
                }
                Err(why) => {
                    if failures == 0 {
                        tracing::warn!(url = %url, reason = %why, "lock events: cannot subscribe; retrying");
                    } else {
                        tracing::debug!(url = %url, reason = %why, "lock events: still cannot subscribe");
                    }
                    failures = failures.saturating_add(1);
                    node += 1;
                }
            }
            tokio::time::sleep(backoff(failures)).await;
        }
    }

    /// Expires lapsed leases every [`RedisOptions::reap_interval`], for as long as the store
    /// lives. Holds only a weak reference between passes.
    pub async fn run_reaper(self: Arc<Self>) {
        let mut tick = tokio::time::interval(self.options.reap_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let store = Arc::downgrade(&self);
        drop(self);
        let mut failing = false;
        loop {
            tick.tick().await;
            let Some(store) = store.upgrade() else {
                return;
            };
            match store.reap().await {
                Ok(_) if failing => {
                    failing = false;
                    tracing::info!("lock reaper: the lock store answers again");
                }
                Ok(_) => {}
                Err(e) if !failing => {
                    failing = true;
                    tracing::warn!(error = %e, "lock reaper: cannot reach the lock store; retrying");
                }
                Err(_) => {}
            }
        }
    }

    /// One reaper pass: every resource whose lease deadline has passed, in every bucket, is
    /// expired (announcing `Released{Expired}`). Returns how many were due. Buckets that
    /// answer are reaped even when others (another cluster node) do not.
    pub async fn reap(&self) -> Result<usize, StoreError> {
        let conn = self.conn()?;
        let scans = (0..BUCKETS).map(|bucket| {
            let mut conn = conn.clone();
            let index = self.layout.index(bucket);
            async move {
                let mut invocation = scripts().due.prepare_invoke();
                invocation.key(index).arg(REAP_BATCH);
                conn.invoke::<Vec<String>>(&invocation).await
            }
        });
        let mut due = Vec::new();
        let mut first_error = None;
        for scan in futures::future::join_all(scans).await {
            match scan {
                Ok(resources) => due.extend(resources),
                Err(e) => {
                    first_error.get_or_insert(store_error(e));
                }
            }
        }
        let count = due.len();
        let expired: Vec<_> = stream::iter(due)
            .map(|resource| async move { self.get(&resource).await })
            .buffer_unordered(FAN_OUT)
            .collect()
            .await;
        for result in expired {
            if let Err(e) = result {
                first_error.get_or_insert(e);
            }
        }
        match first_error {
            Some(e) => Err(e),
            None => Ok(count),
        }
    }
}

fn vacant() -> StoreError {
    unexpected("claim", "vacant")
}

/// The arguments claim and takeover share (`ARGV[6..=13]`).
fn grant_args(req: &ClaimRequest, owner: &str) -> Vec<String> {
    let (has_session, session) = session_args(&req.holder);
    vec![
        req.rule.clone(),
        req.holder.user.clone(),
        req.holder.name.clone(),
        has_session,
        session,
        owner.to_owned(),
        req.instance.clone(),
        millis(req.lease.min(MAX_LEASE)).to_string(),
    ]
}

fn session_args(holder: &Holder) -> (String, String) {
    match &holder.session {
        Some(session) => ("1".to_owned(), session.clone()),
        None => ("0".to_owned(), String::new()),
    }
}

fn flag(value: bool) -> String {
    if value { "1" } else { "0" }.to_owned()
}

#[async_trait::async_trait]
impl LockStore for RedisLockStore {
    async fn claim(&self, req: &ClaimRequest) -> Result<ClaimOutcome, StoreError> {
        let user = &req.holder.user;
        let Some(max) = req.max_per_user else {
            let outcome = self.claim_script(req, false).await?.ok_or_else(vacant)?;
            if let ClaimOutcome::Claimed(lock) = &outcome {
                self.note_held(user, &[(lock.resource.as_str(), lock.expires)])
                    .await;
            }
            return Ok(outcome);
        };
        if let Some(outcome) = self.claim_script(req, true).await? {
            return Ok(outcome);
        }
        if let Some(held) = self.reserve(req, max).await? {
            return Ok(ClaimOutcome::Limited { held, max });
        }
        // An error here leaves the reservation: the claim may have happened. It counts until its
        // deadline passes and is then checked like any other entry.
        let outcome = self.claim_script(req, false).await?.ok_or_else(vacant)?;
        let ours = outcome.lock().is_some_and(|lock| lock.holder.user == *user);
        if !ours {
            self.note_held(user, &[(req.resource.as_str(), 0)]).await;
        }
        Ok(outcome)
    }

    async fn renew(
        &self,
        resource: &str,
        owner_key: &str,
        lease: Duration,
    ) -> Result<Option<Lock>, StoreError> {
        self.set_lease(resource, owner_key, lease, false).await
    }

    async fn release(
        &self,
        resource: &str,
        owner_key: &str,
        reason: ReleaseReason,
    ) -> Result<Option<Lock>, StoreError> {
        let reason_json = serde_json::to_string(&reason)
            .map_err(|e| StoreError::Corrupt(format!("release reason: {e}")))?;
        let args = [
            owner_key.to_owned(),
            reason_json,
            flag(reason.displaces_holder()),
        ];
        let Reply {
            outcome, previous, ..
        } = self.run(&scripts().release, resource, &args).await?;
        match (outcome.as_str(), previous) {
            ("none", _) => Ok(None),
            ("released", Some(previous)) => {
                self.note_held(&previous.holder.user, &[(resource, 0)])
                    .await;
                Ok(Some(previous))
            }
            _ => Err(unexpected("release", &outcome)),
        }
    }

    async fn takeover(&self, req: &ClaimRequest) -> Result<Takeover, StoreError> {
        let owner = req.holder.owner_key();
        let args = grant_args(req, &owner);
        let Reply {
            outcome,
            lock,
            previous,
            ..
        } = self.run(&scripts().takeover, &req.resource, &args).await?;
        match (outcome.as_str(), lock) {
            ("renewed", Some(lock)) => Ok(Takeover {
                lock,
                previous: None,
            }),
            ("taken", Some(lock)) => {
                let taker = &lock.holder.user;
                if let Some(previous) = previous.as_ref().filter(|p| p.holder.user != *taker) {
                    self.note_held(&previous.holder.user, &[(req.resource.as_str(), 0)])
                        .await;
                }
                self.note_held(taker, &[(req.resource.as_str(), lock.expires)])
                    .await;
                Ok(Takeover { lock, previous })
            }
            _ => Err(unexpected("takeover", &outcome)),
        }
    }

    async fn begin_grace(
        &self,
        resource: &str,
        owner_key: &str,
        grace: Duration,
    ) -> Result<Option<Lock>, StoreError> {
        self.set_lease(resource, owner_key, grace, true).await
    }

    async fn touch(&self, resource: &str, owner_key: &str) -> Result<Option<Lock>, StoreError> {
        let args = [owner_key.to_owned()];
        let Reply { outcome, lock, .. } = self.run(&scripts().touch, resource, &args).await?;
        match (outcome.as_str(), lock) {
            ("none", _) => Ok(None),
            ("touched", Some(lock)) => Ok(Some(lock)),
            _ => Err(unexpected("touch", &outcome)),
        }
    }

    async fn release_idle(
        &self,
        resource: &str,
        owner_key: &str,
        active_before: UnixMillis,
    ) -> Result<Option<Lock>, StoreError> {
        let args = [owner_key.to_owned(), active_before.to_string()];
        let Reply {
            outcome, previous, ..
        } = self.run(&scripts().release_idle, resource, &args).await?;
        match (outcome.as_str(), previous) {
            ("none", _) => Ok(None),
            ("released", Some(previous)) => {
                self.note_held(&previous.holder.user, &[(resource, 0)])
                    .await;
                Ok(Some(previous))
            }
            _ => Err(unexpected("release_idle", &outcome)),
        }
    }

    async fn presence_join(
        &self,
        resource: &str,
        tab: &str,
        holder: &Holder,
        ttl: Duration,
    ) -> Result<(), StoreError> {
        let (set, hash) = self.layout.presence(resource);
        let holder = serde_json::to_string(holder)
            .map_err(|e| StoreError::Corrupt(format!("presence holder: {e}")))?;
        let args = [
            tab.to_owned(),
            holder,
            millis(ttl.min(MAX_LEASE)).to_string(),
            MAX_PRESENCE.to_string(),
        ];
        let Reply { outcome, .. } = self
            .run_keys(&scripts().presence_join, resource, &[set, hash], &args)
            .await?;
        match outcome.as_str() {
            "joined" | "full" => Ok(()),
            _ => Err(unexpected("presence_join", &outcome)),
        }
    }

    async fn presence_leave(&self, resource: &str, tab: &str) -> Result<(), StoreError> {
        let (set, hash) = self.layout.presence(resource);
        let args = [tab.to_owned()];
        let Reply { outcome, .. } = self
            .run_keys(&scripts().presence_leave, resource, &[set, hash], &args)
            .await?;
        match outcome.as_str() {
            "left" => Ok(()),
            _ => Err(unexpected("presence_leave", &outcome)),
        }
    }

    async fn presence(&self, resource: &str) -> Result<Vec<Present>, StoreError> {
        let (set, hash) = self.layout.presence(resource);
        let mut invocation = scripts().presence_read.prepare_invoke();
        invocation.key(set).key(hash);
        let mut conn = self.conn()?;
        let flat: Vec<String> = conn.invoke(&invocation).await.map_err(store_error)?;
        let mut present = Vec::with_capacity(flat.len() / 2);
        for pair in flat.chunks_exact(2) {
            let holder: Holder = serde_json::from_str(&pair[1])
                .map_err(|e| StoreError::Corrupt(format!("presence holder: {e}")))?;
            present.push(Present {
                tab: pair[0].clone(),
                holder,
            });
        }
        present.sort_by(|a, b| a.tab.cmp(&b.tab));
        Ok(present)
    }

    async fn force_release_if(
        &self,
        resource: &str,
        by: &str,
        fence: Option<u64>,
    ) -> Result<ForceReleased, StoreError> {
        let args = [
            by.to_owned(),
            fence.map(|f| f.to_string()).unwrap_or_default(),
        ];
        let Reply {
            outcome,
            lock,
            previous,
            ..
        } = self.run(&scripts().force_release, resource, &args).await?;
        match (outcome.as_str(), lock, previous) {
            ("none", _, _) => Ok(ForceReleased::Free),
            ("changed", Some(lock), _) => Ok(ForceReleased::Changed(lock)),
            ("released", _, Some(previous)) => {
                self.note_held(&previous.holder.user, &[(resource, 0)])
                    .await;
                Ok(ForceReleased::Released(previous))
            }
            _ => Err(unexpected("force_release", &outcome)),
        }
    }

    async fn get(&self, resource: &str) -> Result<Option<Lock>, StoreError> {
        let Reply { outcome, lock, .. } = self.run(&scripts().get, resource, &[]).await?;
        match outcome.as_str() {
            "current" => Ok(lock),
            _ => Err(unexpected("get", &outcome)),
        }
    }

    async fn list(&self) -> Result<Vec<Lock>, StoreError> {
        let conn = self.conn()?;
        let scans = (0..BUCKETS).map(|bucket| {
            let mut conn = conn.clone();
            let mut cmd = redis::cmd("ZRANGE");
            cmd.arg(self.layout.index(bucket)).arg(0).arg(-1);
            async move { conn.query::<Vec<String>>(&cmd).await }
        });
        let mut resources = Vec::new();
        for scan in futures::future::join_all(scans).await {
            resources.extend(scan.map_err(store_error)?);
        }
        // Index entries are verified: `get` expires lapsed leases and skips vanished records.
        let found: Vec<_> = stream::iter(resources)
            .map(|resource| async move { self.get(&resource).await })
            .buffer_unordered(FAN_OUT)
            .collect()
            .await;
        let mut locks = Vec::with_capacity(found.len());
        for lock in found {
            locks.extend(lock?);
        }
        locks.sort_by(|a, b| a.resource.cmp(&b.resource));
        Ok(locks)
    }

    async fn request_access(&self, resource: &str, by: &Holder) -> Result<(), StoreError> {
        let (has_session, session) = session_args(by);
        let args = [by.user.clone(), by.name.clone(), has_session, session];
        let Reply { outcome, .. } = self.run(&scripts().request_access, resource, &args).await?;
        match outcome.as_str() {
            "requested" => Ok(()),
            _ => Err(unexpected("request_access", &outcome)),
        }
    }

    async fn enqueue(
        &self,
        resource: &str,
        holder: &Holder,
        ttl: Duration,
        offer: Duration,
        max: usize,
    ) -> Result<QueuePlace, StoreError> {
        let (has_session, session) = session_args(holder);
        let args = [
            holder.user.clone(),
            holder.name.clone(),
            has_session,
            session,
            holder.owner_key(),
            millis(ttl.min(MAX_LEASE)).to_string(),
            millis(offer.min(MAX_LEASE)).to_string(),
            max.min(MAX_QUEUE).to_string(),
        ];
        let reply = self.run_queue(&scripts().enqueue, resource, &args).await?;
        match (reply.outcome.as_str(), reply.place()) {
            ("place", Some(place)) => Ok(place),
            _ => Err(unexpected("enqueue", &reply.outcome)),
        }
    }

    async fn dequeue(&self, resource: &str, owner_key: &str) -> Result<bool, StoreError> {
        let args = [owner_key.to_owned()];
        let reply = self.run_queue(&scripts().dequeue, resource, &args).await?;
        match (reply.outcome.as_str(), reply.removed) {
            ("left", Some(removed)) => Ok(removed),
            _ => Err(unexpected("dequeue", &reply.outcome)),
        }
    }

    async fn queue(&self, resource: &str) -> Result<QueueState, StoreError> {
        let reply = self.run_queue(&scripts().queue, resource, &[]).await?;
        if reply.outcome != "queue" {
            return Err(unexpected("queue", &reply.outcome));
        }
        Ok(reply.into_queue()?.unwrap_or_default())
    }

    /// Ready when Redis answers and the event subscription is up: without it this instance's
    /// banners would not hear of changes made elsewhere.
    async fn ping(&self) -> Result<(), StoreError> {
        let mut conn = self.conn()?;
        conn.query::<redis::Value>(&redis::cmd("PING"))
            .await
            .map_err(store_error)?;
        if !*self.feed.subscribed.borrow() {
            return Err(StoreError::Unavailable(
                "not subscribed to lock events".to_owned(),
            ));
        }
        Ok(())
    }

    /// See [`run_listener`](RedisLockStore::run_listener) for when receivers are closed.
    fn subscribe(&self) -> broadcast::Receiver<LockEvent> {
        self.feed.subscribe()
    }

    fn events_live(&self) -> bool {
        *self.feed.subscribed.borrow()
    }

    async fn shapes_put(
        &self,
        instance: &str,
        summary: &str,
        keep: Duration,
    ) -> Result<(), StoreError> {
        let mut conn = self.conn()?;
        let (shapes, at) = (self.layout.shapes(), self.layout.shapes_at());
        let now = unix_now_ms();
        let keep = u64::try_from(keep.as_millis()).unwrap_or(u64::MAX);
        let timeout = self.options.timeout;
        // Separate commands (the two keys may live on different cluster nodes); a publication
        // cut short is made whole by the next, five seconds later.
        for cmd in [
            redis::cmd("HSET")
                .arg(&shapes)
                .arg(instance)
                .arg(format!("{now}\n{summary}"))
                .clone(),
            redis::cmd("HSET").arg(&at).arg(instance).arg(now).clone(),
            redis::cmd("PEXPIRE").arg(&shapes).arg(keep).clone(),
            redis::cmd("PEXPIRE").arg(&at).arg(keep).clone(),
        ] {
            query_within::<redis::Value>(&mut conn, &cmd, timeout).await?;
        }
        // The instances that stopped publishing: their summaries go now, read or not.
        let times: Vec<(String, u64)> =
            query_within(&mut conn, redis::cmd("HGETALL").arg(&at), timeout).await?;
        let stale: Vec<String> = times
            .into_iter()
            .filter(|(_, published)| now.saturating_sub(*published) >= keep)
            .map(|(instance, _)| instance)
            .collect();
        if !stale.is_empty() {
            for key in [&shapes, &at] {
                let drop = redis::cmd("HDEL").arg(key).arg(&stale).clone();
                query_within::<redis::Value>(&mut conn, &drop, timeout).await?;
            }
        }
        Ok(())
    }

    async fn shapes(&self, max_age: Duration) -> Result<Vec<(String, String)>, StoreError> {
        let mut conn = self.conn()?;
        let key = self.layout.shapes();
        let all = redis::cmd("HGETALL").arg(&key).clone();
        let entries: Vec<(String, String)> =
            match tokio::time::timeout(self.options.timeout, conn.query(&all)).await {
                Ok(result) => result.map_err(store_error)?,
                Err(_) => return Err(StoreError::Timeout),
            };
        let now = unix_now_ms();
        let max_age = u64::try_from(max_age.as_millis()).unwrap_or(u64::MAX);
        let mut live = Vec::with_capacity(entries.len());
        let mut stale = Vec::new();
        for (instance, value) in entries {
            let fresh = value
                .split_once('\n')
                .and_then(|(at, summary)| Some((at.parse::<u64>().ok()?, summary)))
                .filter(|(at, _)| now.saturating_sub(*at) < max_age);
            match fresh {
                Some((_, summary)) => live.push((instance, summary.to_owned())),
                None => stale.push(instance),
            }
        }
        if !stale.is_empty() {
            // Best effort: a summary left behind is skipped again next time.
            let drop = redis::cmd("HDEL").arg(&key).arg(&stale).clone();
            let _ =
                tokio::time::timeout(self.options.timeout, conn.query::<redis::Value>(&drop)).await;
        }
        Ok(live)
    }

    async fn nudge_rules(&self) -> Result<(), StoreError> {
        let mut conn = self.conn()?;
        let publish = redis::cmd("PUBLISH")
            .arg(&self.rules_channel)
            .arg("changed")
            .clone();
        match tokio::time::timeout(self.options.timeout, conn.query::<redis::Value>(&publish)).await
        {
            Ok(result) => result.map(|_| ()).map_err(store_error),
            Err(_) => Err(StoreError::Timeout),
        }
    }

    async fn stash_put(&self, user: &str, entry: NewStash) -> Result<StashId, StoreError> {
        self.put_stash(user, entry).await
    }

    async fn stash_list(&self, user: &str) -> Result<Vec<StashMeta>, StoreError> {
        self.list_stash(user).await
    }

    async fn stash_get(&self, user: &str, id: &str) -> Result<Option<StashEntry>, StoreError> {
        self.get_stash(user, id).await
    }

    async fn stash_delete(&self, user: &str, id: &str) -> Result<bool, StoreError> {
        self.delete_stash(user, id).await
    }

    fn rule_nudges(&self) -> Option<broadcast::Receiver<()>> {
        Some(self.feed.nudges.subscribe())
    }

    async fn end_session(&self, session: &str, until: UnixMillis) -> Result<(), StoreError> {
        self.end(session, until).await
    }

    async fn ended_sessions(&self) -> Result<Vec<(String, UnixMillis)>, StoreError> {
        self.ended().await
    }
}

fn unexpected(op: &str, outcome: &str) -> StoreError {
    StoreError::Corrupt(format!("{op}: unexpected script outcome {outcome:?}"))
}

/// Maps a Redis client error onto what callers distinguish: no answer in time, data this
/// version cannot read, or a server that cannot serve (down, loading, read-only replica, …).
/// One command, bounded by `timeout`.
async fn query_within<T: FromRedisValue>(
    conn: &mut Conn,
    cmd: &redis::Cmd,
    timeout: Duration,
) -> Result<T, StoreError> {
    match tokio::time::timeout(timeout, conn.query::<T>(cmd)).await {
        Ok(result) => result.map_err(store_error),
        Err(_) => Err(StoreError::Timeout),
    }
}

fn store_error(e: RedisError) -> StoreError {
    if e.is_timeout() {
        return StoreError::Timeout;
    }
    match e.kind() {
        redis::ErrorKind::Parse | redis::ErrorKind::UnexpectedReturnType => {
            StoreError::Corrupt(e.to_string())
        }
        _ => StoreError::Unavailable(e.to_string()),
    }
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

fn backoff(failures: u32) -> Duration {
    let factor = 2u32.saturating_pow(failures.min(8));
    BACKOFF_MIN.saturating_mul(factor).min(BACKOFF_MAX)
}

/// Why the listener stopped reading.
enum Ended {
    StoreDropped,
    Lost(String),
}

async fn subscribe(
    client: &Client,
    channels: &[&String],
    timeout: Duration,
) -> Result<PubSub, String> {
    let attempt = async {
        let mut pubsub = client.get_async_pubsub().await?;
        for channel in channels {
            pubsub.subscribe(channel.as_str()).await?;
        }
        Ok::<_, RedisError>(pubsub)
    };
    match tokio::time::timeout(timeout, attempt).await {
        Ok(Ok(pubsub)) => Ok(pubsub),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err(format!("no answer within {timeout:?}")),
    }
}

/// Delivers messages until the connection fails or the store is dropped.
async fn pump(
    pubsub: PubSub,
    feed: &EventFeed,
    store: &Weak<RedisLockStore>,
    rules_channel: &str,
    timeout: Duration,
) -> Ended {
    let (mut sink, mut messages) = pubsub.split();
    let mut ping = tokio::time::interval(LISTENER_PING);
    ping.reset();
    loop {
        tokio::select! {
            message = messages.next() => match message {
                Some(message) if message.get_channel_name() == rules_channel => {
                    let _ = feed.nudges.send(());
                }
                Some(message) => match parse_event(message.get_payload_bytes()) {
                    Ok(event) => feed.send(event),
                    Err(e) => tracing::warn!(error = %e, "lock events: skipped a message"),
                },
                None => return Ended::Lost("connection closed".to_owned()),
            },
            _ = ping.tick() => {
                if store.strong_count() == 0 {
                    return Ended::StoreDropped;
                }
                match tokio::time::timeout(timeout, sink.ping::<redis::Value>()).await {
                    Ok(Ok(_)) => {}
                    Ok(Err(e)) => return Ended::Lost(e.to_string()),
                    Err(_) => return Ended::Lost(format!("no answer to a ping within {timeout:?}")),
                }
            }
        }
    }
}

/// Wall-clock milliseconds, for the shape summaries' age.
fn unix_now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_connection_turns_nagle_off() {
        for url in ["redis://127.0.0.1:6379/0", "rediss://cache.internal:6380"] {
            let info = connection_info(url).unwrap();
            assert!(info.tcp_settings().nodelay(), "{url}");
        }
        assert!(connection_info("not a url").is_err());
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        assert_eq!(backoff(0), BACKOFF_MIN);
        assert_eq!(backoff(1), BACKOFF_MIN * 2);
        assert_eq!(backoff(3), BACKOFF_MIN * 8);
        assert_eq!(backoff(50), BACKOFF_MAX);
    }

    #[test]
    fn open_checks_without_connecting() {
        let options = RedisOptions::from_url("redis://127.0.0.1:1/0").unwrap();
        assert!(RedisLockStore::open(options).is_ok());
        let mut options = RedisOptions::from_url("redis://127.0.0.1:1/0").unwrap();
        options.key_prefix = "a{b".into();
        assert!(matches!(
            RedisLockStore::open(options),
            Err(RedisOpenError::InvalidPrefix { .. })
        ));
        let options = RedisOptions::from_url("redis+cluster://127.0.0.1:1,127.0.0.1:2").unwrap();
        assert!(RedisLockStore::open(options).is_ok());
        for url in [
            "redis://u:hunter2@127.0.0.1:notaport/0",
            "redis+cluster://u:hunter2@127.0.0.1:1,127.0.0.1:x",
        ] {
            let options = RedisOptions::from_url(url).unwrap();
            let Err(err) = RedisLockStore::open(options) else {
                panic!("{url} was accepted");
            };
            assert!(matches!(err, RedisOpenError::InvalidUrl { .. }), "{err}");
            assert!(!err.to_string().contains("hunter2"), "{err}");
        }
    }

    #[tokio::test]
    async fn an_unreachable_server_is_unavailable_not_a_hang() {
        // Port 1 on loopback refuses connections.
        let options = RedisOptions::from_url("redis://127.0.0.1:1/0").unwrap();
        let store = RedisLockStore::open(options).unwrap();
        let started = std::time::Instant::now();
        let err = store.get("doc:1").await.unwrap_err();
        assert!(matches!(err, StoreError::Unavailable(_)), "{err:?}");
        assert!(matches!(
            store.ping().await.unwrap_err(),
            StoreError::Unavailable(_)
        ));
        assert!(started.elapsed() < Duration::from_secs(2));
    }
}
