//! Request-target forms, one case per line: `check(target, is_options, expected)`.

use rules::AbsolutePath::{AsWritten, Root};
use rules::TargetError::{self, *};
use rules::{parse_target, Target};

fn check(raw: &[u8], is_options: bool, expected: Result<Target<'_>, TargetError>) {
    assert_eq!(
        parse_target(raw, is_options),
        expected,
        "parse_target({:?}, options: {is_options})",
        String::from_utf8_lossy(raw)
    );
}

fn absolute<'a>(
    authority: &'a str,
    path: rules::AbsolutePath<'a>,
) -> Result<Target<'a>, TargetError> {
    Ok(Target::Absolute {
        authority,
        path_and_query: path,
    })
}

#[test]
fn origin_form_is_taken_as_it_is() {
    check(b"/", false, Ok(Target::Origin("/")));
    check(b"/docs/1/edit", false, Ok(Target::Origin("/docs/1/edit")));
    check(
        b"/docs/1/edit?x=1",
        false,
        Ok(Target::Origin("/docs/1/edit?x=1")),
    );
    check(b"//docs/1/edit", false, Ok(Target::Origin("//docs/1/edit")));
    check(b"/a#frag", false, Ok(Target::Origin("/a")));
    check(b"/http://x/y", false, Ok(Target::Origin("/http://x/y")));
}

#[test]
fn targets_without_a_leading_slash_are_refused() {
    check(b"docs/1/edit", false, Err(NotAPath));
    check(b"docs/1/edit", true, Err(NotAPath));
    check(b"%2Fdocs/1/edit", false, Err(NotAPath));
    check(b"%2fdocs/1/edit", false, Err(NotAPath));
    check(b"\\docs\\1\\edit", false, Err(NotAPath));
    check(b"?x=1", false, Err(NotAPath));
    check(b".", false, Err(NotAPath));
    check(b"../docs/1/edit", false, Err(NotAPath));
    check(b"x:/docs/1/edit", false, Err(NotAPath));
    check(b"a:docs/1/edit", false, Err(NotAPath));
    check(b"urn:docs:1", false, Err(NotAPath));
    check(b"127.0.0.1:8080", false, Err(NotAPath));
    check(b"host:443", false, Err(NotAPath));
    check(b"**", true, Err(NotAPath));
    check(b"*/docs", true, Err(NotAPath));
    check(b"", false, Err(Empty));
    check(b"#frag", false, Err(Empty));
}

#[test]
fn the_asterisk_is_for_options_only() {
    check(b"*", true, Ok(Target::Asterisk));
    check(b"*", false, Err(AsteriskNotOptions));
}

#[test]
fn absolute_form_names_its_authority_and_path() {
    check(
        b"http://a.example/docs/1/edit",
        false,
        absolute("a.example", AsWritten("/docs/1/edit")),
    );
    check(
        b"HTTP://a.example:8080/x?y",
        false,
        absolute("a.example:8080", AsWritten("/x?y")),
    );
    check(
        b"https://127.0.0.1:8443/",
        false,
        absolute("127.0.0.1:8443", AsWritten("/")),
    );
    check(
        b"http://[::1]:80/p",
        false,
        absolute("[::1]:80", AsWritten("/p")),
    );
    check(b"http://a.example", false, absolute("a.example", Root("")));
    check(
        b"http://a.example?q=1",
        false,
        absolute("a.example", Root("?q=1")),
    );
    check(
        b"http://a.example//docs",
        false,
        absolute("a.example", AsWritten("//docs")),
    );
    check(
        b"http://a.example/docs#f",
        false,
        absolute("a.example", AsWritten("/docs")),
    );
    assert_eq!(Root("?q=1").to_origin_form(), "/?q=1");
    assert_eq!(Root("").to_origin_form(), "/");
    assert_eq!(AsWritten("/a?b").to_origin_form(), "/a?b");
}

#[test]
fn absolute_form_with_another_scheme_or_a_bad_authority_is_refused() {
    check(b"ftp://a.example/docs", false, Err(UnsupportedScheme));
    check(b"ws://a.example/docs", false, Err(UnsupportedScheme));
    check(b"foo:bar://host/admin", false, Err(NotAPath));
    check(b"://host/docs", false, Err(NotAPath));
    check(b"http:///docs/1/edit", false, Err(NoAuthority));
    check(b"http://?x", false, Err(NoAuthority));
    check(b"http://user@a.example/docs", false, Err(UserInfo));
    check(b"http://user:pw@a.example/docs", false, Err(UserInfo));
    check(b"http://a%2Eexample/docs", false, Err(InvalidAuthority));
    check(b"http://a example/docs", false, Err(InvalidAuthority));
    check(b"http://a\\b/docs", false, Err(InvalidAuthority));
}

#[test]
fn targets_that_are_not_utf8_are_refused() {
    check(b"/docs/\xff/edit", false, Err(NotUtf8));
    check(b"http://a.example/\xc3", false, Err(NotUtf8));
}

#[test]
fn the_path_is_the_target_without_its_query() {
    let path = |raw: &'static str, is_options: bool| {
        parse_target(raw.as_bytes(), is_options).unwrap().path()
    };
    assert_eq!(path("/docs/1/edit?x=1", false), Some("/docs/1/edit"));
    assert_eq!(path("/docs/1/edit?", false), Some("/docs/1/edit"));
    assert_eq!(path("/docs/1/edit", false), Some("/docs/1/edit"));
    assert_eq!(path("/a?b?c", false), Some("/a"));
    assert_eq!(path("/docs/1/edit#top", false), Some("/docs/1/edit"));
    assert_eq!(path("/docs/1/edit?x#y", false), Some("/docs/1/edit"));
    assert_eq!(path("http://a.example/docs/1?x=1", false), Some("/docs/1"));
    assert_eq!(path("http://a.example?x=1", false), Some("/"));
    assert_eq!(path("http://a.example", false), Some("/"));
    assert_eq!(path("*", true), None);
}
