//! What the app's fenced long-lived connections share — its WebSockets ([`crate::app_ws`]) and
//! its server-sent event streams ([`crate::app_sse`]): the lock one is opened under, its
//! registration under that lock (bounded per user), reading the lock back once registered, and
//! the identity and lock headers the app gets with the request that opens it.
//!
//! It knows nothing of how either kind of connection is relayed.

use std::sync::Arc;

use http::{header, HeaderValue};
use tokio::sync::oneshot;

use crate::app_sockets::Ending;
use crate::gate::LockedWhy;
use crate::respond::{self, Reply};
use crate::state::Latch;
use crate::time_fmt::now_ms;
use crate::upstream_headers::UpstreamHeaders;

/// The lock a fenced connection opens under.
pub struct Fenced {
    pub resource: String,
    /// The app the request was routed to, whose servers it is opened on.
    pub app: crate::apps::AppId,
    pub fence: u64,
    /// The owner key of the lock's holder.
    pub owner: String,
    pub user: String,
    pub user_name: String,
    /// When the credential it was opened with expires (unix seconds): the connection ends
    /// then, as the banner socket does, so a signed-out user keeps nothing open.
    pub expires_at: u64,
    /// The sign-in session it is opened under, if any: a logout ends the connection.
    pub sign_in: Option<String>,
}

impl Fenced {
    /// When the connection must end for its credential's expiry, on tokio's clock.
    pub fn expiry(&self) -> tokio::time::Instant {
        let now_unix = now_ms() / 1000;
        let left = self.expires_at.saturating_sub(now_unix);
        tokio::time::Instant::now() + std::time::Duration::from_secs(left)
    }

    /// The identity and lock headers the app gets with the opening request; with
    /// `accept_identity`, also `Accept-Encoding: identity`.
    pub fn upstream_headers(&self, accept_identity: bool) -> UpstreamHeaders {
        let value = |s: &str| HeaderValue::from_str(s).ok();
        UpstreamHeaders {
            accept_identity,
            user: value(&self.user),
            user_name: value(&self.user_name),
            resource: value(&self.resource),
            fence: Some(HeaderValue::from(self.fence)),
            access: Some(HeaderValue::from_static("exclusive")),
        }
    }
}

/// A connection registered under its lock. Dropping it takes the registration out, however
/// the connection ended (even when its request is dropped mid-way).
pub struct Admitted {
    latch: Arc<Latch>,
    resource: String,
    id: u64,
}

impl Drop for Admitted {
    fn drop(&mut self) {
        self.latch.app_sockets.unregister(&self.resource, self.id);
    }
}

/// Registers a connection under its lock and reads the lock back, so that a loss between the
/// claim and the registration (whose event is already gone by) is not missed. `what` names the
/// kind of connection in the 429 a user past the bound gets. The `Err` is the answer to send
/// instead: 429, 423 for an owner who lost the lock meanwhile, or 503. The receiver gets why
/// the connection must end: the owner lost the lock, or signed out.
pub async fn admit(
    latch: &Arc<Latch>,
    fenced: &Fenced,
    what: &str,
) -> Result<(Admitted, oneshot::Receiver<Ending>), Reply> {
    let registration = latch
        .app_sockets
        .register(
            &fenced.resource,
            &fenced.user,
            &fenced.owner,
            fenced.fence,
            fenced.sign_in.as_deref(),
        )
        .map_err(|e| {
            Reply::problem(429, &format!("Too many {what}"), &e.to_string())
                .header(header::RETRY_AFTER, "10")
        })?;
    let admitted = Admitted {
        latch: latch.clone(),
        resource: fenced.resource.clone(),
        id: registration.id,
    };
    let current = latch
        .store_op("get", latch.store.get(&fenced.resource))
        .await;
    match current {
        Ok(Some(lock)) if lock.fence == fenced.fence && lock.owner_key() == fenced.owner => {
            Ok((admitted, registration.lost))
        }
        Ok(current) => Err(respond::locked(
            false,
            LockedWhy::Displaced,
            &fenced.resource,
            current.as_ref(),
            None,
            now_ms(),
        )),
        Err(e) => {
            tracing::warn!(resource = %fenced.resource, error = %e, "lock store unavailable; refusing a fenced connection of the app");
            Err(respond::unavailable(false))
        }
    }
}
