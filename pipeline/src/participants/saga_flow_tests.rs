//! The four participants together, each in its own test driver, with a little bus carrying
//! every event to the participants that read its topic, until the saga comes to rest.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use schemas::{CancellationReason, EventType, Payload, SagaEvent};

use super::inventory::{self, InventoryConfig, ProductStock};
use super::order_saga::{self, OrderSagaState, SagaConfig, SagaStatus};
use super::payment::{self, CustomerBalance, PaymentConfig};
use super::shipping::{self, Cancellation, Shipment, ShipmentError, ShipmentGateway, ShippingConfig};
use super::test_support::{order_placed, Driven, TestResult};
use super::SagaTopics;
use crate::event_serde::EventSerde;

/// Shipments numbered in creation order; unavailable while `down` is set.
#[derive(Default)]
struct Carrier {
    created: std::sync::Mutex<Vec<String>>,
    down: AtomicBool,
}

impl ShipmentGateway for Carrier {
    fn create_shipment(&self, order_id: &str) -> Result<Shipment, ShipmentError> {
        if self.down.load(Ordering::SeqCst) {
            return Err(ShipmentError::retriable("carrier unavailable"));
        }
        let mut created = self.created.lock().map_err(|_| ShipmentError::permanent("poisoned"))?;
        created.push(order_id.to_owned());
        Ok(Shipment { shipment_id: format!("s-{}", created.len()), tracking_number: format!("TRK-{}", created.len()) })
    }

    fn cancel_shipment(&self, _order_id: &str, _shipment_id: &str) -> Result<Cancellation, ShipmentError> {
        Ok(Cancellation::Cancelled)
    }
}

struct Member {
    driven: Driven,
    reads: Vec<String>,
    writes: String,
}

struct Bus {
    members: Vec<Member>,
    carrier: Arc<Carrier>,
    /// Every event, in the order it was published.
    log: Vec<SagaEvent>,
    /// Records a participant failed on (as the runtime would retry or dead-letter them).
    failed: Vec<(usize, String, SagaEvent)>,
}

const PAYMENT: usize = 0;
const INVENTORY: usize = 1;
const SHIPPING: usize = 2;
const SAGA: usize = 3;

impl Bus {
    fn new() -> Bus {
        let topics = SagaTopics::default();
        let serde = EventSerde::with_fixed_ids();
        let carrier = Arc::new(Carrier::default());
        let payment = PaymentConfig {
            initial_balances: HashMap::from([("poor".to_owned(), 100)]),
            default_balance_cents: 10_000,
            ..Default::default()
        };
        let inventory = InventoryConfig {
            initial_stock: HashMap::from([("rare".to_owned(), 1)]),
            default_stock: 10,
            ..Default::default()
        };
        let shipping = ShippingConfig::new("unused", "unused", vec!["DE".into()]);
        let member = |topology, reads: &[&String], writes: &String| Member {
            driven: Driven::new(topology),
            reads: reads.iter().map(|topic| (*topic).clone()).collect(),
            writes: writes.clone(),
        };
        let members = vec![
            member(payment::topology(serde.clone(), &payment), &[&topics.order, &topics.inventory], &topics.payment),
            member(
                inventory::topology(serde.clone(), &inventory),
                &[&topics.order, &topics.payment],
                &topics.inventory,
            ),
            member(
                shipping::topology_with_gateway(
                    serde.clone(),
                    &shipping,
                    Arc::clone(&carrier) as Arc<dyn ShipmentGateway>,
                ),
                &[&topics.order, &topics.inventory],
                &topics.shipping,
            ),
            member(
                order_saga::topology(serde, &SagaConfig::default()),
                &[&topics.order, &topics.payment, &topics.inventory, &topics.shipping],
                &topics.order,
            ),
        ];
        Bus { members, carrier, log: Vec::new(), failed: Vec::new() }
    }

    /// Publishes an event from outside, then carries everything it causes.
    fn publish(&mut self, topic: &str, event: SagaEvent) -> TestResult {
        self.carry(VecDeque::from([(None, topic.to_owned(), event)]))
    }

    fn advance(&mut self, by: Duration) -> TestResult {
        for member in &self.members {
            member.driven.driver.advance_wall_clock_time(by)?;
        }
        self.carry(VecDeque::new())
    }

    /// Delivers a record again to one participant, as a retry would.
    fn redeliver(&mut self, member: usize, topic: &str, event: &SagaEvent) -> TestResult {
        self.members[member].driven.pipe(topic, event)?;
        self.carry(VecDeque::new())
    }

    fn carry(&mut self, mut queue: VecDeque<(Option<usize>, String, SagaEvent)>) -> TestResult {
        loop {
            for (index, member) in self.members.iter().enumerate() {
                for event in member.driven.read(&member.writes)? {
                    queue.push_back((Some(index), member.writes.clone(), event));
                }
            }
            let Some((source, topic, event)) = queue.pop_front() else { return Ok(()) };
            self.log.push(event.clone());
            for (index, member) in self.members.iter().enumerate() {
                // A participant reading its own topic got its records already.
                if Some(index) == source || !member.reads.contains(&topic) {
                    continue;
                }
                if member.driven.pipe(&topic, &event).is_err() {
                    self.failed.push((index, topic.clone(), event.clone()));
                }
            }
        }
    }

    fn types(&self) -> Vec<EventType> {
        self.log.iter().map(SagaEvent::event_type).collect()
    }

    fn position(&self, event_type: EventType) -> Option<usize> {
        self.log.iter().position(|event| event.event_type() == event_type)
    }

    fn saga(&self, order_id: &str) -> Result<OrderSagaState, Box<dyn std::error::Error>> {
        let store =
            self.members[SAGA].driven.driver.key_value_store::<String, OrderSagaState>(order_saga::ORDERS_STORE)?;
        Ok(store.get(&order_id.to_owned())?.ok_or("no saga state")?)
    }

    fn balance(&self, customer: &str) -> Result<Option<i64>, Box<dyn std::error::Error>> {
        let store =
            self.members[PAYMENT].driven.driver.key_value_store::<String, CustomerBalance>(payment::BALANCES_STORE)?;
        Ok(store.get(&customer.to_owned())?.map(|balance| balance.balance_cents))
    }

    fn stock(&self, product: &str) -> Result<Option<i64>, Box<dyn std::error::Error>> {
        let store =
            self.members[INVENTORY].driven.driver.key_value_store::<String, ProductStock>(inventory::STOCK_STORE)?;
        Ok(store.get(&product.to_owned())?.map(|stock| stock.available))
    }
}

fn cancellation_reason(bus: &Bus) -> Option<CancellationReason> {
    bus.log.iter().find_map(|event| match &event.payload {
        Payload::OrderCancelled(cancelled) => Some(cancelled.reason.clone()),
        _ => None,
    })
}

#[test]
fn an_order_runs_through_to_confirmation() -> TestResult {
    let mut bus = Bus::new();
    bus.publish("order.events", order_placed("o-1", "alice", &[("apple", 2, 1_000), ("pear", 1, 500)], "DE"))?;
    assert_eq!(
        bus.types(),
        [
            EventType::OrderPlaced,
            EventType::PaymentCompleted,
            EventType::InventoryReserved,
            EventType::ShipmentCreated,
            EventType::OrderConfirmed
        ]
    );
    let saga = bus.saga("o-1")?;
    assert_eq!(
        (saga.status, saga.tracking_number.as_deref(), saga.total_cents),
        (SagaStatus::Confirmed, Some("TRK-1"), 2_500)
    );
    assert_eq!(bus.balance("alice")?, Some(7_500));
    assert_eq!((bus.stock("apple")?, bus.stock("pear")?), (Some(8), Some(9)));
    assert!(bus.failed.is_empty());
    Ok(())
}

#[test]
fn a_rejected_address_releases_the_stock_before_refunding_the_money() -> TestResult {
    let mut bus = Bus::new();
    bus.publish("order.events", order_placed("o-1", "alice", &[("apple", 2, 1_000)], "US"))?;
    assert_eq!(cancellation_reason(&bus), Some(CancellationReason::ShipmentFailed));
    let (released, refunded) = (bus.position(EventType::InventoryReleased), bus.position(EventType::PaymentRefunded));
    assert!(released.is_some() && released < refunded, "compensations in reverse order: {:?}", bus.types());
    assert_eq!(bus.saga("o-1")?.status, SagaStatus::Cancelled);
    assert_eq!((bus.balance("alice")?, bus.stock("apple")?), (Some(10_000), Some(10)));
    assert!(bus.carrier.created.lock().map_err(|_| "poisoned")?.is_empty());
    Ok(())
}

#[test]
fn insufficient_stock_refunds_and_leaves_stock_untouched() -> TestResult {
    let mut bus = Bus::new();
    bus.publish("order.events", order_placed("o-1", "alice", &[("apple", 2, 1_000), ("rare", 2, 1_000)], "DE"))?;
    assert_eq!(cancellation_reason(&bus), Some(CancellationReason::InsufficientStock));
    assert_eq!(bus.types().iter().filter(|&&t| t == EventType::PaymentRefunded).count(), 1);
    assert_eq!(bus.saga("o-1")?.status, SagaStatus::Cancelled);
    assert_eq!((bus.balance("alice")?, bus.stock("apple")?, bus.stock("rare")?), (Some(10_000), Some(10), Some(1)));
    Ok(())
}

#[test]
fn insufficient_funds_cancels_before_anything_is_held() -> TestResult {
    let mut bus = Bus::new();
    bus.publish("order.events", order_placed("o-1", "poor", &[("apple", 1, 1_000)], "DE"))?;
    assert_eq!(bus.types(), [EventType::OrderPlaced, EventType::PaymentFailed, EventType::OrderCancelled]);
    assert_eq!(cancellation_reason(&bus), Some(CancellationReason::PaymentFailed));
    assert_eq!(
        (bus.saga("o-1")?.status, bus.balance("poor")?, bus.stock("apple")?),
        (SagaStatus::Cancelled, Some(100), None)
    );
    Ok(())
}

#[test]
fn a_shipping_step_that_never_answers_times_out_and_is_compensated() -> TestResult {
    let mut bus = Bus::new();
    bus.carrier.down.store(true, Ordering::SeqCst);
    bus.publish("order.events", order_placed("o-1", "alice", &[("apple", 1, 1_000)], "DE"))?;
    assert_eq!(bus.saga("o-1")?.status, SagaStatus::Reserved);
    let (member, topic, stuck) = bus.failed.pop().ok_or("shipping should have failed the reservation")?;
    assert_eq!((member, stuck.event_type()), (SHIPPING, EventType::InventoryReserved));

    bus.advance(SagaConfig::default().shipping_timeout)?;
    assert_eq!(cancellation_reason(&bus), Some(CancellationReason::Timeout { step: "shipping".into() }));
    assert_eq!(bus.saga("o-1")?.status, SagaStatus::Cancelled);
    assert_eq!((bus.balance("alice")?, bus.stock("apple")?), (Some(10_000), Some(10)));

    bus.carrier.down.store(false, Ordering::SeqCst);
    bus.redeliver(SHIPPING, &topic, &stuck)?;
    let last = bus.log.last().ok_or("nothing published")?;
    assert!(
        matches!(&last.payload, Payload::ShipmentFailed(failed) if failed.reason == shipping::CANCELLED),
        "{last:?}"
    );
    assert_eq!(bus.saga("o-1")?.status, SagaStatus::Cancelled, "a late answer does not revive the order");
    Ok(())
}

impl Bus {
    /// How many entries each participant keeps per order (its order store and its retention
    /// lifecycles), in member order.
    fn per_order_entries(&self) -> Result<Vec<usize>, Box<dyn std::error::Error>> {
        let driver = |member: usize| &self.members[member].driven.driver;
        let lifecycles = |member: usize| -> Result<usize, Box<dyn std::error::Error>> {
            Ok(driver(member)
                .key_value_store::<String, super::retention::Lifecycle>(super::retention::LIFECYCLE_STORE)?
                .all()?
                .len())
        };
        Ok(vec![
            driver(PAYMENT).key_value_store::<String, payment::OrderPayment>(payment::ORDERS_STORE)?.all()?.len()
                + lifecycles(PAYMENT)?,
            driver(INVENTORY)
                .key_value_store::<String, inventory::OrderReservation>(inventory::ORDERS_STORE)?
                .all()?
                .len()
                + lifecycles(INVENTORY)?,
            driver(SHIPPING).key_value_store::<String, shipping::OrderShipment>(shipping::ORDERS_STORE)?.all()?.len()
                + lifecycles(SHIPPING)?,
            driver(SAGA).key_value_store::<String, OrderSagaState>(order_saga::ORDERS_STORE)?.all()?.len()
                + lifecycles(SAGA)?,
        ])
    }
}

#[test]
fn every_participant_forgets_a_finished_order_after_the_grace_period_and_ignores_its_late_duplicates() -> TestResult {
    let mut bus = Bus::new();
    let confirmed = order_placed("o-1", "alice", &[("apple", 1, 1_000)], "DE");
    bus.publish("order.events", confirmed.clone())?;
    let cancelled = order_placed("o-2", "alice", &[("apple", 1, 1_000)], "US");
    bus.publish("order.events", cancelled.clone())?;
    assert_eq!(bus.saga("o-1")?.status, SagaStatus::Confirmed);
    assert_eq!(bus.saga("o-2")?.status, SagaStatus::Cancelled);
    assert!(bus.per_order_entries()?.iter().all(|&n| n > 0), "{:?}", bus.per_order_entries()?);

    let grace = super::retention::Retention::default().grace;
    bus.advance(grace - Duration::from_secs(60))?;
    assert!(
        bus.per_order_entries()?.iter().all(|&n| n > 0),
        "kept within the grace period: {:?}",
        bus.per_order_entries()?
    );
    bus.advance(Duration::from_secs(120))?;
    assert_eq!(bus.per_order_entries()?, [0, 0, 0, 0], "every per-order entry is gone after the grace period");
    for (member, application_id) in ["payment", "inventory", "shipping", "order-saga"].into_iter().enumerate() {
        let changelog =
            bus.members[member].driven.driver.changelog_records(&format!("{application_id}-orders-changelog"));
        let tombstones = changelog.iter().filter(|record| record.value.is_none()).count();
        assert_eq!(tombstones, 2, "{application_id}: each order's delete is a tombstone in the changelog");
    }

    // Debezium delivers both OrderPlaced again, long after: nothing is charged, reserved or shipped twice.
    let (balance, stock, shipments, events) = (
        bus.balance("alice")?,
        bus.stock("apple")?,
        bus.carrier.created.lock().map_err(|_| "poisoned")?.len(),
        bus.log.len(),
    );
    bus.publish("order.events", confirmed)?;
    bus.publish("order.events", cancelled)?;
    assert_eq!(bus.log.len(), events + 2, "only the two duplicates themselves: {:?}", &bus.types()[events..]);
    assert_eq!((bus.balance("alice")?, bus.stock("apple")?), (balance, stock));
    assert_eq!(bus.carrier.created.lock().map_err(|_| "poisoned")?.len(), shipments);
    assert_eq!(bus.per_order_entries()?, [0, 0, 0, 0], "a late duplicate brings no state back");
    Ok(())
}

#[test]
fn an_order_parked_for_a_person_keeps_its_state_past_the_grace_period() -> TestResult {
    let mut bus = Bus::new();
    bus.publish("order.events", order_placed("o-1", "alice", &[("apple", 1, 1_000)], "US"))?;
    let placed = bus.log[0].clone();
    let parked = super::test_support::caused_by(
        &placed,
        Payload::OrderRequiresIntervention(schemas::OrderRequiresIntervention {
            reason: "shipment_not_cancellable".into(),
            outstanding: vec!["cancel_shipment".into()],
        }),
    );
    bus.publish("order.events", parked)?;
    bus.advance(super::retention::Retention::default().grace + Duration::from_secs(60))?;
    assert!(
        bus.per_order_entries()?.iter().all(|&n| n > 0),
        "a parked order waits for a person: {:?}",
        bus.per_order_entries()?
    );
    Ok(())
}
