//! The head memo: a page whose head was rewritten before gets the tag at the same offset
//! without being parsed, and every page comes out byte for byte as the parser alone makes it.

mod common;

use std::sync::Arc;

use bytes::Bytes;
use common::TAG;
use inject::{HeadMemo, Injector, Placement};

/// An injector of `tag` at `placement` that uses `memo`.
fn injector(memo: &Arc<HeadMemo>, placement: Placement, tag: &str) -> Injector {
    Injector::new(tag.to_owned(), None, placement)
        .unwrap()
        .remembering(Arc::clone(memo))
}

/// Rewrites `chunks` at [`Placement::Head`] with `tag`, through `memo`.
fn rewrite(memo: &Arc<HeadMemo>, tag: &str, chunks: &[&[u8]]) -> Vec<u8> {
    let mut injector = injector(memo, Placement::Head, tag);
    let mut out = Vec::new();
    for chunk in chunks {
        out.extend_from_slice(&injector.write(Bytes::copy_from_slice(chunk)).unwrap());
    }
    out.extend_from_slice(&injector.finish().unwrap());
    assert!(injector.injected());
    out
}

/// The page as the parser alone rewrites it.
fn parsed(tag: &str, page: &str) -> Vec<u8> {
    common::rewrite_chunks(Placement::Head, None, tag, [page.as_bytes()])
}

const PAGE: &str = "<!doctype html><html><head><meta charset=\"utf-8\"><title>Doc</title></head>\
    <body><h1>Edit</h1><p>text</p></body></html>\n";

#[test]
fn a_repeated_head_is_not_parsed_again_and_gives_the_same_bytes() {
    let memo = Arc::new(HeadMemo::default());
    let first = rewrite(&memo, TAG, &[PAGE.as_bytes()]);
    assert_eq!(first, parsed(TAG, PAGE));
    assert_eq!((memo.len(), memo.hits()), (1, 0));

    let mut injector = injector(&memo, Placement::Head, TAG);
    let mut second = injector
        .write(Bytes::from_static(PAGE.as_bytes()))
        .unwrap()
        .to_vec();
    assert!(injector.remembered() && injector.passing_through());
    second.extend_from_slice(&injector.finish().unwrap());
    assert_eq!(second, first);
    assert_eq!(memo.hits(), 1);
}

#[test]
fn a_remembered_head_takes_another_pages_tag_at_the_same_place() {
    let memo = Arc::new(HeadMemo::default());
    rewrite(&memo, TAG, &[PAGE.as_bytes()]);
    let other = r#"<script src="/_latch/banner.js" data-latch-path="/docs/2" defer></script>"#;
    let page = PAGE.replace("<h1>Edit</h1>", "<h1>Another document</h1>");
    let out = rewrite(&memo, other, &[page.as_bytes()]);
    assert_eq!(memo.hits(), 1);
    assert_eq!(out, parsed(other, &page));
}

#[test]
fn tricky_heads_come_out_as_the_parser_makes_them_first_and_second_time() {
    let pages = [
        PAGE.to_owned(),
        // `</head>` inside markup that hides it: the first one is not the insertion point.
        "<html><head><!-- </head> --><title>t</title></head><body>x</body></html>".to_owned(),
        "<html><head><script>var s = \"</head>\";</script></head><body>x</body>".to_owned(),
        "<html><head><meta name=\"x\" content=\"</head>\"></head><body>x</body>".to_owned(),
        "<html><head><template></head></template></head><body><p>x</p></body></html>".to_owned(),
        // No head end tag before the body starts, and no head at all.
        "<html><head><title>t</title><body><p>x</p></head></body></html>".to_owned(),
        "<p>no head</p></head><p>after</p>".to_owned(),
        // Unusual spellings of the end tag.
        "<html><head><title>t</title></HEAD ><body>x</body>".to_owned(),
        "<html><head><title>t</title></head a=\">\"><body>x</body>".to_owned(),
    ];
    let memo = Arc::new(HeadMemo::default());
    for page in &pages {
        let want = parsed(TAG, page);
        for round in 0..2 {
            assert_eq!(
                rewrite(&memo, TAG, &[page.as_bytes()]),
                want,
                "round {round}: {page}"
            );
        }
    }
    // Only heads the tag went into by their first `</head>` are remembered, and they hit: the
    // plain page, the body that opens before `</head>`, and `</HEAD >`.
    assert_eq!((memo.len(), memo.hits()), (3, 3), "{memo:?}");
}

#[test]
fn a_head_is_remembered_only_when_one_chunk_starts_the_page_and_holds_it_whole() {
    let memo = Arc::new(HeadMemo::default());
    rewrite(&memo, TAG, &[PAGE.as_bytes()]);
    let want = parsed(TAG, PAGE);
    let head_end = PAGE.find("</head>").unwrap() + "</head>".len();
    for at in 0..=PAGE.len() {
        let (a, b) = PAGE.as_bytes().split_at(at);
        let hits = memo.hits();
        assert_eq!(rewrite(&memo, TAG, &[a, b]), want, "split at {at}");
        // An empty first chunk leaves the page at its start for the second, whole one.
        let whole_head_first = at == 0 || at >= head_end;
        assert_eq!(
            memo.hits() - hits,
            u64::from(whole_head_first),
            "split at {at}"
        );
    }
}

#[test]
fn a_head_differing_in_one_byte_is_parsed() {
    let memo = Arc::new(HeadMemo::default());
    rewrite(&memo, TAG, &[PAGE.as_bytes()]);
    // Moves the insertion point: a hit on the old head would put the tag in the wrong place.
    let page = PAGE.replace("<title>Doc</title>", "<title>Docs</title>");
    assert_eq!(rewrite(&memo, TAG, &[page.as_bytes()]), parsed(TAG, &page));
    assert_eq!((memo.len(), memo.hits()), (2, 0));
}

#[test]
fn the_memo_is_not_used_at_the_body_end() {
    let memo = Arc::new(HeadMemo::default());
    for _ in 0..2 {
        let mut injector = injector(&memo, Placement::BodyEnd, TAG);
        let mut out = injector
            .write(Bytes::from_static(PAGE.as_bytes()))
            .unwrap()
            .to_vec();
        out.extend_from_slice(&injector.finish().unwrap());
        let want = PAGE.replace("</body>", &format!("{TAG}</body>"));
        assert_eq!(String::from_utf8(out).unwrap(), want);
    }
    assert!(memo.is_empty());
}
