//! Per-order state that ends: each participant deletes an order's entry a grace period after
//! the order's last event, once the saga has decided it (OrderConfirmed, OrderCancelled) and it
//! is not parked for a person. A durable timer drives the delete, which reaches the changelog
//! as a tombstone in the same transaction. See `docs/saga.md`, "Retention".
//!
//! An event for an order with no state that is older than the grace period belongs to an order
//! already forgotten (Debezium delivering it again, a replayed topic): it is dropped and counted,
//! never taken for a new order, so no side effect runs twice.

use std::marker::PhantomData;
use std::sync::LazyLock;
use std::time::Duration;

use operators::dsl::StreamsBuilder;
use operators::error::ProcessError;
use operators::metrics::{family, register_default};
use operators::processor::{Processor, ProcessorContext};
use operators::punctuation::PunctuationId;
use operators::record::{Data, Record};
use operators::serdes::{JsonSerde, StringSerde};
use operators::store::StoreBuilder;
use prometheus::core::Collector;
use prometheus::{IntCounterVec, Opts};
use schemas::{Payload, SagaEvent};
use serde::{Deserialize, Serialize};

use super::RESOLVE;

/// The target of the span each saga event is handled in, off by default (one per event per hop):
/// `RUST_LOG=info,saga_event=debug` switches it on.
pub const EVENT_SPAN_TARGET: &str = "saga_event";

/// [`Lifecycle`]s by order id, beside each participant's order store.
pub const LIFECYCLE_STORE: &str = "order-lifecycles";

/// Timer keys of retention, apart from the participants' own timers (keyed by bare order id).
const TIMER_PREFIX: &[u8] = b"\0retire\0";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Retention {
    /// How long a decided order's state outlives its last event.
    pub grace: Duration,
}

impl Retention {
    pub fn grace_ms(&self) -> i64 {
        i64::try_from(self.grace.as_millis()).unwrap_or(i64::MAX)
    }
}

impl Default for Retention {
    fn default() -> Self {
        Retention { grace: Duration::from_secs(7 * 24 * 3600) }
    }
}

/// What retention knows of one order, from the saga's decisions on the order topic.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lifecycle {
    /// OrderConfirmed or OrderCancelled was seen.
    pub decided: bool,
    /// OrderRequiresIntervention was seen and no operator has acted since.
    pub parked: bool,
}

impl Lifecycle {
    fn observe(&mut self, payload: &Payload) {
        match payload {
            Payload::OrderConfirmed(_) | Payload::OrderCancelled(_) => self.decided = true,
            Payload::OrderRequiresIntervention(_) => self.parked = true,
            // An operator's retry brings the compensations back; a resolution settles the order.
            Payload::OrderInterventionRequested(requested) => {
                self.parked = false;
                if requested.action == RESOLVE {
                    self.decided = true;
                }
            }
            _ => {}
        }
    }

    fn retirable(&self) -> bool {
        self.decided && !self.parked
    }
}

/// Adds the lifecycle store; connect the wrapped processor to [`stores`].
pub fn add_store(builder: &StreamsBuilder) {
    builder.add_state_store(StoreBuilder::key_value(LIFECYCLE_STORE, StringSerde, JsonSerde::<Lifecycle>::new()));
}

/// The stores a [`Retained`] processor is connected to: its order store and the lifecycles.
pub fn stores(orders_store: &'static str) -> [&'static str; 2] {
    [orders_store, LIFECYCLE_STORE]
}

/// A participant's per-order state.
pub trait OrderState: serde::de::DeserializeOwned + 'static {
    /// Nothing the participant asked for is unanswered and nothing it owes is undone: a reply
    /// that came later than the grace period would find no state to act on, so an entry that
    /// is not settled is kept, however long past the grace period.
    fn settled(&self) -> bool;
}

/// A participant's order-keyed processor, with its entries in `orders_store` (of `V`s) retired.
pub struct Retained<P, V> {
    inner: P,
    participant: &'static str,
    orders_store: &'static str,
    retention: Retention,
    state: PhantomData<fn() -> V>,
}

impl<P, V> Retained<P, V> {
    pub fn new(inner: P, participant: &'static str, orders_store: &'static str, retention: Retention) -> Self {
        for outcome in RETENTION_OUTCOMES {
            OUTCOMES.with_label_values(&[participant, outcome]);
        }
        Retained { inner, participant, orders_store, retention, state: PhantomData }
    }
}

impl<P, V, KOut, VOut> Processor<String, SagaEvent, KOut, VOut> for Retained<P, V>
where
    P: Processor<String, SagaEvent, KOut, VOut>,
    V: OrderState,
    KOut: Data,
    VOut: Data,
{
    fn init(&mut self, ctx: &mut ProcessorContext<'_, KOut, VOut>) -> Result<(), ProcessError> {
        self.inner.init(ctx)
    }

    fn process(
        &mut self,
        ctx: &mut ProcessorContext<'_, KOut, VOut>,
        record: Record<String, SagaEvent>,
    ) -> Result<(), ProcessError> {
        // Every participant's events pass here: what it logs while handling one names the order.
        let envelope = &record.value.envelope;
        let span = tracing::debug_span!(
            target: EVENT_SPAN_TARGET,
            "saga_event",
            participant = self.participant,
            order_id = %envelope.order_id,
            event_id = %envelope.event_id,
            correlation_id = %envelope.correlation_id,
            event = record.value.event_type().as_str(),
        );
        if !span.is_disabled() {
            crate::otlp::continue_trace(&span, &record.headers);
        }
        let _entered = span.enter();
        let now_ms = ctx.current_system_time_ms();
        let lifecycles = ctx.kv_store::<String, Lifecycle>(LIFECYCLE_STORE)?;
        let known = lifecycles.get(&record.key)?;
        let stale = record.value.envelope.occurred_at < now_ms.saturating_sub(self.retention.grace_ms());
        // State written before retention existed has no lifecycle yet, and is not forgotten.
        if stale && known.is_none() && ctx.kv_store::<String, V>(self.orders_store)?.get(&record.key)?.is_none() {
            count(self.participant, "late_event_dropped");
            tracing::info!(participant = self.participant, order_id = %record.key, event = ?record.value.event_type(), "an event of a forgotten order dropped");
            return Ok(());
        }
        let mut lifecycles = ctx.kv_store::<String, Lifecycle>(LIFECYCLE_STORE)?;
        let mut lifecycle = known.clone().unwrap_or_default();
        lifecycle.observe(&record.value.payload);
        if known.as_ref() != Some(&lifecycle) {
            lifecycles.put(&record.key, &lifecycle)?;
        }
        let timer = timer_key(&record.key);
        if lifecycle.retirable() {
            // From the last event: a late reply within the grace period finds the state and
            // pushes the delete back.
            ctx.schedule_timer(&timer, now_ms.saturating_add(self.retention.grace_ms()))?;
        } else if known.is_some_and(|known| known.retirable()) {
            ctx.cancel_timer(&timer)?;
        }
        self.inner.process(ctx, record)
    }

    fn punctuate(
        &mut self,
        ctx: &mut ProcessorContext<'_, KOut, VOut>,
        id: PunctuationId,
        timestamp_ms: i64,
    ) -> Result<(), ProcessError> {
        self.inner.punctuate(ctx, id, timestamp_ms)
    }

    fn before_commit(&mut self, ctx: &mut ProcessorContext<'_, KOut, VOut>) -> Result<(), ProcessError> {
        self.inner.before_commit(ctx)
    }

    fn on_timer(
        &mut self,
        ctx: &mut ProcessorContext<'_, KOut, VOut>,
        timer_key: &[u8],
        fire_at_ms: i64,
    ) -> Result<(), ProcessError> {
        let Some(order_id) = timer_key.strip_prefix(TIMER_PREFIX) else {
            return self.inner.on_timer(ctx, timer_key, fire_at_ms);
        };
        let order_id = String::from_utf8(order_id.to_vec())
            .map_err(|_| ProcessError::processing("a retention timer key is not an order id"))?;
        let lifecycles = ctx.kv_store::<String, Lifecycle>(LIFECYCLE_STORE)?;
        if !lifecycles.get(&order_id)?.is_some_and(|lifecycle| lifecycle.retirable()) {
            return Ok(());
        }
        let mut orders = ctx.kv_store::<String, V>(self.orders_store)?;
        if orders.get(&order_id)?.is_some_and(|state| !state.settled()) {
            count(self.participant, "postponed");
            return ctx.schedule_timer(
                timer_key,
                fire_at_ms.max(ctx.current_system_time_ms()).saturating_add(self.retention.grace_ms()),
            );
        }
        orders.delete(&order_id)?;
        let mut lifecycles = ctx.kv_store::<String, Lifecycle>(LIFECYCLE_STORE)?;
        lifecycles.delete(&order_id)?;
        // Whatever the participant still had scheduled for the order goes with it.
        ctx.cancel_timer(order_id.as_bytes())?;
        count(self.participant, "retired");
        Ok(())
    }
}

fn timer_key(order_id: &str) -> Vec<u8> {
    [TIMER_PREFIX, order_id.as_bytes()].concat()
}

const RETENTION_OUTCOMES: [&str; 3] = ["retired", "postponed", "late_event_dropped"];

static OUTCOMES: LazyLock<IntCounterVec> = LazyLock::new(|| {
    let outcomes = family(IntCounterVec::new(
        Opts::new(
            "saga_order_state_retention_total",
            "Per-order state deleted after its grace period (retired), kept longer with a request or compensation outstanding (postponed), and events of forgotten orders dropped (late_event_dropped)",
        ),
        &["participant", "outcome"],
    ));
    register_default("retention", [Box::new(outcomes.clone()) as Box<dyn Collector>]);
    outcomes
});

fn count(participant: &str, outcome: &str) {
    OUTCOMES.with_label_values(&[participant, outcome]).inc();
}
