//! The tables a rebuild writes before the swap, and the lock that lets only one rebuild run.

use anyhow::{bail, Context, Result};
use deadpool_postgres::{ClientWrapper, Pool};
use tokio_postgres::Client;

use crate::projector::store::Tables;

/// What the rebuild folds into; swapped in under the live names when complete.
pub const NEXT: Tables = Tables { view: "order_view_next", dedup: "projected_events_next" };
/// Where the swap moves the view it replaces; the next rebuild drops it.
pub const PREVIOUS: Tables = Tables { view: "order_view_previous", dedup: "projected_events_previous" };

/// Session-level advisory lock key of the rebuild (the migrations use 727274).
const REBUILD_LOCK: i64 = 727_275;

/// A connection of its own holding the rebuild lock for as long as it lives. It is taken out of
/// the pool so that the lock ends with it, even if the rebuild fails halfway.
pub struct RebuildLock {
    client: ClientWrapper,
}

impl RebuildLock {
    pub async fn acquire(pool: &Pool) -> Result<Self> {
        let client = deadpool_postgres::Object::take(pool.get().await.context("connecting to PostgreSQL")?);
        let locked: bool = client.query_one("select pg_try_advisory_lock($1)", &[&REBUILD_LOCK]).await?.get(0);
        if !locked {
            bail!("another rebuild of the read model is running (it holds PostgreSQL advisory lock {REBUILD_LOCK})");
        }
        Ok(RebuildLock { client })
    }

    pub fn client(&mut self) -> &mut Client {
        &mut self.client
    }
}

/// Drops what an interrupted rebuild left and creates empty tables shaped like the live ones
/// (columns, defaults, constraints, indexes), so the rebuilt view has the schema the migrations
/// gave the live view.
pub async fn create_next(client: &Client) -> Result<()> {
    let live = Tables::LIVE;
    client
        .batch_execute(&format!(
            "drop table if exists {next_view}, {next_dedup}; \
             create table {next_view} (like {view} including all); \
             create table {next_dedup} (like {dedup} including all);",
            next_view = NEXT.view,
            next_dedup = NEXT.dedup,
            view = live.view,
            dedup = live.dedup,
        ))
        .await
        .with_context(|| format!("creating {} and {}", NEXT.view, NEXT.dedup))
}

/// Best effort, after a failed rebuild: the half-built tables are of no use.
pub async fn drop_next(client: &Client) {
    if let Err(error) = client.batch_execute(&format!("drop table if exists {}, {}", NEXT.view, NEXT.dedup)).await {
        tracing::warn!(%error, "could not drop the half-built {}; the next rebuild drops it", NEXT.view);
    }
}
