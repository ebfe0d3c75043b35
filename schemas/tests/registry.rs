//! `SagaCodec` (over a `RegistryResolver`) and `RegistryClient` against the real Apicurio registry of the local stack
//! (`dev/stack up`). Every run uses topics of its own, so its subjects never collide with earlier
//! runs; the test deletes them when it passes.

#[path = "support/samples.rs"]
mod samples;

use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use apache_avro::Schema;
use samples::sample;
use schemas::{
    check_chain, check_chain_in_registry, check_in_registry, current_schema_ids, encode_avro_body, parse_wire,
    register_all, schema_of, schema_text_of, schema_version_of, schema_versions_of, subject_for, to_wire, topic_of,
    CodecError, Compatibility, EventType, RegistryClient, RegistryError, RegistryResolver, SagaCodec,
};
use serde_json::json;

/// `http://127.0.0.1:<REGISTRY_PORT>`, the port from the environment or `dev/ports.env`.
/// Panics, naming the registry, unless something answers there: a test must never skip.
fn registry_base_url() -> String {
    let port = std::env::var("REGISTRY_PORT").unwrap_or_else(|_| port_from_ports_env("REGISTRY_PORT"));
    let port: u16 = port.parse().unwrap_or_else(|_| panic!("REGISTRY_PORT={port} is not a port number"));
    let address = SocketAddr::from(([127, 0, 0, 1], port));
    assert!(
        TcpStream::connect_timeout(&address, Duration::from_secs(2)).is_ok(),
        "schema registry (Apicurio) is down: nothing answers on {address} (REGISTRY_PORT). \
         Start the local stack with `dev/stack up`; `dev/stack status` shows which service failed."
    );
    format!("http://{address}")
}

fn port_from_ports_env(name: &str) -> String {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../dev/ports.env");
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("cannot read {path}: {e}"));
    text.lines()
        .filter_map(|line| line.trim().split_once('='))
        .find(|(key, _)| key.trim() == name)
        .map(|(_, value)| value.trim().to_string())
        .unwrap_or_else(|| panic!("{path} has no {name}"))
}

/// The real topic of `event_type` with a suffix no other run uses.
fn run_topic(event_type: EventType, run: &str) -> String {
    format!("{}.test-{run}", topic_of(event_type))
}

fn new_run_id() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

/// Removes a test subject for good (Confluent's API wants a soft delete first).
async fn delete_subject(client: &RegistryClient, subject: &str) {
    let url = format!("{}/subjects/{subject}", client.api_url());
    let http = reqwest::Client::new();
    for url in [url.clone(), format!("{url}?permanent=true")] {
        let response = http.delete(&url).send().await.expect("DELETE subject");
        assert!(response.status().is_success(), "DELETE {url}: {}", response.status());
    }
}

/// A codec that looks ids up in the registry at `base` on first use.
fn registry_codec(base: &str) -> SagaCodec {
    SagaCodec::new(RegistryResolver::new(RegistryClient::new(base).unwrap()))
}

/// GET /schemas/ids/{id}, parsed, without going through the client under test.
async fn fetch_schema_by_id(client: &RegistryClient, id: u32) -> Schema {
    let url = format!("{}/schemas/ids/{id}", client.api_url());
    let answer: serde_json::Value =
        reqwest::get(&url).await.expect("GET /schemas/ids").json().await.expect("schema JSON");
    let text = answer["schema"].as_str().unwrap_or_else(|| panic!("{url} answered {answer}"));
    Schema::parse_str(text).unwrap_or_else(|e| panic!("schema {id} does not parse: {e}"))
}

#[tokio::test]
async fn every_event_round_trips_through_the_registry() {
    let base = registry_base_url();
    let run = new_run_id();
    let codec = registry_codec(&base);
    // A second codec with empty caches decodes too: nothing rides on the encoder's state.
    let fresh_codec = registry_codec(&base);
    // Registers, as `pipeline schemas register` does: the codec never does.
    let registry = RegistryClient::new(&base).unwrap();

    for event_type in EventType::ALL {
        let event = sample(event_type);
        let topic = run_topic(event_type, &run);
        // The codec looks ids up and never registers: `pipeline schemas register` does.
        match codec.encode(&topic, &event).await {
            Err(CodecError::NotRegistered { event_type: missing, .. }) => assert_eq!(missing, event_type),
            other => panic!("{event_type} is not registered under {topic} yet, got {other:?}"),
        }
        registry.register(&subject_for(&topic, event_type), schema_text_of(event_type)).await.unwrap();
        let bytes = codec.encode(&topic, &event).await.unwrap_or_else(|e| panic!("encode {event_type}: {e}"));

        let (schema_id, _) = parse_wire(&bytes).unwrap();
        let registered = fetch_schema_by_id(&registry, schema_id).await;
        assert_eq!(&registered, schema_of(event_type), "schema id {schema_id} of {event_type}");

        assert_eq!(codec.decode(&bytes).await.unwrap(), event, "{event_type}");
        assert_eq!(fresh_codec.decode(&bytes).await.unwrap(), event, "{event_type}, fresh codec");
    }

    // Asked one by one: Apicurio caps GET /subjects at 1000 entries (apicurio.ccompat.max-subjects).
    for event_type in EventType::ALL {
        let subject = subject_for(&run_topic(event_type, &run), event_type);
        let url = format!("{}/subjects/{subject}/versions", registry.api_url());
        let versions: serde_json::Value = reqwest::get(&url).await.unwrap().json().await.unwrap();
        assert_eq!(versions, json!([1]), "TopicRecordNameStrategy subject {subject}");
        delete_subject(&registry, &subject).await;
    }
}

#[tokio::test]
async fn backward_compatibility_refuses_a_new_required_field_and_accepts_a_defaulted_one() {
    let client = RegistryClient::new(&registry_base_url()).unwrap();
    let subject = subject_for(&run_topic(EventType::OrderPlaced, &new_run_id()), EventType::OrderPlaced);
    let with_field = |field: serde_json::Value| {
        let mut schema: serde_json::Value = serde_json::from_str(schema_text_of(EventType::OrderPlaced)).unwrap();
        schema["fields"].as_array_mut().unwrap().push(field);
        schema.to_string()
    };

    let v1_id = client.register(&subject, schema_text_of(EventType::OrderPlaced)).await.unwrap();
    client.set_compatibility(&subject, Compatibility::Backward).await.unwrap();

    let required = with_field(json!({"name": "gift_message", "type": "string"}));
    match client.register(&subject, &required).await {
        Err(RegistryError::Incompatible { subject: refused, message }) => {
            assert_eq!(refused, subject);
            assert!(message.contains("gift_message"), "the refusal names the field: {message}");
        }
        other => panic!("a new required field must be refused under BACKWARD, got {other:?}"),
    }

    let defaulted = with_field(json!({"name": "gift_message", "type": ["null", "string"], "default": null}));
    let v2_id = client.register(&subject, &defaulted).await.expect("a defaulted field is BACKWARD compatible");
    assert_ne!(v2_id, v1_id);

    // Registering an existing version again is idempotent; a fresh client skips the cache.
    let again = RegistryClient::new(&registry_base_url()).unwrap();
    assert_eq!(again.register(&subject, schema_text_of(EventType::OrderPlaced)).await.unwrap(), v1_id);

    delete_subject(&client, &subject).await;
}

#[tokio::test]
async fn an_unknown_schema_id_is_a_typed_error() {
    let codec = registry_codec(&registry_base_url());
    let body = encode_avro_body(&sample(EventType::ShipmentFailed)).unwrap();
    match codec.decode(&to_wire(u32::MAX, &body)).await {
        Err(CodecError::WriterSchema { id: u32::MAX, source: RegistryError::SchemaNotFound { id: u32::MAX } }) => {}
        other => panic!("expected SchemaNotFound, got {other:?}"),
    }
}

#[tokio::test]
async fn a_writer_schema_that_is_no_saga_event_is_refused() {
    let codec = registry_codec(&registry_base_url());
    let registry = RegistryClient::new(&registry_base_url()).unwrap();
    let subject = format!("schemas-test-{}-saga.other.Note", new_run_id());
    let schema = r#"{"type": "record", "name": "Note", "namespace": "saga.other", "fields": [{"name": "text", "type": "string"}]}"#;
    let id = registry.register(&subject, schema).await.unwrap();

    match codec.decode(&to_wire(id, &[4, b'h', b'i'])).await {
        Err(CodecError::NotASagaEvent { schema_id, name }) => {
            assert_eq!((schema_id, name.as_str()), (id, "saga.other.Note"));
        }
        other => panic!("expected NotASagaEvent, got {other:?}"),
    }
    delete_subject(&registry, &subject).await;
}

/// A record schema `P` with the given fields, as JSON text.
fn record(fields: &str) -> String {
    format!(r#"{{"type": "record", "name": "P", "fields": [{fields}]}}"#)
}

#[tokio::test]
async fn the_registry_enforces_full_transitive_given_through_the_ccompat_api() {
    // Apicurio's ccompat API maps PUT /config/{subject} to its own compatibility rule: check on a
    // throwaway subject that the level is enforced, transitively, and not just stored.
    let client = RegistryClient::new(&registry_base_url()).unwrap();
    let subject = format!("schemas-test-{}-full-transitive", new_run_id());
    client.set_compatibility(&subject, Compatibility::FullTransitive).await.unwrap();
    let v1 = record(r#"{"name": "a", "type": "string"}, {"name": "c", "type": "int"}"#);
    let v2 = record(r#"{"name": "a", "type": "string"}, {"name": "c", "type": "int", "default": 0}"#);
    // Fine against v2 both ways, but a v1 reader needs `c`: only a transitive check refuses it.
    let v3 = record(r#"{"name": "a", "type": "string"}"#);
    client.register(&subject, &v1).await.unwrap();
    client.register(&subject, &v2).await.unwrap();

    assert!(!client.is_compatible(&subject, &v3).await.unwrap(), "the endpoint checks every version");
    match client.register(&subject, &v3).await {
        Err(RegistryError::Incompatible { message, .. }) => assert!(message.contains("c at /fields/1"), "{message}"),
        other => panic!("FULL_TRANSITIVE must refuse v3, got {other:?}"),
    }
    // A change only FORWARD forbids (dropping a field without a default) is refused too.
    let drops_a = record(r#"{"name": "c", "type": "int", "default": 0}"#);
    assert!(matches!(client.register(&subject, &drops_a).await, Err(RegistryError::Incompatible { .. })));
    delete_subject(&client, &subject).await;
}

#[tokio::test]
async fn a_breaking_order_placed_v3_is_refused_by_the_registry_and_reported_by_both_checks() {
    let client = RegistryClient::new(&registry_base_url()).unwrap();
    // v3 turns total_cents into a string: no reader of either side can resolve it.
    let mut v3: serde_json::Value = serde_json::from_str(schema_text_of(EventType::OrderPlaced)).unwrap();
    let fields = v3["fields"].as_array_mut().unwrap();
    let total = fields.iter_mut().find(|field| field["name"] == "total_cents").unwrap();
    total["type"] = json!("string");
    let v3 = v3.to_string();
    let mut versions: Vec<(i32, &str)> =
        schema_versions_of(EventType::OrderPlaced).map(|file| (file.version, file.text)).collect();
    versions.push((3, &v3));
    let subject = subject_for(&run_topic(EventType::OrderPlaced, &new_run_id()), EventType::OrderPlaced);

    let refusals = check_chain_in_registry(&client, &subject, Compatibility::FullTransitive, &versions).await.unwrap();
    assert_eq!(refusals.len(), 1, "{refusals:?}");
    assert_eq!(refusals[0].version, 3);
    assert!(refusals[0].reason.contains("(field total_cents)"), "the refusal names the field: {}", refusals[0]);

    let v3_schema = Schema::parse_str(&v3).unwrap();
    let parsed: Vec<(i32, &Schema)> = vec![
        (1, schema_version_of(EventType::OrderPlaced, 1).unwrap()),
        (2, schema_version_of(EventType::OrderPlaced, 2).unwrap()),
        (3, &v3_schema),
    ];
    let local = check_chain(&subject, Compatibility::FullTransitive, &parsed);
    assert!(!local.is_empty() && local.iter().all(|problem| problem.version == 3), "{local:?}");
    assert!(local[0].to_string().contains("total_cents"), "{}", local[0]);
}

#[tokio::test]
async fn the_shipped_schemas_register_in_order_pass_the_registry_check_and_are_found_at_start_up() {
    let client = RegistryClient::new(&registry_base_url()).unwrap();
    let registered =
        register_all(&client).await.unwrap_or_else(|e| panic!("pipeline schemas register would fail: {e}"));
    let placed_subject = subject_for(topic_of(EventType::OrderPlaced), EventType::OrderPlaced);
    let placed_versions: Vec<i32> =
        registered.iter().filter(|entry| entry.subject == placed_subject).map(|entry| entry.version).collect();
    assert_eq!(placed_versions, [1, 2]);

    let config: serde_json::Value =
        reqwest::get(format!("{}/config/{placed_subject}", client.api_url())).await.unwrap().json().await.unwrap();
    assert_eq!(config["compatibilityLevel"], "FULL_TRANSITIVE", "{config}");

    let refusals = check_in_registry(&client).await.unwrap();
    assert!(refusals.is_empty(), "{refusals:?}");

    // A client with empty caches finds each current schema's id, and it is the registered one.
    let ids = current_schema_ids(&RegistryClient::new(&registry_base_url()).unwrap()).await.unwrap();
    for event_type in EventType::ALL {
        let subject = subject_for(topic_of(event_type), event_type);
        let latest = registered.iter().rfind(|entry| entry.subject == subject).unwrap();
        assert_eq!(ids[&event_type], latest.id, "{event_type}");
    }
}

/// A producer starting against a registry that lacks its schemas stops at once and says what
/// to run, rather than failing its first record later. An artifact group of this run's own is
/// such a registry: it holds no subject until the run registers them.
#[tokio::test]
async fn start_up_stops_with_what_to_run_while_a_schema_is_missing_and_finds_them_once_registered() {
    let group = new_run_id();
    let client = RegistryClient::new(&registry_base_url()).unwrap().in_group(&group);
    let error = current_schema_ids(&client).await.expect_err("no schema is registered in a new group");
    assert!(matches!(error, schemas::StartupSchemaError::NotRegistered { .. }), "{error}");
    assert!(error.to_string().contains("pipeline schemas register"), "{error}");

    register_all(&client).await.unwrap_or_else(|e| panic!("registering in group {group}: {e}"));
    let ids = current_schema_ids(&RegistryClient::new(&registry_base_url()).unwrap().in_group(&group)).await.unwrap();
    assert_eq!(ids.len(), EventType::ALL.len());
}
