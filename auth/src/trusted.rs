//! Identity asserted by an authentication proxy already in front of Latch (oauth2-proxy,
//! Pomerium): which peers are trusted to assert it, in which request headers, and how those
//! headers become an [`Identity`].
//!
//! A header is only a claim; what makes it proof is the TCP peer it came from. So the headers
//! count only from a peer inside the configured networks, and the caller removes them, in
//! every spelling an app server could read as theirs, from every other peer's requests (see
//! [`TrustedProxy::is_identity_header`]). Works on header values as bytes and on the peer's
//! address; knows no HTTP library.

use std::net::IpAddr;

use ipnet::IpNet;

use crate::claims::Identity;
use crate::error::{AuthError, TrustedProxyError};

/// A forwarded value longer than this is refused: no user id, name or group list is that
/// long, and it bounds what one request can make the proxy copy.
pub const MAX_VALUE_BYTES: usize = 4096;

/// Groups kept at most from one request's groups header.
pub const MAX_GROUPS: usize = 256;

/// How long an identity taken from headers is good for, for what lives on past the request
/// (a banner socket closes then, and its page reconnects through the auth proxy, which checks
/// its session again).
pub const FORWARDED_LIFETIME_SECONDS: u64 = 3600;

/// The `[trusted_proxy]` settings as the operator wrote them; [`TrustedProxy::new`] judges them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TrustedProxySettings {
    /// Networks (CIDR, or single addresses) whose connections may assert identity. Empty: off.
    pub peers: Vec<String>,
    /// Header names; an empty name turns that header off.
    pub user_header: String,
    pub email_header: String,
    pub name_header: String,
    pub groups_header: String,
    pub assertion_header: String,
}

/// oauth2-proxy's header names, and no assertion header.
impl Default for TrustedProxySettings {
    fn default() -> Self {
        TrustedProxySettings {
            peers: Vec::new(),
            user_header: "X-Forwarded-User".to_owned(),
            email_header: "X-Forwarded-Email".to_owned(),
            name_header: "X-Forwarded-Preferred-Username".to_owned(),
            groups_header: "X-Forwarded-Groups".to_owned(),
            assertion_header: String::new(),
        }
    }
}

/// Checked [`TrustedProxySettings`]. Header names are kept lower-case, with `_` read as `-`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TrustedProxy {
    peers: Vec<IpNet>,
    user: Option<String>,
    email: Option<String>,
    name: Option<String>,
    groups: Option<String>,
    assertion: Option<String>,
}

/// The identity headers a trusted peer sent, as raw values.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Forwarded<'a> {
    pub user: Option<&'a [u8]>,
    pub email: Option<&'a [u8]>,
    pub name: Option<&'a [u8]>,
    pub groups: Option<&'a [u8]>,
}

impl TrustedProxy {
    /// Checks `settings`, reporting every problem. `Ok(None)` when no peer is trusted (off).
    pub fn new(
        settings: &TrustedProxySettings,
    ) -> Result<Option<TrustedProxy>, Vec<TrustedProxyError>> {
        let mut errors = Vec::new();
        let mut peers = Vec::new();
        for text in &settings.peers {
            match parse_peer(text) {
                Some(net) => peers.push(net),
                None => errors.push(TrustedProxyError::Peer(text.clone())),
            }
        }
        let mut seen: Vec<String> = Vec::new();
        let mut header = |setting: &'static str, text: &str| -> Option<String> {
            if text.is_empty() {
                return None;
            }
            let folded = fold(text);
            if let Some(reason) = unusable_header(text, &folded) {
                errors.push(TrustedProxyError::Header {
                    setting,
                    name: text.to_owned(),
                    reason,
                });
                return None;
            }
            if seen.contains(&folded) {
                errors.push(TrustedProxyError::Header {
                    setting,
                    name: text.to_owned(),
                    reason: "another trusted_proxy setting names the same header",
                });
                return None;
            }
            seen.push(folded.clone());
            Some(folded)
        };
        let user = header("user_header", &settings.user_header);
        let email = header("email_header", &settings.email_header);
        let name = header("name_header", &settings.name_header);
        let groups = header("groups_header", &settings.groups_header);
        let assertion = header("assertion_header", &settings.assertion_header);
        if !peers.is_empty() && user.is_none() && email.is_none() && assertion.is_none() {
            errors.push(TrustedProxyError::NoIdentityHeader);
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        if peers.is_empty() {
            return Ok(None);
        }
        Ok(Some(TrustedProxy {
            peers,
            user,
            email,
            name,
            groups,
            assertion,
        }))
    }

    /// Whether a connection from `peer` may assert identity. An IPv4 peer seen as an
    /// IPv4-mapped IPv6 address (a dual-stack listener) is checked as the IPv4 address.
    pub fn trusts(&self, peer: Option<IpAddr>) -> bool {
        peer.is_some_and(|peer| {
            let peer = peer.to_canonical();
            self.peers.iter().any(|net| net.contains(&peer))
        })
    }

    /// Whether a request header, by its lower-case name, is one of the identity headers, in
    /// any spelling an app server reads as the same (`_` for `-`): such headers from an
    /// untrusted peer must not reach the app.
    pub fn is_identity_header(&self, lowercase_name: &str) -> bool {
        self.names().any(|name| same_name(lowercase_name, name))
    }

    /// The name of the assertion header, lower-case, when one is configured.
    pub fn assertion_header(&self) -> Option<&str> {
        self.assertion.as_deref()
    }

    /// The configured header names (lower-case) for user, email, name and groups, to look up.
    pub fn forwarded_headers(&self) -> [Option<&str>; 4] {
        [
            self.user.as_deref(),
            self.email.as_deref(),
            self.name.as_deref(),
            self.groups.as_deref(),
        ]
    }

    fn names(&self) -> impl Iterator<Item = &str> {
        [
            &self.user,
            &self.email,
            &self.name,
            &self.groups,
            &self.assertion,
        ]
        .into_iter()
        .filter_map(|name| name.as_deref())
    }
}

impl Forwarded<'_> {
    /// Whether the peer sent anything that names a user.
    pub fn names_someone(&self) -> bool {
        self.user.is_some() || self.email.is_some()
    }

    /// The identity these headers assert, valid until `now` plus
    /// [`FORWARDED_LIFETIME_SECONDS`]: the user header (else the email), the name header
    /// (else the email, else the user), the groups header split at commas as roles. A value
    /// that is not UTF-8, is too long or holds control characters refuses the request rather
    /// than being guessed at.
    pub fn identity(&self, now: u64) -> Result<Identity, AuthError> {
        let user = text(self.user)?.or(text(self.email)?);
        let Some(user) = user else {
            return Err(AuthError::Missing);
        };
        let name = text(self.name)?.or(text(self.email)?).unwrap_or(user);
        let roles = match text(self.groups)? {
            None => Vec::new(),
            Some(groups) => groups
                .split(',')
                .map(str::trim)
                .filter(|group| !group.is_empty())
                .take(MAX_GROUPS)
                .map(str::to_owned)
                .collect(),
        };
        Ok(Identity {
            user: user.to_owned(),
            name: name.to_owned(),
            roles,
            expires_at: now.saturating_add(FORWARDED_LIFETIME_SECONDS),
            sign_in: None,
            renewal: None,
            header_values: Default::default(),
        })
    }
}

/// A forwarded value as text: `None` when absent or blank.
fn text(value: Option<&[u8]>) -> Result<Option<&str>, AuthError> {
    let Some(value) = value else {
        return Ok(None);
    };
    if value.len() > MAX_VALUE_BYTES {
        return Err(AuthError::BadForwardedIdentity);
    }
    let value = std::str::from_utf8(value).map_err(|_| AuthError::BadForwardedIdentity)?;
    if value.chars().any(char::is_control) {
        return Err(AuthError::BadForwardedIdentity);
    }
    let value = value.trim();
    Ok((!value.is_empty()).then_some(value))
}

fn parse_peer(text: &str) -> Option<IpNet> {
    let text = text.trim();
    if let Ok(net) = text.parse::<IpNet>() {
        return Some(net.trunc());
    }
    text.parse::<IpAddr>().ok().map(IpNet::from)
}

/// Lower case, `_` read as `-`.
fn fold(name: &str) -> String {
    name.bytes()
        .map(|b| match b {
            b'_' => '-',
            b => char::from(b.to_ascii_lowercase()),
        })
        .collect()
}

fn same_name(lowercase_name: &str, folded: &str) -> bool {
    lowercase_name.len() == folded.len()
        && lowercase_name
            .bytes()
            .zip(folded.bytes())
            .all(|(got, want)| got == want || (got == b'_' && want == b'-'))
}

/// Why a header name cannot carry identity, if it cannot.
fn unusable_header(text: &str, folded: &str) -> Option<&'static str> {
    // RFC 9110 §5.6.2 token characters.
    let token = text
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
    if !token {
        return Some("is not a valid header name");
    }
    if folded.starts_with("x-latch-") {
        return Some("X-Latch-* headers are Latch's own");
    }
    const RESERVED: &[&str] = &[
        "authorization",
        "cookie",
        "host",
        "content-length",
        "transfer-encoding",
        "connection",
        "upgrade",
        "origin",
    ];
    if RESERVED.contains(&folded) {
        return Some("this header has another meaning in HTTP");
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(peers: &[&str]) -> TrustedProxySettings {
        TrustedProxySettings {
            peers: peers.iter().map(|p| (*p).to_owned()).collect(),
            ..TrustedProxySettings::default()
        }
    }

    fn trusted(peers: &[&str]) -> TrustedProxy {
        TrustedProxy::new(&settings(peers)).unwrap().unwrap()
    }

    fn ip(text: &str) -> Option<IpAddr> {
        Some(text.parse().unwrap())
    }

    #[test]
    fn peers_inside_the_networks_are_trusted() {
        let t = trusted(&["10.0.0.0/8", "192.168.1.7", "fd00::/8", "172.16.5.9/16"]);
        let cases = [
            ("10.0.0.1", true),
            ("10.255.255.255", true),
            ("11.0.0.1", false),
            ("192.168.1.7", true),
            ("192.168.1.8", false),
            ("172.16.200.1", true),
            ("172.17.0.1", false),
            ("fd12::1", true),
            ("fe80::1", false),
            ("::ffff:10.1.2.3", true),
            ("::ffff:127.0.0.1", false),
            ("127.0.0.1", false),
            ("::1", false),
        ];
        for (peer, expected) in cases {
            assert_eq!(t.trusts(ip(peer)), expected, "{peer}");
        }
        assert!(!t.trusts(None), "a peer without an address is not trusted");
    }

    #[test]
    fn every_settings_problem_is_reported() {
        let bad = TrustedProxySettings {
            peers: vec![
                "10.0.0.0/33".into(),
                "not-an-ip".into(),
                "10.0.0.0/8".into(),
                "".into(),
            ],
            user_header: "X Forwarded User".into(),
            email_header: "X-Latch-User".into(),
            name_header: "Authorization".into(),
            groups_header: "x_forwarded_user".into(),
            assertion_header: "X-Forwarded-Groups".into(),
        };
        let errors = TrustedProxy::new(&bad).unwrap_err();
        let named: Vec<&str> = errors.iter().map(TrustedProxyError::setting).collect();
        assert_eq!(
            named,
            [
                "peers",
                "peers",
                "peers",
                "user_header",
                "email_header",
                "name_header"
            ],
            "{errors:?}"
        );
        let mut dup = TrustedProxySettings {
            peers: vec!["10.0.0.0/8".into()],
            ..TrustedProxySettings::default()
        };
        dup.assertion_header = "x_forwarded_user".into();
        let errors = TrustedProxy::new(&dup).unwrap_err();
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert_eq!(errors[0].setting(), "assertion_header");
        let mut none = settings(&["10.0.0.0/8"]);
        none.user_header.clear();
        none.email_header.clear();
        let errors = TrustedProxy::new(&none).unwrap_err();
        assert_eq!(errors, [TrustedProxyError::NoIdentityHeader]);
    }

    #[test]
    fn no_peers_means_off() {
        assert_eq!(TrustedProxy::new(&settings(&[])).unwrap(), None);
    }

    #[test]
    fn identity_headers_in_every_spelling() {
        let mut s = settings(&["10.0.0.0/8"]);
        s.assertion_header = "X-Pomerium-Jwt-Assertion".into();
        let t = TrustedProxy::new(&s).unwrap().unwrap();
        for name in [
            "x-forwarded-user",
            "x_forwarded_user",
            "x-forwarded_user",
            "x-forwarded-email",
            "x-forwarded-preferred-username",
            "x_forwarded_groups",
            "x-pomerium-jwt-assertion",
            "x_pomerium_jwt_assertion",
        ] {
            assert!(t.is_identity_header(name), "{name}");
        }
        for name in [
            "x-forwarded-for",
            "x-forwarded-users",
            "forwarded-user",
            "cookie",
        ] {
            assert!(!t.is_identity_header(name), "{name}");
        }
    }

    #[test]
    fn forwarded_headers_to_identities() {
        let check = |f: Forwarded<'static>, expected: Result<(&str, &str, &[&str]), AuthError>| {
            let got = f.identity(1_000).map(|id| {
                assert_eq!(id.expires_at, 1_000 + FORWARDED_LIFETIME_SECONDS);
                (id.user, id.name, id.roles)
            });
            let expected = expected.map(|(u, n, r)| {
                (
                    u.to_owned(),
                    n.to_owned(),
                    r.iter().map(|r| (*r).to_owned()).collect(),
                )
            });
            assert_eq!(got, expected, "{f:?}");
        };
        let f = |user: Option<&'static str>,
                 email: Option<&'static str>,
                 name: Option<&'static str>,
                 groups: Option<&'static str>| Forwarded {
            user: user.map(str::as_bytes),
            email: email.map(str::as_bytes),
            name: name.map(str::as_bytes),
            groups: groups.map(str::as_bytes),
        };
        check(
            f(Some("alice"), None, None, None),
            Ok(("alice", "alice", &[])),
        );
        check(
            f(
                Some("alice"),
                Some("a@x.io"),
                Some("Alice"),
                Some("admins, editors,,"),
            ),
            Ok(("alice", "Alice", &["admins", "editors"])),
        );
        check(
            f(None, Some("a@x.io"), None, None),
            Ok(("a@x.io", "a@x.io", &[])),
        );
        check(
            f(Some("alice"), Some("a@x.io"), None, None),
            Ok(("alice", "a@x.io", &[])),
        );
        check(
            f(Some("  "), Some("a@x.io"), None, None),
            Ok(("a@x.io", "a@x.io", &[])),
        );
        check(
            f(None, None, Some("Alice"), Some("admins")),
            Err(AuthError::Missing),
        );
        check(f(Some("  "), None, None, None), Err(AuthError::Missing));
        check(
            f(Some("al\nice"), None, None, None),
            Err(AuthError::BadForwardedIdentity),
        );
        check(
            f(Some("alice"), None, Some("A\u{7}"), None),
            Err(AuthError::BadForwardedIdentity),
        );
        let long = "g,".repeat(MAX_VALUE_BYTES);
        let long: &'static str = Box::leak(long.into_boxed_str());
        check(
            f(Some("alice"), None, None, Some(long)),
            Err(AuthError::BadForwardedIdentity),
        );
        let invalid = Forwarded {
            user: Some(b"al\xffice"),
            ..Forwarded::default()
        };
        check(invalid, Err(AuthError::BadForwardedIdentity));
        let many = (0..MAX_GROUPS + 10)
            .map(|i| format!("g{i}"))
            .collect::<Vec<_>>()
            .join(",");
        let id = Forwarded {
            user: Some(b"alice"),
            groups: Some(many.as_bytes()),
            ..Forwarded::default()
        }
        .identity(0)
        .unwrap();
        assert_eq!(id.roles.len(), MAX_GROUPS);
    }
}
