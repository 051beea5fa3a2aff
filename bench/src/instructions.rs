//! Instructions per request, counted by callgrind: bare pingora and Latch (pass-through, and a
//! lock held by the requester with the memory store) serving the 1.4 KB file, and both serving
//! the 100 KB page, Latch with and without the banner, so the banner's cost is a number that
//! does not move from run to run, and the 100 KB page whose head is new on every request, on
//! which the banner's place cannot be remembered. Latch's held cases are compared with bare
//! pingora forwarding the same request, the user's token included. The 1.4 KB cases are also
//! counted over TLS (HTTP/1.1), against bare pingora listening with the same certificate.
//!
//! Throughput on a small shared VM moves by a quarter from one round to the next; an
//! instruction count does not move at all for the same binary and load, whatever else the
//! machine is doing. It counts only user-space work (the kernel's share of a request, the
//! same for every proxy, is left out), so its ratios overstate the throughput difference.
//! Each server runs alone under `valgrind --tool=callgrind`; after a warm-up its counters are
//! zeroed, wrk runs a fixed time, and the counters are dumped and divided by the requests
//! wrk completed (every one checked for its status, as in the throughput scenarios).

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::latch::{self, Auth, Settings};
use crate::options::Options;
use crate::process::{self, free_port, installed, Proc};
use crate::report::{thousands, Row, Verdict};
use crate::site::{self, ASSET, BIG, FRESH};
use crate::systems::{self, Systems, Tokens};
use crate::wrk::{self, Load};
use crate::BenchError;

const SCENARIO: &str = "instructions per request (callgrind), 1.4 KB";
const SCENARIO_BIG: &str = "instructions per request (callgrind), 100 KB HTML";
const SCENARIO_FRESH: &str =
    "instructions per request (callgrind), 100 KB HTML, head new on every request";
const SCENARIO_TLS: &str = "instructions per request (callgrind), 1.4 KB over TLS";
/// The sign-in cookie secret of the Latch under callgrind, so the bench can seal a session.
const COOKIE_SECRET: &str = "bench-cookie-secret-of-at-least-32-bytes!";
const WARMUP: Duration = Duration::from_secs(3);
const MEASURED: Duration = Duration::from_secs(8);

/// The `totals:` (or, in older formats, `summary:`) figure of a callgrind output file: the
/// event count of the whole dump. `None` when the file has neither.
pub fn parse_totals(callgrind_out: &str) -> Option<u64> {
    callgrind_out.lines().find_map(|line| {
        let rest = line
            .strip_prefix("totals:")
            .or_else(|| line.strip_prefix("summary:"))?;
        rest.split_whitespace().next()?.parse().ok()
    })
}

/// One server under callgrind.
struct Profiled {
    proc: Proc,
    out_prefix: String,
    dumps: usize,
}

impl Profiled {
    fn start(
        name: &str,
        dir: &Path,
        program: &Path,
        args: &[String],
        opts: &Options,
        ports: &[u16],
    ) -> Result<Profiled, BenchError> {
        systems::mkdir(dir)?;
        let out_prefix = dir.join("callgrind.out").display().to_string();
        let mut cmd = opts.cpus.server_command("valgrind");
        cmd.current_dir(dir)
            .arg("--tool=callgrind")
            .arg(format!("--callgrind-out-file={out_prefix}"))
            .arg(program)
            .args(args);
        let mut proc = Proc::spawn(name, cmd, &dir.join("server.log"))?;
        proc.wait_listening(ports)?;
        Ok(Profiled {
            proc,
            out_prefix,
            dumps: 0,
        })
    }

    fn control(&self, option: &str) -> Result<(), BenchError> {
        let mut cmd = Command::new("callgrind_control");
        cmd.arg(option).arg(self.proc.pid().to_string());
        process::run_quietly(cmd, || {
            format!("callgrind_control {option} failed for {}", self.proc.name)
        })
    }

    /// Instructions per request for `load`: warm-up, zero, measure, dump.
    async fn per_request(&mut self, load: &Load, scripts: &Path) -> Result<f64, BenchError> {
        let script = wrk::write_script(scripts, &format!("cg-{}", self.dumps), load)?;
        let options = |duration| wrk::Options {
            threads: 1,
            connections: 4,
            duration,
        };
        // The warm-up also claims the lock for a held scenario.
        wrk::run(load, &script, options(WARMUP)).await?;
        self.control("-z")?;
        let sample = wrk::run(load, &script, options(MEASURED)).await?;
        self.control("-d")?;
        self.dumps += 1;
        let file = format!("{}.{}", self.out_prefix, self.dumps);
        // callgrind writes the dump after answering; give it a moment.
        let mut text = String::new();
        for _ in 0..50 {
            text = std::fs::read_to_string(&file).unwrap_or_default();
            if parse_totals(&text).is_some() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let totals =
            parse_totals(&text).ok_or_else(|| BenchError::Check(format!("no totals in {file}")))?;
        if sample.requests == 0 {
            return Err(BenchError::Check(format!("no requests to {}", load.url)));
        }
        Ok(totals as f64 / sample.requests as f64)
    }
}

fn row(
    scenario: &str,
    system: &str,
    per_request: Result<f64, BenchError>,
    bare: Option<f64>,
) -> Row {
    let mut row = Row::new(scenario, system);
    row.target = "report".into();
    row.verdict = match per_request {
        Ok(n) => match bare {
            Some(b) if b > 0.0 => Verdict::Info(format!(
                "{} instructions, {:.3}× bare pingora's",
                thousands(n),
                n / b
            )),
            _ => Verdict::Info(format!("{} instructions", thousands(n))),
        },
        Err(e) => Verdict::Failed(e.to_string()),
    };
    row
}

/// Instructions per request for the 1.4 KB file on `server` (`url` makes its addresses):
/// unprotected without a token, then protected (held) with `token`.
async fn small_pair(
    server: &mut Profiled,
    url: impl Fn(&str) -> String,
    token: &str,
    scripts: &Path,
) -> (Result<f64, BenchError>, Result<f64, BenchError>) {
    let pass = server
        .per_request(&Load::get(url(&site::path("", ASSET)), 200), scripts)
        .await;
    let held = Load::get(url(&site::path("held", ASSET)), 200).bearer(token);
    (pass, server.per_request(&held, scripts).await)
}

/// Bare pingora under callgrind on `port`, forwarding to the shared upstream, listening with
/// `tls` when given.
fn start_bare(
    name: &str,
    dir: &Path,
    opts: &Options,
    systems: &Systems,
    port: u16,
    tls: Option<&crate::tls::Certificate>,
) -> Result<Profiled, BenchError> {
    let mut args = vec![
        "--listen".into(),
        process::loopback(port).to_string(),
        "--upstream".into(),
        process::loopback(systems.upstream_port).to_string(),
        "--threads".into(),
        opts.proxy_threads.to_string(),
    ];
    if let Some(cert) = tls {
        args.extend([
            "--tls-cert".into(),
            cert.cert.display().to_string(),
            "--tls-key".into(),
            cert.key.display().to_string(),
        ]);
    }
    Profiled::start(
        name,
        dir,
        &opts.bin_dir.join("bare-pingora"),
        &args,
        opts,
        &[port],
    )
}

/// The rows, or one "not run" row when valgrind is missing.
pub(crate) async fn rows(
    opts: &Options,
    systems: &Systems,
    tokens: &Tokens,
    work: &Path,
    scripts: &Path,
) -> Result<Vec<Row>, BenchError> {
    if !installed("valgrind") || !installed("callgrind_control") {
        return Ok(vec![Row::not_run(
            SCENARIO,
            "all",
            "report",
            "valgrind is not installed (scripts/setup.sh bench installs it)",
        )]);
    }
    let dir = work.join("callgrind");
    let held = site::path("held", ASSET);
    let big = site::path("held", BIG);
    let fresh = site::path("held", FRESH);

    let bare_port = free_port()?;
    let mut bare = start_bare(
        "bare pingora under callgrind",
        &dir.join("bare"),
        opts,
        systems,
        bare_port,
        None,
    )?;
    let bare_url = |path: &str| format!("http://127.0.0.1:{bare_port}{path}");
    // The held cases carry the user's token, and are compared with bare pingora forwarding
    // the same request.
    let (bare_n, bare_held) = small_pair(&mut bare, bare_url, &tokens.alice, scripts).await;
    let bare_big = bare
        .per_request(
            &Load::get(bare_url(&big), 200).bearer(&tokens.alice),
            scripts,
        )
        .await;
    let bare_fresh = bare
        .per_request(
            &Load::get(bare_url(&fresh), 200).bearer(&tokens.alice),
            scripts,
        )
        .await;
    drop(bare);

    // The same over TLS (HTTP/1.1, keep-alive): bare pingora listening with the certificate
    // Latch uses, so only what Latch adds on top of pingora's TLS is counted.
    let cert = tokio::task::block_in_place(|| crate::tls::make_certificate(&dir.join("tls")))?;
    let bare_tls_port = free_port()?;
    let mut bare_tls = start_bare(
        "bare pingora with TLS under callgrind",
        &dir.join("bare-tls"),
        opts,
        systems,
        bare_tls_port,
        Some(&cert),
    )?;
    let bare_tls_url = |path: &str| format!("https://127.0.0.1:{bare_tls_port}{path}");
    let (bare_tls_n, bare_tls_held) =
        small_pair(&mut bare_tls, bare_tls_url, &tokens.alice, scripts).await;
    drop(bare_tls);
    let base_tls = bare_tls_n.as_ref().ok().copied();
    let base_tls_held = bare_tls_held.as_ref().ok().copied();
    let mut tls_rows = vec![
        row(SCENARIO_TLS, "bare pingora", bare_tls_n, None),
        row(
            SCENARIO_TLS,
            "bare pingora, with token",
            bare_tls_held,
            None,
        ),
    ];

    let base = bare_n.as_ref().ok().copied();
    let base_held = bare_held.as_ref().ok().copied();
    let base_big = bare_big.as_ref().ok().copied();
    let base_fresh = bare_fresh.as_ref().ok().copied();
    let mut rows = vec![
        row(SCENARIO, "bare pingora", bare_n, None),
        row(SCENARIO, "bare pingora, with token", bare_held, None),
    ];
    let mut big_rows = vec![row(
        SCENARIO_BIG,
        "bare pingora, with token",
        bare_big,
        None,
    )];
    let mut fresh_rows = vec![row(
        SCENARIO_FRESH,
        "bare pingora, with token",
        bare_fresh,
        None,
    )];

    let latch_dir = dir.join("latch");
    systems::mkdir(&latch_dir)?;
    let (port, admin_port, tls_port) = (free_port()?, free_port()?, free_port()?);
    let settings = Settings {
        upstream_port: systems.upstream_port,
        pool: Vec::new(),
        tls: Some(latch::TlsListener {
            port: tls_port,
            cert_file: cert.cert.clone(),
            key_file: cert.key.clone(),
        }),
        threads: opts.proxy_threads,
        auth: Auth::Secret,
        store: "memory".into(),
    };
    let conf = latch_dir.join("latch.toml");
    // Sign-in is on, so the held path can also be measured with a session cookie instead of a
    // bearer token. The provider is never reached: sessions are sealed here.
    let oidc = format!(
        "\n[oidc]\nissuer = \"http://127.0.0.1:9\"\nclient_id = \"latch\"\n\
         client_secret = \"bench\"\ncookie_secret = \"{COOKIE_SECRET}\"\n"
    );
    let config = latch::config(&settings, port, admin_port) + &oidc;
    std::fs::write(&conf, config).map_err(|e| BenchError::io(conf.display().to_string(), e))?;
    let rules = latch_dir.join("rules.toml");
    std::fs::write(&rules, latch::RULES)
        .map_err(|e| BenchError::io(rules.display().to_string(), e))?;
    let mut profiled = Profiled::start(
        "latch under callgrind",
        &latch_dir,
        &opts.bin_dir.join("latch"),
        &[
            "proxy".into(),
            "--config".into(),
            conf.display().to_string(),
        ],
        opts,
        &[port, admin_port, tls_port],
    )?;
    let url = |path: &str| format!("http://127.0.0.1:{port}{path}");
    let (pass, held_n) = small_pair(&mut profiled, url, &tokens.alice, scripts).await;
    rows.push(row(SCENARIO, "latch, pass-through", pass, base));
    let bearer_held = held_n.as_ref().ok().copied();
    rows.push(row(SCENARIO, "latch, held, memory", held_n, base_held));
    let session = session_cookie()?;
    let by_session = profiled
        .per_request(
            &Load::get(url(&held), 200).cookie(auth::relying_party::SESSION_COOKIE, &session),
            scripts,
        )
        .await;
    rows.push(session_row(by_session, base_held, bearer_held));
    // The same page with and without the banner: their difference is the banner's cost.
    for (dir, system) in [
        ("plain", "latch, held, inject=false"),
        ("held", "latch, held + banner"),
    ] {
        let page = url(&site::path(dir, BIG));
        let n = profiled
            .per_request(&Load::get(page, 200).bearer(&tokens.alice), scripts)
            .await;
        big_rows.push(row(SCENARIO_BIG, system, n, base_big));
    }
    let n = profiled
        .per_request(&Load::get(url(&fresh), 200).bearer(&tokens.alice), scripts)
        .await;
    fresh_rows.push(row(SCENARIO_FRESH, "latch, held + banner", n, base_fresh));
    let tls_url = |path: &str| format!("https://127.0.0.1:{tls_port}{path}");
    let (pass, held_n) = small_pair(&mut profiled, tls_url, &tokens.alice, scripts).await;
    tls_rows.push(row(SCENARIO_TLS, "latch, pass-through", pass, base_tls));
    tls_rows.push(row(
        SCENARIO_TLS,
        "latch, held, memory",
        held_n,
        base_tls_held,
    ));
    rows.extend(big_rows);
    rows.extend(fresh_rows);
    rows.extend(tls_rows);
    Ok(rows)
}

/// A sign-in session for alice, sealed with the key of the Latch under callgrind.
fn session_cookie() -> Result<String, BenchError> {
    let sessions = auth::Sessions::new(COOKIE_SECRET.as_bytes())
        .map_err(|e| BenchError::Check(format!("session key: {e}")))?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    Ok(sessions.issue(&auth::Identity {
        user: "alice".into(),
        name: "alice".into(),
        roles: Vec::new(),
        expires_at: now + 24 * 3600,
        sign_in: Some(auth::new_session_id()),
        renewal: None,
        header_values: Default::default(),
    }))
}

/// The held path with a session cookie: against bare pingora with a token, and against the same
/// path with a bearer token (the budget is +2%).
fn session_row(
    per_request: Result<f64, BenchError>,
    bare: Option<f64>,
    bearer: Option<f64>,
) -> Row {
    let against_bearer = match (&per_request, bearer) {
        (Ok(n), Some(b)) if b > 0.0 => Some((n / b - 1.0) * 100.0),
        _ => None,
    };
    let mut row = row(SCENARIO, "latch, held, session cookie", per_request, bare);
    if let (Verdict::Info(text), Some(percent)) = (&mut row.verdict, against_bearer) {
        text.push_str(&format!(", {percent:+.2}% against the bearer token"));
    }
    row
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_row_names_its_page_and_compares_with_bare_pingora_on_the_same_page() {
        let r = row(
            SCENARIO_BIG,
            "latch, held + banner",
            Ok(430_000.0),
            Some(368_000.0),
        );
        assert_eq!(r.scenario, SCENARIO_BIG);
        assert_eq!(r.system, "latch, held + banner");
        assert_eq!(
            r.verdict,
            Verdict::Info("430,000 instructions, 1.168× bare pingora's".into())
        );
        let failed = row(
            SCENARIO,
            "bare pingora",
            Err(BenchError::Check("x".into())),
            None,
        );
        assert_eq!(failed.verdict, Verdict::Failed("x".into()));
    }

    #[test]
    fn the_session_row_compares_with_the_bearer_token_too() {
        let r = session_row(Ok(101_000.0), Some(84_000.0), Some(100_000.0));
        assert_eq!(r.system, "latch, held, session cookie");
        assert_eq!(
            r.verdict,
            Verdict::Info(
                "101,000 instructions, 1.202× bare pingora's, +1.00% against the bearer token"
                    .into()
            )
        );
        let failed = session_row(Err(BenchError::Check("x".into())), None, Some(1.0));
        assert_eq!(failed.verdict, Verdict::Failed("x".into()));
    }

    #[test]
    fn totals_come_from_the_totals_line() {
        let dump = "version: 1\ncreator: callgrind-3.19.0\nevents: Ir\n\nfn=(1) main\n3 7\n\ntotals: 613463151\n";
        assert_eq!(parse_totals(dump), Some(613_463_151));
        assert_eq!(parse_totals("events: Ir\nsummary: 42\n"), Some(42));
        assert_eq!(parse_totals("events: Ir\nfn=(1) main\n"), None);
    }
}
