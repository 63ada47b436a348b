//! Recovery at start: the engine's state and the records brought together again after the
//! gateway stopped, cleanly or not.

use std::time::Duration;

use crate::state::AppState;
use crate::store::sandboxes as sstore;
use crate::workers::Stop;

/// Brings the engine's state and the records together after a start: waits for the engine,
/// then takes up this instance's unfinished runs and those whose gateway's lease lapsed
/// (`owners`): re-attaches to live runs, records ended and vanished ones, requeues runs that
/// never started, and removes containers and volumes the gateway no longer knows. Then, until
/// the gateway stops, takes over the runs of gateways that die. A stop cuts it short: what it
/// has not done is done at the next start.
pub async fn recover(state: AppState, stop: Stop) {
    tokio::select! {
        () = recover_when_the_engine_answers(&state) => {}
        () = stop.requested() => return,
    }
    super::owners::take_over_lapsed(state, stop).await;
}

async fn recover_when_the_engine_answers(state: &AppState) {
    let backend = state.sandboxes.backend.clone();
    let mut wait = Duration::from_millis(500);
    loop {
        match backend.info().await {
            Ok(_) => break,
            Err(e) => {
                tracing::warn!(error = %e, "the container engine is not answering; sandbox routes answer 503 until it does");
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(Duration::from_secs(30));
            }
        }
    }
    if let Err(e) = recover_once(state).await {
        tracing::error!(error = %format!("{e:#}"), "recovering sandboxes failed");
    }
}

async fn recover_once(state: &AppState) -> anyhow::Result<()> {
    let backend = state.sandboxes.backend.clone();
    // Volumes newer than this may belong to a sandbox being created right now, whose record
    // is not committed yet: they are left alone.
    let cutoff = time::OffsetDateTime::now_utc() - Duration::from_secs(60);
    // This instance's runs (the process before this one is gone) and those whose gateway's
    // lease lapsed: this gateway's now.
    let runs = super::owners::take_over(state, true).await?;
    let sandboxes = {
        let mut conn = state.db.pool().acquire().await?;
        sstore::all_sandbox_ids(&mut conn).await?
    };
    let mut keep_runs = std::collections::HashSet::new();
    for run in runs {
        keep_runs.insert(run.id.clone());
        super::owners::resume(state, run).await?;
    }
    let live_sandboxes: std::collections::HashSet<String> = sandboxes
        .into_iter()
        .filter(|(_, s)| s != "removed")
        .map(|(id, _)| id)
        .collect();
    for c in backend.list_containers().await? {
        let orphan = match c.labels.get(sandbox_runner::LABEL_RUN) {
            Some(r) if keep_runs.contains(r) => false,
            // A run asked for since the list above was read is not an orphan either.
            Some(r) => {
                let mut conn = state.db.pool().acquire().await?;
                sstore::run(&mut conn, r)
                    .await?
                    .is_none_or(|row| row.state == "finished")
            }
            // Started ahead by this process for a sandbox's next run.
            None if backend.holds(&c) => false,
            // Copying files out for an egress request that holds its sandbox still.
            None if copying_out(state, &c).await? => false,
            // Helpers are short-lived, and containers started ahead by an earlier process
            // are not wanted: one left over was interrupted.
            None => true,
        };
        if orphan {
            tracing::info!(container = %c.name, "removing an orphaned container");
            backend.remove_container(&c.name).await?;
        }
    }
    for v in backend.list_volumes().await? {
        // The launcher's volume belongs to the instance, not to a sandbox.
        if v.labels.get(sandbox_runner::LABEL_ROLE).map(String::as_str) == Some("launcher") {
            continue;
        }
        let sb = v
            .labels
            .get(sandbox_runner::LABEL_SANDBOX)
            .cloned()
            .unwrap_or_default();
        let recent = v
            .created
            .as_deref()
            .and_then(|c| {
                time::OffsetDateTime::parse(c, &time::format_description::well_known::Rfc3339).ok()
            })
            .is_none_or(|c| c > cutoff);
        if !live_sandboxes.contains(&sb) && !recent {
            tracing::info!(volume = %v.name, "removing an orphaned volume");
            let _ = backend.remove_sandbox(&sb).await;
        }
    }
    Ok(())
}

/// Whether a container is the helper of an egress request that still holds its sandbox
/// (helpers are named `vre-egress-<sandbox>-<hold>`).
async fn copying_out(state: &AppState, c: &sandbox_runner::Managed) -> anyhow::Result<bool> {
    let Some(sandbox) = c.labels.get(sandbox_runner::LABEL_SANDBOX) else {
        return Ok(false);
    };
    let prefix = format!("vre-egress-{sandbox}-");
    let Some(hold) = c.names.iter().find_map(|n| n.strip_prefix(&prefix)) else {
        return Ok(false);
    };
    let mut conn = state.db.pool().acquire().await?;
    let holds = crate::store::egress::holds(&mut conn, sandbox, &crate::time::now()).await?;
    Ok(holds.iter().any(|(id, _)| id == hold))
}
