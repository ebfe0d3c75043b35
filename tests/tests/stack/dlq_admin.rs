//! The DLQ index and its admin API against the real stack: dead letters produced to a
//! `<unique>.dlq` topic with the runtime's `dlq.*` headers are indexed into PostgreSQL, listed
//! with filters and pages, inspected, reprocessed (exactly one copy on the original topic,
//! read_committed, however often and from however many admin instances it is asked), linked
//! when they fail again, and discarded; indexing them again changes nothing. Every admin route
//! refuses a missing or wrong token, and bad input is a 4xx with a JSON error. And with the four
//! saga participants: a permanent failure repaired and reprocessed through the API completes
//! the saga exactly once.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use integration_tests::kafka::{create_topic, key_on_partition, read_to_end, read_topic, Consumed};
use integration_tests::saga::{self, RunOptions, SagaRun};
use integration_tests::stack::{kafka_bootstrap, postgres_config, unique};
use operators::error::ProcessError;
use operators::record::{Header, OutputRecord, RawRecord};
use operators::runtime::{dead_letter_record, kafka_headers, FailureReason, REPROCESSED_FROM_HEADER};
use operators::serdes::Serde;
use pipeline::admin::auth::AdminToken;
use pipeline::dlq::{refresh_pending, routes, run_indexer, DlqAdmin, IndexerConfig, Republisher};
use pipeline::event_serde::EventSerde;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use reqwest::StatusCode;
use schemas::{Envelope, EventType, OrderConfirmed, Payload, SagaCodec, SagaEvent};
use serde_json::{json, Value};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

const TOKEN: &str = "dlq-test-token";
const WAIT: Duration = Duration::from_secs(60);
/// Every dead letter of the test sits on this partition, and so does every republished copy:
/// one partition is one order, so a copy seen last proves every earlier one is visible.
const PARTITION: i32 = 1;

async fn pool() -> deadpool_postgres::Pool {
    let pool = pipeline::db::pool(&postgres_config(), 8).expect("postgres pool");
    pipeline::db::migrate(&pool).await.unwrap_or_else(|e| panic!("postgres is down or refuses the migrations: {e:#}"));
    pool
}

/// An admin endpoint on an ephemeral port, as `pipeline admin` serves it, with its own
/// transactional producer.
struct Admin {
    base: String,
    http: reqwest::Client,
}

impl Admin {
    async fn start(pool: &deadpool_postgres::Pool, codec: &SagaCodec, token: Option<&str>) -> Self {
        let republisher = Republisher::new(&kafka_bootstrap(), &unique("dlq-admin-test"));
        let app = pipeline::admin::routes().merge(routes(
            DlqAdmin::new(pool.clone(), codec.clone(), republisher),
            AdminToken::new(token.map(str::to_string)),
        ));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("ephemeral port");
        let base = format!("http://{}", listener.local_addr().expect("bound address"));
        tokio::spawn(async move { axum::serve(listener, app).await });
        Admin { base, http: reqwest::Client::new() }
    }

    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        token: Option<&str>,
        body: Option<&str>,
    ) -> (StatusCode, Value) {
        let mut request = self.http.request(method, format!("{}{path}", self.base));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.header("content-type", "application/json").body(body.to_string());
        }
        let response = request.send().await.expect("the admin endpoint answers");
        let status = response.status();
        let text = response.text().await.expect("a body");
        let body = serde_json::from_str(&text).unwrap_or_else(|_| panic!("{status}: the body is not JSON: {text:?}"));
        (status, body)
    }

    async fn get(&self, path: &str) -> (StatusCode, Value) {
        self.call(reqwest::Method::GET, path, Some(TOKEN), None).await
    }

    async fn post(&self, path: &str, body: Value) -> (StatusCode, Value) {
        self.call(reqwest::Method::POST, path, Some(TOKEN), Some(&body.to_string())).await
    }

    /// Lists until `done` holds for the entries of `query` (one page), or fails after [`WAIT`].
    async fn wait_for_entries(&self, query: &str, done: impl Fn(&[Value]) -> bool) -> Vec<Value> {
        let deadline = Instant::now() + WAIT;
        loop {
            let (status, body) = self.get(&format!("/admin/dlq?{query}")).await;
            assert_eq!(status, StatusCode::OK, "{body}");
            let entries = body["entries"].as_array().cloned().unwrap_or_default();
            if done(&entries) {
                return entries;
            }
            assert!(Instant::now() < deadline, "the index did not get there within {WAIT:?}: {entries:?}");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

/// An indexer of this test's DLQ topics only, under a group of its own.
struct Indexer {
    group: String,
    stop: oneshot::Sender<()>,
    task: JoinHandle<anyhow::Result<()>>,
}

impl Indexer {
    fn start(pool: &deadpool_postgres::Pool, prefix: &str) -> Self {
        let group = unique("dlq-indexer-test");
        let config = IndexerConfig {
            group_id: group.clone(),
            topic_pattern: format!(r"^{prefix}.*\.dlq$"),
            commit_interval: Duration::from_millis(100),
            ..IndexerConfig::new(kafka_bootstrap())
        };
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(run_indexer(config, pool.clone(), async move {
            let _ = stopped.await;
        }));
        Indexer { group, stop, task }
    }

    async fn stop(self) {
        let _ = self.stop.send(());
        tokio::time::timeout(WAIT, self.task)
            .await
            .expect("the indexer stops")
            .expect("indexer task")
            .expect("indexer");
    }
}

/// The offset `group` committed on `topic`'s partition, if any.
fn committed_offset(group: &str, topic: &str, partition: i32) -> Option<i64> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", kafka_bootstrap())
        .set("group.id", group)
        .create()
        .expect("consumer");
    let mut list = TopicPartitionList::new();
    list.add_partition(topic, partition);
    let committed = consumer.committed_offsets(list, Duration::from_secs(10)).expect("committed offsets");
    match committed.find_partition(topic, partition).map(|p| p.offset()) {
        Some(Offset::Offset(offset)) => Some(offset),
        _ => None,
    }
}

fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).expect("clock after 1970").as_millis() as i64
}

/// A dead letter as the runtime writes it: the original record plus the dlq.* headers.
struct DeadLetter {
    key: Vec<u8>,
    value: Vec<u8>,
    /// The original record's headers.
    headers: Vec<Header>,
    class: &'static str,
    original_offset: i64,
}

impl DeadLetter {
    fn headers(&self, original_topic: &str) -> Vec<Header> {
        let mut headers = self.headers.clone();
        for (key, value) in [
            ("dlq.original.topic", original_topic.to_string()),
            ("dlq.original.partition", PARTITION.to_string()),
            ("dlq.original.offset", self.original_offset.to_string()),
            ("dlq.original.timestamp", "1700000000000".to_string()),
            ("dlq.consumer.group", "payment".to_string()),
            ("dlq.processor", "source".to_string()),
            ("dlq.error.class", self.class.to_string()),
            ("dlq.error.message", format!("{} failure of offset {}", self.class, self.original_offset)),
            ("dlq.attempts", "1".to_string()),
            ("dlq.failed.at", now_ms().to_string()),
        ] {
            headers.push(Header::new(key, value.into_bytes()));
        }
        headers
    }
}

async fn produce(producer: &FutureProducer, record: &OutputRecord) {
    let mut out = FutureRecord::<[u8], [u8]>::to(&record.topic).headers(kafka_headers(&record.headers));
    if let Some(partition) = record.partition {
        out = out.partition(partition);
    }
    if let Some(key) = record.key.as_deref() {
        out = out.key(key);
    }
    if let Some(value) = record.value.as_deref() {
        out = out.payload(value);
    }
    producer
        .send(out, Duration::from_secs(10))
        .await
        .unwrap_or_else(|(e, _)| panic!("kafka: producing to {} failed: {e}", record.topic));
}

fn original_headers() -> Vec<Header> {
    vec![
        Header::new("traceparent", b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".to_vec()),
        Header::new("binary", vec![0xff, 0x00, 0xfe]),
        Header::null("null-valued"),
    ]
}

fn header_pairs(headers: &[Header]) -> Vec<(String, Option<Vec<u8>>)> {
    headers.iter().map(|h| (h.key.clone(), h.value.clone())).collect()
}

fn ids(entries: &[Value]) -> Vec<i64> {
    entries.iter().map(|entry| entry["id"].as_i64().expect("an id")).collect()
}

fn copies_from(records: &[Consumed], id: i64) -> Vec<&Consumed> {
    let id = id.to_string();
    records.iter().filter(|record| record.header(REPROCESSED_FROM_HEADER) == Some(id.as_bytes())).collect()
}

fn metric(name: &str, label: Option<(&str, &str)>) -> f64 {
    prometheus::gather()
        .iter()
        .filter(|family| family.name() == name)
        .flat_map(|family| family.get_metric().iter())
        .filter(|metric| {
            label.is_none_or(|(key, value)| metric.get_label().iter().any(|l| l.name() == key && l.value() == value))
        })
        .map(
            |metric| {
                if metric.get_gauge().has_value() {
                    metric.get_gauge().value()
                } else {
                    metric.get_counter().value()
                }
            },
        )
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn dead_letters_are_indexed_listed_reprocessed_once_linked_and_discarded() {
    let bootstrap = kafka_bootstrap();
    let (pool, codec) = (pool().await, saga::saga_codec().await);
    let prefix = unique("dlqadmin");
    let original_topic = format!("{prefix}-orders");
    let dlq_topic = format!("{original_topic}.dlq");
    create_topic(&bootstrap, &original_topic, 3).await;
    create_topic(&bootstrap, &dlq_topic, 3).await;
    let producer: FutureProducer = ClientConfig::new().set("bootstrap.servers", &bootstrap).create().expect("producer");

    // Three poison records (not Avro), a saga event some processor refused, an exhausted transient.
    let event = SagaEvent::new(
        Envelope::new("order-good", "corr-good", now_ms()),
        Payload::OrderConfirmed(OrderConfirmed {
            customer_id: "c-1".into(),
            total_cents: 2_500,
            tracking_number: "TRK-1".into(),
        }),
    );
    let avro = codec.encode(schemas::ORDER_EVENTS, &event).await.expect("encoding a saga event");
    let letter = |key: &str, value: Vec<u8>, class, original_offset| DeadLetter {
        key: key.into(),
        value,
        headers: original_headers(),
        class,
        original_offset,
    };
    let letters = [
        letter("order-p1", b"\x00not avro at all".to_vec(), "poison", 10),
        letter("order-p2", b"{\"json\": true}".to_vec(), "poison", 11),
        letter("order-p3", vec![0xff, 0xfe, 0x00], "poison", 12),
        letter("order-good", avro.clone(), "permanent", 13),
        letter("order-t1", b"retried five times".to_vec(), "transient", 14),
    ];
    for dead in &letters {
        let record = OutputRecord {
            topic: dlq_topic.clone(),
            partition: Some(PARTITION),
            timestamp_ms: now_ms(),
            key: Some(dead.key.clone()),
            value: Some(dead.value.clone()),
            headers: dead.headers(&original_topic),
        };
        produce(&producer, &record).await;
    }

    let indexer = Indexer::start(&pool, &prefix);
    let admin = Admin::start(&pool, &codec, Some(TOKEN)).await;
    let other_admin = Admin::start(&pool, &codec, Some(TOKEN)).await;
    let of_topic = format!("topic={original_topic}");
    let all = admin.wait_for_entries(&of_topic, |entries| entries.len() == letters.len()).await;
    let id_of = |key: &str| {
        all.iter()
            .find(|entry| entry["key"] == key)
            .and_then(|entry| entry["id"].as_i64())
            .unwrap_or_else(|| panic!("no entry for {key}: {all:?}"))
    };
    let (p1, p2, p3, good, t1) =
        (id_of("order-p1"), id_of("order-p2"), id_of("order-p3"), id_of("order-good"), id_of("order-t1"));
    assert!(
        all.iter().all(|entry| entry["status"] == "PENDING" && entry["dlq_topic"] == dlq_topic.as_str()),
        "{all:?}"
    );

    // Filters and pages.
    let poison = admin.wait_for_entries(&format!("{of_topic}&error_class=poison&status=PENDING"), |_| true).await;
    assert_eq!(ids(&poison), vec![p1, p2, p3], "oldest first");
    let transient = admin.wait_for_entries(&format!("{of_topic}&error_class=transient"), |_| true).await;
    assert_eq!(ids(&transient), vec![t1]);
    let mut paged = Vec::new();
    let mut cursor: Option<i64> = None;
    let mut pages = 0;
    loop {
        let query = match cursor {
            Some(cursor) => format!("/admin/dlq?{of_topic}&limit=2&cursor={cursor}"),
            None => format!("/admin/dlq?{of_topic}&limit=2"),
        };
        let (status, body) = admin.get(&query).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let page = ids(body["entries"].as_array().expect("entries"));
        assert!(page.len() <= 2, "{body}");
        paged.extend(page);
        pages += 1;
        match body["next_cursor"].as_i64() {
            Some(next) => cursor = Some(next),
            None => break,
        }
    }
    assert_eq!((pages, paged), (3, ids(&all)), "three pages, each entry once, in order");

    // Inspect: the poison record in base64, the saga event as JSON, the original headers as they were.
    let (status, p1_entry) = admin.get(&format!("/admin/dlq/{p1}")).await;
    assert_eq!(status, StatusCode::OK, "{p1_entry}");
    assert_eq!(
        (p1_entry["payload_encoding"].as_str(), p1_entry["payload"].as_str()),
        (Some("base64"), Some(BASE64.encode(&letters[0].value).as_str()))
    );
    assert!(p1_entry["payload_decode_error"].is_string(), "{p1_entry}");
    assert_eq!(
        (
            p1_entry["error_class"].as_str(),
            p1_entry["original_offset"].as_i64(),
            p1_entry["original_partition"].as_i64()
        ),
        (Some("poison"), Some(10), Some(1))
    );
    assert_eq!((p1_entry["consumer_group"].as_str(), p1_entry["attempts"].as_i64()), (Some("payment"), Some(1)));
    assert_eq!(
        p1_entry["headers"],
        json!([
            {"key": "traceparent", "encoding": "utf8", "value": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"},
            {"key": "binary", "encoding": "base64", "value": "/wD+"},
            {"key": "null-valued", "encoding": "null", "value": null},
        ]),
        "the original headers, without the dlq.* ones"
    );
    let (_, good_entry) = admin.get(&format!("/admin/dlq/{good}")).await;
    assert_eq!(good_entry["payload_encoding"], "json", "{good_entry}");
    assert_eq!(good_entry["payload"]["envelope"]["event_id"], event.envelope.event_id.as_str(), "{good_entry}");

    // Reprocess p1 twice in a row, and the good one twice at once from two admin instances.
    let reprocessed_before = metric("dlq_reprocessed_total", None);
    let (status, body) =
        admin.post(&format!("/admin/dlq/{p1}/reprocess"), json!({"operator": "alice", "reason": "parser fixed"})).await;
    assert_eq!((status, body["status"].as_str()), (StatusCode::OK, Some("REPROCESSED")), "{body}");
    let (status, body) = admin.post(&format!("/admin/dlq/{p1}/reprocess"), json!({})).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert!(body["error"].as_str().is_some_and(|error| error.contains("REPROCESSED")), "{body}");
    let path = format!("/admin/dlq/{good}/reprocess");
    let ((first, _), (second, _)) = tokio::join!(
        admin.post(&path, json!({"operator": "bob"})),
        other_admin.post(&path, json!({"operator": "carol"}))
    );
    let mut statuses = [first, second];
    statuses.sort();
    assert_eq!(statuses, [StatusCode::OK, StatusCode::CONFLICT], "one of two concurrent reprocesses wins");
    // By filter, on the other instance: t1 goes, p1 is skipped. t1's copy comes last on the partition.
    let (status, counts) = other_admin.post("/admin/dlq/reprocess", json!({"ids": [t1, p1], "operator": "dave"})).await;
    assert_eq!(status, StatusCode::OK, "{counts}");
    assert_eq!(
        (counts["reprocessed"].as_i64(), counts["skipped"].as_i64(), counts["failed"].as_i64()),
        (Some(1), Some(1), Some(0)),
        "{counts}"
    );
    assert_eq!(metric("dlq_reprocessed_total", None) - reprocessed_before, 3.0);

    let published =
        read_topic(&bootstrap, &original_topic, "read_committed", WAIT, |records| !copies_from(records, t1).is_empty());
    assert_eq!(copies_from(&published, t1).len(), 1, "the last copy arrived: {published:?}");
    assert_eq!(published.len(), 3, "one copy each of p1, the good one and t1: {published:?}");
    let p1_copies = copies_from(&published, p1);
    assert_eq!(p1_copies.len(), 1, "{published:?}");
    let copy = p1_copies[0];
    assert_eq!(
        (copy.partition, copy.key.as_deref(), copy.value.as_deref()),
        (PARTITION, Some(&b"order-p1"[..]), Some(&letters[0].value[..]))
    );
    let mut expected = header_pairs(&original_headers());
    expected.push((REPROCESSED_FROM_HEADER.to_string(), Some(p1.to_string().into_bytes())));
    assert_eq!(copy.headers, expected, "the original headers byte for byte, plus the link");
    let good_copies = copies_from(&published, good);
    assert_eq!(
        (good_copies.len(), good_copies.first().and_then(|c| c.value.clone())),
        (1, Some(avro.clone())),
        "{published:?}"
    );
    let (_, p1_entry) = admin.get(&format!("/admin/dlq/{p1}")).await;
    assert_eq!(
        (p1_entry["status"].as_str(), p1_entry["status_changed_by"].as_str(), p1_entry["status_reason"].as_str()),
        (Some("REPROCESSED"), Some("alice"), Some("parser fixed"))
    );
    assert!(p1_entry["status_changed_at"].is_string(), "{p1_entry}");

    // p1's copy fails again: the runtime dead-letters it, and its new entry links to p1.
    let raw = RawRecord {
        topic: original_topic.clone(),
        partition: copy.partition,
        offset: copy.offset,
        timestamp_ms: now_ms(),
        key: copy.key.clone(),
        value: copy.value.clone(),
        headers: copy.headers.iter().map(|(key, value)| Header { key: key.clone(), value: value.clone() }).collect(),
    };
    let error = ProcessError::deserialization("still not avro").with_processor("decode");
    produce(&producer, &dead_letter_record(raw, "payment", &FailureReason::Process(&error), 1, now_ms())).await;
    let all = admin.wait_for_entries(&of_topic, |entries| entries.len() == letters.len() + 1).await;
    let again = all.last().expect("the new entry");
    assert_eq!(
        (again["reprocessed_from"].as_i64(), again["key"].as_str(), again["status"].as_str()),
        (Some(p1), Some("order-p1"), Some("PENDING")),
        "{again}"
    );
    let again_id = again["id"].as_i64().expect("an id");
    let (_, again) = admin.get(&format!("/admin/dlq/{again_id}")).await;
    assert_eq!(again["headers"], p1_entry["headers"], "the same original headers; the link is a field, not a header");

    // Discard: a reason is required; once discarded, neither discard nor reprocess applies.
    let (status, body) = admin.post(&format!("/admin/dlq/{p2}/discard"), json!({"operator": "erin"})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let (status, body) =
        admin.post(&format!("/admin/dlq/{p2}/discard"), json!({"reason": "a test record", "operator": "erin"})).await;
    assert_eq!((status, body["status"].as_str()), (StatusCode::OK, Some("DISCARDED")), "{body}");
    let (_, p2_entry) = admin.get(&format!("/admin/dlq/{p2}")).await;
    assert_eq!(
        (p2_entry["status"].as_str(), p2_entry["status_changed_by"].as_str(), p2_entry["status_reason"].as_str()),
        (Some("DISCARDED"), Some("erin"), Some("a test record"))
    );
    for path in [format!("/admin/dlq/{p2}/discard"), format!("/admin/dlq/{p2}/reprocess")] {
        let (status, body) = admin.post(&path, json!({"reason": "again"})).await;
        assert_eq!(status, StatusCode::CONFLICT, "{path}: {body}");
    }
    let discarded = admin.wait_for_entries(&format!("{of_topic}&status=DISCARDED"), |_| true).await;
    assert_eq!(ids(&discarded), vec![p2]);

    // Pending: p3 and the new entry.
    refresh_pending(&pool).await;
    assert_eq!(metric("dlq_pending", Some(("topic", &dlq_topic))), 2.0);

    // Indexing everything again from the start, under a new group, adds nothing.
    indexer.stop().await;
    let again = Indexer::start(&pool, &prefix);
    let end = (letters.len() + 1) as i64;
    let deadline = Instant::now() + WAIT;
    while committed_offset(&again.group, &dlq_topic, PARTITION) != Some(end) {
        assert!(
            Instant::now() < deadline,
            "the second indexer did not commit offset {end} on {dlq_topic} within {WAIT:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let (_, body) = admin.get(&format!("/admin/dlq?{of_topic}")).await;
    assert_eq!(body["entries"].as_array().map(Vec::len), Some(letters.len() + 1), "{body}");
    again.stop().await;

    let client = pool.get().await.expect("postgres");
    client.execute("delete from dlq_entries where original_topic = $1", &[&original_topic]).await.expect("cleaning up");
}

/// Every admin route, as (method, path, body).
fn admin_routes() -> Vec<(reqwest::Method, &'static str, Option<&'static str>)> {
    use reqwest::Method;
    vec![
        (Method::GET, "/admin/dlq", None),
        (Method::GET, "/admin/dlq/1", None),
        (Method::POST, "/admin/dlq/1/reprocess", Some("{}")),
        (Method::POST, "/admin/dlq/reprocess", Some("{}")),
        (Method::POST, "/admin/dlq/1/discard", Some(r#"{"reason": "x"}"#)),
        // Not even a malformed body gets past the token check.
        (Method::POST, "/admin/dlq/reprocess", Some("{")),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_admin_route_needs_the_token_and_bad_input_is_a_4xx() {
    let (pool, codec) = (pool().await, saga::saga_codec().await);
    let admin = Admin::start(&pool, &codec, Some(TOKEN)).await;
    for (method, path, body) in admin_routes() {
        for token in [None, Some("wrong-token"), Some("")] {
            let (status, answer) = admin.call(method.clone(), path, token, body).await;
            assert_eq!(status, StatusCode::UNAUTHORIZED, "{method} {path} with {token:?}: {answer}");
            assert!(answer["error"].is_string(), "{answer}");
        }
    }
    let disabled = Admin::start(&pool, &codec, None).await;
    for (method, path, body) in admin_routes() {
        let (status, answer) = disabled.call(method.clone(), path, Some(TOKEN), body).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{method} {path} without a configured token: {answer}");
        assert!(answer["error"].as_str().is_some_and(|error| error.contains("disabled")), "{answer}");
    }
    let (status, _) =
        admin.http.get(format!("{}/metrics", admin.base)).send().await.map(|r| (r.status(), ())).expect("metrics");
    assert_eq!(status, StatusCode::OK, "/metrics needs no token");

    let unknown = i64::MAX;
    let bad_gets = [
        "/admin/dlq?status=bogus",
        "/admin/dlq?status=pending",
        "/admin/dlq?error_class=fatal",
        "/admin/dlq?limit=0",
        "/admin/dlq?limit=501",
        "/admin/dlq?limit=ten",
        "/admin/dlq?cursor=-1",
        "/admin/dlq?cursor=1.5",
        "/admin/dlq?topic=a%00b",
        "/admin/dlq?status=PENDING&status=DISCARDED",
        "/admin/dlq/abc",
        "/admin/dlq/0",
        "/admin/dlq/-4",
        "/admin/dlq/99999999999999999999",
        "/admin/dlq/%FF",
    ];
    for path in bad_gets {
        let (status, body) = admin.get(path).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{path}: {body}");
        assert!(body["error"].is_string(), "{path}: {body}");
    }
    let (status, body) = admin.get(&format!("/admin/dlq/{unknown}")).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");

    let huge = format!(r#"{{"reason": "{}"}}"#, "x".repeat(100_000));
    let bad_posts: Vec<(String, String, StatusCode)> = vec![
        ("/admin/dlq/abc/reprocess".into(), "{}".into(), StatusCode::BAD_REQUEST),
        ("/admin/dlq/0/discard".into(), r#"{"reason": "x"}"#.into(), StatusCode::BAD_REQUEST),
        (format!("/admin/dlq/{unknown}/reprocess"), "{}".into(), StatusCode::NOT_FOUND),
        (format!("/admin/dlq/{unknown}/discard"), r#"{"reason": "x"}"#.into(), StatusCode::NOT_FOUND),
        (format!("/admin/dlq/{unknown}/reprocess"), "{".into(), StatusCode::BAD_REQUEST),
        (format!("/admin/dlq/{unknown}/reprocess"), r#"{"operator": 5}"#.into(), StatusCode::BAD_REQUEST),
        (format!("/admin/dlq/{unknown}/discard"), "".into(), StatusCode::BAD_REQUEST),
        (format!("/admin/dlq/{unknown}/discard"), "{}".into(), StatusCode::BAD_REQUEST),
        (format!("/admin/dlq/{unknown}/discard"), r#"{"reason": "   "}"#.into(), StatusCode::BAD_REQUEST),
        (format!("/admin/dlq/{unknown}/discard"), r#"{"reason": "x", "extra": 1}"#.into(), StatusCode::BAD_REQUEST),
        (format!("/admin/dlq/{unknown}/discard"), huge, StatusCode::PAYLOAD_TOO_LARGE),
        ("/admin/dlq/reprocess".into(), "".into(), StatusCode::BAD_REQUEST),
        ("/admin/dlq/reprocess".into(), "[1]".into(), StatusCode::BAD_REQUEST),
        ("/admin/dlq/reprocess".into(), r#"{"limit": 0}"#.into(), StatusCode::BAD_REQUEST),
        ("/admin/dlq/reprocess".into(), r#"{"limit": 501}"#.into(), StatusCode::BAD_REQUEST),
        ("/admin/dlq/reprocess".into(), r#"{"limit": "ten"}"#.into(), StatusCode::BAD_REQUEST),
        ("/admin/dlq/reprocess".into(), r#"{"ids": ["x"]}"#.into(), StatusCode::BAD_REQUEST),
        ("/admin/dlq/reprocess".into(), r#"{"ids": []}"#.into(), StatusCode::BAD_REQUEST),
        ("/admin/dlq/reprocess".into(), r#"{"ids": [-1]}"#.into(), StatusCode::BAD_REQUEST),
        ("/admin/dlq/reprocess".into(), r#"{"error_class": "fatal"}"#.into(), StatusCode::BAD_REQUEST),
        ("/admin/dlq/reprocess".into(), r#"{"topic": "no spaces allowed"}"#.into(), StatusCode::BAD_REQUEST),
        ("/admin/dlq/reprocess".into(), r#"{"operator": "a\u0000b"}"#.into(), StatusCode::BAD_REQUEST),
    ];
    for (path, body, expected) in bad_posts {
        let (status, answer) = admin.call(reqwest::Method::POST, &path, Some(TOKEN), Some(&body)).await;
        assert_eq!(status, expected, "POST {path} {:.60}: {answer}", body);
        assert!(answer["error"].is_string(), "{path}: {answer}");
    }
    // A filter that matches nothing is not an error.
    let (status, counts) = admin.post("/admin/dlq/reprocess", json!({"ids": [unknown]})).await;
    assert_eq!(
        (status, counts["reprocessed"].as_i64(), counts["skipped"].as_i64()),
        (StatusCode::OK, Some(0), Some(1)),
        "{counts}"
    );
}

/// The DLQ entries of `key` whose original topic is one of `topics`, oldest first, once `done`
/// holds for them (or fails after [`WAIT`]).
async fn entries_of(admin: &Admin, topics: &[&str], key: &str, done: impl Fn(&[Value]) -> bool) -> Vec<Value> {
    let deadline = Instant::now() + WAIT;
    loop {
        let mut found = Vec::new();
        for topic in topics {
            let (status, body) = admin.get(&format!("/admin/dlq?topic={topic}&limit=500")).await;
            assert_eq!(status, StatusCode::OK, "{body}");
            found.extend(
                body["entries"].as_array().cloned().unwrap_or_default().into_iter().filter(|entry| entry["key"] == key),
            );
        }
        found.sort_by_key(|entry| entry["id"].as_i64());
        if done(&found) {
            return found;
        }
        assert!(Instant::now() < deadline, "the index did not get there within {WAIT:?}: {found:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// A permanent failure an operator can repair: shipping's idempotency key of an order holds a
/// value the guard cannot read, so shipping dead-letters the record that would ship it. Asked to
/// reprocess before the repair, the copy fails again and its new entry links to the first; once
/// the key is removed, a reprocess through the admin API ships the order, and the saga completes
/// exactly once: one OrderConfirmed, one charge, one reservation (the republished copies carry
/// the same event id), one shipment row, the guard COMPLETED, nothing dead-lettered again.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_repaired_permanent_failure_reprocessed_through_the_api_completes_the_saga_once() {
    const PARTITIONS: i32 = 3;
    let (pool, codec) = (pool().await, saga::saga_codec().await);
    // The participants' and this test's synchronous code go through the same codec.
    let serde = EventSerde::new(codec.clone());
    let prefix = unique("dlqrepair");
    // The order waits for shipping while the operator repairs: no step times out meanwhile.
    let run = SagaRun::start(
        &prefix,
        &serde,
        RunOptions { partitions: PARTITIONS, step_timeout: Some(Duration::from_secs(600)) },
    )
    .await;
    // The participants create their DLQ topics as they start; an indexer subscribed after that
    // sees them at once, rather than at its next metadata refresh.
    let deadline = Instant::now() + WAIT;
    while ![&run.topics.order, &run.topics.inventory].iter().all(|topic| dlq_exists(&run.bootstrap, topic)) {
        assert!(Instant::now() < deadline, "the participants did not create their DLQ topics within {WAIT:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let indexer = Indexer::start(&pool, &prefix);
    let admin = Admin::start(&pool, &codec, Some(TOKEN)).await;
    let order_id = key_on_partition(&format!("{prefix}-order"), 1, PARTITIONS);
    // After the repaired order, on its partition: once this one is through, so is everything of the first.
    let sentinel = key_on_partition(&format!("{prefix}-sentinel"), 1, PARTITIONS);
    let mut redis = saga::redis_connection();
    let _: () = redis::cmd("SET")
        .arg(saga::shipment_guard_key(&order_id))
        .arg("half-written{")
        .arg("PX")
        .arg(600_000)
        .query(&mut redis)
        .expect("redis SET");

    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", &run.bootstrap)
        .set("partitioner", "murmur2_random")
        .create()
        .expect("producer");
    let place = |order: &str| {
        let bytes = serde
            .serialize(&run.topics.order, &saga::order_placed(order, &format!("{prefix}-customer")))
            .expect("an OrderPlaced");
        let (producer, topic, order) = (&producer, run.topics.order.clone(), order.to_string());
        async move {
            producer
                .send(FutureRecord::<str, [u8]>::to(&topic).key(&order).payload(&bytes), Duration::from_secs(10))
                .await
                .unwrap_or_else(|(e, _)| panic!("kafka: producing to {topic} failed: {e}"));
        }
    };
    place(&order_id).await;

    // Shipping dead-letters whichever of the order's records found it reserved with an address.
    let saga_topics = run.topics.clone();
    let topics = [saga_topics.inventory.as_str(), saga_topics.order.as_str()];
    let first = entries_of(&admin, &topics, &order_id, |entries| !entries.is_empty()).await;
    let [first] = &first[..] else { panic!("one dead letter: {first:?}") };
    assert_eq!(
        (first["consumer_group"].as_str(), first["error_class"].as_str()),
        (Some(run.groups[2].as_str()), Some("permanent")),
        "{first}"
    );
    assert!(first["error_message"].as_str().is_some_and(|m| m.contains("unreadable value")), "{first}");
    let first_id = first["id"].as_i64().expect("an id");

    // Reprocessed before the repair: it fails again, as a new entry linked to the first.
    let (status, body) = admin
        .post(&format!("/admin/dlq/{first_id}/reprocess"), json!({"operator": "alice", "reason": "try again"}))
        .await;
    assert_eq!((status, body["status"].as_str()), (StatusCode::OK, Some("REPROCESSED")), "{body}");
    let both = entries_of(&admin, &topics, &order_id, |entries| entries.len() == 2).await;
    let again = &both[1];
    assert_eq!(
        (again["reprocessed_from"].as_i64(), again["status"].as_str(), again["error_class"].as_str()),
        (Some(first_id), Some("PENDING"), Some("permanent")),
        "{again}"
    );
    assert_eq!(again["original_topic"], first["original_topic"], "{again}");
    let again_id = again["id"].as_i64().expect("an id");

    // The repair, then the reprocess that works.
    let _: () = redis::cmd("DEL").arg(saga::shipment_guard_key(&order_id)).query(&mut redis).expect("redis DEL");
    let (status, body) = admin
        .post(
            &format!("/admin/dlq/{again_id}/reprocess"),
            json!({"operator": "alice", "reason": "corrupt guard key removed"}),
        )
        .await;
    assert_eq!((status, body["status"].as_str()), (StatusCode::OK, Some("REPROCESSED")), "{body}");
    let _ = run.events(&run.topics.order, |events| !saga::of(events, &order_id, EventType::OrderConfirmed).is_empty());
    place(&sentinel).await;
    let _ = run.events(&run.topics.order, |events| !saga::of(events, &sentinel, EventType::OrderConfirmed).is_empty());
    run.assert_running();

    // Everything committed now; each topic read to its end.
    let everything = |topic: &str| -> Vec<saga::Delivered> {
        read_to_end(&run.bootstrap, topic, "read_committed")
            .into_iter()
            .filter_map(|record| {
                Some(saga::Delivered { event: serde.deserialize(topic, record.value.as_deref()?).ok()?, record })
            })
            .collect()
    };
    let (orders, payments, stock, shipped) = (
        everything(&run.topics.order),
        everything(&run.topics.payment),
        everything(&run.topics.inventory),
        everything(&run.topics.shipping),
    );
    let dead: Vec<Consumed> = [
        run.topics.order.as_str(),
        run.topics.payment.as_str(),
        run.topics.inventory.as_str(),
        run.topics.shipping.as_str(),
    ]
    .iter()
    .filter(|topic| dlq_exists(&run.bootstrap, topic))
    .flat_map(|topic| read_to_end(&run.bootstrap, &format!("{topic}.dlq"), "read_committed"))
    .collect();
    let groups = run.groups.clone();
    run.close();
    indexer.stop().await;

    assert_eq!(
        saga::of(&orders, &order_id, EventType::OrderConfirmed).len(),
        1,
        "confirmed once: {:?}",
        saga::summary(&orders, &order_id)
    );
    assert!(
        saga::of(&orders, &order_id, EventType::OrderCancelled).is_empty(),
        "never cancelled: {:?}",
        saga::summary(&orders, &order_id)
    );
    assert_eq!(
        saga::of(&payments, &order_id, EventType::PaymentCompleted).len(),
        1,
        "charged once: {:?}",
        saga::summary(&payments, &order_id)
    );
    let reservations = saga::of(&stock, &order_id, EventType::InventoryReserved);
    let ids: std::collections::BTreeSet<&str> =
        reservations.iter().map(|d| d.event.envelope.event_id.as_str()).collect();
    assert_eq!(ids.len(), 1, "reserved once: {:?}", saga::summary(&stock, &order_id));
    let republished: Vec<Option<&[u8]>> =
        reservations.iter().map(|d| d.record.header(REPROCESSED_FROM_HEADER)).collect();
    let expected_copies = if first["original_topic"] == saga_topics.inventory.as_str() { 2 } else { 0 };
    assert_eq!(republished.iter().filter(|from| from.is_none()).count(), 1, "inventory reserved once: {republished:?}");
    assert_eq!(republished.len(), 1 + expected_copies, "the reservation and its republished copies: {republished:?}");
    let [created] = saga::of(&shipped, &order_id, EventType::ShipmentCreated)[..] else {
        panic!("shipped once: {:?}", saga::summary(&shipped, &order_id))
    };
    let Payload::ShipmentCreated(shipment) = &created.event.payload else { unreachable!() };
    assert_eq!(
        saga::shipments_of(&order_id).await,
        [(shipment.shipment_id.clone(), shipment.tracking_number.clone())],
        "one shipments row"
    );
    assert_eq!(saga::shipment_guard_state(&mut redis, &order_id).as_deref(), Some("COMPLETED"));
    // (consumer group, reprocessed-from) of each dead letter of the order.
    type Headers<'a> = (Option<&'a [u8]>, Option<&'a [u8]>);
    let letters: Vec<Headers> = dead
        .iter()
        .filter(|r| r.key.as_deref() == Some(order_id.as_bytes()))
        .map(|r| (r.header("dlq.consumer.group"), r.header(REPROCESSED_FROM_HEADER)))
        .collect();
    let first_link = first_id.to_string();
    assert_eq!(
        letters,
        [(Some(groups[2].as_bytes()), None), (Some(groups[2].as_bytes()), Some(first_link.as_bytes()))],
        "only shipping's two failures: {:?}",
        saga::dead_letter_summary(&dead)
    );
    let (_, entry) = admin.get(&format!("/admin/dlq/{again_id}")).await;
    assert_eq!(
        (entry["status"].as_str(), entry["status_changed_by"].as_str(), entry["status_reason"].as_str()),
        (Some("REPROCESSED"), Some("alice"), Some("corrupt guard key removed"))
    );

    let client = pool.get().await.expect("postgres");
    for topic in topics {
        client.execute("delete from dlq_entries where original_topic = $1", &[&topic]).await.expect("cleaning up");
    }
}

/// Whether `<topic>.dlq` exists (a participant creates it when it starts).
fn dlq_exists(bootstrap: &str, topic: &str) -> bool {
    let consumer: BaseConsumer = ClientConfig::new().set("bootstrap.servers", bootstrap).create().expect("consumer");
    let dlq = format!("{topic}.dlq");
    let metadata = consumer.fetch_metadata(Some(&dlq), Duration::from_secs(10)).expect("metadata");
    metadata.topics().iter().any(|t| t.name() == dlq && t.error().is_none() && !t.partitions().is_empty())
}
