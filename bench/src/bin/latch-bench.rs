//! `latch-bench`: runs the benchmark suite against release binaries and prints the table.
//! Exit 0 when every scenario ran cleanly (targets are reported, not enforced: the figures
//! are noisy), 1 when a scenario failed, 2 when the harness could not start.

use std::path::PathBuf;
use std::process::ExitCode;

use bench::process::Cpus;
use bench::rounds::Noise;
use bench::suite::{self, Group, Options};
use clap::Parser;

#[derive(Parser)]
#[command(about = "Benchmarks Latch against bare pingora, nginx and the upstream itself.")]
struct Args {
    /// Rounds; every ratio is the median over rounds of a case against the baseline runs just
    /// before and after it.
    #[arg(long, default_value_t = 7)]
    rounds: usize,
    /// Seconds per wrk run.
    #[arg(long, default_value_t = 3)]
    seconds: u64,
    /// Seconds of the warm-up run each system gets before the rounds.
    #[arg(long, default_value_t = 1)]
    warmup: u64,
    #[arg(long, default_value_t = 64)]
    connections: usize,
    #[arg(long, default_value_t = 2)]
    wrk_threads: usize,
    /// Worker threads of every proxy under test (default: one per CPU the servers run on).
    #[arg(long)]
    proxy_threads: Option<usize>,
    /// nginx worker processes of the upstream.
    #[arg(long, default_value_t = 1)]
    upstream_workers: usize,
    /// Banner sockets told of each release.
    #[arg(long, default_value_t = 1000)]
    watchers: usize,
    /// Releases timed in the fan-out scenario.
    #[arg(long, default_value_t = 5)]
    fanout_rounds: usize,
    #[arg(long, default_value_t = 10_000)]
    idle_sockets: usize,
    /// A timed run during which other programs used more than this share of the CPU (percent)
    /// is repeated.
    #[arg(long, default_value_t = 10.0)]
    max_foreign_cpu: f64,
    /// Repeats of one disturbed run before it is kept anyway (and counted as disturbed).
    #[arg(long, default_value_t = 2)]
    retries: usize,
    /// Only these parts: small, html, sockets, jwt, instructions (comma-separated).
    #[arg(long, value_delimiter = ',')]
    only: Vec<String>,
    /// Where the latch, bare-pingora and static-upstream binaries are (default: next to this one).
    #[arg(long)]
    bin_dir: Option<PathBuf>,
    /// Also write the table (Markdown) to this file.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Keep the work directory with every config and log.
    #[arg(long)]
    keep: bool,
    /// Leave CPU placement to the scheduler instead of giving wrk its own core.
    #[arg(long)]
    no_pin: bool,
}

fn options(args: Args) -> Result<(Options, Option<PathBuf>), String> {
    let groups = if args.only.is_empty() {
        Group::ALL.to_vec()
    } else {
        args.only
            .iter()
            .map(|g| {
                Group::parse(g).ok_or_else(|| {
                    format!(
                        "--only: unknown part {g:?} (small, html, tls, sockets, jwt, instructions)"
                    )
                })
            })
            .collect::<Result<_, _>>()?
    };
    let bin_dir = match args.bin_dir {
        Some(dir) => dir,
        None => std::env::current_exe()
            .ok()
            .and_then(|exe| exe.parent().map(PathBuf::from))
            .ok_or("cannot tell where this binary is; pass --bin-dir")?,
    };
    if !bin_dir.join("latch").is_file() {
        return Err(format!(
            "{} has no latch binary; run `cargo build --release -p latch -p bench` first",
            bin_dir.display()
        ));
    }
    let cpus = if args.no_pin {
        Cpus::default()
    } else {
        Cpus::split(bench::cpu::cores())
    };
    if args.rounds == 0 || args.seconds == 0 {
        return Err("--rounds and --seconds must be at least 1".into());
    }
    Ok((
        Options {
            bin_dir,
            rounds: args.rounds,
            seconds: args.seconds,
            warmup_seconds: args.warmup,
            connections: args.connections,
            wrk_threads: args.wrk_threads,
            proxy_threads: args
                .proxy_threads
                .unwrap_or_else(|| cpus.server_count(bench::cpu::cores()))
                .max(1),
            upstream_workers: args.upstream_workers,
            watchers: args.watchers,
            fanout_rounds: args.fanout_rounds,
            idle_sockets: args.idle_sockets,
            groups,
            noise: Noise {
                max_foreign: args.max_foreign_cpu / 100.0,
                retries: args.retries,
            },
            cpus,
            keep: args.keep,
        },
        args.out,
    ))
}

fn main() -> ExitCode {
    let (opts, out) = match options(Args::parse()) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    if let Err(e) = opts.cpus.pin_self_to_load() {
        eprintln!("error: {e}");
        return ExitCode::from(2);
    }
    if !bench::process::installed("wrk") {
        eprintln!("error: wrk is not installed (scripts/setup.sh bench installs it)");
        return ExitCode::from(2);
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start a runtime: {e}");
            return ExitCode::from(2);
        }
    };
    let outcome = match runtime.block_on(suite::run(&opts)) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let text = format!(
        "{}\n\n{}",
        outcome.machine.join("\n"),
        bench::report::render(&outcome.rows)
    );
    println!("\n{text}");
    if let Some(dir) = &outcome.kept {
        eprintln!("bench: configs and logs kept in {}", dir.display());
    }
    if let Some(path) = out {
        if let Err(e) = std::fs::write(&path, &text) {
            eprintln!("error: cannot write {}: {e}", path.display());
            return ExitCode::from(2);
        }
        eprintln!("bench: table written to {}", path.display());
    }
    if outcome.failed {
        eprintln!("bench: some scenarios FAILED (see the table)");
        return ExitCode::from(1);
    }
    ExitCode::SUCCESS
}
