//! The console's sign-in with the OpenID Provider of `[oidc]` (docs/admin-api.md "Signing
//! in"): `/login` starts the authorization code flow, `/callback` finishes it and `/logout`
//! ends the session, on the control plane's own origin. The flow is [`auth::RelyingParty`]'s,
//! the same as the proxy's, and so is the session cookie: an admin signed in to the protected
//! site on the same host is signed in here too, and roles come from the ID token's claims
//! (`auth.roles_claim`).

use std::sync::Arc;

use auth::relying_party::{
    self, Callback, Failure, NotRenewed, FLOW_COOKIE, FLOW_SECONDS, SESSION_COOKIE,
};
use axum::extract::{Query, RawQuery, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::ControlPlane;

/// The console's callback path, registered at the provider as `{scheme}://{host}/callback`.
const CALLBACK: &str = "/callback";

/// The query of `/login`.
#[derive(serde::Deserialize)]
pub struct Wanted {
    /// Where to go once signed in: a console path (anything else becomes `/`).
    return_to: Option<String>,
}

/// `GET /login?return_to=/path`: to the provider, then back to the console.
pub async fn login(
    State(cp): State<Arc<ControlPlane>>,
    headers: HeaderMap,
    Query(wanted): Query<Wanted>,
) -> Response {
    let Some(party) = &cp.sign_in else {
        return not_configured();
    };
    let return_to = wanted.return_to.unwrap_or_default();
    let Some(redirect_uri) = cp.callback_url(&headers) else {
        return failure(Failure::bad_host());
    };
    match party.begin(&return_to, &redirect_uri).await {
        Ok(begun) => redirect(
            &begun.location,
            &[cp.cookie(FLOW_COOKIE, &begun.flow_cookie, CALLBACK, FLOW_SECONDS)],
        ),
        Err(failed) => failure(failed),
    }
}

/// `GET /callback`: the provider's answer; sets the session and returns to the console.
pub async fn callback(
    State(cp): State<Arc<ControlPlane>>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    let Some(party) = &cp.sign_in else {
        return not_configured();
    };
    let clear_flow = cp.cookie(FLOW_COOKIE, "", CALLBACK, 0);
    let flow = auth::token_from_headers(
        headers.get_all(header::COOKIE).iter().map(|v| v.as_bytes()),
        None,
        FLOW_COOKIE,
    );
    let callback = Callback::from_query(query.as_deref());
    let redirect_uri = cp.callback_url(&headers);
    match party.finish(flow, &callback, redirect_uri.as_deref()).await {
        Ok(done) => {
            let max_age = done
                .identity
                .expires_at
                .saturating_sub(crate::now_millis() / 1000);
            tracing::info!(user = %done.identity.user, "signed in to the console");
            let session = cp.cookie(SESSION_COOKIE, &done.session_cookie, "/", max_age);
            redirect(&done.return_to, &[clear_flow, session])
        }
        Err(failed) => {
            tracing::info!(code = failed.code, detail = %failed.detail, "console sign-in refused");
            let mut response = failure(failed);
            append_cookie(&mut response, &clear_flow);
            response
        }
    }
}

/// `GET /logout` from the console's own page: ends the session here, then at the provider
/// when it offers RP-initiated logout. Another site cannot sign an admin out: a cross-site
/// request (by `Sec-Fetch-Site` or `Origin`) gets 403.
pub async fn logout(State(cp): State<Arc<ControlPlane>>, headers: HeaderMap) -> Response {
    let Some(party) = &cp.sign_in else {
        return not_configured();
    };
    if !same_site_navigation(&headers, cp.public_scheme) {
        let mut response = (
            StatusCode::FORBIDDEN,
            "Forbidden: another site cannot sign you out of the console.",
        )
            .into_response();
        no_store(&mut response);
        return response;
    }
    let clear = cp.cookie(SESSION_COOKIE, "", "/", 0);
    let session = auth::token_from_headers(
        headers.get_all(header::COOKIE).iter().map(|v| v.as_bytes()),
        None,
        SESSION_COOKIE,
    );
    // The session ends everywhere, as at the proxy's logout.
    let signed_in = session.and_then(|s| party.sessions().open(s, crate::now_millis() / 1000).ok());
    if let Some(identity) = signed_in {
        if let Err(e) = cp.end_if_live(&identity).await {
            tracing::warn!(user = %identity.user, error = %e, "cannot record a logout in the lock store");
            let mut response = (
                StatusCode::SERVICE_UNAVAILABLE,
                "Signed out in this browser, but the end of the session could not be \
                 recorded, so a copy of its cookie may still work until the session's end; \
                 try again.",
            )
                .into_response();
            append_cookie(&mut response, &clear);
            no_store(&mut response);
            return response;
        }
    }
    redirect(&party.logout_location("/", session, None).await, &[clear])
}

/// Renews a due sign-in session before the console serves the request (see
/// [`auth::RelyingParty::renew`]): the request is served with the renewed cookie, and the
/// answer sets it. A refused renewal ends the session on every instance, and the request is
/// served as signed out; with the provider out of reach, the session holds until its ID token
/// ends.
pub async fn renew_session(
    State(cp): State<Arc<ControlPlane>>,
    mut request: Request,
    next: Next,
) -> Response {
    let Some(party) = &cp.sign_in else {
        return next.run(request).await;
    };
    let now = crate::now_millis() / 1000;
    let cookies = request.headers().get_all(header::COOKIE);
    let value =
        auth::token_from_headers(cookies.iter().map(|v| v.as_bytes()), None, SESSION_COOKIE);
    let due = value.and_then(|value| {
        let identity = party.sessions().open(value, now).ok()?;
        let ended = (identity.sign_in.as_deref())
            .zip(cp.ended.as_deref())
            .is_some_and(|(id, ended)| ended.has_ended(id));
        let due = identity.renewal.is_some_and(|r| now >= r.from);
        (due && !ended).then(|| (value.to_owned(), identity))
    });
    let Some((value, identity)) = due else {
        return next.run(request).await;
    };
    match party.renew(&value, cp.locks.as_ref()).await.0 {
        Ok(renewed) => {
            // The renewed cookie first: the first `latch_oidc` of a request is the one read.
            let headers = request.headers_mut();
            let old: Vec<HeaderValue> = headers.get_all(header::COOKIE).iter().cloned().collect();
            headers.remove(header::COOKIE);
            if let Ok(fresh) =
                HeaderValue::from_str(&format!("{SESSION_COOKIE}={}", renewed.session_cookie))
            {
                headers.append(header::COOKIE, fresh);
            }
            for value in old {
                headers.append(header::COOKIE, value);
            }
            let mut response = next.run(request).await;
            let max_age = renewed.identity.expires_at.saturating_sub(now);
            let set = cp.cookie(SESSION_COOKIE, &renewed.session_cookie, "/", max_age);
            append_cookie(&mut response, &set);
            response
        }
        Err(NotRenewed::Refused(failed)) => {
            tracing::info!(user = %identity.user, code = failed.code, detail = %failed.detail, "console session renewal refused; the session ends");
            if let Err(e) = cp.end_if_live(&identity).await {
                tracing::warn!(user = %identity.user, error = %e, "cannot record a refused renewal's end in the lock store");
            }
            next.run(request).await
        }
        Err(NotRenewed::Unavailable(failed)) => {
            tracing::warn!(user = %identity.user, detail = %failed.detail, "cannot renew a console session; it holds until its ID token ends");
            next.run(request).await
        }
    }
}

impl ControlPlane {
    /// Ends `identity`'s sign-in session on every instance, until the session's own end,
    /// unless it has ended already (an ended session's copy ends nothing more), as the proxy's
    /// logout does.
    async fn end_if_live(&self, identity: &auth::Identity) -> Result<(), store::StoreError> {
        let live = (identity.sign_in.as_deref())
            .zip(self.ended.as_deref())
            .filter(|(id, ended)| !ended.has_ended(id));
        match live {
            Some((id, ended)) => {
                ended
                    .end(id, identity.expires_at.saturating_mul(1000))
                    .await
            }
            None => Ok(()),
        }
    }

    /// Where the console's sign-in starts for a visitor who asked for `path`.
    pub(crate) fn login_location(&self, path: &str) -> String {
        relying_party::login_location("/login", path)
    }

    /// `{public_scheme}://{Host}/callback`.
    fn callback_url(&self, headers: &HeaderMap) -> Option<String> {
        relying_party::callback_url(
            self.public_scheme,
            headers.get(header::HOST).map(|h| h.as_bytes()),
            CALLBACK,
        )
    }

    /// A sign-in cookie, `Secure` when browsers reach the console over TLS.
    fn cookie(&self, name: &str, value: &str, path: &str, max_age: u64) -> String {
        relying_party::cookie(name, value, path, max_age, self.public_scheme == "https")
    }
}

/// A navigation that began on this site (or typed in the address bar), by `Sec-Fetch-Site`
/// and `Origin` when the browser sends them ([`auth::from_same_site`]).
fn same_site_navigation(headers: &HeaderMap, scheme: &str) -> bool {
    let value = |name: &str| headers.get(name).map(|v| v.as_bytes());
    auth::from_same_site(
        value("sec-fetch-site"),
        value("origin"),
        value("host"),
        scheme,
    )
    .is_ok()
}

fn redirect(location: &str, cookies: &[String]) -> Response {
    let mut response = StatusCode::FOUND.into_response();
    if let Ok(location) = HeaderValue::from_str(location) {
        response.headers_mut().insert(header::LOCATION, location);
    }
    for cookie in cookies {
        append_cookie(&mut response, cookie);
    }
    no_store(&mut response);
    response
}

fn append_cookie(response: &mut Response, cookie: &str) {
    if let Ok(value) = HeaderValue::from_str(cookie) {
        response.headers_mut().append(header::SET_COOKIE, value);
    }
}

fn no_store(response: &mut Response) {
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
}

/// A failed sign-in: a short page that says what went wrong and offers to start again.
fn failure(failed: Failure) -> Response {
    let page = format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>{title}</title></head>\
         <body><h1>{title}</h1><p>{detail}</p><p><a href=\"/login\">Sign in again</a></p>\
         </body></html>",
        title = html_escape::encode_text(failed.title),
        detail = html_escape::encode_text(&failed.detail),
    );
    let status = StatusCode::from_u16(failed.status).unwrap_or(StatusCode::BAD_GATEWAY);
    let mut response = (status, page).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    no_store(&mut response);
    response
}

fn not_configured() -> Response {
    crate::ApiError::NotFound(
        "Sign-in with an identity provider is not configured ([oidc]).".into(),
    )
    .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.insert(*name, value.parse().unwrap());
        }
        map
    }

    #[test]
    fn only_a_navigation_from_the_console_itself_signs_out() {
        let ok = |pairs| same_site_navigation(&headers(pairs), "http");
        assert!(ok(&[("host", "admin.example:9090")]));
        assert!(ok(&[("host", "a:9090"), ("sec-fetch-site", "same-origin")]));
        assert!(ok(&[("host", "a:9090"), ("sec-fetch-site", "none")]));
        assert!(!ok(&[("host", "a:9090"), ("sec-fetch-site", "cross-site")]));
        assert!(!ok(&[("host", "a:9090"), ("sec-fetch-site", "same-site")]));
        assert!(ok(&[("host", "a:9090"), ("origin", "http://a:9090")]));
        assert!(!ok(&[
            ("host", "a:9090"),
            ("origin", "http://evil.example")
        ]));
        assert!(!ok(&[("origin", "http://a:9090")]));
    }
}
