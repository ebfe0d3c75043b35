//! Payment: charges an order's customer when it is placed, refunds the charge when the order
//! is cancelled, after inventory gave back what it had reserved (compensations run in reverse).
//!
//! Events are keyed by order, balances by customer, so the work is split in two:
//! - the **ledger** ([`ledger`]), keyed by order, keeps one [`OrderPayment`] per order and
//!   decides when to charge and when to refund; it sends [`BalanceRequest`]s re-keyed by
//!   customer through the `<application.id>-balance-requests-repartition` topic;
//! - the **balances** ([`balances`]), keyed by customer, move the money and emit
//!   PaymentCompleted, PaymentFailed (`insufficient_funds`) or PaymentRefunded.
//!
//! The ledger reads `payment.events` back to learn how its charges ended.

mod balances;
mod config;
mod ledger;
mod state;
mod topology;

#[cfg(test)]
mod tests;

pub use config::PaymentConfig;
pub use state::{
    BalanceCommand, BalanceRequest, ChargeState, CustomerBalance, InventoryOutcome, OrderPayment, RefundState,
};
pub use topology::{topology, BALANCES_STORE, ORDERS_STORE};

/// PaymentFailed's reason when the balance does not cover the order.
pub const INSUFFICIENT_FUNDS: &str = "insufficient_funds";
/// PaymentFailed's reason when the order's total is negative.
pub const INVALID_AMOUNT: &str = "invalid_amount";
