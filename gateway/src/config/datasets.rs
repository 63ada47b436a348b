//! `[datasets]`: how large a dataset's content may be when a steward uploads it, and `[store]`:
//! where listed datasets' content lives.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// Limits on one dataset's upload (`vre dataset upload`). Sizes in bytes.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DatasetSettings {
    /// The files' bytes, summed.
    pub max_total_bytes: u64,
    /// Files and folders.
    pub max_files: u64,
    /// One file.
    pub max_file_bytes: u64,
    /// Unpacked bytes per uploaded byte; a zstd bomb stops as soon as it passes this.
    pub max_compression_ratio: u64,
}

impl Default for DatasetSettings {
    fn default() -> Self {
        DatasetSettings {
            max_total_bytes: 4 << 40,
            max_files: 1_000_000,
            max_file_bytes: 1 << 40,
            max_compression_ratio: 1000,
        }
    }
}

impl DatasetSettings {
    /// The archive rules' limits for an upload of these sizes: the upload may be as large as
    /// its content with every tar header and padding (one KiB per entry at most) and the end.
    pub fn limits(&self) -> policy::archive::rules::Limits {
        policy::archive::rules::Limits {
            max_upload_bytes: self
                .max_total_bytes
                .saturating_add(self.max_files.saturating_mul(1024))
                .saturating_add(1 << 20),
            max_entries: self.max_files,
            max_entry_bytes: self.max_file_bytes,
            max_unpacked_bytes: self.max_total_bytes,
            max_compression_ratio: self.max_compression_ratio,
            ..Default::default()
        }
    }

    pub(super) fn check(&self) -> anyhow::Result<()> {
        if self.max_total_bytes == 0
            || self.max_files == 0
            || self.max_file_bytes == 0
            || self.max_compression_ratio == 0
        {
            anyhow::bail!(
                "datasets.max_total_bytes, max_files, max_file_bytes and max_compression_ratio must be at least 1"
            );
        }
        Ok(())
    }
}

/// The STORE: listed datasets' content, one read-only folder per dataset.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StoreSettings {
    /// Where it lives; default `store/` in the data dir. Sandboxes bind these folders into
    /// runs: with a remote engine, the same path must be visible on the engine's host (a
    /// shared file system mounted at the same place), as must it for every gateway sharing the
    /// database.
    pub dir: Option<PathBuf>,
}
