//! `normalize_path` never panics, and whatever it returns is canonical: it starts with `/`,
//! has no empty, `.` or `..` segment, no escape it should have decoded or refused, and
//! normalizing it again borrows it unchanged.

#![no_main]

use std::borrow::Cow;

use libfuzzer_sys::fuzz_target;
use rules::normalize_path;

fuzz_target!(|data: &[u8]| {
    let Ok(input) = std::str::from_utf8(data) else {
        return;
    };
    check(input);
    check(&format!("/{input}"));
});

fn check(input: &str) {
    let Ok(out) = normalize_path(input) else {
        return;
    };
    assert!(out.starts_with('/'), "{input:?} gave {out:?}");
    assert!(!out.contains("//"), "{input:?} gave {out:?}");
    let body = out.strip_prefix('/').unwrap_or(&out);
    let body = body.strip_suffix('/').unwrap_or(body);
    if !body.is_empty() {
        for segment in body.split('/') {
            assert!(
                !segment.is_empty() && segment != "." && segment != "..",
                "{input:?} gave {out:?}"
            );
        }
    }
    assert!(
        !out.contains('\\') && !out.contains('\0'),
        "{input:?} gave {out:?}"
    );
    let bytes = out.as_bytes();
    for (at, _) in out.match_indices('%') {
        let hex = &bytes[at + 1..at + 3];
        assert!(
            hex.iter()
                .all(|b| b.is_ascii_digit() || (b'A'..=b'F').contains(b)),
            "{input:?} gave {out:?}"
        );
        let value = u8::from_str_radix(std::str::from_utf8(hex).unwrap(), 16).unwrap();
        assert!(
            !(value.is_ascii_alphanumeric() || b"-._~/\\\0".contains(&value)),
            "{input:?} gave {out:?}"
        );
    }
    match normalize_path(&out) {
        Ok(Cow::Borrowed(again)) => assert_eq!(again, out, "not idempotent on {input:?}"),
        other => panic!("normalizing {out:?} (from {input:?}) again gave {other:?}"),
    }
    if input == out {
        assert!(
            matches!(out, Cow::Borrowed(_)),
            "{input:?} was copied unchanged"
        );
    }
}
