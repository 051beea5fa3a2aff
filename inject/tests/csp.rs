use inject::{csp_verdict, CspVerdict};

fn check(policies: &[&str], expected: CspVerdict) {
    assert_eq!(
        csp_verdict(policies.iter().copied()),
        expected,
        "{policies:?}"
    );
}

fn forbidden(policies: &[&str], reason: &str) {
    match csp_verdict(policies.iter().copied()) {
        CspVerdict::Forbidden(why) => assert!(
            why.contains(reason),
            "{policies:?}: reason {why:?} lacks {reason:?}"
        ),
        other => panic!("{policies:?}: expected Forbidden, got {other:?}"),
    }
}

fn nonce(value: &str) -> CspVerdict {
    CspVerdict::AllowedWithNonce(value.to_owned())
}

use CspVerdict::{Allowed, NoPolicy};

#[test]
fn no_policy() {
    check(&[], NoPolicy);
    check(&[""], NoPolicy);
    check(&[" , "], NoPolicy);
}

#[test]
fn policies_that_do_not_restrict_scripts() {
    check(&["frame-ancestors 'none'"], Allowed);
    check(&["img-src 'self'; style-src 'none'"], Allowed);
    check(&[";;"], Allowed);
}

#[test]
fn self_and_star() {
    check(&["script-src 'self'"], Allowed);
    check(&["script-src 'SELF' https://cdn.example"], Allowed);
    check(&["script-src *"], Allowed);
    check(
        &["script-src 'self' 'unsafe-inline' 'unsafe-eval'"],
        Allowed,
    );
}

#[test]
fn nonce_sources() {
    check(&["script-src 'nonce-abc123'"], nonce("abc123"));
    check(&["script-src 'NONCE-abc123'"], nonce("abc123"));
    check(&["script-src 'nonce-a+b/c-d_e=='"], nonce("a+b/c-d_e=="));
    check(&["script-src 'self' 'nonce-xyz'"], nonce("xyz"));
    check(&["script-src 'nonce-first' 'nonce-second'"], nonce("first"));
}

#[test]
fn malformed_nonces_allow_nothing() {
    forbidden(&["script-src 'nonce-'"], "policy 1: script-src");
    forbidden(&["script-src 'nonce-a=b'"], "script-src");
    forbidden(&["script-src 'nonce-abc==='"], "script-src");
    forbidden(&["script-src 'nonce-a\"b'"], "script-src");
    forbidden(&["script-src nonce-abc"], "script-src");
}

#[test]
fn strict_dynamic() {
    check(
        &["script-src 'strict-dynamic' 'nonce-n1' 'self' https:"],
        nonce("n1"),
    );
    forbidden(
        &["script-src 'strict-dynamic' 'self' *"],
        "'strict-dynamic'",
    );
}

#[test]
fn default_src_is_the_fallback() {
    check(&["default-src 'self'"], Allowed);
    check(&["default-src 'nonce-d'; img-src *"], nonce("d"));
    forbidden(&["default-src 'none'"], "policy 1: default-src");
}

#[test]
fn script_src_elem_takes_precedence() {
    check(&["script-src 'none'; script-src-elem 'self'"], Allowed);
    check(
        &["script-src-elem 'nonce-e'; script-src 'self'"],
        nonce("e"),
    );
    forbidden(
        &["default-src 'self'; script-src-elem 'none'"],
        "script-src-elem",
    );
    forbidden(
        &["default-src 'self'; script-src 'none'"],
        "policy 1: script-src",
    );
}

#[test]
fn first_of_repeated_directives_counts() {
    check(&["script-src 'self'; script-src 'none'"], Allowed);
    forbidden(&["script-src 'none'; script-src 'self'"], "script-src");
}

#[test]
fn none_and_host_only_lists_are_forbidden() {
    forbidden(&["script-src 'none'"], "script-src");
    forbidden(&["script-src"], "script-src");
    forbidden(
        &["script-src https://app.example.com cdn.example.com https:"],
        "allows neither",
    );
    forbidden(&["script-src 'unsafe-inline' 'sha256-abc='"], "script-src");
}

#[test]
fn two_policies_both_satisfied() {
    check(&["script-src 'self'", "default-src *"], Allowed);
    check(&["script-src 'self'", "script-src 'nonce-n'"], nonce("n"));
    check(&["script-src 'self', default-src 'nonce-n'"], nonce("n"));
    check(&["script-src 'nonce-n'", "img-src 'none'"], nonce("n"));
}

#[test]
fn one_policy_that_forbids_is_enough() {
    forbidden(
        &["script-src 'self'", "script-src 'none'"],
        "policy 2: script-src",
    );
    forbidden(
        &["script-src 'self', default-src 'none'"],
        "policy 2: default-src",
    );
}

#[test]
fn two_policies_with_different_nonces() {
    forbidden(
        &["script-src 'nonce-a'", "script-src 'nonce-b'"],
        "different script nonces",
    );
    forbidden(&["script-src 'nonce-a', script-src 'nonce-b'"], "different");
    // A nonce both policies list still works.
    check(
        &[
            "script-src 'nonce-a' 'nonce-c'",
            "script-src 'nonce-b' 'nonce-c'",
        ],
        nonce("c"),
    );
    // So does one policy's nonce when the other also accepts 'self'.
    check(
        &["script-src 'nonce-a' 'self'", "script-src 'nonce-b'"],
        nonce("b"),
    );
}
