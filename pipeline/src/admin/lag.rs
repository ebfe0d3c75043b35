//! Consumer lag per group, topic and partition, under kafka-lag-exporter's metric names so
//! existing dashboards and alerts apply. Reads committed offsets and high watermarks; runs on
//! a blocking thread since every rdkafka call here blocks.

use std::time::Duration;

use prometheus::{IntGaugeVec, Opts};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{Offset, TopicPartitionList};

const TIMEOUT: Duration = Duration::from_secs(5);

pub struct LagMetrics {
    lag: IntGaugeVec,
    offset: IntGaugeVec,
    latest: IntGaugeVec,
}

impl LagMetrics {
    pub fn register() -> prometheus::Result<Self> {
        let labels = &["group", "topic", "partition"];
        let metrics = Self {
            lag: IntGaugeVec::new(Opts::new("kafka_consumergroup_group_lag", "Records the group has yet to consume"), labels)?,
            offset: IntGaugeVec::new(Opts::new("kafka_consumergroup_group_offset", "The group's committed offset"), labels)?,
            latest: IntGaugeVec::new(
                Opts::new("kafka_partition_latest_offset", "The partition's high watermark"),
                &["topic", "partition"],
            )?,
        };
        for collector in [&metrics.lag, &metrics.offset, &metrics.latest] {
            match prometheus::register(Box::new(collector.clone())) {
                Ok(()) | Err(prometheus::Error::AlreadyReg) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(metrics)
    }
}

/// One consumer group and the topics whose lag it reports.
#[derive(Clone, Debug)]
pub struct WatchedGroup {
    pub group: String,
    pub topics: Vec<String>,
}

/// Reads the lag of every watched group once.
pub fn sample(bootstrap: &str, groups: &[WatchedGroup], metrics: &LagMetrics) -> anyhow::Result<()> {
    for watched in groups {
        // A consumer with the group's id reads its committed offsets without joining it.
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", bootstrap)
            .set("group.id", &watched.group)
            .set("enable.auto.commit", "false")
            .create()?;
        let metadata = consumer.fetch_metadata(None, TIMEOUT)?;
        let mut partitions = TopicPartitionList::new();
        for topic in metadata.topics().iter().filter(|t| watched.topics.iter().any(|w| w == t.name())) {
            for partition in topic.partitions() {
                partitions.add_partition(topic.name(), partition.id());
            }
        }
        let committed = consumer.committed_offsets(partitions, TIMEOUT)?;
        for element in committed.elements() {
            let (topic, partition) = (element.topic(), element.partition());
            // No committed offset: the group does not read this partition (yet).
            let Offset::Offset(position) = element.offset() else { continue };
            let (_, high) = consumer.fetch_watermarks(topic, partition, TIMEOUT)?;
            let partition_label = partition.to_string();
            let labels = [watched.group.as_str(), topic, partition_label.as_str()];
            metrics.latest.with_label_values(&[topic, &partition_label]).set(high);
            metrics.offset.with_label_values(&labels).set(position);
            metrics.lag.with_label_values(&labels).set((high - position).max(0));
        }
    }
    Ok(())
}

/// Samples every `every` until the process ends; errors are logged, not fatal.
pub async fn run(bootstrap: String, groups: Vec<WatchedGroup>, every: Duration) -> anyhow::Result<()> {
    let metrics = std::sync::Arc::new(LagMetrics::register()?);
    loop {
        let (bootstrap, groups, metrics) = (bootstrap.clone(), groups.clone(), metrics.clone());
        match tokio::task::spawn_blocking(move || sample(&bootstrap, &groups, &metrics)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!(error = %e, "consumer lag sample failed"),
            Err(e) => tracing::warn!(error = %e, "consumer lag sampler stopped"),
        }
        tokio::time::sleep(every).await;
    }
}
