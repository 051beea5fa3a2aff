//! Assembling one proxy instance: the pingora server, its HTTP proxy service and the
//! background service that runs the given tasks, the banner hub, the rule poller and the
//! admin port.
//!
//! The public surface is [`build`] and [`run`]. It does not open stores: the caller hands it an
//! opened lock store (inside [`Latch`]) and the stores' background work as tasks, so every
//! command opens its stores in one place.

use std::sync::Arc;

use async_trait::async_trait;
use pingora::apps::HttpServerOptions;
use pingora::listeners::ListenerConfig;
use pingora::protocols::l4::stream::L4BufferSettings;
use pingora::server::configuration::ServerConf;
use pingora::server::{RunArgs, Server, ShutdownWatch};
use pingora::services::background::{background_service, BackgroundService};
use pingora::services::listening::Service;
use pingora::services::ServiceWithDependents;
use pingora::tls::{version, ResolvesServerCert, ServerConfig, TlsAcceptor};

use crate::front::Front;
use crate::redirect::Redirect;
use crate::rules_source::{self, Polling};
use crate::service::LatchProxy;
use crate::state::{Latch, StartError};
use crate::task::Task;
use crate::tls::Certificates;

/// Everything one instance runs besides the proxy itself.
struct Background {
    latch: Arc<Latch>,
    admin: std::sync::Mutex<Option<std::net::TcpListener>>,
    tasks: std::sync::Mutex<Vec<Task>>,
}

#[async_trait]
impl BackgroundService for Background {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let tasks: Vec<Task> = self
            .tasks
            .lock()
            .map(|mut t| std::mem::take(&mut *t))
            .unwrap_or_default();
        for task in tasks {
            tokio::spawn(task);
        }
        let latch = self.latch.clone();
        tokio::spawn(async move { latch.hub.run(latch.store.as_ref(), &latch.metrics).await });
        let latch = self.latch.clone();
        tokio::spawn(async move { latch.app_sockets.run(latch.store.as_ref()).await });
        let latch = self.latch.clone();
        tokio::spawn(async move {
            if let Some(ended) = &latch.ended {
                ended.run().await;
            }
        });
        let latch = self.latch.clone();
        tokio::spawn(async move {
            let instance = &latch.config.proxy.instance;
            crate::shapes::publish(&latch.shapes, latch.store.as_ref(), instance).await
        });
        for provider in &self.latch.key_providers {
            tokio::spawn(Arc::clone(provider).run());
        }
        let admin = self.admin.lock().ok().and_then(|mut a| a.take());
        if let Some(listener) = admin {
            let router = crate::admin::router(self.latch.clone());
            match tokio::net::TcpListener::from_std(listener) {
                Ok(listener) => {
                    tokio::spawn(async move {
                        if let Err(e) = axum::serve(listener, router).await {
                            tracing::error!(error = %e, "admin port stopped");
                        }
                    });
                }
                Err(e) => tracing::error!(error = %e, "admin port unusable"),
            }
        }
        let _ = shutdown.changed().await;
    }
}

/// Builds the server for `latch`. `tasks` run on the background runtime (the lock store's
/// reaper, extra services such as the demo app); `rules` is polled for changes when given.
pub fn build(
    latch: Arc<Latch>,
    rules: Option<Polling>,
    mut tasks: Vec<Task>,
) -> Result<Server, StartError> {
    let admin = std::net::TcpListener::bind(latch.config.admin.listen).map_err(|e| {
        StartError::Other(format!(
            "admin.listen: cannot listen on {}: {e}",
            latch.config.admin.listen
        ))
    })?;
    admin
        .set_nonblocking(true)
        .map_err(|e| StartError::Other(format!("admin.listen: {e}")))?;
    // Fail now, with a clear message, rather than inside pingora's listener setup.
    drop(
        std::net::TcpListener::bind(latch.config.proxy.listen).map_err(|e| {
            StartError::Other(format!(
                "proxy.listen: cannot listen on {}: {e}",
                latch.config.proxy.listen
            ))
        })?,
    );

    let tls = match &latch.config.tls {
        Some(config) => {
            let certs = Certificates::load(config).map_err(StartError::Other)?;
            for (key, addr) in [
                ("tls.listen", Some(config.listen)),
                ("tls.redirect_listen", config.redirect_listen),
            ] {
                if let Some(addr) = addr {
                    drop(std::net::TcpListener::bind(addr).map_err(|e| {
                        StartError::Other(format!("{key}: cannot listen on {addr}: {e}"))
                    })?);
                }
            }
            tasks.push(Box::pin(crate::tls::watch(
                Arc::clone(&certs),
                config.reload,
            )));
            Some((config.clone(), certs))
        }
        None => None,
    };

    if let Some(polling) = rules {
        tasks.push(Box::pin(rules_source::poll(
            latch.clone(),
            polling.store,
            latch.config.rules.poll,
            polling.seen,
            polling.snapshot,
        )));
    }

    let conf = ServerConf {
        threads: latch.config.proxy.threads,
        grace_period_seconds: Some(1),
        graceful_shutdown_timeout_seconds: Some(2),
        // Every timeout runs on tokio's timers. Pingora's fast timers keep each timer, cancelled
        // or not, in a map until its deadline, and every request arms two long ones (the
        // upstream read timeout, the pooled connection's idle timeout) that are almost always
        // cancelled; tokio drops a cancelled timer at once, and costs fewer instructions per
        // request (measured with callgrind).
        fast_timeout_to_tokio_threshold_seconds: Some(0),
        ..ServerConf::default()
    };
    let mut server = Server::new_with_opt_and_conf(None, conf);
    server.bootstrap();
    let proxy = pingora::proxy::http_proxy(&server.configuration, LatchProxy::new(latch.clone()));
    let mut proxy = Service::new("latch proxy".into(), Front::new(proxy, latch.clone()));
    // No read buffer under pingora's own: HTTP sessions read into their own buffers, and a
    // banner socket would otherwise keep a buffer page of its own for its whole idle life.
    proxy.add_listener(
        ListenerConfig::tcp(latch.config.proxy.listen.to_string())
            .l4_buffer(L4BufferSettings::default().read(0)),
    );
    let mut services: Vec<Box<dyn ServiceWithDependents>> = Vec::new();
    if let Some((config, certs)) = tls {
        services.push(Box::new(https_service(&server, &latch, &config, &certs)));
        if let Some(addr) = config.redirect_listen {
            let redirect = Redirect::new(
                certs,
                config.listen.port(),
                latch.config.proxy.max_connections_per_client,
                latch.config.proxy.header_timeout,
            );
            let mut service = Service::new("latch https redirect".into(), redirect);
            service.add_tcp(&addr.to_string());
            services.push(Box::new(service));
        }
    }
    for app in latch.apps.iter() {
        if let Some(health) = app.upstream.health_service() {
            services.push(health);
        }
    }
    let background = background_service(
        "latch",
        Background {
            latch,
            admin: std::sync::Mutex::new(Some(admin)),
            tasks: std::sync::Mutex::new(tasks),
        },
    );
    server.add_service(proxy);
    for service in services {
        server.add_boxed_service(service);
    }
    server.add_service(background);
    Ok(server)
}

/// The HTTPS listener: its own proxy (HTTP/2 connections idle out after
/// `proxy.keepalive_timeout_seconds`) behind a front that makes the TLS handshakes with
/// `certs`, offering HTTP/2 and HTTP/1.1 by ALPN.
fn https_service(
    server: &Server,
    latch: &Arc<Latch>,
    config: &config::TlsConfig,
    certs: &Arc<Certificates>,
) -> Service<Front> {
    let mut proxy =
        pingora::proxy::http_proxy(&server.configuration, LatchProxy::new(latch.clone()));
    let mut options = HttpServerOptions::default();
    options.h2_idle_timeout = Some(latch.config.proxy.keepalive_timeout);
    proxy.server_options = Some(options);
    // TLS 1.2 and 1.3 on rustls with ring, the certificate chosen by the resolver.
    pingora::tls::install_default_crypto_provider();
    let mut tls = ServerConfig::builder_with_protocol_versions(&[&version::TLS12, &version::TLS13])
        .with_no_client_auth()
        .with_cert_resolver(Arc::clone(certs) as Arc<dyn ResolvesServerCert>);
    tls.alpn_protocols = crate::tls_conn::alpn_protocols();
    let front = Front::with_tls(proxy, latch.clone(), TlsAcceptor::from(Arc::new(tls)));
    let mut service = Service::new("latch https".into(), front);
    // A plain TCP listener: the front makes the handshake, after the client's limit and under
    // the first head's deadline. No read buffer under rustls, as on the plain listener: rustls
    // reads records into its own, and an idle banner socket would keep this one too.
    service.add_listener(
        ListenerConfig::tcp(config.listen.to_string())
            .l4_buffer(L4BufferSettings::default().read(0)),
    );
    service
}

/// Runs until SIGINT (quick exit) or SIGTERM (a grace period of 1 s, then up to 2 s for the
/// runtimes and their tasks to stop); returns once every runtime has stopped.
pub fn run(server: Server) {
    server.run(RunArgs::default());
}
