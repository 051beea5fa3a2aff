//! `POST /api/v1/rules/preview`: what candidate rules would have done to recent traffic. The
//! proxies' sampled requests (published with their shapes, [`Summaries::read`]) are replayed
//! in time order against the candidate rules alone, with a simulated lock table
//! ([`gate::replay`], pure): which requests they match, who would have held each resource and
//! what everyone else would have got.
//!
//! An approximation (docs/admin-api.md): only sampled requests are seen, and between a
//! holder's requests the lock lasts the rule's lease, where a banner would renew it.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::HeaderMap;
use axum::Json;
use gate::replay::{self, Replayed, Treatment, UserSummary};
use gate::Verdict;
use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;

use crate::access::Admin;
use crate::error::{ApiError, FieldError, Problem};
use crate::request::RequestBody;
use crate::rule_json::{json_body, rule_from_json};
use crate::shapes_api::Summaries;
use crate::{now_millis, ControlPlane};

/// Most candidate rules one preview takes: a rule and its related shapes
/// (`rules::MAX_RELATED`), with room to spare.
const MAX_CANDIDATES: usize = 32;
/// Most matched requests one answer lists, the latest.
const MAX_LISTED: usize = 500;

// The document's `maxItems` of the body and of `requests`.
const _: () = assert!(MAX_CANDIDATES == 32 && MAX_LISTED == 500);

/// One sampled request a candidate rule matches, and what it would have got.
#[derive(Serialize, ToSchema)]
pub struct PreviewRequest {
    /// When it was seen, in milliseconds since the Unix epoch.
    pub at: u64,
    /// The user id of the credential it carried; `null` when it carried none that verified.
    pub user: Option<String>,
    pub method: String,
    /// The normalized path, without the query.
    pub path: String,
    /// The `[[app]]` it was for; `null` with a single app.
    pub app: Option<String>,
    /// The candidate rule that matches it.
    pub rule: String,
    /// The lock key it would claim.
    pub resource: String,
    /// What it would have got: `claimed` (the lock was free), `renewed` (the requester held
    /// it), `read_only` (forwarded as a viewer), `redirected`, `locked` (423), `sign_in`
    /// (no credential that verified), `preflight` (`OPTIONS`, passes unclaimed).
    #[schema(example = "locked")]
    pub treatment: &'static str,
    /// The status the proxy itself would have answered; `null` when the request reaches the
    /// app.
    pub status: Option<u16>,
    /// Who held the resource when it was decided; `null` when nobody did.
    pub holder: Option<String>,
    /// Where a `redirect` rule would have sent it.
    pub redirect_to: Option<String>,
}

/// The preview of candidate rules against recent traffic.
#[derive(Serialize, ToSchema)]
pub struct Preview {
    /// How many proxy instances' samples were read.
    pub instances: usize,
    /// How many sampled requests of the last 15 minutes were replayed, matched or not.
    pub sampled: usize,
    /// How many of them the candidate rules match.
    pub matched: usize,
    /// One line per user, in the order they first appear.
    pub users: Vec<UserSummary>,
    /// The matched requests in time order, the latest 500 at most.
    #[schema(max_items = 500)]
    pub requests: Vec<PreviewRequest>,
}

/// Replay recent sampled requests against candidate rules: which they would have matched and
/// how each user would have been treated. Nothing is stored.
#[utoipa::path(post, path = "/api/v1/rules/preview", tag = "rules", operation_id = "previewRules",
    request_body(content = Vec<crate::rule_json::RuleDto>,
        description = "The candidate rules, each as for creating one (a rule and the rules for its related shapes, say): at least 1, at most 32"),
    responses(
        (status = 200, description = "The matched recent requests and a line per user", body = Preview),
        (status = 400, description = "The body is not valid JSON", body = Problem),
        (status = 413, description = "The body is over 64 KiB", body = Problem),
        (status = 415, description = "The body is not JSON", body = Problem),
        (status = 422, description = "The body is not a list of 1 to 32 rules, or a rule has problems (fields named `[index].field`)", body = Problem),
        (status = 503, description = "The lock store did not answer", body = Problem)))]
pub async fn preview(
    State(cp): State<Arc<ControlPlane>>,
    _admin: Admin,
    headers: HeaderMap,
    RequestBody(body): RequestBody,
) -> Result<Json<Preview>, ApiError> {
    let set = cp.candidates(json_body(&headers, &body)?)?;
    let summaries = Summaries::read(cp.locks.as_ref()).await?;
    let requests = rules::merge_sampled(summaries.requests, now_millis());
    let replayed = replay::replay(&requests, &set, |rule| cp.lease_of(rule));
    let users = replay::summarize(&replayed);
    let skip = replayed.len().saturating_sub(MAX_LISTED);
    Ok(Json(Preview {
        instances: summaries.instances,
        sampled: requests.len(),
        matched: replayed.len(),
        users,
        requests: replayed
            .iter()
            .skip(skip)
            .map(PreviewRequest::from)
            .collect(),
    }))
}

impl ControlPlane {
    /// The candidate rules of a preview's body, compiled; every problem of every rule at
    /// once, each field named `[index].field`.
    fn candidates(&self, body: Value) -> Result<rules::RuleSet, ApiError> {
        let Value::Array(items) = body else {
            return Err(ApiError::field("", "expected a JSON list of rules"));
        };
        if items.is_empty() || items.len() > MAX_CANDIDATES {
            return Err(ApiError::field(
                "",
                format!("expected 1 to {MAX_CANDIDATES} rules"),
            ));
        }
        let at = |i: usize, e: FieldError| FieldError::new(format!("[{i}].{}", e.field), e.message);
        let mut errors = Vec::new();
        let mut candidates = Vec::with_capacity(items.len());
        for (i, item) in items.into_iter().enumerate() {
            match rule_from_json(item, None).and_then(|rule| self.check_app(&rule).map(|()| rule)) {
                Ok(rule) => candidates.push(rule),
                Err(problems) => errors.extend(problems.into_iter().map(|e| at(i, e))),
            }
        }
        if !errors.is_empty() {
            return Err(ApiError::Unprocessable(errors));
        }
        rules::RuleSet::compile(candidates).map_err(|issues| {
            ApiError::Unprocessable(
                issues
                    .iter()
                    .map(|issue| {
                        let e = FieldError::new(issue.field.clone(), issue.message.clone());
                        at(issue.index.unwrap_or_default(), e)
                    })
                    .collect(),
            )
        })
    }

    /// The lease the proxies would give a lock under `rule`: its own, else its app's, else
    /// `[locks] lease_seconds`.
    fn lease_of(&self, rule: &rules::Rule) -> Duration {
        if let Some(seconds) = rule.lease_seconds {
            return Duration::from_secs(seconds);
        }
        let app = rule
            .app
            .as_deref()
            .and_then(|name| self.apps.iter().find(|app| app.name == name));
        app.and_then(|app| app.lease).unwrap_or(self.lease)
    }
}

impl From<&Replayed<'_>> for PreviewRequest {
    fn from(one: &Replayed<'_>) -> PreviewRequest {
        let (treatment, status) = treatment(one.treatment);
        PreviewRequest {
            at: one.request.at,
            user: one.request.user.clone(),
            method: one.request.method.clone(),
            path: one.request.path.clone(),
            app: one.request.app.clone(),
            rule: one.rule.id.clone(),
            resource: one.resource.clone(),
            treatment,
            status,
            holder: one.holder.clone(),
            redirect_to: one.redirect_to.clone(),
        }
    }
}

impl ControlPlane {
    /// How the proxies would treat `user`'s `method` request under `found` now, with `lock`
    /// the resource's live lock: the policy ([`gate::decide`]) applied to the claim's answer
    /// as the lock store would give it (the user's own lock renewed, another's held, a free
    /// one claimed). Wait queues and a displaced holder's refused write are not looked at.
    pub(crate) fn treatment_now(
        &self,
        found: &rules::Match<'_>,
        user: &str,
        method: &str,
        lock: Option<&store::Lock>,
    ) -> (&'static str, Option<u16>) {
        let rule = found.rule;
        let outcome = match lock {
            Some(lock) if lock.holder.user == user => store::ClaimOutcome::Renewed(lock.clone()),
            Some(lock) => store::ClaimOutcome::Held(lock.clone()),
            None => store::ClaimOutcome::Claimed(store::Lock {
                resource: found.resource.clone(),
                rule: rule.id.clone(),
                holder: store::Holder {
                    user: user.to_owned(),
                    name: user.to_owned(),
                    session: None,
                },
                since: 0,
                expires: 0,
                fence: 0,
                instance: String::new(),
                active: 0,
            }),
        };
        let safe_method = matches!(method, "GET" | "HEAD" | "OPTIONS" | "TRACE");
        let facts = gate::Facts {
            claim: gate::Claim::Store(&outcome),
            user,
            mode: rule.mode,
            safe: gate::Kind::of(safe_method, false, rule.websocket).is_safe(),
            redirect_to: found.redirect_to.as_deref(),
            rate_wait: None,
            lease: self.lease_of(rule),
            on_store_error: config::OnStoreError::Allow,
        };
        treatment(Treatment::Decided(gate::decide(&facts).0))
    }
}

/// A treatment's name on the wire, and the status the proxy would answer itself.
fn treatment(treatment: Treatment) -> (&'static str, Option<u16>) {
    match treatment {
        Treatment::Preflight => ("preflight", None),
        Treatment::SignIn => ("sign_in", Some(401)),
        Treatment::Decided(verdict) => match verdict {
            Verdict::Hold { claimed: true } => ("claimed", None),
            Verdict::Hold { claimed: false } => ("renewed", None),
            Verdict::View => ("read_only", None),
            Verdict::Redirect => ("redirected", Some(303)),
            Verdict::Locked(_) => ("locked", Some(423)),
            // Not reached: the replay has no caps, rate limits or store failures.
            Verdict::OverCap | Verdict::RateLimited => ("limited", Some(429)),
            Verdict::Unlocked => ("unlocked", None),
            Verdict::Unavailable => ("unavailable", Some(503)),
        },
    }
}
