use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use schemas::{CancellationReason, EventType, InventoryReserved, OrderCancelled, Payload, SagaEvent, StockItem};

use super::*;
use crate::event_serde::EventSerde;
use crate::participants::test_support::{assert_caused_by, caused_by, order_placed, Driven, TestResult};
use crate::participants::SagaTopics;

/// Counts calls (a batch counts once in `batches` and once per order in `calls`); fails with a
/// retriable error while `down` is set; refuses to cancel while `handed_over` is set, and
/// panics at a cancellation while `panics_at_cancel` is (a bug in a carrier's client).
#[derive(Default)]
struct FakeGateway {
    calls: AtomicUsize,
    batches: AtomicUsize,
    cancels: AtomicUsize,
    down: AtomicBool,
    handed_over: AtomicBool,
    panics_at_cancel: AtomicBool,
}

impl ShipmentGateway for FakeGateway {
    fn create_shipment(&self, order_id: &str) -> Result<Shipment, ShipmentError> {
        if self.down.load(Ordering::SeqCst) {
            return Err(ShipmentError::retriable("postgres is unavailable"));
        }
        self.calls.fetch_add(1, Ordering::SeqCst);
        Ok(Shipment { shipment_id: format!("s-{order_id}"), tracking_number: format!("TRK-{order_id}") })
    }

    fn create_shipments(&self, order_ids: &[String]) -> Result<HashMap<String, Shipment>, ShipmentError> {
        if self.down.load(Ordering::SeqCst) {
            return Err(ShipmentError::retriable("postgres is unavailable"));
        }
        self.batches.fetch_add(1, Ordering::SeqCst);
        order_ids.iter().map(|order_id| Ok((order_id.clone(), self.create_shipment(order_id)?))).collect()
    }

    fn cancel_shipment(&self, order_id: &str, _shipment_id: &str) -> Result<Cancellation, ShipmentError> {
        assert!(!self.panics_at_cancel.load(Ordering::SeqCst), "the carrier's client broke cancelling {order_id}");
        if self.down.load(Ordering::SeqCst) {
            return Err(ShipmentError::retriable("postgres is unavailable"));
        }
        self.cancels.fetch_add(1, Ordering::SeqCst);
        if self.handed_over.load(Ordering::SeqCst) {
            return Ok(Cancellation::TooLate { reason: "with the carrier".into() });
        }
        Ok(Cancellation::Cancelled)
    }
}

fn config() -> ShippingConfig {
    ShippingConfig::new("host=127.0.0.1 user=saga", "redis://127.0.0.1/", vec!["DE".into(), "FR".into()])
}

fn shipping() -> (Driven, Arc<FakeGateway>) {
    let gateway = Arc::new(FakeGateway::default());
    let topology = topology_with_gateway(
        EventSerde::with_fixed_ids(),
        &config(),
        Arc::clone(&gateway) as Arc<dyn ShipmentGateway>,
    );
    (Driven::new(topology), gateway)
}

fn topics() -> SagaTopics {
    SagaTopics::default()
}

fn reserved(cause: &SagaEvent) -> SagaEvent {
    let items = vec![StockItem { product_id: "p1".into(), quantity: 1 }];
    caused_by(cause, Payload::InventoryReserved(InventoryReserved { items, reservation_id: "r-1".into() }))
}

fn only(events: Vec<SagaEvent>) -> SagaEvent {
    let [event] =
        <[SagaEvent; 1]>::try_from(events).unwrap_or_else(|events| panic!("expected one event, got {events:?}"));
    event
}

fn failure_reason(event: &SagaEvent) -> &str {
    match &event.payload {
        Payload::ShipmentFailed(failed) => &failed.reason,
        _ => panic!("expected ShipmentFailed, got {event:?}"),
    }
}

#[test]
fn a_reserved_order_is_shipped() -> TestResult {
    let (driven, gateway) = shipping();
    let placed = order_placed("o-1", "alice", &[("p1", 1, 100)], "DE");
    let reservation = reserved(&placed);
    driven.pipe(&topics().order, &placed)?;
    driven.pipe(&topics().inventory, &reservation)?;
    let event = only(driven.read(&topics().shipping)?);
    let Payload::ShipmentCreated(created) = &event.payload else { panic!("expected ShipmentCreated, got {event:?}") };
    assert_eq!((created.shipment_id.as_str(), created.tracking_number.as_str()), ("s-o-1", "TRK-o-1"));
    assert_caused_by(&event, &reservation);
    assert_eq!(gateway.calls.load(Ordering::SeqCst), 1);
    let order = driven
        .driver
        .key_value_store::<String, OrderShipment>(ORDERS_STORE)?
        .get(&"o-1".to_owned())?
        .ok_or("no order")?;
    assert_eq!(
        order.outcome,
        Some(ShipmentOutcome::Created { shipment_id: "s-o-1".into(), tracking_number: "TRK-o-1".into() })
    );
    Ok(())
}

#[test]
fn a_reservation_seen_before_the_order_ships_once_the_address_is_known() -> TestResult {
    let (driven, gateway) = shipping();
    let placed = order_placed("o-1", "alice", &[("p1", 1, 100)], "FR");
    driven.pipe(&topics().inventory, &reserved(&placed))?;
    assert!(driven.read(&topics().shipping)?.is_empty());
    driven.pipe(&topics().order, &placed)?;
    assert_eq!(only(driven.read(&topics().shipping)?).event_type(), EventType::ShipmentCreated);
    assert_eq!(gateway.calls.load(Ordering::SeqCst), 1);
    Ok(())
}

#[test]
fn a_redelivered_reservation_creates_no_second_shipment() -> TestResult {
    let (driven, gateway) = shipping();
    let placed = order_placed("o-1", "alice", &[("p1", 1, 100)], "DE");
    let reservation = reserved(&placed);
    driven.pipe(&topics().order, &placed)?;
    driven.pipe(&topics().inventory, &reservation)?;
    driven.pipe(&topics().inventory, &reservation)?;
    driven.driver.restart_from_changelogs()?;
    driven.pipe(&topics().inventory, &reservation)?;
    assert_eq!(driven.read(&topics().shipping)?.len(), 1);
    assert_eq!(gateway.calls.load(Ordering::SeqCst), 1);
    Ok(())
}

#[test]
fn rejected_addresses_fail_without_a_shipment() -> TestResult {
    let (driven, gateway) = shipping();
    let mut flagged = order_placed("o-1", "alice", &[("p1", 1, 100)], "DE");
    if let Payload::OrderPlaced(placed) = &mut flagged.payload {
        placed.shipping_address.line1 = "INVALID street 1".into();
    }
    let unserved = order_placed("o-2", "alice", &[("p1", 1, 100)], "US");
    for placed in [&flagged, &unserved] {
        driven.pipe(&topics().order, placed)?;
        driven.pipe(&topics().inventory, &reserved(placed))?;
    }
    let events = driven.read(&topics().shipping)?;
    let reasons: Vec<_> = events.iter().map(failure_reason).collect();
    assert_eq!(reasons, [ADDRESS_REJECTED, ADDRESS_REJECTED]);
    assert_eq!(gateway.calls.load(Ordering::SeqCst), 0);
    Ok(())
}

#[test]
fn an_order_cancelled_before_its_reservation_arrives_is_not_shipped() -> TestResult {
    let (driven, gateway) = shipping();
    let placed = order_placed("o-1", "alice", &[("p1", 1, 100)], "DE");
    let cancel =
        OrderCancelled { customer_id: "alice".into(), reason: CancellationReason::CustomerCancelled, total_cents: 100 };
    driven.pipe(&topics().order, &placed)?;
    driven.pipe(&topics().order, &caused_by(&placed, Payload::OrderCancelled(cancel)))?;
    driven.pipe(&topics().inventory, &reserved(&placed))?;
    assert_eq!(failure_reason(&only(driven.read(&topics().shipping)?)), CANCELLED);
    assert_eq!(gateway.calls.load(Ordering::SeqCst), 0);
    Ok(())
}

#[test]
fn an_unavailable_store_fails_the_record_retriably_and_a_redelivery_ships() -> TestResult {
    let (driven, gateway) = shipping();
    let placed = order_placed("o-1", "alice", &[("p1", 1, 100)], "DE");
    let reservation = reserved(&placed);
    driven.pipe(&topics().order, &placed)?;
    gateway.down.store(true, Ordering::SeqCst);
    let error = driven.pipe(&topics().inventory, &reservation).err().ok_or("expected the record to fail")?;
    assert!(error.as_process_error().is_some_and(|error| error.is_retriable()), "{error}");
    assert!(driven.read(&topics().shipping)?.is_empty());

    gateway.down.store(false, Ordering::SeqCst);
    driven.pipe(&topics().inventory, &reservation)?;
    assert_eq!(only(driven.read(&topics().shipping)?).event_type(), EventType::ShipmentCreated);
    Ok(())
}

#[test]
fn orders_are_shipped_in_a_batch_when_the_transaction_commits() -> TestResult {
    let (driven, gateway) = shipping();
    let placed = order_placed("o-1", "alice", &[("p1", 1, 100)], "DE");
    driven.pipe(&topics().order, &placed)?;
    driven.pipe(&topics().inventory, &reserved(&placed))?;
    assert_eq!(only(driven.read(&topics().shipping)?).event_type(), EventType::ShipmentCreated);
    assert_eq!(gateway.batches.load(Ordering::SeqCst), 1, "shipped through the batch, not record by record");
    Ok(())
}

#[test]
fn after_a_failed_batch_orders_ship_one_by_one_until_the_replay_commits() -> TestResult {
    let (driven, gateway) = shipping();
    let first = order_placed("o-1", "alice", &[("p1", 1, 100)], "DE");
    let second = order_placed("o-2", "bob", &[("p1", 1, 100)], "DE");
    driven.pipe(&topics().order, &first)?;
    driven.pipe(&topics().order, &second)?;
    gateway.down.store(true, Ordering::SeqCst);
    let error = driven.pipe(&topics().inventory, &reserved(&first)).err().ok_or("expected the batch to fail")?;
    assert!(error.as_process_error().is_some_and(|error| error.is_retriable()), "{error}");
    assert!(driven.read(&topics().shipping)?.is_empty(), "the failed batch's transaction is aborted");

    gateway.down.store(false, Ordering::SeqCst);
    driven.pipe(&topics().inventory, &reserved(&first))?;
    assert_eq!(only(driven.read(&topics().shipping)?).event_type(), EventType::ShipmentCreated);
    assert_eq!(gateway.batches.load(Ordering::SeqCst), 0, "the replayed order ships on its own");
    driven.pipe(&topics().inventory, &reserved(&second))?;
    assert_eq!(only(driven.read(&topics().shipping)?).event_type(), EventType::ShipmentCreated);
    assert_eq!(gateway.batches.load(Ordering::SeqCst), 1, "once the replay committed, batches again");
    Ok(())
}

#[test]
fn an_order_made_ready_before_the_processor_panicked_ships_at_the_commit() -> TestResult {
    let (driven, gateway) = shipping();
    let shipped = order_placed("o-1", "alice", &[("p1", 1, 100)], "DE");
    driven.pipe(&topics().order, &shipped)?;
    driven.pipe(&topics().inventory, &reserved(&shipped))?;
    driven.read(&topics().shipping)?;
    let ready = order_placed("o-2", "bob", &[("p1", 1, 100)], "DE");
    driven.pipe(&topics().order, &ready)?;

    // In one transaction, o-2 becomes ready (batched in the processor's memory), then cancelling
    // o-1 panics: the processor and its batch are gone, o-2's store write stands.
    gateway.panics_at_cancel.store(true, Ordering::SeqCst);
    let (made_ready, cancelling) = driven.driver.in_one_transaction(|| {
        (driven.pipe(&topics().inventory, &reserved(&ready)), driven.pipe(&topics().order, &cancelled(&shipped)))
    })?;
    made_ready?;
    let panicked = cancelling.err().ok_or("expected the cancellation to fail")?;
    assert!(panicked.to_string().contains("panicked"), "{panicked}");

    let event = only(driven.read(&topics().shipping)?);
    assert_eq!((event.event_type(), event.envelope.order_id.as_str()), (EventType::ShipmentCreated, "o-2"));
    Ok(())
}

#[test]
fn the_real_gateway_reports_unreachable_stores_as_retriable() -> TestResult {
    let nothing_listens = ShippingConfig {
        io_timeout: Duration::from_secs(2),
        ..ShippingConfig::new("host=127.0.0.1 port=1 user=saga dbname=saga", "redis://127.0.0.1:1/", vec!["DE".into()])
    };
    let gateway = GuardedShipments::new(&nothing_listens)?;
    let started = Instant::now();
    let error = gateway.create_shipment("o-1").err().ok_or("expected an error")?;
    assert!(error.retriable, "{error}");
    assert!(error.message.contains("redis"), "{error}");
    assert!(started.elapsed() < Duration::from_secs(5), "bounded by the io timeout");
    Ok(())
}

#[test]
fn malformed_urls_are_refused_up_front() {
    let bad_redis = ShippingConfig::new("host=127.0.0.1", "not a url", vec![]);
    assert!(topology(EventSerde::with_fixed_ids(), &bad_redis).err().is_some_and(|error| !error.retriable));
    let bad_database = ShippingConfig::new("postgres://[::1", "redis://127.0.0.1/", vec![]);
    assert!(topology(EventSerde::with_fixed_ids(), &bad_database).is_err());
}

fn cancelled(cause: &SagaEvent) -> SagaEvent {
    let cancelled =
        OrderCancelled { customer_id: "c-1".into(), reason: CancellationReason::CustomerCancelled, total_cents: 100 };
    caused_by(cause, Payload::OrderCancelled(cancelled))
}

#[test]
fn a_shipment_created_before_the_cancellation_is_cancelled_once() -> TestResult {
    let (driven, gateway) = shipping();
    let placed = order_placed("o-1", "c-1", &[("p1", 1, 100)], "DE");
    driven.pipe(&topics().order, &placed)?;
    driven.pipe(&topics().inventory, &reserved(&placed))?;
    assert_eq!(only(driven.read(&topics().shipping)?).event_type(), EventType::ShipmentCreated);

    let cancel = cancelled(&placed);
    driven.pipe(&topics().order, &cancel)?;
    let undone = only(driven.read(&topics().shipping)?);
    assert_caused_by(&undone, &cancel);
    assert!(
        matches!(&undone.payload, Payload::ShipmentCancelled(c) if c.shipment_id == "s-o-1" && c.reason == CancellationReason::CustomerCancelled)
    );
    driven.pipe(&topics().order, &cancel)?;
    assert!(driven.read(&topics().shipping)?.is_empty(), "a redelivered cancellation changes nothing");
    assert_eq!(gateway.cancels.load(Ordering::SeqCst), 1);
    Ok(())
}

#[test]
fn a_shipment_with_the_carrier_is_reported_as_not_cancellable() -> TestResult {
    let (driven, gateway) = shipping();
    gateway.handed_over.store(true, Ordering::SeqCst);
    let placed = order_placed("o-1", "c-1", &[("p1", 1, 100)], "DE");
    driven.pipe(&topics().order, &placed)?;
    driven.pipe(&topics().inventory, &reserved(&placed))?;
    driven.read(&topics().shipping)?;
    driven.pipe(&topics().order, &cancelled(&placed))?;
    let refused = only(driven.read(&topics().shipping)?);
    assert!(
        matches!(&refused.payload, Payload::ShipmentCancellationFailed(f) if f.reason == "with the carrier"),
        "{refused:?}"
    );
    Ok(())
}
