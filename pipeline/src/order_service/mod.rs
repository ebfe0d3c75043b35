//! The event-sourced order service (command side): HTTP commands ([`routes`]), the `Order`
//! aggregate, the event store with snapshots, the transactional outbox and its sweeper, and the
//! `Idempotency-Key` guard (Redis first, PostgreSQL the final word).

pub mod aggregate;
pub mod commands;
pub mod event_store;
pub mod http;
pub mod idempotency;
pub mod outbox;
pub mod request;
pub mod trace;

use schemas::SagaCodec;

use crate::admin::auth::AdminToken;

pub use http::routes;
pub use outbox::run_outbox_sweeper;

/// Shared by every request: cheap to clone.
#[derive(Clone)]
pub struct OrderService {
    pool: deadpool_postgres::Pool,
    redis: redis::aio::ConnectionManager,
    codec: SagaCodec,
    /// A snapshot is written each time an aggregate's version crosses a multiple of this.
    snapshot_every: u32,
    /// The bearer token operators' calls must carry (the admin port's); unset disables them.
    admin_token: AdminToken,
}

impl OrderService {
    pub fn new(
        pool: deadpool_postgres::Pool,
        redis: redis::aio::ConnectionManager,
        codec: SagaCodec,
        snapshot_every: u32,
    ) -> Self {
        OrderService { pool, redis, codec, snapshot_every, admin_token: AdminToken::default() }
    }

    /// Enables the operators' calls (`POST /admin/orders/{id}/intervention`) for this token.
    pub fn with_admin_token(mut self, token: Option<String>) -> Self {
        self.admin_token = AdminToken::new(token);
        self
    }
}
