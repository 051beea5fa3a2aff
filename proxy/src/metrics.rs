//! Prometheus metrics for the proxy, served on the admin port.
//!
//! Counters are pre-resolved per label value at start so the request path does one atomic add
//! and no label lookup or allocation.

use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, Opts,
    Registry, TextEncoder,
};

/// What happened to one request, as counted in `latch_requests_total{outcome}`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// No rule matched; forwarded as is.
    Passed,
    /// A rule matched and the requester claimed a free lock.
    Claimed,
    /// A rule matched and the requester already held the lock.
    Renewed,
    /// Someone else holds the lock and the read-only mode let a safe method through.
    ReadOnly,
    /// Someone else holds the lock: 423.
    Denied,
    /// Someone else holds the lock: 303 to the rule's target.
    Redirected,
    /// A rule matched and the request had no valid token.
    Unauthenticated,
    /// The path was refused by normalization (400).
    BadRequest,
    /// The lock store failed or timed out.
    StoreError,
    /// Served by the proxy itself under the reserved prefix.
    Internal,
    /// The lock was free, but the user already holds `max_per_user` locks: 429.
    OverCap,
    /// The lock was free, but the user made `claims_per_minute` new claims already: 429.
    RateLimited,
    /// With `[[app]]` entries, the request's host named no app: 421 or 404.
    UnknownHost,
}

impl Outcome {
    const ALL: [Outcome; 13] = [
        Outcome::Passed,
        Outcome::Claimed,
        Outcome::Renewed,
        Outcome::ReadOnly,
        Outcome::Denied,
        Outcome::Redirected,
        Outcome::Unauthenticated,
        Outcome::BadRequest,
        Outcome::StoreError,
        Outcome::Internal,
        Outcome::OverCap,
        Outcome::RateLimited,
        Outcome::UnknownHost,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Passed => "passed",
            Outcome::Claimed => "claimed",
            Outcome::Renewed => "renewed",
            Outcome::ReadOnly => "read_only",
            Outcome::Denied => "denied",
            Outcome::Redirected => "redirected",
            Outcome::Unauthenticated => "unauthenticated",
            Outcome::BadRequest => "bad_request",
            Outcome::StoreError => "store_error",
            Outcome::OverCap => "over_cap",
            Outcome::RateLimited => "rate_limited",
            Outcome::Internal => "internal",
            Outcome::UnknownHost => "unknown_host",
        }
    }
}

pub struct Metrics {
    registry: Registry,
    outcomes: Vec<IntCounter>,
    pub locks: IntGauge,
    pub store_latency: HistogramVec,
    pub store_errors: IntCounter,
    pub rules_reload_errors: IntCounter,
    rules_loaded: IntGauge,
    rules_dfa: IntGauge,
    pub banner_sockets: IntGauge,
    pub banner_sockets_opened: IntCounterVec,
    pub banner_skipped: IntCounterVec,
    /// Finished sign-ins with the identity provider (`{prefix}/callback`), by result.
    pub sign_ins: IntCounterVec,
    /// Sign-outs of a signed-in session (`{prefix}/logout`), by result.
    pub sign_outs: IntCounterVec,
    /// Renewals of sign-in sessions with their refresh token, by result.
    pub session_renewals: IntCounterVec,
    pub injected: IntCounter,
    pub injected_remembered: IntCounter,
    pub event_fanout: Histogram,
    pub app_sockets: IntGauge,
    pub app_sockets_fenced: IntCounter,
    pub app_streams: IntGauge,
    pub app_streams_fenced: IntCounter,
    pub stash: StashMetrics,
    pub auth_keys: AuthKeyMetrics,
}

impl Metrics {
    pub fn new() -> Metrics {
        let registry = Registry::new();
        let requests = IntCounterVec::new(
            Opts::new("latch_requests_total", "Requests by outcome."),
            &["outcome"],
        )
        .expect("static metric definition");
        let outcomes = Outcome::ALL
            .iter()
            .map(|o| requests.with_label_values(&[o.as_str()]))
            .collect();
        let locks = IntGauge::new("latch_locks", "Locks currently held (sampled at scrape).")
            .expect("static metric definition");
        let store_latency = HistogramVec::new(
            HistogramOpts::new(
                "latch_store_latency_seconds",
                "Latency of lock store operations.",
            )
            .buckets(vec![
                0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
                1.0,
            ]),
            &["op"],
        )
        .expect("static metric definition");
        let store_errors = IntCounter::new(
            "latch_store_errors_total",
            "Lock store operations that failed or timed out.",
        )
        .expect("static metric definition");
        let rules_reload_errors = IntCounter::new(
            "latch_rules_reload_errors_total",
            "Rule reloads that failed; the last good rules stay in force.",
        )
        .expect("static metric definition");
        let rules_loaded = IntGauge::new("latch_rules", "Rules in the active rule set.")
            .expect("static metric definition");
        let rules_dfa = IntGauge::new(
            "latch_rules_dfa",
            "1 when the active rules are matched by a DFA built when they loaded; 0 when a \
             slower engine matches them (no enabled rule, or rules that do not fit one).",
        )
        .expect("static metric definition");
        let banner_sockets = IntGauge::new("latch_banner_sockets", "Open banner WebSockets.")
            .expect("static metric definition");
        let banner_sockets_opened = IntCounterVec::new(
            Opts::new(
                "latch_banner_sockets_opened_total",
                "Banner WebSockets opened, by how: on a connection of their own (\"connection\", \
                 the light way) or inside a kept-alive HTTP session (\"session\").",
            ),
            &["via"],
        )
        .expect("static metric definition");
        let banner_skipped = IntCounterVec::new(
            Opts::new(
                "latch_banner_skipped_total",
                "HTML responses of matched requests that did not get the banner, by reason.",
            ),
            &["reason"],
        )
        .expect("static metric definition");
        let sign_ins = IntCounterVec::new(
            Opts::new(
                "latch_sign_ins_total",
                "Returns from the identity provider to the sign-in callback, by result: \"ok\" \
                 (a session was set) or why none was (state_mismatch, provider_refused, \
                 code_refused, provider_unavailable, …).",
            ),
            &["result"],
        )
        .expect("static metric definition");
        let sign_outs = IntCounterVec::new(
            Opts::new(
                "latch_sign_outs_total",
                "Logouts of a signed-in session, by result: \"ok\" (the session ended on every \
                 instance) or \"store_error\" (its end could not be recorded).",
            ),
            &["result"],
        )
        .expect("static metric definition");
        let session_renewals = IntCounterVec::new(
            Opts::new(
                "latch_session_renewals_total",
                "Renewals of sign-in sessions at the identity provider, by result: \"ok\", \
                 \"refused\" (the session ended) or \"unavailable\" (the provider could not \
                 be asked; the session holds until its ID token ends).",
            ),
            &["result"],
        )
        .expect("static metric definition");
        let injected = IntCounter::new(
            "latch_banner_injected_total",
            "HTML responses the banner script was injected into.",
        )
        .expect("static metric definition");
        let injected_remembered = IntCounter::new(
            "latch_banner_injected_remembered_total",
            "Of the injected responses, those whose head was seen before, so the banner went in \
             at the remembered place without parsing the page.",
        )
        .expect("static metric definition");
        let event_fanout = Histogram::with_opts(
            HistogramOpts::new(
                "latch_event_fanout_seconds",
                "Time from a lock event to its delivery to local banner sockets.",
            )
            .buckets(vec![0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0]),
        )
        .expect("static metric definition");
        let app_sockets = IntGauge::new(
            "latch_app_sockets",
            "Open WebSockets of the app that live under a lock (rules with websocket = \"lock\").",
        )
        .expect("static metric definition");
        let app_sockets_fenced = IntCounter::new(
            "latch_app_sockets_fenced_total",
            "The app's WebSockets closed with 4423 because their owner lost the lock.",
        )
        .expect("static metric definition");
        let app_streams = IntGauge::new(
            "latch_app_streams",
            "Open server-sent event streams of the app that live under a lock (rules with websocket = \"lock\").",
        )
        .expect("static metric definition");
        let app_streams_fenced = IntCounter::new(
            "latch_app_streams_fenced_total",
            "The app's event streams ended with a latch-lock-lost event because their owner lost the lock.",
        )
        .expect("static metric definition");
        let stash = StashMetrics::new();
        let auth_keys = AuthKeyMetrics::new();
        for c in [
            Box::new(auth_keys.keys.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(auth_keys.age.clone()),
            Box::new(auth_keys.fetches.clone()),
            Box::new(auth_keys.failures.clone()),
        ] {
            registry.register(c).expect("metric names are unique");
        }
        for c in [
            Box::new(stash.kept.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(stash.refused_total.clone()),
            Box::new(stash.bytes.clone()),
            Box::new(requests),
            Box::new(locks.clone()),
            Box::new(store_latency.clone()),
            Box::new(store_errors.clone()),
            Box::new(rules_reload_errors.clone()),
            Box::new(rules_loaded.clone()),
            Box::new(rules_dfa.clone()),
            Box::new(banner_sockets.clone()),
            Box::new(banner_sockets_opened.clone()),
            Box::new(banner_skipped.clone()),
            Box::new(sign_ins.clone()),
            Box::new(sign_outs.clone()),
            Box::new(session_renewals.clone()),
            Box::new(injected.clone()),
            Box::new(injected_remembered.clone()),
            Box::new(event_fanout.clone()),
            Box::new(app_sockets.clone()),
            Box::new(app_sockets_fenced.clone()),
            Box::new(app_streams.clone()),
            Box::new(app_streams_fenced.clone()),
        ] {
            registry.register(c).expect("metric names are unique");
        }
        Metrics {
            registry,
            outcomes,
            locks,
            store_latency,
            store_errors,
            rules_reload_errors,
            rules_loaded,
            rules_dfa,
            banner_sockets,
            banner_sockets_opened,
            banner_skipped,
            sign_ins,
            sign_outs,
            session_renewals,
            injected,
            injected_remembered,
            event_fanout,
            app_sockets,
            app_sockets_fenced,
            app_streams,
            app_streams_fenced,
            stash,
            auth_keys,
        }
    }

    /// Says what rule set is in force: how many rules, and whether a DFA matches them.
    pub fn rules_in_force(&self, rules: &rules::RuleSet) {
        self.rules_loaded.set(rules.len() as i64);
        self.rules_dfa.set(i64::from(rules.scans_with_dfa()));
    }

    pub fn count(&self, outcome: Outcome) {
        if let Some(c) = Outcome::ALL
            .iter()
            .position(|o| *o == outcome)
            .and_then(|i| self.outcomes.get(i))
        {
            c.inc();
        }
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut out = Vec::new();
        // Encoding into a Vec cannot fail for the text format.
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut out);
        String::from_utf8(out).unwrap_or_default()
    }
}

/// The identity provider's keys, when they are fetched (`auth.jwks_url` or `auth.discover`).
/// Sampled from the provider at scrape; they stay at zero when the keys are not fetched.
pub struct AuthKeyMetrics {
    /// Usable keys in use; zero until a fetch succeeded.
    pub keys: IntGauge,
    /// Seconds since the keys in use were fetched; -1 until a fetch succeeded.
    pub age: IntGauge,
    pub fetches: IntCounter,
    pub failures: IntCounter,
}

impl AuthKeyMetrics {
    fn new() -> AuthKeyMetrics {
        AuthKeyMetrics {
            keys: IntGauge::new(
                "latch_auth_keys",
                "Usable keys fetched from the identity provider and in use (0 until a fetch succeeded).",
            )
            .expect("static metric definition"),
            age: IntGauge::new(
                "latch_auth_keys_age_seconds",
                "Seconds since the identity provider's keys in use were fetched (-1 until a fetch succeeded).",
            )
            .expect("static metric definition"),
            fetches: IntCounter::new(
                "latch_auth_key_fetches_total",
                "Fetches of the identity provider's keys.",
            )
            .expect("static metric definition"),
            failures: IntCounter::new(
                "latch_auth_key_fetch_failures_total",
                "Fetches of the identity provider's keys that failed; the last good keys stay in use.",
            )
            .expect("static metric definition"),
        }
    }

    /// Brings the metrics to what the provider reports.
    pub fn sample(&self, status: &auth::KeyStatus) {
        self.keys.set(status.keys as i64);
        self.age
            .set(status.age.map_or(-1, |age| age.as_secs() as i64));
        self.fetches
            .inc_by(status.fetches.saturating_sub(self.fetches.get()));
        self.failures
            .inc_by(status.failures.saturating_sub(self.failures.get()));
    }
}

/// What the stash keeps of refused writes (`proxy/src/stash.rs`).
pub struct StashMetrics {
    /// Refused writes whose body was kept.
    pub kept: IntCounter,
    /// Body bytes kept, in total.
    pub bytes: IntCounter,
    refused_total: IntCounterVec,
    /// Pre-resolved per reason, in the order of the reasons the stash module names.
    refused: Vec<(&'static str, IntCounter)>,
}

/// The reasons a refused write's body is not kept, as `latch_stash_refused_total{reason}`.
pub const STASH_REFUSED_REASONS: [&str; 5] = [
    "too_large",
    "content_type",
    "timeout",
    "read_error",
    "store_error",
];

impl StashMetrics {
    fn new() -> Self {
        let kept = IntCounter::new(
            "latch_stash_kept_total",
            "Refused writes whose body was kept for its sender.",
        )
        .expect("static metric definition");
        let bytes = IntCounter::new(
            "latch_stash_bytes_total",
            "Bytes of refused writes' bodies kept.",
        )
        .expect("static metric definition");
        let refused_total = IntCounterVec::new(
            Opts::new(
                "latch_stash_refused_total",
                "Refused writes whose body was not kept, by reason.",
            ),
            &["reason"],
        )
        .expect("static metric definition");
        let refused = STASH_REFUSED_REASONS
            .iter()
            .map(|r| (*r, refused_total.with_label_values(&[r])))
            .collect();
        Self {
            kept,
            bytes,
            refused_total,
            refused,
        }
    }

    /// Counts a body not kept, under its reason's label (one of [`STASH_REFUSED_REASONS`]).
    pub fn refused(&self, key: &str) {
        if let Some((_, counter)) = self.refused.iter().find(|(r, _)| *r == key) {
            counter.inc();
        }
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}
