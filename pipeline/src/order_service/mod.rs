//! The event-sourced order service: HTTP commands, event store, outbox.
