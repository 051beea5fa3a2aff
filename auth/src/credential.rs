//! Which of the things a request carries is taken as its proof of identity. The precedence is
//! stated here, once:
//!
//! 1. from a trusted auth proxy ([`crate::TrustedProxy`]), its signed assertion header, when
//!    one is configured and sent: verified like any token (keys, `alg`, `exp`, issuer,
//!    audience), and refused if it does not verify, with no fallback;
//! 2. from a trusted auth proxy, its identity headers, when they name a user;
//! 3. the request's own token: `Authorization: Bearer`, then the cookie.
//!
//! From any other peer, steps 1 and 2 do not exist: its identity headers are ignored (and the
//! proxy removes them before the request goes on).

use crate::trusted::Forwarded;

/// What a request presents, gathered by the caller.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Presented<'a> {
    /// The TCP peer is inside `trusted_proxy.peers`.
    pub trusted_peer: bool,
    pub assertion: Option<&'a str>,
    pub forwarded: Forwarded<'a>,
    /// The bearer token, else the cookie's.
    pub token: Option<&'a str>,
}

/// The one proof of identity a request is judged by.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Credential<'a> {
    /// A trusted auth proxy's signed assertion, to verify as a token.
    Assertion(&'a str),
    /// A trusted auth proxy's identity headers.
    Forwarded(Forwarded<'a>),
    /// The request's own token.
    Token(&'a str),
    None,
}

/// See the module documentation for the order.
pub fn credential(presented: Presented<'_>) -> Credential<'_> {
    if presented.trusted_peer {
        if let Some(assertion) = presented.assertion.filter(|a| !a.is_empty()) {
            return Credential::Assertion(assertion);
        }
        if presented.forwarded.names_someone() {
            return Credential::Forwarded(presented.forwarded);
        }
    }
    match presented.token {
        Some(token) => Credential::Token(token),
        None => Credential::None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALICE: Forwarded<'static> = Forwarded {
        user: Some(b"alice"),
        email: None,
        name: None,
        groups: None,
    };
    const EMAIL_ONLY: Forwarded<'static> = Forwarded {
        user: None,
        email: Some(b"a@x.io"),
        name: None,
        groups: None,
    };
    const GROUPS_ONLY: Forwarded<'static> = Forwarded {
        user: None,
        email: None,
        name: None,
        groups: Some(b"admins"),
    };
    const NOBODY: Forwarded<'static> = Forwarded {
        user: None,
        email: None,
        name: None,
        groups: None,
    };

    fn check(
        trusted_peer: bool,
        assertion: Option<&'static str>,
        forwarded: Forwarded<'static>,
        token: Option<&'static str>,
        expected: Credential<'static>,
    ) {
        let presented = Presented {
            trusted_peer,
            assertion,
            forwarded,
            token,
        };
        assert_eq!(credential(presented), expected, "{presented:?}");
    }

    #[test]
    fn precedence() {
        use Credential::{Assertion, Forwarded, Token};
        let nothing = Credential::None;
        // Trusted peer: assertion, then headers, then the token.
        check(true, Some("jwt"), ALICE, Some("tok"), Assertion("jwt"));
        check(true, Some("jwt"), NOBODY, None, Assertion("jwt"));
        check(true, Some(""), ALICE, Some("tok"), Forwarded(ALICE));
        check(true, None, ALICE, Some("tok"), Forwarded(ALICE));
        check(true, None, EMAIL_ONLY, None, Forwarded(EMAIL_ONLY));
        check(true, None, GROUPS_ONLY, Some("tok"), Token("tok"));
        check(true, None, NOBODY, Some("tok"), Token("tok"));
        check(true, None, NOBODY, None, nothing);
        check(true, None, GROUPS_ONLY, None, nothing);
        // Any other peer: only its own token counts.
        check(false, Some("jwt"), ALICE, Some("tok"), Token("tok"));
        check(false, Some("jwt"), ALICE, None, nothing);
        check(false, None, ALICE, None, nothing);
        check(false, None, EMAIL_ONLY, Some("tok"), Token("tok"));
        check(false, None, NOBODY, None, nothing);
    }
}
