//! `GET /api/v1/openapi.json`: the API description, generated from the handlers' and types'
//! annotations so it cannot drift from the code.

use axum::Json;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::{error, events_api, locks_api, rule_json, rules_api};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Latch control plane",
        description = "Rules, live locks and the audit trail. Every route needs a JWT with one of `control_plane.admin_roles`, as a Bearer token or in the proxy's cookie, except this document, `GET /api/v1/openapi.json`, which is public: it holds the API's shape and no data. A write that carries an `Origin` header must name the control plane's own origin, scheme included. Errors are application/problem+json."
    ),
    paths(
        rules_api::list, rules_api::get, rules_api::create, rules_api::replace,
        rules_api::delete, rules_api::validate, rules_api::matching,
        locks_api::list, locks_api::force_release,
        events_api::list, events_api::stream,
    ),
    components(schemas(
        rule_json::RuleDto, rule_json::RuleView, rules_api::RuleListView, rules_api::Validation,
        rules_api::MatchRequest, rules_api::MatchResult, error::Problem, error::FieldError,
        locks_api::LockView, locks_api::HolderView, locks_api::LockList, locks_api::Released,
        events_api::AuditEventDoc, events_api::EventPage,
    )),
    modifiers(&Security),
    security(("bearer" = []), ("cookie" = [])),
    tags(
        (name = "rules", description = "Which URLs are exclusive"),
        (name = "locks", description = "Who holds what now"),
        (name = "events", description = "The audit trail"),
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

pub async fn document() -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_route_is_described() {
        let doc = serde_json::to_value(ApiDoc::openapi()).unwrap();
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
}
