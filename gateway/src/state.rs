//! The state every request handler shares: a `Clone` handle over `Arc`s.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use policy::review::Quorum;

use crate::audit::HeadNotifier;
use crate::auth::Verifier;
use crate::blobs::BlobStore;
use crate::config::Settings;
use crate::db::{Db, WriteTx};
use crate::keys::DataDir;
use crate::metrics::Metrics;
use crate::workers::Workers;

#[derive(Clone)]
pub struct AppState(Arc<Inner>);

pub struct Inner {
    pub db: Db,
    pub verifier: Arc<Verifier>,
    pub settings: Settings,
    pub quorum: Quorum,
    pub heads: HeadNotifier,
    pub blobs: BlobStore,
    pub metrics: Metrics,
    pub data: DataDir,
    pub sandboxes: Arc<crate::sandboxes::Sandboxes>,
    /// The release builder's handle (approvals wake it).
    pub releases: Arc<crate::egress::builder::Releases>,
    /// Every background task of the gateway, told to stop and waited for at a graceful stop.
    pub workers: Workers,
    /// The public JWKS of the token key, served at `/.well-known/jwks.json`.
    pub jwks: serde_json::Value,
    /// The identity provider the pages sign in through (`auth.oidc`), when one is configured.
    pub oidc: Option<Arc<crate::oidc::Provider>>,
    /// The key the egress payloads' own keys are sealed under (`keys/quarantine.key`).
    pub quarantine_key: [u8; 32],
    /// The audit log's last check, shared by the audit page and the API.
    pub audit_checks: crate::service::system::AuditChecks,
}

impl std::ops::Deref for AppState {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.0
    }
}

impl AppState {
    pub fn new(inner: Inner) -> Self {
        AppState(Arc::new(inner))
    }

    /// Commits a write transaction and hands the new audit head to the checkpoint writer.
    pub async fn commit(&self, tx: WriteTx) -> Result<(), sqlx::Error> {
        let before = tx.pending_events();
        if let Some(head) = tx.commit().await? {
            self.metrics
                .audit_events
                .fetch_add(before, Ordering::Relaxed);
            self.heads.committed(head);
        }
        Ok(())
    }
}
