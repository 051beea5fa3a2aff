//! Just enough DER to read the public-key structures Latch accepts: SubjectPublicKeyInfo,
//! PKCS#1 RSAPublicKey and the public key inside an X.509 certificate.
//!
//! It reads definite-length, single-byte-tag elements and nothing more; anything else is
//! reported as malformed rather than guessed at.

pub(crate) const INTEGER: u8 = 0x02;
pub(crate) const BIT_STRING: u8 = 0x03;
pub(crate) const OBJECT_ID: u8 = 0x06;
pub(crate) const SEQUENCE: u8 = 0x30;
/// `[0] EXPLICIT`, used for the version field of an X.509 TBSCertificate.
pub(crate) const CONTEXT_0: u8 = 0xa0;

/// Walks a run of DER elements one at a time.
pub(crate) struct Reader<'a> {
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    pub(crate) fn new(input: &'a [u8]) -> Self {
        Reader { rest: input }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.rest.is_empty()
    }

    /// The next element's tag and contents, or `None` when the input is exhausted or broken.
    pub(crate) fn next_element(&mut self) -> Option<(u8, &'a [u8])> {
        let (&tag, after_tag) = self.rest.split_first()?;
        if tag & 0x1f == 0x1f {
            return None;
        }
        let (&first, after_len) = after_tag.split_first()?;
        let (len, body) = if first < 0x80 {
            (usize::from(first), after_len)
        } else {
            let count = usize::from(first & 0x7f);
            if count == 0 || count > 4 || after_len.len() < count {
                return None;
            }
            let (len_bytes, body) = after_len.split_at(count);
            let len = len_bytes
                .iter()
                .fold(0usize, |acc, b| (acc << 8) | usize::from(*b));
            (len, body)
        };
        if body.len() < len {
            return None;
        }
        let (contents, rest) = body.split_at(len);
        self.rest = rest;
        Some((tag, contents))
    }

    /// The next element's contents if it carries `tag`.
    pub(crate) fn expect(&mut self, tag: u8) -> Option<&'a [u8]> {
        match self.next_element()? {
            (found, contents) if found == tag => Some(contents),
            _ => None,
        }
    }
}

/// The contents of a DER element that must be the whole input.
pub(crate) fn single(input: &[u8], tag: u8) -> Option<&[u8]> {
    let mut reader = Reader::new(input);
    let contents = reader.expect(tag)?;
    reader.is_empty().then_some(contents)
}

/// The bytes of a BIT STRING whose length is a whole number of bytes, as keys always are.
pub(crate) fn bit_string_bytes(contents: &[u8]) -> Option<&[u8]> {
    match contents.split_first()? {
        (0, bytes) => Some(bytes),
        _ => None,
    }
}

/// Dotted form of an encoded object identifier, for messages about unsupported keys.
pub(crate) fn oid_to_string(encoded: &[u8]) -> String {
    let mut arcs: Vec<u64> = Vec::new();
    let mut value: u64 = 0;
    for &byte in encoded {
        value = (value << 7) | u64::from(byte & 0x7f);
        if byte & 0x80 == 0 {
            if arcs.is_empty() {
                let first = (value / 40).min(2);
                arcs.push(first);
                arcs.push(value - first * 40);
            } else {
                arcs.push(value);
            }
            value = 0;
        }
    }
    arcs.iter()
        .map(u64::to_string)
        .collect::<Vec<_>>()
        .join(".")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_short_and_long_lengths() {
        let mut long = vec![SEQUENCE, 0x81, 0x80];
        long.extend(std::iter::repeat_n(7u8, 0x80));
        let mut reader = Reader::new(&long);
        let (tag, body) = reader.next_element().unwrap();
        assert_eq!((tag, body.len()), (SEQUENCE, 0x80));
        assert!(reader.is_empty());

        assert_eq!(single(&[INTEGER, 1, 5], INTEGER), Some(&[5u8][..]));
    }

    #[test]
    fn refuses_truncated_indefinite_and_trailing_input() {
        assert_eq!(Reader::new(&[SEQUENCE, 5, 1, 2]).next_element(), None);
        assert_eq!(Reader::new(&[SEQUENCE, 0x80, 0, 0]).next_element(), None);
        assert_eq!(
            Reader::new(&[SEQUENCE, 0x85, 1, 1, 1, 1, 1]).next_element(),
            None
        );
        assert_eq!(Reader::new(&[0x1f, 1, 0]).next_element(), None);
        assert_eq!(single(&[INTEGER, 1, 5, 0], INTEGER), None);
        assert_eq!(single(&[INTEGER, 1, 5], SEQUENCE), None);
    }

    #[test]
    fn bit_strings_must_be_byte_aligned() {
        assert_eq!(bit_string_bytes(&[0, 9, 9]), Some(&[9u8, 9][..]));
        assert_eq!(bit_string_bytes(&[3, 9]), None);
        assert_eq!(bit_string_bytes(&[]), None);
    }

    #[test]
    fn formats_oids() {
        assert_eq!(
            oid_to_string(&[0x2b, 0x81, 0x04, 0x00, 0x23]),
            "1.3.132.0.35"
        );
        assert_eq!(
            oid_to_string(&[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01]),
            "1.2.840.10045.2.1"
        );
    }
}
