//! Validation and rule files: `check(rule, &[(field, message fragment), ...])` asserts exactly
//! the issues a rule has, in order; `check_file` does the same for `parse_rules_toml`.

use rules::{
    lint_rules, parse_rules_toml, validate_rule, validate_rules, Issue, Mode, Owner, Rule, RuleSet,
};

fn check(rule: &Rule, expected: &[(&str, &str)]) {
    let issues = validate_rule(rule);
    assert_issues(&issues, expected, &format!("rule {rule:?}"));
}

fn check_file(src: &str, expected: &[(Option<usize>, &str, &str)]) {
    let issues = match parse_rules_toml(src) {
        Ok(rules) => panic!("expected issues, parsed {rules:#?}\nfrom:\n{src}"),
        Err(issues) => issues,
    };
    let got: Vec<(Option<usize>, &str)> =
        issues.iter().map(|i| (i.index, i.field.as_str())).collect();
    let want: Vec<(Option<usize>, &str)> = expected
        .iter()
        .map(|&(index, field, _)| (index, field))
        .collect();
    assert_eq!(got, want, "issues for:\n{src}\n{issues:#?}");
    for (issue, (_, _, fragment)) in issues.iter().zip(expected) {
        assert!(
            issue.message.contains(fragment),
            "{:?} should contain {fragment:?}",
            issue.message
        );
    }
}

fn assert_issues(issues: &[Issue], expected: &[(&str, &str)], what: &str) {
    let fields: Vec<&str> = issues.iter().map(|i| i.field.as_str()).collect();
    let want: Vec<&str> = expected.iter().map(|(field, _)| *field).collect();
    assert_eq!(fields, want, "fields of the issues of {what}: {issues:#?}");
    for (issue, (_, fragment)) in issues.iter().zip(expected) {
        assert!(
            issue.message.contains(fragment),
            "{:?} should contain {fragment:?}",
            issue.message
        );
    }
}

fn rule(id: &str, pattern: &str) -> Rule {
    Rule::new(id, pattern)
}

fn with(mut rule: Rule, change: impl FnOnce(&mut Rule)) -> Rule {
    change(&mut rule);
    rule
}

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| s.to_string()).collect()
}

#[test]
fn valid_rules_have_no_issues() {
    check(&rule("edit", r"/docs/\d+/edit"), &[]);
    check(&rule("a", "/"), &[]);
    check(&rule("a_b-9", "/x"), &[]);
    check(&rule(&"x".repeat(64), "/x"), &[]);
    check(&rule("upper", "/DOCS"), &[]);
    check(&rule("anchored", r"^/docs/\d+$"), &[]);
    check(&rule("flags", r"(?i)/docs/(?P<id>\w+)"), &[]);
    check(&rule("ascii", r"/(?-u:\w){100}"), &[]);
    check(
        &with(rule("full", r"/docs/(?P<id>\d+)/edit"), |r| {
            r.resource = Some("doc:{id}".into());
            r.methods = Some(strings(&["get", "POST", "M-SEARCH", "PROPFIND"]));
            r.mode = Mode::Redirect;
            r.redirect_to = Some("/docs/{id}?busy={{1}}".into());
            r.owner = Owner::Session;
            r.lease_seconds = Some(5);
            r.grace_seconds = Some(4);
            r.takeover_roles = strings(&["admin", "editor"]);
            r.inject = false;
            r.priority = -1000;
            r.case_insensitive = true;
            r.enabled = false;
        }),
        &[],
    );
}

#[test]
fn ids_must_be_short_lowercase_names() {
    check(&rule("", "/x"), &[("id", "must not be empty")]);
    check(
        &rule(&"x".repeat(65), "/x"),
        &[("id", "65 characters long; the limit is 64")],
    );
    check(&rule("Edit", "/x"), &[("id", "contains 'E'")]);
    check(&rule("doc edit", "/x"), &[("id", "contains ' '")]);
    check(&rule("doc.edit", "/x"), &[("id", "contains '.'")]);
    check(&rule("doc/edit", "/x"), &[("id", "contains '/'")]);
    check(&rule("café", "/x"), &[("id", "contains 'é'")]);
    check(&rule("a\nb", "/x"), &[("id", "contains '\\n'")]);
    check(
        &rule(&"X".repeat(70), "/x"),
        &[("id", "70 characters long"), ("id", "contains 'X'")],
    );
}

#[test]
fn patterns_must_compile() {
    check(&rule("a", ""), &[("pattern", "must not be empty")]);
    check(
        &rule("a", "/docs/(\\d+"),
        &[("pattern", "regex parse error at column 7: unclosed group")],
    );
    check(&rule("a", "/docs/[a-"), &[("pattern", "regex parse error")]);
    check(&rule("a", "/a)|(b"), &[("pattern", "unopened group")]);
    check(&rule("a", "/x{2,1}"), &[("pattern", "regex parse error")]);
    check(
        &rule("a", "/(?P<id>a)(?P<id>b)"),
        &[("pattern", "duplicate capture group name")],
    );
    check(&rule("a", "/(?<=a)b"), &[("pattern", "look-around")]);
    check(
        &rule("a", "/\\1"),
        &[("pattern", "backreferences are not supported")],
    );
    check(
        &rule("a", "/(?x)docs # note"),
        &[("pattern", "cannot be anchored")],
    );
}

#[test]
fn patterns_are_size_limited() {
    check(&rule("a", r"/\w{100}"), &[("pattern", "pattern too large")]);
    check(
        &rule("a", r"/(((a{100}){100}){100})"),
        &[("pattern", "pattern too large")],
    );
    check(&rule("a", r"/[^/]{1000}"), &[]);
}

#[test]
fn patterns_that_cannot_start_with_a_slash_are_refused() {
    check(&rule("a", r"docs/\d+"), &[("pattern", "can never match")]);
    check(&rule("a", r"^docs"), &[("pattern", "can never match")]);
    check(
        &rule("a", r"(docs|notes)/\d+"),
        &[("pattern", "can never match")],
    );
    check(&rule("a", r".*/docs"), &[]);
    check(&rule("a", r"(/docs|notes)"), &[]);
}

#[test]
fn resource_templates_must_use_known_captures_and_balanced_braces() {
    let p = r"/docs/(?P<id>\d+)/(?P<page>\d+)";
    let with_resource = |t: &str| with(rule("a", p), |r| r.resource = Some(t.into()));
    check(&with_resource("doc:{id}:{page}"), &[]);
    check(&with_resource("{{literal}}"), &[]);
    check(&with_resource(""), &[("resource", "must not be empty")]);
    check(
        &with_resource("doc:{nope}"),
        &[(
            "resource",
            "unknown capture 'nope' (the pattern names: id, page)",
        )],
    );
    check(
        &with_resource("{a}{b}"),
        &[
            ("resource", "unknown capture 'a'"),
            ("resource", "unknown capture 'b'"),
        ],
    );
    check(
        &with_resource("doc:{id"),
        &[("resource", "unclosed '{' at character 5")],
    );
    check(
        &with_resource("doc:id}"),
        &[("resource", "unmatched '}' at character 7")],
    );
    check(
        &with_resource("doc:{}"),
        &[("resource", "empty placeholder")],
    );
    check(
        &with_resource("{a{id}"),
        &[("resource", "unclosed '{' at character 1")],
    );
    check(
        &with_resource("}{"),
        &[("resource", "unmatched '}'"), ("resource", "unclosed '{'")],
    );
    check(
        &with(rule("a", "/plain"), |r| {
            r.resource = Some("doc:{id}".into())
        }),
        &[("resource", "the pattern has no named captures")],
    );
    check(
        &with(rule("a", r"/(\d+)"), |r| {
            r.resource = Some("doc:{1}".into())
        }),
        &[("resource", "unknown capture '1'")],
    );
}

#[test]
fn template_syntax_is_checked_even_when_the_pattern_is_broken() {
    check(
        &with(rule("a", "/(?P<id>"), |r| {
            r.resource = Some("doc:{id".into())
        }),
        &[("pattern", "unclosed group"), ("resource", "unclosed '{'")],
    );
    check(
        &with(rule("a", "/(?P<id>"), |r| {
            r.resource = Some("doc:{whatever}".into())
        }),
        &[("pattern", "unclosed group")],
    );
}

#[test]
fn redirect_needs_a_same_site_target() {
    let p = r"/docs/(?P<id>\d+)/edit";
    let redirect = |t: &str| {
        with(rule("a", p), |r| {
            r.mode = Mode::Redirect;
            r.redirect_to = Some(t.into());
        })
    };
    check(&redirect("/docs/{id}/view"), &[]);
    check(&redirect("/busy?x=1#top"), &[]);
    check(&redirect("/{{id}}"), &[]);
    check(
        &with(rule("a", p), |r| r.mode = Mode::Redirect),
        &[("redirect_to", "required when mode is \"redirect\"")],
    );
    check(
        &redirect("https://evil.example/"),
        &[("redirect_to", "must start with '/'")],
    );
    check(
        &redirect("javascript:alert(1)"),
        &[("redirect_to", "must start with '/'")],
    );
    check(
        &redirect("docs/1"),
        &[("redirect_to", "must start with '/'")],
    );
    check(&redirect(""), &[("redirect_to", "must start with '/'")]);
    check(
        &redirect("//evil.example"),
        &[("redirect_to", "must not start with '//'")],
    );
    check(
        &redirect("/\\evil.example"),
        &[("redirect_to", "must not start with '//' or '/\\'")],
    );
    check(
        &redirect("/a\\b"),
        &[("redirect_to", "must not contain a backslash")],
    );
    check(&redirect("/a b"), &[("redirect_to", "visible ASCII")]);
    check(&redirect("/a\tb"), &[("redirect_to", "visible ASCII")]);
    check(
        &redirect("/a\r\nSet-Cookie: x"),
        &[("redirect_to", "visible ASCII")],
    );
    check(&redirect("/café"), &[("redirect_to", "visible ASCII")]);
    check(
        &redirect("{id}/view"),
        &[("redirect_to", "must start with '/'")],
    );
    check(
        &redirect("/{nope}"),
        &[("redirect_to", "unknown capture 'nope'")],
    );
    check(&redirect("/{id"), &[("redirect_to", "unclosed '{'")]);
}

#[test]
fn redirect_to_is_only_for_redirect_mode() {
    let target = |mode: Mode| {
        with(rule("a", "/x"), |r| {
            r.mode = mode;
            r.redirect_to = Some("/y".into());
        })
    };
    check(
        &target(Mode::Block),
        &[(
            "redirect_to",
            "only used when mode is \"redirect\" (mode is \"block\")",
        )],
    );
    check(
        &target(Mode::ReadOnly),
        &[("redirect_to", "(mode is \"read_only\")")],
    );
    check(&target(Mode::Redirect), &[]);
    check(
        &with(rule("a", "/x"), |r| r.redirect_to = Some("//evil".into())),
        &[
            ("redirect_to", "only used when"),
            ("redirect_to", "must not start with '//'"),
        ],
    );
}

#[test]
fn methods_must_be_http_tokens() {
    let methods = |m: &[&str]| with(rule("a", "/x"), |r| r.methods = Some(strings(m)));
    check(
        &methods(&["GET", "post", "M-SEARCH", "X_CUSTOM", "PROPFIND"]),
        &[],
    );
    check(&methods(&[]), &[("methods", "must not be empty")]);
    check(
        &methods(&[""]),
        &[("methods", "'' is not a valid HTTP method")],
    );
    check(
        &methods(&["GE T"]),
        &[("methods", "'GE T' is not a valid HTTP method")],
    );
    check(
        &methods(&["GET\n"]),
        &[("methods", "'GET\\n' is not a valid HTTP method")],
    );
    check(
        &methods(&["GET", "P(ST", "DEL:ETE"]),
        &[("methods", "'P(ST'"), ("methods", "'DEL:ETE'")],
    );
    check(&methods(&["GÉT"]), &[("methods", "'GÉT'")]);
}

#[test]
fn max_per_user_is_a_cap_of_at_most_a_thousand_or_zero_for_none() {
    let cap = |n: u32| with(rule("a", "/x"), |r| r.max_per_user = Some(n));
    check(&cap(0), &[]);
    check(&cap(3), &[]);
    check(&cap(1_000), &[]);
    check(
        &cap(1_001),
        &[(
            "max_per_user",
            "must be between 0 and 1000 (0 for no cap), not 1001",
        )],
    );
    let parsed = parse_rules_toml("[[rule]]\nid = \"a\"\npattern = \"/x\"\nmax_per_user = 3\n");
    assert_eq!(parsed.unwrap()[0].max_per_user, Some(3));
    let issues =
        parse_rules_toml("[[rule]]\nid = \"a\"\npattern = \"/x\"\nmax_per_user = \"three\"\n")
            .unwrap_err();
    assert!(
        issues.iter().any(|i| i.field == "max_per_user"),
        "{issues:?}"
    );
}

#[test]
fn numbers_must_be_in_range() {
    let lease = |n: u64| with(rule("a", "/x"), |r| r.lease_seconds = Some(n));
    let grace = |n: u64| with(rule("a", "/x"), |r| r.grace_seconds = Some(n));
    let both = |l: u64, g: u64| {
        with(rule("a", "/x"), |r| {
            r.lease_seconds = Some(l);
            r.grace_seconds = Some(g);
        })
    };
    let priority = |n: i32| with(rule("a", "/x"), |r| r.priority = n);
    check(&lease(5), &[]);
    check(&lease(86_400), &[]);
    check(
        &lease(0),
        &[(
            "lease_seconds",
            "must be between 5 and 86400 seconds, not 0",
        )],
    );
    check(&lease(4), &[("lease_seconds", "not 4")]);
    check(&lease(86_401), &[("lease_seconds", "not 86401")]);
    check(&lease(u64::MAX), &[("lease_seconds", "must be between")]);
    check(&grace(0), &[]);
    check(&grace(3_600), &[]);
    check(
        &grace(3_601),
        &[(
            "grace_seconds",
            "must be between 0 and 3600 seconds, not 3601",
        )],
    );
    check(&both(10, 9), &[]);
    check(
        &both(10, 10),
        &[(
            "grace_seconds",
            "must be shorter than lease_seconds (10 >= 10)",
        )],
    );
    check(&both(5, 3_600), &[("grace_seconds", "(3600 >= 5)")]);
    check(
        &both(4, 3_601),
        &[
            ("lease_seconds", "not 4"),
            ("grace_seconds", "not 3601"),
            ("grace_seconds", "shorter"),
        ],
    );
    check(&priority(1_000), &[]);
    check(&priority(-1_000), &[]);
    check(
        &priority(1_001),
        &[("priority", "must be between -1000 and 1000, not 1001")],
    );
    check(&priority(i32::MIN), &[("priority", "must be between")]);
}

#[test]
fn takeover_roles_must_not_be_blank() {
    let roles = |r: &[&str]| with(rule("a", "/x"), |rule| rule.takeover_roles = strings(r));
    check(&roles(&[]), &[]);
    check(&roles(&["admin", "editor"]), &[]);
    check(&roles(&[""]), &[("takeover_roles", "entry 1 is empty")]);
    check(
        &roles(&["admin", " "]),
        &[("takeover_roles", "entry 2 is empty")],
    );
    check(
        &roles(&["", "ok", ""]),
        &[("takeover_roles", "entry 1"), ("takeover_roles", "entry 3")],
    );
}

#[test]
fn offer_seconds_is_bounded() {
    let mut rule = Rule::new("r", "/x");
    rule.offer_seconds = Some(4);
    check(&rule, &[("offer_seconds", "not 4")]);
    rule.offer_seconds = Some(60);
    check(&rule, &[]);
}

#[test]
fn a_rule_with_many_problems_reports_them_all() {
    let bad = Rule {
        id: "Bad Id".into(),
        pattern: "/docs/(?P<id>\\d+".into(),
        resource: Some("doc:{id".into()),
        methods: Some(strings(&["GET", "NO PE"])),
        mode: Mode::Redirect,
        redirect_to: None,
        owner: Owner::User,
        lease_seconds: Some(1),
        grace_seconds: Some(7_200),
        offer_seconds: None,
        idle_seconds: None,
        max_per_user: Some(1_001),
        takeover_roles: strings(&[""]),
        inject: true,
        priority: 5_000,
        case_insensitive: false,
        enabled: true,
        websocket: rules::WebSocket::Lock,
        app: Some("Bad App".into()),
    };
    check(
        &bad,
        &[
            ("id", "contains 'B'"),
            ("pattern", "unclosed group"),
            ("resource", "unclosed '{'"),
            ("redirect_to", "required"),
            ("methods", "'NO PE'"),
            ("lease_seconds", "not 1"),
            ("grace_seconds", "not 7200"),
            ("grace_seconds", "shorter than lease_seconds"),
            ("max_per_user", "not 1001"),
            ("priority", "not 5000"),
            ("takeover_roles", "entry 1 is empty"),
            ("app", "only a-z"),
        ],
    );
    for issue in validate_rule(&bad) {
        assert_eq!(issue.rule.as_deref(), Some("Bad Id"));
        assert_eq!(issue.index, None);
    }
}

#[test]
fn lists_report_indexes_and_duplicate_ids() {
    let issues = validate_rules(&[
        rule("a", "/a"),
        rule("b", "/b"),
        rule("a", "/c"),
        rule("c", "("),
        rule("a", "/d"),
        rule("", "/e"),
        rule("", "/f"),
    ]);
    let got: Vec<(Option<&str>, Option<usize>, &str, &str)> = issues
        .iter()
        .map(|i| {
            (
                i.rule.as_deref(),
                i.index,
                i.field.as_str(),
                i.message.as_str(),
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            (
                Some("a"),
                Some(2),
                "id",
                "duplicate id: rule #1 already uses it"
            ),
            (
                Some("c"),
                Some(3),
                "pattern",
                "regex parse error at column 1: unclosed group"
            ),
            (
                Some("a"),
                Some(4),
                "id",
                "duplicate id: rule #1 already uses it"
            ),
            (None, Some(5), "id", "must not be empty"),
            (None, Some(6), "id", "must not be empty"),
        ]
    );
    assert!(validate_rules(&[rule("a", "/a"), rule("b", "/a")]).is_empty());
    assert!(validate_rule(&rule("a", "/a")).is_empty());
}

#[test]
fn issues_display_rule_position_field_and_message() {
    let issues = validate_rules(&[rule("ok", "/"), rule("edit", "/(")]);
    assert_eq!(
        issues.iter().map(Issue::to_string).collect::<Vec<_>>(),
        ["rule 'edit' (#2): pattern: regex parse error at column 2: unclosed group"]
    );
    let issues = validate_rule(&rule("edit", "/("));
    assert_eq!(
        issues[0].to_string(),
        "rule 'edit': pattern: regex parse error at column 2: unclosed group"
    );
    let issues = validate_rules(&[rule("", "/")]);
    assert_eq!(issues[0].to_string(), "rule #1: id: must not be empty");
    let file_issue = Issue {
        rule: None,
        index: None,
        field: String::new(),
        message: "bad file".into(),
    };
    assert_eq!(file_issue.to_string(), "bad file");
    let odd = Issue {
        rule: Some("a'\n".into()),
        index: Some(0),
        field: "id".into(),
        message: "m".into(),
    };
    assert_eq!(odd.to_string(), "rule 'a\\'\\n' (#1): id: m");
}

#[test]
fn issues_serialize_for_the_api() {
    let issue = &validate_rules(&[rule("edit", "")])[0];
    assert_eq!(
        serde_json::to_value(issue).ok(),
        Some(
            serde_json::json!({"rule": "edit", "index": 0, "field": "pattern", "message": "must not be empty"})
        )
    );
    let issue = &validate_rule(&rule("", "/"))[0];
    assert_eq!(
        serde_json::to_value(issue).ok(),
        Some(serde_json::json!({"field": "id", "message": "must not be empty"}))
    );
}

#[test]
fn compile_refuses_invalid_rules_disabled_or_not() {
    let Err(issues) = RuleSet::compile(vec![
        rule("a", "/a"),
        with(rule("b", "("), |r| r.enabled = false),
    ]) else {
        panic!("an invalid disabled rule should be refused");
    };
    assert_issues(&issues, &[("pattern", "unclosed group")], "the list");
    assert_eq!(issues[0].index, Some(1));
    let Err(issues) = RuleSet::compile(vec![rule("a", "/a"), rule("a", "/b")]) else {
        panic!("duplicate ids should be refused");
    };
    assert_issues(&issues, &[("id", "duplicate id")], "the list");
}

#[test]
fn rules_have_documented_defaults_and_wire_names() {
    let json = serde_json::json!({"id": "a", "pattern": "/a"});
    let parsed: Result<Rule, _> = serde_json::from_value(json);
    assert_eq!(parsed.ok(), Some(rule("a", "/a")));
    let defaults = rule("a", "/a");
    assert_eq!(defaults.mode, Mode::Block);
    assert_eq!(defaults.owner, Owner::User);
    assert_eq!(defaults.takeover_roles, ["admin"]);
    assert!(defaults.inject && defaults.enabled && !defaults.case_insensitive);
    assert_eq!(defaults.priority, 0);
    assert_eq!(
        serde_json::to_value(&defaults).ok(),
        Some(serde_json::json!({
            "id": "a", "pattern": "/a", "mode": "block", "owner": "user",
            "takeover_roles": ["admin"], "inject": true, "priority": 0,
            "case_insensitive": false, "enabled": true, "websocket": "lock"
        }))
    );
    let read_only =
        serde_json::json!({"id": "a", "pattern": "/a", "mode": "read_only", "owner": "session"});
    let parsed: Result<Rule, _> = serde_json::from_value(read_only);
    assert_eq!(
        parsed.as_ref().map(|r| (r.mode, r.owner)).ok(),
        Some((Mode::ReadOnly, Owner::Session))
    );
    let unknown = serde_json::json!({"id": "a", "pattern": "/a", "colour": "red"});
    assert!(serde_json::from_value::<Rule>(unknown).is_err());
    let bad_mode = serde_json::json!({"id": "a", "pattern": "/a", "mode": "Block"});
    assert!(serde_json::from_value::<Rule>(bad_mode).is_err());
}

#[test]
fn rule_files_parse_into_rules() {
    let src = r#"
# Documents: the edit page and its save endpoint share one lock.
[[rule]]
id = "doc-edit"
pattern = '/docs/(?P<id>\d+)/edit'
resource = "doc:{id}"
mode = "redirect"
redirect_to = "/docs/{id}"
owner = "session"
lease_seconds = 60
grace_seconds = 15
takeover_roles = ["admin", "editor"]
inject = false
priority = 10
case_insensitive = true
enabled = false
websocket = "pass"

[[rule]]
id = "doc-save"
pattern = '/docs/(?P<id>\d+)'
methods = ["POST", "put"]
resource = "doc:{id}"
"#;
    let parsed = parse_rules_toml(src);
    let expected = vec![
        Rule {
            id: "doc-edit".into(),
            pattern: r"/docs/(?P<id>\d+)/edit".into(),
            resource: Some("doc:{id}".into()),
            methods: None,
            mode: Mode::Redirect,
            redirect_to: Some("/docs/{id}".into()),
            owner: Owner::Session,
            lease_seconds: Some(60),
            grace_seconds: Some(15),
            offer_seconds: None,
            idle_seconds: None,
            max_per_user: None,
            takeover_roles: strings(&["admin", "editor"]),
            inject: false,
            priority: 10,
            case_insensitive: true,
            enabled: false,
            websocket: rules::WebSocket::Pass,
            app: None,
        },
        with(rule("doc-save", r"/docs/(?P<id>\d+)"), |r| {
            r.methods = Some(strings(&["POST", "put"]));
            r.resource = Some("doc:{id}".into());
        }),
    ];
    assert_eq!(parsed, Ok(expected));
    assert_eq!(parse_rules_toml(""), Ok(Vec::new()));
    assert_eq!(parse_rules_toml("# nothing yet\n"), Ok(Vec::new()));
    assert_eq!(
        parse_rules_toml("[[rule]]\nid = \"a\"\npattern = \"/a\"\n"),
        Ok(vec![rule("a", "/a")])
    );
}

#[test]
fn rule_file_syntax_errors_carry_line_and_column() {
    check_file("[[rule]\nid = \"a\"\n", &[(None, "", "(line 1, column 7)")]);
    check_file(
        "[[rule]]\nid = \"a\npattern = \"/a\"\n",
        &[(None, "", "line 2")],
    );
    check_file(
        "[[rule]]\nid = \"a\"\nid = \"b\"\n",
        &[(None, "", "(line 3, column 1)")],
    );
    check_file("[[rule]]\nid = a\n", &[(None, "", "(line 2, column 6)")]);
    let issues = parse_rules_toml("[[rule]\n").err().unwrap_or_default();
    assert_eq!(issues.len(), 1);
    assert!(
        !issues[0].message.contains('\n'),
        "one line: {:?}",
        issues[0].message
    );
}

#[test]
fn rule_file_unknown_keys_are_all_reported() {
    check_file(
        "[[rule]]\nid = \"a\"\npattern = \"/a\"\ncolour = \"red\"\nmehtods = [\"GET\"]\n",
        &[
            (Some(0), "colour", "unknown field (line 4, column 1)"),
            (
                Some(0),
                "mehtods",
                "unknown field (line 5, column 1); known fields: id, pattern",
            ),
        ],
    );
    check_file(
        "title = \"x\"\nversion = 2\n[[rule]]\nid = \"a\"\npattern = \"/a\"\n",
        &[
            (None, "", "unknown top-level key 'title' (line 1, column 1)"),
            (
                None,
                "",
                "unknown top-level key 'version' (line 2, column 1)",
            ),
        ],
    );
    check_file(
        "[[rules]]\nid = \"a\"\n",
        &[(None, "", "unknown top-level key 'rules' (line 1, column 3); a rule file holds only [[rule]] tables")],
    );
}

#[test]
fn rule_file_type_errors_and_missing_fields_are_all_reported() {
    check_file(
        "[[rule]]\nid = 1\npattern = \"/a\"\npriority = \"high\"\ninject = \"yes\"\nmode = \"lock\"\n",
        &[
            (Some(0), "id", "invalid type: integer `1`, expected a string (line 2, column 6)"),
            (Some(0), "priority", "(line 4, column 12)"),
            (Some(0), "inject", "expected a boolean"),
            (Some(0), "mode", "unknown variant `lock`"),
        ],
    );
    check_file(
        "[[rule]]\nid = \"a\"\npattern = \"/a\"\nlease_seconds = -5\npriority = 3000000000\nmethods = \"GET\"\n",
        &[
            (Some(0), "lease_seconds", "(line 4, column 17)"),
            (Some(0), "priority", "expected i32"),
            (Some(0), "methods", "expected a sequence"),
        ],
    );
    check_file(
        "[[rule]]\nresource = \"x\"\n\n[[rule]]\nid = \"b\"\n",
        &[
            (Some(0), "id", "required field is missing (line 1)"),
            (Some(0), "pattern", "required field is missing (line 1)"),
            (Some(1), "pattern", "required field is missing (line 4)"),
        ],
    );
    check_file(
        "[rule]\nid = \"a\"\n",
        &[(None, "", "'rule' must be [[rule]] tables")],
    );
    check_file(
        "rule = [1]\n",
        &[(None, "", "'rule' must be [[rule]] tables")],
    );
}

#[test]
fn rule_file_validation_issues_carry_the_field_line() {
    let src = "[[rule]]\nid = \"ok\"\npattern = \"/ok\"\n\n[[rule]]\nid = \"edit\"\npattern = \"/(\"\nmode = \"redirect\"\npriority = 2000\n";
    check_file(
        src,
        &[
            (Some(1), "pattern", "unclosed group (line 7)"),
            (
                Some(1),
                "redirect_to",
                "required when mode is \"redirect\" (line 5)",
            ),
            (Some(1), "priority", "not 2000 (line 9)"),
        ],
    );
    let issues = parse_rules_toml(src).err().unwrap_or_default();
    assert_eq!(
        issues[0].to_string(),
        "rule 'edit' (#2): pattern: regex parse error at column 2: unclosed group (line 7)"
    );
}

#[test]
fn rule_file_duplicate_ids_are_reported() {
    check_file(
        "[[rule]]\nid = \"a\"\npattern = \"/a\"\n[[rule]]\nid = \"b\"\npattern = \"/b\"\n[[rule]]\nid = \"a\"\npattern = \"/c\"\n",
        &[(Some(2), "id", "duplicate id: rule #1 already uses it (line 8)")],
    );
    check_file(
        "[[rule]]\nid = \"a\"\npattern = \"/a\"\n[[rule]]\nid = \"a\"\npattern = \"/b\"\ncolour = 1\n",
        &[
            (Some(1), "colour", "unknown field"),
            (Some(1), "id", "duplicate id: rule #1 already uses it (line 4)"),
        ],
    );
}

#[test]
fn typed_captures_must_name_a_known_type() {
    check(&rule("a", "/docs/{id:int}/edit"), &[]);
    check(&rule("a", "/docs/{id:uuid}"), &[]);
    check(&rule("a", "/docs/{id:slug}/{n:int}"), &[]);
    check(
        &rule("a", "/docs/{id:number}/edit"),
        &[("pattern", "unknown capture type 'number'")],
    );
    check(
        &rule("a", "/docs/{id:int}/{id:int}"),
        &[("pattern", "duplicate capture group name")],
    );
    // A template may name a typed capture like any other.
    let typed = with(rule("a", "/docs/{id:int}"), |r| {
        r.resource = Some("doc:{id}".into())
    });
    check(&typed, &[]);
    let unknown = with(rule("a", "/docs/{id:int}"), |r| {
        r.resource = Some("doc:{key}".into())
    });
    check(&unknown, &[("resource", "unknown capture 'key'")]);
}

/// `lint_rules` warns once per untyped capture that matches only digits, and about nothing
/// else.
#[test]
fn untyped_numeric_captures_are_warned_about() {
    let rules = vec![
        rule("ascii", "/docs/(?P<id>[0-9]+)/edit"),
        rule("unicode", r"/a/(?P<n>\d{1,6})"),
        rule("typed", "/docs/{id:int}/edit"),
        rule("word", "/w/(?P<name>[a-z0-9]+)"),
        rule("unnamed", "/u/([0-9]+)"),
        rule("nested", "/n/(?P<outer>x(?P<inner>[0-9]*))"),
        rule("broken", "/b/(?P<id>[0-9]+"),
    ];
    let warnings = lint_rules(&rules);
    let got: Vec<(Option<&str>, Option<usize>, &str)> = warnings
        .iter()
        .map(|w| (w.rule.as_deref(), w.index, w.field.as_str()))
        .collect();
    assert_eq!(
        got,
        vec![
            (Some("ascii"), Some(0), "pattern"),
            (Some("unicode"), Some(1), "pattern"),
            (Some("nested"), Some(5), "pattern"),
        ],
        "{warnings:#?}"
    );
    assert!(
        warnings[0].message.contains("capture 'id'"),
        "{}",
        warnings[0]
    );
    assert!(warnings[0].message.contains("{id:int}"), "{}", warnings[0]);
    assert!(
        warnings[2].message.contains("capture 'inner'"),
        "{}",
        warnings[2]
    );
}

#[test]
fn a_websocket_field_other_than_lock_or_pass_is_reported() {
    let src = "[[rule]]\nid = \"a\"\npattern = \"/a\"\nwebsocket = \"open\"\n";
    let issues = parse_rules_toml(src).expect_err("an unknown websocket value");
    assert!(
        issues.iter().any(|i| i.to_string().contains("websocket")),
        "{issues:?}"
    );
    let lock: Rule =
        serde_json::from_value(serde_json::json!({"id": "a", "pattern": "/a"})).expect("a rule");
    assert_eq!(lock.websocket, rules::WebSocket::Lock);
}
