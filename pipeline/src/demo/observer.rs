//! A `read_committed` reader of the four saga topics that notes when each event of the happy
//! path becomes visible to a downstream consumer, and the milestones of a run's orders from that.

use std::collections::HashMap;
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::{Offset, TopicPartitionList};
use schemas::{topic_of, EventType, SagaCodec};

use super::hops::Milestones;
use super::DemoReport;

/// The happy path's events, in the order an order passes them.
const HAPPY_PATH: [EventType; 5] = [
    EventType::OrderPlaced,
    EventType::PaymentCompleted,
    EventType::InventoryReserved,
    EventType::ShipmentCreated,
    EventType::OrderConfirmed,
];

const METADATA_TIMEOUT: Duration = Duration::from_secs(10);

pub struct Observer {
    stop: Arc<AtomicBool>,
    reading: tokio::task::JoinHandle<Observed>,
}

/// What the observer saw: per (order id, event type) the first instant (µs since the epoch) it
/// was visible, and the OrderPlaced records' values, for their `occurred_at`.
#[derive(Default)]
pub struct Observed {
    visible_us: HashMap<(String, EventType), i64>,
    placed_values: HashMap<String, Vec<u8>>,
}

impl Observer {
    /// Reads from each partition's current end, so that what the load then writes is all seen.
    pub fn start(bootstrap: &str) -> Result<Observer> {
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", bootstrap)
            .set("group.id", format!("demo-observer-{}", uuid::Uuid::new_v4().simple()))
            .set("enable.auto.commit", "false")
            .set("auto.offset.reset", "latest")
            .set("isolation.level", "read_committed")
            // The broker answers a fetch at once when there is data; this bounds the wait when there is none.
            .set("fetch.wait.max.ms", "10")
            .create()
            .context("the demo's observer")?;
        let mut assignment = TopicPartitionList::new();
        let mut topics = HAPPY_PATH.map(topic_of).to_vec();
        topics.sort_unstable();
        topics.dedup();
        for topic in topics {
            let metadata = consumer
                .fetch_metadata(Some(topic), METADATA_TIMEOUT)
                .with_context(|| format!("metadata of {topic}"))?;
            for partition in metadata.topics().iter().flat_map(|t| t.partitions()) {
                let (_, end) = consumer
                    .fetch_watermarks(topic, partition.id(), METADATA_TIMEOUT)
                    .with_context(|| format!("the end of {topic}/{}", partition.id()))?;
                assignment.add_partition_offset(topic, partition.id(), Offset::Offset(end))?;
            }
        }
        consumer.assign(&assignment).context("assigning the saga topics to the observer")?;
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = stop.clone();
        let reading = tokio::task::spawn_blocking(move || read(&consumer, &stopping));
        Ok(Observer { stop, reading })
    }

    /// Stops once it has read what is visible now.
    pub async fn finish(mut self) -> Result<Observed> {
        self.stop.store(true, Ordering::Relaxed);
        (&mut self.reading).await.context("the demo's observer")
    }
}

// Also stops when a rate's run fails: the runtime's shutdown waits for blocking tasks.
impl Drop for Observer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn read(consumer: &BaseConsumer, stop: &AtomicBool) -> Observed {
    let mut observed = Observed::default();
    loop {
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(message)) => {
                let visible_us = now_us();
                let event_type = message
                    .headers()
                    .and_then(|headers| headers.iter().find(|header| header.key == "event_type"))
                    .and_then(|header| std::str::from_utf8(header.value?).ok())
                    .and_then(|name| EventType::from_str(name).ok())
                    .filter(|event_type| HAPPY_PATH.contains(event_type));
                let order_id = message.key().and_then(|key| std::str::from_utf8(key).ok());
                let (Some(event_type), Some(order_id)) = (event_type, order_id) else { continue };
                observed.visible_us.entry((order_id.to_owned(), event_type)).or_insert(visible_us);
                if event_type == EventType::OrderPlaced {
                    if let Some(value) = message.payload() {
                        observed.placed_values.entry(order_id.to_owned()).or_insert_with(|| value.to_vec());
                    }
                }
            }
            Some(Err(e)) => eprintln!("demo observer: {e}"),
            None if stop.load(Ordering::Relaxed) => return observed,
            None => {}
        }
    }
}

fn now_us() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_micros() as i64).unwrap_or(0)
}

impl Observed {
    /// The milestones of the run's orders that the read model shows CONFIRMED (the happy path):
    /// the POST, OrderPlaced's `occurred_at` (decoded from its record; Debezium stamps the
    /// record with when it read the outbox row, not when the event happened), each happy-path
    /// event's visibility, and the terminal state in the read model.
    pub async fn milestones(&self, report: &DemoReport, codec: &SagaCodec) -> Vec<Milestones> {
        let mut all = Vec::new();
        for order in report.orders.iter().filter(|o| report.final_outcome(&o.order_id) == "CONFIRMED") {
            let id = order.order_id.as_str();
            let occurred_us = match self.placed_values.get(id) {
                Some(value) => match codec.decode(value).await {
                    Ok(event) => Some(event.envelope.occurred_at * 1000),
                    Err(e) => {
                        eprintln!("demo observer: decoding OrderPlaced of {id}: {e}");
                        None
                    }
                },
                None => None,
            };
            let visible = HAPPY_PATH.map(|event_type| self.visible_us.get(&(id.to_owned(), event_type)).copied());
            let terminal_us = report.terminal_latency_ms.get(id).map(|latency| (order.placed_at_ms + latency) * 1000);
            let mut milestones = Milestones::default();
            milestones[0] = Some(order.placed_at_ms * 1000);
            milestones[1] = occurred_us;
            milestones[2..7].copy_from_slice(&visible);
            milestones[7] = terminal_us;
            all.push(milestones);
        }
        all
    }
}
