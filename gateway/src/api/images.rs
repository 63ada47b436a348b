//! Images sandboxes may use. The workflow is [`crate::service::images`].

use axum::extract::State;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::ApiJson;
use crate::auth::Caller;
use crate::error::{ApiResult, ErrorBody};
use crate::service::images as svc;
use crate::state::AppState;
use crate::store::sandboxes::ImageRow;

#[derive(Serialize, Deserialize, ToSchema, Debug)]
pub struct Image {
    pub name: String,
    /// The image ID every sandbox of this name is pinned to.
    pub image_id: String,
    pub size: i64,
    pub allowed_by: String,
    pub allowed_at: String,
}

fn image_dto(i: ImageRow) -> Image {
    Image {
        name: i.name,
        image_id: i.image_id,
        size: i.size,
        allowed_by: i.allowed_by,
        allowed_at: i.allowed_at,
    }
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AllowImage {
    /// An image the engine has (`name:tag` or an ID); it is pinned by the ID it has now.
    pub name: String,
}

/// Images sandboxes may use.
#[utoipa::path(get, path = "/api/v1/images", tag = "sandboxes", security(("bearer" = [])),
    responses((status = 200, body = Vec<Image>), (status = 401, body = ErrorBody)))]
pub async fn images(
    State(state): State<AppState>,
    caller: Caller,
) -> ApiResult<ApiJson<Vec<Image>>> {
    let rows = svc::list(&state, &caller).await?;
    Ok(ApiJson(rows.into_iter().map(image_dto).collect()))
}

/// Allows an image, pinned by its current ID; operators.
#[utoipa::path(post, path = "/api/v1/images", tag = "sandboxes", security(("bearer" = [])), request_body = AllowImage,
    responses((status = 200, body = Image), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 503, body = ErrorBody)))]
pub async fn allow_image(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(body): ApiJson<AllowImage>,
) -> ApiResult<ApiJson<Image>> {
    Ok(ApiJson(image_dto(
        svc::allow_image(&state, &caller, &body.name).await?,
    )))
}
