//! The injector at [`Placement::BodyEnd`]: every byte is parsed, the tag goes before the end tag
//! that closes the body. `head.rs` covers [`Placement::Head`].

mod common;

use bytes::Bytes;
use common::TAG;
use inject::{script_tag, InjectError, Injector, Placement};

fn rewrite_chunks<'a>(
    charset: Option<&str>,
    tag: &str,
    chunks: impl IntoIterator<Item = &'a [u8]>,
) -> Vec<u8> {
    common::rewrite_chunks(Placement::BodyEnd, charset, tag, chunks)
}

fn rewrite(html: &str) -> String {
    String::from_utf8(rewrite_chunks(None, TAG, [html.as_bytes()])).unwrap()
}

fn occurrences(haystack: &str, needle: &str) -> usize {
    haystack.matches(needle).count()
}

const PAGE: &str = "<!doctype html><html><head><title>Doc</title></head>\
    <body class=\"x\"><h1>Edit</h1><p>text</p></body></html>\n";

#[test]
fn inserts_before_body_end_tag_when_fed_whole() {
    let expected = format!(
        "<!doctype html><html><head><title>Doc</title></head>\
         <body class=\"x\"><h1>Edit</h1><p>text</p>{TAG}</body></html>\n"
    );
    assert_eq!(rewrite(PAGE), expected);
}

#[test]
fn one_byte_at_a_time_gives_the_same_output() {
    let whole = rewrite_chunks(None, TAG, [PAGE.as_bytes()]);
    let bytes = rewrite_chunks(None, TAG, PAGE.as_bytes().chunks(1));
    assert_eq!(bytes, whole);
}

#[test]
fn every_split_around_body_end_tag_gives_the_same_output() {
    let whole = rewrite_chunks(None, TAG, [PAGE.as_bytes()]);
    let at = PAGE.find("</body>").unwrap();
    let window = at.saturating_sub(4)..=(at + "</body>".len() + 4).min(PAGE.len());
    for first in window.clone() {
        for second in window.clone().filter(|&second| second >= first) {
            let bytes = PAGE.as_bytes();
            let pieces = [&bytes[..first], &bytes[first..second], &bytes[second..]];
            assert_eq!(
                rewrite_chunks(None, TAG, pieces),
                whole,
                "split at {first} and {second}"
            );
        }
    }
}

#[test]
fn uppercase_body_end_tag_is_the_insertion_point() {
    let html = "<HTML><BODY><P>x</P></BODY></HTML>";
    assert_eq!(
        rewrite(html),
        format!("<HTML><BODY><P>x</P>{TAG}</BODY></HTML>")
    );
}

#[test]
fn body_end_tag_after_unclosed_elements_is_the_insertion_point() {
    let html = "<html><body><div><p>open</body></html>";
    assert_eq!(
        rewrite(html),
        format!("<html><body><div><p>open{TAG}</body></html>")
    );
}

#[test]
fn html_end_tag_that_closes_an_open_body_is_the_insertion_point() {
    let html = "<html><body><p>x</p></html>";
    assert_eq!(rewrite(html), format!("<html><body><p>x</p>{TAG}</html>"));
}

#[test]
fn without_body_end_tag_the_tag_goes_at_the_end() {
    for html in ["<html><body><p>never closed", "<p>a fragment</p>", ""] {
        assert_eq!(rewrite(html), format!("{html}{TAG}"), "input {html:?}");
    }
}

#[test]
fn body_end_tag_in_comment_script_attribute_or_text_is_not_the_insertion_point() {
    let html = "<html><body>\
        <!-- </body> -->\
        <script>var s = \"</body>\";</script>\
        <div title=\"</body>\" data-x='</body>'></div>\
        <textarea></body></textarea>\
        <p>end</p></body></html>";
    let out = rewrite(html);
    assert_eq!(occurrences(&out, TAG), 1);
    assert!(
        out.ends_with(&format!("<p>end</p>{TAG}</body></html>")),
        "tag not before the real end tag: {out}"
    );
}

#[test]
fn body_end_tag_inside_template_or_foreign_content_is_not_the_insertion_point() {
    for inert in [
        "<template></body></template>",
        "<svg><g></body></g></svg>",
        "<math><mi></body></mi></math>",
    ] {
        let html = format!("<html><body>{inert}<p>x</p></body></html>");
        // lol_html has already closed the body at the inner `</body>`, so the only safe place
        // left is the end of the document.
        assert_eq!(rewrite(&html), format!("{html}{TAG}"), "{inert}");
    }
}

#[test]
fn a_body_element_inside_a_template_is_not_the_document_body() {
    let html = "<html><body><template><body></body></template><p>x</p></body></html>";
    assert_eq!(
        rewrite(html),
        format!("<html><body><template><body></body></template><p>x</p>{TAG}</body></html>")
    );
}

#[test]
fn closed_templates_and_inline_svg_do_not_move_the_insertion_point() {
    let html = "<html><body>\
        <template><p>t</p></template>\
        <svg viewBox=\"0 0 1 1\"><path d=\"M0\"/><svg><circle/></svg></svg>\
        <svg/><math><mi>x</mi></math>\
        <p>end</p></body></html>";
    assert_eq!(
        rewrite(html),
        html.replace("</body>", &format!("{TAG}</body>"))
    );
}

#[test]
fn a_second_body_element_does_not_get_a_second_tag() {
    let html = "<html><body><p>a</p></body><body><p>b</p></body></html>";
    let out = rewrite(html);
    assert_eq!(occurrences(&out, TAG), 1, "{out}");
    assert_eq!(out.replace(TAG, ""), html);
}

#[test]
fn a_large_page_streams_without_buffering() {
    const CHUNK: usize = 16 * 1024;
    let mut html = String::from("<!doctype html><html><head></head><body>");
    let mut n = 0;
    while html.len() < 5 * 1024 * 1024 {
        html.push_str(&format!(
            "<p class=\"row\" id=\"r{n}\">row {n} with <b>bold</b> text</p>\n"
        ));
        n += 1;
    }
    html.push_str("</body></html>");

    let mut injector = Injector::new(TAG.to_owned(), Some("utf-8"), Placement::BodyEnd).unwrap();
    let mut out = Vec::with_capacity(html.len() + TAG.len());
    let mut fed = 0;
    for (i, chunk) in html.as_bytes().chunks(CHUNK).enumerate() {
        let produced = injector.write(Bytes::copy_from_slice(chunk)).unwrap();
        fed += chunk.len();
        if i == 0 {
            assert!(!produced.is_empty(), "no output after the first chunk");
        }
        out.extend_from_slice(&produced);
        // Only the unfinished token at the chunk border may be held back.
        assert!(
            out.len() + 1024 >= fed,
            "output lags input by {} bytes after chunk {i}",
            fed - out.len()
        );
    }
    out.extend_from_slice(&injector.finish().unwrap());

    assert_eq!(out.len(), html.len() + TAG.len());
    let expected = html.replace("</body>", &format!("{TAG}</body>"));
    assert!(out == expected.as_bytes(), "output differs from expected");
}

#[test]
fn latin1_bytes_pass_through_and_the_tag_is_encoded_in_latin1() {
    let tag = script_tag("/_latch/banner.js", &[("latch-path", "/café")], None);
    let mut page = b"<html><body><p>caf".to_vec();
    page.push(0xE9);
    page.extend_from_slice(b"</p></body></html>");

    let out = rewrite_chunks(Some("latin1"), &tag, page.chunks(3));

    let latin1 = |text: &str| -> Vec<u8> {
        text.chars()
            .map(|c| u8::try_from(u32::from(c)).unwrap())
            .collect()
    };
    assert_eq!(
        out,
        latin1(&format!("<html><body><p>café</p>{tag}</body></html>"))
    );
}

#[test]
fn utf8_text_split_inside_characters_passes_through() {
    let html = "<html><body><p>héllo — ü 日本</p></body></html>";
    let whole = rewrite_chunks(Some("utf-8"), TAG, [html.as_bytes()]);
    assert_eq!(
        String::from_utf8(whole.clone()).unwrap(),
        html.replace("</body>", &format!("{TAG}</body>"))
    );
    for at in 0..=html.len() {
        let bytes = html.as_bytes();
        let out = rewrite_chunks(Some("utf-8"), TAG, [&bytes[..at], &bytes[at..]]);
        assert_eq!(out, whole, "split at byte {at}");
    }
}

#[test]
fn charset_labels_are_read_like_a_browser_reads_them() {
    for label in [
        "utf-8",
        "UTF-8",
        "utf8",
        " \"utf-8\" ",
        "latin1",
        "windows-1252",
        "shift_jis",
    ] {
        assert!(
            Injector::new(TAG.to_owned(), Some(label), Placement::BodyEnd).is_ok(),
            "{label:?} refused"
        );
    }
}

#[test]
fn charsets_that_are_not_ascii_compatible_or_unknown_are_refused() {
    for label in [
        "utf-16",
        "UTF-16LE",
        "utf-16be",
        "iso-2022-jp",
        "iso-2022-kr",
        "klingon",
        "",
    ] {
        match Injector::new(TAG.to_owned(), Some(label), Placement::BodyEnd) {
            Err(InjectError::Encoding(got)) => assert_eq!(got, label),
            other => panic!("{label:?} gave {other:?}"),
        }
    }
}

#[test]
fn meta_charset_is_honoured_when_the_header_has_none() {
    let tag = script_tag("/_latch/banner.js", &[("latch-path", "/é")], None);
    let page = b"<html><head><meta charset=\"windows-1252\"></head><body></body></html>";
    let out = rewrite_chunks(None, &tag, [&page[..]]);
    assert!(
        out.windows(3).any(|w| w == b"/\xE9\""),
        "tag not written in windows-1252: {}",
        String::from_utf8_lossy(&out)
    );
}

#[test]
fn injected_reports_when_the_tag_was_written() {
    let mut injector = Injector::new(TAG.to_owned(), None, Placement::BodyEnd).unwrap();
    injector
        .write(Bytes::from_static(b"<html><body><p>x</p>"))
        .unwrap();
    assert!(!injector.injected());
    let out = injector
        .write(Bytes::from_static(b"</body></html>"))
        .unwrap();
    assert!(injector.injected());
    assert_eq!(out, format!("{TAG}</body></html>").as_bytes());
}

#[test]
fn use_after_finish_is_an_error() {
    let mut injector = Injector::new(TAG.to_owned(), None, Placement::BodyEnd).unwrap();
    injector.finish().unwrap();
    assert!(matches!(
        injector.write(Bytes::from_static(b"<p>")),
        Err(InjectError::Finished)
    ));
    assert!(matches!(injector.finish(), Err(InjectError::Finished)));
}

#[test]
fn injector_can_live_in_a_shared_request_context() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Injector>();
}
