//! The banner WebSocket (`{prefix}/ws`, docs/banner.md), served by the proxy itself.
//!
//! A handshake that opens its own connection is taken by [`crate::front`] and runs on the bare
//! TCP stream ([`serve_tcp`]). One that arrives inside an HTTP session (a kept-alive
//! connection) is answered in `request_filter`: pingora's `ProxyHttp` cannot hand over the
//! downstream connection, so the upgraded byte stream is bridged into a `tokio::io::duplex`
//! whose other end runs tokio-tungstenite ([`serve`]). Either way the socket task owns the
//! protocol and [`admit`] decides who may open one.
//!
//! Limits: messages over [`MAX_MESSAGE`] close with 1009; more than [`RATE_BURST`] messages
//! in a burst get an error, and sustained flooding closes with 1008; a socket silent for
//! [`IDLE_TIMEOUT`] (no pong, no message) is closed; the JWT's expiry ends the socket with
//! `session_expired` and close code 4401.

use std::sync::Arc;
use std::time::Duration;

use auth::Identity;
use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use http::{header, HeaderMap, HeaderValue};
use pingora::http::ResponseHeader;
use pingora::prelude::*;
use pingora::protocols::l4::stream::Stream as TcpStream;
use pingora::proxy::Session;
use serde::Deserialize;
use serde_json::{json, Value};
use store::{EventKind, Lock};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::time::{interval, sleep_until, Instant, MissedTickBehavior};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role, WebSocketConfig};
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::WebSocketStream;

use crate::actions::{self, holds};
use crate::banner::{free_json, lock_json, Push};
use crate::origin::check_same_origin;
use crate::respond::Reply;
use crate::state::{cookie, Latch, SESSION_COOKIE};

/// Largest client message. The protocol's messages are a few hundred bytes.
pub const MAX_MESSAGE: usize = 8 * 1024;
/// Read buffer of a socket. Larger messages are read in several steps; a small buffer keeps
/// ten thousand idle sockets cheap.
const READ_BUFFER: usize = 1024;
/// Messages allowed in a burst; the bucket refills at [`RATE_PER_SEC`].
pub const RATE_BURST: f64 = 20.0;
pub const RATE_PER_SEC: f64 = 5.0;
/// Over-limit messages tolerated before the socket is closed.
const RATE_STRIKES: u32 = 20;
/// Resources one socket may watch.
const MAX_WATCHES: usize = 16;
pub const PING_EVERY: Duration = Duration::from_secs(20);
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// How long one write to the client may take. A client that stops reading would otherwise pin
/// its socket task, its bridge and its slot in the per-user limit for ever.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);

const CLOSE_SESSION_EXPIRED: u16 = 4401;
/// How long a closing socket keeps reading for the client's answer to its close frame.
const LINGER: Duration = Duration::from_secs(2);

#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum ClientMsg {
    Watch { path: String },
    Heartbeat,
    Release { resource: String },
    Takeover { resource: String },
    RequestAccess { resource: String },
}

/// The key of a WebSocket handshake (`Upgrade: websocket`, a key, version 13), or `None` when
/// `headers` are not one.
pub fn handshake_key(headers: &HeaderMap) -> Option<HeaderValue> {
    let upgrade = headers
        .get(header::UPGRADE)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"websocket"));
    let version_ok = headers
        .get(header::SEC_WEBSOCKET_VERSION)
        .is_some_and(|v| v.as_bytes() == b"13");
    let key = headers.get(header::SEC_WEBSOCKET_KEY)?;
    (upgrade && version_ok).then(|| key.clone())
}

/// A banner socket that may open: who it is for, and its place in the hub.
pub struct Admitted {
    key: HeaderValue,
    identity: Arc<Identity>,
    sid: Option<String>,
    socket_id: u64,
    pushes: tokio::sync::mpsc::Receiver<Push>,
}

/// Decides whether a WebSocket handshake may open a banner socket (same origin, a valid token,
/// under the per-user limit) and registers it with the hub if so. The refusal is the reply to
/// send instead of the 101.
pub fn admit(latch: &Latch, headers: &HeaderMap) -> Result<Admitted, Reply> {
    let Some(key) = handshake_key(headers) else {
        return Err(Reply::problem(
            400,
            "Not a WebSocket handshake",
            "connect with a WebSocket client",
        )
        .header(header::SEC_WEBSOCKET_VERSION, "13"));
    };
    if let Err(refused) = check_same_origin(headers, latch.config.proxy.public_scheme) {
        return Err(Reply::problem(403, "Forbidden", refused.message()));
    }
    let identity = latch.authenticate(headers).map_err(|e| {
        Reply::problem(401, "Unauthorized", &e.to_string())
            .header(header::WWW_AUTHENTICATE, "Bearer realm=\"latch\"")
    })?;
    let sid = cookie(headers, SESSION_COOKIE).map(str::to_string);
    let (socket_id, pushes) = latch
        .hub
        .register(&identity.user, sid.as_deref())
        .map_err(|e| {
            Reply::problem(429, "Too many banner sockets", &e.to_string())
                .header(header::RETRY_AFTER, "10")
        })?;
    Ok(Admitted {
        key,
        identity,
        sid,
        socket_id,
        pushes,
    })
}

/// The tungstenite settings of every banner socket.
fn socket_config() -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(READ_BUFFER)
        .write_buffer_size(0)
        .max_message_size(Some(MAX_MESSAGE))
        .max_frame_size(Some(MAX_MESSAGE))
}

/// Serves a banner socket whose handshake opened its own connection, on that bare connection:
/// the 101, then the protocol until either side ends.
pub async fn serve_tcp(latch: &Arc<Latch>, mut tcp: Box<TcpStream>, admitted: Admitted) {
    let accept = tungstenite::handshake::derive_accept_key(admitted.key.as_bytes());
    let response = format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Accept: {accept}\r\n\r\n"
    );
    let written = tokio::time::timeout(WRITE_TIMEOUT, async {
        tcp.write_all(response.as_bytes()).await?;
        tcp.flush().await
    })
    .await;
    if !matches!(written, Ok(Ok(()))) {
        latch.hub.unregister(admitted.socket_id);
        return;
    }
    let stream: Box<dyn Transport> = tcp;
    let ws = WebSocketStream::from_raw_socket(stream, Role::Server, Some(socket_config())).await;
    run_admitted(latch, ws, admitted, "connection").await;
}

/// Runs an open banner socket to its end, then takes it out of the hub.
async fn run_admitted(latch: &Arc<Latch>, ws: Ws, admitted: Admitted, via: &'static str) {
    let Admitted {
        key,
        identity,
        sid,
        socket_id,
        pushes,
    } = admitted;
    drop(key);
    latch.metrics.banner_sockets.inc();
    latch
        .metrics
        .banner_sockets_opened
        .with_label_values(&[via])
        .inc();
    run_socket(latch.clone(), socket_id, identity, sid, ws, pushes).await;
    latch.metrics.banner_sockets.dec();
    latch.hub.unregister(socket_id);
}

/// Answers a handshake that arrived inside an HTTP session (on a kept-alive connection, or
/// refused at the front), then bridges the upgraded connection until either side ends.
pub async fn serve(latch: &Arc<Latch>, session: &mut Session) -> Result<()> {
    let admitted = match admit(latch, &session.req_header().headers) {
        Ok(admitted) => admitted,
        Err(reply) => return reply.send(session, false).await,
    };
    let mut resp = ResponseHeader::build(101, Some(3))?;
    resp.insert_header(header::UPGRADE, "websocket")?;
    resp.insert_header(header::CONNECTION, "Upgrade")?;
    resp.insert_header(
        header::SEC_WEBSOCKET_ACCEPT,
        tungstenite::handshake::derive_accept_key(admitted.key.as_bytes()),
    )?;
    if let Err(e) = session.write_response_header(Box::new(resp), false).await {
        latch.hub.unregister(admitted.socket_id);
        return Err(e);
    }

    let (bridge, theirs) = tokio::io::duplex(4 * 1024);
    let stream: Box<dyn Transport> = Box::new(theirs);
    let ws = WebSocketStream::from_raw_socket(stream, Role::Server, Some(socket_config())).await;
    let task = tokio::spawn({
        let latch = latch.clone();
        async move { run_admitted(&latch, ws, admitted, "session").await }
    });
    pump(session, bridge).await;
    // The client is gone; the socket task sees EOF on its side and cleans up.
    let _ = task.await;
    Ok(())
}

/// Moves bytes between the upgraded downstream connection and the duplex until either closes.
async fn pump(session: &mut Session, bridge: tokio::io::DuplexStream) {
    let (mut from_ws, mut to_ws) = tokio::io::split(bridge);
    let mut buf = vec![0u8; READ_BUFFER];
    loop {
        tokio::select! {
            incoming = session.read_request_body() => match incoming {
                Ok(Some(bytes)) => {
                    if to_ws.write_all(&bytes).await.is_err() {
                        break;
                    }
                }
                _ => break,
            },
            n = from_ws.read(&mut buf) => match n {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    let write = session
                        .write_response_body(Some(Bytes::copy_from_slice(&buf[..n])), false);
                    if !matches!(tokio::time::timeout(WRITE_TIMEOUT, write).await, Ok(Ok(()))) {
                        break;
                    }
                }
            },
        }
    }
    let _ = to_ws.shutdown().await;
    let _ = tokio::time::timeout(WRITE_TIMEOUT, session.write_response_body(None, true)).await;
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
    /// When a renewal first found the held lock gone without any event saying so — what a
    /// lock store that lost its data looks like (see [`Conn::rebuild`]).
    lost_at: Option<Instant>,
}

/// How long a held lock must stay silently gone before the socket re-claims it. A release,
/// takeover or expiry reaches the socket as an event well within this, clearing `held`.
const REBUILD_AFTER: Duration = Duration::from_secs(1);

struct Conn {
    latch: Arc<Latch>,
    id: u64,
    identity: Arc<Identity>,
    sid: Option<String>,
    watched: Vec<Watched>,
    tokens: f64,
    last_refill: Instant,
    strikes: u32,
}

/// What a banner socket runs over: the bare connection, or the bridge out of an HTTP session.
pub trait Transport: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Transport for T {}

type Ws = WebSocketStream<Box<dyn Transport>>;

async fn send(ws: &mut Ws, value: Value) -> bool {
    let write = ws.send(Message::Text(value.to_string().into()));
    matches!(tokio::time::timeout(WRITE_TIMEOUT, write).await, Ok(Ok(())))
}

async fn close(ws: &mut Ws, code: CloseCode, reason: &str) {
    let frame = Message::Close(Some(CloseFrame {
        code,
        reason: reason.to_string().into(),
    }));
    let _ = tokio::time::timeout(WRITE_TIMEOUT, async {
        let _ = ws.send(frame).await;
        let _ = ws.flush().await;
    })
    .await;
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

    fn take_token(&mut self) -> bool {
        let now = Instant::now();
        let elapsed = now.duration_since(self.last_refill).as_secs_f64();
        self.last_refill = now;
        self.tokens = (self.tokens + elapsed * RATE_PER_SEC).min(RATE_BURST);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            self.strikes += 1;
            false
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
        let rules = self.latch.rules.load();
        match rules.get(&w.rule) {
            Some(rule) => self.latch.holder(&self.identity, rule, self.sid.as_deref()),
            None => store::Holder {
                user: self.identity.user.clone(),
                name: self.identity.name.clone(),
                session: None,
            },
        }
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
            ClientMsg::Watch { path } => self.watch(ws, &path).await,
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
        let (resource, rule_id, lease, grace) = {
            let rules = self.latch.rules.load();
            let Some(m) = rules.find("GET", &rule_path) else {
                return send(
                    ws,
                    error_json("not_protected", "no rule protects this path"),
                )
                .await;
            };
            (
                m.resource,
                m.rule.id.clone(),
                self.latch.lease_for(m.rule),
                self.latch.grace_for(m.rule),
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
            self.watched.push(Watched {
                resource: resource.clone(),
                rule: rule_id,
                renew_every,
                lease,
                grace,
                held: false,
                lost_at: None,
            });
            self.latch.hub.watch(self.id, &resource);
        }
        self.resend(ws, &resource).await
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
            EventKind::Claimed | EventKind::Released { .. } => {
                self.push_state(ws, &event.resource, event.lock.as_ref())
                    .await
            }
        }
    }

    async fn push_state(&mut self, ws: &mut Ws, resource: &str, lock: Option<&Lock>) -> bool {
        let msg = self.view(resource, lock);
        let you = msg["you"].as_bool().unwrap_or(false);
        if let Some(w) = self.watched.iter_mut().find(|w| w.resource == resource) {
            w.held = you;
            w.lost_at = None;
        }
        send(ws, msg).await
    }

    /// The socket is closing: locks its viewer holds here start their grace period unless
    /// another local banner of the same user still watches them.
    async fn start_grace(&self) {
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
            let _ = self
                .latch
                .store_op(
                    "renew",
                    self.latch.store.renew(&w.resource, &owner, w.grace),
                )
                .await;
            tracing::debug!(resource = %w.resource, user = %self.identity.user, grace = ?w.grace, "last banner closed; grace started");
        }
    }
}

async fn run_socket(
    latch: Arc<Latch>,
    id: u64,
    identity: Arc<Identity>,
    sid: Option<String>,
    mut ws: Ws,
    mut pushes: tokio::sync::mpsc::Receiver<Push>,
) {
    let expires_at = {
        let now_unix = crate::time_fmt::now_ms() / 1000;
        Instant::now() + Duration::from_secs(identity.expires_at.saturating_sub(now_unix))
    };
    let mut conn = Conn {
        latch,
        id,
        identity,
        sid,
        watched: Vec::new(),
        tokens: RATE_BURST,
        last_refill: Instant::now(),
        strikes: 0,
    };
    let mut ping = interval(PING_EVERY);
    ping.set_missed_tick_behavior(MissedTickBehavior::Delay);
    ping.tick().await;
    let mut renew = interval(Duration::from_secs(1));
    renew.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut last_renew = Instant::now();
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
                        if !conn.take_token() {
                            if conn.strikes > RATE_STRIKES {
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
                            Message::Text(text) => conn.handle(&mut ws, &text).await,
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
                    Some(Push::Event(event)) => conn.on_event(&mut ws, &event).await,
                    Some(Push::Resync) => {
                        let resources: Vec<String> = conn.watched.iter().map(|w| w.resource.clone()).collect();
                        let mut ok = true;
                        for r in resources {
                            ok &= conn.resend(&mut ws, &r).await;
                        }
                        ok
                    }
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
            }
            _ = renew.tick() => {
                let every = conn.watched.iter().filter(|w| w.held).map(|w| w.renew_every).min();
                if every.is_some_and(|e| last_renew.elapsed() >= e) {
                    last_renew = Instant::now();
                    conn.renew_held().await;
                }
            }
        }
    }
    conn.start_grace().await;
    let _ = ws.close(None).await;
    // Read what the client still sends until it answers the close or goes quiet: closing a
    // connection with unread bytes in it resets it, and the reset can destroy the close frame
    // (and the error before it) before the client has read them.
    let _ =
        tokio::time::timeout(LINGER, async { while let Some(Ok(_)) = ws.next().await {} }).await;
}
