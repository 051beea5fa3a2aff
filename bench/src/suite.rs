//! The whole benchmark: start every system, run the scenarios, judge the targets, and build
//! the table.
//!
//! Systems: the upstream (nginx serving files, or `static-upstream`), nginx as a proxy when
//! installed, `bare-pingora`, and `latch proxy` instances (memory store with HS256; Redis
//! store; RS256 and ES256 public keys). Throughput scenarios run in two families — the
//! 1.4 KB responses and the 100 KB page — each measured in alternating rounds.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::fanout::{self, PREFIX};
use crate::latch::{self, Auth, Latch, Settings};
use crate::process::{self, free_port, tree_rss_kib, Cpus, Proc};
use crate::report::{Row, Verdict};
use crate::rounds::{self, Case, Measured, Noise};
use crate::site::{self, ASSET, BIG, PAGE};
use crate::stats::percentile;
use crate::tokens::{self, Signer};
use crate::wrk::{self, Load};
use crate::{jwt, nginx, BenchError};

/// What to run and how hard.
#[derive(Clone, Debug)]
pub struct Options {
    /// Where `latch`, `bare-pingora` and `static-upstream` are.
    pub bin_dir: PathBuf,
    pub rounds: usize,
    pub seconds: u64,
    pub warmup_seconds: u64,
    pub connections: usize,
    pub wrk_threads: usize,
    /// Worker threads of every proxy under test (Latch, bare pingora, nginx workers).
    pub proxy_threads: usize,
    /// nginx workers of the upstream.
    pub upstream_workers: usize,
    pub watchers: usize,
    pub fanout_rounds: usize,
    pub idle_sockets: usize,
    pub groups: Vec<Group>,
    pub noise: Noise,
    pub cpus: Cpus,
    /// Keep the work directory (configs, logs) after the run.
    pub keep: bool,
}

/// Parts of the suite that can be run on their own.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Group {
    /// The 1.4 KB scenarios: pass-through, held (memory, Redis, RS256, ES256), denied.
    Small,
    /// The 100 KB page with and without injection.
    Html,
    /// Release fan-out to watchers and idle sockets.
    Sockets,
    /// In-process verification cost per algorithm.
    Jwt,
}

impl Group {
    pub const ALL: [Group; 4] = [Group::Small, Group::Html, Group::Sockets, Group::Jwt];

    pub fn parse(name: &str) -> Option<Group> {
        match name {
            "small" => Some(Group::Small),
            "html" => Some(Group::Html),
            "sockets" => Some(Group::Sockets),
            "jwt" => Some(Group::Jwt),
            _ => None,
        }
    }
}

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

/// The processes under test.
struct Systems {
    upstream: Proc,
    upstream_port: u16,
    upstream_kind: &'static str,
    nginx: Option<(Proc, u16)>,
    bare: (Proc, u16),
    latch: Latch,
    /// Kept alive for the Redis-backed instance.
    _redis: Option<Proc>,
    latch_redis: Result<Latch, String>,
    latch_rs: Result<(Latch, Vec<u8>), String>,
    latch_es: Result<(Latch, Vec<u8>), String>,
}

struct Tokens {
    alice: String,
    bob: String,
    alice_rs: Result<String, String>,
    alice_es: Result<String, String>,
    rs: Option<Signer>,
    es: Option<Signer>,
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
            "- load: wrk {} threads, {} connections, {} rounds × {} s per system, alternating; medians",
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
        format!("- tools: {}; {}", version("wrk", &["--version"]), version("nginx", &["-v"])),
    ]
}

fn mkdir(path: &Path) -> Result<(), BenchError> {
    std::fs::create_dir_all(path).map_err(|e| BenchError::io(path.display().to_string(), e))
}

fn start_bare(opts: &Options, work: &Path, upstream_port: u16) -> Result<(Proc, u16), BenchError> {
    let port = free_port()?;
    let mut cmd = opts.cpus.server_command(opts.bin_dir.join("bare-pingora"));
    cmd.arg("--listen")
        .arg(process::loopback(port).to_string())
        .arg("--upstream")
        .arg(process::loopback(upstream_port).to_string())
        .arg("--threads")
        .arg(opts.proxy_threads.to_string());
    let mut proc = Proc::spawn("bare pingora", cmd, &work.join("bare-pingora.log"))?;
    proc.wait_listening(&[port])?;
    Ok((proc, port))
}

fn start_upstream(
    opts: &Options,
    work: &Path,
    root: &Path,
) -> Result<(Proc, u16, &'static str), BenchError> {
    let port = free_port()?;
    if process::installed("nginx") {
        let proc = nginx::start(
            "nginx upstream",
            &work.join("nginx-upstream"),
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
    let mut proc = Proc::spawn("static upstream", cmd, &work.join("static-upstream.log"))?;
    proc.wait_listening(&[port])?;
    Ok((proc, port, "static-upstream (nginx not installed)"))
}

fn start_redis(work: &Path, cpus: &Cpus) -> Result<(Proc, u16), BenchError> {
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
fn start_keyed_latch(
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

fn start_systems(opts: &Options, work: &Path) -> Result<(Systems, Tokens), BenchError> {
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
    let bare = start_bare(opts, work, upstream_port)?;
    let latch_bin = opts.bin_dir.join("latch");
    let memory = |store: String| Settings {
        upstream_port,
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
async fn prepare(systems: &Systems, tokens: &Tokens) -> Result<(), BenchError> {
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
    let (url, status, body) = fetch(latch.url(&site::path("plain", BIG)), &tokens.alice).await?;
    if status != 200 || body.contains(&banner) {
        return Err(BenchError::Check(format!(
            "{url}: status {status}, banner injected: {}",
            body.contains(&banner)
        )));
    }
    Ok(())
}

/// Runs repeated or kept despite other programs' CPU use, over the whole suite.
#[derive(Default)]
struct Tally {
    runs: usize,
    repeated: usize,
    disturbed: usize,
}

/// A throughput case and the process whose memory its row reports.
struct Entry {
    key: &'static str,
    case: Case,
    pid: u32,
}

struct Family {
    entries: Vec<Entry>,
    scripts: PathBuf,
}

impl Family {
    fn add(
        &mut self,
        key: &'static str,
        label: &str,
        load: Load,
        pid: u32,
    ) -> Result<(), BenchError> {
        let script = wrk::write_script(&self.scripts, key, &load)?;
        self.entries.push(Entry {
            key,
            case: Case {
                label: label.to_string(),
                load,
                script,
            },
            pid,
        });
        Ok(())
    }

    /// Runs the rounds; returns each key's measurement and the memory of its process after.
    async fn run(
        self,
        opts: &Options,
        tally: &mut Tally,
    ) -> HashMap<&'static str, (Measured, Option<u64>)> {
        let cases: Vec<Case> = self
            .entries
            .iter()
            .map(|e| Case {
                label: e.case.label.clone(),
                load: e.case.load.clone(),
                script: e.case.script.clone(),
            })
            .collect();
        let options = wrk::Options {
            threads: opts.wrk_threads,
            connections: opts.connections,
            duration: Duration::from_secs(opts.seconds),
        };
        let measured = rounds::measure(
            &cases,
            opts.rounds,
            options,
            Duration::from_secs(opts.warmup_seconds),
            opts.noise,
        )
        .await;
        for m in &measured {
            tally.repeated += m.repeated;
            tally.disturbed += m.disturbed;
            tally.runs += m.rounds.iter().flatten().count();
        }
        self.entries
            .iter()
            .zip(measured)
            .map(|(e, m)| (e.key, (m, tree_rss_kib(e.pid))))
            .collect()
    }
}

/// Fills a row from a measurement; `bare` is the baseline of the same response.
fn throughput_row(
    scenario: &str,
    system: &str,
    results: &HashMap<&'static str, (Measured, Option<u64>)>,
    key: &str,
    bare: &str,
) -> Row {
    let mut row = Row::new(scenario, system);
    let Some((m, rss)) = results.get(key) else {
        row.verdict = Verdict::NotRun("not measured".into());
        return row;
    };
    if let Some(why) = &m.failure {
        row.verdict = Verdict::Failed(why.clone());
        return row;
    }
    row.rps = m.median_rps();
    row.p50_ms = m.median_p50_us().map(|v| v / 1000.0);
    row.p99_ms = m.median_p99_us().map(|v| v / 1000.0);
    row.rss_kib = *rss;
    row.ratio = results.get(bare).and_then(|(b, _)| m.ratio_to(b));
    row
}

/// Judges `row` as at least `min` times `ratio` (a same-round ratio against another case).
fn at_least(mut row: Row, target: &str, ratio: Option<f64>, min: f64) -> Row {
    row.target = target.into();
    if matches!(row.verdict, Verdict::Reference) {
        row.verdict = match ratio {
            Some(r) => Verdict::judge(r >= min, format!("{r:.3}×")),
            None => Verdict::Failed("no baseline to compare with".into()),
        };
    }
    row
}

fn same_round_ratio(
    results: &HashMap<&'static str, (Measured, Option<u64>)>,
    a: &str,
    b: &str,
) -> Option<f64> {
    let (ma, _) = results.get(a)?;
    let (mb, _) = results.get(b)?;
    ma.ratio_to(mb)
}

fn not_run(scenario: &str, system: &str, target: &str, why: &str) -> Row {
    let mut row = Row::new(scenario, system);
    row.target = target.into();
    row.verdict = Verdict::NotRun(why.into());
    row
}

async fn small_family(
    opts: &Options,
    systems: &Systems,
    tokens: &Tokens,
    scripts: &Path,
    tally: &mut Tally,
) -> Result<Vec<Row>, BenchError> {
    let mut family = Family {
        entries: Vec::new(),
        scripts: scripts.to_path_buf(),
    };
    let up = |path: &str| format!("http://127.0.0.1:{}{path}", systems.upstream_port);
    let asset = site::path("", ASSET);
    let held = site::path("held", ASSET);
    family.add(
        "direct",
        "1.4 KB / upstream direct",
        Load::get(up(&asset), 200),
        systems.upstream.pid(),
    )?;
    if let Some((proc, port)) = &systems.nginx {
        let url = format!("http://127.0.0.1:{port}{asset}");
        family.add(
            "nginx",
            "1.4 KB / nginx proxy",
            Load::get(url, 200),
            proc.pid(),
        )?;
    }
    let (bare, bare_port) = &systems.bare;
    let bare_url = |path: &str| format!("http://127.0.0.1:{bare_port}{path}");
    family.add(
        "bare",
        "1.4 KB / bare pingora",
        Load::get(bare_url(&asset), 200),
        bare.pid(),
    )?;
    let latch = &systems.latch;
    let pid = latch.proc.pid();
    family.add(
        "pass",
        "pass-through / latch",
        Load::get(latch.url(&asset), 200),
        pid,
    )?;
    family.add(
        "held",
        "held, memory / latch",
        Load::get(latch.url(&held), 200).bearer(&tokens.alice),
        pid,
    )?;
    if let Ok(redis) = &systems.latch_redis {
        family.add(
            "held-redis",
            "held, Redis / latch",
            Load::get(redis.url(&held), 200).bearer(&tokens.alice),
            redis.proc.pid(),
        )?;
    }
    family.add(
        "denied",
        "denied 423 / latch",
        Load::get(latch.url(&site::path("denied", ASSET)), 423).bearer(&tokens.alice),
        pid,
    )?;
    if let (Ok((l, _)), Ok(token)) = (&systems.latch_rs, &tokens.alice_rs) {
        family.add(
            "held-rs",
            "held, RS256 / latch",
            Load::get(l.url(&held), 200).bearer(token),
            l.proc.pid(),
        )?;
    }
    if let (Ok((l, _)), Ok(token)) = (&systems.latch_es, &tokens.alice_es) {
        family.add(
            "held-es",
            "held, ES256 / latch",
            Load::get(l.url(&held), 200).bearer(token),
            l.proc.pid(),
        )?;
    }
    let page = site::path("", PAGE);
    family.add(
        "bare-page",
        "1.4 KB HTML / bare pingora",
        Load::get(bare_url(&page), 200),
        bare.pid(),
    )?;
    family.add(
        "held-page",
        "1.4 KB HTML, held + banner / latch",
        Load::get(latch.url(&site::path("held", PAGE)), 200).bearer(&tokens.alice),
        pid,
    )?;

    let r = family.run(opts, tally).await;
    let pass_s = "pass-through (no rule), 1.4 KB";
    let mut rows = vec![throughput_row(
        pass_s,
        "upstream direct",
        &r,
        "direct",
        "bare",
    )];
    if systems.nginx.is_some() {
        rows.push(throughput_row(pass_s, "nginx proxy", &r, "nginx", "bare"));
    }
    rows.push(throughput_row(pass_s, "bare pingora", &r, "bare", "bare"));
    let row = throughput_row(pass_s, "latch", &r, "pass", "bare");
    let ratio = row.ratio;
    rows.push(at_least(row, "≥ 0.95× bare", ratio, 0.95));

    let row = throughput_row(
        "lock held by requester, memory, 1.4 KB",
        "latch",
        &r,
        "held",
        "bare",
    );
    let ratio = row.ratio;
    rows.push(at_least(row, "≥ 0.90× bare", ratio, 0.90));

    let redis_s = "lock held by requester, Redis, 1.4 KB";
    match &systems.latch_redis {
        Ok(_) => {
            let row = throughput_row(redis_s, "latch", &r, "held-redis", "bare");
            let ratio = row.ratio;
            rows.push(at_least(row, "≥ 0.75× bare", ratio, 0.75));
        }
        Err(why) => rows.push(not_run(redis_s, "latch", "≥ 0.75× bare", why)),
    }

    let row = throughput_row("denied: 423 from the proxy", "latch", &r, "denied", "bare");
    let vs_pass = same_round_ratio(&r, "denied", "pass");
    let mut row = at_least(row, "not slower than pass-through", vs_pass, 1.0);
    if let Verdict::Met(d) | Verdict::Missed(d) = &mut row.verdict {
        *d = format!("{d} pass-through");
    }
    rows.push(row);

    for (key, alg, latch) in [
        ("held-rs", "RS256", systems.latch_rs.as_ref().map(|_| ())),
        ("held-es", "ES256", systems.latch_es.as_ref().map(|_| ())),
    ] {
        let scenario = format!("lock held, {alg} token (vs HS256)");
        match latch {
            Ok(()) => {
                let mut row = throughput_row(&scenario, "latch", &r, key, "bare");
                row.target = "report".into();
                if matches!(row.verdict, Verdict::Reference) {
                    row.verdict = Verdict::Info(match same_round_ratio(&r, key, "held") {
                        Some(v) => format!("{v:.2}× HS256"),
                        None => "no HS256 figure".into(),
                    });
                }
                rows.push(row);
            }
            Err(why) => rows.push(not_run(&scenario, "latch", "report", why)),
        }
    }

    let html_s = "1.4 KB HTML page";
    rows.push(throughput_row(
        html_s,
        "bare pingora",
        &r,
        "bare-page",
        "bare-page",
    ));
    let mut row = throughput_row(html_s, "latch, held + banner", &r, "held-page", "bare-page");
    row.target = "report".into();
    rows.push(row);
    Ok(rows)
}

async fn html_family(
    opts: &Options,
    systems: &Systems,
    tokens: &Tokens,
    scripts: &Path,
    tally: &mut Tally,
) -> Result<Vec<Row>, BenchError> {
    let mut family = Family {
        entries: Vec::new(),
        scripts: scripts.to_path_buf(),
    };
    let big = site::path("", BIG);
    let up = format!("http://127.0.0.1:{}{big}", systems.upstream_port);
    family.add(
        "direct-big",
        "100 KB / upstream direct",
        Load::get(up, 200),
        systems.upstream.pid(),
    )?;
    if let Some((proc, port)) = &systems.nginx {
        let url = format!("http://127.0.0.1:{port}{big}");
        family.add(
            "nginx-big",
            "100 KB / nginx proxy",
            Load::get(url, 200),
            proc.pid(),
        )?;
    }
    let (bare, bare_port) = &systems.bare;
    let url = format!("http://127.0.0.1:{bare_port}{big}");
    family.add(
        "bare-big",
        "100 KB / bare pingora",
        Load::get(url, 200),
        bare.pid(),
    )?;
    let latch = &systems.latch;
    family.add(
        "plain-big",
        "100 KB, held, inject=false / latch",
        Load::get(latch.url(&site::path("plain", BIG)), 200).bearer(&tokens.alice),
        latch.proc.pid(),
    )?;
    family.add(
        "inject-big",
        "100 KB, held + banner / latch",
        Load::get(latch.url(&site::path("held", BIG)), 200).bearer(&tokens.alice),
        latch.proc.pid(),
    )?;
    let r = family.run(opts, tally).await;
    let s = "100 KB HTML page";
    let mut rows = vec![throughput_row(
        s,
        "upstream direct",
        &r,
        "direct-big",
        "bare-big",
    )];
    if systems.nginx.is_some() {
        rows.push(throughput_row(
            s,
            "nginx proxy",
            &r,
            "nginx-big",
            "bare-big",
        ));
    }
    rows.push(throughput_row(
        s,
        "bare pingora",
        &r,
        "bare-big",
        "bare-big",
    ));
    rows.push(throughput_row(
        s,
        "latch, held, inject=false",
        &r,
        "plain-big",
        "bare-big",
    ));
    let row = throughput_row(s, "latch, held + banner", &r, "inject-big", "bare-big");
    let ratio = row.ratio;
    rows.push(at_least(row, "≥ 0.85× bare", ratio, 0.85));
    let mut cost = Row::new(
        "100 KB HTML: injection cost",
        "latch, banner vs inject=false",
    );
    cost.target = "≤ 15% slower".into();
    cost.verdict = match same_round_ratio(&r, "inject-big", "plain-big") {
        Some(v) => Verdict::judge(v >= 0.85, format!("{:.0}% slower", (1.0 - v) * 100.0)),
        None => Verdict::Failed("a case failed; see above".into()),
    };
    rows.push(cost);
    Ok(rows)
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
    match fanout::release_to_watchers(latch.port, &holder, tokens, opts.fanout_rounds).await {
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
        Err(why) => rows.push(not_run(&redis_s, "latch", "p99 ≤ 50 ms", why)),
    }

    let scenario = format!(
        "{} idle banner sockets",
        crate::report::thousands(opts.idle_sockets as f64)
    );
    let target = "≤ 200 MB added";
    let needed = opts.idle_sockets as u64 + 1_000;
    match process::open_files_limit() {
        Some(limit) if limit < needed => {
            rows.push(not_run(
                &scenario,
                "latch",
                target,
                &format!("the open-file limit is {limit}; it needs {needed} (run `ulimit -n {needed}` first, as scripts/bench.sh does)"),
            ));
            return Ok(rows);
        }
        _ => {}
    }
    let settings = Settings {
        upstream_port: systems.upstream_port,
        threads: opts.proxy_threads,
        auth: Auth::Secret,
        store: "memory".into(),
    };
    let latch = tokio::task::block_in_place(|| {
        latch::start(
            "latch idle",
            &opts.bin_dir.join("latch"),
            &work.join("latch-idle"),
            &settings,
            &opts.cpus,
        )
    })?;
    let tokens = user_tokens("idle", opts.idle_sockets)?;
    let pid = latch.proc.pid();
    let mut row = Row::new(&scenario, "latch");
    row.target = target.into();
    match fanout::idle_sockets(latch.port, latch.admin_port, &tokens, || tree_rss_kib(pid)).await {
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
    rows.push(row);
    Ok(rows)
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
            (Ok(c), Ok(h)) => Verdict::Info(format!("{c:.1} µs/token ({:.0}× HS256)", c / h)),
            (Ok(c), Err(_)) => Verdict::Info(format!("{c:.1} µs/token")),
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
    mkdir(&scripts)?;
    eprintln!("bench: starting the systems in {}", work.path().display());
    let (systems, tokens) = tokio::task::block_in_place(|| start_systems(opts, work.path()))?;
    prepare(&systems, &tokens).await?;
    let mut machine = machine(opts, systems.upstream_kind);

    let mut rows = Vec::new();
    let mut tally = Tally::default();
    if opts.groups.contains(&Group::Small) {
        eprintln!("bench: 1.4 KB responses");
        rows.extend(small_family(opts, &systems, &tokens, &scripts, &mut tally).await?);
    }
    if opts.groups.contains(&Group::Html) {
        eprintln!("bench: 100 KB HTML page");
        rows.extend(html_family(opts, &systems, &tokens, &scripts, &mut tally).await?);
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
