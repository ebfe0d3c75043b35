//! Consumer lag per group, topic and partition, under kafka-lag-exporter's metric names so
//! existing dashboards and alerts apply. Reads committed offsets and high watermarks; runs on
//! a blocking thread since every rdkafka call here blocks.

use std::collections::HashMap;
use std::sync::Arc;
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

/// Reads the lag of every watched group, reusing one consumer per group across samples.
struct LagSampler {
    /// A consumer with the group's id reads its committed offsets without joining the group.
    groups: Vec<(WatchedGroup, BaseConsumer)>,
    metrics: LagMetrics,
}

impl LagSampler {
    fn new(bootstrap: &str, groups: Vec<WatchedGroup>) -> anyhow::Result<Self> {
        let mut consumers = Vec::with_capacity(groups.len());
        for watched in groups {
            let consumer: BaseConsumer = ClientConfig::new()
                .set("bootstrap.servers", bootstrap)
                .set("group.id", &watched.group)
                .set("enable.auto.commit", "false")
                .create()?;
            consumers.push((watched, consumer));
        }
        Ok(Self { groups: consumers, metrics: LagMetrics::register()? })
    }

    fn sample(&self) -> anyhow::Result<()> {
        let Some((_, any_consumer)) = self.groups.first() else { return Ok(()) };
        let metadata = any_consumer.fetch_metadata(None, TIMEOUT)?;
        // High watermarks once per partition, whichever groups read it.
        let mut latest: HashMap<(String, i32), i64> = HashMap::new();
        for topic in metadata.topics().iter().filter(|t| self.groups.iter().any(|(g, _)| g.topics.iter().any(|w| w == t.name()))) {
            for partition in topic.partitions() {
                let (_, high) = any_consumer.fetch_watermarks(topic.name(), partition.id(), TIMEOUT)?;
                self.metrics.latest.with_label_values(&[topic.name(), &partition.id().to_string()]).set(high);
                latest.insert((topic.name().to_string(), partition.id()), high);
            }
        }
        for (watched, consumer) in &self.groups {
            let mut partitions = TopicPartitionList::new();
            for (topic, partition) in latest.keys().filter(|(t, _)| watched.topics.contains(t)) {
                partitions.add_partition(topic, *partition);
            }
            for element in consumer.committed_offsets(partitions, TIMEOUT)?.elements() {
                // No committed offset: the group does not read this partition (yet).
                let Offset::Offset(position) = element.offset() else { continue };
                let high = latest[&(element.topic().to_string(), element.partition())];
                let partition_label = element.partition().to_string();
                let labels = [watched.group.as_str(), element.topic(), partition_label.as_str()];
                self.metrics.offset.with_label_values(&labels).set(position);
                self.metrics.lag.with_label_values(&labels).set((high - position).max(0));
            }
        }
        Ok(())
    }
}

/// Samples every `every` until the process ends; a failed sample is logged, not fatal. Each
/// sample runs on a blocking thread and the wait between them is async, so a runtime shutting
/// down never waits on the sampler.
pub async fn run(bootstrap: String, groups: Vec<WatchedGroup>, every: Duration) -> anyhow::Result<()> {
    let sampler = Arc::new(tokio::task::spawn_blocking(move || LagSampler::new(&bootstrap, groups)).await??);
    loop {
        let sampler = sampler.clone();
        match tokio::task::spawn_blocking(move || sampler.sample()).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!(error = %e, "consumer lag sample failed"),
            Err(e) => tracing::warn!(error = %e, "consumer lag sampler stopped"),
        }
        tokio::time::sleep(every).await;
    }
}
