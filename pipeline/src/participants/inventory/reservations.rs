//! The per-order reservation protocol as pure functions: state in, state and effects out.
//! Every step is guarded by the phase it leaves, so a redelivered event or reply changes
//! nothing.

use std::collections::BTreeMap;

use schemas::{
    Envelope, InventoryReleased, InventoryReservationFailed, InventoryReserved, OrderItem, Payload, SagaEvent,
    StockItem,
};

use super::state::{OrderReservation, ReservationPhase, StockReply, StockRequest};
use super::{CANCELLED, INSUFFICIENT_STOCK, INVALID_QUANTITY};
use crate::participants::envelope::reply;
use crate::participants::RETRY_COMPENSATIONS;

/// What a step asks for: stock to take or give back (keyed by product), or an event to emit.
#[derive(Clone, Debug, PartialEq)]
pub(super) enum Effect {
    Reserve(StockRequest),
    Release(StockRequest),
    /// Boxed: an event is much larger than a stock request.
    Emit(Box<SagaEvent>),
}

impl Effect {
    pub(super) fn into_reserve(self) -> Option<StockRequest> {
        match self {
            Effect::Reserve(request) => Some(request),
            _ => None,
        }
    }

    pub(super) fn into_release(self) -> Option<StockRequest> {
        match self {
            Effect::Release(request) => Some(request),
            _ => None,
        }
    }

    pub(super) fn into_event(self) -> Option<SagaEvent> {
        match self {
            Effect::Emit(event) => Some(*event),
            _ => None,
        }
    }
}

pub(super) fn on_event(order: &mut OrderReservation, order_id: &str, event: &SagaEvent, now_ms: i64) -> Vec<Effect> {
    match &event.payload {
        Payload::OrderPlaced(placed) if order.items.is_none() => order.items = Some(per_product(&placed.items)),
        Payload::PaymentCompleted(_) if order.payment.is_none() => order.payment = Some(event.envelope.clone()),
        Payload::OrderCancelled(cancelled) if order.cancelled.is_none() => {
            order.cancelled = Some(cancelled.reason.clone());
            return release_if_reserved(order, order_id, &event.envelope, now_ms);
        }
        // An operator asks for the outstanding compensations again.
        Payload::OrderInterventionRequested(requested) if requested.action == RETRY_COMPENSATIONS => {
            return release_if_reserved(order, order_id, &event.envelope, now_ms);
        }
        _ => return Vec::new(),
    }
    start_if_ready(order, order_id, now_ms)
}

pub(super) fn on_reply(order: &mut OrderReservation, order_id: &str, answer: &StockReply, now_ms: i64) -> Vec<Effect> {
    let ReservationPhase::Reserving { pending, granted, short } = &mut order.phase else {
        return give_back_unexpected(order_id, answer);
    };
    let Some(position) = pending.iter().position(|product| *product == answer.product_id) else {
        return give_back_unexpected(order_id, answer);
    };
    pending.remove(position);
    let item = StockItem { product_id: answer.product_id.clone(), quantity: answer.quantity };
    if answer.granted {
        granted.push(item);
    } else {
        short.push(item);
    }
    if pending.is_empty() {
        finish(order, order_id, now_ms)
    } else {
        Vec::new()
    }
}

/// Quantities summed per product, so each product is asked once.
fn per_product(items: &[OrderItem]) -> Vec<StockItem> {
    let mut quantities: BTreeMap<&str, i32> = BTreeMap::new();
    for item in items {
        let quantity = quantities.entry(item.product_id.as_str()).or_default();
        *quantity = quantity.saturating_add(item.quantity);
    }
    quantities
        .into_iter()
        .map(|(product_id, quantity)| StockItem { product_id: product_id.to_owned(), quantity })
        .collect()
}

fn start_if_ready(order: &mut OrderReservation, order_id: &str, now_ms: i64) -> Vec<Effect> {
    let (ReservationPhase::Waiting, Some(items), Some(payment)) = (&order.phase, &order.items, &order.payment) else {
        return Vec::new();
    };
    let failure = if order.cancelled.is_some() {
        Some(CANCELLED)
    } else if items.iter().any(|item| item.quantity <= 0) {
        Some(INVALID_QUANTITY)
    } else {
        None
    };
    if let Some(reason) = failure {
        let event = failed(payment, reason, items.clone(), now_ms);
        order.phase = ReservationPhase::Failed { reason: reason.to_owned() };
        return vec![Effect::Emit(Box::new(event))];
    }
    let requests = items
        .iter()
        .map(|item| {
            Effect::Reserve(StockRequest {
                order_id: order_id.to_owned(),
                product_id: item.product_id.clone(),
                quantity: item.quantity,
            })
        })
        .collect::<Vec<_>>();
    order.phase = ReservationPhase::Reserving {
        pending: items.iter().map(|item| item.product_id.clone()).collect(),
        granted: Vec::new(),
        short: Vec::new(),
    };
    if requests.is_empty() {
        return finish(order, order_id, now_ms);
    }
    requests
}

/// Every product answered: hold the reservation, or give back what was granted and fail.
fn finish(order: &mut OrderReservation, order_id: &str, now_ms: i64) -> Vec<Effect> {
    let (ReservationPhase::Reserving { granted, short, .. }, Some(payment)) = (&order.phase, &order.payment) else {
        return Vec::new();
    };
    if short.is_empty() && order.cancelled.is_none() {
        let reservation_id = uuid::Uuid::new_v4().to_string();
        let reserved = InventoryReserved { items: granted.clone(), reservation_id: reservation_id.clone() };
        let event = reply(payment, Payload::InventoryReserved(reserved), now_ms);
        order.phase = ReservationPhase::Reserved { reservation_id };
        return vec![Effect::Emit(Box::new(event))];
    }
    let (reason, items) = match order.cancelled {
        Some(_) => (CANCELLED, order.items.clone().unwrap_or_default()),
        None => (INSUFFICIENT_STOCK, short.clone()),
    };
    let mut effects = releases(order_id, granted);
    effects.push(Effect::Emit(Box::new(failed(payment, reason, items, now_ms))));
    order.phase = ReservationPhase::Failed { reason: reason.to_owned() };
    effects
}

fn release_if_reserved(order: &mut OrderReservation, order_id: &str, cancel: &Envelope, now_ms: i64) -> Vec<Effect> {
    let (ReservationPhase::Reserved { reservation_id }, Some(reason)) = (&order.phase, &order.cancelled) else {
        return Vec::new();
    };
    let items = order.items.clone().unwrap_or_default();
    let mut effects = releases(order_id, &items);
    let released = InventoryReleased { reservation_id: reservation_id.clone(), items, reason: reason.clone() };
    effects.push(Effect::Emit(Box::new(reply(cancel, Payload::InventoryReleased(released), now_ms))));
    order.phase = ReservationPhase::Released { reservation_id: reservation_id.clone() };
    effects
}

/// A grant nobody waits for (a duplicate answer) is given back, so no stock goes missing.
fn give_back_unexpected(order_id: &str, answer: &StockReply) -> Vec<Effect> {
    if !answer.granted {
        return Vec::new();
    }
    let item = StockItem { product_id: answer.product_id.clone(), quantity: answer.quantity };
    releases(order_id, std::slice::from_ref(&item))
}

fn releases(order_id: &str, items: &[StockItem]) -> Vec<Effect> {
    items
        .iter()
        .map(|item| {
            Effect::Release(StockRequest {
                order_id: order_id.to_owned(),
                product_id: item.product_id.clone(),
                quantity: item.quantity,
            })
        })
        .collect()
}

fn failed(payment: &Envelope, reason: &str, items: Vec<StockItem>, now_ms: i64) -> SagaEvent {
    let failure = InventoryReservationFailed { reason: reason.to_owned(), items };
    reply(payment, Payload::InventoryReservationFailed(failure), now_ms)
}
