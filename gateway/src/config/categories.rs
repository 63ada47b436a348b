//! `[dataset_categories]`: the job that moves a dataset whose restricted sharing has ended to
//! the category its DMP names after it.

use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DatasetCategorySettings {
    /// Seconds between two looks for datasets whose restricted sharing has ended (the job also
    /// looks once at start). At least 1.
    pub check_interval_secs: u64,
}

impl Default for DatasetCategorySettings {
    fn default() -> Self {
        DatasetCategorySettings {
            check_interval_secs: 3600,
        }
    }
}

impl DatasetCategorySettings {
    pub fn interval(&self) -> std::time::Duration {
        std::time::Duration::from_secs(self.check_interval_secs.max(1))
    }
}
