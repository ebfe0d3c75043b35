//! The live projector's consumer group, looked at and never touched: who is in it, and what it
//! committed. A consumer with the group's id reads both without joining it (as the lag
//! exporter does).

use std::time::Duration;

use anyhow::{bail, Context, Result};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

const TIMEOUT: Duration = Duration::from_secs(10);

pub struct LiveGroup {
    group: String,
    consumer: BaseConsumer,
}

impl LiveGroup {
    pub fn new(bootstrap: &str, group: &str) -> Result<Self> {
        let consumer = ClientConfig::new()
            .set("bootstrap.servers", bootstrap)
            .set("group.id", group)
            .set("enable.auto.commit", "false")
            // Committed offsets as the live projector reads them.
            .set("isolation.level", "read_committed")
            .create()
            .context("creating a consumer to look at the projector's group")?;
        Ok(LiveGroup { group: group.to_string(), consumer })
    }

    /// Refuses while any projector is in the group. A running projector folds records into the
    /// live view past its committed offsets; after a swap it would go on from there, and the
    /// records in between would be missing from the new view. Blocking.
    pub fn ensure_stopped(&self) -> Result<()> {
        let groups = self
            .consumer
            .fetch_group_list(Some(&self.group), TIMEOUT)
            .with_context(|| format!("describing consumer group {}", self.group))?;
        let Some(info) = groups.groups().iter().find(|info| info.name() == self.group) else { return Ok(()) };
        if info.members().is_empty() {
            return Ok(());
        }
        let members: Vec<String> =
            info.members().iter().map(|m| format!("{} on {}", m.client_id(), m.client_host())).collect();
        bail!(
            "the projector is running: consumer group {} has {} member(s) ({}; state {}). Stop every `pipeline projector` \
             and `pipeline all` first (a killed one leaves the group after its session timeout), then run the rebuild again; \
             the live view was not changed",
            self.group,
            members.len(),
            members.join(", "),
            info.state()
        )
    }

    /// The group's committed offset of each of `partitions` that has one. Blocking.
    pub fn committed<'a>(&self, partitions: impl Iterator<Item = (&'a str, i32)>) -> Result<Vec<(String, i32, i64)>> {
        let mut list = TopicPartitionList::new();
        for (topic, partition) in partitions {
            list.add_partition(topic, partition);
        }
        let committed = self
            .consumer
            .committed_offsets(list, TIMEOUT)
            .with_context(|| format!("reading the committed offsets of group {}", self.group))?;
        Ok(committed
            .elements()
            .iter()
            .filter_map(|element| match element.offset() {
                Offset::Offset(offset) => Some((element.topic().to_string(), element.partition(), offset)),
                _ => None,
            })
            .collect())
    }
}
