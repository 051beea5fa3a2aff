//! An accepted HTTPS connection, as the front hands it to pingora or keeps it for a banner
//! socket, and the server name each one's client sent.
//!
//! The front makes every handshake itself with tokio-rustls and wraps the established stream
//! in a [`TlsConn`]. pingora's own TLS stream keeps room for a client handshake, a server
//! handshake and the established connection side by side (4.7 KB a connection); a `TlsConn`
//! keeps the established connection alone (1.6 KB). An idle banner socket over TLS keeps its
//! connection for as long as its page is open, so that is most of what it costs beyond a plain
//! one.
//!
//! pingora tells a request about its connection's TLS through the connection's [`SslDigest`],
//! which has no room that code outside pingora can fill, so the client's SNI is kept in
//! [`ServerNames`] instead, by the digest, from the handshake until the connection is dropped.
//! A request holds its connection's digest, so no other connection's digest can share its
//! address while the request runs; a request whose connection is gone finds no entry and is
//! told so ([`ConnName::Gone`]), never another connection's name.

use std::collections::HashMap;
use std::fmt;
use std::io::IoSlice;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use pingora::protocols::l4::stream::Stream as TcpStream;
use pingora::protocols::raw_connect::ProxyDigest;
use pingora::protocols::tls::SslDigest;
use pingora::protocols::{GetProxyDigest, GetSocketDigest, GetTimingDigest};
use pingora::protocols::{Peek, Shutdown, Ssl, UniqueID, UniqueIDType, ALPN};
use pingora::protocols::{SocketDigest, TimingDigest};
use pingora::tls::ServerTlsStream;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};

/// What the HTTPS listener offers by ALPN, in its order of preference.
pub fn alpn_protocols() -> Vec<Vec<u8>> {
    vec![b"h2".to_vec(), b"http/1.1".to_vec()]
}

/// An established HTTPS connection.
pub struct TlsConn {
    tls: ServerTlsStream<TcpStream>,
    digest: Arc<SslDigest>,
    timing: TimingDigest,
    /// Where this connection's server name is kept, when it is kept.
    names: Option<Arc<ServerNames>>,
}

impl TlsConn {
    /// Wraps a stream whose handshake took `handshake`. With `names`, the client's SNI is kept
    /// there until this connection is dropped.
    pub fn new(
        tls: ServerTlsStream<TcpStream>,
        handshake: Duration,
        names: Option<&Arc<ServerNames>>,
    ) -> TlsConn {
        let session = tls.get_ref().1;
        let cipher = session
            .negotiated_cipher_suite()
            .and_then(|suite| suite.suite().as_str())
            .unwrap_or_default();
        let version = session
            .protocol_version()
            .and_then(|version| version.as_str())
            .unwrap_or_default();
        // The listener asks for no client certificate, so there is none to describe.
        let digest = Arc::new(SslDigest::new(cipher, version, None, None, Vec::new()));
        if let Some(names) = names {
            let name = session
                .server_name()
                .map(|n| Arc::from(n.to_ascii_lowercase()));
            names.insert(&digest, name);
        }
        TlsConn {
            tls,
            digest,
            timing: TimingDigest {
                established_ts: SystemTime::now(),
                establishment_duration: Some(handshake),
                offload_wait_duration: None,
            },
            names: names.cloned(),
        }
    }
}

impl Drop for TlsConn {
    fn drop(&mut self) {
        if let Some(names) = &self.names {
            names.remove(&self.digest);
        }
    }
}

impl fmt::Debug for TlsConn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsConn")
            .field("tcp", self.tls.get_ref().0)
            .field("digest", &self.digest)
            .finish_non_exhaustive()
    }
}

impl AsyncRead for TlsConn {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.tls).poll_read(cx, buf)
    }
}

impl AsyncWrite for TlsConn {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.tls).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.tls).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.tls.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.tls).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.tls).poll_shutdown(cx)
    }
}

#[async_trait]
impl Shutdown for TlsConn {
    /// Sends the TLS close_notify, then shuts the socket's writing side.
    async fn shutdown(&mut self) {
        if let Err(e) = AsyncWriteExt::shutdown(self).await {
            tracing::debug!(error = %e, "TLS shutdown failed");
        }
    }
}

impl UniqueID for TlsConn {
    fn id(&self) -> UniqueIDType {
        self.tls.get_ref().0.id()
    }
}

impl Ssl for TlsConn {
    fn get_ssl_digest(&self) -> Option<Arc<SslDigest>> {
        Some(Arc::clone(&self.digest))
    }

    fn selected_alpn_proto(&self) -> Option<ALPN> {
        match self.tls.get_ref().1.alpn_protocol()? {
            b"h2" => Some(ALPN::H2),
            b"http/1.1" => Some(ALPN::H1),
            _ => None,
        }
    }
}

impl GetTimingDigest for TlsConn {
    fn get_timing_digest(&self) -> Vec<Option<TimingDigest>> {
        let mut layers = self.tls.get_ref().0.get_timing_digest();
        layers.push(Some(self.timing.clone()));
        layers
    }

    fn get_read_pending_time(&self) -> Duration {
        self.tls.get_ref().0.get_read_pending_time()
    }

    fn get_write_pending_time(&self) -> Duration {
        self.tls.get_ref().0.get_write_pending_time()
    }
}

impl GetProxyDigest for TlsConn {
    fn get_proxy_digest(&self) -> Option<Arc<ProxyDigest>> {
        self.tls.get_ref().0.get_proxy_digest()
    }
}

impl GetSocketDigest for TlsConn {
    fn get_socket_digest(&self) -> Option<Arc<SocketDigest>> {
        self.tls.get_ref().0.get_socket_digest()
    }

    fn set_socket_digest(&mut self, digest: SocketDigest) {
        self.tls.get_mut().0.set_socket_digest(digest)
    }
}

impl Peek for TlsConn {}

/// The server name (SNI, lower-cased; `None` when the client sent none) of every open HTTPS
/// connection that keeps one, by its TLS digest.
#[derive(Default)]
pub struct ServerNames(Mutex<HashMap<usize, Option<Arc<str>>>>);

/// What a request's connection says about the server name its client asked for.
#[derive(Debug, PartialEq, Eq)]
pub enum ConnName {
    /// Plain HTTP: no TLS, no name.
    Plain,
    /// TLS, with the SNI the client sent, if any.
    Tls(Option<Arc<str>>),
    /// TLS, on a connection no longer open (or not kept): its name is unknown.
    Gone,
}

impl ServerNames {
    fn key(digest: &Arc<SslDigest>) -> usize {
        Arc::as_ptr(digest) as usize
    }

    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<usize, Option<Arc<str>>>> {
        // A panic while holding the lock leaves the map as consistent as any single insert or
        // remove does; keep serving it.
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn insert(&self, digest: &Arc<SslDigest>, name: Option<Arc<str>>) {
        self.map().insert(Self::key(digest), name);
    }

    fn remove(&self, digest: &Arc<SslDigest>) {
        self.map().remove(&Self::key(digest));
    }

    /// The name of the connection whose digest a request carries (`None` over plain HTTP).
    pub fn of(&self, digest: Option<&Arc<SslDigest>>) -> ConnName {
        let Some(digest) = digest else {
            return ConnName::Plain;
        };
        match self.map().get(&Self::key(digest)) {
            Some(name) => ConnName::Tls(name.clone()),
            None => ConnName::Gone,
        }
    }

    /// How many connections are kept.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.map().len()
    }
}

#[cfg(test)]
mod tests {
    use pingora::tls::{
        load_ca_file_into_store, load_certs_and_key_files, version, ClientConfig, ClientTlsStream,
        RootCertStore, ServerConfig, ServerName, TlsAcceptor, TlsConnector,
    };
    use tokio::io::AsyncReadExt;

    use super::*;

    /// A real handshake over loopback: a client that asks for `name` by SNI and offers `alpn`,
    /// to a listener whose certificate covers `wiki.test`. Returns the server's connection and
    /// the client's stream.
    async fn handshake(
        name: &str,
        alpn: &[&[u8]],
        names: Option<&Arc<ServerNames>>,
    ) -> (TlsConn, ClientTlsStream<tokio::net::TcpStream>) {
        let dir = tempfile::tempdir().unwrap();
        let ca = testkit::certs::TestCa::new(dir.path(), "tls-conn");
        let issued = ca.issue(&["wiki.test", "*.wiki.test"]);
        pingora::tls::install_default_crypto_provider();
        let (chain, key) =
            load_certs_and_key_files(issued.cert.to_str().unwrap(), issued.key.to_str().unwrap())
                .unwrap()
                .unwrap();
        let mut server = ServerConfig::builder_with_protocol_versions(&[&version::TLS13])
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .unwrap();
        server.alpn_protocols = alpn_protocols();
        let mut roots = RootCertStore::empty();
        load_ca_file_into_store(ca.cert(), &mut roots).unwrap();
        let mut client = ClientConfig::builder()
            .with_root_certificates(roots)
            .with_no_client_auth();
        client.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();

        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let name = ServerName::try_from(name.to_owned()).unwrap();
        let connect = async {
            let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
            TlsConnector::from(Arc::new(client))
                .connect(name, tcp)
                .await
                .unwrap()
        };
        let accept = async {
            let (tcp, _) = listener.accept().await.unwrap();
            // As pingora's listener hands over an accepted connection: with its socket digest.
            let fd = std::os::fd::AsRawFd::as_raw_fd(&tcp);
            let mut tcp = TcpStream::from(tcp);
            tcp.set_socket_digest(SocketDigest::from_raw_fd(fd));
            let tls = TlsAcceptor::from(Arc::new(server))
                .accept(tcp)
                .await
                .unwrap();
            TlsConn::new(tls, Duration::from_millis(1), names)
        };
        let (client, server) = tokio::join!(connect, accept);
        (server, client)
    }

    #[tokio::test]
    async fn a_connection_keeps_its_sni_and_alpn_and_carries_bytes_both_ways() {
        let names = Arc::new(ServerNames::default());
        let (mut conn, mut client) = handshake("Docs.Wiki.Test", &[b"h2"], Some(&names)).await;
        assert_eq!(conn.selected_alpn_proto(), Some(ALPN::H2));
        let digest = conn.get_ssl_digest().unwrap();
        assert_eq!(digest.version, "TLSv1_3");
        assert!(!digest.cipher.is_empty());
        // Every request of the connection carries the same digest, and finds the name by it.
        assert!(Arc::ptr_eq(&digest, &conn.get_ssl_digest().unwrap()));
        assert_eq!(
            names.of(Some(&digest)),
            ConnName::Tls(Some(Arc::from("docs.wiki.test")))
        );
        assert_eq!(
            conn.get_timing_digest().len(),
            2,
            "the TCP layer and the TLS one"
        );
        let socket = conn.get_socket_digest().unwrap();
        assert_eq!(
            socket.peer_addr().and_then(|a| a.as_inet()).copied(),
            Some(client.get_ref().0.local_addr().unwrap()),
            "the TCP connection's own digest"
        );

        client.write_all(b"ping").await.unwrap();
        let mut buf = [0u8; 4];
        conn.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"ping");
        conn.write_all(b"pong").await.unwrap();
        conn.flush().await.unwrap();
        client.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"pong");

        // Shut down: the client reads the end of the stream (close_notify).
        Shutdown::shutdown(&mut conn).await;
        assert_eq!(client.read(&mut buf).await.unwrap(), 0);
        drop(conn);
        assert_eq!(names.of(Some(&digest)), ConnName::Gone);
        assert_eq!(names.len(), 0);
    }

    #[tokio::test]
    async fn http_1_1_is_told_by_alpn_and_no_names_are_kept_unless_asked() {
        let names = Arc::new(ServerNames::default());
        let (conn, _client) = handshake("wiki.test", &[b"http/1.1"], Some(&names)).await;
        assert_eq!(conn.selected_alpn_proto(), Some(ALPN::H1));
        drop(conn);

        // A connection made without `names` keeps nothing, and is not found there.
        let (unkept, _client) = handshake("wiki.test", &[], None).await;
        assert_eq!(
            unkept.selected_alpn_proto(),
            None,
            "the client offered none"
        );
        assert_eq!(names.len(), 0);
        assert_eq!(names.of(unkept.get_ssl_digest().as_ref()), ConnName::Gone);
    }

    fn digest() -> Arc<SslDigest> {
        Arc::new(SslDigest::new(
            "TLS13_AES_128_GCM_SHA256",
            "TLSv1_3",
            None,
            None,
            vec![],
        ))
    }

    #[test]
    fn a_kept_name_is_found_by_its_digest_only_while_kept() {
        let names = ServerNames::default();
        let (a, b) = (digest(), digest());
        names.insert(&a, Some(Arc::from("wiki.test")));
        names.insert(&b, None);
        assert_eq!(
            names.of(Some(&a)),
            ConnName::Tls(Some(Arc::from("wiki.test")))
        );
        assert_eq!(names.of(Some(&b)), ConnName::Tls(None));
        assert_eq!(names.of(None), ConnName::Plain);
        names.remove(&a);
        assert_eq!(names.of(Some(&a)), ConnName::Gone);
        // A digest that was never kept (another listener's, say) is not mistaken for one.
        assert_eq!(names.of(Some(&digest())), ConnName::Gone);
        assert_eq!(names.len(), 1);
    }
}
