//! How long a transaction stays open. The commit interval is the latency floor of every
//! exactly-once hop, and each commit costs the broker and the stream thread about the same
//! whether it carries one record or a thousand; so a short interval that suits a light load caps
//! throughput under a heavy one. With a longer `max_commit_interval`, the interval stretches to
//! a multiple of what commits take lately: commits stay a bounded share of the thread's time,
//! and the interval falls back to its floor once they are quick again.

use std::time::Duration;

/// The interval is at least this many times a commit's duration: commits take at most a fifth
/// of the stream thread's time.
pub(crate) const COMMIT_DURATION_MULTIPLE: u32 = 4;

/// Weight of the latest commit in the running mean: a slow commit or two moves the interval
/// without one outlier setting it.
const LATEST_WEIGHT: f64 = 0.25;

pub(crate) struct CommitPacing {
    floor: Duration,
    ceiling: Duration,
    mean_commit: Duration,
}

impl CommitPacing {
    /// `ceiling` below `floor` means no stretching.
    pub(crate) fn new(floor: Duration, ceiling: Duration) -> Self {
        CommitPacing { floor, ceiling: ceiling.max(floor), mean_commit: Duration::ZERO }
    }

    /// How long the open transaction stays open before it commits.
    pub(crate) fn interval(&self) -> Duration {
        self.mean_commit.saturating_mul(COMMIT_DURATION_MULTIPLE).clamp(self.floor, self.ceiling)
    }

    /// A commit took `elapsed`.
    pub(crate) fn committed(&mut self, elapsed: Duration) {
        let mean = self.mean_commit.as_secs_f64();
        self.mean_commit = Duration::from_secs_f64(mean + LATEST_WEIGHT * (elapsed.as_secs_f64() - mean));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn quick_commits_keep_the_interval_at_its_floor() {
        let mut pacing = CommitPacing::new(25 * MS, 200 * MS);
        for _ in 0..20 {
            pacing.committed(5 * MS);
        }
        assert_eq!(pacing.interval(), 25 * MS);
    }

    #[test]
    fn slow_commits_stretch_the_interval_to_a_multiple_of_their_duration() {
        let mut pacing = CommitPacing::new(25 * MS, 200 * MS);
        for _ in 0..40 {
            pacing.committed(20 * MS);
        }
        let interval = pacing.interval().as_secs_f64() * 1000.0;
        assert!((interval - 80.0).abs() < 1.0, "{interval} ms");
    }

    #[test]
    fn the_interval_never_passes_its_ceiling() {
        let mut pacing = CommitPacing::new(25 * MS, 200 * MS);
        pacing.committed(5_000 * MS);
        assert_eq!(pacing.interval(), 200 * MS);
    }

    #[test]
    fn one_slow_commit_among_quick_ones_moves_the_interval_a_little() {
        let mut pacing = CommitPacing::new(25 * MS, 1_000 * MS);
        for _ in 0..20 {
            pacing.committed(5 * MS);
        }
        pacing.committed(100 * MS);
        let after_outlier = pacing.interval();
        assert!(after_outlier < 400 * MS && after_outlier > 25 * MS, "{after_outlier:?}");
        for _ in 0..20 {
            pacing.committed(5 * MS);
        }
        assert_eq!(pacing.interval(), 25 * MS);
    }

    #[test]
    fn without_a_longer_ceiling_the_interval_is_fixed() {
        let mut pacing = CommitPacing::new(100 * MS, Duration::ZERO);
        pacing.committed(1_000 * MS);
        assert_eq!(pacing.interval(), 100 * MS);
    }
}
