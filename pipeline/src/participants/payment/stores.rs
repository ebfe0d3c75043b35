//! The names of the participant's state stores, which its topology builds and its processors
//! open: here, so that both import them and neither imports the other.

/// `OrderPayment`s by order id.
pub const ORDERS_STORE: &str = "orders";

/// `CustomerBalance`s by customer id.
pub const BALANCES_STORE: &str = "balances";

/// `AppliedRequest`s by `<order>/<command>`, beside the balances of the same customers.
pub const APPLIED_STORE: &str = "applied-requests";
