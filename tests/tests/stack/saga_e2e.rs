//! The whole saga on the real stack: the order API writes the outbox, Debezium carries it to
//! Kafka, the four participants run exactly-once, the projector fills the read model. A demo
//! load with every failure path runs through it, and every invariant must hold.
//!
//! Uses the pipeline's real topics, ports and application ids: don't run `dev/demo` at the same time.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use integration_tests::stack::{kafka_bootstrap, port, repo_root, require};
use pipeline::components::Participant;
use pipeline::demo::{self, DemoOptions, Scenario};
use pipeline::settings::Settings;

fn settings() -> Settings {
    let overrides = [
        ("SAGA__KAFKA__BOOTSTRAP_SERVERS".to_string(), kafka_bootstrap()),
        (
            "SAGA__CONNECT__CONNECTOR_FILE".to_string(),
            repo_root().join("connectors/debezium/order-outbox.json").display().to_string(),
        ),
        ("SAGA__DATABASE__PORT".to_string(), require("postgres", "POSTGRES_PORT").to_string()),
        ("SAGA__REGISTRY__URL".to_string(), format!("http://127.0.0.1:{}", require("registry", "REGISTRY_PORT"))),
        ("SAGA__CONNECT__URL".to_string(), format!("http://127.0.0.1:{}", require("kafka connect", "CONNECT_PORT"))),
        ("SAGA__REDIS__URL".to_string(), format!("redis://127.0.0.1:{}/", require("redis", "REDIS_PORT"))),
        ("SAGA__HTTP__ORDER_API_PORT".to_string(), port("ORDER_API_PORT").to_string()),
        ("SAGA__HTTP__ADMIN_PORT".to_string(), port("ADMIN_PORT").to_string()),
    ];
    Settings::load(&repo_root().join("config/pipeline.toml"), overrides).expect("config/pipeline.toml")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_demo_load_keeps_every_invariant() {
    let settings = settings();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let pipeline_settings = settings.clone();
    let pipeline = tokio::spawn(async move {
        pipeline::components::run_all(&pipeline_settings, async {
            let _ = stopped.await;
        })
        .await
    });

    let deadline = Instant::now() + Duration::from_secs(180);
    // Ready as /ready says, once all four participants run here (assigned, stores restored).
    while !pipeline::admin::health::is_ready(Participant::ALL.map(Participant::application_id)) {
        assert!(!pipeline.is_finished(), "the pipeline stopped during start-up");
        assert!(Instant::now() < deadline, "the participants were not assigned partitions within 180 s");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }

    let options = DemoOptions {
        orders: 240,
        concurrency: 8,
        rate: None,
        settle_timeout: Duration::from_secs(240),
        racing_cancels: false,
        poison_percent: 5.0,
    };
    let report = demo::run(&settings, &options, false).await.expect("demo run");
    late_cancels_are_refused_with_a_reason(&settings, &report).await;
    a_reader_sees_its_own_write(&settings).await;
    a_trace_follows_an_order_through_every_topic(&settings).await;
    let _ = stop.send(());
    let _ = tokio::time::timeout(Duration::from_secs(60), pipeline).await;

    for check in &report.checks {
        assert!(
            check.holds(),
            "invariant '{}' does not hold: {:?}",
            check.name,
            &check.violations[..check.violations.len().min(5)]
        );
    }
    assert_eq!(
        report.checks.len(),
        9,
        "the eight invariants (retention among them) and the poison check were all checked"
    );

    // Each planned failure ends the way it should.
    let expected: HashMap<Scenario, &[&str]> = HashMap::from([
        (Scenario::Happy, &["CONFIRMED"][..]),
        (Scenario::LowCredit, &["CANCELLED (payment_failed)"][..]),
        (Scenario::LowStock, &["CANCELLED (insufficient_stock)"][..]),
        (Scenario::BadAddress, &["CANCELLED (shipment_failed)"][..]),
        // A cancellation can lose the race against a fast saga.
        (Scenario::CustomerCancel, &["CANCELLED (customer_cancelled)", "CONFIRMED"][..]),
    ]);
    for order in &report.orders {
        let outcome = report.final_outcome(&order.order_id);
        assert!(
            expected[&order.scenario].contains(&outcome.as_str()),
            "{} ({:?}) ended as {outcome}",
            order.order_id,
            order.scenario
        );
    }
    let cancelled_by_customer =
        report.orders.iter().filter(|o| report.final_outcome(&o.order_id) == "CANCELLED (customer_cancelled)").count();
    assert!(cancelled_by_customer > 0, "at least one customer cancellation must win");
}

/// A cancel after the outcome is a 409 with the reason, and changes nothing (docs/saga.md).
async fn late_cancels_are_refused_with_a_reason(settings: &Settings, report: &demo::DemoReport) {
    let api = format!("http://127.0.0.1:{}", settings.http.order_api_port);
    let client = reqwest::Client::new();
    for (outcome, expected) in
        [("CONFIRMED", "already confirmed"), ("CANCELLED (payment_failed)", "already cancelled (payment_failed)")]
    {
        let order = report
            .orders
            .iter()
            .find(|o| report.final_outcome(&o.order_id) == outcome)
            .expect("an order with that outcome");
        let response =
            client.post(format!("{api}/orders/{}/cancel", order.order_id)).send().await.expect("POST cancel");
        assert_eq!(response.status().as_u16(), 409, "a cancel of a {outcome} order");
        let body: serde_json::Value = response.json().await.expect("a JSON error");
        let message = body["error"].as_str().unwrap_or_default();
        assert!(message.contains(expected), "{outcome}: {message}");
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let confirmed =
        report.orders.iter().find(|o| report.final_outcome(&o.order_id) == "CONFIRMED").expect("a confirmed order");
    let view: serde_json::Value = client
        .get(format!("{api}/orders/{}", confirmed.order_id))
        .send()
        .await
        .and_then(reqwest::Response::error_for_status)
        .expect("GET /orders/{id}")
        .json()
        .await
        .expect("an order");
    assert_eq!(view["status"], "CONFIRMED", "a refused cancel changes nothing: {view}");
}

/// The version POST /orders returns is what `min_version` waits for, through Debezium and the
/// projector: read-your-writes across the whole pipeline.
async fn a_reader_sees_its_own_write(settings: &Settings) {
    let api = format!("http://127.0.0.1:{}", settings.http.order_api_port);
    let client = reqwest::Client::new();
    let body = serde_json::json!({
        "customer_id": "e2e-read-your-writes",
        "items": [{"product_id": "e2e-product", "quantity": 1, "unit_price": 100}],
        "shipping_address": {"line1": "1 Example Street", "city": "Berlin", "postal_code": "10115", "country": "DE"},
    });
    let accepted: serde_json::Value = client
        .post(format!("{api}/orders"))
        .json(&body)
        .send()
        .await
        .expect("POST /orders")
        .json()
        .await
        .expect("JSON");
    let (order_id, version) =
        (accepted["order_id"].as_str().expect("order_id"), accepted["version"].as_i64().expect("version"));
    let response = client.get(format!("{api}/orders/{order_id}?min_version={version}")).send().await.expect("GET");
    assert_eq!(
        response.headers().get(pipeline::projector::FRESH_HEADER).map(|v| v.as_bytes().to_vec()),
        Some(b"true".to_vec()),
        "fresh within the wait"
    );
    let view: serde_json::Value = response.json().await.expect("an order");
    assert!(view["order_version"].as_i64() >= Some(version), "{view}");
}

/// The caller's W3C trace goes from the order API through the outbox and Debezium into every
/// event of the order, on every saga topic: each hop copies `traceparent` from cause to effect.
async fn a_trace_follows_an_order_through_every_topic(settings: &Settings) {
    let api = format!("http://127.0.0.1:{}", settings.http.order_api_port);
    let client = reqwest::Client::new();
    let trace_id = uuid::Uuid::new_v4().simple().to_string();
    let body = serde_json::json!({
        "customer_id": "e2e-traced",
        "items": [{"product_id": "e2e-product", "quantity": 1, "unit_price": 100}],
        "shipping_address": {"line1": "1 Example Street", "city": "Berlin", "postal_code": "10115", "country": "DE"},
    });
    let accepted: serde_json::Value = client
        .post(format!("{api}/orders"))
        .header("traceparent", format!("00-{trace_id}-00f067aa0ba902b7-01"))
        .json(&body)
        .send()
        .await
        .expect("POST /orders")
        .json()
        .await
        .expect("JSON");
    let order_id = accepted["order_id"].as_str().expect("order_id").to_string();
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let view: serde_json::Value =
            client.get(format!("{api}/orders/{order_id}")).send().await.expect("GET").json().await.unwrap_or_default();
        if view["status"] == "CONFIRMED" {
            break;
        }
        assert!(Instant::now() < deadline, "the traced order was not confirmed within 120 s: {view}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let bootstrap = kafka_bootstrap();
    for topic in [schemas::ORDER_EVENTS, schemas::PAYMENT_EVENTS, schemas::INVENTORY_EVENTS, schemas::SHIPPING_EVENTS] {
        let records: Vec<_> = integration_tests::kafka::read_to_end(&bootstrap, topic, "read_committed")
            .into_iter()
            .filter(|record| record.key.as_deref() == Some(order_id.as_bytes()))
            .collect();
        assert!(!records.is_empty(), "no event of the traced order on {topic}");
        for record in &records {
            let traceparent = record
                .header("traceparent")
                .map(|value| String::from_utf8_lossy(value).into_owned())
                .unwrap_or_default();
            assert_eq!(
                traceparent.split('-').nth(1),
                Some(trace_id.as_str()),
                "{topic} offset {}: traceparent {traceparent:?}",
                record.offset
            );
        }
    }
}
