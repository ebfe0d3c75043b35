//! The per-order half of payment: decides when to charge and when to refund.

use operators::error::ProcessError;
use operators::processor::{Processor, ProcessorContext};
use operators::record::Record;
use schemas::{CancellationReason, Envelope, Payload, SagaEvent};

use super::state::{BalanceCommand, BalanceRequest, ChargeState, InventoryOutcome, OrderPayment, RefundState};
use super::stores::ORDERS_STORE;
use crate::participants::reasons::inventory::CANCELLED as RESERVATION_CANCELLED;
use crate::participants::RETRY_COMPENSATIONS;

/// Keyed by order id; forwards balance requests keyed by customer id.
pub(super) struct OrderLedger;

impl Processor<String, SagaEvent, String, BalanceRequest> for OrderLedger {
    fn process(
        &mut self,
        ctx: &mut ProcessorContext<'_, String, BalanceRequest>,
        record: Record<String, SagaEvent>,
    ) -> Result<(), ProcessError> {
        let mut orders = ctx.kv_store::<String, OrderPayment>(ORDERS_STORE)?;
        let stored = orders.get(&record.key)?;
        let mut order = stored.clone().unwrap_or_default();
        let request = apply(&mut order, &record.key, &record.value);
        if stored.as_ref() != Some(&order) {
            orders.put(&record.key, &order)?;
        }
        match request {
            Some(request) => ctx.forward(
                Record::new(request.customer_id.clone(), request, record.timestamp_ms).with_headers(record.headers),
            ),
            None => Ok(()),
        }
    }
}

/// Applies one event to the order's record; returns the charge or refund it calls for. Every
/// change is guarded by the state it leaves, so a redelivered event changes nothing.
pub(super) fn apply(order: &mut OrderPayment, order_id: &str, event: &SagaEvent) -> Option<BalanceRequest> {
    match &event.payload {
        Payload::OrderPlaced(placed) => {
            if order.customer_id.is_some() {
                return None;
            }
            order.customer_id = Some(placed.customer_id.clone());
            order.amount_cents = placed.total_cents;
            if order.cancelled.is_some() || order.charge != ChargeState::NotRequested {
                return None;
            }
            order.charge = ChargeState::Requested;
            return request(order, order_id, BalanceCommand::Charge, &event.envelope);
        }
        Payload::OrderCancelled(cancelled) => {
            order.cancelled.get_or_insert_with(|| cancelled.reason.clone());
        }
        Payload::PaymentCompleted(completed) if order.charge == ChargeState::Requested => {
            order.charge = ChargeState::Charged { payment_id: completed.payment_id.clone() };
        }
        Payload::PaymentFailed(_) if order.charge == ChargeState::Requested => order.charge = ChargeState::Failed,
        Payload::PaymentRefunded(_) => order.refund = RefundState::Refunded,
        Payload::InventoryReserved(_) if order.inventory == InventoryOutcome::Unknown => {
            order.inventory = InventoryOutcome::Reserved
        }
        Payload::InventoryReservationFailed(failed) if order.inventory == InventoryOutcome::Unknown => {
            order.inventory = InventoryOutcome::Failed { reason: failed.reason.clone() };
        }
        Payload::InventoryReleased(_) => order.released = true,
        // An operator asks for the outstanding compensations again: a refund requested but never
        // confirmed is requested again (the balance answers a repeated request once).
        Payload::OrderInterventionRequested(requested) if requested.action == RETRY_COMPENSATIONS => {
            if order.refund == RefundState::Requested {
                order.refund = RefundState::NotRequested;
            }
        }
        _ => return None,
    }
    refund_if_due(order, order_id, &event.envelope)
}

/// A refund is due once, after a charge, when inventory will hold nothing back: its
/// reservation failed, or the order was cancelled and the reservation was released.
fn refund_if_due(order: &mut OrderPayment, order_id: &str, cause: &Envelope) -> Option<BalanceRequest> {
    let ChargeState::Charged { payment_id } = &order.charge else {
        return None;
    };
    if order.refund != RefundState::NotRequested {
        return None;
    }
    let reason = match (&order.inventory, &order.cancelled) {
        (InventoryOutcome::Reserved, Some(reason)) if order.released => reason.clone(),
        // Inventory refused because it saw the cancellation: wait for it to learn the reason.
        (InventoryOutcome::Failed { reason }, None) if reason == RESERVATION_CANCELLED => return None,
        (InventoryOutcome::Failed { .. }, cancelled) => {
            cancelled.clone().unwrap_or(CancellationReason::InsufficientStock)
        }
        _ => return None,
    };
    let command = BalanceCommand::Refund { payment_id: payment_id.clone(), reason };
    let refund = request(order, order_id, command, cause)?;
    order.refund = RefundState::Requested;
    Some(refund)
}

fn request(order: &OrderPayment, order_id: &str, command: BalanceCommand, cause: &Envelope) -> Option<BalanceRequest> {
    Some(BalanceRequest {
        order_id: order_id.to_owned(),
        customer_id: order.customer_id.clone()?,
        amount_cents: order.amount_cents,
        command,
        cause: cause.clone(),
    })
}
