//! The gateway's own records: its metrics and the audit log, for those who watch over it.

use policy::access::{Action, Standing};

use super::{Result, allow};
use crate::audit::StoredEvent;
use crate::auth::Caller;
use crate::state::AppState;

/// The metrics in Prometheus' text format; operators, admins and auditors.
pub async fn metrics(state: &AppState, caller: &Caller) -> Result<String> {
    allow(caller, Action::MetricsRead, Standing::default())?;
    Ok(state.metrics.render())
}

/// Audit events after a sequence number, oldest first (at most 1000; default 100), of one
/// subject or all; auditors and admins.
pub async fn audit_events(
    state: &AppState,
    caller: &Caller,
    after: Option<i64>,
    subject: Option<&str>,
    limit: Option<i64>,
) -> Result<Vec<StoredEvent>> {
    allow(caller, Action::AuditRead, Standing::default())?;
    let limit = limit.unwrap_or(100).clamp(1, 1000);
    let mut conn = state.db.pool().acquire().await?;
    Ok(crate::audit::events(&mut conn, after.unwrap_or(0), subject, limit).await?)
}
