//! Latch's HTTPS listener in tests: the `[tls]` section, and TLS clients (rustls) that trust
//! the test CA, name the host they want by SNI and report the certificate they were served.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

/// A `[tls]` section listening on `port`, with `lines` (paths, reload, redirect…) in it.
pub fn section(port: u16, lines: &str) -> String {
    format!("[tls]\nlisten = \"127.0.0.1:{port}\"\n{lines}")
}

/// A `[tls]` section listening on the port the builder picks as `https`
/// ([`crate::LatchBuilder::named_port`]), with `lines` in it.
pub fn https_section(lines: &str) -> String {
    format!("[tls]\nlisten = \"127.0.0.1:{{port:https}}\"\n{lines}")
}

/// Waits until the HTTPS listener accepts.
pub fn wait_https(latch: &crate::Latch, port: u16) {
    testkit::wait_for_port(port, Duration::from_secs(20), || latch.log());
}

/// A TLS client configuration that trusts only `ca` and offers `alpn` (empty: no ALPN, so
/// HTTP/1.1).
pub fn client_config(ca: &Path, alpn: &[&[u8]]) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca).expect("the CA file") {
        roots
            .add(cert.expect("a CA certificate"))
            .expect("a usable CA");
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Arc::new(config)
}

/// Opens a TLS connection to `127.0.0.1:port` asking for `name` by SNI, and verifies the
/// certificate it is served for `name` against the CA.
pub async fn connect(
    port: u16,
    name: &str,
    config: &Arc<rustls::ClientConfig>,
) -> std::io::Result<TlsStream<TcpStream>> {
    let tcp = TcpStream::connect(("127.0.0.1", port)).await?;
    let name = ServerName::try_from(name.to_owned()).expect("a server name");
    let connect = TlsConnector::from(Arc::clone(config)).connect(name, tcp);
    tokio::time::timeout(Duration::from_secs(10), connect)
        .await
        .map_err(|_| std::io::Error::other("the TLS handshake timed out"))?
}

/// The leaf certificate the server presented on `stream`.
pub fn served_leaf(stream: &TlsStream<TcpStream>) -> Vec<u8> {
    let (_, conn) = stream.get_ref();
    conn.peer_certificates()
        .and_then(|chain| chain.first())
        .expect("the server presented a certificate")
        .to_vec()
}

/// The first certificate of a PEM file, in DER.
pub fn leaf_der(pem: &Path) -> Vec<u8> {
    CertificateDer::pem_file_iter(pem)
        .expect("a PEM file")
        .next()
        .expect("a certificate")
        .expect("a parsed certificate")
        .to_vec()
}

/// Sends `GET path` with `headers` on a kept-alive HTTP/1.1 connection and reads the whole
/// response: its status and its head (lower-case) as text.
pub async fn get_on<S>(stream: &mut S, host: &str, path: &str, headers: &str) -> (u16, String)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let request = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\n{headers}\r\n");
    stream
        .write_all(request.as_bytes())
        .await
        .expect("send a request");
    let mut reader = BufReader::new(stream);
    let mut head = String::new();
    loop {
        let mut line = String::new();
        let n = tokio::time::timeout(Duration::from_secs(10), reader.read_line(&mut line))
            .await
            .expect("the response came in time")
            .expect("read the response");
        assert!(n > 0, "the connection closed mid-response: {head}");
        if line == "\r\n" {
            break;
        }
        head.push_str(&line.to_ascii_lowercase());
    }
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("a status line");
    let length: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .map_or(0, |v| v.trim().parse().expect("a length"));
    let mut body = vec![0; length];
    reader.read_exact(&mut body).await.expect("read the body");
    (status, head)
}
