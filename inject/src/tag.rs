//! The `<script>` tag that loads the banner.
//!
//! Every attribute value is escaped here, because values such as the request path come from the
//! client and end up inside the page's markup. It must not know what the data attributes mean.

/// Builds `<script src="…" defer data-k="v" … nonce="…"></script>`.
///
/// `data` keys are the part after `data-`; they are programmer-chosen identifiers, and a key
/// that is not lowercase ASCII letters, digits and `-` is left out rather than written as
/// broken markup. `defer` lets the page finish parsing first, and is what makes the banner's
/// `document.currentScript` point at this tag.
pub fn script_tag(src: &str, data: &[(&str, &str)], nonce: Option<&str>) -> String {
    let mut tag = String::with_capacity(64 + src.len() + data.len() * 32);
    tag.push_str("<script src=\"");
    push_escaped(&mut tag, src);
    tag.push_str("\" defer");
    for (key, value) in data {
        if !is_valid_data_key(key) {
            continue;
        }
        tag.push_str(" data-");
        tag.push_str(key);
        tag.push_str("=\"");
        push_escaped(&mut tag, value);
        tag.push('"');
    }
    if let Some(nonce) = nonce {
        tag.push_str(" nonce=\"");
        push_escaped(&mut tag, nonce);
        tag.push('"');
    }
    tag.push_str("></script>");
    tag
}

fn is_valid_data_key(key: &str) -> bool {
    !key.is_empty()
        && key
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

/// Escapes for a double-quoted attribute value; `<`, `>` and `'` too, so the value is inert in
/// any context a careless caller might copy it into.
fn push_escaped(out: &mut String, value: &str) {
    html_escape::encode_quoted_attribute_to_string(value, out);
}
