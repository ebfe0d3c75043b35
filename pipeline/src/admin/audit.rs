//! One structured log line per operator action, under the `audit` target: who, what, on which
//! ids, and how it ended. Nothing secret goes in (the token never reaches this module).

/// An operator's call, as the audit trail keeps it.
pub struct AdminAction<'a> {
    /// The operator named in the request, or "unknown".
    pub operator: &'a str,
    /// What was asked, e.g. `dlq.reprocess` or `POST /admin/dlq` for a refused call.
    pub action: &'a str,
    /// The entries or orders acted on, comma-separated; empty when none.
    pub ids: &'a str,
    /// e.g. `reprocessed`, `skipped`, `not_found`, `unauthorized`.
    pub outcome: &'a str,
}

impl AdminAction<'_> {
    pub fn emit(self) {
        tracing::info!(target: "audit", operator = self.operator, action = self.action, ids = self.ids, outcome = self.outcome, "admin action");
    }
}

/// `1,2,3`: the ids field of an audit line.
pub fn ids_field(ids: &[i64]) -> String {
    ids.iter().map(i64::to_string).collect::<Vec<_>>().join(",")
}
