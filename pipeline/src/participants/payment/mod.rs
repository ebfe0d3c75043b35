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
mod stores;
mod topology;

#[cfg(test)]
mod tests;

pub use super::reasons::payment::{INSUFFICIENT_FUNDS, INVALID_AMOUNT};
pub use config::PaymentConfig;
pub use state::{
    BalanceCommand, BalanceRequest, ChargeState, CustomerBalance, InventoryOutcome, OrderPayment, RefundState,
};
pub use stores::{BALANCES_STORE, ORDERS_STORE};
pub use topology::topology;
