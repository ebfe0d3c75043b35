//! The per-customer half of payment: moves money and says what happened.

use std::sync::Arc;

use operators::error::ProcessError;
use operators::processor::{Processor, ProcessorContext};
use operators::record::Record;
use schemas::{Payload, PaymentCompleted, PaymentFailed, PaymentRefunded, SagaEvent};

use super::config::PaymentConfig;
use super::state::{BalanceCommand, BalanceRequest, CustomerBalance, Settled};
use super::topology::BALANCES_STORE;
use super::{INSUFFICIENT_FUNDS, INVALID_AMOUNT};
use crate::participants::envelope::{event_record, reply};

/// Keyed by customer id; forwards payment events keyed by order id.
pub(super) struct Balances {
    pub(super) config: Arc<PaymentConfig>,
}

impl Processor<String, BalanceRequest, String, SagaEvent> for Balances {
    fn process(
        &mut self,
        ctx: &mut ProcessorContext<'_, String, SagaEvent>,
        record: Record<String, BalanceRequest>,
    ) -> Result<(), ProcessError> {
        let request = &record.value;
        let now_ms = ctx.current_system_time_ms();
        let mut balances = ctx.kv_store::<String, CustomerBalance>(BALANCES_STORE)?;
        let mut balance =
            balances.get(&record.key)?.unwrap_or_else(|| CustomerBalance::new(self.config.initial_balance(&record.key)));
        balance.forget_applied_before(now_ms.saturating_sub(self.config.retention.grace_ms()));
        let payload = settle(&mut balance, request, now_ms);
        // Written even when nothing moved, so a customer's starting balance is on record.
        balances.put(&record.key, &balance)?;
        let Some(payload) = payload else { return Ok(()) };
        let event = reply(&request.cause, payload, now_ms);
        ctx.forward(event_record(event, record.timestamp_ms, &record.headers))
    }
}

/// Applies a request once, and answers it once. A request applied before (asked again because
/// its answer was slow) gets no second answer: under exactly-once the first is on its way.
fn settle(balance: &mut CustomerBalance, request: &BalanceRequest, now_ms: i64) -> Option<Payload> {
    let key = request.applied_key();
    if balance.applied.contains_key(&key) {
        return None;
    }
    let settled = match &request.command {
        BalanceCommand::Charge if request.amount_cents < 0 => Settled::Declined { reason: INVALID_AMOUNT.to_owned() },
        BalanceCommand::Charge if balance.balance_cents < request.amount_cents => Settled::Declined { reason: INSUFFICIENT_FUNDS.to_owned() },
        BalanceCommand::Charge => {
            balance.balance_cents -= request.amount_cents;
            Settled::Charged { payment_id: uuid::Uuid::new_v4().to_string() }
        }
        BalanceCommand::Refund { payment_id, reason } => {
            balance.balance_cents = balance.balance_cents.saturating_add(request.amount_cents);
            Settled::Refunded { payment_id: payment_id.clone(), reason: reason.clone() }
        }
    };
    let payload = answer(&settled, request);
    balance.applied_at_ms.insert(key.clone(), now_ms);
    balance.applied.insert(key, settled);
    Some(payload)
}

fn answer(settled: &Settled, request: &BalanceRequest) -> Payload {
    let (customer_id, amount_cents) = (request.customer_id.clone(), request.amount_cents);
    match settled {
        Settled::Charged { payment_id } => Payload::PaymentCompleted(PaymentCompleted { customer_id, amount_cents, payment_id: payment_id.clone() }),
        Settled::Declined { reason } => Payload::PaymentFailed(PaymentFailed { customer_id, amount_cents, reason: reason.clone() }),
        Settled::Refunded { payment_id, reason } => {
            Payload::PaymentRefunded(PaymentRefunded { customer_id, amount_cents, payment_id: payment_id.clone(), reason: reason.clone() })
        }
    }
}

#[cfg(test)]
mod tests {
    use schemas::{CancellationReason, Envelope};

    use super::*;

    fn request(command: BalanceCommand) -> BalanceRequest {
        BalanceRequest {
            order_id: "o-1".into(),
            customer_id: "c-1".into(),
            amount_cents: 300,
            command,
            cause: Envelope::new("o-1", "corr-1", 1_000),
        }
    }

    #[test]
    fn a_request_seen_again_moves_no_money_and_is_answered_once() {
        let mut balance = CustomerBalance::new(1_000);
        let charge = request(BalanceCommand::Charge);
        let first = settle(&mut balance, &charge, 1_000);
        assert_eq!(settle(&mut balance, &charge, 1_000), None, "no second answer");
        assert_eq!(balance.balance_cents, 700);

        let Some(Payload::PaymentCompleted(completed)) = first else { panic!("expected a charge, got {first:?}") };
        let refund = request(BalanceCommand::Refund { payment_id: completed.payment_id, reason: CancellationReason::CustomerCancelled });
        assert!(matches!(settle(&mut balance, &refund, 1_000), Some(Payload::PaymentRefunded(_))));
        assert_eq!(settle(&mut balance, &refund, 1_000), None);
        assert_eq!(balance.balance_cents, 1_000, "refunded once");
    }

    #[test]
    fn a_declined_charge_stays_declined_when_seen_again_even_with_money_arrived() {
        let mut balance = CustomerBalance::new(100);
        let charge = request(BalanceCommand::Charge);
        assert!(matches!(settle(&mut balance, &charge, 1_000), Some(Payload::PaymentFailed(_))));
        balance.balance_cents = 10_000;
        assert_eq!(settle(&mut balance, &charge, 1_000), None, "decided before: no new decision, no second answer");
        assert_eq!(balance.balance_cents, 10_000);
    }

    #[test]
    fn an_applied_request_is_forgotten_once_older_than_the_cutoff() {
        let mut balance = CustomerBalance::new(1_000);
        let charge = request(BalanceCommand::Charge);
        assert!(settle(&mut balance, &charge, 1_000).is_some());
        balance.forget_applied_before(1_000);
        assert_eq!(balance.applied.len(), 1, "not older than the cutoff: kept");
        balance.forget_applied_before(1_001);
        assert!(balance.applied.is_empty() && balance.applied_at_ms.is_empty(), "{balance:?}");

        // Recorded before times were: kept.
        balance.applied.insert("o-0/charge".into(), Settled::Declined { reason: INSUFFICIENT_FUNDS.into() });
        balance.forget_applied_before(i64::MAX);
        assert_eq!(balance.applied.len(), 1);
    }
}
