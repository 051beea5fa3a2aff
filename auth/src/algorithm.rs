//! The algorithm allow-list: the names operators write, and the names tokens carry.
//!
//! Names are matched exactly (JWS `alg` values are case-sensitive). This module knows nothing
//! about keys; which key may verify which algorithm is decided in `key`.

use jsonwebtoken::Algorithm;

use crate::error::KeyError;

const NAMES: [(&str, Algorithm); 12] = [
    ("HS256", Algorithm::HS256),
    ("HS384", Algorithm::HS384),
    ("HS512", Algorithm::HS512),
    ("RS256", Algorithm::RS256),
    ("RS384", Algorithm::RS384),
    ("RS512", Algorithm::RS512),
    ("PS256", Algorithm::PS256),
    ("PS384", Algorithm::PS384),
    ("PS512", Algorithm::PS512),
    ("ES256", Algorithm::ES256),
    ("ES384", Algorithm::ES384),
    ("EdDSA", Algorithm::EdDSA),
];

/// Header `alg` values longer than this are not echoed back, whatever they contain.
const MAX_ECHOED_NAME: usize = 16;

pub(crate) fn parse(name: &str) -> Option<Algorithm> {
    NAMES.iter().find(|(n, _)| *n == name).map(|(_, alg)| *alg)
}

pub(crate) fn name(alg: Algorithm) -> &'static str {
    NAMES
        .iter()
        .find(|(_, a)| *a == alg)
        .map_or("unknown", |(n, _)| n)
}

pub(crate) fn list(algs: &[Algorithm]) -> String {
    algs.iter().map(|a| name(*a)).collect::<Vec<_>>().join(", ")
}

/// Turns the configured names into algorithms, reporting every name that cannot be allowed.
/// Duplicates collapse so each algorithm is validated once.
pub(crate) fn parse_allow_list(names: &[String], errors: &mut Vec<KeyError>) -> Vec<Algorithm> {
    if names.is_empty() {
        errors.push(KeyError::NoAlgorithms);
    }
    let mut allowed = Vec::with_capacity(names.len());
    for raw in names {
        let trimmed = raw.trim();
        if trimmed.eq_ignore_ascii_case("none") {
            errors.push(KeyError::NoneAlgorithm(raw.clone()));
        } else if let Some(alg) = parse(trimmed) {
            if !allowed.contains(&alg) {
                allowed.push(alg);
            }
        } else {
            errors.push(KeyError::UnknownAlgorithm(raw.clone()));
        }
    }
    allowed
}

/// The form of a token's header `alg` that may appear in an error shown to the client:
/// known names verbatim, anything else only if it is short and plainly alphanumeric.
pub(crate) fn echo(header_alg: &str) -> String {
    let plain = !header_alg.is_empty()
        && header_alg.len() <= MAX_ECHOED_NAME
        && header_alg
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if plain {
        header_alg.to_owned()
    } else {
        "(unrecognized)".to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::settings::SUPPORTED;

    #[test]
    fn every_supported_name_round_trips() {
        for (n, alg) in NAMES {
            assert_eq!(parse(n), Some(alg));
            assert_eq!(name(alg), n);
            assert!(SUPPORTED.contains(n), "{n} missing from SUPPORTED");
        }
    }

    #[test]
    fn names_are_case_sensitive() {
        assert_eq!(parse("hs256"), None);
        assert_eq!(parse("EDDSA"), None);
    }

    #[test]
    fn allow_list_reports_every_bad_name_and_dedupes() {
        let mut errors = Vec::new();
        let names = ["HS256", "None", "HS256", "XS1"].map(String::from);
        let allowed = parse_allow_list(&names, &mut errors);
        assert_eq!(allowed, vec![Algorithm::HS256]);
        assert_eq!(
            errors,
            vec![
                KeyError::NoneAlgorithm("None".into()),
                KeyError::UnknownAlgorithm("XS1".into())
            ]
        );
    }

    #[test]
    fn echo_hides_anything_unusual() {
        assert_eq!(echo("none"), "none");
        assert_eq!(echo("RS256"), "RS256");
        assert_eq!(echo(""), "(unrecognized)");
        assert_eq!(echo("<script>"), "(unrecognized)");
        assert_eq!(echo("A".repeat(17).as_str()), "(unrecognized)");
    }
}
