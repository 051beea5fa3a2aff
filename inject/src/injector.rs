//! The streaming rewriter that inserts the banner tag into one HTML document.
//!
//! It sees the document as a token stream (lol_html), never as raw bytes, so an end tag inside
//! a comment, a script, an attribute value or split across two network chunks is handled the
//! way a browser would handle it. It keeps no more of the page than the token being parsed.
//! It must not know where the bytes come from or how they are framed or compressed.
//!
//! With [`Placement::Head`] it stops parsing as soon as the tag is in and hands every later
//! byte back untouched, so a page costs the parse of its head, not of its whole length.

use std::borrow::Cow;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, LazyLock, Mutex, PoisonError};

use bytes::{Bytes, BytesMut};
use encoding_rs::Encoding;
use lol_html::errors::RewritingError;
use lol_html::html_content::{ContentType, DocumentEnd, EndTag};
use lol_html::send::{
    DocumentContentHandlers, ElementContentHandlers, EndTagHandler, HtmlRewriter, Settings,
};
use lol_html::{AsciiCompatibleEncoding, OutputSink, Selector};

use crate::memo::{HeadMemo, Reading, LONGEST_HEAD};

/// Why a document cannot be (or can no longer be) rewritten.
#[derive(Debug, thiserror::Error)]
pub enum InjectError {
    /// The charset is unknown or not ASCII-compatible (UTF-16, ISO-2022-JP, …). Tokenizing such
    /// bytes as ASCII would corrupt the page, so the caller must pass the body through untouched.
    #[error("cannot rewrite HTML in charset {0:?}")]
    Encoding(String),
    /// The HTML rewriter failed; the document cannot be completed by this injector.
    #[error("HTML rewriting failed: {0}")]
    Rewrite(#[from] RewritingError),
    /// `write` or `finish` was called after `finish` or after an error.
    #[error("the injector has already finished")]
    Finished,
}

/// Where the tag goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Placement {
    /// Before `</head>`; before the body's first child when the head end tag is omitted; at the
    /// end of the document when there is neither. After the page's own `<meta charset>` and
    /// `<meta http-equiv="Content-Security-Policy">`, which therefore apply to the tag. The rest
    /// of the document is passed through unparsed.
    #[default]
    Head,
    /// Before the end tag that closes the body, or at the end of the document when there is
    /// none. Every byte of the page is parsed.
    BodyEnd,
}

/// How much of a chunk is parsed at a time while the tag is not in yet, so that the parse
/// stops shortly after the insertion point instead of at the end of a large network chunk.
/// The first slice is small, because most heads end early, and each next one doubles up to
/// the largest, because each write into the rewriter has a cost of its own.
const FIRST_SLICE: usize = 256;
const LARGEST_SLICE: usize = 1024;

type Output = Arc<Mutex<BytesMut>>;

/// Collects what the rewriter emits until the caller takes it after each call.
struct Sink(Output);

impl OutputSink for Sink {
    fn handle_chunk(&mut self, chunk: &[u8]) {
        // Nothing panics while the buffer is held, and plain bytes stay valid even if it did.
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .extend_from_slice(chunk);
    }
}

/// Rewrites one HTML document, chunk by chunk, inserting the banner tag exactly once at its
/// [`Placement`]; at the end of the document when that point never comes (a browser moves
/// content after `</html>` into the body, so the script still runs there).
///
/// `Send + Sync`, so it can live in a pingora request context. lol_html's rewriter is only
/// `Send` (its handlers are `FnMut`), so it sits behind a `Mutex` that is never locked: every
/// use goes through `&mut self` and `Mutex::get_mut`. It is built on the first byte that must
/// be parsed, so a page whose head is remembered (see [`HeadMemo`]) never builds one.
pub struct Injector {
    stage: Stage,
    tag: Arc<str>,
    reading: Reading,
    output: Output,
    injected: Arc<AtomicBool>,
    /// Where in the source document the parser put the tag, when it was in an element's place.
    inserted_at: Arc<AtomicUsize>,
    placement: Placement,
    /// The tag is in and the rewriter flushed: every later byte passes through as it is.
    passing_through: bool,
    /// How many bytes the next slice parses (see [`FIRST_SLICE`]).
    slice: usize,
    /// Nothing of the document has been fed yet: a head seen from here may be looked up in, or
    /// added to, the memo.
    at_start: bool,
    memo: Option<Arc<HeadMemo>>,
    /// The tag went in at a remembered offset: nothing was parsed.
    remembered: bool,
}

enum Stage {
    /// No byte parsed yet; the rewriter is built when one must be.
    Ready,
    Parsing(Box<Mutex<HtmlRewriter<'static, Sink>>>),
    /// Ended, failed, or never needed.
    Spent,
}

impl Injector {
    /// Prepares to rewrite a document whose bytes are in `charset` (the `charset` parameter of
    /// its `Content-Type`, a WHATWG encoding label).
    ///
    /// Without a charset the document is read as UTF-8 and a `<meta charset>` in it is honoured,
    /// as a browser would, for a tag that is not pure ASCII (an ASCII tag is written the same in
    /// every encoding the rewriter accepts). Only the structure is parsed, so any
    /// ASCII-compatible encoding is rewritten byte-exactly; `tag_html` is written in the
    /// document's encoding.
    pub fn new(
        tag_html: String,
        charset: Option<&str>,
        placement: Placement,
    ) -> Result<Injector, InjectError> {
        let encoding = match charset {
            None => AsciiCompatibleEncoding::utf_8(),
            Some(label) => encoding_for_label(label)?,
        };
        // lol_html follows a `<meta charset>` only to write inserted content in the page's
        // encoding, which an ASCII tag does not need: it is the same bytes in every
        // ASCII-compatible encoding. Following it costs a selector compiled for every page.
        let follow_meta_charset = charset.is_none() && !tag_html.is_ascii();
        Ok(Injector {
            stage: Stage::Ready,
            tag: tag_html.into(),
            reading: Reading {
                encoding,
                follow_meta_charset,
            },
            output: Output::default(),
            injected: Arc::new(AtomicBool::new(false)),
            inserted_at: Arc::new(AtomicUsize::new(NOT_PLACED)),
            placement,
            passing_through: false,
            slice: FIRST_SLICE,
            at_start: true,
            memo: None,
            remembered: false,
        })
    }

    /// Looks the page's head up in `memo`, and adds it there once parsed: a head seen before
    /// gets the tag at the same offset without being parsed again. Only [`Placement::Head`]
    /// uses it; at [`Placement::BodyEnd`] every byte is parsed anyway.
    pub fn remembering(mut self, memo: Arc<HeadMemo>) -> Injector {
        if self.placement == Placement::Head {
            self.memo = Some(memo);
        }
        self
    }

    fn build_rewriter(&self) -> HtmlRewriter<'static, Sink> {
        let shared = Point {
            tag: Arc::clone(&self.tag),
            injected: Arc::clone(&self.injected),
            inert: Arc::new(AtomicUsize::new(0)),
            at: Arc::clone(&self.inserted_at),
        };
        // A `</body>` inside a template or SVG/MathML content still ends lol_html's body, but a
        // browser would not run a script placed there. lol_html runs the inner element's
        // handler first, with the `</body>` token; such an element is then never counted as
        // left, so the body handler declines and the tag goes at the very end instead.
        let inert_start = Arc::clone(&shared.inert);
        let inert = handler(&INERT, move |el| {
            let name = el.tag_name();
            // Self-closed foreign elements have no end tag and hold nothing.
            if let Some(handlers) = el.end_tag_handlers() {
                inert_start.fetch_add(1, Ordering::Relaxed);
                let depth = Arc::clone(&inert_start);
                let leave: EndTagHandler<'static> = Box::new(move |end: &mut EndTag<'_>| {
                    if end.name().eq_ignore_ascii_case(&name) {
                        depth.fetch_sub(1, Ordering::Relaxed);
                    }
                    Ok(())
                });
                handlers.push(leave);
            }
            Ok(())
        });

        let point = match self.placement {
            Placement::Head => head_end(&shared),
            Placement::BodyEnd => vec![before_end_tag_of(&BODY, shared.share())],
        };

        let end_injected = Arc::clone(&shared.injected);
        let end_tag = Arc::clone(&shared.tag);
        let document_end =
            DocumentContentHandlers::default().end(move |end: &mut DocumentEnd<'_>| {
                if !end_injected.swap(true, Ordering::Relaxed) {
                    end.append(&end_tag, ContentType::Html);
                }
                Ok(())
            });

        let settings = Settings {
            element_content_handlers: std::iter::once(inert).chain(point).collect(),
            document_content_handlers: vec![document_end],
            encoding: self.reading.encoding,
            // Strict mode aborts on rare ambiguous markup, which would cut the page off
            // mid-stream. The worst a misparse can do here is make the banner tag inert.
            strict: false,
            adjust_charset_on_meta_tag: self.reading.follow_meta_charset,
            ..Settings::new_send()
        };
        HtmlRewriter::new(settings, Sink(Arc::clone(&self.output)))
    }

    /// Feeds the next chunk of the document and returns the rewritten output produced so far
    /// (possibly empty while a tag is still incomplete). Once the tag is in at
    /// [`Placement::Head`], chunks come back as they are, without a copy.
    ///
    /// After an error the injector is spent: later calls return [`InjectError::Finished`].
    pub fn write(&mut self, chunk: Bytes) -> Result<Bytes, InjectError> {
        if self.passing_through {
            return Ok(chunk);
        }
        if self.placement == Placement::BodyEnd {
            self.feed(&chunk)?;
            return Ok(self.take_output());
        }
        // The whole head, when this chunk starts the document and holds its first `</head>`.
        let head = match &self.memo {
            // No longer head is remembered, so the search stops there too.
            Some(memo) if self.at_start => {
                past_head_end_tag(&chunk, 0, chunk.len().min(LONGEST_HEAD))
                    .filter(|&end| end <= LONGEST_HEAD)
                    .map(|end| (Arc::clone(memo), end))
            }
            _ => None,
        };
        if let Some((memo, end)) = &head {
            if let Some(at) = memo.spot(self.reading, &chunk[..*end]) {
                return Ok(self.insert_remembered(&chunk, at));
            }
        }
        let mut at = 0;
        while at < chunk.len() {
            let limit = (at + self.slice).min(chunk.len());
            let end = past_head_end_tag(&chunk, at, limit).unwrap_or(limit);
            self.feed(&chunk[at..end])?;
            at = end;
            self.slice = (self.slice * 2).min(LARGEST_SLICE);
            if self.injected() {
                // Flush what lol_html still holds (at most the token it was reading), then
                // append the rest of this chunk unparsed.
                self.end_rewriter()?;
                self.passing_through = true;
                let mut out = self.take_output_mut();
                if let Some((memo, end)) = head {
                    // The parser placed the tag on reading this very head, so these bytes
                    // alone decide where it goes.
                    if end == at {
                        let placed = self.inserted_at.load(Ordering::Relaxed);
                        memo.remember(
                            self.reading,
                            &chunk[..at],
                            placed,
                            &out,
                            self.tag.as_bytes(),
                        );
                    }
                }
                if out.is_empty() {
                    return Ok(chunk.slice(at..));
                }
                out.extend_from_slice(&chunk[at..]);
                return Ok(out.freeze());
            }
        }
        Ok(self.take_output())
    }

    /// The chunk with the tag at `at`, as the parser put it in this same head before.
    fn insert_remembered(&mut self, chunk: &[u8], at: usize) -> Bytes {
        let mut out = BytesMut::with_capacity(chunk.len() + self.tag.len());
        out.extend_from_slice(&chunk[..at]);
        out.extend_from_slice(self.tag.as_bytes());
        out.extend_from_slice(&chunk[at..]);
        self.injected.store(true, Ordering::Relaxed);
        self.stage = Stage::Spent;
        self.at_start = false;
        self.passing_through = true;
        self.remembered = true;
        out.freeze()
    }

    /// Ends the document and returns the remaining output, including the tag if its insertion
    /// point never came.
    pub fn finish(&mut self) -> Result<Bytes, InjectError> {
        if self.passing_through {
            self.passing_through = false;
            return Ok(Bytes::new());
        }
        self.end_rewriter()?;
        Ok(self.take_output())
    }

    /// Whether the tag went in at the offset [`HeadMemo`] remembered for this head, without
    /// parsing the page.
    pub fn remembered(&self) -> bool {
        self.remembered
    }

    /// Whether the tag is in and later chunks pass through untouched.
    pub fn passing_through(&self) -> bool {
        self.passing_through
    }

    fn feed(&mut self, bytes: &[u8]) -> Result<(), InjectError> {
        if bytes.is_empty() && !matches!(self.stage, Stage::Spent) {
            return Ok(());
        }
        if matches!(self.stage, Stage::Ready) {
            self.stage = Stage::Parsing(Box::new(Mutex::new(self.build_rewriter())));
        }
        let Stage::Parsing(rewriter) = &mut self.stage else {
            return Err(InjectError::Finished);
        };
        self.at_start = false;
        let written = rewriter
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner)
            .write(bytes);
        if let Err(error) = written {
            // lol_html panics if a failed rewriter is used again.
            self.stage = Stage::Spent;
            return Err(error.into());
        }
        Ok(())
    }

    fn end_rewriter(&mut self) -> Result<(), InjectError> {
        if matches!(self.stage, Stage::Ready) {
            // Nothing was fed: the document is empty, and still gets its tag at its end.
            self.stage = Stage::Parsing(Box::new(Mutex::new(self.build_rewriter())));
        }
        let Stage::Parsing(rewriter) = std::mem::replace(&mut self.stage, Stage::Spent) else {
            return Err(InjectError::Finished);
        };
        rewriter
            .into_inner()
            .unwrap_or_else(PoisonError::into_inner)
            .end()?;
        Ok(())
    }

    /// Whether the tag has been written into the output.
    pub fn injected(&self) -> bool {
        self.injected.load(Ordering::Relaxed)
    }

    fn take_output(&self) -> Bytes {
        self.take_output_mut().freeze()
    }

    fn take_output_mut(&self) -> BytesMut {
        self.output
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .split()
    }
}

impl std::fmt::Debug for Injector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Injector")
            .field("finished", &matches!(self.stage, Stage::Spent))
            .field("injected", &self.injected())
            .field("placement", &self.placement)
            .finish_non_exhaustive()
    }
}

/// Just past the first `</head>` (any case, any attributes) whose `<` lies in
/// `chunk[from..limit]`, when its `>` is in the chunk too.
///
/// This is only where a slice ends, so that lol_html meets the likely insertion point at the
/// end of what it is given and parses nothing after it. lol_html still decides: a `</head>`
/// inside a comment, a script or an attribute value is not the insertion point, and parsing
/// simply carries on from there.
fn past_head_end_tag(chunk: &[u8], from: usize, limit: usize) -> Option<usize> {
    const NAME: &[u8] = b"</head";
    memchr::memchr_iter(b'<', &chunk[from..limit])
        .map(|at| from + at)
        .find_map(|open| {
            let name_end = open + NAME.len();
            let tag = chunk.get(open..name_end)?;
            let ends_name = matches!(
                chunk.get(name_end),
                Some(b'>' | b'/' | b' ' | b'\t' | b'\n' | b'\x0C' | b'\r')
            );
            if !tag.eq_ignore_ascii_case(NAME) || !ends_name {
                return None;
            }
            memchr::memchr(b'>', &chunk[name_end..]).map(|close| name_end + close + 1)
        })
}

fn encoding_for_label(label: &str) -> Result<AsciiCompatibleEncoding, InjectError> {
    let unquoted = label.trim().trim_matches('"');
    Encoding::for_label_no_replacement(unquoted.as_bytes())
        .and_then(AsciiCompatibleEncoding::new)
        .ok_or_else(|| InjectError::Encoding(label.to_owned()))
}

type Handler = (Cow<'static, Selector>, ElementContentHandlers<'static>);
type Handlers = Vec<Handler>;

/// The selectors, parsed once for every document rather than once per document.
static INERT: LazyLock<Selector> = LazyLock::new(|| parse_selector("template, svg, math"));
static HEAD: LazyLock<Selector> = LazyLock::new(|| parse_selector("head"));
static BODY: LazyLock<Selector> = LazyLock::new(|| parse_selector("body"));

fn parse_selector(source: &str) -> Selector {
    match source.parse() {
        Ok(selector) => selector,
        // Only ever called on the constant selectors above, which the tests parse.
        Err(e) => unreachable!("invalid built-in selector {source:?}: {e}"),
    }
}

fn handler(
    selector: &'static LazyLock<Selector>,
    on_element: impl FnMut(&mut lol_html::send::Element<'_, '_>) -> lol_html::HandlerResult
        + Send
        + 'static,
) -> Handler {
    (
        Cow::Borrowed(&**selector),
        ElementContentHandlers::default().element(on_element),
    )
}

/// `Injector::inserted_at` before the tag is placed, or when it goes at the document's end.
const NOT_PLACED: usize = usize::MAX;

/// Shared by the handlers of one document: the tag, whether it is in and where, and how deep
/// the parser is inside inert content (template, SVG, MathML), where a script would not run.
struct Point {
    tag: Arc<str>,
    injected: Arc<AtomicBool>,
    inert: Arc<AtomicUsize>,
    at: Arc<AtomicUsize>,
}

impl Point {
    /// Claims the one insertion, at `at` in the source document, unless it is taken or the
    /// parser is inside inert content.
    fn take(&self, at: usize) -> bool {
        let taken =
            self.inert.load(Ordering::Relaxed) == 0 && !self.injected.swap(true, Ordering::Relaxed);
        if taken {
            self.at.store(at, Ordering::Relaxed);
        }
        taken
    }

    fn share(&self) -> Point {
        Point {
            tag: Arc::clone(&self.tag),
            injected: Arc::clone(&self.injected),
            inert: Arc::clone(&self.inert),
            at: Arc::clone(&self.at),
        }
    }
}

/// Before `</head>`, or first in the body when the head's end tag is omitted.
fn head_end(point: &Point) -> Handlers {
    let first_in_body = point.share();
    let body = handler(&BODY, move |el| {
        if first_in_body.take(el.source_location().bytes().end) {
            el.prepend(&first_in_body.tag, ContentType::Html);
        }
        Ok(())
    });
    vec![before_end_tag_of(&HEAD, point.share()), body]
}

/// Inserts the tag before the end tag of the `element`.
fn before_end_tag_of(element: &'static LazyLock<Selector>, point: Point) -> Handler {
    handler(element, move |el| {
        // Absent only for elements that cannot have content, which head and body are not.
        if let Some(handlers) = el.end_tag_handlers() {
            let point = point.share();
            let before_end: EndTagHandler<'static> = Box::new(move |end: &mut EndTag<'_>| {
                if point.take(end.source_location().bytes().start) {
                    end.before(&point.tag, ContentType::Html);
                }
                Ok(())
            });
            handlers.push(before_end);
        }
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::past_head_end_tag;

    fn end(chunk: &str, from: usize, limit: usize) -> Option<usize> {
        past_head_end_tag(chunk.as_bytes(), from, limit)
    }

    #[test]
    fn a_slice_ends_just_past_the_head_end_tag() {
        let page = "<html><head><title>t</title></head><body><p>x</p>";
        let after = page.find("<body>").unwrap();
        assert_eq!(end(page, 0, page.len()), Some(after));
        assert_eq!(end(page, 0, 30), Some(after), "the `<` is before the limit");
        assert_eq!(end("</HEAD\n>rest", 0, 12), Some(8), "any case, any space");
        assert_eq!(end("</head/>", 0, 8), Some(8));
        assert_eq!(end("</head a=\"1\">", 0, 13), Some(13));
    }

    #[test]
    fn only_an_end_tag_named_head_that_starts_in_range_and_closes_in_the_chunk_counts() {
        assert_eq!(end("<header></header>", 0, 17), None);
        assert_eq!(end("<head><headline>", 0, 16), None);
        assert_eq!(end("x</head", 0, 7), None, "its `>` is in a later chunk");
        assert_eq!(end("x</hea", 0, 6), None);
        assert_eq!(end("</head>", 1, 7), None, "its `<` is before the slice");
        assert_eq!(end("ab</head>", 0, 2), None, "its `<` is at the limit");
        assert_eq!(end("<p></head><x></head>", 3, 20), Some(10));
    }
}
