//! Aggregation per key and time window (tumbling or hopping), dropping records that arrive after
//! their window closed.

use super::aggregate::AggregateFn;
use super::{downcast, AnyRecord, Node, NodeContext};
use crate::error::ProcessError;
use crate::graph::StoreId;
use crate::record::{Data, Record};
use crate::store::StoreSerdes;
use crate::windowing::{TimeWindows, Windowed};

pub(crate) struct TimeWindowAggregateNode<K, V, VA> {
    pub(crate) windows: TimeWindows,
    pub(crate) store: StoreId,
    pub(crate) serdes: StoreSerdes<K, VA>,
    pub(crate) aggregate: AggregateFn<K, V, VA>,
}

impl<K: Data, V: Data, VA: Data> Node for TimeWindowAggregateNode<K, V, VA> {
    fn process(&mut self, ctx: &mut NodeContext<'_>, record: AnyRecord) -> Result<(), ProcessError> {
        let record: Record<K, V> = downcast(ctx, record)?;
        let TimeWindows { size_ms, grace_ms, .. } = self.windows;
        // A window is closed once stream time passes its end plus grace; closed windows are
        // never updated again, so they are also past retention.
        let close_ms = ctx.state.progress.stream_time_ms.saturating_sub(grace_ms);
        let starts = self.windows.window_starts_for(record.timestamp_ms);
        if starts.is_empty() {
            ctx.state.record_dropped();
            return Ok(());
        }

        let mut updates = Vec::with_capacity(starts.len());
        let mut dropped = 0;
        let mut store = ctx.state.window_store(self.store, &self.serdes)?;
        store.remove_windows_before(close_ms.saturating_sub(size_ms).saturating_add(1))?;
        for start_ms in starts {
            let end_ms = start_ms.saturating_add(size_ms);
            if end_ms <= close_ms {
                dropped += 1;
                continue;
            }
            let current = store.fetch(&record.key, start_ms)?;
            let updated = (self.aggregate)(&record.key, record.value.clone(), current);
            store.put(&record.key, start_ms, &updated)?;
            updates.push((Windowed::new(record.key.clone(), start_ms, end_ms), updated));
        }
        ctx.state.progress.dropped_records += dropped;
        for (key, value) in updates {
            ctx.forward(Record {
                key,
                value: Some(value),
                timestamp_ms: record.timestamp_ms,
                headers: record.headers.clone(),
            })?;
        }
        Ok(())
    }
}
