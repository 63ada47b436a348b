//! A sandbox's volumes: its work area and output folder (owned by the sandbox user through
//! the init image), its datasets, the ingress applications staged into it, and the helper
//! containers, never started, through which the archive API reaches them.

use std::collections::HashMap;
use std::time::Duration;

use bollard::models::{
    ContainerCreateBody, ContainerSummary, Mount, MountType, Volume, VolumeCreateRequest,
};
use bollard::query_parameters::{
    CreateContainerOptionsBuilder, ListContainersOptionsBuilder, ListVolumesOptionsBuilder,
    RemoveVolumeOptionsBuilder, UploadToContainerOptionsBuilder,
};
use futures_util::StreamExt;

use super::DockerBackend;
use super::connect::engine_error;
use crate::hardening;
use crate::{
    ByteStream, Error, LABEL_MANAGED, LABEL_SANDBOX, Result, SANDBOX_UID, SandboxBackend,
    SandboxSpec,
};

/// The image that initialises a sandbox's volumes: nothing but its mount points, owned by the
/// sandbox user. A fresh volume mounted on a container of it takes the mount point's owner
/// (the engine's copy-up), which the archive API cannot set on a volume's root.
pub const INIT_IMAGE: &str = "vre/volume-init:1";

impl DockerBackend {
    /// The sandbox's work area and output folder, owned by the sandbox user, and its datasets.
    pub(super) async fn prepare_volumes(&self, sb: &SandboxSpec) -> Result<()> {
        let work = hardening::work_volume(&sb.id);
        let output = hardening::output_volume(&sb.id);
        self.create_volume(
            &work,
            hardening::labels(&self.instance, &sb.id, &sb.project, "work"),
        )
        .await?;
        self.create_volume(
            &output,
            hardening::labels(&self.instance, &sb.id, &sb.project, "output"),
        )
        .await?;
        self.ensure_datasets(sb).await?;
        let mounts = vec![
            volume_mount(work, "/vre/work"),
            volume_mount(output, "/vre/output"),
        ];
        self.ensure_init_image().await?;
        let name = format!("vre-prepare-{}", sb.id);
        let mut init = sb.clone();
        init.image_id = INIT_IMAGE.into();
        // Creating the container is enough: the engine copies the owners up into the volumes.
        let helper = self.helper(&init, &name, mounts).await?;
        self.remove_container(&helper).await
    }

    /// Streams a tar archive into the ingress application's volume, through a helper.
    pub(super) async fn stage_volume(
        &self,
        sb: &SandboxSpec,
        ingress: &str,
        tar: ByteStream,
    ) -> Result<()> {
        let volume = hardening::ingress_volume(&sb.id, ingress);
        let mut labels = hardening::labels(&self.instance, &sb.id, &sb.project, "ingress");
        labels.insert("vre.ingress".into(), ingress.to_owned());
        self.create_volume(&volume, labels).await?;
        // Copy-up off, as for runs: nothing of the image at `/stage` comes into the volume.
        let mounts = vec![hardening::volume(volume, "/stage".into(), false)];
        let name = format!("vre-stage-{}-{ingress}", sb.id);
        let helper = self.helper(sb, &name, mounts).await?;
        self.upload_then_remove(&helper, "/stage", tar).await
    }

    /// Streams a tar archive into a folder of a helper container, then removes the helper,
    /// whether the upload succeeded or not.
    pub(super) async fn upload_then_remove(
        &self,
        helper: &str,
        dir: &str,
        tar: ByteStream,
    ) -> Result<()> {
        let result = self.upload(helper, dir, tar).await;
        let _ = self.remove_container(helper).await;
        result
    }

    /// Removes what staging put in the sandbox for one ingress application.
    pub(super) async fn remove_ingress_volume(&self, sandbox: &str, ingress: &str) -> Result<()> {
        let name = hardening::ingress_volume(sandbox, ingress);
        match self
            .call(self.docker()?.remove_volume(
                &name,
                Some(RemoveVolumeOptionsBuilder::default().force(true).build()),
            ))
            .await
        {
            Ok(()) | Err(Error::NotFound(_)) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// The containers, stopped ones too, labelled with this instance (and `extra`, given one).
    pub(super) async fn labelled_containers(
        &self,
        extra: Option<(&str, &str)>,
    ) -> Result<Vec<ContainerSummary>> {
        self.containers_where(self.label_filter(extra)).await
    }

    /// The containers, stopped ones too, with these label filters.
    async fn containers_where(
        &self,
        filters: HashMap<String, Vec<String>>,
    ) -> Result<Vec<ContainerSummary>> {
        let options = ListContainersOptionsBuilder::default()
            .all(true)
            .filters(&filters)
            .build();
        self.call(self.docker()?.list_containers(Some(options)))
            .await
    }

    /// The volumes labelled with this instance (and `extra`, given one).
    pub(super) async fn labelled_volumes(
        &self,
        extra: Option<(&str, &str)>,
    ) -> Result<Vec<Volume>> {
        self.volumes_where(self.label_filter(extra)).await
    }

    /// The volumes with these label filters.
    async fn volumes_where(&self, filters: HashMap<String, Vec<String>>) -> Result<Vec<Volume>> {
        let options = ListVolumesOptionsBuilder::default()
            .filters(&filters)
            .build();
        let list = self
            .call(self.docker()?.list_volumes(Some(options)))
            .await?;
        Ok(list.volumes.unwrap_or_default())
    }

    /// Removes the sandbox's containers, then its volumes.
    pub(super) async fn remove_sandbox_objects(&self, sandbox: &str) -> Result<()> {
        // Whichever gateway made them: gateways sharing a database (and so its sandboxes)
        // each make some of a sandbox's objects (its volumes where it was made, an ingress
        // volume where it was staged), and any of them removes the sandbox.
        let of_sandbox = HashMap::from([(
            "label".to_owned(),
            vec![
                format!("{LABEL_MANAGED}=1"),
                format!("{LABEL_SANDBOX}={sandbox}"),
            ],
        )]);
        for c in self.containers_where(of_sandbox.clone()).await? {
            if let Some(id) = c.id {
                self.remove_container(&id).await?;
            }
        }
        for v in self.volumes_where(of_sandbox).await? {
            // A container whose removal another caller started may hold the volume a moment.
            let mut tries = 0;
            loop {
                match self
                    .call(self.docker()?.remove_volume(
                        &v.name,
                        Some(RemoveVolumeOptionsBuilder::default().force(true).build()),
                    ))
                    .await
                {
                    Ok(()) | Err(Error::NotFound(_)) => break,
                    Err(e) if e.is_conflict() && tries < 50 => {
                        tries += 1;
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                    Err(e) => return Err(e),
                }
            }
        }
        Ok(())
    }

    pub(super) async fn create_volume(
        &self,
        name: &str,
        labels: HashMap<String, String>,
    ) -> Result<()> {
        self.create_volume_with(name, labels, HashMap::new()).await
    }

    async fn create_volume_with(
        &self,
        name: &str,
        labels: HashMap<String, String>,
        driver_opts: HashMap<String, String>,
    ) -> Result<()> {
        self.call(self.docker()?.create_volume(VolumeCreateRequest {
            name: Some(name.to_owned()),
            driver: Some("local".into()),
            driver_opts: Some(driver_opts),
            labels: Some(labels),
            ..Default::default()
        }))
        .await?;
        Ok(())
    }

    /// The sandbox's dataset volumes (see [`hardening::dataset_volume_options`]). Creating an
    /// existing one is a no-op; making sure before every run keeps the engine from quietly
    /// creating an empty volume in place of one removed behind the gateway's back.
    pub(super) async fn ensure_datasets(&self, sb: &SandboxSpec) -> Result<()> {
        for d in &sb.datasets {
            let mut labels = hardening::labels(&self.instance, &sb.id, &sb.project, "dataset");
            labels.insert("vre.dataset".into(), d.id.clone());
            self.create_volume_with(
                &hardening::dataset_volume(&sb.id, &d.id),
                labels,
                hardening::dataset_volume_options(&d.host_path),
            )
            .await?;
        }
        Ok(())
    }

    /// A container that never starts, used to reach volumes through the archive API (which
    /// writes only into volumes when the root is read-only).
    pub(super) async fn helper(
        &self,
        sandbox: &SandboxSpec,
        name: &str,
        mounts: Vec<Mount>,
    ) -> Result<String> {
        let labels = hardening::labels(&self.instance, &sandbox.id, &sandbox.project, "helper");
        self.helper_with(&sandbox.image_id, labels, name, mounts)
            .await
    }

    pub(super) async fn helper_with(
        &self,
        image: &str,
        mut labels: HashMap<String, String>,
        name: &str,
        mounts: Vec<Mount>,
    ) -> Result<String> {
        labels.insert("vre.helper".into(), name.to_owned());
        let body = ContainerCreateBody {
            image: Some(image.to_owned()),
            cmd: Some(vec!["/nonexistent".into()]),
            entrypoint: Some(Vec::new()),
            user: Some(format!("{SANDBOX_UID}:{SANDBOX_UID}")),
            network_disabled: Some(true),
            labels: Some(labels),
            host_config: Some(hardening::confined(mounts)),
            ..Default::default()
        };
        // A helper left by a crash has the same name: remove it first.
        let _ = self.remove_container(name).await;
        let created = self
            .call(self.docker()?.create_container(
                Some(CreateContainerOptionsBuilder::default().name(name).build()),
                body,
            ))
            .await?;
        Ok(created.id)
    }

    pub(super) async fn ensure_init_image(&self) -> Result<()> {
        if self.image(INIT_IMAGE).await?.is_some() {
            return Ok(());
        }
        let tar = tar_of(&[
            ("./", 0, 0o755, None),
            ("vre/", 0, 0o755, None),
            ("vre/work/", SANDBOX_UID, 0o700, None),
            ("vre/output/", SANDBOX_UID, 0o700, None),
        ]);
        let (repo, tag) = INIT_IMAGE.split_once(':').expect("the name has a tag");
        let opts = bollard::query_parameters::CreateImageOptionsBuilder::default()
            .from_src("-")
            .repo(repo)
            .tag(tag)
            .build();
        let mut progress =
            self.bulk()?
                .create_image(Some(opts), Some(bollard::body_full(tar.into())), None);
        while let Some(p) = progress.next().await {
            p.map_err(engine_error)?;
        }
        Ok(())
    }

    pub(super) async fn upload(&self, container: &str, path: &str, tar: ByteStream) -> Result<()> {
        self.bulk()?
            .upload_to_container(
                container,
                Some(
                    UploadToContainerOptionsBuilder::default()
                        .path(path)
                        .build(),
                ),
                bollard::body_try_stream(tar),
            )
            .await
            .map_err(engine_error)
    }
}

/// A tar of directories (no content) and files: (path, uid, mode, content).
pub(super) fn tar_of(entries: &[(&str, u32, u32, Option<&[u8]>)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (path, uid, mode, content) in entries {
        let mut h = [0u8; 512];
        h[..path.len()].copy_from_slice(path.as_bytes());
        h[100..108].copy_from_slice(format!("{mode:07o}\0").as_bytes());
        h[108..116].copy_from_slice(format!("{uid:07o}\0").as_bytes());
        h[116..124].copy_from_slice(format!("{uid:07o}\0").as_bytes());
        let size = content.map_or(0, <[u8]>::len);
        h[124..136].copy_from_slice(format!("{size:011o}\0").as_bytes());
        h[136..148].copy_from_slice(b"00000000000\0");
        h[156] = if content.is_some() { b'0' } else { b'5' };
        h[257..263].copy_from_slice(b"ustar\0");
        h[263..265].copy_from_slice(b"00");
        h[148..156].copy_from_slice(b"        ");
        let sum: u32 = h.iter().map(|b| u32::from(*b)).sum();
        h[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
        out.extend_from_slice(&h);
        if let Some(c) = content {
            out.extend_from_slice(c);
            out.resize(out.len().next_multiple_of(512), 0);
        }
    }
    out.extend_from_slice(&[0u8; 1024]);
    out
}

/// A volume mounted read-write at `target`.
pub(super) fn volume_mount(volume: String, target: &str) -> Mount {
    Mount {
        typ: Some(MountType::VOLUME),
        source: Some(volume),
        target: Some(target.into()),
        ..Default::default()
    }
}
