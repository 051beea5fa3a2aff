//! `docs/config.md` is the reference rendered from the key declarations; this test keeps the
//! file and the declarations in step.

use std::path::PathBuf;

fn doc_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../docs/config.md")
}

#[test]
fn docs_config_md_is_the_rendered_reference() {
    let rendered = config::reference_markdown();
    let path = doc_path();
    if std::env::var_os("LATCH_BLESS").is_some() {
        std::fs::write(&path, &rendered).unwrap();
        return;
    }
    let on_disk = std::fs::read_to_string(&path).unwrap_or_default();
    let first_difference = on_disk
        .lines()
        .zip(rendered.lines())
        .position(|(a, b)| a != b)
        .unwrap_or(on_disk.lines().count().min(rendered.lines().count()));
    assert!(
        on_disk == rendered,
        "{} differs from the key declarations (first at line {}); regenerate it with \
         `LATCH_BLESS=1 cargo test -p config --test reference`",
        path.display(),
        first_difference + 1
    );
}

#[test]
fn the_reference_lists_every_section_key_and_variable() {
    let rendered = config::reference_markdown();
    for line in [
        "## `[proxy]`",
        "## `[auth]`",
        "## `[locks]`",
        "## `[rules]`",
        "## `[control_plane]`",
        "## `[admin]`",
        "| `threads` | integer | `2` | 1 to 64 | `LATCH_PROXY_THREADS` |",
        "| `inject_at` | enum | `\"head\"` | `\"head\"`, `\"body_end\"` | `LATCH_PROXY_INJECT_AT` |",
        "| `upstream` | list of strings | required |",
        "| `lease_seconds` | seconds | `30` | 5 to 86400 | `LATCH_LOCKS_LEASE_SECONDS` |",
        "| `store_timeout_ms` | milliseconds | `500` |",
        "| `admin_roles` | list of strings | `[\"admin\"]` |",
        "| `listen` | address | `\"127.0.0.1:9090\"` |",
        "`LATCH_CONTROL_PLANE_PUBLIC_SCHEME`",
    ] {
        assert!(rendered.contains(line), "{line:?} missing from:\n{rendered}");
    }
}
