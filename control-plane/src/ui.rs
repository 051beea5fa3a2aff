//! The admin web UI: one HTML page and its script and stylesheet, embedded in the binary.
//!
//! There is no build step: the files under `ui/` are plain HTML, CSS and JavaScript modules.
//! The page holds no data; everything it shows comes from the API with the admin's own
//! credentials. So the page is served to anyone, with the status the API would give them
//! (401 without a token, 403 without an admin role) and a marker telling the script whether
//! to show the app or the sign-in panel.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
// The page's placeholders are double-quoted attribute values; this escapes `&`, `<`, `>`, `"`
// and `'`.
use html_escape::encode_quoted_attribute as escape;

use crate::access::Access;
use crate::error::ApiError;
use crate::request::PathParams;
use crate::ControlPlane;

const INDEX: &str = include_str!("../ui/index.html");
const APP_JS: &str = include_str!("../ui/app.js");
const STYLE: &str = include_str!("../ui/style.css");

/// Only our own files: no inline script, no third-party anything, no framing.
const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'";

pub async fn index(State(cp): State<Arc<ControlPlane>>, headers: HeaderMap) -> Response {
    let (status, state, user, reason) = match cp.access(&headers).await {
        Access::Admin(identity) => (StatusCode::OK, "ok", identity.name.clone(), String::new()),
        // With an identity provider, a visitor who is not signed in is sent to sign in.
        Access::Anonymous(_) if cp.signs_in() => {
            let mut response = StatusCode::FOUND.into_response();
            if let Ok(location) = HeaderValue::from_str(&cp.login_location("/")) {
                response.headers_mut().insert(header::LOCATION, location);
            }
            response
                .headers_mut()
                .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            return response;
        }
        Access::Anonymous(reason) => (
            StatusCode::UNAUTHORIZED,
            "signed-out",
            String::new(),
            reason,
        ),
        Access::NotAdmin(identity) => (
            StatusCode::FORBIDDEN,
            "forbidden",
            identity.name.clone(),
            format!(
                "You are signed in but have none of the admin roles ({}).",
                cp.admin_roles.join(", ")
            ),
        ),
    };
    let page = INDEX
        .replace("{{auth}}", state)
        .replace("{{user}}", &escape(&user))
        .replace("{{reason}}", &escape(&reason))
        .replace("{{cookie}}", &escape(&cp.cookie))
        .replace("{{signout}}", if cp.signs_in() { "/logout" } else { "" })
        .replace(
            "{{demo}}",
            &escape(cp.demo_sign_in.as_deref().unwrap_or("")),
        );
    let mut response = (status, page).into_response();
    set_headers(response.headers_mut(), "text/html; charset=utf-8");
    response
}

pub async fn asset(PathParams(name): PathParams<String>) -> Result<Response, ApiError> {
    let (body, kind) = match name.as_str() {
        "app.js" => (APP_JS, "text/javascript; charset=utf-8"),
        "style.css" => (STYLE, "text/css; charset=utf-8"),
        _ => {
            return Err(ApiError::NotFound(format!(
                "No UI file is called {name:?}."
            )))
        }
    };
    let mut response = body.into_response();
    set_headers(response.headers_mut(), kind);
    Ok(response)
}

fn set_headers(headers: &mut HeaderMap, content_type: &'static str) {
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    // The page changes with the release; always revalidate rather than run a stale script.
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping_covers_attribute_breakouts() {
        assert_eq!(
            escape("a\"><script>'&"),
            "a&quot;&gt;&lt;script&gt;&#x27;&amp;"
        );
    }

    #[test]
    fn the_page_has_every_placeholder_the_server_fills() {
        for placeholder in [
            "{{auth}}",
            "{{user}}",
            "{{reason}}",
            "{{cookie}}",
            "{{signout}}",
            "{{demo}}",
        ] {
            assert!(
                INDEX.contains(placeholder),
                "{placeholder} missing from index.html"
            );
        }
        assert!(INDEX.contains("/ui/app.js") && INDEX.contains("/ui/style.css"));
    }
}
