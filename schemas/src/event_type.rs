//! The saga's event types and the topic each one travels on.

use std::fmt;
use std::str::FromStr;

/// Avro namespace of every event record; a record's full name is `saga.events.<EventType>`.
pub const NAMESPACE: &str = "saga.events";

pub const ORDER_EVENTS: &str = "order.events";
pub const PAYMENT_EVENTS: &str = "payment.events";
pub const INVENTORY_EVENTS: &str = "inventory.events";
pub const SHIPPING_EVENTS: &str = "shipping.events";

/// One kind of saga event. Its name is the Avro record name and the `event_type` field/header.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum EventType {
    OrderPlaced,
    OrderCancellationRequested,
    OrderConfirmed,
    OrderCancelled,
    OrderCancellationRejected,
    OrderRequiresIntervention,
    OrderInterventionRequested,
    PaymentCompleted,
    PaymentFailed,
    PaymentRefunded,
    InventoryReserved,
    InventoryReservationFailed,
    InventoryReleased,
    ShipmentCreated,
    ShipmentFailed,
    ShipmentCancelled,
    ShipmentCancellationFailed,
}

impl EventType {
    pub const ALL: [EventType; 17] = [
        EventType::OrderPlaced,
        EventType::OrderCancellationRequested,
        EventType::OrderConfirmed,
        EventType::OrderCancelled,
        EventType::OrderCancellationRejected,
        EventType::OrderRequiresIntervention,
        EventType::OrderInterventionRequested,
        EventType::PaymentCompleted,
        EventType::PaymentFailed,
        EventType::PaymentRefunded,
        EventType::InventoryReserved,
        EventType::InventoryReservationFailed,
        EventType::InventoryReleased,
        EventType::ShipmentCreated,
        EventType::ShipmentFailed,
        EventType::ShipmentCancelled,
        EventType::ShipmentCancellationFailed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            EventType::OrderPlaced => "OrderPlaced",
            EventType::OrderCancellationRequested => "OrderCancellationRequested",
            EventType::OrderConfirmed => "OrderConfirmed",
            EventType::OrderCancelled => "OrderCancelled",
            EventType::PaymentCompleted => "PaymentCompleted",
            EventType::PaymentFailed => "PaymentFailed",
            EventType::PaymentRefunded => "PaymentRefunded",
            EventType::InventoryReserved => "InventoryReserved",
            EventType::InventoryReservationFailed => "InventoryReservationFailed",
            EventType::InventoryReleased => "InventoryReleased",
            EventType::ShipmentCreated => "ShipmentCreated",
            EventType::ShipmentFailed => "ShipmentFailed",
            EventType::OrderCancellationRejected => "OrderCancellationRejected",
            EventType::OrderRequiresIntervention => "OrderRequiresIntervention",
            EventType::OrderInterventionRequested => "OrderInterventionRequested",
            EventType::ShipmentCancelled => "ShipmentCancelled",
            EventType::ShipmentCancellationFailed => "ShipmentCancellationFailed",
        }
    }

    /// The Avro full name, `saga.events.<EventType>`, as used in registry subjects.
    pub fn full_name(self) -> String {
        format!("{NAMESPACE}.{}", self.as_str())
    }

    /// The event type of an Avro record full name such as `saga.events.OrderPlaced`.
    pub fn from_full_name(full_name: &str) -> Option<EventType> {
        let name = full_name.strip_prefix(NAMESPACE)?.strip_prefix('.')?;
        name.parse().ok()
    }
}

/// The topic an event type is published on: the topic of the service that owns the fact.
pub fn topic_of(event_type: EventType) -> &'static str {
    match event_type {
        EventType::OrderPlaced
        | EventType::OrderCancellationRequested
        | EventType::OrderConfirmed
        | EventType::OrderCancelled
        | EventType::OrderCancellationRejected
        | EventType::OrderRequiresIntervention
        | EventType::OrderInterventionRequested => ORDER_EVENTS,
        EventType::PaymentCompleted | EventType::PaymentFailed | EventType::PaymentRefunded => PAYMENT_EVENTS,
        EventType::InventoryReserved | EventType::InventoryReservationFailed | EventType::InventoryReleased => {
            INVENTORY_EVENTS
        }
        EventType::ShipmentCreated
        | EventType::ShipmentFailed
        | EventType::ShipmentCancelled
        | EventType::ShipmentCancellationFailed => SHIPPING_EVENTS,
    }
}

impl fmt::Display for EventType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A name that is not one of the saga's event types.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("unknown saga event type {0:?}")]
pub struct UnknownEventType(pub String);

impl FromStr for EventType {
    type Err = UnknownEventType;

    fn from_str(name: &str) -> Result<Self, Self::Err> {
        EventType::ALL
            .into_iter()
            .find(|event_type| event_type.as_str() == name)
            .ok_or_else(|| UnknownEventType(name.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_event_type_maps_to_its_owners_topic() {
        let expected = [
            (EventType::OrderPlaced, "order.events"),
            (EventType::OrderCancellationRequested, "order.events"),
            (EventType::OrderConfirmed, "order.events"),
            (EventType::OrderCancelled, "order.events"),
            (EventType::PaymentCompleted, "payment.events"),
            (EventType::PaymentFailed, "payment.events"),
            (EventType::PaymentRefunded, "payment.events"),
            (EventType::InventoryReserved, "inventory.events"),
            (EventType::InventoryReservationFailed, "inventory.events"),
            (EventType::InventoryReleased, "inventory.events"),
            (EventType::ShipmentCreated, "shipping.events"),
            (EventType::ShipmentFailed, "shipping.events"),
            (EventType::ShipmentCancelled, "shipping.events"),
            (EventType::ShipmentCancellationFailed, "shipping.events"),
            (EventType::OrderCancellationRejected, "order.events"),
            (EventType::OrderRequiresIntervention, "order.events"),
            (EventType::OrderInterventionRequested, "order.events"),
        ];
        assert_eq!(expected.len(), EventType::ALL.len());
        for (event_type, topic) in expected {
            assert_eq!(topic_of(event_type), topic, "{event_type}");
        }
    }

    #[test]
    fn names_parse_back_to_their_event_type() {
        for event_type in EventType::ALL {
            assert_eq!(event_type.as_str().parse::<EventType>(), Ok(event_type));
            assert_eq!(EventType::from_full_name(&event_type.full_name()), Some(event_type));
        }
    }

    #[test]
    fn unknown_names_are_refused() {
        assert_eq!("OrderShipped".parse::<EventType>(), Err(UnknownEventType("OrderShipped".into())));
        assert_eq!("".parse::<EventType>(), Err(UnknownEventType(String::new())));
        assert_eq!(EventType::from_full_name("OrderPlaced"), None);
        assert_eq!(EventType::from_full_name("other.ns.OrderPlaced"), None);
        assert_eq!(EventType::from_full_name("saga.eventsOrderPlaced"), None);
    }
}
