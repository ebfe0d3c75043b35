//! PostgreSQL connection pool and the migrations in `connectors/migrations`, applied at start.

use anyhow::{Context, Result};
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};

/// The migrations, in order, compiled into the binary so a deployed service needs no checkout.
const MIGRATIONS: &[(&str, &str)] = &[
    ("0001_outbox", include_str!("../../connectors/migrations/0001_outbox.sql")),
    ("0002_event_store", include_str!("../../connectors/migrations/0002_event_store.sql")),
    ("0003_participants", include_str!("../../connectors/migrations/0003_participants.sql")),
    ("0004_order_view", include_str!("../../connectors/migrations/0004_order_view.sql")),
    ("0005_saga_rules", include_str!("../../connectors/migrations/0005_saga_rules.sql")),
    ("0006_projection_problem", include_str!("../../connectors/migrations/0006_projection_problem.sql")),
    ("0007_request_hash", include_str!("../../connectors/migrations/0007_request_hash.sql")),
    ("0008_outbox_aggregate_version", include_str!("../../connectors/migrations/0008_outbox_aggregate_version.sql")),
    ("0009_order_view_version", include_str!("../../connectors/migrations/0009_order_view_version.sql")),
    ("0010_resolution", include_str!("../../connectors/migrations/0010_resolution.sql")),
    ("0011_dlq_index", include_str!("../../connectors/migrations/0011_dlq_index.sql")),
    ("0012_projector_dead_letters", include_str!("../../connectors/migrations/0012_projector_dead_letters.sql")),
];

pub fn pool(database_url: &str, max_size: usize) -> Result<Pool> {
    let config: tokio_postgres::Config =
        database_url.parse().with_context(|| "database.url is not a valid PostgreSQL URL")?;
    let manager =
        Manager::from_config(config, tokio_postgres::NoTls, ManagerConfig { recycling_method: RecyclingMethod::Fast });
    Pool::builder(manager).max_size(max_size).build().context("building the PostgreSQL pool")
}

/// Applies every migration not applied yet, all in one transaction. An advisory lock, taken
/// before anything else (even creating the bookkeeping table, which races under concurrency),
/// lets several processes start at once.
pub async fn migrate(pool: &Pool) -> Result<()> {
    let mut client = pool.get().await.context("connecting to PostgreSQL to migrate")?;
    let tx = client.transaction().await?;
    tx.execute("select pg_advisory_xact_lock(727274)", &[]).await?;
    tx.batch_execute(
        "create table if not exists schema_migrations (name text primary key, applied_at timestamptz not null default now())",
    )
    .await?;
    for (name, sql) in MIGRATIONS {
        let done = tx.query_opt("select 1 from schema_migrations where name = $1", &[name]).await?.is_some();
        if !done {
            tx.batch_execute(sql).await.with_context(|| format!("migration {name} failed"))?;
            tx.execute("insert into schema_migrations (name) values ($1)", &[name]).await?;
            tracing::info!(migration = name, "applied");
        }
    }
    tx.commit().await?;
    Ok(())
}
