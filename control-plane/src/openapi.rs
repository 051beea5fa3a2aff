//! `GET /api/v1/openapi.json`: the API description, generated from the handlers' and types'
//! annotations so it cannot drift from the code.
//!
//! The annotations say what is particular to each operation. What holds for all of them is
//! added here once, in [`contract`], so that no operation can forget it: every route needs an
//! admin (401, 403), every error is `application/problem+json` with its headers
//! (`WWW-Authenticate` on 401, `Retry-After` on 503), and `ETag` and `Location` are promised
//! where the server always sends them.

use std::sync::OnceLock;

use axum::http::header;
use axum::response::{IntoResponse, Response};
use serde_json::{json, Map, Value};
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::{
    apps_api, error, events_api, locks_api, preview_api, rule_json, rules_api, shapes_api,
};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Latch control plane",
        description = "Rules, live locks and the audit trail. Every route needs a JWT with one of `control_plane.admin_roles`, as a Bearer token or in the proxy's cookie, except this document, `GET /api/v1/openapi.json`, which is public: it holds the API's shape and no data. A write that carries an `Origin` header must name the control plane's own origin, scheme included. Errors are application/problem+json."
    ),
    paths(
        rules_api::list, rules_api::get, rules_api::create, rules_api::replace,
        rules_api::delete, rules_api::validate, rules_api::matching, preview_api::preview,
        locks_api::list, locks_api::get, locks_api::force_release,
        events_api::list, events_api::stream,
        shapes_api::list,
        apps_api::list,
    ),
    components(schemas(
        rule_json::RuleDto, rule_json::RuleView, rules_api::RuleListView, rules_api::Validation,
        rules_api::MatchRequest, rules_api::MatchResult, error::Problem, error::FieldError,
        locks_api::LockView, locks_api::HolderView, locks_api::LockList, locks_api::Released,
        events_api::AuditEventDoc, events_api::EventPage, events_api::StreamEvent,
        shapes_api::ShapeList, shapes_api::ShapeView, shapes_api::Suggestion,
        rules::RelatedShape,
        preview_api::Preview, preview_api::PreviewRequest, gate::replay::UserSummary,
        apps_api::AppList, apps_api::AppView,
    )),
    servers((url = "/", description = "This control plane")),
    modifiers(&Security),
    security(("bearer" = []), ("cookie" = [])),
    tags(
        (name = "rules", description = "Which URLs are exclusive"),
        (name = "locks", description = "Who holds what now"),
        (name = "events", description = "The audit trail"),
        (name = "shapes", description = "The request shapes the proxies saw, for writing rules"),
    )
)]
pub struct ApiDoc;

struct Security;

impl Modify for Security {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .build(),
            ),
        );
        components.add_security_scheme(
            "cookie",
            SecurityScheme::ApiKey(ApiKey::Cookie(ApiKeyValue::new("latch_token"))),
        );
    }
}

/// The document as served, built once.
pub fn document_json() -> &'static Value {
    static DOCUMENT: OnceLock<Value> = OnceLock::new();
    DOCUMENT.get_or_init(|| {
        let mut doc = serde_json::to_value(ApiDoc::openapi()).unwrap_or_else(|_| json!({}));
        contract(&mut doc);
        doc
    })
}

pub async fn document() -> Response {
    let body = serde_json::to_vec(document_json()).unwrap_or_default();
    ([(header::CONTENT_TYPE, "application/json")], body).into_response()
}

/// A quoted entity tag, as the server sends it.
const ETAG_PATTERN: &str = "^\"[^\"]*\"$";

/// A rule body with a field the server does not know is refused (422), so `RuleDto` admits no
/// other properties. `RuleView` is a `RuleDto` plus `etag`; utoipa writes that as an `allOf`,
/// which the closed `RuleDto` would contradict, so it is written out whole instead.
fn close_rule_schemas(doc: &mut Value) {
    let Some(schemas) = doc
        .pointer_mut("/components/schemas")
        .and_then(Value::as_object_mut)
    else {
        return;
    };
    let Some(Value::Object(dto)) = schemas.get_mut("RuleDto") else {
        return;
    };
    dto.insert("additionalProperties".into(), Value::Bool(false));
    let mut view = dto.clone();
    let etag = schemas
        .get("RuleView")
        .and_then(|v| v.pointer("/allOf/1/properties/etag"))
        .cloned()
        .unwrap_or_else(|| json!({"type": "string"}));
    if let Some(Value::Object(properties)) = view.get_mut("properties") {
        properties.insert("etag".into(), etag);
    }
    if let Some(Value::Array(required)) = view.get_mut("required") {
        required.push(json!("etag"));
    }
    view.insert(
        "description".into(),
        json!("A stored rule with its ETag: every field of RuleDto, and `etag`."),
    );
    schemas.insert("RuleView".into(), Value::Object(view));
}

/// An optional header (`If-Match` of a lock's release) is absent or a string: utoipa writes
/// an `Option` header as nullable, which would call the text `null` a valid value.
fn optional_headers_are_not_null(doc: &mut Value) {
    let Some(paths) = doc.get_mut("paths").and_then(Value::as_object_mut) else {
        return;
    };
    let parameters = paths
        .values_mut()
        .filter_map(Value::as_object_mut)
        .flat_map(|item| item.values_mut())
        .filter_map(|operation| operation.get_mut("parameters"))
        .filter_map(Value::as_array_mut)
        .flatten();
    for parameter in parameters {
        if parameter["in"] != "header" {
            continue;
        }
        if let Some(kind) = parameter.pointer_mut("/schema/type") {
            if kind.as_array().is_some_and(|k| k.contains(&json!("null"))) {
                *kind = json!("string");
            }
        }
    }
}

/// What every operation shares; see the module's doc.
fn contract(doc: &mut Value) {
    close_rule_schemas(doc);
    optional_headers_are_not_null(doc);
    let Some(paths) = doc.get_mut("paths").and_then(Value::as_object_mut) else {
        return;
    };
    for item in paths.values_mut() {
        let Some(item) = item.as_object_mut() else {
            continue;
        };
        for operation in item.values_mut() {
            let Some(responses) = operation
                .get_mut("responses")
                .and_then(Value::as_object_mut)
            else {
                continue;
            };
            responses.entry("401").or_insert_with(|| {
                problem_response("No valid token: sign in, or send Authorization: Bearer")
            });
            responses.entry("403").or_insert_with(|| {
                problem_response(
                    "The token has none of the admin roles, or a change came with another site's Origin",
                )
            });
            for (status, response) in responses.iter_mut() {
                let is_error = status.starts_with('4') || status.starts_with('5');
                if is_error {
                    as_problem(response);
                }
                let headers = response
                    .as_object_mut()
                    .map(|r| r.entry("headers").or_insert_with(|| json!({})));
                let Some(Value::Object(headers)) = headers else {
                    continue;
                };
                match status.as_str() {
                    "401" => {
                        headers.insert(
                            "WWW-Authenticate".into(),
                            required_header("Bearer realm=\"latch\"", json!({"type": "string"})),
                        );
                    }
                    "503" => {
                        headers.insert(
                            "Retry-After".into(),
                            required_header("Seconds to wait", json!({"type": "integer"})),
                        );
                    }
                    _ => {}
                }
                for (name, header) in headers.iter_mut() {
                    // utoipa cannot mark a header required; every documented one is sent.
                    if let Some(header) = header.as_object_mut() {
                        header.insert("required".into(), Value::Bool(true));
                        if name == "ETag" {
                            header.insert(
                                "schema".into(),
                                json!({"type": "string", "pattern": ETAG_PATTERN}),
                            );
                        }
                    }
                }
                if headers.is_empty() {
                    if let Some(response) = response.as_object_mut() {
                        response.remove("headers");
                    }
                }
                if let Some(links) = response.get_mut("links").and_then(Value::as_object_mut) {
                    links.values_mut().for_each(camel_case_link);
                }
            }
        }
    }
}

/// utoipa 5 writes a link's fields in snake case (`operation_id`); OpenAPI names them
/// `operationId`, `operationRef` and `requestBody`.
fn camel_case_link(link: &mut Value) {
    let Some(link) = link.as_object_mut() else {
        return;
    };
    for (from, to) in [
        ("operation_id", "operationId"),
        ("operation_ref", "operationRef"),
        ("request_body", "requestBody"),
    ] {
        if let Some(value) = link.remove(from) {
            link.insert(to.into(), value);
        }
    }
}

fn problem_response(description: &str) -> Value {
    json!({
        "description": description,
        "content": {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}},
    })
}

/// Moves an error response's body to `application/problem+json`, the only type errors are
/// sent in.
fn as_problem(response: &mut Value) {
    let Some(content) = response.get_mut("content").and_then(Value::as_object_mut) else {
        return;
    };
    let schema = content
        .values()
        .find_map(|c| c.get("schema").cloned())
        .unwrap_or_else(|| json!({"$ref": "#/components/schemas/Problem"}));
    *content = Map::new();
    content.insert(
        "application/problem+json".into(),
        json!({ "schema": schema }),
    );
}

fn required_header(description: &str, schema: Value) -> Value {
    json!({"description": description, "required": true, "schema": schema})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_route_is_described() {
        let doc = document_json().clone();
        let paths = doc["paths"].as_object().unwrap();
        for (path, methods) in [
            ("/api/v1/rules", &["get", "post"][..]),
            ("/api/v1/rules/{id}", &["get", "put", "delete"][..]),
            ("/api/v1/rules/validate", &["post"][..]),
            ("/api/v1/match", &["post"][..]),
            ("/api/v1/locks", &["get"][..]),
            ("/api/v1/locks/{resource}", &["delete"][..]),
            ("/api/v1/events", &["get"][..]),
            ("/api/v1/events/stream", &["get"][..]),
        ] {
            for method in methods {
                assert!(
                    paths[path].get(*method).is_some(),
                    "{method} {path} is missing"
                );
            }
        }
        let rule = &doc["components"]["schemas"]["RuleDto"]["properties"];
        for field in rules::RULE_FIELDS {
            assert!(
                rule.get(*field).is_some(),
                "rule field {field} is not documented"
            );
        }
    }

    fn operations(doc: &Value) -> Vec<(String, &Value)> {
        let mut out = Vec::new();
        for (path, item) in doc["paths"].as_object().unwrap() {
            for (method, operation) in item.as_object().unwrap() {
                out.push((format!("{method} {path}"), operation));
            }
        }
        out
    }

    #[test]
    fn operation_ids_are_unique() {
        let doc = document_json();
        let mut seen = std::collections::HashSet::new();
        for (name, operation) in operations(doc) {
            let id = operation["operationId"].as_str().unwrap_or_default();
            assert!(!id.is_empty(), "{name} has no operationId");
            assert!(
                seen.insert(id.to_owned()),
                "{name} repeats operationId {id}"
            );
        }
    }

    #[test]
    fn every_error_is_problem_json_and_every_operation_needs_an_admin() {
        let doc = document_json();
        for (name, operation) in operations(doc) {
            let responses = operation["responses"].as_object().unwrap();
            for status in ["401", "403"] {
                assert!(responses.contains_key(status), "{name} lacks {status}");
            }
            assert!(
                responses["401"]["headers"]["WWW-Authenticate"]["required"] == true,
                "{name}: 401 without WWW-Authenticate"
            );
            for (status, response) in responses {
                if status.starts_with('4') || status.starts_with('5') {
                    let types: Vec<&String> =
                        response["content"].as_object().unwrap().keys().collect();
                    assert_eq!(types, ["application/problem+json"], "{name} {status}");
                }
                if status == "503" {
                    assert!(response["headers"]["Retry-After"].is_object(), "{name}");
                }
            }
        }
    }

    #[test]
    fn etag_location_and_if_match_are_described() {
        let doc = document_json();
        let paths = &doc["paths"];
        for (path, method, status) in [
            ("/api/v1/rules", "get", "200"),
            ("/api/v1/rules", "post", "201"),
            ("/api/v1/rules/{id}", "get", "200"),
            ("/api/v1/rules/{id}", "put", "200"),
            ("/api/v1/rules/{id}", "put", "412"),
            ("/api/v1/rules/{id}", "delete", "412"),
        ] {
            let etag = &paths[path][method]["responses"][status]["headers"]["ETag"];
            assert_eq!(etag["required"], true, "{method} {path} {status}");
            assert_eq!(etag["schema"]["pattern"], ETAG_PATTERN);
        }
        assert_eq!(
            paths["/api/v1/rules"]["post"]["responses"]["201"]["headers"]["Location"]["required"],
            true
        );
        for method in ["put", "delete"] {
            let params = paths["/api/v1/rules/{id}"][method]["parameters"]
                .as_array()
                .unwrap();
            let if_match = params.iter().find(|p| p["name"] == "If-Match").unwrap();
            assert_eq!(if_match["in"], "header");
            assert_eq!(if_match["required"], true);
        }
        let links = &paths["/api/v1/rules"]["post"]["responses"]["201"]["links"];
        assert_eq!(links["ReplaceRule"]["operationId"], "replaceRule");
        assert_eq!(
            links["ReplaceRule"]["parameters"]["If-Match"],
            "$response.header.ETag"
        );
    }

    #[test]
    fn the_documented_bounds_are_the_enforced_ones() {
        use rules::limits::*;
        let doc = document_json();
        let rule = &doc["components"]["schemas"]["RuleDto"]["properties"];
        let bounds = |field: &str| {
            (
                rule[field]["minimum"].as_i64().unwrap(),
                rule[field]["maximum"].as_i64().unwrap(),
            )
        };
        let range = |r: std::ops::RangeInclusive<u64>| {
            (
                i64::try_from(*r.start()).unwrap(),
                i64::try_from(*r.end()).unwrap(),
            )
        };
        assert_eq!(bounds("lease_seconds"), range(LEASE_SECONDS));
        assert_eq!(bounds("grace_seconds"), range(GRACE_SECONDS));
        assert_eq!(bounds("idle_seconds"), range(IDLE_SECONDS));
        assert_eq!(bounds("offer_seconds"), range(OFFER_SECONDS));
        assert_eq!(
            bounds("max_per_user"),
            (
                i64::from(*MAX_PER_USER.start()),
                i64::from(*MAX_PER_USER.end())
            )
        );
        assert_eq!(
            bounds("priority"),
            (i64::from(*PRIORITY.start()), i64::from(*PRIORITY.end()))
        );
        assert_eq!(
            rule["id"]["pattern"],
            format!("^[a-z0-9_-]{{1,{ID_MAX_LEN}}}$")
        );
        let required: Vec<&str> = doc["components"]["schemas"]["RuleDto"]["required"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect();
        assert_eq!(required, ["id", "pattern"]);
        assert_eq!(
            doc["components"]["schemas"]["RuleDto"]["additionalProperties"],
            false
        );
        let view = &doc["components"]["schemas"]["RuleView"];
        assert_eq!(view["additionalProperties"], false);
        for field in rules::RULE_FIELDS.iter().chain(&["etag"]) {
            assert!(
                view["properties"][field].is_object(),
                "RuleView lacks {field}"
            );
        }

        let names = |field: &str| -> Vec<Value> { rule[field]["enum"].as_array().unwrap().clone() };
        for (field, all) in [
            ("mode", rule_json::MODES.to_vec()),
            ("owner", rule_json::OWNERS.to_vec()),
            ("websocket", rule_json::WEBSOCKETS.to_vec()),
        ] {
            let mut expected: Vec<Value> = all.iter().map(|n| json!(n)).collect();
            expected.push(Value::Null);
            assert_eq!(names(field), expected, "{field}");
        }
        // Every variant's wire name is listed, and every listed name reads back.
        for mode in [
            rules::Mode::Block,
            rules::Mode::Redirect,
            rules::Mode::ReadOnly,
        ] {
            assert!(rule_json::MODES.contains(&mode.as_str()));
        }
        for name in rule_json::MODES {
            assert!(serde_json::from_value::<rules::Mode>(json!(name)).is_ok());
        }
        for owner in [rules::Owner::User, rules::Owner::Session] {
            assert!(rule_json::OWNERS.contains(&owner.as_str()));
        }
        for name in rule_json::OWNERS {
            assert!(serde_json::from_value::<rules::Owner>(json!(name)).is_ok());
        }
        for ws in [rules::WebSocket::Lock, rules::WebSocket::Pass] {
            assert!(rule_json::WEBSOCKETS.contains(&ws.as_str()));
        }
        for name in rule_json::WEBSOCKETS {
            assert!(serde_json::from_value::<rules::WebSocket>(json!(name)).is_ok());
        }

        let params = doc["paths"]["/api/v1/events"]["get"]["parameters"]
            .as_array()
            .unwrap();
        let param = |name: &str| &params.iter().find(|p| p["name"] == name).unwrap()["schema"];
        assert_eq!(param("limit")["minimum"], 1);
        assert_eq!(param("limit")["maximum"], store::MAX_QUERY_LIMIT);
        let kinds: Vec<&str> = store::AuditKind::ALL.iter().map(|k| k.as_str()).collect();
        assert_eq!(param("kind")["enum"], json!(kinds));
    }
}
