//! One realistic event of each type, shared by the unit tests and the registry test.

use schemas::{
    Address, CancellationReason, Envelope, EventType, InventoryReleased, InventoryReservationFailed, InventoryReserved,
    Money, OrderCancellationRejected, OrderCancellationRequested, OrderCancelled, OrderConfirmed,
    OrderInterventionRequested, OrderItem, OrderPlaced, OrderRequiresIntervention, Payload, PaymentCompleted,
    PaymentFailed, PaymentRefunded, SagaEvent, ShipmentCancellationFailed, ShipmentCancelled, ShipmentCreated,
    ShipmentFailed, StockItem,
};

const PLACED_AT: i64 = 1_767_225_600_000; // 2026-01-01T00:00:00Z

/// An event of `event_type` in the saga run of order `order-42`.
pub fn sample(event_type: EventType) -> SagaEvent {
    let placed = Envelope {
        event_id: "0193f5a2-7c4e-7b1a-9d3e-2f1c0a9b8e71".into(),
        order_id: "order-42".into(),
        occurred_at: PLACED_AT,
        correlation_id: "corr-42".into(),
        causation_id: None,
        schema_version: 1,
    };
    // Every event but the two caused by commands reacts to an earlier one.
    let envelope = match event_type {
        EventType::OrderPlaced | EventType::OrderCancellationRequested => placed,
        _ => Envelope::caused_by(&placed, PLACED_AT + 1_500),
    };
    let stock = vec![
        StockItem { product_id: "sku-1".into(), quantity: 2 },
        StockItem { product_id: "sku-2".into(), quantity: 1 },
    ];
    let payload = match event_type {
        EventType::OrderPlaced => Payload::OrderPlaced(OrderPlaced {
            customer_id: "cust-7".into(),
            items: vec![
                OrderItem::new("sku-1", 2, Money::new(1_999, "EUR")),
                OrderItem::new("sku-2", 1, Money::new(45_000, "EUR")),
            ],
            total_cents: 48_998,
            shipping_address: Address {
                line1: "Hauptstraße 1".into(),
                line2: Some("Hinterhaus, 3. OG".into()),
                city: "Köln".into(),
                postal_code: "50667".into(),
                country: "DE".into(),
            },
            currency: "EUR".into(),
            coupon_code: Some("WINTER-10".into()),
        }),
        EventType::OrderCancellationRequested => Payload::OrderCancellationRequested(OrderCancellationRequested {
            customer_id: "cust-7".into(),
            requested_by: "cust-7".into(),
        }),
        EventType::OrderConfirmed => Payload::OrderConfirmed(OrderConfirmed {
            customer_id: "cust-7".into(),
            total_cents: 48_998,
            tracking_number: "1Z999AA10123456784".into(),
        }),
        EventType::OrderCancelled => Payload::OrderCancelled(OrderCancelled {
            customer_id: "cust-7".into(),
            reason: CancellationReason::Timeout { step: "shipping".into() },
            total_cents: 48_998,
        }),
        EventType::PaymentCompleted => Payload::PaymentCompleted(PaymentCompleted {
            customer_id: "cust-7".into(),
            amount_cents: 48_998,
            payment_id: "pay-9".into(),
        }),
        EventType::PaymentFailed => Payload::PaymentFailed(PaymentFailed {
            customer_id: "cust-7".into(),
            amount_cents: 48_998,
            reason: "card declined".into(),
        }),
        EventType::PaymentRefunded => Payload::PaymentRefunded(PaymentRefunded {
            customer_id: "cust-7".into(),
            amount_cents: 48_998,
            payment_id: "pay-9".into(),
            reason: CancellationReason::InsufficientStock,
        }),
        EventType::InventoryReserved => {
            Payload::InventoryReserved(InventoryReserved { items: stock, reservation_id: "res-3".into() })
        }
        EventType::InventoryReservationFailed => Payload::InventoryReservationFailed(InventoryReservationFailed {
            reason: "sku-2: 0 of 1 in stock".into(),
            items: stock,
        }),
        EventType::InventoryReleased => Payload::InventoryReleased(InventoryReleased {
            reservation_id: "res-3".into(),
            items: stock,
            reason: CancellationReason::ShipmentFailed,
        }),
        EventType::ShipmentCreated => Payload::ShipmentCreated(ShipmentCreated {
            shipment_id: "ship-5".into(),
            tracking_number: "1Z999AA10123456784".into(),
        }),
        EventType::ShipmentFailed => Payload::ShipmentFailed(ShipmentFailed { reason: "address not served".into() }),
        EventType::OrderCancellationRejected => Payload::OrderCancellationRejected(OrderCancellationRejected {
            customer_id: "cust-7".into(),
            reason: "the order is already confirmed".into(),
        }),
        EventType::OrderInterventionRequested => Payload::OrderInterventionRequested(OrderInterventionRequested {
            action: "resolve".into(),
            note: "refunded by hand".into(),
            operator: "ops-1".into(),
        }),
        EventType::OrderRequiresIntervention => Payload::OrderRequiresIntervention(OrderRequiresIntervention {
            reason: "timeout:compensation".into(),
            outstanding: vec!["refund".into()],
        }),
        EventType::ShipmentCancelled => Payload::ShipmentCancelled(ShipmentCancelled {
            shipment_id: "ship-5".into(),
            reason: CancellationReason::CustomerCancelled,
        }),
        EventType::ShipmentCancellationFailed => Payload::ShipmentCancellationFailed(ShipmentCancellationFailed {
            shipment_id: "ship-5".into(),
            reason: "handed to the carrier".into(),
        }),
    };
    SagaEvent::new(envelope, payload)
}
