//! Unsaved changes: the body of a write refused for want of the lock, kept for its sender.
//!
//! When the gate refuses an unsafe request of a signed-in user with 423 (someone else holds
//! the page, the user lost the lock, the page is read-only for them), [`keep_refused`] reads
//! the body, bounded in size (`stash.max_bytes`) and time ([`READ_TIME`]), and keeps it in the
//! lock store under that user's id, so any instance can give it back. The 423 answer then says
//! what happened: kept, with links to view, copy and download it, or not kept and why.
//! Nothing here runs for a request that was let through, nor for one without a valid token
//! (those are refused before a rule's lock is asked about).
//!
//! The endpoints under `{prefix}/stash` ([`serve`]) list, show, download and delete a user's
//! own entries. An entry is only ever found by its owner's id plus its random id; any other
//! id, or someone else's, is the same 404. A kept body is shown as plain text with `nosniff`
//! and a sandboxing CSP, or downloaded as an attachment, so whatever it contains never runs as
//! a page of this origin.

use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use html_escape::encode_quoted_attribute as escape;
use http::{header, Method};
use pingora::prelude::*;
use pingora::proxy::Session;
use serde_json::{json, Value};
use store::{is_stash_id, NewStash, StashEntry, StashLimits, StashMeta};

use crate::origin::check_same_origin;
use crate::respond::Reply;
use crate::state::Latch;
use crate::time_fmt::{now_ms, rfc3339};

/// Longest time spent reading a refused write's body before the 423 is sent. It is the same
/// bound a refused body already had, [`crate::respond::LINGER`]: a client trickling a body
/// holds its connection no longer because of the stash than it would be lingered on anyway.
pub const READ_TIME: Duration = crate::respond::LINGER;

/// Shown and served instead of the raw type for every entry viewed inline.
const VIEW_CSP: &str = "sandbox; default-src 'none'";

/// Why a refused write's body was not kept; the label of `latch_stash_refused_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotKept {
    /// Larger than `stash.max_bytes` (by its `Content-Length` or as it arrived).
    TooLarge,
    /// Not a form, JSON or text.
    ContentType,
    /// Not all there within [`READ_TIME`].
    Timeout,
    /// The body could not be read (the client went away, or sent a malformed chunk).
    ReadError,
    /// The lock store failed or timed out.
    StoreError,
}

impl NotKept {
    pub fn key(self) -> &'static str {
        match self {
            NotKept::TooLarge => "too_large",
            NotKept::ContentType => "content_type",
            NotKept::Timeout => "timeout",
            NotKept::ReadError => "read_error",
            NotKept::StoreError => "store_error",
        }
    }

    fn sentence(self, max_bytes: u64) -> String {
        match self {
            NotKept::TooLarge => format!(
                "Your changes were not kept: they are larger than {} KiB.",
                max_bytes / 1024
            ),
            NotKept::ContentType => {
                "Your changes were not kept: only forms, JSON and text are kept.".to_owned()
            }
            NotKept::Timeout => {
                "Your changes were not kept: they did not arrive in time.".to_owned()
            }
            NotKept::ReadError => "Your changes were not kept: they could not be read.".to_owned(),
            NotKept::StoreError => {
                "Your changes were not kept: the lock service could not store them.".to_owned()
            }
        }
    }
}

/// What became of a refused write's body.
enum Outcome {
    Kept(StashMeta),
    NotKept(NotKept),
    /// No body at all: there was nothing to keep, and the answer says nothing about it.
    Empty,
}

/// Is a body of this `Content-Type` one the stash keeps: forms (urlencoded or multipart, kept
/// as sent), JSON and text?
pub fn keepable(content_type: &str) -> bool {
    let essence = content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    essence == "application/x-www-form-urlencoded"
        || essence == "multipart/form-data"
        || essence == "application/json"
        || (essence.starts_with("application/") && essence.ends_with("+json"))
        || (essence.starts_with("text/") && essence.len() > "text/".len())
}

/// Keeps the body of a write the gate refused with `reply` (a 423), and returns `reply` with
/// a word about it. Called only on that refusal, never for a request that goes through.
pub async fn keep_refused(
    latch: &Arc<Latch>,
    session: &mut Session,
    user: &str,
    resource: &str,
    reply: Reply,
) -> Reply {
    let config = &latch.config.stash;
    if !config.enabled {
        return reply;
    }
    let outcome = keep(latch, session, user, resource).await;
    let metrics = &latch.metrics.stash;
    match &outcome {
        Outcome::Kept(meta) => {
            metrics.kept.inc();
            metrics.bytes.inc_by(meta.bytes);
            tracing::info!(user, resource, id = %meta.id, bytes = meta.bytes, "refused write kept");
        }
        Outcome::NotKept(why) => {
            metrics.refused(why.key());
            tracing::info!(user, resource, reason = why.key(), "refused write not kept");
        }
        Outcome::Empty => {}
    }
    annotate(
        reply,
        &outcome,
        &latch.config.proxy.prefix,
        config.max_bytes,
    )
}

async fn keep(latch: &Arc<Latch>, session: &mut Session, user: &str, resource: &str) -> Outcome {
    let config = &latch.config.stash;
    let req = session.req_header();
    let content_type = req
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let declared = req
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    let chunked = req.headers.contains_key(header::TRANSFER_ENCODING);
    if declared.unwrap_or(0) == 0 && !chunked {
        return Outcome::Empty;
    }
    if !keepable(&content_type) {
        return Outcome::NotKept(NotKept::ContentType);
    }
    if declared.is_some_and(|n| n > config.max_bytes) {
        return Outcome::NotKept(NotKept::TooLarge);
    }
    let path = req
        .uri
        .path_and_query()
        .map_or_else(|| req.uri.path().to_owned(), |p| p.as_str().to_owned());
    let method = req.method.as_str().to_owned();
    let limit = usize::try_from(config.max_bytes).unwrap_or(usize::MAX);
    let body = match tokio::time::timeout(READ_TIME, read_body(session, limit)).await {
        Err(_) => return Outcome::NotKept(NotKept::Timeout),
        Ok(Err(why)) => return Outcome::NotKept(why),
        Ok(Ok(body)) if body.is_empty() => return Outcome::Empty,
        Ok(Ok(body)) => body,
    };
    let bytes = body.len() as u64;
    let entry = NewStash {
        path: path.clone(),
        method: method.clone(),
        resource: resource.to_owned(),
        content_type: content_type.clone(),
        body,
        limits: StashLimits {
            ttl: config.ttl,
            max_entries: config.max_per_user,
            max_bytes: config.max_bytes_per_user,
        },
    };
    match latch
        .store_op("stash_put", latch.store.stash_put(user, entry))
        .await
    {
        Ok(id) => {
            let at = now_ms();
            Outcome::Kept(StashMeta {
                id,
                path,
                method,
                resource: resource.to_owned(),
                content_type,
                bytes,
                at,
                expires: at.saturating_add(config.ttl.as_millis() as u64),
            })
        }
        Err(e) => {
            tracing::warn!(user, error = %e, "could not keep a refused write");
            Outcome::NotKept(NotKept::StoreError)
        }
    }
}

/// Reads the whole request body, or says why not; at most `limit` bytes are held.
async fn read_body(session: &mut Session, limit: usize) -> Result<Vec<u8>, NotKept> {
    let mut buf = BytesMut::new();
    loop {
        match session.read_request_body().await {
            Ok(Some(chunk)) => {
                if buf.len() + chunk.len() > limit {
                    return Err(NotKept::TooLarge);
                }
                buf.extend_from_slice(&chunk);
            }
            Ok(None) => return Ok(buf.to_vec()),
            Err(e) => {
                tracing::debug!(error = %e, "refused write's body could not be read");
                return Err(NotKept::ReadError);
            }
        }
    }
}

/// The links of one entry under the reserved prefix.
fn entry_url(prefix: &str, id: &str) -> String {
    format!("{prefix}/stash/{id}")
}

/// Adds what became of the body to the 423: a section of the page, or a `stash` member of
/// the problem document.
fn annotate(reply: Reply, outcome: &Outcome, prefix: &str, max_bytes: u64) -> Reply {
    if matches!(outcome, Outcome::Empty) {
        return reply;
    }
    let is_html = reply
        .headers
        .iter()
        .any(|(name, value)| *name == header::CONTENT_TYPE && value.starts_with("text/html"));
    let Reply {
        status,
        headers,
        body,
    } = reply;
    let body = if is_html {
        let page = String::from_utf8_lossy(&body);
        let section = page_section(outcome, prefix, max_bytes);
        match page.rfind("</body>") {
            Some(at) => format!("{}{section}{}", &page[..at], &page[at..]),
            None => format!("{page}{section}"),
        }
        .into_bytes()
    } else {
        let mut doc: Value = serde_json::from_slice(&body).unwrap_or_else(|_| json!({}));
        if let Some(doc) = doc.as_object_mut() {
            doc.insert("stash".into(), stash_member(outcome, prefix, max_bytes));
        }
        doc.to_string().into_bytes()
    };
    Reply {
        status,
        headers,
        body: body.into(),
    }
}

fn stash_member(outcome: &Outcome, prefix: &str, max_bytes: u64) -> Value {
    match outcome {
        Outcome::Kept(meta) => json!({
            "kept": true,
            "id": meta.id,
            "url": entry_url(prefix, &meta.id),
            "bytes": meta.bytes,
            "expires": rfc3339(meta.expires),
        }),
        Outcome::NotKept(why) => json!({
            "kept": false,
            "reason": why.key(),
            "detail": why.sentence(max_bytes),
        }),
        Outcome::Empty => Value::Null,
    }
}

fn page_section(outcome: &Outcome, prefix: &str, max_bytes: u64) -> String {
    match outcome {
        Outcome::Kept(meta) => {
            let url = escape(&entry_url(prefix, &meta.id)).into_owned();
            format!(
                r#"<section id="latch-stash" style="background:#eef6ee;border-left:4px solid #3a8a3a;padding:.75rem 1rem;margin:1rem 0">
<p><strong>Your unsaved changes were kept.</strong> Only you can read them, until {until}.</p>
<p><a id="latch-stash-view" href="{url}" target="_blank" rel="noopener">View</a> ·
<a id="latch-stash-download" href="{url}?download=1">Download</a> ·
<button type="button" id="latch-stash-copy" data-src="{url}">Copy</button> <span id="latch-stash-copied"></span></p>
<script>(function(){{var b=document.getElementById('latch-stash-copy');b.addEventListener('click',function(){{fetch(b.dataset.src,{{credentials:'same-origin'}}).then(function(r){{return r.text();}}).then(function(t){{return navigator.clipboard.writeText(t);}}).then(function(){{document.getElementById('latch-stash-copied').textContent='Copied.';}},function(){{document.getElementById('latch-stash-copied').textContent='Copy failed; use View.';}});}});}})();</script>
</section>
"#,
                until = rfc3339(meta.expires),
            )
        }
        Outcome::NotKept(why) => format!(
            r#"<section id="latch-stash" data-kept="false" style="background:#fdecea;border-left:4px solid #c0392b;padding:.75rem 1rem;margin:1rem 0"><p>{}</p></section>
"#,
            escape(&why.sentence(max_bytes))
        ),
        Outcome::Empty => String::new(),
    }
}

/// Serves `{prefix}/stash` and `{prefix}/stash/{id}`; `rest` is what follows `stash`.
pub async fn serve(latch: &Arc<Latch>, session: &mut Session, rest: &str) -> Reply {
    let method = session.req_header().method.clone();
    let id = match rest {
        "" => None,
        _ => match rest.strip_prefix('/') {
            Some(id) if !id.is_empty() => Some(id.to_owned()),
            _ => return Reply::problem(404, "Not found", "no such Latch endpoint"),
        },
    };
    match (&id, &method) {
        (_, &Method::GET | &Method::HEAD) => {}
        (Some(_), &Method::DELETE) => {
            let scheme = crate::peer::scheme(session, latch.config.proxy.public_scheme);
            if let Err(refused) = check_same_origin(&session.req_header().headers, scheme) {
                return Reply::problem(403, "Forbidden", refused.message());
            }
        }
        (None, _) => {
            return Reply::problem(405, "Method not allowed", "use GET")
                .header(header::ALLOW, "GET, HEAD")
        }
        (Some(_), _) => {
            return Reply::problem(405, "Method not allowed", "use GET or DELETE")
                .header(header::ALLOW, "GET, HEAD, DELETE")
        }
    }
    let identity =
        match latch.authenticate(&session.req_header().headers, crate::peer::peer_ip(session)) {
            Ok(id) => id,
            Err(e) => return crate::login::challenge(latch, session, &e),
        };
    let user = identity.user.as_str();
    let prefix = &latch.config.proxy.prefix;
    let Some(id) = id else {
        return match latch
            .store_op("stash_list", latch.store.stash_list(user))
            .await
        {
            Ok(items) => Reply::json(200, &list_json(&items, prefix)),
            Err(e) => unavailable(&e),
        };
    };
    if !is_stash_id(&id) {
        return not_found();
    }
    if method == Method::DELETE {
        return match latch
            .store_op("stash_delete", latch.store.stash_delete(user, &id))
            .await
        {
            Ok(true) => Reply::empty(204),
            Ok(false) => not_found(),
            Err(e) => unavailable(&e),
        };
    }
    match latch
        .store_op("stash_get", latch.store.stash_get(user, &id))
        .await
    {
        Ok(Some(entry)) => {
            let download = session
                .req_header()
                .uri
                .query()
                .is_some_and(|q| q.split('&').any(|p| p == "download=1"));
            show(&entry, download)
        }
        Ok(None) => not_found(),
        Err(e) => unavailable(&e),
    }
}

fn not_found() -> Reply {
    Reply::problem(
        404,
        "Not found",
        "you have no kept changes under this id (they may have expired)",
    )
}

fn unavailable(e: &store::StoreError) -> Reply {
    Reply::problem(503, "Lock store unavailable", &e.to_string()).header(header::RETRY_AFTER, "5")
}

/// `{count, items: [...]}`: the `stash` banner message's shape, plus links and expiry.
pub fn list_json(items: &[StashMeta], prefix: &str) -> Value {
    json!({
        "count": items.len(),
        "items": items.iter().map(|m| json!({
            "id": m.id,
            "path": m.path,
            "method": m.method,
            "at": rfc3339(m.at),
            "expires": rfc3339(m.expires),
            "bytes": m.bytes,
            "content_type": m.content_type,
            "resource": m.resource,
            "url": entry_url(prefix, &m.id),
        })).collect::<Vec<_>>(),
    })
}

/// The banner's `stash` message for `user` (docs/banner.md), and how many entries it lists.
/// `None` when the stash is off or cannot be read. Sent as a socket opens when there are
/// entries, and again whenever they change ([`StashFeed`]).
pub async fn banner_message(latch: &Arc<Latch>, user: &str) -> Option<(Value, usize)> {
    if !latch.config.stash.enabled {
        return None;
    }
    let items = latch
        .store_op("stash_list", latch.store.stash_list(user))
        .await
        .ok()?;
    let mut message = list_json(&items, &latch.config.proxy.prefix);
    if let Some(object) = message.as_object_mut() {
        object.insert("type".into(), json!("stash"));
    }
    Some((message, items.len()))
}

/// Least time between two listings one banner socket makes because its user's kept changes
/// changed: changes within it are coalesced into one listing at its end.
pub const RELIST_EVERY: Duration = Duration::from_secs(1);

/// One banner socket's view of its user's kept changes: whether a change is waiting to be
/// listed, and when it last listed them, so a burst of refused writes (or one user's many
/// tabs deleting) costs each socket at most one listing a second.
#[derive(Debug)]
pub struct StashFeed {
    /// A change was announced and not listed yet.
    pending: bool,
    last: Option<tokio::time::Instant>,
    /// How many entries the banner was last told of: an empty list is sent only to take back
    /// entries it was shown.
    shown: usize,
}

impl StashFeed {
    pub fn new() -> Self {
        Self {
            pending: false,
            last: None,
            shown: 0,
        }
    }

    /// Notes a change (or a gap in the events, when one may have been missed).
    pub fn changed(&mut self) {
        self.pending = true;
    }

    /// Whether a listing is due now: a change is pending and the last listing is at least
    /// [`RELIST_EVERY`] old. Marks it done; the caller lists.
    pub fn due(&mut self, now: tokio::time::Instant) -> bool {
        if !self.pending || self.last.is_some_and(|at| now < at + RELIST_EVERY) {
            return false;
        }
        self.pending = false;
        self.last = Some(now);
        true
    }

    /// Whether a listing of `count` entries should be sent, and notes that it was.
    pub fn worth_sending(&mut self, count: usize) -> bool {
        let send = count > 0 || self.shown > 0;
        self.shown = count;
        send
    }
}

impl Default for StashFeed {
    fn default() -> Self {
        Self::new()
    }
}

/// One entry, as text that cannot run in this origin, or as an attachment.
fn show(entry: &StashEntry, download: bool) -> Reply {
    let meta = &entry.meta;
    let (content_type, disposition, body) = if download {
        (
            "application/octet-stream".to_owned(),
            format!(
                "attachment; filename=\"unsaved-{}.{}\"",
                meta.id,
                extension(&meta.content_type)
            ),
            entry.body.clone(),
        )
    } else {
        (
            "text/plain; charset=utf-8".to_owned(),
            format!("inline; filename=\"unsaved-{}.txt\"", meta.id),
            readable(entry),
        )
    };
    Reply::new(200, &content_type, body)
        .header(header::CONTENT_DISPOSITION, disposition)
        .header(header::X_CONTENT_TYPE_OPTIONS, "nosniff")
        .header(header::CONTENT_SECURITY_POLICY, VIEW_CSP)
        .header(header::REFERRER_POLICY, "no-referrer")
}

fn extension(content_type: &str) -> &'static str {
    let essence = content_type.split(';').next().unwrap_or("").trim();
    match essence.to_ascii_lowercase().as_str() {
        "application/json" => "json",
        "application/x-www-form-urlencoded" => "txt",
        "multipart/form-data" => "multipart",
        "text/html" => "html.txt",
        _ if essence.ends_with("+json") => "json",
        _ => "txt",
    }
}

/// The body as a person reads it: a urlencoded form as `name: value` lines, anything else
/// as sent (bytes that are not UTF-8 replaced).
fn readable(entry: &StashEntry) -> Vec<u8> {
    let essence = entry
        .meta
        .content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    if essence != "application/x-www-form-urlencoded" {
        return String::from_utf8_lossy(&entry.body)
            .into_owned()
            .into_bytes();
    }
    let text = String::from_utf8_lossy(&entry.body);
    let decode = |s: &str| {
        percent_encoding::percent_decode_str(&s.replace('+', " "))
            .decode_utf8_lossy()
            .into_owned()
    };
    let mut out = String::new();
    for pair in text.split('&').filter(|p| !p.is_empty()) {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        out.push_str(&decode(name));
        out.push_str(": ");
        out.push_str(&decode(value));
        out.push('\n');
    }
    out.into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_reason_is_a_label_of_the_refused_counter() {
        for why in [
            NotKept::TooLarge,
            NotKept::ContentType,
            NotKept::Timeout,
            NotKept::ReadError,
            NotKept::StoreError,
        ] {
            assert!(
                crate::metrics::STASH_REFUSED_REASONS.contains(&why.key()),
                "{why:?}"
            );
        }
    }

    #[test]
    fn forms_json_and_text_are_kept_and_nothing_else() {
        for kept in [
            "application/x-www-form-urlencoded",
            "application/x-www-form-urlencoded; charset=UTF-8",
            "multipart/form-data; boundary=x",
            "application/json",
            "Application/JSON; charset=utf-8",
            "application/vnd.api+json",
            "text/plain",
            "text/markdown;charset=utf-8",
        ] {
            assert!(keepable(kept), "{kept}");
        }
        for refused in [
            "",
            "text/",
            "application/octet-stream",
            "image/png",
            "application/pdf",
            "application/jsonx",
        ] {
            assert!(!keepable(refused), "{refused}");
        }
    }

    fn entry(content_type: &str, body: &[u8]) -> StashEntry {
        StashEntry {
            meta: StashMeta {
                id: "0".repeat(32),
                path: "/doc/1".into(),
                method: "POST".into(),
                resource: "doc:1".into(),
                content_type: content_type.into(),
                bytes: body.len() as u64,
                at: 0,
                expires: 0,
            },
            body: body.to_vec(),
        }
    }

    fn header_of(reply: &Reply, name: header::HeaderName) -> Option<&str> {
        reply
            .headers
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
    }

    #[test]
    fn an_entry_is_shown_as_plain_text_that_cannot_run() {
        let hostile = entry("text/html", b"<script>alert(1)</script>");
        let reply = show(&hostile, false);
        assert_eq!(
            header_of(&reply, header::CONTENT_TYPE),
            Some("text/plain; charset=utf-8")
        );
        assert_eq!(
            header_of(&reply, header::X_CONTENT_TYPE_OPTIONS),
            Some("nosniff")
        );
        assert!(header_of(&reply, header::CONTENT_SECURITY_POLICY)
            .is_some_and(|csp| csp.starts_with("sandbox")));
        assert!(header_of(&reply, header::CONTENT_DISPOSITION)
            .is_some_and(|d| d.starts_with("inline;")));

        let download = show(&hostile, true);
        assert_eq!(
            header_of(&download, header::CONTENT_TYPE),
            Some("application/octet-stream")
        );
        assert!(header_of(&download, header::CONTENT_DISPOSITION)
            .is_some_and(|d| d.starts_with("attachment;") && d.ends_with(".html.txt\"")));
        assert_eq!(&download.body[..], b"<script>alert(1)</script>");
    }

    #[test]
    fn a_burst_of_changes_is_listed_once_a_second() {
        let start = tokio::time::Instant::now();
        let mut feed = StashFeed::new();
        assert!(!feed.due(start), "nothing changed yet");
        feed.changed();
        assert!(feed.due(start), "the first change is listed at once");
        for ms in [1, 200, 999] {
            feed.changed();
            assert!(!feed.due(start + Duration::from_millis(ms)), "{ms} ms");
        }
        assert!(feed.due(start + RELIST_EVERY), "coalesced into one");
        assert!(!feed.due(start + RELIST_EVERY * 3), "and nothing since");
    }

    #[test]
    fn an_empty_list_is_sent_only_to_take_entries_back() {
        let mut feed = StashFeed::new();
        assert!(!feed.worth_sending(0));
        assert!(feed.worth_sending(2));
        assert!(feed.worth_sending(1));
        assert!(feed.worth_sending(0));
        assert!(!feed.worth_sending(0));
    }

    #[test]
    fn a_form_reads_as_name_value_lines() {
        let form = entry(
            "application/x-www-form-urlencoded",
            b"title=Hello+world&body=caf%C3%A9+%26+more",
        );
        assert_eq!(
            readable(&form),
            b"title: Hello world\nbody: caf\xc3\xa9 & more\n"
        );
    }

    #[test]
    fn the_423_page_says_what_became_of_the_body() {
        let page = Reply::new(
            423,
            "text/html; charset=utf-8",
            "<html><body><h1>Locked</h1></body></html>",
        );
        let meta = entry("text/plain", b"hi").meta;
        let kept = annotate(page, &Outcome::Kept(meta), "/__latch", 1024);
        let text = String::from_utf8(kept.body.to_vec()).unwrap();
        assert!(text.contains("Your unsaved changes were kept"), "{text}");
        assert!(text.contains(&format!("/__latch/stash/{}", "0".repeat(32))));
        assert!(text.find("latch-stash").unwrap() < text.find("</body>").unwrap());

        let problem = Reply::problem(423, "Locked", "x");
        let refused = annotate(
            problem,
            &Outcome::NotKept(NotKept::TooLarge),
            "/__latch",
            1_048_576,
        );
        let doc: Value = serde_json::from_slice(&refused.body).unwrap();
        assert_eq!(doc["stash"]["kept"], false);
        assert_eq!(doc["stash"]["reason"], "too_large");
        assert!(doc["stash"]["detail"]
            .as_str()
            .unwrap()
            .contains("1024 KiB"));
        assert_eq!(doc["status"], 423);
    }
}
