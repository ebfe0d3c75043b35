//! What an operator's action on one entry came to.

#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Reprocessed or discarded, as asked.
    Done,
    /// Reprocessed or discarded already (perhaps a moment ago, by another admin instance).
    NotPending {
        status: String,
    },
    NotFound,
}
