//! The compatibility level of every subject, from `avro/compatibility.toml`.

use std::collections::HashMap;
use std::sync::LazyLock;

use serde::Deserialize;

use crate::registry::Compatibility;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PolicyFile {
    default: Compatibility,
    #[serde(default)]
    subjects: HashMap<String, Compatibility>,
}

static POLICY: LazyLock<PolicyFile> = LazyLock::new(|| {
    // Part of the source, parsed by a unit test: a failure here is a build defect.
    toml::from_str(include_str!("../avro/compatibility.toml"))
        .unwrap_or_else(|e| panic!("schemas/avro/compatibility.toml: {e}"))
});

/// The level `subject` is registered under.
pub fn compatibility_of(subject: &str) -> Compatibility {
    POLICY.subjects.get(subject).copied().unwrap_or(POLICY.default)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{subject_for, topic_of, EventType};

    #[test]
    fn the_policy_file_parses_and_saga_events_default_to_full_transitive() {
        assert_eq!(POLICY.default, Compatibility::FullTransitive);
        let known: Vec<String> =
            EventType::ALL.into_iter().map(|event_type| subject_for(topic_of(event_type), event_type)).collect();
        for subject in POLICY.subjects.keys() {
            assert!(known.contains(subject), "compatibility.toml names {subject:?}, which no event type uses");
        }
    }
}
