//! The public catalog: a search and what it shows of each dataset.

use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::datasets::Category;

/// A search of the catalog, and its page.
#[derive(Serialize, Deserialize, IntoParams, Default, Debug, Clone)]
#[into_params(parameter_in = Query)]
pub struct CatalogQuery {
    /// Text to find in a dataset's title, description or keywords (research field, data
    /// type, institution), in any case and either language; every dataset when absent or
    /// blank. Longer than 200 characters is refused 400 `too_long`.
    #[param(max_length = 200)]
    pub q: Option<String>,
    /// At most this many (default 100; fewer than 1 counts as 1, more than 1000 as 1000).
    pub limit: Option<i64>,
    /// Where the page starts: the `x-next-cursor` of the page before.
    #[param(max_length = 512, pattern = r"^[A-Za-z0-9_-]+$")]
    pub cursor: Option<String>,
}

/// A dataset as the public catalog shows it: the public items of its DMP, never its content,
/// its files or the people and contacts behind it.
#[derive(Serialize, Deserialize, ToSchema, Debug, Clone)]
pub struct CatalogEntry {
    /// The dataset's id (what an access application names).
    pub id: String,
    pub title: String,
    pub description: String,
    /// The management category: never `unshared`.
    pub category: Category,
    /// The end of restricted sharing (`YYYY-MM-DD`), for the restricted categories.
    pub restricted_until: Option<String>,
    pub category_after: Option<Category>,
    /// The data-providing institution's identifier and name.
    pub institution: String,
    pub institution_name: String,
    pub hosting_institution: String,
    pub funder: String,
    pub project_name: String,
    pub japan_grant_number: String,
    pub data_no: String,
    pub date_issued: String,
    pub research_field: String,
    pub data_type: String,
    pub approximate_size: Option<String>,
    pub utilisation_policy: String,
    /// `open`, `restricted`, `metadata_only` or `embargoed`.
    pub access_rights: String,
    pub repository: Option<String>,
    /// The uses the research participants consented to.
    pub consent_scope: String,
    pub registered_at: String,
}
