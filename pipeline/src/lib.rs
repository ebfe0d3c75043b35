//! The order saga on the operators runtime: the event-sourced order service (command side), the
//! saga participants, the projector (read side), and the admin and metrics endpoints.

pub mod codec;
pub mod db;
pub mod order_service;
pub mod participants;
pub mod projector;
