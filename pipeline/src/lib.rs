//! The order saga on the operators runtime: the event-sourced order service (command side), the
//! saga participants, the projector (read side), and the admin and metrics endpoints.

pub mod admin;
pub mod components;
pub mod db;
pub mod demo;
pub mod dlq;
pub mod error_body;
pub mod event_serde;
pub mod logging;
mod offsets;
pub mod openapi;
pub mod order_service;
pub mod otlp;
pub mod participants;
pub mod path_text;
pub mod projector;
pub mod schema_commands;
pub mod settings;
pub mod setup;
pub mod text_input;
