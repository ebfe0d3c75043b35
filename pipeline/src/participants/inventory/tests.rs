use std::collections::HashMap;

use schemas::{CancellationReason, EventType, OrderCancelled, Payload, PaymentCompleted, SagaEvent, StockItem};

use super::*;
use crate::event_serde::EventSerde;
use crate::participants::test_support::{assert_caused_by, caused_by, order_placed, Driven, TestResult};
use crate::participants::SagaTopics;

fn inventory() -> Driven {
    let config = InventoryConfig {
        initial_stock: HashMap::from([("apple".to_owned(), 10), ("pear".to_owned(), 1)]),
        default_stock: 5,
        ..InventoryConfig::default()
    };
    Driven::new(topology(EventSerde::with_fixed_ids(), &config))
}

fn topics() -> SagaTopics {
    SagaTopics::default()
}

fn paid(placed: &SagaEvent) -> SagaEvent {
    caused_by(
        placed,
        Payload::PaymentCompleted(PaymentCompleted {
            customer_id: "alice".into(),
            amount_cents: 100,
            payment_id: "pay-1".into(),
        }),
    )
}

fn cancelled(cause: &SagaEvent, reason: CancellationReason) -> SagaEvent {
    caused_by(cause, Payload::OrderCancelled(OrderCancelled { customer_id: "alice".into(), reason, total_cents: 100 }))
}

fn stock(driven: &Driven, product: &str) -> Result<Option<i64>, Box<dyn std::error::Error>> {
    let store = driven.driver.key_value_store::<String, ProductStock>(STOCK_STORE)?;
    Ok(store.get(&product.to_owned())?.map(|stock| stock.available))
}

fn item(product_id: &str, quantity: i32) -> StockItem {
    StockItem { product_id: product_id.into(), quantity }
}

/// Places and pays an order; returns (OrderPlaced, PaymentCompleted).
fn place_and_pay(
    driven: &Driven,
    order_id: &str,
    items: &[(&str, i32, i64)],
) -> Result<(SagaEvent, SagaEvent), Box<dyn std::error::Error>> {
    let placed = order_placed(order_id, "alice", items, "DE");
    let payment = paid(&placed);
    driven.pipe(&topics().order, &placed)?;
    driven.pipe(&topics().payment, &payment)?;
    Ok((placed, payment))
}

fn only(events: Vec<SagaEvent>) -> SagaEvent {
    let [event] =
        <[SagaEvent; 1]>::try_from(events).unwrap_or_else(|events| panic!("expected one event, got {events:?}"));
    event
}

#[test]
fn a_paid_order_reserves_every_product() -> TestResult {
    let driven = inventory();
    let (_, payment) = place_and_pay(&driven, "o-1", &[("apple", 2, 10), ("pear", 1, 10), ("apple", 1, 10)])?;
    let event = only(driven.read(&topics().inventory)?);
    let Payload::InventoryReserved(reserved) = &event.payload else {
        panic!("expected InventoryReserved, got {event:?}")
    };
    assert_eq!(reserved.items, [item("apple", 3), item("pear", 1)]);
    assert_caused_by(&event, &payment);
    assert_eq!((stock(&driven, "apple")?, stock(&driven, "pear")?), (Some(7), Some(0)));
    let order = driven
        .driver
        .key_value_store::<String, OrderReservation>(ORDERS_STORE)?
        .get(&"o-1".to_owned())?
        .ok_or("no order")?;
    assert_eq!(order.phase, ReservationPhase::Reserved { reservation_id: reserved.reservation_id.clone() });
    Ok(())
}

#[test]
fn stock_is_repartitioned_by_product() {
    let topology = topology(EventSerde::with_fixed_ids(), &InventoryConfig::default());
    assert_eq!(
        topology.repartition_topics(),
        [
            "inventory-stock-reservations-repartition",
            "inventory-stock-replies-repartition",
            "inventory-stock-releases-repartition"
        ]
    );
    assert_eq!(
        topology.changelog_topics(),
        [
            "inventory-orders-changelog",
            "inventory-stock-changelog",
            "inventory-order-lifecycles-changelog",
            "inventory-reservations-timers-changelog"
        ]
    );
    assert_eq!(topology.subtopology_count(), 2);
}

#[test]
fn a_payment_seen_before_the_order_waits_for_its_items() -> TestResult {
    let driven = inventory();
    let placed = order_placed("o-1", "alice", &[("apple", 1, 10)], "DE");
    driven.pipe(&topics().payment, &paid(&placed))?;
    assert!(driven.read(&topics().inventory)?.is_empty());
    driven.pipe(&topics().order, &placed)?;
    assert_eq!(only(driven.read(&topics().inventory)?).event_type(), EventType::InventoryReserved);
    assert_eq!(stock(&driven, "apple")?, Some(9));
    Ok(())
}

#[test]
fn a_reservation_is_all_or_nothing() -> TestResult {
    let driven = inventory();
    let (_, payment) = place_and_pay(&driven, "o-1", &[("apple", 3, 10), ("pear", 2, 10), ("plum", 1, 10)])?;
    let event = only(driven.read(&topics().inventory)?);
    let Payload::InventoryReservationFailed(failed) = &event.payload else {
        panic!("expected a failure, got {event:?}")
    };
    assert_eq!((failed.reason.as_str(), failed.items.as_slice()), (INSUFFICIENT_STOCK, &[item("pear", 2)][..]));
    assert_caused_by(&event, &payment);
    assert_eq!(
        (stock(&driven, "apple")?, stock(&driven, "pear")?, stock(&driven, "plum")?),
        (Some(10), Some(1), Some(5)),
        "stock untouched"
    );
    Ok(())
}

#[test]
fn stock_never_goes_negative() -> TestResult {
    let driven = inventory();
    place_and_pay(&driven, "o-1", &[("pear", 1, 10)])?;
    place_and_pay(&driven, "o-2", &[("pear", 1, 10)])?;
    let types: Vec<_> = driven.read(&topics().inventory)?.iter().map(SagaEvent::event_type).collect();
    assert_eq!(types, [EventType::InventoryReserved, EventType::InventoryReservationFailed]);
    assert_eq!(stock(&driven, "pear")?, Some(0));
    Ok(())
}

#[test]
fn a_redelivered_payment_reserves_once() -> TestResult {
    let driven = inventory();
    let (placed, payment) = place_and_pay(&driven, "o-1", &[("apple", 2, 10)])?;
    driven.pipe(&topics().payment, &payment)?;
    driven.pipe(&topics().order, &placed)?;
    driven.driver.restart_from_changelogs()?;
    driven.pipe(&topics().payment, &payment)?;
    assert_eq!(only(driven.read(&topics().inventory)?).event_type(), EventType::InventoryReserved);
    assert_eq!(stock(&driven, "apple")?, Some(8));
    Ok(())
}

#[test]
fn a_cancellation_after_the_reservation_releases_it_once() -> TestResult {
    let driven = inventory();
    let (_, _) = place_and_pay(&driven, "o-1", &[("apple", 2, 10), ("pear", 1, 10)])?;
    let reserved = only(driven.read(&topics().inventory)?);
    let Payload::InventoryReserved(reservation) = &reserved.payload else {
        panic!("expected InventoryReserved, got {reserved:?}")
    };
    let cancel = cancelled(&reserved, CancellationReason::ShipmentFailed);
    driven.pipe(&topics().order, &cancel)?;
    driven.pipe(&topics().order, &cancel)?;
    let event = only(driven.read(&topics().inventory)?);
    let Payload::InventoryReleased(released) = &event.payload else {
        panic!("expected InventoryReleased, got {event:?}")
    };
    assert_eq!(released.reservation_id, reservation.reservation_id);
    assert_eq!(released.items, [item("apple", 2), item("pear", 1)]);
    assert_eq!(released.reason, CancellationReason::ShipmentFailed);
    assert_caused_by(&event, &cancel);
    assert_eq!((stock(&driven, "apple")?, stock(&driven, "pear")?), (Some(10), Some(1)));
    Ok(())
}

#[test]
fn an_order_cancelled_before_payment_is_not_reserved() -> TestResult {
    let driven = inventory();
    let placed = order_placed("o-1", "alice", &[("apple", 2, 10)], "DE");
    let payment = paid(&placed);
    driven.pipe(&topics().order, &placed)?;
    driven.pipe(&topics().order, &cancelled(&placed, CancellationReason::Timeout { step: "payment".into() }))?;
    driven.pipe(&topics().payment, &payment)?;
    let event = only(driven.read(&topics().inventory)?);
    let Payload::InventoryReservationFailed(failed) = &event.payload else {
        panic!("expected a failure, got {event:?}")
    };
    assert_eq!((failed.reason.as_str(), failed.items.as_slice()), (CANCELLED, &[item("apple", 2)][..]));
    assert_caused_by(&event, &payment);
    assert_eq!(stock(&driven, "apple")?, None, "stock was never asked");
    Ok(())
}

#[test]
fn items_with_a_non_positive_quantity_fail_the_reservation() -> TestResult {
    let driven = inventory();
    place_and_pay(&driven, "o-1", &[("apple", 0, 10)])?;
    let event = only(driven.read(&topics().inventory)?);
    let Payload::InventoryReservationFailed(failed) = &event.payload else {
        panic!("expected a failure, got {event:?}")
    };
    assert_eq!(failed.reason, INVALID_QUANTITY);
    assert_eq!(stock(&driven, "apple")?, None);
    Ok(())
}

#[test]
fn a_cancellation_while_products_answer_gives_back_what_was_granted() {
    use super::reservations::{on_event, on_reply, Effect};

    let placed = order_placed("o-1", "alice", &[("apple", 2, 10), ("pear", 1, 10)], "DE");
    let payment = paid(&placed);
    let mut order = OrderReservation::default();
    on_event(&mut order, "o-1", &placed, 0);
    let asked = on_event(&mut order, "o-1", &payment, 0);
    assert_eq!(asked.len(), 2, "one request per product: {asked:?}");
    let granted = |product: &str, quantity| StockReply { product_id: product.into(), quantity, granted: true };

    assert!(on_reply(&mut order, "o-1", &granted("apple", 2), 0).is_empty(), "pear has not answered yet");
    assert!(on_event(&mut order, "o-1", &cancelled(&payment, CancellationReason::CustomerCancelled), 0).is_empty());
    let effects = on_reply(&mut order, "o-1", &granted("pear", 1), 0);
    let released: Vec<_> =
        effects.iter().filter_map(|effect| effect.clone().into_release()).map(|request| request.product_id).collect();
    assert_eq!(released, ["apple", "pear"]);
    let Some(Effect::Emit(event)) = effects.last() else { panic!("expected an event last, got {effects:?}") };
    let Payload::InventoryReservationFailed(failed) = &event.payload else {
        panic!("expected a failure, got {event:?}")
    };
    assert_eq!(failed.reason, CANCELLED);
    assert_eq!(order.phase, ReservationPhase::Failed { reason: CANCELLED.into() });

    let late = on_reply(&mut order, "o-1", &granted("apple", 2), 0);
    assert_eq!(late.into_iter().filter_map(Effect::into_release).count(), 1, "an unexpected grant is given back");
}
