//! From a raw TOML table to [`Config`]: environment layering, unknown-key detection and typed
//! extraction that records every problem instead of stopping at the first.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use toml::{Table, Value};

use crate::{
    AdminConfig, AuthConfig, Config, ControlPlaneConfig, HeaderCase, Issue, LockStoreKind,
    LocksConfig, OnStoreError, PathParameters, ProxyConfig, Require, RuleStoreKind, RulesConfig,
    Upstream, DEFAULT_HEADER_TIMEOUT, DEFAULT_KEEPALIVE_TIMEOUT,
    DEFAULT_MAX_CONNECTIONS_PER_CLIENT, DEFAULT_MAX_HEADER_BYTES, DEFAULT_UPSTREAM_TIMEOUT,
};

/// Environment variables starting with this override config keys: `LATCH_AUTH_SECRET`.
pub const ENV_PREFIX: &str = "LATCH_";

/// Environment variables under [`ENV_PREFIX`] that are not config keys.
const ENV_RESERVED: &[&str] = &["LATCH_LOG"];

/// Is `name` an environment variable under [`ENV_PREFIX`] that is not a config key? Besides
/// [`ENV_RESERVED`], Kubernetes injects `LATCH_SERVICE_*` and `LATCH_PORT*` into every pod of a
/// namespace with a Service named `latch`; refusing those would stop the proxy from starting.
fn env_reserved(name: &str) -> bool {
    ENV_RESERVED.contains(&name)
        || name == "LATCH_PORT"
        || name.starts_with("LATCH_PORT_")
        || name.starts_with("LATCH_SERVICE_")
}

/// What kind of value a key takes. The environment layer needs it: an environment variable is
/// always text, and only the key knows whether `1` means a number or the string "1".
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Text,
    Integer,
    /// A list of strings: TOML array syntax, or comma-separated in the environment.
    List,
}

/// Every section and its keys. A key not listed here is an error, not silently ignored.
const SCHEMA: &[(&str, &[(&str, Kind)])] = &[
    (
        "proxy",
        &[
            ("listen", Kind::Text),
            ("upstream", Kind::Text),
            ("prefix", Kind::Text),
            ("threads", Kind::Integer),
            ("instance", Kind::Text),
            ("inject_at", Kind::Text),
            ("header_case", Kind::Text),
            ("upstream_timeout_seconds", Kind::Integer),
            ("path_parameters", Kind::Text),
            ("public_scheme", Kind::Text),
            ("header_timeout_seconds", Kind::Integer),
            ("keepalive_timeout_seconds", Kind::Integer),
            ("max_header_bytes", Kind::Integer),
            ("max_connections_per_client", Kind::Integer),
        ],
    ),
    (
        "auth",
        &[
            ("algorithms", Kind::List),
            ("secret", Kind::Text),
            ("public_key_file", Kind::Text),
            ("jwks_file", Kind::Text),
            ("cookie", Kind::Text),
            ("issuer", Kind::Text),
            ("audience", Kind::List),
            ("leeway_seconds", Kind::Integer),
            ("user_claim", Kind::Text),
            ("name_claim", Kind::Text),
            ("roles_claim", Kind::Text),
            ("login_url", Kind::Text),
            ("require", Kind::Text),
        ],
    ),
    (
        "locks",
        &[
            ("store", Kind::Text),
            ("lease_seconds", Kind::Integer),
            ("grace_seconds", Kind::Integer),
            ("on_store_error", Kind::Text),
            ("store_timeout_ms", Kind::Integer),
            ("max_per_user", Kind::Integer),
            ("claims_per_minute", Kind::Integer),
        ],
    ),
    (
        "rules",
        &[("store", Kind::Text), ("poll_seconds", Kind::Integer)],
    ),
    (
        "control_plane",
        &[
            ("listen", Kind::Text),
            ("admin_roles", Kind::List),
            ("public_scheme", Kind::Text),
        ],
    ),
    ("admin", &[("listen", Kind::Text)]),
];

fn known_keys(section: &str) -> &'static [(&'static str, Kind)] {
    SCHEMA
        .iter()
        .find(|(s, _)| *s == section)
        .map(|(_, keys)| *keys)
        .unwrap_or(&[])
}

/// Which dotted keys (`locks.lease_seconds`) were set by which environment variable, so a bad
/// value is blamed on the variable rather than on a file that may not even contain the key.
pub(crate) type EnvOrigins = std::collections::HashMap<String, String>;

/// An environment variable's text as the value its key expects. Text keys take the text
/// verbatim (a secret or an instance name may look like a number); integers that do not parse
/// stay text, so validation reports them with the key's own message.
fn env_value(kind: Kind, raw: String) -> Result<Value, String> {
    match kind {
        Kind::Text => Ok(Value::String(raw)),
        Kind::Integer => Ok(raw
            .trim()
            .parse::<i64>()
            .map(Value::Integer)
            .unwrap_or(Value::String(raw))),
        Kind::List if raw.trim_start().starts_with('[') => format!("v = {raw}")
            .parse::<Table>()
            .ok()
            .and_then(|mut t| t.remove("v"))
            .ok_or_else(|| format!("{raw:?} is not a TOML list such as [\"a\", \"b\"]")),
        Kind::List => Ok(Value::Array(
            raw.split(',')
                .map(|item| Value::String(item.trim().to_string()))
                .collect(),
        )),
    }
}

/// Applies `LATCH_<SECTION>_<KEY>` variables onto the table and returns where each came from.
/// Each value is read as its key's [`Kind`].
pub(crate) fn apply_env(
    table: &mut Table,
    env: impl IntoIterator<Item = (String, String)>,
    issues: &mut Vec<Issue>,
) -> EnvOrigins {
    let mut origins = EnvOrigins::new();
    let mut vars: Vec<(String, String)> = env
        .into_iter()
        .filter(|(k, _)| k.starts_with(ENV_PREFIX) && !env_reserved(k))
        .collect();
    vars.sort();
    for (name, value) in vars {
        let rest = name[ENV_PREFIX.len()..].to_ascii_lowercase();
        // Longest section name first so that `control_plane_listen` is not read as `control`.
        let found = SCHEMA
            .iter()
            .filter_map(|(section, keys)| {
                let key = rest.strip_prefix(section)?.strip_prefix('_')?;
                let (key, kind) = keys.iter().find(|(k, _)| *k == key)?;
                Some((*section, *key, *kind))
            })
            .max_by_key(|(s, _, _)| s.len());
        let Some((section, key, kind)) = found else {
            issues.push(Issue {
                source: "environment".into(),
                key: name.clone(),
                message: "not a known configuration key".into(),
            });
            continue;
        };
        let parsed = match env_value(kind, value) {
            Ok(v) => v,
            Err(message) => {
                issues.push(Issue {
                    source: format!("environment ({name})"),
                    key: format!("{section}.{key}"),
                    message,
                });
                continue;
            }
        };
        let entry = table
            .entry(section.to_string())
            .or_insert_with(|| Value::Table(Table::new()));
        match entry {
            Value::Table(t) => {
                t.insert(key.to_string(), parsed);
                origins.insert(format!("{section}.{key}"), name);
            }
            _ => issues.push(Issue {
                source: "environment".into(),
                key: name,
                message: format!("[{section}] in the file is not a table"),
            }),
        }
    }
    origins
}

/// Typed access to one section, recording a problem for every bad value.
struct Section<'a> {
    name: &'static str,
    table: Table,
    source: &'a str,
    origins: &'a EnvOrigins,
    issues: &'a mut Vec<Issue>,
}

impl Section<'_> {
    fn issue(&mut self, key: &str, message: impl Into<String>) {
        let key = format!("{}.{}", self.name, key);
        let source = match self.origins.get(&key) {
            Some(var) => format!("environment ({var})"),
            None => self.source.to_string(),
        };
        self.issues.push(Issue {
            source,
            key,
            message: message.into(),
        });
    }

    fn has(&self, key: &str) -> bool {
        self.table.contains_key(key)
    }

    fn string(&mut self, key: &str) -> Option<String> {
        match self.table.remove(key)? {
            Value::String(s) => Some(s),
            other => {
                self.issue(
                    key,
                    format!("expected a string, found {}", other.type_str()),
                );
                None
            }
        }
    }

    fn integer(&mut self, key: &str, min: i64, max: i64) -> Option<u64> {
        match self.table.remove(key)? {
            Value::Integer(i) if (min..=max).contains(&i) => Some(i as u64),
            Value::Integer(i) => {
                self.issue(key, format!("{i} is out of range {min}..={max}"));
                None
            }
            other => {
                self.issue(
                    key,
                    format!("expected an integer, found {}", other.type_str()),
                );
                None
            }
        }
    }

    /// A list of strings; a single string is accepted as a one-element list.
    fn strings(&mut self, key: &str) -> Option<Vec<String>> {
        match self.table.remove(key)? {
            Value::String(s) => Some(vec![s]),
            Value::Array(items) => {
                let mut out = Vec::with_capacity(items.len());
                for item in items {
                    match item {
                        Value::String(s) => out.push(s),
                        other => {
                            self.issue(
                                key,
                                format!("expected strings, found {}", other.type_str()),
                            );
                            return None;
                        }
                    }
                }
                Some(out)
            }
            other => {
                self.issue(
                    key,
                    format!("expected a list of strings, found {}", other.type_str()),
                );
                None
            }
        }
    }

    fn socket(&mut self, key: &str, default: &str) -> SocketAddr {
        let fallback: SocketAddr = default
            .parse()
            .unwrap_or(SocketAddr::from(([127, 0, 0, 1], 0)));
        match self.string(key) {
            None => fallback,
            Some(s) => s.parse().unwrap_or_else(|_| {
                self.issue(key, format!("{s:?} is not an address like 127.0.0.1:8080"));
                fallback
            }),
        }
    }
}

pub(crate) fn default_instance() -> String {
    let host = std::fs::read_to_string("/etc/hostname")
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "latch".into());
    format!("{host}-{}", std::process::id())
}

/// `public_scheme`: how browsers reach a listener, which their `Origin` headers must name.
fn read_public_scheme(s: &mut Section<'_>) -> &'static str {
    match s.string("public_scheme").as_deref() {
        None | Some("http") => "http",
        Some("https") => "https",
        Some(other) => {
            s.issue(
                "public_scheme",
                format!("{other:?} is not one of \"http\", \"https\""),
            );
            "http"
        }
    }
}

fn take_section<'a>(
    root: &mut Table,
    name: &'static str,
    source: &'a str,
    origins: &'a EnvOrigins,
    issues: &'a mut Vec<Issue>,
) -> Section<'a> {
    let table = match root.remove(name) {
        None => Table::new(),
        Some(Value::Table(t)) => t,
        Some(other) => {
            issues.push(Issue {
                source: source.to_string(),
                key: name.to_string(),
                message: format!("expected a table, found {}", other.type_str()),
            });
            Table::new()
        }
    };
    let known = known_keys(name);
    for key in table.keys() {
        if !known.iter().any(|(k, _)| k == key) {
            let names: Vec<&str> = known.iter().map(|(k, _)| *k).collect();
            issues.push(Issue {
                source: source.to_string(),
                key: format!("{name}.{key}"),
                message: format!("unknown key (known keys: {})", names.join(", ")),
            });
        }
    }
    Section {
        name,
        table,
        source,
        origins,
        issues,
    }
}

fn resolve(base: &Path, p: &str) -> PathBuf {
    let path = Path::new(p);
    if path.is_absolute() {
        path.to_path_buf()
    } else {
        base.join(path)
    }
}

fn parse_upstream(s: &str) -> Result<Upstream, String> {
    let rest = if let Some(r) = s.strip_prefix("http://") {
        r
    } else if s.starts_with("https://") {
        return Err(
            "https upstreams are not supported; put the app on plain HTTP behind the proxy".into(),
        );
    } else {
        return Err(format!(
            "{s:?} must be an http:// URL such as http://127.0.0.1:3000"
        ));
    };
    let authority = rest.trim_end_matches('/');
    if authority.contains('/') || authority.contains('?') || authority.contains('@') {
        return Err(format!("{s:?} must name only a scheme, host and port"));
    }
    let port_of = |p: &str| {
        p.parse::<u16>()
            .map_err(|_| format!("{s:?} has an invalid port"))
    };
    // An IPv6 literal is bracketed and carries colons of its own; anything else splits at
    // its only colon, if any.
    let (host, port) = if let Some(bracketed) = authority.strip_prefix('[') {
        let (host, after) = bracketed
            .split_once(']')
            .ok_or_else(|| format!("{s:?} has an unclosed '[' in its host"))?;
        match after {
            "" => (host, 80),
            after => match after.strip_prefix(':') {
                Some(p) => (host, port_of(p)?),
                None => return Err(format!("{s:?} has text after its bracketed host")),
            },
        }
    } else {
        match authority.split_once(':') {
            Some((host, p)) if !p.contains(':') => (host, port_of(p)?),
            Some(_) => {
                return Err(format!(
                    "{s:?} has an IPv6 host without brackets; write http://[::1]:3000"
                ))
            }
            None => (authority, 80),
        }
    };
    if host.is_empty() {
        return Err(format!("{s:?} has no host"));
    }
    Ok(Upstream {
        host: host.to_string(),
        port,
    })
}

/// The `[auth]` key an `auth` settings problem is about. The auth crate reports problems as
/// sentences that open with the setting they concern ("algorithms is empty", "leeway_seconds is
/// 9999", "user_claim \"\" is not ..."); anything else is about the verification key.
fn auth_setting_of(message: &str, key_setting: &'static str) -> &'static str {
    const BY_OPENING: &[(&str, &str)] = &[
        ("algorithms ", "algorithms"),
        ("algorithm ", "algorithms"),
        ("unknown algorithm ", "algorithms"),
        ("leeway_seconds ", "leeway_seconds"),
        ("user_claim ", "user_claim"),
        ("name_claim ", "name_claim"),
        ("roles_claim ", "roles_claim"),
        ("issuer ", "issuer"),
        ("audience ", "audience"),
    ];
    BY_OPENING
        .iter()
        .find(|(opening, _)| message.starts_with(opening))
        .map_or(key_setting, |(_, setting)| setting)
}

/// `rules.store`: a MongoDB URL, or a file path relative to the config's directory.
/// A count where `0` means "no limit".
fn nonzero(n: u64) -> Option<u32> {
    u32::try_from(n).ok().filter(|n| *n > 0)
}

fn rule_store(s: &mut Section<'_>, base: &Path) -> RuleStoreKind {
    match s.string("store") {
        None => RuleStoreKind::File(resolve(base, "rules.toml")),
        Some(url) if url.starts_with("mongodb://") || url.starts_with("mongodb+srv://") => {
            RuleStoreKind::Mongo(url)
        }
        Some(path) if path.contains("://") => {
            s.issue(
                "store",
                format!("{path:?} is neither a file path nor a mongodb:// URL"),
            );
            RuleStoreKind::File(PathBuf::from(path))
        }
        Some(path) => RuleStoreKind::File(resolve(base, &path)),
    }
}

/// Only `rules.store` from an already layered table, ignoring every other key and problem.
pub(crate) fn rule_store_only(mut root: Table, base: &Path) -> Option<RuleStoreKind> {
    let origins = EnvOrigins::new();
    let mut issues = Vec::new();
    let mut s = take_section(&mut root, "rules", "", &origins, &mut issues);
    let store = rule_store(&mut s, base);
    let usable = !issues
        .iter()
        .any(|i| i.key == "rules" || i.key == "rules.store");
    usable.then_some(store)
}

pub(crate) fn convert(
    mut root: Table,
    source: &str,
    base: &Path,
    origins: &EnvOrigins,
    issues: &mut Vec<Issue>,
) -> Option<Config> {
    let sections: Vec<&str> = SCHEMA.iter().map(|(s, _)| *s).collect();
    for key in root.keys() {
        if !sections.contains(&key.as_str()) {
            issues.push(Issue {
                source: source.to_string(),
                key: key.clone(),
                message: format!("unknown section (known sections: {})", sections.join(", ")),
            });
        }
    }

    // [proxy]
    let mut s = take_section(&mut root, "proxy", source, origins, issues);
    let listen = s.socket("listen", "127.0.0.1:8080");
    let upstream_given = s.has("upstream");
    let upstream = match s.string("upstream") {
        None if !upstream_given => {
            s.issue("upstream", "required: the URL of the protected app");
            None
        }
        None => None,
        Some(u) => parse_upstream(&u).map_err(|m| s.issue("upstream", m)).ok(),
    };
    let prefix = s.string("prefix").unwrap_or_else(|| "/__latch".into());
    // Requests are matched against the prefix after normalization, so a prefix that is not
    // itself normalized (`//x`, `/a/../b`) could never be reached.
    let normalized = rules::normalize_path(&prefix).is_ok_and(|p| p == prefix.as_str());
    if !normalized
        || prefix.len() < 2
        || prefix.ends_with('/')
        || !prefix[1..]
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_./".contains(&b))
    {
        s.issue(
            "prefix",
            format!(
                "{prefix:?} must be a path like /__latch (plain characters, no trailing slash, \
                 no empty, '.' or '..' segments)"
            ),
        );
    }
    let threads = s.integer("threads", 1, 64).unwrap_or(2) as usize;
    let instance = s.string("instance").unwrap_or_else(default_instance);
    let inject_at = match s.string("inject_at").as_deref() {
        None | Some("head") => inject::Placement::Head,
        Some("body_end") => inject::Placement::BodyEnd,
        Some(other) => {
            s.issue(
                "inject_at",
                format!("{other:?} is not one of \"head\", \"body_end\""),
            );
            inject::Placement::Head
        }
    };
    let header_case = match s.string("header_case").as_deref() {
        None | Some("canonical") => HeaderCase::Canonical,
        Some("preserve") => HeaderCase::Preserve,
        Some(other) => {
            s.issue(
                "header_case",
                format!("{other:?} is not one of \"canonical\", \"preserve\""),
            );
            HeaderCase::Canonical
        }
    };

    let path_parameters = match s.string("path_parameters").as_deref() {
        None | Some("strip") => PathParameters::Strip,
        Some("reject") => PathParameters::Reject,
        Some(other) => {
            s.issue(
                "path_parameters",
                format!("{other:?} is not one of \"strip\", \"reject\""),
            );
            PathParameters::Strip
        }
    };

    let public_scheme = read_public_scheme(&mut s);

    let upstream_timeout = match s.integer("upstream_timeout_seconds", 0, 86_400) {
        Some(0) => None,
        Some(seconds) => Some(Duration::from_secs(seconds)),
        None => Some(DEFAULT_UPSTREAM_TIMEOUT),
    };
    let header_timeout = s
        .integer("header_timeout_seconds", 1, 3_600)
        .map_or(DEFAULT_HEADER_TIMEOUT, Duration::from_secs);
    let keepalive_timeout = s
        .integer("keepalive_timeout_seconds", 1, 86_400)
        .map_or(DEFAULT_KEEPALIVE_TIMEOUT, Duration::from_secs);
    // Pingora refuses a head longer than 1 MiB on its own, with a 400; below that, Latch's bound
    // is the one that applies.
    let max_header_bytes = s
        .integer("max_header_bytes", 1_024, 1_048_576)
        .map_or(DEFAULT_MAX_HEADER_BYTES, |n| n as usize);
    let max_connections_per_client = match s.integer("max_connections_per_client", 0, 1_000_000) {
        Some(0) => None,
        Some(n) => Some(n as u32),
        None => Some(DEFAULT_MAX_CONNECTIONS_PER_CLIENT),
    };

    // [auth]
    let mut s = take_section(&mut root, "auth", source, origins, issues);
    let defaults = auth::AuthSettings::default();
    let algorithms = s
        .strings("algorithms")
        .unwrap_or(defaults.algorithms.clone());
    // Counted before reading, so a key given with the wrong type is reported once, for its
    // type, and not a second time as missing.
    let given = ["secret", "public_key_file", "jwks_file"]
        .iter()
        .filter(|k| s.has(k))
        .count();
    let secret = s.string("secret");
    let public_key_file = s.string("public_key_file");
    let jwks_file = s.string("jwks_file");
    let key = match (secret, public_key_file, jwks_file) {
        _ if given > 1 => {
            s.issue(
                "secret",
                "give only one of secret, public_key_file or jwks_file",
            );
            None
        }
        (Some(secret), None, None) => Some(auth::KeySource::Secret(secret.into_bytes())),
        (None, Some(file), None) => match std::fs::read(resolve(base, &file)) {
            Ok(bytes) => Some(auth::KeySource::PublicKeyPem(bytes)),
            Err(e) => {
                s.issue("public_key_file", format!("cannot read {file:?}: {e}"));
                None
            }
        },
        (None, None, Some(file)) => match std::fs::read_to_string(resolve(base, &file)) {
            Ok(text) => Some(auth::KeySource::Jwks(text)),
            Err(e) => {
                s.issue("jwks_file", format!("cannot read {file:?}: {e}"));
                None
            }
        },
        _ if given == 0 => {
            s.issue(
                "secret",
                "one of secret, public_key_file or jwks_file is required",
            );
            None
        }
        _ => None,
    };
    let cookie = s.string("cookie").unwrap_or_else(|| "latch_token".into());
    if cookie.is_empty()
        || !cookie
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
    {
        s.issue("cookie", format!("{cookie:?} is not a valid cookie name"));
    }
    let issuer = s.string("issuer");
    let audience = s.strings("audience").unwrap_or_default();
    let leeway_seconds = s
        .integer("leeway_seconds", 0, 600)
        .unwrap_or(defaults.leeway_seconds);
    let user_claim = s
        .string("user_claim")
        .unwrap_or(defaults.user_claim.clone());
    let name_claim = s
        .string("name_claim")
        .unwrap_or(defaults.name_claim.clone());
    let roles_claim = s
        .string("roles_claim")
        .unwrap_or(defaults.roles_claim.clone());
    let login_url = s.string("login_url");
    if let Some(url) = &login_url {
        if !(url.starts_with("https://") || url.starts_with("http://") || url.starts_with('/')) {
            s.issue("login_url", "must be an absolute http(s) URL or a path");
        }
    }
    let require = match s.string("require").as_deref() {
        None | Some("protected") => Require::Protected,
        Some("all") => Require::All,
        Some(other) => {
            s.issue(
                "require",
                format!("{other:?} is not one of \"protected\", \"all\""),
            );
            Require::Protected
        }
    };
    let settings = key.map(|key| auth::AuthSettings {
        algorithms,
        key,
        issuer,
        audience,
        leeway_seconds,
        user_claim,
        name_claim,
        roles_claim,
    });
    if let Some(settings) = &settings {
        let key_setting = match settings.key {
            auth::KeySource::Secret(_) => "secret",
            auth::KeySource::PublicKeyPem(_) => "public_key_file",
            auth::KeySource::Jwks(_) => "jwks_file",
        };
        for message in auth::Verifier::check_settings(settings) {
            s.issue(auth_setting_of(&message, key_setting), message);
        }
    }

    // [locks]
    let mut s = take_section(&mut root, "locks", source, origins, issues);
    let store = match s.string("store").as_deref() {
        None | Some("memory") => LockStoreKind::Memory,
        Some(url)
            if url.starts_with("redis://")
                || url.starts_with("rediss://")
                || url.starts_with("redis+cluster://")
                || url.starts_with("rediss+cluster://") =>
        {
            LockStoreKind::Redis(url.to_string())
        }
        Some(other) => {
            s.issue(
                "store",
                format!("{other:?} is neither \"memory\" nor a redis:// URL"),
            );
            LockStoreKind::Memory
        }
    };
    let lease = s.integer("lease_seconds", 5, 86_400).unwrap_or(30);
    let grace = s.integer("grace_seconds", 0, 3_600).unwrap_or(10);
    if grace >= lease {
        s.issue(
            "grace_seconds",
            format!("{grace} must be shorter than lease_seconds ({lease})"),
        );
    }
    let on_store_error = match s.string("on_store_error").as_deref() {
        None | Some("deny") => OnStoreError::Deny,
        Some("allow") => OnStoreError::Allow,
        Some(other) => {
            s.issue(
                "on_store_error",
                format!("{other:?} is not one of \"deny\", \"allow\""),
            );
            OnStoreError::Deny
        }
    };
    let store_timeout = s.integer("store_timeout_ms", 10, 1_000).unwrap_or(500);
    // 0 is no cap. At most 1,000: the Redis store checks that many aged index entries when a
    // user reaches the cap.
    let max_per_user = s.integer("max_per_user", 0, 1_000).unwrap_or(50);
    let claims_per_minute = s.integer("claims_per_minute", 0, 60_000).unwrap_or(120);

    // [rules]
    let mut s = take_section(&mut root, "rules", source, origins, issues);
    let rule_store = rule_store(&mut s, base);
    let poll = s.integer("poll_seconds", 1, 3_600).unwrap_or(2);

    // [control_plane]
    let mut s = take_section(&mut root, "control_plane", source, origins, issues);
    let cp_listen = s.socket("listen", "127.0.0.1:9090");
    let admin_roles = s
        .strings("admin_roles")
        .unwrap_or_else(|| vec!["admin".into()]);
    if admin_roles.is_empty() || admin_roles.iter().any(|r| r.is_empty()) {
        s.issue("admin_roles", "must list at least one non-empty role");
    }
    let cp_public_scheme = read_public_scheme(&mut s);

    // [admin]
    let mut s = take_section(&mut root, "admin", source, origins, issues);
    let admin_listen = s.socket("listen", "127.0.0.1:9100");

    Some(Config {
        proxy: ProxyConfig {
            listen,
            upstream: upstream?,
            prefix,
            threads,
            inject_at,
            header_case,
            upstream_timeout,
            path_parameters,
            public_scheme,
            header_timeout,
            keepalive_timeout,
            max_header_bytes,
            max_connections_per_client,
            instance,
        },
        auth: AuthConfig {
            settings: settings?,
            cookie,
            login_url,
            require,
        },
        locks: LocksConfig {
            store,
            lease: Duration::from_secs(lease),
            grace: Duration::from_secs(grace),
            on_store_error,
            store_timeout: Duration::from_millis(store_timeout),
            max_per_user: nonzero(max_per_user),
            claims_per_minute: nonzero(claims_per_minute),
        },
        rules: RulesConfig {
            store: rule_store,
            poll: Duration::from_secs(poll),
        },
        control_plane: ControlPlaneConfig {
            listen: cp_listen,
            admin_roles,
            public_scheme: cp_public_scheme,
        },
        admin: AdminConfig {
            listen: admin_listen,
        },
    })
}
