//! The access decision, from the `gate` crate (pure, shared with the control plane's rule
//! preview), and how each verdict is counted.

pub use ::gate::*;

use crate::metrics::Outcome;

impl From<Verdict> for Outcome {
    /// How the request is counted in `latch_requests_total{outcome}`.
    fn from(verdict: Verdict) -> Outcome {
        match verdict {
            Verdict::Hold { claimed: true } => Outcome::Claimed,
            Verdict::Hold { claimed: false } => Outcome::Renewed,
            Verdict::View => Outcome::ReadOnly,
            Verdict::Redirect => Outcome::Redirected,
            Verdict::Locked(_) => Outcome::Denied,
            Verdict::OverCap => Outcome::OverCap,
            Verdict::RateLimited => Outcome::RateLimited,
            Verdict::Unlocked | Verdict::Unavailable => Outcome::StoreError,
        }
    }
}
