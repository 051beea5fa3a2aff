//! The processes a run measures, started and checked before any figure is taken: the
//! upstream (nginx serving files, or `static-upstream`), nginx as a proxy when installed,
//! `bare-pingora`, and the `latch proxy` instances (memory store with HS256, Redis store,
//! RS256 and ES256 public keys), with the tokens their scenarios present.

use std::path::Path;

use crate::fanout::PREFIX;
use crate::latch::{self, Auth, Latch, Settings};
use crate::options::Options;
use crate::process::{self, free_port, Cpus, Proc};
use crate::site::{self, ASSET, BIG, FRESH};
use crate::tokens::{self, Signer};
use crate::{nginx, BenchError};

/// The processes under test.
pub(crate) struct Systems {
    pub(crate) upstream: Proc,
    pub(crate) upstream_port: u16,
    pub(crate) upstream_kind: &'static str,
    pub(crate) nginx: Option<(Proc, u16)>,
    pub(crate) bare: (Proc, u16),
    /// A second, identical bare pingora: the A/A control that shows how far two identical
    /// systems differ in this run.
    pub(crate) bare_twin: (Proc, u16),
    pub(crate) latch: Latch,
    /// Kept alive for the Redis-backed instance.
    pub(crate) _redis: Option<Proc>,
    pub(crate) latch_redis: Result<Latch, String>,
    pub(crate) latch_rs: Result<(Latch, Vec<u8>), String>,
    pub(crate) latch_es: Result<(Latch, Vec<u8>), String>,
}

pub(crate) struct Tokens {
    pub(crate) alice: String,
    pub(crate) bob: String,
    pub(crate) alice_rs: Result<String, String>,
    pub(crate) alice_es: Result<String, String>,
    pub(crate) rs: Option<Signer>,
    pub(crate) es: Option<Signer>,
}

pub(crate) fn mkdir(path: &Path) -> Result<(), BenchError> {
    std::fs::create_dir_all(path).map_err(|e| BenchError::io(path.display().to_string(), e))
}

pub(crate) fn start_bare(
    opts: &Options,
    work: &Path,
    upstream_port: u16,
    name: &str,
) -> Result<(Proc, u16), BenchError> {
    start_bare_with(opts, work, upstream_port, name, None)
}

/// A bare pingora; with `tls` (a certificate chain and its key) it listens with TLS.
pub(crate) fn start_bare_with(
    opts: &Options,
    work: &Path,
    upstream_port: u16,
    name: &str,
    tls: Option<(&Path, &Path)>,
) -> Result<(Proc, u16), BenchError> {
    let port = free_port()?;
    let mut cmd = opts.cpus.server_command(opts.bin_dir.join("bare-pingora"));
    cmd.arg("--listen")
        .arg(process::loopback(port).to_string())
        .arg("--upstream")
        .arg(process::loopback(upstream_port).to_string())
        .arg("--threads")
        .arg(opts.proxy_threads.to_string());
    if let Some((cert, key)) = tls {
        cmd.arg("--tls-cert").arg(cert).arg("--tls-key").arg(key);
    }
    let log = work.join(format!("{}.log", name.replace(' ', "-")));
    let mut proc = Proc::spawn(name, cmd, &log)?;
    proc.wait_listening(&[port])?;
    Ok((proc, port))
}

pub(crate) fn start_upstream(
    opts: &Options,
    work: &Path,
    root: &Path,
) -> Result<(Proc, u16, &'static str), BenchError> {
    start_upstream_named(opts, work, root, "upstream")
}

/// An upstream serving `root`, its files and logs under `work` in directories named after
/// `name` (a second upstream, for a pool, needs its own).
pub(crate) fn start_upstream_named(
    opts: &Options,
    work: &Path,
    root: &Path,
    name: &str,
) -> Result<(Proc, u16, &'static str), BenchError> {
    let port = free_port()?;
    if process::installed("nginx") {
        let proc = nginx::start(
            &format!("nginx {name}"),
            &work.join(format!("nginx-{name}")),
            port,
            opts.upstream_workers,
            &nginx::Role::Files { root },
            &opts.cpus,
        )?;
        return Ok((proc, port, "nginx serving files"));
    }
    let mut cmd = opts
        .cpus
        .server_command(opts.bin_dir.join("static-upstream"));
    cmd.arg("--listen")
        .arg(process::loopback(port).to_string())
        .arg("--root")
        .arg(root)
        .arg("--threads")
        .arg(opts.upstream_workers.to_string());
    let mut proc = Proc::spawn(
        &format!("static {name}"),
        cmd,
        &work.join(format!("static-{name}.log")),
    )?;
    proc.wait_listening(&[port])?;
    Ok((proc, port, "static-upstream (nginx not installed)"))
}

pub(crate) fn start_redis(work: &Path, cpus: &Cpus) -> Result<(Proc, u16), BenchError> {
    let port = free_port()?;
    let dir = work.join("redis");
    mkdir(&dir)?;
    let mut cmd = cpus.server_command("redis-server");
    cmd.current_dir(&dir)
        .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
        .arg("--port")
        .arg(port.to_string());
    let mut proc = Proc::spawn("redis-server", cmd, &dir.join("redis.log"))?;
    proc.wait_listening(&[port])?;
    Ok((proc, port))
}

/// A Latch instance with a public key for `algorithm`, and that key's PEM.
pub(crate) fn start_keyed_latch(
    opts: &Options,
    work: &Path,
    upstream_port: u16,
    algorithm: &'static str,
) -> Result<(Latch, Vec<u8>, Signer), String> {
    if !process::installed("openssl") {
        return Err("openssl is not installed (it makes the key pairs)".into());
    }
    let pair = tokens::generate(work, algorithm).map_err(|e| e.to_string())?;
    let signer = Signer::from_pair(algorithm, &pair).map_err(|e| e.to_string())?;
    let pem = std::fs::read(&pair.public).map_err(|e| e.to_string())?;
    let settings = Settings {
        upstream_port,
        pool: Vec::new(),
        tls: None,
        threads: opts.proxy_threads,
        auth: Auth::PublicKey {
            algorithm,
            public_key_file: pair.public.clone(),
        },
        store: "memory".into(),
    };
    let name = format!("latch {algorithm}");
    let dir = work.join(format!("latch-{}", algorithm.to_ascii_lowercase()));
    let latch = latch::start(
        &name,
        &opts.bin_dir.join("latch"),
        &dir,
        &settings,
        &opts.cpus,
    )
    .map_err(|e| e.to_string())?;
    Ok((latch, pem, signer))
}

pub(crate) fn start_systems(opts: &Options, work: &Path) -> Result<(Systems, Tokens), BenchError> {
    let root = work.join("site");
    site::write(&root)?;
    let (upstream, upstream_port, upstream_kind) = start_upstream(opts, work, &root)?;
    let nginx = if process::installed("nginx") {
        let port = free_port()?;
        let proc = nginx::start(
            "nginx proxy",
            &work.join("nginx-proxy"),
            port,
            opts.proxy_threads,
            &nginx::Role::Proxy { upstream_port },
            &opts.cpus,
        )?;
        Some((proc, port))
    } else {
        None
    };
    let bare = start_bare(opts, work, upstream_port, "bare pingora")?;
    let bare_twin = start_bare(opts, work, upstream_port, "bare pingora twin")?;
    let latch_bin = opts.bin_dir.join("latch");
    let memory = |store: String| Settings {
        upstream_port,
        pool: Vec::new(),
        tls: None,
        threads: opts.proxy_threads,
        auth: Auth::Secret,
        store,
    };
    let latch = latch::start(
        "latch",
        &latch_bin,
        &work.join("latch-memory"),
        &memory("memory".into()),
        &opts.cpus,
    )?;

    let (redis, latch_redis) = if process::installed("redis-server") {
        let (proc, port) = start_redis(work, &opts.cpus)?;
        let started = latch::start(
            "latch redis",
            &latch_bin,
            &work.join("latch-redis"),
            &memory(format!("redis://127.0.0.1:{port}/0")),
            &opts.cpus,
        )
        .map_err(|e| {
            // The first error line says why (for example, a build without the Redis store).
            let text = e.to_string();
            text.lines()
                .find(|l| l.contains("error"))
                .unwrap_or(text.lines().next().unwrap_or(""))
                .trim()
                .to_string()
        });
        (Some(proc), started)
    } else {
        (None, Err("redis-server is not installed".to_string()))
    };

    let rs = start_keyed_latch(opts, work, upstream_port, "RS256");
    let es = start_keyed_latch(opts, work, upstream_port, "ES256");
    let mint = |r: &Result<(Latch, Vec<u8>, Signer), String>| match r {
        Ok((_, _, signer)) => signer.mint("alice").map_err(|e| e.to_string()),
        Err(e) => Err(e.clone()),
    };
    let alice_rs = mint(&rs);
    let alice_es = mint(&es);
    let split = |r: Result<(Latch, Vec<u8>, Signer), String>| match r {
        Ok((latch, pem, signer)) => (Ok((latch, pem)), Some(signer)),
        Err(e) => (Err(e), None),
    };
    let (latch_rs, rs_signer) = split(rs);
    let (latch_es, es_signer) = split(es);
    let tokens = Tokens {
        alice: Signer::Hs256.mint("alice")?,
        bob: Signer::Hs256.mint("bob")?,
        alice_rs,
        alice_es,
        rs: rs_signer,
        es: es_signer,
    };
    Ok((
        Systems {
            upstream,
            upstream_port,
            upstream_kind,
            nginx,
            bare,
            bare_twin,
            latch,
            _redis: redis,
            latch_redis,
            latch_rs,
            latch_es,
        },
        tokens,
    ))
}

/// Checks by hand what the rounds will assume: the denied lock is someone else's, the banner
/// goes into injected pages and not into `inject = false` ones.
pub(crate) async fn prepare(systems: &Systems, tokens: &Tokens) -> Result<(), BenchError> {
    let client = reqwest::Client::builder()
        .no_proxy()
        .build()
        .map_err(|e| BenchError::Check(format!("http client: {e}")))?;
    let fetch = |url: String, token: &str| {
        let request = client.get(&url).bearer_auth(token);
        async move {
            let response = request
                .send()
                .await
                .map_err(|e| BenchError::Check(format!("{url}: {e}")))?;
            let status = response.status().as_u16();
            let body = response.text().await.unwrap_or_default();
            Ok::<_, BenchError>((url, status, body))
        }
    };
    let banner = format!("{PREFIX}/banner.js");
    let latch = &systems.latch;
    let (url, status, _) = fetch(latch.url(&site::path("denied", ASSET)), &tokens.bob).await?;
    if status != 200 {
        return Err(BenchError::Check(format!(
            "{url}: bob's claim got {status}"
        )));
    }
    let (url, status, _) = fetch(latch.url(&site::path("denied", ASSET)), &tokens.alice).await?;
    if status != 423 {
        return Err(BenchError::Check(format!(
            "{url}: alice got {status}, expected 423"
        )));
    }
    let (url, status, body) = fetch(latch.url(&site::path("held", BIG)), &tokens.alice).await?;
    if status != 200 || !body.contains(&banner) {
        return Err(BenchError::Check(format!(
            "{url}: status {status}, banner injected: {}",
            body.contains(&banner)
        )));
    }
    // The page whose head must differ on every request, or its scenario measures nothing new.
    let fresh = latch.url(&site::path("held", FRESH));
    let (url, status, first) = fetch(fresh.clone(), &tokens.alice).await?;
    let (_, _, second) = fetch(fresh, &tokens.alice).await?;
    if status != 200 || !first.contains(&banner) || first == second {
        return Err(BenchError::Check(format!(
            "{url}: status {status}, banner injected: {}, head new on each request: {}",
            first.contains(&banner),
            first != second
        )));
    }
    let (url, status, body) = fetch(latch.url(&site::path("plain", BIG)), &tokens.alice).await?;
    if status != 200 || body.contains(&banner) {
        return Err(BenchError::Check(format!(
            "{url}: status {status}, banner injected: {}",
            body.contains(&banner)
        )));
    }
    Ok(())
}
