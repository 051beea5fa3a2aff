//! The configuration reference (`docs/config.md`), rendered from the key declarations so the
//! documentation cannot drift from what the loader accepts. A test in `tests/reference.rs`
//! compares the file with this text.

use std::fmt::Write;

use crate::key::{Fallback, Key, Kind, REPEATED};
use crate::keys::KEYS;
use crate::raw::sections;

/// The whole reference as Markdown: a short introduction, then one table per section.
pub fn reference_markdown() -> String {
    let mut out = String::from(
        "# Configuration reference\n\n\
         <!-- Generated from config/src/keys.rs. Do not edit: run `LATCH_BLESS=1 cargo test -p config`. -->\n\n\
         Latch reads one TOML file, and every key can also be set by its `LATCH_<SECTION>_<KEY>` \
         environment variable (lists comma-separated or as a TOML array).\n\
         Precedence, lowest first: the default below, the file, the environment; unknown keys, \
         sections and `LATCH_*` variables are errors.\n",
    );
    for section in sections() {
        let repeated = REPEATED.contains(&section);
        let heading = if repeated {
            format!(
                "`[[{section}]]`\n\n\
                 One table per entry; each key below is read once per entry. Problems name the \
                 entry, counting from 1: `{section}[2].hosts`. These keys are set only in the \
                 file: an environment variable could not say which entry it means."
            )
        } else {
            format!("`[{section}]`")
        };
        let _ = write!(
            out,
            "\n## {heading}\n\n\
             | key | kind | default | allowed | env var | meaning |\n\
             |---|---|---|---|---|---|\n"
        );
        for key in KEYS.iter().filter(|key| key.section == section) {
            let _ = writeln!(
                out,
                "| `{}` | {} | {} | {} | {} | {} |",
                key.name,
                key.kind.name(),
                cell(&default_shown(key)),
                cell(&allowed(key)),
                if repeated {
                    "none".to_string()
                } else {
                    format!("`{}`", key.env_var())
                },
                cell(key.doc),
            );
        }
    }
    out
}

fn default_shown(key: &Key) -> String {
    match &key.default {
        Fallback::Value(value) => format!("`{value}`"),
        Fallback::Computed { shown, .. } => shown.to_string(),
        Fallback::Unset => "unset".into(),
        Fallback::Required(_) => "required".into(),
    }
}

fn allowed(key: &Key) -> String {
    if let Some(allowed) = key.allowed {
        return allowed.to_string();
    }
    match &key.kind {
        Kind::Integer { min, max } | Kind::Duration { min, max, .. } => format!("{min} to {max}"),
        Kind::Choice(names) => names
            .iter()
            .map(|name| format!("`\"{name}\"`"))
            .collect::<Vec<_>>()
            .join(", "),
        Kind::Address => "`host:port`, IPv6 in brackets".into(),
        Kind::Text | Kind::List => "any".into(),
        Kind::Bool => "`true`, `false`".into(),
    }
}

/// Text safe inside a Markdown table cell.
fn cell(text: &str) -> String {
    text.replace('|', "\\|")
}
