//! The OpenAPI documents of the two ports, generated from the handlers' `#[utoipa::path]`
//! attributes and the `ToSchema` of the types they take and answer with: the order API (the
//! commands and the read model's queries, `order_api`) and the admin API (`/metrics`,
//! `/health`, `/ready` and the DLQ, `admin_api`). Each port serves its own at
//! `GET /openapi.json` ([`routes`]); `dev/fuzz-api` fuzzes both with schemathesis.

#[cfg(test)]
mod bad_path_tests;
#[cfg(test)]
mod document_tests;
#[cfg(test)]
mod route_coverage_tests;
#[cfg(test)]
mod test_routers;

use std::sync::Arc;

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{InfoBuilder, OpenApi as Document, OpenApiBuilder};
use utoipa::OpenApi;

use crate::admin::AdminEndpointDoc;
use crate::dlq::DlqApiDoc;
use crate::order_service::http::OrderCommandsDoc;
use crate::projector::QueryApiDoc;

/// The name of the bearer scheme that every `/admin` operation requires (`#[utoipa::path]`
/// attributes spell it out: they take only literals).
pub const ADMIN_TOKEN_SCHEME: &str = "admin_token";

/// The order API port: `POST /orders`, `POST /orders/{id}/cancel`,
/// `POST /admin/orders/{id}/intervention`, `GET /orders/{id}`, `GET /orders`.
pub fn order_api() -> Document {
    port_document(
        "saga-pipeline order API",
        "Commands of the event-sourced order service and queries of the read model. Errors are `{\"error\": \"...\"}`.",
        [OrderCommandsDoc::openapi(), QueryApiDoc::openapi()],
    )
}

/// The admin port: `/metrics`, `/health`, `/ready` and the DLQ's `/admin/dlq` routes.
pub fn admin_api() -> Document {
    port_document(
        "saga-pipeline admin API",
        "Metrics, health and readiness, and the dead-letter index (docs/retries.md). Errors are `{\"error\": \"...\"}`.",
        [AdminEndpointDoc::openapi(), DlqApiDoc::openapi()],
    )
}

fn port_document(title: &str, description: &str, parts: impl IntoIterator<Item = Document>) -> Document {
    let info =
        InfoBuilder::new().title(title).version(env!("CARGO_PKG_VERSION")).description(Some(description)).build();
    let mut document = OpenApiBuilder::new().info(info).build();
    for part in parts {
        document.merge(part);
    }
    document.merge(DocumentRouteDoc::openapi());
    let bearer = HttpBuilder::new()
        .scheme(HttpAuthScheme::Bearer)
        .description(Some("The admin token (admin.token, admin.token_file or SAGA__ADMIN__TOKEN)"))
        .build();
    document
        .components
        .get_or_insert_with(Default::default)
        .add_security_scheme(ADMIN_TOKEN_SCHEME, SecurityScheme::Http(bearer));
    document
}

/// `GET /openapi.json`, serving `document`.
pub fn routes(document: Document) -> Router {
    Router::new().route("/openapi.json", get(document_json)).with_state(Arc::new(document))
}

#[derive(OpenApi)]
#[openapi(paths(document_json))]
struct DocumentRouteDoc;

/// This document.
#[utoipa::path(
    get,
    path = "/openapi.json",
    tag = "meta",
    responses((status = 200, description = "The OpenAPI document of this port", body = Object))
)]
async fn document_json(State(document): State<Arc<Document>>) -> Response {
    Json(document.as_ref()).into_response()
}
