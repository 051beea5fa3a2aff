//! Responses the proxy answers itself: problem+json, the 423 page, redirects, static files.
//!
//! Every answer carries a Content-Type and a Content-Length and keeps the connection reusable
//! (pingora's `respond_error_with_body` does neither). When the client may still be sending a
//! body we did not read, keepalive is switched off so pingora does not drain a large upload.

use bytes::Bytes;
// Every escaped value lands in element text or a double-quoted attribute; this escapes `&`,
// `<`, `>`, `"` and `'`, which is safe in both.
use html_escape::encode_quoted_attribute as escape;
use http::header;
use pingora::http::ResponseHeader;
use pingora::prelude::*;
use pingora::proxy::Session;
use serde_json::{json, Value};

use crate::gate::{Limit, LockedWhy};
use crate::time_fmt::rfc3339;
use store::{Lock, Offer};

/// A response built by the proxy, written in one go.
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(header::HeaderName, String)>,
    pub body: Bytes,
}

impl Reply {
    pub fn new(status: u16, content_type: &str, body: impl Into<Bytes>) -> Reply {
        Reply {
            status,
            headers: vec![(header::CONTENT_TYPE, content_type.to_string())],
            body: body.into(),
        }
    }

    pub fn json(status: u16, value: &Value) -> Reply {
        Reply::new(status, "application/json", value.to_string())
    }

    /// An RFC 9457 problem document.
    pub fn problem(status: u16, title: &str, detail: &str) -> Reply {
        Reply::problem_with(status, title, detail, Value::Null)
    }

    /// A problem document with extra members merged in.
    pub fn problem_with(status: u16, title: &str, detail: &str, extra: Value) -> Reply {
        let mut doc = json!({ "title": title, "status": status, "detail": detail });
        if let (Some(doc), Value::Object(extra)) = (doc.as_object_mut(), extra) {
            doc.extend(extra);
        }
        Reply::new(status, "application/problem+json", doc.to_string())
    }

    pub fn empty(status: u16) -> Reply {
        Reply {
            status,
            headers: Vec::new(),
            body: Bytes::new(),
        }
    }

    pub fn header(mut self, name: header::HeaderName, value: impl Into<String>) -> Reply {
        self.headers.push((name, value.into()));
        self
    }

    /// Writes the reply. `unread_body` says the client may still be sending a request body.
    pub async fn send(self, session: &mut Session, unread_body: bool) -> Result<()> {
        let mut resp = ResponseHeader::build(self.status, Some(self.headers.len() + 2))?;
        for (name, value) in self.headers {
            // Several cookies are several headers; any other name is given once.
            if name == header::SET_COOKIE {
                resp.append_header(name, value)?;
            } else {
                resp.insert_header(name, value)?;
            }
        }
        // 204 and 304 have no body by definition, and RFC 9110 forbids a Content-Length on
        // them that differs from the full response's: a cache could store a 304's `0`.
        if !matches!(self.status, 204 | 304) {
            resp.insert_header(header::CONTENT_LENGTH, self.body.len().to_string())?;
        }
        if !resp.headers.contains_key(header::CACHE_CONTROL) {
            resp.insert_header(header::CACHE_CONTROL, "no-store")?;
        }
        if unread_body {
            session.set_keepalive(None);
        }
        let head_only = session.req_header().method == http::Method::HEAD;
        session
            .write_response_header(Box::new(resp), head_only || self.body.is_empty())
            .await?;
        if !head_only && !self.body.is_empty() {
            session.write_response_body(Some(self.body), true).await?;
        }
        if unread_body {
            linger(session).await;
        }
        Ok(())
    }
}

/// How long a refused request's unread body is read and discarded after the answer.
pub const LINGER: std::time::Duration = std::time::Duration::from_secs(2);

/// Reads and discards what is left of the request body, for at most [`LINGER`], before the
/// connection closes. Closing a socket with unread data makes the kernel send a reset, and a
/// client still uploading then sees a broken pipe instead of our answer (the "lingering
/// close" every HTTP server needs). The connection is not reused either way.
async fn linger(session: &mut Session) {
    session.set_total_drain_timeout(Some(LINGER));
    if session.drain_request_body().await.is_err() {
        tracing::debug!("request body not drained within the linger time; closing");
    }
}

/// Does the client want a page rather than data? Browsers navigating send `Accept: text/html`.
pub fn wants_html(session: &Session) -> bool {
    session
        .req_header()
        .headers
        .get_all(header::ACCEPT)
        .iter()
        .any(|v| v.to_str().is_ok_and(|s| s.contains("text/html")))
}

/// Seconds until the lock's lease ends, at least 1: what `Retry-After` tells a client.
pub fn retry_after(lock: &Lock, now_ms: u64) -> u64 {
    lock.expires.saturating_sub(now_ms).div_ceil(1000).max(1)
}

/// The 423 answer: an HTML page with the live banner for browsers, problem+json otherwise.
pub fn locked(
    html: bool,
    why: LockedWhy,
    resource: &str,
    lock: Option<&Lock>,
    banner_tag: Option<&str>,
    now_ms: u64,
) -> Reply {
    let (title, detail) = match (why, lock) {
        (LockedWhy::Displaced, _) => (
            "Lock lost",
            "You no longer hold this resource (it was taken over, released by an admin, or \
             expired). Reload the page before making changes."
                .to_string(),
        ),
        (LockedWhy::OtherSession, Some(_)) => (
            "Locked",
            "You have this open in another tab or window.".to_string(),
        ),
        (LockedWhy::ReadOnly, Some(l)) => (
            "Locked",
            format!(
                "{} is editing this; it is read-only for you until they finish.",
                l.holder.name
            ),
        ),
        (_, Some(l)) if html => (
            "Locked",
            format!("{} is working on this page.", l.holder.name),
        ),
        (_, Some(l)) => (
            "Locked",
            format!("Locked by {} since {}.", l.holder.name, rfc3339(l.since)),
        ),
        (_, None) => ("Locked", "This resource is locked.".to_string()),
    };
    let retry = lock.map(|l| retry_after(l, now_ms)).unwrap_or(1);
    let reply = if html {
        Reply::new(
            423,
            "text/html; charset=utf-8",
            locked_page(title, &detail, lock, banner_tag),
        )
    } else {
        let extra = match lock {
            Some(l) => json!({
                "resource": resource,
                "holder": { "id": l.holder.user, "name": l.holder.name },
                "since": rfc3339(l.since),
                "expires": rfc3339(l.expires),
            }),
            None => json!({ "resource": resource }),
        };
        Reply::problem_with(423, title, &detail, extra)
    };
    reply.header(header::RETRY_AFTER, retry.to_string())
}

/// The 423 answer while the resource is free but offered to the next person in line.
pub fn reserved(
    html: bool,
    resource: &str,
    offer: &Offer,
    banner_tag: Option<&str>,
    now_ms: u64,
) -> Reply {
    let title = "Reserved";
    let detail = format!(
        "This page is reserved for {} until {}: it was their turn in line.",
        offer.holder.name,
        rfc3339(offer.until)
    );
    let retry = offer.until.saturating_sub(now_ms).div_ceil(1000).max(1);
    let reply = if html {
        Reply::new(
            423,
            "text/html; charset=utf-8",
            locked_page(title, &detail, None, banner_tag),
        )
    } else {
        let extra = json!({
            "resource": resource,
            "reserved_for": { "id": offer.holder.user, "name": offer.holder.name },
            "until": rfc3339(offer.until),
        });
        Reply::problem_with(423, title, &detail, extra)
    };
    reply.header(header::RETRY_AFTER, retry.to_string())
}

fn locked_page(title: &str, detail: &str, lock: Option<&Lock>, banner_tag: Option<&str>) -> String {
    let holder = lock
        .map(|l| {
            format!(
                r#"<p class="who">Held by <strong id="latch-holder">{}</strong> since <time id="latch-since" datetime="{}">{}</time>.</p>"#,
                escape(&l.holder.name),
                rfc3339(l.since),
                rfc3339(l.since)
            )
        })
        .unwrap_or_default();
    format!(
        r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title} — Latch</title>
<style>body{{font:16px/1.5 system-ui,sans-serif;max-width:40rem;margin:4rem auto;padding:0 1rem;color:#222}}
h1{{font-size:1.6rem}}.who{{background:#fff4e5;border-left:4px solid #f0a020;padding:.75rem 1rem}}</style>
</head><body>
<h1>{title}</h1>
<p id="latch-detail">{detail}</p>
{holder}
<p>This page updates by itself when the lock is released.</p>
<script>document.querySelectorAll('time').forEach(function(t){{var d=new Date(t.dateTime);if(!isNaN(d))t.textContent=d.toLocaleString();}});</script>
{banner}
</body></html>
"#,
        title = escape(title),
        detail = escape(detail),
        holder = holder,
        banner = banner_tag.unwrap_or(""),
    )
}

/// The 429 answer to a claim the user's own limits refused: a page for browsers, otherwise
/// problem+json with `limit` and, for the cap, `held` and `max`. `retry_after` is in seconds.
pub fn too_many(html: bool, limit: Limit<'_>, resource: &str, retry_after: u64) -> Reply {
    let (title, detail) =
        match limit {
            Limit::Held { max, .. } => (
                "Too many locked pages",
                format!(
                    "You already hold {max} locked {}, the most one person may hold at once. \
                 Close one you no longer need, then try again.",
                    if max == 1 { "page" } else { "pages" }
                ),
            ),
            Limit::Rate => {
                (
                    "Too many new pages",
                    format!(
                "You opened too many locked pages in a short time. Try again in {retry_after} \
                 {}.",
                if retry_after == 1 { "second" } else { "seconds" }
            ),
                )
            }
        };
    let reply = if html {
        let held = match limit {
            Limit::Held { held, .. } if !held.is_empty() => {
                let items: String = held
                    .iter()
                    .map(|r| format!("<li><code>{}</code></li>", escape(r)))
                    .collect();
                format!(r#"<p>You hold:</p><ul id="latch-held">{items}</ul>"#)
            }
            _ => String::new(),
        };
        Reply::new(
            429,
            "text/html; charset=utf-8",
            format!(
                r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title} — Latch</title>
<style>body{{font:16px/1.5 system-ui,sans-serif;max-width:40rem;margin:4rem auto;padding:0 1rem;color:#222}}
h1{{font-size:1.6rem}}ul{{background:#fff4e5;border-left:4px solid #f0a020;padding:.75rem 1rem .75rem 2rem}}</style>
</head><body>
<h1>{title}</h1>
<p id="latch-detail">{detail}</p>
{held}
</body></html>
"#,
                title = escape(title),
                detail = escape(&detail),
            ),
        )
    } else {
        let extra = match limit {
            Limit::Held { held, max } => json!({
                "resource": resource,
                "limit": limit.key(),
                "held": held,
                "max": max,
            }),
            Limit::Rate => json!({ "resource": resource, "limit": limit.key() }),
        };
        Reply::problem_with(429, title, &detail, extra)
    };
    reply.header(header::RETRY_AFTER, retry_after.max(1).to_string())
}

/// The 502 answer when the app cannot be reached (no connection, a TLS handshake that failed,
/// no answer in time). It says nothing of why: that is logged, and is the operator's to read.
pub fn bad_gateway(html: bool) -> Reply {
    if html {
        Reply::new(
            502,
            "text/html; charset=utf-8",
            "<!doctype html><title>Bad gateway</title><h1>Bad gateway</h1>\
             <p>The application behind this address cannot be reached right now. Try again in a \
             few seconds.</p>",
        )
    } else {
        Reply::problem(
            502,
            "Bad gateway",
            "The application behind this address cannot be reached right now.",
        )
    }
}

/// The 503 answer when the lock store cannot be reached and `on_store_error = "deny"`.
pub fn unavailable(html: bool) -> Reply {
    let reply = if html {
        Reply::new(
            503,
            "text/html; charset=utf-8",
            "<!doctype html><title>Temporarily unavailable</title><h1>Temporarily unavailable</h1>\
             <p>The lock service cannot be reached, so this page cannot be opened safely. Try \
             again in a few seconds.</p>",
        )
    } else {
        Reply::problem(
            503,
            "Lock store unavailable",
            "The lock service cannot be reached; try again shortly.",
        )
    };
    reply.header(header::RETRY_AFTER, "5")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(reply: &Reply) -> String {
        String::from_utf8(reply.body.to_vec()).unwrap()
    }

    fn header_of(reply: &Reply, name: header::HeaderName) -> Option<&str> {
        reply
            .headers
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
    }

    #[test]
    fn the_cap_names_what_is_held_and_the_cap() {
        let held = ["doc:1".to_owned(), "doc:2".to_owned()];
        let limit = Limit::Held {
            held: &held,
            max: 2,
        };
        let reply = too_many(false, limit, "doc:3", 30);
        assert_eq!(reply.status, 429);
        assert_eq!(header_of(&reply, header::RETRY_AFTER), Some("30"));
        let doc: Value = serde_json::from_slice(&reply.body).unwrap();
        assert_eq!(doc["held"], json!(["doc:1", "doc:2"]));
        assert_eq!(doc["max"], 2);
        assert_eq!(doc["limit"], "max_per_user");
        assert_eq!(doc["resource"], "doc:3");
        assert_eq!(doc["status"], 429);
    }

    #[test]
    fn the_page_escapes_resource_names() {
        let held = ["doc:<script>".to_owned()];
        let limit = Limit::Held {
            held: &held,
            max: 1,
        };
        let reply = too_many(true, limit, "doc:x", 0);
        assert_eq!(
            header_of(&reply, header::CONTENT_TYPE),
            Some("text/html; charset=utf-8")
        );
        assert_eq!(header_of(&reply, header::RETRY_AFTER), Some("1"));
        let page = body(&reply);
        assert!(page.contains("doc:&lt;script&gt;"), "{page}");
        assert!(!page.contains("<script>"), "{page}");
        assert!(page.contains("1 locked page,"), "{page}");
    }

    #[test]
    fn the_rate_limit_says_when_to_come_back() {
        let reply = too_many(false, Limit::Rate, "doc:1", 7);
        let doc: Value = serde_json::from_slice(&reply.body).unwrap();
        assert_eq!(doc["limit"], "claims_per_minute");
        assert!(doc["detail"].as_str().unwrap().contains("7 seconds"));
        assert_eq!(header_of(&reply, header::RETRY_AFTER), Some("7"));
    }
}
