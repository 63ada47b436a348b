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
    /// Where a dataset stands: registered (its listing applied for), approved (its listing
    /// approved, its content awaited), listed (its content in the STORE), unlisted (its
    /// listing rejected or withdrawn).
    DatasetState: "dataset state" {
        Registered = "registered",
        Approved = "approved",
        Listed = "listed",
        Unlisted = "unlisted",
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
    /// Once listed: what its content in the STORE is.
    pub content: Option<Content>,
}

/// A listed dataset's content: its manifest's summary and the upload it came from.
#[derive(Serialize, Deserialize, ToSchema, Debug, Clone)]
pub struct Content {
    pub files: u64,
    /// The files' bytes, summed.
    pub bytes: u64,
    /// The SHA-256 of the manifest as `sha256sum` prints it: one `<sha256>  <path>` line per
    /// file, sorted by path.
    pub manifest_sha256: String,
    /// The upload as sent: its SHA-256, size and format (`tar` or `tar.zst`).
    pub upload_sha256: String,
    pub upload_bytes: u64,
    pub format: String,
    /// The tar's SHA-256 (inside a tar.zst).
    pub tar_sha256: String,
    pub uploaded_by: String,
    pub uploaded_at: String,
}

/// A dataset listed by its upload.
#[derive(Serialize, Deserialize, ToSchema, Debug)]
pub struct Uploaded {
    pub dataset: Dataset,
    pub content: Content,
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
