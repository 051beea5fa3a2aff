//! When a token names a key the cached set does not hold, whether the set may be fetched again
//! now: at most once per configured interval, counted from the start of the last fetch of any
//! kind. Anyone can send a token with a made-up `kid`, so without this bound every such
//! request would become a request to the identity provider.
//!
//! Pure: the caller passes the time, so tests drive the clock.

use std::time::{Duration, Instant};

#[derive(Debug)]
pub(crate) struct RefetchGate {
    interval: Duration,
    last_fetch: Option<Instant>,
}

impl RefetchGate {
    pub(crate) fn new(interval: Duration) -> RefetchGate {
        RefetchGate {
            interval,
            last_fetch: None,
        }
    }

    /// Records a fetch starting at `now`, whatever triggered it.
    pub(crate) fn fetching(&mut self, now: Instant) {
        self.last_fetch = Some(now);
    }

    /// Whether a fetch for an unknown key may start at `now`; if so, it is recorded.
    pub(crate) fn try_refetch(&mut self, now: Instant) -> bool {
        let allowed = self
            .last_fetch
            .is_none_or(|last| now.saturating_duration_since(last) >= self.interval);
        if allowed {
            self.fetching(now);
        }
        allowed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_refetch_per_interval() {
        let start = Instant::now();
        let at = |ms: u64| start + Duration::from_millis(ms);
        let mut gate = RefetchGate::new(Duration::from_secs(30));
        assert!(gate.try_refetch(at(0)), "the first unknown key may fetch");
        assert!(!gate.try_refetch(at(1)));
        assert!(!gate.try_refetch(at(29_999)));
        assert!(gate.try_refetch(at(30_000)));
        assert!(!gate.try_refetch(at(30_001)));
    }

    #[test]
    fn a_scheduled_fetch_counts_against_the_interval() {
        let start = Instant::now();
        let mut gate = RefetchGate::new(Duration::from_secs(10));
        gate.fetching(start);
        assert!(!gate.try_refetch(start + Duration::from_secs(9)));
        assert!(gate.try_refetch(start + Duration::from_secs(10)));
    }

    #[test]
    fn a_clock_that_seems_to_go_back_does_not_open_the_gate() {
        let start = Instant::now() + Duration::from_secs(100);
        let mut gate = RefetchGate::new(Duration::from_secs(10));
        assert!(gate.try_refetch(start));
        assert!(!gate.try_refetch(start - Duration::from_secs(50)));
    }
}
