//! The order saga: follows each order through payment, inventory and shipping, confirms it
//! when all three succeeded, and otherwise decides, exactly once, to cancel it.
//!
//! One processor over the four topics keeps an [`OrderSagaState`] per order and one durable
//! timer per order for the step it waits on (payment, inventory, shipping, then the
//! compensations). Status: PLACED → PAID → RESERVED → CONFIRMED; on a failure, a customer's
//! cancellation before confirmation or a step timeout it emits OrderCancelled(reason) and goes
//! COMPENSATING while a refund or release is outstanding, then CANCELLED. A compensation that
//! does not finish within its own timeout leaves the order REQUIRES_INTERVENTION.
//!
//! Transitions depend only on facts, which only accumulate, so duplicated and late events never
//! move an order backwards.

mod config;
mod internal_events;
mod processor;
mod state;
mod stores;
mod topology;
mod transitions;

#[cfg(test)]
mod tests;

pub use config::SagaConfig;
pub use state::{Awaiting, LearntFacts, OrderSagaState, SagaStatus, Step};
pub use stores::ORDERS_STORE;
pub use topology::topology;
