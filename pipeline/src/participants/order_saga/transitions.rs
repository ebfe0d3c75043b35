//! The saga's state machine as pure functions: a state and an event (or a timer) in, the new
//! state and at most one event to emit out.

use schemas::{CancellationReason, Envelope, OrderCancelled, OrderConfirmed, Payload, SagaEvent};

use super::config::SagaConfig;
use super::state::{Awaiting, OrderSagaState, OrderStatus, Step};
use crate::participants::envelope::reply;

pub(super) fn on_event(state: &mut OrderSagaState, event: &SagaEvent, now_ms: i64, config: &SagaConfig) -> Option<SagaEvent> {
    if state.correlation_id.is_empty() {
        state.correlation_id = event.envelope.correlation_id.clone();
    }
    let trigger = learn(state, &event.payload);
    let emitted = match trigger {
        Some(reason) => cancel(state, reason, &event.envelope, now_ms),
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
            state.status = OrderStatus::RequiresIntervention;
            None
        }
        step => cancel(state, CancellationReason::Timeout { step: step.as_str().to_owned() }, &awaiting.cause, now_ms),
    };
    set_timer(state, &awaiting.cause, now_ms, config);
    emitted
}

/// Records the facts an event carries; returns the cancellation it calls for, if any.
fn learn(state: &mut OrderSagaState, payload: &Payload) -> Option<CancellationReason> {
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
            return Some(CancellationReason::PaymentFailed);
        }
        Payload::PaymentRefunded(_) => progress.refunded = true,
        Payload::InventoryReserved(_) => progress.reserved = true,
        Payload::InventoryReservationFailed(_) => return Some(CancellationReason::InsufficientStock),
        Payload::InventoryReleased(_) => progress.released = true,
        Payload::ShipmentCreated(created) => {
            progress.shipped = true;
            state.tracking_number.get_or_insert_with(|| created.tracking_number.clone());
        }
        Payload::ShipmentFailed(_) => return Some(CancellationReason::ShipmentFailed),
        Payload::OrderCancellationRequested(requested) => {
            state.customer_id.get_or_insert_with(|| requested.customer_id.clone());
            return Some(CancellationReason::CustomerCancelled);
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
    state.status = if state.progress.compensation_outstanding() { OrderStatus::Compensating } else { OrderStatus::Cancelled };
    let cancelled = OrderCancelled { customer_id: state.customer_id.clone().unwrap_or_default(), reason, total_cents: state.total_cents };
    Some(reply(cause, Payload::OrderCancelled(cancelled), now_ms))
}

/// Moves the status forward to what the facts support; confirms once.
fn advance(state: &mut OrderSagaState, cause: &Envelope, now_ms: i64) -> Option<SagaEvent> {
    if state.reason.is_some() {
        let compensating = matches!(state.status, OrderStatus::Compensating | OrderStatus::RequiresIntervention);
        if compensating && !state.progress.compensation_outstanding() {
            state.status = OrderStatus::Cancelled;
        }
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
