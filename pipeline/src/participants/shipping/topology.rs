//! The shipping topology: order and inventory events → shipments.

use std::sync::Arc;

use operators::dsl::{Consumed, Processed, Produced, StreamsBuilder};
use operators::serdes::{JsonSerde, StringSerde};
use operators::store::StoreBuilder;
use operators::topology::Topology;

use super::config::ShippingConfig;
use super::gateway::{ShipmentError, ShipmentGateway};
use super::guarded::GuardedShipments;
use super::processor::ShipOrders;
use super::state::OrderShipment;
use super::stores::ORDERS_STORE;
use crate::event_serde::EventSerde;
use crate::participants::retention::{self, Retained};

/// The topology with the production gateway ([`GuardedShipments`]); fails on a malformed
/// database or Redis URL. Connections open on first use.
pub fn topology(serde: EventSerde, config: &ShippingConfig) -> Result<Topology, ShipmentError> {
    let gateway = GuardedShipments::new(config)?;
    Ok(topology_with_gateway(serde, config, Arc::new(gateway)))
}

/// The topology creating shipments through `gateway`.
pub fn topology_with_gateway(
    serde: EventSerde,
    config: &ShippingConfig,
    gateway: Arc<dyn ShipmentGateway>,
) -> Topology {
    let topics = &config.topics;
    let builder = StreamsBuilder::new();
    builder.add_state_store(StoreBuilder::key_value(ORDERS_STORE, StringSerde, JsonSerde::<OrderShipment>::new()));
    retention::add_store(&builder);
    let retention = config.retention;
    let allowed_countries: Arc<[String]> = config.allowed_countries.clone().into();
    let read = |topic: &str| builder.stream(topic, Consumed::with(StringSerde, serde.clone()));
    read(&topics.order)
        .merge(&read(&topics.inventory))
        .process_with(
            move || {
                let ship = ShipOrders::new(Arc::clone(&gateway), Arc::clone(&allowed_countries));
                Retained::<_, OrderShipment>::new(ship, "shipping", ORDERS_STORE, retention)
            },
            Processed::named("ship-orders").with_stores(&retention::stores(ORDERS_STORE)).with_durable_timers(),
        )
        .to(&topics.shipping, Produced::with(StringSerde, serde));
    builder.build(&config.application_id)
}
