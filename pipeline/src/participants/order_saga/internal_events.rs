//! The saga's own metrics, named as the dashboard and alert rules expect
//! (`dashboards/README.md`). Emitted when a state change is applied; a transaction that aborts
//! and replays can count a change twice, which metrics tolerate and the saga state does not see.

use std::sync::LazyLock;

use operators::metrics::{family, register_default};
use prometheus::core::Collector;
use prometheus::{Histogram, HistogramOpts, IntCounter, IntCounterVec, Opts};
use schemas::CancellationReason;

use super::state::{LearntFacts, OrderSagaState, SagaStatus};
use super::transitions::PARKING_REASONS;

struct SagaMetrics {
    started: IntCounter,
    completed: IntCounterVec,
    cancelled: IntCounterVec,
    end_to_end: Histogram,
    compensations: IntCounterVec,
    parked: IntCounterVec,
    step_timeouts: IntCounterVec,
    late_replies: IntCounterVec,
}

static METRICS: LazyLock<SagaMetrics> = LazyLock::new(|| {
    let metrics = SagaMetrics {
        started: family(IntCounter::new("saga_orders_started_total", "Orders the saga started tracking")),
        completed: family(IntCounterVec::new(
            Opts::new(
                "saga_orders_completed_total",
                "Orders that reached an outcome (confirmed, cancelled, requires_intervention)",
            ),
            &["outcome"],
        )),
        cancelled: family(IntCounterVec::new(
            Opts::new(
                "saga_orders_cancelled_total",
                "Orders the saga cancelled, by reason (timeout:<step> for a step that did not answer in time)",
            ),
            &["reason"],
        )),
        end_to_end: family(Histogram::with_opts(
            HistogramOpts::new("saga_end_to_end_seconds", "From the order's first event to its outcome")
                .buckets(vec![0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0]),
        )),
        compensations: family(IntCounterVec::new(
            Opts::new(
                "saga_compensations_total",
                "Compensations seen completing (succeeded), asked for again (retried) or given up on (failed)",
            ),
            &["kind", "outcome"],
        )),
        parked: family(IntCounterVec::new(
            Opts::new("saga_orders_parked_total", "Orders parked for a person (REQUIRES_INTERVENTION), by reason"),
            &["reason"],
        )),
        step_timeouts: family(IntCounterVec::new(
            Opts::new(
                "saga_step_timeouts_total",
                "Steps that did not answer within their timeout, cancelling the order, by step",
            ),
            &["step"],
        )),
        late_replies: family(IntCounterVec::new(
            Opts::new(
                "saga_late_replies_total",
                "Steps that completed after their order was cancelled, so compensated as well, by step",
            ),
            &["step"],
        )),
    };
    register_default(
        "order-saga",
        [
            Box::new(metrics.started.clone()) as Box<dyn Collector>,
            Box::new(metrics.completed.clone()),
            Box::new(metrics.cancelled.clone()),
            Box::new(metrics.end_to_end.clone()),
            Box::new(metrics.compensations.clone()),
            Box::new(metrics.parked.clone()),
            Box::new(metrics.step_timeouts.clone()),
            Box::new(metrics.late_replies.clone()),
        ],
    );
    metrics
});

/// The outcome labels of `saga_orders_completed_total`.
const OUTCOMES: [&str; 3] = ["confirmed", "cancelled", "requires_intervention"];
/// The steps a timer waits on and a late reply can come from.
const STEPS: [&str; 3] = ["payment", "inventory", "shipping"];
/// The reasons without a step, as `saga_orders_cancelled_total` labels them.
const REASONS: [CancellationReason; 4] = [
    CancellationReason::PaymentFailed,
    CancellationReason::InsufficientStock,
    CancellationReason::ShipmentFailed,
    CancellationReason::CustomerCancelled,
];

/// The saga's topology was built: every known label set starts at 0, so that a first
/// cancellation, timeout or failed compensation is an increase Prometheus sees.
pub(super) fn saga_built() {
    let metrics = &*METRICS;
    for outcome in OUTCOMES {
        metrics.completed.with_label_values(&[outcome]);
    }
    for reason in REASONS {
        metrics.cancelled.with_label_values(&[&reason.to_string()]);
    }
    for step in STEPS {
        metrics.cancelled.with_label_values(&[&CancellationReason::Timeout { step: step.into() }.to_string()]);
        metrics.step_timeouts.with_label_values(&[step]);
        metrics.late_replies.with_label_values(&[step]);
    }
    for kind in COMPENSATIONS {
        for outcome in ["succeeded", "retried", "failed"] {
            metrics.compensations.with_label_values(&[kind, outcome]);
        }
    }
    for reason in PARKING_REASONS {
        metrics.parked.with_label_values(&[reason]);
    }
}

/// The compensation kinds, as `LearntFacts::outstanding` names them.
const COMPENSATIONS: [&str; 3] = ["refund", "release", "cancel_shipment"];

fn is_outcome(status: SagaStatus) -> bool {
    matches!(status, SagaStatus::Confirmed | SagaStatus::Cancelled | SagaStatus::RequiresIntervention)
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
    /// Why the order was just cancelled.
    cancelled: Option<String>,
    /// The step whose timeout just cancelled the order.
    step_timeout: Option<String>,
    /// Steps that just completed although the order was cancelled before.
    late_replies: Vec<&'static str>,
}

fn effects(before: Option<&OrderSagaState>, after: &OrderSagaState, now_ms: i64) -> Effects {
    let mut effects = Effects { started: before.is_none(), ..Effects::default() };
    let before_status = before.map(|b| b.status);
    if is_outcome(after.status) && before_status.is_none_or(|s| !is_outcome(s)) {
        let outcome = match after.status {
            SagaStatus::Confirmed => "confirmed",
            SagaStatus::Cancelled => "cancelled",
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
        let asked_again =
            before.and_then(|b| b.compensations.get(name)).is_some_and(|was| was.retries < deadline.retries);
        if let Some(kind) = COMPENSATIONS.into_iter().find(|kind| kind == name).filter(|_| asked_again) {
            effects.compensations.push((kind, "retried"));
        }
    }
    if let (None, Some(reason)) = (before.and_then(|b| b.reason.as_ref()), after.reason.as_ref()) {
        effects.cancelled = Some(reason.to_string());
        if let CancellationReason::Timeout { step } = reason {
            effects.step_timeout = Some(step.clone());
        }
    }
    if before.is_some_and(|b| b.reason.is_some()) {
        effects.late_replies = completed_steps(&was, now);
    }
    if after.status == SagaStatus::RequiresIntervention && before_status != Some(SagaStatus::RequiresIntervention) {
        effects.compensations.extend(now.outstanding().into_iter().map(|kind| (kind, "failed")));
        effects.parked = after.parked.clone();
    }
    effects
}

/// The steps that completed between `was` and `now`.
fn completed_steps(was: &LearntFacts, now: &LearntFacts) -> Vec<&'static str> {
    [
        (was.charged, now.charged, "payment"),
        (was.reserved, now.reserved, "inventory"),
        (was.shipped, now.shipped, "shipping"),
    ]
    .into_iter()
    .filter_map(|(was, now, step)| (now && !was).then_some(step))
    .collect()
}

/// Counts what changed between the stored state and the new one.
pub(super) fn emit_transition(before: Option<&OrderSagaState>, after: &OrderSagaState, now_ms: i64) {
    let metrics = &*METRICS;
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
    if let Some(reason) = effects.cancelled {
        metrics.cancelled.with_label_values(&[&reason]).inc();
    }
    if let Some(step) = effects.step_timeout {
        metrics.step_timeouts.with_label_values(&[&step]).inc();
    }
    for step in effects.late_replies {
        metrics.late_replies.with_label_values(&[step]).inc();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_outcome_counts_once_with_its_latency() {
        let placed = OrderSagaState { started_at_ms: 1_000, ..Default::default() };
        let confirmed = OrderSagaState { status: SagaStatus::Confirmed, ..placed.clone() };
        assert!(effects(None, &placed, 1_000).started);
        assert_eq!(effects(Some(&placed), &confirmed, 3_500).completed, Some(("confirmed", 2.5)));
        assert_eq!(
            effects(Some(&confirmed), &confirmed, 4_000),
            Effects::default(),
            "a repeated outcome counts nothing"
        );
    }

    #[test]
    fn compensations_count_when_they_finish_or_are_given_up() {
        let charged = LearntFacts { placed: true, charged: true, reserved: true, ..LearntFacts::default() };
        let compensating =
            OrderSagaState { status: SagaStatus::Compensating, progress: charged.clone(), ..Default::default() };
        let released =
            OrderSagaState { progress: LearntFacts { released: true, ..charged.clone() }, ..compensating.clone() };
        assert_eq!(effects(Some(&compensating), &released, 0).compensations, [("release", "succeeded")]);
        let stuck = OrderSagaState {
            status: SagaStatus::RequiresIntervention,
            parked: Some("timeout:compensation".into()),
            ..released.clone()
        };
        let parking = effects(Some(&released), &stuck, 0);
        assert_eq!(parking.compensations, [("refund", "failed")]);
        assert_eq!(parking.parked.as_deref(), Some("timeout:compensation"));
    }

    #[test]
    fn a_timeout_counts_as_its_step_and_as_the_reason_and_a_late_reply_counts_once() {
        let paid = OrderSagaState {
            status: SagaStatus::Paid,
            progress: LearntFacts { placed: true, charged: true, ..LearntFacts::default() },
            ..Default::default()
        };
        let timed_out = OrderSagaState {
            status: SagaStatus::Compensating,
            reason: Some(CancellationReason::Timeout { step: "inventory".into() }),
            ..paid.clone()
        };
        let cancelling = effects(Some(&paid), &timed_out, 0);
        assert_eq!(
            (cancelling.cancelled.as_deref(), cancelling.step_timeout.as_deref()),
            (Some("timeout:inventory"), Some("inventory"))
        );
        assert!(cancelling.late_replies.is_empty());

        let late = OrderSagaState {
            progress: LearntFacts { reserved: true, ..timed_out.progress.clone() },
            ..timed_out.clone()
        };
        let reply = effects(Some(&timed_out), &late, 0);
        assert_eq!(reply.late_replies, ["inventory"]);
        assert_eq!((reply.cancelled, reply.step_timeout), (None, None), "the cancellation counts once");
        assert!(effects(Some(&late), &late, 0).late_replies.is_empty(), "a redelivered reply counts nothing");
    }

    #[test]
    fn the_known_label_sets_start_at_0() {
        saga_built();
        let families = prometheus::default_registry().gather();
        let series = |name: &str| families.iter().find(|f| f.name() == name).map_or(0, |f| f.get_metric().len());
        assert!(series("saga_orders_completed_total") >= OUTCOMES.len());
        assert!(series("saga_orders_cancelled_total") >= REASONS.len() + STEPS.len());
        assert!(series("saga_step_timeouts_total") >= STEPS.len());
        assert!(series("saga_late_replies_total") >= STEPS.len());
        assert!(series("saga_compensations_total") >= COMPENSATIONS.len() * 3);
        assert!(series("saga_orders_parked_total") >= PARKING_REASONS.len());
        assert_eq!(series("saga_orders_started_total"), 1);
    }
}
