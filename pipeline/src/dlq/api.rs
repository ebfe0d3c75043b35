//! The DLQ admin API on the admin port, every route behind the admin bearer token:
//! `GET /admin/dlq`, `GET /admin/dlq/{id}`, `POST /admin/dlq/{id}/reprocess`,
//! `POST /admin/dlq/reprocess` and `POST /admin/dlq/{id}/discard`. Every refusal is a 4xx with
//! `{"error": "..."}`; every call leaves one audit line.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection, QueryRejection};
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::StatusCode;
use axum::middleware::from_fn_with_state;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use deadpool_postgres::Pool;
use schemas::SagaCodec;
use serde::Serialize;
use utoipa::{OpenApi, ToSchema};

use super::discard::discard_one;
use super::entry::{ErrorClass, Status};
use super::outcome::Outcome;
use super::render::{entry_view, payload, BytesEncoding, EntryView, HeaderView, HeadersView, PayloadEncoding};
use super::reprocess::{reprocess_many, reprocess_one, BulkOutcome, ReprocessError};
use super::republish::Republisher;
use super::request::{
    actor, bulk_filter, entry_id, json_body, list_filter, BadRequest, BulkReprocessBody, DiscardBody, ListParams,
    ReprocessBody,
};
use super::store::{self, DlqStoreError, Entry};
use crate::admin::audit::{ids_field, AdminAction};
use crate::admin::auth::{require_admin_token, AdminToken};
use crate::error_body::{error_response, ErrorBody};

/// Far above any body these routes take (at most 500 ids and a reason).
const MAX_BODY_BYTES: usize = 64 * 1024;

/// What the handlers share; cheap to clone.
#[derive(Clone)]
pub struct DlqAdmin {
    pool: Pool,
    codec: SagaCodec,
    republisher: Arc<Republisher>,
}

impl DlqAdmin {
    pub fn new(pool: Pool, codec: SagaCodec, republisher: Arc<Republisher>) -> Self {
        DlqAdmin { pool, codec, republisher }
    }
}

/// The OpenAPI description of [`routes`].
#[derive(OpenApi)]
#[openapi(
    paths(list, inspect, reprocess, reprocess_matching, discard),
    components(schemas(
        DlqPage,
        EntryView,
        HeadersView,
        HeaderView,
        BytesEncoding,
        PayloadEncoding,
        ErrorClass,
        Status,
        StatusChanged,
        BulkReprocessed,
        BulkOutcome,
        ReprocessBody,
        BulkReprocessBody,
        DiscardBody,
        ErrorBody
    ))
)]
pub struct DlqApiDoc;

pub fn routes(admin: DlqAdmin, token: AdminToken) -> Router {
    Router::new()
        .route("/admin/dlq", get(list))
        .route("/admin/dlq/reprocess", post(reprocess_matching))
        .route("/admin/dlq/{id}", get(inspect))
        .route("/admin/dlq/{id}/reprocess", post(reprocess))
        .route("/admin/dlq/{id}/discard", post(discard))
        // Checked before any extractor, so an unauthenticated caller gets 401 whatever it sent.
        .route_layer(from_fn_with_state(token, require_admin_token))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(admin)
}

/// An answer other than success, as JSON.
#[derive(Debug)]
enum ApiError {
    BadRequest(String),
    NotFound(String),
    Conflict(String),
    /// PostgreSQL or Kafka is down or failing: try again later.
    Unavailable(String),
    Internal(String),
    /// What axum refused before the handler ran (a body too large, say), with its own status.
    Rejected(StatusCode, String),
}

impl ApiError {
    /// The audit trail's word for it.
    fn outcome(&self) -> &'static str {
        match self {
            ApiError::BadRequest(_) | ApiError::Rejected(..) => "bad_request",
            ApiError::NotFound(_) => "not_found",
            ApiError::Conflict(_) => "not_pending",
            ApiError::Unavailable(_) => "unavailable",
            ApiError::Internal(_) => "failed",
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, message) = match self {
            ApiError::BadRequest(message) => (StatusCode::BAD_REQUEST, message),
            ApiError::NotFound(message) => (StatusCode::NOT_FOUND, message),
            ApiError::Conflict(message) => (StatusCode::CONFLICT, message),
            ApiError::Unavailable(message) => {
                tracing::warn!(error = %message, "DLQ admin call failed");
                (StatusCode::SERVICE_UNAVAILABLE, message)
            }
            ApiError::Internal(message) => {
                tracing::error!(error = %message, "DLQ admin call failed");
                (StatusCode::INTERNAL_SERVER_ERROR, message)
            }
            ApiError::Rejected(status, message) => (status, message),
        };
        error_response(status, message)
    }
}

impl From<BadRequest> for ApiError {
    fn from(BadRequest(message): BadRequest) -> Self {
        ApiError::BadRequest(message)
    }
}

impl From<DlqStoreError> for ApiError {
    fn from(error: DlqStoreError) -> Self {
        ApiError::Unavailable(format!("the DLQ index is unavailable: {error}"))
    }
}

impl From<QueryRejection> for ApiError {
    fn from(rejection: QueryRejection) -> Self {
        ApiError::BadRequest(rejection.body_text())
    }
}

impl From<PathRejection> for ApiError {
    fn from(rejection: PathRejection) -> Self {
        ApiError::BadRequest(rejection.body_text())
    }
}

impl From<BytesRejection> for ApiError {
    fn from(rejection: BytesRejection) -> Self {
        ApiError::Rejected(rejection.status(), rejection.body_text())
    }
}

impl From<ReprocessError> for ApiError {
    fn from(error: ReprocessError) -> Self {
        match error {
            ReprocessError::Store(_) | ReprocessError::Publish(_) => ApiError::Unavailable(error.to_string()),
            ReprocessError::Unpublishable { .. } | ReprocessError::NotMarked { .. } => {
                ApiError::Internal(error.to_string())
            }
        }
    }
}

/// One page of `GET /admin/dlq`, oldest first.
#[derive(Debug, Serialize, ToSchema)]
struct DlqPage {
    entries: Vec<EntryView>,
    limit: i64,
    /// Pass as `cursor` for the next page; null on the last one.
    next_cursor: Option<i64>,
}

/// An entry reprocessed or discarded, as asked.
#[derive(Debug, Serialize, ToSchema)]
struct StatusChanged {
    id: i64,
    #[schema(value_type = Status)]
    status: &'static str,
}

/// What `POST /admin/dlq/reprocess` did: counts, and the ids of each kind.
#[derive(Debug, Serialize, ToSchema)]
struct BulkReprocessed {
    reprocessed: usize,
    skipped: usize,
    failed: usize,
    ids: BulkOutcome,
}

fn refused(id: i64, outcome: Outcome) -> Option<ApiError> {
    match outcome {
        Outcome::Done => None,
        Outcome::NotFound => Some(ApiError::NotFound(format!("no DLQ entry {id}"))),
        Outcome::NotPending { status } => Some(ApiError::Conflict(format!("DLQ entry {id} is {status}, not PENDING"))),
    }
}

/// One audit line for a call, then its answer.
fn audited<T>(operator: &str, action: &str, ids: &str, result: Result<T, ApiError>) -> Result<Json<T>, ApiError> {
    let outcome = match &result {
        Ok(_) => "ok",
        Err(error) => error.outcome(),
    };
    AdminAction { operator, action, ids, outcome }.emit();
    result.map(Json)
}

/// The entries as the listing shows them (without headers), payloads decoded (a writer schema
/// may be fetched).
async fn listed(codec: &SagaCodec, entries: &[Entry]) -> Vec<EntryView> {
    let mut views = Vec::with_capacity(entries.len());
    for entry in entries {
        views.push(entry_view(entry, payload(codec, entry.value.as_deref()).await, false));
    }
    views
}

/// Dead letters, filtered, a page at a time (keyset: pass `next_cursor` as `cursor`).
#[utoipa::path(
    get,
    path = "/admin/dlq",
    tag = "dlq",
    security(("admin_token" = [])),
    params(ListParams),
    responses(
        (status = 200, description = "One page of entries (without their headers)", body = DlqPage),
        (status = 400, description = "A bad filter, limit or cursor", body = ErrorBody),
        (status = 401, description = "Missing or wrong admin token", body = ErrorBody),
        (status = 503, description = "No admin token is configured, or the DLQ index is unavailable", body = ErrorBody),
    )
)]
async fn list(
    State(admin): State<DlqAdmin>,
    params: Result<Query<ListParams>, QueryRejection>,
) -> Result<Json<DlqPage>, ApiError> {
    let result = async {
        let Query(params) = params?;
        let filter = list_filter(params)?;
        let (entries, has_more) = store::list(&admin.pool, &filter).await?;
        let next_cursor = if has_more { entries.last().map(|entry| entry.id) } else { None };
        let entries = listed(&admin.codec, &entries).await;
        Ok(DlqPage { entries, limit: filter.limit, next_cursor })
    };
    audited("unknown", "dlq.list", "", result.await)
}

/// One entry, with its original headers.
#[utoipa::path(
    get,
    path = "/admin/dlq/{id}",
    tag = "dlq",
    security(("admin_token" = [])),
    params(("id" = i64, Path, minimum = 1, description = "The entry id")),
    responses(
        (status = 200, description = "The entry", body = EntryView),
        (status = 400, description = "The id is not a positive integer", body = ErrorBody),
        (status = 401, description = "Missing or wrong admin token", body = ErrorBody),
        (status = 404, description = "No such entry", body = ErrorBody),
        (status = 503, description = "No admin token is configured, or the DLQ index is unavailable", body = ErrorBody),
    )
)]
async fn inspect(
    State(admin): State<DlqAdmin>,
    id: Result<Path<String>, PathRejection>,
) -> Result<Json<EntryView>, ApiError> {
    let id = match id.map_err(ApiError::from).and_then(|Path(text)| Ok(entry_id(&text)?)) {
        Ok(id) => id,
        Err(error) => return audited("unknown", "dlq.inspect", "", Err(error)),
    };
    let result = async {
        let entry =
            store::find(&admin.pool, id).await?.ok_or_else(|| ApiError::NotFound(format!("no DLQ entry {id}")))?;
        Ok(entry_view(&entry, payload(&admin.codec, entry.value.as_deref()).await, true))
    };
    audited("unknown", "dlq.inspect", &id.to_string(), result.await)
}

/// Publishes a PENDING entry's record again, byte for byte plus `dlq.reprocessed.from`, to its
/// original topic and partition, in a Kafka transaction: once, however often it is asked.
#[utoipa::path(
    post,
    path = "/admin/dlq/{id}/reprocess",
    tag = "dlq",
    security(("admin_token" = [])),
    params(("id" = i64, Path, minimum = 1, description = "The entry id")),
    request_body(content = Option<ReprocessBody>, description = "Optional: who acts and why"),
    responses(
        (status = 200, description = "Reprocessed", body = StatusChanged),
        (status = 400, description = "A bad id or body", body = ErrorBody),
        (status = 401, description = "Missing or wrong admin token", body = ErrorBody),
        (status = 404, description = "No such entry", body = ErrorBody),
        (status = 409, description = "The entry is not PENDING (reprocessed or discarded already)", body = ErrorBody),
        (status = 413, description = "The body is larger than 64 KiB", body = ErrorBody),
        (status = 500, description = "The entry cannot be published, or was published and not marked", body = ErrorBody),
        (status = 503, description = "No admin token is configured, or the DLQ index or Kafka is unavailable", body = ErrorBody),
    )
)]
async fn reprocess(
    State(admin): State<DlqAdmin>,
    id: Result<Path<String>, PathRejection>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<StatusChanged>, ApiError> {
    let parsed = parse_one(id, body, |bytes| {
        json_body::<ReprocessBody>(bytes, true)
            .and_then(|body| actor(body.operator.as_deref(), body.reason.as_deref(), false))
    });
    let (id, actor) = match parsed {
        Ok(parsed) => parsed,
        Err((ids, error)) => return audited("unknown", "dlq.reprocess", &ids, Err(error)),
    };
    let result = match reprocess_one(&admin.pool, &admin.republisher, id, &actor).await {
        Ok(outcome) => {
            refused(id, outcome).map_or_else(|| Ok(StatusChanged { id, status: Status::Reprocessed.as_str() }), Err)
        }
        Err(error) => Err(error.into()),
    };
    audited(&actor.operator, "dlq.reprocess", &id.to_string(), result)
}

/// Gives up on a PENDING entry, saying why.
#[utoipa::path(
    post,
    path = "/admin/dlq/{id}/discard",
    tag = "dlq",
    security(("admin_token" = [])),
    params(("id" = i64, Path, minimum = 1, description = "The entry id")),
    request_body = DiscardBody,
    responses(
        (status = 200, description = "Discarded", body = StatusChanged),
        (status = 400, description = "A bad id or body, or no reason", body = ErrorBody),
        (status = 401, description = "Missing or wrong admin token", body = ErrorBody),
        (status = 404, description = "No such entry", body = ErrorBody),
        (status = 409, description = "The entry is not PENDING (reprocessed or discarded already)", body = ErrorBody),
        (status = 413, description = "The body is larger than 64 KiB", body = ErrorBody),
        (status = 503, description = "No admin token is configured, or the DLQ index is unavailable", body = ErrorBody),
    )
)]
async fn discard(
    State(admin): State<DlqAdmin>,
    id: Result<Path<String>, PathRejection>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<StatusChanged>, ApiError> {
    let parsed = parse_one(id, body, |bytes| {
        json_body::<DiscardBody>(bytes, false)
            .and_then(|body| actor(body.operator.as_deref(), body.reason.as_deref(), true))
    });
    let (id, actor) = match parsed {
        Ok(parsed) => parsed,
        Err((ids, error)) => return audited("unknown", "dlq.discard", &ids, Err(error)),
    };
    let result = match discard_one(&admin.pool, id, &actor).await {
        Ok(outcome) => {
            refused(id, outcome).map_or_else(|| Ok(StatusChanged { id, status: Status::Discarded.as_str() }), Err)
        }
        Err(error) => Err(error.into()),
    };
    audited(&actor.operator, "dlq.discard", &id.to_string(), result)
}

/// Reprocesses the PENDING entries that match, oldest first, each in a transaction of its own.
#[utoipa::path(
    post,
    path = "/admin/dlq/reprocess",
    tag = "dlq",
    security(("admin_token" = [])),
    request_body = BulkReprocessBody,
    responses(
        (status = 200, description = "What was reprocessed, skipped and failed", body = BulkReprocessed),
        (status = 400, description = "A bad body", body = ErrorBody),
        (status = 401, description = "Missing or wrong admin token", body = ErrorBody),
        (status = 413, description = "The body is larger than 64 KiB", body = ErrorBody),
        (status = 503, description = "No admin token is configured, or the DLQ index is unavailable", body = ErrorBody),
    )
)]
async fn reprocess_matching(
    State(admin): State<DlqAdmin>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<BulkReprocessed>, ApiError> {
    let parsed = body.map_err(ApiError::from).and_then(|bytes| {
        let body: BulkReprocessBody = json_body(&bytes, false)?;
        Ok((bulk_filter(&body)?, actor(body.operator.as_deref(), body.reason.as_deref(), false)?))
    });
    let (filter, actor) = match parsed {
        Ok(parsed) => parsed,
        Err(error) => return audited("unknown", "dlq.reprocess_many", "", Err(error)),
    };
    let outcome = match reprocess_many(&admin.pool, &admin.republisher, &filter, &actor).await {
        Ok(outcome) => outcome,
        Err(error) => return audited(&actor.operator, "dlq.reprocess_many", "", Err(error.into())),
    };
    let ids = ids_field(&outcome.reprocessed);
    let result = BulkReprocessed {
        reprocessed: outcome.reprocessed.len(),
        skipped: outcome.skipped.len(),
        failed: outcome.failed.len(),
        ids: outcome,
    };
    audited(&actor.operator, "dlq.reprocess_many", &ids, Ok(result))
}

/// The id from the path and what the body says; on a refusal, the id text for the audit line.
fn parse_one<T>(
    id: Result<Path<String>, PathRejection>,
    body: Result<Bytes, BytesRejection>,
    read_body: impl FnOnce(&[u8]) -> Result<T, BadRequest>,
) -> Result<(i64, T), (String, ApiError)> {
    let Path(text) = id.map_err(|rejection| (String::new(), ApiError::from(rejection)))?;
    let id = entry_id(&text).map_err(|refusal| (String::new(), ApiError::from(refusal)))?;
    let bytes = body.map_err(|rejection| (id.to_string(), ApiError::from(rejection)))?;
    let read = read_body(&bytes).map_err(|refusal| (id.to_string(), ApiError::from(refusal)))?;
    Ok((id, read))
}
