//! `idempotency_checks_total{namespace,outcome}`: hits (done before), misses (ours to do),
//! conflicts (held by another attempt, or reused for another request) and errors.

use std::sync::LazyLock;

use prometheus::core::Collector;
use prometheus::{IntCounterVec, Opts};

use crate::metrics::{family, register_default};

const OUTCOMES: [&str; 4] = ["hit", "miss", "conflict", "error"];

static CHECKS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    let checks = family(IntCounterVec::new(
        Opts::new("idempotency_checks_total", "Idempotency key claims by outcome: hit, miss, conflict, error"),
        &["namespace", "outcome"],
    ));
    register_default("idempotency", [Box::new(checks.clone()) as Box<dyn Collector>]);
    checks
});

/// A guard of `namespace` was built: its outcomes start at 0.
pub(super) fn guarding(namespace: &str) {
    for outcome in OUTCOMES {
        CHECKS.with_label_values(&[namespace, outcome]);
    }
}

pub(super) fn checked(namespace: &str, outcome: &str) {
    CHECKS.with_label_values(&[namespace, outcome]).inc();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_guards_outcomes_start_at_0() {
        guarding("metrics-zero-init");
        let family = prometheus::default_registry()
            .gather()
            .into_iter()
            .find(|f| f.name() == "idempotency_checks_total")
            .expect("registered");
        let outcomes: Vec<&str> = family
            .get_metric()
            .iter()
            .filter(|m| m.get_label().iter().any(|l| l.value() == "metrics-zero-init"))
            .flat_map(|m| m.get_label().iter().filter(|l| l.name() == "outcome").map(|l| l.value()))
            .collect();
        assert_eq!(outcomes.len(), OUTCOMES.len(), "{outcomes:?}");
    }
}
