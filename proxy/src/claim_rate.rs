//! How fast one user may make new claims on this proxy instance (`locks.claims_per_minute`).
//!
//! A token bucket per user id: it holds at most a minute's worth of claims and refills at the
//! configured rate. A request asks [`ClaimRate::wait`] before it goes to the lock store, which
//! takes nothing, and only a claim the store granted as new takes a token
//! ([`ClaimRate::took`]): renewals of locks already held, and refusals, never cost one. While a
//! user's bucket is empty, their claims go to the store with a cap of zero new locks, so a
//! renewal still passes and a new claim is refused. Concurrent first claims of one user may
//! each see the last token, so a burst can exceed the rate by the claims in flight.
//!
//! Per instance, not shared: behind a load balancer spreading one user over N instances, the
//! rate a user gets is up to N times the setting. The store's `max_per_user` is the bound that
//! holds across instances; this one slows a single client down.
//!
//! Memory is bounded: at most [`MAX_USERS`] buckets. When full, buckets that have refilled
//! (those users are back to a full minute anyway) are dropped; if none has, all are.
//! [`governor`](https://docs.rs/governor) was not used: its keyed limiter consumes on every
//! check and has no way to ask without taking, which a renewal must not pay for.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

/// Most users with a bucket at once.
pub const MAX_USERS: usize = 100_000;

pub struct ClaimRate {
    /// `None`: no limit, and nothing is kept.
    per_minute: Option<u32>,
    buckets: Mutex<HashMap<String, Bucket, foldhash::fast::RandomState>>,
}

#[derive(Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

impl ClaimRate {
    pub fn new(per_minute: Option<u32>) -> Self {
        Self {
            per_minute,
            buckets: Mutex::new(HashMap::default()),
        }
    }

    /// How long `user` must wait before a new claim, or `None` if they may claim now. Takes
    /// nothing.
    pub fn wait(&self, user: &str) -> Option<Duration> {
        self.wait_at(user, Instant::now())
    }

    /// Counts one new claim `user` was granted.
    pub fn took(&self, user: &str) {
        self.took_at(user, Instant::now());
    }

    fn wait_at(&self, user: &str, now: Instant) -> Option<Duration> {
        let per_minute = f64::from(self.per_minute?);
        let buckets = self.buckets.lock().unwrap_or_else(PoisonError::into_inner);
        let tokens = buckets.get(user)?.tokens_at(now, per_minute);
        if tokens >= 1.0 {
            return None;
        }
        Some(Duration::from_secs_f64((1.0 - tokens) * 60.0 / per_minute))
    }

    fn took_at(&self, user: &str, now: Instant) {
        let Some(per_minute) = self.per_minute.map(f64::from) else {
            return;
        };
        let mut buckets = self.buckets.lock().unwrap_or_else(PoisonError::into_inner);
        if !buckets.contains_key(user) && buckets.len() >= MAX_USERS {
            buckets.retain(|_, bucket| bucket.tokens_at(now, per_minute) < per_minute);
            if buckets.len() >= MAX_USERS {
                buckets.clear();
            }
        }
        let bucket = buckets.entry(user.to_owned()).or_insert(Bucket {
            tokens: per_minute,
            at: now,
        });
        // Claims in flight past an empty bucket push the next one further out, but never by
        // more than a minute.
        let tokens = (bucket.tokens_at(now, per_minute) - 1.0).max(-per_minute);
        *bucket = Bucket { tokens, at: now };
    }
}

impl Bucket {
    fn tokens_at(self, now: Instant, per_minute: f64) -> f64 {
        let refill = now.saturating_duration_since(self.at).as_secs_f64() * per_minute / 60.0;
        (self.tokens + refill).min(per_minute)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_minutes_claims_then_one_per_interval() {
        let rate = ClaimRate::new(Some(3));
        let t0 = Instant::now();
        for _ in 0..3 {
            assert_eq!(rate.wait_at("alice", t0), None);
            rate.took_at("alice", t0);
        }
        let wait = rate.wait_at("alice", t0).expect("the bucket is empty");
        assert_eq!(wait, Duration::from_secs(20));
        assert_eq!(rate.wait_at("bob", t0), None);
        let later = t0 + Duration::from_secs(20);
        assert_eq!(rate.wait_at("alice", later), None);
        rate.took_at("alice", later);
        assert!(rate.wait_at("alice", later).is_some());
    }

    #[test]
    fn asking_takes_nothing() {
        let rate = ClaimRate::new(Some(1));
        let t0 = Instant::now();
        for _ in 0..10 {
            assert_eq!(rate.wait_at("alice", t0), None);
        }
        rate.took_at("alice", t0);
        assert!(rate.wait_at("alice", t0).is_some());
    }

    #[test]
    fn off_keeps_nothing() {
        let rate = ClaimRate::new(None);
        rate.took("alice");
        assert_eq!(rate.wait("alice"), None);
        assert!(rate.buckets.lock().unwrap().is_empty());
    }

    #[test]
    fn claims_past_an_empty_bucket_wait_at_most_a_minute_more() {
        let rate = ClaimRate::new(Some(2));
        let t0 = Instant::now();
        for _ in 0..10 {
            rate.took_at("alice", t0);
        }
        let wait = rate.wait_at("alice", t0).expect("the bucket is empty");
        assert_eq!(wait, Duration::from_secs(90));
    }

    #[test]
    fn the_map_is_bounded() {
        let rate = ClaimRate::new(Some(60));
        let t0 = Instant::now();
        for i in 0..MAX_USERS {
            rate.took_at(&format!("u{i}"), t0);
        }
        // A second later every bucket has refilled, so they make room for the next user.
        rate.took_at("late", t0 + Duration::from_secs(1));
        let buckets = rate.buckets.lock().unwrap();
        assert_eq!(buckets.len(), 1);
        assert!(buckets.contains_key("late"));
    }
}
