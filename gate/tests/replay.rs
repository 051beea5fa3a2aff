//! The replay of sampled requests under candidate rules, as tables: each line is one sampled
//! request (seconds, user, method, path) and what it would have got (the treatment and who
//! held the lock when it was decided).

use std::time::Duration;

use gate::replay::{replay, summarize, Treatment};
use gate::{LockedWhy, Verdict};
use rules::{Mode, Rule, RuleSet, SampledRequest};

/// A request no rule matches: left out of the replay.
const OUT: &str = "-";

fn request(second: u64, user: &str, method: &str, path: &str) -> SampledRequest {
    SampledRequest {
        at: 1_000_000 + second * 1_000,
        app: None,
        method: method.to_owned(),
        path: path.to_owned(),
        kind: "page".to_owned(),
        user: (!user.is_empty()).then(|| user.to_owned()),
    }
}

/// The page editor and its save endpoint as one resource, under `mode`, with a 30 s lease.
fn rules(mode: Mode) -> RuleSet {
    let mut edit = Rule::new("edit", "/pages/{id:int}/edit");
    edit.resource = Some("page:{id}".to_owned());
    edit.mode = mode;
    edit.lease_seconds = Some(30);
    if mode == Mode::Redirect {
        edit.redirect_to = Some("/pages/{id}".to_owned());
    }
    let mut save = Rule::new("save", "/pages/{id:int}/save");
    save.resource = Some("page:{id}".to_owned());
    save.mode = mode;
    save.redirect_to.clone_from(&edit.redirect_to);
    save.lease_seconds = Some(30);
    RuleSet::compile(vec![edit, save]).expect("the rules compile")
}

fn short(treatment: Treatment) -> &'static str {
    match treatment {
        Treatment::Preflight => "preflight",
        Treatment::SignIn => "sign in",
        Treatment::Decided(Verdict::Hold { claimed: true }) => "claimed",
        Treatment::Decided(Verdict::Hold { claimed: false }) => "renewed",
        Treatment::Decided(Verdict::View) => "read-only",
        Treatment::Decided(Verdict::Redirect) => "303",
        Treatment::Decided(Verdict::Locked(LockedWhy::OtherUser)) => "423",
        Treatment::Decided(Verdict::Locked(LockedWhy::ReadOnly)) => "423 read-only",
        Treatment::Decided(Verdict::Locked(LockedWhy::Displaced)) => "423 displaced",
        Treatment::Decided(other) => panic!("not a replayed verdict: {other:?}"),
    }
}

/// Replays `table` (`(second, user, method, path, treatment, holder)`, in any order) under
/// `mode` and checks every line; lines marked [`OUT`] must be left out.
#[allow(clippy::type_complexity)]
fn check(mode: Mode, table: &[(u64, &str, &str, &str, &str, &str)]) {
    let requests: Vec<SampledRequest> = table
        .iter()
        .map(|(second, user, method, path, _, _)| request(*second, user, method, path))
        .collect();
    let set = rules(mode);
    let replayed = replay(&requests, &set, |rule| {
        Duration::from_secs(rule.lease_seconds.unwrap_or(300))
    });
    let mut expected: Vec<_> = table.iter().filter(|line| line.4 != OUT).collect();
    expected.sort_by_key(|line| line.0);
    assert_eq!(replayed.len(), expected.len(), "{mode:?}: {replayed:#?}");
    for (got, line) in replayed.iter().zip(expected) {
        let (second, user, method, path, treatment, holder) = *line;
        let what = format!("{mode:?} {second}s {user} {method} {path}");
        assert_eq!(got.request, &request(second, user, method, path), "{what}");
        assert_eq!(got.resource, "page:12", "{what}");
        assert_eq!(short(got.treatment), treatment, "{what}");
        assert_eq!(got.holder.as_deref().unwrap_or(""), holder, "{what}");
    }
}

#[test]
#[rustfmt::skip]
fn block_mode_the_first_user_holds_and_others_get_423_until_the_lease_lapses() {
    check(Mode::Block, &[
        // The list comes in any order; the replay is in time order.
        (5,  "bob",   "GET",     "/pages/12/edit", "423",           "alice"),
        (0,  "alice", "GET",     "/pages/12/edit", "claimed",       "alice"),
        (1,  "",      "GET",     "/pages/12/edit", "sign in",       "alice"),
        (2,  "bob",   "OPTIONS", "/pages/12/save", "preflight",     "alice"),
        (3,  "alice", "POST",    "/pages/12/save", "renewed",       "alice"),
        (4,  "carol", "GET",     "/pages/13/view", OUT,             ""),
        (6,  "bob",   "POST",    "/pages/12/save", "423",           "alice"),
        // Alice's last request was at 3 s: her 30 s lease lapses at 33 s.
        (32, "bob",   "GET",     "/pages/12/edit", "423",           "alice"),
        (33, "bob",   "GET",     "/pages/12/edit", "claimed",       "bob"),
        // Alice lost it: a write waits for a reload, which finds bob holding it.
        (34, "alice", "POST",    "/pages/12/save", "423 displaced", "bob"),
        (35, "alice", "GET",     "/pages/12/edit", "423",           "bob"),
    ]);
}

#[test]
#[rustfmt::skip]
fn read_only_mode_lets_others_read_and_refuses_their_writes() {
    check(Mode::ReadOnly, &[
        (0, "alice", "GET",  "/pages/12/edit", "claimed",       "alice"),
        (1, "bob",   "GET",  "/pages/12/edit", "read-only",     "alice"),
        (2, "bob",   "POST", "/pages/12/save", "423 read-only", "alice"),
        (3, "alice", "POST", "/pages/12/save", "renewed",       "alice"),
    ]);
}

#[test]
#[rustfmt::skip]
fn redirect_mode_sends_others_reading_away_and_refuses_their_writes() {
    check(Mode::Redirect, &[
        (0, "alice", "GET",  "/pages/12/edit", "claimed", "alice"),
        (1, "bob",   "GET",  "/pages/12/edit", "303",     "alice"),
        (2, "bob",   "POST", "/pages/12/save", "423",     "alice"),
    ]);
    let requests = [
        request(0, "alice", "GET", "/pages/12/edit"),
        request(1, "bob", "GET", "/pages/12/edit"),
    ];
    let set = rules(Mode::Redirect);
    let replayed = replay(&requests, &set, |_| Duration::from_secs(30));
    assert_eq!(replayed[1].redirect_to.as_deref(), Some("/pages/12"));
}

#[test]
fn each_user_is_summed_up_in_one_line() {
    let requests = [
        request(0, "alice", "GET", "/pages/12/edit"),
        request(1, "bob", "GET", "/pages/12/edit"),
        request(2, "alice", "POST", "/pages/12/save"),
        request(3, "bob", "POST", "/pages/12/save"),
        request(4, "", "GET", "/pages/12/edit"),
        request(5, "carol", "GET", "/pages/12/edit"),
    ];
    let set = rules(Mode::Block);
    let replayed = replay(&requests, &set, |_| Duration::from_secs(30));
    let summaries = summarize(&replayed);
    let lines: Vec<&str> = summaries.iter().map(|s| s.line.as_str()).collect();
    assert_eq!(
        lines,
        [
            "alice holds page:12",
            "bob: 2 requests refused 423, alice held it",
            "not signed in: 1 request asked to sign in",
            "carol: 1 request refused 423, alice held it",
        ]
    );
    let bob = &summaries[1];
    assert_eq!(
        (
            bob.user.as_deref(),
            bob.requests,
            bob.locked,
            &bob.held_by[..]
        ),
        (Some("bob"), 2, 2, &["alice".to_owned()][..])
    );
    assert_eq!(summaries[0].held, ["page:12"]);
}
