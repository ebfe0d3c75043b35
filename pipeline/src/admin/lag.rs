//! Consumer lag per group, topic and partition, under kafka-lag-exporter's metric names so
//! existing dashboards and alerts apply. Runs on a blocking thread since every rdkafka call here
//! blocks.
//!
//! Lag counts records, not offsets: under exactly-once every transaction leaves a commit marker
//! after its records, so a group that has consumed everything sits one or more offsets below the
//! high watermark. Where the offsets differ, a `read_committed` probe fetches from the committed
//! offset: if nothing readable is left (only markers, or aborted records) the lag is 0;
//! otherwise it is counted from the first readable record, whose timestamp also gives the lag in
//! seconds.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use operators::metrics::{family, register_default};
use operators::runtime::EndOfPartitionIsExpected;
use prometheus::core::Collector;
use prometheus::{GaugeVec, IntGaugeVec, Opts};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};

const TIMEOUT: Duration = Duration::from_secs(5);
/// How long one probe waits for its partitions' first readable record or their end.
const PROBE_TIMEOUT: Duration = Duration::from_secs(3);

struct LagMetrics {
    lag: IntGaugeVec,
    max_lag: IntGaugeVec,
    lag_seconds: GaugeVec,
    offset: IntGaugeVec,
    latest: IntGaugeVec,
}

static METRICS: LazyLock<LagMetrics> = LazyLock::new(|| {
    let labels = &["group", "topic", "partition"];
    let metrics = LagMetrics {
        lag: family(IntGaugeVec::new(
            Opts::new("kafka_consumergroup_group_lag", "Records the group has yet to consume"),
            labels,
        )),
        max_lag: family(IntGaugeVec::new(
            Opts::new("kafka_consumergroup_group_max_lag", "The group's largest lag over its partitions"),
            &["group"],
        )),
        lag_seconds: family(GaugeVec::new(
            Opts::new(
                "kafka_consumergroup_group_lag_seconds",
                "Age of the oldest record the group has yet to consume, from its timestamp",
            ),
            labels,
        )),
        offset: family(IntGaugeVec::new(
            Opts::new("kafka_consumergroup_group_offset", "The group's committed offset"),
            labels,
        )),
        latest: family(IntGaugeVec::new(
            Opts::new("kafka_partition_latest_offset", "The partition's high watermark"),
            &["topic", "partition"],
        )),
    };
    register_default(
        "lag",
        [
            Box::new(metrics.lag.clone()) as Box<dyn Collector>,
            Box::new(metrics.max_lag.clone()),
            Box::new(metrics.lag_seconds.clone()),
            Box::new(metrics.offset.clone()),
            Box::new(metrics.latest.clone()),
        ],
    );
    metrics
});

impl LagMetrics {
    fn record(&self, lags: &[PartitionLag]) {
        let mut max_lag: HashMap<&str, i64> = HashMap::new();
        for lag in lags {
            let partition = lag.partition.to_string();
            let labels = [lag.group.as_str(), lag.topic.as_str(), partition.as_str()];
            self.latest.with_label_values(&[lag.topic.as_str(), partition.as_str()]).set(lag.latest);
            self.offset.with_label_values(&labels).set(lag.committed);
            self.lag.with_label_values(&labels).set(lag.records);
            self.lag_seconds.with_label_values(&labels).set(lag.seconds);
            let max = max_lag.entry(lag.group.as_str()).or_default();
            *max = (*max).max(lag.records);
        }
        for (group, max) in max_lag {
            self.max_lag.with_label_values(&[group]).set(max);
        }
    }
}

/// One consumer group and the topics whose lag it reports.
#[derive(Clone, Debug)]
pub struct WatchedGroup {
    pub group: String,
    pub topics: Vec<String>,
}

/// The lag of one group on one partition.
#[derive(Clone, Debug, PartialEq)]
pub struct PartitionLag {
    pub group: String,
    pub topic: String,
    pub partition: i32,
    pub committed: i64,
    /// The high watermark.
    pub latest: i64,
    /// Records from the first readable one after `committed` to the high watermark; 0 when
    /// nothing readable is left.
    pub records: i64,
    /// Age of that first readable record; 0 when there is none.
    pub seconds: f64,
}

/// Reads the lag of every watched group, reusing its consumers across samples.
pub struct LagReader {
    /// A consumer with the group's id reads its committed offsets without joining the group.
    groups: Vec<(WatchedGroup, BaseConsumer)>,
    /// Fetches from committed offsets to tell records from markers; commits nothing.
    /// Reaching a partition's end is what the probe waits for, not an error to log.
    probe: BaseConsumer<EndOfPartitionIsExpected>,
}

impl LagReader {
    pub fn new(bootstrap: &str, groups: Vec<WatchedGroup>) -> Result<Self, KafkaError> {
        let mut consumers = Vec::with_capacity(groups.len());
        for watched in groups {
            let consumer: BaseConsumer = ClientConfig::new()
                .set("bootstrap.servers", bootstrap)
                .set("group.id", &watched.group)
                .set("enable.auto.commit", "false")
                .create()?;
            consumers.push((watched, consumer));
        }
        let probe: BaseConsumer<EndOfPartitionIsExpected> = ClientConfig::new()
            .set("bootstrap.servers", bootstrap)
            .set("group.id", "saga-lag-probe")
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("isolation.level", "read_committed")
            .set("enable.partition.eof", "true")
            .create_with_context(EndOfPartitionIsExpected)?;
        Ok(Self { groups: consumers, probe })
    }

    /// The lag of every watched group on every partition it has committed an offset for.
    pub fn read(&self) -> Result<Vec<PartitionLag>, KafkaError> {
        let Some((_, any_consumer)) = self.groups.first() else { return Ok(Vec::new()) };
        let metadata = any_consumer.fetch_metadata(None, TIMEOUT)?;
        // High watermarks once per partition, whichever groups read it.
        let mut latest: HashMap<(String, i32), i64> = HashMap::new();
        for topic in
            metadata.topics().iter().filter(|t| self.groups.iter().any(|(g, _)| g.topics.iter().any(|w| w == t.name())))
        {
            for partition in topic.partitions() {
                let (_, high) = any_consumer.fetch_watermarks(topic.name(), partition.id(), TIMEOUT)?;
                latest.insert((topic.name().to_string(), partition.id()), high);
            }
        }
        let mut lags = Vec::new();
        for (watched, consumer) in &self.groups {
            let mut partitions = TopicPartitionList::new();
            for (topic, partition) in latest.keys().filter(|(t, _)| watched.topics.contains(t)) {
                partitions.add_partition(topic, *partition);
            }
            let mut behind = Vec::new();
            for element in consumer.committed_offsets(partitions, TIMEOUT)?.elements() {
                // No committed offset: the group does not read this partition (yet).
                let Offset::Offset(committed) = element.offset() else { continue };
                let latest = latest[&(element.topic().to_string(), element.partition())];
                let lag = PartitionLag {
                    group: watched.group.clone(),
                    topic: element.topic().to_string(),
                    partition: element.partition(),
                    committed,
                    latest,
                    records: 0,
                    seconds: 0.0,
                };
                if committed < latest {
                    behind.push(lag);
                } else {
                    lags.push(lag);
                }
            }
            lags.extend(self.count_readable(behind)?);
        }
        Ok(lags)
    }

    /// Fills in `records` and `seconds` of partitions whose committed offset is below the high
    /// watermark, from the first record a `read_committed` reader gets there. One topic at a
    /// time: rdkafka's end-of-partition error names the partition number only.
    fn count_readable(&self, behind: Vec<PartitionLag>) -> Result<Vec<PartitionLag>, KafkaError> {
        let mut by_topic: HashMap<String, Vec<PartitionLag>> = HashMap::new();
        for lag in behind {
            by_topic.entry(lag.topic.clone()).or_default().push(lag);
        }
        let mut counted = Vec::new();
        for (topic, mut lags) in by_topic {
            self.probe_topic(&topic, &mut lags)?;
            counted.extend(lags);
        }
        Ok(counted)
    }

    fn probe_topic(&self, topic: &str, lags: &mut [PartitionLag]) -> Result<(), KafkaError> {
        let mut assignment = TopicPartitionList::new();
        for lag in lags.iter() {
            assignment.add_partition_offset(topic, lag.partition, Offset::Offset(lag.committed))?;
        }
        self.probe.assign(&assignment)?;
        let mut open: HashMap<i32, usize> =
            lags.iter().enumerate().map(|(index, lag)| (lag.partition, index)).collect();
        let deadline = Instant::now() + PROBE_TIMEOUT;
        while !open.is_empty() && Instant::now() < deadline {
            match self.probe.poll(Duration::from_millis(100)) {
                None => {}
                Some(Ok(message)) => {
                    if let Some(index) = open.remove(&message.partition()) {
                        let lag = &mut lags[index];
                        lag.records = (lag.latest - message.offset()).max(0);
                        lag.seconds = message.timestamp().to_millis().map_or(0.0, seconds_since);
                    }
                }
                // The end of the partition before any readable record: only markers were left.
                Some(Err(KafkaError::PartitionEOF(partition))) => {
                    open.remove(&partition);
                }
                Some(Err(error)) => {
                    self.probe.unassign()?;
                    return Err(error);
                }
            }
        }
        // Not read within the timeout (say, an open transaction holds the partition back): count
        // the offsets, as kafka-lag-exporter does.
        for index in open.into_values() {
            lags[index].records = lags[index].latest - lags[index].committed;
        }
        self.probe.unassign()
    }
}

fn seconds_since(timestamp_ms: i64) -> f64 {
    let now_ms = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64);
    ((now_ms - timestamp_ms) as f64 / 1000.0).max(0.0)
}

/// Samples every `every` until the process ends; a failed sample is logged, not fatal. Each
/// sample runs on a blocking thread and the wait between them is async, so a runtime shutting
/// down never waits on the sampler.
pub async fn run(bootstrap: String, groups: Vec<WatchedGroup>, every: Duration) -> anyhow::Result<()> {
    let reader = Arc::new(tokio::task::spawn_blocking(move || LagReader::new(&bootstrap, groups)).await??);
    loop {
        let reader = reader.clone();
        match tokio::task::spawn_blocking(move || reader.read().map(|lags| METRICS.record(&lags))).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!(error = %e, "consumer lag sample failed"),
            Err(e) => tracing::warn!(error = %e, "consumer lag sampler stopped"),
        }
        tokio::time::sleep(every).await;
    }
}
