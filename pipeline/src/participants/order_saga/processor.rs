//! The order-keyed saga processor: state in the orders store, one durable timer per order.

use std::sync::Arc;

use operators::error::ProcessError;
use operators::processor::{Processor, ProcessorContext};
use operators::record::{Header, Record};
use schemas::{Payload, SagaEvent};

use super::config::SagaConfig;
use super::internal_events;
use super::state::OrderSagaState;
use super::stores::ORDERS_STORE;
use super::transitions::{on_event, on_timeout};
use crate::participants::envelope::{event_record, trace_headers, traceparent};
use crate::participants::SAGA_OPERATOR;

pub(super) struct OrderSaga {
    pub(super) config: Arc<SagaConfig>,
}

impl Processor<String, SagaEvent> for OrderSaga {
    fn process(
        &mut self,
        ctx: &mut ProcessorContext<'_, String, SagaEvent>,
        record: Record<String, SagaEvent>,
    ) -> Result<(), ProcessError> {
        // The saga's own decisions and requests, read back from the order topic.
        let own_request =
            matches!(&record.value.payload, Payload::OrderInterventionRequested(r) if r.operator == SAGA_OPERATOR);
        if own_request
            || matches!(
                record.value.payload,
                Payload::OrderConfirmed(_)
                    | Payload::OrderCancelled(_)
                    | Payload::OrderCancellationRejected(_)
                    | Payload::OrderRequiresIntervention(_)
            )
        {
            return Ok(());
        }
        let now_ms = ctx.current_system_time_ms();
        let config = Arc::clone(&self.config);
        step(ctx, &record.key, record.timestamp_ms, &record.headers, |state| {
            on_event(state, &record.value, now_ms, &config)
        })
    }

    fn on_timer(
        &mut self,
        ctx: &mut ProcessorContext<'_, String, SagaEvent>,
        timer_key: &[u8],
        fire_at_ms: i64,
    ) -> Result<(), ProcessError> {
        let order_id = String::from_utf8(timer_key.to_vec())
            .map_err(|_| ProcessError::processing("a saga timer key is not an order id"))?;
        // Never before its time, so the deadline that set the timer counts as passed.
        let now_ms = ctx.current_system_time_ms().max(fire_at_ms);
        let config = Arc::clone(&self.config);
        step(ctx, &order_id, fire_at_ms, &[], |state| on_timeout(state, &order_id, now_ms, &config))
    }
}

/// Loads the order's state, applies `apply`, stores the result with a new version if it
/// changed, moves the timer if the awaited step changed, and forwards what was emitted.
fn step(
    ctx: &mut ProcessorContext<'_, String, SagaEvent>,
    order_id: &String,
    timestamp_ms: i64,
    headers: &[Header],
    apply: impl FnOnce(&mut OrderSagaState) -> Option<SagaEvent>,
) -> Result<(), ProcessError> {
    let mut orders = ctx.kv_store::<String, OrderSagaState>(ORDERS_STORE)?;
    let stored = orders.get(order_id)?;
    let mut state =
        stored.clone().unwrap_or_else(|| OrderSagaState { started_at_ms: timestamp_ms, ..Default::default() });
    if state.traceparent.is_none() {
        state.traceparent = traceparent(headers);
    }
    let emitted = apply(&mut state);
    internal_events::emit_transition(stored.as_ref(), &state, timestamp_ms);
    if stored.as_ref() != Some(&state) {
        state.version += 1;
        orders.put(order_id, &state)?;
    }
    let timer_before = stored.and_then(|stored| stored.awaiting);
    if state.awaiting != timer_before {
        match &state.awaiting {
            Some(awaiting) => ctx.schedule_timer(order_id.as_bytes(), awaiting.due_ms)?,
            None => {
                ctx.cancel_timer(order_id.as_bytes())?;
            }
        }
    }
    match emitted {
        // A timer has no cause record: its event continues the order's trace.
        Some(event) if headers.is_empty() => {
            ctx.forward(event_record(event, timestamp_ms, &trace_headers(state.traceparent.as_deref())))
        }
        Some(event) => ctx.forward(event_record(event, timestamp_ms, headers)),
        None => Ok(()),
    }
}
