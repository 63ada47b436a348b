//! Egress: the one way out. An analyst names files under a sandbox's `/vre/output`; the gateway
//! holds the sandbox (no run writes the folder, nobody removes it), copies the files into
//! quarantine in the blob store, hashing and checking each in one pass (`policy::egress`), and
//! queues an application of kind `egress`. Reviewers outside the project read previews (each
//! read audited); a quorum approves; the release builder (`egress::builder`) packages the files
//! for the recipient the requester registered. Nothing here hands quarantined bytes back to the
//! requester.

use std::time::Duration;

use policy::access::Action;
use policy::egress::{FileReport, Finding, Outcome};
use policy::review::{Kind, State};
use serde_json::json;

use super::{Error, Result, allow, check_text};
use crate::audit::NewEvent;
use crate::auth::Caller;
use crate::blobs::FinishedBlob;
use crate::db::WriteTx;
use crate::egress::quarantine::{self, Inspect, QuarantineError, Refused};
use crate::error::ErrorCode;
use crate::state::AppState;
use crate::store::egress::{self as estore, FileRow, ReleaseRow, RoundRow};
use crate::store::sandboxes::{self as sstore, SandboxRow};
use crate::store::{self, AppRow};
use crate::wire::egress::{MAX_EXCEPTION, MAX_OUTPUT_PATH, MAX_PATHS};

/// How long a hold lasts unless its holder renews it; a gateway that dies lets it lapse.
const HOLD_LEASE: Duration = Duration::from_secs(30);

/// What the analyst asks to take out.
#[derive(Debug)]
pub struct Request {
    pub sandbox: String,
    /// Relative to `/vre/output`; a folder means the files under it.
    pub paths: Vec<String>,
    pub justification: String,
    /// Why a file that fails the checks should still leave, by path.
    pub exceptions: Vec<(String, String)>,
}

/// A new round for an application sent back: new files, and the answer to the reviewers.
#[derive(Debug)]
pub struct Resubmission {
    pub paths: Vec<String>,
    pub comment: String,
    pub justification: Option<String>,
    pub exceptions: Vec<(String, String)>,
}

/// An egress application's round as recorded.
#[derive(Debug)]
pub struct Receipt {
    pub application: AppRow,
    pub round: RoundRow,
    pub files: Vec<FileRow>,
}

/// Everything reviewers read about an egress application (besides its votes).
#[derive(Debug)]
pub struct Detail {
    pub sandbox: String,
    pub rounds: Vec<RoundRow>,
    /// Every round's files.
    pub files: Vec<FileRow>,
    /// The project's earlier released and rejected egress applications, with their files.
    pub history: Vec<Earlier>,
    pub release: Option<ReleaseRow>,
}

#[derive(Debug)]
pub struct Earlier {
    pub application: String,
    pub state: String,
    pub at: String,
    pub files: Vec<FileRow>,
}

/// Asks for files to leave a sandbox: a new egress application.
pub async fn request(state: &AppState, caller: &Caller, req: Request) -> Result<Receipt> {
    check_text("the justification", &req.justification, 64 * 1024, true)?;
    let paths = clean_paths(&req.paths)?;
    let exceptions = clean_exceptions(&req.exceptions)?;
    let (sb, allowed) = {
        let mut conn = state.db.pool().acquire().await?;
        let sb = super::sandboxes::seen(&mut conn, caller, &req.sandbox).await?;
        let allowed = allow(caller, Action::AppCreate(Kind::Egress), sb.standing)?;
        (sb.object, allowed)
    };
    needs_recipient(state, caller).await?;
    let checked = copy_out(state, caller, &sb, &paths, &exceptions).await?;
    let now = crate::time::now();
    let id = store::new_id("app");
    let row = AppRow {
        id: id.clone(),
        kind: Kind::Egress,
        project_id: sb.project_id.clone(),
        requester: caller.sub.to_string(),
        title: title_of(&sb.id, &paths),
        description: req.justification,
        payload: checked.payload(&sb.id).to_string(),
        state: State::Submitted,
        round: 1,
        created_at: now.clone(),
        updated_at: now.clone(),
    };
    let mut tx = state.db.begin_write().await?;
    super::applications::submit(&mut tx, &allowed, &row).await?;
    estore::insert_request(tx.conn(), &id, &sb.id).await?;
    let receipt = record_round(state, tx, caller, row, 1, &paths, checked, &now).await?;
    Ok(receipt)
}

/// Answers a request for changes with new files: a new round, with its own files, checks and
/// votes; the earlier rounds stay in the history.
pub async fn resubmit(
    state: &AppState,
    caller: &Caller,
    id: &str,
    re: Resubmission,
) -> Result<Receipt> {
    check_text("the comment", &re.comment, 64 * 1024, true)?;
    if let Some(j) = &re.justification {
        check_text("the justification", j, 64 * 1024, true)?;
    }
    let paths = clean_paths(&re.paths)?;
    let exceptions = clean_exceptions(&re.exceptions)?;
    let (app, sb) = {
        let mut conn = state.db.pool().acquire().await?;
        let app = super::applications::seen(&mut conn, caller, id).await?;
        allow(caller, Action::AppResubmit(Kind::Egress), app.standing)?;
        if app.object.kind != Kind::Egress {
            return Err(Error::invalid(
                ErrorCode::NotEgress,
                format!("{id} is a {} application", app.object.kind),
            ));
        }
        let sandbox = estore::sandbox_of(&mut conn, id)
            .await?
            .ok_or(Error::NotFound("egress request"))?;
        let sb = sstore::sandbox(&mut conn, &sandbox)
            .await?
            .filter(|s| s.state != "removed")
            .ok_or_else(|| {
                Error::conflict(
                    ErrorCode::WrongState,
                    format!("the sandbox {sandbox} was removed; make a new request instead"),
                )
            })?;
        (app.object, sb)
    };
    if app.state != State::ChangesRequested {
        return Err(policy::review::Refusal::WrongState {
            state: app.state,
            what: "resubmitted",
        }
        .into());
    }
    let checked = copy_out(state, caller, &sb, &paths, &exceptions).await?;
    let now = crate::time::now();
    let mut tx = state.db.begin_write().await?;
    // The state machine decides, in the transaction, as for every other kind.
    let transition = super::applications::step(
        state,
        &app,
        policy::review::Event::Resubmit {
            by: caller.sub.as_str(),
        },
    )?;
    let round = app.round + 1;
    if !store::set_state(
        tx.conn(),
        id,
        transition.from,
        transition.to,
        round,
        re.justification.as_deref(),
        &now,
    )
    .await?
    {
        return Err(Error::conflict(
            ErrorCode::ConcurrentChange,
            "the application changed meanwhile; try again",
        ));
    }
    tx.audit(NewEvent {
        actor: caller.sub.as_str(),
        action: "application.resubmit",
        subject: id,
        detail: json!({
            "from": transition.from.as_str(),
            "to": transition.to.as_str(),
            "round": round,
            "comment": re.comment,
        }),
    })
    .await?;
    let row = store::application(tx.conn(), id)
        .await?
        .ok_or(Error::NotFound("application"))?;
    record_round(state, tx, caller, row, round, &paths, checked, &now).await
}

/// Records a round's files and checks with their audit event, renames the blobs into the
/// store and commits.
#[allow(clippy::too_many_arguments)]
async fn record_round(
    state: &AppState,
    mut tx: WriteTx,
    caller: &Caller,
    app: AppRow,
    round: i64,
    paths: &[String],
    checked: Checked,
    now: &str,
) -> Result<Receipt> {
    let round_row = RoundRow {
        application_id: app.id.clone(),
        round,
        paths: paths.to_vec(),
        total_bytes: checked.total_bytes() as i64,
        outcome: checked.outcome.as_str().into(),
        findings: findings_json(&checked.request_findings).to_string(),
        rules_version: policy::egress::RULES_VERSION.into(),
        requested_at: now.to_owned(),
    };
    let mut files = Vec::with_capacity(checked.files.len());
    for f in &checked.files {
        store::record_blob(tx.conn(), &f.sha256, f.size).await?;
        files.push(FileRow {
            application_id: app.id.clone(),
            round,
            path: f.path.clone(),
            size: f.size as i64,
            sha256: f.sha256.clone(),
            content_type: f.report.content_type.as_str().into(),
            outcome: f.report.outcome.as_str().into(),
            findings: findings_json(&f.report.findings).to_string(),
            exception: f.exception.clone(),
        });
    }
    estore::insert_round(tx.conn(), &round_row).await?;
    estore::insert_files(tx.conn(), &files).await?;
    tx.audit(NewEvent {
        actor: caller.sub.as_str(),
        action: "egress.request",
        subject: &app.id,
        detail: json!({
            "sandbox": checked.sandbox,
            "round": round,
            "paths": paths,
            "outcome": checked.outcome.as_str(),
            "rules_version": policy::egress::RULES_VERSION,
            "files": files.iter().map(|f| json!({
                "path": f.path, "size": f.size, "sha256": f.sha256,
                "outcome": f.outcome, "exception": f.exception.is_some(),
            })).collect::<Vec<_>>(),
        }),
    })
    .await?;
    // The blobs become visible only with their records; a crash in between leaves files the
    // next start removes.
    crate::blobs::commit_all(checked.files.into_iter().map(|f| f.blob).collect()).await?;
    state.commit(tx).await?;
    Ok(Receipt {
        application: app,
        round: round_row,
        files,
    })
}

fn findings_json(findings: &[Finding]) -> serde_json::Value {
    findings
        .iter()
        .map(|f| {
            json!({
                "rule": f.rule.code(),
                "outcome": f.outcome.as_str(),
                "message": f.message,
                "row": f.location.map(|l| l.row),
                "column": f.location.map(|l| l.column),
            })
        })
        .collect()
}

fn title_of(sandbox: &str, paths: &[String]) -> String {
    let mut t = format!("Results of {sandbox}: {}", paths[0]);
    if paths.len() > 1 {
        t.push_str(&format!(" and {} more", paths.len() - 1));
    }
    if t.len() > 200 {
        let mut end = 197;
        while !t.is_char_boundary(end) {
            end -= 1;
        }
        t.truncate(end);
        t.push('…');
    }
    t
}

/// The paths as the output folder names them; refused as a whole with every bad one named.
fn clean_paths(paths: &[String]) -> Result<Vec<String>> {
    if paths.is_empty() {
        return Err(Error::invalid(
            ErrorCode::BadPath,
            "name at least one file or folder under /vre/output",
        ));
    }
    if paths.len() > MAX_PATHS {
        return Err(Error::invalid(
            ErrorCode::BadPath,
            "a request names at most 1000 paths (name their folder instead)",
        ));
    }
    let mut out = Vec::with_capacity(paths.len());
    let mut bad = Vec::new();
    for p in paths {
        if p.len() > MAX_OUTPUT_PATH {
            bad.push(format!(
                "a path of {} bytes (at most {MAX_OUTPUT_PATH})",
                p.len()
            ));
            continue;
        }
        match sandbox_runner::output_path(p) {
            Ok(p) => out.push(p),
            Err(e) => bad.push(format!("{p:?}: {e}")),
        }
    }
    if !bad.is_empty() {
        return Err(Error::invalid(ErrorCode::BadPath, bad.join("; ")));
    }
    out.sort();
    out.dedup();
    Ok(out)
}

fn clean_exceptions(ex: &[(String, String)]) -> Result<Vec<(String, String)>> {
    if ex.len() > MAX_PATHS {
        return Err(Error::invalid(
            ErrorCode::BadException,
            format!("at most {MAX_PATHS} exceptions (one per file)"),
        ));
    }
    let mut out: Vec<(String, String)> = Vec::with_capacity(ex.len());
    for (path, text) in ex {
        if path.len() > MAX_OUTPUT_PATH {
            return Err(Error::invalid(
                ErrorCode::BadException,
                format!(
                    "an exception names a path of {} bytes (at most {MAX_OUTPUT_PATH})",
                    path.len()
                ),
            ));
        }
        check_text("an exception", text, MAX_EXCEPTION, true).map_err(|_| {
            Error::invalid(
                ErrorCode::BadException,
                format!("the exception for {path} needs a reason of 1 to 16384 bytes"),
            )
        })?;
        let p = sandbox_runner::output_path(path)
            .map_err(|e| Error::invalid(ErrorCode::BadException, format!("{path}: {e}")))?;
        if out.iter().any(|(q, _)| *q == p) {
            return Err(Error::invalid(
                ErrorCode::BadException,
                format!("two exceptions for {p}"),
            ));
        }
        out.push((p, text.clone()));
    }
    Ok(out)
}

/// A file in quarantine, its checks done, not yet recorded.
struct Held {
    path: String,
    size: u64,
    sha256: String,
    blob: FinishedBlob,
    report: FileReport,
    exception: Option<String>,
}

/// A round's files, copied and checked.
struct Checked {
    sandbox: String,
    files: Vec<Held>,
    request_findings: Vec<Finding>,
    outcome: Outcome,
}

impl Checked {
    fn total_bytes(&self) -> u64 {
        self.files.iter().map(|f| f.size).sum()
    }
    fn payload(&self, sandbox: &str) -> serde_json::Value {
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
    fn finish(self, _size: u64, _sha256: &str) -> FileReport {
        self.0.finish()
    }
}

/// Holds the sandbox, copies the files into quarantine with their checks, and lets go of the
/// sandbox. A file that fails with no exception, or a request that fails as a whole, refuses
/// the request (audited) and keeps nothing.
async fn copy_out(
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
    let copied = quarantine::quarantine(stream, &state.blobs, &limits, |path| {
        Checker(policy::egress::FileChecker::new(path, &thresholds))
    })
    .await;
    hold.release(state).await;
    let copied = match copied {
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
            blob: q.blob,
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
        // Nothing is kept: the temporary blobs go with `files`.
        drop(files);
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

/// An egress application's rounds, files, the project's history and its release.
pub async fn detail(state: &AppState, caller: &Caller, id: &str) -> Result<Detail> {
    let mut conn = state.db.pool().acquire().await?;
    let app = super::applications::seen(&mut conn, caller, id).await?;
    // Stewards see every application, not what other projects take out.
    let app = super::see(
        caller,
        Action::EgressRead,
        app.standing,
        Some(app.object),
        "application",
    )?
    .object;
    let sandbox = estore::sandbox_of(&mut conn, id)
        .await?
        .ok_or(Error::NotFound("egress request"))?;
    let history = estore::history(&mut conn, &app.project_id, id)
        .await?
        .into_iter()
        .map(|(application, state, at, files)| Earlier {
            application,
            state,
            at,
            files,
        })
        .collect();
    Ok(Detail {
        sandbox,
        rounds: estore::rounds(&mut conn, id).await?,
        files: estore::files(&mut conn, id, None).await?,
        history,
        release: estore::release(&mut conn, id).await?,
    })
}

/// What a reviewer sees of one quarantined file.
#[derive(Debug)]
pub enum PreviewBody {
    Table(policy::egress::preview::TablePreview),
    Text(String),
    Image(policy::egress::preview::ImageInfo),
    /// No preview for this type; the reason.
    None(String),
}

#[derive(Debug)]
pub struct Preview {
    pub file: FileRow,
    pub body: PreviewBody,
}

/// How much of a file a preview reads.
const PREVIEW_BYTES: usize = 256 * 1024;

/// A preview of one quarantined file, for reviewers from outside the project; every preview
/// is an audited read.
pub async fn preview(
    state: &AppState,
    caller: &Caller,
    id: &str,
    path: &str,
    round: Option<i64>,
) -> Result<Preview> {
    // Checked and read on a connection of the pool, as ingress reads are: only the audit event
    // takes the write lock every writer waits for, not a refused caller nor the file's read.
    let (round, file) = {
        let mut conn = state.db.pool().acquire().await?;
        let app = super::applications::seen(&mut conn, caller, id).await?;
        allow(caller, Action::QuarantineRead, app.standing)?;
        let members = store::members(&mut conn, &app.object.project_id).await?;
        let conflicted: Vec<&str> = members.iter().map(|m| m.subject.as_str()).collect();
        if let Err(refusal) = policy::review::may_give_opinion(
            &app.object.requester,
            &conflicted,
            caller.sub.as_str(),
        ) {
            return Err(Error::Forbidden {
                code: ErrorCode::SeparationOfDuties,
                message: match refusal {
                    policy::review::Refusal::OwnOpinion => {
                        "quarantined files are read by reviewers, never by their requester".into()
                    }
                    _ => "quarantined files are read by reviewers from outside the project".into(),
                },
            });
        }
        let round = round.unwrap_or(app.object.round);
        let file = estore::files(&mut conn, id, Some(round))
            .await?
            .into_iter()
            .find(|f| f.path == path)
            .ok_or(Error::NotFound("file"))?;
        (round, file)
    };
    let blob = state.blobs.path_of(&file.sha256)?;
    let prefix = tokio::task::spawn_blocking(move || -> std::io::Result<Vec<u8>> {
        use std::io::Read;
        let mut buf = Vec::with_capacity(PREVIEW_BYTES);
        std::fs::File::open(blob)?
            .take(PREVIEW_BYTES as u64)
            .read_to_end(&mut buf)?;
        Ok(buf)
    })
    .await
    .map_err(|e| Error::internal(format!("reading a quarantined file: {e}")))??;
    let findings = stored_findings(&file.findings);
    use policy::egress::ContentType as C;
    use policy::egress::preview as p;
    let content_type: C = file.content_type.parse().unwrap_or(C::Binary);
    let body = match content_type {
        C::Csv => PreviewBody::Table(p::table_preview(&prefix, b',', 50, 30, &findings)),
        C::Tsv => PreviewBody::Table(p::table_preview(&prefix, b'\t', 50, 30, &findings)),
        C::Text | C::Json | C::Vcf | C::Fastq | C::PlinkBim | C::PlinkFam => {
            PreviewBody::Text(p::text_preview(&prefix, 200, 64 * 1024))
        }
        C::Png | C::Jpeg | C::Pdf => match p::image_info(&prefix) {
            Some(info) => PreviewBody::Image(info),
            None => PreviewBody::None(format!("no preview of this {}", file.content_type)),
        },
        _ => PreviewBody::None(format!("no preview of {} content", file.content_type)),
    };
    let mut tx = state.db.begin_write().await?;
    tx.audit(NewEvent {
        actor: caller.sub.as_str(),
        action: "content.read",
        subject: id,
        detail: json!({"egress_file": file.path, "round": round, "sha256": file.sha256}),
    })
    .await?;
    state.commit(tx).await?;
    Ok(Preview { file, body })
}

/// The findings of a stored file, back as `policy` values (for marking cells).
fn stored_findings(text: &str) -> Vec<Finding> {
    let values: Vec<serde_json::Value> = serde_json::from_str(text).unwrap_or_default();
    values
        .iter()
        .filter_map(|v| {
            let outcome: Outcome = v.get("outcome")?.as_str()?.parse().ok()?;
            let location = match (v.get("row")?.as_u64(), v.get("column")?.as_u64()) {
                (Some(row), Some(column)) => Some(policy::egress::Location { row, column }),
                _ => None,
            };
            Some(Finding {
                rule: v.get("rule")?.as_str()?.parse().ok()?,
                outcome,
                message: v.get("message")?.as_str()?.to_owned(),
                location,
            })
        })
        .collect()
}

/// In the transaction that records an egress application's quorum: its release, pending, to
/// the recipient the requester has registered now.
pub(crate) async fn approved(tx: &mut WriteTx, app: &AppRow, now: &str) -> Result<()> {
    let recipient = estore::recipient(tx.conn(), &app.requester)
        .await?
        .ok_or_else(|| {
            Error::conflict(
                ErrorCode::NoRecipient,
                format!("{} has no registered age recipient", app.requester),
            )
        })?;
    estore::insert_release(
        tx.conn(),
        &app.id,
        app.round,
        &app.requester,
        &recipient,
        now,
    )
    .await?;
    tx.audit(NewEvent {
        actor: "gateway",
        action: "release.queued",
        subject: &app.id,
        detail: json!({"round": app.round, "recipient": recipient}),
    })
    .await?;
    Ok(())
}

/// A built release, opened for its requester; the download is counted and audited.
#[derive(Debug)]
pub struct Download {
    pub release: ReleaseRow,
    pub file: tokio::fs::File,
}

pub async fn download(state: &AppState, caller: &Caller, id: &str) -> Result<Download> {
    // A caller refused here never waits for, nor holds, the write lock; asked again inside.
    {
        let mut conn = state.db.pool().acquire().await?;
        let app = super::applications::seen(&mut conn, caller, id).await?;
        allow(caller, Action::ReleaseDownload, app.standing)?;
    }
    let mut tx = state.db.begin_write().await?;
    let app = super::applications::seen(tx.conn(), caller, id).await?;
    allow(caller, Action::ReleaseDownload, app.standing)?;
    let release = estore::release(tx.conn(), id)
        .await?
        .ok_or(Error::NotFound("release"))?;
    let sha = match release.state.as_str() {
        "built" => release.package_sha256.clone().unwrap_or_default(),
        "pending" => {
            return Err(Error::conflict(
                ErrorCode::ReleaseNotReady,
                "the release is being built; try again shortly",
            ));
        }
        "revoked" => {
            return Err(Error::conflict(
                ErrorCode::ReleaseRevoked,
                format!(
                    "the release was revoked by {}",
                    release.revoked_by.as_deref().unwrap_or("an operator")
                ),
            ));
        }
        _ => {
            return Err(Error::conflict(
                ErrorCode::ReleaseRefused,
                format!(
                    "the release could not be built: {}",
                    release.detail.as_deref().unwrap_or("see the audit log")
                ),
            ));
        }
    };
    let now = crate::time::now();
    if release
        .expires_at
        .as_deref()
        .is_some_and(|e| e <= now.as_str())
    {
        return Err(Error::conflict(
            ErrorCode::ReleaseExpired,
            format!(
                "the release expired at {}",
                release.expires_at.as_deref().unwrap_or_default()
            ),
        ));
    }
    let file = state.blobs.open(&sha).await?;
    let downloads = estore::count_download(tx.conn(), id).await?;
    tx.audit(NewEvent {
        actor: caller.sub.as_str(),
        action: "release.download",
        subject: id,
        detail: json!({"package_sha256": sha, "downloads": downloads}),
    })
    .await?;
    state.commit(tx).await?;
    Ok(Download {
        release: ReleaseRow {
            downloads,
            ..release
        },
        file,
    })
}

/// Revokes a release: it can no longer be downloaded.
pub async fn revoke(
    state: &AppState,
    caller: &Caller,
    id: &str,
    reason: &str,
) -> Result<ReleaseRow> {
    check_text("the reason", reason, 16 * 1024, true)?;
    let mut tx = state.db.begin_write().await?;
    let app = super::applications::seen(tx.conn(), caller, id).await;
    // Operators do not see applications; the release is what they act on.
    let standing = app.map(|a| a.standing).unwrap_or_default();
    allow(caller, Action::ReleaseRevoke, standing)?;
    let now = crate::time::now();
    if !estore::revoke(tx.conn(), id, caller.sub.as_str(), &now, reason).await? {
        return Err(match estore::release(tx.conn(), id).await? {
            None => Error::NotFound("release"),
            Some(_) => Error::conflict(ErrorCode::ReleaseRevoked, "the release is already revoked"),
        });
    }
    tx.audit(NewEvent {
        actor: caller.sub.as_str(),
        action: "release.revoke",
        subject: id,
        detail: json!({"reason": reason}),
    })
    .await?;
    let row = estore::release(tx.conn(), id)
        .await?
        .ok_or(Error::NotFound("release"))?;
    state.commit(tx).await?;
    Ok(row)
}

/// Registers the caller's age recipient (`age1…`): releases approved from now on are
/// encrypted to it. Returns it, normalised, and the one it replaced.
pub async fn register_key(
    state: &AppState,
    caller: &Caller,
    recipient: &str,
) -> Result<(String, Option<String>)> {
    allow(caller, Action::KeyRegister, Default::default())?;
    let recipient = crate::release::parse_recipient(recipient)
        .map_err(|why| Error::invalid(ErrorCode::BadRecipient, why))?;
    let mut tx = state.db.begin_write().await?;
    let replaced = estore::set_recipient(
        tx.conn(),
        caller.sub.as_str(),
        &recipient,
        &crate::time::now(),
    )
    .await?
    // Registering the same recipient again (`vre keys init` run twice) replaces nothing.
    .filter(|old| *old != recipient);
    tx.audit(NewEvent {
        actor: caller.sub.as_str(),
        action: "key.register",
        subject: caller.sub.as_str(),
        detail: json!({"recipient": recipient, "replaced": replaced}),
    })
    .await?;
    state.commit(tx).await?;
    Ok((recipient, replaced))
}

/// The caller's registered recipient.
pub async fn my_key(state: &AppState, caller: &Caller) -> Result<Option<String>> {
    allow(caller, Action::KeyRegister, Default::default())?;
    let mut conn = state.db.pool().acquire().await?;
    Ok(estore::recipient(&mut conn, caller.sub.as_str()).await?)
}

/// Needed before a request: a release is encrypted to the requester's registered recipient.
async fn needs_recipient(state: &AppState, caller: &Caller) -> Result<()> {
    let mut conn = state.db.pool().acquire().await?;
    if estore::recipient(&mut conn, caller.sub.as_str())
        .await?
        .is_none()
    {
        return Err(Error::conflict(
            ErrorCode::NoRecipient,
            "register the age recipient releases are encrypted to first (`vre keys init`)",
        ));
    }
    Ok(())
}
