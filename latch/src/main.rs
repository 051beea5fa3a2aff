//! The `latch` binary: parse the command line, run the command, exit 2 on any problem.

mod commands;
mod demo_app;
mod launch;
mod stores;

use std::process::ExitCode;

use clap::Parser;

/// mimalloc: a request through the proxy allocates and frees a few dozen small blocks (header
/// maps, names, values, buffers), and mimalloc's thread-local free lists serve them in a
/// fraction of glibc malloc's instructions.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = commands::Cli::parse();
    commands::init_tracing();
    match commands::run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(problems) => {
            for p in &problems {
                eprintln!("error: {p}");
            }
            ExitCode::from(2)
        }
    }
}
