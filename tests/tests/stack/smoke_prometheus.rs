//! Prometheus scrapes a target this test exposes (registered through file-based discovery).

use std::time::{Duration, Instant};

use axum::{routing::get, Router};
use integration_tests::stack::{prometheus_url, stack_dir, unique};
use prometheus::{Encoder, IntGauge, Registry, TextEncoder};

#[tokio::test]
async fn prometheus_scrapes_a_test_target() {
    let prometheus = prometheus_url();
    let marker = (std::process::id() as i64) * 1000 + 7;

    let registry = Registry::new();
    let gauge = IntGauge::new("saga_smoke_marker", "A value the smoke test expects to read back").unwrap();
    gauge.set(marker);
    registry.register(Box::new(gauge)).unwrap();
    let app = Router::new().route(
        "/metrics",
        get(move || {
            let registry = registry.clone();
            async move {
                let mut body = Vec::new();
                TextEncoder::new().encode(&registry.gather(), &mut body).unwrap();
                String::from_utf8(body).unwrap()
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let job = unique("smoke");
    let targets_dir = stack_dir().join("prometheus/targets");
    assert!(
        targets_dir.is_dir(),
        "prometheus: {} is missing; was the stack started with `dev/stack up`?",
        targets_dir.display()
    );
    let target_file = targets_dir.join(format!("{job}.json"));
    std::fs::write(&target_file, format!(r#"[{{"targets": ["{address}"], "labels": {{"smoke_job": "{job}"}}}}]"#))
        .unwrap();

    let query = format!("saga_smoke_marker{{smoke_job=\"{job}\"}}");
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut last = String::new();
    let scraped = loop {
        let response = reqwest::Client::new()
            .get(format!("{prometheus}/api/v1/query"))
            .query(&[("query", query.as_str())])
            .send()
            .await
            .unwrap_or_else(|e| panic!("prometheus is down: {e}"));
        let body: serde_json::Value = response.json().await.expect("query JSON");
        if let Some(value) = body["data"]["result"][0]["value"][1].as_str() {
            break Some(value.to_string());
        }
        last = body.to_string();
        if Instant::now() > deadline {
            break None;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let _ = std::fs::remove_file(&target_file);
    let scraped = scraped.unwrap_or_else(|| panic!("prometheus never scraped {address}; last answer: {last}"));
    assert_eq!(scraped, marker.to_string());
}
