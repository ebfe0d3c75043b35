//! Waits until a contestant has consumed all its input: the Nth reply is out well before the
//! participant has read its own replies back, and the paced phase must not queue behind that.

use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};

const TIMEOUT: Duration = Duration::from_secs(10);

/// Returns once `group`'s committed offsets are at the end of every partition of `topics`, give
/// or take the one transaction marker a committed offset may sit before.
pub fn wait(bootstrap: &str, group: &str, topics: &[&str], partitions: i32, patience: Duration) -> Result<Duration> {
    // Offset fetches only: this consumer never subscribes, so it never joins the group.
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .create()
        .context("the offset reader")?;
    let mut wanted = TopicPartitionList::new();
    for topic in topics {
        for partition in 0..partitions {
            wanted.add_partition(topic, partition);
        }
    }
    let started = Instant::now();
    loop {
        let committed = consumer.committed_offsets(wanted.clone(), TIMEOUT).context("fetching committed offsets")?;
        let mut behind = 0i64;
        for element in committed.elements() {
            let (_, high) = consumer
                .fetch_watermarks(element.topic(), element.partition(), TIMEOUT)
                .context("fetching watermarks")?;
            let at = match element.offset() {
                Offset::Offset(offset) => offset,
                _ => 0,
            };
            behind += (high - at - 1).max(0);
        }
        if behind == 0 {
            return Ok(started.elapsed());
        }
        if started.elapsed() > patience {
            bail!("group {group} is still {behind} records behind after {patience:?}");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}
