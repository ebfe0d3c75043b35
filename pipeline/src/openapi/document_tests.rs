//! What the OpenAPI documents promise besides their routes: the bearer scheme on every `/admin`
//! operation and only there, the JSON error schema on every error answer, and enum names that
//! are the ones the handlers parse and print.

use serde_json::Value;
use utoipa::PartialSchema;

use super::{admin_api, order_api, ADMIN_TOKEN_SCHEME};

fn documents() -> [(&'static str, Value); 2] {
    [
        ("order API", serde_json::to_value(order_api()).unwrap()),
        ("admin API", serde_json::to_value(admin_api()).unwrap()),
    ]
}

/// (path, method, operation) of every operation of `document`.
fn operations(document: &Value) -> Vec<(String, String, Value)> {
    let mut operations = Vec::new();
    for (path, item) in document["paths"].as_object().unwrap() {
        for (method, operation) in item.as_object().unwrap() {
            operations.push((path.clone(), method.clone(), operation.clone()));
        }
    }
    operations
}

#[test]
fn every_admin_operation_needs_the_bearer_token_and_no_other_does() {
    for (name, document) in documents() {
        let scheme = &document["components"]["securitySchemes"][ADMIN_TOKEN_SCHEME];
        assert_eq!((scheme["type"].as_str(), scheme["scheme"].as_str()), (Some("http"), Some("bearer")), "{name}");
        for (path, method, operation) in operations(&document) {
            let required: Vec<&str> = operation["security"]
                .as_array()
                .map(|requirements| {
                    requirements
                        .iter()
                        .filter_map(|r| r.as_object())
                        .flat_map(|r| r.keys().map(String::as_str))
                        .collect()
                })
                .unwrap_or_default();
            let expected: Vec<&str> = if path.starts_with("/admin/") { vec![ADMIN_TOKEN_SCHEME] } else { vec![] };
            assert_eq!(required, expected, "{name}: {method} {path}");
            if path.starts_with("/admin/") {
                assert!(operation["responses"]["401"].is_object(), "{name}: {method} {path} documents its 401");
            }
        }
    }
}

#[test]
fn every_error_answer_is_the_json_error_body() {
    for (name, document) in documents() {
        for (path, method, operation) in operations(&document) {
            for (status, response) in operation["responses"].as_object().unwrap() {
                // The Prometheus text endpoint answers in text even when it fails.
                if !(status.starts_with('4') || status.starts_with('5')) || path == "/metrics" {
                    continue;
                }
                let schema = &response["content"]["application/json"]["schema"];
                let is_error_body = schema["$ref"] == "#/components/schemas/ErrorBody"
                    // /health and /ready answer 503 with the instances' states.
                    || (matches!(path.as_str(), "/health" | "/ready") && schema["type"] == "object");
                assert!(is_error_body, "{name}: {method} {path} {status}: {response}");
            }
        }
    }
}

fn enum_names(schema: utoipa::openapi::RefOr<utoipa::openapi::schema::Schema>) -> Vec<String> {
    let json = serde_json::to_value(schema).unwrap();
    json["enum"].as_array().unwrap().iter().map(|name| name.as_str().unwrap().to_string()).collect()
}

#[test]
fn enum_names_are_the_ones_the_handlers_parse() {
    use crate::dlq::{ErrorClass, Status};
    use crate::projector::OrderStatus;
    assert_eq!(enum_names(OrderStatus::schema()), OrderStatus::ALL.map(|status| status.as_str().to_string()));
    assert_eq!(enum_names(Status::schema()), Status::ALL.map(|status| status.as_str().to_string()));
    assert_eq!(enum_names(ErrorClass::schema()), ErrorClass::ALL.map(|class| class.as_str().to_string()));
}
