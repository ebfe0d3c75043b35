//! Apicurio Registry through its Confluent-compatible API: register an Avro schema with
//! `schema_registry_converter`, encode a record in Confluent wire format, decode it back.

use apache_avro::types::Value;
use integration_tests::stack::{registry_url, unique};
use schema_registry_converter::async_impl::easy_avro::{EasyAvroDecoder, EasyAvroEncoder};
use schema_registry_converter::async_impl::schema_registry::SrSettings;
use schema_registry_converter::schema_registry_common::{SchemaType, SubjectNameStrategy, SuppliedSchema};

const SCHEMA: &str = r#"{
  "type": "record", "name": "SmokeEvent", "namespace": "saga.smoke",
  "fields": [
    {"name": "event_id", "type": "string"},
    {"name": "amount_cents", "type": "long"},
    {"name": "note", "type": ["null", "string"], "default": null}
  ]
}"#;

#[tokio::test]
async fn avro_record_round_trips_through_the_ccompat_api() {
    let url = registry_url();
    let topic = unique("smoke-registry");
    let strategy = SubjectNameStrategy::TopicRecordNameStrategyWithSchema(
        topic.clone(),
        SuppliedSchema::new(Some("saga.smoke.SmokeEvent".into()), SchemaType::Avro, SCHEMA.into()),
    );
    let record = Value::Record(vec![
        ("event_id".into(), Value::String("e-1".into())),
        ("amount_cents".into(), Value::Long(12_345)),
        ("note".into(), Value::Union(1, Box::new(Value::String("hello".into())))),
    ]);

    let encoder = EasyAvroEncoder::new(SrSettings::new(url.clone()));
    let bytes = encoder
        .encode_value(record.clone(), &strategy)
        .await
        .unwrap_or_else(|e| panic!("registry: registering/encoding through {url} failed: {e}"));

    // Confluent wire format: magic byte 0, 4-byte big-endian schema id, Avro body.
    assert_eq!(bytes[0], 0, "magic byte");
    let schema_id = u32::from_be_bytes(bytes[1..5].try_into().unwrap());

    // The id in the header resolves to our schema through the same API.
    let by_id: serde_json::Value = reqwest::get(format!("{url}/schemas/ids/{schema_id}"))
        .await
        .expect("GET /schemas/ids")
        .json()
        .await
        .expect("schema JSON");
    let registered = by_id["schema"].as_str().expect("schema string");
    assert!(registered.contains("SmokeEvent"), "id {schema_id} resolved to {registered}");

    // The subject follows TopicRecordNameStrategy. (Looked up directly: GET /subjects lists at most 1000.)
    let subject = format!("{topic}-saga.smoke.SmokeEvent");
    let versions = reqwest::get(format!("{url}/subjects/{subject}/versions")).await.expect("GET versions");
    assert!(versions.status().is_success(), "subject {subject} was not registered: {}", versions.status());
    let versions: Vec<i64> = versions.json().await.expect("versions JSON");
    assert_eq!(versions.len(), 1);

    let decoder = EasyAvroDecoder::new(SrSettings::new(url.clone()));
    let decoded = decoder.decode(Some(&bytes)).await.expect("decode");
    assert_eq!(decoded.value, record);

    // Leave nothing behind: the registry lists a bounded number of subjects.
    let client = reqwest::Client::new();
    let _ = client.delete(format!("{url}/subjects/{subject}")).send().await;
    let _ = client.delete(format!("{url}/subjects/{subject}?permanent=true")).send().await;
}
