//! Whether a browser's `Origin` names the site a request was sent to: the same scheme, host
//! and port (RFC 6454). Cookies go with every request a browser makes, so a request that
//! changes something must prove it comes from a page of this site; `Origin` is that proof.
//!
//! Like the rest of this crate it works on header values as bytes and knows no HTTP library.

/// True when `origin` (an `Origin` header value) is `scheme://host[:port]` for the `Host` the
/// request was sent to, with `scheme` the one browsers use to reach this listener (`http`, or
/// `https` behind a TLS-terminating load balancer). Host names compare ignoring ASCII case,
/// and a missing port is the scheme's default. `null` and anything that is not a plain origin
/// match nothing.
pub fn same_origin(origin: &[u8], host: &[u8], scheme: &str) -> bool {
    let (Ok(origin), Ok(host)) = (std::str::from_utf8(origin), std::str::from_utf8(host)) else {
        return false;
    };
    let Some((origin_scheme, authority)) = origin.split_once("://") else {
        return false;
    };
    if !origin_scheme.eq_ignore_ascii_case(scheme) {
        return false;
    }
    let default_port = match scheme {
        "https" => "443",
        _ => "80",
    };
    if authority.is_empty() || authority.contains(['/', '?', '#', '@']) {
        return false;
    }
    let split = |a: &str| -> (String, String) {
        // Bracketed IPv6 literals carry colons of their own.
        let (h, p) = match a.rfind(':') {
            Some(i) if !a[i..].contains(']') => (&a[..i], &a[i + 1..]),
            _ => (a, default_port),
        };
        (h.to_ascii_lowercase(), p.to_owned())
    };
    split(authority) == split(host)
}

/// Why a browser's request was refused as coming from another site.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// `Sec-Fetch-Site` says another site (or a sibling subdomain) sent it.
    CrossSite,
    /// Its `Origin` names another origin than the `Host` it was sent to.
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

/// Accepts a request that comes from a page of the site it was sent to, or from no browser
/// page at all: `sec_fetch_site`, `origin` and `host` are the values of those headers. Browsers
/// send `Sec-Fetch-Site` with every request and `Origin` with POSTs and WebSocket handshakes,
/// so a cross-site page cannot hide where it comes from; clients that are not browsers send
/// neither.
pub fn from_same_site(
    sec_fetch_site: Option<&[u8]>,
    origin: Option<&[u8]>,
    host: Option<&[u8]>,
    scheme: &str,
) -> Result<(), Refused> {
    if let Some(site) = sec_fetch_site {
        if !matches!(site, b"same-origin" | b"none") {
            return Err(Refused::CrossSite);
        }
    }
    match (origin, host) {
        (None, _) => Ok(()),
        (Some(origin), Some(host)) if same_origin(origin, host, scheme) => Ok(()),
        (Some(_), _) => Err(Refused::ForeignOrigin),
    }
}

#[cfg(test)]
mod tests {
    use super::same_origin;

    #[test]
    fn origin_table() {
        // (origin, host, scheme, same)
        let cases = [
            ("http://a.test", "a.test", "http", true),
            ("http://a.test:80", "a.test", "http", true),
            ("http://a.test", "a.test:80", "http", true),
            ("http://A.test:8080", "a.TEST:8080", "http", true),
            ("HTTP://a.test", "a.test", "http", true),
            ("https://a.test", "a.test", "https", true),
            ("https://a.test:443", "a.test", "https", true),
            ("http://[::1]", "[::1]:80", "http", true),
            ("http://[::1]:8080", "[::1]:8080", "http", true),
            // The scheme must be the listener's: an https page is another origin.
            ("https://a.test", "a.test", "http", false),
            ("https://a.test:80", "a.test", "http", false),
            ("http://a.test", "a.test", "https", false),
            ("http://a.test:443", "a.test", "https", false),
            ("ws://a.test", "a.test", "http", false),
            ("http://a.test:8080", "a.test", "http", false),
            ("http://a.test", "a.test:8080", "http", false),
            ("http://evil.test", "a.test", "http", false),
            ("http://a.test.evil.test", "a.test", "http", false),
            ("http://evil@a.test", "a.test", "http", false),
            ("http://a.test/", "a.test", "http", false),
            ("http://", "a.test", "http", false),
            ("null", "a.test", "http", false),
            ("a.test", "a.test", "http", false),
        ];
        for (origin, host, scheme, same) in cases {
            assert_eq!(
                same_origin(origin.as_bytes(), host.as_bytes(), scheme),
                same,
                "{origin} vs {host} ({scheme})"
            );
        }
    }
}
