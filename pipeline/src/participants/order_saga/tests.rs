use std::time::Duration;

use schemas::{
    CancellationReason, EventType, InventoryReleased, InventoryReservationFailed, InventoryReserved,
    OrderCancellationRequested, Payload, PaymentCompleted, PaymentFailed, PaymentRefunded, SagaEvent,
    ShipmentCancelled, ShipmentCreated, ShipmentFailed,
};

use super::*;
use crate::event_serde::EventSerde;
use crate::participants::test_support::{assert_caused_by, caused_by, order_placed, Driven, TestResult};
use crate::participants::{SagaTopics, RETRY_COMPENSATIONS, SAGA_OPERATOR};

const ORDER: &str = "o-1";

fn saga() -> Driven {
    Driven::new(topology(EventSerde::with_fixed_ids(), &SagaConfig::default()))
}

fn topics() -> SagaTopics {
    SagaTopics::default()
}

/// The events of one order's saga, each caused by the one before, piped to the right topic.
struct Run {
    driven: Driven,
    placed: SagaEvent,
    last: SagaEvent,
}

impl Run {
    fn start() -> Result<Run, Box<dyn std::error::Error>> {
        let driven = saga();
        let placed = order_placed(ORDER, "alice", &[("apple", 2, 1_000), ("pear", 1, 500)], "DE");
        driven.pipe(&topics().order, &placed)?;
        Ok(Run { driven, last: placed.clone(), placed })
    }

    fn send(&mut self, payload: Payload) -> Result<SagaEvent, Box<dyn std::error::Error>> {
        let event = caused_by(&self.last, payload);
        self.resend(&event)?;
        self.last = event.clone();
        Ok(event)
    }

    fn resend(&self, event: &SagaEvent) -> Result<(), Box<dyn std::error::Error>> {
        let topic = match event.event_type() {
            EventType::PaymentCompleted | EventType::PaymentFailed | EventType::PaymentRefunded => topics().payment,
            EventType::InventoryReserved | EventType::InventoryReservationFailed | EventType::InventoryReleased => {
                topics().inventory
            }
            EventType::ShipmentCreated | EventType::ShipmentFailed => topics().shipping,
            _ => topics().order,
        };
        Ok(self.driven.pipe(&topic, event)?)
    }

    fn decisions(&self) -> Result<Vec<SagaEvent>, Box<dyn std::error::Error>> {
        Ok(self.driven.read(&topics().order)?)
    }

    fn state(&self) -> Result<OrderSagaState, Box<dyn std::error::Error>> {
        let store = self.driven.driver.key_value_store::<String, OrderSagaState>(ORDERS_STORE)?;
        Ok(store.get(&ORDER.to_owned())?.ok_or("no saga state")?)
    }

    fn status(&self) -> Result<SagaStatus, Box<dyn std::error::Error>> {
        Ok(self.state()?.status)
    }

    fn advance(&self, by: Duration) -> Result<(), Box<dyn std::error::Error>> {
        Ok(self.driven.driver.advance_wall_clock_time(by)?)
    }

    fn paid(&mut self) -> Result<SagaEvent, Box<dyn std::error::Error>> {
        self.send(Payload::PaymentCompleted(PaymentCompleted {
            customer_id: "alice".into(),
            amount_cents: 2_500,
            payment_id: "pay-1".into(),
        }))
    }

    fn reserved(&mut self) -> Result<SagaEvent, Box<dyn std::error::Error>> {
        self.send(Payload::InventoryReserved(InventoryReserved { items: vec![], reservation_id: "r-1".into() }))
    }

    fn shipped(&mut self) -> Result<SagaEvent, Box<dyn std::error::Error>> {
        self.send(Payload::ShipmentCreated(ShipmentCreated {
            shipment_id: "s-1".into(),
            tracking_number: "TRK-1".into(),
        }))
    }

    fn refunded(&mut self, reason: CancellationReason) -> Result<SagaEvent, Box<dyn std::error::Error>> {
        self.send(Payload::PaymentRefunded(PaymentRefunded {
            customer_id: "alice".into(),
            amount_cents: 2_500,
            payment_id: "pay-1".into(),
            reason,
        }))
    }

    fn released(&mut self, reason: CancellationReason) -> Result<SagaEvent, Box<dyn std::error::Error>> {
        self.send(Payload::InventoryReleased(InventoryReleased { reservation_id: "r-1".into(), items: vec![], reason }))
    }

    fn customer_cancels(&mut self) -> Result<SagaEvent, Box<dyn std::error::Error>> {
        self.send(Payload::OrderCancellationRequested(OrderCancellationRequested {
            customer_id: "alice".into(),
            requested_by: "alice".into(),
        }))
    }
}

fn cancellation(event: &SagaEvent) -> CancellationReason {
    match &event.payload {
        Payload::OrderCancelled(cancelled) => cancelled.reason.clone(),
        _ => panic!("expected OrderCancelled, got {event:?}"),
    }
}

fn only(events: Vec<SagaEvent>) -> SagaEvent {
    let [event] =
        <[SagaEvent; 1]>::try_from(events).unwrap_or_else(|events| panic!("expected one event, got {events:?}"));
    event
}

fn timeout(step: &str) -> CancellationReason {
    CancellationReason::Timeout { step: step.into() }
}

#[test]
fn an_order_that_is_paid_reserved_and_shipped_is_confirmed() -> TestResult {
    let mut run = Run::start()?;
    assert_eq!(run.status()?, SagaStatus::Placed);
    run.paid()?;
    assert_eq!(run.status()?, SagaStatus::Paid);
    run.reserved()?;
    assert_eq!(run.status()?, SagaStatus::Reserved);
    let shipped = run.shipped()?;
    let confirmed = only(run.decisions()?);
    let Payload::OrderConfirmed(confirmation) = &confirmed.payload else {
        panic!("expected OrderConfirmed, got {confirmed:?}")
    };
    assert_eq!(
        (confirmation.customer_id.as_str(), confirmation.total_cents, confirmation.tracking_number.as_str()),
        ("alice", 2_500, "TRK-1")
    );
    assert_caused_by(&confirmed, &shipped);
    assert_eq!(confirmed.envelope.correlation_id, run.placed.envelope.correlation_id);

    let state = run.state()?;
    assert_eq!(state.status, SagaStatus::Confirmed);
    assert_eq!((state.customer_id.as_deref(), state.total_cents, state.item_count), (Some("alice"), 2_500, 3));
    assert_eq!((state.tracking_number.as_deref(), state.reason.clone(), state.version), (Some("TRK-1"), None, 4));
    assert_eq!(state.awaiting, None);
    run.advance(Duration::from_secs(3_600))?;
    assert!(run.decisions()?.is_empty(), "no timer is left");
    Ok(())
}

#[test]
fn a_failed_payment_cancels_the_order_with_nothing_to_compensate() -> TestResult {
    let mut run = Run::start()?;
    let failure = run.send(Payload::PaymentFailed(PaymentFailed {
        customer_id: "alice".into(),
        amount_cents: 2_500,
        reason: "insufficient_funds".into(),
    }))?;
    let cancelled = only(run.decisions()?);
    assert_eq!(cancellation(&cancelled), CancellationReason::PaymentFailed);
    assert_caused_by(&cancelled, &failure);
    let Payload::OrderCancelled(details) = &cancelled.payload else { unreachable!() };
    assert_eq!((details.customer_id.as_str(), details.total_cents), ("alice", 2_500));
    assert_eq!((run.status()?, run.state()?.reason), (SagaStatus::Cancelled, Some(CancellationReason::PaymentFailed)));
    Ok(())
}

#[test]
fn insufficient_stock_cancels_and_waits_for_the_refund() -> TestResult {
    let mut run = Run::start()?;
    run.paid()?;
    run.send(Payload::InventoryReservationFailed(InventoryReservationFailed {
        reason: "insufficient_stock".into(),
        items: vec![],
    }))?;
    assert_eq!(cancellation(&only(run.decisions()?)), CancellationReason::InsufficientStock);
    assert_eq!(run.status()?, SagaStatus::Compensating);
    run.refunded(CancellationReason::InsufficientStock)?;
    assert_eq!(run.status()?, SagaStatus::Cancelled);
    assert!(run.decisions()?.is_empty());
    Ok(())
}

#[test]
fn a_failed_shipment_compensates_release_then_refund() -> TestResult {
    let mut run = Run::start()?;
    run.paid()?;
    run.reserved()?;
    run.send(Payload::ShipmentFailed(ShipmentFailed { reason: "address_rejected".into() }))?;
    assert_eq!(cancellation(&only(run.decisions()?)), CancellationReason::ShipmentFailed);
    assert_eq!(run.status()?, SagaStatus::Compensating);
    run.released(CancellationReason::ShipmentFailed)?;
    assert_eq!(run.status()?, SagaStatus::Compensating, "the refund is still outstanding");
    run.refunded(CancellationReason::ShipmentFailed)?;
    assert_eq!(run.status()?, SagaStatus::Cancelled);
    let progress = run.state()?.progress;
    assert!(progress.released && progress.refunded && !progress.compensation_outstanding());
    Ok(())
}

#[test]
fn a_customer_can_cancel_until_confirmation() -> TestResult {
    let mut placed = Run::start()?;
    placed.customer_cancels()?;
    assert_eq!(cancellation(&only(placed.decisions()?)), CancellationReason::CustomerCancelled);
    assert_eq!(placed.status()?, SagaStatus::Cancelled);

    let mut paid = Run::start()?;
    paid.paid()?;
    paid.customer_cancels()?;
    assert_eq!(cancellation(&only(paid.decisions()?)), CancellationReason::CustomerCancelled);
    assert_eq!(paid.status()?, SagaStatus::Compensating);
    paid.refunded(CancellationReason::CustomerCancelled)?;
    assert_eq!(paid.status()?, SagaStatus::Cancelled);

    let mut reserved = Run::start()?;
    reserved.paid()?;
    reserved.reserved()?;
    reserved.customer_cancels()?;
    assert_eq!(cancellation(&only(reserved.decisions()?)), CancellationReason::CustomerCancelled);
    reserved.released(CancellationReason::CustomerCancelled)?;
    reserved.refunded(CancellationReason::CustomerCancelled)?;
    assert_eq!(reserved.status()?, SagaStatus::Cancelled);

    let mut confirmed = Run::start()?;
    confirmed.paid()?;
    confirmed.reserved()?;
    confirmed.shipped()?;
    assert_eq!(only(confirmed.decisions()?).event_type(), EventType::OrderConfirmed);
    confirmed.customer_cancels()?;
    let rejected = only(confirmed.decisions()?);
    assert!(
        matches!(&rejected.payload, Payload::OrderCancellationRejected(r) if r.reason == "the order is already confirmed"),
        "{rejected:?}"
    );
    confirmed.customer_cancels()?;
    assert!(confirmed.decisions()?.is_empty(), "a cancellation is refused once");
    assert_eq!(confirmed.status()?, SagaStatus::Confirmed);
    Ok(())
}

#[test]
fn each_step_times_out_on_its_own_deadline() -> TestResult {
    let run = Run::start()?;
    run.advance(Duration::from_millis(29_999))?;
    assert!(run.decisions()?.is_empty());
    run.advance(Duration::from_millis(1))?;
    let cancelled = only(run.decisions()?);
    assert_eq!(cancellation(&cancelled), timeout("payment"));
    assert_caused_by(&cancelled, &run.placed);
    assert_eq!(run.status()?, SagaStatus::Cancelled);

    let mut paid = Run::start()?;
    paid.advance(Duration::from_secs(20))?;
    paid.paid()?;
    paid.advance(Duration::from_millis(9_999))?;
    assert!(paid.decisions()?.is_empty(), "the inventory deadline runs from PAID");
    paid.advance(Duration::from_millis(1))?;
    assert_eq!(cancellation(&only(paid.decisions()?)), timeout("inventory"));
    assert_eq!(paid.status()?, SagaStatus::Compensating);

    let mut reserved = Run::start()?;
    reserved.paid()?;
    reserved.reserved()?;
    reserved.advance(Duration::from_secs(15))?;
    assert_eq!(cancellation(&only(reserved.decisions()?)), timeout("shipping"));
    assert_eq!(reserved.state()?.reason, Some(timeout("shipping")));
    Ok(())
}

/// Found by the observability issue's trace check: an event the saga emits on a timer has no
/// cause record, and went out without the order's `traceparent`.
#[test]
fn a_timeout_continues_the_trace_of_the_order() -> TestResult {
    let driven = saga();
    let placed = order_placed(ORDER, "alice", &[("apple", 1, 1_000)], "DE");
    let traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let record = operators::record::Record::new(ORDER.to_owned(), placed, crate::participants::test_support::T0)
        .with_headers(vec![operators::record::Header::new("traceparent", traceparent)]);
    driven
        .driver
        .create_input_topic(&topics().order, operators::serdes::StringSerde, EventSerde::with_fixed_ids())
        .pipe_record(record)?;
    driven.driver.advance_wall_clock_time(Duration::from_secs(30))?;
    let output = driven.driver.create_output_topic(
        &topics().order,
        operators::serdes::StringSerde,
        EventSerde::with_fixed_ids(),
    );
    let cancelled = output.read_records_to_vec()?.pop().ok_or("no cancellation")?;
    assert_eq!(cancellation(&cancelled.value), timeout("payment"));
    let header =
        cancelled.headers.iter().find(|header| header.key == "traceparent").map(|header| header.value_bytes().to_vec());
    assert_eq!(header.as_deref(), Some(traceparent.as_bytes()));
    Ok(())
}

#[test]
fn a_redelivered_event_does_not_push_a_deadline_back() -> TestResult {
    let mut run = Run::start()?;
    let paid = run.paid()?;
    run.advance(Duration::from_secs(6))?;
    run.resend(&paid)?;
    run.resend(&run.placed)?;
    run.advance(Duration::from_secs(4))?;
    assert_eq!(cancellation(&only(run.decisions()?)), timeout("inventory"));
    Ok(())
}

#[test]
fn timers_survive_a_restart() -> TestResult {
    let run = Run::start()?;
    run.driven.driver.restart_from_changelogs()?;
    run.advance(Duration::from_secs(30))?;
    assert_eq!(cancellation(&only(run.decisions()?)), timeout("payment"));
    Ok(())
}

#[test]
fn a_compensation_that_never_finishes_is_asked_for_again_then_needs_intervention() -> TestResult {
    let config = SagaConfig::default();
    let mut run = Run::start()?;
    run.paid()?;
    run.customer_cancels()?;
    assert_eq!(run.status()?, SagaStatus::Compensating);
    assert_eq!(only(run.decisions()?).event_type(), EventType::OrderCancelled);
    for attempt in 1..=config.compensation_retries {
        run.advance(config.compensation_timeout)?;
        assert_eq!(run.status()?, SagaStatus::Compensating, "retry {attempt} is not the end yet");
        let retry = only(run.decisions()?);
        let Payload::OrderInterventionRequested(requested) = &retry.payload else {
            panic!("expected a retry, got {retry:?}")
        };
        assert_eq!((requested.action.as_str(), requested.operator.as_str()), (RETRY_COMPENSATIONS, SAGA_OPERATOR));
        assert_eq!(requested.note, "overdue: refund");
        run.resend(&retry)?;
        assert_eq!(
            run.state()?.compensations["refund"].retries,
            attempt,
            "the saga's own request, read back, changes nothing"
        );
    }
    run.advance(config.compensation_timeout)?;
    assert_eq!(run.status()?, SagaStatus::RequiresIntervention);
    let parked = only(run.decisions()?);
    let Payload::OrderRequiresIntervention(parked) = &parked.payload else {
        panic!("expected the parking, got {parked:?}")
    };
    assert_eq!(
        (parked.reason.as_str(), parked.outstanding.as_slice()),
        ("timeout:compensation", &["refund".to_owned()][..])
    );
    assert!(run.state()?.compensations.is_empty(), "a parked order waits for a person, without a timer");
    run.refunded(CancellationReason::CustomerCancelled)?;
    assert_eq!(run.status()?, SagaStatus::Cancelled, "a late refund resolves it");
    Ok(())
}

#[test]
fn each_compensation_runs_on_its_own_deadline() -> TestResult {
    let timeout = SagaConfig::default().compensation_timeout;
    let mut run = Run::start()?;
    run.paid()?;
    run.customer_cancels()?;
    run.decisions()?;
    run.advance(timeout / 2)?;
    run.reserved()?;
    assert_eq!(run.status()?, SagaStatus::Compensating, "a late reservation is to be released too");
    run.advance(timeout / 2)?;
    let first = only(run.decisions()?);
    assert!(
        matches!(&first.payload, Payload::OrderInterventionRequested(r) if r.note == "overdue: refund"),
        "{first:?}"
    );
    run.released(CancellationReason::CustomerCancelled)?;
    run.advance(timeout / 2)?;
    assert!(run.decisions()?.is_empty(), "the release arrived before its deadline");
    run.advance(timeout / 2)?;
    let second = only(run.decisions()?);
    assert!(
        matches!(&second.payload, Payload::OrderInterventionRequested(r) if r.note == "overdue: refund"),
        "{second:?}"
    );
    run.refunded(CancellationReason::CustomerCancelled)?;
    assert_eq!(run.status()?, SagaStatus::Cancelled);
    assert!(run.state()?.awaiting.is_none() && run.state()?.compensations.is_empty());
    run.advance(timeout * 4)?;
    assert!(run.decisions()?.is_empty(), "nothing fires after the end");
    Ok(())
}

#[test]
fn duplicated_events_repeat_no_decision_and_no_version() -> TestResult {
    let mut run = Run::start()?;
    let paid = run.paid()?;
    let failure = run.send(Payload::InventoryReservationFailed(InventoryReservationFailed {
        reason: "insufficient_stock".into(),
        items: vec![],
    }))?;
    let version = run.state()?.version;
    for event in [&run.placed.clone(), &paid, &failure, &failure] {
        run.resend(event)?;
    }
    assert_eq!(only(run.decisions()?).event_type(), EventType::OrderCancelled);
    assert_eq!(run.state()?.version, version);

    let mut confirmed = Run::start()?;
    confirmed.paid()?;
    confirmed.reserved()?;
    let shipped = confirmed.shipped()?;
    confirmed.resend(&shipped)?;
    assert_eq!(only(confirmed.decisions()?).event_type(), EventType::OrderConfirmed);
    Ok(())
}

#[test]
fn a_confirmed_order_never_moves_and_late_steps_of_a_cancelled_one_are_compensated() -> TestResult {
    let mut confirmed = Run::start()?;
    let paid = confirmed.paid()?;
    let reserved = confirmed.reserved()?;
    confirmed.shipped()?;
    confirmed.resend(&reserved)?;
    confirmed.resend(&paid)?;
    confirmed.send(Payload::ShipmentFailed(ShipmentFailed { reason: "address_rejected".into() }))?;
    assert_eq!(confirmed.status()?, SagaStatus::Confirmed);
    assert_eq!(only(confirmed.decisions()?).event_type(), EventType::OrderConfirmed);

    let mut cancelled = Run::start()?;
    cancelled.customer_cancels()?;
    cancelled.paid()?;
    cancelled.reserved()?;
    cancelled.shipped()?;
    assert_eq!(cancelled.status()?, SagaStatus::Compensating, "each late step must be undone");
    assert_eq!(only(cancelled.decisions()?).event_type(), EventType::OrderCancelled);
    cancelled.released(CancellationReason::CustomerCancelled)?;
    cancelled.refunded(CancellationReason::CustomerCancelled)?;
    assert_eq!(cancelled.status()?, SagaStatus::Compensating, "the shipment is still live");
    cancelled.send(Payload::ShipmentCancelled(ShipmentCancelled {
        shipment_id: "s-1".into(),
        reason: CancellationReason::CustomerCancelled,
    }))?;
    assert_eq!(cancelled.status()?, SagaStatus::Cancelled);
    assert!(cancelled.decisions()?.is_empty());
    Ok(())
}

#[test]
fn events_arriving_before_the_order_still_count() -> TestResult {
    let driven = saga();
    let placed = order_placed(ORDER, "alice", &[("apple", 1, 700)], "DE");
    let paid = caused_by(
        &placed,
        Payload::PaymentCompleted(PaymentCompleted {
            customer_id: "alice".into(),
            amount_cents: 700,
            payment_id: "p".into(),
        }),
    );
    driven.pipe(&topics().payment, &paid)?;
    driven.pipe(&topics().order, &placed)?;
    let state = driven
        .driver
        .key_value_store::<String, OrderSagaState>(ORDERS_STORE)?
        .get(&ORDER.to_owned())?
        .ok_or("no state")?;
    assert_eq!((state.status, state.total_cents, state.item_count), (SagaStatus::Paid, 700, 1));
    assert_eq!(state.awaiting.map(|awaiting| awaiting.step), Some(Step::Inventory));
    Ok(())
}

#[test]
fn a_payment_failure_overtaking_its_order_still_cancels_with_the_terms() -> TestResult {
    let driven = saga();
    let placed = order_placed(ORDER, "alice", &[("apple", 1, 700)], "DE");
    let failure = PaymentFailed { customer_id: "alice".into(), amount_cents: 700, reason: "insufficient_funds".into() };
    driven.pipe(&topics().payment, &caused_by(&placed, Payload::PaymentFailed(failure)))?;
    let cancelled = only(driven.read(&topics().order)?);
    let Payload::OrderCancelled(details) = &cancelled.payload else {
        panic!("expected OrderCancelled, got {cancelled:?}")
    };
    assert_eq!(
        (details.customer_id.as_str(), details.total_cents, details.reason.clone()),
        ("alice", 700, CancellationReason::PaymentFailed)
    );
    driven.pipe(&topics().order, &placed)?;
    let state = driven
        .driver
        .key_value_store::<String, OrderSagaState>(ORDERS_STORE)?
        .get(&ORDER.to_owned())?
        .ok_or("no state")?;
    assert_eq!((state.status, state.item_count, state.awaiting), (SagaStatus::Cancelled, 1, None));
    assert!(driven.read(&topics().order)?.is_empty());
    Ok(())
}
