//! The query API over order_view: `GET /orders/{id}` (optionally waiting until the view reflects
//! the order's event-store version a command returned: read-your-writes) and `GET /orders`
//! (filtered, paged).

use std::time::Duration;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::{HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use deadpool_postgres::Pool;
use serde::{Deserialize, Serialize};
use tokio::time::Instant;
use utoipa::{IntoParams, OpenApi, ToSchema};

use super::queries::{find_order, list_orders, OrderFilter, OrderRecord};
use super::store::ReadModelError;
use super::view::OrderStatus;
use crate::error_body::{error_response, ErrorBody};
use crate::path_text::PathText;

/// How long `?min_version=N` waits for the projection to catch up.
pub const MIN_VERSION_WAIT: Duration = Duration::from_secs(5);
const POLL_INTERVAL: Duration = Duration::from_millis(50);

/// `true` when the order answered has at least the version asked for (always, without
/// `min_version`); `false` when the wait ran out and an older version is returned.
pub const FRESH_HEADER: HeaderName = HeaderName::from_static("x-projection-fresh");

pub const DEFAULT_LIMIT: i64 = 20;
pub const MAX_LIMIT: i64 = 100;
/// Keeps the offset (page × limit) far inside an i64.
const MAX_PAGE: i64 = 1_000_000;
const MAX_CUSTOMER_ID_LEN: usize = 200;

/// The OpenAPI description of [`query_routes`].
#[derive(OpenApi)]
#[openapi(paths(get_order, get_orders), components(schemas(OrderRecord, OrderPage, OrderStatus, ErrorBody)))]
pub struct QueryApiDoc;

pub fn query_routes(pool: Pool) -> Router {
    Router::new().route("/orders", get(get_orders)).route("/orders/{id}", get(get_order)).with_state(pool)
}

/// A request the API refuses or cannot answer, as a JSON error.
#[derive(Debug)]
enum ApiError {
    BadRequest(String),
    NotFound(String),
    Unavailable(ReadModelError),
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, message) = match self {
            ApiError::BadRequest(message) => (StatusCode::BAD_REQUEST, message),
            ApiError::NotFound(message) => (StatusCode::NOT_FOUND, message),
            ApiError::Unavailable(error) => {
                tracing::warn!(%error, "order_view query failed");
                (StatusCode::SERVICE_UNAVAILABLE, format!("the read model is unavailable: {error}"))
            }
        };
        error_response(status, message)
    }
}

impl From<ReadModelError> for ApiError {
    fn from(error: ReadModelError) -> Self {
        ApiError::Unavailable(error)
    }
}

impl From<QueryRejection> for ApiError {
    fn from(rejection: QueryRejection) -> Self {
        ApiError::BadRequest(rejection.body_text())
    }
}

/// Query parameters as sent (text), validated by hand so every refusal says what was wrong; the
/// OpenAPI document shows the values that are accepted.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct OrderParams {
    /// Wait (up to 5 s) until the read model reflects this event-store version of the order, as
    /// a command returned it.
    #[param(value_type = Option<i64>, minimum = 0)]
    min_version: Option<String>,
}

#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct ListParams {
    #[param(min_length = 1, max_length = 200, pattern = r"^[^\x00-\x1f\x7f-\x9f]+$")]
    customer_id: Option<String>,
    #[param(value_type = Option<OrderStatus>)]
    status: Option<String>,
    /// 1-based.
    #[param(value_type = Option<i64>, minimum = 1, maximum = 1_000_000)]
    page: Option<String>,
    #[param(value_type = Option<i64>, minimum = 1, maximum = 100)]
    limit: Option<String>,
}

/// One page of `GET /orders`, newest first.
#[derive(Debug, Serialize, ToSchema)]
struct OrderPage {
    orders: Vec<OrderRecord>,
    page: i64,
    limit: i64,
    /// Whether a next page follows.
    has_more: bool,
}

/// One order from the read model.
#[utoipa::path(
    get,
    path = "/orders/{id}",
    tag = "read model",
    params(("id" = String, Path, pattern = r"^[^\x00-\x1f\x7f-\x9f]+$", description = "The order id"), OrderParams),
    responses(
        (status = 200, description = "The order", body = OrderRecord, headers(
            ("x-projection-fresh" = String, description = "`true` when the order has at least `min_version` (always without it), `false` when the wait ran out")
        )),
        (status = 400, description = "An id with control characters or not UTF-8, or a bad min_version", body = ErrorBody),
        (status = 404, description = "No such order (after waiting, with min_version)", body = ErrorBody),
        (status = 503, description = "The read model is unavailable", body = ErrorBody),
    )
)]
async fn get_order(
    State(pool): State<Pool>,
    PathText(order_id): PathText,
    params: Result<Query<OrderParams>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(params) = params?;
    crate::text_input::printable("order id", &order_id).map_err(ApiError::BadRequest)?;
    let min_version =
        params.min_version.as_deref().map(|text| parse_bounded("min_version", text, 0, i64::MAX)).transpose()?;
    let deadline = Instant::now() + MIN_VERSION_WAIT;
    loop {
        let order = find_order(&pool, &order_id).await?;
        let fresh = match (&order, min_version) {
            (_, None) => true,
            // The order's own version, as the command API returned it: read-your-writes.
            (Some(order), Some(wanted)) => order.order_version >= wanted,
            (None, Some(_)) => false,
        };
        if fresh || Instant::now() >= deadline {
            return match order {
                Some(order) => {
                    let mut response = Json(order).into_response();
                    response
                        .headers_mut()
                        .insert(FRESH_HEADER, HeaderValue::from_static(if fresh { "true" } else { "false" }));
                    Ok(response)
                }
                None => Err(ApiError::NotFound(match min_version {
                    Some(wanted) => format!(
                        "order {order_id} not found (waited {} s for version {wanted})",
                        MIN_VERSION_WAIT.as_secs()
                    ),
                    None => format!("order {order_id} not found"),
                })),
            };
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}

/// Orders from the read model, filtered and paged.
#[utoipa::path(
    get,
    path = "/orders",
    tag = "read model",
    params(ListParams),
    responses(
        (status = 200, description = "One page of orders", body = OrderPage),
        (status = 400, description = "A bad filter, page or limit", body = ErrorBody),
        (status = 503, description = "The read model is unavailable", body = ErrorBody),
    )
)]
async fn get_orders(
    State(pool): State<Pool>,
    params: Result<Query<ListParams>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(params) = params?;
    let filter = validate(params)?;
    let (orders, has_more) = list_orders(&pool, &filter).await?;
    Ok(Json(OrderPage { orders, page: filter.page, limit: filter.limit, has_more }).into_response())
}

fn validate(params: ListParams) -> Result<OrderFilter, ApiError> {
    let customer_id = match params.customer_id {
        Some(id) if id.is_empty() || id.len() > MAX_CUSTOMER_ID_LEN => {
            return Err(ApiError::BadRequest(format!("customer_id must be 1 to {MAX_CUSTOMER_ID_LEN} characters long")))
        }
        Some(id) => {
            crate::text_input::printable("customer_id", &id).map_err(ApiError::BadRequest)?;
            Some(id)
        }
        None => None,
    };
    let status = params
        .status
        .map(|text| {
            OrderStatus::parse(&text).ok_or_else(|| {
                let known: Vec<&str> = OrderStatus::ALL.iter().map(|status| status.as_str()).collect();
                ApiError::BadRequest(format!("status {text:?} is not one of {}", known.join(", ")))
            })
        })
        .transpose()?;
    let page = params.page.as_deref().map(|text| parse_bounded("page", text, 1, MAX_PAGE)).transpose()?.unwrap_or(1);
    let limit = params
        .limit
        .as_deref()
        .map(|text| parse_bounded("limit", text, 1, MAX_LIMIT))
        .transpose()?
        .unwrap_or(DEFAULT_LIMIT);
    Ok(OrderFilter { customer_id, status, page, limit })
}

fn parse_bounded(name: &str, text: &str, min: i64, max: i64) -> Result<i64, ApiError> {
    text.parse::<i64>()
        .ok()
        .filter(|value| (min..=max).contains(value))
        .ok_or_else(|| ApiError::BadRequest(format!("{name} must be an integer from {min} to {max}, got {text:?}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(customer_id: Option<&str>, status: Option<&str>, page: Option<&str>, limit: Option<&str>) -> ListParams {
        ListParams {
            customer_id: customer_id.map(str::to_string),
            status: status.map(str::to_string),
            page: page.map(str::to_string),
            limit: limit.map(str::to_string),
        }
    }

    fn refusal(params: ListParams) -> String {
        match validate(params) {
            Err(ApiError::BadRequest(message)) => message,
            other => panic!("expected a 400, got {other:?}"),
        }
    }

    #[test]
    fn listing_parameters_default_and_parse() {
        let filter = validate(ListParams::default()).unwrap();
        assert_eq!(filter, OrderFilter { customer_id: None, status: None, page: 1, limit: DEFAULT_LIMIT });

        let filter = validate(params(Some("c-1"), Some("CANCELLED"), Some("3"), Some("100"))).unwrap();
        assert_eq!(
            filter,
            OrderFilter { customer_id: Some("c-1".into()), status: Some(OrderStatus::Cancelled), page: 3, limit: 100 }
        );
    }

    #[test]
    fn bad_listing_parameters_are_refused_with_what_was_wrong() {
        assert_eq!(
            refusal(params(None, None, None, Some("101"))),
            "limit must be an integer from 1 to 100, got \"101\""
        );
        assert_eq!(refusal(params(None, None, None, Some("0"))), "limit must be an integer from 1 to 100, got \"0\"");
        assert_eq!(
            refusal(params(None, None, Some("x"), None)),
            "page must be an integer from 1 to 1000000, got \"x\""
        );
        assert!(
            refusal(params(None, Some("shipped"), None, None)).starts_with("status \"shipped\" is not one of PLACED")
        );
        assert_eq!(refusal(params(Some(""), None, None, None)), "customer_id must be 1 to 200 characters long");
    }
}
