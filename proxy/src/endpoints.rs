//! The reserved endpoints under `proxy.prefix` (docs/http.md): the banner script, the banner
//! WebSocket, release, takeover and status.

use std::sync::{Arc, OnceLock};

use bytes::{Bytes, BytesMut};
use http::{header, Method};
use pingora::prelude::*;
use pingora::proxy::Session;
use serde::Deserialize;
use serde_json::json;

use crate::actions;
use crate::cookies::{cookie, SESSION_COOKIE};
use crate::origin::check_same_origin;
use crate::respond::Reply;
use crate::state::Latch;
use crate::time_fmt::rfc3339;
use crate::ws;

/// The banner client, compiled into the binary.
pub const BANNER_JS: &str = include_str!("../assets/banner.js");

/// Largest body accepted by release and takeover: they carry one small JSON object.
const MAX_ACTION_BODY: usize = 4 * 1024;

fn banner_etag() -> &'static str {
    static ETAG: OnceLock<String> = OnceLock::new();
    ETAG.get_or_init(|| {
        // FNV-1a: a stable content hash, enough to tell one build's script from another's.
        let hash = BANNER_JS.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
        });
        format!("\"{hash:016x}\"")
    })
}

#[derive(Deserialize)]
struct ActionBody {
    resource: String,
    #[serde(default)]
    pagehide: bool,
    /// The closing page's tab id, sent with `pagehide`.
    #[serde(default)]
    tab: Option<String>,
}

pub async fn serve(latch: &Arc<Latch>, session: &mut Session) -> Result<()> {
    let prefix_len = latch.config.proxy.prefix.len() + 1;
    let path = session.req_header().uri.path();
    let name = path.get(prefix_len..).unwrap_or("").to_string();
    let method = session.req_header().method.clone();
    if let Some(sign_in) = &latch.sign_in {
        // Another site may not sign a user out (logout CSRF): a browser's cross-site request
        // for the logout, by link, form or image, is refused.
        if name == "logout" {
            let scheme = crate::peer::scheme(session, latch.config.proxy.public_scheme);
            if let Err(refused) = check_same_origin(&session.req_header().headers, scheme) {
                let reply = Reply::problem(403, "Forbidden", refused.message());
                let unread = method == Method::POST && !session.is_body_done();
                return reply.send(session, unread).await;
            }
        }
        if let Some(reply) = sign_in.serve(&name, session, latch.as_ref()).await {
            let unread = matches!(method, Method::POST | Method::DELETE) && !session.is_body_done();
            return reply.send(session, unread).await;
        }
    }
    let reply = match (name.as_str(), &method) {
        ("banner.js", &Method::GET | &Method::HEAD) => banner_js(session),
        ("ws", &Method::GET) => return ws::serve(latch, session).await,
        ("release" | "takeover", &Method::POST) => action(latch, session, &name).await?,
        ("status", &Method::GET | &Method::HEAD) => status(latch, session).await,
        (stash, _) if stash == "stash" || stash.starts_with("stash/") => {
            crate::stash::serve(latch, session, &name["stash".len()..]).await
        }
        ("banner.js" | "status", _) => {
            Reply::problem(405, "Method not allowed", "use GET").header(header::ALLOW, "GET, HEAD")
        }
        ("ws", _) => {
            Reply::problem(405, "Method not allowed", "use GET").header(header::ALLOW, "GET")
        }
        ("release" | "takeover", _) => {
            Reply::problem(405, "Method not allowed", "use POST").header(header::ALLOW, "POST")
        }
        _ => Reply::problem(404, "Not found", "no such Latch endpoint"),
    };
    // Release and takeover read their small body in full; anything left unread (a refused
    // oversized body, a POST to another endpoint) must not be drained on a kept-alive connection.
    let unread = matches!(method, Method::POST | Method::DELETE) && !session.is_body_done();
    reply.send(session, unread).await
}

fn banner_js(session: &Session) -> Reply {
    let etag = banner_etag();
    let fresh = session
        .req_header()
        .headers
        .get(header::IF_NONE_MATCH)
        .is_some_and(|v| v.as_bytes() == etag.as_bytes());
    let reply = if fresh {
        Reply::empty(304)
    } else {
        Reply::new(200, "text/javascript; charset=utf-8", BANNER_JS)
    };
    reply
        .header(header::ETAG, etag)
        .header(header::CACHE_CONTROL, "public, max-age=300")
        .header(header::X_CONTENT_TYPE_OPTIONS, "nosniff")
}

/// Reads a small request body, refusing anything larger than `limit`.
async fn read_small_body(session: &mut Session, limit: usize) -> Result<Option<Bytes>> {
    let mut buf = BytesMut::new();
    while let Some(chunk) = session.read_request_body().await? {
        if buf.len() + chunk.len() > limit {
            return Ok(None);
        }
        buf.extend_from_slice(&chunk);
    }
    Ok(Some(buf.freeze()))
}

async fn action(latch: &Arc<Latch>, session: &mut Session, name: &str) -> Result<Reply> {
    let scheme = crate::peer::scheme(session, latch.config.proxy.public_scheme);
    if let Err(refused) = check_same_origin(&session.req_header().headers, scheme) {
        return Ok(Reply::problem(403, "Forbidden", refused.message()));
    }
    let identity =
        match latch.authenticate(&session.req_header().headers, crate::peer::peer_ip(session)) {
            Ok(id) => id,
            Err(e) => return Ok(crate::login::challenge(latch, session, &e)),
        };
    let sid = cookie(&session.req_header().headers, SESSION_COOKIE).map(str::to_string);
    let Some(raw) = read_small_body(session, MAX_ACTION_BODY).await? else {
        return Ok(Reply::problem(
            413,
            "Body too large",
            "release and takeover take a small JSON object",
        ));
    };
    // sendBeacon posts text/plain, so the body is parsed whatever its declared type.
    let body: ActionBody = match serde_json::from_slice(&raw) {
        Ok(b) => b,
        Err(e) => {
            return Ok(Reply::problem(
                400,
                "Bad request body",
                &format!("expected {{\"resource\": \"...\"}}: {e}"),
            ))
        }
    };
    // A page of one app acts on that app's locks only: its origin was checked, not another's.
    let req = session.req_header();
    let app = latch.apps.route(&req.uri, &req.headers).unwrap_or_default();
    if !latch.apps.owns(app, &body.resource) {
        return Ok(Reply::problem(
            403,
            "Forbidden",
            "that lock belongs to another app of this proxy",
        ));
    }
    let result = if name == "release" && body.pagehide {
        match body.tab.as_deref() {
            Some(tab) if !actions::valid_tab(tab) => {
                return Ok(Reply::problem(
                    400,
                    "Bad tab",
                    "tab must be 1 to 64 letters, digits, '_' or '-'",
                ))
            }
            tab => actions::leave(latch, &identity, sid.as_deref(), &body.resource, tab)
                .await
                .map(|()| Reply::empty(204)),
        }
    } else if name == "release" {
        actions::release(
            latch,
            &identity,
            sid.as_deref(),
            &body.resource,
            body.pagehide,
        )
        .await
        .map(|_| Reply::empty(204))
    } else {
        actions::takeover(latch, &identity, sid.as_deref(), &body.resource)
            .await
            .map(|t| Reply::json(200, &crate::banner::lock_json(&t.lock, true, false, false)))
    };
    Ok(match result {
        Ok(reply) => reply,
        Err(e) => Reply::problem_with(
            e.status(),
            "Refused",
            &e.to_string(),
            json!({ "code": e.code(), "resource": body.resource }),
        ),
    })
}

async fn status(latch: &Arc<Latch>, session: &mut Session) -> Reply {
    let identity =
        match latch.authenticate(&session.req_header().headers, crate::peer::peer_ip(session)) {
            Ok(id) => id,
            Err(e) => return crate::login::challenge(latch, session, &e),
        };
    let sid = cookie(&session.req_header().headers, SESSION_COOKIE).map(str::to_string);
    let query = session.req_header().uri.query().unwrap_or("");
    let Some(raw_path) = form_value(query, "path") else {
        return Reply::problem(400, "Missing path", "use status?path=/some/page");
    };
    let path = match rules::normalize_path(&raw_path) {
        Ok(p) => p.into_owned(),
        Err(e) => return Reply::problem(400, "Bad path", &e.to_string()),
    };
    let rule_path = match latch.rule_path(&path) {
        Ok(p) => p,
        Err(e) => return Reply::problem(400, "Bad path", &e.to_string()),
    };
    let req = session.req_header();
    let app = latch.apps.route(&req.uri, &req.headers).unwrap_or_default();
    let rules = latch.rules.load();
    let Some(m) = rules.find_in(latch.apps.name(app), "GET", &rule_path) else {
        return Reply::json(200, &json!({ "path": path, "matched": false }));
    };
    let lock = match latch.store_op("get", latch.store.get(&m.resource)).await {
        Ok(l) => l,
        Err(e) => return Reply::problem(503, "Lock store unavailable", &e.to_string()),
    };
    let mut doc = json!({
        "path": path,
        "matched": true,
        "rule": m.rule.id,
        "mode": m.rule.mode,
        "resource": m.resource,
        "state": if lock.is_some() { "held" } else { "free" },
    });
    if let (Some(lock), Some(obj)) = (lock, doc.as_object_mut()) {
        obj.insert(
            "holder".into(),
            json!({ "id": lock.holder.user, "name": lock.holder.name }),
        );
        obj.insert(
            "you".into(),
            json!(actions::holds(&lock, &identity, sid.as_deref())),
        );
        obj.insert("since".into(), json!(rfc3339(lock.since)));
        obj.insert("expires".into(), json!(rfc3339(lock.expires)));
        obj.insert("fence".into(), json!(lock.fence));
    }
    Reply::json(200, &doc)
}

/// One `application/x-www-form-urlencoded` value from a query string.
fn form_value(query: &str, key: &str) -> Option<String> {
    query.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=')?;
        (k == key).then(|| {
            percent_encoding::percent_decode_str(&v.replace('+', " "))
                .decode_utf8_lossy()
                .into_owned()
        })
    })
}
