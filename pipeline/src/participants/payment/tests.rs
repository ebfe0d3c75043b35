use std::collections::HashMap;

use schemas::{
    CancellationReason, InventoryReleased, InventoryReservationFailed, InventoryReserved, OrderCancelled, Payload, PaymentCompleted,
    SagaEvent, StockItem,
};

use super::*;
use crate::codec::EventSerde;
use crate::participants::test_support::{assert_caused_by, caused_by, order_placed, Driven, TestResult};
use crate::participants::SagaTopics;

fn config() -> PaymentConfig {
    PaymentConfig {
        initial_balances: HashMap::from([("alice".to_owned(), 10_000), ("bob".to_owned(), 500)]),
        default_balance_cents: 1_000,
        ..PaymentConfig::default()
    }
}

fn payment() -> Driven {
    Driven::new(topology(EventSerde::with_fixed_ids(), &config()))
}

fn topics() -> SagaTopics {
    SagaTopics::default()
}

fn balance(driven: &Driven, customer: &str) -> Result<Option<i64>, Box<dyn std::error::Error>> {
    let store = driven.driver.key_value_store::<String, CustomerBalance>(BALANCES_STORE)?;
    Ok(store.get(&customer.to_owned())?.map(|balance| balance.balance_cents))
}

fn order(driven: &Driven, order_id: &str) -> Result<Option<OrderPayment>, Box<dyn std::error::Error>> {
    Ok(driven.driver.key_value_store::<String, OrderPayment>(ORDERS_STORE)?.get(&order_id.to_owned())?)
}

fn cancelled(cause: &SagaEvent, reason: CancellationReason) -> SagaEvent {
    caused_by(cause, Payload::OrderCancelled(OrderCancelled { customer_id: "alice".into(), reason, total_cents: 2_500 }))
}

fn reserved(cause: &SagaEvent) -> SagaEvent {
    let items = vec![StockItem { product_id: "p1".into(), quantity: 1 }];
    caused_by(cause, Payload::InventoryReserved(InventoryReserved { items, reservation_id: "r-1".into() }))
}

fn released(cause: &SagaEvent) -> SagaEvent {
    let released = InventoryReleased { reservation_id: "r-1".into(), items: vec![], reason: CancellationReason::ShipmentFailed };
    caused_by(cause, Payload::InventoryReleased(released))
}

fn reservation_failed(cause: &SagaEvent, reason: &str) -> SagaEvent {
    caused_by(cause, Payload::InventoryReservationFailed(InventoryReservationFailed { reason: reason.into(), items: vec![] }))
}

/// Places alice's order of 2 500 cents and returns the OrderPlaced and the PaymentCompleted.
fn charged(driven: &Driven) -> Result<(SagaEvent, SagaEvent), Box<dyn std::error::Error>> {
    let placed = order_placed("o-1", "alice", &[("p1", 1, 2_500)], "DE");
    driven.pipe(&topics().order, &placed)?;
    let mut out = driven.read(&topics().payment)?;
    assert_eq!(out.len(), 1, "{out:?}");
    Ok((placed, out.remove(0)))
}

#[test]
fn a_placed_order_is_charged_to_its_customer() -> TestResult {
    let driven = payment();
    let (placed, completed) = charged(&driven)?;
    let Payload::PaymentCompleted(PaymentCompleted { customer_id, amount_cents, payment_id }) = &completed.payload else {
        panic!("expected PaymentCompleted, got {completed:?}");
    };
    assert_eq!((customer_id.as_str(), *amount_cents), ("alice", 2_500));
    assert_caused_by(&completed, &placed);
    assert_eq!(balance(&driven, "alice")?, Some(7_500));
    let order = order(&driven, "o-1")?.ok_or("no order record")?;
    assert_eq!(order.charge, ChargeState::Charged { payment_id: payment_id.clone() });
    assert_eq!((order.customer_id.as_deref(), order.amount_cents), (Some("alice"), 2_500));
    Ok(())
}

#[test]
fn balances_are_repartitioned_by_customer() {
    let topology = topology(EventSerde::with_fixed_ids(), &config());
    assert_eq!(topology.repartition_topics(), ["payment-balance-requests-repartition"]);
    assert_eq!(topology.changelog_topics(), ["payment-orders-changelog", "payment-balances-changelog", "payment-order-lifecycles-changelog", "payment-order-ledger-timers-changelog"]);
    assert_eq!(topology.subtopology_count(), 2);
}

#[test]
fn an_order_the_balance_does_not_cover_fails_and_moves_no_money() -> TestResult {
    let driven = payment();
    let placed = order_placed("o-2", "bob", &[("p1", 1, 600)], "DE");
    driven.pipe(&topics().order, &placed)?;
    let out = driven.read(&topics().payment)?;
    let [failed] = out.as_slice() else { panic!("expected one event, got {out:?}") };
    let Payload::PaymentFailed(failure) = &failed.payload else { panic!("expected PaymentFailed, got {failed:?}") };
    assert_eq!((failure.reason.as_str(), failure.amount_cents, failure.customer_id.as_str()), (INSUFFICIENT_FUNDS, 600, "bob"));
    assert_caused_by(failed, &placed);
    assert_eq!(balance(&driven, "bob")?, Some(500), "the starting balance is recorded, untouched");
    assert_eq!(order(&driven, "o-2")?.map(|order| order.charge), Some(ChargeState::Failed));
    Ok(())
}

#[test]
fn a_customer_first_seen_starts_with_the_default_balance() -> TestResult {
    let driven = payment();
    driven.pipe(&topics().order, &order_placed("o-3", "carol", &[("p1", 2, 300)], "DE"))?;
    assert_eq!(driven.read(&topics().payment)?.len(), 1);
    assert_eq!(balance(&driven, "carol")?, Some(400));
    Ok(())
}

#[test]
fn orders_of_one_customer_draw_on_one_balance() -> TestResult {
    let driven = payment();
    driven.pipe(&topics().order, &order_placed("o-4", "alice", &[("p1", 1, 6_000)], "DE"))?;
    driven.pipe(&topics().order, &order_placed("o-5", "alice", &[("p1", 1, 6_000)], "DE"))?;
    let types: Vec<_> = driven.read(&topics().payment)?.iter().map(|event| (event.envelope.order_id.clone(), event.event_type())).collect();
    assert_eq!(types, [("o-4".to_owned(), schemas::EventType::PaymentCompleted), ("o-5".to_owned(), schemas::EventType::PaymentFailed)]);
    assert_eq!(balance(&driven, "alice")?, Some(4_000));
    Ok(())
}

#[test]
fn a_redelivered_order_is_charged_once() -> TestResult {
    let driven = payment();
    let (placed, _) = charged(&driven)?;
    driven.pipe(&topics().order, &placed)?;
    driven.driver.restart_from_changelogs()?;
    driven.pipe(&topics().order, &placed)?;
    assert!(driven.read(&topics().payment)?.is_empty());
    assert_eq!(balance(&driven, "alice")?, Some(7_500));
    Ok(())
}

#[test]
fn a_cancelled_reserved_order_is_refunded_only_after_the_release() -> TestResult {
    let driven = payment();
    let (placed, completed) = charged(&driven)?;
    let reserved = reserved(&completed);
    driven.pipe(&topics().inventory, &reserved)?;
    let cancel = cancelled(&reserved, CancellationReason::ShipmentFailed);
    driven.pipe(&topics().order, &cancel)?;
    assert!(driven.read(&topics().payment)?.is_empty(), "no refund while the stock is still held");
    assert_eq!(balance(&driven, "alice")?, Some(7_500));

    let release = released(&cancel);
    driven.pipe(&topics().inventory, &release)?;
    let out = driven.read(&topics().payment)?;
    let [refund] = out.as_slice() else { panic!("expected one refund, got {out:?}") };
    let Payload::PaymentRefunded(refunded) = &refund.payload else { panic!("expected PaymentRefunded, got {refund:?}") };
    let Payload::PaymentCompleted(charge) = &completed.payload else { unreachable!() };
    assert_eq!(refunded.payment_id, charge.payment_id);
    assert_eq!((refunded.amount_cents, refunded.reason.clone()), (2_500, CancellationReason::ShipmentFailed));
    assert_caused_by(refund, &release);
    assert_eq!(refund.envelope.correlation_id, placed.envelope.correlation_id);
    assert_eq!(balance(&driven, "alice")?, Some(10_000));
    Ok(())
}

#[test]
fn a_refund_happens_at_most_once() -> TestResult {
    let driven = payment();
    let (_, completed) = charged(&driven)?;
    let reserved = reserved(&completed);
    let cancel = cancelled(&reserved, CancellationReason::CustomerCancelled);
    let release = released(&cancel);
    for event in [&reserved, &cancel, &release] {
        let topic = if event.event_type() == schemas::EventType::OrderCancelled { topics().order } else { topics().inventory };
        driven.pipe(&topic, event)?;
    }
    assert_eq!(driven.read(&topics().payment)?.len(), 1);
    driven.pipe(&topics().inventory, &release)?;
    driven.pipe(&topics().order, &cancel)?;
    driven.pipe(&topics().inventory, &reservation_failed(&completed, "insufficient_stock"))?;
    assert!(driven.read(&topics().payment)?.is_empty());
    assert_eq!(balance(&driven, "alice")?, Some(10_000));
    assert_eq!(order(&driven, "o-1")?.map(|order| order.refund), Some(RefundState::Refunded));
    Ok(())
}

#[test]
fn a_failed_reservation_is_refunded_at_once() -> TestResult {
    let driven = payment();
    let (_, completed) = charged(&driven)?;
    let failure = reservation_failed(&completed, "insufficient_stock");
    driven.pipe(&topics().inventory, &failure)?;
    let out = driven.read(&topics().payment)?;
    let [refund] = out.as_slice() else { panic!("expected one refund, got {out:?}") };
    let Payload::PaymentRefunded(refunded) = &refund.payload else { panic!("expected PaymentRefunded, got {refund:?}") };
    assert_eq!(refunded.reason, CancellationReason::InsufficientStock);
    assert_caused_by(refund, &failure);
    assert_eq!(balance(&driven, "alice")?, Some(10_000));
    Ok(())
}

#[test]
fn a_reservation_refused_for_cancellation_is_refunded_with_the_cancellation_reason() -> TestResult {
    let driven = payment();
    let (_, completed) = charged(&driven)?;
    driven.pipe(&topics().inventory, &reservation_failed(&completed, "cancelled"))?;
    assert!(driven.read(&topics().payment)?.is_empty(), "waits to learn why the order was cancelled");
    driven.pipe(&topics().order, &cancelled(&completed, CancellationReason::Timeout { step: "inventory".into() }))?;
    let out = driven.read(&topics().payment)?;
    let [refund] = out.as_slice() else { panic!("expected one refund, got {out:?}") };
    let Payload::PaymentRefunded(refunded) = &refund.payload else { panic!("expected PaymentRefunded, got {refund:?}") };
    assert_eq!(refunded.reason, CancellationReason::Timeout { step: "inventory".into() });
    Ok(())
}

#[test]
fn nothing_is_refunded_without_a_charge() -> TestResult {
    let driven = payment();
    let placed = order_placed("o-2", "bob", &[("p1", 1, 600)], "DE");
    driven.pipe(&topics().order, &placed)?;
    assert_eq!(driven.read(&topics().payment)?.len(), 1);
    driven.pipe(&topics().order, &cancelled(&placed, CancellationReason::PaymentFailed))?;
    driven.pipe(&topics().inventory, &reservation_failed(&placed, "insufficient_stock"))?;
    assert!(driven.read(&topics().payment)?.is_empty());
    assert_eq!(balance(&driven, "bob")?, Some(500));
    Ok(())
}

#[test]
fn an_order_cancelled_before_it_was_charged_is_not_charged() -> TestResult {
    let driven = payment();
    let placed = order_placed("o-6", "alice", &[("p1", 1, 2_500)], "DE");
    driven.pipe(&topics().order, &cancelled(&placed, CancellationReason::CustomerCancelled))?;
    driven.pipe(&topics().order, &placed)?;
    assert!(driven.read(&topics().payment)?.is_empty());
    assert_eq!(balance(&driven, "alice")?, None);
    Ok(())
}

#[test]
fn a_retry_of_a_refund_that_was_applied_publishes_no_second_refund() -> TestResult {
    let driven = Driven { driver: operators::test_driver::TopologyTestDriver::new(topology(EventSerde::with_fixed_ids(), &config())).hold_repartitions() };
    let deliver_all = |driven: &Driven| -> TestResult {
        while let Some(topic) = driven.driver.held_topics().first().cloned() {
            driven.driver.deliver_held(&topic)?;
        }
        Ok(())
    };
    let placed = order_placed("o-1", "alice", &[("apple", 1, 1_000)], "DE");
    driven.pipe(&topics().order, &placed)?;
    deliver_all(&driven)?;
    let [completed] = <[SagaEvent; 1]>::try_from(driven.read(&topics().payment)?).map_err(|e| format!("expected the charge: {e:?}"))?;
    let reserved = reserved(&completed);
    let cancel = cancelled(&reserved, CancellationReason::CustomerCancelled);
    driven.pipe(&topics().inventory, &reserved)?;
    driven.pipe(&topics().order, &cancel)?;
    // The refund request is on its way to the balance when the saga, finding the refund
    // overdue (its answer is only slow), asks for it again.
    driven.pipe(&topics().inventory, &released(&cancel))?;
    let retry = schemas::OrderInterventionRequested {
        action: crate::participants::RETRY_COMPENSATIONS.into(),
        note: "overdue: refund".into(),
        operator: crate::participants::SAGA_OPERATOR.into(),
    };
    driven.pipe(&topics().order, &caused_by(&cancel, Payload::OrderInterventionRequested(retry)))?;
    deliver_all(&driven)?;
    let refunds = driven.read(&topics().payment)?.into_iter().filter(|e| matches!(e.payload, Payload::PaymentRefunded(_))).count();
    assert_eq!(refunds, 1, "the balance applied the refund once, and says so once");
    assert_eq!(balance(&driven, "alice")?, Some(10_000));
    Ok(())
}

#[test]
fn a_cancelled_order_owed_a_refund_is_kept_past_the_grace_period_until_it_is_refunded() -> TestResult {
    let driven = payment();
    let (placed, completed) = charged(&driven)?;
    driven.pipe(&topics().inventory, &reserved(&completed))?;
    let cancellation = cancelled(&placed, CancellationReason::CustomerCancelled);
    driven.pipe(&topics().order, &cancellation)?;
    let grace = crate::participants::retention::Retention::default().grace;
    driven.driver.advance_wall_clock_time(grace + std::time::Duration::from_secs(60))?;
    assert!(order(&driven, "o-1")?.is_some(), "the refund waits for the release: the order is not settled");

    driven.pipe(&topics().inventory, &released(&cancellation))?;
    assert!(matches!(&driven.read(&topics().payment)?[..], [refunded] if matches!(refunded.payload, Payload::PaymentRefunded(_))));
    driven.driver.advance_wall_clock_time(grace + std::time::Duration::from_secs(60))?;
    assert_eq!(order(&driven, "o-1")?, None, "refunded: forgotten a grace period after its last event");
    assert_eq!(balance(&driven, "alice")?, Some(10_000));
    Ok(())
}
