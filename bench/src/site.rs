//! The static site the upstream serves: a 1.4 KB file, a 1.4 KB HTML page and a 100 KB HTML
//! page, copied under each directory a rule (or no rule) covers, so every scenario asks the
//! upstream for the same bytes and only the proxy's work differs.

use std::path::Path;

use crate::BenchError;

/// A 1.4 KB non-HTML file: a typical small asset.
pub const ASSET: &str = "asset.bin";
/// A 1.4 KB HTML page.
pub const PAGE: &str = "page.html";
/// A 100 KB HTML page.
pub const BIG: &str = "big.html";

pub const ASSET_BYTES: usize = 1400;
pub const PAGE_BYTES: usize = 1400;
pub const BIG_BYTES: usize = 100 * 1024;

/// Directories the files are copied into: the root (no rule), and one per rule in
/// [`crate::latch::RULES`].
pub const DIRS: [&str; 5] = ["", "held", "plain", "denied", "watch/1"];

/// The URL path of `file` under `dir`.
pub fn path(dir: &str, file: &str) -> String {
    if dir.is_empty() {
        format!("/{file}")
    } else {
        format!("/{dir}/{file}")
    }
}

/// Printable bytes that do not compress to nothing, deterministic from run to run.
pub fn asset() -> Vec<u8> {
    let mut state: u32 = 0x9E37_79B9;
    (0..ASSET_BYTES)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            b'!' + (state % 94) as u8
        })
        .collect()
}

/// An HTML document of exactly `size` bytes (for sizes above a few hundred), ending in
/// `</body></html>` like a real page, so the banner goes in at the very end.
pub fn html(size: usize) -> Vec<u8> {
    let head = "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
                <title>Quarterly report</title><link rel=\"stylesheet\" href=\"/app.css\">\
                </head>\n<body>\n<main>\n";
    let tail = "</main>\n</body></html>\n";
    let mut page = String::with_capacity(size);
    page.push_str(head);
    let mut row = 0;
    while page.len() + tail.len() < size {
        let line = format!(
            "<p class=\"row\" id=\"r{row}\">Line {row}: <a href=\"/docs/{row}/edit\">document {row}</a> \
             &mdash; <em>updated</em> by someone</p>\n"
        );
        let room = size - tail.len() - page.len();
        if line.len() <= room {
            page.push_str(&line);
        } else {
            page.push_str(&" ".repeat(room));
        }
        row += 1;
    }
    page.push_str(tail);
    page.into_bytes()
}

/// Writes the site under `root`.
pub fn write(root: &Path) -> Result<(), BenchError> {
    let files = [
        (ASSET, asset()),
        (PAGE, html(PAGE_BYTES)),
        (BIG, html(BIG_BYTES)),
    ];
    for dir in DIRS {
        let dir_path = root.join(dir);
        std::fs::create_dir_all(&dir_path)
            .map_err(|e| BenchError::io(dir_path.display().to_string(), e))?;
        for (name, body) in &files {
            let file = dir_path.join(name);
            std::fs::write(&file, body)
                .map_err(|e| BenchError::io(file.display().to_string(), e))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_have_the_advertised_sizes_and_a_body_end() {
        for size in [PAGE_BYTES, BIG_BYTES] {
            let page = html(size);
            assert_eq!(page.len(), size);
            let text = String::from_utf8(page).unwrap();
            assert!(text.ends_with("</body></html>\n"));
        }
        assert_eq!(asset().len(), ASSET_BYTES);
    }

    #[test]
    fn paths_join_dir_and_file() {
        assert_eq!(path("", PAGE), "/page.html");
        assert_eq!(path("watch/1", ASSET), "/watch/1/asset.bin");
    }
}
