//! The public catalog: no token needed.

use super::{ApiQuery, Paged};
use crate::error::{ApiResult, ErrorBody};
use crate::service::catalog::{self as svc, Item};
use crate::service::page::PageAsk;
use crate::state::AppState;
use crate::wire::catalog::{CatalogEntry, CatalogQuery};

/// What the catalog shows of one dataset.
pub(crate) fn entry_dto(i: Item) -> CatalogEntry {
    let e = i.entry;
    CatalogEntry {
        id: i.id,
        category: i.category.into(),
        restricted_until: i.restricted_until,
        category_after: i.category_after.map(Into::into),
        registered_at: i.registered_at,
        title: e.title,
        description: e.description,
        institution: e.institution,
        institution_name: e.institution_name,
        hosting_institution: e.hosting_institution,
        funder: e.funder,
        project_name: e.project_name,
        japan_grant_number: e.japan_grant_number,
        data_no: e.data_no,
        date_issued: e.date_issued,
        research_field: e.research_field,
        data_type: e.data_type,
        approximate_size: e.approximate_size,
        utilisation_policy: e.utilisation_policy,
        access_rights: e.access_rights.as_str().to_owned(),
        repository: e.repository,
        consent_scope: e.consent_scope,
    }
}

/// Searches the public catalog: the datasets whose DMP allows secondary use (restricted closed
/// sharing, restricted open sharing, unrestricted open sharing), newest first, with the public
/// items of their DMPs. Anyone may search it, without a token.
#[utoipa::path(get, path = "/api/v1/catalog", operation_id = "search_catalog", tag = "datasets",
    params(CatalogQuery),
    responses((status = 200, body = Vec<CatalogEntry>, headers(("x-next-cursor" = String, description = "the cursor of the next page, when there is one"))),
        (status = 400, body = ErrorBody, description = "the search text is too long (`too_long`), or the query does not parse")))]
pub async fn search(
    axum::extract::State(state): axum::extract::State<AppState>,
    ApiQuery(q): ApiQuery<CatalogQuery>,
) -> ApiResult<Paged<CatalogEntry>> {
    let ask = PageAsk {
        limit: q.limit,
        cursor: q.cursor,
    };
    let page = svc::search(&state, q.q.as_deref().unwrap_or(""), &ask).await?;
    Ok(super::paged(page, entry_dto))
}
