//! Schema evolution as the registry's BACKWARD rule allows it: consumers move to a new version
//! first, so a new reader must read what old writers wrote.

use apache_avro::reader::datum::GenericDatumReader;
use apache_avro::schema_compatibility::SchemaCompatibility;
use apache_avro::types::Value;
use apache_avro::writer::datum::GenericDatumWriter;
use apache_avro::Schema;
use serde_json::json;

use crate::samples::sample;
use crate::{decode_avro_body_written_with, encode_avro_body, schema_of, schema_text_of, EventType, SCHEMA_VERSION};

/// The v1 schema of `event_type` with `new_fields` appended, as a v2 would be written.
fn with_added_fields(event_type: EventType, new_fields: serde_json::Value) -> Schema {
    let mut schema: serde_json::Value = serde_json::from_str(schema_text_of(event_type)).unwrap();
    let fields = schema["fields"].as_array_mut().unwrap();
    fields.extend(new_fields.as_array().unwrap().iter().cloned());
    Schema::parse(&schema).unwrap()
}

fn defaulted_fields() -> serde_json::Value {
    json!([
        {"name": "gift_message", "type": ["null", "string"], "default": null},
        {"name": "loyalty_points", "type": "int", "default": 0}
    ])
}

fn field<'v>(record: &'v Value, name: &str) -> &'v Value {
    let Value::Record(fields) = record else { panic!("not a record: {record:?}") };
    &fields.iter().find(|(field, _)| field == name).unwrap_or_else(|| panic!("no field {name}")).1
}

#[test]
fn a_v2_reader_with_added_defaulted_fields_reads_v1_data() {
    let v1 = schema_of(EventType::OrderPlaced);
    let v2 = with_added_fields(EventType::OrderPlaced, defaulted_fields());
    assert!(SchemaCompatibility::can_read(v1, &v2).is_ok(), "v2 must read v1");

    let event = sample(EventType::OrderPlaced);
    let v1_body = encode_avro_body(&event).unwrap();
    let reader = GenericDatumReader::builder(v1).reader_schema(&v2).build().unwrap();
    let read = reader.read_value(&mut &v1_body[..]).unwrap();

    assert_eq!(field(&read, "gift_message"), &Value::Union(0, Box::new(Value::Null)));
    assert_eq!(field(&read, "loyalty_points"), &Value::Int(0));
    assert_eq!(field(&read, "order_id"), &Value::String(event.envelope.order_id));
    assert_eq!(field(&read, "total_cents"), &Value::Long(48_998));
    assert_eq!(field(&read, "schema_version"), &Value::Int(SCHEMA_VERSION));
}

#[test]
fn a_v2_reader_with_an_added_required_field_cannot_read_v1_data() {
    let v1 = schema_of(EventType::OrderPlaced);
    let v2 = with_added_fields(EventType::OrderPlaced, json!([{"name": "gift_message", "type": "string"}]));
    assert!(SchemaCompatibility::can_read(v1, &v2).is_err(), "a field without default breaks BACKWARD");

    let v1_body = encode_avro_body(&sample(EventType::OrderPlaced)).unwrap();
    let reader = GenericDatumReader::builder(v1).reader_schema(&v2).build().unwrap();
    assert!(reader.read_value(&mut &v1_body[..]).is_err());
}

#[test]
fn this_crates_types_read_data_written_with_a_v2_schema() {
    // A producer that moved to v2 first: its extra fields are skipped by our v1 reader.
    let v2 = with_added_fields(EventType::OrderPlaced, defaulted_fields());
    let event = sample(EventType::OrderPlaced);
    let v1_record = GenericDatumReader::builder(schema_of(EventType::OrderPlaced))
        .build()
        .unwrap()
        .read_value(&mut &encode_avro_body(&event).unwrap()[..])
        .unwrap();
    let Value::Record(mut fields) = v1_record else { panic!("not a record") };
    fields.push(("gift_message".into(), Value::Union(1, Box::new(Value::String("Happy birthday".into())))));
    fields.push(("loyalty_points".into(), Value::Int(120)));
    let v2_body = GenericDatumWriter::builder(&v2).build().unwrap().write_value_to_vec(Value::Record(fields)).unwrap();

    let decoded = decode_avro_body_written_with(&v2, EventType::OrderPlaced, &v2_body).unwrap();
    assert_eq!(decoded, event);
}
