//! The access decision for a request that a rule protects: what happens to it, given the rule,
//! the request and what the lock store answered.
//!
//! Everything here is pure — no I/O, no clock, no configuration lookups — so the policy is
//! tested as a table (`proxy/tests/verdict.rs`), the proxy's `request_filter` only gathers the
//! facts and carries the decision out, and the control plane can replay recent requests under
//! rules that do not exist yet ([`replay`]). Two layers:
//! - [`verdict`] is the policy itself, on plain values: store answer × mode × method × same
//!   user × redirect target × store-failure policy. Changing how a mode behaves means changing
//!   this function and its table, nothing else.
//! - [`decide`] applies the verdict to the facts of one request and says what to do: let it
//!   [`Decision::Pass`] without a lock, [`Decision::Grant`] it under the lock, or
//!   [`Decision::Reply`] with a refusal.

pub mod replay;

use std::time::Duration;

use config::OnStoreError;
use rules::{Mode, WebSocket};
use store::{ClaimOutcome, Lock, Offer};

/// What the lock store said about a claim, reduced to what the policy depends on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Answer {
    /// The requester now holds a lock that was free.
    Claimed,
    /// The requester already held the lock (its lease was extended).
    Renewed,
    /// Another owner holds it: another user, or (`same_user`) the requester's own other
    /// browser session under an `owner = "session"` rule.
    Held { same_user: bool },
    /// The requester lost the lock and came back with an unsafe method.
    Displaced,
    /// The lock is free, but the requester is past a limit of their own: `rate` when it is
    /// `claims_per_minute`, otherwise the cap on locks held (`max_per_user`).
    Limited { rate: bool },
    /// The lock is free but reserved for the person at the head of its wait queue.
    Reserved,
    /// The store failed or timed out.
    Failed,
}

/// Why a request was refused with 423; it changes the page's wording.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LockedWhy {
    /// Another user holds it.
    OtherUser,
    /// The same user holds it from another session (`owner = "session"` rules).
    OtherSession,
    /// Read-only mode refused an unsafe method.
    ReadOnly,
    /// The requester held it once and lost it; unsafe methods wait for a reload.
    Displaced,
    /// It is free but offered to the next person in line until the offer lapses.
    Reserved,
}

/// The policy's answer for one request under a rule.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Forward as the lock's holder; `claimed` when the lock was free until now.
    Hold { claimed: bool },
    /// Forward as a read-only viewer of someone else's lock.
    View,
    /// 303 to the rule's redirect target.
    Redirect,
    /// 423 Locked.
    Locked(LockedWhy),
    /// 429: the user holds `max_per_user` locks already.
    OverCap,
    /// 429: the user made `claims_per_minute` new claims already.
    RateLimited,
    /// Forward without a lock: the store is down and `on_store_error = "allow"`.
    Unlocked,
    /// 503: the store is down and `on_store_error = "deny"`.
    Unavailable,
}

/// What a request under a rule is, for the policy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A safe method (GET, HEAD, OPTIONS, TRACE) that opens nothing the rule fences.
    Safe,
    /// Any other method.
    Unsafe,
    /// A WebSocket handshake under a rule with `websocket = "lock"`: it needs the lock like an
    /// unsafe method, and the socket it opens lives only as long as its owner holds the lock.
    FencedSocket,
}

impl Kind {
    /// Sorts a request: `safe_method` is whether its method is safe, `websocket` whether it
    /// asks for a WebSocket upgrade, `policy` the rule's `websocket` field.
    pub fn of(safe_method: bool, websocket: bool, policy: WebSocket) -> Kind {
        match (websocket, policy) {
            (true, WebSocket::Lock) => Kind::FencedSocket,
            _ if safe_method => Kind::Safe,
            _ => Kind::Unsafe,
        }
    }

    /// Whether the policy treats the request as safe ([`verdict`]'s `safe`).
    pub fn is_safe(self) -> bool {
        self == Kind::Safe
    }
}

/// The access policy. `safe` is whether the method is safe (GET, HEAD, OPTIONS, TRACE);
/// `can_redirect` whether the rule has a redirect target for this request.
pub fn verdict(
    answer: Answer,
    mode: Mode,
    safe: bool,
    can_redirect: bool,
    on_store_error: OnStoreError,
) -> Verdict {
    match answer {
        Answer::Claimed => Verdict::Hold { claimed: true },
        Answer::Renewed => Verdict::Hold { claimed: false },
        Answer::Held { same_user } => match mode {
            Mode::ReadOnly if safe => Verdict::View,
            Mode::ReadOnly => Verdict::Locked(LockedWhy::ReadOnly),
            Mode::Redirect if safe && !same_user && can_redirect => Verdict::Redirect,
            Mode::Block | Mode::Redirect if same_user => Verdict::Locked(LockedWhy::OtherSession),
            Mode::Block | Mode::Redirect => Verdict::Locked(LockedWhy::OtherUser),
        },
        Answer::Displaced => Verdict::Locked(LockedWhy::Displaced),
        Answer::Reserved => match mode {
            Mode::ReadOnly if safe => Verdict::View,
            Mode::Redirect if safe && can_redirect => Verdict::Redirect,
            Mode::ReadOnly | Mode::Block | Mode::Redirect => Verdict::Locked(LockedWhy::Reserved),
        },
        Answer::Limited { rate: true } => Verdict::RateLimited,
        Answer::Limited { rate: false } => Verdict::OverCap,
        Answer::Failed => match on_store_error {
            OnStoreError::Allow => Verdict::Unlocked,
            OnStoreError::Deny => Verdict::Unavailable,
        },
    }
}

/// Which of the user's own limits refused a free lock.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Limit<'a> {
    /// The user holds `max` locks already (`max_per_user`); `held` names some of them.
    Held { held: &'a [String], max: u32 },
    /// The user made too many new claims a moment ago (`claims_per_minute`).
    Rate,
}

impl Limit<'_> {
    /// The config key that set the limit, as the audit trail and problem documents name it.
    pub fn key(&self) -> &'static str {
        match self {
            Limit::Held { .. } => "max_per_user",
            Limit::Rate => "claims_per_minute",
        }
    }
}

/// What is known about one request under a rule once the lock store has answered.
#[derive(Clone, Copy, Debug)]
pub struct Facts<'a> {
    /// What the lock store said, or what this instance remembers it saying a moment ago.
    pub claim: Claim<'a>,
    /// The requester's user id.
    pub user: &'a str,
    pub mode: Mode,
    /// Whether the method is safe (GET, HEAD, OPTIONS, TRACE).
    pub safe: bool,
    /// The rule's redirect target rendered for this request, when it has one that stays on
    /// this site.
    pub redirect_to: Option<&'a str>,
    /// Set when the user is past `claims_per_minute`: how long until they may claim again.
    pub rate_wait: Option<Duration>,
    /// The rule's lease, which bounds how long a cap refusal lasts at most.
    pub lease: Duration,
    pub on_store_error: OnStoreError,
}

/// Why a request gets an answer from the proxy instead of the app.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal<'a> {
    /// 303 to this target.
    Redirect(&'a str),
    /// 423, naming the lock when there is one.
    Locked {
        why: LockedWhy,
        lock: Option<&'a Lock>,
    },
    /// 423: the resource is reserved for whoever `offer` names, until its `until`.
    Reserved { offer: &'a Offer },
    /// 429, with the seconds after which trying again makes sense.
    Limited { limit: Limit<'a>, retry_after: u64 },
    /// 503: the lock store cannot be reached.
    Unavailable,
}

/// What to do with one request under a rule.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision<'a> {
    /// Forward it without a lock.
    Pass,
    /// Forward it under the lock: as its holder with `Some(fence)`, or as a read-only viewer
    /// with `None`.
    Grant { fence: Option<u64> },
    /// Answer it from the proxy.
    Reply(Refusal<'a>),
}

/// Where the answer about the lock comes from.
#[derive(Clone, Copy, Debug)]
pub enum Claim<'a> {
    /// The lock store answered this claim.
    Store(&'a ClaimOutcome),
    /// This instance saw the requester claim or renew the lock a moment ago, under `fence`
    /// (see `RecentClaims`); the store was not asked.
    Remembered { fence: u64 },
    /// The lock store failed or timed out.
    Failed,
}

impl Claim<'_> {
    /// The policy's view of this answer for `user`, who is past `claims_per_minute` when
    /// `rate_limited`.
    pub fn answer(&self, user: &str, rate_limited: bool) -> Answer {
        match self {
            Claim::Store(ClaimOutcome::Claimed(_)) => Answer::Claimed,
            Claim::Store(ClaimOutcome::Renewed(_)) | Claim::Remembered { .. } => Answer::Renewed,
            Claim::Store(ClaimOutcome::Held(lock)) => Answer::Held {
                same_user: lock.holder.user == user,
            },
            Claim::Store(ClaimOutcome::Displaced { .. }) => Answer::Displaced,
            Claim::Store(ClaimOutcome::Limited { .. }) => Answer::Limited { rate: rate_limited },
            Claim::Store(ClaimOutcome::Reserved { .. }) => Answer::Reserved,
            Claim::Failed => Answer::Failed,
        }
    }
}

/// Applies the policy to one request: the verdict (which is also how the request is counted)
/// and what to do.
pub fn decide<'a>(facts: &Facts<'a>) -> (Verdict, Decision<'a>) {
    let answer = facts.claim.answer(facts.user, facts.rate_wait.is_some());
    let verdict = verdict(
        answer,
        facts.mode,
        facts.safe,
        facts.redirect_to.is_some(),
        facts.on_store_error,
    );
    let (lock, fence) = match facts.claim {
        Claim::Store(outcome) => {
            let lock = outcome.lock();
            (lock, lock.map(|l| l.fence))
        }
        Claim::Remembered { fence } => (None, Some(fence)),
        Claim::Failed => (None, None),
    };
    let decision = match verdict {
        Verdict::Hold { .. } => Decision::Grant { fence },
        Verdict::View => Decision::Grant { fence: None },
        Verdict::Unlocked => Decision::Pass,
        Verdict::Redirect => match facts.redirect_to {
            Some(target) => Decision::Reply(Refusal::Redirect(target)),
            None => Decision::Reply(Refusal::Locked {
                why: LockedWhy::OtherUser,
                lock,
            }),
        },
        Verdict::Locked(LockedWhy::Reserved) => match facts.claim {
            Claim::Store(ClaimOutcome::Reserved { offer }) => {
                Decision::Reply(Refusal::Reserved { offer })
            }
            _ => Decision::Reply(Refusal::Locked {
                why: LockedWhy::Reserved,
                lock,
            }),
        },
        Verdict::Locked(why) => Decision::Reply(Refusal::Locked { why, lock }),
        Verdict::RateLimited => {
            let wait = facts.rate_wait.unwrap_or_default();
            Decision::Reply(Refusal::Limited {
                limit: Limit::Rate,
                retry_after: wait.as_secs() + u64::from(wait.subsec_nanos() > 0),
            })
        }
        Verdict::OverCap => {
            let (held, max) = match facts.claim {
                Claim::Store(ClaimOutcome::Limited { held, max }) => (held.as_slice(), *max),
                _ => (&[][..], 0),
            };
            Decision::Reply(Refusal::Limited {
                limit: Limit::Held { held, max },
                retry_after: facts.lease.as_secs(),
            })
        }
        Verdict::Unavailable => Decision::Reply(Refusal::Unavailable),
    };
    (verdict, decision)
}
