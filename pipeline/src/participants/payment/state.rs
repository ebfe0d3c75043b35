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
    /// What each (order, command) this balance applied came to, keyed `<order>/<command>`: a
    /// request seen again (a replay under at-least-once) gets the same answer and moves no money.
    #[serde(default)]
    pub applied: BTreeMap<String, Settled>,
    /// When each entry of `applied` was applied (ms since the epoch); entries from before this
    /// was recorded have none and are kept.
    #[serde(default)]
    pub applied_at_ms: BTreeMap<String, i64>,
}

impl CustomerBalance {
    pub fn new(balance_cents: i64) -> Self {
        CustomerBalance { balance_cents, applied: BTreeMap::new(), applied_at_ms: BTreeMap::new() }
    }

    /// Forgets requests applied before `cutoff_ms`: their orders are retired (see
    /// `participants::retention`), and the ledger drops their late duplicates before they get here.
    pub fn forget_applied_before(&mut self, cutoff_ms: i64) {
        let applied = &mut self.applied;
        self.applied_at_ms.retain(|key, at_ms| {
            let keep = *at_ms >= cutoff_ms;
            if !keep {
                applied.remove(key);
            }
            keep
        });
    }
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
    /// Names the request in [`CustomerBalance::applied`].
    pub fn applied_key(&self) -> String {
        let command = match self.command {
            BalanceCommand::Charge => "charge",
            BalanceCommand::Refund { .. } => "refund",
        };
        format!("{}/{command}", self.order_id)
    }
}
