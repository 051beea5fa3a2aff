//! A request target as a proxy receives it: `parse_target` never panics, and whatever it lets
//! through becomes a path the rules can match. An origin-form path or the origin-form of an
//! absolute-form target starts with `/`; an authority is never empty and holds no `/`, `?`,
//! `@` or `#`; and the path the rules see (normalized, then without `;` parameters) starts with
//! `/`, holds no `;`, and is the same when worked out again from itself.

#![no_main]

use libfuzzer_sys::fuzz_target;
use rules::{normalize_path, parse_target, strip_path_parameters, Target};

fuzz_target!(|data: &[u8]| {
    for is_options in [false, true] {
        let Ok(target) = parse_target(data, is_options) else {
            continue;
        };
        let origin_form = match target {
            Target::Asterisk => {
                assert!(is_options && data.starts_with(b"*"), "{data:?}");
                continue;
            }
            Target::Origin(path) => path.to_owned(),
            Target::Absolute {
                authority,
                path_and_query,
            } => {
                assert!(!authority.is_empty(), "{data:?}");
                assert!(
                    !authority.contains(['/', '?', '@', '#']),
                    "{data:?} gave authority {authority:?}"
                );
                path_and_query.to_origin_form()
            }
        };
        assert!(origin_form.starts_with('/'), "{data:?} gave {origin_form:?}");
        assert!(!origin_form.contains('#'), "{data:?} gave {origin_form:?}");
        let path = origin_form.split('?').next().unwrap_or("/");
        let Ok(normalized) = normalize_path(path) else {
            continue;
        };
        let Ok(rule_path) = strip_path_parameters(&normalized) else {
            continue;
        };
        assert!(rule_path.starts_with('/'), "{data:?} gave {rule_path:?}");
        assert!(!rule_path.contains(';'), "{data:?} gave {rule_path:?}");
        assert!(!rule_path.contains("//"), "{data:?} gave {rule_path:?}");
        let again = normalize_path(&rule_path).map(|p| p.into_owned());
        assert_eq!(again.as_deref(), Ok(rule_path.as_ref()), "{data:?}");
    }
});
