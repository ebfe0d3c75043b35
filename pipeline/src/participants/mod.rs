//! The saga participants, each one a topology on the operators runtime.
//!
//! | Participant | Reads | Writes | State |
//! | --- | --- | --- | --- |
//! | [`payment`] | order, inventory, payment events | payment events | per order; balances per customer (repartitioned) |
//! | [`inventory`] | order, payment events | inventory events | per order; stock per product (repartitioned) |
//! | [`shipping`] | order, inventory events | shipping events | per order; a `shipments` row per order (Postgres, Redis guard) |
//! | [`order_saga`] | all four | order events | per order, with durable step timers |
//!
//! Every topology takes its application id and topic names from its config, so tests can run
//! several side by side; the defaults are the production names.

mod envelope;
pub mod inventory;
pub mod order_saga;
pub mod payment;
pub mod reasons;
pub mod retention;
pub mod shipping;
mod topics;

#[cfg(test)]
mod interleaving_tests;
#[cfg(test)]
mod saga_flow_tests;
#[cfg(test)]
mod test_support;

pub use topics::SagaTopics;

/// OrderInterventionRequested's action: the participants try the outstanding compensations again.
pub const RETRY_COMPENSATIONS: &str = "retry_compensations";
/// OrderInterventionRequested's action: a person settled the order; it ends CANCELLED as it stands.
pub const RESOLVE: &str = "resolve";
/// OrderInterventionRequested's operator when the saga itself asks again for a compensation
/// that is overdue; the saga and the read model skip these, they concern the participants only.
pub const SAGA_OPERATOR: &str = "order-saga";
