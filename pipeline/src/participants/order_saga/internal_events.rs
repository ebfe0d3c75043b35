//! The saga's own metrics, named as the dashboard and alert rules expect
//! (`dashboards/README.md`). Emitted when a state change is applied; a transaction that aborts
//! and replays can count a change twice, which metrics tolerate and the saga state does not see.

use std::sync::LazyLock;

use prometheus::{register_histogram, register_int_counter, register_int_counter_vec, Histogram, IntCounter, IntCounterVec};

use super::state::{OrderSagaState, OrderStatus};

struct SagaMetrics {
    started: IntCounter,
    completed: IntCounterVec,
    end_to_end: Histogram,
    compensations: IntCounterVec,
    parked: IntCounterVec,
}

static METRICS: LazyLock<Option<SagaMetrics>> = LazyLock::new(|| {
    let metrics = SagaMetrics {
        started: register_int_counter!("saga_orders_started_total", "Orders the saga started tracking").ok()?,
        completed: register_int_counter_vec!(
            "saga_orders_completed_total",
            "Orders that reached an outcome (confirmed, cancelled, requires_intervention)",
            &["outcome"]
        )
        .ok()?,
        end_to_end: register_histogram!(
            "saga_end_to_end_seconds",
            "From the order's first event to its outcome",
            vec![0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0]
        )
        .ok()?,
        compensations: register_int_counter_vec!(
            "saga_compensations_total",
            "Compensations seen completing (succeeded), asked for again (retried) or given up on (failed)",
            &["kind", "outcome"]
        )
        .ok()?,
        parked: register_int_counter_vec!(
            "saga_orders_parked_total",
            "Orders parked for a person (REQUIRES_INTERVENTION), by reason",
            &["reason"]
        )
        .ok()?,
    };
    Some(metrics)
});

/// The compensation kinds, as `Progress::outstanding` names them.
const COMPENSATIONS: [&str; 3] = ["refund", "release", "cancel_shipment"];

fn is_outcome(status: OrderStatus) -> bool {
    matches!(status, OrderStatus::Confirmed | OrderStatus::Cancelled | OrderStatus::RequiresIntervention)
}

/// What one state change means for the metrics.
#[derive(Debug, Default, PartialEq)]
struct Effects {
    started: bool,
    /// The outcome label and the seconds it took, when the order reached one.
    completed: Option<(&'static str, f64)>,
    /// (kind, outcome) per compensation that finished, was asked for again or was given up on.
    compensations: Vec<(&'static str, &'static str)>,
    /// Why the order was just parked.
    parked: Option<String>,
}

fn effects(before: Option<&OrderSagaState>, after: &OrderSagaState, now_ms: i64) -> Effects {
    let mut effects = Effects { started: before.is_none(), ..Effects::default() };
    let before_status = before.map(|b| b.status);
    if is_outcome(after.status) && before_status.is_none_or(|s| !is_outcome(s)) {
        let outcome = match after.status {
            OrderStatus::Confirmed => "confirmed",
            OrderStatus::Cancelled => "cancelled",
            _ => "requires_intervention",
        };
        effects.completed = Some((outcome, (now_ms - after.started_at_ms).max(0) as f64 / 1000.0));
    }
    let (was, now) = (before.map(|b| b.progress.clone()).unwrap_or_default(), &after.progress);
    if now.refunded && !was.refunded {
        effects.compensations.push(("refund", "succeeded"));
    }
    if now.released && !was.released {
        effects.compensations.push(("release", "succeeded"));
    }
    if now.shipment_cancelled && !was.shipment_cancelled {
        effects.compensations.push(("cancel_shipment", "succeeded"));
    }
    for (name, deadline) in &after.compensations {
        let asked_again = before.and_then(|b| b.compensations.get(name)).is_some_and(|was| was.retries < deadline.retries);
        if let Some(kind) = COMPENSATIONS.into_iter().find(|kind| kind == name).filter(|_| asked_again) {
            effects.compensations.push((kind, "retried"));
        }
    }
    if after.status == OrderStatus::RequiresIntervention && before_status != Some(OrderStatus::RequiresIntervention) {
        effects.compensations.extend(now.outstanding().into_iter().map(|kind| (kind, "failed")));
        effects.parked = after.parked.clone();
    }
    effects
}

/// Counts what changed between the stored state and the new one.
pub(super) fn emit_transition(before: Option<&OrderSagaState>, after: &OrderSagaState, now_ms: i64) {
    let Some(metrics) = METRICS.as_ref() else { return };
    let effects = effects(before, after, now_ms);
    if effects.started {
        metrics.started.inc();
    }
    if let Some((outcome, seconds)) = effects.completed {
        metrics.completed.with_label_values(&[outcome]).inc();
        metrics.end_to_end.observe(seconds);
    }
    for (kind, outcome) in effects.compensations {
        metrics.compensations.with_label_values(&[kind, outcome]).inc();
    }
    if let Some(reason) = effects.parked {
        metrics.parked.with_label_values(&[&reason]).inc();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::participants::order_saga::state::Progress;

    #[test]
    fn an_outcome_counts_once_with_its_latency() {
        let placed = OrderSagaState { started_at_ms: 1_000, ..Default::default() };
        let confirmed = OrderSagaState { status: OrderStatus::Confirmed, ..placed.clone() };
        assert!(effects(None, &placed, 1_000).started);
        assert_eq!(effects(Some(&placed), &confirmed, 3_500).completed, Some(("confirmed", 2.5)));
        assert_eq!(effects(Some(&confirmed), &confirmed, 4_000), Effects::default(), "a repeated outcome counts nothing");
    }

    #[test]
    fn compensations_count_when_they_finish_or_are_given_up() {
        let charged = Progress { placed: true, charged: true, reserved: true, ..Progress::default() };
        let compensating = OrderSagaState { status: OrderStatus::Compensating, progress: charged.clone(), ..Default::default() };
        let released = OrderSagaState { progress: Progress { released: true, ..charged.clone() }, ..compensating.clone() };
        assert_eq!(effects(Some(&compensating), &released, 0).compensations, [("release", "succeeded")]);
        let stuck = OrderSagaState {
            status: OrderStatus::RequiresIntervention,
            parked: Some("timeout:compensation".into()),
            ..released.clone()
        };
        let parking = effects(Some(&released), &stuck, 0);
        assert_eq!(parking.compensations, [("refund", "failed")]);
        assert_eq!(parking.parked.as_deref(), Some("timeout:compensation"));
    }
}
