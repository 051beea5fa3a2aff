//! From a raw TOML table to [`Config`]: environment layering, unknown-key detection, and
//! applying every declared key (see `keys.rs`) while recording every problem instead of
//! stopping at the first.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

use rules::Problems;
use toml::{Table, Value};

use crate::key::{AuthKey, Draft, Fallback, Key, REPEATED};
use crate::keys::{blank, resolve, KEYS};
use crate::{Config, Issue};

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

/// Every section, in the order of its first declared key.
pub(crate) fn sections() -> Vec<&'static str> {
    let mut sections: Vec<&'static str> = Vec::new();
    for key in KEYS.iter() {
        if !sections.contains(&key.section) {
            sections.push(key.section);
        }
    }
    sections
}

fn keys_of(section: &str) -> impl Iterator<Item = &'static Key> + '_ {
    KEYS.iter().filter(move |key| key.section == section)
}

/// Which dotted keys (`locks.lease_seconds`) were set by which environment variable, so a bad
/// value is blamed on the variable rather than on a file that may not even contain the key.
pub(crate) type EnvOrigins = HashMap<String, String>;

/// Applies `LATCH_<SECTION>_<KEY>` variables onto the table and returns where each came from.
/// Each value is read as its key's kind.
pub(crate) fn apply_env(
    table: &mut Table,
    env: impl IntoIterator<Item = (String, String)>,
    problems: &mut Problems<Issue>,
) -> EnvOrigins {
    let mut origins = EnvOrigins::new();
    let mut vars: Vec<(String, String)> = env
        .into_iter()
        .filter(|(k, _)| k.starts_with(ENV_PREFIX) && !env_reserved(k))
        .collect();
    vars.sort();
    for (name, value) in vars {
        let wanted = name.to_ascii_uppercase();
        if let Some(key) = KEYS
            .iter()
            .find(|key| key.repeated() && key.env_var() == wanted)
        {
            problems.push(Issue {
                source: "environment".into(),
                key: name,
                message: format!(
                    "[[{}]] entries are set only in the file: a variable cannot say which entry it means",
                    key.section
                ),
            });
            continue;
        }
        let Some(key) = KEYS
            .iter()
            .find(|key| !key.repeated() && key.env_var() == wanted)
        else {
            problems.push(Issue {
                source: "environment".into(),
                key: name,
                message: "not a known configuration key".into(),
            });
            continue;
        };
        let parsed = match key.kind.read_env(value) {
            Ok(v) => v,
            Err(message) => {
                problems.push(Issue {
                    source: format!("environment ({name})"),
                    key: key.dotted(),
                    message,
                });
                continue;
            }
        };
        let entry = table
            .entry(key.section.to_string())
            .or_insert_with(|| Value::Table(Table::new()));
        match entry {
            Value::Table(t) => {
                t.insert(key.name.to_string(), parsed);
                origins.insert(key.dotted(), name);
            }
            _ => problems.push(Issue {
                source: "environment".into(),
                key: name,
                message: format!("[{}] in the file is not a table", key.section),
            }),
        }
    }
    origins
}

/// Where a problem at a dotted key came from: the variable that set it, or the file.
fn issue_at(source: &str, origins: &EnvOrigins, key: &str, message: String) -> Issue {
    let source = match origins.get(key) {
        Some(var) => format!("environment ({var})"),
        None => source.to_string(),
    };
    Issue {
        source,
        key: key.to_string(),
        message,
    }
}

/// Removes `name` from `root` as a section table; anything else there is a problem.
fn take_section(
    root: &mut Table,
    name: &str,
    source: &str,
    problems: &mut Problems<Issue>,
) -> Table {
    match root.remove(name) {
        None => Table::new(),
        Some(Value::Table(t)) => t,
        Some(other) => {
            problems.push(Issue {
                source: source.to_string(),
                key: name.to_string(),
                message: format!("expected a table, found {}", other.type_str()),
            });
            Table::new()
        }
    }
}

/// Sets one key from `given`, or from its default when not given, into `draft`. A bad given
/// value is a problem, and the default applies in its place so that checks across keys see a
/// sensible value.
fn apply_key(
    key: &Key,
    given: Option<Value>,
    draft: &mut Draft<'_>,
    problem: &mut impl FnMut(&Key, String),
) {
    let was_given = given.is_some();
    let value = match (given, &key.default) {
        (Some(value), _) => value,
        (None, Fallback::Required(what)) => return problem(key, format!("required: {what}")),
        (None, _) => match key.default_value() {
            Some(value) => value,
            None => return,
        },
    };
    if let Err(message) = key.apply(draft, value) {
        problem(key, message);
        if was_given {
            if let Some(default) = key.default_value() {
                // A default that does not pass its own key is caught by the declaration tests.
                let _ = key.apply(draft, default);
            }
        }
    }
}

/// The configuration every key's default makes, with required keys left empty; relative paths
/// resolve against `base`.
pub(crate) fn defaults(base: &Path) -> Config {
    let mut draft = Draft::new(blank(), base);
    for key in KEYS.iter().filter(|key| !key.repeated()) {
        apply_key(key, None, &mut draft, &mut |_, _| {});
    }
    draft.config
}

/// Only `rules.store` from an already layered table, ignoring every other key and problem.
pub(crate) fn rule_store_only(mut root: Table, base: &Path) -> Option<crate::RuleStoreKind> {
    let mut problems = Problems::new();
    let mut section = take_section(&mut root, "rules", "", &mut problems);
    let mut draft = Draft::new(blank(), base);
    let key = keys_of("rules").find(|key| key.name == "store")?;
    apply_key(
        key,
        section.remove(key.name),
        &mut draft,
        &mut |_, message| {
            problems.push(Issue {
                source: String::new(),
                key: String::new(),
                message,
            })
        },
    );
    problems.is_empty().then_some(draft.config.rules.store)
}

pub(crate) fn convert(
    mut root: Table,
    source: &str,
    base: &Path,
    origins: &EnvOrigins,
    problems: &mut Problems<Issue>,
) -> Config {
    let sections = sections();
    let listed = sections.join(", ");
    for key in root.keys() {
        if !sections.contains(&key.as_str()) {
            problems.push(Issue {
                source: source.to_string(),
                key: key.clone(),
                message: format!("unknown section (known sections: {listed})"),
            });
        }
    }

    let mut draft = Draft::new(blank(), base);
    let mut given = HashSet::new();
    for section in sections {
        if REPEATED.contains(&section) {
            read_entries(&mut root, section, source, &mut draft, problems);
            continue;
        }
        let mut table = take_section(&mut root, section, source, problems);
        let known: Vec<&str> = keys_of(section).map(|key| key.name).collect();
        problems
            .context(|key, message| Issue {
                source: source.to_string(),
                key: format!("{section}.{key}"),
                message,
            })
            .unknown(table.keys().map(String::as_str), &known, |known| {
                format!("unknown key (known keys: {known})")
            });
        for key in keys_of(section) {
            let value = table.remove(key.name);
            if value.is_some() {
                given.insert(key.dotted());
            }
            apply_key(key, value, &mut draft, &mut |key, message| {
                problems.push(issue_at(source, origins, &key.dotted(), message))
            });
        }
    }

    let mut problems = problems.context(|key, message| issue_at(source, origins, key, message));
    cross_checks(&mut draft, &given, &mut |key, message| {
        problems.push(key, message)
    });
    draft.config
}

/// Reads every entry of the repeated section `section` (`[[app]]`) with the section's keys.
/// Problems name the entry, counting from 1 in file order: `app[2].hosts`.
fn read_entries(
    root: &mut Table,
    section: &str,
    source: &str,
    draft: &mut Draft<'_>,
    problems: &mut Problems<Issue>,
) {
    let entries = match root.remove(section) {
        None => return,
        Some(Value::Array(entries)) => entries,
        Some(other) => {
            problems.push(Issue {
                source: source.to_string(),
                key: section.to_string(),
                message: format!(
                    "expected [[{section}]] entries (an array of tables), found {}",
                    match other {
                        Value::Table(_) => "a single [table]".to_string(),
                        other => other.type_str().to_string(),
                    }
                ),
            });
            return;
        }
    };
    let known: Vec<&str> = keys_of(section).map(|key| key.name).collect();
    for (index, entry) in entries.into_iter().enumerate() {
        let at = format!("{section}[{}]", index + 1);
        let mut table = match entry {
            Value::Table(table) => table,
            other => {
                problems.push(Issue {
                    source: source.to_string(),
                    key: at,
                    message: format!("expected a table, found {}", other.type_str()),
                });
                continue;
            }
        };
        problems
            .context(|key, message| Issue {
                source: source.to_string(),
                key: format!("{at}.{key}"),
                message,
            })
            .unknown(table.keys().map(String::as_str), &known, |known| {
                format!("unknown key (known keys: {known})")
            });
        draft.app = crate::AppConfig::blank();
        for key in keys_of(section) {
            apply_key(key, table.remove(key.name), draft, &mut |key, message| {
                problems.push(Issue {
                    source: source.to_string(),
                    key: format!("{at}.{}", key.name),
                    message,
                })
            });
        }
        let app = std::mem::replace(&mut draft.app, crate::AppConfig::blank());
        draft.config.apps.push(app);
        let urls = std::mem::take(&mut draft.app_upstream);
        draft.app_upstreams.push(urls);
    }
}

/// The checks that involve more than one key.
fn cross_checks(
    draft: &mut Draft<'_>,
    given: &HashSet<String>,
    problem: &mut impl FnMut(&str, String),
) {
    // Exactly one verification key. Presence is counted before the values, so a key given
    // with the wrong type is reported once, for its type, and not a second time as missing.
    let base = draft.base;
    let AuthKey {
        secret,
        public_key_file,
        jwks_file,
        jwks_url,
        discover,
        refetch_interval,
        fetch_timeout,
        min_lifetime,
        max_lifetime,
    } = std::mem::take(&mut draft.auth_key);
    let count = [
        "auth.secret",
        "auth.public_key_file",
        "auth.jwks_file",
        "auth.jwks_url",
    ]
    .iter()
    .filter(|k| given.contains(**k))
    .count()
        + usize::from(discover);
    let remote = |location| {
        auth::KeySource::Remote(auth::RemoteKeys {
            location,
            refetch_interval,
            timeout: fetch_timeout,
            min_lifetime,
            max_lifetime,
        })
    };
    let key = match (secret, public_key_file, jwks_file, jwks_url) {
        _ if count > 1 => {
            problem(
                "auth.secret",
                "give only one of secret, public_key_file, jwks_file, jwks_url or discover = true"
                    .into(),
            );
            None
        }
        (Some(secret), None, None, None) => Some(auth::KeySource::Secret(secret.into_bytes())),
        (None, Some(file), None, None) => match std::fs::read(base.join(&file)) {
            Ok(bytes) => Some(auth::KeySource::PublicKeyPem(bytes)),
            Err(e) => {
                problem("auth.public_key_file", format!("cannot read {file:?}: {e}"));
                None
            }
        },
        (None, None, Some(file), None) => match std::fs::read_to_string(base.join(&file)) {
            Ok(text) => Some(auth::KeySource::Jwks(text)),
            Err(e) => {
                problem("auth.jwks_file", format!("cannot read {file:?}: {e}"));
                None
            }
        },
        (None, None, None, Some(url)) => Some(remote(auth::KeyLocation::JwksUrl(url))),
        (None, None, None, None) if discover => Some(remote(auth::KeyLocation::Discovery)),
        _ if count == 0 => {
            problem(
                "auth.secret",
                "one of secret, public_key_file, jwks_file, jwks_url or discover = true is \
                 required"
                    .into(),
            );
            None
        }
        _ => None,
    };
    if let Some(key) = key {
        let key_setting = match key {
            auth::KeySource::Secret(_) => "secret",
            auth::KeySource::PublicKeyPem(_) => "public_key_file",
            auth::KeySource::Jwks(_) => "jwks_file",
            auth::KeySource::Remote(auth::RemoteKeys {
                location: auth::KeyLocation::JwksUrl(_),
                ..
            }) => "jwks_url",
            auth::KeySource::Remote(_) => "discover",
        };
        let settings = &mut draft.config.auth.settings;
        settings.key = key;
        for message in auth::Verifier::check_settings(settings) {
            let setting = auth_setting_of(&message, key_setting);
            problem(&format!("auth.{setting}"), message);
        }
    }

    let trusted = std::mem::take(&mut draft.trusted);
    match auth::TrustedProxy::new(&trusted) {
        Ok(proxy) => {
            let assertion = proxy.as_ref().and_then(|p| p.assertion_header()).is_some();
            if assertion && given.contains("auth.secret") {
                problem(
                    "trusted_proxy.assertion_header",
                    "an assertion is verified with the auth proxy's public keys; set \
                     auth.jwks_url (or discover, jwks_file or public_key_file) instead of \
                     auth.secret"
                        .into(),
                );
            }
            draft.config.trusted_proxy = proxy;
        }
        Err(errors) => {
            for error in errors {
                problem(
                    &format!("trusted_proxy.{}", error.setting()),
                    error.to_string(),
                );
            }
        }
    }

    let oidc = std::mem::take(&mut draft.oidc);
    if given.iter().any(|key| key.starts_with("oidc.")) {
        draft.config.oidc = oidc_config(oidc, base, &draft.config.proxy.prefix, problem);
        let cookie = draft.config.auth.cookie.as_str();
        if cookie.starts_with("latch_oidc") {
            problem(
                "auth.cookie",
                format!(
                    "{cookie:?} is a cookie of the [oidc] sign-in; name the token cookie otherwise"
                ),
            );
        }
    }

    // `proxy.upstream`, or each `[[app]]`'s `upstream`, with the `[proxy]` upstream settings.
    // A problem of a shared setting (an unreadable CA file, say) is reported once.
    let upstream = std::mem::take(&mut draft.upstream);
    let app_upstreams = std::mem::take(&mut draft.app_upstreams);
    let mut reported = HashSet::new();
    let tls_settings = upstream.sni.is_some()
        || upstream.ca_file.is_some()
        || upstream.client_cert_file.is_some()
        || upstream.client_key_file.is_some()
        || !upstream.verify;
    let https = |urls: &[String]| {
        urls.iter().any(|u| {
            u.get(..8)
                .is_some_and(|s| s.eq_ignore_ascii_case("https://"))
        })
    };
    if tls_settings && !app_upstreams.is_empty() && !app_upstreams.iter().any(|u| https(u)) {
        problem(
            "proxy.upstream_ca_file",
            "the upstream TLS settings apply only to https:// upstreams, and no app's upstream \
             is https://"
                .into(),
        );
    }
    for (index, urls) in app_upstreams.into_iter().enumerate() {
        // The TLS settings are for the apps served over https://; a plain app ignores them.
        let plain = !https(&urls);
        let mut entry = crate::upstream::UpstreamDraft {
            urls,
            ..upstream.clone()
        };
        if plain {
            entry.sni = None;
            entry.ca_file = None;
            entry.client_cert_file = None;
            entry.client_key_file = None;
            entry.verify = true;
        }
        let built = crate::upstream::build(entry, base, &mut |setting, message| {
            let key = match setting {
                "upstream" => format!("app[{}].upstream", index + 1),
                shared => format!("proxy.{shared}"),
            };
            if reported.insert((key.clone(), message.clone())) {
                problem(&key, message);
            }
        });
        if let (Some(built), Some(app)) = (built, draft.config.apps.get_mut(index)) {
            app.upstream = built;
        }
    }
    if given.contains("proxy.upstream") || draft.config.apps.is_empty() {
        if let Some(upstream) = crate::upstream::build(upstream, base, &mut |setting, message| {
            let key = format!("proxy.{setting}");
            if reported.insert((key.clone(), message.clone())) {
                problem(&key, message);
            }
        }) {
            draft.config.proxy.upstream = upstream;
        }
    }

    let tls = std::mem::take(&mut draft.tls);
    if given.iter().any(|key| key.starts_with("tls.")) {
        draft.config.tls = tls_config(tls, base, problem);
    }

    let apps = &draft.config.apps;
    match (apps.is_empty(), given.contains("proxy.upstream")) {
        (true, false) => problem(
            "proxy.upstream",
            "required: the URL of the protected app (or [[app]] entries, one per app)".into(),
        ),
        (false, true) => problem(
            "proxy.upstream",
            "give either proxy.upstream (one app, every host) or [[app]] entries, not both; \
             move it into an [[app]] entry with its hosts"
                .into(),
        ),
        _ => {}
    }
    crate::apps::cross_checks(apps, problem);
    let locks = &draft.config.locks;
    for (index, app) in apps.iter().enumerate() {
        let lease = app.lease.unwrap_or(locks.lease);
        let grace = app.grace.unwrap_or(locks.grace);
        if (app.lease.is_some() || app.grace.is_some()) && grace >= lease {
            problem(
                &format!("app[{}].grace_seconds", index + 1),
                format!(
                    "{} must be shorter than the app's lease ({})",
                    grace.as_secs(),
                    lease.as_secs()
                ),
            );
        }
    }

    if locks.grace >= locks.lease {
        problem(
            "locks.grace_seconds",
            format!(
                "{} must be shorter than lease_seconds ({})",
                locks.grace.as_secs(),
                locks.lease.as_secs()
            ),
        );
    }

    let stash = &draft.config.stash;
    if stash.max_bytes_per_user < stash.max_bytes {
        problem(
            "stash.max_bytes_per_user",
            format!(
                "{} must be at least max_bytes ({})",
                stash.max_bytes_per_user, stash.max_bytes
            ),
        );
    }
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
        ("jwks_url ", "jwks_url"),
        ("discover ", "discover"),
        ("jwks_cache_min_seconds ", "jwks_cache_min_seconds"),
    ];
    BY_OPENING
        .iter()
        .find(|(opening, _)| message.starts_with(opening))
        .map_or(key_setting, |(_, setting)| setting)
}

/// `[oidc]` judged whole: every missing or unusable setting is reported, and the section is
/// on only when all of them are usable.
fn oidc_config(
    draft: crate::key::OidcDraft,
    base: &Path,
    prefix: &str,
    problem: &mut impl FnMut(&str, String),
) -> Option<crate::OidcConfig> {
    let mut ok = true;
    let mut required = |key: &str, value: Option<String>, what: &str| match value {
        Some(value) if !value.trim().is_empty() => Some(value),
        Some(_) => {
            problem(key, format!("{what} is empty"));
            None
        }
        None => {
            problem(key, format!("required in [oidc]: {what}"));
            None
        }
    };
    let issuer = required("oidc.issuer", draft.issuer, "the provider's issuer URL");
    let client_id = required("oidc.client_id", draft.client_id, "the client id");
    if let Some(issuer) = &issuer {
        let location = auth::RemoteKeys::at(auth::KeyLocation::Discovery);
        if let Err(errors) = auth::Provider::new(&location, Some(issuer), &[]) {
            for error in errors {
                problem("oidc.issuer", error.to_string());
            }
            ok = false;
        }
    }
    let mut secret = |name: &str, value: Option<String>, file: Option<String>| {
        match (value, file) {
            (Some(_), Some(_)) => {
                problem(
                    &format!("oidc.{name}"),
                    format!("give only one of {name} and {name}_file"),
                );
                None
            }
            (Some(value), None) => Some(value),
            (None, Some(file)) => match std::fs::read_to_string(base.join(&file)) {
                // A file written by `echo` or an editor ends with a newline that is no part
                // of the secret.
                Ok(text) => Some(text.trim_end_matches(['\r', '\n']).to_owned()),
                Err(e) => {
                    problem(
                        &format!("oidc.{name}_file"),
                        format!("cannot read {file:?}: {e}"),
                    );
                    None
                }
            },
            (None, None) => {
                problem(
                    &format!("oidc.{name}"),
                    format!("required in [oidc]: {name} or {name}_file"),
                );
                None
            }
        }
    };
    let client_secret = secret(
        "client_secret",
        draft.client_secret,
        draft.client_secret_file,
    );
    let cookie_secret = secret(
        "cookie_secret",
        draft.cookie_secret,
        draft.cookie_secret_file,
    );
    if client_secret.as_deref().is_some_and(str::is_empty) {
        problem("oidc.client_secret", "the client secret is empty".into());
        ok = false;
    }
    if let Some(cookie_secret) = &cookie_secret {
        if let Err(error) = auth::Sealer::new(cookie_secret.as_bytes()) {
            problem("oidc.cookie_secret", error.to_string());
            ok = false;
        }
    }
    if !draft.scopes.iter().any(|scope| scope == "openid") {
        problem(
            "oidc.scopes",
            "must include \"openid\": without it the provider issues no ID token".into(),
        );
        ok = false;
    }
    if let Some(bad) = draft.scopes.iter().find(|scope| {
        scope.is_empty()
            || !scope
                .bytes()
                .all(|b| b.is_ascii_graphic() && b != b'"' && b != b'\\')
    }) {
        problem("oidc.scopes", format!("{bad:?} is not a scope name"));
        ok = false;
    }
    if let Some(url) = &draft.redirect_url {
        if let Err(message) = redirect_url_ok(url, prefix) {
            problem("oidc.redirect_url", message);
            ok = false;
        }
    }
    if let Some(url) = &draft.post_logout_redirect_uri {
        if let Err(message) = absolute_url_ok(url) {
            problem("oidc.post_logout_redirect_uri", message);
            ok = false;
        }
    }
    let session_lifetime = (!draft.session.is_zero()).then_some(draft.session);
    match (issuer, client_id, client_secret, cookie_secret) {
        (Some(issuer), Some(client_id), Some(client_secret), Some(cookie_secret)) if ok => {
            Some(crate::OidcConfig {
                issuer,
                client_id,
                client_secret,
                scopes: draft.scopes,
                auth_params: draft.auth_params,
                redirect_url: draft.redirect_url,
                post_logout_redirect_uri: draft.post_logout_redirect_uri,
                cookie_secret: cookie_secret.into_bytes(),
                session_lifetime,
                renew: draft.renew,
            })
        }
        _ => None,
    }
}

/// The callback URL must be absolute and name this proxy's callback endpoint, or the provider
/// would send the code somewhere that cannot finish the sign-in.
fn redirect_url_ok(url: &str, prefix: &str) -> Result<(), String> {
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))
        .ok_or("must be an absolute http(s) URL")?;
    let path = rest.find('/').map_or("", |at| &rest[at..]);
    let expected = format!("{prefix}/callback");
    if rest.starts_with('/') || path != expected {
        return Err(format!(
            "must be this proxy's public URL of {expected} (with no query), like \
             https://app.example.com{expected}"
        ));
    }
    Ok(())
}

/// An absolute http(s) URL with a host, as a provider compares registered URLs: no fragment,
/// nothing a header could not carry.
fn absolute_url_ok(url: &str) -> Result<(), String> {
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))
        .ok_or("must be an absolute http(s) URL")?;
    if rest.is_empty() || rest.starts_with('/') {
        return Err("must name a host, like https://app.example.com/".into());
    }
    if url.contains('#') || !url.bytes().all(|b| b.is_ascii_graphic()) {
        return Err("must have no fragment, spaces or control characters".into());
    }
    Ok(())
}

/// `[tls]` judged whole: a listener, at least one certificate, and every certificate file
/// readable, parsed, its key matching and not expired. Every problem is reported.
fn tls_config(
    draft: crate::key::TlsDraft,
    base: &Path,
    problem: &mut impl FnMut(&str, String),
) -> Option<crate::TlsConfig> {
    let mut ok = true;
    let Some(listen) = draft.listen else {
        problem(
            "tls.listen",
            "required when any other [tls] key is set: the HTTPS listener's address".into(),
        );
        return None;
    };
    let default_certificate = match (draft.cert_file, draft.key_file) {
        (Some(cert), Some(key)) => Some((resolve(base, &cert), resolve(base, &key))),
        (Some(_), None) => {
            problem("tls.key_file", "required with cert_file".into());
            ok = false;
            None
        }
        (None, Some(_)) => {
            problem("tls.cert_file", "required with key_file".into());
            ok = false;
            None
        }
        (None, None) => None,
    };
    let certificates: Vec<PathBuf> = draft
        .certificates
        .iter()
        .map(|file| resolve(base, file))
        .collect();
    if ok && default_certificate.is_none() && certificates.is_empty() {
        problem(
            "tls.cert_file",
            "the HTTPS listener needs a certificate: cert_file and key_file, or certificates"
                .into(),
        );
        ok = false;
    }
    if let Some((cert, key)) = &default_certificate {
        if let Err(why) = crate::load_certificate(cert, key) {
            problem("tls.cert_file", why);
            ok = false;
        }
    }
    for file in &certificates {
        match crate::load_certificate(file, file) {
            Ok(loaded) if loaded.names.is_empty() => {
                problem(
                    "tls.certificates",
                    format!(
                        "{}: the certificate has no DNS name in its subjectAltName, so no SNI \
                         can choose it",
                        file.display()
                    ),
                );
                ok = false;
            }
            Ok(_) => {}
            Err(why) => {
                problem("tls.certificates", why);
                ok = false;
            }
        }
    }
    if draft.redirect_listen == Some(listen) {
        problem("tls.redirect_listen", "must differ from tls.listen".into());
        ok = false;
    }
    ok.then(|| crate::TlsConfig {
        listen,
        default_certificate,
        certificates,
        redirect_listen: draft.redirect_listen,
        hsts: (!draft.hsts.is_zero()).then_some(draft.hsts),
        reload: (!draft.reload.is_zero()).then_some(draft.reload),
    })
}
