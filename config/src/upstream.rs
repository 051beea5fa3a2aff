//! Where a protected app lives and how Latch talks to it: one server or a pool of them, over
//! plain HTTP or HTTPS, which `Host` it is sent, how a server is chosen and checked.
//!
//! [`build`] turns the raw values of the upstream keys into an [`UpstreamConfig`], reading and
//! checking the PEM files they name (a CA bundle, a client certificate and its key), and
//! reports every problem it finds under the name of the setting it concerns. It knows nothing
//! of where those keys live, so the same function serves any section that describes an
//! upstream.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// Most servers in one pool; a retry tries each server at most once, and the proxy keeps
/// which were tried in one 64-bit word.
pub const MAX_SERVERS: usize = 64;

/// The validated description of one upstream.
#[derive(Clone, Debug)]
pub struct UpstreamConfig {
    /// At least one; all of one scheme.
    pub servers: Vec<Server>,
    /// Set for `https://` servers.
    pub tls: Option<UpstreamTls>,
    pub host_header: HostHeader,
    pub balance: Balance,
    pub health: HealthCheck,
    /// Whether an idempotent request whose connection to one server fails is sent to another
    /// server of the pool. Default on.
    pub retry: bool,
}

impl UpstreamConfig {
    /// A single plain-HTTP server with every other setting at its default.
    pub fn plain(host: &str, port: u16) -> UpstreamConfig {
        UpstreamConfig {
            servers: vec![Server {
                tls: false,
                host: host.to_owned(),
                port,
            }],
            tls: None,
            host_header: HostHeader::Client,
            balance: Balance::RoundRobin,
            health: HealthCheck {
                kind: HealthCheckKind::Tcp,
                path: "/".to_owned(),
                interval: DEFAULT_HEALTH_INTERVAL,
            },
            retry: true,
        }
    }

    pub fn is_tls(&self) -> bool {
        self.tls.is_some()
    }
}

/// [`HealthCheck::interval`] unless the config says otherwise.
pub const DEFAULT_HEALTH_INTERVAL: Duration = Duration::from_secs(5);

/// One server of an upstream.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Server {
    /// `https://`.
    pub tls: bool,
    /// A DNS name or an IP address (IPv6 without brackets).
    pub host: String,
    pub port: u16,
}

impl Server {
    /// `host:port`, with an IPv6 host in brackets, as socket address resolution expects.
    pub fn address(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }

    /// The server's own `Host` value: its host, and its port unless the scheme's default.
    pub fn authority(&self) -> String {
        let default = if self.tls { 443 } else { 80 };
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        if self.port == default {
            host
        } else {
            format!("{host}:{}", self.port)
        }
    }
}

impl fmt::Display for Server {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = if self.tls { "https" } else { "http" };
        write!(f, "{scheme}://{}", self.address())
    }
}

/// How an `https://` upstream is reached.
#[derive(Clone)]
pub struct UpstreamTls {
    /// The name sent as SNI and checked against the server's certificate; `None`: each
    /// server's own host.
    pub sni: Option<String>,
    /// The CA certificates (DER) a server's certificate must chain to; `None`: the system's
    /// trust store.
    pub ca: Option<Arc<[Vec<u8>]>>,
    /// The certificate Latch presents to servers that ask for one (mutual TLS).
    pub client: Option<Arc<ClientIdentity>>,
    /// Whether a server's certificate is checked at all. Default on; off only for tests.
    pub verify: bool,
}

impl fmt::Debug for UpstreamTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UpstreamTls")
            .field("sni", &self.sni)
            .field("ca_certificates", &self.ca.as_ref().map(|c| c.len()))
            .field("client_certificate", &self.client.is_some())
            .field("verify", &self.verify)
            .finish()
    }
}

/// A client certificate chain (leaf first, DER) and its private key (DER). The key stays out
/// of `Debug` output.
pub struct ClientIdentity {
    pub certs: Vec<Vec<u8>>,
    pub key: Vec<u8>,
}

/// Which `Host` header a forwarded request carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HostHeader {
    /// The client's, as it came (the default): the app sees the name users typed.
    Client,
    /// The server's own `host[:port]`, as its URL names it: for apps (and their TLS
    /// front ends) that answer only to their own name.
    Upstream,
}

/// How a request picks a server of a pool.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Balance {
    RoundRobin,
    /// The server with the fewest requests in flight from this instance.
    LeastConnections,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HealthCheckKind {
    /// A TCP connection opens.
    Tcp,
    /// A `GET` of the health path is answered `200` (over TLS, with the upstream's TLS
    /// settings, for `https://` servers).
    Http,
    /// No active check: every server is always a candidate.
    None,
}

/// The active health check of a pool's servers (a single server is never checked: there is
/// no other to send its requests to).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HealthCheck {
    pub kind: HealthCheckKind,
    /// Path (and query) of the `http` check.
    pub path: String,
    pub interval: Duration,
}

/// The upstream keys as written, before [`build`] judges them together.
#[derive(Clone, Default)]
pub struct UpstreamDraft {
    pub urls: Vec<String>,
    pub sni: Option<String>,
    pub ca_file: Option<String>,
    pub client_cert_file: Option<String>,
    pub client_key_file: Option<String>,
    pub verify: bool,
    pub host_header: Option<HostHeader>,
    pub balance: Option<Balance>,
    pub health_check: Option<HealthCheckKind>,
    pub health_path: Option<String>,
    pub health_interval: Option<Duration>,
    pub retry: bool,
}

/// Judges the upstream keys together and reads the files they name. `problem` gets the
/// setting's name (`upstream`, `upstream_ca_file`, …) and what is wrong with it; every
/// problem is reported. `None` when any was found.
pub fn build(
    draft: UpstreamDraft,
    base: &Path,
    problem: &mut dyn FnMut(&str, String),
) -> Option<UpstreamConfig> {
    let mut ok = true;
    let mut servers = Vec::with_capacity(draft.urls.len());
    for url in &draft.urls {
        match parse_url(url) {
            Ok(server) => servers.push(server),
            Err(message) => {
                problem("upstream", message);
                ok = false;
            }
        }
    }
    // No URL at all was reported where the key was read (required, or of the wrong type).
    if draft.urls.is_empty() {
        ok = false;
    }
    if draft.urls.len() > MAX_SERVERS {
        problem(
            "upstream",
            format!("lists {} servers; at most {MAX_SERVERS}", draft.urls.len()),
        );
        ok = false;
    }
    if servers.iter().any(|s| s.tls) && servers.iter().any(|s| !s.tls) {
        problem(
            "upstream",
            "mixes http:// and https:// servers; one upstream speaks one scheme".into(),
        );
        ok = false;
    }
    for (i, server) in servers.iter().enumerate() {
        if servers[..i].contains(server) {
            problem("upstream", format!("lists {server} twice"));
            ok = false;
        }
    }
    let tls = servers.first().is_some_and(|s| s.tls);

    let tls_only = [
        ("upstream_sni", draft.sni.is_some()),
        ("upstream_ca_file", draft.ca_file.is_some()),
        (
            "upstream_client_cert_file",
            draft.client_cert_file.is_some(),
        ),
        ("upstream_client_key_file", draft.client_key_file.is_some()),
        ("upstream_tls_verify", !draft.verify),
    ];
    if !tls && !servers.is_empty() {
        for (setting, given) in tls_only {
            if given {
                problem(
                    setting,
                    "applies only to https:// upstreams, and the upstream is http://".into(),
                );
                ok = false;
            }
        }
    }
    if let Some(sni) = &draft.sni {
        if sni.is_empty() || rustls::pki_types::ServerName::try_from(sni.as_str()).is_err() {
            problem(
                "upstream_sni",
                format!("{sni:?} is not a DNS name or an IP address"),
            );
            ok = false;
        }
    }
    // Files are read only for an upstream that uses them: a plain one was refused above.
    let ca = match draft.ca_file.as_ref().filter(|_| tls) {
        Some(file) => match read_ca(&resolve(base, file)) {
            Ok(ca) => Some(ca),
            Err(message) => {
                problem("upstream_ca_file", message);
                ok = false;
                None
            }
        },
        None => None,
    };
    let client = match (&draft.client_cert_file, &draft.client_key_file) {
        _ if !tls => None,
        (Some(cert), Some(key)) => {
            match read_client_identity(&resolve(base, cert), &resolve(base, key)) {
                Ok(identity) => Some(Arc::new(identity)),
                Err((setting, message)) => {
                    problem(setting, message);
                    ok = false;
                    None
                }
            }
        }
        (Some(_), None) => {
            problem(
                "upstream_client_key_file",
                "required with upstream_client_cert_file: the certificate's private key".into(),
            );
            ok = false;
            None
        }
        (None, Some(_)) => {
            problem(
                "upstream_client_cert_file",
                "required with upstream_client_key_file: the certificate the key belongs to".into(),
            );
            ok = false;
            None
        }
        (None, None) => None,
    };

    let path = draft.health_path.unwrap_or_else(|| "/".to_owned());
    if !path.starts_with('/') || path.bytes().any(|b| !b.is_ascii_graphic()) {
        problem(
            "upstream_health_path",
            format!("{path:?} must be a path starting with / (no spaces)"),
        );
        ok = false;
    }
    if !ok {
        return None;
    }
    Some(UpstreamConfig {
        tls: tls.then(|| UpstreamTls {
            sni: draft.sni,
            ca: ca.map(Arc::from),
            client,
            verify: draft.verify,
        }),
        servers,
        host_header: draft.host_header.unwrap_or(HostHeader::Client),
        balance: draft.balance.unwrap_or(Balance::RoundRobin),
        health: HealthCheck {
            kind: draft.health_check.unwrap_or(HealthCheckKind::Tcp),
            path,
            interval: draft.health_interval.unwrap_or(DEFAULT_HEALTH_INTERVAL),
        },
        retry: draft.retry,
    })
}

fn resolve(base: &Path, file: &str) -> PathBuf {
    let path = Path::new(file);
    if path.is_absolute() {
        path.to_path_buf()
    } else {
        base.join(path)
    }
}

fn read(path: &Path) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))
}

/// Every certificate of a PEM file, in order; a file with none, or with one that does not
/// parse, is refused.
fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let pem = read(path)?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{} is not a PEM certificate file: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!("{} holds no PEM certificate", path.display()));
    }
    Ok(certs)
}

/// The CA bundle: each certificate must be usable as a trust anchor.
fn read_ca(path: &Path) -> Result<Vec<Vec<u8>>, String> {
    let certs = read_certs(path)?;
    let mut store = rustls::RootCertStore::empty();
    for (i, cert) in certs.iter().enumerate() {
        store.add(cert.clone()).map_err(|e| {
            format!(
                "{}: certificate {} is not a usable CA certificate: {e}",
                path.display(),
                i + 1
            )
        })?;
    }
    Ok(certs.into_iter().map(|c| c.to_vec()).collect())
}

/// The client certificate chain and its key, checked to belong together the way the TLS
/// client will use them.
fn read_client_identity(
    cert_path: &Path,
    key_path: &Path,
) -> Result<ClientIdentity, (&'static str, String)> {
    let certs = read_certs(cert_path).map_err(|m| ("upstream_client_cert_file", m))?;
    let key_pem = read(key_path).map_err(|m| ("upstream_client_key_file", m))?;
    let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| {
        (
            "upstream_client_key_file",
            format!(
                "{} holds no usable PEM private key: {e}",
                key_path.display()
            ),
        )
    })?;
    let key_der = key.secret_der().to_vec();
    // The TLS client reads the key back from its DER bytes alone, so they must say what
    // kind of key they are.
    if PrivateKeyDer::try_from(key_der.clone()).is_err() {
        return Err((
            "upstream_client_key_file",
            format!(
                "{}: the key's type cannot be recognised (use PKCS#8, SEC1 or PKCS#1)",
                key_path.display()
            ),
        ));
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| ("upstream_client_cert_file", e.to_string()))?
        .with_root_certificates(rustls::RootCertStore::empty())
        .with_client_auth_cert(certs.clone(), key)
        .map_err(|e| {
            (
                "upstream_client_key_file",
                format!(
                    "{} is not the key of {}: {e}",
                    key_path.display(),
                    cert_path.display()
                ),
            )
        })?;
    Ok(ClientIdentity {
        certs: certs.into_iter().map(|c| c.to_vec()).collect(),
        key: key_der,
    })
}

/// One server URL: `http://` or `https://`, a host and an optional port, nothing else.
pub fn parse_url(s: &str) -> Result<Server, String> {
    let (tls, rest) = if let Some(r) = s.strip_prefix("http://") {
        (false, r)
    } else if let Some(r) = s.strip_prefix("https://") {
        (true, r)
    } else {
        return Err(format!(
            "{s:?} must be an http:// or https:// URL such as http://127.0.0.1:3000"
        ));
    };
    let authority = rest.trim_end_matches('/');
    if authority.contains('/') || authority.contains('?') || authority.contains('@') {
        return Err(format!("{s:?} must name only a scheme, host and port"));
    }
    let port_of = |p: &str| {
        p.parse::<u16>()
            .ok()
            .filter(|p| *p > 0)
            .ok_or_else(|| format!("{s:?} has an invalid port"))
    };
    let default_port = if tls { 443 } else { 80 };
    // An IPv6 literal is bracketed and carries colons of its own; anything else splits at
    // its only colon, if any.
    let (host, port) = if let Some(bracketed) = authority.strip_prefix('[') {
        let (host, after) = bracketed
            .split_once(']')
            .ok_or_else(|| format!("{s:?} has an unclosed '[' in its host"))?;
        match after {
            "" => (host, default_port),
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
            None => (authority, default_port),
        }
    };
    if host.is_empty() {
        return Err(format!("{s:?} has no host"));
    }
    Ok(Server {
        tls,
        host: host.to_string(),
        port,
    })
}
