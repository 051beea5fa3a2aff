//! Where a request carries its token.

use auth::token_from_headers;

const COOKIE: &str = "latch_token";

fn find<'a>(cookies: &[&'a str], authorization: Option<&'a str>) -> Option<&'a str> {
    token_from_headers(
        cookies.iter().map(|c| c.as_bytes()),
        authorization.map(str::as_bytes),
        COOKIE,
    )
}

#[test]
fn bearer_scheme_in_any_case() {
    for header in [
        "Bearer abc.def.ghi",
        "bearer abc.def.ghi",
        "BEARER   abc.def.ghi  ",
        "Bearer\tabc.def.ghi",
    ] {
        assert_eq!(find(&[], Some(header)), Some("abc.def.ghi"), "{header:?}");
    }
}

#[test]
fn bearer_wins_over_the_cookie() {
    assert_eq!(
        find(&["latch_token=from-cookie"], Some("Bearer from-header")),
        Some("from-header")
    );
}

#[test]
fn other_schemes_and_empty_bearers_fall_back_to_the_cookie() {
    for header in [
        "Basic YWxpY2U6c2VjcmV0",
        "Bearer",
        "Bearer    ",
        "",
        "Bearerabc",
    ] {
        assert_eq!(
            find(&["latch_token=from-cookie"], Some(header)),
            Some("from-cookie"),
            "{header:?}"
        );
    }
}

#[test]
fn the_named_cookie_among_several() {
    assert_eq!(
        find(&["theme=dark; latch_token=tok.en.x;session=1"], None),
        Some("tok.en.x")
    );
    assert_eq!(
        find(&[" latch_token = spaced ;other=1"], None),
        Some("spaced")
    );
    assert_eq!(find(&["latch_token=\"quoted\""], None), Some("quoted"));
}

#[test]
fn cookie_names_match_exactly() {
    assert_eq!(
        find(&["xlatch_token=a; latch_token_old=b; Latch_Token=c"], None),
        None
    );
}

#[test]
fn the_cookie_may_be_in_any_of_several_cookie_headers() {
    assert_eq!(
        find(&["theme=dark", "lang=en; latch_token=second-header"], None),
        Some("second-header")
    );
}

#[test]
fn empty_values_count_as_absent() {
    assert_eq!(find(&["latch_token="], None), None);
    assert_eq!(find(&["latch_token=\"\""], None), None);
    assert_eq!(
        find(&["latch_token=", "latch_token=later"], None),
        Some("later")
    );
    assert_eq!(find(&[], None), None);
    assert_eq!(find(&[""], Some("")), None);
}

#[test]
fn non_utf8_values_count_as_absent() {
    let bad_cookie: &[u8] = b"latch_token=\xff\xfe";
    assert_eq!(
        token_from_headers([bad_cookie].into_iter(), Some(b"Bearer \xff"), COOKIE),
        None
    );
    // A broken neighbour does not hide a good token.
    let mixed: &[u8] = b"junk=\xff; latch_token=good";
    assert_eq!(
        token_from_headers([mixed].into_iter(), None, COOKIE),
        Some("good")
    );
}

#[test]
fn an_empty_cookie_name_matches_nothing() {
    assert_eq!(
        token_from_headers([&b"=value"[..]].into_iter(), None, ""),
        None
    );
}

#[test]
fn cookie_values_finds_each_name_once_in_one_pass() {
    let headers = [
        &b"a=1; latch_token=tok; x=\"quoted\""[..],
        &b"latch_oidc=; latch_oidc=sealed; latch_token=second"[..],
    ];
    let [token, session, quoted, absent] = auth::cookie_values(
        headers.iter().copied(),
        ["latch_token", "latch_oidc", "x", "nope"],
    );
    assert_eq!(token, Some("tok"), "the first value wins");
    assert_eq!(session, Some("sealed"), "an empty value counts as absent");
    assert_eq!(quoted, Some("quoted"));
    assert_eq!(absent, None);
    let [empty_name] = auth::cookie_values(headers.iter().copied(), [""]);
    assert_eq!(empty_name, None);
}
