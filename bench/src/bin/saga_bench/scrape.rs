//! The pipeline's own metrics, read from its admin endpoint's `/metrics` (Prometheus text),
//! so that the pipeline may run in this process or in its own.

use std::collections::BTreeMap;

/// Per application id: (sum, count) of `streams_commit_duration_seconds`.
pub fn commit_totals(metrics: &str) -> BTreeMap<String, (f64, u64)> {
    let mut totals: BTreeMap<String, (f64, u64)> = BTreeMap::new();
    for (name, labels, value) in samples(metrics) {
        let Some(app) = label(labels, "application_id") else { continue };
        match name {
            "streams_commit_duration_seconds_sum" => totals.entry(app).or_default().0 = value,
            "streams_commit_duration_seconds_count" => totals.entry(app).or_default().1 = value as u64,
            _ => {}
        }
    }
    totals
}

/// Per consumer group: the summed lag over its partitions.
pub fn lag_by_group(metrics: &str) -> BTreeMap<String, i64> {
    let mut lag = BTreeMap::new();
    for (_, labels, value) in samples(metrics).filter(|(name, _, _)| *name == "kafka_consumergroup_group_lag") {
        if let Some(group) = label(labels, "group") {
            *lag.entry(group).or_insert(0) += value as i64;
        }
    }
    lag
}

/// `(name, labels, value)` of each sample line.
fn samples(metrics: &str) -> impl Iterator<Item = (&str, &str, f64)> {
    metrics.lines().filter(|line| !line.starts_with('#')).filter_map(|line| {
        let (series, value) = line.rsplit_once(' ')?;
        let value = value.parse().ok()?;
        Some(match series.split_once('{') {
            Some((name, labels)) => (name, labels.trim_end_matches('}'), value),
            None => (series, "", value),
        })
    })
}

fn label(labels: &str, name: &str) -> Option<String> {
    let start = labels.find(&format!("{name}=\""))? + name.len() + 2;
    let end = labels[start..].find('"')?;
    Some(labels[start..start + end].to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    const METRICS: &str = r#"# HELP streams_commit_duration_seconds x
streams_commit_duration_seconds_bucket{application_id="payment",le="0.01"} 3
streams_commit_duration_seconds_sum{application_id="payment"} 0.25
streams_commit_duration_seconds_count{application_id="payment"} 10
kafka_consumergroup_group_lag{group="shipping",partition="0",topic="a"} 7
kafka_consumergroup_group_lag{group="shipping",partition="1",topic="a"} 5
"#;

    #[test]
    fn commit_sums_and_lags_are_read_from_the_text_format() {
        assert_eq!(commit_totals(METRICS).get("payment"), Some(&(0.25, 10)));
        assert_eq!(lag_by_group(METRICS).get("shipping"), Some(&12));
    }
}
