//! How the Redis lock store is configured: the URL forms it accepts and the settings that are
//! not part of a Redis URL.
//!
//! Accepted URLs:
//! - `redis://[user:password@]host:port[/db]` and `rediss://…` (TLS) for one Redis server;
//! - `redis+cluster://[user:password@]host:port,host:port,…` and `rediss+cluster://…` for Redis
//!   Cluster, listing any subset of its nodes to discover the rest from.
//!
//! One query parameter is Latch's own and is removed before the URL reaches the Redis client:
//! `key_prefix` (default `latch`), so several deployments can share one Redis.
//!
//! This module only parses; it opens no connection.

use std::time::Duration;

use crate::redis_keys::check_prefix;

/// The key prefix used when the URL names none.
pub const DEFAULT_KEY_PREFIX: &str = "latch";

/// The query parameter that sets the key prefix.
const PREFIX_PARAM: &str = "key_prefix";

/// Why a Redis lock store could not be set up from its configuration. Messages never contain
/// the password from the URL.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RedisOpenError {
    #[error("{url}: {reason}")]
    InvalidUrl { url: String, reason: String },
    #[error("key prefix {prefix:?} {reason}")]
    InvalidPrefix {
        prefix: String,
        reason: &'static str,
    },
}

/// Settings for [`RedisLockStore`](crate::RedisLockStore).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedisOptions {
    /// The Redis URL without Latch's own parameters.
    pub url: String,
    /// Namespace for every key and the event channel.
    pub key_prefix: String,
    /// Bound on connecting and on each command, so background work never hangs on a dead
    /// server. Request paths apply their own, usually shorter, timeout on top. Default 1 s.
    pub timeout: Duration,
    /// How often the reaper looks for lapsed leases; an expiry is announced at most this much
    /// (plus a round trip) after the deadline. Default 100 ms.
    pub reap_interval: Duration,
}

impl RedisOptions {
    /// Options for `url` with default settings, taking `key_prefix` out of its query.
    pub fn from_url(url: &str) -> Result<Self, RedisOpenError> {
        let (url, prefix) = take_query_param(url, PREFIX_PARAM);
        let key_prefix = prefix.unwrap_or_else(|| DEFAULT_KEY_PREFIX.to_owned());
        check_prefix(&key_prefix).map_err(|reason| RedisOpenError::InvalidPrefix {
            prefix: key_prefix.clone(),
            reason,
        })?;
        Ok(Self {
            url,
            key_prefix,
            timeout: Duration::from_secs(1),
            reap_interval: Duration::from_millis(100),
        })
    }

    /// The URL with any password replaced, for messages and logs.
    pub fn redacted_url(&self) -> String {
        redact(&self.url)
    }
}

/// Where the lock store connects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Target {
    /// One server (or a proxy in front of several).
    Single(String),
    /// Redis Cluster seed nodes, each as a `redis://` or `rediss://` URL.
    Cluster(Vec<String>),
}

impl Target {
    pub fn parse(url: &str) -> Result<Self, RedisOpenError> {
        let invalid = |reason: &str| RedisOpenError::InvalidUrl {
            url: redact(url),
            reason: reason.to_owned(),
        };
        let (scheme, rest) = url
            .split_once("://")
            .ok_or_else(|| invalid("not a URL (expected redis://host:port)"))?;
        let node_scheme = match scheme {
            "redis" | "rediss" => return Ok(Self::Single(url.to_owned())),
            "redis+cluster" => "redis",
            "rediss+cluster" => "rediss",
            _ => {
                return Err(invalid(
                    "the scheme must be redis, rediss, redis+cluster or rediss+cluster",
                ))
            }
        };
        let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
        let (authority, tail) = rest.split_at(authority_end);
        let (userinfo, hosts) = match authority.rsplit_once('@') {
            Some((userinfo, hosts)) => (Some(userinfo), hosts),
            None => (None, authority),
        };
        let mut nodes = Vec::new();
        for host in hosts.split(',') {
            if host.is_empty() {
                return Err(invalid(
                    "a cluster URL lists host:port pairs separated by ','",
                ));
            }
            let node = match userinfo {
                Some(userinfo) => format!("{node_scheme}://{userinfo}@{host}{tail}"),
                None => format!("{node_scheme}://{host}{tail}"),
            };
            nodes.push(node);
        }
        Ok(Self::Cluster(nodes))
    }

    pub fn uses_tls(&self) -> bool {
        match self {
            Self::Single(url) => url.starts_with("rediss://"),
            Self::Cluster(nodes) => nodes.iter().any(|n| n.starts_with("rediss://")),
        }
    }
}

/// Removes every `name=value` pair from the URL's query, returning the URL and the last value.
fn take_query_param(url: &str, name: &str) -> (String, Option<String>) {
    let (base, fragment) = match url.split_once('#') {
        Some((base, fragment)) => (base, Some(fragment)),
        None => (url, None),
    };
    let Some((path, query)) = base.split_once('?') else {
        return (url.to_owned(), None);
    };
    let mut value = None;
    let kept: Vec<&str> = query
        .split('&')
        .filter(|pair| {
            let key = pair.split_once('=').map_or(*pair, |(k, _)| k);
            if key == name {
                value = Some(pair.split_once('=').map_or("", |(_, v)| v).to_owned());
                false
            } else {
                !pair.is_empty()
            }
        })
        .collect();
    let mut out = path.to_owned();
    if !kept.is_empty() {
        out.push('?');
        out.push_str(&kept.join("&"));
    }
    if let Some(fragment) = fragment {
        out.push('#');
        out.push_str(fragment);
    }
    (out, value)
}

/// The URL with the password (if any) replaced by `***`.
pub(crate) fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    match authority.rsplit_once('@') {
        Some((userinfo, hosts)) => {
            let user = userinfo.split_once(':').map_or(userinfo, |(u, _)| u);
            let masked = if userinfo.contains(':') || user.is_empty() {
                format!("{user}:***")
            } else {
                // A lone user-info part is masked too: some clients read it as a password.
                "***".to_owned()
            };
            format!("{scheme}://{masked}@{hosts}{tail}")
        }
        None => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_prefix_comes_out_of_the_query() {
        let o = RedisOptions::from_url("redis://127.0.0.1:6379/0").unwrap();
        assert_eq!(o.url, "redis://127.0.0.1:6379/0");
        assert_eq!(o.key_prefix, "latch");

        let o = RedisOptions::from_url("redis://h:1/2?key_prefix=app1&protocol=resp3").unwrap();
        assert_eq!(o.url, "redis://h:1/2?protocol=resp3");
        assert_eq!(o.key_prefix, "app1");

        let o = RedisOptions::from_url("rediss://h:1/?key_prefix=app2#insecure").unwrap();
        assert_eq!(o.url, "rediss://h:1/#insecure");
        assert_eq!(o.key_prefix, "app2");
    }

    #[test]
    fn bad_prefixes_are_refused() {
        let err = RedisOptions::from_url("redis://h:1/?key_prefix=a{b}").unwrap_err();
        assert!(matches!(err, RedisOpenError::InvalidPrefix { .. }), "{err}");
        let err = RedisOptions::from_url("redis://h:1/?key_prefix=").unwrap_err();
        assert!(matches!(err, RedisOpenError::InvalidPrefix { .. }), "{err}");
    }

    #[test]
    fn single_and_cluster_targets() {
        assert_eq!(
            Target::parse("redis://h:1/0").unwrap(),
            Target::Single("redis://h:1/0".into())
        );
        assert_eq!(
            Target::parse("redis+cluster://a:1,b:2,c:3").unwrap(),
            Target::Cluster(vec![
                "redis://a:1".into(),
                "redis://b:2".into(),
                "redis://c:3".into()
            ])
        );
        assert_eq!(
            Target::parse("rediss+cluster://u:p@a:1,b:2/#insecure").unwrap(),
            Target::Cluster(vec![
                "rediss://u:p@a:1/#insecure".into(),
                "rediss://u:p@b:2/#insecure".into()
            ])
        );
        assert!(Target::parse("rediss+cluster://a:1").unwrap().uses_tls());
        assert!(!Target::parse("redis://a:1").unwrap().uses_tls());
    }

    #[test]
    fn bad_urls_name_the_problem_without_the_password() {
        let err = Target::parse("http://u:secret@h:1").unwrap_err();
        assert!(!err.to_string().contains("secret"), "{err}");
        assert!(err.to_string().contains("scheme"), "{err}");
        let err = Target::parse("redis+cluster://u:secret@a:1,,b:2").unwrap_err();
        assert!(!err.to_string().contains("secret"), "{err}");
        assert!(Target::parse("localhost:6379").is_err());
    }

    #[test]
    fn redaction_hides_passwords_only() {
        assert_eq!(redact("redis://u:pw@h:1/0"), "redis://u:***@h:1/0");
        assert_eq!(redact("redis://:pw@h:1"), "redis://:***@h:1");
        assert_eq!(redact("redis://pw@h:1"), "redis://***@h:1");
        assert_eq!(redact("redis://h:1/0"), "redis://h:1/0");
        assert_eq!(
            redact("redis+cluster://u:pw@a:1,b:2"),
            "redis+cluster://u:***@a:1,b:2"
        );
    }
}
