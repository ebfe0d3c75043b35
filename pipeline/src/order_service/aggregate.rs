//! The `Order` aggregate: a pure state machine over its own events (placed, cancellation
//! requested, an operator's intervention). Commands decide which event to record; `evolve`
//! folds recorded events into state.
//! Saga outcomes (paid, confirmed, cancelled) live in the saga's stores, not here.

use schemas::{
    Envelope, EventType, OrderCancellationRequested, OrderInterventionRequested, OrderPlaced, Payload, SagaEvent,
};
use serde::{Deserialize, Serialize};

/// `aggregate_type` of orders in the event store and the outbox; Debezium routes outbox rows to
/// `<aggregate_type>.events`.
pub const AGGREGATE_TYPE: &str = "order";

/// An event the order aggregate records.
#[derive(Clone, Debug, PartialEq)]
pub enum OrderEvent {
    Placed(OrderPlaced),
    CancellationRequested(OrderCancellationRequested),
    /// Recorded for the audit trail; the saga acts on it.
    InterventionRequested(OrderInterventionRequested),
}

impl OrderEvent {
    pub fn event_type(&self) -> EventType {
        match self {
            OrderEvent::Placed(_) => EventType::OrderPlaced,
            OrderEvent::CancellationRequested(_) => EventType::OrderCancellationRequested,
            OrderEvent::InterventionRequested(_) => EventType::OrderInterventionRequested,
        }
    }

    /// The event's payload as JSON, for the event store's `payload` column.
    pub fn payload_json(&self) -> Result<serde_json::Value, serde_json::Error> {
        match self {
            OrderEvent::Placed(placed) => serde_json::to_value(placed),
            OrderEvent::CancellationRequested(requested) => serde_json::to_value(requested),
            OrderEvent::InterventionRequested(requested) => serde_json::to_value(requested),
        }
    }

    fn to_payload(&self) -> Payload {
        match self {
            OrderEvent::Placed(placed) => Payload::OrderPlaced(placed.clone()),
            OrderEvent::CancellationRequested(requested) => Payload::OrderCancellationRequested(requested.clone()),
            OrderEvent::InterventionRequested(requested) => Payload::OrderInterventionRequested(requested.clone()),
        }
    }

    /// The event back from its event-store row.
    pub fn from_stored(event_type: &str, payload: &str) -> Result<Self, UnreadableEvent> {
        let unreadable = |detail: String| UnreadableEvent { event_type: event_type.to_string(), detail };
        match event_type.parse::<EventType>() {
            Ok(EventType::OrderPlaced) => {
                serde_json::from_str(payload).map(OrderEvent::Placed).map_err(|e| unreadable(e.to_string()))
            }
            Ok(EventType::OrderCancellationRequested) => serde_json::from_str(payload)
                .map(OrderEvent::CancellationRequested)
                .map_err(|e| unreadable(e.to_string())),
            Ok(EventType::OrderInterventionRequested) => serde_json::from_str(payload)
                .map(OrderEvent::InterventionRequested)
                .map_err(|e| unreadable(e.to_string())),
            _ => Err(unreadable("not an event of the order aggregate".to_string())),
        }
    }
}

/// An event-store row that does not read back as an order event.
#[derive(Debug, thiserror::Error)]
#[error("stored {event_type} event is unreadable: {detail}")]
pub struct UnreadableEvent {
    pub event_type: String,
    pub detail: String,
}

/// An order event with its envelope: what the event store holds and the outbox publishes.
#[derive(Clone, Debug, PartialEq)]
pub struct DomainEvent {
    pub envelope: Envelope,
    pub event: OrderEvent,
}

impl DomainEvent {
    /// An event read back from the store, brought to the current schema version (an
    /// `OrderPlaced` stored as v1 gets its items' unit prices).
    pub fn upcast(self) -> Self {
        let DomainEvent { mut envelope, event } = self;
        let mut payload = event.to_payload();
        schemas::upcast_parts(&mut envelope, &mut payload);
        let event = match payload {
            Payload::OrderPlaced(placed) => OrderEvent::Placed(placed),
            Payload::OrderCancellationRequested(requested) => OrderEvent::CancellationRequested(requested),
            Payload::OrderInterventionRequested(requested) => OrderEvent::InterventionRequested(requested),
            // The upcaster keeps the event type; the event as it was is still an order event.
            _ => event,
        };
        DomainEvent { envelope, event }
    }

    pub fn to_saga_event(&self) -> SagaEvent {
        SagaEvent::new(self.envelope.clone(), self.event.to_payload())
    }
}

/// The order as the command side sees it; the saga's progress is the read model's (`GET /orders/{id}`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum AcceptedStatus {
    Placed,
    CancellationRequested,
}

/// What the order service knows about one order; also the snapshot's JSON.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Order {
    pub order_id: String,
    pub customer_id: String,
    /// Every event of this order's saga run carries it.
    pub correlation_id: String,
    pub total_cents: i64,
    pub status: AcceptedStatus,
}

/// Why a cancellation request is refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CancelRejected {
    #[error("cancellation of order {0} was already requested")]
    AlreadyRequested(String),
    /// The read model knows the saga's outcome (docs/saga.md).
    #[error("order {0} is already confirmed and can no longer be cancelled")]
    AlreadyConfirmed(String),
    #[error("order {order_id} is already cancelled ({reason})")]
    AlreadyCancelled { order_id: String, reason: String },
}

/// The event that places a new order; a new order starts a new saga run.
pub fn place(order_id: &str, correlation_id: &str, placed: OrderPlaced, occurred_at: i64) -> DomainEvent {
    DomainEvent { envelope: Envelope::new(order_id, correlation_id, occurred_at), event: OrderEvent::Placed(placed) }
}

impl Order {
    /// The event that asks the saga to cancel this order, continuing its saga run.
    pub fn request_cancellation(&self, requested_by: &str, occurred_at: i64) -> Result<DomainEvent, CancelRejected> {
        match self.status {
            AcceptedStatus::CancellationRequested => Err(CancelRejected::AlreadyRequested(self.order_id.clone())),
            AcceptedStatus::Placed => Ok(DomainEvent {
                envelope: Envelope::new(&self.order_id, &self.correlation_id, occurred_at),
                event: OrderEvent::CancellationRequested(OrderCancellationRequested {
                    customer_id: self.customer_id.clone(),
                    requested_by: requested_by.to_string(),
                }),
            }),
        }
    }
}

impl Order {
    /// The event recording an operator's action on this order, continuing its saga run.
    pub fn request_intervention(&self, requested: OrderInterventionRequested, occurred_at: i64) -> DomainEvent {
        DomainEvent {
            envelope: Envelope::new(&self.order_id, &self.correlation_id, occurred_at),
            event: OrderEvent::InterventionRequested(requested),
        }
    }
}

/// The state after `event`. Total: an event that does not fit the state (which commands never
/// record) leaves the state as it is.
pub fn evolve(state: Option<Order>, event: &DomainEvent) -> Option<Order> {
    match (state, &event.event) {
        (None, OrderEvent::Placed(placed)) => Some(Order {
            order_id: event.envelope.order_id.clone(),
            customer_id: placed.customer_id.clone(),
            correlation_id: event.envelope.correlation_id.clone(),
            total_cents: placed.total_cents,
            status: AcceptedStatus::Placed,
        }),
        (Some(order), OrderEvent::CancellationRequested(_)) => {
            Some(Order { status: AcceptedStatus::CancellationRequested, ..order })
        }
        (state, _) => state,
    }
}

pub fn replay<'a>(initial: Option<Order>, events: impl IntoIterator<Item = &'a DomainEvent>) -> Option<Order> {
    events.into_iter().fold(initial, evolve)
}

#[cfg(test)]
mod tests {
    use schemas::{Address, Money, OrderItem, DEFAULT_CURRENCY};

    use super::*;

    fn placed_event() -> DomainEvent {
        let placed = OrderPlaced {
            customer_id: "c-1".into(),
            items: vec![OrderItem::new("p-1", 2, Money::new(150, DEFAULT_CURRENCY))],
            total_cents: 300,
            shipping_address: Address {
                line1: "1 Main St".into(),
                line2: None,
                city: "Berlin".into(),
                postal_code: "10115".into(),
                country: "DE".into(),
            },
            currency: DEFAULT_CURRENCY.into(),
            coupon_code: None,
        };
        place("o-1", "corr-1", placed, 1_000)
    }

    #[test]
    fn placing_then_cancelling_moves_the_order_to_cancellation_requested() {
        let placed = placed_event();
        let order = replay(None, [&placed]).expect("placed order exists");
        assert_eq!(order.status, AcceptedStatus::Placed);
        assert_eq!((order.customer_id.as_str(), order.total_cents), ("c-1", 300));

        let cancel = order.request_cancellation("c-1", 2_000).expect("a placed order can be cancelled");
        assert_eq!(cancel.envelope.correlation_id, "corr-1");
        assert_eq!(cancel.envelope.order_id, "o-1");
        let cancelled = replay(Some(order), [&cancel]).expect("still exists");
        assert_eq!(cancelled.status, AcceptedStatus::CancellationRequested);
        assert_eq!(cancelled.request_cancellation("c-1", 3_000), Err(CancelRejected::AlreadyRequested("o-1".into())));
    }

    #[test]
    fn events_that_do_not_fit_leave_the_state_alone() {
        let placed = placed_event();
        let order = replay(None, [&placed]).expect("exists");
        let cancel = order.request_cancellation("c-1", 2_000).expect("allowed");
        assert_eq!(replay(None, [&cancel]), None, "a cancellation does not create an order");
        let twice_placed = replay(None, [&placed, &placed_event()]).expect("exists");
        assert_eq!(twice_placed, order, "a second placement does not overwrite the first");
    }

    #[test]
    fn stored_events_read_back() {
        let placed = placed_event();
        let json = placed.event.payload_json().expect("serializable").to_string();
        let read = OrderEvent::from_stored("OrderPlaced", &json).expect("readable");
        assert_eq!(read, placed.event);
        assert!(OrderEvent::from_stored("OrderConfirmed", &json).is_err());
        assert!(OrderEvent::from_stored("OrderPlaced", "{}").is_err());
    }
}
