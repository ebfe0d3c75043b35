//! The per-customer half of payment: moves money and says what happened.

use std::sync::Arc;

use operators::error::ProcessError;
use operators::processor::{Processor, ProcessorContext};
use operators::record::Record;
use schemas::{Payload, PaymentCompleted, PaymentFailed, PaymentRefunded, SagaEvent};

use super::config::PaymentConfig;
use super::state::{BalanceCommand, BalanceRequest, CustomerBalance};
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
        let mut balances = ctx.kv_store::<String, CustomerBalance>(BALANCES_STORE)?;
        let mut balance =
            balances.get(&record.key)?.unwrap_or_else(|| CustomerBalance { balance_cents: self.config.initial_balance(&record.key) });
        let payload = settle(&mut balance, request);
        // Written even when nothing moved, so a customer's starting balance is on record.
        balances.put(&record.key, &balance)?;
        let event = reply(&request.cause, payload, ctx.current_system_time_ms());
        ctx.forward(event_record(event, record.timestamp_ms, &record.headers))
    }
}

fn settle(balance: &mut CustomerBalance, request: &BalanceRequest) -> Payload {
    let (customer_id, amount_cents) = (request.customer_id.clone(), request.amount_cents);
    let failed =
        |reason: &str| Payload::PaymentFailed(PaymentFailed { customer_id: customer_id.clone(), amount_cents, reason: reason.to_owned() });
    match &request.command {
        BalanceCommand::Charge if amount_cents < 0 => failed(INVALID_AMOUNT),
        BalanceCommand::Charge if balance.balance_cents < amount_cents => failed(INSUFFICIENT_FUNDS),
        BalanceCommand::Charge => {
            balance.balance_cents -= amount_cents;
            let payment_id = uuid::Uuid::new_v4().to_string();
            Payload::PaymentCompleted(PaymentCompleted { customer_id, amount_cents, payment_id })
        }
        BalanceCommand::Refund { payment_id, reason } => {
            balance.balance_cents = balance.balance_cents.saturating_add(amount_cents);
            Payload::PaymentRefunded(PaymentRefunded { customer_id, amount_cents, payment_id: payment_id.clone(), reason: reason.clone() })
        }
    }
}
