//! The inventory topology: reservations by order ⇄ stock by product.

use std::sync::Arc;

use operators::dsl::{Consumed, Processed, Produced, Repartitioned, StreamsBuilder};
use operators::serdes::{JsonSerde, StringSerde};
use operators::store::StoreBuilder;
use operators::topology::Topology;

use super::config::InventoryConfig;
use super::processor::Reservations;
use super::reservations::Effect;
use super::state::{OrderReservation, ProductStock, StockReply, StockRequest};
use super::stock::{ReleaseStock, ReserveStock};
use super::stores::{ORDERS_STORE, STOCK_STORE};
use crate::event_serde::EventSerde;
use crate::participants::retention::{self, Retained};

pub fn topology(serde: EventSerde, config: &InventoryConfig) -> Topology {
    let topics = &config.topics;
    let builder = StreamsBuilder::new();
    builder.add_state_store(StoreBuilder::key_value(ORDERS_STORE, StringSerde, JsonSerde::<OrderReservation>::new()));
    builder.add_state_store(StoreBuilder::key_value(STOCK_STORE, StringSerde, JsonSerde::<ProductStock>::new()));
    retention::add_store(&builder);
    let retention = config.retention;
    let requests = || Repartitioned::with(StringSerde, JsonSerde::<StockRequest>::new());
    let config = Arc::new(config.clone());
    let (reserve_config, release_config) = (Arc::clone(&config), Arc::clone(&config));

    let read = |topic: &str| builder.stream(topic, Consumed::with(StringSerde, serde.clone()));
    let from_events = read(&topics.order).merge(&read(&topics.payment)).process_with(
        move || Retained::<_, OrderReservation>::new(Reservations, "inventory", ORDERS_STORE, retention),
        Processed::named("reservations").with_stores(&retention::stores(ORDERS_STORE)).with_durable_timers(),
    );
    let from_replies = from_events
        .flat_map_values(Effect::into_reserve)
        .repartition(requests().with_name("stock-reservations"))
        .process_with(
            move || ReserveStock { config: Arc::clone(&reserve_config) },
            Processed::named("reserve-stock").with_stores(&[STOCK_STORE]),
        )
        .repartition(Repartitioned::with(StringSerde, JsonSerde::<StockReply>::new()).with_name("stock-replies"))
        .process_with(|| Reservations, Processed::named("reservation-replies").with_stores(&[ORDERS_STORE]));

    let effects = from_events.merge(&from_replies);
    effects
        .flat_map_values(Effect::into_release)
        .repartition(requests().with_name("stock-releases"))
        .process_with::<String, StockRequest, _>(
            move || ReleaseStock { config: Arc::clone(&release_config) },
            Processed::named("release-stock").with_stores(&[STOCK_STORE]),
        );
    effects.flat_map_values(Effect::into_event).to(&topics.inventory, Produced::with(StringSerde, serde));
    builder.build(&config.application_id)
}
