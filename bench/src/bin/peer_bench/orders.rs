//! The input of a run: OrderPlaced events as the outbox would publish them, keyed by order id.
//! Order `n` is the same in every run (its id, customer and amount), so that every run gets
//! the same input.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};
use operators::serdes::Serde;
use pipeline::event_serde::EventSerde;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use schemas::{Address, Envelope, Money, OrderItem, OrderPlaced, Payload, SagaEvent};

pub fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

pub struct OrderWriter {
    producer: ThreadedProducer<DefaultProducerContext>,
    serde: EventSerde,
    topic: String,
    customers: u64,
}

impl OrderWriter {
    pub fn new(bootstrap: &str, topic: &str, serde: &EventSerde, customers: u64) -> Result<Self> {
        let producer = bench::kafka::load_producer(bootstrap)?;
        Ok(OrderWriter { producer, serde: serde.clone(), topic: topic.to_owned(), customers })
    }

    fn send(&self, n: u64) -> Result<()> {
        let order_id = format!("order-{n:09}");
        let event = placed(&order_id, &format!("customer-{:06}", n % self.customers), 1_000 + (n % 50) as i64 * 10);
        let value =
            self.serde.serialize(&self.topic, &event).map_err(|e| anyhow::anyhow!("encoding OrderPlaced: {e}"))?;
        let headers = OwnedHeaders::new()
            .insert(Header { key: "event_id", value: Some(event.envelope.event_id.as_str()) })
            .insert(Header { key: "event_type", value: Some("OrderPlaced") });
        let mut record = BaseRecord::to(&self.topic).key(&order_id).payload(&value).headers(headers);
        loop {
            match self.producer.send(record) {
                Ok(()) => return Ok(()),
                Err((_, returned)) => {
                    std::thread::sleep(Duration::from_millis(1));
                    record = returned;
                }
            }
        }
    }

    /// Orders `0..count`, as fast as the producer takes them.
    pub fn preload(&self, count: u64) -> Result<()> {
        for n in 0..count {
            self.send(n)?;
        }
        self.producer.flush(Duration::from_secs(120)).context("flushing the preload")
    }

    /// Orders from `first` on, `rate` per second for `duration`; returns how many it sent.
    pub fn paced(&self, first: u64, rate: u64, duration: Duration) -> Result<u64> {
        let started = Instant::now();
        let mut sent = 0u64;
        while started.elapsed() < duration {
            let due = (started.elapsed().as_secs_f64() * rate as f64) as u64;
            while sent < due {
                self.send(first + sent)?;
                sent += 1;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        self.producer.flush(Duration::from_secs(60)).context("flushing the paced load")?;
        Ok(sent)
    }
}

fn placed(order_id: &str, customer_id: &str, unit_price_cents: i64) -> SagaEvent {
    let items = vec![
        OrderItem::new("sku-1", 2, Money::new(unit_price_cents, "EUR")),
        OrderItem::new("sku-2", 1, Money::new(500, "EUR")),
    ];
    let total_cents = 2 * unit_price_cents + 500;
    let address = Address {
        line1: "Hauptstraße 1".into(),
        line2: None,
        city: "Berlin".into(),
        postal_code: "10115".into(),
        country: "DE".into(),
    };
    let payload = Payload::OrderPlaced(OrderPlaced {
        customer_id: customer_id.to_owned(),
        items,
        total_cents,
        shipping_address: address,
        currency: "EUR".into(),
        coupon_code: None,
    });
    SagaEvent::new(Envelope::new(order_id, uuid::Uuid::new_v4().to_string(), now_ms()), payload)
}
