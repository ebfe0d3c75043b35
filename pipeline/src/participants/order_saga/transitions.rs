//! The saga's state machine as pure functions: a state and an event (or a timer) in, the new
//! state and at most one event to emit out.

use schemas::{
    CancellationReason, Envelope, OrderCancellationRejected, OrderCancelled, OrderConfirmed, OrderRequiresIntervention, Payload, SagaEvent,
};

use super::config::SagaConfig;
use super::state::{Awaiting, OrderSagaState, OrderStatus, Step};
use crate::participants::envelope::reply;
use crate::participants::RETRY_COMPENSATIONS;

pub(super) fn on_event(state: &mut OrderSagaState, event: &SagaEvent, now_ms: i64, config: &SagaConfig) -> Option<SagaEvent> {
    if state.correlation_id.is_empty() {
        state.correlation_id = event.envelope.correlation_id.clone();
    }
    let emitted = match learn(state, &event.payload) {
        Some(Trigger::Cancel(reason)) => cancel(state, reason, &event.envelope, now_ms),
        Some(Trigger::RejectCancellation) => reject_cancellation(state, &event.envelope, now_ms),
        Some(Trigger::Park(reason)) => park(state, reason, &event.envelope, now_ms),
        Some(Trigger::Intervene { retry, note }) => {
            intervene(state, retry, note);
            None
        }
        None => None,
    };
    let emitted = emitted.or_else(|| advance(state, &event.envelope, now_ms));
    set_timer(state, &event.envelope, now_ms, config);
    emitted
}

/// The step timer fired.
pub(super) fn on_timeout(state: &mut OrderSagaState, order_id: &str, now_ms: i64, config: &SagaConfig) -> Option<SagaEvent> {
    let awaiting = state.awaiting.take()?;
    let emitted = match awaiting.step {
        Step::Compensation => {
            tracing::error!(order_id, reason = ?state.reason, "compensation did not finish in time; the order needs intervention");
            park(state, "timeout:compensation", &awaiting.cause, now_ms)
        }
        step => cancel(state, CancellationReason::Timeout { step: step.as_str().to_owned() }, &awaiting.cause, now_ms),
    };
    set_timer(state, &awaiting.cause, now_ms, config);
    emitted
}

/// What an event calls for, besides the facts it carries.
enum Trigger {
    Cancel(CancellationReason),
    /// A customer asked to cancel an order that is confirmed already.
    RejectCancellation,
    /// A compensation cannot happen without a person.
    Park(&'static str),
    /// An operator acted on the parked order: retry its compensations, or resolve it.
    Intervene { retry: bool, note: String },
}

/// Why an order is parked when a shipment cannot be cancelled.
pub(super) const SHIPMENT_NOT_CANCELLABLE: &str = "shipment_not_cancellable";

/// Records the facts an event carries; returns what else it calls for, if anything.
fn learn(state: &mut OrderSagaState, payload: &Payload) -> Option<Trigger> {
    let progress = &mut state.progress;
    match payload {
        Payload::OrderPlaced(placed) if !progress.placed => {
            progress.placed = true;
            state.customer_id = Some(placed.customer_id.clone());
            state.total_cents = placed.total_cents;
            state.item_count = placed.items.iter().map(|item| i64::from(item.quantity)).sum();
        }
        Payload::PaymentCompleted(completed) => {
            progress.charged = true;
            learn_terms(state, &completed.customer_id, completed.amount_cents);
        }
        Payload::PaymentFailed(failed) => {
            learn_terms(state, &failed.customer_id, failed.amount_cents);
            return Some(Trigger::Cancel(CancellationReason::PaymentFailed));
        }
        Payload::PaymentRefunded(_) => progress.refunded = true,
        Payload::InventoryReserved(_) => progress.reserved = true,
        Payload::InventoryReservationFailed(_) => return Some(Trigger::Cancel(CancellationReason::InsufficientStock)),
        Payload::InventoryReleased(_) => progress.released = true,
        Payload::ShipmentCreated(created) => {
            progress.shipped = true;
            state.tracking_number.get_or_insert_with(|| created.tracking_number.clone());
        }
        Payload::ShipmentFailed(_) => return Some(Trigger::Cancel(CancellationReason::ShipmentFailed)),
        Payload::ShipmentCancelled(_) => progress.shipment_cancelled = true,
        Payload::ShipmentCancellationFailed(_) => return Some(Trigger::Park(SHIPMENT_NOT_CANCELLABLE)),
        Payload::OrderInterventionRequested(requested) => {
            return Some(Trigger::Intervene { retry: requested.action == RETRY_COMPENSATIONS, note: requested.note.clone() });
        }
        Payload::OrderCancellationRequested(requested) => {
            state.customer_id.get_or_insert_with(|| requested.customer_id.clone());
            if state.status == OrderStatus::Confirmed {
                return Some(Trigger::RejectCancellation);
            }
            return Some(Trigger::Cancel(CancellationReason::CustomerCancelled));
        }
        _ => {}
    }
    None
}

/// Customer and total from a payment that overtook its OrderPlaced (they travel on different
/// topics); OrderPlaced's own values win.
fn learn_terms(state: &mut OrderSagaState, customer_id: &str, amount_cents: i64) {
    if !state.progress.placed {
        state.customer_id.get_or_insert_with(|| customer_id.to_owned());
        state.total_cents = amount_cents;
    }
}

/// Decides the cancellation, once, unless the order is already confirmed or cancelled.
fn cancel(state: &mut OrderSagaState, reason: CancellationReason, cause: &Envelope, now_ms: i64) -> Option<SagaEvent> {
    if state.reason.is_some() || state.status == OrderStatus::Confirmed {
        return None;
    }
    state.reason = Some(reason.clone());
    settle_cancelled(state);
    let cancelled = OrderCancelled { customer_id: state.customer_id.clone().unwrap_or_default(), reason, total_cents: state.total_cents };
    Some(reply(cause, Payload::OrderCancelled(cancelled), now_ms))
}

/// A confirmed order stays confirmed: the customer is told so, once.
fn reject_cancellation(state: &mut OrderSagaState, cause: &Envelope, now_ms: i64) -> Option<SagaEvent> {
    if state.cancellation_rejected {
        return None;
    }
    state.cancellation_rejected = true;
    let rejected = OrderCancellationRejected {
        customer_id: state.customer_id.clone().unwrap_or_default(),
        reason: "the order is already confirmed".to_owned(),
    };
    Some(reply(cause, Payload::OrderCancellationRejected(rejected), now_ms))
}

/// Parks a cancelled order for a person, saying why and what is missing, once.
fn park(state: &mut OrderSagaState, reason: &str, cause: &Envelope, now_ms: i64) -> Option<SagaEvent> {
    if state.parked.is_some() || state.resolution.is_some() || !state.progress.compensation_outstanding() {
        return None;
    }
    state.parked = Some(reason.to_owned());
    state.status = OrderStatus::RequiresIntervention;
    let outstanding = state.progress.outstanding().into_iter().map(str::to_owned).collect();
    let parked = OrderRequiresIntervention { reason: reason.to_owned(), outstanding };
    Some(reply(cause, Payload::OrderRequiresIntervention(parked), now_ms))
}

/// An operator's action, on a parked order only. A retry un-parks it: the participants try the
/// outstanding compensations again, under a new compensation timer. A resolution ends it
/// CANCELLED as it stands.
fn intervene(state: &mut OrderSagaState, retry: bool, note: String) {
    if state.parked.is_none() {
        return;
    }
    state.parked = None;
    if !retry {
        state.resolution = Some(note);
    }
}

/// The status of a cancelled order: CANCELLED once nothing is held, else COMPENSATING, or
/// REQUIRES_INTERVENTION while parked. A step that completes late (after the cancellation)
/// takes a CANCELLED order back to COMPENSATING: the participants saw the cancellation and
/// compensate that step too.
fn settle_cancelled(state: &mut OrderSagaState) {
    if state.resolution.is_some() {
        state.status = OrderStatus::Cancelled;
    } else if !state.progress.compensation_outstanding() {
        state.status = OrderStatus::Cancelled;
        state.parked = None;
    } else if state.parked.is_some() {
        state.status = OrderStatus::RequiresIntervention;
    } else {
        state.status = OrderStatus::Compensating;
    }
}

/// Moves the status forward to what the facts support; confirms once.
fn advance(state: &mut OrderSagaState, cause: &Envelope, now_ms: i64) -> Option<SagaEvent> {
    if state.reason.is_some() {
        settle_cancelled(state);
        return None;
    }
    let progress = &state.progress;
    let supported = if progress.charged && progress.reserved && progress.shipped {
        OrderStatus::Confirmed
    } else if progress.reserved {
        OrderStatus::Reserved
    } else if progress.charged {
        OrderStatus::Paid
    } else {
        OrderStatus::Placed
    };
    if supported <= state.status {
        return None;
    }
    state.status = supported;
    if supported != OrderStatus::Confirmed {
        return None;
    }
    let confirmed = OrderConfirmed {
        customer_id: state.customer_id.clone().unwrap_or_default(),
        total_cents: state.total_cents,
        tracking_number: state.tracking_number.clone().unwrap_or_default(),
    };
    Some(reply(cause, Payload::OrderConfirmed(confirmed), now_ms))
}

/// Points the timer at the step the order now waits on, restarting it only when the step
/// changed, so a redelivered event does not push a deadline back.
fn set_timer(state: &mut OrderSagaState, cause: &Envelope, now_ms: i64, config: &SagaConfig) {
    let step = match state.status {
        OrderStatus::Placed => Some(Step::Payment),
        OrderStatus::Paid => Some(Step::Inventory),
        OrderStatus::Reserved => Some(Step::Shipping),
        OrderStatus::Compensating => Some(Step::Compensation),
        OrderStatus::Confirmed | OrderStatus::Cancelled | OrderStatus::RequiresIntervention => None,
    };
    match step {
        Some(step) if state.awaiting.as_ref().is_some_and(|awaiting| awaiting.step == step) => {}
        Some(step) => {
            let timeout_ms = i64::try_from(config.timeout(step).as_millis()).unwrap_or(i64::MAX);
            state.awaiting = Some(Awaiting { step, cause: cause.clone(), due_ms: now_ms.saturating_add(timeout_ms) });
        }
        None => state.awaiting = None,
    }
}
