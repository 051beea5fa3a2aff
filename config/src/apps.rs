//! `[[app]]`: several apps behind one proxy, each reached by its own host names.
//!
//! This module owns what an app entry means once read: its name, the host names that reach it
//! (exact, or `*.example.com` for one more label), and which app a request's authority
//! belongs to. The key declarations are in `keys.rs` like every other key; the checks across
//! entries (unique names, no host in two apps) are here, called from `raw::cross_checks`.
//!
//! Finding the app of a request allocates nothing: it compares bytes, ignoring ASCII case, a
//! port and a trailing dot, so the proxy can call it on every request.

use std::time::Duration;

use crate::UpstreamConfig;

/// Longest app name, which also prefixes every lock key of the app.
pub const MAX_APP_NAME: usize = 32;

/// One `[[app]]` entry.
#[derive(Clone, Debug)]
pub struct AppConfig {
    /// `[a-z0-9_-]{1,32}`, unique; rules name it in `app`, and it namespaces the app's lock
    /// keys (`wiki/doc:1`).
    pub name: String,
    /// The host names that reach this app; never empty once loaded.
    pub hosts: Vec<HostPattern>,
    /// Its servers, with the `[proxy]` upstream settings.
    pub upstream: UpstreamConfig,
    /// Overrides `locks.lease_seconds` for this app's rules (a rule's own value wins).
    pub lease: Option<Duration>,
    /// Overrides `locks.grace_seconds` for this app's rules (a rule's own value wins).
    pub grace: Option<Duration>,
    /// Overrides `locks.idle_seconds` for this app's rules (a rule's own value wins).
    pub idle: Option<Duration>,
}

impl AppConfig {
    /// An entry with nothing set, filled in key by key.
    pub(crate) fn blank() -> AppConfig {
        AppConfig {
            name: String::new(),
            hosts: Vec::new(),
            upstream: UpstreamConfig::plain("", 0),
            lease: None,
            grace: None,
            idle: None,
        }
    }
}

/// A host name an app answers to, stored in lower case without a trailing dot.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HostPattern {
    /// Exactly this name.
    Exact(String),
    /// `*.example.com`: any name of exactly one more label, held here as `.example.com`. The
    /// bare `example.com` is not included, as with TLS certificates.
    Wildcard(String),
}

impl HostPattern {
    /// Reads one entry of `hosts`. Host names are letters, digits, `-` and `.`, an IPv4
    /// address, or a bracketed IPv6 address; no port.
    pub fn parse(text: &str) -> Result<HostPattern, String> {
        let lower = text.to_ascii_lowercase();
        let name = lower.strip_suffix('.').unwrap_or(&lower);
        let bad = || {
            format!(
                "{text:?} is not a host name like app.example.com or *.example.com (no scheme, \
                 no port)"
            )
        };
        if let Some(inner) = name.strip_prefix('[') {
            let ok = inner
                .strip_suffix(']')
                .is_some_and(|v6| v6.parse::<std::net::Ipv6Addr>().is_ok());
            return if ok {
                Ok(HostPattern::Exact(name.to_owned()))
            } else {
                Err(bad())
            };
        }
        let (wildcard, rest) = match name.strip_prefix("*.") {
            Some(rest) => (true, rest),
            None => (false, name),
        };
        let labels_ok = !rest.is_empty()
            && rest.len() <= 253
            && rest.split('.').all(|label| {
                !label.is_empty()
                    && label.len() <= 63
                    && !label.starts_with('-')
                    && !label.ends_with('-')
                    && label
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-')
            });
        if !labels_ok {
            return Err(bad());
        }
        Ok(if wildcard {
            HostPattern::Wildcard(format!(".{rest}"))
        } else {
            HostPattern::Exact(rest.to_owned())
        })
    }

    /// Does `host` (already without port or trailing dot) match, ignoring ASCII case?
    fn matches(&self, host: &[u8]) -> bool {
        match self {
            HostPattern::Exact(name) => host.eq_ignore_ascii_case(name.as_bytes()),
            HostPattern::Wildcard(suffix) => {
                let suffix = suffix.as_bytes();
                host.len() > suffix.len() && {
                    let (label, tail) = host.split_at(host.len() - suffix.len());
                    tail.eq_ignore_ascii_case(suffix) && !label.contains(&b'.')
                }
            }
        }
    }

    /// Can one host name match both? Exact names are compared with wildcards by matching; an
    /// exact name inside another app's wildcard is allowed, since the exact name wins.
    fn overlaps(&self, other: &HostPattern) -> bool {
        match (self, other) {
            (HostPattern::Exact(a), HostPattern::Exact(b)) => a == b,
            (HostPattern::Wildcard(a), HostPattern::Wildcard(b)) => a == b,
            _ => false,
        }
    }
}

impl std::fmt::Display for HostPattern {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HostPattern::Exact(name) => f.write_str(name),
            HostPattern::Wildcard(suffix) => write!(f, "*{suffix}"),
        }
    }
}

/// The host of a request authority (`Host` header or URI authority): without its port and a
/// trailing dot. Borrowed from the input.
pub fn host_of(authority: &[u8]) -> &[u8] {
    let host = if authority.first() == Some(&b'[') {
        match authority.iter().position(|&b| b == b']') {
            Some(end) => &authority[..=end],
            None => authority,
        }
    } else {
        match authority.iter().rposition(|&b| b == b':') {
            Some(colon) => &authority[..colon],
            None => authority,
        }
    };
    host.strip_suffix(b".").unwrap_or(host)
}

/// The app, by position in `apps`, whose hosts name `authority`: an exact name first, else a
/// wildcard. `None`: no app answers to it.
pub fn app_for(apps: &[AppConfig], authority: &[u8]) -> Option<usize> {
    let host = host_of(authority);
    let exact = |p: &HostPattern| matches!(p, HostPattern::Exact(_)) && p.matches(host);
    let wild = |p: &HostPattern| matches!(p, HostPattern::Wildcard(_)) && p.matches(host);
    apps.iter()
        .position(|app| app.hosts.iter().any(exact))
        .or_else(|| apps.iter().position(|app| app.hosts.iter().any(wild)))
}

/// Is `name` a usable app name: `[a-z0-9_-]{1,32}`?
pub fn app_name_ok(name: &str) -> Result<(), String> {
    rules::check_app_name(name)
}

/// The checks across entries: names unique, and no host name reaches two apps. Each problem
/// is reported at the later entry's key, naming the earlier one (`app[2].hosts`).
pub(crate) fn cross_checks(apps: &[AppConfig], problem: &mut impl FnMut(&str, String)) {
    for (i, app) in apps.iter().enumerate() {
        let at = i + 1;
        for (j, earlier) in apps[..i].iter().enumerate() {
            if !app.name.is_empty() && app.name == earlier.name {
                problem(
                    &format!("app[{at}].name"),
                    format!("{:?} is already the name of app[{}]", app.name, j + 1),
                );
            }
            for host in &app.hosts {
                if let Some(clash) = earlier.hosts.iter().find(|h| h.overlaps(host)) {
                    problem(
                        &format!("app[{at}].hosts"),
                        format!(
                            "{host} is already a host of app[{}] ({clash}); a host may reach only one app",
                            j + 1
                        ),
                    );
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn app(name: &str, hosts: &[&str]) -> AppConfig {
        AppConfig {
            name: name.to_owned(),
            hosts: hosts
                .iter()
                .map(|h| HostPattern::parse(h).unwrap())
                .collect(),
            ..AppConfig::blank()
        }
    }

    #[test]
    fn host_patterns_are_read_in_lower_case_without_a_trailing_dot() {
        #[rustfmt::skip]
        let cases: &[(&str, Result<&str, ()>)] = &[
            ("wiki.example.com", Ok("wiki.example.com")),
            ("Wiki.Example.COM.", Ok("wiki.example.com")),
            ("*.example.com", Ok("*.example.com")),
            ("localhost", Ok("localhost")),
            ("127.0.0.1", Ok("127.0.0.1")),
            ("[::1]", Ok("[::1]")),
            ("[::1", Err(())),
            ("[nope]", Err(())),
            ("wiki.example.com:8080", Err(())),
            ("http://wiki.example.com", Err(())),
            ("*", Err(())),
            ("*.", Err(())),
            ("a.*.example.com", Err(())),
            ("**.example.com", Err(())),
            ("", Err(())),
            ("a..b", Err(())),
            ("-a.b", Err(())),
            ("a_b.c", Err(())),
            ("wiki example", Err(())),
        ];
        for (text, expected) in cases {
            let got = HostPattern::parse(text)
                .map(|p| p.to_string())
                .map_err(|_| ());
            assert_eq!(got, expected.map(str::to_owned), "{text:?}");
        }
    }

    #[test]
    fn the_host_of_an_authority_drops_port_and_trailing_dot() {
        let cases: &[(&str, &str)] = &[
            ("wiki.example.com", "wiki.example.com"),
            ("wiki.example.com:8080", "wiki.example.com"),
            ("wiki.example.com.", "wiki.example.com"),
            ("wiki.example.com.:443", "wiki.example.com"),
            ("[::1]:8080", "[::1]"),
            ("[::1]", "[::1]"),
            ("", ""),
        ];
        for (authority, host) in cases {
            assert_eq!(
                host_of(authority.as_bytes()),
                host.as_bytes(),
                "{authority}"
            );
        }
    }

    #[test]
    fn an_authority_finds_its_app_exact_names_first() {
        let apps = [
            app("wiki", &["wiki.example.com", "docs.example.com"]),
            app("crm", &["*.example.com", "crm.test"]),
            app("v6", &["[::1]"]),
        ];
        #[rustfmt::skip]
        let cases: &[(&str, Option<usize>)] = &[
            ("wiki.example.com", Some(0)),
            ("WIKI.Example.com:8443", Some(0)),
            ("docs.example.com.", Some(0)),
            ("sales.example.com", Some(1)),
            ("crm.test:80", Some(1)),
            ("example.com", None),
            ("a.b.example.com", None),
            ("wiki.example.com.evil", None),
            ("evilwiki.example.com", Some(1)),
            ("xexample.com", None),
            ("[::1]:8080", Some(2)),
            ("", None),
            ("other.test", None),
        ];
        for (authority, expected) in cases {
            assert_eq!(
                app_for(&apps, authority.as_bytes()),
                *expected,
                "{authority}"
            );
        }
    }

    #[test]
    fn names_and_hosts_must_not_repeat_across_apps() {
        let apps = [
            app("wiki", &["wiki.example.com", "*.example.com"]),
            app("crm", &["crm.example.com", "WIKI.example.com"]),
            app("wiki", &["*.Example.com", "crm.example.com"]),
        ];
        let mut found = Vec::new();
        cross_checks(&apps, &mut |key, message| {
            found.push(format!("{key}: {message}"))
        });
        assert_eq!(
            found,
            [
                "app[2].hosts: wiki.example.com is already a host of app[1] (wiki.example.com); a host may reach only one app",
                "app[3].name: \"wiki\" is already the name of app[1]",
                "app[3].hosts: *.example.com is already a host of app[1] (*.example.com); a host may reach only one app",
                "app[3].hosts: crm.example.com is already a host of app[2] (crm.example.com); a host may reach only one app",
            ]
        );
    }
}
