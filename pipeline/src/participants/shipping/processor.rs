//! The order-keyed shipping processor.

use std::collections::BTreeMap;
use std::sync::Arc;

use operators::error::ProcessError;
use operators::processor::{Processor, ProcessorContext};
use operators::record::{Header, Record};
use schemas::{CancellationReason, Payload, SagaEvent, ShipmentCancellationFailed, ShipmentCancelled};

use super::config::accepts;
use super::gateway::{Cancellation, Shipment, ShipmentGateway};
use super::state::{CancellationOutcome, OrderShipment, ShipmentOutcome};
use super::stores::ORDERS_STORE;
use super::{ADDRESS_REJECTED, CANCELLED};
use crate::participants::envelope::{event_record, reply};
use crate::participants::RETRY_COMPENSATIONS;

pub(super) struct ShipOrders {
    gateway: Arc<dyn ShipmentGateway>,
    allowed_countries: Arc<[String]>,
    /// Orders to ship when the transaction commits, all in one batch, with the timestamp and
    /// headers of the record that made each ready. A hint: the store decides at the commit.
    ready: BTreeMap<String, (i64, Vec<Header>)>,
    /// After a batch failed: ship record by record until the replay reaches its commit, so that
    /// the runtime's pauses, retries and dead letters apply to each order, the one that failed
    /// the batch included.
    one_by_one: bool,
}

/// What a reserved order with no outcome needs next.
enum Next {
    /// Its address is not known yet.
    Wait,
    Fail(&'static str),
    Ship,
}

impl ShipOrders {
    pub(super) fn new(gateway: Arc<dyn ShipmentGateway>, allowed_countries: Arc<[String]>) -> Self {
        ShipOrders { gateway, allowed_countries, ready: BTreeMap::new(), one_by_one: false }
    }
}

impl Processor<String, SagaEvent> for ShipOrders {
    /// After a panic, finds the orders that were ready but not shipped: the batch in memory went
    /// with the processor this one replaces, and their store writes stand. At a task's start
    /// there are none under exactly-once (each commit ships its batch first), so the store is
    /// not scanned then. (Under at-least-once a changelog may hold an order made ready by a
    /// record that was dead-lettered on the replay; that order waits, as the record does.)
    fn init(&mut self, ctx: &mut ProcessorContext<'_, String, SagaEvent>) -> Result<(), ProcessError> {
        if !ctx.replaces_a_panicked_processor() {
            return Ok(());
        }
        let now_ms = ctx.current_system_time_ms();
        let orders = ctx.kv_store::<String, OrderShipment>(ORDERS_STORE)?;
        for entry in orders.all() {
            let (order_id, order) = entry?;
            if order.outcome.is_none() && order.reserved.is_some() && !matches!(self.next(&order), Next::Wait) {
                self.ready.insert(order_id, (now_ms, Vec::new()));
            }
        }
        Ok(())
    }

    fn process(
        &mut self,
        ctx: &mut ProcessorContext<'_, String, SagaEvent>,
        record: Record<String, SagaEvent>,
    ) -> Result<(), ProcessError> {
        let now_ms = ctx.current_system_time_ms();
        let mut orders = ctx.kv_store::<String, OrderShipment>(ORDERS_STORE)?;
        let stored = orders.get(&record.key)?;
        let mut order = stored.clone().unwrap_or_default();
        learn(&mut order, &record.value);
        let mut emitted = None;
        if let (None, Some(reserved)) = (&order.outcome, &order.reserved) {
            let outcome = match self.next(&order) {
                Next::Wait => None,
                Next::Fail(reason) => Some(ShipmentOutcome::Failed { reason: reason.to_owned() }),
                Next::Ship if self.one_by_one => Some(created(self.gateway.create_shipment(&record.key)?)),
                Next::Ship => {
                    self.ready.insert(record.key.clone(), (record.timestamp_ms, record.headers.clone()));
                    None
                }
            };
            if let Some(outcome) = outcome {
                emitted = Some(reply(reserved, outcome.payload(), now_ms));
                order.outcome = Some(outcome);
            }
        }
        // A shipment created before the cancellation reached us: undo it, once; and again when
        // an operator asks, if the carrier refused before.
        let retry =
            matches!(&record.value.payload, Payload::OrderInterventionRequested(r) if r.action == RETRY_COMPENSATIONS);
        let due = match (&record.value.payload, &order.cancellation) {
            (Payload::OrderCancelled(_), None) => true,
            (_, Some(CancellationOutcome::TooLate { .. })) => retry,
            _ => false,
        };
        if let (true, Some(ShipmentOutcome::Created { shipment_id, .. }), Some(reason)) =
            (due, &order.outcome, &order.cancel_reason)
        {
            let (outcome, payload) = self.cancel(&record.key, shipment_id, reason)?;
            emitted = Some(reply(&record.value.envelope, payload, now_ms));
            order.cancellation = Some(outcome);
        }
        if stored.as_ref() != Some(&order) {
            orders.put(&record.key, &order)?;
        }
        match emitted {
            Some(event) => ctx.forward(event_record(event, record.timestamp_ms, &record.headers)),
            None => Ok(()),
        }
    }

    /// Ships the orders that became ready since the last commit, in one batch. The store has the
    /// last word: an order whose record an abort rolled back since, or one cancelled meanwhile,
    /// is not shipped.
    fn before_commit(&mut self, ctx: &mut ProcessorContext<'_, String, SagaEvent>) -> Result<(), ProcessError> {
        // A transaction shipped order by order reached its commit: the next one batches again.
        self.one_by_one = false;
        if self.ready.is_empty() {
            return Ok(());
        }
        let ready = std::mem::take(&mut self.ready);
        let now_ms = ctx.current_system_time_ms();
        let mut orders = ctx.kv_store::<String, OrderShipment>(ORDERS_STORE)?;
        let mut decided = Vec::with_capacity(ready.len());
        for (order_id, cause) in ready {
            let Some(order) = orders.get(&order_id)?.filter(|order| order.outcome.is_none()) else {
                continue;
            };
            let next = match (&order.reserved, self.next(&order)) {
                (None, _) | (_, Next::Wait) => continue,
                (Some(_), next) => next,
            };
            decided.push((order_id, order, next, cause));
        }
        let to_ship: Vec<String> =
            decided.iter().filter(|(_, _, next, _)| matches!(next, Next::Ship)).map(|(id, ..)| id.clone()).collect();
        let mut shipments = match to_ship.is_empty() {
            true => Default::default(),
            false => self.gateway.create_shipments(&to_ship).inspect_err(|_| self.one_by_one = true)?,
        };
        let mut replies = Vec::with_capacity(decided.len());
        for (order_id, mut order, next, (timestamp_ms, headers)) in decided {
            let outcome = match next {
                Next::Fail(reason) => ShipmentOutcome::Failed { reason: reason.to_owned() },
                _ => match shipments.remove(&order_id) {
                    Some(shipment) => created(shipment),
                    None => {
                        self.one_by_one = true;
                        return Err(ProcessError::processing(format!(
                            "shipping: no shipment came back for order {order_id}"
                        ))
                        .with_retriable(true));
                    }
                },
            };
            let Some(reserved) = &order.reserved else { continue };
            replies.push(event_record(reply(reserved, outcome.payload(), now_ms), timestamp_ms, &headers));
            order.outcome = Some(outcome);
            orders.put(&order_id, &order)?;
        }
        replies.into_iter().try_for_each(|event| ctx.forward(event))
    }
}

impl ShipOrders {
    /// What a reserved order with no outcome needs next.
    fn next(&self, order: &OrderShipment) -> Next {
        let Some(address) = &order.address else {
            return Next::Wait;
        };
        if order.cancelled {
            return Next::Fail(CANCELLED);
        }
        if !accepts(&self.allowed_countries, address) {
            return Next::Fail(ADDRESS_REJECTED);
        }
        Next::Ship
    }
}

fn created(shipment: Shipment) -> ShipmentOutcome {
    ShipmentOutcome::Created { shipment_id: shipment.shipment_id, tracking_number: shipment.tracking_number }
}

impl ShipOrders {
    fn cancel(
        &self,
        order_id: &str,
        shipment_id: &str,
        reason: &CancellationReason,
    ) -> Result<(CancellationOutcome, Payload), ProcessError> {
        let shipment_id = shipment_id.to_owned();
        Ok(match self.gateway.cancel_shipment(order_id, &shipment_id)? {
            Cancellation::Cancelled => (
                CancellationOutcome::Cancelled,
                Payload::ShipmentCancelled(ShipmentCancelled { shipment_id, reason: reason.clone() }),
            ),
            Cancellation::TooLate { reason } => (
                CancellationOutcome::TooLate { reason: reason.clone() },
                Payload::ShipmentCancellationFailed(ShipmentCancellationFailed { shipment_id, reason }),
            ),
        })
    }
}

/// Records what the event says about the order; repeated events change nothing.
fn learn(order: &mut OrderShipment, event: &SagaEvent) {
    match &event.payload {
        Payload::OrderPlaced(placed) if order.address.is_none() => {
            order.address = Some(placed.shipping_address.clone())
        }
        Payload::InventoryReserved(_) if order.reserved.is_none() => order.reserved = Some(event.envelope.clone()),
        Payload::OrderCancelled(cancelled) => {
            order.cancelled = true;
            order.cancel_reason.get_or_insert_with(|| cancelled.reason.clone());
        }
        _ => {}
    }
}
