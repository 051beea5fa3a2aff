//! Latch's pure core: the rule model, rule validation, request targets and path
//! normalization, and the compiled rule set every request is matched against.
//!
//! Invariant: this crate does no I/O and knows nothing of async runtimes, HTTP servers, lock
//! stores or where rules are kept. The proxy, `latch check` and the control plane all build on
//! it, so one rule means the same thing everywhere.

mod file;
mod lint;
mod model;
mod normalize;
mod pattern;
mod problems;
mod redirect;
mod sampled;
mod set;
mod shape;
mod target;
mod template;
mod validate;

pub use file::parse_rules_toml;
pub use lint::lint_rules;
pub use model::{Mode, Owner, Rule, WebSocket, RULE_FIELDS};
pub use normalize::{normalize_path, rule_path, strip_path_parameters, PathError, PathParameters};
pub use pattern::CaptureType;
pub use problems::{ProblemContext, Problems};
pub use redirect::{check_same_site, OffSite};
pub use sampled::{
    merge_sampled, SampledRequest, MAX_SAMPLED, MAX_SAMPLED_PATH, MAX_SAMPLED_USER, SAMPLED_FOR_MS,
};
pub use set::{Match, RuleSet};
pub use shape::{
    merge_shapes, shape, suggest_rule, RelatedShape, RelatedShapes, ShapeEntry, MAX_RELATED,
    MAX_SHAPE_LEN, SHAPE_KINDS,
};
pub use target::{parse_target, AbsolutePath, Target, TargetError};
pub use validate::{
    check_app_name, check_rule_apps, validate_rule, validate_rules, Issue, APP_NAME_MAX_LEN,
};

/// The bounds validation enforces, for callers that want to show or reuse them.
pub mod limits {
    use std::ops::RangeInclusive;

    /// Longest rule id, in characters.
    pub const ID_MAX_LEN: usize = 64;
    /// Allowed `lease_seconds`: long enough to survive a slow renewal, at most a day.
    pub const LEASE_SECONDS: RangeInclusive<u64> = 5..=86_400;
    /// Allowed `grace_seconds`; it must also be shorter than the lease.
    pub const GRACE_SECONDS: RangeInclusive<u64> = 0..=3_600;
    /// Allowed `idle_seconds` (`0` is off): at least a couple of minutes' worth of warning room
    /// is the admin's call; up to a day.
    pub const IDLE_SECONDS: RangeInclusive<u64> = 0..=86_400;

    /// Allowed `offer_seconds`, as for `[locks] offer_seconds`: long enough to notice, short
    /// enough that a person who walked away does not hold up the line for long.
    pub const OFFER_SECONDS: RangeInclusive<u64> = 5..=3_600;
    /// Allowed `max_per_user` (`0` is no cap), as for `[locks] max_per_user`.
    pub const MAX_PER_USER: RangeInclusive<u32> = 0..=1_000;
    /// Allowed `priority`.
    pub const PRIORITY: RangeInclusive<i32> = -1_000..=1_000;
    /// Largest compiled regex for one pattern, in bytes. It stops patterns such as
    /// `(a{100}){100}` from costing every proxy instance unbounded memory.
    pub const PATTERN_SIZE_LIMIT: usize = 1 << 20;
    /// Largest DFA built ahead of time for a whole rule set, in bytes, and the most memory its
    /// construction may use. Rules that need more are scanned by the meta engine instead, as
    /// fast to build and slower per request.
    pub const DFA_SIZE_LIMIT: usize = 4 << 20;
}
