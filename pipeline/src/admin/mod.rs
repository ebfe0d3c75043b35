//! The admin + metrics endpoint: `/metrics` (Prometheus text), `/health` and `/ready` (from the
//! stream instances' states), the consumer-lag exporter that feeds
//! `kafka_consumergroup_group_lag`, and what every operator call shares: the bearer-token check
//! ([`auth`]) and the audit line ([`audit`]). The DLQ's `/admin/dlq` routes are in `crate::dlq`.

pub mod audit;
pub mod auth;
pub mod health;
pub mod lag;
pub mod process_metrics;
mod resident_memory;

use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use prometheus::{Encoder, TextEncoder};
use utoipa::OpenApi;

/// The OpenAPI description of [`routes`].
#[derive(OpenApi)]
#[openapi(paths(metrics, health::health, health::ready))]
pub struct AdminEndpointDoc;

pub fn routes() -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/health", get(health::health))
        .route("/ready", get(health::ready))
}

/// Every metric of the process, in the Prometheus text format.
#[utoipa::path(
    get,
    path = "/metrics",
    tag = "admin",
    responses(
        (status = 200, description = "The metrics", body = String, content_type = "text/plain; version=0.0.4"),
        (status = 500, description = "Encoding the metrics failed", body = String, content_type = "text/plain"),
    )
)]
async fn metrics() -> impl IntoResponse {
    resident_memory::update();
    let mut body = Vec::new();
    match TextEncoder::new().encode(&prometheus::gather(), &mut body) {
        Ok(()) => (StatusCode::OK, [(header::CONTENT_TYPE, TextEncoder::new().format_type().to_string())], body),
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            [(header::CONTENT_TYPE, "text/plain".to_string())],
            format!("encoding metrics failed: {e}").into_bytes(),
        ),
    }
}
