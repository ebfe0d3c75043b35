//! The order-keyed reservation processor, fed by saga events and by stock replies; both
//! inputs share the orders store, so they run in one task per partition.

use operators::error::ProcessError;
use operators::processor::{Processor, ProcessorContext};
use operators::record::{Header, Record};
use schemas::SagaEvent;

use super::reservations::{on_event, on_reply, Effect};
use super::state::{OrderReservation, StockReply};
use super::stores::ORDERS_STORE;
use crate::participants::envelope::event_record;

/// Keyed by order id; forwards stock requests keyed by product id and events keyed by order id.
pub(super) struct Reservations;

impl Processor<String, SagaEvent, String, Effect> for Reservations {
    fn process(
        &mut self,
        ctx: &mut ProcessorContext<'_, String, Effect>,
        record: Record<String, SagaEvent>,
    ) -> Result<(), ProcessError> {
        let event = &record.value;
        step(ctx, &record.key, record.timestamp_ms, &record.headers, |order, now_ms| {
            on_event(order, &record.key, event, now_ms)
        })
    }
}

impl Processor<String, StockReply, String, Effect> for Reservations {
    fn process(
        &mut self,
        ctx: &mut ProcessorContext<'_, String, Effect>,
        record: Record<String, StockReply>,
    ) -> Result<(), ProcessError> {
        let answer = &record.value;
        step(ctx, &record.key, record.timestamp_ms, &record.headers, |order, now_ms| {
            on_reply(order, &record.key, answer, now_ms)
        })
    }
}

fn step(
    ctx: &mut ProcessorContext<'_, String, Effect>,
    order_id: &String,
    timestamp_ms: i64,
    headers: &[Header],
    apply: impl FnOnce(&mut OrderReservation, i64) -> Vec<Effect>,
) -> Result<(), ProcessError> {
    let now_ms = ctx.current_system_time_ms();
    let mut orders = ctx.kv_store::<String, OrderReservation>(ORDERS_STORE)?;
    let stored = orders.get(order_id)?;
    let mut order = stored.clone().unwrap_or_default();
    let effects = apply(&mut order, now_ms);
    if stored.as_ref() != Some(&order) {
        orders.put(order_id, &order)?;
    }
    for effect in effects {
        ctx.forward(effect_record(effect, timestamp_ms, headers))?;
    }
    Ok(())
}

/// Events go out keyed by order id, stock requests by product id.
fn effect_record(effect: Effect, timestamp_ms: i64, headers: &[Header]) -> Record<String, Effect> {
    match effect {
        Effect::Emit(event) => {
            let Record { key, value, timestamp_ms, headers } = event_record(*event, timestamp_ms, headers);
            Record { key, value: Effect::Emit(Box::new(value)), timestamp_ms, headers }
        }
        Effect::Reserve(request) => Record::new(request.product_id.clone(), Effect::Reserve(request), timestamp_ms)
            .with_headers(headers.to_vec()),
        Effect::Release(request) => Record::new(request.product_id.clone(), Effect::Release(request), timestamp_ms)
            .with_headers(headers.to_vec()),
    }
}
