//! Banner injection on the response path: decide per response whether the page gets the
//! banner, then stream its body through [`inject::Injector`].
//!
//! Only rule-matched requests are candidates. For them the proxy asks the upstream for an
//! uncompressed body. Apps ignore `Accept-Encoding` more often than one would hope, so an HTML
//! page that arrives gzip- or br-encoded anyway is decoded here (see [`crate::decode`], which
//! also bounds how far a page may inflate) before it is rewritten; every other response
//! (scripts, images, downloads) goes to the client exactly as the upstream sent it, compressed
//! or not. A rewritten page is gzipped again for a client that accepts gzip, by a
//! compression context that only such a page creates (it also fixes `Vary`). Pass-through
//! requests are never touched, so they pay nothing for any of this: no compression module
//! runs on every request.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http::header;
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::protocols::http::compression::ResponseCompressionCtx;
use pingora::proxy::Session;

use crate::decode::{Decoder, Encoding};
use crate::header_names::SEC_FETCH_DEST;
use crate::state::Latch;

/// Re-compression level for injected pages (gzip/br), a middle ground between CPU and size.
const RECOMPRESS_LEVEL: u32 = 5;

/// What a matched request's page needs to get the banner, besides the request itself (whose
/// normalized path the banner watches).
#[derive(Debug, Clone)]
pub struct InjectPlan {
    pub lease: Duration,
}

/// Whether the response may be shown as a page of its own, the only place a banner belongs.
///
/// Browsers say what a request is for in `Sec-Fetch-Dest`. A script, a stylesheet, an image or
/// a `fetch()` (`empty`) is never shown as a page, and an HTML fragment fetched to be spliced
/// into the page (htmx, Turbo frames) must not bring a second banner with it. Without the
/// header (older browsers, other clients) any response may be a page.
pub fn may_be_a_page(req: &RequestHeader) -> bool {
    req.headers.get(&SEC_FETCH_DEST).is_none_or(|dest| {
        [
            "document",
            "iframe",
            "frame",
            "fencedframe",
            "embed",
            "object",
        ]
        .iter()
        .any(|page| dest.as_bytes().eq_ignore_ascii_case(page.as_bytes()))
    })
}

/// Whether a `Content-Type` value names HTML: its media type, before any parameter, is
/// `text/html` in any case. Most responses are not pages, and are told so from the raw bytes.
fn is_html(content_type: &[u8]) -> bool {
    let media = content_type
        .split(|b| *b == b';')
        .next()
        .unwrap_or_default();
    media.trim_ascii().eq_ignore_ascii_case(b"text/html")
}

/// Does the client list `gzip` (or `x-gzip`) in `Accept-Encoding` without `q=0`?
fn accepts_gzip(req: &RequestHeader) -> bool {
    req.headers
        .get_all(header::ACCEPT_ENCODING)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|item| {
            let mut parts = item.split(';');
            let coding = parts.next().unwrap_or("").trim();
            let refused = parts.any(|p| {
                p.split_once('=').is_some_and(|(k, v)| {
                    k.trim().eq_ignore_ascii_case("q")
                        && v.trim().parse::<f32>().is_ok_and(|q| q <= 0.0)
                })
            });
            (coding.eq_ignore_ascii_case("gzip") || coding.eq_ignore_ascii_case("x-gzip"))
                && !refused
        })
}

/// The gzip encoder for a rewritten page, in its body phase: it has set the response's
/// `Content-Encoding`, `Vary` and framing. It is only ever offered gzip, by showing it a request
/// that accepts gzip and nothing else: pingora's brotli encoder ends a response with a flush
/// instead of a final block, which decoders reject. `None` when it declines the response.
fn recompressor(resp: &mut ResponseHeader) -> Option<ResponseCompressionCtx> {
    static GZIP_ONLY: OnceLock<Option<RequestHeader>> = OnceLock::new();
    let gzip_only = GZIP_ONLY
        .get_or_init(|| {
            let mut req = RequestHeader::build("GET", b"/", None).ok()?;
            req.insert_header(header::ACCEPT_ENCODING, "gzip").ok()?;
            Some(req)
        })
        .as_ref()?;
    let mut gzip = ResponseCompressionCtx::new(RECOMPRESS_LEVEL, false, false);
    gzip.request_filter(gzip_only);
    gzip.response_header_filter(resp, false);
    gzip.is_enabled().then_some(gzip)
}

/// Counts a matched page that went out without the banner, by reason (the metric's label).
fn count_skipped(latch: &Latch, reason: &'static str) {
    latch
        .metrics
        .banner_skipped
        .with_label_values(&[reason])
        .inc();
}

/// Why a matched page goes out without the banner: counted, and no rewriter.
fn skip(latch: &Latch, reason: &'static str) -> Option<BodyInjector> {
    count_skipped(latch, reason);
    None
}

/// Decides from the response header whether this page gets the banner, and adjusts the header.
pub fn prepare(
    latch: &Latch,
    session: &Session,
    resp: &mut ResponseHeader,
    plan: &InjectPlan,
) -> Option<BodyInjector> {
    if session.was_upgraded() || resp.status.as_u16() != 200 {
        return None;
    }
    let path = session.req_header().uri.path();
    let content_type = resp.headers.get(header::CONTENT_TYPE);
    if !content_type.is_some_and(|v| is_html(v.as_bytes())) {
        return None;
    }
    // A page whose parameters are not visible ASCII has no charset one could trust: left as sent.
    let content_type = content_type.and_then(|v| v.to_str().ok())?;
    let charset = content_type.split(';').skip(1).find_map(|p| {
        let (k, v) = p.split_once('=')?;
        k.trim()
            .eq_ignore_ascii_case("charset")
            .then(|| v.trim().trim_matches('"').to_string())
    });
    let Ok(encoding) = Encoding::of(resp) else {
        // zstd or something unknown: leave the page intact.
        return skip(latch, "encoding");
    };
    let no_transform = resp
        .headers
        .get_all(header::CACHE_CONTROL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| {
            v.split(',')
                .any(|d| d.trim().eq_ignore_ascii_case("no-transform"))
        });
    if no_transform {
        return skip(latch, "no_transform");
    }
    let policies: Vec<String> = resp
        .headers
        .get_all(header::CONTENT_SECURITY_POLICY)
        .iter()
        .filter_map(|v| v.to_str().ok().map(str::to_string))
        .collect();
    let nonce = match inject::csp_verdict(policies.iter().map(String::as_str)) {
        inject::CspVerdict::NoPolicy | inject::CspVerdict::Allowed => None,
        inject::CspVerdict::AllowedWithNonce(n) => Some(n),
        inject::CspVerdict::Forbidden(why) => {
            tracing::warn!(
                path = %path,
                reason = %why,
                "banner not injected: the page's Content-Security-Policy forbids the script; the lock is still enforced"
            );
            return skip(latch, "csp");
        }
    };
    let tag = latch.banner_tag(path, plan.lease, "app", nonce.as_deref());
    let tag_len = tag.len() as u64;
    let tag_len_is_exact = tag.is_ascii();
    let injector =
        match inject::Injector::new(tag, charset.as_deref(), latch.config.proxy.inject_at) {
            Ok(i) => i.remembering(Arc::clone(&latch.head_memo)),
            Err(e) => {
                tracing::warn!(path = %path, error = %e, "banner not injected");
                return skip(latch, "charset");
            }
        };

    // The body grows by exactly the tag. An identity body of known length keeps an exact
    // Content-Length (the tag is ASCII, so its length is the same in any ASCII-compatible
    // charset); otherwise the body is sent chunked. A HEAD gets the same headers as its GET
    // would, so caches and conditional requests agree.
    // A client that accepts gzip gets the rewritten page gzipped (see [`recompressor`]).
    let recompress = accepts_gzip(session.req_header());
    let promised = resp
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        .filter(|_| tag_len_is_exact && encoding.is_none() && !recompress)
        .and_then(|n| n.checked_add(tag_len));
    if encoding.is_some() {
        // The page goes out decoded: its ranges no longer exist.
        resp.remove_header(&header::CONTENT_ENCODING);
        resp.remove_header(&header::ACCEPT_RANGES);
    }
    let head = session.req_header().method == http::Method::HEAD;
    match promised {
        Some(length) => {
            let _ = resp.insert_header(header::CONTENT_LENGTH, length);
        }
        None => {
            resp.remove_header(&header::CONTENT_LENGTH);
            if !head {
                let _ = resp.insert_header(header::TRANSFER_ENCODING, "chunked");
            }
        }
    }
    if let Some(etag) = resp.headers.get(header::ETAG).cloned() {
        if !etag.as_bytes().starts_with(b"W/") {
            let mut weak = BytesMut::from(&b"W/"[..]);
            weak.extend_from_slice(etag.as_bytes());
            if let Ok(v) = http::HeaderValue::from_maybe_shared(weak.freeze()) {
                let _ = resp.insert_header(header::ETAG, v);
            }
        }
    }
    if head {
        return None;
    }
    // After every other edit: the encoder drops the length, weakens the ETag and adds `Vary`.
    let gzip = if recompress { recompressor(resp) } else { None };
    latch.metrics.injected.inc();
    Some(BodyInjector {
        decoder: encoding.map(Decoder::new),
        injector,
        gzip,
        failed: false,
        length_promised: promised.is_some(),
    })
}

/// The streaming rewriter for one response body.
pub struct BodyInjector {
    /// Undoes the upstream's gzip or br before the rewriter sees the page.
    decoder: Option<Decoder>,
    injector: inject::Injector,
    /// Gzips the rewritten page for a client that accepts gzip.
    gzip: Option<ResponseCompressionCtx>,
    failed: bool,
    /// The client was told the body's length, which counts the tag.
    length_promised: bool,
}

/// The response cannot be completed truthfully, so it must be aborted rather than sent short
/// or garbled: the rewriter failed on a body whose length, tag included, was already promised,
/// or the upstream's encoded body does not decode.
#[derive(Debug)]
pub struct Abort(pub &'static str);

impl BodyInjector {
    /// Rewrites one body chunk in place, decoding it first if the upstream encoded it and
    /// gzipping the result for a client that accepts gzip. On a rewriter error the rest of the
    /// body passes through unchanged (a page without a banner beats a broken page), unless a
    /// length that counts the tag was promised.
    pub fn filter(
        &mut self,
        latch: &Latch,
        body: &mut Option<Bytes>,
        end: bool,
    ) -> Result<(), Abort> {
        self.rewrite(latch, body, end)?;
        if let Some(gzip) = self.gzip.as_mut() {
            if let Some(compressed) = gzip.response_body_filter(body.as_ref(), end) {
                *body = Some(compressed);
            }
        }
        Ok(())
    }

    fn rewrite(&mut self, latch: &Latch, body: &mut Option<Bytes>, end: bool) -> Result<(), Abort> {
        if let Some(decoder) = self.decoder.as_mut() {
            let input = body.take();
            match decoder.decode(input.as_deref().unwrap_or_default(), end) {
                Ok(decoded) if input.is_some() || !decoded.is_empty() => *body = Some(decoded),
                Ok(_) => {}
                Err(error) => {
                    count_skipped(latch, error.reason());
                    tracing::warn!(%error, "aborting the response");
                    return Err(Abort(error.summary()));
                }
            }
        }
        if self.failed || (self.injector.passing_through() && !end) {
            return Ok(());
        }
        let mut out = Bytes::new();
        if let Some(chunk) = body.take() {
            let parsing = !self.injector.passing_through();
            match self.injector.write(chunk.clone()) {
                Ok(b) => {
                    out = b;
                    // Counted on the chunk that took the tag, not on the last one.
                    if parsing && self.injector.remembered() {
                        latch.metrics.injected_remembered.inc();
                    }
                }
                Err(e) => {
                    *body = Some(chunk);
                    return self.fail(latch, &e);
                }
            }
        }
        if end {
            match self.injector.finish() {
                Ok(rest) if out.is_empty() => out = rest,
                Ok(rest) if !rest.is_empty() => {
                    let mut joined = BytesMut::with_capacity(out.len() + rest.len());
                    joined.extend_from_slice(&out);
                    joined.extend_from_slice(&rest);
                    out = joined.freeze();
                }
                Ok(_) => {}
                Err(e) => {
                    *body = Some(out);
                    return self.fail(latch, &e);
                }
            }
        }
        *body = Some(out);
        Ok(())
    }

    fn fail(&mut self, latch: &Latch, error: &inject::InjectError) -> Result<(), Abort> {
        count_skipped(latch, "rewrite_error");
        self.failed = true;
        if self.length_promised {
            tracing::warn!(%error, "banner injection failed; aborting the response, whose length counted the banner");
            return Err(Abort(
                "banner injection failed after the length was promised",
            ));
        }
        tracing::warn!(%error, "banner injection failed; passing the rest through");
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(accept_encoding: Option<&str>, want: bool) {
        let mut req = RequestHeader::build("GET", b"/", None).unwrap();
        if let Some(v) = accept_encoding {
            req.insert_header(header::ACCEPT_ENCODING, v).unwrap();
        }
        assert_eq!(accepts_gzip(&req), want, "{accept_encoding:?}");
    }

    #[test]
    fn accepts_gzip_table() {
        check(None, false);
        check(Some(""), false);
        check(Some("identity"), false);
        check(Some("br"), false);
        check(Some("gzip"), true);
        check(Some("GZip"), true);
        check(Some("x-gzip"), true);
        check(Some("gzip, deflate, br, zstd"), true);
        check(Some("br;q=1.0, gzip;q=0.8, *;q=0.1"), true);
        check(Some("gzip;q=0"), false);
        check(Some("gzip; q=0.000"), false);
        check(Some("gzipped"), false);
        check(Some("*"), false);
    }

    #[test]
    fn html_is_told_by_the_media_type_alone() {
        for html in [
            "text/html",
            "TEXT/HTML",
            " text/html ",
            "text/html; charset=utf-8",
            "Text/Html;charset=\"iso-8859-1\"",
        ] {
            assert!(is_html(html.as_bytes()), "{html:?}");
        }
        for other in [
            "",
            "text/htm",
            "text/html5",
            "text/plain; x=text/html",
            "application/xhtml+xml",
            "application/octet-stream",
            "texthtml",
        ] {
            assert!(!is_html(other.as_bytes()), "{other:?}");
        }
    }
}
