//! Deletes the records of repartition topics once their consumption is committed, as Kafka
//! Streams does: the topics are created with infinite time retention (a repartitioned record
//! keeps its input's timestamp, so an old backlog would otherwise be deleted before it was read),
//! and this keeps them from growing without bound.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions};
use rdkafka::client::DefaultClientContext;
use rdkafka::{Offset, TopicPartitionList};

use super::config::StreamsConfig;
use super::error::RuntimeError;
use super::internal_events::{RepartitionPurgeFailed, RepartitionRecordsPurged};

type Partition = (String, i32);

pub(crate) struct RepartitionPurger {
    /// None for a topology without repartition topics: no client, no connection.
    admin: Option<AdminClient<DefaultClientContext>>,
    topics: BTreeSet<String>,
    interval: Duration,
    timeout: Duration,
    last: Instant,
    /// The committed position of each repartition partition not purged up to yet.
    committed: BTreeMap<Partition, i64>,
}

impl RepartitionPurger {
    pub fn new(config: &StreamsConfig, topics: impl IntoIterator<Item = String>) -> Result<Self, RuntimeError> {
        let topics: BTreeSet<String> = topics.into_iter().collect();
        let admin = match topics.is_empty() {
            true => None,
            false => Some(
                config
                    .admin_config()
                    .create()
                    .map_err(|source| RuntimeError::Kafka { during: "creating the purge's admin client", source })?,
            ),
        };
        Ok(Self {
            admin,
            topics,
            interval: config.repartition_purge_interval,
            timeout: config.blocking_timeout,
            last: Instant::now(),
            committed: BTreeMap::new(),
        })
    }

    /// Notes the positions a commit made durable, and purges below them when the interval passed.
    pub fn committed<'a>(&mut self, positions: impl IntoIterator<Item = (&'a Partition, &'a i64)>) {
        for (partition, next) in positions {
            if self.topics.contains(&partition.0) {
                self.committed.insert(partition.clone(), *next);
            }
        }
        let Some(admin) = &self.admin else {
            return;
        };
        if self.committed.is_empty() || self.last.elapsed() < self.interval {
            return;
        }
        self.last = Instant::now();
        let mut list = TopicPartitionList::new();
        for ((topic, partition), next) in std::mem::take(&mut self.committed) {
            // Infallible for an absolute offset.
            let _ = list.add_partition_offset(&topic, partition, Offset::Offset(next));
        }
        // DeleteRecords is one request per leader and takes milliseconds; a failure only leaves
        // the records for the next purge.
        let options = AdminOptions::new().request_timeout(Some(self.timeout));
        match futures::executor::block_on(admin.delete_records(&list, &options)) {
            Ok(result) => {
                let failed: Vec<String> = result
                    .elements()
                    .iter()
                    .filter_map(|e| e.error().err().map(|error| format!("{}-{}: {error}", e.topic(), e.partition())))
                    .collect();
                if failed.is_empty() {
                    RepartitionRecordsPurged { partitions: list.count() }.emit();
                } else {
                    RepartitionPurgeFailed { error: &failed.join(", ") }.emit();
                }
            }
            Err(error) => RepartitionPurgeFailed { error: &error.to_string() }.emit(),
        }
    }
}
