//! The compiled, immutable rule set the proxy matches every request against.
//!
//! A `RuleSet` is built once per rule change and shared behind an `Arc`; requests never wait
//! on its construction. Matching is one scan of the path by every pattern at once, reporting
//! each pattern that matches into a set kept per thread, so finding a request's rule, or that
//! it has none, allocates nothing. This module knows nothing about locks, users or HTTP beyond
//! a method name.

use std::cell::RefCell;
use std::collections::HashMap;

use std::sync::Arc;

use regex::{Captures, Regex};
use regex_automata::dfa::{dense, Automaton, StartKind};
use regex_automata::nfa::thompson;
use regex_automata::util::syntax;
use regex_automata::{meta, Anchored, Input, MatchKind, PatternID, PatternSet};

use crate::limits::{DFA_SIZE_LIMIT, PATTERN_SIZE_LIMIT};
use crate::model::{Mode, Rule};
use crate::pattern::CaptureType;
use crate::redirect::check_same_site;
use crate::template::{push_capture, Template};
use crate::validate::{check_rules, CompiledRule, Issue};

/// The rule that applies to a request, with its templates rendered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Match<'a> {
    pub rule: &'a Rule,
    /// The lock key.
    pub resource: String,
    /// The rendered target for `mode = "redirect"`. `None` for other modes, and also when the
    /// captures made the target leave the site (say `//evil.example`): the proxy then blocks.
    pub redirect_to: Option<String>,
}

/// Validated rules compiled for matching.
#[derive(Clone, Debug)]
pub struct RuleSet {
    /// Every rule as given, disabled ones included, in the given order.
    rules: Vec<Rule>,
    by_id: HashMap<String, usize>,
    /// One pattern per enabled rule, in `entries` order, reporting every pattern that
    /// matches (the semantics of a `regex::RegexSet`).
    set: meta::Regex,
    /// The same patterns as one DFA built ahead of time ([`RuleSet::with_dfa`]), which scans
    /// a path without the meta engine's lazily built states and per-thread cache; `None` when
    /// not asked for, or when the patterns need what a DFA cannot do (Unicode word boundaries)
    /// or would make one larger than [`DFA_SIZE_LIMIT`], and then `set` scans.
    dfa: Option<Arc<dense::DFA<Vec<u32>>>>,
    /// The anchored source of each pattern of `set`, in its order.
    sources: Vec<String>,
    /// Enabled rules from the highest priority down, ties by id ascending, so the first
    /// match that accepts the method wins.
    entries: Vec<Entry>,
}

#[derive(Clone, Debug)]
struct Entry {
    /// Position in `rules`.
    rule: usize,
    regex: Regex,
    resource: Option<Template>,
    redirect: Option<Template>,
    methods: Option<Vec<String>>,
    case_insensitive: bool,
    /// The declared type of each capture group, by group number.
    types: Vec<Option<CaptureType>>,
    /// Whether rendering the resource or the redirect reads capture groups. When not, a hit
    /// in the set is enough and the pattern is not run again for its captures.
    needs_captures: bool,
    /// The app the rule is scoped to; `None`: every app.
    app: Option<String>,
}

impl Default for RuleSet {
    fn default() -> Self {
        RuleSet::empty()
    }
}

impl RuleSet {
    /// A set without rules, which matches nothing.
    pub fn empty() -> Self {
        RuleSet {
            rules: Vec::new(),
            by_id: HashMap::new(),
            set: compile_set(&[], PATTERN_SIZE_LIMIT).expect("a set without patterns compiles"),
            dfa: None,
            sources: Vec::new(),
            entries: Vec::new(),
        }
    }

    /// Validates `rules` and compiles them. Fails with every issue if any rule has one.
    /// Disabled rules must be valid too: enabling one later should not surprise anybody.
    pub fn compile(rules: Vec<Rule>) -> Result<RuleSet, Vec<Issue>> {
        let (issues, compiled) = check_rules(&rules);
        if !issues.is_empty() {
            return Err(issues);
        }
        let mut prepared: Vec<(Entry, String)> = Vec::new();
        for (index, (rule, compiled)) in rules.iter().zip(compiled).enumerate() {
            // `check_rules` yields compiled parts for every rule without issues.
            let Some(CompiledRule {
                pattern,
                resource,
                redirect,
                methods,
            }) = compiled
            else {
                return Err(vec![Issue::new(
                    Some(&rule.id),
                    Some(index),
                    "pattern",
                    "could not be compiled",
                )]);
            };
            if rule.enabled {
                let needs_captures = match &resource {
                    Some(template) => template.uses_groups(),
                    // The default resource is the rule id followed by every group.
                    None => pattern.regex.captures_len() > 1,
                } || redirect.as_ref().is_some_and(Template::uses_groups);
                let entry = Entry {
                    rule: index,
                    regex: pattern.regex,
                    resource,
                    redirect,
                    methods,
                    case_insensitive: rule.case_insensitive,
                    types: pattern.types,
                    needs_captures,
                    app: rule.app.clone(),
                };
                prepared.push((entry, pattern.source));
            }
        }
        prepared.sort_by(|(a, _), (b, _)| {
            let (a, b) = (&rules[a.rule], &rules[b.rule]);
            b.priority.cmp(&a.priority).then_with(|| a.id.cmp(&b.id))
        });
        let (entries, sources): (Vec<Entry>, Vec<String>) = prepared.into_iter().unzip();

        // Every pattern fits the per-rule limit on its own; the set holds all of them.
        let set = compile_set(
            &sources,
            PATTERN_SIZE_LIMIT.saturating_mul(sources.len().max(1)),
        )
        .map_err(|err| {
            vec![Issue::new(
                None,
                None,
                "pattern",
                format!("the rule set could not be compiled: {err}"),
            )]
        })?;

        let by_id = rules
            .iter()
            .enumerate()
            .map(|(index, rule)| (rule.id.clone(), index))
            .collect();
        Ok(RuleSet {
            rules,
            by_id,
            set,
            dfa: None,
            sources,
            entries,
        })
    }

    /// The same set, with its patterns also built into one DFA ahead of time when they fit
    /// within [`DFA_SIZE_LIMIT`]: for the set a proxy matches every request against, where
    /// each scan of a path then costs about half. Building it takes longer than compiling
    /// (tens of milliseconds for a few hundred rules), so a set made to answer one question
    /// is left without it. Matching finds the same rules either way.
    pub fn with_dfa(mut self) -> RuleSet {
        if self.dfa.is_none() {
            self.dfa = compile_dfa(&self.sources).map(Arc::new);
        }
        self
    }

    /// Every rule as given to [`RuleSet::compile`], disabled ones included.
    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    /// The rule with this id, enabled or not.
    pub fn get(&self, id: &str) -> Option<&Rule> {
        self.by_id.get(id).and_then(|&index| self.rules.get(index))
    }

    /// Number of rules, disabled ones included.
    pub fn len(&self) -> usize {
        self.rules.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// The rule that applies to `method` on `path`, which must already be normalized (see
    /// [`crate::normalize_path`]).
    ///
    /// Patterns match the whole path, and one trailing slash is ignored: a rule matches when
    /// its pattern matches the path, or the path without its trailing slash. Captures are
    /// taken from the path without the slash whenever the pattern matches it, so `/docs/1`
    /// and `/docs/1/` name the same resource even for a pattern like `/docs/(?P<rest>.*)`.
    /// Of the enabled rules that match and accept the method (compared ignoring ASCII case),
    /// the highest priority wins, ties going to the smaller id.
    ///
    /// This is the one-app case: the request belongs to no named app, so only rules without
    /// `app` apply and lock keys carry no app name. See [`RuleSet::find_in`].
    pub fn find(&self, method: &str, path: &str) -> Option<Match<'_>> {
        self.find_in(None, method, path)
    }

    /// As [`RuleSet::find`], for a request routed to the app named `app`: rules scoped to
    /// another app are passed over, and the lock key is namespaced by the app (`wiki/doc:1`),
    /// so the same key in two apps names two locks. App names hold no `/`, so no key of one
    /// app can spell a key of another.
    pub fn find_in(&self, app: Option<&str>, method: &str, path: &str) -> Option<Match<'_>> {
        let trimmed = match path.strip_suffix('/') {
            Some(trimmed) if !trimmed.is_empty() => trimmed,
            _ => path,
        };
        let with_slash = (trimmed.len() != path.len()).then_some(path);
        HITS.with_borrow_mut(|[trimmed_hits, slash_hits]| {
            self.scan(trimmed, trimmed_hits);
            let slash_hits = with_slash.map(|path| {
                self.scan(path, slash_hits);
                &*slash_hits
            });
            if trimmed_hits.is_empty() && slash_hits.is_none_or(PatternSet::is_empty) {
                return None;
            }
            self.first_accepting(app, method, trimmed, path, trimmed_hits, slash_hits)
        })
    }

    /// Leaves in `hits` exactly the patterns that match `haystack`.
    fn scan(&self, haystack: &str, hits: &mut PatternSet) {
        let patterns = self.set.pattern_len();
        if hits.capacity() != patterns {
            *hits = PatternSet::new(patterns);
        } else {
            hits.clear();
        }
        // Every pattern starts with `^` (see `anchored_source`), so a search anchored at the
        // start finds exactly what an unanchored one would.
        let anchored = Input::new(haystack).anchored(Anchored::Yes);
        let scanned = self
            .dfa
            .as_ref()
            .is_some_and(|dfa| dfa.try_which_overlapping_matches(&anchored, hits).is_ok());
        if !scanned {
            // A DFA gives up only on a byte it was built to quit on, and this one quits on
            // none; the meta engine answers all the same.
            hits.clear();
            self.set
                .which_overlapping_matches(&Input::new(haystack), hits);
        }
    }

    /// Whether paths are scanned by the DFA built ahead of time (else by the meta engine).
    pub fn scans_with_dfa(&self) -> bool {
        self.dfa.is_some()
    }

    /// The first entry, in priority order, whose pattern matched and which accepts `method`.
    fn first_accepting(
        &self,
        app: Option<&str>,
        method: &str,
        trimmed: &str,
        path: &str,
        trimmed_hits: &PatternSet,
        slash_hits: Option<&PatternSet>,
    ) -> Option<Match<'_>> {
        for (position, entry) in self.entries.iter().enumerate() {
            let Ok(pattern) = PatternID::try_from(position) else {
                break;
            };
            let haystack = if trimmed_hits.contains(pattern) {
                trimmed
            } else if slash_hits.is_some_and(|hits| hits.contains(pattern)) {
                path
            } else {
                continue;
            };
            if !entry.accepts(method) || !entry.applies_to(app) {
                continue;
            }
            let Some(rule) = self.rules.get(entry.rule) else {
                continue;
            };
            if !entry.needs_captures {
                return Some(entry.render(app, rule, None));
            }
            let Some(captures) = entry.regex.captures(haystack) else {
                continue;
            };
            return Some(entry.render(app, rule, Some(&captures)));
        }
        None
    }
}

thread_local! {
    /// The patterns that matched the path without and with its trailing slash: reused by every
    /// match on this thread, and resized when a rule set of another size is matched.
    static HITS: RefCell<[PatternSet; 2]> = RefCell::new([PatternSet::new(0), PatternSet::new(0)]);
}

/// One automaton for every pattern, built as `regex::RegexSet` builds its own: each pattern
/// that matches is reported, and no pattern's captures are kept.
fn compile_set(sources: &[String], size_limit: usize) -> Result<meta::Regex, String> {
    meta::Builder::new()
        .configure(
            meta::Config::new()
                .match_kind(MatchKind::All)
                .utf8_empty(true)
                .nfa_size_limit(Some(size_limit))
                .which_captures(thompson::WhichCaptures::None),
        )
        .syntax(syntax::Config::new().utf8(true))
        .build_many(sources)
        .map_err(|err| err.to_string())
}

/// The patterns of [`compile_set`] as one dense DFA reporting every pattern that matches, or
/// `None` when they cannot be one within [`DFA_SIZE_LIMIT`]: the meta engine then scans.
fn compile_dfa(sources: &[String]) -> Option<dense::DFA<Vec<u32>>> {
    if sources.is_empty() {
        return None;
    }
    dense::Builder::new()
        .configure(
            dense::Config::new()
                .match_kind(MatchKind::All)
                .start_kind(StartKind::Anchored)
                .dfa_size_limit(Some(DFA_SIZE_LIMIT))
                .determinize_size_limit(Some(DFA_SIZE_LIMIT)),
        )
        .syntax(syntax::Config::new().utf8(true))
        .thompson(
            thompson::Config::new()
                .nfa_size_limit(Some(PATTERN_SIZE_LIMIT.saturating_mul(sources.len())))
                .which_captures(thompson::WhichCaptures::None),
        )
        .build_many(sources)
        .ok()
}

impl Entry {
    fn accepts(&self, method: &str) -> bool {
        self.methods.as_ref().is_none_or(|methods| {
            methods
                .iter()
                .any(|allowed| allowed.eq_ignore_ascii_case(method))
        })
    }

    /// A rule without `app` applies to every app; one with it only to that app.
    fn applies_to(&self, app: Option<&str>) -> bool {
        self.app.is_none() || self.app.as_deref() == app
    }

    fn render<'a>(
        &self,
        app: Option<&str>,
        rule: &'a Rule,
        captures: Option<&Captures<'_>>,
    ) -> Match<'a> {
        let mut resource = String::new();
        if let Some(app) = app {
            resource.push_str(app);
            resource.push('/');
        }
        match &self.resource {
            Some(template) => {
                template.render_into(captures, self.case_insensitive, &self.types, &mut resource)
            }
            None => {
                resource.push_str(&rule.id);
                let groups = captures
                    .into_iter()
                    .flat_map(|c| c.iter().enumerate().skip(1));
                for (number, group) in groups {
                    resource.push(':');
                    push_capture(
                        &mut resource,
                        group.map_or("", |m| m.as_str()),
                        self.case_insensitive,
                        self.types.get(number).copied().flatten(),
                    );
                }
            }
        }
        let redirect_to = match (&self.redirect, rule.mode) {
            // The target keeps the captures as the request spelled them: it is a URL the
            // app routes, not a lock key.
            (Some(template), Mode::Redirect) => {
                let mut target = String::new();
                template.render_into(captures, false, &[], &mut target);
                check_same_site(&target).is_ok().then_some(target)
            }
            _ => None,
        };
        Match {
            rule,
            resource,
            redirect_to,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(id: &str, pattern: &str, tweak: impl FnOnce(&mut Rule)) -> Rule {
        let mut rule = Rule::new(id, pattern);
        tweak(&mut rule);
        rule
    }

    /// `set` with its DFA taken away, so the meta engine scans.
    fn without_dfa(set: &RuleSet) -> RuleSet {
        RuleSet {
            dfa: None,
            ..set.clone()
        }
    }

    fn found<'a>(
        set: &'a RuleSet,
        app: Option<&str>,
        method: &str,
        path: &str,
    ) -> Option<(&'a str, String)> {
        set.find_in(app, method, path)
            .map(|m| (m.rule.id.as_str(), m.resource))
    }

    #[test]
    fn everyday_rules_are_scanned_by_a_dfa_that_finds_what_the_meta_engine_finds() {
        let set = RuleSet::compile(vec![
            rule("edit", "/docs/(?P<id>[0-9]+)/edit", |_| {}),
            rule("save", "/docs/(?P<id>[0-9]+)/save", |r| {
                r.methods = Some(vec!["POST".into()]);
                r.resource = Some("doc:{id}".into());
            }),
            rule("any-doc", "/docs/.*", |r| r.priority = -5),
            rule("wiki", "/wiki/(?P<page>[^/]+)/edit", |r| {
                r.case_insensitive = true
            }),
            rule("settings", "/admin/settings(/.*)?", |_| {}),
            rule(
                "invoice",
                "/billing/invoices/(?P<id>[A-Z0-9-]+)/(edit|approve)",
                |_| {},
            ),
            rule("scoped", "/docs/7/edit", |r| {
                r.app = Some("wiki".into());
                r.priority = 10;
            }),
            rule("off", "/docs/1/edit", |r| r.enabled = false),
        ])
        .expect("valid rules");
        assert!(!set.scans_with_dfa(), "compiled without a DFA unless asked");
        let set = set.with_dfa();
        assert!(set.scans_with_dfa());
        let meta = without_dfa(&set);
        assert!(!meta.scans_with_dfa());

        let paths = [
            "/",
            "/docs/1/edit",
            "/docs/1/edit/",
            "/docs/7/edit",
            "/docs/12/save",
            "/docs/x/edit",
            "/docs/",
            "/docs",
            "/WIKI/Straße/EDIT",
            "/wiki/a/b/edit",
            "/wiki/Ünïcödé/edit/",
            "/admin/settings",
            "/admin/settings/",
            "/admin/settingsx",
            "/billing/invoices/INV-9/approve",
            "/billing/invoices/inv-9/approve",
            "/static/app.css",
        ];
        let mut matched = 0;
        for path in paths {
            for method in ["GET", "POST"] {
                for app in [None, Some("wiki")] {
                    let by_dfa = found(&set, app, method, path);
                    matched += usize::from(by_dfa.is_some());
                    assert_eq!(
                        by_dfa,
                        found(&meta, app, method, path),
                        "{method} {path} in {app:?}"
                    );
                }
            }
        }
        // Both engines have something to agree on: most paths match, some do not.
        assert!(
            (30..paths.len() * 4).contains(&matched),
            "{matched} matches"
        );
        assert_eq!(
            found(&set, Some("wiki"), "GET", "/docs/7/edit"),
            Some(("scoped", "wiki/scoped".to_owned()))
        );
        assert_eq!(
            found(&set, None, "POST", "/docs/12/save"),
            Some(("save", "doc:12".to_owned()))
        );
    }

    #[test]
    fn rules_too_large_for_a_dfa_or_beyond_one_are_scanned_by_the_meta_engine() {
        // The DFA of "an `a` 20 letters from the end" has over a million states.
        let exploding = RuleSet::compile(vec![rule("tail", "/(a|b)*a(a|b){20}", |_| {})])
            .expect("valid rules")
            .with_dfa();
        assert!(!exploding.scans_with_dfa());
        let hit = format!("/bb{}", "a".repeat(21));
        assert_eq!(
            found(&exploding, None, "GET", &hit).map(|f| f.0),
            Some("tail")
        );
        let miss = format!("/ba{}", "b".repeat(19));
        assert_eq!(found(&exploding, None, "GET", &miss), None);

        // A Unicode word boundary is beyond a DFA.
        let boundary = RuleSet::compile(vec![rule("word", r"/tags/\bé.*", |_| {})])
            .expect("valid rules")
            .with_dfa();
        assert!(!boundary.scans_with_dfa());
        assert_eq!(
            found(&boundary, None, "GET", "/tags/été").map(|f| f.0),
            Some("word")
        );
    }
}
