//! Creates the internal topics a topology needs before it runs: repartition and changelog
//! topics, and the dead-letter topics and retry lanes the error policy uses.

use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::types::RDKafkaErrorCode;

use super::config::StreamsConfig;
use super::error::RuntimeError;
use super::repartition_configs::{self, REPARTITION_CONFIGS};
use super::retry::retry_lane_topic;
use crate::error::ErrorPolicy;
use crate::topology::Topology;

/// Name of the dead-letter topic of a source topic.
pub fn dead_letter_topic(source_topic: &str) -> String {
    format!("{source_topic}.dlq")
}

/// The dead-letter topics the error policy may write: one per source topic and one per retry
/// lane; none under `Skip`.
pub fn dead_letter_topics(config: &StreamsConfig, topology: &Topology) -> Vec<String> {
    let mut topics: Vec<String> = match config.error_policy {
        ErrorPolicy::Skip => return Vec::new(),
        _ => topology.source_topics().iter().map(|t| dead_letter_topic(t)).collect(),
    };
    topics.extend(retry_lane_topics(config, topology).iter().map(|lane| dead_letter_topic(lane)));
    topics
}

/// The retry lanes the error policy uses: one per subtopology under `Retry`, none otherwise.
pub fn retry_lane_topics(config: &StreamsConfig, topology: &Topology) -> Vec<String> {
    match config.error_policy {
        ErrorPolicy::Retry(_) => (0..topology.subtopology_count())
            .map(|subtopology| retry_lane_topic(&config.application_id, subtopology))
            .collect(),
        _ => Vec::new(),
    }
}

/// How an internal topic is configured.
enum Kind {
    Repartition,
    Changelog,
    Plain,
}

/// Ensures internal topics exist with as many partitions as the widest source topic, so that
/// task `p` of every subtopology finds partition `p` of its changelogs.
pub fn ensure_internal_topics(config: &StreamsConfig, topology: &Topology) -> Result<i32, RuntimeError> {
    let admin: AdminClient<DefaultClientContext> = config
        .admin_config()
        .create()
        .map_err(|source| RuntimeError::Kafka { during: "creating the admin client", source })?;
    let internal: Vec<String> = topology.repartition_topics();
    let mut partitions = 0;
    for subtopology in 0..topology.subtopology_count() {
        let mut counts: Vec<(String, i32)> = Vec::new();
        for topic in topology.source_topics_of(subtopology) {
            if internal.contains(&topic) {
                continue;
            }
            let count = partition_count(&admin, &topic, config.blocking_timeout)?
                .ok_or_else(|| RuntimeError::MissingSourceTopic(topic.clone()))?;
            partitions = partitions.max(count);
            counts.push((topic, count));
        }
        check_co_partitioned(subtopology, &counts)?;
    }
    if partitions == 0 {
        return Err(RuntimeError::Config("the topology has no source topic".into()));
    }

    let mut wanted: Vec<(String, Kind)> = Vec::new();
    wanted.extend(internal.into_iter().map(|t| (t, Kind::Repartition)));
    wanted.extend(topology.changelog_topics().into_iter().map(|t| (t, Kind::Changelog)));
    wanted.extend(dead_letter_topics(config, topology).into_iter().map(|t| (t, Kind::Plain)));
    wanted.extend(retry_lane_topics(config, topology).into_iter().map(|t| (t, Kind::Plain)));
    let new_topics: Vec<NewTopic> = wanted
        .iter()
        .map(|(name, kind)| {
            let topic = NewTopic::new(name, partitions, TopicReplication::Fixed(-1));
            match kind {
                Kind::Changelog => topic.set("cleanup.policy", "compact"),
                Kind::Repartition => {
                    REPARTITION_CONFIGS.iter().fold(topic, |topic, (key, value)| topic.set(key, value))
                }
                Kind::Plain => topic,
            }
        })
        .collect();
    if new_topics.is_empty() {
        return Ok(partitions);
    }
    let options = AdminOptions::new().operation_timeout(Some(config.blocking_timeout));
    let results = block_on(admin.create_topics(new_topics.iter(), &options))
        .map_err(|source| RuntimeError::Kafka { during: "creating internal topics", source })?;
    let mut existing = Vec::new();
    for result in results {
        match result {
            Ok(_) => {}
            Err((topic, RDKafkaErrorCode::TopicAlreadyExists)) => existing.push(topic),
            Err((topic, code)) => return Err(RuntimeError::TopicCreation { topic, reason: code.to_string() }),
        }
    }
    let existing_repartition: Vec<String> = wanted
        .iter()
        .filter(|(name, kind)| matches!(kind, Kind::Repartition) && existing.contains(name))
        .map(|(name, _)| name.clone())
        .collect();
    repartition_configs::bring_up_to_date(&admin, &existing_repartition, &options);
    // A topic the group's leader cannot see yet would be left out of the first assignment, and
    // a task would be assigned without it.
    for (topic, _) in &wanted {
        wait_until_visible(&admin, topic, config.blocking_timeout)?;
    }
    Ok(partitions)
}

/// Waits until the cluster's metadata lists `topic` with partitions, for up to 30 s.
fn wait_until_visible(
    admin: &AdminClient<DefaultClientContext>,
    topic: &str,
    timeout: Duration,
) -> Result<(), RuntimeError> {
    for _ in 0..120 {
        if partition_count(admin, topic, timeout)?.is_some() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    Err(RuntimeError::TopicCreation {
        topic: topic.to_owned(),
        reason: "created, but not in the cluster's metadata after 30 s".into(),
    })
}

/// The topics one sub-topology reads make up its tasks partition by partition, so they must
/// have the same number of partitions (Kafka Streams' co-partitioning requirement).
fn check_co_partitioned(subtopology: usize, counts: &[(String, i32)]) -> Result<(), RuntimeError> {
    match counts.split_first() {
        Some(((first, expected), rest)) => match rest.iter().find(|(_, count)| count != expected) {
            Some((other, count)) => Err(RuntimeError::Config(format!(
                "sub-topology {subtopology} reads {first} ({expected} partitions) and {other} ({count} partitions): \
                 co-partitioned topics need the same partition count"
            ))),
            None => Ok(()),
        },
        None => Ok(()),
    }
}

fn partition_count(
    admin: &AdminClient<DefaultClientContext>,
    topic: &str,
    timeout: Duration,
) -> Result<Option<i32>, RuntimeError> {
    let metadata = admin
        .inner()
        .fetch_metadata(Some(topic), timeout)
        .map_err(|source| RuntimeError::Kafka { during: "reading topic metadata", source })?;
    Ok(metadata
        .topics()
        .iter()
        .find(|t| t.name() == topic && t.error().is_none())
        .map(|t| t.partitions().len() as i32)
        .filter(|count| *count > 0))
}

/// The admin API is async; start-up is not. rdkafka's admin client completes its futures from
/// its own polling thread, so a plain executor suffices, inside or outside a tokio runtime.
fn block_on<F: std::future::Future>(future: F) -> F::Output {
    futures::executor::block_on(future)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn co_partitioned_topics_need_equal_partition_counts() {
        let counts = |list: &[(&str, i32)]| list.iter().map(|(t, c)| (t.to_string(), *c)).collect::<Vec<_>>();
        assert!(check_co_partitioned(0, &counts(&[("a", 6), ("b", 6)])).is_ok());
        let error = check_co_partitioned(1, &counts(&[("a", 6), ("b", 6), ("c", 3)])).unwrap_err().to_string();
        assert!(error.contains("a (6 partitions) and c (3 partitions)"), "{error}");
    }

    #[test]
    fn every_source_and_retry_lane_has_a_dead_letter_topic_unless_records_are_skipped() {
        use crate::dsl::{Consumed, Produced, StreamsBuilder};
        use crate::serdes::StringSerde;
        let builder = StreamsBuilder::new();
        builder
            .stream::<String, String>("orders", Consumed::with(StringSerde, StringSerde))
            .to("out", Produced::with(StringSerde, StringSerde));
        let topology = builder.build("app");
        let mut config = StreamsConfig::new("app", "localhost:9092");
        config.error_policy = ErrorPolicy::Retry(crate::error::RetryPolicy::default());
        assert_eq!(
            dead_letter_topics(&config, &topology),
            vec!["orders.dlq".to_string(), "app-0-retry.dlq".to_string()]
        );
        config.error_policy = ErrorPolicy::Skip;
        assert!(dead_letter_topics(&config, &topology).is_empty());
    }
}
