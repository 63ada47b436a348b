//! A run's output as one stream that outlives the engine's restarts.
//!
//! The output first comes from the attach made before the start (straight from the container's
//! pipes). When that stream ends, the run has either ended or lost the engine: an engine that
//! restarts under live restore keeps the container running and its output in its own log, but
//! every attachment breaks. So at the end of a stream the container's state decides: ended, the
//! output is complete; still running, the engine's log is followed from its start, past what
//! was already delivered, counted per stream (stdout and stderr each keep their order in both
//! sources, though not their interleaving). While the engine is away, its state is asked again
//! with a growing pause.

use std::sync::Arc;
use std::time::Duration;

use bollard::Docker;
use bollard::container::LogOutput;
use bollard::query_parameters::LogsOptionsBuilder;
use futures_util::StreamExt;
use futures_util::stream::BoxStream;

use crate::exits::Exits;
use crate::{Error, Result, RunState};

/// Output frames as the engine sends them.
pub(crate) type Frames = BoxStream<'static, std::result::Result<LogOutput, bollard::errors::Error>>;

/// How long the end of an output stream may come before the container's `die` event: the
/// process closes its pipes just before it exits.
const DIE_AFTER_EOF: Duration = Duration::from_millis(200);

pub(crate) struct Output {
    source: Option<Frames>,
    /// Bytes delivered, [stdout, stderr].
    seen: [u64; 2],
    /// Bytes of the current source still to pass over, [stdout, stderr].
    skip: [u64; 2],
    docker: Docker,
    container: String,
    exits: Arc<Exits>,
    call_timeout: Duration,
}

impl Output {
    /// The output from `attached` when there is one, else from the engine's log.
    pub(crate) fn stream(
        attached: Option<Frames>,
        docker: Docker,
        container: String,
        exits: Arc<Exits>,
        call_timeout: Duration,
    ) -> BoxStream<'static, Result<Vec<u8>>> {
        let mut out = Output {
            source: attached,
            seen: [0; 2],
            skip: [0; 2],
            docker,
            container,
            exits,
            call_timeout,
        };
        if out.source.is_none() {
            out.source = Some(out.engine_log());
        }
        futures_util::stream::unfold(out, |mut out| async move {
            out.next().await.map(|bytes| (Ok(bytes), out))
        })
        .boxed()
    }

    fn engine_log(&self) -> Frames {
        let opts = LogsOptionsBuilder::default()
            .follow(true)
            .stdout(true)
            .stderr(true)
            .build();
        self.docker.logs(&self.container, Some(opts)).boxed()
    }

    async fn next(&mut self) -> Option<Vec<u8>> {
        loop {
            let source = self.source.as_mut()?;
            match source.next().await {
                Some(Ok(frame)) => {
                    let k = usize::from(matches!(frame, LogOutput::StdErr { .. }));
                    let bytes = frame.into_bytes();
                    let pass = self.skip[k].min(bytes.len() as u64);
                    self.skip[k] -= pass;
                    let rest = &bytes[pass as usize..];
                    if rest.is_empty() {
                        continue;
                    }
                    self.seen[k] += rest.len() as u64;
                    return Some(rest.to_vec());
                }
                Some(Err(_)) | None => {
                    if ended(
                        &self.docker,
                        &self.container,
                        &self.exits,
                        self.call_timeout,
                    )
                    .await
                    {
                        self.source = None;
                        return None;
                    }
                    tracing::info!(container = %self.container, "the run's output stream broke while it runs; following the engine's log");
                    self.skip = self.seen;
                    self.source = Some(self.engine_log());
                }
            }
        }
    }
}

/// Whether the container has ended (or is gone), asking until the engine answers.
async fn ended(docker: &Docker, container: &str, exits: &Exits, call_timeout: Duration) -> bool {
    let mut end = exits.watch(container);
    if tokio::time::timeout(DIE_AFTER_EOF, end.wait_for(Option::is_some))
        .await
        .is_ok()
    {
        return true;
    }
    let mut pause = Duration::from_millis(100);
    loop {
        match inspect(docker, container, call_timeout).await {
            Ok(RunState::Running | RunState::Created) => return false,
            Ok(RunState::Exited { .. } | RunState::Missing) => return true,
            Err(Error::Unavailable(_) | Error::Timeout(_)) => {
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_secs(5));
            }
            Err(_) => return true,
        }
    }
}

/// A container's state as the engine reports it.
pub(crate) async fn inspect(
    docker: &Docker,
    container: &str,
    call_timeout: Duration,
) -> Result<RunState> {
    use bollard::models::ContainerStateStatusEnum as S;
    let c =
        match tokio::time::timeout(call_timeout, docker.inspect_container(container, None)).await {
            Err(_) => return Err(Error::Timeout(call_timeout)),
            Ok(Err(e)) => match crate::docker::engine_error(e) {
                Error::NotFound(_) => return Ok(RunState::Missing),
                e => return Err(e),
            },
            Ok(Ok(c)) => c,
        };
    let st = c.state.unwrap_or_default();
    Ok(match st.status {
        Some(S::CREATED) => RunState::Created,
        Some(S::RUNNING) | Some(S::RESTARTING) | Some(S::PAUSED) => RunState::Running,
        _ => RunState::Exited {
            code: st.exit_code.unwrap_or(-1),
            oom_killed: st.oom_killed.unwrap_or(false),
        },
    })
}
