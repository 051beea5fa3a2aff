//! How long a fetched key set may be used before it is fetched again, from the response's
//! caching headers (`Cache-Control`, `Expires` with `Date`), held between a floor and a ceiling.
//!
//! The floor keeps a provider that says `no-store` (or `max-age=0`) from turning every minute
//! into a stream of fetches; the ceiling makes a key the provider withdrew disappear within a
//! bounded time even when it promised a year. Pure: the caller passes header values and the
//! current time.

use std::time::{Duration, SystemTime};

/// Used when the response says nothing about caching (before the floor and ceiling apply).
pub const DEFAULT_LIFETIME: Duration = Duration::from_secs(300);

/// The floor and ceiling a key set's lifetime is held between.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Bounds {
    pub min: Duration,
    pub max: Duration,
}

impl Bounds {
    fn clamp(self, lifetime: Duration) -> Duration {
        lifetime.max(self.min).min(self.max.max(self.min))
    }
}

/// The lifetime a response's caching headers give, held within `bounds`.
///
/// `Cache-Control` wins over `Expires` (RFC 9111 §5.3): `no-store`, `no-cache` or
/// `max-age=0` mean "fetch again as soon as allowed" (the floor); `max-age=N` means N
/// seconds (`s-maxage` is for shared caches and is ignored). Without it, `Expires` minus
/// `Date` (or minus `now` without a `Date`); an `Expires` that does not parse means already
/// expired, as the RFC says. Without either, [`DEFAULT_LIFETIME`].
pub fn lifetime(
    cache_control: Option<&str>,
    expires: Option<&str>,
    date: Option<&str>,
    now: SystemTime,
    bounds: Bounds,
) -> Duration {
    bounds.clamp(stated(cache_control, expires, date, now).unwrap_or(DEFAULT_LIFETIME))
}

fn stated(
    cache_control: Option<&str>,
    expires: Option<&str>,
    date: Option<&str>,
    now: SystemTime,
) -> Option<Duration> {
    if let Some(from_cc) = cache_control.and_then(from_cache_control) {
        return Some(from_cc);
    }
    let expires = expires?;
    let Ok(expires) = httpdate::parse_http_date(expires.trim()) else {
        return Some(Duration::ZERO);
    };
    let base = date
        .and_then(|date| httpdate::parse_http_date(date.trim()).ok())
        .unwrap_or(now);
    Some(expires.duration_since(base).unwrap_or(Duration::ZERO))
}

/// `None` when the header says nothing about freshness (e.g. only `public`).
fn from_cache_control(value: &str) -> Option<Duration> {
    let mut max_age = None;
    for directive in value.split(',') {
        let directive = directive.trim();
        let (name, argument) = match directive.split_once('=') {
            Some((name, argument)) => (name.trim(), Some(argument.trim().trim_matches('"'))),
            None => (directive, None),
        };
        if name.eq_ignore_ascii_case("no-store") || name.eq_ignore_ascii_case("no-cache") {
            return Some(Duration::ZERO);
        }
        if name.eq_ignore_ascii_case("max-age") {
            // A malformed max-age is treated as stale (RFC 9111 §4.2.1 lets a cache do so).
            let seconds = argument
                .filter(|a| !a.is_empty() && a.bytes().all(|b| b.is_ascii_digit()))
                .map(|a| a.parse::<u64>().unwrap_or(u64::MAX))
                .unwrap_or(0);
            // The first max-age counts; a duplicate cannot extend it.
            max_age.get_or_insert(Duration::from_secs(seconds));
        }
    }
    max_age
}

#[cfg(test)]
mod tests {
    use super::*;

    const BOUNDS: Bounds = Bounds {
        min: Duration::from_secs(60),
        max: Duration::from_secs(86_400),
    };

    fn now() -> SystemTime {
        httpdate::parse_http_date("Sun, 06 Dec 2026 12:00:00 GMT").unwrap()
    }

    fn check(cache_control: Option<&str>, expires: Option<&str>, date: Option<&str>, secs: u64) {
        assert_eq!(
            lifetime(cache_control, expires, date, now(), BOUNDS),
            Duration::from_secs(secs),
            "Cache-Control {cache_control:?}, Expires {expires:?}, Date {date:?}"
        );
    }

    #[test]
    fn cache_headers_to_lifetimes() {
        check(None, None, None, 300);
        check(Some("max-age=600"), None, None, 600);
        check(
            Some("public, max-age=3600, must-revalidate"),
            None,
            None,
            3600,
        );
        check(Some("MAX-AGE=900"), None, None, 900);
        check(Some("max-age=\"120\""), None, None, 120);
        check(Some("max-age=10"), None, None, 60);
        check(Some("max-age=0"), None, None, 60);
        check(Some("no-store"), None, None, 60);
        check(Some("max-age=600, no-cache"), None, None, 60);
        check(Some("max-age=99999999"), None, None, 86_400);
        check(Some("max-age=184467440737095516160"), None, None, 86_400);
        check(Some("max-age=-5"), None, None, 60);
        check(Some("max-age="), None, None, 60);
        check(Some("max-age=700, max-age=9000"), None, None, 700);
        check(Some("s-maxage=9000"), None, None, 300);
        check(Some("public"), None, None, 300);
        check(Some(""), None, None, 300);
        // Cache-Control wins over Expires.
        check(
            Some("max-age=120"),
            Some("Sun, 06 Dec 2026 14:00:00 GMT"),
            None,
            120,
        );
        check(
            Some("public"),
            Some("Sun, 06 Dec 2026 14:00:00 GMT"),
            None,
            7200,
        );
        check(None, Some("Sun, 06 Dec 2026 12:30:00 GMT"), None, 1800);
        // Expires is read against the response's Date when there is one.
        check(
            None,
            Some("Sun, 06 Dec 2026 12:30:00 GMT"),
            Some("Sun, 06 Dec 2026 12:20:00 GMT"),
            600,
        );
        check(
            None,
            Some("Sun, 06 Dec 2026 12:30:00 GMT"),
            Some("garbage"),
            1800,
        );
        check(None, Some("Sun, 06 Dec 2026 11:00:00 GMT"), None, 60);
        check(None, Some("0"), None, 60);
        check(None, Some("Thu, 01 Jan 2099 00:00:00 GMT"), None, 86_400);
    }

    #[test]
    fn a_floor_above_the_ceiling_yields_the_floor() {
        let odd = Bounds {
            min: Duration::from_secs(100),
            max: Duration::from_secs(10),
        };
        assert_eq!(
            lifetime(Some("max-age=50"), None, None, now(), odd),
            Duration::from_secs(100)
        );
    }
}
