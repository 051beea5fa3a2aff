//! How many connections one client address may hold open at once (`proxy.max_connections_per_client`).
//!
//! Why: every open connection costs a descriptor and a task, and the process has a fixed number
//! of descriptors. Without a per-client bound one address can take all of them, silently, and
//! no one else is served. The count is kept per address in a map whose entries exist only while
//! that address has a connection open, so the map never holds more entries than there are open
//! connections; a [`Permit`] decrements the count when the connection ends, however it ends.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::{Arc, Mutex};

/// Open connections per client. SipHash (std's default) rather than a fast hash: the keys are
/// chosen by whoever connects.
type Counts = Mutex<HashMap<IpAddr, u32>>;

/// The open connections per client address, and how many each may have.
pub struct ClientLimit {
    /// `None`: no limit, and no counting at all.
    max: Option<u32>,
    open: Arc<Counts>,
}

/// One admitted connection; gives its place back when dropped. It owns what it needs, so a
/// connection handed to a task of its own (a banner socket) takes its place along.
pub struct Permit {
    /// The counts and the key counted, or `None` when nothing was counted.
    counted: Option<(Arc<Counts>, IpAddr)>,
}

impl ClientLimit {
    pub fn new(max: Option<u32>) -> ClientLimit {
        ClientLimit {
            max,
            open: Arc::new(Mutex::new(HashMap::new())),
        }
    }

    /// Admits one more connection from `peer`, or refuses it (`None`) when that client already
    /// has the most it may. A connection whose address is unknown (not IP) is not counted.
    pub fn admit(&self, peer: Option<IpAddr>) -> Option<Permit> {
        let (Some(max), Some(peer)) = (self.max, peer) else {
            return Some(Permit { counted: None });
        };
        let key = client_key(peer);
        // A poisoned lock only means another connection panicked while counting; the counts
        // themselves are still whole numbers, so carry on with them.
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        let count = open.entry(key).or_insert(0);
        if *count >= max {
            if *count == 0 {
                open.remove(&key);
            }
            return None;
        }
        *count += 1;
        Some(Permit {
            counted: Some((Arc::clone(&self.open), key)),
        })
    }

    /// How many clients have a connection open (the map's size).
    #[cfg(test)]
    fn clients(&self) -> usize {
        self.open.lock().map(|o| o.len()).unwrap_or(0)
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        let Some((open, key)) = self.counted.take() else {
            return;
        };
        let mut open = open.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(count) = open.get_mut(&key) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                open.remove(&key);
            }
        }
    }
}

/// What one client is counted as: its IPv4 address (an IPv4 address mapped into IPv6 included),
/// or the /64 its IPv6 address is in, since one host usually has a whole /64 to pick from.
fn client_key(peer: IpAddr) -> IpAddr {
    match peer {
        IpAddr::V4(v4) => IpAddr::V4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(Ipv6Addr::from_bits(v6.to_bits() & !((1u128 << 64) - 1))),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> Option<IpAddr> {
        Some(s.parse().unwrap())
    }

    #[test]
    fn a_client_gets_at_most_its_limit_and_a_closed_connection_makes_room() {
        let limit = ClientLimit::new(Some(2));
        let a = limit.admit(ip("10.0.0.1")).expect("first");
        let b = limit.admit(ip("10.0.0.1")).expect("second");
        assert!(limit.admit(ip("10.0.0.1")).is_none());
        // Another client is not affected.
        let other = limit.admit(ip("10.0.0.2")).expect("another client");
        drop(a);
        let c = limit.admit(ip("10.0.0.1")).expect("room again");
        assert!(limit.admit(ip("10.0.0.1")).is_none());
        drop((b, c, other));
        assert_eq!(limit.clients(), 0, "no entry outlives its connections");
    }

    #[test]
    fn refused_clients_leave_no_entry_behind() {
        let limit = ClientLimit::new(Some(1));
        let held = limit.admit(ip("10.0.0.1")).expect("first");
        for _ in 0..10 {
            assert!(limit.admit(ip("10.0.0.1")).is_none());
        }
        assert_eq!(limit.clients(), 1);
        drop(held);
        assert_eq!(limit.clients(), 0);
    }

    #[test]
    fn no_limit_counts_nothing() {
        let limit = ClientLimit::new(None);
        let permits: Vec<_> = (0..1000)
            .map(|_| limit.admit(ip("10.0.0.1")).expect("unlimited"))
            .collect();
        assert_eq!(limit.clients(), 0);
        drop(permits);
        let unknown = ClientLimit::new(Some(1));
        let _a = unknown.admit(None).expect("no address");
        let _b = unknown.admit(None).expect("no address, not counted");
        assert_eq!(unknown.clients(), 0);
    }

    #[test]
    fn ipv6_clients_are_counted_by_their_64_and_mapped_ipv4_as_ipv4() {
        let limit = ClientLimit::new(Some(1));
        let _a = limit.admit(ip("2001:db8:1:2::1")).expect("first");
        assert!(limit.admit(ip("2001:db8:1:2:ffff::9")).is_none());
        let _b = limit.admit(ip("2001:db8:1:3::1")).expect("another /64");
        let _c = limit.admit(ip("192.0.2.7")).expect("ipv4");
        assert!(limit.admit(ip("::ffff:192.0.2.7")).is_none());
    }
}
