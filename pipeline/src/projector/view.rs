//! One order's read model and the rule that folds a saga event into it. Pure: the store loads the
//! row, applies one event here and writes the row back, all in one transaction.
//!
//! Each topic is consumed on its own, so one order's events can arrive in any order. The status is
//! therefore derived from the set of steps known to have happened ([`StepsSeen`]), and every event
//! also records the steps that must have happened before it (a reservation implies a charge), so a
//! late cause changes nothing once its effect was seen.

use std::fmt;

use schemas::{CancellationReason, Payload, SagaEvent};

/// The saga's status of an order, as the read model shows it (`as_str`; the schema's names are
/// the same, checked by a test).
#[derive(Clone, Copy, Debug, PartialEq, Eq, utoipa::ToSchema)]
#[schema(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum OrderStatus {
    Placed,
    Paid,
    Reserved,
    Confirmed,
    Compensating,
    Cancelled,
    RequiresIntervention,
}

impl OrderStatus {
    pub const ALL: [OrderStatus; 7] = [
        OrderStatus::Placed,
        OrderStatus::Paid,
        OrderStatus::Reserved,
        OrderStatus::Confirmed,
        OrderStatus::Compensating,
        OrderStatus::Cancelled,
        OrderStatus::RequiresIntervention,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            OrderStatus::Placed => "PLACED",
            OrderStatus::Paid => "PAID",
            OrderStatus::Reserved => "RESERVED",
            OrderStatus::Confirmed => "CONFIRMED",
            OrderStatus::Compensating => "COMPENSATING",
            OrderStatus::Cancelled => "CANCELLED",
            OrderStatus::RequiresIntervention => "REQUIRES_INTERVENTION",
        }
    }

    pub fn parse(text: &str) -> Option<OrderStatus> {
        OrderStatus::ALL.into_iter().find(|status| status.as_str() == text)
    }

    /// A confirmed order never changes again. A cancelled one goes back to COMPENSATING when a
    /// step completes late, as the saga does (docs/saga.md).
    pub fn is_final(self) -> bool {
        self == OrderStatus::Confirmed
    }
}

impl fmt::Display for OrderStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The saga steps known to have happened to an order.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StepsSeen {
    pub charged: bool,
    pub refunded: bool,
    pub reserved: bool,
    pub released: bool,
    pub shipped: bool,
    pub shipment_cancelled: bool,
}

impl StepsSeen {
    /// A reservation only follows a charge, so knowing of one means knowing of both.
    fn reserve(&mut self) {
        self.reserved = true;
        self.charged = true;
    }

    /// A shipment only follows a reservation.
    fn ship(&mut self) {
        self.reserve();
        self.shipped = true;
    }

    /// A compensation the cancelled order still waits for.
    fn compensation_outstanding(self) -> bool {
        (self.charged && !self.refunded)
            || (self.reserved && !self.released)
            || (self.shipped && !self.shipment_cancelled)
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Intervention {
    pub reason: String,
    pub outstanding: Vec<String>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct OrderView {
    pub order_id: String,
    pub customer_id: Option<String>,
    pub status: OrderStatus,
    /// Cents.
    pub total_amount: Option<i64>,
    /// Units ordered: the sum of the item quantities.
    pub item_count: Option<i64>,
    pub tracking_number: Option<String>,
    pub cancellation_reason: Option<String>,
    /// Why a customer's cancellation was refused.
    pub cancellation_rejected: Option<String>,
    /// Why the saga parked the order, and the compensations it was missing then.
    pub intervention: Option<Intervention>,
    /// An operator's note settling a parked order.
    pub resolution: Option<String>,
    pub progress: StepsSeen,
    /// Distinct events applied.
    pub version: i64,
    /// The highest event-store version of the order seen (the `aggregate_version` header of its
    /// order-service events): what `min_version` waits for.
    pub order_version: i64,
    /// When OrderPlaced happened, in milliseconds since the Unix epoch.
    pub placed_at_ms: Option<i64>,
}

impl OrderView {
    /// The row of an order none of whose events was applied yet.
    pub fn new(order_id: impl Into<String>) -> Self {
        OrderView {
            order_id: order_id.into(),
            customer_id: None,
            status: OrderStatus::Placed,
            total_amount: None,
            item_count: None,
            tracking_number: None,
            cancellation_reason: None,
            cancellation_rejected: None,
            intervention: None,
            resolution: None,
            progress: StepsSeen::default(),
            version: 0,
            order_version: 0,
            placed_at_ms: None,
        }
    }

    /// Applies one event not applied before (the caller deduplicates by event id), written at
    /// `order_version` of the order when it came from the order service.
    pub fn apply(&mut self, event: &SagaEvent, order_version: Option<i64>) {
        self.record(event);
        self.version += 1;
        self.order_version = self.order_version.max(order_version.unwrap_or(0));
        if !self.status.is_final() {
            self.status = self.derived_status(matches!(event.payload, Payload::OrderConfirmed(_)));
        }
    }

    fn record(&mut self, event: &SagaEvent) {
        match &event.payload {
            Payload::OrderPlaced(placed) => {
                self.customer_id = Some(placed.customer_id.clone());
                self.total_amount = Some(placed.total_cents);
                self.item_count = Some(placed.items.iter().map(|item| i64::from(item.quantity)).sum());
                self.placed_at_ms = Some(event.envelope.occurred_at);
            }
            Payload::OrderCancellationRequested(requested) => self.learn_customer(&requested.customer_id),
            Payload::OrderConfirmed(confirmed) => {
                self.learn_customer(&confirmed.customer_id);
                self.total_amount.get_or_insert(confirmed.total_cents);
                self.tracking_number = Some(confirmed.tracking_number.clone());
                self.progress.reserve();
            }
            Payload::OrderCancelled(cancelled) => {
                self.learn_customer(&cancelled.customer_id);
                self.total_amount.get_or_insert(cancelled.total_cents);
                self.cancellation_reason = Some(cancelled.reason.to_string());
                record_steps_implied_by(&cancelled.reason, &mut self.progress);
            }
            Payload::PaymentCompleted(completed) => {
                self.learn_customer(&completed.customer_id);
                self.progress.charged = true;
            }
            Payload::PaymentFailed(failed) => self.learn_customer(&failed.customer_id),
            Payload::PaymentRefunded(refunded) => {
                self.learn_customer(&refunded.customer_id);
                self.progress.charged = true;
                self.progress.refunded = true;
            }
            // Inventory acts on PaymentCompleted only, so even a failed reservation implies a charge.
            Payload::InventoryReservationFailed(_) => self.progress.charged = true,
            Payload::InventoryReserved(_) => self.progress.reserve(),
            Payload::InventoryReleased(_) => {
                self.progress.reserve();
                self.progress.released = true;
            }
            Payload::ShipmentCreated(created) => {
                self.tracking_number = Some(created.tracking_number.clone());
                self.progress.ship();
            }
            Payload::ShipmentFailed(_) => self.progress.reserve(),
            Payload::ShipmentCancelled(_) => {
                self.progress.ship();
                self.progress.shipment_cancelled = true;
            }
            Payload::ShipmentCancellationFailed(_) => self.progress.ship(),
            Payload::OrderCancellationRejected(rejected) => {
                self.learn_customer(&rejected.customer_id);
                self.cancellation_rejected = Some(rejected.reason.clone());
            }
            Payload::OrderRequiresIntervention(parked) => {
                self.intervention =
                    Some(Intervention { reason: parked.reason.clone(), outstanding: parked.outstanding.clone() });
            }
            // As the saga: an operator's action, on a parked order only. A retry un-parks it, a
            // resolution settles it. The saga's own requests again concern the participants.
            Payload::OrderInterventionRequested(requested)
                if self.intervention.is_some() && requested.operator != crate::participants::SAGA_OPERATOR =>
            {
                self.intervention = None;
                if requested.action == crate::participants::RESOLVE {
                    self.resolution = Some(requested.note.clone());
                }
            }
            Payload::OrderInterventionRequested(_) => {}
        }
    }

    /// Order events carry the customer; other events fill it in only while it is unknown.
    fn learn_customer(&mut self, customer_id: &str) {
        self.customer_id.get_or_insert_with(|| customer_id.to_string());
    }

    fn derived_status(&self, confirmed_now: bool) -> OrderStatus {
        if self.cancellation_reason.is_some() {
            return if self.resolution.is_some() || !self.progress.compensation_outstanding() {
                OrderStatus::Cancelled
            } else if self.intervention.is_some() {
                OrderStatus::RequiresIntervention
            } else {
                OrderStatus::Compensating
            };
        }
        if confirmed_now {
            OrderStatus::Confirmed
        } else if self.progress.reserved {
            OrderStatus::Reserved
        } else if self.progress.charged {
            OrderStatus::Paid
        } else {
            OrderStatus::Placed
        }
    }
}

/// The saga cancels for these reasons only from a state that had these steps done, so the
/// compensations they need are expected even before their causes' events arrive here.
fn record_steps_implied_by(reason: &CancellationReason, progress: &mut StepsSeen) {
    match reason {
        CancellationReason::InsufficientStock => progress.charged = true,
        CancellationReason::ShipmentFailed => progress.reserve(),
        CancellationReason::Timeout { step } if step == "inventory" => progress.charged = true,
        CancellationReason::Timeout { step } if step == "shipping" => progress.reserve(),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use schemas::{
        Address, Envelope, InventoryReleased, InventoryReserved, Money, OrderCancelled, OrderConfirmed, OrderItem,
        OrderPlaced, PaymentCompleted, PaymentRefunded, ShipmentCreated, StockItem, DEFAULT_CURRENCY,
    };

    use super::*;

    fn event(payload: Payload) -> SagaEvent {
        SagaEvent::new(Envelope::new("order-1", "corr-1", 1_700_000_000_000), payload)
    }

    fn placed() -> SagaEvent {
        event(Payload::OrderPlaced(OrderPlaced {
            customer_id: "cust-1".into(),
            items: vec![
                OrderItem::new("p-1", 2, Money::new(500, DEFAULT_CURRENCY)),
                OrderItem::new("p-2", 3, Money::new(100, DEFAULT_CURRENCY)),
            ],
            total_cents: 1_300,
            shipping_address: Address {
                line1: "1 Main St".into(),
                line2: None,
                city: "Berlin".into(),
                postal_code: "10115".into(),
                country: "DE".into(),
            },
            currency: DEFAULT_CURRENCY.into(),
            coupon_code: None,
        }))
    }

    fn paid() -> SagaEvent {
        event(Payload::PaymentCompleted(PaymentCompleted {
            customer_id: "cust-1".into(),
            amount_cents: 1_300,
            payment_id: "pay-1".into(),
        }))
    }

    fn reserved() -> SagaEvent {
        event(Payload::InventoryReserved(InventoryReserved {
            items: vec![StockItem { product_id: "p-1".into(), quantity: 2 }],
            reservation_id: "res-1".into(),
        }))
    }

    fn shipped() -> SagaEvent {
        event(Payload::ShipmentCreated(ShipmentCreated { shipment_id: "s-1".into(), tracking_number: "TRK-1".into() }))
    }

    fn confirmed() -> SagaEvent {
        event(Payload::OrderConfirmed(OrderConfirmed {
            customer_id: "cust-1".into(),
            total_cents: 1_300,
            tracking_number: "TRK-1".into(),
        }))
    }

    fn cancelled(reason: CancellationReason) -> SagaEvent {
        event(Payload::OrderCancelled(OrderCancelled { customer_id: "cust-1".into(), reason, total_cents: 1_300 }))
    }

    fn refunded() -> SagaEvent {
        event(Payload::PaymentRefunded(PaymentRefunded {
            customer_id: "cust-1".into(),
            amount_cents: 1_300,
            payment_id: "pay-1".into(),
            reason: CancellationReason::ShipmentFailed,
        }))
    }

    fn released() -> SagaEvent {
        event(Payload::InventoryReleased(InventoryReleased {
            reservation_id: "res-1".into(),
            items: vec![StockItem { product_id: "p-1".into(), quantity: 2 }],
            reason: CancellationReason::ShipmentFailed,
        }))
    }

    /// The statuses after each event, applied in the given order.
    fn statuses(events: &[SagaEvent]) -> (OrderView, Vec<OrderStatus>) {
        let mut view = OrderView::new("order-1");
        let trail = events
            .iter()
            .map(|event| {
                view.apply(event, None);
                view.status
            })
            .collect();
        (view, trail)
    }

    #[test]
    fn the_happy_path_moves_forward_to_confirmed() {
        let (view, trail) = statuses(&[placed(), paid(), reserved(), shipped(), confirmed()]);
        use OrderStatus::*;
        assert_eq!(trail, [Placed, Paid, Reserved, Reserved, Confirmed]);
        assert_eq!(view.customer_id.as_deref(), Some("cust-1"));
        assert_eq!(view.total_amount, Some(1_300));
        assert_eq!(view.item_count, Some(5));
        assert_eq!(view.tracking_number.as_deref(), Some("TRK-1"));
        assert_eq!(view.placed_at_ms, Some(1_700_000_000_000));
        assert_eq!(view.version, 5);
        assert_eq!(view.cancellation_reason, None);
    }

    #[test]
    fn a_cancelled_order_compensates_until_refund_and_release_both_arrived() {
        let (view, trail) = statuses(&[
            placed(),
            paid(),
            reserved(),
            cancelled(CancellationReason::ShipmentFailed),
            released(),
            refunded(),
        ]);
        use OrderStatus::*;
        assert_eq!(trail, [Placed, Paid, Reserved, Compensating, Compensating, Cancelled]);
        assert_eq!(view.cancellation_reason.as_deref(), Some("shipment_failed"));
        assert_eq!(view.version, 6);
    }

    #[test]
    fn a_cancellation_before_any_charge_is_final_at_once() {
        let (view, trail) = statuses(&[placed(), cancelled(CancellationReason::PaymentFailed)]);
        assert_eq!(trail, [OrderStatus::Placed, OrderStatus::Cancelled]);
        assert_eq!(view.progress, StepsSeen::default());
    }

    #[test]
    fn events_arriving_before_order_placed_still_build_the_row() {
        let (view, trail) = statuses(&[reserved(), paid(), placed()]);
        assert_eq!(trail, [OrderStatus::Reserved; 3]);
        assert_eq!(view.customer_id.as_deref(), Some("cust-1"));
        assert_eq!(view.total_amount, Some(1_300));
        assert_eq!(view.placed_at_ms, Some(1_700_000_000_000));
    }

    #[test]
    fn the_cancellation_reason_tells_which_compensations_to_expect_before_their_causes_arrive() {
        for (reason, expected) in [
            (CancellationReason::InsufficientStock, OrderStatus::Compensating),
            (CancellationReason::ShipmentFailed, OrderStatus::Compensating),
            (CancellationReason::Timeout { step: "inventory".into() }, OrderStatus::Compensating),
            (CancellationReason::Timeout { step: "shipping".into() }, OrderStatus::Compensating),
            (CancellationReason::Timeout { step: "payment".into() }, OrderStatus::Cancelled),
            (CancellationReason::PaymentFailed, OrderStatus::Cancelled),
        ] {
            let (_, trail) = statuses(&[cancelled(reason.clone())]);
            assert_eq!(trail, [expected], "{reason}");
        }
        let (_, trail) = statuses(&[cancelled(CancellationReason::InsufficientStock), refunded()]);
        assert_eq!(trail, [OrderStatus::Compensating, OrderStatus::Cancelled]);
    }

    #[test]
    fn a_confirmed_order_stays_confirmed_and_a_late_step_reopens_a_cancelled_one() {
        let (view, trail) = statuses(&[confirmed(), paid(), reserved()]);
        assert_eq!(trail, [OrderStatus::Confirmed; 3]);
        assert_eq!(view.version, 3);

        let (_, trail) = statuses(&[placed(), cancelled(CancellationReason::CustomerCancelled), paid(), refunded()]);
        assert_eq!(
            trail,
            [OrderStatus::Placed, OrderStatus::Cancelled, OrderStatus::Compensating, OrderStatus::Cancelled]
        );
    }

    #[test]
    fn a_parked_order_shows_why_until_its_compensations_arrive() {
        let parked = event(Payload::OrderRequiresIntervention(schemas::OrderRequiresIntervention {
            reason: "shipment_not_cancellable".into(),
            outstanding: vec!["cancel_shipment".into()],
        }));
        let shipped = event(Payload::ShipmentCreated(ShipmentCreated {
            shipment_id: "s-1".into(),
            tracking_number: "T-1".into(),
        }));
        let (view, trail) = statuses(&[placed(), cancelled(CancellationReason::CustomerCancelled), shipped, parked]);
        assert_eq!(trail.last(), Some(&OrderStatus::RequiresIntervention));
        assert_eq!(view.intervention.map(|i| i.outstanding), Some(vec!["cancel_shipment".to_owned()]));
    }

    #[test]
    fn statuses_parse_back_from_their_text() {
        for status in OrderStatus::ALL {
            assert_eq!(OrderStatus::parse(status.as_str()), Some(status));
        }
        assert_eq!(OrderStatus::parse("placed"), None);
        assert_eq!(OrderStatus::parse("requires_intervention"), None);
    }
}
