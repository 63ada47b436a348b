//! How much a sandbox's output folder holds, for its quota: walked on this host, where the
//! engine's volumes usually are, or else measured by a short-lived container on the engine.

use std::path::PathBuf;
use std::sync::atomic::Ordering;

use bollard::query_parameters::AttachContainerOptionsBuilder;
use futures_util::StreamExt;

use super::DockerBackend;
use super::connect::engine_error;
use crate::hardening;
use crate::{Error, Result, SandboxBackend, SandboxSpec};

impl DockerBackend {
    /// Bytes in the sandbox's output folder: walked here while this host can read the
    /// engine's volumes, measured on the engine from the first time it cannot.
    pub(super) async fn measure_output(&self, sb: &SandboxSpec) -> Result<u64> {
        if !self.measure_on_engine.load(Ordering::Relaxed) {
            let why = match self.usage_here(&sb.id).await? {
                Ok(used) => return Ok(used),
                Err(why) => why,
            };
            // Never a silent 0, which would switch the quota off.
            if !self.launcher_ready().await {
                return Err(Error::Unavailable(format!(
                    "{why}, and the engine cannot measure it"
                )));
            }
            tracing::info!(reason = %why, "output folders are measured on the engine's side from now on");
            self.measure_on_engine.store(true, Ordering::Relaxed);
        }
        self.usage_on_engine(sb).await
    }

    /// The output folder's usage walked on this host, where the engine's volumes live; `Err`
    /// inside when this host cannot read it (the volume lives on another host, or the gateway
    /// may not read the engine's volumes), with why. The engine's own errors (down, the volume
    /// gone) are the outer error: they say nothing of where volumes live.
    async fn usage_here(&self, sandbox: &str) -> Result<std::result::Result<u64, String>> {
        let root = self.output_root(sandbox).await?;
        let walked = {
            let root = root.clone();
            tokio::task::spawn_blocking(move || crate::usage::usage(&root))
                .await
                .map_err(|e| Error::Io(std::io::Error::other(e)))?
        };
        Ok(walked.map_err(|e| {
            // Asked again next time: the volume may have been made anew.
            crate::lock(&self.output_roots).remove(sandbox);
            format!(
                "the output folder {} cannot be read on this host: {e}",
                root.display()
            )
        }))
    }

    /// The output folder's usage measured by a short-lived container on the engine
    /// ([`hardening::measure_container`]), for engines whose volumes this host cannot read.
    async fn usage_on_engine(&self, sb: &SandboxSpec) -> Result<u64> {
        let body = hardening::measure_container(&self.instance, &sb.id, &sb.project);
        let id = self
            .call(self.docker()?.create_container(
                None::<bollard::query_parameters::CreateContainerOptions>,
                body,
            ))
            .await?
            .id;
        let measured = tokio::time::timeout(self.call_timeout, async {
            let opts = AttachContainerOptionsBuilder::default()
                .stdout(true)
                .stderr(true)
                .stream(true)
                .build();
            let mut a = self
                .bulk()?
                .attach_container(&id, Some(opts))
                .await
                .map_err(engine_error)?;
            self.docker()?
                .start_container(&id, None)
                .await
                .map_err(engine_error)?;
            let (mut out, mut err) = (Vec::new(), Vec::new());
            while let Some(frame) = a.output.next().await {
                match frame.map_err(engine_error)? {
                    bollard::container::LogOutput::StdOut { message } => {
                        out.extend_from_slice(&message)
                    }
                    bollard::container::LogOutput::StdErr { message } => {
                        err.extend_from_slice(&message)
                    }
                    _ => {}
                }
                if out.len() + err.len() > 4096 {
                    break;
                }
            }
            let out = String::from_utf8_lossy(&out);
            out.trim().parse::<u64>().map_err(|_| {
                Error::Failed(format!(
                    "measuring the output folder failed: {}",
                    String::from_utf8_lossy(&err).trim()
                ))
            })
        })
        .await
        .unwrap_or(Err(Error::Timeout(self.call_timeout)));
        let _ = self.remove_container(&id).await;
        measured
    }

    async fn output_root(&self, sandbox: &str) -> Result<PathBuf> {
        let known = crate::lock(&self.output_roots).get(sandbox).cloned();
        if let Some(root) = known {
            return Ok(root);
        }
        let v = self
            .call(
                self.docker()?
                    .inspect_volume(&hardening::output_volume(sandbox)),
            )
            .await?;
        let root = PathBuf::from(v.mountpoint);
        crate::lock(&self.output_roots).insert(sandbox.to_owned(), root.clone());
        Ok(root)
    }
}
