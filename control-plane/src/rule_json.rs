//! Rules on the wire: reading a JSON body into a [`Rule`] with every field problem reported,
//! and the JSON shapes the API answers with.
//!
//! serde alone stops at the first bad field, and the admin UI must show every field's error
//! next to that field. So each field is type-checked on its own first, and only a body
//! without type errors is deserialized and handed to the rule validation, whose issues are
//! field-tagged too.

use axum::http::{header, HeaderMap};
use rules::{Mode, Owner, Problems, Rule, WebSocket, RULE_FIELDS};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use store::StoredRule;
use utoipa::ToSchema;

use crate::error::{ApiError, FieldError};

/// A rule as the API shows and accepts it (docs/rules.md). It mirrors [`rules::Rule`] field for
/// field; a test keeps the two in step. On the way in, only `id` and `pattern` are required
/// and `null` means "the default", as for a form field left empty; on the way out every field
/// is written. The bounds below are `rules::limits`, and a test keeps them equal.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct RuleDto {
    /// Unique: lowercase letters, digits, `_` and `-`, at most 64.
    #[schema(pattern = "^[a-z0-9_-]{1,64}$", example = "doc-edit")]
    pub id: String,
    /// Regex matched against the whole normalized path; named captures allowed.
    #[schema(example = "/docs/(?P<id>[0-9]+)/edit")]
    pub pattern: String,
    /// Lock key template such as `doc:{id}`; default: the id plus the captures.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resource: Option<String>,
    /// Methods the rule applies to, in any case; default all.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(schema_with = methods_schema)]
    pub methods: Option<Vec<String>>,
    /// What another user's request gets; default `block`.
    #[schema(schema_with = mode_schema, required = false)]
    pub mode: Mode,
    /// Same-site path template; required for `redirect`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub redirect_to: Option<String>,
    /// Whom the lock belongs to; default `user`.
    #[schema(schema_with = owner_schema, required = false)]
    pub owner: Owner,
    /// Default `[locks] lease_seconds`.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 5, maximum = 86400)]
    pub lease_seconds: Option<u64>,
    /// Default `[locks] grace_seconds`; shorter than the lease.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 0, maximum = 3600)]
    pub grace_seconds: Option<u64>,
    /// Seconds without activity before the holder is released; `0` is off; default
    /// `[locks] idle_seconds`.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 0, maximum = 86400)]
    pub idle_seconds: Option<u64>,
    /// How long a freed resource is reserved for the head of its wait queue; default
    /// `[locks] offer_seconds`.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 5, maximum = 3600)]
    pub offer_seconds: Option<u64>,
    /// Most distinct live locks a user may hold once a claim under this rule is granted;
    /// `0` is no cap; default `[locks] max_per_user`.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 0, maximum = 1000)]
    pub max_per_user: Option<u32>,
    /// Default `["admin"]`.
    #[schema(value_type = Option<Vec<String>>, required = false)]
    pub takeover_roles: Vec<String>,
    /// Default `true`.
    #[schema(value_type = Option<bool>, required = false)]
    pub inject: bool,
    /// Default 0; higher wins.
    #[schema(value_type = Option<i32>, required = false, minimum = -1000, maximum = 1000)]
    pub priority: i32,
    /// Default `false`.
    #[schema(value_type = Option<bool>, required = false)]
    pub case_insensitive: bool,
    /// Default `true`.
    #[schema(value_type = Option<bool>, required = false)]
    pub enabled: bool,
    /// Whether the app's WebSocket upgrade needs the lock; default `lock`.
    #[schema(schema_with = websocket_schema, required = false)]
    pub websocket: WebSocket,
    /// The `[[app]]` this rule applies to, by name; default every app.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(pattern = "^[a-z0-9_-]{1,32}$", example = "wiki")]
    pub app: Option<String>,
}

/// A nullable string enum of `names` (`null` is the default).
fn names_schema(
    names: &[&str],
    example: &str,
    description: &str,
) -> utoipa::openapi::schema::Object {
    use utoipa::openapi::schema::{ObjectBuilder, Type};
    ObjectBuilder::new()
        .schema_type(utoipa::openapi::schema::SchemaType::from_iter([
            Type::String,
            Type::Null,
        ]))
        .enum_values(Some(
            names
                .iter()
                .map(|n| serde_json::Value::from(*n))
                .chain([serde_json::Value::Null]),
        ))
        .examples([serde_json::Value::from(example)])
        .description(Some(description))
        .build()
}

/// The wire names of [`Mode`].
pub const MODES: [&str; 3] = ["block", "redirect", "read_only"];
/// The wire names of [`Owner`].
pub const OWNERS: [&str; 2] = ["user", "session"];
/// The wire names of [`WebSocket`].
pub const WEBSOCKETS: [&str; 2] = ["lock", "pass"];

fn mode_schema() -> utoipa::openapi::schema::Object {
    names_schema(
        &MODES,
        "block",
        "What another user's request gets; default `block`.",
    )
}

fn owner_schema() -> utoipa::openapi::schema::Object {
    names_schema(&OWNERS, "user", "Whom the lock belongs to; default `user`.")
}

fn websocket_schema() -> utoipa::openapi::schema::Object {
    names_schema(
        &WEBSOCKETS,
        "lock",
        "Whether the app's WebSocket upgrade needs the lock; default `lock`.",
    )
}

/// `methods`: a non-empty list of HTTP method names (RFC 9110 tokens), or `null`.
fn methods_schema() -> utoipa::openapi::schema::Array {
    use utoipa::openapi::schema::{ArrayBuilder, ObjectBuilder, SchemaType, Type};
    ArrayBuilder::new()
        .description(Some(
            "Methods the rule applies to, in any case; default all.",
        ))
        .schema_type(SchemaType::from_iter([Type::Array, Type::Null]))
        .items(
            ObjectBuilder::new()
                .schema_type(Type::String)
                .pattern(Some("^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")),
        )
        .min_items(Some(1))
        .examples([serde_json::json!(["PUT", "POST"])])
        .build()
}

impl From<Rule> for RuleDto {
    fn from(rule: Rule) -> RuleDto {
        RuleDto {
            id: rule.id,
            pattern: rule.pattern,
            resource: rule.resource,
            methods: rule.methods,
            mode: rule.mode,
            redirect_to: rule.redirect_to,
            owner: rule.owner,
            lease_seconds: rule.lease_seconds,
            grace_seconds: rule.grace_seconds,
            idle_seconds: rule.idle_seconds,
            offer_seconds: rule.offer_seconds,
            max_per_user: rule.max_per_user,
            takeover_roles: rule.takeover_roles,
            inject: rule.inject,
            priority: rule.priority,
            case_insensitive: rule.case_insensitive,
            enabled: rule.enabled,
            websocket: rule.websocket,
            app: rule.app,
        }
    }
}

/// A stored rule with its ETag.
#[derive(Serialize, ToSchema)]
pub struct RuleView {
    #[serde(flatten)]
    pub rule: RuleDto,
    /// Send it back, quoted, in `If-Match` to change or delete this rule.
    pub etag: String,
}

impl From<StoredRule> for RuleView {
    fn from(stored: StoredRule) -> RuleView {
        RuleView {
            rule: stored.rule.into(),
            etag: stored.etag,
        }
    }
}

/// The body as JSON, refusing other media types (which also keeps cross-site HTML forms out)
/// and malformed JSON.
pub fn json_body(headers: &HeaderMap, body: &[u8]) -> Result<Value, ApiError> {
    let is_json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(|v| v.trim().to_ascii_lowercase())
        .is_some_and(|v| v == "application/json" || v.ends_with("+json"));
    if !is_json {
        return Err(ApiError::UnsupportedMediaType);
    }
    serde_json::from_slice(body)
        .map_err(|e| ApiError::BadRequest(format!("The body is not valid JSON: {e}.")))
}

/// Reads a rule from a JSON body. `path_id` is the id in the URL of a replace: the body may
/// omit `id` then, and may not name another. Every problem comes back at once.
pub fn rule_from_json(value: Value, path_id: Option<&str>) -> Result<Rule, Vec<FieldError>> {
    let Value::Object(mut object) = value else {
        return Err(vec![FieldError::new(
            "",
            "expected a JSON object with the rule's fields",
        )]);
    };
    let mut problems = Problems::new();
    let mut errors = problems.context(|field, message| FieldError::new(field, message));
    if let Some(path_id) = path_id {
        match object.get("id") {
            None | Some(Value::Null) => {
                object.insert("id".into(), Value::String(path_id.to_owned()));
            }
            Some(Value::String(id)) if id == path_id => {}
            Some(_) => errors.push(
                "id",
                format!("must be {path_id:?}, the rule in the URL; to rename a rule, delete it and create a new one"),
            ),
        }
    }
    // `null` means "not set", as it does for a form field left empty.
    object.retain(|_, v| !v.is_null());
    errors.unknown(object.keys().map(String::as_str), RULE_FIELDS, |known| {
        format!("unknown field; known fields: {known}")
    });
    for (name, value) in &object {
        if let Some(message) = type_error(name, value) {
            errors.push(name, message);
        }
    }
    for required in ["id", "pattern"] {
        if !object.contains_key(required) {
            errors.push(required, "is required");
        }
    }
    problems.finish(())?;
    let rule: Rule = serde_json::from_value(Value::Object(object))
        .map_err(|e| vec![FieldError::new("", e.to_string())])?;
    rules::validate_rule(&rule)
        .iter()
        .map(|issue| FieldError::from_issue(issue, &rule.id))
        .collect::<Problems<_>>()
        .finish(rule)
}

/// Why `value` cannot be the field `name`, if it cannot.
fn type_error(name: &str, value: &Value) -> Option<String> {
    fn check<T: DeserializeOwned>(value: &Value, expected: &str) -> Option<String> {
        serde_json::from_value::<T>(value.clone())
            .err()
            .map(|_| format!("expected {expected}"))
    }
    match name {
        "id" | "pattern" | "resource" | "redirect_to" | "app" => check::<String>(value, "a string"),
        "methods" | "takeover_roles" => check::<Vec<String>>(value, "a list of strings"),
        "mode" => check::<Mode>(value, "one of \"block\", \"redirect\", \"read_only\""),
        "owner" => check::<Owner>(value, "one of \"user\", \"session\""),
        "websocket" => check::<WebSocket>(value, "one of \"lock\", \"pass\""),
        "lease_seconds" | "grace_seconds" | "idle_seconds" | "offer_seconds" => {
            check::<u64>(value, "a whole number of seconds")
        }
        "max_per_user" => check::<u32>(value, "a whole number of locks"),
        "priority" => check::<i32>(value, "a whole number"),
        "inject" | "case_insensitive" | "enabled" => check::<bool>(value, "true or false"),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn fields(errors: &[FieldError]) -> Vec<&str> {
        errors.iter().map(|e| e.field.as_str()).collect()
    }

    #[test]
    fn the_dto_has_exactly_the_rule_fields() {
        let mut rule = Rule::new("r", "/x");
        rule.resource = Some("x".into());
        rule.methods = Some(vec![]);
        rule.redirect_to = Some("/y".into());
        rule.lease_seconds = Some(30);
        rule.grace_seconds = Some(3);
        rule.max_per_user = Some(3);
        rule.idle_seconds = Some(600);
        rule.offer_seconds = Some(60);
        rule.app = Some("wiki".into());
        let json = serde_json::to_value(RuleDto::from(rule.clone())).unwrap();
        let mut keys: Vec<&str> = json
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        let mut expected = RULE_FIELDS.to_vec();
        keys.sort_unstable();
        expected.sort_unstable();
        assert_eq!(keys, expected);
        assert_eq!(json, serde_json::to_value(&rule).unwrap());
    }

    #[test]
    fn every_type_error_and_unknown_field_is_listed() {
        let body = json!({
            "id": 7, "pattern": "/x", "mode": "lock", "priority": "high",
            "colour": "red", "enabled": "yes"
        });
        let errors = rule_from_json(body, None).unwrap_err();
        let mut named = fields(&errors);
        named.sort_unstable();
        assert_eq!(named, vec!["colour", "enabled", "id", "mode", "priority"]);
    }

    #[test]
    fn validation_issues_name_their_fields() {
        let body = json!({
            "id": "Bad Id", "pattern": "/docs/(?P<id>[0-9]+", "mode": "redirect",
            "lease_seconds": 1
        });
        let errors = rule_from_json(body, None).unwrap_err();
        let named = fields(&errors);
        for field in ["id", "pattern", "redirect_to", "lease_seconds"] {
            assert!(named.contains(&field), "{field} missing from {errors:?}");
        }
    }

    #[test]
    fn a_replace_takes_its_id_from_the_url() {
        let rule = rule_from_json(json!({"pattern": "/x"}), Some("edit")).unwrap();
        assert_eq!(rule.id, "edit");
        let errors =
            rule_from_json(json!({"id": "other", "pattern": "/x"}), Some("edit")).unwrap_err();
        assert_eq!(fields(&errors), vec!["id"]);
    }

    #[test]
    fn missing_required_fields_and_non_objects_are_reported() {
        assert_eq!(
            fields(&rule_from_json(json!({}), None).unwrap_err()),
            vec!["id", "pattern"]
        );
        assert_eq!(
            fields(&rule_from_json(json!([1]), None).unwrap_err()),
            vec![""]
        );
    }

    #[test]
    fn nulls_mean_defaults() {
        let rule =
            rule_from_json(json!({"id": "a", "pattern": "/a", "resource": null}), None).unwrap();
        assert_eq!(rule, Rule::new("a", "/a"));
    }

    #[test]
    fn only_json_bodies_are_read() {
        let mut headers = HeaderMap::new();
        assert!(matches!(
            json_body(&headers, b"{}"),
            Err(ApiError::UnsupportedMediaType)
        ));
        headers.insert(
            header::CONTENT_TYPE,
            "application/json; charset=utf-8".parse().unwrap(),
        );
        assert!(json_body(&headers, b"{}").is_ok());
        assert!(matches!(
            json_body(&headers, b"{"),
            Err(ApiError::BadRequest(_))
        ));
    }
}
