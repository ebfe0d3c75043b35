//! The payment topology: order ledger → balance requests by customer → balances.

use std::sync::Arc;

use operators::dsl::{Consumed, Processed, Produced, Repartitioned, StreamsBuilder};
use operators::serdes::{JsonSerde, StringSerde};
use operators::store::StoreBuilder;
use operators::topology::Topology;

use super::balances::Balances;
use super::config::PaymentConfig;
use super::ledger::OrderLedger;
use super::state::{AppliedRequest, BalanceRequest, CustomerBalance, OrderPayment};
use super::stores::{APPLIED_STORE, BALANCES_STORE, ORDERS_STORE};
use crate::event_serde::EventSerde;
use crate::participants::retention::{self, Retained};

pub fn topology(serde: EventSerde, config: &PaymentConfig) -> Topology {
    let topics = &config.topics;
    let builder = StreamsBuilder::new();
    builder.add_state_store(StoreBuilder::key_value(ORDERS_STORE, StringSerde, JsonSerde::<OrderPayment>::new()));
    builder.add_state_store(StoreBuilder::key_value(BALANCES_STORE, StringSerde, JsonSerde::<CustomerBalance>::new()));
    builder.add_state_store(StoreBuilder::key_value(APPLIED_STORE, StringSerde, JsonSerde::<AppliedRequest>::new()));
    retention::add_store(&builder);

    let read = |topic: &str| builder.stream(topic, Consumed::with(StringSerde, serde.clone()));
    let events = read(&topics.order).merge(&read(&topics.inventory)).merge(&read(&topics.payment));
    let balances_config = Arc::new(config.clone());
    let retention = config.retention;
    events
        .process_with(
            move || Retained::<_, OrderPayment>::new(OrderLedger, "payment", ORDERS_STORE, retention),
            Processed::named("order-ledger").with_stores(&retention::stores(ORDERS_STORE)).with_durable_timers(),
        )
        .repartition(Repartitioned::with(StringSerde, JsonSerde::<BalanceRequest>::new()).with_name("balance-requests"))
        .process_with(
            move || Balances { config: Arc::clone(&balances_config) },
            Processed::named("balances").with_stores(&[BALANCES_STORE, APPLIED_STORE]).with_durable_timers(),
        )
        .to(&topics.payment, Produced::with(StringSerde, serde));
    builder.build(&config.application_id)
}
