//! What a request under a rule asks for, read from its headers in one pass: to become a
//! WebSocket, to get an event stream, to be shown as a page. A lookup for each would hash every
//! name it looks for and search the map for it; one walk over a request's few headers costs
//! less than one such lookup.
//!
//! Each answer is the one the header lookup would give: the first `Upgrade` and the first
//! `Sec-Fetch-Dest` count, as `HeaderMap::get` returns them, and every `Accept` does.

use http::header::{self, HeaderName, HeaderValue};
use http::Method;
use pingora::http::RequestHeader;

static SEC_FETCH_DEST: HeaderName = HeaderName::from_static("sec-fetch-dest");

/// What [`Asks::of`] read from a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Asks {
    /// Its first `Upgrade` names `websocket`, in any case.
    pub websocket: bool,
    /// A GET whose `Accept` names `text/event-stream`.
    pub event_stream: bool,
    /// Its response may be shown as a page of its own, the only place a banner belongs
    /// (see [`is_page_destination`]).
    pub page: bool,
}

impl Asks {
    pub fn of(req: &RequestHeader) -> Asks {
        let mut upgrade = None;
        let mut dest = None;
        let mut event_stream = false;
        for (name, value) in &req.headers {
            if *name == header::UPGRADE {
                upgrade.get_or_insert(value);
            } else if *name == header::ACCEPT {
                event_stream |= accepts_event_stream(value);
            } else if *name == SEC_FETCH_DEST {
                dest.get_or_insert(value);
            }
        }
        Asks {
            websocket: upgrade.is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"websocket")),
            event_stream: event_stream && req.method == Method::GET,
            page: is_page_destination(dest),
        }
    }
}

/// Does this `Accept` value name `text/event-stream`, in any case?
pub fn accepts_event_stream(accept: &HeaderValue) -> bool {
    accept
        .as_bytes()
        .windows(b"text/event-stream".len())
        .any(|w| w.eq_ignore_ascii_case(b"text/event-stream"))
}

/// May a response with this `Sec-Fetch-Dest` be shown as a page?
///
/// Browsers say what a request is for in `Sec-Fetch-Dest`. A script, a stylesheet, an image or
/// a `fetch()` (`empty`) is never shown as a page, and an HTML fragment fetched to be spliced
/// into the page (htmx, Turbo frames) must not bring a second banner with it. Without the
/// header (older browsers, other clients) any response may be a page.
pub fn is_page_destination(dest: Option<&HeaderValue>) -> bool {
    dest.is_none_or(|dest| {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn request(method: &str, headers: &[(&str, &str)]) -> RequestHeader {
        let mut req = RequestHeader::build(method, b"/docs/1/edit", None).unwrap();
        for (name, value) in headers {
            req.append_header(name.to_string(), *value).unwrap();
        }
        req
    }

    fn asks(method: &str, headers: &[(&str, &str)]) -> Asks {
        Asks::of(&request(method, headers))
    }

    /// What a lookup per header answers, as the proxy asked before reading them in one pass.
    fn by_lookup(req: &RequestHeader) -> Asks {
        Asks {
            websocket: req
                .headers
                .get(header::UPGRADE)
                .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"websocket")),
            event_stream: req.method == Method::GET
                && req
                    .headers
                    .get_all(header::ACCEPT)
                    .iter()
                    .any(accepts_event_stream),
            page: is_page_destination(req.headers.get(&SEC_FETCH_DEST)),
        }
    }

    #[test]
    fn a_plain_request_asks_for_a_page_and_nothing_else() {
        let plain = Asks {
            websocket: false,
            event_stream: false,
            page: true,
        };
        assert_eq!(asks("GET", &[]), plain);
        assert_eq!(
            asks("GET", &[("Host", "app"), ("Accept", "text/html")]),
            plain
        );
    }

    #[test]
    fn a_websocket_is_named_by_the_first_upgrade_in_any_case() {
        assert!(asks("GET", &[("Upgrade", "websocket")]).websocket);
        assert!(asks("GET", &[("upgrade", "WebSocket")]).websocket);
        assert!(!asks("GET", &[("Upgrade", "h2c")]).websocket);
        // As `HeaderMap::get` answers: the first value, not any.
        assert!(!asks("GET", &[("Upgrade", "h2c"), ("Upgrade", "websocket")]).websocket);
        assert!(asks("GET", &[("Upgrade", "websocket"), ("Upgrade", "h2c")]).websocket);
    }

    #[test]
    fn an_event_stream_is_asked_for_by_a_get_whose_accept_names_one() {
        assert!(asks("GET", &[("Accept", "text/event-stream")]).event_stream);
        let second = [
            ("Accept", "text/html"),
            ("Accept", "Text/Event-Stream;q=0.9"),
        ];
        assert!(asks("GET", &second).event_stream);
        assert!(!asks("GET", &[("Accept", "text/html")]).event_stream);
        assert!(!asks("POST", &[("Accept", "text/event-stream")]).event_stream);
        assert!(!asks("HEAD", &[("Accept", "text/event-stream")]).event_stream);
    }

    #[test]
    fn only_a_destination_shown_on_its_own_may_be_a_page() {
        for dest in [
            "document",
            "IFrame",
            "frame",
            "fencedframe",
            "embed",
            "object",
        ] {
            assert!(asks("GET", &[("Sec-Fetch-Dest", dest)]).page, "{dest}");
        }
        for dest in ["empty", "script", "style", "image", "font", "worker", ""] {
            assert!(!asks("GET", &[("Sec-Fetch-Dest", dest)]).page, "{dest}");
        }
        // The first one counts, as `HeaderMap::get` answers.
        let two = [("Sec-Fetch-Dest", "empty"), ("Sec-Fetch-Dest", "document")];
        assert!(!asks("GET", &two).page);
    }

    #[test]
    fn one_pass_answers_as_a_lookup_per_header_does() {
        let headers: [(&str, &str); 9] = [
            ("Host", "app.example"),
            ("Upgrade", "websocket"),
            ("Upgrade", "h2c"),
            ("Accept", "text/html"),
            ("Accept", "text/event-stream"),
            ("Sec-Fetch-Dest", "iframe"),
            ("Sec-Fetch-Dest", "empty"),
            ("Cookie", "a=1"),
            ("X-Other", "sec-fetch-dest"),
        ];
        // Every subset of these headers, in order, with each method.
        for method in ["GET", "POST", "HEAD"] {
            for mask in 0u32..(1 << headers.len()) {
                let chosen: Vec<_> = (0..headers.len())
                    .filter(|i| mask & (1 << i) != 0)
                    .map(|i| headers[i])
                    .collect();
                let req = request(method, &chosen);
                assert_eq!(Asks::of(&req), by_lookup(&req), "{method} {chosen:?}");
            }
        }
    }
}
