//! Every test against the local stack (`dev/stack up`), in one binary: one link of librdkafka and
//! the pipeline instead of fourteen. Built only with the `stack-tests` feature, which `dev/test`
//! turns on; a test whose service is down fails and names it, it never skips.

mod dlq_admin;
mod eos_scale_out;
mod operators_eos;
mod operators_faults;
mod operators_repartition;
mod order_service;
mod participants;
mod projector;
mod projector_rebuild;
mod saga_e2e;
mod smoke_debezium;
mod smoke_kafka_transactions;
mod smoke_prometheus;
mod smoke_redis;
mod smoke_registry;
