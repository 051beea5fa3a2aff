//! Latch's configuration (docs/config.md, docs/operations.md).
//!
//! External formats — the TOML file and `LATCH_<SECTION>_<KEY>` environment variables — are
//! layered into one raw TOML table, which is then converted into the single internal [`Config`]
//! type. Precedence is stated once, in [`Config::load`]: built-in defaults, then the file, then
//! the environment. Command-line flags are applied by the binary on the finished `Config`.
//!
//! Every key is declared once, in `keys.rs`: the file schema, the environment variable names,
//! the range and choice checks and the reference table ([`reference_markdown`], kept in
//! `docs/config.md`) all come from that declaration.
//!
//! Loading never stops at the first problem: every problem is collected as an [`Issue`] naming
//! the file, the key and the reason, so `latch check` can print them all at once.
//!
//! This crate knows the shape of the configuration and how to read the files it names (keys,
//! JWKS). It must not know how the proxy or the control plane use it.

mod apps;
mod key;
mod keys;
mod raw;
mod reference;
mod tls;
mod upstream;

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use apps::{app_for, host_of, AppConfig, HostPattern, MAX_APP_NAME};
pub use raw::ENV_PREFIX;
pub use reference::reference_markdown;
pub use tls::{load_certificate, name_covers, parse_certificate, LoadedCertificate};
pub use upstream::{
    build as build_upstream, parse_url as parse_upstream_url, Balance, ClientIdentity, HealthCheck,
    HealthCheckKind, HostHeader, Server, UpstreamConfig, UpstreamDraft, UpstreamTls,
    DEFAULT_HEALTH_INTERVAL, MAX_SERVERS,
};

/// One configuration problem: where it is and what is wrong.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Issue {
    /// The file (or `environment`) the value came from.
    pub source: String,
    /// Dotted key, e.g. `auth.secret`. Empty for whole-file problems such as a syntax error.
    pub key: String,
    pub message: String,
}

impl fmt::Display for Issue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.key.is_empty() {
            write!(f, "{}: {}", self.source, self.message)
        } else {
            write!(f, "{}: {}: {}", self.source, self.key, self.message)
        }
    }
}

/// The whole, validated configuration.
#[derive(Clone, Debug)]
pub struct Config {
    pub proxy: ProxyConfig,
    pub auth: AuthConfig,
    pub locks: LocksConfig,
    pub rules: RulesConfig,
    pub control_plane: ControlPlaneConfig,
    pub admin: AdminConfig,
    pub stash: StashConfig,
    /// Peers whose identity headers are believed (`[trusted_proxy]`); `None`: none are.
    pub trusted_proxy: Option<auth::TrustedProxy>,
    /// Sign-in with an OpenID Provider (`[oidc]`); `None`: Latch does not sign users in.
    pub oidc: Option<OidcConfig>,
    /// `[[app]]` entries, in file order. Empty: one app, `proxy.upstream`, reached by every
    /// host name, whose lock keys carry no app name.
    pub apps: Vec<AppConfig>,
    /// The HTTPS listener (`[tls]`); `None`: the proxy speaks plain HTTP only.
    pub tls: Option<TlsConfig>,
}

/// `[tls]`: the HTTPS listener, its certificates and the plain listener that redirects to it.
#[derive(Clone, Debug)]
pub struct TlsConfig {
    pub listen: SocketAddr,
    /// The default certificate: its chain file and its key file, served to a client whose SNI
    /// names no other certificate (or that sends none).
    pub default_certificate: Option<(PathBuf, PathBuf)>,
    /// Files that each hold a chain and its key, chosen by SNI from their names.
    pub certificates: Vec<PathBuf>,
    /// A plain listener that answers every request with a redirect to the HTTPS listener.
    pub redirect_listen: Option<SocketAddr>,
    /// `Strict-Transport-Security: max-age` on responses over TLS; `None`: not sent.
    pub hsts: Option<Duration>,
    /// How often the certificate files are read again for changes; `None`: only on SIGHUP.
    pub reload: Option<Duration>,
}

/// `[oidc]`: Latch as an OpenID Connect relying party (authorization code flow with PKCE).
#[derive(Clone)]
pub struct OidcConfig {
    /// The provider's issuer identifier; its discovery document gives the endpoints and keys.
    pub issuer: String,
    pub client_id: String,
    pub client_secret: String,
    /// Always holds `openid`.
    pub scopes: Vec<String>,
    /// Extra parameters of the authorization request (`oidc.auth_params`), none of Latch's own.
    pub auth_params: Vec<(String, String)>,
    /// The public URL of `{prefix}/callback`; `None`: built from `proxy.public_scheme` and the
    /// request's `Host`.
    pub redirect_url: Option<String>,
    /// Where the provider sends the browser after a logout; `None`: the site's `/`, from
    /// `proxy.public_scheme` and the request's `Host`.
    pub post_logout_redirect_uri: Option<String>,
    /// Key material of the sign-in cookies; at least [`auth::MIN_COOKIE_SECRET_BYTES`].
    pub cookie_secret: Vec<u8>,
    /// How long a session lasts; `None`: until the ID token's `exp`, or 12 hours for one
    /// that renews itself.
    pub session_lifetime: Option<Duration>,
    /// Whether sessions renew themselves with the provider's refresh token.
    pub renew: bool,
}

impl OidcConfig {
    /// The client's registration, for the relying party.
    pub fn client(&self) -> auth::ClientSettings {
        auth::ClientSettings {
            issuer: self.issuer.clone(),
            client_id: self.client_id.clone(),
            client_secret: self.client_secret.clone(),
            scopes: self.scopes.clone(),
            auth_params: self.auth_params.clone(),
            session_lifetime: self.session_lifetime,
            renew: self.renew,
        }
    }
}

/// Secrets stay out of logs and `Debug` output.
impl fmt::Debug for OidcConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OidcConfig")
            .field("issuer", &self.issuer)
            .field("client_id", &self.client_id)
            .field("client_secret", &"<redacted>")
            .field("scopes", &self.scopes)
            .field("auth_params", &self.auth_params)
            .field("redirect_url", &self.redirect_url)
            .field("post_logout_redirect_uri", &self.post_logout_redirect_uri)
            .field("cookie_secret", &"<redacted>")
            .field("session_lifetime", &self.session_lifetime)
            .field("renew", &self.renew)
            .finish()
    }
}

#[derive(Clone, Debug)]
pub struct ProxyConfig {
    pub listen: SocketAddr,
    /// The protected app: its servers, how they are reached and chosen.
    pub upstream: UpstreamConfig,
    /// Reserved path prefix served by the proxy itself; starts with `/`, no trailing slash.
    pub prefix: String,
    /// Worker threads for the proxy service. Default 2: pingora's own default of 1 leaves a
    /// second core idle on the smallest machines we target.
    pub threads: usize,
    /// Identifies this instance in lock records and metrics. Default: hostname-pid.
    pub instance: String,
    /// Where the banner tag goes in an HTML page. Default: before `</head>`, which parses only
    /// the head; `body_end` parses the whole page to put it before `</body>`.
    pub inject_at: inject::Placement,
    /// How the names of a request's headers are spelled when Latch adds its own to it.
    pub header_case: HeaderCase,
    /// How long the upstream may take to send the next bytes of an ordinary response (not a
    /// WebSocket) before the request fails with 502: a hung app cannot hold a request for
    /// longer. `None`: no limit, the request lasts as long as its client waits.
    pub upstream_timeout: Option<Duration>,
    /// What a request path's `;` parameters mean to the rules.
    pub path_parameters: PathParameters,
    /// The scheme browsers use to reach this listener: `http` (the default: the proxy serves
    /// plain HTTP), or `https` behind a TLS-terminating load balancer. A browser's `Origin` on
    /// the banner socket, release and takeover must name it.
    pub public_scheme: &'static str,
    /// How long a client may take to send a whole request head, from its first byte (or, on a
    /// new connection, from the accept) to its blank line. A connection that has sent part of a
    /// head by then gets 408 and is closed; one that has sent nothing is closed. Without it a
    /// client that never finishes its head holds a connection, a descriptor and a task for as
    /// long as it likes. Default [`DEFAULT_HEADER_TIMEOUT`].
    pub header_timeout: Duration,
    /// How long a kept-alive connection may sit idle between the end of one response and the
    /// first byte of the next request before it is closed. Longer than
    /// [`ProxyConfig::header_timeout`] so browsers can reuse their connections, but bounded, so
    /// idle connections do not pile up. Default [`DEFAULT_KEEPALIVE_TIMEOUT`].
    pub keepalive_timeout: Duration,
    /// The largest request head (request line and headers, up to its blank line) the proxy
    /// reads; a larger one gets 431 and is never forwarded. At most 1 MiB, pingora's own limit,
    /// so this bound is always the one that applies. Default [`DEFAULT_MAX_HEADER_BYTES`].
    pub max_header_bytes: usize,
    /// How many connections one client address may hold open at once; past it a new one is
    /// closed at once. IPv6 clients are counted by their /64 prefix, the block one host usually
    /// has. Every banner socket counts, and users behind one NAT or forward proxy share one
    /// address: raise it (or turn it off) for them. `None`: no limit. Default
    /// [`DEFAULT_MAX_CONNECTIONS_PER_CLIENT`].
    pub max_connections_per_client: Option<u32>,
    /// One request in this many, drawn at random, goes into the request-shape summary; `0`
    /// keeps none. Default [`DEFAULT_SHAPE_SAMPLE_EVERY`].
    pub shape_sample_every: u32,
    /// What a request gets when `[[app]]` entries are given and its host names none of them.
    pub unknown_host: UnknownHost,
}

/// The answer to a request whose host names no app ([`ProxyConfig::unknown_host`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UnknownHost {
    /// 421 Misdirected Request (RFC 9110 §15.5.20): this server does not answer for that
    /// host. The default.
    Misdirected,
    /// 404 Not Found, for deployments that would rather not say more.
    NotFound,
}

impl UnknownHost {
    pub fn status(self) -> u16 {
        match self {
            UnknownHost::Misdirected => 421,
            UnknownHost::NotFound => 404,
        }
    }
}

/// [`ProxyConfig::upstream_timeout`] unless the config says otherwise.
pub const DEFAULT_UPSTREAM_TIMEOUT: Duration = Duration::from_secs(300);

/// [`ProxyConfig::header_timeout`] unless the config says otherwise: 10 s is ample for any
/// client on any network to send a head, and short enough that silent connections do not
/// accumulate.
pub const DEFAULT_HEADER_TIMEOUT: Duration = Duration::from_secs(10);

/// [`ProxyConfig::keepalive_timeout`] unless the config says otherwise: pingora's own 60 s for a
/// new connection, now applied between every two requests.
pub const DEFAULT_KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(60);

/// [`ProxyConfig::max_header_bytes`] unless the config says otherwise: 64 KiB, about Envoy's
/// default (60 KiB). Room for large cookies, and for a bearer token over the verifier's own
/// 16 KiB bound to reach it and be refused as malformed, with a 401 that says so, rather than
/// with a 431.
pub const DEFAULT_MAX_HEADER_BYTES: usize = 64 * 1024;

/// [`ProxyConfig::shape_sample_every`] unless the config says otherwise: enough requests to
/// find every shape a person uses in a few visits, at an eighth of the cost of noting each.
pub const DEFAULT_SHAPE_SAMPLE_EVERY: u32 = 8;

/// [`ProxyConfig::max_connections_per_client`] unless the config says otherwise: far more than
/// a browser opens (6 per host, plus its banner sockets), few enough that one address cannot
/// take every descriptor.
pub const DEFAULT_MAX_CONNECTIONS_PER_CLIENT: u32 = 256;

/// How the header names of a request Latch adds its own headers to reach the upstream.
///
/// Header names are case-insensitive (RFC 9110 §5.1), and pingora keeps the client's spelling
/// in a second map, which makes every added header cost a name parse, two copies and two map
/// inserts. Only the spelling of the client's non-standard names is at stake.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HeaderCase {
    /// Lower-case, as HTTP/2 requires and HAProxy and Envoy send them, except a dozen common
    /// names pingora title-cases (`Host`, `Content-Type`, …). The default.
    Canonical,
    /// Every name exactly as the client sent it.
    Preserve,
}

/// How rules see `;` path parameters; defined with the rules, which apply it.
pub use rules::PathParameters;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Require {
    /// Only rule-matched requests need a token (the default).
    Protected,
    /// Every request needs a valid token.
    All,
}

#[derive(Clone, Debug)]
pub struct AuthConfig {
    pub settings: auth::AuthSettings,
    pub cookie: String,
    /// `{url}` is replaced by the percent-encoded URL of the refused request.
    pub login_url: Option<String>,
    pub require: Require,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OnStoreError {
    Deny,
    Allow,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LockStoreKind {
    Memory,
    /// A `redis://`, `rediss://` or `redis+cluster://` URL.
    Redis(String),
}

#[derive(Clone, Debug)]
pub struct LocksConfig {
    pub store: LockStoreKind,
    pub lease: Duration,
    pub grace: Duration,
    /// How long a holder may show no activity before the lock is released (`idle_seconds`,
    /// default 900); zero means never. A rule may set its own.
    pub idle: Duration,
    /// How long before the idle release the holder is warned (`idle_warning_seconds`, 60).
    pub idle_warning: Duration,
    pub on_store_error: OnStoreError,
    /// How long a request waits on the lock store before `on_store_error` applies. Default 500 ms.
    pub store_timeout: Duration,
    /// Most distinct live locks one user may hold (`max_per_user`, default 50; `0` in the file
    /// means no cap and reads as `None`). A rule may set its own. Past it a new claim gets 429;
    /// renewals of locks already held always pass.
    pub max_per_user: Option<u32>,
    /// New claims one user may make per minute on one proxy instance (`claims_per_minute`,
    /// default 120; `0` in the file turns it off and reads as `None`). Renewals are not counted.
    pub claims_per_minute: Option<u32>,
    /// How long a freed resource is reserved for the head of its wait queue
    /// (`offer_seconds`, default 60 s). A rule may set its own.
    pub offer: Duration,
    /// Most people waiting in line for one resource (`queue_max`, default 100).
    pub queue_max: usize,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RuleStoreKind {
    File(PathBuf),
    Mongo(String),
}

#[derive(Clone, Debug)]
pub struct RulesConfig {
    pub store: RuleStoreKind,
    pub poll: Duration,
}

#[derive(Clone, Debug)]
pub struct ControlPlaneConfig {
    pub listen: SocketAddr,
    pub admin_roles: Vec<String>,
    /// As [`ProxyConfig::public_scheme`], for the control plane's writes.
    pub public_scheme: &'static str,
}

/// What the proxy keeps of writes it refuses (docs/http.md, "Unsaved changes").
#[derive(Clone, Debug)]
pub struct StashConfig {
    /// Whether refused writes are kept at all. Default on.
    pub enabled: bool,
    /// Largest body kept; a larger one is refused unkept. Default 1 MiB.
    pub max_bytes: u64,
    /// How long an entry is kept. Default 24 h.
    pub ttl: Duration,
    /// Most entries one user has at once; past it the oldest go. Default 20.
    pub max_per_user: u32,
    /// Most body bytes one user has at once, all entries together; past it the oldest go.
    /// Default 8 MiB; never below `max_bytes`.
    pub max_bytes_per_user: u64,
}

#[derive(Clone, Debug)]
pub struct AdminConfig {
    pub listen: SocketAddr,
}

impl Config {
    /// Loads `path`, applies the environment, and validates everything.
    ///
    /// Precedence, lowest first: built-in defaults, the file, `LATCH_<SECTION>_<KEY>` variables.
    pub fn load(
        path: &Path,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Config, Vec<Issue>> {
        let source = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| {
            vec![Issue {
                source: source.clone(),
                key: String::new(),
                message: format!("cannot read the file: {e}"),
            }]
        })?;
        let base = path.parent().unwrap_or(Path::new("."));
        Self::from_toml_str(&text, &source, base, env)
    }

    /// Like [`Config::load`] for text already in memory; relative file paths resolve against `base`.
    pub fn from_toml_str(
        text: &str,
        source: &str,
        base: &Path,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Config, Vec<Issue>> {
        let mut table = match text.parse::<toml::Table>() {
            Ok(t) => t,
            Err(e) => {
                return Err(vec![Issue {
                    source: source.to_string(),
                    key: String::new(),
                    message: format!("not valid TOML: {}", e.message().trim()),
                }])
            }
        };
        let mut problems = rules::Problems::new();
        let origins = raw::apply_env(&mut table, env, &mut problems);
        let config = raw::convert(table, source, base, &origins, &mut problems);
        problems.finish(config)
    }

    /// Where the rules live according to `path` and the environment, read even when other keys
    /// are broken, so `latch check` can report the rules' problems together with the config's.
    /// `None` when the file cannot be read or parsed, or `rules.store` itself is unusable.
    pub fn rule_store_of(
        path: &Path,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Option<RuleStoreKind> {
        let mut table = std::fs::read_to_string(path)
            .ok()?
            .parse::<toml::Table>()
            .ok()?;
        raw::apply_env(&mut table, env, &mut rules::Problems::new());
        raw::rule_store_only(table, path.parent().unwrap_or(Path::new(".")))
    }

    /// The configuration `latch demo` runs on: every default, with loopback addresses, memory
    /// locks, `rules.toml` in the working directory and the given secret.
    pub fn demo(port: u16, upstream_port: u16, secret: &str) -> Config {
        let loopback = |p: u16| SocketAddr::from(([127, 0, 0, 1], p));
        let mut config = raw::defaults(Path::new(""));
        config.proxy.listen = loopback(port);
        config.proxy.upstream = UpstreamConfig::plain("127.0.0.1", upstream_port);
        config.auth.settings.key = auth::KeySource::Secret(secret.as_bytes().to_vec());
        config.control_plane.listen = loopback(port.wrapping_add(1));
        config.admin.listen = loopback(port.wrapping_add(2));
        config
    }
}
