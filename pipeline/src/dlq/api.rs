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
use serde_json::{json, Value};

use super::discard::discard_one;
use super::outcome::Outcome;
use super::render::{entry_json, payload};
use super::reprocess::{reprocess_many, reprocess_one, ReprocessError};
use super::republish::Republisher;
use super::request::{
    actor, bulk_filter, entry_id, json_body, list_filter, BadRequest, BulkReprocessBody, DiscardBody, ListParams, ReprocessBody,
};
use super::store::{self, Entry, StoreError};
use crate::admin::audit::{ids_field, AdminAction};
use crate::admin::auth::{require_admin_token, AdminToken};
use crate::codec::EventSerde;

/// Far above any body these routes take (at most 500 ids and a reason).
const MAX_BODY_BYTES: usize = 64 * 1024;

/// What the handlers share; cheap to clone.
#[derive(Clone)]
pub struct DlqAdmin {
    pool: Pool,
    serde: EventSerde,
    republisher: Arc<Republisher>,
}

impl DlqAdmin {
    pub fn new(pool: Pool, serde: EventSerde, republisher: Arc<Republisher>) -> Self {
        DlqAdmin { pool, serde, republisher }
    }
}

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
        (status, Json(json!({ "error": message }))).into_response()
    }
}

impl From<BadRequest> for ApiError {
    fn from(BadRequest(message): BadRequest) -> Self {
        ApiError::BadRequest(message)
    }
}

impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> Self {
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
            ReprocessError::Unpublishable { .. } | ReprocessError::NotMarked { .. } => ApiError::Internal(error.to_string()),
        }
    }
}

fn refused(id: i64, outcome: Outcome) -> Option<ApiError> {
    match outcome {
        Outcome::Done => None,
        Outcome::NotFound => Some(ApiError::NotFound(format!("no DLQ entry {id}"))),
        Outcome::NotPending { status } => Some(ApiError::Conflict(format!("DLQ entry {id} is {status}, not PENDING"))),
    }
}

/// One audit line for a call, then its answer.
fn audited(operator: &str, action: &str, ids: &str, result: Result<Value, ApiError>) -> Result<Json<Value>, ApiError> {
    let outcome = match &result {
        Ok(_) => "ok",
        Err(error) => error.outcome(),
    };
    AdminAction { operator, action, ids, outcome }.emit();
    result.map(Json)
}

/// The entries as JSON, payloads decoded off the executor (a writer schema may be fetched).
async fn render(serde: &EventSerde, entries: Vec<Entry>, with_headers: bool) -> Result<Vec<Value>, ApiError> {
    let serde = serde.clone();
    tokio::task::spawn_blocking(move || {
        entries
            .iter()
            .map(|entry| entry_json(entry, payload(&serde, &entry.original_topic, entry.value.as_deref()), with_headers))
            .collect()
    })
    .await
    .map_err(|e| ApiError::Internal(format!("rendering DLQ entries failed: {e}")))
}

async fn list(State(admin): State<DlqAdmin>, params: Result<Query<ListParams>, QueryRejection>) -> Result<Json<Value>, ApiError> {
    let result = async {
        let Query(params) = params?;
        let filter = list_filter(params)?;
        let (entries, has_more) = store::list(&admin.pool, &filter).await?;
        let next_cursor = if has_more { entries.last().map(|entry| entry.id) } else { None };
        let entries = render(&admin.serde, entries, false).await?;
        Ok(json!({ "entries": entries, "limit": filter.limit, "next_cursor": next_cursor }))
    };
    audited("unknown", "dlq.list", "", result.await)
}

async fn inspect(State(admin): State<DlqAdmin>, id: Result<Path<String>, PathRejection>) -> Result<Json<Value>, ApiError> {
    let id = match id.map_err(ApiError::from).and_then(|Path(text)| Ok(entry_id(&text)?)) {
        Ok(id) => id,
        Err(error) => return audited("unknown", "dlq.inspect", "", Err(error)),
    };
    let result = async {
        let entry = store::find(&admin.pool, id).await?.ok_or_else(|| ApiError::NotFound(format!("no DLQ entry {id}")))?;
        let mut rendered = render(&admin.serde, vec![entry], true).await?;
        rendered.pop().ok_or_else(|| ApiError::Internal(format!("DLQ entry {id} did not render")))
    };
    audited("unknown", "dlq.inspect", &id.to_string(), result.await)
}

async fn reprocess(
    State(admin): State<DlqAdmin>,
    id: Result<Path<String>, PathRejection>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, ApiError> {
    let parsed = parse_one(id, body, |bytes| json_body::<ReprocessBody>(bytes, true).and_then(|body| actor(body.operator.as_deref(), body.reason.as_deref(), false)));
    let (id, actor) = match parsed {
        Ok(parsed) => parsed,
        Err((ids, error)) => return audited("unknown", "dlq.reprocess", &ids, Err(error)),
    };
    let result = match reprocess_one(&admin.pool, &admin.republisher, id, &actor).await {
        Ok(outcome) => refused(id, outcome).map_or_else(|| Ok(json!({ "id": id, "status": "REPROCESSED" })), Err),
        Err(error) => Err(error.into()),
    };
    audited(&actor.operator, "dlq.reprocess", &id.to_string(), result)
}

async fn discard(
    State(admin): State<DlqAdmin>,
    id: Result<Path<String>, PathRejection>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, ApiError> {
    let parsed = parse_one(id, body, |bytes| json_body::<DiscardBody>(bytes, false).and_then(|body| actor(body.operator.as_deref(), body.reason.as_deref(), true)));
    let (id, actor) = match parsed {
        Ok(parsed) => parsed,
        Err((ids, error)) => return audited("unknown", "dlq.discard", &ids, Err(error)),
    };
    let result = match discard_one(&admin.pool, id, &actor).await {
        Ok(outcome) => refused(id, outcome).map_or_else(|| Ok(json!({ "id": id, "status": "DISCARDED" })), Err),
        Err(error) => Err(error.into()),
    };
    audited(&actor.operator, "dlq.discard", &id.to_string(), result)
}

async fn reprocess_matching(State(admin): State<DlqAdmin>, body: Result<Bytes, BytesRejection>) -> Result<Json<Value>, ApiError> {
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
    let result = json!({
        "reprocessed": outcome.reprocessed.len(),
        "skipped": outcome.skipped.len(),
        "failed": outcome.failed.len(),
        "ids": outcome,
    });
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
