//! The saga's events: versioned Avro schemas (`avro/v<N>/*.avsc`), their Rust types, the Avro
//! body encoding, the Confluent wire format and a client of the schema registry.
//!
//! Producing: [`SagaCodec::encode`] gives Confluent-framed bytes, what Kafka records (and the
//! outbox, whose bytes Debezium passes through untouched) carry. Consuming: [`SagaCodec::decode`]
//! resolves the writer's schema against ours, so events written with an older or newer
//! compatible schema still read. The codec gets ids and writer schemas from a [`SchemaResolver`]:
//! the registry, cached ([`RegistryResolver`]), or fixed ids ([`FixedIdsResolver`]). It is the
//! one codec of the saga: async callers await it, the stream thread calls its `_blocking` pair
//! (through `pipeline`'s `EventSerde`). [`encode_avro_body`], [`to_wire`] and [`parse_wire`] are
//! the parts, for callers that hold a schema id already.
//!
//! ```
//! use schemas::{decode_avro_body, encode_avro_body, Envelope, EventType, Payload, SagaEvent, ShipmentFailed};
//!
//! let placed = Envelope::new("order-42", "corr-42", 1_767_225_600_000);
//! let failed = SagaEvent::new(
//!     Envelope::caused_by(&placed, 1_767_225_601_500),
//!     Payload::ShipmentFailed(ShipmentFailed { reason: "address not served".into() }),
//! );
//! assert_eq!(failed.topic(), "shipping.events");
//!
//! let body = encode_avro_body(&failed)?;
//! assert_eq!(decode_avro_body(EventType::ShipmentFailed, &body)?, failed);
//! # Ok::<(), schemas::AvroBodyError>(())
//! ```

mod avro_body;
mod avro_schemas;
mod codec;
mod event_type;
mod events;
mod policy;
mod registration;
mod registry;
mod resolver;
mod upcast;
mod version_check;
mod wire;

pub use avro_body::{decode_avro_body, decode_avro_body_written_with, encode_avro_body, AvroBodyError};
pub use avro_schemas::{
    current_version_of, schema_files, schema_of, schema_text_of, schema_version_of, schema_versions_of, SchemaFile,
};
pub use codec::{subject_for, CodecError, SagaCodec};
pub use event_type::{
    topic_of, EventType, UnknownEventType, INVENTORY_EVENTS, NAMESPACE, ORDER_EVENTS, PAYMENT_EVENTS, SHIPPING_EVENTS,
};
pub use events::{
    Address, CancellationReason, Envelope, InventoryReleased, InventoryReservationFailed, InventoryReserved, Money,
    OrderCancellationRejected, OrderCancellationRequested, OrderCancelled, OrderConfirmed, OrderInterventionRequested,
    OrderItem, OrderPlaced, OrderRequiresIntervention, Payload, PaymentCompleted, PaymentFailed, PaymentRefunded,
    SagaEvent, ShipmentCancellationFailed, ShipmentCancelled, ShipmentCreated, ShipmentFailed, StockItem,
    UnknownCancellationReason, DEFAULT_CURRENCY,
};
pub use policy::compatibility_of;
pub use registration::{
    check_chain_in_registry, check_in_registry, current_schema_ids, register_all, Registered, RegistryRefusal,
    StartupSchemaError,
};
pub use registry::{Compatibility, RegistryClient, RegistryError};
pub use resolver::{Answer, Asking, FixedIdsResolver, RegistryResolver, SchemaResolver};
pub use upcast::{upcast, upcast_parts};
pub use version_check::{check_chain, check_versions, Direction, Incompatibility};
pub use wire::{parse_wire, to_wire, WireError, HEADER_LEN, MAGIC_BYTE};

// Lets the shared test samples say `schemas::…` both here and in the integration test.
#[cfg(test)]
extern crate self as schemas;

#[cfg(test)]
#[path = "../tests/support/samples.rs"]
mod samples;

#[cfg(test)]
mod evolution_tests;
