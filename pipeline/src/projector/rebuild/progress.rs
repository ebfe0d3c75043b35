//! What the rebuild tells its operator: a progress line now and then (offsets read per topic
//! against the end, rate, time left), and a summary at the end.

use std::fmt;
use std::time::Duration;

use tokio::time::Instant;

use super::end_offsets::EndOffsets;

/// The rebuild's counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    /// Records read below the end offsets (every one is one of the outcomes below).
    pub records: u64,
    pub applied: u64,
    /// Event ids seen before (Debezium and the producers are at-least-once).
    pub duplicates: u64,
    /// Records that are not saga events: their order is flagged, as the live projector does.
    pub undecodable: u64,
}

impl std::ops::AddAssign for Counts {
    fn add_assign(&mut self, other: Counts) {
        self.records += other.records;
        self.applied += other.applied;
        self.duplicates += other.duplicates;
        self.undecodable += other.undecodable;
    }
}

/// Writes a progress line to `sink` at most once per `every`.
pub struct ProgressReporter<F> {
    sink: F,
    every: Duration,
    started: Instant,
    last_line: Instant,
    /// Offsets read as of the last line; `None` before the first.
    last_read: Option<i64>,
}

impl<F: FnMut(&str)> ProgressReporter<F> {
    pub fn new(sink: F, every: Duration) -> Self {
        let now = Instant::now();
        ProgressReporter { sink, every, started: now, last_line: now, last_read: None }
    }

    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    /// A line if one is due.
    pub fn tick(&mut self, offsets: &EndOffsets, counts: &Counts) {
        if self.last_line.elapsed() >= self.every {
            self.line(offsets, counts);
        }
    }

    /// The last line, unless the last one written already showed this state.
    pub fn finish(&mut self, offsets: &EndOffsets, counts: &Counts) {
        if self.last_read != Some(read(offsets)) {
            self.line(offsets, counts);
        }
    }

    fn line(&mut self, offsets: &EndOffsets, counts: &Counts) {
        let read = read(offsets);
        let stalled = self.last_read == Some(read) && !offsets.all_done();
        let line = progress_line(offsets, counts, self.started.elapsed(), stalled);
        (self.sink)(&line);
        self.last_line = Instant::now();
        self.last_read = Some(read);
    }

    pub fn say(&mut self, line: &str) {
        (self.sink)(line);
    }
}

fn read(offsets: &EndOffsets) -> i64 {
    offsets.per_topic().values().map(|(read, _)| read).sum()
}

/// `rebuild 42% | order.events 840/2000, payment.events ... | 1530 events/s | about 3 s left`,
/// and the partitions it waits on when nothing moved since the last line.
fn progress_line(offsets: &EndOffsets, counts: &Counts, elapsed: Duration, stalled: bool) -> String {
    let topics = offsets.per_topic();
    let (read, total) = topics.values().fold((0, 0), |(r, t), (read, total)| (r + read, t + total));
    let percent = if total == 0 { 100 } else { read * 100 / total };
    let per_topic: Vec<String> =
        topics.iter().map(|(topic, (read, total))| format!("{topic} {read}/{total}")).collect();
    let seconds = elapsed.as_secs_f64();
    let events_per_second = if seconds > 0.0 { counts.records as f64 / seconds } else { 0.0 };
    let offsets_per_second = if seconds > 0.0 { read as f64 / seconds } else { 0.0 };
    let left = if read >= total {
        "done".to_string()
    } else if offsets_per_second > 0.0 {
        format!("about {} s left", ((total - read) as f64 / offsets_per_second).ceil() as u64)
    } else {
        "time left unknown".to_string()
    };
    let mut line = format!("rebuild {percent}% | {} | {events_per_second:.0} events/s | {left}", per_topic.join(", "));
    if stalled {
        let waiting = offsets.waiting_on();
        let shown: Vec<&str> = waiting.iter().take(3).map(String::as_str).collect();
        line += &format!(" | waiting on {}{}", shown.join(", "), if waiting.len() > 3 { ", ..." } else { "" });
    }
    line
}

/// What a finished rebuild did.
#[derive(Clone, Debug, PartialEq)]
pub struct RebuildSummary {
    /// Rows of the rebuilt view.
    pub orders: i64,
    pub counts: Counts,
    /// Rows that differ from the view it replaced (`updated_at` aside), or exist in only one.
    pub rows_changed: i64,
    pub duration: Duration,
}

impl RebuildSummary {
    pub fn events_per_second(&self) -> f64 {
        let seconds = self.duration.as_secs_f64();
        if seconds > 0.0 {
            self.counts.records as f64 / seconds
        } else {
            0.0
        }
    }
}

impl fmt::Display for RebuildSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Counts { records, applied, duplicates, undecodable } = self.counts;
        write!(
            f,
            "read model rebuilt and swapped in: {orders} orders from {records} events ({applied} applied, {duplicates} duplicates, \
             {undecodable} undecodable) in {duration:.1} s ({rate:.0} events/s); {changed} rows differ from the previous view, \
             which is kept as order_view_previous",
            orders = self.orders,
            duration = self.duration.as_secs_f64(),
            rate = self.events_per_second(),
            changed = self.rows_changed,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_line_shows_each_topic_against_its_end_the_rate_and_the_time_left() {
        let mut offsets = EndOffsets::from_ranges([(("order.events", 0), (0, 100)), (("payment.events", 0), (0, 100))]);
        offsets.advance("order.events", 0, 100);
        let counts = Counts { records: 99, applied: 97, duplicates: 1, undecodable: 1 };
        assert_eq!(
            progress_line(&offsets, &counts, Duration::from_secs(2), false),
            "rebuild 50% | order.events 100/100, payment.events 0/100 | 50 events/s | about 2 s left"
        );
        assert_eq!(
            progress_line(&offsets, &counts, Duration::from_secs(2), true),
            "rebuild 50% | order.events 100/100, payment.events 0/100 | 50 events/s | about 2 s left | waiting on payment.events[0] at 0 of 100"
        );
    }

    #[test]
    fn the_reporter_writes_when_due_and_ends_with_one_final_line() {
        let mut offsets = EndOffsets::from_ranges([(("order.events", 0), (0, 10))]);
        let mut lines = Vec::new();
        let mut reporter = ProgressReporter::new(|line: &str| lines.push(line.to_string()), Duration::from_secs(3600));
        reporter.tick(&offsets, &Counts::default());
        offsets.advance("order.events", 0, 10);
        reporter.finish(&offsets, &Counts::default());
        reporter.finish(&offsets, &Counts::default());
        assert_eq!(lines.len(), 1, "not due yet, then one final line: {lines:?}");
        assert!(lines[0].starts_with("rebuild 100% | order.events 10/10"), "{lines:?}");

        let mut lines = Vec::new();
        let mut reporter = ProgressReporter::new(|line: &str| lines.push(line.to_string()), Duration::ZERO);
        reporter.tick(&offsets, &Counts::default());
        reporter.finish(&offsets, &Counts::default());
        assert_eq!(lines.len(), 1, "the final state was shown already: {lines:?}");
    }

    #[test]
    fn nothing_to_read_is_done_at_once() {
        let offsets = EndOffsets::from_ranges([(("order.events", 0), (0, 0))]);
        assert_eq!(
            progress_line(&offsets, &Counts::default(), Duration::ZERO, false),
            "rebuild 100% | order.events 0/0 | 0 events/s | done"
        );
    }

    #[test]
    fn the_summary_says_what_was_rebuilt() {
        let summary = RebuildSummary {
            orders: 3,
            counts: Counts { records: 12, applied: 10, duplicates: 1, undecodable: 1 },
            rows_changed: 1,
            duration: Duration::from_secs(4),
        };
        assert_eq!(summary.events_per_second(), 3.0);
        assert_eq!(
            summary.to_string(),
            "read model rebuilt and swapped in: 3 orders from 12 events (10 applied, 1 duplicates, 1 undecodable) in 4.0 s \
             (3 events/s); 1 rows differ from the previous view, which is kept as order_view_previous"
        );
    }
}
