//! The message budget of one banner socket: a token bucket.

use tokio::time::Instant;

/// Messages allowed in a burst; the bucket refills at [`RATE_PER_SEC`].
pub const RATE_BURST: f64 = 20.0;
pub const RATE_PER_SEC: f64 = 5.0;
/// Over-limit messages tolerated before the socket is closed.
pub const RATE_STRIKES: u32 = 20;

/// One socket's budget: [`RATE_BURST`] messages at once, refilled at [`RATE_PER_SEC`].
pub struct Budget {
    tokens: f64,
    last_refill: Instant,
    /// Messages refused so far.
    strikes: u32,
}

impl Budget {
    pub fn new() -> Budget {
        Budget {
            tokens: RATE_BURST,
            last_refill: Instant::now(),
            strikes: 0,
        }
    }

    /// Spends one message; `false` (and a strike) when the budget is empty.
    pub fn take(&mut self) -> bool {
        let now = Instant::now();
        let elapsed = now.duration_since(self.last_refill).as_secs_f64();
        self.last_refill = now;
        self.tokens = (self.tokens + elapsed * RATE_PER_SEC).min(RATE_BURST);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            self.strikes += 1;
            false
        }
    }

    /// Has the client gone over its budget so often that the socket should close?
    pub fn exhausted(&self) -> bool {
        self.strikes > RATE_STRIKES
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_burst_is_allowed_then_refused_then_refilled() {
        let mut budget = Budget::new();
        for _ in 0..RATE_BURST as usize {
            assert!(budget.take());
        }
        assert!(!budget.take());
        tokio::time::advance(Duration::from_secs(1)).await;
        for _ in 0..RATE_PER_SEC as usize {
            assert!(budget.take());
        }
        assert!(!budget.take());
    }

    #[tokio::test(start_paused = true)]
    async fn it_is_exhausted_after_more_strikes_than_tolerated() {
        let mut budget = Budget::new();
        while budget.take() {}
        for _ in 1..RATE_STRIKES {
            assert!(!budget.take());
        }
        assert!(!budget.exhausted());
        assert!(!budget.take());
        assert!(budget.exhausted());
    }
}
