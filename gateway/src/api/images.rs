//! Images sandboxes may use. The workflow is [`crate::service::images`].

use super::{ApiJson, ApiQuery, Cx, Paged};
use crate::error::{ApiResult, ErrorBody};
use crate::service::images as svc;
use crate::store::sandboxes::ImageRow;
use crate::wire::PageQuery;
use crate::wire::sandboxes::{AllowImage, Image};

fn image_dto(i: ImageRow) -> Image {
    Image {
        name: i.name,
        image_id: i.image_id,
        size: i.size,
        allowed_by: i.allowed_by,
        allowed_at: i.allowed_at,
        commands: i.commands,
        interpreters: i.interpreters,
    }
}

/// Images sandboxes may use, in the order of their names; a page at a time.
#[utoipa::path(get, path = "/api/v1/images", operation_id = "list_images", tag = "sandboxes", security(("bearer" = [])), params(PageQuery),
    responses((status = 200, body = Vec<Image>, headers(("x-next-cursor" = String, description = "the cursor of the next page, when there is one"))), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody)))]
pub async fn images(cx: Cx, ApiQuery(p): ApiQuery<PageQuery>) -> ApiResult<Paged<Image>> {
    let page = svc::list(&cx.state, &cx.caller, &super::page_ask(p)).await?;
    Ok(super::paged(page, image_dto))
}

/// Allows an image, pinned by its current ID; operators.
#[utoipa::path(post, path = "/api/v1/images", operation_id = "allow_image", tag = "sandboxes", security(("bearer" = [])), request_body = AllowImage,
    responses((status = 400, body = ErrorBody, description = "the request does not parse or breaks a rule"), (status = 200, body = Image), (status = 401, body = ErrorBody), (status = 413, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 503, body = ErrorBody)))]
pub async fn allow_image(cx: Cx, ApiJson(body): ApiJson<AllowImage>) -> ApiResult<ApiJson<Image>> {
    Ok(ApiJson(image_dto(
        svc::allow_image(
            &cx.state,
            &cx.caller,
            &body.name,
            body.commands,
            body.interpreters,
        )
        .await?,
    )))
}
