//! The injector at [`Placement::Head`]: the tag goes before `</head>` (or first in the body when
//! the head end tag is omitted), and the rest of the document passes through unparsed.

mod common;

use bytes::Bytes;
use common::TAG;
use inject::{Injector, Placement};

fn injector(charset: Option<&str>) -> Injector {
    Injector::new(TAG.to_owned(), charset, Placement::Head).unwrap()
}

fn rewrite_chunks<'a>(chunks: impl IntoIterator<Item = &'a [u8]>) -> Vec<u8> {
    common::rewrite_chunks(Placement::Head, None, TAG, chunks)
}

fn rewrite(html: &str) -> String {
    String::from_utf8(rewrite_chunks([html.as_bytes()])).unwrap()
}

const PAGE: &str = "<!doctype html><html><head><meta charset=\"utf-8\"><title>Doc</title></head>\
    <body class=\"x\"><h1>Edit</h1><p>text</p></body></html>\n";

fn expected() -> String {
    PAGE.replace("</head>", &format!("{TAG}</head>"))
}

#[test]
fn inserts_before_head_end_tag_after_the_page_meta() {
    assert_eq!(rewrite(PAGE), expected());
}

#[test]
fn every_split_around_head_end_tag_gives_the_same_output() {
    let at = PAGE.find("</head>").unwrap();
    let window = at.saturating_sub(4)..=(at + "</head>".len() + 4).min(PAGE.len());
    for first in window.clone() {
        for second in window.clone().filter(|&second| second >= first) {
            let bytes = PAGE.as_bytes();
            let pieces = [&bytes[..first], &bytes[first..second], &bytes[second..]];
            assert_eq!(
                String::from_utf8(rewrite_chunks(pieces)).unwrap(),
                expected(),
                "split at {first} and {second}"
            );
        }
    }
}

#[test]
fn any_chunk_size_gives_the_same_bytes() {
    let mut page = PAGE.replace("</body>", "");
    for n in 0..2000 {
        page.push_str(&format!("<p id=\"r{n}\">row {n} &amp; <b>more</b></p>\n"));
    }
    page.push_str("</body></html>");
    let want = page.replacen("</head>", &format!("{TAG}</head>"), 1);
    for size in [1, 7, 100, 1023, 1024, 1025, 4096, 65536, page.len()] {
        let out = rewrite_chunks(page.as_bytes().chunks(size));
        assert!(out == want.as_bytes(), "chunk size {size} changed the page");
    }
}

#[test]
fn omitted_head_end_tag_puts_the_tag_first_in_the_body() {
    assert_eq!(
        rewrite("<html><head><title>x</title><body><p>y</p></body></html>"),
        format!("<html><head><title>x</title><body>{TAG}<p>y</p></body></html>")
    );
    assert_eq!(
        rewrite("<BODY onload=\"go()\"><P>y</P>"),
        format!("<BODY onload=\"go()\">{TAG}<P>y</P>")
    );
}

#[test]
fn without_head_or_body_the_tag_goes_at_the_end() {
    for html in ["<p>a fragment</p>", "plain text", ""] {
        assert_eq!(rewrite(html), format!("{html}{TAG}"));
    }
}

#[test]
fn head_end_tag_in_comment_script_style_or_attribute_is_not_the_insertion_point() {
    let html = "<html><head>\
        <!-- </head> -->\
        <script>var s = \"</head>\";</script>\
        <style>/* </head> */</style>\
        <meta name=\"x\" content=\"</head>\">\
        <title>t</title></head><body></body></html>";
    let out = rewrite(html);
    assert_eq!(out.matches(TAG).count(), 1, "{out}");
    assert!(
        out.contains(&format!("<title>t</title>{TAG}</head><body>")),
        "{out}"
    );
}

#[test]
fn unusual_head_end_tags_give_the_same_bytes_at_every_split() {
    // An end tag in another case, with space before its `>`, or with an attribute whose value
    // holds a `>`: the slice may end inside the tag, and lol_html must still find it whole.
    for head_end in ["</HEAD>", "</head\n>", "</head a=\">\">"] {
        let page = format!("<html><head><!-- </head> --><title>t</title>{head_end}<body><p>x</p>");
        let want = page.replacen(head_end, &format!("{TAG}{head_end}"), 1);
        assert_eq!(rewrite(&page), want, "{head_end}");
        for at in 0..=page.len() {
            let (a, b) = page.as_bytes().split_at(at);
            let out = String::from_utf8(rewrite_chunks([a, b])).unwrap();
            assert_eq!(out, want, "{head_end} split at {at}");
        }
    }
}

#[test]
fn head_end_tag_inside_a_template_falls_back_to_the_document_end() {
    // lol_html closes the head at the inner `</head>`, where a browser would not run a script;
    // the template is then never left, so the only safe place is the very end.
    let html = "<html><head><template></head></template></head><body><p>x</p></body></html>";
    assert_eq!(rewrite(html), format!("{html}{TAG}"));
}

#[test]
fn the_rest_of_the_page_is_handed_back_without_a_copy() {
    let mut injector = injector(Some("utf-8"));
    let first = injector
        .write(Bytes::from_static(
            b"<html><head><title>t</title></head><body>",
        ))
        .unwrap();
    assert!(injector.passing_through());
    assert_eq!(
        first,
        format!("<html><head><title>t</title>{TAG}</head><body>").as_bytes()
    );
    let rest = Bytes::from(vec![b'<'; 100_000]);
    let out = injector.write(rest.clone()).unwrap();
    assert_eq!(out.as_ptr(), rest.as_ptr(), "the chunk was copied");
    assert_eq!(out.len(), rest.len());
    assert!(injector.finish().unwrap().is_empty());
}

#[test]
fn markup_after_the_head_is_never_parsed() {
    // Content that would stop a strict parser, or that a parser would hold back as an
    // unfinished token, must come out at once and as it is once the tag is in.
    let mut injector = injector(None);
    let head = b"<html><head></head><body>".as_slice();
    let mut page = head.to_vec();
    page.extend_from_slice(b"<div title=\"unterminated");
    let out = injector.write(Bytes::from(page.clone())).unwrap();
    let want = [
        b"<html><head>".as_slice(),
        TAG.as_bytes(),
        b"</head><body><div title=\"unterminated",
    ]
    .concat();
    assert_eq!(out, want);
    assert!(injector.passing_through());
}

#[test]
fn a_large_first_chunk_is_parsed_only_up_to_the_head() {
    let mut page = String::from("<!doctype html><html><head><title>big</title></head><body>");
    while page.len() < 5 * 1024 * 1024 {
        page.push_str("<p class=\"row\">row with <b>bold</b> text</p>\n");
    }
    page.push_str("</body></html>");
    let mut injector = injector(Some("utf-8"));
    let out = injector.write(Bytes::from(page.clone())).unwrap();
    assert!(injector.passing_through());
    assert_eq!(out.len(), page.len() + TAG.len());
    assert!(
        out == page
            .replacen("</head>", &format!("{TAG}</head>"), 1)
            .as_bytes()
    );
}

#[test]
fn latin1_pages_get_the_tag_in_latin1() {
    let tag = inject::script_tag("/_latch/banner.js", &[("latch-path", "/café")], None);
    let mut injector = Injector::new(tag.clone(), Some("latin1"), Placement::Head).unwrap();
    let mut out = injector
        .write(Bytes::from_static(b"<html><head></head><body>caf\xE9"))
        .unwrap()
        .to_vec();
    out.extend_from_slice(&injector.finish().unwrap());
    let tag_latin1: Vec<u8> = tag
        .chars()
        .map(|c| u8::try_from(u32::from(c)).unwrap())
        .collect();
    let want = [
        b"<html><head>".as_slice(),
        &tag_latin1,
        b"</head><body>caf\xE9",
    ]
    .concat();
    assert_eq!(out, want);
}

#[test]
fn an_ascii_tag_goes_into_a_page_with_a_meta_charset_byte_for_byte() {
    let page: &[u8] =
        b"<html><head><meta charset=\"windows-1252\"><title>caf\xE9</title></head><body>\xE9</body></html>";
    let out = rewrite_chunks([page]);
    let at = page.windows(7).position(|w| w == b"</head>").unwrap();
    let mut want = page[..at].to_vec();
    want.extend_from_slice(TAG.as_bytes());
    want.extend_from_slice(&page[at..]);
    assert_eq!(out, want);
}
