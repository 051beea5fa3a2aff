//! The HTTPS listener's certificates: which one a handshake gets, and keeping them current.
//!
//! [`Certificates`] is the rustls certificate resolver of the listener. It answers from a table
//! swapped in whole (`ArcSwap`), so a reload never waits on a handshake or makes one wait, and a
//! connection keeps the certificate it was made with. The client's SNI chooses among the
//! certificates by the DNS names of their subjectAltName, exact names before `*.` wildcards, the
//! first listed winning a name given twice. A client whose SNI names none of them, or that sends
//! none, gets the default certificate (`tls.cert_file`); with no default certificate its
//! handshake fails.
//!
//! A reload reads every file again and replaces a certificate only when its files changed and
//! still make a valid certificate: a file replaced with garbage, or a chain whose key does not
//! (yet) match, keeps the previous certificate and logs an error naming the file. The same
//! reading as `latch check`'s ([`config::load_certificate`]).

use std::collections::HashMap;
use std::fmt;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwap;
use config::{LoadedCertificate, TlsConfig};
use pingora::tls::sign::CertifiedKey;
use pingora::tls::{ClientHello, ResolvesServerCert};

/// The listener's certificates and what chooses among them.
pub struct Certificates {
    table: ArcSwap<Table>,
    /// The files and what was last read from them; only a reload touches this.
    sources: Mutex<Vec<Source>>,
}

/// One certificate as configured: its files, the bytes it was last made from, and the result.
struct Source {
    chain: PathBuf,
    key: PathBuf,
    is_default: bool,
    read: (Vec<u8>, Vec<u8>),
    loaded: LoadedCertificate,
}

/// What a handshake reads.
#[derive(Default)]
struct Table {
    default: Option<Arc<CertifiedKey>>,
    exact: HashMap<String, Arc<CertifiedKey>>,
    /// By the parent of a `*.` name: `example.com` for `*.example.com`.
    wildcard: HashMap<String, Arc<CertifiedKey>>,
}

impl Table {
    fn build(sources: &[Source]) -> Table {
        let mut table = Table::default();
        // Named certificates first, in the order listed, then the default one's names.
        let ordered = sources
            .iter()
            .filter(|s| !s.is_default)
            .chain(sources.iter().filter(|s| s.is_default));
        for source in ordered {
            let key = &source.loaded.key;
            if source.is_default {
                table.default = Some(Arc::clone(key));
            }
            for name in &source.loaded.names {
                let (map, name) = match name.strip_prefix("*.") {
                    Some(parent) => (&mut table.wildcard, parent),
                    None => (&mut table.exact, name.as_str()),
                };
                map.entry(name.to_owned())
                    .or_insert_with(|| Arc::clone(key));
            }
        }
        table
    }

    /// The certificate for `host` (lower-case) by name, if any names it.
    fn named(&self, host: &str) -> Option<&Arc<CertifiedKey>> {
        self.exact.get(host).or_else(|| {
            let (label, parent) = host.split_once('.')?;
            (!label.is_empty())
                .then(|| self.wildcard.get(parent))
                .flatten()
        })
    }
}

impl Certificates {
    /// Reads every certificate of `config`; any that cannot be used is an error (at start, the
    /// listener has no previous certificate to fall back on).
    pub fn load(config: &TlsConfig) -> Result<Arc<Certificates>, String> {
        let mut files: Vec<(PathBuf, PathBuf, bool)> = Vec::new();
        if let Some((chain, key)) = &config.default_certificate {
            files.push((chain.clone(), key.clone(), true));
        }
        for file in &config.certificates {
            files.push((file.clone(), file.clone(), false));
        }
        let mut sources = Vec::with_capacity(files.len());
        let mut problems = Vec::new();
        for (chain, key, is_default) in files {
            match read_pair(&chain, &key).and_then(|read| {
                let loaded = parse(&chain, &key, &read)?;
                Ok((read, loaded))
            }) {
                Ok((read, loaded)) => sources.push(Source {
                    chain,
                    key,
                    is_default,
                    read,
                    loaded,
                }),
                Err(why) => problems.push(why),
            }
        }
        if !problems.is_empty() {
            return Err(problems.join("; "));
        }
        Ok(Arc::new(Certificates {
            table: ArcSwap::from_pointee(Table::build(&sources)),
            sources: Mutex::new(sources),
        }))
    }

    /// Reads the files again and swaps in the certificates that changed and are valid. Returns
    /// how many were replaced; every refused file is logged.
    pub fn reload(&self) -> usize {
        let Ok(mut sources) = self.sources.lock() else {
            return 0;
        };
        let mut replaced = 0;
        for source in sources.iter_mut() {
            let read = match read_pair(&source.chain, &source.key) {
                Ok(read) => read,
                Err(why) => {
                    tracing::error!(
                        "TLS certificate not reloaded, the previous one is kept: {why}"
                    );
                    continue;
                }
            };
            if read == source.read {
                continue;
            }
            match parse(&source.chain, &source.key, &read) {
                Ok(loaded) => {
                    tracing::info!(
                        file = %source.chain.display(),
                        names = ?loaded.names,
                        "TLS certificate reloaded"
                    );
                    source.read = read;
                    source.loaded = loaded;
                    replaced += 1;
                }
                Err(why) => {
                    tracing::error!(
                        "TLS certificate not reloaded, the previous one is kept: {why}"
                    );
                    // Not remembered as read: a fixed file is taken on the next check even if
                    // it is byte for byte the one before.
                }
            }
        }
        if replaced > 0 {
            self.table.store(Arc::new(Table::build(&sources)));
        }
        replaced
    }

    /// Does a certificate of this listener cover `host` (a name, no port)? Only such hosts are
    /// redirected to HTTPS.
    pub fn covers(&self, host: &str) -> bool {
        let host = host.to_ascii_lowercase();
        self.table.load().named(&host).is_some()
    }
}

fn read_pair(chain: &PathBuf, key: &PathBuf) -> Result<(Vec<u8>, Vec<u8>), String> {
    let read = |path: &PathBuf| {
        std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))
    };
    let chain_bytes = read(chain)?;
    let key_bytes = if key == chain { Vec::new() } else { read(key)? };
    Ok((chain_bytes, key_bytes))
}

fn parse(
    chain: &PathBuf,
    key: &PathBuf,
    read: &(Vec<u8>, Vec<u8>),
) -> Result<LoadedCertificate, String> {
    let key_bytes = if key == chain { &read.0 } else { &read.1 };
    config::parse_certificate(&read.0, key_bytes, SystemTime::now()).map_err(|(in_key, why)| {
        let file = if in_key { key } else { chain };
        format!("{}: {why}", file.display())
    })
}

impl fmt::Debug for Certificates {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let table = self.table.load();
        f.debug_struct("Certificates")
            .field("default", &table.default.is_some())
            .field("names", &table.exact.keys().collect::<Vec<_>>())
            .field("wildcards", &table.wildcard.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl ResolvesServerCert for Certificates {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let table = self.table.load();
        hello
            .server_name()
            .and_then(|sni| table.named(&sni.to_ascii_lowercase()).cloned())
            .or_else(|| table.default.clone())
    }
}

/// Reloads `certs` every `every` (if set) and on every SIGHUP, for as long as the proxy runs.
pub async fn watch(certs: Arc<Certificates>, every: Option<Duration>) {
    use tokio::signal::unix::{signal, SignalKind};
    let mut hangups = match signal(SignalKind::hangup()) {
        Ok(hangups) => Some(hangups),
        Err(e) => {
            tracing::error!(error = %e, "SIGHUP cannot reload the TLS certificates");
            None
        }
    };
    loop {
        let timer = async {
            match every {
                Some(every) => tokio::time::sleep(every).await,
                None => std::future::pending().await,
            }
        };
        let hangup = async {
            match hangups.as_mut() {
                Some(h) => h.recv().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            () = timer => {}
            got = hangup => {
                if got.is_none() {
                    hangups = None;
                    continue;
                }
                tracing::info!("SIGHUP: reading the TLS certificates again");
            }
        }
        let certs = Arc::clone(&certs);
        // File reads and key parsing are blocking work; keep them off the runtime's threads.
        let _ = tokio::task::spawn_blocking(move || certs.reload()).await;
    }
}
