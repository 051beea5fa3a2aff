//! The access policy as a table: one line per case, `_` where a column does not matter.
//!
//! `TABLE` is the policy's specification. `the_table_is_the_policy` runs [`verdict`] on every
//! combination of its inputs and checks that exactly one line covers it and that the line
//! gives the same verdict, so the table can neither leave a case out nor contradict itself.
//! The `decide_*` tests check what one request's facts turn into.

use std::time::Duration;

use config::OnStoreError::{self, Allow, Deny};
use proxy::gate::{
    decide, verdict, Answer, Claim, Decision, Facts, Kind, Limit, LockedWhy, Refusal, Verdict,
};
use proxy::metrics::Outcome;
use rules::Mode::{self, Block, ReadOnly, Redirect};
use rules::WebSocket;
use store::{ClaimOutcome, Holder, Lock, Offer};

/// A column that matches any value.
const ANY: Option<bool> = None;
const SAFE: Option<bool> = Some(true);
const UNSAFE: Option<bool> = Some(false);
const TARGET: Option<bool> = Some(true);
const NO_TARGET: Option<bool> = Some(false);

const OTHER: Answer = Answer::Held { same_user: false };
/// Held by the requester's own other browser session (`owner = "session"` rules).
const MINE_ELSEWHERE: Answer = Answer::Held { same_user: true };
const CAP: Answer = Answer::Limited { rate: false };
const RATE: Answer = Answer::Limited { rate: true };

const HOLD: Verdict = Verdict::Hold { claimed: false };
const CLAIM: Verdict = Verdict::Hold { claimed: true };
const LOCKED_OTHER_USER: Verdict = Verdict::Locked(LockedWhy::OtherUser);
const LOCKED_OTHER_SESSION: Verdict = Verdict::Locked(LockedWhy::OtherSession);
const LOCKED_READ_ONLY: Verdict = Verdict::Locked(LockedWhy::ReadOnly);
const LOCKED_DISPLACED: Verdict = Verdict::Locked(LockedWhy::Displaced);
const LOCKED_RESERVED: Verdict = Verdict::Locked(LockedWhy::Reserved);

struct Line {
    answer: Answer,
    mode: Option<Mode>,
    safe: Option<bool>,
    redirect_target: Option<bool>,
    on_store_error: Option<OnStoreError>,
    verdict: Verdict,
}

const fn line(
    answer: Answer,
    mode: Option<Mode>,
    safe: Option<bool>,
    redirect_target: Option<bool>,
    on_store_error: Option<OnStoreError>,
    verdict: Verdict,
) -> Line {
    Line {
        answer,
        mode,
        safe,
        redirect_target,
        on_store_error,
        verdict,
    }
}

#[rustfmt::skip]
const TABLE: &[Line] = &[
    //   store answer        mode            method  redirect   store down    verdict
    // The requester holds the lock, whatever the mode and method.
    line(Answer::Claimed,    None,           ANY,    ANY,       None,         CLAIM),
    line(Answer::Renewed,    None,           ANY,    ANY,       None,         HOLD),
    // Block: nobody else gets through.
    line(OTHER,              Some(Block),    ANY,    ANY,       None,         LOCKED_OTHER_USER),
    line(MINE_ELSEWHERE,     Some(Block),    ANY,    ANY,       None,         LOCKED_OTHER_SESSION),
    // Redirect: another user's safe request goes to the target, when it has one on this site.
    line(OTHER,              Some(Redirect), SAFE,   TARGET,    None,         Verdict::Redirect),
    line(OTHER,              Some(Redirect), SAFE,   NO_TARGET, None,         LOCKED_OTHER_USER),
    line(OTHER,              Some(Redirect), UNSAFE, ANY,       None,         LOCKED_OTHER_USER),
    line(MINE_ELSEWHERE,     Some(Redirect), ANY,    ANY,       None,         LOCKED_OTHER_SESSION),
    // Read-only: safe methods see the page, unsafe ones are refused.
    line(OTHER,              Some(ReadOnly), SAFE,   ANY,       None,         Verdict::View),
    line(MINE_ELSEWHERE,     Some(ReadOnly), SAFE,   ANY,       None,         Verdict::View),
    line(OTHER,              Some(ReadOnly), UNSAFE, ANY,       None,         LOCKED_READ_ONLY),
    line(MINE_ELSEWHERE,     Some(ReadOnly), UNSAFE, ANY,       None,         LOCKED_READ_ONLY),
    // A displaced holder's write waits for a reload, in every mode.
    line(Answer::Displaced,  None,           ANY,    ANY,       None,         LOCKED_DISPLACED),
    // Free but offered to the next in line: refused like a lock held by another user.
    line(Answer::Reserved,   Some(Block),    ANY,    ANY,       None,         LOCKED_RESERVED),
    line(Answer::Reserved,   Some(Redirect), SAFE,   TARGET,    None,         Verdict::Redirect),
    line(Answer::Reserved,   Some(Redirect), SAFE,   NO_TARGET, None,         LOCKED_RESERVED),
    line(Answer::Reserved,   Some(Redirect), UNSAFE, ANY,       None,         LOCKED_RESERVED),
    line(Answer::Reserved,   Some(ReadOnly), SAFE,   ANY,       None,         Verdict::View),
    line(Answer::Reserved,   Some(ReadOnly), UNSAFE, ANY,       None,         LOCKED_RESERVED),
    // The requester's own limits.
    line(CAP,                None,           ANY,    ANY,       None,         Verdict::OverCap),
    line(RATE,               None,           ANY,    ANY,       None,         Verdict::RateLimited),
    // The store is down: `on_store_error` decides.
    line(Answer::Failed,     None,           ANY,    ANY,       Some(Allow),  Verdict::Unlocked),
    line(Answer::Failed,     None,           ANY,    ANY,       Some(Deny),   Verdict::Unavailable),
];

const ANSWERS: [Answer; 9] = [
    Answer::Claimed,
    Answer::Renewed,
    OTHER,
    MINE_ELSEWHERE,
    Answer::Displaced,
    CAP,
    RATE,
    Answer::Reserved,
    Answer::Failed,
];
const MODES: [Mode; 3] = [Block, Redirect, ReadOnly];
const POLICIES: [OnStoreError; 2] = [Allow, Deny];

fn covers<T: PartialEq>(column: Option<T>, value: T) -> bool {
    column.is_none_or(|c| c == value)
}

#[test]
fn the_table_is_the_policy() {
    let mut checked = 0;
    for answer in ANSWERS {
        for mode in MODES {
            for safe in [true, false] {
                for target in [true, false] {
                    for policy in POLICIES {
                        let lines: Vec<&Line> = TABLE
                            .iter()
                            .filter(|l| {
                                l.answer == answer
                                    && covers(l.mode, mode)
                                    && covers(l.safe, safe)
                                    && covers(l.redirect_target, target)
                                    && covers(l.on_store_error, policy)
                            })
                            .collect();
                        let case = format!(
                            "{answer:?}, {mode:?}, safe={safe}, redirect target={target}, \
                             on_store_error={policy:?}"
                        );
                        assert_eq!(lines.len(), 1, "{case}: lines covering it");
                        assert_eq!(
                            verdict(answer, mode, safe, target, policy),
                            lines[0].verdict,
                            "{case}"
                        );
                        checked += 1;
                    }
                }
            }
        }
    }
    assert_eq!(checked, ANSWERS.len() * 3 * 2 * 2 * 2);
}

#[test]
fn every_verdict_is_counted_under_its_outcome() {
    #[rustfmt::skip]
    let cases = [
        (CLAIM,                Outcome::Claimed),
        (HOLD,                 Outcome::Renewed),
        (Verdict::View,        Outcome::ReadOnly),
        (Verdict::Redirect,    Outcome::Redirected),
        (LOCKED_OTHER_USER,    Outcome::Denied),
        (LOCKED_OTHER_SESSION, Outcome::Denied),
        (LOCKED_READ_ONLY,     Outcome::Denied),
        (LOCKED_DISPLACED,     Outcome::Denied),
        (Verdict::OverCap,     Outcome::OverCap),
        (Verdict::RateLimited, Outcome::RateLimited),
        (Verdict::Unlocked,    Outcome::StoreError),
        (Verdict::Unavailable, Outcome::StoreError),
    ];
    for (verdict, outcome) in cases {
        assert_eq!(Outcome::from(verdict), outcome, "{verdict:?}");
    }
}

fn lock(user: &str, session: Option<&str>, fence: u64) -> Lock {
    Lock {
        resource: "doc:1".into(),
        rule: "docs".into(),
        holder: Holder {
            user: user.into(),
            name: user.to_uppercase(),
            session: session.map(str::to_string),
        },
        since: 1_000,
        expires: 31_000,
        fence,
        instance: "a".into(),
        active: 1_000,
    }
}

fn facts(claim: Claim<'_>, mode: Mode, safe: bool) -> Facts<'_> {
    Facts {
        claim,
        user: "alice",
        mode,
        safe,
        redirect_to: None,
        rate_wait: None,
        lease: Duration::from_secs(30),
        on_store_error: Deny,
    }
}

#[test]
fn decide_grants_a_claimed_lock_under_its_fence() {
    let outcome = ClaimOutcome::Claimed(lock("alice", None, 7));
    let (verdict, decision) = decide(&facts(Claim::Store(&outcome), Block, false));
    assert_eq!(verdict, CLAIM);
    assert_eq!(decision, Decision::Grant { fence: Some(7) });
}

#[test]
fn decide_grants_a_remembered_claim_under_the_remembered_fence() {
    let (verdict, decision) = decide(&facts(Claim::Remembered { fence: 9 }, Block, true));
    assert_eq!(verdict, HOLD);
    assert_eq!(decision, Decision::Grant { fence: Some(9) });
}

#[test]
fn decide_lets_a_read_only_viewer_through_without_a_fence() {
    let outcome = ClaimOutcome::Held(lock("bob", None, 3));
    let (verdict, decision) = decide(&facts(Claim::Store(&outcome), ReadOnly, true));
    assert_eq!(verdict, Verdict::View);
    assert_eq!(decision, Decision::Grant { fence: None });
}

#[test]
fn decide_redirects_to_the_rendered_target() {
    let outcome = ClaimOutcome::Held(lock("bob", None, 3));
    let mut facts = facts(Claim::Store(&outcome), Redirect, true);
    facts.redirect_to = Some("/docs/1");
    let (verdict, decision) = decide(&facts);
    assert_eq!(verdict, Verdict::Redirect);
    assert_eq!(decision, Decision::Reply(Refusal::Redirect("/docs/1")));
}

#[test]
fn decide_names_the_holder_when_it_refuses() {
    let held = lock("alice", Some("tab-2"), 3);
    let outcome = ClaimOutcome::Held(held.clone());
    let (verdict, decision) = decide(&facts(Claim::Store(&outcome), Block, true));
    assert_eq!(verdict, LOCKED_OTHER_SESSION);
    assert_eq!(
        decision,
        Decision::Reply(Refusal::Locked {
            why: LockedWhy::OtherSession,
            lock: Some(&held),
        })
    );
}

#[test]
fn decide_tells_a_displaced_holder_who_holds_it_now() {
    let current = lock("bob", None, 5);
    let outcome = ClaimOutcome::Displaced {
        current: Some(current.clone()),
    };
    let (_, decision) = decide(&facts(Claim::Store(&outcome), ReadOnly, false));
    assert_eq!(
        decision,
        Decision::Reply(Refusal::Locked {
            why: LockedWhy::Displaced,
            lock: Some(&current),
        })
    );
}

#[test]
fn decide_names_the_reservation_to_everyone_else() {
    let offer = Offer {
        holder: Holder {
            user: "bob".into(),
            name: "Bob".into(),
            session: None,
        },
        until: 1_700_000_060_000,
    };
    let outcome = ClaimOutcome::Reserved {
        offer: offer.clone(),
    };
    for (mode, safe) in [
        (Block, true),
        (Block, false),
        (ReadOnly, false),
        (Redirect, false),
    ] {
        let (verdict, decision) = decide(&facts(Claim::Store(&outcome), mode, safe));
        assert_eq!(verdict, LOCKED_RESERVED, "{mode:?} safe={safe}");
        assert_eq!(
            decision,
            Decision::Reply(Refusal::Reserved { offer: &offer })
        );
    }
    let (verdict, decision) = decide(&facts(Claim::Store(&outcome), ReadOnly, true));
    assert_eq!(verdict, Verdict::View);
    assert_eq!(decision, Decision::Grant { fence: None });
}

#[test]
fn decide_sends_a_capped_user_back_after_a_lease_with_what_they_hold() {
    let outcome = ClaimOutcome::Limited {
        held: vec!["doc:2".into(), "doc:3".into()],
        max: 2,
    };
    let (verdict, decision) = decide(&facts(Claim::Store(&outcome), Block, true));
    assert_eq!(verdict, Verdict::OverCap);
    let held = ["doc:2".to_string(), "doc:3".to_string()];
    assert_eq!(
        decision,
        Decision::Reply(Refusal::Limited {
            limit: Limit::Held {
                held: &held,
                max: 2
            },
            retry_after: 30,
        })
    );
}

#[test]
fn decide_rounds_a_rate_limit_wait_up_to_whole_seconds() {
    let outcome = ClaimOutcome::Limited {
        held: Vec::new(),
        max: 0,
    };
    for (wait, seconds) in [(1_200, 2), (2_000, 2), (1, 1)] {
        let mut facts = facts(Claim::Store(&outcome), Block, true);
        facts.rate_wait = Some(Duration::from_millis(wait));
        let (verdict, decision) = decide(&facts);
        assert_eq!(verdict, Verdict::RateLimited);
        assert_eq!(
            decision,
            Decision::Reply(Refusal::Limited {
                limit: Limit::Rate,
                retry_after: seconds,
            }),
            "wait {wait} ms"
        );
    }
}

#[test]
fn decide_follows_on_store_error_when_the_store_fails() {
    let mut facts = facts(Claim::Failed, Block, true);
    assert_eq!(
        decide(&facts),
        (Verdict::Unavailable, Decision::Reply(Refusal::Unavailable))
    );
    facts.on_store_error = Allow;
    assert_eq!(decide(&facts), (Verdict::Unlocked, Decision::Pass));
}

/// What a request under a rule counts as: its method's safety × whether it asks for a
/// WebSocket × the rule's `websocket` field.
#[rustfmt::skip]
const KINDS: &[(bool, bool, WebSocket, Kind)] = &[
    //  safe method  websocket  rule's websocket    kind
    (true,        false,     WebSocket::Lock,    Kind::Safe),
    (true,        false,     WebSocket::Pass,    Kind::Safe),
    (false,       false,     WebSocket::Lock,    Kind::Unsafe),
    (false,       false,     WebSocket::Pass,    Kind::Unsafe),
    // A handshake needs the lock like a write, and its socket is fenced...
    (true,        true,      WebSocket::Lock,    Kind::FencedSocket),
    (false,       true,      WebSocket::Lock,    Kind::FencedSocket),
    // ...unless the rule passes it: then it is what its method is.
    (true,        true,      WebSocket::Pass,    Kind::Safe),
    (false,       true,      WebSocket::Pass,    Kind::Unsafe),
];

#[test]
fn a_websocket_handshake_counts_as_a_write_unless_the_rule_passes_it() {
    for &(safe, websocket, policy, kind) in KINDS {
        assert_eq!(
            Kind::of(safe, websocket, policy),
            kind,
            "safe {safe}, websocket {websocket}, {policy}"
        );
    }
    assert!(Kind::Safe.is_safe());
    assert!(!Kind::Unsafe.is_safe());
    assert!(!Kind::FencedSocket.is_safe());
}

#[test]
fn a_fenced_handshake_is_refused_wherever_a_write_is_and_granted_to_the_holder() {
    let fenced = Kind::of(true, true, WebSocket::Lock).is_safe();
    let passed = Kind::of(true, true, WebSocket::Pass).is_safe();
    for answer in [Answer::Claimed, Answer::Renewed] {
        for mode in [Block, Redirect, ReadOnly] {
            assert!(matches!(
                verdict(answer, mode, fenced, true, Deny),
                Verdict::Hold { .. }
            ));
        }
    }
    // Someone else holds it: never viewed, never redirected (a socket cannot follow a 303).
    assert_eq!(
        verdict(OTHER, ReadOnly, fenced, false, Deny),
        LOCKED_READ_ONLY
    );
    assert_eq!(
        verdict(OTHER, Redirect, fenced, true, Deny),
        LOCKED_OTHER_USER
    );
    assert_eq!(
        verdict(OTHER, Block, fenced, false, Deny),
        LOCKED_OTHER_USER
    );
    // An owner who lost the lock reconnects: the store answers Displaced for a write.
    assert_eq!(
        verdict(Answer::Displaced, Block, fenced, false, Deny),
        LOCKED_DISPLACED
    );
    // Passed, it is an ordinary read.
    assert_eq!(verdict(OTHER, ReadOnly, passed, false, Deny), Verdict::View);
    assert_eq!(
        verdict(OTHER, Redirect, passed, true, Deny),
        Verdict::Redirect
    );
}
