//! The hold on a sandbox and the copy of its files into quarantine, checked on the way.

use policy::egress::{FileReport, Finding, Outcome};
use serde_json::json;

use super::super::{Error, Result};
use crate::audit::NewEvent;
use crate::auth::Caller;
use crate::egress::quarantine::{self, Inspect, Payload, QuarantineError, Refused};
use crate::error::ErrorCode;
use crate::state::AppState;
use crate::store;
use crate::store::egress as estore;
use crate::store::sandboxes::{self as sstore, SandboxRow};

use super::HOLD_LEASE;

/// A file in quarantine, its checks done, not yet recorded.
pub(super) struct Held {
    pub(super) path: String,
    pub(super) size: u64,
    pub(super) sha256: String,
    pub(super) location: store::egress::Location,
    pub(super) report: FileReport,
    pub(super) exception: Option<String>,
}

/// A round's files, copied and checked.
pub(super) struct Checked {
    pub(super) sandbox: String,
    pub(super) files: Vec<Held>,
    /// The payload they are in: removed unless kept once the round is recorded.
    pub(super) payload: Payload,
    pub(super) request_findings: Vec<Finding>,
    pub(super) outcome: Outcome,
}

impl Checked {
    pub(super) fn total_bytes(&self) -> u64 {
        self.files.iter().map(|f| f.size).sum()
    }
    pub(super) fn payload(&self, sandbox: &str) -> serde_json::Value {
        json!({
            "sandbox": sandbox,
            "files": self.files.len(),
            "bytes": self.total_bytes(),
            "checks": self.outcome.as_str(),
            "rules_version": policy::egress::RULES_VERSION,
        })
    }
}

/// The disclosure checks, fed as the file is copied.
struct Checker(policy::egress::FileChecker);

impl Inspect for Checker {
    type Report = FileReport;
    fn update(&mut self, chunk: &[u8]) {
        self.0.update(chunk);
    }
    fn finish(self, _size: u64) -> FileReport {
        self.0.finish()
    }
}

/// Holds the sandbox, copies the files into quarantine with their checks, and lets go of the
/// sandbox. A file that fails with no exception, or a request that fails as a whole, refuses
/// the request (audited) and keeps nothing.
pub(super) async fn copy_out(
    state: &AppState,
    caller: &Caller,
    sb: &SandboxRow,
    paths: &[String],
    exceptions: &[(String, String)],
) -> Result<Checked> {
    let hold = Hold::take(state, caller, sb).await?;
    let spec = {
        let mut conn = state.db.pool().acquire().await?;
        crate::sandboxes::spec_of(state, &mut conn, sb).await?
    };
    let settings = &state.settings.egress;
    let thresholds = settings.checks.thresholds();
    let limits = quarantine::Limits {
        max_files: settings.max_files,
        // Past the per-file limit a file fails its check anyway; copying stops a little after,
        // so a runaway file cannot fill the disk.
        max_file_bytes: thresholds.max_file_bytes.saturating_add(1),
        max_total_bytes: thresholds.max_request_bytes.saturating_add(1),
    };
    let stream = state
        .sandboxes
        .backend
        .download_output(&spec, &hold.id, paths);
    let mtime = time::OffsetDateTime::now_utc().unix_timestamp().max(0) as u64;
    // The release is likely to be for the recipient registered now: it is prepared for it.
    let recipient = {
        let mut conn = state.db.pool().acquire().await?;
        estore::recipient(&mut conn, caller.sub.as_str()).await?
    };
    let copied = quarantine::quarantine(
        stream,
        &state.blobs,
        &limits,
        mtime,
        recipient.as_deref(),
        |path| Checker(policy::egress::FileChecker::new(path, &thresholds)),
    )
    .await;
    hold.release(state).await;
    let (copied, payload) = match copied {
        Ok(c) => c,
        Err(QuarantineError::Internal(e)) => return Err(Error::Internal(e)),
        Err(QuarantineError::Source { kind, message }) => {
            use std::io::ErrorKind as K;
            if matches!(kind, K::NotFound | K::InvalidInput) {
                let why = json!([message]);
                return Err(
                    refuse(state, caller, sb, paths, ErrorCode::BadPath, message, why).await,
                );
            }
            return Err(Error::Engine(sandbox_runner::Error::Unavailable(message)));
        }
        Err(QuarantineError::Refused(refusals)) => {
            let listed: Vec<String> = refusals.iter().map(describe).collect();
            let message = format!(
                "only regular files and folders leave: {}",
                listed.join("; ")
            );
            let code = if refusals
                .iter()
                .any(|r| matches!(r, Refused::TooMany { .. } | Refused::TooLarge { .. }))
            {
                ErrorCode::TooLarge
            } else {
                ErrorCode::OutputRefused
            };
            return Err(refuse(state, caller, sb, paths, code, message, json!(listed)).await);
        }
    };
    let mut files: Vec<Held> = copied
        .into_iter()
        .map(|q| Held {
            exception: None,
            path: q.path,
            size: q.size,
            sha256: q.sha256,
            location: q.location,
            report: q.report,
        })
        .collect();
    for (path, text) in exceptions {
        match files.iter_mut().find(|f| f.path == *path) {
            Some(f) => f.exception = Some(text.clone()),
            None => {
                return Err(Error::invalid(
                    ErrorCode::BadException,
                    format!("the exception names {path}, which is not a file of this request"),
                ));
            }
        }
    }
    let reports: Vec<FileReport> = files.iter().map(|f| f.report.clone()).collect();
    let request_findings = policy::egress::check_request(&reports, &thresholds);
    let outcome = policy::egress::overall(&reports, &request_findings);
    let blocking: Vec<String> = files
        .iter()
        .filter(|f| f.report.outcome == Outcome::Fail && f.exception.is_none())
        .map(|f| {
            let why: Vec<String> = f
                .report
                .findings
                .iter()
                .filter(|x| x.outcome == Outcome::Fail)
                .take(3)
                .map(|x| match x.location {
                    Some(l) => format!("{} (row {}, column {})", x.message, l.row, l.column),
                    None => x.message.clone(),
                })
                .collect();
            format!("{}: {}", f.path, why.join("; "))
        })
        .chain(
            request_findings
                .iter()
                .filter(|x| x.outcome == Outcome::Fail)
                .map(|x| format!("the request: {}", x.message)),
        )
        .collect();
    if !blocking.is_empty() {
        let message = format!(
            "the disclosure checks failed (add an exception to a file with --exception PATH=REASON to send it to the reviewers anyway): {}",
            blocking.join(" | ")
        );
        // Nothing is kept: the payload goes.
        drop(payload);
        return Err(refuse(
            state,
            caller,
            sb,
            paths,
            ErrorCode::DisclosureCheckFailed,
            message,
            json!(blocking),
        )
        .await);
    }
    Ok(Checked {
        sandbox: sb.id.clone(),
        files: std::mem::take(&mut files),
        payload,
        request_findings,
        outcome,
    })
}

fn describe(r: &Refused) -> String {
    match r {
        Refused::NotRegular { path, kind } => format!("{path} is a {kind}"),
        other => other.to_string(),
    }
}

/// Audits a refused request and returns the error to answer with.
async fn refuse(
    state: &AppState,
    caller: &Caller,
    sb: &SandboxRow,
    paths: &[String],
    code: ErrorCode,
    message: String,
    detail: serde_json::Value,
) -> Error {
    let audited = async {
        let mut tx = state.db.begin_write().await?;
        tx.audit(NewEvent {
            actor: caller.sub.as_str(),
            action: "egress.refused",
            subject: &sb.id,
            detail: json!({"paths": paths, "code": code.as_str(), "why": detail}),
        })
        .await?;
        state.commit(tx).await?;
        Ok::<(), Error>(())
    };
    if let Err(e) = audited.await {
        return e;
    }
    match code {
        ErrorCode::BadPath => Error::invalid(code, message),
        ErrorCode::TooLarge => Error::TooLarge(message),
        _ => Error::Refused { code, message },
    }
}

/// A hold on a sandbox while its files are copied: taken in a write transaction that sees no
/// run writing the output folder, renewed while it lasts, released at the end (and left to
/// lapse if this gateway dies).
struct Hold {
    id: String,
    renew: tokio::task::JoinHandle<()>,
    /// Set until the hold is released; a hold dropped with it set (its request cut short)
    /// releases itself in the background.
    state: Option<AppState>,
}

impl Hold {
    async fn take(state: &AppState, caller: &Caller, sb: &SandboxRow) -> Result<Hold> {
        let id = store::new_id("hold");
        let mut tx = state.db.begin_write().await?;
        let current = sstore::sandbox(tx.conn(), &sb.id)
            .await?
            .ok_or(Error::NotFound("sandbox"))?;
        if current.state != "ready" {
            return Err(Error::conflict(
                ErrorCode::WrongState,
                format!("the sandbox is {}", current.state),
            ));
        }
        let active = estore::active_runs(tx.conn(), &sb.id).await?;
        if !active.is_empty() {
            return Err(Error::conflict(
                ErrorCode::SandboxBusy,
                format!(
                    "a run is writing the output folder ({}); ask again when it has finished",
                    active.join(", ")
                ),
            ));
        }
        estore::insert_hold(
            tx.conn(),
            &id,
            &sb.id,
            "egress",
            caller.sub.as_str(),
            &crate::time::in_(HOLD_LEASE),
        )
        .await?;
        state.commit(tx).await?;
        let renew = {
            let (state, id) = (state.clone(), id.clone());
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(HOLD_LEASE / 3).await;
                    let renewed = async {
                        let mut conn = state.db.pool().acquire().await?;
                        estore::renew_hold(&mut conn, &id, &crate::time::in_(HOLD_LEASE)).await
                    };
                    if let Err(e) = renewed.await {
                        tracing::warn!(hold = %id, error = %e, "renewing a hold on a sandbox failed");
                    }
                }
            })
        };
        Ok(Hold {
            id,
            renew,
            state: Some(state.clone()),
        })
    }

    async fn release(mut self, state: &AppState) {
        self.state = None;
        self.renew.abort();
        release_hold(state, &self.id).await;
    }
}

async fn release_hold(state: &AppState, id: &str) {
    let released = async {
        let mut conn = state.db.pool().acquire().await?;
        estore::release_hold(&mut conn, id).await
    };
    if let Err(e) = released.await {
        // It lapses by itself.
        tracing::warn!(hold = %id, error = %e, "releasing a hold on a sandbox failed");
    }
}

impl Drop for Hold {
    fn drop(&mut self) {
        self.renew.abort();
        // A request cut short (its client went away): the copy stops with it, and so does
        // the hold, rather than lapsing with its lease.
        if let Some(state) = self.state.take() {
            let id = std::mem::take(&mut self.id);
            let workers = state.workers.clone();
            workers.spawn(
                crate::workers::Name::of("hold-release", id.clone()),
                |_| async move {
                    release_hold(&state, &id).await;
                },
            );
        }
    }
}

/// The caller's holds check for a sandbox about to start a run, or to be removed: the
/// purposes of its unexpired holds.
pub(crate) async fn holds_on(conn: &mut sqlx::AnyConnection, sandbox: &str) -> Result<Vec<String>> {
    Ok(estore::holds(conn, sandbox, &crate::time::now())
        .await?
        .into_iter()
        .map(|(_, purpose)| purpose)
        .collect())
}
