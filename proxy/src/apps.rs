//! Which app a request is for, and what each app has of its own: its upstream address and
//! its lock defaults (`[[app]]`, docs/apps.md).
//!
//! With no `[[app]]` entries there is one app, `proxy.upstream`, with no name: every request
//! is for it, its host is never looked at, and its lock keys are the rules' keys as they
//! are. With entries, a request's authority picks the app (exact names first, then
//! wildcards); one that names no app is refused, never handed to another.
//!
//! This module knows the configuration and the request head, nothing of rules or locks.

use std::time::Duration;

use config::{AppConfig, Config};
use http::{header, HeaderMap, Uri};

use crate::upstream::{Upstream, UpstreamError};

/// An app by its position in [`Apps`]: `0` in the one-app case.
pub type AppId = usize;

/// One app, ready for the request path.
pub struct App {
    /// `None` in the one-app case (`proxy.upstream`).
    pub name: Option<String>,
    /// Its servers, resolved once at start so the request path never waits on DNS.
    pub upstream: Upstream,
    pub lease: Option<Duration>,
    pub grace: Option<Duration>,
    pub idle: Option<Duration>,
}

/// Every app of this proxy.
pub struct Apps {
    apps: Vec<App>,
    /// The `[[app]]` entries, whose hosts route requests; empty in the one-app case.
    routes: Vec<AppConfig>,
}

/// Why a request is for no app.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HostRefusal {
    /// Its host names no app (or it has none): `proxy.unknown_host` says 421 or 404.
    Unknown,
    /// It names two hosts (two `Host` headers, or a URI authority and a `Host` that differ):
    /// 400, since either reading could be the one a cache or the app makes.
    Ambiguous,
    /// It came over TLS on a connection whose SNI names another app (or no app): 421.
    OtherConnection,
}

/// An app whose servers cannot be used (a name that does not resolve, say).
#[derive(Debug, thiserror::Error)]
#[error("{key}: {source}")]
pub struct Unusable {
    key: String,
    #[source]
    source: UpstreamError,
}

fn upstream(key: &str, config: &config::UpstreamConfig) -> Result<Upstream, Unusable> {
    Upstream::new(config).map_err(|source| Unusable {
        key: key.to_owned(),
        source,
    })
}

impl Apps {
    /// Resolves every app's servers.
    pub fn new(config: &Config) -> Result<Apps, Unusable> {
        if config.apps.is_empty() {
            let upstream = upstream("proxy.upstream", &config.proxy.upstream)?;
            return Ok(Apps {
                apps: vec![App {
                    name: None,
                    upstream,
                    lease: None,
                    grace: None,
                    idle: None,
                }],
                routes: Vec::new(),
            });
        }
        let apps = config
            .apps
            .iter()
            .enumerate()
            .map(|(index, app)| {
                let key = format!("app[{}].upstream", index + 1);
                Ok(App {
                    name: Some(app.name.clone()),
                    upstream: upstream(&key, &app.upstream)?,
                    lease: app.lease,
                    grace: app.grace,
                    idle: app.idle,
                })
            })
            .collect::<Result<_, Unusable>>()?;
        Ok(Apps {
            apps,
            routes: config.apps.clone(),
        })
    }

    /// Is there more than the one app without a name?
    pub fn routed(&self) -> bool {
        !self.routes.is_empty()
    }

    /// Every app, in order.
    pub fn iter(&self) -> impl Iterator<Item = &App> {
        self.apps.iter()
    }

    pub fn get(&self, app: AppId) -> &App {
        // `AppId`s come only from `route` and `of_resource`, which give positions in `apps`.
        &self.apps[app.min(self.apps.len() - 1)]
    }

    pub fn name(&self, app: AppId) -> Option<&str> {
        self.get(app).name.as_deref()
    }

    /// The app a request head is for. In the one-app case that is decided without reading
    /// the head. Otherwise the authority is the URI's (HTTP/2's `:authority`, or an
    /// absolute-form target, which wins over `Host` per RFC 9112 §3.2.2) or the `Host`
    /// header's; port, case and a trailing dot do not matter. Nothing is allocated.
    pub fn route(&self, uri: &Uri, headers: &HeaderMap) -> Result<AppId, HostRefusal> {
        if self.routes.is_empty() {
            return Ok(0);
        }
        let mut hosts = headers.get_all(header::HOST).iter();
        let host = hosts.next().map(|h| h.as_bytes());
        if hosts.next().is_some() {
            return Err(HostRefusal::Ambiguous);
        }
        let authority = match (uri.authority().map(|a| a.as_str().as_bytes()), host) {
            (Some(authority), Some(host))
                if !config::host_of(authority).eq_ignore_ascii_case(config::host_of(host)) =>
            {
                return Err(HostRefusal::Ambiguous)
            }
            (Some(authority), _) => authority,
            (None, Some(host)) => host,
            (None, None) => return Err(HostRefusal::Unknown),
        };
        config::app_for(&self.routes, authority).ok_or(HostRefusal::Unknown)
    }

    /// The hook for a TLS listener: does the SNI a client sent agree with the app its request
    /// was routed to? A connection opened for one app's name must not carry requests for
    /// another, or a client certificate or a cookie scoped by name could be misused. No SNI
    /// (a client that sent none, or plain HTTP) agrees with any app; so does everything in
    /// the one-app case.
    pub fn sni_agrees(&self, sni: Option<&str>, app: AppId) -> bool {
        match sni {
            Some(sni) if self.routed() => {
                config::app_for(&self.routes, sni.as_bytes()) == Some(app)
            }
            _ => true,
        }
    }

    /// Does lock key `resource` belong to `app`? Every key does in the one-app case.
    pub fn owns(&self, app: AppId, resource: &str) -> bool {
        match self.name(app) {
            Some(name) if self.routed() => resource
                .strip_prefix(name)
                .is_some_and(|rest| rest.starts_with('/')),
            _ => true,
        }
    }

    /// The app a lock key belongs to: the one whose name starts it (`wiki/doc:1`); in the
    /// one-app case the only one.
    pub fn of_resource(&self, resource: &str) -> AppId {
        if !self.routed() {
            return 0;
        }
        resource
            .split_once('/')
            .and_then(|(name, _)| {
                self.apps
                    .iter()
                    .position(|app| app.name.as_deref() == Some(name))
            })
            .unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn apps() -> Apps {
        let text = r#"
[auth]
secret = "apps-unit-test-secret-long-enough-for-hs256"

[[app]]
name = "wiki"
hosts = ["wiki.test", "*.wiki.test"]
upstream = "http://127.0.0.1:1"
lease_seconds = 60

[[app]]
name = "crm"
hosts = ["crm.test"]
upstream = "http://127.0.0.1:2"
"#;
        let config = Config::from_toml_str(text, "t", std::path::Path::new("/"), [])
            .unwrap_or_else(|e| panic!("{e:?}"));
        Apps::new(&config).unwrap()
    }

    /// The name of the app a request went to, or why none.
    type Routed = Result<Option<&'static str>, HostRefusal>;

    fn route(apps: &Apps, uri: &str, hosts: &[&str]) -> Routed {
        let uri: Uri = uri.parse().unwrap();
        let mut headers = HeaderMap::new();
        for host in hosts {
            headers.append(header::HOST, HeaderValue::from_str(host).unwrap());
        }
        apps.route(&uri, &headers).map(|app| match apps.name(app) {
            Some("wiki") => Some("wiki"),
            Some("crm") => Some("crm"),
            _ => None,
        })
    }

    #[test]
    fn a_request_goes_to_the_app_its_authority_names_or_to_none() {
        let apps = apps();
        use HostRefusal::*;
        #[rustfmt::skip]
        let cases: &[(&str, &[&str], Routed)] = &[
            ("/", &["wiki.test"], Ok(Some("wiki"))),
            ("/", &["WIKI.test:8080"], Ok(Some("wiki"))),
            ("/", &["wiki.test."], Ok(Some("wiki"))),
            ("/", &["a.wiki.test"], Ok(Some("wiki"))),
            ("/", &["crm.test"], Ok(Some("crm"))),
            ("/", &["other.test"], Err(Unknown)),
            ("/", &[], Err(Unknown)),
            ("/", &["wiki.test", "crm.test"], Err(Ambiguous)),
            ("/", &["wiki.test", "wiki.test"], Err(Ambiguous)),
            ("http://crm.test/x", &[], Ok(Some("crm"))),
            ("http://crm.test:80/x", &["CRM.test"], Ok(Some("crm"))),
            ("http://crm.test/x", &["wiki.test"], Err(Ambiguous)),
            ("http://nobody.test/x", &[], Err(Unknown)),
        ];
        for (uri, hosts, expected) in cases {
            assert_eq!(route(&apps, uri, hosts), *expected, "{uri} {hosts:?}");
        }
    }

    #[test]
    fn apps_keep_their_names_overrides_and_lock_keys() {
        let apps = apps();
        assert!(apps.routed());
        assert_eq!(apps.name(0), Some("wiki"));
        assert_eq!(apps.get(0).lease, Some(Duration::from_secs(60)));
        assert_eq!(apps.get(1).lease, None);
        assert_eq!(apps.of_resource("crm/doc:1"), 1);
        assert_eq!(apps.of_resource("wiki/doc:1"), 0);
        assert!(apps.sni_agrees(Some("crm.test"), 1));
        assert!(!apps.sni_agrees(Some("wiki.test"), 1));
        assert!(!apps.sni_agrees(Some("unknown.test"), 1));
        assert!(apps.sni_agrees(None, 1));
    }
}
