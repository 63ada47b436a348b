//! A sandbox's output folder, or a path in it, as a tar stream (for egress), read through a
//! helper container that mounts the folder read-only.

use bollard::models::Mount;
use bollard::query_parameters::DownloadFromContainerOptionsBuilder;
use futures_util::{StreamExt, TryStreamExt};

use super::DockerBackend;
use super::volumes::volume_mount;
use crate::hardening;
use crate::{ByteStream, SandboxBackend, SandboxSpec};

impl DockerBackend {
    /// The output folder's `path` as a tar stream; the helper is removed once it is read.
    pub(super) fn download(&self, sb: &SandboxSpec, path: &str) -> ByteStream {
        let docker = match self.bulk() {
            Ok(d) => d,
            Err(e) => {
                return futures_util::stream::once(async move { Err(std::io::Error::other(e)) })
                    .boxed();
            }
        };
        let sb = sb.clone();
        let path = format!("/vre/output/{}", path.trim_start_matches('/'));
        let name = format!("vre-egress-{}", sb.id);
        let backend = self.sibling();
        let stream = async move {
            let mounts = vec![Mount {
                read_only: Some(true),
                ..volume_mount(hardening::output_volume(&sb.id), "/vre/output")
            }];
            let helper = backend
                .helper(&sb, &name, mounts)
                .await
                .map_err(std::io::Error::other)?;
            let body = docker
                .download_from_container(
                    &helper,
                    Some(
                        DownloadFromContainerOptionsBuilder::default()
                            .path(&path)
                            .build(),
                    ),
                )
                .map_err(std::io::Error::other);
            Ok::<_, std::io::Error>((backend, helper, body))
        };
        futures_util::stream::once(stream)
            .map(|r| match r {
                Ok((backend, helper, body)) => {
                    let cleanup = futures_util::stream::once(async move {
                        let _ = backend.remove_container(&helper).await;
                        None
                    });
                    body.map(Some)
                        .chain(cleanup)
                        .filter_map(|x| async move { x })
                        .boxed()
                }
                Err(e) => futures_util::stream::once(async move { Err(e) }).boxed(),
            })
            .flatten()
            .boxed()
    }
}
