//! Every `.avsc` file under `avro/v<N>/`, compiled into the binary (see `build.rs`) and parsed
//! once. An event type's current version, the one this crate writes and reads into its Rust
//! types, is the highest `v<N>` directory that holds its file.

use std::collections::HashMap;
use std::sync::LazyLock;

use apache_avro::Schema;

use crate::event_type::EventType;

/// One schema file: `avro/<path>`, version `version` of `event_type`'s schema.
#[derive(Debug)]
pub struct SchemaFile {
    pub event_type: &'static str,
    pub version: i32,
    pub path: &'static str,
    pub text: &'static str,
}

/// Sorted by event type, then version.
static SCHEMA_FILES: &[SchemaFile] = include!(concat!(env!("OUT_DIR"), "/schema_files.rs"));

/// Every version of an event type's schema, oldest first.
pub fn schema_versions_of(event_type: EventType) -> impl Iterator<Item = &'static SchemaFile> {
    SCHEMA_FILES.iter().filter(move |file| file.event_type == event_type.as_str())
}

/// Every schema file of every event type, for checks that walk all of them.
pub fn schema_files() -> &'static [SchemaFile] {
    SCHEMA_FILES
}

fn current_file_of(event_type: EventType) -> &'static SchemaFile {
    // A unit test checks that every event type has a v1 file, so this is a build defect if hit.
    schema_versions_of(event_type).last().unwrap_or_else(|| panic!("avro/v1/{event_type}.avsc is missing"))
}

/// The version this crate writes: the `schema_version` of every event of that type it produces.
pub fn current_version_of(event_type: EventType) -> i32 {
    current_file_of(event_type).version
}

/// The current schema file of an event type, exactly as it is registered.
pub fn schema_text_of(event_type: EventType) -> &'static str {
    current_file_of(event_type).text
}

static PARSED: LazyLock<HashMap<(EventType, i32), Schema>> = LazyLock::new(|| {
    EventType::ALL
        .into_iter()
        .flat_map(|event_type| schema_versions_of(event_type).map(move |file| (event_type, file)))
        .map(|(event_type, file)| {
            // The files are part of the source and a unit test parses each one, so a failure here
            // is a build defect, not bad input.
            let schema = Schema::parse_str(file.text)
                .unwrap_or_else(|e| panic!("avro/{} is not a valid Avro schema: {e}", file.path));
            ((event_type, file.version), schema)
        })
        .collect()
});

/// The parsed current schema of an event type: the writer schema of what we produce and the
/// reader schema of what we consume.
pub fn schema_of(event_type: EventType) -> &'static Schema {
    &PARSED[&(event_type, current_version_of(event_type))]
}

/// An earlier (or the current) version of an event type's schema, as shipped in `avro/v<N>/`.
pub fn schema_version_of(event_type: EventType, version: i32) -> Option<&'static Schema> {
    PARSED.get(&(event_type, version))
}

#[cfg(test)]
mod tests {
    use apache_avro::schema::{RecordField, RecordSchema};

    use super::*;

    fn record_fields(schema: &Schema) -> &[RecordField] {
        match schema {
            Schema::Record(RecordSchema { fields, .. }) => fields,
            other => panic!("not a record: {other:?}"),
        }
    }

    fn every_version() -> impl Iterator<Item = (EventType, i32, &'static Schema)> {
        EventType::ALL.into_iter().flat_map(|event_type| {
            schema_versions_of(event_type)
                .map(move |file| (event_type, file.version, &PARSED[&(event_type, file.version)]))
        })
    }

    #[test]
    fn every_schema_file_is_named_after_a_known_event_type() {
        for file in schema_files() {
            assert!(file.event_type.parse::<EventType>().is_ok(), "avro/{}: no such event type", file.path);
        }
    }

    #[test]
    fn every_event_type_has_versions_from_1_without_gaps() {
        for event_type in EventType::ALL {
            let versions: Vec<i32> = schema_versions_of(event_type).map(|file| file.version).collect();
            let expected: Vec<i32> = (1..=versions.len() as i32).collect();
            assert_eq!(versions, expected, "{event_type}");
        }
    }

    #[test]
    fn every_schema_file_parses_as_a_record_named_after_its_event_type() {
        for file in schema_files() {
            let schema = Schema::parse_str(file.text).unwrap_or_else(|e| panic!("avro/{}: {e}", file.path));
            let name = schema.name().expect("records are named");
            assert_eq!(name.fullname(None), format!("saga.events.{}", file.event_type), "avro/{}", file.path);
        }
    }

    #[test]
    fn every_schema_starts_with_the_envelope_and_defaults_schema_version_to_its_own() {
        let envelope =
            ["event_id", "event_type", "order_id", "occurred_at", "correlation_id", "causation_id", "schema_version"];
        for (event_type, version, schema) in every_version() {
            let fields = record_fields(schema);
            let names: Vec<&str> = fields.iter().map(|field| field.name.as_str()).collect();
            assert_eq!(names[..envelope.len()], envelope, "{event_type} v{version}");
            assert!(matches!(fields[0].schema, Schema::Uuid(_)), "{event_type}.event_id is a uuid string");
            assert_eq!(fields[3].schema, Schema::TimestampMillis, "{event_type}.occurred_at");
            assert_eq!(fields[5].default, Some(serde_json::Value::Null), "{event_type}.causation_id");
            assert_eq!(fields[6].default, Some(serde_json::json!(version)), "{event_type} v{version}.schema_version");
        }
    }

    #[test]
    fn optional_fields_have_defaults_so_schemas_can_evolve() {
        for (event_type, version, schema) in every_version() {
            for field in record_fields(schema) {
                if let Schema::Union(union) = &field.schema {
                    assert!(
                        field.default.is_some(),
                        "{event_type} v{version}.{} is a union without a default",
                        field.name
                    );
                    assert_eq!(union.variants()[0], Schema::Null, "{event_type} v{version}.{}: null first", field.name);
                }
            }
        }
    }
}
