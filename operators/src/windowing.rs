//! Window definitions and windowed keys, as in Kafka Streams' `TimeWindows`, `SessionWindows`
//! and `Windowed<K>`.

use std::time::Duration;

use crate::clock::duration_ms;
use crate::serdes::{Serde, SerdeError};

/// A time interval. Time windows are half-open `[start, end)`; session windows are closed
/// `[start, end]`, as in Kafka Streams.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Window {
    pub start_ms: i64,
    pub end_ms: i64,
}

/// A key together with the window it was aggregated in.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Windowed<K> {
    pub key: K,
    pub window: Window,
}

impl<K> Windowed<K> {
    pub fn new(key: K, start_ms: i64, end_ms: i64) -> Self {
        Windowed { key, window: Window { start_ms, end_ms } }
    }
}

/// Fixed-size windows: tumbling by default, hopping with [`TimeWindows::advance_by`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TimeWindows {
    pub(crate) size_ms: i64,
    pub(crate) advance_ms: i64,
    pub(crate) grace_ms: i64,
}

impl TimeWindows {
    /// Tumbling windows of `size` that accept records up to `grace` after a window ends.
    pub fn of_size_with_grace(size: Duration, grace: Duration) -> Self {
        let size_ms = duration_ms(size);
        TimeWindows { size_ms, advance_ms: size_ms, grace_ms: duration_ms(grace) }
    }

    pub fn of_size_without_grace(size: Duration) -> Self {
        Self::of_size_with_grace(size, Duration::ZERO)
    }

    /// Makes the windows hop: a new window starts every `advance`.
    pub fn advance_by(mut self, advance: Duration) -> Self {
        self.advance_ms = duration_ms(advance);
        self
    }

    pub fn size_ms(&self) -> i64 {
        self.size_ms
    }

    pub(crate) fn validate(&self) -> Result<(), String> {
        if self.size_ms <= 0 {
            return Err("time window size must be at least 1 ms".to_owned());
        }
        if self.advance_ms <= 0 || self.advance_ms > self.size_ms {
            return Err(format!("window advance must be in 1..={} ms, got {} ms", self.size_ms, self.advance_ms));
        }
        Ok(())
    }

    /// Start times of every window containing `timestamp_ms`, oldest first (Kafka's
    /// `TimeWindows.windowsFor`). Negative timestamps belong to no window.
    pub(crate) fn window_starts_for(&self, timestamp_ms: i64) -> Vec<i64> {
        if timestamp_ms < 0 || self.advance_ms <= 0 {
            return Vec::new();
        }
        let earliest = timestamp_ms.saturating_sub(self.size_ms).saturating_add(self.advance_ms).max(0);
        let mut start = earliest / self.advance_ms * self.advance_ms;
        let mut starts = Vec::new();
        while start <= timestamp_ms {
            starts.push(start);
            start = match start.checked_add(self.advance_ms) {
                Some(next) => next,
                None => break,
            };
        }
        starts
    }
}

/// Windows that group records of a key separated by less than an inactivity gap.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SessionWindows {
    pub(crate) gap_ms: i64,
    pub(crate) grace_ms: i64,
}

impl SessionWindows {
    pub fn with_inactivity_gap_and_grace(gap: Duration, grace: Duration) -> Self {
        SessionWindows { gap_ms: duration_ms(gap), grace_ms: duration_ms(grace) }
    }

    pub fn with_inactivity_gap_and_no_grace(gap: Duration) -> Self {
        Self::with_inactivity_gap_and_grace(gap, Duration::ZERO)
    }

    pub(crate) fn validate(&self) -> Result<(), String> {
        if self.gap_ms <= 0 {
            return Err("session inactivity gap must be at least 1 ms".to_owned());
        }
        Ok(())
    }
}

fn split_trailing_i64<'a>(bytes: &'a [u8], what: &str) -> Result<(&'a [u8], i64), SerdeError> {
    let split = bytes
        .len()
        .checked_sub(8)
        .ok_or_else(|| SerdeError::new(format!("windowed key too short for its {what} timestamp")))?;
    let (rest, time) = bytes.split_at(split);
    let time: [u8; 8] = time.try_into().map_err(|_| SerdeError::new("windowed key timestamp is not 8 bytes"))?;
    Ok((rest, i64::from_be_bytes(time)))
}

/// `Windowed<K>` keys of time windows: key bytes then the 8-byte big-endian window start, like
/// Kafka's `TimeWindowedSerializer`.
pub struct TimeWindowedSerde<S> {
    inner: S,
    window_size_ms: i64,
}

impl<S> TimeWindowedSerde<S> {
    /// `window_size` restores window ends on read, since only starts are written.
    pub fn new(inner: S, window_size: Duration) -> Self {
        TimeWindowedSerde { inner, window_size_ms: duration_ms(window_size) }
    }
}

impl<K, S: Serde<K>> Serde<Windowed<K>> for TimeWindowedSerde<S> {
    fn serialize(&self, topic: &str, value: &Windowed<K>) -> Result<Vec<u8>, SerdeError> {
        let mut bytes = self.inner.serialize(topic, &value.key)?;
        bytes.extend_from_slice(&value.window.start_ms.to_be_bytes());
        Ok(bytes)
    }

    fn deserialize(&self, topic: &str, bytes: &[u8]) -> Result<Windowed<K>, SerdeError> {
        let (key, start_ms) = split_trailing_i64(bytes, "start")?;
        let key = self.inner.deserialize(topic, key)?;
        Ok(Windowed::new(key, start_ms, start_ms.saturating_add(self.window_size_ms)))
    }
}

/// `Windowed<K>` keys of session windows: key bytes, then end, then start (8-byte big-endian
/// each), like Kafka's `SessionWindowedSerializer`.
pub struct SessionWindowedSerde<S> {
    inner: S,
}

impl<S> SessionWindowedSerde<S> {
    pub fn new(inner: S) -> Self {
        SessionWindowedSerde { inner }
    }
}

impl<K, S: Serde<K>> Serde<Windowed<K>> for SessionWindowedSerde<S> {
    fn serialize(&self, topic: &str, value: &Windowed<K>) -> Result<Vec<u8>, SerdeError> {
        let mut bytes = self.inner.serialize(topic, &value.key)?;
        bytes.extend_from_slice(&value.window.end_ms.to_be_bytes());
        bytes.extend_from_slice(&value.window.start_ms.to_be_bytes());
        Ok(bytes)
    }

    fn deserialize(&self, topic: &str, bytes: &[u8]) -> Result<Windowed<K>, SerdeError> {
        let (rest, start_ms) = split_trailing_i64(bytes, "start")?;
        let (key, end_ms) = split_trailing_i64(rest, "end")?;
        let key = self.inner.deserialize(topic, key)?;
        Ok(Windowed::new(key, start_ms, end_ms))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::serdes::StringSerde;

    #[test]
    fn tumbling_windows_hold_each_timestamp_once() {
        let windows = TimeWindows::of_size_without_grace(Duration::from_millis(10));
        assert_eq!(windows.window_starts_for(0), vec![0]);
        assert_eq!(windows.window_starts_for(19), vec![10]);
        assert_eq!(windows.window_starts_for(-5), Vec::<i64>::new());
    }

    #[test]
    fn hopping_windows_overlap() {
        let windows =
            TimeWindows::of_size_without_grace(Duration::from_millis(10)).advance_by(Duration::from_millis(5));
        assert_eq!(windows.window_starts_for(12), vec![5, 10]);
        assert_eq!(windows.window_starts_for(3), vec![0]);
    }

    #[test]
    fn extreme_timestamps_do_not_overflow() {
        let windows =
            TimeWindows::of_size_without_grace(Duration::from_millis(10)).advance_by(Duration::from_millis(3));
        assert!(!windows.window_starts_for(i64::MAX).is_empty());
    }

    #[test]
    fn windowed_serdes_round_trip_and_reject_short_input() {
        let time = TimeWindowedSerde::new(StringSerde, Duration::from_millis(10));
        let key = Windowed::new("k".to_owned(), 20, 30);
        assert_eq!(time.deserialize("t", &time.serialize("t", &key).unwrap()).unwrap(), key);
        assert!(time.deserialize("t", b"abc").is_err());

        let session = SessionWindowedSerde::new(StringSerde);
        let key = Windowed::new("k".to_owned(), 5, 9);
        assert_eq!(session.deserialize("t", &session.serialize("t", &key).unwrap()).unwrap(), key);
        assert!(session.deserialize("t", &[0; 12]).is_err());
    }
}
