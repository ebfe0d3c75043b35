//! Schema evolution with the real versions of `avro/`: OrderPlaced v1 and v2 read each other's
//! data (FULL_TRANSITIVE), field values survive, and a change that breaks the rules is caught.

use apache_avro::reader::datum::GenericDatumReader;
use apache_avro::schema_compatibility::SchemaCompatibility;
use apache_avro::types::Value;
use apache_avro::writer::datum::GenericDatumWriter;
use apache_avro::Schema;
use serde_json::json;

use crate::samples::sample;
use crate::{
    decode_avro_body_written_with, encode_avro_body, schema_of, schema_text_of, schema_version_of, EventType, Money,
    Payload,
};

fn order_placed_v1() -> &'static Schema {
    schema_version_of(EventType::OrderPlaced, 1).expect("avro/v1/OrderPlaced.avsc")
}

fn field<'v>(record: &'v Value, name: &str) -> &'v Value {
    let Value::Record(fields) = record else { panic!("not a record: {record:?}") };
    &fields.iter().find(|(field, _)| field == name).unwrap_or_else(|| panic!("no field {name}")).1
}

fn unwrap_union(value: &Value) -> &Value {
    match value {
        Value::Union(_, inner) => inner,
        other => other,
    }
}

/// What a producer still on v1 writes for the sample order: the v2 sample, read through v1.
fn v1_body_of_the_sample() -> Vec<u8> {
    let v2_body = encode_avro_body(&sample(EventType::OrderPlaced)).unwrap();
    let as_v1 = GenericDatumReader::builder(schema_of(EventType::OrderPlaced))
        .reader_schema(order_placed_v1())
        .build()
        .unwrap()
        .read_value(&mut &v2_body[..])
        .unwrap();
    let Value::Record(mut fields) = as_v1 else { panic!("not a record") };
    // A v1 writer stamps its own version.
    fields.iter_mut().filter(|(name, _)| name == "schema_version").for_each(|(_, value)| *value = Value::Int(1));
    GenericDatumWriter::builder(order_placed_v1()).build().unwrap().write_value_to_vec(Value::Record(fields)).unwrap()
}

#[test]
fn order_placed_v2_and_v1_read_each_other_in_both_directions() {
    let (v1, v2) = (order_placed_v1(), schema_of(EventType::OrderPlaced));
    assert!(SchemaCompatibility::can_read(v1, v2).is_ok(), "BACKWARD: v2 reads v1 data");
    assert!(SchemaCompatibility::can_read(v2, v1).is_ok(), "FORWARD: v1 reads v2 data");
}

#[test]
fn a_v1_consumer_reads_what_a_v2_producer_writes_with_the_deprecated_cents_intact() {
    let event = sample(EventType::OrderPlaced);
    let v2_body = encode_avro_body(&event).unwrap();
    let read = GenericDatumReader::builder(schema_of(EventType::OrderPlaced))
        .reader_schema(order_placed_v1())
        .build()
        .unwrap()
        .read_value(&mut &v2_body[..])
        .unwrap();

    assert_eq!(field(&read, "order_id"), &Value::String(event.envelope.order_id.clone()));
    assert_eq!(field(&read, "total_cents"), &Value::Long(48_998));
    let Value::Array(items) = field(&read, "items") else { panic!("items is an array") };
    let cents: Vec<&Value> = items.iter().map(|item| field(item, "unit_price_cents")).collect();
    assert_eq!(cents, [&Value::Long(1_999), &Value::Long(45_000)]);
    assert_eq!(field(field(&read, "shipping_address"), "city"), &Value::String("Köln".into()));
}

#[test]
fn a_v2_consumer_reads_what_a_v1_producer_wrote_and_the_upcaster_prices_the_items() {
    let decoded =
        decode_avro_body_written_with(order_placed_v1(), EventType::OrderPlaced, &v1_body_of_the_sample()).unwrap();
    let Payload::OrderPlaced(placed) = &decoded.payload else { panic!("not an OrderPlaced: {decoded:?}") };

    let prices: Vec<Option<Money>> = placed.items.iter().map(|item| item.unit_price.clone()).collect();
    assert_eq!(prices, [Some(Money::new(1_999, "EUR")), Some(Money::new(45_000, "EUR"))]);
    assert_eq!(placed.currency, "EUR", "the v2 default");
    assert_eq!((placed.coupon_code.as_deref(), placed.shipping_address.line2.as_deref()), (None, None));
    assert_eq!((placed.customer_id.as_str(), placed.total_cents), ("cust-7", 48_998));
    assert_eq!(decoded.envelope.schema_version, 2, "upcast to the current version");
}

#[test]
fn avro_resolution_fills_the_v2_defaults_and_leaves_unit_price_to_the_upcaster() {
    // The v2 fields a v1 body lacks come from their defaults.
    let read = GenericDatumReader::builder(order_placed_v1())
        .reader_schema(schema_of(EventType::OrderPlaced))
        .build()
        .unwrap()
        .read_value(&mut &v1_body_of_the_sample()[..])
        .unwrap();
    assert_eq!(field(&read, "currency"), &Value::String("EUR".into()));
    assert_eq!(unwrap_union(field(&read, "coupon_code")), &Value::Null);
    let Value::Array(items) = field(&read, "items") else { panic!("items is an array") };
    assert_eq!(unwrap_union(field(&items[0], "unit_price")), &Value::Null, "filled by the upcaster, not by Avro");
}

/// The current schema of `event_type` with `new_fields` appended, as a careless next version.
fn with_added_fields(event_type: EventType, new_fields: serde_json::Value) -> Schema {
    let mut schema: serde_json::Value = serde_json::from_str(schema_text_of(event_type)).unwrap();
    let fields = schema["fields"].as_array_mut().unwrap();
    fields.extend(new_fields.as_array().unwrap().iter().cloned());
    Schema::parse(&schema).unwrap()
}

#[test]
fn a_next_version_with_an_added_required_field_cannot_read_current_data() {
    let current = schema_of(EventType::OrderPlaced);
    let next = with_added_fields(EventType::OrderPlaced, json!([{"name": "gift_message", "type": "string"}]));
    assert!(SchemaCompatibility::can_read(current, &next).is_err(), "a field without default breaks BACKWARD");

    let body = encode_avro_body(&sample(EventType::OrderPlaced)).unwrap();
    let reader = GenericDatumReader::builder(current).reader_schema(&next).build().unwrap();
    assert!(reader.read_value(&mut &body[..]).is_err());
}
