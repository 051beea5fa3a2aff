use inject::script_tag;

#[test]
fn builds_a_deferred_script_with_data_attributes_and_nonce() {
    let tag = script_tag(
        "/_latch/banner.js",
        &[
            ("latch-prefix", "/_latch"),
            ("latch-path", "/docs/1/edit"),
            ("latch-lease", "30"),
            ("latch-page", "app"),
        ],
        Some("r4nd0m+/="),
    );
    assert_eq!(
        tag,
        "<script src=\"/_latch/banner.js\" defer data-latch-prefix=\"/_latch\" \
         data-latch-path=\"/docs/1/edit\" data-latch-lease=\"30\" data-latch-page=\"app\" \
         nonce=\"r4nd0m+/=\"></script>"
    );
}

#[test]
fn without_nonce_there_is_no_nonce_attribute() {
    assert_eq!(
        script_tag("/b.js", &[], None),
        "<script src=\"/b.js\" defer></script>"
    );
}

#[test]
fn every_attribute_value_is_escaped() {
    let evil = "\"><script>alert('x')</script>&amp;";
    let escaped = "&quot;&gt;&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;&amp;amp;";
    let tag = script_tag(evil, &[("latch-path", evil)], Some(evil));
    assert_eq!(
        tag,
        format!(
            "<script src=\"{escaped}\" defer data-latch-path=\"{escaped}\" \
             nonce=\"{escaped}\"></script>"
        )
    );
}

#[test]
fn non_ascii_values_are_kept_as_text() {
    assert_eq!(
        script_tag("/b.js", &[("latch-path", "/café/日本")], None),
        "<script src=\"/b.js\" defer data-latch-path=\"/café/日本\"></script>"
    );
}

#[test]
fn escapes_next_to_non_ascii_characters_keep_them_whole() {
    assert_eq!(
        script_tag("/b.js", &[("latch-path", "é<日\"ü>&")], None),
        "<script src=\"/b.js\" defer data-latch-path=\"é&lt;日&quot;ü&gt;&amp;\"></script>"
    );
}

#[test]
fn a_key_that_is_not_a_plain_name_is_left_out() {
    let tag = script_tag(
        "/b.js",
        &[
            ("ok-1", "a"),
            ("x\" onload=\"alert(1)", "b"),
            ("", "c"),
            ("Upper", "d"),
        ],
        None,
    );
    assert_eq!(tag, "<script src=\"/b.js\" defer data-ok-1=\"a\"></script>");
}
