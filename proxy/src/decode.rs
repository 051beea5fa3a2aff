//! Decoding a page the upstream sent gzip- or br-encoded although it was asked for identity, so
//! that the banner can be put into it. Bounded: one upstream read may decode to at most
//! [`MAX_DECODED_PER_READ`] bytes.
//!
//! Real HTML inflates 5 to 20 times, so a 64 KB read decodes to about a megabyte. A
//! decompression bomb inflates a thousandfold (gzip) or far more (brotli); the decoders write
//! into a sink that refuses to grow past the limit, so such a page is cut off while it is being
//! decoded, not after its output has been held in memory.

use std::io::{self, Write};

use bytes::Bytes;
use http::header;
use pingora::http::ResponseHeader;

/// Most bytes one upstream read of an encoded page may decode to.
pub const MAX_DECODED_PER_READ: usize = 16 * 1024 * 1024;

/// Why an encoded page cannot be decoded.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("the upstream's encoded page does not decode: {0}")]
    Invalid(io::Error),
    #[error("the upstream's encoded page inflates past {} MiB in one read", MAX_DECODED_PER_READ >> 20)]
    TooLarge,
}

impl DecodeError {
    /// The reason label of the skipped-banner metric.
    pub fn reason(&self) -> &'static str {
        match self {
            DecodeError::Invalid(_) => "decode_error",
            DecodeError::TooLarge => "decode_limit",
        }
    }

    /// Why the response is aborted, in a few words.
    pub fn summary(&self) -> &'static str {
        match self {
            DecodeError::Invalid(_) => "the upstream's encoded page does not decode",
            DecodeError::TooLarge => "the upstream's encoded page inflates too far",
        }
    }
}

/// The refusal [`Bounded`] gives; told apart from a corrupt stream by [`DecodeError::from`].
#[derive(Debug, thiserror::Error)]
#[error("decoded output over the limit")]
struct OverLimit;

impl From<io::Error> for DecodeError {
    fn from(error: io::Error) -> DecodeError {
        if error.get_ref().is_some_and(|inner| inner.is::<OverLimit>()) {
            DecodeError::TooLarge
        } else {
            DecodeError::Invalid(error)
        }
    }
}

/// The decoders' output for the current read, refusing to hold more than
/// [`MAX_DECODED_PER_READ`] bytes.
#[derive(Default)]
struct Bounded(Vec<u8>);

impl Write for Bounded {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.0.len() + buf.len() > MAX_DECODED_PER_READ {
            return Err(io::Error::other(OverLimit));
        }
        self.0.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// A `Content-Encoding` this proxy can undo.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    Gzip,
    Brotli,
}

impl Encoding {
    /// The encoding of a page's body: `Ok(None)` for identity, `Err(())` for a coding this
    /// proxy does not undo (zstd, deflate, a list of codings, anything unknown), which leaves
    /// the page as it is. Reads the header only; nothing is allocated.
    pub fn of(resp: &ResponseHeader) -> Result<Option<Encoding>, ()> {
        let Some(coding) = resp.headers.get(header::CONTENT_ENCODING) else {
            return Ok(None);
        };
        let coding = coding.to_str().map_err(|_| ())?.trim();
        // RFC 9110 §8.4.1.3: `x-gzip` is the same coding as `gzip`.
        if coding.eq_ignore_ascii_case("identity") {
            Ok(None)
        } else if coding.eq_ignore_ascii_case("gzip") || coding.eq_ignore_ascii_case("x-gzip") {
            Ok(Some(Encoding::Gzip))
        } else if coding.eq_ignore_ascii_case("br") {
            Ok(Some(Encoding::Brotli))
        } else {
            Err(())
        }
    }
}

/// A streaming decoder for one page.
pub struct Decoder(Coding);

/// Boxed: a decoder holds its window and state, and lives for one page only.
enum Coding {
    Gzip(Box<flate2::write::GzDecoder<Bounded>>),
    Brotli(Box<brotli_decompressor::DecompressorWriter<Bounded>>),
}

impl Decoder {
    pub fn new(encoding: Encoding) -> Decoder {
        Decoder(match encoding {
            Encoding::Gzip => {
                Coding::Gzip(Box::new(flate2::write::GzDecoder::new(Bounded::default())))
            }
            Encoding::Brotli => Coding::Brotli(Box::new(
                brotli_decompressor::DecompressorWriter::new(Bounded::default(), 0),
            )),
        })
    }

    /// Decodes the next read of the body; `end` checks that the stream is complete.
    pub fn decode(&mut self, input: &[u8], end: bool) -> Result<Bytes, DecodeError> {
        let sink = match &mut self.0 {
            Coding::Gzip(gzip) => {
                gzip.write_all(input)?;
                if end {
                    gzip.try_finish()?;
                }
                gzip.get_mut()
            }
            Coding::Brotli(brotli) => {
                brotli.write_all(input)?;
                if end {
                    brotli.close()?;
                }
                brotli.get_mut()
            }
        };
        Ok(Bytes::from(std::mem::take(&mut sink.0)))
    }

    /// Decoded bytes not yet handed out.
    #[cfg(test)]
    fn held(&mut self) -> usize {
        match &mut self.0 {
            Coding::Gzip(gzip) => gzip.get_mut().0.len(),
            Coding::Brotli(brotli) => brotli.get_mut().0.len(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn response(coding: Option<&str>) -> ResponseHeader {
        let mut resp = ResponseHeader::build(200, None).unwrap();
        if let Some(coding) = coding {
            resp.insert_header(header::CONTENT_ENCODING, coding)
                .unwrap();
        }
        resp
    }

    fn decoder(coding: &str) -> Decoder {
        Decoder::new(Encoding::of(&response(Some(coding))).unwrap().unwrap())
    }

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        enc.write_all(data).unwrap();
        enc.finish().unwrap()
    }

    fn brotli(data: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        brotli::CompressorWriter::new(&mut out, 4096, 5, 22)
            .write_all(data)
            .unwrap();
        out
    }

    /// Feeds `encoded` in reads of `read` bytes; the decoded bytes, or the first error.
    fn decode_in_reads(coding: &str, encoded: &[u8], read: usize) -> Result<Vec<u8>, DecodeError> {
        let mut decoder = decoder(coding);
        let mut out = Vec::new();
        let reads: Vec<&[u8]> = encoded.chunks(read).collect();
        for (i, piece) in reads.iter().enumerate() {
            out.extend_from_slice(&decoder.decode(piece, i + 1 == reads.len())?);
        }
        Ok(out)
    }

    #[test]
    fn codings_are_recognized_by_name_in_any_case() {
        let of = |coding| Encoding::of(&response(coding));
        assert_eq!(of(None), Ok(None));
        assert_eq!(of(Some("identity")), Ok(None));
        for coding in ["gzip", "GZIP", "x-gzip", " gzip "] {
            assert_eq!(of(Some(coding)), Ok(Some(Encoding::Gzip)), "{coding:?}");
        }
        for coding in ["br", "Br"] {
            assert_eq!(of(Some(coding)), Ok(Some(Encoding::Brotli)), "{coding:?}");
        }
        for coding in ["zstd", "deflate", "gzip, br", "compress", ""] {
            assert_eq!(of(Some(coding)), Err(()), "{coding:?}");
        }
    }

    #[test]
    fn a_page_split_across_reads_decodes_to_its_bytes() {
        let page: Vec<u8> = (0..200_000u32)
            .flat_map(|i| format!("<p>row {i}</p>\n").into_bytes())
            .take(300_000)
            .collect();
        for (coding, encoded) in [("gzip", gzip(&page)), ("br", brotli(&page))] {
            for read in [1, 7, 4096, encoded.len()] {
                let decoded = decode_in_reads(coding, &encoded, read).unwrap();
                assert!(decoded == page, "{coding} in reads of {read}");
            }
        }
    }

    #[test]
    fn a_truncated_or_corrupt_stream_is_an_error() {
        let page = b"<html><head></head><body>hello</body></html>".repeat(50);
        for (coding, encoded) in [("gzip", gzip(&page)), ("br", brotli(&page))] {
            let cut = &encoded[..encoded.len() / 2];
            let err = decode_in_reads(coding, cut, cut.len()).unwrap_err();
            assert_eq!(err.reason(), "decode_error", "{coding} truncated: {err}");
        }
        let err = decode_in_reads("gzip", b"not gzip at all", 64).unwrap_err();
        assert_eq!(err.reason(), "decode_error", "{err}");
    }

    #[test]
    fn a_read_that_inflates_past_the_limit_is_refused_while_decoding() {
        // A few tens of kilobytes that inflate to twice the limit.
        let bomb = vec![b' '; 2 * MAX_DECODED_PER_READ];
        for (coding, encoded) in [("gzip", gzip(&bomb)), ("br", brotli(&bomb))] {
            assert!(
                encoded.len() < 64 * 1024,
                "{coding}: {} bytes",
                encoded.len()
            );
            let mut decoder = decoder(coding);
            let err = decoder.decode(&encoded, true).unwrap_err();
            assert!(matches!(err, DecodeError::TooLarge), "{coding}: {err}");
            assert_eq!(err.reason(), "decode_limit");
            let held = decoder.held();
            assert!(held <= MAX_DECODED_PER_READ, "{coding} held {held} bytes");
        }
    }

    #[test]
    fn the_limit_is_per_read_so_a_large_page_in_many_reads_passes() {
        let page = vec![b'x'; MAX_DECODED_PER_READ + 1024 * 1024];
        let encoded = gzip(&page);
        // Reads small enough that none inflates past the limit on its own.
        let decoded = decode_in_reads("gzip", &encoded, 1024).unwrap();
        assert_eq!(decoded.len(), page.len());
    }
}
