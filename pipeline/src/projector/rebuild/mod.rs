//! `pipeline projector rebuild`: the read model folded again from every record of the
//! projector's topics into new tables, then swapped in under the live names in one PostgreSQL
//! transaction. What an upgrade that changes the view (a new column, a new fold rule) runs.
//!
//! The precondition is a stopped projector (its group has no member), checked at the start and
//! again under the swap's lock. Why: a running projector folds records past its committed
//! offsets into the live view; after the swap it would carry on from its position, and those
//! records would be missing from the new view. With the projector stopped, its committed
//! offsets are at or below the end offsets the rebuild read to (checked too), so when it starts
//! again it reads the records between the two once more and the rebuilt dedup table skips them.
//!
//! 1. [`LiveGroup::ensure_stopped`], then the rebuild lock ([`tables::RebuildLock`]).
//! 2. [`EndOffsets`]: first and last stable offset of every partition; refuses trimmed topics.
//! 3. [`tables::create_next`]: `order_view_next` and `projected_events_next`, shaped like the live.
//! 4. [`replay::replay`] to the end offsets, with progress.
//! 5. Under an exclusive lock of the live tables: the group checked again, [`swap::swap_in`].

mod end_offsets;
mod live_group;
mod progress;
mod replay;
mod swap;
mod tables;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use deadpool_postgres::Pool;
use schemas::SagaCodec;

use self::end_offsets::EndOffsets;
use self::live_group::LiveGroup;
use self::progress::{Counts, ProgressReporter};
use self::tables::{RebuildLock, NEXT};
use super::config::ProjectorConfig;

pub use progress::RebuildSummary;

/// How often a progress line goes to `progress`.
const PROGRESS_EVERY: Duration = Duration::from_secs(2);

/// Rebuilds the view from `config`'s topics and swaps it in; `config.group_id` is the live
/// projector's group, looked at and never joined. Progress lines go to `progress`. On any
/// failure (or `shutdown`) the live view is left as it was and the half-built tables dropped.
pub async fn rebuild_read_model(
    config: &ProjectorConfig,
    codec: &SagaCodec,
    pool: &Pool,
    progress: impl FnMut(&str),
    shutdown: impl Future<Output = ()>,
) -> Result<RebuildSummary> {
    let live = Arc::new(LiveGroup::new(&config.bootstrap_servers, &config.group_id)?);
    blocking({
        let live = live.clone();
        move || live.ensure_stopped()
    })
    .await?;
    let mut lock = RebuildLock::acquire(pool).await?;
    let consumer = Arc::new(replay::consumer(config)?);
    let offsets = blocking({
        let (consumer, topics) = (consumer.clone(), config.topics.clone());
        move || EndOffsets::fetch(&*consumer, &topics)
    })
    .await?;
    let trimmed = offsets.trimmed();
    if !trimmed.is_empty() {
        bail!(
            "retention has deleted the first records of {}: a view rebuilt from what is left would miss those orders; \
             the live view was not changed",
            trimmed.join(", ")
        );
    }
    tables::create_next(lock.client()).await?;
    let mut reporter = ProgressReporter::new(progress, PROGRESS_EVERY);
    let total: i64 = offsets.per_topic().values().map(|(_, total)| total).sum();
    reporter.say(&format!(
        "rebuilding {} from {} offsets of {} up to their last stable offsets; the live view stays in place until the swap",
        NEXT.view,
        total,
        offsets.per_topic().keys().copied().collect::<Vec<_>>().join(", ")
    ));
    let mut offsets = offsets;
    let mut counts = Counts::default();
    let rebuilt = async {
        replay::replay(consumer, codec, pool, &mut offsets, &mut counts, &mut reporter, shutdown).await?;
        reporter.finish(&offsets, &counts);
        swap_if_still_stopped(&live, &mut lock, &offsets).await
    }
    .await;
    match rebuilt {
        Ok((orders, rows_changed)) => Ok(RebuildSummary { orders, counts, rows_changed, duration: reporter.elapsed() }),
        Err(error) => {
            tables::drop_next(lock.client()).await;
            Err(error)
        }
    }
}

/// The swap, once the live projector is known to be still stopped and not to have committed
/// past the end offsets, under a lock that keeps it from writing meanwhile. Returns the rows
/// of the new view and how many differ from the previous one.
async fn swap_if_still_stopped(
    live: &Arc<LiveGroup>,
    lock: &mut RebuildLock,
    offsets: &EndOffsets,
) -> Result<(i64, i64)> {
    let orders: i64 = lock.client().query_one(&format!("select count(*) from {}", NEXT.view), &[]).await?.get(0);
    let tx = lock.client().transaction().await.context("starting the swap")?;
    swap::lock_live(&tx).await?;
    let partitions: Vec<(String, i32)> = offsets.partitions().map(|(topic, p)| (topic.to_string(), p)).collect();
    let committed = blocking({
        let live = live.clone();
        move || {
            live.ensure_stopped()?;
            live.committed(partitions.iter().map(|(topic, p)| (topic.as_str(), *p)))
        }
    })
    .await?;
    let overtaken = offsets.overtaken_by(&committed);
    if !overtaken.is_empty() {
        bail!(
            "a projector ran during the rebuild and folded records the rebuilt view lacks ({}); run the rebuild again with \
             the projector stopped; the live view was not changed",
            overtaken.join(", ")
        );
    }
    swap::swap_in(&tx).await?;
    tx.commit().await.context("committing the swap")?;
    let rows_changed = swap::rows_changed(lock.client()).await?;
    Ok((orders, rows_changed))
}

/// rdkafka's metadata and group calls block: off the async executor.
async fn blocking<T: Send + 'static>(work: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(work).await.context("a blocking Kafka call panicked")?
}
