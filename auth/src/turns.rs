//! Who renews a sign-in session when several instances share its cookie (several proxies on
//! one Redis, or a proxy and its console). A provider that rotates refresh tokens may take a
//! second use of one for theft and revoke the whole grant (oidc-provider does), so two
//! instances renewing one cookie at once would sign its browser out. The first to take the
//! turn asks the provider and records the outcome; the others wait for it and hand out the
//! same new cookie. The turns live where every instance sees them: the lock store.

use std::time::Duration;

/// What [`RenewalTurns::take_renewal`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Turn {
    /// The caller has the turn: it asks the provider, then finishes or gives the turn back.
    Mine,
    /// Another instance has the turn and has not finished.
    Pending,
    /// Another instance renewed the session: its new cookie's value.
    Renewed(String),
    /// Another instance's renewal was refused: the session has ended.
    Refused,
}

/// Why a turn could not be read or recorded (the store is out of reach, or full).
pub type TurnError = Box<dyn std::error::Error + Send + Sync>;

/// The turns of every renewal under way or just done, shared by the instances.
#[async_trait::async_trait]
pub trait RenewalTurns: Send + Sync {
    /// Takes the turn for `key`, kept for `ttl` at most while under way, unless another
    /// instance has it or has finished it.
    async fn take_renewal(&self, key: &str, ttl: Duration) -> Result<Turn, TurnError>;

    /// Records how the caller's turn ended, for `ttl`: the session's new cookie value, or
    /// `None` for a refusal.
    async fn finish_renewal(
        &self,
        key: &str,
        cookie: Option<&str>,
        ttl: Duration,
    ) -> Result<(), TurnError>;

    /// Gives the caller's turn back with no outcome (the provider was out of reach), so that
    /// the next request asks again. A turn another instance took since is left alone.
    async fn give_back_renewal(&self, key: &str) -> Result<(), TurnError>;
}
