//! A dataset's restricted sharing over time: applying for an extension, and the dataset's
//! history. The workflows are in [`crate::service::extension`].

use axum::extract::Path;
use axum::http::StatusCode;

use super::{ApiJson, Cx};
use crate::error::{ApiResult, ErrorBody};
use crate::service::extension as svc;
use crate::wire::applications::Application;
use crate::wire::extension::{DatasetHistory, HistoryEvent, NewExtension};

/// Applies for an extension of a dataset's restricted sharing; a steward of its institution.
/// Approved, it moves the dataset's end (`dataset.extend`).
#[utoipa::path(post, path = "/api/v1/datasets/{id}/extension", operation_id = "extend_dataset", tag = "datasets", security(("bearer" = [])),
    params(("id" = String, Path)), request_body = NewExtension,
    responses((status = 201, body = Application), (status = 400, body = ErrorBody, description = "not a day after the current end, or a dataset not in restricted sharing (`bad_extension`); or the body does not parse"),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 413, body = ErrorBody)))]
pub async fn extend(
    cx: Cx,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<NewExtension>,
) -> ApiResult<(StatusCode, ApiJson<Application>)> {
    let row = svc::apply(&cx.state, &cx.caller, &id, &body.until, &body.justification).await?;
    Ok((
        StatusCode::CREATED,
        ApiJson(super::applications::new_app_summary(&cx.state, row)),
    ))
}

/// A dataset's history: every application, decision and change with who made it, oldest
/// first, and the access granted to it; for those who may read the dataset.
#[utoipa::path(get, path = "/api/v1/datasets/{id}/history", operation_id = "get_dataset_history", tag = "datasets", security(("bearer" = [])),
    params(("id" = String, Path)),
    responses((status = 200, body = DatasetHistory), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn history(cx: Cx, Path(id): Path<String>) -> ApiResult<ApiJson<DatasetHistory>> {
    let h = svc::history(&cx.state, &cx.caller, &id).await?;
    Ok(ApiJson(DatasetHistory {
        dataset: h.dataset,
        events: h
            .events
            .into_iter()
            .map(|e| HistoryEvent {
                detail: serde_json::from_str(&e.detail).unwrap_or(serde_json::Value::Null),
                seq: e.seq,
                at: e.at,
                actor: e.actor,
                action: e.action,
                subject: e.subject,
            })
            .collect(),
        grants: h
            .grants
            .into_iter()
            .map(super::applications::grant_dto)
            .collect(),
    }))
}
