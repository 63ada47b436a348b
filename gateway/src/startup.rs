//! Building and running the gateway: `Application::build` binds and prepares everything,
//! `run_until_stopped` serves until a shutdown signal, then drains requests, stops the
//! background workers, and only then writes the last checkpoint and closes the database.

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum_server::Handle;
use axum_server::tls_rustls::RustlsConfig;
use tokio::sync::watch;

use crate::audit::{self, Checkpointer, HeadNotifier};
use crate::auth::Verifier;
use crate::blobs::BlobStore;
use crate::config::Settings;
use crate::db::Db;
use crate::keys::{DataDir, Ed25519Key};
use crate::metrics::Metrics;
use crate::state::{AppState, Inner};
use crate::workers::{self, Workers};

/// How long in-flight requests get to finish after a shutdown signal.
const DRAIN: Duration = Duration::from_secs(20);

pub struct Application {
    state: AppState,
    listener: std::net::TcpListener,
    addr: SocketAddr,
    tls: RustlsConfig,
    ca_file: Option<PathBuf>,
    heads_rx: watch::Receiver<Option<audit::ChainHead>>,
    audit_key: Ed25519Key,
}

impl Application {
    /// Prepares the data dir, keys, certificate and database, and binds the listener (port 0
    /// picks a free port; [`Application::addr`] tells which).
    pub async fn build(settings: Settings) -> anyhow::Result<Application> {
        let data = DataDir::new(settings.data_dir.clone());
        data.create()?;
        let token_key = Ed25519Key::load_or_create(&data.token_key())?;
        let audit_key = Ed25519Key::load_or_create(&data.audit_key())?;
        let quarantine_key = crate::keys::load_or_create_secret(&data.quarantine_key())?;
        let tls = crate::keys::tls_material(
            &data,
            settings.tls.cert_file.as_deref(),
            settings.tls.key_file.as_deref(),
            &settings.tls.hostnames,
        )?;
        let workers = Workers::default();
        let instance = instance_id(&data)?;
        // A blob store shared with other gateways: this one's temporary files apart from
        // theirs (its sweep at start removes only its own), on the same file system.
        let (blob_root, blob_tmp) = match &settings.blobs_dir {
            Some(dir) => (dir.clone(), dir.join("tmp").join(&instance)),
            None => (data.blobs(), data.tmp()),
        };
        let blobs = BlobStore::new(blob_root, blob_tmp, workers.clone());
        let swept = blobs.sweep_tmp()?;
        if swept > 0 {
            tracing::info!(
                files = swept,
                "removed unfinished uploads left by an earlier run"
            );
        }
        let swept = crate::service::dataset_upload::sweep_tmp(&settings, &instance)?;
        if swept > 0 {
            tracing::info!(
                folders = swept,
                "removed unfinished dataset uploads left by an earlier run"
            );
        }
        let db = Db::open(&settings.database_url(), settings.database_max_connections).await?;
        // Before anything is appended to the checkpoint log, or a new line would be glued to it.
        audit::repair_checkpoint_log(&db, &settings.checkpoint_dir()).await?;
        let orphans = remove_orphan_blobs(&db, &blobs, settings.blobs_dir.is_some()).await?;
        if orphans > 0 {
            tracing::info!(
                blobs = orphans,
                "removed blobs that no committed record refers to"
            );
        }
        let indexed = crate::service::catalog::index_missing(&db)
            .await
            .map_err(|e| anyhow::anyhow!("indexing the catalog: {e:?}"))?;
        if indexed > 0 {
            tracing::info!(datasets = indexed, "wrote the catalog's search text");
        }
        let verifier = Verifier::new(&settings.auth, Some(&token_key))?;
        if let Some(url) = settings.auth.jwks_url.clone() {
            spawn_jwks_refresh(
                &workers,
                verifier.clone(),
                url,
                Duration::from_secs(settings.auth.jwks_refresh_secs.max(10)),
            )
            .await;
        }
        let quorum = settings.review.quorum.to_policy()?;
        let (heads, heads_rx) = HeadNotifier::new();
        // Start from the current head so the first checkpoint of this run covers what is there.
        let head = audit::head(&mut *db.pool().acquire().await?).await?;
        if head.seq > 0 {
            heads.committed(head);
        }
        let listener = std::net::TcpListener::bind(settings.listen)
            .with_context(|| format!("binding {}", settings.listen))?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let tls_config = server_tls_config(&tls.cert_chain_pem, &tls.key_pem)?;
        let conn = sandbox_runner::docker::Connection {
            host: (!settings.sandbox.docker_host.is_empty())
                .then(|| settings.sandbox.docker_host.clone()),
            tls: match (
                &settings.sandbox.docker_tls_key,
                &settings.sandbox.docker_tls_cert,
                &settings.sandbox.docker_tls_ca,
            ) {
                (Some(k), Some(c), Some(a)) => Some((k.clone(), c.clone(), a.clone())),
                _ => None,
            },
            call_timeout: Duration::from_secs(settings.sandbox.call_timeout_secs.max(1)),
            standby: settings.sandbox.standby_containers,
        };
        let backend = sandbox_runner::docker::DockerBackend::connect(&conn, &instance)
            .map_err(|e| anyhow::anyhow!("configuring the container engine client: {e}"))?;
        let logs_dir =
            (settings.sandbox.logs_dir.clone()).unwrap_or_else(|| data.root().join("runs"));
        std::fs::create_dir_all(&logs_dir)?;
        let sandboxes = Arc::new(crate::sandboxes::Sandboxes::new(
            Arc::new(backend),
            settings.sandbox.clone(),
            logs_dir,
            instance.clone(),
        ));
        let state = AppState::new(Inner {
            jwks: crate::auth::local_jwks(&token_key),
            oidc: crate::oidc::Provider::new(&settings.auth, &token_key)?,
            audit_checks: Default::default(),
            quarantine_key,
            releases: crate::egress::builder::Releases::new(instance.clone()),
            sandboxes,
            db,
            verifier,
            quorum,
            heads,
            blobs,
            metrics: Metrics::new(workers.clone()),
            workers,
            data,
            settings,
        });
        Ok(Application {
            state,
            listener,
            addr,
            tls: RustlsConfig::from_config(tls_config),
            ca_file: tls.ca_file,
            heads_rx,
            audit_key,
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The CA file clients should trust, when the gateway made its own certificate.
    pub fn ca_file(&self) -> Option<&std::path::Path> {
        self.ca_file.as_deref()
    }

    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Serves until `shutdown` resolves; then stops accepting, lets requests drain, stops the
    /// background workers (within `workers::STOP_WITHIN`), writes the last audit checkpoint
    /// and closes the database.
    pub async fn run_until_stopped(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let workers = self.state.workers.clone();
        let checkpoints = Arc::new(Checkpointer::new(
            self.state.settings.checkpoint_dir(),
            self.audit_key.clone(),
        ));
        {
            let (checkpoints, heads) = (checkpoints.clone(), self.heads_rx.clone());
            workers.spawn("audit-checkpoints", |stop| {
                audit::checkpoint_worker(checkpoints, heads, stop)
            });
        }
        {
            let state = self.state.clone();
            workers.spawn("run-progress", |stop| {
                crate::sandboxes::follow::run(state, stop)
            });
        }
        {
            let state = self.state.clone();
            workers.spawn("run-leases", |stop| {
                crate::sandboxes::owners::renew_leases(state, stop)
            });
        }
        {
            let state = self.state.clone();
            workers.spawn("recovery", |stop| {
                crate::sandboxes::recovery::recover(state, stop)
            });
        }
        {
            let state = self.state.clone();
            workers.spawn("release-builder", |stop| {
                crate::egress::builder::run(state, stop)
            });
        }
        {
            let state = self.state.clone();
            let every = state.settings.dataset_categories.interval();
            workers.spawn("dataset-categories", move |stop| {
                crate::service::extension::run(state, every, stop)
            });
        }
        let handle: Handle<SocketAddr> = Handle::new();
        let app = crate::api::router(self.state.clone());
        let limits = &self.state.settings.server;
        let head = Duration::from_secs(limits.header_read_timeout_secs);
        let guard = crate::connections::Guard::new(
            limits.max_connections,
            Duration::from_secs(limits.idle_timeout_secs),
        );
        let acceptor = axum_server::tls_rustls::RustlsAcceptor::new(self.tls)
            .handshake_timeout(head)
            .acceptor(guard);
        // HTTP/1.1 only, as ALPN offers: hyper's header-read timeout is HTTP/1's.
        let mut server = axum_server::from_tcp(self.listener)?
            .acceptor(acceptor)
            .handle(handle.clone())
            .http1_only();
        server.http_builder().http1().header_read_timeout(head);
        let serve = server.serve(app.into_make_service());
        tokio::pin!(serve);
        let served = tokio::select! {
            served = &mut serve => served,
            () = shutdown => {
                tracing::info!("shutting down: draining requests");
                handle.graceful_shutdown(Some(DRAIN));
                serve.await
            }
        };
        // No request is left to start more background work. Supervisors leave their runs
        // going, for the next start to take up again.
        tracing::info!("shutting down: stopping background workers");
        workers.stop(workers::STOP_WITHIN).await;
        // Nothing is left idle on the engine: the next start begins without containers ahead.
        self.state.sandboxes.backend.shutdown().await;
        checkpoints.write_last(&self.heads_rx);
        self.state.db.close().await;
        served.context("serving HTTPS")
    }
}

fn server_tls_config(
    chain_pem: &[u8],
    key_pem: &[u8],
) -> anyhow::Result<Arc<rustls::ServerConfig>> {
    let certs = rustls_pemfile::certs(&mut &chain_pem[..])
        .collect::<Result<Vec<_>, _>>()
        .context("reading the TLS certificate chain")?;
    anyhow::ensure!(
        !certs.is_empty(),
        "the TLS certificate file holds no certificate"
    );
    let key = rustls_pemfile::private_key(&mut &key_pem[..])
        .context("reading the TLS key")?
        .context("the TLS key file holds no private key")?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .context("the TLS certificate and key do not match")?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// Fetches the identity provider's keys now and then every `every`, until the gateway stops; a
/// failed refresh keeps the keys already known.
async fn spawn_jwks_refresh(
    workers: &Workers,
    verifier: Arc<Verifier>,
    url: String,
    every: Duration,
) {
    let client = match crate::client::http_client(None) {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %format!("{e:#}"), "cannot build the JWKS client");
            return;
        }
    };
    match crate::auth::fetch_jwks(&client, &url).await {
        Ok(keys) => verifier.replace_provider_keys(keys),
        Err(e) => {
            tracing::warn!(error = %format!("{e:#}"), "the first JWKS fetch failed; retrying in the background")
        }
    }
    workers.spawn("jwks-refresh", |stop| async move {
        let refresh = async {
            loop {
                tokio::time::sleep(every).await;
                match crate::auth::fetch_jwks(&client, &url).await {
                    Ok(keys) => verifier.replace_provider_keys(keys),
                    Err(e) => {
                        tracing::warn!(error = %format!("{e:#}"), "refreshing the JWKS failed; keeping the known keys")
                    }
                }
            }
        };
        tokio::select! {
            () = refresh => {}
            () = stop.requested() => {}
        }
    });
}

/// This gateway's name on the container engine: every object it creates carries it, so several
/// gateways can share an engine and each recovers only its own.
fn instance_id(data: &DataDir) -> anyhow::Result<String> {
    let path = data.root().join("instance-id");
    if let Ok(s) = std::fs::read_to_string(&path) {
        let s = s.trim();
        if !s.is_empty() {
            return Ok(s.to_owned());
        }
    }
    let id = crate::store::new_id("gw");
    crate::keys::write_atomic(&path, id.as_bytes(), 0o644)?;
    Ok(id)
}

/// Removes blobs the database does not know: written by a process that died between renaming
/// them into the store and committing their record; and payloads no round names.
async fn remove_orphan_blobs(db: &Db, blobs: &BlobStore, shared: bool) -> anyhow::Result<usize> {
    let known = {
        let mut conn = db.pool().acquire().await?;
        crate::store::known_blobs(&mut conn).await?
    };
    let mut removed = 0;
    // A payload no round names was being written by a process that died before its round was
    // recorded (or its request was refused): it goes the same way.
    let named: std::collections::HashSet<String> = {
        let mut conn = db.pool().acquire().await?;
        crate::store::egress::payload_names(&mut conn)
            .await?
            .into_iter()
            .collect()
    };
    for (name, age) in blobs.list_payloads()? {
        if !named.contains(&name) && (!shared || age > SHARED_ORPHAN_AGE) {
            blobs.remove_payload(&name)?;
            removed += 1;
        }
    }
    for sha in blobs.list()? {
        // In a store shared with other gateways, a blob renamed in just now may be one whose
        // record another gateway is about to commit: only those renamed long ago go.
        if !known.contains(&sha) && (!shared || blobs.settled(&sha, SHARED_ORPHAN_AGE)) {
            blobs.remove(&sha)?;
            removed += 1;
        }
    }
    Ok(removed)
}

/// How long ago a blob unknown to the database must have been renamed into a shared store for
/// a start to remove it.
const SHARED_ORPHAN_AGE: Duration = Duration::from_secs(3600);

/// Resolves on SIGTERM or SIGINT.
pub async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("installing a SIGTERM handler");
    let mut int = signal(SignalKind::interrupt()).expect("installing a SIGINT handler");
    tokio::select! {
        _ = term.recv() => {},
        _ = int.recv() => {},
    }
}

/// Keeps the memory the allocator has from going back to the kernel after every upload chunk.
///
/// Request bodies arrive in buffers of up to ~400 KiB that live only until both ingress workers
/// have read them. With glibc's defaults each freed buffer at the top of a heap is returned to
/// the kernel and the next one faults its pages in again: about 370 MiB of page faults, and a
/// sixth of the gateway's CPU, per GiB uploaded. Kept instead (up to `TRIM` per arena), the
/// same pages are reused; the peak resident size does not change, it is only not given back
/// between uploads. An operator's own `GLIBC_TUNABLES` for malloc is left to rule.
pub fn tune_allocator() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        if std::env::var("GLIBC_TUNABLES").is_ok_and(|t| t.contains("glibc.malloc.")) {
            return;
        }
        /// Allocations up to this come from the heap (so are reused), larger ones are mapped.
        const MMAP_THRESHOLD: libc::c_int = 4 << 20;
        /// Free memory at the top of a heap is returned to the kernel past this.
        const TRIM: libc::c_int = 32 << 20;
        // SAFETY: mallopt only sets the allocator's parameters; it takes no pointers and is
        // safe to call at any time (it takes the allocator's own lock).
        #[allow(unsafe_code)]
        unsafe {
            libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD);
            libc::mallopt(libc::M_TRIM_THRESHOLD, TRIM);
        }
    }
}
