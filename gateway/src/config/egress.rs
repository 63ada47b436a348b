//! `[egress]`: how much one request may take out, the thresholds of the disclosure checks
//! (`[egress.checks]`), and how long a release may be downloaded.

use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EgressSettings {
    /// Files one request may take (a folder counts its files).
    pub max_files: u64,
    /// Days a built release can be downloaded; 0 keeps it until it is revoked.
    pub release_expiry_days: u64,
    pub checks: EgressChecks,
}

/// Thresholds of the automatic disclosure checks; their defaults follow ACRO's.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EgressChecks {
    /// Cells of count columns below this fail; zero cells go to review.
    pub min_count: u64,
    /// A bigger file fails.
    pub max_file_bytes: u64,
    /// A bigger request (all its files) fails.
    pub max_request_bytes: u64,
    /// A table with more rows than this goes to review (it may be row-level data).
    pub max_table_rows: u64,
}

impl Default for EgressSettings {
    fn default() -> Self {
        EgressSettings {
            max_files: 10_000,
            release_expiry_days: 30,
            checks: EgressChecks::default(),
        }
    }
}

impl Default for EgressChecks {
    fn default() -> Self {
        let t = policy::egress::Thresholds::default();
        EgressChecks {
            min_count: t.min_count,
            max_file_bytes: t.max_file_bytes,
            max_request_bytes: t.max_request_bytes,
            max_table_rows: t.max_table_rows,
        }
    }
}

impl EgressChecks {
    pub fn thresholds(&self) -> policy::egress::Thresholds {
        policy::egress::Thresholds {
            min_count: self.min_count,
            max_file_bytes: self.max_file_bytes,
            max_request_bytes: self.max_request_bytes,
            max_table_rows: self.max_table_rows,
        }
    }
}

impl EgressSettings {
    pub(super) fn check(&self) -> anyhow::Result<()> {
        anyhow::ensure!(self.max_files > 0, "egress.max_files must be at least 1");
        anyhow::ensure!(
            self.checks.min_count > 0,
            "egress.checks.min_count must be at least 1"
        );
        anyhow::ensure!(
            self.checks.max_file_bytes > 0 && self.checks.max_request_bytes > 0,
            "egress.checks sizes must be at least 1 byte"
        );
        Ok(())
    }
}
