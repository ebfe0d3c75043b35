//! The order saga topology: the four saga topics → the saga processor → the order topic.

use std::sync::Arc;

use operators::dsl::{Consumed, Processed, Produced, StreamsBuilder};
use operators::serdes::{JsonSerde, StringSerde};
use operators::store::StoreBuilder;
use operators::topology::Topology;

use super::config::SagaConfig;
use super::processor::OrderSaga;
use super::state::OrderSagaState;
use super::stores::ORDERS_STORE;
use crate::event_serde::EventSerde;
use crate::participants::retention::{self, Retained};

pub fn topology(serde: EventSerde, config: &SagaConfig) -> Topology {
    super::internal_events::saga_built();
    let topics = &config.topics;
    let builder = StreamsBuilder::new();
    builder.add_state_store(StoreBuilder::key_value(ORDERS_STORE, StringSerde, JsonSerde::<OrderSagaState>::new()));
    retention::add_store(&builder);
    let retention = config.retention;
    let read = |topic: &str| builder.stream(topic, Consumed::with(StringSerde, serde.clone()));
    let saga_config = Arc::new(config.clone());
    read(&topics.order)
        .merge(&read(&topics.payment))
        .merge(&read(&topics.inventory))
        .merge(&read(&topics.shipping))
        .process_with(
            move || {
                Retained::<_, OrderSagaState>::new(
                    OrderSaga { config: Arc::clone(&saga_config) },
                    "order-saga",
                    ORDERS_STORE,
                    retention,
                )
            },
            Processed::named("order-saga").with_stores(&retention::stores(ORDERS_STORE)).with_durable_timers(),
        )
        .to(&topics.order, Produced::with(StringSerde, serde));
    builder.build(&config.application_id)
}
