//! Path normalization, one case per line: `check(input, Ok(normalized))` or
//! `check(input, Err(kind))`. Every successful case is also checked for idempotence and for
//! borrowing exactly when the input was already canonical.

use std::borrow::Cow;

use rules::PathError::{self, *};
use rules::{normalize_path, strip_path_parameters};

fn check(input: &str, expected: Result<&str, PathError>) {
    let got = normalize_path(input);
    match (&got, expected) {
        (Ok(out), Ok(want)) => {
            assert_eq!(out, want, "normalize_path({input:?})");
            assert_eq!(
                matches!(out, Cow::Borrowed(_)),
                input == want,
                "normalize_path({input:?}) should borrow exactly when nothing changes"
            );
            match normalize_path(out) {
                Ok(Cow::Borrowed(again)) => assert_eq!(again, want, "not idempotent on {input:?}"),
                other => panic!("normalizing {want:?} again (from {input:?}) gave {other:?}"),
            }
        }
        _ => assert_eq!(
            got.map(Cow::into_owned),
            expected.map(str::to_owned),
            "normalize_path({input:?})"
        ),
    }
}

#[test]
fn canonical_paths_are_borrowed_unchanged() {
    check("/", Ok("/"));
    check("/a", Ok("/a"));
    check("/a/", Ok("/a/"));
    check("/a/b", Ok("/a/b"));
    check("/a/b/", Ok("/a/b/"));
    check("/docs/1/edit", Ok("/docs/1/edit"));
    check("/docs/1/edit/", Ok("/docs/1/edit/"));
    check("/DOCS/1/EDIT", Ok("/DOCS/1/EDIT"));
    check("/a.b", Ok("/a.b"));
    check("/.a", Ok("/.a"));
    check("/a.", Ok("/a."));
    check("/...", Ok("/..."));
    check("/..a", Ok("/..a"));
    check("/a..", Ok("/a.."));
    check(
        "/.well-known/openid-configuration",
        Ok("/.well-known/openid-configuration"),
    );
    check("/~user/a-b_c.d", Ok("/~user/a-b_c.d"));
    check("/a:b@c", Ok("/a:b@c"));
    check("/a!$&'()*+,=", Ok("/a!$&'()*+,="));
    check("/a;b", Ok("/a;b"));
    check("/a;b/c", Ok("/a;b/c"));
    check("/page;jsessionid=ABC", Ok("/page;jsessionid=ABC"));
    check("/;x", Ok("/;x"));
    check("/;", Ok("/;"));
    check("/...;", Ok("/...;"));
    check("/.a;b", Ok("/.a;b"));
    check("/a.;b", Ok("/a.;b"));
    check("/é/ü", Ok("/é/ü"));
    check("/a b", Ok("/a b"));
    check("/a?b", Ok("/a?b"));
    check(
        "/very/deep/path/with/many/segments/",
        Ok("/very/deep/path/with/many/segments/"),
    );
}

#[test]
fn unreserved_escapes_are_decoded() {
    check("/%31", Ok("/1"));
    check("/docs/%31/edit", Ok("/docs/1/edit"));
    check("/docs/%31%32%33/edit", Ok("/docs/123/edit"));
    check("/%30%39", Ok("/09"));
    check("/%41", Ok("/A"));
    check("/%5A", Ok("/Z"));
    check("/%5a", Ok("/Z"));
    check("/%61", Ok("/a"));
    check("/%7A", Ok("/z"));
    check("/%7a", Ok("/z"));
    check("/%4a%4B", Ok("/JK"));
    check("/%2D", Ok("/-"));
    check("/%2d", Ok("/-"));
    check("/%5F", Ok("/_"));
    check("/%5f", Ok("/_"));
    check("/%7E", Ok("/~"));
    check("/%7e", Ok("/~"));
    check("/a%2Eb", Ok("/a.b"));
    check("/a%2eb", Ok("/a.b"));
    check("/%64%6f%63%73/1", Ok("/docs/1"));
    check("/%44%4F%43%53", Ok("/DOCS"));
    check("/x%41y%42z", Ok("/xAyBz"));
    check("/%7Euser", Ok("/~user"));
    check("/a/%62/c", Ok("/a/b/c"));
    check("/%2e%2e%2e", Ok("/..."));
    check("/.%2e.", Ok("/..."));
    check("/%2ea", Ok("/.a"));
}

#[test]
fn other_escapes_stay_encoded_with_uppercase_hex() {
    check("/%3A", Ok("/%3A"));
    check("/%3a", Ok("/%3A"));
    check("/%20", Ok("/%20"));
    check("/a%20b", Ok("/a%20b"));
    check("/%2b", Ok("/%2B"));
    check("/%2B", Ok("/%2B"));
    check("/%25", Ok("/%25"));
    check("/%2541", Ok("/%2541"));
    check("/%252F", Ok("/%252F"));
    check("/%252f", Ok("/%252f"));
    check("/%2525", Ok("/%2525"));
    check("/%3f", Ok("/%3F"));
    check("/%23", Ok("/%23"));
    check("/%40", Ok("/%40"));
    check("/%7f", Ok("/%7F"));
    check("/%ff", Ok("/%FF"));
    check("/%fF", Ok("/%FF"));
    check("/%Ff", Ok("/%FF"));
    check("/%80", Ok("/%80"));
    check("/%5b%5d", Ok("/%5B%5D"));
    check("/%7b%7D", Ok("/%7B%7D"));
    check("/%22", Ok("/%22"));
    check("/%3c%3e", Ok("/%3C%3E"));
    check("/%2c", Ok("/%2C"));
    check("/%3B", Ok("/%3B"));
    check("/%3d", Ok("/%3D"));
    check("/%01", Ok("/%01"));
    check("/%0a", Ok("/%0A"));
    check("/%0D%0A", Ok("/%0D%0A"));
    check("/%c3%a9", Ok("/%C3%A9"));
    check("/%C3%a9", Ok("/%C3%A9"));
    check("/%C3%A9", Ok("/%C3%A9"));
    check("/%e2%82%ac", Ok("/%E2%82%AC"));
    check("/a%3ab%41", Ok("/a%3AbA"));
    check("/%2e%3a", Ok("/.%3A"));
    check("/..%3B", Ok("/..%3B"));
    check("/.%3Bx", Ok("/.%3Bx"));
}

#[test]
fn dot_segments_are_resolved() {
    check("/.", Ok("/"));
    check("/..", Ok("/"));
    check("/./", Ok("/"));
    check("/../", Ok("/"));
    check("/./a", Ok("/a"));
    check("/../a", Ok("/a"));
    check("/a/.", Ok("/a/"));
    check("/a/..", Ok("/"));
    check("/a/./", Ok("/a/"));
    check("/a/../", Ok("/"));
    check("/a/b/..", Ok("/a/"));
    check("/a/b/../", Ok("/a/"));
    check("/a/./b", Ok("/a/b"));
    check("/a/../b", Ok("/b"));
    check("/a/b/../c", Ok("/a/c"));
    check("/a/b/../../c", Ok("/c"));
    check("/a/b/c/../../d/", Ok("/a/d/"));
    check("/a/./././b", Ok("/a/b"));
    check("/a/b/./../c/", Ok("/a/c/"));
    check("/a/b/c/../../../..", Ok("/"));
    check("/docs/./1/edit", Ok("/docs/1/edit"));
    check("/docs/1/../2/edit", Ok("/docs/2/edit"));
    check("/docs/1/edit/..", Ok("/docs/1/"));
    check("/public/../docs/1/edit", Ok("/docs/1/edit"));
    check("/docs/1/edit/./", Ok("/docs/1/edit/"));
    check("/a/.../b", Ok("/a/.../b"));
    check("/a/.b/../c", Ok("/a/c"));
    check("/a/b./c", Ok("/a/b./c"));
    check("/a/..b/c", Ok("/a/..b/c"));
}

#[test]
fn dot_dot_never_climbs_above_the_root() {
    check("/../../a", Ok("/a"));
    check("/../../../../etc/passwd", Ok("/etc/passwd"));
    check("/a/../../b", Ok("/b"));
    check("/a/../../../b/c", Ok("/b/c"));
    check("/../..", Ok("/"));
    check("/../../", Ok("/"));
    check("/a/b/../../../../../../..", Ok("/"));
    check("/../docs/1/edit", Ok("/docs/1/edit"));
    check("/docs/../../../docs/1/edit", Ok("/docs/1/edit"));
    check("/../a/../b/../c", Ok("/c"));
}

#[test]
fn encoded_dots_count_as_dots() {
    check("/%2e", Ok("/"));
    check("/%2E", Ok("/"));
    check("/%2e%2e", Ok("/"));
    check("/%2E%2E", Ok("/"));
    check("/%2e%2e/a", Ok("/a"));
    check("/a/%2e%2e/b", Ok("/b"));
    check("/a/.%2e/b", Ok("/b"));
    check("/a/%2e./b", Ok("/b"));
    check("/a/%2E/b", Ok("/a/b"));
    check("/a/%2e", Ok("/a/"));
    check("/a/%2e/", Ok("/a/"));
    check("/a/b/%2e%2e", Ok("/a/"));
    check("/docs/%2e%2e/admin", Ok("/admin"));
    check("/public/%2E%2E/docs/1/edit", Ok("/docs/1/edit"));
    check("/%2e%2e/%2e%2e/%2e%2e/etc", Ok("/etc"));
}

#[test]
fn repeated_slashes_are_collapsed() {
    check("//", Ok("/"));
    check("///", Ok("/"));
    check("//a", Ok("/a"));
    check("/a//b", Ok("/a/b"));
    check("/a///b", Ok("/a/b"));
    check("/a/b//", Ok("/a/b/"));
    check("/docs//1/edit", Ok("/docs/1/edit"));
    check("//docs//1//edit//", Ok("/docs/1/edit/"));
    check("////docs/1/edit", Ok("/docs/1/edit"));
    check("/a/.//b", Ok("/a/b"));
    check("/a//./b", Ok("/a/b"));
    check("/.//", Ok("/"));
    check("//..//", Ok("/"));
    check("//evil.example/x", Ok("/evil.example/x"));
}

#[test]
fn empty_segments_vanish_before_dot_dot_is_resolved() {
    check("/a//../b", Ok("/b"));
    check("/a/b//../c", Ok("/a/c"));
    check("/a//..", Ok("/"));
    check("/a/b///..//c", Ok("/a/c"));
}

#[test]
fn trailing_slash_is_kept() {
    check("/a/", Ok("/a/"));
    check("/a//", Ok("/a/"));
    check("/a///", Ok("/a/"));
    check("/a/./", Ok("/a/"));
    check("/a/b/../", Ok("/a/"));
    check("/a/%2e/", Ok("/a/"));
    check("/%61/", Ok("/a/"));
    check("/a/%2e%2e/", Ok("/"));
    check("/docs/1/edit/", Ok("/docs/1/edit/"));
    check("/docs/1/edit//", Ok("/docs/1/edit/"));
    check("/docs/%31/edit/", Ok("/docs/1/edit/"));
}

#[test]
fn relative_and_empty_paths_are_rejected() {
    check("", Err(NotAbsolute));
    check("a", Err(NotAbsolute));
    check("a/b", Err(NotAbsolute));
    check("./a", Err(NotAbsolute));
    check("../a", Err(NotAbsolute));
    check(".", Err(NotAbsolute));
    check("%2F", Err(NotAbsolute));
    check("%2Fa", Err(NotAbsolute));
    check("http://evil.example/x", Err(NotAbsolute));
    check("*", Err(NotAbsolute));
    check(" /a", Err(NotAbsolute));
    check("\\a", Err(NotAbsolute));
    check("?x=1", Err(NotAbsolute));
}

#[test]
fn invalid_percent_encoding_is_rejected() {
    check("/%", Err(InvalidPercentEncoding));
    check("/%4", Err(InvalidPercentEncoding));
    check("/%2", Err(InvalidPercentEncoding));
    check("/%zz", Err(InvalidPercentEncoding));
    check("/%g0", Err(InvalidPercentEncoding));
    check("/%0g", Err(InvalidPercentEncoding));
    check("/%G1", Err(InvalidPercentEncoding));
    check("/a%", Err(InvalidPercentEncoding));
    check("/a%2", Err(InvalidPercentEncoding));
    check("/%%", Err(InvalidPercentEncoding));
    check("/%%41", Err(InvalidPercentEncoding));
    check("/%-1", Err(InvalidPercentEncoding));
    check("/%+1", Err(InvalidPercentEncoding));
    check("/% 1", Err(InvalidPercentEncoding));
    check("/%4/", Err(InvalidPercentEncoding));
    check("/%/a", Err(InvalidPercentEncoding));
    check("/%é1", Err(InvalidPercentEncoding));
    check("/%1é", Err(InvalidPercentEncoding));
    check("/a/%x1/b", Err(InvalidPercentEncoding));
    check("/a/b/c%", Err(InvalidPercentEncoding));
    check("/docs/%3/edit", Err(InvalidPercentEncoding));
    check("/%u0041", Err(InvalidPercentEncoding));
}

#[test]
fn nul_bytes_are_rejected() {
    check("/\0", Err(NulByte));
    check("/a\0b", Err(NulByte));
    check("/a/\0/b", Err(NulByte));
    check("/%00", Err(NulByte));
    check("/a%00", Err(NulByte));
    check("/a/%00/b", Err(NulByte));
    check("/docs/1/edit%00.html", Err(NulByte));
    check("/%00%", Err(NulByte));
}

#[test]
fn encoded_slashes_are_rejected() {
    check("/%2F", Err(EncodedSlash));
    check("/%2f", Err(EncodedSlash));
    check("/a%2Fb", Err(EncodedSlash));
    check("/a/%2f/b", Err(EncodedSlash));
    check("/docs%2F1%2Fedit", Err(EncodedSlash));
    check("/..%2F", Err(EncodedSlash));
    check("/%2e%2e%2f", Err(EncodedSlash));
    check("/%2F%2E%2E", Err(EncodedSlash));
    check("/docs/1/edit%2f", Err(EncodedSlash));
}

#[test]
fn backslashes_are_rejected() {
    check("/%5C", Err(EncodedBackslash));
    check("/%5c", Err(EncodedBackslash));
    check("/a%5cb", Err(EncodedBackslash));
    check("/..%5c..%5cetc", Err(EncodedBackslash));
    check("/docs%5C1", Err(EncodedBackslash));
    check("/\\", Err(Backslash));
    check("/a\\b", Err(Backslash));
    check("/..\\", Err(Backslash));
    check("/a/\\/b", Err(Backslash));
    check("/\\\\evil.example", Err(Backslash));
    check("/docs\\1\\edit", Err(Backslash));
}

#[test]
fn dot_segments_with_parameters_are_rejected() {
    check("/..;", Err(DotSegmentParameters));
    check("/..;/", Err(DotSegmentParameters));
    check("/..;/admin", Err(DotSegmentParameters));
    check("/a/..;/b", Err(DotSegmentParameters));
    check("/.;", Err(DotSegmentParameters));
    check("/.;x", Err(DotSegmentParameters));
    check("/a/.;x/b", Err(DotSegmentParameters));
    check("/..;jsessionid=1", Err(DotSegmentParameters));
    check("/a/..;a=b/c", Err(DotSegmentParameters));
    check("/%2e%2e;/a", Err(DotSegmentParameters));
    check("/.%2e;x", Err(DotSegmentParameters));
    check("/%2e;", Err(DotSegmentParameters));
    check("/public/..;/docs/1/edit", Err(DotSegmentParameters));
    check("/a;b/..;c", Err(DotSegmentParameters));
}

#[test]
fn the_first_error_from_the_left_wins() {
    check("/%zz/%00", Err(InvalidPercentEncoding));
    check("/%00/%zz", Err(NulByte));
    check("/%2F/\\", Err(EncodedSlash));
    check("/\\/%2F", Err(Backslash));
    check("/..;/%zz", Err(DotSegmentParameters));
    check("/%zz/..;", Err(InvalidPercentEncoding));
    check("/%5C%2F", Err(EncodedBackslash));
    check("/a%2F%00", Err(EncodedSlash));
}

#[test]
fn errors_after_a_rewrite_are_still_found() {
    check("/a//b/%zz", Err(InvalidPercentEncoding));
    check("/%41/%00", Err(NulByte));
    check("/./\\", Err(Backslash));
    check("/a/../%2F", Err(EncodedSlash));
    check("/%3a/%5c", Err(EncodedBackslash));
    check("/a/./..;/b", Err(DotSegmentParameters));
    check("//\0", Err(NulByte));
}

#[test]
fn spellings_of_one_page_agree() {
    for spelling in [
        "/docs/1/edit",
        "/docs//1/edit",
        "/docs/./1/edit",
        "/docs/%31/edit",
        "/docs/2/../1/edit",
        "/%64ocs/1/%65dit",
        "//docs///1//edit",
        "/x/../docs/1/edit",
        "/docs/1/%2e/edit",
        "/../docs/1/edit",
    ] {
        check(spelling, Ok("/docs/1/edit"));
    }
}

#[test]
fn errors_have_readable_messages() {
    assert_eq!(NotAbsolute.to_string(), "path must start with '/'");
    assert_eq!(NulByte.to_string(), "NUL byte in path");
    assert_eq!(EncodedSlash.to_string(), "encoded '/' (%2F) in path");
    assert_eq!(EncodedBackslash.to_string(), "encoded '\\' (%5C) in path");
    assert_eq!(Backslash.to_string(), "backslash in path");
    assert!(InvalidPercentEncoding
        .to_string()
        .contains("two hex digits"));
    assert!(DotSegmentParameters.to_string().contains("'..;'"));
}

#[test]
fn characters_an_app_may_read_as_ascii_are_refused() {
    // Digits of other scripts: Python's int() and \d accept every one of them.
    check("/docs/%EF%BC%91/edit", Err(LookalikeCharacter)); // fullwidth 1
    check("/docs/%ef%bc%91/edit", Err(LookalikeCharacter));
    check("/docs/\u{FF11}/edit", Err(LookalikeCharacter));
    check("/docs/%D9%A1/edit", Err(LookalikeCharacter)); // Arabic-Indic 1
    check("/docs/%DB%B1/edit", Err(LookalikeCharacter)); // extended Arabic-Indic 1
    check("/docs/%E0%A5%A7/edit", Err(LookalikeCharacter)); // Devanagari 1
    check("/docs/%F0%9D%9F%8F/edit", Err(LookalikeCharacter)); // mathematical bold 1
    check("/docs/%C2%B9/edit", Err(LookalikeCharacter)); // superscript 1
    check("/docs/%E2%91%A0/edit", Err(LookalikeCharacter)); // circled 1
    check("/docs/1%E2%85%A0/edit", Err(LookalikeCharacter)); // Roman numeral one
                                                             // Letters and punctuation with an ASCII compatibility form.
    check("/docs/1/%EF%BD%85dit", Err(LookalikeCharacter)); // fullwidth e
    check("/docs%EF%BC%8F1/edit", Err(LookalikeCharacter)); // fullwidth solidus
    check("/docs/1/%E2%80%A4%E2%80%A4/edit", Err(LookalikeCharacter)); // one dot leaders
    check("/%E2%84%AAelvin", Err(LookalikeCharacter)); // Kelvin sign
    check("/docs/1/edi%C5%BF", Err(LookalikeCharacter)); // long s
    check("/%EF%AC%81le", Err(LookalikeCharacter)); // fi ligature
}

#[test]
fn other_non_ascii_text_is_kept() {
    check("/wiki/%C3%A9t%C3%A9", Ok("/wiki/%C3%A9t%C3%A9"));
    check("/wiki/%c3%a9", Ok("/wiki/%C3%A9"));
    check("/wiki/été", Ok("/wiki/été"));
    check("/%E6%97%A5%E6%9C%AC", Ok("/%E6%97%A5%E6%9C%AC")); // 日本
    check("/%D0%B4%D0%BE%D0%BA", Ok("/%D0%B4%D0%BE%D0%BA")); // Cyrillic
    check("/%FF", Ok("/%FF")); // not UTF-8: no character to read as ASCII
    check("/%E2%82", Ok("/%E2%82"));
}

fn check_params(input: &str, expected: Result<&str, PathError>) {
    let got = strip_path_parameters(input);
    assert_eq!(
        got.as_ref().map(|p| p.as_ref()),
        expected.as_ref().map(|p| *p),
        "strip_path_parameters({input:?})"
    );
    if let Ok(out) = &got {
        assert_eq!(
            matches!(out, Cow::Borrowed(_)),
            !input.contains(';'),
            "borrows exactly when there is no ';': {input:?}"
        );
        let again = strip_path_parameters(out).map(Cow::into_owned);
        assert_eq!(
            again.as_deref(),
            Ok(out.as_ref()),
            "idempotent on {input:?}"
        );
    }
}

#[test]
fn path_parameters_are_removed_from_every_segment() {
    check_params("/docs/1/edit", Ok("/docs/1/edit"));
    check_params("/docs;x/1/edit", Ok("/docs/1/edit"));
    check_params("/docs/1;jsessionid=A/edit", Ok("/docs/1/edit"));
    check_params("/docs/1/edit;x", Ok("/docs/1/edit"));
    check_params("/docs;a;b=c/1;d/edit;e", Ok("/docs/1/edit"));
    check_params("/docs/1/edit/;jsessionid=A", Ok("/docs/1/edit/"));
    check_params("/;jsessionid=A", Ok("/"));
    check_params("/docs/1/", Ok("/docs/1/"));
    check_params("/", Ok("/"));
    check_params("/docs/%3Bx/1", Ok("/docs/%3Bx/1"));
}

#[test]
fn a_segment_of_parameters_alone_is_refused_unless_last() {
    check_params("/;x/docs/1/edit", Err(EmptySegmentParameters));
    check_params("/docs/;x/1/edit", Err(EmptySegmentParameters));
    check_params("/docs/1/;/edit", Err(EmptySegmentParameters));
}

#[test]
fn the_rule_path_follows_the_path_parameters_setting() {
    use rules::{rule_path, PathParameters::*};
    assert_eq!(
        rule_path("/docs/1;x/edit", Strip).as_deref(),
        Ok("/docs/1/edit")
    );
    assert_eq!(
        rule_path("/docs/1/edit", Strip).as_deref(),
        Ok("/docs/1/edit")
    );
    assert_eq!(rule_path("/docs/1;x/edit", Reject), Err(Parameters));
    assert_eq!(rule_path("/;x", Reject), Err(Parameters));
    assert!(matches!(
        rule_path("/docs/1/edit", Reject),
        Ok(Cow::Borrowed("/docs/1/edit"))
    ));
}
