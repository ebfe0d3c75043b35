//! The per-customer half of payment: moves money and says what happened.

use std::sync::Arc;

use operators::error::ProcessError;
use operators::processor::{Processor, ProcessorContext};
use operators::record::Record;
use schemas::{Payload, PaymentCompleted, PaymentFailed, PaymentRefunded, SagaEvent};

use super::config::PaymentConfig;
use super::state::{AppliedRequest, BalanceCommand, BalanceRequest, CustomerBalance, Settled};
use super::stores::{APPLIED_STORE, BALANCES_STORE};
use super::{INSUFFICIENT_FUNDS, INVALID_AMOUNT};
use crate::participants::envelope::{event_record, reply};

/// Keyed by customer id; forwards payment events keyed by order id.
pub(super) struct Balances {
    pub(super) config: Arc<PaymentConfig>,
}

impl Processor<String, BalanceRequest, String, SagaEvent> for Balances {
    /// Applies a request once, and answers it once. A request applied before (asked again
    /// because its answer was slow) gets no second answer: under exactly-once the first is on
    /// its way. What was applied is kept per request, not in the balance, so that a balance
    /// costs the same to read and write however many orders its customer placed.
    fn process(
        &mut self,
        ctx: &mut ProcessorContext<'_, String, SagaEvent>,
        record: Record<String, BalanceRequest>,
    ) -> Result<(), ProcessError> {
        let request = &record.value;
        let now_ms = ctx.current_system_time_ms();
        let balances = ctx.kv_store::<String, CustomerBalance>(BALANCES_STORE)?;
        let mut balance = balances
            .get(&record.key)?
            .unwrap_or_else(|| CustomerBalance::new(self.config.initial_balance(&record.key)));
        let mut to_remember = balance.take_legacy_applied(now_ms);
        let key = request.applied_key();
        let mut applied = ctx.kv_store::<String, AppliedRequest>(APPLIED_STORE)?;
        for (legacy_key, legacy) in &to_remember {
            applied.put(legacy_key, legacy)?;
        }
        let payload = match applied.get(&key)? {
            Some(_) => None,
            None => {
                let settled = settle(&mut balance, request);
                let payload = answer(&settled, request);
                let remembered = AppliedRequest { settled, applied_at_ms: now_ms };
                applied.put(&key, &remembered)?;
                to_remember.push((key, remembered));
                Some(payload)
            }
        };
        // Written even when nothing moved, so a customer's starting balance is on record.
        ctx.kv_store::<String, CustomerBalance>(BALANCES_STORE)?.put(&record.key, &balance)?;
        // Its order is retired a grace period after its last event, and the ledger drops that
        // order's late duplicates before they get here (see `participants::retention`).
        let grace_ms = self.config.retention.grace_ms();
        for (key, remembered) in &to_remember {
            ctx.schedule_timer(key.as_bytes(), remembered.applied_at_ms.saturating_add(grace_ms))?;
        }
        let Some(payload) = payload else { return Ok(()) };
        let event = reply(&request.cause, payload, now_ms);
        ctx.forward(event_record(event, record.timestamp_ms, &record.headers))
    }

    /// An applied request's grace period is over: forget it.
    fn on_timer(
        &mut self,
        ctx: &mut ProcessorContext<'_, String, SagaEvent>,
        timer_key: &[u8],
        _fire_at_ms: i64,
    ) -> Result<(), ProcessError> {
        let key = String::from_utf8(timer_key.to_vec())
            .map_err(|_| ProcessError::processing("an applied-request timer key is not UTF-8"))?;
        ctx.kv_store::<String, AppliedRequest>(APPLIED_STORE)?.delete(&key)?;
        Ok(())
    }
}

/// Decides a request seen for the first time, and moves the money.
fn settle(balance: &mut CustomerBalance, request: &BalanceRequest) -> Settled {
    match &request.command {
        BalanceCommand::Charge if request.amount_cents < 0 => Settled::Declined { reason: INVALID_AMOUNT.to_owned() },
        BalanceCommand::Charge if balance.balance_cents < request.amount_cents => {
            Settled::Declined { reason: INSUFFICIENT_FUNDS.to_owned() }
        }
        BalanceCommand::Charge => {
            balance.balance_cents -= request.amount_cents;
            Settled::Charged { payment_id: uuid::Uuid::new_v4().to_string() }
        }
        BalanceCommand::Refund { payment_id, reason } => {
            balance.balance_cents = balance.balance_cents.saturating_add(request.amount_cents);
            Settled::Refunded { payment_id: payment_id.clone(), reason: reason.clone() }
        }
    }
}

fn answer(settled: &Settled, request: &BalanceRequest) -> Payload {
    let (customer_id, amount_cents) = (request.customer_id.clone(), request.amount_cents);
    match settled {
        Settled::Charged { payment_id } => {
            Payload::PaymentCompleted(PaymentCompleted { customer_id, amount_cents, payment_id: payment_id.clone() })
        }
        Settled::Declined { reason } => {
            Payload::PaymentFailed(PaymentFailed { customer_id, amount_cents, reason: reason.clone() })
        }
        Settled::Refunded { payment_id, reason } => Payload::PaymentRefunded(PaymentRefunded {
            customer_id,
            amount_cents,
            payment_id: payment_id.clone(),
            reason: reason.clone(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use schemas::Envelope;

    use super::*;

    fn charge(amount_cents: i64) -> BalanceRequest {
        BalanceRequest {
            order_id: "o-1".into(),
            customer_id: "c-1".into(),
            amount_cents,
            command: BalanceCommand::Charge,
            cause: Envelope::new("o-1", "corr-1", 1_000),
        }
    }

    #[test]
    fn a_charge_the_balance_does_not_cover_is_declined_and_moves_no_money() {
        let mut balance = CustomerBalance::new(100);
        assert_eq!(settle(&mut balance, &charge(300)), Settled::Declined { reason: INSUFFICIENT_FUNDS.into() });
        assert_eq!(settle(&mut balance, &charge(-1)), Settled::Declined { reason: INVALID_AMOUNT.into() });
        assert_eq!(balance.balance_cents, 100);
        assert!(matches!(settle(&mut balance, &charge(100)), Settled::Charged { .. }));
        assert_eq!(balance.balance_cents, 0);
    }
}
