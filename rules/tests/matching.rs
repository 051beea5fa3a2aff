//! Rule matching, one case per line: `check(&set, method, path, Some((rule_id, resource)))` or
//! `None` for no match; `check_redirect` does the same for the rendered redirect target.

use rules::{Mode, Rule, RuleSet};

/// The set as the proxy matches with it: with its DFA, when the rules fit in one (the rule
/// set's own tests check that both engines find the same rules).
fn set(rules: Vec<Rule>) -> RuleSet {
    match RuleSet::compile(rules) {
        Ok(set) => set.with_dfa(),
        Err(issues) => panic!("test rules should be valid: {issues:#?}"),
    }
}

fn check(set: &RuleSet, method: &str, path: &str, expected: Option<(&str, &str)>) {
    let got = set.find(method, path);
    let got = got
        .as_ref()
        .map(|m| (m.rule.id.as_str(), m.resource.as_str()));
    assert_eq!(got, expected, "find({method:?}, {path:?})");
}

fn check_redirect(set: &RuleSet, path: &str, expected: Option<&str>) {
    let found = set.find("GET", path);
    let Some(found) = found else {
        panic!("find(GET, {path:?}) should match a rule");
    };
    assert_eq!(
        found.redirect_to.as_deref(),
        expected,
        "redirect for {path:?}"
    );
}

fn rule(id: &str, pattern: &str) -> Rule {
    Rule::new(id, pattern)
}

/// Terse tweaks so that every rule fits on one line.
trait Tweak {
    fn priority(self, priority: i32) -> Self;
    fn methods(self, methods: &[&str]) -> Self;
    fn resource(self, template: &str) -> Self;
    fn redirect(self, template: &str) -> Self;
    fn ci(self) -> Self;
    fn disabled(self) -> Self;
}

impl Tweak for Rule {
    fn priority(mut self, priority: i32) -> Self {
        self.priority = priority;
        self
    }
    fn methods(mut self, methods: &[&str]) -> Self {
        self.methods = Some(methods.iter().map(|m| m.to_string()).collect());
        self
    }
    fn resource(mut self, template: &str) -> Self {
        self.resource = Some(template.to_owned());
        self
    }
    fn redirect(mut self, template: &str) -> Self {
        self.mode = Mode::Redirect;
        self.redirect_to = Some(template.to_owned());
        self
    }
    fn ci(mut self) -> Self {
        self.case_insensitive = true;
        self
    }
    fn disabled(mut self) -> Self {
        self.enabled = false;
        self
    }
}

#[test]
fn patterns_match_the_whole_path() {
    let s = set(vec![rule("edit", r"/docs/\d+/edit")]);
    check(&s, "GET", "/docs/1/edit", Some(("edit", "edit")));
    check(&s, "GET", "/docs/12345/edit", Some(("edit", "edit")));
    check(&s, "GET", "/docs/1/edit/x", None);
    check(&s, "GET", "/x/docs/1/edit", None);
    check(&s, "GET", "/docs/1/edits", None);
    check(&s, "GET", "/docs/1/edi", None);
    check(&s, "GET", "/docs//edit", None);
    check(&s, "GET", "/docs/a/edit", None);
    check(&s, "GET", "/docs/1/edit.json", None);
    check(&s, "GET", "/", None);
    check(&s, "GET", "", None);
}

#[test]
fn alternations_are_anchored_as_a_whole() {
    let s = set(vec![rule("alt", "/a|/b")]);
    check(&s, "GET", "/a", Some(("alt", "alt")));
    check(&s, "GET", "/b", Some(("alt", "alt")));
    check(&s, "GET", "/ab", None);
    check(&s, "GET", "/a/b", None);
    check(&s, "GET", "/xb", None);
    check(&s, "GET", "/bx", None);
}

#[test]
fn explicit_anchors_in_a_pattern_still_work() {
    let s = set(vec![rule("anchored", r"^/docs/\d+$")]);
    check(&s, "GET", "/docs/1", Some(("anchored", "anchored")));
    check(&s, "GET", "/docs/1/", Some(("anchored", "anchored")));
    check(&s, "GET", "/docs/1/x", None);
    check(&s, "GET", "/x/docs/1", None);
}

#[test]
fn one_trailing_slash_is_ignored() {
    let s = set(vec![
        rule("edit", r"/docs/\d+/edit"),
        rule("dir", "/dir/"),
        rule("root", "/"),
        rule("admin", "/admin/.*"),
    ]);
    check(&s, "GET", "/docs/1/edit/", Some(("edit", "edit")));
    check(&s, "GET", "/docs/1/edit//", None);
    check(&s, "GET", "/dir/", Some(("dir", "dir")));
    check(&s, "GET", "/dir", None);
    check(&s, "GET", "/", Some(("root", "root")));
    check(&s, "GET", "/x", None);
    check(&s, "GET", "/admin/", Some(("admin", "admin")));
    check(&s, "GET", "/admin/users/1", Some(("admin", "admin")));
    check(&s, "GET", "/admin/users/1/", Some(("admin", "admin")));
    check(&s, "GET", "/admin", None);
}

#[test]
fn a_trailing_slash_never_changes_the_resource() {
    let s = set(vec![
        rule("files", "/files/(?P<rest>.*)").resource("file:{rest}"),
        rule("f", "/f/(.*)"),
        rule("doc", r"/docs/(?P<id>[^/]+)").resource("doc:{id}"),
    ]);
    check(&s, "GET", "/files/a/b", Some(("files", "file:a/b")));
    check(&s, "GET", "/files/a/b/", Some(("files", "file:a/b")));
    check(&s, "GET", "/files/", Some(("files", "file:")));
    check(&s, "GET", "/f/x", Some(("f", "f:x")));
    check(&s, "GET", "/f/x/", Some(("f", "f:x")));
    check(&s, "GET", "/docs/7", Some(("doc", "doc:7")));
    check(&s, "GET", "/docs/7/", Some(("doc", "doc:7")));
}

#[test]
fn case_insensitive_rules_ignore_case_and_lowercase_captures() {
    let s = set(vec![
        rule("ci", r"/docs/(?P<id>[a-z]+)/edit").ci(),
        rule("named", r"/notes/(?P<id>[a-z]+)")
            .ci()
            .resource("note:{id}"),
        rule("cs", r"/pages/(?P<id>[a-z]+)"),
    ]);
    check(&s, "GET", "/docs/abc/edit", Some(("ci", "ci:abc")));
    check(&s, "GET", "/DOCS/ABC/EDIT", Some(("ci", "ci:abc")));
    check(&s, "GET", "/Docs/AbC/Edit", Some(("ci", "ci:abc")));
    check(&s, "GET", "/Docs/AbC/Edit/", Some(("ci", "ci:abc")));
    check(&s, "GET", "/NOTES/XY", Some(("named", "note:xy")));
    check(&s, "GET", "/notes/xy", Some(("named", "note:xy")));
    check(&s, "GET", "/pages/abc", Some(("cs", "cs:abc")));
    check(&s, "GET", "/PAGES/abc", None);
    check(&s, "GET", "/pages/ABC", None);
}

#[test]
fn case_insensitive_and_sensitive_rules_share_a_set() {
    let s = set(vec![rule("cs", "/x"), rule("ci", "/y").ci()]);
    check(&s, "GET", "/x", Some(("cs", "cs")));
    check(&s, "GET", "/X", None);
    check(&s, "GET", "/y", Some(("ci", "ci")));
    check(&s, "GET", "/Y", Some(("ci", "ci")));
}

#[test]
fn the_highest_priority_wins() {
    let s = set(vec![
        rule("low", "/docs/.*"),
        rule("high", r"/docs/\d+/edit").priority(10),
        rule("neg", r"/docs/\d+/view").priority(-5),
        rule("max", "/docs/top").priority(1000),
        rule("almost", "/docs/top").priority(999),
    ]);
    check(&s, "GET", "/docs/1/edit", Some(("high", "high")));
    check(&s, "GET", "/docs/1/view", Some(("low", "low")));
    check(&s, "GET", "/docs/anything", Some(("low", "low")));
    check(&s, "GET", "/docs/top", Some(("max", "max")));
    check(&s, "GET", "/other", None);
}

#[test]
fn priority_ties_go_to_the_smallest_id() {
    let s = set(vec![rule("b", "/t"), rule("a", "/t"), rule("c", "/t")]);
    check(&s, "GET", "/t", Some(("a", "a")));
    let s = set(vec![rule("c", "/t"), rule("b", "/t"), rule("a", "/t")]);
    check(&s, "GET", "/t", Some(("a", "a")));
    let s = set(vec![
        rule("b", "/t"),
        rule("a", "/t"),
        rule("c", "/t").priority(1),
    ]);
    check(&s, "GET", "/t", Some(("c", "c")));
    let s = set(vec![
        rule("a-2", "/t"),
        rule("a-10", "/t"),
        rule("a_1", "/t"),
    ]);
    check(&s, "GET", "/t", Some(("a-10", "a-10")));
    let s = set(vec![
        rule("z", "/t").priority(-1),
        rule("y", "/t").priority(-1),
    ]);
    check(&s, "GET", "/t", Some(("y", "y")));
}

#[test]
fn methods_filter_before_priority() {
    let s = set(vec![
        rule("save", r"/docs/(\d+)").methods(&["POST", "put"]),
        rule("view", r"/docs/(\d+)").priority(-1),
        rule("purge", "/purge").methods(&["DELETE"]),
        rule("dav", "/dav/.*").methods(&["PROPFIND", "MKCOL"]),
    ]);
    check(&s, "POST", "/docs/1", Some(("save", "save:1")));
    check(&s, "PUT", "/docs/1", Some(("save", "save:1")));
    check(&s, "put", "/docs/1", Some(("save", "save:1")));
    check(&s, "Post", "/docs/1", Some(("save", "save:1")));
    check(&s, "GET", "/docs/1", Some(("view", "view:1")));
    check(&s, "HEAD", "/docs/1", Some(("view", "view:1")));
    check(&s, "DELETE", "/docs/1", Some(("view", "view:1")));
    check(&s, "PATCH", "/docs/1", Some(("view", "view:1")));
    check(&s, "DELETE", "/purge", Some(("purge", "purge")));
    check(&s, "GET", "/purge", None);
    check(&s, "POST", "/purge", None);
    check(&s, "PROPFIND", "/dav/x", Some(("dav", "dav")));
    check(&s, "MKCOL", "/dav/x", Some(("dav", "dav")));
    check(&s, "GET", "/dav/x", None);
    check(&s, "", "/dav/x", None);
}

#[test]
fn disabled_rules_never_match() {
    let s = set(vec![
        rule("off", "/x").disabled(),
        rule("on", "/x").priority(-1),
    ]);
    check(&s, "GET", "/x", Some(("on", "on")));
    let s = set(vec![
        rule("off", "/x").priority(1000).disabled(),
        rule("on", "/x"),
    ]);
    check(&s, "GET", "/x", Some(("on", "on")));
    let s = set(vec![rule("off", "/x").disabled()]);
    check(&s, "GET", "/x", None);
    check(&s, "POST", "/x/", None);
}

#[test]
fn default_resource_is_the_id_and_every_capture() {
    let s = set(vec![
        rule("doc-edit", r"/docs/(?P<id>\d+)/edit"),
        rule("two", r"/two/(\w+)/(?P<n>\d+)"),
        rule("opt", r"/o(/(\d+))?"),
        rule("nc", r"/nc/(?:a|b)/(\d)"),
        rule("plain", "/plain"),
        rule("three", r"/3/(\d)/(\d)/(\d)"),
    ]);
    check(&s, "GET", "/docs/1/edit", Some(("doc-edit", "doc-edit:1")));
    check(
        &s,
        "GET",
        "/docs/42/edit/",
        Some(("doc-edit", "doc-edit:42")),
    );
    check(&s, "GET", "/two/a/5", Some(("two", "two:a:5")));
    check(&s, "GET", "/o", Some(("opt", "opt::")));
    check(&s, "GET", "/o/7", Some(("opt", "opt:/7:7")));
    check(&s, "GET", "/nc/a/1", Some(("nc", "nc:1")));
    check(&s, "GET", "/nc/b/2", Some(("nc", "nc:2")));
    check(&s, "GET", "/plain", Some(("plain", "plain")));
    check(&s, "GET", "/3/1/2/3", Some(("three", "three:1:2:3")));
}

#[test]
fn resource_templates_render_captures_and_escaped_braces() {
    let s = set(vec![
        rule("plain", r"/p/(?P<id>\d+)").resource("doc:{id}"),
        rule("open", r"/o/(?P<id>\d+)").resource("{{doc}}:{id}"),
        rule("wrap", r"/w/(?P<id>\d+)").resource("doc:{{{id}}}"),
        rule("close", r"/c/(?P<id>\d+)").resource("x}}y"),
        rule("fixed", r"/f/(?P<id>\d+)").resource("static"),
        rule("pair", r"/pair/(?P<a>\w+)/(?P<b>\w+)").resource("{b}-{a}"),
        rule("twice", r"/twice/(?P<a>\w+)").resource("{a}/{a}"),
        rule("absent", r"/absent(/(?P<id>\d+))?").resource("doc:{id}"),
        rule("unnamed", r"/u/(\d+)/(?P<id>\d+)").resource("u:{id}"),
    ]);
    check(&s, "GET", "/p/1", Some(("plain", "doc:1")));
    check(&s, "GET", "/o/1", Some(("open", "{doc}:1")));
    check(&s, "GET", "/w/1", Some(("wrap", "doc:{1}")));
    check(&s, "GET", "/c/1", Some(("close", "x}y")));
    check(&s, "GET", "/f/1", Some(("fixed", "static")));
    check(&s, "GET", "/f/2", Some(("fixed", "static")));
    check(&s, "GET", "/pair/x/y", Some(("pair", "y-x")));
    check(&s, "GET", "/twice/k", Some(("twice", "k/k")));
    check(&s, "GET", "/absent", Some(("absent", "doc:")));
    check(&s, "GET", "/absent/3", Some(("absent", "doc:3")));
    check(&s, "GET", "/u/8/9", Some(("unnamed", "u:9")));
}

#[test]
fn rules_may_share_a_resource() {
    let s = set(vec![
        rule("edit", r"/docs/(?P<id>\d+)/edit").resource("doc:{id}"),
        rule("save", r"/api/docs/(?P<id>\d+)")
            .methods(&["POST"])
            .resource("doc:{id}"),
    ]);
    check(&s, "GET", "/docs/5/edit", Some(("edit", "doc:5")));
    check(&s, "POST", "/api/docs/5", Some(("save", "doc:5")));
    check(&s, "GET", "/api/docs/5", None);
}

#[test]
fn redirect_targets_are_rendered() {
    let s = set(vec![
        rule("edit", r"/docs/(?P<id>\d+)/edit").redirect("/docs/{id}/view"),
        rule("busy", "/busy-page").redirect("/busy"),
        rule("query", r"/q/(?P<id>\d+)").redirect("/docs/{id}?locked=1"),
        rule("brace", r"/b/(?P<id>\d+)").redirect("/x{{{id}}}"),
        rule("keep", r"/k/(?P<id>[a-z]+)")
            .ci()
            .redirect("/view/{id}"),
        rule("block", "/blocked"),
        rule("ro", "/ro").resource("r"),
    ]);
    check_redirect(&s, "/docs/1/edit", Some("/docs/1/view"));
    check_redirect(&s, "/docs/1/edit/", Some("/docs/1/view"));
    check_redirect(&s, "/busy-page", Some("/busy"));
    check_redirect(&s, "/q/9", Some("/docs/9?locked=1"));
    check_redirect(&s, "/b/4", Some("/x{4}"));
    check_redirect(&s, "/K/AbC", Some("/view/AbC"));
    check_redirect(&s, "/blocked", None);
    check_redirect(&s, "/ro", None);
    check(&s, "GET", "/docs/1/edit", Some(("edit", "edit:1")));
    check(&s, "GET", "/K/AbC", Some(("keep", "keep:abc")));
}

#[test]
fn redirect_targets_that_leave_the_site_are_dropped() {
    let s = set(vec![
        rule("go", r"/go(?P<to>/.*)").redirect("/{to}"),
        rule("raw", r"/raw/(?P<to>.*)").redirect("/{to}"),
        rule("pair", r"/pair/(?P<a>[^/]*)-(?P<b>.*)").redirect("/{a}/{b}"),
    ]);
    check_redirect(&s, "/go/evil.example", None);
    check_redirect(&s, "/go/x", None);
    check_redirect(&s, "/raw/evil.example", Some("/evil.example"));
    check_redirect(&s, "/raw/\\evil.example", None);
    check_redirect(&s, "/raw/a\tb", None);
    check_redirect(&s, "/raw/a b", None);
    check_redirect(&s, "/raw/é", None);
    check_redirect(&s, "/raw/%2F%2Fevil", Some("/%2F%2Fevil"));
    check_redirect(&s, "/pair/-evil.example", None);
    check_redirect(&s, "/pair/a-b", Some("/a/b"));
    check(
        &s,
        "GET",
        "/go/evil.example",
        Some(("go", "go:/evil.example")),
    );
}

#[test]
fn the_rule_set_keeps_every_rule() {
    let s = set(vec![rule("b", "/b"), rule("a", "/a").disabled()]);
    assert_eq!(s.len(), 2);
    assert!(!s.is_empty());
    let ids: Vec<&str> = s.rules().iter().map(|r| r.id.as_str()).collect();
    assert_eq!(ids, ["b", "a"]);
    assert_eq!(s.get("a").map(|r| r.enabled), Some(false));
    assert_eq!(s.get("b").map(|r| r.pattern.as_str()), Some("/b"));
    assert_eq!(s.get("c"), None);
}

#[test]
fn the_empty_set_matches_nothing() {
    let s = RuleSet::empty();
    assert!(s.is_empty());
    assert_eq!(s.len(), 0);
    check(&s, "GET", "/", None);
    check(&s, "GET", "/docs/1/edit", None);
    let s = set(Vec::new());
    check(&s, "GET", "/", None);
    let s = RuleSet::default();
    check(&s, "GET", "/", None);
}

#[test]
fn match_exposes_the_whole_rule() {
    let s = set(vec![rule("r", "/r").methods(&["get"]).priority(3)]);
    let found = s.find("GET", "/r");
    let Some(found) = found else {
        panic!("/r should match");
    };
    assert_eq!(found.rule.priority, 3);
    assert_eq!(found.rule.methods.as_deref(), Some(&["get".to_owned()][..]));
    assert_eq!(found.rule.mode, Mode::Block);
}

#[test]
fn sets_matched_in_turn_on_one_thread_keep_to_their_own_rules() {
    let small = set(vec![rule("one", "/one/.*")]);
    let large = set(vec![
        rule("a", "/a"),
        rule("b", "/b/"),
        rule("one", "/elsewhere/.*"),
        rule("wide", "/.*").priority(-1),
    ]);
    let same_size = set(vec![rule("other", "/other/.*")]);
    for _ in 0..2 {
        check(&large, "GET", "/b/", Some(("b", "b")));
        check(&small, "GET", "/b/", None);
        check(&small, "GET", "/one/x", Some(("one", "one")));
        check(&large, "GET", "/one/x", Some(("wide", "wide")));
        check(&same_size, "GET", "/one/x", None);
        check(&same_size, "GET", "/other/x/", Some(("other", "other")));
        check(&small, "GET", "/other/x/", None);
        check(&large, "GET", "/b", Some(("wide", "wide")));
        check(&RuleSet::empty(), "GET", "/a", None);
        check(&large, "GET", "/a/", Some(("a", "a")));
    }
}

#[test]
fn a_shared_rule_set_is_usable_from_threads() {
    let s = std::sync::Arc::new(set(vec![rule("edit", r"/docs/(?P<id>\d+)/edit")]));
    let handles: Vec<_> = (0..4)
        .map(|n| {
            let s = s.clone();
            std::thread::spawn(move || {
                s.find("GET", &format!("/docs/{n}/edit"))
                    .map(|m| m.resource)
            })
        })
        .collect();
    for (n, handle) in handles.into_iter().enumerate() {
        assert_eq!(handle.join().ok().flatten(), Some(format!("edit:{n}")));
    }
}

#[test]
fn a_realistic_rule_file() {
    let s = set(vec![
        rule("doc-edit", r"/docs/(?P<id>\d+)/edit").resource("doc:{id}"),
        rule("doc-save", r"/docs/(?P<id>\d+)")
            .methods(&["POST", "PUT", "PATCH", "DELETE"])
            .resource("doc:{id}"),
        rule("doc-live", r"/docs/(?P<id>\d+)/live")
            .resource("doc:{id}")
            .priority(5),
        rule("admin", "/admin(/.*)?").priority(-10),
        rule("wiki", r"/wiki/(?P<page>[A-Za-z0-9_-]+)/edit")
            .ci()
            .resource("wiki:{page}"),
        rule("report", r"/reports/(?P<year>\d{4})/(?P<month>\d{2})")
            .resource("report:{year}-{month}"),
    ]);
    check(&s, "GET", "/docs/1/edit", Some(("doc-edit", "doc:1")));
    check(&s, "POST", "/docs/1/edit", Some(("doc-edit", "doc:1")));
    check(&s, "GET", "/docs/1", None);
    check(&s, "POST", "/docs/1", Some(("doc-save", "doc:1")));
    check(&s, "DELETE", "/docs/1/", Some(("doc-save", "doc:1")));
    check(&s, "GET", "/docs/1/live", Some(("doc-live", "doc:1")));
    check(&s, "GET", "/docs/1/view", None);
    check(&s, "GET", "/docs", None);
    check(&s, "GET", "/admin", Some(("admin", "admin:")));
    check(&s, "GET", "/admin/", Some(("admin", "admin:")));
    check(&s, "GET", "/admin/users", Some(("admin", "admin:/users")));
    check(&s, "GET", "/administrator", None);
    check(&s, "GET", "/wiki/Home/edit", Some(("wiki", "wiki:home")));
    check(&s, "GET", "/WIKI/HOME/EDIT", Some(("wiki", "wiki:home")));
    check(&s, "GET", "/wiki/Home", None);
    check(
        &s,
        "GET",
        "/reports/2024/05",
        Some(("report", "report:2024-05")),
    );
    check(&s, "GET", "/reports/2024/5", None);
    check(&s, "GET", "/reports/24/05", None);
}

#[test]
fn normalized_spellings_cannot_dodge_a_rule() {
    let s = set(vec![
        rule("doc-edit", r"/docs/(?P<id>\d+)/edit").resource("doc:{id}")
    ]);
    let norm = |path: &str| match rules::normalize_path(path) {
        Ok(path) => path.into_owned(),
        Err(err) => panic!("{path:?} should normalize: {err}"),
    };
    check(
        &s,
        "GET",
        &norm("/docs//1/edit"),
        Some(("doc-edit", "doc:1")),
    );
    check(
        &s,
        "GET",
        &norm("/docs/./1/edit"),
        Some(("doc-edit", "doc:1")),
    );
    check(
        &s,
        "GET",
        &norm("/docs/%31/edit"),
        Some(("doc-edit", "doc:1")),
    );
    check(
        &s,
        "GET",
        &norm("/docs/1/%65dit"),
        Some(("doc-edit", "doc:1")),
    );
    check(
        &s,
        "GET",
        &norm("/public/../docs/1/edit"),
        Some(("doc-edit", "doc:1")),
    );
    check(
        &s,
        "GET",
        &norm("/docs/1/x/../edit/"),
        Some(("doc-edit", "doc:1")),
    );
    check(
        &s,
        "GET",
        &norm("//docs//1//edit//"),
        Some(("doc-edit", "doc:1")),
    );
    check(
        &s,
        "GET",
        &norm("/docs/%2E/1/edit"),
        Some(("doc-edit", "doc:1")),
    );
    check(
        &s,
        "GET",
        &norm("/docs/0%31/edit"),
        Some(("doc-edit", "doc:01")),
    );
}

#[test]
fn a_resource_without_placeholders_names_one_resource_whatever_the_groups_caught() {
    let s = set(vec![
        rule("literal", "/held/(?P<rest>.*)").resource("held"),
        rule("grouped", "/docs/(?P<id>[0-9]+)/(edit|view)"),
        rule("mixed", "/w/(?P<page>[^/]+)/edit").resource("wiki"),
    ]);
    check(&s, "GET", "/held/a", Some(("literal", "held")));
    check(&s, "GET", "/held/b/c", Some(("literal", "held")));
    check(
        &s,
        "GET",
        "/docs/7/edit",
        Some(("grouped", "grouped:7:edit")),
    );
    check(&s, "GET", "/w/Home/edit", Some(("mixed", "wiki")));
}

#[test]
fn typed_int_captures_lock_one_resource_for_every_spelling() {
    let s = set(vec![
        rule("edit", "/docs/{id:int}/edit").resource("doc:{id}"),
        rule("rev", "/docs/{id:int}/rev/{n:int}"),
    ]);
    check(&s, "GET", "/docs/1/edit", Some(("edit", "doc:1")));
    check(&s, "GET", "/docs/01/edit", Some(("edit", "doc:1")));
    check(&s, "GET", "/docs/0001/edit", Some(("edit", "doc:1")));
    check(&s, "GET", "/docs/+1/edit", Some(("edit", "doc:1")));
    check(&s, "GET", "/docs/%2B1/edit", Some(("edit", "doc:1")));
    check(&s, "GET", "/docs/+01/edit", Some(("edit", "doc:1")));
    check(&s, "GET", "/docs/-1/edit", Some(("edit", "doc:-1")));
    check(&s, "GET", "/docs/-0/edit", Some(("edit", "doc:0")));
    check(&s, "GET", "/docs/0/edit", Some(("edit", "doc:0")));
    check(&s, "GET", "/docs/000/edit", Some(("edit", "doc:0")));
    check(&s, "GET", "/docs/10/edit", Some(("edit", "doc:10")));
    check(&s, "GET", "/docs/100/edit/", Some(("edit", "doc:100")));
    check(&s, "GET", "/docs/1a/edit", None);
    check(&s, "GET", "/docs//edit", None);
    check(&s, "GET", "/docs/+/edit", None);
    check(&s, "GET", "/docs/%2b1/edit", None);
    check(&s, "GET", "/docs/007/rev/010", Some(("rev", "rev:7:10")));
}

#[test]
fn typed_uuid_and_slug_captures() {
    let s = set(vec![
        rule("page", "/pages/{key:uuid}").resource("page:{key}"),
        rule("post", "/posts/{slug:slug}/edit").resource("post:{slug}"),
    ]);
    let canonical = "page:0f8fad5b-d9cb-469f-a165-70867728950e";
    check(
        &s,
        "GET",
        "/pages/0f8fad5b-d9cb-469f-a165-70867728950e",
        Some(("page", canonical)),
    );
    check(
        &s,
        "GET",
        "/pages/0F8FAD5B-D9CB-469F-A165-70867728950E",
        Some(("page", canonical)),
    );
    check(
        &s,
        "GET",
        "/pages/0f8fad5bd9cb469fa16570867728950e",
        Some(("page", canonical)),
    );
    check(
        &s,
        "GET",
        "/pages/0f8fad5b-d9cb-469f-a165-70867728950",
        None,
    );
    check(
        &s,
        "GET",
        "/pages/0f8fad5g-d9cb-469f-a165-70867728950e",
        None,
    );
    check(
        &s,
        "GET",
        "/posts/hello-world_2/edit",
        Some(("post", "post:hello-world_2")),
    );
    check(&s, "GET", "/posts/Hello/edit", Some(("post", "post:Hello")));
    check(&s, "GET", "/posts/a.b/edit", None);
}

#[test]
fn typed_captures_keep_to_their_group_and_fold_case_when_asked() {
    let s = set(vec![
        rule("a", "/a/(?P<name>[a-z]+)/{id:int}"),
        rule("ci", "/b/{key:uuid}").ci(),
    ]);
    check(&s, "GET", "/a/x/007", Some(("a", "a:x:7")));
    check(
        &s,
        "GET",
        "/B/0F8FAD5B-D9CB-469F-A165-70867728950E",
        Some(("ci", "ci:0f8fad5b-d9cb-469f-a165-70867728950e")),
    );
}

#[test]
fn braces_that_are_not_typed_captures_keep_their_regex_meaning() {
    let s = set(vec![
        rule("rep", "/r/[0-9]{2,3}"),
        rule("class", "/c/[{]x:int[}]"),
        rule("esc", r"/e/\{x:int\}"),
    ]);
    check(&s, "GET", "/r/12", Some(("rep", "rep")));
    check(&s, "GET", "/r/1", None);
    check(&s, "GET", "/c/{x:int}", Some(("class", "class")));
    check(&s, "GET", "/e/{x:int}", Some(("esc", "esc")));
}

/// The rule id and lock key a request gets, if a rule applies.
type Found = Option<(&'static str, &'static str)>;

#[test]
fn rules_scoped_to_an_app_apply_only_there_and_keys_carry_the_app() {
    let scoped = |id: &str, pattern: &str, app: Option<&str>| Rule {
        resource: Some("doc:{id}".into()),
        app: app.map(str::to_owned),
        ..Rule::new(id, pattern)
    };
    let s = set(vec![
        scoped("wiki-docs", r"/docs/(?P<id>\d+)", Some("wiki")),
        scoped("any-docs", r"/docs/(?P<id>\d+)/edit", None),
        scoped("crm-docs", r"/docs/(?P<id>\d+)", Some("crm")),
    ]);
    #[rustfmt::skip]
    let cases: &[(Option<&str>, &str, Found)] = &[
        (Some("wiki"), "/docs/1", Some(("wiki-docs", "wiki/doc:1"))),
        (Some("crm"), "/docs/1", Some(("crm-docs", "crm/doc:1"))),
        (Some("other"), "/docs/1", None),
        (Some("wiki"), "/docs/1/edit", Some(("any-docs", "wiki/doc:1"))),
        (Some("crm"), "/docs/1/edit", Some(("any-docs", "crm/doc:1"))),
        // The one-app case: only unscoped rules, keys exactly as without apps.
        (None, "/docs/1", None),
        (None, "/docs/1/edit", Some(("any-docs", "doc:1"))),
    ];
    for (app, path, expected) in cases {
        let got = s.find_in(*app, "GET", path);
        let got = got
            .as_ref()
            .map(|m| (m.rule.id.as_str(), m.resource.as_str()));
        assert_eq!(got, *expected, "{app:?} {path}");
    }
    assert_eq!(
        s.find("GET", "/docs/1/edit").map(|m| m.resource),
        Some("doc:1".to_owned())
    );
}

#[test]
fn app_names_are_checked_in_rules_and_against_the_configured_apps() {
    let mut bad = Rule::new("a", "/a");
    bad.app = Some("Wiki/x".into());
    let issues = rules::validate_rule(&bad);
    assert_eq!(issues.len(), 1, "{issues:?}");
    assert_eq!(issues[0].field, "app");
    assert!(issues[0].message.contains("only a-z"), "{issues:?}");
    let mut long = Rule::new("b", "/b");
    long.app = Some("x".repeat(33));
    assert_eq!(rules::validate_rule(&long)[0].field, "app");

    let mut wiki = Rule::new("w", "/w");
    wiki.app = Some("wiki".into());
    let mut crm = Rule::new("c", "/c");
    crm.app = Some("crm".into());
    let rules = [Rule::new("plain", "/p"), wiki, crm];
    let found = rules::check_rule_apps(&rules, &["wiki"]);
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(
        found[0].to_string(),
        "rule 'c' (#3): app: \"crm\" is not an app of this proxy (the configured apps are wiki)"
    );
    let none = rules::check_rule_apps(&rules, &[]);
    assert_eq!(none.len(), 2);
    assert!(none[0].message.contains("no [[app]] entries"), "{none:?}");
}
