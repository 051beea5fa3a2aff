//! Whether a page's Content-Security-Policy lets the banner script load, and with which nonce.
//!
//! The policy is only read, never changed: weakening a site's CSP to make room for the banner
//! would trade the site's protection for a convenience. Where the answer is not certain the
//! verdict is `Forbidden`, because a blocked script is only a console error while a wrong
//! guess buys nothing. The banner is a same-origin external script at `{prefix}/banner.js`,
//! so host and scheme sources could allow it, but this module does not know the origin the
//! browser sees and does not count them. It must not know about headers, HTTP or the proxy.

/// What the enforced policies of one response say about inserting the banner script.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CspVerdict {
    /// The response has no enforced policy.
    NoPolicy,
    /// Every policy allows a same-origin script without a nonce.
    Allowed,
    /// Every policy allows the script when it carries this nonce, taken from the page's policy.
    AllowedWithNonce(String),
    /// Some policy blocks the script; the text says which and why, for the log.
    Forbidden(String),
}

/// Reads the values of every `Content-Security-Policy` header of a response (not the
/// `-Report-Only` ones, which block nothing) and decides whether the banner may be inserted.
///
/// A script must satisfy every policy, and one header value may hold several policies separated
/// by commas. When a policy carries a nonce, the nonce is reused even if `'self'` would also do,
/// since it keeps working under `'strict-dynamic'`.
pub fn csp_verdict<'a>(policies: impl IntoIterator<Item = &'a str>) -> CspVerdict {
    let mut rules = Vec::new();
    let mut any_policy = false;
    for header in policies {
        for policy in header.split(',').filter(|p| !p.trim().is_empty()) {
            any_policy = true;
            if let Some(rule) = ScriptRule::from_policy(policy, rules.len() + 1) {
                rules.push(rule);
            }
        }
    }
    if !any_policy {
        return CspVerdict::NoPolicy;
    }

    let mut candidates: Vec<&str> = Vec::new();
    for nonce in rules.iter().flat_map(|rule| rule.nonces.iter().copied()) {
        if !candidates.contains(&nonce) {
            candidates.push(nonce);
        }
    }
    if let Some(nonce) = candidates
        .into_iter()
        .find(|nonce| rules.iter().all(|rule| rule.allows(Some(nonce))))
    {
        return CspVerdict::AllowedWithNonce(nonce.to_owned());
    }
    if rules.iter().all(|rule| rule.allows(None)) {
        return CspVerdict::Allowed;
    }
    match rules
        .iter()
        .find(|rule| !rule.allows(None) && rule.nonces.is_empty())
    {
        Some(rule) => CspVerdict::Forbidden(rule.why_blocked()),
        None => CspVerdict::Forbidden("the policies require different script nonces".to_owned()),
    }
}

/// The directive that governs `<script src>` in one policy, reduced to what matters here.
#[derive(Debug)]
struct ScriptRule<'a> {
    /// Position of the policy among all policies of the response, counted from 1.
    policy: usize,
    directive: &'a str,
    /// `'self'` or `*` is listed.
    same_origin: bool,
    /// `'strict-dynamic'` is listed, which makes browsers ignore `'self'` and `*`.
    strict_dynamic: bool,
    nonces: Vec<&'a str>,
}

impl<'a> ScriptRule<'a> {
    /// `None` when the policy has no directive that restricts script elements.
    fn from_policy(policy: &'a str, position: usize) -> Option<ScriptRule<'a>> {
        let mut elem = None;
        let mut script = None;
        let mut default = None;
        for directive in policy.split(';') {
            let mut tokens = directive.split_ascii_whitespace();
            let Some(name) = tokens.next() else {
                continue;
            };
            let slot = if name.eq_ignore_ascii_case("script-src-elem") {
                &mut elem
            } else if name.eq_ignore_ascii_case("script-src") {
                &mut script
            } else if name.eq_ignore_ascii_case("default-src") {
                &mut default
            } else {
                continue;
            };
            // Browsers ignore a repeated directive; the first one counts.
            if slot.is_none() {
                *slot = Some((name, tokens));
            }
        }
        let (directive, sources) = elem.or(script).or(default)?;

        let mut rule = ScriptRule {
            policy: position,
            directive,
            same_origin: false,
            strict_dynamic: false,
            nonces: Vec::new(),
        };
        for source in sources {
            if source == "*" || source.eq_ignore_ascii_case("'self'") {
                rule.same_origin = true;
            } else if source.eq_ignore_ascii_case("'strict-dynamic'") {
                rule.strict_dynamic = true;
            } else if let Some(nonce) = nonce_source(source) {
                rule.nonces.push(nonce);
            }
        }
        Some(rule)
    }

    fn allows(&self, nonce: Option<&str>) -> bool {
        nonce.is_some_and(|nonce| self.nonces.contains(&nonce))
            || (self.same_origin && !self.strict_dynamic)
    }

    fn why_blocked(&self) -> String {
        let detail = if self.strict_dynamic {
            "has 'strict-dynamic' and no nonce"
        } else {
            "allows neither 'self', '*' nor a nonce"
        };
        format!(
            "policy {}: {} {detail}",
            self.policy,
            self.directive.to_ascii_lowercase()
        )
    }
}

/// The value of a `'nonce-…'` source, if `source` is one with a well-formed base64 value;
/// browsers ignore malformed ones, so they allow nothing.
fn nonce_source(source: &str) -> Option<&str> {
    const PREFIX: &str = "'nonce-";
    let head = source.get(..PREFIX.len())?;
    if !head.eq_ignore_ascii_case(PREFIX) {
        return None;
    }
    let value = source[PREFIX.len()..].strip_suffix('\'')?;
    let body = value.trim_end_matches('=');
    let valid = !body.is_empty()
        && value.len() - body.len() <= 2
        && body
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'-' | b'_'));
    valid.then_some(value)
}
