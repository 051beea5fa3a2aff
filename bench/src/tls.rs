//! The `tls` part: TLS termination, HTTP/2 from the client, and a pool of upstream servers.
//!
//! - TLS pass-through and the TLS held path run in bracketed rounds (see [`crate::rounds`])
//!   against a bare pingora that listens with TLS too: the same certificate, rustls in both,
//!   HTTP/1.1 from wrk over `https`. Only what Latch adds on top of pingora's TLS is charged to
//!   it. A second, identical bare pingora with TLS is the part's A/A control.
//! - HTTP/2 against HTTP/1.1 is measured on the same Latch listener with h2load for both
//!   protocols (wrk speaks no HTTP/2), the two runs alternating round by round.
//! - A pool of two upstream servers against one: two Latch instances, one per upstream
//!   setting, both bracketed by the plain bare pingora, and compared round by round through it.
//!
//! The certificate is made for each run with the `openssl` command line: a CA and a leaf it
//! signs for `localhost` and `127.0.0.1`, so no key material lives in the repository.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::h2load::{self, Protocol};
use crate::latch::{self, Auth, Latch, Settings, TlsListener};
use crate::options::Options;
use crate::process::{self, free_port, Proc};
use crate::report::{Row, Verdict};
use crate::rounds;
use crate::site::{self, ASSET};
use crate::stats::median;
use crate::systems::{self, Systems, Tokens};
use crate::throughput::{self, Family, Tally};
use crate::wrk::Load;
use crate::BenchError;

/// The listener's certificate and what signed it.
pub struct Certificate {
    pub ca: PathBuf,
    /// The leaf alone (the CA signs it directly), PEM.
    pub cert: PathBuf,
    /// Its private key, PKCS#8 PEM.
    pub key: PathBuf,
}

/// Makes a CA and a leaf for `localhost` and `127.0.0.1` in `dir` with the `openssl` command
/// (the end-to-end tests' own test CA: P-256 keys, what most sites serve today).
pub fn make_certificate(dir: &Path) -> Result<Certificate, BenchError> {
    systems::mkdir(dir)?;
    let ca = testkit::certs::TestCa::try_new(dir, "latch-bench").map_err(BenchError::Check)?;
    let leaf = ca
        .try_issue(&["localhost", "127.0.0.1"])
        .map_err(BenchError::Check)?;
    Ok(Certificate {
        ca: ca.cert(),
        cert: leaf.cert,
        key: leaf.key,
    })
}

/// A TLS client configuration (rustls) that trusts only the CA in the PEM file `ca`.
pub fn client_config(ca: &Path) -> Result<std::sync::Arc<rustls::ClientConfig>, BenchError> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::CertificateDer;
    let unusable = |e: String| BenchError::Check(format!("the run's CA {}: {e}", ca.display()));
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca).map_err(|e| unusable(e.to_string()))? {
        let cert = cert.map_err(|e| unusable(e.to_string()))?;
        roots.add(cert).map_err(|e| unusable(e.to_string()))?;
    }
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| unusable(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(std::sync::Arc::new(config))
}

/// The processes of the part, besides the shared ones in [`Systems`].
struct TlsSystems {
    bare_tls: (Proc, u16),
    /// An identical second one: the part's A/A control.
    bare_tls_twin: (Proc, u16),
    latch_tls: Latch,
    tls_port: u16,
    _second_upstream: Proc,
    latch_pool: Latch,
}

impl TlsSystems {
    fn latch_https(&self, path: &str) -> String {
        format!("https://127.0.0.1:{}{path}", self.tls_port)
    }
}

fn start(
    opts: &Options,
    systems: &Systems,
    work: &Path,
    cert: &Certificate,
) -> Result<TlsSystems, BenchError> {
    let bare_tls = systems::start_bare_with(
        opts,
        work,
        systems.upstream_port,
        "bare pingora tls",
        Some((&cert.cert, &cert.key)),
    )?;
    let bare_tls_twin = systems::start_bare_with(
        opts,
        work,
        systems.upstream_port,
        "bare pingora tls twin",
        Some((&cert.cert, &cert.key)),
    )?;
    let tls_port = free_port()?;
    let settings = |pool: Vec<u16>, tls: Option<TlsListener>| Settings {
        upstream_port: systems.upstream_port,
        pool,
        tls,
        threads: opts.proxy_threads,
        auth: Auth::Secret,
        store: "memory".into(),
    };
    let latch_bin = opts.bin_dir.join("latch");
    let latch_tls = latch::start(
        "latch tls",
        &latch_bin,
        &work.join("latch-tls"),
        &settings(
            Vec::new(),
            Some(TlsListener {
                port: tls_port,
                cert_file: cert.cert.clone(),
                key_file: cert.key.clone(),
            }),
        ),
        &opts.cpus,
    )?;
    // The second server of the pool serves the same files as the first.
    let (second, second_port, _) =
        systems::start_upstream_named(opts, work, &work.join("site"), "upstream-2")?;
    let latch_pool = latch::start(
        "latch pool",
        &latch_bin,
        &work.join("latch-pool"),
        &settings(vec![second_port], None),
        &opts.cpus,
    )?;
    Ok(TlsSystems {
        bare_tls,
        bare_tls_twin,
        latch_tls,
        tls_port,
        _second_upstream: second,
        latch_pool,
    })
}

/// h2load's figures for the two protocols, one sample per protocol per round.
#[derive(Default)]
struct ProtocolRuns {
    h1: Vec<h2load::Sample>,
    h2: Vec<h2load::Sample>,
    /// Per round, HTTP/2's rate over HTTP/1.1's.
    ratios: Vec<f64>,
    failure: Option<String>,
    /// Runs thrown away because other programs used the CPU meanwhile.
    repeated: usize,
    /// Runs kept although other programs still used the CPU after every retry.
    disturbed: usize,
}

/// Alternates HTTP/1.1 and HTTP/2 runs against `url`, the first protocol swapping each round
/// so neither always runs on a warmer machine. A timed run during which other programs used
/// the CPU is repeated, as the wrk runs are ([`rounds::quiet_run`]).
async fn protocol_rounds(url: &str, opts: &Options) -> ProtocolRuns {
    let options = |seconds: u64| h2load::Options {
        threads: opts.wrk_threads,
        connections: opts.connections,
        duration: Duration::from_secs(seconds),
    };
    let mut runs = ProtocolRuns::default();
    if opts.warmup_seconds > 0 {
        for protocol in [Protocol::H1, Protocol::H2] {
            if let Err(e) = h2load::run(url, protocol, options(opts.warmup_seconds)).await {
                runs.failure = Some(e.to_string());
                return runs;
            }
        }
    }
    for round in 0..opts.rounds {
        let order = if round % 2 == 0 {
            [Protocol::H1, Protocol::H2]
        } else {
            [Protocol::H2, Protocol::H1]
        };
        let mut h1 = None;
        let mut h2 = None;
        for protocol in order {
            eprintln!(
                "bench: round {}/{}: {} / latch tls (h2load)",
                round + 1,
                opts.rounds,
                protocol.alpn()
            );
            let label = format!("{} (h2load)", protocol.alpn());
            let run = || h2load::run(url, protocol, options(opts.seconds));
            match rounds::quiet_run(&label, opts.noise, run).await {
                Ok((sample, thrown, disturbed)) => {
                    runs.repeated += thrown;
                    runs.disturbed += usize::from(disturbed);
                    match protocol {
                        Protocol::H1 => h1 = Some(sample),
                        Protocol::H2 => h2 = Some(sample),
                    }
                }
                Err(e) => {
                    runs.failure = Some(e.to_string());
                    return runs;
                }
            }
        }
        if let (Some(h1), Some(h2)) = (h1, h2) {
            if h1.rps > 0.0 {
                runs.ratios.push(h2.rps / h1.rps);
            }
            runs.h1.push(h1);
            runs.h2.push(h2);
        }
    }
    runs
}

/// The HTTP/2 scenario's rows: HTTP/1.1's rate as the reference, HTTP/2's with its ratio.
fn protocol_rows(scenario: &str, runs: &ProtocolRuns) -> Vec<Row> {
    let mut h1 = Row::new(scenario, "latch, HTTP/1.1 (h2load)");
    let mut h2 = Row::new(scenario, "latch, HTTP/2 (h2load)");
    h2.target = "report".into();
    if let Some(why) = &runs.failure {
        h2.verdict = Verdict::Failed(why.clone());
        return vec![h1, h2];
    }
    let rps =
        |samples: &[h2load::Sample]| median(&samples.iter().map(|s| s.rps).collect::<Vec<_>>());
    h1.rps = rps(&runs.h1);
    h1.ratio = h1.rps.map(|_| 1.0);
    h2.rps = rps(&runs.h2);
    h2.ratio = median(&runs.ratios);
    h2.verdict = match h2.ratio {
        Some(r) => Verdict::Info(format!(
            "{r:.2}× HTTP/1.1 (median of {} rounds; mean time per request {} vs {}{})",
            runs.ratios.len(),
            mean_ms(&runs.h2),
            mean_ms(&runs.h1),
            noise_note(runs)
        )),
        None => Verdict::Failed("no round ran both protocols".into()),
    };
    vec![h1, h2]
}

/// What the h2load runs' noise control did, when it did anything.
fn noise_note(runs: &ProtocolRuns) -> String {
    let mut note = String::new();
    if runs.repeated > 0 {
        note.push_str(&format!("; {} runs repeated", runs.repeated));
    }
    if runs.disturbed > 0 {
        note.push_str(&format!("; {} kept disturbed", runs.disturbed));
    }
    note
}

fn mean_ms(samples: &[h2load::Sample]) -> String {
    median(&samples.iter().map(|s| s.mean_ms).collect::<Vec<_>>())
        .map_or_else(|| "?".into(), |v| format!("{v:.2} ms"))
}

/// The pool row: Latch over two servers, its ratio to bare pingora, and how it compares with
/// Latch over one server, round by round through the same bare pingora.
fn pool_row(
    scenario: &str,
    results: &std::collections::HashMap<&'static str, (crate::rounds::Measured, Option<u64>)>,
) -> Row {
    let mut row = throughput::throughput_row(scenario, "latch, pool of 2", results, "pool-two");
    row.target = "report".into();
    if matches!(row.verdict, Verdict::Reference) {
        row.verdict = Verdict::Info(
            match throughput::relative_ratio(results, "pool-two", "pool-one") {
                Some(v) => format!(
                    "{v:.3}× one upstream (median of {} rounds)",
                    throughput::relative_rounds(results, "pool-two", "pool-one").len()
                ),
                None => "no single-upstream figure".into(),
            },
        );
    }
    row
}

pub(crate) async fn rows(
    opts: &Options,
    systems: &Systems,
    tokens: &Tokens,
    work: &Path,
    scripts: &Path,
    tally: &mut Tally,
) -> Result<Vec<Row>, BenchError> {
    let pass_s = "TLS pass-through (no rule), 1.4 KB";
    let held_s = "TLS lock held by requester, memory, 1.4 KB";
    let h2_s = "HTTP/2 against HTTP/1.1, TLS, 1.4 KB";
    let pool_s = "pool of 2 upstream servers, plain HTTP, 1.4 KB";
    if !process::installed("openssl") {
        let why = "openssl is not installed (it makes the certificate)";
        return Ok(vec![
            Row::not_run(pass_s, "latch", "≥ 0.95× bare", why),
            Row::not_run(held_s, "latch", "≥ 0.90× bare", why),
            Row::not_run(h2_s, "latch", "report", why),
            Row::not_run(pool_s, "latch", "report", why),
        ]);
    }
    let cert = tokio::task::block_in_place(|| make_certificate(&work.join("tls")))?;
    let tls = tokio::task::block_in_place(|| start(opts, systems, work, &cert))?;

    let asset = site::path("", ASSET);
    let held = site::path("held", ASSET);
    let mut family = Family::new(scripts);
    let (bare_tls, bare_tls_port) = &tls.bare_tls;
    let bare_https = |path: &str| format!("https://127.0.0.1:{bare_tls_port}{path}");
    family.add(
        "bare-tls",
        None,
        "1.4 KB over TLS / bare pingora",
        Load::get(bare_https(&asset), 200),
        bare_tls.pid(),
    )?;
    let (twin, twin_port) = &tls.bare_tls_twin;
    family.add(
        "bare-tls-twin",
        Some("bare-tls"),
        "1.4 KB over TLS / bare pingora, twin",
        Load::get(format!("https://127.0.0.1:{twin_port}{asset}"), 200),
        twin.pid(),
    )?;
    let latch_pid = tls.latch_tls.proc.pid();
    family.add(
        "tls-pass",
        Some("bare-tls"),
        "TLS pass-through / latch",
        Load::get(tls.latch_https(&asset), 200),
        latch_pid,
    )?;
    family.add(
        "bare-tls-held",
        None,
        "1.4 KB over TLS, with token / bare pingora",
        Load::get(bare_https(&held), 200).bearer(&tokens.alice),
        bare_tls.pid(),
    )?;
    family.add(
        "tls-held",
        Some("bare-tls-held"),
        "TLS held, memory / latch",
        Load::get(tls.latch_https(&held), 200).bearer(&tokens.alice),
        latch_pid,
    )?;
    let (bare, bare_port) = &systems.bare;
    family.add(
        "bare",
        None,
        "1.4 KB / bare pingora",
        Load::get(format!("http://127.0.0.1:{bare_port}{asset}"), 200),
        bare.pid(),
    )?;
    family.add(
        "pool-one",
        Some("bare"),
        "one upstream / latch",
        Load::get(systems.latch.url(&asset), 200),
        systems.latch.proc.pid(),
    )?;
    family.add(
        "pool-two",
        Some("bare"),
        "pool of 2 / latch",
        Load::get(tls.latch_pool.url(&asset), 200),
        tls.latch_pool.proc.pid(),
    )?;
    let r = family.run(opts, tally).await;

    let mut rows = vec![throughput::throughput_row(
        pass_s,
        "bare pingora, TLS",
        &r,
        "bare-tls",
    )];
    rows.push(throughput::twin_row(
        pass_s,
        "bare pingora, TLS, twin",
        &r,
        "bare-tls-twin",
    ));
    rows.push(throughput::at_least(
        pass_s,
        &r,
        "tls-pass",
        "≥ 0.95× bare",
        0.95,
    ));
    rows.push(throughput::throughput_row(
        held_s,
        "bare pingora, TLS, with token",
        &r,
        "bare-tls-held",
    ));
    rows.push(throughput::at_least(
        held_s,
        &r,
        "tls-held",
        "≥ 0.90× bare",
        0.90,
    ));

    if process::installed("h2load") {
        eprintln!("bench: HTTP/2 against HTTP/1.1 (h2load)");
        let runs = protocol_rounds(&tls.latch_https(&asset), opts).await;
        tally.repeated += runs.repeated;
        tally.disturbed += runs.disturbed;
        tally.runs += runs.h1.len() + runs.h2.len();
        rows.extend(protocol_rows(h2_s, &runs));
    } else {
        rows.push(Row::not_run(
            h2_s,
            "latch",
            "report",
            "h2load is not installed (Debian's nghttp2-client; scripts/setup.sh bench)",
        ));
    }

    rows.push(throughput::throughput_row(
        pool_s,
        "bare pingora",
        &r,
        "bare",
    ));
    rows.push(throughput::throughput_row(
        pool_s,
        "latch, one upstream",
        &r,
        "pool-one",
    ));
    rows.push(pool_row(pool_s, &r));
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use std::process::Command;

    use super::*;

    #[test]
    fn the_certificate_is_signed_by_its_ca_for_the_loopback_names() {
        let dir = tempfile::tempdir().unwrap();
        let cert = make_certificate(dir.path()).unwrap();
        let verify = Command::new("openssl")
            .args(["verify", "-CAfile"])
            .arg(&cert.ca)
            .arg(&cert.cert)
            .output()
            .unwrap();
        assert!(
            verify.status.success(),
            "{}",
            String::from_utf8_lossy(&verify.stderr)
        );
        let text = Command::new("openssl")
            .args(["x509", "-noout", "-text", "-in"])
            .arg(&cert.cert)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&text.stdout);
        assert!(text.contains("DNS:localhost"), "{text}");
        assert!(text.contains("IP Address:127.0.0.1"), "{text}");
        let key = std::fs::read_to_string(&cert.key).unwrap();
        assert!(key.starts_with("-----BEGIN PRIVATE KEY-----"), "PKCS#8");
    }

    fn sample(rps: f64, mean_ms: f64) -> h2load::Sample {
        h2load::Sample {
            rps,
            requests: 1,
            mean_ms,
        }
    }

    #[test]
    fn the_http2_row_is_the_median_of_per_round_ratios() {
        let runs = ProtocolRuns {
            h1: vec![sample(100.0, 1.0), sample(200.0, 2.0), sample(120.0, 3.0)],
            h2: vec![sample(90.0, 1.5), sample(220.0, 2.5), sample(96.0, 3.5)],
            ratios: vec![0.9, 1.1, 0.8],
            ..ProtocolRuns::default()
        };
        let [h1, h2] = <[Row; 2]>::try_from(protocol_rows("s", &runs)).unwrap();
        assert_eq!(h1.rps, Some(120.0));
        assert_eq!(h1.ratio, Some(1.0));
        assert_eq!(h2.rps, Some(96.0));
        assert_eq!(h2.ratio, Some(0.9));
        assert_eq!(
            h2.verdict,
            Verdict::Info(
                "0.90× HTTP/1.1 (median of 3 rounds; mean time per request 2.50 ms vs 2.00 ms)"
                    .into()
            )
        );
    }

    #[test]
    fn the_http2_row_says_how_many_runs_were_repeated_or_kept_disturbed() {
        let runs = ProtocolRuns {
            h1: vec![sample(100.0, 1.0)],
            h2: vec![sample(90.0, 1.5)],
            ratios: vec![0.9],
            repeated: 3,
            disturbed: 1,
            ..ProtocolRuns::default()
        };
        let rows = protocol_rows("s", &runs);
        assert_eq!(
            rows[1].verdict,
            Verdict::Info(
                "0.90× HTTP/1.1 (median of 1 rounds; mean time per request 1.50 ms vs 1.00 ms; \
                 3 runs repeated; 1 kept disturbed)"
                    .into()
            )
        );
    }

    #[test]
    fn the_pool_row_compares_with_one_upstream_round_by_round() {
        use crate::rounds::Measured;
        let measured = |bracketed: &[f64]| Measured {
            samples: vec![crate::wrk::Sample {
                rps: 100.0,
                p50_us: 1000.0,
                p99_us: 2000.0,
                requests: 1,
            }],
            bracketed: bracketed.iter().map(|&r| Some(r)).collect(),
            ..Measured::default()
        };
        let mut results = std::collections::HashMap::from([
            ("pool-one", (measured(&[1.0, 0.9, 0.8]), None)),
            ("pool-two", (measured(&[0.9, 0.9, 0.9]), None)),
        ]);
        let row = pool_row("s", &results);
        assert_eq!(row.system, "latch, pool of 2");
        // Per round: 0.9 / 1.0, 0.9 / 0.9, 0.9 / 0.8; the median is 1.
        assert_eq!(
            row.verdict,
            Verdict::Info("1.000× one upstream (median of 3 rounds)".into())
        );
        results.remove("pool-one");
        assert_eq!(
            pool_row("s", &results).verdict,
            Verdict::Info("no single-upstream figure".into())
        );
        results.remove("pool-two");
        assert!(matches!(
            pool_row("s", &results).verdict,
            Verdict::NotRun(_)
        ));
    }

    #[test]
    fn a_failed_h2load_run_fails_the_http2_row() {
        let runs = ProtocolRuns {
            failure: Some("negotiated http/1.1, not h2".into()),
            ..ProtocolRuns::default()
        };
        let rows = protocol_rows("s", &runs);
        assert!(matches!(&rows[1].verdict, Verdict::Failed(why) if why.contains("negotiated")));
        let empty = protocol_rows("s", &ProtocolRuns::default());
        assert!(matches!(empty[1].verdict, Verdict::Failed(_)));
    }
}
