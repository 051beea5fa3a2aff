//! What the injector test files share: the tag, and rewriting a document chunk by chunk.

use bytes::Bytes;
use inject::{Injector, Placement};

pub const TAG: &str = r#"<script src="/_latch/banner.js" defer></script>"#;

/// Feeds `chunks` through an injector at `placement` and returns the whole output, checking
/// that the finished document carries the tag.
pub fn rewrite_chunks<'a>(
    placement: Placement,
    charset: Option<&str>,
    tag: &str,
    chunks: impl IntoIterator<Item = &'a [u8]>,
) -> Vec<u8> {
    let mut injector = Injector::new(tag.to_owned(), charset, placement).unwrap();
    let mut out = Vec::new();
    for chunk in chunks {
        out.extend_from_slice(&injector.write(Bytes::copy_from_slice(chunk)).unwrap());
    }
    out.extend_from_slice(&injector.finish().unwrap());
    assert!(injector.injected(), "finished document must carry the tag");
    out
}
