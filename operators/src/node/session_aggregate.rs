//! Aggregation per key and session: a record joins, and possibly merges, the sessions of its key
//! that lie within the inactivity gap. Follows Kafka Streams' `KStreamSessionWindowAggregate`.

use super::aggregate::AggregateFn;
use super::{downcast, AnyRecord, Node, NodeContext};
use crate::error::ProcessError;
use crate::graph::StoreId;
use crate::record::{Data, Record};
use crate::store::StoreSerdes;
use crate::windowing::{SessionWindows, Window, Windowed};

pub(crate) struct SessionAggregateNode<K, V, VA> {
    pub(crate) windows: SessionWindows,
    pub(crate) store: StoreId,
    pub(crate) serdes: StoreSerdes<K, VA>,
    pub(crate) aggregate: AggregateFn<K, V, VA>,
    /// Folds a merged session's aggregate into the running one.
    pub(crate) merge: AggregateFn<K, VA, VA>,
}

impl<K: Data, V: Data, VA: Data> Node for SessionAggregateNode<K, V, VA> {
    fn process(&mut self, ctx: &mut NodeContext<'_>, record: AnyRecord) -> Result<(), ProcessError> {
        let record: Record<K, V> = downcast(ctx, record)?;
        let SessionWindows { gap_ms, grace_ms } = self.windows;
        let timestamp_ms = record.timestamp_ms;
        let close_ms = ctx.state.progress.stream_time_ms.saturating_sub(grace_ms);

        let mut store = ctx.state.session_store(self.store, &self.serdes)?;
        // Sessions that ended this long ago can no longer merge with any accepted record.
        store.remove_sessions_ended_before(close_ms.saturating_sub(gap_ms))?;
        // Collected because a merge deletes them, and the store cannot be written while read;
        // only the key's overlapping sessions are, not everything the scan passes over.
        let overlapping = store
            .find_sessions(&record.key, timestamp_ms.saturating_sub(gap_ms), timestamp_ms.saturating_add(gap_ms))?
            .collect::<Result<Vec<_>, _>>()?;

        let single = Window { start_ms: timestamp_ms, end_ms: timestamp_ms };
        let mut merged_window = single;
        let mut merged_value = None;
        for (window, value) in &overlapping {
            merged_window.start_ms = merged_window.start_ms.min(window.start_ms);
            merged_window.end_ms = merged_window.end_ms.max(window.end_ms);
            merged_value = Some((self.merge)(&record.key, value.clone(), merged_value));
        }
        if merged_window.end_ms < close_ms {
            ctx.state.record_dropped();
            return Ok(());
        }

        let mut removed = Vec::new();
        if merged_window != single {
            for (window, _) in overlapping {
                store.put(&record.key, window, None)?;
                removed.push(window);
            }
        }
        let updated = (self.aggregate)(&record.key, record.value, merged_value);
        store.put(&record.key, merged_window, Some(&updated))?;

        let windowed = |window: Window| Windowed { key: record.key.clone(), window };
        for window in removed {
            ctx.forward(Record {
                key: windowed(window),
                value: None::<VA>,
                timestamp_ms,
                headers: record.headers.clone(),
            })?;
        }
        ctx.forward(Record {
            key: windowed(merged_window),
            value: Some(updated),
            timestamp_ms,
            headers: record.headers.clone(),
        })
    }
}
