//! An egress file that the checks typed as an image (PNG or JPEG), served whole so that its
//! preview page shows it inline: through the same service and authorization as the preview,
//! and, like it, an audited read. The answer is sandboxed and never sniffed: the browser
//! shows it as the image type the checks found, or not at all.

use axum::body::Body;
use axum::extract::{Path, Query};
use axum::http::header;
use axum::response::{IntoResponse, Response};

use super::Page;
use super::pages::PreviewQuery;
use crate::service::egress as review;

/// The Content-Security-Policy of an image: nothing it could load or run, even opened alone.
const IMAGE_CSP: &str = "sandbox; default-src 'none'";

/// `/ui/applications/{id}/image?path=&round=`: the file's bytes, with its validated type.
pub(super) async fn image(
    page: Page,
    Path(id): Path<String>,
    Query(q): Query<PreviewQuery>,
) -> Response {
    let Some(caller) = page.caller() else {
        return super::to_sign_in();
    };
    match review::image(&page.state, &caller, &id, &q.path, q.round).await {
        Ok(i) => (
            [
                (header::CONTENT_TYPE, i.media_type.to_owned()),
                (header::CONTENT_LENGTH, i.file.size.to_string()),
                (header::X_CONTENT_TYPE_OPTIONS, "nosniff".to_owned()),
                (header::CONTENT_SECURITY_POLICY, IMAGE_CSP.to_owned()),
                (header::CONTENT_DISPOSITION, "inline".to_owned()),
            ],
            Body::from_stream(i.content),
        )
            .into_response(),
        Err(e) => page.error(e.into()),
    }
}

/// The address of the image `path` of round `round` of application `id`.
pub(super) fn url(id: &str, path: &str, round: i64) -> String {
    format!(
        "/ui/applications/{}/image?{}",
        super::pages::path_segment(id),
        serde_urlencoded::to_string([("path", path), ("round", &round.to_string())])
            .unwrap_or_default()
    )
}
