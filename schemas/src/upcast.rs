//! Upcasters: an event read with an older version of its schema, brought to the current one.
//! Avro's schema resolution already fills every added field with its default; an upcaster
//! computes what a default cannot, keyed by (event type, the version the writer used).

use crate::avro_schemas::current_version_of;
use crate::events::{Envelope, Money, OrderItem, Payload, SagaEvent};

/// `event` as if it had been written with the current version of its schema.
pub fn upcast(mut event: SagaEvent) -> SagaEvent {
    upcast_parts(&mut event.envelope, &mut event.payload);
    event
}

/// [`upcast`] for callers that keep an event's parts apart (the order service's event store);
/// `envelope.schema_version` says which version the writer used.
pub fn upcast_parts(envelope: &mut Envelope, payload: &mut Payload) {
    match (&mut *payload, envelope.schema_version) {
        (Payload::OrderPlaced(placed), version) if version < 2 => {
            // v1 priced items in cents of the order's one currency (EUR, the v2 default).
            let currency = placed.currency.clone();
            placed.items.iter_mut().for_each(|item| price_v1_item(item, &currency));
        }
        _ => {}
    }
    envelope.schema_version = current_version_of(payload.event_type());
}

fn price_v1_item(item: &mut OrderItem, currency: &str) {
    if item.unit_price.is_none() {
        item.unit_price = Some(Money::new(item.unit_price_cents, currency));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::samples::sample;
    use crate::EventType;

    #[test]
    fn a_v1_order_placed_gets_its_unit_prices_from_the_deprecated_cents() {
        let mut event = sample(EventType::OrderPlaced);
        event.envelope.schema_version = 1;
        let Payload::OrderPlaced(placed) = &mut event.payload else { unreachable!() };
        placed.items.iter_mut().for_each(|item| item.unit_price = None);

        let upcast = upcast(event);
        let Payload::OrderPlaced(placed) = &upcast.payload else { unreachable!() };
        let prices: Vec<Option<Money>> = placed.items.iter().map(|item| item.unit_price.clone()).collect();
        assert_eq!(prices, [Some(Money::new(1_999, "EUR")), Some(Money::new(45_000, "EUR"))]);
        assert_eq!(upcast.envelope.schema_version, 2);
    }

    #[test]
    fn a_current_event_is_left_as_it_is() {
        for event_type in EventType::ALL {
            let event = sample(event_type);
            assert_eq!(upcast(event.clone()), event, "{event_type}");
        }
    }
}
