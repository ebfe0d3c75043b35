//! The schemas of `avro/` and the live registry: registering every version in order, checking
//! the chain with the registry's own rules, and the look-up producers make at start-up.

use std::collections::HashMap;
use std::fmt;

use crate::avro_schemas::{current_version_of, schema_text_of, schema_versions_of};
use crate::codec::subject_for;
use crate::event_type::{topic_of, EventType};
use crate::policy::compatibility_of;
use crate::registry::{Compatibility, RegistryClient, RegistryError};

/// One version registered under its subject.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Registered {
    pub subject: String,
    pub version: i32,
    pub id: u32,
}

/// Sets each subject's level from `compatibility.toml`, then registers every version of its
/// schema, oldest first (a version already there keeps its id). Stops at the first refusal.
pub async fn register_all(registry: &RegistryClient) -> Result<Vec<Registered>, RegistryError> {
    let mut registered = Vec::new();
    for event_type in EventType::ALL {
        let subject = subject_for(topic_of(event_type), event_type);
        registry.set_compatibility(&subject, compatibility_of(&subject)).await?;
        for file in schema_versions_of(event_type) {
            let id = registry.register(&subject, file.text).await?;
            registered.push(Registered { subject: subject.clone(), version: file.version, id });
        }
    }
    Ok(registered)
}

/// A version the live registry would refuse.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RegistryRefusal {
    pub subject: String,
    pub version: i32,
    /// What was checked: the version chain on a scratch subject, or the real subject as it is.
    pub against: String,
    /// The registry's reason, as far as it gives one.
    pub reason: String,
}

impl fmt::Display for RegistryRefusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let RegistryRefusal { subject, version, against, reason } = self;
        write!(f, "{subject}: the registry refuses v{version} against {against}: {reason}")
    }
}

/// Checks every version against the earlier ones with the registry's compatibility endpoint
/// (see [`check_chain_in_registry`]), and the current version against what the real subject
/// holds, so that `register` would not be refused.
pub async fn check_in_registry(registry: &RegistryClient) -> Result<Vec<RegistryRefusal>, RegistryError> {
    let mut refusals = Vec::new();
    for event_type in EventType::ALL {
        let subject = subject_for(topic_of(event_type), event_type);
        let versions: Vec<(i32, &str)> = schema_versions_of(event_type).map(|file| (file.version, file.text)).collect();
        refusals.extend(check_chain_in_registry(registry, &subject, compatibility_of(&subject), &versions).await?);

        let current = schema_text_of(event_type);
        if registry.lookup(&subject, current).await?.is_none() && !registry.is_compatible(&subject, current).await? {
            refusals.push(RegistryRefusal {
                subject: subject.clone(),
                version: current_version_of(event_type),
                against: "the versions the real subject holds".to_string(),
                reason: "the registry's compatibility endpoint answered is_compatible=false".to_string(),
            });
        }
    }
    Ok(refusals)
}

/// Checks `versions` (oldest first) with the registry's own rules: on a scratch subject set to
/// `level` and filled version by version, then deleted, so the real subject is never touched.
pub async fn check_chain_in_registry(
    registry: &RegistryClient,
    subject: &str,
    level: Compatibility,
    versions: &[(i32, &str)],
) -> Result<Vec<RegistryRefusal>, RegistryError> {
    let scratch = format!("schemas-check-{}-{subject}", uuid::Uuid::now_v7().simple());
    let checked = fill_scratch_subject(registry, subject, &scratch, level, versions).await;
    registry.delete_subject(&scratch).await?;
    checked
}

async fn fill_scratch_subject(
    registry: &RegistryClient,
    subject: &str,
    scratch: &str,
    level: Compatibility,
    versions: &[(i32, &str)],
) -> Result<Vec<RegistryRefusal>, RegistryError> {
    registry.set_compatibility(scratch, level).await?;
    let mut refusals = Vec::new();
    for &(version, text) in versions {
        if registry.is_compatible(scratch, text).await? {
            registry.register(scratch, text).await?;
            continue;
        }
        // The endpoint says only yes or no; a registration attempt is refused with the
        // registry's list of differing fields.
        let reason = match registry.register(scratch, text).await {
            Err(RegistryError::Incompatible { message, .. }) => name_fields_in(&message, text),
            Err(other) => return Err(other),
            Ok(_) => "the compatibility endpoint said no, yet the registry accepted it".to_string(),
        };
        refusals.push(RegistryRefusal {
            subject: subject.to_string(),
            version,
            against: format!("the earlier versions at {level}"),
            reason,
        });
    }
    Ok(refusals)
}

/// Apicurio names a differing field by its JSON path in the schema (`/fields/9/type`); this
/// appends the field's name to each path, so the message says which field.
fn name_fields_in(message: &str, schema_text: &str) -> String {
    let Ok(schema) = serde_json::from_str::<serde_json::Value>(schema_text) else { return message.to_string() };
    let mut named = String::with_capacity(message.len());
    let mut rest = message;
    while let Some(start) = rest.find("/fields/") {
        let end =
            rest[start..].find(|c: char| c.is_whitespace() || c == ']' || c == ',').map_or(rest.len(), |n| start + n);
        let path = &rest[start..end];
        named.push_str(&rest[..end]);
        if let Some(name) = field_name_at(&schema, path) {
            named.push_str(&format!(" (field {name})"));
        }
        rest = &rest[end..];
    }
    named.push_str(rest);
    named
}

/// The name of the innermost field a path like `/fields/8/type/items/fields/3/type` points into.
fn field_name_at(schema: &serde_json::Value, path: &str) -> Option<String> {
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let last_field = segments.windows(2).rposition(|pair| pair[0] == "fields" && pair[1].parse::<usize>().is_ok())?;
    let pointer = format!("/{}", segments[..last_field + 2].join("/"));
    schema.pointer(&pointer)?.get("name")?.as_str().map(str::to_string)
}

/// A producer's start-up check failed: one of its current schemas is not in the registry.
#[derive(Debug, thiserror::Error)]
pub enum StartupSchemaError {
    #[error(
        "schema v{version} of {event_type} is not registered under subject {subject:?} (or differs from what is): \
         run `pipeline schemas register` first, or `pipeline schemas check` to see why it would be refused"
    )]
    NotRegistered { event_type: EventType, version: i32, subject: String },
    #[error(transparent)]
    Registry(#[from] RegistryError),
}

/// The registry id of every event type's current schema, looked up without registering.
pub async fn current_schema_ids(registry: &RegistryClient) -> Result<HashMap<EventType, u32>, StartupSchemaError> {
    let mut ids = HashMap::new();
    for event_type in EventType::ALL {
        let subject = subject_for(topic_of(event_type), event_type);
        let id = registry.lookup(&subject, schema_text_of(event_type)).await?.ok_or_else(|| {
            StartupSchemaError::NotRegistered {
                event_type,
                version: current_version_of(event_type),
                subject: subject.clone(),
            }
        })?;
        ids.insert(event_type, id);
    }
    Ok(ids)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_registrys_field_paths_get_their_field_names() {
        let schema = r#"{"type": "record", "name": "P", "fields": [
            {"name": "a", "type": "string"},
            {"name": "items", "type": {"type": "array", "items": {"type": "record", "name": "I", "fields": [{"name": "price", "type": "long"}]}}}
        ]}"#;
        let message = "list of diff types: [reader type: LONG not compatible at /fields/0/type, x at /fields/1/type/items/fields/0/type]";
        assert_eq!(
            name_fields_in(message, schema),
            "list of diff types: [reader type: LONG not compatible at /fields/0/type (field a), \
             x at /fields/1/type/items/fields/0/type (field price)]"
        );
        assert_eq!(name_fields_in("no paths here", schema), "no paths here");
        assert_eq!(name_fields_in("at /fields/7", schema), "at /fields/7", "a path to no field is left as it is");
    }
}
