//! Each port's router as `components` builds it, for tests: its state points where nothing
//! listens, so a handler that gets as far as PostgreSQL, Redis, the registry or Kafka fails at
//! once, and operator calls take [`TOKEN`].

use axum::Router;
use schemas::{RegistryResolver, SagaCodec};

use crate::admin::auth::AdminToken;
use crate::components::{admin_router, order_api_router};
use crate::dlq::{DlqAdmin, Republisher};
use crate::order_service::OrderService;

pub const TOKEN: &str = "probe-token";
const NOWHERE: &str = "127.0.0.1:1";

fn pool() -> deadpool_postgres::Pool {
    crate::db::pool("host=127.0.0.1 port=1 user=probe dbname=probe connect_timeout=1", 1).unwrap()
}

/// The order API port. Needs a Tokio runtime (the Redis connection manager).
pub fn order_api() -> Router {
    let redis = redis::Client::open(format!("redis://{NOWHERE}/")).unwrap();
    let redis =
        redis::aio::ConnectionManager::new_lazy_with_config(redis, redis::aio::ConnectionManagerConfig::new()).unwrap();
    let registry = schemas::RegistryClient::new(&format!("http://{NOWHERE}")).unwrap();
    let service = OrderService::new(pool(), redis, SagaCodec::new(RegistryResolver::new(registry)), 100)
        .with_admin_token(Some(TOKEN.into()));
    order_api_router(service, pool())
}

/// The admin port.
pub fn admin() -> Router {
    let dlq = DlqAdmin::new(pool(), SagaCodec::with_fixed_ids(), Republisher::new(NOWHERE, "openapi-tests"));
    admin_router(dlq, AdminToken::new(Some(TOKEN.into())))
}
