//! The static site the upstream serves: a 1.4 KB file, a 1.4 KB HTML page and a 100 KB HTML
//! page, copied under each directory a rule (or no rule) covers, so every scenario asks the
//! upstream for the same bytes and only the proxy's work differs. One more 100 KB page carries
//! a token in its head that the upstream makes new for every request (as an app's CSRF token
//! is), so that no two responses share a head.

use std::path::Path;

use crate::BenchError;

/// A 1.4 KB non-HTML file: a typical small asset.
pub const ASSET: &str = "asset.bin";
/// A 1.4 KB HTML page.
pub const PAGE: &str = "page.html";
/// A 100 KB HTML page.
pub const BIG: &str = "big.html";
/// The 100 KB HTML page whose head differs on every request (see [`fresh`]).
pub const FRESH: &str = "fresh.shtml";

pub const ASSET_BYTES: usize = 1400;
pub const PAGE_BYTES: usize = 1400;
pub const BIG_BYTES: usize = 100 * 1024;

/// Where [`FRESH`] holds its per-request token: an SSI directive that nginx replaces with the
/// request's id, 32 hex digits (the static upstream does the same).
pub const REQUEST_ID: &str = "<!--# echo var=\"request_id\" -->";
/// The length of what replaces [`REQUEST_ID`].
pub const REQUEST_ID_BYTES: usize = 32;

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

/// The 100 KB page with a `<meta name="csrf-token">` in its head whose value is new on every
/// request: [`BIG_BYTES`] long once served.
pub fn fresh() -> Vec<u8> {
    let meta = format!("<meta name=\"csrf-token\" content=\"{REQUEST_ID}\">");
    let served = meta.len() - REQUEST_ID.len() + REQUEST_ID_BYTES;
    let page = String::from_utf8(html(BIG_BYTES - served)).unwrap_or_default();
    page.replacen("<title>", &format!("{meta}<title>"), 1)
        .into_bytes()
}

/// Writes the site under `root`.
pub fn write(root: &Path) -> Result<(), BenchError> {
    let files = [
        (ASSET, asset()),
        (PAGE, html(PAGE_BYTES)),
        (BIG, html(BIG_BYTES)),
        (FRESH, fresh()),
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
    fn the_fresh_page_has_its_token_in_the_head_and_the_big_pages_size_once_served() {
        let page = String::from_utf8(fresh()).unwrap();
        let head_end = page.find("</head>").unwrap();
        assert_eq!(page.matches(REQUEST_ID).count(), 1);
        assert!(page.find(REQUEST_ID).unwrap() < head_end);
        let served = page.replace(REQUEST_ID, &"0".repeat(REQUEST_ID_BYTES));
        assert_eq!(served.len(), BIG_BYTES);
        assert!(served.ends_with("</body></html>\n"));
    }

    #[test]
    fn paths_join_dir_and_file() {
        assert_eq!(path("", PAGE), "/page.html");
        assert_eq!(path("watch/1", ASSET), "/watch/1/asset.bin");
    }
}
