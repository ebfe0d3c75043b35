//! The order service against real PostgreSQL, Redis and the schema registry: HTTP commands,
//! event store versions and snapshots, outbox rows in wire format, idempotency keys.

use std::time::Duration;

use integration_tests::stack::{postgres_config, redis_url, registry_with_saga_schemas, unique};
use operators::idempotency::{AsyncIdempotencyGuard, Claim};
use pipeline::order_service::aggregate::{replay, AcceptedStatus};
use pipeline::order_service::event_store::{self, EventStoreError};
use pipeline::order_service::idempotency::{guard_config, request_hash, scoped_key};
use pipeline::order_service::outbox::sweep_outbox;
use pipeline::order_service::request::PlaceOrderRequest;
use pipeline::order_service::{routes, OrderService};
use reqwest::StatusCode;
use schemas::{parse_wire, Payload, RegistryResolver, SagaCodec, SagaEvent};
use serde_json::{json, Value};

struct Harness {
    base: String,
    http: reqwest::Client,
    db: tokio_postgres::Client,
    redis: redis::aio::ConnectionManager,
    codec: SagaCodec,
    service: OrderService,
}

/// The operators' bearer token of every harness.
const ADMIN_TOKEN: &str = "test-admin-token";

/// Migrates, then serves the order API with `snapshot_every` on an ephemeral port.
async fn start(snapshot_every: u32) -> Harness {
    let config = postgres_config();
    let pool = pipeline::db::pool(&config, 4).expect("postgres pool");
    pipeline::db::migrate(&pool).await.unwrap_or_else(|e| panic!("postgres is down or refuses the migrations: {e:#}"));
    let (db, connection) = tokio_postgres::connect(&config, tokio_postgres::NoTls)
        .await
        .unwrap_or_else(|e| panic!("postgres is down: {e} (`dev/stack status`)"));
    tokio::spawn(connection);

    let redis_client = redis::Client::open(redis_url()).expect("redis url");
    let redis = redis::aio::ConnectionManager::new(redis_client)
        .await
        .unwrap_or_else(|e| panic!("redis is down or refuses connections: {e} (`dev/stack status`)"));

    let codec = SagaCodec::new(RegistryResolver::new(registry_with_saga_schemas().await));

    let service = OrderService::new(pool, redis.clone(), codec.clone(), snapshot_every)
        .with_admin_token(Some(ADMIN_TOKEN.into()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("ephemeral port");
    let base = format!("http://{}", listener.local_addr().expect("bound address"));
    let app = routes(service.clone());
    tokio::spawn(async move { axum::serve(listener, app).await });
    Harness { base, http: reqwest::Client::new(), db, redis, codec, service }
}

fn order_body(customer_id: &str) -> Value {
    json!({
        "customer_id": customer_id,
        "items": [
            {"product_id": "p-widget", "quantity": 2, "unit_price": 1250},
            {"product_id": "p-gadget", "quantity": 1, "unit_price": 999}
        ],
        "shipping_address": {"line1": "1 Main St", "city": "Berlin", "postal_code": "10115", "country": "DE"}
    })
}

impl Harness {
    async fn place(&self, body: &Value, idempotency_key: Option<&str>) -> (StatusCode, Value) {
        let mut request = self.http.post(format!("{}/orders", self.base)).json(body);
        if let Some(key) = idempotency_key {
            request = request.header("Idempotency-Key", key);
        }
        let response = request.send().await.expect("order API answers");
        let status = response.status();
        (status, response.json().await.expect("JSON body"))
    }

    async fn place_ok(&self, customer_id: &str) -> String {
        let (status, body) = self.place(&order_body(customer_id), None).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{body}");
        body["order_id"].as_str().expect("order_id").to_string()
    }

    async fn cancel(&self, order_id: &str) -> (StatusCode, Value) {
        let response =
            self.http.post(format!("{}/orders/{order_id}/cancel", self.base)).send().await.expect("order API answers");
        let status = response.status();
        (status, response.json().await.expect("JSON body"))
    }

    async fn intervene(&self, order_id: &str, token: Option<&str>, body: &Value) -> (StatusCode, Value) {
        let mut request = self.http.post(format!("{}/admin/orders/{order_id}/intervention", self.base)).json(body);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let response = request.send().await.expect("order API answers");
        let status = response.status();
        (status, response.json().await.expect("JSON body"))
    }

    async fn events_of(&self, order_id: &str) -> Vec<StoredEvent> {
        let rows = self
            .db
            .query(
                "select version, event_type, payload::text, metadata::text, event_id::text, aggregate_type \
                 from event_store where aggregate_id = $1 order by version",
                &[&order_id],
            )
            .await
            .expect("event_store query");
        rows.iter()
            .map(|row| {
                assert_eq!(row.get::<_, &str>(5), "order");
                StoredEvent {
                    version: row.get(0),
                    event_type: row.get(1),
                    payload: serde_json::from_str(row.get(2)).expect("payload JSON"),
                    metadata: serde_json::from_str(row.get(3)).expect("metadata JSON"),
                    event_id: row.get(4),
                }
            })
            .collect()
    }

    async fn events_of_customer(&self, customer_id: &str) -> i64 {
        self.db
            .query_one("select count(*) from event_store where payload->>'customer_id' = $1", &[&customer_id])
            .await
            .expect("count")
            .get(0)
    }

    async fn outbox_of(&self, order_id: &str) -> Vec<OutboxRow> {
        let rows = self
            .db
            .query(
                "select id::text, event_type, payload, correlation_id, causation_id, traceparent, aggregate_type \
                 from outbox where aggregate_id = $1 order by created_at",
                &[&order_id],
            )
            .await
            .expect("outbox query");
        rows.iter()
            .map(|row| OutboxRow {
                id: row.get(0),
                event_type: row.get(1),
                payload: row.get(2),
                correlation_id: row.get(3),
                causation_id: row.get(4),
                traceparent: row.get(5),
                aggregate_type: row.get(6),
            })
            .collect()
    }

    async fn decode(&self, payload: &[u8]) -> SagaEvent {
        let (schema_id, _) = parse_wire(payload).expect("outbox payload is in Confluent wire format");
        assert!(schema_id > 0, "schema id from the registry");
        self.codec.decode(payload).await.expect("outbox payload decodes with its registered schema")
    }
}

struct StoredEvent {
    version: i32,
    event_type: String,
    payload: Value,
    metadata: Value,
    event_id: String,
}

struct OutboxRow {
    id: String,
    event_type: String,
    payload: Vec<u8>,
    correlation_id: Option<String>,
    causation_id: Option<String>,
    traceparent: Option<String>,
    aggregate_type: String,
}

#[tokio::test]
async fn placing_an_order_records_version_1_and_an_outbox_row_in_wire_format() {
    let h = start(100).await;
    let customer = unique("customer");
    let incoming_trace = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let response = h
        .http
        .post(format!("{}/orders", h.base))
        .header("traceparent", incoming_trace)
        .json(&order_body(&customer))
        .send()
        .await
        .expect("order API answers");
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    let body: Value = response.json().await.expect("JSON");
    assert_eq!((body["status"].as_str(), body["version"].as_i64()), (Some("PLACED"), Some(1)));
    let order_id = body["order_id"].as_str().expect("order_id").to_string();
    assert!(uuid::Uuid::parse_str(&order_id).is_ok(), "order id {order_id} is a UUID");

    let events = h.events_of(&order_id).await;
    assert_eq!(events.len(), 1);
    let StoredEvent { version, event_type, payload, metadata, event_id } = &events[0];
    assert_eq!((*version, event_type.as_str()), (1, "OrderPlaced"));
    assert_eq!(payload["customer_id"], customer.as_str());
    assert_eq!(payload["total_cents"], 2 * 1250 + 999);
    assert_eq!(metadata["order_id"], order_id.as_str());
    assert_eq!(metadata["causation_id"], Value::Null);

    let outbox = h.outbox_of(&order_id).await;
    assert_eq!(outbox.len(), 1);
    let row = &outbox[0];
    assert_eq!(&row.id, event_id, "outbox id is the event id");
    assert_eq!((row.aggregate_type.as_str(), row.event_type.as_str()), ("order", "OrderPlaced"));
    assert_eq!(row.correlation_id.as_deref(), metadata["correlation_id"].as_str());
    assert_eq!(row.causation_id, None);
    let row_version: i64 =
        h.db.query_one("select aggregate_version from outbox where id = $1::text::uuid", &[&row.id])
            .await
            .expect("outbox row")
            .get(0);
    assert_eq!(row_version, 1, "the outbox row carries the order's version, for read-your-writes");
    let trace = row.traceparent.as_deref().expect("traceparent");
    assert!(trace.starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-"), "continues the caller's trace: {trace}");
    assert_ne!(trace, incoming_trace, "with our own span id");

    let event = h.decode(&row.payload).await;
    assert_eq!(event.envelope.order_id, order_id);
    assert_eq!(&event.envelope.event_id, event_id);
    let Payload::OrderPlaced(placed) = event.payload else { panic!("expected OrderPlaced, got {:?}", event.payload) };
    assert_eq!(placed.customer_id, customer);
    assert_eq!(placed.total_cents, 3499);
    assert_eq!(placed.items.len(), 2);
    assert_eq!(placed.items[0].unit_price_cents, 1250);
    assert_eq!(placed.shipping_address.country, "DE");
}

#[tokio::test]
async fn a_retry_with_the_same_idempotency_key_returns_the_first_response_and_records_nothing() {
    let h = start(100).await;
    let customer = unique("customer");
    let key = unique("idem");
    let (first_status, first) = h.place(&order_body(&customer), Some(&key)).await;
    assert_eq!(first_status, StatusCode::ACCEPTED, "{first}");
    let (retry_status, retry) = h.place(&order_body(&customer), Some(&key)).await;
    assert_eq!(retry_status, StatusCode::ACCEPTED);
    assert_eq!(retry, first, "the retry gets the first response");

    let mut redis = h.redis.clone();
    let redis_key = pipeline::order_service::idempotency::redis_key(&scoped_key(&customer, &key));
    let cached: String = redis::cmd("GET").arg(&redis_key).query_async(&mut redis).await.expect("GET");
    let cached: Value = serde_json::from_str(&cached).expect("JSON record");
    assert_eq!(cached["state"], "COMPLETED");
    assert_eq!(cached["result"], first);
    let ttl_ms: i64 = redis::cmd("PTTL").arg(&redis_key).query_async(&mut redis).await.expect("PTTL");
    assert!(ttl_ms > 6 * 24 * 3600 * 1000 && ttl_ms <= 7 * 24 * 3600 * 1000, "COMPLETED lives 7 days, got {ttl_ms} ms");

    // Redis forgets: PostgreSQL's order_requests still answers with the first response.
    let _: i64 = redis::cmd("DEL").arg(&redis_key).query_async(&mut redis).await.expect("DEL");
    let (late_status, late) = h.place(&order_body(&customer), Some(&key)).await;
    assert_eq!(late_status, StatusCode::ACCEPTED);
    assert_eq!(late, first);

    let order_id = first["order_id"].as_str().expect("order_id");
    assert_eq!(h.events_of_customer(&customer).await, 1, "exactly one event for the customer");
    assert_eq!(h.events_of(order_id).await.len(), 1);
    assert_eq!(h.outbox_of(order_id).await.len(), 1);
    let stored: String = h
        .db
        .query_one("select order_id from order_requests where idempotency_key = $1", &[&scoped_key(&customer, &key)])
        .await
        .expect("order_requests row")
        .get(0);
    assert_eq!(stored, order_id);
}

#[tokio::test]
async fn a_duplicate_while_the_first_is_processing_gets_409() {
    let h = start(100).await;
    let customer = unique("customer");
    let key = unique("idem");
    let guard = AsyncIdempotencyGuard::new(h.redis.clone(), guard_config());
    // What the service stores for this customer's key and this body.
    let (scoped, hash) = (scoped_key(&customer, &key), hash_of(&order_body(&customer)));
    let Ok(Claim::Acquired(lease)) = guard.claim(&scoped, Some(&hash)).await else {
        panic!("a fresh key must be acquired")
    };
    assert_eq!(guard.claim(&scoped, Some(&hash)).await, Ok(Claim::InProgress));

    let (status, body) = h.place(&order_body(&customer), Some(&key)).await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert!(body["error"].as_str().expect("error message").contains("still being processed"), "{body}");
    assert_eq!(h.events_of_customer(&customer).await, 0, "nothing recorded while the first is running");

    guard.release(&lease).await.expect("release");
    let (status, body) = h.place(&order_body(&customer), Some(&key)).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    assert_eq!(h.events_of_customer(&customer).await, 1);
}

fn hash_of(body: &Value) -> String {
    let request: PlaceOrderRequest = serde_json::from_value(body.clone()).expect("a request body");
    request_hash(&request.validate().expect("a valid order"))
}

#[tokio::test]
async fn an_idempotency_key_belongs_to_one_customer_and_one_request_body() {
    let h = start(100).await;
    let (alice, bob) = (unique("alice"), unique("bob"));
    let key = unique("shared-key");
    let (status, first) = h.place(&order_body(&alice), Some(&key)).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{first}");

    // Another customer with the same key places an order of their own.
    let (status, other) = h.place(&order_body(&bob), Some(&key)).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{other}");
    assert_ne!(other["order_id"], first["order_id"], "never another customer's response");

    // The same customer and key with another body: refused, and nothing recorded.
    let mut changed = order_body(&alice);
    changed["items"][0]["quantity"] = json!(5);
    let (status, body) = h.place(&changed, Some(&key)).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert!(body["error"].as_str().unwrap_or_default().contains("different request"), "{body}");

    // Also when Redis has forgotten the key: PostgreSQL keeps the hash.
    let mut redis = h.redis.clone();
    let _: i64 = redis::cmd("DEL")
        .arg(pipeline::order_service::idempotency::redis_key(&scoped_key(&alice, &key)))
        .query_async(&mut redis)
        .await
        .expect("DEL");
    let (status, _) = h.place(&changed, Some(&key)).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(h.events_of_customer(&alice).await, 1, "one order for alice");
}

/// Makes one field of a valid order body wrong.
type Spoil = fn(&mut Value);

#[tokio::test]
async fn bad_requests_get_4xx_with_a_message_naming_the_problem() {
    let h = start(100).await;
    let customer = unique("customer");
    let post_raw = |body: &'static str, content_type: Option<&'static str>| {
        let mut request = h.http.post(format!("{}/orders", h.base)).body(body);
        if let Some(content_type) = content_type {
            request = request.header("content-type", content_type);
        }
        async move {
            let response = request.send().await.expect("order API answers");
            let status = response.status();
            (status, response.json::<Value>().await.expect("errors are JSON"))
        }
    };
    let (status, body) = post_raw("{\"customer_id\": ", Some("application/json")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body["error"].as_str().expect("message").contains("JSON"), "{body}");

    // A NUL byte cannot reach PostgreSQL (it would answer 500).
    for path in ["%00", "a%00b", "%1F"] {
        let (status, body) = h.cancel(path).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "cancel {path}: {body}");
        assert!(body["error"].as_str().expect("message").contains("control characters"), "{body}");
        let (status, body) =
            h.intervene(path, Some("wrong"), &json!({"action": "resolve", "note": "n", "operator": "o"})).await;
        assert!(status.is_client_error(), "intervene {path}: {status} {body}");
    }

    let (status, body) = post_raw("{}", None).await;
    assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert!(body["error"].as_str().expect("message").contains("Content-Type"), "{body}");

    let (status, body) = post_raw("{\"customer_id\": \"c\"}", Some("application/json")).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(body["error"].as_str().expect("message").contains("missing field `items`"), "{body}");

    let cases: [(&str, Spoil, &str); 6] = [
        ("empty items", |b| b["items"] = json!([]), "items: must contain at least one item"),
        ("zero quantity", |b| b["items"][1]["quantity"] = json!(0), "items[1].quantity"),
        ("negative price", |b| b["items"][0]["unit_price"] = json!(-1), "items[0].unit_price"),
        ("blank customer", |b| b["customer_id"] = json!("   "), "customer_id: must not be empty"),
        ("long product id", |b| b["items"][0]["product_id"] = json!("p".repeat(65)), "items[0].product_id"),
        ("bad country", |b| b["shipping_address"]["country"] = json!("Germany"), "shipping_address.country"),
    ];
    for (name, spoil, expected) in cases {
        let mut body = order_body(&customer);
        spoil(&mut body);
        let (status, answer) = h.place(&body, Some(&unique("idem"))).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{name}: {answer}");
        let message = answer["error"].as_str().expect("message");
        assert!(message.contains(expected), "{name}: {message:?} must name {expected:?}");
    }

    let (status, body) = h.place(&order_body(&customer), Some(&"k".repeat(256))).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body["error"].as_str().expect("message").contains("Idempotency-Key"), "{body}");

    assert_eq!(h.events_of_customer(&customer).await, 0, "no bad request records anything");
}

#[tokio::test]
async fn cancelling_appends_version_2_and_a_second_cancel_or_an_unknown_order_is_refused() {
    let h = start(100).await;
    let customer = unique("customer");
    let order_id = h.place_ok(&customer).await;

    let (status, body) = h.cancel(&order_id).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    assert_eq!(
        body,
        json!({"order_id": order_id, "status": "CANCELLATION_REQUESTED", "version": 2}),
        "the version to read your write at"
    );

    let events = h.events_of(&order_id).await;
    let types: Vec<(i32, &str)> = events.iter().map(|e| (e.version, e.event_type.as_str())).collect();
    assert_eq!(types, [(1, "OrderPlaced"), (2, "OrderCancellationRequested")]);
    assert_eq!(events[1].payload["customer_id"], customer.as_str());
    assert_eq!(events[1].metadata["correlation_id"], events[0].metadata["correlation_id"], "same saga run");

    let outbox = h.outbox_of(&order_id).await;
    assert_eq!(outbox.len(), 2);
    let cancel = outbox.iter().find(|row| row.event_type == "OrderCancellationRequested").expect("outbox row");
    assert_eq!(cancel.id, events[1].event_id);
    let event = h.decode(&cancel.payload).await;
    assert_eq!(event.envelope.order_id, order_id);
    let Payload::OrderCancellationRequested(requested) = event.payload else {
        panic!("expected OrderCancellationRequested, got {:?}", event.payload)
    };
    assert_eq!(requested.customer_id, customer);

    let (status, body) = h.cancel(&order_id).await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert!(body["error"].as_str().expect("message").contains("already requested"), "{body}");
    assert_eq!(h.events_of(&order_id).await.len(), 2, "a refused cancel records nothing");

    let (status, body) = h.cancel(&uuid::Uuid::new_v4().to_string()).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(body["error"].as_str().expect("message").contains("not found"), "{body}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stale_expected_version_is_a_conflict_never_a_lost_write() {
    let h = start(100).await;
    let order_id = h.place_ok(&unique("customer")).await;
    let loaded = h.service.load(&order_id).await.expect("load").expect("order exists");
    assert_eq!(loaded.version, 1);
    let cancel = loaded.order.request_cancellation("someone", 0).expect("placed orders can be cancelled");

    let pool = pipeline::db::pool(&postgres_config(), 1).expect("pool");
    let mut db = pool.get().await.expect("postgres");
    for stale in [0, 5] {
        let tx = db.transaction().await.expect("transaction");
        let result = event_store::append(&tx, &order_id, stale, std::slice::from_ref(&cancel), "trace").await;
        match result {
            Err(EventStoreError::ConcurrencyConflict { expected, actual, .. }) => {
                assert_eq!((expected, actual), (stale, 1))
            }
            other => panic!("expected version {stale} must conflict, got {other:?}"),
        }
        tx.rollback().await.expect("rollback");
    }

    // Two cancels at once: one appends version 2, the other gets 409; nothing is overwritten.
    let (a, b) = tokio::join!(h.cancel(&order_id), h.cancel(&order_id));
    let mut statuses = [a.0, b.0];
    statuses.sort();
    assert_eq!(statuses, [StatusCode::ACCEPTED, StatusCode::CONFLICT], "{a:?} {b:?}");
    let versions: Vec<i32> = h.events_of(&order_id).await.iter().map(|e| e.version).collect();
    assert_eq!(versions, [1, 2]);
}

/// (version, state) of an order's snapshot.
async fn snapshot(db: &tokio_postgres::Client, order_id: &str) -> Option<(i32, Value)> {
    db.query_opt("select version, state::text from snapshots where aggregate_id = $1", &[&order_id])
        .await
        .expect("snapshots query")
        .map(|row| (row.get::<_, i32>(0), serde_json::from_str::<Value>(row.get(1)).expect("state JSON")))
}

#[tokio::test]
async fn snapshots_are_written_every_n_events_and_load_equals_a_full_replay() {
    // Every event snapshots: placing writes one at version 1.
    let every_event = start(1).await;
    let order_id = every_event.place_ok(&unique("customer")).await;
    let (version, state) = snapshot(&every_event.db, &order_id).await.expect("snapshot at version 1");
    assert_eq!(version, 1);
    assert_eq!(state["status"], "PLACED");
    assert_eq!(state["order_id"], order_id.as_str());

    // With the default interval the cancel (version 2) is replayed on top of that snapshot.
    let rarely = start(100).await;
    assert_eq!(rarely.cancel(&order_id).await.0, StatusCode::ACCEPTED);
    assert_eq!(snapshot(&rarely.db, &order_id).await.map(|s| s.0), Some(1), "no snapshot at version 2");
    let loaded = rarely.service.load(&order_id).await.expect("load").expect("order exists");
    assert_eq!(loaded.version, 2);
    assert_eq!(loaded.order.status, AcceptedStatus::CancellationRequested);
    let events = event_store::load_events(&rarely.db, &order_id).await.expect("events");
    assert_eq!(events.len(), 2);
    assert_eq!(replay(None, &events), Some(loaded.order.clone()), "snapshot + replay equals a full replay");

    // The load really starts from the snapshot: without event 1 it still knows the order.
    rarely
        .db
        .execute("delete from event_store where aggregate_id = $1 and version = 1", &[&order_id])
        .await
        .expect("delete event 1");
    let from_snapshot = rarely.service.load(&order_id).await.expect("load").expect("order exists");
    assert_eq!(from_snapshot, loaded);

    // Every second event: the cancel at version 2 crosses the interval.
    let every_second = start(2).await;
    let order_id = every_second.place_ok(&unique("customer")).await;
    assert_eq!(snapshot(&every_second.db, &order_id).await, None, "no snapshot at version 1");
    assert_eq!(every_second.cancel(&order_id).await.0, StatusCode::ACCEPTED);
    let (version, state) = snapshot(&every_second.db, &order_id).await.expect("snapshot at version 2");
    assert_eq!(version, 2);
    assert_eq!(state["status"], "CANCELLATION_REQUESTED");
}

#[tokio::test]
async fn the_sweeper_deletes_only_outbox_rows_older_than_the_retention() {
    let h = start(100).await;
    let old = h.place_ok(&unique("customer")).await;
    let fresh = h.place_ok(&unique("customer")).await;
    // Updates are skipped by the connector, so ageing a row does not publish anything.
    h.db.execute("update outbox set created_at = now() - interval '2 hours' where aggregate_id = $1", &[&old])
        .await
        .expect("age the row");

    let pool = pipeline::db::pool(&postgres_config(), 1).expect("pool");
    let deleted = sweep_outbox(&pool, Duration::from_secs(3600)).await.expect("sweep");
    assert!(deleted >= 1, "the aged row is deleted");
    assert_eq!(h.outbox_of(&old).await.len(), 0);
    assert_eq!(h.outbox_of(&fresh).await.len(), 1, "rows inside the retention stay");
    assert_eq!(h.events_of(&old).await.len(), 1, "the event store keeps every event");
}

#[tokio::test]
async fn an_operator_acts_on_a_parked_order_only_with_the_token_and_the_action_is_recorded() {
    let h = start(100).await;
    let order_id = h.place_ok(&unique("customer")).await;
    let resolve = json!({"action": "resolve", "note": "refunded by hand, ticket 4711", "operator": "ops-anna"});

    let (status, body) = h.intervene(&order_id, None, &resolve).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    let (status, _) = h.intervene(&order_id, Some("wrong-token"), &resolve).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, body) =
        h.intervene(&order_id, Some(ADMIN_TOKEN), &json!({"action": "delete", "note": "x", "operator": "ops"})).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    let (status, body) =
        h.intervene(&order_id, Some(ADMIN_TOKEN), &json!({"action": "resolve", "note": " ", "operator": "ops"})).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");

    // Not parked (the read model has no REQUIRES_INTERVENTION for it): refused, nothing recorded.
    let (status, body) = h.intervene(&order_id, Some(ADMIN_TOKEN), &resolve).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert!(body["error"].as_str().unwrap_or_default().contains("not waiting for intervention"), "{body}");
    assert_eq!(h.events_of(&order_id).await.len(), 1);

    // Parked, as the projector would show it: the action is an event of the order, with who and why.
    h.db.execute(
        "insert into order_view (order_id, status, version, updated_at) values ($1, 'REQUIRES_INTERVENTION', 3, now()) \
         on conflict (order_id) do update set status = 'REQUIRES_INTERVENTION'",
        &[&order_id],
    )
    .await
    .expect("park the order in the read model");
    let (status, body) = h.intervene(&order_id, Some(ADMIN_TOKEN), &resolve).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    assert_eq!(body["version"], 2);
    let events = h.events_of(&order_id).await;
    let recorded = events.last().expect("an event");
    assert_eq!((recorded.version, recorded.event_type.as_str()), (2, "OrderInterventionRequested"));
    assert_eq!(recorded.payload, resolve, "audited: the action, the note and the operator");
    assert_eq!(h.outbox_of(&order_id).await.len(), 2, "published through the outbox");
}

/// Rewrites an order's stored `OrderPlaced` (version 1 of the aggregate) to what the order
/// service wrote before OrderPlaced v2: no currency, coupon, line2 or items[].unit_price, and
/// `schema_version` 1.
async fn store_as_written_by_v1(db: &tokio_postgres::Client, order_id: &str) {
    let row = db
        .query_one(
            "select payload::text, metadata::text from event_store where aggregate_id = $1 and version = 1",
            &[&order_id],
        )
        .await
        .expect("the OrderPlaced row");
    let mut payload: Value = serde_json::from_str(row.get(0)).expect("payload JSON");
    let mut metadata: Value = serde_json::from_str(row.get(1)).expect("metadata JSON");
    let placed = payload.as_object_mut().expect("an object");
    placed.remove("currency");
    placed.remove("coupon_code");
    placed["shipping_address"].as_object_mut().expect("an address").remove("line2");
    for item in placed["items"].as_array_mut().expect("items") {
        item.as_object_mut().expect("an item").remove("unit_price");
    }
    metadata["schema_version"] = json!(1);
    db.execute(
        "update event_store set payload = $2::text::jsonb, metadata = $3::text::jsonb where aggregate_id = $1 and version = 1",
        &[&order_id, &payload.to_string(), &metadata.to_string()],
    )
    .await
    .expect("rewrite the OrderPlaced row");
}

#[tokio::test]
async fn events_stored_as_v1_replay_after_the_upgrade_from_snapshot_plus_events() {
    // A snapshot at version 1, then the cancel (version 2) replayed on top of it.
    let harness = start(1).await;
    let order_id = harness.place_ok(&unique("customer")).await;
    store_as_written_by_v1(&harness.db, &order_id).await;
    let rarely = start(100).await;
    assert_eq!(rarely.cancel(&order_id).await.0, StatusCode::ACCEPTED);

    let loaded = rarely.service.load(&order_id).await.expect("load").expect("order exists");
    assert_eq!((loaded.version, loaded.order.status), (2, AcceptedStatus::CancellationRequested));
    assert_eq!(loaded.order.total_cents, 2 * 1_250 + 999);

    let events = event_store::load_events(&rarely.db, &order_id).await.expect("events");
    assert_eq!(
        replay(None, &events),
        Some(loaded.order.clone()),
        "snapshot + replay equals a full replay of v1 + v2 events"
    );
    let placed = events[0].to_saga_event();
    let Payload::OrderPlaced(placed) = &placed.payload else { panic!("event 1 is {placed:?}") };
    assert_eq!(events[0].envelope.schema_version, 2, "upcast on read");
    let prices: Vec<Option<schemas::Money>> = placed.items.iter().map(|item| item.unit_price.clone()).collect();
    assert_eq!(prices, [Some(schemas::Money::new(1_250, "EUR")), Some(schemas::Money::new(999, "EUR"))]);
    assert_eq!((placed.currency.as_str(), placed.coupon_code.as_deref()), ("EUR", None));
    assert_eq!(placed.shipping_address.city, "Berlin");
}
