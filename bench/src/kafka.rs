//! The clients every benchmark sets up the same way: fresh topics, the load's producer, and the
//! `read_committed` consumer that sees outputs as a downstream reader would.

use anyhow::{bail, Context, Result};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{DefaultProducerContext, ThreadedProducer};

/// Creates `names` with `partitions` partitions each; fails on any that exists already.
pub fn create_topics(bootstrap: &str, names: &[&str], partitions: i32) -> Result<()> {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new().set("bootstrap.servers", bootstrap).create()?;
    let topics: Vec<NewTopic> =
        names.iter().map(|n| NewTopic::new(n, partitions, TopicReplication::Fixed(1))).collect();
    let results = futures::executor::block_on(admin.create_topics(topics.iter(), &AdminOptions::new()))
        .with_context(|| format!("creating topics at {bootstrap}; is the stack up (`dev/stack up`)?"))?;
    for result in results {
        if let Err((topic, code)) = result {
            bail!("creating {topic}: {code}");
        }
    }
    Ok(())
}

/// An idempotent producer for preloads: Java's default partitioner, so that Kafka Streams and
/// our runtime see the same partitions, and a queue deep enough for a preload.
pub fn load_producer(bootstrap: &str) -> Result<ThreadedProducer<DefaultProducerContext>> {
    ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("enable.idempotence", "true")
        .set("partitioner", "murmur2_random")
        .set("linger.ms", "5")
        .set("queue.buffering.max.messages", "1000000")
        .create()
        .context("the load producer")
}

/// A consumer of `topic` from its start, `read_committed`, in a group of its own.
pub fn read_committed_consumer(bootstrap: &str, topic: &str) -> Result<BaseConsumer> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", format!("bench-observer-{}", uuid::Uuid::new_v4().simple()))
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .set("isolation.level", "read_committed")
        .create()
        .context("the read_committed consumer")?;
    consumer.subscribe(&[topic]).with_context(|| format!("subscribing to {topic}"))?;
    Ok(consumer)
}
