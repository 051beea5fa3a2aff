//! Recent requests as a proxy instance samples them and the control plane merges them, for the
//! preview of a rule (which of them it would have matched, and how each user would have been
//! treated).
//!
//! A sampled request is what the shape summary notes plus the time, the app and the user id of
//! a verified credential: never a query string, a body or a header's value. Each instance keeps
//! at most [`MAX_SAMPLED`] of them, none older than [`SAMPLED_FOR_MS`].

use serde::{Deserialize, Serialize};

/// Most sampled requests one instance keeps (and publishes).
pub const MAX_SAMPLED: usize = 1_000;
/// How long a sampled request is kept, in milliseconds: 15 minutes.
pub const SAMPLED_FOR_MS: u64 = 15 * 60 * 1_000;
/// A request whose path is longer than this many bytes is not kept in the sample.
pub const MAX_SAMPLED_PATH: usize = 1_024;
/// A user id longer than this many bytes is not kept: the request is kept without one.
pub const MAX_SAMPLED_USER: usize = 256;

/// One sampled request.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SampledRequest {
    /// Milliseconds since the Unix epoch.
    pub at: u64,
    /// The `[[app]]` it was for; `None` with a single app.
    pub app: Option<String>,
    pub method: String,
    /// The normalized path rules are matched against, without the query.
    pub path: String,
    /// One of [`SHAPE_KINDS`](crate::SHAPE_KINDS).
    pub kind: String,
    /// The user id of the credential it carried, when that verified.
    pub user: Option<String>,
}

/// Several instances' samples as one list in time order (requests at the same millisecond in
/// the order given), without those older than [`SAMPLED_FOR_MS`] before `now`.
pub fn merge_sampled(
    samples: impl IntoIterator<Item = Vec<SampledRequest>>,
    now: u64,
) -> Vec<SampledRequest> {
    let since = now.saturating_sub(SAMPLED_FOR_MS);
    let mut merged: Vec<SampledRequest> = samples
        .into_iter()
        .flatten()
        .filter(|request| request.at >= since)
        .collect();
    merged.sort_by_key(|request| request.at);
    merged
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(at: u64, user: &str) -> SampledRequest {
        SampledRequest {
            at,
            app: None,
            method: "GET".to_owned(),
            path: "/a/1".to_owned(),
            kind: "page".to_owned(),
            user: Some(user.to_owned()),
        }
    }

    #[test]
    fn instances_merge_in_time_order_without_the_expired() {
        let now = SAMPLED_FOR_MS + 10_000;
        let merged = merge_sampled(
            [
                vec![at(9_000, "old"), at(SAMPLED_FOR_MS + 5, "a"), at(now, "c")],
                vec![at(SAMPLED_FOR_MS + 1, "b"), at(SAMPLED_FOR_MS + 5, "a2")],
            ],
            now,
        );
        let users: Vec<&str> = merged.iter().filter_map(|r| r.user.as_deref()).collect();
        assert_eq!(users, ["b", "a", "a2", "c"]);
    }
}
