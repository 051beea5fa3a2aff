//! The app's own server-sent event streams under a rule with `websocket = "lock"`: proxied by
//! Latch itself, so that they can be ended when their owner loses the lock.
//!
//! Why not pingora: as for the app's WebSockets ([`crate::app_ws`]), pingora 0.9's proxy loop
//! waits only on the two peers' bytes, and an event stream is idle most of its life, so
//! nothing could end it from a filter. So once the gate has granted a GET that asks for
//! `text/event-stream` to the lock's holder, `request_filter` hands it to [`serve`], which:
//! 1. registers the stream under its lock and reads the lock back ([`crate::fenced`]; the
//!    bound per user is shared with the app's WebSockets);
//! 2. connects to the app itself and sends the request with the identity and lock headers
//!    and `Accept-Encoding: identity`, through pingora's own HTTP/1 client session (the same
//!    wire format and header case as every forwarded request, and its bounded head and
//!    chunked-body parsing);
//! 3. relays the app's answer head and body to the client as they arrive. An answer that is
//!    not an uncompressed `200 text/event-stream` is relayed as it is;
//! 4. when the owner loses the lock, ends the stream with one last event,
//!    `event: latch-lock-lost` with a JSON `data:` naming the reason and the resource, and
//!    closes the app's connection. When the credential the stream was opened with expires,
//!    the same, with `event: latch-session-expired`. The browser's `EventSource` reconnects through Latch and
//!    meets the gate: 423 (which stops an `EventSource`) while someone else holds the lock.
//!
//! A holder's request that gets an event stream without having asked for one (no
//! `Accept: text/event-stream`) goes the ordinary way, through pingora, where it could not be
//! ended; `service` refuses that answer with 502 before it starts.
//!
//! The client going away ends the app's connection too. Events are relayed whole: the bytes
//! of an event not yet ended by its blank line are held back ([`Framing`]), which delays
//! nothing a client would act on (an event is dispatched at its blank line) and lets the last
//! event start on a clean line.

use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http::{header, HeaderValue, Method, StatusCode, Version};
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::prelude::*;
use pingora::protocols::http::v1::client::HttpSession;
use pingora::proxy::Session;
use serde_json::json;

use crate::app_sockets::Ending;
use crate::apps::AppId;
use crate::fenced::{self, Fenced};
use crate::respond::Reply;
use crate::state::Latch;
use crate::upstream::InFlight;

/// The type of the last event a stream gets when its owner loses the lock.
pub const LOCK_LOST_EVENT: &str = "latch-lock-lost";
/// The type of the last event a stream gets when its owner's credential expires.
pub const SESSION_EXPIRED_EVENT: &str = "latch-session-expired";
/// How long connecting to the app may take (as for forwarded requests).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long one write to either side may take.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// The longest incomplete event held back; a longer one is passed on as it comes.
pub const MAX_PENDING: usize = 256 * 1024;
/// Informational answers (1xx) skipped before the real one.
const MAX_INFORMATIONAL: usize = 4;

/// Headers that concern one connection, not the request or answer, and are not passed on.
const HOP_BY_HOP: [&str; 6] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "upgrade",
];

/// Does the request ask for an event stream? A GET whose `Accept` names `text/event-stream`.
/// One header lookup, made only for requests a rule granted under a fence.
pub fn asks_for_event_stream(req: &RequestHeader) -> bool {
    req.method == Method::GET
        && req.headers.get_all(header::ACCEPT).iter().any(|v| {
            v.as_bytes()
                .windows(b"text/event-stream".len())
                .any(|w| w.eq_ignore_ascii_case(b"text/event-stream"))
        })
}

/// Serves a granted, fenced request for an event stream to its end. `set_cookie` holds the
/// cookies the answer must carry (a new browser-session id for `owner = "session"` rules, a
/// renewed sign-in session).
pub async fn serve(
    latch: &Arc<Latch>,
    session: &mut Session,
    fenced: Fenced,
    set_cookie: Vec<String>,
) -> Result<()> {
    let what = "WebSockets and event streams";
    let (_admitted, mut lost) = match fenced::admit(latch, &fenced, what).await {
        Ok(admitted) => admitted,
        Err(reply) => return reply.send(session, false).await,
    };

    let mut request = Box::new(session.req_header().clone());
    for name in HOP_BY_HOP
        .iter()
        .chain(&["transfer-encoding", "content-length"])
    {
        request.remove_header(*name);
    }
    request.set_version(Version::HTTP_11);
    fenced
        .upstream_headers(true)
        .apply(&mut request, latch.config.proxy.header_case)?;
    // Counted against its server (least connections) for as long as the stream lasts.
    let (mut app, _held) = match open(latch, fenced.app, request).await {
        Ok(opened) => opened,
        Err(e) => {
            tracing::warn!(resource = %fenced.resource, error = %e, "app event stream request failed");
            let reply = Reply::problem(502, "Bad gateway", &e);
            return reply.send(session, false).await;
        }
    };
    let Some(head) = app.resp_header() else {
        return Error::e_explain(ErrorType::InternalError, "the app's answer has no head");
    };
    let stream = is_event_stream(head);
    let http10 = session.req_header().version == Version::HTTP_10;
    let (mut head, keepalive) = downstream_head(head, stream, http10)?;
    for cookie in set_cookie {
        head.append_header(header::SET_COOKIE, cookie)?;
    }
    if !keepalive {
        session.set_keepalive(None);
    }
    if !stream {
        app.read_timeout = latch.config.proxy.upstream_timeout;
    }
    let empty = app.is_body_done();
    session.write_response_header(head, empty).await?;
    if empty {
        return Ok(());
    }

    let metrics = &latch.metrics;
    if stream {
        metrics.app_streams.inc();
    }
    let mut framing = Framing::new(stream);
    let expiry = tokio::time::sleep_until(fenced.expiry());
    tokio::pin!(expiry);
    let end = loop {
        tokio::select! {
            _ = &mut expiry => break End::Expired,
            ending = &mut lost => match ending {
                // The sign-in session ended: as for an expired one.
                Ok(Ending::SignedOut) => break End::Expired,
                Ok(Ending::Lost(reason)) => break End::Lost(reason),
                // A closed sender means the registration went away, which only happens once
                // this stream is over anyway.
                Err(_) => break End::Lost("lock lost".to_owned()),
            },
            // Nothing more is to come from the client: it can only go away.
            _ = session.read_body_or_idle(true) => break End::Client,
            chunk = app.read_body_bytes() => match chunk {
                Ok(Some(chunk)) => {
                    let now = framing.push(chunk);
                    if !now.is_empty() && !write(session, Some(now), false).await {
                        break End::Client;
                    }
                }
                Ok(None) => break End::App,
                Err(e) => {
                    tracing::debug!(resource = %fenced.resource, error = %e, "the app's answer failed");
                    break End::Failed;
                }
            },
        }
    };
    if stream {
        metrics.app_streams.dec();
    }
    drop(app);
    match end {
        End::App => {
            let rest = framing.finish();
            let rest = (!rest.is_empty()).then_some(rest);
            if !write(session, rest, true).await {
                session.set_keepalive(None);
            }
        }
        End::Lost(reason) if stream => {
            metrics.app_streams_fenced.inc();
            match framing.last_event(&lock_lost_event(&reason, &fenced.resource)) {
                Some(last) => {
                    if !write(session, Some(last), true).await {
                        session.set_keepalive(None);
                    }
                }
                None => cut(session).await,
            }
        }
        End::Expired if stream => {
            let data = json!({ "reason": "session expired", "resource": fenced.resource });
            let event = format!("event: {SESSION_EXPIRED_EVENT}\ndata: {data}\n\n");
            match framing.last_event(&event) {
                Some(last) => {
                    if !write(session, Some(last), true).await {
                        session.set_keepalive(None);
                    }
                }
                None => cut(session).await,
            }
        }
        // A response that is not a stream cannot be ended cleanly before its end: it is cut.
        End::Lost(_) | End::Expired | End::Client | End::Failed => cut(session).await,
    }
    Ok(())
}

/// How the relay of an answer's body ended.
enum End {
    /// The app ended it.
    App,
    /// The owner lost the lock, for this reason.
    Lost(String),
    /// The owner's credential expired.
    Expired,
    /// The client went away (or a write to it failed).
    Client,
    /// The app's connection failed.
    Failed,
}

/// Connects to the app, sends the request, and reads the answer's head (past any 1xx).
async fn open(
    latch: &Latch,
    app: AppId,
    mut request: Box<RequestHeader>,
) -> std::result::Result<(HttpSession, Option<InFlight>), String> {
    let connection =
        match tokio::time::timeout(CONNECT_TIMEOUT, latch.apps.get(app).upstream.connect()).await {
            Ok(Ok(connection)) => connection,
            Ok(Err(e)) => return Err(e),
            Err(_) => return Err("cannot connect to the app: timed out".to_owned()),
        };
    if let Some(host) = connection.host {
        request
            .insert_header(header::HOST, host)
            .map_err(|e| format!("cannot set the Host header: {e}"))?;
    }
    let mut app = HttpSession::new(connection.stream);
    app.write_timeout = Some(WRITE_TIMEOUT);
    app.read_timeout = latch.config.proxy.upstream_timeout;
    app.write_request_header(request)
        .await
        .map_err(|e| format!("cannot send the request: {e}"))?;
    for _ in 0..=MAX_INFORMATIONAL {
        app.read_response()
            .await
            .map_err(|e| format!("cannot read the app's answer: {e}"))?;
        let informational = app
            .resp_header()
            .is_some_and(|h| h.status.is_informational());
        if !informational {
            return Ok((app, connection.held));
        }
    }
    Err("the app sent too many informational answers".to_owned())
}

/// Is the answer an event stream Latch can end with an event of its own: a 200
/// `text/event-stream` without a content encoding?
fn is_event_stream(head: &ResponseHeader) -> bool {
    let encoded = head
        .headers
        .get(header::CONTENT_ENCODING)
        .is_some_and(|v| !v.as_bytes().trim_ascii().eq_ignore_ascii_case(b"identity"));
    head.status == StatusCode::OK && is_event_stream_type(head) && !encoded
}

/// Is the answer's media type `text/event-stream`, whatever its status and encoding?
pub fn is_event_stream_type(head: &ResponseHeader) -> bool {
    let content_type = head
        .headers
        .get(header::CONTENT_TYPE)
        .map(|v| v.as_bytes())
        .unwrap_or_default();
    let essence = content_type
        .split(|&b| b == b';')
        .next()
        .unwrap_or_default()
        .trim_ascii();
    essence.eq_ignore_ascii_case(b"text/event-stream")
}

/// The head the client gets: the app's, without its hop-by-hop headers, framed for this
/// connection — an event stream always chunked (Latch may add to it), anything else by its
/// length when it has one, else chunked; close-delimited for an HTTP/1.0 client. The flag
/// says whether the client's connection may be kept alive afterwards.
fn downstream_head(
    app: &ResponseHeader,
    stream: bool,
    http10: bool,
) -> Result<(Box<ResponseHeader>, bool)> {
    let mut head = Box::new(app.clone());
    head.set_version(Version::HTTP_11);
    for name in HOP_BY_HOP {
        head.remove_header(name);
    }
    head.remove_header(&header::TRANSFER_ENCODING);
    if stream {
        head.remove_header(&header::CONTENT_LENGTH);
    }
    let bodiless = head.status.is_informational()
        || matches!(
            head.status,
            StatusCode::NO_CONTENT | StatusCode::NOT_MODIFIED
        );
    if bodiless || head.headers.contains_key(header::CONTENT_LENGTH) {
        return Ok((head, true));
    }
    if http10 {
        return Ok((head, false));
    }
    head.insert_header(
        header::TRANSFER_ENCODING,
        HeaderValue::from_static("chunked"),
    )?;
    Ok((head, true))
}

/// The last event of a stream whose owner lost the lock.
fn lock_lost_event(reason: &str, resource: &str) -> String {
    let data = json!({ "reason": reason, "resource": resource });
    format!("event: {LOCK_LOST_EVENT}\ndata: {data}\n\n")
}

/// Writes to the client within [`WRITE_TIMEOUT`]; false if that failed.
async fn write(session: &mut Session, body: Option<Bytes>, end: bool) -> bool {
    let written = tokio::time::timeout(WRITE_TIMEOUT, session.write_response_body(body, end)).await;
    matches!(written, Ok(Ok(())))
}

/// Ends the client's connection without ending the response, so that a client never takes a
/// cut answer for a whole one.
async fn cut(session: &mut Session) {
    session.set_keepalive(None);
    let _ = tokio::time::timeout(WRITE_TIMEOUT, session.as_downstream_mut().shutdown()).await;
}

/// Where the events of a stream end, so that the relay passes on whole events and the last
/// event Latch adds starts on a clean line (the `text/event-stream` grammar of the HTML
/// standard: lines end with CRLF, LF or CR; a blank line dispatches the event; a line starting
/// with `:` is a comment).
///
/// The bytes from the first field line of an event not yet ended are held back, up to
/// [`MAX_PENDING`]; comments between events pass at once, so keep-alive comments keep working.
/// An answer that is not an event stream passes as it comes.
pub struct Framing {
    stream: bool,
    pending: BytesMut,
    /// The bytes of the current line seen so far.
    line_len: usize,
    /// The current line is a comment.
    comment: bool,
    /// A field line of an event not yet dispatched was seen.
    in_event: bool,
    /// The last byte was a CR, whose LF (if it comes) belongs to the same line end.
    after_cr: bool,
    /// Part of an unfinished event was passed on (it was longer than [`MAX_PENDING`]).
    torn: bool,
}

impl Framing {
    pub fn new(stream: bool) -> Framing {
        Framing {
            stream,
            pending: BytesMut::new(),
            line_len: 0,
            comment: false,
            in_event: false,
            after_cr: false,
            torn: false,
        }
    }

    /// Takes a chunk of the app's body; returns what can be passed on now.
    pub fn push(&mut self, chunk: Bytes) -> Bytes {
        if !self.stream {
            return chunk;
        }
        let start = self.pending.len();
        self.pending.extend_from_slice(&chunk);
        // Everything before `safe` ends a whole event or comment.
        let mut safe = None;
        for (i, &b) in self.pending[start..].iter().enumerate() {
            let at = start + i + 1;
            if self.after_cr && b == b'\n' {
                self.after_cr = false;
                if safe == Some(at - 1) || (safe.is_none() && !self.in_event && i == 0) {
                    safe = Some(at);
                }
                continue;
            }
            self.after_cr = b == b'\r';
            if b == b'\r' || b == b'\n' {
                if self.line_len == 0 {
                    self.in_event = false;
                } else if !self.comment {
                    self.in_event = true;
                }
                self.line_len = 0;
                if !self.in_event {
                    safe = Some(at);
                    self.torn = false;
                }
            } else {
                if self.line_len == 0 {
                    self.comment = b == b':';
                }
                self.line_len += 1;
            }
        }
        if let Some(safe) = safe {
            return self.pending.split_to(safe).freeze();
        }
        if self.pending.len() > MAX_PENDING {
            self.torn = true;
            return self.pending.split().freeze();
        }
        Bytes::new()
    }

    /// What is left when the app ends the stream: passed on as it is, since the app chose to
    /// end there.
    pub fn finish(&mut self) -> Bytes {
        self.pending.split().freeze()
    }

    /// The bytes that end the stream with `event`, or `None` when part of an unfinished event
    /// was passed on already and no event can follow cleanly. What is held back of an
    /// unfinished event or comment is dropped, as a client drops it when a stream ends, so the
    /// event starts on a clean line.
    pub fn last_event(&mut self, event: &str) -> Option<Bytes> {
        if self.torn {
            return None;
        }
        self.pending.clear();
        Some(Bytes::copy_from_slice(event.as_bytes()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `chunks` through a stream's framing; returns what was passed on after each.
    fn relay(chunks: &[&str]) -> (Framing, Vec<String>) {
        let mut framing = Framing::new(true);
        let out = chunks
            .iter()
            .map(|c| {
                let now = framing.push(Bytes::copy_from_slice(c.as_bytes()));
                String::from_utf8(now.to_vec()).unwrap()
            })
            .collect();
        (framing, out)
    }

    #[test]
    fn whole_events_and_comments_pass_at_once_and_unfinished_events_wait() {
        let cases: &[(&[&str], &[&str])] = &[
            (&["data: 1\n\n"], &["data: 1\n\n"]),
            (&["data: 1\n", "\n"], &["", "data: 1\n\n"]),
            (&["data: 1\n\ndata: 2"], &["data: 1\n\n"]),
            (
                &["data: 1\n\nda", "ta: 2\n\n"],
                &["data: 1\n\n", "data: 2\n\n"],
            ),
            (&[": ping\n"], &[": ping\n"]),
            (
                &[": ping\n", "data: x\n", "\n"],
                &[": ping\n", "", "data: x\n\n"],
            ),
            (
                &["event: a\r\ndata: 1\r\n\r\n"],
                &["event: a\r\ndata: 1\r\n\r\n"],
            ),
            (&["data: 1\r\n\r", "\n"], &["data: 1\r\n\r", "\n"]),
            (&["data: 1\r\r"], &["data: 1\r\r"]),
            (
                &["id: 7\ndata: 1\n", ": inside\n", "\n"],
                &["", "", "id: 7\ndata: 1\n: inside\n\n"],
            ),
        ];
        for (chunks, expected) in cases {
            let (_, out) = relay(chunks);
            assert_eq!(&out, expected, "chunks {chunks:?}");
        }
    }

    #[test]
    fn the_last_event_drops_an_unfinished_event_and_starts_on_a_clean_line() {
        let event = lock_lost_event("lock taken over by Bob", "doc:1");
        assert_eq!(
            event,
            "event: latch-lock-lost\ndata: {\"reason\":\"lock taken over by Bob\",\"resource\":\"doc:1\"}\n\n"
        );
        // A reason carries a holder's display name, which may hold line ends: it stays one
        // `data:` line.
        let sneaky = lock_lost_event("lock taken over by B\n\ndata: x\r", "doc:1");
        assert_eq!(sneaky.matches('\n').count(), 3, "{sneaky}");
        assert!(!sneaky.contains('\r'), "{sneaky}");
        let (mut framing, _) = relay(&["data: 1\n\ndata: half"]);
        assert_eq!(framing.last_event(&event).unwrap(), event.as_bytes());

        // A comment line is passed on once it ends; before, it is held back, and dropped.
        let (mut framing, out) = relay(&[": keep", "alive"]);
        assert_eq!(out, ["", ""]);
        assert_eq!(framing.last_event("x\n\n").unwrap(), "x\n\n");
        let (mut framing, _) = relay(&[": keep", "alive"]);
        assert_eq!(framing.finish(), ": keepalive");
        let (mut framing, out) = relay(&[": ping\n"]);
        assert_eq!(out, [": ping\n"]);
        assert_eq!(framing.last_event("x\n\n").unwrap(), "x\n\n");
    }

    #[test]
    fn an_event_longer_than_the_bound_passes_as_it_comes_and_then_takes_no_last_event() {
        let long = format!("data: {}", "x".repeat(MAX_PENDING));
        let (mut framing, out) = relay(&[&long]);
        assert_eq!(out[0].len(), long.len());
        assert!(framing.last_event("x\n\n").is_none());
        // Once that event ends, events are whole again.
        let (mut framing, _) = relay(&[&long, "\n\n", "data: 2"]);
        assert!(framing.last_event("x\n\n").is_some());
    }

    #[test]
    fn an_answer_that_is_not_a_stream_passes_as_it_comes() {
        let mut framing = Framing::new(false);
        assert_eq!(framing.push(Bytes::from_static(b"<html")), "<html");
    }

    fn head(status: u16, headers: &[(&str, &str)]) -> ResponseHeader {
        let mut head = ResponseHeader::build(status, None).unwrap();
        for (name, value) in headers {
            head.append_header(name.to_string(), *value).unwrap();
        }
        head
    }

    #[test]
    fn only_an_uncompressed_200_event_stream_counts_as_one() {
        let sse = [("Content-Type", "text/event-stream; charset=utf-8")];
        assert!(is_event_stream(&head(200, &sse)));
        assert!(is_event_stream(&head(
            200,
            &[("content-type", "Text/Event-Stream")]
        )));
        assert!(!is_event_stream(&head(404, &sse)));
        assert!(!is_event_stream(&head(
            200,
            &[("Content-Type", "text/html")]
        )));
        assert!(!is_event_stream(&head(
            200,
            &[sse[0], ("Content-Encoding", "gzip")]
        )));
        assert!(is_event_stream(&head(
            200,
            &[sse[0], ("Content-Encoding", "identity")]
        )));
        // Whatever the status and encoding, the type alone says what the ordinary path refuses.
        assert!(is_event_stream_type(&head(404, &sse)));
        assert!(is_event_stream_type(&head(
            200,
            &[sse[0], ("Content-Encoding", "gzip")]
        )));
        assert!(!is_event_stream_type(&head(
            200,
            &[("Content-Type", "text/plain")]
        )));
    }

    #[test]
    fn the_clients_head_drops_hop_by_hop_headers_and_is_framed_for_its_connection() {
        let app = head(
            200,
            &[
                ("Content-Type", "text/event-stream"),
                ("Connection", "keep-alive"),
                ("Keep-Alive", "timeout=5"),
                ("Content-Length", "100"),
            ],
        );
        let (out, keepalive) = downstream_head(&app, true, false).unwrap();
        assert!(keepalive);
        assert!(out.headers.get("connection").is_none());
        assert!(out.headers.get("keep-alive").is_none());
        assert!(out.headers.get("content-length").is_none());
        assert_eq!(out.headers["transfer-encoding"], "chunked");
        let (out, keepalive) = downstream_head(&app, true, true).unwrap();
        assert!(!keepalive);
        assert!(out.headers.get("transfer-encoding").is_none());

        let page = head(
            404,
            &[("Content-Length", "9"), ("Transfer-Encoding", "chunked")],
        );
        let (out, keepalive) = downstream_head(&page, false, true).unwrap();
        assert!(keepalive);
        assert_eq!(out.headers["content-length"], "9");
        assert!(out.headers.get("transfer-encoding").is_none());
        let (out, _) = downstream_head(&head(204, &[]), false, false).unwrap();
        assert!(out.headers.get("transfer-encoding").is_none());
    }

    #[test]
    fn an_event_stream_is_asked_for_by_a_get_that_accepts_one() {
        let ask = |method: &str, accept: &[&str]| {
            let mut req = RequestHeader::build(method, b"/docs/1/events", None).unwrap();
            for a in accept {
                req.append_header("Accept", *a).unwrap();
            }
            asks_for_event_stream(&req)
        };
        assert!(ask("GET", &["text/event-stream"]));
        assert!(ask("GET", &["text/html", "Text/Event-Stream;q=0.9"]));
        assert!(!ask("GET", &["text/html"]));
        assert!(!ask("GET", &[]));
        assert!(!ask("POST", &["text/event-stream"]));
        assert!(!ask("HEAD", &["text/event-stream"]));
    }
}
