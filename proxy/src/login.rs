//! What a request that needs a token and has no valid one gets (docs/http.md): for browsers, a
//! redirect to Latch's own sign-in when `[oidc]` is set, else to the login page when one is
//! configured; otherwise 401 with a Bearer challenge.

use http::header;
use percent_encoding::{utf8_percent_encode, NON_ALPHANUMERIC};
use pingora::proxy::Session;

use crate::respond::{wants_html, Reply};
use crate::state::Latch;

pub fn challenge(latch: &Latch, session: &Session, err: &auth::AuthError) -> Reply {
    let req = session.req_header();
    if let (true, Some(sign_in)) = (wants_html(session), &latch.sign_in) {
        let here = req.uri.path_and_query().map_or("/", |pq| pq.as_str());
        return Reply::empty(302).header(header::LOCATION, sign_in.login_url(here));
    }
    if let (true, Some(login)) = (wants_html(session), latch.config.auth.login_url.as_deref()) {
        let host = req
            .headers
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .unwrap_or("");
        let scheme = match req
            .headers
            .get("x-forwarded-proto")
            .and_then(|h| h.to_str().ok())
        {
            Some("https") => "https",
            _ => "http",
        };
        let here = format!("{scheme}://{host}{}", req.uri);
        let target = login.replace(
            "{url}",
            &utf8_percent_encode(&here, NON_ALPHANUMERIC).to_string(),
        );
        return Reply::empty(302).header(header::LOCATION, target);
    }
    let error = match err {
        auth::AuthError::Missing => String::new(),
        _ => ", error=\"invalid_token\"".to_string(),
    };
    Reply::problem_with(
        401,
        "Unauthorized",
        &err.to_string(),
        serde_json::json!({ "code": err.code() }),
    )
    .header(
        header::WWW_AUTHENTICATE,
        format!("Bearer realm=\"latch\"{error}"),
    )
}
