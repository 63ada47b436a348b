//! Egress: the one way out. An analyst names files under a sandbox's `/vre/output`; the gateway
//! holds the sandbox (no run writes the folder, nobody removes it), copies the files into
//! quarantine (the round's payload, `egress::payload`), hashing and checking each in one pass
//! (`policy::egress`), and
//! queues an application of kind `egress`. Reviewers outside the project read previews (each
//! read audited); a quorum approves; the release builder (`egress::builder`) packages the files
//! for the recipient the requester registered. Nothing here hands quarantined bytes back to the
//! requester.
//!
//! `copy`: the hold on the sandbox and the copy into quarantine with the checks; `review`:
//! what reviewers read (the detail, previews); `release`: the release in the quorum's
//! transaction, its download and revocation, and the recipients releases are encrypted to.

mod copy;
mod release;
mod review;

pub(crate) use copy::holds_on;
pub(crate) use release::approved;
pub use release::{Download, download, my_key, register_key, revoke};
pub use review::{Detail, Earlier, Preview, PreviewBody, detail, preview};
pub use review::{Image, image, image_media_type};

use std::time::Duration;

use policy::access::Action;
use policy::egress::Finding;
use policy::review::{Kind, State};
use serde_json::json;

use super::{Error, Result, allow, check_text};
use crate::audit::NewEvent;
use crate::auth::Caller;
use crate::db::WriteTx;
use crate::error::ErrorCode;
use crate::state::AppState;
use crate::store::egress::{self as estore, FileRow, RoundRow};
use crate::store::sandboxes as sstore;
use crate::store::{self, AppRow};
use crate::wire::egress::{MAX_EXCEPTION, MAX_OUTPUT_PATH, MAX_PATHS};

use copy::{Checked, copy_out};
use release::needs_recipient;

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
        project_id: Some(sb.project_id.clone()),
        dataset_id: None,
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

/// Records a round's files, checks and payload with their audit event and commits; the
/// payload is kept from then on.
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
            location: Some(f.location),
        });
    }
    let payload = &checked.payload;
    let stored = estore::Payload {
        name: payload.file.name.clone(),
        sealed_keys: crate::release::sealed::seal_keys(
            &state.quarantine_key,
            &payload.file.name,
            &payload.keys,
        ),
        full_chunks: payload.written.full_chunks as i64,
        seed: {
            use base64::Engine;
            let seed =
                payload
                    .keys
                    .seal_chunk(payload.written.full_chunks, false, &payload.written.held);
            base64::engine::general_purpose::STANDARD.encode(seed)
        },
        prepared: match (&payload.prepared, &payload.written.package_hash) {
            (Some((recipient, header)), Some(hash)) => {
                use base64::Engine;
                Some(estore::Prepared {
                    recipient: recipient.clone(),
                    sealed_header: crate::release::sealed::seal_bytes(
                        &state.quarantine_key,
                        &crate::egress::payload::header_context(&payload.file.name),
                        header,
                    ),
                    package_hash: base64::engine::general_purpose::STANDARD.encode(hash),
                })
            }
            _ => None,
        },
    };
    estore::insert_round(tx.conn(), &round_row).await?;
    estore::set_payload(tx.conn(), &app.id, round, &stored).await?;
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
    // The payload is kept once its round is recorded; a crash before leaves a file the next
    // start removes.
    state.commit(tx).await?;
    checked.payload.file.keep();
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
