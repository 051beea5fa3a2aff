//! Lock actions a user asks for explicitly — release, take over, request access — shared by the
//! POST endpoints and the banner WebSocket so both enforce exactly the same permissions.

use std::time::Duration;

use auth::Identity;
use rules::Owner;
use store::{ClaimRequest, Lock, ReleaseReason, StoreError, Takeover};

use crate::state::Latch;

/// How long a lock outlives a `pagehide` release: long enough for a reload to re-claim it
/// (keeping its fence), short enough that a closed tab frees it at once for the next person.
const PAGEHIDE_GRACE: Duration = Duration::from_secs(3);

#[derive(Debug, thiserror::Error)]
pub enum ActionError {
    #[error("you do not hold this lock")]
    NotHolder,
    #[error("this resource is not locked")]
    NotLocked,
    #[error("your roles do not allow taking over this lock")]
    Forbidden,
    #[error("the lock store is unavailable: {0}")]
    Store(#[from] StoreError),
}

impl ActionError {
    pub fn status(&self) -> u16 {
        match self {
            ActionError::NotHolder | ActionError::NotLocked => 409,
            ActionError::Forbidden => 403,
            ActionError::Store(_) => 503,
        }
    }

    pub fn code(&self) -> &'static str {
        match self {
            ActionError::NotHolder => "not_holder",
            ActionError::NotLocked => "not_locked",
            ActionError::Forbidden => "forbidden",
            ActionError::Store(_) => "store_unavailable",
        }
    }
}

/// Does this identity (in this browser session) hold the lock?
pub fn holds(lock: &Lock, identity: &Identity, session: Option<&str>) -> bool {
    lock.holder.user == identity.user
        && (lock.holder.session.is_none() || lock.holder.session.as_deref() == session)
}

/// Releases the requester's lock. A `pagehide` release only shortens the lease (see
/// [`PAGEHIDE_GRACE`]). Releasing a free lock is not an error.
pub async fn release(
    latch: &Latch,
    identity: &Identity,
    session: Option<&str>,
    resource: &str,
    pagehide: bool,
) -> Result<Option<Lock>, ActionError> {
    let Some(lock) = latch.store_op("get", latch.store.get(resource)).await? else {
        return Ok(None);
    };
    if !holds(&lock, identity, session) {
        return Err(ActionError::NotHolder);
    }
    let owner = lock.holder.owner_key();
    if pagehide {
        let grace = latch
            .grace_under(&lock.resource, &lock.rule)
            .min(PAGEHIDE_GRACE);
        latch
            .store_op("renew", latch.store.renew(resource, &owner, grace))
            .await?;
        return Ok(None);
    }
    Ok(latch
        .store_op(
            "release",
            latch.store.release(resource, &owner, ReleaseReason::Client),
        )
        .await?)
}

/// How long a banner stays present on a resource without being refreshed. Sockets refresh
/// their tabs every ping (20 s); a socket silent for 60 s is closed anyway, so a tab of an
/// instance that died is forgotten within a minute.
pub const PRESENCE_TTL: Duration = Duration::from_secs(60);

/// Longest tab id a banner may send.
pub const MAX_TAB_LEN: usize = 64;

/// Whether `tab` is an id a banner may send: 1 to 64 of `[A-Za-z0-9_-]`.
pub fn valid_tab(tab: &str) -> bool {
    !tab.is_empty()
        && tab.len() <= MAX_TAB_LEN
        && tab
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// Whether a tab of `owner` other than `tab` is present on `resource`, on any instance.
pub async fn other_tab_present(
    latch: &Latch,
    resource: &str,
    owner: &str,
    tab: Option<&str>,
) -> Result<bool, StoreError> {
    let present = latch
        .store_op("presence", latch.store.presence(resource))
        .await?;
    Ok(present
        .iter()
        .any(|p| Some(p.tab.as_str()) != tab && p.holder.owner_key() == owner))
}

/// A page of the requester is going away (the banner's `pagehide` beacon). Its tab leaves the
/// resource's presence; if no other tab of the same owner still watches it, on any instance,
/// the lock starts its grace period (at most [`PAGEHIDE_GRACE`]), which lapses as a voluntary
/// `grace` release. A page without a tab id only starts grace when no tab of the owner is
/// present at all. Nothing happens for a lock the requester does not hold.
pub async fn leave(
    latch: &Latch,
    identity: &Identity,
    session: Option<&str>,
    resource: &str,
    tab: Option<&str>,
) -> Result<(), ActionError> {
    if let Some(tab) = tab {
        latch
            .store_op("presence_leave", latch.store.presence_leave(resource, tab))
            .await?;
    }
    let Some(lock) = latch.store_op("get", latch.store.get(resource)).await? else {
        return Ok(());
    };
    if !holds(&lock, identity, session) {
        return Err(ActionError::NotHolder);
    }
    let owner = lock.holder.owner_key();
    if other_tab_present(latch, resource, &owner, None).await? {
        tracing::debug!(resource, user = %identity.user, "a page closed; another tab still watches");
        return Ok(());
    }
    let grace = latch
        .grace_under(&lock.resource, &lock.rule)
        .min(PAGEHIDE_GRACE);
    latch
        .store_op(
            "begin_grace",
            latch.store.begin_grace(resource, &owner, grace),
        )
        .await?;
    Ok(())
}

/// Who may take a lock over: `takeover_roles` of the rule that granted it, and the holder's
/// own other session for `owner = "session"` rules.
pub fn may_take_over(latch: &Latch, lock: &Lock, identity: &Identity) -> bool {
    let rules = latch.rules.load();
    match rules.get(&lock.rule) {
        Some(rule) => {
            identity.has_any_role(&rule.takeover_roles)
                || (rule.owner == Owner::Session && lock.holder.user == identity.user)
        }
        // The rule was deleted since the claim: only the default takeover role may break it.
        None => identity.has_any_role(&["admin".to_string()]),
    }
}

pub async fn takeover(
    latch: &Latch,
    identity: &Identity,
    session: Option<&str>,
    resource: &str,
) -> Result<Takeover, ActionError> {
    let Some(lock) = latch.store_op("get", latch.store.get(resource)).await? else {
        return Err(ActionError::NotLocked);
    };
    if holds(&lock, identity, session) {
        return Ok(Takeover {
            lock,
            previous: None,
        });
    }
    if !may_take_over(latch, &lock, identity) {
        return Err(ActionError::Forbidden);
    }
    let request = ClaimRequest {
        resource: resource.to_string(),
        rule: lock.rule.clone(),
        holder: latch.holder_under(identity, &lock.rule, session),
        lease: latch.lease_under(&lock.resource, &lock.rule),
        instance: latch.config.proxy.instance.clone(),
        unsafe_method: false,
        // Taking over is decided by role, not by how many locks the taker holds.
        max_per_user: None,
    };
    let result = latch
        .store_op("takeover", latch.store.takeover(&request))
        .await?;
    tracing::info!(
        resource = %resource,
        by = %identity.user,
        from = result.previous.as_ref().map(|l| l.holder.user.as_str()).unwrap_or("-"),
        "taken over"
    );
    Ok(result)
}
