//! What a sandbox's writable volumes (work area, output folder) hold, for their quotas: walked
//! on this host, where the engine's volumes usually are, or else measured by a short-lived
//! container on the engine. Both walk the same way (`launch/usage.rs`).

use std::path::PathBuf;
use std::sync::atomic::Ordering;

use bollard::query_parameters::AttachContainerOptionsBuilder;
use futures_util::StreamExt;

use super::DockerBackend;
use super::connect::engine_error;
use crate::hardening;
use crate::{Error, Result, SandboxBackend, SandboxSpec, Usage, Volume};

impl DockerBackend {
    /// What one of the sandbox's volumes holds: walked here while this host can read the
    /// engine's volumes, measured on the engine from the first time it cannot.
    pub(super) async fn measure(&self, sb: &SandboxSpec, volume: Volume) -> Result<Usage> {
        if !self.measure_on_engine.load(Ordering::Relaxed) {
            let why = match self.usage_here(&volume.name(&sb.id)).await? {
                Ok(used) => return Ok(used),
                Err(why) => why,
            };
            // Never a silent 0, which would switch the quota off.
            if !self.launcher_ready().await {
                return Err(Error::Unavailable(format!(
                    "{why}, and the engine cannot measure it"
                )));
            }
            tracing::info!(reason = %why, "sandboxes' volumes are measured on the engine's side from now on");
            self.measure_on_engine.store(true, Ordering::Relaxed);
        }
        self.usage_on_engine(sb, volume).await
    }

    /// The volume's usage walked on this host, where the engine's volumes live; `Err` inside
    /// when this host cannot read it (the volume lives on another host, or the gateway may not
    /// read the engine's volumes), with why. The engine's own errors (down, the volume gone)
    /// are the outer error: they say nothing of where volumes live.
    async fn usage_here(&self, volume: &str) -> Result<std::result::Result<Usage, String>> {
        let root = self.volume_root(volume).await?;
        let walked = {
            let root = root.clone();
            tokio::task::spawn_blocking(move || crate::usage::usage(&root))
                .await
                .map_err(|e| Error::Io(std::io::Error::other(e)))?
        };
        Ok(walked.map_err(|e| {
            // Asked again next time: the volume may have been made anew.
            crate::lock(&self.volume_roots).remove(volume);
            format!(
                "the volume {} cannot be read on this host: {e}",
                root.display()
            )
        }))
    }

    /// The volume's usage measured by a short-lived container on the engine
    /// ([`hardening::measure_container`]), for engines whose volumes this host cannot read.
    async fn usage_on_engine(&self, sb: &SandboxSpec, volume: Volume) -> Result<Usage> {
        let body = hardening::measure_container(&self.instance, sb, volume);
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
            parse_measured(&out).ok_or_else(|| {
                Error::Failed(format!(
                    "measuring the {} failed: {}",
                    volume.label(),
                    String::from_utf8_lossy(&err).trim()
                ))
            })
        })
        .await
        .unwrap_or(Err(Error::Timeout(self.call_timeout)));
        let _ = self.remove_container(&id).await;
        measured
    }

    async fn volume_root(&self, volume: &str) -> Result<PathBuf> {
        let known = crate::lock(&self.volume_roots).get(volume).cloned();
        if let Some(root) = known {
            return Ok(root);
        }
        let v = self.call(self.docker()?.inspect_volume(volume)).await?;
        let root = PathBuf::from(v.mountpoint);
        crate::lock(&self.volume_roots).insert(volume.to_owned(), root.clone());
        Ok(root)
    }
}

/// What the launcher's `--usage` mode printed: a number of bytes, or `unmeasurable: WHY`.
fn parse_measured(out: &[u8]) -> Option<Usage> {
    let out = String::from_utf8_lossy(out);
    let out = out.trim();
    if let Some(why) = out.strip_prefix("unmeasurable: ") {
        return Some(Usage::Unmeasurable(why.to_owned()));
    }
    out.parse().ok().map(Usage::Bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_launchers_measure_is_read_back_or_refused() {
        assert_eq!(parse_measured(b"4096\n"), Some(Usage::Bytes(4096)));
        assert_eq!(
            parse_measured(b"unmeasurable: \"d\" cannot be opened (denied) at /d\n"),
            Some(Usage::Unmeasurable(
                "\"d\" cannot be opened (denied) at /d".into()
            ))
        );
        assert_eq!(parse_measured(b""), None);
        assert_eq!(parse_measured(b"-1"), None);
        assert_eq!(parse_measured(b"12 bytes"), None);
    }
}
