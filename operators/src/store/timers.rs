//! Durable timers kept in a byte store, so they are change-logged and survive restarts.
//!
//! Each timer is two entries: `k ++ timer key -> fire time` to find a timer by key, and
//! `t ++ fire time ++ timer key -> empty` so due timers are a prefix scan in fire-time order.

use std::ops::Bound;

use super::time_key::{decode_time, encode_time, TIME_LEN};
use super::{KeyValueBytesStore, StoreError};

const BY_KEY: u8 = b'k';
const BY_TIME: u8 = b't';

pub(crate) struct TimerStore<S> {
    inner: S,
}

fn by_key(timer_key: &[u8]) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(1 + timer_key.len());
    bytes.push(BY_KEY);
    bytes.extend_from_slice(timer_key);
    bytes
}

fn by_time(fire_at_ms: i64, timer_key: &[u8]) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(1 + TIME_LEN + timer_key.len());
    bytes.push(BY_TIME);
    bytes.extend_from_slice(&encode_time(fire_at_ms));
    bytes.extend_from_slice(timer_key);
    bytes
}

impl<S: KeyValueBytesStore> TimerStore<S> {
    pub(crate) fn new(inner: S) -> Self {
        TimerStore { inner }
    }

    pub(crate) fn scheduled_at(&self, timer_key: &[u8]) -> Result<Option<i64>, StoreError> {
        self.inner.get(&by_key(timer_key))?.map(|bytes| decode_time(&bytes)).transpose()
    }

    /// Sets the timer to fire at `fire_at_ms`, replacing any earlier schedule of the same key.
    pub(crate) fn schedule(&mut self, timer_key: &[u8], fire_at_ms: i64) -> Result<(), StoreError> {
        if let Some(previous) = self.scheduled_at(timer_key)? {
            if previous == fire_at_ms {
                return Ok(());
            }
            self.inner.put(&by_time(previous, timer_key), None)?;
        }
        self.inner.put(&by_key(timer_key), Some(&encode_time(fire_at_ms)))?;
        self.inner.put(&by_time(fire_at_ms, timer_key), Some(&[]))
    }

    /// Removes the timer; returns whether it was scheduled.
    pub(crate) fn cancel(&mut self, timer_key: &[u8]) -> Result<bool, StoreError> {
        let Some(previous) = self.scheduled_at(timer_key)? else {
            return Ok(false);
        };
        self.inner.put(&by_key(timer_key), None)?;
        self.inner.put(&by_time(previous, timer_key), None)?;
        Ok(true)
    }

    /// Timers due at `now_ms`, earliest first, as (timer key, fire time), read as consumed.
    pub(crate) fn due(&self, now_ms: i64) -> impl Iterator<Item = Result<(Vec<u8>, i64), StoreError>> + '_ {
        let from = [BY_TIME];
        let to = match now_ms.checked_add(1) {
            Some(after_now) => by_time(after_now, &[]),
            None => vec![BY_TIME + 1],
        };
        self.inner.range(Bound::Included(&from), Bound::Excluded(&to)).map(|entry| {
            let (stored_key, _) = entry?;
            let entry = stored_key.get(1..).unwrap_or_default();
            let fire_at_ms = decode_time(entry)?;
            Ok((entry.get(TIME_LEN..).unwrap_or_default().to_vec(), fire_at_ms))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::InMemoryKeyValueStore;

    #[test]
    fn due_timers_come_in_fire_time_order_and_rescheduling_replaces() {
        let mut timers = TimerStore::new(InMemoryKeyValueStore::new("t"));
        timers.schedule(b"late", 300).unwrap();
        timers.schedule(b"early", 100).unwrap();
        timers.schedule(b"moved", 50).unwrap();
        timers.schedule(b"moved", 200).unwrap();
        let due = |timers: &TimerStore<_>, now_ms| timers.due(now_ms).collect::<Result<Vec<_>, _>>().unwrap();
        assert_eq!(due(&timers, 99), vec![]);
        assert_eq!(due(&timers, 200), vec![(b"early".to_vec(), 100), (b"moved".to_vec(), 200)]);
        assert!(timers.cancel(b"early").unwrap());
        assert!(!timers.cancel(b"early").unwrap());
        assert_eq!(due(&timers, i64::MAX), vec![(b"moved".to_vec(), 200), (b"late".to_vec(), 300)]);
        assert_eq!(timers.scheduled_at(b"late").unwrap(), Some(300));
    }
}
