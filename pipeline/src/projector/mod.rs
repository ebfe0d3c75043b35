//! The CQRS read side: the projector folds the saga topics into `order_view` (PostgreSQL,
//! `connectors/migrations/0004_order_view.sql`) and the query API serves it.
//!
//! - [`run_projector`]: consume, project each event in one transaction (deduplicated by event id),
//!   commit offsets after the database. Metrics `projector_events_total{topic,outcome}` and
//!   `projector_lag_seconds` in the default registry.
//! - [`rebuild_read_model`]: `pipeline projector rebuild`, the view folded again from the topics
//!   into new tables and swapped in (`rebuild/`).
//! - [`query_routes`]: `GET /orders/{id}[?min_version=N]` and
//!   `GET /orders?customer_id=&status=&page=&limit=`.

mod api;
mod config;
mod consumer;
mod internal_events;
mod parked_gauge;
mod queries;
mod rebuild;
mod store;
mod view;

pub use api::{query_routes, QueryApiDoc, FRESH_HEADER, MAX_LIMIT, MIN_VERSION_WAIT};
pub use config::ProjectorConfig;
pub use consumer::run_projector;
pub use parked_gauge::run_parked_gauge;
pub use queries::OrderRecord;
pub use rebuild::{rebuild_read_model, RebuildSummary};
pub use view::{OrderStatus, OrderView};
