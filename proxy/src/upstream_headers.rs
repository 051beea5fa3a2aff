//! The headers Latch sets on a request it forwards: who the requester is, the lock it goes
//! through under, and `Accept-Encoding: identity` for a page that may get the banner.
//!
//! pingora's [`RequestHeader`] keeps the client's spelling of every header name in a second
//! map. Its `insert_header` parses the name it is given, copies it twice and inserts into both
//! maps, growing each as it goes; for the five or six headers of a held request that was the
//! largest single cost Latch added to a request. With [`HeaderCase::Canonical`] (the default)
//! the request is taken apart into its `http` parts instead: room for every header is reserved
//! once and the names are constants, so nothing is parsed or copied. The second map does not
//! survive that, so the upstream sees the request's header names lower-case, except a dozen
//! common ones pingora title-cases (`Host`, `Content-Type`, `Content-Length`, …).
//! [`HeaderCase::Preserve`] keeps every name as the client spelled it.
//!
//! Every header here replaces any of the same name; the client's own `X-Latch-*` headers are
//! gone before this runs.

use config::HeaderCase;
use http::header::{HeaderName, HeaderValue, ACCEPT_ENCODING};
use http::request::Parts;
use pingora::http::RequestHeader;
use pingora::prelude::*;

// Built when the program is compiled, so no request pays for checking a name.
static X_LATCH_USER: HeaderName = HeaderName::from_static("x-latch-user");
static X_LATCH_USER_NAME: HeaderName = HeaderName::from_static("x-latch-user-name");
static X_LATCH_RESOURCE: HeaderName = HeaderName::from_static("x-latch-resource");
static X_LATCH_FENCE: HeaderName = HeaderName::from_static("x-latch-fence");
static X_LATCH_ACCESS: HeaderName = HeaderName::from_static("x-latch-access");

/// The headers one forwarded request gets; `None` leaves a header out.
#[derive(Debug, Default)]
pub struct UpstreamHeaders {
    /// Ask for an uncompressed body: the page may be rewritten.
    pub accept_identity: bool,
    pub user: Option<HeaderValue>,
    pub user_name: Option<HeaderValue>,
    pub resource: Option<HeaderValue>,
    pub fence: Option<HeaderValue>,
    pub access: Option<HeaderValue>,
}

impl UpstreamHeaders {
    /// Every header by its name, the left-out ones as `None`.
    fn into_entries(self) -> [(&'static HeaderName, Option<HeaderValue>); 6] {
        let accept = self
            .accept_identity
            .then(|| HeaderValue::from_static("identity"));
        [
            (&ACCEPT_ENCODING, accept),
            (&X_LATCH_USER, self.user),
            (&X_LATCH_USER_NAME, self.user_name),
            (&X_LATCH_RESOURCE, self.resource),
            (&X_LATCH_FENCE, self.fence),
            (&X_LATCH_ACCESS, self.access),
        ]
    }

    /// Sets the headers on `upstream`, spelling the request's header names as `case` says.
    pub fn apply(self, upstream: &mut RequestHeader, case: HeaderCase) -> Result<()> {
        let entries = self.into_entries();
        let count = entries.iter().filter(|(_, value)| value.is_some()).count();
        if count == 0 {
            return Ok(());
        }
        let entries = entries
            .into_iter()
            .filter_map(|(name, value)| Some((name, value?)));
        match case {
            HeaderCase::Preserve => {
                for (name, value) in entries {
                    upstream.insert_header(name.as_str(), value)?;
                }
                Ok(())
            }
            HeaderCase::Canonical => {
                // A stand-in that allocates nothing, while the parts are out.
                let stand_in = RequestHeader::from(http::Request::new(()).into_parts().0);
                let mut parts = Parts::from(std::mem::replace(upstream, stand_in));
                let added = insert_all(&mut parts, count, entries);
                *upstream = RequestHeader::from(parts);
                added
            }
        }
    }
}

fn insert_all(
    parts: &mut Parts,
    count: usize,
    entries: impl Iterator<Item = (&'static HeaderName, HeaderValue)>,
) -> Result<()> {
    let too_many = |_| Error::explain(ErrorType::InvalidHTTPHeader, "too many request headers");
    parts.headers.try_reserve(count).map_err(too_many)?;
    for (name, value) in entries {
        parts
            .headers
            .try_insert(name.clone(), value)
            .map_err(too_many)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use bytes::BytesMut;

    use super::*;

    /// A request as pingora parses it from a client: names spelled as sent, kept in case.
    fn client_request() -> RequestHeader {
        let mut req = RequestHeader::build("POST", b"/docs/1/save?draft=1", Some(4)).unwrap();
        req.append_header("Host", "app.example").unwrap();
        req.append_header("X-CSRF-Token", "t0k3n").unwrap();
        req.append_header("Accept-Encoding", "gzip, br").unwrap();
        req.append_header("Cookie", "a=1").unwrap();
        req.append_header("Cookie", "b=2").unwrap();
        req
    }

    fn held() -> UpstreamHeaders {
        UpstreamHeaders {
            accept_identity: true,
            user: Some(HeaderValue::from_static("alice")),
            user_name: Some(HeaderValue::from_static("Alice A.")),
            resource: Some(HeaderValue::from_static("doc:1")),
            fence: Some(HeaderValue::from(42u64)),
            access: Some(HeaderValue::from_static("exclusive")),
        }
    }

    fn wire(req: &RequestHeader) -> String {
        let mut buf = BytesMut::new();
        req.header_to_h1_wire(&mut buf);
        String::from_utf8(buf.to_vec()).unwrap()
    }

    fn values<'a>(req: &'a RequestHeader, name: &str) -> Vec<&'a str> {
        req.headers
            .get_all(name)
            .iter()
            .map(|v| v.to_str().unwrap())
            .collect()
    }

    fn assert_held_headers(req: &RequestHeader) {
        assert_eq!(values(req, "x-latch-user"), ["alice"]);
        assert_eq!(values(req, "x-latch-user-name"), ["Alice A."]);
        assert_eq!(values(req, "x-latch-resource"), ["doc:1"]);
        assert_eq!(values(req, "x-latch-fence"), ["42"]);
        assert_eq!(values(req, "x-latch-access"), ["exclusive"]);
        assert_eq!(values(req, "accept-encoding"), ["identity"]);
        // The rest of the request is as it was.
        assert_eq!(values(req, "x-csrf-token"), ["t0k3n"]);
        assert_eq!(values(req, "cookie"), ["a=1", "b=2"]);
        assert_eq!(values(req, "host"), ["app.example"]);
        assert_eq!(req.method, "POST");
        assert_eq!(req.raw_path(), b"/docs/1/save?draft=1");
        assert_eq!(req.headers.len(), 10);
    }

    #[test]
    fn canonical_case_sets_every_header_and_spells_names_canonically() {
        let mut req = client_request();
        held().apply(&mut req, HeaderCase::Canonical).unwrap();
        assert_held_headers(&req);
        let wire = wire(&req);
        assert!(wire.contains("Host: app.example\r\n"), "{wire}");
        assert!(wire.contains("x-csrf-token: t0k3n\r\n"), "{wire}");
        assert!(wire.contains("cookie: a=1\r\ncookie: b=2\r\n"), "{wire}");
        assert!(wire.contains("accept-encoding: identity\r\n"), "{wire}");
        assert!(wire.contains("x-latch-fence: 42\r\n"), "{wire}");
        assert!(!wire.contains("gzip"), "{wire}");
    }

    #[test]
    fn preserved_case_sets_every_header_and_keeps_the_clients_spelling() {
        let mut req = client_request();
        held().apply(&mut req, HeaderCase::Preserve).unwrap();
        assert_held_headers(&req);
        let wire = wire(&req);
        assert!(wire.contains("Host: app.example\r\n"), "{wire}");
        assert!(wire.contains("X-CSRF-Token: t0k3n\r\n"), "{wire}");
        assert!(wire.contains("Cookie: a=1\r\nCookie: b=2\r\n"), "{wire}");
        assert!(wire.contains("accept-encoding: identity\r\n"), "{wire}");
        assert!(wire.contains("x-latch-fence: 42\r\n"), "{wire}");
        assert!(!wire.contains("gzip"), "{wire}");
    }

    #[test]
    fn headers_left_out_are_not_sent_and_an_empty_set_changes_nothing() {
        for case in [HeaderCase::Canonical, HeaderCase::Preserve] {
            let mut req = client_request();
            let viewer = UpstreamHeaders {
                user: Some(HeaderValue::from_static("bob")),
                access: Some(HeaderValue::from_static("read_only")),
                ..UpstreamHeaders::default()
            };
            viewer.apply(&mut req, case).unwrap();
            assert_eq!(values(&req, "x-latch-user"), ["bob"]);
            assert_eq!(values(&req, "x-latch-access"), ["read_only"]);
            assert!(req.headers.get("x-latch-fence").is_none());
            assert_eq!(values(&req, "accept-encoding"), ["gzip, br"]);

            let mut req = client_request();
            UpstreamHeaders::default().apply(&mut req, case).unwrap();
            assert!(wire(&req).contains("X-CSRF-Token: t0k3n\r\n"));
        }
    }
}
