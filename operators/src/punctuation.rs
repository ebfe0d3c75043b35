//! Periodic punctuation schedules of a task.
//!
//! Schedules are not transactional, as in Kafka Streams: a punctuation whose effects are rolled
//! back is not repeated, it simply fires again at its next interval.

use crate::graph::NodeId;

/// Which clock drives a punctuation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PunctuationType {
    /// Fires from [`Task::punctuate_wall_clock`](crate::task::Task::punctuate_wall_clock).
    WallClockTime,
    /// Fires as record timestamps advance the task's stream time.
    StreamTime,
}

/// Identifies one schedule, passed back to [`Processor::punctuate`](crate::processor::Processor::punctuate).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct PunctuationId(u64);

struct Schedule {
    id: PunctuationId,
    node: NodeId,
    kind: PunctuationType,
    interval_ms: i64,
    next_ms: i64,
}

#[derive(Default)]
pub(crate) struct Punctuations {
    schedules: Vec<Schedule>,
    next_id: u64,
}

impl Punctuations {
    /// `interval_ms` must be positive; the caller checks.
    pub(crate) fn schedule(
        &mut self,
        node: NodeId,
        kind: PunctuationType,
        interval_ms: i64,
        first_ms: i64,
    ) -> PunctuationId {
        let id = PunctuationId(self.next_id);
        self.next_id += 1;
        self.schedules.push(Schedule { id, node, kind, interval_ms, next_ms: first_ms });
        id
    }

    /// Drops the schedules of `node`: before its `init` runs again (a fresh processor after a
    /// panic, or an `init` that failed), which schedules anew.
    pub(crate) fn cancel_node(&mut self, node: NodeId) {
        self.schedules.retain(|schedule| schedule.node != node);
    }

    /// Schedules of `kind` due at `now_ms`, each moved to its next time on its interval grid;
    /// missed intervals fire once, like Kafka Streams.
    pub(crate) fn take_due(&mut self, kind: PunctuationType, now_ms: i64) -> Vec<(PunctuationId, NodeId)> {
        let mut due = Vec::new();
        for schedule in self.schedules.iter_mut().filter(|s| s.kind == kind && s.next_ms <= now_ms) {
            let missed = now_ms.saturating_sub(schedule.next_ms) / schedule.interval_ms;
            let advance = missed.saturating_add(1).saturating_mul(schedule.interval_ms);
            schedule.next_ms = schedule.next_ms.saturating_add(advance);
            due.push((schedule.id, schedule.node));
        }
        due
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fires_once_per_due_call_and_stays_on_its_grid() {
        let mut punctuations = Punctuations::default();
        let id = punctuations.schedule(7, PunctuationType::WallClockTime, 10, 10);
        assert!(punctuations.take_due(PunctuationType::WallClockTime, 9).is_empty());
        assert!(punctuations.take_due(PunctuationType::StreamTime, 100).is_empty());
        assert_eq!(punctuations.take_due(PunctuationType::WallClockTime, 35), vec![(id, 7)]);
        assert!(punctuations.take_due(PunctuationType::WallClockTime, 39).is_empty());
        assert_eq!(punctuations.take_due(PunctuationType::WallClockTime, 40), vec![(id, 7)]);
    }
}
