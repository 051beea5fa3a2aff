//! `Config::from_toml_str` against tables of good and bad configurations: every key's
//! validation, unknown keys and sections, and how the environment layers over the file.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use config::{Config, HeaderCase, Issue, LockStoreKind, OnStoreError, Require, RuleStoreKind};

const SECRET: &str = "config-test-secret-long-enough-for-hs256";
const SOURCE: &str = "latch.toml";

fn base() -> &'static Path {
    Path::new("/etc/latch")
}

/// The smallest valid file, with `extra` appended (later tables may repeat a section header
/// only when the minimal part does not have it, so tests add whole sections).
fn minimal(extra: &str) -> String {
    format!(
        "[proxy]\nupstream = \"http://127.0.0.1:3000\"\n\n[auth]\nsecret = \"{SECRET}\"\n\n{extra}"
    )
}

fn load_env(text: &str, env: &[(&str, &str)]) -> Result<Config, Vec<Issue>> {
    Config::from_toml_str(
        text,
        SOURCE,
        base(),
        env.iter().map(|(k, v)| (k.to_string(), v.to_string())),
    )
}

fn load(text: &str) -> Result<Config, Vec<Issue>> {
    load_env(text, &[])
}

fn good(text: &str) -> Config {
    load(text).unwrap_or_else(|issues| panic!("expected a valid config, got {issues:#?}\n{text}"))
}

fn issues(text: &str, env: &[(&str, &str)]) -> Vec<Issue> {
    match load_env(text, env) {
        Ok(_) => panic!("expected problems with:\n{text}\n{env:?}"),
        Err(issues) => issues,
    }
}

/// The file must be refused with exactly one problem, at `key`, whose message mentions `says`.
fn bad(text: &str, key: &str, says: &str) {
    let found = issues(text, &[]);
    assert_eq!(
        found.len(),
        1,
        "expected one problem at {key}, got {found:#?}\n{text}"
    );
    let issue = &found[0];
    assert_eq!(issue.key, key, "{issue}\n{text}");
    assert_eq!(issue.source, SOURCE, "{issue}");
    assert!(
        issue.message.contains(says),
        "{key}: {:?} does not mention {says:?}",
        issue.message
    );
}

/// A `[proxy]` section with `lines` besides the required upstream.
fn proxy(lines: &str) -> String {
    format!(
        "[proxy]\nupstream = \"http://127.0.0.1:3000\"\n{lines}\n\n[auth]\nsecret = \"{SECRET}\"\n"
    )
}

/// An `[auth]` section made only of `lines` (no secret unless given).
fn auth_only(lines: &str) -> String {
    format!("[proxy]\nupstream = \"http://127.0.0.1:3000\"\n\n[auth]\n{lines}\n")
}

/// An `[auth]` section with the test secret and `lines`.
fn auth(lines: &str) -> String {
    auth_only(&format!("secret = \"{SECRET}\"\n{lines}"))
}

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

#[test]
fn defaults_fill_every_optional_key() {
    let c = good(&minimal(""));
    assert_eq!(c.proxy.listen, addr("127.0.0.1:8080"));
    assert_eq!(c.proxy.upstream.servers[0].host, "127.0.0.1");
    assert_eq!(c.proxy.upstream.servers[0].port, 3000);
    assert_eq!(c.proxy.prefix, "/__latch");
    assert_eq!(c.proxy.threads, 2);
    assert!(!c.proxy.instance.is_empty());
    assert_eq!(c.proxy.inject_at, inject::Placement::Head);
    assert_eq!(c.proxy.header_case, HeaderCase::Canonical);
    assert_eq!(c.proxy.upstream_timeout, Some(Duration::from_secs(300)));
    assert_eq!(c.proxy.header_timeout, Duration::from_secs(10));
    assert_eq!(c.proxy.keepalive_timeout, Duration::from_secs(60));
    assert_eq!(c.proxy.max_header_bytes, 64 * 1024);
    assert_eq!(c.proxy.max_connections_per_client, Some(256));
    assert_eq!(c.auth.cookie, "latch_token");
    assert_eq!(c.auth.login_url, None);
    assert_eq!(c.auth.require, Require::Protected);
    assert_eq!(c.auth.settings.algorithms, vec!["HS256".to_string()]);
    assert_eq!(
        c.auth.settings.key,
        auth::KeySource::Secret(SECRET.as_bytes().to_vec())
    );
    assert_eq!(c.auth.settings.leeway_seconds, 30);
    assert_eq!(c.auth.settings.user_claim, "sub");
    assert_eq!(c.auth.settings.name_claim, "name");
    assert_eq!(c.auth.settings.roles_claim, "roles");
    assert_eq!(c.auth.settings.issuer, None);
    assert!(c.auth.settings.audience.is_empty());
    assert_eq!(c.locks.store, LockStoreKind::Memory);
    assert_eq!(c.locks.lease, Duration::from_secs(30));
    assert_eq!(c.locks.grace, Duration::from_secs(10));
    assert_eq!(c.locks.on_store_error, OnStoreError::Deny);
    assert_eq!(c.locks.store_timeout, Duration::from_millis(500));
    assert_eq!(c.locks.max_per_user, Some(50));
    assert_eq!(c.locks.claims_per_minute, Some(120));
    assert_eq!(
        c.rules.store,
        RuleStoreKind::File(PathBuf::from("/etc/latch/rules.toml"))
    );
    assert_eq!(c.rules.poll, Duration::from_secs(2));
    assert_eq!(c.control_plane.listen, addr("127.0.0.1:9090"));
    assert_eq!(c.control_plane.admin_roles, vec!["admin".to_string()]);
    assert_eq!(c.admin.listen, addr("127.0.0.1:9100"));
}

#[test]
fn every_key_is_read_from_the_file() {
    let c = good(&format!(
        r#"
[proxy]
listen = "0.0.0.0:80"
upstream = "http://app.internal:8081/"
prefix = "/_gate/v1"
threads = 8
instance = "edge-1"
inject_at = "body_end"
header_case = "preserve"
upstream_timeout_seconds = 0
header_timeout_seconds = 3
keepalive_timeout_seconds = 86400
max_header_bytes = 1048576
max_connections_per_client = 0

[auth]
algorithms = ["HS256", "HS512"]
secret = "{SECRET}"
cookie = "sso.token-1"
issuer = "https://idp.example"
audience = ["latch", "api"]
leeway_seconds = 0
user_claim = "preferred_username"
name_claim = "profile.display"
roles_claim = "realm_access.roles"
login_url = "https://idp.example/login?return_to={{url}}"
require = "all"

[locks]
store = "redis://127.0.0.1:6379/0"
lease_seconds = 60
grace_seconds = 0
on_store_error = "allow"
store_timeout_ms = 1000
max_per_user = 0
claims_per_minute = 30

[rules]
store = "mongodb://127.0.0.1:27017/latch"
poll_seconds = 3600

[control_plane]
listen = "[::1]:9090"
admin_roles = ["ops", "admin"]

[admin]
listen = "127.0.0.1:0"
"#
    ));
    assert_eq!(c.proxy.listen, addr("0.0.0.0:80"));
    assert_eq!(c.proxy.upstream.servers[0].host, "app.internal");
    assert_eq!(c.proxy.upstream.servers[0].port, 8081);
    assert_eq!(c.proxy.prefix, "/_gate/v1");
    assert_eq!(c.proxy.threads, 8);
    assert_eq!(c.proxy.instance, "edge-1");
    assert_eq!(c.proxy.inject_at, inject::Placement::BodyEnd);
    assert_eq!(c.proxy.header_case, HeaderCase::Preserve);
    assert_eq!(c.proxy.upstream_timeout, None);
    assert_eq!(c.proxy.header_timeout, Duration::from_secs(3));
    assert_eq!(c.proxy.keepalive_timeout, Duration::from_secs(86_400));
    assert_eq!(c.proxy.max_header_bytes, 1_048_576);
    assert_eq!(c.proxy.max_connections_per_client, None);
    assert_eq!(c.auth.settings.algorithms, vec!["HS256", "HS512"]);
    assert_eq!(c.auth.cookie, "sso.token-1");
    assert_eq!(
        c.auth.settings.issuer.as_deref(),
        Some("https://idp.example")
    );
    assert_eq!(c.auth.settings.audience, vec!["latch", "api"]);
    assert_eq!(c.auth.settings.leeway_seconds, 0);
    assert_eq!(c.auth.settings.user_claim, "preferred_username");
    assert_eq!(c.auth.settings.name_claim, "profile.display");
    assert_eq!(c.auth.settings.roles_claim, "realm_access.roles");
    assert_eq!(
        c.auth.login_url.as_deref(),
        Some("https://idp.example/login?return_to={url}")
    );
    assert_eq!(c.auth.require, Require::All);
    assert_eq!(
        c.locks.store,
        LockStoreKind::Redis("redis://127.0.0.1:6379/0".into())
    );
    assert_eq!(c.locks.lease, Duration::from_secs(60));
    assert_eq!(c.locks.grace, Duration::ZERO);
    assert_eq!(c.locks.on_store_error, OnStoreError::Allow);
    assert_eq!(c.locks.store_timeout, Duration::from_millis(1000));
    assert_eq!(c.locks.max_per_user, None);
    assert_eq!(c.locks.claims_per_minute, Some(30));
    assert_eq!(
        c.rules.store,
        RuleStoreKind::Mongo("mongodb://127.0.0.1:27017/latch".into())
    );
    assert_eq!(c.rules.poll, Duration::from_secs(3600));
    assert_eq!(c.control_plane.listen, addr("[::1]:9090"));
    assert_eq!(c.control_plane.admin_roles, vec!["ops", "admin"]);
    assert_eq!(c.admin.listen, addr("127.0.0.1:0"));
}

#[test]
fn good_values_table() {
    let cases: &[&str] = &[
        // upstream spellings
        "[proxy]\nupstream = \"http://127.0.0.1\"",
        "[proxy]\nupstream = \"http://localhost:3000/\"",
        "[proxy]\nupstream = \"http://[::1]:3000\"",
        "[proxy]\nupstream = \"http://[::1]\"",
        // prefixes
        "[proxy]\nupstream = \"http://a:1\"\nprefix = \"/x\"",
        "[proxy]\nupstream = \"http://a:1\"\nprefix = \"/_latch-2.v1/sub_dir\"",
        // threads bounds
        "[proxy]\nupstream = \"http://a:1\"\nthreads = 1",
        "[proxy]\nupstream = \"http://a:1\"\nthreads = 64",
        // connection bounds
        "[proxy]\nupstream = \"http://a:1\"\nheader_timeout_seconds = 1",
        "[proxy]\nupstream = \"http://a:1\"\nheader_timeout_seconds = 3600",
        "[proxy]\nupstream = \"http://a:1\"\nkeepalive_timeout_seconds = 1",
        "[proxy]\nupstream = \"http://a:1\"\nmax_header_bytes = 1024",
        "[proxy]\nupstream = \"http://a:1\"\nmax_connections_per_client = 1",
        "[proxy]\nupstream = \"http://a:1\"\nmax_connections_per_client = 1000000",
    ];
    for proxy_section in cases {
        good(&format!(
            "{proxy_section}\n\n[auth]\nsecret = \"{SECRET}\"\n"
        ));
    }
    let auth_cases: &[&str] = &[
        "algorithms = \"HS384\"",
        "algorithms = [\"HS256\", \"HS384\", \"HS512\"]",
        "audience = \"latch\"",
        "leeway_seconds = 600",
        "login_url = \"/login?next={url}\"",
        "login_url = \"http://idp.local/login\"",
        "require = \"protected\"",
        "cookie = \"__Host-latch\"",
    ];
    for lines in auth_cases {
        good(&auth(lines));
    }
    let other: &[&str] = &[
        "[locks]\nlease_seconds = 5\ngrace_seconds = 4",
        "[locks]\nlease_seconds = 86400\ngrace_seconds = 3600",
        "[locks]\nstore = \"rediss://cache:6380\"",
        "[locks]\nstore = \"redis+cluster://a:1,b:2\"",
        "[locks]\nstore_timeout_ms = 10",
        "[locks]\non_store_error = \"deny\"",
        "[rules]\nstore = \"mongodb+srv://cluster.example/latch\"",
        "[rules]\npoll_seconds = 1",
        "[control_plane]\nadmin_roles = \"root\"",
        "[admin]\nlisten = \"[::]:9100\"",
    ];
    for extra in other {
        good(&minimal(extra));
    }
}

#[test]
fn upstream_addresses_are_usable_for_ipv6() {
    let c = good(&minimal("").replace("127.0.0.1:3000", "[::1]:3000"));
    assert_eq!(c.proxy.upstream.servers[0].host, "::1");
    assert_eq!(c.proxy.upstream.servers[0].address(), "[::1]:3000");
    let c = good(&minimal("").replace("127.0.0.1:3000", "[::1]"));
    assert_eq!(c.proxy.upstream.servers[0].port, 80);
    assert_eq!(c.proxy.upstream.servers[0].address(), "[::1]:80");
    let c = good(&minimal(""));
    assert_eq!(c.proxy.upstream.servers[0].address(), "127.0.0.1:3000");
}

#[test]
fn bad_proxy_values() {
    let cases: &[(&str, &str, &str)] = &[
        ("listen = \"nowhere\"", "proxy.listen", "nowhere"),
        ("listen = \"127.0.0.1\"", "proxy.listen", "127.0.0.1"),
        ("listen = \"127.0.0.1:99999\"", "proxy.listen", "99999"),
        ("listen = 8080", "proxy.listen", "integer"),
        ("prefix = \"\"", "proxy.prefix", "\"\""),
        ("prefix = \"/\"", "proxy.prefix", "\"/\""),
        ("prefix = \"latch\"", "proxy.prefix", "latch"),
        ("prefix = \"/latch/\"", "proxy.prefix", "/latch/"),
        ("prefix = \"/la tch\"", "proxy.prefix", "/la tch"),
        ("prefix = \"/la%74ch\"", "proxy.prefix", "/la%74ch"),
        ("prefix = \"//latch\"", "proxy.prefix", "//latch"),
        ("prefix = \"/a//b\"", "proxy.prefix", "/a//b"),
        ("prefix = \"/a/../b\"", "proxy.prefix", "/a/../b"),
        ("prefix = \"/./latch\"", "proxy.prefix", "/./latch"),
        ("prefix = \"/latch/..\"", "proxy.prefix", "/latch/.."),
        ("prefix = 5", "proxy.prefix", "integer"),
        ("threads = 0", "proxy.threads", "0"),
        ("threads = 65", "proxy.threads", "65"),
        ("threads = -1", "proxy.threads", "-1"),
        ("threads = \"2\"", "proxy.threads", "string"),
        ("threads = 2.5", "proxy.threads", "float"),
        ("instance = 7", "proxy.instance", "integer"),
        (
            "inject_at = \"body\"",
            "proxy.inject_at",
            "\"head\", \"body_end\"",
        ),
        (
            "header_case = \"lower\"",
            "proxy.header_case",
            "\"canonical\", \"preserve\"",
        ),
        ("header_case = true", "proxy.header_case", "boolean"),
        (
            "upstream_timeout_seconds = -1",
            "proxy.upstream_timeout_seconds",
            "-1",
        ),
        (
            "upstream_timeout_seconds = 86401",
            "proxy.upstream_timeout_seconds",
            "86401",
        ),
        (
            "header_timeout_seconds = 0",
            "proxy.header_timeout_seconds",
            "0 is out of range 1..=3600",
        ),
        (
            "header_timeout_seconds = 3601",
            "proxy.header_timeout_seconds",
            "3601",
        ),
        (
            "header_timeout_seconds = \"10s\"",
            "proxy.header_timeout_seconds",
            "string",
        ),
        (
            "keepalive_timeout_seconds = 0",
            "proxy.keepalive_timeout_seconds",
            "0 is out of range 1..=86400",
        ),
        (
            "keepalive_timeout_seconds = 86401",
            "proxy.keepalive_timeout_seconds",
            "86401",
        ),
        (
            "max_header_bytes = 1023",
            "proxy.max_header_bytes",
            "1023 is out of range 1024..=1048576",
        ),
        (
            "max_header_bytes = 1048577",
            "proxy.max_header_bytes",
            "1048577",
        ),
        ("max_header_bytes = 3.5", "proxy.max_header_bytes", "float"),
        (
            "max_connections_per_client = -1",
            "proxy.max_connections_per_client",
            "-1 is out of range 0..=1000000",
        ),
        (
            "max_connections_per_client = 1000001",
            "proxy.max_connections_per_client",
            "1000001",
        ),
        ("colour = \"blue\"", "proxy.colour", "unknown key"),
    ];
    for (lines, key, says) in cases {
        bad(&proxy(lines), key, says);
    }
}

#[test]
fn bad_upstreams() {
    let cases: &[(&str, &str)] = &[
        ("ftp://example.com", "http://"),
        ("https://", "no host"),
        ("http://example.com:0", "port"),
        ("example.com:3000", "http://"),
        ("http://", "no host"),
        ("http://:3000", "no host"),
        ("http://example.com/app", "only"),
        ("http://example.com?x=1", "only"),
        ("http://user@example.com", "only"),
        ("http://example.com:99999", "port"),
        ("http://example.com:http", "port"),
        ("http://example.com:", "port"),
        ("http://[::1", "host"),
    ];
    for (upstream, says) in cases {
        let text = format!("[proxy]\nupstream = \"{upstream}\"\n\n[auth]\nsecret = \"{SECRET}\"\n");
        bad(&text, "proxy.upstream", says);
    }
    bad(
        &format!("[proxy]\n\n[auth]\nsecret = \"{SECRET}\"\n"),
        "proxy.upstream",
        "required",
    );
    bad(
        &format!("[proxy]\nupstream = 3000\n\n[auth]\nsecret = \"{SECRET}\"\n"),
        "proxy.upstream",
        "integer",
    );
}

#[test]
fn bad_auth_values() {
    let cases: &[(&str, &str, &str)] = &[
        ("", "auth.secret", "required"),
        ("secret = \"\"", "auth.secret", "empty"),
        ("secret = \"short\"", "auth.secret", "5 bytes"),
        (
            "secret = \"-----BEGIN PUBLIC KEY-----\\nMIIB\\n-----END PUBLIC KEY-----\"",
            "auth.secret",
            "PEM",
        ),
        ("secret = 42", "auth.secret", "integer"),
        (
            "secret = \"x\"\npublic_key_file = \"k.pem\"",
            "auth.secret",
            "only one",
        ),
        (
            "public_key_file = \"/nonexistent/key.pem\"",
            "auth.public_key_file",
            "/nonexistent/key.pem",
        ),
        (
            "algorithms = [\"RS256\"]\njwks_file = \"/nonexistent/jwks.json\"",
            "auth.jwks_file",
            "/nonexistent/jwks.json",
        ),
    ];
    for (lines, key, says) in cases {
        bad(&auth_only(lines), key, says);
    }
    let with_secret: &[(&str, &str, &str)] = &[
        ("algorithms = []", "auth.algorithms", "empty"),
        ("algorithms = [\"none\"]", "auth.algorithms", "none"),
        ("algorithms = [\"HS999\"]", "auth.algorithms", "HS999"),
        ("algorithms = [\"hs256\"]", "auth.algorithms", "hs256"),
        ("algorithms = [\"RS256\"]", "auth.algorithms", "RS256"),
        ("algorithms = 256", "auth.algorithms", "integer"),
        ("algorithms = [\"HS256\", 1]", "auth.algorithms", "integer"),
        ("cookie = \"\"", "auth.cookie", "cookie"),
        ("cookie = \"a b\"", "auth.cookie", "a b"),
        ("cookie = \"a;b\"", "auth.cookie", "a;b"),
        ("cookie = \"a=b\"", "auth.cookie", "a=b"),
        ("issuer = \"\"", "auth.issuer", "issuer"),
        ("issuer = 1", "auth.issuer", "integer"),
        ("audience = [\"\"]", "auth.audience", "audience"),
        ("audience = [1]", "auth.audience", "integer"),
        ("leeway_seconds = -1", "auth.leeway_seconds", "-1"),
        ("leeway_seconds = 601", "auth.leeway_seconds", "601"),
        ("leeway_seconds = \"30\"", "auth.leeway_seconds", "string"),
        ("user_claim = \"\"", "auth.user_claim", "empty"),
        ("name_claim = \"a..b\"", "auth.name_claim", "a..b"),
        ("roles_claim = \".roles\"", "auth.roles_claim", ".roles"),
        ("login_url = \"ftp://idp\"", "auth.login_url", "http"),
        (
            "login_url = \"idp.example/login\"",
            "auth.login_url",
            "http",
        ),
        ("require = \"sometimes\"", "auth.require", "sometimes"),
        ("require = true", "auth.require", "boolean"),
        ("expiry = 5", "auth.expiry", "unknown key"),
    ];
    for (lines, key, says) in with_secret {
        bad(&auth(lines), key, says);
    }
}

#[test]
fn keys_fetched_from_the_identity_provider() {
    let c = good(&auth_only(
        "algorithms = [\"RS256\"]\njwks_url = \"https://idp.example.com/jwks\"\n\
         jwks_refetch_seconds = 5\njwks_timeout_ms = 700\n\
         jwks_cache_min_seconds = 10\njwks_cache_max_seconds = 600",
    ));
    assert_eq!(
        c.auth.settings.key,
        auth::KeySource::Remote(auth::RemoteKeys {
            location: auth::KeyLocation::JwksUrl("https://idp.example.com/jwks".into()),
            refetch_interval: std::time::Duration::from_secs(5),
            timeout: std::time::Duration::from_millis(700),
            min_lifetime: std::time::Duration::from_secs(10),
            max_lifetime: std::time::Duration::from_secs(600),
        })
    );
    let c = good(&auth_only(
        "algorithms = [\"ES256\"]\ndiscover = true\nissuer = \"https://idp.example.com\"",
    ));
    assert_eq!(
        c.auth.settings.key,
        auth::KeySource::Remote(auth::RemoteKeys::at(auth::KeyLocation::Discovery))
    );

    let cases: &[(&str, &str, &str)] = &[
        (
            "algorithms = [\"RS256\"]\njwks_url = \"http://idp.example.com/jwks\"",
            "auth.jwks_url",
            "loopback",
        ),
        (
            "algorithms = [\"RS256\"]\njwks_url = \"idp/jwks\"",
            "auth.jwks_url",
            "not a URL",
        ),
        ("algorithms = [\"RS256\"]\ndiscover = true", "auth.discover", "issuer"),
        (
            "algorithms = [\"RS256\"]\ndiscover = true\nissuer = \"urn:idp\"",
            "auth.issuer",
            "cannot be discovered",
        ),
        (
            "jwks_url = \"https://idp.example.com/jwks\"",
            "auth.algorithms",
            "HS256",
        ),
        (
            "algorithms = [\"RS256\"]\njwks_url = \"https://idp.example.com/jwks\"\n\
             jwks_cache_min_seconds = 600\njwks_cache_max_seconds = 60",
            "auth.jwks_cache_min_seconds",
            "above",
        ),
        (
            "algorithms = [\"RS256\"]\njwks_url = \"https://idp.example.com/jwks\"\n\
             jwks_refetch_seconds = 0",
            "auth.jwks_refetch_seconds",
            "0",
        ),
        (
            "algorithms = [\"RS256\"]\njwks_url = \"https://idp.example.com/jwks\"\ndiscover = true\n\
             issuer = \"https://idp.example.com\"",
            "auth.secret",
            "only one",
        ),
    ];
    for (lines, key, says) in cases {
        bad(&auth_only(lines), key, says);
    }
    bad(&auth("discover = \"yes\""), "auth.discover", "string");
    // `discover = false` is no key at all.
    bad(&auth_only("discover = false"), "auth.secret", "required");
}

#[test]
fn trusted_proxy_settings() {
    assert_eq!(good(&minimal("")).trusted_proxy, None, "off by default");
    let c = good(&minimal(
        "[trusted_proxy]\npeers = [\"10.0.0.0/8\", \"192.168.1.7\", \"fd00::/8\"]\n\
         user_header = \"X-Auth-Request-User\"\ngroups_header = \"\"",
    ));
    let trusted = c.trusted_proxy.expect("configured");
    assert!(trusted.trusts(Some("10.2.3.4".parse().unwrap())));
    assert!(trusted.trusts(Some("192.168.1.7".parse().unwrap())));
    assert!(!trusted.trusts(Some("127.0.0.1".parse().unwrap())));
    assert!(trusted.is_identity_header("x-auth-request-user"));
    assert!(trusted.is_identity_header("x_forwarded_email"));
    assert!(
        !trusted.is_identity_header("x-forwarded-groups"),
        "turned off"
    );
    // From the environment too.
    let c = load_env(
        &minimal(""),
        &[("LATCH_TRUSTED_PROXY_PEERS", "10.0.0.0/8, 172.16.0.0/12")],
    )
    .unwrap();
    assert!(c
        .trusted_proxy
        .unwrap()
        .trusts(Some("172.20.0.1".parse().unwrap())));

    let found = issues(
        &minimal(
            "[trusted_proxy]\npeers = [\"10.0.0.0/33\", \"proxy.internal\"]\n\
             user_header = \"X User\"\nname_header = \"X-Latch-User\"\n\
             assertion_header = \"X-Pomerium-Jwt-Assertion\"",
        ),
        &[],
    );
    let keys: Vec<&str> = found.iter().map(|issue| issue.key.as_str()).collect();
    assert_eq!(
        keys,
        [
            "trusted_proxy.peers",
            "trusted_proxy.peers",
            "trusted_proxy.user_header",
            "trusted_proxy.name_header",
        ],
        "{found:#?}"
    );
    assert!(found[1].message.contains("proxy.internal"), "{found:#?}");
    // An assertion needs public keys: a secret holder could mint one.
    bad(
        &minimal("[trusted_proxy]\npeers = [\"10.0.0.1\"]\nassertion_header = \"X-Pomerium-Jwt-Assertion\""),
        "trusted_proxy.assertion_header",
        "public keys",
    );
    bad(
        &minimal(
            "[trusted_proxy]\npeers = [\"10.0.0.1\"]\nuser_header = \"\"\nemail_header = \"\"",
        ),
        "trusted_proxy.user_header",
        "no header names the user",
    );
}

#[test]
fn key_files_are_read_relative_to_the_config() {
    let dir = tempfile::tempdir().unwrap();
    // Not a usable key: the point is that the file was found and judged, at its own key.
    std::fs::write(dir.path().join("key.pem"), "not a pem").unwrap();
    let text = auth_only("algorithms = [\"RS256\"]\npublic_key_file = \"key.pem\"");
    let found = Config::from_toml_str(&text, SOURCE, dir.path(), Vec::new()).unwrap_err();
    assert!(!found.is_empty());
    for issue in &found {
        assert_eq!(issue.key, "auth.public_key_file", "{issue}");
        assert!(!issue.message.contains("cannot read"), "{issue}");
    }
}

#[test]
fn bad_locks_rules_control_plane_and_admin_values() {
    let cases: &[(&str, &str, &str)] = &[
        ("[locks]\nstore = \"etcd://x\"", "locks.store", "etcd://x"),
        ("[locks]\nstore = \"Memory\"", "locks.store", "Memory"),
        ("[locks]\nlease_seconds = 4", "locks.lease_seconds", "4"),
        (
            "[locks]\nlease_seconds = 86401",
            "locks.lease_seconds",
            "86401",
        ),
        (
            "[locks]\nlease_seconds = \"30s\"",
            "locks.lease_seconds",
            "string",
        ),
        ("[locks]\ngrace_seconds = -1", "locks.grace_seconds", "-1"),
        (
            "[locks]\ngrace_seconds = 3601\nlease_seconds = 7200",
            "locks.grace_seconds",
            "3601",
        ),
        (
            "[locks]\ngrace_seconds = 30",
            "locks.grace_seconds",
            "shorter",
        ),
        (
            "[locks]\nlease_seconds = 10\ngrace_seconds = 10",
            "locks.grace_seconds",
            "shorter",
        ),
        (
            "[locks]\non_store_error = \"maybe\"",
            "locks.on_store_error",
            "maybe",
        ),
        (
            "[locks]\nstore_timeout_ms = 9",
            "locks.store_timeout_ms",
            "9",
        ),
        (
            "[locks]\nstore_timeout_ms = 1001",
            "locks.store_timeout_ms",
            "1001",
        ),
        ("[locks]\nmax_per_user = 1001", "locks.max_per_user", "1001"),
        ("[locks]\nmax_per_user = -1", "locks.max_per_user", "-1"),
        (
            "[locks]\nclaims_per_minute = 60001",
            "locks.claims_per_minute",
            "60001",
        ),
        (
            "[rules]\nstore = \"http://rules.example\"",
            "rules.store",
            "http://",
        ),
        ("[rules]\nstore = 1", "rules.store", "integer"),
        ("[rules]\npoll_seconds = 0", "rules.poll_seconds", "0"),
        ("[rules]\npoll_seconds = 3601", "rules.poll_seconds", "3601"),
        (
            "[control_plane]\nlisten = \"x\"",
            "control_plane.listen",
            "\"x\"",
        ),
        (
            "[control_plane]\nadmin_roles = []",
            "control_plane.admin_roles",
            "at least one",
        ),
        (
            "[control_plane]\nadmin_roles = [\"\"]",
            "control_plane.admin_roles",
            "non-empty",
        ),
        (
            "[control_plane]\nadmin_roles = 1",
            "control_plane.admin_roles",
            "integer",
        ),
        (
            "[admin]\nlisten = \"localhost\"",
            "admin.listen",
            "localhost",
        ),
        ("[admin]\nlisten = 9100", "admin.listen", "integer"),
        ("[admin]\nmetrics = true", "admin.metrics", "unknown key"),
    ];
    for (extra, key, says) in cases {
        bad(&minimal(extra), key, says);
    }
}

#[test]
fn rule_file_paths_resolve_against_the_config_directory() {
    let c = good(&minimal("[rules]\nstore = \"conf.d/rules.toml\""));
    assert_eq!(
        c.rules.store,
        RuleStoreKind::File(PathBuf::from("/etc/latch/conf.d/rules.toml"))
    );
    let c = good(&minimal("[rules]\nstore = \"/srv/rules.toml\""));
    assert_eq!(
        c.rules.store,
        RuleStoreKind::File(PathBuf::from("/srv/rules.toml"))
    );
}

#[test]
fn unknown_sections_and_misshapen_sections_are_errors() {
    bad(&minimal("[extras]\nx = 1"), "extras", "unknown section");
    bad(
        &format!("debug = true\n{}", minimal("")),
        "debug",
        "unknown section",
    );
    // A section that is not a table is reported as such (its required keys are then missing too).
    let found = issues(&format!("proxy = 5\n[auth]\nsecret = \"{SECRET}\"\n"), &[]);
    assert!(
        found
            .iter()
            .any(|i| i.key == "proxy" && i.message.contains("table")),
        "{found:#?}"
    );
    // `[[proxy]]` is an array of tables, not a section.
    bad(
        &format!("[[locks]]\nstore = \"memory\"\n\n{}", minimal("")),
        "locks",
        "table",
    );
}

#[test]
fn syntax_errors_are_one_whole_file_problem() {
    let found = issues("[proxy\nupstream = ", &[]);
    assert_eq!(found.len(), 1, "{found:#?}");
    assert_eq!(found[0].key, "");
    assert_eq!(found[0].source, SOURCE);
    assert!(found[0].message.contains("TOML"), "{}", found[0]);
    assert_eq!(
        found[0].to_string(),
        format!("{SOURCE}: {}", found[0].message)
    );
}

#[test]
fn every_problem_is_reported_at_once() {
    let text = r#"
[proxy]
listen = "x"
prefix = "y"
threads = 0
bogus = 1

[auth]
secret = "short"
algorithms = ["none", "HS256"]
cookie = ""
leeway_seconds = 9999
user_claim = ""

[locks]
lease_seconds = 1
store_timeout_ms = 0

[rules]
poll_seconds = -5

[control_plane]
admin_roles = []

[admin]
listen = "z"

[nope]
"#;
    let found = issues(text, &[("LATCH_NOT_A_THING", "1")]);
    let keys: Vec<&str> = found.iter().map(|i| i.key.as_str()).collect();
    for key in [
        "proxy.listen",
        "proxy.upstream",
        "proxy.prefix",
        "proxy.threads",
        "proxy.bogus",
        "auth.secret",
        "auth.algorithms",
        "auth.cookie",
        "auth.leeway_seconds",
        "auth.user_claim",
        "locks.lease_seconds",
        "locks.store_timeout_ms",
        "rules.poll_seconds",
        "control_plane.admin_roles",
        "admin.listen",
        "nope",
        "LATCH_NOT_A_THING",
    ] {
        assert!(keys.contains(&key), "{key} missing from {keys:?}");
    }
    for issue in &found {
        let shown = issue.to_string();
        assert!(shown.contains(&issue.key), "{shown}");
        assert!(shown.starts_with(&issue.source), "{shown}");
    }
}

#[test]
fn the_environment_overrides_the_file_which_overrides_defaults() {
    let text = minimal("[locks]\nlease_seconds = 20\n");
    assert_eq!(good(&text).locks.lease, Duration::from_secs(20));
    let c = load_env(&text, &[("LATCH_LOCKS_LEASE_SECONDS", "40")]).unwrap();
    assert_eq!(c.locks.lease, Duration::from_secs(40));
    // Keys the file leaves out, and whole sections it leaves out, can come from the environment.
    let c = load_env(
        &text,
        &[
            ("LATCH_LOCKS_GRACE_SECONDS", "3"),
            ("LATCH_CONTROL_PLANE_LISTEN", "127.0.0.1:9999"),
            ("LATCH_CONTROL_PLANE_ADMIN_ROLES", "[\"ops\", \"root\"]"),
            ("LATCH_AUTH_ALGORITHMS", "[\"HS384\"]"),
            ("LATCH_AUTH_REQUIRE", "all"),
            ("LATCH_PROXY_THREADS", "4"),
            ("LATCH_PROXY_HEADER_TIMEOUT_SECONDS", "5"),
            ("LATCH_PROXY_KEEPALIVE_TIMEOUT_SECONDS", "120"),
            ("LATCH_PROXY_MAX_HEADER_BYTES", "8192"),
            ("LATCH_PROXY_MAX_CONNECTIONS_PER_CLIENT", "0"),
        ],
    )
    .unwrap();
    assert_eq!(c.locks.lease, Duration::from_secs(20));
    assert_eq!(c.locks.grace, Duration::from_secs(3));
    assert_eq!(c.control_plane.listen, addr("127.0.0.1:9999"));
    assert_eq!(c.control_plane.admin_roles, vec!["ops", "root"]);
    assert_eq!(c.auth.settings.algorithms, vec!["HS384"]);
    assert_eq!(c.auth.require, Require::All);
    assert_eq!(c.proxy.threads, 4);
    assert_eq!(c.proxy.header_timeout, Duration::from_secs(5));
    assert_eq!(c.proxy.keepalive_timeout, Duration::from_secs(120));
    assert_eq!(c.proxy.max_header_bytes, 8192);
    assert_eq!(c.proxy.max_connections_per_client, None);

    // The environment can repair the file: a too-short secret replaced by a good one.
    let broken = auth_only("secret = \"short\"");
    assert!(load(&broken).is_err());
    let c = load_env(&broken, &[("LATCH_AUTH_SECRET", SECRET)]).unwrap();
    assert_eq!(
        c.auth.settings.key,
        auth::KeySource::Secret(SECRET.as_bytes().to_vec())
    );
}

#[test]
fn claim_limits_come_from_the_environment_too() {
    let c = load_env(
        &minimal(""),
        &[
            ("LATCH_LOCKS_MAX_PER_USER", "3"),
            ("LATCH_LOCKS_CLAIMS_PER_MINUTE", "0"),
        ],
    )
    .unwrap();
    assert_eq!(c.locks.max_per_user, Some(3));
    assert_eq!(c.locks.claims_per_minute, None);
    let issues = load_env(&minimal(""), &[("LATCH_LOCKS_MAX_PER_USER", "5000")]).unwrap_err();
    let text = format!("{issues:?}");
    assert!(text.contains("locks.max_per_user"), "{text}");
    assert!(text.contains("LATCH_LOCKS_MAX_PER_USER"), "{text}");
}

#[test]
fn environment_values_take_the_type_their_key_needs() {
    let c = load_env(
        &minimal(""),
        &[
            // Strings that happen to look like TOML numbers or booleans stay strings.
            ("LATCH_PROXY_INSTANCE", "1"),
            ("LATCH_AUTH_ISSUER", "true"),
            ("LATCH_AUTH_COOKIE", "2024"),
            // Lists may be written comma-separated, as a single value, or in TOML syntax.
            ("LATCH_CONTROL_PLANE_ADMIN_ROLES", "admin, ops"),
            ("LATCH_AUTH_AUDIENCE", "latch"),
            ("LATCH_AUTH_ALGORITHMS", "HS256,HS512"),
        ],
    )
    .unwrap_or_else(|issues| panic!("{issues:#?}"));
    assert_eq!(c.proxy.instance, "1");
    assert_eq!(c.auth.settings.issuer.as_deref(), Some("true"));
    assert_eq!(c.auth.cookie, "2024");
    assert_eq!(c.control_plane.admin_roles, vec!["admin", "ops"]);
    assert_eq!(c.auth.settings.audience, vec!["latch"]);
    assert_eq!(c.auth.settings.algorithms, vec!["HS256", "HS512"]);

    // A secret is taken verbatim, even one that reads as TOML.
    let odd = "[\"0123456789\", \"0123456789abcdefghijklmnop\"]";
    let c = load_env(&minimal(""), &[("LATCH_AUTH_SECRET", odd)]).unwrap();
    assert_eq!(
        c.auth.settings.key,
        auth::KeySource::Secret(odd.as_bytes().to_vec())
    );
}

#[test]
fn bad_environment_values_name_the_variable_not_the_file() {
    let cases: &[(&str, &str, &str)] = &[
        ("LATCH_LOCKS_LEASE_SECONDS", "1", "locks.lease_seconds"),
        ("LATCH_LOCKS_LEASE_SECONDS", "thirty", "locks.lease_seconds"),
        ("LATCH_LOCKS_LEASE_SECONDS", "", "locks.lease_seconds"),
        ("LATCH_PROXY_LISTEN", "nowhere", "proxy.listen"),
        ("LATCH_AUTH_SECRET", "short", "auth.secret"),
        ("LATCH_AUTH_ALGORITHMS", "none", "auth.algorithms"),
        ("LATCH_PROXY_UPSTREAM", "ftp://x", "proxy.upstream"),
        (
            "LATCH_PROXY_HEADER_TIMEOUT_SECONDS",
            "0",
            "proxy.header_timeout_seconds",
        ),
        (
            "LATCH_PROXY_MAX_HEADER_BYTES",
            "32k",
            "proxy.max_header_bytes",
        ),
        (
            "LATCH_PROXY_MAX_CONNECTIONS_PER_CLIENT",
            "-5",
            "proxy.max_connections_per_client",
        ),
    ];
    for (name, value, key) in cases {
        let found = issues(&minimal(""), &[(name, value)]);
        assert_eq!(found.len(), 1, "{name}={value}: {found:#?}");
        assert_eq!(found[0].key, *key, "{name}={value}");
        assert!(
            found[0].source.contains(name),
            "{name}={value}: blamed on {:?}",
            found[0].source
        );
    }
}

#[test]
fn unknown_environment_variables_are_errors() {
    for name in [
        "LATCH_NOPE",
        "LATCH_AUTH_SECRETS",
        "LATCH_AUTH",
        "LATCH_PROXY_",
        "LATCH_CONTROL_LISTEN",
        "LATCH_PLANE_LISTEN",
        "LATCH_ADMIN_LISTEN_PORT",
    ] {
        let found = issues(&minimal(""), &[(name, "x")]);
        assert_eq!(found.len(), 1, "{name}: {found:#?}");
        assert_eq!(found[0].key, name);
        assert_eq!(found[0].source, "environment");
    }
    // Logging has its own variable; everything outside the prefix is not ours.
    good_env(&[
        ("LATCH_LOG", "debug"),
        ("PATH", "/bin"),
        ("latch_nope", "1"),
    ]);
}

fn good_env(env: &[(&str, &str)]) {
    load_env(&minimal(""), env).unwrap_or_else(|issues| panic!("{env:?}: {issues:#?}"));
}

#[test]
fn lowercase_and_mixed_case_keys_match_their_section() {
    // `LATCH_CONTROL_PLANE_LISTEN` must not be read as section `control` key `plane_listen`.
    let c = load_env(
        &minimal(""),
        &[("LATCH_CONTROL_PLANE_LISTEN", "127.0.0.1:1")],
    )
    .unwrap();
    assert_eq!(c.control_plane.listen, addr("127.0.0.1:1"));
}

#[test]
fn an_environment_override_of_a_non_table_section_is_reported() {
    let found = issues(
        &format!("locks = 1\n{}", minimal("")),
        &[("LATCH_LOCKS_LEASE_SECONDS", "10")],
    );
    let keys: Vec<&str> = found.iter().map(|i| i.key.as_str()).collect();
    assert!(keys.contains(&"locks"), "{found:#?}");
    assert!(keys.contains(&"LATCH_LOCKS_LEASE_SECONDS"), "{found:#?}");
}

#[test]
fn load_reads_the_file_and_resolves_paths_against_its_directory() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("latch.toml");
    std::fs::write(&path, minimal("")).unwrap();
    let c = Config::load(&path, Vec::new()).unwrap();
    assert_eq!(
        c.rules.store,
        RuleStoreKind::File(dir.path().join("rules.toml"))
    );
    let missing = dir.path().join("absent.toml");
    let found = Config::load(&missing, Vec::new()).unwrap_err();
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].source, missing.display().to_string());
    assert!(found[0].message.contains("cannot read"), "{}", found[0]);
}

#[test]
fn demo_config_is_self_consistent() {
    let c = Config::demo(8080, 3000, SECRET);
    assert_eq!(c.proxy.listen, addr("127.0.0.1:8080"));
    assert_eq!(c.proxy.upstream.servers[0].address(), "127.0.0.1:3000");
    assert!(auth::Verifier::new(c.auth.settings.clone()).is_ok());
    assert!(c.locks.grace < c.locks.lease);
}

#[test]
fn the_rule_store_can_be_found_in_an_otherwise_broken_config() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("latch.toml");
    std::fs::write(
        &path,
        "[proxy]\nlisten = \"x\"\n\n[auth]\nsecret = 1\n\n[rules]\nstore = \"conf/rules.toml\"\npoll_seconds = 0\n",
    )
    .unwrap();
    assert!(Config::load(&path, Vec::new()).is_err());
    assert_eq!(
        Config::rule_store_of(&path, Vec::new()),
        Some(RuleStoreKind::File(dir.path().join("conf/rules.toml")))
    );
    // The environment is layered as for a full load.
    assert_eq!(
        Config::rule_store_of(
            &path,
            vec![(
                "LATCH_RULES_STORE".to_string(),
                "/srv/rules.toml".to_string()
            )]
        ),
        Some(RuleStoreKind::File(PathBuf::from("/srv/rules.toml")))
    );
    // Without a [rules] section the default file beside the config applies.
    std::fs::write(&path, "[proxy]\nlisten = 1\n").unwrap();
    assert_eq!(
        Config::rule_store_of(&path, Vec::new()),
        Some(RuleStoreKind::File(dir.path().join("rules.toml")))
    );
    for unusable in ["[rules]\nstore = \"ftp://x\"\n", "rules = 1\n", "[rules\n"] {
        std::fs::write(&path, unusable).unwrap();
        assert_eq!(Config::rule_store_of(&path, Vec::new()), None, "{unusable}");
    }
    assert_eq!(
        Config::rule_store_of(&dir.path().join("absent.toml"), Vec::new()),
        None
    );
}

#[test]
fn kubernetes_service_variables_are_not_config_keys() {
    let text = "[proxy]\nupstream = \"http://127.0.0.1:3000\"\n[auth]\nsecret = \"0123456789abcdef0123456789abcdef\"\n";
    let env = [
        ("LATCH_SERVICE_HOST", "10.0.0.7"),
        ("LATCH_SERVICE_PORT", "8080"),
        ("LATCH_PORT", "tcp://10.0.0.7:8080"),
        ("LATCH_PORT_8080_TCP_ADDR", "10.0.0.7"),
    ]
    .map(|(k, v)| (k.to_string(), v.to_string()));
    let config = config::Config::from_toml_str(text, "latch.toml", std::path::Path::new("."), env)
        .expect("service-discovery variables are ignored");
    assert_eq!(config.proxy.upstream.servers[0].port, 3000);

    let typo = [("LATCH_PROXY_LISTN".to_string(), "127.0.0.1:1".to_string())];
    let issues = config::Config::from_toml_str(text, "latch.toml", std::path::Path::new("."), typo)
        .expect_err("a misspelt key is still an error");
    assert!(
        issues.iter().any(|i| i.key.contains("LATCH_PROXY_LISTN")),
        "{issues:?}"
    );
}

/// What one loaded value reads as, for the table below.
type Read = fn(&Config) -> String;

#[test]
fn each_kind_is_layered_from_the_environment_and_checked_there() {
    let listen: Read = |c| c.proxy.listen.to_string();
    let threads: Read = |c| c.proxy.threads.to_string();
    let lease: Read = |c| format!("{:?}", c.locks.lease);
    let store_timeout: Read = |c| format!("{:?}", c.locks.store_timeout);
    let header_case: Read = |c| format!("{:?}", c.proxy.header_case);
    let scheme: Read = |c| c.control_plane.public_scheme.to_string();
    let audience: Read = |c| c.auth.settings.audience.join("+");
    let prefix: Read = |c| c.proxy.prefix.clone();
    #[rustfmt::skip]
    let cases: &[(&str, &str, Read, Result<&str, &str>)] = &[
        ("LATCH_PROXY_LISTEN", "0.0.0.0:81", listen, Ok("0.0.0.0:81")),
        ("LATCH_PROXY_LISTEN", "81", listen, Err("\"81\" is not an address like 127.0.0.1:8080")),
        ("LATCH_PROXY_THREADS", "3", threads, Ok("3")),
        ("LATCH_PROXY_THREADS", "65", threads, Err("65 is out of range 1..=64")),
        ("LATCH_PROXY_THREADS", "three", threads, Err("expected an integer, found string")),
        ("LATCH_LOCKS_LEASE_SECONDS", "45", lease, Ok("45s")),
        ("LATCH_LOCKS_LEASE_SECONDS", "4", lease, Err("4 is out of range 5..=86400")),
        ("LATCH_LOCKS_STORE_TIMEOUT_MS", "20", store_timeout, Ok("20ms")),
        ("LATCH_LOCKS_STORE_TIMEOUT_MS", "5", store_timeout, Err("5 is out of range 10..=1000")),
        ("LATCH_PROXY_HEADER_CASE", "preserve", header_case, Ok("Preserve")),
        ("LATCH_PROXY_HEADER_CASE", "lower", header_case, Err("\"lower\" is not one of \"canonical\", \"preserve\"")),
        ("LATCH_CONTROL_PLANE_PUBLIC_SCHEME", "https", scheme, Ok("https")),
        ("LATCH_CONTROL_PLANE_PUBLIC_SCHEME", "ftp", scheme, Err("\"ftp\" is not one of \"http\", \"https\"")),
        ("LATCH_AUTH_AUDIENCE", "a, b", audience, Ok("a+b")),
        ("LATCH_AUTH_AUDIENCE", "[1]", audience, Err("expected strings, found integer")),
        ("LATCH_AUTH_AUDIENCE", "[\"a\"", audience, Err("is not a TOML list such as [\"a\", \"b\"]")),
        ("LATCH_PROXY_PREFIX", "/gate", prefix, Ok("/gate")),
        ("LATCH_PROXY_PREFIX", "gate", prefix, Err("\"gate\" must be a path like /__latch")),
    ];
    for (var, value, read, expected) in cases {
        let env = [(*var, *value)];
        match (load_env(&minimal(""), &env), expected) {
            (Ok(c), Ok(shown)) => assert_eq!(read(&c), *shown, "{var}={value}"),
            (Err(found), Err(says)) => {
                assert_eq!(found.len(), 1, "{var}={value}: {found:#?}");
                assert_eq!(found[0].source, format!("environment ({var})"));
                assert!(
                    found[0].message.contains(says),
                    "{var}={value}: {:?} does not mention {says:?}",
                    found[0].message
                );
            }
            (got, _) => panic!("{var}={value}: expected {expected:?}, got {:?}", got.err()),
        }
    }
}

#[test]
fn oidc_settings() {
    assert!(good(&minimal("")).oidc.is_none(), "off by default");
    let cookie = "c".repeat(32);
    let c = good(&minimal(&format!(
        "[oidc]\nissuer = \"https://login.example.com/realms/main\"\nclient_id = \"latch\"\n\
         client_secret = \"s3cret\"\ncookie_secret = \"{cookie}\"\n\
         redirect_url = \"https://app.example.com/__latch/callback\"\nsession_seconds = 3600\n\
         post_logout_redirect_uri = \"https://app.example.com/bye\""
    )));
    let oidc = c.oidc.expect("configured");
    assert_eq!(
        oidc.post_logout_redirect_uri.as_deref(),
        Some("https://app.example.com/bye")
    );
    assert_eq!(oidc.scopes, ["openid", "profile", "email"], "the default");
    assert_eq!(oidc.client_secret, "s3cret");
    assert_eq!(oidc.cookie_secret, cookie.as_bytes());
    assert_eq!(oidc.session_lifetime, Some(Duration::from_secs(3600)));
    let debug = format!("{oidc:?}");
    assert!(
        !debug.contains("s3cret") && !debug.contains(&cookie),
        "{debug}"
    );
    let settings = auth::relying_party::id_token_settings(&oidc.client(), &c.auth.settings);
    assert_eq!(settings.audience, ["latch"]);
    assert_eq!(
        settings.issuer.as_deref(),
        Some("https://login.example.com/realms/main")
    );

    // Secrets from files, their trailing newline dropped.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("client"), "from-file\n").unwrap();
    std::fs::write(dir.path().join("cookie"), format!("{cookie}\r\n")).unwrap();
    let c = Config::from_toml_str(
        &minimal(
            "[oidc]\nissuer = \"http://127.0.0.1:9000\"\nclient_id = \"latch\"\n\
             client_secret_file = \"client\"\ncookie_secret_file = \"cookie\"",
        ),
        SOURCE,
        dir.path(),
        std::iter::empty(),
    )
    .unwrap();
    let oidc = c.oidc.unwrap();
    assert_eq!(oidc.client_secret, "from-file");
    assert_eq!(oidc.cookie_secret, cookie.as_bytes());

    // Every problem at once.
    let found = issues(
        &minimal(
            "[oidc]\nissuer = \"http://idp.example.com\"\nclient_secret = \"a\"\n\
             client_secret_file = \"b\"\ncookie_secret = \"short\"\nscopes = [\"profile\"]\n\
             redirect_url = \"https://app.example.com/elsewhere\"\n\
             post_logout_redirect_uri = \"/bye\"",
        ),
        &[],
    );
    let keys: Vec<&str> = found.iter().map(|issue| issue.key.as_str()).collect();
    assert_eq!(
        keys,
        [
            "oidc.client_id",
            "oidc.issuer",
            "oidc.client_secret",
            "oidc.cookie_secret",
            "oidc.scopes",
            "oidc.redirect_url",
            "oidc.post_logout_redirect_uri",
        ],
        "{found:#?}"
    );
    assert!(found[3].message.contains("32"), "{found:#?}");
    // The token cookie cannot be one of the sign-in's.
    bad(
        &format!(
            "[proxy]\nupstream = \"http://127.0.0.1:3000\"\n\n[auth]\nsecret = \"{SECRET}\"\n\
             cookie = \"latch_oidc\"\n\n[oidc]\nissuer = \"https://idp.example\"\n\
             client_id = \"latch\"\nclient_secret = \"s\"\ncookie_secret = \"{cookie}\""
        ),
        "auth.cookie",
        "sign-in",
    );
    // A lone oidc key turns the section on, and so asks for the rest.
    let found = issues(&minimal("[oidc]\nclient_id = \"latch\""), &[]);
    let keys: Vec<&str> = found.iter().map(|issue| issue.key.as_str()).collect();
    assert_eq!(
        keys,
        ["oidc.issuer", "oidc.client_secret", "oidc.cookie_secret"],
        "{found:#?}"
    );
}

#[test]
fn oidc_auth_params_are_name_value_pairs_of_the_providers_own() {
    let cookie = "c".repeat(32);
    let section = |params: &str| {
        minimal(&format!(
            "[oidc]\nissuer = \"https://accounts.google.com\"\nclient_id = \"latch\"\n\
             client_secret = \"s\"\ncookie_secret = \"{cookie}\"\nauth_params = {params}"
        ))
    };
    let oidc = good(&section(
        r#"["access_type=offline", "prompt=consent", "hd="]"#,
    ))
    .oidc
    .unwrap();
    assert_eq!(
        oidc.auth_params,
        [
            ("access_type".to_owned(), "offline".to_owned()),
            ("prompt".to_owned(), "consent".to_owned()),
            ("hd".to_owned(), String::new()),
        ]
    );
    assert_eq!(oidc.client().auth_params, oidc.auth_params);
    assert!(good(&section("[]")).oidc.unwrap().auth_params.is_empty());
    for (params, says) in [
        (r#"["access_type"]"#, "not name=value"),
        (r#"["=offline"]"#, "not a parameter name"),
        (r#"["a b=c"]"#, "not a parameter name"),
        (
            r#"["redirect_uri=https://evil.example/cb"]"#,
            "set by Latch itself",
        ),
        (r#"["state=x"]"#, "set by Latch itself"),
        (r#"["prompt=a\nb"]"#, "control character"),
    ] {
        bad(&section(params), "oidc.auth_params", says);
    }
}

/// `[auth]` with the test secret and the given `[[app]]` entries, without `proxy.upstream`.
fn apps(entries: &str) -> String {
    format!("[auth]\nsecret = \"{SECRET}\"\n\n{entries}")
}

const WIKI: &str = "[[app]]\nname = \"wiki\"\nhosts = [\"wiki.example.com\", \"*.wiki.example.com\"]\nupstream = \"http://127.0.0.1:3001\"\n";
const CRM: &str = "[[app]]\nname = \"crm\"\nhosts = \"crm.example.com\"\nupstream = \"http://[::1]:3002\"\nlease_seconds = 60\ngrace_seconds = 5\nidle_seconds = 0\n";

#[test]
fn app_entries_are_read_in_order_with_their_overrides() {
    let c = good(&apps(&format!("{WIKI}\n{CRM}")));
    assert_eq!(c.apps.len(), 2);
    let (wiki, crm) = (&c.apps[0], &c.apps[1]);
    assert_eq!(wiki.name, "wiki");
    let hosts: Vec<String> = wiki.hosts.iter().map(ToString::to_string).collect();
    assert_eq!(hosts, ["wiki.example.com", "*.wiki.example.com"]);
    assert_eq!(wiki.upstream.servers[0].address(), "127.0.0.1:3001");
    assert_eq!((wiki.lease, wiki.grace, wiki.idle), (None, None, None));
    assert_eq!(crm.upstream.servers[0].address(), "[::1]:3002");
    assert_eq!(crm.lease, Some(Duration::from_secs(60)));
    assert_eq!(crm.grace, Some(Duration::from_secs(5)));
    assert_eq!(crm.idle, Some(Duration::ZERO));
    assert_eq!(c.proxy.unknown_host, config::UnknownHost::Misdirected);
    assert_eq!(config::app_for(&c.apps, b"CRM.example.com:8443"), Some(1));
    assert_eq!(config::app_for(&c.apps, b"a.wiki.example.com"), Some(0));
    assert_eq!(config::app_for(&c.apps, b"example.com"), None);

    let c = good(&format!(
        "[proxy]\nunknown_host = \"not_found\"\n\n{}",
        apps(WIKI)
    ));
    assert_eq!(c.proxy.unknown_host, config::UnknownHost::NotFound);
    // The one-app case: no entries.
    assert!(good(&minimal("")).apps.is_empty());
}

#[test]
fn every_app_problem_is_reported_with_its_entry() {
    let text = apps(
        "[[app]]\nname = \"Wiki!\"\nhosts = [\"wiki.example.com:80\", \"ok.example.com\"]\nupstream = \"ftp://x\"\ncolour = \"red\"\n\n\
         [[app]]\nhosts = []\nlease_seconds = 10\ngrace_seconds = 10\n\n\
         [[app]]\nname = \"crm\"\nhosts = [\"ok.example.com\", \"*.example.com\"]\nupstream = \"http://127.0.0.1:1\"\n\n\
         [[app]]\nname = \"crm\"\nhosts = [\"*.EXAMPLE.com\"]\nupstream = \"http://127.0.0.1:2\"\n",
    );
    let found: Vec<String> = issues(&text, &[])
        .iter()
        .map(|i| format!("{}: {}", i.key, i.message))
        .collect();
    let expect = [
        "app[1].colour: unknown key",
        "app[1].name: \"Wiki!\" contains 'W'",
        "app[1].hosts: \"wiki.example.com:80\" is not a host name",
        "app[1].upstream: ",
        "app[2].name: required",
        "app[2].hosts: must list at least one host name",
        "app[2].upstream: required",
        "app[2].grace_seconds: 10 must be shorter than the app's lease (10)",
        // The good host of a list with a bad one still counts, so its clash is found now.
        "app[3].hosts: ok.example.com is already a host of app[1]",
        "app[4].name: \"crm\" is already the name of app[3]",
        "app[4].hosts: *.example.com is already a host of app[3]",
    ];
    assert_eq!(found.len(), expect.len(), "{found:#?}");
    for want in expect {
        assert!(
            found.iter().any(|f| f.starts_with(want)),
            "no problem like {want:?} in {found:#?}"
        );
    }
}

#[test]
fn apps_and_proxy_upstream_are_one_or_the_other() {
    bad(
        &format!(
            "[proxy]\nupstream = \"http://127.0.0.1:3000\"\n\n{}",
            apps(WIKI)
        ),
        "proxy.upstream",
        "not both",
    );
    bad(&apps(""), "proxy.upstream", "[[app]]");
    // A misshapen `app` is reported as such; with no app read, the upstream is missing too.
    for (text, key, says) in [
        ("[app]\nname = \"x\"\n[proxy]\n", "app", "array of tables"),
        ("app = [1]\n", "app[1]", "expected a table"),
        ("app = 3\n", "app", "integer"),
    ] {
        // Top-level keys come before the first table.
        let found = issues(&format!("{text}\n[auth]\nsecret = \"{SECRET}\"\n"), &[]);
        assert!(
            found
                .iter()
                .any(|i| i.key == key && i.message.contains(says)),
            "no {key}: {says} in {found:#?}"
        );
    }
}

#[test]
fn app_keys_are_not_set_from_the_environment() {
    let found = issues(&apps(WIKI), &[("LATCH_APP_NAME", "x")]);
    assert_eq!(found.len(), 1, "{found:#?}");
    assert_eq!(found[0].key, "LATCH_APP_NAME");
    assert!(
        found[0].message.contains("only in the file"),
        "{}",
        found[0]
    );
}

/// A CA, a certificate for `app.internal` and files that are not what their keys ask for, in
/// a directory that is the config's base.
struct TlsFiles {
    dir: tempfile::TempDir,
    ca: PathBuf,
    cert: PathBuf,
    key: PathBuf,
    other_key: PathBuf,
}

fn tls_files() -> TlsFiles {
    let dir = tempfile::tempdir().unwrap();
    let ca = testkit::certs::TestCa::new(dir.path(), "upstream");
    let issued = ca.issue(&["app.internal"]);
    let other = ca.issue(&["other.internal"]);
    std::fs::write(dir.path().join("garbage.pem"), "not a certificate\n").unwrap();
    std::fs::write(dir.path().join("empty.pem"), "").unwrap();
    TlsFiles {
        ca: ca.cert(),
        cert: issued.cert,
        key: issued.key,
        other_key: other.key,
        dir,
    }
}

fn load_in(dir: &Path, text: &str) -> Result<Config, Vec<Issue>> {
    Config::from_toml_str(text, SOURCE, dir, std::iter::empty())
}

fn upstream_with(upstream: &str, lines: &str) -> String {
    format!("[proxy]\nupstream = {upstream}\n{lines}\n\n[auth]\nsecret = \"{SECRET}\"\n")
}

#[test]
fn an_https_upstream_with_a_ca_file_and_a_client_certificate() {
    let files = tls_files();
    let text = upstream_with(
        "\"https://app.internal:8443\"",
        &format!(
            "upstream_ca_file = {:?}\nupstream_client_cert_file = {:?}\nupstream_client_key_file = \"{}\"\n\
             upstream_sni = \"app.example\"\nupstream_host_header = \"upstream\"",
            files.ca.file_name().unwrap(),
            files.cert,
            files.key.display()
        ),
    );
    let c = load_in(files.dir.path(), &text).unwrap_or_else(|e| panic!("{e:#?}"));
    let up = &c.proxy.upstream;
    assert_eq!(up.servers.len(), 1);
    assert!(up.servers[0].tls);
    assert_eq!(up.servers[0].port, 8443);
    assert_eq!(up.servers[0].authority(), "app.internal:8443");
    assert_eq!(up.host_header, config::HostHeader::Upstream);
    let tls = up.tls.as_ref().expect("tls settings");
    assert_eq!(tls.sni.as_deref(), Some("app.example"));
    assert_eq!(tls.ca.as_ref().map(|c| c.len()), Some(1));
    let client = tls.client.as_ref().expect("a client certificate");
    assert_eq!(client.certs.len(), 1);
    assert!(tls.verify);
}

#[test]
fn an_https_upstream_without_a_ca_file_uses_the_system_roots() {
    let c = good(&upstream_with("\"https://app.internal\"", ""));
    let up = &c.proxy.upstream;
    assert_eq!(up.servers[0].port, 443);
    assert_eq!(up.servers[0].authority(), "app.internal");
    let tls = up.tls.as_ref().unwrap();
    assert!(tls.ca.is_none() && tls.client.is_none() && tls.sni.is_none());
}

#[test]
fn a_pool_lists_servers_of_one_scheme() {
    let c = good(&upstream_with(
        "[\"http://10.0.0.1:3000\", \"http://10.0.0.2:3000\"]",
        "upstream_balance = \"least_connections\"\nupstream_health_check = \"http\"\n\
         upstream_health_path = \"/healthz?full=1\"\nupstream_health_interval_seconds = 2\nupstream_retry = false",
    ));
    let up = &c.proxy.upstream;
    assert_eq!(up.servers.len(), 2);
    assert_eq!(up.servers[1].host, "10.0.0.2");
    assert_eq!(up.balance, config::Balance::LeastConnections);
    assert_eq!(up.health.kind, config::HealthCheckKind::Http);
    assert_eq!(up.health.path, "/healthz?full=1");
    assert_eq!(up.health.interval, Duration::from_secs(2));
    assert!(!up.retry);
    // The defaults.
    let up = good(&minimal("")).proxy.upstream;
    assert_eq!(up.balance, config::Balance::RoundRobin);
    assert_eq!(up.health.kind, config::HealthCheckKind::Tcp);
    assert_eq!(up.health.interval, Duration::from_secs(5));
    assert_eq!(up.host_header, config::HostHeader::Client);
    assert!(up.retry && up.tls.is_none());
    // A pool from the environment, comma-separated.
    let c = load_env(
        &minimal(""),
        &[("LATCH_PROXY_UPSTREAM", "http://a:1, http://b:2")],
    )
    .unwrap();
    assert_eq!(c.proxy.upstream.servers.len(), 2);
}

#[test]
fn bad_upstream_settings_are_each_reported() {
    let files = tls_files();
    let dir = files.dir.path();
    let one = |upstream: &str, lines: &str, key: &str, says: &str| {
        let text = upstream_with(upstream, lines);
        let found = load_in(dir, &text).expect_err(&text);
        assert_eq!(found.len(), 1, "{found:#?}\n{text}");
        assert_eq!(found[0].key, key, "{found:#?}");
        assert!(
            found[0].message.contains(says),
            "{key}: {:?} does not mention {says:?}",
            found[0].message
        );
    };
    let https = "\"https://app.internal\"";
    one(
        https,
        "upstream_ca_file = \"missing.pem\"",
        "proxy.upstream_ca_file",
        "cannot read",
    );
    one(
        https,
        "upstream_ca_file = \"garbage.pem\"",
        "proxy.upstream_ca_file",
        "no PEM certificate",
    );
    one(
        https,
        "upstream_ca_file = \"empty.pem\"",
        "proxy.upstream_ca_file",
        "no PEM certificate",
    );
    let cert = files.cert.display();
    let key = files.key.display();
    let other = files.other_key.display();
    one(
        https,
        &format!("upstream_client_cert_file = \"{cert}\""),
        "proxy.upstream_client_key_file",
        "required",
    );
    one(
        https,
        &format!("upstream_client_key_file = \"{key}\""),
        "proxy.upstream_client_cert_file",
        "required",
    );
    one(
        https,
        &format!("upstream_client_cert_file = \"{cert}\"\nupstream_client_key_file = \"{other}\""),
        "proxy.upstream_client_key_file",
        "is not the key of",
    );
    one(
        https,
        &format!(
            "upstream_client_cert_file = \"{cert}\"\nupstream_client_key_file = \"garbage.pem\""
        ),
        "proxy.upstream_client_key_file",
        "no usable PEM private key",
    );
    one(
        https,
        "upstream_sni = \"bad name!\"",
        "proxy.upstream_sni",
        "not a DNS name",
    );
    one(
        "\"http://app.internal\"",
        "upstream_ca_file = \"missing.pem\"",
        "proxy.upstream_ca_file",
        "only to https://",
    );
    one(
        "[\"http://a:1\", \"https://b:2\"]",
        "",
        "proxy.upstream",
        "mixes http:// and https://",
    );
    one(
        "[\"http://a:1\", \"http://a:1\"]",
        "",
        "proxy.upstream",
        "twice",
    );
    one("[]", "", "proxy.upstream", "lists no server");
    one(
        "\"http://a:1\"",
        "upstream_health_path = \"healthz\"",
        "proxy.upstream_health_path",
        "starting with /",
    );
    one(
        "\"http://a:1\"",
        "upstream_balance = \"random\"",
        "proxy.upstream_balance",
        "round_robin",
    );

    // Every problem at once: a bad URL, an unreadable CA, a half client identity.
    let text = upstream_with(
        "[\"https://a:1\", \"ftp://b\"]",
        "upstream_ca_file = \"missing.pem\"\nupstream_client_key_file = \"garbage.pem\"",
    );
    let found = load_in(dir, &text).unwrap_err();
    let keys: Vec<&str> = found.iter().map(|i| i.key.as_str()).collect();
    assert_eq!(
        keys,
        [
            "proxy.upstream",
            "proxy.upstream_ca_file",
            "proxy.upstream_client_cert_file"
        ],
        "{found:#?}"
    );
}

#[test]
fn each_app_has_its_own_servers_with_the_proxy_upstream_settings() {
    let files = tls_files();
    let text = format!(
        "[proxy]\nupstream_ca_file = {:?}\nupstream_balance = \"least_connections\"\n\n\
         [auth]\nsecret = \"{SECRET}\"\n\n{WIKI}\n\
         [[app]]\nname = \"crm\"\nhosts = [\"crm.example.com\"]\n\
         upstream = [\"https://app.internal:8443\", \"https://app.internal:8444\"]\n",
        files.ca.file_name().unwrap()
    );
    let c = load_in(files.dir.path(), &text).unwrap_or_else(|e| panic!("{e:#?}"));
    let (wiki, crm) = (&c.apps[0].upstream, &c.apps[1].upstream);
    // The plain app ignores the TLS settings; the pool over https takes them.
    assert_eq!(wiki.servers.len(), 1);
    assert!(wiki.tls.is_none());
    assert_eq!(crm.servers.len(), 2);
    assert!(crm.servers.iter().all(|s| s.tls));
    assert_eq!(
        crm.tls
            .as_ref()
            .and_then(|t| t.ca.as_ref())
            .map(|c| c.len()),
        Some(1)
    );
    assert_eq!(crm.balance, config::Balance::LeastConnections);
    assert_eq!(wiki.balance, config::Balance::LeastConnections);

    // A bad server of one app is reported under that app; a CA file no https app uses, once.
    let text = format!(
        "[proxy]\nupstream_ca_file = \"missing.pem\"\n\n[auth]\nsecret = \"{SECRET}\"\n\n{WIKI}\n\
         [[app]]\nname = \"crm\"\nhosts = [\"crm.example.com\"]\nupstream = [\"http://a:1\", \"http://a:1\"]\n"
    );
    let found = load_in(files.dir.path(), &text).unwrap_err();
    let keys: Vec<&str> = found.iter().map(|i| i.key.as_str()).collect();
    assert_eq!(
        keys,
        ["proxy.upstream_ca_file", "app[2].upstream"],
        "{found:#?}"
    );
}
