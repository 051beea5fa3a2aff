//! From a raw TOML table to [`Config`]: environment layering, unknown-key detection and typed
//! extraction that records every problem instead of stopping at the first.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use toml::{Table, Value};

use crate::{
    AdminConfig, AuthConfig, Config, ControlPlaneConfig, Issue, LockStoreKind, LocksConfig,
    OnStoreError, ProxyConfig, Require, RuleStoreKind, RulesConfig, Upstream,
};

/// Environment variables starting with this override config keys: `LATCH_AUTH_SECRET`.
pub const ENV_PREFIX: &str = "LATCH_";

/// Environment variables under [`ENV_PREFIX`] that are not config keys.
const ENV_RESERVED: &[&str] = &["LATCH_LOG"];

/// Every section and its keys. A key not listed here is an error, not silently ignored.
const SCHEMA: &[(&str, &[&str])] = &[
    (
        "proxy",
        &["listen", "upstream", "prefix", "threads", "instance"],
    ),
    (
        "auth",
        &[
            "algorithms",
            "secret",
            "public_key_file",
            "jwks_file",
            "cookie",
            "issuer",
            "audience",
            "leeway_seconds",
            "user_claim",
            "name_claim",
            "roles_claim",
            "login_url",
            "require",
        ],
    ),
    (
        "locks",
        &[
            "store",
            "lease_seconds",
            "grace_seconds",
            "on_store_error",
            "store_timeout_ms",
        ],
    ),
    ("rules", &["store", "poll_seconds"]),
    ("control_plane", &["listen", "admin_roles"]),
    ("admin", &["listen"]),
];

/// Applies `LATCH_<SECTION>_<KEY>` variables onto the table. Values parse as TOML when they can
/// (`30`, `true`, `["a","b"]`) and are taken as plain strings otherwise.
pub(crate) fn apply_env(
    table: &mut Table,
    env: impl IntoIterator<Item = (String, String)>,
    issues: &mut Vec<Issue>,
) {
    let mut vars: Vec<(String, String)> = env
        .into_iter()
        .filter(|(k, _)| k.starts_with(ENV_PREFIX) && !ENV_RESERVED.contains(&k.as_str()))
        .collect();
    vars.sort();
    for (name, value) in vars {
        let rest = name[ENV_PREFIX.len()..].to_ascii_lowercase();
        // Longest section name first so that `control_plane_listen` is not read as `control`.
        let found = SCHEMA
            .iter()
            .filter_map(|(section, keys)| {
                let key = rest.strip_prefix(section)?.strip_prefix('_')?;
                keys.contains(&key).then_some((*section, key.to_string()))
            })
            .max_by_key(|(s, _)| s.len());
        let Some((section, key)) = found else {
            issues.push(Issue {
                source: "environment".into(),
                key: name.clone(),
                message: "not a known configuration key".into(),
            });
            continue;
        };
        let parsed = format!("v = {value}")
            .parse::<Table>()
            .ok()
            .and_then(|mut t| t.remove("v"))
            .unwrap_or(Value::String(value));
        let entry = table
            .entry(section.to_string())
            .or_insert_with(|| Value::Table(Table::new()));
        match entry {
            Value::Table(t) => {
                t.insert(key, parsed);
            }
            _ => issues.push(Issue {
                source: "environment".into(),
                key: name,
                message: format!("[{section}] in the file is not a table"),
            }),
        }
    }
}

/// Typed access to one section, recording a problem for every bad value.
struct Section<'a> {
    name: &'static str,
    table: Table,
    source: &'a str,
    issues: &'a mut Vec<Issue>,
}

impl Section<'_> {
    fn issue(&mut self, key: &str, message: impl Into<String>) {
        self.issues.push(Issue {
            source: self.source.to_string(),
            key: format!("{}.{}", self.name, key),
            message: message.into(),
        });
    }

    fn string(&mut self, key: &str) -> Option<String> {
        match self.table.remove(key)? {
            Value::String(s) => Some(s),
            other => {
                self.issue(key, format!("expected a string, found {}", other.type_str()));
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
        let fallback: SocketAddr = default.parse().unwrap_or(SocketAddr::from(([127, 0, 0, 1], 0)));
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

fn take_section<'a>(
    root: &mut Table,
    name: &'static str,
    source: &'a str,
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
    let known = SCHEMA
        .iter()
        .find(|(s, _)| *s == name)
        .map(|(_, k)| *k)
        .unwrap_or(&[]);
    for key in table.keys() {
        if !known.contains(&key.as_str()) {
            issues.push(Issue {
                source: source.to_string(),
                key: format!("{name}.{key}"),
                message: format!("unknown key (known keys: {})", known.join(", ")),
            });
        }
    }
    Section {
        name,
        table,
        source,
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
        return Err("https upstreams are not supported; put the app on plain HTTP behind the proxy".into());
    } else {
        return Err(format!("{s:?} must be an http:// URL such as http://127.0.0.1:3000"));
    };
    let authority = rest.trim_end_matches('/');
    if authority.contains('/') || authority.contains('?') || authority.contains('@') {
        return Err(format!("{s:?} must name only a scheme, host and port"));
    }
    let (host, port) = match authority.rsplit_once(':') {
        Some((h, p)) if !h.ends_with(']') || h.starts_with('[') => {
            let port = p
                .parse::<u16>()
                .map_err(|_| format!("{s:?} has an invalid port"))?;
            (h.trim_start_matches('[').trim_end_matches(']'), port)
        }
        _ => (authority, 80),
    };
    if host.is_empty() {
        return Err(format!("{s:?} has no host"));
    }
    Ok(Upstream {
        host: host.to_string(),
        port,
    })
}

pub(crate) fn convert(
    mut root: Table,
    source: &str,
    base: &Path,
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
    let mut s = take_section(&mut root, "proxy", source, issues);
    let listen = s.socket("listen", "127.0.0.1:8080");
    let upstream = match s.string("upstream") {
        None => {
            s.issue("upstream", "required: the URL of the protected app");
            None
        }
        Some(u) => parse_upstream(&u).map_err(|m| s.issue("upstream", m)).ok(),
    };
    let prefix = s.string("prefix").unwrap_or_else(|| "/__latch".into());
    if !prefix.starts_with('/')
        || prefix.len() < 2
        || prefix.ends_with('/')
        || !prefix[1..]
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_./".contains(&b))
    {
        s.issue(
            "prefix",
            format!("{prefix:?} must be a path like /__latch (no trailing slash, plain characters)"),
        );
    }
    let threads = s.integer("threads", 1, 64).unwrap_or(2) as usize;
    let instance = s.string("instance").unwrap_or_else(default_instance);

    // [auth]
    let mut s = take_section(&mut root, "auth", source, issues);
    let defaults = auth::AuthSettings::default();
    let algorithms = s.strings("algorithms").unwrap_or(defaults.algorithms.clone());
    let secret = s.string("secret");
    let public_key_file = s.string("public_key_file");
    let jwks_file = s.string("jwks_file");
    let key = match (secret, public_key_file, jwks_file) {
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
        (None, None, None) => {
            s.issue(
                "secret",
                "one of secret, public_key_file or jwks_file is required",
            );
            None
        }
        _ => {
            s.issue(
                "secret",
                "give only one of secret, public_key_file or jwks_file",
            );
            None
        }
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
    let leeway_seconds = s.integer("leeway_seconds", 0, 600).unwrap_or(defaults.leeway_seconds);
    let user_claim = s.string("user_claim").unwrap_or(defaults.user_claim.clone());
    let name_claim = s.string("name_claim").unwrap_or(defaults.name_claim.clone());
    let roles_claim = s.string("roles_claim").unwrap_or(defaults.roles_claim.clone());
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
        for message in auth::Verifier::check_settings(settings) {
            s.issue(
                match settings.key {
                    auth::KeySource::Secret(_) => "secret",
                    auth::KeySource::PublicKeyPem(_) => "public_key_file",
                    auth::KeySource::Jwks(_) => "jwks_file",
                },
                message,
            );
        }
    }

    // [locks]
    let mut s = take_section(&mut root, "locks", source, issues);
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

    // [rules]
    let mut s = take_section(&mut root, "rules", source, issues);
    let rule_store = match s.string("store") {
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
    };
    let poll = s.integer("poll_seconds", 1, 3_600).unwrap_or(2);

    // [control_plane]
    let mut s = take_section(&mut root, "control_plane", source, issues);
    let cp_listen = s.socket("listen", "127.0.0.1:9090");
    let admin_roles = s
        .strings("admin_roles")
        .unwrap_or_else(|| vec!["admin".into()]);
    if admin_roles.is_empty() || admin_roles.iter().any(|r| r.is_empty()) {
        s.issue("admin_roles", "must list at least one non-empty role");
    }

    // [admin]
    let mut s = take_section(&mut root, "admin", source, issues);
    let admin_listen = s.socket("listen", "127.0.0.1:9100");

    Some(Config {
        proxy: ProxyConfig {
            listen,
            upstream: upstream?,
            prefix,
            threads,
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
        },
        rules: RulesConfig {
            store: rule_store,
            poll: Duration::from_secs(poll),
        },
        control_plane: ControlPlaneConfig {
            listen: cp_listen,
            admin_roles,
        },
        admin: AdminConfig {
            listen: admin_listen,
        },
    })
}
