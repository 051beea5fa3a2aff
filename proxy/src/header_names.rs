//! Request header names the proxy reads that the `http` crate has no constant for. Built when
//! the program is compiled: a lookup by a `&str` name would parse the name every time.

use http::HeaderName;

/// What a browser's request is for: `document`, `iframe`, `script`, `empty` (a `fetch()`), …
pub static SEC_FETCH_DEST: HeaderName = HeaderName::from_static("sec-fetch-dest");
/// Set by script libraries on their XHRs.
pub static X_REQUESTED_WITH: HeaderName = HeaderName::from_static("x-requested-with");
