//! Runs: one command in a fresh hardened container of a sandbox, queued when slots are full,
//! supervised to its end by a worker of `crate::sandboxes`; read, awaited, followed, cancelled.

use std::time::Duration;

use policy::access::Action;
use policy::commands::{CommandRefusal, ImageCommands, Program, Reviewed};
use serde_json::json;
use sha2::{Digest, Sha256};

use super::page::{Page, PageAsk, Window};
use super::{Error, Result, Seen, allow, see};
use crate::audit::NewEvent;
use crate::auth::Caller;
use crate::error::ErrorCode;
use crate::sandboxes::Progress;
use crate::state::AppState;
use crate::store::sandboxes::{self as sstore, RunRow};
use crate::store::{self};
use crate::wire::sandboxes::LogVisibility;

/// The longest a client may wait for a run's end in one request.
pub const MAX_WAIT: Duration = Duration::from_secs(60);

/// Most arguments a command takes, and most bytes in all of them.
const MAX_ARGS: usize = 1024;
const MAX_ARG_BYTES: usize = 128 * 1024;

/// A run as asked for.
#[derive(Debug)]
pub struct NewRun {
    /// The command and its arguments, run without a shell.
    pub cmd: Vec<String>,
    /// Seconds before it is killed (default and maximum: the class's `max_run_secs`).
    pub timeout_secs: Option<u64>,
}

/// Records a run and hands it to a supervisor: it starts at once or waits for a slot.
pub async fn create(
    state: &AppState,
    caller: &Caller,
    sandbox: &str,
    new: NewRun,
) -> Result<RunRow> {
    let sb = {
        let mut conn = state.db.pool().acquire().await?;
        super::sandboxes::seen(&mut conn, caller, sandbox).await?
    };
    allow(caller, Action::RunCreate, sb.standing)?;
    let sb = sb.object;
    if sb.state != "ready" {
        return Err(Error::conflict(
            ErrorCode::WrongState,
            format!("the sandbox is {}", sb.state),
        ));
    }
    if new.cmd.is_empty() || new.cmd[0].is_empty() {
        return Err(Error::invalid(
            ErrorCode::BadCommand,
            "a run needs a command",
        ));
    }
    let total: usize = new.cmd.iter().map(|a| a.len() + 1).sum();
    if new.cmd.len() > MAX_ARGS || total > MAX_ARG_BYTES || new.cmd.iter().any(|a| a.contains('\0'))
    {
        return Err(Error::invalid(
            ErrorCode::BadCommand,
            "at most 1024 arguments, 128 KiB in all, no NUL bytes",
        ));
    }
    let class = state
        .sandboxes
        .class(&sb.resource_class)
        .cloned()
        .ok_or_else(|| {
            Error::internal(format!(
                "the sandbox's class {} is not configured",
                sb.resource_class
            ))
        })?;
    let mut timeout = new.timeout_secs.unwrap_or(class.max_run_secs);
    if timeout == 0 || timeout > class.max_run_secs {
        return Err(Error::invalid(
            ErrorCode::BadTimeout,
            format!(
                "the timeout must be between 1 and {} seconds for class {}",
                class.max_run_secs, sb.resource_class
            ),
        ));
    }
    // Every run re-checks the access to what the sandbox mounts, and ends before it does.
    let mounted: Vec<String> = {
        let mut conn = state.db.pool().acquire().await?;
        let mounted = sstore::datasets(&mut conn, &sb.id).await?;
        let mounted: Vec<String> = mounted.into_iter().map(|(d, _)| d).collect();
        match super::access::runnable(&mut conn, &sb.project_id, &mounted).await {
            Ok(Some(left)) => timeout = timeout.min(left),
            Ok(None) => {}
            Err(e) => {
                drop(conn);
                return Err(access_refused(state, caller, &sb.id, &new.cmd, e).await);
            }
        }
        mounted
    };
    let program = match command_allowed(state, &sb, &new.cmd).await? {
        Ok(program) => program,
        Err(refusal) => return Err(refused(state, caller, &sb.id, &new.cmd, refusal).await),
    };
    let row = RunRow {
        id: store::new_id("run"),
        sandbox_id: sb.id.clone(),
        project_id: sb.project_id.clone(),
        requester: caller.sub.to_string(),
        cmd: new.cmd,
        timeout_secs: timeout as i64,
        state: "queued".into(),
        outcome: None,
        exit_code: None,
        detail: None,
        container_id: None,
        created_at: crate::time::now(),
        started_at: None,
        finished_at: None,
        log_bytes: None,
        log_sha256: None,
        log_truncated: None,
        cancelled_by: None,
    };
    let mut tx = state.db.begin_write().await?;
    // Counted inside the write transaction, which serialises writers: the cap holds across
    // gateways sharing the database.
    let max = state.sandboxes.settings().max_queued_runs_per_project;
    let queued = sstore::queued_runs_of_project(tx.conn(), &row.project_id).await?;
    if usize::try_from(queued).unwrap_or(usize::MAX) >= max {
        return Err(Error::TooMany {
            code: ErrorCode::QueueFull,
            message: format!(
                "project {} already has {queued} runs waiting (at most {max}); wait for some to start or cancel them",
                row.project_id
            ),
        });
    }
    sstore::insert_run(tx.conn(), &row).await?;
    // This gateway supervises it, for as long as it renews the lease.
    let sbx = &state.sandboxes;
    crate::store::owners::own_new(
        tx.conn(),
        &row.id,
        sbx.instance(),
        &crate::time::in_(sbx.lease()),
    )
    .await?;
    tx.audit(NewEvent {
        actor: caller.sub.as_str(),
        action: "run.create",
        subject: &row.id,
        detail: json!({
            "sandbox": sb.id,
            "cmd": row.cmd,
            "timeout_secs": timeout,
            "image_id": sb.image_id,
            "program": program_json(&program),
            "datasets": mounted,
        }),
    })
    .await?;
    state.commit(tx).await?;
    crate::sandboxes::spawn_supervisor(state, row.clone(), false);
    Ok(row)
}

/// Asks the command rule (`policy::commands::check`) whether a run of this sandbox may start
/// `cmd`: under its project's policy, with what the operator allowed for its image (nothing, if
/// the image is no longer allowed) and the ingress applications staged in it.
async fn command_allowed(
    state: &AppState,
    sb: &sstore::SandboxRow,
    cmd: &[String],
) -> Result<std::result::Result<Program, CommandRefusal>> {
    let mut conn = state.db.pool().acquire().await?;
    let project = store::project(&mut conn, &sb.project_id)
        .await?
        .ok_or(Error::NotFound("project"))?;
    // A policy the gateway did not write is read as the strict one.
    let policy = project
        .commands
        .parse()
        .unwrap_or(policy::commands::CommandPolicy::Approved);
    let image = sstore::image(&mut conn, &sb.image_name).await?;
    let (commands, interpreters) = image
        .map(|i| (i.commands, i.interpreters))
        .unwrap_or_default();
    let staged: Vec<String> = sstore::staged(&mut conn, &sb.id)
        .await?
        .into_iter()
        .map(|(application, _, _)| application)
        .collect();
    let image = ImageCommands {
        commands: &commands,
        interpreters: &interpreters,
    };
    Ok(policy::commands::check(policy, cmd, &image, &staged))
}

/// A refused command: audited (`run.refused`), answered 403 `command_refused` with the rule
/// it broke.
async fn refused(
    state: &AppState,
    caller: &Caller,
    sandbox: &str,
    cmd: &[String],
    refusal: CommandRefusal,
) -> Error {
    let error = Error::Forbidden {
        code: ErrorCode::CommandRefused,
        message: format!("{}: {}", refusal.rule, refusal.message),
    };
    let rule = refusal.rule.as_str();
    audit_refusal(state, caller, sandbox, cmd, (rule, &refusal.message), error).await
}

/// A run refused because an access to a dataset its sandbox mounts has ended: audited
/// (`run.refused`, rule `access`), answered as `refusal` says (403 `access_expired`).
async fn access_refused(
    state: &AppState,
    caller: &Caller,
    sandbox: &str,
    cmd: &[String],
    refusal: Error,
) -> Error {
    let reason = refusal.to_string();
    audit_refusal(state, caller, sandbox, cmd, ("access", &reason), refusal).await
}

/// Audits a refused run (`run.refused`, in a write transaction of its own, as nothing else is
/// written) with the rule and the reason; the error to answer with, or the audit's own failure.
async fn audit_refusal(
    state: &AppState,
    caller: &Caller,
    sandbox: &str,
    cmd: &[String],
    (rule, reason): (&str, &str),
    error: Error,
) -> Error {
    let audited = async {
        let mut tx = state.db.begin_write().await?;
        tx.audit(NewEvent {
            actor: caller.sub.as_str(),
            action: "run.refused",
            subject: sandbox,
            detail: json!({
                "sandbox": sandbox,
                "cmd": cmd,
                "rule": rule,
                "reason": reason,
            }),
        })
        .await?;
        state.commit(tx).await?;
        Ok::<(), Error>(())
    };
    match audited.await {
        Ok(()) => error,
        Err(e) => e,
    }
}

/// Why a run may start, for its audit event.
fn program_json(program: &Program) -> serde_json::Value {
    let reviewed = |r: &Reviewed| json!({"application": r.application, "path": r.path});
    match program {
        Program::Unchecked => json!({"program": "unchecked"}),
        Program::Reviewed(r) => json!({"program": "reviewed", "reviewed": reviewed(r)}),
        Program::Command { name } => json!({"program": "command", "name": name}),
        Program::Interpreted {
            interpreter,
            scripts,
        } => json!({
            "program": "interpreted",
            "interpreter": interpreter,
            "scripts": scripts.iter().map(reviewed).collect::<Vec<_>>(),
        }),
        Program::Launched { launcher, program } => json!({
            "program": "launched",
            "launcher": launcher,
            "runs": program_json(program),
        }),
    }
}

/// The runs of a sandbox the caller may see, oldest first; a page at a time.
pub async fn of_sandbox(
    state: &AppState,
    caller: &Caller,
    sandbox: &str,
    ask: &PageAsk,
) -> Result<Page<RunRow>> {
    let window = Window::of("runs", ask)?;
    let mut conn = state.db.pool().acquire().await?;
    super::sandboxes::seen(&mut conn, caller, sandbox).await?;
    let rows = sstore::runs_page(&mut conn, sandbox, window.after.as_ref(), window.fetch()).await?;
    Ok(window.page(rows, |r| (r.created_at.clone(), r.id.clone())))
}

/// A run the caller may see (they may see its sandbox), with their standing in its project.
async fn seen(state: &AppState, caller: &Caller, id: &str) -> Result<Seen<RunRow>> {
    let mut conn = state.db.pool().acquire().await?;
    let run = sstore::run(&mut conn, id).await?;
    let standing = match &run {
        Some(r) => super::standing_in(&mut conn, &r.project_id, caller).await?,
        None => Default::default(),
    };
    see(caller, Action::SandboxRead, standing, run, "run")
}

/// One run; with a `wait`, as soon as its end is recorded or the wait (at most [`MAX_WAIT`]; a
/// longer one is refused `bad_filter`) is over.
pub async fn show(state: &AppState, caller: &Caller, id: &str, wait: Duration) -> Result<RunRow> {
    if wait > MAX_WAIT {
        return Err(Error::invalid(
            ErrorCode::BadFilter,
            format!("`wait` is at most {} seconds", MAX_WAIT.as_secs()),
        ));
    }
    let run = seen(state, caller, id).await?.object;
    if wait.is_zero() || run.state == "finished" {
        return Ok(run);
    }
    if state.sandboxes.live(&run.id).is_some() {
        state.sandboxes.wait_done(&run.id, wait).await;
    } else {
        // Supervised by another gateway on the same database: woken when it records the end.
        let mut woken = state.sandboxes.follow.follow(&run.id);
        let deadline = tokio::time::Instant::now() + wait;
        while !finished(state, &run.id).await? {
            let now = tokio::time::Instant::now();
            if now >= deadline {
                break;
            }
            let step = (deadline - now).min(state.sandboxes.follow.poll());
            let _ = tokio::time::timeout(step, woken.changed()).await;
        }
    }
    Ok(seen(state, caller, id).await?.object)
}

/// Whether the run's end is recorded (or the run is gone).
async fn finished(state: &AppState, run: &str) -> Result<bool> {
    let mut conn = state.db.pool().acquire().await?;
    Ok(sstore::run(&mut conn, run)
        .await?
        .is_none_or(|r| r.state == "finished"))
}

/// Cancels a run: a queued one ends before it starts, a running one is killed; it is recorded
/// as `cancelled`, with who asked. Asking again while it stops changes nothing.
pub async fn cancel(state: &AppState, caller: &Caller, id: &str) -> Result<RunRow> {
    let run = seen(state, caller, id).await?;
    allow(caller, Action::RunCancel, run.standing)?;
    let run = run.object;
    let mut tx = state.db.begin_write().await?;
    if sstore::request_cancel(tx.conn(), &run.id, caller.sub.as_str()).await? {
        tx.audit(NewEvent {
            actor: caller.sub.as_str(),
            action: "run.cancel",
            subject: &run.id,
            detail: json!({"sandbox": run.sandbox_id, "project": run.project_id, "state": run.state}),
        })
        .await?;
        state.commit(tx).await?;
        state.sandboxes.wake_to_cancel(&run.id);
    } else {
        drop(tx);
    }
    let mut conn = state.db.pool().acquire().await?;
    let now = sstore::run(&mut conn, &run.id)
        .await?
        .ok_or(Error::NotFound("run"))?;
    if now.state == "finished" && now.cancelled_by.is_none() {
        return Err(Error::conflict(
            ErrorCode::RunFinished,
            format!(
                "the run has already finished ({})",
                now.outcome.as_deref().unwrap_or("")
            ),
        ));
    }
    Ok(now)
}

/// A run's output (stdout and stderr), as it is or, with `follow`, as it comes until the run
/// ends; the project's analysts only, and only where the sandbox shows its output. Never held
/// in memory whole.
///
/// Every read is audited (`run.logs_read`: the byte range sent, its length and SHA-256) once
/// the stream ends, however it ends: finished, or dropped by a client that went away.
pub async fn logs(
    state: &AppState,
    caller: &Caller,
    id: &str,
    follow: bool,
) -> Result<impl futures_util::Stream<Item = std::io::Result<axum::body::Bytes>> + Send + 'static> {
    let run = seen(state, caller, id).await?;
    allow(caller, Action::RunLogs, run.standing)?;
    let run = run.object;
    let hidden = {
        let mut conn = state.db.pool().acquire().await?;
        let sb = sstore::sandbox(&mut conn, &run.sandbox_id).await?;
        match sb {
            Some(sb) if sb.logs == LogVisibility::Visible.as_str() => {
                // An access granted since, whose conditions hide output, hides it too.
                let mounted: Vec<String> = sstore::datasets(&mut conn, &sb.id)
                    .await?
                    .into_iter()
                    .map(|(d, _)| d)
                    .collect();
                super::access::output_hidden_by(&mut conn, &sb.project_id, &mounted)
                    .await?
                    .is_some()
            }
            _ => true,
        }
    };
    if hidden {
        return Err(Error::Forbidden {
            code: ErrorCode::LogsHidden,
            message: format!(
                "the output of {}'s runs is hidden: their size and SHA-256 are in the run; \
                 it leaves only through an egress request",
                run.sandbox_id
            ),
        });
    }
    let live = state.sandboxes.live(&run.id).filter(|_| follow);
    // A run another gateway supervises (or will) is followed through its notifications.
    let elsewhere = (follow && live.is_none() && run.state != "finished").then(|| Elsewhere {
        woken: state.sandboxes.follow.follow(&run.id),
        state: state.clone(),
        run: run.id.clone(),
    });
    let tail = Tail {
        file: None,
        path: state.sandboxes.log_path(&run.id),
        live,
        elsewhere,
        done: false,
        sent: Sent {
            state: state.clone(),
            reader: caller.sub.to_string(),
            run: run.id,
            follow,
            bytes: 0,
            hash: Sha256::new(),
            recorded: false,
        },
    };
    Ok(futures_util::stream::unfold(tail, Tail::next))
}

/// What a log read has sent, for the audit log: recorded at the end of the stream, or by a
/// worker when the stream is dropped before its end (its client went away).
struct Sent {
    state: AppState,
    reader: String,
    run: String,
    follow: bool,
    bytes: u64,
    hash: Sha256,
    recorded: bool,
}

impl Sent {
    /// The event, once: what was sent, its length and SHA-256.
    fn event(&mut self) -> Option<(AppState, String, String, serde_json::Value)> {
        if std::mem::replace(&mut self.recorded, true) {
            return None;
        }
        let sha256 = hex::encode(std::mem::take(&mut self.hash).finalize());
        Some((
            self.state.clone(),
            self.reader.clone(),
            self.run.clone(),
            json!({"from": 0, "to": self.bytes, "bytes": self.bytes, "sha256": sha256, "follow": self.follow}),
        ))
    }

    async fn record(&mut self) {
        if let Some((state, reader, run, detail)) = self.event() {
            write_read(state, reader, run, detail).await;
        }
    }
}

impl Drop for Sent {
    fn drop(&mut self) {
        if let Some((state, reader, run, detail)) = self.event() {
            // A drop cannot wait: a worker writes it, and a graceful stop waits for workers.
            let workers = state.workers.clone();
            workers.spawn(
                crate::workers::Name::of("log-read-audit", run.clone()),
                move |_| write_read(state, reader, run, detail),
            );
        }
    }
}

/// Writes one `run.logs_read` event; a failure is logged (the bytes are already sent).
async fn write_read(state: AppState, reader: String, run: String, detail: serde_json::Value) {
    let write = async {
        let mut tx = state.db.begin_write().await?;
        tx.audit(NewEvent {
            actor: &reader,
            action: "run.logs_read",
            subject: &run,
            detail: detail.clone(),
        })
        .await?;
        state.commit(tx).await
    };
    if let Err(e) = write.await {
        tracing::error!(run = %run, reader = %reader, %detail, error = %e, "recording a read of a run's output failed");
    }
}

/// A log file read to its end, and past it while its run lives.
struct Tail {
    file: Option<tokio::fs::File>,
    path: std::path::PathBuf,
    /// Followed while the run is live: each change of its progress wakes the follower.
    live: Option<tokio::sync::watch::Receiver<Progress>>,
    /// Followed while another gateway supervises the run, until its end is recorded.
    elsewhere: Option<Elsewhere>,
    done: bool,
    /// What was sent so far, for the audit log.
    sent: Sent,
}

impl Tail {
    /// The next chunk; at the end, the read is recorded before the response ends, so a client
    /// that has read the whole answer finds its read in the audit log.
    async fn next(mut self) -> Option<(std::io::Result<axum::body::Bytes>, Tail)> {
        let item = self.step().await;
        if item.is_none() {
            self.sent.record().await;
        }
        item.map(|chunk| (chunk, self))
    }

    async fn step(&mut self) -> Option<std::io::Result<axum::body::Bytes>> {
        use tokio::io::AsyncReadExt;
        if self.done {
            return None;
        }
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            // Seen before reading: a change after this wakes the wait below.
            let ended = match (&mut self.live, &mut self.elsewhere) {
                (Some(l), _) => l.borrow_and_update().done,
                (None, Some(e)) => {
                    e.woken.borrow_and_update();
                    false
                }
                (None, None) => true,
            };
            if self.file.is_none() {
                match tokio::fs::File::open(&self.path).await {
                    Ok(f) => self.file = Some(f),
                    Err(_) if !ended => {
                        self.next_progress().await;
                        continue;
                    }
                    Err(_) => return None,
                }
            }
            let f = self.file.as_mut().expect("opened above");
            match f.read(&mut buf).await {
                Ok(0) if !ended => self.next_progress().await,
                Ok(0) if self.live.is_some() => {
                    // The run just ended: read what was written last, then stop.
                    self.live = None;
                }
                Ok(0) => return None,
                Ok(n) => {
                    buf.truncate(n);
                    // Counted as it is handed to the response; a client that goes away after
                    // this may not have received all of it, which the record errs towards.
                    self.sent.bytes += n as u64;
                    self.sent.hash.update(&buf);
                    return Some(Ok(axum::body::Bytes::from(buf)));
                }
                Err(e) => {
                    self.done = true;
                    return Some(Err(e));
                }
            }
        }
    }

    /// Waits for the next change of a live run's progress; a run whose supervisor is gone
    /// counts as ended. For a run supervised elsewhere: once its end is recorded, what it
    /// wrote last is read and the follow ends; until then, the next notification (or poll).
    async fn next_progress(&mut self) {
        if let Some(l) = &mut self.live {
            if l.changed().await.is_err() {
                self.live = None;
            }
        } else if let Some(e) = &mut self.elsewhere {
            match finished(&e.state, &e.run).await {
                // Read to the end once more (its file is whole), then stop.
                Ok(true) | Err(_) => self.elsewhere = None,
                Ok(false) => {
                    let poll = e.state.sandboxes.follow.poll();
                    let _ = tokio::time::timeout(poll, e.woken.changed()).await;
                }
            }
        }
    }
}

/// A run followed here that another gateway supervises.
struct Elsewhere {
    woken: tokio::sync::watch::Receiver<u64>,
    state: AppState,
    run: String,
}
