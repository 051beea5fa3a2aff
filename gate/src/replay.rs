//! The preview of rules that do not exist yet: recent requests, replayed in time order against a
//! simulated lock table, each decided by [`decide`] as the proxy would have.
//!
//! An approximation, by design: only sampled requests are replayed (one in
//! `proxy.shape_sample_every`), and a holder's banner renews the lock between requests in real
//! life while here the lock lasts the rule's lease after the holder's last replayed request.
//! Wait queues, `max_per_user`, `claims_per_minute` and `owner = "session"` are left out: every
//! user is one owner, a free lock goes to whoever asks first.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use config::OnStoreError;
use rules::{Rule, RuleSet, SampledRequest};
use store::{ClaimOutcome, Holder, Lock};

use crate::{decide, Claim, Decision, Facts, Kind, Verdict};

/// How one replayed request would have been treated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Treatment {
    /// `OPTIONS`: a preflight passes unclaimed.
    Preflight,
    /// It carried no credential that verified: the proxy asks for a sign-in.
    SignIn,
    /// What [`decide`] says.
    Decided(Verdict),
}

/// One sampled request a candidate rule matches, and what it would have got.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Replayed<'r> {
    pub request: &'r SampledRequest,
    pub rule: &'r Rule,
    /// The lock key it would claim.
    pub resource: String,
    pub treatment: Treatment,
    /// Who held the lock when it was decided (the requester, once granted); `None` when free.
    pub holder: Option<String>,
    /// Where a refused safe request would be sent, under a `redirect` rule.
    pub redirect_to: Option<String>,
}

/// Replays `requests` in time order against `rules`; `lease` is a rule's lease as the proxies
/// would apply it (the rule's own, else its app's, else `[locks]`). Requests no rule matches
/// are left out.
pub fn replay<'r>(
    requests: &'r [SampledRequest],
    rules: &'r RuleSet,
    lease: impl Fn(&Rule) -> Duration,
) -> Vec<Replayed<'r>> {
    let mut order: Vec<&SampledRequest> = requests.iter().collect();
    order.sort_by_key(|request| request.at);
    let mut locks: HashMap<String, Lock> = HashMap::new();
    // (resource, user): users who lost a lock and have not reloaded since.
    let mut displaced: HashSet<(String, String)> = HashSet::new();
    let mut fence = 0;
    let mut replayed = Vec::new();
    for request in order {
        let Some(found) = rules.find_in(request.app.as_deref(), &request.method, &request.path)
        else {
            continue;
        };
        let rule = found.rule;
        let resource = found.resource;
        let at = request.at;
        if locks.get(&resource).is_some_and(|held| held.expires <= at) {
            if let Some(lapsed) = locks.remove(&resource) {
                displaced.insert((resource.clone(), lapsed.holder.user));
            }
        }
        let holder_now = |locks: &HashMap<String, Lock>| {
            locks.get(&resource).map(|held| held.holder.user.clone())
        };
        let user = match (request.method.as_str(), request.user.as_deref()) {
            ("OPTIONS", _) => {
                replayed.push(Replayed {
                    holder: holder_now(&locks),
                    request,
                    rule,
                    resource,
                    treatment: Treatment::Preflight,
                    redirect_to: None,
                });
                continue;
            }
            (_, None) => {
                replayed.push(Replayed {
                    holder: holder_now(&locks),
                    request,
                    rule,
                    resource,
                    treatment: Treatment::SignIn,
                    redirect_to: None,
                });
                continue;
            }
            (_, Some(user)) => user,
        };
        let lease = lease(rule);
        let lease_ms = u64::try_from(lease.as_millis()).unwrap_or(u64::MAX);
        let safe = Kind::of(is_safe(&request.method), false, rule.websocket).is_safe();
        let key = (resource.clone(), user.to_owned());
        let outcome = match locks.get_mut(&resource) {
            Some(held) if held.holder.user == user => {
                held.expires = at.saturating_add(lease_ms);
                ClaimOutcome::Renewed(held.clone())
            }
            current if !safe && displaced.contains(&key) => ClaimOutcome::Displaced {
                current: current.cloned(),
            },
            Some(held) => {
                displaced.remove(&key);
                ClaimOutcome::Held(held.clone())
            }
            None => {
                displaced.remove(&key);
                fence += 1;
                let lock = Lock {
                    resource: resource.clone(),
                    rule: rule.id.clone(),
                    holder: Holder {
                        user: user.to_owned(),
                        name: user.to_owned(),
                        session: None,
                    },
                    since: at,
                    expires: at.saturating_add(lease_ms),
                    fence,
                    instance: String::new(),
                    active: at,
                };
                locks.insert(resource.clone(), lock.clone());
                ClaimOutcome::Claimed(lock)
            }
        };
        let facts = Facts {
            claim: Claim::Store(&outcome),
            user,
            mode: rule.mode,
            safe,
            redirect_to: found.redirect_to.as_deref(),
            rate_wait: None,
            lease,
            on_store_error: OnStoreError::Allow,
        };
        let (verdict, decision) = decide(&facts);
        let redirect_to = match decision {
            Decision::Reply(crate::Refusal::Redirect(to)) => Some(to.to_owned()),
            _ => None,
        };
        replayed.push(Replayed {
            holder: outcome.lock().map(|lock| lock.holder.user.clone()),
            request,
            rule,
            resource,
            treatment: Treatment::Decided(verdict),
            redirect_to,
        });
    }
    replayed
}

/// What happened to one user's replayed requests.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct UserSummary {
    /// `None`: the requests that carried no credential that verified.
    pub user: Option<String>,
    pub requests: usize,
    /// The resources this user would have taken, in the order taken.
    pub held: Vec<String>,
    /// Refused with 423.
    pub locked: usize,
    /// Let through read-only.
    pub read_only: usize,
    /// Sent to the rule's redirect target.
    pub redirected: usize,
    /// Asked to sign in.
    pub sign_in: usize,
    /// Who held the locks this user was refused or shown read-only, in the order met.
    pub held_by: Vec<String>,
    /// All of it in one sentence: "alice holds page:12", "bob: 2 requests refused 423, alice
    /// held it".
    #[serde(rename = "summary")]
    #[cfg_attr(
        feature = "openapi",
        schema(example = "bob: 2 requests refused 423, alice held it")
    )]
    pub line: String,
}

/// One summary per user, in the order users first appear.
pub fn summarize(replayed: &[Replayed<'_>]) -> Vec<UserSummary> {
    let mut summaries: Vec<UserSummary> = Vec::new();
    for one in replayed {
        let user = one.request.user.clone();
        let i = match summaries.iter().position(|s| s.user == user) {
            Some(i) => i,
            None => {
                summaries.push(UserSummary {
                    user,
                    requests: 0,
                    held: Vec::new(),
                    locked: 0,
                    read_only: 0,
                    redirected: 0,
                    sign_in: 0,
                    held_by: Vec::new(),
                    line: String::new(),
                });
                summaries.len() - 1
            }
        };
        let summary = &mut summaries[i];
        summary.requests += 1;
        let refused = match one.treatment {
            Treatment::Decided(Verdict::Hold { .. }) => {
                if !summary.held.contains(&one.resource) {
                    summary.held.push(one.resource.clone());
                }
                false
            }
            Treatment::Decided(Verdict::View) => {
                summary.read_only += 1;
                true
            }
            Treatment::Decided(Verdict::Redirect) => {
                summary.redirected += 1;
                true
            }
            Treatment::Decided(Verdict::Locked(_)) => {
                summary.locked += 1;
                true
            }
            Treatment::SignIn => {
                summary.sign_in += 1;
                false
            }
            Treatment::Preflight | Treatment::Decided(_) => false,
        };
        if refused {
            if let Some(holder) = &one.holder {
                if Some(holder) != summary.user.as_ref() && !summary.held_by.contains(holder) {
                    summary.held_by.push(holder.clone());
                }
            }
        }
    }
    for summary in &mut summaries {
        summary.line = line(summary);
    }
    summaries
}

fn requests(n: usize) -> String {
    if n == 1 {
        "1 request".to_owned()
    } else {
        format!("{n} requests")
    }
}

fn line(summary: &UserSummary) -> String {
    let mut parts = Vec::new();
    for (n, what) in [
        (summary.locked, "refused 423"),
        (summary.read_only, "read-only"),
        (summary.redirected, "redirected"),
        (summary.sign_in, "asked to sign in"),
    ] {
        if n > 0 {
            parts.push(format!("{} {what}", requests(n)));
        }
    }
    if !summary.held_by.is_empty() {
        parts.push(format!("{} held it", summary.held_by.join(" and ")));
    }
    let who = summary.user.as_deref().unwrap_or("not signed in");
    match (summary.held.is_empty(), parts.is_empty()) {
        (false, true) => format!("{who} holds {}", summary.held.join(", ")),
        (false, false) => format!(
            "{who} holds {}; {}",
            summary.held.join(", "),
            parts.join(", ")
        ),
        (true, false) => format!("{who}: {}", parts.join(", ")),
        (true, true) => format!("{who}: {}", requests(summary.requests)),
    }
}

/// GET, HEAD, OPTIONS and TRACE, as the proxy sorts methods.
fn is_safe(method: &str) -> bool {
    matches!(method, "GET" | "HEAD" | "OPTIONS" | "TRACE")
}
