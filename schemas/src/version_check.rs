//! Every schema version checked against the earlier ones, as its subject's compatibility level
//! demands, with `apache-avro`'s schema resolution rules: what `pipeline schemas check` runs
//! before anything reaches a registry.

use std::fmt;

use apache_avro::schema_compatibility::SchemaCompatibility;
use apache_avro::Schema;

use crate::avro_schemas::{schema_version_of, schema_versions_of};
use crate::codec::subject_for;
use crate::event_type::{topic_of, EventType};
use crate::policy::compatibility_of;
use crate::registry::{error_chain, Compatibility};

/// Which way data must stay readable between two versions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    /// The newer version reads data written with the older one (consumers upgrade first).
    Backward,
    /// The older version reads data written with the newer one (producers upgrade first).
    Forward,
}

/// A version that breaks its subject's level against an earlier version.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Incompatibility {
    pub subject: String,
    pub level: Compatibility,
    pub version: i32,
    pub earlier: i32,
    pub direction: Direction,
    /// apache-avro's explanation, naming the field and the rule.
    pub reason: String,
}

impl fmt::Display for Incompatibility {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Incompatibility { subject, level, version, earlier, direction, reason } = self;
        let (reader, writer) = match direction {
            Direction::Backward => (version, earlier),
            Direction::Forward => (earlier, version),
        };
        write!(f, "{subject}: v{version} breaks {level} against v{earlier}: a v{reader} reader cannot read v{writer} data: {reason}")
    }
}

impl Compatibility {
    /// The directions a new version must keep, and whether against every earlier version or
    /// the one before it only.
    pub fn rules(self) -> (&'static [Direction], bool) {
        use Direction::{Backward, Forward};
        match self {
            Compatibility::None => (&[], false),
            Compatibility::Backward => (&[Backward], false),
            Compatibility::BackwardTransitive => (&[Backward], true),
            Compatibility::Forward => (&[Forward], false),
            Compatibility::ForwardTransitive => (&[Forward], true),
            Compatibility::Full => (&[Backward, Forward], false),
            Compatibility::FullTransitive => (&[Backward, Forward], true),
        }
    }
}

/// Every way a version in `avro/` breaks its subject's level; empty when all is well.
pub fn check_versions() -> Vec<Incompatibility> {
    EventType::ALL
        .into_iter()
        .flat_map(|event_type| {
            let subject = subject_for(topic_of(event_type), event_type);
            let level = compatibility_of(&subject);
            let versions: Vec<(i32, &Schema)> = schema_versions_of(event_type)
                .filter_map(|file| schema_version_of(event_type, file.version).map(|schema| (file.version, schema)))
                .collect();
            check_chain(&subject, level, &versions)
        })
        .collect()
}

/// `versions` oldest first; each is checked against the earlier ones `level` names.
pub fn check_chain(subject: &str, level: Compatibility, versions: &[(i32, &Schema)]) -> Vec<Incompatibility> {
    let (directions, transitive) = level.rules();
    let mut found = Vec::new();
    for (index, &(version, schema)) in versions.iter().enumerate() {
        let earlier_ones = if transitive { &versions[..index] } else { &versions[index.saturating_sub(1)..index] };
        for &(earlier, earlier_schema) in earlier_ones {
            for &direction in directions {
                let (writer, reader) = match direction {
                    Direction::Backward => (earlier_schema, schema),
                    Direction::Forward => (schema, earlier_schema),
                };
                if let Err(error) = SchemaCompatibility::can_read(writer, reader) {
                    found.push(Incompatibility {
                        subject: subject.to_string(),
                        level,
                        version,
                        earlier,
                        direction,
                        reason: error_chain(&error),
                    });
                }
            }
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(fields: &str) -> Schema {
        Schema::parse_str(&format!(r#"{{"type": "record", "name": "P", "fields": [{fields}]}}"#)).unwrap()
    }

    #[test]
    fn the_shipped_versions_keep_their_levels() {
        let problems = check_versions();
        assert!(problems.is_empty(), "{}", problems.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n"));
    }

    #[test]
    fn a_field_added_without_a_default_breaks_backward_and_names_the_field() {
        let v1 = record(r#"{"name": "a", "type": "string"}"#);
        let v2 = record(r#"{"name": "a", "type": "string"}, {"name": "gift", "type": "string"}"#);
        let problems = check_chain("s", Compatibility::Backward, &[(1, &v1), (2, &v2)]);
        assert_eq!(problems.len(), 1, "{problems:?}");
        let message = problems[0].to_string();
        assert!(message.contains("v2 breaks BACKWARD against v1"), "{message}");
        assert!(message.contains("'gift'") && message.contains("default"), "{message}");
        // Old readers ignore the new field: FORWARD holds.
        assert!(check_chain("s", Compatibility::Forward, &[(1, &v1), (2, &v2)]).is_empty());
    }

    #[test]
    fn a_changed_field_type_breaks_full() {
        let v1 = record(r#"{"name": "price", "type": "long"}"#);
        let v2 = record(r#"{"name": "price", "type": "string"}"#);
        let problems = check_chain("s", Compatibility::Full, &[(1, &v1), (2, &v2)]);
        let directions: Vec<Direction> = problems.iter().map(|problem| problem.direction).collect();
        assert_eq!(directions, [Direction::Backward, Direction::Forward], "{problems:?}");
        assert!(problems[0].reason.contains("price"), "{}", problems[0].reason);
    }

    #[test]
    fn transitive_levels_check_every_earlier_version_and_the_others_only_the_last() {
        // v2 gives `c` a default, v3 drops it: fine against v2 either way, but a v1 reader
        // needs `c`.
        let v1 = record(r#"{"name": "a", "type": "string"}, {"name": "c", "type": "int"}"#);
        let v2 = record(r#"{"name": "a", "type": "string"}, {"name": "c", "type": "int", "default": 0}"#);
        let v3 = record(r#"{"name": "a", "type": "string"}"#);
        let chain = [(1, &v1), (2, &v2), (3, &v3)];
        assert!(check_chain("s", Compatibility::Full, &chain).is_empty());
        let problems = check_chain("s", Compatibility::FullTransitive, &chain);
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert_eq!((problems[0].version, problems[0].earlier, problems[0].direction), (3, 1, Direction::Forward));
        assert!(check_chain("s", Compatibility::None, &chain).is_empty());
    }
}
