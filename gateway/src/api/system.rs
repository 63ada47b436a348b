//! Health, metrics, identity, the gateway's public keys and the audit log.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;

use super::{ApiJson, ApiQuery, Cx, Paged};
use crate::audit::StoredEvent;
use crate::auth::Caller;
use crate::error::{ApiResult, ErrorBody};
use crate::service::system as svc;
use crate::state::AppState;
use crate::wire::PageQuery;
use crate::wire::system::{
    AuditProblem, AuditQuery, AuditVerification, Health, HealthStatus, WhoAmI,
};

/// Liveness and readiness; public, for load balancers.
#[utoipa::path(get, path = "/healthz", operation_id = "health", tag = "system",
    responses((status = 200, body = Health), (status = 503, body = Health)))]
pub async fn healthz(State(state): State<AppState>) -> impl IntoResponse {
    let (code, status, database) = match state.db.ping().await {
        Ok(()) => (StatusCode::OK, HealthStatus::Ok, "ok".to_owned()),
        Err(e) => {
            tracing::warn!(error = %e, "health check: database unavailable");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                HealthStatus::Degraded,
                "unavailable".to_owned(),
            )
        }
    };
    (code, ApiJson(Health { status, database }))
}

/// Prometheus metrics; operators, admins and auditors.
#[utoipa::path(get, path = "/metrics", operation_id = "metrics", tag = "system", security(("bearer" = [])),
    responses((status = 200, description = "Prometheus text format", content_type = "text/plain"),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn metrics(cx: Cx) -> ApiResult<impl IntoResponse> {
    Ok((
        [("content-type", "text/plain; version=0.0.4")],
        svc::metrics(&cx.state, &cx.caller).await?,
    ))
}

/// Who the token says you are.
#[utoipa::path(get, path = "/api/v1/whoami", operation_id = "whoami", tag = "system", security(("bearer" = [])),
    responses((status = 200, body = WhoAmI), (status = 401, body = ErrorBody)))]
pub async fn whoami(caller: Caller) -> ApiJson<WhoAmI> {
    ApiJson(WhoAmI {
        sub: caller.sub.to_string(),
        roles: caller.roles.iter().map(Into::into).collect(),
    })
}

/// The gateway's token-signing key as a JWKS (public halves only, made at start).
pub async fn jwks(State(state): State<AppState>) -> ApiJson<serde_json::Value> {
    ApiJson(state.jwks.clone())
}

/// Reads the audit log, oldest first, a page at a time; auditors and admins.
#[utoipa::path(get, path = "/api/v1/audit", operation_id = "list_audit_events", tag = "system", security(("bearer" = [])), params(AuditQuery, PageQuery),
    responses((status = 400, body = ErrorBody, description = "the request does not parse or breaks a rule"), (status = 200, body = Vec<StoredEvent>, headers(("x-next-cursor" = String, description = "the cursor of the next page, when there is one"))), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn audit_events(
    cx: Cx,
    ApiQuery(q): ApiQuery<AuditQuery>,
    ApiQuery(p): ApiQuery<PageQuery>,
) -> ApiResult<Paged<StoredEvent>> {
    let page = svc::audit_events(
        &cx.state,
        &cx.caller,
        q.after,
        &crate::audit::EventFilter {
            subject: q.subject,
            actor: q.actor,
            action: q.action,
            since: q.since,
            until: q.until,
        },
        &super::page_ask(p),
    )
    .await?;
    Ok(super::paged(page, |e| e))
}

/// Checks the audit log as `vre audit verify` does (the chain, its head, the signed
/// checkpoints), up to the head as it stands when asked; auditors and admins.
#[utoipa::path(get, path = "/api/v1/audit/verify", operation_id = "verify_audit", tag = "system", security(("bearer" = [])),
    responses((status = 200, body = AuditVerification), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn audit_verify(cx: Cx) -> ApiResult<ApiJson<AuditVerification>> {
    let checked = svc::audit_verify(&cx.state, &cx.caller).await?;
    let r = &checked.report;
    Ok(ApiJson(AuditVerification {
        intact: r.problem.is_none(),
        events: r.events,
        checkpoints: r.checkpoints as u64,
        problem: r.problem.as_ref().map(|p| AuditProblem {
            seq: p.seq,
            what: p.what.clone(),
        }),
        torn_tail: r.torn_tail.is_some(),
    }))
}
