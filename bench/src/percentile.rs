//! Percentiles of sorted samples, as every benchmark here reports them.

/// The sample at percentile `p` (0.0–1.0) of `sorted`: the one at the rounded rank
/// `(len - 1) × p`; `None` when there are none.
pub fn at_percentile<T>(sorted: &[T], p: f64) -> Option<&T> {
    match sorted.len() {
        0 => None,
        n => sorted.get(((n as f64 - 1.0) * p).round() as usize),
    }
}

#[cfg(test)]
mod tests {
    use super::at_percentile;

    #[test]
    fn picks_the_sample_at_the_rounded_rank() {
        let sorted: Vec<i64> = (1..=100).collect();
        assert_eq!(at_percentile(&sorted, 0.50), Some(&51));
        assert_eq!(at_percentile(&sorted, 0.99), Some(&99));
        assert_eq!(at_percentile(&sorted, 1.0), Some(&100));
        assert_eq!(at_percentile::<i64>(&[], 0.5), None);
    }
}
