//! The rule tables the end-to-end tests protect the upstream with, one `[[rule]]` table per
//! const. A test's rule file is the tables it needs, concatenated:
//! `[DOC_EDIT, DOC_SAVE, TAB].concat()`. A variant is built from a table (`format!` another
//! key onto it) or, where it really differs, written in the test that needs it.
//!
//! Paths are the upstream app's ([`crate::Upstream`]): `/echo/*` answers with what it was
//! sent, `/html/*` serves pages the banner can be injected into.

/// `/echo/docs/{id}/edit` locks `doc:{id}`: the document editor.
pub const DOC_EDIT: &str = r#"
[[rule]]
id = "doc-edit"
pattern = "/echo/docs/(?P<id>[0-9]+)/edit"
resource = "doc:{id}"
"#;

/// `POST /echo/docs/{id}/save` locks the same `doc:{id}` as [`DOC_EDIT`].
pub const DOC_SAVE: &str = r#"
[[rule]]
id = "doc-save"
pattern = "/echo/docs/(?P<id>[0-9]+)/save"
resource = "doc:{id}"
methods = ["POST"]
"#;

/// `/docs/{id}/edit` locks `doc:{id}`: [`DOC_EDIT`] for upstreams other than the echo app,
/// which see the path exactly as the client sent it.
pub const BARE_DOC_EDIT: &str = r#"
[[rule]]
id = "doc-edit"
pattern = "/docs/(?P<id>[0-9]+)/edit"
resource = "doc:{id}"
"#;

/// `/echo/doc/{id}` locks `doc:{id}`: one page per document, as the Redis tests use.
pub const DOC: &str = r#"
[[rule]]
id = "doc"
pattern = "/echo/doc/(?P<id>[0-9]+)"
resource = "doc:{id}"
"#;

/// `/echo/tab/{id}` locks `tab:{id}` per browser tab (`owner = "session"`).
pub const TAB: &str = r#"
[[rule]]
id = "tab"
pattern = "/echo/tab/(?P<id>[0-9]+)"
resource = "tab:{id}"
owner = "session"
"#;

/// `/echo/review/{id}` locks `review:{id}`; anyone else is redirected to the document.
pub const REVIEW: &str = r#"
[[rule]]
id = "review"
pattern = "/echo/review/(?P<id>[0-9]+)"
resource = "review:{id}"
mode = "redirect"
redirect_to = "/echo/docs/{id}?notice=busy"
"#;

/// `/echo/settings` locks `settings`; anyone else may read but not write.
pub const SETTINGS: &str = r#"
[[rule]]
id = "settings"
pattern = "/echo/settings"
resource = "settings"
mode = "read_only"
"#;

/// Every `/html/*` page locks `page:{kind}`, so a signed-in request to it may get the banner.
pub const PAGE: &str = r#"
[[rule]]
id = "page"
pattern = "/html/(?P<kind>.+)"
resource = "page:{kind}"
"#;

#[cfg(test)]
mod tests {
    use super::*;

    /// Every fixture is one valid rule table, so the tables a test needs concatenate into a
    /// valid rule file (ids aside, which a file must not repeat).
    #[test]
    fn each_fixture_is_one_valid_rule() {
        for table in [
            DOC_EDIT,
            DOC_SAVE,
            BARE_DOC_EDIT,
            DOC,
            TAB,
            REVIEW,
            SETTINGS,
            PAGE,
        ] {
            assert!(table.starts_with("\n[[rule]]\n"), "{table}");
            let parsed = rules::parse_rules_toml(table).expect(table);
            assert_eq!(parsed.len(), 1, "{table}");
            assert_eq!(rules::validate_rules(&parsed), Vec::new(), "{table}");
        }
        let file = [DOC_EDIT, DOC_SAVE, DOC, TAB, REVIEW, SETTINGS, PAGE].concat();
        assert_eq!(rules::parse_rules_toml(&file).expect(&file).len(), 7);
    }
}
