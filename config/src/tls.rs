//! Reading the TLS listener's certificate files: a PEM chain and its private key, checked the
//! way a handshake would use them. `latch check`, the proxy's start and every reload read them
//! through [`load_certificate`], so a file that `check` accepts is one the proxy serves, and a
//! file a reload refuses is refused for the reason `check` would give.

use std::path::Path;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use rustls::pki_types::pem::{self, PemObject};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::sign::CertifiedKey;

/// A certificate chain with its key, ready for a TLS server, and the names it covers.
#[derive(Clone, Debug)]
pub struct LoadedCertificate {
    pub key: Arc<CertifiedKey>,
    /// The DNS names of the leaf's subjectAltName, lower-case; `*.example.com` stays as written.
    pub names: Vec<String>,
    /// When the leaf expires, in seconds since the Unix epoch.
    pub not_after: i64,
}

/// Reads `chain` (PEM certificates, leaf first) and `key` (a PEM private key; may be the same
/// file). Refuses a file that cannot be read or parsed, a key that is not the leaf's, and a
/// leaf that has expired. The message names the file at fault.
pub fn load_certificate(chain: &Path, key: &Path) -> Result<LoadedCertificate, String> {
    let read = |path: &Path| {
        std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))
    };
    let chain_pem = read(chain)?;
    let key_pem = if key == chain {
        chain_pem.clone()
    } else {
        read(key)?
    };
    parse_certificate(&chain_pem, &key_pem, SystemTime::now()).map_err(|(in_key, why)| {
        let file = if in_key { key } else { chain };
        format!("{}: {why}", file.display())
    })
}

/// [`load_certificate`] on bytes at `now`; the error says whether the key file is at fault.
pub fn parse_certificate(
    chain_pem: &[u8],
    key_pem: &[u8],
    now: SystemTime,
) -> Result<LoadedCertificate, (bool, String)> {
    let chain = CertificateDer::pem_slice_iter(chain_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| (false, format!("not a PEM certificate file: {e}")))?;
    let Some(leaf) = chain.first() else {
        return Err((false, "holds no PEM certificate".into()));
    };
    let (_, x509) = x509_parser::parse_x509_certificate(leaf)
        .map_err(|e| (false, format!("the first certificate does not parse: {e}")))?;
    let not_after = x509.validity().not_after.timestamp();
    let now_secs = now
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
    if not_after < now_secs {
        return Err((
            false,
            format!("the certificate expired on {}", x509.validity().not_after),
        ));
    }
    let mut names = Vec::new();
    if let Ok(Some(san)) = x509.subject_alternative_name() {
        for name in &san.value.general_names {
            if let x509_parser::extensions::GeneralName::DNSName(dns) = name {
                names.push(dns.to_ascii_lowercase());
            }
        }
    }
    let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(|e| match e {
        pem::Error::NoItemsFound => (true, "holds no PEM private key".to_owned()),
        other => (true, format!("not a PEM private key: {other}")),
    })?;
    let provider = rustls::crypto::ring::default_provider();
    let certified = CertifiedKey::from_der(chain, key, &provider).map_err(|e| match e {
        rustls::Error::InconsistentKeys(_) => (
            true,
            "the private key does not belong to the certificate".to_owned(),
        ),
        other => (true, format!("unusable private key: {other}")),
    })?;
    Ok(LoadedCertificate {
        key: Arc::new(certified),
        names,
        not_after,
    })
}

/// Does certificate name `pattern` (`a.example.com` or `*.example.com`) cover `host`
/// (lower-case, no port)? A wildcard stands for exactly one leftmost label (RFC 6125 §6.4.3).
pub fn name_covers(pattern: &str, host: &str) -> bool {
    match pattern.strip_prefix("*.") {
        Some(parent) => host
            .split_once('.')
            .is_some_and(|(label, rest)| !label.is_empty() && rest == parent),
        None => pattern == host,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_wildcard_covers_one_label() {
        assert!(name_covers("*.example.com", "a.example.com"));
        assert!(!name_covers("*.example.com", "example.com"));
        assert!(!name_covers("*.example.com", "a.b.example.com"));
        assert!(!name_covers("*.example.com", ".example.com"));
        assert!(name_covers("example.com", "example.com"));
        assert!(!name_covers("example.com", "a.example.com"));
    }

    #[test]
    fn garbage_is_refused_naming_the_certificate_file() {
        let err = parse_certificate(b"garbage", b"", SystemTime::now()).unwrap_err();
        assert!(!err.0, "{err:?}");
        assert!(err.1.contains("no PEM certificate"), "{err:?}");
    }
}
