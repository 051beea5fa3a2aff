//! The protected app's servers at run time: what `upstream_peer` hands pingora, which server
//! of a pool a request goes to, whether a failed connection is tried on another, and the
//! connections the app's fenced WebSockets and event streams open themselves.
//!
//! Built once at start from [`config::UpstreamConfig`]: every server's address is resolved
//! then (the request path never waits on DNS), and each server gets a peer template carrying
//! its TLS settings (SNI, the CA bundle, the client certificate), which a request clones.
//!
//! A single server is used directly: no balancer, no health check, so the common case costs a
//! request what it always did. A pool is a `pingora-load-balancing` [`LoadBalancer`], with
//! pingora's round robin or [`LeastConnections`] (pingora's crate has no such selection; this
//! one plugs into it), and pingora's TCP or HTTP health check run by its background service.
//! This module knows nothing of locks: which server answers never changes what the lock store
//! holds or what the banner shows.

use std::collections::BTreeSet;
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use config::{Balance, HealthCheckKind, HostHeader, UpstreamConfig};
use futures::FutureExt;
use http::HeaderValue;
use pingora::connectors::TransportConnector;
use pingora::http::RequestHeader;
use pingora::lb::discovery::Static;
use pingora::lb::health_check::{HealthCheck, HttpHealthCheck, TcpHealthCheck};
use pingora::lb::selection::{BackendIter, BackendSelection, RoundRobin};
use pingora::lb::{Backend, Backends, Extensions, LoadBalancer};
use pingora::prelude::*;
use pingora::protocols::l4::socket::SocketAddr as PeerAddr;
use pingora::protocols::Stream;
use pingora::services::background::GenBackgroundService;
use pingora::services::ServiceWithDependents;
use pingora::utils::tls::{parse_x509, CertKey, WrappedX509};

/// How long opening a connection to a server (TCP and TLS) may take before it counts as
/// failed.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// How long one health check of one server may take, to connect and then to answer.
const CHECK_TIMEOUT: Duration = Duration::from_secs(2);

/// Why the servers cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    #[error("cannot resolve {0}: {1}")]
    Resolve(String, String),
    #[error("{0}")]
    Unusable(String),
}

/// The app's servers and how a request reaches one.
pub struct Upstream {
    servers: Box<[Target]>,
    pool: Option<Pool>,
    host_header: HostHeader,
    retry: bool,
    /// Opens the connections of the app's fenced sockets and streams (TLS included).
    connector: TransportConnector,
}

/// One server.
struct Target {
    /// What every request to it starts from: its address, scheme, SNI and TLS material.
    peer: HttpPeer,
    address: SocketAddr,
    /// Its own `Host` value (`host[:port]`), sent when `upstream_host_header = "upstream"`.
    authority: HeaderValue,
    /// Its URL, for logs.
    name: String,
    /// Requests in flight to it from this instance (read by least connections).
    in_flight: Arc<AtomicUsize>,
}

enum Pool {
    RoundRobin(Arc<LoadBalancer<RoundRobin>>),
    LeastConnections(Arc<LoadBalancer<LeastConnections>>),
}

/// Which server one request went to, and which it tried: kept in the request's context
/// between pingora's attempts.
#[derive(Default)]
pub struct Attempt {
    /// Servers already tried, by index (a pool has at most 64).
    tried: u64,
    /// The server of the current attempt.
    server: usize,
    /// Counts this request against its server while it lasts (least connections only).
    in_flight: Option<InFlight>,
}

/// One request in flight to one server; counted down when dropped.
pub struct InFlight(Arc<AtomicUsize>);

impl InFlight {
    fn new(counter: &Arc<AtomicUsize>) -> InFlight {
        counter.fetch_add(1, Ordering::Relaxed);
        InFlight(Arc::clone(counter))
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A connection opened for an app socket or stream, with the `Host` it must carry (when the
/// config asks for the server's own) and its place in the least-connections count.
pub struct Connection {
    pub stream: Stream,
    pub host: Option<HeaderValue>,
    pub server: String,
    /// Held for as long as the connection is used.
    pub held: Option<InFlight>,
}

impl Upstream {
    pub fn new(config: &UpstreamConfig) -> Result<Upstream, UpstreamError> {
        let tls = config.tls.as_ref();
        let ca: Option<Arc<[WrappedX509]>> = tls.and_then(|t| t.ca.as_ref()).map(|ders| {
            ders.iter()
                .map(|der| WrappedX509::new(der.clone(), parse_x509))
                .collect()
        });
        let client = tls
            .and_then(|t| t.client.as_ref())
            .map(|id| Arc::new(CertKey::new(id.certs.clone(), id.key.clone())));
        let mut servers = Vec::with_capacity(config.servers.len());
        for server in &config.servers {
            let wanted = server.address();
            let address = wanted
                .to_socket_addrs()
                .map_err(|e| UpstreamError::Resolve(wanted.clone(), e.to_string()))?
                .next()
                .ok_or_else(|| UpstreamError::Resolve(wanted.clone(), "no addresses".into()))?;
            if let Some(other) = servers.iter().find(|t: &&Target| t.address == address) {
                return Err(UpstreamError::Unusable(format!(
                    "{server} resolves to {address}, as {} does; list each server once",
                    other.name
                )));
            }
            let sni = match tls {
                Some(t) => t.sni.clone().unwrap_or_else(|| server.host.clone()),
                None => String::new(),
            };
            let mut peer = HttpPeer::new(address, server.tls, sni);
            peer.options.connection_timeout = Some(CONNECT_TIMEOUT);
            // No idle timeout on pooled upstream connections: each would arm a timer for every
            // request. A pooled connection is watched for the upstream closing it and dropped
            // then; the pool is bounded, and an idempotent request that fails on a reused
            // connection is retried on a new one.
            if let Some(t) = tls {
                peer.options.verify_cert = t.verify;
                peer.options.verify_hostname = t.verify;
                peer.options.ca = ca.clone();
                peer.client_cert_key = client.clone();
            }
            let authority = HeaderValue::from_str(&server.authority()).map_err(|_| {
                UpstreamError::Unusable(format!("{server} is not a valid Host value"))
            })?;
            servers.push(Target {
                peer,
                address,
                authority,
                name: server.to_string(),
                in_flight: Arc::default(),
            });
        }
        let pool = if servers.len() > 1 {
            Some(pool(&servers, config)?)
        } else {
            None
        };
        Ok(Upstream {
            servers: servers.into_boxed_slice(),
            pool,
            host_header: config.host_header,
            retry: config.retry,
            connector: TransportConnector::new(None),
        })
    }

    /// The peer for the next attempt of a request: the only server, or the pool's choice
    /// among the healthy servers this request has not tried yet.
    pub fn peer(&self, attempt: &mut Attempt) -> Box<HttpPeer> {
        if self.pool.is_some() {
            self.choose(attempt);
        }
        Box::new(self.servers[attempt.server].peer.clone())
    }

    /// May a request whose connection to its server just failed be tried on another? Only
    /// in a pool, with retries on, and while a server is left that it has not tried. The
    /// caller checks that the request is idempotent.
    pub fn may_retry(&self, attempt: &Attempt) -> bool {
        self.retry
            && self.pool.is_some()
            && (attempt.tried.count_ones() as usize) < self.servers.len()
    }

    /// The `Host` to send instead of the client's, if the config asks for the server's own.
    pub fn host(&self, attempt: &Attempt) -> Option<&HeaderValue> {
        match self.host_header {
            HostHeader::Client => None,
            HostHeader::Upstream => Some(&self.servers[attempt.server].authority),
        }
    }

    /// The URL of the server of the request's current attempt.
    pub fn server_name(&self, attempt: &Attempt) -> &str {
        &self.servers[attempt.server].name
    }

    /// Opens a connection for an app socket or stream, as a request would: the pool's choice,
    /// and with retries on, the next server when one cannot be reached. The error says what
    /// failed, not where: it may be shown to the client; the log names the server.
    pub async fn connect(&self) -> std::result::Result<Connection, String> {
        let mut attempt = Attempt::default();
        loop {
            let peer = self.peer(&mut attempt);
            match self.connector.new_stream(&*peer).await {
                Ok(stream) => {
                    return Ok(Connection {
                        stream,
                        host: self.host(&attempt).cloned(),
                        server: self.server_name(&attempt).to_owned(),
                        held: attempt.in_flight.take(),
                    })
                }
                Err(e) if self.may_retry(&attempt) => {
                    tracing::warn!(server = self.server_name(&attempt), error = %e,
                        "cannot connect to the app's server; trying another");
                }
                Err(e) => {
                    tracing::warn!(server = self.server_name(&attempt), error = %e,
                        "cannot connect to the app's server");
                    return Err(format!("cannot connect to the app: {}", e.etype().as_str()));
                }
            }
        }
    }

    /// The background service that runs the pool's health checks, when there is one to run.
    pub fn health_service(&self) -> Option<Box<dyn ServiceWithDependents>> {
        let name = "upstream health checks".to_owned();
        match self.pool.as_ref()? {
            Pool::RoundRobin(lb) if lb.health_check_frequency.is_some() => {
                Some(Box::new(GenBackgroundService::new(name, Arc::clone(lb))))
            }
            Pool::LeastConnections(lb) if lb.health_check_frequency.is_some() => {
                Some(Box::new(GenBackgroundService::new(name, Arc::clone(lb))))
            }
            _ => None,
        }
    }

    /// Points `attempt` at the next server: a healthy one not tried yet, else any one not
    /// tried yet (when every server fails its checks, trying one beats refusing), else the
    /// balancer's plain choice.
    fn choose(&self, attempt: &mut Attempt) {
        let tried = attempt.tried;
        let fresh = |b: &Backend| self.index_of(b).is_some_and(|i| tried & (1 << i) == 0);
        let n = self.servers.len();
        // Round robin walks on from a shared counter after its first pick, so give it room
        // to find an untried server among picks other requests also take.
        let steps = 4 * n;
        let picked = match self.pool.as_ref() {
            Some(Pool::RoundRobin(lb)) => lb
                .select_with(b"", steps, |b, healthy| healthy && fresh(b))
                .or_else(|| lb.select_with(b"", steps, |b, _| fresh(b))),
            Some(Pool::LeastConnections(lb)) => lb
                .select_with(b"", steps, |b, healthy| healthy && fresh(b))
                .or_else(|| lb.select_with(b"", steps, |b, _| fresh(b))),
            None => None,
        };
        let index = picked
            .and_then(|b| self.index_of(&b))
            .or_else(|| (0..n).find(|i| tried & (1 << i) == 0))
            .unwrap_or(attempt.server);
        attempt.tried |= 1 << index;
        attempt.server = index;
        attempt.in_flight = match self.pool {
            Some(Pool::LeastConnections(_)) => Some(InFlight::new(&self.servers[index].in_flight)),
            _ => None,
        };
    }

    fn index_of(&self, backend: &Backend) -> Option<usize> {
        let address = backend.addr.as_inet()?;
        self.servers.iter().position(|t| t.address == *address)
    }
}

/// The balancer of a pool, with its health check set.
fn pool(servers: &[Target], config: &UpstreamConfig) -> Result<Pool, UpstreamError> {
    let members: BTreeSet<Backend> = servers
        .iter()
        .map(|t| Backend {
            addr: PeerAddr::Inet(t.address),
            weight: 1,
            ext: Extensions::new(),
        })
        .collect();
    let mut backends = Backends::new(Static::new(members));
    let check = health_check(servers, config);
    let checked = check.is_some();
    if let Some(check) = check {
        backends.set_health_check(check);
    }
    let frequency = checked.then_some(config.health.interval);
    let ready = |e: Box<Error>| UpstreamError::Unusable(e.to_string());
    Ok(match config.balance {
        Balance::RoundRobin => {
            let mut lb = LoadBalancer::<RoundRobin>::from_backends(backends);
            finish(&mut lb, frequency).map_err(ready)?;
            Pool::RoundRobin(Arc::new(lb))
        }
        Balance::LeastConnections => {
            let table = Arc::new(InFlightTable(
                servers
                    .iter()
                    .map(|t| (t.address, Arc::clone(&t.in_flight)))
                    .collect(),
            ));
            let mut lb =
                LoadBalancer::<LeastConnections>::from_backends_with_config(backends, Some(table));
            finish(&mut lb, frequency).map_err(ready)?;
            Pool::LeastConnections(Arc::new(lb))
        }
    })
}

/// Loads the static membership into the balancer's selection (discovery from a fixed list
/// never waits) and sets how often servers are checked.
fn finish<S>(lb: &mut LoadBalancer<S>, frequency: Option<Duration>) -> Result<()>
where
    S: BackendSelection + Send + Sync + 'static,
    S::Iter: BackendIter,
{
    lb.update()
        .now_or_never()
        .unwrap_or_else(|| Error::e_explain(ErrorType::InternalError, "discovery waited"))?;
    lb.health_check_frequency = frequency;
    lb.parallel_health_check = true;
    Ok(())
}

/// pingora's TCP check (one connector serves every server), or its HTTP check made for each
/// server with that server's own peer (TLS settings included) and `Host`.
fn health_check(
    servers: &[Target],
    config: &UpstreamConfig,
) -> Option<Box<dyn HealthCheck + Send + Sync>> {
    match config.health.kind {
        HealthCheckKind::None => None,
        HealthCheckKind::Tcp => {
            let mut tcp = TcpHealthCheck::new();
            tcp.peer_template.options.connection_timeout = Some(CHECK_TIMEOUT);
            Some(Box::new(Logged {
                checks: vec![(None, tcp as Box<dyn HealthCheck + Send + Sync>)],
                names: names(servers),
            }))
        }
        HealthCheckKind::Http => {
            let checks = servers
                .iter()
                .map(|t| {
                    let host = t.authority.to_str().unwrap_or_default();
                    let mut http = HttpHealthCheck::new(host, t.peer.is_tls());
                    let mut peer = t.peer.clone();
                    peer.options.connection_timeout = Some(CHECK_TIMEOUT);
                    peer.options.read_timeout = Some(CHECK_TIMEOUT);
                    http.peer_template = peer;
                    if let Ok(mut req) =
                        RequestHeader::build("GET", config.health.path.as_bytes(), None)
                    {
                        let _ = req.append_header(http::header::HOST, host);
                        let _ = req.append_header(http::header::USER_AGENT, "latch-health-check");
                        http.req = req;
                    }
                    (
                        Some(t.address),
                        Box::new(http) as Box<dyn HealthCheck + Send + Sync>,
                    )
                })
                .collect();
            Some(Box::new(Logged {
                checks,
                names: names(servers),
            }))
        }
    }
}

fn names(servers: &[Target]) -> Vec<(SocketAddr, String)> {
    servers
        .iter()
        .map(|t| (t.address, t.name.clone()))
        .collect()
}

/// Runs the check meant for each server (or the one for all) and logs every change of a
/// server's health under its URL.
struct Logged {
    /// `None` as the address: the check for every server.
    checks: Vec<(Option<SocketAddr>, Box<dyn HealthCheck + Send + Sync>)>,
    names: Vec<(SocketAddr, String)>,
}

impl Logged {
    fn name(&self, target: &Backend) -> String {
        let address = target.addr.as_inet();
        self.names
            .iter()
            .find(|(a, _)| Some(a) == address)
            .map_or_else(|| target.addr.to_string(), |(_, n)| n.clone())
    }
}

#[async_trait]
impl HealthCheck for Logged {
    async fn check(&self, target: &Backend) -> Result<()> {
        let address = target.addr.as_inet();
        let check = self
            .checks
            .iter()
            .find(|(a, _)| a.is_none() || a.as_ref() == address);
        match check {
            Some((_, check)) => check.check(target).await,
            None => Ok(()),
        }
    }

    async fn health_status_change(&self, target: &Backend, healthy: bool) {
        let server = self.name(target);
        if healthy {
            tracing::info!(server, "the app's server passes its health check again");
        } else {
            tracing::warn!(
                server,
                "the app's server fails its health check; it gets no requests until it passes"
            );
        }
    }

    fn health_threshold(&self, _success: bool) -> usize {
        1
    }
}

/// Each server's count of requests in flight, by address, shared between the proxy (which
/// counts) and the selection (which reads), across rebuilds of the selection.
pub struct InFlightTable(Box<[(SocketAddr, Arc<AtomicUsize>)]>);

/// Least connections, as a selection for pingora's [`LoadBalancer`]: the server with the
/// fewest requests in flight from this instance first, then the next fewest, and so on; ties
/// go round in turn, so an idle pool is still spread.
pub struct LeastConnections {
    backends: Box<[Backend]>,
    in_flight: Box<[Arc<AtomicUsize>]>,
    turn: AtomicUsize,
}

impl BackendSelection for LeastConnections {
    type Iter = LeastIter;
    type Config = Arc<InFlightTable>;

    fn build(backends: &BTreeSet<Backend>) -> Self {
        Self::build_with_config(backends, &Arc::new(InFlightTable(Box::new([]))))
    }

    fn build_with_config(backends: &BTreeSet<Backend>, table: &Self::Config) -> Self {
        let backends: Box<[Backend]> = backends.iter().take(64).cloned().collect();
        let in_flight = backends
            .iter()
            .map(|b| {
                table
                    .0
                    .iter()
                    .find(|(a, _)| Some(a) == b.addr.as_inet())
                    .map_or_else(Arc::default, |(_, c)| Arc::clone(c))
            })
            .collect();
        LeastConnections {
            backends,
            in_flight,
            turn: AtomicUsize::new(0),
        }
    }

    fn iter(self: &Arc<Self>, _key: &[u8]) -> LeastIter {
        LeastIter {
            selection: Arc::clone(self),
            tried: 0,
            start: self.turn.fetch_add(1, Ordering::Relaxed),
        }
    }
}

/// The servers of a [`LeastConnections`] selection, least loaded first, each once.
pub struct LeastIter {
    selection: Arc<LeastConnections>,
    tried: u64,
    start: usize,
}

impl BackendIter for LeastIter {
    fn next(&mut self) -> Option<&Backend> {
        let n = self.selection.backends.len();
        let mut best: Option<(usize, usize)> = None;
        for k in 0..n {
            let i = (self.start + k) % n;
            if self.tried & (1 << i) != 0 {
                continue;
            }
            let load = self.selection.in_flight[i].load(Ordering::Relaxed);
            if best.is_none_or(|(_, least)| load < least) {
                best = Some((i, load));
            }
        }
        let (i, _) = best?;
        self.tried |= 1 << i;
        Some(&self.selection.backends[i])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn backends(ports: &[u16]) -> BTreeSet<Backend> {
        ports
            .iter()
            .map(|p| Backend::new(&format!("127.0.0.1:{p}")).unwrap())
            .collect()
    }

    fn table(ports: &[u16]) -> (Arc<InFlightTable>, Vec<Arc<AtomicUsize>>) {
        let counters: Vec<Arc<AtomicUsize>> = ports.iter().map(|_| Arc::default()).collect();
        let table = InFlightTable(
            ports
                .iter()
                .zip(&counters)
                .map(|(p, c)| (SocketAddr::from(([127, 0, 0, 1], *p)), Arc::clone(c)))
                .collect(),
        );
        (Arc::new(table), counters)
    }

    fn order(selection: &Arc<LeastConnections>) -> Vec<u16> {
        let mut iter = selection.iter(b"");
        let mut ports = Vec::new();
        while let Some(b) = iter.next() {
            ports.push(b.addr.as_inet().unwrap().port());
        }
        ports
    }

    #[test]
    fn least_connections_puts_the_least_loaded_first_and_lists_each_once() {
        let ports = [1001, 1002, 1003];
        let (table, counters) = table(&ports);
        let selection = Arc::new(LeastConnections::build_with_config(
            &backends(&ports),
            &table,
        ));
        counters[0].store(5, Ordering::Relaxed);
        counters[1].store(1, Ordering::Relaxed);
        counters[2].store(3, Ordering::Relaxed);
        assert_eq!(order(&selection), vec![1002, 1003, 1001]);
        counters[1].store(9, Ordering::Relaxed);
        assert_eq!(order(&selection), vec![1003, 1001, 1002]);
    }

    #[test]
    fn least_connections_takes_turns_among_equals() {
        let ports = [2001, 2002];
        let (table, _counters) = table(&ports);
        let selection = Arc::new(LeastConnections::build_with_config(
            &backends(&ports),
            &table,
        ));
        let firsts: Vec<u16> = (0..4).map(|_| order(&selection)[0]).collect();
        assert_eq!(firsts, vec![2001, 2002, 2001, 2002]);
    }

    #[test]
    fn a_request_in_flight_is_counted_until_it_ends() {
        let counter = Arc::new(AtomicUsize::new(0));
        let a = InFlight::new(&counter);
        let b = InFlight::new(&counter);
        assert_eq!(counter.load(Ordering::Relaxed), 2);
        drop(a);
        assert_eq!(counter.load(Ordering::Relaxed), 1);
        drop(b);
        assert_eq!(counter.load(Ordering::Relaxed), 0);
    }

    fn pool_of(ports: &[u16], balance: Balance) -> Upstream {
        let urls: Vec<String> = ports
            .iter()
            .map(|p| format!("http://127.0.0.1:{p}"))
            .collect();
        let mut config = UpstreamConfig::plain("127.0.0.1", ports[0]);
        config.servers = urls
            .iter()
            .map(|u| config::parse_upstream_url(u).unwrap())
            .collect();
        config.balance = balance;
        config.health.kind = HealthCheckKind::None;
        Upstream::new(&config).unwrap()
    }

    #[test]
    fn a_retry_goes_to_a_server_not_tried_and_stops_when_all_were() {
        for balance in [Balance::RoundRobin, Balance::LeastConnections] {
            let upstream = pool_of(&[3001, 3002, 3003], balance);
            let mut attempt = Attempt::default();
            let mut seen = Vec::new();
            for _ in 0..3 {
                let peer = upstream.peer(&mut attempt);
                seen.push(peer._address.as_inet().unwrap().port());
            }
            seen.sort_unstable();
            assert_eq!(seen, vec![3001, 3002, 3003], "{balance:?}");
            assert!(!upstream.may_retry(&attempt), "{balance:?}");
        }
    }

    #[test]
    fn round_robin_spreads_requests() {
        let upstream = pool_of(&[4001, 4002], Balance::RoundRobin);
        let mut counts = [0; 2];
        for _ in 0..10 {
            let peer = upstream.peer(&mut Attempt::default());
            counts[usize::from(peer._address.as_inet().unwrap().port() == 4002)] += 1;
        }
        assert_eq!(counts, [5, 5]);
    }

    #[test]
    fn a_single_server_is_never_retried() {
        let upstream = pool_of(&[5001], Balance::RoundRobin);
        let mut attempt = Attempt::default();
        upstream.peer(&mut attempt);
        assert!(!upstream.may_retry(&attempt));
        assert!(upstream.health_service().is_none());
    }
}
