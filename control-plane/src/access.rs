//! Who may use the API: a verified JWT carrying one of `control_plane.admin_roles`.
//!
//! The token comes from the same cookie the proxy reads, so an admin signed in to the
//! protected site is signed in here, or from `Authorization: Bearer` for scripts. Because a
//! cookie is sent by the browser on its own, requests that change something must also come
//! from this origin: a foreign `Origin` is refused, which stops cross-site form posts.

use std::sync::Arc;

use auth::Identity;
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, Method};

use crate::error::ApiError;
use crate::ControlPlane;

/// The admin making a request. Extracting it is the access check.
pub struct Admin(pub Arc<Identity>);

/// What a request's credentials amount to, for the UI page, which shows a sign-in form
/// instead of failing.
pub enum Access {
    Admin(Arc<Identity>),
    /// No token, or one that does not verify: the reason.
    Anonymous(String),
    /// A valid token without an admin role.
    NotAdmin(Arc<Identity>),
}

impl ControlPlane {
    /// A token naming a key the fetched set does not hold (the provider rotated its keys) gets
    /// one rate-limited refetch of the set before it is refused, as at the proxy.
    pub(crate) async fn access(&self, headers: &HeaderMap) -> Access {
        let token = auth::token_from_headers(
            headers.get_all(header::COOKIE).iter().map(|v| v.as_bytes()),
            headers.get(header::AUTHORIZATION).map(|v| v.as_bytes()),
            &self.cookie,
        );
        // A token first, as the proxy takes it; then the sign-in session cookie.
        let verified = match token {
            Some(token) => match self.verifier.verify_or_refetch(token).await {
                Ok(identity) => Ok(identity),
                Err(refused) => self.signed_in(headers).map_err(|_| refused),
            },
            None => self.signed_in(headers),
        };
        match verified {
            Ok(identity) if identity.has_any_role(&self.admin_roles) => Access::Admin(identity),
            Ok(identity) => Access::NotAdmin(identity),
            Err(e) => Access::Anonymous(e.to_string()),
        }
    }

    /// The identity of the sign-in session cookie, when `[oidc]` is set and the request has
    /// one.
    fn signed_in(&self, headers: &HeaderMap) -> Result<Arc<Identity>, auth::AuthError> {
        let Some(party) = &self.sign_in else {
            return Err(auth::AuthError::Missing);
        };
        let now = crate::now_millis() / 1000;
        let identity = party.sessions().from_cookies(
            headers.get_all(header::COOKIE).iter().map(|v| v.as_bytes()),
            now,
            |id| self.ended.as_ref().is_some_and(|ended| ended.has_ended(id)),
        )?;
        // Past its ID token's end, a renewable session holds only once renewed (see
        // [`crate::sign_in::renew_session`]).
        if identity.must_renew(now) {
            return Err(auth::AuthError::Expired);
        }
        Ok(identity)
    }

    /// Whether the console signs admins in with an identity provider.
    pub(crate) fn signs_in(&self) -> bool {
        self.sign_in.is_some()
    }
}

impl FromRequestParts<Arc<ControlPlane>> for Admin {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<ControlPlane>,
    ) -> Result<Admin, ApiError> {
        let identity = match state.access(&parts.headers).await {
            Access::Admin(identity) => identity,
            Access::Anonymous(reason) => return Err(ApiError::Unauthorized(reason)),
            Access::NotAdmin(identity) => {
                return Err(ApiError::Forbidden(format!(
                    "{} is signed in but has none of the admin roles ({}).",
                    identity.user,
                    state.admin_roles.join(", ")
                )))
            }
        };
        if !is_safe(&parts.method) && !same_origin(&parts.headers, state.public_scheme) {
            return Err(ApiError::Forbidden(
                "Changes must come from the control plane's own pages or from a script without an Origin header.".into(),
            ));
        }
        Ok(Admin(identity))
    }
}

fn is_safe(method: &Method) -> bool {
    matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

/// True when there is no `Origin` (scripts, same-origin GETs) or it names the `Host` the
/// request was sent to under `scheme` (`control_plane.public_scheme`).
fn same_origin(headers: &HeaderMap, scheme: &str) -> bool {
    let Some(origin) = headers.get(header::ORIGIN) else {
        return true;
    };
    let Some(host) = headers.get(header::HOST) else {
        return false;
    };
    auth::same_origin(origin.as_bytes(), host.as_bytes(), scheme)
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
    fn origin_must_match_host_and_scheme_when_present() {
        let http = |pairs: &[(&'static str, &str)]| same_origin(&headers(pairs), "http");
        assert!(http(&[("host", "127.0.0.1:9090")]));
        assert!(http(&[
            ("host", "127.0.0.1:9090"),
            ("origin", "http://127.0.0.1:9090")
        ]));
        assert!(!http(&[
            ("host", "127.0.0.1:9090"),
            ("origin", "https://127.0.0.1:9090")
        ]));
        assert!(!http(&[
            ("host", "127.0.0.1:9090"),
            ("origin", "http://127.0.0.1:8080")
        ]));
        assert!(!http(&[("host", "admin.example"), ("origin", "null")]));
        assert!(!http(&[("origin", "http://127.0.0.1:9090")]));
        assert!(same_origin(
            &headers(&[
                ("host", "admin.example"),
                ("origin", "https://admin.example")
            ]),
            "https"
        ));
        assert!(!same_origin(
            &headers(&[
                ("host", "admin.example"),
                ("origin", "http://admin.example")
            ]),
            "https"
        ));
    }
}
