//! One resource's wait queue in the memory store: who waits, in order, and the standing offer.
//!
//! Plain data with the operations `MemoryLockStore` composes under its mutex; it never reads a
//! clock (every call is given `now`) and knows nothing about locks or events, so the memory
//! store decides when a resource is free and what to announce.

use std::collections::VecDeque;
use std::time::Duration;

use tokio::time::Instant;

use crate::lock::{Holder, Offer, QueueState, UnixMillis};

/// One person in line.
#[derive(Debug, Clone)]
struct Waiter {
    holder: Holder,
    /// `holder.owner_key()`, kept so comparisons do not allocate.
    owner: String,
    /// The entry lapses here unless refreshed by joining again.
    expires: Instant,
    ttl: Duration,
    /// How long the resource is reserved for this waiter when its turn comes.
    offer: Duration,
}

/// The head of the line, with the resource reserved for it.
#[derive(Debug, Clone)]
struct Reservation {
    waiter: Waiter,
    until: Instant,
    until_ms: UnixMillis,
}

/// What [`Queue::join`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Join {
    /// Already waiting; the entry was refreshed and keeps its place.
    Refreshed,
    /// Added at the back.
    Joined,
    /// The owner holds the offer; nothing changed.
    Offered,
    /// `max` already wait; nothing changed.
    Full,
}

#[derive(Debug, Default)]
pub(crate) struct Queue {
    waiting: VecDeque<Waiter>,
    offer: Option<Reservation>,
}

impl Queue {
    /// Nothing waits and nothing is offered: the queue can be forgotten.
    pub fn is_empty(&self) -> bool {
        self.waiting.is_empty() && self.offer.is_none()
    }

    pub fn len(&self) -> usize {
        self.waiting.len()
    }

    /// Drops entries whose time-to-live ran out; whether any did.
    pub fn prune(&mut self, now: Instant) -> bool {
        let before = self.waiting.len();
        self.waiting.retain(|waiter| waiter.expires > now);
        self.waiting.len() != before
    }

    /// Ends an offer whose time is up; whether one did. Its owner leaves the line.
    pub fn lapse_offer(&mut self, now: Instant) -> bool {
        let lapsed = self.offer.as_ref().is_some_and(|offer| offer.until <= now);
        if lapsed {
            self.offer = None;
        }
        lapsed
    }

    /// The offer, when it stands for someone other than `owner`.
    pub fn offer_for_other(&self, owner: &str) -> Option<Offer> {
        self.offer
            .as_ref()
            .filter(|offer| offer.waiter.owner != owner)
            .map(Reservation::public)
    }

    pub fn join(
        &mut self,
        holder: &Holder,
        owner: &str,
        now: Instant,
        ttl: Duration,
        offer: Duration,
        max: usize,
    ) -> Join {
        if self.offer.as_ref().is_some_and(|o| o.waiter.owner == owner) {
            return Join::Offered;
        }
        if let Some(i) = self.waiting.iter().position(|w| w.owner == owner) {
            let waiter = &mut self.waiting[i];
            waiter.expires = now + ttl;
            waiter.ttl = ttl;
            waiter.offer = offer;
            waiter.holder = holder.clone();
            return Join::Refreshed;
        }
        if self.waiting.len() >= max {
            return Join::Full;
        }
        self.waiting.push_back(Waiter {
            holder: holder.clone(),
            owner: owner.to_owned(),
            expires: now + ttl,
            ttl,
            offer,
        });
        Join::Joined
    }

    /// The 1-based place of `owner` among those waiting.
    pub fn position(&self, owner: &str) -> Option<usize> {
        self.waiting
            .iter()
            .position(|w| w.owner == owner)
            .map(|i| i + 1)
    }

    /// Takes `owner` out of the line and out of the offer: whether it waited, and whether it
    /// held the offer (which is then declined).
    pub fn leave(&mut self, owner: &str) -> (bool, bool) {
        let before = self.waiting.len();
        self.waiting.retain(|w| w.owner != owner);
        let waited = self.waiting.len() != before;
        let declined = self.offer.as_ref().is_some_and(|o| o.waiter.owner == owner);
        if declined {
            self.offer = None;
        }
        (waited, declined)
    }

    /// Offers the resource to the head of the line, if anyone waits and no offer stands.
    /// Returns the offer's deadline. `at` is `now` in Unix milliseconds.
    pub fn offer_head(&mut self, now: Instant, at: UnixMillis) -> Option<Instant> {
        if self.offer.is_some() {
            return None;
        }
        let waiter = self.waiting.pop_front()?;
        let until = now + waiter.offer;
        let until_ms = at.saturating_add(u64::try_from(waiter.offer.as_millis()).unwrap_or(0));
        self.offer = Some(Reservation {
            waiter,
            until,
            until_ms,
        });
        Some(until)
    }

    /// A take-over jumped the queue: a standing offer goes back to the head of the line, so the
    /// person it was made to is first again once the resource is free. Whether one stood.
    pub fn withdraw_offer(&mut self, now: Instant) -> bool {
        let Some(Reservation { mut waiter, .. }) = self.offer.take() else {
            return false;
        };
        waiter.expires = now + waiter.ttl;
        self.waiting.push_front(waiter);
        true
    }

    pub fn state(&self) -> QueueState {
        QueueState {
            waiting: self.waiting.iter().map(|w| w.holder.clone()).collect(),
            offer: self.offer.as_ref().map(Reservation::public),
        }
    }
}

impl Reservation {
    fn public(&self) -> Offer {
        Offer {
            holder: self.waiter.holder.clone(),
            until: self.until_ms,
        }
    }
}
