//! Runs owned by one gateway at a time, when several share the database. Each run records the
//! gateway that supervises it (its instance id) and a lease that gateway renews while the
//! run's supervisor lives (`renew_leases`); every change of a run's state is a compare-and-set
//! on its expected state and owner. A gateway takes over the runs whose lease lapsed (their
//! gateway was killed, or lost the database), at start and every third of the lease
//! (`take_over`): the takeover is itself a compare-and-set on the owner and lease it read, so
//! exactly one gateway wins each run. A supervisor whose lease was taken from it stands down.

use std::collections::HashSet;
use std::time::Duration;

use sandbox_runner::{Outcome, RunState};
use serde_json::json;

use crate::audit::NewEvent;
use crate::sandboxes::spawn_supervisor;
use crate::sandboxes::supervisor::{container_of, log_digest, record_finish};
use crate::state::AppState;
use crate::store::owners as ostore;
use crate::store::sandboxes::{self as sstore, Finish, RunRow};
use crate::workers::Stop;

/// How often leases are renewed and lapsed ones looked for: a third of the lease.
pub(crate) fn every(state: &AppState) -> Duration {
    state.sandboxes.lease() / 3
}

/// Renews this gateway's lease and those of the runs it supervises, until the gateway stops.
/// A run whose lease cannot be renewed because another gateway took it over is lost: its
/// supervisor stands down.
pub async fn renew_leases(state: AppState, stop: Stop) {
    loop {
        if let Err(e) = renew_once(&state).await {
            tracing::warn!(error = %e, "renewing the leases of runs failed");
        }
        tokio::select! {
            () = tokio::time::sleep(every(&state)) => {}
            () = stop.requested() => return,
        }
    }
}

async fn renew_once(state: &AppState) -> Result<(), sqlx::Error> {
    let sbx = &state.sandboxes;
    let me = sbx.instance();
    let until = crate::time::in_(sbx.lease());
    let mut conn = state.db.pool().acquire().await?;
    ostore::renew_gateway(&mut conn, me, &crate::time::now(), &until).await?;
    for run in sbx.live_runs() {
        if !ostore::renew(&mut conn, &run, me, &until).await? {
            // Finished (its supervisor is on its way out), or another gateway's now.
            if let Some(lost) = crate::lock(&sbx.lost).get(&run) {
                lost.notify_one();
            }
        }
    }
    Ok(())
}

/// Takes over, every third of the lease, the runs whose gateway's lease lapsed, and
/// supervises them from where they are.
pub async fn take_over_lapsed(state: AppState, stop: Stop) {
    loop {
        tokio::select! {
            () = tokio::time::sleep(every(&state)) => {}
            () = stop.requested() => return,
        }
        let taken = match take_over(&state, false).await {
            Ok(taken) => taken,
            Err(e) => {
                tracing::warn!(error = %format!("{e:#}"), "taking over lapsed runs failed");
                continue;
            }
        };
        for run in taken {
            if let Err(e) = resume(&state, run).await {
                tracing::warn!(error = %format!("{e:#}"), "resuming a run taken over failed");
            }
        }
    }
}

/// Takes over the unfinished runs whose lease lapsed (at start, also this instance's own: the
/// process before this one is gone), each in a write transaction; a run of another gateway's
/// with an audit event (`run.takeover`). Returns them, now this gateway's.
pub(crate) async fn take_over(state: &AppState, at_start: bool) -> anyhow::Result<Vec<RunRow>> {
    let sbx = &state.sandboxes;
    let me = sbx.instance();
    let lapsed = {
        let mut conn = state.db.pool().acquire().await?;
        ostore::lapsed(&mut conn, &crate::time::now(), me, at_start).await?
    };
    let live: HashSet<String> = sbx.live_runs().into_iter().collect();
    let mut taken = Vec::new();
    for l in lapsed {
        if live.contains(&l.run) {
            continue;
        }
        let mut tx = state.db.begin_write().await?;
        if !ostore::take_over(tx.conn(), &l, me, &crate::time::in_(sbx.lease())).await? {
            // Another gateway was first.
            continue;
        }
        let Some(run) = sstore::run(tx.conn(), &l.run).await? else {
            continue;
        };
        if l.owner.as_deref() != Some(me) {
            tracing::info!(run = %run.id, from = ?l.owner, "taking over a run whose gateway's lease lapsed");
            tx.audit(NewEvent {
                actor: "gateway",
                action: "run.takeover",
                subject: &run.id,
                detail: json!({
                    "sandbox": run.sandbox_id,
                    "from": l.owner,
                    "to": me,
                    "state": run.state,
                    "lease_expired": l.lease_expires,
                }),
            })
            .await?;
        }
        state.commit(tx).await?;
        taken.push(run);
    }
    Ok(taken)
}

/// Supervises a run this gateway has just taken (over) from where it is: a queued one waits
/// for its slot, a started one is followed again, one whose container is gone is recorded as
/// vanished.
pub(crate) async fn resume(state: &AppState, run: RunRow) -> anyhow::Result<()> {
    if run.state == "queued" {
        tracing::info!(run = %run.id, "requeueing a run that had not started");
        spawn_supervisor(state, run, false);
        return Ok(());
    }
    let container = container_of(&run);
    match state.sandboxes.backend.state(&container).await? {
        RunState::Missing => {
            tracing::warn!(run = %run.id, "a run's container vanished");
            let (log_bytes, log_sha256) = log_digest(&state.sandboxes.log_path(&run.id)).await;
            let f = Finish {
                outcome: Outcome::Vanished.as_str().into(),
                exit_code: Outcome::Vanished.exit_code(),
                detail: Some("the container was gone when a gateway took the run up again".into()),
                log_bytes,
                log_sha256,
                log_truncated: false,
                at: crate::time::now(),
            };
            record_finish(state, &run, &f).await?;
        }
        _ => {
            tracing::info!(run = %run.id, "re-attaching to a run");
            spawn_supervisor(state, run, true);
        }
    }
    Ok(())
}
