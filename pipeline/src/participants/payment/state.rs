//! What payment stores, as JSON: one [`OrderPayment`] per order, one [`CustomerBalance`] per
//! customer, and the [`BalanceRequest`]s passed from one to the other.

use std::collections::BTreeMap;

use schemas::{CancellationReason, Envelope};
use serde::{Deserialize, Serialize};

/// Everything payment knows about one order, keyed by order id.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct OrderPayment {
    /// From OrderPlaced; `None` until it was seen.
    pub customer_id: Option<String>,
    pub amount_cents: i64,
    pub charge: ChargeState,
    pub inventory: InventoryOutcome,
    /// InventoryReleased was seen.
    pub released: bool,
    /// OrderCancelled was seen, with this reason.
    pub cancelled: Option<CancellationReason>,
    pub refund: RefundState,
}

impl crate::participants::retention::OrderState for OrderPayment {
    /// No charge or refund awaits the balance, and a charged, cancelled order was refunded.
    fn settled(&self) -> bool {
        let charged = matches!(self.charge, ChargeState::Charged { .. });
        let refund_owed = charged && self.cancelled.is_some() && self.refund != RefundState::Refunded;
        self.charge != ChargeState::Requested && self.refund != RefundState::Requested && !refund_owed
    }
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub enum ChargeState {
    #[default]
    NotRequested,
    /// Sent to the customer's balance; the answer comes back on the payment topic.
    Requested,
    Charged {
        payment_id: String,
    },
    Failed,
}

/// How inventory answered the PaymentCompleted: a refund waits for it, so that a reservation is
/// released before the money goes back.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum InventoryOutcome {
    #[default]
    Unknown,
    Reserved,
    Failed {
        reason: String,
    },
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum RefundState {
    #[default]
    NotRequested,
    Requested,
    Refunded,
}

/// The money a customer has, keyed by customer id.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CustomerBalance {
    pub balance_cents: i64,
    /// Applied requests, as versions before [`AppliedRequest`] had their own store kept them:
    /// moved there the first time the balance is touched, and never written again.
    #[serde(default, rename = "applied", skip_serializing_if = "BTreeMap::is_empty")]
    legacy_applied: BTreeMap<String, Settled>,
    #[serde(default, rename = "applied_at_ms", skip_serializing_if = "BTreeMap::is_empty")]
    legacy_applied_at_ms: BTreeMap<String, i64>,
}

impl CustomerBalance {
    pub fn new(balance_cents: i64) -> Self {
        CustomerBalance { balance_cents, legacy_applied: BTreeMap::new(), legacy_applied_at_ms: BTreeMap::new() }
    }

    /// Takes out the requests an earlier version recorded in the balance itself; one recorded
    /// without a time counts as applied at `now_ms`, so that it is kept a full grace period.
    pub fn take_legacy_applied(&mut self, now_ms: i64) -> Vec<(String, AppliedRequest)> {
        let mut at_ms = std::mem::take(&mut self.legacy_applied_at_ms);
        std::mem::take(&mut self.legacy_applied)
            .into_iter()
            .map(|(key, settled)| {
                let applied_at_ms = at_ms.remove(&key).unwrap_or(now_ms);
                (key, AppliedRequest { settled, applied_at_ms })
            })
            .collect()
    }
}

/// A request a balance applied, keyed `<order>/<command>` ([`BalanceRequest::applied_key`]):
/// a request seen again (a replay under at-least-once, or asked again because its answer was
/// slow) moves no money and gets no second answer. Forgotten a grace period after it was applied.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppliedRequest {
    pub settled: Settled,
    pub applied_at_ms: i64,
}

/// The outcome of one applied request.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Settled {
    Charged { payment_id: String },
    Declined { reason: String },
    Refunded { payment_id: String, reason: CancellationReason },
}

/// A charge or refund for one order, keyed by customer id on its way to the balances.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BalanceRequest {
    pub order_id: String,
    pub customer_id: String,
    pub amount_cents: i64,
    pub command: BalanceCommand,
    /// The event the outcome reacts to.
    pub cause: Envelope,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum BalanceCommand {
    Charge,
    Refund { payment_id: String, reason: CancellationReason },
}

impl BalanceRequest {
    /// Names the request in the store of [`AppliedRequest`]s.
    pub fn applied_key(&self) -> String {
        let command = match self.command {
            BalanceCommand::Charge => "charge",
            BalanceCommand::Refund { .. } => "refund",
        };
        format!("{}/{command}", self.order_id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_balance_with_its_applied_requests_inside_gives_them_up_once() -> Result<(), serde_json::Error> {
        let written_before = r#"{"balance_cents":700,"applied":{"o-1/charge":{"Charged":{"payment_id":"p-1"}},"o-0/charge":{"Declined":{"reason":"insufficient_funds"}}},"applied_at_ms":{"o-1/charge":5}}"#;
        let mut balance: CustomerBalance = serde_json::from_str(written_before)?;
        let taken = balance.take_legacy_applied(10);
        assert_eq!(
            taken,
            vec![
                (
                    "o-0/charge".to_owned(),
                    AppliedRequest {
                        settled: Settled::Declined { reason: "insufficient_funds".into() },
                        applied_at_ms: 10
                    }
                ),
                (
                    "o-1/charge".to_owned(),
                    AppliedRequest { settled: Settled::Charged { payment_id: "p-1".into() }, applied_at_ms: 5 }
                ),
            ]
        );
        assert!(balance.take_legacy_applied(10).is_empty(), "given up once");
        assert_eq!(serde_json::to_string(&balance)?, r#"{"balance_cents":700}"#);
        Ok(())
    }
}
