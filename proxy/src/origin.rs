//! Same-origin checks for the proxy's own state-changing endpoints and its WebSocket.
//!
//! Browsers attach `Origin` to POSTs and WebSocket handshakes and `Sec-Fetch-Site` to every
//! request, so a cross-site page cannot hide where it comes from. Non-browser clients send
//! neither and authenticate with a bearer token, which a foreign page cannot read.

use http::HeaderMap;

pub use auth::CrossOrigin as Refused;

/// Accepts the request if it comes from the same origin as `Host` under `scheme` (see
/// `proxy.public_scheme`), or from no browser page ([`auth::from_same_site`]).
pub fn check_same_origin(headers: &HeaderMap, scheme: &str) -> Result<(), Refused> {
    let value = |name| headers.get(name).map(|v: &http::HeaderValue| v.as_bytes());
    auth::from_same_site(
        value(http::header::HeaderName::from_static("sec-fetch-site")),
        value(http::header::ORIGIN),
        value(http::header::HOST),
        scheme,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                http::header::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        h
    }

    #[test]
    fn origin_table() {
        type Case<'a> = (&'a [(&'a str, &'a str)], Result<(), Refused>);
        let cases: &[Case<'_>] = &[
            (&[("host", "a.test")], Ok(())),
            (&[("host", "a.test"), ("origin", "http://a.test")], Ok(())),
            (
                &[("host", "a.test:8080"), ("origin", "http://a.test:8080")],
                Ok(()),
            ),
            (
                &[("host", "A.test"), ("origin", "http://a.TEST:80")],
                Ok(()),
            ),
            (
                &[("host", "a.test"), ("origin", "https://a.test")],
                Err(Refused::ForeignOrigin),
            ),
            (
                &[("host", "a.test:8080"), ("origin", "http://a.test")],
                Err(Refused::ForeignOrigin),
            ),
            (
                &[("host", "a.test"), ("origin", "http://evil.test")],
                Err(Refused::ForeignOrigin),
            ),
            (
                &[("host", "a.test"), ("origin", "null")],
                Err(Refused::ForeignOrigin),
            ),
            (
                &[("host", "a.test"), ("origin", "http://a.test.evil.test")],
                Err(Refused::ForeignOrigin),
            ),
            (&[("origin", "http://a.test")], Err(Refused::ForeignOrigin)),
            (&[("host", "[::1]:80"), ("origin", "http://[::1]")], Ok(())),
            (
                &[("host", "a.test"), ("sec-fetch-site", "cross-site")],
                Err(Refused::CrossSite),
            ),
            (
                &[("host", "a.test"), ("sec-fetch-site", "same-site")],
                Err(Refused::CrossSite),
            ),
            (
                &[
                    ("host", "a.test"),
                    ("sec-fetch-site", "same-origin"),
                    ("origin", "http://a.test"),
                ],
                Ok(()),
            ),
            (&[("host", "a.test"), ("sec-fetch-site", "none")], Ok(())),
        ];
        for (pairs, want) in cases {
            assert_eq!(
                check_same_origin(&headers(pairs), "http"),
                *want,
                "{pairs:?}"
            );
        }
    }
}
