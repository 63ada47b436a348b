//! The review pages: the queue, an application with everything reviewers read about it and
//! the vote form, and the preview of an egress file.
//!
//! A vote form carries, beside the session's CSRF token, a one-time nonce: a MAC of the
//! application, its round and the votes it had when the page was rendered. Once the vote is
//! counted the nonce no longer matches, so the same form sent twice (a double click, a
//! reload) is refused instead of voting twice; so is a form opened before someone else voted.

use axum::extract::{Form, Path, Query};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use hmac::{Hmac, Mac};
use policy::review::{Choice, Kind, State};
use serde::Deserialize;
use serde_json::{Value, json};

use super::Page;
use super::session::{csrf_ok, csrf_refused, same_secret};
use crate::error::{ApiError, ErrorCode};
use crate::service::applications::{self as apps, ListFilter};
use crate::service::egress as review;
use crate::service::page::PageAsk;

#[derive(Deserialize, Default)]
pub(super) struct QueueQuery {
    #[serde(default)]
    kind: String,
    #[serde(default)]
    state: String,
    #[serde(default)]
    project: String,
    cursor: Option<String>,
}

fn bad_filter(message: String) -> ApiError {
    ApiError::bad_request(ErrorCode::BadFilter, message)
}

/// An optional filter from a form's field: empty means none.
fn filter<T: std::str::FromStr>(v: &str) -> Result<Option<T>, ApiError>
where
    T::Err: std::fmt::Display,
{
    let v = v.trim();
    if v.is_empty() {
        return Ok(None);
    }
    v.parse()
        .map(Some)
        .map_err(|e: T::Err| bad_filter(e.to_string()))
}

/// The review queue: the applications the caller may see, filtered by kind, state and
/// project, newest first, a page at a time.
pub(super) async fn queue(page: Page, Query(q): Query<QueueQuery>) -> Response {
    let Some(caller) = page.caller() else {
        return super::to_sign_in();
    };
    let filters = (|| -> Result<ListFilter, ApiError> {
        Ok(ListFilter {
            kind: filter::<Kind>(&q.kind)?,
            state: filter::<State>(&q.state)?,
            project: Some(q.project.trim().to_owned()).filter(|p| !p.is_empty()),
            requester: None,
            page: PageAsk {
                limit: Some(50),
                cursor: q.cursor.clone().filter(|c| !c.is_empty()),
            },
        })
    })();
    let found = match filters {
        Ok(f) => apps::list(&page.state, &caller, f)
            .await
            .map_err(ApiError::from),
        Err(e) => Err(e),
    };
    let found = match found {
        Ok(p) => p,
        Err(e) => return page.error(e),
    };
    let next = found.next.map(|c| {
        let params = [
            ("kind", q.kind.as_str()),
            ("state", q.state.as_str()),
            ("project", q.project.as_str()),
            ("cursor", c.as_str()),
            ("lang", page.lang.code()),
        ];
        format!(
            "/ui/queue?{}",
            serde_urlencoded::to_string(params).unwrap_or_default()
        )
    });
    let items: Vec<Value> = found.items.iter().map(application_row).collect();
    page.render(
        StatusCode::OK,
        "queue.html",
        json!({
            "items": items,
            "next": next,
            "kinds": Kind::ALL.map(Kind::as_str),
            "states": State::ALL.map(State::as_str),
            "filter": { "kind": q.kind, "state": q.state, "project": q.project },
        }),
    )
}

/// One application as a row of `applications_table.html` (the queue, My applications).
pub(super) fn application_row(s: &apps::Summary) -> Value {
    json!({
        "id": s.row.id,
        "href": format!("/ui/applications/{}", path_segment(&s.row.id)),
        "kind": s.row.kind.as_str(),
        "title": s.row.title,
        "owner": s.row.project_id.as_deref().or(s.row.dataset_id.as_deref()),
        "requester": s.row.requester,
        "state": s.row.state.as_str(),
        "round": s.row.round,
        "approvals": apps::approvals(s),
        "created_at": s.row.created_at,
    })
}

/// The one-time nonce of a vote form on `app` as it stands.
fn vote_nonce(csrf: &str, d: &apps::Detail) -> String {
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(csrf.as_bytes())
        .expect("HMAC takes a key of any length");
    mac.update(format!("vote\n{}\n{}\n{}", d.row.id, d.row.round, d.decisions.len()).as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

/// Everything the application page shows of `d` (and, for egress, of `egress`).
fn application_data(d: &apps::Detail, egress: Option<&review::Detail>, nonce: &str) -> Value {
    let mut rounds: Vec<Value> = Vec::new();
    for r in 1..=d.row.round {
        let votes: Vec<Value> = d
            .decisions
            .iter()
            .filter(|v| v.round == r)
            .map(|v| {
                json!({
                    "reviewer": v.reviewer,
                    "choice": v.choice.as_str(),
                    "comment": v.comment,
                    "at": v.decided_at,
                })
            })
            .collect();
        let files: Vec<Value> = egress
            .map(|e| {
                e.files
                    .iter()
                    .filter(|f| f.round == r)
                    .map(|f| {
                        let findings: Vec<Value> = serde_json::from_str::<Vec<Value>>(&f.findings)
                            .unwrap_or_default()
                            .into_iter()
                            .map(|x| {
                                json!({
                                    "outcome": x["outcome"],
                                    "message": x["message"],
                                })
                            })
                            .collect();
                        json!({
                            "path": f.path,
                            "size": f.size,
                            "sha256": f.sha256,
                            "content_type": f.content_type,
                            "outcome": f.outcome,
                            "findings": findings,
                            "exception": f.exception,
                            "preview": format!(
                                "/ui/applications/{}/preview?{}",
                                d.row.id,
                                serde_urlencoded::to_string([
                                    ("path", f.path.as_str()),
                                    ("round", &r.to_string()),
                                ])
                                .unwrap_or_default()
                            ),
                        })
                    })
                    .collect()
            })
            .unwrap_or_default();
        rounds.push(json!({ "round": r, "votes": votes, "files": files }));
    }
    let history: Vec<Value> = egress
        .map(|e| {
            e.history
                .iter()
                .map(|h| {
                    json!({
                        "application": h.application,
                        "state": h.state,
                        "at": h.at,
                        "files": h.files.iter().map(|f| json!({
                            "path": f.path, "sha256": f.sha256, "size": f.size,
                        })).collect::<Vec<_>>(),
                    })
                })
                .collect()
        })
        .unwrap_or_default();
    json!({
        "app": {
            "id": d.row.id,
            "kind": d.row.kind.as_str(),
            "title": d.row.title,
            "description": d.row.description,
            "project": d.row.project_id,
            "dataset": d.row.dataset_id,
            "requester": d.row.requester,
            "state": d.row.state.as_str(),
            "round": d.row.round,
            "created_at": d.row.created_at,
            "open": matches!(d.row.state, State::Submitted | State::InReview),
        },
        "checks": d.checks.iter().map(|c| json!({
            "check": c.check, "outcome": c.outcome, "reasons": c.reasons,
        })).collect::<Vec<_>>(),
        "attachments": d.attachments.iter().map(|a| json!({
            "kind": a.kind, "author": a.author, "body": a.body,
            "file_name": a.file_name, "file_sha256": a.file_sha256, "file_size": a.file_size,
            "at": a.created_at,
        })).collect::<Vec<_>>(),
        "rounds": rounds,
        "egress": egress.map(|e| json!({
            "sandbox": e.sandbox,
            "release": e.release.as_ref().map(|r| json!({"state": r.state, "approved_at": r.approved_at})),
        })),
        "history": history,
        "nonce": nonce,
        "choices": Choice::ALL.map(Choice::as_str),
    })
}

/// The application page, with `problem` (a refused vote) shown above the form.
async fn application_page(
    page: &Page,
    id: &str,
    status: StatusCode,
    notice: Option<Value>,
) -> Response {
    let Some(caller) = page.caller() else {
        return super::to_sign_in();
    };
    let d = match apps::show(&page.state, &caller, id).await {
        Ok(d) => d,
        Err(e) => return page.error(e.into()),
    };
    let egress = if d.row.kind == Kind::Egress {
        match review::detail(&page.state, &caller, id).await {
            Ok(e) => Some(e),
            // Stewards see the application, not what it takes out.
            Err(crate::service::Error::Denied(_) | crate::service::Error::NotFound(_)) => None,
            Err(e) => return page.error(e.into()),
        }
    } else {
        None
    };
    let csrf = page
        .session
        .as_ref()
        .map(|s| s.csrf.clone())
        .unwrap_or_default();
    let mut data = application_data(&d, egress.as_ref(), &vote_nonce(&csrf, &d));
    data["notice"] = notice.unwrap_or(Value::Null);
    data["can_vote"] = json!(caller.roles.contains(policy::roles::Role::Reviewer));
    data["downloads"] = super::mine::downloads(&d, egress.as_ref(), &caller);
    data["dataset_app"] = super::dataset_apps::data(page, &caller, &d).await;
    page.render(status, "application.html", data)
}

#[derive(Deserialize, Default)]
pub(super) struct Done {
    #[serde(default)]
    voted: String,
}

/// One application, with everything reviewers read about it and the vote form.
pub(super) async fn application(
    page: Page,
    Path(id): Path<String>,
    Query(q): Query<Done>,
) -> Response {
    let notice = Choice::ALL
        .iter()
        .find(|c| c.as_str() == q.voted)
        .map(|c| json!({ "ok": true, "choice": c.as_str() }));
    application_page(&page, &id, StatusCode::OK, notice).await
}

#[derive(Deserialize)]
pub(super) struct Vote {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    nonce: String,
    #[serde(default)]
    choice: String,
    #[serde(default)]
    comment: String,
    /// Conditions an approval of an access application may tighten: an earlier last day,
    /// no commercial use, output hidden from the analysts (empty or absent: as asked).
    #[serde(default)]
    until: String,
    #[serde(default)]
    no_commercial: Option<String>,
    #[serde(default)]
    hide_logs: Option<String>,
}

impl Vote {
    /// The conditions the form sets, none when it sets none.
    fn conditions(&self) -> Option<crate::service::access::Conditions> {
        let c = crate::service::access::Conditions {
            until: Some(self.until.trim().to_owned()).filter(|u| !u.is_empty()),
            commercial: self.no_commercial.as_ref().map(|_| false),
            logs_hidden: self.hide_logs.as_ref().map(|_| true),
        };
        (!c.is_empty()).then_some(c)
    }
}

/// Votes as the signed-in reviewer: approve, reject or request changes, with a comment. A
/// refusal (one's own or one's project's application, a vote already cast) is the service's,
/// shown on the application page.
pub(super) async fn decide(page: Page, Path(id): Path<String>, Form(v): Form<Vote>) -> Response {
    if !csrf_ok(&page, &v.csrf) {
        return page.error(csrf_refused());
    }
    let Some(caller) = page.caller() else {
        return super::to_sign_in();
    };
    let refused = |status: StatusCode, code: &str, message: String| {
        Some(json!({ "ok": false, "code": code, "message": message, "status": status.as_u16() }))
    };
    let Some(choice) = Choice::ALL.iter().copied().find(|c| c.as_str() == v.choice) else {
        let n = refused(
            StatusCode::BAD_REQUEST,
            ErrorCode::BadRequest.as_str(),
            "choose approve, reject or request changes".into(),
        );
        return application_page(&page, &id, StatusCode::BAD_REQUEST, n).await;
    };
    // The nonce of the application as it stands: the form's only while nothing changed.
    let current = match apps::show(&page.state, &caller, &id).await {
        Ok(d) => d,
        Err(e) => return page.error(e.into()),
    };
    let csrf = page
        .session
        .as_ref()
        .map(|s| s.csrf.clone())
        .unwrap_or_default();
    if !same_secret(&vote_nonce(&csrf, &current), &v.nonce) {
        let n = refused(
            StatusCode::CONFLICT,
            "stale_form",
            "this form was sent already, or the application changed since it was opened: \
             review it again"
                .into(),
        );
        return application_page(&page, &id, StatusCode::CONFLICT, n).await;
    }
    match apps::decide(
        &page.state,
        &caller,
        &id,
        choice,
        v.comment.trim(),
        v.conditions(),
    )
    .await
    {
        Ok(_) => {
            let mut r = Redirect::to(&format!(
                "/ui/applications/{}?voted={}",
                crate::web::pages::path_segment(&id),
                choice.as_str()
            ))
            .into_response();
            *r.status_mut() = StatusCode::SEE_OTHER;
            r
        }
        Err(e) => {
            let e = ApiError::from(e);
            let status = e.status();
            let n = refused(status, e.code().as_str(), e.to_string());
            application_page(&page, &id, status, n).await
        }
    }
}

/// `s` percent-encoded for a path segment.
pub(super) fn path_segment(s: &str) -> String {
    let encoded = serde_urlencoded::to_string([("", s)]).unwrap_or_default();
    encoded.trim_start_matches('=').replace('+', "%20")
}

#[derive(Deserialize)]
pub(super) struct PreviewQuery {
    pub(super) path: String,
    pub(super) round: Option<i64>,
}

/// A preview of one file of an egress application, flagged cells marked: an audited read,
/// for reviewers from outside the project, as through the API.
pub(super) async fn preview(
    page: Page,
    Path(id): Path<String>,
    Query(q): Query<PreviewQuery>,
) -> Response {
    let Some(caller) = page.caller() else {
        return super::to_sign_in();
    };
    let p = match review::preview(&page.state, &caller, &id, &q.path, q.round).await {
        Ok(p) => p,
        Err(e) => return page.error(e.into()),
    };
    let body = match &p.body {
        review::PreviewBody::Table(t) => json!({
            "table": t.rows.iter().map(|row| row.iter().map(|c| json!({
                "text": c.text,
                "flag": c.flagged.map(|o| o.as_str()),
            })).collect::<Vec<_>>()).collect::<Vec<_>>(),
            "truncated": t.truncated,
        }),
        review::PreviewBody::Text(s) => json!({ "text": s }),
        review::PreviewBody::Image(i) => json!({ "image": {
            "width": i.width, "height": i.height, "detail": i.detail,
            "src": review::image_media_type(&p.file.content_type)
                .map(|_| super::images::url(&id, &p.file.path, p.file.round)),
        }}),
        review::PreviewBody::None(why) => json!({ "none": why }),
    };
    page.render(
        StatusCode::OK,
        "preview.html",
        json!({
            "app": id,
            "file": {
                "path": p.file.path, "size": p.file.size, "sha256": p.file.sha256,
                "outcome": p.file.outcome, "round": p.file.round,
            },
            "body": body,
        }),
    )
}
