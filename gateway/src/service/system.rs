//! The gateway's own records: its metrics and the audit log, for those who watch over it.

use policy::access::{Action, Standing};

use super::page::{Page, PageAsk, Window};
use super::{Result, allow};
use crate::audit::StoredEvent;
use crate::auth::Caller;
use crate::state::AppState;

/// The metrics in Prometheus' text format; operators, admins and auditors.
pub async fn metrics(state: &AppState, caller: &Caller) -> Result<String> {
    allow(caller, Action::MetricsRead, Standing::default())?;
    Ok(state.metrics.render())
}

/// Audit events in the order of the chain (at most 1000 a page; default 100), after a
/// sequence number (`after`, or the cursor of the page before), of one subject or all;
/// auditors and admins.
pub async fn audit_events(
    state: &AppState,
    caller: &Caller,
    after: Option<i64>,
    subject: Option<&str>,
    ask: &PageAsk,
) -> Result<Page<StoredEvent>> {
    allow(caller, Action::AuditRead, Standing::default())?;
    let window = Window::<i64>::of("audit", ask)?;
    let from = window.after.or(after).unwrap_or(0);
    let mut conn = state.db.pool().acquire().await?;
    let rows = crate::audit::events(&mut conn, from, subject, window.fetch()).await?;
    Ok(window.page(rows, |e| e.seq))
}
