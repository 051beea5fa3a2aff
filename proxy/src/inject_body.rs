//! Banner injection on the response path: decide per response whether the page gets the
//! banner, then stream its body through [`inject::Injector`].
//!
//! Only rule-matched requests are candidates. For them the proxy asks the upstream for an
//! uncompressed body and lets pingora's upstream module decompress gzip/br anyway (apps ignore
//! `Accept-Encoding` more often than one would hope); the downstream compression module then
//! re-compresses for clients that accept it and fixes `Vary`. Pass-through requests are never
//! touched, so they pay nothing for any of this.

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http::header;
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::modules::http::compression::{ResponseCompression, ResponseCompressionBuilder};
use pingora::modules::http::HttpModules;
use pingora::proxy::Session;

use crate::state::Latch;

/// Re-compression level for injected pages (gzip/br), a middle ground between CPU and size.
const RECOMPRESS_LEVEL: u32 = 5;

/// What a matched request's page needs to get the banner.
#[derive(Debug, Clone)]
pub struct InjectPlan {
    /// The normalized path the banner watches.
    pub path: String,
    pub lease: Duration,
}

/// Registers the downstream compression module, disabled unless a response turns it on.
pub fn init_downstream_modules(modules: &mut HttpModules) {
    modules.add_module(ResponseCompressionBuilder::enable(0));
}

/// Prepares the upstream request of a page that may get the banner.
pub fn upstream_request(upstream: &mut RequestHeader, will_inject: bool) {
    if will_inject {
        // An identity body is cheapest to rewrite; gzip/br that arrive anyway are decoded.
        let _ = upstream.insert_header(header::ACCEPT_ENCODING, "identity");
    }
}

/// Turns on upstream decompression for a request whose page may get the banner.
pub fn enable_decompression(session: &mut Session) {
    session.upstream_compression.adjust_decompression(true);
}

/// Why a matched page went out without the banner (metric label and log).
fn skip(latch: &Latch, reason: &'static str) -> Option<BodyInjector> {
    latch
        .metrics
        .banner_skipped
        .with_label_values(&[reason])
        .inc();
    None
}

/// Decides from the response header whether this page gets the banner, and adjusts the header.
pub fn prepare(
    latch: &Latch,
    session: &mut Session,
    resp: &mut ResponseHeader,
    plan: &InjectPlan,
) -> Option<BodyInjector> {
    if session.req_header().method == http::Method::HEAD {
        return None;
    }
    if session.was_upgraded() || resp.status.as_u16() != 200 {
        return None;
    }
    let content_type = resp
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let mime = content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    if mime != "text/html" {
        return None;
    }
    let charset = content_type.split(';').skip(1).find_map(|p| {
        let (k, v) = p.split_once('=')?;
        k.trim()
            .eq_ignore_ascii_case("charset")
            .then(|| v.trim().trim_matches('"').to_string())
    });
    if let Some(enc) = resp.headers.get(header::CONTENT_ENCODING) {
        if !enc.as_bytes().eq_ignore_ascii_case(b"identity") {
            // zstd or something unknown survived decompression: leave the page intact.
            return skip(latch, "encoding");
        }
    }
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
                path = %plan.path,
                reason = %why,
                "banner not injected: the page's Content-Security-Policy forbids the script; the lock is still enforced"
            );
            return skip(latch, "csp");
        }
    };
    let tag = latch.banner_tag(&plan.path, plan.lease, "app", nonce.as_deref());
    let injector = match inject::Injector::new(tag, charset.as_deref()) {
        Ok(i) => i,
        Err(e) => {
            tracing::warn!(path = %plan.path, error = %e, "banner not injected");
            return skip(latch, "charset");
        }
    };

    // The body changes length, so the upstream's framing and validators no longer hold.
    resp.remove_header(&header::CONTENT_LENGTH);
    let _ = resp.insert_header(header::TRANSFER_ENCODING, "chunked");
    if let Some(etag) = resp.headers.get(header::ETAG).cloned() {
        if !etag.as_bytes().starts_with(b"W/") {
            let mut weak = BytesMut::from(&b"W/"[..]);
            weak.extend_from_slice(etag.as_bytes());
            if let Ok(v) = http::HeaderValue::from_maybe_shared(weak.freeze()) {
                let _ = resp.insert_header(header::ETAG, v);
            }
        }
    }
    if let Some(compression) = session
        .downstream_modules_ctx
        .get_mut::<ResponseCompression>()
    {
        compression.adjust_level(RECOMPRESS_LEVEL);
    }
    latch.metrics.injected.inc();
    Some(BodyInjector {
        injector,
        failed: false,
    })
}

/// The streaming rewriter for one response body.
pub struct BodyInjector {
    injector: inject::Injector,
    failed: bool,
}

impl BodyInjector {
    /// Rewrites one body chunk in place. On a rewriter error the rest of the body passes
    /// through unchanged: a page without a banner beats a broken page.
    pub fn filter(&mut self, latch: &Latch, body: &mut Option<Bytes>, end: bool) {
        if self.failed {
            return;
        }
        let mut out = BytesMut::new();
        if let Some(chunk) = body.as_ref() {
            match self.injector.write(chunk) {
                Ok(b) => out.extend_from_slice(&b),
                Err(e) => {
                    tracing::warn!(error = %e, "banner injection failed mid-body; passing the rest through");
                    latch
                        .metrics
                        .banner_skipped
                        .with_label_values(&["rewrite_error"])
                        .inc();
                    self.failed = true;
                    return;
                }
            }
        }
        if end {
            match self.injector.finish() {
                Ok(b) => out.extend_from_slice(&b),
                Err(e) => tracing::warn!(error = %e, "banner injection failed at end of body"),
            }
        }
        *body = if out.is_empty() && !end {
            Some(Bytes::new())
        } else {
            Some(out.freeze())
        };
    }
}
