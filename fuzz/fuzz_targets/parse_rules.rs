//! Parsing a rule file, compiling it and matching paths never panic. A file that parses
//! compiles, every match honours the rule's method filter and same-site redirects, and the
//! set's DFA (the proxy's scan) finds exactly what its meta engine finds.
//!
//! Paths to try come from the input itself: a last line `# /some/path`, and every rule's
//! pattern and id read as a path.

#![no_main]

use libfuzzer_sys::fuzz_target;
use rules::{check_same_site, normalize_path, parse_rules_toml, Mode, RuleSet};

const METHODS: &[&str] = &["GET", "POST", "delete", "PROPFIND", ""];

fuzz_target!(|data: &[u8]| {
    let Ok(src) = std::str::from_utf8(data) else {
        return;
    };
    let rules = match parse_rules_toml(src) {
        Ok(rules) => rules,
        Err(issues) => {
            assert!(!issues.is_empty());
            for issue in issues {
                let _ = issue.to_string();
            }
            return;
        }
    };
    let set = match RuleSet::compile(rules) {
        Ok(set) => set,
        Err(issues) => panic!("a file that parses must compile: {issues:?}"),
    };

    // Without a DFA, when the rules do not fit one: then both sides are the meta engine.
    let with_dfa = set.clone().with_dfa();

    let mut candidates: Vec<String> = Vec::new();
    if let Some(path) = src.lines().last().and_then(|line| line.strip_prefix("# ")) {
        candidates.push(path.to_owned());
    }
    for rule in set.rules() {
        candidates.push(rule.pattern.clone());
        candidates.push(format!("/{}", rule.id));
        candidates.push(format!("/{}/", rule.id));
    }
    for candidate in candidates {
        let Ok(path) = normalize_path(&candidate) else {
            continue;
        };
        for method in METHODS {
            let found = set.find(method, &path);
            assert_eq!(
                with_dfa.find(method, &path),
                found,
                "the DFA and the meta engine disagree on {method} {path:?}"
            );
            let Some(found) = found else {
                continue;
            };
            assert!(found.rule.enabled);
            if let Some(methods) = &found.rule.methods {
                assert!(methods.iter().any(|m| m.eq_ignore_ascii_case(method)));
            }
            if let Some(target) = &found.redirect_to {
                assert_eq!(found.rule.mode, Mode::Redirect);
                assert!(
                    check_same_site(target).is_ok(),
                    "off-site redirect {target:?}"
                );
            }
        }
    }
});
