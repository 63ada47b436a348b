//! A dataset's restricted sharing over time: applying for an extension, and the dataset's
//! history.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::applications::Grant;

/// An application to extend a dataset's restricted sharing; a steward of its institution.
#[derive(Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewExtension {
    /// The new end of restricted sharing (`YYYY-MM-DD`): a day after the current one. Refused
    /// 400 `bad_extension` otherwise, or for a dataset not in a restricted category with an
    /// end.
    #[schema(format = Date)]
    pub until: String,
    /// Why. Not blank; at most 64 KiB.
    #[schema(min_length = 1, max_length = 65536, pattern = r"\S")]
    pub justification: String,
}

/// One thing done to a dataset or to one of its applications, as the audit log recorded it.
#[derive(Serialize, Deserialize, ToSchema, Debug, Clone)]
pub struct HistoryEvent {
    /// Its place in the audit log.
    pub seq: i64,
    pub at: String,
    /// Who did it (`gateway` for what the gateway carried out).
    pub actor: String,
    /// `dataset.register`, `application.submit`, `application.decision`, `application.state`,
    /// `dataset.extend`, `dataset.category`, ...
    pub action: String,
    /// The dataset, or its application.
    pub subject: String,
    #[schema(value_type = Object)]
    pub detail: serde_json::Value,
}

/// A dataset's history: every application, decision and change with who made it, oldest
/// first, and the access granted to it.
#[derive(Serialize, Deserialize, ToSchema, Debug)]
pub struct DatasetHistory {
    pub dataset: String,
    pub events: Vec<HistoryEvent>,
    pub grants: Vec<Grant>,
}
