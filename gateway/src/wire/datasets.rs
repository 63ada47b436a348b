//! Datasets: their records, their DMPs, and registering one.

use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::{same_values, wire_enum};

wire_enum! {
    /// AMED's management category (管理区分): unshared 非共有, restricted closed sharing
    /// 制限共有, restricted open sharing 制限公開, unrestricted open sharing 非制限公開.
    Category: "management category" {
        Unshared = "unshared",
        RestrictedClosedSharing = "restricted_closed_sharing",
        RestrictedOpenSharing = "restricted_open_sharing",
        UnrestrictedOpenSharing = "unrestricted_open_sharing",
    }
}
same_values!(Category <=> policy::dmp::Category {
    Unshared, RestrictedClosedSharing, RestrictedOpenSharing, UnrestrictedOpenSharing,
});

wire_enum! {
    /// Where a dataset stands: registered (its listing applied for), listed (its content in
    /// the STORE).
    DatasetState: "dataset state" {
        Registered = "registered",
        Listed = "listed",
    }
}

wire_enum! {
    /// The shapes a DMP is exported in: our own JSON, or GakuNin RDM's common metadata items.
    DmpFormat: "DMP format" {
        Json = "json",
        Gakunin = "gakunin",
    }
}

/// A DMP to register, as `policy::dmp` reads it: the common metadata items (`title`,
/// `funder`, `japan_grant_number`, …), `management_category`, `restricted_sharing_ends` with
/// `category_after` for the restricted categories, `consent` with its `scope`, and
/// `providing_institution` (`id`, `name`). `deploy/examples/dmp.json` is a complete one.
/// Every bad field is named in the answer (400 `bad_dmp`).
#[derive(Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewDataset {
    #[schema(value_type = Object)]
    pub dmp: serde_json::Value,
}

#[derive(Serialize, Deserialize, ToSchema, Debug, Clone)]
pub struct Dataset {
    pub id: String,
    pub title: String,
    /// The data-providing institution's identifier.
    pub institution: String,
    pub category: Category,
    /// The end of restricted sharing (`YYYY-MM-DD`), for the restricted categories.
    pub restricted_until: Option<String>,
    /// The category that follows restricted sharing.
    pub category_after: Option<Category>,
    pub state: DatasetState,
    /// The steward who registered it.
    pub created_by: String,
    pub created_at: String,
    pub updated_at: String,
}

#[derive(Serialize, Deserialize, ToSchema, Debug)]
pub struct DatasetDetail {
    #[serde(flatten)]
    pub dataset: Dataset,
    /// Its applications (listing, extension), oldest first.
    pub applications: Vec<String>,
}

/// A registered dataset and the listing application opened for it.
#[derive(Serialize, Deserialize, ToSchema, Debug)]
pub struct Registered {
    /// The dataset's id.
    pub id: String,
    /// Its listing application's id.
    pub application: String,
    pub dataset: Dataset,
}

#[derive(Serialize, Deserialize, IntoParams, Default)]
#[into_params(parameter_in = Query)]
pub struct DmpQuery {
    /// json (default) or gakunin.
    #[param(value_type = Option<DmpFormat>, inline)]
    pub format: Option<String>,
}
