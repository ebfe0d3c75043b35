//! The CQRS read side: order_view in PostgreSQL and its query API.
