//! The floor every Latch figure is compared against: a pingora reverse proxy with the same
//! pingora version and thread count as `latch proxy`, and nothing else — no rules, no tokens,
//! no locks, no body filters. With `--tls-cert` and `--tls-key` it answers HTTPS instead, with
//! pingora's rustls listener offering HTTP/2 and HTTP/1.1 by ALPN, as Latch's `[tls]` does.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use async_trait::async_trait;
use clap::Parser;
use pingora::listeners::tls::TlsSettings;
use pingora::prelude::*;
use pingora::proxy::{ProxyHttp, Session};
use pingora::server::configuration::ServerConf;
use pingora::server::{RunArgs, Server};

/// The same allocator as the latch binary, so the ratios compare Latch's work, not allocators.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(about = "A bare pingora reverse proxy: the baseline for Latch's benchmarks.")]
struct Args {
    /// Address to listen on.
    #[arg(long)]
    listen: SocketAddr,
    /// The upstream's address (plain HTTP).
    #[arg(long)]
    upstream: SocketAddr,
    /// Worker threads of the proxy service; give the same number as the Latch under test.
    #[arg(long, default_value_t = 2)]
    threads: usize,
    /// Listen with TLS, with this certificate chain (PEM, leaf first).
    #[arg(long, requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// The private key of `--tls-cert` (PEM).
    #[arg(long, requires = "tls_cert")]
    tls_key: Option<PathBuf>,
}

struct Bare {
    upstream: SocketAddr,
}

#[async_trait]
impl ProxyHttp for Bare {
    type CTX = ();

    fn new_ctx(&self) {}

    async fn upstream_peer(&self, _session: &mut Session, _ctx: &mut ()) -> Result<Box<HttpPeer>> {
        Ok(Box::new(HttpPeer::new(self.upstream, false, String::new())))
    }
}

fn main() -> ExitCode {
    let args = Args::parse();
    let conf = ServerConf {
        threads: args.threads,
        grace_period_seconds: Some(1),
        graceful_shutdown_timeout_seconds: Some(2),
        ..ServerConf::default()
    };
    let mut server = Server::new_with_opt_and_conf(None, conf);
    server.bootstrap();
    let mut proxy = pingora::proxy::http_proxy_service_with_name(
        &server.configuration,
        Bare {
            upstream: args.upstream,
        },
        "bare pingora",
    );
    match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => {
            let mut settings = match TlsSettings::intermediate(
                &cert.display().to_string(),
                &key.display().to_string(),
            ) {
                Ok(settings) => settings,
                Err(e) => {
                    eprintln!("bare-pingora: the TLS certificate or key: {e}");
                    return ExitCode::from(2);
                }
            };
            settings.enable_h2();
            proxy.add_tls_with_settings(&args.listen.to_string(), None, settings);
        }
        _ => proxy.add_tcp(&args.listen.to_string()),
    }
    server.add_service(proxy);
    server.run(RunArgs::default());
    ExitCode::SUCCESS
}
