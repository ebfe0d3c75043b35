//! `idempotency_checks_total{namespace,outcome}`: hits (done before), misses (ours to do),
//! conflicts (held by another attempt, or reused for another request) and errors.

use std::sync::LazyLock;

use prometheus::{register_int_counter_vec, IntCounterVec};

static CHECKS: LazyLock<Option<IntCounterVec>> = LazyLock::new(|| {
    register_int_counter_vec!(
        "idempotency_checks_total",
        "Idempotency key claims by outcome: hit, miss, conflict, error",
        &["namespace", "outcome"]
    )
    .ok()
});

pub(super) fn checked(namespace: &str, outcome: &str) {
    if let Some(checks) = CHECKS.as_ref() {
        checks.with_label_values(&[namespace, outcome]).inc();
    }
}
