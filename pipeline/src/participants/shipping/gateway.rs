//! The side effect shipping performs, behind a trait so the topology can be driven in tests
//! without Postgres or Redis.

use std::collections::HashMap;

use operators::error::ProcessError;

/// A shipment as recorded in the `shipments` table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Shipment {
    pub shipment_id: String,
    pub tracking_number: String,
}

/// What came of cancelling a shipment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Cancellation {
    Cancelled,
    /// The shipment stays live: it is with the carrier already, say.
    TooLate {
        reason: String,
    },
}

/// Creates and cancels the shipment of an order, each at most once: calling again for the
/// same order returns what the first call did. Called on the stream thread, so it blocks
/// (with timeouts).
pub trait ShipmentGateway: Send + Sync {
    fn create_shipment(&self, order_id: &str) -> Result<Shipment, ShipmentError>;
    /// `create_shipment` for each order, all or nothing as far as the caller can tell: on an
    /// error, some may have been created, and calling again returns them as they are.
    fn create_shipments(&self, order_ids: &[String]) -> Result<HashMap<String, Shipment>, ShipmentError> {
        order_ids.iter().map(|order_id| Ok((order_id.clone(), self.create_shipment(order_id)?))).collect()
    }
    fn cancel_shipment(&self, order_id: &str, shipment_id: &str) -> Result<Cancellation, ShipmentError>;
}

/// Why a shipment could not be created.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ShipmentError {
    pub message: String,
    /// Trying again later may succeed (a store is down, or another attempt holds the lease).
    pub retriable: bool,
    /// What is down, when nothing can succeed until it is back: the runtime then pauses the
    /// partition instead of retrying records one by one.
    pub waiting_on: Option<&'static str>,
}

impl ShipmentError {
    pub fn retriable(message: impl Into<String>) -> Self {
        ShipmentError { message: message.into(), retriable: true, waiting_on: None }
    }

    pub fn permanent(message: impl Into<String>) -> Self {
        ShipmentError { message: message.into(), retriable: false, waiting_on: None }
    }

    pub fn unavailable(dependency: &'static str, message: impl Into<String>) -> Self {
        ShipmentError { message: message.into(), retriable: true, waiting_on: Some(dependency) }
    }
}

impl From<ShipmentError> for ProcessError {
    fn from(error: ShipmentError) -> Self {
        let message = format!("shipping: {}", error.message);
        match error.waiting_on {
            Some(dependency) => ProcessError::unavailable(dependency, message),
            None => ProcessError::processing(message).with_retriable(error.retriable),
        }
    }
}
