//! HTTP commands: `POST /orders`, `POST /orders/{id}/cancel`, and the operators'
//! `POST /admin/orders/{id}/intervention` (the admin bearer token, checked and audited as on the
//! admin port). Every error is JSON
//! `{"error": "..."}` with a status that says whose fault it is.

use axum::extract::rejection::JsonRejection;
use axum::extract::{DefaultBodyLimit, FromRequest, Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::middleware::from_fn_with_state;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use schemas::CodecError;
use serde::de::DeserializeOwned;
use utoipa::{OpenApi, ToSchema};

use super::aggregate::AcceptedStatus;
use super::commands::{CommandError, OrderAccepted};
use super::event_store::EventStoreError;
use super::request::{AddressRequest, ItemRequest, PlaceOrderRequest};
use super::trace::TraceParent;
use super::OrderService;
use crate::admin::audit::AdminAction;
use crate::admin::auth::require_admin_token;
use crate::error_body::{error_response, ErrorBody};
use crate::path_text::PathText;
use crate::text_input::free_text;

/// Far above any valid order (100 items of bounded fields); larger bodies get 413.
const MAX_BODY_BYTES: usize = 64 * 1024;
const MAX_IDEMPOTENCY_KEY_LEN: usize = 255;
/// Order ids are UUIDs; anything longer cannot name an order.
const MAX_ORDER_ID_LEN: usize = 64;

/// The OpenAPI description of [`routes`].
#[derive(OpenApi)]
#[openapi(
    paths(place_order, cancel_order, intervene),
    components(schemas(
        PlaceOrderRequest,
        ItemRequest,
        AddressRequest,
        InterventionRequest,
        InterventionAction,
        OrderAccepted,
        AcceptedStatus,
        ErrorBody
    ))
)]
pub struct OrderCommandsDoc;

pub fn routes(state: OrderService) -> Router {
    let operators_only = from_fn_with_state(state.admin_token.clone(), require_admin_token);
    Router::new()
        .route("/orders", post(place_order))
        .route("/orders/{id}/cancel", post(cancel_order))
        .route("/admin/orders/{id}/intervention", post(intervene).route_layer(operators_only))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(state)
}

/// Places an order. Its saga runs asynchronously: follow it with `GET /orders/{id}`.
#[utoipa::path(
    post,
    path = "/orders",
    tag = "orders",
    request_body = PlaceOrderRequest,
    params(
        ("Idempotency-Key" = Option<String>, Header, description = "Retries with the same key and body get the first answer (scoped to the customer)"),
        ("traceparent" = Option<String>, Header, description = "W3C trace context, continued into the saga's events"),
    ),
    responses(
        (status = 202, description = "Accepted: the order is placed and its saga starts", body = OrderAccepted, links(
            ("GetOrder" = (operation_id = "get_order", parameters(("id" = "$response.body#/order_id")))),
            ("CancelOrder" = (operation_id = "cancel_order", parameters(("id" = "$response.body#/order_id")))),
            ("Intervene" = (operation_id = "intervene", parameters(("id" = "$response.body#/order_id")))),
        )),
        (status = 400, description = "Malformed JSON or a bad Idempotency-Key", body = ErrorBody),
        (status = 409, description = "A request with this Idempotency-Key is still being processed", body = ErrorBody),
        (status = 413, description = "The body is larger than 64 KiB", body = ErrorBody),
        (status = 415, description = "The body is not application/json", body = ErrorBody),
        (status = 422, description = "A field is missing or wrong, or the Idempotency-Key was used for another request", body = ErrorBody),
        (status = 500, description = "The order store failed", body = ErrorBody),
        (status = 503, description = "PostgreSQL or the schema registry is unavailable", body = ErrorBody),
    )
)]
async fn place_order(
    State(service): State<OrderService>,
    headers: HeaderMap,
    JsonBody(request): JsonBody<PlaceOrderRequest>,
) -> Result<(StatusCode, Json<OrderAccepted>), ApiError> {
    let placed = request.validate().map_err(|e| ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, e.to_string()))?;
    let idempotency_key = idempotency_key(&headers)?;
    let trace = trace_of(&headers);
    let accepted = service.place_order(placed, idempotency_key, &trace).await?;
    Ok((StatusCode::ACCEPTED, Json(accepted)))
}

/// Asks for the cancellation of an order; the saga compensates what was done (docs/saga.md).
#[utoipa::path(
    post,
    path = "/orders/{id}/cancel",
    tag = "orders",
    params(
        ("id" = String, Path, pattern = r"^[^\x00-\x1f\x7f-\x9f]+$", description = "The order id `POST /orders` returned"),
        ("traceparent" = Option<String>, Header, description = "W3C trace context"),
    ),
    responses(
        (status = 202, description = "Accepted: the cancellation is requested", body = OrderAccepted),
        (status = 400, description = "The id holds control characters or is not UTF-8", body = ErrorBody),
        (status = 404, description = "No such order", body = ErrorBody),
        (status = 409, description = "Already cancelled, confirmed, or cancelling; or a concurrent command won", body = ErrorBody),
        (status = 500, description = "The order store failed", body = ErrorBody),
        (status = 503, description = "PostgreSQL or the schema registry is unavailable", body = ErrorBody),
    )
)]
async fn cancel_order(
    State(service): State<OrderService>,
    PathText(order_id): PathText,
    headers: HeaderMap,
) -> Result<(StatusCode, Json<OrderAccepted>), ApiError> {
    check_order_id(&order_id)?;
    let accepted = service.request_cancellation(&order_id, &trace_of(&headers)).await?;
    Ok((StatusCode::ACCEPTED, Json(accepted)))
}

/// An operator's action on a parked order: `retry_compensations` or `resolve`, with a note.
#[derive(Debug, serde::Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct InterventionRequest {
    action: InterventionAction,
    /// Why, in 1 to 2000 bytes.
    #[schema(min_length = 1, max_length = 2000, pattern = r"^[^\x00]*[^\s\x00][^\x00]*$")]
    note: String,
    /// Who acts, in 1 to 255 bytes.
    #[schema(min_length = 1, max_length = 255, pattern = r"^[^\x00]*[^\s\x00][^\x00]*$")]
    operator: String,
}

/// Retry the parked order's outstanding compensations, or settle it as it stands; anything else
/// is refused (422) when the body is read.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
enum InterventionAction {
    RetryCompensations,
    Resolve,
}

impl InterventionAction {
    /// The OrderInterventionRequested action the participants read.
    fn as_str(self) -> &'static str {
        match self {
            InterventionAction::RetryCompensations => crate::participants::RETRY_COMPENSATIONS,
            InterventionAction::Resolve => crate::participants::RESOLVE,
        }
    }
}
const MAX_NOTE_LEN: usize = 2_000;

/// An operator's action on an order parked in REQUIRES_INTERVENTION: retry its compensations or
/// resolve it with a note. Audited.
#[utoipa::path(
    post,
    path = "/admin/orders/{id}/intervention",
    tag = "operators",
    security(("admin_token" = [])),
    request_body = InterventionRequest,
    params(
        ("id" = String, Path, pattern = r"^[^\x00-\x1f\x7f-\x9f]+$", description = "The parked order's id"),
        ("traceparent" = Option<String>, Header, description = "W3C trace context"),
    ),
    responses(
        (status = 202, description = "Accepted: the intervention is requested", body = OrderAccepted),
        (status = 400, description = "Malformed JSON, or an id with control characters or not UTF-8", body = ErrorBody),
        (status = 401, description = "Missing or wrong admin token", body = ErrorBody),
        (status = 404, description = "No such order", body = ErrorBody),
        (status = 409, description = "The order is not waiting for intervention, or a concurrent command won", body = ErrorBody),
        (status = 413, description = "The body is larger than 64 KiB", body = ErrorBody),
        (status = 415, description = "The body is not application/json", body = ErrorBody),
        (status = 422, description = "An unknown action or a missing field, or a note or operator that is blank, too long or holds a NUL", body = ErrorBody),
        (status = 500, description = "The order store failed", body = ErrorBody),
        (status = 503, description = "No admin token is configured, or PostgreSQL or the registry is unavailable", body = ErrorBody),
    )
)]
async fn intervene(
    State(service): State<OrderService>,
    PathText(order_id): PathText,
    headers: HeaderMap,
    JsonBody(request): JsonBody<InterventionRequest>,
) -> Result<(StatusCode, Json<OrderAccepted>), ApiError> {
    let operator = request.operator.clone();
    let action = format!("order.{}", request.action.as_str());
    let result = intervention(&service, &order_id, &headers, request).await;
    let outcome = match &result {
        Ok(_) => "accepted".to_string(),
        Err(error) => format!("refused {}", error.status.as_u16()),
    };
    let named = free_text("operator", &operator, MAX_IDEMPOTENCY_KEY_LEN).is_ok();
    let operator = if named { operator.as_str() } else { "unknown" };
    AdminAction { operator, action: &action, ids: &order_id, outcome: &outcome }.emit();
    result
}

async fn intervention(
    service: &OrderService,
    order_id: &str,
    headers: &HeaderMap,
    request: InterventionRequest,
) -> Result<(StatusCode, Json<OrderAccepted>), ApiError> {
    check_note_and_operator(&request)?;
    check_order_id(order_id)?;
    let action = request.action.as_str().to_string();
    let requested = schemas::OrderInterventionRequested { action, note: request.note, operator: request.operator };
    let accepted = service.request_intervention(order_id, requested, &trace_of(headers)).await?;
    Ok((StatusCode::ACCEPTED, Json(accepted)))
}

/// A note and an operator: 422 otherwise. Both go into the event store's jsonb, which cannot
/// hold a NUL: without this check, a 500.
fn check_note_and_operator(request: &InterventionRequest) -> Result<(), ApiError> {
    let unprocessable = |message: String| ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, message);
    free_text("note", &request.note, MAX_NOTE_LEN).map_err(unprocessable)?;
    free_text("operator", &request.operator, MAX_IDEMPOTENCY_KEY_LEN).map_err(unprocessable)
}

/// An order id from the path: printable (400), and no longer than any id we hand out (404).
fn check_order_id(order_id: &str) -> Result<(), ApiError> {
    crate::text_input::printable("order id", order_id)
        .map_err(|message| ApiError::new(StatusCode::BAD_REQUEST, message))?;
    if order_id.len() > MAX_ORDER_ID_LEN {
        return Err(CommandError::NotFound(order_id.to_owned()).into());
    }
    Ok(())
}

fn idempotency_key(headers: &HeaderMap) -> Result<Option<&str>, ApiError> {
    let Some(value) = headers.get("idempotency-key") else { return Ok(None) };
    value
        .to_str()
        .ok()
        .filter(|key| (1..=MAX_IDEMPOTENCY_KEY_LEN).contains(&key.len()) && key.bytes().all(|b| b.is_ascii_graphic()))
        .map(Some)
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                format!("Idempotency-Key must be 1 to {MAX_IDEMPOTENCY_KEY_LEN} visible ASCII characters"),
            )
        })
}

fn trace_of(headers: &HeaderMap) -> TraceParent {
    TraceParent::continue_or_start(headers.get("traceparent").and_then(|value| value.to_str().ok()))
}

/// `Json<T>` whose rejections (malformed JSON, wrong types, missing content type, too large)
/// are JSON errors like every other answer.
pub struct JsonBody<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        match Json::<T>::from_request(request, state).await {
            Ok(Json(value)) => Ok(JsonBody(value)),
            Err(rejection) => Err(rejection.into()),
        }
    }
}

/// An error answer: the status and a message for the caller.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    message: String,
}

impl ApiError {
    fn new(status: StatusCode, message: impl Into<String>) -> Self {
        ApiError { status, message: message.into() }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        error_response(self.status, self.message)
    }
}

impl From<JsonRejection> for ApiError {
    fn from(rejection: JsonRejection) -> Self {
        ApiError::new(rejection.status(), rejection.body_text())
    }
}

impl From<CommandError> for ApiError {
    fn from(error: CommandError) -> Self {
        let status = match &error {
            CommandError::NotFound(_) => StatusCode::NOT_FOUND,
            CommandError::KeyReused => StatusCode::UNPROCESSABLE_ENTITY,
            CommandError::NotParked { .. } => StatusCode::CONFLICT,
            CommandError::Rejected(_) | CommandError::InProgress => StatusCode::CONFLICT,
            CommandError::Store(EventStoreError::ConcurrencyConflict { .. }) => StatusCode::CONFLICT,
            CommandError::Encode(CodecError::Registry(_)) | CommandError::Pool(_) => StatusCode::SERVICE_UNAVAILABLE,
            CommandError::Encode(_) | CommandError::Store(_) | CommandError::StoredResponse { .. } => {
                StatusCode::INTERNAL_SERVER_ERROR
            }
        };
        if status.is_server_error() {
            tracing::error!(error = %error, "order command failed");
        }
        let message = match &error {
            // Internal detail stays in the log.
            CommandError::Store(EventStoreError::Database(_)) => "the order store failed; retry later".to_string(),
            _ => error.to_string(),
        };
        ApiError::new(status, message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_actions_are_the_ones_the_participants_read() {
        for action in [crate::participants::RETRY_COMPENSATIONS, crate::participants::RESOLVE] {
            let parsed: InterventionAction = serde_json::from_value(serde_json::json!(action)).unwrap();
            assert_eq!(parsed.as_str(), action);
        }
        assert!(serde_json::from_value::<InterventionAction>(serde_json::json!("delete")).is_err());
    }

    fn refusal(note: &str, operator: &str) -> Option<String> {
        let request =
            InterventionRequest { action: InterventionAction::Resolve, note: note.into(), operator: operator.into() };
        check_note_and_operator(&request).err().map(|error| {
            assert_eq!(error.status, StatusCode::UNPROCESSABLE_ENTITY);
            error.message
        })
    }

    #[test]
    fn an_intervention_needs_a_note_and_an_operator_without_nul() {
        assert_eq!(refusal("refunded by hand\nticket 42", "alice"), None);
        assert_eq!(refusal(" ", "alice").as_deref(), Some("note must be 1 to 2000 bytes of text, not blank"));
        assert!(refusal("a\0b", "alice").is_some(), "PostgreSQL's jsonb cannot hold a NUL: a 422, not a 500");
        assert!(refusal("n", "al\0ice").is_some());
        assert!(refusal("n", &"o".repeat(256)).is_some());
    }
}
