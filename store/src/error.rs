//! Store failures, as callers need to tell them apart: the proxy turns any of them into the
//! configured `on_store_error` policy, and health checks report them.

/// Why a store operation did not produce an answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// The backing server cannot be reached or refused the operation.
    #[error("lock store unavailable: {0}")]
    Unavailable(String),
    /// The backing server did not answer in time; the operation may or may not have applied.
    #[error("lock store timed out")]
    Timeout,
    /// The store answered with data this version cannot read.
    #[error("lock store returned unreadable data: {0}")]
    Corrupt(String),
}
