//! The saga's state machine as pure functions: a state and an event (or a timer) in, the new
//! state and at most one event to emit out.

use schemas::{
    CancellationReason, Envelope, OrderCancellationRejected, OrderCancelled, OrderConfirmed,
    OrderInterventionRequested, OrderRequiresIntervention, Payload, SagaEvent,
};

use super::config::SagaConfig;
use super::state::{Awaiting, CompensationDeadline, OrderSagaState, SagaStatus, Step};
use crate::participants::envelope::reply;
use crate::participants::{RETRY_COMPENSATIONS, SAGA_OPERATOR};

pub(super) fn on_event(
    state: &mut OrderSagaState,
    event: &SagaEvent,
    now_ms: i64,
    config: &SagaConfig,
) -> Option<SagaEvent> {
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
pub(super) fn on_timeout(
    state: &mut OrderSagaState,
    order_id: &str,
    now_ms: i64,
    config: &SagaConfig,
) -> Option<SagaEvent> {
    let awaiting = state.awaiting.take()?;
    let emitted = match awaiting.step {
        Step::Compensation => retry_or_park(state, order_id, &awaiting.cause, now_ms, config),
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
    Intervene {
        retry: bool,
        note: String,
    },
}

/// Why an order is parked when a shipment cannot be cancelled.
pub(super) const SHIPMENT_NOT_CANCELLABLE: &str = "shipment_not_cancellable";
/// Why an order is parked when its compensations did not all arrive in time, however often asked.
pub(super) const COMPENSATION_TIMED_OUT: &str = "timeout:compensation";
/// Every reason an order is parked for.
pub(super) const PARKING_REASONS: [&str; 2] = [SHIPMENT_NOT_CANCELLABLE, COMPENSATION_TIMED_OUT];

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
            return Some(Trigger::Intervene {
                retry: requested.action == RETRY_COMPENSATIONS,
                note: requested.note.clone(),
            });
        }
        Payload::OrderCancellationRequested(requested) => {
            state.customer_id.get_or_insert_with(|| requested.customer_id.clone());
            if state.status == SagaStatus::Confirmed {
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
    if state.reason.is_some() || state.status == SagaStatus::Confirmed {
        return None;
    }
    state.reason = Some(reason.clone());
    settle_cancelled(state);
    let cancelled = OrderCancelled {
        customer_id: state.customer_id.clone().unwrap_or_default(),
        reason,
        total_cents: state.total_cents,
    };
    Some(reply(cause, Payload::OrderCancelled(cancelled), now_ms))
}

/// The compensations whose deadline passed are asked for again, each up to
/// `compensation_retries` times; once one has spent its retries, the order is parked.
fn retry_or_park(
    state: &mut OrderSagaState,
    order_id: &str,
    cause: &Envelope,
    now_ms: i64,
    config: &SagaConfig,
) -> Option<SagaEvent> {
    let timeout_ms = duration_ms(config.compensation_timeout);
    let overdue: Vec<String> = state
        .compensations
        .iter()
        .filter(|(_, deadline)| deadline.due_ms <= now_ms)
        .map(|(name, _)| name.clone())
        .collect();
    if overdue.is_empty() {
        return None;
    }
    if overdue.iter().any(|name| state.compensations[name].retries >= config.compensation_retries) {
        tracing::error!(order_id, reason = ?state.reason, ?overdue, "compensation did not finish in time; the order needs intervention");
        return park(state, COMPENSATION_TIMED_OUT, cause, now_ms);
    }
    for name in &overdue {
        if let Some(deadline) = state.compensations.get_mut(name) {
            deadline.retries += 1;
            deadline.due_ms = now_ms.saturating_add(timeout_ms);
        }
    }
    tracing::warn!(order_id, ?overdue, "compensation overdue; asking the participants again");
    let retry = OrderInterventionRequested {
        action: RETRY_COMPENSATIONS.to_owned(),
        note: format!("overdue: {}", overdue.join(", ")),
        operator: SAGA_OPERATOR.to_owned(),
    };
    Some(reply(cause, Payload::OrderInterventionRequested(retry), now_ms))
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
    state.status = SagaStatus::RequiresIntervention;
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
        state.status = SagaStatus::Cancelled;
    } else if !state.progress.compensation_outstanding() {
        state.status = SagaStatus::Cancelled;
        state.parked = None;
    } else if state.parked.is_some() {
        state.status = SagaStatus::RequiresIntervention;
    } else {
        state.status = SagaStatus::Compensating;
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
        SagaStatus::Confirmed
    } else if progress.reserved {
        SagaStatus::Reserved
    } else if progress.charged {
        SagaStatus::Paid
    } else {
        SagaStatus::Placed
    };
    if supported <= state.status {
        return None;
    }
    state.status = supported;
    if supported != SagaStatus::Confirmed {
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
/// changed, so a redelivered event does not push a deadline back. While compensating, it points
/// at the earliest deadline of the outstanding compensations.
fn set_timer(state: &mut OrderSagaState, cause: &Envelope, now_ms: i64, config: &SagaConfig) {
    track_compensations(state, now_ms, config);
    let step = match state.status {
        SagaStatus::Placed => Some(Step::Payment),
        SagaStatus::Paid => Some(Step::Inventory),
        SagaStatus::Reserved => Some(Step::Shipping),
        SagaStatus::Compensating => Some(Step::Compensation),
        SagaStatus::Confirmed | SagaStatus::Cancelled | SagaStatus::RequiresIntervention => None,
    };
    match step {
        Some(Step::Compensation) => {
            let Some(due_ms) = state.compensations.values().map(|deadline| deadline.due_ms).min() else {
                state.awaiting = None;
                return;
            };
            let cause = match state.awaiting.take() {
                Some(awaiting) if awaiting.step == Step::Compensation => awaiting.cause,
                _ => cause.clone(),
            };
            state.awaiting = Some(Awaiting { step: Step::Compensation, cause, due_ms });
        }
        Some(step) if state.awaiting.as_ref().is_some_and(|awaiting| awaiting.step == step) => {}
        Some(step) => {
            let due_ms = now_ms.saturating_add(duration_ms(config.timeout(step)));
            state.awaiting = Some(Awaiting { step, cause: cause.clone(), due_ms });
        }
        None => state.awaiting = None,
    }
}

/// Gives each compensation that became due its own deadline and forgets those that arrived;
/// none outside COMPENSATING (a parked order waits for a person, without a timer).
fn track_compensations(state: &mut OrderSagaState, now_ms: i64, config: &SagaConfig) {
    if state.status != SagaStatus::Compensating {
        state.compensations.clear();
        return;
    }
    let outstanding = state.progress.outstanding();
    state.compensations.retain(|name, _| outstanding.contains(&name.as_str()));
    let due_ms = now_ms.saturating_add(duration_ms(config.compensation_timeout));
    for name in outstanding {
        state.compensations.entry(name.to_owned()).or_insert(CompensationDeadline { due_ms, retries: 0 });
    }
}

fn duration_ms(duration: std::time::Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}
