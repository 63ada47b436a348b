//! The audit log's page, for auditors (and admins): the events in the order of the chain,
//! filtered by actor, action, subject and days as `GET /api/v1/audit` filters them, a page at
//! a time, and whether the chain verifies (as `vre audit verify` checks it), or the first
//! event that does not. The page shows the last check (anyone's, with when it ran; the
//! first visit runs one): a check reads the whole chain, seconds at a million events, so
//! paging and filtering do not repeat it. Its link checks again now (`check=now`).

use axum::extract::Query;
use axum::http::StatusCode;
use axum::response::Response;
use serde::Deserialize;
use serde_json::{Value, json};

use super::Page;
use crate::audit::EventFilter;
use crate::error::{ApiError, ErrorCode};
use crate::service::page::PageAsk;
use crate::service::system;

#[derive(Deserialize, Default)]
pub(super) struct AuditQuery {
    #[serde(default)]
    actor: String,
    #[serde(default)]
    action: String,
    #[serde(default)]
    subject: String,
    #[serde(default)]
    since: String,
    #[serde(default)]
    until: String,
    #[serde(default)]
    after: String,
    /// `now`: check the chain now, instead of showing the last check.
    #[serde(default)]
    check: String,
    cursor: Option<String>,
}

/// A form's field: empty means none.
fn given(v: &str) -> Option<String> {
    Some(v.trim().to_owned()).filter(|v| !v.is_empty())
}

/// The audit page's address with the filters of `q`, `extra` and the page's language.
fn same_filters(q: &AuditQuery, extra: (&str, &str), page: &Page) -> String {
    let params = [
        ("actor", q.actor.as_str()),
        ("action", q.action.as_str()),
        ("subject", q.subject.as_str()),
        ("since", q.since.as_str()),
        ("until", q.until.as_str()),
        ("after", q.after.as_str()),
        extra,
        ("lang", page.lang.code()),
    ];
    format!(
        "/ui/audit?{}",
        serde_urlencoded::to_string(params).unwrap_or_default()
    )
}

/// The audit log, filtered and paged, with the chain's verification.
pub(super) async fn audit(page: Page, Query(q): Query<AuditQuery>) -> Response {
    let Some(caller) = page.caller() else {
        return super::to_sign_in();
    };
    let filter = EventFilter {
        subject: given(&q.subject),
        actor: given(&q.actor),
        action: given(&q.action),
        since: given(&q.since),
        until: given(&q.until),
    };
    let after = match given(&q.after).map(|a| a.parse::<i64>()) {
        None => None,
        Some(Ok(a)) => Some(a),
        Some(Err(_)) => {
            return page.error(ApiError::bad_request(
                ErrorCode::BadFilter,
                format!(
                    "`after` must be an event's number, not `{}`",
                    q.after.trim()
                ),
            ));
        }
    };
    let ask = PageAsk {
        limit: Some(100),
        cursor: q.cursor.clone().filter(|c| !c.is_empty()),
    };
    let found = match system::audit_events(&page.state, &caller, after, &filter, &ask).await {
        Ok(p) => p,
        Err(e) => return page.error(e.into()),
    };
    let checked = if q.check == "now" {
        system::audit_verify(&page.state, &caller).await
    } else {
        system::audit_last_check(&page.state, &caller).await
    };
    let checked = match checked {
        Ok(c) => c,
        Err(e) => return page.error(e.into()),
    };
    let report = &checked.report;
    let broken = report.problem.as_ref().filter(|p| p.seq > 0).map(|p| p.seq);
    // The same page, its filters kept, with a check of the chain run for it; the next page.
    let check_now = same_filters(&q, ("check", "now"), &page);
    let next = found
        .next
        .map(|c| same_filters(&q, ("cursor", c.as_str()), &page));
    let events: Vec<Value> = found
        .items
        .iter()
        .map(|e| {
            let link = if e.subject.starts_with("app-") {
                Some(format!(
                    "/ui/applications/{}",
                    super::pages::path_segment(&e.subject)
                ))
            } else if e.subject.starts_with("ds-") {
                Some(format!(
                    "/ui/datasets/{}",
                    super::pages::path_segment(&e.subject)
                ))
            } else {
                None
            };
            json!({
                "seq": e.seq,
                "at": e.at,
                "actor": e.actor,
                "action": e.action,
                "subject": e.subject,
                "link": link,
                "detail": e.detail,
                "hash": e.hash,
                "broken": broken == Some(e.seq),
            })
        })
        .collect();
    page.render(
        StatusCode::OK,
        "audit.html",
        json!({
            "events": events,
            "next": next,
            "filter": {
                "actor": q.actor, "action": q.action, "subject": q.subject,
                "since": q.since, "until": q.until, "after": q.after,
            },
            "verify": {
                "ok": report.problem.is_none(),
                "events": report.events,
                "checkpoints": report.checkpoints,
                "seq": report.problem.as_ref().map(|p| p.seq),
                "what": report.problem.as_ref().map(|p| p.what.clone()),
                "torn": report.torn_tail.is_some(),
                "checked_at": checked.checked_at,
                "again": check_now,
            },
        }),
    )
}
