//! Datasets: registering one with its DMP (which opens its listing application), the list,
//! one dataset, its DMP, and uploading its content once its listing is approved.

use axum::body::Body;
use axum::extract::Path;
use axum::http::StatusCode;

use super::{ApiJson, ApiQuery, Cx, Paged};
use crate::error::{ApiError, ApiResult, ErrorBody, ErrorCode};
use crate::service::datasets as svc;
use crate::store::datasets::{ContentRow, DatasetRow};
use crate::wire::PageQuery;
use crate::wire::datasets::{
    Content, Dataset, DatasetDetail, DatasetState, DmpFormat, DmpQuery, NewDataset, Registered,
    Uploaded,
};
use crate::wire::ingress::ArchiveUpload;

fn dataset_dto(d: DatasetRow) -> ApiResult<Dataset> {
    let bad = |what: &str, v: &str| {
        ApiError::Internal(anyhow::anyhow!("dataset {}: stored {what} `{v}`", d.id))
    };
    let category = d
        .category
        .parse()
        .map_err(|_| bad("category", &d.category))?;
    let category_after = match &d.category_after {
        Some(c) => Some(c.parse().map_err(|_| bad("category", c))?),
        None => None,
    };
    let state: DatasetState = d.state.parse().map_err(|_| bad("state", &d.state))?;
    Ok(Dataset {
        category,
        category_after,
        state,
        id: d.id,
        title: d.title,
        institution: d.institution,
        restricted_until: d.restricted_until,
        created_by: d.created_by,
        created_at: d.created_at,
        updated_at: d.updated_at,
    })
}

fn content_dto(c: ContentRow) -> Content {
    Content {
        files: c.files as u64,
        bytes: c.bytes as u64,
        manifest_sha256: c.manifest_sha256,
        upload_sha256: c.upload_sha256,
        upload_bytes: c.upload_bytes as u64,
        format: c.format,
        tar_sha256: c.tar_sha256,
        uploaded_by: c.uploaded_by,
        uploaded_at: c.uploaded_at,
    }
}

/// Registers a dataset with its DMP and opens its listing application; a steward of the DMP's
/// data-providing institution (their token's `institution`). A DMP that breaks its rules is
/// refused 400 `bad_dmp`, every bad field named.
#[utoipa::path(post, path = "/api/v1/datasets", operation_id = "register_dataset", tag = "datasets", security(("bearer" = [])), request_body = NewDataset,
    responses((status = 201, body = Registered), (status = 400, body = ErrorBody, description = "the DMP breaks its rules (`bad_dmp`, every field named) or the body does not parse"),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody, description = "not a steward, or one of another institution"),
        (status = 413, body = ErrorBody)))]
pub async fn register(
    cx: Cx,
    ApiJson(body): ApiJson<NewDataset>,
) -> ApiResult<(StatusCode, ApiJson<Registered>)> {
    let r = svc::register(&cx.state, &cx.caller, &body.dmp).await?;
    Ok((
        StatusCode::CREATED,
        ApiJson(Registered {
            id: r.dataset.id.clone(),
            application: r.application.id,
            dataset: dataset_dto(r.dataset)?,
        }),
    ))
}

/// The datasets the caller may open, newest first: every one for reviewers, auditors and
/// admins; their institution's for stewards.
#[utoipa::path(get, path = "/api/v1/datasets", operation_id = "list_datasets", tag = "datasets", security(("bearer" = [])),
    params(PageQuery),
    responses((status = 200, body = Vec<Dataset>, headers(("x-next-cursor" = String, description = "the cursor of the next page, when there is one"))), (status = 400, body = ErrorBody, description = "the query does not parse"), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn list(cx: Cx, ApiQuery(p): ApiQuery<PageQuery>) -> ApiResult<Paged<Dataset>> {
    let page = svc::list(&cx.state, &cx.caller, &super::page_ask(p)).await?;
    let items = page
        .items
        .into_iter()
        .map(dataset_dto)
        .collect::<ApiResult<_>>()?;
    Ok((super::next_cursor(page.next), ApiJson(items)))
}

/// One dataset and its applications.
#[utoipa::path(get, path = "/api/v1/datasets/{id}", operation_id = "get_dataset", tag = "datasets", security(("bearer" = [])),
    params(("id" = String, Path)),
    responses((status = 200, body = DatasetDetail), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn show(cx: Cx, Path(id): Path<String>) -> ApiResult<ApiJson<DatasetDetail>> {
    let d = svc::show(&cx.state, &cx.caller, &id).await?;
    Ok(ApiJson(DatasetDetail {
        dataset: dataset_dto(d.dataset)?,
        applications: d.applications.into_iter().map(|a| a.id).collect(),
        content: d.content.map(content_dto),
    }))
}

/// Uploads a dataset's content (a tar, or a tar compressed with zstd, as the raw request body)
/// into the STORE and lists it: a steward of its institution, once its listing is approved,
/// once (409 `not_approved` before, `dataset_listed` after). Read with the ingress rules and
/// the `[datasets]` limits; refusals name the entry and the rule, and nothing of a refused
/// upload is kept.
#[utoipa::path(post, path = "/api/v1/datasets/{id}/content", operation_id = "upload_dataset", tag = "datasets", security(("bearer" = [])),
    params(("id" = String, Path)),
    request_body(content = ArchiveUpload, content_type = "application/octet-stream", description = "a tar or tar.zst archive"),
    responses((status = 201, body = Uploaded), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody, description = "the listing is not approved, or the dataset is listed already"),
        (status = 413, body = ErrorBody), (status = 422, body = ErrorBody), (status = 503, body = ErrorBody, description = "too many uploads at once (busy)")))]
pub async fn upload(
    cx: Cx,
    Path(id): Path<String>,
    body: Body,
) -> ApiResult<(StatusCode, ApiJson<Uploaded>)> {
    let l =
        crate::service::dataset_upload::upload(&cx.state, &cx.caller, &id, body.into_data_stream())
            .await?;
    Ok((
        StatusCode::CREATED,
        ApiJson(Uploaded {
            dataset: dataset_dto(l.dataset)?,
            content: content_dto(l.content),
        }),
    ))
}

/// A dataset's DMP: our own JSON (`format=json`, what `POST /api/v1/datasets` takes) or the
/// common metadata items in GakuNin RDM's shape (`format=gakunin`).
#[utoipa::path(get, path = "/api/v1/datasets/{id}/dmp", operation_id = "get_dataset_dmp", tag = "datasets", security(("bearer" = [])),
    params(("id" = String, Path), DmpQuery),
    responses((status = 200, body = Object), (status = 400, body = ErrorBody, description = "an unknown format (`bad_filter`)"),
        (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn dmp(
    cx: Cx,
    Path(id): Path<String>,
    ApiQuery(q): ApiQuery<DmpQuery>,
) -> ApiResult<ApiJson<serde_json::Value>> {
    let format = match q.format.as_deref() {
        None => DmpFormat::Json,
        Some(f) => f.parse().map_err(|e: crate::wire::UnknownValue| {
            ApiError::bad_request(ErrorCode::BadFilter, e.to_string())
        })?,
    };
    let dmp = svc::dmp(&cx.state, &cx.caller, &id).await?;
    let body = match format {
        DmpFormat::Json => serde_json::to_value(&dmp).map_err(anyhow::Error::new)?,
        DmpFormat::Gakunin => policy::dmp::to_gakunin(&dmp),
    };
    Ok(ApiJson(body))
}
