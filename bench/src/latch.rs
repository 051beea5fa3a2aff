//! `latch proxy` instances under test, each with its own config, rule file and log in the
//! run's temp dir.

use crate::process::{free_port, Cpus, Proc};
use crate::BenchError;
use std::path::{Path, PathBuf};

/// The rule file every instance loads. The filler rules give the matcher a realistic set to
/// reject before a pass-through request goes on; the others back the scenarios:
/// `held` (the requester holds the lock, banner injected), `plain` (the same without
/// injection), `denied` (someone else holds it) and `watch` (banner-socket scenarios).
pub const RULES: &str = r#"
[[rule]]
id = "held"
pattern = "/held/.*"
resource = "held"
lease_seconds = 3600

[[rule]]
id = "plain"
pattern = "/plain/.*"
resource = "plain"
inject = false
lease_seconds = 3600

[[rule]]
id = "denied"
pattern = "/denied/.*"
resource = "denied"
lease_seconds = 3600

[[rule]]
id = "watch"
pattern = "/watch/(?P<n>[0-9]+)/.*"
resource = "watch:{n}"
lease_seconds = 3600

[[rule]]
id = "doc-edit"
pattern = "/docs/(?P<id>[0-9]+)/edit"
resource = "doc:{id}"

[[rule]]
id = "doc-save"
pattern = "/docs/(?P<id>[0-9]+)/save"
resource = "doc:{id}"
methods = ["POST"]
inject = false

[[rule]]
id = "invoice"
pattern = "/billing/invoices/(?P<id>[A-Z0-9-]+)/(edit|approve)"
resource = "invoice:{id}"

[[rule]]
id = "settings"
pattern = "/admin/settings(/.*)?"
resource = "settings"
mode = "read_only"

[[rule]]
id = "wiki"
pattern = "/wiki/(?P<page>[^/]+)/edit"
resource = "wiki:{page}"
case_insensitive = true
"#;

/// How an instance verifies tokens.
pub enum Auth {
    /// HS256 with [`crate::tokens::SECRET`].
    Secret,
    /// `algorithm` with the public key in `public_key_file`.
    PublicKey {
        algorithm: &'static str,
        public_key_file: PathBuf,
    },
}

/// A TLS listener's port and the certificate it presents.
pub struct TlsListener {
    pub port: u16,
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
}

/// One instance's settings.
pub struct Settings {
    pub upstream_port: u16,
    /// More upstream servers: with any, the upstream is a pool of `upstream_port` and these.
    pub pool: Vec<u16>,
    /// A `[tls]` listener besides the plain one.
    pub tls: Option<TlsListener>,
    pub threads: usize,
    pub auth: Auth,
    /// `memory` or a `redis://` URL.
    pub store: String,
}

/// A running `latch proxy`.
pub struct Latch {
    pub proc: Proc,
    pub port: u16,
    pub admin_port: u16,
}

impl Latch {
    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }
}

/// The config file for `settings`, listening on `port` with its admin port on `admin_port`.
///
/// Every connection of a run comes from loopback, one address: up to 10,000 idle banner sockets
/// and wrk's 64 connections, so the per-client connection limit is off.
pub fn config(settings: &Settings, port: u16, admin_port: u16) -> String {
    let auth = match &settings.auth {
        Auth::Secret => format!(
            "algorithms = [\"HS256\"]\nsecret = \"{}\"",
            crate::tokens::SECRET
        ),
        Auth::PublicKey {
            algorithm,
            public_key_file,
        } => format!(
            "algorithms = [\"{algorithm}\"]\npublic_key_file = \"{}\"",
            public_key_file.display()
        ),
    };
    let server = |port: &u16| format!("\"http://127.0.0.1:{port}\"");
    let upstream = if settings.pool.is_empty() {
        server(&settings.upstream_port)
    } else {
        let servers: Vec<String> = std::iter::once(&settings.upstream_port)
            .chain(&settings.pool)
            .map(server)
            .collect();
        format!("[{}]", servers.join(", "))
    };
    let tls = match &settings.tls {
        Some(tls) => format!(
            "\n[tls]\nlisten = \"127.0.0.1:{}\"\ncert_file = \"{}\"\nkey_file = \"{}\"\n",
            tls.port,
            tls.cert_file.display(),
            tls.key_file.display()
        ),
        None => String::new(),
    };
    format!(
        "[proxy]\nlisten = \"127.0.0.1:{port}\"\nupstream = {upstream}\n\
         threads = {threads}\nmax_connections_per_client = 0\n\n[auth]\n{auth}\n\n\
         [locks]\nstore = \"{store}\"\nlease_seconds = 3600\n\n\
         [rules]\nstore = \"rules.toml\"\npoll_seconds = 60\n\n\
         [admin]\nlisten = \"127.0.0.1:{admin_port}\"\n{tls}",
        threads = settings.threads,
        store = settings.store,
    )
}

/// Writes the files into `dir` and starts `bin proxy` on them.
pub fn start(
    name: &str,
    bin: &Path,
    dir: &Path,
    settings: &Settings,
    cpus: &Cpus,
) -> Result<Latch, BenchError> {
    std::fs::create_dir_all(dir).map_err(|e| BenchError::io(dir.display().to_string(), e))?;
    let port = free_port()?;
    let admin_port = free_port()?;
    let conf = dir.join("latch.toml");
    std::fs::write(&conf, config(settings, port, admin_port))
        .map_err(|e| BenchError::io(conf.display().to_string(), e))?;
    let rules = dir.join("rules.toml");
    std::fs::write(&rules, RULES).map_err(|e| BenchError::io(rules.display().to_string(), e))?;
    let mut cmd = cpus.server_command(bin);
    cmd.current_dir(dir).arg("proxy").arg("--config").arg(&conf);
    let mut proc = Proc::spawn(name, cmd, &dir.join("latch.log"))?;
    let mut ports = vec![port, admin_port];
    ports.extend(settings.tls.as_ref().map(|tls| tls.port));
    proc.wait_listening(&ports)?;
    Ok(Latch {
        proc,
        port,
        admin_port,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_names_the_store_the_key_and_the_threads() {
        let settings = Settings {
            upstream_port: 7000,
            threads: 2,
            auth: Auth::PublicKey {
                algorithm: "ES256",
                public_key_file: PathBuf::from("es.pub.pem"),
            },
            store: "redis://127.0.0.1:7001/0".into(),
            pool: Vec::new(),
            tls: None,
        };
        let conf = config(&settings, 7002, 7003);
        assert!(conf.contains("upstream = \"http://127.0.0.1:7000\""));
        assert!(conf.contains("listen = \"127.0.0.1:7002\""));
        assert!(conf.contains("threads = 2"));
        assert!(conf.contains("max_connections_per_client = 0"));
        assert!(conf.contains("algorithms = [\"ES256\"]"));
        assert!(conf.contains("public_key_file = \"es.pub.pem\""));
        assert!(conf.contains("store = \"redis://127.0.0.1:7001/0\""));
        assert!(conf.contains("listen = \"127.0.0.1:7003\""));
        assert!(!conf.contains("[tls]"));
    }

    #[test]
    fn a_pool_lists_every_server_and_tls_gets_its_own_listener() {
        let settings = Settings {
            upstream_port: 7000,
            pool: vec![7010],
            tls: Some(TlsListener {
                port: 7443,
                cert_file: PathBuf::from("leaf.pem"),
                key_file: PathBuf::from("leaf.key"),
            }),
            threads: 1,
            auth: Auth::Secret,
            store: "memory".into(),
        };
        let conf = config(&settings, 7002, 7003);
        assert!(
            conf.contains("upstream = [\"http://127.0.0.1:7000\", \"http://127.0.0.1:7010\"]\n")
        );
        assert!(conf.ends_with(
            "[tls]\nlisten = \"127.0.0.1:7443\"\ncert_file = \"leaf.pem\"\nkey_file = \"leaf.key\"\n"
        ));
        // The plain listener stays: the readiness checks and the pool scenario use it.
        assert!(conf.contains("listen = \"127.0.0.1:7002\""));
    }
}
