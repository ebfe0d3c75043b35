//! Saga events as plain Avro bodies (binary encoding, no header): what follows the 5-byte
//! wire-format header.

use apache_avro::reader::datum::GenericDatumReader;
use apache_avro::types::Value;
use apache_avro::writer::datum::GenericDatumWriter;
use apache_avro::{from_value, to_value, Schema};
use serde::Deserialize;

use crate::avro_schemas::schema_of;
use crate::event_type::EventType;
use crate::events::{Envelope, Payload, SagaEvent};
use crate::upcast::upcast;

/// A saga event that could not be turned into Avro bytes or back.
#[derive(Debug, thiserror::Error)]
pub enum AvroBodyError {
    #[error("cannot encode {event_type} as Avro: {source}")]
    Encode {
        event_type: EventType,
        #[source]
        source: apache_avro::Error,
    },
    #[error("cannot decode an Avro {event_type} body: {source}")]
    Decode {
        event_type: EventType,
        #[source]
        source: apache_avro::Error,
    },
    #[error("an Avro {event_type} body has {count} bytes left after the record; was it written with another schema?")]
    TrailingBytes { event_type: EventType, count: usize },
    #[error("an Avro body read as {expected} has event_type {found:?}")]
    EventTypeMismatch { expected: EventType, found: String },
}

/// The Avro binary encoding of `event` under the current schema of its type.
pub fn encode_avro_body(event: &SagaEvent) -> Result<Vec<u8>, AvroBodyError> {
    let event_type = event.event_type();
    let schema = schema_of(event_type);
    let encode_error = |source| AvroBodyError::Encode { event_type, source };

    let fields = record_of(event).map_err(encode_error)?;
    // Resolving puts the fields in schema order and applies the logical types (uuid, timestamp).
    let record = Value::Record(fields).resolve(schema).map_err(encode_error)?;

    let writer = GenericDatumWriter::builder(schema).build().map_err(encode_error)?;
    writer.write_value_to_vec(record).map_err(encode_error)
}

/// The event's fields as serde gives them: the envelope, `event_type`, then the payload.
fn record_of(event: &SagaEvent) -> apache_avro::AvroResult<Vec<(String, Value)>> {
    let mut fields = to_value(&event.envelope).and_then(record_fields)?;
    fields.push(("event_type".to_string(), Value::String(event.event_type().as_str().to_string())));
    fields.extend(payload_to_value(&event.payload).and_then(record_fields)?);
    Ok(fields)
}

/// Reads a body written with this crate's schema of `event_type`.
pub fn decode_avro_body(event_type: EventType, body: &[u8]) -> Result<SagaEvent, AvroBodyError> {
    decode_avro_body_written_with(schema_of(event_type), event_type, body)
}

/// Reads a body written with `writer_schema` (e.g. an older or newer version fetched from the
/// registry), resolving it against this crate's schema of `event_type` as Avro specifies, then
/// upcasting it to the current version.
pub fn decode_avro_body_written_with(
    writer_schema: &Schema,
    event_type: EventType,
    body: &[u8],
) -> Result<SagaEvent, AvroBodyError> {
    let decode_error = |source| AvroBodyError::Decode { event_type, source };
    let reader = GenericDatumReader::builder(writer_schema)
        .reader_schema(schema_of(event_type))
        .build()
        .map_err(decode_error)?;
    let mut rest = body;
    let record = reader.read_value(&mut rest).map_err(decode_error)?;
    if !rest.is_empty() {
        return Err(AvroBodyError::TrailingBytes { event_type, count: rest.len() });
    }

    let EventTypeField { event_type: found } = from_value(&record).map_err(decode_error)?;
    if found != event_type.as_str() {
        return Err(AvroBodyError::EventTypeMismatch { expected: event_type, found });
    }

    // Each struct reads its own fields out of the one flat record and ignores the others.
    let envelope: Envelope = from_value(&record).map_err(decode_error)?;
    let payload = payload_from_value(event_type, &record).map_err(decode_error)?;
    // Not `SagaEvent::new`: the upcaster needs the version the writer put there.
    Ok(upcast(SagaEvent { envelope, payload }))
}

/// The `event_type` field of an event record, which the envelope leaves to the payload.
#[derive(Deserialize)]
struct EventTypeField {
    event_type: String,
}

/// The fields of a serialized struct, which apache-avro always turns into a record.
fn record_fields(value: Value) -> apache_avro::AvroResult<Vec<(String, Value)>> {
    match value {
        Value::Record(fields) => Ok(fields),
        other => Err(serde::ser::Error::custom(format!("expected a record, got {other:?}"))),
    }
}

fn payload_to_value(payload: &Payload) -> apache_avro::AvroResult<Value> {
    match payload {
        Payload::OrderPlaced(p) => to_value(p),
        Payload::OrderCancellationRequested(p) => to_value(p),
        Payload::OrderConfirmed(p) => to_value(p),
        Payload::OrderCancelled(p) => to_value(p),
        Payload::PaymentCompleted(p) => to_value(p),
        Payload::PaymentFailed(p) => to_value(p),
        Payload::PaymentRefunded(p) => to_value(p),
        Payload::InventoryReserved(p) => to_value(p),
        Payload::InventoryReservationFailed(p) => to_value(p),
        Payload::InventoryReleased(p) => to_value(p),
        Payload::ShipmentCreated(p) => to_value(p),
        Payload::ShipmentFailed(p) => to_value(p),
        Payload::OrderCancellationRejected(p) => to_value(p),
        Payload::OrderRequiresIntervention(p) => to_value(p),
        Payload::OrderInterventionRequested(p) => to_value(p),
        Payload::ShipmentCancelled(p) => to_value(p),
        Payload::ShipmentCancellationFailed(p) => to_value(p),
    }
}

fn payload_from_value(event_type: EventType, record: &Value) -> apache_avro::AvroResult<Payload> {
    Ok(match event_type {
        EventType::OrderPlaced => Payload::OrderPlaced(from_value(record)?),
        EventType::OrderCancellationRequested => Payload::OrderCancellationRequested(from_value(record)?),
        EventType::OrderConfirmed => Payload::OrderConfirmed(from_value(record)?),
        EventType::OrderCancelled => Payload::OrderCancelled(from_value(record)?),
        EventType::PaymentCompleted => Payload::PaymentCompleted(from_value(record)?),
        EventType::PaymentFailed => Payload::PaymentFailed(from_value(record)?),
        EventType::PaymentRefunded => Payload::PaymentRefunded(from_value(record)?),
        EventType::InventoryReserved => Payload::InventoryReserved(from_value(record)?),
        EventType::InventoryReservationFailed => Payload::InventoryReservationFailed(from_value(record)?),
        EventType::InventoryReleased => Payload::InventoryReleased(from_value(record)?),
        EventType::ShipmentCreated => Payload::ShipmentCreated(from_value(record)?),
        EventType::ShipmentFailed => Payload::ShipmentFailed(from_value(record)?),
        EventType::OrderCancellationRejected => Payload::OrderCancellationRejected(from_value(record)?),
        EventType::OrderRequiresIntervention => Payload::OrderRequiresIntervention(from_value(record)?),
        EventType::OrderInterventionRequested => Payload::OrderInterventionRequested(from_value(record)?),
        EventType::ShipmentCancelled => Payload::ShipmentCancelled(from_value(record)?),
        EventType::ShipmentCancellationFailed => Payload::ShipmentCancellationFailed(from_value(record)?),
    })
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;
    use crate::samples::sample;

    /// Every field path a schema declares, e.g. `items[].unit_price.amount_minor`.
    fn schema_paths(schema: &Schema, prefix: &str, paths: &mut BTreeSet<String>) {
        match schema {
            Schema::Record(record) => {
                for field in &record.fields {
                    let path = if prefix.is_empty() { field.name.clone() } else { format!("{prefix}.{}", field.name) };
                    schema_paths(&field.schema, &path, paths);
                    paths.insert(path);
                }
            }
            Schema::Array(array) => schema_paths(&array.items, &format!("{prefix}[]"), paths),
            Schema::Union(union) => union.variants().iter().for_each(|variant| schema_paths(variant, prefix, paths)),
            _ => {}
        }
    }

    /// Every field path in a serialized value (the samples fill every optional record).
    fn value_paths(fields: &[(String, Value)], prefix: &str, paths: &mut BTreeSet<String>) {
        for (name, value) in fields {
            let path = if prefix.is_empty() { name.clone() } else { format!("{prefix}.{name}") };
            nested_value_paths(value, &path, paths);
            paths.insert(path);
        }
    }

    fn nested_value_paths(value: &Value, path: &str, paths: &mut BTreeSet<String>) {
        match value {
            Value::Record(fields) => value_paths(fields, path, paths),
            Value::Array(items) => items.iter().for_each(|item| nested_value_paths(item, &format!("{path}[]"), paths)),
            Value::Union(_, inner) => nested_value_paths(inner, path, paths),
            _ => {}
        }
    }

    #[test]
    fn the_rust_types_have_exactly_the_fields_of_the_current_avsc_files() {
        for event_type in EventType::ALL {
            let mut declared = BTreeSet::new();
            schema_paths(schema_of(event_type), "", &mut declared);
            let mut serialized = BTreeSet::new();
            value_paths(&record_of(&sample(event_type)).unwrap(), "", &mut serialized);
            assert_eq!(
                serialized,
                declared,
                "{event_type}: the Rust type (left) and avro/v{}/{event_type}.avsc (right) drifted apart",
                crate::current_version_of(event_type)
            );
        }
    }

    #[test]
    fn every_event_round_trips_through_its_avro_body() {
        for event_type in EventType::ALL {
            let event = sample(event_type);
            let body = encode_avro_body(&event).unwrap_or_else(|e| panic!("{e}"));
            let decoded = decode_avro_body(event_type, &body).unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(decoded, event);
        }
    }

    #[test]
    fn the_body_is_plain_avro_under_the_events_schema() {
        let event = sample(EventType::ShipmentFailed);
        let body = encode_avro_body(&event).unwrap();
        let reader = GenericDatumReader::builder(schema_of(EventType::ShipmentFailed)).build().unwrap();
        let Value::Record(fields) = reader.read_value(&mut &body[..]).unwrap() else { panic!("not a record") };
        let names: Vec<&str> = fields.iter().map(|(name, _)| name.as_str()).collect();
        assert_eq!(
            names,
            [
                "event_id",
                "event_type",
                "order_id",
                "occurred_at",
                "correlation_id",
                "causation_id",
                "schema_version",
                "reason"
            ]
        );
        assert_eq!(fields[1].1, Value::String("ShipmentFailed".into()));
        assert_eq!(fields[3].1, Value::TimestampMillis(event.envelope.occurred_at));
    }

    #[test]
    fn an_event_id_that_is_not_a_uuid_is_refused() {
        let mut event = sample(EventType::OrderPlaced);
        event.envelope.event_id = "not-a-uuid".into();
        let error = encode_avro_body(&event).expect_err("event_id must be a UUID");
        assert!(matches!(error, AvroBodyError::Encode { event_type: EventType::OrderPlaced, .. }), "{error}");
    }

    #[test]
    fn a_body_of_another_event_type_is_refused() {
        let body = encode_avro_body(&sample(EventType::ShipmentFailed)).unwrap();
        let error = decode_avro_body(EventType::PaymentFailed, &body).expect_err("layouts differ");
        assert!(matches!(error, AvroBodyError::Decode { .. }), "{error}");
    }

    #[test]
    fn a_body_whose_event_type_field_disagrees_is_refused() {
        let schema = schema_of(EventType::ShipmentFailed);
        let mut fields = to_value(&sample(EventType::ShipmentFailed).envelope).and_then(record_fields).unwrap();
        fields.push(("event_type".into(), Value::String("ShipmentCreated".into())));
        fields.push(("reason".into(), Value::String("lost".into())));
        let record = Value::Record(fields).resolve(schema).unwrap();
        let body = GenericDatumWriter::builder(schema).build().unwrap().write_value_to_vec(record).unwrap();

        let error = decode_avro_body(EventType::ShipmentFailed, &body).expect_err("event_type disagrees");
        assert!(
            matches!(&error, AvroBodyError::EventTypeMismatch { expected: EventType::ShipmentFailed, found } if found == "ShipmentCreated"),
            "{error}"
        );
    }

    #[test]
    fn no_schema_ends_with_an_optional_field() {
        // apache-avro reads a union cut off by the end of the input as null, so a body truncated
        // inside a trailing optional field would decode, silently losing it. With a plain field
        // last, every truncation is an error (the next test).
        for file in crate::schema_files() {
            let schema = Schema::parse_str(file.text).unwrap();
            let Schema::Record(record) = schema else { panic!("avro/{} is not a record", file.path) };
            let last = record.fields.last().expect("records have fields");
            assert!(
                !matches!(last.schema, Schema::Union(_)),
                "avro/{}: the last field, {}, is a union",
                file.path,
                last.name
            );
        }
    }

    #[test]
    fn truncated_bodies_are_refused() {
        for event_type in EventType::ALL {
            let body = encode_avro_body(&sample(event_type)).unwrap();
            for len in 0..body.len() {
                assert!(decode_avro_body(event_type, &body[..len]).is_err(), "{event_type} cut to {len} bytes");
            }
        }
    }

    #[test]
    fn trailing_bytes_are_refused() {
        let mut body = encode_avro_body(&sample(EventType::ShipmentCreated)).unwrap();
        body.extend_from_slice(&[0, 0]);
        let error = decode_avro_body(EventType::ShipmentCreated, &body).expect_err("two extra bytes");
        assert!(matches!(error, AvroBodyError::TrailingBytes { count: 2, .. }), "{error}");
    }

    /// A cheap deterministic byte generator (xorshift) instead of a fuzzing dependency.
    fn pseudo_random_bytes(seed: u64) -> impl Iterator<Item = u8> {
        let mut state = seed;
        std::iter::repeat_with(move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
    }

    #[test]
    fn garbage_bodies_never_panic() {
        let mut bytes = pseudo_random_bytes(0x2545_f491_4f6c_dd1d);
        for event_type in EventType::ALL {
            for len in [0, 1, 5, 17, 64, 300, 4096] {
                let garbage: Vec<u8> = bytes.by_ref().take(len).collect();
                let _ = decode_avro_body(event_type, &garbage);
            }
        }
    }

    #[test]
    fn corrupted_bodies_never_panic() {
        let mut bytes = pseudo_random_bytes(0x9e37_79b9_7f4a_7c15);
        for event_type in EventType::ALL {
            let body = encode_avro_body(&sample(event_type)).unwrap();
            for position in 0..body.len() {
                let mut corrupted = body.clone();
                corrupted[position] = bytes.next().unwrap_or_default();
                let _ = decode_avro_body(event_type, &corrupted);
            }
        }
    }
}
