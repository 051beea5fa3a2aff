//! What a benchmark run is asked to do: its scenarios and how hard to push them.

use std::path::PathBuf;

use crate::process::Cpus;
use crate::rounds::Noise;

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
    /// Instructions per request under callgrind.
    Instructions,
    /// TLS pass-through and held, HTTP/2 against HTTP/1.1, a pool of two upstream servers.
    Tls,
}

impl Group {
    pub const ALL: [Group; 6] = [
        Group::Small,
        Group::Html,
        Group::Tls,
        Group::Sockets,
        Group::Jwt,
        Group::Instructions,
    ];

    pub fn parse(name: &str) -> Option<Group> {
        match name {
            "small" => Some(Group::Small),
            "html" => Some(Group::Html),
            "sockets" => Some(Group::Sockets),
            "jwt" => Some(Group::Jwt),
            "instructions" => Some(Group::Instructions),
            "tls" => Some(Group::Tls),
            _ => None,
        }
    }
}
