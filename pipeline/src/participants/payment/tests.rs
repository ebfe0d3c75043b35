use std::collections::HashMap;

use schemas::{
    CancellationReason, InventoryReleased, InventoryReservationFailed, InventoryReserved, OrderCancelled, Payload,
    PaymentCompleted, SagaEvent, StockItem,
};

use operators::serdes::{JsonSerde, StringSerde};

use super::state::{AppliedRequest, Settled};
use super::stores::APPLIED_STORE;
use super::*;
use crate::event_serde::EventSerde;
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
    caused_by(
        cause,
        Payload::OrderCancelled(OrderCancelled { customer_id: "alice".into(), reason, total_cents: 2_500 }),
    )
}

fn reserved(cause: &SagaEvent) -> SagaEvent {
    let items = vec![StockItem { product_id: "p1".into(), quantity: 1 }];
    caused_by(cause, Payload::InventoryReserved(InventoryReserved { items, reservation_id: "r-1".into() }))
}

fn released(cause: &SagaEvent) -> SagaEvent {
    let released =
        InventoryReleased { reservation_id: "r-1".into(), items: vec![], reason: CancellationReason::ShipmentFailed };
    caused_by(cause, Payload::InventoryReleased(released))
}

fn reservation_failed(cause: &SagaEvent, reason: &str) -> SagaEvent {
    caused_by(
        cause,
        Payload::InventoryReservationFailed(InventoryReservationFailed { reason: reason.into(), items: vec![] }),
    )
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
    let Payload::PaymentCompleted(PaymentCompleted { customer_id, amount_cents, payment_id }) = &completed.payload
    else {
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
    assert_eq!(
        topology.changelog_topics(),
        [
            "payment-orders-changelog",
            "payment-balances-changelog",
            "payment-applied-requests-changelog",
            "payment-order-lifecycles-changelog",
            "payment-order-ledger-timers-changelog",
            "payment-balances-timers-changelog"
        ]
    );
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
    assert_eq!(
        (failure.reason.as_str(), failure.amount_cents, failure.customer_id.as_str()),
        (INSUFFICIENT_FUNDS, 600, "bob")
    );
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
    let types: Vec<_> = driven
        .read(&topics().payment)?
        .iter()
        .map(|event| (event.envelope.order_id.clone(), event.event_type()))
        .collect();
    assert_eq!(
        types,
        [
            ("o-4".to_owned(), schemas::EventType::PaymentCompleted),
            ("o-5".to_owned(), schemas::EventType::PaymentFailed)
        ]
    );
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
    let Payload::PaymentRefunded(refunded) = &refund.payload else {
        panic!("expected PaymentRefunded, got {refund:?}")
    };
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
        let topic =
            if event.event_type() == schemas::EventType::OrderCancelled { topics().order } else { topics().inventory };
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
    let Payload::PaymentRefunded(refunded) = &refund.payload else {
        panic!("expected PaymentRefunded, got {refund:?}")
    };
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
    let Payload::PaymentRefunded(refunded) = &refund.payload else {
        panic!("expected PaymentRefunded, got {refund:?}")
    };
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
    let driven = Driven {
        driver: operators::test_driver::TopologyTestDriver::new(topology(EventSerde::with_fixed_ids(), &config()))
            .hold_repartitions(),
    };
    let deliver_all = |driven: &Driven| -> TestResult {
        while let Some(topic) = driven.driver.held_topics().first().cloned() {
            driven.driver.deliver_held(&topic)?;
        }
        Ok(())
    };
    let placed = order_placed("o-1", "alice", &[("apple", 1, 1_000)], "DE");
    driven.pipe(&topics().order, &placed)?;
    deliver_all(&driven)?;
    let [completed] = <[SagaEvent; 1]>::try_from(driven.read(&topics().payment)?)
        .map_err(|e| format!("expected the charge: {e:?}"))?;
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
    let refunds = driven
        .read(&topics().payment)?
        .into_iter()
        .filter(|e| matches!(e.payload, Payload::PaymentRefunded(_)))
        .count();
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
    assert!(
        matches!(&driven.read(&topics().payment)?[..], [refunded] if matches!(refunded.payload, Payload::PaymentRefunded(_)))
    );
    driven.driver.advance_wall_clock_time(grace + std::time::Duration::from_secs(60))?;
    assert_eq!(order(&driven, "o-1")?, None, "refunded: forgotten a grace period after its last event");
    assert_eq!(balance(&driven, "alice")?, Some(10_000));
    Ok(())
}

/// A customer's balance is read and written on every charge: it must not grow with the orders
/// the customer placed, or a busy customer's every payment gets slower (and its changelog
/// records bigger) until the grace period forgets them.
#[test]
fn a_balance_record_stays_the_same_size_however_many_orders_it_settled() -> TestResult {
    let driven = payment();
    let stored_size = |driven: &Driven| -> Result<usize, Box<dyn std::error::Error>> {
        let store = driven.driver.key_value_store::<String, CustomerBalance>(BALANCES_STORE)?;
        let balance = store.get(&"alice".to_owned())?.ok_or("no balance for alice")?;
        Ok(serde_json::to_vec(&balance)?.len())
    };
    let place =
        |n: usize| driven.pipe(&topics().order, &order_placed(&format!("o-{n:03}"), "alice", &[("p1", 1, 1)], "DE"));
    place(0)?;
    let after_one = stored_size(&driven)?;
    for n in 1..200 {
        place(n)?;
    }
    assert_eq!(driven.read(&topics().payment)?.len(), 200, "every order charged");
    assert_eq!(balance(&driven, "alice")?, Some(10_000 - 200));
    assert_eq!(stored_size(&driven)?, after_one, "the balance record grew with the orders");

    Ok(())
}

/// The balance requests as the ledger sends them, for a test to send one again.
fn balance_requests(driven: &Driven) -> operators::test_driver::TestInputTopic<String, BalanceRequest> {
    let topic = format!("{}-balance-requests-repartition", PaymentConfig::default().application_id);
    driven.driver.create_input_topic(&topic, StringSerde, JsonSerde::<BalanceRequest>::new())
}

fn balance_request(order_id: &str, customer_id: &str, amount_cents: i64, command: BalanceCommand) -> BalanceRequest {
    BalanceRequest {
        order_id: order_id.into(),
        customer_id: customer_id.into(),
        amount_cents,
        command,
        cause: schemas::Envelope::new(order_id, "corr-1", 1_000),
    }
}

#[test]
fn a_request_seen_again_moves_no_money_and_is_answered_once() -> TestResult {
    let driven = payment();
    let requests = balance_requests(&driven);
    let charge = balance_request("o-1", "alice", 300, BalanceCommand::Charge);
    requests.pipe_input("alice", charge.clone())?;
    requests.pipe_input("alice", charge)?;
    let answers = driven.read(&topics().payment)?;
    let [SagaEvent { payload: Payload::PaymentCompleted(completed), .. }] = &answers[..] else {
        panic!("expected one charge, got {answers:?}")
    };
    assert_eq!(balance(&driven, "alice")?, Some(9_700));

    let refund = BalanceCommand::Refund {
        payment_id: completed.payment_id.clone(),
        reason: CancellationReason::CustomerCancelled,
    };
    let refund = balance_request("o-1", "alice", 300, refund);
    requests.pipe_input("alice", refund.clone())?;
    requests.pipe_input("alice", refund)?;
    let answers = driven.read(&topics().payment)?;
    assert!(matches!(&answers[..], [SagaEvent { payload: Payload::PaymentRefunded(_), .. }]), "{answers:?}");
    assert_eq!(balance(&driven, "alice")?, Some(10_000), "refunded once");
    Ok(())
}

#[test]
fn a_declined_charge_stays_declined_when_seen_again_even_with_money_arrived() -> TestResult {
    let driven = payment();
    let requests = balance_requests(&driven);
    let charge = balance_request("o-1", "bob", 600, BalanceCommand::Charge);
    requests.pipe_input("bob", charge.clone())?;
    assert!(matches!(&driven.read(&topics().payment)?[..], [SagaEvent { payload: Payload::PaymentFailed(_), .. }]));
    let refund = BalanceCommand::Refund { payment_id: "p-0".into(), reason: CancellationReason::CustomerCancelled };
    requests.pipe_input("bob", balance_request("o-0", "bob", 200, refund))?;
    assert_eq!(balance(&driven, "bob")?, Some(700));
    driven.read(&topics().payment)?;

    requests.pipe_input("bob", charge)?;
    assert!(driven.read(&topics().payment)?.is_empty(), "decided before: no new decision, no second answer");
    assert_eq!(balance(&driven, "bob")?, Some(700));
    Ok(())
}

#[test]
fn an_applied_request_is_forgotten_a_grace_period_after_it_was_applied() -> TestResult {
    let driven = payment();
    balance_requests(&driven).pipe_input("alice", balance_request("o-1", "alice", 300, BalanceCommand::Charge))?;
    let applied = |driven: &Driven| -> Result<Option<AppliedRequest>, Box<dyn std::error::Error>> {
        Ok(driven.driver.key_value_store::<String, AppliedRequest>(APPLIED_STORE)?.get(&"o-1/charge".to_owned())?)
    };
    let grace = crate::participants::retention::Retention::default().grace;
    driven.driver.advance_wall_clock_time(grace - std::time::Duration::from_secs(60))?;
    assert!(matches!(applied(&driven)?, Some(AppliedRequest { settled: Settled::Charged { .. }, .. })));
    driven.driver.advance_wall_clock_time(std::time::Duration::from_secs(120))?;
    assert_eq!(applied(&driven)?, None, "forgotten once older than the grace period");
    Ok(())
}
