//! Same-origin checks for the proxy's own state-changing endpoints and its WebSocket.
//!
//! Browsers attach `Origin` to POSTs and WebSocket handshakes and `Sec-Fetch-Site` to every
//! request, so a cross-site page cannot hide where it comes from. Non-browser clients send
//! neither and authenticate with a bearer token, which a foreign page cannot read.

use http::HeaderMap;

/// Why a request was refused as cross-origin.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    CrossSite,
    ForeignOrigin,
}

impl Refused {
    pub fn message(self) -> &'static str {
        match self {
            Refused::CrossSite => "cross-site requests are not accepted here",
            Refused::ForeignOrigin => "the request's Origin does not match this site",
        }
    }
}

/// Accepts the request if it comes from the same origin as `Host`, or from no browser page.
pub fn check_same_origin(headers: &HeaderMap) -> Result<(), Refused> {
    if let Some(site) = headers.get("sec-fetch-site") {
        match site.as_bytes() {
            b"same-origin" | b"none" => {}
            _ => return Err(Refused::CrossSite),
        }
    }
    let Some(origin) = headers.get(http::header::ORIGIN) else {
        return Ok(());
    };
    let host = headers
        .get(http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .ok_or(Refused::ForeignOrigin)?;
    let origin = origin.to_str().map_err(|_| Refused::ForeignOrigin)?;
    if origin_matches_host(origin, host) {
        Ok(())
    } else {
        Err(Refused::ForeignOrigin)
    }
}

/// `https://example.com` matches `example.com` and `example.com:443`; `null` matches nothing.
fn origin_matches_host(origin: &str, host: &str) -> bool {
    let Some((scheme, authority)) = origin.split_once("://") else {
        return false;
    };
    let default_port = match scheme.to_ascii_lowercase().as_str() {
        "http" => "80",
        "https" => "443",
        _ => return false,
    };
    if authority.contains('/') {
        return false;
    }
    let split = |a: &str| -> (String, String) {
        // Bracketed IPv6 literals carry colons of their own.
        let (h, p) = match a.rfind(':') {
            Some(i) if !a[i..].contains(']') => (&a[..i], &a[i + 1..]),
            _ => (a, default_port),
        };
        (h.to_ascii_lowercase(), p.to_string())
    };
    split(authority) == split(host)
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
                &[("host", "A.test"), ("origin", "https://a.TEST:443")],
                Ok(()),
            ),
            (&[("host", "a.test"), ("origin", "https://a.test")], Ok(())),
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
            assert_eq!(check_same_origin(&headers(pairs)), *want, "{pairs:?}");
        }
    }
}
