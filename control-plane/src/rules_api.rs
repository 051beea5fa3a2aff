//! `/api/v1/rules`: list, read, create, replace and delete rules, plus validation and path
//! matching against the stored rules.
//!
//! Responses carry the rule's ETag; replace and delete require it in `If-Match` (428 without,
//! 412 when someone else changed the rule first; see `precondition`), so concurrent admins
//! never silently overwrite each other. Every change is written to the audit trail with who
//! made it and the rule before and after; a replace that changes nothing writes nothing.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use store::{AuditEvent, AuditKind, StoredRule};
use utoipa::ToSchema;

use crate::access::Admin;
use crate::error::{ApiError, FieldError, Problem};
use crate::precondition::IfMatch;
use crate::request::{PathParams, RequestBody};
use crate::rule_json::{json_body, rule_from_json, RuleDto, RuleView};
use crate::{now_millis, ControlPlane};

/// Every rule, in store order.
#[derive(Serialize, ToSchema)]
pub struct RuleListView {
    /// Changes whenever any rule changes; also sent as the response's ETag.
    pub version: String,
    pub rules: Vec<RuleView>,
}

/// The outcome of validating a rule.
#[derive(Serialize, Deserialize, ToSchema)]
pub struct Validation {
    pub valid: bool,
    /// Every problem, each tied to its field.
    pub errors: Vec<FieldError>,
}

/// A request to match.
#[derive(Deserialize, ToSchema)]
pub struct MatchRequest {
    /// An HTTP method, in any case; default `GET`.
    #[serde(default)]
    #[schema(
        pattern = "^[ \\t]*([!#$%&'*+.^_`|~0-9A-Za-z-]+[ \\t]*)?$",
        example = "PUT"
    )]
    pub method: Option<String>,
    /// The request target as a browser sends it: a path with an optional query
    /// (`/docs/1/edit?x=1`), or a whole `http(s)` URL. The query is not part of what rules
    /// match, exactly as at the proxy.
    #[schema(example = "/docs/1/edit?draft=1")]
    pub path: String,
    /// The host the request is sent to (a `Host` header: port and case do not matter). With
    /// `[[app]]` entries it picks the app, and is required unless `path` is a whole URL,
    /// whose host then wins; without them it is ignored.
    #[serde(default)]
    #[schema(example = "wiki.example.com")]
    pub host: Option<String>,
    /// Who sends it (a user id, as tokens name users): the answer then says how the proxies
    /// would treat this user's request now, given who holds the resource.
    #[serde(default)]
    #[schema(example = "bob", min_length = 1, max_length = 256)]
    pub user: Option<String>,
}

/// What the proxy would do with a request.
#[derive(Serialize, ToSchema)]
pub struct MatchResult {
    pub method: String,
    /// The path after normalization, without the query: what rules are matched against and
    /// what the app sees.
    pub normalized_path: String,
    /// Whether a rule applies. `OPTIONS` requests (preflights) pass unclaimed, so they never
    /// match.
    pub matched: bool,
    /// The path is under `proxy.prefix`: the proxy answers it itself and no rule applies.
    pub reserved: bool,
    /// The rule that applies; `null` when none does (the request passes through).
    pub rule: Option<RuleDto>,
    /// The lock key the request would claim.
    pub resource: Option<String>,
    /// Where a `redirect` rule would send a blocked request.
    pub redirect_to: Option<String>,
    /// The `[[app]]` the host picks; `null` with a single app.
    pub app: Option<String>,
    /// With `user`, for a matched request: what the proxies would do with it now,
    /// `claimed` (the resource is free), `renewed` (the user holds it), `read_only`,
    /// `redirected` or `locked`; `null` otherwise.
    pub treatment: Option<&'static str>,
    /// The status the proxy would answer itself (303, 423), `null` when the request would
    /// reach the app or no `user` was given.
    pub status: Option<u16>,
    /// With `user`: who holds the resource now (a user id), `null` when nobody does.
    pub holder: Option<String>,
}

fn etag_header(tag: &str) -> Option<HeaderValue> {
    HeaderValue::from_str(&format!("\"{tag}\"")).ok()
}

fn with_etag(status: StatusCode, view: RuleView) -> Response {
    let tag = etag_header(&view.etag);
    let mut response = (status, Json(view)).into_response();
    if let Some(tag) = tag {
        response.headers_mut().insert(header::ETAG, tag);
    }
    response
}

/// The change's `If-Match`: 428 without one, 400 when it is not readable.
fn if_match(headers: &HeaderMap) -> Result<IfMatch, ApiError> {
    IfMatch::from_headers(headers)
        .map_err(|e| ApiError::BadRequest(format!("{e}.")))?
        .ok_or(ApiError::PreconditionRequired)
}

impl ControlPlane {
    /// The rule `id` as it is now, if the change conditioned by `condition` may go ahead
    /// (RFC 9110 §13.2.2: a rule that does not exist is 404 whatever the condition; one whose
    /// version no tag names is 412).
    async fn current(&self, id: &str, condition: &IfMatch) -> Result<StoredRule, ApiError> {
        let current = self.rules.get(id).await?;
        if condition.matches(&current.etag) {
            Ok(current)
        } else {
            Err(ApiError::PreconditionFailed {
                id: id.to_owned(),
                current: current.etag,
            })
        }
    }
}

/// List every rule, with the rule set's version.
#[utoipa::path(get, path = "/api/v1/rules", tag = "rules", operation_id = "listRules",
    responses(
        (status = 200, description = "Every rule", body = RuleListView,
            headers(("ETag" = String, description = "The rule set's version, quoted"))),
        (status = 503, description = "The rule store did not answer", body = Problem)))]
pub async fn list(
    State(cp): State<Arc<ControlPlane>>,
    _admin: Admin,
) -> Result<Response, ApiError> {
    let list = cp.rules.list().await?;
    let version = list.version.clone();
    let body = RuleListView {
        version: list.version,
        rules: list.rules.into_iter().map(RuleView::from).collect(),
    };
    let mut response = Json(body).into_response();
    if let Some(tag) = etag_header(&version) {
        response.headers_mut().insert(header::ETAG, tag);
    }
    Ok(response)
}

/// Read one rule.
#[utoipa::path(get, path = "/api/v1/rules/{id}", tag = "rules", operation_id = "getRule",
    params(("id" = String, Path, description = "Rule id")),
    responses(
        (status = 200, description = "The rule", body = RuleView,
            headers(("ETag" = String, description = "The rule's ETag, quoted: send it in If-Match to change the rule"))),
        (status = 400, description = "The id in the URL does not decode", body = Problem),
        (status = 404, description = "No rule has this id", body = Problem),
        (status = 503, description = "The rule store did not answer", body = Problem)))]
pub async fn get(
    State(cp): State<Arc<ControlPlane>>,
    _admin: Admin,
    PathParams(id): PathParams<String>,
) -> Result<Response, ApiError> {
    Ok(with_etag(StatusCode::OK, cp.rules.get(&id).await?.into()))
}

/// Create a rule.
#[utoipa::path(post, path = "/api/v1/rules", tag = "rules", operation_id = "createRule",
    request_body = RuleDto,
    responses(
        (status = 201, description = "Created", body = RuleView,
            headers(
                ("ETag" = String, description = "The new rule's ETag, quoted"),
                ("Location" = String, description = "The new rule's URL")),
            links(
                ("GetRule" = (operation_id = "getRule", parameters(("id" = "$response.body#/id")))),
                ("ReplaceRule" = (operation_id = "replaceRule",
                    parameters(("id" = "$response.body#/id"), ("If-Match" = "$response.header.ETag")))),
                ("DeleteRule" = (operation_id = "deleteRule",
                    parameters(("id" = "$response.body#/id"), ("If-Match" = "$response.header.ETag")))))),
        (status = 400, description = "The body is not valid JSON", body = Problem),
        (status = 409, description = "The id is taken", body = Problem),
        (status = 413, description = "The body is over 64 KiB", body = Problem),
        (status = 415, description = "The body is not JSON", body = Problem),
        (status = 422, description = "Every field problem", body = Problem),
        (status = 503, description = "The rule store did not answer", body = Problem)))]
pub async fn create(
    State(cp): State<Arc<ControlPlane>>,
    Admin(admin): Admin,
    headers: HeaderMap,
    RequestBody(body): RequestBody,
) -> Result<Response, ApiError> {
    let rule =
        rule_from_json(json_body(&headers, &body)?, None).map_err(ApiError::Unprocessable)?;
    cp.check_app(&rule).map_err(ApiError::Unprocessable)?;
    let id = rule.id.clone();
    let created = cp
        .rules
        .create(rule)
        .await
        .map_err(|e| ApiError::from_rule_store(e, &id))?;
    cp.rules_changed().await;
    cp.recorder
        .record(AuditEvent::rule_change(
            AuditKind::RuleCreated,
            now_millis(),
            &admin.user,
            &id,
            None,
            Some(&created.rule),
        ))
        .await;
    let mut response = with_etag(StatusCode::CREATED, created.into());
    if let Ok(location) = HeaderValue::from_str(&format!("/api/v1/rules/{id}")) {
        response.headers_mut().insert(header::LOCATION, location);
    }
    Ok(response)
}

/// Replace a rule, conditionally on its ETag.
#[utoipa::path(put, path = "/api/v1/rules/{id}", tag = "rules", operation_id = "replaceRule",
    request_body(content = RuleDto, description = "The rule; `id` may be left out, and may not name another rule"),
    params(("id" = String, Path, description = "Rule id"),
           ("If-Match" = String, Header, pattern = r#"^[ \t,]*(\*|(W/)?"[!#-~\u0080-\u00ff]*"([ \t]*,[ \t,]*(W/)?"[!#-~\u0080-\u00ff]*")*)[ \t,]*$"#,
               description = "The rule's current ETag (quoted), a list of tags, or `*` for any version. Weak tags never match.")),
    responses(
        (status = 200, description = "Replaced, or unchanged when the body is the rule as it is", body = RuleView,
            headers(("ETag" = String, description = "The rule's ETag now, quoted")),
            links(
                ("GetRule" = (operation_id = "getRule", parameters(("id" = "$response.body#/id")))),
                ("DeleteRule" = (operation_id = "deleteRule",
                    parameters(("id" = "$response.body#/id"), ("If-Match" = "$response.header.ETag")))))),
        (status = 400, description = "The body is not valid JSON, or If-Match is not a list of tags", body = Problem),
        (status = 404, description = "No rule has this id", body = Problem),
        (status = 412, description = "If-Match names no current version: someone else changed the rule first", body = Problem,
            headers(("ETag" = String, description = "The rule's current ETag, quoted"))),
        (status = 413, description = "The body is over 64 KiB", body = Problem),
        (status = 415, description = "The body is not JSON", body = Problem),
        (status = 422, description = "Every field problem", body = Problem),
        (status = 428, description = "If-Match is missing", body = Problem),
        (status = 503, description = "The rule store did not answer", body = Problem)))]
pub async fn replace(
    State(cp): State<Arc<ControlPlane>>,
    Admin(admin): Admin,
    PathParams(id): PathParams<String>,
    headers: HeaderMap,
    RequestBody(body): RequestBody,
) -> Result<Response, ApiError> {
    let condition = if_match(&headers)?;
    let value = json_body(&headers, &body)?;
    let current = cp.current(&id, &condition).await?;
    let rule = rule_from_json(value, Some(&id)).map_err(ApiError::Unprocessable)?;
    cp.check_app(&rule).map_err(ApiError::Unprocessable)?;
    if rule == current.rule {
        // Nothing changes: no write, no new version for the proxies, nothing to audit.
        return Ok(with_etag(StatusCode::OK, current.into()));
    }
    let (before, after) = cp
        .rules
        .replace(&id, rule, &current.etag)
        .await
        .map_err(|e| ApiError::from_rule_store(e, &id))?;
    cp.rules_changed().await;
    cp.recorder
        .record(AuditEvent::rule_change(
            AuditKind::RuleUpdated,
            now_millis(),
            &admin.user,
            &id,
            Some(&before.rule),
            Some(&after.rule),
        ))
        .await;
    Ok(with_etag(StatusCode::OK, after.into()))
}

/// Delete a rule, conditionally on its ETag.
#[utoipa::path(delete, path = "/api/v1/rules/{id}", tag = "rules", operation_id = "deleteRule",
    params(("id" = String, Path, description = "Rule id"),
           ("If-Match" = String, Header, pattern = r#"^[ \t,]*(\*|(W/)?"[!#-~\u0080-\u00ff]*"([ \t]*,[ \t,]*(W/)?"[!#-~\u0080-\u00ff]*")*)[ \t,]*$"#,
               description = "The rule's current ETag (quoted), a list of tags, or `*` for any version. Weak tags never match.")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 400, description = "If-Match is not a list of tags", body = Problem),
        (status = 404, description = "No rule has this id", body = Problem),
        (status = 412, description = "If-Match names no current version", body = Problem,
            headers(("ETag" = String, description = "The rule's current ETag, quoted"))),
        (status = 428, description = "If-Match is missing", body = Problem),
        (status = 503, description = "The rule store did not answer", body = Problem)))]
pub async fn delete(
    State(cp): State<Arc<ControlPlane>>,
    Admin(admin): Admin,
    PathParams(id): PathParams<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let condition = if_match(&headers)?;
    let current = cp.current(&id, &condition).await?;
    let deleted = cp
        .rules
        .delete(&id, &current.etag)
        .await
        .map_err(|e| ApiError::from_rule_store(e, &id))?;
    cp.rules_changed().await;
    cp.recorder
        .record(AuditEvent::rule_change(
            AuditKind::RuleDeleted,
            now_millis(),
            &admin.user,
            &id,
            Some(&deleted.rule),
            None,
        ))
        .await;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// Validate a rule without storing it.
#[utoipa::path(post, path = "/api/v1/rules/validate", tag = "rules", operation_id = "validateRule",
    request_body(content = serde_json::Value, description = "Any JSON value: a rule, the fields of RuleDto, is valid; anything else gets its problems listed"),
    responses(
        (status = 200, description = "Every problem; nothing is stored", body = Validation),
        (status = 400, description = "The body is not valid JSON", body = Problem),
        (status = 413, description = "The body is over 64 KiB", body = Problem),
        (status = 415, description = "The body is not JSON", body = Problem)))]
pub async fn validate(
    State(cp): State<Arc<ControlPlane>>,
    _admin: Admin,
    headers: HeaderMap,
    RequestBody(body): RequestBody,
) -> Result<Json<Validation>, ApiError> {
    let errors = match rule_from_json(json_body(&headers, &body)?, None) {
        Ok(rule) => cp.check_app(&rule).err().unwrap_or_default(),
        Err(errors) => errors,
    };
    Ok(Json(Validation {
        valid: errors.is_empty(),
        errors,
    }))
}

/// Say what the proxies would do with a request.
#[utoipa::path(post, path = "/api/v1/match", tag = "rules", operation_id = "matchRequest",
    request_body = MatchRequest,
    responses(
        (status = 200, description = "The rule and resource a request would get", body = MatchResult),
        (status = 400, description = "The body is not valid JSON, or the proxies answer 400 to this request target", body = Problem),
        (status = 413, description = "The body is over 64 KiB", body = Problem),
        (status = 415, description = "The body is not JSON", body = Problem),
        (status = 422, description = "A field is missing or of the wrong type", body = Problem),
        (status = 503, description = "The rule store did not answer", body = Problem)))]
pub async fn matching(
    State(cp): State<Arc<ControlPlane>>,
    _admin: Admin,
    headers: HeaderMap,
    RequestBody(body): RequestBody,
) -> Result<Json<MatchResult>, ApiError> {
    let value = json_body(&headers, &body)?;
    let request: MatchRequest = serde_json::from_value(value).map_err(|e| {
        ApiError::Unprocessable(vec![FieldError::new(
            if e.to_string().contains("path") {
                "path"
            } else {
                ""
            },
            e.to_string(),
        )])
    })?;
    let method = match request
        .method
        .as_deref()
        .map(|m| m.trim_matches([' ', '\t']))
    {
        None | Some("") => "GET".to_owned(),
        Some(m) if m.bytes().all(is_token_byte) => m.to_ascii_uppercase(),
        Some(_) => return Err(ApiError::field("method", "is not an HTTP method")),
    };
    let user = match request.user.as_deref() {
        Some(user) if user.is_empty() || user.len() > 256 => {
            return Err(ApiError::field("user", "must be 1 to 256 bytes"))
        }
        user => user.map(str::to_owned),
    };
    let app = cp.app_of_request(&request)?;
    let seen = cp.proxy_view(&method, &request.path)?;
    let Some(rule_path) = seen.rule_path else {
        return Ok(Json(MatchResult {
            method,
            normalized_path: seen.normalized_path,
            matched: false,
            reserved: seen.reserved,
            rule: None,
            resource: None,
            redirect_to: None,
            app,
            treatment: None,
            status: None,
            holder: None,
        }));
    };
    let set = rules::RuleSet::compile(cp.rules.list().await?.into_rules()).map_err(|issues| {
        ApiError::Internal(format!("the stored rules do not compile: {}", issues.len()))
    })?;
    let found = set.find_in(app.as_deref(), &method, &rule_path);
    let (treatment, status, holder) = match (&found, user) {
        (Some(found), Some(user)) => {
            let lock = cp.locks.get(&found.resource).await?;
            let (treatment, status) = cp.treatment_now(found, &user, &method, lock.as_ref());
            let holder = lock.map(|lock| lock.holder.user);
            (Some(treatment), status, holder)
        }
        _ => (None, None, None),
    };
    Ok(Json(MatchResult {
        treatment,
        status,
        holder,
        app: app.clone(),
        method,
        matched: found.is_some(),
        reserved: false,
        rule: found.as_ref().map(|m| RuleDto::from(m.rule.clone())),
        resource: found.as_ref().map(|m| m.resource.clone()),
        redirect_to: found.and_then(|m| m.redirect_to),
        normalized_path: seen.normalized_path,
    }))
}

/// What a proxy makes of a request target before it looks at the rules.
struct ProxyView {
    /// The normalized path, without the query; `*` for `OPTIONS *`.
    normalized_path: String,
    /// Under `proxy.prefix`: the proxy's own endpoint.
    reserved: bool,
    /// The path the rules are matched against; `None` when no rule is looked at.
    rule_path: Option<String>,
}

impl ControlPlane {
    /// The app a request to match is for, as the proxy routes it: the URL's host when `path`
    /// is a whole URL (it must then agree with `host`), else `host`. `None` with a single app.
    fn app_of_request(&self, request: &MatchRequest) -> Result<Option<String>, ApiError> {
        if self.apps.is_empty() {
            return Ok(None);
        }
        let url_host = match rules::parse_target(request.path.as_bytes(), false) {
            Ok(rules::Target::Absolute { authority, .. }) => Some(authority.to_owned()),
            _ => None,
        };
        let host = match (url_host, request.host.as_deref()) {
            (Some(url), Some(host))
                if !config::host_of(url.as_bytes())
                    .eq_ignore_ascii_case(config::host_of(host.as_bytes())) =>
            {
                return Err(ApiError::field(
                    "host",
                    "names another host than the URL in path; the proxies answer 400",
                ))
            }
            (Some(url), _) => url,
            (None, Some(host)) => host.to_owned(),
            (None, None) => {
                return Err(ApiError::field(
                    "host",
                    "is required: this proxy serves several apps, and the host picks one",
                ))
            }
        };
        match config::app_for(&self.apps, host.as_bytes()) {
            Some(index) => Ok(Some(self.apps[index].name.clone())),
            None => Err(ApiError::field(
                "host",
                "names no app of this proxy; the proxies answer it with proxy.unknown_host (421 or 404)",
            )),
        }
    }

    /// The steps of the proxy's `route` up to the rule lookup, in its order: the target's form
    /// (`rules::parse_target`), its path without the query, normalization, the reserved prefix,
    /// `OPTIONS` (preflights pass unclaimed), path parameters. A target the proxy answers 400
    /// is 400 here too.
    fn proxy_view(&self, method: &str, target: &str) -> Result<ProxyView, ApiError> {
        let refused = |e: &dyn std::fmt::Display| {
            ApiError::BadRequest(format!("The proxies answer 400 to this request: {e}."))
        };
        let is_options = method == "OPTIONS";
        let parsed = rules::parse_target(target.as_bytes(), is_options).map_err(|e| refused(&e))?;
        let Some(path) = parsed.path() else {
            return Ok(ProxyView {
                normalized_path: "*".to_owned(),
                reserved: false,
                rule_path: None,
            });
        };
        let normalized = rules::normalize_path(path)
            .map_err(|e| refused(&e))?
            .into_owned();
        let prefix = &self.reserved_prefix;
        let reserved = normalized.len() > prefix.len()
            && normalized.starts_with(prefix.as_str())
            && normalized.as_bytes()[prefix.len()] == b'/';
        if reserved || is_options {
            return Ok(ProxyView {
                normalized_path: normalized,
                reserved,
                rule_path: None,
            });
        }
        let rule_path = rules::rule_path(&normalized, self.path_parameters)
            .map_err(|e| refused(&e))?
            .into_owned();
        Ok(ProxyView {
            normalized_path: normalized,
            reserved,
            rule_path: Some(rule_path),
        })
    }
}

/// RFC 9110 `tchar`, the characters of a method name.
fn is_token_byte(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&byte)
}
