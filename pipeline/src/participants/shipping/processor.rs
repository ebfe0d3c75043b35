//! The order-keyed shipping processor.

use std::sync::Arc;

use operators::error::ProcessError;
use operators::processor::{Processor, ProcessorContext};
use operators::record::Record;
use schemas::{CancellationReason, Payload, SagaEvent, ShipmentCancellationFailed, ShipmentCancelled};

use super::config::accepts;
use super::gateway::{Cancellation, ShipmentGateway};
use super::state::{CancellationOutcome, OrderShipment, ShipmentOutcome};
use super::stores::ORDERS_STORE;
use super::{ADDRESS_REJECTED, CANCELLED};
use crate::participants::envelope::{event_record, reply};
use crate::participants::RETRY_COMPENSATIONS;

pub(super) struct ShipOrders {
    pub(super) gateway: Arc<dyn ShipmentGateway>,
    pub(super) allowed_countries: Arc<[String]>,
}

impl Processor<String, SagaEvent> for ShipOrders {
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
            if let Some(outcome) = self.ship(&record.key, &order)? {
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
}

impl ShipOrders {
    /// What happens to a reserved order; `None` while its address is not known yet.
    fn ship(&self, order_id: &str, order: &OrderShipment) -> Result<Option<ShipmentOutcome>, ProcessError> {
        let Some(address) = &order.address else {
            return Ok(None);
        };
        let failed = |reason: &str| Ok(Some(ShipmentOutcome::Failed { reason: reason.to_owned() }));
        if order.cancelled {
            return failed(CANCELLED);
        }
        if !accepts(&self.allowed_countries, address) {
            return failed(ADDRESS_REJECTED);
        }
        let shipment = self.gateway.create_shipment(order_id)?;
        Ok(Some(ShipmentOutcome::Created {
            shipment_id: shipment.shipment_id,
            tracking_number: shipment.tracking_number,
        }))
    }
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
