//! The DLQ index and its admin API (docs/retries.md, "DLQ index and admin API").
//!
//! - [`run_indexer`]: every `*.dlq` topic into `dlq_entries` (PostgreSQL), idempotently.
//! - [`routes`]: list, inspect, reprocess (one or by filter) and discard entries on the admin
//!   port, behind the admin bearer token; each call audited.
//! - [`Republisher`]: the admin component's transactional producer that reprocessing publishes with.
//! - [`run_pending_gauge`]: `dlq_pending{topic}` from the table; `dlq_reprocessed_total`,
//!   `dlq_discarded_total` and `dlq_indexed_total{topic}` are counted as things happen.

mod api;
mod discard;
mod entry;
mod indexer;
mod internal_events;
mod outcome;
mod pending;
mod render;
mod reprocess;
mod republish;
mod request;
mod store;
mod stored_headers;

pub use api::{routes, DlqAdmin, DlqApiDoc};
pub use entry::{ErrorClass, Status};
pub use indexer::{run_indexer, IndexerConfig};
pub use pending::{refresh_pending, run_pending_gauge};
pub use republish::Republisher;
