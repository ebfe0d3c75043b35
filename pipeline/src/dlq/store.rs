//! `dlq_entries` (connectors/migrations/0011_dlq_index.sql): indexing, listing, and the status
//! changes of reprocess and discard.

use deadpool_postgres::Pool;
use tokio_postgres::types::ToSql;
use tokio_postgres::{Row, Transaction};

use super::entry::{NewEntry, Status};
use super::request::{BulkFilter, ListFilter};
use super::stored_headers;

#[derive(Debug, thiserror::Error)]
pub enum DlqStoreError {
    #[error("no PostgreSQL connection: {0}")]
    Pool(#[from] deadpool_postgres::PoolError),
    #[error("PostgreSQL: {0}")]
    Postgres(#[from] tokio_postgres::Error),
}

/// An indexed dead letter. Times are RFC 3339 (UTC); `headers` is the stored JSON
/// ([`stored_headers`]).
#[derive(Clone, Debug, PartialEq)]
pub struct Entry {
    pub id: i64,
    pub dlq_topic: String,
    pub dlq_partition: i32,
    pub dlq_offset: i64,
    pub original_topic: String,
    pub original_partition: i32,
    pub original_offset: Option<i64>,
    pub original_timestamp: Option<i64>,
    pub consumer_group: Option<String>,
    pub processor: Option<String>,
    pub error_class: Option<String>,
    pub error_message: Option<String>,
    pub attempts: Option<i32>,
    pub failed_at: Option<String>,
    pub key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
    pub headers: String,
    pub status: String,
    pub status_changed_by: Option<String>,
    pub status_changed_at: Option<String>,
    pub status_reason: Option<String>,
    pub reprocessed_from: Option<i64>,
    pub created_at: String,
}

impl Entry {
    pub fn is_pending(&self) -> bool {
        self.status == Status::Pending.as_str()
    }
}

const COLUMNS: &str = "id, dlq_topic, dlq_partition, dlq_offset, original_topic, original_partition, original_offset, \
    original_timestamp, consumer_group, processor, error_class, error_message, attempts, \
    to_char(failed_at at time zone 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"') as failed_at, key, value, headers::text as headers, \
    status, status_changed_by, to_char(status_changed_at at time zone 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"') as status_changed_at, \
    status_reason, reprocessed_from, to_char(created_at at time zone 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"') as created_at";

/// Indexes one dead letter; `Ok(false)` if its (topic, partition, offset) is indexed already.
pub async fn insert(pool: &Pool, entry: &NewEntry) -> Result<bool, DlqStoreError> {
    let client = pool.get().await?;
    let error_class = entry.error_class.map(|class| class.as_str());
    let headers = stored_headers::to_json(&entry.headers);
    let inserted = client
        .query_opt(
            "insert into dlq_entries (dlq_topic, dlq_partition, dlq_offset, original_topic, original_partition, original_offset, \
             original_timestamp, consumer_group, processor, error_class, error_message, attempts, failed_at, key, value, headers, \
             reprocessed_from) \
             values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, to_timestamp($13::bigint / 1000.0), $14, $15, $16::text::jsonb, $17) \
             on conflict (dlq_topic, dlq_partition, dlq_offset) do nothing returning id",
            &[
                &entry.dlq_topic,
                &entry.dlq_partition,
                &entry.dlq_offset,
                &entry.original_topic,
                &entry.original_partition,
                &entry.original_offset,
                &entry.original_timestamp,
                &entry.consumer_group,
                &entry.processor,
                &error_class,
                &entry.error_message,
                &entry.attempts,
                &entry.failed_at_ms,
                &entry.key,
                &entry.value,
                &headers,
                &entry.reprocessed_from,
            ],
        )
        .await?;
    Ok(inserted.is_some())
}

pub async fn find(pool: &Pool, id: i64) -> Result<Option<Entry>, DlqStoreError> {
    let client = pool.get().await?;
    let row = client.query_opt(&format!("select {COLUMNS} from dlq_entries where id = $1"), &[&id]).await?;
    Ok(row.as_ref().map(to_entry))
}

/// One page, oldest first, plus whether another page follows.
pub async fn list(pool: &Pool, filter: &ListFilter) -> Result<(Vec<Entry>, bool), DlqStoreError> {
    let error_class = filter.error_class.map(|class| class.as_str());
    let status = filter.status.map(|status| status.as_str());
    let mut conditions = Vec::new();
    let mut params: Vec<&(dyn ToSql + Sync)> = Vec::new();
    if let Some(topic) = &filter.topic {
        params.push(topic);
        conditions.push(format!("original_topic = ${}", params.len()));
    }
    if let Some(error_class) = &error_class {
        params.push(error_class);
        conditions.push(format!("error_class = ${}", params.len()));
    }
    if let Some(status) = &status {
        params.push(status);
        conditions.push(format!("status = ${}", params.len()));
    }
    if let Some(after) = &filter.after_id {
        params.push(after);
        conditions.push(format!("id > ${}", params.len()));
    }
    // One row past the page says whether there is a next one.
    let fetch = filter.limit + 1;
    params.push(&fetch);
    let sql =
        format!("select {COLUMNS} from dlq_entries {} order by id limit ${}", where_clause(&conditions), params.len());
    let client = pool.get().await?;
    let rows = client.query(&sql, &params).await?;
    let mut entries: Vec<Entry> = rows.iter().map(to_entry).collect();
    let has_more = entries.len() as i64 > filter.limit;
    entries.truncate(filter.limit as usize);
    Ok((entries, has_more))
}

/// The ids a bulk reprocess takes on: PENDING entries matching the filter, oldest first.
pub async fn pending_ids(pool: &Pool, filter: &BulkFilter) -> Result<Vec<i64>, DlqStoreError> {
    let error_class = filter.error_class.map(|class| class.as_str());
    let pending = Status::Pending.as_str();
    let mut params: Vec<&(dyn ToSql + Sync)> = vec![&pending];
    let mut conditions = vec!["status = $1".to_string()];
    if let Some(topic) = &filter.topic {
        params.push(topic);
        conditions.push(format!("original_topic = ${}", params.len()));
    }
    if let Some(error_class) = &error_class {
        params.push(error_class);
        conditions.push(format!("error_class = ${}", params.len()));
    }
    if let Some(ids) = &filter.ids {
        params.push(ids);
        conditions.push(format!("id = any(${})", params.len()));
    }
    params.push(&filter.limit);
    let sql = format!("select id from dlq_entries {} order by id limit ${}", where_clause(&conditions), params.len());
    let client = pool.get().await?;
    Ok(client.query(&sql, &params).await?.iter().map(|row| row.get(0)).collect())
}

/// Locks the entry until `tx` ends: a second reprocess (from this or another admin instance)
/// waits, then sees the status the first one left.
pub async fn lock(tx: &Transaction<'_>, id: i64) -> Result<Option<Entry>, DlqStoreError> {
    let row = tx.query_opt(&format!("select {COLUMNS} from dlq_entries where id = $1 for update"), &[&id]).await?;
    Ok(row.as_ref().map(to_entry))
}

/// Sets a new status with who and why, inside the transaction that holds the entry's lock.
pub async fn set_status(
    tx: &Transaction<'_>,
    id: i64,
    status: Status,
    by: &str,
    reason: Option<&str>,
) -> Result<(), DlqStoreError> {
    tx.execute(
        "update dlq_entries set status = $2, status_changed_by = $3, status_changed_at = now(), status_reason = $4 where id = $1",
        &[&id, &status.as_str(), &by, &reason],
    )
    .await?;
    Ok(())
}

/// PENDING entries per DLQ topic, for `dlq_pending{topic}`.
pub async fn pending_per_topic(pool: &Pool) -> Result<Vec<(String, i64)>, DlqStoreError> {
    let client = pool.get().await?;
    let rows = client
        .query(
            "select dlq_topic, count(*) from dlq_entries where status = $1 group by dlq_topic",
            &[&Status::Pending.as_str()],
        )
        .await?;
    Ok(rows.iter().map(|row| (row.get(0), row.get(1))).collect())
}

fn where_clause(conditions: &[String]) -> String {
    if conditions.is_empty() {
        String::new()
    } else {
        format!("where {}", conditions.join(" and "))
    }
}

fn to_entry(row: &Row) -> Entry {
    Entry {
        id: row.get("id"),
        dlq_topic: row.get("dlq_topic"),
        dlq_partition: row.get("dlq_partition"),
        dlq_offset: row.get("dlq_offset"),
        original_topic: row.get("original_topic"),
        original_partition: row.get("original_partition"),
        original_offset: row.get("original_offset"),
        original_timestamp: row.get("original_timestamp"),
        consumer_group: row.get("consumer_group"),
        processor: row.get("processor"),
        error_class: row.get("error_class"),
        error_message: row.get("error_message"),
        attempts: row.get("attempts"),
        failed_at: row.get("failed_at"),
        key: row.get("key"),
        value: row.get("value"),
        headers: row.get("headers"),
        status: row.get("status"),
        status_changed_by: row.get("status_changed_by"),
        status_changed_at: row.get("status_changed_at"),
        status_reason: row.get("status_reason"),
        reprocessed_from: row.get("reprocessed_from"),
        created_at: row.get("created_at"),
    }
}
