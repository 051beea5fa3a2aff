//! The whole benchmark: start every system, run the scenarios, and build the table of rows
//! with their verdicts. What runs where is in [`crate::systems`]; the throughput families are
//! in [`crate::throughput`]; the banner-socket scenarios and the in-process token
//! verification cost are here.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::fanout::{self, Fanout};
use crate::latch::{self, Auth, Latch, Settings, TlsListener};
use crate::process::{self, tree_rss_kib};
use crate::report::{Row, Verdict};
use crate::stats::percentile;
use crate::systems::{self, Systems, Tokens};
use crate::throughput::{self, Tally};
use crate::tokens::Signer;
use crate::{jwt, BenchError};

pub use crate::options::{Group, Options};

/// The finished run.
pub struct Outcome {
    pub rows: Vec<Row>,
    /// Machine and tool versions, one `- key: value` line each.
    pub machine: Vec<String>,
    /// Did any scenario fail (as opposed to missing its target)?
    pub failed: bool,
    /// The kept work directory, if any.
    pub kept: Option<PathBuf>,
}

fn version(program: &str, args: &[&str]) -> String {
    Command::new(program)
        .args(args)
        .output()
        .map(|o| {
            let text = format!(
                "{}{}",
                String::from_utf8_lossy(&o.stdout),
                String::from_utf8_lossy(&o.stderr)
            );
            text.lines().next().unwrap_or("").trim().to_string()
        })
        .unwrap_or_else(|_| "not installed".into())
}

fn machine(opts: &Options, upstream_kind: &str) -> Vec<String> {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find_map(|l| l.strip_prefix("model name"))
                .map(|v| v.trim_start_matches([' ', '\t', ':']).to_string())
        })
        .unwrap_or_else(|| "unknown".into());
    let cores = crate::cpu::cores();
    let memory = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
        })
        .map_or_else(
            || "unknown".into(),
            |kib| format!("{:.0} GB", kib as f64 / 1048576.0),
        );
    let load = std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".into());
    vec![
        format!("- CPU: {cpu}, {cores} cores; memory {memory}; load average at start {load}"),
        format!("- kernel: {}", version("uname", &["-sr"])),
        format!(
            "- load: wrk {} threads, {} connections, {} rounds × {} s per run, each case between two runs of its baseline; medians",
            opts.wrk_threads, opts.connections, opts.rounds, opts.seconds
        ),
        format!(
            "- proxies: {} worker threads each (Latch, bare pingora, nginx); upstream: {upstream_kind}",
            opts.proxy_threads
        ),
        match (&opts.cpus.servers, &opts.cpus.load) {
            (Some(servers), Some(load)) => format!(
                "- CPUs: servers (proxies, upstream, Redis) pinned to {servers}, wrk and socket clients to {load}"
            ),
            _ => "- CPUs: not pinned".to_string(),
        },
        format!(
            "- tools: {}; {}; h2load {}",
            version("wrk", &["--version"]),
            version("nginx", &["-v"]),
            version("h2load", &["--version"])
        ),
    ]
}

fn user_tokens(prefix: &str, n: usize) -> Result<Vec<String>, BenchError> {
    (0..n)
        .map(|i| Signer::Hs256.mint(&format!("{prefix}{i}")))
        .collect()
}

async fn fanout_row(latch: &Latch, store: &str, opts: &Options, tokens: &[String]) -> Row {
    let scenario = format!(
        "release → {} watchers told, {store}",
        crate::report::thousands(opts.watchers as f64)
    );
    let mut row = Row::new(&scenario, "latch");
    row.target = "p99 ≤ 50 ms".into();
    let holder = match Signer::Hs256.mint("holder") {
        Ok(t) => t,
        Err(e) => {
            row.verdict = Verdict::Failed(e.to_string());
            return row;
        }
    };
    let run = fanout::release_to_watchers(latch.port, &holder, tokens, opts.fanout_rounds).await;
    judge_fanout(row, latch, run)
}

/// Fills in a fan-out row from its run: p50 and p99 of every watcher's delay, against the
/// p99 ≤ 50 ms target.
fn judge_fanout(mut row: Row, latch: &Latch, run: Result<Fanout, BenchError>) -> Row {
    match run {
        Ok(f) => {
            row.p50_ms = percentile(&f.latencies_ms, 50.0);
            row.p99_ms = percentile(&f.latencies_ms, 99.0);
            row.rss_kib = latch.proc.rss_kib();
            let max = percentile(&f.latencies_ms, 100.0).unwrap_or(f64::NAN);
            row.verdict = match row.p99_ms {
                Some(p99) => Verdict::judge(
                    p99 <= 50.0,
                    format!("{} samples, max {max:.1} ms", f.latencies_ms.len()),
                ),
                None => Verdict::Failed("no latencies".into()),
            };
        }
        Err(e) => row.verdict = Verdict::Failed(e.to_string()),
    }
    row
}

async fn queue_row(latch: &Latch, store: &str, opts: &Options, tokens: &[String]) -> Row {
    let scenario = format!(
        "queue change → {} watchers told, {store}",
        crate::report::thousands(opts.watchers as f64)
    );
    let mut row = Row::new(&scenario, "latch");
    row.target = "p99 ≤ 50 ms".into();
    let (holder, waiter) = match (Signer::Hs256.mint("holder"), Signer::Hs256.mint("waiter")) {
        (Ok(h), Ok(w)) => (h, w),
        (Err(e), _) | (_, Err(e)) => {
            row.verdict = Verdict::Failed(e.to_string());
            return row;
        }
    };
    let run = crate::fanout_queue::queue_to_watchers(
        latch.port,
        &holder,
        &waiter,
        tokens,
        opts.fanout_rounds,
    );
    judge_fanout(row, latch, run.await)
}

async fn presence_row(latch: &Latch, store: &str, opts: &Options, tokens: &[String]) -> Row {
    // A resource's presence holds at most 1,000 tabs (`store::MAX_PRESENCE`), the visitor's
    // included.
    let watchers = &tokens[..tokens.len().min(1_000).saturating_sub(1)];
    let scenario = format!(
        "presence change → {} watchers told, {store}",
        crate::report::thousands(watchers.len() as f64)
    );
    let mut row = Row::new(&scenario, "latch");
    row.target = "p99 ≤ 50 ms".into();
    let visitor = match Signer::Hs256.mint("visitor") {
        Ok(t) => t,
        Err(e) => {
            row.verdict = Verdict::Failed(e.to_string());
            return row;
        }
    };
    let run = crate::fanout_presence::presence_to_watchers(
        latch.port,
        &visitor,
        watchers,
        opts.fanout_rounds,
    );
    judge_fanout(row, latch, run.await)
}

async fn socket_rows(
    opts: &Options,
    systems: &Systems,
    work: &Path,
) -> Result<Vec<Row>, BenchError> {
    let mut rows = Vec::new();
    let watchers = user_tokens("watcher", opts.watchers)?;
    rows.push(fanout_row(&systems.latch, "memory", opts, &watchers).await);
    let redis_s = format!(
        "release → {} watchers told, Redis",
        crate::report::thousands(opts.watchers as f64)
    );
    match &systems.latch_redis {
        Ok(latch) => rows.push(fanout_row(latch, "Redis", opts, &watchers).await),
        Err(why) => rows.push(Row::not_run(&redis_s, "latch", "p99 ≤ 50 ms", why)),
    }
    rows.push(queue_row(&systems.latch, "memory", opts, &watchers).await);
    let queue_s = format!(
        "queue change → {} watchers told, Redis",
        crate::report::thousands(opts.watchers as f64)
    );
    match &systems.latch_redis {
        Ok(latch) => rows.push(queue_row(latch, "Redis", opts, &watchers).await),
        Err(why) => rows.push(Row::not_run(&queue_s, "latch", "p99 ≤ 50 ms", why)),
    }
    rows.push(presence_row(&systems.latch, "memory", opts, &watchers).await);
    let presence_s = format!(
        "presence change → {} watchers told, Redis",
        crate::report::thousands(opts.watchers.saturating_sub(1) as f64)
    );
    match &systems.latch_redis {
        Ok(latch) => rows.push(presence_row(latch, "Redis", opts, &watchers).await),
        Err(why) => rows.push(Row::not_run(&presence_s, "latch", "p99 ≤ 50 ms", why)),
    }

    let needed = opts.idle_sockets as u64 + 1_000;
    let limited = process::open_files_limit()
        .filter(|limit| *limit < needed)
        .map(|limit| format!("the open-file limit is {limit}; it needs {needed} (run `ulimit -n {needed}` first, as scripts/bench.sh does)"));
    rows.push(idle_row(opts, systems, work, false, limited.as_deref()).await);
    let no_tls = (!process::installed("openssl"))
        .then_some("openssl is not installed (it makes the certificate)");
    rows.push(idle_row(opts, systems, work, true, limited.as_deref().or(no_tls)).await);
    Ok(rows)
}

/// The memory of `opts.idle_sockets` idle banner sockets on a fresh instance, over its HTTPS
/// listener with `tls`; not run, for `not_run`'s reason, when given one.
async fn idle_row(
    opts: &Options,
    systems: &Systems,
    work: &Path,
    tls: bool,
    not_run: Option<&str>,
) -> Row {
    let scenario = format!(
        "{} idle banner sockets{}",
        crate::report::thousands(opts.idle_sockets as f64),
        if tls { ", TLS" } else { "" }
    );
    let target = "≤ 200 MB added";
    if let Some(why) = not_run {
        return Row::not_run(&scenario, "latch", target, why);
    }
    let mut row = Row::new(&scenario, "latch");
    row.target = target.into();
    match idle_run(opts, systems, work, tls).await {
        Ok(idle) => {
            let added_kib = idle.rss_after_kib.saturating_sub(idle.rss_before_kib);
            row.rss_kib = Some(idle.rss_after_kib);
            let counted = idle
                .server_count
                .map_or_else(|| "?".into(), |n| n.to_string());
            let detail = format!(
                "+{:.0} MB, {:.1} KB/socket; proxy counts {counted}; opened in {:.1} s",
                added_kib as f64 / 1024.0,
                added_kib as f64 / idle.sockets.max(1) as f64,
                idle.open_seconds
            );
            row.verdict = if idle
                .server_count
                .is_some_and(|n| n as usize != idle.sockets)
            {
                Verdict::Failed(format!("{} sockets open but {detail}", idle.sockets))
            } else {
                Verdict::judge(added_kib <= 200 * 1024, detail)
            };
        }
        Err(e) => row.verdict = Verdict::Failed(e.to_string()),
    }
    row
}

/// Starts the instance of [`idle_row`] and opens its idle sockets.
async fn idle_run(
    opts: &Options,
    systems: &Systems,
    work: &Path,
    tls: bool,
) -> Result<fanout::Idle, BenchError> {
    let name = if tls { "latch-idle-tls" } else { "latch-idle" };
    let (listener, client) = if tls {
        let cert = tokio::task::block_in_place(|| crate::tls::make_certificate(&work.join(name)))?;
        let listener = TlsListener {
            port: process::free_port()?,
            cert_file: cert.cert.clone(),
            key_file: cert.key.clone(),
        };
        (Some(listener), Some(crate::tls::client_config(&cert.ca)?))
    } else {
        (None, None)
    };
    let settings = Settings {
        upstream_port: systems.upstream_port,
        pool: Vec::new(),
        tls: listener,
        threads: opts.proxy_threads,
        auth: Auth::Secret,
        store: "memory".into(),
    };
    let latch = tokio::task::block_in_place(|| {
        latch::start(
            name,
            &opts.bin_dir.join("latch"),
            &work.join(name),
            &settings,
            &opts.cpus,
        )
    })?;
    let port = settings.tls.as_ref().map_or(latch.port, |l| l.port);
    let tokens = user_tokens("idle", opts.idle_sockets)?;
    let pid = latch.proc.pid();
    fanout::idle_sockets(port, client.as_ref(), latch.admin_port, &tokens, || {
        tree_rss_kib(pid)
    })
    .await
}

fn jwt_rows(systems: &Systems, tokens: &Tokens) -> Vec<Row> {
    let mut rows = Vec::new();
    let hs = jwt::verify_cost_us(&Signer::Hs256, None);
    let mut push = |alg: &str, cost: Result<f64, String>| {
        let mut row = Row::new(
            &format!("JWT verification, {alg}, uncached"),
            "auth::Verifier",
        );
        row.target = "report".into();
        row.verdict = match (&cost, &hs) {
            (Ok(c), Ok(h)) if alg != "HS256" => {
                Verdict::Info(format!("{c:.1} µs/token ({:.0}× HS256)", c / h))
            }
            (Ok(c), _) => Verdict::Info(format!("{c:.1} µs/token")),
            (Err(e), _) => Verdict::NotRun(e.clone()),
        };
        rows.push(row);
    };
    push("HS256", hs.as_ref().map(|v| *v).map_err(|e| e.to_string()));
    for (alg, latch, signer) in [
        ("RS256", &systems.latch_rs, &tokens.rs),
        ("ES256", &systems.latch_es, &tokens.es),
    ] {
        let cost = match (latch, signer) {
            (Ok((_, pem)), Some(signer)) => {
                jwt::verify_cost_us(signer, Some(pem.clone())).map_err(|e| e.to_string())
            }
            (Err(why), _) => Err(why.clone()),
            (Ok(_), None) => Err("no signing key".into()),
        };
        push(alg, cost);
    }
    rows
}

/// Runs the suite.
pub async fn run(opts: &Options) -> Result<Outcome, BenchError> {
    let work = tempfile::Builder::new()
        .prefix("latch-bench-")
        .tempdir()
        .map_err(|e| BenchError::io("creating the work directory", e))?;
    // nginx's workers run as an unprivileged user when started by root: they must read the site.
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(work.path(), std::fs::Permissions::from_mode(0o755))
            .map_err(|e| BenchError::io(work.path().display().to_string(), e))?;
    }
    let scripts = work.path().join("scripts");
    systems::mkdir(&scripts)?;
    eprintln!("bench: starting the systems in {}", work.path().display());
    let (systems, tokens) =
        tokio::task::block_in_place(|| systems::start_systems(opts, work.path()))?;
    systems::prepare(&systems, &tokens).await?;
    let mut machine = machine(opts, systems.upstream_kind);

    let mut rows = Vec::new();
    let mut tally = Tally::default();
    if opts.groups.contains(&Group::Small) {
        eprintln!("bench: 1.4 KB responses");
        rows.extend(throughput::small_family(opts, &systems, &tokens, &scripts, &mut tally).await?);
    }
    if opts.groups.contains(&Group::Html) {
        eprintln!("bench: 100 KB HTML page");
        rows.extend(throughput::html_family(opts, &systems, &tokens, &scripts, &mut tally).await?);
    }
    if opts.groups.contains(&Group::Tls) {
        eprintln!("bench: TLS, HTTP/2 and an upstream pool");
        rows.extend(
            crate::tls::rows(opts, &systems, &tokens, work.path(), &scripts, &mut tally).await?,
        );
    }
    if tally.runs > 0 {
        machine.push(format!(
            "- noise: {} of {} timed runs were repeated because other programs used more than {:.0}% of the CPU; {} kept after {} retries",
            tally.repeated,
            tally.runs,
            opts.noise.max_foreign * 100.0,
            tally.disturbed,
            opts.noise.retries
        ));
    }
    if opts.groups.contains(&Group::Sockets) {
        eprintln!("bench: banner sockets");
        rows.extend(socket_rows(opts, &systems, work.path()).await?);
    }
    if opts.groups.contains(&Group::Jwt) {
        eprintln!("bench: token verification");
        rows.extend(tokio::task::block_in_place(|| jwt_rows(&systems, &tokens)));
    }
    if opts.groups.contains(&Group::Instructions) {
        eprintln!("bench: instructions per request (callgrind)");
        rows.extend(
            crate::instructions::rows(opts, &systems, &tokens, work.path(), &scripts).await?,
        );
    }
    drop(systems);
    let failed = rows.iter().any(|r| matches!(r.verdict, Verdict::Failed(_)));
    let kept = opts.keep.then(|| work.keep());
    Ok(Outcome {
        rows,
        machine,
        failed,
        kept,
    })
}
