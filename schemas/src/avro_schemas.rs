//! The `.avsc` files of `avro/v1`, compiled into the binary and parsed once.

use std::collections::HashMap;
use std::sync::LazyLock;

use apache_avro::Schema;

use crate::event_type::EventType;

/// Major version of the schemas below; written into every event's `schema_version`.
pub const SCHEMA_VERSION: i32 = 1;

/// The schema file of an event type, exactly as it is registered.
pub fn schema_text_of(event_type: EventType) -> &'static str {
    match event_type {
        EventType::OrderPlaced => include_str!("../avro/v1/OrderPlaced.avsc"),
        EventType::OrderCancellationRequested => include_str!("../avro/v1/OrderCancellationRequested.avsc"),
        EventType::OrderConfirmed => include_str!("../avro/v1/OrderConfirmed.avsc"),
        EventType::OrderCancelled => include_str!("../avro/v1/OrderCancelled.avsc"),
        EventType::PaymentCompleted => include_str!("../avro/v1/PaymentCompleted.avsc"),
        EventType::PaymentFailed => include_str!("../avro/v1/PaymentFailed.avsc"),
        EventType::PaymentRefunded => include_str!("../avro/v1/PaymentRefunded.avsc"),
        EventType::InventoryReserved => include_str!("../avro/v1/InventoryReserved.avsc"),
        EventType::InventoryReservationFailed => include_str!("../avro/v1/InventoryReservationFailed.avsc"),
        EventType::InventoryReleased => include_str!("../avro/v1/InventoryReleased.avsc"),
        EventType::ShipmentCreated => include_str!("../avro/v1/ShipmentCreated.avsc"),
        EventType::ShipmentFailed => include_str!("../avro/v1/ShipmentFailed.avsc"),
        EventType::OrderCancellationRejected => include_str!("../avro/v1/OrderCancellationRejected.avsc"),
        EventType::OrderRequiresIntervention => include_str!("../avro/v1/OrderRequiresIntervention.avsc"),
        EventType::OrderInterventionRequested => include_str!("../avro/v1/OrderInterventionRequested.avsc"),
        EventType::ShipmentCancelled => include_str!("../avro/v1/ShipmentCancelled.avsc"),
        EventType::ShipmentCancellationFailed => include_str!("../avro/v1/ShipmentCancellationFailed.avsc"),
    }
}

static SCHEMAS: LazyLock<HashMap<EventType, Schema>> = LazyLock::new(|| {
    EventType::ALL
        .into_iter()
        .map(|event_type| {
            // The files are part of the source and a unit test parses each one, so a failure here
            // is a build defect, not bad input.
            let schema = Schema::parse_str(schema_text_of(event_type))
                .unwrap_or_else(|e| panic!("avro/v1/{event_type}.avsc is not a valid Avro schema: {e}"));
            (event_type, schema)
        })
        .collect()
});

/// The parsed schema of an event type: the writer schema of what we produce and the reader
/// schema of what we consume.
pub fn schema_of(event_type: EventType) -> &'static Schema {
    &SCHEMAS[&event_type]
}

#[cfg(test)]
mod tests {
    use apache_avro::schema::{RecordField, RecordSchema};

    use super::*;

    fn record_fields(event_type: EventType) -> &'static [RecordField] {
        match schema_of(event_type) {
            Schema::Record(RecordSchema { fields, .. }) => fields,
            other => panic!("{event_type}.avsc is not a record: {other:?}"),
        }
    }

    #[test]
    fn every_schema_file_parses_as_a_record_named_after_its_event_type() {
        for event_type in EventType::ALL {
            let parsed = Schema::parse_str(schema_text_of(event_type));
            let schema = parsed.unwrap_or_else(|e| panic!("{event_type}.avsc: {e}"));
            let name = schema.name().expect("records are named");
            assert_eq!(name.fullname(None), event_type.full_name());
        }
    }

    #[test]
    fn every_schema_starts_with_the_envelope() {
        let envelope =
            ["event_id", "event_type", "order_id", "occurred_at", "correlation_id", "causation_id", "schema_version"];
        for event_type in EventType::ALL {
            let names: Vec<&str> = record_fields(event_type).iter().map(|field| field.name.as_str()).collect();
            assert_eq!(names[..envelope.len()], envelope, "{event_type}");
            let fields = record_fields(event_type);
            assert!(matches!(fields[0].schema, Schema::Uuid(_)), "{event_type}.event_id is a uuid string");
            assert_eq!(fields[3].schema, Schema::TimestampMillis, "{event_type}.occurred_at");
            assert_eq!(fields[5].default, Some(serde_json::Value::Null), "{event_type}.causation_id");
            assert_eq!(fields[6].default, Some(serde_json::json!(SCHEMA_VERSION)), "{event_type}.schema_version");
        }
    }

    #[test]
    fn optional_fields_have_defaults_so_schemas_can_evolve() {
        for event_type in EventType::ALL {
            for field in record_fields(event_type) {
                if let Schema::Union(union) = &field.schema {
                    assert!(field.default.is_some(), "{event_type}.{} is a union without a default", field.name);
                    assert_eq!(union.variants()[0], Schema::Null, "{event_type}.{}: null first", field.name);
                }
            }
        }
    }
}
