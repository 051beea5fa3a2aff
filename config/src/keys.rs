//! Every configuration key, declared once: name, kind, default, range or choices, a one-line
//! doc, and the field it feeds. The schema that checks files, the `LATCH_*` environment
//! layering, the validation of ranges and choices and the reference table in
//! `docs/config.md` all come from this list.
//!
//! Adding a key means one declaration here and the typed field it sets. Checks that involve
//! more than one key (exactly one verification key, grace shorter than lease) are in
//! `raw::cross_checks`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::LazyLock;
use std::time::Duration;

use toml::Value;

use crate::apps::HostPattern;
use crate::key::{Choice, Key};
use crate::upstream::{Balance, HealthCheckKind, HostHeader, DEFAULT_HEALTH_INTERVAL};
use crate::{
    AdminConfig, AuthConfig, Config, ControlPlaneConfig, HeaderCase, LockStoreKind, LocksConfig,
    OnStoreError, PathParameters, ProxyConfig, Require, RuleStoreKind, RulesConfig, StashConfig,
    UnknownHost, UpstreamConfig, DEFAULT_HEADER_TIMEOUT, DEFAULT_KEEPALIVE_TIMEOUT,
    DEFAULT_MAX_CONNECTIONS_PER_CLIENT, DEFAULT_MAX_HEADER_BYTES, DEFAULT_SHAPE_SAMPLE_EVERY,
    DEFAULT_UPSTREAM_TIMEOUT,
};

/// Every key, section by section; sections appear in the order of their first key.
pub(crate) static KEYS: LazyLock<Vec<Key>> = LazyLock::new(declare);

fn declare() -> Vec<Key> {
    let auth = auth::AuthSettings::default();
    let trusted = auth::TrustedProxySettings::default();
    vec![
        // [proxy]
        Key::address("proxy.listen", |d, v| d.config.proxy.listen = v)
            .default("127.0.0.1:8080")
            .doc("Address the proxy listens on."),
        // Not `required`: `[[app]]` entries take its place (checked in `raw::cross_checks`).
        Key::checked_list("proxy.upstream", |d, v| {
            // Each URL is judged with the other upstream keys (`raw::cross_checks`).
            if v.is_empty() {
                return Err("lists no server".into());
            }
            d.upstream.urls = v;
            Ok(())
        })
        .allowed("an `http://` or `https://` URL of a host and port, or a list of them (a pool, all of one scheme); required unless `[[app]]` entries are given, and not with them")
        .doc("The protected app, reached by every host name: one server, or a pool of servers that serve it alike."),
        Key::text("proxy.upstream_sni", |d, v| d.upstream.sni = Some(v))
        .allowed("a DNS name or IP address")
        .doc("Name sent as SNI to an `https://` upstream and checked against its certificate. Unset: each server's own host."),
        Key::text("proxy.upstream_ca_file", |d, v| d.upstream.ca_file = Some(v))
        .allowed("a PEM file path, relative to the config file")
        .doc("CA certificates an `https://` upstream's certificate must chain to. Unset: the system's trust store."),
        Key::text("proxy.upstream_client_cert_file", |d, v| d.upstream.client_cert_file = Some(v))
        .allowed("a PEM file path (leaf first, then intermediates), relative to the config file")
        .doc("Certificate Latch presents to an `https://` upstream that asks for one (mutual TLS); with `upstream_client_key_file`."),
        Key::text("proxy.upstream_client_key_file", |d, v| d.upstream.client_key_file = Some(v))
        .allowed("a PEM private key file (PKCS#8, SEC1 or PKCS#1), relative to the config file")
        .doc("Private key of `upstream_client_cert_file`."),
        Key::flag("proxy.upstream_tls_verify", |d, v| d.upstream.verify = v)
        .default(true)
        .doc("Check an `https://` upstream's certificate (chain and name); `false` accepts any certificate and is for tests only."),
        Key::choice("proxy.upstream_host_header", |d, v| d.upstream.host_header = Some(v))
        .default("client")
        .doc("`Host` sent upstream: the client's, as it came, or the upstream server's own `host[:port]`."),
        Key::choice("proxy.upstream_balance", |d, v| d.upstream.balance = Some(v))
        .default("round_robin")
        .doc("How a pool's server is chosen for a request: in turn, or the one with the fewest requests in flight from this instance."),
        Key::choice("proxy.upstream_health_check", |d, v| d.upstream.health_check = Some(v))
        .default("tcp")
        .doc("Active check of a pool's servers: a TCP connection opens, a `GET` of `upstream_health_path` answers 200, or none. A server that fails gets no requests until it passes."),
        Key::text("proxy.upstream_health_path", |d, v| d.upstream.health_path = Some(v))
        .default("/")
        .allowed("a path starting with `/`")
        .doc("Path the `http` health check asks for."),
        Key::seconds("proxy.upstream_health_interval_seconds", 1..=3_600, |d, v| {
            d.upstream.health_interval = Some(v)
        })
        .default(DEFAULT_HEALTH_INTERVAL.as_secs() as i64)
        .doc("Time between two health checks of each server of a pool."),
        Key::flag("proxy.upstream_retry", |d, v| d.upstream.retry = v)
        .default(true)
        .doc("Send an idempotent request (GET, HEAD, OPTIONS, PUT, DELETE) whose connection to one server of a pool fails to another server, each server at most once."),
        Key::choice("proxy.unknown_host", |d, v| d.config.proxy.unknown_host = v)
            .default("misdirected")
            .doc("With `[[app]]` entries, the answer to a request whose host names no app: 421 Misdirected Request, or 404; never another app."),
        Key::checked_text("proxy.prefix", |d, v| {
            let ok = prefix_ok(&v);
            d.config.proxy.prefix = v;
            ok
        })
        .default("/__latch")
        .allowed("a path like `/__latch`: plain characters, no trailing slash, no empty, `.` or `..` segments")
        .doc("Path prefix of the proxy's own endpoints (banner script, WebSocket, status, release, takeover)."),
        Key::integer("proxy.threads", 1..=64, |d, v| d.config.proxy.threads = v as usize)
            .default(2)
            .doc("Worker threads of the proxy service."),
        Key::text("proxy.instance", |d, v| d.config.proxy.instance = v)
        .computed("`<hostname>-<pid>`", || Value::String(default_instance()))
        .doc("Names this instance in lock records and metrics."),
        Key::choice("proxy.inject_at", |d, v| d.config.proxy.inject_at = v)
            .default("head")
            .doc("Where the banner tag goes: before `</head>` (parses only the head) or before `</body>`."),
        Key::choice("proxy.header_case", |d, v| d.config.proxy.header_case = v)
            .default("canonical")
            .doc("Spelling of request header names when Latch adds its own: lower-case (common ones title-cased), or as the client sent them."),
        Key::seconds("proxy.upstream_timeout_seconds", 0..=86_400, |d, v| {
            d.config.proxy.upstream_timeout = (!v.is_zero()).then_some(v)
        })
        .default(DEFAULT_UPSTREAM_TIMEOUT.as_secs() as i64)
        .doc("Longest wait for the next bytes of an ordinary upstream response before 502; `0`: no limit."),
        Key::choice("proxy.path_parameters", |d, v| d.config.proxy.path_parameters = v)
            .default("strip")
            .doc("What `;` path parameters mean to rules: removed before matching, or refused."),
        Key::choice("proxy.public_scheme", |d, Scheme(v)| d.config.proxy.public_scheme = v)
            .default("http")
            .doc("Scheme browsers use to reach the proxy (`https` behind a TLS load balancer); a browser's `Origin` must name it. Requests to `tls.listen` are `https` whatever this says."),
        Key::seconds("proxy.header_timeout_seconds", 1..=3_600, |d, v| {
            d.config.proxy.header_timeout = v
        })
        .default(DEFAULT_HEADER_TIMEOUT.as_secs() as i64)
        .doc("Longest time a client may take to send a whole request head; then 408 and the connection is closed."),
        Key::seconds("proxy.keepalive_timeout_seconds", 1..=86_400, |d, v| {
            d.config.proxy.keepalive_timeout = v
        })
        .default(DEFAULT_KEEPALIVE_TIMEOUT.as_secs() as i64)
        .doc("Longest idle time of a kept-alive connection between two requests."),
        // At most 1 MiB, pingora's own limit, so this bound is always the one that applies.
        Key::integer("proxy.max_header_bytes", 1_024..=1_048_576, |d, v| {
            d.config.proxy.max_header_bytes = v as usize
        })
        .default(DEFAULT_MAX_HEADER_BYTES as i64)
        .doc("Largest request head read; a larger one gets 431."),
        Key::integer("proxy.max_connections_per_client", 0..=1_000_000, |d, v| {
            d.config.proxy.max_connections_per_client = nonzero(v)
        })
        .default(DEFAULT_MAX_CONNECTIONS_PER_CLIENT)
        .doc("Open connections one client address (IPv6: one /64) may hold; `0`: no limit."),
        Key::integer("proxy.shape_sample_every", 0..=1_000_000, |d, v| {
            d.config.proxy.shape_sample_every = v as u32
        })
        .default(DEFAULT_SHAPE_SAMPLE_EVERY)
        .doc("One request in this many, at random, is noted in the request-shape summary (`/shapes`) and, with its user id, in the sample the rule preview replays (kept 15 minutes, at most one every 900 ms after a burst of 250); `1`: every one; `0`: none."),
        // [tls]
        Key::address("tls.listen", |d, v| d.tls.listen = Some(v))
            .doc("Address of the HTTPS listener (HTTP/2 and HTTP/1.1 by ALPN). Unset: no TLS. Needs a certificate: `cert_file` and `key_file`, or `certificates`."),
        Key::text("tls.cert_file", |d, v| d.tls.cert_file = Some(v))
            .allowed("a path, relative to the config file")
            .doc("PEM certificate chain (leaf first) of the default certificate, served when the client's SNI names no certificate of `certificates`. Goes with `key_file`."),
        Key::text("tls.key_file", |d, v| d.tls.key_file = Some(v))
            .allowed("a path, relative to the config file")
            .doc("PEM private key of `cert_file`."),
        Key::list("tls.certificates", |d, v| d.tls.certificates = v)
            .default(Vec::<String>::new())
            .allowed("paths, relative to the config file")
            .doc("PEM files that each hold a chain and its key, chosen by the client's SNI from the DNS names of the certificate (`*.example.com` included). With no default certificate, an SNI naming none of them fails the handshake."),
        Key::address("tls.redirect_listen", |d, v| d.tls.redirect_listen = Some(v))
            .doc("Optional plain-HTTP listener that answers every request with 308 to the same host, path and query over HTTPS; a host no certificate covers gets 421."),
        Key::seconds("tls.hsts_seconds", 0..=63_072_000, |d, v| d.tls.hsts = v)
            .default(0)
            .doc("`Strict-Transport-Security: max-age` sent on the app's responses over TLS (docs/tls.md); `0`: not sent."),
        Key::seconds("tls.reload_seconds", 0..=86_400, |d, v| d.tls.reload = v)
            .default(60)
            .doc("How often the certificate files are read again; a changed, valid file replaces its certificate for new connections. `0`: only on SIGHUP (which always reloads)."),
        // [auth]
        Key::list("auth.algorithms", |d, v| d.config.auth.settings.algorithms = v)
        .default(auth.algorithms.clone())
        .allowed("JWT algorithm names of one family, such as `HS256`, `RS256`, `ES256`")
        .doc("Algorithms a token may be signed with; `none` is never accepted."),
        Key::text("auth.secret", |d, v| d.auth_key.secret = Some(v))
        .allowed("at least 32 bytes")
        .doc("Shared secret for HS* tokens. Give exactly one of `secret`, `public_key_file`, `jwks_file`, `jwks_url`, `discover = true`."),
        Key::text("auth.public_key_file", |d, v| d.auth_key.public_key_file = Some(v))
        .allowed("a path, relative to the config file")
        .doc("PEM public key for RS*, PS*, ES* or EdDSA tokens."),
        Key::text("auth.jwks_file", |d, v| d.auth_key.jwks_file = Some(v))
        .allowed("a path, relative to the config file")
        .doc("JWKS file whose keys verify tokens by `kid`."),
        Key::text("auth.jwks_url", |d, v| d.auth_key.jwks_url = Some(v))
        .allowed("an `https://` URL (`http://` only to a loopback address)")
        .doc("The identity provider's JWKS URL; its keys are fetched, cached and refetched for an unknown `kid`, with no restart."),
        Key::flag("auth.discover", |d, v| d.auth_key.discover = v)
        .default(false)
        .doc("Find the JWKS URL in `{issuer}/.well-known/openid-configuration` (its `issuer` must equal `issuer`), instead of giving `jwks_url`."),
        Key::seconds("auth.jwks_refetch_seconds", 1..=3_600, |d, v| {
            d.auth_key.refetch_interval = v
        })
        .default(30)
        .doc("Least time between two fetches of the key set caused by tokens naming an unknown `kid`."),
        Key::millis("auth.jwks_timeout_ms", 100..=30_000, |d, v| d.auth_key.fetch_timeout = v)
        .default(2_000)
        .doc("Longest a fetch of the key set (or discovery document) may take; also the longest a request waits on a refetch for an unknown `kid`."),
        Key::seconds("auth.jwks_cache_min_seconds", 1..=86_400, |d, v| {
            d.auth_key.min_lifetime = v
        })
        .default(60)
        .doc("Floor on how long fetched keys are kept before the next scheduled fetch, whatever `Cache-Control` or `Expires` say (5 minutes when they say nothing)."),
        Key::seconds("auth.jwks_cache_max_seconds", 60..=604_800, |d, v| {
            d.auth_key.max_lifetime = v
        })
        .default(86_400)
        .doc("Ceiling on how long fetched keys are kept before the next scheduled fetch."),
        Key::checked_text("auth.cookie", |d, v| {
            let ok = cookie_ok(&v);
            d.config.auth.cookie = v;
            ok
        })
        .default("latch_token")
        .allowed("letters, digits, `-`, `_`, `.`")
        .doc("Cookie a browser's token is read from (a bearer `Authorization` header also works)."),
        Key::text("auth.issuer", |d, v| d.config.auth.settings.issuer = Some(v))
        .doc("Required `iss` claim; unset: not checked."),
        Key::list("auth.audience", |d, v| d.config.auth.settings.audience = v)
        .default(auth.audience.clone())
        .doc("Accepted `aud` values; empty: not checked."),
        Key::seconds("auth.leeway_seconds", 0..=600, |d, v| {
            d.config.auth.settings.leeway_seconds = v.as_secs()
        })
        .default(auth.leeway_seconds as i64)
        .doc("Clock skew allowed when checking `exp` and `nbf`."),
        Key::text("auth.user_claim", |d, v| d.config.auth.settings.user_claim = v)
        .default(auth.user_claim.as_str())
        .allowed("a dotted claim path")
        .doc("Claim that identifies the user."),
        Key::text("auth.name_claim", |d, v| d.config.auth.settings.name_claim = v)
        .default(auth.name_claim.as_str())
        .allowed("a dotted claim path")
        .doc("Claim with the user's display name."),
        Key::text("auth.roles_claim", |d, v| d.config.auth.settings.roles_claim = v)
        .default(auth.roles_claim.as_str())
        .allowed("a dotted claim path")
        .doc("Claim with the user's roles."),
        Key::checked_text("auth.login_url", |d, v| {
            let ok = if v.starts_with("https://") || v.starts_with("http://") || v.starts_with('/') {
                Ok(())
            } else {
                Err("must be an absolute http(s) URL or a path".to_string())
            };
            d.config.auth.login_url = Some(v);
            ok
        })
        .allowed("an absolute http(s) URL or a path")
        .doc("Where browsers without a valid token are sent (302); `{url}` becomes the refused URL. Unset: 401."),
        Key::choice("auth.require", |d, v| d.config.auth.require = v)
            .default("protected")
            .doc("Which requests need a valid token: only rule-matched ones, or all."),
        // [trusted_proxy]
        Key::list("trusted_proxy.peers", |d, v| d.trusted.peers = v)
        .default(Vec::<String>::new())
        .allowed("IP networks (`10.0.0.0/8`, `fd00::/8`) or addresses")
        .doc("Peers (the TCP address a request comes from) that are an authentication proxy, such as oauth2-proxy or Pomerium: only their identity headers count. Empty: none, and the headers below mean nothing."),
        Key::text("trusted_proxy.user_header", |d, v| d.trusted.user_header = v)
        .default(trusted.user_header.as_str())
        .allowed("a header name; empty: not used")
        .doc("Header in which a trusted peer names the user."),
        Key::text("trusted_proxy.email_header", |d, v| d.trusted.email_header = v)
        .default(trusted.email_header.as_str())
        .allowed("a header name; empty: not used")
        .doc("Header with the user's email: the user when `user_header` is absent, the display name when `name_header` is."),
        Key::text("trusted_proxy.name_header", |d, v| d.trusted.name_header = v)
        .default(trusted.name_header.as_str())
        .allowed("a header name; empty: not used")
        .doc("Header with the user's display name."),
        Key::text("trusted_proxy.groups_header", |d, v| d.trusted.groups_header = v)
        .default(trusted.groups_header.as_str())
        .allowed("a header name; empty: not used")
        .doc("Header with the user's groups, comma-separated; they are the user's roles."),
        Key::text("trusted_proxy.assertion_header", |d, v| d.trusted.assertion_header = v)
        .default("")
        .allowed("a header name; empty: not used")
        .doc("Header with a signed JWT assertion (Pomerium's `X-Pomerium-Jwt-Assertion`), verified like a token with the `[auth]` keys, algorithms, issuer and audience; it wins over the other headers."),
        // [oidc]
        Key::text("oidc.issuer", |d, v| d.oidc.issuer = Some(v))
        .allowed("an `https://` URL (`http://` only to a loopback address)")
        .doc("The OpenID Provider's issuer; setting any `oidc` key turns sign-in on. Its discovery document gives the endpoints and the keys ID tokens are checked with."),
        Key::text("oidc.client_id", |d, v| d.oidc.client_id = Some(v))
        .doc("The client id registered with the provider; ID tokens must name it in `aud`."),
        Key::text("oidc.client_secret", |d, v| d.oidc.client_secret = Some(v))
        .doc("The client secret (sent with HTTP Basic authentication to the token endpoint). Or `client_secret_file`."),
        Key::text("oidc.client_secret_file", |d, v| d.oidc.client_secret_file = Some(v))
        .allowed("a file path, relative to the config file")
        .doc("File holding the client secret (a trailing newline is ignored)."),
        Key::list("oidc.scopes", |d, v| d.oidc.scopes = v)
        .default(vec!["openid".to_owned(), "profile".to_owned(), "email".to_owned()])
        .allowed("scope names, including `openid`")
        .doc("Scopes asked for at sign-in."),
        Key::checked_list("oidc.auth_params", |d, v| {
            d.oidc.auth_params = v
                .iter()
                .map(|entry| auth_param(entry))
                .collect::<Result<_, _>>()?;
            Ok(())
        })
        .default(Vec::<String>::new())
        .allowed("`name=value` entries; not a parameter Latch sets itself")
        .doc("Extra parameters of the authorization request, for providers that want their own: Google gives a refresh token only with `access_type=offline` (and again for a returning user only with `prompt=consent`). Latch's own (`response_type`, `client_id`, `redirect_uri`, `scope`, `state`, `nonce`, `code_challenge`, `code_challenge_method`) cannot be set here."),
        Key::text("oidc.redirect_url", |d, v| d.oidc.redirect_url = Some(v))
        .allowed("an absolute URL whose path is `{prefix}/callback`")
        .doc("The callback URL registered with the provider. Unset: `proxy.public_scheme` + the request's `Host` + `{prefix}/callback`."),
        Key::text("oidc.post_logout_redirect_uri", |d, v| d.oidc.post_logout_redirect_uri = Some(v))
        .allowed("an absolute http(s) URL")
        .doc("Where the provider sends the browser after a logout (RP-initiated logout's `post_logout_redirect_uri`; register it with the provider). Unset: `proxy.public_scheme` + the request's `Host` + `/`."),
        Key::text("oidc.cookie_secret", |d, v| d.oidc.cookie_secret = Some(v))
        .allowed("at least 32 bytes")
        .doc("Key of the encrypted sign-in cookies; every instance behind one address needs the same. Or `cookie_secret_file`."),
        Key::text("oidc.cookie_secret_file", |d, v| d.oidc.cookie_secret_file = Some(v))
        .allowed("a file path, relative to the config file")
        .doc("File holding the cookie secret (a trailing newline is ignored)."),
        Key::seconds("oidc.session_seconds", 0..=2_592_000, |d, v| d.oidc.session = v)
        .default(0)
        .doc("How long a sign-in lasts at most; 0: until the ID token's `exp`, or 12 hours (43200) for a session that renews itself."),
        Key::flag("oidc.renew", |d, v| d.oidc.renew = v)
        .default(true)
        .doc("Renew a session with the refresh token the provider gives at sign-in, before its ID token ends (ask for one with the `offline_access` scope where the provider wants it). A refused renewal ends the session on every instance."),
        // [locks]
        Key::checked_text("locks.store", |d, v| {
            d.config.locks.store = lock_store(v)?;
            Ok(())
        })
        .default("memory")
        .allowed("`memory`, or a `redis://`, `rediss://`, `redis+cluster://` or `rediss+cluster://` URL")
        .doc("Where locks live: in this process, or in Redis shared by every instance."),
        Key::seconds("locks.lease_seconds", 5..=86_400, |d, v| d.config.locks.lease = v)
            .default(30)
            .doc("A lock not renewed for this long expires."),
        Key::seconds("locks.grace_seconds", 0..=3_600, |d, v| d.config.locks.grace = v)
            .default(10)
            .doc("How long a lock lasts after its holder's last banner socket closes; shorter than the lease."),
        Key::seconds("locks.idle_seconds", 0..=86_400, |d, v| d.config.locks.idle = v)
            .default(900)
            .doc("A holder with no activity (input, pointer, keys, focus) in any tab for this long is released; `0`: never. A rule may set its own."),
        Key::seconds("locks.idle_warning_seconds", 0..=3_600, |d, v| {
            d.config.locks.idle_warning = v
        })
        .default(60)
        .doc("How long before the idle release the holder's banners warn, with a *Stay* button."),
        Key::seconds("locks.offer_seconds", 5..=3_600, |d, v| d.config.locks.offer = v)
            .default(60)
            .doc("How long a freed lock is reserved for the head of its wait queue before it passes to the next."),
        Key::integer("locks.queue_max", 1..=1_000, |d, v| {
            d.config.locks.queue_max = usize::try_from(v).unwrap_or(usize::MAX)
        })
        .default(100)
        .doc("Most people waiting in line for one resource."),
        Key::choice("locks.on_store_error", |d, v| d.config.locks.on_store_error = v)
            .default("deny")
            .doc("What a rule-matched request gets while the lock store fails: 503, or through."),
        Key::millis("locks.store_timeout_ms", 10..=1_000, |d, v| {
            d.config.locks.store_timeout = v
        })
        .default(500)
        .doc("Longest wait on the lock store before `on_store_error` applies."),
        // At most 1,000: the Redis store checks that many aged index entries when a user reaches
        // the cap.
        Key::integer("locks.max_per_user", 0..=1_000, |d, v| {
            d.config.locks.max_per_user = nonzero(v)
        })
        .default(50)
        .doc("Live locks one user may hold (a rule may set its own); `0`: no cap."),
        Key::integer("locks.claims_per_minute", 0..=60_000, |d, v| {
            d.config.locks.claims_per_minute = nonzero(v)
        })
        .default(120)
        .doc("New claims one user may make per minute on one instance; renewals are not counted; `0`: off."),
        // [rules]
        Key::checked_text("rules.store", |d, v| {
            d.config.rules.store = rule_store(v, d.base)?;
            Ok(())
        })
        .default("rules.toml")
        .allowed("a file path, relative to the config file, or a `mongodb://` or `mongodb+srv://` URL")
        .doc("Where the rules live."),
        Key::seconds("rules.poll_seconds", 1..=3_600, |d, v| d.config.rules.poll = v)
            .default(2)
            .doc("How often the rule store is checked for changes."),
        // [control_plane]
        Key::address("control_plane.listen", |d, v| d.config.control_plane.listen = v)
            .default("127.0.0.1:9090")
            .doc("Address of the admin API and UI."),
        Key::checked_list("control_plane.admin_roles", |d, v| {
            let ok = if v.is_empty() || v.iter().any(String::is_empty) {
                Err("must list at least one non-empty role".to_string())
            } else {
                Ok(())
            };
            d.config.control_plane.admin_roles = v;
            ok
        })
        .default(vec!["admin"])
        .allowed("at least one non-empty role")
        .doc("A token with one of these roles may use the control plane."),
        Key::choice("control_plane.public_scheme", |d, Scheme(v)| {
            d.config.control_plane.public_scheme = v
        })
        .default("http")
        .doc("As `proxy.public_scheme`, for the control plane's writes."),
        // [admin]
        Key::address("admin.listen", |d, v| d.config.admin.listen = v)
            .default("127.0.0.1:9100")
            .doc("Address of the proxy's `/metrics`, `/healthz` and `/readyz`."),
        // [[app]]: one table per app; these keys are read once per entry.
        Key::checked_text("app.name", |d, v| {
            let ok = crate::apps::app_name_ok(&v);
            d.app.name = v;
            ok
        })
        .required("the app's name")
        .allowed("`[a-z0-9_-]{1,32}`, unique")
        .doc("Names the app: rules name it in `app`, and its lock keys start with it (`wiki/doc:1`)."),
        Key::checked_list("app.hosts", |d, v| {
            if v.is_empty() {
                return Err("must list at least one host name".into());
            }
            let mut bad = Vec::new();
            for host in &v {
                match HostPattern::parse(host) {
                    Ok(pattern) => d.app.hosts.push(pattern),
                    Err(message) => bad.push(message),
                }
            }
            if bad.is_empty() { Ok(()) } else { Err(bad.join("; ")) }
        })
        .required("the host names that reach the app")
        .allowed("host names (`wiki.example.com`) and one-label wildcards (`*.example.com`), without port; each in one app only")
        .doc("The host names whose requests go to this app; an exact name wins over another app's wildcard."),
        Key::checked_list("app.upstream", |d, v| {
            // Judged with the `[proxy]` upstream settings (`raw::cross_checks`).
            if v.is_empty() {
                return Err("lists no server".into());
            }
            d.app_upstream = v;
            Ok(())
        })
        .required("the URL of the app")
        .allowed("as `proxy.upstream`: one URL, or a list of them (a pool)")
        .doc("Where this app lives, as `proxy.upstream`; the `proxy.upstream_*` settings (TLS, Host, balance, health checks, retries) apply to it."),
        Key::seconds("app.lease_seconds", 5..=86_400, |d, v| d.app.lease = Some(v))
            .doc("Overrides `locks.lease_seconds` for this app's rules; a rule's own value wins."),
        Key::seconds("app.grace_seconds", 0..=3_600, |d, v| d.app.grace = Some(v))
            .doc("Overrides `locks.grace_seconds` for this app's rules; a rule's own value wins."),
        Key::seconds("app.idle_seconds", 0..=86_400, |d, v| d.app.idle = Some(v))
            .doc("Overrides `locks.idle_seconds` for this app's rules; a rule's own value wins."),
        // [stash]
        Key::flag("stash.enabled", |d, v| d.config.stash.enabled = v)
            .default(true)
            .doc("Keep the body of a write refused for want of the lock, for its sender to read back."),
        Key::integer("stash.max_bytes", 1_024..=16_777_216, |d, v| d.config.stash.max_bytes = v)
            .default(1_048_576)
            .doc("Largest request body kept; a larger one is not kept (the 423 answer says so)."),
        Key::seconds("stash.ttl_seconds", 60..=2_592_000, |d, v| d.config.stash.ttl = v)
            .default(86_400)
            .doc("How long a kept body stays readable."),
        Key::integer("stash.max_per_user", 1..=1_000, |d, v| {
            d.config.stash.max_per_user = v as u32
        })
        .default(20)
        .doc("Most kept bodies one user has at once; past it the oldest is dropped."),
        Key::integer("stash.max_bytes_per_user", 1_024..=268_435_456, |d, v| {
            d.config.stash.max_bytes_per_user = v
        })
        .default(8_388_608)
        .doc("Most bytes of kept bodies one user has at once; past it the oldest are dropped. At least `max_bytes`."),
    ]
}

/// The shape every key's setter fills in. No value here survives a load: every key with a
/// default sets its field, and a key without one leaves a field whose empty value means unset.
pub(crate) fn blank() -> Config {
    let unspecified = SocketAddr::from(([0, 0, 0, 0], 0));
    Config {
        proxy: ProxyConfig {
            listen: unspecified,
            upstream: UpstreamConfig::plain("", 0),
            prefix: String::new(),
            threads: 0,
            instance: String::new(),
            inject_at: inject::Placement::Head,
            header_case: HeaderCase::Canonical,
            upstream_timeout: None,
            path_parameters: PathParameters::Strip,
            public_scheme: "http",
            header_timeout: Duration::ZERO,
            keepalive_timeout: Duration::ZERO,
            max_header_bytes: 0,
            max_connections_per_client: None,
            shape_sample_every: 0,
            unknown_host: UnknownHost::Misdirected,
        },
        auth: AuthConfig {
            settings: auth::AuthSettings::default(),
            cookie: String::new(),
            login_url: None,
            require: Require::Protected,
        },
        locks: LocksConfig {
            store: LockStoreKind::Memory,
            lease: Duration::ZERO,
            grace: Duration::ZERO,
            idle: Duration::ZERO,
            idle_warning: Duration::ZERO,
            on_store_error: OnStoreError::Deny,
            store_timeout: Duration::ZERO,
            max_per_user: None,
            claims_per_minute: None,
            offer: Duration::ZERO,
            queue_max: 0,
        },
        rules: RulesConfig {
            store: RuleStoreKind::File(PathBuf::new()),
            poll: Duration::ZERO,
        },
        control_plane: ControlPlaneConfig {
            listen: unspecified,
            admin_roles: Vec::new(),
            public_scheme: "http",
        },
        admin: AdminConfig {
            listen: unspecified,
        },
        stash: StashConfig {
            enabled: false,
            max_bytes: 0,
            ttl: Duration::ZERO,
            max_per_user: 0,
            max_bytes_per_user: 0,
        },
        trusted_proxy: None,
        oidc: None,
        tls: None,
        apps: Vec::new(),
    }
}

impl Choice for inject::Placement {
    const CHOICES: &'static [(&'static str, Self)] = &[
        ("head", inject::Placement::Head),
        ("body_end", inject::Placement::BodyEnd),
    ];
}

impl Choice for HeaderCase {
    const CHOICES: &'static [(&'static str, Self)] = &[
        ("canonical", HeaderCase::Canonical),
        ("preserve", HeaderCase::Preserve),
    ];
}

impl Choice for PathParameters {
    const CHOICES: &'static [(&'static str, Self)] = &[
        ("strip", PathParameters::Strip),
        ("reject", PathParameters::Reject),
    ];
}

impl Choice for UnknownHost {
    const CHOICES: &'static [(&'static str, Self)] = &[
        ("misdirected", UnknownHost::Misdirected),
        ("not_found", UnknownHost::NotFound),
    ];
}

impl Choice for HostHeader {
    const CHOICES: &'static [(&'static str, Self)] = &[
        ("client", HostHeader::Client),
        ("upstream", HostHeader::Upstream),
    ];
}

impl Choice for Balance {
    const CHOICES: &'static [(&'static str, Self)] = &[
        ("round_robin", Balance::RoundRobin),
        ("least_connections", Balance::LeastConnections),
    ];
}

impl Choice for HealthCheckKind {
    const CHOICES: &'static [(&'static str, Self)] = &[
        ("tcp", HealthCheckKind::Tcp),
        ("http", HealthCheckKind::Http),
        ("none", HealthCheckKind::None),
    ];
}

impl Choice for Require {
    const CHOICES: &'static [(&'static str, Self)] =
        &[("protected", Require::Protected), ("all", Require::All)];
}

impl Choice for OnStoreError {
    const CHOICES: &'static [(&'static str, Self)] =
        &[("deny", OnStoreError::Deny), ("allow", OnStoreError::Allow)];
}

/// `public_scheme`: how browsers reach a listener, which their `Origin` headers must name.
#[derive(Clone, Copy)]
struct Scheme(&'static str);

impl Choice for Scheme {
    const CHOICES: &'static [(&'static str, Self)] =
        &[("http", Scheme("http")), ("https", Scheme("https"))];
}

/// A count where `0` means "no limit".
fn nonzero(n: u64) -> Option<u32> {
    u32::try_from(n).ok().filter(|n| *n > 0)
}

pub(crate) fn resolve(base: &Path, p: &str) -> PathBuf {
    let path = Path::new(p);
    if path.is_absolute() {
        path.to_path_buf()
    } else {
        base.join(path)
    }
}

/// Requests are matched against the prefix after normalization, so a prefix that is not itself
/// normalized (`//x`, `/a/../b`) could never be reached.
fn prefix_ok(prefix: &str) -> Result<(), String> {
    let normalized = rules::normalize_path(prefix).is_ok_and(|p| p == prefix);
    if !normalized
        || prefix.len() < 2
        || prefix.ends_with('/')
        || !prefix[1..]
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_./".contains(&b))
    {
        return Err(format!(
            "{prefix:?} must be a path like /__latch (plain characters, no trailing slash, \
             no empty, '.' or '..' segments)"
        ));
    }
    Ok(())
}

fn cookie_ok(cookie: &str) -> Result<(), String> {
    if cookie.is_empty()
        || !cookie
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
    {
        return Err(format!("{cookie:?} is not a valid cookie name"));
    }
    Ok(())
}

fn lock_store(url: String) -> Result<LockStoreKind, String> {
    const REDIS: &[&str] = &[
        "redis://",
        "rediss://",
        "redis+cluster://",
        "rediss+cluster://",
    ];
    match url.as_str() {
        "memory" => Ok(LockStoreKind::Memory),
        _ if REDIS.iter().any(|scheme| url.starts_with(scheme)) => Ok(LockStoreKind::Redis(url)),
        other => Err(format!(
            "{other:?} is neither \"memory\" nor a redis:// URL"
        )),
    }
}

/// `rules.store`: a MongoDB URL, or a file path relative to the config's directory.
fn rule_store(store: String, base: &Path) -> Result<RuleStoreKind, String> {
    if store.starts_with("mongodb://") || store.starts_with("mongodb+srv://") {
        Ok(RuleStoreKind::Mongo(store))
    } else if store.contains("://") {
        Err(format!(
            "{store:?} is neither a file path nor a mongodb:// URL"
        ))
    } else {
        Ok(RuleStoreKind::File(resolve(base, &store)))
    }
}

/// The default `proxy.instance`: this host's name and the process id.
fn default_instance() -> String {
    let host = std::fs::read_to_string("/etc/hostname")
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "latch".into());
    format!("{host}-{}", std::process::id())
}

/// The parameters of the authorization request Latch sets itself: an extra one of the same
/// name would change the flow or break its checks.
const OWN_AUTH_PARAMS: &[&str] = &[
    "response_type",
    "client_id",
    "redirect_uri",
    "scope",
    "state",
    "nonce",
    "code_challenge",
    "code_challenge_method",
];

/// One `oidc.auth_params` entry, `name=value`, as its name and value.
fn auth_param(entry: &str) -> Result<(String, String), String> {
    let (name, value) = entry
        .split_once('=')
        .ok_or_else(|| format!("{entry:?} is not name=value"))?;
    let name_ok = !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'));
    if !name_ok {
        return Err(format!(
            "{name:?} is not a parameter name (letters, digits, '_', '-', '.')"
        ));
    }
    if OWN_AUTH_PARAMS.contains(&name) {
        return Err(format!(
            "{name:?} is set by Latch itself and cannot be changed here"
        ));
    }
    if value.chars().any(char::is_control) {
        return Err(format!("the value of {name:?} holds a control character"));
    }
    Ok((name.to_owned(), value.to_owned()))
}
