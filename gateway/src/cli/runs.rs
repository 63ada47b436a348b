//! `vre run`, `vre logs` and `vre cancel`: starting, following and cancelling runs.

use std::process::ExitCode;

use serde_json::json;

use super::shared::{ClientArgs, print_as, print_json, urlencode};
use crate::error::ErrorCode;
use crate::wire::sandboxes::{NewRun, Run, RunOutcome, RunState};

pub(super) async fn run_command(
    sandbox: String,
    timeout: Option<String>,
    detach: bool,
    client: ClientArgs,
    cmd: Vec<String>,
) -> anyhow::Result<ExitCode> {
    let c = client.client()?;
    let timeout_secs = match timeout {
        Some(t) => Some(
            crate::time::parse_duration(&t)
                .map_err(anyhow::Error::msg)?
                .as_secs(),
        ),
        None => None,
    };
    let run: Run = c
        .post(
            &format!("/api/v1/sandboxes/{}/runs", urlencode(&sandbox)),
            &NewRun { cmd, timeout_secs },
        )
        .await?;
    let id = run.id.clone();
    if detach {
        print_as(&client, &run, |run| println!("{}", run.id));
        return Ok(ExitCode::SUCCESS);
    }
    follow_run(&client, &c, &id, true).await
}

/// Streams a run's output until its end is recorded, then says how it ended (unless it
/// exited by itself) and exits with its code. With `cancel_on_interrupt` (the client that
/// started the run), Ctrl-C cancels the run, which is then followed to its recorded end, and a
/// second one leaves at once (the run goes on stopping without this client); otherwise Ctrl-C
/// only stops following.
async fn follow_run(
    client: &ClientArgs,
    c: &crate::client::Client,
    id: &str,
    cancel_on_interrupt: bool,
) -> anyhow::Result<ExitCode> {
    use std::io::Write as _;
    let interrupts = cancel_on_interrupt.then(|| {
        let (client, id) = (client.clone(), id.to_owned());
        // The client's side, for this one command, aborted when it returns: not one of the
        // server's background workers.
        tokio::spawn(async move {
            if tokio::signal::ctrl_c().await.is_err() {
                return;
            }
            eprintln!("vre: cancelling run {id} (Ctrl-C again to stop waiting for it)");
            if let Err(e) = cancel_run(&client, &id).await {
                eprintln!("vre: cancelling run {id} failed: {e:#}");
            }
            let _ = tokio::signal::ctrl_c().await;
            std::process::exit(130);
        })
    });
    let _stop_listening = interrupts.map(AbortOnDrop);
    let mut out = std::io::stdout();
    let followed = c
        .stream(
            &format!("/api/v1/runs/{}/logs?follow=true", urlencode(id)),
            |chunk| {
                let _ = out.write_all(chunk);
                let _ = out.flush();
            },
        )
        .await;
    // A sandbox whose output is hidden: the run is followed to its end all the same, and its
    // output's size and digest are said instead.
    let hidden = match followed {
        Ok(()) => false,
        Err(e) if output_hidden(&e) => true,
        Err(e) => return Err(e),
    };
    // The log ends when the run's end is recorded; a run this gateway no longer supervises
    // (it restarted meanwhile) is waited for again until its end is recorded.
    let status = format!("/api/v1/runs/{}?wait=60", urlencode(id));
    let done = loop {
        let r: Run = c.get(&status).await?;
        if r.state == RunState::Finished {
            break r;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };
    if client.json {
        print_json(&done);
    }
    if hidden {
        eprintln!(
            "vre: the output of run {id} is hidden ({} bytes, sha256 {}); it leaves through an egress request",
            done.log_bytes.unwrap_or(0),
            done.log_sha256.as_deref().unwrap_or("-")
        );
    }
    if done.outcome != Some(RunOutcome::Exited) {
        eprintln!(
            "vre: run {id} ended: {}{}",
            done.outcome.map(|o| o.as_str()).unwrap_or_default(),
            done.detail
                .as_deref()
                .map(|d| format!(" ({d})"))
                .unwrap_or_default()
        );
    }
    let code = done.exit_code.unwrap_or(125);
    Ok(ExitCode::from(code.clamp(0, 255) as u8))
}

/// Whether the gateway refused to show a run's output because its sandbox hides it.
fn output_hidden(e: &anyhow::Error) -> bool {
    e.downcast_ref::<crate::client::Refused>()
        .is_some_and(|r| r.code == ErrorCode::LogsHidden.as_str())
}

/// Asks the gateway to cancel a run; the run as it is then.
async fn cancel_run(client: &ClientArgs, run: &str) -> anyhow::Result<Run> {
    client
        .client()?
        .post(
            &format!("/api/v1/runs/{}/cancel", urlencode(run)),
            &json!({}),
        )
        .await
}

/// Aborts a task when dropped.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

pub(super) async fn logs(
    run: String,
    follow: bool,
    client: ClientArgs,
) -> anyhow::Result<ExitCode> {
    let c = client.client()?;
    if follow {
        return follow_run(&client, &c, &run, false).await;
    }
    let mut out = std::io::stdout();
    c.stream(&format!("/api/v1/runs/{}/logs", urlencode(&run)), |chunk| {
        use std::io::Write as _;
        let _ = out.write_all(chunk);
    })
    .await?;
    Ok(ExitCode::SUCCESS)
}

pub(super) async fn cancel(run: String, client: ClientArgs) -> anyhow::Result<ExitCode> {
    let r = cancel_run(&client, &run).await?;
    print_as(&client, &r, |r| {
        println!("{}  {}: cancelling", r.id, r.state)
    });
    Ok(ExitCode::SUCCESS)
}
