//! The analysts' side of the pages: their own applications and their projects' releases
//! (`/ui/mine`), and the downloads a page offers: an approved release, encrypted to its
//! requester, and the files attached to an application (institution reviews, opinions).
//!
//! A download goes through the service the API's goes through, so it is authorized, counted
//! and audited exactly as there. It is always sent as an attachment of an opaque type, never
//! shown in the browser, under the pages' security headers; its SHA-256 is on the page that
//! links to it, so the file saved can be checked against it.

use axum::body::Body;
use axum::extract::{Path, Query};
use axum::http::{HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};

use super::Page;
use super::pages::path_segment;
use crate::api::applications::file_stream;
use crate::auth::Caller;
use crate::service::applications as apps;
use crate::service::egress;
use crate::service::mine;
use crate::service::page::PageAsk;
use crate::store::egress::ReleaseRow;

#[derive(Deserialize, Default)]
pub(super) struct MineQuery {
    /// Where the page of applications starts.
    cursor: Option<String>,
    /// Where the page of releases starts.
    releases: Option<String>,
}

fn ask(cursor: &Option<String>) -> PageAsk {
    PageAsk {
        limit: Some(50),
        cursor: cursor.clone().filter(|c| !c.is_empty()),
    }
}

/// The signed-in caller's applications and their projects' releases.
pub(super) async fn mine(page: Page, Query(q): Query<MineQuery>) -> Response {
    let Some(caller) = page.caller() else {
        return super::to_sign_in();
    };
    let found = match mine::overview(&page.state, &caller, ask(&q.cursor), &ask(&q.releases)).await
    {
        Ok(m) => m,
        Err(e) => return page.error(e.into()),
    };
    // A next page of one list keeps the other where it is.
    let link = |cursor: Option<&str>, releases: Option<&str>| {
        let mut params = vec![("lang", page.lang.code())];
        params.extend(cursor.map(|c| ("cursor", c)));
        params.extend(releases.map(|c| ("releases", c)));
        format!(
            "/ui/mine?{}",
            serde_urlencoded::to_string(params).unwrap_or_default()
        )
    };
    let next_applications = found
        .applications
        .next
        .as_deref()
        .map(|c| link(Some(c), q.releases.as_deref()));
    let next_releases = found
        .releases
        .next
        .as_deref()
        .map(|c| link(q.cursor.as_deref(), Some(c)));
    let applications: Vec<Value> = found
        .applications
        .items
        .iter()
        .map(super::pages::application_row)
        .collect();
    let now = crate::time::now();
    let releases: Vec<Value> = found
        .releases
        .items
        .iter()
        .map(|r| {
            let mut v = release_data(&r.release, &caller, &now);
            v["title"] = json!(r.title);
            v["project"] = json!(r.project_id);
            v["href"] = json!(format!(
                "/ui/applications/{}",
                path_segment(&r.release.application_id)
            ));
            v
        })
        .collect();
    page.render(
        StatusCode::OK,
        "mine.html",
        json!({
            "applications": applications,
            "releases": releases,
            "next_applications": next_applications,
            "next_releases": next_releases,
        }),
    )
}

/// What a page shows of a release: its state as the caller meets it (an expired release is
/// built still, but no longer downloaded), its package, and a download link for its
/// requester.
fn release_data(r: &ReleaseRow, caller: &Caller, now: &str) -> Value {
    let expired = r.expires_at.as_deref().is_some_and(|e| e <= now);
    let status = match r.state.as_str() {
        "built" if expired => "expired",
        s => s,
    };
    let requester = r.requester == caller.sub.as_str();
    json!({
        "application": r.application_id,
        "requester": r.requester,
        "status": status,
        "approved_at": r.approved_at,
        "built_at": r.built_at,
        "expires_at": r.expires_at,
        "sha256": r.package_sha256,
        "size": r.package_size,
        "downloads": r.downloads,
        "revoked_by": r.revoked_by,
        "revoked_at": r.revoked_at,
        "mine": requester,
        "download": (requester && status == "built").then(|| format!(
            "/ui/applications/{}/release",
            path_segment(&r.application_id)
        )),
    })
}

/// What the application page shows for downloading: the release of an egress application
/// (when the caller reads its egress and a release was approved) and the attached files.
pub(super) fn downloads(
    d: &apps::Detail,
    egress: Option<&egress::Detail>,
    caller: &Caller,
) -> Value {
    let now = crate::time::now();
    let files: Vec<Value> = d
        .attachments
        .iter()
        .filter_map(|a| {
            let (name, sha256) = (a.file_name.as_ref()?, a.file_sha256.as_ref()?);
            Some(json!({
                "name": name,
                "sha256": sha256,
                "size": a.file_size,
                "kind": a.kind,
                "author": a.author,
                "href": format!(
                    "/ui/applications/{}/attachments/{}/file",
                    path_segment(&d.row.id),
                    path_segment(&a.id)
                ),
            }))
        })
        .collect();
    json!({
        "release": egress
            .and_then(|e| e.release.as_ref())
            .map(|r| release_data(r, caller, &now)),
        "files": files,
    })
}

/// `name` as a file name in a `Content-Disposition: attachment`: a stand-in of safe ASCII
/// for every client, and the name itself percent-encoded in UTF-8 for those that read it
/// (RFC 6266, RFC 8187). No quote, backslash, control character or leading dot gets through.
fn disposition(name: &str) -> String {
    let mut plain: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "-_.+()".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    if plain.starts_with('.') {
        plain.replace_range(..1, "_");
    }
    let encoded: String = name
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"!#$&+-.^_`|~".contains(&b) {
                char::from(b).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect();
    format!("attachment; filename=\"{plain}\"; filename*=UTF-8''{encoded}")
}

/// A file to save, never to show: an opaque type, a file name, its length and SHA-256. The
/// pages' layer (`super::secure`) adds `nosniff` and the rest of the pages' headers.
fn file_response(file: tokio::fs::File, name: &str, size: Option<u64>, sha256: &str) -> Response {
    let mut resp = Body::from_stream(file_stream(file)).into_response();
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    if let Ok(v) = HeaderValue::from_str(&disposition(name)) {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    if let Some(n) = size {
        h.insert(header::CONTENT_LENGTH, HeaderValue::from(n));
    }
    if let Ok(v) = HeaderValue::from_str(sha256) {
        h.insert(HeaderName::from_static("x-content-sha256"), v);
    }
    resp
}

/// Downloads an approved release as the API gives it: the age file, encrypted to the key its
/// requester registered. Its requester only; counted and audited by the service.
pub(super) async fn release(page: Page, Path(id): Path<String>) -> Response {
    let Some(caller) = page.caller() else {
        return super::to_sign_in();
    };
    let d = match egress::download(&page.state, &caller, &id).await {
        Ok(d) => d,
        Err(e) => return page.error(e.into()),
    };
    let sha = d.release.package_sha256.clone().unwrap_or_default();
    let size = d.release.package_size.and_then(|n| u64::try_from(n).ok());
    file_response(
        d.file,
        &format!("{}.tar.zst.age", d.release.application_id),
        size,
        &sha,
    )
}

/// Downloads an attachment's file, as the API does: an audited read.
pub(super) async fn attachment_file(
    page: Page,
    Path((id, attachment)): Path<(String, String)>,
) -> Response {
    let Some(caller) = page.caller() else {
        return super::to_sign_in();
    };
    let f = match apps::attachment_file(&page.state, &caller, &id, &attachment).await {
        Ok(f) => f,
        Err(e) => return page.error(e.into()),
    };
    let size = f.file.metadata().await.ok().map(|m| m.len());
    file_response(f.file, &f.name, size, &f.sha256)
}

#[cfg(test)]
mod tests {
    use super::disposition;

    #[test]
    fn a_file_name_is_made_safe_for_the_header_and_kept_in_full_beside_it() {
        assert_eq!(
            disposition("review.pdf"),
            "attachment; filename=\"review.pdf\"; filename*=UTF-8''review.pdf"
        );
        assert_eq!(
            disposition("倫理審査 \"final\".pdf"),
            "attachment; filename=\"______final_.pdf\"; \
             filename*=UTF-8''%E5%80%AB%E7%90%86%E5%AF%A9%E6%9F%BB%20%22final%22.pdf"
        );
        assert_eq!(
            disposition(".profile;x=1"),
            "attachment; filename=\"_profile_x_1\"; filename*=UTF-8''.profile%3Bx%3D1"
        );
        for name in ["a\\b", "a\r\nb", "ü"] {
            assert!(axum::http::HeaderValue::from_str(&disposition(name)).is_ok());
        }
    }
}
