//! The gateway's own records: its metrics and the audit log, for those who watch over it.

use std::sync::Arc;
use std::time::Instant;

use policy::access::{Action, Standing};

use policy::dmp::Date;

use super::page::{Page, PageAsk, Window};
use super::{Error, Result, allow};
use crate::audit::{EventFilter, Report, StoredEvent};
use crate::auth::Caller;
use crate::error::ErrorCode;
use crate::state::AppState;

/// The metrics in Prometheus' text format; operators, admins and auditors.
pub async fn metrics(state: &AppState, caller: &Caller) -> Result<String> {
    allow(caller, Action::MetricsRead, Standing::default())?;
    Ok(state.metrics.render())
}

/// Audit events in the order of the chain (at most 1000 a page; default 100), after a
/// sequence number (`after`, or the cursor of the page before), narrowed by `filter` (a
/// subject, an actor, an action, a range of days); auditors and admins.
pub async fn audit_events(
    state: &AppState,
    caller: &Caller,
    after: Option<i64>,
    filter: &EventFilter,
    ask: &PageAsk,
) -> Result<Page<StoredEvent>> {
    allow(caller, Action::AuditRead, Standing::default())?;
    let window = Window::<i64>::of("audit", ask)?;
    check_filter(filter)?;
    let from = window.after.or(after).unwrap_or(0);
    let mut conn = state.db.pool().acquire().await?;
    let rows = crate::audit::search(&mut conn, from, filter, window.fetch()).await?;
    Ok(window.page(rows, |e| e.seq))
}

/// A filter's days are dates, the first not after the last; its texts are short.
fn check_filter(f: &EventFilter) -> Result<()> {
    let bad = |m: String| Error::invalid(ErrorCode::BadFilter, m);
    for (name, day) in [("since", &f.since), ("until", &f.until)] {
        if let Some(d) = day
            && Date::parse(d).is_none()
        {
            return Err(bad(format!(
                "`{name}` must be a date, YYYY-MM-DD, not `{d}`"
            )));
        }
    }
    if let (Some(a), Some(b)) = (&f.since, &f.until)
        && a > b
    {
        return Err(bad(format!("`since` ({a}) is after `until` ({b})")));
    }
    for (name, v) in [
        ("subject", &f.subject),
        ("actor", &f.actor),
        ("action", &f.action),
    ] {
        if v.as_ref().is_some_and(|v| v.chars().count() > 200) {
            return Err(bad(format!("`{name}` is longer than 200 characters")));
        }
    }
    Ok(())
}

/// The audit log's checks, shared by everyone who asks: the last one's result, and one check
/// running at a time however many ask at once. A check reads the whole chain (seconds at a
/// million events), so a page that shows the status does not run one at every visit.
#[derive(Default)]
pub struct AuditChecks {
    last: tokio::sync::Mutex<Option<Arc<AuditCheck>>>,
}

impl AuditChecks {
    /// Holds every check back until the guard is dropped: whoever asks meanwhile waits, then
    /// shares one check begun after they asked. Lines callers up in tests of the sharing.
    #[doc(hidden)]
    pub async fn hold(&self) -> impl Drop + '_ {
        self.last.lock().await
    }
}

/// One check of the audit log and when it ran.
#[derive(Debug)]
pub struct AuditCheck {
    pub report: Report,
    /// When it began (RFC 3339, UTC).
    pub checked_at: String,
    began: Instant,
}

/// The audit log checked now as `vre audit verify` checks it (the chain, its head and the
/// signed checkpoints), up to the head as it stands when asked, while the gateway goes on
/// writing; auditors and admins. Callers that ask while a check runs wait for it to end, then
/// share the next one: a check that began after they asked.
pub async fn audit_verify(state: &AppState, caller: &Caller) -> Result<Arc<AuditCheck>> {
    allow(caller, Action::AuditRead, Standing::default())?;
    let asked = Instant::now();
    let mut last = state.audit_checks.last.lock().await;
    if let Some(done) = last.as_ref().filter(|c| c.began >= asked) {
        return Ok(done.clone());
    }
    let began = Instant::now();
    let checked_at = crate::time::now();
    let head = {
        let mut conn = state.db.pool().acquire().await?;
        crate::audit::head(&mut conn).await?
    };
    let public = crate::keys::PublicKey::load(&state.data.audit_public_key())
        .map_err(|e| Error::internal(format!("the audit key: {e:#}")))?;
    let report = crate::audit::verify_through(
        &state.db,
        &state.settings.checkpoint_dir(),
        &public,
        Some(&head),
    )
    .await
    .map_err(|e| Error::internal(format!("verifying the audit log: {e:#}")))?;
    let done = Arc::new(AuditCheck {
        report,
        checked_at,
        began,
    });
    *last = Some(done.clone());
    Ok(done)
}

/// The last check of the audit log, whoever asked for it; the first is run when none has
/// been. Auditors and admins.
pub async fn audit_last_check(state: &AppState, caller: &Caller) -> Result<Arc<AuditCheck>> {
    allow(caller, Action::AuditRead, Standing::default())?;
    if let Some(done) = state.audit_checks.last.lock().await.clone() {
        return Ok(done);
    }
    audit_verify(state, caller).await
}
