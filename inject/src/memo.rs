//! Where the tag went in page heads already rewritten, so that a page whose head repeats byte
//! for byte (most pages of an app share a template) is not parsed again.
//!
//! The rewriter is deterministic: the same bytes from the start of a document, read in the same
//! encoding with the same settings, put the tag at the same offset whatever tag it is and
//! however the bytes were split into chunks. An entry is made only when the parser put the tag
//! in while reading the head itself, at the offset it reported, and its output was checked to
//! be exactly those bytes with the tag inserted there, so a hit gives the same bytes the parser
//! would have given. It answers only for the whole head it was made from
//! (up to and including the first `</head>`), compared byte for byte, never by hash alone.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{PoisonError, RwLock};

use lol_html::AsciiCompatibleEncoding;

/// Heads remembered at most, and the longest head remembered: at most 8 MB of heads.
pub const CAPACITY: usize = 1024;
pub(crate) const LONGEST_HEAD: usize = 8 * 1024;

/// What, besides its bytes, decides how a head is parsed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Reading {
    pub encoding: AsciiCompatibleEncoding,
    pub follow_meta_charset: bool,
}

#[derive(Debug, Clone, Copy)]
struct Spot {
    reading: Reading,
    /// Offset in the head at which the tag goes.
    at: usize,
}

/// Insertion points of heads already rewritten, shared by every [`crate::Injector`] given it.
/// Bounded: when full, a new head evicts an arbitrary one, so a site whose heads differ on every
/// request (a CSRF token in a `<meta>`) costs a lookup and an insert per page, never memory.
#[derive(Debug)]
pub struct HeadMemo {
    capacity: usize,
    spots: RwLock<HashMap<Box<[u8]>, Spot>>,
    hits: AtomicU64,
}

impl Default for HeadMemo {
    fn default() -> HeadMemo {
        HeadMemo::new(CAPACITY)
    }
}

impl HeadMemo {
    pub fn new(capacity: usize) -> HeadMemo {
        HeadMemo {
            capacity,
            spots: RwLock::new(HashMap::new()),
            hits: AtomicU64::new(0),
        }
    }

    /// Heads remembered now.
    pub fn len(&self) -> usize {
        self.spots
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Pages that skipped the parser because their head was remembered.
    pub fn hits(&self) -> u64 {
        self.hits.load(Ordering::Relaxed)
    }

    /// Where the tag goes in `head`, if this exact head was rewritten before, read the same way.
    pub(crate) fn spot(&self, reading: Reading, head: &[u8]) -> Option<usize> {
        let spots = self.spots.read().unwrap_or_else(PoisonError::into_inner);
        let spot = spots.get(head).filter(|spot| spot.reading == reading)?;
        self.hits.fetch_add(1, Ordering::Relaxed);
        Some(spot.at)
    }

    /// Remembers that the parser put `tag` at `at` in `head`, given its output `rewritten`:
    /// only when that output is exactly `head` with `tag` inserted there.
    pub(crate) fn remember(
        &self,
        reading: Reading,
        head: &[u8],
        at: usize,
        rewritten: &[u8],
        tag: &[u8],
    ) {
        if head.len() > LONGEST_HEAD
            || self.capacity == 0
            || !is_insertion(head, at, rewritten, tag)
        {
            return;
        }
        let mut spots = self.spots.write().unwrap_or_else(PoisonError::into_inner);
        if spots.len() >= self.capacity && !spots.contains_key(head) {
            if let Some(victim) = spots.keys().next().cloned() {
                spots.remove(&victim);
            }
        }
        spots.insert(head.into(), Spot { reading, at });
    }
}

/// Whether `rewritten` is `original` with `tag` inserted at `at`, and nothing else changed.
fn is_insertion(original: &[u8], at: usize, rewritten: &[u8], tag: &[u8]) -> bool {
    at <= original.len()
        && rewritten.len() == original.len() + tag.len()
        && rewritten[..at] == original[..at]
        && rewritten[at..at + tag.len()] == *tag
        && rewritten[at + tag.len()..] == original[at..]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reading() -> Reading {
        Reading {
            encoding: AsciiCompatibleEncoding::utf_8(),
            follow_meta_charset: false,
        }
    }

    #[test]
    fn only_a_pure_insertion_at_the_given_offset_counts() {
        assert!(is_insertion(b"<a></a>", 3, b"<a>TAG</a>", b"TAG"));
        assert!(is_insertion(b"ab", 0, b"TAGab", b"TAG"));
        assert!(is_insertion(b"ab", 2, b"abTAG", b"TAG"));
        assert!(!is_insertion(b"<a></a>", 2, b"<a>TAG</a>", b"TAG"));
        assert!(!is_insertion(b"<a></a>", 3, b"<a>TAG</b>", b"TAG"));
        assert!(!is_insertion(b"<a></a>", 3, b"<a>TAX</a>", b"TAG"));
        assert!(!is_insertion(b"<a></a>", 3, b"<a></a>", b"TAG"));
        assert!(!is_insertion(b"<a></a>", 3, b"<a>TAGG</a>", b"TAG"));
        assert!(!is_insertion(b"ab", 3, b"abTAG", b"TAG"));
    }

    #[test]
    fn a_head_answers_only_for_its_exact_bytes_and_reading() {
        let memo = HeadMemo::new(4);
        memo.remember(reading(), b"<head></head>", 6, b"<head>T</head>", b"T");
        assert_eq!(memo.spot(reading(), b"<head></head>"), Some(6));
        assert_eq!(memo.spot(reading(), b"<head> </head>"), None);
        assert_eq!(memo.spot(reading(), b"<head></head"), None);
        let latin1 = Reading {
            encoding: AsciiCompatibleEncoding::new(encoding_rs::WINDOWS_1252).unwrap(),
            follow_meta_charset: false,
        };
        assert_eq!(memo.spot(latin1, b"<head></head>"), None);
        let following = Reading {
            follow_meta_charset: true,
            ..reading()
        };
        assert_eq!(memo.spot(following, b"<head></head>"), None);
        assert_eq!(memo.hits(), 1);
    }

    #[test]
    fn a_rewrite_that_is_not_a_pure_insertion_is_not_remembered() {
        let memo = HeadMemo::new(4);
        memo.remember(reading(), b"<head></head>", 6, b"<head>X</head>", b"T");
        memo.remember(reading(), b"<head></head>", 5, b"<head>T</head>", b"T");
        assert!(memo.is_empty());
    }

    #[test]
    fn the_memo_stays_within_its_capacity_and_head_length() {
        let memo = HeadMemo::new(3);
        for i in 0..10 {
            let head = format!("<head><title>{i}</title></head>");
            let rewritten = head.replace("</head>", "T</head>");
            memo.remember(
                reading(),
                head.as_bytes(),
                head.len() - 7,
                rewritten.as_bytes(),
                b"T",
            );
            assert!(memo.len() <= 3);
        }
        let long = format!("<head>{}</head>", " ".repeat(LONGEST_HEAD));
        let rewritten = long.replace("</head>", "T</head>");
        let memo = HeadMemo::new(3);
        memo.remember(
            reading(),
            long.as_bytes(),
            long.len() - 7,
            rewritten.as_bytes(),
            b"T",
        );
        assert!(memo.is_empty());
    }
}
