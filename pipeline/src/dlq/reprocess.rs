//! Reprocessing: an entry's original key, value and headers, plus `dlq.reprocessed.from: <id>`,
//! published again to its original topic and partition, and the entry marked REPROCESSED.
//!
//! Publishes once, however often and from however many admin instances it is asked: the entry's
//! row is locked (`select … for update`) in a PostgreSQL transaction, checked PENDING, published
//! (the Kafka transaction committed), then marked, and only then is the PostgreSQL transaction
//! committed. A second caller waits on the lock and then finds the entry REPROCESSED. What is
//! left: a crash (or a failed PostgreSQL commit) between the Kafka commit and the PostgreSQL commit
//! leaves the entry PENDING with its record published, and a later reprocess publishes it once
//! more; consumers deduplicate by event id (docs/retries.md).

use std::sync::Arc;

use deadpool_postgres::Pool;
use operators::clock::{Clock, SystemClock};
use operators::record::{Header, OutputRecord};
use operators::runtime::REPROCESSED_FROM_HEADER;
use rdkafka::error::KafkaError;

use super::entry::Status;
use super::internal_events::{EntryReprocessed, MarkAfterPublishFailed};
use super::outcome::Outcome;
use super::republish::Republisher;
use super::request::{Actor, BulkFilter};
use super::store::{self, DlqStoreError, Entry};
use super::stored_headers;

#[derive(Debug, thiserror::Error)]
pub enum ReprocessError {
    #[error(transparent)]
    Store(#[from] DlqStoreError),
    #[error("publishing to Kafka failed, nothing was published: {0}")]
    Publish(#[from] KafkaError),
    #[error("entry {id} cannot be published again: {reason}")]
    Unpublishable { id: i64, reason: String },
    #[error("entry {id} was published again but could not be marked REPROCESSED (it is still PENDING): {error}")]
    NotMarked { id: i64, error: DlqStoreError },
}

pub async fn reprocess_one(
    pool: &Pool,
    republisher: &Arc<Republisher>,
    id: i64,
    actor: &Actor,
) -> Result<Outcome, ReprocessError> {
    let mut client = pool.get().await.map_err(DlqStoreError::from)?;
    let tx = client.transaction().await.map_err(DlqStoreError::from)?;
    let entry = match store::lock(&tx, id).await? {
        None => return Ok(Outcome::NotFound),
        // Someone got there first, or it was discarded: nothing is published.
        Some(entry) if !entry.is_pending() => return Ok(Outcome::NotPending { status: entry.status }),
        Some(entry) => entry,
    };
    let record = republished_record(&entry, SystemClock.now_ms())
        .map_err(|reason| ReprocessError::Unpublishable { id, reason })?;
    // Dropping `tx` on a failed publish rolls back: the entry stays PENDING and unlocked.
    republisher.publish(record).await?;
    let marked = async {
        store::set_status(&tx, id, Status::Reprocessed, &actor.operator, actor.reason.as_deref()).await?;
        tx.commit().await.map_err(DlqStoreError::from)
    };
    match marked.await {
        Ok(()) => {
            EntryReprocessed { id }.emit();
            Ok(Outcome::Done)
        }
        Err(error) => {
            MarkAfterPublishFailed { id, error: &error }.emit();
            Err(ReprocessError::NotMarked { id, error })
        }
    }
}

/// What a bulk reprocess did, entry by entry.
#[derive(Debug, Default, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub struct BulkOutcome {
    pub reprocessed: Vec<i64>,
    /// Not PENDING (any more), or not found when asked for by id.
    pub skipped: Vec<i64>,
    pub failed: Vec<i64>,
}

/// Each matching PENDING entry, oldest first, in a transaction of its own: one that fails does
/// not hold back the others.
pub async fn reprocess_many(
    pool: &Pool,
    republisher: &Arc<Republisher>,
    filter: &BulkFilter,
    actor: &Actor,
) -> Result<BulkOutcome, DlqStoreError> {
    let candidates = store::pending_ids(pool, filter).await?;
    let mut outcome = BulkOutcome::default();
    if let Some(asked) = &filter.ids {
        // Asked for by id but not a PENDING match (unknown, done already, filtered out).
        outcome.skipped.extend(asked.iter().filter(|id| !candidates.contains(id)));
    }
    for id in candidates {
        match reprocess_one(pool, republisher, id, actor).await {
            Ok(Outcome::Done) => outcome.reprocessed.push(id),
            Ok(Outcome::NotPending { .. } | Outcome::NotFound) => outcome.skipped.push(id),
            Err(error) => {
                tracing::warn!(id, %error, "reprocessing a DLQ entry failed");
                outcome.failed.push(id);
            }
        }
    }
    Ok(outcome)
}

/// The original record, to its original topic and partition, stamped now, with the link to the
/// entry: should it fail again, its new entry points back here.
fn republished_record(entry: &Entry, now_ms: i64) -> Result<OutputRecord, String> {
    let mut headers = stored_headers::from_json(&entry.headers)?;
    headers.push(Header::new(REPROCESSED_FROM_HEADER, entry.id.to_string().into_bytes()));
    Ok(OutputRecord {
        topic: entry.original_topic.clone(),
        partition: Some(entry.original_partition),
        timestamp_ms: now_ms,
        key: entry.key.clone(),
        value: entry.value.clone(),
        headers,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_republished_record_is_the_original_plus_the_link() {
        let original =
            vec![Header::new("traceparent", b"00-1".to_vec()), Header::null("n"), Header::new("b", vec![0, 255])];
        let entry = Entry {
            id: 42,
            dlq_topic: "order.events.dlq".into(),
            dlq_partition: 4,
            dlq_offset: 9,
            original_topic: "order.events".into(),
            original_partition: 4,
            original_offset: Some(100),
            original_timestamp: Some(5),
            consumer_group: None,
            processor: None,
            error_class: None,
            error_message: None,
            attempts: None,
            failed_at: None,
            key: Some(b"order-1".to_vec()),
            value: Some(vec![0, 0, 0, 0, 1, 2]),
            headers: stored_headers::to_json(&original),
            status: "PENDING".into(),
            status_changed_by: None,
            status_changed_at: None,
            status_reason: None,
            reprocessed_from: Some(3),
            created_at: String::new(),
        };
        let record = republished_record(&entry, 777).unwrap();
        assert_eq!((record.topic.as_str(), record.partition, record.timestamp_ms), ("order.events", Some(4), 777));
        assert_eq!((record.key, record.value), (entry.key.clone(), entry.value.clone()));
        let mut expected = original;
        expected.push(Header::new(REPROCESSED_FROM_HEADER, b"42".to_vec()));
        assert_eq!(record.headers, expected, "this entry's id, not the one it came from");

        let broken = Entry { headers: "[{\"key\": 1}]".into(), ..entry };
        assert!(republished_record(&broken, 0).is_err());
    }
}
