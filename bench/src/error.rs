//! What can stop a benchmark scenario. A scenario that fails is reported as failed, never
//! as a figure.

use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{name} exited before it was ready ({status}); its log ends with:\n{log}")]
    Exited {
        name: String,
        status: String,
        log: String,
    },
    #[error("{name} was not ready within {waited:?}; its log ends with:\n{log}")]
    NotReady {
        name: String,
        waited: Duration,
        log: String,
    },
    #[error("wrk against {url}: {reason}")]
    Wrk { url: String, reason: String },
    #[error(
        "{url}: {unexpected} of {total} responses were not {expected} (statuses seen: {seen})"
    )]
    Status {
        url: String,
        expected: u16,
        unexpected: u64,
        total: u64,
        seen: String,
    },
    #[error("{url}: {errors} socket errors ({detail})")]
    SocketErrors {
        url: String,
        errors: u64,
        detail: String,
    },
    #[error("{0}")]
    Check(String),
    #[error("token: {0}")]
    Token(String),
}

impl BenchError {
    pub fn io(what: impl Into<String>, source: std::io::Error) -> BenchError {
        BenchError::Io {
            what: what.into(),
            source,
        }
    }
}
