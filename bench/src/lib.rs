//! Latch's benchmark harness.
//!
//! It owns everything a run needs besides the binaries under test: the static site the
//! upstream serves, the child processes (upstream, baselines, Latch instances, Redis), the wrk
//! runs that alternate between systems round by round, the banner-socket scenarios, and the
//! table of medians and ratios. Every figure is a ratio measured in the same run, because
//! absolute rates on a small shared machine drift from minute to minute.
//!
//! It must not know how Latch works inside: it talks to `latch proxy` only through its config
//! file, its HTTP port, its banner WebSocket and `/proc`, exactly as an operator would. The one
//! exception is the `auth` crate's verifier, timed in-process to show what a token costs
//! before any cache.

pub mod cpu;
pub mod error;
pub mod fanout;
pub mod fanout_presence;
pub mod fanout_queue;
pub mod h2load;
pub mod instructions;
pub mod jwt;
pub mod latch;
pub mod nginx;
pub mod options;
pub mod process;
pub mod report;
pub mod rounds;
pub mod site;
pub mod stats;
pub mod suite;
pub mod systems;
pub mod throughput;
pub mod tls;
pub mod tokens;
pub mod wrk;

pub use error::BenchError;
