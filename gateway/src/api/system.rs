//! Health, metrics, identity, the gateway's public keys and the audit log.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use policy::access::{Action, Standing};

use super::{ApiJson, ApiQuery, require};
use crate::audit::{StoredEvent, event_from_row};
use crate::auth::Caller;
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::state::AppState;
use crate::wire::system::{AuditQuery, Health, HealthStatus, WhoAmI};

/// Liveness and readiness; public, for load balancers.
#[utoipa::path(get, path = "/healthz", operation_id = "health", tag = "system",
    responses((status = 200, body = Health), (status = 503, body = Health)))]
pub async fn healthz(State(state): State<AppState>) -> impl IntoResponse {
    let db = sqlx::query("SELECT 1").execute(state.db.pool()).await;
    let (code, status, database) = match db {
        Ok(_) => (StatusCode::OK, HealthStatus::Ok, "ok".to_owned()),
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
pub async fn metrics(
    State(state): State<AppState>,
    caller: Caller,
) -> ApiResult<impl IntoResponse> {
    require(&caller, Action::MetricsRead, Standing::default())?;
    Ok((
        [("content-type", "text/plain; version=0.0.4")],
        state.metrics.render(),
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

/// Reads the audit log, oldest first; auditors and admins.
#[utoipa::path(get, path = "/api/v1/audit", operation_id = "list_audit_events", tag = "system", security(("bearer" = [])), params(AuditQuery),
    responses((status = 400, body = ErrorBody, description = "the request does not parse or breaks a rule"), (status = 200, body = Vec<StoredEvent>), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn audit_events(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(q): ApiQuery<AuditQuery>,
) -> ApiResult<ApiJson<Vec<StoredEvent>>> {
    require(&caller, Action::AuditRead, Standing::default())?;
    let limit = q.limit.unwrap_or(100).clamp(1, 1000);
    let rows =
        match &q.subject {
            Some(s) => sqlx::query(
                "SELECT seq, at, actor, action, subject, detail, prev_hash, hash FROM audit_events \
                 WHERE seq > $1 AND subject = $2 ORDER BY seq LIMIT $3",
            )
            .bind(q.after.unwrap_or(0))
            .bind(s)
            .bind(limit)
            .fetch_all(state.db.pool())
            .await?,
            None => sqlx::query(
                "SELECT seq, at, actor, action, subject, detail, prev_hash, hash FROM audit_events \
                 WHERE seq > $1 ORDER BY seq LIMIT $2",
            )
            .bind(q.after.unwrap_or(0))
            .bind(limit)
            .fetch_all(state.db.pool())
            .await?,
        };
    let events = rows
        .iter()
        .map(event_from_row)
        .collect::<Result<Vec<_>, _>>()
        .map_err(ApiError::from)?;
    Ok(ApiJson(events))
}
